"""Figures of the risk engine's results, for ``levalign simulate`` and ``levalign align``."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from levalign.plots import Panel, Series, save

if TYPE_CHECKING:
    from levalign.risk.monte_carlo import PathOutcomes, SimulationResult
    from levalign.risk.optimal import Alignment

__all__ = ["alignment_figure", "simulation_figure"]


def alignment_figure(
    result: Alignment, max_liq_probability: float, max_es: float | None, path: Path
) -> Path:
    """P(liquidation), expected log growth and ES against leverage, the choice marked."""
    c = result.curve
    lev = c.leverage[1:]  # leverage 0 has no place on a log axis
    chosen = [result.leverage] if result.leverage > 0 else [result.max_leverage]
    label = (
        f"optimal {result.leverage:.2f}x"
        if result.leverage > 0
        else f"max within limits {result.max_leverage:.2f}x"
    )
    mark = Series(label, chosen, [0.0], kind="vline")
    es_series = [Series(f"ES {result.es_level:.0%}", lev, c.es[1:])]
    if max_es is not None:
        es_series.append(Series("limit", lev, np.full(lev.shape, max_es)))
    panels = [
        Panel(
            "P(liquidation within the horizon)",
            "effective leverage",
            "probability",
            [
                Series("P(liquidation)", lev, c.p_liquidation[1:]),
                Series("limit", lev, np.full(lev.shape, max_liq_probability)),
                mark,
            ],
            log_x=True,
        ),
        Panel(
            "Expected log growth over the horizon",
            "effective leverage",
            "E[ln(E_T / E_0)]",
            [Series("expected log growth", lev, c.expected_log_growth[1:]), mark],
            log_x=True,
        ),
        Panel(
            "Expected shortfall (fraction of equity)",
            "effective leverage",
            "ES",
            [*es_series, mark],
            log_x=True,
        ),
    ]
    title = (
        f"{result.symbol} {result.side}, {result.horizon_days:g} days, "
        f"{result.paths:,} paths: {label}"
    )
    return save(path, title, panels)


def simulation_figure(result: SimulationResult, outcomes: PathOutcomes, path: Path) -> Path:
    """Terminal equity, maximum drawdown and time-to-liquidation distributions."""
    equity = outcomes.equity
    hist, edges = np.histogram(equity, bins=80)
    centers = 0.5 * (edges[1:] + edges[:-1])
    dd_hist, dd_edges = np.histogram(outcomes.max_drawdown, bins=60)
    dd_centers = 0.5 * (dd_edges[1:] + dd_edges[:-1])
    panels = [
        Panel(
            "Terminal equity / starting equity",
            "E_T / E_0",
            "paths",
            [
                Series("paths", centers, hist, kind="bar"),
                Series(f"VaR {result.var_level:.0%}", [1.0 - result.var], [0.0], kind="vline"),
            ],
        ),
        Panel(
            "Maximum drawdown",
            "drawdown (fraction of peak equity)",
            "paths",
            [Series("paths", dd_centers, dd_hist, kind="bar")],
        ),
    ]
    liquidated = outcomes.liquidation_step[outcomes.liquidation_step >= 0]
    if liquidated.size:
        hours = (liquidated + 1) * outcomes.step_hours
        t_hist, t_edges = np.histogram(hours, bins=min(60, max(5, outcomes.liquidation_step.max())))
        panels.append(
            Panel(
                "Time to liquidation (sampled liquidations)",
                "hours",
                "paths",
                [Series("paths", 0.5 * (t_edges[1:] + t_edges[:-1]), t_hist, kind="bar")],
            )
        )
    title = (
        f"{result.paths:,} paths, {result.horizon_days:g} days: P(liquidation) "
        f"{result.p_liquidation:.4f} ± {result.p_liquidation_se:.4f}"
    )
    return save(path, title, panels)
