r"""Option prices and greeks: Black–Scholes, Black-76 and inverse (coin-settled) options.

With :math:`d_1 = \frac{\ln(S/K) + (r + \sigma^2/2)T}{\sigma\sqrt T}`,
:math:`d_2 = d_1 - \sigma\sqrt T` (Hull, *Options, Futures, and Other Derivatives*, ch. 15):

.. math::

    c = S N(d_1) - K e^{-rT} N(d_2), \qquad p = K e^{-rT} N(-d_2) - S N(-d_1)

Black-76 (Hull ch. 18) prices an option on a forward :math:`F` by replacing :math:`S` with
:math:`F e^{-rT}`. Greeks are per unit of the underlying: vega per 1.00 of volatility, theta
per year, rho per 1.00 of rate. An inverse option (Deribit style) pays the Black–Scholes payoff
in coin: its price is :math:`c / S` coins and its coin delta is :math:`\Delta - c/S`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from levalign.errors import InvalidInput

__all__ = ["Greeks", "greeks", "implied_volatility"]

Kind = Literal["call", "put"]
Model = Literal["black_scholes", "black76", "inverse"]


@dataclass(frozen=True)
class Greeks:
    """Price and sensitivities of one option (units: see the module docstring)."""

    price: float
    delta: float
    gamma: float
    vega: float
    theta: float
    rho: float


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _norm_pdf(x: float) -> float:
    return math.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def _check(  # noqa: PLR0913, PLR0917 - checks the parameters of the published formula
    spot: float, strike: float, t: float, sigma: float, rate: float, kind: str, model: str
) -> None:
    for name, value in (("spot", spot), ("strike", strike), ("t", t), ("sigma", sigma)):
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"{name} must be a positive number, got {value}", field=name, value=value
            )
    if not math.isfinite(rate):
        raise InvalidInput(f"rate must be a finite number, got {rate}", field="rate", value=rate)
    if kind not in ("call", "put"):
        raise InvalidInput(f"kind must be 'call' or 'put', got {kind!r}", field="kind", value=kind)
    if model not in ("black_scholes", "black76", "inverse"):
        raise InvalidInput(
            f"model must be 'black_scholes', 'black76' or 'inverse', got {model!r}",
            field="model",
            value=model,
        )


def greeks(  # noqa: PLR0913, PLR0917 - the parameters of the published formula
    spot: float,
    strike: float,
    t: float,
    sigma: float,
    rate: float = 0.0,
    kind: Kind = "call",
    model: Model = "black_scholes",
) -> Greeks:
    r"""Price and greeks of a European option.

    Parameters
    ----------
    spot
        Underlying price; the forward price for ``black76``.
    strike, t, sigma, rate
        Strike, time to expiry in years, annualized volatility, continuously compounded rate.
    kind
        ``"call"`` or ``"put"``.
    model
        ``"black_scholes"``, ``"black76"`` (``spot`` is the forward) or ``"inverse"``
        (coin-settled: price and greeks in coin).

    Returns
    -------
    Greeks

    Raises
    ------
    InvalidInput
        A non-positive spot, strike, time or volatility; an unknown kind or model.

    Notes
    -----
    .. math::

        \Delta_c = N(d_1),\ \Delta_p = N(d_1) - 1,\quad
        \Gamma = \frac{N'(d_1)}{S\sigma\sqrt T},\quad
        \mathcal V = S N'(d_1)\sqrt T,

        \Theta_c = -\frac{S N'(d_1)\sigma}{2\sqrt T} - rKe^{-rT}N(d_2),\quad
        \rho_c = KTe^{-rT}N(d_2)

    For Black-76 the same with :math:`S \to F e^{-rT}` and derivatives taken with respect to
    :math:`F`; theta then also carries :math:`+ r\,c`.
    """
    _check(spot, strike, t, sigma, rate, kind, model)
    disc = math.exp(-rate * t)
    sq = math.sqrt(t)
    if model == "black76":
        f = spot
        d1 = (math.log(f / strike) + 0.5 * sigma * sigma * t) / (sigma * sq)
        d2 = d1 - sigma * sq
        if kind == "call":
            price = disc * (f * _norm_cdf(d1) - strike * _norm_cdf(d2))
            delta = disc * _norm_cdf(d1)
        else:
            price = disc * (strike * _norm_cdf(-d2) - f * _norm_cdf(-d1))
            delta = -disc * _norm_cdf(-d1)
        gamma = disc * _norm_pdf(d1) / (f * sigma * sq)
        vega = disc * f * _norm_pdf(d1) * sq
        theta = -disc * f * _norm_pdf(d1) * sigma / (2 * sq) + rate * price
        rho = -t * price
        return Greeks(price, delta, gamma, vega, theta, rho)

    d1 = (math.log(spot / strike) + (rate + 0.5 * sigma * sigma) * t) / (sigma * sq)
    d2 = d1 - sigma * sq
    if kind == "call":
        price = spot * _norm_cdf(d1) - strike * disc * _norm_cdf(d2)
        delta = _norm_cdf(d1)
        theta = -spot * _norm_pdf(d1) * sigma / (2 * sq) - rate * strike * disc * _norm_cdf(d2)
        rho = strike * t * disc * _norm_cdf(d2)
    else:
        price = strike * disc * _norm_cdf(-d2) - spot * _norm_cdf(-d1)
        delta = _norm_cdf(d1) - 1.0
        theta = -spot * _norm_pdf(d1) * sigma / (2 * sq) + rate * strike * disc * _norm_cdf(-d2)
        rho = -strike * t * disc * _norm_cdf(-d2)
    gamma = _norm_pdf(d1) / (spot * sigma * sq)
    vega = spot * _norm_pdf(d1) * sq
    if model == "inverse":
        coin_price = price / spot
        coin_delta = delta - coin_price
        coin_gamma = gamma - coin_delta / spot
        return Greeks(coin_price, coin_delta, coin_gamma, vega / spot, theta / spot, rho / spot)
    return Greeks(price, delta, gamma, vega, theta, rho)


def implied_volatility(  # noqa: PLR0913, PLR0917 - the parameters of the published formula
    price: float,
    spot: float,
    strike: float,
    t: float,
    rate: float = 0.0,
    kind: Kind = "call",
    model: Model = "black_scholes",
    *,
    tol: float = 1e-10,
) -> float:
    """Volatility that reproduces ``price`` (safeguarded Newton inside a bisection bracket).

    Raises
    ------
    InvalidInput
        A price outside the no-arbitrage bounds of the model (no volatility reproduces it).
    """
    lo, hi = 1e-6, 10.0
    p_lo = greeks(spot, strike, t, lo, rate, kind, model).price
    p_hi = greeks(spot, strike, t, hi, rate, kind, model).price
    if not (math.isfinite(price) and p_lo - tol <= price <= p_hi + tol):
        raise InvalidInput(
            f"price {price} is outside what volatilities from {lo:g} to {hi:g} give "
            f"({p_lo:.6g} to {p_hi:.6g}): check price, strike and kind",
            field="price",
            value=price,
        )
    sigma = 0.5
    for _ in range(100):
        g = greeks(spot, strike, t, sigma, rate, kind, model)
        diff = g.price - price
        if abs(diff) < tol:
            return sigma
        if diff > 0:
            hi = sigma
        else:
            lo = sigma
        step = sigma - diff / g.vega if g.vega > 1e-12 else math.nan
        sigma = step if lo < step < hi else 0.5 * (lo + hi)
    return sigma
