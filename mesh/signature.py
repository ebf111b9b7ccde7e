"""Stable error fingerprints: the same bug gives the same 16 bytes everywhere.

A signature decides which GitHub issue an occurrence lands in, so it must be
equal for the same bug on every machine (different install paths, line
numbers, Python patch versions, ids, timestamps) and different for different
bugs (another exception type, another call site, another cause). DESIGN.md
section 3 lists what goes in; this module is the only place that decides it.

Theory of operation
-------------------
1. **Pick what identifies the bug.** For an exception: its qualified type, the
   ``(module, function)`` of the innermost :data:`MAX_FRAMES` *in-app* frames
   (library frames only when there are no in-app ones: stdlib and
   site-packages differ between Python versions and installs), the message
   normalised by :func:`normalise_message`, and the types of its chained
   causes. Never line numbers or file names. For a command run by
   ``errmesh run``: the program's base name, its exit code or signal, and the
   normalised last error-looking lines of its stderr (:func:`error_lines`).
2. **Encode unambiguously.** The parts go into one JSON list (with a version
   tag and the report kind first), so no two different part lists share an
   encoding, then sha256; the first :data:`~mesh.report.SIGNATURE_BYTES` (16)
   bytes are the signature.
3. **Let users override**, as in Sentry: an explicit fingerprint (a list of
   strings) is hashed instead; each ``"{{ default }}"`` item stands for the
   default signature's hex. ``["{{ default }}"]`` alone *is* the default
   grouping and returns the default signature unchanged; an empty fingerprint
   is treated as no fingerprint.

Message normalisation
---------------------
The variable parts of a message become placeholders, in one left-to-right
scan; at each position the first rule of :data:`PLACEHOLDER_RULES` that
matches wins, which is how "URLs before paths, UUIDs before hex before
numbers" is ordered:

=========  ===========================================================
``<url>``   ``scheme://...`` (any scheme)
``<email>`` ``local@domain.tld``
``<uuid>``  ``8-4-4-4-12`` hex
``<ts>``    ISO 8601 / ``yyyy/mm/dd`` dates and date-times, ``hh:mm:ss``
            times, ``Jan 2 15:04:05``-style dates
``<ip>``    IPv4 (optional ``:port``), IPv6 (``[v6]:port`` too)
``<addr>``  ``0x`` addresses
``<hex>``   runs of >= 8 hex digits with at least one digit and one letter
``<str>``   ``'...'`` and ``"..."`` (optional ``b``/``r``/``u``/``f`` prefix)
``<path>``  ``/abs``, ``~/``, ``./``, ``../``, ``C:\\``, ``\\\\server``
``<n>``     integers, decimals, negatives, exponents (a unit may follow)
=========  ===========================================================

Input beyond :data:`MAX_INPUT_CHARS` is ignored. Then ANSI escapes are
removed and whitespace runs collapse to one space; after it, a result longer
than :data:`MAX_MESSAGE_CHARS` is cut and marked with :data:`TRUNCATION_MARK`.

Why it is idempotent (``normalise(normalise(x)) == normalise(x)``): every rule
refuses to start right after a letter, a digit, ``<`` or ``>``, and refuses to
end right before a letter, a digit or ``<``; no rule except quoted strings can
consume ``<`` or ``>``, and quotes are only ever consumed by quoted strings.
So placeholders are inert barriers, and a position that matched nothing in
the first scan still matches nothing in the second. The truncation mark
starts with ``<`` for the same reason. As a belt and braces,
:func:`normalise_message` iterates to a fixed point (which the first pass
already is).

Every pattern is linear-time: no nested unbounded quantifiers, bounded
repetition where a scan may start at many positions, and "atomic" runs (a
lookahead capture plus a back-reference) where backtracking could not help.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from typing import Final

from mesh.report import SIGNATURE_BYTES, Frame, Leaf, Report

__all__ = [
    "DEFAULT_FINGERPRINT",
    "ERROR_LINE",
    "MAX_FRAMES",
    "MAX_MESSAGE_CHARS",
    "PLACEHOLDER_RULES",
    "TRUNCATION_MARK",
    "command_signature",
    "error_lines",
    "exception_signature",
    "normalise_message",
    "report_signature",
    "signature_leaf",
]

#: The fingerprint item that stands for the default signature (Sentry's syntax).
DEFAULT_FINGERPRINT: Final = "{{ default }}"

#: Only the innermost frames identify a bug; deep recursion must not split it.
MAX_FRAMES: Final = 10

#: Normalised messages are cut to this many characters (mark included).
MAX_MESSAGE_CHARS: Final = 500

#: Appended to a cut message. Starts with ``<`` so it is inert, like a placeholder.
TRUNCATION_MARK: Final = "<…>"

#: Bumped if the encoding ever changes, so old and new signatures never collide.
_VERSION: Final = "errmesh-sig/1"

# Boundaries shared by the placeholder rules (see "Why it is idempotent").
# ``[^\W_]`` is a letter or digit (underscore is a separator: ``job_42``).
_S = r"(?<![^\W_]|[<>])"  # may not start right after an alnum or a placeholder
_E = r"(?![^\W_]|<)"  # may not end right before an alnum or a placeholder
_H = "[0-9a-fA-F]"
_H4 = _H + "{1,4}"
_H4S = rf"{_H4}(?::{_H4}){{0,6}}"  # one to seven colon-separated groups
_V6 = rf"(?:{_H4}(?::{_H4}){{7}}|{_H4S}::(?:{_H4S})?|::{_H4S})"
_MONTH = (
    r"(?:Jan(?:uary)?|Feb(?:ruary)?|Mar(?:ch)?|Apr(?:il)?|May|Jun(?:e)?|Jul(?:y)?"
    r"|Aug(?:ust)?|Sep(?:t(?:ember)?)?|Oct(?:ober)?|Nov(?:ember)?|Dec(?:ember)?)"
)
_CLOCK = r"\d{1,2}:\d{2}(?::\d{2})?(?:[.,]\d{1,9})?"
_ZONE = r"(?:Z|[+-]\d{2}:?\d{2})"
_PATH_CHAR = r"""[^\s'"<>|*?,;:()\[\]{}]"""

#: (placeholder, pattern) in priority order; see the module docstring.
PLACEHOLDER_RULES: Final[tuple[tuple[str, str], ...]] = (
    (
        "<url>",
        # An atomic scheme (lookahead capture + back-reference) so that a long
        # dotted word is scanned once; the last character may not be closing
        # punctuation, so "(see http://x/y)." keeps its ")."
        rf"{_S}(?=(?P<_scheme>[A-Za-z][A-Za-z0-9+.\-]{{1,30}}))(?P=_scheme)://"
        r"""(?:[^\s<>'"]*[^\s<>'".,;:!?)\]}])?""",
    ),
    (
        "<email>",
        rf"{_S}(?=(?P<_local>[\w.+\-]{{1,64}}))(?P=_local)@[A-Za-z0-9\-]{{1,63}}(?:\.[A-Za-z0-9\-]{{1,63}})+",
    ),
    ("<uuid>", rf"{_S}{_H}{{8}}-{_H}{{4}}-{_H}{{4}}-{_H}{{4}}-{_H}{{12}}{_E}"),
    (
        "<ts>",
        rf"{_S}(?:\d{{4}}-\d{{2}}-\d{{2}}(?:[T ]{_CLOCK}{_ZONE}?)?"
        rf"|(?:\d{{4}}/\d{{1,2}}/\d{{1,2}}|\d{{1,2}}/\d{{1,2}}/\d{{4}})(?:[T ]{_CLOCK})?"
        rf"|\d{{1,2}}:\d{{2}}:\d{{2}}(?:[.,]\d{{1,9}})?{_ZONE}?"
        rf"|(?:(?:Mon|Tue|Wed|Thu|Fri|Sat|Sun)[a-z]{{0,6}},? )?(?:\d{{1,2}} )?{_MONTH}\.? \d{{1,4}}"
        rf"(?:,? \d{{4}})?(?: {_CLOCK})?(?: (?:UTC|GMT|[+-]\d{{4}}))?)",
    ),
    (
        "<ip>",
        rf"(?<![^\W_]|[<>.])(?:\d{{1,3}}\.){{3}}\d{{1,3}}(?::\d{{1,5}})?(?![^\W_]|<|\.[\d<])"
        rf"|(?<![^\W_]|[<>:.])(?:\[{_V6}\](?::\d{{1,5}})?|{_V6}(?![^\W_]|[<:]|\.[\d<]))",
    ),
    ("<addr>", rf"{_S}0[xX]{_H}+{_E}"),
    ("<hex>", rf"{_S}(?=[0-9]*[a-fA-F])(?=[a-fA-F]*[0-9]){_H}{{8,}}{_E}"),
    ("<str>", rf"""{_S}(?:[bBrRuUfF]{{1,2}})?(?:'[^']*'|"[^"]*")"""),
    (
        "<path>",
        rf"(?<![^\W_]|[<>/\\.~])(?:(?:~|\.{{1,2}})?/{_PATH_CHAR}+"
        rf"|[A-Za-z]:[\\/]{_PATH_CHAR}*|\\\\{_PATH_CHAR}+)",
    ),
    ("<n>", r"(?<![^\W_]|[<>.])-?\d+(?:\.\d+)*(?:[eE][+-]?\d+)?"),
)

_PLACEHOLDER_BY_GROUP: Final = {f"r{i}": ph for i, (ph, _) in enumerate(PLACEHOLDER_RULES)}
_VARIABLE_PARTS: Final = re.compile(
    "|".join(f"(?P<r{i}>{pattern})" for i, (_, pattern) in enumerate(PLACEHOLDER_RULES))
)
# Every ESC goes, with the CSI/OSC/two-byte sequence it starts if any, so the
# result holds no ESC at all (removing sequences alone could join new ones).
_ANSI: Final = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])?")
_WHITESPACE: Final = re.compile(r"\s+")
_DEFAULT_ITEM: Final = re.compile(r"\{\{\s*default\s*\}\}")
_FIXED_POINT_ROUNDS: Final = 4

