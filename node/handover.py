"""The local hand-over: a failing process gives its report to the relay on its machine.

When a relay runs on this machine, its nudge socket sits next to the spool
(``<state_dir>/<cluster>/relay.sock``). A failing process then does only
what must happen inside it, and leaves the rest to the relay, which has
everything loaded already:

1. **in the failing process** (:func:`hand_over`): read the settings, build
   the plain event (node/event.py), scrub it with this process's rules
   (secrets never leave the process: its environment's secret values and
   token are known only here), commit it as one row of the store's
   ``handover`` table (msgpack, ``synchronous=FULL``), and send the relay
   one datagram;
2. **in the relay, or the next errmesh process** (:func:`take`): in one
   transaction, each row becomes a Report, is signed and bounded like the
   full error path does (node/pipeline.py), is spooled (stamped with origin,
   seq and cumulative count) and its row deleted. From there the spool's
   usual rules apply: drained, merged, gossiped, acked.

Why: the goal for this path is p50 <= 50 ms from spawn to exit, and a bare
interpreter takes ~11 ms. The full path imports ``dataclasses``, ``typing``,
``pathlib``, ``hashlib``/``json`` (signature) and the wire codec: ~80 ms.
This module and what it imports at load time (node.settings, node.event,
node.context, node.frames, node.cut, mesh.scrub with mesh.scrub_patterns and
mesh.secret_names, mesh.defaults, mesh.severity, mesh.errors) use none of
them; at hand-over time it adds ``msgpack``, ``sqlite3``, ``_socket`` and
``mesh.spool_rows`` (the row's one definition, shared with the store). ``tests/test_handover.py``
checks the import list, and that both paths give the same report.

The full path is taken instead when the hand-over does not apply: a
``before_send`` hook or a custom delivery (they work on Report objects),
no relay socket, a payload over :data:`MAX_PAYLOAD`, or any failure before
the row is committed. When the row is committed but no relay takes the
datagram (a stale socket), the caller delivers the spool like the full path
would (:meth:`node.pipeline.Pipeline.deliver_spooled`), so the report is
neither lost nor reported twice.
"""

from __future__ import annotations

import os

from mesh.scrub import process_scrubber
from node.context import process_context
from node.event import exception_event
from node.skeleton import _DB_NAME, locate

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from typing import Any

    from mesh.report import Report
    from mesh.scrub import Scrubber
    from mesh.store import Store
    from node.event import Event
    from node.frames import FrameData
    from node.scope import Scope
    from node.skeleton import Located

__all__ = [
    "HANDED",
    "MAX_PAYLOAD",
    "NOT_APPLICABLE",
    "VERSION",
    "WRITTEN",
    "decode",
    "encode",
    "hand_over",
    "nudge_relay",
    "scrub_event",
    "take",
]

#: Version of the row format (the ``v`` key).
VERSION = 1
#: A bigger event (a giant message or argv) takes the full path, which bounds it.
MAX_PAYLOAD = 1024 * 1024
#: :func:`hand_over`'s results.
NOT_APPLICABLE, WRITTEN, HANDED = "not-applicable", "written", "handed"

_SOCKET_NAME = "relay.sock"  # node.config.Config.relay_socket


def _scrub_frames(frames: Sequence[FrameData], text: Callable[[str], str]) -> tuple[FrameData, ...]:
    """Frames with their file names and source lines passed through ``text``."""
    return tuple(
        (mod, fn, text(filename), lineno, in_app, text(line))
        for mod, fn, filename, lineno, in_app, line in frames
    )


