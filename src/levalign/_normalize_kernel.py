"""The cohort kernel: one lead event, every follower, the whole normalization pipeline.

The pipeline is that of docs/design.md, "Normalization".

Pure function over column arrays (numba, parallel over followers). Expected outcomes are reason
bits, never exceptions. The event arrives pre-digested by :mod:`levalign.normalize` as a
small float vector (``EV_*`` indices) so the kernel signature stays stable as events grow.

Units inside: quantities in *base units* (contracts × contract size, linear contracts), money
in the settle currency. Amounts leave as whole lots.
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from levalign._codes import (
    EV_CLOSE,
    EV_MARGIN,
    EV_NONE,
    EV_REDUCE,
    M_FIXED,
    M_OPTIMAL,
    M_PROPORTIONAL,
    M_RISK,
    M_TARGET_LEV,
    M_VOL,
    MM_ISOLATED,
    OPENING_KINDS,
    P_ACCUMULATE,
    P_ROUND_UP,
    R_ACCOUNT_LEVERAGE,
    R_ACCUMULATED,
    R_AT_TARGET,
    R_AVAILABLE_MARGIN,
    R_BELOW_MIN_AMOUNT,
    R_BELOW_MIN_COST,
    R_FLIPPED,
    R_INVALID_ROW,
    R_LIQ_BUFFER,
    R_LOT_ROUNDING,
    R_MARGIN_TOPUP,
    R_MAX_NOTIONAL,
    R_MISSING_PARAMETER,
    R_NO_LEAD_CHANGE,
    R_NOTHING_TO_CLOSE,
    R_POSITION_LEVERAGE,
    R_RISK_MODEL_REQUIRED,
    R_ROUNDED_UP,
    R_SKIPPED,
    R_SYMBOL_NOT_ALLOWED,
    R_TIER_LIMIT,
)
from levalign._curve_kernel import required_distance
from levalign._layout import (
    B_REDUCE_ONLY,
    B_SIDE,
    C_ALLOWED,
    C_MARGIN_MODE,
    C_MODE,
    C_POLICY,
    F_AVAILABLE,
    F_COLLATERAL,
    F_ENTRY_PRICE,
    F_EQUITY,
    F_EXPECTED_RETURN,
    F_FIXED_NOTIONAL,
    F_HORIZON_HOURS,
    F_LEVERAGE_SETTING,
    F_MAX_LEVERAGE,
    F_MAX_LIQ_PROBABILITY,
    F_MAX_NOTIONAL,
    F_MAX_POSITION_LEVERAGE,
    F_MIN_LIQ_DISTANCE,
    F_OTHER_MM,
    F_OTHER_NOTIONAL,
    F_POSITION,
    F_RESIDUAL,
    F_RISK_FRACTION,
    F_SCALE,
    F_SIGMA,
    F_STOP_SIGMAS,
    F_VOL_TARGET,
    MK_AMOUNT_DECIMALS,
    MK_AMOUNT_STEP,
    MK_CONTRACT_SIZE,
    MK_MIN_AMOUNT,
    MK_MIN_COST,
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
from levalign._margin_kernels import (
    entry_value_liquidation_price,
    liquidation_price_tiered,
    maintenance_margin,
    tier_index,
    tier_root,
)

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int8]
FloatMatrix = NDArray[np.float64]  # 2-D, C-contiguous: one row per column (levalign._layout)
CodeMatrix = NDArray[np.int8]

# the kinds open_kernel sizes (other kinds: generic_kernel)
FAST_PATH_KINDS = OPENING_KINDS
# Rows per parallel block: a block's 40-odd columns (about 270 bytes a row) stay in a core's L2
# cache between open_kernel's vectorized pass and generic_rows' pass over the rows it left
_BLOCK = 2048

# ---- event vector layout
(
    E_KIND,  # one of EV_*
    E_SIDE,  # lead side after an open/increase/flip; before a reduce/close; +1 / -1
    E_PRICE,
    E_UNITS,  # lead's opened base quantity per unit of lead equity (proportional sizing)
    E_OPEN_FRAC,  # opened quantity / lead position after (fixed_notional, follower flat)
    E_GROWTH,  # opened quantity / lead position before (fixed_notional, follower holds)
    E_LEV_TOTAL,  # lead effective leverage over all symbols, after
    E_SHARE,  # this symbol's share of the lead's total notional, after
    E_PHI,  # fraction of the position the lead cut (reduce)
    E_MARGIN_RATIO,  # lead isolated margin after / before (margin event)
    E_STOP,  # lead stop price or NaN
    E_SIGMA,  # event volatility (annualized) or NaN
    E_LEAD_DIST,  # lead's liquidation distance after the event (default follower buffer)
    E_MU,  # event expected return of the price (annualized drift) or NaN
    E_MM_AT_ENTRY,  # 1.0: the venue takes maintenance margin at the entry value (Bybit, KuCoin)
    E_SIZE,
) = range(16)


# LLVM's loop vectorizer gives up on a loop that needs more than 128 run-time checks that its
# arrays do not overlap; open_kernel's vectorized pass reads 26 cohort columns and the block's
# buffers and writes 14 columns, and needs several hundred. The checks run once per block of
# rows, not per row. The option is process-wide: it only lets loops with many arrays
# vectorize, and cannot change what any compiled code computes.
@functools.cache
def _allow_wide_vectorization() -> None:
    """Set the LLVM option above, once per process, before :func:`open_kernel` compiles."""
    import llvmlite.binding as llvm

    llvm.set_option("", "--vectorize-memory-check-threshold=4096")


_HOURS_PER_YEAR = 8760.0
_EPS = 1e-9
# ``x <= _FLOAT_MAX`` is ``x < inf``; compared with inf, LLVM rewrites the test as integer bit
# arithmetic on the float, several times longer than one comparison
_FLOAT_MAX = sys.float_info.max
_TIE = 1.0 - 1e-12  # a cap within this of the target is a tie, not a binding constraint


# The first tier's (cap, mmr, cum, max leverage), read once per event: most followers' notionals
# lie in it, and one comparison with its cap then replaces a tier_index scan and the array reads.
FirstTier = tuple[float, float, float, float]


@njit(cache=True, inline="always")
def _tier_rates(
    notional: float, cap: FloatArray, mmr: FloatArray, cum: FloatArray, first: FirstTier
) -> tuple[float, float]:
    """``(mmr_k, cum_k)`` of the tier :func:`tier_index` finds for ``notional >= 0``."""
    if notional < first[0]:
        return first[1], first[2]
    k = tier_index(cap, notional)
    return mmr[k], cum[k]


@njit(cache=True, inline="always")
def _tier_max_leverage(
    notional: float, cap: FloatArray, max_lev: FloatArray, first: FirstTier
) -> float:
    """Maximum leverage of the tier :func:`tier_index` finds for ``notional >= 0``."""
    if notional < first[0]:
        return first[3]
    return max_lev[tier_index(cap, notional)]


@njit(cache=True, inline="always")
def required_balance(
    qty: float,
    price: float,
    side: float,
    dist: float,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
    first: FirstTier,
) -> float:
    """Margin balance at ``price`` needed so that liquidation is ``dist`` (fraction) away.

    At the liquidation price ``x = price·(1 − s·dist)`` the balance has lost ``qty·price·dist``
    and must still equal the maintenance margin of the notional there.
    """
    x_notional = qty * price * (1.0 - side * dist)
    mmr_k, cum_k = _tier_rates(x_notional, cap, mmr, cum, first)
    return _balance_at(qty, price, dist, x_notional, mmr_k, cum_k)


@njit(cache=True, inline="always")
def _balance_at(
    qty: float, price: float, dist: float, x_notional: float, mmr_k: float, cum_k: float
) -> float:
    """:func:`required_balance` once the tier ``k`` of the liquidation notional is known."""
    return qty * price * dist + x_notional * mmr_k - cum_k


@njit(cache=True, inline="always")
def _in_two_tiers(
    notional: float, first: FirstTier, second: FirstTier, last: int
) -> tuple[bool, bool]:
    """``(in the first tier, in the first or second)`` as :func:`tier_index` places ``notional``.

    Past the last cap is the last tier, so a one-tier table holds every notional in its first,
    and a two-tier table every notional in its first two.
    """
    in_first = (notional < first[0]) | (last == 0)
    return in_first, in_first | (notional < second[0]) | (last == 1)


@njit(cache=True, inline="always")
def _two_tier_required_balance(
    qty: float,
    price: float,
    side: float,
    dist: float,
    first: FirstTier,
    second: FirstTier,
    last: int,
) -> tuple[float, bool]:
    """:func:`required_balance` within the first two tiers, and whether that is its tier."""
    x_notional = qty * price * (1.0 - side * dist)
    in_first, in_two = _in_two_tiers(x_notional, first, second, last)
    mmr_k = first[1] if in_first else second[1]
    cum_k = first[2] if in_first else second[2]
    return _balance_at(qty, price, dist, x_notional, mmr_k, cum_k), in_two


@njit(cache=True, inline="always")
def _balance_root(
    budget: float, price: float, dist: float, factor: float, mmr_k: float, cum_k: float
) -> float:
    """Quantity needing ``budget`` (:func:`required_balance`) when tier ``k`` is the tier.

    ``k`` is the tier of the liquidation notional; ``factor = 1 − s·dist``.
    """
    return (budget + cum_k) / (price * dist + price * factor * mmr_k)


@njit(cache=True, inline="always")
def _margin_top(
    margin: float, price: float, cap_k: float, max_lev_k: float, lev_cap: float
) -> float:
    """Largest quantity ``margin`` buys at tier ``k``'s leverage, capped at the tier's top."""
    # times the reciprocal: loop-invariant, so one division per event in a row loop
    return min(cap_k, margin * min(max_lev_k, lev_cap)) * (1.0 / price)


@njit(cache=True, error_model="numpy")
def max_qty_for_balance(
    budget: float,
    price: float,
    side: float,
    dist: float,
    floor: FloatArray,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    """Largest quantity whose :func:`required_balance` is at most ``budget``.

    The requirement is continuous and increasing in the quantity and linear inside each tier
    of the liquidation notional, so the root lies in exactly one tier.
    """
    if budget <= 0.0:
        return 0.0
    factor = 1.0 - side * dist
    last = cap.shape[0] - 1
    for k in range(last + 1):
        q = _balance_root(budget, price, dist, factor, mmr[k], cum[k])
        n = q * price * factor
        if (n <= cap[k] * (1.0 + 1e-12) or k == last) and n >= floor[k] * (1.0 - 1e-12):
            return q
    return 0.0


@njit(cache=True, inline="always")
def buffer_balance(
    at_entry: bool,
    qty: float,
    price: float,
    side: float,
    dist: float,
    entry_slope: float,
    entry_shift: float,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
    first: FirstTier,
) -> float:
    r"""Margin balance at ``price`` needed so that liquidation is ``dist`` away, by venue rule.

    :func:`required_balance` (maintenance margin at the liquidation notional), or, where the
    venue takes it at the entry value (``at_entry``: Bybit, KuCoin), with the entry notional
    of ``qty`` linear in it, :math:`N_e(Q) = a\,Q + b`:

    .. math:: R(Q) = Q\,p\,d + \mathrm{MM}(a\,Q + b)

    An open from flat has :math:`a = p, b = 0`; an increase of a holding ``cur`` entered at
    :math:`EP_0` has :math:`a = p, b = cur\,(EP_0 - p)`; a position kept at its entry
    :math:`EP` (de-risking) has :math:`a = EP, b = 0`.
    """
    if at_entry:
        return qty * price * dist + maintenance_margin(
            cap, mmr, cum, qty * entry_slope + entry_shift
        )
    return required_balance(qty, price, side, dist, cap, mmr, cum, first)


@njit(cache=True, error_model="numpy")
def max_qty_for_buffer(
    at_entry: bool,
    budget: float,
    price: float,
    side: float,
    dist: float,
    entry_slope: float,
    entry_shift: float,
    floor: FloatArray,
    cap: FloatArray,
    mmr: FloatArray,
    cum: FloatArray,
) -> float:
    """Largest quantity whose :func:`buffer_balance` is at most ``budget``.

    :func:`max_qty_for_balance`, or with maintenance margin at the entry value: the root of
    ``Q·p·d + (a·Q + b)·mmr_k − cum_k = budget`` in the tier ``k`` its entry notional lies in.
    """
    if not at_entry:
        return max_qty_for_balance(budget, price, side, dist, floor, cap, mmr, cum)
    if budget <= 0.0:
        return 0.0
    last = cap.shape[0] - 1
    for k in range(last + 1):
        q = (budget + cum[k] - entry_shift * mmr[k]) / (price * dist + entry_slope * mmr[k])
        n = q * entry_slope + entry_shift
        if (n <= cap[k] * (1.0 + 1e-12) or k == last) and n >= floor[k] * (1.0 - 1e-12):
            return q
    return 0.0


@njit(cache=True, error_model="numpy")
def max_qty_for_initial_margin(
    margin: float,
    price: float,
    cap_arr: FloatArray,
    floor: FloatArray,
    max_lev: FloatArray,
    lev_cap: float,
) -> float:
    """Largest quantity ``Q`` with ``Q·price / min(maxLev(Q·price), lev_cap) ≤ margin``.

    Leverage allowed falls with the tier, so scanning tiers from the top, the first tier in
    which the bound is reachable holds the largest feasible quantity.
    """
    if margin <= 0.0:
        return 0.0
    for k in range(cap_arr.shape[0] - 1, -1, -1):
        top = _margin_top(margin, price, cap_arr[k], max_lev[k], lev_cap)
        if top * price >= floor[k] * (1.0 - 1e-12):
            return top
    return 0.0


@njit(cache=True, inline="always")
def _bind(
    target: float, cap_q: float, held: float, flag: int, reasons: np.uint32
) -> tuple[float, np.uint32]:
    """Apply one constraint: lower the target to ``cap_q`` and flag it if that binds.

    Once the target is at or below the quantity ``held``, the order is zero and later
    constraints have nothing left to limit: they neither change nor flag anything.
    """
    # selects, not branches: whether a cap binds follows the data row by row
    binds = (target > held) & (cap_q < target)
    flagged = binds & (cap_q < target * _TIE)
    return (cap_q if binds else target), (reasons | flag if flagged else reasons)


@njit(cache=True, inline="always")
def _finite_nonnegative(x: float) -> bool:
    """``math.isfinite(x) and x >= 0``, in two comparisons (NaN fails both)."""
    return (x >= 0.0) & (x <= _FLOAT_MAX)


@njit(cache=True, inline="always")
def _finite_positive(x: float) -> bool:
    """``math.isfinite(x) and x > 0``, in two comparisons (NaN fails both)."""
    return (x > 0.0) & (x <= _FLOAT_MAX)


@njit(cache=True, inline="always")
def _own_or(value: float, default: float) -> float:
    """The follower's own ``value`` when set (finite), else the event's ``default``."""
    return value if math.isfinite(value) else default


@njit(cache=True, inline="always")
def _ceil_small(x: float) -> float:
    """``math.ceil(x)`` for ``|x| < 2**63`` by integer truncation, without a libm call."""
    t = int(x)  # toward zero: already the ceiling for negative x and for integers
    return float(t + 1) if t < x else float(t)


# Margin is posted in whole units of 1e-8 of the settle currency (the precision exchanges keep
# USDT and USDC balances in), rounded down
_SETTLE_UNITS = 1e8
# Past this many settle units a double cannot resolve the grid: such margin is posted as is
_SETTLE_EXACT = 2.0**52


@njit(cache=True, inline="always")
def on_grid(x: float, unit_scale: float) -> float:
    """``x`` as the decimal it stands for on the amount grid (``1 / unit_scale`` apart).

    Amounts, closes and targets are whole amount units; their sums and products in floating
    point (``0.41000000000000003``) come back as the nearest double to that decimal
    (``0.41``), which prints and formats as the exchange expects. A value off the grid (a
    position the follower gave that is not a whole number of units) is left as it is.
    """
    k = x * unit_scale
    r = np.floor(k + 0.5)
    return r / unit_scale if abs(k - r) <= 1e-6 else x


@njit(cache=True, inline="always")
def margin_to_post(margin: float, cap: float) -> float:
    """``margin``, at most ``cap`` (what the follower has), rounded down to the settle grid."""
    c = min(margin, cap)
    k = np.floor(c * _SETTLE_UNITS)
    r = k / _SETTLE_UNITS
    r = (k - 1.0) / _SETTLE_UNITS if r > c else r
    return c if k >= _SETTLE_EXACT else max(r, 0.0)


@njit(cache=True, inline="always")
def _initial_margin(
    qty: float, price: float, cap: FloatArray, max_lev: FloatArray, lev_cap: float, first: FirstTier
) -> float:
    """Initial margin at the tier's maximum leverage or the follower's setting, if lower."""
    n = qty * price
    return n / min(_tier_max_leverage(n, cap, max_lev, first), lev_cap)


# The event fields the sizing modes read: (units, open_frac, growth, lev_total, share, stop)
SizingEvent = tuple[float, float, float, float, float, float]


@njit(cache=True, inline="always")
def _sizing_event(ev: FloatArray) -> SizingEvent:
    """The event fields :func:`_mode_quantity` reads, as scalars read once per event."""
    return ev[E_UNITS], ev[E_OPEN_FRAC], ev[E_GROWTH], ev[E_LEV_TOTAL], ev[E_SHARE], ev[E_STOP]


# What every row of one event shares (see _event_constants)
EventConstants = tuple[
    int,
    float,
    float,
    float,
    float,
    float,
    float,
    float,
    int,
    float,
    float,
    float,
    SizingEvent,
    float,
    FirstTier,
]


# not inlined: numba's parallel array analysis rejects the inlined nested tuple, and it runs
# once per call
@njit(cache=True, error_model="numpy")
def _event_constants(
    ev: FloatArray,
    contract_size: float,
    amount_step: float,
    amount_decimals: int,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    t_max_lev: FloatArray,
) -> EventConstants:
    """Per-event scalars both kernels read, computed once per event (or block of rows).

    ``(kind, lead side, price, 1/price, base units per lot, lots per base unit, 1/contract
    size, 10^decimals, units per step, lead liquidation distance, event sigma, event mu, sizing
    fields, largest tier quantity, first tier)``. Amounts leave as whole decimal units over
    ``10^decimals``: an exact integer over an exact power of ten is the correctly rounded
    decimal, with no per-row ``round(x, ndigits)``. Every other division by a per-event
    constant is a product with its reciprocal: divisions are the vectorized pass's bottleneck.
    With the usual contract size of 1 the products are exact; otherwise they may differ from
    the quotients by one ulp, and lot counting tolerates a billionth of a lot.
    """
    p = ev[E_PRICE]
    inv_p = 1.0 / p  # one division per event instead of several per follower
    unit_scale = 10.0**amount_decimals
    return (
        int(ev[E_KIND]),
        ev[E_SIDE],
        p,
        inv_p,
        amount_step * contract_size,
        1.0 / (amount_step * contract_size),
        1.0 / contract_size,
        unit_scale,
        round(amount_step * unit_scale),
        0.0 if math.isnan(ev[E_LEAD_DIST]) else ev[E_LEAD_DIST],
        # loads from ``ev`` are not hoisted out of a row loop (the compiler cannot rule out
        # that an output column aliases it): read once here
        ev[E_SIGMA],
        ev[E_MU],
        _sizing_event(ev),
        t_cap[t_cap.shape[0] - 1] * inv_p,
        (t_cap[0], t_mmr[0], t_cum[0], t_max_lev[0]),
    )


@njit(cache=True, inline="always")
def valid_account(
    equity: float,
    position: float,
    entry_price: float,
    collateral: float,
    available: float,
    other_notional: float,
    other_mm: float,
) -> bool:
    """Whether a follower's account state is usable (:func:`_valid_row`, de-risking)."""
    return (
        _finite_positive(equity)
        & math.isfinite(position)
        & ((position == 0.0) | _finite_positive(entry_price))
        & _finite_nonnegative(collateral)
        & (available >= 0.0)  # NaN fails; infinite is allowed
        & _finite_nonnegative(other_notional)
        & _finite_nonnegative(other_mm)
    )


