"""Gossipsub v1.1 peer scoring, as errmesh sets it, and validation's third answer.

py-libp2p leaves scoring at all weights 0 and every threshold at minus
infinity (scoring off). errmesh turns on the two signals it can trust:

- **P4, invalid messages** (weight 1 per message, counted per topic, capped
  at 100, decaying ×0.99 per 1 s heartbeat, so halved in ~70 s). A frame
  that fails our validator (``node.admission``: bad MAC, malformed, forged
  sender) costs its forwarder 1.
- **P5, behaviour** (weight 1 past a threshold of 5, ×0.9 per heartbeat):
  py-libp2p's own penalties for GRAFT floods, IWANT/IHAVE spam and
  equivocation.

and leaves P1-P3 (mesh time and deliveries: our topics are quiet, so an
honest relay would look idle), P6 and P7 (IP colocation: a host's CLIs and
its relay share an address, and so do fleets behind NAT) at 0.

The thresholds are ordered so that the relay's own ban comes first: a
connection is banned after 20 refused frames (``mesh.relay_policy``), at a
score of -20. Below -10 a peer gets no IHAVE gossip from us and we take
none from it; below -30 its messages are dropped before validation and we
publish nothing to it; below -50 its RPCs are ignored (graylisted). Peer
exchange is not used (``accept_px_threshold`` 10).

**Reject or ignore.** A frame of a newer wire version or an unknown kind
(``unknown-version``, ``unknown-kind``: a peer upgraded before us, as the
wire's version rule allows) is *ignored*: not delivered, not forwarded, not
penalised and not counted toward a ban. py-libp2p's validators answer only
yes or no, so the one "no" that must not cost the forwarder is marked and
the scorer's ``on_invalid_message`` skips it (:func:`install`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["IGNORED_REASONS", "ScoringOptions", "Verdict", "install", "score_params"]

#: What a validator may answer: deliver, refuse and penalise, or drop quietly.
Verdict = Literal["accept", "reject", "ignore"]

#: Rejection reasons that mean "from a newer peer", not "from an attacker".
IGNORED_REASONS = frozenset({"unknown-version", "unknown-kind"})


@dataclass(frozen=True, slots=True, kw_only=True)
class ScoringOptions:
    invalid_weight: float = 1.0
    invalid_cap: float = 100.0
    invalid_decay: float = 0.99
    behaviour_weight: float = 1.0
    behaviour_threshold: float = 5.0
    behaviour_decay: float = 0.9
    gossip_threshold: float = -10.0
    publish_threshold: float = -30.0
    graylist_threshold: float = -50.0
    accept_px_threshold: float = 10.0


def score_params(options: ScoringOptions | None = None) -> Any:
    """py-libp2p's ``ScoreParams`` for ``options`` (the defaults above)."""
    from libp2p.pubsub.score import ScoreParams, TopicScoreParams

    o = options or ScoringOptions()
    return ScoreParams(
        p4_invalid_messages=TopicScoreParams(
            weight=o.invalid_weight, cap=o.invalid_cap, decay=o.invalid_decay
        ),
        p5_behavior_penalty_weight=o.behaviour_weight,
        p5_behavior_penalty_threshold=o.behaviour_threshold,
        p5_behavior_penalty_decay=o.behaviour_decay,
        gossip_threshold=o.gossip_threshold,
        publish_threshold=o.publish_threshold,
        graylist_threshold=o.graylist_threshold,
        accept_px_threshold=o.accept_px_threshold,
    )


class _Marks:
    """What the last validation answered: "ignore" spares the forwarder."""

    ignoring = False


def install(scorer: Any) -> Callable[[bool], None]:
    """Make ``scorer`` skip the penalty of a message a validator ignored.

    Returns ``mark(ignoring)``, which the topic validator calls with every
    answer. Safe on trio's one thread: py-libp2p calls ``on_invalid_message``
    (once per topic) right after a synchronous validator's "no", with no
    checkpoint in between, and the next validation sets the mark afresh.
    """
    marks = _Marks()
    penalise = scorer.on_invalid_message

    def on_invalid_message(peer: Any, topic: str) -> None:
        if not marks.ignoring:
            penalise(peer, topic)

    def mark(ignoring: bool) -> None:
        marks.ignoring = ignoring

    scorer.on_invalid_message = on_invalid_message
    return mark
