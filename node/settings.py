"""The settings table and how its sources combine, without building a Config.

Precedence, highest first: explicit flags (``node.install(**options)`` or the
command line) > environment (``ERRMESH_*``, then the original tool's
``IPFS_*`` aliases) > the TOML file (``$ERRMESH_CONFIG`` or
``$XDG_CONFIG_HOME/errmesh/config.toml``) > defaults.

This module is the plain half of :mod:`node.config`: it yields validated
values as a dict (paths as ``str``), and imports neither ``dataclasses``,
``typing`` nor ``pathlib``, because a failing process handing its report to
a local relay (node/handover.py) reads its settings here and must exit
within tens of milliseconds. :func:`node.config.resolve` turns the same dict
into the frozen :class:`~node.config.Config` everything else uses.

The table :data:`SETTINGS` is the single list of settings: its order is the
order of ``errmesh config`` output, its parsers validate every source alike.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Mapping

from mesh import defaults
from node.errors import ConfigError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "DEFAULTS",
    "PATH_SETTINGS",
    "SETTINGS",
    "Setting",
    "config_file_path",
    "load_values",
    "parse_bool",
    "resolve_values",
    "say_problems",
    "validate_flags",
]

_TRUE = frozenset({"true", "1", "yes", "on"})
_FALSE = frozenset({"false", "0", "no", "off", ""})


def parse_bool(text: str) -> bool:
    """The original tool's rule: true/1/yes (any case) are true; also on.

    false/0/no/off/empty are false; anything else raises ``ValueError`` so a
    typo does not silently disable reporting.
    """
    low = text.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError(f"{text!r} is not a boolean (use true/false, 1/0, yes/no)")


# Parsers: text (env) or TOML value -> typed value; raise ValueError on junk.


def _str(value: object) -> str:
    if not isinstance(value, str):
        raise ValueError(f"expected a string, got {type(value).__name__}")
    return value.strip()


def _name(value: object) -> str:
    text = _str(value)
    if not text or not all(c.isalnum() or c in "-_." for c in text) or text.startswith("."):
        raise ValueError(f"{text!r} must be letters, digits, '-', '_' or '.'")
    return text


def _bool(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    return parse_bool(_str(value))


def _float(value: object) -> float | None:
    """``value`` as a float, or None when it is not a number (a bool is not)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        return None
    try:
        return float(value)
    except ValueError:
        return None


def _positive_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    number = _float(value)
    if number is None or number != number or number < 0 or number == float("inf"):
        raise ValueError(f"{value!r} is not a non-negative number of seconds")
    return number


def _positive_seconds(value: object) -> float:
    """A duration that must pass: a zero heartbeat or timeout would spin or never wait."""
    number = _positive_float(value)
    if number == 0:
        raise ValueError(f"{value!r} must be more than 0 seconds")
    return number


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None


def _share(value: object) -> float:
    """A fraction from 0 to 1 (``sample_rate``)."""
    number = _float(value)
    if number is None or not 0.0 <= number <= 1.0:
        raise ValueError(f"{value!r} is not a number from 0 to 1")
    return number


def _count(value: object) -> int:
    """A count where 0 means "no limit"."""
    number = _int(value)
    if number < 0:
        raise ValueError(f"{value!r} is not 0 (no limit) or a positive integer")
    return number


def _positive_int(value: object) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return number


def _port(value: object) -> int:
    number = _int(value)
    if not 0 <= number <= 65535:
        raise ValueError(f"{value!r} is not a TCP port (0..65535; 0 picks a free one)")
    return number


def _host_port(value: object) -> str:
    """``HOST:PORT`` (``[::]:9464`` for IPv6), as the status server binds it."""
    text = _str(value)
    host, sep, port = text.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or int(port) > 65535 or "[" in host:
        raise ValueError(f"{text!r} is not HOST:PORT like 127.0.0.1:9464 or [::]:9464")
    return text


def _path(value: object) -> str:
    if isinstance(value, os.PathLike):
        value = os.fspath(value)
    text = _str(value)
    if not text:
        raise ValueError("empty path")
    return os.path.expanduser(text)


def _optional_path(value: object) -> str | None:
    if value is None or value == "":
        return None
    return _path(value)


def _tuple(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        parts = [p.strip() for p in value.split(",")]
    elif isinstance(value, (list, tuple)):
        parts = [_str(p) for p in value]
    else:
        raise ValueError("expected a comma-separated string or a list of strings")
    return tuple(p for p in parts if p)


def _patterns(value: object) -> tuple[str, ...]:
    """Regular expressions, compiled here so a typo names itself before any report."""
    import re

    patterns = _tuple(value)
    for pattern in patterns:
        try:
            re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"{pattern!r} is not a regular expression: {exc}") from None
    return patterns


