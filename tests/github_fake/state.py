"""The repository model: issues, pulls, labels, comments, assignees, search.

Rules this model keeps, because a GitHub client lives or dies by them:

- Issues and pulls share one number sequence per repository, and the issue
  list returns pulls too (rendered with a ``pull_request`` key).
- Labels are unique by name, case-insensitively; creating one that exists is
  422 ``already_exists``. Labels named on an issue that do not exist are
  dropped silently (``missing_labels="drop"``, what ``shared/notes`` asks a
  client to assume) or created with the default colour (``"create"``).
- Assignees who cannot be assigned are dropped silently, as GitHub does.
  ``copilot-swe-agent[bot]`` can be assigned (by any of the three
  endpoints) only with a user-to-server token; each assignment is recorded,
  with the ``agent_assignment`` object ``POST .../assignees`` sent.
- Sizes GitHub refuses with 422: titles over 256 characters, bodies over
  65,536 characters, label names over 50 and descriptions over 100.
- Search is a substring match over title and body, and only sees issues
  older than ``search_lag`` seconds: its index lags the writes on GitHub,
  which is why "search, then create if absent" files duplicates.

The model takes ``now`` from its caller and never reads a clock, and it knows
nothing of HTTP or URLs: :mod:`.render` draws the JSON, :mod:`.routes` maps
requests onto these methods.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from .errors import ApiError, not_found, validation_failed
from .git import GitStore

COPILOT = "copilot-swe-agent[bot]"
MAX_TITLE = 256
MAX_BODY = 65_536
MAX_LABEL_NAME = 50
MAX_LABEL_DESCRIPTION = 100
DEFAULT_LABEL_COLOR = "ededed"

MissingLabels = Literal["drop", "create"]


class Ids:
    """GitHub's database ids are global, not per repository."""

    def __init__(self) -> None:
        self._next = itertools.count(1001)

    def __call__(self) -> int:
        return next(self._next)


@dataclass
class Label:
    id: int
    name: str
    color: str
    description: str | None
    default: bool = False


@dataclass
class Comment:
    id: int
    issue_number: int
    body: str
    user: str
    created_at: float
    updated_at: float


@dataclass
class Pull:
    id: int
    head: str
    head_sha: str
    base: str
    base_sha: str
    draft: bool
    maintainer_can_modify: bool


@dataclass(frozen=True)
class AgentAssignment:
    """One request that assigned the Copilot coding agent, as it was sent."""

    issue_number: int
    assignees: tuple[str, ...]
    agent_assignment: dict[str, Any] | None
    time: float


@dataclass
class Issue:
    number: int
    id: int
    title: str
    body: str | None
    user: str
    created_at: float
    updated_at: float
    state: str = "open"
    state_reason: str | None = None
    closed_at: float | None = None
    closed_by: str | None = None
    labels: list[str] = field(default_factory=list)
    assignees: list[str] = field(default_factory=list)
    comments: list[int] = field(default_factory=list)
    locked: bool = False
    pull: Pull | None = None
    agent_assignments: list[dict[str, Any] | None] = field(default_factory=list)

    @property
    def is_pull(self) -> bool:
        return self.pull is not None


def check_sizes(resource: str, *, title: str | None = None, body: str | None = None) -> None:
    """422 for the sizes GitHub refuses (see ``shared/notes/github-api.md``)."""
    if title is not None and not title.strip():
        raise validation_failed(resource, "title", "missing_field")
    if title is not None and len(title) > MAX_TITLE:
        raise validation_failed(
            resource, "title", "custom", f"title is too long (maximum is {MAX_TITLE} characters)"
        )
    if body is not None and len(body) > MAX_BODY:
        raise validation_failed(
            resource, "body", "custom", f"body is too long (maximum is {MAX_BODY} characters)"
        )


def _names(items: Iterable[Any], key: str) -> list[str]:
    """Logins or label names from a list of strings or ``{key: ...}`` objects."""
    out = []
    for item in items:
        name = item.get(key) if isinstance(item, dict) else item
        if isinstance(name, str) and name not in out:
            out.append(name)
    return out


