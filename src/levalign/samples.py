"""Bundled data and sample cohorts: the names of the files in ``levalign/data`` and their loaders.

Library code (the backtest, the sweep, the benchmarks) takes sample data from here, never from
the demo. Where each file comes from is in ``levalign/data/PROVENANCE.md``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

from levalign.normalize import MODES

__all__ = [
    "BTC_CANDLES",
    "DEMO_COHORT",
    "DEMO_COHORT_SEED",
    "DEMO_COHORT_SIZE",
    "XRP_BARS",
    "XRP_FUNDING",
    "Candles",
    "data_path",
    "load_btc_candles",
    "load_demo_cohort",
    "sample_cohort",
]

#: BTC/USDT one-minute candles, 2023-03-01 to 2023-03-21 (Binance.US)
BTC_CANDLES = "BTCUSDT_1m_2023-03-01_2023-03-21.csv.gz"
#: XRP/USDT perpetual five-minute bars, 2021-11-15 to 2021-11-21
XRP_BARS = "XRPUSDT_perp_5m_2021-11-15_2021-11-21.csv.gz"
#: XRP/USDT perpetual eight-hourly funding rates, 2021-11-18 to 2021-12-18
XRP_FUNDING = "XRPUSDT_perp_funding_8h_2021-11-18_2021-12-18.csv.gz"
#: the bundled cohort, ``sample_cohort(DEMO_COHORT_SIZE, DEMO_COHORT_SEED)``
DEMO_COHORT = "demo_cohort.parquet"
DEMO_COHORT_SIZE = 10_000
DEMO_COHORT_SEED = 7


def data_path(*parts: str) -> Path:
    """Path of a bundled file, ``parts`` relative to ``levalign/data``."""
    # the package is installed as files (hatch wheel, editable install): a real path
    return Path(str(resources.files("levalign.data").joinpath(*parts)))


@dataclass(frozen=True)
class Candles:
    """OHLC one-minute candles as arrays; ``open_time`` as ISO strings."""

    open_time: NDArray[np.str_]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]


def load_btc_candles() -> Candles:
    """The bundled BTC/USDT one-minute candles, 2023-03-01 to 2023-03-21 (Binance.US)."""
    import pyarrow.csv as pcsv

    table = pcsv.read_csv(
        data_path(BTC_CANDLES),
        convert_options=pcsv.ConvertOptions(column_types={"open_time": "string"}),
    )
    return Candles(
        open_time=np.asarray(table.column("open_time").to_pylist()),
        open=table.column("open").to_numpy(),
        high=table.column("high").to_numpy(),
        low=table.column("low").to_numpy(),
        close=table.column("close").to_numpy(),
    )


def sample_cohort(n: int, seed: int) -> dict[str, Any]:
    """A realistic mixed cohort: equities from 50 to 500,000 USDT, every sizing mode.

    The bundled ``demo_cohort.parquet`` is ``sample_cohort(10_000, 7)``.
    """
    rng = np.random.default_rng(seed)
    equity = np.round(np.clip(rng.lognormal(np.log(2_000.0), 1.4, n), 50.0, 500_000.0), 2)
    mode = rng.choice(np.array(MODES[:5]), size=n, p=[0.45, 0.15, 0.15, 0.15, 0.10])
    scale = rng.choice(np.array([0.5, 1.0, 1.0, 1.0, 2.0]), size=n)
    max_leverage = rng.choice(
        np.array([3.0, 5.0, 10.0, math.inf]), size=n, p=[0.25, 0.3, 0.25, 0.2]
    )
    min_liq = rng.choice(
        np.array([math.nan, 0.1, 0.2, 0.3, 0.0]), size=n, p=[0.4, 0.2, 0.2, 0.1, 0.1]
    )
    return {
        "id": np.arange(1, n + 1, dtype=np.int64),
        "equity": equity,
        "mode": mode,
        "scale": scale,
        "fixed_notional": np.round(equity * rng.choice(np.array([1.0, 3.0, 5.0]), size=n), 2),
        "risk_fraction": rng.choice(np.array([0.01, 0.02, 0.05]), size=n),
        "vol_target": rng.choice(np.array([0.5, 1.0, 2.0]), size=n),
        "max_leverage": max_leverage,
        "min_liq_distance": min_liq,
        "margin_mode": rng.choice(np.array(["isolated", "cross"]), size=n, p=[0.7, 0.3]),
        "min_size_policy": rng.choice(
            np.array(["skip", "round_up", "accumulate"]), size=n, p=[0.5, 0.3, 0.2]
        ),
    }


def load_demo_cohort() -> Any:
    """The bundled 10,000-follower cohort as a pyarrow Table."""
    import pyarrow.parquet as pq

    return pq.read_table(data_path(DEMO_COHORT))
