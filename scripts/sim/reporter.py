"""A machine without a relay: its failing CLIs report over the mesh and wait for an ack.

Each injected error is committed to this machine's spool first (its own
origin and cumulative count), then published as a ``report`` asking for
acks, through the relays it is configured with. Only an ack signed by one
of those relays deletes it from the spool (PROTOCOL section 12); without one
within ``ack_timeout`` the report stays for the next errmesh process, which
sends what is pending again (at most 16, oldest first). A lost ack therefore
means a duplicate report, which the receivers' ``(origin, seq)`` idempotence
must absorb.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mesh import wire
from mesh.report import Report
from mesh.severity import Severity
from scripts.sim.relay import T0
from scripts.sim.scheduler import stream
from scripts.sim.workload import Origin

if TYPE_CHECKING:
    from scripts.sim.simulation import Simulation

__all__ = ["SimReporter"]

#: Seconds a failing process waits for an ack, and reports it sends at most.
ACK_TIMEOUT = 2.0
SEND_MAX = 16


class SimReporter:
    def __init__(self, sim: Simulation, idx: int, node: int, relays: tuple[int, ...]) -> None:
        self.sim = sim
        self.node = node
        self.name = f"r{idx:05d}"
        self.origin = stream(sim.config.seed, "reporter-origin", idx).randbytes(16)
        self.relays = relays
        self.relay_names = frozenset(sim.relays[r].name for r in relays)
        self.wall_offset = stream(sim.config.seed, "reporter-clock", idx).gauss(0.0, 0.5)
        self.spool: dict[int, Report] = {}
        self.store = Origin(self.origin, self.name)
        self._retry_at = -1.0
        self._rng = stream(sim.config.seed, "reporter", idx)

    def commit(self, signature: bytes, severity: Severity) -> Report:
        report = self.store.report(signature, severity, T0 + self.sim.sched.now + self.wall_offset)
        self.spool[report.seq] = report
        self._send()
        return report

    def _send(self) -> None:
        """One failing process: publish what is pending, then wait for acks."""
        pending = [self.spool[seq] for seq in sorted(self.spool)[:SEND_MAX]]
        for i, report in enumerate(pending):
            self.sim.publish_report(self, wire.ReportMsg(report=report), delay=0.001 * i)
        self.sim.sched.after(ACK_TIMEOUT, self._check)

    def _check(self) -> None:
        """No ack in time: the report waits in the spool for the next process."""
        now = self.sim.sched.now
        if self.spool and self._retry_at < now:
            self._retry_at = now + self._rng.uniform(1.0, 8.0)
            self.sim.sched.at(self._retry_at, self._send)

    def acked(self, ack: wire.AckMsg) -> None:
        if ack.acker not in self.relay_names:
            return  # any other key holder could ack what it never stored
        for origin, seq in ack.ids:
            if origin == self.origin:
                self.spool.pop(seq, None)
