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
from levalign.schemas import parse

__all__ = ["check_columns", "code_column", "columns_of", "explicit_nan", "float_column"]


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
            f"unknown follower column(s) {', '.join(unknown)}; known: {', '.join(known)}",
            field=f"followers.{unknown[0]}",
        )


def columns_of(table: Any, row_model: type[BaseModel]) -> dict[str, Any]:
    """Column name -> array-like for every supported table type."""
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
        return {
            name: table.column(name).to_numpy(zero_copy_only=False) for name in table.column_names
        }
    if module == "pandas":
        return {str(c): table[c].to_numpy() for c in table.columns}
    if module == "polars":
        return {c: table.get_column(c).to_numpy() for c in table.columns}
    raise InvalidInput(
        f"cannot read followers from a {type(table).__name__}; pass a pyarrow Table, a pandas or "
        "polars DataFrame, a dict of columns or a list of follower rows",
        field="followers",
    )


def float_column(values: Any, name: str, n: int, default: float | None) -> NDArray[np.float64]:
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
    if values is None:
        return np.full(n, names.index(default), dtype=np.int8)
    arr = np.asarray(values)
    if np.issubdtype(arr.dtype, np.integer):
        out = arr.astype(np.int8)
        out[(out < 0) | (out >= len(names))] = -1
        return out
    lookup = {name: i for i, name in enumerate(names)}
    return np.array(
        [lookup.get(str(v), -1) if v is not None else names.index(default) for v in arr],
        dtype=np.int8,
    )
