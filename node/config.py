"""Configuration: one frozen, typed object, built once.

Precedence, highest first: explicit flags (``node.install(**options)`` or the
command line) > environment (``ERRMESH_*``, then the original tool's
``IPFS_*`` aliases) > the TOML file (``$ERRMESH_CONFIG`` or
``$XDG_CONFIG_HOME/errmesh/config.toml``) > defaults.

:func:`resolve` is pure: it takes the three sources as plain mappings and
returns a :class:`Config` or raises :class:`~node.errors.ConfigError` naming
the setting as the user spelt it (``ERRMESH_WINDOW``, ``window`` in
``config.toml``, ...). :func:`load_config` is the thin IO wrapper that reads
the environment and the file. Nothing else in errmesh reads the environment
for settings.

The table :data:`SETTINGS` is the single list of settings: its order is the
order of ``errmesh config`` output, its parsers validate every source alike.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from node.errors import ConfigError

__all__ = [
    "SETTINGS",
    "Config",
    "config_file_path",
    "load_config",
    "parse_bool",
    "resolve",
    "validate_flags",
]

SinkName = Literal["auto", "file", "github", "none"]

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


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every errmesh setting, validated. Build it with :func:`load_config`."""

    cluster: str = "default"
    app: str = ""
    app_version: str = ""
    state_dir: Path = Path("~/.local/state/errmesh")
    data_dir: Path = Path("~/.local/share/errmesh")
    issues_dir: Path | None = None
    sink: SinkName = "auto"
    auto_issue: bool = True
    auto_pr: bool = False
    auto_heal: bool = False
    repo: str | None = None
    github_token: str | None = field(default=None, repr=False)
    github_api_url: str = "https://api.github.com"
    github_dry_run: bool = False
    github_timeout: float = 10.0
    #: GitHub's content-creation limits (the notes' 80/min, 500/h, 1 s apart).
    github_per_minute: int = 80
    github_per_hour: int = 500
    github_min_interval: float = 1.0
    fixer: tuple[str, ...] = ()
    fixer_timeout: float = 300.0
    window: float = 900.0
    settle: float = 5.0
    reopen_on_regression: bool = True
    log_lines: int = 50
    spool_max_reports: int = 10_000
    spool_max_bytes: int = 64 * 1024 * 1024
    spool_sync: Literal["full", "normal"] = "full"
    max_signatures: int = 10_000
    scrub_patterns: tuple[str, ...] = ()
    scrub_keys: tuple[str, ...] = ()
    in_app_include: tuple[str, ...] = ()
    in_app_exclude: tuple[str, ...] = ()
    capture_keyboard_interrupt: bool = False
    peers: tuple[str, ...] = ()
    key_file: Path | None = None
    listen: tuple[str, ...] = ("/ip4/0.0.0.0/tcp/4001",)
    eligible: bool = True
    priority: int = 0
    heartbeat: float = 0.5
    ack_timeout: float = 2.0
    status_port: int = 0
    #: The relay's log level on stderr (elections, sink errors, bans).
    log_level: Literal["debug", "info", "warning", "error"] = "warning"

    @property
    def cluster_state_dir(self) -> Path:
        """Where this cluster's spool database lives (one per cluster)."""
        return self.state_dir / self.cluster

    @property
    def resolved_issues_dir(self) -> Path:
        """The file sink's folder: configured, or ``<data_dir>/<cluster>/issues``."""
        if self.issues_dir is not None:
            return self.issues_dir
        return self.data_dir / self.cluster / "issues"

    @property
    def relay_socket(self) -> Path:
        """The local relay's nudge socket (next to the spool it drains)."""
        return self.cluster_state_dir / "relay.sock"

    def cluster_key(self) -> bytes | None:
        """The cluster key from ``key_file`` (hex), or None when none is set.

        Raises ``ConfigError`` naming ``key_file`` when it cannot be read or
        is not at least 16 bytes of hex.
        """
        if self.key_file is None:
            return None
        try:
            text = self.key_file.read_text().strip()
            key = bytes.fromhex(text)
        except OSError as exc:
            raise ConfigError("key_file", f"cannot read {self.key_file}: {exc.strerror}") from None
        except ValueError:
            raise ConfigError(
                "key_file", f"{self.key_file} is not hex (make one: errmesh keygen)"
            ) from None
        if len(key) < 16:
            raise ConfigError("key_file", f"{self.key_file} holds {len(key)} bytes; at least 16")
        return key

    @property
    def sink_name(self) -> Literal["file", "github", "none"]:
        """The sink ``auto`` stands for: GitHub when a repository is set, else files."""
        if not self.auto_issue:
            return "none"
        if self.sink == "auto":
            return "github" if self.repo else "file"
        return self.sink

    def public_items(self) -> list[tuple[str, str]]:
        """Settings for display, with the token masked."""
        out = []
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if f.name == "github_token":
                value = "(set)" if value else "(not set)"
            elif isinstance(value, tuple):
                value = ",".join(value)
            out.append((f.name, "" if value is None else str(value)))
        return out


