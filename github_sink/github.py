"""The GitHub sink: one issue per signature, kept current, within GitHub's limits.

The leader's round calls this in a worker thread (every mutating request is
spaced a second apart by the client's budget, far too slow for the mesh's
event loop). What it guarantees, whatever the leader or GitHub does:

- **One issue per signature.** An issue is found by its replicated link,
  else by the hidden marker in a consistent listing of ``errmesh``-labelled
  issues (all states, paginated, conditional on its ETag), and only then
  created. Search is never used to decide: its index lags. When two issues
  carry one marker (a partition had two leaders), the lowest number is kept,
  the others are closed as duplicates of it with a link, and the kept one
  shows the full counts from then on.
- **Replays are harmless.** A leader killed after GitHub answered and
  before the link was announced is replaced by one that finds the issue by
  its marker; an update already posted by this machine is not posted again
  (``Outbox`` intents), nor one that a previous leader's comment already
  shows (comments since the link's last sync are read first).
- **Follow-ups are durable jobs.** Draft PRs, the fixer's patch and the
  Copilot hand-over are multi-request jobs in the ``Outbox``; the sink
  enqueues one when an issue is open and ``github_sink.followup`` advances
  them, one idempotent step at a time.
"""

from __future__ import annotations

import calendar
import re
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from github_sink.client import GitHubClient
from github_sink.errors import SinkRejected, ValidationFailed
from github_sink.followup import FollowUpJobs, Load
from github_sink.outbox import Outbox
from github_sink.render import MARKER_RE, render_body, render_comment, render_title
from github_sink.settings import GitHubSettings
from github_sink.sink import IssueState, SinkUsage
from mesh.bundling import DEFAULT_WINDOW, effective_severity
from mesh.report import sig_hex
from mesh.severity import Severity
from mesh.sigstate import IssueLink, SigState

__all__ = ["GitHubSink", "GitHubSinkOptions"]

_TOTAL_RE = re.compile(r"\*\*(\d+)\*\* in total")
#: How far back an incremental listing reaches before the previous one
#: (GitHub's clock and ours may differ).
_SKEW = 120.0
_OCCURRENCES_RE = re.compile(r"\*\*Occurrences:\*\* (\d+)")
_LABEL_COLORS = {
    "errmesh": ("5319e7", "Reported by errmesh"),
    "bug": ("d73a4a", "Something isn't working"),
    "regression": ("b60205", "Happened again after the issue was closed"),
    "severity:low": ("c5def5", "errmesh severity"),
    "severity:medium": ("fbca04", "errmesh severity"),
    "severity:high": ("e99695", "errmesh severity"),
    "severity:critical": ("b60205", "errmesh severity"),
}


def _severity_label(severity: Severity) -> str:
    return f"severity:{severity.name.lower()}"


@dataclass(frozen=True, slots=True, kw_only=True)
class GitHubSinkOptions:
    """What the sink does beyond issues; built from ``node.config.Config``."""

    auto_pr: bool = False
    auto_heal: bool = False
    #: With auto-heal: run this command (brief on stdin, diff on stdout)
    #: instead of handing the issue to the Copilot coding agent.
    fixer: tuple[str, ...] = ()
    fixer_timeout: float = 300.0
    labels: tuple[str, ...] = ("errmesh", "bug")
    regression_label: str = "regression"
    copilot_instructions: str = (
        "Fix the error described in this issue. The fix brief with the trace is in the "
        "issue body; keep the change minimal and add a test that reproduces the error."
    )
    #: How long a listing of issues stays fresh within a round (ETag-checked after).
    listing_ttl: float = 2.0
    #: Follow-up jobs per round.
    jobs_per_round: int = 4
    #: The bundle window: GitHub itself is checked so that no issue gets two
    #: updates within it, whichever leaders act.
    window: float = DEFAULT_WINDOW

    @property
    def copilot(self) -> bool:
        return self.auto_heal and not self.fixer

    @property
    def wants_pr(self) -> bool:
        """Our own draft PR: asked for, or needed by the fixer; never next to Copilot's."""
        return (self.auto_pr and not self.copilot) or (self.auto_heal and bool(self.fixer))


