"""docs/RELIABILITY.md's "Cluster in network namespaces" section, from recorded runs.

Every run the CLI makes (``run``, ``report``, ``soak``) is appended to
``docs/reliability-cluster.json`` (its summary: scenario, seed, figures,
violations); the section is rendered from that file between two markers, so
the rest of RELIABILITY.md (the fleet-scale simulation, written elsewhere)
is left as it is.
"""

from __future__ import annotations

import json
import platform
import statistics
from collections import defaultdict
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from scripts.cluster.hosts import ROOT

__all__ = ["RELIABILITY", "RESULTS", "append_results", "render", "write_section"]

RELIABILITY = ROOT / "docs" / "RELIABILITY.md"
RESULTS = ROOT / "docs" / "reliability-cluster.json"
HEADING = "## Cluster in network namespaces"
BEGIN, END = "<!-- cluster-table:begin -->", "<!-- cluster-table:end -->"

INTRO = """\
Five hosts, each a network namespace with its own state directories, an
`errmesh relay` (GitHub sink, every relay leader-eligible) and failing CLIs
(two thirds handing over to the local relay, a third delivering over
libp2p), on a bridge namespace where the test GitHub
(`tests/github_fake`) listens; every byte between relays passes a
fault-injecting proxy (`scripts/cluster/proxy.py`: this kernel has no netem
and no iptables). A run is a seeded fault schedule, then a heal of
everything, then a bounded wait for convergence, then the checker
(`scripts/cluster/checker.py`) over the history: every committed occurrence
counted exactly once by every relay and on its issue, one open issue per
signature, GitHub's limits kept, no write in a lost term. `lost` and
`duplicated` are occurrences (committed ones missing from, or counted twice
in, the relays' converged aggregates), `duplicate issues` issues opened
beyond one per signature (all reconciled to one open issue when the run
passes), `convergence` the seconds from the heal to the converged
aggregates and issues, `failover` from a leader's kill or pause to another
relay leading, `propagation p99` from a raise to every relay counting it.

Regenerate: `python -m scripts.cluster report` (runs every scenario once
more and rewrites this section), `--render` to rewrite it from
`docs/reliability-cluster.json` only; `python -m scripts.cluster soak
--minutes 60` for the long version. A failed run prints its schedule and
`python -m scripts.cluster run SCENARIO --seed N`, which replays it.
"""


def load() -> list[dict[str, Any]]:
    try:
        data: list[dict[str, Any]] = json.loads(RESULTS.read_text())
    except FileNotFoundError:
        return []
    return data


def append_results(summaries: Iterable[dict[str, Any]]) -> None:
    data = load() + [dict(s, machine=f"{platform.machine()}") for s in summaries]
    RESULTS.write_text(json.dumps(data, indent=1) + "\n")


def _cell(values: list[Any], how: str = "max") -> str:
    present = [v for v in values if v is not None]
    if not present:
        return "-"
    if how == "sum":
        return str(sum(present))
    value = max(present) if how == "max" else statistics.median(present)
    return f"{value:g}"


def render(results: list[dict[str, Any]]) -> str:
    by_scenario: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in results:
        by_scenario[r["scenario"]].append(r)
    rows = [
        "| scenario | runs | passed | faults injected | occurrences | lost | duplicated "
        "| duplicate issues | stale writes | convergence (max s) | failover (max s) "
        "| propagation p99 (max s) |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for name, runs in by_scenario.items():
        f = [r["figures"] for r in runs]

        def col(key: str, how: str = "max", f: list[dict[str, Any]] = f) -> str:
            return _cell([x.get(key) for x in f], how)

        rows.append(
            f"| {name} | {len(runs)} | {sum(1 for r in runs if r['ok'])} "
            f"| {col('faults', 'sum')} | {col('occurrences', 'sum')} | {col('lost', 'sum')} "
            f"| {col('duplicated', 'sum')} | {col('duplicate_issues', 'sum')} "
            f"| {col('stale_writes', 'sum')} | {col('convergence_s')} | {col('failover_s')} "
            f"| {col('propagation_p99_s')} |"
        )
    failed = [r for r in results if not r["ok"]]
    notes = [""]
    if failed:
        notes.append("Failed runs (replay with `python -m scripts.cluster run SCENARIO --seed N`):")
        notes.append("")
        for r in failed:
            first = "; ".join(r["violations"][:3])
            notes.append(f"- `{r['scenario']}` seed {r['seed']}: {first}")
    return "\n".join(rows + notes).rstrip() + "\n"


def write_section(results: list[dict[str, Any]], path: Path = RELIABILITY) -> None:
    """Rewrite only our section (add it, or the file, when missing)."""
    text = path.read_text() if path.exists() else "# Reliability\n"
    section = f"{HEADING}\n\n{INTRO}\n{BEGIN}\n{render(results)}{END}\n"
    if HEADING in text:
        head, _, rest = text.partition(HEADING)
        nxt = rest.find("\n## ")
        tail = rest[nxt + 1 :] if nxt >= 0 else ""
        text = head + section + ("\n" + tail if tail else "")
    else:
        text = text.rstrip() + "\n\n" + section
    path.write_text(text)
