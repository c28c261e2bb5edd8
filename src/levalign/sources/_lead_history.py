"""Lead-history files: parsing, validation, conversion to LeadEvents (see :mod:`.replay`).

The implementation behind :mod:`levalign.sources.replay`; :class:`Columns`, :func:`build` and
:func:`open_text` are also used by the strategies that generate lead histories.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import math
import re
import warnings
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from levalign._files import read_text
from levalign.errors import InvalidInput
from levalign.markets import Markets
from levalign.schemas import LeadEvent, parse

__all__ = [
    "COLUMNS",
    "FILL_COLUMNS",
    "LeadHistory",
    "LotCheck",
    "LotSizeWarning",
    "format_timestamp",
    "history_text",
    "load_lead_history",
    "parse_timestamp",
    "write_lead_history",
]

FloatArray = NDArray[np.float64]
LotCheck = Literal["error", "warn", "off"]

#: columns of the positions form, in the order they are written
COLUMNS = (
    "timestamp",
    "symbol",
    "price",
    "position_after",
    "equity",
    "collateral_after",
    "stop_price",
    "leverage_setting",
    "fee",
)
#: columns of the fills form that replace ``position_after``
FILL_COLUMNS = ("side", "amount")
_OPTIONAL = ("collateral_after", "stop_price", "leverage_setting", "fee")
_ALIASES = {
    "positionAfter": "position_after",
    "collateralAfter": "collateral_after",
    "stopPrice": "stop_price",
    "leverageSetting": "leverage_setting",
}
_KNOWN = frozenset((*COLUMNS, *FILL_COLUMNS))
_NUMERIC = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MS_LOW, _MS_HIGH = 1e11, 1e14  # epoch milliseconds from 1973 to the year 5138
_LOT_TOL = 1e-6  # in lots
_SUFFIXES = (".csv", ".csv.gz", ".jsonl", ".jsonl.gz", ".ndjson", ".ndjson.gz")


class LotSizeWarning(UserWarning):
    """A lead position is not a whole number of the market's amount steps (``lot_check="warn"``)."""


