r"""Numba kernels of the paper venue (:mod:`levalign.venues.paper`) and their references.

Pure functions over the venue's columns, one row per follower of one linear market. They
update the state columns in place (the venue owns them) and write per-row outputs into
preallocated arrays; expected outcomes (a reduce-only order with nothing to reduce, a
follower short of free balance for its collateral) are flag bits, never exceptions. Each
kernel has a plain-Python/numpy reference below it, written as the obvious loop, and the
tests require both to give bit-identical columns. The per-event kernels (fills, funding,
liquidation prices) are serial, one pass over the cohort, where a parallel build would cost
more compile time than it saves; the bar walk, the hot loop, is parallel over followers.

Units: positions in signed contracts, ``qty = |position| · contract_size`` base units; money in
the settle currency. A follower's *wallet* balance is realized money (collateral included);
its equity at a mark :math:`m` is

.. math:: E(m) = W + q\,c\,(m - EP)

with :math:`q` the signed contracts and :math:`c` the contract size (linear PnL,
docs/design.md, "Markets and margin").
Free balance is :math:`W - C` with :math:`C` the isolated collateral (0 for cross).

Liquidation prices come from :func:`levalign._margin_kernels.liquidation_price_one_leg` and
nowhere else: isolated with the collateral and the entry price (Binance's one-way form),
cross with the wallet balance and the entry price — the same root as the margin balance at
any mark with that mark as reference (how :mod:`levalign.normalize` prices cross followers),
since :math:`E(m) - s Q m = W - s Q\,EP` for every :math:`m`.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from levalign._derisk_kernel import derisk_order
from levalign._margin_kernels import liquidation_price_one_leg, tier_index

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]

# ---- execution flags (bits of ExecutionReport.flags)
X_FILLED = 1  # the order (or part of it) was filled
X_REDUCE_ONLY_CLIPPED = 2  # reduce-only amount above the position: clipped to the position
X_REDUCE_ONLY_REJECTED = 4  # reduce-only with nothing on the other side to reduce
X_COLLATERAL_SHORT = 8  # free balance below the collateral asked for: posted what there was
X_TOPUP = 16  # isolated margin added to an open position (margin top-up)
X_CHARGED_COLLATERAL = 32  # a charge the free balance could not cover came out of collateral

#: followers are split into this many contiguous chunks for the parallel bar walk; per-group
#: sums are accumulated per chunk, so results do not depend on the thread count
CHUNKS = 8

SNAP_TOL = 1e-9  # positions within a billionth of a lot of a whole decimal are snapped to it


@njit(cache=True, inline="always")
def _snap(x: float, step: float, scale: float) -> float:
    """``x`` rounded to the amount decimals when it is off only by float noise."""
    if step <= 0.0:
        return x
    r = math.floor(x * scale + 0.5) / scale
    if abs(r - x) <= SNAP_TOL * step:
        return float(r)
    return x


@njit(cache=True, inline="always")
def _liquidation_price(
    pos: float,
    entry: float,
    wallet: float,
    collateral: float,
    isolated: bool,
    contract_size: float,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
) -> float:
    """Liquidation price of one follower's position (NaN when flat or never liquidated)."""
    if pos == 0.0:
        return math.nan
    side = 1.0 if pos > 0.0 else -1.0
    balance = collateral if isolated else wallet
    return float(
        liquidation_price_one_leg(
            balance, side, abs(pos) * contract_size, entry, True, t_floor, t_cap, t_mmr, t_cum
        )
    )


@njit(cache=True)
def liquidation_prices(
    position: FloatArray,
    entry_price: FloatArray,
    wallet: FloatArray,
    collateral: FloatArray,
    isolated: BoolArray,
    contract_size: float,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
) -> FloatArray:
    """Every follower's liquidation price (see the module docstring)."""
    n = position.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = _liquidation_price(
            position[i],
            entry_price[i],
            wallet[i],
            collateral[i],
            isolated[i],
            contract_size,
            t_floor,
            t_cap,
            t_mmr,
            t_cum,
        )
    return out


@njit(cache=True)
def unrealized_pnl(
    position: FloatArray, entry_price: FloatArray, mark: float, contract_size: float
) -> FloatArray:
    """``q · c · (mark − EP)`` per follower, 0 when flat (linear contracts)."""
    n = position.shape[0]
    out = np.empty(n)
    for i in range(n):
        out[i] = position[i] * contract_size * (mark - entry_price[i]) if position[i] else 0.0
    return out


