from __future__ import annotations

import asyncio
import csv
import dataclasses
import gzip
import io
import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from levalign import _normalize_kernel as nk
from levalign.backtest import LotSizeWarning, load_lead_history, write_lead_history
from levalign.errors import InvalidInput
from levalign.markets import Markets, load_markets
from levalign.normalize import EVENT_KINDS, prepare_event
from levalign.sources.base import LeadSource, LeadState
from levalign.sources.replay import LeadHistorySource, history_text, parse_timestamp

BTC, XRP = "BTC/USDT:USDT", "XRP/USDT:USDT"
DOC = Path(__file__).parents[2] / "docs" / "lead_history.md"
# 2023-03-08T00:00:00Z: 19,424 days after 1970-01-01, times 86,400 s
T0_MS = 19_424 * 86_400 * 1000


@pytest.fixture(scope="module")
def markets() -> Markets:
    spec = load_markets("binance")
    # explicit lot steps so the tests do not depend on the preset's lot data
    return Markets(
        "binance",
        {
            BTC: dataclasses.replace(spec[BTC], amount_step=0.001),
            XRP: dataclasses.replace(spec[XRP], amount_step=0.1),
        },
    )


def iso(minute: int, second: float = 59.999) -> str:
    return f"2023-03-08T00:{minute:02d}:{second:06.3f}Z"


def four_rows() -> list[dict[str, Any]]:
    """Open 1, increase to 2, reduce to 0.5 (cut 75%), close; fee 0.04% of each fill.

    Equity by hand from 10,000: 10,000 - 8.8 = 9,991.2; + 1 x 100 - 8.84 = 10,082.36;
    + 2 x (-50) - 1.5 x 22,050 x 0.0004 = 9,969.13; + 0.5 x (-50) - 4.4 = 9,939.73.
    """
    return [
        {"timestamp": iso(0), "symbol": BTC, "price": 22_000.0, "position_after": 1.0,
         "equity": 9_991.2, "stop_price": 21_000.0, "leverage_setting": 20.0, "fee": 8.8},
        {"timestamp": iso(1), "symbol": BTC, "price": 22_100.0, "position_after": 2.0,
         "equity": 10_082.36, "leverage_setting": 20.0, "fee": 8.84},
        {"timestamp": iso(2), "symbol": BTC, "price": 22_050.0, "position_after": 0.5,
         "equity": 9_969.13, "leverage_setting": 20.0, "fee": 13.23},
        {"timestamp": iso(3), "symbol": BTC, "price": 22_000.0, "position_after": 0.0,
         "equity": 9_939.73, "leverage_setting": 20.0, "fee": 4.4},
    ]  # fmt: skip


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    columns = list(dict.fromkeys(k for r in rows for k in r))
    with path.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, columns)
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --------------------------------------------------------------------------- round trips


def test_csv_jsonl_and_rows_give_identical_histories(tmp_path):
    rows = four_rows()
    from_rows = load_lead_history(rows)
    from_csv = load_lead_history(write_csv(tmp_path / "lead.csv", rows))
    from_jsonl = load_lead_history(write_jsonl(tmp_path / "lead.jsonl", rows))
    assert from_csv == from_rows
    assert from_jsonl == from_rows
    assert from_csv.name == "lead"
    np.testing.assert_array_equal(from_csv.position_after, [1.0, 2.0, 0.5, 0.0])
    np.testing.assert_array_equal(from_csv.equity, [9_991.2, 10_082.36, 9_969.13, 9_939.73])
    # absent optional values are NaN: only the first row states a stop
    np.testing.assert_array_equal(from_csv.stop_price, [21_000.0, np.nan, np.nan, np.nan])
    assert from_csv.symbols == (BTC,)


@pytest.mark.parametrize("name", ["out.csv", "out.csv.gz", "out.jsonl", "out.ndjson.gz"])
def test_write_then_load_is_exact(tmp_path, name):
    # awkward floats survive because they are written in their shortest exact form
    rows = four_rows()
    rows[1]["equity"] = 10_082.360000000002
    rows[2]["collateral_after"] = 0.1 + 0.2
    history = load_lead_history(rows)
    path = write_lead_history(history, tmp_path / name)
    assert load_lead_history(path) == history
    assert load_lead_history(path).collateral_after[2] == 0.30000000000000004


