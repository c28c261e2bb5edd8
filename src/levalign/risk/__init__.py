"""Leverage alignment: option greeks, liquidation probability, optimal leverage (DESIGN §5).

This release has the closed forms; the Monte Carlo engine, volatility estimators and the
wiring into normalization follow.
"""

from levalign.risk.first_passage import kelly_fraction, liquidation_probability
from levalign.risk.greeks import Greeks, greeks, implied_volatility

__all__ = ["Greeks", "greeks", "implied_volatility", "kelly_fraction", "liquidation_probability"]
