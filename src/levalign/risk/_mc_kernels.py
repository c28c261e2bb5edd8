r"""Numba kernels of the Monte Carlo liquidation-risk engine (docs/design.md, "Risk").

Pure functions over arrays; :mod:`levalign.risk.monte_carlo` validates input, builds the
arrays and summarizes the per-path output. A plain-Python reference of the simulation,
written without the kernel's shortcuts, closes the module; tests hold the two together.

Random numbers
--------------
Counter-based. Draw number :math:`c` of a chunk with key :math:`k` and increment :math:`\gamma`
is :math:`\operatorname{mix}(k + \gamma c)`, where ``mix`` is the SplitMix64 output function
(Steele, Lea & Flood, "Fast splittable pseudorandom number generators", OOPSLA 2014): the
SplitMix64 sequence of state :math:`k` and gamma :math:`\gamma`, read at position :math:`c`.
Each chunk of paths takes :math:`(k, \gamma)` from ``np.random.SeedSequence(seed).spawn``, so
its draws depend on the seed and the chunk number only, never on the thread that runs it.

Every draw has an address: pair ``p`` of a chunk, sub-step ``s`` (a bar for bar-stepped
models, else a step), slot ``j`` give :math:`c = (p\,n_{sub} + s)\cdot` ``SLOTS`` :math:`+ j`.
The kernel can therefore skip a draw it does not need (a bridge uniform far from every
barrier) without shifting any later draw, and tests can rebuild the very normals a path used.
Rejection samplers own a budget of slots; the rare draws past it come from a second stream
(key ``k ^ SALT``, address :math:`c \cdot 2^{20} + i`), so no sampler is ever truncated.

Normals: 256-layer ziggurat (Marsaglia & Tsang, "The ziggurat method for generating random
variables", J. Stat. Softw. 5(8), 2000) on 64-bit draws, with the layer, the sign and the
52-bit magnitude taken from disjoint bits (Doornik, "An improved ziggurat method to generate
normal random samples", 2005). One 64-bit draw makes a normal 99% of the time. Gamma variates
(Student-t innovations): Marsaglia & Tsang, "A simple method for generating gamma
variables", ACM TOMS 26(3), 2000.

Paths
-----
Paths come in antithetic pairs: the *deviation* of each step (the part that is odd in the
normals) enters path ``2p`` with ``+`` and path ``2p + 1`` with ``−``; the drift and, for
GARCH, the variance path are shared (:math:`\varepsilon^2` is the same for both). A pair's
steps are first filled into three short buffers (``base``, ``dev``, ``var``: drift part,
deviation, diffusion variance of the step) and each path of the pair is then run over them.
Bootstrap paths are not mirrored (that would flip the skew of real returns): the two paths of
a pair draw independent resamples, which keeps the pair layout and its standard errors valid.

Liquidation
-----------
An account is a set of *groups*, each liquidated as a whole: every isolated position is one,
the cross positions together are one. Group :math:`g` has margin balance :math:`W_g` and legs
:math:`i` whose notional is :math:`n_i v` and PnL :math:`c_i (v - r_i)` in the *margin
variable* :math:`v` (the common price factor for linear contracts, its inverse for inverse
ones, as in :mod:`levalign._margin_kernels`). Its margin excess

.. math:: e_g(v) = W_g + \sum_i c_i (v - r_i) - \sum_i \mathrm{MM}_i(n_i v)

is piecewise linear in :math:`v` with breakpoints where a leg changes tier; the group is
liquidated when :math:`e_g < 0`. Paths run in :math:`y = \ln v`. The roots of :math:`e_g` (the
liquidation levels) bound the safe interval :math:`(b^-_g, b^+_g)` in :math:`y`.

Speed
-----
Without funding (barriers fixed in :math:`y`) most paths never come within a bridge threshold
of a level, where every crossing probability is below :math:`e^{-36}`: for them the
liquidation check does nothing and only equity and drawdown remain. The chunk kernel fills
``LANES`` pairs (:func:`fill_pair`; for GBM the ziggurat's fast path in a loop without calls),
walks them side by side in one vectorized loop (:func:`walk_lanes`: grid points, their
extremes, the drawdown bookkeeping), and runs only the paths that came near through the full
step (:func:`run_static`). The results are those of running every path through
:func:`run_static`, number for number.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

from levalign._margin_kernels import maintenance_margin

FloatArray = NDArray[np.float64]
IntArray = NDArray[np.int64]
U64Array = NDArray[np.uint64]
BoolArray = NDArray[np.bool_]

# ---------------------------------------------------------------- counter layout (per sub-step)
SLOTS = 64
SLOT_NORMAL = 0  # 0..15: the step's normal (ziggurat attempts)
NORMAL_BUDGET = 16
SLOT_BRIDGE = 16  # 16..19: bridge uniforms, path h: 16 + 2h (lower barrier), 17 + 2h (upper)
SLOT_POISSON = 20  # jump count
SLOT_JUMP = 21  # 21..31: jump-size normal
JUMP_BUDGET = 11
SLOT_GAMMA = 32  # 32..63: chi-square of a Student-t innovation (gamma rejection sampler)
GAMMA_BUDGET = 32
SLOT_BOOT = 0  # bootstrap, path h: 2h (continue the block?), 2h + 1 (where a new block starts)

# ---------------------------------------------------------------- models
K_GBM, K_STUDENT, K_GARCH, K_MERTON, K_BOOTSTRAP = range(5)
(
    P_DRIFT,  # log drift per sub-step (GARCH: mean log return per bar; bootstrap: shift per bar)
    P_SD,  # diffusion sd per step (GBM, Student-t, Merton)
    P_NU,  # Student-t degrees of freedom (Student-t, GARCH-t)
    P_TSCALE,  # sqrt((nu - 2) / nu): scales a t variate to unit variance
    P_P0,  # exp(-lambda dt): probability of no jump in a step
    P_LAM,  # lambda dt
    P_JMEAN,  # mean of a log jump
    P_JSTD,  # sd of a log jump
    P_OMEGA,  # GARCH omega (fraction^2 per bar)
    P_ALPHA,
    P_BETA,
    P_VAR0,  # GARCH initial conditional variance
    P_PNEW,  # bootstrap: probability of starting a new block at a bar (1 / block length)
    P_BVAR,  # bootstrap: variance of a bar's return (the bridge variance of one bar)
    P_SIZE,
) = range(15)

# ---------------------------------------------------------------- account layout
(
    G_W0,  # starting margin balance W_g
    G_CR,  # sum of c_i r_i: group equity is W_g + G_C v - G_CR
    G_C,  # sum of c_i
    G_FUND,  # sum of s_i n_i: funding paid per step is rate * G_FUND * v
    G_SPLUS,  # largest positive slope of e_g (0 if none): bounds the distance to b^-
    G_SMINUS,  # most negative slope of e_g (0 if none): bounds the distance to b^+
    G_LO,  # b^- at W_g = G_W0 (log; -inf if none); used without funding
    G_HI,  # b^+ at W_g = G_W0 (log; +inf if none)
    G_LEG0,  # legs of the group: rows G_LEG0 <= i < G_LEG1 of the leg table
    G_LEG1,
    G_BP0,  # breakpoints of e_g (sorted v): bp[G_BP0:G_BP1]
    G_BP1,
    G_SIZE,
) = range(13)
(L_C, L_R, L_N, L_T0, L_T1, L_SIZE) = range(6)  # leg: c_i, r_i, n_i, tier rows [T0, T1)

# ---------------------------------------------------------------- the walk of far pairs
#: pairs walked side by side by :func:`walk_lanes` (the compiler vectorizes across them; it
#: leaves loops of fewer than 16 iterations scalar)
LANES = 16
# its state, each field LANES wide; path a of the pair, then path b
(
    W_Y,  # log price
    W_LO,  # lowest grid point so far (the start included)
    W_HI,  # highest
    W_PK,  # drawdown bookkeeping (run_static): z = sign(c) y of the running peak,
    W_LOW,  # the lowest z since it,
    W_DD,  # the drawdown so far
    W_FIELDS,
) = range(7)
W_SIZE = 2 * W_FIELDS * LANES

# exp(-x) is not computed for x above this: the crossing probability is taken as 0 and the
# survival factor 1 - e^-x as 1, an error below e^-36 = 2.3e-16 per step (about two units in
# the last place of doubles just below 1, whose spacing is 1.1e-16)
BRIDGE_CUTOFF = 36.0

SALT = np.uint64(0x5851F42D4C957F2D)
_S11, _S12, _S20 = np.uint64(11), np.uint64(12), np.uint64(20)
_S27, _S30, _S31 = np.uint64(27), np.uint64(30), np.uint64(31)
_M1, _M2 = np.uint64(0xBF58476D1CE4E5B9), np.uint64(0x94D049BB133111EB)
_LAYER, _SIGN, _LAYER_SIGN = np.uint64(255), np.uint64(256), np.uint64(511)
_TWO_M53 = 1.0 / 9007199254740992.0

# 256-layer ziggurat for the standard normal (Marsaglia & Tsang 2000, §3; constants for 256
# layers: x_255 = r and the common layer area v, from the same paper's table)
ZIG_R = 3.6541528853610088
_ZIG_V = 0.00492867323399


def _ziggurat_tables() -> tuple[IntArray, FloatArray, FloatArray]:
    """Layer thresholds ``k``, widths ``w`` (per unit of a 52-bit magnitude) and densities ``f``."""
    n, m = 256, 2.0**52
    k = np.zeros(n, dtype=np.int64)
    w = np.zeros(n)
    f = np.zeros(n)
    dn = tn = ZIG_R
    q = _ZIG_V / math.exp(-0.5 * dn * dn)
    k[0] = int(dn / q * m)
    w[0], w[n - 1] = q / m, dn / m
    f[0], f[n - 1] = 1.0, math.exp(-0.5 * dn * dn)
    for i in range(n - 2, 0, -1):
        dn = math.sqrt(-2.0 * math.log(_ZIG_V / dn + math.exp(-0.5 * dn * dn)))
        k[i + 1] = int(dn / tn * m)
        tn = dn
        f[i] = math.exp(-0.5 * dn * dn)
        w[i] = dn / m
    return k, w, f


ZIG_K, ZIG_W, ZIG_F = _ziggurat_tables()
# the fast path indexed by layer and sign together (the low 9 bits of a draw): the threshold of
# the layer, and its width with the sign applied (sign bit clear: negative)
ZIG_KS = np.concatenate([ZIG_K, ZIG_K])
ZIG_WS = np.concatenate([-ZIG_W, ZIG_W])
for _a in (ZIG_K, ZIG_W, ZIG_F, ZIG_KS, ZIG_WS):
    _a.setflags(write=False)


# ================================================================= random numbers


@njit(cache=True, inline="always")
def _mix(z: np.uint64) -> np.uint64:
    """SplitMix64 output function."""
    z = (z ^ (z >> _S30)) * _M1
    z = (z ^ (z >> _S27)) * _M2
    return z ^ (z >> _S31)


@njit(cache=True, inline="always")
def draw_u64(key: np.uint64, gam: np.uint64, ctr: np.uint64) -> np.uint64:
    """The 64-bit draw at address ``ctr`` of the stream ``(key, gam)``."""
    return _mix(key + gam * ctr)


@njit(cache=True)
def _draw_budget(key: np.uint64, gam: np.uint64, ctr: np.uint64, i: int, budget: int) -> np.uint64:
    """Draw ``i`` of a sampler owning ``budget`` slots from ``ctr``; past them, the 2nd stream."""
    if i < budget:
        return _mix(key + gam * (ctr + np.uint64(i)))
    return _mix((key ^ SALT) + gam * ((ctr << _S20) + np.uint64(i)))


@njit(cache=True, inline="always")
def _unit(u: np.uint64) -> float:
    """A uniform on (0, 1] from the top 53 bits."""
    return (float(np.int64(u >> _S11)) + 1.0) * _TWO_M53


@njit(cache=True, inline="always")
def uniform_at(key: np.uint64, gam: np.uint64, ctr: np.uint64) -> float:
    """The uniform on (0, 1] at address ``ctr``."""
    return _unit(draw_u64(key, gam, ctr))


@njit(cache=True, inline="always")
def normal_at(key: np.uint64, gam: np.uint64, ctr: np.uint64, budget: int) -> float:
    """The standard normal at address ``ctr`` (ziggurat; owns ``budget`` slots from ``ctr``)."""
    if budget > 0:
        u = draw_u64(key, gam, ctr)
        i = np.int64(u & _LAYER_SIGN)
        j = np.int64(u >> _S12)
        if j < ZIG_KS[i]:  # one lookup per table, no select for the sign
            return float(j) * float(ZIG_WS[i])
    return _normal_slow(key, gam, ctr, budget)


@njit(cache=True)
def _normal_slow(key: np.uint64, gam: np.uint64, ctr: np.uint64, budget: int) -> float:
    """The ziggurat's rejection steps: wedges, the tail beyond ``ZIG_R``, fresh attempts."""
    n = 0
    while True:
        u = _draw_budget(key, gam, ctr, n, budget)
        n += 1
        i = np.int64(u & _LAYER)
        j = np.int64(u >> _S12)
        s = 1.0 if u & _SIGN else -1.0
        x = float(j) * float(ZIG_W[i])
        if j < ZIG_K[i]:
            return s * x
        if i == 0:  # the tail (Marsaglia 1964): x = r + E1/r accepted when 2 E2 >= (E1/r)^2
            while True:
                a = -math.log(_unit(_draw_budget(key, gam, ctr, n, budget))) / ZIG_R
                b = -math.log(_unit(_draw_budget(key, gam, ctr, n + 1, budget)))
                n += 2
                if b + b >= a * a:
                    return s * (ZIG_R + a)
        fu = _unit(_draw_budget(key, gam, ctr, n, budget))
        n += 1
        if ZIG_F[i] + fu * (ZIG_F[i - 1] - ZIG_F[i]) < math.exp(-0.5 * x * x):
            return s * x


