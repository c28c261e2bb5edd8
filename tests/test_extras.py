"""A missing optional dependency is a ConfigurationError that names the extra to install."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from levalign._extras import require
from levalign.errors import ConfigurationError

EXAMPLES = Path(__file__).parent.parent / "examples"


def test_installed_modules_pass():
    require("risk", "numpy", "json")


def test_a_missing_module_names_its_extra():
    with pytest.raises(ConfigurationError, match=r"pip install 'levalign\[risk\]'") as info:
        require("risk", "numpy", "levalign_no_such_module")
    assert info.value.field == "extra"
    assert info.value.value == "risk"
    assert info.value.details == {"module": "levalign_no_such_module"}


def _run_blocked(blocked: list[str], code: str) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a new process where the ``blocked`` modules cannot be imported."""
    # a None entry in sys.modules is how Python marks a module as not importable
    prelude = f"import sys\nfor name in {blocked!r}:\n    sys.modules[name] = None\n"
    return subprocess.run(
        [sys.executable, "-c", prelude + code],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )


def test_blocked_module_is_reported_as_missing():
    code = (
        "from levalign._extras import require\nfrom levalign.errors import ConfigurationError\n"
        "try:\n    require('risk', 'scipy')\n"
        "except ConfigurationError as e:\n    print(e.message)\n"
    )
    out = _run_blocked(["scipy"], code)
    assert out.returncode == 0, out.stderr
    assert "pip install 'levalign[risk]'" in out.stdout


def test_vol_command_without_arch_says_which_extra(tmp_path):
    # the GARCH estimator needs arch: the command exits 4 with the extra to install
    rng_code = (
        "import numpy as np\n"
        "rng = np.random.default_rng(1)\n"
        "close = 20000 * np.exp(np.cumsum(rng.normal(0, 0.002, 3000)))\n"
        f"with open({str(tmp_path / 'bars.csv')!r}, 'w') as f:\n"
        "    f.write('timestamp,open,high,low,close\\n')\n"
        "    for i, c in enumerate(close):\n"
        "        t = 1677628800000 + i * 3600000\n"
        "        f.write(f'{t},{c},{c * 1.001},{c * 0.999},{c}\\n')\n"
    )
    subprocess.run([sys.executable, "-c", rng_code], check=True, timeout=120)
    code = (
        "from levalign.cli import main\n"
        f"sys.argv = ['levalign', 'vol', {str(tmp_path / 'bars.csv')!r}]\n"
        "main()\n"
    )
    out = _run_blocked(["arch"], code)
    assert out.returncode == 4, out.stderr
    error = json.loads(out.stderr.strip().splitlines()[-1])["error"]
    assert error["kind"] == "configuration"
    assert "pip install 'levalign[risk]'" in error["message"]
