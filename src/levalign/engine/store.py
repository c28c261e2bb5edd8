"""The live copier's durable store: leads, cursors, lead events, followers, orders, fills.

SQLAlchemy 2 over SQLite (the embedded default: WAL journal, ``synchronous=FULL``, a busy
timeout, every transaction ``BEGIN IMMEDIATE``) or PostgreSQL (``postgresql://`` URLs, driven
by psycopg 3). The schema is created and upgraded by the Alembic migrations shipped in
``levalign/engine/migrations`` (:meth:`Store.upgrade`, ``levalign db upgrade``).

The outbox (docs/live.md, "Store and outbox"): :meth:`Store.record_event` commits a lead event,
every follower order it causes and the source cursor in one transaction, and does nothing when
the event is already stored. Orders leave the store only through :meth:`Store.claim`, which
moves them from ``pending`` to ``sent`` in its own transaction before anything is sent
(``FOR UPDATE SKIP LOCKED`` on PostgreSQL; SQLite has one writer at a time), so two
dispatchers never send one order. Every later state change goes through one checked
transition (:data:`levalign.engine.outbox.TRANSITIONS`).

A database that goes away mid-transaction (connection killed, server restarted, SQLite
locked past the busy timeout) raises :class:`levalign.errors.Retryable`; the transaction
committed entirely or not at all, and every write here can be retried as it is.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Connection,
    Engine,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    create_engine,
    event,
    exc,
    exists,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import make_url
from sqlalchemy.orm import DeclarativeBase, Mapped, aliased, mapped_column

from levalign.engine.client_ids import binance_from_cloid, event_cloids
from levalign.engine.outbox import (
    TRANSITIONS,
    Cursor,
    FillRecord,
    FollowerBook,
    LeadEventRecord,
    OrderIntent,
    OrderState,
)
from levalign.errors import InvalidInput, Retryable
from levalign.schemas import FollowerProfile
from levalign.venues.base import Ack, Lookup, OrderRequest

__all__ = [
    "DEFAULT_URL",
    "Backlog",
    "Base",
    "Candidate",
    "FollowerStatus",
    "Store",
    "now_ms",
]

DEFAULT_URL = "sqlite:///levalign.db"
"""The embedded default: ``levalign.db`` in the working directory."""

FollowerStatus = Literal["active", "paused", "stopped", "unfollowed"]
_STATUSES = ("active", "paused", "stopped", "unfollowed")
_SQLITE_BUSY_MS = 10_000
_READ_ONLY = "levalign_read_only"  # execution option: a read transaction (SQLite: deferred)
_SQLITE_CACHE_KIB = 32_768  # page cache per connection: the orders index of many events fits


def now_ms() -> int:
    """Wall-clock epoch milliseconds (every timestamp in the store)."""
    return time.time_ns() // 1_000_000


class Base(DeclarativeBase):
    """Declarative base of the store's tables; constraint names are fixed for migrations."""

    metadata = MetaData(
        naming_convention={
            "ix": "ix_%(table_name)s_%(column_0_N_name)s",
            "uq": "uq_%(table_name)s_%(column_0_N_name)s",
            "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
            "pk": "pk_%(table_name)s",
        }
    )


class Lead(Base):
    """A lead trader: where its fills come from (``hyperliquid``) and its address."""

    __tablename__ = "leads"
    __table_args__ = (UniqueConstraint("source", "address"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    source: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(128))
    created_ms: Mapped[int] = mapped_column(BigInteger)


class SourceCursor(Base):
    """How far a lead's fills have been read: the last fill's time and trade id."""

    __tablename__ = "source_cursors"

    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), primary_key=True)
    fill_time_ms: Mapped[int] = mapped_column(BigInteger)
    tid: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    text: Mapped[str | None] = mapped_column(Text)


class LeadEvent(Base):
    """A lead event (or another cause of orders: de-risking, reconciliation) and its JSON."""

    __tablename__ = "lead_events"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    kind: Mapped[str] = mapped_column(String(32))
    symbol: Mapped[str | None] = mapped_column(String(64))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_ms: Mapped[int] = mapped_column(BigInteger)


class Follower(Base):
    """A follower of one lead: venue account, credentials reference, profile and status.

    ``credentials_ref`` says where the key is (``env:NAME``, ``file:PATH``), never the key.
    ``equity`` is the capital allocated to this lead, moved by realized PnL and fees.
    """

    __tablename__ = "followers"

    id: Mapped[str] = mapped_column(String(128), primary_key=True)
    lead_id: Mapped[int] = mapped_column(ForeignKey("leads.id"), index=True)
    venue: Mapped[str] = mapped_column(String(32))
    address: Mapped[str] = mapped_column(String(128))
    credentials_ref: Mapped[str] = mapped_column(String(256))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    equity: Mapped[float] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16))
    status_reason: Mapped[str | None] = mapped_column(Text)
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Position(Base):
    """A follower's state in one symbol: position (exact decimal), entry, collateral, residual."""

    __tablename__ = "positions"

    follower_id: Mapped[str] = mapped_column(ForeignKey("followers.id"), primary_key=True)
    symbol: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[str] = mapped_column(String(64))
    entry_price: Mapped[float | None] = mapped_column(Float)
    collateral: Mapped[float] = mapped_column(Float)
    residual: Mapped[float] = mapped_column(Float)
    updated_ms: Mapped[int] = mapped_column(BigInteger)


class Order(Base):
    """A follower order in the outbox; ``client_id`` is its Hyperliquid cloid."""

    __tablename__ = "orders"

    client_id: Mapped[str] = mapped_column(String(34), primary_key=True)
    lead_event_id: Mapped[str] = mapped_column(ForeignKey("lead_events.id"))
    follower_id: Mapped[str] = mapped_column(ForeignKey("followers.id"))
    leg: Mapped[str] = mapped_column(String(32))
    seq: Mapped[int] = mapped_column(Integer)
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(4))
    amount: Mapped[str] = mapped_column(String(64))
    price_limit: Mapped[str | None] = mapped_column(String(64))
    reduce_only: Mapped[bool] = mapped_column(Boolean)
    time_in_force: Mapped[str] = mapped_column(String(8))
    leverage: Mapped[float | None] = mapped_column(Float)
    collateral: Mapped[float | None] = mapped_column(Float)
    priority: Mapped[int] = mapped_column(SmallInteger)
    state: Mapped[str] = mapped_column(String(16))
    exchange_id: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[str | None] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_ms: Mapped[int] = mapped_column(BigInteger)
    updated_ms: Mapped[int] = mapped_column(BigInteger)
    sent_ms: Mapped[int | None] = mapped_column(BigInteger)
    expires_at_ms: Mapped[int | None] = mapped_column(BigInteger)


