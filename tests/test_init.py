"""The package's public names load lazily, and importing levalign loads no heavy library."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

import levalign

# libraries that a start-up must not pay for: each takes from tenths of a second to seconds
HEAVY = ("numba", "scipy", "arch", "plotly", "dask", "matplotlib", "pandas", "polars")
EXAMPLES = Path(__file__).parent.parent / "examples"


def _loaded_after(code: str) -> set[str]:
    """The heavy top-level packages in ``sys.modules`` after running ``code`` in a new process."""
    probe = (
        f"{code}\nimport json, sys\n"
        f"print(json.dumps(sorted({{m.partition('.')[0] for m in sys.modules}} & {set(HEAVY)!r})))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def test_import_levalign_loads_no_heavy_library():
    assert _loaded_after("import levalign") == set()


def test_cli_help_loads_no_heavy_library():
    code = (
        "import sys\nfrom levalign.cli import main\nsys.argv = ['levalign', '--help']\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()"
    )
    assert _loaded_after(code) == set()


def test_margin_command_loads_no_risk_or_backtest_library():
    # numba itself imports scipy when it is installed (its version check), so the margin
    # kernels bring scipy with them; the risk and backtest libraries stay out
    account = str(EXAMPLES / "account.json")
    code = (
        "import sys\nfrom levalign.cli import main\n"
        f"sys.argv = ['levalign', 'margin', {account!r}]\n"
        "import contextlib, io\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main()"
    )
    risk_or_backtest = {"arch", "plotly", "dask", "matplotlib", "pandas", "polars"}
    assert _loaded_after(code) & risk_or_backtest == set()


def test_public_names_resolve_to_their_definitions():
    from levalign.errors import InvalidInput
    from levalign.normalize import Cohort
    from levalign.normalize import normalize as normalize_function

    assert levalign.Cohort is Cohort
    assert levalign.InvalidInput is InvalidInput
    # the function, not the module of the same name, whatever was imported first
    assert levalign.normalize is normalize_function


def test_dir_lists_the_public_names():
    assert set(levalign.__all__) <= set(dir(levalign))
    for name in levalign.__all__:
        getattr(levalign, name)


def test_an_unknown_name_is_an_attribute_error():
    with pytest.raises(AttributeError, match="has no attribute 'nope'"):
        _ = levalign.nope
