"""No secret survives scrubbing, and ordinary text does.

The corpus (``secrets_corpus.SECRETS``) is scrubbed as plain text, in the
escaped forms logs produce (JSON, repr), inside every field of a report, and
embedded at random positions in random text. Properties: scrubbing never
raises, is idempotent and stays fast on hostile input.
"""

from __future__ import annotations

import json
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st
from secrets_corpus import SECRETS

from mesh.errors import LocalError
from mesh.report import Cause, Frame, Report
from mesh.scrub import REDACTED, Scrubber, ScrubRules, is_secret_name, secret_env_values

SCRUB = Scrubber()
CORPUS_IDS = [f"{i}-{text[:24]}" for i, (text, _) in enumerate(SECRETS)]


def leaks(secret: str, *texts: str) -> bool:
    """Whether ``secret`` (or its JSON-escaped form) appears in any of ``texts``."""
    escaped = json.dumps(secret)[1:-1]
    return any(secret in t or escaped in t for t in texts)


def report_full_of(text: str) -> Report:
    """A report carrying ``text`` in every field that is scrubbed."""
    return Report(
        origin=b"o" * 16,
        seq=1,
        count=1,
        signature=b"",
        kind="exception",
        exc_type="app.Error",
        message=text,
        causes=(Cause(type="OSError", message=text),),
        frames=(
            Frame(
                module="app.main",
                function="run",
                filename=text,
                lineno=3,
                in_app=True,
                line=text,
            ),
        ),
        log_tail=tuple(f"2024-05-01 12:00:00,000 INFO app: {text}".splitlines()),
        argv=("app", text),
        facts=(("context", text), ("cwd", "/srv/app")),
    )


def report_texts(r: Report) -> list[str]:
    return [
        r.message,
        *(c.message for c in r.causes),
        *(f.line for f in r.frames),
        *(f.filename for f in r.frames),
        *r.log_tail,
        *r.argv,
        *(v for _, v in r.facts),
    ]


# -- the corpus ---------------------------------------------------------------


def test_the_corpus_is_broad() -> None:
    assert len(SECRETS) >= 40
    for text, secret in SECRETS:
        assert secret in text


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=CORPUS_IDS)
def test_corpus_secret_is_scrubbed_from_text(text: str, secret: str) -> None:
    out = SCRUB.text(text)
    assert not leaks(secret, out)
    assert REDACTED in out


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=CORPUS_IDS)
def test_corpus_secret_is_scrubbed_from_escaped_forms(text: str, secret: str) -> None:
    """Logs and argv carry text JSON-encoded (once or twice) or as a repr."""
    for form in (json.dumps(text), json.dumps(json.dumps([text])), repr(text), f"case 3: {text}"):
        assert not leaks(secret, SCRUB.text(form)), form


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=CORPUS_IDS)
def test_corpus_secret_is_scrubbed_from_every_report_field(text: str, secret: str) -> None:
    scrubbed = SCRUB.report(report_full_of(text))
    assert not leaks(secret, *report_texts(scrubbed))
    assert SCRUB.report(scrubbed) == scrubbed


@pytest.mark.parametrize(("text", "secret"), SECRETS, ids=CORPUS_IDS)
def test_corpus_secret_is_scrubbed_from_a_log_tail_cut_anywhere(text: str, secret: str) -> None:
    """Log rings drop their oldest lines, even in the middle of a private key."""
    lines = [*f"INFO app: {text}".splitlines(), "next record"]
    for start in range(len(lines)):
        assert not leaks(secret, *SCRUB.lines(lines[start:]))


@given(
    entry=st.sampled_from(SECRETS),
    before=st.text(max_size=40),
    after=st.text(max_size=40),
)
def test_corpus_secret_is_scrubbed_wherever_it_is_embedded(
    entry: tuple[str, str], before: str, after: str
) -> None:
    text, secret = entry
    out = SCRUB.text(f"{before} {text}\n{after}")
    assert not leaks(secret, out)
    assert SCRUB.text(out) == out


# -- properties ---------------------------------------------------------------

_PIECES = st.sampled_from(
    [
        *"=:;,&'\"\\/@-_ \n\t[]{}",
        "password",
        "token",
        "Bearer ",
        "Authorization",
        "://",
        "u:p@",
        "ghp_",
        "a1B2" * 9,
        "AKIA",
        "Q7X2" * 4,
        "eyJhbGciOi",
        ".",
        "-----BEGIN PRIVATE KEY-----",
        "-----END PRIVATE KEY-----",
        "xoxb-",
        "--token",
        REDACTED,
        "[REDACTED",
        "/home/bob",
        "~",
    ]
)
_TRICKY = st.one_of(st.text(), st.lists(_PIECES, max_size=40).map("".join))
_HOSTILE_RULES = ScrubRules(
    extra_patterns=(r"myco_[a-z0-9]{8}", "RED", r"a\d+"),
    extra_keys=("my_field",),
    secret_values=("hunter2-long", "ACTED", "e"),
    home="/home/bob",
)