def _multiaddr(text: str, *, peer: bool) -> str:
    """A TCP multiaddr checked by shape (importing ``multiaddr`` costs ~50 ms)."""
    example = "/ip4/127.0.0.1/tcp/4747" + ("/p2p/12D3KooW..." if peer else "")
    parts = text.split("/")
    ok = len(parts) >= 5 and parts[0] == "" and parts[3] == "tcp" and parts[4].isdigit()
    if ok:
        try:
            if parts[1] == "ip4":
                ok = _is_ip4(parts[2])
            elif parts[1] == "ip6":
                import ipaddress  # ~2 ms: only for IPv6 (a failing CLI reads ``peers``)

                ok = ipaddress.ip_address(parts[2]).version == 6
            else:
                ok = parts[1] in ("dns", "dns4", "dns6") and bool(parts[2])
        except ValueError:
            ok = False
        ok = ok and 0 <= int(parts[4]) <= 65535
    rest = parts[5:] if ok else []
    if ok and peer:
        ok = len(rest) == 2 and rest[0] == "p2p" and _is_peer_id(rest[1])
    elif ok:
        ok = not rest or (len(rest) == 2 and rest[0] == "p2p" and _is_peer_id(rest[1]))
    if not ok:
        raise ValueError(f"{text!r} is not a TCP multiaddr like {example}")
    return text


def _is_ip4(text: str) -> bool:
    """Dotted quad, as ``ipaddress`` accepts it (no leading zeros, 0-255)."""
    octets = text.split(".")
    return len(octets) == 4 and all(
        o.isascii() and o.isdigit() and int(o) <= 255 and (o == "0" or not o.startswith("0"))
        for o in octets
    )


_BASE58 = frozenset("123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz")


def _is_peer_id(text: str) -> bool:
    return 32 <= len(text) <= 128 and set(text) <= _BASE58


def _peers(value: object) -> tuple[str, ...]:
    return tuple(_multiaddr(a, peer=True) for a in _tuple(value))


def _listen(value: object) -> tuple[str, ...]:
    addrs = tuple(_multiaddr(a, peer=False) for a in _tuple(value))
    if not addrs:
        raise ValueError("no address to listen on")
    return addrs


def _command(value: object) -> tuple[str, ...]:
    """A command line: a shell-quoted string (env, TOML) or a list of arguments."""
    if isinstance(value, (list, tuple)):
        return tuple(_str(p) for p in value)
    import shlex

    return tuple(shlex.split(_str(value)))


def _choice(*choices: str) -> Callable[[object], str]:
    def parse(value: object) -> str:
        text = _str(value).lower()
        if text not in choices:
            raise ValueError(f"{text!r} is not one of {', '.join(choices)}")
        return text

    return parse


def _repo(value: object) -> str | None:
    text = _str(value)
    if not text:
        return None
    owner, sep, name = text.partition("/")
    if not sep or not owner or not name or "/" in name:
        raise ValueError(f"{text!r} is not OWNER/NAME")
    return text


def _url(value: object) -> str:
    text = _str(value).rstrip("/")
    if not text.startswith(("https://", "http://")):
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


def _optional_str(value: object) -> str | None:
    text = _str(value)
    return text or None


class Setting:
    """One row of the settings table: field name, parser, env names, default.

    The default is the setting's only one: ``Config`` and the hand-over take it
    from here (paths as ``str``).
    """

    __slots__ = ("default", "env", "name", "parse")

    def __init__(
        self, name: str, parse: Callable[[object], Any], env: tuple[str, ...], default: object
    ) -> None:
        self.name = name
        self.parse = parse
        self.env = env
        self.default = default


def _s(name: str, parse: Callable[[object], Any], default: object, *aliases: str) -> Setting:
    return Setting(name, parse, ("ERRMESH_" + name.upper(), *aliases), default)


