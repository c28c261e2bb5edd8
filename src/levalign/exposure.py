r"""Exposure: effective leverage and liquidation distance.

Effective leverage is what a position risks per unit of capital, whatever the leverage
*setting*: a lead at "20x" that posts 5% of equity as margin runs 1x.

.. math:: \lambda = \frac{\sum_i |N_i|}{E}, \qquad
          d = \frac{|x - LP|}{x}

with :math:`N_i` the notionals, :math:`E` the equity, :math:`x` the mark and :math:`LP` the
liquidation price. The account-level figures are in :class:`levalign.schemas.AccountReport`.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign.errors import InvalidInput

__all__ = ["effective_leverage", "liquidation_distance"]


def effective_leverage(notionals: ArrayLike, equity: float) -> float:
    r"""Account effective leverage :math:`\sum |N_i| / E`.

    Raises
    ------
    InvalidInput
        If ``equity`` is not a positive finite number or a notional is not finite.
    """
    if not (math.isfinite(equity) and equity > 0):
        raise InvalidInput(
            f"equity must be a positive number, got {equity}", field="equity", value=equity
        )
    n = np.abs(np.asarray(notionals, dtype=np.float64))
    if not np.all(np.isfinite(n)):
        raise InvalidInput("notionals must be finite numbers", field="notionals")
    return float(n.sum() / equity)


def liquidation_distance(
    mark_price: ArrayLike, liquidation_price: ArrayLike
) -> NDArray[np.float64]:
    r"""Distance to liquidation as a fraction of the mark, :math:`|x - LP| / x` (NaN: none).

    Raises
    ------
    InvalidInput
        If a mark price is not positive.
    """
    x = np.asarray(mark_price, dtype=np.float64)
    lp = np.asarray(liquidation_price, dtype=np.float64)
    if np.any(~(x > 0)):
        raise InvalidInput("mark_price must be positive", field="mark_price")
    return np.abs(x - lp) / x
