"""OHLC bars: loading from CSV or Parquet, validation, resampling to a coarser bar.

A bar file has a timestamp column (the first of ``timestamp``, ``open_time``, ``time``,
``date``, ``datetime`` present) and ``open``, ``high``, ``low``, ``close``; names are matched
case-insensitively and other columns are ignored. Timestamps may be ISO 8601 strings (UTC
when they carry no offset), Arrow timestamps or dates, or integer epoch times (seconds,
milliseconds, microseconds or nanoseconds, told apart by magnitude). Each timestamp is the
bar's open time; the bar length is the median spacing of the timestamps, so that a few gaps
do not change it. Crypto trades 24/7: no calendar is applied.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import ArrayLike, NDArray

from levalign._files import read_table
from levalign.errors import InvalidInput

__all__ = ["OHLC", "load_ohlc", "ohlc_from_arrays"]

TIMESTAMP_COLUMNS = ("timestamp", "open_time", "time", "date", "datetime")
PRICE_COLUMNS = ("open", "high", "low", "close")
_NS_PER_MINUTE = 60_000_000_000
_NS_PER_HOUR = 60 * _NS_PER_MINUTE


@dataclass(frozen=True)
class OHLC:
    """Validated OHLC bars as arrays, oldest first.

    Build one with :func:`load_ohlc` or :func:`ohlc_from_arrays`, which check every invariant
    listed there; the constructor itself does not.

    Attributes
    ----------
    timestamp
        Bar open times, nanoseconds since the Unix epoch (UTC), strictly increasing.
    open, high, low, close
        Prices, positive and finite, ``high >= low``.
    bar_hours
        Bar length in hours: the median timestamp spacing.
    """

    timestamp: NDArray[np.int64]
    open: NDArray[np.float64]
    high: NDArray[np.float64]
    low: NDArray[np.float64]
    close: NDArray[np.float64]
    bar_hours: float

    @property
    def bars(self) -> int:
        """Number of bars."""
        return int(self.close.size)

    @property
    def start(self) -> str:
        """Open time of the first bar, ISO 8601 UTC."""
        return _iso(int(self.timestamp[0]))

    @property
    def end(self) -> str:
        """Open time of the last bar, ISO 8601 UTC."""
        return _iso(int(self.timestamp[-1]))

    def resample(self, minutes: int) -> OHLC:
        """Aggregate into bars of ``minutes``, aligned to multiples of it since the epoch (UTC).

        Open is the first open, high the highest high, low the lowest low and close the last
        close of each window. A first or last window with fewer source bars than it should
        hold is dropped (it covers less time than the others); a window cut by a gap in the
        middle of the data is kept, as the gap itself would be without resampling.

        Parameters
        ----------
        minutes
            New bar length: a whole multiple of the current bar length.

        Returns
        -------
        OHLC
            The coarser bars, with ``bar_hours = minutes / 60``.

        Raises
        ------
        InvalidInput
            ``minutes`` not a positive whole multiple of the bar length, or fewer than 2
            complete bars left.
        """
        bar_minutes = self.bar_hours * 60.0
        per_window = minutes / bar_minutes
        if minutes <= 0 or per_window < 1 or abs(per_window - round(per_window)) > 1e-9:
            raise InvalidInput(
                f"resample_minutes must be a positive whole multiple of the data's bar length "
                f"({bar_minutes:g} minutes), got {minutes}",
                field="resample_minutes",
                value=minutes,
            )
        window = self.timestamp // (minutes * _NS_PER_MINUTE)
        first = np.flatnonzero(np.r_[True, window[1:] != window[:-1]])
        counts = np.diff(np.r_[first, window.size])
        last = first + counts - 1
        keep = np.ones(first.size, dtype=bool)
        full = round(per_window)
        keep[0] = counts[0] >= full
        keep[-1] = keep[-1] and counts[-1] >= full
        if int(keep.sum()) < 2:
            raise InvalidInput(
                f"resampling {self.bars} bars of {bar_minutes:g} minutes to {minutes} minutes "
                f"leaves {int(keep.sum())} complete bars, at least 2 are needed: use a smaller "
                "resample_minutes or a longer data file",
                field="resample_minutes",
                value=minutes,
            )
        return OHLC(
            timestamp=(window[first] * minutes * _NS_PER_MINUTE)[keep],
            open=self.open[first][keep],
            high=np.maximum.reduceat(self.high, first)[keep],
            low=np.minimum.reduceat(self.low, first)[keep],
            close=self.close[last][keep],
            bar_hours=minutes / 60.0,
        )


def ohlc_from_arrays(
    timestamp: ArrayLike,
    open_: ArrayLike,
    high: ArrayLike,
    low: ArrayLike,
    close: ArrayLike,
) -> OHLC:
    """Validate OHLC arrays and infer the bar length.

    Parameters
    ----------
    timestamp
        Bar open times as ``datetime64`` or as integer nanoseconds since the epoch (UTC).
    open_, high, low, close
        Prices, one per bar.

    Returns
    -------
    OHLC
        The bars, with ``bar_hours`` the median timestamp spacing.

    Raises
    ------
    InvalidInput
        Arrays of different lengths; fewer than 2 bars; a price that is missing (NaN), not
        finite or not positive; a high below its low; timestamps not strictly increasing
        (unsorted or duplicated). The message names the column and the row (0-based, data
        rows only) with its timestamp.
    """
    ts = timestamps_ns(np.asarray(timestamp))
    columns = {
        name: np.asarray(values, dtype=np.float64).ravel()
        for name, values in zip(PRICE_COLUMNS, (open_, high, low, close), strict=True)
    }
    for name, values in columns.items():
        if values.size != ts.size:
            raise InvalidInput(
                f"{name} has {values.size} values but timestamp has {ts.size}: every bar "
                "needs a timestamp and four prices",
                field=name,
                value=int(values.size),
            )
    if ts.size < 2:
        raise InvalidInput(
            f"at least 2 bars are needed to infer the bar length, got {ts.size}: use a longer "
            "data file",
            field="bars",
            value=int(ts.size),
        )
    for name, values in columns.items():
        bad = ~(np.isfinite(values) & (values > 0))
        if bad.any():
            i = int(np.argmax(bad))
            what = "missing (NaN)" if np.isnan(values[i]) else f"{values[i]}"
            raise InvalidInput(
                f"{name} is {what} at row {i} ({_iso(int(ts[i]))}): prices must be positive "
                "finite numbers; fix or remove the row",
                field=f"{name}[{i}]",
                value=None if np.isnan(values[i]) else float(values[i]),
            )
    below = columns["high"] < columns["low"]
    if below.any():
        i = int(np.argmax(below))
        raise InvalidInput(
            f"high {columns['high'][i]} is below low {columns['low'][i]} at row {i} "
            f"({_iso(int(ts[i]))}): fix or remove the row",
            field=f"high[{i}]",
            value=float(columns["high"][i]),
        )
    step = np.diff(ts)
    bad_step = step <= 0
    if bad_step.any():
        i = int(np.argmax(bad_step)) + 1
        what = "duplicates" if step[i - 1] == 0 else "is earlier than"
        raise InvalidInput(
            f"timestamp at row {i} ({_iso(int(ts[i]))}) {what} row {i - 1} "
            f"({_iso(int(ts[i - 1]))}): bars must be sorted by time without duplicates",
            field=f"timestamp[{i}]",
            value=_iso(int(ts[i])),
        )
    return OHLC(
        timestamp=ts,
        open=columns["open"],
        high=columns["high"],
        low=columns["low"],
        close=columns["close"],
        bar_hours=float(np.median(step)) / _NS_PER_HOUR,
    )


def load_ohlc(path: str | Path) -> OHLC:
    """Read OHLC bars from a CSV (optionally gzipped) or Parquet file.

    Parameters
    ----------
    path
        ``*.csv``, ``*.csv.gz`` or ``*.parquet``; columns as in the module docstring.

    Returns
    -------
    OHLC
        Validated bars (see :func:`ohlc_from_arrays`).

    Raises
    ------
    InvalidInput
        Unknown extension, unreadable file, a missing column, a column that is not numeric or
        not a time, and everything :func:`ohlc_from_arrays` rejects.
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    table = _read(Path(path))
    by_name = {name.lower(): name for name in table.column_names}
    ts_name = next((by_name[c] for c in TIMESTAMP_COLUMNS if c in by_name), None)
    if ts_name is None:
        raise InvalidInput(
            f"{Path(path).name} has no timestamp column: name one of "
            f"{', '.join(TIMESTAMP_COLUMNS)} (found {', '.join(table.column_names)})",
            field="timestamp",
        )
    prices: list[NDArray[np.float64]] = []
    for name in PRICE_COLUMNS:
        if name not in by_name:
            raise InvalidInput(
                f"{Path(path).name} has no {name!r} column (found "
                f"{', '.join(table.column_names)}): bars need open, high, low and close",
                field=name,
            )
        try:
            col = pc.cast(table.column(by_name[name]), pa.float64())
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise InvalidInput(
                f"column {by_name[name]!r} is not numeric: {exc}", field=name
            ) from exc
        prices.append(np.asarray(col.to_numpy(zero_copy_only=False), dtype=np.float64))
    ts = _timestamps(table.column(ts_name), ts_name)
    return ohlc_from_arrays(ts, *prices)