_PENDING_WHERE = Order.state == "pending"
_IN_FLIGHT_WHERE = Order.state.in_(("sent", "unknown", "acknowledged"))
Index(
    "ix_orders_pending",
    Order.priority,
    Order.created_ms,
    Order.seq,
    sqlite_where=_PENDING_WHERE,
    postgresql_where=_PENDING_WHERE,
)
Index(
    "ix_orders_in_flight",
    Order.state,
    Order.sent_ms,
    sqlite_where=_IN_FLIGHT_WHERE,
    postgresql_where=_IN_FLIGHT_WHERE,
)


class Fill(Base):
    """A follower fill, unique by (follower, exchange trade id)."""

    __tablename__ = "fills"
    __table_args__ = (UniqueConstraint("follower_id", "tid"),)

    id: Mapped[int] = mapped_column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True)
    follower_id: Mapped[str] = mapped_column(ForeignKey("followers.id"))
    tid: Mapped[str] = mapped_column(String(64))
    client_id: Mapped[str | None] = mapped_column(String(34), index=True)
    exchange_id: Mapped[str | None] = mapped_column(String(64))
    symbol: Mapped[str] = mapped_column(String(64))
    side: Mapped[str] = mapped_column(String(4))
    amount: Mapped[str] = mapped_column(String(64))
    price: Mapped[str] = mapped_column(String(64))
    fee: Mapped[float] = mapped_column(Float)
    closed_pnl: Mapped[float] = mapped_column(Float)
    time_ms: Mapped[int] = mapped_column(BigInteger)


_ORDER_COLUMNS = (
    "client_id",
    "lead_event_id",
    "follower_id",
    "leg",
    "seq",
    "symbol",
    "side",
    "amount",
    "price_limit",
    "reduce_only",
    "time_in_force",
    "leverage",
    "collateral",
    "priority",
    "state",
    "attempts",
    "created_ms",
    "updated_ms",
)


@dataclass(frozen=True, slots=True)
class Candidate:
    """A pending order offered to a claim's ``accept`` (the rate limiter decides on it)."""

    client_id: str
    account: str
    priority: int
    reduce_only: bool


@dataclass(frozen=True, slots=True)
class Backlog:
    """Orders by state, and the age of the oldest pending one (epoch-ms difference)."""

    pending_reducing: int
    pending_opening: int
    sent: int
    unknown: int
    acknowledged: int
    oldest_pending_ms: int | None


def _postgres_url(url: str) -> str:
    for scheme in ("postgresql://", "postgres://"):
        if url.startswith(scheme):
            return "postgresql+psycopg://" + url[len(scheme) :]
    return url