def test_gzip_output_is_reproducible(tmp_path):
    history = load_lead_history(four_rows())
    a = write_lead_history(history, tmp_path / "a.csv.gz").read_bytes()
    b = write_lead_history(history, tmp_path / "b.csv.gz").read_bytes()
    assert a == b  # no time stamp in the gzip header
    assert gzip.decompress(a).decode() == history_text(history, "csv")


def test_camel_case_and_ccxt_fee_equal_snake_case():
    rows = four_rows()
    camel = [
        {
            "timestamp": r["timestamp"],
            "symbol": r["symbol"],
            "price": r["price"],
            "positionAfter": r["position_after"],
            "equity": r["equity"],
            "leverageSetting": r["leverage_setting"],
            "fee": {"cost": r["fee"], "currency": "USDT"},
            **({"stopPrice": r["stop_price"]} if "stop_price" in r else {}),
        }
        for r in rows
    ]
    assert load_lead_history(camel) == load_lead_history(rows)


def test_fills_form_accumulates_positions(tmp_path):
    # buy 1, buy 0.5, sell 2, buy 0.5: positions 1, 1.5, -0.5, 0 (exact, no 0.1 + 0.2 noise)
    fills = [
        {"timestamp": iso(0), "symbol": BTC, "side": "buy", "amount": 1.0, "price": 100.0,
         "equity": 1_000.0},
        {"timestamp": iso(1), "symbol": BTC, "side": "BUY", "amount": "0.5", "price": 101.0,
         "equity": 1_001.0},
        {"timestamp": iso(2), "symbol": BTC, "side": "sell", "amount": 2.0, "price": 102.0,
         "equity": 1_002.5},
        {"timestamp": iso(3), "symbol": BTC, "side": "buy", "amount": 0.5, "price": 101.0,
         "equity": 1_003.0},
    ]  # fmt: skip
    history = load_lead_history(write_csv(tmp_path / "fills.csv", fills))
    np.testing.assert_array_equal(history.position_after, [1.0, 1.5, -0.5, 0.0])
    np.testing.assert_array_equal(history.position_before, [0.0, 1.0, 1.5, -0.5])
    small = [dict(fills[0], amount=0.1), dict(fills[1], amount=0.2)]
    assert load_lead_history(small).position_after[1] == 0.3


def test_timestamps_iso_and_epoch_milliseconds_agree():
    expected = T0_MS * 1_000_000
    for value in (
        "2023-03-08T00:00:00Z",
        "2023-03-08 00:00:00",  # no offset: UTC
        "2023-03-08T01:00:00+01:00",
        T0_MS,
        str(T0_MS),
        float(T0_MS),
    ):
        assert parse_timestamp(value) == expected, value
    assert parse_timestamp(T0_MS + 0.5) == expected + 500_000  # half a millisecond


def test_symbols_interleave_and_are_ordered_by_time_with_file_order_breaking_ties():
    rows = [
        {"timestamp": iso(2), "symbol": BTC, "price": 1.0, "position_after": 1.0, "equity": 9.0},
        {"timestamp": iso(1), "symbol": XRP, "price": 1.0, "position_after": 1.0, "equity": 9.0},
        {"timestamp": iso(3), "symbol": BTC, "price": 1.0, "position_after": 0.0, "equity": 9.0},
        {"timestamp": iso(3), "symbol": XRP, "price": 1.0, "position_after": 0.0, "equity": 9.0},
    ]
    history = load_lead_history(rows)
    np.testing.assert_array_equal(history.row, [1, 0, 2, 3])
    assert list(history.symbol) == [XRP, BTC, BTC, XRP]
    assert history.symbols == (XRP, BTC)
    assert not history.timestamp.flags.writeable


# --------------------------------------------------------------------------- bad input


def bad(index: int, **changes: Any) -> list[dict[str, Any]]:
    rows = four_rows()
    rows[index].update(changes)
    return [{k: v for k, v in r.items() if v is not ...} for r in rows]