class Repository:
    """One repository and everything the sink can do to it."""

    def __init__(
        self,
        owner: str,
        name: str,
        *,
        ids: Ids,
        now: float,
        assignable: Iterable[str] = (),
        missing_labels: MissingLabels = "drop",
        search_lag: float = 0.0,
        default_branch: str = "main",
    ) -> None:
        self.owner = owner
        self.name = name
        self.id = ids()
        self.ids = ids
        self.created_at = now
        self.default_branch = default_branch
        self.git = GitStore(default_branch=default_branch, now=now)
        self.labels: dict[str, Label] = {}
        self.issues: dict[int, Issue] = {}
        self.comments: dict[int, Comment] = {}
        self.agent_assignments: list[AgentAssignment] = []
        self.assignable = {owner, COPILOT, *assignable}
        self.missing_labels: MissingLabels = missing_labels
        self.search_lag = search_lag
        self._numbers = itertools.count(1)

    @property
    def full_name(self) -> str:
        return f"{self.owner}/{self.name}"

    # -- labels --------------------------------------------------------

    def label(self, name: str) -> Label | None:
        return self.labels.get(name.lower())

    def create_label(self, name: str, color: str | None, description: str | None) -> Label:
        if self.label(name) is not None:
            raise validation_failed("Label", "name", "already_exists")
        if not name.strip() or len(name) > MAX_LABEL_NAME:
            raise validation_failed("Label", "name", "invalid")
        color = DEFAULT_LABEL_COLOR if color is None else color
        if not re.fullmatch(r"[0-9a-fA-F]{6}", color):
            raise validation_failed("Label", "color", "invalid")
        if description is not None and len(description) > MAX_LABEL_DESCRIPTION:
            raise validation_failed(
                "Label",
                "description",
                "custom",
                "description is too long (maximum is 100 characters)",
            )
        label = Label(self.ids(), name, color.lower(), description)
        self.labels[name.lower()] = label
        return label

    def _resolve_labels(self, names: Sequence[str]) -> list[str]:
        out: list[str] = []
        for name in names:
            label = self.label(name)
            if label is None and self.missing_labels == "create":
                label = self.create_label(name, None, None)
            if label is not None and label.name not in out:
                out.append(label.name)
        return out

    # -- assignees -----------------------------------------------------

    def _assignable_of(self, logins: Sequence[Any], may_start_agent: bool) -> list[str]:
        """The logins GitHub would keep; the others are dropped silently."""
        return [
            login
            for login in _names(logins, "login")
            if login in self.assignable and (login != COPILOT or may_start_agent)
        ]

    def _record_agent(
        self,
        issue: Issue,
        added: Sequence[str],
        agent_assignment: dict[str, Any] | None,
        now: float,
    ) -> None:
        if COPILOT in added:
            issue.agent_assignments.append(agent_assignment)
            self.agent_assignments.append(
                AgentAssignment(issue.number, tuple(added), agent_assignment, now)
            )

    # -- issues --------------------------------------------------------

    def issue(self, number: int) -> Issue:
        found = self.issues.get(number)
        if found is None:
            raise not_found()
        return found

    def create_issue(
        self,
        *,
        title: str,
        body: str | None,
        labels: Sequence[Any],
        assignees: Sequence[Any],
        user: str,
        now: float,
        may_start_agent: bool = True,
    ) -> Issue:
        check_sizes("Issue", title=title, body=body)
        issue = Issue(
            number=next(self._numbers),
            id=self.ids(),
            title=title,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
            labels=self._resolve_labels(_names(labels, "name")),
            assignees=self._assignable_of(assignees, may_start_agent),
        )
        self.issues[issue.number] = issue
        self._record_agent(issue, issue.assignees, None, now)
        return issue

    def update_issue(
        self,
        number: int,
        fields: dict[str, Any],
        *,
        user: str,
        now: float,
        may_start_agent: bool = True,
    ) -> Issue:
        issue = self.issue(number)
        title = fields.get("title")
        title = str(title) if title is not None else None
        check_sizes("Issue", title=title, body=fields.get("body"))
        if title is not None:
            issue.title = title
        if "body" in fields:
            issue.body = fields["body"]
        if "labels" in fields:
            issue.labels = self._resolve_labels(_names(fields["labels"], "name"))
        if "assignees" in fields:
            issue.assignees = [
                a for a in _names(fields["assignees"], "login") if a in self.assignable
            ]
        state = fields.get("state")
        if state == "closed" and issue.state != "closed":
            issue.state, issue.closed_at, issue.closed_by = "closed", now, user
            issue.state_reason = fields.get("state_reason") or "completed"
        elif state == "open" and issue.state != "open":
            issue.state, issue.closed_at, issue.closed_by = "open", None, None
            issue.state_reason = "reopened"
        elif fields.get("state_reason") is not None and issue.state == "closed":
            issue.state_reason = fields["state_reason"]
        issue.updated_at = now
        return issue

    def add_labels(self, number: int, names: Sequence[Any], *, now: float) -> list[Label]:
        issue = self.issue(number)
        for name in self._resolve_labels(_names(names, "name")):
            if name not in issue.labels:
                issue.labels.append(name)
        issue.updated_at = now
        return [label for n in issue.labels if (label := self.label(n)) is not None]

    def add_assignees(
        self,
        number: int,
        logins: Sequence[Any],
        *,
        agent_assignment: dict[str, Any] | None,
        may_start_agent: bool,
        now: float,
    ) -> Issue:
        """Add up to 10 assignees; Copilot only with a token that can start it."""
        issue = self.issue(number)
        added = self._assignable_of(_names(logins, "login")[:10], may_start_agent)
        issue.assignees += [login for login in added if login not in issue.assignees]
        self._record_agent(issue, added, agent_assignment, now)
        issue.updated_at = now
        return issue

    # -- comments ------------------------------------------------------

    def create_comment(self, number: int, body: str, *, user: str, now: float) -> Comment:
        issue = self.issue(number)
        check_sizes("IssueComment", body=body)
        if issue.locked:
            raise ApiError(403, "Unable to create comment because issue is locked.")
        comment = Comment(self.ids(), number, body, user, now, now)
        self.comments[comment.id] = comment
        issue.comments.append(comment.id)
        issue.updated_at = now
        return comment

    def update_comment(self, comment_id: int, body: str, *, now: float) -> Comment:
        comment = self.comments.get(comment_id)
        if comment is None:
            raise not_found()
        check_sizes("IssueComment", body=body)
        comment.body, comment.updated_at = body, now
        return comment

    # -- pulls ---------------------------------------------------------

    def pull(self, number: int) -> Issue:
        issue = self.issues.get(number)
        if issue is None or issue.pull is None:
            raise not_found()
        return issue

    def create_pull(
        self,
        *,
        title: str | None,
        head: str,
        base: str,
        body: str | None,
        draft: bool,
        maintainer_can_modify: bool,
        issue_number: int | None,
        user: str,
        now: float,
    ) -> Issue:
        branch = head.split(":", 1)[1] if ":" in head else head
        head_commit = self.git.branch_head(branch)
        base_commit = self.git.branch_head(base)
        if base_commit is None:
            raise validation_failed("PullRequest", "base", "invalid")
        if head_commit is None:
            raise validation_failed("PullRequest", "head", "invalid")
        for other in self.issues.values():
            if (
                other.pull
                and other.state == "open"
                and (other.pull.head, other.pull.base)
                == (
                    branch,
                    base,
                )
            ):
                raise ApiError(
                    422,
                    "Validation Failed",
                    errors=[
                        {
                            "resource": "PullRequest",
                            "code": "custom",
                            "message": f"A pull request already exists for {self.owner}:{branch}.",
                        }
                    ],
                )
        if self.git.is_ancestor(head_commit.sha, base_commit.sha):
            raise ApiError(
                422,
                "Validation Failed",
                errors=[
                    {
                        "resource": "PullRequest",
                        "code": "custom",
                        "message": f"No commits between {base} and {branch}",
                    }
                ],
            )
        pull = Pull(
            id=self.ids(),
            head=branch,
            head_sha=head_commit.sha,
            base=base,
            base_sha=base_commit.sha,
            draft=draft,
            maintainer_can_modify=maintainer_can_modify,
        )
        if issue_number is not None:
            issue = self.issue(issue_number)
            if issue.pull is not None:
                raise validation_failed("PullRequest", "issue", "invalid")
            issue.pull, issue.updated_at = pull, now
            if body is not None:
                issue.body = body
            return issue
        if title is None:
            raise validation_failed("PullRequest", "title", "missing_field")
        check_sizes("PullRequest", title=title, body=body)
        issue = Issue(
            number=next(self._numbers),
            id=self.ids(),
            title=title,
            body=body,
            user=user,
            created_at=now,
            updated_at=now,
            pull=pull,
        )
        self.issues[issue.number] = issue
        return issue

    def update_pull(self, number: int, fields: dict[str, Any], *, user: str, now: float) -> Issue:
        issue = self.pull(number)
        assert issue.pull is not None
        if "base" in fields:
            base = self.git.branch_head(fields["base"])
            if base is None:
                raise validation_failed("PullRequest", "base", "invalid")
            issue.pull.base, issue.pull.base_sha = fields["base"], base.sha
        if "maintainer_can_modify" in fields:
            issue.pull.maintainer_can_modify = bool(fields["maintainer_can_modify"])
        plain = {k: v for k, v in fields.items() if k in ("title", "body", "state")}
        return self.update_issue(number, plain, user=user, now=now)

    # -- listing and search --------------------------------------------

    def list_issues(
        self,
        *,
        state: str = "open",
        labels: Sequence[str] = (),
        sort: str = "created",
        direction: str = "desc",
        since: float | None = None,
        creator: str | None = None,
        assignee: str | None = None,
        milestone: str | None = None,
    ) -> list[Issue]:
        """``GET /issues`` filtering and order (pulls included, as on GitHub)."""
        wanted = {name.lower() for name in labels}
        out = []
        for issue in self.issues.values():
            if state != "all" and issue.state != state:
                continue
            if not wanted <= {n.lower() for n in issue.labels}:
                continue
            if since is not None and issue.updated_at < since:
                continue
            if creator is not None and issue.user != creator:
                continue
            if assignee == "none" and issue.assignees:
                continue
            if assignee == "*" and not issue.assignees:
                continue
            if assignee not in (None, "none", "*") and assignee not in issue.assignees:
                continue
            if milestone not in (None, "none"):
                continue  # no milestones exist in this model
            out.append(issue)
        return _ordered(out, sort, direction)

    def list_pulls(
        self,
        *,
        state: str = "open",
        head: str | None = None,
        base: str | None = None,
        sort: str = "created",
        direction: str | None = None,
    ) -> list[Issue]:
        branch = head.split(":", 1)[1] if head and ":" in head else head
        out = [
            issue
            for issue in self.issues.values()
            if issue.pull is not None
            and (state == "all" or issue.state == state)
            and (branch is None or issue.pull.head == branch)
            and (base is None or issue.pull.base == base)
        ]
        if direction is None:
            direction = "desc" if sort == "created" else "asc"
        key = "updated" if sort in ("updated", "long-running", "popularity") else "created"
        return _ordered(out, key, direction)

    def search(
        self, words: Sequence[str], qualifiers: dict[str, list[str]], *, now: float
    ) -> list[Issue]:
        """Issues whose title or body contain every word, as the lagging index sees them."""
        out = []
        for issue in self.issues.values():
            if issue.created_at > now - self.search_lag:
                continue
            text = f"{issue.title}\n{issue.body or ''}".lower()
            if not all(w.lower() in text for w in words):
                continue
            if not _qualifiers_match(issue, qualifiers):
                continue
            out.append(issue)
        return _ordered(out, "created", "desc")


def _qualifiers_match(issue: Issue, qualifiers: dict[str, list[str]]) -> bool:
    for value in (
        qualifiers.get("is", []) + qualifiers.get("type", []) + qualifiers.get("state", [])
    ):
        kind = {"issue": not issue.is_pull, "pr": issue.is_pull, "pull-request": issue.is_pull}
        if value in kind and not kind[value]:
            return False
        if value in ("open", "closed") and issue.state != value:
            return False
    labels = {n.lower() for n in issue.labels}
    if any(v.lower() not in labels for v in qualifiers.get("label", [])):
        return False
    return all(issue.user == v for v in qualifiers.get("author", []))


def _ordered(issues: list[Issue], sort: str, direction: str) -> list[Issue]:
    def key(issue: Issue) -> tuple[float, int]:
        if sort == "updated":
            return issue.updated_at, issue.number
        if sort == "comments":
            return len(issue.comments), issue.number
        return issue.created_at, issue.number

    return sorted(issues, key=key, reverse=direction == "desc")