@njit(cache=True, inline="always")
def _valid_row(
    equity: float,
    position: float,
    entry_price: float,
    collateral: float,
    scale: float,
    available: float,
    other_notional: float,
    other_mm: float,
    dist: float,
    residual: float,
    alpha: float,
    codes: int,
    max_leverage: float,
    max_position_leverage: float,
    max_notional: float,
    leverage_setting: float,
) -> bool:
    """Whether a follower row can be sized at all (else it gets ``INVALID_ROW``).

    ``codes`` is the bitwise or of the mode, margin-mode and policy codes (negative: unknown).
    ``&`` rather than ``and``: every row is valid in the common case, and one test of the
    combined flag replaces a chain of a dozen branches.
    """
    return (
        valid_account(
            equity, position, entry_price, collateral, available, other_notional, other_mm
        )
        & _finite_nonnegative(scale)
        & (dist >= 0.0)
        & (dist < 1.0)
        & math.isfinite(residual)
        & (math.isnan(alpha) | ((alpha > 0.0) & (alpha <= 1.0)))
        & (codes >= 0)
        & (not (max_leverage <= 0.0))
        & (not (max_position_leverage <= 0.0))
        & (not (max_notional < 0.0))
        & (not (leverage_setting <= 0.0))
    )


@njit(cache=True, inline="always")
def _mode_quantity(
    mode: int,
    side: float,
    held: float,
    equity: float,
    price: float,
    inv_price: float,
    scale: float,
    fixed_notional: float,
    risk_fraction: float,
    vol_target: float,
    sigma: float,
    stop_sigmas: float,
    horizon_hours: float,
    expected_return: float,
    max_leverage: float,
    sizing_ev: SizingEvent,
) -> float:
    """Base quantity the sizing mode asks to add to ``held`` (docs/design.md, "Normalization").

    NaN when a parameter the mode needs is missing. ``sigma`` and ``expected_return`` are the
    follower's own or the event's.
    """
    units, open_frac, growth, lev_total, share, stop = sizing_ev
    d = math.nan
    if mode == M_PROPORTIONAL:
        d = scale * units * equity
    elif mode == M_FIXED and fixed_notional >= 0.0:
        d = fixed_notional * inv_price * open_frac if held == 0.0 else held * growth
    elif mode == M_TARGET_LEV:
        lev = min(scale * lev_total, max_leverage)
        d = lev * equity * share * inv_price - held
    elif mode == M_RISK:
        stop_dist = math.nan
        if not math.isnan(stop):
            stop_dist = abs(price - stop)
        elif sigma > 0.0 and horizon_hours > 0.0:
            stop_dist = price * stop_sigmas * sigma * math.sqrt(horizon_hours / _HOURS_PER_YEAR)
        if risk_fraction >= 0.0 and stop_dist > 0.0:
            d = risk_fraction * equity / stop_dist - held
    elif mode == M_VOL and vol_target >= 0.0 and sigma > 0.0:
        d = vol_target / sigma * equity * inv_price - held
    elif mode == M_OPTIMAL and sigma > 0.0 and math.isfinite(expected_return):
        # growth-optimal (Kelly) leverage mu/sigma^2 in the lead's direction; the
        # probability limit caps it through the buffer solver
        d = side * expected_return / (sigma * sigma) * equity * inv_price - held
    return d


