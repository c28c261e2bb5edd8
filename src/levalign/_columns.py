"""Reading follower tables: column extraction and validation shared by every cohort type.

:class:`levalign.normalize.Cohort` and :class:`levalign.risk.options.OptionCohort` read their
tables through these functions: any of a pyarrow Table, a pandas or polars DataFrame, a dict of
columns or a list of JSON rows (validated by a pydantic row model) becomes a dict of columns;
float and categorical columns are then converted with one error policy.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from levalign.errors import InvalidInput
from levalign.schemas import parse, unknown_key_message

__all__ = [
    "check_columns",
    "checked_ids",
    "code_column",
    "columns_of",
    "explicit_nan",
    "flag_column",
    "float_column",
]


def check_columns(columns: Mapping[str, Any], known: Sequence[str]) -> None:
    """A follower table must have ``id`` and ``equity`` and no column outside ``known``.

    Raises
    ------
    InvalidInput
        Naming the missing or unknown column, and listing the known ones.
    """
    for required in ("id", "equity"):
        if required not in columns:
            raise InvalidInput(
                f"the follower table has no {required!r} column; required columns are 'id' "
                f"and 'equity' (optional: {', '.join(known[2:])})",
                field=f"followers.{required}",
            )
    unknown = sorted(set(columns) - set(known))
    if unknown:
        raise InvalidInput(
            unknown_key_message(unknown[0], list(known), noun="follower column"),
            field=f"followers.{unknown[0]}",
        )


def columns_of(table: Any, row_model: type[BaseModel]) -> dict[str, Any]:
    """Column name -> array-like for every supported table type.

    Numeric and boolean columns become numpy arrays; text columns of an Arrow table (polars
    columns are Arrow underneath) stay Arrow arrays, which :func:`code_column` codes without a
    Python loop; ``id`` is always a numpy array.
    """
    if isinstance(table, Mapping):
        return dict(table)
    if isinstance(table, Sequence) and not isinstance(table, str | bytes):
        rows = [
            r if isinstance(r, row_model) else parse(row_model, r, root=f"followers[{i}]")
            for i, r in enumerate(table)
        ]
        if not rows:
            return {"id": [], "equity": []}
        dumped = [r.model_dump(exclude_unset=True) for r in rows]
        names = {k for d in dumped for k in d}
        out: dict[str, Any] = {k: np.array([d.get(k) for d in dumped], dtype=object) for k in names}
        out.setdefault("id", [getattr(r, "id", None) for r in rows])
        return out
    module = type(table).__module__.split(".")[0]
    if module == "pyarrow":
        return {name: _from_arrow(name, table.column(name)) for name in table.column_names}
    if module == "pandas":
        return {str(c): table[c].to_numpy() for c in table.columns}
    if module == "polars":
        return {c: _from_arrow(c, table.get_column(c).to_arrow()) for c in table.columns}
    raise InvalidInput(
        f"cannot read followers from a {type(table).__name__}; pass a pyarrow Table, a pandas or "
        "polars DataFrame, a dict of columns or a list of follower rows",
        field="followers",
    )


def _from_arrow(name: str, column: Any) -> Any:
    """An Arrow column as :func:`columns_of` returns it: text stays Arrow, the rest numpy."""
    import pyarrow as pa

    if name != "id" and _is_text(column.type):
        return column
    if pa.types.is_dictionary(column.type):
        column = column.cast(column.type.value_type)
    return column.to_numpy(zero_copy_only=False)


def _is_text(kind: Any) -> bool:
    import pyarrow as pa

    if pa.types.is_dictionary(kind):
        kind = kind.value_type
    return bool(pa.types.is_string(kind) or pa.types.is_large_string(kind))


def _is_arrow(values: Any) -> bool:
    return type(values).__module__.split(".")[0] == "pyarrow"


def float_column(values: Any, name: str, n: int, default: float | None) -> NDArray[np.float64]:
    """A numeric column as float64; None (and Arrow null) is the column's ``default``.

    Raises
    ------
    InvalidInput
        The column is not numeric, or not ``n`` rows long.
    """
    if _is_arrow(values):
        values = values.to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.dtype == object:
        fill = math.nan if default is None else default
        try:
            arr = np.array([fill if v is None else float(v) for v in arr], dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise InvalidInput(
                f"follower column {name!r} must be numeric: {exc}", field=f"followers.{name}"
            ) from exc
    elif not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise InvalidInput(
            f"follower column {name!r} must be numeric, got dtype {arr.dtype}",
            field=f"followers.{name}",
        )
    out = np.ascontiguousarray(arr, dtype=np.float64)
    if out.shape != (n,):
        raise InvalidInput(
            f"follower column {name!r} has {out.shape[0]} rows, 'id' has {n}",
            field=f"followers.{name}",
        )
    return out


def explicit_nan(values: Any, n: int) -> NDArray[np.bool_]:
    """True where a user stated NaN (bad data), False where the value is absent (use default)."""
    if values is None:
        return np.zeros(n, dtype=np.bool_)
    arr = np.asarray(values)
    if arr.dtype == object:
        return np.array([isinstance(v, float) and math.isnan(v) for v in arr], dtype=np.bool_)
    if np.issubdtype(arr.dtype, np.floating):
        return np.asarray(np.isnan(arr), dtype=np.bool_)
    return np.zeros(n, dtype=np.bool_)


def code_column(values: Any, names: tuple[str, ...], default: str, n: int) -> NDArray[np.int8]:
    """A categorical column as int8 codes: the index in ``names``, ``-1`` for an unknown value.

    None (Arrow null) is ``default``; integers are taken as codes (out of range: ``-1``). Text
    is coded by Arrow's hash lookup (``pyarrow.compute.index_in``); anything else (numbers or
    NaN mixed with text) row by row, with the same result.

    Raises
    ------
    InvalidInput
        The column is not ``n`` rows long.
    """
    if values is None:
        return np.full(n, names.index(default), dtype=np.int8)
    if not _is_arrow(values):
        arr = np.asarray(values)
        if np.issubdtype(arr.dtype, np.integer):
            out = arr.astype(np.int8)
            out[(arr < 0) | (arr >= len(names))] = -1
            return _of_length(out, n)
        values = _as_arrow_text(arr)
        if values is None:
            return _of_length(_code_per_row(arr, names, default), n)
    elif not _is_text(values.type):
        return _of_length(_code_per_row(values.to_numpy(zero_copy_only=False), names, default), n)
    return _of_length(_code_text(values, names, default), n)


def _as_arrow_text(arr: NDArray[Any]) -> Any:
    """``arr`` as an Arrow text array, or None when it holds anything but text and None."""
    import pyarrow as pa

    try:
        converted = pa.array(arr)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return None
    if pa.types.is_null(converted.type):
        return converted.cast(pa.string())
    return converted if _is_text(converted.type) else None


def _code_text(values: Any, names: tuple[str, ...], default: str) -> NDArray[np.int8]:
    import pyarrow as pa
    import pyarrow.compute as pc

    if pa.types.is_dictionary(values.type):
        values = values.cast(values.type.value_type)
    found = pc.index_in(values, value_set=pa.array(names, type=values.type))
    if found.null_count:
        found = found.fill_null(-1)
    codes = np.array(pc.cast(found, pa.int8()).to_numpy(zero_copy_only=False), dtype=np.int8)
    if values.null_count:
        nulls = np.asarray(values.is_null().to_numpy(zero_copy_only=False), dtype=np.bool_)
        codes[nulls] = names.index(default)
    return codes


def _code_per_row(arr: NDArray[Any], names: tuple[str, ...], default: str) -> NDArray[np.int8]:
    lookup = {name: i for i, name in enumerate(names)}
    return np.array(
        [lookup.get(str(v), -1) if v is not None else names.index(default) for v in arr],
        dtype=np.int8,
    )


def flag_column(values: Any, name: str, n: int, default: bool) -> NDArray[np.bool_]:
    """A true/false column; None (Arrow null) is ``default``, anything else its truth value.

    Raises
    ------
    InvalidInput
        The column is not ``n`` rows long.
    """
    if values is None:
        return np.full(n, default, dtype=np.bool_)
    if _is_arrow(values):
        values = values.fill_null(default).to_numpy(zero_copy_only=False)
    arr = np.asarray(values)
    if arr.dtype == np.bool_:
        out = arr.copy()
    elif np.issubdtype(arr.dtype, np.number):
        out = arr != 0
    else:
        out = np.array([bool(v) if v is not None else default for v in arr], dtype=np.bool_)
    if out.shape != (n,):
        raise InvalidInput(
            f"follower column {name!r} has {out.shape[0]} rows, 'id' has {n}",
            field=f"followers.{name}",
        )
    return out


def _of_length(codes: NDArray[np.int8], n: int) -> NDArray[np.int8]:
    if codes.shape != (n,):
        raise InvalidInput(
            f"a follower code column has {codes.shape[0]} rows, 'id' has {n}",
            field="followers",
        )
    return codes


def checked_ids(values: Any) -> NDArray[Any]:
    """The follower ids as a numpy array, each present, non-empty and unique.

    Numeric ids are checked by numpy (in one pass when they are sorted, else by a sort), text
    ids by Arrow's hash of the values.

    Raises
    ------
    InvalidInput
        An id is missing (None, null or NaN), empty, or repeated: the message names the row.
    """
    ids = np.asarray(values)
    if ids.ndim != 1:
        raise InvalidInput("follower ids must be one column of values", field="followers.id")
    if np.issubdtype(ids.dtype, np.number):
        missing = np.isnan(ids) if np.issubdtype(ids.dtype, np.floating) else None
        _refuse_missing(ids, missing)
        unique = bool(np.all(ids[1:] > ids[:-1]))
        if not unique:
            s = np.sort(ids)
            unique = not bool(np.any(s[1:] == s[:-1]))
    elif len(ids) <= _SMALL_TEXT_IDS:
        missing, unique = _text_ids_checked_in_python(ids.tolist())
        _refuse_missing(ids, missing)
    else:
        missing, unique = _text_ids_checked_by_arrow(ids)
        _refuse_missing(ids, missing)
    if not unique:
        first: dict[Any, int] = {}
        for i, v in enumerate(ids.tolist()):
            # 1 and "1" print alike in every output: one follower twice
            key = v if np.issubdtype(ids.dtype, np.number) else str(v)
            if key in first:
                raise InvalidInput(
                    f"follower id {v!r} is given twice (rows {first[key]} and {i}); ids must be "
                    "unique",
                    field=f"followers[{i}].id",
                    value=v,
                )
            first[key] = i
    return ids


# Text ids of small cohorts (JSON requests) are checked in Python: the first conversion to
# Arrow in a process imports pandas, which costs a command more start-up time than the check.
_SMALL_TEXT_IDS = 10_000


def _text_ids_checked_in_python(values: list[Any]) -> tuple[NDArray[np.bool_], bool]:
    """(missing or blank mask, all distinct as text) of ids held as Python objects."""
    missing = np.array(
        [
            v is None
            or (isinstance(v, float) and math.isnan(v))
            or (isinstance(v, str) and not v.strip())
            for v in values
        ],
        dtype=np.bool_,
    )
    return missing, len({str(v) for v in values}) == len(values)


def _text_ids_checked_by_arrow(ids: NDArray[Any]) -> tuple[NDArray[np.bool_], bool]:
    """:func:`_text_ids_checked_in_python` by Arrow's kernels, for large cohorts."""
    import pyarrow as pa
    import pyarrow.compute as pc

    try:
        arr = pa.array(ids)
    except (pa.ArrowInvalid, pa.ArrowTypeError):  # ids of mixed types: as text, NaN missing
        arr = pa.array(
            [
                None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v)
                for v in ids.tolist()
            ],
            type=pa.string(),
        )
    blank = arr.is_null()
    if pa.types.is_floating(arr.type):
        blank = pc.or_kleene(blank, pc.is_nan(arr))
    elif _is_text(arr.type):
        blank = pc.or_kleene(blank, pc.equal(pc.utf8_trim_whitespace(arr), ""))
    if not (_is_text(arr.type) or pa.types.is_null(arr.type)):
        arr = pc.cast(arr, pa.string())  # ids of mixed types compare as text
    missing = np.asarray(blank.to_numpy(zero_copy_only=False), dtype=np.bool_)
    return missing, len(pc.unique(arr)) == len(ids)


def _refuse_missing(ids: NDArray[Any], missing: NDArray[np.bool_] | None) -> None:
    if missing is not None and missing.any():
        i = int(np.argmax(missing))
        raise InvalidInput(
            f"follower id of row {i} is missing or empty ({ids.tolist()[i]!r}); give every "
            "follower an id",
            field=f"followers[{i}].id",
        )