#: The settings, their parsers and their environment names (first wins).
SETTINGS: tuple[Setting, ...] = (
    _s("cluster", _name, "default"),
    _s("app", _str, ""),
    _s("app_version", _str, ""),
    _s("environment", _str, "", "SENTRY_ENVIRONMENT"),
    _s("release", _str, "", "SENTRY_RELEASE"),
    _s("state_dir", _path, "~/.local/state/errmesh"),
    _s("data_dir", _path, "~/.local/share/errmesh"),
    _s("issues_dir", _optional_path, None),
    _s("sink", _choice("auto", "file", "github", "none"), "auto"),
    _s("auto_issue", _bool, True, "IPFS_AUTO_ISSUE"),
    _s("auto_pr", _bool, False, "IPFS_AUTO_PR"),
    _s("auto_heal", _bool, False, "IPFS_AUTO_HEAL"),
    _s("repo", _repo, None, "IPFS_REPO"),
    _s("github_token", _optional_str, None, "GITHUB_TOKEN", "GH_TOKEN"),
    _s("github_api_url", _url, "https://api.github.com"),
    _s("github_dry_run", _bool, False),
    _s("github_timeout", _positive_seconds, 10.0),
    _s("github_per_minute", _positive_int, 80),
    _s("github_per_hour", _positive_int, 500),
    _s("github_min_interval", _positive_float, 1.0),
    _s("fixer", _command, ()),
    _s("fixer_timeout", _positive_seconds, 300.0),
    _s("window", _positive_float, defaults.WINDOW),
    _s("settle", _positive_float, defaults.SETTLE),
    _s("reopen_on_regression", _bool, True),
    _s("log_lines", _positive_int, 50),
    _s("spool_max_reports", _positive_int, 10_000),
    _s("spool_max_bytes", _positive_int, 64 * 1024 * 1024),
    _s("spool_sync", _choice("full", "normal"), "full"),
    _s("max_signatures", _positive_int, 10_000),
    _s("scrub_patterns", _patterns, ()),
    _s("scrub_keys", _tuple, ()),
    _s("in_app_include", _tuple, ()),
    _s("in_app_exclude", _tuple, ()),
    _s("source_context", _bool, True),
    _s("capture_keyboard_interrupt", _bool, False),
    _s("capture_log_level", _choice("", "warning", "error", "critical"), ""),
    _s("ignore_errors", _tuple, ()),
    _s("sample_rate", _share, 1.0),
    _s("max_reports_per_minute", _count, 0),
    _s("peers", _peers, ()),
    _s("key_file", _optional_path, None),
    _s("private_network", _bool, True),
    _s("listen", _listen, ("/ip4/0.0.0.0/tcp/4747",)),
    _s("eligible", _bool, True),
    _s("priority", _int, 0),
    _s("heartbeat", _positive_seconds, defaults.HEARTBEAT),
    _s("digest_every", _positive_seconds, defaults.DIGEST_EVERY),
    _s("digest_batch", _positive_int, defaults.DIGEST_BATCH),
    _s("backlog_max", _positive_int, defaults.BACKLOG_MAX),
    _s("ack_timeout", _positive_seconds, 2.0),
    _s("status_port", _port, 0),
    _s("status_listen", _host_port, "127.0.0.1:0"),
    _s("log_level", _choice("debug", "info", "warning", "error"), "warning"),
    _s("log_format", _choice("text", "json"), "text"),
)
#: Every setting's default (``Config``'s fields and the hand-over read them here).
DEFAULTS: dict[str, Any] = {setting.name: setting.default for setting in SETTINGS}
_BY_NAME = {s.name: s for s in SETTINGS}


#: Settings whose values are paths (``str`` here, ``Path`` in a Config).
PATH_SETTINGS = frozenset({"state_dir", "data_dir", "issues_dir", "key_file"})


def validate_flags(
    flags: Mapping[str, object], problems: list[ConfigError] | None = None
) -> dict[str, Any]:
    """Parse explicit options (``install(**options)``, CLI flags) eagerly.

    Raises ``ConfigError`` for an unknown option or a bad value, so that a
    programmer's mistake shows at ``install()`` rather than at the first crash;
    with ``problems`` given, appends the error there and leaves the option out
    instead. ``None`` values mean "not given".
    """
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is not None:
            _take(out, key, key, value, problems)
    return out


