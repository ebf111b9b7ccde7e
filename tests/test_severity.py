"""Severity: from the exception type, raised (never lowered) by spread."""

from __future__ import annotations

import pytest

from mesh.severity import Severity, escalate, severity_for_types
from node.event import qualified_name


def mro(cls: type) -> list[str]:
    return [qualified_name(c) for c in cls.__mro__]


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        (MemoryError, Severity.CRITICAL),
        (RecursionError, Severity.CRITICAL),
        (OSError, Severity.HIGH),
        (FileNotFoundError, Severity.HIGH),  # inherits OSError's rule
        (RuntimeError, Severity.HIGH),
        (ValueError, Severity.MEDIUM),
        (UnicodeDecodeError, Severity.MEDIUM),  # a ValueError
        (TypeError, Severity.MEDIUM),
        (KeyError, Severity.MEDIUM),
        (AttributeError, Severity.MEDIUM),
        (ZeroDivisionError, Severity.MEDIUM),  # default
    ],
)
def test_type_rules_follow_the_mro(exc: type, expected: Severity) -> None:
    assert severity_for_types(mro(exc)) == expected


def test_user_subclass_inherits_its_base_rule() -> None:
    class QuotaExceeded(RuntimeError):
        pass

    assert severity_for_types(mro(QuotaExceeded)) == Severity.HIGH


def test_spread_raises_but_never_lowers() -> None:
    assert escalate(Severity.LOW, hosts=1, per_hour=1) == Severity.LOW
    assert escalate(Severity.LOW, hosts=3, per_hour=0) == Severity.HIGH
    assert escalate(Severity.MEDIUM, hosts=1, per_hour=600) == Severity.CRITICAL
    assert escalate(Severity.CRITICAL, hosts=1, per_hour=0) == Severity.CRITICAL


def test_labels_and_parsing() -> None:
    assert Severity.HIGH.label == "severity:high"
    assert Severity.parse(" Critical ") == Severity.CRITICAL
    with pytest.raises(ValueError, match="choose one of low, medium, high, critical"):
        Severity.parse("urgent")
