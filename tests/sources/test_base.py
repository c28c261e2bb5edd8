from __future__ import annotations

import random

from hypothesis import given
from hypothesis import strategies as st

from levalign.sources.base import Backoff, FileCursorStore, MemoryCursorStore


@given(
    attempt=st.integers(min_value=0, max_value=200),
    base=st.floats(min_value=0.001, max_value=10.0),
    cap=st.floats(min_value=0.001, max_value=600.0),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_backoff_delay_is_within_full_jitter_bounds(attempt, base, cap, seed):
    backoff = Backoff(base=base, cap=cap, rng=random.Random(seed))
    bound = min(cap, base * 2.0 ** min(attempt, 64))
    delay = backoff.delay(attempt)
    assert backoff.bound(attempt) == bound
    assert 0.0 <= delay <= bound


def test_backoff_bounds_double_then_cap():
    # base 0.5, cap 4: bounds 0.5, 1, 2, 4, 4 (hand-derived: 0.5 · 2**k, capped at 4)
    backoff = Backoff(base=0.5, cap=4.0, rng=random.Random(0))
    assert [backoff.bound(k) for k in range(5)] == [0.5, 1.0, 2.0, 4.0, 4.0]


def test_backoff_is_reproducible_with_a_seed():
    first = [Backoff(rng=random.Random(7)).delay(k) for k in range(6)]
    second = [Backoff(rng=random.Random(7)).delay(k) for k in range(6)]
    assert first == second


def test_file_cursor_store_round_trips_and_replaces_atomically(tmp_path):
    store = FileCursorStore(tmp_path / "lead" / "cursor.json")
    assert store.load() is None
    store.save('{"time":1,"tids":[2]}')
    store.save('{"time":3,"tids":[4]}')
    assert store.load() == '{"time":3,"tids":[4]}'
    assert sorted(p.name for p in (tmp_path / "lead").iterdir()) == ["cursor.json"]


def test_memory_cursor_store_holds_the_last_cursor():
    store = MemoryCursorStore()
    store.save("a")
    store.save("b")
    assert store.load() == "b"