# --------------------------------------------------------------------------
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


def _positive_float(value: object) -> float:
    if isinstance(value, bool):
        raise ValueError("expected a number of seconds")
    try:
        number = float(value) if isinstance(value, (int, float, str)) else None
    except ValueError:
        number = None
    if number is None or number != number or number < 0 or number == float("inf"):
        raise ValueError(f"{value!r} is not a non-negative number of seconds")
    return number


def _int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise ValueError(f"{value!r} is not an integer")
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{value!r} is not an integer") from None


def _positive_int(value: object) -> int:
    number = _int(value)
    if number <= 0:
        raise ValueError(f"{value!r} is not a positive integer")
    return number


def _path(value: object) -> Path:
    if isinstance(value, Path):
        return value.expanduser()
    text = _str(value)
    if not text:
        raise ValueError("empty path")
    return Path(text).expanduser()


def _optional_path(value: object) -> Path | None:
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


@dataclass(frozen=True, slots=True)
class Setting:
    """One row of the settings table: field name, parser, env names."""

    name: str
    parse: Callable[[object], Any]
    env: tuple[str, ...]


def _s(name: str, parse: Callable[[object], Any], *aliases: str) -> Setting:
    return Setting(name, parse, ("ERRMESH_" + name.upper(), *aliases))


#: The settings, their parsers and their environment names (first wins).
SETTINGS: tuple[Setting, ...] = (
    _s("cluster", _name),
    _s("app", _str),
    _s("app_version", _str),
    _s("state_dir", _path),
    _s("data_dir", _path),
    _s("issues_dir", _optional_path),
    _s("sink", _choice("auto", "file", "github", "none")),
    _s("auto_issue", _bool, "IPFS_AUTO_ISSUE"),
    _s("auto_pr", _bool, "IPFS_AUTO_PR"),
    _s("auto_heal", _bool, "IPFS_AUTO_HEAL"),
    _s("repo", _repo, "IPFS_REPO"),
    _s("github_token", _optional_str, "GITHUB_TOKEN", "GH_TOKEN"),
    _s("github_api_url", _url),
    _s("github_dry_run", _bool),
    _s("github_timeout", _positive_float),
    _s("github_per_minute", _positive_int),
    _s("github_per_hour", _positive_int),
    _s("github_min_interval", _positive_float),
    _s("fixer", _command),
    _s("fixer_timeout", _positive_float),
    _s("window", _positive_float),
    _s("settle", _positive_float),
    _s("reopen_on_regression", _bool),
    _s("log_lines", _positive_int),
    _s("spool_max_reports", _positive_int),
    _s("spool_max_bytes", _positive_int),
    _s("spool_sync", _choice("full", "normal")),
    _s("max_signatures", _positive_int),
    _s("scrub_patterns", _tuple),
    _s("scrub_keys", _tuple),
    _s("in_app_include", _tuple),
    _s("in_app_exclude", _tuple),
    _s("capture_keyboard_interrupt", _bool),
    _s("peers", _tuple),
    _s("key_file", _optional_path),
    _s("listen", _tuple),
    _s("eligible", _bool),
    _s("priority", _int),
    _s("heartbeat", _positive_float),
    _s("ack_timeout", _positive_float),
    _s("status_port", _int),
    _s("log_level", _choice("debug", "info", "warning", "error")),
)
_BY_NAME = {s.name: s for s in SETTINGS}


