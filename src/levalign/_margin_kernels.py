"""Numba primitives of the margin engine, shared by the margin and normalization kernels.

All are pure functions over scalars and tier arrays. Prices enter through the *margin
variable* ``v``: ``v = price`` for linear contracts and ``v = 1 / price`` for inverse ones. In
that variable a position's notional is ``Q · v`` and its PnL is linear, so margin balance minus
maintenance margin is piecewise linear and every liquidation price has a closed form per tier.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]

_REL_TOL = 1e-12


@njit(cache=True)
def tier_index(cap: FloatArray, notional: float) -> int:
    """Index of the tier holding ``|notional|`` (``[floor, cap)``; past the last cap: last)."""
    n = abs(notional)
    last = cap.shape[0] - 1
    for i in range(last):
        if n < cap[i]:
            return i
    return last


@njit(cache=True, inline="always")
def maintenance_margin(cap: FloatArray, mmr: FloatArray, cum: FloatArray, notional: float) -> float:
    """``|N| · mmr_k − cum_k`` for the tier ``k`` holding ``N``."""
    k = tier_index(cap, notional)
    return abs(notional) * mmr[k] - cum[k]


@njit(cache=True, inline="always")
def entry_value_liquidation_price(
    balance: float,
    side: float,
    qty: float,
    ref_price: float,
    entry_price: float,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    r"""Liquidation price of one linear position with maintenance margin at its entry value.

    Bybit's and KuCoin's rule (:class:`levalign.margin.BybitMarginModel`), with ``balance``
    the margin balance when the price is ``ref_price``:

    .. math:: LP = x_{ref} - s\,\frac{B - \mathrm{MM}(Q\,EP)}{Q}

    With ``ref_price`` the entry price and ``balance`` the isolated margin this is Bybit's
    formula as published; with the mark and the margin balance there (cross) it is the same
    price, the PnL since entry moved from the balance to the reference. NaN when the price is
    not positive (no price liquidates the position).
    """
    if qty <= 0.0:
        return math.nan
    mm = maintenance_margin(cap, mmr, cum, qty * entry_price)
    lp = ref_price - side * (balance - mm) / qty
    return lp if lp > 0.0 else math.nan


@njit(cache=True)
def liquidation_price_one_leg(
    balance: float,
    side: float,
    qty: float,
    ref_price: float,
    linear: bool,
    floor: FloatArray,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    """Liquidation price of one position whose margin balance is ``balance`` at ``ref_price``.

    Solves ``balance + PnL(x) = MM(x)`` tier by tier and keeps the root whose notional lies in
    the tier used, which is the "recompute with that tier" rule (docs/design.md, "Markets and
    margin") done exhaustively. With
    ``c = s·Q`` (linear) or ``c = −s·Q`` (inverse), ``r`` the reference in the margin variable:

    ``v_k = (balance + cum_k − c·r) / (Q·mmr_k − c)``

    For linear contracts with ``balance`` the isolated margin and ``ref_price`` the entry price
    this is Binance's one-way formula; with ``ref_price`` the mark and ``balance`` the margin
    balance at the mark it is Hyperliquid's. Returns NaN when no price liquidates the position
    (a fully collateralized long, or an inverse short), and ``ref_price`` when every price does
    (the balance is already below maintenance margin).
    """
    return liquidation_price_tiered(balance, side, qty, ref_price, linear, floor, cap, mmr, cum)


@njit(cache=True, inline="always")
def liquidation_price_tiered(
    balance: float,
    side: float,
    qty: float,
    ref_price: float,
    linear: bool,
    floor: FloatArray,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    """:func:`liquidation_price_one_leg`, inlined into callers' loops.

    Hot loops (the normalization kernel) call this directly: a call that is not inlined
    passes each tier array as seven words on the stack, which costs more than the solve.
    """
    if qty <= 0.0:
        return math.nan
    if linear:
        c = side * qty
        r = ref_price
    else:
        c = -side * qty
        r = 1.0 / ref_price
    last = cap.shape[0] - 1
    for k in range(last + 1):
        denom = qty * mmr[k] - c
        if denom == 0.0:
            continue
        v = tier_root(balance, c, r, cum[k], denom)
        if v <= 0.0:
            continue
        n = qty * v
        lo = floor[k] * (1.0 - _REL_TOL)
        if n >= lo and (k == last or n <= cap[k] * (1.0 + _REL_TOL)):
            return v if linear else 1.0 / v
    return _no_root(balance, qty, r, ref_price, cap, mmr, cum)


@njit(cache=True, inline="always")
def tier_root(balance: float, c: float, r: float, cum_k: float, denom: float) -> float:
    """``v_k`` of :func:`liquidation_price_one_leg` with ``denom = Q·mmr_k − c`` (non-zero)."""
    return (balance + cum_k - c * r) / denom


@njit(cache=True, inline="never")
def _no_root(
    balance: float,
    qty: float,
    r: float,
    ref_price: float,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    """No root: safe at every price (NaN), or below maintenance at every price (``ref_price``).

    A separate, never-inlined function: this path is rare, and keeping it out of the caller
    keeps the hot per-row code small, which makes the normalization kernel faster.
    """
    k = tier_index(cap, qty * r)
    if balance < qty * r * mmr[k] - cum[k]:
        return ref_price
    return math.nan


@njit(cache=True, parallel=True)
def liquidation_prices(
    balance: FloatArray,
    side: FloatArray,
    qty: FloatArray,
    ref_price: FloatArray,
    linear: bool,
    floor: FloatArray,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> FloatArray:
    """Vectorized :func:`liquidation_price_one_leg` over many positions of one market."""
    n = balance.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = liquidation_price_one_leg(
            balance[i], side[i], qty[i], ref_price[i], linear, floor, cap, mmr, cum
        )
    return out


@njit(cache=True, parallel=True)
def maintenance_margins(
    notional: FloatArray, cap: FloatArray, mmr: FloatArray, cum: FloatArray
) -> FloatArray:
    """Vectorized :func:`maintenance_margin`."""
    n = notional.shape[0]
    out = np.empty(n)
    for i in prange(n):
        out[i] = maintenance_margin(cap, mmr, cum, notional[i])
    return out
