"""The relay's side of ``mesh.sync``: pulls and serves over direct libp2p streams.

Frames on a sync stream are the wire's own frames (``mesh.wire``, with
the cluster key's MAC), each after a 4-byte big-endian length; a length of
0 ends a side's part. The puller sends its digest (``digest`` messages,
the ranges of rule 1 of ``mesh.antientropy``) then 0; the server answers
with ``state`` messages then 0, and both close. A frame that does not
decode, or is of another kind, ends the session: nothing of it is merged.
A peer that does not speak the protocol (a js-libp2p peer, an older
relay) refuses the stream, and the round falls back to a digest on the
topic (``mesh.sync`` rule 6).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import trio

from mesh import wire
from mesh.errors import LocalError
from mesh.sigstate import SigState
from mesh.sync import SyncOptions, SyncSchedule, ahead, to_send, to_spread
from node.merging import signatures_of
from node.state_parts import state_messages

if TYPE_CHECKING:
    from node.relay import MeshPeer

__all__ = ["SyncStreams", "protocol_of"]

log = logging.getLogger("errmesh.sync")

#: Signatures loaded from the store between two yields to the relay's loop.
_LOAD_BATCH = 64
_FRAME_MAX = wire.MAX_MESSAGE


class SyncAborted(Exception):
    """A session ended early: the peer sent something that is not its part."""


def protocol_of(control_topic: str) -> str:
    """``/errmesh/<cluster>/sync/1`` beside ``/errmesh/<cluster>/control/1``."""
    base = control_topic.rsplit("/control/", 1)[0]
    return f"{base}/sync/1"


async def _read_exactly(stream: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = await stream.read(n - len(data))
        if not chunk:
            raise SyncAborted("the stream ended inside a frame")
        data += chunk
    return data


async def read_frame(stream: Any) -> bytes:
    """One frame's bytes; b"" for the end of the peer's part."""
    size = int.from_bytes(await _read_exactly(stream, 4), "big")
    if size > _FRAME_MAX:
        raise SyncAborted(f"a frame of {size} bytes (at most {_FRAME_MAX})")
    return await _read_exactly(stream, size) if size else b""


async def write_frame(stream: Any, frame: bytes) -> None:
    await stream.write(len(frame).to_bytes(4, "big") + frame)


class SyncStreams:
    """Starts the pulls ``SyncSchedule`` asks for and serves the peers' pulls."""

    def __init__(self, peer: MeshPeer, options: SyncOptions | None = None) -> None:
        self.peer = peer
        self.schedule = SyncSchedule(options or SyncOptions())
        self.protocol = protocol_of(peer.options.control_topic)
        self._wanted_send, self._wanted = trio.open_memory_channel[str](64)

    # -- pulling ------------------------------------------------------------

    def heard(self, sender: str) -> None:
        """A heartbeat from ``sender``: maybe pull from it (``mesh.sync`` rule 1)."""
        direct = sender in self.peer.gossip.peers()
        self._maybe_pull(sender, self.schedule.heard(sender, trio.current_time(), direct=direct))

    def connected(self, peer: str) -> None:
        """A direct connection to ``peer`` opened: pull from it if it is a relay."""
        bootstrap = peer in self.peer.gossip.bootstrap_peers
        now = trio.current_time()
        self._maybe_pull(peer, self.schedule.connected(peer, now, bootstrap=bootstrap))

    async def round(self) -> bool:
        """One anti-entropy round (``mesh.sync`` rule 6): True when it pulled
        from a peer; False when there was nobody to pull from or the pull failed."""
        target = self.schedule.round(self.peer.gossip.peers(), trio.current_time())
        if target is None:
            return False
        self.peer.stats["sync_rounds"] += 1
        return await self._pull_guarded(target)

    def _maybe_pull(self, peer: str, start: bool) -> None:
        if start:
            try:
                self._wanted_send.send_nowait(peer)
            except trio.WouldBlock:
                self.schedule.pulled(peer, trio.current_time(), ok=False)

    async def loop(self) -> None:
        """Run the pulls asked for, each in its own task."""
        self.peer.gossip.handle_streams(self.protocol, self.serve)
        async with trio.open_nursery() as nursery:
            async for sender in self._wanted:
                nursery.start_soon(self._pull_guarded, sender)

    async def _pull_guarded(self, sender: str) -> bool:
        ok = False
        try:
            with trio.move_on_after(self.schedule.options.timeout):
                await self.pull(sender)
                ok = True
        except Exception as exc:  # refused, gone, or a bad frame: retried later
            log.debug("sync from %s failed: %s: %s", sender, type(exc).__name__, exc)
            self.peer.stats["sync_failed"] += 1
        finally:
            self.schedule.pulled(sender, trio.current_time(), ok=ok)
        return ok

    async def pull(self, sender: str) -> int:
        """Send our digest to ``sender``, merge the states it answers, spread
        the joins nobody holds yet (``mesh.sync`` rule 8); returns how many merged."""
        peer = self.peer
        await peer.refresh_entries()
        stream = await peer.gossip.open_stream(sender, self.protocol)
        pulled: list[SigState] = []
        try:
            for digest in peer.antientropy.digest():
                await write_frame(stream, wire.encode(digest, peer.keys.current))
            await write_frame(stream, b"")
            while frame := await read_frame(stream):
                msg = wire.decode(frame, peer.keys.accepted)
                if not isinstance(msg, wire.StateMsg):
                    raise SyncAborted(f"expected a state message, got {_what(msg)}")
                await peer.apply([(msg, sender)])
                pulled.extend(msg.states)
        finally:
            await _close(stream)
        peer.stats["sync_pulls"] += 1
        peer.stats["sync_states_pulled"] += len(pulled)
        spread = to_spread(pulled, peer.antientropy.entries)
        if spread:
            await peer.spread(spread)
        return len(pulled)

    # -- serving ------------------------------------------------------------

    async def serve(self, stream: Any) -> None:
        """A peer's pull: read its digest, send what it lacks (``mesh.sync`` rule 4)."""
        try:
            puller = str(stream.muxed_conn.peer_id.to_base58())
        except Exception:
            puller = "?"
        if not self.schedule.may_serve(puller, trio.current_time()):
            self.peer.stats["sync_refused"] += 1
            await _reset(stream)
            return
        completed = False
        try:
            with trio.move_on_after(self.schedule.options.timeout):
                sent = await self._serve(stream, puller)
                completed = True
                self.peer.stats["sync_served"] += 1
                self.peer.stats["sync_states_served"] += sent
        except Exception as exc:  # the puller's mistake or its departure: not ours
            log.debug("sync to %s ended: %s: %s", puller, type(exc).__name__, exc)
            self.peer.stats["sync_aborted"] += 1
        finally:
            self.schedule.served(puller, trio.current_time(), completed=completed)
            await _close(stream) if completed else await _reset(stream)

    async def _serve(self, stream: Any, puller: str) -> int:
        peer = self.peer
        digests: list[wire.DigestMsg] = []
        while frame := await read_frame(stream):
            msg = wire.decode(frame, peer.keys.accepted)
            if not isinstance(msg, wire.DigestMsg):
                raise SyncAborted(f"expected a digest message, got {_what(msg)}")
            digests.append(msg)
            if len(digests) > self.schedule.options.max_digest_frames:
                raise SyncAborted("a digest of too many frames")
        await peer.refresh_entries()
        wanted = to_send(peer.antientropy.entries, digests)
        if ahead(peer.antientropy.entries, digests):
            self._maybe_pull(puller, self.schedule.ahead(puller, trio.current_time()))
        sent = 0
        for start in range(0, len(wanted), _LOAD_BATCH):
            states = peer.answerable(wanted[start : start + _LOAD_BATCH])
            for msg in state_messages(states):
                try:
                    frame = wire.encode(msg, peer.keys.current)
                except LocalError as exc:  # cannot be sent: blame its signatures, send the rest
                    peer.faults.fault("answer", exc, signatures_of(msg))
                    continue
                await write_frame(stream, frame)
            sent += len(states)
            await trio.lowlevel.checkpoint()
        await write_frame(stream, b"")
        return sent


def _what(msg: object) -> str:
    return msg.reason if isinstance(msg, wire.Rejected) else type(msg).__name__


async def _close(stream: Any) -> None:
    try:
        with trio.move_on_after(2):
            await stream.close()
    except Exception:
        pass


async def _reset(stream: Any) -> None:
    try:
        with trio.move_on_after(2):
            await stream.reset()
    except Exception:
        pass
