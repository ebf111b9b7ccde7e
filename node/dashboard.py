"""The relay's dashboard: one server-rendered page beside ``/status``.

``GET /dashboard`` is a whole HTML page (inline CSS, a few lines of inline
JavaScript, nothing fetched from elsewhere: an operator's browser on a
host without internet access shows it as well); the script asks
``/dashboard/fragment`` every two seconds for the page's body, rendered by
the same code, and swaps it in, so there is one renderer and no build
step. ``/dashboard.json`` is the data both are rendered from.

Every string that comes from a report (titles, hosts) or from a peer
(ids, addresses, reasons) is attacker-influenced: each passes through
:func:`_e` (``html.escape``) on its way into the page, and a link is
only made of an ``http(s)`` URL. The store is read with a limit (the
most recently seen signatures), on the relay's trio thread like
``/status``: a few milliseconds per poll.
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from github_sink.budget import Budget
from github_sink.outbox import Outbox
from mesh.errors import StoreError

if TYPE_CHECKING:
    from mesh.sigstate import SigState
    from node.activity import Activity
    from node.relay import MeshPeer

__all__ = [
    "add_pulls",
    "assemble",
    "dashboard_data",
    "dashboard_response",
    "github_budget",
    "render_body",
    "render_page",
    "signature_row",
    "sparkline",
]

#: Signatures shown: the most recently seen.
SHOWN = 50
#: How often the page asks for a fresh body, in milliseconds.
POLL_MS = 2000


def dashboard_response(path: str, peer: MeshPeer) -> tuple[str, str, bytes]:
    """The status server's answer for a ``/dashboard...`` path: status line, type, body."""
    path = path.partition("?")[0]
    data = dashboard_data(peer)
    if path.startswith("/dashboard.json"):
        return "200 OK", "application/json", json.dumps(data, indent=1).encode()
    if path.startswith("/dashboard/fragment"):
        return "200 OK", "text/html; charset=utf-8", render_body(data).encode()
    if path in ("/dashboard", "/dashboard/"):
        return "200 OK", "text/html; charset=utf-8", render_page(data).encode()
    return "404 Not Found", "text/plain", b"not found\n"


def dashboard_data(peer: MeshPeer, *, shown: int = SHOWN) -> dict[str, Any]:
    """What the page shows, as plain values (also ``/dashboard.json``). Never raises
    for a failing store: the page then says so instead of listing signatures."""
    status = peer.status()
    now = peer.clock()
    store_error = None
    try:
        states = peer.store.states(limit=shown)
    except StoreError as exc:
        states, store_error = [], str(exc)
    budget = github_budget(peer.sink, now)
    data = assemble(status, states, peer.activity, budget, now=now, store_error=store_error)
    add_pulls(data, states, peer.sink)
    return data


def assemble(
    status: dict[str, Any],
    states: list[SigState],
    activity: Activity,
    budget: dict[str, Any] | None,
    *,
    now: float,
    store_error: str | None = None,
) -> dict[str, Any]:
    """The page's data from a relay's status, its most recent states and its activity ring."""
    return {
        "now": now,
        "peer_id": status["peer_id"],
        "role": status["role"],
        "leader": status["leader"],
        "term": status["term"],
        "members": status.get("members", []),
        "spool_pending": status["spool_pending"],
        "signatures_total": status["signatures"],
        "rejected": status["rejected"],
        "banned": status["banned"],
        "budget": budget,
        "store_error": store_error,
        "signatures": [signature_row(s, activity.series(s.signature, now)) for s in states],
    }


def signature_row(state: SigState, last_hour: list[int]) -> dict[str, Any]:
    """One signature as the page lists it; ``last_hour``: its per-minute counts."""
    from github_sink.render import render_title

    link = state.link
    return {
        "signature": state.signature.hex()[:12],
        "title": render_title(state),
        "occurrences": state.total,
        "hosts": list(state.hosts),
        "severity": state.severity.name.lower(),
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "last_hour": last_hour,
        "issue": None
        if link is None
        else {"number": link.number, "url": link.url, "state": link.state},
    }


def add_pulls(data: dict[str, Any], states: list[SigState], sink: object) -> None:
    """Give each issue its draft PR, as this relay's GitHub outbox recorded it.

    Only a relay that led while the PR was opened knows it (the outbox is
    local); the PR's URL is the issue's with ``/pull/N`` for ``/issues/N``.
    """
    path = getattr(getattr(sink, "outbox", None), "path", None)
    if not isinstance(path, Path):
        return
    pulls = Outbox.read_pulls(path)
    for state, row in zip(states, data["signatures"], strict=True):
        pull, issue = pulls.get(state.signature), row["issue"]
        if pull is not None and issue is not None and "/issues/" in issue["url"]:
            issue["pull"] = {
                "number": pull,
                "url": f"{issue['url'].rsplit('/issues/', 1)[0]}/pull/{pull}",
            }