def _read(path: Path) -> Any:
    return read_table(path, "bar file", "path")


def _timestamps(column: Any, name: str) -> NDArray[np.int64]:
    """An Arrow column of times, dates, ISO strings or epoch integers as UTC nanoseconds."""
    import pyarrow as pa
    import pyarrow.compute as pc

    if column.null_count:
        i = int(np.argmax(np.asarray(pc.is_null(column).to_numpy(zero_copy_only=False))))
        raise InvalidInput(
            f"{name} is missing at row {i}: every bar needs a timestamp", field=f"{name}[{i}]"
        )
    kind = column.type
    try:
        if pa.types.is_integer(kind) or pa.types.is_floating(kind):
            return _epoch_to_ns(np.asarray(column.to_numpy(zero_copy_only=False)), name)
        if pa.types.is_string(kind) or pa.types.is_large_string(kind):
            try:
                column = pc.cast(column, pa.timestamp("ns", tz="UTC"))
            except pa.ArrowInvalid:  # no offset in the text: read it as UTC
                column = pc.cast(column, pa.timestamp("ns"))
        if pa.types.is_date(kind):
            column = pc.cast(column, pa.timestamp("ns"))
        if pa.types.is_timestamp(column.type):
            unit_ns = pc.cast(column, pa.timestamp("ns", tz=column.type.tz))
            return np.asarray(pc.cast(unit_ns, pa.int64()).to_numpy(zero_copy_only=False))
    except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
        raise InvalidInput(
            f"column {name!r} is not a time: {exc}; use ISO 8601 text or epoch integers",
            field=name,
        ) from exc
    raise InvalidInput(
        f"column {name!r} has type {kind}, not a time: use ISO 8601 text, a timestamp or "
        "epoch integers",
        field=name,
    )


