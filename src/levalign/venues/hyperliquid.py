"""Hyperliquid as a follower venue, over the official ``hyperliquid-python-sdk``.

:class:`HyperliquidVenue` implements :class:`levalign.venues.base.OrderVenue` for any number
of follower accounts: each :class:`~levalign.venues.base.OrderRequest` names its account and a
credentials reference (``env:NAME``), whose key (an API wallet the account approved) signs.

Orders
    Every order carries its client id as Hyperliquid's ``cloid`` (``0x`` and 32 hex digits),
    so that the exchange itself can be asked what became of it. It is a limit order (``Ioc``
    or ``Gtc``) at ``price_limit``, the slippage guard's cap (:func:`limit_price`: a buy at
    most ``price · (1 + slippage)``, a sell at least ``price · (1 − slippage)``, rounded toward
    the reference onto Hyperliquid's price grid); closes are reduce-only. Each action carries
    ``expiresAfter`` = the order's ``expires_at_ms``: the exchange refuses it after that time,
    so a ``not_found`` lookup then is final.

Price and size rules (Hyperliquid docs, "Tick and lot size")
    A size has at most ``szDecimals`` decimals (rounded toward zero here: an order never
    grows). A perpetual's price has at most 5 significant figures and at most
    ``6 − szDecimals`` decimals; an integer price is always allowed, whatever its number of
    figures. With ``e = floor(log10(price))`` the price therefore has
    ``d = max(0, min(4 − e, 6 − szDecimals))`` decimals.

Answers
    ``submit`` maps the exchange's answer to an :class:`~levalign.venues.base.Ack`:
    ``resting``, ``filled`` (``totalSz``, ``avgPx``), or ``rejected`` with Hyperliquid's own
    message as the reason (``"Order must have minimum value of $10."``). An order Hyperliquid
    cannot express (a size below the lot, an unknown coin) raises
    :class:`~levalign.errors.Rejected`. When the answer is lost (timeout, network
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
import os
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

from levalign.errors import ConfigurationError, InvalidInput, Rejected, Retryable
from levalign.venues.base import Ack, Lookup, OrderRequest

if TYPE_CHECKING:
    from hyperliquid.exchange import Exchange

__all__ = [
    "EXCHANGE_WEIGHT_BATCH",
    "INFO_WEIGHTS",
    "AccountState",
    "HyperliquidVenue",
    "OrderStateUnknown",
    "RateLimiter",
    "SecretKey",
    "credentials_from_env",
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


# ---------------------------------------------------------------------------- answers


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


def parse_order_response(client_id: str, response: Any) -> Ack:
    """Map an ``/exchange`` answer to one order to an :class:`~levalign.venues.base.Ack`.

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
        return Ack(client_id, "rejected", reason=reason)
    try:
        entry = response["response"]["data"]["statuses"][0]
    except (KeyError, IndexError, TypeError):
        raise OrderStateUnknown(client_id, f"unexpected answer {str(response)[:200]!r}") from None
    if not isinstance(entry, Mapping):
        raise OrderStateUnknown(client_id, f"unexpected order status {entry!r}")
    if "resting" in entry:
        return Ack(client_id, "resting", exchange_id=_id(entry["resting"].get("oid")))
    if "filled" in entry:
        done = entry["filled"]
        return Ack(
            client_id,
            "filled",
            exchange_id=_id(done.get("oid")),
            filled=str(done["totalSz"]),
            average_price=str(done["avgPx"]),
        )
    if "error" in entry:
        reason = str(entry["error"])
        if _is_duplicate_cloid(reason):
            raise OrderStateUnknown(client_id, reason)
        return Ack(client_id, "rejected", reason=reason)
    raise OrderStateUnknown(client_id, f"unexpected order status {entry!r}")


