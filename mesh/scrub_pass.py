"""One pass over a whole report's text before any rule runs (issue 16).

A report holds ~250 texts (frames' lines, file names and source context,
log lines, argv, pairs), and almost none of them can hold a secret: the
scrubber's prefilter (one case-insensitive search for every rule's hint)
skips ~98% of them. Asking it text by text cost a third of a capture, the
calls and the ``lower()`` of each more than the search. So
:func:`scrub_report` joins every text the report's scrub would look at,
lowers the join once and searches it once, jumping past each text it finds
a hint in, and sends only the fields holding such a text through the
scrubber's own methods; every other field is kept as it is.

Why that scrubs exactly what the field-by-field path
(``Scrubber._report_by_field``) scrubs: a text without a hint is returned as
it is by ``Scrubber.text`` (the same hint, the same search); a secret-named
key always holds one of :data:`~mesh.scrub_patterns.PAIR_HINTS` (the tests
pin them to the name tables), so pairs and argv flags without a hint have no
secret name; and the one rule that fires without a hint, the base64 run a
log tail or a source window starts with (a key whose BEGIN line was cut), is
tested for each sequence here. ``tests/test_scrub_pass.py`` checks that both
paths agree on generated reports. A text holding the separator (NUL) makes
the whole report take the field-by-field path.
"""

from __future__ import annotations

from bisect import bisect_right

from mesh.scrub_patterns import _PEM_BODY_FIRST_LINE

TYPE_CHECKING = False
if TYPE_CHECKING:
    import re
    from collections.abc import Sequence
    from typing import Any

    from mesh.report import Frame, Report
    from mesh.scrub import Scrubber

__all__ = ["any_of", "hinted", "scrub_report"]

_SEP = "\x00"


def any_of(words: Sequence[str]) -> re.Pattern[str]:
    """A pattern that finds where any of ``words`` starts, as a trie.

    SRE tries an alternation's branches one by one at every position, so
    ``a|b|...`` of 40 literals costs ~50 ns a character; branching on each
    next character instead costs a third of that. A word that extends
    another (``ghp_`` after ``gh``) is dropped: whether a text holds one is
    all the prefilter asks. No words: a pattern that never matches.
    """
    import re

    tree: dict[str, dict[str, Any]] = {}
    for word in words:
        node = tree
        for char in word:
            node = node.setdefault(char, {})
        node[""] = {}

    def branch(node: dict[str, Any]) -> str:
        if "" in node:
            return ""  # a word ends here: its extensions add nothing to "contains"
        alternatives = [re.escape(char) + branch(node[char]) for char in sorted(node)]
        return alternatives[0] if len(alternatives) == 1 else f"(?:{'|'.join(alternatives)})"

    return re.compile(branch(tree) if tree else "(?!)")


def hinted(hint: re.Pattern[str], texts: Sequence[str]) -> list[bool] | None:
    """Which of ``texts`` hold a match of ``hint`` (lower-cased); None if one holds NUL."""
    joined = _SEP.join(texts)
    if joined.count(_SEP) != len(texts) - 1:
        return None
    low = joined.lower()
    starts = [0]
    for piece in low.split(_SEP)[:-1]:
        starts.append(starts[-1] + len(piece) + 1)
    marks = [False] * len(texts)
    match = hint.search(low)
    while match is not None:
        index = bisect_right(starts, match.start()) - 1
        marks[index] = True
        if index + 1 == len(starts):
            break
        match = hint.search(low, starts[index + 1])
    return marks


