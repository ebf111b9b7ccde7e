"""The signature is the same for the same bug everywhere, and differs otherwise.

Real exceptions are raised here and turned into frames the way capture does
(module and function from the live frame), then "moved" to another machine:
another install path, shifted line numbers, and other library frames (as a
different Python patch version would give). Synthetic frame lists cover the
rules that real tracebacks make awkward (ten innermost frames, fallbacks).
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Callable, Sequence

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mesh.report import SIGNATURE_BYTES, Cause, Frame, Report
from mesh.signature import (
    DEFAULT_FINGERPRINT,
    MAX_FRAMES,
    MAX_MESSAGE_CHARS,
    command_signature,
    error_lines,
    exception_signature,
    normalise_message,
    report_signature,
)

# -- helpers ----------------------------------------------------------------


def raised(fn: Callable[[], object]) -> BaseException:
    """The exception ``fn`` raises (it must raise)."""
    try:
        fn()
    except BaseException as exc:
        return exc
    raise AssertionError("expected an exception")


def frames_of(exc: BaseException) -> tuple[Frame, ...]:
    """Frames as capture builds them: this test module is the app."""
    frames = []
    tb = exc.__traceback__
    while tb is not None:
        module = tb.tb_frame.f_globals.get("__name__", "")
        frames.append(
            Frame(
                module=module,
                function=tb.tb_frame.f_code.co_name,
                filename=tb.tb_frame.f_code.co_filename,
                lineno=tb.tb_lineno,
                in_app=module == __name__,
            )
        )
        tb = tb.tb_next
    return tuple(frames)


def on_other_machine(frames: Sequence[Frame]) -> tuple[Frame, ...]:
    """The same stack elsewhere: other paths, other line numbers, other stdlib."""
    moved = []
    for f in frames:
        moved.append(
            dataclasses.replace(
                f, filename="/opt/other/install/" + f.filename.lstrip("/"), lineno=f.lineno + 17
            )
        )
        if not f.in_app:  # another Python patch version: extra, renamed library frames
            moved.append(dataclasses.replace(f, function=f.function + "_impl", lineno=1))
    return tuple(moved)


def sig_of(exc: BaseException, frames: Sequence[Frame] | None = None, **kw: object) -> bytes:
    return exception_signature(
        exc_type=type(exc).__qualname__,
        message=str(exc),
        frames=frames_of(exc) if frames is None else frames,
        **kw,  # type: ignore[arg-type]
    )


def frame(module: str, function: str, *, in_app: bool = True, lineno: int = 1) -> Frame:
    return Frame(
        module=module, function=function, filename=f"{module}.py", lineno=lineno, in_app=in_app
    )


def stack(depth: int, *, prefix: str = "app") -> list[Frame]:
    """``depth`` in-app frames, outermost first."""
    return [frame(f"{prefix}.m{i}", f"f{i}") for i in range(depth)]


# -- the code under "test" raises through the stdlib (json) ----------------


def _reject_port(obj: dict[str, object]) -> dict[str, object]:
    raise ValueError(f"port {obj['port']} out of range for host '{obj['host']}'")


def load_settings(port: int) -> object:
    return json.loads(json.dumps({"port": port, "host": f"db{port}"}), object_hook=_reject_port)


def load_settings_elsewhere(port: int) -> object:
    return json.loads(json.dumps({"port": port, "host": "x"}), object_hook=_reject_port)


def open_config() -> None:
    raise KeyError("config")


def open_config_as_lookup() -> None:
    raise LookupError("config")


# -- same bug, same signature -----------------------------------------------


def test_same_bug_on_two_machines_gives_the_same_signature() -> None:
    here = raised(lambda: load_settings(70000))
    there = raised(lambda: load_settings(99999))  # other values in the message too

    assert any(not f.in_app for f in frames_of(here))  # json frames are library frames
    assert sig_of(here) == sig_of(there, on_other_machine(frames_of(there)))


def test_signature_is_sixteen_bytes() -> None:
    assert len(sig_of(raised(lambda: load_settings(1)))) == SIGNATURE_BYTES == 16


def test_line_numbers_and_file_names_never_count() -> None:
    a = [frame("app.db", "connect", lineno=10), frame("app.db", "query", lineno=20)]
    b = [dataclasses.replace(f, lineno=f.lineno * 7, filename="C:\\elsewhere\\x.py") for f in a]
    kw = {"exc_type": "OSError", "message": "boom"}
    assert exception_signature(frames=a, **kw) == exception_signature(frames=b, **kw)


@pytest.mark.parametrize(
    ("one", "other"),
    [
        ("user 12 not found", "user 98765 not found"),
        ("took 1.5s", "took 30.25s"),
        ("offset -3 invalid", "offset -400 invalid"),
        ("no such key 'alice'", 'no such key "bob"'),
        ("cannot open /home/alice/data.csv", "cannot open /srv/app/other.csv"),
        ("cannot open C:\\Users\\a\\x.txt", "cannot open ~/y.txt"),
        ("job 550e8400-e29b-41d4-a716-446655440000", "job 123e4567-e89b-12d3-a456-426614174000"),
        ("commit 9fceb02d0ae598e95dc970b74767f19372d61af8", "commit 0123456789abcdef0123"),
        ("object at 0x7f3a2b1c4d50", "object at 0x10ff"),
        ("connect 10.0.0.1:5432 refused", "connect 192.168.1.20 refused"),
        ("connect [::1]:8080 refused", "connect fe80::1ff:fe23:4567:890a refused"),
        ("at 2024-01-02T03:04:05.123Z", "at 2025-12-31 23:59:59"),
        ("GET https://api.example.com/v1/x?id=3 failed", "GET http://localhost:8000/ failed"),
        ("mail to bob@example.com bounced", "mail to alice.smith+x@corp.co.uk bounced"),
        ("worker_3  failed\n", "worker_12 failed"),
    ],
)
def test_variable_parts_of_the_message_do_not_matter(one: str, other: str) -> None:
    assert normalise_message(one) == normalise_message(other)
    frames = stack(2)
    assert exception_signature(exc_type="E", message=one, frames=frames) == exception_signature(
        exc_type="E", message=other, frames=frames
    )


# -- different bug, different signature --------------------------------------


def test_a_different_call_site_gives_a_different_signature() -> None:
    assert sig_of(raised(lambda: load_settings(1))) != sig_of(
        raised(lambda: load_settings_elsewhere(1))
    )


def test_a_different_exception_type_gives_a_different_signature() -> None:
    frames = stack(3)
    assert exception_signature(
        exc_type="KeyError", message="x", frames=frames
    ) != exception_signature(exc_type="LookupError", message="x", frames=frames)
    assert sig_of(raised(open_config)) != sig_of(raised(open_config_as_lookup))


def test_different_message_words_give_different_signatures() -> None:
    frames = stack(2)
    assert exception_signature(
        exc_type="E", message="disk full", frames=frames
    ) != exception_signature(exc_type="E", message="permission denied", frames=frames)


def test_cause_types_count_and_their_order_too() -> None:
    base = {"exc_type": "RuntimeError", "message": "x", "frames": stack(2)}
    plain = exception_signature(**base)  # type: ignore[arg-type]
    caused = exception_signature(**base, cause_types=["OSError"])  # type: ignore[arg-type]
    other = exception_signature(**base, cause_types=["KeyError"])  # type: ignore[arg-type]
    both = exception_signature(**base, cause_types=["OSError", "KeyError"])  # type: ignore[arg-type]
    swapped = exception_signature(**base, cause_types=["KeyError", "OSError"])  # type: ignore[arg-type]
    assert len({plain, caused, other, both, swapped}) == 5


def test_only_the_ten_innermost_frames_count() -> None:
    deep = stack(15)
    other_outer = [frame("elsewhere", "main")] * 5 + deep[5:]
    assert MAX_FRAMES == 10
    kw = {"exc_type": "RecursionError", "message": "too deep"}
    assert exception_signature(frames=deep, **kw) == exception_signature(frames=other_outer, **kw)

    tenth_innermost_changed = [*deep[:5], frame("app.x", "changed"), *deep[6:]]
    assert exception_signature(frames=deep, **kw) != exception_signature(
        frames=tenth_innermost_changed, **kw
    )


def test_frame_order_counts() -> None:
    kw = {"exc_type": "E", "message": "m"}
    frames = stack(3)
    assert exception_signature(frames=frames, **kw) != exception_signature(
        frames=frames[::-1], **kw
    )


def test_library_frames_count_only_when_no_frame_is_in_app() -> None:
    kw = {"exc_type": "E", "message": "m"}
    app = stack(2)
    lib_a = [frame("asyncio.base_events", "run_until_complete", in_app=False)]
    lib_b = [frame("asyncio.runners", "run", in_app=False)]
    assert exception_signature(frames=lib_a + app, **kw) == exception_signature(
        frames=lib_b + app, **kw
    )
    assert exception_signature(frames=lib_a, **kw) != exception_signature(frames=lib_b, **kw)
    assert exception_signature(frames=lib_a, **kw) != exception_signature(frames=[], **kw)


# -- fingerprint override ----------------------------------------------------


def _default_and(fingerprint: Sequence[str] | None, *, message: str = "m") -> tuple[bytes, bytes]:
    kw = {"exc_type": "E", "message": message, "frames": stack(2)}
    return (
        exception_signature(**kw),  # type: ignore[arg-type]
        exception_signature(**kw, fingerprint=fingerprint),  # type: ignore[arg-type]
    )


@pytest.mark.parametrize(
    "item", [DEFAULT_FINGERPRINT, "{{default}}", "{{  default }}", " {{ default}} "]
)
def test_default_alone_is_the_default_grouping(item: str) -> None:
    default, overridden = _default_and([item])
    assert overridden == default


def test_no_or_empty_fingerprint_is_the_default_grouping() -> None:
    assert _default_and(None)[1] == _default_and(None)[0]
    assert _default_and([])[1] == _default_and([])[0]


def test_a_literal_fingerprint_groups_different_errors_together() -> None:
    a = exception_signature(exc_type="A", message="a", frames=stack(1), fingerprint=["db-down"])
    b = exception_signature(exc_type="B", message="b", frames=[], fingerprint=["db-down"])
    c = exception_signature(exc_type="A", message="a", frames=stack(1), fingerprint=["db-slow"])
    assert a == b != c
    assert len(a) == SIGNATURE_BYTES


def test_default_plus_literal_splits_the_default_group() -> None:
    default, tenant_a = _default_and([DEFAULT_FINGERPRINT, "tenant-a"])
    _, tenant_b = _default_and(["{{default}}", "tenant-b"])
    _, other_default = _default_and([DEFAULT_FINGERPRINT, "tenant-a"], message="other words")
    assert len({default, tenant_a, tenant_b, other_default}) == 4


def test_fingerprint_items_are_taken_literally_otherwise() -> None:
    _, plain = _default_and(["{{ type }}"])
    _, other = _default_and(["{{ function }}"])
    assert plain != other


# -- commands -----------------------------------------------------------------

STDERR = [
    "compiling foo.c",
    "\x1b[31merror\x1b[0m: foo.c:12:5: undeclared identifier 'x'",
    "make: *** [Makefile:3: all] Error 1",
]


def cmd(
    program: str = "make", exit_code: int | None = 2, signal: int | None = None, **kw: object
) -> bytes:
    return command_signature(
        program=program,
        exit_code=exit_code,
        signal=signal,
        stderr_lines=kw.pop("stderr", STDERR),  # type: ignore[arg-type]
        **kw,  # type: ignore[arg-type]
    )


def test_same_command_failure_gives_the_same_signature() -> None:
    elsewhere = [
        "compiling foo.c and bar.c",
        "error: foo.c:99:1: undeclared identifier 'y'",
        "make: *** [Makefile:7: all] Error 1",
    ]
    assert cmd() == cmd(stderr=elsewhere)


@pytest.mark.parametrize(
    "program", ["/usr/bin/make", "make", "./make", "C:\\Tools\\make.exe", "make.EXE"]
)
def test_program_is_compared_by_base_name(program: str) -> None:
    assert cmd(program) == cmd("make")


def test_exit_code_and_signal_count() -> None:
    assert cmd(exit_code=2) != cmd(exit_code=1)
    assert cmd(exit_code=None, signal=9) != cmd(exit_code=None, signal=11)
    assert cmd(exit_code=None, signal=9) != cmd(exit_code=9)
    assert cmd(exit_code=-9) == cmd(exit_code=None, signal=9)  # subprocess's spelling


def test_different_program_or_error_lines_differ() -> None:
    assert cmd("make") != cmd("cmake")
    assert cmd() != cmd(stderr=["fatal: not a git repository"])


def test_command_fingerprint_override() -> None:
    assert cmd(fingerprint=["build"]) == cmd("ninja", exit_code=1, fingerprint=["build"])
    assert cmd(fingerprint=[DEFAULT_FINGERPRINT]) == cmd()


# -- error lines ------------------------------------------------------------


def test_error_lines_keeps_the_last_three_error_looking_lines_normalised() -> None:
    lines = [
        "ERROR first 1",
        "info: starting",
        "Exception in thread 7",
        "FATAL: disk /dev/sda1 full",
        "warning: deprecated",
        "request failed after 3 tries",
        "done.",
    ]
    assert error_lines(lines) == [
        "Exception in thread <n>",
        "FATAL: disk <path> full",
        "request failed after <n> tries",
    ]
    assert error_lines(lines, limit=1) == ["request failed after <n> tries"]


@pytest.mark.parametrize(
    "line",
    [
        "ValueError: bad",
        "mypkg.errors.ConfigError: missing key",
        "KeyboardInterrupt",
        "E   assert 1 == 2",
        "thread 'main' panicked at src/main.rs:2:5",
        "Segmentation fault (core dumped)",
        "permission denied",
        "Killed",
    ],
)
def test_error_looking_lines(line: str) -> None:
    assert error_lines(["just chatter", line, "more chatter"]) == [normalise_message(line)]


def test_error_lines_falls_back_to_the_last_non_blank_line() -> None:
    assert error_lines(["starting", "exiting with status 3", "   ", ""]) == [
        "exiting with status <n>"
    ]
    assert error_lines(["", "  \t"]) == []
    assert error_lines([]) == []
    assert error_lines(["error"], limit=0) == []


def test_error_lines_strips_colour_and_splits_embedded_newlines() -> None:
    assert error_lines(["\x1b[1;31mError\x1b[0m: x\nnext"]) == ["Error: x"]


def test_error_lines_match_normalise_message_of_the_raw_line() -> None:
    raw = "\x1b[31mERROR\x1b[0m 2024-01-01 12:00:00 job 42 failed"
    assert error_lines([raw]) == [normalise_message(raw)] == ["ERROR <ts> job <n> failed"]


# -- reports ------------------------------------------------------------------


def report(**changes: object) -> Report:
    base = Report(
        origin=b"o" * 16,
        seq=1,
        count=1,
        signature=b"",
        kind="exception",
        exc_type="app.errors.SyncError",
        message="sync of item 42 failed",
        causes=(Cause(type="OSError", message="disk full at /var/x"),),
        frames=tuple(stack(3)),
    )
    return base.replace(**changes)


def test_report_signature_of_an_exception() -> None:
    r = report()
    assert report_signature(r) == exception_signature(
        exc_type=r.exc_type, message=r.message, frames=r.frames, cause_types=["OSError"]
    )


def test_report_signature_ignores_what_varies_between_occurrences() -> None:
    a = report()
    b = report(
        origin=b"p" * 16,
        seq=9,
        count=5,
        message="sync of item 7 failed",
        causes=(Cause(type="OSError", message="other text", relation="context"),),
        host="other",
        timestamp=123.0,
        argv=("x",),
        log_tail=("noise",),
    )
    assert report_signature(a) == report_signature(b)
    assert report_signature(a) != report_signature(report(causes=()))


def test_report_signature_honours_the_reports_fingerprint() -> None:
    assert report_signature(report(fingerprint=("sync",))) == report_signature(
        report(exc_type="Other", fingerprint=("sync",))
    )
    assert report_signature(report(fingerprint=(DEFAULT_FINGERPRINT,))) == report_signature(
        report()
    )


def test_report_signature_of_a_command() -> None:
    r = report(
        kind="command",
        exc_type="make exited 2",
        argv=("/usr/bin/make", "-j4"),
        exit_code=2,
        log_tail=tuple(STDERR),
        frames=(),
        causes=(),
    )
    assert report_signature(r) == cmd("make", exit_code=2)
    without_argv = r.replace(argv=(), exc_type="make")
    assert report_signature(without_argv) == cmd("make", exit_code=2)


# -- normalisation ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "Connection to 10.0.0.1:5432 failed after 3 retries",
            "Connection to <ip> failed after <n> retries",
        ),
        ("see https://example.com/a?b=1 (docs).", "see <url> (docs)."),
        ("KeyError: 'user_id'", "KeyError: <str>"),
        ("don't stop, it's fine", "don't stop, it's fine"),
        ("file ./configure, ~/src and /etc/x.conf", "file <path>, <path> and <path>"),
        (
            "job-42 worker_7 v1.2.3 sha256 -5 1e-3 10ms",
            "job-<n> worker_<n> v1.2.3 sha256 <n> <n> <n>ms",
        ),
        ("Jan  5 12:00:01 host sshd[123]: Failed", "<ts> host sshd[<n>]: Failed"),
        ("object <Foo object at 0x7f00ab>", "object <Foo object at <addr>>"),
        ("  many\t\tspaces\nand lines  ", "many spaces and lines"),
        ("", ""),
    ],
)
def test_normalise_message_examples(text: str, expected: str) -> None:
    assert normalise_message(text) == expected


def test_normalise_message_caps_the_length() -> None:
    out = normalise_message("word " * 1000)
    assert len(out) == MAX_MESSAGE_CHARS
    assert normalise_message(out) == out


# Text drawn from the characters the rules care about finds edge cases that
# arbitrary unicode rarely does.
_PIECES = st.sampled_from(
    [*"0123456789abcdefxXZT:.-/\\@'\"<> _~[]+,eE\x1b\n", "://", "0x", "::", "Jan ", "http", "C:\\"]
)
_TRICKY = st.one_of(st.text(), st.lists(_PIECES, max_size=80).map("".join))


@given(_TRICKY)
def test_normalise_message_is_idempotent_and_total(text: str) -> None:
    once = normalise_message(text)
    assert normalise_message(once) == once
    assert len(once) <= MAX_MESSAGE_CHARS


@given(st.text(alphabet="0123456789abcdefxT:.-/@'\" <>_", min_size=480, max_size=900))
def test_normalise_message_is_idempotent_across_the_length_cap(text: str) -> None:
    once = normalise_message(text)
    assert normalise_message(once) == once


@pytest.mark.parametrize(
    "hostile",
    [
        "1" * 100_000,
        "a." * 50_000,
        "a-" * 50_000,
        "1:" * 50_000,
        "'" + "a" * 100_000,
        "a@" * 50_000,
        "a://" * 25_000,
        "::1:" * 25_000,
        "1.1.1." * 17_000,
        "Jan 1 " * 17_000,
        "_1" * 50_000,
        "a1.-/:@'\"0x" * 10_000,
    ],
    ids=lambda s: repr(s[:6]),
)
def test_normalise_message_is_fast_on_hostile_input(hostile: str) -> None:
    started = time.perf_counter()
    normalise_message(hostile)
    assert time.perf_counter() - started < 1.0


# -- signatures are total and deterministic -------------------------------------

_FRAMES = st.lists(
    st.builds(
        Frame,
        module=st.text(max_size=20),
        function=st.text(max_size=20),
        filename=st.text(max_size=20),
        lineno=st.integers(),
        in_app=st.booleans(),
        line=st.text(max_size=20),
    ),
    max_size=20,
)


@given(
    exc_type=st.text(),
    message=_TRICKY,
    frames=_FRAMES,
    causes=st.lists(st.text(), max_size=3),
    fingerprint=st.none() | st.lists(st.text() | st.just(DEFAULT_FINGERPRINT), max_size=3),
)
def test_exception_signature_is_total_and_deterministic(
    exc_type: str,
    message: str,
    frames: list[Frame],
    causes: list[str],
    fingerprint: list[str] | None,
) -> None:
    kw = {
        "exc_type": exc_type,
        "message": message,
        "frames": frames,
        "cause_types": causes,
        "fingerprint": fingerprint,
    }
    first = exception_signature(**kw)  # type: ignore[arg-type]
    assert len(first) == SIGNATURE_BYTES
    assert exception_signature(**kw) == first  # type: ignore[arg-type]


@given(
    program=st.text(),
    exit_code=st.none() | st.integers(),
    signal=st.none() | st.integers(),
    stderr=st.lists(_TRICKY, max_size=5),
)
def test_command_signature_is_total_and_deterministic(
    program: str, exit_code: int | None, signal: int | None, stderr: list[str]
) -> None:
    first = cmd(program, exit_code, signal, stderr=stderr)
    assert len(first) == SIGNATURE_BYTES
    assert cmd(program, exit_code, signal, stderr=stderr) == first