@njit(cache=True)
def free_balance(
    position: FloatArray,
    equity: FloatArray,
    wallet: FloatArray,
    collateral: FloatArray,
    isolated: BoolArray,
    leverage: FloatArray,
    mark: float,
    contract_size: float,
    t_cap: FloatArray,
    t_max_lev: FloatArray,
) -> FloatArray:
    """Free margin per follower, floored at 0 (the cohort's ``available_balance``).

    Isolated: ``W − C``. Cross: ``E(mark) − N / ℓ``, the equity less the initial margin of the
    position (``IM = N / ℓ``, docs/design.md, "Markets and margin") at its leverage setting
    ``ℓ`` (NaN: the bracket's maximum; never above it).
    """
    n = position.shape[0]
    out = np.empty(n)
    for i in range(n):
        if isolated[i]:
            free = wallet[i] - collateral[i]
        elif position[i] == 0.0:
            free = equity[i]
        else:
            notional = abs(position[i]) * contract_size * mark
            top = t_max_lev[tier_index(t_cap, notional)]
            lev = leverage[i] if leverage[i] < top else top  # NaN compares false: bracket max
            free = equity[i] - notional / lev
        out[i] = max(free, 0.0)
    return out


# ================================================================= execute


@njit(cache=True, inline="always")
def _topup(ask: float, w: float, c: float) -> tuple[float, int]:
    """Isolated margin ``ask`` moved from the free balance ``w − c``: new collateral, flags."""
    add = min(ask, max(w - c, 0.0))
    flags = X_COLLATERAL_SHORT if add < ask else 0
    if add > 0.0:
        flags |= X_TOPUP
    return c + max(add, 0.0), flags


@njit(cache=True, inline="always")
def _fill(
    s_o: float,
    a: float,
    reduce_only: bool,
    ask: float,
    price: float,
    taker_fee: float,
    slip_fixed_bps: float,
    slip_impact_bps: float,
    slip_impact_notional: float,
    contract_size: float,
    amount_step: float,
    scale: float,
    pos: float,
    ep: float,
    w: float,
    c: float,
    iso: bool,
) -> tuple[float, float, float, float, float, float, float, float, int, bool]:
    """One order filled on one account (module docstring; ``PaperVenue.execute``).

    Returns ``(position, entry, wallet, collateral, fill price, fee, slippage cost, realized
    PnL, flags, whether it opened or grew a position)``. Isolated margin ``ask`` is posted
    after the fill while a position remains (an opening's margin, or what a de-risking cut
    posts back to the rest).
    """
    flags = 0
    fill = math.nan
    fee = 0.0
    slip_cost = 0.0
    pnl = 0.0
    opened = 0.0
    held = abs(pos)
    s_f = 1.0 if pos > 0.0 else (-1.0 if pos < 0.0 else 0.0)
    if reduce_only:
        if pos == 0.0 or s_f == s_o:
            flags |= X_REDUCE_ONLY_REJECTED
            a = 0.0
        elif a > held:
            a = held
            flags |= X_REDUCE_ONLY_CLIPPED
    if a > 0.0:
        flags |= X_FILLED
        closed = min(a, held) if (pos != 0.0 and s_f != s_o) else 0.0
        opened = a - closed
        notional = a * contract_size * price
        slip = 1e-4 * (
            slip_fixed_bps + slip_impact_bps * math.sqrt(notional / slip_impact_notional)
        )
        fill = price * (1.0 + s_o * slip)
        fee = a * contract_size * fill * taker_fee
        slip_cost = s_o * (fill - price) * a * contract_size
        remaining = held
        if closed > 0.0:
            pnl = s_f * closed * contract_size * (fill - ep)
            if closed >= held:
                c = 0.0
                remaining = 0.0
            else:
                c = c * (1.0 - closed / held)
                remaining = _snap(held - closed, amount_step, scale)
        w = w + pnl - fee
        if opened > 0.0:
            if remaining > 0.0:
                ep = (remaining * ep + opened * fill) / (remaining + opened)
            else:
                ep = fill
            pos = _snap(s_o * (remaining + opened), amount_step, scale)
        else:
            pos = s_f * remaining
        if pos == 0.0:
            pos = 0.0  # never -0.0
            ep = math.nan
            c = 0.0
        elif iso and ask > 0.0:
            c, posted = _topup(ask, w, c)
            flags |= posted & X_COLLATERAL_SHORT
    return pos, ep, w, c, fill, fee, slip_cost, pnl, flags, opened > 0.0