def scrub_event(event: Event, scrubber: Scrubber) -> Event:
    """``event`` with the fields :meth:`mesh.scrub.Scrubber.report` scrubs, scrubbed.

    The same fields and the same methods, on plain values; the tests check
    that both give the same result. Never raises: on an internal failure
    every scrubbed field is redacted, as ``Scrubber.report`` does.
    """
    scrubbed = dict(event)
    try:
        scrubbed["message"] = scrubber.text(event["message"])
        scrubbed["causes"] = tuple((t, scrubber.text(m), r) for t, m, r in event["causes"])
        scrubbed["frames"] = _scrub_frames(event["frames"], scrubber.text)
        scrubbed["log_tail"] = scrubber.lines(event["log_tail"])
        scrubbed["argv"] = scrubber.argv(event["argv"])
        scrubbed["facts"] = scrubber.pairs(event["facts"])
        scrubbed["tags"] = scrubber.pairs(event["tags"])
        scrubbed["contexts"] = scrubber.pairs(event["contexts"])
        scrubbed["environment"] = scrubber.text(event["environment"])
        scrubbed["release"] = scrubber.text(event["release"])
        scrubbed["leaves"] = tuple(
            (t, scrubber.text(m), _scrub_frames(f, scrubber.text)) for t, m, f in event["leaves"]
        )
        scrubbed["source_context"] = tuple(
            (i, *scrubber.source(pre, line, post)) for i, pre, line, post in event["source_context"]
        )
    except Exception:
        redacted = "[REDACTED]"
        scrubbed["message"] = redacted
        scrubbed["causes"] = tuple((t, redacted, r) for t, _, r in event["causes"])
        scrubbed["frames"] = _scrub_frames(event["frames"], lambda _: redacted)
        scrubbed["log_tail"] = tuple(redacted for _ in event["log_tail"])
        scrubbed["argv"] = tuple(redacted for _ in event["argv"])
        scrubbed["facts"] = tuple((k, redacted) for k, _ in event["facts"])
        scrubbed["tags"] = tuple((k, redacted) for k, _ in event["tags"])
        scrubbed["contexts"] = tuple((k, redacted) for k, _ in event["contexts"])
        scrubbed["environment"] = redacted if event["environment"] else ""
        scrubbed["release"] = redacted if event["release"] else ""
        scrubbed["leaves"] = tuple(
            (t, redacted, _scrub_frames(f, lambda _: redacted)) for t, _, f in event["leaves"]
        )
        scrubbed["source_context"] = tuple(
            (i, tuple(redacted for _ in pre), redacted, tuple(redacted for _ in post))
            for i, pre, _, post in event["source_context"]
        )
    return scrubbed  # type: ignore[return-value]


def encode(event: Event) -> bytes:
    """The row payload: the event as a msgpack map, plus ``v``."""
    import msgpack

    return bytes(msgpack.packb({"v": VERSION, **event}, use_bin_type=True))


def decode(payload: bytes) -> dict[str, object]:
    """The event of a row; raises ``ValueError`` for anything else."""
    import msgpack

    try:
        event = msgpack.unpackb(payload, raw=False, strict_map_key=True, max_bin_len=0)
    except Exception as exc:
        raise ValueError(f"undecodable hand-over row: {exc}") from None
    if not isinstance(event, dict) or event.pop("v", None) != VERSION:
        raise ValueError("hand-over row: not a version-1 event")
    return event


def hand_over(
    exc: BaseException,
    *,
    flags: Mapping[str, object],
    log_tail: tuple[str, ...],
    caller_package: str,
    default_app: Callable[[], str],
    fingerprint: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    now: float,
    skeleton: int | None = None,
    located: Located | None = None,
    scope: Scope | None = None,
) -> str:
    """Commit the scrubbed event of ``exc`` for the local relay and nudge it.

    Returns :data:`HANDED` (committed, relay nudged), :data:`WRITTEN`
    (committed, no relay took the nudge: deliver the spool) or
    :data:`NOT_APPLICABLE` (nothing written: take the full path). A bad
    setting falls back to its default, said once on stderr, like the full path.
    ``skeleton``: the row the committed event replaces, in the same
    transaction (node/skeleton.py); ``located``: the settings, read already;
    ``scope``: the host's tags and contexts (node/scope.py).
    """
    env, values, directory = located or locate(flags, environ)
    sock_path = os.path.join(directory, _SOCKET_NAME)
    if not os.path.exists(sock_path):
        return NOT_APPLICABLE
    ctx = process_context(
        app=values["app"] or default_app(),
        app_version=values["app_version"],
        log_tail=log_tail,
        in_app_include=tuple(values["in_app_include"])
        + ((caller_package,) if caller_package else ()),
        in_app_exclude=tuple(values["in_app_exclude"]),
        scope=scope,
        environment=values["environment"],
        release=values["release"],
        source_context=values["source_context"],
    )
    event = exception_event(exc, ctx, now=now, fingerprint=fingerprint)
    scrubber = process_scrubber(
        extra_patterns=tuple(values["scrub_patterns"]),
        extra_keys=tuple(values["scrub_keys"]),
        token=values["github_token"],
        environ=env,
    )
    payload = encode(scrub_event(event, scrubber))
    if len(payload) > MAX_PAYLOAD:
        return NOT_APPLICABLE
    if not _commit(os.path.join(directory, _DB_NAME), payload, values, now, skeleton):
        return NOT_APPLICABLE
    return HANDED if nudge_relay(sock_path) else WRITTEN


