"""Realistic texts that carry a secret, and the secret that must not survive.

``SECRETS`` is a list of ``(text, secret)``: scrubbing ``text`` (as a message,
a log line, an argument, a fact...) must leave no trace of ``secret``. Every
category that ``mesh.scrub`` promises to handle appears in several contexts:
log lines, exception messages, argv, JSON, env dumps, URLs, headers, PEM.

Fake tokens are assembled at import time from short pieces rather than
written out, so that secret scanners have nothing to flag in this file.
Import it from any test in ``tests/`` as ``from secrets_corpus import SECRETS``
(pytest's default "prepend" import mode puts ``tests/`` on ``sys.path``).
"""

from __future__ import annotations

import base64
import json

__all__ = ["SECRETS"]


def _b64url(data: dict[str, object]) -> str:
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def _pem(kind: str, body: list[str], *, end: bool = True) -> str:
    label = f"{kind} PRIVATE KEY".strip()
    dashes = "-" * 5
    lines = [f"{dashes}BEGIN {label}{dashes}", *body]
    if end:
        lines.append(f"{dashes}END {label}{dashes}")
    return "\n".join(lines)


# Tokens (shape-recognised).
GH_CLASSIC = "gh" + "p_" + "a1B2" * 9
GH_OAUTH = "gh" + "o_" + "Zy9X" * 9
GH_USER = "gh" + "u_" + "Q4w5" * 9
GH_SERVER = "gh" + "s_" + "mN0p" * 9
GH_REFRESH = "gh" + "r_" + "Rr7s" * 9
GH_FINE = "github" + "_pat_" + "11ABCDEFG0" + "xY_z" * 16
AWS_KEY_ID = "AK" + "IA" + "Q7X2" * 4
AWS_STS_ID = "AS" + "IA" + "M3N8" * 4
AWS_SECRET = "wJa1" + "rXUt/K7MDE+bPxR" * 2 + "fiCYEX"
SLACK_BOT = "xo" + "xb-" + "1234567890" + "-" + "9876543210" + "-" + "AbCdEfGh" * 3
SLACK_USER = "xo" + "xp-" + "1111111111" + "-" + "2222222222" + "-" + "QwErTy12" * 4
SLACK_APP = "xa" + "pp-" + "1-A0B1C2D3E4-" + "5" * 13 + "-" + "f0e1d2c3" * 8
SLACK_LEGACY = "xo" + "xa-" + "2-" + "Zz0Yy1Xx2W" * 2
SLACK_REFRESH = "xo" + "xr-" + "3-" + "Pp9Oo8Nn7M" * 2
SLACK_SESSION = "xo" + "xs-" + "4-" + "Kk6Jj5Hh4G" * 2
SLACK_HOOK_PATH = "T0" + "1ABCDEF" + "/B0" + "2GHIJKL" + "/" + "x9Y8z7W6" * 3
SLACK_HOOK = "https://hooks.slack.com/" + "services/" + SLACK_HOOK_PATH
JWT = ".".join(
    (
        _b64url({"alg": "HS256", "typ": "JWT"}),
        _b64url({"sub": "1234567890", "name": "Bob", "iat": 1516239022}),
        "SflKxwRJ" + "SMeKKF2Q" + "T4fwpMeJ" + "f36POk6yJV_adQssw5c",
    )
)
STRIPE = "sk" + "_live_" + "4eC39HqL" * 3
GOOGLE = "AI" + "za" + "SyD-" + "9tSrke72PouQMnMX" * 2 + "bbb"
NPM = "np" + "m_" + "Ab12Cd34Ef" * 4
GITLAB = "gl" + "pat-" + "xZ9-yW8_vU7t" * 2
OPENAI = "sk" + "-proj-" + "Tt5Uu6Vv7Ww8" * 4

