"""The local hand-over: a failing process next to a relay writes one row and nudges it.

The relay here is played by the test: a real store (as a relay opens it) and
a real Unix datagram socket bound at the relay's path. What the relay does
with a row is ``node.handover.take``, the function the relay itself calls.
"""

from __future__ import annotations

import contextlib
import dataclasses
import socket
import sqlite3
from collections.abc import Iterator
from pathlib import Path

import pytest
from secrets_corpus import SECRETS

from conftest import Sandbox
from mesh.report import Report
from mesh.scrub import process_scrubber
from mesh.store import DB_NAME, Store
from node import handover
from node.compose import SoloDelivery, open_store
from node.config import Config, resolve
from node.context import EventContext
from node.event import exception_event, from_exception
from node.pipeline import Pipeline

HEAVY = (
    "dataclasses", "typing", "pathlib", "hashlib", "json", "libp2p", "trio",
    "node.pipeline", "node.compose",
)  # fmt: skip


@contextlib.contextmanager
def relay_socket(path: Path) -> Iterator[socket.socket]:
    """What a running relay has: a datagram socket bound at ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(5.0)
    try:
        yield sock
    finally:
        sock.close()
        path.unlink(missing_ok=True)


def config_of(sandbox: Sandbox) -> Config:
    return resolve(environ=sandbox.env)


def handover_rows(config: Config) -> int:
    with contextlib.closing(sqlite3.connect(config.cluster_state_dir / DB_NAME)) as conn:
        return int(conn.execute("SELECT COUNT(*) FROM handover").fetchone()[0])


def raise_and_catch(message: str) -> BaseException:
    try:
        try:
            raise OSError(f"inner: {message}")
        except OSError as inner:
            raise RuntimeError(message) from inner
    except RuntimeError as exc:
        return exc


# ---------------------------------------------------------------------------
# A failing process


def test_a_failing_cli_next_to_a_relay_writes_one_row_and_nudges_it(sandbox: Sandbox) -> None:
    """No dataclasses, typing, pathlib, hashlib, json or libp2p on this path."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()  # as the relay opened it
    with relay_socket(config.relay_socket) as sock:
        done = sandbox.python(
            """
            import atexit, sys
            before = set(sys.modules)  # the interpreter's (an editable install loads pathlib)
            heavy = [m for m in sys.argv[1].split(",") if m not in before]
            atexit.register(lambda: print(",".join(m for m in heavy if m in sys.modules)))
            import node
            node.install(app="cli", environment="ci")
            node.set_tag("stage", "build")
            node.set_user(id=7)
            raise ValueError("disk quota exceeded for user 7")
            """,
            ",".join(HEAVY),
        )
        assert sock.recv(64) == b"spooled"
    assert done.returncode == 1
    assert "ValueError: disk quota exceeded" in done.stderr  # the host's own traceback
    assert "errmesh:" not in done.stderr
    assert done.stdout.strip() == "", f"imported on the hand-over path: {done.stdout}"
    assert handover_rows(config) == 1

    with Store.open(config.cluster_state_dir) as store:  # what the relay does next
        [report] = handover.take(store)
        assert store.pending() == [report]
    assert (report.exc_type, report.message, report.app) == (
        "ValueError",
        "disk quota exceeded for user 7",
        "cli",
    )
    assert report.origin == store.origin and (report.seq, report.count) == (1, 1)
    assert len(report.signature) == 16
    assert (report.tags, report.contexts) == ((("stage", "build"),), (("user.id", "7"),))
    assert report.environment == "ci"
    assert handover_rows(config) == 0


def test_without_a_relay_socket_the_full_path_runs(sandbox: Sandbox) -> None:
    done = sandbox.python("import node; node.install(); raise ValueError('no relay')")
    assert done.returncode == 1
    assert [i["total"] for i in sandbox.issues()] == [1]


def test_a_stale_relay_socket_costs_nothing(sandbox: Sandbox) -> None:
    """The row is committed, the nudge fails: the process delivers it itself, once."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    config.relay_socket.parent.mkdir(parents=True, exist_ok=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    stale.bind(str(config.relay_socket))
    stale.close()  # the file stays; nobody listens: a relay killed with SIGKILL
    done = sandbox.python("import node; node.install(); raise ValueError('stale relay')")
    assert done.returncode == 1, done.stderr
    assert "errmesh:" not in done.stderr
    assert [(i["title"], i["total"]) for i in sandbox.issues()] == [
        ("[errmesh] ValueError: stale relay", 1)
    ]
    assert handover_rows(config) == 0


def test_a_row_left_behind_arrives_with_the_next_errmesh_process(sandbox: Sandbox) -> None:
    """The relay died after the nudge, before taking the row (or never read it)."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    with relay_socket(config.relay_socket) as sock:
        first = sandbox.python("import node; node.install(); raise KeyError('left behind')")
        assert sock.recv(64) == b"spooled"
    assert first.returncode == 1 and handover_rows(config) == 1
    assert sandbox.issues() == []  # the relay that never took it is gone (socket removed)

    second = sandbox.python("import node; node.install(); raise ValueError('next one')")
    assert second.returncode == 1
    assert sorted((i["title"].split(":")[0], i["total"]) for i in sandbox.issues()) == [
        ("[errmesh] KeyError", 1),
        ("[errmesh] ValueError", 1),
    ]
    assert handover_rows(config) == 0


