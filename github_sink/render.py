"""Issue titles and bodies, the same for every sink.

Pure: a :class:`~mesh.sigstate.SigState` (and ``now``) in, Markdown out. The
file sink writes it to disk, the GitHub sink posts it; both therefore show
exactly the same issue. Bodies stay under GitHub's 65,536-character limit:
the log tail, then the trace, are cut with a visible marker when needed; a
trace first drops its source context, outermost frames first.

The hidden marker ``<!-- errmesh:sig=HEX -->`` (full 32 hex digits) is how an
issue is found again by signature, whatever its title became.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterable, Sequence

from mesh.bundling import effective_severity
from mesh.report import Frame, Report, sig_hex
from mesh.signature import normalise_message, signature_leaf
from mesh.sigstate import SigState

__all__ = [
    "MARKER_RE",
    "MAX_BODY",
    "MAX_TITLE",
    "marker",
    "render_body",
    "render_brief",
    "render_comment",
    "render_title",
    "render_trace",
]

MAX_BODY = 65_536
MAX_TITLE = 256
MARKER_RE = re.compile(r"<!-- errmesh:sig=([0-9a-f]{32}) -->")
_FENCE = "```"


def marker(signature: bytes) -> str:
    """The hidden line that identifies a signature's issue."""
    return f"<!-- errmesh:sig={signature.hex()} -->"


def _when(ts: float) -> str:
    if ts <= 0:
        return "unknown"
    return time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(ts))


def render_title(state: SigState) -> str:
    """``[errmesh] Type: normalised message``, bounded."""
    detail = state.detail
    if detail is None:
        title = f"[errmesh] error {sig_hex(state.signature)}"
    else:
        leaf = signature_leaf(detail)  # a group is named by the bug it holds
        exc_type, text = (
            (detail.exc_type, detail.message) if leaf is None else (leaf.type, leaf.message)
        )
        message = normalise_message(text) if text else ""
        title = f"[errmesh] {exc_type}: {message}" if message else f"[errmesh] {exc_type}"
        if leaf is not None:
            title += f" (in {detail.exc_type})"
    title = " ".join(title.split())
    if len(title) > MAX_TITLE:
        title = title[: MAX_TITLE - 1] + "…"
    return title


def _has_source(frame: Frame) -> bool:
    return bool(frame.context_line or frame.pre_context or frame.post_context)


def _source_lines(frame: Frame) -> list[str]:
    """A frame's source context, numbered, its line marked ``>``, dedented as one block."""
    window = [*frame.pre_context, frame.context_line, *frame.post_context]
    indents = [len(line) - len(line.lstrip()) for line in window if line.strip()]
    dedent = min(indents, default=0)
    first = frame.lineno - len(frame.pre_context)
    width = len(str(first + len(window) - 1))
    return [
        f"    {'>' if number == frame.lineno else ' '} {number:>{width}} | {line[dedent:]}".rstrip()
        for number, line in enumerate(window, first)
    ]


def _frame_lines(frames: Sequence[Frame], context_frames: int) -> list[str]:
    """Traceback lines; a cut marker (no file, line 0) is shown as it is.

    The innermost ``context_frames`` frames that carry source context show
    it in place of their one line.
    """
    sourced = [i for i, f in enumerate(frames) if _has_source(f)]
    with_source = set(sourced[len(sourced) - context_frames :]) if context_frames > 0 else set()
    lines: list[str] = []
    for index, frame in enumerate(frames):
        if not frame.filename and frame.lineno == 0:
            lines.append(f"  {frame.function}")
            continue
        lines.append(f'  File "{frame.filename}", line {frame.lineno}, in {frame.function}')
        if index in with_source:
            lines.extend(_source_lines(frame))
        elif frame.line:
            lines.append(f"    {frame.line}")
    return lines


def _context_frames(report: Report) -> int:
    """How many of ``report``'s frames carry source context."""
    return sum(1 for f in report.frames if _has_source(f))


def render_trace(report: Report, *, context_frames: int | None = None) -> str:
    """A Python-style traceback rebuilt from the (scrubbed) frames.

    The innermost ``context_frames`` frames with source context (all when
    None) show it, numbered, the failing line marked. An exception group's
    leaves follow it, each with its own trace, and a marker counts the
    leaves the report did not keep.
    """
    shown = _context_frames(report) if context_frames is None else context_frames
    lines: list[str] = []
    for cause in reversed(report.causes):
        lines.append(f"{cause.type}: {cause.message}")
        lines.append("")
        lines.append(
            "The above exception was the direct cause of the following exception:"
            if cause.relation == "cause"
            else "During handling of the above exception, another exception occurred:"
        )
        lines.append("")
    if report.frames:
        lines.append("Traceback (most recent call last):")
        lines.extend(_frame_lines(report.frames, shown))
    lines.append(f"{report.exc_type}: {report.message}" if report.message else report.exc_type)
    total = len(report.leaves) + report.leaves_cut
    for number, leaf in enumerate(report.leaves, 1):
        lines += ["", f"--- exception {number} of {total} in the group ---"]
        if leaf.frames:
            lines.append("Traceback (most recent call last):")
            lines.extend(_frame_lines(leaf.frames, shown))
        lines.append(f"{leaf.type}: {leaf.message}" if leaf.message else leaf.type)
    if report.leaves_cut:
        lines += ["", f"…[{report.leaves_cut} more exceptions]"]
    return "\n".join(lines)