@pytest.mark.parametrize(
    ("rows", "match", "field"),
    [
        (
            bad(2, timestamp=iso(0, 30.0)),
            r"row 2: timestamp .* is earlier than row 1",
            "rows[2].timestamp",
        ),
        (bad(1, timestamp=iso(0)), r"row 1: timestamp .* duplicates row 0", "rows[1].timestamp"),
        (bad(1, price=float("nan")), r"row 1: price is missing \(NaN\)", "rows[1].price"),
        (bad(2, price=-5.0), r"row 2: price is -5\.0; it must be a positive", "rows[2].price"),
        (bad(0, price=0), r"row 0: price is 0\.0", "rows[0].price"),
        (bad(3, equity=0.0), r"row 3: equity is 0\.0; it must be a positive", "rows[3].equity"),
        (bad(1, equity=-1.0), r"row 1: equity is -1\.0", "rows[1].equity"),
        (bad(1, equity=...), r"row 1: equity is missing", "rows[1].equity"),
        (bad(2, levrage=20), r"row 2: unknown column 'levrage'", "rows[2].levrage"),
        (bad(1, price="abc"), r"row 1: price must be a number, got 'abc'", "rows[1].price"),
        (
            bad(0, timestamp="yesterday"),
            r"row 0: .*timestamp 'yesterday' is not ISO 8601",
            "rows[0].timestamp",
        ),
        (
            bad(0, timestamp=1_678_233_659),
            r"row 0: .*not epoch milliseconds \(epoch seconds",
            "rows[0].timestamp",
        ),
        (
            bad(0, stop_price=23_000.0),
            r"row 0: stop_price 23000\.0 must be below the price",
            "rows[0].stop_price",
        ),
        (
            bad(1, collateral_after=-1.0),
            r"row 1: collateral_after is -1\.0; it must be a non-negative",
            "rows[1].collateral_after",
        ),
        (
            bad(2, position_after=float("inf")),
            r"row 2: position_after is inf",
            "rows[2].position_after",
        ),
        (bad(1, symbol=""), r"row 1: symbol is missing", "rows[1].symbol"),
        (
            bad(1, positionAfter=2.0),
            r"row 1: position_after is given twice",
            "rows[1].position_after",
        ),
        (
            bad(1, side="buy", amount=1.0, position_after=...),
            r"row 1: this row is in the fills form",
            "rows[1]",
        ),
    ],
)
def test_bad_rows_name_row_and_field(rows, match, field):
    with pytest.raises(InvalidInput, match=match) as err:
        load_lead_history(rows)
    assert err.value.field == field


def test_same_instant_in_two_symbols_is_fine():
    rows = bad(1, symbol=XRP, timestamp=iso(0))
    assert len(load_lead_history(rows)) == 4


def test_csv_errors_name_the_file_line(tmp_path):
    rows = bad(2, price=-5.0)
    with pytest.raises(InvalidInput, match=r"row 2 \(line 4\): price is -5\.0"):
        load_lead_history(write_csv(tmp_path / "lead.csv", rows))
    (tmp_path / "extra.csv").write_text("timestamp,symbol,price,position_after,equity,lev\n")
    with pytest.raises(InvalidInput, match=r"unknown column 'lev'") as err:
        load_lead_history(tmp_path / "extra.csv")
    assert err.value.field == "lev"


def test_malformed_json_lines_name_the_row_and_line(tmp_path):
    lines = [json.dumps(r) for r in four_rows()]
    lines[1] = lines[1][:-1]  # cut the closing brace
    path = tmp_path / "lead.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InvalidInput, match=r"row 1 \(line 2\): not valid JSON") as err:
        load_lead_history(path)
    assert err.value.field == "rows[1]"
    path.write_text(json.dumps(four_rows()[0]) + "\n\n[1, 2]\n")  # blank lines are skipped
    with pytest.raises(InvalidInput, match=r"row 1 \(line 3\): each line must be a JSON object"):
        load_lead_history(path)


def test_file_problems(tmp_path):
    with pytest.raises(InvalidInput, match=r"must end in \.csv"):
        load_lead_history(tmp_path / "lead.txt")
    with pytest.raises(InvalidInput, match="cannot read lead history"):
        load_lead_history(tmp_path / "missing.csv")
    with pytest.raises(InvalidInput, match="no rows"):
        load_lead_history([])


