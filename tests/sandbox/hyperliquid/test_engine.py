"""Order rules, fills and margin of the sandbox's exchange, with hand-derived expectations.

Markets: the bundled Hyperliquid preset; BTC is asset 0 with szDecimals 5 (prices: at most
5 significant figures and 6 - 5 = 1 decimal), maxLeverage 40, default leverage 20.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from levalign.sandbox.hyperliquid._engine import Asset, Engine, fmt

USER = "0x00000000000000000000000000000000000000aa"


def wire(
    sz: str,
    px: str,
    *,
    buy: bool = True,
    tif: str = "Gtc",
    reduce_only: bool = False,
    cloid: str | None = None,
) -> dict[str, Any]:
    out: dict[str, Any] = {
        "a": 0,
        "b": buy,
        "p": px,
        "s": sz,
        "r": reduce_only,
        "t": {"limit": {"tif": tif}},
    }
    if cloid is not None:
        out["c"] = cloid
    return out


@pytest.fixture
def engine() -> Engine:
    e = Engine()
    e.set_mid("BTC", Decimal(20000))
    e.fund(USER, Decimal(1000))
    return e


def test_fmt_writes_hyperliquid_decimal_strings():
    assert fmt(Decimal("3")) == "3.0"
    assert fmt(Decimal("0.0100")) == "0.01"
    assert fmt(Decimal("-0")) == "0.0"
    assert fmt(Decimal("1E+5")) == "100000.0"


@pytest.mark.parametrize(
    ("px", "valid"),
    [
        ("20000.5", False),  # 6 significant figures
        ("2000.5", True),  # 5 significant figures, 1 decimal
        ("200.05", False),  # 2 decimals > 6 - szDecimals = 1
        ("123456", True),  # integers are always valid
        ("0.1", True),
    ],
)
def test_btc_price_rule(engine: Engine, px: str, valid: bool):
    assert engine.by_coin["BTC"].valid_price(Decimal(px)) is valid


def test_round_price_keeps_five_significant_figures_and_the_decimal_cap(engine: Engine):
    btc: Asset = engine.by_coin["BTC"]
    # 23142.31 -> 5 significant figures -> 23142
    assert btc.round_price(Decimal("23142.31")) == Decimal("23142")
    # 1234.567 -> 5 significant figures would keep 1 decimal: 1234.6
    assert btc.round_price(Decimal("1234.567")) == Decimal("1234.6")
    # 1.23456 -> 5 significant figures are 4 decimals, capped at 1: 1.2
    assert btc.round_price(Decimal("1.23456")) == Decimal("1.2")


def test_off_tick_price_is_rejected_with_hyperliquids_message(engine: Engine):
    status, record = engine.place(USER, wire("0.01", "20000.5"))
    assert status == {"error": "Price must be divisible by tick size. asset=0"}
    assert record is not None
    assert record.status == "tickRejected"


def test_size_with_more_than_sz_decimals_is_invalid(engine: Engine):
    status, _ = engine.place(USER, wire("0.000001", "20000"))  # 6 decimals > 5
    assert status == {"error": "Order has invalid size."}


def test_order_under_ten_dollars_is_rejected(engine: Engine):
    # 0.0004 * 20000 = 8 < 10
    status, _ = engine.place(USER, wire("0.0004", "20000"))
    assert status == {"error": "Order must have minimum value of $10. asset=0"}


def test_reduce_only_without_position_is_rejected(engine: Engine):
    status, _ = engine.place(USER, wire("0.01", "19000", buy=False, reduce_only=True))
    assert status == {"error": "Reduce only order would increase position. asset=0"}


def test_margin_check_uses_the_default_leverage(engine: Engine):
    # 0.0501 BTC at mid 20000 = 1002 notional / 20x = 50.1 <= 1000 free: fills;
    # then 1.0 BTC = 20000 / 20 = 1000 > 1000 - 50.1 - fee: refused
    ok, _ = engine.place(USER, wire("0.0501", "20000"))
    assert "filled" in ok
    refused, _ = engine.place(USER, wire("1.0", "20000"))
    assert refused == {"error": "Insufficient margin to place order. asset=0"}


def test_taker_fill_at_mid_with_fee_and_closed_pnl(engine: Engine):
    # buy 0.01 at mid 20000: fee 20000 * 0.01 * 0.00045 = 0.09
    status, _ = engine.place(USER, wire("0.01", "20100", cloid="0x" + "ab" * 16))
    assert status == {
        "filled": {"totalSz": "0.01", "avgPx": "20000.0", "oid": 1, "cloid": "0x" + "ab" * 16}
    }
    engine.set_mid("BTC", Decimal(21000))
    # sell 0.004 at 21000: closed PnL (21000 - 20000) * 0.004 = 4; fee 21000 * 0.004 * 0.00045
    # = 0.0378
    engine.place(USER, wire("0.004", "20000", buy=False, tif="Ioc"))
    fills = engine.user_fills(USER)
    assert [f["dir"] for f in fills] == ["Close Long", "Open Long"]
    assert fills[0]["closedPnl"] == "4.0"
    assert fills[0]["fee"] == "0.0378"
    assert fills[0]["startPosition"] == "0.01"
    assert fills[1]["fee"] == "0.09"
    state = engine.clearinghouse_state(USER)
    # cash 1000 - 0.09 + 4 - 0.0378 = 1003.8722; uPnL 0.006 * 1000 = 6
    assert state["marginSummary"]["accountValue"] == "1009.8722"
    assert state["assetPositions"][0]["position"]["szi"] == "0.006"
    assert state["assetPositions"][0]["position"]["entryPx"] == "20000.0"


def test_ioc_that_does_not_cross_is_cancelled(engine: Engine):
    status, record = engine.place(USER, wire("0.01", "19000", tif="Ioc"))
    assert status == {
        "error": "Order could not immediately match against any resting orders. asset=0"
    }
    assert record is not None
    assert record.status == "iocCancelRejected"


def test_post_only_that_would_cross_is_rejected(engine: Engine):
    status, _ = engine.place(USER, wire("0.01", "20100", tif="Alo"))
    assert status == {
        "error": "Post only order would have immediately matched, bbo was 20000.0@20000.0. asset=0"
    }


def test_resting_order_fills_at_its_limit_as_maker_when_the_mid_reaches_it(engine: Engine):
    status, _ = engine.place(USER, wire("0.01", "19500"))
    assert status == {"resting": {"oid": 1}}
    engine.set_mid("BTC", Decimal(19400))
    fill = engine.user_fills(USER)[0]
    # maker fee 19500 * 0.01 * 0.00015 = 0.02925
    assert (fill["px"], fill["crossed"], fill["fee"]) == ("19500.0", False, "0.02925")
    assert engine.order_status(USER, 1)["order"]["status"] == "filled"


def test_reduce_only_is_clipped_to_the_position(engine: Engine):
    engine.place(USER, wire("0.01", "20000"))
    status, _ = engine.place(USER, wire("0.02", "19000", buy=False, reduce_only=True))
    assert status["filled"]["totalSz"] == "0.01"
    assert engine.clearinghouse_state(USER)["assetPositions"] == []


def test_flip_sets_the_entry_at_the_fill_price(engine: Engine):
    engine.place(USER, wire("0.01", "20000"))
    engine.set_mid("BTC", Decimal(20500))
    engine.place(USER, wire("0.03", "20000", buy=False))
    fill = engine.user_fills(USER)[0]
    # closes 0.01 at +500: closed PnL 5; opens 0.02 short at 20500
    assert (fill["dir"], fill["closedPnl"]) == ("Long > Short", "5.0")
    pos = engine.clearinghouse_state(USER)["assetPositions"][0]["position"]
    assert (pos["szi"], pos["entryPx"]) == ("-0.02", "20500.0")


def test_isolated_margin_moves_with_the_position(engine: Engine):
    assert engine.update_leverage(USER, 0, False, 10) is None
    engine.place(USER, wire("0.01", "20000"))
    pos = engine.clearinghouse_state(USER)["assetPositions"][0]["position"]
    # isolated margin 0.01 * 20000 / 10 = 20; rawUsd = 20 - 0.01 * 20000 = -180
    assert pos["leverage"] == {"type": "isolated", "value": 10, "rawUsd": "-180.0"}
    assert pos["marginUsed"] == "20.0"
    assert engine.update_isolated_margin(USER, 0, 5_000_000) is None  # + 5 USDC
    pos = engine.clearinghouse_state(USER)["assetPositions"][0]["position"]
    assert pos["marginUsed"] == "25.0"
    assert engine.update_leverage(USER, 0, True, 10) == (
        "Cannot switch leverage type with open position."
    )


def test_leverage_above_the_maximum_is_refused(engine: Engine):
    assert engine.update_leverage(USER, 0, True, 41) == "Invalid leverage value."


def test_cancel_twice(engine: Engine):
    engine.place(USER, wire("0.01", "19000"))
    assert engine.cancel(USER, 0, 1, None) == "success"
    assert engine.cancel(USER, 0, 1, None) == {
        "error": "Order was never placed, already canceled, or filled. asset=0"
    }


def test_lead_fill_sets_position_and_equity(engine: Engine):
    lead = "0x1ead000000000000000000000000000000000001"
    engine.lead_fill(lead, "BTC", Decimal(23000), Decimal("1.5"), equity=Decimal("5000.25"))
    state = engine.clearinghouse_state(lead)
    assert state["assetPositions"][0]["position"]["szi"] == "1.5"
    assert state["marginSummary"]["accountValue"] == "5000.25"
    assert engine.all_mids()["BTC"] == "23000.0"


def test_lead_fill_in_parts_is_one_order(engine: Engine):
    lead = "0x1ead000000000000000000000000000000000001"
    # 1.5 in 4 parts on the 0.1 grid: 15 units -> 3, 3, 3 and the remaining 6
    fills = engine.lead_fill(lead, "BTC", Decimal(23000), Decimal("1.5"), parts=4)
    assert [f["sz"] for f in fills] == ["0.3", "0.3", "0.3", "0.6"]
    assert len({f["oid"] for f in fills}) == 1
    assert [f["startPosition"] for f in fills] == ["0.0", "0.3", "0.6", "0.9"]


def test_cross_position_is_liquidated_at_its_liquidation_price():
    engine = Engine()
    engine.set_mid("BTC", Decimal(20000))
    engine.fund(USER, Decimal(100))
    # 0.1 BTC at 20000, 20x: margin 100 (all of it); fee 0.9 -> cash 99.1
    assert "filled" in engine.place(USER, wire("0.1", "20000"))[0]
    # maintenance rate 1 / (2 * 40) = 0.0125; liquidation where
    # 99.1 + 0.1 (x - 20000) = 0.1 x 0.0125  ->  x = 1900.9 / 0.09875 = 19249.62025316...
    pos = engine.clearinghouse_state(USER)["assetPositions"][0]["position"]
    assert pos["liquidationPx"] == "19249.62025316"
    engine.set_mid("BTC", Decimal(19300))  # above it: nothing happens
    assert engine.clearinghouse_state(USER)["assetPositions"] != []
    engine.set_mid("BTC", Decimal(19200))
    fill = engine.user_fills(USER)[0]
    # closed at the mid: PnL 0.1 * (19200 - 20000) = -80; fee 19200 * 0.1 * 0.00045 = 0.864
    assert (fill["side"], fill["px"], fill["closedPnl"], fill["fee"]) == (
        "A",
        "19200.0",
        "-80.0",
        "0.864",
    )
    assert fill["liquidation"]["liquidatedUser"] == USER
    state = engine.clearinghouse_state(USER)
    assert state["assetPositions"] == []
    assert state["marginSummary"]["accountValue"] == "18.236"  # 99.1 - 80 - 0.864


def test_isolated_position_is_liquidated_alone(engine: Engine):
    engine.update_leverage(USER, 0, False, 10)
    engine.place(USER, wire("0.01", "20000"))
    # isolated margin 20: 20 + 0.01 (x - 20000) = 0.01 x 0.0125  ->  x = 180 / 0.009875
    # = 18227.85...
    engine.set_mid("BTC", Decimal(18300))
    assert engine.clearinghouse_state(USER)["assetPositions"] != []
    engine.set_mid("BTC", Decimal(18200))
    assert engine.clearinghouse_state(USER)["assetPositions"] == []
    # 1000 - 0.09 (open fee) - 18 (PnL) - 0.0819 (fee at 18200)
    assert engine.clearinghouse_state(USER)["marginSummary"]["accountValue"] == "981.8281"


def test_exempt_accounts_are_never_liquidated():
    engine = Engine()
    engine.exempt.add(USER)
    engine.set_mid("BTC", Decimal(20000))
    engine.fund(USER, Decimal(100))
    engine.place(USER, wire("0.1", "20000"))
    engine.set_mid("BTC", Decimal(15000))
    assert engine.clearinghouse_state(USER)["assetPositions"] != []