@dataclass(frozen=True, eq=False)
class LeadHistory:
    """A lead's position changes as numpy columns, ordered by time.

    Build one with :func:`load_lead_history` (or :func:`levalign.backtest.generate_lead`),
    which validate every rule in the module docstring; the constructor only checks that the
    columns have one length.

    Attributes
    ----------
    timestamp
        Fill times, nanoseconds since the Unix epoch (UTC); non-decreasing.
    symbol
        ccxt symbol of each row.
    price, position_after, equity
        Fill price, signed contracts after the fill, lead equity after the fill.
    collateral_after, stop_price, leverage_setting, fee
        Optional columns; NaN where a row does not state them.
    row
        The input row (0-based, data rows only) each row came from, for messages.
    name
        A short name for the lead (file stem by default); prefixes the event ids.
    """

    timestamp: NDArray[np.int64]
    symbol: NDArray[np.str_]
    price: FloatArray
    position_after: FloatArray
    equity: FloatArray
    collateral_after: FloatArray
    stop_price: FloatArray
    leverage_setting: FloatArray
    fee: FloatArray
    row: NDArray[np.int64]
    name: str = "lead"
    _where: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        n = len(self.timestamp)
        for name in ("timestamp", "symbol", "row", *_FLOAT_FIELDS):
            arr = np.ascontiguousarray(getattr(self, name))
            if arr.shape != (n,):
                raise InvalidInput(
                    f"column {name} has {arr.size} values but timestamp has {n}: every row "
                    "needs one value per column",
                    field=name,
                )
            arr.setflags(write=False)
            object.__setattr__(self, name, arr)

    def __len__(self) -> int:
        return int(self.timestamp.size)

    def __repr__(self) -> str:
        span = (
            f", {format_timestamp(int(self.timestamp[0]))} to "
            f"{format_timestamp(int(self.timestamp[-1]))}"
            if len(self)
            else ""
        )
        return f"LeadHistory({self.name!r}, {len(self)} rows, symbols={self.symbols}{span})"

    def __eq__(self, other: object) -> bool:
        """Same rows with the same values (``name`` and ``row`` are labels, not data)."""
        if not isinstance(other, LeadHistory):
            return NotImplemented
        return (
            np.array_equal(self.timestamp, other.timestamp)
            and np.array_equal(self.symbol, other.symbol)
            and all(
                np.array_equal(getattr(self, k), getattr(other, k), equal_nan=True)
                for k in _FLOAT_FIELDS
            )
        )

    __hash__ = None  # type: ignore[assignment]

    @property
    def symbols(self) -> tuple[str, ...]:
        """The symbols the lead trades, in order of first appearance."""
        return tuple(dict.fromkeys(str(s) for s in self.symbol))

    @property
    def position_before(self) -> FloatArray:
        """Each row's position before the fill: the symbol's previous ``position_after``."""
        out = np.zeros(len(self))
        last: dict[str, float] = {}
        for j, s in enumerate(self.symbol):
            out[j] = last.get(str(s), 0.0)
            last[str(s)] = float(self.position_after[j])
        return out

    def where(self, j: int) -> str:
        """Human location of row ``j`` of this history in its input ("row 3 (line 5)")."""
        return self._where[j] if self._where else f"row {int(self.row[j])}"

    def validate(self, markets: Markets, *, lot_check: LotCheck = "error") -> None:
        """Check the history against the lead's markets.

        Parameters
        ----------
        markets
            The markets of the lead's venue.
        lot_check
            What to do with a position that is not a whole number of amount steps: raise
            (``"error"``), warn with :class:`LotSizeWarning` (``"warn"``) or nothing
            (``"off"``).

        Raises
        ------
        InvalidInput
            A symbol the markets do not know, or (``lot_check="error"``) a position off the
            market's lot grid; the message names the row.
        """
        if lot_check not in ("error", "warn", "off"):
            raise InvalidInput(
                f"lot_check must be 'error', 'warn' or 'off', got {lot_check!r}",
                field="lot_check",
                value=str(lot_check),
            )
        for s in self.symbols:
            j = int(np.argmax(self.symbol == s))
            markets.resolve(s, field=f"rows[{int(self.row[j])}].symbol")
        if lot_check == "off":
            return
        for s in self.symbols:
            step = markets[s].amount_step
            if not step:
                continue
            rows = np.flatnonzero(self.symbol == s)
            lots = self.position_after[rows] / step
            off = np.abs(lots - np.round(lots)) > _LOT_TOL * np.maximum(1.0, np.abs(lots))
            if not off.any():
                continue
            j = int(rows[int(np.argmax(off))])
            value = float(self.position_after[j])
            message = (
                f"{self.where(j)}: position_after {value!r} is not a whole number of "
                f"{s}'s amount step {step:g} ({value / step:.6g} steps): give positions in "
                "contracts on the lot grid of the lead's venue, or load with "
                "lot_check='warn'"
            )
            if lot_check == "error":
                raise InvalidInput(
                    message, field=f"rows[{int(self.row[j])}].position_after", value=value
                )
            warnings.warn(message, LotSizeWarning, stacklevel=2)

    def events(
        self,
        markets: Markets,
        *,
        lot_check: LotCheck = "error",
        id_prefix: str | None = None,
    ) -> Iterator[LeadEvent]:
        """The history as :class:`~levalign.schemas.LeadEvent` objects, oldest first.

        Parameters
        ----------
        markets
            The markets of the lead's venue: symbols must resolve there; contract sizes value
            ``lead_total_notional``.
        lot_check
            See :meth:`validate`.
        id_prefix
            Event ids are ``f"{id_prefix}-{j}"`` with ``j`` the row of this history;
            default the history's ``name``.

        Yields
        ------
        LeadEvent
            One per row, with the fields described in the module docstring.

        Raises
        ------
        InvalidInput
            Everything :meth:`validate` raises.
        """
        self.validate(markets, lot_check=lot_check)
        prefix = self.name if id_prefix is None else id_prefix
        specs = {s: markets[s] for s in self.symbols}
        position: dict[str, float] = dict.fromkeys(specs, 0.0)
        last_price: dict[str, float] = dict.fromkeys(specs, math.nan)
        collateral: dict[str, float | None] = dict.fromkeys(specs)
        for j in range(len(self)):
            s = str(self.symbol[j])
            before, after = position[s], float(self.position_after[j])
            p = float(self.price[j])
            position[s], last_price[s] = after, p
            total = sum(
                specs[t].notional(abs(q), last_price[t]) for t, q in position.items() if q != 0
            )
            c_after = _opt(self.collateral_after[j])
            c_before = collateral[s] if before != 0 else (0.0 if c_after is not None else None)
            collateral[s] = c_after
            data: dict[str, Any] = {
                "event_id": f"{prefix}-{j}",
                "timestamp": int(self.timestamp[j]) / 1e6,
                "symbol": s,
                "price": p,
                "lead_equity": float(self.equity[j]),
                "lead_position_before": before,
                "lead_position_after": after,
                "lead_stop_price": _opt(self.stop_price[j]),
                "lead_collateral_before": c_before,
                "lead_collateral_after": c_after,
                "lead_leverage_setting": _opt(self.leverage_setting[j]),
                "lead_total_notional": total,
            }
            yield parse(LeadEvent, data, root=f"rows[{int(self.row[j])}]")

    def to_rows(self) -> list[dict[str, Any]]:
        """The history as JSON-ready rows of the positions form (optional NaNs left out)."""
        out: list[dict[str, Any]] = []
        for j in range(len(self)):
            row: dict[str, Any] = {
                "timestamp": format_timestamp(int(self.timestamp[j])),
                "symbol": str(self.symbol[j]),
                "price": float(self.price[j]),
                "position_after": float(self.position_after[j]),
                "equity": float(self.equity[j]),
            }
            for name in _OPTIONAL:
                value = float(getattr(self, name)[j])
                if not math.isnan(value):
                    row[name] = value
            out.append(row)
        return out


