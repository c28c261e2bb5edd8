r"""Monte Carlo liquidation risk of a position or an account (docs/design.md, "Risk").

:func:`simulate` runs price paths under one of five models and tests every step against the
exchange margin model; :func:`sample_extremes` returns per-path running extremes for building
a distance → P(liquidation) curve once and looking it up many times.

Models
------
All but GARCH-t take *annualized* parameters (a year is 8,760 hours) and move the log price
:math:`x = \ln(S/S_0)` by, per step of :math:`\Delta` years,

- :class:`GBM`: :math:`(\mu - \sigma^2/2)\Delta + \sigma\sqrt\Delta\, z`;
- :class:`StudentT`: the same with :math:`z` replaced by a Student-t variate scaled to unit
  variance, :math:`t_\nu \sqrt{(\nu - 2)/\nu}`;
- :class:`MertonJump`: :math:`(\mu - \sigma^2/2 - \lambda\kappa)\Delta + \sigma\sqrt\Delta\, z
  + \sum_{k \le N} J_k`, :math:`N \sim \text{Poisson}(\lambda\Delta)`,
  :math:`J \sim N(m, s^2)`, :math:`\kappa = e^{m + s^2/2} - 1` so that
  :math:`E[S_T] = S_0 e^{\mu T}` (Merton, "Option pricing when underlying stock returns are
  discontinuous", J. Financ. Econ. 3, 1976);
- :class:`GarchT`: GARCH(1,1) with standardized Student-t innovations, stepped bar by bar,
  *per-bar fractional* units (see the class);
- :class:`Bootstrap`: stationary bootstrap of real per-bar log returns, stepped bar by bar.

Bar-stepped models (GARCH-t, bootstrap) require each simulation step to be a whole number of
bars: ``horizon_days · 24 / steps / bar_hours`` must be an integer.

Positions and accounts
----------------------
*One position* (``side`` and ``liquidation_price``): an isolated position whose whole margin
is lost at liquidation. Its effective leverage is :math:`L = S_0 / |S_0 - LP|`: the position
holds :math:`L` units of notional per unit of margin, so a move of :math:`1/L` against it
leaves nothing, which is where ``liquidation_price`` says it is liquidated (the margin model
is one tier with zero maintenance margin). Results are fractions of the margin.

*An account* (a :class:`levalign.schemas.Account`, the ``levalign margin`` input): markets and
tiers are resolved with :func:`levalign.markets.load_markets`, and margin with the exchange's
model from :mod:`levalign.margin`. Every isolated position is liquidated on its own (losing its
collateral and PnL), the cross positions together as a whole when cross equity falls below
their total maintenance margin (losing the cross margin balance). P&L is in the settle
currency; equity is the margin balance (wallet balance plus unrealized PnL). All positions of
the account are driven by **one common price factor** :math:`F` (each symbol's price is its
mark times :math:`F`'s gross return since the start): symbols are assumed perfectly
correlated, which makes each group's margin a piecewise-linear function of :math:`F` whose
liquidation levels are solved exactly. Each position is held to its venue's liquidation
schedule (:meth:`levalign.margin.TieredMarginModel.position_tiers`: the taker fee to close
included on OKX, Bitget and Gate); on Bybit and KuCoin the maintenance margin is taken at the
entry value, as in :class:`levalign.margin.BybitMarginModel`.

Funding: a rate per 8 hours, constant or one per step, paid on the notional held into each
step: :math:`W \mathrel{-}= \text{rate} \cdot \tfrac{\Delta_h}{8} \cdot s \cdot N` (a long pays a
positive rate, a short receives it). It erodes the margin balance behind the position, so
liquidation levels move step by step.

Monitoring
----------
Liquidation is tested at every step against the margin model and, between steps, through the
Brownian-bridge crossing probability :math:`\exp(-2(y_i - b)(y_{i+1} - b)/(\sigma^2\Delta))`
with :math:`b` the log liquidation level at the current balance, which makes a coarse grid
unbiased for GBM (Glasserman, *Monte Carlo Methods in Financial Engineering*, 2004, §6.4). For
the other models the bridge uses the step's diffusion variance (GARCH: the sum of its bars'
conditional variances; bootstrap: the sample variance of a bar): continuous monitoring of a
Gaussian path between the simulated points, an approximation. Merton jumps are placed at the
end of their step. P(liquidation) is the conditional expectation given the grid path
(:func:`levalign.risk._mc_kernels.run_static`); the P&L outcome of each path uses a sampled
liquidation time with the same law.

Standard errors are taken over antithetic pairs: each pair's mean is one independent draw.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import MISSING, dataclass, field, fields
from typing import Any, ClassVar, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign._progress import progress_bar
from levalign.errors import InvalidInput
from levalign.margin import BybitMarginModel, margin_model, margin_report
from levalign.markets import Markets, load_markets
from levalign.risk import _mc_kernels as mck
from levalign.risk.first_passage import liquidation_probability
from levalign.risk.volatility import HOURS_PER_YEAR
from levalign.schemas import MAX_PATH_STEPS, MAX_PATHS, Account, parse

__all__ = [
    "GBM",
    "Bootstrap",
    "Extremes",
    "GarchT",
    "MertonJump",
    "Model",
    "PathOutcomes",
    "SimulationResult",
    "StudentT",
    "chunk_streams",
    "model_from_spec",
    "sample_extremes",
    "simulate",
    "simulate_paths",
]

FloatArray = NDArray[np.float64]

#: antithetic pairs per chunk; each chunk has its own random stream (results depend on it,
#: never on the number of threads)
CHUNK_PAIRS = 1024
#: floor of terminal equity / starting equity inside the log of expected log growth: a path
#: that loses everything counts as ln(1e-6) = -13.8
WEALTH_FLOOR = 1e-6
#: quantile levels reported
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
#: batches of whole antithetic pairs for the standard error of VaR
VAR_BATCHES = 20
_FUNDING_HOURS = 8.0
_DAYS_PER_YEAR = HOURS_PER_YEAR / 24.0


# ================================================================= models


def _number(name: str, value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        raise InvalidInput(
            f"model.{name} must be a number, got {value!r}", field=f"model.{name}", value=None
        )
    return float(value)


def _finite(name: str, value: Any) -> float:
    x = _number(name, value)
    if not math.isfinite(x):
        raise InvalidInput(
            f"model.{name} must be a finite number, got {x}", field=f"model.{name}", value=x
        )
    return x


def _positive(name: str, value: Any) -> float:
    x = _number(name, value)
    if not (math.isfinite(x) and x > 0):
        raise InvalidInput(
            f"model.{name} must be a positive number, got {x}", field=f"model.{name}", value=x
        )
    return x


def _non_negative(name: str, value: Any) -> float:
    x = _number(name, value)
    if not (math.isfinite(x) and x >= 0):
        raise InvalidInput(
            f"model.{name} must be a non-negative number, got {x}", field=f"model.{name}", value=x
        )
    return x


def _dof(value: Any) -> float:
    nu = _number("nu", value)
    if not (math.isfinite(nu) and nu > 2):
        raise InvalidInput(
            f"model.nu must be above 2 (a Student-t with nu <= 2 has no variance), got {nu}",
            field="model.nu",
            value=nu,
        )
    return nu


@dataclass(frozen=True)
class GBM:
    """Geometric Brownian motion: annualized volatility ``sigma`` and drift ``mu``.

    Raises
    ------
    InvalidInput
        ``sigma`` not positive, ``mu`` not finite (field ``model.<param>``).
    """

    sigma: float
    mu: float = 0.0

    type: ClassVar[str] = "gbm"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive("sigma", self.sigma))
        object.__setattr__(self, "mu", _finite("mu", self.mu))

    def to_dict(self) -> dict[str, Any]:
        """The spec :func:`model_from_spec` reads back."""
        return {"type": self.type, "sigma": self.sigma, "mu": self.mu}


@dataclass(frozen=True)
class StudentT:
    """I.i.d. Student-t log returns scaled to unit variance: ``sigma`` is the true volatility.

    Raises
    ------
    InvalidInput
        ``sigma`` not positive, ``nu <= 2``, ``mu`` not finite.
    """

    sigma: float
    nu: float
    mu: float = 0.0

    type: ClassVar[str] = "student_t"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive("sigma", self.sigma))
        object.__setattr__(self, "nu", _dof(self.nu))
        object.__setattr__(self, "mu", _finite("mu", self.mu))

    def to_dict(self) -> dict[str, Any]:
        """The spec :func:`model_from_spec` reads back."""
        return {"type": self.type, "sigma": self.sigma, "nu": self.nu, "mu": self.mu}


@dataclass(frozen=True)
class GarchT:
    r"""GARCH(1,1) with standardized Student-t innovations, in per-bar *fractional* units.

    .. math::

        r_j = \mu + \sigma_j \varepsilon_j, \qquad
        \sigma_{j+1}^2 = \omega + \alpha\,\sigma_j^2 \varepsilon_j^2 + \beta\,\sigma_j^2,
        \qquad \varepsilon_j \sim t_\nu \sqrt{(\nu - 2)/\nu}

    (Bollerslev, "Generalized autoregressive conditional heteroskedasticity", J. Econometrics
    31, 1986; Student-t errors: Bollerslev, Rev. Econ. Stat. 69, 1987). :math:`r_j` is the log
    return of bar :math:`j` as a *fraction* (0.01 = 1%) and ``bar_hours`` the bar length; the
    model is stepped bar by bar. ``arch`` fits are usually on returns in percent: then divide
    its ``mu`` by 100 and ``omega`` by 10,000 (``alpha``, ``beta``, ``nu`` are unit-free).
    ``sigma0`` is the conditional sd of the first bar, by default the unconditional
    :math:`\sqrt{\omega / (1 - \alpha - \beta)}`.

    Raises
    ------
    InvalidInput
        ``omega``, ``bar_hours`` or ``sigma0`` not positive, ``alpha`` or ``beta`` negative,
        ``alpha + beta >= 1`` (not covariance-stationary), ``nu <= 2``, ``mu`` not finite.
    """

    omega: float
    alpha: float
    beta: float
    nu: float
    mu: float = 0.0
    bar_hours: float = 1.0
    sigma0: float | None = None

    type: ClassVar[str] = "garch_t"

    def __post_init__(self) -> None:
        object.__setattr__(self, "omega", _positive("omega", self.omega))
        object.__setattr__(self, "alpha", _non_negative("alpha", self.alpha))
        object.__setattr__(self, "beta", _non_negative("beta", self.beta))
        if self.alpha + self.beta >= 1.0:
            raise InvalidInput(
                f"model.alpha + model.beta must be below 1 for a stationary GARCH, got "
                f"{self.alpha} + {self.beta} = {self.alpha + self.beta}",
                field="model.beta",
                value=self.beta,
            )
        object.__setattr__(self, "nu", _dof(self.nu))
        object.__setattr__(self, "mu", _finite("mu", self.mu))
        object.__setattr__(self, "bar_hours", _positive("bar_hours", self.bar_hours))
        if self.sigma0 is not None:
            object.__setattr__(self, "sigma0", _positive("sigma0", self.sigma0))

    @property
    def unconditional_sd(self) -> float:
        r"""Per-bar unconditional sd, :math:`\sqrt{\omega / (1 - \alpha - \beta)}`."""
        return math.sqrt(self.omega / (1.0 - self.alpha - self.beta))

    def to_dict(self) -> dict[str, Any]:
        """The spec :func:`model_from_spec` reads back."""
        return {
            "type": self.type,
            "omega": self.omega,
            "alpha": self.alpha,
            "beta": self.beta,
            "nu": self.nu,
            "mu": self.mu,
            "bar_hours": self.bar_hours,
            "sigma0": self.sigma0,
        }


@dataclass(frozen=True)
class MertonJump:
    """GBM plus compound-Poisson normal log jumps (see the module docstring).

    ``jump_intensity`` is the expected number of jumps per year, ``jump_mean`` and
    ``jump_std`` the mean and sd of one log jump.

    Raises
    ------
    InvalidInput
        ``sigma`` not positive, a negative intensity or jump sd, a non-finite mean or drift.
    """

    sigma: float
    jump_intensity: float
    jump_mean: float
    jump_std: float
    mu: float = 0.0

    type: ClassVar[str] = "merton_jump"

    def __post_init__(self) -> None:
        object.__setattr__(self, "sigma", _positive("sigma", self.sigma))
        object.__setattr__(
            self, "jump_intensity", _non_negative("jump_intensity", self.jump_intensity)
        )
        object.__setattr__(self, "jump_mean", _finite("jump_mean", self.jump_mean))
        object.__setattr__(self, "jump_std", _non_negative("jump_std", self.jump_std))
        object.__setattr__(self, "mu", _finite("mu", self.mu))

    @property
    def kappa(self) -> float:
        r""":math:`E[e^J] - 1 = e^{m + s^2/2} - 1`, the compensator of the jumps."""
        return math.expm1(self.jump_mean + 0.5 * self.jump_std**2)

    def to_dict(self) -> dict[str, Any]:
        """The spec :func:`model_from_spec` reads back."""
        return {
            "type": self.type,
            "sigma": self.sigma,
            "mu": self.mu,
            "jump_intensity": self.jump_intensity,
            "jump_mean": self.jump_mean,
            "jump_std": self.jump_std,
        }


@dataclass(frozen=True, eq=False)
class Bootstrap:
    r"""Stationary bootstrap of real per-bar log returns (Politis & Romano, JASA 89, 1994).

    Blocks of consecutive returns of geometric length (mean ``block_length`` bars) are glued
    together, which keeps volatility clustering and fat tails up to about that length.
    ``mu=None`` keeps the sample's own drift; a number recenters the log returns to
    :math:`(\mu - \hat\sigma^2/2)\Delta` per bar (:math:`\mu` annualized, as for GBM).

    Raises
    ------
    InvalidInput
        Fewer than 10 returns, a non-finite return, ``bar_hours`` not positive,
        ``block_length`` below 1 or above the number of returns.
    """

    returns: FloatArray
    bar_hours: float
    block_length: float
    mu: float | None = None

    type: ClassVar[str] = "bootstrap"

    def __post_init__(self) -> None:
        try:
            r = np.array(self.returns, dtype=np.float64)
        except (TypeError, ValueError):
            raise InvalidInput(
                "model.returns must be a list of numbers (per-bar log returns)",
                field="model.returns",
            ) from None
        if r.ndim != 1 or r.size < 10:
            raise InvalidInput(
                f"model.returns needs at least 10 per-bar log returns, got {r.size}",
                field="model.returns",
                value=int(r.size),
            )
        bad = ~np.isfinite(r)
        if bad.any():
            i = int(np.argmax(bad))
            raise InvalidInput(
                f"model.returns[{i}] is {r[i]}: returns must be finite",
                field=f"model.returns[{i}]",
                value=float(r[i]),
            )
        r.setflags(write=False)
        object.__setattr__(self, "returns", r)
        object.__setattr__(self, "bar_hours", _positive("bar_hours", self.bar_hours))
        length = _number("block_length", self.block_length)
        if not (math.isfinite(length) and 1.0 <= length <= r.size):
            raise InvalidInput(
                f"model.block_length must be between 1 and the number of returns ({r.size}), "
                f"got {length}",
                field="model.block_length",
                value=length,
            )
        object.__setattr__(self, "block_length", length)
        if self.mu is not None:
            object.__setattr__(self, "mu", _finite("mu", self.mu))

    def to_dict(self) -> dict[str, Any]:
        """The spec :func:`model_from_spec` reads back."""
        return {
            "type": self.type,
            "returns": self.returns.tolist(),
            "bar_hours": self.bar_hours,
            "block_length": self.block_length,
            "mu": self.mu,
        }


Model: TypeAlias = GBM | StudentT | GarchT | MertonJump | Bootstrap
_MODELS: dict[str, type[Model]] = {
    m.type: m for m in (GBM, StudentT, GarchT, MertonJump, Bootstrap)
}
_MODELS["jump"] = MertonJump  # the and README's short name for Merton's model


def model_from_spec(spec: Mapping[str, Any]) -> Model:
    """Build a model from ``{"type": "gbm", "sigma": 0.8, "mu": 0.0}`` and the like.

    Types: ``gbm``, ``student_t``, ``garch_t``, ``merton_jump`` (or ``jump``), ``bootstrap``;
    parameters are the fields of the class of that type.

    Raises
    ------
    InvalidInput
        Not a mapping (field ``model``), an unknown ``type`` (``model.type``, listing the valid
        ones), a missing, unknown or bad parameter (``model.<param>``).
    """
    if not isinstance(spec, Mapping):
        raise InvalidInput(
            f"model must be an object such as {{'type': 'gbm', 'sigma': 0.8}}, got {spec!r}",
            field="model",
        )
    kind = spec.get("type")
    if not isinstance(kind, str) or kind not in _MODELS:
        raise InvalidInput(
            f"model.type {kind!r} is not a model; valid types: {', '.join(_MODELS)}",
            field="model.type",
            value=kind if isinstance(kind, str) else None,
        )
    cls = _MODELS[kind]
    params = {f.name: f for f in fields(cls)}
    for key in spec:
        if key != "type" and key not in params:
            raise InvalidInput(
                f"model.{key} is not a parameter of a {kind} model; "
                f"parameters: {', '.join(params)}",
                field=f"model.{key}",
            )
    kwargs: dict[str, Any] = {}
    for name, f in params.items():
        if name in spec:
            kwargs[name] = spec[name]
        elif f.default is MISSING and f.default_factory is MISSING:
            raise InvalidInput(
                f"model.{name} is required for a {kind} model", field=f"model.{name}"
            )
    return cls(**kwargs)


# ================================================================= kernel inputs


@dataclass(frozen=True)
class _ModelArrays:
    kind: int
    mp: FloatArray
    returns: FloatArray
    k_sub: int


def _bars_per_step(bar_hours: float, step_hours: float) -> int:
    k = step_hours / bar_hours
    n = round(k)
    if n < 1 or abs(k - n) > 1e-9 * max(1.0, k):
        raise InvalidInput(
            f"a step of {step_hours:g} h is not a whole number of the model's {bar_hours:g} h "
            "bars; choose steps so that horizon_days * 24 / steps is a multiple of bar_hours",
            field="steps",
            value=step_hours,
        )
    return n


def _model_arrays(model: Model, step_hours: float) -> _ModelArrays:
    mp = np.zeros(mck.P_SIZE)
    dt = step_hours / HOURS_PER_YEAR
    empty = np.zeros(1)
    if isinstance(model, GBM | StudentT | MertonJump):
        mp[mck.P_SD] = model.sigma * math.sqrt(dt)
        mp[mck.P_DRIFT] = (model.mu - 0.5 * model.sigma**2) * dt
    if isinstance(model, GBM):
        return _ModelArrays(mck.K_GBM, mp, empty, 1)
    if isinstance(model, StudentT):
        mp[mck.P_NU] = model.nu
        mp[mck.P_TSCALE] = math.sqrt((model.nu - 2.0) / model.nu)
        return _ModelArrays(mck.K_STUDENT, mp, empty, 1)
    if isinstance(model, MertonJump):
        lam = model.jump_intensity * dt
        mp[mck.P_DRIFT] -= model.jump_intensity * model.kappa * dt
        mp[mck.P_LAM] = lam
        mp[mck.P_P0] = math.exp(-lam)
        mp[mck.P_JMEAN] = model.jump_mean
        mp[mck.P_JSTD] = model.jump_std
        return _ModelArrays(mck.K_MERTON, mp, empty, 1)
    k = _bars_per_step(model.bar_hours, step_hours)
    if isinstance(model, GarchT):
        mp[mck.P_DRIFT] = model.mu
        mp[mck.P_OMEGA] = model.omega
        mp[mck.P_ALPHA] = model.alpha
        mp[mck.P_BETA] = model.beta
        mp[mck.P_NU] = model.nu
        mp[mck.P_TSCALE] = math.sqrt((model.nu - 2.0) / model.nu)
        sd0 = model.sigma0 if model.sigma0 is not None else model.unconditional_sd
        mp[mck.P_VAR0] = sd0 * sd0
        return _ModelArrays(mck.K_GARCH, mp, empty, k)
    r = model.returns
    bar_var = float(np.var(r, ddof=1))
    if model.mu is not None:
        bar_dt = model.bar_hours / HOURS_PER_YEAR
        mp[mck.P_DRIFT] = model.mu * bar_dt - 0.5 * bar_var - float(np.mean(r))
    mp[mck.P_PNEW] = 1.0 / model.block_length
    mp[mck.P_BVAR] = bar_var
    return _ModelArrays(mck.K_BOOTSTRAP, mp, np.array(r, dtype=np.float64), k)


@dataclass(frozen=True)
class _Leg:
    c: float
    r: float
    n: float
    floor: FloatArray
    cap: FloatArray
    mmr: FloatArray
    cum: FloatArray


@dataclass(frozen=True)
class _Book:
    """An account as groups of legs in the margin variable (``_mc_kernels`` docstring)."""

    eps: float
    w0: list[float]
    groups: list[list[_Leg]]
    free: float
    e0: float

    def arrays(self) -> dict[str, Any]:
        legs = [leg for g in self.groups for leg in g]
        t_cap = np.concatenate([leg.cap for leg in legs])
        t_mmr = np.concatenate([leg.mmr for leg in legs])
        t_cum = np.concatenate([leg.cum for leg in legs])
        leg_arr = np.zeros((len(legs), mck.L_SIZE))
        grp = np.zeros((len(self.groups), mck.G_SIZE))
        bps: list[float] = []
        t0 = i = 0
        for g, group in enumerate(self.groups):
            grp[g, mck.G_LEG0] = i
            grp[g, mck.G_BP0] = len(bps)
            points: set[float] = set()
            for leg in group:
                n_t = leg.cap.shape[0]
                leg_arr[i] = (leg.c, leg.r, leg.n, t0, t0 + n_t)
                points.update(float(f) / leg.n for f in leg.floor[1:] if leg.n > 0)
                t0 += n_t
                i += 1
            bps.extend(sorted(points))
            grp[g, mck.G_LEG1] = i
            grp[g, mck.G_BP1] = len(bps)
            grp[g, mck.G_W0] = self.w0[g]
            grp[g, mck.G_CR] = sum(leg.c * leg.r for leg in group)
            grp[g, mck.G_C] = sum(leg.c for leg in group)
            grp[g, mck.G_FUND] = self.eps * grp[g, mck.G_C]
        bp = np.asarray(bps, dtype=np.float64) if bps else np.zeros(0)
        out = {
            "groups": grp,
            "legs": leg_arr,
            "bp": bp,
            "t_cap": t_cap,
            "t_mmr": t_mmr,
            "t_cum": t_cum,
        }
        for g in range(len(self.groups)):
            self._slopes_and_levels(g, out)
        return out

    def _slopes_and_levels(self, g: int, a: dict[str, Any]) -> None:
        grp = a["groups"]
        b0, b1 = int(grp[g, mck.G_BP0]), int(grp[g, mck.G_BP1])
        pts = [0.0, *a["bp"][b0:b1].tolist()]
        pts.append(2.0 * pts[-1] + 1.0)
        ex = [
            mck.group_excess(g, 0.0, x, grp, a["legs"], a["t_cap"], a["t_mmr"], a["t_cum"])
            for x in pts
        ]
        slopes = [
            (e1 - e0) / (x1 - x0) for x0, x1, e0, e1 in zip(pts, pts[1:], ex, ex[1:], strict=False)
        ]
        grp[g, mck.G_SPLUS] = max(0.0, *slopes)
        grp[g, mck.G_SMINUS] = min(0.0, *slopes)
        lo, hi = mck.group_roots(
            g, self.w0[g], 1.0, grp, a["legs"], a["bp"], a["t_cap"], a["t_mmr"], a["t_cum"]
        )
        if lo >= 1.0 or hi <= 1.0:
            raise InvalidInput(
                "the account is already liquidatable at its marks (margin balance below "
                "maintenance margin): nothing to simulate",
                field="account",
            )
        grp[g, mck.G_LO] = math.log(lo) if lo > 0.0 else -math.inf
        grp[g, mck.G_HI] = math.log(hi) if math.isfinite(hi) else math.inf


def _one_tier(mm: float = 0.0) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray]:
    """A one-tier table with constant maintenance margin ``mm`` (mmr 0, cum −mm)."""
    return np.zeros(1), np.full(1, np.inf), np.zeros(1), np.full(1, -mm)


def _position_book(side: str, spot: float, liquidation_price: float) -> _Book:
    lev = spot / abs(spot - liquidation_price)
    s = 1.0 if side == "long" else -1.0
    floor, cap, mmr, cum = _one_tier()
    leg = _Leg(c=s * lev, r=1.0, n=lev, floor=floor, cap=cap, mmr=mmr, cum=cum)
    return _Book(eps=1.0, w0=[1.0], groups=[[leg]], free=0.0, e0=1.0)


def _account_book(account: Account | Mapping[str, Any]) -> _Book:
    acct = account if isinstance(account, Account) else parse(Account, account, root="account")
    if not acct.positions:
        raise InvalidInput(
            "the account has no positions: nothing can be liquidated", field="account.positions"
        )
    markets: Markets = load_markets(acct.exchange, markets=acct.markets, tiers=acct.tiers)
    report = margin_report(acct, markets)
    specs = [markets[p.symbol] for p in acct.positions]
    if len({m.linear for m in specs}) > 1:
        raise InvalidInput(
            "the account mixes linear and inverse contracts: simulate them as separate accounts",
            field="account.positions",
        )
    linear = specs[0].linear
    model = margin_model(markets.family)
    entry_mm = isinstance(model, BybitMarginModel)
    cross: list[_Leg] = []
    isolated: list[tuple[float, _Leg]] = []
    for pos, spec, row in zip(acct.positions, specs, report.positions, strict=True):
        qty = pos.contracts * spec.contract_size
        m, ep, s = pos.mark_price, pos.entry_price, pos.sign
        if linear:
            n, c, r = qty * m, s * qty * m, ep / m
        else:
            n, c, r = qty / m, -s * qty / m, m / ep
        held = 0.0
        if pos.margin_mode == "isolated":
            held = model.position_margin(pos, row.unrealized_pnl)
        if entry_mm:
            # what the margin holds beyond the formula's balance (Bybit's fee to close) is lost
            # at liquidation like maintenance margin
            reserve = held - model.liquidation_balance(spec, pos, held) if held else 0.0
            mm_entry = model.maintenance_margin(spec, pos.contracts, ep)
            floor, cap, mmr, cum = _one_tier(mm_entry + reserve)
        else:
            t = model.position_tiers(spec, pos.contracts)
            floor, cap, mmr, cum = t.floor, t.cap, t.mmr, t.cum
        leg = _Leg(c=c, r=r, n=n, floor=floor, cap=cap, mmr=mmr, cum=cum)
        if pos.margin_mode == "isolated":
            isolated.append((held, leg))
        else:
            cross.append(leg)
    cross_wallet = acct.wallet_balance - sum(w for w, _ in isolated)
    groups = [[leg] for _, leg in isolated]
    w0 = [w for w, _ in isolated]
    free = cross_wallet
    if cross:
        groups.append(cross)
        w0.append(cross_wallet)
        free = 0.0
    return _Book(
        eps=1.0 if linear else -1.0,
        w0=w0,
        groups=groups,
        free=free,
        e0=report.equity,
    )


def chunk_streams(seed: int, n_chunks: int) -> tuple[NDArray[np.uint64], NDArray[np.uint64]]:
    """Key and increment of each chunk's stream, from ``SeedSequence(seed).spawn(n_chunks)``.

    The increment is made odd, and given enough bit transitions as SplitMix64 does (Steele et
    al. 2014, §3: ``γ ^= 0xAAAA...`` when ``γ ^ (γ >> 1)`` has fewer than 24 one bits).
    """
    keys = np.empty(n_chunks, dtype=np.uint64)
    gams = np.empty(n_chunks, dtype=np.uint64)
    for i, child in enumerate(np.random.SeedSequence(seed).spawn(n_chunks)):
        k, g = (int(x) for x in child.generate_state(2, np.uint64))
        g |= 1
        if bin(g ^ (g >> 1)).count("1") < 24:
            g ^= 0xAAAAAAAAAAAAAAAA
        keys[i], gams[i] = k, g
    return keys, gams


# ================================================================= results


def pair_se(x: FloatArray) -> float:
    """Standard error of the mean of ``x`` over antithetic pairs (paths ``2p``, ``2p + 1``)."""
    pairs = x.reshape(-1, 2).mean(axis=1)
    if pairs.size < 2:
        return math.nan
    return float(pairs.std(ddof=1) / math.sqrt(pairs.size))


def _quantiles(x: FloatArray) -> dict[float, float]:
    if x.size == 0:
        return {}
    return dict(zip(QUANTILES, np.quantile(x, QUANTILES).tolist(), strict=True))


def _json_float(x: float | None) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass(frozen=True)
class SimulationResult:
    r"""What :func:`simulate` measured; every estimate with its standard error.

    Attributes
    ----------
    p_liquidation, p_liquidation_se
        Probability that the position (any group of the account) is liquidated within the
        horizon: the mean over paths of :math:`1 - S`, :math:`S` the conditional survival of
        the path (module docstring).
    time_to_liquidation_quantiles
        Hours from the start to the end of the step in which a path was liquidated (resolution
        one step), over liquidated paths; empty if none.
    terminal_pnl_quantiles
        Of :math:`E_T / E_0 - 1`.
    var, es
        Value at risk and expected shortfall of the loss :math:`L = 1 - E_T/E_0` (a positive
        loss, as a fraction of starting equity) at ``var_level`` :math:`\alpha`:

        .. math:: \mathrm{VaR}_\alpha = q_\alpha(L), \qquad
                  \mathrm{ES}_\alpha = \mathrm{VaR}_\alpha
                  + \frac{E[(L - \mathrm{VaR}_\alpha)^+]}{1 - \alpha}

        (Rockafellar & Uryasev, J. Risk 2(3), 2000; Acerbi & Tasche, J. Bank. Finance 26,
        2002).
    var_se
        Batch method: the sd of the VaR of ``VAR_BATCHES`` batches of whole antithetic pairs
        over :math:`\sqrt{B}` (Glasserman 2004, §9.1).
    es_se
        From the influence function of ES,
        :math:`\mathrm{VaR} + (L - \mathrm{VaR})^+ / (1 - \alpha) - \mathrm{ES}`, averaged per
        pair (its i.i.d. form is the variance of Manistre & Hancock, NAAJ 9(2), 2005).
    max_drawdown_quantiles
        Of the path's largest fall of equity from its running peak,
        :math:`\max_t 1 - E_t / \max_{s \le t} E_s`, on the step grid.
    expected_log_growth, expected_log_growth_se
        Mean of :math:`\ln \max(E_T / E_0, \text{floor})`, floor ``wealth_floor``.
    analytic_p_liquidation
        The closed form (:func:`levalign.risk.first_passage.liquidation_probability`) for a GBM
        single position without funding; None otherwise.
    liquidated_fraction
        Fraction of paths with a sampled liquidation (a noisier estimate of
        ``p_liquidation``).
    """

    p_liquidation: float
    p_liquidation_se: float
    time_to_liquidation_quantiles: dict[float, float]
    terminal_pnl_quantiles: dict[float, float]
    var: float
    var_se: float
    es: float
    es_se: float
    var_level: float
    max_drawdown_quantiles: dict[float, float]
    expected_log_growth: float
    expected_log_growth_se: float
    analytic_p_liquidation: float | None
    liquidated_fraction: float
    paths: int
    steps: int
    seed: int
    horizon_days: float
    wealth_floor: float
    model: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready dict: quantile keys as strings, NaN as None."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if isinstance(value, dict) and f.name.endswith("quantiles"):
                value = {f"{q:g}": _json_float(v) for q, v in value.items()}
            elif isinstance(value, float):
                value = _json_float(value)
            out[f.name] = value
        return out


def _var_es(loss: FloatArray, level: float) -> tuple[float, float, float, float]:
    var = float(np.quantile(loss, level))
    tail = np.maximum(loss - var, 0.0) / (1.0 - level)
    es = var + float(tail.mean())
    es_se = pair_se(var + tail - es)
    n_pairs = loss.size // 2
    if n_pairs >= 2 * VAR_BATCHES:
        batches = np.array_split(loss.reshape(-1, 2), VAR_BATCHES)
        qs = np.array([np.quantile(b.ravel(), level) for b in batches])
        var_se = float(qs.std(ddof=1) / math.sqrt(VAR_BATCHES))
    else:
        var_se = math.nan
    return var, var_se, es, es_se


# ================================================================= validation


def _check_common(
    model: Any, horizon_days: float, paths: int, steps: int
) -> tuple[float, int, int]:
    if not isinstance(model, GBM | StudentT | GarchT | MertonJump | Bootstrap):
        raise InvalidInput(
            f"model must be one of GBM, StudentT, GarchT, MertonJump, Bootstrap (or build it "
            f"with model_from_spec), got {type(model).__name__}",
            field="model",
        )
    if isinstance(horizon_days, bool) or not isinstance(horizon_days, int | float):
        raise InvalidInput("horizon_days must be a number", field="horizon_days")
    if not (math.isfinite(horizon_days) and horizon_days > 0):
        raise InvalidInput(
            f"horizon_days must be a positive number of days, got {horizon_days}",
            field="horizon_days",
            value=horizon_days,
        )
    for name, value in (("paths", paths), ("steps", steps)):
        if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < 1:
            raise InvalidInput(
                f"{name} must be a whole number of at least 1, got {value!r}",
                field=name,
                value=value if isinstance(value, int) else None,
            )
    if paths > MAX_PATHS:
        raise InvalidInput(
            f"paths must be at most {MAX_PATHS:,}, got {paths:,}: more adds memory, not "
            "precision that matters",
            field="paths",
            value=int(paths),
        )
    if paths * steps > MAX_PATH_STEPS:
        raise InvalidInput(
            f"paths x steps = {int(paths) * int(steps):,} is above the limit of "
            f"{MAX_PATH_STEPS:,}: use fewer paths or fewer steps",
            field="steps",
            value=int(steps),
        )
    return float(horizon_days), int(paths), int(steps)


def _check_spot(spot: Any) -> float:
    if isinstance(spot, bool) or not isinstance(spot, int | float):
        raise InvalidInput(f"spot must be a number, got {spot!r}", field="spot")
    if not (math.isfinite(spot) and spot > 0):
        raise InvalidInput(f"spot must be a positive price, got {spot}", field="spot", value=spot)
    return float(spot)


def _funding_per_step(funding_rate: float | ArrayLike, steps: int, step_hours: float) -> FloatArray:
    rate = np.asarray(funding_rate, dtype=np.float64)
    if rate.ndim == 0:
        rate = np.full(steps, float(rate))
    if rate.ndim != 1 or rate.size != steps:
        raise InvalidInput(
            f"funding_rate must be one rate per 8 h or a series of one per step ({steps}), "
            f"got shape {rate.shape}",
            field="funding_rate",
        )
    if not np.isfinite(rate).all():
        raise InvalidInput("funding_rate must be finite", field="funding_rate")
    return np.ascontiguousarray(rate * (step_hours / _FUNDING_HOURS))


# ================================================================= running the kernels


def _run_chunks(
    kernel: Callable[[int, int], None], n_chunks: int, progress: bool, what: str
) -> None:
    """Run ``kernel(lo, hi)`` over all chunks on ``numba.get_num_threads()`` threads.

    The chunk kernels release the GIL and each chunk has its own random stream, so the
    result does not depend on how chunks are split between threads.
    """
    import numba

    workers = max(1, min(numba.get_num_threads(), n_chunks))
    size = max(1, min(8, n_chunks // (4 * workers)))
    tasks = [(lo, min(n_chunks, lo + size)) for lo in range(0, n_chunks, size)]
    with progress_bar(progress, n_chunks, what) as update:
        if workers == 1:
            for lo, hi in tasks:
                kernel(lo, hi)
                update(hi)
            return
        with ThreadPoolExecutor(max_workers=workers) as pool:
            futures = {pool.submit(kernel, lo, hi): hi - lo for lo, hi in tasks}
            completed = 0
            for done in as_completed(futures):
                done.result()
                completed += futures[done]
                update(completed)


@dataclass(frozen=True, eq=False)
class PathOutcomes:
    """Per-path output of the simulation kernel (paths ``2p``, ``2p + 1`` are a pair).

    Attributes
    ----------
    survival
        Conditional probability that the path survives the horizon given its grid points
        (``1 − survival`` averages to P(liquidation)).
    liquidation_step
        Step in which a sampled liquidation happened (``-1``: none).
    equity
        Terminal equity over starting equity, :math:`E_T / E_0`.
    max_drawdown
        Largest fall of equity from its running peak on the step grid.
    step_hours
        Length of a step.
    """

    survival: FloatArray
    liquidation_step: NDArray[np.int64]
    equity: FloatArray
    max_drawdown: FloatArray
    step_hours: float


@dataclass(frozen=True)
class _Run:
    book: _Book
    arrays: dict[str, Any]
    ma: _ModelArrays
    rate: FloatArray
    steps: int
    step_hours: float
    horizon_days: float
    analytic_side: Literal["long", "short"] | None


def _prepare(  # noqa: PLR0913, PLR0917 - the private preparation of simulate(), passed its options
    model: Model,
    spot: float | None,
    side: str | None,
    liquidation_price: float | None,
    account: Account | Mapping[str, Any] | None,
    horizon_days: float,
    paths: int,
    steps: int,
    funding_rate: float | Sequence[float] | FloatArray,
) -> _Run:
    horizon_days, paths, steps = _check_common(model, horizon_days, paths, steps)
    if (liquidation_price is None) == (account is None):
        raise InvalidInput(
            "give either liquidation_price (with side) for one position, or account, not "
            + ("both" if account is not None else "neither"),
            field="liquidation_price" if account is None else "account",
        )
    analytic_side: Literal["long", "short"] | None = None
    if account is None:
        spot = _check_spot(spot)
        if side not in ("long", "short"):
            raise InvalidInput(
                f"side must be 'long' or 'short', got {side!r}", field="side", value=side
            )
        lp = liquidation_price
        if isinstance(lp, bool) or not isinstance(lp, int | float) or not math.isfinite(lp):
            raise InvalidInput(
                f"liquidation_price must be a number, got {lp!r}", field="liquidation_price"
            )
        if lp <= 0 or (lp >= spot if side == "long" else lp <= spot):
            where = "below" if side == "long" else "above"
            raise InvalidInput(
                f"liquidation_price {lp} must be {where} spot {spot} for a {side} (and positive)",
                field="liquidation_price",
                value=lp,
            )
        book = _position_book(side, spot, float(lp))
        analytic_side = "long" if side == "long" else "short"
    else:
        if side is not None:
            raise InvalidInput(
                "side applies to a single position: an account's positions carry their own",
                field="side",
                value=side,
            )
        book = _account_book(account)
    step_hours = horizon_days * 24.0 / steps
    ma = _model_arrays(model, step_hours)
    rate = _funding_per_step(funding_rate, steps, step_hours)
    return _Run(book, book.arrays(), ma, rate, steps, step_hours, horizon_days, analytic_side)


def _run_paths(run: _Run, paths: int, seed: int, progress: bool) -> PathOutcomes:
    n_pairs = (paths + 1) // 2
    n_paths = 2 * n_pairs
    n_chunks = math.ceil(n_pairs / CHUNK_PAIRS)
    keys, gams = chunk_streams(seed, n_chunks)
    surv = np.empty(n_paths)
    liq = np.empty(n_paths, dtype=np.int64)
    eq = np.empty(n_paths)
    dd = np.empty(n_paths)
    a, ma = run.arrays, run.ma
    has_funding = bool(np.any(run.rate != 0.0))

    def kernel(lo: int, hi: int) -> None:
        mck.simulate_chunks(
            ma.kind, ma.mp, ma.returns, ma.k_sub, run.steps, n_pairs, CHUNK_PAIRS,
            keys, gams, lo, hi, run.book.eps, has_funding, run.rate,
            a["groups"], a["legs"], a["bp"], a["t_cap"], a["t_mmr"], a["t_cum"],
            run.book.free, run.book.e0, surv, liq, eq, dd,
        )  # fmt: skip

    _run_chunks(kernel, n_chunks, progress, "simulating")
    return PathOutcomes(surv, liq, eq, dd, run.step_hours)


def simulate_paths(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    model: Model,
    spot: float | None,
    *,
    side: Literal["long", "short"] | None = None,
    liquidation_price: float | None = None,
    account: Account | Mapping[str, Any] | None = None,
    horizon_days: float,
    paths: int,
    steps: int,
    seed: int = 0,
    funding_rate: float | Sequence[float] | FloatArray = 0.0,
    progress: bool = False,
) -> PathOutcomes:
    """The per-path outcomes behind :func:`simulate` (same parameters, same paths).

    Raises
    ------
    InvalidInput
        As :func:`simulate`.
    """
    run = _prepare(
        model, spot, side, liquidation_price, account, horizon_days, paths, steps, funding_rate
    )
    return _run_paths(run, int(paths), seed, progress)


def simulate(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    model: Model,
    spot: float | None,
    *,
    side: Literal["long", "short"] | None = None,
    liquidation_price: float | None = None,
    account: Account | Mapping[str, Any] | None = None,
    horizon_days: float,
    paths: int,
    steps: int,
    seed: int = 0,
    funding_rate: float | Sequence[float] | FloatArray = 0.0,
    var_level: float = 0.99,
    progress: bool = False,
    wealth_floor: float = WEALTH_FLOOR,
) -> SimulationResult:
    r"""Simulate a position or an account and measure its liquidation risk.

    Parameters
    ----------
    model
        :class:`GBM`, :class:`StudentT`, :class:`GarchT`, :class:`MertonJump` or
        :class:`Bootstrap` (:func:`model_from_spec` builds one from JSON).
    spot
        Current price of the position's symbol (with ``account`` each position starts at its
        ``mark_price`` and ``spot`` is not used; it may be None).
    side, liquidation_price
        One isolated position (module docstring): leverage
        :math:`S_0 / |S_0 - LP|`, results as fractions of its margin.
    account
        An account (``levalign margin`` input) instead of one position.
    horizon_days, paths, steps
        Horizon, number of paths (rounded up to an even number: antithetic pairs; at most
        :data:`~levalign.schemas.MAX_PATHS`, and paths x steps at most
        :data:`~levalign.schemas.MAX_PATH_STEPS`), steps per path. The CLI asks for at least
        :data:`~levalign.schemas.MIN_PATHS`; fewer are allowed here for exact checks.
    seed
        Seed of ``np.random.SeedSequence``; the same seed gives identical results on any
        number of threads.
    funding_rate
        Rate per 8 hours, constant or one per step (module docstring).
    var_level
        Level :math:`\alpha` of VaR and ES.
    progress
        Show a progress bar over chunks of paths (only when stderr is a terminal).
    wealth_floor
        Floor of :math:`E_T / E_0` in the expected log growth.

    Returns
    -------
    SimulationResult

    Raises
    ------
    InvalidInput
        A bad model parameter (``model.<param>``), spot, horizon, paths or steps; both or
        neither of ``liquidation_price`` and ``account``; an unknown or missing side; a
        liquidation price on the wrong side of spot; a step that is not a whole number of bars
        of a bar-stepped model; a funding series of the wrong length; a ``var_level`` outside
        (0, 1); an account that is malformed or already liquidatable.
    """
    return simulate_outcomes(
        model, spot, side=side, liquidation_price=liquidation_price, account=account,
        horizon_days=horizon_days, paths=paths, steps=steps, seed=seed,
        funding_rate=funding_rate, var_level=var_level, progress=progress,
        wealth_floor=wealth_floor,
    )[0]  # fmt: skip


def simulate_outcomes(  # noqa: PLR0913 - keyword-only options of a public function, each documented
    model: Model,
    spot: float | None,
    *,
    side: Literal["long", "short"] | None,
    liquidation_price: float | None,
    account: Account | Mapping[str, Any] | None,
    horizon_days: float,
    paths: int,
    steps: int,
    seed: int,
    funding_rate: float | Sequence[float] | FloatArray,
    var_level: float,
    progress: bool,
    wealth_floor: float,
) -> tuple[SimulationResult, PathOutcomes]:
    """:func:`simulate`, also returning the per-path outcomes it summarized (for plots)."""
    if isinstance(var_level, bool) or not (
        isinstance(var_level, float | int) and 0.0 < var_level < 1.0
    ):
        raise InvalidInput(
            f"var_level must be between 0 and 1 (0.99 for 99%), got {var_level!r}",
            field="var_level",
        )
    if isinstance(wealth_floor, bool) or not (
        isinstance(wealth_floor, float | int) and 0.0 < wealth_floor < 1.0
    ):
        raise InvalidInput(
            f"wealth_floor must be between 0 and 1, got {wealth_floor!r}", field="wealth_floor"
        )
    run = _prepare(
        model, spot, side, liquidation_price, account, horizon_days, paths, steps, funding_rate
    )
    out = _run_paths(run, int(paths), seed, progress)
    p_path = 1.0 - out.survival
    loss = 1.0 - out.equity
    var, var_se, es, es_se = _var_es(loss, float(var_level))
    growth = np.log(np.maximum(out.equity, wealth_floor))
    hit = out.liquidation_step >= 0
    analytic = None
    has_funding = bool(np.any(run.rate != 0.0))
    if isinstance(model, GBM) and not has_funding:
        if run.analytic_side is not None:
            analytic = liquidation_probability(
                float(spot),  # type: ignore[arg-type]
                float(liquidation_price),  # type: ignore[arg-type]
                model.sigma,
                run.horizon_days / _DAYS_PER_YEAR,
                mu=model.mu,
                side=run.analytic_side,
            )
        else:
            analytic = _analytic_account(run.book, run.arrays, model, run.horizon_days)
    result = SimulationResult(
        p_liquidation=float(p_path.mean()),
        p_liquidation_se=pair_se(p_path),
        time_to_liquidation_quantiles=_quantiles(
            (out.liquidation_step[hit] + 1).astype(np.float64) * run.step_hours
        ),
        terminal_pnl_quantiles=_quantiles(out.equity - 1.0),
        var=var,
        var_se=var_se,
        es=es,
        es_se=es_se,
        var_level=float(var_level),
        max_drawdown_quantiles=_quantiles(out.max_drawdown),
        expected_log_growth=float(growth.mean()),
        expected_log_growth_se=pair_se(growth),
        analytic_p_liquidation=analytic,
        liquidated_fraction=float(hit.mean()),
        paths=int(out.equity.size),
        steps=run.steps,
        seed=seed,
        horizon_days=run.horizon_days,
        wealth_floor=float(wealth_floor),
        model=_model_summary(model),
    )
    return result, out


def _analytic_account(
    book: _Book, arrays: dict[str, Any], model: GBM, horizon_days: float
) -> float | None:
    """Closed form for an account holding one position (one group of one leg), else None."""
    if len(book.groups) != 1 or len(book.groups[0]) != 1:
        return None
    lo, hi = arrays["groups"][0, mck.G_LO], arrays["groups"][0, mck.G_HI]
    if math.isfinite(lo) and math.isfinite(hi):
        return None
    if not (math.isfinite(lo) or math.isfinite(hi)):
        return 0.0
    b = lo if math.isfinite(lo) else hi
    level = math.exp(book.eps * b)  # the factor F at liquidation
    return liquidation_probability(
        1.0,
        level,
        model.sigma,
        horizon_days / _DAYS_PER_YEAR,
        mu=model.mu,
        side="long" if level < 1.0 else "short",
    )


def _model_summary(model: Model) -> dict[str, Any]:
    spec = model.to_dict()
    if isinstance(model, Bootstrap):
        spec["returns"] = f"{model.returns.size} returns"
    return spec


# ================================================================= extremes


@dataclass(frozen=True, eq=False)
class Extremes:
    r"""Per-path running extremes of the log price at evenly spaced horizons.

    Arrays have shape ``(checkpoints, paths)``; row ``j`` is the horizon
    ``horizons_hours[j]``. Paths ``2p`` and ``2p + 1`` are an antithetic pair.

    Attributes
    ----------
    running_min, running_max
        :math:`\min_{s \le h} \ln(S_s / S_0)` and the maximum, continuous-path corrected.
    terminal
        :math:`\ln(S_h / S_0)`.
    """

    running_min: FloatArray
    running_max: FloatArray
    terminal: FloatArray
    horizons_hours: FloatArray
    spot: float
    paths: int
    steps: int
    seed: int
    model: dict[str, Any]
    _sorted: dict[tuple[int, str], tuple[FloatArray, FloatArray]] = field(
        default_factory=dict, repr=False
    )

    def _tables(self, checkpoint: int, side: str) -> tuple[FloatArray, FloatArray]:
        key = (checkpoint, side)
        if key not in self._sorted:
            if side == "long":
                x = self.running_min[checkpoint]
                both = x.reshape(-1, 2).max(axis=1)  # a pair touches twice iff its higher min does
            else:
                x = -self.running_max[checkpoint]
                both = x.reshape(-1, 2).max(axis=1)
            self._sorted[key] = (np.sort(x), np.sort(both))
        return self._sorted[key]

    def touch_probability(
        self,
        distance: ArrayLike,
        side: Literal["long", "short"] = "long",
        checkpoint: int = -1,
    ) -> tuple[FloatArray, FloatArray]:
        r"""P(touch a barrier ``distance`` away within horizon ``checkpoint``), with its SE.

        A long's barrier is :math:`S_0 (1 - d)` (touched when the running minimum is at or
        below :math:`\ln(1 - d)`), a short's :math:`S_0 (1 + d)`. With :math:`q` the fraction
        of pairs where both paths touch, the pair mean has variance
        :math:`(p + q)/2 - p^2`, so :math:`\mathrm{se} = \sqrt{((p + q)/2 - p^2) / n_{pairs}}`.
        Sorting the extremes once per horizon and side makes each lookup a binary search.

        Raises
        ------
        InvalidInput
            A distance outside (0, 1) for a long or not positive for a short; an unknown side
            or checkpoint.
        """
        if side not in ("long", "short"):
            raise InvalidInput(f"side must be 'long' or 'short', got {side!r}", field="side")
        n_cp = self.horizons_hours.shape[0]
        if not -n_cp <= checkpoint < n_cp:
            raise InvalidInput(
                f"checkpoint must be in [-{n_cp}, {n_cp}), got {checkpoint}", field="checkpoint"
            )
        d = np.asarray(distance, dtype=np.float64)
        ok = (d > 0) & ((d < 1) if side == "long" else np.isfinite(d))
        if not np.all(ok):
            raise InvalidInput(
                "distance must be a fraction of price in (0, 1) for a long, positive for a short",
                field="distance",
            )
        thr = np.log1p(-d) if side == "long" else -np.log1p(d)
        x, both = self._tables(checkpoint % n_cp, side)
        p = np.searchsorted(x, thr, side="right") / x.size
        q = np.searchsorted(both, thr, side="right") / both.size
        se = np.sqrt(np.maximum((p + q) / 2.0 - p * p, 0.0) / both.size)
        return np.asarray(p, dtype=np.float64), np.asarray(se, dtype=np.float64)


def sample_extremes(  # noqa: PLR0913, PLR0917 - the simulation parameters of a public function, each documented
    model: Model,
    spot: float,
    horizon_days: float,
    paths: int,
    steps: int,
    seed: int = 0,
    checkpoints: int = 1,
    *,
    progress: bool = False,
) -> Extremes:
    r"""Running minimum, maximum and terminal log price of each path at ``checkpoints`` horizons.

    For building a distance → P(liquidation) curve once per lead event and looking it up for
    many leverages: P(a long with liquidation distance :math:`d` is liquidated within horizon
    :math:`h`) is the fraction of paths whose running minimum at :math:`h` is at most
    :math:`\ln(1 - d)` (:meth:`Extremes.touch_probability`). The continuous path between steps
    is accounted for by sampling each step's bridge extreme exactly (see
    :func:`levalign.risk._mc_kernels.extremes_chunks`), so for GBM a coarse grid is unbiased.
    Checkpoint ``j`` is step ``(j + 1) · steps / checkpoints``; memory is
    ``24 · checkpoints · paths`` bytes.

    Raises
    ------
    InvalidInput
        Bad model, spot, horizon, paths or steps; ``checkpoints`` not a divisor of ``steps``;
        a step that is not a whole number of bars of a bar-stepped model.
    """
    horizon_days, paths, steps = _check_common(model, horizon_days, paths, steps)
    spot = _check_spot(spot)
    if (
        isinstance(checkpoints, bool)
        or not isinstance(checkpoints, int)
        or checkpoints < 1
        or steps % checkpoints
    ):
        raise InvalidInput(
            f"checkpoints must be a whole number that divides steps ({steps}), got {checkpoints!r}",
            field="checkpoints",
        )
    step_hours = horizon_days * 24.0 / steps
    ma = _model_arrays(model, step_hours)
    n_pairs = (paths + 1) // 2
    n_chunks = math.ceil(n_pairs / CHUNK_PAIRS)
    keys, gams = chunk_streams(seed, n_chunks)
    shape = (checkpoints, 2 * n_pairs)
    lo, hi, last = np.empty(shape), np.empty(shape), np.empty(shape)
    every = steps // checkpoints

    def kernel(c_lo: int, c_hi: int) -> None:
        mck.extremes_chunks(
            ma.kind, ma.mp, ma.returns, ma.k_sub, steps, n_pairs, CHUNK_PAIRS,
            keys, gams, c_lo, c_hi, every, lo, hi, last,
        )  # fmt: skip

    _run_chunks(kernel, n_chunks, progress, "sampling extremes")
    return Extremes(
        running_min=lo,
        running_max=hi,
        terminal=last,
        horizons_hours=step_hours * every * np.arange(1, checkpoints + 1, dtype=np.float64),
        spot=spot,
        paths=2 * n_pairs,
        steps=steps,
        seed=seed,
        model=_model_summary(model),
    )
