from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from levalign.errors import InvalidInput
from levalign.risk import greeks, implied_volatility


def test_black_scholes_hull_example_15_6():
    # Hull, Options, Futures, and Other Derivatives, Example 15.6: S=42, K=40, r=10%, sigma=20%,
    # T=0.5: d1 = 0.7693, d2 = 0.6278, c = 4.76, p = 0.81
    assert greeks(42, 40, 0.5, 0.2, 0.1).price == pytest.approx(4.76, abs=0.005)
    assert greeks(42, 40, 0.5, 0.2, 0.1, kind="put").price == pytest.approx(0.81, abs=0.005)


def test_greeks_hull_chapter_19_example():
    # Hull, "The Greek Letters": S=49, K=50, r=5%, sigma=20%, T=20 weeks (0.3846):
    # price 2.40, delta 0.522, gamma 0.066, vega 12.1, theta -4.31 per year, rho 8.91
    g = greeks(49, 50, 0.3846, 0.2, 0.05)
    assert g.price == pytest.approx(2.40, abs=0.005)
    assert g.delta == pytest.approx(0.522, abs=0.0005)
    assert g.gamma == pytest.approx(0.066, abs=0.0005)
    assert g.vega == pytest.approx(12.1, abs=0.05)
    assert g.theta == pytest.approx(-4.31, abs=0.005)
    assert g.rho == pytest.approx(8.91, abs=0.005)


def test_black76_hull_futures_put_example():
    # Hull, ch. 18 (Black's model): put on crude oil futures, F=20, K=20, r=9%, T=4 months,
    # sigma=25%: d1 = 0.07216, p = e^{-0.03} (20*0.5288 - 20*0.4712) = 1.12
    assert greeks(20, 20, 4 / 12, 0.25, 0.09, kind="put", model="black76").price == pytest.approx(
        1.12, abs=0.005
    )


params = {
    "spot": st.floats(50, 200),
    "strike": st.floats(50, 200),
    "t": st.floats(0.02, 3),
    "sigma": st.floats(0.05, 1.5),
    "rate": st.floats(-0.02, 0.1),
    "kind": st.sampled_from(["call", "put"]),
    "model": st.sampled_from(["black_scholes", "black76", "inverse"]),
}


@given(**params)
def test_greeks_equal_finite_differences(spot, strike, t, sigma, rate, kind, model):
    g = greeks(spot, strike, t, sigma, rate, kind, model)

    def price(**kw):
        args = {"spot": spot, "strike": strike, "t": t, "sigma": sigma, "rate": rate, **kw}
        return greeks(kind=kind, model=model, **args).price

    def delta(s):
        return greeks(s, strike, t, sigma, rate, kind, model).delta

    # central differences, each step on its variable's own scale: spot moves on sigma sqrt(T)
    hs, ds, dt, dr = 1e-3 * sigma * math.sqrt(t), sigma * 1e-4, t * 1e-4, 1e-5
    d_spot = (price(spot=spot * (1 + hs)) - price(spot=spot * (1 - hs))) / (2 * spot * hs)
    if model == "inverse":  # coin delta is S * d(coin price)/dS (Deribit's definition)
        d_spot *= spot
    assert g.delta == pytest.approx(d_spot, rel=1e-5, abs=1e-7)
    d_sigma = (price(sigma=sigma + ds) - price(sigma=sigma - ds)) / (2 * ds)
    assert g.vega == pytest.approx(d_sigma, rel=1e-5, abs=1e-6)
    d_t = (price(t=t + dt) - price(t=t - dt)) / (2 * dt)
    assert g.theta == pytest.approx(-d_t, rel=1e-4, abs=1e-5)
    d_rate = (price(rate=rate + dr) - price(rate=rate - dr)) / (2 * dr)
    assert g.rho == pytest.approx(d_rate, rel=1e-5, abs=1e-6)
    d_delta = (delta(spot * (1 + hs)) - delta(spot * (1 - hs))) / (2 * spot * hs)
    assert g.gamma == pytest.approx(d_delta, rel=1e-4, abs=1e-6)


@given(**{k: v for k, v in params.items() if k not in ("kind", "model")})
def test_put_call_parity(spot, strike, t, sigma, rate):
    # c - p = S - K e^{-rT}
    c = greeks(spot, strike, t, sigma, rate, "call").price
    p = greeks(spot, strike, t, sigma, rate, "put").price
    assert c - p == pytest.approx(spot - strike * math.exp(-rate * t), abs=1e-9 * spot)


def test_inverse_price_is_usd_price_in_coin():
    usd = greeks(30_000, 32_000, 0.25, 0.6)
    coin = greeks(30_000, 32_000, 0.25, 0.6, model="inverse")
    assert coin.price == pytest.approx(usd.price / 30_000)
    assert coin.delta == pytest.approx(usd.delta - usd.price / 30_000)


@given(
    sigma=st.floats(0.05, 2.0),
    kind=st.sampled_from(["call", "put"]),
    model=st.sampled_from(["black_scholes", "black76", "inverse"]),
)
def test_implied_volatility_round_trip(sigma, kind, model):
    price = greeks(100, 110, 0.5, sigma, 0.03, kind, model).price
    assert implied_volatility(price, 100, 110, 0.5, 0.03, kind, model) == pytest.approx(
        sigma, rel=1e-6
    )


def test_implied_volatility_of_an_impossible_price():
    # a call cannot be worth more than the spot
    with pytest.raises(InvalidInput, match="price 150 is outside"):
        implied_volatility(150, 100, 100, 1.0)


@pytest.mark.parametrize(
    ("field", "kwargs"),
    [
        ("sigma", {"sigma": 0.0}),
        ("t", {"t": -1.0}),
        ("spot", {"spot": math.nan}),
        ("kind", {"kind": "straddle"}),
    ],
)
def test_bad_input_names_the_field(field, kwargs):
    args = {"spot": 100.0, "strike": 100.0, "t": 1.0, "sigma": 0.5, **kwargs}
    with pytest.raises(InvalidInput, match=field) as info:
        greeks(**args)
    assert info.value.field == field
