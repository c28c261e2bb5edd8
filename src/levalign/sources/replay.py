r"""Lead-trader histories: the file format, loading, validation, and a lead source over them.

A lead history lists the lead's position changes, one row per fill. The documented format,
with examples, is ``docs/lead_history.md``. :class:`LeadHistorySource` replays a history as
a :class:`~levalign.sources.base.LeadSource`.

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

import math
from collections.abc import AsyncIterator

from levalign.errors import InvalidInput
from levalign.markets import Markets
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
from levalign.sources.base import LeadState, SourceEvent, SourceItem

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
    """A lead history as a :class:`~levalign.sources.base.LeadSource`, row by row.

    It yields a :class:`~levalign.sources.base.LeadState` (the lead before the first event it
    yields: flat at the start of the history), then row ``j`` (time order) as the event
    ``f"{name}-{j}"`` with cursor ``str(j)`` and trade id ``j``. Given the cursor of a
    committed event, it resumes after that row. A file has no gaps.

    Parameters
    ----------
    history
        The lead's history (:func:`load_lead_history`).
    markets
        The lead venue's markets (see :meth:`LeadHistory.events`).
    cursor
        The last committed cursor, or None to start from the first row.
    lot_check
        See :meth:`LeadHistory.validate`.

    Raises
    ------
    InvalidInput
        What :meth:`LeadHistory.validate` rejects; a cursor that is not a row of the history.
    """

    def __init__(
        self,
        history: LeadHistory,
        markets: Markets,
        *,
        cursor: str | None = None,
        lot_check: LotCheck = "error",
    ) -> None:
        self.history = history
        self._events = list(history.events(markets, lot_check=lot_check))
        self._start = 0 if cursor is None else _row_of(cursor, len(history)) + 1
        self._closed = False

    def state(self) -> LeadState:
        """The lead just before the first event this source yields (its positions, equity)."""
        h, start = self.history, self._start
        if start == 0:
            fee = float(h.fee[0]) if math.isfinite(h.fee[0]) else 0.0
            return LeadState(int(h.timestamp[0]) // _MS_NS, float(h.equity[0]) + fee, {}, True)
        positions: dict[str, float] = {}
        prices: dict[str, float] = {}
        for j in range(start):
            symbol = str(h.symbol[j])
            positions[symbol] = float(h.position_after[j])
            prices[symbol] = float(h.price[j])
        held = {s: q for s, q in positions.items() if q != 0.0}
        return LeadState(
            int(h.timestamp[start - 1]) // _MS_NS,
            float(h.equity[start - 1]),
            held,
            True,
            {s: prices[s] for s in held},
        )

    async def events(self) -> AsyncIterator[SourceItem]:
        """The lead's state, then the history's events after the cursor, oldest first."""
        yield self.state()
        for j in range(self._start, len(self._events)):
            if self._closed:
                return
            yield SourceEvent(self._events[j], str(j), (j,), "stream")

    async def close(self) -> None:
        """Stop: :meth:`events` ends before its next event."""
        self._closed = True


def _row_of(cursor: str, rows: int) -> int:
    """The history row a cursor names."""
    row = int(cursor) if cursor.isdigit() else -1
    if not 0 <= row < rows:
        raise InvalidInput(
            f"cursor {cursor!r} is not a row of this lead history (0 to {rows - 1})",
            field="cursor",
            value=cursor,
        )
    return row
