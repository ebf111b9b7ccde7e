"""The msgpack wire codec: typed messages in, bounded bytes out, and back.

Pure: no IO, no clock, no randomness. ``docs/PROTOCOL.md`` is the
language-neutral specification of what this module reads and writes.

Theory of operation
-------------------
Every pubsub message is one *frame*::

    frame   = payload [ + HMAC-SHA256(cluster key, payload)[:16] ]
    payload = msgpack map {"v": 1, "k": kind, "n": sender?, ...fields}

The kind names one of the message dataclasses below, and each kind's fields
are short keys (one or two letters) into nested maps. One table per record
type (:data:`_REPORT`, :data:`_FRAME`, ...) lists ``(attribute, key, codec,
wire default)``; writing, reading and validating are all driven by those
tables, so the table *is* the schema. A key whose value equals its wire
default is left out when writing and filled in when reading, which keeps a
repeat occurrence under 128 bytes with its MAC.

When the fields of a message pack to more than :data:`COMPRESS_OVER` bytes
and zlib makes them smaller, they travel compressed under the key ``"z"``
instead. A realistic first report (30 frames, 50 log lines) shrinks from
about 8 KB to under 4 KB that way, with no detail thrown away.

Reading is defensive because the bytes come from other machines, and from
hostile ones if the cluster key leaks. In order: size of the frame, the MAC
(with a key), msgpack's own limits on string, binary, array and map sizes,
ext types refused (the timestamp ext -1 too), a nesting depth limit, then
every field of the table checked for its type and bound. Any failure becomes
a :class:`Rejected` with a stable ``reason`` code; :func:`decode` never
raises for any byte string. Keys a reader does not know are ignored, so a
newer peer may add fields; a new ``"v"`` is rejected.

Writing is strict: :func:`encode` runs the very checks a receiver runs on
what it is about to send and raises :class:`~mesh.errors.LocalError` when a
message breaks a bound, because that is the sender's bug. The capture side
calls :func:`bound_report` first, which cuts a report down (strings with a
visible ``…[cut N bytes]`` marker, the innermost frames, the newest log
lines) until its encoding fits :data:`MAX_MESSAGE` uncompressed, with a MAC
and a sender id.

The durable store persists the same envelope without a MAC
(:func:`encode_report`, :func:`encode_state`), so stored bytes are
versioned, and a stored report becomes a frame by appending its MAC.

All string limits are in UTF-8 bytes.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import zlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, Literal, NamedTuple, TypeAlias, TypeVar, get_args

import msgpack

from mesh.aggregate import IssueLink, OriginCount, SigState
from mesh.election import Heartbeat
from mesh.errors import LocalError, WireError
from mesh.report import SIGNATURE_BYTES, Cause, Frame, Occurrence, Report
from mesh.severity import Severity

__all__ = [
    "COMPRESS_OVER",
    "KINDS",
    "MAC_BYTES",
    "MAX_ARGV",
    "MAX_ARGV_ITEM",
    "MAX_BATCH",
    "MAX_CAUSES",
    "MAX_CAUSE_MESSAGE",
    "MAX_DEPTH",
    "MAX_FACTS",
    "MAX_FACT_VALUE",
    "MAX_FINGERPRINT",
    "MAX_FRAMES",
    "MAX_FRAME_LINE",
    "MAX_INFLATED",
    "MAX_LOG_LINE",
    "MAX_LOG_LINES",
    "MAX_MAP_KEYS",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_ORIGINS",
    "MAX_STORED",
    "MAX_TEXT",
    "MAX_URL",
    "MIN_KEY",
    "REJECT_REASONS",
    "VERSION",
    "AckMsg",
    "DigestEntry",
    "DigestMsg",
    "HeartbeatMsg",
    "IssueMsg",
    "Message",
    "OccMsg",
    "RejectReason",
    "Rejected",
    "ReportMsg",
    "StateMsg",
    "bound_report",
    "decode",
    "decode_report",
    "decode_state",
    "encode",
    "encode_report",
    "encode_state",
]

# --------------------------------------------------------------------------
# Limits. Changing one changes the protocol: update docs/PROTOCOL.md.

VERSION: Final = 1
MAC_BYTES: Final = 16
#: Shortest cluster key accepted (keys are 32 random bytes in practice).
MIN_KEY: Final = 16

#: A whole frame, MAC included.
MAX_MESSAGE: Final = 64 * 1024
#: The fields of a message once inflated from ``"z"``.
MAX_INFLATED: Final = 256 * 1024
#: A stored report or state (:func:`encode_report`, :func:`encode_state`).
MAX_STORED: Final = 256 * 1024
#: Fields packing to more than this many bytes are sent zlib-compressed.
COMPRESS_OVER: Final = 512
#: Nesting of maps and arrays; the schema itself needs 6.
MAX_DEPTH: Final = 16
#: Entries in any one map (a report has 22 keys).
MAX_MAP_KEYS: Final = 64

MAX_FRAMES: Final = 64
MAX_LOG_LINES: Final = 50
MAX_CAUSES: Final = 8
MAX_ARGV: Final = 64
MAX_FACTS: Final = 32
MAX_FINGERPRINT: Final = 8
#: Records in one occ/ack/issue/digest/state message (the byte limit still applies).
MAX_BATCH: Final = 1024
#: Origins per signature state; at least ``aggregate.Limits().max_origins``.
MAX_ORIGINS: Final = 256

#: The reported exception's message (UTF-8 bytes, like every string limit).
MAX_TEXT: Final = 8 * 1024
MAX_CAUSE_MESSAGE: Final = 1024
MAX_FRAME_LINE: Final = 300
MAX_LOG_LINE: Final = 500
MAX_ARGV_ITEM: Final = 500
MAX_FACT_VALUE: Final = 500
MAX_URL: Final = 500
#: Names: types, modules, functions, file names, hosts, peer ids, fact keys.
MAX_NAME: Final = 200

_INT64_MIN: Final = -(2**63)
_INT64_END: Final = 2**63

# --------------------------------------------------------------------------
# Messages


@dataclass(frozen=True, slots=True, kw_only=True)
class ReportMsg:
    """``report``: the full detail of one report (first sight on its origin)."""

    report: Report
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OccMsg:
    """``occ``: cumulative counters, repeats coalesced per signature."""

    occurrences: tuple[Occurrence, ...]
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AckMsg:
    """``ack``: a durable peer (``acker``) has stored these ``(origin, seq)``."""

    ids: tuple[tuple[bytes, int], ...]
    acker: str = ""
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class HeartbeatMsg:
    """``hb``: an election heartbeat."""

    heartbeat: Heartbeat
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class IssueMsg:
    """``issue``: the leader announces where signatures' issues live."""

    links: tuple[tuple[bytes, IssueLink], ...]
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestEntry:
    """What a peer knows of one signature, for anti-entropy.

    A peer that knows more (a higher total, a newer link) answers with a
    ``state`` message. ``link_term``/``link_synced_total`` are -1 without a link.
    """

    signature: bytes
    total: int
    link_term: int
    link_synced_total: int


