"""The follow-ups of an open issue: a draft PR (with the fixer's patch) or a Copilot hand-over.

Each is a durable multi-request job in the ``Outbox``, advanced one
idempotent step at a time, so a leader that dies between two requests
leaves nothing half done that a replay would double: an existing branch
(422) or pull is reused, a file already committed is not committed again.
A new leader rebuilds missing jobs from GitHub itself (branches and pulls
are named after the signature), so no job depends on the leader that
enqueued it.

``GitHubSink`` owns the issues and calls in here twice: ``enqueue`` when an
issue is open, ``run`` once a round. This module reads the sink's issues
only through the ``kept_issues`` callable it is given, and knows nothing
else of the sink.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Protocol

from github_sink.client import GitHubClient
from github_sink.errors import (
    FixerError,
    NotFound,
    PatchError,
    SinkRejected,
    SinkUnavailable,
    ValidationFailed,
)
from github_sink.fixer import run_fixer
from github_sink.outbox import Job, Outbox
from github_sink.patch import apply_patch, parse_patch
from github_sink.render import render_brief, render_title
from mesh.report import sig_hex
from mesh.sigstate import SigState

__all__ = [
    "COPILOT_LOGIN",
    "FollowUpJobs",
    "FollowUpOptions",
    "KeptIssues",
    "Load",
    "branch_name",
    "brief_path",
]

log = logging.getLogger("errmesh.github")

COPILOT_LOGIN = "copilot-swe-agent[bot]"

#: The aggregate's state of a signature, None once it is gone.
Load = Callable[[bytes], SigState | None]
#: Every signature's kept issue (its lowest number), from a fresh listing.
KeptIssues = Callable[[], Iterable[tuple[bytes, Mapping[str, Any]]]]


def branch_name(signature: bytes) -> str:
    return f"errmesh/fix-{sig_hex(signature)[:12]}"


def brief_path(signature: bytes) -> str:
    return f".errmesh/{sig_hex(signature)[:12]}.md"


class FollowUpOptions(Protocol):
    """What the jobs read of ``GitHubSinkOptions`` (a protocol, so this module
    does not import the sink that imports it)."""

    @property
    def copilot(self) -> bool: ...
    @property
    def wants_pr(self) -> bool: ...
    @property
    def fixer(self) -> tuple[str, ...]: ...
    @property
    def fixer_timeout(self) -> float: ...
    @property
    def copilot_instructions(self) -> str: ...
    @property
    def jobs_per_round(self) -> int: ...


class FollowUpJobs:
    """The draft-PR and Copilot jobs of one repository's issues."""

    def __init__(
        self,
        client: GitHubClient,
        options: FollowUpOptions,
        outbox: Outbox,
        *,
        kept_issues: KeptIssues,
    ) -> None:
        self.client = client
        self.options = options
        self.outbox = outbox
        self.kept_issues = kept_issues
        self.owner, _, self.repo_name = client.settings.repo.partition("/")
        self._repo: dict[str, Any] | None = None
        self._swept_term: int | None = None

    def enqueue(self, sig: bytes, number: int) -> None:
        """The follow-up of an open issue, unless it already has one."""
        if self.options.copilot:
            self.outbox.enqueue(sig, "copilot", number, "assign")
        elif self.options.wants_pr:
            self.outbox.enqueue(sig, "pr", number, "branch")

    def run(self, *, now: float, term: int, load: Load) -> int:
        """Advance due draft-PR and hand-over jobs; returns how many steps ran."""
        if not (self.options.wants_pr or self.options.copilot):
            return 0
        if self._swept_term != term:
            self._sweep(load)
            self._swept_term = term
        steps = 0
        for job in self.outbox.due(now, limit=self.options.jobs_per_round):
            try:
                while job.state == "pending":
                    job = self._step(job, load)
                    steps += 1
            except SinkUnavailable as exc:
                delay = min(3600.0, 30.0 * 2 ** min(job.attempts, 7))
                self.outbox.retry_later(job, str(exc), now + delay)
                log.warning("%s for %s: %s (retry in %.0f s)", job.kind, job.sig.hex(), exc, delay)
                break  # GitHub is struggling: no more jobs this round
            except SinkRejected as exc:
                self.outbox.fail(job, str(exc))
                log.warning("%s for %s failed: %s", job.kind, job.sig.hex(), exc)
        return steps

    def _sweep(self, load: Load) -> None:
        """Rebuild the jobs a previous leader may have left unfinished.

        Reads only: the issue listing shows assignees, the pulls listing the
        ``errmesh/fix-*`` heads; what is missing becomes a job again, and its
        steps are idempotent anyway.
        """
        kept = list(self.kept_issues())
        pulls: set[str] = set()
        if self.options.wants_pr:
            for pull in self.client.list_pulls(state="all"):
                head = pull.get("head") or {}
                pulls.add(str(head.get("ref", "")))
        for sig, issue in kept:
            if issue.get("state") != "open" or load(sig) is None:
                continue
            number = int(issue["number"])
            if self.options.copilot:
                logins = {a.get("login") for a in issue.get("assignees") or ()}
                if COPILOT_LOGIN not in logins:
                    self.outbox.enqueue(sig, "copilot", number, "assign")
            elif branch_name(sig) not in pulls:
                self.outbox.enqueue(sig, "pr", number, "branch")

    # -- the steps --------------------------------------------------------------

    def _step(self, job: Job, load: Load) -> Job:
        """Carry out the job's next step and record it in the outbox."""
        if job.kind == "copilot":
            return self._assign_copilot(job)
        branch = branch_name(job.sig)
        if job.step == "branch":
            return self._create_branch(job, branch)
        if job.step == "brief":
            return self._commit_brief(job, branch, load)
        if job.step == "fix":
            self._run_fixer(job, branch)
            return self.outbox.advance(job, "pull")
        if job.step == "pull":
            return self._open_pull(job, branch, load)
        raise SinkRejected(f"unknown step {job.step!r}")

    def _assign_copilot(self, job: Job) -> Job:
        repo = self._repository()
        self.client.add_assignees(
            job.issue,
            [COPILOT_LOGIN],
            agent_assignment={
                "target_repo": f"{self.owner}/{self.repo_name}",
                "base_branch": str(repo["default_branch"]),
                "custom_instructions": self.options.copilot_instructions,
            },
        )
        return self.outbox.advance(job, "done")

    def _create_branch(self, job: Job, branch: str) -> Job:
        """The fix branch from the default branch's head; one left by a replay is reused."""
        base = str(self._repository()["default_branch"])
        head = self.client.get_ref(f"heads/{base}")
        try:
            self.client.create_ref(f"refs/heads/{branch}", str(head["object"]["sha"]))
        except ValidationFailed as exc:
            if not exc.already_exists:
                raise
        return self.outbox.advance(job, "brief", base=base)

    def _commit_brief(self, job: Job, branch: str, load: Load) -> Job:
        state = load(job.sig)
        if state is None:
            raise SinkRejected(f"signature {job.sig.hex()} is no longer in the aggregate")
        brief = render_brief(state, issue_number=job.issue)
        self._put_file(brief_path(job.sig), brief, branch, f"errmesh: fix brief for #{job.issue}")
        return self.outbox.advance(job, "fix" if self.options.fixer else "pull", brief=brief)

    def _open_pull(self, job: Job, branch: str, load: Load) -> Job:
        """The draft PR, unless the branch already has a pull (a replay, or a person's)."""
        state = load(job.sig)
        title = render_title(state) if state is not None else f"errmesh fix #{job.issue}"
        existing = self.client.list_pulls(head=f"{self.owner}:{branch}", state="all")
        if existing:
            return self.outbox.advance(job, "done", pull=int(existing[0]["number"]))
        pull = self.client.create_pull(
            title=title.replace("[errmesh]", "[errmesh] fix:", 1),
            head=branch,
            base=str(job.data.get("base") or self._repository()["default_branch"]),
            body=(
                f"Fixes #{job.issue}\n\nDraft opened by errmesh. The fix brief is in "
                f"`{brief_path(job.sig)}`."
            ),
            draft=True,
        )
        return self.outbox.advance(job, "done", pull=int(pull["number"]))

    def _run_fixer(self, job: Job, branch: str) -> None:
        """Apply the fixer's diff to the branch, or comment why not; never half a patch."""
        done: dict[str, str] = dict(job.data.get("fixed") or {})
        try:
            if not done:
                diff = run_fixer(
                    self.options.fixer,
                    str(job.data.get("brief", "")),
                    timeout=self.options.fixer_timeout,
                )
                patches = parse_patch(diff)
                current = {fp.path: self._read_file(fp.path, branch) for fp in patches}
                new = apply_patch(patches, current)
                job = self.outbox.advance(job, "fix", pending_files=new)
        except (FixerError, PatchError) as exc:
            self.client.create_comment(
                job.issue,
                f"errmesh could not apply an automatic fix: {exc}. The draft PR keeps only "
                "the fix brief.",
            )
            return
        pending: Mapping[str, str] = job.data.get("pending_files") or {}
        for path, text in sorted(pending.items()):
            if path in done:
                continue
            self._put_file(path, text, branch, f"errmesh: automatic fix for #{job.issue}")
            done[path] = "ok"
            job = self.outbox.advance(job, "fix", fixed=done)

    # -- the repository's files ---------------------------------------------------

    def _repository(self) -> dict[str, Any]:
        if self._repo is None:
            self._repo = self.client.get_repo()
        return self._repo

    def _contents(self, path: str, branch: str) -> dict[str, Any] | None:
        try:
            return self.client.get_contents(path, ref=branch)
        except NotFound:
            return None

    def _read_file(self, path: str, branch: str) -> str | None:
        found = self._contents(path, branch)
        return None if found is None else _decoded(found)

    def _put_file(self, path: str, text: str, branch: str, message: str) -> None:
        sha: str | None = None
        found = self._contents(path, branch)
        if found is not None:
            if _decoded(found) == text:
                return  # already committed (a replay)
            sha = str(found["sha"])
        self.client.put_contents(
            path, message=message, content=text.encode(), branch=branch, sha=sha
        )


def _decoded(contents: Mapping[str, Any]) -> str:
    """A contents answer's file, as text."""
    return base64.b64decode(str(contents.get("content", ""))).decode("utf-8")
