"""Encoding a report cheaper (issue 16), to the same bytes and the same checks.

A writer checks its own output without building it (``_Record.check``): the
same verdict, reason and path as the receiver's full read, on valid and
broken maps. The spool reuses the map ``bound_report`` wrote for the report
it sealed (``encode_stamped``)."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from test_wire import RECORD_TABLES, reports, uints

from mesh import wire
from mesh.wire import bound as wire_bound
from mesh.wire.rejected import _Reject
from mesh.wire.schema import _REPORT

junk = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**64), 2**64),
    st.floats(),
    st.text(max_size=5),
    st.integers(0, 3).map(lambda n: "é" * (2500 * n)),
    st.binary(max_size=20),
    st.lists(st.integers(), max_size=3),
    st.dictionaries(st.text(max_size=2), st.integers(), max_size=2),
)


def verdict(check: Any, value: Any) -> tuple[str, str] | None:
    try:
        check(value)
    except _Reject as exc:
        return (exc.reason, exc.text())
    return None


def break_somewhere(value: Any, data: st.DataObject) -> Any:
    """``value`` (a written map) with one entry somewhere replaced by junk."""
    if isinstance(value, dict) and value and data.draw(st.booleans()):
        key = data.draw(st.sampled_from(sorted(value)))
        return {**value, key: break_somewhere(value[key], data)}
    if isinstance(value, list) and value and data.draw(st.booleans()):
        i = data.draw(st.integers(0, len(value) - 1))
        return [*value[:i], break_somewhere(value[i], data), *value[i + 1 :]]
    return data.draw(junk)


@settings(max_examples=300, deadline=None)
@given(report=reports, data=st.data())
def test_check_and_read_agree_on_every_map(report: Any, data: st.DataObject) -> None:
    written = _REPORT.write(report)
    assert verdict(_REPORT.check, written) is None
    assert verdict(_REPORT.check, written) == verdict(_REPORT.read, written)
    broken = break_somewhere(written, data)
    assert verdict(_REPORT.check, broken) == verdict(_REPORT.read, broken)


def test_every_record_can_check() -> None:
    for table in RECORD_TABLES:
        assert table.codec.check is not None


@settings(max_examples=200, deadline=None)
@given(report=reports, stamps=st.tuples(st.binary(min_size=16, max_size=16), uints, uints))
def test_the_spool_encodes_a_sealed_report_once_and_to_the_same_bytes(
    report: Any, stamps: tuple[bytes, int, int]
) -> None:
    origin, seq, count = stamps
    sealed = wire.bound_report(report)
    expected = wire.encode_report(sealed.replace(origin=origin, seq=seq, count=count))
    assert wire_bound._last_bound is not None and wire_bound._last_bound[0] is sealed
    assert wire.encode_stamped(sealed, origin=origin, seq=seq, count=count) == expected
    wire.bound_report(report.replace(message="another"))  # no longer the last one
    assert wire.encode_stamped(sealed, origin=origin, seq=seq, count=count) == expected