@njit(cache=True)
def gamma_at(shape: float, key: np.uint64, gam: np.uint64, ctr: np.uint64, budget: int) -> float:
    """Gamma(``shape``, 1) for ``shape >= 1`` (Marsaglia & Tsang 2000, TOMS 26(3), §2).

    Each attempt uses a normal (its own 2-slot sub-budget, then the second stream) and a
    uniform; attempts take consecutive 3-slot groups of the ``budget`` slots from ``ctr``.
    """
    d = shape - 1.0 / 3.0
    c = 1.0 / math.sqrt(9.0 * d)
    n = 0
    while True:
        base = ctr + np.uint64(3 * n)
        sub = 2 if 3 * n + 3 <= budget else 0
        x = normal_at(key, gam, base, sub)
        t = 1.0 + c * x
        u = _unit(_draw_budget(key, gam, ctr, 3 * n + 2, budget))
        n += 1
        if t <= 0.0:
            continue
        v = t * t * t
        if u < 1.0 - 0.0331 * (x * x) * (x * x):
            return d * v
        if math.log(u) < 0.5 * x * x + d * (1.0 - v + math.log(v)):
            return d * v


@njit(cache=True)
def _student(nu: float, key: np.uint64, gam: np.uint64, ctr: np.uint64) -> float:
    """A Student-t variate with ``nu`` degrees of freedom, ``z / sqrt(chi2_nu / nu)``."""
    z = normal_at(key, gam, ctr + np.uint64(SLOT_NORMAL), NORMAL_BUDGET)
    chi2 = 2.0 * gamma_at(0.5 * nu, key, gam, ctr + np.uint64(SLOT_GAMMA), GAMMA_BUDGET)
    return z / math.sqrt(chi2 / nu)


