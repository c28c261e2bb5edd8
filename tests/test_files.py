"""Input files read with errors in words; output files checked first and written atomically."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from levalign._files import check_output, read_table, read_text, write_atomic
from levalign.errors import ConfigurationError, InvalidInput


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("missing.json", None, "no such file"),
        ("folder", "dir", "is a folder, not a file"),
        # Latin-1 é after the 11 bytes {"id": "caf
        ("latin1.json", b'{"id": "caf\xe9"}', r"not UTF-8 text \(byte 0xe9 at offset 11\)"),
        ("broken.csv.gz", b"not gzip at all", "is not a gzip file"),
        ("cut.csv.gz", gzip.compress(b"a,b\n1,2\n")[:15], "truncated gzip"),
    ],
)
def test_read_text_says_what_is_wrong(tmp_path, name, content, message):
    path = tmp_path / name
    if content == "dir":
        path.mkdir()
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(InvalidInput, match=message) as info:
        read_text(path, "request", "request")
    assert info.value.field == "request"


def test_read_text_raises_the_class_it_is_given(tmp_path):
    with pytest.raises(ConfigurationError, match=r"cannot read markets file .*: no such file"):
        read_text(tmp_path / "m.json", "markets file", "markets", error=ConfigurationError)


def test_a_csv_column_that_is_not_utf8_is_located(tmp_path):
    path = tmp_path / "f.csv"
    path.write_bytes(b"id,equity\na,1\n\xffb,2\n")
    with pytest.raises(InvalidInput, match=r"column 'id' at row 1 is not UTF-8") as info:
        read_table(path, "followers file", "followers")
    assert info.value.field == "followers[1].id"


def test_read_table_missing_file_and_suffix(tmp_path):
    with pytest.raises(InvalidInput, match=r"cannot read followers file '.*x\.csv': no such file"):
        read_table(tmp_path / "x.csv", "followers file", "followers")
    with pytest.raises(InvalidInput, match=r"must end in \.csv, \.csv\.gz or \.parquet"):
        read_table(tmp_path / "x.xlsx", "followers file", "followers")


@pytest.mark.parametrize(
    ("relative", "message"),
    [
        ("nowhere/out.csv", "folder .* does not exist; create it first"),
        ("sub", "is a folder: give a file name inside it"),
        ("out.xlsx", r"--out must end in \.csv or \.json, got 'out\.xlsx'"),
    ],
)
def test_check_output_refuses_before_any_work(tmp_path, relative, message):
    (tmp_path / "sub.csv").mkdir()  # a folder named like a file
    (tmp_path / "sub").mkdir()
    path = tmp_path / relative
    if relative == "sub":
        path = tmp_path / "sub.csv"
    with pytest.raises(InvalidInput, match=message) as info:
        check_output(path, (".csv", ".json"), "out")
    assert info.value.field == "out"


def test_check_output_returns_the_suffix(tmp_path):
    assert check_output(tmp_path / "Orders.CSV", (".csv",), "out") == ".csv"


def test_write_atomic_replaces_the_file_whole(tmp_path):
    path = tmp_path / "orders.csv"
    path.write_text("old")
    seen: list[Path] = []

    def write(tmp: Path) -> None:
        seen.append(tmp)
        assert tmp.parent == tmp_path  # same folder: the rename is atomic
        assert tmp.suffix == ".csv"  # writers that choose the format by suffix still can
        assert path.read_text() == "old"  # until the rename, readers see the old file
        tmp.write_text("new")

    write_atomic(path, write, "out")
    assert path.read_text() == "new"
    assert list(tmp_path.iterdir()) == [path]


def test_a_failed_write_leaves_nothing_behind(tmp_path):
    path = tmp_path / "orders.csv"

    def write(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("the writer failed")

    with pytest.raises(RuntimeError, match="the writer failed"):
        write_atomic(path, write, "out")
    assert list(tmp_path.iterdir()) == []
