"""Field codecs and the record machinery the schema is built from.

Each codec is a ``(read, write)`` pair. ``read`` takes what msgpack produced
and returns the Python value, raising ``_Reject``; ``write`` does the reverse
and trusts ``read`` to check the result. A ``_Record`` maps one dataclass to
one msgpack map by a table of ``_Field`` s, so writing, reading and validating
are all driven by data.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any, Final, NamedTuple, TypeAlias

from mesh.report import SIGNATURE_BYTES
from mesh.severity import Severity
from mesh.wire.limits import _INT64_END, _INT64_MIN, MAX_NAME, MAX_NUMBER, MAX_TERM
from mesh.wire.rejected import _Reject, _tname

_Read: TypeAlias = Callable[[Any], Any]
_Write: TypeAlias = Callable[[Any], Any]


class _Codec(NamedTuple):
    read: _Read
    write: _Write
    #: ``read``'s checks without building the values (records stay maps):
    #: what a writer runs on its own output; None where ``read`` is as cheap.
    check: _Read | None = None


def _checker(codec: _Codec) -> _Read:
    """What checks ``codec``'s values: its ``check``, else its ``read``."""
    return codec.check or codec.read


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


def _read_fingerprint(value: Any) -> bytes:
    """A state fingerprint: empty (not sent) or 8 bytes."""
    if not isinstance(value, bytes) or len(value) not in (0, 8):
        raise _Reject("bad-field", f"expected an 8-byte bin, got {_tname(value)}")
    return value


def _read_bound(value: Any) -> bytes:
    """A digest range bound: empty (open) or a 16-byte signature."""
    if not isinstance(value, bytes) or len(value) not in (0, SIGNATURE_BYTES):
        raise _Reject("bad-field", f"expected an empty or 16-byte bin, got {_tname(value)}")
    return value


def _integer(low: int, ceiling: int | None = None) -> _Codec:
    """An int in ``[low, 2**63)``; with a ``ceiling``, one above it is ``out-of-range``."""

    def read(value: Any) -> int:
        if type(value) is not int:
            raise _Reject("bad-field", f"expected int, got {_tname(value)}")
        if not low <= value < _INT64_END:
            raise _Reject("bad-field", f"int out of range [{low}, 2**63)")
        if ceiling is not None and value > ceiling:
            raise _Reject("out-of-range", f"{value} is above the ceiling {ceiling}")
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

    validate = _checker(item)

    def check(value: Any) -> None:
        for i, element in enumerate(_items(value, limit)):
            try:
                validate(element)
            except _Reject as exc:
                raise exc.within(f"[{i}]") from None

    return _Codec(read, write, check)


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

    checks = (_checker(first), _checker(second))

    def check(value: Any) -> None:
        if not isinstance(value, list | tuple) or len(value) != 2:
            raise _Reject("bad-field", f"expected a 2-element array, got {_tname(value)}")
        for i, validate in enumerate(checks):
            try:
                validate(value[i])
            except _Reject as exc:
                raise exc.within(f"[{i}]") from None

    return _Codec(read, write, check)


def _optional(codec: _Codec) -> _Codec:
    """``None`` travels as nil (or, as the wire default, as an absent key)."""

    def read(value: Any) -> Any:
        return None if value is None else codec.read(value)

    def write(value: Any) -> Any:
        return None if value is None else codec.write(value)

    validate = _checker(codec)

    def check(value: Any) -> None:
        if value is not None:
            validate(value)

    return _Codec(read, write, check)


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
_FINGERPRINT = _Codec(_read_fingerprint, _same)
_BOUND = _Codec(_read_bound, _same)
_UINT = _integer(0)
_INT = _integer(_INT64_MIN)
#: An election term (mesh.bounds: ``term + 1`` must still be sendable).
_TERM = _integer(0, MAX_TERM)
#: A digest's link term: a term, or -1 without a link.
_LINK_TERM = _integer(-1, MAX_TERM)
#: An issue number (mesh.bounds: a file sink allocates ``number + 1``).
_NUMBER = _integer(0, MAX_NUMBER)
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
        self.codec = _Codec(self.read, self.write, self.check)
        self._checks = tuple((f, _checker(f.codec)) for f in fields)

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

    def check(self, value: Any) -> None:
        """:meth:`read`'s checks, the same rejections, without building the record."""
        if not isinstance(value, dict):
            raise _Reject("bad-field", f"expected map, got {_tname(value)}")
        for f, validate in self._checks:
            raw = value.get(f.key, _REQUIRED)
            if raw is _REQUIRED:
                if f.default is _REQUIRED:
                    raise _Reject("bad-field", f"missing key {f.key!r}", f.attr)
                continue
            try:
                validate(raw)
            except _Reject as exc:
                raise exc.within(f.attr) from None

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