@njit(cache=True)
def _poisson(p0: float, lam: float, u: float) -> int:
    """Poisson(``lam``) by inversion of the uniform ``u`` (``p0 = exp(-lam)``)."""
    k = 0
    p = p0
    cdf = p0
    while u > cdf and k < 10_000:
        k += 1
        p *= lam / k
        cdf += p
    return k


@njit(cache=True)
def draw_normals(
    keys: U64Array, gams: U64Array, chunk: int, pairs: int, n_sub: int, slot: int, budget: int
) -> FloatArray:
    """The normals at ``slot`` of every sub-step of the first ``pairs`` pairs of ``chunk``.

    Returns shape ``(pairs, n_sub)``: exactly the normals the simulation kernels use there.
    """
    out = np.empty((pairs, n_sub))
    key, gam = keys[chunk], gams[chunk]
    for p in range(pairs):
        for s in range(n_sub):
            ctr = np.uint64((p * n_sub + s) * SLOTS + slot)
            out[p, s] = normal_at(key, gam, ctr, budget)
    return out


@njit(cache=True)
def draw_uniforms(
    keys: U64Array, gams: U64Array, chunk: int, pairs: int, n_sub: int, slot: int
) -> FloatArray:
    """The uniforms at ``slot`` of every sub-step of the first ``pairs`` pairs of ``chunk``."""
    out = np.empty((pairs, n_sub))
    key, gam = keys[chunk], gams[chunk]
    for p in range(pairs):
        for s in range(n_sub):
            out[p, s] = uniform_at(key, gam, np.uint64((p * n_sub + s) * SLOTS + slot))
    return out


# ================================================================= model steps


@njit(cache=True)
def fill_pair(
    kind: int,
    mp: FloatArray,
    k_sub: int,
    steps: int,
    key: np.uint64,
    gam: np.uint64,
    pc0: np.uint64,
    base: FloatArray,
    dev: FloatArray,
    var: FloatArray,
    draws: U64Array,
) -> None:
    """Fill one antithetic pair's step buffers (every model but the bootstrap).

    Step ``t`` of path ``h`` moves the log price by ``base[t] + (1 - 2h) · dev[t]``; ``var[t]``
    is the diffusion variance of the step, used by the Brownian bridge. ``draws`` is scratch
    space of ``steps`` 64-bit integers.

    - GBM: ``base = (μ − σ²/2)Δ``, ``dev = σ√Δ z``;
    - Student-t: ``dev = σ√Δ · t_ν · sqrt((ν − 2)/ν)``;
    - Merton: ``base = (μ − σ²/2 − λκ)Δ + N m``, ``dev = σ√Δ z + s√N z'``, ``N ~ Poisson(λΔ)``
      (the jumps are placed at the end of the step, after the bridge);
    - GARCH(1,1)-t, bar by bar: ``r_j = μ + σ_j ε_j``, ``σ²_{j+1} = ω + α σ_j² ε_j² + β σ_j²``;
      a step of ``k_sub`` bars has ``base = k μ``, ``dev = Σ σ_j ε_j``, ``var = Σ σ_j²``.
    """
    sd = mp[P_SD]
    drift = mp[P_DRIFT]
    stride = np.uint64(SLOTS)
    if kind == K_GBM:
        v = sd * sd
        # normal_at in three passes: the draws (a loop the compiler vectorizes), the fast path
        # of the ziggurat (scalar: table lookups), then the 1% of draws it rejects, listed in
        # the draws' own buffer as it is read (no call in the first two loops, so nothing is
        # spilled around one)
        x0 = key + gam * pc0
        x_step = gam * stride
        for t in range(steps):
            draws[t] = _mix(x0 + np.uint64(t) * x_step)
        n_slow = 0
        for t in range(steps):
            u = draws[t]
            layer = np.int64(u & _LAYER_SIGN)
            mag = np.int64(u >> _S12)
            if mag >= ZIG_KS[layer]:
                draws[n_slow] = t
                n_slow += 1
            base[t] = drift
            dev[t] = sd * (float(mag) * ZIG_WS[layer])
            var[t] = v
        for k in range(n_slow):
            ts = int(draws[k])
            dev[ts] = sd * _normal_slow(key, gam, pc0 + np.uint64(ts) * stride, NORMAL_BUDGET)
    elif kind == K_STUDENT:
        scale = sd * mp[P_TSCALE]
        nu = mp[P_NU]
        for t in range(steps):
            base[t] = drift
            dev[t] = scale * _student(nu, key, gam, pc0 + np.uint64(t) * stride)
            var[t] = sd * sd
    elif kind == K_MERTON:
        for t in range(steps):
            c = pc0 + np.uint64(t) * stride
            z = normal_at(key, gam, c + np.uint64(SLOT_NORMAL), NORMAL_BUDGET)
            n = _poisson(mp[P_P0], mp[P_LAM], uniform_at(key, gam, c + np.uint64(SLOT_POISSON)))
            b = drift
            d = sd * z
            if n > 0:
                zj = normal_at(key, gam, c + np.uint64(SLOT_JUMP), JUMP_BUDGET)
                b += n * mp[P_JMEAN]
                d += mp[P_JSTD] * math.sqrt(n) * zj
            base[t] = b
            dev[t] = d
            var[t] = sd * sd
    else:  # K_GARCH
        h = mp[P_VAR0]
        omega, alpha, beta = mp[P_OMEGA], mp[P_ALPHA], mp[P_BETA]
        scale, nu = mp[P_TSCALE], mp[P_NU]
        for t in range(steps):
            d = 0.0
            v = 0.0
            for j in range(k_sub):
                c = pc0 + np.uint64(t * k_sub + j) * stride
                eps = scale * _student(nu, key, gam, c)
                d += math.sqrt(h) * eps
                v += h
                h = omega + (alpha * eps * eps + beta) * h
            base[t] = drift * k_sub
            dev[t] = d
            var[t] = v


