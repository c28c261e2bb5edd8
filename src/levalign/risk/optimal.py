r"""Optimal leverage: the most growth for a follower's limits on P(liquidation) and ES.

For an account of equity :math:`E_0` holding a position of effective leverage :math:`L`
(notional :math:`L E_0`, side :math:`s`) in a linear market, a price path with gross return
:math:`e^{r_T}` over the horizon ends with

.. math::

    \frac{E_T}{E_0} =
    \begin{cases}
      1 + s L\,(e^{r_T} - 1) - s L f & \text{if the path never reaches the liquidation price}\\
      w_{\min} & \text{if it does}
    \end{cases}

where :math:`f` is the funding rate over the horizon (paid by longs when positive) and
:math:`w_{\min}` the wealth floor of :mod:`levalign.risk.monte_carlo` (a liquidated cross
account keeps nothing). The liquidation price comes from the exchange margin model at that
notional (tiers re-evaluated), with the whole equity as margin, less the funding the horizon
costs. Over simulated paths (running extremes and terminal returns from
:func:`levalign.risk.monte_carlo.sample_extremes`):

.. math::

    g(L) = \mathbb{E}\,\ln\frac{E_T}{E_0}, \qquad
    P(L) = \Pr(\text{liquidated}), \qquad
    \mathrm{ES}_\beta(L) = \mathbb{E}\!\left[1 - \tfrac{E_T}{E_0} \,\middle|\,
        \text{worst } 1-\beta\right],

and the optimal leverage solves

.. math:: \max_L\; g(L) \quad\text{s.t.}\quad P(L) \le \alpha,\; \mathrm{ES}_\beta(L) \le c,
          \; L \le L_{\max},

on a grid of leverages (every grid point is evaluated on the same paths, so the curve is
smooth in :math:`L`). The Kelly fraction :math:`(\mu - r)/\sigma^2` (Merton 1969; Thorp 2006)
is reported as the unconstrained reference for log-normal prices. With no expected return the
growth-optimal leverage is zero: a follower without an edge should not lever up, and
``max_leverage`` (the largest leverage within the limits) is then the figure to read.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from numba import njit, prange
from numpy.typing import NDArray

from levalign.errors import ConfigurationError, InvalidInput
from levalign.markets import MarketSpec
from levalign.risk.first_passage import kelly_fraction
from levalign.schemas import MIN_PATHS

__all__ = [
    "Alignment",
    "LeverageCurve",
    "evaluate_leverages",
    "optimal_leverage",
]

FloatArray = NDArray[np.float64]


@njit(cache=True, parallel=True)
def evaluate_leverages(  # noqa: PLR0913, PLR0915, PLR0917 - a numba kernel: one array per argument, one pass over the paths
    leverage: FloatArray,
    log_barrier: FloatArray,
    funding: FloatArray,
    side: float,
    log_min: FloatArray,
    log_max: FloatArray,
    gross_return: FloatArray,
    worst_first: NDArray[np.int64],
    tail: int,
    wealth_floor: float,
) -> tuple[FloatArray, FloatArray, FloatArray, FloatArray, FloatArray, FloatArray]:
    r"""Growth, P(liquidation) and their pair variances, VaR and ES per leverage on shared paths.

    ``log_barrier[j]`` is :math:`\ln(B_j/S_0)` of leverage ``j``'s liquidation price (``-inf``
    for a long that cannot be liquidated); ``funding[j]`` the fraction of equity funding costs
    over the horizon; ``gross_return`` is each path's :math:`e^{r_T} - 1`. ``worst_first``
    orders the paths from the worst terminal return for the side; ``tail`` is the number of
    paths in the ES tail. Paths ``2p`` and ``2p + 1`` are an antithetic pair, so variances are
    over pair means. Returns per leverage: mean log growth and the variance of its pair means,
    liquidated fraction and the variance of its pair means, VaR and ES (fractions of equity).
    """
    n_lev = leverage.shape[0]
    n = gross_return.shape[0]
    growth = np.empty(n_lev)
    growth_var = np.empty(n_lev)
    p_liq = np.empty(n_lev)
    p_var = np.empty(n_lev)
    n_pairs = n // 2
    var = np.empty(n_lev)
    es = np.empty(n_lev)
    floor_loss = 1.0 - wealth_floor
    log_floor = math.log(wealth_floor)
    for j in prange(n_lev):
        lev = leverage[j]
        b = log_barrier[j]
        total = 0.0
        total_sq = 0.0
        liquidated = 0
        both = 0
        for pair in range(n_pairs):
            pair_g = 0.0
            pair_hits = 0
            for i in range(2 * pair, 2 * pair + 2):
                hit = log_min[i] <= b if side > 0.0 else log_max[i] >= b
                if hit:
                    g = log_floor
                    pair_hits += 1
                else:
                    w = 1.0 + side * lev * gross_return[i] - funding[j]
                    g = math.log(w) if w > wealth_floor else log_floor
                pair_g += 0.5 * g
            total += pair_g
            total_sq += pair_g * pair_g
            liquidated += pair_hits
            both += pair_hits == 2
        mean = total / n_pairs
        growth[j] = mean
        growth_var[j] = max(total_sq / n_pairs - mean * mean, 0.0)
        p = liquidated / (2 * n_pairs)
        p_liq[j] = p
        # pair mean h in {0, 1/2, 1}: E[h^2] = (p + q)/2 with q the share of pairs hit twice
        p_var[j] = max((p + both / n_pairs) / 2.0 - p * p, 0.0)
        # the ES tail: every liquidated path loses the most, then the worst survivors in order
        taken = min(liquidated, tail)
        tail_loss = taken * floor_loss
        last = floor_loss if taken > 0 else 0.0
        k = 0
        while taken < tail and k < n:
            i = worst_first[k]
            k += 1
            hit = log_min[i] <= b if side > 0.0 else log_max[i] >= b
            if hit:
                continue
            w = 1.0 + side * lev * gross_return[i] - funding[j]
            last = min(1.0 - w, floor_loss)
            tail_loss += last
            taken += 1
        var[j] = last
        es[j] = tail_loss / tail
    return growth, growth_var, p_liq, p_var, var, es


@dataclass(frozen=True, eq=False)
class LeverageCurve:
    """Every evaluated leverage with its risk and growth (arrays of one length)."""

    leverage: FloatArray
    liquidation_price: FloatArray
    liquidation_distance: FloatArray
    p_liquidation: FloatArray
    p_liquidation_se: FloatArray
    expected_log_growth: FloatArray
    expected_log_growth_se: FloatArray
    var: FloatArray
    es: FloatArray
    feasible: NDArray[np.bool_]

    def to_dict(self) -> dict[str, list[float | bool | None]]:
        """Columns as JSON-ready lists (NaN and infinities as None)."""
        out: dict[str, list[float | bool | None]] = {}
        for name in self.__dataclass_fields__:
            values = getattr(self, name)
            if values.dtype == np.bool_:
                out[name] = [bool(v) for v in values]
            else:
                out[name] = [float(v) if math.isfinite(v) else None for v in values]
        return out


@dataclass(frozen=True, eq=False)
class Alignment:
    """The optimal leverage for one follower, and what it costs in risk.

    ``leverage`` maximizes expected log growth within the limits; ``max_leverage`` is the
    largest leverage within them. ``amount`` is in contracts, whole amount steps toward zero.
    ``binding`` names what set ``leverage``: ``growth`` (the growth optimum lies inside the
    limits), ``max_liq_probability``, ``max_es``, ``max_leverage`` or ``tiers``.
    """

    symbol: str
    side: str
    spot: float
    equity: float
    horizon_days: float
    leverage: float
    notional: float
    amount: float
    liquidation_price: float
    liquidation_distance: float
    p_liquidation: float
    p_liquidation_se: float
    expected_log_growth: float
    expected_log_growth_se: float
    var: float
    es: float
    es_level: float
    max_leverage: float
    kelly: float | None
    binding: str
    paths: int
    model: dict[str, Any]
    curve: LeverageCurve = field(repr=False)

    def to_dict(self, *, include_curve: bool = True) -> dict[str, Any]:
        """JSON-ready dict (NaN and infinities as None)."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            if name == "curve":
                continue
            value = getattr(self, name)
            if isinstance(value, float) and not math.isfinite(value):
                value = None
            out[name] = value
        if include_curve:
            out["curve"] = self.curve.to_dict()
        return out


