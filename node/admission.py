"""Which gossip a relay lets in: the validator, rejection counts and bans.

Runs inside gossipsub (a topic validator), so a refused message is neither
delivered nor forwarded. A signer whose messages keep being refused
(:data:`BAN_AFTER` of them) is banned: the relay drops its connections. Counting and
the ban decision are ``mesh.relay_policy.Rejections``.
"""

from __future__ import annotations

from collections.abc import Callable

from mesh import wire
from mesh.gossip import Validator
from mesh.relay_policy import BAN_AFTER, Rejections
from mesh.scoring import IGNORED_REASONS, Verdict

__all__ = ["BAN_AFTER", "RejectionCounter", "make_validator"]

#: The rejection counts and ban decisions live in the sans-IO relay policy.
RejectionCounter = Rejections


def make_validator(
    key: wire.Keys | Callable[[], wire.Keys],
    rejections: Rejections,
    on_ban: Callable[[str], None] | None = None,
) -> Validator:
    """The gossipsub validator: decodes under ``key``, checks the claimed sender.

    ``key`` may be a callable returning the keys accepted now (a relay whose
    key file is rotated, ``node.keyfile.KeyWatch``). Never raises; a refused
    message is counted by its reason.
    """
    keys = key if callable(key) else (lambda: key)

    def validate(topic: str, signer: str, forwarder: str, data: bytes) -> bool | Verdict:
        decoded = wire.decode(data, keys())
        reason = ""
        if isinstance(decoded, wire.Rejected):
            reason = decoded.reason
        elif _forged(decoded, signer):
            reason = "forged-sender"
        if not reason:
            return True
        if reason in IGNORED_REASONS:  # a newer peer's frame: no penalty, no ban
            rejections.by_reason[reason] += 1
            return "ignore"
        # Counted, and banned, by the connection that delivered it: a fresh
        # signer per frame still comes over one connection (mesh/gate.py).
        if rejections.refuse(reason, forwarder) and on_ban is not None:
            on_ban(forwarder)
        return False

    return validate


def _forged(msg: wire.Message, signer: str) -> bool:
    """Whether a message claims a sender, heartbeat peer or acker other than its signer."""
    if msg.sender and msg.sender != signer:
        return True
    if isinstance(msg, wire.AckMsg) and msg.acker and msg.acker != signer:
        return True
    return isinstance(msg, wire.HeartbeatMsg) and msg.heartbeat.peer != signer
