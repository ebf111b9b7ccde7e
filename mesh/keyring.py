"""The cluster's keys during a rotation: the one a peer signs with, and the ones it accepts.

A key file (``errmesh keygen``) holds one hex key per line; blank lines and
lines starting with ``#`` are ignored. The **first** key is the current one:
frames are MAC'd with it and private-network connections are dialled with
it. Every key in the file is accepted. A fleet rolls its key in three steps,
each one finished on every host before the next begins (as Serf's
``keys -install``, ``-use``, ``-remove``):

1. :func:`rotate`: add a new key after the current one. Peers that have it
   accept frames under both; everyone still signs with the old key.
2. :func:`promote`: the new key becomes current, the old one stays accepted.
   A peer that has promoted signs with the new key, which every peer accepts
   since step 1.
3. :func:`retire`: drop every key but the current one. Nobody signs with the
   old key since step 2.

At no point does a peer send what another refuses, so the mesh never
partitions. Pure: parsing and formatting text, no file IO.
"""

from __future__ import annotations

from dataclasses import dataclass

from mesh.errors import LocalError
from mesh.wire.limits import MIN_KEY

__all__ = ["MAX_KEYS", "KeyRing", "format_keys", "parse_keys", "promote", "retire", "rotate"]

#: Keys one file may hold: a rotation needs two; more is a mistake.
MAX_KEYS = 2


@dataclass(frozen=True, slots=True)
class KeyRing:
    """The accepted keys, the current one first."""

    keys: tuple[bytes, ...]

    def __post_init__(self) -> None:
        if not 1 <= len(self.keys) <= MAX_KEYS:
            raise LocalError(f"a key ring holds 1 to {MAX_KEYS} keys, not {len(self.keys)}")
        if len(set(self.keys)) != len(self.keys):
            raise LocalError("a key ring holds each key once")
        for key in self.keys:
            if len(key) < MIN_KEY:
                raise LocalError(f"a cluster key must be at least {MIN_KEY} bytes")

    @property
    def current(self) -> bytes:
        return self.keys[0]

    @property
    def accepted(self) -> tuple[bytes, ...]:
        return self.keys

    @property
    def rotating(self) -> bool:
        return len(self.keys) > 1


def parse_keys(text: str) -> KeyRing:
    """A key file's text as a ring. Raises ``LocalError`` saying which line is wrong."""
    keys: list[bytes] = []
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            key = bytes.fromhex(line)
        except ValueError:
            raise LocalError(f"line {number} is not hex (make one: errmesh keygen)") from None
        if len(key) < MIN_KEY:
            raise LocalError(f"line {number} holds {len(key)} bytes; at least {MIN_KEY}")
        keys.append(key)
    if not keys:
        raise LocalError("it holds no key (make one: errmesh keygen)")
    if len(keys) > MAX_KEYS:
        raise LocalError(
            f"it holds {len(keys)} keys; at most {MAX_KEYS} (the current one and the next)"
        )
    return KeyRing(tuple(keys))


def format_keys(ring: KeyRing) -> str:
    lines = [ring.current.hex()]
    if ring.rotating:
        lines.insert(0, "# errmesh cluster keys: the first signs, every one is accepted")
        lines += [key.hex() for key in ring.keys[1:]]
    return "\n".join(lines) + "\n"


def rotate(ring: KeyRing, new: bytes) -> KeyRing:
    """Step 1: accept ``new`` beside the current key, which still signs."""
    if ring.rotating:
        raise LocalError("a rotation is under way: promote or retire first")
    return KeyRing((ring.current, new))


def promote(ring: KeyRing) -> KeyRing:
    """Step 2: the next key signs; the old one stays accepted."""
    if not ring.rotating:
        raise LocalError("no next key to promote: rotate first")
    return KeyRing((ring.keys[1], ring.keys[0]))


def retire(ring: KeyRing) -> KeyRing:
    """Step 3: only the current key is left."""
    if not ring.rotating:
        raise LocalError("only one key: nothing to retire")
    return KeyRing((ring.current,))