def _fence(text: str, lang: str = "") -> str:
    # A body line that itself starts with ``` would close our fence early.
    safe = text.replace(_FENCE, "`\u200b``")
    return f"{_FENCE}{lang}\n{safe}\n{_FENCE}"


def _hosts_table(state: SigState, limit: int = 20) -> str:
    rows = ["| host | occurrences | first seen | last seen |", "| --- | --- | --- | --- |"]
    by_host: dict[str, list[float]] = {}
    for count in state.counts.values():
        entry = by_host.setdefault(count.host or "?", [0, count.first_seen, count.last_seen])
        entry[0] += count.count
        entry[1] = min(entry[1], count.first_seen)
        entry[2] = max(entry[2], count.last_seen)
    ordered = sorted(by_host.items(), key=lambda kv: (-kv[1][0], kv[0]))
    for host, (n, first, last) in ordered[:limit]:
        rows.append(f"| `{host}` | {int(n)} | {_when(first)} | {_when(last)} |")
    if len(ordered) > limit:
        rows.append(f"| … {len(ordered) - limit} more hosts | | | |")
    return "\n".join(rows)


def _cut_lines(lines: Sequence[str], budget: int) -> str:
    """Keep the newest lines that fit in ``budget`` characters, mark the cut."""
    kept: list[str] = []
    used = 0
    for line in reversed(lines):
        if used + len(line) + 1 > budget:
            break
        kept.append(line)
        used += len(line) + 1
    cut = len(lines) - len(kept)
    text = "\n".join(reversed(kept))
    return f"[… {cut} earlier lines cut by errmesh …]\n{text}" if cut else text


def render_body(state: SigState, *, now: float | None = None, max_chars: int = MAX_BODY) -> str:
    """The whole issue body. Always at most ``max_chars`` characters."""
    head = _body_head(state)
    tail = _body_tail(state)
    fixed = "\n".join(head) + "\n" + "\n".join(tail)
    # What the head and tail leave goes to the trace and the logs, the parts
    # that can be cut (200: a margin for their headings and fences).
    budget = max_chars - len(fixed) - 200
    middle = _body_middle(state.detail, budget) if state.detail is not None and budget > 0 else []
    body = "\n".join([*head, *middle, *tail])
    if len(body) > max_chars:  # belt and braces: never exceed the API's limit
        body = body[: max_chars - 40] + "\n[… cut by errmesh …]"
    return body


def _body_head(state: SigState) -> list[str]:
    """The marker, the counts and the error: never cut."""
    detail = state.detail
    hosts = state.hosts
    head = [
        marker(state.signature),
        f"**Severity:** {effective_severity(state).name.lower()} · **Occurrences:** "
        f"{state.total} on {len(hosts)} host{'s' if len(hosts) != 1 else ''} · **First seen:** "
        f"{_when(state.first_seen)} · **Last seen:** {_when(state.last_seen)}",
        "",
    ]
    if detail is not None:
        head += ["## Error", _fence(f"{detail.exc_type}: {detail.message}".strip(": ")), ""]
        if detail.argv:
            head += [f"**Command:** `{' '.join(detail.argv)}`".replace("\n", " "), ""]
        if detail.exit_code is not None or detail.signal is not None:
            how = (
                f"exit code {detail.exit_code}"
                if detail.signal is None
                else f"signal {detail.signal}"
            )
            head += [f"**Ended with:** {how}", ""]
    return head


def _body_tail(state: SigState) -> list[str]:
    """The hosts, the environment and the footer: never cut."""
    detail = state.detail
    tail = ["## Hosts", _hosts_table(state), ""]
    if detail is not None:
        tail += [
            "## Environment",
            f"- app: `{detail.app or '?'}` {detail.app_version}".rstrip(),
            f"- python: {detail.python or '?'}",
            f"- os: {detail.os or '?'}",
        ]
        tail += _bullets((*_shown_setup(detail), *detail.facts))
        tail.append("")
        tail += _pairs_section("Tags", detail.tags)
        tail += _pairs_section("Context", detail.contexts)
    tail.append(
        f"---\nReported by errmesh · signature `{sig_hex(state.signature)}` · "
        "occurrences are summed over every peer of the mesh."
    )
    return tail


def _shown_setup(detail: Report) -> list[tuple[str, str]]:
    """The environment and release, when the host set them (Sentry's two settings)."""
    return [
        (k, v) for k, v in (("environment", detail.environment), ("release", detail.release)) if v
    ]


def _pairs_section(heading: str, pairs: tuple[tuple[str, str], ...]) -> list[str]:
    """A heading and one ``- key: `value``` line a pair; nothing for no pairs."""
    if not pairs:
        return []
    return [f"## {heading}", *_bullets(pairs), ""]