class GitHubSink:
    """Issues, comments, labels, draft PRs and hand-overs for one repository."""

    name = "github"

    def __init__(
        self,
        client: GitHubClient,
        options: GitHubSinkOptions,
        outbox: Outbox,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.client = client
        self.options = options
        self.outbox = outbox
        self.clock = clock
        self.owner, _, self.repo_name = client.settings.repo.partition("/")
        self._listing: dict[bytes, list[dict[str, Any]]] = {}
        self._listed_at = float("-inf")
        self._labels: set[str] | None = None
        self._checked: set[tuple[bytes, str, int, float, int]] = set()
        self._jobs = FollowUpJobs(client, options, outbox, kept_issues=self._kept_issues)

    @classmethod
    def open(
        cls,
        settings: GitHubSettings,
        options: GitHubSinkOptions,
        outbox_dir: Path | None,
        *,
        transport: httpx.BaseTransport | None = None,
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
        dry_run_stream: TextIO | None = None,
    ) -> GitHubSink:
        """A sink with its client and outbox; ``outbox_dir`` None keeps it in memory.

        The pace of writes is persisted in the outbox and replayed into the new
        client's budget, so a restarted leader (or the next failing CLI of a
        machine in solo mode) keeps GitHub's per-minute and per-hour limits.
        """
        outbox = Outbox.memory() if outbox_dir is None else Outbox.open(outbox_dir)
        client = GitHubClient(
            settings,
            transport=transport,
            clock=clock,
            sleep=sleep,
            dry_run_stream=dry_run_stream,
            on_write=outbox.record_write,
        )
        now = clock()
        for at in outbox.recent_writes(now - 3600.0):
            client.budget.record("POST", at)
        return cls(client, options, outbox, clock=clock)

    def usage(self, now: float) -> SinkUsage:
        """Requests by kind and answer, and the budget left (``Metered``)."""
        budget = self.client.budget.statistics(now)
        return SinkUsage(
            requests=dict(self.client.requests),
            remaining=budget.remaining,
            writes_last_hour=budget.writes_last_hour,
            writes_per_hour=self.client.budget.limits.per_hour,
        )

    def set_gate(self, gate: Callable[[], bool]) -> None:
        """Writes go out only while ``gate()`` is true (the mesh: "I still lead")."""
        self.client.gate = gate

    def own_writes(self) -> tuple[float, ...]:
        """Send times of our writes within the hour (those before a restart too)."""
        return self.client.budget.own_writes()

    def set_other_writes(self, times: tuple[float, ...]) -> None:
        """Count the mesh's other leaders' writes in the minute and hour windows."""
        self.client.budget.set_others(times)

    def close(self) -> None:
        """Release the HTTP connections and the outbox (not an issue: see ``FileSink``)."""
        self.client.close()
        self.outbox.close()

    def __enter__(self) -> GitHubSink:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # -- the Sink protocol ------------------------------------------------------

    def open_issue(self, state: SigState, *, now: float, term: int) -> IssueLink:
        severity = effective_severity(state)
        found = self._issues_for(state.signature, fresh=True)
        if found:
            issue = self._reconcile(state, found)
            shown = _shown_total(issue)
            link = self._link(issue, term=term, now=now, total=shown, severity=severity)
            if _labels_of(issue) & set(_LABEL_COLORS) and _severity_label(severity) not in (
                _labels_of(issue)
            ):
                self._set_severity(issue, severity)
        else:
            labels = [*self.options.labels, _severity_label(severity)]
            self._ensure_labels(labels)
            issue = self.client.create_issue(
                title=render_title(state), body=render_body(state, now=now), labels=labels
            )
            self._remember(state.signature, issue)
            link = self._link(issue, term=term, now=now, total=state.total, severity=severity)
        if link.state == "open":
            self._jobs.enqueue(state.signature, int(issue["number"]))
        return link

    def update_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        issue = self._current_issue(state, link)
        number = int(issue["number"])
        severity = effective_severity(state)
        if self.outbox.confirmed(state.signature, "update", state.total) == number:
            return self._link(issue, term=term, now=now, total=state.total, severity=severity)
        # GitHub is the judge of "once per window": a leader that died after
        # posting, or another one acting at the same time (a partition, an
        # election under load), may have updated the issue without this
        # leader's link showing it.
        self.client.wait_for_write()  # read, then write at once: a narrow race
        latest = self._last_update(number, since=min(link.synced_at, now - self.options.window))
        if latest is not None:
            at, shown = latest
            if shown >= state.total or self.clock() - at < self.options.window:
                # Adopt what the issue shows. The link must still win over the
                # one we hold (last writer by term, then time, then total), or
                # the update would stay due and be re-checked every round.
                return self._link(
                    issue,
                    term=max(term, link.term),
                    now=now,
                    total=max(shown, link.synced_total),
                    severity=link.severity,
                    synced_at=max(at, link.synced_at),
                )
        previous = max(self._shown(link, issue), latest[1] if latest is not None else 0)
        self._comment(state, "update", number, render_comment(state, previous_total=previous))
        if _severity_label(severity) not in _labels_of(issue):
            self._set_severity(issue, severity)
        return self._link(issue, term=term, now=now, total=state.total, severity=severity)

    def _last_update(self, number: int, *, since: float) -> tuple[float, int] | None:
        """The newest errmesh comment on an issue since ``since``: (when, total shown)."""
        stamp = _iso(since - 1.0)
        latest: tuple[float, int] | None = None
        for comment in self.client.list_comments(number, since=stamp):
            body = str(comment.get("body") or "")
            match = _TOTAL_RE.search(body)
            if match is None or MARKER_RE.search(body) is None:
                continue
            at = _epoch(str(comment.get("created_at") or ""))
            if latest is None or at >= latest[0]:
                latest = (at, int(match[1]))
        return latest

    def reopen_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        issue = self._current_issue(state, link)
        number = int(issue["number"])
        severity = effective_severity(state)
        if issue.get("state") != "open":
            labels = self._labels_with(issue, severity, extra=(self.options.regression_label,))
            self._ensure_labels(labels)
            issue = self.client.update_issue(
                number, state="open", state_reason="reopened", labels=labels
            )
            self._remember(state.signature, issue)
        if not self._already_posted(state, link, number, term, action="reopen"):
            self._comment(
                state,
                "reopen",
                number,
                render_comment(state, previous_total=self._shown(link, issue), regression=True),
            )
        return self._link(issue, term=term, now=now, total=state.total, severity=severity)

    def observe(self, signatures: Iterable[bytes]) -> dict[bytes, IssueState]:
        out: dict[bytes, IssueState] = {}
        for sig in signatures:
            found = self._issues_for(sig, fresh=False)
            if found:
                out[sig] = "open" if found[0].get("state") == "open" else "closed"
        return out

    # -- follow-ups -------------------------------------------------------------

    def follow_up(self, *, now: float, term: int, load: Load) -> int:
        """Advance due draft-PR and hand-over jobs; returns how many steps ran."""
        return self._jobs.run(now=now, term=term, load=load)

    def _kept_issues(self) -> list[tuple[bytes, Mapping[str, Any]]]:
        """Every signature's kept issue (its lowest number), from a fresh listing."""
        self._refresh(force=True)
        return [(sig, issues[0]) for sig, issues in self._listing.items()]

    # -- GitHub helpers -----------------------------------------------------------

    def _ensure_labels(self, labels: Iterable[str]) -> None:
        if self._labels is None:
            self._labels = {str(label["name"]).lower() for label in self.client.list_labels()}
        for name in labels:
            if name.lower() in self._labels:
                continue
            color, description = _LABEL_COLORS.get(name, ("ededed", "errmesh"))
            try:
                self.client.create_label(name=name, color=color, description=description)
            except ValidationFailed as exc:
                if not exc.already_exists:
                    raise
            self._labels.add(name.lower())

    def _refresh(self, *, force: bool = False) -> None:
        """Bring the marker index up to date: one full listing, then what changed.

        After the first listing only issues updated since the last one are
        read (``since``, with a margin for clock skew), so an open does not
        page through every errmesh issue of the repository again.
        """
        now = self.clock()
        if not force and now - self._listed_at < self.options.listing_ttl:
            return
        full = self._listed_at == float("-inf")
        since = None if full else _iso(self._listed_at - _SKEW)
        if full:
            self._listing = {}
        for issue in self.client.list_issues(
            labels=self.options.labels[0], state="all", since=since
        ):
            if "pull_request" in issue:
                continue
            match = MARKER_RE.search(str(issue.get("body") or ""))
            if match is not None:
                self._remember(bytes.fromhex(match[1]), issue)
        self._listed_at = now

    def _issues_for(self, sig: bytes, *, fresh: bool) -> list[dict[str, Any]]:
        """The issues carrying ``sig``'s marker, lowest number first."""
        self._refresh(force=fresh)
        return list(self._listing.get(sig, ()))

    def _remember(self, sig: bytes, issue: dict[str, Any]) -> None:
        issues = [i for i in self._listing.get(sig, []) if i["number"] != issue["number"]]
        self._listing[sig] = sorted([*issues, issue], key=lambda i: int(i["number"]))

    def _current_issue(self, state: SigState, link: IssueLink) -> dict[str, Any]:
        found = self._issues_for(state.signature, fresh=False)
        if not found:
            if link.number is None:
                raise SinkRejected(f"issue of {sig_hex(state.signature)} has no number")
            issue = self.client.get_issue(link.number)
            self._remember(state.signature, issue)
            return issue
        return self._reconcile(state, found)

    def _reconcile(self, state: SigState, found: list[dict[str, Any]]) -> dict[str, Any]:
        """Keep the lowest-numbered issue of a signature, close the others as duplicates."""
        keep, others = found[0], found[1:]
        for other in others:
            if other.get("state") == "open":
                number = int(other["number"])
                self.client.create_comment(
                    number, f"Duplicate of #{keep['number']}: errmesh tracks this error there."
                )
                closed = self.client.update_issue(number, state="closed", state_reason="duplicate")
                self._remember(state.signature, closed)
        return keep

    def _labels_with(
        self, issue: Mapping[str, Any], severity: Severity, extra: tuple[str, ...] = ()
    ) -> list[str]:
        kept = [name for name in _labels_of(issue) if not name.startswith("severity:")]
        wanted = [*kept, _severity_label(severity), *extra]
        return list(dict.fromkeys(wanted))

    def _set_severity(self, issue: dict[str, Any], severity: Severity) -> None:
        labels = self._labels_with(issue, severity)
        self._ensure_labels(labels)
        updated = self.client.update_issue(int(issue["number"]), labels=labels)
        issue.update(updated)

    def _comment(self, state: SigState, action: str, number: int, body: str) -> None:
        """Post a bundled comment once: the attempt is recorded first, because a
        comment whose answer was lost (a timeout, a 5xx) may exist all the same."""
        self.outbox.confirm(state.signature, f"try-{action}", state.total, number)
        self.client.create_comment(number, body)
        self.outbox.confirm(state.signature, action, state.total, number)

    def _already_posted(
        self, state: SigState, link: IssueLink, number: int, term: int, action: str = "update"
    ) -> bool:
        if self.outbox.confirmed(state.signature, action, state.total) == number:
            return True
        tried = self.outbox.confirmed(state.signature, f"try-{action}", state.total) == number
        if link.term >= term and not tried:
            return False  # this leader wrote the link and never sent this comment
        # A previous leader may have posted this comment and died before announcing it.
        checked = (state.signature, action, link.term, link.synced_at, state.total)
        if checked in self._checked:
            return False
        self._checked.add(checked)
        since = _iso(link.synced_at - 1)
        for comment in self.client.list_comments(number, since=since):
            match = _TOTAL_RE.search(str(comment.get("body") or ""))
            body = str(comment.get("body") or "")
            if match and MARKER_RE.search(body) and int(match[1]) >= state.total:
                return True
        return False

    def _shown(self, link: IssueLink, issue: Mapping[str, Any]) -> int:
        return max(link.synced_total, 0) if link.number == issue.get("number") else 0

    def _link(
        self,
        issue: Mapping[str, Any],
        *,
        term: int,
        now: float,
        total: int,
        severity: Severity,
        synced_at: float | None = None,
    ) -> IssueLink:
        number = int(issue["number"])
        # Stamped when GitHub answered, not when the round began: the next
        # update is due a whole window after what people saw.
        if synced_at is None:
            synced_at = max(now, self.clock())
        return IssueLink(
            ref=f"{self.owner}/{self.repo_name}#{number}",
            number=number,
            url=str(issue.get("html_url") or ""),
            state="open" if issue.get("state") == "open" else "closed",
            term=term,
            synced_total=total,
            synced_at=synced_at,
            severity=severity,
        )


def _iso(ts: float) -> str:
    """Epoch seconds as GitHub's ``2026-11-25T16:09:50Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(max(0.0, ts)))


def _epoch(stamp: str) -> float:
    """GitHub's ``2026-11-25T16:09:50Z`` as epoch seconds (0 when unreadable)."""
    try:
        return float(calendar.timegm(time.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ")))
    except ValueError:
        return 0.0


def _labels_of(issue: Mapping[str, Any]) -> set[str]:
    out: set[str] = set()
    for label in issue.get("labels") or ():
        out.add(str(label["name"] if isinstance(label, Mapping) else label))
    return out


def _shown_total(issue: Mapping[str, Any]) -> int:
    """The count an issue found by its marker already shows (its body's)."""
    match = _OCCURRENCES_RE.search(str(issue.get("body") or ""))
    return int(match[1]) if match else 0
