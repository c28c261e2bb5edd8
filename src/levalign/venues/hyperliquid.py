"""Hyperliquid as a follower venue, over the official ``hyperliquid-python-sdk``.

Orders
    Every order carries its client id as Hyperliquid's ``cloid`` (``0x`` and 32 hex digits),
    so that the exchange itself can be asked what became of it. Orders are IOC limit orders
    at a capped price (the slippage guard): a buy at most ``price · (1 + slippage)``, a sell
    at least ``price · (1 − slippage)``, the cap rounded toward the reference price onto
    Hyperliquid's price grid. Closes are reduce-only.

Price and size rules (Hyperliquid docs, "Tick and lot size")
    A size has at most ``szDecimals`` decimals (rounded toward zero here: an order never
    grows). A perpetual's price has at most 5 significant figures and at most
    ``6 − szDecimals`` decimals; an integer price is always allowed, whatever its number of
    figures. With ``e = floor(log10(price))`` the price therefore has
    ``d = max(0, min(4 − e, 6 − szDecimals))`` decimals.

Answers
    ``submit`` maps the exchange's answer to an :class:`OrderState`: ``resting``, ``filled``
    (``totalSz``, ``avgPx``), or ``rejected`` with Hyperliquid's own message as the reason
    (``"Order must have minimum value of $10."``). When the answer is lost (timeout, network
    error, 5xx, 429, an unreadable body, a duplicate-cloid error), it raises
    :class:`OrderStateUnknown`, a :class:`~levalign.errors.Retryable`: the order may or may
    not be on the book, and only :meth:`HyperliquidVenue.lookup` (``orderStatus`` by cloid)
    may settle it. The venue never sends an order twice on its own.

Rate limits (Hyperliquid docs, "Rate limits")
    Per IP, REST requests share 1,200 weight per minute: an ``/exchange`` action weighs
    ``1 + floor(n / 40)`` for ``n`` orders; ``orderStatus``, ``clearinghouseState``,
    ``allMids`` and ``l2Book`` weigh 2; other ``/info`` requests 20 (history requests one more
    per 20 items returned). :class:`RateLimiter` is a token bucket over those weights; one
    limiter should be shared by everything that talks to one IP. Per address, actions are
    limited to 10,000 plus one per USDC traded; the exchange answers 429 past it, which
    surfaces as :class:`OrderStateUnknown`.

Keys
    The API wallet's private key is held in a :class:`SecretKey`, whose ``repr``, ``str`` and
    format are redacted and which refuses to be pickled; no message of this module contains
    it.
"""

from __future__ import annotations

import logging
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import (
    ROUND_CEILING,
    ROUND_DOWN,
    ROUND_FLOOR,
    ROUND_HALF_EVEN,
    Decimal,
    InvalidOperation,
)
from typing import TYPE_CHECKING, Any, Literal, NoReturn

from levalign.errors import ConfigurationError, InvalidInput, Retryable

if TYPE_CHECKING:
    from hyperliquid.exchange import Exchange

__all__ = [
    "EXCHANGE_WEIGHT_BATCH",
    "INFO_WEIGHTS",
    "AccountState",
    "HyperliquidVenue",
    "OrderState",
    "OrderStateUnknown",
    "RateLimiter",
    "SecretKey",
    "VenueOrder",
    "exchange_weight",
    "format_price",
    "format_size",
    "info_weight",
    "limit_price",
    "parse_order_response",
    "parse_order_status",
]

log = logging.getLogger(__name__)

PERP_MAX_DECIMALS = 6
"""``MAX_DECIMALS`` of a perpetual's price (Hyperliquid docs, "Tick and lot size")."""

PRICE_SIGNIFICANT_FIGURES = 5
"""Significant figures of a non-integer price (same source)."""

EXCHANGE_WEIGHT_BATCH = 40
"""An ``/exchange`` action weighs ``1 + floor(n / 40)`` (Hyperliquid docs, "Rate limits")."""

INFO_WEIGHTS: Mapping[str, int] = {
    "l2Book": 2,
    "allMids": 2,
    "clearinghouseState": 2,
    "orderStatus": 2,
    "spotClearinghouseState": 2,
    "exchangeStatus": 2,
    "userRole": 60,
}
"""``/info`` request weights; every other documented request weighs 20."""

