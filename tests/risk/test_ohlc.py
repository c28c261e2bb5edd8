from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from levalign.errors import InvalidInput
from levalign.risk.ohlc import OHLC, load_ohlc, ohlc_from_arrays

MINUTE = 60_000_000_000  # ns
T0 = np.datetime64("2024-01-01T00:00:00", "ns").astype(np.int64)


def write_csv(tmp_path: Path, text: str, name: str = "bars.csv") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


GOOD_CSV = """Timestamp,OPEN,High,low,Close,volume
2024-01-01 00:00:00+00:00,100,102,99,101,5
2024-01-01 00:05:00+00:00,101,103,100,102,5
2024-01-01 00:10:00+00:00,102,104,101,103,5
2024-01-01 00:20:00+00:00,103,105,102,104,5
"""


def test_csv_columns_case_insensitive_and_bar_length_from_median_spacing(tmp_path):
    # spacings 5, 5, 10 minutes (one gap): the median is 5 minutes = 1/12 hour
    bars = load_ohlc(write_csv(tmp_path, GOOD_CSV))
    assert bars.bars == 4
    assert bars.bar_hours == pytest.approx(5 / 60)
    assert bars.start == "2024-01-01T00:00:00Z"
    assert bars.end == "2024-01-01T00:20:00Z"
    np.testing.assert_array_equal(bars.close, [101, 102, 103, 104])
    np.testing.assert_array_equal(bars.high, [102, 103, 104, 105])


def test_parquet_with_epoch_milliseconds(tmp_path):
    # Binance's raw open_time is epoch milliseconds; 2024-01-01T00:00Z = 1,704,067,200,000 ms
    ms = 1_704_067_200_000 + np.arange(3) * 3_600_000
    path = tmp_path / "bars.parquet"
    pq.write_table(
        pa.table(
            {
                "open_time": ms,
                "open": [1.0, 2.0, 3.0],
                "high": [2.0, 3.0, 4.0],
                "low": [0.5, 1.5, 2.5],
                "close": [2.0, 3.0, 3.5],
            }
        ),
        path,
    )
    bars = load_ohlc(path)
    assert bars.start == "2024-01-01T00:00:00Z"
    assert bars.end == "2024-01-01T02:00:00Z"
    assert bars.bar_hours == 1.0


def test_text_times_without_offset_are_utc(tmp_path):
    path = tmp_path / "bars.parquet"
    pq.write_table(
        pa.table(
            {
                "date": ["2024-01-01 00:00:00", "2024-01-01 08:00:00"],
                "open": [1.0, 1.0],
                "high": [1.0, 1.0],
                "low": [1.0, 1.0],
                "close": [1.0, 1.0],
            }
        ),
        path,
    )
    bars = load_ohlc(path)
    assert (bars.start, bars.end, bars.bar_hours) == (
        "2024-01-01T00:00:00Z",
        "2024-01-01T08:00:00Z",
        8.0,
    )


def test_bundled_btc_candles():
    # PROVENANCE.md: 30,240 one-minute candles, 2023-03-01 00:00 to 2023-03-21 23:59 UTC
    ref = resources.files("levalign.data").joinpath("BTCUSDT_1m_2023-03-01_2023-03-21.csv.gz")
    with resources.as_file(ref) as path:
        bars = load_ohlc(path)
    assert bars.bars == 30_240
    assert bars.bar_hours == pytest.approx(1 / 60)
    assert (bars.start, bars.end) == ("2023-03-01T00:00:00Z", "2023-03-21T23:59:00Z")


