"""The decision shared by the backtest and the live engine, against normalize and derisk."""

from __future__ import annotations

import numpy as np
import pytest

from levalign.engine.decide import CopyRules, decide, decide_price
from levalign.markets import Markets
from levalign.normalize import Cohort, NormalizeResult, Reason, derisk, normalize
from levalign.samples import sample_cohort
from levalign.schemas import LeadEvent

SYMBOL = "BTC/USDT:USDT"
OPEN = LeadEvent(
    event_id="open",
    symbol=SYMBOL,
    price=22_000.0,
    lead_equity=100_000.0,
    lead_position_before=0.0,
    lead_position_after=30.0,
    lead_leverage_setting=10.0,
)


@pytest.fixture(scope="module")
def cohort() -> Cohort:
    return Cohort.from_table(sample_cohort(300, 5))


def same(a: NormalizeResult, b: NormalizeResult) -> None:
    assert a.columns.keys() == b.columns.keys()
    for name in a.columns:
        np.testing.assert_array_equal(a[name], b[name], err_msg=name)


def test_without_rules_the_decision_is_normalize(cohort: Cohort, binance: Markets):
    event = OPEN.model_copy(update={"sigma": 0.6})
    decision = decide(event, cohort, binance, sigma=0.9)
    # the event's own volatility wins over the caller's estimate
    assert decision.event.sigma == 0.6
    same(decision.result, normalize(event, cohort, binance))


def test_an_event_without_volatility_takes_the_estimate(cohort: Cohort, binance: Markets):
    decision = decide(OPEN, cohort, binance, sigma=0.6)
    assert decision.event.sigma == 0.6
    same(decision.result, normalize(OPEN.model_copy(update={"sigma": 0.6}), cohort, binance))


def test_copiers_of_the_lead_setting_take_it(cohort: Cohort, binance: Markets):
    copies = np.zeros(len(cohort), dtype=np.bool_)
    copies[::3] = True
    before = cohort.floats["leverage_setting"].copy()
    rules = CopyRules(copies, default_leverage_setting=20.0)
    decision = decide(OPEN, cohort, binance, sigma=0.6, rules=rules)
    # the same as normalizing a cohort whose copiers state the lead's 10x setting themselves
    floats = dict(cohort.floats)
    floats["leverage_setting"] = np.where(copies, 10.0, floats["leverage_setting"])
    stated = Cohort(ids=cohort.ids, floats=floats, codes=cohort.codes, allowed=cohort.allowed)
    same(decision.result, normalize(decision.event, stated, binance))
    # the caller's cohort is not modified
    np.testing.assert_array_equal(cohort.floats["leverage_setting"], before)
    # an event that states no setting: the default
    quiet = OPEN.model_copy(update={"lead_leverage_setting": None})
    floats["leverage_setting"] = np.where(copies, 20.0, cohort.floats["leverage_setting"])
    stated = Cohort(ids=cohort.ids, floats=floats, codes=cohort.codes, allowed=cohort.allowed)
    same(
        decide(quiet, cohort, binance, sigma=0.6, rules=rules).result,
        normalize(quiet.model_copy(update={"sigma": 0.6}), stated, binance),
    )


def test_left_out_marks_copies_the_minimum_size_left_out(cohort: Cohort, binance: Markets):
    # a lead of 10,000,000 USDT buying 0.5 BTC: proportional copies of small followers fall
    # under Binance's 0.001 BTC minimum
    small = OPEN.model_copy(update={"lead_equity": 10_000_000.0, "lead_position_after": 0.5})
    decision = decide(small, cohort, binance, sigma=0.6)
    reasons = decision.result["reasons"].astype(np.int64)
    below = (reasons & int(Reason.BELOW_MIN_AMOUNT | Reason.BELOW_MIN_COST | Reason.SKIPPED)) != 0
    rounded_up = (reasons & int(Reason.ROUNDED_UP)) != 0
    np.testing.assert_array_equal(decision.left_out, below & ~rounded_up)
    assert decision.left_out.any()
    assert not decision.left_out.all()


def test_decide_price_is_derisk(binance: Markets):
    table = sample_cohort(50, 9)
    table["position"] = np.full(50, 0.05)
    table["entry_price"] = np.full(50, 22_000.0)
    table["derisk_distance"] = np.full(50, 0.3)
    cohort = Cohort.from_table(table)
    same(
        decide_price(SYMBOL, 20_000.0, cohort, binance),
        derisk(SYMBOL, 20_000.0, cohort, binance),
    )