@njit(cache=True)
def fill_bootstrap(
    mp: FloatArray,
    returns: FloatArray,
    k_sub: int,
    steps: int,
    key: np.uint64,
    gam: np.uint64,
    pc0: np.uint64,
    h: int,
    base: FloatArray,
    dev: FloatArray,
    var: FloatArray,
) -> None:
    """Fill path ``h`` of a pair with a stationary bootstrap of ``returns``.

    Politis & Romano, "The stationary bootstrap", JASA 89(428), 1994: the first bar starts a
    block at a uniform index; each later bar starts a new block with probability ``1/L``, else
    takes the next return (wrapping around). ``base`` is the sum of the step's bars plus the
    drift shift, ``dev = 0``; ``var`` is ``k_sub`` times the sample variance of a bar.
    """
    n = returns.shape[0]
    idx = 0
    shift = mp[P_DRIFT]
    bar_var = mp[P_BVAR]
    pnew = mp[P_PNEW]
    for t in range(steps):
        acc = 0.0
        for j in range(k_sub):
            c = pc0 + np.uint64((t * k_sub + j) * SLOTS + SLOT_BOOT + 2 * h)
            if (t == 0 and j == 0) or uniform_at(key, gam, c) <= pnew:
                idx = min(int(uniform_at(key, gam, c + np.uint64(1)) * n), n - 1)
            else:
                idx = idx + 1 if idx + 1 < n else 0
            acc += returns[idx] + shift
        base[t] = acc
        dev[t] = 0.0
        var[t] = k_sub * bar_var


# ================================================================= margin of a group


@njit(cache=True)
def group_excess(
    g: int,
    w: float,
    v: float,
    groups: FloatArray,
    legs: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
) -> float:
    """Margin excess :math:`e_g(v)` of group ``g`` with balance ``w`` (module docstring)."""
    s = w
    for i in range(int(groups[g, G_LEG0]), int(groups[g, G_LEG1])):
        a, b = int(legs[i, L_T0]), int(legs[i, L_T1])
        s += legs[i, L_C] * (v - legs[i, L_R]) - maintenance_margin(
            t_cap[a:b], t_mmr[a:b], t_cum[a:b], legs[i, L_N] * v
        )
    return s


@njit(cache=True)
def group_roots(
    g: int,
    w: float,
    v: float,
    groups: FloatArray,
    legs: FloatArray,
    bp: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
) -> tuple[float, float]:
    """Nearest roots of :math:`e_g` below and above ``v`` (0 and inf when there are none).

    :math:`e_g` is linear between its breakpoints, so the walk evaluates it at breakpoints
    (with the margin engine's own maintenance margin) and interpolates inside the segment where
    it changes sign, which is exact. Beyond the last breakpoint the slope is constant. If
    :math:`e_g(v) < 0` the group is liquidatable at ``v`` and ``(v, v)`` is returned.
    """
    e_v = group_excess(g, w, v, groups, legs, t_cap, t_mmr, t_cum)
    if e_v < 0.0:
        return v, v
    b0, b1 = int(groups[g, G_BP0]), int(groups[g, G_BP1])
    lo = 0.0
    pv, pe = v, e_v
    found = False
    for j in range(b1 - 1, b0 - 1, -1):
        x = bp[j]
        if x >= pv:
            continue
        ex = group_excess(g, w, x, groups, legs, t_cap, t_mmr, t_cum)
        if ex <= 0.0:
            lo = x + (pv - x) * (-ex) / (pe - ex) if pe > ex else pv
            found = True
            break
        pv, pe = x, ex
    if not found:
        e0 = group_excess(g, w, 0.0, groups, legs, t_cap, t_mmr, t_cum)
        if e0 <= 0.0:
            lo = pv * (-e0) / (pe - e0) if pe > e0 else pv
    hi = math.inf
    pv, pe = v, e_v
    found = False
    for j in range(b0, b1):
        x = bp[j]
        if x <= pv:
            continue
        ex = group_excess(g, w, x, groups, legs, t_cap, t_mmr, t_cum)
        if ex <= 0.0:
            hi = pv + (x - pv) * pe / (pe - ex) if pe > ex else pv
            found = True
            break
        pv, pe = x, ex
    if not found:
        x = 2.0 * pv + 1.0
        slope = (group_excess(g, w, x, groups, legs, t_cap, t_mmr, t_cum) - pe) / (x - pv)
        if slope < 0.0:
            hi = pv + pe / (-slope)
    return lo, hi


@njit(cache=True, inline="always")
def bridge_probability(y0: float, y1: float, b: float, var: float) -> float:
    r"""Probability that a Brownian bridge from ``y0`` to ``y1`` touches ``b``.

    .. math:: p = \exp\!\left(-\frac{2 (y_0 - b)(y_1 - b)}{\sigma^2 \Delta t}\right)

    (Glasserman, *Monte Carlo Methods in Financial Engineering*, 2004, §6.4). 1 when an end is
    on or beyond ``b``; 0 when the exponent exceeds ``BRIDGE_CUTOFF`` or ``b`` is infinite.
    """
    q = 2.0 * (y0 - b) * (y1 - b)
    if q <= 0.0:
        return 1.0
    if q > BRIDGE_CUTOFF * var:  # also catches q = inf (no barrier)
        return 0.0
    return math.exp(-q / var)


# ================================================================= one path


@njit(cache=True)
def _death(
    g: int,
    y: float,
    groups: FloatArray,
    a: float,
    c: float,
    sgc: float,
    zpk: float,
    zlow: float,
    epk: float,
    dd: float,
) -> tuple[float, float, float, float, float, float, float]:
    """Group ``g`` is liquidated at log level ``y``: drop it from the affine equity ``a + c v``.

    Drawdown bookkeeping (see :func:`run_static`): close the running epoch with the old
    equity, count the fall to the new equity, and restate the peak as a threshold in the new
    equity's own direction.
    """
    if math.isnan(epk):
        epk = a + c * math.exp(sgc * zpk)
    if sgc != 0.0 and zlow < zpk:
        dd = max(dd, 1.0 - (a + c * math.exp(sgc * zlow)) / epk)
    a -= groups[g, G_W0] - groups[g, G_CR]
    c -= groups[g, G_C]
    now = a + c * math.exp(y) if c != 0.0 else a
    if epk > 0.0:
        dd = max(dd, 1.0 - now / epk)
    sgc = 1.0 if c > 0.0 else (-1.0 if c < 0.0 else 0.0)
    zlow = sgc * y
    if c == 0.0:
        zpk = math.inf
    else:
        q = (epk - a) / c
        # q <= 0: with c > 0 every level beats the peak, with c < 0 none does
        zpk = sgc * math.log(q) if q > 0.0 else (-math.inf if c > 0.0 else math.inf)
    return a, c, sgc, zpk, zlow, epk, dd


