"""How bad an error is, from its type and from how far it has spread.

Severity is an ordered enum so that the aggregate can merge it with ``max``
(a CRDT join): once any peer has seen an error as critical, every peer agrees
it is critical. The rules are data (two tables) rather than a chain of ifs so
that they can be read and changed in one place.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

__all__ = ["Severity", "escalate", "severity_for_types"]


class Severity(enum.IntEnum):
    LOW = 1
    MEDIUM = 2
    HIGH = 3
    CRITICAL = 4

    @property
    def label(self) -> str:
        """The GitHub label name, e.g. ``severity:high``."""
        return f"severity:{self.name.lower()}"

    @classmethod
    def parse(cls, text: str) -> Severity:
        """Read ``"high"``/``"HIGH"``; raises ``ValueError`` naming the choices."""
        try:
            return cls[text.strip().upper()]
        except KeyError:
            choices = ", ".join(m.name.lower() for m in cls)
            raise ValueError(f"unknown severity {text!r} (choose one of {choices})") from None


#: Exception type names (unqualified) -> severity. The first name of an
#: exception's MRO that appears here decides, so subclasses inherit the rule
#: of their nearest listed base (``FileNotFoundError`` -> ``OSError`` -> high).
TYPE_RULES: dict[str, Severity] = {
    "MemoryError": Severity.CRITICAL,
    "RecursionError": Severity.CRITICAL,
    "SystemError": Severity.CRITICAL,
    "OSError": Severity.HIGH,
    "RuntimeError": Severity.HIGH,
    "ConnectionError": Severity.HIGH,
    "TimeoutError": Severity.HIGH,
    "ValueError": Severity.MEDIUM,
    "TypeError": Severity.MEDIUM,
    "KeyError": Severity.MEDIUM,
    "IndexError": Severity.MEDIUM,
    "AttributeError": Severity.MEDIUM,
    "AssertionError": Severity.MEDIUM,
    "NotImplementedError": Severity.LOW,
    "DeprecationWarning": Severity.LOW,
}

DEFAULT = Severity.MEDIUM

#: Spread escalation: (minimum distinct hosts, minimum occurrences per hour)
#: -> the severity the error is raised to at least. Either threshold suffices.
SPREAD_RULES: tuple[tuple[int, float, Severity], ...] = (
    (10, 600.0, Severity.CRITICAL),
    (3, 60.0, Severity.HIGH),
)


def severity_for_types(mro_names: Iterable[str]) -> Severity:
    """Severity of an exception given the names of its MRO, most derived first.

    Names may be qualified (``pkg.mod.Error``); only the last dotted part is
    matched, so a user's ``myapp.errors.ValueError`` does not count as the
    builtin unless it subclasses it.
    """
    for name in mro_names:
        rule = TYPE_RULES.get(name.rsplit(".", 1)[-1])
        if rule is not None:
            return rule
    return DEFAULT


def escalate(base: Severity, *, hosts: int, per_hour: float) -> Severity:
    """Raise ``base`` when an error has spread to many hosts or fires often.

    Never lowers: severity only grows, like every other aggregate field.
    """
    for min_hosts, min_rate, level in SPREAD_RULES:
        if hosts >= min_hosts or per_hour >= min_rate:
            return max(base, level)
    return base
