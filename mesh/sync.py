"""State transfer between two relays over a direct stream: when, and what. Pure.

Anti-entropy on the topic (``mesh.antientropy``) repairs what gossip lost,
a digest batch per round: a relay that joins a mesh holding 10,000
signatures needed ten rounds (30 s and more) to hold them all, and every
answer went to every relay. A relay that connects to another now *pulls*
from it over a stream of their own (``/errmesh/<cluster>/sync/1``,
PROTOCOL "sync"): it sends its digest, the other sends back every state it
holds that the digest lacks or holds differently, paced by the stream's
flow control, and nobody else hears either. This module decides; the relay
(``node.sync_stream``) carries it out.

Rules
=====

1. **When to pull.** From a relay to which we hold a direct connection,
   once per connection. A peer is known to be a relay when it is one of
   our bootstrap peers or we heard its heartbeat (observers send none, so
   an observer is pulled from as a bootstrap peer only); failing CLIs are
   peers too, and are never asked. The pull starts when the connection
   opens to a known relay (:meth:`SyncSchedule.connected`), or at the first
   heartbeat heard over a connection that opened before we knew
   (:meth:`SyncSchedule.heard`). A joiner's first pull is from its
   bootstrap relay; a relay back from a partition pulls from each relay it
   reconnects to; both sides of a new connection pull when both know the
   other, so the exchange is push-pull, as memberlist's is.
2. **A failed pull is retried** on a later heartbeat after ``retry_after``
   seconds, doubling to ``retry_max``; a pull that completed is not
   repeated until the connection closes and opens again.
3. **Bounded.** At most ``pulls_at_once`` pulls run; the others wait for
   a later heartbeat. A relay serves at most ``serves_at_once`` pulls, and
   one peer at most once every ``serve_every`` seconds; it refuses others
   at once (the puller retries, rule 2); a session that ended on a bad
   frame does not count toward ``serve_every``. The peers remembered are bounded
   (``max_peers``, least recently heard forgotten first).
4. **What is sent** (:func:`to_send`): every signature the server holds
   that falls in the range of one of the puller's digest messages and
   differs from the puller's entry by anti-entropy's rule 2
   (``mesh.antientropy.differs``): the puller lacks it, or holds another
   state and the server is not behind. No suppression and no delay: the
   answer goes to one peer, who asked for it.
5. **Bounds of a session.** The puller's digest is at most
   ``max_digest_frames`` frames; the session ends after ``timeout``
   seconds whatever is left (the next rounds repair the rest).
6. **Rounds.** Every ``digest_every`` seconds (and when its connections
   change) a relay pulls from one peer it holds a direct connection to,
   drawn at random (:meth:`SyncSchedule.round`), instead of sending its
   digest to the whole topic: each relay then sends one digest and answers
   about one per round whatever the fleet's size, where a digest to the
   topic reached, and was weighed by, every relay (O(N²) a round; the
   simulation's 1,000 relays spent 95% of their messages on digests). The
   draw is among known relays that are due (rule 2's backoff) and were not
   pulled from in the last ``serve_every + 1`` seconds (so rule 3 does not
   refuse it); with none, among connected peers not known to be relays (a
   relay that pulled from us, or that served us, is known: how observers,
   which send no heartbeat, find each other). A round with nobody to pull
   from, or whose pull fails (an older relay or a js-libp2p peer does not
   speak the protocol), sends its digest to the topic as before
   (``mesh.antientropy``), which every relay still answers.
7. **Push back.** A pull's digest that shows the puller ahead of the server
   on a signature (:func:`ahead`: the server would receive it were it to
   pull) makes the server pull from the puller in turn (:meth:`SyncSchedule.ahead`),
   so one session's pair ends up with the union, as memberlist's push-pull does.
8. **New joins spread.** A pulled state that merged into something other
   than itself (:func:`to_spread`: both sides knew something the other did
   not, as across a healed partition) is a state nobody holds yet: the
   puller publishes the join to the topic (with ``mesh.antientropy``'s
   suppression, so several relays that computed the same join send it
   once), so a heal is repaired in one flood rather than in log N rounds. A
   state the puller merely lacked (a joiner, a relay that missed a message)
   merges into itself and is not re-sent: the server's side holds it already.
"""

from __future__ import annotations

import math
import random
from collections import OrderedDict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from mesh import wire
from mesh.antientropy import differs, in_range
from mesh.sigstate import SigState, state_fingerprint

__all__ = ["SyncOptions", "SyncSchedule", "ahead", "to_send", "to_spread"]


@dataclass(frozen=True, slots=True, kw_only=True)
class SyncOptions:
    """The bounds and timings of the rules above (seconds)."""

    pulls_at_once: int = 2
    serves_at_once: int = 4
    serve_every: float = 2.0
    retry_after: float = 2.0
    retry_max: float = 60.0
    timeout: float = 60.0
    max_digest_frames: int = 256
    max_peers: int = 1024


