"""Test oracles: plain-Python references of the kernels, each written as the obvious loop.

Not public API. The tests check every numba kernel against its reference here (bit-identical
columns, or within a stated tolerance), and the benchmarks use some of them as baselines.
Each reference takes the kernel's arguments and is written without the kernel's shortcuts.

The normalization kernel's reference (:func:`reference_normalize_one`) states each constraint
as a predicate on the follower's resulting position and finds its boundary by bisection; the
liquidation buffer is checked with the exact scalar solver of :mod:`levalign.margin`. It is
slow on purpose: clarity over speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from levalign import _codes as cd
from levalign import _normalize_kernel as nk
from levalign._codes import MARGIN_MODES, MODES, POLICIES
from levalign._derisk_kernel import derisk_order
from levalign._margin_kernels import liquidation_price_one_leg
from levalign.errors import InvalidInput
from levalign.margin import BybitMarginModel, Leg, solve_liquidation
from levalign.markets import MarketSpec, TierTable
from levalign.risk import _mc_kernels as mck
from levalign.risk.curve import LiquidationCurve
from levalign.risk.first_passage import kelly_fraction
from levalign.venues import _paper_kernels as pvk

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
BoolArray = NDArray[np.bool_]


# ================================================================= paper venue
# references of levalign.venues._paper_kernels


def free_balance_reference(
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
    """Numpy reference of ``free_balance`` (bracket by ``searchsorted`` on the caps)."""
    notional = np.abs(position) * contract_size * mark
    k = np.minimum(np.searchsorted(t_cap, notional, side="right"), t_cap.size - 1)
    top = t_max_lev[k]
    lev = np.where(leverage < top, leverage, top)
    with np.errstate(invalid="ignore"):
        cross = np.where(position == 0.0, equity, equity - notional / lev)
    free = np.where(isolated, wallet - collateral, cross)
    return np.asarray(np.maximum(free, 0.0), dtype=np.float64)


def execute_reference(
    side: NDArray[np.int8],
    amount: FloatArray,
    reduce_only: BoolArray,
    post: FloatArray,
    topup: BoolArray,
    leverage_in: FloatArray,
    price: float,
    taker_fee: float,
    slip_fixed_bps: float,
    slip_impact_bps: float,
    slip_impact_notional: float,
    contract_size: float,
    amount_step: float,
    amount_decimals: int,
    tiers: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    state: dict[str, NDArray[np.generic]],
) -> dict[str, NDArray[np.generic]]:
    """Plain-Python reference of ``execute_kernel``: one follower at a time.

    ``state`` holds the columns named like the kernel's state arguments; it is updated in
    place. Returns the kernel's outputs by name (``fill_price``, ``fee``, ``slippage``,
    ``realized``, ``flags``).
    """
    n = len(side)
    out: dict[str, NDArray[np.generic]] = {
        "fill_price": np.full(n, math.nan),
        "fee": np.zeros(n),
        "slippage": np.zeros(n),
        "realized": np.zeros(n),
        "flags": np.zeros(n, np.uint8),
    }
    scale = 10.0**amount_decimals

    def snap(x: float) -> float:
        if amount_step <= 0.0:
            return x
        r = math.floor(x * scale + 0.5) / scale
        return r if abs(r - x) <= pvk.SNAP_TOL * amount_step else x

    for i in range(n):
        pos = float(state["position"][i])
        ep = float(state["entry_price"][i])
        w = float(state["wallet"][i])
        c = float(state["collateral"][i])
        iso = bool(state["isolated"][i])
        flags, fill, fee, slip_cost, pnl, touched = 0, math.nan, 0.0, 0.0, 0.0, False
        ask = float(post[i])
        if side[i] == 0:
            if topup[i] and iso and pos != 0.0 and ask > 0.0:
                add = min(ask, max(w - c, 0.0))
                flags |= pvk.X_COLLATERAL_SHORT if add < ask else 0
                if add > 0.0:
                    c, flags, touched = c + add, flags | pvk.X_TOPUP, True
        else:
            s_o = float(side[i])
            s_f = float(np.sign(pos))
            a = float(amount[i])
            if reduce_only[i] and (pos == 0.0 or s_f == s_o):
                a, flags = 0.0, flags | pvk.X_REDUCE_ONLY_REJECTED
            elif reduce_only[i] and a > abs(pos):
                a, flags = abs(pos), flags | pvk.X_REDUCE_ONLY_CLIPPED
            if a > 0.0:
                touched, flags = True, flags | pvk.X_FILLED
                opposite = pos != 0.0 and s_f != s_o
                closed = min(a, abs(pos)) if opposite else 0.0
                slip = 1e-4 * (
                    slip_fixed_bps
                    + slip_impact_bps * math.sqrt(a * contract_size * price / slip_impact_notional)
                )
                fill = price * (1.0 + s_o * slip)
                fee = a * contract_size * fill * taker_fee
                slip_cost = s_o * (fill - price) * a * contract_size
                remaining = abs(pos)
                if closed > 0.0:
                    pnl = s_f * closed * contract_size * (fill - ep)
                    if closed >= abs(pos):
                        c, remaining = 0.0, 0.0
                    else:
                        c = c * (1.0 - closed / abs(pos))
                        remaining = snap(abs(pos) - closed)
                w = w + pnl - fee
                opened = a - closed
                if opened > 0.0:
                    ep = (
                        (remaining * ep + opened * fill) / (remaining + opened)
                        if remaining
                        else fill
                    )
                    pos = snap(s_o * (remaining + opened))
                    if math.isfinite(leverage_in[i]):
                        state["leverage"][i] = leverage_in[i]
                else:
                    pos = s_f * remaining
                if pos == 0.0:
                    pos, ep, c = 0.0, math.nan, 0.0
                elif iso and ask > 0.0:
                    # an opening's margin, or what a de-risking cut posts back to the rest
                    add = min(ask, max(w - c, 0.0))
                    flags |= pvk.X_COLLATERAL_SHORT if add < ask else 0
                    c += add
        if iso and c > w:
            c, flags, touched = max(w, 0.0), flags | pvk.X_CHARGED_COLLATERAL, True
        if touched:
            state["position"][i], state["entry_price"][i] = pos, ep
            state["wallet"][i], state["collateral"][i] = w, c
            state["fees"][i] += fee
            state["slippage"][i] += slip_cost
            state["realized"][i] += pnl
            state["liq_price"][i] = _paper_liquidation_price(
                pos, ep, w, c, iso, contract_size, tiers
            )
        out["fill_price"][i], out["fee"][i], out["slippage"][i] = fill, fee, slip_cost
        out["realized"][i], out["flags"][i] = pnl, flags
    return out


def _paper_liquidation_price(
    pos: float,
    entry: float,
    wallet: float,
    collateral: float,
    isolated: bool,
    contract_size: float,
    tiers: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
) -> float:
    if pos == 0.0:
        return math.nan
    balance = collateral if isolated else wallet
    return float(
        liquidation_price_one_leg(
            balance, math.copysign(1.0, pos), abs(pos) * contract_size, entry, True, *tiers
        )
    )


def funding_reference(
    rate: float,
    mark: float,
    contract_size: float,
    tiers: tuple[FloatArray, FloatArray, FloatArray, FloatArray],
    state: dict[str, NDArray[np.generic]],
) -> FloatArray:
    """Numpy reference of ``funding_kernel``; updates ``state`` and returns the payments."""
    pos = np.asarray(state["position"], dtype=np.float64)
    held = pos != 0.0
    pay = np.where(held, pos * contract_size * mark * rate, 0.0)
    wallet = np.asarray(state["wallet"], dtype=np.float64)
    coll = np.asarray(state["collateral"], dtype=np.float64)
    new_wallet = np.where(held, wallet - pay, wallet)
    over = held & np.asarray(state["isolated"], dtype=np.bool_) & (coll > new_wallet)
    state["collateral"][over] = np.maximum(new_wallet[over], 0.0)
    state["wallet"][:] = new_wallet
    state["funding"][held] += pay[held]
    for i in np.flatnonzero(held):
        state["liq_price"][i] = _paper_liquidation_price(
            float(pos[i]),
            float(state["entry_price"][i]),
            float(new_wallet[i]),
            float(state["collateral"][i]),
            bool(state["isolated"][i]),
            contract_size,
            tiers,
        )
    return np.asarray(pay, dtype=np.float64)


@dataclass(frozen=True)
class DeriskSetup:
    """De-risking inputs of :func:`advance_reference` (the kernel's arguments, by name)."""

    floor: FloatArray
    restore: FloatArray
    add_margin: BoolArray
    fill: FloatArray
    tiers: tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]

    def act(
        self, one: dict[str, NDArray[np.generic]], m: float, contract_size: float, i: int
    ) -> bool:
        """Size and fill follower ``i``'s de-risking on the one-row state ``one``."""
        f = self.fill
        pos, ep = float(one["position"][0]), float(one["entry_price"][0])
        w, c, iso = float(one["wallet"][0]), float(one["collateral"][0]), bool(one["isolated"][0])
        decimals = int(f[pvk.FILL_AMOUNT_DECIMALS])
        step, min_amount = f[pvk.FILL_AMOUNT_STEP], f[pvk.FILL_MIN_AMOUNT]
        side, amount, post, _, _ = derisk_order.py_func(
            m, contract_size, step, decimals, min_amount, *self.tiers,
            w + pos * contract_size * (m - ep), w - c if iso else 0.0, pos, ep, c, 0.0, iso,
            float(self.floor[i]), float(self.restore[i]), bool(self.add_margin[i]), False,
        )  # fmt: skip
        if side == 0 and not (iso and post > 0.0):
            if iso and c > w:
                one["collateral"][0] = max(w, 0.0)
                one["liq_price"][0] = _paper_liquidation_price(
                    pos, ep, w, max(w, 0.0), iso, contract_size, self.tiers[:4]
                )
            return False
        out = execute_reference(
            np.array([side], dtype=np.int8), np.array([amount]), np.array([side != 0]),
            np.array([post]), np.array([side == 0]), np.array([math.nan]), m,
            f[pvk.FILL_TAKER_FEE], f[pvk.FILL_SLIP_FIXED_BPS], f[pvk.FILL_SLIP_IMPACT_BPS],
            f[pvk.FILL_SLIP_IMPACT_NOTIONAL], contract_size, f[pvk.FILL_AMOUNT_STEP], decimals,
            self.tiers[:4], one,
        )  # fmt: skip
        return bool(out["flags"][0] & (pvk.X_FILLED | pvk.X_TOPUP))


