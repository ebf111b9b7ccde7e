"""A simulated GitHub, with the rules ``github_sink.github.GitHubSink`` keeps on it.

One issue tracker shared by every partition (GitHub is outside the mesh). A
leader's action is a request that takes ``latency`` seconds: it reads the
issues carrying the signature's marker when it starts and lands when it
ends, so two leaders (the sides of a partition) opening one signature within
that time both create an issue, as two real leaders would. The rules:

- **open**: an issue with the marker exists: adopt the lowest-numbered one
  (its shown total); else create one, numbered after every other.
- **every action** first reconciles: the other open issues carrying the
  marker are closed as duplicates of the lowest-numbered one.
- **update**: comment the new total on the kept issue, unless it already
  shows as much (another leader's comment): then adopt what it shows.
- **reopen**: a closed kept issue is reopened with the new total.

Every request that changes GitHub is a :class:`Write`, attributed to the
``(peer, term)`` that sent it, for the checker; nobody closes issues by hand.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from mesh.bundling import Action, OpenIssue, ReopenIssue, UpdateIssue, effective_severity
from mesh.sigstate import IssueLink

__all__ = ["Issue", "Request", "SimSink", "SinkDown", "Write"]


class SinkDown(Exception):
    """GitHub answered 5xx or timed out: the action stays due."""


@dataclass(slots=True)
class Issue:
    number: int
    signature: bytes
    state: Literal["open", "closed"]
    #: The total the issue's body or latest comment shows.
    shown: int


@dataclass(frozen=True, slots=True)
class Write:
    """One change GitHub saw: when it landed, who sent it, in which term."""

    started: float
    landed: float
    peer: int
    term: int
    what: str
    signature: bytes
    number: int
    total: int


@dataclass(slots=True)
class Request:
    """An action in flight: what its sender knew when it started."""

    action: Action
    peer: int
    term: int
    started: float
    wall: float
    found: tuple[int, ...]
    link: IssueLink | None = None


@dataclass
class SimSink:
    latency: float
    up: bool = True
    issues: dict[int, Issue] = field(default_factory=dict)
    writes: list[Write] = field(default_factory=list)
    _by_sig: dict[bytes, list[int]] = field(default_factory=dict)

    def marked(self, signature: bytes) -> list[Issue]:
        """The issues carrying ``signature``'s marker, lowest number first."""
        return [self.issues[n] for n in self._by_sig.get(signature, ())]

    def open_issues(self, signature: bytes) -> list[Issue]:
        return [i for i in self.marked(signature) if i.state == "open"]

    def start(self, action: Action, *, peer: int, term: int, now: float, wall: float) -> Request:
        """Send the request; raises :class:`SinkDown` while GitHub is down."""
        if not self.up:
            raise SinkDown("simulated 5xx")
        found = tuple(self._by_sig.get(action.state.signature, ()))
        return Request(action, peer, term, now, wall, found)

    def finish(self, req: Request, now: float) -> IssueLink:
        """GitHub answers at ``now``: carry the request out, return the link to record."""
        state = req.action.state
        sig = state.signature
        if isinstance(req.action, OpenIssue) and not req.found:
            number = max(self.issues, default=0) + 1
            self.issues[number] = Issue(number, sig, "open", state.total)
            self._by_sig.setdefault(sig, []).append(number)
            self._write(req, now, "open", number, state.total)
            return self._link(req, self.issues[number], now)
        kept = self._reconcile(req, now)
        if isinstance(req.action, UpdateIssue) and kept.state == "open":
            if kept.shown < state.total:
                kept.shown = state.total
                self._write(req, now, "update", kept.number, state.total)
        elif isinstance(req.action, ReopenIssue) and kept.state == "closed":
            kept.state, kept.shown = "open", state.total
            self._write(req, now, "reopen", kept.number, state.total)
        return self._link(req, kept, now)

    def _reconcile(self, req: Request, now: float) -> Issue:
        found = self.marked(req.action.state.signature)
        kept = found[0]
        for other in found[1:]:
            if other.state == "open":
                other.state = "closed"
                self._write(req, now, "close-duplicate", other.number, other.shown)
        return kept

    def _write(self, req: Request, now: float, what: str, number: int, total: int) -> None:
        sig = req.action.state.signature
        self.writes.append(Write(req.started, now, req.peer, req.term, what, sig, number, total))

    def _link(self, req: Request, issue: Issue, now: float) -> IssueLink:
        state = req.action.state
        return IssueLink(
            ref=f"sim#{issue.number}",
            number=issue.number,
            url=f"https://sim.invalid/issues/{issue.number}",
            state=issue.state,
            term=req.term,
            synced_total=issue.shown,
            synced_at=req.wall + (now - req.started),
            severity=effective_severity(state),
        )
