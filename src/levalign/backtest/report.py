"""The backtest report: one self-contained HTML page (plotly embedded) or a PNG.

What a reader must see in seconds: how many naive copiers and how many normalized followers
were liquidated, and how their equity went beside the lead's. Then, per group: equity,
effective leverage, liquidation distance and P(liquidation) over time, and a table of outcomes
(:meth:`levalign.backtest.replay.BacktestResult.summary`).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from levalign._files import FIGURE_SUFFIXES, check_output
from levalign.plots import Panel, Series, save

if TYPE_CHECKING:
    from levalign.backtest.replay import BacktestResult

__all__ = ["headline", "write_report"]

_TABLE_COLUMNS = (
    ("group", "group"),
    ("followers", "followers"),
    ("liquidated", "liquidated"),
    ("liquidated_share", "liquidated share"),
    ("return_median", "median return"),
    ("return_p05", "5% worst return"),
    ("max_drawdown_median", "median max drawdown"),
    ("tracking_error_median", "median tracking error"),
    ("skipped_copies", "skipped copies"),
    ("gap", "P&L gap to the lead"),
    ("gap_fees", "of it: fees"),
    ("gap_funding", "funding"),
    ("gap_slippage", "slippage"),
    ("gap_liquidation", "liquidation"),
    ("gap_sizing", "sizing"),
)


def headline(result: BacktestResult) -> str:
    """One sentence: liquidations of naive copiers against normalized followers, lead's return."""
    rows = {r["group"]: r for r in result.summary()}
    parts = []
    naive = rows.pop("naive", None)
    if naive is not None:
        parts.append(
            f"Naive copiers (the lead's leverage setting): {naive['liquidated']:,} of "
            f"{naive['followers']:,} liquidated"
        )
    derisked = rows.pop("naive_derisk", None)
    if derisked is not None:
        parts.append(
            f"with a de-risking floor: {derisked['liquidated']:,} of {derisked['followers']:,}"
        )
    if rows:
        liquidated = sum(r["liquidated"] for r in rows.values())
        followers = sum(r["followers"] for r in rows.values())
        parts.append(f"normalized followers: {liquidated:,} of {followers:,}")
    lead_return = result.lead.get("return", float("nan"))
    parts.append(f"the lead returned {lead_return:+.1%}")
    return "; ".join(parts) + "."


def write_report(result: BacktestResult, path: Path, title: str | None = None) -> Path:
    """Write the report to ``path`` (``.html``: interactive, self-contained; ``.png``).

    Raises
    ------
    InvalidInput
        A suffix other than ``.html`` or ``.png``, a folder, a missing folder.
    """
    check_output(path, FIGURE_SUFFIXES, "report")
    time = result.time.astype("datetime64[ns]").astype("datetime64[ms]")
    groups = result.groups
    lead_growth = result.lead_equity / result.lead_equity[0]

    def per_group(values: np.ndarray[Any, Any], name: str) -> list[Series]:
        return [
            Series(f"{g} {name}".strip(), time, values[i], color=_color(i))
            for i, g in enumerate(groups)
        ]

    growth = result.equity_median / result.equity_median[:, :1]
    panels = [
        Panel(
            "Equity (median follower of each group, and the lead), start = 1",
            "time",
            "equity / start",
            [Series("lead", time, lead_growth, color=_LEAD), *per_group(growth, "")],
        ),
        Panel(
            "Followers liquidated so far (share of the group)",
            "time",
            "share",
            per_group(result.liquidated / np.maximum(_group_sizes(result)[:, None], 1), ""),
        ),
        Panel(
            "Effective leverage (median over followers holding a position)",
            "time",
            "notional / equity",
            [
                Series("lead", time, result.lead_effective_leverage, color=_LEAD),
                *per_group(result.effective_leverage_median, ""),
            ],
        ),
        Panel(
            "Liquidation distance (median, fraction of price)",
            "time",
            "distance",
            per_group(result.liquidation_distance_median, ""),
        ),
        Panel(
            f"P(liquidation within {result.horizon_hours:g} h), representative follower",
            "time",
            "probability",
            per_group(result.representative_p_liquidation, ""),
        ),
        Panel("Price", "time", result.symbol, [Series("mark", time, result.price, color=_LEAD)]),
    ]
    table = [
        {label: row[key] for key, label in _TABLE_COLUMNS if key in row} for row in result.summary()
    ]
    name = title or f"levalign backtest: {result.symbol}"
    return save(path, name, panels, headline=headline(result), table=table)


# one colour per group in every panel; the lead in black (matplotlib's "tab10" palette)
_PALETTE = (
    "#d62728",  # naive first: red
    "#1f77b4",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#bcbd22",
    "#7f7f7f",
)
_LEAD = "#000000"


def _color(i: int) -> str:
    return _PALETTE[i % len(_PALETTE)]


def _group_sizes(result: BacktestResult) -> np.ndarray[Any, Any]:
    return np.bincount(result.group, minlength=len(result.groups)).astype(float)