#: A stderr line "looks like an error" if it matches this (case-insensitive
#: words, pytest's ``E   `` lines, a traceback's final ``pkg.SomeError: msg``).
ERROR_LINE: Final = re.compile(
    r"(?i:error|exception|fatal|fail|panic|abort|denied|refused|cannot|can't|unable"
    r"|not found|no such|segmentation fault|core dumped|killed|critical)"
    r"|^E(?:\s|$)"
    r"|^\s*(?:\w+\.)*[A-Z]\w*(?:Exit|Interrupt|Iteration|Fault):?(?:\s|$)"
)


def _placeholder(match: re.Match[str]) -> str:
    return _PLACEHOLDER_BY_GROUP.get(match.lastgroup or "", "")


#: Longer input is cut to this many characters first: a normalised message
#: keeps at most MAX_MESSAGE_CHARS, and the scan is not free (~0.5 s per MB).
MAX_INPUT_CHARS: Final = 64 * 1024


def _normalise_once(text: str) -> str:
    text = _ANSI.sub("", text[:MAX_INPUT_CHARS])
    text = _WHITESPACE.sub(" ", text).strip()
    text = _VARIABLE_PARTS.sub(_placeholder, text)
    if len(text) > MAX_MESSAGE_CHARS:
        text = text[: MAX_MESSAGE_CHARS - len(TRUNCATION_MARK)] + TRUNCATION_MARK
    return text