def leverage_grid(upper: float, points: int) -> FloatArray:
    """0, then geometric from 0.05x (resolution where followers live) up to ``upper``."""
    low = min(0.05, upper / 2.0)
    return np.concatenate(([0.0], np.geomspace(low, upper, points - 1)))


def optimal_leverage(  # noqa: PLR0912, PLR0913, PLR0915 - keyword-only options, each validated, then the search, in order
    model: Any,
    spot: float,
    market: MarketSpec,
    equity: float,
    *,
    side: Literal["long", "short"] = "long",
    horizon_days: float = 1.0,
    max_liq_probability: float = 0.01,
    max_es: float | None = None,
    es_level: float = 0.99,
    max_leverage: float | None = None,
    funding_rate: float = 0.0,
    paths: int = 100_000,
    steps: int = 96,
    seed: int = 0,
    grid_points: int = 256,
    progress: bool = False,
) -> Alignment:
    r"""The leverage maximizing expected log growth within P(liquidation) and ES limits.

    Parameters
    ----------
    model
        A price model of :mod:`levalign.risk.monte_carlo` (``GBM``, ``StudentT``, ``GarchT``,
        ``MertonJump``, ``Bootstrap``) or its spec dict.
    spot
        Current price.
    market
        The follower's market (:func:`levalign.load_markets`); its tier table prices the
        liquidation at every leverage.
    equity
        The follower's equity behind the position (cross margin: all of it).
    side
        Direction of the position.
    horizon_days
        Horizon of the probability, ES and growth.
    max_liq_probability
        :math:`\alpha`, in (0, 1].
    max_es, es_level
        :math:`c` (fraction of equity; None: no ES limit) and :math:`\beta`.
    max_leverage
        The follower's own cap; the tier table caps leverage anyway.
    funding_rate
        Funding rate per 8 hours (positive: longs pay shorts).
    paths, steps, seed
        Monte Carlo size and seed (reproducible); ``paths`` from
        :data:`~levalign.schemas.MIN_PATHS` to :data:`~levalign.schemas.MAX_PATHS`.
    grid_points
        Leverages evaluated, 0 included.
    progress
        Show a progress bar while simulating (only on a terminal).

    Returns
    -------
    Alignment

    Raises
    ------
    InvalidInput
        A non-positive spot, equity or horizon; limits out of range; a bad model spec; fewer
        than ``MIN_PATHS`` or more than ``MAX_PATHS`` paths, or more than ``MAX_PATH_STEPS``
        paths x steps.
    ConfigurationError
        An inverse market (align prices linear markets only).
    """
    from levalign.risk import monte_carlo as mc

    if not market.linear:
        raise ConfigurationError(
            f"{market.symbol} is inverse: optimal leverage supports linear markets",
            field="symbol",
            value=market.symbol,
        )
    for name, value in (("spot", spot), ("equity", equity), ("horizon_days", horizon_days)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"{name} must be a positive number, got {value}", field=name, value=value
            )
    if not (0.0 < max_liq_probability <= 1.0):
        raise InvalidInput(
            f"max_liq_probability must be in (0, 1], got {max_liq_probability}",
            field="max_liq_probability",
            value=max_liq_probability,
        )
    if max_es is not None and not (0.0 < max_es <= 1.0):
        raise InvalidInput(
            f"max_es must be in (0, 1] (a fraction of equity), got {max_es}",
            field="max_es",
            value=max_es,
        )
    if not (0.5 <= es_level < 1.0):
        raise InvalidInput(
            f"es_level must be in [0.5, 1), got {es_level}", field="es_level", value=es_level
        )
    if max_leverage is not None and not (max_leverage > 0):
        raise InvalidInput(
            f"max_leverage must be positive, got {max_leverage}",
            field="max_leverage",
            value=max_leverage,
        )
    if side not in ("long", "short"):
        raise InvalidInput(f"side must be 'long' or 'short', got {side!r}", field="side")
    if not math.isfinite(funding_rate):
        raise InvalidInput("funding_rate must be finite", field="funding_rate")
    if grid_points < 3:
        raise InvalidInput("grid_points must be at least 3", field="grid_points")
    price_model = mc.model_from_spec(model) if isinstance(model, dict) else model
    if isinstance(paths, int) and paths < MIN_PATHS:
        raise InvalidInput(
            f"paths must be at least {MIN_PATHS:,} for a leverage whose probability of "
            f"liquidation means something, got {paths:,}",
            field="paths",
            value=paths,
        )

    s = 1.0 if side == "long" else -1.0
    tiers = market.tiers
    tier_cap = float(tiers.max_leverage[0])
    upper = min(tier_cap, max_leverage) if max_leverage is not None else tier_cap
    lev = leverage_grid(upper, grid_points)
    notional = lev * equity
    # funding over the horizon as a fraction of equity; a cost also eats the margin
    funding = s * lev * funding_rate * horizon_days * 24.0 / 8.0
    qty = notional / spot / market.contract_size
    from levalign.margin import liquidation_prices

    liq = liquidation_prices(
        market,
        np.full(lev.shape, s),
        qty,
        np.full(lev.shape, spot),
        equity * (1.0 - np.maximum(funding, 0.0)),
    )
    liq = np.where(lev > 0, liq, np.nan)
    with np.errstate(divide="ignore", invalid="ignore"):
        log_barrier = np.where(np.isnan(liq), -np.inf * s, np.log(np.maximum(liq, 0.0) / spot))
    distance = np.abs(liq - spot) / spot
    # initial margin at the tier of the notional must fit in the equity; notional within tiers
    tier_ok = np.array(
        [n <= tiers.max_notional and n / tiers.max_leverage_at(n) <= equity for n in notional]
    )

    ext = mc.sample_extremes(
        price_model, spot, horizon_days, paths, steps, seed, 1, progress=progress
    )
    log_min = np.ascontiguousarray(ext.running_min[-1])
    log_max = np.ascontiguousarray(ext.running_max[-1])
    log_terminal = np.ascontiguousarray(ext.terminal[-1])
    n = log_terminal.shape[0]
    n_pairs = n // 2
    tail = max(1, math.ceil((1.0 - es_level) * n))
    worst_first = np.argsort(s * log_terminal, kind="stable").astype(np.int64)
    growth, growth_var, p_liq, p_var, var, es = evaluate_leverages(
        lev,
        log_barrier,
        funding,
        s,
        log_min,
        log_max,
        np.expm1(log_terminal),
        worst_first,
        tail,
        mc.WEALTH_FLOOR,
    )
    p_se = np.sqrt(p_var / n_pairs)
    growth_se = np.sqrt(growth_var / n_pairs)
    within_p = p_liq <= max_liq_probability
    within_es = es <= max_es if max_es is not None else np.ones_like(within_p)
    feasible = within_p & within_es & tier_ok
    curve = LeverageCurve(
        leverage=lev,
        liquidation_price=liq,
        liquidation_distance=distance,
        p_liquidation=p_liq,
        p_liquidation_se=p_se,
        expected_log_growth=growth,
        expected_log_growth_se=growth_se,
        var=var,
        es=es,
        feasible=feasible,
    )
    # the limits are monotone in L: the admissible set is the prefix before the first failure
    first_bad = int(np.argmin(feasible)) if not feasible.all() else len(lev)
    admissible = np.arange(len(lev)) < first_bad
    best = int(np.argmax(np.where(admissible, growth, -np.inf)))
    top = first_bad - 1
    binding = "growth"
    if best == top and top < len(lev) - 1:
        failed = first_bad
        if not tier_ok[failed]:
            binding = "tiers"
        elif not within_p[failed]:
            binding = "max_liq_probability"
        else:
            binding = "max_es"
    elif best == top == len(lev) - 1:
        binding = "max_leverage" if max_leverage is not None and upper < tier_cap else "tiers"
    amount = _whole_steps(qty[best], market)
    sigma = getattr(price_model, "sigma", None)
    mu = getattr(price_model, "mu", None)
    kelly = (
        kelly_fraction(s * float(mu), float(sigma))
        if sigma is not None and mu is not None
        else None
    )
    return Alignment(
        symbol=market.symbol,
        side=side,
        spot=spot,
        equity=equity,
        horizon_days=horizon_days,
        leverage=float(lev[best]),
        notional=float(notional[best]),
        amount=amount,
        liquidation_price=float(liq[best]),
        liquidation_distance=float(distance[best]),
        p_liquidation=float(p_liq[best]),
        p_liquidation_se=float(p_se[best]),
        expected_log_growth=float(growth[best]),
        expected_log_growth_se=float(growth_se[best]),
        var=float(var[best]),
        es=float(es[best]),
        es_level=es_level,
        max_leverage=float(lev[max(top, 0)]),
        kelly=kelly,
        binding=binding,
        paths=n,
        model=ext.model,
        curve=curve,
    )


def _whole_steps(contracts: float, market: MarketSpec) -> float:
    step = market.amount_step
    if not step:
        return float(contracts)
    return round(math.floor(contracts / step + 1e-9) * step, market.amount_decimals)
