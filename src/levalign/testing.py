"""Test oracles: plain-Python references of the kernels, written independently of them.

Not public API: tests import these to check a numba kernel against an obvious implementation
(two implementations checked against each other). Other kernels' references belong here too.

:func:`reference_normalize_one` is the normalization kernel's.

Where the kernel inverts closed forms per tier, this file states each constraint as a
predicate on the follower's resulting position and finds its boundary by bisection; the
liquidation buffer is checked with the exact scalar solver of :mod:`levalign.margin`. Tests
require both to give the same orders. It is slow on purpose: clarity over speed.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from levalign import _codes as cd
from levalign import _normalize_kernel as nk
from levalign._codes import MARGIN_MODES, MODES, POLICIES
from levalign.errors import InvalidInput
from levalign.margin import Leg, _solve_liquidation
from levalign.markets import MarketSpec
from levalign.risk.curve import LiquidationCurve
from levalign.risk.first_passage import kelly_fraction


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


def _liq_distance(
    spec: MarketSpec, side: float, qty: float, entry: float, balance: float, price: float
) -> float:
    """Liquidation distance (fraction of price) of one leg with ``balance`` behind it."""
    legs = [Leg(side, qty / spec.contract_size, entry)]
    lp = _solve_liquidation(spec, legs, balance, price)
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


def reference_normalize_one(
    ev: list[float],
    spec: MarketSpec,
    row: dict[str, Any],
    curve: LiquidationCurve | None = None,
) -> dict[str, Any]:
    """Normalize one follower (row of cohort fields, codes as names) for a digested event."""
    kind, s, p = int(ev[nk.E_KIND]), ev[nk.E_SIDE], ev[nk.E_PRICE]
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
            out["collateral"] = min(wanted, avail)
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
                    if isolated:  # all of the budget posted as isolated margin
                        return bool(
                            _liq_distance(spec, s, qty, entry_after(qty), budget - upnl0, p)
                            >= dist - 1e-12
                        )
                    return bool(_liq_distance(spec, s, qty, p, budget, p) >= dist - 1e-12)

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
                            return bool(
                                _liq_distance(spec, s, qty, entry_after(qty), c, p) >= dist - 1e-12
                            )

                        hi = n_new * 2 + abs(upnl0) + 1
                        lo, need = 0.0, hi
                        for _ in range(200):
                            mid = (lo + need) / 2
                            if far_enough(mid):
                                need = mid
                            else:
                                lo = mid
                        need = max(need, n_new / tier_lev, c0)
                        out["collateral"] = need - c0
                        out["leverage"] = (
                            tier_lev
                            if setting > 0
                            else min(tier_lev, max(1.0, math.ceil(n_new / need - 1e-9)))
                        )
                        c0 = need
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
            lp = _solve_liquidation(spec, [Leg(side, abs(q) / cs, ep)], c0, p)
        else:
            lp = _solve_liquidation(
                spec, [Leg(side, abs(q) / cs, p)], eq - row["other_maintenance_margin"], p
            )
        out["liquidation_price"] = math.nan if lp is None else lp
        out["liquidation_distance"] = math.nan if lp is None else abs(p - lp) / p
    else:
        out["liquidation_price"] = out["liquidation_distance"] = math.nan
    return out