# Compiled without numba's reference-counting runtime: it allocates nothing, and with the
# runtime every row increments and decrements the count of the arrays it passes to the solvers
# (markedly slower than without). numba refuses to compile an allocation here, and in a
# callee it compiles for this function first (today's callees allocate nothing). numba's type
# stubs do not list the ``_nrt`` option.
# The error model is set, not inherited: a callee without one takes its first caller's, so
# open_kernel's (numpy) or generic_kernel's (python, raising) would depend on which compiled
# first. numpy's, as in the vectorized pass: a division by zero gives inf or NaN, and the row
# gets its reason codes, never an exception from inside the parallel loop.
@njit(cache=True, error_model="numpy", _nrt=False)  # type: ignore[call-overload, untyped-decorator]
def generic_rows(
    ev: FloatArray,
    market: FloatArray,
    tiers: FloatMatrix,
    # liquidation curve of the event's volatility model (levalign._curve_kernel); empty: none
    curve_table: NDArray[np.float64],
    curve_y: FloatArray,
    curve_h: FloatArray,
    # the cohort (levalign._layout: F_* rows of cf, C_* rows of cc)
    cf: FloatMatrix,
    cc: CodeMatrix,
    # the result (O_* rows of of, B_* rows of ob, reason bits)
    of: FloatMatrix,
    ob: CodeMatrix,
    o_reasons: NDArray[np.uint32],
    select: NDArray[np.bool_],
    start: int,
    stop: int,
) -> None:
    """Fill the output columns of the rows ``select`` marks from ``start`` to ``stop``.

    An empty ``select`` marks every row. Every event kind and every kind of row, one follower
    at a time: the cohort kernel's semantics, which :func:`open_kernel`'s vectorized pass
    reproduces for the common case of an open (see :func:`levalign.normalize.run_kernel`).
    Serial: :func:`generic_kernel` and :func:`open_kernel` run it over blocks of rows in
    parallel, and its ``py_func`` is the plain-Python execution tests and the benchmark
    compare them with (where the compiled code divides by zero into inf or NaN, numpy's error
    model, the plain-Python run raises ZeroDivisionError).
    """
    cs = market[MK_CONTRACT_SIZE]
    amount_step = market[MK_AMOUNT_STEP]
    amount_decimals = int(market[MK_AMOUNT_DECIMALS])
    min_amount = market[MK_MIN_AMOUNT]
    min_cost = market[MK_MIN_COST]
    t_floor, t_cap, t_mmr = tiers[T_FLOOR], tiers[T_CAP], tiers[T_MMR]
    t_cum, t_max_lev = tiers[T_CUM], tiers[T_MAX_LEV]
    (
        kind,
        s_lead,
        p,
        inv_p,
        lot,
        inv_lot,
        inv_cs,
        unit_scale,
        step_units,
        lead_dist,
        ev_sigma,
        ev_mu,
        sizing_ev,
        tier_cap_q,
        first,
    ) = _event_constants(ev, cs, amount_step, amount_decimals, t_cap, t_mmr, t_cum, t_max_lev)
    last_cap = t_cap[t_cap.shape[0] - 1]
    at_entry = ev[E_MM_AT_ENTRY] == 1.0
    selected = select.shape[0] > 0
    # an unsigned index: a signed one makes every column read test for a negative index
    for i in range(np.uint64(start), np.uint64(stop)):
        if selected and not select[i]:
            continue
        reasons = np.uint32(0)
        eq = cf[F_EQUITY, i]
        pos_c = cf[F_POSITION, i]
        ep0 = cf[F_ENTRY_PRICE, i]
        c0 = cf[F_COLLATERAL, i]
        isolated = cc[C_MARGIN_MODE, i] == MM_ISOLATED
        alpha = cf[F_MAX_LIQ_PROBABILITY, i]
        dist = cf[F_MIN_LIQ_DISTANCE, i]
        if math.isnan(dist):
            # unset: a probability limit replaces it, else survive whatever the lead survives
            dist = lead_dist if math.isnan(alpha) else 0.0
        # defaults: no order, state unchanged
        side_out = 0
        amount = 0.0
        close_amt = 0.0
        reduce_only = False
        lev_out = math.nan
        coll_out = 0.0
        raw = 0.0
        pol = cc[C_POLICY, i]
        accumulate = pol == P_ACCUMULATE
        avail = cf[F_AVAILABLE, i]
        # read unconditionally: a select, where a load under the policy test is a branch that
        # follows the (random) policy column
        r0 = cf[F_RESIDUAL, i]
        res_out = r0 if accumulate else 0.0
        valid = _valid_row(
            eq,
            pos_c,
            ep0,
            c0,
            cf[F_SCALE, i],
            avail,
            cf[F_OTHER_NOTIONAL, i],
            cf[F_OTHER_MM, i],
            dist,
            res_out,
            alpha,
            cc[C_MODE, i] | cc[C_MARGIN_MODE, i] | pol,
            cf[F_MAX_LEVERAGE, i],
            cf[F_MAX_POSITION_LEVERAGE, i],
            cf[F_MAX_NOTIONAL, i],
            cf[F_LEVERAGE_SETTING, i],
        )
        q = pos_c * cs  # signed base quantity held
        if not valid:
            ob[B_SIDE, i] = 0
            of[O_AMOUNT, i] = 0.0
            of[O_CLOSE_AMOUNT, i] = 0.0
            ob[B_REDUCE_ONLY, i] = False
            of[O_LEVERAGE, i] = math.nan
            of[O_COLLATERAL, i] = 0.0
            of[O_TARGET, i] = pos_c if math.isfinite(pos_c) else math.nan
            of[O_RAW, i] = 0.0
            o_reasons[i] = R_INVALID_ROW
            of[O_EFF_LEV, i] = math.nan
            of[O_LIQ, i] = math.nan
            of[O_LIQ_DIST, i] = math.nan
            of[O_RESIDUAL, i] = 0.0
            continue
        s_f = 1.0 if q > 0.0 else (-1.0 if q < 0.0 else 0.0)
        # the follower's own leverage setting caps every tier's (NaN: the tier's maximum)
        lev_cap = cf[F_LEVERAGE_SETTING, i] if cf[F_LEVERAGE_SETTING, i] > 0.0 else math.inf
        if cc[C_ALLOWED, i] == 0:
            reasons |= R_SYMBOL_NOT_ALLOWED
        elif kind == EV_NONE:
            reasons |= R_NO_LEAD_CHANGE
        elif kind == EV_MARGIN:
            if isolated and q != 0.0 and s_f == s_lead and ev[E_MARGIN_RATIO] > 1.0:
                wanted = c0 * (ev[E_MARGIN_RATIO] - 1.0)
                add = min(wanted, avail)
                if add > 0.0:
                    coll_out = margin_to_post(add, avail)
                    c0 += coll_out
                    reasons |= R_MARGIN_TOPUP
                    if add < wanted:
                        reasons |= R_AVAILABLE_MARGIN
            else:
                reasons |= R_NO_LEAD_CHANGE
        elif kind in (EV_CLOSE, EV_REDUCE):
            if q == 0.0 or s_f != s_lead:
                reasons |= R_NOTHING_TO_CLOSE
            else:
                held = abs(pos_c)
                if kind == EV_CLOSE:
                    amt = held
                else:
                    amt = math.floor(ev[E_PHI] * held / amount_step + 0.5) * amount_step
                    if amt >= held - 0.5 * amount_step:
                        amt = held
                    elif amt < min_amount - _EPS * amount_step:
                        reasons |= R_BELOW_MIN_AMOUNT
                        if pol == P_ROUND_UP:
                            amt = min(
                                math.ceil(min_amount / amount_step - _EPS) * amount_step, held
                            )
                            reasons |= R_ROUNDED_UP
                        else:
                            amt = 0.0
                            reasons |= R_SKIPPED
                    res_out = res_out * (1.0 - ev[E_PHI])
                if amt > 0.0:
                    side_out = int(-s_f)
                    amount = amt
                    close_amt = amt
                    reduce_only = True
                    if isolated and held > 0.0:
                        c0 = c0 * (1.0 - amt / held)  # margin released pro rata
                    q = s_f * (held - amt) * cs
                if kind == EV_CLOSE:
                    res_out = 0.0
        else:  # open, increase, flip
            s = s_lead
            if q != 0.0 and s_f != s:
                # follower holds the other side: close it first (flip for this follower)
                close_amt = abs(pos_c)
                reasons |= R_FLIPPED
                if isolated:
                    avail += c0 + s_f * abs(q) * (p - ep0)
                c0 = 0.0
                q = 0.0
                res_out = 0.0
            cur = abs(q)
            m = cc[C_MODE, i]
            d = math.nan
            if not math.isnan(alpha):
                # the probability limit as a buffer: the curve's smallest safe distance
                d_req = math.nan
                if curve_h.shape[0] > 0:
                    d_req = required_distance(
                        curve_table,
                        curve_y,
                        curve_h,
                        0 if s > 0.0 else 1,
                        alpha,
                        cf[F_HORIZON_HOURS, i],
                    )
                if math.isnan(d_req):
                    reasons |= R_RISK_MODEL_REQUIRED
                elif d_req > dist:
                    dist = d_req
            if (reasons & R_RISK_MODEL_REQUIRED) == 0:
                d = _mode_quantity(
                    m,
                    s,
                    cur,
                    eq,
                    p,
                    inv_p,
                    cf[F_SCALE, i],
                    cf[F_FIXED_NOTIONAL, i],
                    cf[F_RISK_FRACTION, i],
                    cf[F_VOL_TARGET, i],
                    _own_or(cf[F_SIGMA, i], ev_sigma),
                    cf[F_STOP_SIGMAS, i],
                    cf[F_HORIZON_HOURS, i],
                    _own_or(cf[F_EXPECTED_RETURN, i], ev_mu),
                    cf[F_MAX_LEVERAGE, i],
                    sizing_ev,
                )
            if math.isnan(d) and (reasons & R_RISK_MODEL_REQUIRED) == 0:
                reasons |= R_MISSING_PARAMETER
            if not math.isnan(d):
                if accumulate:
                    d += res_out * cs
                raw = d
                if d <= 0.0:
                    reasons |= R_AT_TARGET
                    res_out = 0.0
                else:
                    target = cur + d
                    upnl0 = s * cur * (p - ep0) if cur > 0.0 else 0.0
                    # entry notional after an order: target·p + cur·(EP0 − p)
                    shift = cur * (ep0 - p) if cur > 0.0 else 0.0
                    # -- constraints in the order of docs/design.md, "Normalization";
                    # each flags when it binds
                    cap_pos = cf[F_MAX_POSITION_LEVERAGE, i] * eq * inv_p
                    cap_acct = (cf[F_MAX_LEVERAGE, i] * eq - cf[F_OTHER_NOTIONAL, i]) * inv_p
                    # a cap at or above the target binds nowhere: most rows skip all three (and
                    # the plain-Python run of this kernel makes no calls for them)
                    if cap_pos < target or tier_cap_q < target or cap_acct < target:
                        target, reasons = _bind(target, cap_pos, cur, R_POSITION_LEVERAGE, reasons)
                        target, reasons = _bind(target, tier_cap_q, cur, R_TIER_LIMIT, reasons)
                        target, reasons = _bind(target, cap_acct, cur, R_ACCOUNT_LEVERAGE, reasons)
                    # once the target is at or below the holding the order is zero: the
                    # remaining constraints have nothing left to limit
                    budget = (c0 + avail + upnl0) if isolated else (eq - cf[F_OTHER_MM, i])
                    if (
                        target > cur
                        and buffer_balance(
                            at_entry, target, p, s, dist, p, shift, t_cap, t_mmr, t_cum, first
                        )
                        > budget
                    ):
                        cap_q = max_qty_for_buffer(
                            at_entry, budget, p, s, dist, p, shift, t_floor, t_cap, t_mmr, t_cum
                        )
                        target, reasons = _bind(
                            target,
                            cap_q,
                            cur,
                            R_LIQ_BUFFER if dist > 0.0 else R_AVAILABLE_MARGIN,
                            reasons,
                        )
                    # initial margin: isolated posts it all (existing collateral counts);
                    # cross needs only the increase over what the position already locks
                    im_budget = avail + (
                        c0
                        if isolated
                        else _initial_margin(cur, p, t_cap, t_max_lev, lev_cap, first)
                    )
                    if (
                        target > cur
                        and _initial_margin(target, p, t_cap, t_max_lev, lev_cap, first) > im_budget
                    ):
                        cap_q = max_qty_for_initial_margin(
                            im_budget, p, t_cap, t_floor, t_max_lev, lev_cap
                        )
                        target, reasons = _bind(target, cap_q, cur, R_AVAILABLE_MARGIN, reasons)
                    cap_q = cf[F_MAX_NOTIONAL, i] * inv_p
                    if cap_q < target:
                        target, reasons = _bind(target, cap_q, cur, R_MAX_NOTIONAL, reasons)
                    d_ok = max(target - cur, 0.0)
                    # -- lots, exchange minimums, min-size policy
                    exact = d_ok * inv_lot
                    # int() truncates: the floor of a non-negative number, without a libm call
                    lots = int(exact + _EPS)
                    if exact - lots > _EPS * max(1.0, exact):  # dropped > a billionth
                        reasons |= R_LOT_ROUNDING
                    amt = lots * step_units / unit_scale
                    small = False
                    if lots == 0 or amt < min_amount - _EPS * amount_step:
                        reasons |= R_BELOW_MIN_AMOUNT
                        small = True
                    if amt * cs * p < min_cost * (1.0 - 1e-12):
                        reasons |= R_BELOW_MIN_COST
                        small = True
                    if small:
                        if pol == P_ROUND_UP and d_ok > 0.0:
                            lots_up = max(
                                1.0,
                                math.ceil(min_amount / amount_step - _EPS),
                                math.ceil(min_cost / (p * cs * amount_step) - _EPS),
                            )
                            q_up = cur + lots_up * lot
                            ok = (
                                q_up <= cf[F_MAX_POSITION_LEVERAGE, i] * eq * inv_p * (1.0 + 1e-12)
                                and q_up * p <= last_cap
                                and q_up * p + cf[F_OTHER_NOTIONAL, i]
                                <= cf[F_MAX_LEVERAGE, i] * eq * (1.0 + 1e-12)
                                and buffer_balance(
                                    at_entry, q_up, p, s, dist, p, shift, t_cap, t_mmr, t_cum, first
                                )
                                <= budget
                                and q_up * p <= cf[F_MAX_NOTIONAL, i] * (1.0 + 1e-12)
                                and _initial_margin(q_up, p, t_cap, t_max_lev, lev_cap, first)
                                <= im_budget
                            )
                            if ok:
                                amt = lots_up * step_units / unit_scale
                                reasons |= R_ROUNDED_UP
                            else:
                                amt = 0.0
                                reasons |= R_SKIPPED
                        elif pol == P_ACCUMULATE:
                            amt = 0.0
                            reasons |= R_ACCUMULATED
                        else:
                            amt = 0.0
                            reasons |= R_SKIPPED
                    if amt > 0.0:
                        res_out = (d_ok - amt * cs) * inv_cs if accumulate else 0.0
                    else:
                        res_out = d_ok * inv_cs  # carried (accumulate) or recorded (skip)
                    if accumulate and res_out < 0.0:
                        res_out = 0.0
                    if amt > 0.0:
                        side_out = int(s)
                        amount = amt + close_amt
                        new_q = cur + amt * cs
                        n_new = new_q * p
                        tier_lev = min(_tier_max_leverage(n_new, t_cap, t_max_lev, first), lev_cap)
                        if isolated:
                            need_buffer = buffer_balance(
                                at_entry, new_q, p, s, dist, p, shift, t_cap, t_mmr, t_cum, first
                            )
                            need = max(
                                need_buffer - upnl0,
                                n_new / tier_lev,
                                c0,
                            )
                            coll_out = margin_to_post(need - c0, avail)
                            lev_out = (
                                tier_lev
                                if lev_cap < math.inf
                                else min(tier_lev, max(1.0, _ceil_small(n_new / need - 1e-9)))
                            )
                            c0 += coll_out
                        else:
                            cap_set = cf[F_MAX_POSITION_LEVERAGE, i]
                            lev_out = (
                                tier_lev
                                if lev_cap < math.inf or not (cap_set < tier_lev)
                                else max(1.0, math.ceil(cap_set))
                            )
                        ep0 = (cur * ep0 + amt * cs * p) / new_q if cur > 0.0 else p
                        q = s * new_q
            if close_amt > 0.0 and amount == 0.0:
                # the follower's opposite position is closed even when no new leg follows
                side_out = int(-s_f)
                amount = close_amt
                reduce_only = True
        # -- state after the order
        held_q = abs(q)
        ob[B_SIDE, i] = side_out
        of[O_AMOUNT, i] = on_grid(amount, unit_scale)
        of[O_CLOSE_AMOUNT, i] = on_grid(close_amt, unit_scale)
        ob[B_REDUCE_ONLY, i] = reduce_only
        of[O_LEVERAGE, i] = lev_out
        of[O_COLLATERAL, i] = coll_out
        of[O_TARGET, i] = on_grid(q * inv_cs, unit_scale)
        of[O_RAW, i] = raw * inv_cs
        o_reasons[i] = reasons
        of[O_RESIDUAL, i] = res_out
        of[O_EFF_LEV, i] = (held_q * p + cf[F_OTHER_NOTIONAL, i]) / eq
        if held_q > 0.0:
            sq = 1.0 if q > 0.0 else -1.0
            # one inlined solve on selected inputs: isolated margin at the entry price, or the
            # cross balance at the mark (two call sites would inline the tier loop twice)
            balance_liq = c0 if isolated else eq - cf[F_OTHER_MM, i]
            ref_liq = ep0 if isolated else p
            if at_entry:
                lp = entry_value_liquidation_price(
                    balance_liq, sq, held_q, ref_liq, ep0, t_cap, t_mmr, t_cum
                )
            else:
                lp = liquidation_price_tiered(
                    balance_liq, sq, held_q, ref_liq, True, t_floor, t_cap, t_mmr, t_cum
                )
            of[O_LIQ, i] = lp
            of[O_LIQ_DIST, i] = abs(p - lp) * inv_p
        else:
            of[O_LIQ, i] = math.nan
            of[O_LIQ_DIST, i] = math.nan