@njit(cache=True)
def run_static(
    path: FloatArray,
    var: FloatArray,
    dthr: FloatArray,
    steps: int,
    k_sub: int,
    key: np.uint64,
    gam: np.uint64,
    pc0: np.uint64,
    h: int,
    groups: FloatArray,
    alive: BoolArray,
    ulo: float,
    uhi: float,
    free: float,
    e0: float,
) -> tuple[float, int, float, float]:
    r"""One path when balances are constant (no funding): barriers are fixed in ``y``.

    Returns ``(S, liq, E_T / E_0, max drawdown)``.

    ``S`` is the conditional survival of the account (no group liquidated), the product over
    steps of one minus the bridge crossing probability of the account's barrier pair ``(ulo,
    uhi)`` (the highest lower and lowest upper liquidation level of all groups), 0 after a
    step ends beyond one. :math:`1 - S` is the conditional expectation of the liquidation
    indicator given the grid path, an unbiased estimator of P(liquidation) with less variance
    than the indicator: no extra draw enters it (Glasserman 2004, §6.4 and §4.1).

    The P&L outcome needs an actual liquidation time, so each group is also *sampled*: it is
    liquidated in a step with probability equal to its bridge crossing probability, by
    comparing one uniform per step and side with that probability. With the same uniform for
    every group this is exact bridge-extreme sampling (the minimum of the bridge is below
    :math:`b` exactly when :math:`U \le p(b)`), with the extreme itself never computed. A
    liquidated group loses its whole equity (margin and PnL) to the exchange; ``liq`` is the
    first step in which any group was liquidated (``-1``: none).

    Fast path: a step with both ends at least ``dthr = sqrt(BRIDGE_CUTOFF var / 2)`` inside
    ``(ulo, uhi)`` has every crossing probability below ``e^-36`` and does nothing but move.

    Drawdown of account equity on the step grid, :math:`\max_t 1 - E_t / \max_{s \le t} E_s`.
    Between liquidations equity is affine in :math:`v`, :math:`E = a + c v`, hence monotone in
    :math:`z = \operatorname{sign}(c)\, y`: the path keeps the ``z`` of the running peak and
    the lowest ``z`` since, and evaluates equity (two ``exp``) only when a new peak closes an
    epoch whose dip can beat the drawdown so far. The dip of an epoch with peak :math:`z_p`
    and low :math:`z_l` is :math:`k(z_p)(1 - e^{-(z_p - z_l)}) \le k_b (z_p - z_l)`, where
    :math:`k = |c| v / E` is the effective leverage at the peak; :math:`k` falls as the peak
    rises when :math:`\operatorname{sign}(c)\, a < 0` and stays below 1 otherwise, so
    :math:`k_b = \max(k_0, 1)` bounds it (after a liquidation, no bound is used).
    """
    n_groups = groups.shape[0]
    a, c, sgc, kb = _equity_line(groups, free, e0)
    alive[:] = True
    n_alive = n_groups
    zpk = 0.0
    zlow = 0.0
    epk = e0
    dd = 0.0
    s = 1.0
    liq = -1
    yp = 0.0
    y = 0.0
    slot = np.uint64(SLOT_BRIDGE + 2 * h)
    for t in range(steps):
        y = path[t]
        lo_s = ulo + dthr[t]
        hi_s = uhi - dthr[t]
        # bitwise, not short-circuit: one well-predicted branch instead of four
        if (y <= lo_s) | (yp <= lo_s) | (y >= hi_s) | (yp >= hi_s):
            vt = var[t]
            if s > 0.0:
                if y <= ulo or y >= uhi:
                    s = 0.0
                else:
                    s *= (1.0 - bridge_probability(yp, y, ulo, vt)) * (
                        1.0 - bridge_probability(yp, y, uhi, vt)
                    )
            if n_alive > 0:
                ctr = pc0 + np.uint64(((t + 1) * k_sub - 1) * SLOTS) + slot
                u_lo = -1.0
                u_hi = -1.0
                for g in range(n_groups):
                    if not alive[g]:
                        continue
                    lo, hi = groups[g, G_LO], groups[g, G_HI]
                    hit = y <= lo or y >= hi
                    if not hit:
                        p = bridge_probability(yp, y, lo, vt)
                        if p > 0.0:
                            if u_lo < 0.0:
                                u_lo = uniform_at(key, gam, ctr)
                            hit = u_lo < p
                        if not hit:
                            p = bridge_probability(yp, y, hi, vt)
                            if p > 0.0:
                                if u_hi < 0.0:
                                    u_hi = uniform_at(key, gam, ctr + np.uint64(1))
                                hit = u_hi < p
                    if hit:
                        alive[g] = False
                        n_alive -= 1
                        if liq < 0:
                            liq = t
                        a, c, sgc, zpk, zlow, epk, dd = _death(
                            g, y, groups, a, c, sgc, zpk, zlow, epk, dd
                        )
                        kb = math.inf
        zpk, zlow, epk, dd = _drawdown_step(sgc * y, zpk, zlow, epk, dd, kb, a, c, sgc)
        yp = y
        if n_alive == 0 and s == 0.0:
            break  # equity is the constant a from here on
    dd = _drawdown_end(zpk, zlow, epk, dd, a, c, sgc)
    eq = a + c * math.exp(y) if c != 0.0 else a
    return s, liq, eq / e0, dd


@njit(cache=True, inline="always")
def _equity_line(groups: FloatArray, free: float, e0: float) -> tuple[float, float, float, float]:
    """Account equity ``a + c v`` with every group alive, ``sign(c)`` and the bound ``k_b``."""
    a = free
    c = 0.0
    for g in range(groups.shape[0]):
        a += groups[g, G_W0] - groups[g, G_CR]
        c += groups[g, G_C]
    sgc = 1.0 if c > 0.0 else (-1.0 if c < 0.0 else 0.0)
    return a, c, sgc, max(abs(c) / e0, 1.0)


@njit(cache=True)
def walk_lanes(
    bases: FloatArray,
    devs: FloatArray,
    steps: int,
    lo_s: FloatArray,
    hi_s: FloatArray,
    groups: FloatArray,
    free: float,
    e0: float,
    st: FloatArray,
    near: BoolArray,
    eq: FloatArray,
    dd: FloatArray,
) -> None:
    r"""``LANES`` pairs walked as if far from liquidation, step by step side by side.

    Pair ``k`` moves path ``a`` by ``bases[t, k] + devs[t, k]`` and path ``b`` by
    ``bases[t, k] − devs[t, k]``. Writes, for path ``h`` of pair ``k`` at ``2k + h``: whether it
    is *near* (a grid point, the start included, at or below ``lo_s[k]`` or at or above
    ``hi_s[k]``), its terminal equity over ``e0`` and its drawdown. With ``lo_s = ulo + d``,
    ``hi_s = uhi − d`` and ``d`` the largest bridge threshold of the pair's steps, a path that
    is not near never enters the slow part of :func:`run_static`, which then does nothing but
    the drawdown bookkeeping done here (the same operations, so the same numbers): its equity
    and drawdown are final. A near path is run again by :func:`run_static`.

    Every step is one loop over the lanes with no branch and no call, which the compiler turns
    into vector instructions; the rare closing of a drawdown epoch that may beat the drawdown
    so far (two ``exp``) leaves the lane's peak and low as they were and is finished in a
    scalar loop after it. ``st`` is scratch space of ``W_SIZE`` floats.
    """
    a, c, sgc, kb = _equity_line(groups, free, e0)
    st[:] = 0.0
    for t in range(steps):
        fired = False
        for k in range(LANES):
            b = bases[t, k]
            d = devs[t, k]
            fired |= _lane_step(b + d, k, 0, st, sgc, kb)
            fired |= _lane_step(b + -1.0 * d, k, W_FIELDS * LANES, st, sgc, kb)
        if fired:
            for k in range(LANES):
                for o in (0, W_FIELDS * LANES):
                    i_pk, i_low, i_dd = (
                        o + W_PK * LANES + k,
                        o + W_LOW * LANES + k,
                        o + W_DD * LANES + k,
                    )
                    z = sgc * st[o + W_Y * LANES + k]
                    if _closes_epoch(z, st[i_pk], st[i_low], st[i_dd], kb):
                        st[i_dd] = _epoch_drawdown(st[i_pk], st[i_low], a, c, sgc, st[i_dd])
                        st[i_pk], st[i_low] = _peak_low(z, st[i_pk], st[i_low])
    for k in range(LANES):
        for h in range(2):
            o = h * W_FIELDS * LANES + k
            y = st[o + W_Y * LANES]
            zpk = st[o + W_PK * LANES]
            near[2 * k + h] = (st[o + W_LO * LANES] <= lo_s[k]) | (st[o + W_HI * LANES] >= hi_s[k])
            eq[2 * k + h] = (a + c * math.exp(y) if c != 0.0 else a) / e0
            dd[2 * k + h] = _drawdown_end(
                zpk, st[o + W_LOW * LANES], math.nan, st[o + W_DD * LANES], a, c, sgc
            )


