r"""Lead-trader histories: the file format, loading, validation, and a lead source over them.

A lead history lists the lead's position changes, one row per fill. The documented format,
with examples, is ``docs/lead_history.md``. :class:`LeadHistorySource` replays a history as
a :class:`~levalign.sources.base.HistorySource`.

Positions form (primary)
------------------------
=====================  ========  ==========================================================
column                 required  meaning
=====================  ========  ==========================================================
``timestamp``          yes       ISO 8601 (UTC when it has no offset) or epoch milliseconds
``symbol``             yes       ccxt unified symbol of the lead's venue (``BTC/USDT:USDT``)
``price``              yes       fill price, positive
``position_after``     yes       signed contracts held after the fill (negative is short)
``equity``             yes       lead equity after the fill, settle currency, positive
``collateral_after``   no        isolated margin after the fill (absent: cross margin)
``stop_price``         no        the lead's stop; below the price for a long, above for a short
``leverage_setting``   no        the leverage *setting* on the lead's venue
``fee``                no        fee paid on the fill, settle currency (negative: rebate)
=====================  ========  ==========================================================

ccxt's camelCase spellings are accepted (``positionAfter``, ``collateralAfter``,
``stopPrice``, ``leverageSetting``); ``fee`` may be ccxt's ``{"cost": ..., "currency": ...}``.

Fills form
----------
``side`` (``buy`` or ``sell``) and ``amount`` (contracts, positive) replace
``position_after``; each symbol starts flat and the loader accumulates the fills into
positions. One file uses one form.

Rules
-----
* Within one symbol timestamps strictly increase (a file out of order, or two fills of one
  symbol at the same instant, is an error: merge simultaneous fills into one row). Rows of
  different symbols may interleave; the history is ordered by time, file order breaking ties.
* Unknown columns are errors, so that a misspelt optional column is never silently dropped.
* With markets given, every symbol must resolve (:meth:`levalign.markets.Markets.resolve`)
  and every position must be a whole number of the market's amount steps: an **error** by
  default (``lot_check="error"``), because quantities are exact in levalign (docs/design.md,
  "Contracts users depend on") and a position off the lot grid means a unit mix-up (base
  units instead of contracts) or the wrong venue's markets. ``lot_check="warn"`` emits
  :class:`LotSizeWarning` instead; ``"off"`` skips the check.

Converting to events, for row :math:`j` of symbol :math:`s`:
``lead_position_before`` is the symbol's previous ``position_after`` (0 for its first row);
``lead_total_notional`` is :math:`\sum_t |q_t|\,N_t(p_t)` over every symbol the lead holds
after the fill, each at its most recent fill price in the history (``MarketSpec.notional``);
``lead_collateral_before`` is the symbol's previous ``collateral_after`` (0 when the lead was
flat and this row states a collateral). ``timestamp`` is epoch milliseconds, as in ccxt.
"""

from __future__ import annotations

from collections.abc import Iterator

from levalign.markets import Markets
from levalign.schemas import LeadEvent
from levalign.sources._lead_history import (
    COLUMNS,
    FILL_COLUMNS,
    LeadHistory,
    LotCheck,
    LotSizeWarning,
    format_timestamp,
    history_text,
    load_lead_history,
    parse_timestamp,
    write_lead_history,
)
from levalign.sources.base import Cursor

__all__ = [
    "COLUMNS",
    "FILL_COLUMNS",
    "LeadHistory",
    "LeadHistorySource",
    "LotCheck",
    "LotSizeWarning",
    "format_timestamp",
    "history_text",
    "load_lead_history",
    "parse_timestamp",
    "write_lead_history",
]

_MS_NS = 1_000_000  # ns per ms


class LeadHistorySource:
    """A lead history as a :class:`~levalign.sources.base.HistorySource`, row by row.

    Row ``j`` (time order) is the event ``f"{name}-{j}"`` with cursor
    ``Cursor(timestamp in ms, j)``; the events after a cursor are the rows after its ``seq``.

    Parameters
    ----------
    history
        The lead's history (:func:`load_lead_history`).
    markets
        The lead venue's markets (see :meth:`LeadHistory.events`).
    lot_check
        See :meth:`LeadHistory.validate`.

    Raises
    ------
    InvalidInput
        What :meth:`LeadHistory.validate` rejects.
    """

    def __init__(
        self, history: LeadHistory, markets: Markets, *, lot_check: LotCheck = "error"
    ) -> None:
        self.history = history
        self._events = list(history.events(markets, lot_check=lot_check))

    def events(self, after: Cursor | None = None) -> Iterator[tuple[LeadEvent, Cursor]]:
        """The history's events after ``after``, oldest first, each with its cursor."""
        start = 0 if after is None else after.seq + 1
        ts = self.history.timestamp
        for j in range(start, len(self._events)):
            yield self._events[j], Cursor(int(ts[j]) // _MS_NS, j)
