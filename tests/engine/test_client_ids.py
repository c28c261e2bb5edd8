from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from levalign.engine.client_ids import (
    BINANCE_PATTERN,
    CLOID_PATTERN,
    binance_client_id,
    binance_from_cloid,
    cloid,
)


def test_known_vectors():
    # hashlib.sha256(b"levalign/client-id/v1" + (7).to_bytes(4, "big") + b"hl:0xab"
    #                + (2).to_bytes(4, "big") + b"f1" + (4).to_bytes(4, "big") + b"open")
    #        .hexdigest()[:32] == "d6b13322b85b36b3f59e6d831b25b7ed"
    assert cloid("hl:0xab", "f1", "open") == "0xd6b13322b85b36b3f59e6d831b25b7ed"
    assert binance_client_id("hl:0xab", "f1", "open") == "lv-d6b13322b85b36b3f59e6d831b25b7ed"
    # the same over (b"e", b"", b"close") with lengths 1, 0, 5: "05ace30c40e4562d805ef7240f7ecc80"
    assert cloid("e", "", "close") == "0x05ace30c40e4562d805ef7240f7ecc80"


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