def _bullets(pairs: Iterable[tuple[str, str]]) -> list[str]:
    return [f"- {k}: `{v}`" for k, v in pairs]


def _body_middle(detail: Report, budget: int) -> list[str]:
    """The trace and the log tail in ``budget`` characters: half each when both
    are there (the logs get what the trace leaves), the oldest lines cut first."""
    logs = list(detail.log_tail)
    trace_budget = budget // 2 if logs else budget
    trace = _fitting_trace(detail, trace_budget) if detail.kind == "exception" else ""
    middle: list[str] = []
    if trace:
        trace_text = (
            trace if len(trace) <= trace_budget else _cut_lines(trace.splitlines(), trace_budget)
        )
        middle += ["## Stack trace", _fence(trace_text, "python"), ""]
    outs = list(detail.stdout_tail)  # a command's, after its stderr
    if logs:
        room = budget - sum(len(x) + 1 for x in middle) - 100
        middle += [
            "## Output (stderr tail)" if detail.kind == "command" else "## Preceding logs",
            f"Last {len(logs)} lines before the error:",
            _fence(_cut_lines(logs, max(0, room // 2 if outs else room))),
            "",
        ]
    if outs:
        room = budget - sum(len(x) + 1 for x in middle) - 100
        middle += ["## Output (stdout tail)", _fence(_cut_lines(outs, max(0, room))), ""]
    return middle


def _fitting_trace(detail: Report, budget: int) -> str:
    """The trace with as much source context as fits ``budget``, innermost frames'
    kept longest; without any, the trace is cut like any other (oldest lines first)."""
    for shown in range(_context_frames(detail), 0, -1):
        trace = render_trace(detail, context_frames=shown)
        if len(trace) <= budget:
            return trace
    return render_trace(detail, context_frames=0)


def render_comment(state: SigState, *, previous_total: int, regression: bool = False) -> str:
    """The bundled update: new counts and hosts since the last sync."""
    new = state.total - previous_total
    lead = (
        "**Regression:** this error happened again after the issue was closed.\n\n"
        if regression
        else ""
    )
    return (
        f"{lead}{marker(state.signature)}\n"
        f"**+{new}** new occurrence{'s' if new != 1 else ''} · **{state.total}** in total on "
        f"{len(state.hosts)} host{'s' if len(state.hosts) != 1 else ''} · last seen "
        f"{_when(state.last_seen)} · severity {effective_severity(state).name.lower()}\n\n"
        + _hosts_table(state)
    )


def render_brief(state: SigState, *, issue_number: int | None = None) -> str:
    """The fix brief committed to a draft PR's branch and fed to a fixer command.

    Written for whoever (a person, a coding agent, a fixer script) picks the
    error up: what failed, where in the code, the trace, and how to run it
    again. Scrubbed like the issue (it is built from the same state), and
    bounded like an issue body.
    """
    detail = state.detail
    lines = [
        f"# Fix brief: {render_title(state).removeprefix('[errmesh] ')}",
        "",
        marker(state.signature),
        "",
    ]
    if issue_number is not None:
        lines += [f"Issue: #{issue_number}", ""]
    lines += [
        "## What failed",
        f"- occurrences: {state.total} on {len(state.hosts)} host(s)",
        f"- first seen: {_when(state.first_seen)}; last seen: {_when(state.last_seen)}",
        f"- severity: {effective_severity(state).name.lower()}",
    ]
    if detail is not None:
        lines.append(f"- error: `{detail.exc_type}: {detail.message}`".replace("\n", " "))
        in_app = [f for f in detail.frames if f.in_app] or list(detail.frames)
        if in_app:
            where = in_app[-1]
            lines += [
                "",
                "## Where",
                f"`{where.filename}`, line {where.lineno}, in `{where.function}`",
            ]
            if where.line:
                lines += ["", _fence(where.line, "python")]
        trace = render_trace(detail) if detail.kind == "exception" else ""
        if trace:
            lines += ["", "## Trace", _fence(_cut_lines(trace.splitlines(), 30_000), "python")]
        if detail.log_tail:
            lines += ["", "## Output before the error", _fence(_cut_lines(detail.log_tail, 15_000))]
        lines += ["", "## How to reproduce"]
        if detail.argv:
            lines.append(f"Run `{' '.join(detail.argv)}`".replace("\n", " "))
        else:
            lines.append("The failing command line was not recorded.")
        cwd = dict(detail.facts).get("cwd")
        env = [f"python {detail.python}" if detail.python else "", detail.os]
        env_text = ", ".join(e for e in env if e)
        if cwd:
            lines.append(f"from `{cwd}`")
        if env_text:
            lines.append(f"on {env_text}.")
    lines += [
        "",
        "---",
        "Written by errmesh. Replace this file with the fix, or delete it in the fix's commit.",
    ]
    text = "\n".join(lines) + "\n"
    return text if len(text) <= MAX_BODY else text[: MAX_BODY - 40] + "\n[… cut by errmesh …]\n"
