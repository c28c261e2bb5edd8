"""Models fitted to bundled bars: each equals the estimator it is built from."""

from __future__ import annotations

from importlib import resources
from pathlib import Path

import numpy as np
import pytest

from levalign.errors import InvalidInput
from levalign.risk.fitted import model_from_spec_or_data
from levalign.risk.monte_carlo import GBM, Bootstrap, GarchT
from levalign.risk.ohlc import load_ohlc
from levalign.risk.volatility import close_to_close, garch_t

DATA = Path(str(resources.files("levalign.data")))
XRP = DATA / "XRPUSDT_perp_5m_2021-11-15_2021-11-21.csv.gz"
BTC = DATA / "BTCUSDT_1m_2023-03-01_2023-03-21.csv.gz"


def test_garch_t_from_data_is_the_maximum_likelihood_fit() -> None:
    # Arrange: the fit levalign vol reports on 15-minute XRP bars
    bars = load_ohlc(XRP).resample(15)
    fit = garch_t(bars.close, bars.bar_hours)
    # Act
    model = model_from_spec_or_data({"type": "garch_t", "data": str(XRP), "resample_minutes": 15})
    # Assert: the simulator's parameters are the fit's, starting at its next-bar volatility
    assert isinstance(model, GarchT)
    assert (model.omega, model.alpha, model.beta, model.nu) == (
        fit.omega,
        fit.alpha,
        fit.beta,
        fit.nu,
    )
    assert model.bar_hours == pytest.approx(0.25)
    assert model.sigma0 == fit.sigma_next


def test_bootstrap_and_gbm_from_data() -> None:
    bars = load_ohlc(XRP)
    boot = model_from_spec_or_data({"type": "bootstrap", "data": str(XRP), "block_length": 12})
    assert isinstance(boot, Bootstrap)
    np.testing.assert_array_equal(boot.returns, np.diff(np.log(bars.close)))
    assert boot.bar_hours == pytest.approx(5 / 60)
    gbm = model_from_spec_or_data({"type": "gbm", "data": str(XRP), "mu": 0.1})
    assert isinstance(gbm, GBM)
    assert gbm.sigma == close_to_close(bars.close, bars.bar_hours)
    assert gbm.mu == 0.1


def test_relative_paths_resolve_against_the_spec_folder() -> None:
    model = model_from_spec_or_data({"type": "gbm", "data": XRP.name}, base=DATA)
    assert isinstance(model, GBM)


def test_a_non_stationary_fit_is_refused_with_advice() -> None:
    # three weeks holding the March 2023 crash fit an integrated GARCH (alpha + beta = 1)
    with pytest.raises(InvalidInput, match=r"not stationary.*student_t or bootstrap") as err:
        model_from_spec_or_data({"type": "garch_t", "data": str(BTC)})
    assert err.value.field == "model.data"


def test_bad_data_specs() -> None:
    with pytest.raises(InvalidInput, match="garch_t, bootstrap, gbm and student_t"):
        model_from_spec_or_data({"type": "merton_jump", "data": str(XRP)})
    with pytest.raises(InvalidInput):
        model_from_spec_or_data({"type": "gbm", "data": "/nonexistent/bars.csv"})
