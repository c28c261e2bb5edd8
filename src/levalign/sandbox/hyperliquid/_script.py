"""A scripted lead: a lead-history file played as fills on the sandbox, over bundled candles.

The timeline merges the lead's fills (docs/lead_history.md, any venue's symbols: they resolve
to Hyperliquid's coin of the same base asset) with the bundled candles of the coins it trades
(their closes move the mids between fills). One *step* is one timeline entry: a candle close
sets the mid; a lead fill sets the mid to the fill's price (rounded to a valid price), trades
the lead account to the row's ``position_after`` and sets its USDC balance so that its account
value is the row's ``equity``. Candles more than a minute before the first fill or after the
last are left out.
"""

from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from importlib import resources
from pathlib import Path

from levalign.markets import Markets

__all__ = ["LeadScript", "Step"]


@dataclass(frozen=True)
class Step:
    """One timeline entry: a candle close (``position_after`` None) or a lead fill."""

    time_ms: int
    coin: str
    price: Decimal
    position_after: Decimal | None = None
    equity: Decimal | None = None
    fee: Decimal = Decimal(0)
    leverage: int | None = None

    @property
    def is_fill(self) -> bool:
        """True for a lead fill."""
        return self.position_after is not None


def _dec(value: float) -> Decimal:
    return Decimal(repr(float(value)))


def _candle_closes(coin: str) -> list[tuple[int, Decimal]]:
    """``(close time ms, close)`` of the bundled candles of ``coin`` (none if not bundled)."""
    folder = resources.files("levalign.data")
    names = sorted(
        p.name
        for p in folder.iterdir()
        if p.name.startswith(f"{coin}USDT_") and "funding" not in p.name and p.name.endswith(".gz")
    )
    if not names:
        return []
    raw = gzip.decompress(folder.joinpath(names[0]).read_bytes()).decode()
    rows = list(csv.reader(io.StringIO(raw)))
    opens = [int(datetime.fromisoformat(r[0]).timestamp() * 1000) for r in rows[1:]]
    close_col = rows[0].index("close")
    interval = opens[1] - opens[0] if len(opens) > 1 else 60_000
    return [(t + interval - 1, Decimal(r[close_col])) for t, r in zip(opens, rows[1:], strict=True)]


class LeadScript:
    """The merged timeline and a cursor into it.

    Parameters
    ----------
    steps
        Timeline entries in time order.
    """

    def __init__(self, steps: list[Step]) -> None:
        self.steps = steps
        self.position = 0
        self.fills_total = sum(1 for s in steps if s.is_fill)
        self.fills_played = 0

    @classmethod
    def from_file(cls, path: str | Path, markets: Markets) -> LeadScript:
        """Build the timeline of a lead-history file over the bundled candles.

        Raises
        ------
        InvalidInput
            The file is unreadable or invalid (see docs/lead_history.md), or a symbol has no
            Hyperliquid market.
        """
        from levalign.sources.replay import load_lead_history

        history = load_lead_history(path)
        fills: list[Step] = []
        coins: set[str] = set()
        for i in range(len(history)):
            # the lead history's symbols are another venue's (the bundled leads trade Binance's
            # BTC/USDT:USDT): copied to the Hyperliquid perpetual of the same base asset
            symbol = markets.resolve(
                str(history.symbol[i]), field=f"rows[{i}].symbol", from_venue="the lead history"
            )
            coin = markets[symbol].id
            coins.add(coin)
            lev = float(history.leverage_setting[i])
            fee = float(history.fee[i])
            fills.append(
                Step(
                    time_ms=int(history.timestamp[i]) // 1_000_000,  # stored in ns
                    coin=coin,
                    price=_dec(history.price[i]),
                    position_after=_dec(history.position_after[i]),
                    equity=_dec(history.equity[i]),
                    fee=Decimal(0) if math.isnan(fee) else _dec(fee),
                    leverage=None if math.isnan(lev) else int(lev),
                )
            )
        if not fills:
            return cls([])
        first, last = fills[0].time_ms, fills[-1].time_ms
        candles = [
            Step(time_ms=t, coin=coin, price=px)
            for coin in sorted(coins)
            for t, px in _candle_closes(coin)
            if first - 60_000 <= t <= last
        ]
        # candles before fills at one instant: the fill's price is the last word
        timeline = sorted(
            [(s.time_ms, 0, n, s) for n, s in enumerate(candles)]
            + [(s.time_ms, 1, n, s) for n, s in enumerate(fills)]
        )
        return cls([entry[3] for entry in timeline])

    @property
    def done(self) -> bool:
        """True when every step has been played."""
        return self.position >= len(self.steps)

    def next_step(self) -> Step | None:
        """Take the next step (None at the end)."""
        if self.done:
            return None
        step = self.steps[self.position]
        self.position += 1
        if step.is_fill:
            self.fills_played += 1
        return step

    def delay_ms(self) -> int:
        """Script time between the last step taken and the next one (0 at either end)."""
        if self.position == 0 or self.done:
            return 0
        return self.steps[self.position].time_ms - self.steps[self.position - 1].time_ms

    def status(self) -> dict[str, int | bool]:
        """Position in the timeline, for the control plane."""
        return {
            "step": self.position,
            "steps_total": len(self.steps),
            "fills_played": self.fills_played,
            "fills_total": self.fills_total,
            "done": self.done,
        }
