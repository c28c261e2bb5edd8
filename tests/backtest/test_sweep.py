from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from levalign.backtest import sample_leads
from levalign.backtest.replay import NAIVE
from levalign.backtest.sweep import (
    KEY_COLUMNS,
    SweepCell,
    SweepResult,
    _cell_seed,
    cell_cohort,
    load_grid,
    sweep,
)
from levalign.cli import app
from levalign.errors import InvalidInput, Retryable
from levalign.samples import sample_cohort

# The XRP mean reverter replays ~1,700 five-minute bars with funding: the quickest sample lead.
LEAD = "xrp_mean_reverter"
PROFILE = {"max_leverage": 5, "min_liq_distance": 0.1, "margin_mode": "cross"}
MODES = ["proportional", "target_leverage"]
N = 3
SEED = 11


def grid(**changes: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "leads": [LEAD],
        "profiles": [PROFILE],
        "modes": MODES,
        "followers_per_cell": N,
        "seed": SEED,
    }
    return {**base, **changes}


@pytest.fixture(scope="module")
def serial() -> SweepResult:
    return sweep([LEAD], [PROFILE], MODES, followers_per_cell=N, seed=SEED, serial=True)


def cell(**changes: Any) -> SweepCell:
    base: dict[str, Any] = {
        "lead": 0,
        "profile": 0,
        "mode": 1,
        "lead_name": LEAD,
        "mode_name": "target_leverage",
        "profile_items": (("margin_mode", "cross"), ("max_leverage", 5.0)),
        "followers": 4,
        "seed": 99,
        "naive": True,
        "taker_fee": 0.0005,
        "sample_minutes": 60,
    }
    return SweepCell(**{**base, **changes})


# ------------------------------------------------------------------ cells


def test_cell_cohort_pairs_the_mode_with_naive_copiers_on_the_same_equities():
    # Arrange: a cell of 4 followers in target_leverage with a cross, 5x-capped profile
    c = cell()
    expected_equity = np.asarray(sample_cohort(4, 99)["equity"], dtype=np.float64)

    # Act
    cohort = cell_cohort(c)

    # Assert: 4 mode rows then 4 naive rows, the same equities drawn with the cell's seed
    assert cohort["group"].tolist() == ["target_leverage"] * 4 + [NAIVE] * 4
    assert cohort["id"].tolist() == list(range(8))
    np.testing.assert_array_equal(cohort["equity"][:4], expected_equity)
    np.testing.assert_array_equal(cohort["equity"][4:], expected_equity)
    assert (cohort["max_leverage"] == 5.0).all()
    assert (cohort["margin_mode"] == "cross").all()


def test_cell_cohort_without_naive_has_only_the_mode():
    cohort = cell_cohort(cell(naive=False))

    assert cohort["group"].tolist() == ["target_leverage"] * 4


def test_a_cells_seed_depends_on_its_place_and_the_sweep_seed_only():
    # the seed is spawned from (seed, lead, profile, mode): neighbours differ, repeats agree
    seeds = {_cell_seed(7, i, j, k) for i in range(2) for j in range(2) for k in range(2)}

    assert len(seeds) == 8
    assert _cell_seed(7, 1, 0, 1) == _cell_seed(7, 1, 0, 1)
    assert _cell_seed(7, 1, 0, 1) != _cell_seed(8, 1, 0, 1)


# ------------------------------------------------------------------ serial and distributed


def test_serial_sweep_has_a_row_per_cell_and_group_with_paired_equities(serial):
    table = serial.to_pandas()

    # 1 lead x 1 profile x 2 modes = 2 cells, each with the mode's group and naive copiers
    assert serial.cells == 2
    assert list(table.columns[: len(KEY_COLUMNS)]) == list(KEY_COLUMNS)
    assert table[["mode", "group"]].values.tolist() == [
        ["proportional", NAIVE],
        ["proportional", "proportional"],
        ["target_leverage", NAIVE],
        ["target_leverage", "target_leverage"],
    ]
    assert (table["followers"] == N).all()
    assert (table["lead"] == LEAD).all()
    assert json.loads(table["profile_json"][0]) == {
        "margin_mode": "cross",
        "max_leverage": 5.0,
        "min_liq_distance": 0.1,
    }
    # each cell's equities are sample_cohort(N, cell seed)'s, for both of its groups
    for k, mode in enumerate(MODES):
        rows = table[table["mode"] == mode]
        seed = _cell_seed(SEED, 0, 0, k)
        assert (rows["seed"] == seed).all()
        expected = float(np.sum(sample_cohort(N, seed)["equity"]))
        np.testing.assert_allclose(rows["equity_start"], expected, rtol=1e-12)
    # the two cells drew different followers
    assert table["equity_start"][0] != table["equity_start"][2]


def test_local_cluster_with_two_worker_processes_equals_the_serial_run(serial):
    # Act: the same grid on a LocalCluster of two worker processes
    distributed = sweep(
        [LEAD], [PROFILE], MODES, followers_per_cell=N, seed=SEED, n_workers=2, processes=True
    )

    # Assert: same rows in the same order, every number identical (NaN equal to NaN)
    assert distributed.cells == serial.cells
    pd.testing.assert_frame_equal(distributed.to_pandas(), serial.to_pandas(), check_exact=True)


