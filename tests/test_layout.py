"""The cohort layout registry: the README's cohort table is rendered from it."""

from __future__ import annotations

from pathlib import Path

from levalign._layout import CODE_COLUMNS, FLOAT_COLUMNS, cohort_table_markdown

README = Path(__file__).resolve().parents[1] / "README.md"


def test_the_readme_cohort_table_is_the_registrys():
    assert cohort_table_markdown() in README.read_text(encoding="utf-8")


def test_every_column_has_one_row_in_one_matrix():
    assert not set(FLOAT_COLUMNS) & set(CODE_COLUMNS)
    assert len(set(FLOAT_COLUMNS)) == len(FLOAT_COLUMNS)