def github_budget(sink: object, now: float) -> dict[str, Any] | None:
    """This relay's GitHub client's budget left, or None without a GitHub sink.

    Read from the status server while the leader's worker thread may be
    writing: a snapshot that changed under us is simply not shown this time.
    """
    budget = getattr(getattr(sink, "client", None), "budget", None)
    if not isinstance(budget, Budget):
        return None
    try:
        stats = budget.statistics(now)
    except RuntimeError:  # its deque changed size while we counted
        return None
    limits = budget.limits
    return {
        "writes_left_minute": max(0, limits.per_minute - stats.writes_last_minute),
        "per_minute": limits.per_minute,
        "writes_left_hour": max(0, limits.per_hour - stats.writes_last_hour),
        "per_hour": limits.per_hour,
        "remaining": stats.remaining,
        "reset": stats.reset,
        "paused_until": stats.paused_until if stats.paused_until > now else None,
    }


# -- rendering -------------------------------------------------------------


def _e(value: object) -> str:
    """Any value as HTML text: the one way a string gets into the page."""
    return html.escape("" if value is None else str(value), quote=True)


def _ago(then: float | None, now: float) -> str:
    """A time as an operator reads it: how long ago (the UTC time on hover)."""
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    if seconds < 60:
        text = f"{seconds:.0f}s ago"
    elif seconds < 3600:
        text = f"{seconds / 60:.0f}m ago"
    elif seconds < 86400:
        text = f"{seconds / 3600:.0f}h ago"
    else:
        text = f"{seconds / 86400:.0f}d ago"
    stamp = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(then))
    return f'<span title="{_e(stamp)}">{_e(text)}</span>'


def sparkline(counts: list[int], *, width: int = 120, height: int = 20) -> str:
    """An inline SVG of per-minute counts, oldest left: one bar per minute."""
    peak = max(counts, default=0)
    step = width / max(1, len(counts))
    bars = []
    for i, count in enumerate(counts):
        if count:
            h = max(1.0, height * count / peak)
            bars.append(
                f'<rect x="{i * step:.1f}" y="{height - h:.1f}" '
                f'width="{max(1.0, step - 0.5):.1f}" height="{h:.1f}"/>'
            )
    total = sum(counts)
    return (
        f'<svg class="spark" width="{width}" height="{height}" role="img" '
        f'viewBox="0 0 {width} {height}"><title>{total} in the last hour</title>'
        f'<line x1="0" y1="{height - 0.5}" x2="{width}" y2="{height - 0.5}"/>'
        f"{''.join(bars)}</svg>"
    )


def _link(text: str, url: str) -> str:
    """``text`` (already escaped) as a link to an http(s) ``url``, else with it on hover."""
    if url.startswith(("https://", "http://")):
        return f'<a href="{_e(url)}">{text}</a>'
    return f'<span title="{_e(url)}">{text}</span>'


def _issue(issue: dict[str, Any] | None) -> str:
    if issue is None:
        return "-"
    label = f"#{issue['number']}" if issue.get("number") is not None else "issue"
    text = _link(f"{_e(label)} {_e(issue.get('state'))}", str(issue.get("url") or ""))
    pull = issue.get("pull")
    if pull is not None:
        text += ", PR " + _link(f"#{_e(pull['number'])}", str(pull["url"]))
    return text


def _signatures_table(data: dict[str, Any]) -> str:
    now = data["now"]
    if data.get("store_error"):
        return f'<p class="bad">store unreadable: {_e(data["store_error"])}</p>'
    if not data["signatures"]:
        return "<p>no errors recorded yet</p>"
    rows = []
    for sig in data["signatures"]:
        rows.append(
            f'<tr class="sig sev-{_e(sig["severity"])}">'
            f'<td class="title"><code>{_e(sig["signature"])}</code> '
            f"{_e(sig['title'].removeprefix('[errmesh] '))}</td>"
            f'<td class="num">{_e(sig["occurrences"])}</td>'
            f"<td>{_e(sig['severity'])}</td>"
            f"<td>{_e(', '.join(sig['hosts']))}</td>"
            f"<td>{_ago(sig['first_seen'], now)}</td>"
            f"<td>{_ago(sig['last_seen'], now)}</td>"
            f"<td>{sparkline(sig['last_hour'])}</td>"
            f"<td>{_issue(sig['issue'])}</td></tr>"
        )
    head = (
        "<tr><th>signature</th><th>count</th><th>severity</th><th>hosts</th>"
        "<th>first seen</th><th>last seen</th><th>last hour</th><th>issue</th></tr>"
    )
    return f'<table id="signatures">{head}{"".join(rows)}</table>'


