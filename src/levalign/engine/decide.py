"""The decision for one lead event or one price, shared by the backtest and the live engine.

Pure functions, no I/O: given the event, the followers' current state (a
:class:`~levalign.normalize.Cohort`) and the markets, they return every follower's order and
why. The backtest (:mod:`levalign.backtest.replay`) calls them on the paper venue's state at
each lead fill; the live engine calls them on the store's state and writes the orders to its
outbox. One decision code means a backtest replays exactly what the live copier would do
(docs/design.md, "Live engine").

Per lead event, in order:

1. **The event's volatility**: an event that states no ``sigma`` takes the caller's estimate
   (the backtest's trailing close-to-close volatility), which the ``vol_target``,
   ``risk_constant`` and ``optimal`` modes and ``max_liq_probability`` need.
2. **Copy rules**: followers that copy the lead's leverage *setting* (exchange-style copiers)
   take the event's ``lead_leverage_setting``, or the default when the lead states none.
3. **Sizing**: :func:`levalign.normalize.normalize` over the whole cohort: sizing mode,
   constraints, lot rounding, and the minimum-size policy with its residual ledger (the
   cohort's ``residual`` column carries what ``accumulate`` followers owe; the result's
   ``residual`` is the new ledger, which the venue or the store keeps for the next event).

Per price (no lead fill), :func:`decide_price` de-risks the followers the price put inside
their ``derisk_distance`` (:func:`levalign.normalize.derisk`). The paper venue runs the same
de-risking kernel inside its walk over price bars.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from levalign.markets import Markets
from levalign.normalize import Cohort, NormalizeResult, Reason, derisk, normalize
from levalign.schemas import LeadEvent

__all__ = ["CopyRules", "Decision", "decide", "decide_price"]

#: reasons that leave a copy out for the exchange minimum
_BELOW_MIN = int(Reason.BELOW_MIN_AMOUNT | Reason.BELOW_MIN_COST | Reason.SKIPPED)


@dataclass(frozen=True)
class CopyRules:
    """Per-follower rules the decision applies before sizing.

    Attributes
    ----------
    copies_lead_setting
        Per follower, True where it copies the lead's leverage setting (as exchanges' copy
        products do); None for nobody.
    default_leverage_setting
        The setting those followers use when the event states none.
    """

    copies_lead_setting: NDArray[np.bool_] | None = None
    default_leverage_setting: float = 20.0


@dataclass(frozen=True)
class Decision:
    """One lead event decided for a cohort.

    Attributes
    ----------
    event
        The event as sized (with the volatility filled in when it stated none).
    result
        Every follower's order, one row per cohort row (:class:`NormalizeResult`).
    left_out
        Followers whose copy the minimum size left out (skipped, or carried by
        ``accumulate``), not counting those rounded up to the minimum.
    """

    event: LeadEvent
    result: NormalizeResult
    left_out: NDArray[np.bool_]


def decide(
    event: LeadEvent,
    cohort: Cohort,
    markets: Markets,
    *,
    sigma: float = math.nan,
    rules: CopyRules | None = None,
) -> Decision:
    """Size one lead event for every follower of ``cohort`` (see the module for the steps).

    Parameters
    ----------
    event
        The lead's fill.
    cohort
        The followers' profiles and current state (position, entry, equity, collateral,
        residual). Not modified.
    markets
        The followers' venue markets.
    sigma
        Annualized volatility of the symbol for an event that states none; NaN for none.
    rules
        The copy rules, rows in the cohort's order; None for none.

    Returns
    -------
    Decision

    Raises
    ------
    InvalidInput, ConfigurationError
        What :func:`levalign.normalize.normalize` raises.
    """
    if event.sigma is None and math.isfinite(sigma):
        event = event.model_copy(update={"sigma": sigma})
    copies = None if rules is None else rules.copies_lead_setting
    if rules is not None and copies is not None and copies.any():
        setting = event.lead_leverage_setting or rules.default_leverage_setting
        floats = dict(cohort.floats)
        floats["leverage_setting"] = np.where(copies, setting, floats["leverage_setting"])
        cohort = Cohort(ids=cohort.ids, floats=floats, codes=cohort.codes, allowed=cohort.allowed)
    result = normalize(event, cohort, markets)
    reasons = np.asarray(result["reasons"]).astype(np.int64)
    left_out = ((reasons & _BELOW_MIN) != 0) & ((reasons & int(Reason.ROUNDED_UP)) == 0)
    return Decision(event=event, result=result, left_out=left_out)


def decide_price(symbol: str, price: float, cohort: Cohort, markets: Markets) -> NormalizeResult:
    """De-risk the followers that ``price`` put inside their floor (no lead fill).

    :func:`levalign.normalize.derisk` on the cohort's current state; rows the price did not
    trigger have no order.

    Raises
    ------
    InvalidInput, ConfigurationError
        What :func:`levalign.normalize.derisk` raises.
    """
    return derisk(symbol, price, cohort, markets)
