"""Secrets never leave the process: scrub every report before it is spooled.

Issues may be public and reports travel to every peer, so the reporting
process removes secrets before anything is written (DESIGN.md section 9).
Like sentry-python's ``scrubber.py`` this is on by default with a deny list;
unlike it, it also recognises secrets by their shape, because error messages
and log lines carry secrets in free text, not only in named fields.

Theory of operation
-------------------
:meth:`Scrubber.text` applies these rules in order, each replacing what it
finds with :data:`REDACTED`:

====================  ====================================================
configured values     ``ScrubRules.secret_values`` (e.g. the values of
                      secret-named environment variables), literally
extra patterns        ``ScrubRules.extra_patterns``: the whole match
PEM private keys      ``-----BEGIN ... PRIVATE KEY-----`` to its END line,
                      or to the end of the text when there is none; an END
                      line without its BEGIN takes the base64 before it
Slack webhooks        ``https://hooks.slack.com/services/[REDACTED]``
token shapes          GitHub (``ghp_`` ``gho_`` ``ghu_`` ``ghs_`` ``ghr_``
                      ``github_pat_``), GitLab, AWS access key ids, Slack
                      (``xox?-``, ``xapp-``), JWTs, Stripe, Google, npm,
                      PyPI, OpenAI/Anthropic-style ``sk-`` keys
AWS secret keys       40 base64 characters labelled ``aws_secret_access_key``
URL passwords         ``scheme://user:[REDACTED]@host``
bearer tokens         ``Bearer [REDACTED]``
secret-named pairs    ``key=v``, ``key: v``, ``"key": "v"``, ``'key': 'v'``,
                      ``--key v`` where :func:`is_secret_name` (or
                      ``ScrubRules.extra_keys``) says the key is secret;
                      an auth scheme before the value is kept
                      (``Authorization: Bearer [REDACTED]``)
home directory        ``ScrubRules.home`` becomes ``~``
====================  ====================================================

Configured values and extra patterns run first so that a known secret is
removed whole before a generic rule could take only part of it; they are
applied between existing ``[REDACTED]`` markers, never across them.

Contract
--------
* **Never raises.** An internal failure redacts the whole string (or every
  scrubbed field of a report): failing closed, never returning input that
  was not scrubbed.
* **Idempotent.** ``text`` repeats its rules until the text stops changing
  (the second pass normally changes nothing); if it has not settled after a
  few passes the whole string is redacted, which is itself a fixed point.
  So ``text(text(x)) == text(x)`` holds by construction.
* **Linear-ish time.** Patterns start only at word boundaries, repetition is
  bounded where a scan could restart often, and key names are captured
  "atomically" (lookahead plus back-reference) so they never backtrack.
* **Ordinary text survives.** Rules key on shapes and names, not on entropy:
  ``password incorrect for user bob`` and ``token count: 5`` are unchanged.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import lru_cache

from mesh.errors import LocalError

TYPE_CHECKING = False
if TYPE_CHECKING:  # the hand-over path imports this module: no typing, no dataclasses
    from typing import Final

    from mesh.report import Frame, Report

__all__ = [
    "REDACTED",
    "ScrubRules",
    "Scrubber",
    "is_secret_name",
    "process_scrubber",
    "secret_env_values",
]

#: What every secret is replaced with.
REDACTED: Final = "[REDACTED]"

# --------------------------------------------------------------------------
# Secret names
# --------------------------------------------------------------------------

#: A name holding one of these parts is secret (``DB_PASSWORD``, ``apiToken``).
SECRET_PARTS: Final = frozenset(
    {
        "password", "passwords", "passwd", "passphrase", "passcode",
        "secret", "secrets", "token", "apikey", "accesskey", "secretkey",
        "privatekey", "credential", "credentials", "creds", "cred",
        "authorization", "cookie", "cookies", "dsn",
        "sessionid", "sessid", "phpsessid", "jsessionid",
    }
)  # fmt: skip

#: A single part ending with one of these is secret too (``PGPASSWORD``).
SECRET_ENDINGS: Final = (
    "password", "passwd", "secret", "token", "apikey", "accesskey",
    "secretkey", "privatekey", "credentials", "sessionid",
)  # fmt: skip

#: Weaker words: secret only as the last part, or followed only by
#: :data:`WEAK_FOLLOWERS` (``BASIC_AUTH``, ``SESSION_ID`` but not
#: ``SSH_AUTH_SOCK`` or ``XDG_SESSION_DESKTOP``).
WEAK_PARTS: Final = frozenset(
    {"auth", "session", "pass", "pwd", "bearer", "jwt", "csrf", "xsrf", "sid"}
)
WEAK_FOLLOWERS: Final = frozenset(
    {
        "id", "key", "keys", "token", "secret", "header", "value", "string",
        "str", "data", "cookie", "hash", "b64", "base64", "hex", "raw",
    }
)  # fmt: skip

#: ``*_KEY`` is secret unless the part before ``KEY`` says what kind of
#: (non-secret) key it is; ``KEY`` alone is not secret.
NON_SECRET_KEY_KINDS: Final = frozenset(
    {
        "sort", "primary", "foreign", "cache", "partition", "dict", "map",
        "hash", "lookup", "group", "routing", "idempotency", "public", "pub",
        "registry", "index", "unique", "row", "column", "composite", "shard",
        "object", "s3", "bucket", "file", "image", "metric", "config",
        "setting", "settings", "translation", "i18n", "message", "form",
        "field", "json", "table", "record", "item", "entry", "cursor", "page",
        "event", "queue", "topic", "stream", "rate", "dedup", "dedupe",
        "search", "query", "param", "option", "meta", "metadata", "label",
        "tag", "name", "id", "hot", "short", "sub", "parent", "child", "next",
        "prev", "first", "last", "redis", "kv", "lock", "idem",
    }
)  # fmt: skip

#: A name whose last part is one of these describes a secret without being
#: one (``PASSWORD_MIN_LENGTH``, ``TOKEN_URL``, ``SSH_AUTH_SOCK``).
NON_SECRET_SUFFIXES: Final = frozenset(
    {
        "count", "counts", "len", "length", "size", "limit", "max", "min",
        "timeout", "ttl", "type", "types", "file", "path", "dir", "directory",
        "url", "uri", "endpoint", "host", "hostname", "port", "name", "names",
        "user", "username", "sock", "socket", "method", "mode", "enabled",
        "disabled", "required", "expiry", "expires", "expiration", "policy",
        "provider", "domain", "realm", "scope", "scopes", "version", "format",
        "algorithm", "alg", "prompt", "hint", "field", "label", "env", "var",
        "stdin", "rate", "secure", "httponly", "samesite", "age", "arn",
        "location", "store", "manager", "class", "desktop", "bus", "address",
    }
)  # fmt: skip

#: Whole names that look secret but are not (``PWD`` is the working directory).
NOT_SECRET_NAMES: Final = frozenset({"pwd", "oldpwd", "desktopsession"})

_NAME_CHUNKS: Final = re.compile(r"[A-Za-z0-9]+")
_CAMEL_PARTS: Final = re.compile(r"[A-Z]+(?=[A-Z][a-z])|[A-Z]?[a-z]+|[A-Z]+|[0-9]+")


def _name_parts(name: str) -> list[str]:
    return [
        part.lower() for chunk in _NAME_CHUNKS.findall(name) for part in _CAMEL_PARTS.findall(chunk)
    ]


@lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a variable, field, header or flag called ``name`` holds a secret.

    Case-insensitive; the name is split on ``_ - .``, other punctuation and
    camelCase, and its parts are checked against the tables above. ``PWD``,
    ``OLDPWD``, ``PATH`` and ``HOME`` are not secret; ``GITHUB_TOKEN``,
    ``DB_PASSWORD``, ``AWS_SECRET_ACCESS_KEY`` and ``STRIPE_KEY`` are.
    Never raises.
    """
    parts = _name_parts(name)
    if not parts or "".join(parts) in NOT_SECRET_NAMES:
        return False
    if len(parts) > 1 and parts[-1] in NON_SECRET_SUFFIXES:
        return False
    for i, part in enumerate(parts):
        if part in SECRET_PARTS or part.endswith(SECRET_ENDINGS):
            return True
        if part in WEAK_PARTS and all(
            later in WEAK_FOLLOWERS or later.isdigit() for later in parts[i + 1 :]
        ):
            return True
        if part in ("key", "keys") and i > 0 and parts[i - 1] not in NON_SECRET_KEY_KINDS:
            return True
    return False


