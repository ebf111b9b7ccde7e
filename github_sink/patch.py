"""Unified diffs, parsed and applied strictly, without a git checkout.

The fixer command prints a unified diff; the leader commits its result to
the draft PR's branch through the contents API, file by file. There is no
working tree to run ``git apply`` in, so this module does the same job on
strings: every hunk's context and removed lines must match the file as it
is on the branch, or the whole patch is refused (a fixer that guessed wrong
gets a comment on the issue, never a half-applied branch).

Pure: text in, text out. Deleting files and binary patches are refused
(the contents API subset we use has no delete).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from github_sink.errors import PatchError

__all__ = ["FilePatch", "Hunk", "apply_patch", "parse_patch"]

_HUNK = re.compile(r"^@@ -(\d+)(?:,(\d+))? \+(\d+)(?:,(\d+))? @@")
#: How many lines of the old and of the new file a hunk row of each kind takes.
_TAKES = {" ": (1, 1), "-": (1, 0), "+": (0, 1)}


@dataclass(frozen=True, slots=True)
class Hunk:
    """One ``@@`` block: where it starts in the old file and its lines."""

    old_start: int
    old_len: int
    new_start: int
    new_len: int
    lines: tuple[str, ...]  # each starts with " ", "-" or "+"


@dataclass(frozen=True, slots=True)
class FilePatch:
    """The hunks for one path; ``new_file`` when the old side is /dev/null."""

    path: str
    hunks: tuple[Hunk, ...]
    new_file: bool = False


def _strip_prefix(name: str) -> str:
    name = name.split("\t", 1)[0].strip()
    if name.startswith(("a/", "b/")):
        name = name[2:]
    return name


def _safe_path(path: str) -> str:
    parts = path.split("/")
    if not path or path.startswith("/") or any(p in ("", ".", "..") for p in parts):
        raise PatchError(f"unsafe path in patch: {path!r}")
    if parts[0] == ".git":
        raise PatchError(f"refusing to patch {path!r}")
    return path


def parse_patch(text: str) -> list[FilePatch]:
    """The file patches in ``text``; raises ``PatchError`` when it is not a usable diff."""
    lines = text.splitlines()
    out: list[FilePatch] = []
    i = 0
    while i < len(lines):
        line = lines[i]
        if line.startswith("GIT binary patch") or line.startswith("Binary files "):
            raise PatchError("binary patches are not supported")
        if not line.startswith("--- "):
            i += 1  # the fixer's prose around the diff
            continue
        file_patch, i = _file_patch(lines, i)
        out.append(file_patch)
    if not out:
        raise PatchError("no unified diff found in the fixer's output")
    _refuse_repeated_paths(out)
    return out


def _file_patch(lines: Sequence[str], i: int) -> tuple[FilePatch, int]:
    """The file patch whose ``---`` line is ``lines[i]``, and the index after its hunks."""
    if i + 1 >= len(lines) or not lines[i + 1].startswith("+++ "):
        raise PatchError(f"line {i + 1}: '---' without '+++'")
    old = lines[i][4:].strip()
    new = _strip_prefix(lines[i + 1][4:])
    if new == "/dev/null":
        raise PatchError(f"deleting {_strip_prefix(old)!r} is not supported")
    path = _safe_path(new)
    new_file = old.split("\t", 1)[0] == "/dev/null"
    i += 2
    hunks: list[Hunk] = []
    while i < len(lines) and lines[i].startswith("@@"):
        hunk, i = _hunk(lines, i, path)
        hunks.append(hunk)
    if not hunks:
        raise PatchError(f"no hunks for {path}")
    return FilePatch(path, tuple(hunks), new_file), i


def _hunk(lines: Sequence[str], i: int, path: str) -> tuple[Hunk, int]:
    """The hunk whose ``@@`` header is ``lines[i]``, and the index after it.

    Its length comes from the header, not from where the next header is: a
    removed line ``-- x`` reads ``--- x``, like the start of the next file.
    """
    match = _HUNK.match(lines[i])
    if match is None:
        raise PatchError(f"line {i + 1}: bad hunk header {lines[i]!r}")
    old_start, old_len = int(match[1]), int(match[2] or "1")
    new_start, new_len = int(match[3]), int(match[4] or "1")
    i += 1
    body: list[str] = []
    need_old, need_new = old_len, new_len
    while need_old > 0 or need_new > 0:
        if i >= len(lines):
            raise PatchError(f"hunk at {old_start} in {path} is truncated")
        row = lines[i]
        i += 1
        if row.startswith("\\"):
            continue  # "\ No newline at end of file"
        kind = row[:1] or " "  # an empty line is a blank context line
        takes = _TAKES.get(kind)
        if takes is None:
            raise PatchError(f"line {i}: unexpected {row[:20]!r} in a hunk of {path}")
        need_old -= takes[0]
        need_new -= takes[1]
        if need_old < 0 or need_new < 0:
            raise PatchError(f"hunk at {old_start} in {path} is longer than its header")
        body.append(kind + row[1:])
    while i < len(lines) and lines[i].startswith("\\"):
        i += 1
    return Hunk(old_start, old_len, new_start, new_len, tuple(body)), i


def _refuse_repeated_paths(patches: Sequence[FilePatch]) -> None:
    """Two patches of one path would each be applied to the original, and one lost."""
    seen: set[str] = set()
    for fp in patches:
        if fp.path in seen:
            raise PatchError(f"{fp.path} appears twice in the patch")
        seen.add(fp.path)


def _apply_one(fp: FilePatch, original: str | None) -> str:
    if fp.new_file:
        if original is not None:
            raise PatchError(f"{fp.path} already exists on the branch")
        source: list[str] = []
        ends_with_newline = True
    else:
        if original is None:
            raise PatchError(f"{fp.path} does not exist on the branch")
        source = original.splitlines()
        ends_with_newline = original.endswith("\n") or original == ""
    result: list[str] = []
    cursor = 0  # index into source
    for hunk in fp.hunks:
        start = max(hunk.old_start - 1, 0) if hunk.old_len else hunk.old_start
        if start < cursor or start > len(source):
            raise PatchError(f"hunk at line {hunk.old_start} of {fp.path} is out of order")
        result.extend(source[cursor:start])
        cursor = start
        for row in hunk.lines:
            kind, text = row[0], row[1:]
            if kind in " -":
                if cursor >= len(source) or source[cursor] != text:
                    raise PatchError(
                        f"hunk at line {hunk.old_start} of {fp.path} does not match the branch"
                    )
                cursor += 1
                if kind == " ":
                    result.append(text)
            else:
                result.append(text)
    result.extend(source[cursor:])
    text = "\n".join(result)
    return text + "\n" if (result and ends_with_newline) else text


def apply_patch(
    patches: list[FilePatch], read: Callable[[str], str | None] | Mapping[str, str | None]
) -> dict[str, str]:
    """New contents per path; ``read`` gives a file's current text (None: absent).

    All or nothing: the first hunk that does not match raises ``PatchError``.
    """
    get = read.get if isinstance(read, Mapping) else read
    return {fp.path: _apply_one(fp, get(fp.path)) for fp in patches}
