r"""Volatility estimators from OHLC bars and their forecasts, annualized.

Every volatility here is annualized with 8,760 hours a year: crypto trades 24/7, so there is
no trading-day calendar and a bar of :math:`h` hours is :math:`\Delta = h / 8760` years.

With :math:`n` bars of length :math:`\Delta` years and the :math:`n - 1` log returns
:math:`r_i = \ln(C_i / C_{i-1})`, :math:`i = 2, \dots, n`, of their closes:

.. math::

    \hat\sigma^2_{cc} = \frac{1}{(n-2)\Delta}\sum_{i=2}^{n} (r_i - \bar r)^2
    \qquad \text{(close to close: the sample variance of the } n - 1 \text{ returns)}

    \hat\sigma^2_{P} = \frac{1}{4 \ln 2\, n \Delta}\sum \ln^2(H_i/L_i)
    \qquad \text{(Parkinson 1980)}

    \hat\sigma^2_{GK} = \frac{1}{n\Delta}\sum \left[\tfrac12 \ln^2(H_i/L_i)
        - (2\ln 2 - 1)\ln^2(C_i/O_i)\right] \qquad \text{(Garman and Klass 1980)}

    \sigma^2_{t} = \lambda\,\sigma^2_{t-1} + (1-\lambda)\, r_t^2 / \Delta
    \qquad \text{(EWMA, RiskMetrics 1996, } \lambda = 0.94)

The EWMA recursion starts from the mean of the first 30 squared returns (or all, if fewer),
:math:`\sigma^2_0 = \frac{1}{30\Delta}\sum_{i \le 30} r_i^2`: uncentered, as the recursion
itself, which takes the mean return as zero.

GARCH(1,1) with standardized Student-t innovations (Bollerslev 1986, *J. Econometrics* 31,
307-327; Student-t: Bollerslev 1987, *Rev. Econ. Stat.* 69, 542-547), per bar:

.. math::

    r_t = \mu + \varepsilon_t, \quad \varepsilon_t = \sigma_t z_t, \quad
    z_t \sim t_\nu \sqrt{(\nu - 2)/\nu}, \quad
    \sigma^2_t = \omega + \alpha\,\varepsilon^2_{t-1} + \beta\,\sigma^2_{t-1}

fitted by maximum likelihood with the ``arch`` package (see :func:`garch_t`).

Forecasts over a horizon of :math:`H` hours (:math:`m = H / h` bars): close-to-close,
Parkinson and Garman-Klass assume a constant volatility, so their annualized forecast is the
estimate itself at every horizon (the square-root-of-time rule). EWMA is IGARCH(1,1) without
a constant, whose expected variance is flat, so it forecasts its last value at every horizon
(RiskMetrics Technical Document, 4th ed., 1996, ch. 5). GARCH forecasts follow its variance
term structure (:meth:`GarchFit.forecast`).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign._extras import require
from levalign.errors import InvalidInput
from levalign.risk.ohlc import OHLC

__all__ = [
    "GARCH_MIN_BARS",
    "HOURS_PER_YEAR",
    "GarchFit",
    "VolatilityEstimates",
    "close_to_close",
    "estimate_volatility",
    "ewma",
    "garch_t",
    "garch_variance_path",
    "garman_klass",
    "parkinson",
]

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


GARCH_MIN_BARS = 100
"""Fewest bars :func:`garch_t` fits: five parameters need ~20 returns each; below ~500 bars
the estimates are noisy (see the recovery test)."""
STATIONARITY_MARGIN = 1e-6
"""``alpha + beta`` within this of 1 counts as non-stationary: ``arch`` bounds the sum by 1, so
an integrated fit comes back as 1 up to the optimizer's rounding."""
AUTO_RESAMPLE_MINUTES = (60, 30, 15, 10, 5)

MAX_GAP_HOURS = 12.0
"""Longest hole in a bar series the estimators accept (or 10 bars, if longer): crypto trades
around the clock, so a longer hole is missing data, and the return across it would count as
one bar's return (a gap of days in minute bars is read as a minute's move of days)."""
AUTO_MIN_BARS = 500
TERM_STRUCTURE_HOURS = (1.0, 4.0, 8.0, 24.0, 72.0, 168.0, 720.0)

