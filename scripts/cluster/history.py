"""What happened in a run, as plain data: the checker's only input.

- *intents*: each failing CLI wrote ``{id, host, kind, time}`` before it
  raised (``hosts.CLI_CODE``); its exit says whether errmesh committed it;
- *events*: what the harness did and when (faults, heals, kills);
- *samples*: every relay's role, term and totals, every 150 ms;
- *leadership*: each relay's own account, from its log (``leading in term
  N`` / ``stepped down``), clock offsets taken back out, ended by its death;
- *writes* and *issues*: what the test GitHub received, by host, and holds.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

__all__ = ["History", "Tenure", "leadership"]

_LINE = re.compile(
    r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),(\d{3}) \w+ errmesh\.peer: "
    r"(leading in term (\d+)|stepped down \(term (\d+)\))"
)
_START = re.compile(r"^### start ([\d.]+) offset ([-+\d.e]+)")


@dataclass(frozen=True)
class Tenure:
    """One stretch of a relay leading in one term, on the true clock."""

    host: int
    term: int
    start: float
    end: float  # inf while it still leads


def leadership(host: int, log: Path, deaths: list[float]) -> list[Tenure]:
    """A relay's tenures from its log; a death (SIGKILL, given) ends the current one."""
    try:
        lines = log.read_text(errors="replace").splitlines()
    except FileNotFoundError:
        return []
    out: list[Tenure] = []
    current: tuple[int, float] | None = None
    offset = 0.0

    def close(at: float) -> None:
        nonlocal current
        if current is not None:
            out.append(Tenure(host, current[0], current[1], at))
            current = None

    def died(since: float, until: float) -> float:
        """When the process that led since ``since`` died (``until`` if not seen)."""
        return min((d for d in deaths if since <= d <= until), default=until)

    for line in lines:
        start = _START.match(line)
        if start:
            began = float(start[1])
            close(died(current[1], began) if current is not None else began)
            offset = float(start[2])
            continue
        match = _LINE.match(line)
        if not match:
            continue
        at = time.mktime(time.strptime(match[1], "%Y-%m-%d %H:%M:%S")) + int(match[2]) / 1000
        at -= offset
        if match[4] is not None:
            close(at)
            current = (int(match[4]), at)
        else:
            close(at)
    if current is not None:
        close(died(current[1], float("inf")))
    return out


@dataclass
class History:
    scenario: str
    seed: int
    schedule: list[dict[str, Any]]
    events: list[dict[str, Any]]
    intents: list[dict[str, Any]]
    clis: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    tenures: list[Tenure]
    writes: list[dict[str, Any]]
    issues: list[dict[str, Any]]
    states: dict[int, dict[str, dict[str, Any]]]
    live: list[int]
    healed_at: float
    converged_at: float | None
    proxy: dict[str, int]

    def committed(self) -> list[dict[str, Any]]:
        """Intents whose CLI errmesh committed (exit 1, its own traceback, no errmesh line)."""
        ok = {c["id"] for c in self.clis if c["committed"]}
        return [i for i in self.intents if i["id"] in ok]

    def dump(self, path: Path) -> None:
        data = asdict(self)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(data, indent=1, default=str))