def _redacted(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


class Store:
    """The copier's database.

    Parameters
    ----------
    url
        SQLAlchemy URL: ``sqlite:///PATH`` (default ``sqlite:///levalign.db``) or
        ``postgresql://user@host/db`` (psycopg 3 is used for ``postgresql://``).
    echo
        Log every statement (SQLAlchemy's ``echo``).

    Raises
    ------
    InvalidInput
        The URL is malformed or names another database kind.
    """

    def __init__(self, url: str | None = None, *, echo: bool = False) -> None:
        raw = _postgres_url(url or DEFAULT_URL)
        try:
            parsed = make_url(raw)
        except exc.ArgumentError as err:
            raise InvalidInput(
                f"store URL {raw!r} is not a database URL; use sqlite:///PATH or "
                "postgresql://USER@HOST/DB",
                field="store.url",
                value=raw,
            ) from err
        backend = parsed.get_backend_name()
        if backend not in ("sqlite", "postgresql"):
            raise InvalidInput(
                f"store URL {_redacted(raw)!r} names {backend!r}; the store supports sqlite and "
                "postgresql",
                field="store.url",
                value=backend,
            )
        self.url = raw
        self.safe_url = _redacted(raw)
        """The URL with any password hidden, for messages."""
        self.dialect = backend
        if backend == "sqlite":
            self.engine: Engine = create_engine(
                raw,
                echo=echo,
                connect_args={"check_same_thread": False, "timeout": _SQLITE_BUSY_MS / 1000},
            )
            _configure_sqlite(self.engine)
        else:
            self.engine = create_engine(raw, echo=echo, pool_pre_ping=True)
        self._param = "?" if backend == "sqlite" else "%s"
        self._insert_orders_sql = self._insert_sql("orders", _ORDER_COLUMNS)

    # ----------------------------------------------------------------- plumbing

    def close(self) -> None:
        """Close every pooled connection."""
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *args: object) -> None:
        self.close()

    def upgrade(self, revision: str = "head") -> None:
        """Create or migrate the schema to ``revision`` with the shipped Alembic migrations.

        Raises
        ------
        Retryable
            The database went away during the migration (each migration is transactional
            on PostgreSQL; run it again).
        """
        from alembic import command

        with self._translate("upgrading the schema"), self.engine.begin() as conn:
            cfg = alembic_config(self.url)
            cfg.attributes["connection"] = conn
            command.upgrade(cfg, revision)

    @contextmanager
    def _translate(self, what: str) -> Iterator[None]:
        try:
            yield
        except exc.IntegrityError:
            raise
        except (exc.OperationalError, exc.InterfaceError) as err:
            raise self._retryable(what, err) from err
        except exc.DBAPIError as err:
            if err.connection_invalidated:
                raise self._retryable(what, err) from err
            raise

    def _retryable(self, what: str, err: exc.DBAPIError) -> Retryable:
        cause = str(err.orig).strip().splitlines()[0] if err.orig is not None else str(err)
        return Retryable(
            f"the store at {self.safe_url} failed while {what} ({cause}); nothing of it "
            "was committed unless the failure hit the commit itself, and retrying the same "
            "call is safe",
            field="store.url",
            details={"cause": cause[:300]},
        )

    @contextmanager
    def _begin(self, what: str) -> Iterator[Connection]:
        with self._translate(what), self.engine.begin() as conn:
            yield conn

    @contextmanager
    def _read(self, what: str) -> Iterator[Connection]:
        """Open a read-only transaction: on SQLite a deferred ``BEGIN``.

        It never waits for the write lock: WAL readers see the last commit while a writer
        works.
        """
        with self._translate(what), self.engine.connect() as conn:
            conn.execution_options(**{_READ_ONLY: True})
            with conn.begin():
                yield conn

    def _insert_sql(self, table: str, columns: Sequence[str], suffix: str = "") -> str:
        marks = ", ".join([self._param] * len(columns))
        # table and column names are this module's constants; values go as parameters
        return f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks}){suffix}"  # noqa: S608

    # ----------------------------------------------------------------- leads, followers

    def add_lead(self, source: str, address: str) -> int:
        """The id of lead (``source``, ``address``), creating it if absent."""
        table = Lead.__table__
        with self._begin("adding a lead") as conn:
            conn.execute(
                self._upsert(table)
                .values(source=source, address=address, created_ms=now_ms())
                .on_conflict_do_nothing()
            )
            return int(
                conn.execute(
                    select(Lead.id).where(Lead.source == source, Lead.address == address)
                ).scalar_one()
            )

    def _upsert(self, table: Any) -> Any:
        if self.dialect == "sqlite":
            from sqlalchemy.dialects.sqlite import insert as sqlite_insert

            return sqlite_insert(table)
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert(table)

    def add_followers(
        self,
        lead_id: int,
        followers: Sequence[Mapping[str, Any]],
        *,
        venue: str = "hyperliquid",
    ) -> int:
        """Add followers of ``lead_id``.

        Each row has ``id``, ``address``, ``credentials_ref``, ``equity`` and any
        :class:`~levalign.schemas.FollowerProfile` field (its profile).

        Followers already stored are left as they are. Returns how many were added.

        Raises
        ------
        InvalidInput
            A row lacks a field, has an unknown one, or its ``credentials_ref`` looks like a
            key rather than a reference to one (the message names the row and field).
        """
        stamp = now_ms()
        rows = [
            _follower_row(lead_id, venue, row, f"followers[{i}]", stamp)
            for i, row in enumerate(followers)
        ]
        if not rows:
            return 0
        with self._begin("adding followers") as conn:
            result = conn.execute(self._upsert(Follower.__table__).on_conflict_do_nothing(), rows)
            return max(int(result.rowcount), 0)

    def set_status(
        self, follower_id: str, status: FollowerStatus, reason: str | None = None
    ) -> None:
        """Set a follower's status (``active``, ``paused``, ``stopped``, ``unfollowed``) and why.

        Raises
        ------
        InvalidInput
            Unknown status or follower.
        """
        if status not in _STATUSES:
            raise InvalidInput(
                f"follower status must be one of {', '.join(_STATUSES)}, got {status!r}",
                field="status",
                value=status,
            )
        with self._begin("setting a follower's status") as conn:
            result = conn.execute(
                update(Follower)
                .where(Follower.id == follower_id)
                .values(status=status, status_reason=reason, updated_ms=now_ms())
            )
            if result.rowcount == 0:
                raise InvalidInput(
                    f"no follower {follower_id!r} in the store",
                    field="follower_id",
                    value=follower_id,
                )

    def follower(self, follower_id: str) -> dict[str, Any] | None:
        """A follower's row and positions as JSON-ready data, or None."""
        with self._read("reading a follower") as conn:
            row = conn.execute(select(Follower).where(Follower.id == follower_id)).mappings()
            found = row.one_or_none()
            if found is None:
                return None
            out = dict(found)
            out["positions"] = {
                p["symbol"]: dict(p)
                for p in conn.execute(
                    select(Position).where(Position.follower_id == follower_id)
                ).mappings()
            }
            return out

    def followers(self, lead_id: int | None = None) -> list[dict[str, Any]]:
        """Every follower (of ``lead_id``, or of all leads) with its positions, by id."""
        query = select(Follower).order_by(Follower.id)
        if lead_id is not None:
            query = query.where(Follower.lead_id == lead_id)
        with self._read("reading followers") as conn:
            rows = [dict(r) for r in conn.execute(query).mappings()]
            positions: dict[str, dict[str, dict[str, Any]]] = {}
            for p in conn.execute(select(Position)).mappings():
                positions.setdefault(str(p["follower_id"]), {})[str(p["symbol"])] = dict(p)
        for row in rows:
            row["positions"] = positions.get(str(row["id"]), {})
        return rows

    def configure_follower(
        self, follower_id: str, *, address: str, credentials_ref: str, profile: Mapping[str, Any]
    ) -> None:
        """Replace a stored follower's address, credentials reference and profile.

        Its equity, positions and status are left as they are (the store's truth).
        """
        with self._begin("configuring a follower") as conn:
            conn.execute(
                update(Follower)
                .where(Follower.id == follower_id)
                .values(
                    address=address,
                    credentials_ref=credentials_ref,
                    profile=dict(profile),
                    updated_ms=now_ms(),
                )
            )

    def orders(
        self, *, follower_id: str | None = None, state: str | None = None, limit: int = 1000
    ) -> list[dict[str, Any]]:
        """Orders, newest first, optionally of one follower or in one state."""
        query = select(Order).order_by(Order.created_ms.desc(), Order.seq.desc()).limit(limit)
        if follower_id is not None:
            query = query.where(Order.follower_id == follower_id)
        if state is not None:
            query = query.where(Order.state == state)
        with self._read("reading orders") as conn:
            return [dict(r) for r in conn.execute(query).mappings()]

    def order_counts(self) -> dict[str, int]:
        """How many orders are in each state."""
        with self._read("counting orders") as conn:
            return {
                str(state): int(n)
                for state, n in conn.execute(
                    select(Order.state, func.count()).group_by(Order.state)
                )
            }

    def event_count(self, lead_id: int | None = None) -> int:
        """How many lead events are stored (of ``lead_id``, or in all)."""
        query = select(func.count()).select_from(LeadEvent)
        if lead_id is not None:
            query = query.where(LeadEvent.lead_id == lead_id)
        with self._read("counting lead events") as conn:
            return int(conn.execute(query).scalar_one())

    def unfilled_orders(self) -> list[tuple[str, str, str, int]]:
        """Orders that filled or rest at the venue with no fill stored yet.

        ``(client_id, follower_id, account, created_ms)``: whose fills the engine must read.
        """
        with self._read("reading orders awaiting fills") as conn:
            rows = conn.execute(
                select(Order.client_id, Order.follower_id, Follower.address, Order.created_ms)
                .join(Follower, Follower.id == Order.follower_id)
                .outerjoin(Fill, Fill.client_id == Order.client_id)
                .where(Order.state.in_(("filled", "acknowledged")), Fill.id.is_(None))
            ).all()
        return [(str(r[0]), str(r[1]), str(r[2]), int(r[3])) for r in rows]

    def pnl_since(self, since_ms: int) -> dict[str, float]:
        """Realized PnL less fees of each follower's fills since ``since_ms`` (epoch ms)."""
        with self._read("reading realized PnL") as conn:
            return {
                str(fid): float(pnl)
                for fid, pnl in conn.execute(
                    select(Fill.follower_id, func.sum(Fill.closed_pnl - Fill.fee))
                    .where(Fill.time_ms >= since_ms)
                    .group_by(Fill.follower_id)
                )
            }

    def last_fill_ms(self, follower_id: str) -> int | None:
        """Time of the follower's newest stored fill, or None."""
        with self._read("reading the last fill") as conn:
            found = conn.execute(
                select(func.max(Fill.time_ms)).where(Fill.follower_id == follower_id)
            ).scalar_one_or_none()
        return None if found is None else int(found)

    # ----------------------------------------------------------------- outbox

    def cursor(self, lead_id: int) -> Cursor | None:
        """The lead's durable source cursor, or None before its first event."""
        with self._read("reading a source cursor") as conn:
            row = conn.execute(
                select(SourceCursor.fill_time_ms, SourceCursor.tid, SourceCursor.text).where(
                    SourceCursor.lead_id == lead_id
                )
            ).one_or_none()
        return None if row is None else Cursor(int(row[0]), int(row[1]), row[2])

    def advance_cursor(self, lead_id: int, cursor: Cursor) -> None:
        """Move the lead's cursor forward to ``cursor`` (never backward), alone.

        For fills that cause no orders; an event's own cursor goes with
        :meth:`record_event`.
        """
        with self._begin("advancing a source cursor") as conn:
            self._advance_cursor(conn, lead_id, cursor, now_ms())

    def _advance_cursor(self, conn: Connection, lead_id: int, cursor: Cursor, stamp: int) -> None:
        p = self._param
        conn.exec_driver_sql(
            "INSERT INTO source_cursors (lead_id, fill_time_ms, tid, updated_ms, text) "  # noqa: S608
            f"VALUES ({p}, {p}, {p}, {p}, {p}) ON CONFLICT (lead_id) DO UPDATE SET "
            "fill_time_ms = excluded.fill_time_ms, tid = excluded.tid, "
            "updated_ms = excluded.updated_ms, text = excluded.text WHERE "
            "(source_cursors.fill_time_ms, source_cursors.tid) < "
            "(excluded.fill_time_ms, excluded.tid) OR (excluded.text IS NOT NULL AND "
            "source_cursors.fill_time_ms <= excluded.fill_time_ms)",
            (lead_id, cursor.fill_time_ms, cursor.tid, stamp, cursor.text),
        )

    def record_event(
        self,
        lead_event: LeadEventRecord,
        orders: Sequence[OrderIntent],
        cursor: Cursor | None = None,
        *,
        residuals: Mapping[str, float] | None = None,
    ) -> bool:
        """Commit a lead event, its follower orders and the cursor advance in ONE transaction.

        Parameters
        ----------
        lead_event
            The event; its ``id`` is the idempotency key.
        orders
            Every follower order the event causes, each stored ``pending`` under the client id
            derived from (event id, follower id, leg).
        cursor
            The source position after this event; stored only if it is past the current one.
        residuals
            Follower id -> carried amount in ``lead_event.symbol`` after the event
            (``accumulate`` policy), written in the same transaction.

        Returns
        -------
        bool
            True if the event was recorded now, False if it already was (nothing changed).

        Raises
        ------
        Retryable
            The database went away: nothing of this event was committed, or all of it was;
            call again with the same arguments.
        InvalidInput
            ``residuals`` without ``lead_event.symbol``; two orders with one (follower, leg).
        """
        stamp = now_ms()
        ev_id = lead_event.id
        ids = event_cloids(ev_id, [(o.follower_id, o.leg) for o in orders])
        rows = [
            (
                ids[seq],
                ev_id,
                o.follower_id,
                o.leg,
                seq,
                o.symbol,
                o.side,
                o.amount,
                o.price_limit,
                o.reduce_only,
                o.time_in_force,
                o.leverage,
                o.collateral,
                o.priority,
                "pending",
                0,
                stamp,
                stamp,
            )
            for seq, o in enumerate(orders)
        ]
        if len({r[0] for r in rows}) != len(rows):
            raise InvalidInput(
                f"lead event {ev_id!r} has two orders with one (follower, leg); each follower "
                "leg must be unique within an event",
                field="orders",
            )
        if residuals and lead_event.symbol is None:
            raise InvalidInput(
                "residuals need the lead event's symbol", field="lead_event.symbol", value=None
            )
        with self._begin("recording a lead event") as conn:
            p = self._param
            inserted = conn.exec_driver_sql(
                "INSERT INTO lead_events (id, lead_id, kind, symbol, payload, created_ms) "  # noqa: S608
                f"VALUES ({p}, {p}, {p}, {p}, {p}, {p}) ON CONFLICT (id) DO NOTHING",
                (
                    ev_id,
                    lead_event.lead_id,
                    lead_event.kind,
                    lead_event.symbol,
                    _json(lead_event.payload),
                    lead_event.created_ms,
                ),
            ).rowcount
            if inserted != 1:
                return False
            if rows:
                # ascending client ids: one event's orders fill one run of index pages
                rows.sort()
                self._bulk_insert_orders(conn, rows)
            if residuals:
                self._write_residuals(conn, str(lead_event.symbol), residuals, stamp)
            if cursor is not None:
                self._advance_cursor(conn, lead_event.lead_id, cursor, stamp)
        return True

    def _bulk_insert_orders(self, conn: Connection, rows: list[tuple[Any, ...]]) -> None:
        """Insert the rows with the driver itself, in the connection's transaction.

        PostgreSQL: COPY; SQLite: one prepared ``executemany``. Going past SQLAlchemy's
        statement layer saves its per-row parameter handling (most of the call's time for
        10,000 rows).
        """
        raw = conn.connection.driver_connection
        if raw is None:  # the pooled connection was closed under us
            raise Retryable("the store connection closed while recording", field="store.url")
        if self.dialect == "postgresql":
            with (
                raw.cursor() as cur,
                cur.copy(f"COPY orders ({', '.join(_ORDER_COLUMNS)}) FROM STDIN") as copy,
            ):
                for row in rows:
                    copy.write_row(row)
        else:
            cur = raw.cursor()
            try:
                cur.executemany(self._insert_orders_sql, rows)
            finally:
                cur.close()

    def _write_residuals(
        self, conn: Connection, symbol: str, residuals: Mapping[str, float], stamp: int
    ) -> None:
        sql = self._insert_sql(
            "positions",
            ("follower_id", "symbol", "position", "collateral", "residual", "updated_ms"),
            " ON CONFLICT (follower_id, symbol) DO UPDATE SET residual = excluded.residual, "
            "updated_ms = excluded.updated_ms",
        )
        conn.exec_driver_sql(
            sql, [(fid, symbol, "0", 0.0, float(r), stamp) for fid, r in residuals.items()]
        )

    def event_recorded(self, event_id: str) -> bool:
        """Whether lead event ``event_id`` is in the store."""
        with self._read("reading a lead event") as conn:
            found = conn.execute(select(LeadEvent.id).where(LeadEvent.id == event_id)).first()
        return found is not None

    # ----------------------------------------------------------------- claims and states

    def claim(  # noqa: PLR0913  (limit, then keyword-only claim options)
        self,
        limit: int,
        *,
        worker: str,
        expires_in_ms: int,
        accept: Callable[[Candidate], bool] | None = None,
        scan: int | None = None,
        now: int | None = None,
        lead_id: int | None = None,
    ) -> list[OrderRequest]:
        """Move up to ``limit`` pending orders to ``sent`` and return them to be sent.

        Risk-reducing orders come first (``priority``, then age); an order waits while an
        earlier leg of its follower in the same event (a flip's close before its open) is
        pending or in flight. ``accept`` sees each
        candidate in that order and may refuse it (a rate limiter with no budget for its
        account); refused ones stay pending. The claim commits before the caller sends
        anything: a crash after it leaves the orders ``sent`` until their lease expires
        (:meth:`expire_leases`), then they are looked up, never resent blind.

        On PostgreSQL the candidates are locked ``FOR UPDATE SKIP LOCKED``, so concurrent
        claimers take disjoint orders; SQLite runs one write transaction at a time
        (``BEGIN IMMEDIATE``), so a claim reads and updates with no other writer between.

        Parameters
        ----------
        limit
            Most orders to claim.
        worker
            Name of the claiming dispatcher (stored in ``claimed_by``).
        expires_in_ms
            The order's expiry after the claim: the venue must refuse it past that time.
        accept
            Decides on each candidate; None accepts all.
        scan
            How many candidates to read (default ``4 * limit``).
        now
            The claim time, epoch ms (default: the wall clock).
        lead_id
            Claim only orders of this lead's followers (a dispatcher per lead, or per shard
            of followers in its own process); None claims from every lead.
        """
        if limit <= 0:
            return []
        stamp = now_ms() if now is None else now
        # a follower's legs of one event go in order: an open waits for the close before it
        # (else, after a crash that left the close unknown, the open would go first)
        earlier = aliased(Order)
        earlier_open = select(earlier.client_id).where(
            earlier.lead_event_id == Order.lead_event_id,
            earlier.follower_id == Order.follower_id,
            earlier.seq < Order.seq,
            earlier.state.in_(("pending", "sent", "unknown", "acknowledged")),
        )
        with self._begin("claiming orders") as conn:
            query = (
                select(
                    Order.client_id,
                    Order.priority,
                    Order.reduce_only,
                    Follower.address,
                )
                .join(Follower, Follower.id == Order.follower_id)
                .where(Order.state == "pending", ~exists(earlier_open))
                .order_by(Order.priority, Order.created_ms, Order.seq)
                .limit(scan or 4 * limit)
                .with_for_update(skip_locked=True, of=Order)
            )
            if lead_id is not None:
                query = query.where(Follower.lead_id == lead_id)
            chosen: list[str] = []
            for cid, priority, reduce_only, address in conn.execute(query):
                if len(chosen) >= limit:
                    break
                cand = Candidate(str(cid), str(address), int(priority), bool(reduce_only))
                if accept is None or accept(cand):
                    chosen.append(cand.client_id)
            if not chosen:
                return []
            conn.execute(
                update(Order)
                .where(Order.client_id.in_(chosen), Order.state == "pending")
                .values(
                    state="sent",
                    attempts=Order.attempts + 1,
                    claimed_by=worker,
                    sent_ms=stamp,
                    updated_ms=stamp,
                    expires_at_ms=stamp + expires_in_ms,
                )
            )
            requests = self._requests(conn, chosen)
        order = {cid: i for i, cid in enumerate(chosen)}
        return sorted(requests, key=lambda r: order[r.client_id])

    def _requests(self, conn: Connection, client_ids: Sequence[str]) -> list[OrderRequest]:
        rows = conn.execute(
            select(
                Order.client_id,
                Follower.address,
                Follower.credentials_ref,
                Order.symbol,
                Order.side,
                Order.amount,
                Order.price_limit,
                Order.reduce_only,
                Order.time_in_force,
                Order.expires_at_ms,
            )
            .join(Follower, Follower.id == Order.follower_id)
            .where(Order.client_id.in_(client_ids))
        )
        return [
            OrderRequest(
                client_id=r[0],
                venue_client_id=binance_from_cloid(r[0]),
                account=r[1],
                credentials_ref=r[2],
                symbol=r[3],
                side="buy" if r[4] == "buy" else "sell",
                amount=r[5],
                price_limit=r[6],
                reduce_only=bool(r[7]),
                time_in_force=r[8],
                expires_at_ms=int(r[9] or 0),
            )
            for r in rows
        ]

    def _transition(  # noqa: PLR0913, PLR0917  (one transition: its order, target, sources, time, fields)
        self,
        conn: Connection,
        client_id: str,
        to: OrderState,
        sources: frozenset[OrderState],
        stamp: int,
        values: Mapping[str, Any],
    ) -> bool:
        """The one place an order's state changes after it is claimed.

        ``sources`` narrows the states this caller may move from; the move must also be in
        :data:`TRANSITIONS`. Returns False when the order is already in ``to`` (a repeated
        report); raises when the move is not allowed.
        """
        allowed = [s.value for s in sources if to in TRANSITIONS[s]]
        result = conn.execute(
            update(Order)
            .where(Order.client_id == client_id, Order.state.in_(allowed))
            .values(state=to.value, updated_ms=stamp, **values)
        )
        if result.rowcount == 1:
            return True
        current = conn.execute(
            select(Order.state).where(Order.client_id == client_id)
        ).scalar_one_or_none()
        if current is None:
            raise InvalidInput(
                f"no order with client id {client_id!r} in the store",
                field="client_id",
                value=client_id,
            )
        if current == to.value:
            return False
        raise InvalidInput(
            f"order {client_id} is {current}; it cannot become {to.value} here (allowed from: "
            f"{', '.join(sorted(allowed)) or 'nowhere'})",
            field="state",
            value=current,
        )

    def record_ack(self, ack: Ack, *, now: int | None = None) -> bool:
        """Record the exchange's answer to a sent order (resting, filled or rejected)."""
        to = {
            "resting": OrderState.ACKNOWLEDGED,
            "filled": OrderState.FILLED,
            "rejected": OrderState.REJECTED,
        }[ack.status]
        with self._begin("recording an order acknowledgement") as conn:
            return self._transition(
                conn,
                ack.client_id,
                to,
                frozenset({OrderState.SENT}),
                now_ms() if now is None else now,
                {"exchange_id": ack.exchange_id, "reason": ack.reason},
            )

    def mark_unknown(self, client_id: str, reason: str, *, now: int | None = None) -> bool:
        """A sent order's outcome is unknown (timeout, 5xx, lost response): look it up later."""
        with self._begin("marking an order unknown") as conn:
            return self._transition(
                conn,
                client_id,
                OrderState.UNKNOWN,
                frozenset({OrderState.SENT}),
                now_ms() if now is None else now,
                {"reason": reason},
            )

    def record_update(
        self,
        client_id: str,
        status: Literal["filled", "canceled"],
        *,
        now: int | None = None,
    ) -> bool:
        """A resting order filled or was canceled (the venue's order update stream)."""
        to = OrderState.FILLED if status == "filled" else OrderState.CANCELED
        with self._begin("recording an order update") as conn:
            return self._transition(
                conn,
                client_id,
                to,
                frozenset({OrderState.ACKNOWLEDGED}),
                now_ms() if now is None else now,
                {},
            )

    def resolve(self, lookup: Lookup, *, now: int | None = None) -> bool:
        """Resolve an ``unknown`` order from the venue's answer to a lookup by its client id.

        ``not_found`` returns the order to ``pending`` (to be sent again under the same client
        id) only once its expiry has passed, since until then a delayed request could still
        reach the exchange; before that it changes nothing and returns False.
        """
        stamp = now_ms() if now is None else now
        only_unknown = frozenset({OrderState.UNKNOWN})
        with self._begin("resolving an unknown order") as conn:
            if lookup.status == "not_found":
                expires = conn.execute(
                    select(Order.expires_at_ms).where(Order.client_id == lookup.client_id)
                ).scalar_one_or_none()
                if expires is not None and stamp <= expires:
                    return False
                return self._transition(
                    conn,
                    lookup.client_id,
                    OrderState.PENDING,
                    only_unknown,
                    stamp,
                    {"reason": "not found at the venue after expiry", "claimed_by": None},
                )
            to = {
                "resting": OrderState.ACKNOWLEDGED,
                "filled": OrderState.FILLED,
                "canceled": OrderState.CANCELED,
                "rejected": OrderState.REJECTED,
            }[lookup.status]
            return self._transition(
                conn,
                lookup.client_id,
                to,
                only_unknown,
                stamp,
                {"exchange_id": lookup.exchange_id, "reason": lookup.reason},
            )

    def expire_leases(self, lease_ms: int, *, now: int | None = None) -> int:
        """Orders ``sent`` longer than ``lease_ms`` ago become ``unknown`` (their sender died).

        Returns how many. Run it at start and periodically with a lease longer than any send's
        timeout.
        """
        stamp = now_ms() if now is None else now
        with self._begin("expiring send leases") as conn:
            result = conn.execute(
                update(Order)
                .where(Order.state == "sent", Order.sent_ms < stamp - lease_ms)
                .values(state="unknown", reason="send lease expired", updated_ms=stamp)
            )
            return max(int(result.rowcount), 0)

    def unknown_orders(self, limit: int = 100) -> list[OrderRequest]:
        """Orders whose outcome is unknown, oldest first, to look up at the venue."""
        with self._read("reading unknown orders") as conn:
            ids = conn.execute(
                select(Order.client_id)
                .where(Order.state == "unknown")
                .order_by(Order.sent_ms)
                .limit(limit)
            ).scalars()
            return self._requests(conn, list(ids))

    def cancel_pending(
        self, follower_id: str, reason: str, *, reduce_only: bool | None = None
    ) -> int:
        """Withdraw a follower's pending orders before they are sent; returns how many.

        ``reduce_only=False`` withdraws only opens, ``True`` only reductions, None all.
        """
        stamp = now_ms()
        query = update(Order).where(Order.follower_id == follower_id, Order.state == "pending")
        if reduce_only is not None:
            query = query.where(Order.reduce_only == reduce_only)
        with self._begin("canceling pending orders") as conn:
            result = conn.execute(query.values(state="canceled", reason=reason, updated_ms=stamp))
            return max(int(result.rowcount), 0)

    def books(self, lead_id: int) -> list[FollowerBook]:
        """Every follower of ``lead_id``: its stored positions, its symbols with orders in flight.

        In flight: an order ``pending``, ``sent``, ``acknowledged`` (resting) or ``unknown``,
        whose outcome can still move the venue's position (reconciliation leaves those
        symbols alone until it is final). All read in one transaction.
        """
        live = ("pending", "sent", "acknowledged", "unknown")
        with self._read("reading follower books") as conn:
            rows = conn.execute(
                select(Follower.id, Follower.address, Follower.status)
                .where(Follower.lead_id == lead_id)
                .order_by(Follower.id)
            ).all()
            positions: dict[str, dict[str, Decimal]] = {}
            for fid, symbol, text in conn.execute(
                select(Position.follower_id, Position.symbol, Position.position)
                .join(Follower, Follower.id == Position.follower_id)
                .where(Follower.lead_id == lead_id)
            ):
                if Decimal(text) != 0:
                    positions.setdefault(fid, {})[symbol] = Decimal(text)
            flying: dict[str, set[str]] = {}
            for fid, symbol in conn.execute(
                select(Order.follower_id, Order.symbol)
                .join(Follower, Follower.id == Order.follower_id)
                .where(Follower.lead_id == lead_id, Order.state.in_(live))
                .distinct()
            ):
                flying.setdefault(fid, set()).add(symbol)
        return [
            FollowerBook(
                id=fid,
                address=address,
                status=status,
                positions=positions.get(fid, {}),
                in_flight=frozenset(flying.get(fid, ())),
            )
            for fid, address, status in rows
        ]

    def order(self, client_id: str) -> dict[str, Any] | None:
        """One order's row as a dict, or None."""
        with self._read("reading an order") as conn:
            row = (
                conn.execute(select(Order).where(Order.client_id == client_id))
                .mappings()
                .one_or_none()
            )
        return None if row is None else dict(row)

    def backlog(self, *, now: int | None = None, lead_id: int | None = None) -> Backlog:
        """Counts of orders waiting or in flight, and the oldest pending order's age.

        ``lead_id`` counts only that lead's followers' orders.
        """
        stamp = now_ms() if now is None else now
        counting = select(Order.state, Order.reduce_only, func.count()).where(
            Order.state.in_(("pending", "sent", "unknown", "acknowledged"))
        )
        oldest_query = select(func.min(Order.created_ms)).where(Order.state == "pending")
        if lead_id is not None:
            mine = Order.follower_id.in_(select(Follower.id).where(Follower.lead_id == lead_id))
            counting = counting.where(mine)
            oldest_query = oldest_query.where(mine)
        with self._read("reading the backlog") as conn:
            counts: dict[tuple[str, bool], int] = {}
            for state, reducing, n in conn.execute(
                counting.group_by(Order.state, Order.reduce_only)
            ):
                counts[(str(state), bool(reducing))] = int(n)
            oldest = conn.execute(oldest_query).scalar_one_or_none()

        def total(state: str) -> int:
            return counts.get((state, True), 0) + counts.get((state, False), 0)

        return Backlog(
            pending_reducing=counts.get(("pending", True), 0),
            pending_opening=counts.get(("pending", False), 0),
            sent=total("sent"),
            unknown=total("unknown"),
            acknowledged=total("acknowledged"),
            oldest_pending_ms=None if oldest is None else stamp - int(oldest),
        )

    # ----------------------------------------------------------------- fills and state

    def record_fills(self, fills: Sequence[FillRecord]) -> int:
        """Apply follower fills to their positions, each trade id once; returns how many new.

        A fill already stored (same follower and ``tid``) changes nothing. A new fill moves
        the position by its signed amount (exact decimals) and then:

        - an increase (or an open) averages the entry price, weighted by amount, and adds the
          order's posted collateral in proportion to the fill's share of the order;
        - a reduction keeps the entry and releases collateral in proportion;
        - a close clears entry and collateral; a flip opens the rest at the fill price;
        - the follower's equity moves by ``closed_pnl - fee``.

        Reconciliation against the venue's positions corrects any drift of this bookkeeping.
        """
        added = 0
        stamp = now_ms()
        with self._begin("recording fills") as conn:
            for f in fills:
                inserted = conn.execute(
                    self._upsert(Fill.__table__)
                    .values(
                        follower_id=f.follower_id,
                        tid=f.tid,
                        client_id=f.client_id,
                        exchange_id=f.exchange_id,
                        symbol=f.symbol,
                        side=f.side,
                        amount=f.amount,
                        price=f.price,
                        fee=f.fee,
                        closed_pnl=f.closed_pnl,
                        time_ms=f.time_ms,
                    )
                    .on_conflict_do_nothing()
                    .returning(Fill.id)
                ).first()
                if inserted is None:
                    continue
                added += 1
                self._apply_fill(conn, f, stamp)
        return added

    def _apply_fill(self, conn: Connection, f: FillRecord, stamp: int) -> None:
        pos = conn.execute(
            select(Position.position, Position.entry_price, Position.collateral)
            .where(Position.follower_id == f.follower_id, Position.symbol == f.symbol)
            .with_for_update()
        ).one_or_none()
        q0 = Decimal(pos[0]) if pos is not None else Decimal(0)
        entry0: float | None = pos[1] if pos is not None else None
        coll0: float = pos[2] if pos is not None else 0.0
        amount = Decimal(f.amount)
        price = float(f.price)
        q1 = q0 + (amount if f.side == "buy" else -amount)
        share = self._collateral_share(conn, f)
        if q1 == 0:
            entry1, coll1 = None, 0.0
        elif q0 == 0 or (q0 > 0) != (q1 > 0):  # open or flip: the rest opens at the fill price
            opened = abs(q1)
            entry1, coll1 = price, share * float(opened / amount)
        elif abs(q1) > abs(q0):  # increase
            a0, a1 = float(abs(q0)), float(abs(q1))
            base = entry0 if entry0 is not None else price
            entry1 = (a0 * base + float(amount) * price) / a1
            coll1 = coll0 + share
        else:  # reduction
            entry1, coll1 = entry0, coll0 * float(abs(q1) / abs(q0))
        text = format(q1.normalize(), "f") if q1 != 0 else "0"
        if pos is None:
            conn.execute(
                insert(Position).values(
                    follower_id=f.follower_id,
                    symbol=f.symbol,
                    position=text,
                    entry_price=entry1,
                    collateral=coll1,
                    residual=0.0,
                    updated_ms=stamp,
                )
            )
        else:
            conn.execute(
                update(Position)
                .where(Position.follower_id == f.follower_id, Position.symbol == f.symbol)
                .values(position=text, entry_price=entry1, collateral=coll1, updated_ms=stamp)
            )
        if f.closed_pnl or f.fee:
            conn.execute(
                update(Follower)
                .where(Follower.id == f.follower_id)
                .values(equity=Follower.equity + (f.closed_pnl - f.fee), updated_ms=stamp)
            )

    @staticmethod
    def _collateral_share(conn: Connection, f: FillRecord) -> float:
        """The part of the order's posted collateral this fill carries (0 without an order)."""
        if f.client_id is None:
            return 0.0
        row = conn.execute(
            select(Order.collateral, Order.amount).where(Order.client_id == f.client_id)
        ).one_or_none()
        if row is None or row[0] is None:
            return 0.0
        total = Decimal(row[1])
        return float(row[0]) * float(Decimal(f.amount) / total) if total > 0 else 0.0

    def cohort_table(
        self, lead_id: int, symbol: str, statuses: Sequence[str] = ("active",)
    ) -> dict[str, NDArray[Any]]:
        """The followers of ``lead_id`` in ``symbol`` whose status is in ``statuses``.

        Columns: ``id``, ``equity``, the stored state in ``symbol`` (``position``,
        ``entry_price``, ``collateral``, ``residual``; zero or absent with no position) and
        every profile field any follower set (None where a follower left it at its default).
        Pass it to :func:`levalign.normalize` or :meth:`levalign.normalize.Cohort.from_table`,
        so that the next event is sized on the store's state.
        """
        where = (Follower.lead_id == lead_id) & Follower.status.in_(tuple(statuses))
        rows = self._state_rows("reading the cohort", symbol, where, with_profile=True)
        cols = _state_columns(rows)
        names = sorted({k for r in rows for k in r[6]} - set(cols))
        for name in names:
            column = np.empty(len(rows), dtype=object)
            column[:] = [r[6].get(name) for r in rows]
            cols[name] = column
        return cols

    def follower_states(self, follower_ids: Sequence[str], symbol: str) -> dict[str, NDArray[Any]]:
        """The stored state of these followers in ``symbol``, after fills.

        Columns ``id``, ``equity``, ``position``, ``entry_price``, ``collateral``,
        ``residual`` (as in :meth:`cohort_table`), in ``follower_ids`` order for those
        stored: hand them to :meth:`levalign.normalize.Cohort.update` to refresh a cohort
        kept in memory instead of rebuilding it.
        """
        ids = list(dict.fromkeys(follower_ids))
        rows = self._state_rows("reading follower state", symbol, Follower.id.in_(ids))
        order = {fid: i for i, fid in enumerate(ids)}
        return _state_columns(sorted(rows, key=lambda r: order[r[0]]))

    def _state_rows(
        self, what: str, symbol: str, where: Any, *, with_profile: bool = False
    ) -> list[Any]:
        columns: list[Any] = [
            Follower.id,
            Follower.equity,
            Position.position,
            Position.entry_price,
            Position.collateral,
            Position.residual,
        ]
        if with_profile:
            columns.append(Follower.profile)
        with self._read(what) as conn:
            return list(
                conn.execute(
                    select(*columns)
                    .outerjoin(
                        Position,
                        (Position.follower_id == Follower.id) & (Position.symbol == symbol),
                    )
                    .where(where)
                    .order_by(Follower.id)
                ).all()
            )