@pytest.mark.parametrize(
    ("text", "match", "field"),
    [
        ("time,open,high,close\n", r"no 'low' column \(found time, open, high, close\)", "low"),
        ("when,open,high,low,close\n", "no timestamp column: name one of timestamp", "timestamp"),
        (
            GOOD_CSV.replace("102,104,101,103", "102,104,101,"),
            r"close is missing \(NaN\) at row 2 \(2024-01-01T00:10:00Z\)",
            "close[2]",
        ),
        (
            GOOD_CSV.replace("101,103,100,102", "0,103,100,102"),
            r"open is 0.0 at row 1 \(2024-01-01T00:05:00Z\): prices must be positive",
            "open[1]",
        ),
        (
            GOOD_CSV.replace("103,105,102,104", "103,101,102,104"),
            r"high 101.0 is below low 102.0 at row 3 \(2024-01-01T00:20:00Z\)",
            "high[3]",
        ),
        (
            GOOD_CSV.replace("00:10:00", "00:05:00"),
            r"timestamp at row 2 \(2024-01-01T00:05:00Z\) duplicates row 1",
            "timestamp[2]",
        ),
        (
            GOOD_CSV.replace("00:10:00", "00:01:00"),
            r"timestamp at row 2 \(2024-01-01T00:01:00Z\) is earlier than row 1 .*sorted",
            "timestamp[2]",
        ),
        (
            "date,open,high,low,close\n2024-01-01,1,1,1,1\n",
            "at least 2 bars are needed to infer the bar length, got 1",
            "bars",
        ),
        (
            GOOD_CSV.replace("100,102,99,101", "100,abc,99,101"),
            "column 'High' is not numeric",
            "high",
        ),
    ],
)
def test_loader_errors_name_column_and_row(tmp_path, text, match, field):
    path = write_csv(tmp_path, text)
    with pytest.raises(InvalidInput, match=match) as info:
        load_ohlc(path)
    assert info.value.field == field


def test_unknown_extension_and_missing_file(tmp_path):
    with pytest.raises(InvalidInput, match=r"must end in .csv, .csv.gz or .parquet, got 'b.txt'"):
        load_ohlc(tmp_path / "b.txt")
    with pytest.raises(InvalidInput, match="cannot read"):
        load_ohlc(tmp_path / "absent.csv")


def minute_bars(minutes: list[int], close: list[float]) -> OHLC:
    c = np.asarray(close)
    return ohlc_from_arrays(T0 + np.asarray(minutes) * MINUTE, c - 0.5, c + 1.0, c - 1.0, c)


def test_resample_by_hand():
    # one-minute bars at minutes 1..10, close = 10 + minute, open = close - 0.5, high/low =
    # close +- 1; 3-minute windows start at 0, 3, 6, 9: [1, 2] and [9, 10] are incomplete
    # edges and dropped; [3, 4, 5] and [6, 7, 8] remain
    bars = minute_bars(list(range(1, 11)), [10.0 + m for m in range(1, 11)])
    out = bars.resample(3)
    assert out.bar_hours == 3 / 60
    np.testing.assert_array_equal(out.timestamp, T0 + np.array([3, 6]) * MINUTE)
    np.testing.assert_array_equal(out.open, [12.5, 15.5])  # first open: 13 - 0.5, 16 - 0.5
    np.testing.assert_array_equal(out.high, [16.0, 19.0])  # highest high: 15 + 1, 18 + 1
    np.testing.assert_array_equal(out.low, [12.0, 15.0])  # lowest low: 13 - 1, 16 - 1
    np.testing.assert_array_equal(out.close, [15.0, 18.0])  # last close


def test_resample_keeps_a_window_cut_by_an_inner_gap():
    # minutes 0..8 without 4: the window [3, 5] holds two bars and stays
    minutes = [0, 1, 2, 3, 5, 6, 7, 8]
    out = minute_bars(minutes, [10.0 + m for m in minutes]).resample(3)
    np.testing.assert_array_equal(out.close, [12.0, 15.0, 18.0])
    np.testing.assert_array_equal(out.open, [9.5, 12.5, 15.5])


@pytest.mark.parametrize("minutes", [0, 7, -5])
def test_resample_needs_a_whole_multiple(minutes):
    bars = minute_bars([0, 5, 10, 15], [11.0, 12.0, 13.0, 14.0])  # 5-minute bars
    with pytest.raises(InvalidInput, match="whole multiple of the data's bar length") as info:
        bars.resample(minutes)
    assert info.value.field == "resample_minutes"


def test_resample_to_fewer_than_two_bars():
    bars = minute_bars(list(range(10)), [5.0] * 10)
    with pytest.raises(InvalidInput, match="leaves 0 complete bars, at least 2 are needed"):
        bars.resample(60)


def test_arrays_of_different_length():
    with pytest.raises(InvalidInput, match="low has 2 values but timestamp has 3"):
        ohlc_from_arrays(T0 + np.arange(3), [1.0] * 3, [1.0] * 3, [1.0] * 2, [1.0] * 3)
