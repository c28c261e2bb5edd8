r"""The dispatcher: pending orders from the outbox to the venue, risk-reducing first, rate-limited.

One pass (:meth:`Dispatcher.dispatch_once`) claims pending orders (closes, reductions and
de-risking before opens: :meth:`levalign.engine.store.Store.claim` orders by ``priority``),
each only if the rate limiter has budget for it, sends them one by one and records each
answer. An answer that does not come (timeout, 5xx, lost response) makes the order
``unknown``; :meth:`Dispatcher.resolve_unknown` looks such orders up by client id, never
resending one blind. Several dispatchers may share a store: claims are disjoint.

Rate limits modelled on Hyperliquid's documentation ("Rate limits and user limits"):

- per IP, REST requests share a weight budget of 1200 per minute; an exchange action
  weighs :math:`1 + \lfloor n / 40 \rfloor` for a batch of :math:`n` orders, ``orderStatus``
  weighs 2;
- per address, actions are allowed up to 10,000 plus one per USDC traded since the address
  was created; an address past its allowance may send one action every 10 seconds.

The IP budget is a token bucket (capacity 1200, refilled at 20 per second); the address
allowance a counter credited by traded volume (:meth:`RateLimiter.credit_volume`).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from levalign.engine.store import Backlog, Candidate, Store, now_ms
from levalign.errors import Rejected, Retryable
from levalign.venues.base import Ack, OrderRequest, OrderVenue

__all__ = [
    "HYPERLIQUID_LIMITS",
    "AddressAllowance",
    "DispatchReport",
    "Dispatcher",
    "RateLimiter",
    "RateLimits",
    "TokenBucket",
    "exchange_weight",
]


@dataclass(frozen=True, slots=True)
class RateLimits:
    """A venue's published limits (defaults: Hyperliquid's)."""

    ip_weight_per_minute: float = 1200.0
    batch_per_weight: int = 40
    order_status_weight: float = 2.0
    address_initial_actions: float = 10_000.0
    address_actions_per_usd: float = 1.0
    address_throttled_every_s: float = 10.0


HYPERLIQUID_LIMITS = RateLimits()


def exchange_weight(batch_length: int, limits: RateLimits = HYPERLIQUID_LIMITS) -> int:
    r"""IP weight of one exchange action carrying ``batch_length`` orders.

    .. math:: w = 1 + \lfloor n / 40 \rfloor

    (Hyperliquid: an unbatched action weighs 1, a batch of 79 orders weighs 2.)
    """
    return 1 + batch_length // limits.batch_per_weight


class TokenBucket:
    """A token bucket: ``capacity`` tokens, refilled continuously at ``rate`` per second.

    Time is passed in (seconds on any monotonic clock), so the bucket is deterministic.
    """

    def __init__(self, capacity: float, rate: float, *, now: float = 0.0) -> None:
        self.capacity = capacity
        self.rate = rate
        self.tokens = capacity
        self.stamp = now

    def _refill(self, now: float) -> None:
        if now > self.stamp:
            self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
            self.stamp = now

    def take(self, weight: float, now: float) -> bool:
        """Take ``weight`` tokens if there are that many now; say whether it did."""
        self._refill(now)
        if self.tokens >= weight:
            self.tokens -= weight
            return True
        return False

    def wait(self, weight: float, now: float) -> float:
        """Seconds until ``weight`` tokens will be there (0 if now)."""
        self._refill(now)
        missing = weight - self.tokens
        return 0.0 if missing <= 0 else missing / self.rate


@dataclass(slots=True)
class AddressAllowance:
    """One address's action allowance: ``initial + per_usd * volume - used``.

    Past it, one action per ``throttled_every_s`` seconds.
    """

    remaining: float
    throttled_every_s: float
    last_throttled: float = -math.inf

    def take(self, now: float) -> bool:
        """Use one action if the allowance (or the throttled pace) permits it."""
        if self.remaining >= 1:
            self.remaining -= 1
            return True
        if now - self.last_throttled >= self.throttled_every_s:
            self.last_throttled = now
            return True
        return False


class RateLimiter:
    """IP weight bucket plus per-address allowances, checked together for each order.

    Parameters
    ----------
    limits
        The venue's limits (default Hyperliquid's).
    clock
        Seconds on a monotonic clock (default :func:`time.monotonic`).
    """

    def __init__(
        self,
        limits: RateLimits = HYPERLIQUID_LIMITS,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.limits = limits
        self.clock = clock
        self.ip = TokenBucket(
            limits.ip_weight_per_minute, limits.ip_weight_per_minute / 60.0, now=clock()
        )
        self.addresses: dict[str, AddressAllowance] = {}

    def _address(self, account: str) -> AddressAllowance:
        found = self.addresses.get(account)
        if found is None:
            found = AddressAllowance(
                self.limits.address_initial_actions, self.limits.address_throttled_every_s
            )
            self.addresses[account] = found
        return found

    def accept(self, candidate: Candidate) -> bool:
        """Budget for one unbatched order action of ``candidate.account`` (both limits)."""
        now = self.clock()
        allowance = self._address(candidate.account)
        weight = exchange_weight(1, self.limits)
        if self.ip.wait(weight, now) > 0:
            return False
        if not allowance.take(now):
            return False
        return self.ip.take(weight, now)

    def take_info(self, weight: float) -> bool:
        """Budget for an info request of ``weight`` (``orderStatus``: 2)."""
        return self.ip.take(weight, self.clock())

    def credit_volume(self, account: str, usd: float) -> None:
        """Add the actions an address earned by trading ``usd`` of volume."""
        self._address(account).remaining += usd * self.limits.address_actions_per_usd


@dataclass(slots=True)
class DispatchReport:
    """What one dispatcher pass did, and the backlog after it."""

    claimed: int = 0
    acknowledged: int = 0
    filled: int = 0
    rejected: int = 0
    unknown: int = 0
    resolved: int = 0
    backlog: Backlog | None = None
    reasons: dict[str, str] = field(default_factory=dict)


class Dispatcher:
    """Sends the outbox's pending orders to a venue, exactly once each.

    Parameters
    ----------
    store
        The outbox.
    venue
        Where orders go (:class:`levalign.venues.base.OrderVenue`).
    worker
        This dispatcher's name, unique among those sharing the store.
    limiter
        Rate limits to respect (None: unlimited, e.g. a paper venue).
    batch
        Most orders claimed per pass.
    expires_in_ms
        How long after its claim an order may still be accepted by the venue.
    lease_ms
        After how long a ``sent`` order with no answer is presumed orphaned (its sender
        died) and looked up; longer than any send's timeout.
    clock_ms
        Epoch milliseconds (default: the wall clock).
    lead_id
        Send only the orders of this lead's followers (None: every lead's).
    """

    def __init__(  # noqa: PLR0913  (store and venue, then keyword-only options)
        self,
        store: Store,
        venue: OrderVenue,
        *,
        worker: str,
        limiter: RateLimiter | None = None,
        batch: int = 64,
        expires_in_ms: int = 10_000,
        lease_ms: int = 30_000,
        clock_ms: Callable[[], int] = now_ms,
        lead_id: int | None = None,
    ) -> None:
        self.store = store
        self.venue = venue
        self.worker = worker
        self.limiter = limiter
        self.batch = batch
        self.expires_in_ms = expires_in_ms
        self.lease_ms = lease_ms
        self.clock_ms = clock_ms
        self.lead_id = lead_id

    def dispatch_once(self) -> DispatchReport:
        """Claim up to ``batch`` pending orders (risk-reducing first), send and record each."""
        report = DispatchReport()
        orders = self.store.claim(
            self.batch,
            worker=self.worker,
            expires_in_ms=self.expires_in_ms,
            accept=None if self.limiter is None else self.limiter.accept,
            now=self.clock_ms(),
            lead_id=self.lead_id,
        )
        report.claimed = len(orders)
        for order in orders:
            self._send(order, report)
        return report

    def _send(self, order: OrderRequest, report: DispatchReport) -> None:
        cid = order.client_id
        try:
            ack = self.venue.submit(order)
        except Retryable as err:
            self.store.mark_unknown(cid, err.message[:500], now=self.clock_ms())
            report.unknown += 1
            return
        except Rejected as err:
            ack = Ack(cid, "rejected", reason=err.message[:500])
        except BaseException:
            # an unexpected failure leaves the outcome unknown: record that, then let it out
            self.store.mark_unknown(cid, "the venue client failed unexpectedly")
            raise
        self.store.record_ack(ack, now=self.clock_ms())
        if ack.status == "resting":
            report.acknowledged += 1
        elif ack.status == "filled":
            report.filled += 1
        else:
            report.rejected += 1
            report.reasons[cid] = ack.reason or ""

    def resolve_unknown(self, limit: int = 100) -> int:
        """Expire old leases, then look up unknown orders by client id; returns how many moved.

        An order the venue does not know goes back to ``pending`` only once its expiry has
        passed (:meth:`levalign.engine.store.Store.resolve`); a lookup that fails itself
        leaves the order unknown for the next pass.
        """
        now = self.clock_ms()
        self.store.expire_leases(self.lease_ms, now=now)
        moved = 0
        for order in self.store.unknown_orders(limit):
            if self.limiter is not None and not self.limiter.take_info(
                self.limiter.limits.order_status_weight
            ):
                break
            try:
                found = self.venue.lookup(order)
            except Retryable:
                continue
            moved += self.store.resolve(found, now=self.clock_ms())
        return moved

    def backlog(self) -> Backlog:
        """Orders waiting or in flight (see :class:`levalign.engine.store.Backlog`)."""
        return self.store.backlog(now=self.clock_ms(), lead_id=self.lead_id)

    def run(
        self, stop: threading.Event, *, idle_s: float = 0.02, resolve_every_s: float = 1.0
    ) -> None:
        """Dispatch until ``stop`` is set; resolve unknown orders at start and periodically.

        In-flight sends finish before it returns (the loop checks ``stop`` between passes).
        """
        self.resolve_unknown()
        last_resolve = time.monotonic()
        while not stop.is_set():
            report = self.dispatch_once()
            if time.monotonic() - last_resolve >= resolve_every_s:
                self.resolve_unknown()
                last_resolve = time.monotonic()
            if report.claimed == 0:
                stop.wait(idle_s)
