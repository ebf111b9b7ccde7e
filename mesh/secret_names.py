"""Which names hold secrets: variables, fields, headers and flags.

The scrubber (``mesh.scrub``) redacts the value of every secret-named pair,
argument and fact, and :func:`secret_env_values` gives it the values of a
process's secret-named environment variables to redact wherever they appear.
The tables below are the whole judgement; ``tests/test_scrub.py`` pins them
against ``mesh.scrub_patterns.PAIR_HINTS``, the literal test that lets most
text skip the pair rule.

Imported on the hand-over path (node/handover.py) through ``mesh.scrub``: it
must stay as lean as that module (``re`` and ``functools``, no ``typing``).
"""

from __future__ import annotations

import re
from functools import lru_cache

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Final

__all__ = [
    "NON_SECRET_KEY_KINDS",
    "NON_SECRET_SUFFIXES",
    "NOT_SECRET_NAMES",
    "SECRET_ENDINGS",
    "SECRET_PARTS",
    "WEAK_FOLLOWERS",
    "WEAK_PARTS",
    "is_secret_name",
    "secret_env_values",
]


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


def _compact(name: str) -> str:
    return "".join(_name_parts(name))
