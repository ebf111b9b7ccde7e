"""The test GitHub of a cluster: ``tests.github_fake`` served inside the bridge namespace.

Every host reaches it at ``http://10.99.0.1:PORT`` over its veth (so a
host whose link is down cannot), nothing outside the run's namespaces can.
Each host's relay gets its own token (``tok-h<i>``, one bot account as in a
real fleet): the fake's records say what was asked and when, the token says
who asked, which is what the checker needs to tell a stale leader's write.
"""

from __future__ import annotations

import contextlib
import re
from dataclasses import dataclass
from typing import Any

from scripts.cluster.netns import BRIDGE_ADDR, entered
from tests.github_fake import GitHubApp, Token, serve

__all__ = ["REPO", "ClusterGitHub", "Write", "token_of"]

REPO = "octo-org/fleet"
_MARKER = re.compile(r"<!-- errmesh:sig=([0-9a-f]{32}) -->")
_TOTALS = (re.compile(r"\*\*Occurrences:\*\* (\d+)"), re.compile(r"\*\*(\d+)\*\* in total"))


def token_of(host: int) -> str:
    return f"tok-h{host}"


@dataclass(frozen=True)
class Write:
    """One mutating request GitHub received: when, from which host, what, its answer."""

    time: float
    host: int
    route: str
    status: int | None
    fault: str | None


class RecordingGitHub(GitHubApp):
    """The fake, remembering which token made each request (by index in ``requests``)."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.callers: list[str | None] = []

    def _respond(self, environ: dict[str, Any]) -> Any:
        before = len(self.requests)
        answer = super()._respond(environ)
        if len(self.requests) > before:  # not an admin request
            auth = str(environ.get("HTTP_AUTHORIZATION") or "")
            self.callers.append(auth.partition(" ")[2].strip() or None)
        return answer


class ClusterGitHub:
    """The fake app, its URL, and what the checker reads from it."""

    def __init__(self, hosts: int) -> None:
        self.app = RecordingGitHub(
            repos=[REPO],
            tokens=[Token(token_of(i)) for i in range(1, hosts + 1)],
            search_lag=5.0,
        )
        self.url = ""
        self._stack = contextlib.ExitStack()

    def start(self, namespace: str) -> str:
        with entered(namespace):  # the server's socket and thread are born there
            self.url = self._stack.enter_context(serve(self.app, host=BRIDGE_ADDR))
        return self.url

    def stop(self) -> None:
        self._stack.close()

    # -- what it saw --------------------------------------------------------

    def writes(self) -> list[Write]:
        with self.app._lock:
            pairs = list(zip(self.app.requests, self.app.callers, strict=False))
        out = []
        for record, token in pairs:
            if not record.mutating:
                continue
            host = int(token.removeprefix("tok-h")) if token and token.startswith("tok-h") else 0
            out.append(Write(record.time, host, record.route, record.status, record.fault))
        return out

    def issues(self) -> list[dict[str, Any]]:
        """Every errmesh issue: number, state, signature (its marker), total shown, title."""
        with self.app._lock:
            repo = self.app.repo(REPO)
            out = []
            for issue in repo.issues.values():
                if issue.is_pull:
                    continue
                texts = [issue.body or ""] + [repo.comments[c].body for c in issue.comments]
                marker = _MARKER.search(issue.body or "")
                shown = [int(m[1]) for t in texts for r in _TOTALS for m in r.finditer(t)]
                out.append(
                    {
                        "number": issue.number,
                        "state": issue.state,
                        "state_reason": issue.state_reason,
                        "signature": marker[1] if marker else None,
                        "title": issue.title,
                        "total": max(shown, default=0),
                        "comments": len(issue.comments),
                    }
                )
        return sorted(out, key=lambda i: int(i["number"]))
