"""Anti-entropy's rules, without a network or a clock (mesh/antientropy.py).

Time is a number passed in; the answer delay comes from a seeded
``random.Random``. The relay that carries these decisions out over libp2p
is tested in test_peer.py (in process) and test_mesh.py (real processes).
"""

from __future__ import annotations

import dataclasses
import random

from hypothesis import given
from hypothesis import strategies as st

from mesh import wire
from mesh.antientropy import (
    AntiEntropy,
    AntiEntropyOptions,
    differs,
    digest_entry,
    digest_messages,
)
from mesh.sigstate import OriginCount, SigState

SIGS = [bytes([i]) * 16 for i in range(1, 9)]
OPTS = AntiEntropyOptions()


def state(sig: bytes, count: int, origin: bytes = b"A" * 16) -> SigState:
    return SigState(
        signature=sig,
        counts={origin: OriginCount(count=count, first_seen=1.0, last_seen=2.0, host="h")},
    )


def policy_holding(*states: SigState, options: AntiEntropyOptions = OPTS) -> AntiEntropy:
    ae = AntiEntropy(options, random.Random(7))
    ae.note(states, now=-100.0)  # long ago: nothing is young
    return ae


def test_a_digest_is_batched_and_its_ranges_tile_the_signatures() -> None:
    entries = {sig: digest_entry(state(sig, 1)) for sig in SIGS}
    batches = digest_messages(entries, batch=3)
    assert [len(m.entries) for m in batches] == [3, 3, 2]
    assert [(m.after, m.until) for m in batches] == [
        (b"", SIGS[2]),
        (SIGS[2], SIGS[5]),
        (SIGS[5], b""),
    ]
    assert digest_messages({}) == [wire.DigestMsg(entries=())], "an empty digest still asks"


def test_a_signature_the_asker_lacks_is_answered_once_per_quiet_period() -> None:
    ae = policy_holding(state(SIGS[0], 2))
    lacks = wire.DigestMsg(entries=())
    assert ae.to_answer(lacks, now=0.0) == [SIGS[0]]
    assert ae.to_answer(lacks, now=OPTS.answer_quiet / 2) == [], "answered to everybody"
    assert ae.to_answer(lacks, now=OPTS.answer_quiet) == [SIGS[0]]


def test_another_relays_answer_with_our_state_counts_as_ours() -> None:
    ae = policy_holding(state(SIGS[0], 2))
    ae.heard_answer([state(SIGS[0], 2)], now=10.0)
    assert ae.to_answer(wire.DigestMsg(entries=()), now=10.5) == []


def test_another_relays_answer_with_an_older_state_spares_nothing() -> None:
    """A relay behind us answered a third's digest: our newer state must
    still go out, or the older answer keeps winning the race (F1)."""
    ae = policy_holding(state(SIGS[0], 5))
    ae.heard_answer([state(SIGS[0], 2)], now=10.0)
    assert ae.to_answer(wire.DigestMsg(entries=()), now=10.5) == [SIGS[0]]


def test_an_asker_ahead_by_total_gets_nothing_until_we_hold_the_join() -> None:
    ours = state(SIGS[0], 2)
    theirs = state(SIGS[0], 5, origin=b"B" * 16)
    ae = policy_holding(ours)
    assert ae.to_answer(wire.DigestMsg(entries=(digest_entry(theirs),)), now=0.0) == []
    same = wire.DigestMsg(entries=(digest_entry(ours),))
    assert ae.to_answer(same, now=0.0) == [], "equal states: nothing to say"


def test_an_older_peer_without_fingerprints_is_compared_by_total_and_link() -> None:
    mine = digest_entry(state(SIGS[0], 3))
    old = wire.DigestEntry(
        signature=SIGS[0], total=2, link_term=-1, link_synced_total=-1, fingerprint=b""
    )
    assert differs(mine, old)
    assert not differs(mine, dataclasses.replace(old, total=3))


def test_a_young_difference_waits_but_not_for_ever() -> None:
    ae = AntiEntropy(OPTS, random.Random(1))
    lacks = wire.DigestMsg(entries=())
    now = 0.0
    ae.note([state(SIGS[0], 1)], now)
    assert ae.to_answer(lacks, now) == []
    assert ae.to_answer(lacks, now + OPTS.answer_young) == [SIGS[0]]
    # One that changes all the time is answered after answer_defer_max.
    ae = AntiEntropy(OPTS, random.Random(1))
    answered_at = None
    for step in range(40):
        now = step * 0.25
        ae.note([state(SIGS[0], step + 1)], now)
        if ae.to_answer(lacks, now):
            answered_at = now
            break
    assert answered_at is not None and answered_at <= OPTS.answer_defer_max


def test_only_signatures_in_the_digests_range_count_as_lacking() -> None:
    ae = policy_holding(*(state(sig, 1) for sig in SIGS[:4]))
    ranged = wire.DigestMsg(entries=(), after=SIGS[0], until=SIGS[2])
    assert ae.to_answer(ranged, now=0.0) == [SIGS[1], SIGS[2]]


def test_the_answer_delay_is_drawn_from_the_injected_source() -> None:
    a = AntiEntropy(OPTS, random.Random(3))
    b = AntiEntropy(OPTS, random.Random(3))
    delays = [a.answer_delay() for _ in range(20)]
    assert delays == [b.answer_delay() for _ in range(20)]
    assert all(0.0 <= d <= OPTS.answer_jitter for d in delays)


def test_the_entries_are_rebuilt_when_due() -> None:
    ae = AntiEntropy(OPTS)
    assert ae.rebuild_due(0.0)
    ae.rebuilt({}, now=0.0)
    assert not ae.rebuild_due(OPTS.rebuild_every - 1)
    assert ae.rebuild_due(OPTS.rebuild_every)


counts = st.integers(0, 5)


@given(
    st.dictionaries(st.sampled_from(SIGS), counts, min_size=1),
    st.dictionaries(st.sampled_from(SIGS), counts),
    st.integers(1, 4),
)
def test_answers_are_bounded_sorted_and_never_go_to_an_asker_that_is_ahead(
    ours: dict[bytes, int], theirs: dict[bytes, int], answer_max: int
) -> None:
    options = AntiEntropyOptions(answer_max=answer_max)
    ae = policy_holding(*(state(s, c) for s, c in ours.items()), options=options)
    digest = wire.DigestMsg(
        entries=tuple(digest_entry(state(s, c, origin=b"B" * 16)) for s, c in theirs.items())
    )
    answer = ae.to_answer(digest, now=0.0)
    assert len(answer) <= answer_max
    assert answer == sorted(answer)
    for sig in answer:
        assert sig not in theirs or ours[sig] >= theirs[sig]
    for sig in set(ours) - set(theirs):
        assert sig in answer or len(answer) == answer_max, "lacking: answered unless full"
    again = ae.to_answer(digest, now=0.0)
    assert not set(again) & set(answer), "what was just answered is suppressed; the rest comes next"