GarchStatus = Literal["ok", "non_stationary", "not_converged"]


def garch_variance_path(
    omega: float, persistence: float, sigma2_next: float, bars: int
) -> NDArray[np.float64]:
    r"""Expected GARCH(1,1) variance of each of the next ``bars`` bars.

    With :math:`p = \alpha + \beta` and :math:`\bar\sigma^2 = \omega / (1 - p)`
    (Bollerslev 1986, eq. 7; ``arch`` docs, "Forecasting", analytic GARCH forecasts):

    .. math::

        E_t[\sigma^2_{t+h}] = \bar\sigma^2 + p^{h-1}\,(\sigma^2_{t+1} - \bar\sigma^2)
          = p^{h-1}\sigma^2_{t+1} + \omega\,\frac{1 - p^{h-1}}{1 - p},
        \qquad h = 1, 2, \ldots

    The second form, from iterating :math:`E_t[\sigma^2_{t+h}] = \omega + p\,
    E_t[\sigma^2_{t+h-1}]`, also holds for :math:`p \ge 1` (its fraction is :math:`h - 1`
    at :math:`p = 1`), so non-stationary fits get their growing forecast instead of a
    division by zero. Units are those of the inputs (per-bar variances).

    Parameters
    ----------
    omega
        :math:`\omega`, per-bar variance.
    persistence
        :math:`p = \alpha + \beta`.
    sigma2_next
        :math:`\sigma^2_{t+1}`, the next bar's conditional variance.
    bars
        Number of bars :math:`h = 1 \ldots` ``bars``.

    Returns
    -------
    numpy.ndarray
        :math:`E_t[\sigma^2_{t+h}]` for :math:`h = 1 \ldots` ``bars``.

    Raises
    ------
    InvalidInput
        Negative ``omega`` or ``persistence``, non-positive ``sigma2_next``, ``bars < 1``.
    """
    for name, value, ok in (
        ("omega", omega, omega >= 0),
        ("persistence", persistence, persistence >= 0),
        ("sigma2_next", sigma2_next, sigma2_next > 0),
    ):
        if not (math.isfinite(value) and ok):
            raise InvalidInput(f"{name} is out of range: {value}", field=name, value=value)
    if bars < 1:
        raise InvalidInput(f"bars must be at least 1, got {bars}", field="bars", value=bars)
    k = np.arange(bars, dtype=np.float64)  # k = h - 1
    if persistence == 1.0:
        geometric = k
    elif persistence == 0.0:
        geometric = (k > 0).astype(np.float64)
    else:  # sum_{j<k} p^j = (p^k - 1) / (p - 1), accurate for p near 1
        geometric = np.expm1(k * math.log1p(persistence - 1.0)) / (persistence - 1.0)
    with np.errstate(over="ignore"):
        return np.asarray(persistence**k * sigma2_next + omega * geometric, dtype=np.float64)


