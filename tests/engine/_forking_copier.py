"""A copier launcher for the crash test: imports once, then forks one copier process per start.

``python -m tests.engine._forking_copier CONFIG.toml`` reads commands on stdin:

``start``
    fork a child that runs :func:`levalign.engine.copier.run_copy` on the configuration
    (exactly what ``levalign copy CONFIG.toml`` runs) and print ``pid <PID>``;
``reap <PID>``
    wait for that child and print ``exit <code>`` (``-9`` for a SIGKILL).

The child is an ordinary process that the test kills with SIGKILL; forking from a parent that
has already imported levalign, the SDK and SQLAlchemy makes a restart cost milliseconds
instead of the seconds a fresh interpreter spends importing, which keeps 50 kills within the
test's time budget. The parent loads the sizing kernels (one tiny decision) so that no
child spends seconds loading them; it runs with numba's ``workqueue`` threading layer and one
thread (set by the test), which starts no thread and is safe to fork, unlike OpenMP. It opens
no database and no socket before forking.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def main() -> None:
    import levalign.engine.copier
    import levalign.engine.decide
    import levalign.engine.dispatcher
    import levalign.sources.hyperliquid
    import levalign.venues.hyperliquid
    from levalign.engine.config import load_config

    _warm_up()
    config_path = Path(sys.argv[1])
    for line in sys.stdin:
        command, _, arg = line.strip().partition(" ")
        if command == "start":
            pid = os.fork()
            if pid == 0:
                code = 0
                try:
                    levalign.engine.copier.run_copy(load_config(config_path))
                except BaseException:  # noqa: BLE001 - the child reports and exits
                    import traceback

                    traceback.print_exc()
                    code = 1
                finally:
                    sys.stderr.flush()
                    os._exit(code)
            sys.stdout.write(f"pid {pid}\n")
        elif command == "reap":
            _, status = os.waitpid(int(arg), 0)
            sys.stdout.write(f"exit {os.waitstatus_to_exitcode(status)}\n")
        sys.stdout.flush()


def _warm_up() -> None:
    """One decision for two followers: loads the compiled kernels into this process."""
    import numpy as np

    from levalign.engine.decide import decide
    from levalign.markets import load_markets
    from levalign.normalize import Cohort
    from levalign.schemas import LeadEvent

    cohort = Cohort.from_table(
        {"id": np.array(["a", "b"], dtype=object), "equity": np.array([1000.0, 2000.0])}
    )
    event = LeadEvent(
        event_id="warm-up",
        symbol="SOL/USDC:USDC",
        price=22.5,
        lead_equity=100_000.0,
        lead_position_before=0.0,
        lead_position_after=100.0,
    )
    decide(event, cohort, load_markets("hyperliquid"))


if __name__ == "__main__":
    main()