def test_to_dict_is_json_with_none_for_nan(serial):
    data = json.loads(serial.to_json())

    assert data["cells"] == 2
    assert len(data["rows"]) == 4
    for row, raw in zip(data["rows"], serial.rows(), strict=True):
        for key, value in raw.items():
            if isinstance(value, float) and math.isnan(value):
                assert row[key] is None
            else:
                assert row[key] == value


# ------------------------------------------------------------------ validation


@pytest.mark.parametrize(
    ("changes", "field", "match"),
    [
        ({"modes": ["proportional", "yolo"]}, "modes[1]", "not a normalization mode"),
        ({"modes": []}, "modes", "modes is empty"),
        ({"leads": []}, "leads", "leads is empty"),
        ({"profiles": []}, "profiles", "profiles is empty"),
        ({"leads": ["no_such_lead"]}, "leads[0]", "neither a sample lead"),
        ({"profiles": [PROFILE, {"leverage_cap": 3}]}, "profiles[1].leverage_cap", "not a"),
        ({"profiles": [{"mode": "optimal"}]}, "profiles[0].mode", "sets it per cell"),
        ({"profiles": [{"margin_mode": "portfolio"}]}, "profiles[0].margin_mode", "one of"),
        ({"profiles": [{"max_leverage": "high"}]}, "profiles[0].max_leverage", "a number"),
        ({"followers_per_cell": 0}, "followers_per_cell", "at least 1"),
    ],
)
def test_grid_errors_name_the_field(changes, field, match):
    g = grid(**changes)

    with pytest.raises(InvalidInput, match=match) as info:
        sweep(
            g["leads"],
            g["profiles"],
            g["modes"],
            followers_per_cell=g["followers_per_cell"],
            serial=True,
        )

    assert info.value.field == field


def test_a_lead_file_without_bars_is_an_error_naming_its_bars(tmp_path):
    g = grid(leads=[str(sample_leads()[LEAD])])

    with pytest.raises(InvalidInput, match="has no bars") as info:
        load_grid(g, tmp_path)

    assert info.value.field == "leads[0].bars"


def test_unknown_grid_key_is_an_error():
    with pytest.raises(
        InvalidInput, match="unknown grid key 'profile': did you mean 'profiles'"
    ) as info:
        load_grid(grid(profile=[PROFILE]))

    assert info.value.field == "profile"


def test_unreachable_scheduler_is_retryable_within_the_timeout():
    # nothing listens on port 1 of the loopback
    with pytest.raises(Retryable, match="no Dask scheduler answered") as info:
        sweep(
            [LEAD],
            [PROFILE],
            MODES,
            followers_per_cell=N,
            scheduler="tcp://127.0.0.1:1",
            connect_timeout=2.0,
        )

    assert info.value.field == "scheduler"


def test_scheduler_without_a_protocol_is_invalid():
    with pytest.raises(InvalidInput, match="tcp://HOST:8786") as info:
        sweep([LEAD], [PROFILE], MODES, scheduler="localhost:8786")

    assert info.value.field == "scheduler"


# ------------------------------------------------------------------ CLI


def write_grid(folder: Path, data: dict[str, Any]) -> Path:
    path = folder / "grid.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def test_cli_sweep_serial_prints_and_writes_the_same_table_as_the_api(tmp_path, serial):
    path = write_grid(tmp_path, grid())
    out = tmp_path / "sweep.csv"

    result = CliRunner().invoke(app, ["sweep", str(path), "--serial", "--out", str(out)])

    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["cells"] == 2
    assert printed["out"] == str(out)
    assert printed["rows"] == serial.to_dict()["rows"]
    written = pd.read_csv(out)
    assert written["group"].tolist() == serial.to_pandas()["group"].tolist()
    np.testing.assert_allclose(written["pnl"], serial.to_pandas()["pnl"], rtol=1e-12)


def test_cli_sweep_with_a_lead_file_bars_and_funding_relative_to_the_grid(tmp_path, serial):
    # the sample lead given as files (history, bars, funding) next to the grid: same result
    lead_file = sample_leads()[LEAD]
    data = Path(str(lead_file)).parent.parent
    for name, src in (
        ("lead.csv.gz", lead_file),
        ("bars.csv.gz", data / "XRPUSDT_perp_5m_2021-11-15_2021-11-21.csv.gz"),
        ("funding.csv.gz", data / "XRPUSDT_perp_funding_8h_2021-11-18_2021-12-18.csv.gz"),
    ):
        (tmp_path / name).write_bytes(Path(src).read_bytes())
    entry = {"lead": "lead.csv.gz", "bars": "bars.csv.gz", "funding": "funding.csv.gz"}
    path = write_grid(tmp_path, grid(leads=[{**entry, "name": LEAD}]))

    result = CliRunner().invoke(app, ["sweep", str(path), "--serial"])

    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows"] == serial.to_dict()["rows"]


def test_cli_sweep_bad_mode_exits_2_naming_the_field(tmp_path):
    path = write_grid(tmp_path, grid(modes=["proportional", "martingale"]))

    result = CliRunner().invoke(app, ["sweep", str(path), "--serial"])

    assert result.exit_code == 2
    error = json.loads(result.stderr.strip().splitlines()[-1])["error"]
    assert error["kind"] == "invalid_input"
    assert error["field"] == "modes[1]"


def test_cli_sweep_rejects_an_unknown_out_suffix(tmp_path):
    path = write_grid(tmp_path, grid())

    result = CliRunner().invoke(app, ["sweep", str(path), "--out", str(tmp_path / "x.xlsx")])

    assert result.exit_code == 2
    assert "--out must end in" in result.stderr
