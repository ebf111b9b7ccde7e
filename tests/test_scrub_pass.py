"""The one-pass scrub of a report (mesh/scrub_pass.py) scrubs exactly what the
field-by-field path does, for reports mixing secrets, near-misses and noise."""

from __future__ import annotations

import re

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from secrets_corpus import SECRETS

from mesh.report import Cause, Frame, Leaf, Report
from mesh.scrub import Scrubber, ScrubRules
from mesh.scrub_pass import hinted

PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7VJTUt9Us8cKj"
#: Texts that trip a rule, or nearly do, or a hint without a secret.
SHAPES = [
    *(text for text, _ in SECRETS),
    *(text.split("\n")[0] for text, _ in SECRETS),
    PEM_BODY,
    PEM_BODY[:40] + "==",
    "-----END RSA PRIVATE KEY-----",
    "-----BEGIN PRIVATE KEY-----",
    "token count: 5",
    "password incorrect for user bob",
    "inside the keyboard handler",
    "--token",
    "--api-key=abc123def",
    "hunter2-but-longer",
    "/home/alice/project/app.py",
    "with\x00nul",
    "Bearer abcdefghij",
    "postgres://u:pw@db/x",
    "",
]
texts = st.one_of(st.sampled_from(SHAPES), st.text(max_size=30))
tuples = st.lists(texts, max_size=6).map(tuple)
keys = st.sampled_from(["cwd", "pid", "password", "apiToken", "pin_code", "note", "user.id"])
pairs = st.lists(st.tuples(keys | st.text(max_size=8), texts), max_size=4).map(tuple)
frames = st.builds(
    Frame,
    module=st.just("app"),
    function=st.just("f"),
    filename=texts,
    lineno=st.integers(1, 500),
    in_app=st.booleans(),
    line=texts,
    pre_context=st.lists(texts, max_size=5).map(tuple),
    context_line=texts,
    post_context=st.lists(texts, max_size=5).map(tuple),
)
frame_tuples = st.lists(frames, max_size=5).map(tuple)
reports = st.builds(
    Report,
    origin=st.just(b"o" * 16),
    seq=st.just(1),
    count=st.just(1),
    signature=st.just(b"s" * 16),
    kind=st.just("exception"),
    exc_type=st.just("ValueError"),
    message=texts,
    causes=st.lists(st.builds(Cause, type=st.just("KeyError"), message=texts), max_size=3).map(
        tuple
    ),
    frames=frame_tuples,
    log_tail=tuples,
    argv=tuples,
    facts=pairs,
    tags=pairs,
    contexts=pairs,
    environment=texts,
    release=texts,
    stdout_tail=tuples,
    leaves=st.lists(
        st.builds(Leaf, type=st.just("OSError"), message=texts, frames=frame_tuples), max_size=2
    ).map(tuple),
)


def bare(**fields: object) -> Report:
    """A report with only ``fields`` set besides its identity."""
    identity: dict[str, object] = {
        "origin": b"o" * 16,
        "seq": 1,
        "count": 1,
        "signature": b"s" * 16,
        "kind": "exception",
        "exc_type": "E",
        "message": "boom",
    }
    return Report(**{**identity, **fields})  # type: ignore[arg-type]


SCRUBBERS = [
    Scrubber(),
    Scrubber(
        ScrubRules(
            extra_keys=("pin_code",),
            secret_values=("hunter2-but-longer",),
            home="/home/alice",
        )
    ),
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(report=reports, which=st.sampled_from(range(len(SCRUBBERS))))
def test_the_one_pass_and_the_field_by_field_scrub_agree(report: Report, which: int) -> None:
    scrubber = SCRUBBERS[which]
    assert scrubber.report(report) == scrubber._report_by_field(report)


@given(st.lists(texts, min_size=1, max_size=12))
def test_hinted_marks_exactly_the_texts_the_prefilter_would_not_skip(items: list[str]) -> None:
    hint = Scrubber()._any_hint
    assert hint is not None
    marks = hinted(hint, items)
    if any("\x00" in t for t in items):
        assert marks is None
    else:
        assert marks == [hint.search(t.lower()) is not None for t in items]


def test_extra_patterns_take_the_field_by_field_path() -> None:
    scrubber = Scrubber(ScrubRules(extra_patterns=(r"tenant-\d{4}",)))
    report = bare(
        message="tenant-1234 failed",
    )
    assert scrubber.report(report).message == "[REDACTED] failed"


def test_a_secret_in_the_middle_of_a_clean_report_is_still_found() -> None:
    secret = "gh" + "p_" + "Xy12" * 9
    clean = Frame(module="m", function="f", filename="m.py", lineno=1, in_app=True, line="x = 1")
    leaky = Frame(
        module="m", function="g", filename="m.py", lineno=2, in_app=True, line=f"t = '{secret}'"
    )
    report = bare(
        message="boom",
        frames=(clean,) * 20 + (leaky,) + (clean,) * 20,
        log_tail=tuple(f"step {i}" for i in range(50)),
    )
    scrubbed = Scrubber().report(report)
    assert secret not in repr(scrubbed)
    assert scrubbed.frames[20].line == "t = '[REDACTED]'"
    assert scrubbed.frames[0] is clean  # untouched frames are kept as they are
    assert re.search("REDACTED", repr(scrubbed.frames[:20])) is None


def test_a_tail_or_window_that_starts_inside_a_key_is_redacted_without_any_hint() -> None:
    """The base64 run of a key whose BEGIN line was cut off holds no hint at all."""
    assert Scrubber()._any_hint.search(PEM_BODY.lower()) is None  # type: ignore[union-attr]
    window = Frame(
        module="m",
        function="f",
        filename="m.py",
        lineno=9,
        in_app=True,
        line="x = 1",
        pre_context=(PEM_BODY, PEM_BODY[:40]),
        context_line="x = 1",
    )
    report = bare(
        message="boom",
        frames=(window,),
        log_tail=(PEM_BODY, "abc", "next line"),
        stdout_tail=(PEM_BODY,),
    )
    for scrubber in SCRUBBERS:
        scrubbed = scrubber.report(report)
        assert scrubbed == scrubber._report_by_field(report)
        assert scrubbed.log_tail[0] == scrubbed.stdout_tail[0] == "[REDACTED]"
        assert scrubbed.frames[0].pre_context == ("[REDACTED]", "[REDACTED]")