_CLOID = re.compile(r"^0x[0-9a-f]{32}$")
_KEY = re.compile(r"^(0x)?[0-9a-fA-F]{64}$")
_ADDRESS = re.compile(r"^0x[0-9a-fA-F]{40}$")


def exchange_weight(orders: int) -> int:
    """Weight of one ``/exchange`` action holding ``orders`` orders: ``1 + floor(n / 40)``."""
    return 1 + orders // EXCHANGE_WEIGHT_BATCH


def info_weight(request_type: str) -> int:
    """Weight of one ``/info`` request (without the per-item surcharge of history requests)."""
    return INFO_WEIGHTS.get(request_type, 20)


# ---------------------------------------------------------------------------- secrets


class SecretKey:
    """A private key that never shows itself: ``repr``, ``str`` and formats are redacted.

    Parameters
    ----------
    value
        64 hex digits, with or without ``0x``.
    """

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        if not isinstance(value, str) or not _KEY.match(value.strip()):
            raise ConfigurationError(
                "the API wallet key must be 64 hex digits (optionally prefixed 0x); the value "
                "given is not (it is not shown)",
                field="credentials.private_key",
            )
        stripped = value.strip()
        self._value = stripped if stripped.startswith("0x") else "0x" + stripped

    def reveal(self) -> str:
        """The key itself, for the signer only."""
        return self._value

    def __repr__(self) -> str:
        return "SecretKey('***')"

    __str__ = __repr__

    def __format__(self, spec: str) -> str:
        return repr(self)

    def __reduce__(self) -> NoReturn:
        raise TypeError("a SecretKey cannot be pickled")


# ---------------------------------------------------------------------------- prices and sizes


def _decimal(value: float | str | Decimal, name: str) -> Decimal:
    try:
        out = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation as exc:
        raise InvalidInput(f"{name} must be a number, got {value!r}", field=name) from exc
    if not out.is_finite() or out <= 0:
        raise InvalidInput(f"{name} must be positive and finite, got {value!r}", field=name)
    return out


def format_size(size: float | str | Decimal, sz_decimals: int) -> Decimal:
    """``size`` rounded toward zero to ``sz_decimals`` decimals.

    Raises
    ------
    InvalidInput
        If the size is not positive, or rounds to zero.
    """
    return _on_grid(size, "amount", sz_decimals, ROUND_DOWN)


def _on_grid(value: float | str | Decimal, name: str, places: int, mode: str) -> Decimal:
    """``value`` rounded with ``mode`` to ``places`` decimals; InvalidInput if that is 0."""
    out = _decimal(value, name).quantize(Decimal(1).scaleb(-places), rounding=mode)
    if out <= 0:
        raise InvalidInput(
            f"{name} {value} rounds to zero at {places} decimals (Hyperliquid's grid): "
            f"make the {name} larger",
            field=name,
            value=float(value),
        )
    return out


def format_price(
    price: float | str | Decimal,
    sz_decimals: int,
    rounding: Literal["down", "up", "nearest"] = "nearest",
) -> Decimal:
    """``price`` on Hyperliquid's perpetual price grid (see the module docstring).

    ``rounding`` is ``down`` for a buy's cap, ``up`` for a sell's floor (so that the cap is
    never exceeded), ``nearest`` otherwise.
    """
    exponent = _decimal(price, "price").adjusted()  # floor(log10(price)) for price > 0
    places = max(0, min(PRICE_SIGNIFICANT_FIGURES - 1 - exponent, PERP_MAX_DECIMALS - sz_decimals))
    mode = {"down": ROUND_FLOOR, "up": ROUND_CEILING, "nearest": ROUND_HALF_EVEN}[rounding]
    return _on_grid(price, "price", places, mode)