def _commit(
    path: str, payload: bytes, values: Mapping[str, Any], now: float, skeleton: int | None
) -> bool:
    """One row, committed durably; False when it cannot be (the full path copes).

    With a ``skeleton`` the row replaces it, so the occurrence is counted
    once whenever the process dies; that skeleton already survives a power
    loss, so this commit need only survive the process (``NORMAL``).
    """
    import sqlite3

    from mesh.spool_rows import add_handover

    try:
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    except sqlite3.Error:
        return False
    try:
        full = values["spool_sync"] == "full" and skeleton is None
        conn.execute(f"PRAGMA synchronous = {'FULL' if full else 'NORMAL'}")
        page_size = conn.execute("PRAGMA page_size").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {max(16, values['spool_max_bytes'] // page_size)}")
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not add_handover(conn, created=now, payload=payload, replaces=skeleton):
                conn.execute("ROLLBACK")  # the skeleton was taken as stale: it is counted
                return True
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        return True
    except sqlite3.Error:  # no such table (an older relay), full, read-only: full path
        return False
    finally:
        conn.close()


def nudge_relay(path: str | os.PathLike[str]) -> bool:
    """Wake the local relay with one datagram; False when no relay listens there.

    The one nudge of every path (the hand-over, the embedded delivery, the
    CLI). ``_socket``: ``socket`` costs ~4 ms to import on the dying path.
    """
    import _socket

    try:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_DGRAM)
    except OSError:
        return False
    fd = None
    try:
        address, fd = socket_address(path)
        sock.sendto(b"spooled", address)
        return True
    except OSError:  # a stale socket: the relay is gone
        return False
    finally:
        sock.close()
        if fd is not None:
            os.close(fd)


#: Longest Unix socket path the kernel takes (``sun_path`` is 108 bytes with its NUL).
_SUN_PATH_MAX = 107


def socket_address(path: str | os.PathLike[str]) -> tuple[str, int | None]:
    """An address for the Unix socket at ``path`` that fits ``sun_path``.

    A state directory deeper than ~100 bytes made the relay die at start with
    only "AF_UNIX path too long". Such a path is reached through its
    directory's descriptor instead (``/proc/self/fd/<fd>/relay.sock``, Linux):
    the caller closes the descriptor (the second item) once bound or sent.
    """
    text = os.fspath(path)
    if len(os.fsencode(text)) <= _SUN_PATH_MAX:
        return text, None
    head, tail = os.path.split(text)
    fd = os.open(head or ".", os.O_PATH | os.O_DIRECTORY)
    return f"/proc/self/fd/{fd}/{tail}", fd


def take(store: Store, *, limit: int = 1000) -> list[Report]:
    """Move up to ``limit`` hand-over rows into the spool, signed and bounded.

    Also the skeletons whose writers died before replacing them
    (node/skeleton.py). Returns the spooled reports. Rows that do not decode
    to a valid event are deleted and counted (``corrupt_rows``). Raises
    ``StoreError``.
    """
    import time

    from mesh.wire import seal_report
    from node import skeleton
    from node.context import host_facts
    from node.event import to_report

    def signed(event: Mapping[str, object]) -> Report:
        return seal_report(to_report(event))

    def from_skeleton(payload: str) -> Report:
        return signed(skeleton.to_event(payload, facts=facts))

    facts = host_facts()

    now = time.time()
    taken = store.take_handovers(lambda payload: signed(decode(payload)), limit=limit)
    return taken + store.take_skeletons(
        from_skeleton, lambda pid, created: skeleton.stale(pid, created, now), limit=limit
    )
