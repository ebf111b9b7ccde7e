"""The built-in scrub rules: secrets recognised by their shape, and the hints
that let a text skip a rule that cannot match.

``mesh.scrub.Scrubber`` applies them (in the order its module docstring's
table gives) after the configured values and patterns, then redacts the
values of secret-named pairs with :data:`PAIR_HINTS`, ``_PAIR``, ``_VALUE``
and ``_REST_OF_LINE``. No configuration and no state: compiled once at
import.

Imported on the hand-over path (node/handover.py) through ``mesh.scrub``: it
must stay as lean as that module (``re`` only, no ``typing``).
"""

from __future__ import annotations

import re

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Final

__all__ = ["PAIR_HINTS", "REDACTED", "SHAPE_RULES", "TOKEN_PATTERNS"]


#: What every secret is replaced with.
REDACTED: Final = "[REDACTED]"


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