def normalise_message(text: str) -> str:
    """``text`` with its variable parts replaced by placeholders.

    The same bug gives the same text whatever the ids, numbers, paths,
    timestamps, addresses or quoted values in its message. Idempotent, never
    raises, linear in the length of ``text``; the result is at most
    :data:`MAX_MESSAGE_CHARS` long.
    """
    current = _normalise_once(text)
    for _ in range(_FIXED_POINT_ROUNDS):
        following = _normalise_once(current)
        if following == current:
            return current
        current = following
    return current  # pragma: no cover - the first pass is already a fixed point


def error_lines(lines: Sequence[str], limit: int = 3) -> list[str]:
    """The last ``limit`` error-looking lines of ``lines``, normalised.

    Lines are split further on embedded newlines and stripped of ANSI colour
    escapes; a line is error-looking if it matches :data:`ERROR_LINE`. When no
    line is, the last non-blank line stands in; when every line is blank, the
    result is empty. Each result equals ``normalise_message(line)`` for the
    raw line it came from. Never raises.
    """
    if limit <= 0:
        return []
    flat = [
        cleaned
        for chunk in lines
        for line in chunk.splitlines()
        if (cleaned := _ANSI.sub("", line)).strip()
    ]
    chosen = [line for line in flat if ERROR_LINE.search(line)][-limit:]
    if not chosen:
        chosen = flat[-1:]
    return [normalise_message(line) for line in chosen]


def _digest(parts: list[object]) -> bytes:
    encoded = json.dumps(parts, ensure_ascii=True, separators=(",", ":")).encode("ascii")
    return hashlib.sha256(encoded).digest()[:SIGNATURE_BYTES]