def parse_order_status(client_id: str, response: Any) -> Lookup:
    """Map an ``orderStatus`` answer to a :class:`~levalign.venues.base.Lookup`.

    ``open`` and ``triggered`` are resting; ``filled`` is filled; statuses ending in
    ``Rejected`` (``minTradeNtlRejected``, ``perpMarginRejected``, ...) or ``rejected`` are
    rejected; the others (``canceled``, ``marginCanceled``, ``reduceOnlyCanceled``, an IOC's
    unfilled rest, ...) are canceled; ``unknownOid`` is ``not_found``. The reason is the
    exchange's status string.
    """
    if not isinstance(response, Mapping) or "status" not in response:
        raise OrderStateUnknown(client_id, f"unexpected orderStatus answer {response!r}")
    if response["status"] == "unknownOid":
        return Lookup(client_id, "not_found")
    try:
        wrapper = response["order"]
        oid, status = _id(wrapper["order"].get("oid")), str(wrapper["status"])
    except (KeyError, TypeError, AttributeError):
        raise OrderStateUnknown(client_id, f"unexpected orderStatus answer {response!r}") from None
    if status in ("open", "triggered"):
        return Lookup(client_id, "resting", exchange_id=oid, reason=status)
    if status == "filled":
        return Lookup(client_id, "filled", exchange_id=oid, reason=status)
    if status.lower().endswith("rejected"):
        return Lookup(client_id, "rejected", exchange_id=oid, reason=status)
    return Lookup(client_id, "canceled", exchange_id=oid, reason=status)


def _id(value: Any) -> str | None:
    return str(value) if value is not None else None


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


def credentials_from_env(ref: str) -> SecretKey:
    """Resolve a credentials reference ``env:NAME`` to the key in environment variable NAME.

    Raises
    ------
    ConfigurationError
        If the reference has another form or the variable is unset (the message names the
        reference, never a value).
    """
    kind, _, name = ref.partition(":")
    if kind != "env" or not name:
        raise ConfigurationError(
            f"credentials reference {ref!r} is not of the form env:NAME",
            field="credentials",
            value=ref,
        )
    value = os.environ.get(name)
    if not value:
        raise ConfigurationError(
            f"environment variable {name} (credentials {ref!r}) is not set: export the API "
            "wallet's private key in it",
            field="credentials",
            value=ref,
        )
    return SecretKey(value)


