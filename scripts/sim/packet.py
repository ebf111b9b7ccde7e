"""One published message as the simulated network carries it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from mesh import wire

__all__ = ["KINDS", "Packet", "kind_of"]

#: Message class -> the wire's kind name (PROTOCOL section 5).
KINDS: Final[dict[type, str]] = {
    wire.ReportMsg: "report",
    wire.OccMsg: "occ",
    wire.AckMsg: "ack",
    wire.HeartbeatMsg: "hb",
    wire.IssueMsg: "issue",
    wire.DigestMsg: "digest",
    wire.StateMsg: "state",
}
_CODES: Final = {kind: code for code, kind in enumerate(KINDS.values())}


def kind_of(msg: wire.Message) -> str:
    return KINDS[type(msg)]


@dataclass(frozen=True, slots=True)
class Packet:
    """``msg`` from node ``sender`` (peer id ``name``: libp2p's signed ``from``).

    ``key``: for a digest covering every signature, its (signature,
    fingerprint) pairs as one byte string, so that a receiver holding exactly
    those states can see it at once (``SimConfig.fast_digests``).
    """

    msg: wire.Message
    sender: int
    name: str
    kind: str
    key: bytes | None = None

    @property
    def code(self) -> int:
        return _CODES[self.kind]
