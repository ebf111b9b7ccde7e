"""``/healthz``: whether this relay can do its job now, for systemd, load balancers, k8s.

Healthy means two things a restart could fix or a person must: the relay
listens for the mesh (it has addresses), and its store's directory takes a
write. The write is a real one (a few bytes, fsynced, removed) because a
full or read-only disk is what stops a relay in practice and the store
only notices at its next write. It runs in a worker thread with a timeout
so that a disk that hangs (a dead NFS server) answers 503 instead of
freezing the trio loop, and at most one probe runs at a time: a hung probe
is reported, not piled up.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Final

import trio

if TYPE_CHECKING:
    from node.relay import MeshPeer

__all__ = ["PROBE_TIMEOUT", "Health", "StoreProbe", "health"]

#: Seconds a write probe may take before the store counts as unwritable.
PROBE_TIMEOUT: Final = 2.0
PROBE_NAME: Final = ".healthz-probe"


@dataclass(frozen=True, slots=True)
class Health:
    """The answer: ``ok`` (200) or the reason it is not (503)."""

    ok: bool
    reason: str = ""

    @property
    def status(self) -> str:
        return "200 OK" if self.ok else "503 Service Unavailable"

    def body(self) -> bytes:
        answer = {"ok": True} if self.ok else {"ok": False, "reason": self.reason}
        return (json.dumps(answer) + "\n").encode()


def _write_probe(directory: Path) -> None:
    """Create, fsync and remove a small file; raises ``OSError`` when the disk refuses."""
    path = directory / PROBE_NAME
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, b"ok\n")
        os.fsync(fd)
    finally:
        os.close(fd)
        path.unlink(missing_ok=True)


class StoreProbe:
    """The write probe of one store directory, never two at once."""

    def __init__(self, directory: Path, timeout: float = PROBE_TIMEOUT) -> None:
        self.directory = directory
        self.timeout = timeout
        self._running = threading.Event()  # set while a probe's thread has not returned

    def _run(self) -> None:
        try:
            _write_probe(self.directory)
        finally:
            self._running.clear()

    async def check(self) -> str:
        """ "" when the directory took a write within the timeout, else why not."""
        if self._running.is_set():
            return f"store: the previous write probe of {self.directory} has not returned"
        self._running.set()
        try:
            with trio.move_on_after(self.timeout):
                await trio.to_thread.run_sync(  # type: ignore[call-arg,unused-ignore]
                    self._run, abandon_on_cancel=True
                )
                return ""
        except OSError as exc:
            return f"store: cannot write {self.directory}: {exc.strerror or exc}"
        return f"store: a write to {self.directory} took more than {self.timeout:g} s"


async def health(peer: MeshPeer, probe: StoreProbe) -> Health:
    """Listening and a writable store: healthy; otherwise the first reason."""
    if not peer.gossip.addrs:
        return Health(False, "mesh: not listening on any address")
    reason = await probe.check()
    return Health(not reason, reason)
