"""``levalign demo``: the bundled crash scenario, naive copiers against every sizing mode.

A 15x trend-following lead (``btc_trend_15x``, generated on the bundled BTC/USDT one-minute
candles of 1–21 March 2023, through the banking-crisis crash and the rally after it) is copied
by a cohort of followers: naive copiers that copy as exchanges do (the lead's leverage
setting, fixed ratio) beside followers of every normalization mode. The replay prints a
summary table and writes the HTML report.
"""

from __future__ import annotations

import time
from pathlib import Path

from levalign.backtest.replay import BacktestResult, backtest, naive_cohort
from levalign.backtest.report import headline, write_report
from levalign.backtest.strategies import SAMPLE_LEADS, sample_leads
from levalign.markets import load_markets
from levalign.samples import data_path

__all__ = ["DEMO_LEAD", "run_backtest_demo"]

DEMO_LEAD = "btc_trend_15x"


def run_backtest_demo(
    followers: int = 1_400, seed: int = 7, report: Path | None = Path("levalign-report.html")
) -> BacktestResult:
    """Replay the demo lead for ``followers`` followers, print the summary, write the report."""
    from rich.console import Console
    from rich.table import Table

    console = Console()
    start = time.perf_counter()
    markets = load_markets("binance")
    # replayed on the bars the demo lead was generated on
    result = backtest(
        sample_leads()[DEMO_LEAD],
        data_path(SAMPLE_LEADS[DEMO_LEAD].prices),
        naive_cohort(followers, seed),
        markets,
        progress=console.is_terminal,
    )
    console.rule("[bold]levalign demo: copying a 15x BTC trend follower, 1–21 March 2023")
    console.print(headline(result))
    table = Table(title=f"{len(result.group):,} followers by group")
    for name in (
        "group",
        "followers",
        "liquidated",
        "de-risked",
        "median return",
        "5% worst",
        "median max DD",
    ):
        table.add_column(
            name, justify="left" if name == "group" else "right", no_wrap=name == "group"
        )
    for row in result.summary():
        table.add_row(
            row["group"],
            f"{row['followers']:,}",
            f"{row['liquidated']:,} ({row['liquidated_share']:.0%})",
            f"{row['derisked']:,}",
            f"{row['return_median']:+.1%}",
            f"{row['return_p05']:+.1%}",
            f"{row['max_drawdown_median']:.1%}",
        )
    console.print(table)
    if report is not None:
        write_report(result, report, title="levalign demo: a 15x lead through the March 2023 crash")
        console.print(f"Report: {report}")
    console.print(f"{time.perf_counter() - start:.1f} s")
    return result
