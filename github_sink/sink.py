"""What every sink (files, GitHub) offers the leader.

The pure core decides *what* to do (``mesh.bundling.plan`` returns an
:data:`~mesh.bundling.Action`); a sink only knows *how*. Each method returns
the :class:`~mesh.sigstate.IssueLink` that the leader merges back into the
replicated aggregate, stamped with the leader's ``term``, so that every peer
learns where the issue is and what it last showed.

Sinks must be idempotent per signature: opening an issue for a signature
that already has one (a replay after a crash, a second leader during a
partition) finds and updates it instead of creating another.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Final, Literal, Protocol, runtime_checkable

from mesh.bundling import Action, OpenIssue, ReopenIssue, UpdateIssue
from mesh.sigstate import IssueLink, SigState

__all__ = [
    "REQUEST_KINDS",
    "REQUEST_STATUSES",
    "FollowUps",
    "IssueState",
    "Metered",
    "Numbering",
    "Paced",
    "Replica",
    "Sink",
    "SinkUsage",
    "execute",
]

IssueState = Literal["open", "closed"]


class Sink(Protocol):
    """The transport for the leader's decisions."""

    name: str

    def open_issue(self, state: SigState, *, now: float, term: int) -> IssueLink:
        """Create (or find by marker) the issue of ``state.signature``."""
        ...

    def update_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        """Show new counts and hosts on an open issue."""
        ...

    def reopen_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        """Reopen a closed issue as a regression and show the new counts."""
        ...

    def observe(self, signatures: Iterable[bytes]) -> dict[bytes, IssueState]:
        """The current state of these signatures' issues, as people left them."""
        ...

    def set_gate(self, gate: Callable[[], bool]) -> None:
        """Write only while ``gate()`` is true: a relay passes "I still lead", so
        a leader deposed in the middle of a round stops writing at once."""
        ...


@runtime_checkable
class FollowUps(Protocol):
    """A sink with work that outlives one action (draft PRs, hand-overs to a fixer)."""

    def follow_up(self, *, now: float, term: int, load: Callable[[bytes], SigState | None]) -> int:
        """Advance due follow-up jobs; returns how many steps ran."""
        ...


@runtime_checkable
class Paced(Protocol):
    """A sink whose writes count against a limit every leader shares (GitHub's, per token).

    The relay gossips what each leader wrote (``mesh.write_ledger``), so the
    next leader's pace counts the writes of the ones before it. Called from
    the relay's loop while a round may run on a worker thread: both sides
    hand over whole tuples.
    """

    def own_writes(self) -> tuple[float, ...]:
        """Send times of this process's writes within the hour, oldest first."""
        ...

    def set_other_writes(self, times: tuple[float, ...]) -> None:
        """The other leaders' writes, as send times; replaces the last ones."""
        ...


@runtime_checkable
class Numbering(Protocol):
    """A sink that numbers its issues itself (files); GitHub numbers its own.

    In a mesh every leader must continue one numbering: a leader allocates
    above the highest number in the replicated links (``number_above``), and
    when two signatures claim one number (two leaders in a partition, an old
    leader's late write) the leader gives the losers new numbers
    (``collisions`` then ``renumber``; the rule is DECISIONS 36).
    """

    def number_above(self, floor: int) -> None:
        """Allocate new numbers above ``floor`` (the replicated links' highest)."""
        ...

    def collisions(self) -> list[tuple[bytes, int]]:
        """Signatures whose issue number (given) belongs to another signature."""
        ...

    def renumber(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        """Give ``state``'s issue a fresh number."""
        ...


@runtime_checkable
class Replica(Protocol):
    """A relay's own copy of the sink's issues, kept from the replicated links.

    Every relay shows every issue (``errmesh issues list`` on any machine),
    and what people change in their copy (closing an issue) goes back into
    the mesh as a link.
    """

    def mirror(self, states: Iterable[SigState], *, now: float) -> int:
        """Show these states' links; returns how many issues changed."""
        ...

    def changes(self) -> dict[bytes, IssueState]:
        """Issues whose state people changed here since their last link."""
        ...


#: How a sink's requests are counted: reads and writes, by the class of their
#: answer (a bounded set, so a relay's metrics start every pair at zero).
REQUEST_KINDS: Final = ("read", "write")
REQUEST_STATUSES: Final = ("2xx", "3xx", "4xx", "5xx", "transport", "dry_run")


@dataclass(frozen=True, slots=True, kw_only=True)
class SinkUsage:
    """What a remote sink has cost so far, for a relay's metrics (``node.metrics``)."""

    #: (kind, status) -> requests, keys from :data:`REQUEST_KINDS` x :data:`REQUEST_STATUSES`.
    requests: dict[tuple[str, str], int] = field(default_factory=dict)
    #: The primary rate limit's remaining requests as GitHub last said (None: not yet).
    remaining: int | None = None
    #: Writes sent in the last hour, and errmesh's own ceiling for them.
    writes_last_hour: int = 0
    writes_per_hour: int = 0


@runtime_checkable
class Metered(Protocol):
    """A sink that counts its requests (GitHub); read from another thread than
    the one sending, so an implementation returns copies."""

    def usage(self, now: float) -> SinkUsage: ...


def execute(sink: Sink, action: Action, *, now: float, term: int) -> IssueLink:
    """Carry out one planned action. Raises what the sink raises (``SinkError``)."""
    if isinstance(action, OpenIssue):
        return sink.open_issue(action.state, now=now, term=term)
    if isinstance(action, UpdateIssue):
        return sink.update_issue(action.state, action.link, now=now, term=term)
    if isinstance(action, ReopenIssue):
        return sink.reopen_issue(action.state, action.link, now=now, term=term)
    raise TypeError(f"not an action: {action!r}")
