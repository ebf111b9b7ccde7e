"""Free text cut to its bound before anything reads it.

Normalising, scrubbing and signing are linear but not cheap, and nothing
past the wire's byte bounds (mesh.wire.limits) is ever kept: so every text a
report carries is cut here first, when the event is built, and what is cut
here the wire would have cut anyway (DECISIONS 38). Standard library only:
the log ring (node/capture.py) and the hand-over path use it.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "ARGV_ITEM_CHARS",
    "CAUSE_CHARS",
    "CONTEXT_VALUE_CHARS",
    "CUT_EDGE",
    "FRAME_LINE_CHARS",
    "LOG_LINE_CHARS",
    "LOG_RECORD_CHARS",
    "MAX_ARGV",
    "MAX_CONTEXTS",
    "MAX_TAGS",
    "MESSAGE_CHARS",
    "NAME_CHARS",
    "SOURCE_LINE_CHARS",
    "STDERR_LINE_CHARS",
    "TAG_VALUE_CHARS",
    "cut_argv",
    "cut_pairs",
    "cut_text",
    "last_lines",
]

#: Free text is cut to these many characters *before* anything reads it
#: (normalising, scrubbing, signing): the wire's byte bounds (mesh.wire.limits),
#: so that what is cut here the wire would have cut anyway.
MESSAGE_CHARS = 8192
CAUSE_CHARS = 1024
FRAME_LINE_CHARS = 300
#: A line of source context around a frame (node/source.py; within MAX_FRAME_LINE).
SOURCE_LINE_CHARS = 200
LOG_LINE_CHARS = 500
ARGV_ITEM_CHARS = 500
MAX_ARGV = 64
#: The host's tags and flattened contexts (the wire's MAX_TAGS, MAX_CONTEXTS,
#: MAX_TAG_VALUE, MAX_FACT_VALUE and MAX_NAME).
MAX_TAGS = 32
MAX_CONTEXTS = 32
TAG_VALUE_CHARS = 200
CONTEXT_VALUE_CHARS = 500
NAME_CHARS = 200
#: A log record, before it is split into lines (each then cut to LOG_LINE_CHARS).
LOG_RECORD_CHARS = 64 * 1024
#: A command's stderr lines are its signature: cut more generously.
STDERR_LINE_CHARS = 2000
#: How far back from a cut :func:`cut_text` looks for the start of the word it split.
CUT_EDGE = 256


def cut_text(text: str, limit: int) -> str:
    """``text`` cut to fewer than ``limit`` characters, marked, if it is longer.

    Why here: normalising and scrubbing are linear but not cheap (a 10 MB
    message cost ~5 s), and nothing past the bound is ever kept. So the text
    is cut first and only its head is scrubbed; the part left out is never
    emitted. The head ends before the word the cut fell in (looking back at
    most :data:`CUT_EDGE` characters), so the head of a secret that
    straddles the cut (a token, ``password=...``) goes with it, where the
    scrubber could no longer recognise it. An eighth of ``limit`` is left
    free, in UTF-8 bytes, for the marker ``…[cut N of M chars]`` and for
    what scrubbing adds, so the wire's byte bound does not cut the marker off.
    """
    if len(text) <= limit:
        return text
    room = limit - limit // 8 - 40
    head = text[:room]
    data = head.encode("utf-8", "surrogatepass")
    if len(data) > room:
        head = data[:room].decode("utf-8", "ignore")
    if head and not head[-1].isspace() and not text[len(head)].isspace():
        stop = max(0, len(head) - CUT_EDGE)
        end = len(head)
        while end > stop and not head[end - 1].isspace():
            end -= 1
        head = head[:end]
    return f"{head}…[cut {len(text) - len(head)} of {len(text)} chars]"


def cut_argv(argv: Sequence[str]) -> tuple[str, ...]:
    """The first :data:`MAX_ARGV` arguments (a marker last), each cut like text."""
    kept = [
        cut_text(arg, ARGV_ITEM_CHARS)
        for arg in argv[: MAX_ARGV if len(argv) <= MAX_ARGV else MAX_ARGV - 1]
    ]
    if len(argv) > MAX_ARGV:
        kept.append(f"…[cut {len(argv) - len(kept)} arguments]")
    return tuple(kept)


def cut_pairs(
    pairs: Sequence[tuple[str, str]], count: int, value_chars: int
) -> tuple[tuple[str, str], ...]:
    """The first ``count`` pairs, keys cut to :data:`NAME_CHARS`, values to ``value_chars``."""
    return tuple(
        (cut_text(key, NAME_CHARS), cut_text(value, value_chars)) for key, value in pairs[:count]
    )


def last_lines(text: str, count: int, limit: int) -> list[str]:
    """The last ``count`` lines of ``text``, each cut by :func:`cut_text`.

    For a huge log record: it looks only at the end of ``text`` (lines end
    at ``\n``), so a 10 MB record costs what its last lines cost, and each
    line's marker counts its own full length.
    """
    out: list[str] = []
    end = len(text) - 1 if text.endswith("\n") else len(text)
    while len(out) < count and end >= 0:
        start = text.rfind("\n", 0, end) + 1
        out.append(cut_text(text[start:end].rstrip("\r"), limit))
        end = start - 1
    out.reverse()
    return out