@njit(cache=True)  # inlined by LLVM: numba's own inlining here stops the vectorizer
def _lane_step(inc: float, k: int, o: int, st: FloatArray, sgc: float, kb: float) -> bool:
    """One step of one path of :func:`walk_lanes`; True if it closes an epoch (left undone)."""
    y = st[o + W_Y * LANES + k] + inc
    st[o + W_Y * LANES + k] = y
    st[o + W_LO * LANES + k] = min(st[o + W_LO * LANES + k], y)
    st[o + W_HI * LANES + k] = max(st[o + W_HI * LANES + k], y)
    z = sgc * y
    zpk = st[o + W_PK * LANES + k]
    zlow = st[o + W_LOW * LANES + k]
    fire = _closes_epoch(z, zpk, zlow, st[o + W_DD * LANES + k], kb)
    new_pk, new_low = _peak_low(z, zpk, zlow)
    st[o + W_PK * LANES + k] = zpk if fire else new_pk
    st[o + W_LOW * LANES + k] = zlow if fire else new_low
    return fire


@njit(cache=True, inline="always")
def _fill_signed_pair(
    kind: int,
    mp: FloatArray,
    k_sub: int,
    steps: int,
    key: np.uint64,
    gam: np.uint64,
    pc0: np.uint64,
    eps: float,
    base: FloatArray,
    dev: FloatArray,
    var: FloatArray,
    draws: U64Array,
) -> None:
    """:func:`fill_pair`, the moves turned over when ``eps < 0`` (the book's sign)."""
    fill_pair(kind, mp, k_sub, steps, key, gam, pc0, base, dev, var, draws)
    if eps < 0.0:
        base *= -1.0
        dev *= -1.0


@njit(cache=True)
def pair_path(base: FloatArray, dev: FloatArray, steps: int, sg: float, y: FloatArray) -> None:
    """Grid points of path ``a`` (``sg = 1``) or ``b`` (``sg = −1``) of a pair, as walked."""
    x = 0.0
    for t in range(steps):
        x = x + (base[t] + sg * dev[t])
        y[t] = x


@njit(cache=True, inline="always")
def _closes_epoch(z: float, zpk: float, zlow: float, dd: float, kb: float) -> bool:
    """A new peak closes an epoch whose dip may beat the drawdown so far (:func:`run_static`)."""
    return min(z - zpk, (zpk - zlow) * kb - dd) > 0.0


@njit(cache=True, inline="always")
def _peak_low(z: float, zpk: float, zlow: float) -> tuple[float, float]:
    """Running peak and the low since it; selects, not branches: both come at random."""
    zlow = z if (z > zpk) | (z < zlow) else zlow
    return max(zpk, z), zlow


@njit(cache=True, inline="always")
def _drawdown_step(
    z: float,
    zpk: float,
    zlow: float,
    epk: float,
    dd: float,
    kb: float,
    a: float,
    c: float,
    sgc: float,
) -> tuple[float, float, float, float]:
    """One step of the drawdown bookkeeping of :func:`run_static` (see there)."""
    if _closes_epoch(z, zpk, zlow, dd, kb):
        if math.isnan(epk):
            epk = a + c * math.exp(sgc * zpk)
        dd = max(dd, 1.0 - (a + c * math.exp(sgc * zlow)) / epk)
    epk = math.nan if z > zpk else epk
    zpk, zlow = _peak_low(z, zpk, zlow)
    return zpk, zlow, epk, dd


@njit(cache=True)
def _epoch_drawdown(zpk: float, zlow: float, a: float, c: float, sgc: float, dd: float) -> float:
    """``max(dd, 1 - E(zlow) / E(zpk))`` with ``E(z) = a + c exp(sign(c) z)``."""
    return max(dd, 1.0 - (a + c * math.exp(sgc * zlow)) / (a + c * math.exp(sgc * zpk)))


@njit(cache=True, inline="always")
def _drawdown_end(
    zpk: float, zlow: float, epk: float, dd: float, a: float, c: float, sgc: float
) -> float:
    """Close the last epoch of the drawdown bookkeeping."""
    if sgc != 0.0 and zlow < zpk:
        if math.isnan(epk):
            epk = a + c * math.exp(sgc * zpk)
        dd = max(dd, 1.0 - (a + c * math.exp(sgc * zlow)) / epk)
    return dd


@njit(cache=True)
def pair_paths(
    base: FloatArray, dev: FloatArray, steps: int, ya: FloatArray, yb: FloatArray
) -> None:
    """Grid points of both paths of a pair, ``y_t = y_{t-1} + (base_t ± dev_t)``.

    Running the two paths in one loop overlaps their two chains of dependent additions.
    """
    a = 0.0
    b = 0.0
    for t in range(steps):
        a = a + (base[t] + dev[t])
        b = b + (base[t] + -1.0 * dev[t])
        ya[t] = a
        yb[t] = b


