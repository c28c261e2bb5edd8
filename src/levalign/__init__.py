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
"""

from levalign.errors import ConfigurationError, InvalidInput, LevalignError, Rejected, Retryable
from levalign.margin import margin_report
from levalign.markets import load_markets
from levalign.normalize import Cohort, NormalizeResult, Reason, derisk, normalize
from levalign.schemas import Account, LeadEvent, Position

__version__ = "0.1.0"

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