@dataclass(frozen=True, slots=True, kw_only=True)
class DigestMsg:
    """``digest``: an anti-entropy summary."""

    entries: tuple[DigestEntry, ...]
    sender: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StateMsg:
    """``state``: full per-signature states (digest answers, persistence)."""

    states: tuple[SigState, ...]
    sender: str = ""


Message: TypeAlias = ReportMsg | OccMsg | AckMsg | HeartbeatMsg | IssueMsg | DigestMsg | StateMsg
_M = TypeVar("_M", ReportMsg, StateMsg)

RejectReason = Literal[
    "oversized",
    "undecodable",
    "not-a-map",
    "unknown-version",
    "unknown-kind",
    "bad-field",
    "ext-type",
    "too-deep",
    "too-many",
    "missing-mac",
    "bad-mac",
]
#: Every reason :func:`decode` may give, for metrics labels.
REJECT_REASONS: Final[tuple[RejectReason, ...]] = get_args(RejectReason)


@dataclass(frozen=True, slots=True)
class Rejected:
    """Why a received byte string was dropped. Count it; score the sender."""

    reason: RejectReason
    detail: str = ""


class _Reject(Exception):
    """Internal: a decoding failure, turned into :class:`Rejected` at the top."""

    def __init__(self, reason: RejectReason, detail: str, path: str = "") -> None:
        super().__init__(reason, detail, path)
        self.reason: RejectReason = reason
        self.detail = detail
        self.path = path

    def within(self, step: str) -> _Reject:
        """The same failure, its path prefixed with the enclosing field."""
        sep = "" if not self.path or self.path.startswith("[") else "."
        return _Reject(self.reason, self.detail, step + sep + self.path)

    def text(self) -> str:
        return f"{self.path}: {self.detail}" if self.path else self.detail