@given(_TRICKY)
def test_text_is_idempotent_and_never_raises(text: str) -> None:
    for scrubber in (SCRUB, Scrubber(_HOSTILE_RULES)):
        once = scrubber.text(text)
        assert scrubber.text(once) == once


@given(st.lists(_TRICKY, max_size=6))
def test_structured_scrubbing_is_idempotent_and_never_raises(items: list[str]) -> None:
    assert SCRUB.lines(SCRUB.lines(items)) == SCRUB.lines(items)
    assert SCRUB.argv(SCRUB.argv(items)) == SCRUB.argv(items)
    pairs = list(zip(items, reversed(items), strict=True))
    assert SCRUB.pairs(SCRUB.pairs(pairs)) == SCRUB.pairs(pairs)


def test_an_internal_failure_redacts_everything(monkeypatch: pytest.MonkeyPatch) -> None:
    scrubber = Scrubber()

    def broken(s: str) -> str:
        raise RuntimeError("bug in a rule")

    monkeypatch.setattr(scrubber, "_once", broken)
    assert scrubber.text("password=hunter2") == REDACTED
    # Every field holds something a rule could match, so every field reaches
    # the (broken) rules; a text with no rule's hint never needs them.
    r = scrubber.report(report_full_of("session token anything"))
    untouched = [t for t in report_texts(r) if t != REDACTED]
    assert all("token" not in t for t in untouched)
    assert untouched == ["app", "/srv/app"]  # argv[0] and the cwd fact: nothing to match


def test_a_failure_while_building_a_report_redacts_every_field(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    scrubber = Scrubber()

    def broken(seq: object) -> tuple[str, ...]:
        raise RuntimeError("bug")

    monkeypatch.setattr(scrubber, "lines", broken)
    r = scrubber.report(report_full_of("password=hunter2"))
    assert all(t == REDACTED for t in report_texts(r))
    assert r.exc_type == "app.Error"


@pytest.mark.parametrize(
    "hostile",
    [
        "a=" * 50_000,
        "password=" * 11_000,
        "-----BEGIN PRIVATE KEY-----" * 4_000,
        "-----END PRIVATE KEY-----" * 4_000,
        ("A" * 64 + "\n") * 1_500 + "-----END PRIVATE KEY-----",
        "a://u:p@" * 12_000,
        "eyJabcde." * 11_000,
        "bearer abcdefgh1 " * 6_000,
        '"' * 100_000,
        '\\"password\\": \\"' * 6_000,
        "a:" * 50_000,
        "/home/bob" * 11_000,
        "a=b;c:d,e'f\"g\\h--i " * 5_000,
        "x" * 100_000,
    ],
    ids=lambda s: repr(s[:8]),
)
def test_text_is_fast_on_hostile_input(hostile: str) -> None:
    scrubber = Scrubber(ScrubRules(home="/home/bob", secret_values=("hunter2-long",)))
    started = time.perf_counter()
    scrubber.text(hostile)
    assert time.perf_counter() - started < 2.0


# -- ordinary text survives -----------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "password incorrect for user bob",
        "token count: 5",
        "max_tokens: 4096",
        "Session expired, please log in again",
        "the bearer of bad news",
        "KeyError: 'password'",
        "password_min_length=8 token_type=bearer",
        "PWD=/srv/app PATH=/usr/bin:/bin HOME=/root",
        "GET https://example.com/items?page=2&sort=name -> 500",
        "connecting to postgres://db.internal:5432/app",
        'Traceback (most recent call last):\n  File "app/main.py", line 3, in <module>\n'
        "    main()\nValueError: invalid literal for int() with base 10: 'abc'",
        '{"user": "bob", "id": 42, "tags": ["a", "b"]}',
    ],
)
def test_ordinary_text_is_unchanged(text: str) -> None:
    assert SCRUB.text(text) == text


def test_labels_and_auth_schemes_are_kept() -> None:
    assert SCRUB.text("password=hunter2 next") == "password=[REDACTED] next"
    assert SCRUB.text('{"password": "hunter2"}') == '{"password": "[REDACTED]"}'
    assert SCRUB.text("Authorization: Basic dXNlcjpwdw==") == "Authorization: Basic [REDACTED]"
    assert SCRUB.text("postgres://app:pw@db/x") == "postgres://app:[REDACTED]@db/x"
    assert (
        SCRUB.text("https://hooks.slack.com/services/T0/B0/xyz")
        == "https://hooks.slack.com/services/[REDACTED]"
    )