@njit(cache=True)
def execute_kernel(
    # orders (one row per follower, NormalizeResult columns)
    side: NDArray[np.int8],
    amount: FloatArray,
    reduce_only: BoolArray,
    post: FloatArray,
    topup: BoolArray,
    leverage_in: FloatArray,
    # fill
    price: float,
    taker_fee: float,
    slip_fixed_bps: float,
    slip_impact_bps: float,
    slip_impact_notional: float,
    # market
    contract_size: float,
    amount_step: float,
    amount_decimals: int,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    # state, updated in place
    position: FloatArray,
    entry_price: FloatArray,
    wallet: FloatArray,
    collateral: FloatArray,
    isolated: BoolArray,
    liq_price: FloatArray,
    leverage: FloatArray,
    fees: FloatArray,
    slippage: FloatArray,
    realized: FloatArray,
    # outputs
    o_fill_price: FloatArray,
    o_fee: FloatArray,
    o_slippage: FloatArray,
    o_realized: FloatArray,
    o_flags: NDArray[np.uint8],
) -> None:
    """Fill every order at ``price`` moved by the slippage model (see ``PaperVenue.execute``)."""
    scale = 10.0**amount_decimals
    n = side.shape[0]
    for i in range(n):
        flags = 0
        fill = math.nan
        fee = 0.0
        slip_cost = 0.0
        pnl = 0.0
        pos = position[i]
        ep = entry_price[i]
        w = wallet[i]
        c = collateral[i]
        iso = isolated[i]
        touched = False
        s_o = float(side[i])
        if s_o == 0.0:
            if topup[i] and iso and pos != 0.0 and post[i] > 0.0:
                c, flags = _topup(post[i], w, c)
                touched = (flags & X_TOPUP) != 0
        else:
            pos, ep, w, c, fill, fee, slip_cost, pnl, flags, grew = _fill(
                s_o, amount[i], reduce_only[i], post[i], price, taker_fee,
                slip_fixed_bps, slip_impact_bps, slip_impact_notional,
                contract_size, amount_step, scale, pos, ep, w, c, iso,
            )  # fmt: skip
            touched = (flags & X_FILLED) != 0
            if grew and math.isfinite(leverage_in[i]):
                leverage[i] = leverage_in[i]
        if iso and c > w:
            # charges come out of the free balance; what it cannot cover, out of collateral
            c = max(w, 0.0)
            flags |= X_CHARGED_COLLATERAL
            touched = True
        if touched:
            position[i] = pos
            entry_price[i] = ep
            wallet[i] = w
            collateral[i] = c
            fees[i] += fee
            slippage[i] += slip_cost
            realized[i] += pnl
            liq_price[i] = _liquidation_price(
                pos, ep, w, c, iso, contract_size, t_floor, t_cap, t_mmr, t_cum
            )
        o_fill_price[i] = fill
        o_fee[i] = fee
        o_slippage[i] = slip_cost
        o_realized[i] = pnl
        o_flags[i] = flags


# ================================================================= funding


@njit(cache=True)
def funding_kernel(
    rate: float,
    mark: float,
    contract_size: float,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    position: FloatArray,
    entry_price: FloatArray,
    wallet: FloatArray,
    collateral: FloatArray,
    isolated: BoolArray,
    liq_price: FloatArray,
    funding: FloatArray,
    o_payment: FloatArray,
) -> None:
    """Each holder pays ``q · c · mark · rate`` (longs pay a positive rate)."""
    n = position.shape[0]
    for i in range(n):
        pos = position[i]
        if pos == 0.0:
            o_payment[i] = 0.0
            continue
        pay = pos * contract_size * mark * rate
        w = wallet[i] - pay
        c = collateral[i]
        if isolated[i] and c > w:
            c = max(w, 0.0)
        wallet[i] = w
        collateral[i] = c
        funding[i] += pay
        o_payment[i] = pay
        liq_price[i] = _liquidation_price(
            pos, entry_price[i], w, c, isolated[i], contract_size, t_floor, t_cap, t_mmr, t_cum
        )


# ================================================================= bars


# the fill model and market as one vector (advance_kernel's ``fill``)
(
    FILL_TAKER_FEE,
    FILL_SLIP_FIXED_BPS,
    FILL_SLIP_IMPACT_BPS,
    FILL_SLIP_IMPACT_NOTIONAL,
    FILL_AMOUNT_STEP,
    FILL_AMOUNT_DECIMALS,
    FILL_MIN_AMOUNT,
    FILL_SIZE,
) = range(8)