def advance_reference(
    high: FloatArray,
    low: FloatArray,
    mark: FloatArray,
    contract_size: float,
    state: dict[str, NDArray[np.generic]],
    group: IntArray,
    track_row: IntArray,
    n_groups: int,
    n_tracked: int,
    derisk: DeriskSetup | None = None,
) -> dict[str, NDArray[np.generic]]:
    """Numpy reference of ``advance_kernel``: a per-bar loop vectorized over followers.

    Also the benchmark's baseline. ``state`` is updated in place (with ``derisk``, also its
    ``fees``, ``slippage`` and ``derisks``); returns ``liquidated_bar``, ``group_equity``,
    ``group_notional``, ``group_flat`` (per-chunk partial sums, as the kernel's),
    ``track_equity`` and ``track_position``. De-risking orders are sized by
    :func:`levalign._derisk_kernel.derisk_order` (tested on its own) and filled by
    :func:`execute_reference`, one follower at a time.
    """
    n, n_bars = len(state["position"]), len(high)
    pos = np.array(state["position"], dtype=np.float64)
    ep = np.array(state["entry_price"], dtype=np.float64)
    w = np.array(state["wallet"], dtype=np.float64)
    c = np.array(state["collateral"], dtype=np.float64)
    lp = np.array(state["liq_price"], dtype=np.float64)
    iso = np.asarray(state["isolated"], dtype=np.bool_)
    pk = np.array(state["peak_equity"], dtype=np.float64)
    dd = np.array(state["max_drawdown"], dtype=np.float64)
    in_market = np.array(state["bars_in_market"], dtype=np.int64)
    realized = np.array(state["realized"], dtype=np.float64)
    losses = np.array(state["liquidation_losses"], dtype=np.float64)
    count = np.array(state["liquidations"], dtype=np.int64)
    liq_bar = np.full(n, -1, dtype=np.int64)
    size = (n + pvk.CHUNKS - 1) // pvk.CHUNKS
    chunk_of = np.arange(n) // max(size, 1)
    grouped = (group >= 0) if n_groups > 0 else np.zeros(n, dtype=np.bool_)
    g_equity = np.zeros((pvk.CHUNKS, n_groups, n_bars))
    g_notional = np.zeros((pvk.CHUNKS, n_groups, n_bars))
    g_flat = np.zeros((pvk.CHUNKS, n_groups, n_bars))
    retired = np.zeros(n, dtype=np.bool_)  # flat, untracked, its constant equity booked
    tracked = np.flatnonzero(track_row >= 0)
    t_equity = np.zeros((n_tracked, n_bars))
    t_position = np.zeros((n_tracked, n_bars))
    with np.errstate(invalid="ignore", divide="ignore"):
        for t in range(n_bars):
            held = pos != 0.0
            in_market += held
            hit = held & (((pos > 0.0) & (low[t] <= lp)) | ((pos < 0.0) & (high[t] >= lp)))
            if hit.any():
                k = np.flatnonzero(hit)
                pnl = pos[k] * contract_size * (lp[k] - ep[k])  # (q c)(LP - EP)
                remainder = np.where(iso[k], c[k] + pnl, w[k] + pnl)
                w[k] = np.where(iso[k], w[k] + pnl - remainder, 0.0)
                realized[k] += pnl
                losses[k] += remainder
                count[k] += 1
                liq_bar[k] = t
                pos[k], ep[k], c[k], lp[k] = 0.0, math.nan, 0.0, math.nan
                held = pos != 0.0
            if derisk is not None:
                f = derisk.floor
                lo = np.where(held & (f > 0.0) & (pos > 0.0), lp / (1.0 - f), -np.inf)
                hi = np.where(held & (f > 0.0) & (pos < 0.0), lp / (1.0 + f), np.inf)
                for i in np.flatnonzero(held & ~hit & ((mark[t] < lo) | (mark[t] > hi))):
                    row = {"position": pos, "entry_price": ep, "wallet": w, "collateral": c}
                    one = {k: np.array([v[i]]) for k, v in row.items()}
                    one |= {"liq_price": lp[i : i + 1].copy(), "isolated": iso[i : i + 1]}
                    for name in ("fees", "slippage", "realized", "leverage"):
                        one[name] = np.zeros(1)
                    if derisk.act(one, float(mark[t]), contract_size, int(i)):
                        for name, column in (*row.items(), ("liq_price", lp)):
                            column[i] = one[name][0]
                        state["fees"][i] += one["fees"][0]
                        state["slippage"][i] += one["slippage"][0]
                        realized[i] += one["realized"][0]
                        state["derisks"][i] += 1
                    else:
                        c[i], lp[i] = one["collateral"][0], one["liq_price"][0]
                held = pos != 0.0
            eq = np.where(held, w + pos * contract_size * (mark[t] - ep), w)
            notional = np.where(held, np.abs(pos * contract_size) * mark[t], 0.0)
            pk = np.maximum(pk, eq)
            dd = np.where(pk > 0.0, np.maximum(dd, (pk - eq) / pk), dd)
            if n_groups > 0:
                live = grouped & ~retired
                cell = (chunk_of[live], group[live])
                np.add.at(g_equity[:, :, t], cell, eq[live])
                np.add.at(g_notional[:, :, t], cell, notional[live])
                now = live & ~held & (track_row < 0)
                if t + 1 < n_bars:
                    np.add.at(g_flat[:, :, t + 1], (chunk_of[now], group[now]), eq[now])
                retired |= now
            if tracked.size:
                t_equity[track_row[tracked], t] = eq[tracked]
                t_position[track_row[tracked], t] = pos[tracked]
    for name, value in (
        ("position", pos),
        ("entry_price", ep),
        ("wallet", w),
        ("collateral", c),
        ("liq_price", lp),
        ("peak_equity", pk),
        ("max_drawdown", dd),
        ("bars_in_market", in_market),
        ("realized", realized),
        ("liquidation_losses", losses),
        ("liquidations", count),
    ):
        state[name][:] = value
    return {
        "liquidated_bar": liq_bar,
        "group_equity": g_equity,
        "group_notional": g_notional,
        "group_flat": g_flat,
        "track_equity": t_equity,
        "track_position": t_position,
    }


