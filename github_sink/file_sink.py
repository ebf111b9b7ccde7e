"""The file sink: issues as Markdown files plus a JSON index.

The embedded default when no GitHub repository is configured, and the sink of
``errmesh demo``. It makes the same decisions the GitHub sink makes (it gets
the same actions from the pure core and renders the same bodies) over a
different transport, so everything above the sink is exercised without a
token:

- ``<dir>/index.json``: one entry per signature (number, title, state,
  labels, counts, file name, update comments); the source of truth.
- ``<dir>/<sig12>.md``: the rendered issue, rewritten in place on every
  action (title, state, labels, body, then the update comments).

People close an issue with ``errmesh issues close SIG`` (or by setting
``"state": "closed"`` in the index); :meth:`FileSink.observe` reports it and
the next occurrence reopens it labelled ``regression``.

Writes are atomic (temporary file + rename) and the index is updated under an
advisory lock, so concurrent processes never corrupt it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from github_sink.errors import SinkRejected, SinkUnavailable
from github_sink.render import render_body, render_comment, render_title
from github_sink.sink import IssueState
from mesh.aggregate import IssueLink, SigState, effective_severity
from mesh.report import sig_hex

__all__ = ["FileSink"]

_INDEX = "index.json"
_MAX_COMMENTS = 100


class FileSink:
    """Issues in a folder. Idempotent per signature, safe across processes."""

    name = "file"

    def __init__(self, directory: Path, *, reopen_label: str = "regression") -> None:
        self.directory = directory
        self.reopen_label = reopen_label

    # -- Sink protocol ----------------------------------------------------

    def open_issue(self, state: SigState, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            return self._open(index, state, now=now, term=term)

    def _open(self, index: dict[str, Any], state: SigState, *, now: float, term: int) -> IssueLink:
        """Open (or find) under the index lock the caller holds."""
        key = state.signature.hex()
        entry = index["issues"].get(key)
        if entry is None:
            number = int(index.get("next_number", 1))
            index["next_number"] = number + 1
            entry = {
                "number": number,
                "file": f"{sig_hex(state.signature)}.md",
                "state": "open",
                "created_at": now,
                "comments": [],
                "labels": [],
            }
            index["issues"][key] = entry
        self._refresh(entry, state, now)
        return self._write(entry, state, term=term, now=now)

    def update_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            entry = index["issues"].get(state.signature.hex())
            if entry is None:  # the folder was wiped: start again, idempotently
                return self._open(index, state, now=now, term=term)
            if state.total > link.synced_total:
                self._comment(entry, render_comment(state, previous_total=link.synced_total), now)
            self._refresh(entry, state, now)
            return self._write(entry, state, term=term, now=now)

    def reopen_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            entry = index["issues"].get(state.signature.hex())
            if entry is None:
                return self._open(index, state, now=now, term=term)
            entry["state"] = "open"
            entry["reopened_at"] = now
            if self.reopen_label not in entry["labels"]:
                entry["labels"].append(self.reopen_label)
            self._comment(
                entry,
                render_comment(state, previous_total=link.synced_total, regression=True),
                now,
            )
            self._refresh(entry, state, now)
            return self._write(entry, state, term=term, now=now)

    def observe(self, signatures: Iterable[bytes]) -> dict[bytes, IssueState]:
        index = self.read_index()
        out: dict[bytes, IssueState] = {}
        for sig in signatures:
            entry = index["issues"].get(sig.hex())
            if entry is not None:
                out[sig] = "closed" if entry.get("state") == "closed" else "open"
        return out

    # -- for people (CLI) -------------------------------------------------

    def close(self, prefix: str, *, now: float) -> str:
        """Close the issue whose signature starts with ``prefix``; returns its file.

        Raises ``SinkRejected`` when no issue or several issues match.
        """
        with self._index() as index:
            matches = [k for k in index["issues"] if k.startswith(prefix.lower())]
            if len(matches) != 1:
                raise SinkRejected(
                    f"{len(matches)} issues match {prefix!r}; give more of the signature"
                )
            entry = index["issues"][matches[0]]
            entry["state"] = "closed"
            entry["closed_at"] = now
            path = self.directory / str(entry["file"])
            with contextlib.suppress(OSError):
                text = path.read_text(encoding="utf-8")
                path.write_text(
                    text.replace("**State:** open", "**State:** closed", 1), encoding="utf-8"
                )
            return str(path)

    def read_index(self) -> dict[str, Any]:
        """The index as data (an empty one when the folder is new)."""
        try:
            raw = (self.directory / _INDEX).read_text(encoding="utf-8")
        except FileNotFoundError:
            return {"version": 1, "next_number": 1, "issues": {}}
        except OSError as exc:
            raise SinkUnavailable(f"cannot read {self.directory / _INDEX}: {exc}") from exc
        try:
            data = json.loads(raw)
        except ValueError as exc:
            raise SinkUnavailable(f"{self.directory / _INDEX} is not valid JSON: {exc}") from exc
        if not isinstance(data, dict) or not isinstance(data.get("issues"), dict):
            raise SinkUnavailable(f"{self.directory / _INDEX} is not an errmesh index")
        return data

    # -- internals --------------------------------------------------------

    @contextlib.contextmanager
    def _index(self) -> Iterator[dict[str, Any]]:
        """Read-modify-write the index under an exclusive lock."""
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.directory / ".lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise SinkUnavailable(f"cannot use {self.directory}: {exc}") from exc
        try:
            try:
                import fcntl

                fcntl.flock(fd, fcntl.LOCK_EX)
            except ImportError:  # pragma: no cover - not POSIX
                pass
            index = self.read_index()
            yield index
            self._atomic_write(self.directory / _INDEX, json.dumps(index, indent=1, sort_keys=True))
        finally:
            os.close(fd)

    def _refresh(self, entry: dict[str, Any], state: SigState, now: float) -> None:
        severity = effective_severity(state)
        labels = [x for x in entry.get("labels", []) if not str(x).startswith("severity:")]
        for label in ("errmesh", "bug"):
            if label not in labels:
                labels.insert(0 if label == "errmesh" else 1, label)
        labels.append(severity.label)
        entry.update(
            title=render_title(state),
            labels=labels,
            severity=severity.name.lower(),
            total=state.total,
            hosts=list(state.hosts),
            first_seen=state.first_seen,
            last_seen=state.last_seen,
            updated_at=now,
        )

    def _comment(self, entry: dict[str, Any], text: str, now: float) -> None:
        comments = entry.setdefault("comments", [])
        comments.append({"at": now, "body": text})
        del comments[:-_MAX_COMMENTS]

    def _write(self, entry: dict[str, Any], state: SigState, *, term: int, now: float) -> IssueLink:
        path = self.directory / str(entry["file"])
        parts = [
            f"# {entry['title']}",
            "",
            f"**State:** {entry['state']} · **Issue:** #{entry['number']} · "
            f"**Labels:** {', '.join(entry['labels'])}",
            "",
            render_body(state, now=now),
        ]
        for comment in entry.get("comments", []):
            parts += ["", "---", "", str(comment["body"])]
        self._atomic_write(path, "\n".join(parts) + "\n")
        return IssueLink(
            ref=f"file:{path}",
            number=int(entry["number"]),
            url=path.resolve().as_uri(),
            state="closed" if entry["state"] == "closed" else "open",
            term=term,
            synced_total=state.total,
            synced_at=now,
            severity=effective_severity(state),
        )

    def _atomic_write(self, path: Path, text: str) -> None:
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise SinkUnavailable(f"cannot write {path}: {exc}") from exc
