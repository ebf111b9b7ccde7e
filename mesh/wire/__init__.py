"""The msgpack wire codec: typed messages in, bounded bytes out, and back.

Pure: no IO, no clock, no randomness. ``docs/PROTOCOL.md`` is the
language-neutral specification of what this package reads and writes.

Theory of operation
-------------------
Every pubsub message is one *frame*::

    frame   = payload [ + HMAC-SHA256(cluster key, payload)[:16] ]
    payload = msgpack map {"v": 1, "k": kind, "n": sender?, ...fields}

The kind names one of the message dataclasses (:mod:`mesh.wire.messages`),
and each kind's fields are short keys (one or two letters) into nested maps.
One table per record type (:data:`_REPORT`, :data:`_FRAME`, ... in
:mod:`mesh.wire.schema`) lists ``(attribute, key, codec, wire default)``;
writing, reading and validating are all driven by those tables, so the
table *is* the schema. A key whose value equals its wire default is left
out when writing and filled in when reading, which keeps a repeat occurrence
under 128 bytes with its MAC.

When the fields of a message pack to more than :data:`COMPRESS_OVER` bytes
and zlib makes them smaller, they travel compressed under the key ``"z"``
instead. A realistic first report (30 frames, 50 log lines) shrinks from
about 8 KB to under 4 KB that way, with no detail thrown away.

Reading is defensive because the bytes come from other machines, and from
hostile ones if the cluster key leaks. In order: size of the frame, the MAC
(with a key), msgpack's own limits on string, binary, array and map sizes,
ext types refused (the timestamp ext -1 too), a nesting depth limit, then
every field of the table checked for its type and bound. Any failure becomes
a :class:`Rejected` with a stable ``reason`` code; :func:`decode` never
raises for any byte string. Keys a reader does not know are ignored, so a
newer peer may add fields; a new ``"v"`` is rejected.

Writing is strict: :func:`encode` runs the very checks a receiver runs on
what it is about to send and raises :class:`~mesh.errors.LocalError` when a
message breaks a bound, because that is the sender's bug. The capture side
calls :func:`bound_report` first, which cuts a report down (strings with a
visible ``…[cut N bytes]`` marker, the innermost frames, the newest log
lines) until its encoding fits :data:`MAX_MESSAGE` uncompressed, with a MAC
and a sender id.

The durable store persists the same envelope without a MAC
(:func:`encode_report`, :func:`encode_state`), so stored bytes are
versioned, and a stored report becomes a frame by appending its MAC.

All string limits are in UTF-8 bytes.

Layout
------
One module per concept, all re-exported here; import from ``mesh.wire``.

- :mod:`~mesh.wire.limits`: every bound (changing one changes the protocol);
- :mod:`~mesh.wire.messages`: the message dataclasses;
- :mod:`~mesh.wire.rejected`: reject reasons and :class:`Rejected`;
- :mod:`~mesh.wire.codecs`: field codecs and the table-driven record type;
- :mod:`~mesh.wire.schema`: the tables, i.e. the keys of every record;
- :mod:`~mesh.wire.packing`: msgpack with the reader's defences;
- :mod:`~mesh.wire.envelope`: :func:`encode`, :func:`decode`, MAC and zlib;
- :mod:`~mesh.wire.stored`: the durable store's bytes;
- :mod:`~mesh.wire.bound`: :func:`bound_report`.
"""

from __future__ import annotations

from mesh.wire.bound import bound_report, seal_report
from mesh.wire.envelope import Keys, decode, encode
from mesh.wire.envelope import _mac as _mac
from mesh.wire.limits import (
    COMPRESS_OVER,
    MAC_BYTES,
    MAX_ARGV,
    MAX_ARGV_ITEM,
    MAX_BATCH,
    MAX_CAUSE_MESSAGE,
    MAX_CAUSES,
    MAX_CONTEXT_LINES,
    MAX_CONTEXTS,
    MAX_COUNT,
    MAX_DEPTH,
    MAX_FACT_VALUE,
    MAX_FACTS,
    MAX_FINGERPRINT,
    MAX_FRAME_LINE,
    MAX_FRAMES,
    MAX_INFLATED,
    MAX_LEAF_FRAMES,
    MAX_LEAVES,
    MAX_LOG_LINE,
    MAX_LOG_LINES,
    MAX_MAP_KEYS,
    MAX_MESSAGE,
    MAX_NAME,
    MAX_NUMBER,
    MAX_ORIGINS,
    MAX_STORED,
    MAX_TAG_VALUE,
    MAX_TAGS,
    MAX_TERM,
    MAX_TEXT,
    MAX_URL,
    MIN_KEY,
    VERSION,
)
from mesh.wire.messages import (
    AckMsg,
    DigestEntry,
    DigestMsg,
    HeartbeatMsg,
    IssueMsg,
    Message,
    OccMsg,
    ReportMsg,
    StateMsg,
)
from mesh.wire.rejected import REJECT_REASONS, Rejected, RejectReason
from mesh.wire.schema import _CAUSE as _CAUSE
from mesh.wire.schema import _DIGEST_ENTRY as _DIGEST_ENTRY
from mesh.wire.schema import _FRAME as _FRAME
from mesh.wire.schema import _HEARTBEAT as _HEARTBEAT
from mesh.wire.schema import _ISSUE_LINK as _ISSUE_LINK
from mesh.wire.schema import _LEAF as _LEAF
from mesh.wire.schema import _OCCURRENCE as _OCCURRENCE
from mesh.wire.schema import _ORIGIN_COUNT as _ORIGIN_COUNT
from mesh.wire.schema import _REPORT as _REPORT
from mesh.wire.schema import _SIG_STATE as _SIG_STATE
from mesh.wire.schema import _TABLES as _TABLES
from mesh.wire.schema import KINDS
from mesh.wire.stored import (
    decode_report,
    decode_state,
    encode_report,
    encode_stamped,
    encode_state,
)

__all__ = [
    "COMPRESS_OVER",
    "KINDS",
    "MAC_BYTES",
    "MAX_ARGV",
    "MAX_ARGV_ITEM",
    "MAX_BATCH",
    "MAX_CAUSES",
    "MAX_CAUSE_MESSAGE",
    "MAX_CONTEXTS",
    "MAX_CONTEXT_LINES",
    "MAX_COUNT",
    "MAX_DEPTH",
    "MAX_FACTS",
    "MAX_FACT_VALUE",
    "MAX_FINGERPRINT",
    "MAX_FRAMES",
    "MAX_FRAME_LINE",
    "MAX_INFLATED",
    "MAX_LEAF_FRAMES",
    "MAX_LEAVES",
    "MAX_LOG_LINE",
    "MAX_LOG_LINES",
    "MAX_MAP_KEYS",
    "MAX_MESSAGE",
    "MAX_NAME",
    "MAX_NUMBER",
    "MAX_ORIGINS",
    "MAX_STORED",
    "MAX_TAGS",
    "MAX_TAG_VALUE",
    "MAX_TERM",
    "MAX_TEXT",
    "MAX_URL",
    "MIN_KEY",
    "REJECT_REASONS",
    "VERSION",
    "AckMsg",
    "DigestEntry",
    "DigestMsg",
    "HeartbeatMsg",
    "IssueMsg",
    "Keys",
    "Message",
    "OccMsg",
    "RejectReason",
    "Rejected",
    "ReportMsg",
    "StateMsg",
    "bound_report",
    "decode",
    "decode_report",
    "decode_state",
    "encode",
    "encode_report",
    "encode_stamped",
    "encode_state",
    "seal_report",
]
