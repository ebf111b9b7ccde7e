"""The endpoints errmesh uses, as typed methods over ``request`` and ``paginate``.

:class:`RepoEndpoints` is mixed into :class:`~github_sink.client.GitHubClient`
(``client.create_issue(...)``); it holds no state and does no IO itself.
Every request body carries only fields of the operation's ``requestBody``
schema in GitHub's REST description (checked against
``/work/shared/github/rest-api-subset.json`` in ``tests/test_github_client.py``),
with one documented exception: ``agent_assignment`` on add-assignees (GitHub
changelog 2025-12-03, newer than the description), sent only when given.

Answers are GitHub's JSON as plain dicts (``dict[str, Any]``), lists for the
listings, which are paginated and conditional (ETag) page by page.

Which writes are retried after an uncertain failure (a timeout, a 5xx)
follows from what a duplicate would do: creating a label, a ref or adding
assignees again is refused or harmless, so those are retried; a second
issue, comment, pull or file commit is not, so those fail with
``GitHubUnavailable(maybe_applied=True)`` and the caller looks first.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from github_sink.errors import UnexpectedResponse
from github_sink.response import GitHubResponse, Params

if TYPE_CHECKING:
    from github_sink.settings import GitHubSettings

__all__ = ["RepoEndpoints"]

JSON = dict[str, Any]
StateFilter = Literal["open", "closed", "all"]


class RepoEndpoints:
    """Typed GitHub endpoints for ``settings.repo``; needs ``request`` and ``paginate``."""

    settings: GitHubSettings
    # Provided by GitHubClient, the one place that does IO.
    request: Callable[..., GitHubResponse]
    paginate: Callable[..., Iterator[Any]]

    # -- helpers ---------------------------------------------------------------

    def _repo_path(self, *parts: str) -> str:
        owner, _, name = self.settings.repo.partition("/")
        return "/".join([f"/repos/{quote(owner, safe='')}/{quote(name, safe='')}", *parts])

    def _object(self, method: str, path: str, **kwargs: Any) -> JSON:
        answer = self.request(method, path, **kwargs)
        if not isinstance(answer.json, dict):
            raise UnexpectedResponse(
                f"{method} {path} answered {answer.status} without a JSON object",
                status=answer.status,
                method=method,
                route=path,
            )
        return answer.json

    def _list(self, path: str, params: Params) -> list[JSON]:
        return [item for item in self.paginate(path, params) if isinstance(item, dict)]

    # -- repository ------------------------------------------------------------

    def get_repo(self) -> JSON:
        """``GET /repos/{owner}/{repo}``: ``default_branch``, ``has_issues``, ``permissions``..."""
        return self._object("GET", self._repo_path())

    # -- issues ------------------------------------------------------------------

    def list_issues(
        self,
        labels: str | Iterable[str] = (),
        state: StateFilter = "all",
        per_page: int = 100,
        *,
        since: str | None = None,
    ) -> list[JSON]:
        """Every issue with all of ``labels`` (pull requests included: they carry ``pull_request``).

        Consistent, unlike search; each page is ETag-conditional, so an
        unchanged listing costs no rate limit.
        """
        names = [labels] if isinstance(labels, str) else list(labels)
        params: dict[str, str | int] = {"state": state, "per_page": per_page}
        if names:
            params["labels"] = ",".join(names)
        if since is not None:
            params["since"] = since
        return self._list(self._repo_path("issues"), params)

    def get_issue(self, number: int) -> JSON:
        """``GET /repos/{owner}/{repo}/issues/{number}`` (ETag-conditional)."""
        return self._object("GET", self._repo_path("issues", str(int(number))))

    def create_issue(self, title: str, body: str, labels: Sequence[str] = ()) -> JSON:
        """Open an issue; the labels must exist (see :meth:`create_label`). Not retried
        after an uncertain failure: look for the issue's marker before creating again."""
        payload: JSON = {"title": title, "body": body}
        if labels:
            payload["labels"] = list(labels)
        return self._object("POST", self._repo_path("issues"), json=payload)

    def update_issue(
        self,
        number: int,
        *,
        title: str | None = None,
        body: str | None = None,
        state: Literal["open", "closed"] | None = None,
        state_reason: Literal["completed", "not_planned", "duplicate", "reopened"] | None = None,
        labels: Sequence[str] | None = None,
    ) -> JSON:
        """Change the given fields only (``labels`` replaces the set)."""
        payload: JSON = {}
        for key, value in (
            ("title", title),
            ("body", body),
            ("state", state),
            ("state_reason", state_reason),
        ):
            if value is not None:
                payload[key] = value
        if labels is not None:
            payload["labels"] = list(labels)
        if not payload:
            raise ValueError("update_issue needs at least one field to change")
        return self._object("PATCH", self._repo_path("issues", str(int(number))), json=payload)

    def create_comment(self, number: int, body: str) -> JSON:
        """Comment on issue (or pull) ``number``. Not retried after an uncertain failure."""
        path = self._repo_path("issues", str(int(number)), "comments")
        return self._object("POST", path, json={"body": body})

    def list_comments(self, number: int, *, since: str | None = None) -> list[JSON]:
        """The comments on issue ``number``, oldest first; ``since`` is ISO 8601."""
        params: dict[str, str | int] = {"per_page": 100}
        if since is not None:
            params["since"] = since
        return self._list(self._repo_path("issues", str(int(number)), "comments"), params)

    def add_assignees(
        self,
        number: int,
        assignees: Sequence[str],
        agent_assignment: Mapping[str, str] | None = None,
    ) -> JSON:
        """Add ``assignees`` to issue ``number``.

        ``agent_assignment`` (``target_repo``, ``base_branch``,
        ``custom_instructions``) hands the issue to the Copilot coding agent
        when ``assignees`` holds ``copilot-swe-agent[bot]``; such a request is
        not retried after an uncertain failure (it may start the agent twice).
        """
        payload: JSON = {"assignees": list(assignees)}
        if agent_assignment is not None:
            payload["agent_assignment"] = dict(agent_assignment)
        path = self._repo_path("issues", str(int(number)), "assignees")
        return self._object("POST", path, json=payload, idempotent=agent_assignment is None)

    # -- labels -------------------------------------------------------------------

    def list_labels(self) -> list[JSON]:
        """Every label of the repository."""
        return self._list(self._repo_path("labels"), {"per_page": 100})

    def create_label(self, name: str, color: str, description: str | None = None) -> JSON:
        """Create a label; one that exists raises ``ValidationFailed`` with ``already_exists``."""
        payload: JSON = {"name": name, "color": color.lstrip("#")}
        if description is not None:
            payload["description"] = description
        return self._object("POST", self._repo_path("labels"), json=payload, idempotent=True)

    # -- git refs and contents ------------------------------------------------------

    def get_ref(self, branch: str) -> JSON:
        """A branch's ref (``object.sha`` is its head); ``branch`` may be ``main``,
        ``heads/main`` or ``refs/heads/main``. A missing branch raises ``NotFound``."""
        ref = branch.removeprefix("refs/")
        if not ref.startswith(("heads/", "tags/")):
            ref = f"heads/{ref}"
        return self._object("GET", self._repo_path("git", "ref", quote(ref, safe="/")))

    def create_ref(self, ref: str, sha: str) -> JSON:
        """Create ``ref`` (``refs/heads/NAME``, or just ``NAME`` for a branch) at ``sha``.

        A ref that exists raises ``ValidationFailed`` with ``already_exists``:
        GitHub's compare-and-set, so this is retried after uncertain failures.
        """
        full = ref if ref.startswith("refs/") else f"refs/heads/{ref}"
        payload = {"ref": full, "sha": sha}
        return self._object("POST", self._repo_path("git", "refs"), json=payload, idempotent=True)

    def get_contents(self, path: str, ref: str | None = None) -> JSON:
        """A file's ``content`` (base64) and ``sha`` at ``ref``; missing: ``NotFound``."""
        params: dict[str, str | int] = {} if ref is None else {"ref": ref}
        route = self._repo_path("contents", quote(path.lstrip("/"), safe="/"))
        return self._object("GET", route, params=params or None)

    def put_contents(
        self,
        path: str,
        message: str,
        content: bytes,
        branch: str,
        sha: str | None = None,
    ) -> JSON:
        """Commit ``content`` to ``path`` on ``branch``; ``sha`` is the blob being replaced.

        A stale ``sha`` raises ``Conflict``; a missing one for an existing
        file ``ValidationFailed``. Not retried after an uncertain failure.
        """
        payload: JSON = {
            "message": message,
            "content": base64.b64encode(content).decode("ascii"),
            "branch": branch,
        }
        if sha is not None:
            payload["sha"] = sha
        route = self._repo_path("contents", quote(path.lstrip("/"), safe="/"))
        return self._object("PUT", route, json=payload, idempotent=False)

    # -- pulls ----------------------------------------------------------------------

    def list_pulls(
        self, head: str | None = None, state: StateFilter = "all", per_page: int = 100
    ) -> list[JSON]:
        """Pull requests, optionally from ``head`` (``owner:branch``; a bare branch
        is taken to be in this repository)."""
        params: dict[str, str | int] = {"state": state, "per_page": per_page}
        if head is not None:
            params["head"] = head if ":" in head else f"{self.settings.owner}:{head}"
        return self._list(self._repo_path("pulls"), params)

    def create_pull(
        self, title: str, head: str, base: str, body: str = "", draft: bool = True
    ) -> JSON:
        """Open a pull request (a draft by default). Not retried after an uncertain failure."""
        payload = {"title": title, "head": head, "base": base, "body": body, "draft": draft}
        return self._object("POST", self._repo_path("pulls"), json=payload)
