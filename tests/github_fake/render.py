"""The JSON GitHub sends for each object, drawn from the model.

Clients parse more than they ask for (``html_url``, ``node_id``, the nested
``user``), so answers are full objects that validate against the documented
response schemas; :mod:`.app` checks every answer against them, which keeps
this module honest when the description changes.

URLs point at the fake itself (``Urls`` is built from the request's host), so
a client that follows an ``url`` field stays on the fake.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

from .git import Commit, FileWrite
from .state import COPILOT, Comment, Issue, Label, Repository

Json = dict[str, Any]


@dataclass(frozen=True)
class Urls:
    """Roots of the API (``http://host/api/v3``) and of the web pages (``http://host``)."""

    api: str
    web: str

    def repo(self, repo: Repository) -> str:
        return f"{self.api}/repos/{repo.full_name}"

    def repo_web(self, repo: Repository) -> str:
        return f"{self.web}/{repo.full_name}"


def iso(t: float) -> str:
    """Seconds since the epoch as GitHub writes them: ``2024-05-01T12:00:00Z``."""
    return datetime.fromtimestamp(t, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def node_id(kind: str, ident: int | str) -> str:
    return kind + "_" + base64.b64encode(f"fake:{kind}:{ident}".encode()).decode().rstrip("=")


def user_id(login: str) -> int:
    return int(hashlib.sha1(login.encode()).hexdigest()[:7], 16)


def user(login: str, urls: Urls) -> Json:
    base = f"{urls.api}/users/{login}"
    return {
        "login": login,
        "id": user_id(login),
        "node_id": node_id("U", login),
        "avatar_url": f"{urls.web}/avatars/{user_id(login)}",
        "gravatar_id": "",
        "url": base,
        "html_url": f"{urls.web}/{login}",
        "followers_url": f"{base}/followers",
        "following_url": f"{base}/following{{/other_user}}",
        "gists_url": f"{base}/gists{{/gist_id}}",
        "starred_url": f"{base}/starred{{/owner}}{{/repo}}",
        "subscriptions_url": f"{base}/subscriptions",
        "organizations_url": f"{base}/orgs",
        "repos_url": f"{base}/repos",
        "events_url": f"{base}/events{{/privacy}}",
        "received_events_url": f"{base}/received_events",
        "type": "Bot" if login == COPILOT or login.endswith("[bot]") else "User",
        "user_view_type": "public",
        "site_admin": False,
    }


def repository(repo: Repository, urls: Urls, *, pushed_at: float) -> Json:
    """The full repository object (``GET /repos/{o}/{r}``, and inside pulls)."""
    api, web = urls.repo(repo), urls.repo_web(repo)
    host = urls.web.split("://", 1)[-1]
    open_count = sum(1 for i in repo.issues.values() if i.state == "open")
    out: Json = {
        "id": repo.id,
        "node_id": node_id("R", repo.id),
        "name": repo.name,
        "full_name": repo.full_name,
        "owner": user(repo.owner, urls),
        "private": True,
        "html_url": web,
        "description": "A repository played by tests.github_fake",
        "fork": False,
        "url": api,
        "homepage": None,
        "language": "Python",
        "mirror_url": None,
        "license": None,
        "clone_url": f"{web}.git",
        "git_url": f"git://{host}/{repo.full_name}.git",
        "ssh_url": f"git@{host}:{repo.full_name}.git",
        "svn_url": web,
        "default_branch": repo.default_branch,
        "forks": 0,
        "forks_count": 0,
        "stargazers_count": 0,
        "watchers": 0,
        "watchers_count": 0,
        "size": 1,
        "open_issues": open_count,
        "open_issues_count": open_count,
        "network_count": 0,
        "subscribers_count": 0,
        "has_issues": True,
        "has_projects": False,
        "has_wiki": False,
        "has_pages": False,
        "has_downloads": False,
        "has_discussions": False,
        "archived": False,
        "disabled": False,
        "visibility": "private",
        "topics": [],
        "allow_forking": False,
        "is_template": False,
        "created_at": iso(repo.created_at),
        "updated_at": iso(pushed_at),
        "pushed_at": iso(pushed_at),
        "permissions": {
            "admin": False,
            "maintain": False,
            "push": True,
            "triage": True,
            "pull": True,
        },
    }
    plain = {
        "archive": "/{archive_format}{/ref}",
        "assignees": "/assignees{/user}",
        "blobs": "/git/blobs{/sha}",
        "branches": "/branches{/branch}",
        "collaborators": "/collaborators{/collaborator}",
        "comments": "/comments{/number}",
        "commits": "/commits{/sha}",
        "compare": "/compare/{base}...{head}",
        "contents": "/contents/{+path}",
        "contributors": "/contributors",
        "deployments": "/deployments",
        "downloads": "/downloads",
        "events": "/events",
        "forks": "/forks",
        "git_commits": "/git/commits{/sha}",
        "git_refs": "/git/refs{/sha}",
        "git_tags": "/git/tags{/sha}",
        "hooks": "/hooks",
        "issue_comment": "/issues/comments{/number}",
        "issue_events": "/issues/events{/number}",
        "issues": "/issues{/number}",
        "keys": "/keys{/key_id}",
        "labels": "/labels{/name}",
        "languages": "/languages",
        "merges": "/merges",
        "milestones": "/milestones{/number}",
        "notifications": "/notifications{?since,all,participating}",
        "pulls": "/pulls{/number}",
        "releases": "/releases{/id}",
        "stargazers": "/stargazers",
        "statuses": "/statuses/{sha}",
        "subscribers": "/subscribers",
        "subscription": "/subscription",
        "tags": "/tags",
        "teams": "/teams",
        "trees": "/git/trees{/sha}",
    }
    for name, suffix in plain.items():
        out[f"{name}_url"] = api + suffix
    return out


def label(lab: Label, repo: Repository, urls: Urls) -> Json:
    return {
        "id": lab.id,
        "node_id": node_id("LA", lab.id),
        "url": f"{urls.repo(repo)}/labels/{lab.name}",
        "name": lab.name,
        "color": lab.color,
        "description": lab.description,
        "default": lab.default,
    }


def issue(item: Issue, repo: Repository, urls: Urls) -> Json:
    """An issue as the issues endpoints answer it (a pull gets ``pull_request``)."""
    api = f"{urls.repo(repo)}/issues/{item.number}"
    kind = "pull" if item.is_pull else "issues"
    labels = [label(lab, repo, urls) for n in item.labels if (lab := repo.label(n)) is not None]
    assignees = [user(login, urls) for login in item.assignees]
    out: Json = {
        "id": item.id,
        "node_id": node_id("PR" if item.is_pull else "I", item.id),
        "url": api,
        "repository_url": urls.repo(repo),
        "labels_url": f"{api}/labels{{/name}}",
        "comments_url": f"{api}/comments",
        "events_url": f"{api}/events",
        "html_url": f"{urls.repo_web(repo)}/{kind}/{item.number}",
        "timeline_url": f"{api}/timeline",
        "number": item.number,
        "state": item.state,
        "state_reason": item.state_reason,
        "title": item.title,
        "body": item.body,
        "user": user(item.user, urls),
        "labels": labels,
        "assignee": assignees[0] if assignees else None,
        "assignees": assignees,
        "milestone": None,
        "locked": item.locked,
        "active_lock_reason": None,
        "comments": len(item.comments),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "closed_at": iso(item.closed_at) if item.closed_at is not None else None,
        "closed_by": user(item.closed_by, urls) if item.closed_by else None,
        "author_association": "OWNER" if item.user == repo.owner else "MEMBER",
        "reactions": _reactions(f"{api}/reactions"),
    }
    if item.pull is not None:
        pull_api = f"{urls.repo(repo)}/pulls/{item.number}"
        out["draft"] = item.pull.draft
        out["pull_request"] = {
            "url": pull_api,
            "html_url": out["html_url"],
            "diff_url": f"{out['html_url']}.diff",
            "patch_url": f"{out['html_url']}.patch",
            "merged_at": None,
        }
    return out


def _reactions(url: str) -> Json:
    counts = dict.fromkeys(
        ("+1", "-1", "laugh", "confused", "heart", "hooray", "eyes", "rocket"), 0
    )
    return {"url": url, "total_count": 0, **counts}


def comment(item: Comment, repo: Repository, urls: Urls) -> Json:
    api = f"{urls.repo(repo)}/issues/comments/{item.id}"
    return {
        "id": item.id,
        "node_id": node_id("IC", item.id),
        "url": api,
        "html_url": f"{urls.repo_web(repo)}/issues/{item.issue_number}#issuecomment-{item.id}",
        "issue_url": f"{urls.repo(repo)}/issues/{item.issue_number}",
        "body": item.body,
        "user": user(item.user, urls),
        "created_at": iso(item.created_at),
        "updated_at": iso(item.updated_at),
        "author_association": "MEMBER",
        "reactions": _reactions(f"{api}/reactions"),
    }


def pull(item: Issue, repo: Repository, urls: Urls, *, full: bool) -> Json:
    """A pull as the pulls endpoints answer it (``full`` adds the single-pull fields)."""
    assert item.pull is not None
    p = item.pull
    api = f"{urls.repo(repo)}/pulls/{item.number}"
    web = f"{urls.repo_web(repo)}/pull/{item.number}"
    issue_api = f"{urls.repo(repo)}/issues/{item.number}"
    repo_json = repository(repo, urls, pushed_at=item.updated_at)
    base = issue(item, repo, urls)
    out: Json = {
        "url": api,
        "id": p.id,
        "node_id": node_id("PR_kw", p.id),
        "html_url": web,
        "diff_url": f"{web}.diff",
        "patch_url": f"{web}.patch",
        "issue_url": issue_api,
        "commits_url": f"{api}/commits",
        "review_comments_url": f"{api}/comments",
        "review_comment_url": f"{urls.repo(repo)}/pulls/comments{{/number}}",
        "comments_url": f"{issue_api}/comments",
        "statuses_url": f"{urls.repo(repo)}/statuses/{p.head_sha}",
        "number": item.number,
        "state": item.state,
        "locked": item.locked,
        "title": item.title,
        "user": base["user"],
        "body": item.body,
        "labels": base["labels"],
        "milestone": None,
        "active_lock_reason": None,
        "created_at": base["created_at"],
        "updated_at": base["updated_at"],
        "closed_at": base["closed_at"],
        "merged_at": None,
        "merge_commit_sha": None,
        "assignee": base["assignee"],
        "assignees": base["assignees"],
        "requested_reviewers": [],
        "requested_teams": [],
        "head": _branch_end(repo, p.head, p.head_sha, repo_json, urls),
        "base": _branch_end(repo, p.base, p.base_sha, repo_json, urls),
        "_links": {
            name: {"href": href}
            for name, href in {
                "self": api,
                "html": web,
                "issue": issue_api,
                "comments": f"{issue_api}/comments",
                "review_comments": f"{api}/comments",
                "review_comment": f"{urls.repo(repo)}/pulls/comments{{/number}}",
                "commits": f"{api}/commits",
                "statuses": f"{urls.repo(repo)}/statuses/{p.head_sha}",
            }.items()
        },
        "author_association": base["author_association"],
        "auto_merge": None,
        "draft": p.draft,
    }
    if full:
        out.update(
            merged=False,
            mergeable=None,
            rebaseable=None,
            mergeable_state="unknown",
            merged_by=None,
            comments=len(item.comments),
            review_comments=0,
            maintainer_can_modify=p.maintainer_can_modify,
            commits=1,
            additions=0,
            deletions=0,
            changed_files=0,
        )
    return out


def _branch_end(repo: Repository, ref: str, sha: str, repo_json: Json, urls: Urls) -> Json:
    return {
        "label": f"{repo.owner}:{ref}",
        "ref": ref,
        "sha": sha,
        "user": user(repo.owner, urls),
        "repo": repo_json,
    }


def git_ref(repo: Repository, full_ref: str, sha: str, urls: Urls) -> Json:
    return {
        "ref": full_ref,
        "node_id": node_id("REF", full_ref),
        "url": f"{urls.repo(repo)}/git/{full_ref}",
        "object": {"type": "commit", "sha": sha, "url": f"{urls.repo(repo)}/git/commits/{sha}"},
    }


def content_entry(repo: Repository, path: str, sha: str, size: int, ref: str, urls: Urls) -> Json:
    """A file as listed in a directory (no ``content``)."""
    api = f"{urls.repo(repo)}/contents/{path}?ref={ref}"
    web = f"{urls.repo_web(repo)}/blob/{ref}/{path}"
    git = f"{urls.repo(repo)}/git/blobs/{sha}"
    return {
        "type": "file",
        "name": path.rsplit("/", 1)[-1],
        "path": path,
        "sha": sha,
        "size": size,
        "url": api,
        "html_url": web,
        "git_url": git,
        "download_url": f"{urls.web}/raw/{repo.full_name}/{ref}/{path}",
        "_links": {"self": api, "git": git, "html": web},
    }


def content_file(repo: Repository, path: str, sha: str, data: bytes, ref: str, urls: Urls) -> Json:
    out = content_entry(repo, path, sha, len(data), ref, urls)
    out["encoding"] = "base64"
    out["content"] = base64.encodebytes(data).decode()
    return out


def _commit(repo: Repository, commit: Commit, urls: Urls, person: Json) -> Json:
    api = f"{urls.repo(repo)}/git/commits/{commit.sha}"
    return {
        "sha": commit.sha,
        "node_id": node_id("C", commit.sha),
        "url": api,
        "html_url": f"{urls.repo_web(repo)}/commit/{commit.sha}",
        "author": person,
        "committer": person,
        "message": commit.message,
        "tree": {"sha": commit.tree_sha, "url": f"{urls.repo(repo)}/git/trees/{commit.tree_sha}"},
        "parents": [
            {
                "sha": p,
                "url": f"{urls.repo(repo)}/git/commits/{p}",
                "html_url": f"{urls.repo_web(repo)}/commit/{p}",
            }
            for p in commit.parents
        ],
        "verification": {
            "verified": False,
            "reason": "unsigned",
            "signature": None,
            "payload": None,
            "verified_at": None,
        },
    }


def file_commit(repo: Repository, write: FileWrite, branch: str, login: str, urls: Urls) -> Json:
    """The answer to ``PUT /contents/{path}``."""
    person = {
        "name": login,
        "email": f"{login}@users.noreply.github.test",
        "date": iso(write.commit.time),
    }
    return {
        "content": content_entry(repo, write.path, write.blob_sha, write.size, branch, urls),
        "commit": _commit(repo, write.commit, urls, person),
    }


def branch(repo: Repository, name: str, commit: Commit, urls: Urls) -> Json:
    api = f"{urls.repo(repo)}/branches/{name}"
    person = {
        "name": repo.owner,
        "email": f"{repo.owner}@users.noreply.github.test",
        "date": iso(commit.time),
    }
    commit_api = f"{urls.repo(repo)}/commits/{commit.sha}"
    return {
        "name": name,
        "commit": {
            "sha": commit.sha,
            "node_id": node_id("C", commit.sha),
            "url": commit_api,
            "html_url": f"{urls.repo_web(repo)}/commit/{commit.sha}",
            "comments_url": f"{commit_api}/comments",
            "commit": {
                "author": person,
                "committer": person,
                "message": commit.message,
                "comment_count": 0,
                "tree": {
                    "sha": commit.tree_sha,
                    "url": f"{urls.repo(repo)}/git/trees/{commit.tree_sha}",
                },
                "url": f"{urls.repo(repo)}/git/commits/{commit.sha}",
            },
            "author": user(repo.owner, urls),
            "committer": user(repo.owner, urls),
            "parents": [
                {"sha": p, "url": f"{urls.repo(repo)}/commits/{p}"} for p in commit.parents
            ],
        },
        "_links": {"self": api, "html": f"{urls.repo_web(repo)}/tree/{name}"},
        "protected": False,
        "protection": {
            "enabled": False,
            "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []},
        },
        "protection_url": f"{api}/protection",
    }