def _epoch_to_ns(values: NDArray[Any], name: str) -> NDArray[np.int64]:
    """Epoch numbers to nanoseconds; the unit follows from the magnitude (dates after 1973)."""
    if not np.all(np.isfinite(values)):
        i = int(np.argmax(~np.isfinite(values)))
        raise InvalidInput(f"{name} is not finite at row {i}", field=f"{name}[{i}]")
    top = float(np.max(np.abs(values)))
    for limit, factor in ((1e11, 10**9), (1e14, 10**6), (1e17, 10**3)):
        if top < limit:
            if np.issubdtype(values.dtype, np.integer):
                return values.astype(np.int64) * factor
            return np.round(values.astype(np.float64) * factor).astype(np.int64)
    return values.astype(np.int64)


def timestamps_ns(ts: NDArray[Any]) -> NDArray[np.int64]:
    """Timestamps as int64 nanoseconds since the epoch, from datetime64 or integer nanoseconds."""
    if np.issubdtype(ts.dtype, np.datetime64):
        return ts.astype("datetime64[ns]").astype(np.int64).ravel()
    if np.issubdtype(ts.dtype, np.integer):
        return ts.astype(np.int64).ravel()
    raise InvalidInput(
        f"timestamp must be datetime64 or integer nanoseconds, got dtype {ts.dtype}",
        field="timestamp",
    )


def _iso(ns: int) -> str:
    seconds, rest = divmod(ns, 1_000_000_000)
    text = str(np.datetime64(seconds, "s"))
    return f"{text}Z" if rest == 0 else f"{text}.{rest:09d}".rstrip("0") + "Z"
