"""Cursors order as fills do."""

from __future__ import annotations

from levalign.sources.base import Cursor


def test_cursors_order_by_time_then_sequence():
    assert Cursor(1_000, 5) < Cursor(1_001, 0) < Cursor(1_001, 1)
    assert max(Cursor(2, 9), Cursor(3, 0)) == Cursor(3, 0)