def test_a_private_key_without_end_is_redacted_to_the_end() -> None:
    begin = "-" * 5 + "BEGIN RSA PRIVATE KEY" + "-" * 5
    assert SCRUB.text(f"loaded {begin}\nMIIEabc\nmore\nand more") == f"loaded {REDACTED}"
    assert SCRUB.lines([f"loaded {begin}", "MIIEabc", "anything", "at all"]) == (
        f"loaded {REDACTED}",
        REDACTED,
        REDACTED,
        REDACTED,
    )


# -- names --------------------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    [
        "GITHUB_TOKEN",
        "GH_TOKEN",
        "DB_PASSWORD",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_ACCESS_KEY_ID",
        "AWS_SESSION_TOKEN",
        "STRIPE_KEY",
        "API_KEY",
        "APIKEY",
        "apiKey",
        "x-api-key",
        "PRIVATE_KEY",
        "client_secret",
        "clientSecret",
        "DJANGO_SECRET_KEY",
        "credentials",
        "Authorization",
        "Proxy-Authorization",
        "BASIC_AUTH",
        "session",
        "SESSION_ID",
        "sessionid",
        "Set-Cookie",
        "SENTRY_DSN",
        "MYSQL_PWD",
        "PGPASSWORD",
        "passwd",
        "db.password",
        "--password",
    ],
)
def test_secret_names(name: str) -> None:
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name",
    [
        "PWD",
        "OLDPWD",
        "PATH",
        "HOME",
        "USER",
        "SSH_AUTH_SOCK",
        "XDG_SESSION_TYPE",
        "XDG_SESSION_DESKTOP",
        "DESKTOP_SESSION",
        "DBUS_SESSION_BUS_ADDRESS",
        "PASSWORD_STORE_DIR",
        "TOKEN_URL",
        "token_count",
        "max_tokens",
        "password_min_length",
        "KEY",
        "SORT_KEY",
        "PUBLIC_KEY",
        "primaryKey",
        "monkey",
        "author",
        "bypass",
        "password-stdin",
        "",
    ],
)
def test_names_that_are_not_secret(name: str) -> None:
    assert not is_secret_name(name)


def test_secret_env_values_keeps_long_values_of_secret_names_longest_first() -> None:
    env = {
        "GITHUB_TOKEN": "ghp_short_but_ok",
        "DB_PASSWORD": "hunter2-longer-one",
        "API_KEY": "1",  # too short to redact everywhere
        "AUTH": "true",
        "PWD": "/srv/app/long/path",
        "HOME": "/home/bob",
        "OTHER_PASSWORD": "hunter2-longer-one",
    }
    assert secret_env_values(env) == ("hunter2-longer-one", "ghp_short_but_ok")
    assert secret_env_values(env, min_length=1) == (
        "hunter2-longer-one",
        "ghp_short_but_ok",
        "true",
        "1",
    )


# -- configuration ------------------------------------------------------------


def test_secret_values_are_redacted_wherever_they_appear() -> None:
    scrubber = Scrubber(ScrubRules(secret_values=("s3cr3t-value", "  padded-secret\n")))
    assert scrubber.text("got s3cr3t-value,s3cr3t-values") == "got [REDACTED],[REDACTED]s"
    assert scrubber.text("x padded-secret y") == "x [REDACTED] y"


def test_extra_patterns_redact_the_whole_match() -> None:
    scrubber = Scrubber(ScrubRules(extra_patterns=(r"myco_[a-z0-9]{8}", r"ticket-\d+")))
    assert scrubber.text("key myco_ab12cd34 for ticket-991") == f"key {REDACTED} for {REDACTED}"


def test_an_invalid_extra_pattern_is_a_local_error_naming_it() -> None:
    with pytest.raises(LocalError, match=r"invalid scrub pattern '\(unclosed'"):
        Scrubber(ScrubRules(extra_patterns=("ok", "(unclosed")))


def test_extra_keys_are_secret_too() -> None:
    scrubber = Scrubber(ScrubRules(extra_keys=("tenant_pin", "X-Internal")))
    assert scrubber.text("tenant-pin=4242 x-internal: abc") == (
        "tenant-pin=[REDACTED] x-internal: [REDACTED]"
    )
    assert scrubber.pairs([("TENANT_PIN", "4242")]) == (("TENANT_PIN", REDACTED),)
    assert scrubber.argv(["app", "--tenant-pin", "4242"]) == ("app", "--tenant-pin", REDACTED)
    assert SCRUB.text("tenant-pin=4242") == "tenant-pin=4242"