def _take(
    out: dict[str, Any],
    key: str,
    where: str,
    raw: object,
    problems: list[ConfigError] | None,
    unknown: str = "",
) -> bool:
    """Parse one source's value of ``key`` into ``out``; raise or record a bad one.

    ``where`` names the setting as its source spells it; a recorded problem
    leaves ``out`` as it was (and returns False), so the next source down
    (or the default) holds.
    """
    setting = _BY_NAME.get(key)
    try:
        if setting is None:
            raise ConfigError(
                where, unknown or f"unknown option (known: {', '.join(sorted(_BY_NAME))})"
            )
        try:
            out[key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(where, str(exc)) from None
    except ConfigError as exc:
        if problems is None:
            raise
        problems.append(exc)
        return False
    return True


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> str:
    value = environ.get(var, "").strip()
    if value and os.path.isabs(value):
        return value
    home = environ.get("HOME") or os.path.expanduser("~")
    return os.path.join(home, fallback)


def config_file_path(environ: Mapping[str, str]) -> str:
    """``$ERRMESH_CONFIG``, else ``$XDG_CONFIG_HOME/errmesh/config.toml``."""
    explicit = environ.get("ERRMESH_CONFIG", "").strip()
    if explicit:
        return os.path.expanduser(explicit)
    return os.path.join(_xdg(environ, "XDG_CONFIG_HOME", ".config"), "errmesh", "config.toml")


def resolve_values(
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "config.toml",
    problems: list[ConfigError] | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """The validated values of the three sources (defaults left out); pure.

    Raises ``ConfigError`` naming the offending setting as written in its
    source (flag name, environment variable, or ``file:key``). With
    ``problems`` given, every bad value is appended there instead and the
    setting falls back to the next source down, then to its default.
    ``sources``, when given, receives where each value came from (the
    source that won, as ``errmesh config`` shows it), for every setting.
    """
    env = environ or {}
    where = {} if sources is None else sources
    values: dict[str, Any] = {
        "state_dir": os.path.join(_xdg(env, "XDG_STATE_HOME", ".local/state"), "errmesh"),
        "data_dir": os.path.join(_xdg(env, "XDG_DATA_HOME", ".local/share"), "errmesh"),
    }
    where.update({s.name: "default" for s in SETTINGS})
    for key, xdg in (("state_dir", "XDG_STATE_HOME"), ("data_dir", "XDG_DATA_HOME")):
        if os.path.isabs(env.get(xdg, "").strip()):
            where[key] = f"default (${xdg})"
    for key, raw in (file_values or {}).items():
        if _take(values, key, f"{file_name}: {key}", raw, problems, unknown="unknown setting"):
            where[key] = f"file {file_name}"
    for setting in SETTINGS:
        var = next((v for v in setting.env if v in env), None)
        if var is not None and _take(values, setting.name, var, env[var], problems):
            where[setting.name] = f"env {var}"
    taken = validate_flags(flags or {}, problems)
    where.update({key: "flag" for key in taken})
    values.update(taken)
    return values


def read_config_file(environ: Mapping[str, str]) -> tuple[dict[str, object], str]:
    """The TOML file's values (empty when the default file is absent) and its path.

    Raises ``ConfigError`` for an unreadable or invalid file, or for a
    missing one that ``ERRMESH_CONFIG`` names.
    """
    path = config_file_path(environ)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        if "ERRMESH_CONFIG" in environ:
            raise ConfigError("ERRMESH_CONFIG", f"{path} does not exist") from None
        data = b""
    except OSError as exc:
        raise ConfigError(path, f"cannot read: {exc.strerror}") from None
    return (_parse_toml(data, path) if data else {}), path


def load_values(
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_file: bool = True,
    problems: list[ConfigError] | None = None,
    sources: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Read the environment and the TOML file, then :func:`resolve_values`.

    With ``problems`` given nothing raises: an unreadable or invalid file is
    recorded there and ignored, a bad value falls back (see ``resolve_values``).
    ``sources`` receives each value's origin (see ``resolve_values``).
    """
    env = dict(os.environ if environ is None else environ)
    file_values: dict[str, object] = {}
    path = "config.toml"
    if read_file:
        try:
            file_values, path = read_config_file(env)
        except ConfigError as exc:
            if problems is None:
                raise
            problems.append(ConfigError(exc.setting, f"{exc.message}; file ignored"))
    return resolve_values(
        flags=flags,
        environ=env,
        file_values=file_values,
        file_name=path,
        problems=problems,
        sources=sources,
    )


#: What :func:`say_problems` already said in this process (it says each once).
_SAID: set[str] = set()


def say_problems(problems: list[ConfigError]) -> None:
    """Tell the user once, on one stderr line, which settings errmesh is ignoring.

    The lenient paths (a host program's capture, ``errmesh run``) must not
    stop the program for errmesh's own settings; silently using defaults
    would hide why reports go elsewhere. Never raises.
    """
    text = "; ".join(" ".join(str(p).split()) for p in problems)
    if not problems or text in _SAID:
        return
    _SAID.add(text)
    line = f"errmesh: ignoring bad settings (defaults used): {text}\n"
    try:
        sys.stderr.write(line)
        sys.stderr.flush()
    except Exception:  # a closed or broken stderr: nothing else to tell
        pass


def _parse_toml(data: bytes, path: str) -> dict[str, object]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        parsed: dict[str, object] = tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(path, f"invalid TOML: {exc}") from None
    # Settings may sit at the top level or under an [errmesh] table.
    section = parsed.get("errmesh")
    if isinstance(section, dict):
        merged = {k: v for k, v in parsed.items() if k != "errmesh"}
        merged.update(section)
        return merged
    return parsed