class _Texts:
    """The texts of one report in the order they are gathered, their marks, and
    each kind of field passed through its scrubber method when it holds a mark."""

    def __init__(self, scrubber: Scrubber) -> None:
        self.scrubber = scrubber
        self.texts: list[str] = []
        self.marks: list[bool] = []

    def add(self, *texts: str) -> int:
        """Append ``texts``; the index of the first, to ask :meth:`any` later."""
        start = len(self.texts)
        self.texts.extend(texts)
        return start

    def any(self, start: int, count: int) -> bool:
        return any(self.marks[start : start + count])

    def text(self, index: int, value: str) -> str:
        return self.scrubber.text(value) if self.marks[index] else value

    def frames(self, seq: tuple[Frame, ...], starts: list[int]) -> tuple[Frame, ...]:
        from mesh.scrub import _frames

        out = []
        for frame, start in zip(seq, starts, strict=True):
            count = len(_frame_texts(frame))
            if self.any(start, count) or _window_starts_in_a_key(frame):
                (frame,) = _frames((frame,), self.scrubber.text, self.scrubber.source)
            out.append(frame)
        return tuple(out)

    def lines(self, start: int, seq: tuple[str, ...]) -> tuple[str, ...]:
        if self.any(start, len(seq)) or _starts_in_a_key(seq):
            return self.scrubber.lines(seq)
        return seq

    def pairs(self, start: int, seq: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        return self.scrubber.pairs(seq) if self.any(start, 2 * len(seq)) else seq


def _frame_texts(frame: Frame) -> tuple[str, ...]:
    return (frame.line, frame.filename, *frame.pre_context, frame.context_line, *frame.post_context)


def _starts_in_a_key(lines: Sequence[str]) -> bool:
    """The one ``Scrubber.lines`` rule that needs no hint: a leading base64 run."""
    return bool(lines) and _PEM_BODY_FIRST_LINE.fullmatch(lines[0]) is not None


def _window_starts_in_a_key(frame: Frame) -> bool:
    """The same for a frame's source context, scrubbed as one run (``Scrubber.source``)."""
    if not (frame.pre_context or frame.context_line or frame.post_context):
        return False
    return _starts_in_a_key((*frame.pre_context, frame.context_line))


def scrub_report(scrubber: Scrubber, r: Report) -> Report | None:
    """``r`` scrubbed as ``Scrubber._report_by_field`` would; None when this
    pass does not apply (extra patterns configured, a text holding NUL)."""
    hint = scrubber._any_hint
    if hint is None:
        return None
    texts = _Texts(scrubber)
    message = texts.add(r.message, *(c.message for c in r.causes))
    frames = [texts.add(*_frame_texts(f)) for f in r.frames]
    log_tail = texts.add(*r.log_tail)
    argv = texts.add(*r.argv)
    pairs = [texts.add(*(t for pair in seq for t in pair)) for seq in (r.facts, r.tags, r.contexts)]
    setup = texts.add(r.environment, r.release)
    stdout_tail = texts.add(*r.stdout_tail)
    leaves = [
        (texts.add(leaf.message), [texts.add(*_frame_texts(f)) for f in leaf.frames])
        for leaf in r.leaves
    ]
    marks = hinted(hint, texts.texts)
    if marks is None:
        return None
    texts.marks = marks
    return _rebuilt(r, texts, message, frames, log_tail, argv, pairs, setup, stdout_tail, leaves)


def _rebuilt(
    r: Report,
    texts: _Texts,
    message: int,
    frames: list[int],
    log_tail: int,
    argv: int,
    pairs: list[int],
    setup: int,
    stdout_tail: int,
    leaves: list[tuple[int, list[int]]],
) -> Report:
    """``r`` with each field that holds a hinted text passed through its method."""
    import dataclasses

    return r.replace(
        message=texts.text(message, r.message),
        causes=tuple(
            dataclasses.replace(c, message=texts.text(message + 1 + i, c.message))
            if texts.marks[message + 1 + i]
            else c
            for i, c in enumerate(r.causes)
        ),
        frames=texts.frames(r.frames, frames),
        log_tail=texts.lines(log_tail, r.log_tail),
        argv=texts.scrubber.argv(r.argv) if texts.any(argv, len(r.argv)) else r.argv,
        facts=texts.pairs(pairs[0], r.facts),
        tags=texts.pairs(pairs[1], r.tags),
        contexts=texts.pairs(pairs[2], r.contexts),
        environment=texts.text(setup, r.environment),
        release=texts.text(setup + 1, r.release),
        stdout_tail=texts.lines(stdout_tail, r.stdout_tail),
        leaves=tuple(
            dataclasses.replace(
                leaf,
                message=texts.text(start, leaf.message),
                frames=texts.frames(leaf.frames, frame_starts),
            )
            for leaf, (start, frame_starts) in zip(r.leaves, leaves, strict=True)
        ),
    )