# ================================================================= Monte Carlo
# references of levalign.risk._mc_kernels


def reference_paths(
    normals: FloatArray,
    u_lo: FloatArray,
    u_hi: FloatArray,
    drift: float,
    sd: float,
    eps: float,
    rate: FloatArray,
    group_legs: Sequence[Sequence[tuple[float, float, float, TierTable]]],
    w0: Sequence[float],
    free: float,
    e0: float,
) -> tuple[FloatArray, IntArray, FloatArray, FloatArray]:
    """Plain-Python reference of ``simulate_chunks`` for GBM, written without its shortcuts.

    Every step computes the price, pays funding, finds each group's liquidation levels by
    bisection on the margin excess (maintenance margin from
    :meth:`levalign.markets.TierTable.maintenance_margin`), and takes every bridge
    probability with ``exp``; equity and drawdown are evaluated at every step.

    Parameters
    ----------
    normals
        ``(pairs, steps)`` normals; path ``2p + h`` moves by ``drift + (1 − 2h) sd z``.
    u_lo, u_hi
        ``(2 · pairs, steps)`` uniforms of each path's lower/upper bridge test.
    group_legs
        Per group, its legs ``(c, r, n, tier_table)``.

    Returns
    -------
    tuple
        ``(S, liq, E_T / E_0, max drawdown)`` per path, as the kernel returns them.
    """
    pairs, steps = normals.shape
    n = 2 * pairs
    surv = np.ones(n)
    liq = np.full(n, -1, dtype=np.int64)
    eq_out = np.empty(n)
    dd_out = np.zeros(n)
    var = sd * sd

    def excess(g: int, w: float, v: float) -> float:
        total = w
        for c, r, nn, tiers in group_legs[g]:
            total += c * (v - r) - tiers.maintenance_margin(nn * v)
        return total

    def root(g: int, w: float, v_in: float, v_out: float) -> float:
        """Bisection between a safe ``v_in`` and a liquidating ``v_out`` (``ln`` space)."""
        lo_, hi_ = math.log(v_in), math.log(v_out)
        for _ in range(200):
            mid = 0.5 * (lo_ + hi_)
            if mid in (lo_, hi_):
                break
            if excess(g, w, math.exp(mid)) >= 0.0:
                lo_ = mid
            else:
                hi_ = mid
        return 0.5 * (lo_ + hi_)

    def levels(g: int, w: float, v: float) -> tuple[float, float]:
        """Logs of the nearest liquidation levels below and above ``v``: widen, then bisect."""
        if excess(g, w, v) < 0.0:
            return math.log(v), math.log(v)
        out = [-math.inf, math.inf]
        for k, direction in enumerate((-1.0, 1.0)):
            prev = v
            for j in range(25):  # up to a factor e^16.8 away
                x = v * math.exp(direction * 1e-6 * 2.0**j)
                if excess(g, w, x) < 0.0:
                    out[k] = root(g, w, prev, x)
                    break
                prev = x
        return out[0], out[1]

    def crossing(y0: float, y1: float, b: float) -> float:
        if not math.isfinite(b):
            return 0.0
        q = 2.0 * (y0 - b) * (y1 - b)
        return 1.0 if q <= 0.0 else math.exp(-q / var)

    for i in range(n):
        p, hh = divmod(i, 2)
        sg = 1.0 - 2.0 * hh
        w = list(w0)
        alive = [True] * len(w0)
        y_prev, v_prev = 0.0, 1.0
        s, peak, dd, eq = 1.0, e0, 0.0, e0
        for t in range(steps):
            y = y_prev + eps * drift + sg * (eps * sd * normals[p, t])
            v = math.exp(y)
            p_lo_acc = p_hi_acc = 0.0
            any_hit = False
            for g in range(len(w)):
                # a leg pays rate · s · n · v and c = eps · s · n: long pays, short receives
                w[g] -= rate[t] * sum(eps * c for c, _, _, _ in group_legs[g]) * v_prev
                hit = excess(g, w[g], v) < 0.0 or excess(g, w[g], v_prev) < 0.0
                p_lo = p_hi = 0.0
                if not hit:
                    b_lo, b_hi = levels(g, w[g], v)
                    p_lo, p_hi = crossing(y_prev, y, b_lo), crossing(y_prev, y, b_hi)
                if hit:
                    any_hit = True
                else:
                    p_lo_acc, p_hi_acc = max(p_lo_acc, p_lo), max(p_hi_acc, p_hi)
                if alive[g] and (hit or u_lo[i, t] < p_lo or u_hi[i, t] < p_hi):
                    alive[g] = False
                    if liq[i] < 0:
                        liq[i] = t
            if s > 0.0:
                s = 0.0 if any_hit else s * (1.0 - p_lo_acc) * (1.0 - p_hi_acc)
            eq = free + sum(
                w[g] + sum(c * (v - r) for c, r, _, _ in group_legs[g])
                for g in range(len(w))
                if alive[g]
            )
            peak = max(peak, eq)
            dd = max(dd, 1.0 - eq / peak)
            y_prev, v_prev = y, v
        surv[i], eq_out[i], dd_out[i] = s, eq / e0, dd
    return surv, liq, eq_out, dd_out


