"""What a relay's heartbeat carries besides the election: where to dial it, and
what the mesh wrote to GitHub.

A heartbeat goes out every ``heartbeat`` seconds from every candidate, so
the write ledger (``mesh.write_ledger``) rides on it rather than on a
message of its own: it reaches every candidate, and so every future leader,
within a beat. It is sent when this relay's ledger changed since its last
beat (its own writes, or a peer's it had not heard) and every
``refresh_every`` beats otherwise, for relays that joined since; a ledger
with nothing in the hour adds no byte.

A writer killed between a write and its next beat takes that write's
record with it (at most the writes of half a second: one, at GitHub's
one-a-second pace); its own outbox keeps it for when it comes back.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from github_sink.sink import Paced, Sink
from mesh import wire
from mesh.election import Heartbeat
from mesh.write_ledger import WriteBucket, WriteLedger

__all__ = ["WritePace", "heartbeat_message"]

#: Beats between two sendings of an unchanged ledger (10 s at 0.5 s a beat).
REFRESH_EVERY = 20


def _unspecified(maddr: str) -> bool:
    """A wildcard listen address, which no other machine can dial."""
    return maddr.startswith(("/ip4/0.0.0.0/", "/ip6/::/"))


class WritePace:
    """Keeps the relay's write ledger and the sink's budget in step with the mesh.

    Only a sink paced against a shared limit (``github_sink.sink.Paced``:
    GitHub's) takes part; with any other, or none, heartbeats carry no
    ledger and heard ones are still kept, for a relay that starts leading
    with a GitHub sink after a restart.
    """

    def __init__(
        self,
        me: str,
        sink: Sink | None,
        clock: Callable[[], float],
        refresh_every: int = REFRESH_EVERY,
    ) -> None:
        self.ledger = WriteLedger(me)
        self._sink = sink if isinstance(sink, Paced) else None
        self._clock = clock
        self._refresh_every = refresh_every
        self._beats = 0
        self._changed = False

    def heard(self, buckets: tuple[WriteBucket, ...]) -> None:
        """A peer's ledger: join it, and give the budget the others' writes."""
        if not buckets:
            return
        now = self._clock()
        if self.ledger.merge(buckets, now):
            self._changed = True
            if self._sink is not None:
                self._sink.set_other_writes(self.ledger.others(now))

    def outgoing(self) -> tuple[WriteBucket, ...]:
        """The ledger to put on this beat, or () when it need not go."""
        now = self._clock()
        if self._sink is not None and self.ledger.record_own(self._sink.own_writes(), now):
            self._changed = True
        self._beats += 1
        if not self._changed and self._beats % self._refresh_every:
            return ()
        self._changed = False
        return self.ledger.buckets(now)


def heartbeat_message(
    heartbeat: Heartbeat, addrs: Sequence[str], max_addrs: int, pace: WritePace
) -> wire.HeartbeatMsg:
    """The beat as sent: dialable addresses only (a wildcard is no address)."""
    dialable = tuple(a for a in addrs if not _unspecified(a))
    return wire.HeartbeatMsg(
        heartbeat=heartbeat, addrs=dialable[:max_addrs], writes=pace.outgoing()
    )
