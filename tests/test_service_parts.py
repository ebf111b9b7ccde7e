"""The parts of a relay run as a service, in process: systemd's notify
protocol over a real datagram socket, the JSON log lines, the route table.

The same parts inside a running relay process are in test_relay_service.py.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import shutil
import socket
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import trio
import trio.testing

from conftest import ROOT
from node.logformat import JsonFormatter, configure_logging
from node.sdnotify import Notifier, watchdog_interval


def test_notify_sends_fields_as_one_datagram_to_a_path_socket(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        assert notifier.ready("relay 12D3KooW on /ip4/127.0.0.1/tcp/4747")
        assert manager.recv(4096) == b"READY=1\nSTATUS=relay 12D3KooW on /ip4/127.0.0.1/tcp/4747"
        assert notifier.stopping()
        assert manager.recv(4096) == b"STOPPING=1\nSTATUS=stopping"


def test_without_notify_socket_nothing_is_sent_and_nothing_fails(tmp_path: Path) -> None:
    assert not Notifier({}).enabled
    assert Notifier({}).ready("x") is False
    gone = Notifier({"NOTIFY_SOCKET": str(tmp_path / "nobody-listens")})
    assert gone.enabled and gone.ready("x") is False, "a vanished manager does not raise"


def test_the_watchdog_beats_at_half_its_interval(tmp_path: Path) -> None:
    """WATCHDOG_USEC=200000: a beat at once, then every 0.1 s while the loop runs."""
    path = tmp_path / "notify"
    env = {"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "200000", "WATCHDOG_PID": str(os.getpid())}
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.setblocking(False)
        notifier = Notifier(env)
        assert notifier.watchdog == 0.2

        async def run() -> None:
            with trio.move_on_after(0.35):
                await notifier.keep_alive()

        trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))  # virtual time
        beats = []
        while True:
            try:
                beats.append(manager.recv(64))
            except BlockingIOError:
                break
        assert beats == [b"WATCHDOG=1"] * 4, "at 0, 0.1, 0.2 and 0.3 s"


def test_status_lines_go_out_when_they_change(tmp_path: Path) -> None:
    path = tmp_path / "notify"
    lines = iter(["follower in term 1", "follower in term 1", "leader in term 2"])
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as manager:
        manager.bind(str(path))
        manager.setblocking(False)

        async def run() -> None:
            with trio.move_on_after(3.5):  # three checks, 1 s apart
                await Notifier({"NOTIFY_SOCKET": str(path)}).describe(lambda: next(lines), 1.0)

        trio.run(run, clock=trio.testing.MockClock(autojump_threshold=0))
        said = []
        with contextlib.suppress(BlockingIOError):
            while True:
                said.append(manager.recv(64))
    assert said == [b"STATUS=follower in term 1", b"STATUS=leader in term 2"]


def test_a_watchdog_meant_for_another_process_is_not_ours() -> None:
    assert watchdog_interval({"WATCHDOG_USEC": "5000000", "WATCHDOG_PID": "1"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "junk"}) is None
    assert watchdog_interval({"WATCHDOG_USEC": "5000000"}) == 5.0


def test_a_json_log_line_carries_its_traceback_inside_it() -> None:
    record = logging.LogRecord(
        "errmesh.peer", logging.ERROR, __file__, 1, "apply failed: %s", ("x",), None
    )
    try:
        raise ValueError("poisoned\nrow")
    except ValueError as exc:
        record.exc_info = (type(exc), exc, exc.__traceback__)
    line = JsonFormatter().format(record)
    assert "\n" not in line, "one record, one line"
    entry = json.loads(line)
    assert entry["level"] == "error" and entry["logger"] == "errmesh.peer"
    assert entry["message"] == "apply failed: x"
    assert entry["exc"].startswith("Traceback") and "ValueError: poisoned\nrow" in entry["exc"]
    assert entry["ts"] == pytest.approx(record.created)


def test_json_logging_takes_warnings_too() -> None:
    stream = io.StringIO()
    root = logging.getLogger()
    saved = root.handlers[:], root.level
    root.handlers = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("always")  # this suite makes warnings errors
            configure_logging("info", "json", stream)
            logging.getLogger("errmesh.peer").info("leading in term %d", 3)
            warnings.warn("old setting", UserWarning, stacklevel=1)
    finally:
        logging.captureWarnings(False)
        root.handlers, level = saved
        root.setLevel(level)
    entries = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entries[0]["message"] == "leading in term 3"
    assert entries[1]["logger"] == "py.warnings" and "old setting" in entries[1]["message"]


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
def test_the_sample_unit_is_one_systemd_accepts(tmp_path: Path) -> None:
    """docs/errmesh-relay.service, with ExecStart pointed at an executable that exists."""
    unit = (ROOT / "docs" / "errmesh-relay.service").read_text()
    assert "Type=notify" in unit and "Restart=on-failure" in unit
    fake = tmp_path / "errmesh"
    fake.write_text("#!/bin/sh\n")
    fake.chmod(0o755)
    copy = tmp_path / "errmesh-relay.service"
    copy.write_text(unit.replace("/usr/local/bin/errmesh", str(fake)))
    done = subprocess.run(
        ["systemd-analyze", "verify", str(copy)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0 and not done.stderr.strip(), done.stderr


def test_errmesh_imports_prometheus_client_only_for_a_relays_status_server() -> None:
    """The error paths, the relay and its service module load without it."""
    code = (
        "import sys\n"
        "import node.pipeline, node.embedded, node.error_path, node.relay, node.service\n"
        "assert 'prometheus_client' not in sys.modules, 'imported before a status server'\n"
        "import node.metrics\n"
        "assert 'prometheus_client' in sys.modules\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=ROOT
    )
    assert done.returncode == 0, done.stderr
