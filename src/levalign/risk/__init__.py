"""Leverage alignment: volatility, option greeks, liquidation probability, optimal leverage.

docs/design.md, "Risk". The names below are the risk engine's public API; each module's
docstring states its formulas:

=========================  =================================================================
:mod:`.volatility`         close-to-close, Parkinson, Garman–Klass, EWMA, GARCH(1,1)-t
:mod:`.ohlc`               OHLC bars from CSV/Parquet, checked and resampled
:mod:`.greeks`             Black–Scholes, Black-76 and inverse (coin-settled) greeks, IV
:mod:`.options`            delta/vega exposure of option accounts, copying option leads
:mod:`.first_passage`      closed-form P(liquidation) under GBM, Kelly fraction
:mod:`.monte_carlo`        price models and the Monte Carlo liquidation engine
:mod:`.curve`              P(liquidation) against distance, built once per lead event
:mod:`.optimal`            growth-optimal leverage under P(liquidation) and ES limits
=========================  =================================================================

The heavy submodules (Monte Carlo, optimal leverage, options, volatility) load on first use
(PEP 562), so ``import levalign`` stays light and the normalization kernel can use
:mod:`.curve` without importing ``arch`` or the options models.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# light and needed by normalization: imported now (this also keeps the function ``greeks``
# from being shadowed by its submodule of the same name)
from levalign.risk.curve import LiquidationCurve
from levalign.risk.first_passage import kelly_fraction, liquidation_probability, touch_probability
from levalign.risk.greeks import Greeks, greeks, implied_volatility

if TYPE_CHECKING:
    from levalign.risk.monte_carlo import (
        GBM,
        Bootstrap,
        GarchT,
        MertonJump,
        SimulationResult,
        StudentT,
        model_from_spec,
        sample_extremes,
        simulate,
    )
    from levalign.risk.ohlc import load_ohlc
    from levalign.risk.optimal import Alignment, optimal_leverage
    from levalign.risk.options import normalize_options, option_exposure
    from levalign.risk.volatility import estimate_volatility, garch_t

_WHERE = {
    "GBM": "monte_carlo",
    "Bootstrap": "monte_carlo",
    "GarchT": "monte_carlo",
    "MertonJump": "monte_carlo",
    "SimulationResult": "monte_carlo",
    "StudentT": "monte_carlo",
    "model_from_spec": "monte_carlo",
    "sample_extremes": "monte_carlo",
    "simulate": "monte_carlo",
    "load_ohlc": "ohlc",
    "Alignment": "optimal",
    "optimal_leverage": "optimal",
    "normalize_options": "options",
    "option_exposure": "options",
    "estimate_volatility": "volatility",
    "garch_t": "volatility",
}

__all__ = [
    "GBM",
    "Alignment",
    "Bootstrap",
    "GarchT",
    "Greeks",
    "LiquidationCurve",
    "MertonJump",
    "SimulationResult",
    "StudentT",
    "estimate_volatility",
    "garch_t",
    "greeks",
    "implied_volatility",
    "kelly_fraction",
    "liquidation_probability",
    "load_ohlc",
    "model_from_spec",
    "normalize_options",
    "optimal_leverage",
    "option_exposure",
    "sample_extremes",
    "simulate",
    "touch_probability",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'levalign.risk' has no attribute {name!r}")
    return getattr(importlib.import_module(f"levalign.risk.{module}"), name)


def __dir__() -> list[str]:
    return __all__