def reference_walk(
    bases: FloatArray,
    devs: FloatArray,
    lo_s: FloatArray,
    hi_s: FloatArray,
    a: float,
    c: float,
    e0: float,
) -> tuple[BoolArray, FloatArray, FloatArray]:
    r"""Plain-numpy reference of ``walk_lanes``, the drawdown by its definition.

    Path ``h`` of pair ``k`` (output ``2k + h``) has grid points
    :math:`y_t = \sum_{s \le t} (\text{bases}_{s,k} \pm \text{devs}_{s,k})` and equity
    :math:`E_t = a + c\,e^{y_t}` (:math:`y_{-1} = 0`: the start); its drawdown is
    :math:`\max_t 1 - E_t / \max_{s \le t} E_s`, evaluated at every step.

    Returns
    -------
    tuple
        ``(near, E_T / e0, drawdown)``, each of length ``2 · mck.LANES``.
    """
    steps = bases.shape[0]
    near = np.zeros(2 * mck.LANES, dtype=np.bool_)
    eq = np.empty(2 * mck.LANES)
    dd = np.zeros(2 * mck.LANES)
    for k in range(mck.LANES):
        for h, sign in enumerate((1.0, -1.0)):
            y = np.concatenate([[0.0], np.cumsum(bases[:, k] + sign * devs[:, k])])
            equity = a + c * np.exp(y)
            peak = np.maximum.accumulate(equity)
            near[2 * k + h] = bool(y.min() <= lo_s[k] or y.max() >= hi_s[k])
            eq[2 * k + h] = equity[steps] / e0
            dd[2 * k + h] = float(np.max(1.0 - equity / peak))
    return near, eq, dd