def secret_env_values(environ: Mapping[str, str], min_length: int = 6) -> tuple[str, ...]:
    """The values of ``environ``'s secret-named variables, worth redacting anywhere.

    Values shorter than ``min_length`` (after stripping) are left out: a
    ``"1"`` or ``"true"`` redacted everywhere would mangle every message.
    Longest first, without duplicates. Never raises.
    """
    found = {
        value
        for name, value in environ.items()
        if is_secret_name(name) and len(value.strip()) >= min_length
    }
    return tuple(sorted(found, key=lambda v: (-len(v), v)))


# --------------------------------------------------------------------------
# Rules recognised by shape
# --------------------------------------------------------------------------

_PEM_LABEL = r"-----(?:BEGIN|END)[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
_PEM_BLOCK: Final = re.compile(
    r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----"
    r"(?s:.*?)(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)"
)
_PEM_BEGIN: Final = re.compile(r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")
_PEM_END: Final = re.compile(r"-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----")
#: What a PEM body is made of, line breaks (real or escaped) included.
_PEM_BODY_CHARS: Final = frozenset(
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/= \t\r\n\\"
)
_PEM_BODY_LINE: Final = re.compile(r"\s*[A-Za-z0-9+/=]+\s*")
#: A log tail that starts with such a line starts inside a key (its BEGIN was cut).
_PEM_BODY_FIRST_LINE: Final = re.compile(r"\s*[A-Za-z0-9+/]{40,}={0,2}\s*")

#: Tokens recognised by their shape alone; the whole match is redacted.
TOKEN_PATTERNS: Final[tuple[tuple[str, str], ...]] = (
    ("github", r"(?<![A-Za-z0-9_])(?:gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{22,})"),
    ("gitlab", r"(?<![A-Za-z0-9_-])glpat-[A-Za-z0-9_-]{20,}"),
    (
        "aws-access-key-id",
        r"(?<![A-Z0-9])(?:AKIA|ASIA|AGPA|AIDA|AROA|AIPA|ANPA|ANVA|ABIA|ACCA|A3T[A-Z0-9])"
        r"[A-Z0-9]{16}(?![A-Z0-9])",
    ),
    ("slack", r"(?<![A-Za-z0-9])(?:xox[abprs]|xapp)-[A-Za-z0-9-]{10,}"),
    ("jwt", r"(?<![A-Za-z0-9_-])eyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
    ("stripe", r"(?<![A-Za-z0-9_])(?:sk|rk)_(?:live|test)_[A-Za-z0-9]{16,}"),
    ("google", r"(?<![A-Za-z0-9_-])AIza[0-9A-Za-z_-]{35}"),
    ("npm", r"(?<![A-Za-z0-9_])npm_[A-Za-z0-9]{36,}"),
    ("pypi", r"(?<![A-Za-z0-9_-])pypi-AgE[A-Za-z0-9_-]{50,}"),
    ("sk", r"(?<![A-Za-z0-9_-])sk-(?:proj-|ant-(?:api\d\d-)?)?[A-Za-z0-9_-]{32,}"),
)
_TOKENS: Final = re.compile("|".join(f"(?:{pattern})" for _, pattern in TOKEN_PATTERNS))
_SLACK_WEBHOOK: Final = re.compile(
    r"(?P<keep>https?://hooks\.slack\.com/(?:services|workflows|triggers)/)[A-Za-z0-9/_-]+"
)
_AWS_SECRET: Final = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9])(?i:aws[_-]?secret[_-]?(?:access[_-]?)?key|secret[_-]?access[_-]?key)"
    r"""["']?[ \t]{0,8}[:=,]?[ \t]{0,8}["']?)[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+])"""
)
_URL_PASSWORD: Final = re.compile(
    r"""(?P<keep>(?<![A-Za-z0-9+.\-])[A-Za-z][A-Za-z0-9+.\-]{0,30}://[^\s:/@?#'"]*:)"""
    r"""[^\s/?#'"]+(?=@)"""
)
_BEARER: Final = re.compile(
    r"(?P<keep>(?<![A-Za-z0-9_-])(?i:bearer)[ \t]+)(?P<token>[A-Za-z0-9\-._~+/]{8,}=*)"
)