def validate_flags(flags: Mapping[str, object]) -> dict[str, Any]:
    """Parse explicit options (``install(**options)``, CLI flags) eagerly.

    Raises ``ConfigError`` for an unknown option or a bad value, so that a
    programmer's mistake shows at ``install()`` rather than at the first crash.
    ``None`` values mean "not given".
    """
    out: dict[str, Any] = {}
    for key, value in flags.items():
        if value is None:
            continue
        setting = _BY_NAME.get(key)
        if setting is None:
            known = ", ".join(sorted(_BY_NAME))
            raise ConfigError(key, f"unknown option (known: {known})")
        try:
            out[key] = setting.parse(value)
        except ValueError as exc:
            raise ConfigError(key, str(exc)) from None
    return out


def _xdg(environ: Mapping[str, str], var: str, fallback: str) -> Path:
    value = environ.get(var, "").strip()
    if value and os.path.isabs(value):
        return Path(value)
    home = environ.get("HOME") or os.path.expanduser("~")
    return Path(home) / fallback


def config_file_path(environ: Mapping[str, str]) -> Path:
    """``$ERRMESH_CONFIG``, else ``$XDG_CONFIG_HOME/errmesh/config.toml``."""
    explicit = environ.get("ERRMESH_CONFIG", "").strip()
    if explicit:
        return Path(explicit).expanduser()
    return _xdg(environ, "XDG_CONFIG_HOME", ".config") / "errmesh" / "config.toml"


def resolve(
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    file_values: Mapping[str, object] | None = None,
    file_name: str = "config.toml",
) -> Config:
    """Build the :class:`Config` from the three sources; pure.

    Raises ``ConfigError`` naming the offending setting as written in its
    source (flag name, environment variable, or ``file:key``).
    """
    env = environ or {}
    values: dict[str, Any] = {
        "state_dir": _xdg(env, "XDG_STATE_HOME", ".local/state") / "errmesh",
        "data_dir": _xdg(env, "XDG_DATA_HOME", ".local/share") / "errmesh",
    }
    for key, raw in (file_values or {}).items():
        setting = _BY_NAME.get(key)
        if setting is None:
            raise ConfigError(f"{file_name}: {key}", "unknown setting")
        try:
            values[key] = setting.parse(raw)
        except ValueError as exc:
            raise ConfigError(f"{file_name}: {key}", str(exc)) from None
    for setting in SETTINGS:
        for var in setting.env:
            raw_env = env.get(var)
            if raw_env is None:
                continue
            try:
                values[setting.name] = setting.parse(raw_env)
            except ValueError as exc:
                raise ConfigError(var, str(exc)) from None
            break
    values.update(validate_flags(flags or {}))
    return Config(**values)


def load_config(
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_file: bool = True,
) -> Config:
    """Read the environment and the TOML file, then :func:`resolve`.

    Raises ``ConfigError`` for a bad value or an unreadable/invalid file that
    was named explicitly; a missing default file is simply absent.
    """
    env = dict(os.environ if environ is None else environ)
    file_values: dict[str, object] = {}
    path = config_file_path(env)
    if read_file:
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            if "ERRMESH_CONFIG" in env:
                raise ConfigError("ERRMESH_CONFIG", f"{path} does not exist") from None
            data = b""
        except OSError as exc:
            raise ConfigError(str(path), f"cannot read: {exc.strerror}") from None
        if data:
            file_values = _parse_toml(data, path)
    return resolve(flags=flags, environ=env, file_values=file_values, file_name=str(path))


def _parse_toml(data: bytes, path: Path) -> dict[str, object]:
    try:
        import tomllib  # type: ignore[import-not-found,unused-ignore]
    except ModuleNotFoundError:  # Python 3.10
        import tomli as tomllib  # type: ignore[no-redef,import-not-found,unused-ignore]
    try:
        parsed: dict[str, object] = tomllib.loads(data.decode("utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(str(path), f"invalid TOML: {exc}") from None
    # Settings may sit at the top level or under an [errmesh] table.
    section = parsed.get("errmesh")
    if isinstance(section, dict):
        merged = {k: v for k, v in parsed.items() if k != "errmesh"}
        merged.update(section)
        return merged
    return parsed
