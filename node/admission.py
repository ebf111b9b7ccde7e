"""Which gossip a relay lets in: the validator, rejection counts and bans.

Runs inside gossipsub (a topic validator), so a refused message is neither
delivered nor forwarded. A signer whose messages keep being refused
(:data:`BAN_AFTER` of them) is banned: the relay drops its connections.
"""

from __future__ import annotations

import collections
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Final

from mesh import wire
from mesh.gossip import Validator

__all__ = ["BAN_AFTER", "RejectionCounter", "make_validator"]

#: Rejections from one signer before it is banned.
BAN_AFTER: Final = 20


@dataclass
class RejectionCounter:
    """Rejected messages by reason and by signer (for status and banning)."""

    by_reason: collections.Counter[str] = field(default_factory=collections.Counter)
    by_signer: collections.Counter[str] = field(default_factory=collections.Counter)
    banned: set[str] = field(default_factory=set)

    def add(self, reason: str, signer: str) -> int:
        self.by_reason[reason] += 1
        self.by_signer[signer] += 1
        return self.by_signer[signer]


def make_validator(
    key: bytes | None,
    rejections: RejectionCounter,
    on_ban: Callable[[str], None] | None = None,
) -> Validator:
    """The gossipsub validator: decodes under ``key``, checks the claimed sender.

    Never raises; a refused message is counted by its reason.
    """

    def validate(topic: str, signer: str, data: bytes) -> bool:
        decoded = wire.decode(data, key)
        reason = ""
        if isinstance(decoded, wire.Rejected):
            reason = decoded.reason
        elif _forged(decoded, signer):
            reason = "forged-sender"
        if not reason:
            return True
        count = rejections.add(reason, signer)
        if count % BAN_AFTER == 0 and on_ban is not None:  # every 20 refusals: (re)ban
            rejections.banned.add(signer)
            on_ban(signer)
        return False

    return validate


def _forged(msg: wire.Message, signer: str) -> bool:
    """Whether a message claims a sender, heartbeat peer or acker other than its signer."""
    if msg.sender and msg.sender != signer:
        return True
    if isinstance(msg, wire.AckMsg) and msg.acker and msg.acker != signer:
        return True
    return isinstance(msg, wire.HeartbeatMsg) and msg.heartbeat.peer != signer
