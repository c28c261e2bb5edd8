from __future__ import annotations

import math

import numpy as np
import pytest

from levalign.errors import InvalidInput
from levalign.exposure import effective_leverage, liquidation_distance


def test_effective_leverage_is_gross_notional_over_equity():
    # a "20x" lead posting 5% of equity: notional 20 * 5% * 10,000 = 10,000 -> 1x
    assert effective_leverage([10_000.0], 10_000.0) == pytest.approx(1.0)
    # long 30k and short 20k count gross: 50k / 10k = 5x
    assert effective_leverage([30_000.0, -20_000.0], 10_000.0) == pytest.approx(5.0)


@pytest.mark.parametrize("equity", [0.0, -1.0, math.nan, math.inf])
def test_effective_leverage_needs_positive_equity(equity):
    with pytest.raises(InvalidInput, match="equity must be a positive number"):
        effective_leverage([1.0], equity)


def test_effective_leverage_rejects_nan_notional():
    with pytest.raises(InvalidInput, match="notionals must be finite"):
        effective_leverage([math.nan], 1.0)


def test_liquidation_distance():
    # long at 20,000 liquidated at 18,000: 10% away; short liquidated at 21,000: 5% away
    np.testing.assert_allclose(
        liquidation_distance([20_000, 20_000], [18_000, 21_000]), [0.1, 0.05]
    )


def test_liquidation_distance_needs_positive_mark():
    with pytest.raises(InvalidInput, match="mark_price must be positive"):
        liquidation_distance([0.0], [1.0])