def _tname(value: object) -> str:
    """A safe description of a value of unknown shape: never its repr."""
    return "nil" if value is None else type(value).__name__


# --------------------------------------------------------------------------
# Codecs: (read, write) pairs combined into tables.
#
# ``read`` takes what msgpack produced and returns the Python value, raising
# _Reject; ``write`` does the reverse and trusts ``read`` to check the result.

_Read: TypeAlias = Callable[[Any], Any]
_Write: TypeAlias = Callable[[Any], Any]


class _Codec(NamedTuple):
    read: _Read
    write: _Write


def _same(value: Any) -> Any:
    return value


def _utf8_len(text: str) -> int:
    try:
        return len(text.encode("utf-8"))
    except UnicodeEncodeError:
        raise _Reject("bad-field", "not valid Unicode (lone surrogate)") from None


def _text(limit: int) -> _Codec:
    def read(value: Any) -> str:
        if not isinstance(value, str):
            raise _Reject("bad-field", f"expected str, got {_tname(value)}")
        if len(value) * 4 > limit and (len(value) > limit or _utf8_len(value) > limit):
            raise _Reject("oversized", f"string longer than {limit} bytes")
        return value

    return _Codec(read, _same)


def _choice(*choices: str) -> _Codec:
    def read(value: Any) -> str:
        if value not in choices or not isinstance(value, str):
            raise _Reject("bad-field", f"expected one of {', '.join(choices)}")
        return value

    return _Codec(read, _same)


def _read_bin16(value: Any) -> bytes:
    if not isinstance(value, bytes) or len(value) != SIGNATURE_BYTES:
        raise _Reject("bad-field", f"expected {SIGNATURE_BYTES}-byte bin, got {_tname(value)}")
    return value


def _integer(low: int) -> _Codec:
    def read(value: Any) -> int:
        if type(value) is not int:
            raise _Reject("bad-field", f"expected int, got {_tname(value)}")
        if not low <= value < _INT64_END:
            raise _Reject("bad-field", f"int out of range [{low}, 2**63)")
        return value

    return _Codec(read, _same)


def _read_float(value: Any) -> float:
    if type(value) is int and _INT64_MIN <= value < _INT64_END:
        value = float(value)
    if type(value) is not float or not math.isfinite(value):
        raise _Reject("bad-field", f"expected a finite float, got {_tname(value)}")
    return value


def _write_float(value: Any) -> Any:
    """An integral timestamp -> float; anything else as is, for ``read`` to judge."""
    return float(value) if type(value) is int else value


def _read_bool(value: Any) -> bool:
    if type(value) is not bool:
        raise _Reject("bad-field", f"expected bool, got {_tname(value)}")
    return value


def _read_severity(value: Any) -> Severity:
    if type(value) is not int or not min(Severity) <= value <= max(Severity):
        raise _Reject("bad-field", f"expected a severity {min(Severity)}-{max(Severity)}")
    return Severity(value)


def _write_int(value: Any) -> Any:
    """IntEnum -> plain int so that msgpack packs it; anything else as is."""
    return int(value) if isinstance(value, int) and not isinstance(value, bool) else value


def _items(value: Any, limit: int) -> Sequence[Any]:
    if not isinstance(value, list | tuple):
        raise _Reject("bad-field", f"expected array, got {_tname(value)}")
    if len(value) > limit:
        raise _Reject("too-many", f"{len(value)} items, at most {limit}")
    return value


def _array(item: _Codec, limit: int) -> _Codec:
    def read(value: Any) -> tuple[Any, ...]:
        out = []
        for i, element in enumerate(_items(value, limit)):
            try:
                out.append(item.read(element))
            except _Reject as exc:
                raise exc.within(f"[{i}]") from None
        return tuple(out)

    def write(values: Any) -> list[Any]:
        return [item.write(v) for v in values]

    return _Codec(read, write)