def test_home_directory_becomes_a_tilde() -> None:
    scrubber = Scrubber(ScrubRules(home="/home/bob/"))
    assert scrubber.text('File "/home/bob/app/x.py", line 3') == 'File "~/app/x.py", line 3'
    assert scrubber.text("cwd=/home/bob") == "cwd=~"
    assert scrubber.text("/home/bobby/x and /srv/home/bob2") == "/home/bobby/x and /srv/home/bob2"


def test_windows_home_is_matched_without_regard_to_case() -> None:
    scrubber = Scrubber(ScrubRules(home="C:\\Users\\Bob"))
    assert scrubber.text("at c:\\users\\bob\\app\\x.py") == "at ~\\app\\x.py"


@pytest.mark.parametrize("home", ["/", "", "~", None])
def test_a_useless_home_is_ignored(home: str | None) -> None:
    assert Scrubber(ScrubRules(home=home)).text("/usr/bin/x") == "/usr/bin/x"


# -- argv and pairs ------------------------------------------------------------


def test_argv_redacts_values_of_secret_long_flags() -> None:
    argv = [
        "deploy",
        "--token",
        "abc",
        "--api-key=xyz",
        "-password",
        "pw1",
        "--verbose",
        "https://bob:pw2@example.com/x",
        "--password-file",
        "/run/secrets/db",
    ]
    assert SCRUB.argv(argv) == (
        "deploy",
        "--token",
        REDACTED,
        f"--api-key={REDACTED}",
        "-password",
        REDACTED,
        "--verbose",
        f"https://bob:{REDACTED}@example.com/x",
        "--password-file",
        "/run/secrets/db",
    )


def test_argv_leaves_short_flags_alone() -> None:
    assert SCRUB.argv(["mysql", "-p", "notredacted"]) == ("mysql", "-p", "notredacted")


def test_a_secret_flag_as_last_argument_is_fine() -> None:
    assert SCRUB.argv(["app", "--token"]) == ("app", "--token")


def test_pairs_redact_secret_keys_and_scrub_other_values() -> None:
    token = "gh" + "p_" + "Zz9" * 12
    assert SCRUB.pairs([("GITHUB_TOKEN", "anything"), ("note", f"used {token}"), ("n", "5")]) == (
        ("GITHUB_TOKEN", REDACTED),
        ("note", f"used {REDACTED}"),
        ("n", "5"),
    )


def test_report_keeps_types_and_call_path() -> None:
    r = report_full_of("password=hunter2")
    scrubbed = SCRUB.report(r)
    assert scrubbed.exc_type == r.exc_type
    assert [(f.module, f.function, f.lineno) for f in scrubbed.frames] == [("app.main", "run", 3)]
    assert scrubbed.causes[0].type == "OSError"
    assert scrubbed.facts[1] == ("cwd", "/srv/app")


# --- the literal prefilters must never hide a match --------------------------


def test_every_secret_name_part_contains_a_pair_hint() -> None:
    from mesh.scrub_patterns import PAIR_HINTS
    from mesh.secret_names import SECRET_ENDINGS, SECRET_PARTS, WEAK_PARTS

    for part in (*SECRET_PARTS, *SECRET_ENDINGS, *WEAK_PARTS, "key", "keys"):
        assert any(hint in part for hint in PAIR_HINTS), part


@given(st.text(alphabet=st.characters(codec="ascii"), max_size=40))
def test_a_secret_name_always_contains_a_pair_hint(name: str) -> None:
    from mesh.scrub_patterns import PAIR_HINTS
    from mesh.secret_names import is_secret_name

    if is_secret_name(name):
        assert any(hint in name.lower() for hint in PAIR_HINTS)


@given(
    st.text(max_size=60),
    st.sampled_from([text for text, _ in SECRETS]),
    st.text(max_size=60),
)
def test_the_token_hint_finds_every_token_the_rule_finds(
    before: str, middle: str, after: str
) -> None:
    from mesh.scrub_patterns import _TOKEN_HINT, _TOKENS

    text = before + middle + after
    if _TOKENS.search(text):
        assert _TOKEN_HINT.search(text)


def test_extra_keys_are_hints_in_any_spelling() -> None:
    scrubber = Scrubber(ScrubRules(extra_keys=("otp_code",)))
    for text in ("otpCode=123456", "OTP-CODE: 123456", '"otp_code": "123456"'):
        assert "123456" not in scrubber.text(text), text


@given(st.text(max_size=40), st.sampled_from([text for text, _ in SECRETS]))
def test_the_fast_path_hints_cover_the_token_hint(noise: str, secret_text: str) -> None:
    from mesh.scrub_patterns import _TOKEN_HINT, _TOKEN_HINT_LITERALS

    for text in (noise, secret_text, noise + secret_text):
        if _TOKEN_HINT.search(text):
            assert any(literal in text.lower() for literal in _TOKEN_HINT_LITERALS)
