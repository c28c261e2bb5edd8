"""The one progress bar of long runs (Monte Carlo chunks, replayed bars, sweep cells)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager


def _ignore(completed: int) -> None:
    del completed


@contextmanager
def progress_bar(show: bool, total: int, what: str) -> Iterator[Callable[[int], None]]:
    """Yield ``update(completed)``, drawing a transient rich bar of ``total`` on stderr.

    The bar is drawn only when ``show`` is true and stderr is a terminal (never into logs or
    pipes); otherwise ``update`` does nothing. The bar is removed when the block exits, also
    on an error.
    """
    if not (show and sys.stderr.isatty()):
        yield _ignore
        return
    from rich.console import Console
    from rich.progress import Progress

    with Progress(console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(what, total=total)
        yield lambda completed: bar.update(task, completed=completed)
