"""The sandbox's exchange: accounts, orders, matching against the mid, fills, margin.

Everything here is synchronous and deterministic: order ids, trade ids and hashes come from
counters, prices and sizes are :class:`decimal.Decimal`, and the only input from outside is
the clock. The server calls it from one event loop, so it needs no locks. Every change that a
websocket subscriber may see is appended to :attr:`Engine.outbox` as ``(channel, user,
payload)``; the server drains and publishes it after each request.

Rules (Hyperliquid docs, "Tick and lot size", "Order types", "Margining", "Fees"):

* a size has at most ``szDecimals`` decimals; a price at most 5 significant figures (integers
  always allowed) and at most ``6 - szDecimals`` decimals;
* an order's value ``sz · limitPx`` is at least $10, unless the order only reduces a position;
* a reduce-only order must be opposite to the position and is clipped to its size;
* opening needs free margin of ``sz · mid / leverage`` (cross: account value less the margin
  of every position; isolated: the same, then moved into the position);
* a limit that crosses the mid fills at once, in full, at the mid (moved by
  ``slippage_bps`` against the taker, never beyond the limit): taker fee; a resting order
  fills at its limit price when the mid reaches it: maker fee.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field
from decimal import ROUND_HALF_EVEN, Decimal, InvalidOperation
from importlib import resources
from typing import Any

from levalign.margin import HyperliquidMarginModel, Leg
from levalign.markets import Markets, MarketSpec, load_markets

__all__ = ["Asset", "Clock", "Engine", "OrderRecord", "fmt"]

ZERO = Decimal(0)
USD = Decimal("0.000001")
MIN_ORDER_VALUE = Decimal(10)
DEFAULT_LEVERAGE = 20
MAX_PRICE_DEVIATION = Decimal("0.8")
SNAPSHOT_FILLS = 2000

_MARGIN = HyperliquidMarginModel()


def fmt(value: Decimal) -> str:
    """Hyperliquid's decimal string: no exponent, no trailing zeros, ``.0`` for integers."""
    text = f"{value.normalize():f}"
    if "." not in text:
        text += ".0"
    return "0.0" if text in ("-0.0", "-0") else text


def usd(value: Decimal) -> Decimal:
    """Round an amount of USDC to Hyperliquid's 6 decimals."""
    return value.quantize(USD, rounding=ROUND_HALF_EVEN)


class Clock:
    """Milliseconds since the epoch: wall time plus an offset, never going back.

    Parameters
    ----------
    offset_ms
        Added to the wall clock (``advance`` adds more).
    """

    def __init__(self, offset_ms: int = 0) -> None:
        self.offset_ms = offset_ms
        self._last = 0

    def now_ms(self) -> int:
        """The current time; strictly non-decreasing across calls."""
        now = max(self._last, int(time.time() * 1000) + self.offset_ms)
        self._last = now
        return now

    def advance(self, ms: int) -> int:
        """Move the clock ``ms`` milliseconds forward; return the new time."""
        self.offset_ms += max(0, int(ms))
        return self.now_ms()


@dataclass
class Asset:
    """One perpetual: its index in ``meta.universe``, coin name and rules."""

    index: int
    coin: str
    sz_decimals: int
    max_leverage: int
    spec: MarketSpec

    @property
    def price_decimals(self) -> int:
        """Maximum decimals of a price: ``6 - szDecimals``."""
        return 6 - self.sz_decimals

    def valid_price(self, px: Decimal) -> bool:
        """At most 5 significant figures (integers always) and ``6 - szDecimals`` decimals."""
        exponent = int(px.normalize().as_tuple().exponent)
        if exponent >= 0:
            return True
        if -exponent > self.price_decimals:
            return False
        digits = len(px.normalize().as_tuple().digits)
        return digits <= 5

    def round_price(self, px: Decimal) -> Decimal:
        """The nearest valid price (5 significant figures, ``6 - szDecimals`` decimals)."""
        if px <= 0:
            return px
        if px >= 100_000:
            return px.quantize(Decimal(1), rounding=ROUND_HALF_EVEN)
        adjusted = px.adjusted()
        decimals = min(self.price_decimals, 4 - adjusted)
        return px.quantize(Decimal(1).scaleb(-decimals), rounding=ROUND_HALF_EVEN)

    def valid_size(self, sz: Decimal) -> bool:
        """Positive with at most ``szDecimals`` decimals."""
        return sz > 0 and -int(sz.normalize().as_tuple().exponent) <= self.sz_decimals


@dataclass
class Position:
    """One account's position in one asset (one-way mode)."""

    szi: Decimal = ZERO
    entry_px: Decimal = ZERO
    is_cross: bool = True
    leverage: int = DEFAULT_LEVERAGE
    isolated_margin: Decimal = ZERO


