from __future__ import annotations

import numpy as np
import pyarrow as pa

from levalign.demo import run_scenario
from levalign.samples import DEMO_COHORT_SEED, DEMO_COHORT_SIZE, load_demo_cohort, sample_cohort


def test_bundled_cohort_is_the_documented_generator_output():
    bundled = load_demo_cohort()
    generated = pa.table(sample_cohort(DEMO_COHORT_SIZE, DEMO_COHORT_SEED))
    assert bundled.column_names == generated.column_names
    for name in generated.column_names:  # NaN buffers compare equal here, unlike Table.equals
        np.testing.assert_array_equal(
            bundled.column(name).to_numpy(), generated.column(name).to_numpy(), name
        )


def test_crash_scenario_outcome():
    out = run_scenario()
    # the real low of the March 2023 crash in the bundled Binance.US data
    assert out.crash_low == 19_565.40
    # the lead, 7x on cross, keeps ~13.9% to liquidation and survives the 11.9% fall
    assert out.lead_liquidation_price < out.crash_low
    # a naive copy at the lead's 20x setting on isolated margin keeps ~5% and cannot survive
    assert out.naive_liquidated > 0.95 * DEMO_COHORT_SIZE
    # followers left at the default buffer (the lead's own distance) survive what the lead survives
    default = {label: (liq, of) for label, liq, of in out.liquidated_by_buffer}[
        "lead's distance (default)"
    ]
    assert default[0] == 0
    assert default[1] > 1_000
    # every liquidation among normalized copies belongs to a follower that chose a buffer
    # smaller than the fall (0% or 10% of price)
    chosen = {label: liq for label, liq, _ in out.liquidated_by_buffer}
    assert chosen["20% of price"] == 0
    assert chosen["30% of price"] == 0
    assert np.count_nonzero(out.result["side"] != 0) > 0.9 * DEMO_COHORT_SIZE


def test_demo_command_prints_summary():
    from typer.testing import CliRunner

    from levalign.cli import app

    result = CliRunner().invoke(
        app, ["demo", "--single-event", "--followers", "500", "--seed", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "naive" in result.stdout
    assert "levalign normalized" in result.stdout
