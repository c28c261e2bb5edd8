"""De-risking (levalign.normalize.derisk and the venue's walk): hand values and properties."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from levalign.errors import InvalidInput
from levalign.margin import margin_report
from levalign.markets import Markets, MarketSpec, load_markets
from levalign.normalize import Reason, derisk, normalize
from levalign.venues.paper import PaperVenue, SlippageModel

SYMBOL = "BTC/USDT:USDT"
SPEC: MarketSpec = dataclasses.replace(
    load_markets("binance")[SYMBOL], amount_step=0.001, min_amount=0.001, min_cost=100.0
)
MARKETS = Markets("binance", {SYMBOL: SPEC})
# Bybit takes maintenance margin at the entry value (BybitMarginModel), taker 0.055%
BYBIT = Markets(
    "bybit", {SYMBOL: dataclasses.replace(SPEC, margin_family="bybit", taker_fee=0.00055)}
)
MINUTE = 60_000_000_000


def long_btc(**row: Any) -> dict[str, list[Any]]:
    """One follower long 1 BTC from 20,000 (defaults overridden by ``row``)."""
    base: dict[str, Any] = {
        "id": "f",
        "equity": 4_500.0,
        "position": 1.0,
        "entry_price": 20_000.0,
        "collateral": 1_000.0,
        "margin_mode": "isolated",
        "derisk_distance": 0.03,
        "min_liq_distance": 0.05,
    }
    base.update(row)
    return {k: [v] for k, v in base.items()}


def engine_distance(
    side: str,
    contracts: float,
    entry: float,
    mark: float,
    mode: str,
    collateral: float,
    markets: Markets = MARKETS,
) -> float:
    """Liquidation distance at ``mark`` by the scalar margin engine (an independent path)."""
    sign = 1.0 if side == "long" else -1.0
    margin = collateral
    if markets.family == "bybit":
        # Bybit reports the margin plus the fee to close at the bankruptcy price
        # (BybitMarginModel's docstring): PM = B (1 - s f) + f Q EP
        fee = markets[SYMBOL].taker_fee or 0.0
        margin = collateral * (1.0 - sign * fee) + fee * contracts * entry
    account = {
        "exchange": markets.exchange,
        # an isolated position's liquidation depends on its collateral only; the wallet
        # behind it is made large so that the account itself is never bankrupt
        "wallet_balance": collateral + 1e12 if mode == "isolated" else collateral,
        "positions": [
            {
                "symbol": SYMBOL,
                "side": side,
                "contracts": contracts,
                "entry_price": entry,
                "mark_price": mark,
                "margin_mode": mode,
                "position_margin": margin if mode == "isolated" else None,
            }
        ],
    }
    lp = margin_report(account, markets).positions[0].liquidation_price
    # signed: negative when the mark is already past the liquidation price
    return math.inf if lp is None else sign * (mark - lp) / mark


def test_isolated_reduce_keeps_the_largest_position_that_is_5pct_from_liquidation():
    # Long 1 BTC from 20,000 on 1,000 isolated margin (20x): liquidation at
    # 20,000 (1 - 0.05) / (1 - 0.004) = 19,076.31, 2.17% below 19,500, inside the 3% floor.
    # Margin balance at 19,500: 1,000 - 500 = 500. Restoring 5% needs, per BTC kept,
    # 19,500 * 0.05 + 19,500 * 0.95 * 0.004 = 975 + 74.1 = 1,049.1: keep 500 / 1,049.1 =
    # 0.4766 BTC, so cut 0.5234, rounded up to 0.524 (whole lots, the safe side); 0.476 left.
    # Its margin after the pro-rata release, 476, plus the 0.476 * -500 = -238 PnL, must be
    # 0.476 * 1,049.1 = 499.37: post back 499.37 + 238 - 476 = 261.37.
    r = derisk(SYMBOL, 19_500.0, long_btc(), MARKETS)
    assert r["side"][0] == -1
    assert r["amount"][0] == pytest.approx(0.524)
    assert r["reduce_only"][0]
    assert r["target_position"][0] == pytest.approx(0.476)
    assert r["collateral"][0] == pytest.approx(0.476 * 1_049.1 + 238.0 - 476.0)
    assert r["reasons"][0] == Reason.DERISK
    # liquidation is then exactly 5% below: 19,500 * 0.95
    assert r["liquidation_price"][0] == pytest.approx(18_525.0)
    assert r["liquidation_distance"][0] == pytest.approx(0.05)


def test_isolated_add_margin_tops_up_from_the_free_balance_first():
    # the same follower, add_margin: 1 BTC needs 1,049.1 at 19,500 for 5%; it has 500:
    # post 549.10 (free balance 4,500 + 500 - 1,000 = 4,000 is enough), no order
    r = derisk(SYMBOL, 19_500.0, long_btc(derisk="add_margin", available_balance=4_000.0), MARKETS)
    assert r["side"][0] == 0
    assert r["amount"][0] == 0.0
    assert r["collateral"][0] == pytest.approx(549.1)
    assert r["reasons"][0] == Reason.DERISK | Reason.MARGIN_TOPUP
    assert r["liquidation_distance"][0] == pytest.approx(0.05)


def test_add_margin_short_of_free_balance_reduces_the_rest():
    # 200 free: balance 500 + 200 = 700 keeps 700 / 1,049.1 = 0.6672 BTC -> cut 0.333
    r = derisk(SYMBOL, 19_500.0, long_btc(derisk="add_margin", available_balance=200.0), MARKETS)
    assert r["amount"][0] == pytest.approx(0.333)
    assert r["reasons"][0] & Reason.AVAILABLE_MARGIN
    assert r["liquidation_distance"][0] >= 0.05 - 1e-12


def test_bybit_reduce_prices_maintenance_margin_at_the_entry_value():
    # The long of the test above on Bybit: liquidation where the margin balance meets
    # MM(Q EP) = 20,000 * 0.004 = 80 per BTC (Bybit's rule): LP = 20,000 - (1,000 - 80) =
    # 19,080, 2.15% below 19,500, inside the 3% floor. Restoring 5% needs, per BTC kept,
    # 19,500 * 0.05 + 80 = 1,055 of the 500 balance: keep 500 / 1,055 = 0.47393 BTC, cut
    # 0.52607 -> 0.527 (rounded up), 0.473 left. Its margin after the pro-rata release, 473,
    # plus the 0.473 * -500 = -236.5 PnL must be 0.473 * 1,055 = 499.015: post back
    # 499.015 + 236.5 - 473 = 262.515; liquidation then exactly 5% below 19,500: 18,525.
    r = derisk(SYMBOL, 19_500.0, long_btc(), BYBIT)
    assert r["amount"][0] == pytest.approx(0.527)
    assert r["target_position"][0] == pytest.approx(0.473)
    assert r["collateral"][0] == pytest.approx(262.515)
    assert r["liquidation_price"][0] == pytest.approx(18_525.0)


def test_cross_short_is_cut_until_liquidation_is_back_at_the_floor():
    # Short 2 BTC from 20,000 with 2,000 of cross equity at 20,400 (wallet 2,800, PnL -800):
    # liquidation where 2,000 - 2 (x - 20,400) = 0.004 * 2 x -> x = 21,354.58, 4.68% above,
    # inside a 6% floor with no buffer: restore 6%. Per BTC, 20,400 * 0.06 + 20,400 * 1.06 *
    # 0.004 = 1,224 + 86.496 = 1,310.496: keep 2,000 / 1,310.496 = 1.52614, cut 0.47386 ->
    # 0.474 (rounded up), 1.526 left.
    rows = long_btc(
        equity=2_000.0,
        position=-2.0,
        collateral=0.0,
        margin_mode="cross",
        derisk_distance=0.06,
        min_liq_distance=math.nan,
    )
    r = derisk(SYMBOL, 20_400.0, rows, MARKETS)
    assert r["side"][0] == 1
    assert r["amount"][0] == pytest.approx(0.474)
    assert r["target_position"][0] == pytest.approx(-1.526)
    assert r["collateral"][0] == 0.0
    assert r["liquidation_distance"][0] >= 0.06


def test_followers_outside_their_floor_flat_or_without_one_are_left_alone():
    rows = {
        "id": ["outside", "flat", "no floor"],
        "equity": [9_000.0, 1_000.0, 4_500.0],
        "position": [1.0, 0.0, 1.0],
        "entry_price": [20_000.0, math.nan, 20_000.0],
        "collateral": [5_000.0, 0.0, 1_000.0],
        "derisk_distance": [0.03, 0.03, math.nan],
    }
    r = derisk(SYMBOL, 19_500.0, rows, MARKETS)
    assert (r["side"] == 0).all()
    assert (r["amount"] == 0).all()
    assert (r["reasons"] == Reason.NO_LEAD_CHANGE).all()


def test_a_bad_row_is_flagged_and_the_rest_still_derisked():
    rows = long_btc()
    rows = {k: [*v, v[0]] for k, v in rows.items()}
    rows["id"] = ["bad", "good"]
    rows["equity"] = [-1.0, 4_500.0]
    r = derisk(SYMBOL, 19_500.0, rows, MARKETS)
    assert r["reasons"][0] == Reason.INVALID_ROW
    assert r["reasons"][1] == Reason.DERISK


@pytest.mark.parametrize("price", [math.nan, -1.0, 0.0, math.inf])
def test_bad_price_is_rejected(price: float):
    with pytest.raises(InvalidInput, match="positive finite") as info:
        derisk(SYMBOL, price, long_btc(), MARKETS)
    assert info.value.field == "price"


def test_unknown_symbol_is_rejected():
    with pytest.raises(InvalidInput, match="DOGE"):
        derisk("DOGE/EUR:EUR", 1.0, long_btc(), MARKETS)


@pytest.mark.parametrize("markets", [MARKETS, BYBIT], ids=["binance", "bybit"])
@given(
    side=st.sampled_from([1.0, -1.0]),
    lots=st.integers(1, 50_000),
    leverage=st.floats(2.0, 100.0),
    move=st.floats(-0.08, 0.08),
    floor=st.floats(0.005, 0.2),
    extra=st.floats(0.0, 0.1),
    cross=st.booleans(),
    add_margin=st.booleans(),
    free=st.floats(0.0, 5e5),
)
def test_after_derisking_liquidation_is_at_least_the_restore_distance_away(
    markets, side, lots, leverage, move, floor, extra, cross, add_margin, free
):
    # Any position, any move: when the follower is cut or topped up, what is left (priced by
    # the scalar margin engine) is at least max(floor, buffer) from liquidation; amounts are
    # whole lots, reduce-only, never beyond the position; no order when outside the floor.
    # On Bybit, by its rule: maintenance margin at the entry value.
    contracts = lots * 0.001
    entry = 20_000.0
    mark = entry * (1.0 + move)
    margin = contracts * entry / leverage
    upnl = side * contracts * (mark - entry)
    equity = (margin if cross else margin + free) + upnl
    if equity <= 0.0:
        return
    rows = long_btc(
        equity=equity,
        available_balance=free,
        position=side * contracts,
        collateral=0.0 if cross else margin,
        margin_mode="cross" if cross else "isolated",
        derisk_distance=floor,
        min_liq_distance=floor + extra,
        derisk="add_margin" if add_margin else "reduce",
    )
    r = derisk(SYMBOL, mark, rows, markets)
    mode = "cross" if cross else "isolated"
    before = engine_distance(
        "long" if side > 0 else "short",
        contracts,
        entry,
        mark,
        mode,
        equity - upnl if cross else margin,
        markets,
    )
    amount, left = float(r["amount"][0]), float(r["target_position"][0])
    event("derisked" if r["reasons"][0] & Reason.DERISK else "outside the floor")
    if not r["reasons"][0] & Reason.DERISK:
        assert before >= floor * (1 - 1e-9)
        assert amount == 0.0
        return
    assert before < floor * (1 + 1e-9)
    assert amount == pytest.approx(round(amount / 0.001) * 0.001, abs=1e-12)
    assert amount <= contracts + 1e-12
    assert r["reduce_only"][0] == (amount > 0.0)
    if amount > 0.0:
        assert r["side"][0] == -side
    if left == 0.0:
        return
    assert math.copysign(1.0, left) == side
    kept = abs(left)
    # cross: the cut realizes PnL at the mark, so equity is unchanged and the wallet is equity
    # less the PnL kept; isolated: the collateral left after the pro-rata release plus the post
    behind = (
        equity - side * kept * (mark - entry)
        if cross
        else margin * kept / contracts + float(r["collateral"][0])
    )
    after = engine_distance(
        "long" if side > 0 else "short", kept, entry, mark, mode, behind, markets
    )
    # the isolated post is rounded down to 1e-8 of the settle currency: at most 1e-8 less
    # margin behind kept * mark of notional moves liquidation 1e-8 / (kept * mark) nearer
    settle = 0.0 if cross else 1e-8 / (kept * mark)
    assert after >= (floor + extra) * (1 - 1e-9) - settle


def test_venue_derisks_at_the_bar_mark_and_survives_a_crash_that_liquidates_without():
    # Two 20x longs of 5 BTC from 20,000 (isolated, 4,854 posted of 5,000); BTC falls 15% in
    # 60 one-minute bars. Without a floor the position is liquidated near 19,117; with a 3%
    # floor the venue cuts it at each bar's close that comes within 3% of liquidation,
    # posting the freed margin back, so its liquidation price trails 3% under the close and
    # the low (0.1% under the close) never reaches it.
    venue = PaperVenue.from_cohort(
        {
            "id": ["floor", "none"],
            "equity": [5_000.0, 5_000.0],
            "derisk_distance": [0.03, math.nan],
        },
        SPEC,
        slippage=SlippageModel(fixed_bps=0.0),
    )
    event = {
        "event_id": "open",
        "timestamp": 0,
        "symbol": SYMBOL,
        "price": 20_000.0,
        "lead_equity": 100_000.0,
        "lead_position_before": 0.0,
        "lead_position_after": 100.0,
    }
    venue.execute(normalize(event, venue.cohort(20_000.0), MARKETS), 20_000.0, 0)
    closes = np.linspace(20_000.0, 17_000.0, 61)[1:]
    out = venue.advance(
        {
            "timestamp": np.arange(1, 61) * MINUTE,
            "high": closes * 1.001,
            "low": closes * 0.999,
            "close": closes,
        }
    )
    assert out.liquidated_bar.tolist()[1] >= 0
    assert venue.liquidations.tolist() == [0, 1]
    assert venue.derisks[0] > 10
    assert venue.derisks[1] == 0
    # what is left is 3% (to rounding, on the safe side) from liquidation at the last close
    lp = venue.liquidation_price[0]
    assert 0 < venue.position[0] < 5.0
    assert (17_000.0 - lp) / 17_000.0 >= 0.03 - 1e-12
    # de-risking paid fees, and the accounting identity still holds to the cent
    assert venue.fees[0] > venue.fees[1]
    assert abs(venue.accounting_residual(17_000.0)[0]) < 1e-6


def test_venue_rejects_a_floor_outside_zero_one():
    with pytest.raises(InvalidInput, match="derisk_distance") as info:
        PaperVenue.from_cohort({"id": ["a"], "equity": [1.0], "derisk_distance": [1.5]}, SPEC)
    assert info.value.field == "followers.derisk_distance[0]"
