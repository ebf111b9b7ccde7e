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

In a mesh every relay keeps its own folder: the leader writes through the
sink, every other relay copies the replicated links into its folder
(:meth:`FileSink.mirror`), so ``errmesh issues list`` shows every issue on
every machine. Each entry records the link it shows (``"link"``): a copy
applies a link only when it is later in the links' last-writer-wins order,
and an entry whose ``state`` differs from its link's is a change people made
here (:meth:`FileSink.changes`), which the relay sends into the mesh. Issue
numbers are allocated above the highest number in the replicated links, so a
new leader continues the numbering (DECISIONS 36).

Writes are atomic (temporary file + rename) and the index is updated under an
advisory lock, so concurrent processes never corrupt it.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

from github_sink.errors import SinkRejected, SinkUnavailable
from github_sink.render import render_body, render_comment, render_title
from github_sink.sink import IssueState
from mesh.bounds import MAX_NUMBER
from mesh.bundling import effective_severity
from mesh.report import sig_hex
from mesh.severity import Severity
from mesh.sigstate import IssueLink, SigState, link_order

__all__ = ["FileSink"]

_INDEX = "index.json"
_MAX_COMMENTS = 100


class FileSink:
    """Issues in a folder. Idempotent per signature, safe across processes."""

    name = "file"

    def __init__(self, directory: Path, *, reopen_label: str = "regression") -> None:
        self.directory = directory
        self.reopen_label = reopen_label
        self._floor = 0
        self._index_seen: tuple[int, int] | None = None  # (mtime_ns, size) without changes

    # -- Sink protocol ----------------------------------------------------

    def open_issue(self, state: SigState, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            return self._open(index, state, now=now, term=term)

    def _open(self, index: dict[str, Any], state: SigState, *, now: float, term: int) -> IssueLink:
        """Open (or find) under the index lock the caller holds."""
        entry = index["issues"].get(state.signature.hex())
        if entry is None:
            entry = self._new_entry(index, state, self._allocate(index), now)
        self._refresh(entry, state, now)
        return self._write(entry, state, term=term, now=now)

    def _new_entry(
        self, index: dict[str, Any], state: SigState, number: int, now: float
    ) -> dict[str, Any]:
        entry: dict[str, Any] = {
            "number": number,
            "file": f"{sig_hex(state.signature)}.md",
            "state": "open",
            "created_at": now,
            "comments": [],
            "labels": [],
        }
        index["issues"][state.signature.hex()] = entry
        return entry

    def _allocate(self, index: dict[str, Any]) -> int:
        """The next number: above the replicated links' and this folder's highest."""
        highest = max(
            [self._floor, int(index.get("next_number", 1)) - 1]
            + [int(e.get("number", 0)) for e in index["issues"].values()]
        )
        if highest >= MAX_NUMBER:  # a key holder's link at the ceiling (mesh.bounds)
            raise SinkRejected(
                f"no issue number left: the highest known is {highest} "
                f"(the ceiling is {MAX_NUMBER}); renumber or clear {self.directory}"
            )
        index["next_number"] = highest + 2
        return highest + 1

    def _linked(
        self, index: dict[str, Any], state: SigState, link: IssueLink, now: float
    ) -> dict[str, Any] | None:
        """The entry of a linked issue; one made from the link when this folder lacks it.

        The link's number is kept: this folder may be a new leader's that
        never held the issue, and the issue must stay the one people know.
        """
        entry: dict[str, Any] | None = index["issues"].get(state.signature.hex())
        if entry is None and link.number is not None:
            entry = self._new_entry(index, state, link.number, now)
            entry["state"] = link.state
        return entry

    def update_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            entry = self._linked(index, state, link, now)
            if entry is None:  # the folder was wiped and the link has no number
                return self._open(index, state, now=now, term=term)
            if state.total > link.synced_total:
                self._comment(entry, render_comment(state, previous_total=link.synced_total), now)
            self._refresh(entry, state, now)
            return self._write(entry, state, term=term, now=now)

    def reopen_issue(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            entry = self._linked(index, state, link, now)
            if entry is None:
                return self._open(index, state, now=now, term=term)
            entry["state"] = "open"
            entry["reopened_at"] = now
            self._regression(entry, state, link.synced_total, now)
            self._refresh(entry, state, now)
            return self._write(entry, state, term=term, now=now)

    def _regression(
        self, entry: dict[str, Any], state: SigState, previous: int, now: float
    ) -> None:
        if self.reopen_label not in entry["labels"]:
            entry["labels"].append(self.reopen_label)
        self._comment(entry, render_comment(state, previous_total=previous, regression=True), now)

    def observe(self, signatures: Iterable[bytes]) -> dict[bytes, IssueState]:
        """What people changed: an entry showing its last link's state says nothing.

        Reporting such an entry's state would undo a newer link that this
        folder has not shown yet (a reopen by another leader, say).
        """
        index = self.read_index()
        out: dict[bytes, IssueState] = {}
        for sig in signatures:
            entry = index["issues"].get(sig.hex())
            if entry is None:
                continue
            shown = _state_of(entry)
            link = entry.get("link")
            if not isinstance(link, dict) or link.get("state") != shown:
                out[sig] = shown
        return out

    def set_gate(self, gate: Callable[[], bool]) -> None:
        """Ignored: a folder's writes are local, and every relay mirrors the
        replicated links into its own folder anyway (DECISIONS 36)."""

    # -- Numbering --------------------------------------------------------

    def number_above(self, floor: int) -> None:
        self._floor = max(self._floor, floor)

    def collisions(self) -> list[tuple[bytes, int]]:
        """Losers of shared numbers: the claim of the higher link term keeps the
        number, then the lower signature (DECISIONS 36)."""
        claims: dict[int, list[tuple[int, str]]] = {}
        for key, entry in self.read_index()["issues"].items():
            link = entry.get("link")
            term = int(link.get("term", 0)) if isinstance(link, dict) else 0
            claims.setdefault(int(entry["number"]), []).append((-term, key))
        losers = [
            (bytes.fromhex(key), number)
            for number, claimants in claims.items()
            for _, key in sorted(claimants)[1:]
        ]
        return sorted(losers)

    def renumber(self, state: SigState, link: IssueLink, *, now: float, term: int) -> IssueLink:
        with self._index() as index:
            entry = self._linked(index, state, link, now)
            if entry is None:
                return self._open(index, state, now=now, term=term)
            old = entry["number"]
            entry["number"] = self._allocate(index)
            self._comment(
                entry,
                f"errmesh: renumbered #{old} -> #{entry['number']}: another issue was given "
                f"#{old} by a leader that could not see this one (a partition).",
                now,
            )
            self._refresh(entry, state, now, total=link.synced_total)
            return self._write(entry, state, term=term, now=now, synced_total=link.synced_total)

    # -- Replica ----------------------------------------------------------

    def mirror(self, states: Iterable[SigState], *, now: float) -> int:
        """Show links later than the ones shown; the files read as the leader's do."""
        wanted = [
            s
            for s in states
            if s.link is not None and s.link.number is not None and s.link.ref.startswith("file:")
        ]
        # Anti-entropy brings the same links again and again: look before
        # taking the lock, which rewrites (and fsyncs) the index.
        issues = self.read_index()["issues"]
        wanted = [s for s in wanted if _newer(s, issues.get(s.signature.hex()))]
        if not wanted:
            return 0
        changed = 0
        with self._index() as index:
            for state in wanted:
                link = state.link
                assert link is not None and link.number is not None
                entry = index["issues"].get(state.signature.hex())
                if not _newer(state, entry):
                    continue
                shown = None if entry is None else _link_of(entry)
                if entry is None:
                    entry = self._new_entry(index, state, link.number, now)
                elif shown is not None:
                    if shown.state == "closed" and link.state == "open":
                        self._regression(entry, state, shown.synced_total, now)
                    elif link.synced_total > shown.synced_total:
                        comment = render_comment(state, previous_total=shown.synced_total)
                        self._comment(entry, comment, now)
                entry["number"] = link.number
                if shown is None or _state_of(entry) == shown.state:
                    entry["state"] = link.state  # else people changed it here: keep theirs
                self._refresh(entry, state, now, total=link.synced_total, severity=link.severity)
                self._render(entry, state, now=now, durable=False)
                entry["link"] = _link_data(link)
                changed += 1
        return changed

    def changes(self) -> dict[bytes, IssueState]:
        """Entries whose state people changed since their link (cheap when nothing did)."""
        try:
            st = (self.directory / _INDEX).stat()
        except OSError:
            return {}
        seen = (st.st_mtime_ns, st.st_size)
        if seen == self._index_seen:
            return {}
        out: dict[bytes, IssueState] = {}
        for key, entry in self.read_index()["issues"].items():
            link = entry.get("link")
            if isinstance(link, dict) and link.get("state") != _state_of(entry):
                out[bytes.fromhex(key)] = _state_of(entry)
        if not out:
            self._index_seen = seen
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

    def _refresh(
        self,
        entry: dict[str, Any],
        state: SigState,
        now: float,
        *,
        total: int | None = None,
        severity: Severity | None = None,
    ) -> None:
        """Title, labels and counts; a copy shows the link's (what the issue showed)."""
        severity = effective_severity(state) if severity is None else severity
        labels = [x for x in entry.get("labels", []) if not str(x).startswith("severity:")]
        for label in ("errmesh", "bug"):
            if label not in labels:
                labels.insert(0 if label == "errmesh" else 1, label)
        labels.append(severity.label)
        entry.update(
            title=render_title(state),
            labels=labels,
            severity=severity.name.lower(),
            total=state.total if total is None else total,
            hosts=list(state.hosts),
            first_seen=state.first_seen,
            last_seen=state.last_seen,
            updated_at=now,
        )

    def _comment(self, entry: dict[str, Any], text: str, now: float) -> None:
        comments = entry.setdefault("comments", [])
        comments.append({"at": now, "body": text})
        del comments[:-_MAX_COMMENTS]

    def _write(
        self,
        entry: dict[str, Any],
        state: SigState,
        *,
        term: int,
        now: float,
        synced_total: int | None = None,
    ) -> IssueLink:
        path = self._render(entry, state, now=now, durable=True)
        link = IssueLink(
            ref=f"file:{path}",
            number=int(entry["number"]),
            url=path.resolve().as_uri(),
            state=_state_of(entry),
            term=term,
            synced_total=state.total if synced_total is None else synced_total,
            synced_at=now,
            severity=effective_severity(state),
        )
        entry["link"] = _link_data(link)
        return link

    def _render(self, entry: dict[str, Any], state: SigState, *, now: float, durable: bool) -> Path:
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
        self._atomic_write(path, "\n".join(parts) + "\n", durable=durable)
        return path

    def _atomic_write(self, path: Path, text: str, *, durable: bool = True) -> None:
        """``durable=False`` skips the fsync: a copy's file can be written again."""
        try:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-", suffix=path.suffix)
            try:
                with os.fdopen(fd, "w", encoding="utf-8") as handle:
                    handle.write(text)
                    handle.flush()
                    if durable:
                        os.fsync(handle.fileno())
                os.replace(tmp, path)
            except BaseException:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)
                raise
        except OSError as exc:
            raise SinkUnavailable(f"cannot write {path}: {exc}") from exc


def _state_of(entry: dict[str, Any]) -> Literal["open", "closed"]:
    return "closed" if entry.get("state") == "closed" else "open"


def _link_data(link: IssueLink) -> dict[str, Any]:
    return {
        "ref": link.ref,
        "number": link.number,
        "url": link.url,
        "state": link.state,
        "term": link.term,
        "synced_total": link.synced_total,
        "synced_at": link.synced_at,
        "severity": int(link.severity),
    }


def _link_of(entry: dict[str, Any]) -> IssueLink | None:
    """The link an entry shows; None for an entry written before links were kept."""
    data = entry.get("link")
    if not isinstance(data, dict):
        return None
    try:
        return IssueLink(
            ref=str(data["ref"]),
            number=None if data["number"] is None else int(data["number"]),
            url=str(data["url"]),
            state="closed" if data["state"] == "closed" else "open",
            term=int(data["term"]),
            synced_total=int(data["synced_total"]),
            synced_at=float(data["synced_at"]),
            severity=Severity(int(data["severity"])),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _newer(state: SigState, entry: dict[str, Any] | None) -> bool:
    """Whether ``state``'s link is later than the one ``entry`` shows."""
    shown = None if entry is None else _link_of(entry)
    return state.link is not None and (shown is None or link_order(state.link) > link_order(shown))