def reference_extremes(
    normals: FloatArray,
    u_lo: FloatArray,
    u_hi: FloatArray,
    drift: float,
    sd: float,
    every: int,
) -> tuple[FloatArray, FloatArray, FloatArray]:
    r"""Plain-Python reference of ``extremes_chunks`` for GBM: every step's bridge extremes.

    Path ``2p + h`` moves by ``drift + (1 − 2h) sd z``; each step's minimum and maximum are
    drawn by inversion (Glasserman 2004, §6.4), from ``u_lo[i, t]`` and ``u_hi[i, t]``, with
    no step skipped. Returns ``(running min, running max, log price)`` at every ``every``-th
    step, shape ``(steps // every, 2 · pairs)``.
    """
    pairs, steps = normals.shape
    var = sd * sd
    n_cp = steps // every
    lo_out = np.empty((n_cp, 2 * pairs))
    hi_out = np.empty((n_cp, 2 * pairs))
    last = np.empty((n_cp, 2 * pairs))
    for i in range(2 * pairs):
        p, h = divmod(i, 2)
        y = lo = hi = 0.0
        for t in range(steps):
            y1 = y + (drift + (1.0 - 2.0 * h) * (sd * normals[p, t]))
            d2 = (y1 - y) * (y1 - y)
            lo = min(lo, y1, 0.5 * (y + y1 - math.sqrt(d2 - 2.0 * var * math.log(u_lo[i, t]))))
            hi = max(hi, y1, 0.5 * (y + y1 + math.sqrt(d2 - 2.0 * var * math.log(u_hi[i, t]))))
            y = y1
            if (t + 1) % every == 0:
                j = (t + 1) // every - 1
                lo_out[j, i], hi_out[j, i], last[j, i] = lo, hi, y
    return lo_out, hi_out, last


_MASK = (1 << 64) - 1  # 64-bit unsigned arithmetic


def _reference_mix(z: int) -> int:
    z &= _MASK
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK
    return z ^ (z >> 31)


def reference_draw(key: int, gam: int, ctr: int, i: int, budget: int) -> int:
    """Plain-integer ``_draw_budget``: draw ``i`` of a sampler owning ``budget`` slots."""
    if i < budget:
        return _reference_mix(key + gam * (ctr + i))
    return _reference_mix((key ^ int(mck.SALT)) + gam * (((ctr << 20) & _MASK) + i))


def reference_uniform(key: int, gam: int, ctr: int) -> float:
    """Plain-integer ``uniform_at``."""
    return ((reference_draw(key, gam, ctr, 0, 1) >> 11) + 1) * 2.0**-53


def reference_normal(key: int, gam: int, ctr: int, budget: int) -> float:
    """Plain-integer ``normal_at``, written from Marsaglia & Tsang's ``RNOR``/``nfix``."""
    n = 0
    while True:
        u = reference_draw(key, gam, ctr, n, budget)
        n += 1
        layer, magnitude = u & 255, u >> 12
        sign = 1.0 if u & 256 else -1.0
        x = magnitude * float(mck.ZIG_W[layer])
        if magnitude < int(mck.ZIG_K[layer]):
            return sign * x
        if layer == 0:
            while True:
                e1 = -math.log(((reference_draw(key, gam, ctr, n, budget) >> 11) + 1) * 2.0**-53)
                e2 = -math.log(
                    ((reference_draw(key, gam, ctr, n + 1, budget) >> 11) + 1) * 2.0**-53
                )
                n += 2
                if 2.0 * e2 >= (e1 / mck.ZIG_R) ** 2:
                    return sign * (mck.ZIG_R + e1 / mck.ZIG_R)
        u2 = ((reference_draw(key, gam, ctr, n, budget) >> 11) + 1) * 2.0**-53
        n += 1
        f_hi, f_lo = float(mck.ZIG_F[layer - 1]), float(mck.ZIG_F[layer])
        if f_lo + u2 * (f_hi - f_lo) < math.exp(-0.5 * x * x):
            return sign * x


# ================================================================= optimal leverage
# reference of levalign.risk.optimal.evaluate_leverages