# Secret-named pairs. The key is captured atomically (lookahead capture plus
# back-reference): a shorter key could never be followed by a separator.
_KEY_CHARS = r"[\w.\-]"
_PAIR: Final = re.compile(
    rf"(?<!{_KEY_CHARS})(?:"
    rf"""(?:\\*["'])?(?=(?P<key>-{{0,2}}[A-Za-z_]{_KEY_CHARS}*))(?P=key)"""
    r"""(?:\\*["'])?[ \t]*(?:[:!=]?=|=>|:)[ \t]*"""
    rf"|(?=(?P<flag>--[A-Za-z]{_KEY_CHARS}*))(?P=flag)[ \t]+(?=[^\s\-])"
    r")"
)
_AUTH_SCHEME = r"(?P<scheme>(?i:bearer|basic|token|digest|negotiate|ntlm)[ \t]+)?"
_VALUE: Final = re.compile(
    _AUTH_SCHEME + r"""(?P<value>"(?:[^"\\\n]|\\.)*"?|'(?:[^'\\\n]|\\.)*'?"""
    r"""|\\+"[^"\n]*"?|\\+'[^'\n]*'?|(?:[^\s,;&'"\\]|\\.)+)"""
)
_REST_OF_LINE: Final = re.compile(_AUTH_SCHEME + r"(?P<value>[^\r\n]+)")