def _pair(first: _Codec, second: _Codec) -> _Codec:
    """A 2-tuple as a 2-element array."""

    def read(value: Any) -> tuple[Any, Any]:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise _Reject("bad-field", f"expected a 2-element array, got {_tname(value)}")
        try:
            a = first.read(value[0])
        except _Reject as exc:
            raise exc.within("[0]") from None
        try:
            b = second.read(value[1])
        except _Reject as exc:
            raise exc.within("[1]") from None
        return (a, b)

    def write(value: Any) -> list[Any]:
        a, b = value
        return [first.write(a), second.write(b)]

    return _Codec(read, write)


def _optional(codec: _Codec) -> _Codec:
    """``None`` travels as nil (or, as the wire default, as an absent key)."""

    def read(value: Any) -> Any:
        return None if value is None else codec.read(value)

    def write(value: Any) -> Any:
        return None if value is None else codec.write(value)

    return _Codec(read, write)


def _mapping(key: _Codec, value: _Codec, limit: int) -> _Codec:
    """A mapping as an array of ``[key, value]`` pairs with distinct keys."""
    pairs = _array(_pair(key, value), limit)

    def read(raw: Any) -> dict[Any, Any]:
        items = pairs.read(raw)
        out = dict(items)
        if len(out) != len(items):
            raise _Reject("bad-field", "duplicate key")
        return out

    def write(mapping: Any) -> Any:
        return pairs.write(mapping.items())

    return _Codec(read, write)


_NAME = _text(MAX_NAME)
_BIN16 = _Codec(_read_bin16, _same)
_UINT = _integer(0)
_INT = _integer(_INT64_MIN)
_FLOAT = _Codec(_read_float, _write_float)
_BOOL = _Codec(_read_bool, _same)
_SEVERITY = _Codec(_read_severity, _write_int)

_REQUIRED: Final[Any] = object()


class _Field(NamedTuple):
    attr: str
    key: str
    codec: _Codec
    #: Left out when writing if the value equals it; used when the key is absent.
    default: Any = _REQUIRED


class _Record:
    """One dataclass <-> one msgpack map, by a table of fields."""

    def __init__(self, cls: type[Any], *fields: _Field) -> None:
        self.cls = cls
        self.fields = fields
        self.codec = _Codec(self.read, self.write)

    def read(self, value: Any) -> Any:
        if not isinstance(value, dict):
            raise _Reject("bad-field", f"expected map, got {_tname(value)}")
        kwargs: dict[str, Any] = {}
        for f in self.fields:
            raw = value.get(f.key, _REQUIRED)
            if raw is _REQUIRED:
                if f.default is _REQUIRED:
                    raise _Reject("bad-field", f"missing key {f.key!r}", f.attr)
                kwargs[f.attr] = f.default
                continue
            try:
                kwargs[f.attr] = f.codec.read(raw)
            except _Reject as exc:
                raise exc.within(f.attr) from None
        return self.cls(**kwargs)

    def write(self, obj: Any) -> dict[str, Any]:
        if not isinstance(obj, self.cls):
            raise TypeError(f"expected {self.cls.__name__}, got {type(obj).__name__}")
        out: dict[str, Any] = {}
        for f in self.fields:
            value = getattr(obj, f.attr)
            if f.default is _REQUIRED or not _is_default(value, f.default):
                out[f.key] = f.codec.write(value)
        return out


def _is_default(value: Any, default: Any) -> bool:
    if default is None or value is None:
        return value is default
    return type(value) is type(default) and bool(value == default)


# --------------------------------------------------------------------------
# The schema. Keys are part of the protocol: see docs/PROTOCOL.md.

_FRAME = _Record(
    Frame,
    _Field("module", "m", _NAME),
    _Field("function", "fn", _NAME),
    _Field("filename", "f", _NAME),
    _Field("lineno", "n", _UINT),
    _Field("in_app", "a", _BOOL, False),
    _Field("line", "s", _text(MAX_FRAME_LINE), ""),
)
_CAUSE = _Record(
    Cause,
    _Field("type", "t", _NAME),
    _Field("message", "m", _text(MAX_CAUSE_MESSAGE)),
    _Field("relation", "r", _choice("cause", "context"), "cause"),
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
    _Field("number", "n", _optional(_UINT), None),
    _Field("url", "u", _text(MAX_URL)),
    _Field("state", "st", _choice("open", "closed")),
    _Field("term", "t", _UINT),
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
    _Field("term", "t", _UINT),
    _Field("leading", "l", _BOOL),
    _Field("eligible", "e", _BOOL, True),
)
_DIGEST_ENTRY = _Record(
    DigestEntry,
    _Field("signature", "s", _BIN16),
    _Field("total", "c", _UINT),
    _Field("link_term", "t", _INT),
    _Field("link_synced_total", "lc", _INT),
)

