"""Reading input files and writing output files, with errors a person can act on.

Inputs: :func:`read_text` reads a UTF-8 file (gzip-compressed when its name ends in ``.gz``)
and says what is wrong in words ("no such file", "is a folder", "is not UTF-8 text").
Outputs: :func:`check_output` checks a destination before any work is done (its folder
exists, it is not a folder, its suffix is one the command writes), and :func:`write_atomic`
writes it through a temporary file in the same folder renamed over it at the end, so that a
reader never sees a half-written file and a failure leaves no file behind.
"""

from __future__ import annotations

import errno
import gzip
import os
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from levalign.errors import InvalidInput, LevalignError

__all__ = [
    "FIGURE_SUFFIXES",
    "check_output",
    "os_error_text",
    "read_table",
    "read_text",
    "utf8_error_text",
    "write_atomic",
]


FIGURE_SUFFIXES = (".html", ".png")
"""The figure files levalign writes (``--plot``, ``--report``): interactive HTML or PNG."""


def os_error_text(exc: OSError) -> str:
    """What an ``OSError`` means for a file a person named: ``no such file``, ``is a folder``..."""
    if isinstance(exc, FileNotFoundError):
        return "no such file"
    if isinstance(exc, IsADirectoryError):
        return "is a folder, not a file"
    if isinstance(exc, NotADirectoryError):
        return "a part of the path is not a folder"
    if isinstance(exc, PermissionError):
        return "permission denied"
    if isinstance(exc, gzip.BadGzipFile):
        return "is not a gzip file (its name ends in .gz)"
    return exc.strerror or str(exc)


def utf8_error_text(exc: UnicodeDecodeError) -> str:
    """Where a file stops being UTF-8, and the fix."""
    bad = exc.object[exc.start : exc.start + 1].hex()
    return f"is not UTF-8 text (byte 0x{bad} at offset {exc.start}): save it as UTF-8"


def read_text(
    path: str | Path,
    what: str,
    field: str,
    *,
    error: type[LevalignError] = InvalidInput,
) -> str:
    """The text of a UTF-8 file, gunzipped when its name ends in ``.gz``.

    Parameters
    ----------
    path
        The file.
    what
        What the file is, for the message (``"request"``, ``"lead history"``).
    field
        The error's ``field``.
    error
        The error class (a markets file is configuration, a request is input).

    Raises
    ------
    LevalignError
        ``error``, saying ``cannot read {what} '{path}': no such file`` (or is a folder, is
        not UTF-8 text ...).
    """
    p = Path(path)
    try:
        if p.name.lower().endswith(".gz"):
            with gzip.open(p, "rt", encoding="utf-8", newline="") as fh:
                return fh.read()
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        reason = utf8_error_text(exc)
    except EOFError:
        reason = "is a truncated gzip file"
    except OSError as exc:
        reason = os_error_text(exc)
    raise error(f"cannot read {what} {str(p)!r}: {reason}", field=field, value=str(p))


def read_table(path: str | Path, what: str, field: str) -> Any:
    """A Parquet or CSV (optionally ``.csv.gz``) file as a ``pyarrow.Table``, text as UTF-8.

    Raises
    ------
    InvalidInput
        Another suffix, a file that cannot be read (no such file, a folder), that is not
        Parquet or CSV, or a CSV text column that is not UTF-8 (named with its first bad row).
    """
    p = Path(path)
    name = p.name.lower()
    if not name.endswith((".parquet", ".csv", ".csv.gz")):
        raise InvalidInput(
            f"{what} must end in .csv, .csv.gz or .parquet, got {p.name!r}",
            field=field,
            value=str(p),
        )
    try:
        if name.endswith(".parquet"):
            import pyarrow.parquet as pq

            table = pq.read_table(p)
        else:
            import pyarrow.csv as pcsv

            table = pcsv.read_csv(p)
    except OSError as exc:
        raise InvalidInput(
            f"cannot read {what} {str(p)!r}: {os_error_text(exc)}", field=field, value=str(p)
        ) from exc
    except ValueError as exc:  # pyarrow's ArrowInvalid: not CSV or Parquet as it says
        raise InvalidInput(f"cannot read {what} {str(p)!r}: {exc}", field=field) from exc
    import pyarrow as pa

    for column_name, column in zip(table.column_names, table.columns, strict=True):
        if pa.types.is_binary(column.type) or pa.types.is_large_binary(column.type):
            for i, value in enumerate(column.to_pylist()):
                try:
                    if value is not None:
                        value.decode("utf-8")
                except UnicodeDecodeError as exc:
                    raise InvalidInput(
                        f"{what} {str(p)!r}: column {column_name!r} at row {i} "
                        f"{utf8_error_text(exc)}",
                        field=f"{field}[{i}].{column_name}",
                    ) from exc
    return table


def check_output(path: Path, suffixes: Sequence[str], field: str) -> str:
    """Check an output path before the work that fills it; return its lower-case suffix.

    Raises
    ------
    InvalidInput
        The suffix is not one of ``suffixes``, the path is a folder, its folder does not
        exist or is not writable.
    """
    suffix = path.suffix.lower()
    if suffix not in suffixes:
        raise InvalidInput(
            f"--{field} must end in {_one_of(suffixes)}, got {path.name!r}",
            field=field,
            value=str(path),
        )
    if path.is_dir():
        raise InvalidInput(
            f"--{field} {str(path)!r} is a folder: give a file name inside it "
            f"(for example {str(path / ('out' + suffix))!r})",
            field=field,
            value=str(path),
        )
    folder = path.parent
    if not folder.is_dir():
        raise InvalidInput(
            f"--{field} {str(path)!r}: folder {str(folder)!r} does not exist; create it first",
            field=field,
            value=str(path),
        )
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InvalidInput(
            f"--{field} {str(path)!r}: folder {str(folder)!r} is not writable",
            field=field,
            value=str(path),
        )
    return suffix


def _one_of(names: Sequence[str]) -> str:
    """``.parquet, .csv or .json``."""
    return names[0] if len(names) == 1 else f"{', '.join(names[:-1])} or {names[-1]}"


def write_atomic(path: Path, write: Callable[[Path], None], field: str) -> None:
    """Write ``path`` through ``write(temporary_path)``, then rename it over ``path``.

    The temporary file sits in the same folder (a rename within one file system is atomic)
    and keeps the suffix, for writers that choose the format by it. A failure removes it.

    Raises
    ------
    InvalidInput
        The file cannot be written (disk full, permissions): nothing is left behind.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}.", suffix=path.suffix)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        tmp.replace(path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        reason = "the disk is full" if exc.errno == errno.ENOSPC else os_error_text(exc)
        raise InvalidInput(
            f"cannot write --{field} {str(path)!r}: {reason}", field=field, value=str(path)
        ) from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
