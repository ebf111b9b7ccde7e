"""msgpack, read defensively: hostile bytes in, plain values or ``_Reject`` out.

Unpacking applies msgpack's own size limits, refuses every ext type (the
timestamp ext -1 too) and bounds the nesting depth, so nothing past this
module sees a value the schema could not describe.
"""

from __future__ import annotations

from typing import Any, Final

import msgpack

from mesh.wire.limits import MAX_BATCH, MAX_DEPTH, MAX_MAP_KEYS, MAX_STORED, MAX_TEXT
from mesh.wire.rejected import RejectReason, _Reject, _tname


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