@njit(cache=True, parallel=True, error_model="numpy")
def generic_kernel(
    ev: FloatArray,
    market: FloatArray,
    tiers: FloatMatrix,
    # liquidation curve of the event's volatility model (levalign._curve_kernel); empty: none
    curve_table: NDArray[np.float64],
    curve_y: FloatArray,
    curve_h: FloatArray,
    # the cohort (levalign._layout: F_* rows of cf, C_* rows of cc)
    cf: FloatMatrix,
    cc: CodeMatrix,
    # the result (O_* rows of of, B_* rows of ob, reason bits)
    of: FloatMatrix,
    ob: CodeMatrix,
    o_reasons: NDArray[np.uint32],
) -> None:
    """Every follower through :func:`generic_rows`, blocks of rows in parallel."""
    n = cf.shape[1]
    everyone = np.empty(0, dtype=np.bool_)
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        generic_rows(
            ev,
            market,
            tiers,
            curve_table,
            curve_y,
            curve_h,
            cf,
            cc,
            of,
            ob,
            o_reasons,
            everyone,
            b * _BLOCK,
            min(n, (b + 1) * _BLOCK),
        )


@njit(cache=True, error_model="numpy", inline="never")
def _required_distances(
    out: FloatArray,
    cf: FloatMatrix,
    start: int,
    stop: int,
    curve_table: NDArray[np.float64],
    curve_y: FloatArray,
    curve_h: FloatArray,
    curve_side: int,
) -> None:
    """``out[i - start]``: the buffer row ``i``'s probability limit needs (NaN: no limit).

    Called once per block, and only when there is a curve: run over every row without one,
    the scan costs about a fifth of the vectorized pass.
    """
    for i in range(np.uint64(start), np.uint64(stop)):
        alpha = cf[F_MAX_LIQ_PROBABILITY, i]
        out[i - np.uint64(start)] = (
            required_distance(
                curve_table, curve_y, curve_h, curve_side, alpha, cf[F_HORIZON_HOURS, i]
            )
            if not math.isnan(alpha)
            else math.nan
        )


