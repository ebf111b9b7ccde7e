"""errmesh across hosts: a cluster in network namespaces, its faults, history and checker.

Modules: :mod:`.netns` (namespaces, veths, the bridge, sockets in a
namespace), :mod:`.proxy` (the trio proxy that carries every relay byte:
partitions, latency, jitter, loss), :mod:`.github` (the test GitHub in the
bridge namespace), :mod:`.hosts` (a host's relay and failing CLIs),
:mod:`.clockshim` (a host's wall clock off), :mod:`.cluster` (up and down),
:mod:`.faults` (schedules and the harness), :mod:`.history`,
:mod:`.checker`, :mod:`.scenarios`, :mod:`.report` (docs/RELIABILITY.md),
:mod:`.control` (a cluster kept up by hand). ``python -m scripts.cluster
--help`` for the commands.
"""

from scripts.cluster.checker import Verdict, check
from scripts.cluster.cluster import Cluster, ClusterTimeout, poll
from scripts.cluster.faults import Harness, Step
from scripts.cluster.netns import netns_unavailable
from scripts.cluster.scenarios import SCENARIOS, Result, Scenario, run

__all__ = [
    "SCENARIOS",
    "Cluster",
    "ClusterTimeout",
    "Harness",
    "Result",
    "Scenario",
    "Step",
    "Verdict",
    "check",
    "netns_unavailable",
    "poll",
    "run",
]