@njit(cache=True)
def run_funding(
    path: FloatArray,
    var: FloatArray,
    dthr: FloatArray,
    steps: int,
    k_sub: int,
    key: np.uint64,
    gam: np.uint64,
    pc0: np.uint64,
    h: int,
    rate: FloatArray,
    groups: FloatArray,
    legs: FloatArray,
    bp: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    alive: BoolArray,
    w: FloatArray,
    free: float,
    e0: float,
) -> tuple[float, int, float, float]:
    r"""One path with funding: each step's funding moves the balances and the barriers.

    At the start of step ``t`` every group pays :math:`\text{rate}_t \sum_i s_i n_i v_t` (a
    long pays, a short receives, on the notional held into the step). The step is then tested
    against the margin model with that balance: the grid check is :math:`e_g(v) < 0` at both
    ends; the bridge uses the group's liquidation levels at the balance, solved exactly by
    :func:`group_roots` only when a cheap bound says a level may be within ``dthr`` (the
    slopes ``G_SPLUS``/``G_SMINUS`` bound how fast :math:`e_g` can fall). Survival and the
    sampled liquidations follow :func:`run_static`; the account's crossing probability in a
    step is the largest over groups, per side. Drawdown is computed from the equity at each
    step. Returns ``(S, liq, E_T / E_0, max drawdown)``.
    """
    n_groups = groups.shape[0]
    for g in range(n_groups):
        alive[g] = True
        w[g] = groups[g, G_W0]
    n_alive = n_groups
    s = 1.0
    liq = -1
    yp = 0.0
    vp = 1.0
    peak = e0
    eq = e0
    dd = 0.0
    slot = np.uint64(SLOT_BRIDGE + 2 * h)
    for t in range(steps):
        y = path[t]
        v = math.exp(y)
        d = dthr[t]
        vt = var[t]
        f = rate[t]
        p_lo_acc = 0.0
        p_hi_acc = 0.0
        any_hit = False
        ctr = pc0 + np.uint64(((t + 1) * k_sub - 1) * SLOTS) + slot
        u_lo = -1.0
        u_hi = -1.0
        for g in range(n_groups):
            w[g] -= f * groups[g, G_FUND] * vp
            e1 = group_excess(g, w[g], v, groups, legs, t_cap, t_mmr, t_cum)
            e_prev = group_excess(g, w[g], vp, groups, legs, t_cap, t_mmr, t_cum)
            hit = e1 < 0.0 or e_prev < 0.0
            p_lo = 0.0
            p_hi = 0.0
            if not hit:
                near = False
                sp, sm = groups[g, G_SPLUS], groups[g, G_SMINUS]
                if sp > 0.0 and min(e1 / (sp * v), e_prev / (sp * vp)) < d:
                    near = True
                if sm < 0.0:
                    u1 = e1 / (-sm * v)
                    u0 = e_prev / (-sm * vp)
                    if min(u1 / (1.0 + u1), u0 / (1.0 + u0)) < d:
                        near = True
                if near:
                    vlo, vhi = group_roots(g, w[g], v, groups, legs, bp, t_cap, t_mmr, t_cum)
                    blo = math.log(vlo) if vlo > 0.0 else -math.inf
                    bhi = math.log(vhi) if vhi < math.inf else math.inf
                    p_lo = bridge_probability(yp, y, blo, vt)
                    p_hi = bridge_probability(yp, y, bhi, vt)
            if hit:
                any_hit = True
            else:
                p_lo_acc = max(p_lo_acc, p_lo)
                p_hi_acc = max(p_hi_acc, p_hi)
            if alive[g]:
                dead = hit
                if not dead and p_lo > 0.0:
                    if u_lo < 0.0:
                        u_lo = uniform_at(key, gam, ctr)
                    dead = u_lo < p_lo
                if not dead and p_hi > 0.0:
                    if u_hi < 0.0:
                        u_hi = uniform_at(key, gam, ctr + np.uint64(1))
                    dead = u_hi < p_hi
                if dead:
                    alive[g] = False
                    n_alive -= 1
                    if liq < 0:
                        liq = t
        if s > 0.0:
            s = 0.0 if any_hit else s * (1.0 - p_lo_acc) * (1.0 - p_hi_acc)
        eq = free
        for g in range(n_groups):
            if alive[g]:
                eq += w[g] + groups[g, G_C] * v - groups[g, G_CR]
        peak = max(peak, eq)
        if peak > 0.0:
            dd = max(dd, 1.0 - eq / peak)
        yp = y
        vp = v
        if n_alive == 0 and s == 0.0:
            break
    return s, liq, eq / e0, dd


# ================================================================= the chunk kernels
# Chunks are independent: callers run disjoint chunk ranges on several threads at once (the
# kernels release the GIL). A prange kernel would do the same but compiles twice as slowly.


@njit(cache=True)
def _bridge_thresholds(var: FloatArray, dthr: FloatArray, steps: int) -> None:
    """``dthr = sqrt(BRIDGE_CUTOFF · var / 2)``: closer to a level than this, take the bridge."""
    last_v = -1.0
    last_d = 0.0
    for t in range(steps):
        if var[t] != last_v:  # constant for most models: one square root per pair
            last_v = var[t]
            last_d = math.sqrt(0.5 * BRIDGE_CUTOFF * last_v)
        dthr[t] = last_d


@njit(cache=True, nogil=True)
def simulate_chunks(
    kind: int,
    mp: FloatArray,
    returns: FloatArray,
    k_sub: int,
    steps: int,
    n_pairs: int,
    chunk_pairs: int,
    keys: U64Array,
    gams: U64Array,
    c_lo: int,
    c_hi: int,
    eps: float,
    has_funding: bool,
    rate: FloatArray,
    groups: FloatArray,
    legs: FloatArray,
    bp: FloatArray,
    t_cap: FloatArray,
    t_mmr: FloatArray,
    t_cum: FloatArray,
    free: float,
    e0: float,
    out_surv: FloatArray,
    out_liq: IntArray,
    out_eq: FloatArray,
    out_dd: FloatArray,
) -> None:
    """Simulate chunks ``c_lo <= ch < c_hi``; writes paths ``2p, 2p + 1`` of each pair ``p``.

    ``eps`` is +1 when the margin variable is the price factor (linear contracts) and −1 when
    it is its inverse (inverse contracts): ``y = eps · ln(factor)``. See :func:`run_static` and
    :func:`run_funding` for the outputs.
    """
    n_groups = groups.shape[0]
    ulo = -math.inf
    uhi = math.inf
    for g in range(n_groups):
        ulo = max(ulo, groups[g, G_LO])
        uhi = min(uhi, groups[g, G_HI])
    const_var = kind in (K_GBM, K_STUDENT, K_MERTON)  # step variance sd^2 (jumps excluded)
    for ch in range(c_lo, c_hi):
        key, gam = keys[ch], gams[ch]
        base = np.empty(steps)
        dev = np.empty(steps)
        var = np.empty(steps)
        dthr = np.empty(steps)
        ya = np.empty(steps)
        yb = np.empty(steps)
        draws = np.empty(steps, dtype=np.uint64)
        bases = np.empty((steps, LANES))
        devs = np.empty((steps, LANES))
        vars_ = np.empty((steps if not const_var else 0, LANES))
        lane_lo = np.empty(LANES)
        lane_hi = np.empty(LANES)
        st = np.empty(W_SIZE)
        near = np.empty(2 * LANES, dtype=np.bool_)
        eq_l = np.empty(2 * LANES)
        dd_l = np.empty(2 * LANES)
        alive = np.empty(n_groups, dtype=np.bool_)
        w = np.empty(n_groups)
        p_begin = ch * chunk_pairs
        p_end = min(n_pairs, p_begin + chunk_pairs)
        thresholds_known = False
        bases_known = False
        dmax = 0.0
        if kind != K_BOOTSTRAP and not has_funding:
            for g0 in range(p_begin, p_end, LANES):
                n_l = min(LANES, p_end - g0)
                for k in range(LANES):
                    if k >= n_l:  # an idle lane: a flat path, never near
                        for t in range(steps):
                            bases[t, k] = 0.0
                            devs[t, k] = 0.0
                        lane_lo[k] = -math.inf
                        lane_hi[k] = math.inf
                        continue
                    pc0 = np.uint64((g0 + k - p_begin) * k_sub * steps * SLOTS)
                    _fill_signed_pair(
                        kind, mp, k_sub, steps, key, gam, pc0, eps, base, dev, var, draws
                    )
                    if not thresholds_known:
                        _bridge_thresholds(var, dthr, steps)
                        dmax = np.max(dthr)
                        # a constant step variance gives every pair the same thresholds
                        thresholds_known = const_var
                    for t in range(steps):
                        devs[t, k] = dev[t]
                    if not bases_known:
                        for t in range(steps):
                            bases[t, k] = base[t]
                    if not const_var:
                        for t in range(steps):
                            vars_[t, k] = var[t]
                    lane_lo[k] = ulo + dmax
                    lane_hi[k] = uhi - dmax
                walk_lanes(
                    bases, devs, steps, lane_lo, lane_hi, groups, free, e0, st, near, eq_l, dd_l
                )
                # the drift part is the same for every pair but Merton's (its jumps)
                bases_known = kind != K_MERTON and n_l == LANES
                for k in range(n_l):
                    p = g0 + k
                    pc0 = np.uint64((p - p_begin) * k_sub * steps * SLOTS)
                    for h in range(2):
                        i = 2 * p + h
                        if near[2 * k + h]:
                            for t in range(steps):
                                base[t] = bases[t, k]
                                dev[t] = devs[t, k]
                            if not const_var:
                                for t in range(steps):
                                    var[t] = vars_[t, k]
                                _bridge_thresholds(var, dthr, steps)
                            pair_path(base, dev, steps, 1.0 - 2.0 * h, ya)
                            s, liq, eq, dd = run_static(
                                ya, var, dthr, steps, k_sub, key, gam, pc0, h,
                                groups, alive, ulo, uhi, free, e0,
                            )  # fmt: skip
                        else:
                            s, liq, eq, dd = 1.0, -1, eq_l[2 * k + h], dd_l[2 * k + h]
                        out_surv[i] = s
                        out_liq[i] = liq
                        out_eq[i] = eq
                        out_dd[i] = dd
            continue
        for p in range(p_begin, p_end):
            pc0 = np.uint64((p - p_begin) * k_sub * steps * SLOTS)
            if kind != K_BOOTSTRAP:
                _fill_signed_pair(kind, mp, k_sub, steps, key, gam, pc0, eps, base, dev, var, draws)
                if not thresholds_known:
                    _bridge_thresholds(var, dthr, steps)
                    thresholds_known = const_var
                pair_paths(base, dev, steps, ya, yb)
            for h in range(2):
                if kind == K_BOOTSTRAP:
                    fill_bootstrap(mp, returns, k_sub, steps, key, gam, pc0, h, base, dev, var)
                    if eps < 0.0:
                        base *= -1.0
                    _bridge_thresholds(var, dthr, steps)
                    pair_path(base, dev, steps, 1.0, ya)
                    path = ya
                else:
                    path = ya if h == 0 else yb
                if has_funding:
                    s, liq, eq, dd = run_funding(
                        path, var, dthr, steps, k_sub, key, gam, pc0, h,
                        rate, groups, legs, bp, t_cap, t_mmr, t_cum, alive, w,
                        free, e0,
                    )  # fmt: skip
                else:
                    s, liq, eq, dd = run_static(
                        path, var, dthr, steps, k_sub, key, gam, pc0, h,
                        groups, alive, ulo, uhi, free, e0,
                    )  # fmt: skip
                i = 2 * p + h
                out_surv[i] = s
                out_liq[i] = liq
                out_eq[i] = eq
                out_dd[i] = dd