_MAX_PASSES: Final = 4


def _kept(match: re.Match[str]) -> str:
    return match.group("keep") + REDACTED


def _redact_bearer(match: re.Match[str]) -> str:
    token = match.group("token")
    if token.isalpha() and token.islower():  # "bearer instrument": prose, not a token
        return match.group(0)
    return match.group("keep") + REDACTED


def _redact_orphan_pem_ends(text: str) -> str:
    """Redact the base64 before an END line whose BEGIN is gone (a cut log)."""
    out: list[str] = []
    last = 0
    for match in _PEM_END.finditer(text):
        start = match.start()
        while start > last and text[start - 1] in _PEM_BODY_CHARS:
            start -= 1
        out.append(text[last:start])
        out.append(REDACTED)
        last = match.end()
    out.append(text[last:])
    return "".join(out)


def _quoted(value: str) -> str:
    """``value`` redacted, its quotes (plain or backslash-escaped) kept."""
    body = value.lstrip("\\")
    opening = value[: len(value) - len(body) + 1]
    quote = body[:1]
    if quote not in ("'", '"'):
        return REDACTED
    inner = body[1:]
    if not inner.endswith(quote):
        return opening + REDACTED
    inner = inner[:-1]
    escapes = inner[len(inner.rstrip("\\")) :]
    return opening + REDACTED + escapes + quote


