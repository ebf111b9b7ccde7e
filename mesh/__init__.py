"""The pure core every errmesh peer shares, plus the durable store.

Signature, scrubbing, severity, the wire codec, the replicated aggregate and
the election take inputs and an explicit ``now`` and return decisions: no
clock, socket or file (``mesh.store`` is the one IO module, SQLite).

Names are re-exported lazily (PEP 562): ``import mesh`` defines things and
nothing else, and using ``mesh.Report`` loads only ``mesh.report``.
"""

from __future__ import annotations

import importlib

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mesh import wire
    from mesh.aggregate import (
        Action,
        Aggregate,
        BundlePolicy,
        IssueLink,
        Limits,
        OpenIssue,
        OriginCount,
        ReopenIssue,
        SigState,
        UpdateIssue,
        effective_severity,
        merge_states,
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
    from mesh.store import Store, StoreStatistics

_EXPORTS: dict[str, str] = {
    "Action": "aggregate",
    "Aggregate": "aggregate",
    "BundlePolicy": "aggregate",
    "Cause": "report",
    "Election": "election",
    "ElectionConfig": "election",
    "Frame": "report",
    "Heartbeat": "election",
    "IssueLink": "aggregate",
    "Limits": "aggregate",
    "LocalError": "errors",
    "MeshError": "errors",
    "Occurrence": "report",
    "OpenIssue": "aggregate",
    "OriginCount": "aggregate",
    "REDACTED": "scrub",
    "RemoteError": "errors",
    "ReopenIssue": "aggregate",
    "Report": "report",
    "ScrubRules": "scrub",
    "Scrubber": "scrub",
    "Severity": "severity",
    "SigState": "aggregate",
    "Store": "store",
    "StoreError": "errors",
    "StoreStatistics": "store",
    "StoreUnavailable": "errors",
    "UpdateIssue": "aggregate",
    "WireError": "errors",
    "effective_severity": "aggregate",
    "merge_states": "aggregate",
    "next_due": "aggregate",
    "normalise_message": "signature",
    "plan": "aggregate",
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
