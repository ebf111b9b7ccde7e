"""The wire's bounds: every size, count and length a message may have.

They live apart so that each part of the codec, and a reader of the protocol,
finds them in one place. Changing one changes the protocol: update
``docs/PROTOCOL.md`` in the same commit. All string limits are in UTF-8 bytes.
"""

from __future__ import annotations

from typing import Final

from mesh.bounds import MAX_COUNT as MAX_COUNT
from mesh.bounds import MAX_NUMBER as MAX_NUMBER
from mesh.bounds import MAX_TERM as MAX_TERM

VERSION: Final = 1
MAC_BYTES: Final = 16
#: Shortest cluster key accepted (keys are 32 random bytes in practice).
MIN_KEY: Final = 16

#: A whole frame, MAC included.
MAX_MESSAGE: Final = 64 * 1024
#: The fields of a message once inflated from ``"z"``.
MAX_INFLATED: Final = 256 * 1024
#: A stored report or state (:func:`encode_report`, :func:`encode_state`).
MAX_STORED: Final = 256 * 1024
#: Fields packing to more than this many bytes are sent zlib-compressed.
COMPRESS_OVER: Final = 512
#: Nesting of maps and arrays; the schema itself needs 6.
MAX_DEPTH: Final = 16
#: Entries in any one map (a report has 29 keys).
MAX_MAP_KEYS: Final = 64

MAX_FRAMES: Final = 64
MAX_LOG_LINES: Final = 50
MAX_CAUSES: Final = 8
MAX_ARGV: Final = 64
MAX_FACTS: Final = 32
MAX_FINGERPRINT: Final = 8
#: The host's tags (``node.set_tag``) and flattened contexts (``set_context``, ``set_user``).
MAX_TAGS: Final = 32
MAX_CONTEXTS: Final = 32
#: Leaf exceptions of a group kept in a report, and frames kept per leaf.
MAX_LEAVES: Final = 10
MAX_LEAF_FRAMES: Final = 16
#: Source lines before and after a frame's line (its ``pc`` and ``po``), each
#: at most MAX_FRAME_LINE bytes like the line itself (``cl``).
MAX_CONTEXT_LINES: Final = 5
#: Records in one occ/ack/issue/digest/state message (the byte limit still applies).
MAX_BATCH: Final = 1024
#: Multiaddrs in one heartbeat.
MAX_ADDRS: Final = 8
#: Origins per signature state; at least ``sigstate.Limits().max_origins``.
MAX_ORIGINS: Final = 256

#: The reported exception's message (UTF-8 bytes, like every string limit).
MAX_TEXT: Final = 8 * 1024
MAX_CAUSE_MESSAGE: Final = 1024
MAX_FRAME_LINE: Final = 300
MAX_LOG_LINE: Final = 500
MAX_ARGV_ITEM: Final = 500
MAX_FACT_VALUE: Final = 500
MAX_TAG_VALUE: Final = 200
MAX_URL: Final = 500
#: Names: types, modules, functions, file names, hosts, peer ids, fact keys.
MAX_NAME: Final = 200

_INT64_MIN: Final = -(2**63)
_INT64_END: Final = 2**63