#: Literal starts of every TOKEN_PATTERNS alternative, without the leading
#: lookbehinds that keep ``_TOKENS`` from using SRE's fast literal scan: a
#: text this does not find cannot hold a token, so ``_TOKENS`` is skipped.
_TOKEN_HINT_LITERALS: Final = (
    "gh", "github_pat_", "glpat-", "akia", "asia", "agpa", "aida", "aroa", "aipa", "anpa",
    "anva", "abia", "acca", "a3t", "xox", "xapp-", "eyj", "sk_", "rk_", "aiza", "npm_",
    "pypi-", "sk-",
)  # fmt: skip
_TOKEN_HINT: Final = re.compile(
    r"gh[pousr]_|github_pat_|glpat-|A(?:KIA|SIA|GPA|IDA|ROA|IPA|NPA|NVA|BIA|CCA|3T)"
    r"|xox[abprs]-|xapp-|eyJ|[sr]k_(?:live|test)_|AIza|npm_|pypi-AgE|sk-"
)

#: Lower-case substrings that every secret-named key contains (each entry of
#: SECRET_PARTS, SECRET_ENDINGS, WEAK_PARTS and ``key``/``keys`` contains one
#: of them); a text with none of them has no secret-named pair to redact.
PAIR_HINTS: Final = (
    "pass", "secret", "token", "key", "cred", "auth", "cookie", "dsn", "sess",
    "sid", "pwd", "bearer", "jwt", "csrf", "xsrf",
)  # fmt: skip


#: The rules that need no configuration, in order: (name, function). Each
#: runs only when a cheap literal test says it could match (the tests pin
#: the hints to the patterns): scrubbing is on every error path.
SHAPE_RULES: Final[tuple[tuple[str, Callable[[str], str]], ...]] = (
    ("pem", lambda s: _PEM_BLOCK.sub(REDACTED, s) if "PRIVATE KEY" in s else s),
    ("pem-orphan-end", lambda s: _redact_orphan_pem_ends(s) if "PRIVATE KEY" in s else s),
    (
        "slack-webhook",
        lambda s: _SLACK_WEBHOOK.sub(_kept, s) if "hooks.slack.com/" in s else s,
    ),
    ("tokens", lambda s: _TOKENS.sub(REDACTED, s) if _TOKEN_HINT.search(s) else s),
    (
        "aws-secret",
        lambda s: _AWS_SECRET.sub(_kept, s) if "secret" in s.lower() else s,
    ),
    ("url-password", lambda s: _URL_PASSWORD.sub(_kept, s) if "://" in s else s),
    ("bearer", lambda s: _BEARER.sub(_redact_bearer, s) if "bearer" in s.lower() else s),
)


def _compact(name: str) -> str:
    return "".join(_name_parts(name))


# --------------------------------------------------------------------------
# Configuration and the scrubber
# --------------------------------------------------------------------------


