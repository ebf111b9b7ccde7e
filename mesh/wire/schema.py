"""The schema: one table per record type and per message kind.

Keys are part of the protocol: see ``docs/PROTOCOL.md``. Each table lists
``(attribute, key, codec, wire default)``; the codec reads and writes messages
only through these tables, so the tables *are* the schema.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from mesh.election import Heartbeat
from mesh.report import Cause, Frame, Leaf, Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, OriginCount, SigState
from mesh.wire.codecs import (
    _BIN16,
    _BOOL,
    _BOUND,
    _FINGERPRINT,
    _FLOAT,
    _INT,
    _LINK_TERM,
    _NAME,
    _NUMBER,
    _SEVERITY,
    _TERM,
    _UINT,
    _array,
    _choice,
    _Field,
    _mapping,
    _optional,
    _pair,
    _Record,
    _text,
)
from mesh.wire.limits import (
    MAX_ADDRS,
    MAX_ARGV,
    MAX_ARGV_ITEM,
    MAX_BATCH,
    MAX_CAUSE_MESSAGE,
    MAX_CAUSES,
    MAX_CONTEXT_LINES,
    MAX_CONTEXTS,
    MAX_FACT_VALUE,
    MAX_FACTS,
    MAX_FINGERPRINT,
    MAX_FRAME_LINE,
    MAX_FRAMES,
    MAX_LEAF_FRAMES,
    MAX_LEAVES,
    MAX_LOG_LINE,
    MAX_LOG_LINES,
    MAX_ORIGINS,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_TEXT,
    MAX_URL,
)
from mesh.wire.messages import (
    AckMsg,
    DigestEntry,
    DigestMsg,
    HeartbeatMsg,
    IssueMsg,
    OccMsg,
    ReportMsg,
    StateMsg,
)
from mesh.write_ledger import MAX_BUCKETS, WriteBucket

_FRAME = _Record(
    Frame,
    _Field("module", "m", _NAME),
    _Field("function", "fn", _NAME),
    _Field("filename", "f", _NAME),
    _Field("lineno", "n", _UINT),
    _Field("in_app", "a", _BOOL, False),
    _Field("line", "s", _text(MAX_FRAME_LINE), ""),
    # Source context (issue 14): optional keys, which a peer that predates
    # them skips like any key it does not know.
    _Field("pre_context", "pc", _array(_text(MAX_FRAME_LINE), MAX_CONTEXT_LINES), ()),
    _Field("context_line", "cl", _text(MAX_FRAME_LINE), ""),
    _Field("post_context", "po", _array(_text(MAX_FRAME_LINE), MAX_CONTEXT_LINES), ()),
)
_CAUSE = _Record(
    Cause,
    _Field("type", "t", _NAME),
    _Field("message", "m", _text(MAX_CAUSE_MESSAGE)),
    _Field("relation", "r", _choice("cause", "context"), "cause"),
)
_LEAF = _Record(
    Leaf,
    _Field("type", "t", _NAME),
    _Field("message", "m", _text(MAX_CAUSE_MESSAGE)),
    _Field("frames", "f", _array(_FRAME.codec, MAX_LEAF_FRAMES), ()),
)
_REPORT = _Record(
    Report,
    _Field("origin", "o", _BIN16),
    _Field("seq", "q", _UINT),
    _Field("count", "c", _UINT),
    _Field("signature", "s", _BIN16),
    _Field("kind", "t", _choice("exception", "command")),
    _Field("exc_type", "e", _NAME),
    _Field("message", "m", _text(MAX_TEXT)),
    _Field("causes", "ca", _array(_CAUSE.codec, MAX_CAUSES), ()),
    _Field("frames", "f", _array(_FRAME.codec, MAX_FRAMES), ()),
    _Field("log_tail", "l", _array(_text(MAX_LOG_LINE), MAX_LOG_LINES), ()),
    _Field("argv", "a", _array(_text(MAX_ARGV_ITEM), MAX_ARGV), ()),
    _Field("app", "ap", _NAME, ""),
    _Field("app_version", "av", _NAME, ""),
    _Field("host", "h", _NAME, ""),
    _Field("os", "os", _NAME, ""),
    _Field("python", "py", _NAME, ""),
    _Field("timestamp", "ts", _FLOAT, 0.0),
    _Field("severity", "sv", _SEVERITY, Severity.MEDIUM),
    _Field("exit_code", "x", _optional(_INT), None),
    _Field("signal", "sg", _optional(_UINT), None),
    _Field("facts", "fa", _array(_pair(_NAME, _text(MAX_FACT_VALUE)), MAX_FACTS), ()),
    _Field("fingerprint", "fp", _optional(_array(_NAME, MAX_FINGERPRINT)), None),
    _Field("leaves", "lv", _array(_LEAF.codec, MAX_LEAVES), ()),
    _Field("leaves_cut", "lc", _UINT, 0),
    _Field("tags", "tg", _array(_pair(_NAME, _text(MAX_TAG_VALUE)), MAX_TAGS), ()),
    _Field("contexts", "cx", _array(_pair(_NAME, _text(MAX_FACT_VALUE)), MAX_CONTEXTS), ()),
    _Field("environment", "en", _NAME, ""),
    _Field("release", "rl", _NAME, ""),
    _Field("stdout_tail", "so", _array(_text(MAX_LOG_LINE), MAX_LOG_LINES), ()),
)
_OCCURRENCE = _Record(
    Occurrence,
    _Field("origin", "o", _BIN16),
    _Field("signature", "s", _BIN16),
    _Field("count", "c", _UINT),
    _Field("first_seen", "f", _FLOAT),
    _Field("last_seen", "l", _FLOAT),
    _Field("host", "h", _NAME),
    _Field("severity", "sv", _SEVERITY, Severity.MEDIUM),
)
_ORIGIN_COUNT = _Record(
    OriginCount,
    _Field("count", "c", _UINT),
    _Field("first_seen", "f", _FLOAT),
    _Field("last_seen", "l", _FLOAT),
    _Field("host", "h", _NAME),
)
_ISSUE_LINK = _Record(
    IssueLink,
    _Field("ref", "r", _text(MAX_URL)),
    _Field("number", "n", _optional(_NUMBER), None),
    _Field("url", "u", _text(MAX_URL)),
    _Field("state", "st", _choice("open", "closed")),
    _Field("term", "t", _TERM),
    _Field("synced_total", "c", _UINT),
    _Field("synced_at", "at", _FLOAT),
    _Field("severity", "sv", _SEVERITY, Severity.MEDIUM),
)
_SIG_STATE = _Record(
    SigState,
    _Field("signature", "s", _BIN16),
    _Field("detail", "d", _optional(_REPORT.codec), None),
    _Field("counts", "c", _mapping(_BIN16, _ORIGIN_COUNT.codec, MAX_ORIGINS)),
    _Field("severity", "sv", _SEVERITY, Severity.MEDIUM),
    _Field("link", "k", _optional(_ISSUE_LINK.codec), None),
    _Field("evicted_origins", "ev", _UINT, 0),
)
_HEARTBEAT = _Record(
    Heartbeat,
    _Field("peer", "p", _NAME),
    _Field("priority", "r", _INT),
    _Field("term", "t", _TERM),
    _Field("leading", "l", _BOOL),
    _Field("eligible", "e", _BOOL, True),
)
_WRITE_BUCKET = _Record(
    WriteBucket,
    _Field("writer", "w", _NAME),
    _Field("minute", "m", _NUMBER),
    _Field("count", "c", _NUMBER),
)
_DIGEST_ENTRY = _Record(
    DigestEntry,
    _Field("signature", "s", _BIN16),
    _Field("total", "c", _UINT),
    _Field("link_term", "t", _LINK_TERM),
    _Field("link_synced_total", "lc", _INT),
    _Field("fingerprint", "f", _FINGERPRINT, b""),
)

_SENDER = _Field("sender", "n", _NAME, "")

#: kind -> the table of its message; "v", "k" and "z" are the envelope's.
_TABLES: Final[Mapping[str, _Record]] = {
    "report": _Record(
        ReportMsg, _Field("report", "r", _REPORT.codec), _Field("ack", "a", _BOOL, True), _SENDER
    ),
    "occ": _Record(
        OccMsg, _Field("occurrences", "o", _array(_OCCURRENCE.codec, MAX_BATCH)), _SENDER
    ),
    "ack": _Record(
        AckMsg,
        _Field("ids", "i", _array(_pair(_BIN16, _UINT), MAX_BATCH)),
        _Field("acker", "a", _NAME, ""),
        _SENDER,
    ),
    "hb": _Record(
        HeartbeatMsg,
        _Field("heartbeat", "h", _HEARTBEAT.codec),
        _Field("addrs", "a", _array(_text(MAX_URL), MAX_ADDRS), ()),
        _Field("writes", "w", _array(_WRITE_BUCKET.codec, MAX_BUCKETS), ()),
        _SENDER,
    ),
    "issue": _Record(
        IssueMsg,
        _Field("links", "l", _array(_pair(_BIN16, _ISSUE_LINK.codec), MAX_BATCH)),
        _SENDER,
    ),
    "digest": _Record(
        DigestMsg,
        _Field("entries", "d", _array(_DIGEST_ENTRY.codec, MAX_BATCH)),
        _Field("after", "a", _BOUND, b""),
        _Field("until", "u", _BOUND, b""),
        _SENDER,
    ),
    "state": _Record(StateMsg, _Field("states", "s", _array(_SIG_STATE.codec, MAX_BATCH)), _SENDER),
}
_KIND_OF: Final[Mapping[type[Any], str]] = {table.cls: kind for kind, table in _TABLES.items()}
#: The message kinds, as they appear under "k".
KINDS: Final[tuple[str, ...]] = tuple(_TABLES)