def _members_table(data: dict[str, Any]) -> str:
    now = data["now"]
    rows = []
    for m in data["members"]:
        me = " (this relay)" if m.get("self") else ""
        rows.append(
            f'<tr class="member role-{_e(m["role"])}">'
            f"<td><code>{_e(m['peer_id'])}</code>{_e(me)}</td>"
            f"<td>{_e(m['role'])}</td><td>{_e(m['term'] if m['term'] is not None else '-')}</td>"
            f"<td>{'yes' if m['connected'] else 'no'}</td>"
            f"<td>{_ago(m['last_heard'], now)}</td>"
            f"<td class=num>{_e(m['queue'])}</td>"
            f"<td class=num>{_e(m['lag_ms'] if m['lag_ms'] is not None else '-')}</td>"
            f"<td>{_e(' '.join(a.partition('/p2p/')[0] for a in m['addrs']))}</td></tr>"
        )
    head = (
        "<tr><th>peer</th><th>role</th><th>term</th><th>direct link</th><th>last heard</th>"
        "<th>queue</th><th>lag ms</th><th>addresses</th></tr>"
    )
    return f'<table id="members">{head}{"".join(rows)}</table>'


def _budget(budget: dict[str, Any] | None) -> str:
    if budget is None:
        return "no GitHub sink on this relay"
    text = (
        f"{budget['writes_left_minute']}/{budget['per_minute']} writes left this minute, "
        f"{budget['writes_left_hour']}/{budget['per_hour']} this hour"
    )
    if budget.get("remaining") is not None:
        text += f", {budget['remaining']} requests left in GitHub's window"
    if budget.get("paused_until"):
        text += " (paused after a refusal)"
    return _e(text)


def render_body(data: dict[str, Any]) -> str:
    """The page's content (what the page's script swaps in on every poll)."""
    rejected = data["rejected"] or {}
    refused = ", ".join(f"{_e(k)} {_e(v)}" for k, v in sorted(rejected.items())) or "none"
    leader = data["leader"]
    if leader is None or leader == data["peer_id"]:
        leader_text = "none" if leader is None else "this relay"
    else:
        leader_text = f"<code>{_e(leader)}</code>"
    stamp = time.strftime("%H:%M:%S UTC", time.gmtime(data["now"]))
    return (
        f'<p class="facts">this relay <code>{_e(data["peer_id"])}</code>: {_e(data["role"])}; '
        f"leader: {leader_text}, term {_e(data['term'])}; "
        f'spool <span id="spool">{_e(data["spool_pending"])}</span> pending; '
        f"{_e(data['signatures_total'])} signatures; updated {_e(stamp)}</p>"
        f"<h2>Signatures (most recent first)</h2>{_signatures_table(data)}"
        f"<h2>Peers and links</h2>{_members_table(data)}"
        f'<h2>Rejected frames</h2><p id="rejected">{refused}'
        f"{'; banned: ' + _e(', '.join(data['banned'])) if data['banned'] else ''}</p>"
        f'<h2>GitHub budget</h2><p id="budget">{_budget(data["budget"])}</p>'
    )


_STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#222;background:#fafafa}
h1{font-size:1.3em;margin:0 0 .3em}h2{font-size:1.05em;margin:1.2em 0 .4em}
table{border-collapse:collapse;width:100%;background:#fff}
th,td{border-bottom:1px solid #ddd;padding:3px 6px;text-align:left;vertical-align:middle}
th{background:#eee;font-weight:600;white-space:nowrap}td{white-space:nowrap}
td.num{text-align:right}code{font-size:.9em}
td.title{white-space:normal;max-width:40em;overflow-wrap:anywhere}
tr.sev-critical td:first-child{border-left:4px solid #b00}
tr.sev-high td:first-child{border-left:4px solid #e60}
tr.sev-medium td:first-child{border-left:4px solid #cc0}
tr.sev-low td:first-child{border-left:4px solid #8a8}
svg.spark rect{fill:#c33}svg.spark line{stroke:#bbb;stroke-width:1}
.bad{color:#b00}.facts{color:#444}
"""

_SCRIPT = """
setInterval(async function () {
  try {
    const r = await fetch('/dashboard/fragment', {cache: 'no-store'});
    if (r.ok) { document.getElementById('main').innerHTML = await r.text(); }
  } catch (e) { /* the relay restarts: keep the last page */ }
}, %d);
"""


def render_page(data: dict[str, Any]) -> str:
    """The whole page: the body as of now, and the script that keeps it fresh."""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        f"<title>errmesh relay {_e(data['peer_id'][:16])}</title>"
        f"<style>{_STYLE}</style></head><body>"
        f'<h1>errmesh relay</h1><div id="main">{render_body(data)}</div>'
        f"<script>{_SCRIPT % POLL_MS}</script></body></html>"
    )
