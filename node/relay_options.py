"""How a relay takes part: its topics, keys, role and timings (``node.compose.peer_options``)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mesh import defaults
from mesh.antientropy import AntiEntropyOptions
from mesh.election import Election, ElectionConfig
from mesh.relay_policy import RelayOptions

if TYPE_CHECKING:
    from github_sink.sink import Sink
    from mesh.store import Store

__all__ = ["PeerOptions", "election_for"]


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


def election_for(
    me: str, options: PeerOptions, sink: Sink | None, now: float, store: Store
) -> Election:
    """Candidates need a sink; a restarted relay resumes at its store's highest term."""
    return Election(
        me=me,
        priority=options.priority,
        eligible=options.eligible and sink is not None,
        config=ElectionConfig(heartbeat=options.heartbeat),
        now=now,
        term=store.max_link_term(),
    )