@njit(cache=True, inline="always")
def _derisk_triggers(pos: float, lp: float, floor: float) -> tuple[float, float]:
    r"""Marks below ``lo`` or above ``hi`` put the follower inside its de-risking floor.

    The liquidation distance at mark :math:`m` is :math:`s(m - LP)/m`; it is below the floor
    :math:`f` for a long when :math:`m < LP/(1 - f)`, for a short when :math:`m > LP/(1 + f)`.
    """
    if not (floor > 0.0) or pos == 0.0 or math.isnan(lp):
        return -math.inf, math.inf
    if pos > 0.0:
        return lp / (1.0 - floor), math.inf
    return -math.inf, lp / (1.0 + floor)


@njit(cache=True)
def _derisk_fill(
    m: float,
    contract_size: float,
    fill: FloatArray,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    t_max_lev: FloatArray,
    pos: float,
    ep: float,
    w: float,
    c: float,
    iso: bool,
    floor: float,
    restore: float,
    add_margin: bool,
) -> tuple[float, float, float, float, float, float, float, float, bool]:
    """De-risk one account at mark ``m`` and fill it: new state, liquidation price, charges.

    Returns ``(position, entry, wallet, collateral, liquidation price, fee, slippage cost,
    realized PnL, whether anything was done)``.
    """
    equity = w + pos * contract_size * (m - ep)
    decimals = int(fill[FILL_AMOUNT_DECIMALS])
    side, amount, post, _, _ = derisk_order(
        m, contract_size, fill[FILL_AMOUNT_STEP], decimals, fill[FILL_MIN_AMOUNT],
        t_floor, t_cap, t_mmr, t_cum, t_max_lev,
        equity, w - c if iso else 0.0, pos, ep, c, 0.0, iso, floor, restore, add_margin,
        False,  # the paper venue's rule: maintenance margin at the liquidation price
    )  # fmt: skip
    fee = slip_cost = pnl = 0.0
    acted = False
    if side != 0:
        pos, ep, w, c, _, fee, slip_cost, pnl, flags, _ = _fill(
            float(side), amount, True, post, m, fill[FILL_TAKER_FEE],
            fill[FILL_SLIP_FIXED_BPS], fill[FILL_SLIP_IMPACT_BPS], fill[FILL_SLIP_IMPACT_NOTIONAL],
            contract_size, fill[FILL_AMOUNT_STEP], 10.0**decimals, pos, ep, w, c, iso,
        )  # fmt: skip
        acted = (flags & X_FILLED) != 0
    elif iso and post > 0.0:
        c, flags = _topup(post, w, c)
        acted = (flags & X_TOPUP) != 0
    if iso and c > w:
        c = max(w, 0.0)
    lp = _liquidation_price(pos, ep, w, c, iso, contract_size, t_floor, t_cap, t_mmr, t_cum)
    return pos, ep, w, c, lp, fee, slip_cost, pnl, acted


