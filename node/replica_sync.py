"""This machine's issue folder kept in step with the replicated links.

A relay whose machine has a file-sink folder (``Replica``) shows there the
links the mesh agreed on, and sends what people changed there (``errmesh
issues close``) back as links. The folder is disk IO: it is read and written
in a worker thread, and a failure only logs (the folder is shown again from
the store later).
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import math
from collections.abc import Callable

import trio

from github_sink.errors import SinkError
from github_sink.sink import Replica
from mesh.sigstate import SigState
from mesh.store import Store

__all__ = ["ReplicaSync"]

log = logging.getLogger("errmesh.peer")


class ReplicaSync:
    def __init__(self, replica: Replica | None, store: Store, clock: Callable[[], float]) -> None:
        self.replica = replica
        self.store = store
        self.clock = clock

    async def mirror(self, states: list[SigState]) -> None:
        """Show replicated links in this machine's issue folder, off the loop."""
        if self.replica is None or not states:
            return
        try:
            await trio.to_thread.run_sync(
                functools.partial(self.replica.mirror, states, now=self.clock())
            )
        except SinkError as exc:  # the copy is shown again from the store later
            log.warning("cannot copy issues into this machine's folder: %s", exc)

    async def observe(self) -> tuple[list[SigState], list[SigState]]:
        """What people changed in the folder, as (states to show, states changed).

        Recorded as the leader's ``_observe`` records what it sees, in the
        link's term, but a hair later than the link rather than at our clock:
        a clock ahead of the leader's would make our link outlast the
        leader's next writes in that term.
        """
        if self.replica is None:
            return [], []
        try:
            changes = await trio.to_thread.run_sync(self.replica.changes)
        except SinkError as exc:
            log.warning("cannot read this machine's issue folder: %s", exc)
            return [], []
        states, changed = [], []
        for sig, shown in sorted(changes.items()):
            state = self.store.load_state(sig)
            if state is None or state.link is None:
                continue
            if state.link.state != shown:
                seen = dataclasses.replace(
                    state.link,
                    state=shown,
                    synced_at=math.nextafter(state.link.synced_at, math.inf),
                )
                state = self.store.set_link(sig, seen)
                changed.append(state)
            states.append(state)
        return states, changed
