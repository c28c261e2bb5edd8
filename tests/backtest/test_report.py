"""The backtest report: headline, PNG and HTML on a small real replay."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import pytest

from levalign.backtest import backtest, naive_cohort, sample_leads, write_report
from levalign.backtest.report import headline
from levalign.errors import InvalidInput
from levalign.markets import load_markets


@pytest.fixture(scope="module")
def result():
    markets = load_markets("binance")
    data = resources.files("levalign.data").joinpath("BTCUSDT_1m_2023-03-01_2023-03-21.csv.gz")
    with resources.as_file(data) as candles:
        return backtest(sample_leads()["btc_trend_15x"], candles, naive_cohort(70, 7), markets)


def test_headline_counts_liquidations(result) -> None:
    rows = {r["group"]: r for r in result.summary()}
    text = headline(result)
    naive = rows.pop("naive")
    derisked = rows.pop("naive_derisk")
    normalized = sum(r["liquidated"] for r in rows.values())
    # 70 rows round robin over 8 groups: rows 0, 8, ..., 64 are naive (9), 1, ..., 65
    # naive_derisk (9), the 52 others normalized
    assert f"{naive['liquidated']:,} of 9 liquidated" in text
    assert f"with a de-risking floor: {derisked['liquidated']:,} of 9" in text
    assert f"normalized followers: {normalized:,} of 52" in text


def test_png_and_html(result, tmp_path: Path) -> None:
    png = write_report(result, tmp_path / "r.png")
    assert png.read_bytes()[:4] == b"\x89PNG"
    page = write_report(result, tmp_path / "r.html").read_text()
    for group in result.groups:
        assert f"<td>{group}</td>" in page  # a table row per group
    with pytest.raises(InvalidInput, match=r"\.html or \.png"):
        write_report(result, tmp_path / "r.pdf")