def limit_price(reference: float, is_buy: bool, slippage: float, sz_decimals: int) -> Decimal:
    """The IOC limit of the slippage guard: the worst price accepted, on the price grid.

    A buy pays at most ``reference · (1 + slippage)`` (rounded down onto the grid), a sell
    receives at least ``reference · (1 − slippage)`` (rounded up).
    """
    if not (0 <= slippage < 1):
        raise InvalidInput(f"slippage must be in [0, 1), got {slippage}", field="slippage")
    ref = _decimal(reference, "price")
    factor = Decimal(1) + Decimal(str(slippage)) if is_buy else Decimal(1) - Decimal(str(slippage))
    return format_price(ref * factor, sz_decimals, "down" if is_buy else "up")


# ---------------------------------------------------------------------------- orders and states


@dataclass(frozen=True)
class VenueOrder:
    """One follower order as the dispatcher hands it to the venue.

    Attributes
    ----------
    client_id
        Hyperliquid ``cloid``: ``0x`` and 32 lower-case hex digits, derived by the engine from
        (lead event, follower, leg).
    symbol
        levalign market symbol (``BTC/USDC:USDC``) or Hyperliquid coin (``BTC``).
    side
        ``"buy"`` or ``"sell"``.
    amount
        Contracts (base units), positive; rounded toward zero to the coin's ``szDecimals``.
    price
        Reference price: the lead's fill price for a copy, the mark for a correction.
    slippage
        The guard: the IOC limit is ``price · (1 ± slippage)``.
    reduce_only
        True for closes and reductions.
    """

    client_id: str
    symbol: str
    side: Literal["buy", "sell"]
    amount: float
    price: float
    slippage: float
    reduce_only: bool = False

    def __post_init__(self) -> None:
        if not _CLOID.match(self.client_id):
            raise InvalidInput(
                f"client_id must be 0x followed by 32 lower-case hex digits, got "
                f"{self.client_id!r}",
                field="client_id",
                value=self.client_id,
            )
        if self.side not in ("buy", "sell"):
            raise InvalidInput(f"side must be 'buy' or 'sell', got {self.side!r}", field="side")


OrderStatus = Literal["resting", "filled", "canceled", "rejected", "not_found"]


@dataclass(frozen=True)
class OrderState:
    """What the exchange says of one order.

    Attributes
    ----------
    client_id
        The order's ``cloid``.
    status
        ``resting`` (on the book), ``filled``, ``canceled`` (an IOC's unfilled rest is
        canceled: ``filled`` says how much was done), ``rejected`` (``reason`` says why, in the
        exchange's words) or ``not_found`` (the exchange never saw it: ``unknownOid``).
    filled
        Contracts filled so far.
    avg_price
        Mean fill price, when the exchange says it.
    oid
        The exchange's order id.
    reason
        The exchange's rejection message or order status string.
    """

    client_id: str
    status: OrderStatus
    filled: float = 0.0
    avg_price: float | None = None
    oid: int | None = None
    reason: str | None = None


class OrderStateUnknown(Retryable):
    """The answer to an order was lost: look it up by client id (never resend blindly)."""

    def __init__(self, client_id: str, cause: str) -> None:
        super().__init__(
            f"order {client_id}: no usable answer ({cause}); its state is unknown until "
            "looked up by client id",
            field="client_id",
            value=client_id,
            details={"state": "unknown", "cause": cause},
        )
        self.client_id = client_id


def _is_duplicate_cloid(reason: str) -> bool:
    text = reason.lower()
    return "cloid" in text and "duplicate" in text


def parse_order_response(client_id: str, response: Any) -> OrderState:
    """Map an ``/exchange`` answer to one order to its state.

    Raises
    ------
    OrderStateUnknown
        If the answer does not say what became of the order (unreadable, or a duplicate
        cloid: the order may exist from an earlier send).
    """
    if not isinstance(response, Mapping):
        raise OrderStateUnknown(client_id, f"unexpected answer {str(response)[:200]!r}")
    if response.get("status") == "err":
        reason = str(response.get("response"))
        if _is_duplicate_cloid(reason):
            raise OrderStateUnknown(client_id, reason)
        return OrderState(client_id, "rejected", reason=reason)
    try:
        statuses = response["response"]["data"]["statuses"]
        entry = statuses[0]
    except (KeyError, IndexError, TypeError):
        raise OrderStateUnknown(client_id, f"unexpected answer {str(response)[:200]!r}") from None
    if not isinstance(entry, Mapping):
        raise OrderStateUnknown(client_id, f"unexpected order status {entry!r}")
    if "resting" in entry:
        return OrderState(client_id, "resting", oid=_int(entry["resting"].get("oid")))
    if "filled" in entry:
        done = entry["filled"]
        return OrderState(
            client_id,
            "filled",
            filled=float(done["totalSz"]),
            avg_price=float(done["avgPx"]),
            oid=_int(done.get("oid")),
        )
    if "error" in entry:
        reason = str(entry["error"])
        if _is_duplicate_cloid(reason):
            raise OrderStateUnknown(client_id, reason)
        return OrderState(client_id, "rejected", reason=reason)
    raise OrderStateUnknown(client_id, f"unexpected order status {entry!r}")