_SENDER = _Field("sender", "n", _NAME, "")

#: kind -> the table of its message; "v", "k" and "z" are the envelope's.
_TABLES: Final[Mapping[str, _Record]] = {
    "report": _Record(ReportMsg, _Field("report", "r", _REPORT.codec), _SENDER),
    "occ": _Record(
        OccMsg, _Field("occurrences", "o", _array(_OCCURRENCE.codec, MAX_BATCH)), _SENDER
    ),
    "ack": _Record(
        AckMsg,
        _Field("ids", "i", _array(_pair(_BIN16, _UINT), MAX_BATCH)),
        _Field("acker", "a", _NAME, ""),
        _SENDER,
    ),
    "hb": _Record(HeartbeatMsg, _Field("heartbeat", "h", _HEARTBEAT.codec), _SENDER),
    "issue": _Record(
        IssueMsg,
        _Field("links", "l", _array(_pair(_BIN16, _ISSUE_LINK.codec), MAX_BATCH)),
        _SENDER,
    ),
    "digest": _Record(
        DigestMsg, _Field("entries", "d", _array(_DIGEST_ENTRY.codec, MAX_BATCH)), _SENDER
    ),
    "state": _Record(StateMsg, _Field("states", "s", _array(_SIG_STATE.codec, MAX_BATCH)), _SENDER),
}
_KIND_OF: Final[Mapping[type[Any], str]] = {table.cls: kind for kind, table in _TABLES.items()}
#: The message kinds, as they appear under "k".
KINDS: Final[tuple[str, ...]] = tuple(_TABLES)

# --------------------------------------------------------------------------
# Bytes


class _ExtRefused(Exception):
    pass


def _refuse_ext(code: int, data: bytes) -> Any:
    raise _ExtRefused(code)


_LIMIT_REASONS: Final[tuple[tuple[str, RejectReason], ...]] = (
    ("max_str_len", "oversized"),
    ("max_bin_len", "oversized"),
    ("max_array_len", "too-many"),
    ("max_map_len", "too-many"),
    ("max_ext_len", "ext-type"),
)


def _unpack(data: bytes) -> Any:
    """msgpack bytes -> plain values (arrays as tuples), or _Reject."""
    try:
        value = msgpack.unpackb(
            data,
            raw=False,
            strict_map_key=True,
            use_list=False,
            ext_hook=_refuse_ext,
            max_str_len=MAX_TEXT,
            max_bin_len=MAX_STORED,  # a stored state's "z"; frames are smaller
            max_array_len=MAX_BATCH,
            max_map_len=MAX_MAP_KEYS,
            max_ext_len=0,
        )
    except _ExtRefused as exc:
        raise _Reject("ext-type", f"ext type {exc.args[0]}") from None
    except msgpack.StackError:
        raise _Reject("too-deep", "nesting deeper than msgpack's stack") from None
    except ValueError as exc:  # msgpack's FormatError, ExtraData, limits; bad UTF-8
        text = str(exc)
        for needle, reason in _LIMIT_REASONS:
            if needle in text:
                raise _Reject(reason, text[:200]) from None
        raise _Reject("undecodable", text[:200]) from None
    except (msgpack.UnpackException, TypeError, RecursionError) as exc:
        raise _Reject("undecodable", type(exc).__name__) from None
    _check_shape(value)
    return value


_LEAVES: Final = (type(None), bool, int, float, str, bytes)


def _check_shape(root: Any) -> None:
    """Refuse nesting beyond MAX_DEPTH and any non-plain value (ext objects)."""
    stack: list[tuple[Any, int]] = [(root, 0)]
    while stack:
        value, depth = stack.pop()
        if isinstance(value, tuple):
            children: Any = value
        elif isinstance(value, dict):
            children = value.values()
        elif type(value) in _LEAVES:
            continue
        else:
            raise _Reject("ext-type", f"{_tname(value)} value")
        if depth >= MAX_DEPTH:
            raise _Reject("too-deep", f"nesting deeper than {MAX_DEPTH}")
        stack.extend((child, depth + 1) for child in children)


def _pack(value: Any) -> bytes:
    packed: bytes = msgpack.packb(value, use_bin_type=True)
    return packed