def to_send(
    entries: Mapping[bytes, wire.DigestEntry], digests: Iterable[wire.DigestMsg]
) -> list[bytes]:
    """Rule 4: the signatures whose states answer the puller's digest, sorted."""
    theirs: dict[bytes, wire.DigestEntry] = {}
    ranges: list[wire.DigestMsg] = []
    for msg in digests:
        ranges.append(msg)
        theirs.update((e.signature, e) for e in msg.entries)
    return [
        sig
        for sig in sorted(entries)
        if any(in_range(sig, msg) for msg in ranges) and differs(entries[sig], theirs.get(sig))
    ]


def ahead(entries: Mapping[bytes, wire.DigestEntry], digests: Iterable[wire.DigestMsg]) -> bool:
    """Rule 7: whether the puller's digest holds a signature the server would pull."""
    return any(
        differs(theirs, entries.get(theirs.signature)) for msg in digests for theirs in msg.entries
    )


def to_spread(pulled: Iterable[SigState], entries: Mapping[bytes, wire.DigestEntry]) -> list[bytes]:
    """Rule 8: the pulled signatures whose entry here, after the merge, is not the state sent."""
    return sorted(
        {
            state.signature
            for state in pulled
            if (entry := entries.get(state.signature)) is not None
            and entry.fingerprint != state_fingerprint(state)
        }
    )


@dataclass(slots=True)
class _Peer:
    relay: bool = False
    pulled: bool = False
    due_at: float = -math.inf
    backoff: float = 0.0
    served_at: float = -math.inf
    pulled_at: float = -math.inf


class SyncSchedule:
    """Which pulls to start and which to serve (rules 1-3); no clock, no IO."""

    def __init__(
        self, options: SyncOptions = SyncOptions(), rng: random.Random | None = None
    ) -> None:
        self.options = options
        self._rng = rng or random.Random()
        self._peers: OrderedDict[str, _Peer] = OrderedDict()
        self.pulling: set[str] = set()
        self.serving = 0

    def _peer(self, peer: str) -> _Peer:
        found = self._peers.get(peer)
        if found is None:
            found = self._peers[peer] = _Peer()
            while len(self._peers) > self.options.max_peers:
                self._peers.popitem(last=False)
        self._peers.move_to_end(peer)
        return found

    # -- pulling --

    def connected(self, peer: str, now: float, *, bootstrap: bool) -> bool:
        """A direct connection to ``peer`` opened: True to pull from it now (rule 1)."""
        state = self._peer(peer)
        state.relay = state.relay or bootstrap
        state.pulled = False
        state.due_at = -math.inf
        state.backoff = 0.0
        return self._start(peer, state, now)

    def heard(self, peer: str, now: float, *, direct: bool) -> bool:
        """A heartbeat from ``peer``: True to start a pull from it now."""
        state = self._peer(peer)
        state.relay = True
        return direct and self._start(peer, state, now)

    def ahead(self, peer: str, now: float) -> bool:
        """Rule 7: ``peer``'s pull showed it ahead of us; True to pull from it now."""
        state = self._peer(peer)
        state.relay = True
        return self._start(peer, state, now, again=True)

    def round(self, connected: Iterable[str], now: float) -> str | None:
        """Rule 6: the peer to pull from in this round, or None (then, unless a
        pull is running, the round's digest goes to the topic)."""
        if len(self.pulling) >= self.options.pulls_at_once:
            return None
        recent = self.options.serve_every + 1.0
        due: dict[bool, list[str]] = {True: [], False: []}
        for peer in sorted(set(connected)):
            state = self._peers.get(peer) or _Peer()
            if peer in self.pulling or now < state.due_at or now - state.pulled_at < recent:
                continue
            due[state.relay].append(peer)
        pick = due[True] or due[False]
        if not pick:
            return None
        peer = self._rng.choice(pick)
        self._peer(peer)
        self.pulling.add(peer)
        return peer

    def _start(self, peer: str, state: _Peer, now: float, *, again: bool = False) -> bool:
        if not state.relay or (state.pulled and not again) or now < state.due_at:
            return False
        if peer in self.pulling or len(self.pulling) >= self.options.pulls_at_once:
            return False
        self.pulling.add(peer)
        return True

    def pulled(self, peer: str, now: float, *, ok: bool) -> None:
        """A pull from ``peer`` ended; a failed one is retried later (rule 2)."""
        self.pulling.discard(peer)
        state = self._peer(peer)
        if ok:
            state.relay = state.pulled = True  # it served us: a relay (rule 6)
            state.backoff = 0.0
            state.pulled_at = now
            return
        opts = self.options
        state.backoff = min(opts.retry_max, max(opts.retry_after, state.backoff * 2))
        state.due_at = now + state.backoff

    # -- serving --

    def may_serve(self, peer: str, now: float) -> bool:
        """Rule 3: True, and counted as serving, when ``peer``'s pull may be served."""
        state = self._peer(peer)
        state.relay = True  # only relays pull (rule 6)
        if self.serving >= self.options.serves_at_once:
            return False
        if now - state.served_at < self.options.serve_every:
            return False
        self.serving += 1
        return True

    def served(self, peer: str, now: float, *, completed: bool) -> None:
        """A session ended; a completed one holds ``peer``'s next off (rule 3).

        Only the completed ones count: answering is what costs (every state
        read and sent), and a session that ended on a bad frame cost a frame.
        """
        self.serving = max(0, self.serving - 1)
        if completed:
            self._peer(peer).served_at = now