def evaluate_leverages_reference(
    leverage: FloatArray,
    log_barrier: FloatArray,
    funding: FloatArray,
    side: float,
    log_min: FloatArray,
    log_max: FloatArray,
    gross_return: FloatArray,
    tail: int,
    wealth_floor: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    """``evaluate_leverages`` in plain numpy: a full sort per leverage, no ordering trick."""
    rows = []
    for lev, b, f in zip(leverage, log_barrier, funding, strict=True):
        hit = log_min <= b if side > 0 else log_max >= b
        wealth = np.where(hit, wealth_floor, 1.0 + side * lev * gross_return - f)
        g = np.log(np.maximum(wealth, wealth_floor))
        pair_g = g.reshape(-1, 2).mean(axis=1)
        pair_h = hit.reshape(-1, 2).mean(axis=1)
        loss = np.sort(np.minimum(1.0 - wealth, 1.0 - wealth_floor))[::-1][:tail]
        rows.append((pair_g.mean(), pair_g.var(), hit.mean(), pair_h.var(), loss[-1], loss.mean()))
    cols = np.array(rows).T
    return cols[0], cols[1], cols[2], cols[3], cols[4], cols[5]


# ================================================================= normalization
# the reference of levalign._normalize_kernel


def _largest(ok: Callable[[float], bool], lo: float, hi: float) -> float:
    """Largest x in [lo, hi] with ok(x), for ok monotone (true then false); lo if none."""
    if ok(hi):
        return hi
    for _ in range(200):
        mid = (lo + hi) / 2
        if mid in (lo, hi):
            break
        if ok(mid):
            lo = mid
        else:
            hi = mid
    return lo


#: the rule of the venues taking maintenance margin at the entry value (KuCoin's is Bybit's)
_ENTRY_VALUE_RULE = BybitMarginModel()


def _liquidation(
    spec: MarketSpec,
    side: float,
    qty: float,
    entry: float,
    balance: float,
    price: float,
    at_entry: bool,
) -> float | None:
    """Liquidation price of one leg entered at ``entry`` with ``balance`` behind it there.

    Maintenance margin at the liquidation price (the exact solver), or at the entry value
    (``at_entry``: Bybit's scalar formula).
    """
    legs = [Leg(side, qty / spec.contract_size, entry)]
    if at_entry:
        return _ENTRY_VALUE_RULE.liquidation_price(spec, legs, balance, price)
    return solve_liquidation(spec, legs, balance, price)


def _distance(lp: float | None, side: float, price: float) -> float:
    """Liquidation distance (fraction of price) of a liquidation price (None: infinite)."""
    return math.inf if lp is None else (price - lp) * side / price


def _required_distance(
    curve: LiquidationCurve | None,
    alpha: float,
    horizon_hours: float,
    side: Literal["long", "short"],
) -> float:
    """The curve's distance for the probability limit, NaN when there is no usable curve."""
    if curve is None:
        return math.nan
    try:
        return curve.required_distance(alpha, horizon_hours, side)
    except InvalidInput:
        return math.nan


def _margin_posted(margin: float, available: float) -> float:
    """Margin to post: at most what the follower has, rounded down to 1e-8 of the currency."""
    x = min(margin, available)
    posted = math.floor(x * 1e8) / 1e8
    return posted if posted <= x else (math.floor(x * 1e8) - 1) / 1e8


def reference_normalize_one(
    ev: list[float],
    spec: MarketSpec,
    row: dict[str, Any],
    curve: LiquidationCurve | None = None,
) -> dict[str, Any]:
    """Normalize one follower (row of cohort fields, codes as names) for a digested event."""
    kind, s, p = int(ev[nk.E_KIND]), ev[nk.E_SIDE], ev[nk.E_PRICE]
    # maintenance margin at the entry value (Bybit, KuCoin): the balance behind a leg is then
    # taken at its entry price, the PnL since entry moved out of it
    at_entry = ev[nk.E_MM_AT_ENTRY] == 1.0
    step = float(spec.amount_step or 0.0)
    cs = spec.contract_size
    lot = step * cs
    tiers = spec.tiers
    min_amount, min_cost = float(spec.min_amount or 0.0), float(spec.min_cost or 0.0)
    eq, pos, ep = row["equity"], row["position"], row["entry_price"]
    c0, avail = row["collateral"], row["available_balance"]
    isolated = row["margin_mode"] == "isolated"
    policy = row["min_size_policy"]
    dist = row["min_liq_distance"]
    alpha = row["max_liq_probability"]
    if math.isnan(dist):
        dist = (
            0.0 if math.isnan(ev[nk.E_LEAD_DIST]) or not math.isnan(alpha) else ev[nk.E_LEAD_DIST]
        )
    out = {
        "side": 0,
        "amount": 0.0,
        "close_amount": 0.0,
        "reduce_only": False,
        "leverage": math.nan,
        "collateral": 0.0,
        "raw_amount": 0.0,
        "reasons": 0,
        "residual": row["residual"] if policy == "accumulate" else 0.0,
    }
    ok_row = (
        math.isfinite(eq)
        and eq > 0
        and math.isfinite(pos)
        and (pos == 0 or (math.isfinite(ep) and ep > 0))
        and c0 >= 0
        and row["scale"] >= 0
        and avail >= 0
        and 0 <= dist < 1
        and (math.isnan(alpha) or 0 < alpha <= 1)
        and not row["leverage_setting"] <= 0
        and row["other_notional"] >= 0
        and row["other_maintenance_margin"] >= 0
        and row["mode"] in MODES
        and row["margin_mode"] in MARGIN_MODES
        and policy in POLICIES
    )
    if not ok_row:
        return {
            **out,
            "reasons": cd.R_INVALID_ROW,
            "target_position": pos,
            "residual": 0.0,
            "effective_leverage": math.nan,
            "liquidation_price": math.nan,
            "liquidation_distance": math.nan,
        }
    q = pos * cs
    s_f = (q > 0) - (q < 0)
    reasons = 0
    if not row["allowed"]:
        reasons |= cd.R_SYMBOL_NOT_ALLOWED
    elif kind == cd.EV_NONE:
        reasons |= cd.R_NO_LEAD_CHANGE
    elif kind == cd.EV_MARGIN:
        ratio = ev[nk.E_MARGIN_RATIO]
        if isolated and q != 0 and s_f == s and ratio > 1:
            wanted = c0 * (ratio - 1)
            out["collateral"] = _margin_posted(min(wanted, avail), avail)
            c0 += out["collateral"]
            if out["collateral"] > 0:
                reasons |= cd.R_MARGIN_TOPUP | (cd.R_AVAILABLE_MARGIN if avail < wanted else 0)
        else:
            reasons |= cd.R_NO_LEAD_CHANGE
    elif kind in (cd.EV_REDUCE, cd.EV_CLOSE):
        if q == 0 or s_f != s:
            reasons |= cd.R_NOTHING_TO_CLOSE
        else:
            held = abs(pos)
            amt = held
            if kind == cd.EV_REDUCE:
                amt = round(ev[nk.E_PHI] * held / step) * step
                if amt >= held - step / 2:
                    amt = held
                elif amt < min_amount - 1e-9 * step:
                    reasons |= cd.R_BELOW_MIN_AMOUNT
                    if policy == "round_up":
                        amt, reasons = (
                            min(math.ceil(min_amount / step - 1e-9) * step, held),
                            reasons | cd.R_ROUNDED_UP,
                        )
                    else:
                        amt, reasons = 0.0, reasons | cd.R_SKIPPED
                out["residual"] *= 1 - ev[nk.E_PHI]
            else:
                out["residual"] = 0.0
            if amt > 0:
                out.update(side=-s_f, amount=amt, close_amount=amt, reduce_only=True)
                if isolated:
                    c0 *= 1 - amt / held
                q = s_f * (held - amt) * cs
    else:
        if q != 0 and s_f != s:
            out["close_amount"] = abs(pos)
            reasons |= cd.R_FLIPPED
            if isolated:
                avail += c0 + s_f * abs(q) * (p - ep)
            c0, q, out["residual"] = 0.0, 0.0, 0.0
        cur = abs(q)
        sigma = row["sigma"] if math.isfinite(row["sigma"]) else ev[nk.E_SIGMA]
        mode = row["mode"]
        d = math.nan
        if not math.isnan(alpha):
            required = _required_distance(
                curve, alpha, row["horizon_hours"], "long" if s > 0 else "short"
            )
            if math.isnan(required):
                reasons |= cd.R_RISK_MODEL_REQUIRED
            else:
                dist = max(dist, required)
        if reasons & cd.R_RISK_MODEL_REQUIRED:
            pass
        elif mode == "proportional":
            d = row["scale"] * ev[nk.E_UNITS] * eq
        elif mode == "fixed_notional" and row["fixed_notional"] >= 0:
            d = (
                row["fixed_notional"] / p * ev[nk.E_OPEN_FRAC]
                if cur == 0
                else cur * ev[nk.E_GROWTH]
            )
        elif mode == "target_leverage":
            d = (
                min(row["scale"] * ev[nk.E_LEV_TOTAL], row["max_leverage"])
                * eq
                * ev[nk.E_SHARE]
                / p
                - cur
            )
        elif mode == "risk_constant" and row["risk_fraction"] >= 0:
            if not math.isnan(ev[nk.E_STOP]):
                stop_dist = abs(p - ev[nk.E_STOP])
            elif sigma > 0:
                stop_dist = p * row["stop_sigmas"] * sigma * math.sqrt(row["horizon_hours"] / 8760)
            else:
                stop_dist = math.nan
            if stop_dist > 0:
                d = row["risk_fraction"] * eq / stop_dist - cur
        elif mode == "vol_target" and row["vol_target"] >= 0 and sigma > 0:
            d = row["vol_target"] / sigma * eq / p - cur
        elif mode == "optimal":
            mu = row["expected_return"]
            mu = mu if math.isfinite(mu) else ev[nk.E_MU]
            if sigma > 0 and math.isfinite(mu):
                d = kelly_fraction(s * mu, sigma) * eq / p - cur
        if math.isnan(d) and not reasons & cd.R_RISK_MODEL_REQUIRED:
            reasons |= cd.R_MISSING_PARAMETER
        if not math.isnan(d):
            if policy == "accumulate":
                d += out["residual"] * cs
            out["raw_amount"] = d / cs
            if d <= 0:
                reasons |= cd.R_AT_TARGET
                out["residual"] = 0.0
            else:
                upnl0 = s * cur * (p - ep) if cur > 0 else 0.0
                setting = row["leverage_setting"]

                def max_lev(notional: float) -> float:
                    tier = tiers.max_leverage_at(notional)
                    return min(tier, setting) if setting > 0 else tier

                def entry_after(qty: float) -> float:
                    return (cur * ep + (qty - cur) * p) / qty if cur > 0 else p

                def im(qty: float) -> float:
                    return qty * p / max_lev(qty * p) if qty > 0 else 0.0

                budget = c0 + avail + upnl0 if isolated else eq - row["other_maintenance_margin"]

                def buffer_ok(qty: float) -> bool:
                    if qty <= 0:
                        return True
                    if isolated or at_entry:
                        # isolated: all of the budget posted as isolated margin; at the entry
                        # value: the budget less the PnL since entry, at the entry after
                        lp = _liquidation(
                            spec, s, qty, entry_after(qty), budget - upnl0, p, at_entry
                        )
                    else:
                        lp = _liquidation(spec, s, qty, p, budget, p, at_entry)
                    return bool(_distance(lp, s, p) >= dist - 1e-12)

                def im_ok(qty: float) -> bool:
                    need = im(qty) - c0 if isolated else im(qty) - im(cur)
                    return bool(need <= avail * (1 + 1e-12) + 1e-12)

                checks: list[tuple[int, Callable[[float], bool]]] = [
                    (
                        cd.R_POSITION_LEVERAGE,
                        lambda x: x * p <= row["max_position_leverage"] * eq,
                    ),
                    (cd.R_TIER_LIMIT, lambda x: x * p <= tiers.max_notional),
                    (
                        cd.R_ACCOUNT_LEVERAGE,
                        lambda x: x * p + row["other_notional"] <= row["max_leverage"] * eq,
                    ),
                    (cd.R_LIQ_BUFFER if dist > 0 else cd.R_AVAILABLE_MARGIN, buffer_ok),
                    (cd.R_AVAILABLE_MARGIN, im_ok),
                    (cd.R_MAX_NOTIONAL, lambda x: x * p <= row["max_notional"]),
                ]
                target = cur + d
                for flag, ok in checks:  # a constraint binds when it lowers the target
                    if target <= cur:  # nothing left to buy: later limits are moot
                        break
                    if not ok(target):
                        lowered = _largest(ok, 0.0, target)
                        if lowered < target * (1 - 1e-12):
                            reasons |= flag
                        target = lowered
                d_ok = max(target - cur, 0.0)
                lots = math.floor(d_ok / lot + 1e-9)
                if d_ok / lot - lots > 1e-9 * max(1.0, d_ok / lot):
                    reasons |= cd.R_LOT_ROUNDING
                amt = lots * step
                small = False
                if lots == 0 or amt < min_amount - 1e-9 * step:
                    reasons, small = reasons | cd.R_BELOW_MIN_AMOUNT, True
                if amt * cs * p < min_cost * (1 - 1e-12):
                    reasons, small = reasons | cd.R_BELOW_MIN_COST, True
                if small:
                    amt = 0.0
                    if policy == "round_up":
                        up = max(
                            1,
                            math.ceil(min_amount / step - 1e-9),
                            math.ceil(min_cost / (p * cs * step) - 1e-9),
                        )
                        q_up = cur + up * lot
                        if all(ok(q_up) for _, ok in checks):
                            amt, reasons = up * step, reasons | cd.R_ROUNDED_UP
                        else:
                            reasons |= cd.R_SKIPPED
                    else:
                        reasons |= cd.R_ACCUMULATED if policy == "accumulate" else cd.R_SKIPPED
                if amt > 0:
                    out["residual"] = (
                        max((d_ok - amt * cs) / cs, 0.0) if policy == "accumulate" else 0.0
                    )
                    new_q = cur + amt * cs
                    n_new = new_q * p
                    tier_lev = max_lev(n_new)
                    if isolated:
                        # smallest collateral keeping liquidation `dist` away, by bisection
                        def far_enough(c: float, qty: float = new_q) -> bool:
                            lp = _liquidation(spec, s, qty, entry_after(qty), c, p, at_entry)
                            return bool(_distance(lp, s, p) >= dist - 1e-12)

                        hi = n_new * 2 + abs(upnl0) + 1
                        lo, need = 0.0, hi
                        for _ in range(200):
                            mid = (lo + need) / 2
                            if far_enough(mid):
                                need = mid
                            else:
                                lo = mid
                        need = max(need, n_new / tier_lev, c0)
                        out["collateral"] = _margin_posted(need - c0, avail)
                        out["leverage"] = (
                            tier_lev
                            if setting > 0
                            else min(tier_lev, max(1.0, math.ceil(n_new / need - 1e-9)))
                        )
                        c0 += out["collateral"]
                    else:
                        cap = row["max_position_leverage"]
                        out["leverage"] = (
                            tier_lev
                            if setting > 0 or not cap < tier_lev
                            else max(1.0, math.ceil(cap))
                        )
                    ep = entry_after(new_q)
                    q = s * new_q
                    out.update(side=int(s), amount=amt + out["close_amount"])
                else:
                    out["residual"] = d_ok / cs
        if out["close_amount"] > 0 and out["amount"] == 0:
            out.update(side=-s_f, amount=out["close_amount"], reduce_only=True)
    out["reasons"] = reasons
    out["target_position"] = q / cs
    out["effective_leverage"] = (abs(q) * p + row["other_notional"]) / eq
    if q != 0:
        side = 1.0 if q > 0 else -1.0
        if isolated:
            lp = _liquidation(spec, side, abs(q), ep, c0, p, at_entry)
        elif at_entry:  # the cross balance at the entry price
            cross = eq - row["other_maintenance_margin"] - side * abs(q) * (p - ep)
            lp = _liquidation(spec, side, abs(q), ep, cross, p, at_entry)
        else:
            lp = solve_liquidation(
                spec, [Leg(side, abs(q) / cs, p)], eq - row["other_maintenance_margin"], p
            )
        out["liquidation_price"] = math.nan if lp is None else lp
        out["liquidation_distance"] = math.nan if lp is None else abs(p - lp) / p
    else:
        out["liquidation_price"] = out["liquidation_distance"] = math.nan
    return out
