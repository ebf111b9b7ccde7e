"""One handler per GitHub operation: request in, status and JSON out.

By the time a handler runs, :mod:`.app` has checked the request against the
OpenAPI description, authenticated it, found the repository and charged the
rate limit, so handlers only map fields onto :mod:`.state` and draw answers
with :mod:`.render`. Refusals are raised as :class:`.errors.ApiError`.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

from . import render
from .errors import ApiError, not_found, validation_failed
from .ratelimit import RateLimits
from .state import Issue, Repository

MAX_PER_PAGE = 100
DEFAULT_PER_PAGE = 30


@dataclass(frozen=True)
class Token:
    """A token the fake accepts, and what it may do.

    ``read_only`` tokens get 403 on every mutation; only ``user_to_server``
    tokens (PAT, OAuth, App user tokens) can start the Copilot coding agent,
    as on GitHub: assigning Copilot with another token is silently dropped.
    """

    value: str
    login: str = "errmesh-bot"
    read_only: bool = False
    user_to_server: bool = True


@dataclass
class Request:
    """What a handler needs: the parsed request and the world it acts on."""

    operation_id: str
    path: str
    params: dict[str, str]
    query: list[tuple[str, str]]
    body: Any
    repo: Repository | None
    repos: Sequence[Repository]
    token: Token
    now: float
    urls: render.Urls
    limits: RateLimits

    def arg(self, name: str, default: str | None = None) -> str | None:
        """The last value of query parameter ``name``."""
        found = [v for k, v in self.query if k == name]
        return found[-1] if found else default

    def int_param(self, name: str) -> int:
        return int(self.params[name])

    @property
    def the_repo(self) -> Repository:
        assert self.repo is not None, "routes with {owner}/{repo} always have one"
        return self.repo


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def paginate(req: Request, items: Sequence[Any]) -> tuple[Sequence[Any], dict[str, str]]:
    """One page of ``items`` and its RFC 5988 ``Link`` header, as GitHub pages lists."""
    per_page = min(MAX_PER_PAGE, max(1, int(req.arg("per_page") or DEFAULT_PER_PAGE)))
    page = max(1, int(req.arg("page") or 1))
    last = max(1, -(-len(items) // per_page))
    chunk = items[(page - 1) * per_page : page * per_page]

    def url(n: int) -> str:
        pairs = [(k, v) for k, v in req.query if k != "page"] + [("page", str(n))]
        return f"{req.urls.api}{req.path}?{urlencode(pairs)}"

    links = []
    if page > 1:
        links.append(f'<{url(min(page - 1, last))}>; rel="prev"')
    if page < last:
        links.append(f'<{url(page + 1)}>; rel="next"')
        links.append(f'<{url(last)}>; rel="last"')
    if page > 1:
        links.append(f'<{url(1)}>; rel="first"')
    return chunk, ({"Link": ", ".join(links)} if links else {})


def _epoch(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def _created(req: Request, body: Any, location: str) -> Reply:
    return Reply(201, body, {"Location": location})


# -- repository, branches, contents, refs ----------------------------------


def get_repo(req: Request) -> Reply:
    repo = req.the_repo
    pushed = max([c.time for c in repo.git.commits.values()] + [repo.created_at])
    return Reply(200, render.repository(repo, req.urls, pushed_at=pushed))


def get_branch(req: Request) -> Reply:
    repo = req.the_repo
    commit = repo.git.branch_head(req.params["branch"])
    if commit is None:
        raise ApiError(404, "Branch not found")
    return Reply(200, render.branch(repo, req.params["branch"], commit, req.urls))


def get_content(req: Request) -> Reply:
    repo = req.the_repo
    ref = req.arg("ref") or repo.default_branch
    found = repo.git.read(req.params["path"], ref)
    if found is None:
        raise not_found()
    if isinstance(found, tuple):
        sha, data = found
        return Reply(
            200, render.content_file(repo, req.params["path"].strip("/"), sha, data, ref, req.urls)
        )
    return Reply(
        200,
        [render.content_entry(repo, path, sha, size, ref, req.urls) for path, sha, size in found],
    )


def put_content(req: Request) -> Reply:
    repo, body = req.the_repo, req.body
    try:
        data = base64.b64decode(body["content"], validate=True)
    except (binascii.Error, ValueError):
        raise validation_failed(
            "Contents", "content", "invalid", "content is not valid Base64"
        ) from None
    branch = body.get("branch") or repo.default_branch
    write = repo.git.write(
        req.params["path"],
        data,
        branch=branch,
        sha=body.get("sha"),
        message=body["message"],
        now=req.now,
    )
    answer = render.file_commit(repo, write, branch, req.token.login, req.urls)
    return Reply(201 if write.created else 200, answer)


def get_ref(req: Request) -> Reply:
    repo = req.the_repo
    full, sha = repo.git.get_ref(req.params["ref"])
    return Reply(200, render.git_ref(repo, full, sha, req.urls))


def create_ref(req: Request) -> Reply:
    repo = req.the_repo
    full = repo.git.create_ref(req.body["ref"], req.body["sha"])
    answer = render.git_ref(repo, full, req.body["sha"], req.urls)
    return _created(req, answer, answer["url"])


def update_ref(req: Request) -> Reply:
    repo = req.the_repo
    full = repo.git.update_ref(
        req.params["ref"], req.body["sha"], force=bool(req.body.get("force"))
    )
    return Reply(200, render.git_ref(repo, full, req.body["sha"], req.urls))


def delete_ref(req: Request) -> Reply:
    req.the_repo.git.delete_ref(req.params["ref"])
    return Reply(204, None)


# -- issues, comments, labels, assignees -----------------------------------


def list_issues(req: Request) -> Reply:
    repo = req.the_repo
    since = req.arg("since")
    labels = [n.strip() for n in (req.arg("labels") or "").split(",") if n.strip()]
    items = repo.list_issues(
        state=req.arg("state") or "open",
        labels=labels,
        sort=req.arg("sort") or "created",
        direction=req.arg("direction") or "desc",
        since=_epoch(since) if since else None,
        creator=req.arg("creator"),
        assignee=req.arg("assignee"),
        milestone=req.arg("milestone"),
    )
    chunk, headers = paginate(req, items)
    return Reply(200, [render.issue(i, repo, req.urls) for i in chunk], headers)


def _issue_reply(req: Request, issue: Issue, status: int = 200) -> Reply:
    answer = render.issue(issue, req.the_repo, req.urls)
    if status == 201:
        return _created(req, answer, answer["url"])
    return Reply(status, answer)


def create_issue(req: Request) -> Reply:
    body = req.body
    issue = req.the_repo.create_issue(
        title=str(body["title"]),
        body=body.get("body"),
        labels=body.get("labels") or [],
        assignees=(body.get("assignees") or [])
        + ([body["assignee"]] if body.get("assignee") else []),
        user=req.token.login,
        now=req.now,
        may_start_agent=req.token.user_to_server,
    )
    return _issue_reply(req, issue, 201)


def get_issue(req: Request) -> Reply:
    return _issue_reply(req, req.the_repo.issue(req.int_param("issue_number")))


def update_issue(req: Request) -> Reply:
    issue = req.the_repo.update_issue(
        req.int_param("issue_number"),
        req.body or {},
        user=req.token.login,
        now=req.now,
        may_start_agent=req.token.user_to_server,
    )
    return _issue_reply(req, issue)


def add_assignees(req: Request) -> Reply:
    body = req.body or {}
    issue = req.the_repo.add_assignees(
        req.int_param("issue_number"),
        body.get("assignees") or [],
        agent_assignment=body.get("agent_assignment"),
        may_start_agent=req.token.user_to_server,
        now=req.now,
    )
    return _issue_reply(req, issue, 201)


def add_labels(req: Request) -> Reply:
    body = req.body
    names = body.get("labels", []) if isinstance(body, dict) else body or []
    if not isinstance(names, list):
        names = [names]
    labels = req.the_repo.add_labels(req.int_param("issue_number"), names, now=req.now)
    return Reply(200, [render.label(lab, req.the_repo, req.urls) for lab in labels])


def list_comments(req: Request) -> Reply:
    repo = req.the_repo
    issue = repo.issue(req.int_param("issue_number"))
    since = req.arg("since")
    items = [repo.comments[c] for c in issue.comments]
    if since:
        items = [c for c in items if c.updated_at >= _epoch(since)]
    chunk, headers = paginate(req, items)
    return Reply(200, [render.comment(c, repo, req.urls) for c in chunk], headers)


def create_comment(req: Request) -> Reply:
    repo = req.the_repo
    comment = repo.create_comment(
        req.int_param("issue_number"), req.body["body"], user=req.token.login, now=req.now
    )
    answer = render.comment(comment, repo, req.urls)
    return _created(req, answer, answer["url"])


def update_comment(req: Request) -> Reply:
    repo = req.the_repo
    comment = repo.update_comment(req.int_param("comment_id"), req.body["body"], now=req.now)
    return Reply(200, render.comment(comment, repo, req.urls))


def list_labels(req: Request) -> Reply:
    repo = req.the_repo
    chunk, headers = paginate(req, sorted(repo.labels.values(), key=lambda lab: lab.id))
    return Reply(200, [render.label(lab, repo, req.urls) for lab in chunk], headers)


def create_label(req: Request) -> Reply:
    repo, body = req.the_repo, req.body
    lab = repo.create_label(body["name"], body.get("color"), body.get("description"))
    answer = render.label(lab, repo, req.urls)
    return _created(req, answer, answer["url"])


# -- pulls ---------------------------------------------------------------


def list_pulls(req: Request) -> Reply:
    repo = req.the_repo
    items = repo.list_pulls(
        state=req.arg("state") or "open",
        head=req.arg("head"),
        base=req.arg("base"),
        sort=req.arg("sort") or "created",
        direction=req.arg("direction"),
    )
    chunk, headers = paginate(req, items)
    return Reply(200, [render.pull(i, repo, req.urls, full=False) for i in chunk], headers)


def create_pull(req: Request) -> Reply:
    repo, body = req.the_repo, req.body
    issue = repo.create_pull(
        title=body.get("title"),
        head=body["head"],
        base=body["base"],
        body=body.get("body"),
        draft=bool(body.get("draft")),
        maintainer_can_modify=bool(body.get("maintainer_can_modify", True)),
        issue_number=body.get("issue"),
        user=req.token.login,
        now=req.now,
    )
    answer = render.pull(issue, repo, req.urls, full=True)
    return _created(req, answer, answer["url"])


def get_pull(req: Request) -> Reply:
    repo = req.the_repo
    return Reply(
        200, render.pull(repo.pull(req.int_param("pull_number")), repo, req.urls, full=True)
    )


def update_pull(req: Request) -> Reply:
    repo = req.the_repo
    issue = repo.update_pull(
        req.int_param("pull_number"), req.body or {}, user=req.token.login, now=req.now
    )
    return Reply(200, render.pull(issue, repo, req.urls, full=True))


# -- search and rate limit -------------------------------------------------

_TOKEN = re.compile(r'(\w[\w-]*):("[^"]*"|\S+)|"([^"]*)"|(\S+)')


def parse_query(q: str) -> tuple[list[str], dict[str, list[str]]]:
    """``repo:o/r is:issue "some words" bare`` -> (words, {qualifier: values})."""
    words: list[str] = []
    qualifiers: dict[str, list[str]] = {}
    for key, value, quoted, bare in _TOKEN.findall(q):
        if key:
            qualifiers.setdefault(key.lower(), []).append(value.strip('"'))
        elif quoted or bare:
            words.append(quoted or bare)
    return words, qualifiers


def search_issues(req: Request) -> Reply:
    words, qualifiers = parse_query(req.arg("q") or "")
    if "in" in qualifiers:
        qualifiers.pop("in")  # title and body are always searched
    repos = [
        r for r in req.repos if not qualifiers.get("repo") or r.full_name in qualifiers["repo"]
    ]
    found = [(r, i) for r in repos for i in r.search(words, qualifiers, now=req.now)]
    order = req.arg("order") or "desc"
    found.sort(key=lambda ri: (ri[1].created_at, ri[1].number), reverse=order == "desc")
    chunk, headers = paginate(req, found)
    items = [{**render.issue(i, r, req.urls), "score": 1.0} for r, i in chunk]
    answer = {
        "total_count": len(found),
        "incomplete_results": False,
        "items": items,
        "search_type": "lexical",
    }
    return Reply(200, answer, headers)


def rate_limit(req: Request) -> Reply:
    core = req.limits.bucket(req.token.value, "core").as_json()
    search = req.limits.bucket(req.token.value, "search").as_json()
    return Reply(200, {"resources": {"core": core, "search": search}, "rate": core})


HANDLERS: dict[str, Callable[[Request], Reply]] = {
    "rate-limit/get": rate_limit,
    "repos/get": get_repo,
    "repos/get-branch": get_branch,
    "repos/get-content": get_content,
    "repos/create-or-update-file-contents": put_content,
    "git/get-ref": get_ref,
    "git/create-ref": create_ref,
    "git/update-ref": update_ref,
    "git/delete-ref": delete_ref,
    "issues/list-for-repo": list_issues,
    "issues/create": create_issue,
    "issues/get": get_issue,
    "issues/update": update_issue,
    "issues/add-assignees": add_assignees,
    "issues/add-labels": add_labels,
    "issues/list-comments": list_comments,
    "issues/create-comment": create_comment,
    "issues/update-comment": update_comment,
    "issues/list-labels-for-repo": list_labels,
    "issues/create-label": create_label,
    "pulls/list": list_pulls,
    "pulls/create": create_pull,
    "pulls/get": get_pull,
    "pulls/update": update_pull,
    "search/issues-and-pull-requests": search_issues,
}


def dispatch(req: Request) -> Reply:
    """Run the handler for ``req.operation_id``; ApiError becomes GitHub's error answer."""
    handler = HANDLERS.get(req.operation_id)
    if handler is None:
        raise ApiError(404, "Not Found")
    try:
        return handler(req)
    except ApiError as exc:
        return Reply(exc.status, exc.body())
