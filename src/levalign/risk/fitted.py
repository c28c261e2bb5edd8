"""Price models fitted to real bars: the bridge from ``levalign vol`` to the Monte Carlo engine.

A model spec may name a data file instead of parameters::

    {"type": "garch_t", "data": "BTCUSDT_1m.csv", "resample_minutes": 60}
    {"type": "bootstrap", "data": "XRPUSDT_perp_5m.csv", "block_length": 24}
    {"type": "gbm", "data": "BTCUSDT_1m.csv", "mu": 0.0}

``garch_t`` takes the GARCH(1,1)-t maximum-likelihood fit (:func:`.volatility.garch_t`)
and starts from its next-bar conditional volatility; ``bootstrap`` resamples the file's log
returns; ``gbm`` and ``student_t`` take σ from the close-to-close estimator. Paths inside a
spec are relative to the spec file.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from levalign._paths import beside
from levalign.errors import InvalidInput

__all__ = ["model_from_spec_or_data"]


def model_from_spec_or_data(spec: Mapping[str, Any], base: Path | None = None) -> Any:
    """A price model from its spec, fitting it to ``spec["data"]`` when given.

    Raises
    ------
    InvalidInput
        A bad spec or data file (the field is named), or a GARCH fit that is not stationary
        (a model with no long-run variance cannot be simulated far; the message says what to
        use instead).
    """
    from levalign.risk import monte_carlo as mc

    if "data" not in spec:
        return mc.model_from_spec(spec)
    from levalign.risk.ohlc import load_ohlc
    from levalign.risk.volatility import check_gaps, close_to_close, garch_t

    data = Path(str(spec["data"]) if base is None else beside(base, str(spec["data"])))
    rest = {k: v for k, v in spec.items() if k not in ("data", "resample_minutes")}
    kind = rest.get("type")
    ohlc = load_ohlc(data)
    check_gaps(ohlc)
    minutes = spec.get("resample_minutes")
    if minutes is not None:
        if isinstance(minutes, bool) or not isinstance(minutes, int):
            raise InvalidInput(
                f"model.resample_minutes must be a whole number of minutes, got {minutes!r}",
                field="model.resample_minutes",
            )
        ohlc = ohlc.resample(minutes)
    elif kind == "garch_t" and ohlc.bar_hours < 1.0:
        ohlc = ohlc.resample(60)  # GARCH on 1-minute returns is slow and noisy
    if kind == "garch_t":
        fit = garch_t(ohlc.close, ohlc.bar_hours)
        if not fit.stationary:
            raise InvalidInput(
                f"the GARCH(1,1)-t fit on {data.name} is not stationary (alpha + beta = "
                f"{fit.persistence:.6f}): simulate it with student_t or bootstrap, or fit a "
                "longer history",
                field="model.data",
                value=str(data),
            )
        params = {
            "omega": fit.omega,
            "alpha": fit.alpha,
            "beta": fit.beta,
            "nu": fit.nu,
            "mu": fit.mu,
            "bar_hours": fit.bar_hours,
            "sigma0": fit.sigma_next,
        }
        return mc.model_from_spec({**params, **rest})
    if kind == "bootstrap":
        returns = np.diff(np.log(ohlc.close))
        return mc.model_from_spec(
            {"bar_hours": ohlc.bar_hours, "block_length": 24.0, **rest, "returns": returns}
        )
    if kind in ("gbm", "student_t"):
        return mc.model_from_spec({"sigma": close_to_close(ohlc.close, ohlc.bar_hours), **rest})
    raise InvalidInput(
        f"model.data works with garch_t, bootstrap, gbm and student_t, not {kind!r}",
        field="model.type",
        value=str(kind),
    )