@dataclass(frozen=True)
class GarchFit:
    r"""A GARCH(1,1)-t fit, parameters in fractional per-bar units.

    Units: ``mu`` is the mean log return per bar (0.0001 = 0.01% per bar); ``omega`` a per-bar
    variance of log returns (``sqrt(omega / (1 - alpha - beta))`` is the long-run standard
    deviation per bar, not in percent); ``alpha``, ``beta`` and ``nu`` are unitless.
    ``sigma_last`` and ``sigma_next`` are per-bar standard deviations of log returns. These
    are exactly the parameters of a simulation with bars of ``bar_hours``; start it from
    ``sigma_next`` (the conditional volatility of the first simulated bar). Annualized values
    are the properties and methods below.

    Attributes
    ----------
    omega, alpha, beta, nu, mu
        Model parameters (module docstring), per bar of ``bar_hours``.
    bar_hours
        Bar length the model was fitted on.
    sigma_last
        :math:`\sigma_T`, conditional volatility of the last observed bar, per bar.
    sigma_next
        :math:`\sigma_{T+1} = \sqrt{\omega + \alpha \varepsilon_T^2 + \beta \sigma_T^2}`,
        the one-bar-ahead forecast, per bar.
    loglikelihood
        Log-likelihood of the fractional log returns (that of the scaled returns ``arch``
        saw, plus ``nobs * ln(scale)``).
    nobs
        Number of returns fitted.
    scale
        Factor the returns were multiplied by for ``arch`` (100 = percent, see
        :func:`garch_t`).
    status
        ``"ok"``; ``"non_stationary"`` (:math:`\alpha + \beta \ge 1`, fit kept; no long-run
        level, forecasts grow with the horizon); ``"not_converged"`` (the optimizer
        stopped early: parameters unreliable).
    message
        What the status means and what to do, empty when ``"ok"``.
    """

    omega: float
    alpha: float
    beta: float
    nu: float
    mu: float
    bar_hours: float
    sigma_last: float
    sigma_next: float
    loglikelihood: float
    nobs: int
    scale: float
    status: GarchStatus
    message: str

    @property
    def persistence(self) -> float:
        r""":math:`\alpha + \beta`."""
        return self.alpha + self.beta

    @property
    def stationary(self) -> bool:
        r"""Whether :math:`\alpha + \beta < 1` (by more than ``STATIONARITY_MARGIN``)."""
        return self.persistence < 1.0 - STATIONARITY_MARGIN

    @property
    def unconditional(self) -> float:
        r"""Annualized long-run volatility :math:`\sqrt{\omega / (1 - \alpha - \beta) / \Delta}`.

        Infinite when the fit is not stationary.
        """
        if not self.stationary:
            return math.inf
        return math.sqrt(self.omega / (1.0 - self.persistence) / _bar_years(self.bar_hours))

    @property
    def last(self) -> float:
        """Annualized conditional volatility of the last observed bar."""
        return self.sigma_last / math.sqrt(_bar_years(self.bar_hours))

    def variance_path(self, bars: int) -> NDArray[np.float64]:
        """Expected per-bar variances of the next ``bars`` bars (:func:`garch_variance_path`).

        Raises
        ------
        InvalidInput
            ``bars < 1``.
        """
        return garch_variance_path(self.omega, self.persistence, self.sigma_next**2, bars)

    def forecast(self, horizon_hours: float) -> float:
        r"""Annualized volatility over the next ``horizon_hours``.

        With :math:`m = H / h` bars of :math:`h` hours (a fractional last bar counts its
        fraction of that bar's expected variance):

        .. math::

            \sigma(H) = \sqrt{\frac{1}{H / 8760} \sum_{j=1}^{m} E_t[\sigma^2_{t+j}]}

        with :math:`E_t[\sigma^2_{t+j}]` from :func:`garch_variance_path`. One bar gives the
        annualized :math:`\sigma_{T+1}`; a long horizon tends to :attr:`unconditional`.

        Raises
        ------
        InvalidInput
            ``horizon_hours`` not positive and finite.
        """
        _positive("horizon_hours", horizon_hours)
        m = horizon_hours / self.bar_hours
        whole = math.floor(m + 1e-9)
        part = m - whole if m - whole > 1e-9 else 0.0
        path = self.variance_path(whole + (1 if part > 0 else 0))
        total = float(path[:whole].sum()) + (part * float(path[whole]) if part > 0 else 0.0)
        return math.sqrt(total / (horizon_hours / HOURS_PER_YEAR))

    def term_structure(self, horizons_hours: Sequence[float]) -> list[tuple[float, float]]:
        """``(hours, annualized volatility)`` pairs, one :meth:`forecast` per horizon.

        Raises
        ------
        InvalidInput
            A horizon not positive and finite.
        """
        return [(float(h), self.forecast(h)) for h in horizons_hours]


