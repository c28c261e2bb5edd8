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

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign._extras import require
from levalign.errors import InvalidInput

__all__ = ["kelly_fraction", "liquidation_probability", "touch_probability"]


def touch_probability(
    log_distance: ArrayLike, sigma: float, horizon_years: ArrayLike, nu: float = 0.0
) -> NDArray[np.float64]:
    r"""Probability that Brownian motion with drift :math:`\nu` falls :math:`y` below its start.

    The array core of :func:`liquidation_probability` (no validation): with :math:`b = -y`,

    .. math::

        P = N\!\left(\frac{b - \nu T}{\sigma\sqrt T}\right)
          + e^{2\nu b/\sigma^2}\, N\!\left(\frac{b + \nu T}{\sigma\sqrt T}\right)

    where the second term is taken in logs (:func:`scipy.special.log_ndtr`), since at low
    volatility it is ``exp(large) · N(very negative)``. Arrays broadcast.

    Parameters
    ----------
    log_distance
        :math:`y = -\ln(B/S_0) > 0` for a long (the barrier's log distance below spot); for a
        short pass :math:`\ln(B/S_0)` and :math:`-\nu`.
    sigma
        Annualized volatility, positive.
    horizon_years
        :math:`T`, positive.
    nu
        Drift of the log price, :math:`\mu - \sigma^2/2`, in the direction of the barrier's
        opposite (see above for shorts).
    """
    require("risk", "scipy")
    from scipy import special  # imported on use, not at start-up

    b = -np.asarray(log_distance, dtype=np.float64)
    t = np.asarray(horizon_years, dtype=np.float64)
    sq = sigma * np.sqrt(t)
    log_second = 2.0 * nu * b / (sigma * sigma) + special.log_ndtr((b + nu * t) / sq)
    p = special.ndtr((b - nu * t) / sq) + np.exp(np.minimum(log_second, 0.0))
    return np.asarray(np.clip(p, 0.0, 1.0), dtype=np.float64)


def liquidation_probability(  # noqa: PLR0913, PLR0917 - the parameters of the published formula
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
    y = -math.log(liquidation_price / spot)
    if side == "short":
        y, nu = -y, -nu
    return float(touch_probability(y, sigma, horizon_years, nu))


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
