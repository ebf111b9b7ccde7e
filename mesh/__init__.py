"""The pure core every errmesh peer shares, plus the durable store.

Signature, scrubbing, severity, the wire codec, the replicated aggregate and
the election take inputs and an explicit ``now`` and return decisions: no
clock, socket or file. The IO is SQLite in the store (``mesh.store``, the
``mesh.store_*`` modules beside it, ``mesh.leader_lock``) and libp2p in
``mesh.gossip`` and ``mesh.libp2p_host``.

Names are re-exported lazily (PEP 562): ``import mesh`` defines things and
nothing else, and using ``mesh.Report`` loads only ``mesh.report``.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mesh import wire
    from mesh.aggregate import Aggregate
    from mesh.bundling import (
        Action,
        BundlePolicy,
        OpenIssue,
        ReopenIssue,
        UpdateIssue,
        effective_severity,
        next_due,
        plan,
    )
    from mesh.election import Election, ElectionConfig, Heartbeat
    from mesh.errors import (
        LocalError,
        MeshError,
        RemoteError,
        StoreError,
        StoreUnavailable,
        WireError,
    )
    from mesh.report import Cause, Frame, Occurrence, Report, sig_hex
    from mesh.scrub import REDACTED, Scrubber, ScrubRules
    from mesh.severity import Severity
    from mesh.signature import normalise_message, report_signature
    from mesh.sigstate import IssueLink, Limits, OriginCount, SigState, merge_states
    from mesh.store import Store, StoreStatistics

_EXPORTS: dict[str, str] = {
    "Action": "bundling",
    "Aggregate": "aggregate",
    "BundlePolicy": "bundling",
    "Cause": "report",
    "Election": "election",
    "ElectionConfig": "election",
    "Frame": "report",
    "Heartbeat": "election",
    "IssueLink": "sigstate",
    "Limits": "sigstate",
    "LocalError": "errors",
    "MeshError": "errors",
    "Occurrence": "report",
    "OpenIssue": "bundling",
    "OriginCount": "sigstate",
    "REDACTED": "scrub",
    "RemoteError": "errors",
    "ReopenIssue": "bundling",
    "Report": "report",
    "ScrubRules": "scrub",
    "Scrubber": "scrub",
    "Severity": "severity",
    "SigState": "sigstate",
    "Store": "store",
    "StoreError": "errors",
    "StoreStatistics": "store",
    "StoreUnavailable": "errors",
    "UpdateIssue": "bundling",
    "WireError": "errors",
    "effective_severity": "bundling",
    "merge_states": "sigstate",
    "next_due": "bundling",
    "normalise_message": "signature",
    "plan": "bundling",
    "report_signature": "signature",
    "sig_hex": "report",
    "wire": "",
}

__all__ = [
    "REDACTED",
    "Action",
    "Aggregate",
    "BundlePolicy",
    "Cause",
    "Election",
    "ElectionConfig",
    "Frame",
    "Heartbeat",
    "IssueLink",
    "Limits",
    "LocalError",
    "MeshError",
    "Occurrence",
    "OpenIssue",
    "OriginCount",
    "RemoteError",
    "ReopenIssue",
    "Report",
    "ScrubRules",
    "Scrubber",
    "Severity",
    "SigState",
    "Store",
    "StoreError",
    "StoreStatistics",
    "StoreUnavailable",
    "UpdateIssue",
    "WireError",
    "effective_severity",
    "merge_states",
    "next_due",
    "normalise_message",
    "plan",
    "report_signature",
    "sig_hex",
    "wire",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'mesh' has no attribute {name!r}")
    if module == "":
        return importlib.import_module(f"mesh.{name}")
    return getattr(importlib.import_module(f"mesh.{module}"), name)