# Opaque values recognised by their label, URL position or auth scheme.
BEARER = "mF_9" + ".B5f-4.1JqM" + "Zx81kq"
BASIC = base64.b64encode(b"deploy:" + b"Kz8-pw-" + b"7731").decode()
DB_PASSWORD = "Kx7" + "pQ2" + "vR9mT4"
URL_PASSWORD = "s3" + "cr3t" + "Pa55"
REDIS_PASSWORD = "r3d1s" + "Auth" + "Z9"
AMQP_PASSWORD = "rabb1t" + "Qu3ue"
MONGO_PASSWORD = "m0ng0" + "Ph4se"
API_KEY = "ak_" + "7f3c9e1b" * 2
CLIENT_SECRET = "cs_" + "Q1w2E3r4" * 2
SESSION = "s%3A" + "Jq8zX1vB0nM2" + ".sig9"
COOKIE = "sid_" + "Gh7Kp2Lm9Nq4"
DSN_KEY = "5f" + "e1c2a9b3d4" * 3
ARGV_PASSWORD = "argv" + "Pw-" + "55x71"
ARGV_TOKEN = "tok" + "en-" + "C0ff33B4b3"
YAML_SECRET = "yaml" + "S3cret" + "V4lue"
CONN_PASSWORD = "Sql" + "Srv" + "P4ss" + "w0rd"
PEM_LINE = "MIIEpAIBAAKCAQEA" + "3Tz2mr7SZiAMfQyu" + "vBjM9Oi" + "6Q4rZ8m1s"
PEM_LINE_2 = "b3BlbnNzaC1rZXkt" + "djEAAAAABG5vbmUA" + "AAAEbm9uZQAAAA"
PEM_LINE_3 = "MHcCAQEEIBkg4LVW" + "Kf1kAy6Lq0g7h8n" + "u3eU9iQ5"
PEM_LINE_4 = "MIIBVQIBADANBgkq" + "hkiG9w0BAQEFAASC" + "AT8wggE7Ag"

