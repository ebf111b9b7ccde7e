"""Counts that a key-holder sends at the wire's limit never break what a peer sends back.

Each origin's count may be any ``uint`` (up to 2**63 - 1); the sum of two of
them used to overflow the digest entry a relay then tried to encode, and the
state was stored, so the relay failed again after every restart. Sums
saturate at ``mesh.bounds.MAX_COUNT`` (docs/PROTOCOL.md).
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from mesh import wire
from mesh.antientropy import digest_entry
from mesh.bounds import MAX_COUNT, saturating_add, saturating_sum
from mesh.sigstate import OriginCount, SigState, merge_states
from mesh.store import Store

SIG = b"\x01" * 16
counts = st.integers(min_value=0, max_value=MAX_COUNT)


def state(origin: bytes, count: int) -> SigState:
    return SigState(
        signature=SIG,
        counts={origin: OriginCount(count=count, first_seen=1.0, last_seen=2.0, host="h")},
    )


@given(st.lists(counts, min_size=1, max_size=8))
def test_a_merged_states_digest_is_always_encodable(values: list[int]) -> None:
    merged = state(bytes([0]) * 16, values[0])
    for i, value in enumerate(values[1:], start=1):
        merged = merge_states(merged, state(bytes([i]) * 16, value))
    assert merged.total == min(sum(values), MAX_COUNT)
    digest = wire.DigestMsg(entries=(digest_entry(merged),), after=b"", until=b"")
    decoded = wire.decode(wire.encode(digest, b"k" * 32), b"k" * 32)
    assert isinstance(decoded, wire.DigestMsg)
    assert decoded.entries[0].total == merged.total


def test_saturating_arithmetic_stops_at_the_wires_limit() -> None:
    assert saturating_add(MAX_COUNT, 1) == MAX_COUNT
    assert saturating_sum([MAX_COUNT, MAX_COUNT, 5]) == MAX_COUNT
    assert saturating_sum([1, 2]) == 3


def test_a_store_holding_counts_at_the_limit_reloads_and_digests(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.merge_states([state(b"\x0a" * 16, MAX_COUNT), state(b"\x0b" * 16, MAX_COUNT)])
    with Store.open(tmp_path) as store:
        [loaded] = store.states()
    assert loaded.total == MAX_COUNT
    wire.encode(wire.DigestMsg(entries=(digest_entry(loaded),), after=b"", until=b""), None)
