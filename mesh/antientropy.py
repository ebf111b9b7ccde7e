"""Anti-entropy without a network: which digests to send, which differences to answer.

A relay keeps one digest entry per signature (``mesh.sigstate.summary`` of
its stored state) and exchanges digests with the mesh; a peer that knows
more about a signature answers with its state, which the other merges
(DESIGN section 5, PROTOCOL "digest and state"). This module decides; the
relay (``node.relay.MeshPeer``) feeds it what happened and carries out what
it says. No clock, no IO: every input carries ``now`` (a monotonic clock,
seconds), and the answer delay comes from an injected ``random.Random``.

Rules
=====

1. **What a digest holds.** Every signature this peer holds, sorted, in
   messages of ``digest_batch`` entries; each message names the range it
   covers (``after`` exclusive, ``until`` inclusive, empty for open ends),
   so a signature in the range that the sender did not list is one it lacks.
2. **A difference is answered** when the asker lacks the signature, or (with
   fingerprints) their fingerprints differ and we are not behind it: our
   total is at least the asker's, or our link is newer. A sender ahead by
   total gets nothing now: it answers *our* digest, and once we hold the
   join we answer its next one. An entry without a fingerprint (an older
   peer) differs when our total or link is ahead.
3. **Suppression.** An answer goes to the whole topic, so a signature
   answered in the last ``answer_quiet`` seconds (by us or by another relay:
   :meth:`AntiEntropy.heard_answer`) is not answered again, provided that
   answer carried what we hold (its state's fingerprint is our entry's). An
   answer with another state, an older one most often (a relay behind us
   answering a third's digest), spares nothing: suppressing by signature
   alone let two relays whose digest phases were close keep the older
   state's answer ahead of the newer one for ever (the simulation's F1).
4. **Young differences wait.** A signature whose entry changed here less
   than ``answer_young`` seconds ago is left unanswered: what changed ours
   is most likely still on its way to the asker. It is answered anyway once
   it has waited ``answer_defer_max``, so one that changes all the time is
   still repaired.
5. **Bounded answers.** At most ``answer_max`` signatures per answer; the
   next digest draws the rest. Before answering, a relay waits a random
   ``[0, answer_jitter)`` (:meth:`AntiEntropy.answer_delay`) so that one
   relay's answer can reach the others and spare theirs (scalable reliable
   multicast's suppression).
6. **The entries stay current** by :meth:`AntiEntropy.note` on every write
   the relay makes, and are rebuilt from the store every ``rebuild_every``
   seconds (:meth:`AntiEntropy.rebuild_due`, :meth:`AntiEntropy.rebuilt`),
   so a digest never decodes the whole aggregate.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from mesh import defaults, wire
from mesh.sigstate import SigState, state_fingerprint, summary

__all__ = [
    "AntiEntropy",
    "AntiEntropyOptions",
    "differs",
    "digest_entry",
    "digest_messages",
    "in_range",
]


#: Entries per digest message (rule 1).
DIGEST_BATCH: Final = defaults.DIGEST_BATCH


@dataclass(frozen=True, slots=True, kw_only=True)
class AntiEntropyOptions:
    """The timings of the rules above (seconds), and the batch bounds."""

    answer_max: int = 1024
    answer_quiet: float = 2.0
    answer_young: float = 1.0
    answer_defer_max: float = 5.0
    answer_jitter: float = 0.2
    digest_batch: int = DIGEST_BATCH
    rebuild_every: float = 600.0


def digest_entry(state: SigState) -> wire.DigestEntry:
    """``mesh.sigstate.summary`` as a wire record (every number in it is
    bounded: totals saturate, terms stop at the ceiling; see ``mesh.bounds``)."""
    return wire.DigestEntry(**summary(state)._asdict())


def digest_messages(
    entries: Mapping[bytes, wire.DigestEntry], batch: int = DIGEST_BATCH
) -> list[wire.DigestMsg]:
    """Rule 1: a digest of ``entries`` in batches, each naming its range."""
    sigs = sorted(entries)
    out = []
    after = b""
    for start in range(0, max(1, len(sigs)), batch):
        chunk = sigs[start : start + batch]
        last = start + batch >= len(sigs)
        until = b"" if last else chunk[-1]
        out.append(
            wire.DigestMsg(entries=tuple(entries[sig] for sig in chunk), after=after, until=until)
        )
        after = until
    return out


def differs(mine: wire.DigestEntry, theirs: wire.DigestEntry | None) -> bool:
    """Rule 2: whether the asker of ``theirs`` should get our state."""
    if theirs is None:
        return True
    link_ahead = (mine.link_term, mine.link_synced_total) > (
        theirs.link_term,
        theirs.link_synced_total,
    )
    if theirs.fingerprint and mine.fingerprint:
        return theirs.fingerprint != mine.fingerprint and (mine.total >= theirs.total or link_ahead)
    return mine.total > theirs.total or link_ahead


def in_range(sig: bytes, msg: wire.DigestMsg) -> bool:
    """Rule 1: whether ``msg`` covers ``sig`` (so a signature it does not list is one it lacks)."""
    return not ((msg.after and sig <= msg.after) or (msg.until and sig > msg.until))


class AntiEntropy:
    """One relay's digest entries and answer bookkeeping (the rules above)."""

    def __init__(
        self, options: AntiEntropyOptions = AntiEntropyOptions(), rng: random.Random | None = None
    ) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self.entries: dict[bytes, wire.DigestEntry] = {}
        self._built_at = -math.inf
        #: signature -> (when answered, the fingerprint the answer carried)
        self._answered: dict[bytes, tuple[float, bytes]] = {}
        self._changed_at: dict[bytes, float] = {}
        self._deferred_since: dict[bytes, float] = {}

    # -- inputs --

    def note(self, states: Iterable[SigState], now: float) -> None:
        """Rule 6: our store now holds ``states``; a changed entry is young (rule 4)."""
        for state in states:
            entry = digest_entry(state)
            if self.entries.get(state.signature) != entry:
                self._changed_at[state.signature] = now
            self.entries[state.signature] = entry

    def rebuilt(self, entries: dict[bytes, wire.DigestEntry], now: float) -> None:
        """Rule 6: the entries as read back from the whole store."""
        self.entries = entries
        self._built_at = now

    def heard_answer(self, states: Iterable[SigState], now: float) -> None:
        """Rule 3: a ``state`` message with ``states`` went to everybody;
        ours repeats it where it carries the same state."""
        for state in states:
            self._answered[state.signature] = (now, state_fingerprint(state))

    # -- decisions --

    def rebuild_due(self, now: float) -> bool:
        return now - self._built_at >= self.options.rebuild_every

    def digest(self) -> list[wire.DigestMsg]:
        return digest_messages(self.entries, self.options.digest_batch)

    def answer_delay(self) -> float:
        """Rule 5: how long to wait before answering the digests that came."""
        return self._rng.uniform(0.0, self.options.answer_jitter)

    def unanswered(self, signatures: Iterable[bytes], now: float) -> list[bytes]:
        """Rule 3 for states we would publish unasked (``mesh.sync`` rule 8): those
        not sent with the state we hold in the last ``answer_quiet`` seconds; the
        rest count as answered from ``now``."""
        out = []
        for sig in sorted(set(signatures)):
            entry = self.entries.get(sig)
            if entry is None or self._recently_sent(sig, now):
                continue
            self._answered[sig] = (now, entry.fingerprint)
            out.append(sig)
        return out

    def _recently_sent(self, sig: bytes, now: float) -> bool:
        """Rule 3: our state of ``sig`` went to the topic less than ``answer_quiet`` ago."""
        answered = self._answered.get(sig)
        return (
            answered is not None
            and now - answered[0] < self.options.answer_quiet
            and answered[1] == self.entries[sig].fingerprint
        )

    def to_answer(self, msg: wire.DigestMsg, now: float) -> list[bytes]:
        """The signatures whose states answer ``msg`` (rules 1-5), sorted.

        They count as answered from ``now`` (rule 3): the caller sends them,
        or, if it cannot read one, lets the next digest ask again.
        """
        opts = self.options
        theirs = {e.signature: e for e in msg.entries}
        wanted: list[bytes] = []
        for sig in sorted(self.entries):
            if not in_range(sig, msg):
                continue
            if self._recently_sent(sig, now):
                continue
            if now - self._changed_at.get(sig, -math.inf) < opts.answer_young:
                since = self._deferred_since.setdefault(sig, now)
                if now - since < opts.answer_defer_max:
                    continue
            self._deferred_since.pop(sig, None)
            if differs(self.entries[sig], theirs.get(sig)):
                wanted.append(sig)
                if len(wanted) >= opts.answer_max:
                    break
        for sig in wanted:
            self._answered[sig] = (now, self.entries[sig].fingerprint)
        return wanted
