"""File references inside JSON inputs (requests, specs, grids)."""

from __future__ import annotations

from pathlib import Path


def beside(base: Path, value: str) -> str:
    """``value`` taken relative to ``base``, the folder of the file naming it, if it is there.

    Otherwise ``value`` is returned as given (relative to the working directory, or absolute).
    """
    candidate = base / value
    return str(candidate) if candidate.exists() else value
