"""Figures for the command line: one description, drawn as HTML (plotly) or PNG (matplotlib).

A figure is a few :class:`Panel` objects, each with line, bar or marker series; :func:`save`
picks the renderer from the file suffix. The HTML file embeds plotly's JavaScript, so it opens
without a network.
"""

from __future__ import annotations

import html
import math
import textwrap
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import numpy as np
from numpy.typing import ArrayLike

from levalign._extras import require
from levalign._files import FIGURE_SUFFIXES, check_output, write_atomic

__all__ = ["Panel", "Series", "save"]

SeriesKind = Literal["line", "bar", "marker", "vline"]


@dataclass(frozen=True)
class Series:
    """One series of a panel; ``vline`` draws a vertical line at ``x[0]``."""

    name: str
    x: ArrayLike
    y: ArrayLike
    kind: SeriesKind = "line"
    secondary: bool = False
    color: str | None = None  # e.g. "#1f77b4"; None: the renderer's next colour


@dataclass(frozen=True)
class Panel:
    """One subplot: title, axis labels, series; ``log_x`` for leverage axes."""

    title: str
    x_label: str
    y_label: str
    series: Sequence[Series] = field(default_factory=tuple)
    y2_label: str | None = None
    log_x: bool = False


def save(
    path: Path,
    title: str,
    panels: Sequence[Panel],
    *,
    headline: str = "",
    table: Sequence[Mapping[str, object]] = (),
) -> Path:
    """Write the figure to ``path`` (``.html`` or ``.png``) and return the path.

    ``headline`` (a sentence) and ``table`` (rows of equal keys) go above and below the
    figure in HTML; a PNG holds the headline as its subtitle and no table. The file is
    written whole or not at all (:func:`levalign._files.write_atomic`).

    Raises
    ------
    InvalidInput
        Any other suffix, a path that is a folder or in a missing folder.
    """
    field = "plot"
    suffix = check_output(path, FIGURE_SUFFIXES, field)
    if suffix == ".html":
        write_atomic(path, lambda tmp: _save_html(tmp, title, panels, headline, table), field)
    else:
        wrapped = textwrap.fill(headline, 110)
        full = f"{title}\n{wrapped}" if headline else title
        write_atomic(path, lambda tmp: _save_png(tmp, full, panels), field)
    return path


def _save_html(
    path: Path,
    title: str,
    panels: Sequence[Panel],
    headline: str,
    table: Sequence[Mapping[str, object]],
) -> None:
    require("backtest", "plotly")
    import plotly.graph_objects as go
    from plotly.subplots import make_subplots

    fig = make_subplots(
        rows=len(panels),
        cols=1,
        subplot_titles=[p.title for p in panels],
        specs=[[{"secondary_y": any(s.secondary for s in p.series)}] for p in panels],
        vertical_spacing=0.12 / max(len(panels) - 1, 1),
    )
    for row, panel in enumerate(panels, start=1):
        for s in panel.series:
            x, y = np.asarray(s.x, dtype=float), np.asarray(s.y, dtype=float)
            if s.kind == "vline":
                fig.add_vline(
                    x=float(x[0]), line_dash="dash", annotation_text=s.name, row=row, col=1
                )
                continue
            trace: go.BaseTraceType
            if s.kind == "bar":
                trace = go.Bar(x=x, y=y, name=s.name, marker_color=s.color)
            else:
                mode = "markers" if s.kind == "marker" else "lines"
                trace = go.Scatter(
                    x=x, y=y, name=s.name, mode=mode, line={"color": s.color}, legendgroup=s.name
                )
            fig.add_trace(
                trace, row=row, col=1, secondary_y=s.secondary if panel.y2_label else None
            )
        fig.update_xaxes(title_text=panel.x_label, type="log" if panel.log_x else None, row=row)
        fig.update_yaxes(title_text=panel.y_label, row=row, col=1, secondary_y=False)
        if panel.y2_label:
            fig.update_yaxes(title_text=panel.y2_label, row=row, col=1, secondary_y=True)
    fig.update_layout(title=title, height=360 * len(panels), template="plotly_white")
    if not headline and not table:
        fig.write_html(path, include_plotlyjs=True, full_html=True)
        return
    body = fig.to_html(include_plotlyjs=True, full_html=False)
    page = (
        "<!doctype html><html><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title>"
        "<style>body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:right}"
        "th{background:#f3f3f3}p.headline{font-size:1.3em}</style></head><body>"
        f"<h1>{html.escape(title)}</h1><p class='headline'>{html.escape(headline)}</p>"
        f"{_html_table(table)}{body}</body></html>"
    )
    path.write_text(page, encoding="utf-8")


def _html_table(rows: Sequence[Mapping[str, object]]) -> str:
    if not rows:
        return ""
    keys = list(rows[0])
    head = "".join(f"<th>{html.escape(str(k))}</th>" for k in keys)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_cell(r.get(k)))}</td>" for k in keys) + "</tr>"
        for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _cell(value: object) -> str:
    if isinstance(value, float):
        return f"{value:,.4g}" if math.isfinite(value) else "—"
    return str(value)


def _save_png(path: Path, title: str, panels: Sequence[Panel]) -> None:
    require("backtest", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")  # files only: no display needed
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3.6 * len(panels)), squeeze=False)
    for ax, panel in zip(axes[:, 0], panels, strict=True):
        ax2 = ax.twinx() if panel.y2_label else None
        for s in panel.series:
            target = ax2 if (s.secondary and ax2 is not None) else ax
            x, y = np.asarray(s.x), np.asarray(s.y, dtype=float)
            if s.kind == "vline":
                target.axvline(x[0], linestyle="--", color="grey", label=s.name)
            elif s.kind == "bar":
                width = float(np.min(np.diff(x))) if x.size > 1 else 1.0
                target.bar(x, y, width=width, alpha=0.7, label=s.name)
            elif s.kind == "marker":
                target.plot(x, y, "o", label=s.name, color=s.color)
            else:
                target.plot(x, y, label=s.name, color=s.color or ("C1" if s.secondary else None))
        ax.set_title(panel.title)
        ax.set_xlabel(panel.x_label)
        ax.set_ylabel(panel.y_label)
        if panel.log_x:
            ax.set_xscale("log")
        if ax2 is not None and panel.y2_label:
            ax2.set_ylabel(panel.y2_label)
        handles, labels = ax.get_legend_handles_labels()
        if ax2 is not None:
            h2, l2 = ax2.get_legend_handles_labels()
            handles, labels = handles + h2, labels + l2
        if handles:
            ax.legend(handles, labels, fontsize="small")
        ax.grid(alpha=0.3)
    fig.suptitle(title)
    top = 1.0 - 0.35 * (title.count("\n") + 1) / (3.6 * len(panels))  # room for the title
    fig.tight_layout(rect=(0.0, 0.0, 1.0, top))
    fig.savefig(path, dpi=110)
    plt.close(fig)