@dataclass
class OrderRecord:
    """An order as the exchange keeps it (and as ``orderStatus`` reports it)."""

    oid: int
    user: str
    asset: Asset
    is_buy: bool
    limit_px: Decimal
    orig_sz: Decimal
    sz: Decimal
    tif: str
    reduce_only: bool
    cloid: str | None
    timestamp: int
    status: str = "open"
    status_timestamp: int = 0

    def wire(self) -> dict[str, Any]:
        """The ``order`` object of ``openOrders``, ``orderStatus`` and ``orderUpdates``."""
        out: dict[str, Any] = {
            "coin": self.asset.coin,
            "side": "B" if self.is_buy else "A",
            "limitPx": fmt(self.limit_px),
            "sz": fmt(self.sz),
            "oid": self.oid,
            "timestamp": self.timestamp,
            "origSz": fmt(self.orig_sz),
        }
        if self.cloid is not None:
            out["cloid"] = self.cloid
        return out

    def detailed(self) -> dict[str, Any]:
        """The fuller order object of ``orderStatus`` and ``frontendOpenOrders``."""
        return {
            **self.wire(),
            "triggerCondition": "N/A",
            "isTrigger": False,
            "triggerPx": "0.0",
            "children": [],
            "isPositionTpsl": False,
            "reduceOnly": self.reduce_only,
            "orderType": "Limit",
            "tif": self.tif,
            "cloid": self.cloid,
        }


@dataclass
class Account:
    """One user: USDC ledger, positions, orders, fills, API wallets."""

    address: str
    cash: Decimal = ZERO
    positions: dict[int, Position] = field(default_factory=dict)
    orders: dict[int, OrderRecord] = field(default_factory=dict)
    by_cloid: dict[str, OrderRecord] = field(default_factory=dict)
    fills: list[dict[str, Any]] = field(default_factory=list)


class OrderError(Exception):
    """An order refused with Hyperliquid's message and ``orderStatus`` status."""

    def __init__(self, message: str, status: str = "rejected") -> None:
        super().__init__(message)
        self.message = message
        self.status = status