_FLOAT_FIELDS = (
    "price",
    "position_after",
    "equity",
    "collateral_after",
    "stop_price",
    "leverage_setting",
    "fee",
)


def _opt(value: float) -> float | None:
    v = float(value)
    return None if math.isnan(v) else v


# --------------------------------------------------------------------------- time


def parse_timestamp(value: Any, *, field: str = "timestamp", where: str = "") -> int:
    """Parse an ISO 8601 text or epoch milliseconds into nanoseconds since the epoch (UTC).

    Parameters
    ----------
    value
        ``"2023-03-08T00:00:59.999Z"``, ``"2023-03-08 00:00:59+00:00"`` (UTC when no offset
        is given), or epoch milliseconds as a number or numeric text (``1678233659999``).
    field
        Field name for the error.
    where
        Location prefix for the error message ("row 3 (line 5)").

    Returns
    -------
    int
        Nanoseconds since 1970-01-01 UTC (ISO text keeps at most microseconds).

    Raises
    ------
    InvalidInput
        Text that is not ISO 8601, a boolean, a non-finite number, or a number outside epoch
        milliseconds from 1973 to 5138 (epoch seconds, for example).
    """
    prefix = f"{where}: " if where else ""
    label = field.rsplit(".", 1)[-1]
    if isinstance(value, str) and _NUMERIC.match(value.strip()):
        value = float(value) if any(c in value for c in ".eE") else int(value)
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(
            f"{prefix}{label} must be ISO 8601 text or epoch milliseconds, got {value!r}",
            field=field,
        )
    if isinstance(value, int | float):
        if not (math.isfinite(value) and _MS_LOW <= abs(value) < _MS_HIGH):
            hint = " (epoch seconds? multiply by 1,000)" if abs(value) < _MS_LOW else ""
            raise InvalidInput(
                f"{prefix}{label} {value!r} is not epoch milliseconds{hint}: give epoch "
                "milliseconds or ISO 8601 text such as 2023-03-08T00:00:00Z",
                field=field,
                value=value,
            )
        if isinstance(value, int):
            return value * 1_000_000
        whole = math.floor(value)
        return whole * 1_000_000 + round((value - whole) * 1e6)
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InvalidInput(
            f"{prefix}{label} {value!r} is not ISO 8601: use 2023-03-08T00:00:00Z or epoch "
            "milliseconds",
            field=field,
            value=value,
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1_000_000_000 + delta.microseconds * 1_000


def format_timestamp(ns: int) -> str:
    """ISO 8601 UTC text of nanoseconds since the epoch, to the millisecond when exact."""
    unit: Literal["ms", "us", "ns"] = (
        "ms" if ns % 1_000_000 == 0 else ("us" if ns % 1_000 == 0 else "ns")
    )
    return str(np.datetime_as_string(np.datetime64(ns, "ns"), unit=unit)) + "Z"


# --------------------------------------------------------------------------- loading


@dataclass
class Columns:
    """Parsed rows before validation (one list per column)."""

    where: list[str] = field(default_factory=list)
    timestamp: list[int] = field(default_factory=list)
    symbol: list[str] = field(default_factory=list)
    price: list[float] = field(default_factory=list)
    position_after: list[float] = field(default_factory=list)
    equity: list[float] = field(default_factory=list)
    collateral_after: list[float] = field(default_factory=list)
    stop_price: list[float] = field(default_factory=list)
    leverage_setting: list[float] = field(default_factory=list)
    fee: list[float] = field(default_factory=list)
    side: list[float] = field(default_factory=list)
    amount: list[float] = field(default_factory=list)
    form: str | None = None


def load_lead_history(
    source: str | Path | Iterable[Mapping[str, Any]],
    *,
    markets: Markets | None = None,
    lot_check: LotCheck = "error",
    name: str | None = None,
) -> LeadHistory:
    """Read and validate a lead's history.

    Parameters
    ----------
    source
        A path to ``.csv``, ``.jsonl`` or ``.ndjson`` (each optionally ``.gz``), or the rows
        themselves as mappings (a JSONL line each).
    markets
        The lead venue's markets; when given, :meth:`LeadHistory.validate` runs too.
    lot_check
        See :meth:`LeadHistory.validate`.
    name
        The lead's name (default: the file name without its suffixes, or ``"lead"``).

    Returns
    -------
    LeadHistory
        Rows ordered by time (file order breaks ties between symbols).

    Raises
    ------
    InvalidInput
        An unreadable file or unknown suffix, malformed JSON lines, unknown or missing
        columns, both forms in one file, a value that is not a number or is out of range
        (price, equity, amount and stop must be positive, collateral non-negative), a stop on
        the wrong side of the price, timestamps of one symbol not strictly increasing, and
        what :meth:`LeadHistory.validate` rejects. The message names the row (0-based data
        row, with the file line) and the field.
    """
    if isinstance(source, str | Path):
        path = Path(source)
        cols = _read_file(path)
        default_name = _stem(path)
    else:
        cols = Columns()
        for i, raw in enumerate(source):
            _add_row(cols, i, raw, f"row {i}")
        default_name = "lead"
    history = build(cols, name or default_name)
    if markets is not None:
        history.validate(markets, lot_check=lot_check)
    return history


def _stem(path: Path) -> str:
    name = path.name
    for suffix in sorted(_SUFFIXES, key=len, reverse=True):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def open_text(path: Path, what: str = "lead history", field: str = "path") -> str:
    """The text of a UTF-8 file, gzip-compressed when its name ends in ``.gz``."""
    return read_text(path, what, field)


def _read_file(path: Path) -> Columns:
    lower = path.name.lower()
    if not lower.endswith(_SUFFIXES):
        raise InvalidInput(
            f"lead history files must end in {', '.join(_SUFFIXES)}; got {path.name!r}",
            field="path",
            value=str(path),
        )
    text = open_text(path)
    cols = Columns()
    if ".csv" in lower:
        reader = csv.DictReader(io.StringIO(text, newline=""))
        header = list(reader.fieldnames or [])
        if not header:
            raise InvalidInput(f"{path.name} is empty: it needs a header row", field="path")
        _check_header(header)
        for i, raw in enumerate(reader):
            where = f"row {i} (line {reader.line_num})"
            if None in raw:
                raise InvalidInput(
                    f"{where}: more values than the header has columns; quote values that "
                    "contain commas",
                    field=f"rows[{i}]",
                )
            _add_row(cols, i, {k: v for k, v in raw.items() if v not in (None, "")}, where)
        return cols
    i = 0
    for line_no, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        where = f"row {i} (line {line_no})"
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InvalidInput(
                f"{where}: not valid JSON ({exc.msg} at column {exc.colno}): each line must "
                "be one JSON object",
                field=f"rows[{i}]",
            ) from None
        if not isinstance(raw, dict):
            raise InvalidInput(
                f"{where}: each line must be a JSON object, got {type(raw).__name__}",
                field=f"rows[{i}]",
            )
        _add_row(cols, i, raw, where)
        i += 1
    return cols


def _canonical(key: str) -> str:
    return _ALIASES.get(key, key)


def _check_header(header: Sequence[str]) -> None:
    seen: dict[str, str] = {}
    for key in header:
        name = _canonical(key.strip())
        if name not in _KNOWN:
            raise InvalidInput(_unknown(key), field=key, value=key)
        if name in seen:
            raise InvalidInput(
                f"columns {seen[name]!r} and {key!r} are the same field; keep one",
                field=name,
            )
        seen[name] = key


def _unknown(key: str) -> str:
    return (
        f"unknown column {key!r}: a lead history has {', '.join(COLUMNS)} (or side and amount "
        "instead of position_after); remove or rename it"
    )


def _add_row(cols: Columns, i: int, raw: Mapping[str, Any], where: str) -> None:  # noqa: PLR0912 - one check per column of the lead-history format, in its order
    if not isinstance(raw, Mapping):
        raise InvalidInput(
            f"{where}: a row must be a mapping of column to value, got {type(raw).__name__}",
            field=f"rows[{i}]",
        )
    row: dict[str, Any] = {}
    for key, value in raw.items():
        name = _canonical(str(key).strip())
        if name not in _KNOWN:
            raise InvalidInput(f"{where}: {_unknown(str(key))}", field=f"rows[{i}].{key}")
        if name in row:
            raise InvalidInput(
                f"{where}: {name} is given twice (snake_case and camelCase); keep one",
                field=f"rows[{i}].{name}",
            )
        if value is not None and value != "":
            row[name] = value
    fills = "side" in row or "amount" in row
    form = "fills" if fills else "positions"
    if cols.form is None:
        cols.form = form
    elif cols.form != form:
        raise InvalidInput(
            f"{where}: this row is in the {form} form but earlier rows are in the {cols.form} "
            "form; use position_after on every row, or side and amount on every row",
            field=f"rows[{i}]",
        )
    if fills and "position_after" in row:
        raise InvalidInput(
            f"{where}: give either position_after or side and amount, not both",
            field=f"rows[{i}].position_after",
        )
    required = ("timestamp", "symbol", "price", "equity") + (
        FILL_COLUMNS if fills else ("position_after",)
    )
    for name in required:
        if name not in row:
            raise InvalidInput(
                f"{where}: {name} is missing; every row needs {', '.join(required)}",
                field=f"rows[{i}].{name}",
            )

    def num(name: str) -> float:
        return _number(row.get(name), name, i, where)

    symbol = row["symbol"]
    if not isinstance(symbol, str) or not symbol.strip():
        raise InvalidInput(
            f"{where}: symbol must be a ccxt symbol such as BTC/USDT:USDT, got {symbol!r}",
            field=f"rows[{i}].symbol",
        )
    fee = row.get("fee")
    if isinstance(fee, Mapping):  # ccxt: {"cost": 0.1, "currency": "USDT"}
        fee = fee.get("cost")
    cols.where.append(where)
    cols.timestamp.append(
        parse_timestamp(row["timestamp"], field=f"rows[{i}].timestamp", where=where)
    )
    cols.symbol.append(symbol.strip())
    cols.price.append(num("price"))
    cols.equity.append(num("equity"))
    cols.collateral_after.append(num("collateral_after"))
    cols.stop_price.append(num("stop_price"))
    cols.leverage_setting.append(num("leverage_setting"))
    cols.fee.append(_number(fee, "fee", i, where))
    if fills:
        side = str(row["side"]).strip().lower()
        if side not in ("buy", "sell"):
            raise InvalidInput(
                f"{where}: side must be 'buy' or 'sell', got {row['side']!r}",
                field=f"rows[{i}].side",
                value=str(row["side"]),
            )
        cols.side.append(1.0 if side == "buy" else -1.0)
        cols.amount.append(num("amount"))
    else:
        cols.position_after.append(num("position_after"))


def _number(value: Any, name: str, i: int, where: str) -> float:
    """A number from JSON or CSV text; absent is NaN."""
    if value is None:
        return math.nan
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise InvalidInput(
            f"{where}: {name} must be a number, got {value!r}", field=f"rows[{i}].{name}"
        )
    try:
        return float(value)
    except ValueError:
        raise InvalidInput(
            f"{where}: {name} must be a number, got {value!r}",
            field=f"rows[{i}].{name}",
            value=value,
        ) from None


#: column -> (allowed range, whether it may be absent)
_RANGES: dict[str, tuple[str, bool]] = {
    "price": ("positive", False),
    "equity": ("positive", False),
    "amount": ("positive", False),
    "position_after": ("finite", False),
    "collateral_after": ("non-negative", True),
    "stop_price": ("positive", True),
    "leverage_setting": ("positive", True),
    "fee": ("finite", True),
}


_WHAT = {
    "positive": "a positive finite number",
    "non-negative": "a non-negative finite number",
    "finite": "a finite number",
}


def _check_range(column: str, values: FloatArray, where: Sequence[str]) -> None:
    """Raise for the first value of ``column`` outside its range (NaN: absent or invalid)."""
    kind, optional = _RANGES[column]
    ok = np.isfinite(values)
    if kind == "positive":
        ok &= values > 0
    elif kind == "non-negative":
        ok &= values >= 0
    if optional:
        ok |= np.isnan(values)
    if ok.all():
        return
    i = int(np.argmin(ok))
    shown = "missing (NaN)" if np.isnan(values[i]) else repr(float(values[i]))
    raise InvalidInput(
        f"{where[i]}: {column} is {shown}; it must be {_WHAT[kind]}: fix or remove the row",
        field=f"rows[{i}].{column}",
        value=None if np.isnan(values[i]) else float(values[i]),
    )


def build(cols: Columns, name: str) -> LeadHistory:
    """Validate parsed columns, turn fills into positions, order by time."""
    where = cols.where
    n = len(where)
    if n == 0:
        raise InvalidInput("the lead history has no rows: it needs at least one fill", field="rows")
    price = np.asarray(cols.price, dtype=np.float64)
    equity = np.asarray(cols.equity, dtype=np.float64)
    optional = {k: np.asarray(getattr(cols, k), dtype=np.float64) for k in _OPTIONAL}
    _check_range("price", price, where)
    _check_range("equity", equity, where)
    if cols.form == "fills":
        _check_range("amount", np.asarray(cols.amount, dtype=np.float64), where)
    else:
        _check_range("position_after", np.asarray(cols.position_after, dtype=np.float64), where)
    for column, values in optional.items():
        _check_range(column, values, where)
    c, s, lev, fee = (optional[k] for k in _OPTIONAL)

    ts = np.asarray(cols.timestamp, dtype=np.int64)
    symbol = np.asarray(cols.symbol, dtype=np.str_)
    last: dict[str, int] = {}
    for i in range(n):
        sym = str(symbol[i])
        j = last.get(sym)
        if j is not None and ts[i] <= ts[j]:
            what = "duplicates" if ts[i] == ts[j] else "is earlier than"
            raise InvalidInput(
                f"{where[i]}: timestamp {format_timestamp(int(ts[i]))} {what} "
                f"{where[j]} ({format_timestamp(int(ts[j]))}) for {sym}: sort the history by "
                "time and merge fills of one symbol at one instant into one row",
                field=f"rows[{i}].timestamp",
                value=format_timestamp(int(ts[i])),
            )
        last[sym] = i

    if cols.form == "fills":
        held: dict[str, float] = {}
        position = np.empty(n)
        for i in range(n):
            sym = str(symbol[i])
            # round away binary noise of decimal lot sizes (0.1 + 0.2); lots are >= 1e-12
            held[sym] = round(held.get(sym, 0.0) + cols.side[i] * cols.amount[i], 12)
            position[i] = held[sym]
    else:
        position = np.asarray(cols.position_after, dtype=np.float64)

    wrong_side = ~np.isnan(s) & (((position > 0) & (s >= price)) | ((position < 0) & (s <= price)))
    if wrong_side.any():
        i = int(np.argmax(wrong_side))
        long = position[i] > 0
        raise InvalidInput(
            f"{where[i]}: stop_price {float(s[i])!r} must be {'below' if long else 'above'} "
            f"the price {float(price[i])!r} for a {'long' if long else 'short'} position",
            field=f"rows[{i}].stop_price",
            value=float(s[i]),
        )

    order = np.argsort(ts, kind="stable")
    return LeadHistory(
        timestamp=ts[order],
        symbol=symbol[order],
        price=price[order],
        position_after=position[order],
        equity=equity[order],
        collateral_after=c[order],
        stop_price=s[order],
        leverage_setting=lev[order],
        fee=fee[order],
        row=np.arange(n, dtype=np.int64)[order],
        name=name,
        _where=tuple(where[int(k)] for k in order),
    )


# --------------------------------------------------------------------------- writing


def write_lead_history(history: LeadHistory, path: str | Path) -> Path:
    """Write a history in the positions form; the suffix picks CSV or JSONL (``.gz`` too).

    Floats are written in their shortest exact form, so that reading the file back gives an
    equal :class:`LeadHistory`. Optional columns that no row states are left out. Gzip files
    carry no time stamp, so that one history always gives the same bytes.

    Parameters
    ----------
    history
        The history to write.
    path
        ``*.csv``, ``*.jsonl``, ``*.ndjson``, optionally with ``.gz``.

    Returns
    -------
    Path
        The path written.

    Raises
    ------
    InvalidInput
        An unknown suffix.
    """
    out = Path(path)
    lower = out.name.lower()
    if not lower.endswith(_SUFFIXES):
        raise InvalidInput(
            f"lead history files must end in {', '.join(_SUFFIXES)}; got {out.name!r}",
            field="path",
            value=str(out),
        )
    text = history_text(history, "csv" if ".csv" in lower else "jsonl")
    data = text.encode("utf-8")
    if lower.endswith(".gz"):
        data = gzip.compress(data, compresslevel=9, mtime=0)
    out.write_bytes(data)
    return out


def history_text(history: LeadHistory, fmt: Literal["csv", "jsonl"]) -> str:
    """The text :func:`write_lead_history` writes, before any compression."""
    rows = history.to_rows()
    if fmt == "jsonl":
        return "".join(json.dumps(r, separators=(",", ":")) + "\n" for r in rows)
    present = [c for c in COLUMNS if any(c in r for r in rows)]
    buffer = io.StringIO(newline="")
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(present)
    for r in rows:
        writer.writerow([_cell(r.get(c)) for c in present])
    return buffer.getvalue()


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return repr(value)
    return str(value)
