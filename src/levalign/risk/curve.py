r"""The liquidation curve: P(liquidation within a horizon) against liquidation distance.

Followers copying one lead event share the symbol's volatility model, so the curve is built
once per event and looked up per follower: a follower's ``max_liq_probability`` :math:`\alpha`
over ``horizon_hours`` :math:`h` becomes the smallest liquidation distance :math:`d` with

.. math:: P(\text{touch } d \text{ within } h) \le \alpha,

and the normalization kernel's exact buffer solver then finds the largest order whose
liquidation price lies that far away on the exchange's tier table (docs/design.md,
"Normalization" and "Risk").

The curve is tabulated on a grid of horizons :math:`h_j` and log distances
:math:`y_k = |\ln(B/S_0)|` (a long's barrier is :math:`B = S_0 e^{-y}`, a short's
:math:`S_0 e^{y}`). Lookups are *conservative*: the horizon rounds up to the next grid horizon
and the distance up to the next grid distance, so the probability at the distance returned is
never above :math:`\alpha` on the tabulated model (P rises with the horizon and falls with the
distance). The grid's spacing bounds the cost of that caution: horizons 9% apart (:math:`2^{1/8}`)
and log distances 2.4% apart.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from levalign._curve_kernel import LONG, SHORT, required_distance
from levalign.errors import InvalidInput
from levalign.risk.first_passage import touch_probability

__all__ = ["LiquidationCurve", "required_distance"]

FloatArray = NDArray[np.float64]

_HOURS_PER_YEAR = 8760.0
# log distances from 0.01% to ln(1/0.0067): a long liquidated 0.67% above zero, a short at 148x
_LOG_DISTANCES = np.geomspace(1e-4, 5.0, 448)
# horizons 2^(j/8) hours: 7.5 minutes to 1.02 years (2^(105/8) = 8,933 hours)
_HORIZONS = 2.0 ** (np.arange(-24, 106) / 8.0)


@dataclass(frozen=True, eq=False)
class LiquidationCurve:
    r"""P(touch) for longs and shorts on a horizon × log-distance grid.

    Build it with :meth:`gbm` (closed form) or :meth:`from_extremes` (Monte Carlo path
    extremes, any price model); look it up with :meth:`probability` and
    :meth:`required_distance`.

    Attributes
    ----------
    log_distance
        Increasing grid :math:`y_k`.
    horizon_hours
        Increasing grid :math:`h_j`.
    table
        ``table[side, j, k]``, side 0 long and 1 short.
    source
        What the curve was computed from (for reports).
    """

    log_distance: FloatArray
    horizon_hours: FloatArray
    table: FloatArray
    source: str

    @classmethod
    def gbm(cls, sigma: float, mu: float = 0.0) -> LiquidationCurve:
        r"""The closed-form curve for geometric Brownian motion.

        Longs touch :math:`S_0 e^{-y}` with log drift :math:`\nu = \mu - \sigma^2/2`, shorts
        :math:`S_0 e^{y}` with :math:`-\nu`; each cell is
        :func:`~levalign.risk.first_passage.touch_probability`. Cached per ``(sigma, mu)``: a
        live engine asks for the same curve at every event.

        Parameters
        ----------
        sigma, mu
            Annualized volatility and drift of the price (a long's funding lowers its drift).

        Raises
        ------
        InvalidInput
            ``sigma`` not positive or ``mu`` not finite.
        """
        if not (math.isfinite(sigma) and sigma > 0.0):
            raise InvalidInput(
                f"sigma must be a positive number, got {sigma}", field="sigma", value=sigma
            )
        if not math.isfinite(mu):
            raise InvalidInput(f"mu must be a finite number, got {mu}", field="mu", value=mu)
        return _gbm_curve(float(sigma), float(mu))

    @classmethod
    def from_extremes(
        cls,
        log_min: FloatArray,
        log_max: FloatArray,
        horizon_hours: FloatArray,
        source: str = "monte carlo",
    ) -> LiquidationCurve:
        r"""The empirical curve from simulated running extremes of the log price.

        Parameters
        ----------
        log_min, log_max
            ``[paths, checkpoints]``: each path's running minimum and maximum of
            :math:`\ln(S_t/S_0)` up to each checkpoint (continuous-path corrected by the
            simulator).
        horizon_hours
            The checkpoints, increasing.

        Returns
        -------
        LiquidationCurve
            :math:`P_{long}(h_j, y) = \#\{\min_j \le -y\} / n` and
            :math:`P_{short}(h_j, y) = \#\{\max_j \ge y\} / n`.

        Raises
        ------
        InvalidInput
            Shapes that disagree, or horizons not increasing and positive.
        """
        lo = np.asarray(log_min, dtype=np.float64)
        hi = np.asarray(log_max, dtype=np.float64)
        hours = np.asarray(horizon_hours, dtype=np.float64)
        if lo.ndim != 2 or lo.shape != hi.shape or lo.shape[1] != hours.shape[0]:
            raise InvalidInput(
                "log_min and log_max must be [paths, checkpoints] with one horizon per "
                f"checkpoint; got {lo.shape}, {hi.shape} and {hours.shape[0]} horizons",
                field="log_min",
            )
        if not (np.all(hours > 0) and np.all(np.diff(hours) > 0)):
            raise InvalidInput(
                "horizon_hours must be positive and increasing", field="horizon_hours"
            )
        n = lo.shape[0]
        y = _LOG_DISTANCES
        table = np.empty((2, hours.shape[0], y.shape[0]))
        for j in range(hours.shape[0]):
            # count of paths with min <= -y: sorted mins, right-side search
            table[LONG, j] = np.searchsorted(np.sort(lo[:, j]), -y, side="right") / n
            table[SHORT, j] = 1.0 - np.searchsorted(np.sort(hi[:, j]), y, side="left") / n
        return cls(y, hours, table, source)

    def required_distance(
        self, alpha: float, horizon_hours: float, side: Literal["long", "short"]
    ) -> float:
        r"""Smallest liquidation distance with :math:`P \le \alpha` within the horizon.

        Raises
        ------
        InvalidInput
            ``alpha`` outside (0, 1], or a horizon not positive or beyond the curve.
        """
        if not (0.0 < alpha <= 1.0):
            raise InvalidInput(
                f"max_liq_probability must be in (0, 1], got {alpha}",
                field="max_liq_probability",
                value=alpha,
            )
        d = required_distance(
            self.table,
            self.log_distance,
            self.horizon_hours,
            _side_index(side),
            alpha,
            horizon_hours,
        )
        if math.isnan(d):
            raise InvalidInput(
                f"horizon_hours must be in (0, {self.horizon_hours[-1]:.0f}] for this curve, "
                f"got {horizon_hours}",
                field="horizon_hours",
                value=horizon_hours,
            )
        return d

    def probability(
        self, distance: float, horizon_hours: float, side: Literal["long", "short"]
    ) -> float:
        """P(touch) at a liquidation distance, linearly interpolated on the grid (a report)."""
        s = _side_index(side)
        y = -math.log1p(-distance) if s == LONG else math.log1p(distance)
        rows = np.array([np.interp(y, self.log_distance, row) for row in self.table[s]])
        return float(np.interp(math.log(horizon_hours), np.log(self.horizon_hours), rows))


def _side_index(side: str) -> int:
    if side not in ("long", "short"):
        raise InvalidInput(f"side must be 'long' or 'short', got {side!r}", field="side")
    return LONG if side == "long" else SHORT


@functools.lru_cache(maxsize=64)
def _gbm_curve(sigma: float, mu: float) -> LiquidationCurve:
    nu = mu - 0.5 * sigma * sigma
    t = (_HORIZONS / _HOURS_PER_YEAR)[:, None]
    y = _LOG_DISTANCES[None, :]
    table = np.stack([touch_probability(y, sigma, t, nu), touch_probability(y, sigma, t, -nu)])
    # the closed form is monotone; enforce it bitwise so the kernel's binary search is exact
    table = np.minimum.accumulate(table, axis=2)
    table = np.maximum.accumulate(table, axis=1)
    table.setflags(write=False)
    return LiquidationCurve(
        _LOG_DISTANCES, _HORIZONS, table, f"gbm closed form, sigma={sigma:g}, mu={mu:g}"
    )