def parse_order_status(client_id: str, response: Any) -> OrderState:
    """Map an ``orderStatus`` answer to the order's state.

    ``open`` and ``triggered`` are resting; ``filled`` is filled; statuses ending in
    ``Rejected`` (``minTradeNtlRejected``, ``perpMarginRejected``, ...) or ``rejected`` are
    rejected with that status as the reason; the others (``canceled``, ``marginCanceled``,
    ``reduceOnlyCanceled``, ...) are canceled, with ``filled = origSz − sz``.
    """
    if not isinstance(response, Mapping) or "status" not in response:
        raise OrderStateUnknown(client_id, f"unexpected orderStatus answer {response!r}")
    if response["status"] == "unknownOid":
        return OrderState(client_id, "not_found")
    try:
        wrapper = response["order"]
        order, status = wrapper["order"], str(wrapper["status"])
        orig, left = Decimal(str(order["origSz"])), Decimal(str(order["sz"]))
    except (KeyError, TypeError, InvalidOperation):
        raise OrderStateUnknown(client_id, f"unexpected orderStatus answer {response!r}") from None
    oid = _int(order.get("oid"))
    done = float(orig - left)
    if status in ("open", "triggered"):
        return OrderState(client_id, "resting", filled=done, oid=oid, reason=status)
    if status == "filled":
        return OrderState(client_id, "filled", filled=float(orig), oid=oid, reason=status)
    if status.lower().endswith("rejected"):
        return OrderState(client_id, "rejected", oid=oid, reason=status)
    return OrderState(client_id, "canceled", filled=done, oid=oid, reason=status)


def _int(value: Any) -> int | None:
    return int(value) if value is not None else None


# ---------------------------------------------------------------------------- rate limits


@dataclass
class RateLimiter:
    """A token bucket over Hyperliquid's request weights, shared by threads and tasks.

    ``reserve(weight)`` takes ``weight`` from the bucket (``capacity`` refilled evenly over
    ``period`` seconds) and returns how long the caller must wait before sending: 0 while
    the budget lasts. Sync callers ``time.sleep`` it, async ones ``asyncio.sleep`` it.
    """

    capacity: float = 1200.0
    period: float = 60.0
    clock: Callable[[], float] = time.monotonic
    _tokens: float = field(init=False)
    _stamp: float = field(init=False)
    _lock: threading.Lock = field(init=False, default_factory=threading.Lock)

    def __post_init__(self) -> None:
        if not (self.capacity > 0 and self.period > 0):
            raise InvalidInput("capacity and period must be positive", field="rate_limit")
        self._tokens = self.capacity
        self._stamp = self.clock()

    def reserve(self, weight: float) -> float:
        """Take ``weight`` and return the seconds to wait before the request may go."""
        with self._lock:
            now = self.clock()
            rate = self.capacity / self.period
            self._tokens = min(self.capacity, self._tokens + (now - self._stamp) * rate)
            self._stamp = now
            self._tokens -= weight
            return 0.0 if self._tokens >= 0 else -self._tokens / rate


# ---------------------------------------------------------------------------- the venue


@dataclass(frozen=True)
class AccountState:
    """A follower account as ``clearinghouseState`` reports it.

    Attributes
    ----------
    equity
        Account value (USDC).
    withdrawable
        USDC that could be withdrawn.
    positions
        Signed contracts by levalign symbol.
    entry_prices
        Entry price by levalign symbol.
    time_ms
        Exchange time of the report.
    """

    equity: float
    withdrawable: float
    positions: dict[str, float]
    entry_prices: dict[str, float]
    time_ms: int