def garch_t(close: ArrayLike, bar_hours: float, *, max_iterations: int = 1000) -> GarchFit:
    r"""Fit GARCH(1,1) with standardized Student-t innovations to close prices.

    The model (module docstring) is fitted to the log returns :math:`r_t = \ln(C_t/C_{t-1})`
    with a constant mean by maximum likelihood in ``arch`` (``arch_model(..., mean="Constant",
    vol="GARCH", p=1, q=1, dist="t")``, ``arch`` docs "Univariate Volatility Models").
    ``arch``'s optimizer works best when the returns' variance is between 0.1 and 10,000, so
    it is given ``scale * r`` with ``scale = 100`` (percent returns) moved by powers of ten
    until it is (1-minute crypto returns need 1,000). The results are converted back to
    fractional units: :math:`\mu = \mu_s / s`, :math:`\omega = \omega_s / s^2`, while
    :math:`\alpha, \beta, \nu` do not depend on the scale.

    Parameters
    ----------
    close
        Close prices, oldest first, at least ``GARCH_MIN_BARS`` of them.
    bar_hours
        Bar length in hours.
    max_iterations
        Cap on the optimizer's iterations.

    Returns
    -------
    GarchFit
        Parameters per bar, fractional (see :class:`GarchFit`); its ``status`` says whether
        the fit converged and is stationary.

    Raises
    ------
    InvalidInput
        Fewer than ``GARCH_MIN_BARS`` prices, a non-positive or non-finite price, constant
        prices (no volatility to fit), a non-positive bar length or ``max_iterations < 1``.
    """
    c = _prices("close", close, minimum=GARCH_MIN_BARS)
    _bar_years(bar_hours)
    if max_iterations < 1:
        raise InvalidInput(
            f"max_iterations must be at least 1, got {max_iterations}",
            field="max_iterations",
            value=max_iterations,
        )
    r = np.diff(np.log(c))
    variance = float(np.var(r))
    if not variance > 0.0:
        raise InvalidInput(
            "close has constant log returns: there is no volatility to fit; use a longer "
            "or more active price series",
            field="close",
        )
    scale = 100.0
    while variance * scale**2 < 0.1:
        scale *= 10.0
    while variance * scale**2 >= 1e4:
        scale /= 10.0

    require("risk", "arch")
    from arch import arch_model

    model = arch_model(scale * r, mean="Constant", vol="GARCH", p=1, q=1, dist="t", rescale=False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        res = model.fit(disp="off", show_warning=False, options={"maxiter": max_iterations})
    params = res.params
    mu, omega = float(params["mu"]) / scale, float(params["omega"]) / scale**2
    alpha, beta, nu = float(params["alpha[1]"]), float(params["beta[1]"]), float(params["nu"])
    sigma_last = float(res.conditional_volatility[-1]) / scale
    eps_last = float(res.resid[-1]) / scale
    sigma_next = math.sqrt(max(omega + alpha * eps_last**2 + beta * sigma_last**2, 0.0))
    loglikelihood = float(res.loglikelihood) + r.size * math.log(scale)
    finite = all(math.isfinite(x) for x in (mu, omega, alpha, beta, nu, sigma_next, loglikelihood))
    status: GarchStatus = "ok"
    message = ""
    if res.convergence_flag != 0 or not finite or sigma_next <= 0.0:
        status = "not_converged"
        notes = "; ".join(dict.fromkeys(str(w.message) for w in caught))
        message = (
            f"the optimizer did not converge ({res.optimization_result.message}"
            f"{'; ' + notes if notes else ''}): the parameters are unreliable; use a longer "
            "series, another bar length or more iterations"
        )
    elif alpha + beta >= 1.0 - STATIONARITY_MARGIN:
        status = "non_stationary"
        message = (
            f"alpha + beta = {alpha + beta:.8f} is not below 1 - {STATIONARITY_MARGIN:g}: "
            "the variance has no long-run level (integrated GARCH), so forecasts grow with "
            "the horizon and the unconditional volatility is infinite; the fit is kept, a "
            "longer sample usually gives a stationary one"
        )
    return GarchFit(
        omega=omega,
        alpha=alpha,
        beta=beta,
        nu=nu,
        mu=mu,
        bar_hours=float(bar_hours),
        sigma_last=sigma_last,
        sigma_next=sigma_next,
        loglikelihood=loglikelihood,
        nobs=int(r.size),
        scale=scale,
        status=status,
        message=message,
    )


@dataclass(frozen=True)
class VolatilityEstimates:
    r"""Every estimator on one set of bars; made by :func:`estimate_volatility`.

    Attributes
    ----------
    ohlc
        The bars the estimates come from (after resampling).
    source_bars, source_bar_hours
        Size and bar length of the data before resampling.
    resample_minutes
        Bar length the data was resampled to, ``None`` if it was used as is.
    close_to_close, parkinson, garman_klass
        Annualized estimates over the whole sample.
    ewma
        Last annualized EWMA volatility (:math:`\lambda = 0.94`).
    garch
        The GARCH(1,1)-t fit.
    """

    ohlc: OHLC
    source_bars: int
    source_bar_hours: float
    resample_minutes: int | None
    close_to_close: float
    parkinson: float
    garman_klass: float
    ewma: float
    garch: GarchFit

    def forecast(self, horizon_hours: float) -> dict[str, float]:
        """Annualized volatility forecast of each estimator over ``horizon_hours``.

        Close-to-close, Parkinson and Garman-Klass are flat (their estimate), EWMA is flat at
        its last value, GARCH follows its term structure (module docstring).

        Raises
        ------
        InvalidInput
            ``horizon_hours`` not positive and finite.
        """
        _positive("horizon_hours", horizon_hours)
        return {
            "close_to_close": self.close_to_close,
            "parkinson": self.parkinson,
            "garman_klass": self.garman_klass,
            "ewma": self.ewma,
            "garch": self.garch.forecast(horizon_hours),
        }

    def to_dict(
        self, horizon_hours: float, term_structure_hours: Sequence[float] = TERM_STRUCTURE_HOURS
    ) -> dict[str, Any]:
        """JSON-ready summary (the ``levalign vol`` output); non-finite values stay floats.

        The term structure runs from one bar to the longest of ``term_structure_hours`` and
        ``horizon_hours``, skipping horizons shorter than a bar.

        Raises
        ------
        InvalidInput
            ``horizon_hours`` not positive and finite.
        """
        forecast = self.forecast(horizon_hours)
        g = self.garch
        hours = sorted(
            {g.bar_hours, float(horizon_hours)}
            | {h for h in term_structure_hours if h >= g.bar_hours}
        )
        return {
            "bars": self.ohlc.bars,
            "bar_hours": self.ohlc.bar_hours,
            "resample_minutes": self.resample_minutes,
            "source_bars": self.source_bars,
            "source_bar_hours": self.source_bar_hours,
            "start": self.ohlc.start,
            "end": self.ohlc.end,
            "hours_per_year": HOURS_PER_YEAR,
            "close_to_close": self.close_to_close,
            "parkinson": self.parkinson,
            "garman_klass": self.garman_klass,
            "ewma": self.ewma,
            "forecast": {"horizon_hours": float(horizon_hours), **forecast},
            "garch": {
                "units": (
                    "omega, alpha, beta, nu, mu, sigma_last, sigma_next: per bar of "
                    "bar_hours, fractional log returns; unconditional, last, forecast, "
                    "term_structure: annualized"
                ),
                "omega": g.omega,
                "alpha": g.alpha,
                "beta": g.beta,
                "nu": g.nu,
                "mu": g.mu,
                "sigma_last": g.sigma_last,
                "sigma_next": g.sigma_next,
                "persistence": g.persistence,
                "stationary": g.stationary,
                "status": g.status,
                "message": g.message,
                "loglikelihood": g.loglikelihood,
                "nobs": g.nobs,
                "unconditional": g.unconditional,
                "last": g.last,
                "forecast": {"horizon_hours": float(horizon_hours), "sigma": forecast["garch"]},
                "term_structure": [list(pair) for pair in g.term_structure(hours)],
            },
        }


def estimate_volatility(
    ohlc: OHLC, resample_minutes: int | None = None, *, auto_resample: bool = True
) -> VolatilityEstimates:
    """Run every estimator on the same bars, resampled first if asked.

    Parameters
    ----------
    ohlc
        Bars, for example from :func:`levalign.risk.ohlc.load_ohlc`.
    resample_minutes
        Bar length to aggregate to (a whole multiple of the data's). GARCH on 1-minute
        returns is slow and dominated by microstructure noise, so by default
        (``None`` and ``auto_resample``) bars finer than an hour are aggregated to the
        coarsest of 60, 30, 15, 10, 5 minutes that keeps at least 500 bars.
    auto_resample
        ``False`` with ``resample_minutes=None`` uses the bars as they are.

    Returns
    -------
    VolatilityEstimates
        Annualized estimates and the GARCH fit.

    Raises
    ------
    InvalidInput
        A bad ``resample_minutes``; fewer than ``GARCH_MIN_BARS`` bars (after resampling);
        a hole in the bars (:func:`check_gaps`).
    """
    check_gaps(ohlc)
    minutes = resample_minutes
    if minutes is None and auto_resample:
        minutes = _auto_resample_minutes(ohlc)
    bars = ohlc.resample(minutes) if minutes is not None else ohlc
    if bars.bars < GARCH_MIN_BARS:
        hint = (
            f" after resampling to {minutes} minutes: use a smaller resample_minutes or a "
            "longer data file"
            if minutes is not None
            else ": use a longer data file"
        )
        raise InvalidInput(
            f"GARCH needs at least {GARCH_MIN_BARS} bars, got {bars.bars}{hint}",
            field="bars",
            value=bars.bars,
        )
    h = bars.bar_hours
    return VolatilityEstimates(
        ohlc=bars,
        source_bars=ohlc.bars,
        source_bar_hours=ohlc.bar_hours,
        resample_minutes=minutes,
        close_to_close=close_to_close(bars.close, h),
        parkinson=parkinson(bars.high, bars.low, h),
        garman_klass=garman_klass(bars.open, bars.high, bars.low, bars.close, h),
        ewma=float(ewma(bars.close, h)[-1]),
        garch=garch_t(bars.close, h),
    )


def check_gaps(ohlc: OHLC) -> None:
    """Refuse bars with a hole longer than ``MAX_GAP_HOURS`` (or 10 bars, if longer).

    Raises
    ------
    InvalidInput
        Naming the first bar after the hole, the hole's ends and length, and the fix.
    """
    limit_ns = max(MAX_GAP_HOURS, 10.0 * ohlc.bar_hours) * 3_600e9
    step = np.diff(ohlc.timestamp)
    big = np.flatnonzero(step > limit_ns)
    if big.size:
        i = int(big[0])
        t0, t1 = (
            np.datetime64(int(ohlc.timestamp[j]), "ns").astype("datetime64[s]") for j in (i, i + 1)
        )
        raise InvalidInput(
            f"the bars jump from {t0} to {t1} UTC ({step[i] / 3_600e9:.1f} hours with no bar, "
            f"bars are {ohlc.bar_hours * 60:g} minutes): the return across the hole would "
            "count as one bar's; use bars without holes (split the file at the hole, or "
            "fill it from another source)",
            field=f"bars[{i + 1}].timestamp",
        )


def _auto_resample_minutes(ohlc: OHLC) -> int | None:
    bar_minutes = ohlc.bar_hours * 60.0
    for minutes in AUTO_RESAMPLE_MINUTES:
        ratio = minutes / bar_minutes
        if ratio < 1.0 + 1e-9:
            return None
        if abs(ratio - round(ratio)) < 1e-9 and ohlc.bars / ratio >= AUTO_MIN_BARS:
            return minutes
    return None


def _positive(name: str, value: float) -> None:
    if not (math.isfinite(value) and value > 0):
        raise InvalidInput(f"{name} must be positive, got {value}", field=name, value=value)
