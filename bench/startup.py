"""Start-up of the command line: fresh processes, as a user types the commands.

Each figure is the median wall time of a new process over several runs (after one untimed
run that warms the file cache and numba's on-disk cache), and its ratio to ``python -c pass``
measured in the same run (the interpreter's own start-up on this machine):

- ``import levalign``: the package alone (lazy: no numba, no risk engine);
- ``levalign --help``: the command line's help (Typer and rich, no subcommand module);
- ``levalign margin examples/account.json``: a two-position account end to end (reading,
  validation, the margin kernels, JSON out).
"""

from __future__ import annotations

import functools
import subprocess
import sys
from pathlib import Path

from bench._timing import median_seconds

RUNS = 7
ROOT = Path(__file__).parent.parent
LEVALIGN = str(Path(sys.executable).parent / "levalign")

COMMANDS = {
    "python": [sys.executable, "-c", "pass"],
    "import": [sys.executable, "-c", "import levalign"],
    "help": [LEVALIGN, "--help"],
    "margin": [LEVALIGN, "margin", str(ROOT / "examples" / "account.json")],
}


def _run(command: list[str]) -> None:
    subprocess.run(command, check=True, capture_output=True, timeout=300)


def run() -> dict[str, float]:
    """Median seconds of each command and its ratio to ``python -c pass``."""
    out: dict[str, float] = {}
    for name, command in COMMANDS.items():
        median, _ = median_seconds(functools.partial(_run, command), RUNS, warmup=1)
        out[f"{name}_median_s"] = median
    base = out["python_median_s"]
    for name in COMMANDS:
        out[f"{name}_over_python"] = out[f"{name}_median_s"] / base
    return out


if __name__ == "__main__":
    for key, value in run().items():
        print(f"{key:<24}{value:.3f}")