def _state_columns(rows: Sequence[Any]) -> dict[str, NDArray[Any]]:
    """State columns of rows (id, equity, position, entry, collateral, residual, ...)."""
    return {
        "id": np.array([r[0] for r in rows], dtype=object),
        "equity": np.array([r[1] for r in rows], dtype=np.float64),
        "position": np.array(
            [float(r[2]) if r[2] is not None else 0.0 for r in rows], dtype=np.float64
        ),
        "entry_price": np.array(
            [r[3] if r[3] is not None else math.nan for r in rows], dtype=np.float64
        ),
        "collateral": np.array([r[4] or 0.0 for r in rows], dtype=np.float64),
        "residual": np.array([r[5] or 0.0 for r in rows], dtype=np.float64),
    }


_STATE_FIELDS = ("position", "entry_price", "collateral", "residual")
_PROFILE_FIELDS = tuple(
    name
    for name in FollowerProfile.model_fields
    if name not in ("id", "equity", "available_balance", *_STATE_FIELDS)
)
_CREDENTIAL_PREFIXES = ("env:", "file:", "vault:", "keyring:")


def _follower_row(
    lead_id: int, venue: str, row: Mapping[str, Any], where: str, stamp: int
) -> dict[str, Any]:
    for required in ("id", "address", "credentials_ref", "equity"):
        if row.get(required) is None:
            raise InvalidInput(
                f"{where} has no {required!r}; every follower needs id, address, "
                "credentials_ref and equity",
                field=f"{where}.{required}",
            )
    ref = str(row["credentials_ref"])
    if not ref.startswith(_CREDENTIAL_PREFIXES):
        # the value is not echoed: it may be a key pasted by mistake
        raise InvalidInput(
            f"{where}.credentials_ref must say where the key is ({', '.join(_CREDENTIAL_PREFIXES)}"
            "...), never the key itself",
            field=f"{where}.credentials_ref",
        )
    profile = {k: v for k, v in row.items() if k not in ("id", "address", "credentials_ref")}
    unknown = sorted(set(profile) - {"equity", *_PROFILE_FIELDS})
    if unknown:
        raise InvalidInput(
            f"{where} has unknown field(s) {', '.join(unknown)}; profile fields are "
            f"{', '.join(_PROFILE_FIELDS)}",
            field=f"{where}.{unknown[0]}",
        )
    from levalign.schemas import parse

    parse(FollowerProfile, {"id": str(row["id"]), **profile}, root=where)
    equity = float(row["equity"])
    return {
        "id": str(row["id"]),
        "lead_id": lead_id,
        "venue": venue,
        "address": str(row["address"]),
        "credentials_ref": ref,
        "profile": {k: v for k, v in profile.items() if k != "equity"},
        "equity": equity,
        "status": "active",
        "status_reason": None,
        "created_ms": stamp,
        "updated_ms": stamp,
    }


def _json(payload: Mapping[str, Any]) -> str:
    import json

    return json.dumps(dict(payload), separators=(",", ":"), sort_keys=True)


def _configure_sqlite(engine: Engine) -> None:
    """Set WAL, ``synchronous=FULL``, busy timeout, foreign keys, 32 MiB page cache.

    Every transaction begins ``BEGIN IMMEDIATE``: it takes the write lock at once, so one
    writer at a time runs and a claim's read and update see no other writer between them.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        dbapi_connection.isolation_level = None  # transactions are begun below, not by pysqlite
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={_SQLITE_BUSY_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute(f"PRAGMA cache_size=-{_SQLITE_CACHE_KIB}")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        read_only = conn.get_execution_options().get(_READ_ONLY, False)
        conn.exec_driver_sql("BEGIN" if read_only else "BEGIN IMMEDIATE")


def migrations_dir() -> Path:
    """The shipped Alembic migrations (``levalign/engine/migrations``)."""
    return Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Any:
    """An Alembic ``Config`` for ``url`` and the shipped migrations, with no ``alembic.ini``."""
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    cfg.set_main_option("sqlalchemy.url", _postgres_url(url).replace("%", "%%"))
    return cfg
