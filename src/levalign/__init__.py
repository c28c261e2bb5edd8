"""levalign: size copied crypto-derivatives trades by risk, not by the lead's leverage setting.

The few names most users need::

    import levalign

    markets = levalign.load_markets("binance")
    result = levalign.normalize(event, followers, markets)   # one lead event, whole cohort
    cuts = levalign.derisk("BTC/USDT:USDT", 19_500.0, followers, markets)  # price, no fill
    report = levalign.margin_report(account)                 # margin and liquidation of an account

Everything else lives in the subject modules: :mod:`levalign.markets`, :mod:`levalign.margin`,
:mod:`levalign.normalize`, :mod:`levalign.exposure`, :mod:`levalign.schemas`,
:mod:`levalign.errors`.

The names below load on first use (PEP 562): ``import levalign`` loads neither numba nor the
risk engine, so the command line starts fast.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from levalign.errors import (
        ConfigurationError,
        InvalidInput,
        LevalignError,
        Rejected,
        Retryable,
    )
    from levalign.margin import margin_report
    from levalign.markets import load_markets
    from levalign.normalize import Cohort, NormalizeResult, Reason, derisk, normalize
    from levalign.schemas import Account, LeadEvent, Position

__version__ = "0.1.0"

#: where each public name is defined
_WHERE = {
    "Account": "schemas",
    "Cohort": "normalize",
    "ConfigurationError": "errors",
    "InvalidInput": "errors",
    "LeadEvent": "schemas",
    "LevalignError": "errors",
    "NormalizeResult": "normalize",
    "Position": "schemas",
    "Reason": "normalize",
    "Rejected": "errors",
    "Retryable": "errors",
    "derisk": "normalize",
    "load_markets": "markets",
    "margin_report": "margin",
    "normalize": "normalize",
}

__all__ = [
    "Account",
    "Cohort",
    "ConfigurationError",
    "InvalidInput",
    "LeadEvent",
    "LevalignError",
    "NormalizeResult",
    "Position",
    "Reason",
    "Rejected",
    "Retryable",
    "__version__",
    "derisk",
    "load_markets",
    "margin_report",
    "normalize",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'levalign' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"levalign.{module}"), name)
    globals()[name] = value  # later look-ups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


class _Package(types.ModuleType):
    """The package module: ``levalign.normalize`` stays the function once its module loads.

    The import system binds every loaded submodule on its package (``setattr``); the public
    function ``normalize`` shares its module's name, and the function wins, as it does for
    ``from levalign import normalize``.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        if name == "normalize" and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package