SECRETS: list[tuple[str, str]] = [
    # GitHub tokens
    (f"git push failed: remote: Invalid username or token {GH_CLASSIC}", GH_CLASSIC),
    (f"GITHUB_TOKEN={GH_OAUTH}", GH_OAUTH),
    (f"RuntimeError: gh api returned 401 for token {GH_USER}", GH_USER),
    (f'{{"token": "{GH_SERVER}", "expires_at": "2030-01-01T00:00:00Z"}}', GH_SERVER),
    (f"refresh with {GH_REFRESH} failed", GH_REFRESH),
    (f"https://x-access-token:{GH_FINE}@github.com/org/repo.git", GH_FINE),
    (f"clone https://{GH_CLASSIC}@github.com/org/private.git: exit 128", GH_CLASSIC),
    # AWS
    (f"botocore.exceptions.ClientError: key {AWS_KEY_ID} is not authorized", AWS_KEY_ID),
    (f"AWS_ACCESS_KEY_ID={AWS_STS_ID}", AWS_STS_ID),
    (f"aws_secret_access_key = {AWS_SECRET}", AWS_SECRET),
    (f"export AWS_SECRET_ACCESS_KEY={AWS_SECRET}", AWS_SECRET),
    (f'{{"AccessKeyId": "{AWS_STS_ID}", "SecretAccessKey": "{AWS_SECRET}"}}', AWS_SECRET),
    (f"aws_secret_access_key     {AWS_SECRET}  shared-credentials-file", AWS_SECRET),
    # Slack
    (f"slack_sdk.errors.SlackApiError: invalid_auth for {SLACK_BOT}", SLACK_BOT),
    (f"SLACK_USER_TOKEN={SLACK_USER}", SLACK_USER),
    (f"socket mode connect with {SLACK_APP} refused", SLACK_APP),
    (f"legacy token {SLACK_LEGACY} revoked", SLACK_LEGACY),
    (f"rotating {SLACK_REFRESH} -> new", SLACK_REFRESH),
    (f"session {SLACK_SESSION} expired", SLACK_SESSION),
    (f"POST {SLACK_HOOK} -> 404 no_service", SLACK_HOOK_PATH),
    (f"SLACK_WEBHOOK_URL={SLACK_HOOK}", SLACK_HOOK_PATH),
    # JWT and Authorization headers
    (f"jwt.exceptions.ExpiredSignatureError: {JWT}", JWT),
    (f"Authorization: Bearer {JWT}", JWT),
    (f"curl -H 'Authorization: Bearer {BEARER}' https://api.example.com/v1", BEARER),
    (f"request headers: {{'Authorization': 'Basic {BASIC}', 'Accept': '*/*'}}", BASIC),
    (f"Proxy-Authorization: Basic {BASIC}", BASIC),
    (f"authorization: Token {API_KEY}", API_KEY),
    (f"retrying with bearer {BEARER} after 401", BEARER),
    (f'{{"headers": {{"Authorization": "Bearer {BEARER}"}}}}', BEARER),
    # PEM private keys
    (
        "loaded key:\n" + _pem("RSA", [PEM_LINE, "Kf1kAy6Lq0g7h8nVbM", "Xg=="]) + "\nusing it",
        PEM_LINE,
    ),
    (_pem("OPENSSH", [PEM_LINE_2, "QyNTUxOQAAACDv3Lm0"]), PEM_LINE_2),
    (f"ValueError: could not parse {_pem('EC', [PEM_LINE_3])}", PEM_LINE_3),
    (f"key file truncated: {_pem('', [PEM_LINE_4], end=False)}", PEM_LINE_4),
    # Passwords in URLs
    (f"sqlalchemy: could not connect to postgres://app:{URL_PASSWORD}@db:5432/prod", URL_PASSWORD),
    (f"redis.exceptions.ConnectionError: redis://:{REDIS_PASSWORD}@cache:6379/0", REDIS_PASSWORD),
    (f"AMQP_URL=amqp://worker:{AMQP_PASSWORD}@mq.internal:5672/%2F", AMQP_PASSWORD),
    (
        f"mongodb+srv://admin:{MONGO_PASSWORD}@cluster0.example.net/test?retryWrites=true",
        MONGO_PASSWORD,
    ),
    # Secret-named keys: env dumps, logs, JSON, Python reprs, YAML, argv
    (f"DB_PASSWORD={DB_PASSWORD}", DB_PASSWORD),
    (f"2024-05-01 12:00:00 INFO db: connecting with password={DB_PASSWORD} host=db", DB_PASSWORD),
    (f'{{"user": "bob", "password": "{DB_PASSWORD}"}}', DB_PASSWORD),
    (f"connect(host='db', user='bob', password='{DB_PASSWORD}')", DB_PASSWORD),
    (f"X-Api-Key: {API_KEY}", API_KEY),
    (f"GET /v1/items?api_key={API_KEY}&page=2 -> 403", API_KEY),
    (f"oauth: client_secret: {CLIENT_SECRET}", CLIENT_SECRET),
    (f"Set-Cookie: connect.sid={SESSION}; Path=/; HttpOnly", SESSION),
    (f"Cookie: theme=dark; session={COOKIE}", COOKIE),
    (f"SENTRY_DSN=https://{DSN_KEY}@o1.ingest.sentry.io/42", DSN_KEY),
    (f"mysql --user root --password {ARGV_PASSWORD} --host db exited 1", ARGV_PASSWORD),
    (f"deploy.sh --api-key={API_KEY} --env prod", API_KEY),
    (f"gh auth login --with-token --token {ARGV_TOKEN}", ARGV_TOKEN),
    (f"database:\n  host: db\n  password: {YAML_SECRET}\n  pool: 5", YAML_SECRET),
    (f"Server=sql1;Database=app;User Id=sa;Password={CONN_PASSWORD};Encrypt=yes", CONN_PASSWORD),
    (f'logged payload: "{{\\"password\\": \\"{DB_PASSWORD}\\"}}"', DB_PASSWORD),
    (f"KeyError while reading config: {{'secret_key': '{CLIENT_SECRET}'}}", CLIENT_SECRET),
    # Other vendors' token shapes
    (f"stripe.error.AuthenticationError: Invalid API Key provided: {STRIPE}", STRIPE),
    (f"maps request denied for key {GOOGLE}", GOOGLE),
    (f"//registry.npmjs.org/:_authToken={NPM}", NPM),
    (f"glab: 401 Unauthorized with {GITLAB}", GITLAB),
    (f"openai.AuthenticationError: Incorrect API key provided: {OPENAI}", OPENAI),
]