class HyperliquidVenue:
    """Hyperliquid for any number of follower accounts: a ``levalign.venues.base.OrderVenue``.

    Each order names its account and a credentials reference; the key behind the reference
    (an API wallet approved by the account) signs, through the official SDK's ``Exchange``.
    Market metadata (``meta``, ``spotMeta``) is read once and shared by every account's client.

    Parameters
    ----------
    base_url
        Hyperliquid's API, ``https://api.hyperliquid.xyz`` or a compatible server.
    credentials
        Resolves a credentials reference to a :class:`SecretKey` (default:
        :func:`credentials_from_env`, ``env:NAME``).
    limiter
        A shared :class:`RateLimiter` for this client's ``/info`` requests (lookups, account
        states, metadata); the dispatcher limits the orders. ``None``: no waiting.
    timeout
        Seconds for one HTTP request; past it an order's state is unknown.
    market_slippage
        The cap of an order without a price limit: the mid ± this fraction (the SDK's
        ``market_open`` default, 5 %).
    """

    def __init__(
        self,
        base_url: str,
        *,
        credentials: Callable[[str], SecretKey] = credentials_from_env,
        limiter: RateLimiter | None = None,
        timeout: float = 10.0,
        market_slippage: float = 0.05,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise ConfigurationError(
                f"base_url must start with http:// or https://, got {base_url!r}",
                field="base_url",
                value=base_url,
            )
        self.base_url = base_url.rstrip("/")
        self._credentials = credentials
        self.limiter = limiter
        self.timeout = timeout
        self.market_slippage = market_slippage
        self._lock = threading.RLock()
        self._meta: tuple[Any, Any] | None = None
        self._sz_decimals: dict[str, int] = {}
        self._clients: dict[tuple[str, str], tuple[Exchange, threading.Lock]] = {}

    def __repr__(self) -> str:
        return f"HyperliquidVenue(base_url={self.base_url!r}, accounts={len(self._clients)})"

    # ------------------------------------------------------------------ plumbing

    def _wait(self, weight: int) -> None:
        if self.limiter is not None:
            delay = self.limiter.reserve(weight)
            if delay > 0:
                time.sleep(delay)

    def _post_info(self, body: dict[str, Any]) -> Any:
        import requests

        self._wait(info_weight(str(body["type"])))
        url = self.base_url + "/info"
        return self._call(lambda: _json_post(requests, url, body, self.timeout), None)

    def _metadata(self) -> tuple[Any, Any]:
        """``meta`` and ``spotMeta``, read once; a base_url that does not answer is named."""
        with self._lock:
            if self._meta is None:
                try:
                    meta = self._post_info({"type": "meta"})
                    spot = self._post_info({"type": "spotMeta"})
                    decimals = {str(a["name"]): int(a["szDecimals"]) for a in meta["universe"]}
                except (Retryable, KeyError, TypeError, ValueError) as exc:
                    raise ConfigurationError(
                        f"cannot read Hyperliquid's market list at {self.base_url} "
                        f"({exc}); check base_url and the network",
                        field="base_url",
                        value=self.base_url,
                    ) from None
                self._meta, self._sz_decimals = (meta, spot), decimals
            return self._meta

    def _client(self, account: str, credentials_ref: str) -> tuple[Exchange, threading.Lock]:
        key = (account.lower(), credentials_ref)
        with self._lock:
            found = self._clients.get(key)
            if found is None:
                found = self._new_client(account, credentials_ref)
                self._clients[key] = found
            return found

    def _new_client(self, account: str, credentials_ref: str) -> tuple[Exchange, threading.Lock]:
        if not _ADDRESS.match(account):
            raise ConfigurationError(
                f"account must be 0x and 40 hex digits, got {account!r}",
                field="account",
                value=account,
            )
        from eth_account import Account
        from hyperliquid.exchange import Exchange

        secret = self._credentials(credentials_ref)
        try:
            wallet = Account.from_key(secret.reveal())
        except (ValueError, TypeError):
            raise ConfigurationError(
                f"the key of {credentials_ref!r} is not a valid secp256k1 private key",
                field="credentials",
                value=credentials_ref,
            ) from None
        meta, spot = self._metadata()
        client = Exchange(
            wallet,
            self.base_url,
            meta=meta,
            spot_meta=spot,
            account_address=account,
            timeout=self.timeout,
        )
        return client, threading.Lock()

    def coin(self, symbol: str) -> str:
        """Hyperliquid's coin for a levalign symbol: ``BTC/USDC:USDC`` -> ``BTC``."""
        return symbol.split("/", 1)[0]

    def sz_decimals(self, symbol: str) -> int:
        """``szDecimals`` of the symbol's coin, from the exchange's ``meta``."""
        self._metadata()
        coin = self.coin(symbol)
        if coin not in self._sz_decimals:
            raise InvalidInput(
                f"{symbol}: Hyperliquid at {self.base_url} lists no perpetual {coin!r}",
                field="symbol",
                value=symbol,
            )
        return self._sz_decimals[coin]

    def price_cap(self, symbol: str, reference: float, side: str, slippage: float) -> str:
        """The slippage guard's IOC limit for ``symbol``, as ``OrderRequest.price_limit`` wants it.

        See :func:`limit_price`: a buy's cap rounded down, a sell's floor rounded up.
        """
        decimals = self.sz_decimals(symbol)
        return str(limit_price(reference, side == "buy", slippage, decimals))

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

    # ------------------------------------------------------------------ OrderVenue

    def submit(self, order: OrderRequest) -> Ack:
        """Send ``order`` once: a limit order at ``price_limit`` with its cloid.

        ``time_in_force`` ``ioc`` or ``gtc``; without a price limit, the cap is the mid ±
        ``market_slippage``. The action expires at ``expires_at_ms`` (``expiresAfter``): the
        exchange refuses it after that, so a ``not_found`` lookup then is final.

        Returns
        -------
        Ack
            ``resting``, ``filled`` or ``rejected`` (with the exchange's reason).

        Raises
        ------
        OrderStateUnknown
            When the answer is lost: resolve it with :meth:`lookup`, never by resending.
        Rejected
            When the order cannot be expressed on Hyperliquid (size below the lot, unknown
            coin, a time in force it lacks).
        ConfigurationError
            When the account's credentials cannot be resolved, or ``base_url`` does not answer.
        """
        from hyperliquid.utils.types import Cloid

        cid = order.client_id
        if not _CLOID.match(cid):
            raise Rejected(f"client id {cid!r} is not a Hyperliquid cloid", field="client_id")
        tif = {"ioc": "Ioc", "gtc": "Gtc"}.get(order.time_in_force.lower())
        if tif is None:
            raise Rejected(
                f"time in force {order.time_in_force!r}: Hyperliquid takes ioc or gtc",
                field="time_in_force",
            )
        is_buy = order.side == "buy"
        coin = self.coin(order.symbol)
        try:
            decimals = self.sz_decimals(order.symbol)
            size = format_size(order.amount, decimals)
            if order.price_limit is None:
                mid = self._post_info({"type": "allMids"})[coin]
                price = limit_price(float(mid), is_buy, self.market_slippage, decimals)
            else:
                price = format_price(order.price_limit, decimals, "down" if is_buy else "up")
        except InvalidInput as exc:
            raise Rejected(exc.message, field=exc.field, value=exc.value) from None
        if size != Decimal(order.amount):
            log.warning(
                "order %s: amount %s rounded down to %s (szDecimals)", cid, order.amount, size
            )
        client, lock = self._client(order.account, order.credentials_ref)
        self._wait(exchange_weight(1))
        log.info(
            "order %s: %s %s %s %s at limit %s%s",
            cid,
            tif,
            order.side,
            size,
            coin,
            price,
            " reduce-only" if order.reduce_only else "",
        )
        with lock:
            client.set_expires_after(order.expires_at_ms)
            response = self._call(
                lambda: client.order(
                    coin,
                    is_buy,
                    float(size),
                    float(price),
                    {"limit": {"tif": tif}},
                    reduce_only=order.reduce_only,
                    cloid=Cloid.from_str(cid),
                ),
                cid,
            )
        if isinstance(response, Mapping) and "error" in response and "status" not in response:
            raise OrderStateUnknown(cid, str(response["error"])[:200])  # unreadable body
        ack = parse_order_response(cid, response)
        log.info("order %s: %s %s", cid, ack.status, ack.reason or "")
        return ack

    def lookup(self, order: OrderRequest) -> Lookup:
        """The order's state by its cloid (``orderStatus``); ``not_found`` if never placed.

        Raises
        ------
        Retryable
            When the lookup itself fails (network, 5xx, 429): try again later.
        """
        body = {"type": "orderStatus", "user": order.account.lower(), "oid": order.client_id}
        return parse_order_status(order.client_id, self._post_info(body))

    def account(self, address: str) -> AccountState:
        """An account's equity and positions (``clearinghouseState``)."""
        data = self._post_info({"type": "clearinghouseState", "user": address.lower()})
        try:
            positions: dict[str, float] = {}
            entries: dict[str, float] = {}
            for entry in data.get("assetPositions") or []:
                pos = entry["position"]
                szi = float(pos["szi"])
                if szi == 0:
                    continue
                symbol = f"{pos['coin']}/USDC:USDC"
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


def _json_post(requests: Any, url: str, body: dict[str, Any], timeout: float) -> Any:
    """POST ``body`` as JSON; the SDK's error classes for 4xx and 5xx, so one mapping serves."""
    from hyperliquid.utils.error import ClientError, ServerError

    resp = requests.post(url, json=body, timeout=timeout)
    if resp.status_code >= 500:
        raise ServerError(resp.status_code, resp.text)
    if resp.status_code >= 400:
        raise ClientError(resp.status_code, None, resp.text, None)
    return resp.json()