@njit(cache=True, parallel=True)
def advance_kernel(
    high: FloatArray,
    low: FloatArray,
    mark: FloatArray,
    contract_size: float,
    # state, updated in place
    position: FloatArray,
    entry_price: FloatArray,
    wallet: FloatArray,
    collateral: FloatArray,
    isolated: BoolArray,
    liq_price: FloatArray,
    realized: FloatArray,
    liquidations: IntArray,
    liquidation_losses: FloatArray,
    peak_equity: FloatArray,
    max_drawdown: FloatArray,
    bars_in_market: IntArray,
    # de-risking at each bar's mark (levalign._derisk_kernel): floor (NaN: off), restore
    # distance and add-margin choice per follower; the market and the fill model (FILL_*)
    derisk_floor: FloatArray,
    derisk_restore: FloatArray,
    derisk_add_margin: BoolArray,
    fill: FloatArray,
    t_floor: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    t_max_lev: FloatArray,
    fees: FloatArray,
    slippage: FloatArray,
    derisks: IntArray,
    # optional recording: group code per follower (< 0: none), track row per follower (< 0)
    group: IntArray,
    track_row: IntArray,
    # outputs
    o_liquidated_bar: IntArray,
    o_group_equity: NDArray[np.float64],
    o_group_notional: NDArray[np.float64],
    o_group_flat: NDArray[np.float64],
    o_track_equity: NDArray[np.float64],
    o_track_position: NDArray[np.float64],
) -> None:
    """Walk the bars for every follower: liquidation, de-risking, mark to market (``advance``).

    A follower with a de-risking floor whose liquidation distance at a bar's mark is below it
    gets :func:`levalign._derisk_kernel.derisk_order` at that mark, filled by :func:`_fill`
    (or a margin top-up), before the bar's equity is marked.

    ``o_group_*`` are ``(CHUNKS, groups, bars)`` partial sums (zeroed by the caller) and
    ``o_track_*`` ``(tracked, bars)``. A flat follower that is not tracked stops early: its
    equity can no longer move, so neither can its peak or drawdown; if it is in a group, its
    constant equity is added once to ``o_group_flat`` at the next bar, whose running sum over
    bars completes the group's equity (``venue.advance`` adds it).
    """
    n = position.shape[0]
    n_bars = high.shape[0]
    n_groups = o_group_equity.shape[1]
    size = (n + CHUNKS - 1) // CHUNKS
    for chunk in prange(CHUNKS):
        for i in range(chunk * size, min(n, (chunk + 1) * size)):
            pos = position[i]
            ep = entry_price[i]
            w = wallet[i]
            c = collateral[i]
            lp = liq_price[i]
            pk = peak_equity[i]
            dd = max_drawdown[i]
            trough = pk  # lowest equity since the running peak was set
            in_market = bars_in_market[i]
            g = group[i] if n_groups > 0 else -1
            tr = track_row[i]
            liq_bar = -1
            qc = pos * contract_size
            f_d = derisk_floor[i]
            trig_lo, trig_hi = _derisk_triggers(pos, lp, f_d)
            for t in range(n_bars):
                if pos != 0.0:
                    in_market += 1
                    if (pos > 0.0 and low[t] <= lp) or (pos < 0.0 and high[t] >= lp):
                        pnl = qc * (lp - ep)
                        if isolated[i]:
                            remainder = c + pnl  # the position's margin left at LP
                            w = w + pnl - remainder
                        else:
                            remainder = w + pnl  # the account's margin balance at LP
                            w = 0.0
                        realized[i] += pnl
                        liquidation_losses[i] += remainder
                        liquidations[i] += 1
                        liq_bar = t
                        pos = 0.0
                        qc = 0.0
                        ep = math.nan
                        c = 0.0
                        lp = math.nan
                    elif mark[t] < trig_lo or mark[t] > trig_hi:
                        pos, ep, w, c, lp, fee, slip_cost, pnl, acted = _derisk_fill(
                            mark[t], contract_size, fill, t_floor, t_cap, t_mmr, t_cum,
                            t_max_lev, pos, ep, w, c, isolated[i], f_d, derisk_restore[i],
                            derisk_add_margin[i],
                        )  # fmt: skip
                        if acted:
                            fees[i] += fee
                            slippage[i] += slip_cost
                            realized[i] += pnl
                            derisks[i] += 1
                            qc = pos * contract_size
                            trig_lo, trig_hi = _derisk_triggers(pos, lp, f_d)
                eq = w + qc * (mark[t] - ep) if pos != 0.0 else w
                # drawdown (pk - eq) / pk is largest at the trough of each peak's reign, so it
                # is evaluated only when a new peak ends that reign (and once at the end)
                if eq > pk:
                    if pk > 0.0:
                        dd = max(dd, (pk - trough) / pk)
                    pk = eq
                    trough = eq
                elif eq < trough:
                    trough = eq
                if g >= 0:
                    o_group_equity[chunk, g, t] += eq
                    o_group_notional[chunk, g, t] += abs(qc) * mark[t]
                if tr >= 0:
                    o_track_equity[tr, t] = eq
                    o_track_position[tr, t] = pos
                if pos == 0.0 and tr < 0:
                    # flat: equity, peak and drawdown can no longer move
                    if g >= 0 and t + 1 < n_bars:
                        o_group_flat[chunk, g, t + 1] += eq
                    break
            if pk > 0.0:
                dd = max(dd, (pk - trough) / pk)
            position[i] = pos
            entry_price[i] = ep
            wallet[i] = w
            collateral[i] = c
            liq_price[i] = lp
            peak_equity[i] = pk
            max_drawdown[i] = dd
            bars_in_market[i] = in_market
            o_liquidated_bar[i] = liq_bar
