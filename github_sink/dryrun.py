"""What a dry run prints instead of a write, and the answer it pretends to get. Pure.

In dry-run mode the client sends reads but no write. Each write is printed
(method, full URL, JSON body; never a header, so never the token) and
answered by :func:`synthetic_answer` with something shaped like GitHub's
answer, so the caller carries on as it would for real:

- every answer has ``"dry_run": true``, ``id`` 0, ``node_id``, ``url`` and
  ``html_url`` ``"dry-run"``;
- the request body is echoed back, with ``labels`` and ``assignees`` as
  objects (``{"name": ...}``, ``{"login": ...}``) as GitHub returns them;
- ``number`` is the issue or pull number of the route, else 0 (a created
  issue or pull is number 0: later writes to issue 0 are printed as well);
- a created ref answers ``{"ref", "object": {"sha", "type": "commit"}}``; a
  file write answers ``{"content": {"path", "sha"}, "commit": {"sha"}}``
  with the all-zero sha; a pull answers ``head``/``base`` as ``{"ref"}``;
- POST and PUT answer 201, PATCH 200, DELETE 204 with no body.

Without a token a dry run cannot read either: :func:`synthetic_read` makes
the repository look empty (no issues, labels, pulls or comments; branch
``main`` at the all-zero sha), so the dry run prints everything a first
run against an empty repository would send.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = ["ZERO_SHA", "format_write", "synthetic_answer", "synthetic_read"]

ZERO_SHA = "0" * 40
_NUMBER = re.compile(r"/(?:issues|pulls)/(\d+)(?:/|$)")
_CONTENTS = re.compile(r"^/repos/[^/]+/[^/]+/contents/(.+)$")
_REFS = re.compile(r"^/repos/[^/]+/[^/]+/git/refs(?:/|$)")
_PULLS = re.compile(r"^/repos/[^/]+/[^/]+/pulls(?:/\d+)?$")


def format_write(method: str, url: str, body: Any) -> str:
    """The text printed for one write that a dry run does not send."""
    text = f"[errmesh dry-run] {method} {url}\n"
    if body is not None:
        text += json.dumps(body, indent=2, ensure_ascii=False) + "\n"
    return text


def synthetic_answer(method: str, route: str, body: Any) -> tuple[int, Any]:
    """``(status, json)`` of a plausible answer to a write that was not sent."""
    method = method.upper()
    if method == "DELETE":
        return 204, None
    status = 200 if method == "PATCH" else 201
    sent: dict[str, Any] = dict(body) if isinstance(body, dict) else {}
    found = _NUMBER.search(route)
    answer: dict[str, Any] = {
        "id": 0,
        "node_id": "dry-run",
        "number": int(found.group(1)) if found else 0,
        "url": "dry-run",
        "html_url": "dry-run",
        "dry_run": True,
    }
    contents = _CONTENTS.match(route)
    if contents:
        path = contents.group(1)
        answer["content"] = {
            "name": path.rsplit("/", 1)[-1],
            "path": path,
            "sha": ZERO_SHA,
            "html_url": "dry-run",
        }
        answer["commit"] = {"sha": ZERO_SHA, "html_url": "dry-run", "message": sent.get("message")}
        return status, answer
    if _REFS.match(route):
        ref = sent.get("ref") or "refs/" + route.split("/git/refs/", 1)[-1]
        answer.update(ref=ref, object={"sha": sent.get("sha", ZERO_SHA), "type": "commit"})
        return status, answer
    for key, value in sent.items():
        if key == "labels" and isinstance(value, list):
            answer[key] = [v if isinstance(v, dict) else {"name": str(v)} for v in value]
        elif key == "assignees" and isinstance(value, list):
            answer[key] = [v if isinstance(v, dict) else {"login": str(v)} for v in value]
        else:
            answer[key] = value
    if _PULLS.match(route):
        for key in ("head", "base"):
            if isinstance(sent.get(key), str):
                answer[key] = {"ref": sent[key].rsplit(":", 1)[-1], "label": sent[key]}
    if method == "POST" and "title" in sent:
        answer.setdefault("state", "open")
    return status, answer


_LISTS = re.compile(r"/(?:issues|labels|pulls|comments)$")


def synthetic_read(route: str, repo: str) -> tuple[int, Any]:
    """The answer to a read in a dry run without a token: an empty repository."""
    if _LISTS.search(route):
        return 200, []
    if route == f"/repos/{repo}":
        return 200, {"full_name": repo, "default_branch": "main", "dry_run": True}
    if "/git/ref/" in route:
        return 200, {"ref": route.split("/git/ref/", 1)[1], "object": {"sha": ZERO_SHA}}
    return 404, {"message": "Not Found"}
