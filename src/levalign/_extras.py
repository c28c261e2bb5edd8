"""Optional dependencies: a clear error naming the extra to install when one is missing.

``pip install levalign`` installs the core (numpy, numba, pyarrow, pydantic, typer, rich); the
heavy parts are extras declared in ``pyproject.toml``:

===========  ===========================================  ====================================
extra        packages                                     needed by
===========  ===========================================  ====================================
``risk``     arch, scipy                                  GARCH volatility, closed-form P(liq)
``backtest`` plotly, matplotlib, dask, distributed        reports and plots, the Dask sweep
``live``     hyperliquid-python-sdk, eth-account, ...     the live copier and its store
===========  ===========================================  ====================================
"""

from __future__ import annotations

import importlib.util

from levalign.errors import ConfigurationError

__all__ = ["require"]


def require(extra: str, *modules: str) -> None:
    """Check that the top-level ``modules`` of the optional ``extra`` can be imported.

    Call it just before the lazy import of an optional dependency; it finds the modules
    without importing them.

    Raises
    ------
    ConfigurationError
        A module is not installed; the message says ``pip install 'levalign[<extra>]'``.
    """
    for name in modules:
        try:
            found = importlib.util.find_spec(name) is not None
        except ValueError:  # in sys.modules without a spec: blocked or half-imported
            found = False
        if not found:
            raise ConfigurationError(
                f"this needs the optional dependency {name!r}, which is not installed: "
                f"pip install 'levalign[{extra}]' (or uv sync --extra {extra})",
                field="extra",
                value=extra,
                details={"module": name},
            )
