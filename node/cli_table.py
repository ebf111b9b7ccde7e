"""Plain tables for people: ``errmesh status`` and ``errmesh members`` without ``--json``.

Readable on an 80-column terminal with no library (no colours, no box
drawing, nothing a pipe or a log mangles): short columns on one line, and
what is long (a title, an issue URL) on its own indented line below,
cut to the width with an ellipsis. ``--json`` is the complete and stable
form; these lines may change.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "ago",
    "cut",
    "local_relay_status",
    "members_lines",
    "short_addr",
    "status_lines",
    "width",
]

#: How fresh the local relay's ``relay-status.json`` must be to count as running
#: when it names no pid (a relay older than the pid key, which rewrote it every second).
FRESH = 5.0
#: How old the file of a relay whose pid is alive may be: a relay at rest rewrites
#: it every ``RelayOptions.status_refresh`` (10 s); three of them missed is a hung relay.
STALE = 30.0


def width() -> int:
    """The terminal's width (80 when it is not one), never below 60."""
    return max(60, shutil.get_terminal_size((80, 24)).columns)


def ago(then: float | None, now: float) -> str:
    """How long ago, as a person says it: ``42s ago``, ``7m ago``, ``3h ago``, ``12d ago``."""
    if then is None:
        return "-"
    seconds = max(0.0, now - then)
    for size, suffix in ((86400, "d"), (3600, "h"), (60, "m")):
        if seconds >= size:
            return f"{seconds // size:.0f}{suffix} ago"
    return f"{seconds:.0f}s ago"


def cut(text: str, limit: int) -> str:
    """``text`` on one line, at most ``limit`` characters (an ellipsis shows a cut).

    Reports are attacker-influenced: a control character (an escape sequence
    that would move the cursor or retitle the terminal) is shown as U+FFFD.
    """
    flat = "".join(c if c.isprintable() else "\ufffd" for c in " ".join(text.split()))
    return flat if len(flat) <= limit else flat[: max(0, limit - 1)] + "\u2026"


def _hosts(hosts: Sequence[str], limit: int) -> str:
    """As many host names as fit in ``limit``, and how many more there are."""
    for n in range(len(hosts), 0, -1):
        more = f" +{len(hosts) - n}" if n < len(hosts) else ""
        text = ",".join(hosts[:n]) + more
        if len(text) <= limit:
            return text
    more = f" +{len(hosts) - 1}" if len(hosts) > 1 else ""
    return cut(hosts[0], limit - len(more)) + more if hosts else "-"


def status_lines(rows: Sequence[dict[str, Any]], now: float, columns: int = 80) -> list[str]:
    """The signatures, most recently seen first: a line of facts, the title, the issue URL."""
    if not rows:
        return ["no errors recorded"]
    ordered = sorted(rows, key=lambda r: r["last_seen"], reverse=True)
    head = f"{'SIGNATURE':<13} {'LAST SEEN':<9} {'COUNT':>7}  {'SEVERITY':<8} {'HOSTS':<18} ISSUE"
    lines = [head]
    for row in ordered:
        issue = row["issue"]
        where = "-" if issue is None else f"#{issue['number']} {issue['state']}"
        lines.append(
            f"{row['signature']:<13} {ago(row['last_seen'], now):<9} {row['occurrences']:>7}  "
            f"{row['severity']:<8} {_hosts([cut(h, 18) for h in row['hosts']], 18):<18} {where}"
        )
        lines.append("  " + cut(row["title"].removeprefix("[errmesh] "), columns - 2))
        if issue is not None and issue.get("url"):
            lines.append("  " + cut(str(issue["url"]), columns - 2))
    return lines


def short_addr(maddr: str) -> str:
    """``/ip4/10.0.0.5/tcp/4001/p2p/...`` as ``10.0.0.5:4001`` (IPv6 in brackets)."""
    parts = maddr.split("/")
    if len(parts) >= 5 and parts[3] == "tcp":
        host = f"[{parts[2]}]" if parts[1] == "ip6" else parts[2]
        return f"{host}:{parts[4]}"
    return maddr


def _peer(peer_id: str, me: bool) -> str:
    """A peer id's distinctive end (every id starts ``12D3KooW``); ``*`` marks this relay."""
    tail = peer_id if len(peer_id) <= 12 else "\u2026" + peer_id[-11:]
    return tail + ("*" if me else "")


def members_lines(members: Sequence[dict[str, Any]], now: float) -> list[str]:
    """``serf members`` for the mesh: one line per peer this relay heard lately."""
    head = (
        f"{'PEER':<13} {'ROLE':<8} {'TERM':>4} {'LINK':<6} {'HEARD':<9} "
        f"{'LAG MS':>6} {'QUEUE':>5} ADDRESS"
    )
    lines = [head]
    for m in members:
        term = "-" if m.get("term") is None else str(m["term"])
        lag = "-" if m.get("lag_ms") is None else f"{m['lag_ms']:.0f}"
        link = "self" if m.get("self") else ("direct" if m.get("connected") else "mesh")
        addrs = m.get("addrs") or []
        address = short_addr(addrs[0]) if addrs else "-"
        if len(addrs) > 1:
            address += f" +{len(addrs) - 1}"
        heard = "-" if m.get("self") else ago(m.get("last_heard"), now)
        lines.append(
            f"{_peer(m['peer_id'], bool(m.get('self'))):<13} {m['role']:<8} {term:>4} "
            f"{link:<6} {heard:<9} {lag:>6} {m.get('queue', 0):>5} {cut(address, 21)}"
        )
    return lines


def local_relay_status(path: Path) -> dict[str, Any] | None:
    """The local relay's last status, if it is running: its pid alive and the
    file written within ``STALE`` s (``FRESH`` s for a file with no pid)."""
    try:
        relay: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    pid = relay.get("pid")
    limit = STALE if isinstance(pid, int) and pid > 0 else FRESH
    if time.time() - float(relay.get("updated_at", 0)) > limit:
        return None
    return relay if _alive(pid) else None


def _alive(pid: object) -> bool:
    """Whether the relay that wrote the status still runs: a stopped one's file
    stays fresh for ``FRESH`` seconds, in which ``status`` and ``members`` showed
    a dead leader. Another user's process (EPERM) counts as running."""
    if not isinstance(pid, int) or pid <= 0:
        return True  # an older relay's file: freshness alone decides
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True
