"""The durable store's bytes: reports and states as unsigned envelopes.

The store keeps the same payload a frame carries, without a MAC, so what it
holds is versioned like the wire and a stored report becomes a frame by
appending its MAC. Reading raises :class:`~mesh.errors.WireError` rather than
returning a :class:`~mesh.wire.Rejected`: there is no sender to score.
"""

from __future__ import annotations

from typing import TypeVar

from mesh.errors import WireError
from mesh.report import Report
from mesh.sigstate import SigState
from mesh.wire.envelope import _read_envelope, _write_envelope, _write_fields
from mesh.wire.limits import MAX_STORED
from mesh.wire.messages import ReportMsg, StateMsg
from mesh.wire.rejected import _Reject, _tname
from mesh.wire.schema import _KIND_OF, _REPORT

_M = TypeVar("_M", ReportMsg, StateMsg)


def encode_report(report: Report) -> bytes:
    """A report as the store keeps it: an unsigned ``report`` payload.

    Raises :class:`~mesh.errors.LocalError` like :func:`encode` (over
    :data:`MAX_STORED` bytes or a broken bound).
    """
    return _write_envelope(ReportMsg(report=report), MAX_STORED)


def encode_stamped(report: Report, *, origin: bytes, seq: int, count: int) -> bytes:
    """``encode_report(report.replace(origin=origin, seq=seq, count=count))``.

    The spool stamps a sealed report and stores it; :func:`bound_report` has
    just written that report's map to measure it, so when ``report`` is the
    object it returned last, that map is reused with the three stamps
    written in (the report is written once per capture, not twice). The
    bytes are the same either way, and checked the same way.
    """
    from mesh.wire import bound

    stamps = {"origin": origin, "seq": seq, "count": count}
    last = bound._last_bound
    if last is None or last[0] is not report:
        return encode_report(report.replace(**stamps))
    fields = dict(last[1])
    for field in _REPORT.fields:
        if field.attr in stamps:
            fields[field.key] = field.codec.write(stamps[field.attr])
    return _write_fields("report", {"r": fields}, MAX_STORED)


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
