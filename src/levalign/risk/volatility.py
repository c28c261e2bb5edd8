r"""Volatility estimators from OHLC bars, annualized.

With :math:`r_i = \ln(C_i / C_{i-1})`, bars of length :math:`\Delta` years and :math:`n` bars:

.. math::

    \hat\sigma^2_{cc} = \frac{1}{(n-1)\Delta}\sum (r_i - \bar r)^2
    \qquad \text{(close to close)}

    \hat\sigma^2_{P} = \frac{1}{4 \ln 2\, n \Delta}\sum \ln^2(H_i/L_i)
    \qquad \text{(Parkinson 1980)}

    \hat\sigma^2_{GK} = \frac{1}{n\Delta}\sum \left[\tfrac12 \ln^2(H_i/L_i)
        - (2\ln 2 - 1)\ln^2(C_i/O_i)\right] \qquad \text{(Garman and Klass 1980)}

    \sigma^2_{t} = \lambda\,\sigma^2_{t-1} + (1-\lambda)\, r_t^2 / \Delta
    \qquad \text{(EWMA, RiskMetrics 1996, } \lambda = 0.94)

The EWMA recursion starts from the sample variance of the first 30 returns (or all, if fewer).
"""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign.errors import InvalidInput

__all__ = ["close_to_close", "ewma", "garman_klass", "parkinson"]

HOURS_PER_YEAR = 8760.0
_MIN_BARS = 10


def _prices(name: str, values: ArrayLike, minimum: int = _MIN_BARS) -> NDArray[np.float64]:
    arr = np.asarray(values, dtype=np.float64)
    if arr.ndim != 1 or arr.size < minimum:
        raise InvalidInput(
            f"{name} needs at least {minimum} bars, got {arr.size}: use a longer data file",
            field=name,
            value=int(arr.size),
        )
    bad = ~(np.isfinite(arr) & (arr > 0))
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(
            f"{name}[{i}] is {arr[i]}: prices must be positive finite numbers",
            field=f"{name}[{i}]",
            value=float(arr[i]),
        )
    return arr


def _bar_years(bar_hours: float) -> float:
    if not (math.isfinite(bar_hours) and bar_hours > 0):
        raise InvalidInput(
            f"bar_hours must be positive, got {bar_hours}", field="bar_hours", value=bar_hours
        )
    return bar_hours / HOURS_PER_YEAR


def close_to_close(close: ArrayLike, bar_hours: float) -> float:
    """Annualized standard deviation of log returns (see module docstring).

    Raises
    ------
    InvalidInput
        Fewer than 10 bars, a non-positive or non-finite price, a non-positive bar length.
    """
    c = _prices("close", close)
    r = np.diff(np.log(c))
    return float(math.sqrt(np.var(r, ddof=1) / _bar_years(bar_hours)))


def parkinson(high: ArrayLike, low: ArrayLike, bar_hours: float) -> float:
    """Parkinson's high-low estimator (see module docstring).

    Raises
    ------
    InvalidInput
        As :func:`close_to_close`, or a high below its low.
    """
    h, lo = _prices("high", high), _prices("low", low)
    _check_range(h, lo)
    hl = np.log(h / lo)
    return float(math.sqrt(np.mean(hl * hl) / (4.0 * math.log(2.0)) / _bar_years(bar_hours)))


def garman_klass(
    open_: ArrayLike, high: ArrayLike, low: ArrayLike, close: ArrayLike, bar_hours: float
) -> float:
    """Garman and Klass' OHLC estimator (see module docstring).

    Raises
    ------
    InvalidInput
        As :func:`parkinson`.
    """
    o, h, lo, c = (
        _prices("open", open_),
        _prices("high", high),
        _prices("low", low),
        _prices("close", close),
    )
    _check_range(h, lo)
    hl, co = np.log(h / lo), np.log(c / o)
    var = np.mean(0.5 * hl * hl - (2.0 * math.log(2.0) - 1.0) * co * co)
    return float(math.sqrt(max(float(var), 0.0) / _bar_years(bar_hours)))


def ewma(close: ArrayLike, bar_hours: float, lam: float = 0.94) -> NDArray[np.float64]:
    """EWMA volatility after each return, annualized (RiskMetrics; see module docstring).

    Raises
    ------
    InvalidInput
        As :func:`close_to_close`, or ``lam`` outside (0, 1).
    """
    if not 0.0 < lam < 1.0:
        raise InvalidInput(f"lam must be in (0, 1), got {lam}", field="lam", value=lam)
    c = _prices("close", close)
    dt = _bar_years(bar_hours)
    r2 = np.diff(np.log(c)) ** 2 / dt
    var = np.empty_like(r2)
    prev = float(np.mean(r2[:30]))
    for i, x in enumerate(r2):
        prev = lam * prev + (1.0 - lam) * x
        var[i] = prev
    return np.sqrt(var)


def _check_range(high: NDArray[np.float64], low: NDArray[np.float64]) -> None:
    if high.shape != low.shape:
        raise InvalidInput(f"high has {high.size} bars but low has {low.size}", field="low")
    bad = high < low
    if bad.any():
        i = int(np.argmax(bad))
        raise InvalidInput(
            f"high[{i}] {high[i]} is below low[{i}] {low[i]}",
            field=f"high[{i}]",
            value=float(high[i]),
        )