def test_before_send_takes_the_full_path(sandbox: Sandbox) -> None:
    """A hook works on Report objects: no hand-over, and the hook still runs."""
    config = config_of(sandbox)
    Store.open(config.cluster_state_dir).close()
    with relay_socket(config.relay_socket) as sock:
        done = sandbox.python(
            """
            import node
            node.install(before_send=lambda r: r.replace(message="edited"))
            raise ValueError("original")
            """
        )
        assert sock.recv(64) == b"spooled"  # the full path nudges the relay too
    assert done.returncode == 1 and handover_rows(config) == 0
    with Store.open(config.cluster_state_dir) as store:
        assert [r.message for r in store.pending()] == ["edited"]


# ---------------------------------------------------------------------------
# Same report either way


def context_of(kw: dict[str, object]) -> EventContext:
    return EventContext(app="cli", **{k: v for k, v in kw.items() if k != "fingerprint"})  # type: ignore[arg-type]


def full_path(exc: BaseException, config: Config, env: dict[str, str], **kw: object) -> Report:
    ctx = context_of(kw)
    raw = from_exception(exc, ctx, now=1000.0).replace(fingerprint=kw["fingerprint"])
    report = Pipeline(config, environ=env).prepare(raw)
    assert report is not None
    return report


def handed_over(exc: BaseException, config: Config, env: dict[str, str], **kw: object) -> Report:
    ctx = context_of(kw)
    event = exception_event(exc, ctx, now=1000.0, fingerprint=kw["fingerprint"])  # type: ignore[arg-type]
    scrubber = process_scrubber(
        extra_patterns=config.scrub_patterns,
        extra_keys=config.scrub_keys,
        token=config.github_token,
        environ=env,
    )
    payload = handover.encode(handover.scrub_event(event, scrubber))
    with Store.open(config.cluster_state_dir) as store:
        store.hand_over(payload, now=1000.0)  # what a dying process commits
        [report] = handover.take(store)
    return report.replace(origin=b"", seq=0, count=0)


@pytest.mark.parametrize("case", range(len(SECRETS)))
def test_both_paths_give_the_same_report(sandbox: Sandbox, case: int) -> None:
    """Scrubbed, signed and bounded alike, for every text of the secrets corpus."""
    text, secret = SECRETS[case]
    env = {**sandbox.env, "DB_PASSWORD": "hunter2-but-longer"}
    config = resolve(
        environ=env,
        flags={
            "scrub_patterns": [r"tenant-\d{4}"],
            "scrub_keys": ["pin_code"],
            "github_token": "tok-" + "q" * 20,
        },
    )
    kw = {
        "argv": ("cli", "--password", "argv-secret", f"--note={text}"),
        "log_tail": (text, "tenant-1234 logged in", "pin_code=9876", "x" * 900),
        "facts": (("cwd", "/home/x"), ("pin_code", "4321")),
        "tags": (("note", text), ("pin_code", "5555")),
        "contexts": (("db.password", "hunter2-but-longer"), ("order.note", text)),
        "environment": "tenant-1234",
        "release": "1.0",
        "fingerprint": ("{{ default }}", "checkout") if case % 2 else None,
    }
    exc = raise_and_catch(f"{text} hunter2-but-longer tok-{'q' * 20}")
    full = full_path(exc, config, env, **kw)
    handed = handed_over(exc, config, env, **kw)
    assert handed == full
    flat = repr(handed)
    leaked_texts = (
        secret,
        "hunter2-but-longer",
        "argv-secret",
        "tenant-1234",
        "9876",
        "4321",
        "5555",
    )
    for leaked in leaked_texts:
        assert leaked not in flat


# ---------------------------------------------------------------------------
# The relay's side


def test_rows_that_do_not_decode_are_dropped_and_counted(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    good = handover.encode(
        exception_event(raise_and_catch("good"), EventContext(app="cli"), now=5.0)
    )
    bad_event = dict(handover.decode(good), severity=99)
    import msgpack

    with Store.open(config.cluster_state_dir) as store:
        for payload in (
            b"\xc1 not msgpack",
            msgpack.packb({"v": 2, "kind": "exception"}),
            msgpack.packb({"v": 1, **bad_event}),
            good,
        ):
            store.hand_over(payload, now=5.0)
        assert store.statistics().pending == 4  # hand-over rows count as pending
        [report] = handover.take(store)
        assert report.message == "good"
        assert store.statistics().corrupt_rows == 3
        assert store.statistics().pending == 1
    assert handover_rows(config) == 0


def test_a_solo_process_delivers_handed_over_rows_first(sandbox: Sandbox) -> None:
    config = config_of(sandbox)
    event = exception_event(raise_and_catch("handed"), EventContext(app="cli"), now=5.0)
    with open_store(config) as store:
        store.hand_over(handover.encode(event), now=5.0)
    result = Pipeline(config, delivery=SoloDelivery(config)).deliver_spooled(exiting=True)
    assert result is not None and result.opened == 1
    assert [i["title"] for i in sandbox.issues()] == ["[errmesh] RuntimeError: handed"]


def test_every_setting_has_one_default_in_the_settings_table() -> None:
    """Config's fields, and the hand-over's values, come from the table's defaults."""
    from node.settings import DEFAULTS, PATH_SETTINGS

    defaults = Config()
    for name, value in DEFAULTS.items():
        expected = Path(value) if name in PATH_SETTINGS and value is not None else value
        assert getattr(defaults, name) == expected, name
    assert set(DEFAULTS) == {f.name for f in dataclasses.fields(Config)}


def test_the_hand_overs_constants_match_the_full_paths() -> None:
    assert handover._DB_NAME == DB_NAME
    assert Config().relay_socket.name == handover._SOCKET_NAME
