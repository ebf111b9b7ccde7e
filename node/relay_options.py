"""How a relay takes part: its topics, keys, role and timings (``node.compose.peer_options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from mesh import defaults
from mesh.antientropy import AntiEntropyOptions
from mesh.relay_policy import RelayOptions

__all__ = ["PeerOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class PeerOptions:
    """How this durable peer takes part (``node.compose.peer_options`` fills it from a Config)."""

    reports_topic: str
    control_topic: str
    key: bytes | None = None
    eligible: bool = True
    priority: int = 0
    heartbeat: float = defaults.HEARTBEAT
    digest_every: float = defaults.DIGEST_EVERY
    status_path: Path | None = None
    #: Re-key the private network when the key file changes (``node.compose``).
    private_network: bool = False
    relay: RelayOptions = field(default_factory=RelayOptions)
    antientropy: AntiEntropyOptions = field(default_factory=AntiEntropyOptions)
