"""Errors grouped by what the caller should do next.

=====================  ==========================================================
class                  what the caller does
=====================  ==========================================================
``InvalidInput``       fix the request: a field is missing, malformed or out of range
``Rejected``           accept a "no": an exchange rule or a risk limit refuses it
``Retryable``          try again later: network, rate limit, a database that went away
``ConfigurationError`` fix the setup: unknown preset or exchange, broken tier table
=====================  ==========================================================

Every error carries structured fields (``field``, ``value``, ``symbol`` ...) besides a message
that says what to change, so that the CLI and the HTTP API can report them as data.
"""

from __future__ import annotations

import math
from typing import Any


class LevalignError(Exception):
    """Base class of every error levalign raises on purpose.

    Parameters
    ----------
    message
        What went wrong and what to change, for a person.
    field
        Dotted path of the offending input field (``"event.price"``,
        ``"followers[3].equity"``), when there is one.
    value
        The offending value, when there is one.
    details
        Any further structured context.
    """

    kind = "error"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        value: Any = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.value = value
        self.details = dict(details or {})

    def to_dict(self) -> dict[str, Any]:
        """Return the error as JSON-ready data (``kind``, ``message``, ``field``, ...).

        Strict JSON: a non-finite number is written as a string (``"nan"``, ``"inf"``), any
        other non-JSON value as its ``repr``.
        """
        out: dict[str, Any] = {"kind": self.kind, "message": self.message}
        if self.field is not None:
            out["field"] = self.field
        if self.value is not None:
            out["value"] = _json_safe(self.value)
        if self.details:
            out["details"] = _json_safe(self.details)
        return out


class InvalidInput(LevalignError, ValueError):  # noqa: N818 - named for what the caller does
    """The request is wrong: fix the named field and send it again."""

    kind = "invalid_input"


class Rejected(LevalignError):  # noqa: N818 - named for what the caller does
    """An exchange rule or a risk limit says no (for example leverage above the tier maximum)."""

    kind = "rejected"


class Retryable(LevalignError):  # noqa: N818 - named for what the caller does
    """A transient failure (network, rate limit, storage): the same call may succeed later."""

    kind = "retryable"


class ConfigurationError(LevalignError):
    """The setup is wrong: unknown exchange or preset, unreadable or inconsistent tier table."""

    kind = "configuration"


def _json_safe(value: Any) -> Any:
    """``value`` with every non-finite float as a string and every non-JSON value as repr."""
    if type(value).__module__ == "numpy" and getattr(value, "ndim", None) == 0:
        value = value.item()  # a numpy scalar
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if value is None or isinstance(value, str | int | bool):
        return value
    if isinstance(value, dict):
        return {str(k): _json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_json_safe(v) for v in value]
    return repr(value)
