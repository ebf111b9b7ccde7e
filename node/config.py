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

The table of settings, their parsers and the precedence live in
:mod:`node.settings`, which builds plain values without importing
``dataclasses`` or ``pathlib`` (the local hand-over reads them there); this
module makes them a :class:`Config`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from mesh.bundling import DEFAULT_SETTLE, DEFAULT_WINDOW
from node.errors import ConfigError
from node.settings import (
    PATH_SETTINGS,
    SETTINGS,
    load_values,
    parse_bool,
    resolve_values,
    say_problems,
    validate_flags,
)

__all__ = [
    "SETTINGS",
    "Config",
    "load_config",
    "parse_bool",
    "resolve",
    "validate_flags",
]

SinkName = Literal["auto", "file", "github", "none"]


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
    window: float = DEFAULT_WINDOW
    settle: float = DEFAULT_SETTLE
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
    values = resolve_values(
        flags=flags, environ=environ, file_values=file_values, file_name=file_name
    )
    return _config(values)


def load_config(
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    read_file: bool = True,
    strict: bool = False,
    problems: Sequence[ConfigError] = (),
) -> Config:
    """Read the environment and the TOML file, then :func:`resolve`.

    Lenient by default, because most callers run inside someone's program
    (capture, ``errmesh run``) and must never stop it for errmesh's own
    settings: a bad value falls back to the next source or its default, an
    unreadable or invalid file is ignored, and one stderr line says so
    (:func:`node.settings.say_problems`). ``strict=True`` (operator commands,
    a relay) raises ``ConfigError`` for a bad value or for an unreadable,
    invalid or missing file that was named explicitly; a missing default file
    is simply absent either way. ``problems`` found before (the command
    line's, lenient too) are said on the same line.
    """
    if strict:
        return _config(load_values(flags, environ, read_file=read_file))
    found: list[ConfigError] = list(problems)
    values = load_values(flags, environ, read_file=read_file, problems=found)
    say_problems(found)
    return _config(values)


def _config(values: dict[str, object]) -> Config:
    for name in PATH_SETTINGS:
        value = values.get(name)
        if isinstance(value, str):
            values[name] = Path(value)
    return Config(**values)  # type: ignore[arg-type]