class HyperliquidVenue:
    """One follower's Hyperliquid account, trading through an API wallet.

    Parameters
    ----------
    key
        The API wallet's private key (it signs; it need not hold funds).
    account_address
        The follower's account (the API wallet trades on its behalf); default: the key's
        own address.
    base_url
        Hyperliquid's API, ``https://api.hyperliquid.xyz`` or a compatible server.
    limiter
        A shared :class:`RateLimiter` (one per IP); ``None`` sends without waiting.
    timeout
        Seconds for one HTTP request; past it the order's state is unknown.
    """

    def __init__(
        self,
        key: SecretKey,
        *,
        base_url: str,
        account_address: str | None = None,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
    ) -> None:
        if not isinstance(key, SecretKey):
            raise ConfigurationError(
                "pass the API wallet key as levalign.venues.hyperliquid.SecretKey",
                field="credentials.private_key",
            )
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must start with http:// or https://, got {base_url!r}",
                field="base_url",
                value=base_url,
            )
        if account_address is not None and not _ADDRESS.match(account_address):
            raise ConfigurationError(
                f"account_address must be 0x and 40 hex digits, got {account_address!r}",
                field="account_address",
                value=account_address,
            )
        from eth_account import Account

        try:
            wallet = Account.from_key(key.reveal())
        except (ValueError, TypeError):
            raise ConfigurationError(
                "the API wallet key is not a valid secp256k1 private key",
                field="credentials.private_key",
            ) from None
        self._wallet = wallet
        self.base_url = base_url.rstrip("/")
        self.address = (account_address or wallet.address).lower()
        self.limiter = limiter
        self.timeout = timeout
        self._exchange_client: Exchange | None = None
        self._sz_decimals: dict[str, int] = {}

    def __repr__(self) -> str:
        return f"HyperliquidVenue(address={self.address!r}, base_url={self.base_url!r})"

    # ------------------------------------------------------------------ plumbing

    def _wait(self, weight: int) -> None:
        if self.limiter is not None:
            delay = self.limiter.reserve(weight)
            if delay > 0:
                time.sleep(delay)

    def _client(self) -> Exchange:
        if self._exchange_client is None:
            import requests
            from hyperliquid.exchange import Exchange
            from hyperliquid.utils.error import Error

            self._wait(2 * info_weight("meta"))  # spotMeta and meta
            try:
                client = Exchange(
                    self._wallet,
                    self.base_url,
                    account_address=self.address,
                    timeout=self.timeout,
                )
            except (requests.RequestException, Error, KeyError, TypeError, ValueError) as exc:
                raise ConfigurationError(
                    f"cannot read Hyperliquid's market list at {self.base_url} "
                    f"({type(exc).__name__}); check base_url and the network",
                    field="base_url",
                    value=self.base_url,
                ) from None
            self._exchange_client = client
            decimals = client.info.asset_to_sz_decimals
            self._sz_decimals = {
                coin: int(decimals[asset]) for coin, asset in client.info.coin_to_asset.items()
            }
        return self._exchange_client

    def coin(self, symbol: str) -> str:
        """Hyperliquid's coin for a levalign symbol: ``BTC/USDC:USDC`` -> ``BTC``."""
        return symbol.split("/", 1)[0]

    def sz_decimals(self, symbol: str) -> int:
        """``szDecimals`` of the symbol's coin, from the exchange's ``meta``."""
        self._client()
        coin = self.coin(symbol)
        if coin not in self._sz_decimals:
            raise InvalidInput(
                f"{symbol}: Hyperliquid at {self.base_url} lists no perpetual {coin!r}",
                field="symbol",
                value=symbol,
            )
        return self._sz_decimals[coin]

    def _symbol(self, coin: str) -> str:
        return f"{coin}/USDC:USDC"

    def _info(self, body: dict[str, Any]) -> Any:
        self._wait(info_weight(str(body["type"])))
        return self._call(lambda: self._client().info.post("/info", body), None)

    def _call(self, send: Callable[[], Any], client_id: str | None) -> Any:
        """Run one request; every way of losing its answer becomes a Retryable."""
        import requests
        from hyperliquid.utils.error import ClientError, ServerError

        def lost(cause: str) -> Retryable:
            if client_id is not None:
                return OrderStateUnknown(client_id, cause)
            return Retryable(f"Hyperliquid request failed: {cause}", details={"cause": cause})

        try:
            return send()
        except requests.Timeout:
            raise lost("timeout") from None
        except requests.RequestException as exc:
            raise lost(f"network error {type(exc).__name__}") from None
        except ServerError as exc:
            raise lost(f"HTTP {exc.status_code}") from None
        except ClientError as exc:
            if exc.status_code == 429:
                raise lost("HTTP 429 rate limited") from None
            if client_id is not None:
                return {"status": "err", "response": str(exc.error_message)}
            raise Retryable(
                f"Hyperliquid refused the request (HTTP {exc.status_code}: "
                f"{str(exc.error_message)[:200]})",
                details={"status": exc.status_code},
            ) from None

    # ------------------------------------------------------------------ orders

    def submit(self, order: VenueOrder) -> OrderState:
        """Send ``order`` once (IOC limit at the guard's cap, with its cloid).

        Returns
        -------
        OrderState
            ``resting``, ``filled`` or ``rejected`` (with the exchange's reason).

        Raises
        ------
        OrderStateUnknown
            When the answer is lost: resolve it with :meth:`lookup`.
        InvalidInput
            When the order cannot be expressed (size below the lot, unknown coin).
        """
        from hyperliquid.utils.types import Cloid

        decimals = self.sz_decimals(order.symbol)
        is_buy = order.side == "buy"
        size = format_size(order.amount, decimals)
        price = limit_price(order.price, is_buy, order.slippage, decimals)
        client = self._client()
        self._wait(exchange_weight(1))
        log.info(
            "order %s: %s %s %s at limit %s%s",
            order.client_id,
            order.side,
            size,
            self.coin(order.symbol),
            price,
            " reduce-only" if order.reduce_only else "",
        )
        response = self._call(
            lambda: client.order(
                self.coin(order.symbol),
                is_buy,
                float(size),
                float(price),
                {"limit": {"tif": "Ioc"}},
                reduce_only=order.reduce_only,
                cloid=Cloid.from_str(order.client_id),
            ),
            order.client_id,
        )
        if isinstance(response, Mapping) and "error" in response and "status" not in response:
            raise OrderStateUnknown(order.client_id, str(response["error"])[:200])
        state = parse_order_response(order.client_id, response)
        log.info("order %s: %s %s", order.client_id, state.status, state.reason or "")
        return state

    def lookup(self, client_id: str) -> OrderState:
        """The order's state by its cloid (``orderStatus``); ``not_found`` if never placed.

        Raises
        ------
        Retryable
            When the lookup itself fails (network, 5xx, 429): try again later.
        """
        if not _CLOID.match(client_id):
            raise InvalidInput(
                f"client_id must be 0x followed by 32 lower-case hex digits, got {client_id!r}",
                field="client_id",
                value=client_id,
            )
        response = self._info({"type": "orderStatus", "user": self.address, "oid": client_id})
        return parse_order_status(client_id, response)

    def account(self) -> AccountState:
        """The account's equity and positions (``clearinghouseState``)."""
        data = self._info({"type": "clearinghouseState", "user": self.address})
        try:
            positions: dict[str, float] = {}
            entries: dict[str, float] = {}
            for entry in data.get("assetPositions") or []:
                pos = entry["position"]
                szi = float(pos["szi"])
                if szi == 0:
                    continue
                symbol = self._symbol(str(pos["coin"]))
                positions[symbol] = szi
                if pos.get("entryPx") is not None:
                    entries[symbol] = float(pos["entryPx"])
            return AccountState(
                equity=float(data["marginSummary"]["accountValue"]),
                withdrawable=float(data.get("withdrawable") or 0.0),
                positions=positions,
                entry_prices=entries,
                time_ms=int(data.get("time") or 0),
            )
        except (KeyError, TypeError, ValueError, AttributeError):
            raise Retryable(f"malformed clearinghouseState: {str(data)[:200]}") from None
