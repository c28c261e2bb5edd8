"""The liquidation curve lookup the kernels run (numba): smallest safe distance for a limit.

The curve itself (:class:`levalign.risk.curve.LiquidationCurve`) is built by the risk layer;
the kernels receive its arrays and look up, per follower, the smallest tabulated liquidation
distance whose probability of being touched within the follower's horizon is at most its
``max_liq_probability``.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit
from numpy.typing import NDArray

__all__ = ["LONG", "SHORT", "required_distance"]

FloatArray = NDArray[np.float64]

#: ``side`` index of the curve's table
LONG, SHORT = 0, 1


@njit(cache=True)
def required_distance(
    table: FloatArray,
    log_distance: FloatArray,
    horizon_hours: FloatArray,
    side: int,
    alpha: float,
    horizon: float,
) -> float:
    """Smallest tabulated liquidation distance (fraction of price) whose P is at most ``alpha``.

    ``table[side, j, k]`` is P(touch within ``horizon_hours[j]`` at ``log_distance[k]``).
    Returns NaN for an unusable request (``horizon`` not positive or beyond the grid, ``alpha``
    NaN); 0 when ``alpha >= 1``; the largest distance meaning "fully collateralized" for a long
    (1.0) when no tabulated distance is safe enough.
    """
    if not (horizon > 0.0) or math.isnan(alpha):
        return math.nan
    if alpha >= 1.0:
        return 0.0
    n_h = horizon_hours.shape[0]
    # first grid horizon at or above the request (a tie within 1e-12 is a hit)
    lo, hi = 0, n_h
    while lo < hi:
        mid = (lo + hi) // 2
        if horizon_hours[mid] * (1.0 + 1e-12) < horizon:
            lo = mid + 1
        else:
            hi = mid
    j = lo
    if j == n_h:
        return math.nan
    n_y = log_distance.shape[0]
    # first log distance with P <= alpha (P falls along the row)
    lo, hi = 0, n_y
    while lo < hi:
        mid = (lo + hi) // 2
        if table[side, j, mid] > alpha:
            lo = mid + 1
        else:
            hi = mid
    if lo == n_y:
        return 1.0 if side == LONG else math.exp(log_distance[n_y - 1]) - 1.0
    y = log_distance[lo]
    return 1.0 - math.exp(-y) if side == LONG else math.exp(y) - 1.0
