r"""De-risking: the normalization pipeline triggered by price instead of a lead fill.

See docs/design.md, "Normalization".

A follower whose liquidation distance at price :math:`p` has fallen below its hard floor
``derisk_distance`` :math:`f` is brought back to the restore distance
:math:`d = \max(f, \text{buffer})` (its ``min_liq_distance``, or the distance its
``max_liq_probability`` needs on the event's liquidation curve), with the buffer solver of
:mod:`levalign._normalize_kernel`: the margin balance needed at :math:`p` for liquidation
:math:`d` away is

.. math:: R(Q) = Q\,p\,d + \mathrm{MM}\big(Q\,p\,(1 - s\,d)\big),

or :math:`R(Q) = Q\,p\,d + \mathrm{MM}(Q\,EP)` where the venue takes maintenance margin at the
entry value (Bybit, KuCoin: ``mm_at_entry``),
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
from levalign._codes import (
    DR_ADD_MARGIN,
    MM_ISOLATED,
    R_AVAILABLE_MARGIN,
    R_BELOW_MIN_AMOUNT,
    R_DERISK,
    R_INVALID_ROW,
    R_MARGIN_TOPUP,
    R_NO_LEAD_CHANGE,
    R_ROUNDED_UP,
    R_SYMBOL_NOT_ALLOWED,
)
from levalign._curve_kernel import required_distance
from levalign._layout import (
    B_REDUCE_ONLY,
    B_SIDE,
    C_ALLOWED,
    C_DERISK,
    C_MARGIN_MODE,
    F_AVAILABLE,
    F_COLLATERAL,
    F_DERISK_DISTANCE,
    F_ENTRY_PRICE,
    F_EQUITY,
    F_HORIZON_HOURS,
    F_MAX_LIQ_PROBABILITY,
    F_MIN_LIQ_DISTANCE,
    F_OTHER_MM,
    F_OTHER_NOTIONAL,
    F_POSITION,
    MK_AMOUNT_DECIMALS,
    MK_AMOUNT_STEP,
    MK_CONTRACT_SIZE,
    MK_MIN_AMOUNT,
    O_AMOUNT,
    O_CLOSE_AMOUNT,
    O_COLLATERAL,
    O_EFF_LEV,
    O_LEVERAGE,
    O_LIQ,
    O_LIQ_DIST,
    O_RAW,
    O_RESIDUAL,
    O_TARGET,
    T_CAP,
    T_CUM,
    T_FLOOR,
    T_MAX_LEV,
    T_MMR,
)
from levalign._margin_kernels import entry_value_liquidation_price, liquidation_price_one_leg

FloatArray = NDArray[np.float64]
FloatMatrix = NDArray[np.float64]  # 2-D, one row per column (levalign._layout)
CodeMatrix = NDArray[np.int8]

_EPS = 1e-9


@njit(cache=True, inline="always")
def _liquidation(
    balance: float,
    side: float,
    qty: float,
    ref_price: float,
    entry_price: float,
    mm_at_entry: bool,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
) -> float:
    """Liquidation price of one leg whose margin balance is ``balance`` at ``ref_price``.

    Maintenance margin at the liquidation price, or at the entry value (``mm_at_entry``).
    """
    if mm_at_entry:
        return entry_value_liquidation_price(
            balance, side, qty, ref_price, entry_price, t_cap, t_mmr, t_cum
        )
    return liquidation_price_one_leg(
        balance, side, qty, ref_price, True, t_floor, t_cap, t_mmr, t_cum
    )


@njit(cache=True, inline="always")
def _required(
    mm_at_entry: bool,
    qty: float,
    price: float,
    side: float,
    dist: float,
    entry_price: float,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    first: nk.FirstTier,
) -> float:
    """:func:`levalign._normalize_kernel.buffer_balance` of a position kept at its entry."""
    return nk.buffer_balance(
        mm_at_entry, qty, price, side, dist, entry_price, 0.0, t_cap, t_mmr, t_cum, first
    )


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
    mm_at_entry: bool,
) -> tuple[int, float, float, int, float]:
    """One follower's de-risking order at ``price`` (module docstring).

    ``mm_at_entry``: the venue takes maintenance margin at the entry value (Bybit, KuCoin).

    Returns ``(side, amount, collateral, reasons, position_after)``: side −1/+1 for a
    reduce-only order of ``amount`` contracts (0 with no order), the isolated margin to post
    (a top-up when there is no order), reason bits, and the signed position left. A follower
    that is flat, has no floor, can never be liquidated, or is not inside its floor gets
    ``NO_LEAD_CHANGE`` and no order.
    """
    if position == 0.0 or not (floor_distance > 0.0):
        return 0, 0.0, 0.0, R_NO_LEAD_CHANGE, position
    s = 1.0 if position > 0.0 else -1.0
    held = abs(position)
    q = held * contract_size
    upnl = s * q * (price - entry_price)
    balance = collateral + upnl if isolated else equity - other_mm
    lp = _liquidation(
        collateral if isolated else balance,
        s,
        q,
        entry_price if isolated else price,
        entry_price,
        mm_at_entry,
        t_floor,
        t_cap,
        t_mmr,
        t_cum,
    )
    if math.isnan(lp) or s * (price - lp) / price >= floor_distance:
        return 0, 0.0, 0.0, R_NO_LEAD_CHANGE, position
    reasons = R_DERISK
    d = max(floor_distance, restore_distance)
    first = (t_cap[0], t_mmr[0], t_cum[0], t_max_lev[0])
    budget = balance
    if isolated and add_margin:
        add = _required(mm_at_entry, q, price, s, d, entry_price, t_cap, t_mmr, t_cum, first)
        add -= balance
        if add <= available:
            return 0, 0.0, max(add, 0.0), reasons | R_MARGIN_TOPUP, position
        budget = balance + max(available, 0.0)
        reasons |= R_MARGIN_TOPUP | R_AVAILABLE_MARGIN
    keep = min(
        nk.max_qty_for_buffer(
            mm_at_entry, budget, price, s, d, entry_price, 0.0, t_floor, t_cap, t_mmr, t_cum
        ),
        q,
    )
    lots = math.ceil((q - keep) / (amount_step * contract_size) - _EPS)
    unit_scale = 10.0**amount_decimals
    amount = lots * round(amount_step * unit_scale) / unit_scale
    if amount < min_amount - _EPS * amount_step:
        amount = math.ceil(min_amount / amount_step - _EPS) * amount_step
        reasons |= R_BELOW_MIN_AMOUNT | R_ROUNDED_UP
    if amount >= held - 0.5 * amount_step:
        return int(-s), held, 0.0, reasons, 0.0
    if amount <= 0.0:
        return 0, 0.0, 0.0, reasons, position
    left = math.floor((held - amount) * unit_scale + 0.5) / unit_scale
    post = 0.0
    if isolated:
        rq = left * contract_size
        need = _required(mm_at_entry, rq, price, s, d, entry_price, t_cap, t_mmr, t_cum, first)
        post = max(need - s * rq * (price - entry_price) - collateral * left / held, 0.0)
    return int(-s), amount, post, reasons, s * left


@njit(cache=True, parallel=True)
def derisk_kernel(
    price: float,
    market: FloatArray,
    tiers: FloatMatrix,
    curve_table: FloatArray,
    curve_y: FloatArray,
    curve_h: FloatArray,
    # the cohort (levalign._layout: F_* rows of cf, C_* rows of cc)
    cf: FloatMatrix,
    cc: CodeMatrix,
    # the result (levalign._layout: O_* rows of of, B_* rows of ob, reason bits)
    of: FloatMatrix,
    ob: CodeMatrix,
    o_reasons: NDArray[np.uint32],
    # the venue takes maintenance margin at the entry value (Bybit, KuCoin)
    mm_at_entry: bool,
) -> None:
    """:func:`derisk_order` for every follower, with the state after it (normalize's columns)."""
    contract_size = market[MK_CONTRACT_SIZE]
    amount_step = market[MK_AMOUNT_STEP]
    amount_decimals = int(market[MK_AMOUNT_DECIMALS])
    min_amount = market[MK_MIN_AMOUNT]
    t_floor, t_cap, t_mmr = tiers[T_FLOOR], tiers[T_CAP], tiers[T_MMR]
    t_cum, t_max_lev = tiers[T_CUM], tiers[T_MAX_LEV]
    unit_scale = 10.0**amount_decimals
    n = cf.shape[1]
    for i in prange(n):
        eq = cf[F_EQUITY, i]
        pos = cf[F_POSITION, i]
        ep = cf[F_ENTRY_PRICE, i]
        c0 = cf[F_COLLATERAL, i]
        isolated = cc[C_MARGIN_MODE, i] == MM_ISOLATED
        floor_d = cf[F_DERISK_DISTANCE, i]
        restore = cf[F_MIN_LIQ_DISTANCE, i]
        restore = 0.0 if math.isnan(restore) else restore
        alpha = cf[F_MAX_LIQ_PROBABILITY, i]
        if not math.isnan(alpha) and curve_h.shape[0] > 0 and pos != 0.0:
            d_req = required_distance(
                curve_table, curve_y, curve_h, 0 if pos > 0.0 else 1, alpha, cf[F_HORIZON_HOURS, i]
            )
            if not math.isnan(d_req):
                restore = max(restore, d_req)
        valid = (
            nk.valid_account(
                eq, pos, ep, c0, cf[F_AVAILABLE, i], cf[F_OTHER_NOTIONAL, i], cf[F_OTHER_MM, i]
            )
            and (math.isnan(floor_d) or 0.0 <= floor_d < 1.0)
            and 0.0 <= restore < 1.0
            and cc[C_DERISK, i] >= 0
            and cc[C_MARGIN_MODE, i] >= 0
        )
        side, amount, post, reasons, left = 0, 0.0, 0.0, R_INVALID_ROW, pos
        if valid and cc[C_ALLOWED, i] == 0:
            reasons = R_SYMBOL_NOT_ALLOWED
        elif valid:
            side, amount, post, reasons, left = derisk_order(
                price, contract_size, amount_step, amount_decimals, min_amount,
                t_floor, t_cap, t_mmr, t_cum, t_max_lev,
                eq, cf[F_AVAILABLE, i], pos, ep, c0, cf[F_OTHER_MM, i], isolated,
                floor_d, restore, cc[C_DERISK, i] == DR_ADD_MARGIN, mm_at_entry,
            )  # fmt: skip
        # the edge: amounts as decimals on the grid, margin within what the follower has
        amount = nk.on_grid(amount, unit_scale)
        post = nk.margin_to_post(post, eq)
        ob[B_SIDE, i] = side
        of[O_AMOUNT, i] = amount
        of[O_CLOSE_AMOUNT, i] = amount
        ob[B_REDUCE_ONLY, i] = amount > 0.0
        of[O_LEVERAGE, i] = math.nan
        of[O_COLLATERAL, i] = post
        of[O_TARGET, i] = nk.on_grid(left, unit_scale)
        of[O_RAW, i] = amount
        o_reasons[i] = reasons
        of[O_RESIDUAL, i] = 0.0
        if not valid:
            of[O_EFF_LEV, i] = math.nan
            of[O_LIQ, i] = math.nan
            of[O_LIQ_DIST, i] = math.nan
            continue
        held_q = abs(left) * contract_size
        of[O_EFF_LEV, i] = (held_q * price + cf[F_OTHER_NOTIONAL, i]) / eq
        if held_q > 0.0:
            s = 1.0 if left > 0.0 else -1.0
            # isolated: pro-rata release of the cut, then what the order posts
            lp = _liquidation(
                c0 * abs(left) / abs(pos) + post if isolated else eq - cf[F_OTHER_MM, i],
                s,
                held_q,
                ep if isolated else price,
                ep,
                mm_at_entry,
                t_floor,
                t_cap,
                t_mmr,
                t_cum,
            )
            of[O_LIQ, i] = lp
            of[O_LIQ_DIST, i] = abs(price - lp) / price
        else:
            of[O_LIQ, i] = math.nan
            of[O_LIQ_DIST, i] = math.nan