def _inflate(blob: Any) -> dict[str, Any]:
    if not isinstance(blob, bytes):
        raise _Reject("bad-field", f"expected bin, got {_tname(blob)}", "z")
    inflater = zlib.decompressobj()
    try:
        raw = inflater.decompress(blob, MAX_INFLATED)
    except zlib.error as exc:
        raise _Reject("undecodable", str(exc)[:200], "z") from None
    if inflater.unconsumed_tail:
        raise _Reject("oversized", f"inflates to more than {MAX_INFLATED} bytes", "z")
    if not inflater.eof or inflater.unused_data:
        raise _Reject("undecodable", "truncated or trailing zlib data", "z")
    try:
        inner = _unpack(raw)
    except _Reject as exc:
        raise exc.within("z") from None
    if not isinstance(inner, dict):
        raise _Reject("bad-field", f"expected map, got {_tname(inner)}", "z")
    return inner


def _mac(key: bytes, payload: bytes) -> bytes:
    return hmac.new(key, payload, hashlib.sha256).digest()[:MAC_BYTES]


def _check_key(key: bytes | None) -> None:
    if key is not None and (not isinstance(key, bytes) or len(key) < MIN_KEY):
        raise LocalError(f"the cluster key must be at least {MIN_KEY} bytes")


# --------------------------------------------------------------------------
# Envelope


def _write_envelope(msg: Message, limit: int) -> bytes:
    kind = _KIND_OF.get(type(msg))
    if kind is None:
        raise LocalError(f"not a wire message: {type(msg).__name__}")
    table = _TABLES[kind]
    try:
        fields = table.write(msg)
        table.read(fields)  # the receiver's checks, applied before sending
        head: dict[str, Any] = {"v": VERSION, "k": kind}
        if "n" in fields:
            head["n"] = fields.pop("n")
        payload = _pack(head | fields)
    except _Reject as exc:
        raise LocalError(
            f"{kind} message breaks the wire bounds: {exc.reason}: {exc.text()}"
        ) from None
    except (AttributeError, TypeError, ValueError) as exc:
        raise LocalError(f"{kind} message is malformed: {exc}") from exc
    if len(payload) > COMPRESS_OVER:
        plain = _pack(fields)
        if len(plain) > MAX_INFLATED:
            raise LocalError(f"{kind} message fields are {len(plain)} bytes, over {MAX_INFLATED}")
        packed = _pack(head | {"z": zlib.compress(plain, 6)})
        payload = min(payload, packed, key=len)
    if len(payload) > limit:
        raise LocalError(f"{kind} message is {len(payload)} bytes, over {limit}; split it")
    return payload


def _read_envelope(payload: bytes) -> Message:
    outer = _unpack(payload)
    if not isinstance(outer, dict):
        raise _Reject("not-a-map", f"top level is {_tname(outer)}")
    version = outer.get("v")
    if type(version) is not int or version != VERSION:
        raise _Reject(
            "unknown-version", f"v is {version if type(version) is int else _tname(version)}"
        )
    kind = outer.get("k")
    if not isinstance(kind, str):
        raise _Reject("bad-field", f"expected str, got {_tname(kind)}", "k")
    table = _TABLES.get(kind)
    if table is None:
        raise _Reject("unknown-kind", f"kind {kind[:40]!r}")
    fields = outer
    if "z" in outer:
        fields = outer | _inflate(outer["z"])
    try:
        message: Message = table.read(fields)
    except _Reject as exc:
        raise exc.within(kind) from None
    return message


def encode(msg: Message, key: bytes | None = None) -> bytes:
    """One message -> the frame to publish, MAC'd when ``key`` is given.

    Raises :class:`~mesh.errors.LocalError` if the message breaks a bound
    (call :func:`bound_report` on reports first; split long batches) or has
    wrongly typed fields, or if ``key`` is shorter than :data:`MIN_KEY`.
    """
    _check_key(key)
    limit = MAX_MESSAGE - (MAC_BYTES if key is not None else 0)
    payload = _write_envelope(msg, limit)
    return payload + _mac(key, payload) if key is not None else payload