def test_unknown_symbol_for_the_markets(markets):
    rows = [dict(r, symbol="FOO/USDT:USDT") for r in four_rows()]
    with pytest.raises(InvalidInput, match=r"unknown symbol 'FOO/USDT:USDT'") as err:
        load_lead_history(rows, markets=markets)
    assert err.value.field == "rows[0].symbol"
    history = load_lead_history(rows)  # fine without markets ...
    with pytest.raises(InvalidInput, match="unknown symbol"):
        next(history.events(markets))  # ... but not as events


def test_position_off_the_lot_grid_errors_warns_or_passes(markets):
    rows = bad(1, position_after=2.0005)  # 2,000.5 steps of 0.001
    with pytest.raises(InvalidInput, match=r"row 1: position_after 2\.0005 is not a whole") as err:
        load_lead_history(rows, markets=markets)
    assert err.value.field == "rows[1].position_after"
    with pytest.warns(LotSizeWarning, match=r"2000\.5 steps"):
        load_lead_history(rows, markets=markets, lot_check="warn")
    assert len(load_lead_history(rows, markets=markets, lot_check="off")) == 4
    # a position exactly on the grid passes: 1,234 lots of 0.001
    assert len(load_lead_history(bad(1, position_after=1.234), markets=markets)) == 4
    with pytest.raises(InvalidInput, match="lot_check must be"):
        load_lead_history(rows, markets=markets, lot_check="maybe")  # type: ignore[arg-type]


# --------------------------------------------------------------------------- events


def test_four_rows_to_events_by_hand(markets):
    history = load_lead_history(four_rows(), markets=markets, name="doc")
    events = list(history.events(markets))
    spec = markets[BTC]

    assert [e.event_id for e in events] == ["doc-0", "doc-1", "doc-2", "doc-3"]
    assert [(e.lead_position_before, e.lead_position_after) for e in events] == [
        (0.0, 1.0),
        (1.0, 2.0),
        (2.0, 0.5),
        (0.5, 0.0),
    ]
    assert [e.lead_equity for e in events] == [9_991.2, 10_082.36, 9_969.13, 9_939.73]
    # notional after each fill: 1 x 22,000; 2 x 22,100; 0.5 x 22,050; flat
    assert [e.lead_total_notional for e in events] == [22_000.0, 44_200.0, 11_025.0, 0.0]
    assert [e.lead_stop_price for e in events] == [21_000.0, None, None, None]
    assert all(e.lead_leverage_setting == 20.0 for e in events)
    assert all(e.lead_collateral_before is None for e in events)  # cross margin
    # 2023-03-08T00:00:59.999Z in epoch milliseconds
    assert events[0].timestamp == T0_MS + 59_999
    assert events[3].timestamp == T0_MS + 3 * 60_000 + 59_999

    digested = [prepare_event(e, spec, spec) for e in events]
    kinds = [EVENT_KINDS[int(ev[nk.E_KIND])] for ev in digested]
    assert kinds == ["open", "increase", "reduce", "close"]
    assert digested[2][nk.E_PHI] == pytest.approx(0.75)  # 2 -> 0.5 cuts 75%


def test_collateral_before_after_and_margin_events(markets):
    # isolated lead: open with 1,000 margin, add 500 margin (same position), close
    rows = [
        {"timestamp": iso(0), "symbol": BTC, "price": 20_000.0, "position_after": 0.5,
         "equity": 5_000.0, "collateral_after": 1_000.0},
        {"timestamp": iso(1), "symbol": BTC, "price": 19_900.0, "position_after": 0.5,
         "equity": 4_950.0, "collateral_after": 1_500.0},
        {"timestamp": iso(2), "symbol": BTC, "price": 19_800.0, "position_after": 0.0,
         "equity": 4_900.0, "collateral_after": 0.0},
    ]  # fmt: skip
    events = list(load_lead_history(rows).events(markets))
    assert [(e.lead_collateral_before, e.lead_collateral_after) for e in events] == [
        (0.0, 1_000.0),
        (1_000.0, 1_500.0),
        (1_500.0, 0.0),
    ]
    spec = markets[BTC]
    margin = prepare_event(events[1], spec, spec)
    assert EVENT_KINDS[int(margin[nk.E_KIND])] == "margin"
    assert margin[nk.E_MARGIN_RATIO] == pytest.approx(1.5)