def _with_fingerprint(default: bytes, fingerprint: Sequence[str] | None) -> bytes:
    if not fingerprint:
        return default
    is_default = [_DEFAULT_ITEM.fullmatch(item.strip()) is not None for item in fingerprint]
    if is_default == [True]:
        return default
    items = [default.hex() if d else item for item, d in zip(fingerprint, is_default, strict=True)]
    return _digest([_VERSION, "fingerprint", items])


def exception_signature(
    *,
    exc_type: str,
    message: str,
    frames: Sequence[Frame],
    cause_types: Sequence[str] = (),
    fingerprint: Sequence[str] | None = None,
) -> bytes:
    """The 16-byte signature of an exception (DESIGN.md section 3).

    ``frames`` are ordered like a traceback (outermost first). Only the
    ``(module, function)`` of the innermost :data:`MAX_FRAMES` in-app frames
    count (library frames when none is in-app); line numbers and file names
    never do. ``fingerprint`` overrides the grouping (see the module
    docstring). Never raises.
    """
    chosen = [f for f in frames if f.in_app] or list(frames)
    innermost = [[f.module, f.function] for f in reversed(chosen[-MAX_FRAMES:])]
    default = _digest(
        [
            _VERSION,
            "exception",
            exc_type,
            innermost,
            normalise_message(message),
            list(cause_types),
        ]
    )
    return _with_fingerprint(default, fingerprint)


def _program_name(program: str) -> str:
    base = re.split(r"[\\/]", program.strip())[-1]
    return base[:-4] if base.lower().endswith(".exe") else base


def command_signature(
    *,
    program: str,
    exit_code: int | None,
    signal: int | None,
    stderr_lines: Sequence[str],
    fingerprint: Sequence[str] | None = None,
) -> bytes:
    """The 16-byte signature of a failed command run by ``errmesh run``.

    Hashes the program's base name (directories and a Windows ``.exe``
    removed, so ``/usr/bin/foo`` and ``foo`` agree), how it ended, and
    :func:`error_lines` of its stderr. A negative ``exit_code`` without a
    ``signal`` is read as Python's ``subprocess`` convention (killed by signal
    ``-exit_code``), so both spellings of a signal death agree. Never raises.
    """
    if signal is None and exit_code is not None and exit_code < 0:
        signal, exit_code = -exit_code, None
    default = _digest(
        [
            _VERSION,
            "command",
            _program_name(program),
            exit_code,
            signal,
            error_lines(stderr_lines),
        ]
    )
    return _with_fingerprint(default, fingerprint)


def report_signature(report: Report) -> bytes:
    """The signature of a (scrubbed) report, honouring ``report.fingerprint``.

    ``"command"`` reports hash ``argv[0]`` (or ``exc_type`` without argv),
    the exit status and ``log_tail`` as stderr; an exception group is hashed
    as its :func:`signature_leaf` (behind the group's frames); everything
    else as an exception with the types of ``report.causes``. Never raises.
    """
    if report.kind == "command":
        return command_signature(
            program=report.argv[0] if report.argv else report.exc_type,
            exit_code=report.exit_code,
            signal=report.signal,
            stderr_lines=report.log_tail,
            fingerprint=report.fingerprint,
        )
    leaf = signature_leaf(report)
    if leaf is not None:
        return exception_signature(
            exc_type=leaf.type,
            message=leaf.message,
            frames=(*report.frames, *leaf.frames),
            fingerprint=report.fingerprint,
        )
    return exception_signature(
        exc_type=report.exc_type,
        message=report.message,
        frames=report.frames,
        cause_types=[cause.type for cause in report.causes],
        fingerprint=report.fingerprint,
    )


def _leaf_key(leaf: Leaf) -> bytes:
    return exception_signature(exc_type=leaf.type, message=leaf.message, frames=leaf.frames)


def signature_leaf(report: Report) -> Leaf | None:
    """The leaf exception that names an exception group's bug, or None for no group.

    A group's own type and message ("Exceptions from Trio nursery") are the
    same for every failing nursery, so the signature is its leaf's: the
    innermost code is where the bug is, as Sentry groups. Of the in-app leaves
    (those with an in-app frame; all leaves when none is) it is the one whose
    own signature sorts first, not the first in order: trio runs ready tasks
    in a random order, so the order of a group's leaves changes from run to
    run and the same two bugs would otherwise flip between two issues.
    """
    if not report.leaves:
        return None
    in_app = [leaf for leaf in report.leaves if any(f.in_app for f in leaf.frames)]
    return min(in_app or report.leaves, key=_leaf_key)
