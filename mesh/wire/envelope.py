"""The envelope: a message as a versioned, optionally compressed and MAC'd frame.

:func:`encode` and :func:`decode` live here, with what only the envelope
knows: the ``"v"``/``"k"``/``"n"`` keys, zlib under ``"z"`` and the HMAC.
"""

from __future__ import annotations

import hashlib
import hmac
import zlib
from typing import Any

from mesh.errors import LocalError
from mesh.wire.limits import (
    COMPRESS_OVER,
    MAC_BYTES,
    MAX_INFLATED,
    MAX_MESSAGE,
    MIN_KEY,
    VERSION,
)
from mesh.wire.messages import Message
from mesh.wire.packing import _pack, _unpack
from mesh.wire.rejected import Rejected, _Reject, _tname
from mesh.wire.schema import _KIND_OF, _TABLES


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


#: What a frame may be checked against: no key, one key, or during a key
#: rotation every key still accepted (``mesh.keyring.KeyRing.accepted``).
Keys = bytes | tuple[bytes, ...] | None


def _check_key(key: bytes | None) -> None:
    if key is not None and (not isinstance(key, bytes) or len(key) < MIN_KEY):
        raise LocalError(f"the cluster key must be at least {MIN_KEY} bytes")


def _key_tuple(key: Keys) -> tuple[bytes, ...] | None:
    if key is None or isinstance(key, bytes):
        _check_key(key)
        return None if key is None else (key,)
    if not key:
        raise LocalError("no cluster key to check frames against")
    for one in key:
        _check_key(one)
    return tuple(key)


def _write_envelope(msg: Message, limit: int) -> bytes:
    kind = _KIND_OF.get(type(msg))
    if kind is None:
        raise LocalError(f"not a wire message: {type(msg).__name__}")
    try:
        fields = _TABLES[kind].write(msg)
    except (AttributeError, TypeError, ValueError) as exc:
        raise LocalError(f"{kind} message is malformed: {exc}") from exc
    return _write_fields(kind, fields, limit)


def _write_fields(kind: str, fields: dict[str, Any], limit: int) -> bytes:
    """A message already written as its map (``fields``, which this may change) -> bytes."""
    table = _TABLES[kind]
    try:
        table.check(fields)  # the receiver's checks, applied before sending
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


def decode(data: bytes, key: Keys = None) -> Message | Rejected:
    """A received frame -> the message, or why it was rejected.

    Never raises for any ``data``: every problem with the bytes is a
    :class:`Rejected`. With a ``key``, the frame must end with the MAC of the
    rest; with several (a key rotation), the MAC of any of them; without one,
    no MAC is expected (trailing bytes are undecodable). Raises
    :class:`~mesh.errors.LocalError` only for a ``key`` shorter than
    :data:`MIN_KEY` or an empty tuple of keys (a configuration bug).
    """
    keys = _key_tuple(key)
    try:
        return _decode_frame(data, keys)
    except _Reject as exc:
        return Rejected(reason=exc.reason, detail=exc.text())


def _decode_frame(data: bytes, keys: tuple[bytes, ...] | None) -> Message:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise _Reject("undecodable", f"expected bytes, got {_tname(data)}")
    data = bytes(data)
    if len(data) > MAX_MESSAGE:
        raise _Reject("oversized", f"{len(data)} bytes, at most {MAX_MESSAGE}")
    if keys is None:
        return _read_envelope(data)
    payload, mac = data[:-MAC_BYTES], data[-MAC_BYTES:]
    if len(data) > MAC_BYTES and any(hmac.compare_digest(mac, _mac(k, payload)) for k in keys):
        return _read_envelope(payload)
    if _is_message(data):
        raise _Reject("missing-mac", "a message without a MAC where the cluster requires one")
    raise _Reject("bad-mac", "MAC does not match (wrong cluster key or altered bytes)")


def _is_message(data: bytes) -> bool:
    try:
        return isinstance(_unpack(data), dict)
    except _Reject:
        return False