def decode(data: bytes, key: bytes | None = None) -> Message | Rejected:
    """A received frame -> the message, or why it was rejected.

    Never raises for any ``data``: every problem with the bytes is a
    :class:`Rejected`. With a ``key``, the frame must end with the MAC of the
    rest; without one, no MAC is expected (trailing bytes are undecodable).
    Raises :class:`~mesh.errors.LocalError` only for a ``key`` shorter than
    :data:`MIN_KEY` (a configuration bug).
    """
    _check_key(key)
    try:
        return _decode_frame(data, key)
    except _Reject as exc:
        return Rejected(reason=exc.reason, detail=exc.text())


def _decode_frame(data: bytes, key: bytes | None) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _Reject("undecodable", f"expected bytes, got {_tname(data)}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE:
        raise _Reject("oversized", f"{len(data)} bytes, at most {MAX_MESSAGE}")
    if key is None:
        return _read_envelope(data)
    payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if len(data) > MAC_BYTES and hmac.compare_digest(mac, _mac(key, payload)):
        return _read_envelope(payload)
    if _is_message(data):
        raise _Reject("missing-mac", "a message without a MAC where the cluster requires one")
    raise _Reject("bad-mac", "MAC does not match (wrong cluster key or altered bytes)")


def _is_message(data: bytes) -> bool:
    try:
        return isinstance(_unpack(data), dict)
    except _Reject:
        return False


# --------------------------------------------------------------------------
# The durable store's bytes


def encode_report(report: Report) -> bytes:
    """A report as the store keeps it: an unsigned ``report`` payload.

    Raises :class:`~mesh.errors.LocalError` like :func:`encode` (over
    :data:`MAX_STORED` bytes or a broken bound).
    """
    return _write_envelope(ReportMsg(report=report), MAX_STORED)


def decode_report(data: bytes) -> Report:
    """Bytes from :func:`encode_report` -> the report.

    Raises :class:`~mesh.errors.WireError` (with a :data:`REJECT_REASONS` code)
    if they are not a valid ``report`` payload.
    """
    return _decode_stored(data, ReportMsg).report


def encode_state(state: SigState) -> bytes:
    """A signature's state as the store keeps it: an unsigned ``state`` payload.

    Raises :class:`~mesh.errors.LocalError` like :func:`encode` (over
    :data:`MAX_STORED` bytes or a broken bound).
    """
    return _write_envelope(StateMsg(states=(state,)), MAX_STORED)


def decode_state(data: bytes) -> SigState:
    """Bytes from :func:`encode_state` -> the state (``counts`` a plain dict).

    Raises :class:`~mesh.errors.WireError` if they are not a ``state``
    payload holding exactly one state.
    """
    states = _decode_stored(data, StateMsg).states
    if len(states) != 1:
        raise WireError("bad-field", f"expected one state, got {len(states)}")
    return states[0]


def _decode_stored(data: bytes, cls: type[_M]) -> _M:
    try:
        if not isinstance(data, bytes):
            raise _Reject("undecodable", f"expected bytes, got {_tname(data)}")
        if len(data) > MAX_STORED:
            raise _Reject("oversized", f"{len(data)} bytes, at most {MAX_STORED}")
        message = _read_envelope(data)
    except _Reject as exc:
        raise WireError(exc.reason, exc.text()) from None
    if not isinstance(message, cls):
        raise WireError("unknown-kind", f"expected {_KIND_OF[cls]}, got {_KIND_OF[type(message)]}")
    return message


# --------------------------------------------------------------------------
# Bounding a report before it is spooled and sent

#: Bytes the packed report map may take: a frame holds it uncompressed with
#: the envelope, a sender id of MAX_NAME bytes and a MAC.
_REPORT_ROOM: Final = MAX_MESSAGE - MAC_BYTES - 256
#: No cap shrinks below this (a cut marker needs about 20 bytes).
_FLOOR: Final = 32


class _Caps(NamedTuple):
    """String limits for one pass of :func:`bound_report`, in UTF-8 bytes."""

    frame_line: int = MAX_FRAME_LINE
    log_line: int = MAX_LOG_LINE
    argv_item: int = MAX_ARGV_ITEM
    fact_value: int = MAX_FACT_VALUE
    text: int = MAX_TEXT
    cause: int = MAX_CAUSE_MESSAGE
    name: int = MAX_NAME


#: Shrunk first: the bulk of a big report and the least valuable bytes.
_BULKY: Final = ("frame_line", "log_line", "argv_item", "fact_value")


def _cap_levels() -> Iterator[_Caps]:
    """The hard limits; then bulky caps halved; then all caps halved; to _FLOOR."""
    caps = _Caps()
    while True:
        yield caps
        names = [n for n in _BULKY if getattr(caps, n) > _FLOOR] or list(_Caps._fields)
        smaller = caps._replace(**{n: max(_FLOOR, getattr(caps, n) // 2) for n in names})
        if smaller == caps:
            return
        caps = smaller


def _cut(text: str, limit: int) -> str:
    """``text`` within ``limit`` UTF-8 bytes: its head kept, the rest marked.

    Lone surrogates (undecodable file names) become ``?`` on the way.
    """
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return data.decode("utf-8")
    room = limit - len(f"…[cut {len(data)} bytes]".encode())
    head = data[: max(room, 0)].decode("utf-8", "ignore")
    return f"{head}…[cut {len(data) - len(head.encode())} bytes]"


def _cut_frame(frame: Frame, caps: _Caps) -> Frame:
    return Frame(
        module=_cut(frame.module, caps.name),
        function=_cut(frame.function, caps.name),
        filename=_cut(frame.filename, caps.name),
        lineno=frame.lineno,
        in_app=frame.in_app,
        line=_cut(frame.line, caps.frame_line),
    )


def _bounded(report: Report, caps: _Caps) -> Report:
    frames = report.frames
    if len(frames) > MAX_FRAMES:
        kept = frames[len(frames) - MAX_FRAMES + 1 :]
        marker = f"…[cut {len(frames) - len(kept)} outer frames]"
        frames = (Frame(module="", function=marker, filename="", lineno=0, in_app=False), *kept)
    log_tail = report.log_tail
    if len(log_tail) > MAX_LOG_LINES:
        kept_lines = log_tail[len(log_tail) - MAX_LOG_LINES + 1 :]
        log_tail = (f"…[cut {len(log_tail) - len(kept_lines)} older lines]", *kept_lines)
    argv = report.argv
    if len(argv) > MAX_ARGV:
        argv = (*argv[: MAX_ARGV - 1], f"…[cut {len(argv) - MAX_ARGV + 1} arguments]")

    def name(text: str) -> str:
        return _cut(text, caps.name)

    return report.replace(
        exc_type=name(report.exc_type),
        message=_cut(report.message, caps.text),
        causes=tuple(
            Cause(type=name(c.type), message=_cut(c.message, caps.cause), relation=c.relation)
            for c in report.causes[:MAX_CAUSES]
        ),
        frames=tuple(_cut_frame(f, caps) for f in frames),
        log_tail=tuple(_cut(line, caps.log_line) for line in log_tail),
        argv=tuple(_cut(arg, caps.argv_item) for arg in argv),
        app=name(report.app),
        app_version=name(report.app_version),
        host=name(report.host),
        os=name(report.os),
        python=name(report.python),
        facts=tuple((name(k), _cut(v, caps.fact_value)) for k, v in report.facts[:MAX_FACTS]),
        fingerprint=None
        if report.fingerprint is None
        else tuple(name(part) for part in report.fingerprint[:MAX_FINGERPRINT]),
    )


def bound_report(report: Report) -> Report:
    """A copy of ``report`` cut to the wire's bounds; call it before spooling.

    Keeps the innermost :data:`MAX_FRAMES` frames, the newest
    :data:`MAX_LOG_LINES` log lines and the first arguments (each with a
    marker saying how many were cut), cuts every string to its limit with a
    ``…[cut N bytes]`` marker and replaces lone surrogates with ``?``. If the
    encoding is still too big, it halves the limits of frame source lines, log
    lines, arguments and fact values, then of every string, until the packed
    report fits a frame uncompressed (with a sender id and a MAC), so
    ``encode(ReportMsg(report=bound_report(r), sender=peer), key)`` cannot fail
    on size. A report already within bounds comes back equal.

    Raises :class:`~mesh.errors.LocalError` for what cannot be cut: a value
    of the wrong type or an integer msgpack cannot carry.
    """
    try:
        for caps in _cap_levels():
            bounded = _bounded(report, caps)
            if len(_pack(_REPORT.write(bounded))) <= _REPORT_ROOM:
                break
    except (AttributeError, TypeError, ValueError, OverflowError) as exc:
        raise LocalError(f"report cannot be bounded: {exc}") from exc
    return bounded
