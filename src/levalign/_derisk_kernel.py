r"""De-risking: the normalization pipeline triggered by price instead of a lead fill.

See docs/design.md, "Normalization".

A follower whose liquidation distance at price :math:`p` has fallen below its hard floor
``derisk_distance`` :math:`f` is brought back to the restore distance
:math:`d = \max(f, \text{buffer})` (its ``min_liq_distance``, or the distance its
``max_liq_probability`` needs on the event's liquidation curve), with the buffer solver of
:mod:`levalign._normalize_kernel`: the margin balance needed at :math:`p` for liquidation
:math:`d` away is

.. math:: R(Q) = Q\,p\,d + \mathrm{MM}\big(Q\,p\,(1 - s\,d)\big),

and the follower keeps the largest quantity :math:`Q^*` with :math:`R(Q^*) \le B`:

* cross: :math:`B = E - \mathrm{MM}_\text{other}` (equity at :math:`p` less the other
  positions' maintenance margin);
* isolated, ``derisk = "reduce"``: :math:`B = C + s\,q\,(p - EP)`, the position's own margin
  balance. An isolated position's liquidation price does not move when it shrinks and releases
  margin pro rata (in the first tier it depends on :math:`C/q` only), so the order posts back,
  as ``collateral``, what the remaining position needs: :math:`R(Q') - s\,Q'(p - EP) - C\,Q'/q`;
* isolated, ``derisk = "add_margin"``: first a margin top-up of :math:`R(q) - B` from the free
  balance (no order); when that is short, :math:`B` also counts the free balance and the rest
  is reduced as above.

The cut :math:`q - Q^*` is rounded *up* to whole lots (never less than the exchange minimum,
never more than the position): de-risking errs on the safe side. Reduce-only, so no minimum
cost applies (Binance and Bybit exempt reduce-only orders from the minimum notional).
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from levalign import _normalize_kernel as nk
from levalign._margin_kernels import liquidation_price_one_leg
from levalign.risk.curve import required_distance

FloatArray = NDArray[np.float64]

R_DERISK = 1 << 22
#: ``derisk`` codes (match :data:`levalign.normalize.DERISK_ACTIONS`)
DR_REDUCE, DR_ADD_MARGIN = 0, 1

_EPS = 1e-9


@njit(cache=True)
def derisk_order(
    price: float,
    contract_size: float,
    amount_step: float,
    amount_decimals: int,
    min_amount: float,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    t_max_lev: FloatArray,
    equity: float,
    available: float,
    position: float,
    entry_price: float,
    collateral: float,
    other_mm: float,
    isolated: bool,
    floor_distance: float,
    restore_distance: float,
    add_margin: bool,
) -> tuple[int, float, float, int, float]:
    """One follower's de-risking order at ``price`` (module docstring).

    Returns ``(side, amount, collateral, reasons, position_after)``: side −1/+1 for a
    reduce-only order of ``amount`` contracts (0 with no order), the isolated margin to post
    (a top-up when there is no order), reason bits, and the signed position left. A follower
    that is flat, has no floor, can never be liquidated, or is not inside its floor gets
    ``NO_LEAD_CHANGE`` and no order.
    """
    if position == 0.0 or not (floor_distance > 0.0):
        return 0, 0.0, 0.0, nk.R_NO_LEAD_CHANGE, position
    s = 1.0 if position > 0.0 else -1.0
    held = abs(position)
    q = held * contract_size
    upnl = s * q * (price - entry_price)
    if isolated:
        balance = collateral + upnl
        lp = liquidation_price_one_leg(
            collateral, s, q, entry_price, True, t_floor, t_cap, t_mmr, t_cum
        )
    else:
        balance = equity - other_mm
        lp = liquidation_price_one_leg(balance, s, q, price, True, t_floor, t_cap, t_mmr, t_cum)
    if math.isnan(lp) or s * (price - lp) / price >= floor_distance:
        return 0, 0.0, 0.0, nk.R_NO_LEAD_CHANGE, position
    reasons = R_DERISK
    d = max(floor_distance, restore_distance)
    first = (t_cap[0], t_mmr[0], t_cum[0], t_max_lev[0])
    budget = balance
    if isolated and add_margin:
        add = nk._required_balance(q, price, s, d, t_cap, t_mmr, t_cum, first) - balance
        if add <= available:
            return 0, 0.0, max(add, 0.0), reasons | nk.R_MARGIN_TOPUP, position
        budget = balance + max(available, 0.0)
        reasons |= nk.R_MARGIN_TOPUP | nk.R_AVAILABLE_MARGIN
    keep = min(nk._max_qty_for_balance(budget, price, s, d, t_floor, t_cap, t_mmr, t_cum), q)
    lots = math.ceil((q - keep) / (amount_step * contract_size) - _EPS)
    unit_scale = 10.0**amount_decimals
    amount = lots * round(amount_step * unit_scale) / unit_scale
    if amount < min_amount - _EPS * amount_step:
        amount = math.ceil(min_amount / amount_step - _EPS) * amount_step
        reasons |= nk.R_BELOW_MIN_AMOUNT | nk.R_ROUNDED_UP
    if amount >= held - 0.5 * amount_step:
        return int(-s), held, 0.0, reasons, 0.0
    if amount <= 0.0:
        return 0, 0.0, 0.0, reasons, position
    left = math.floor((held - amount) * unit_scale + 0.5) / unit_scale
    post = 0.0
    if isolated:
        rq = left * contract_size
        need = nk._required_balance(rq, price, s, d, t_cap, t_mmr, t_cum, first)
        post = max(need - s * rq * (price - entry_price) - collateral * left / held, 0.0)
    return int(-s), amount, post, reasons, s * left


@njit(cache=True, parallel=True)
def derisk_kernel(
    price: float,
    contract_size: float,
    amount_step: float,
    amount_decimals: int,
    min_amount: float,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    t_max_lev: FloatArray,
    curve_table: FloatArray,
    curve_y: FloatArray,
    curve_h: FloatArray,
    equity: FloatArray,
    available: FloatArray,
    position: FloatArray,
    entry_price: FloatArray,
    collateral: FloatArray,
    other_notional: FloatArray,
    other_mm: FloatArray,
    min_liq_distance: FloatArray,
    max_liq_probability: FloatArray,
    horizon_hours: FloatArray,
    derisk_distance: FloatArray,
    derisk: NDArray[np.int8],
    margin_mode: NDArray[np.int8],
    allowed: NDArray[np.bool_],
    # outputs (levalign.normalize.RESULT_COLUMNS)
    o_side: NDArray[np.int8],
    o_amount: FloatArray,
    o_close_amount: FloatArray,
    o_reduce_only: NDArray[np.bool_],
    o_leverage: FloatArray,
    o_collateral: FloatArray,
    o_target: FloatArray,
    o_raw: FloatArray,
    o_reasons: NDArray[np.uint32],
    o_eff_lev: FloatArray,
    o_liq: FloatArray,
    o_liq_dist: FloatArray,
    o_residual: FloatArray,
) -> None:
    """:func:`derisk_order` for every follower, with the state after it (normalize's columns)."""
    n = equity.shape[0]
    for i in prange(n):
        eq = equity[i]
        pos = position[i]
        ep = entry_price[i]
        c0 = collateral[i]
        isolated = margin_mode[i] == nk.MM_ISOLATED
        floor_d = derisk_distance[i]
        restore = min_liq_distance[i]
        restore = 0.0 if math.isnan(restore) else restore
        alpha = max_liq_probability[i]
        if not math.isnan(alpha) and curve_h.shape[0] > 0 and pos != 0.0:
            d_req = required_distance(
                curve_table, curve_y, curve_h, 0 if pos > 0.0 else 1, alpha, horizon_hours[i]
            )
            if not math.isnan(d_req):
                restore = max(restore, d_req)
        valid = (
            nk._valid_account(eq, pos, ep, c0, available[i], other_notional[i], other_mm[i])
            and (math.isnan(floor_d) or 0.0 <= floor_d < 1.0)
            and 0.0 <= restore < 1.0
            and derisk[i] >= 0
            and margin_mode[i] >= 0
        )
        side, amount, post, reasons, left = 0, 0.0, 0.0, nk.R_INVALID_ROW, pos
        if valid and not allowed[i]:
            reasons = nk.R_SYMBOL_NOT_ALLOWED
        elif valid:
            side, amount, post, reasons, left = derisk_order(
                price, contract_size, amount_step, amount_decimals, min_amount,
                t_floor, t_cap, t_mmr, t_cum, t_max_lev,
                eq, available[i], pos, ep, c0, other_mm[i], isolated,
                floor_d, restore, derisk[i] == DR_ADD_MARGIN,
            )  # fmt: skip
        o_side[i] = side
        o_amount[i] = amount
        o_close_amount[i] = amount
        o_reduce_only[i] = amount > 0.0
        o_leverage[i] = math.nan
        o_collateral[i] = post
        o_target[i] = left
        o_raw[i] = amount
        o_reasons[i] = reasons
        o_residual[i] = 0.0
        if not valid:
            o_eff_lev[i] = math.nan
            o_liq[i] = math.nan
            o_liq_dist[i] = math.nan
            continue
        held_q = abs(left) * contract_size
        o_eff_lev[i] = (held_q * price + other_notional[i]) / eq
        if held_q > 0.0:
            s = 1.0 if left > 0.0 else -1.0
            if isolated:
                # pro-rata release of the cut, then what the order posts
                c_after = c0 * abs(left) / abs(pos) + post
                lp = liquidation_price_one_leg(
                    c_after, s, held_q, ep, True, t_floor, t_cap, t_mmr, t_cum
                )
            else:
                lp = liquidation_price_one_leg(
                    eq - other_mm[i], s, held_q, price, True, t_floor, t_cap, t_mmr, t_cum
                )
            o_liq[i] = lp
            o_liq_dist[i] = abs(price - lp) / price
        else:
            o_liq[i] = math.nan
            o_liq_dist[i] = math.nan
