from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from levalign.engine.client_ids import (
    BINANCE_PATTERN,
    CLOID_PATTERN,
    binance_client_id,
    binance_from_cloid,
    cloid,
    event_cloids,
)


def test_known_vectors():
    # with enc(s) = len(s).to_bytes(4, "big") + s:
    # hashlib.sha256(b"levalign/client-event/v1" + enc(b"hl:0xab")).hexdigest()[:12]
    #     == "54875a825caa"
    # hashlib.sha256(b"levalign/client-id/v1" + enc(b"hl:0xab") + enc(b"f1") + enc(b"open"))
    #     .hexdigest()[:20] == "d6b13322b85b36b3f59e"
    assert cloid("hl:0xab", "f1", "open") == "0x54875a825caad6b13322b85b36b3f59e"
    assert binance_client_id("hl:0xab", "f1", "open") == "lv-54875a825caad6b13322b85b36b3f59e"
    # the same over (b"e", b"", b"close"): "2fff9d63b947" + "05ace30c40e4562d805e"
    assert cloid("e", "", "close") == "0x2fff9d63b94705ace30c40e4562d805e"


def test_orders_of_one_event_share_the_event_prefix():
    ids = event_cloids("hl:0xab:7", [("f1", "open"), ("f2", "close"), ("f3", "open")])
    assert ids == [
        cloid("hl:0xab:7", f, leg) for f, leg in (("f1", "open"), ("f2", "close"), ("f3", "open"))
    ]
    assert len({i[:14] for i in ids}) == 1  # 0x + 12 hex of the event
    assert cloid("hl:0xab:8", "f1", "open")[:14] != ids[0][:14]


def test_length_prefix_separates_fields():
    assert cloid("ab", "c", "open") != cloid("a", "bc", "open")


@given(st.text(), st.text(), st.text())
def test_forms_are_valid_and_agree(event_id, follower_id, leg):
    c = cloid(event_id, follower_id, leg)
    b = binance_client_id(event_id, follower_id, leg)
    assert CLOID_PATTERN.match(c)
    assert BINANCE_PATTERN.match(b)
    assert len(b) <= 36
    assert binance_from_cloid(c) == b
    assert cloid(event_id, follower_id, leg) == c  # pure: the same triple, the same id