def test_total_notional_sums_every_symbol_at_its_last_fill(markets):
    rows = [
        {"timestamp": iso(0), "symbol": BTC, "price": 20_000.0, "position_after": 0.5,
         "equity": 10_000.0},
        {"timestamp": iso(1), "symbol": XRP, "price": 0.5, "position_after": -4_000.0,
         "equity": 9_990.0},
        {"timestamp": iso(2), "symbol": BTC, "price": 21_000.0, "position_after": 0.25,
         "equity": 10_400.0},
        {"timestamp": iso(3), "symbol": XRP, "price": 0.45, "position_after": 0.0,
         "equity": 10_600.0},
    ]  # fmt: skip
    events = list(load_lead_history(rows).events(markets))
    # 0.5 x 20,000; + 4,000 x 0.5; 0.25 x 21,000 + 4,000 x 0.5 (XRP at its last fill); BTC only
    assert [e.lead_total_notional for e in events] == [10_000.0, 12_000.0, 7_250.0, 5_250.0]
    assert [e.lead_position_before for e in events] == [0.0, 0.0, 0.5, -4_000.0]


def test_documented_example_is_valid_and_marked_to_market(markets):
    text = DOC.read_text()
    block = re.search(r"```csv\n(timestamp,symbol,price,position_after.*?)```", text, re.S)
    assert block is not None
    rows = list(csv.DictReader(io.StringIO(block.group(1))))
    history = load_lead_history(rows, markets=markets)
    assert history == load_lead_history(four_rows())
    # equity identity: E_j = E_{j-1} + q_{j-1} (p_j - p_{j-1}) - fee_j, from 10,000
    equity, q, p = 10_000.0, 0.0, 0.0
    for j in range(len(history)):
        equity += q * (history.price[j] - p) - history.fee[j]
        assert history.equity[j] == pytest.approx(equity, abs=1e-9)
        q, p = history.position_after[j], history.price[j]
    jsonl = re.search(r"```json\n(.*?)```", text, re.S)
    assert jsonl is not None
    two = load_lead_history([json.loads(line) for line in jsonl.group(1).splitlines()])
    assert two == load_lead_history(four_rows()[:2])


def collect(source: LeadHistorySource) -> list[Any]:
    async def run() -> list[Any]:
        return [item async for item in source.events()]

    return asyncio.run(run())


def test_history_source_yields_state_then_events_and_resumes_after_a_cursor(markets):
    history = load_lead_history(four_rows())
    source = LeadHistorySource(history, markets)
    assert isinstance(source, LeadSource)
    state, *items = collect(source)
    # the lead before its first fill: flat, with the first row's equity plus its fee
    assert state == LeadState(T0_MS + 59_999, 9_991.2 + 8.8, {}, True)
    assert [i.event.event_id for i in items] == [e.event_id for e in history.events(markets)]
    assert [(i.cursor, i.trade_ids) for i in items] == [(str(j), (j,)) for j in range(4)]
    # after the second event's cursor: the lead holds 2 BTC bought last at 22,100
    resumed = LeadHistorySource(history, markets, cursor=items[1].cursor)
    state, *rest = collect(resumed)
    assert state == LeadState(T0_MS + 60_000 + 59_999, 10_082.36, {BTC: 2.0}, True, {BTC: 22_100.0})
    assert [i.event.event_id for i in rest] == [i.event.event_id for i in items[2:]]
    assert collect(LeadHistorySource(history, markets, cursor="3"))[1:] == []


def test_history_source_rejects_a_foreign_cursor(markets):
    history = load_lead_history(four_rows())
    for cursor in ("4", "-1", "abc"):
        with pytest.raises(InvalidInput, match="is not a row of this lead history") as info:
            LeadHistorySource(history, markets, cursor=cursor)
        assert info.value.field == "cursor"
