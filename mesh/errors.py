"""Every exception the ``mesh`` package raises, in one tree.

::

    MeshError
    ├── LocalError            you misused the library (bad argument, bad config)
    │   ├── ListenError       a listen address cannot be bound (in use, not here)
    │   └── PnetError         a private-network key is unusable (swarm key file, PSK list)
    ├── RemoteError           a peer or a stored byte string misbehaved
    │   └── WireError         undecodable/oversized/wrongly typed message
    └── StoreError            the spool or its disk failed
        └── StoreUnavailable  read-only, full, or missing state directory

A remote error is never fatal to a node: count it, drop the message, go on.
"""

from __future__ import annotations

__all__ = [
    "ListenError",
    "LocalError",
    "MeshError",
    "PnetError",
    "RemoteError",
    "StoreError",
    "StoreUnavailable",
    "WireError",
]


class MeshError(Exception):
    """Base of every errmesh ``mesh`` exception."""


class LocalError(MeshError):
    """The caller misused the API; fixing the call fixes it."""


class ListenError(LocalError):
    """A listen address cannot be served; the message names it and says why."""


class PnetError(LocalError):
    """A private-network key cannot be used; the message says which part is wrong."""


class RemoteError(MeshError):
    """Something received from outside this process was wrong."""


class WireError(RemoteError):
    """A message could not be decoded; ``reason`` is a short stable code."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


class StoreError(MeshError):
    """The durable store failed."""


class StoreUnavailable(StoreError):
    """The store cannot be written at all (read-only or full disk, bad path)."""
