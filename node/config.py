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
from typing import TYPE_CHECKING, Literal

from node.errors import ConfigError
from node.settings import (
    DEFAULTS,
    PATH_SETTINGS,
    SETTINGS,
    load_values,
    parse_bool,
    resolve_values,
    say_problems,
    validate_flags,
)

if TYPE_CHECKING:
    from mesh.keyring import KeyRing

__all__ = [
    "SETTINGS",
    "Config",
    "load_config",
    "network_keys",
    "parse_bool",
    "read_key_file",
    "resolve",
    "validate_flags",
]

SinkName = Literal["auto", "file", "github", "none"]
#: Each field's default is its row's in the settings table (one default per setting).
_D = DEFAULTS


@dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """Every errmesh setting, validated. Build it with :func:`load_config`."""

    cluster: str = _D["cluster"]
    app: str = _D["app"]
    app_version: str = _D["app_version"]
    #: Sentry's environment and release, shown in every report (``release``
    #: falls back to the host package's ``__version__``: node/scope.py).
    environment: str = _D["environment"]
    release: str = _D["release"]
    state_dir: Path = Path(_D["state_dir"])
    data_dir: Path = Path(_D["data_dir"])
    issues_dir: Path | None = _D["issues_dir"]
    sink: SinkName = _D["sink"]
    auto_issue: bool = _D["auto_issue"]
    auto_pr: bool = _D["auto_pr"]
    auto_heal: bool = _D["auto_heal"]
    repo: str | None = _D["repo"]
    github_token: str | None = field(default=_D["github_token"], repr=False)
    github_api_url: str = _D["github_api_url"]
    github_dry_run: bool = _D["github_dry_run"]
    github_timeout: float = _D["github_timeout"]
    #: GitHub's content-creation limits (the notes' 80/min, 500/h, 1 s apart).
    github_per_minute: int = _D["github_per_minute"]
    github_per_hour: int = _D["github_per_hour"]
    github_min_interval: float = _D["github_min_interval"]
    fixer: tuple[str, ...] = _D["fixer"]
    fixer_timeout: float = _D["fixer_timeout"]
    window: float = _D["window"]
    settle: float = _D["settle"]
    reopen_on_regression: bool = _D["reopen_on_regression"]
    log_lines: int = _D["log_lines"]
    spool_max_reports: int = _D["spool_max_reports"]
    spool_max_bytes: int = _D["spool_max_bytes"]
    spool_sync: Literal["full", "normal"] = _D["spool_sync"]
    max_signatures: int = _D["max_signatures"]
    scrub_patterns: tuple[str, ...] = _D["scrub_patterns"]
    scrub_keys: tuple[str, ...] = _D["scrub_keys"]
    in_app_include: tuple[str, ...] = _D["in_app_include"]
    in_app_exclude: tuple[str, ...] = _D["in_app_exclude"]
    #: Source lines around the innermost in-app frames (node/frames.py, issue 14).
    source_context: bool = _D["source_context"]
    capture_keyboard_interrupt: bool = _D["capture_keyboard_interrupt"]
    #: Log records at this level or above become reports ("" off; node/log_capture.py).
    capture_log_level: str = _D["capture_log_level"]
    #: Exception type names never reported (the type or a base, bare or qualified).
    ignore_errors: tuple[str, ...] = _D["ignore_errors"]
    #: The share of occurrences that keep their detail; all are counted (mesh/sampling.py).
    sample_rate: float = _D["sample_rate"]
    #: Occurrences of one signature that keep their detail per minute on this host (0: all).
    max_reports_per_minute: int = _D["max_reports_per_minute"]
    peers: tuple[str, ...] = _D["peers"]
    key_file: Path | None = _D["key_file"]
    #: With a cluster key, only peers holding it complete a connection (pnet).
    private_network: bool = _D["private_network"]
    listen: tuple[str, ...] = _D["listen"]
    eligible: bool = _D["eligible"]
    priority: int = _D["priority"]
    heartbeat: float = _D["heartbeat"]
    digest_every: float = _D["digest_every"]
    digest_batch: int = _D["digest_batch"]
    backlog_max: int = _D["backlog_max"]
    ack_timeout: float = _D["ack_timeout"]
    #: The status server's port when ``status_listen`` leaves it 0 (kept from before it).
    status_port: int = _D["status_port"]
    #: Where the status server (/status, /metrics, /healthz) listens: ``HOST:PORT``.
    status_listen: str = _D["status_listen"]
    #: The relay's log level on stderr (elections, sink errors, bans).
    log_level: Literal["debug", "info", "warning", "error"] = _D["log_level"]
    #: The relay's log lines: ``text``, or ``json`` (one object per line; node/logformat.py).
    log_format: Literal["text", "json"] = _D["log_format"]

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
    def status_address(self) -> tuple[str, int]:
        """(host, port) the status server binds: ``status_listen``, whose port 0
        defers to ``status_port``."""
        host, _, port = self.status_listen.rpartition(":")
        return host.strip("[]"), int(port) or self.status_port

    @property
    def relay_socket(self) -> Path:
        """The local relay's nudge socket (next to the spool it drains)."""
        return self.cluster_state_dir / "relay.sock"

    def cluster_key(self) -> bytes | None:
        """The current cluster key (frames are signed with it), or None when none is set.

        Raises ``ConfigError`` as :meth:`cluster_keys` does.
        """
        ring = self.cluster_keys()
        return None if ring is None else ring.current

    def network_keys(self, ring: KeyRing | None) -> tuple[bytes, ...]:
        """The private network's pre-shared keys for ``ring`` (from :meth:`cluster_keys`,
        read once by the caller), one per accepted key (``mesh.pnet.derive_psk``);
        empty when keyless or ``private_network`` is off."""
        return network_keys(ring) if ring is not None and self.private_network else ()

    def cluster_keys(self) -> KeyRing | None:
        """Every key in ``key_file`` (current first; two during a rotation), or None.

        Raises ``ConfigError`` naming ``key_file`` when it cannot be read or
        does not hold one or two hex keys of at least 16 bytes.
        """
        if self.key_file is None:
            return None
        return read_key_file(self.key_file)

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
    sources: dict[str, str] | None = None,
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
    line's, lenient too) are said on the same line. ``sources`` receives
    where each setting's value came from (``errmesh config``).
    """
    if strict:
        return _config(load_values(flags, environ, read_file=read_file, sources=sources))
    found: list[ConfigError] = list(problems)
    values = load_values(flags, environ, read_file=read_file, problems=found, sources=sources)
    say_problems(found)
    return _config(values)


def _config(values: dict[str, object]) -> Config:
    for name in PATH_SETTINGS:
        value = values.get(name)
        if isinstance(value, str):
            values[name] = Path(value)
    return Config(**values)  # type: ignore[arg-type]


def read_key_file(path: Path) -> KeyRing:
    """The key ring in ``path``. Raises ``ConfigError`` naming ``key_file``."""
    from mesh.errors import LocalError
    from mesh.keyring import parse_keys

    try:
        text = path.read_text()
    except OSError as exc:
        raise ConfigError("key_file", f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError("key_file", f"{path} is not text (make one: errmesh keygen)") from None
    try:
        return parse_keys(text)
    except LocalError as exc:
        raise ConfigError("key_file", f"{path}: {exc}") from None


def network_keys(ring: KeyRing) -> tuple[bytes, ...]:
    """The pnet pre-shared keys of a key ring, the current key's first."""
    from mesh.pnet import derive_psk

    return tuple(derive_psk(key) for key in ring.accepted)
