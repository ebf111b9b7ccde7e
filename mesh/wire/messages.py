"""The typed messages the codec carries, one dataclass per kind.

These are what the rest of errmesh builds and receives; the codec's tables
(:mod:`mesh.wire.schema`) say how each one looks as bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from mesh.election import Heartbeat
from mesh.report import Occurrence, Report
from mesh.sigstate import IssueLink, SigState
from mesh.write_ledger import WriteBucket


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMsg:
    """``report``: the full detail of one report (first sight on its origin).

    ``ack``: the publisher deletes the report from its spool only on an ack
    (a failing process). A relay publishing what it drained from its own
    spool has already committed it and asks for none: acks from every peer
    for every drained report were most of the mesh's traffic.
    """

    report: Report
    ack: bool = True
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OccMsg:
    """``occ``: cumulative counters, repeats coalesced per signature."""

    occurrences: tuple[Occurrence, ...]
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AckMsg:
    """``ack``: a durable peer (``acker``) has stored these ``(origin, seq)``."""

    ids: tuple[tuple[bytes, int], ...]
    acker: str = ""
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatMsg:
    """``hb``: an election heartbeat.

    ``addrs``: the sender's full multiaddrs, so that leader candidates can
    connect to each other directly (a killed leader is then noticed by its
    closed connection, not by a timeout). ``writes``: the sender's ledger of
    the mesh's GitHub writes in the last hour (``mesh.write_ledger``), when
    it changed or every few beats; empty otherwise.
    """

    heartbeat: Heartbeat
    addrs: tuple[str, ...] = ()
    writes: tuple[WriteBucket, ...] = ()
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueMsg:
    """``issue``: the leader announces where signatures' issues live."""

    links: tuple[tuple[bytes, IssueLink], ...]
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestEntry:
    """What a peer knows of one signature, for anti-entropy.

    A peer that knows more (a higher total, a newer link) answers with a
    ``state`` message. ``link_term``/``link_synced_total`` are -1 without a link.
    """

    signature: bytes
    total: int
    link_term: int
    link_synced_total: int
    #: ``mesh.sigstate.state_fingerprint`` (8 bytes), or empty from an older
    #: peer: it tells apart states with equal totals and links.
    fingerprint: bytes = b""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestMsg:
    """``digest``: an anti-entropy summary of the signatures in a range.

    The range is ``after < signature <= until`` (empty bounds are open), so
    a summary split over several messages still says what the sender lacks:
    a signature in the range but not in ``entries``.
    """

    entries: tuple[DigestEntry, ...]
    after: bytes = b""
    until: bytes = b""
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateMsg:
    """``state``: full per-signature states (digest answers, persistence)."""

    states: tuple[SigState, ...]
    sender: str = ""


Message: TypeAlias = ReportMsg | OccMsg | AckMsg | HeartbeatMsg | IssueMsg | DigestMsg | StateMsg
