r"""Closed-form liquidation probability under geometric Brownian motion, and Kelly's leverage.

A long position is liquidated when the price first touches :math:`B < S_0`. With
:math:`b = \ln(B/S_0) < 0`, drift :math:`\mu` (funding enters it), :math:`\nu = \mu - \sigma^2/2`,
the probability of touching within :math:`T` is the first-passage law of Brownian motion with
drift (Harrison, *Brownian Motion and Stochastic Flow Systems*, 1985, §1.8):

.. math::

    P = N\!\left(\frac{b - \nu T}{\sigma\sqrt T}\right)
      + e^{2\nu b/\sigma^2}\, N\!\left(\frac{b + \nu T}{\sigma\sqrt T}\right)

A short is the mirror image: :math:`b \to -b`, :math:`\nu \to -\nu`.
"""

from __future__ import annotations

import math
from typing import Literal

from levalign.errors import InvalidInput

__all__ = ["kelly_fraction", "liquidation_probability"]


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def _log_norm_cdf(x: float) -> float:
    """``ln N(x)``, accurate far in the lower tail where ``N(x)`` underflows."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / math.sqrt(2.0)))
    # asymptotic series (Abramowitz & Stegun 26.2.12)
    x2 = x * x
    return (
        -0.5 * x2
        - math.log(-x)
        - 0.5 * math.log(2.0 * math.pi)
        + math.log1p(-1.0 / x2 + 3.0 / (x2 * x2))
    )


def liquidation_probability(
    spot: float,
    liquidation_price: float,
    sigma: float,
    horizon_years: float,
    mu: float = 0.0,
    side: Literal["long", "short"] = "long",
) -> float:
    r"""Probability that GBM touches the liquidation price within the horizon.

    Parameters
    ----------
    spot, liquidation_price
        Current price and liquidation price (below spot for a long, above for a short).
    sigma, mu
        Annualized volatility and drift of the price (funding paid by longs lowers a long's
        effective drift).
    horizon_years
        Horizon :math:`T`.
    side
        ``"long"`` or ``"short"``.

    Returns
    -------
    float
        :math:`P` of the module docstring, in [0, 1].

    Raises
    ------
    InvalidInput
        Non-positive spot, price, sigma or horizon; a liquidation price on the wrong side of
        spot (it would already be liquidated).
    """
    for name, value in (
        ("spot", spot),
        ("liquidation_price", liquidation_price),
        ("sigma", sigma),
        ("horizon_years", horizon_years),
    ):
        if not (math.isfinite(value) and value > 0):
            raise InvalidInput(
                f"{name} must be a positive number, got {value}", field=name, value=value
            )
    if not math.isfinite(mu):
        raise InvalidInput(f"mu must be a finite number, got {mu}", field="mu", value=mu)
    if side not in ("long", "short"):
        raise InvalidInput(
            f"side must be 'long' or 'short', got {side!r}", field="side", value=side
        )
    wrong = liquidation_price >= spot if side == "long" else liquidation_price <= spot
    if wrong:
        where = "below" if side == "long" else "above"
        raise InvalidInput(
            f"liquidation_price {liquidation_price} must be {where} spot {spot} for a {side}",
            field="liquidation_price",
            value=liquidation_price,
        )
    nu = mu - 0.5 * sigma * sigma
    b = math.log(liquidation_price / spot)
    if side == "short":
        b, nu = -b, -nu
    sq = sigma * math.sqrt(horizon_years)
    # the second term is exp(large) * N(very negative) at low volatility: take it in logs
    log_second = 2.0 * nu * b / (sigma * sigma) + _log_norm_cdf((b + nu * horizon_years) / sq)
    p = _norm_cdf((b - nu * horizon_years) / sq) + math.exp(min(log_second, 0.0))
    return min(max(p, 0.0), 1.0)


def kelly_fraction(mu: float, sigma: float, rate: float = 0.0) -> float:
    r"""Growth-optimal (Kelly) leverage for a log-normal asset, :math:`(\mu - r) / \sigma^2`.

    The unconstrained reference for optimal leverage (Merton 1969; Thorp 2006).

    Raises
    ------
    InvalidInput
        A non-positive ``sigma``.
    """
    if not (math.isfinite(sigma) and sigma > 0):
        raise InvalidInput(
            f"sigma must be a positive number, got {sigma}", field="sigma", value=sigma
        )
    return (mu - rate) / (sigma * sigma)