def open_kernel(
    ev: FloatArray,
    market: FloatArray,
    tiers: FloatMatrix,
    curve_table: NDArray[np.float64],
    curve_y: FloatArray,
    curve_h: FloatArray,
    cf: FloatMatrix,
    cc: CodeMatrix,
    of: FloatMatrix,
    ob: CodeMatrix,
    o_reasons: NDArray[np.uint32],
    slow: NDArray[np.bool_],
) -> None:
    """:func:`_open_kernel`, with the LLVM option its vectorized pass needs.

    The option is set on the first call, not at import: importing the kernels changes nothing
    process-wide. An event whose venue takes maintenance margin at the entry value
    (``E_MM_AT_ENTRY``) runs :func:`generic_kernel`, every row marked in ``slow``.
    """
    if ev[E_MM_AT_ENTRY] == 1.0:
        # maintenance margin at the entry value: the vectorized pass does not model it, every
        # row takes the generic row code
        slow[:] = True
        generic_kernel(ev, market, tiers, curve_table, curve_y, curve_h, cf, cc, of, ob, o_reasons)
        return
    _allow_wide_vectorization()
    _open_kernel(ev, market, tiers, curve_table, curve_y, curve_h, cf, cc, of, ob, o_reasons, slow)


@njit(cache=True, parallel=True, error_model="numpy")
def _open_kernel(
    ev: FloatArray,
    market: FloatArray,
    tiers: FloatMatrix,
    # liquidation curve of the event's volatility model (levalign._curve_kernel); empty: none
    curve_table: NDArray[np.float64],
    curve_y: FloatArray,
    curve_h: FloatArray,
    # the cohort (levalign._layout: F_* rows of cf, C_* rows of cc)
    cf: FloatMatrix,
    cc: CodeMatrix,
    # the result (O_* rows of of, B_* rows of ob, reason bits)
    of: FloatMatrix,
    ob: CodeMatrix,
    o_reasons: NDArray[np.uint32],
    slow: NDArray[np.bool_],
) -> None:
    """An open, increase or flip for every follower: what :func:`generic_kernel` computes.

    Rows go in blocks of ``_BLOCK``, the blocks in parallel. A scalar pass looks up the
    buffer each probability limit needs on the curve; a vectorized pass then sizes the common
    case of the block: a valid, allowed row whose probability limit (if any) the curve
    resolves, flat or on the lead's side, whose sizing mode asks for more, whose notionals stay
    in the first two tiers and whose order is not rounded up to the exchange minimum. For those
    rows it computes exactly what :func:`generic_rows` computes, with the same floating-point
    operations in the same order. It marks every other row in ``slow``, and
    :func:`generic_rows` then sizes those while the block's columns are still in cache
    (gathered from memory afterwards, a sixth of a million rows cost as much as the vectorized
    pass over all of them). It takes the generic kernel's arguments plus ``slow``, so that one
    argument tuple serves both.

    The vectorized pass has no branches that depend on the row, so that LLVM's loop
    vectorizer runs four followers per instruction: each constraint is computed for every
    row and applied by a select, and numpy's error model lets divisions by zero in rows bound
    for the generic path yield inf or NaN instead of raising.
    """
    cs = market[MK_CONTRACT_SIZE]
    amount_step = market[MK_AMOUNT_STEP]
    amount_decimals = int(market[MK_AMOUNT_DECIMALS])
    min_amount = market[MK_MIN_AMOUNT]
    min_cost = market[MK_MIN_COST]
    t_floor, t_cap, t_mmr = tiers[T_FLOOR], tiers[T_CAP], tiers[T_MMR]
    t_cum, t_max_lev = tiers[T_CUM], tiers[T_MAX_LEV]
    (
        _,
        s,
        p,
        inv_p,
        _,
        inv_lot,
        inv_cs,
        unit_scale,
        step_units,
        lead_dist,
        ev_sigma,
        ev_mu,
        sizing_ev,
        tier_cap_q,
        first,
    ) = _event_constants(ev, cs, amount_step, amount_decimals, t_cap, t_mmr, t_cum, t_max_lev)
    last = t_cap.shape[0] - 1
    n = cf.shape[1]
    has_curve = curve_h.shape[0] > 0
    curve_side = 0 if s > 0.0 else 1
    # the tier shortcuts take the first tier to start at 0, as TierTable.from_rows ensures; a
    # table built around it leaves every row to generic_rows
    tiers_from_zero = t_floor[0] == 0.0
    for k in range(1, last + 1):
        # ...and floors that never fall (the initial-margin shortcut below relies on it)
        tiers_from_zero &= t_floor[k] >= t_floor[k - 1]
    first_cap_hi = first[0] * (1.0 + 1e-12)
    # The second tier's (cap, mmr, cum, max leverage); a one-tier table never selects it
    second = (t_cap[1], t_mmr[1], t_cum[1], t_max_lev[1]) if last > 0 else first
    floor_1 = t_floor[1] * (1.0 - 1e-12) if last > 0 else math.inf
    cap_1_hi = second[0] * (1.0 + 1e-12)
    # The initial-margin solver scans the tiers from the top; when leverage never rises past
    # the third tier, a budget that cannot reach the third tier's floor reaches no higher
    # floor, and the first two tiers hold the answer (otherwise such rows take the generic
    # path)
    lev_falls = True
    for k in range(3, last + 1):
        lev_falls &= t_max_lev[k] <= t_max_lev[2]
    floor_2 = t_floor[2] * (1.0 - 1e-12) if last > 1 else math.inf
    cap_2 = t_cap[2] if last > 1 else math.inf
    max_lev_2 = t_max_lev[2] if last > 1 else math.inf
    # A long whose first-tier liquidation root is not positive is safe at every price when
    # cum starts at 0 and never falls and every mmr is in [0, 1): each tier's root numerator
    # is then at least the first's (>= 0) over a denominator q·mmr_k − q <= 0, so
    # liquidation_price_tiered skips every tier, and _no_root finds the balance (>= q·price) at or
    # above every tier's maintenance margin (q·price·mmr_k − cum_k): NaN
    no_liq_if_first_root_fails = t_cum[0] == 0.0
    for k in range(last + 1):
        no_liq_if_first_root_fails &= (0.0 <= t_mmr[k] < 1.0) and t_cum[k] >= t_cum[max(k - 1, 0)]
    for b in prange((n + _BLOCK - 1) // _BLOCK):
        lo, hi = b * _BLOCK, min(n, (b + 1) * _BLOCK)
        # an unsigned index: with a signed one every column read tests for a negative index,
        # and the vectorizer turns the reads into gathers
        lo_u, hi_u = np.uint64(lo), np.uint64(hi)
        # the buffers the rows' probability limits need, looked up on the curve first: a
        # binary search per row would stop the pass below from vectorizing (NaN: no limit, or
        # no curve, and the row is left to generic_rows)
        required = np.empty(_BLOCK)
        if has_curve:
            _required_distances(
                required,
                cf,
                lo,
                hi,
                curve_table,
                curve_y,
                curve_h,
                curve_side,
            )
        for i in range(lo_u, hi_u):
            eq = cf[F_EQUITY, i]
            pos_c = cf[F_POSITION, i]
            ep0 = cf[F_ENTRY_PRICE, i]
            c0 = cf[F_COLLATERAL, i]
            mm = cc[C_MARGIN_MODE, i]
            isolated = mm == MM_ISOLATED
            alpha = cf[F_MAX_LIQ_PROBABILITY, i]
            dist_set = cf[F_MIN_LIQ_DISTANCE, i]
            # generic_rows' buffer: the follower's, else the lead's (none under a probability
            # limit), raised to what the limit requires
            dist_own = (
                (lead_dist if math.isnan(alpha) else 0.0) if math.isnan(dist_set) else dist_set
            )
            d_req = required[i - lo_u] if has_curve else math.nan
            dist = d_req if d_req > dist_own else dist_own
            pol = cc[C_POLICY, i]
            accumulate = pol == P_ACCUMULATE
            avail = cf[F_AVAILABLE, i]
            r0 = cf[F_RESIDUAL, i]
            res_in = r0 if accumulate else 0.0
            m = cc[C_MODE, i]
            max_lev = cf[F_MAX_LEVERAGE, i]
            max_pos_lev = cf[F_MAX_POSITION_LEVERAGE, i]
            other = cf[F_OTHER_NOTIONAL, i]
            other_maint = cf[F_OTHER_MM, i]
            setting = cf[F_LEVERAGE_SETTING, i]
            valid = _valid_row(
                eq,
                pos_c,
                ep0,
                c0,
                cf[F_SCALE, i],
                avail,
                other,
                other_maint,
                dist_own,
                res_in,
                alpha,
                m | mm | pol,
                max_lev,
                max_pos_lev,
                cf[F_MAX_NOTIONAL, i],
                setting,
            )
            q = pos_c * cs
            s_f = 1.0 if q > 0.0 else (-1.0 if q < 0.0 else 0.0)
            lev_cap = setting if setting > 0.0 else math.inf
            cur = abs(q)
            d = _mode_quantity(
                m,
                s,
                cur,
                eq,
                p,
                inv_p,
                cf[F_SCALE, i],
                cf[F_FIXED_NOTIONAL, i],
                cf[F_RISK_FRACTION, i],
                cf[F_VOL_TARGET, i],
                _own_or(cf[F_SIGMA, i], ev_sigma),
                cf[F_STOP_SIGMAS, i],
                cf[F_HORIZON_HOURS, i],
                _own_or(cf[F_EXPECTED_RETURN, i], ev_mu),
                max_lev,
                sizing_ev,
            )
            if accumulate:
                d += res_in * cs
            fast = (
                tiers_from_zero
                & valid
                & (cc[C_ALLOWED, i] != 0)
                & (math.isnan(alpha) | ~math.isnan(d_req))
                & ((q == 0.0) | (s_f == s))
                & (d > 0.0)
            )
            reasons = np.uint32(0)
            target = cur + d
            upnl0 = s * cur * (p - ep0) if cur > 0.0 else 0.0
            # -- constraints in the order of docs/design.md, "Normalization", each applied
            # by a select
            target, reasons = _bind(
                target, max_pos_lev * eq * inv_p, cur, R_POSITION_LEVERAGE, reasons
            )
            target, reasons = _bind(target, tier_cap_q, cur, R_TIER_LIMIT, reasons)
            target, reasons = _bind(
                target, (max_lev * eq - other) * inv_p, cur, R_ACCOUNT_LEVERAGE, reasons
            )
            budget = (c0 + avail + upnl0) if isolated else (eq - other_maint)
            need_target, target_in_two = _two_tier_required_balance(
                target, p, s, dist, first, second, last
            )
            buffer_binds = (target > cur) & (need_target > budget)
            # max_qty_for_balance's scan: the first tier's root, else the second's
            factor = 1.0 - s * dist
            q_buffer_0 = _balance_root(budget, p, dist, factor, first[1], first[2])
            n_buffer_0 = q_buffer_0 * p * factor
            root_in_first = ((n_buffer_0 <= first_cap_hi) | (last == 0)) & (n_buffer_0 >= 0.0)
            q_buffer_1 = _balance_root(budget, p, dist, factor, second[1], second[2])
            n_buffer_1 = q_buffer_1 * p * factor
            root_in_second = (
                (last > 0) & ((n_buffer_1 <= cap_1_hi) | (last == 1)) & (n_buffer_1 >= floor_1)
            )
            q_buffer = q_buffer_0 if root_in_first else q_buffer_1
            fast &= ~(target > cur) | target_in_two
            fast &= ~buffer_binds | (budget <= 0.0) | root_in_first | root_in_second
            target, reasons = _bind(
                target,
                (q_buffer if budget > 0.0 else 0.0) if buffer_binds else target,
                cur,
                R_LIQ_BUFFER if dist > 0.0 else R_AVAILABLE_MARGIN,
                reasons,
            )
            n_cur = cur * p
            cur_first, cur_in_two = _in_two_tiers(n_cur, first, second, last)
            fast &= isolated | cur_in_two
            cur_lev = first[3] if cur_first else second[3]
            im_budget = avail + (c0 if isolated else n_cur / min(cur_lev, lev_cap))
            n_target = target * p
            target_first, target_n_in_two = _in_two_tiers(n_target, first, second, last)
            fast &= ~(target > cur) | target_n_in_two
            target_lev = first[3] if target_first else second[3]
            im_binds = (target > cur) & (n_target / min(target_lev, lev_cap) > im_budget)
            # max_qty_for_initial_margin's scan from the top: the third tier unreachable, the
            # second tier's bound if it reaches the second floor, else the first's
            top_2 = _margin_top(im_budget, p, cap_2, max_lev_2, lev_cap)
            fast &= ~im_binds | (im_budget <= 0.0) | (lev_falls & ~(top_2 * p >= floor_2))
            top_1 = _margin_top(im_budget, p, second[0], second[3], lev_cap)
            top_0 = _margin_top(im_budget, p, first[0], first[3], lev_cap)
            q_im = (top_1 if top_1 * p >= floor_1 else top_0) if im_budget > 0.0 else 0.0
            target, reasons = _bind(
                target, q_im if im_binds else target, cur, R_AVAILABLE_MARGIN, reasons
            )
            target, reasons = _bind(
                target, cf[F_MAX_NOTIONAL, i] * inv_p, cur, R_MAX_NOTIONAL, reasons
            )
            d_ok = max(target - cur, 0.0)
            # -- lots, exchange minimums, min-size policy (rounding up: the generic path)
            exact = d_ok * inv_lot
            lots = int(exact + _EPS)
            if exact - lots > _EPS * max(1.0, exact):
                reasons |= R_LOT_ROUNDING
            amt = lots * step_units / unit_scale
            below_amount = (lots == 0) | (amt < min_amount - _EPS * amount_step)
            below_cost = amt * cs * p < min_cost * (1.0 - 1e-12)
            if below_amount:
                reasons |= R_BELOW_MIN_AMOUNT
            if below_cost:
                reasons |= R_BELOW_MIN_COST
            small = below_amount | below_cost
            fast &= ~small | (pol != P_ROUND_UP)
            if small:
                reasons |= R_ACCUMULATED if accumulate else R_SKIPPED
                amt = 0.0
            filled = amt > 0.0
            # filled: what accumulates of the order, else the whole order (carried or recorded)
            res_out = (
                ((d_ok - amt * cs) * inv_cs if accumulate else 0.0) if filled else d_ok * inv_cs
            )
            if accumulate and res_out < 0.0:
                res_out = 0.0
            # -- the order and the state after it
            new_q = cur + amt * cs
            n_new = new_q * p
            new_first, new_n_in_two = _in_two_tiers(n_new, first, second, last)
            tier_lev = min(first[3] if new_first else second[3], lev_cap)
            need_new, new_x_in_two = _two_tier_required_balance(
                new_q, p, s, dist, first, second, last
            )
            fast &= ~filled | (new_n_in_two & (new_x_in_two | ~isolated))
            need = max(need_new - upnl0, n_new / tier_lev, c0)
            if isolated:
                lev_set = (
                    tier_lev
                    if lev_cap < math.inf
                    else min(tier_lev, max(1.0, _ceil_small(n_new / need - 1e-9)))
                )
            else:
                lev_set = (
                    tier_lev
                    if (lev_cap < math.inf) | ~(max_pos_lev < tier_lev)
                    else max(1.0, math.ceil(max_pos_lev))
                )
            post = margin_to_post(need - c0, avail)
            c_after = c0 + post if filled & isolated else c0
            ep_after = ((cur * ep0 + amt * cs * p) / new_q if cur > 0.0 else p) if filled else ep0
            q_after = s * new_q if filled else q
            held_q = abs(q_after)
            held = held_q > 0.0
            # liquidation_price_tiered's scan: the first tier's root, else the second's
            c_liq = (1.0 if q_after > 0.0 else -1.0) * held_q
            balance_liq = c_after if isolated else eq - other_maint
            ref_liq = ep_after if isolated else p
            denom = held_q * first[1] - c_liq
            lp_0 = tier_root(balance_liq, c_liq, ref_liq, first[2], denom)
            root_0 = (denom != 0.0) & (lp_0 > 0.0) & ((held_q * lp_0 <= first_cap_hi) | (last == 0))
            denom_1 = held_q * second[1] - c_liq
            lp_1 = tier_root(balance_liq, c_liq, ref_liq, second[2], denom_1)
            n_liq_1 = held_q * lp_1
            root_1 = (
                (last > 0)
                & (denom_1 != 0.0)
                & (lp_1 > 0.0)
                & (n_liq_1 >= floor_1)
                & ((n_liq_1 <= cap_1_hi) | (last == 1))
            )
            lp = lp_0 if root_0 else lp_1
            safe_long = no_liq_if_first_root_fails & (c_liq > 0.0) & (denom < 0.0) & (lp_0 <= 0.0)
            fast &= ~held | safe_long | root_0 | root_1
            liquidates = held & ~safe_long
            slow[i] = not fast
            ob[B_SIDE, i] = int(s) if filled else 0
            of[O_AMOUNT, i] = amt
            of[O_CLOSE_AMOUNT, i] = 0.0
            ob[B_REDUCE_ONLY, i] = False
            of[O_LEVERAGE, i] = lev_set if filled else math.nan
            of[O_COLLATERAL, i] = post if filled & isolated else 0.0
            of[O_TARGET, i] = on_grid(q_after * inv_cs, unit_scale)
            of[O_RAW, i] = d * inv_cs
            o_reasons[i] = reasons
            of[O_RESIDUAL, i] = res_out
            of[O_EFF_LEV, i] = (held_q * p + other) / eq
            of[O_LIQ, i] = lp if liquidates else math.nan
            of[O_LIQ_DIST, i] = abs(p - lp) * inv_p if liquidates else math.nan
        # the rows the vectorized pass left, while the block is still in cache
        generic_rows(
            ev,
            market,
            tiers,
            curve_table,
            curve_y,
            curve_h,
            cf,
            cc,
            of,
            ob,
            o_reasons,
            slow,
            lo,
            hi,
        )