@njit(cache=True, nogil=True)
def extremes_chunks(
    kind: int,
    mp: FloatArray,
    returns: FloatArray,
    k_sub: int,
    steps: int,
    n_pairs: int,
    chunk_pairs: int,
    keys: U64Array,
    gams: U64Array,
    c_lo: int,
    c_hi: int,
    every: int,
    out_min: FloatArray,
    out_max: FloatArray,
    out_last: FloatArray,
) -> None:
    r"""Running minimum and maximum of the log price at every ``every``-th step, per path.

    Within a step from :math:`a` to :math:`b` with diffusion variance :math:`\sigma^2\Delta`,
    the bridge's extremes are sampled exactly by inversion (Glasserman 2004, §6.4):

    .. math::

        m = \tfrac12\left(a + b - \sqrt{(b - a)^2 - 2\sigma^2\Delta \ln U}\right), \qquad
        M = \tfrac12\left(a + b + \sqrt{(b - a)^2 - 2\sigma^2\Delta \ln U'}\right)

    with independent :math:`U, U'` (each marginal is exact; their joint law is not needed for
    a one-sided barrier). Only a draw that sets a new extreme changes the output, and with
    :math:`\ell` the running minimum and both ends above it, :math:`m < \ell` exactly when
    :math:`U < e^{-Q}`, :math:`Q = 2(a - \ell)(b - \ell)/(\sigma^2\Delta)`, the bridge's
    crossing probability of :math:`\ell` (:func:`bridge_probability`). A step with
    :math:`Q > 36` (crossing probability below :math:`e^{-36}`) is not sampled at all; else the
    uniform is drawn and :func:`_bridge_min` computes the extreme only when a cheap bound says
    it may be new. Likewise for the maximum.
    Outputs have shape ``(checkpoints, 2 · n_pairs)``.
    """
    step_ctr = np.uint64(k_sub * SLOTS)
    for ch in range(c_lo, c_hi):
        key, gam = keys[ch], gams[ch]
        base = np.empty(steps)
        dev = np.empty(steps)
        var = np.empty(steps)
        draws = np.empty(steps, dtype=np.uint64)
        p_begin = ch * chunk_pairs
        p_end = min(n_pairs, p_begin + chunk_pairs)
        for p in range(p_begin, p_end):
            pc0 = np.uint64((p - p_begin) * k_sub * steps * SLOTS)
            if kind != K_BOOTSTRAP:
                fill_pair(kind, mp, k_sub, steps, key, gam, pc0, base, dev, var, draws)
            for h in range(2):
                if kind == K_BOOTSTRAP:
                    fill_bootstrap(mp, returns, k_sub, steps, key, gam, pc0, h, base, dev, var)
                sg = 1.0 - 2.0 * h
                i = 2 * p + h
                # the bridge uniforms of the step's last sub-step
                ctr = pc0 + np.uint64((k_sub - 1) * SLOTS + SLOT_BRIDGE + 2 * h)
                y = 0.0
                lo = 0.0
                hi = 0.0
                left = every
                j = 0
                for t in range(steps):
                    y1 = y + (base[t] + sg * dev[t])
                    vt = var[t]
                    cut = BRIDGE_CUTOFF * vt
                    q = 2.0 * (y - lo) * (y1 - lo)
                    if q < cut:
                        lo = min(lo, _bridge_min(y, y1, q, vt, uniform_at(key, gam, ctr), lo))
                    q = 2.0 * (hi - y) * (hi - y1)
                    if q < cut:
                        u = uniform_at(key, gam, ctr + np.uint64(1))
                        hi = max(hi, -_bridge_min(-y, -y1, q, vt, u, -hi))
                    lo = min(lo, y1)
                    hi = max(hi, y1)
                    y = y1
                    ctr += step_ctr
                    left -= 1
                    if left == 0:  # a checkpoint (a countdown, not a division per step)
                        out_min[j, i] = lo
                        out_max[j, i] = hi
                        out_last[j, i] = y
                        j += 1
                        left = every


@njit(cache=True, inline="always")
def _bridge_min(y0: float, y1: float, q: float, var: float, u: float, lo: float) -> float:
    r"""The minimum of the bridge from ``y0`` to ``y1`` at uniform ``u`` if it may be below ``lo``.

    With ``q = 2 (y0 − lo)(y1 − lo)`` and :math:`Q = q / \text{var}`, the minimum is below
    ``lo`` exactly when :math:`U < e^{-Q}`; as :math:`e^{Q} > 1 + Q + Q^2/2` for :math:`Q > 0`,
    :math:`U (1 + Q + Q^2/2) \ge 1` rules that out, and ``lo`` is returned without a log or a
    square root (``1 + 1e-9`` keeps the test clear of rounding: where it skips, the minimum is
    above ``lo`` by far more than its rounding error). ``q <= 0`` (an end at or below ``lo``)
    always computes it.
    """
    if q > 0.0:
        x = q / var
        if u * (1.0 + x * (1.0 + 0.5 * x)) >= 1.0 + 1e-9:
            return lo
    dy = y1 - y0
    return 0.5 * (y0 + y1 - math.sqrt(dy * dy - 2.0 * var * math.log(u)))