class ScrubRules:
    """What to scrub besides the built-in rules; built once from configuration.

    ``extra_patterns`` are regular expressions whose whole match is redacted;
    ``extra_keys`` are more secret key names (matched like built-in names,
    ignoring case and separators); ``secret_values`` are redacted literally
    wherever they appear (see :func:`secret_env_values`); ``home`` is the
    user's home directory, shown as ``~``.

    A frozen value like a dataclass, written out because a failing process
    on its way to a local relay must not pay for importing ``dataclasses``
    (node/handover.py).
    """

    __slots__ = ("extra_keys", "extra_patterns", "home", "secret_values")

    extra_patterns: tuple[str, ...]
    extra_keys: tuple[str, ...]
    secret_values: tuple[str, ...]
    home: str | None

    def __init__(
        self,
        *,
        extra_patterns: tuple[str, ...] = (),
        extra_keys: tuple[str, ...] = (),
        secret_values: tuple[str, ...] = (),
        home: str | None = None,
    ) -> None:
        for name, value in (
            ("extra_patterns", extra_patterns),
            ("extra_keys", extra_keys),
            ("secret_values", secret_values),
            ("home", home),
        ):
            object.__setattr__(self, name, value)

    def _astuple(self) -> tuple[object, ...]:
        return (self.extra_patterns, self.extra_keys, self.secret_values, self.home)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError(f"ScrubRules is frozen: cannot set {name!r}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ScrubRules):
            return NotImplemented
        return self._astuple() == other._astuple()

    def __hash__(self) -> int:
        return hash(self._astuple())

    def __repr__(self) -> str:
        return (
            f"ScrubRules(extra_patterns={self.extra_patterns!r}, extra_keys={self.extra_keys!r}, "
            f"secret_values=({len(self.secret_values)} values), home={self.home!r})"
        )


_DEFAULT_RULES: Final = ScrubRules()


def _home_pattern(home: str | None) -> re.Pattern[str] | None:
    if home is None:
        return None
    home = home.strip().rstrip("/\\")
    if len(home) < 2 or not any(sep in home for sep in "/\\"):
        return None
    windows = "\\" in home or home[1:2] == ":"
    return re.compile(
        rf"(?<![\w.\-~]){re.escape(home)}(?![\w.\-])", re.IGNORECASE if windows else 0
    )


class Scrubber:
    """Removes secrets from text, argv, key/value pairs and whole reports.

    Pure: compiles its rules once in ``__init__``, does no IO. Raises
    :class:`~mesh.errors.LocalError` naming the pattern when an extra pattern
    is not a valid regular expression; its methods never raise.
    """

    def __init__(self, rules: ScrubRules = _DEFAULT_RULES) -> None:
        self.rules = rules
        compiled: list[re.Pattern[str]] = []
        for pattern in rules.extra_patterns:
            try:
                compiled.append(re.compile(pattern))
            except (re.error, TypeError, ValueError) as exc:
                raise LocalError(f"invalid scrub pattern {pattern!r}: {exc}") from exc
        self._extra = tuple(compiled)
        values = {v for raw in rules.secret_values for v in (raw, raw.strip()) if v.strip()}
        self._values = (
            re.compile("|".join(re.escape(v) for v in sorted(values, key=len, reverse=True)))
            if values
            else None
        )
        self._extra_keys = frozenset(k for k in map(_compact, rules.extra_keys) if k)
        # Every part of an extra key is a hint: its compact form may be
        # written with separators or in camelCase in the text.
        extra_hints = {part for key in rules.extra_keys for part in _name_parts(key)}
        hints = PAIR_HINTS + tuple(sorted(extra_hints - set(PAIR_HINTS)))
        self._pair_hint = re.compile("|".join(re.escape(h) for h in hints))
        self._home = _home_pattern(rules.home)
        self._home_hint = (rules.home or "").strip().rstrip("/\\").lower()
        # One case-insensitive search for the hint of every rule: a text it
        # does not find is returned as it is. Extra patterns are arbitrary,
        # so with any configured every text takes the full path.
        any_hints = {
            *(h.lower() for h in _TOKEN_HINT_LITERALS),
            "private key", "hooks.slack.com/", "secret", "://", "bearer",
            *PAIR_HINTS, *extra_hints,
            *(v.lower() for v in values),
        }  # fmt: skip
        if self._home_hint:
            any_hints.add(self._home_hint)
        self._any_hint = (
            None
            if self._extra
            else re.compile(
                "|".join(re.escape(h) for h in sorted(any_hints, key=len, reverse=True))
            )
        )

    # -- the predicate shared by text, argv and pairs -----------------------

    def is_secret_key(self, name: str) -> bool:
        """Whether ``name`` is secret by :func:`is_secret_name` or ``extra_keys``."""
        if is_secret_name(name):
            return True
        if not self._extra_keys:
            return False
        last = re.split(r"[.:/]", name)[-1]
        return _compact(name) in self._extra_keys or _compact(last) in self._extra_keys

    # -- text --------------------------------------------------------------

    def text(self, s: str) -> str:
        """``s`` without secrets. Idempotent; never raises (fails closed)."""
        try:
            if self._any_hint is not None and not self._any_hint.search(s.lower()):
                return s  # no rule could match: most log and source lines
            current = s
            for _ in range(_MAX_PASSES):
                following = self._once(current)
                if following == current:
                    return current
                current = following
            return REDACTED  # did not settle: redact it all (a fixed point)
        except Exception:
            return REDACTED

    def _once(self, s: str) -> str:
        s = self._between_markers(s)
        for _, rule in SHAPE_RULES:
            s = rule(s)
        low = s.lower()
        if self._pair_hint.search(low):
            s = self._pairs_in_text(s)
        if self._home is not None and self._home_hint in low:
            s = self._home.sub("~", s)
        return s

    def _between_markers(self, s: str) -> str:
        """Configured values and extra patterns, never across a ``[REDACTED]``."""
        if self._values is None and not self._extra:
            return s
        pieces = s.split(REDACTED)
        for i, piece in enumerate(pieces):
            if self._values is not None:
                piece = self._values.sub(REDACTED, piece)
            for pattern in self._extra:
                piece = pattern.sub(lambda m: REDACTED if m.group(0) else "", piece)
            pieces[i] = piece
        return REDACTED.join(pieces)

    def _pairs_in_text(self, s: str) -> str:
        out: list[str] = []
        last = 0
        for match in _PAIR.finditer(s):
            if match.start() < last:
                continue  # inside a value redacted already
            key = match.group("key") or match.group("flag") or ""
            if not self._key_is_secret(key, s[match.start() - 1 : match.start()]):
                continue
            rule = _REST_OF_LINE if "cookie" in key.lower() else _VALUE
            value = rule.match(s, match.end())
            if value is None:
                continue
            out.append(s[last : match.end()])
            out.append(value.group("scheme") or "")
            out.append(_quoted(value.group("value")))
            last = value.end()
        if not out:
            return s
        out.append(s[last:])
        return "".join(out)

    def _key_is_secret(self, key: str, before: str) -> bool:
        if self.is_secret_key(key):
            return True
        # "\npassword=..." inside an escaped string: the key really starts after "n".
        return before == "\\" and key[:1] in "ntr" and self.is_secret_key(key[1:])

    # -- structured values -------------------------------------------------

    def lines(self, seq: Sequence[str]) -> tuple[str, ...]:
        """Each line scrubbed; a private key split across lines is redacted whole.

        Lines after a BEGIN line without its END are redacted up to the END
        line (or to the last line). A tail cut inside a key (log rings drop
        their oldest lines) is handled too: base64 lines before an END line
        without a BEGIN, and a leading run of base64 lines starting with a
        long one, are redacted. Never raises.
        """
        try:
            out: list[str] = []
            in_key = False  # after a BEGIN: redact until an END line, however long
            cut_body = bool(seq) and _PEM_BODY_FIRST_LINE.fullmatch(seq[0]) is not None
            for line in seq:
                if cut_body and _PEM_BODY_LINE.fullmatch(line):
                    out.append(REDACTED)  # the tail starts inside a key
                    continue
                cut_body = False
                if in_key:
                    end = _PEM_END.search(line)
                    if end is None:
                        out.append(REDACTED)
                        continue
                    in_key = False
                    out.append(REDACTED + self.text(line[end.end() :]))
                    continue
                begins = list(_PEM_BEGIN.finditer(line))
                if begins and _PEM_END.search(line, begins[-1].end()) is None:
                    in_key = True
                elif _PEM_END.search(line) and not begins:
                    j = len(out)
                    while j > 0 and _PEM_BODY_LINE.fullmatch(out[j - 1]):
                        j -= 1
                        out[j] = REDACTED
                out.append(self.text(line))
            return tuple(out)
        except Exception:
            return tuple(REDACTED for _ in seq)

    def argv(self, seq: Sequence[str]) -> tuple[str, ...]:
        """A command line without secrets.

        Each argument is scrubbed as text (``--api-key=X``, ``user:pass@``
        URLs, tokens); the argument after a long flag whose name is secret
        (``--token X``, ``-password X``) is redacted whatever it looks like.
        Short flags (``-p X``) are ambiguous and left alone. Never raises.
        """
        try:
            out: list[str] = []
            redact_next = False
            for arg in seq:
                if redact_next:
                    out.append(REDACTED)
                    redact_next = False
                    continue
                flag = re.fullmatch(r"--?([A-Za-z][\w.\-]+)", arg)
                redact_next = flag is not None and self.is_secret_key(flag.group(1))
                out.append(self.text(arg))
            return tuple(out)
        except Exception:
            return tuple(REDACTED for _ in seq)

    def pairs(self, items: Iterable[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
        """Key/value pairs (facts, headers): the value of a secret key is redacted,
        any other value is scrubbed as text; keys are kept. Never raises."""
        try:
            return tuple(
                (key, REDACTED if self.is_secret_key(key) else self.text(value))
                for key, value in items
            )
        except Exception:
            return ()

    def report(self, r: Report) -> Report:
        """A copy of ``r`` with every free-text field scrubbed.

        Scrubs the message, the causes' messages, the frames' source lines
        and file names (a group's leaves' too), the log tail, argv and facts. Types, module and
        function names, host facts and the fingerprint are kept (the
        signature relies on them). Never raises: on an internal failure the
        scrubbed fields are all redacted.
        """
        import dataclasses  # loaded already wherever a Report exists

        try:
            return r.replace(
                message=self.text(r.message),
                causes=tuple(
                    dataclasses.replace(c, message=self.text(c.message)) for c in r.causes
                ),
                frames=_frames(r.frames, self.text),
                log_tail=self.lines(r.log_tail),
                argv=self.argv(r.argv),
                facts=self.pairs(r.facts),
                leaves=tuple(
                    dataclasses.replace(
                        leaf,
                        message=self.text(leaf.message),
                        frames=_frames(leaf.frames, self.text),
                    )
                    for leaf in r.leaves
                ),
            )
        except Exception:
            return r.replace(
                message=REDACTED,
                causes=tuple(dataclasses.replace(c, message=REDACTED) for c in r.causes),
                frames=_frames(r.frames, _redacted),
                log_tail=tuple(REDACTED for _ in r.log_tail),
                argv=tuple(REDACTED for _ in r.argv),
                facts=tuple((k, REDACTED) for k, _ in r.facts),
                leaves=tuple(
                    dataclasses.replace(
                        leaf, message=REDACTED, frames=_frames(leaf.frames, _redacted)
                    )
                    for leaf in r.leaves
                ),
            )


def _redacted(_: str) -> str:
    return REDACTED


def _frames(frames: Sequence[Frame], text: Callable[[str], str]) -> tuple[Frame, ...]:
    """Frames with their source lines and file names passed through ``text``."""
    import dataclasses

    return tuple(
        dataclasses.replace(f, line=text(f.line), filename=text(f.filename)) for f in frames
    )


def process_scrubber(
    *,
    extra_patterns: tuple[str, ...] = (),
    extra_keys: tuple[str, ...] = (),
    token: str | None = None,
    environ: Mapping[str, str],
) -> Scrubber:
    """The scrubber of a reporting process: configured rules, plus the values of
    its secret-named environment variables, its GitHub token and its home.

    Both error paths (node/pipeline.py, node/handover.py) build theirs here,
    so they cannot drift apart. Raises ``LocalError`` for a bad pattern.
    """
    return Scrubber(
        ScrubRules(
            extra_patterns=extra_patterns,
            extra_keys=extra_keys,
            secret_values=secret_env_values(environ) + ((token,) if token else ()),
            home=environ.get("HOME") or os.path.expanduser("~"),
        )
    )