class Engine:
    """The exchange state and its rules.

    Parameters
    ----------
    markets
        Hyperliquid markets (default: the bundled preset); the universe is in their order.
    clock
        Time source of every order, fill and status.
    taker_fee, maker_fee
        Fee rates (Hyperliquid's base tier: 0.045% taker, 0.015% maker).
    slippage_bps
        Taker fills are this many basis points worse than the mid (capped at the limit).
    liquidations
        Close a position at the mid when the mid reaches its liquidation price (cross: every
        cross position of the account), except for accounts in :attr:`exempt`.
    """

    def __init__(
        self,
        markets: Markets | None = None,
        *,
        clock: Clock | None = None,
        taker_fee: Decimal = Decimal("0.00045"),
        maker_fee: Decimal = Decimal("0.00015"),
        slippage_bps: Decimal = ZERO,
        liquidations: bool = True,
    ) -> None:
        markets = markets if markets is not None else load_markets("hyperliquid")
        self.clock = clock or Clock()
        self.taker_fee = taker_fee
        self.maker_fee = maker_fee
        self.slippage = slippage_bps / Decimal(10_000)
        self.assets: list[Asset] = []
        order = _bundled_order()
        specs = sorted(markets.values(), key=lambda m: (order.get(m.id, len(order)), m.id))
        for spec in specs:
            step = Decimal(str(spec.amount_step or 1)).normalize()
            self.assets.append(
                Asset(
                    index=len(self.assets),
                    coin=spec.id,
                    sz_decimals=max(0, -int(step.as_tuple().exponent)),
                    max_leverage=int(spec.tiers.max_leverage_at(0.0)),
                    spec=spec,
                )
            )
        self.by_coin = {a.coin: a for a in self.assets}
        self.mids: dict[str, Decimal] = {}
        self.accounts: dict[str, Account] = {}
        self.agents: dict[str, str] = {}
        self.resting: dict[int, OrderRecord] = {}
        self.liquidations = liquidations
        self.exempt: set[str] = set()
        self._liq: dict[str, dict[int, float]] = {}
        self._holders: dict[int, set[str]] = {a.index: set() for a in self.assets}
        self.outbox: list[tuple[str, str, Any]] = []
        self._next_oid = 1
        self._next_tid = 1

    # ------------------------------------------------------------------ accounts

    def account(self, user: str) -> Account | None:
        """The account of ``user`` (any case), or None when it was never funded."""
        return self.accounts.get(user.lower())

    def fund(self, user: str, usdc: Decimal) -> Account:
        """Credit ``usdc`` to ``user``'s perp balance, creating the account."""
        key = user.lower()
        acct = self.accounts.setdefault(key, Account(address=key))
        acct.cash = usd(acct.cash + usdc)
        self._refresh(acct)
        return acct

    def approve_agent(self, user: str, agent: str) -> None:
        """Let ``agent`` (an API wallet) sign for ``user``."""
        self.agents[agent.lower()] = user.lower()

    def owner_of(self, signer: str) -> str | None:
        """The account a signer acts for: itself when funded, else the user it is agent of."""
        key = signer.lower()
        if key in self.accounts:
            return key
        return self.agents.get(key)

    # ------------------------------------------------------------------ prices

    def set_mid(self, coin: str, px: Decimal) -> None:
        """Set a coin's mid (rounded to a valid price), then fill resting orders it reaches."""
        asset = self.by_coin[coin]
        mid = asset.round_price(px)
        self.mids[coin] = mid
        self.outbox.append(("allMids", "", None))
        reached = [o for o in self.resting.values() if o.asset is asset and self._crosses(o)]
        for order in reached:  # in time priority: oids increase
            self._fill(self.accounts[order.user], order, order.limit_px, order.sz, crossed=False)
            self._finish(order, "filled")
        if self.liquidations:
            self._liquidate(asset, mid)

    def _liquidate(self, asset: Asset, mid: Decimal) -> None:
        for user in sorted(self._holders[asset.index]):
            acct = self.accounts[user]
            if sum(1 for p in acct.positions.values() if p.szi) > 1:
                self._refresh(acct)  # a cross price moves with the account's other coins
            liq = self._liq.get(user, {}).get(asset.index)
            pos = acct.positions[asset.index]
            if liq is None or not pos.szi or (mid > liq if pos.szi > 0 else mid < liq):
                continue
            doomed = [
                i
                for i, p in acct.positions.items()
                if p.szi and (p.is_cross if pos.is_cross else i == asset.index)
            ]
            for index in doomed:
                self._close_at_mid(acct, index)
            acct.cash = max(acct.cash, ZERO)
            self._refresh(acct)

    def _close_at_mid(self, acct: Account, index: int) -> None:
        asset = self.assets[index]
        pos = acct.positions[index]
        px = self.mids[asset.coin]
        now = self.clock.now_ms()
        order = OrderRecord(
            oid=self._new_oid(),
            user=acct.address,
            asset=asset,
            is_buy=pos.szi < 0,
            limit_px=px,
            orig_sz=abs(pos.szi),
            sz=abs(pos.szi),
            tif="Ioc",
            reduce_only=True,
            cloid=None,
            timestamp=now,
            status_timestamp=now,
        )
        acct.orders[order.oid] = order
        fill = self._fill(acct, order, px, abs(pos.szi), crossed=True)
        fill["liquidation"] = {
            "liquidatedUser": acct.address,
            "markPx": fmt(px),
            "method": "market",
        }
        self._finish(order, "filled")

    def _refresh(self, acct: Account) -> None:
        """Recompute the cached liquidation prices of ``acct`` and the holders index."""
        prices: dict[int, float] = {}
        for index, pos in acct.positions.items():
            holders = self._holders[index]
            if not pos.szi or acct.address in self.exempt:
                holders.discard(acct.address)
                continue
            holders.add(acct.address)
            liq = self.liquidation_price(acct, index)
            if liq is not None:
                prices[index] = liq
        self._liq[acct.address] = prices

    def mid(self, asset: Asset) -> Decimal:
        """The asset's mid; an asset never priced has no mid (orders on it are refused)."""
        return self.mids.get(asset.coin, ZERO)

    def _crosses(self, order: OrderRecord) -> bool:
        mid = self.mids.get(order.asset.coin)
        if mid is None:
            return False
        return mid <= order.limit_px if order.is_buy else mid >= order.limit_px

    # ------------------------------------------------------------------ orders

    def _new_oid(self) -> int:
        oid = self._next_oid
        self._next_oid += 1
        return oid

    def place(self, user: str, wire: dict[str, Any]) -> tuple[dict[str, Any], OrderRecord | None]:
        """Place one order wire (``a, b, p, s, r, t, c``) for ``user``.

        Returns
        -------
        tuple
            The response status (``{"resting": ...}``, ``{"filled": ...}`` or
            ``{"error": ...}``) and the order record (None when the wire was malformed).
        """
        acct = self.accounts[user.lower()]
        try:
            asset, is_buy, px, sz, tif, reduce_only, cloid = self._parse_wire(wire)
        except OrderError as exc:
            return {"error": exc.message}, None
        if cloid is not None and cloid in acct.by_cloid:
            return {"error": f"Duplicate cloid. asset={asset.index}"}, None
        now = self.clock.now_ms()
        order = OrderRecord(
            oid=self._new_oid(),
            user=acct.address,
            asset=asset,
            is_buy=is_buy,
            limit_px=px,
            orig_sz=sz,
            sz=sz,
            tif=tif,
            reduce_only=reduce_only,
            cloid=cloid,
            timestamp=now,
            status_timestamp=now,
        )
        acct.orders[order.oid] = order
        if cloid is not None:
            acct.by_cloid[cloid] = order
        try:
            status = self._execute(acct, order)
        except OrderError as exc:
            order.status = exc.status
            order.status_timestamp = now
            return {"error": exc.message}, order
        if cloid is not None:
            for value in status.values():
                value["cloid"] = cloid
        return status, order

    def _parse_wire(
        self, wire: dict[str, Any]
    ) -> tuple[Asset, bool, Decimal, Decimal, str, bool, str | None]:
        try:
            index = int(wire["a"])
            is_buy = bool(wire["b"])
            px = Decimal(str(wire["p"]))
            sz = Decimal(str(wire["s"]))
            reduce_only = bool(wire.get("r", False))
            order_type = wire["t"]
        except (KeyError, TypeError, ValueError, InvalidOperation) as exc:
            raise OrderError("Order has invalid size.") from exc
        if not 0 <= index < len(self.assets):
            raise OrderError(f"Asset {index} is out of range.")
        asset = self.assets[index]
        if "limit" not in order_type:
            raise OrderError(f"Trigger orders are not supported by the sandbox. asset={index}")
        tif = str(order_type["limit"].get("tif", "Gtc"))
        if tif not in ("Gtc", "Ioc", "Alo"):
            raise OrderError(f"Invalid TIF {tif}. asset={index}")
        cloid = wire.get("c")
        if cloid is not None and (
            not isinstance(cloid, str) or len(cloid) != 34 or not cloid.startswith("0x")
        ):
            raise OrderError(f"Invalid cloid. asset={index}")
        if not sz.is_finite() or not asset.valid_size(sz):
            raise OrderError("Order has invalid size.")
        if not px.is_finite() or px <= 0:
            raise OrderError(f"Order has invalid price. asset={index}")
        return asset, is_buy, px, sz, tif, reduce_only, cloid.lower() if cloid else None

    def _execute(self, acct: Account, order: OrderRecord) -> dict[str, Any]:
        asset = order.asset
        tag = f"asset={asset.index}"
        if not asset.valid_price(order.limit_px):
            raise OrderError(f"Price must be divisible by tick size. {tag}", "tickRejected")
        mid = self.mids.get(asset.coin)
        if mid is None:
            raise OrderError(f"No liquidity available for market order. {tag}")
        if abs(order.limit_px - mid) > MAX_PRICE_DEVIATION * mid:
            raise OrderError(
                f"Order price cannot be more than 80% away from the reference price. {tag}"
            )
        pos = acct.positions.get(asset.index)
        szi = pos.szi if pos else ZERO
        reduces = szi != 0 and (szi > 0) != order.is_buy
        if order.reduce_only:
            if not reduces:
                raise OrderError(
                    f"Reduce only order would increase position. {tag}", "reduceOnlyRejected"
                )
            order.sz = order.orig_sz = min(order.sz, abs(szi))
        only_reduces = reduces and order.sz <= abs(szi)
        if order.sz * order.limit_px < MIN_ORDER_VALUE and not only_reduces:
            raise OrderError(f"Order must have minimum value of $10. {tag}", "minTradeNtlRejected")
        crosses = self._crosses(order)
        if order.tif == "Alo" and crosses:
            raise OrderError(
                f"Post only order would have immediately matched, bbo was {fmt(mid)}@{fmt(mid)}. "
                + tag,
                "badAloPxRejected",
            )
        if not crosses and order.tif == "Ioc":
            raise OrderError(
                f"Order could not immediately match against any resting orders. {tag}",
                "iocCancelRejected",
            )
        opening = order.sz - (abs(szi) if reduces else ZERO)
        if opening > 0:
            lev = Decimal(pos.leverage if pos else self._default_leverage(asset))
            if opening * mid / lev > self.free_margin(acct) + Decimal("1e-9"):
                raise OrderError(f"Insufficient margin to place order. {tag}", "perpMarginRejected")
        if not crosses:
            self.resting[order.oid] = order
            self._emit_order(order)
            return {"resting": {"oid": order.oid}}
        px = self._taker_price(order, mid)
        self._fill(acct, order, px, order.sz, crossed=True)
        self._finish(order, "filled")
        return {"filled": {"totalSz": fmt(order.orig_sz), "avgPx": fmt(px), "oid": order.oid}}

    def _taker_price(self, order: OrderRecord, mid: Decimal) -> Decimal:
        if not self.slippage:
            return mid
        moved = mid * (1 + self.slippage if order.is_buy else 1 - self.slippage)
        px = order.asset.round_price(moved)
        return min(px, order.limit_px) if order.is_buy else max(px, order.limit_px)

    def _finish(self, order: OrderRecord, status: str) -> None:
        order.status = status
        order.status_timestamp = self.clock.now_ms()
        self.resting.pop(order.oid, None)
        if status == "filled":
            order.sz = ZERO
        self._emit_order(order)

    def _emit_order(self, order: OrderRecord) -> None:
        update = {
            "order": order.wire(),
            "status": order.status,
            "statusTimestamp": order.status_timestamp,
        }
        self.outbox.append(("orderUpdates", order.user, [update]))

    def cancel(
        self, user: str, index: int, oid: int | None, cloid: str | None
    ) -> str | dict[str, str]:
        """Cancel an open order by oid or cloid: ``"success"`` or ``{"error": ...}``."""
        acct = self.accounts[user.lower()]
        order = acct.orders.get(oid) if oid is not None else acct.by_cloid.get(str(cloid).lower())
        if order is None or order.status != "open" or order.asset.index != index:
            return {"error": f"Order was never placed, already canceled, or filled. asset={index}"}
        self._finish(order, "canceled")
        return "success"

    # ------------------------------------------------------------------ leverage and margin

    def _default_leverage(self, asset: Asset) -> int:
        return min(DEFAULT_LEVERAGE, asset.max_leverage)

    def update_leverage(self, user: str, index: int, is_cross: bool, leverage: int) -> str | None:
        """Set an asset's leverage and margin mode; an error message, or None when done."""
        if not 0 <= index < len(self.assets):
            return f"Asset {index} is out of range."
        asset = self.assets[index]
        if not 1 <= leverage <= asset.max_leverage:
            return "Invalid leverage value."
        acct = self.accounts[user.lower()]
        pos = acct.positions.setdefault(index, Position(leverage=self._default_leverage(asset)))
        if pos.szi != 0 and pos.is_cross != is_cross:
            return "Cannot switch leverage type with open position."
        if pos.szi != 0 and leverage < pos.leverage:
            needed = abs(pos.szi) * self.mid(asset) / Decimal(leverage)
            held = self._position_margin(pos, asset)
            if needed - held > self.free_margin(acct):
                return "Insufficient margin to decrease leverage."
            if not is_cross:
                pos.isolated_margin = usd(max(pos.isolated_margin, needed))
        pos.is_cross = is_cross
        pos.leverage = leverage
        self._refresh(acct)
        return None

    def update_isolated_margin(self, user: str, index: int, ntli: int) -> str | None:
        """Add (or with a negative ``ntli``, remove) ``ntli / 1e6`` USDC of isolated margin."""
        if not 0 <= index < len(self.assets):
            return f"Asset {index} is out of range."
        acct = self.accounts[user.lower()]
        pos = acct.positions.get(index)
        if pos is None or pos.szi == 0:
            return "Cannot update margin for empty position."
        if pos.is_cross:
            return "Cannot update margin for cross position."
        amount = Decimal(ntli) / Decimal(1_000_000)
        if amount > 0 and amount > self.free_margin(acct):
            return "Insufficient margin to add to isolated position."
        if amount < 0:
            asset = self.assets[index]
            floor = abs(pos.szi) * self.mid(asset) / Decimal(pos.leverage)
            if self._position_margin(pos, asset) + amount < floor:
                return "Insufficient margin to remove from isolated position."
        pos.isolated_margin = usd(pos.isolated_margin + amount)
        self._refresh(acct)
        return None

    def _upnl(self, pos: Position, asset: Asset) -> Decimal:
        mid = self.mids.get(asset.coin, pos.entry_px)
        return pos.szi * (mid - pos.entry_px)

    def _position_margin(self, pos: Position, asset: Asset) -> Decimal:
        if pos.is_cross:
            return abs(pos.szi) * self.mid(asset) / Decimal(pos.leverage)
        return pos.isolated_margin + self._upnl(pos, asset)

    def account_value(self, acct: Account) -> Decimal:
        """USDC balance plus the unrealized PnL of every position."""
        total = acct.cash
        for index, pos in acct.positions.items():
            if pos.szi:
                total += self._upnl(pos, self.assets[index])
        return total

    def free_margin(self, acct: Account) -> Decimal:
        """Account value less the margin held by every position (what an open may use)."""
        used = sum(
            (self._position_margin(p, self.assets[i]) for i, p in acct.positions.items() if p.szi),
            ZERO,
        )
        return self.account_value(acct) - used

    # ------------------------------------------------------------------ fills

    def _fill(
        self, acct: Account, order: OrderRecord, px: Decimal, sz: Decimal, *, crossed: bool
    ) -> dict[str, Any]:
        rate = self.taker_fee if crossed else self.maker_fee
        return self.apply_fill(acct, order, px, sz, fee=usd(px * sz * rate), crossed=crossed)

    def apply_fill(
        self,
        acct: Account,
        order: OrderRecord,
        px: Decimal,
        sz: Decimal,
        *,
        fee: Decimal,
        crossed: bool,
    ) -> dict[str, Any]:
        """Book a fill of ``order``: position, entry, isolated margin, cash, fill record."""
        asset = order.asset
        pos = acct.positions.setdefault(
            asset.index, Position(leverage=self._default_leverage(asset))
        )
        start = pos.szi
        signed = sz if order.is_buy else -sz
        closing = min(sz, abs(start)) if start and (start > 0) != order.is_buy else ZERO
        closed_pnl = usd((px - pos.entry_px) * closing * (1 if start > 0 else -1))
        opening = sz - closing
        new = start + signed
        if closing and not pos.is_cross:
            released = pos.isolated_margin * closing / abs(start)
            pos.isolated_margin = usd(pos.isolated_margin - released)
        if new == 0:
            pos.entry_px = ZERO
            pos.isolated_margin = ZERO
        elif opening and abs(new) == opening:
            pos.entry_px = px
        elif opening:
            pos.entry_px = (pos.entry_px * abs(start) + px * opening) / abs(new)
        if opening and not pos.is_cross:
            pos.isolated_margin = usd(pos.isolated_margin + opening * px / Decimal(pos.leverage))
        pos.szi = new
        acct.cash = usd(acct.cash + closed_pnl - fee)
        self._refresh(acct)
        tid = self._next_tid
        self._next_tid += 1
        fill: dict[str, Any] = {
            "coin": asset.coin,
            "px": fmt(px),
            "sz": fmt(sz),
            "side": "B" if order.is_buy else "A",
            "time": self.clock.now_ms(),
            "startPosition": fmt(start),
            "dir": _direction(start, new),
            "closedPnl": fmt(closed_pnl),
            "hash": "0x" + hashlib.sha3_256(f"{order.oid}:{tid}".encode()).hexdigest(),
            "oid": order.oid,
            "crossed": crossed,
            "fee": fmt(fee),
            "tid": tid,
            "feeToken": "USDC",
        }
        if order.cloid is not None:
            fill["cloid"] = order.cloid
        acct.fills.append(fill)
        self.outbox.append(("userFills", acct.address, fill))
        return fill

    def lead_fill(
        self,
        user: str,
        coin: str,
        px: Decimal,
        position_after: Decimal,
        *,
        equity: Decimal | None = None,
        fee: Decimal = ZERO,
        leverage: int | None = None,
        parts: int = 1,
    ) -> list[dict[str, Any]]:
        """Trade ``user`` to ``position_after`` at ``px`` (a scripted lead's fill).

        The mid moves to ``px``; the trade needs no margin and makes no order checks. It is
        one order filled in ``parts`` fills of equal size (the last takes the remainder of the
        lot grid), as a large order fills against several makers. With ``equity``, the
        account's USDC balance is then set so that its account value equals it (the lead
        file's equity after the fill). Returns the fills (none when the position does not
        change).
        """
        acct = self.fund(user, ZERO)
        asset = self.by_coin[coin]
        self.set_mid(coin, px)
        pos = acct.positions.setdefault(
            asset.index, Position(leverage=self._default_leverage(asset))
        )
        if leverage is not None and pos.szi == 0:
            pos.leverage = max(1, min(int(leverage), asset.max_leverage))
        delta = position_after - pos.szi
        fills = []
        if delta:
            now = self.clock.now_ms()
            order = OrderRecord(
                oid=self._new_oid(),
                user=acct.address,
                asset=asset,
                is_buy=delta > 0,
                limit_px=px,
                orig_sz=abs(delta),
                sz=abs(delta),
                tif="Ioc",
                reduce_only=False,
                cloid=None,
                timestamp=now,
                status_timestamp=now,
            )
            acct.orders[order.oid] = order
            for sz in _split(abs(delta), max(1, parts)):
                part_fee = usd(fee * sz / abs(delta))
                fills.append(self.apply_fill(acct, order, px, sz, fee=part_fee, crossed=True))
            self._finish(order, "filled")
        if equity is not None:
            acct.cash = usd(acct.cash + equity - self.account_value(acct))
        self._refresh(acct)
        return fills

    # ------------------------------------------------------------------ info views

    def meta(self) -> dict[str, Any]:
        """``{"type": "meta"}``: the universe and margin tables."""
        universe = []
        tables = []
        for asset in self.assets:
            table_id = asset.index + 1
            universe.append(
                {
                    "szDecimals": asset.sz_decimals,
                    "name": asset.coin,
                    "maxLeverage": asset.max_leverage,
                    "marginTableId": table_id,
                }
            )
            tiers = asset.spec.tiers
            tables.append(
                [
                    table_id,
                    {
                        "description": asset.coin,
                        "marginTiers": [
                            {"lowerBound": fmt(Decimal(str(f))), "maxLeverage": int(m)}
                            for f, m in zip(tiers.floor, tiers.max_leverage, strict=True)
                        ],
                    },
                ]
            )
        return {"universe": universe, "marginTables": tables, "collateralToken": 0}

    def asset_ctxs(self) -> list[dict[str, Any]]:
        """The per-asset contexts of ``metaAndAssetCtxs`` (mark = oracle = mid, no funding)."""
        out = []
        for asset in self.assets:
            mid = self.mids.get(asset.coin)
            px = fmt(mid) if mid is not None else None
            out.append(
                {
                    "funding": "0.0",
                    "openInterest": "0.0",
                    "prevDayPx": px or "0.0",
                    "dayNtlVlm": "0.0",
                    "premium": "0.0",
                    "oraclePx": px or "0.0",
                    "markPx": px or "0.0",
                    "midPx": px,
                    "impactPxs": [px, px] if px else None,
                    "dayBaseVlm": "0.0",
                }
            )
        return out

    def l2_book(self, coin: str) -> dict[str, Any]:
        """``{"type": "l2Book"}``: one level a side, both at the mid, with unlimited size.

        Raises
        ------
        KeyError
            An unknown coin.
        """
        px = fmt(self.mids[self.by_coin[coin].coin])
        level = [{"px": px, "sz": "1000000000.0", "n": 1}]
        return {"coin": coin, "time": self.clock.now_ms(), "levels": [level, list(level)]}

    def all_mids(self) -> dict[str, str]:
        """``{"type": "allMids"}``: coin -> mid string."""
        return {coin: fmt(px) for coin, px in self.mids.items()}

    def clearinghouse_state(self, user: str) -> dict[str, Any]:
        """``{"type": "clearinghouseState"}``: positions and margin summaries."""
        acct = self.account(user) or Account(address=user.lower())
        positions = []
        ntl = used = maint = ZERO
        for index, pos in sorted(acct.positions.items()):
            if not pos.szi:
                continue
            asset = self.assets[index]
            mid = self.mids.get(asset.coin, pos.entry_px)
            value = abs(pos.szi) * mid
            upnl = self._upnl(pos, asset)
            margin = self._position_margin(pos, asset)
            ntl += value
            used += margin
            maint += Decimal(
                str(_MARGIN.maintenance_margin(asset.spec, float(pos.szi), float(mid)))
            )
            leverage: dict[str, Any] = {"type": "cross" if pos.is_cross else "isolated"}
            leverage["value"] = pos.leverage
            if not pos.is_cross:
                leverage["rawUsd"] = fmt(usd(pos.isolated_margin - pos.szi * pos.entry_px))
            liq_px = self.liquidation_price(acct, index)
            liq = None if liq_px is None else fmt(Decimal(repr(liq_px)).quantize(Decimal("1e-8")))
            positions.append(
                {
                    "type": "oneWay",
                    "position": {
                        "coin": asset.coin,
                        "szi": fmt(pos.szi),
                        "leverage": leverage,
                        "entryPx": fmt(pos.entry_px),
                        "positionValue": fmt(usd(value)),
                        "unrealizedPnl": fmt(usd(upnl)),
                        "returnOnEquity": fmt(
                            (upnl / (abs(pos.szi) * pos.entry_px / pos.leverage)).quantize(
                                Decimal("1e-8")
                            )
                        ),
                        "liquidationPx": liq,
                        "marginUsed": fmt(usd(margin)),
                        "maxLeverage": asset.max_leverage,
                        "cumFunding": {"allTime": "0.0", "sinceOpen": "0.0", "sinceChange": "0.0"},
                    },
                }
            )
        value = self.account_value(acct)
        summary = {
            "accountValue": fmt(usd(value)),
            "totalNtlPos": fmt(usd(ntl)),
            "totalRawUsd": fmt(usd(acct.cash)),
            "totalMarginUsed": fmt(usd(used)),
        }
        return {
            "marginSummary": summary,
            "crossMarginSummary": dict(summary),
            "crossMaintenanceMarginUsed": fmt(usd(maint)),
            "withdrawable": fmt(usd(max(ZERO, value - used))),
            "assetPositions": positions,
            "time": self.clock.now_ms(),
        }

    def liquidation_price(self, acct: Account, index: int) -> float | None:
        """The price of asset ``index`` at which ``acct``'s position there is liquidated.

        Cross: the account value less this position's PnL and the other positions'
        maintenance margin backs it; isolated: its isolated margin. levalign's
        :class:`~levalign.margin.HyperliquidMarginModel` solves the price (None: no price
        liquidates it).
        """
        pos = acct.positions[index]
        asset = self.assets[index]
        mid = self.mids.get(asset.coin, pos.entry_px)
        if pos.is_cross:
            others = ZERO
            for i, p in acct.positions.items():
                if i != index and p.szi:
                    a = self.assets[i]
                    m = self.mids.get(a.coin, p.entry_px)
                    others += Decimal(
                        str(_MARGIN.maintenance_margin(a.spec, float(p.szi), float(m)))
                    )
            balance = self.account_value(acct) - self._upnl(pos, asset) - others
        else:
            balance = pos.isolated_margin
        leg = Leg(
            side=1.0 if pos.szi > 0 else -1.0,
            contracts=float(abs(pos.szi)),
            entry_price=float(pos.entry_px),
        )
        return _MARGIN.liquidation_price(asset.spec, [leg], float(balance), float(mid))

    def user_fills(
        self, user: str, start: int | None = None, end: int | None = None, limit: int = 2000
    ) -> list[dict[str, Any]]:
        """Fills of ``user``: the newest ``limit``, newest first (``userFills``).

        With ``start`` (and ``end``), the oldest ``limit`` of that window, oldest first
        (``userFillsByTime``).
        """
        acct = self.account(user)
        if acct is None:
            return []
        if start is None:
            return list(reversed(acct.fills[-limit:]))
        stop = end if end is not None else 2**63
        return [f for f in acct.fills if start <= f["time"] <= stop][:limit]

    def order_status(self, user: str, oid: int | str) -> dict[str, Any]:
        """``{"type": "orderStatus"}`` by oid (int) or cloid (hex string)."""
        acct = self.account(user)
        order = None
        if acct is not None:
            if isinstance(oid, str) and oid.startswith("0x"):
                order = acct.by_cloid.get(oid.lower())
            else:
                try:
                    order = acct.orders.get(int(oid))
                except ValueError:
                    order = None
        if order is None:
            return {"status": "unknownOid"}
        return {
            "status": "order",
            "order": {
                "order": order.detailed(),
                "status": order.status,
                "statusTimestamp": order.status_timestamp,
            },
        }

    def open_orders(self, user: str, *, frontend: bool = False) -> list[dict[str, Any]]:
        """Open orders of ``user``, newest first."""
        acct = self.account(user)
        if acct is None:
            return []
        orders = [o for o in acct.orders.values() if o.status == "open"]
        orders.sort(key=lambda o: o.oid, reverse=True)
        return [o.detailed() if frontend else o.wire() for o in orders]


def _bundled_order() -> dict[str, int]:
    """Coin -> position in the bundled Hyperliquid markets file (the universe's order)."""
    text = resources.files("levalign.data").joinpath("hyperliquid_markets.json").read_text()
    rows = json.loads(text)["markets"].values()
    return {str(row["id"]): n for n, row in enumerate(rows)}


def _split(size: Decimal, parts: int) -> list[Decimal]:
    """``size`` in ``parts`` positive pieces on its own decimal grid (fewer if it is too small)."""
    step = Decimal(1).scaleb(min(0, int(size.normalize().as_tuple().exponent)))
    units = int(size / step)
    parts = min(parts, units)
    base = units // parts
    pieces = [base * step] * (parts - 1)
    return [*pieces, size - sum(pieces, ZERO)]


def _direction(start: Decimal, new: Decimal) -> str:
    if start >= 0 and new > start:
        return "Open Long"
    if start <= 0 and new < start:
        return "Open Short"
    if start > 0 > new:
        return "Long > Short"
    if start < 0 < new:
        return "Short > Long"
    return "Close Long" if start > 0 else "Close Short"
