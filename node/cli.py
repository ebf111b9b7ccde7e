"""The ``errmesh`` command line: thin wrappers over the library.

Global options are settings (they win over the environment and the config
file, like ``node.install(**options)``); every command builds its
configuration once through ``node.config.load_config``.
"""

from __future__ import annotations

import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from node.cli_config import show_config
from node.cli_members import members
from node.config import Config, load_config
from node.errors import ConfigError, NodeError

if TYPE_CHECKING:
    from mesh.store import Store
    from node.progress import Progress

__all__ = ["main"]


def _config(ctx: click.Context, *, strict: bool = True, **extra: Any) -> Config:
    """The command's configuration; operator commands are strict (a bad setting
    stops them with one line, exit 2), ``run`` is not (see ``load_config``)."""
    flags = {**ctx.find_root().obj, **{k: v for k, v in extra.items() if v is not None}}
    if strict:
        return load_config(flags, strict=True)
    return load_config(flags, problems=_IGNORED_OPTIONS)


class _Cli(click.Group):
    """The root group: a user's mistake is one line on stderr, not a traceback.

    A bad setting (``ConfigError``) exits 2 like any usage error; a path or
    address that cannot be used (the store, a key file, a listen address)
    exits 1. Anything else is a bug of ours: one line and the hint to rerun
    with ``--log-level debug``, which shows every traceback.
    """

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except Exception as failure:
            if _debug(ctx):
                raise
            code, line = describe_failure(failure)
            click.echo(f"errmesh: {line}", err=True)
            ctx.exit(code)


def describe_failure(failure: BaseException) -> tuple[int, str]:
    """The exit status and the one line a failed command prints."""
    from mesh.errors import MeshError

    inner = getattr(failure, "exceptions", None)  # an exception group (trio nurseries)
    while isinstance(inner, tuple) and len(inner) == 1 and isinstance(inner[0], BaseException):
        failure = inner[0]
        inner = getattr(failure, "exceptions", None)
    if isinstance(failure, ConfigError):
        return 2, str(failure)
    if isinstance(failure, (MeshError, NodeError, OSError)):
        return 1, " ".join(str(failure).split())
    return 1, (
        f"internal error: {type(failure).__name__}: {failure} "
        "(rerun with --log-level debug for the traceback)"
    )


def _debug(ctx: click.Context) -> bool:
    from node.settings import load_values

    flags = ctx.find_root().obj or {}
    if "log_level" in flags:
        return bool(flags["log_level"] == "debug")
    return bool(load_values(read_file=False, problems=[]).get("log_level") == "debug")


@click.group(cls=_Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--cluster", help="Cluster name (one spool and one issue folder per cluster).")
@click.option("--state-dir", type=click.Path(path_type=Path), help="Where the spool lives.")
@click.option("--data-dir", type=click.Path(path_type=Path), help="Where the file sink writes.")
@click.option("--issues-dir", type=click.Path(path_type=Path), help="The file sink's folder.")
@click.option("--sink", type=click.Choice(["auto", "file", "github", "none"]))
@click.option("--window", type=float, help="Seconds between updates of one issue.")
@click.option(
    "--log-level",
    type=click.Choice(["debug", "info", "warning", "error"]),
    help="Relay log level; debug also shows tracebacks of failed commands.",
)
@click.version_option(package_name="errmesh")
@click.pass_context
def cli(ctx: click.Context, /, **options: Any) -> None:
    """errmesh: every failure, one well-written issue, no central server."""
    ctx.obj = {k: v for k, v in options.items() if v is not None}


@cli.command(context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False})
@click.option("--app", help="Name shown in reports (default: the program's name).")
@click.option("--name", "job", default="", help="The job's name: its reports group by it.")
@click.option(
    "--timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Seconds after which the job is killed and reported as timed out (exit 124).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context, app: str | None, job: str, timeout: float | None, command: Sequence[str]
) -> None:
    """Run COMMAND; if it fails, report it. Exits as COMMAND did.

    Usage: errmesh run [--app NAME] [--name JOB] [--timeout S] -- CMD ARGS...
    """
    from node.runner import exit_like, run_command

    argv = list(command)
    config = _config(ctx, strict=False, app=app)
    result = run_command(argv, tail_lines=config.log_lines, timeout=timeout)
    if result.failed:
        _report_command(config, argv, result, job)
    exit_like(result)


def _report_command(config: Config, argv: list[str], result: Any, job: str = "") -> None:
    """The error path of ``errmesh run``: never changes the exit status."""
    from node.capture import warn_failure

    try:
        from node.context import EventContext, host_facts
        from node.event import from_command
        from node.pipeline import Pipeline

        facts = host_facts()
        report = from_command(
            argv,
            exit_code=result.exit_code,
            signal_number=result.signal,
            stderr_tail=result.stderr_tail,
            stdout_tail=result.stdout_tail,
            name=job.strip(),
            timed_out_after=result.timed_out_after,
            ctx=EventContext(
                app=config.app,
                app_version=config.app_version,
                host=facts["host"],
                os=facts["os"],
                python=facts["python"],
                facts=(("cwd", os.getcwd()),),
                environment=config.environment,
                release=config.release,
            ),
            now=time.time(),
        )
        outcome = Pipeline(config).process(report, exiting=True)
        if outcome.round is not None and outcome.round.errors:
            warn_failure("; ".join(outcome.round.errors))
    except BaseException as failure:
        warn_failure(f"{type(failure).__name__}: {failure}")


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Spool depth, signatures by last seen with counts, hosts and issue links."""
    from node.cli_table import local_relay_status, status_lines, width
    from node.compose import open_store

    config = _config(ctx)
    with open_store(config) as store:
        stats = store.statistics()
        states = store.states()
    rows = [_state_row(s) for s in states]
    data: dict[str, Any] = {
        "cluster": config.cluster,
        "role": "solo" if not config.peers else "peer",
        "store": stats.path,
        "origin": stats.origin,
        "spool_pending": stats.pending,
        "spool_dropped": stats.spool_dropped,
        "signatures_evicted": stats.signatures_evicted,
        "sink": config.sink_name,
        "signatures": rows,
    }
    relay = local_relay_status(config.cluster_state_dir / "relay-status.json")
    if relay is not None:
        data["role"] = relay.get("role", "?")
        data["relay"] = relay
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    click.echo(f"cluster {data['cluster']} ({data['role']}), sink: {data['sink']}")
    if relay is not None:
        click.echo(
            f"relay {relay.get('peer_id')}: {len(relay.get('peers', []))} peers, "
            f"leader {relay.get('leader')} (term {relay.get('term')}), "
            f"status {relay.get('status_url')}"
        )
        rejected = relay.get("rejected") or {}
        if rejected:
            click.echo("rejected: " + ", ".join(f"{k} {v}" for k, v in sorted(rejected.items())))
    click.echo(f"store {stats.path}")
    click.echo(f"spool: {stats.pending} pending, {stats.spool_dropped} dropped")
    if not rows and stats.pending:
        click.echo("no errors merged yet: `errmesh drain` (or a running relay) merges the spool")
        return
    for line in status_lines(rows, time.time(), min(width(), 120)):
        click.echo(line)


def _state_row(state: Any) -> dict[str, Any]:
    from github_sink.render import render_title

    link = state.link
    return {
        "signature": state.signature.hex()[:12],
        "title": render_title(state),
        "occurrences": state.total,
        "hosts": list(state.hosts),
        "first_seen": state.first_seen,
        "last_seen": state.last_seen,
        "severity": state.severity.name.lower(),
        "issue": None
        if link is None
        else {
            "number": link.number,
            "url": link.url,
            "state": link.state,
            "synced": link.synced_total,
        },
    }


@cli.group()
def issues() -> None:
    """The file sink's issues."""


@issues.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def issues_list(ctx: click.Context, as_json: bool) -> None:
    """List the issues in the file sink's folder."""
    from github_sink.file_sink import FileSink

    config = _config(ctx)
    sink = FileSink(config.resolved_issues_dir)
    index = sink.read_index()
    if as_json:
        click.echo(json.dumps(index, indent=2))
        return
    click.echo(f"issues in {sink.directory}")
    for sig, entry in sorted(index["issues"].items(), key=lambda kv: kv[1]["number"]):
        click.echo(
            f"#{entry['number']:<4} {entry['state']:<7} {entry.get('total', 0):>6}x  "
            f"{sig[:12]}  {entry.get('title', '')}"
        )


@issues.command("close")
@click.argument("signature")
@click.pass_context
def issues_close(ctx: click.Context, signature: str) -> None:
    """Close the issue of SIGNATURE (a prefix is enough); new occurrences reopen it.

    In a mesh this machine's relay sends the close to the others (its folder
    is its copy of the mesh's issues); without a relay here nobody would.
    """
    from github_sink.errors import SinkError
    from github_sink.file_sink import FileSink
    from node.handover import nudge_relay

    config = _config(ctx)
    elsewhere = (
        "no errmesh relay runs on this machine, so the mesh would not hear of it: "
        "run `errmesh issues close` on a relay's machine (any relay: its folder "
        "holds every issue)"
    )
    try:
        path = FileSink(config.resolved_issues_dir).close(signature, now=time.time())
    except SinkError as exc:
        if config.peers and not nudge_relay(config.relay_socket):
            raise click.ClickException(f"{exc}; {elsewhere}") from None
        raise click.ClickException(str(exc)) from None
    # The relay would see the change within a second anyway; the nudge makes it now.
    if not nudge_relay(config.relay_socket) and config.peers:
        click.echo(f"closed {path} here only: {elsewhere}", err=True)
        return
    click.echo(f"closed {path}")


_PROGRESS = click.option(
    "--progress/--no-progress",
    default=None,
    help="Counts on stderr while it works (default: when stderr is a terminal).",
)


@cli.command()
@_PROGRESS
@click.pass_context
def drain(ctx: click.Context, progress: bool | None) -> None:
    """Merge what failed processes left in the spool and do what is due (cron-able)."""
    from node.compose import SoloDelivery, open_store
    from node.progress import Progress, wanted

    config = _config(ctx)
    with open_store(config) as store:
        pending = store.statistics().pending
        counter = Progress("merging the spool", pending, enabled=wanted(progress), unit="reports")
        merged = _merge_spool(store, counter)
        result = SoloDelivery(config).deliver(store, [], exiting=False, merged=merged)
    if result is None:
        click.echo("merged the spool; issues are disabled")
        return
    click.echo(
        f"opened {result.opened}, updated {result.updated}, reopened {result.reopened}, "
        f"failed {result.failed}"
    )
    for error in result.errors:
        click.echo(f"  {error}", err=True)


def _merge_spool(store: Store, counter: Progress, batch: int = 500) -> set[bytes]:
    """Merge the whole spool a batch at a time (``Progress`` counting); returns the
    signatures merged, which the round then files without waiting for ``settle``."""
    merged: set[bytes] = set()
    rounds = counter.total // batch + 2 if counter.total is not None else 1_000_000
    for _ in range(rounds):  # bounded: a row that would not leave the spool cannot loop
        reports = store.pending(limit=batch)
        if not reports:
            break
        store.merge_reports(reports)
        merged.update(r.signature for r in reports)
        counter.advance(len(reports))
    counter.finish()
    return merged


cli.add_command(show_config)
cli.add_command(members)


@cli.command()
@click.argument("path", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite an existing key file.")
@click.option(
    "--rotate", "step", flag_value="rotate", help="Step 1 of 3: add a next key, accepted beside."
)
@click.option(
    "--promote",
    "step",
    flag_value="promote",
    help="Step 2: the next key signs; the old still accepted.",
)
@click.option("--retire", "step", flag_value="retire", help="Step 3: drop the old key.")
@click.option(
    "--swarm-key",
    type=click.Path(path_type=Path),
    help="Write the private network's swarm.key (go/kubo/js format) that PATH's key derives.",
)
def keygen(path: Path, force: bool, step: str | None, swarm_key: Path | None) -> None:
    """Write a new cluster key (32 random bytes, hex) to PATH with mode 0600.

    A fleet rolls its key without downtime in three steps, each done on every
    host before the next: --rotate, --promote, --retire. Relays re-read
    their key file within seconds; see the README. --swarm-key OUT hands
    a go, kubo or js peer the private network's key (it needs no cluster key
    file, but still signs nothing errmesh accepts without one).
    """
    if swarm_key is not None:
        _write_swarm_key(path, swarm_key, force)
        return
    if step is None:
        _write_private(path, os.urandom(32).hex() + "\n", force)
        click.echo(f"wrote {path}")
        return
    _rotation_step(path, step)


def _write_private(path: Path, text: str, force: bool) -> None:
    """Create ``path`` with mode 0600 (replace it only with ``force``)."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_TRUNC if force else os.O_EXCL)
    try:
        fd = os.open(path, flags, 0o600)
    except FileExistsError:
        raise click.ClickException(f"{path} exists; use --force to replace it") from None
    with os.fdopen(fd, "w") as handle:
        handle.write(text)
    os.chmod(path, 0o600)


def _write_swarm_key(path: Path, out: Path, force: bool) -> None:
    from mesh.pnet import format_swarm_key
    from node.config import network_keys, read_key_file

    try:
        psk = network_keys(read_key_file(path))[0]
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    _write_private(out, format_swarm_key(psk), force)
    click.echo(f"wrote {out} (the private network of {path}'s current key)")


def _rotation_step(path: Path, step: str) -> None:
    """One step of a key rotation, written atomically (a relay may read it any time)."""
    from mesh.errors import LocalError
    from mesh.keyring import format_keys, promote, retire, rotate
    from node.config import read_key_file

    try:
        ring = read_key_file(path)
        if step == "rotate":
            ring = rotate(ring, os.urandom(32))
        else:
            ring = promote(ring) if step == "promote" else retire(ring)
    except ConfigError as exc:
        raise click.ClickException(exc.message) from None
    except LocalError as exc:
        raise click.ClickException(f"{path}: {exc}") from None
    tmp = path.with_name(f".{path.name}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(format_keys(ring))
        handle.flush()
        os.fsync(handle.fileno())
    os.chmod(tmp, 0o600)
    os.replace(tmp, path)
    said = {
        "rotate": "added a next key; the current key still signs. Copy the file to every "
        "host, then run --promote",
        "promote": "the next key now signs; the old one is still accepted. When every host "
        "has this, run --retire",
        "retire": "only the current key is left",
    }
    click.echo(f"{path}: {said[step]}")


@cli.command()
@click.option("--listen", multiple=True, help="Multiaddr to listen on (repeatable).")
@click.option("--bootstrap", multiple=True, help="Full multiaddr of a peer to keep connected.")
@click.option("--key-file", type=click.Path(path_type=Path), help="Cluster key (errmesh keygen).")
@click.option("--priority", type=int, help="Leader rank: higher wins.")
@click.option("--no-leader", is_flag=True, help="Never lead (no sink actions here).")
@click.option("--status-listen", help="HOST:PORT of /status, /metrics and /healthz.")
@click.option("--log-format", type=click.Choice(["text", "json"]), help="Log lines on stderr.")
@click.pass_context
def relay(
    ctx: click.Context,
    listen: tuple[str, ...],
    bootstrap: tuple[str, ...],
    key_file: Path | None,
    priority: int | None,
    no_leader: bool,
    status_listen: str | None,
    log_format: str | None,
) -> None:
    """Run a long-lived mesh peer: bootstrap address, spool drainer, leader candidate."""
    from node.service import run_relay

    config = _config(
        ctx,
        listen=listen or None,
        peers=bootstrap or None,
        key_file=key_file,
        priority=priority,
        eligible=False if no_leader else None,
        status_listen=status_listen,
        log_format=log_format,
    )
    run_relay(config)


@cli.command()
@click.option("--dir", "directory", type=click.Path(path_type=Path), default=Path(".errmesh-demo"))
@click.option("--rounds", type=int, default=3, help="How many times each failure repeats.")
@_PROGRESS
def demo(directory: Path, rounds: int, progress: bool | None) -> None:
    """Fail some programs in a few distinct ways and show the issues produced."""
    from node.demo import run_demo
    from node.progress import wanted

    sys.exit(run_demo(directory, rounds=rounds, progress=wanted(progress)))


#: Global options ``main`` left out of an ``errmesh run`` command line.
_IGNORED_OPTIONS: list[ConfigError] = []


def lenient_run_args(args: Sequence[str]) -> tuple[list[str], list[ConfigError]]:
    """``args`` without the global options that would stop ``errmesh run``.

    A wrapped program (a cron job) must run whatever errmesh's own options
    say: an unknown global option or a bad value (``--window soon``) would
    make click exit 2 before the program starts. Those are left out, and
    said once (with the settings' other problems); the valid ones still
    hold, so reports do not silently go to another cluster. Any other
    command line comes back unchanged: operator commands stay strict.
    """
    options = {
        name: param
        for param in cli.params
        if isinstance(param, click.Option)
        for name in param.opts
    }
    kept: list[str] = []
    problems: list[ConfigError] = []
    i = 0
    while i < len(args) and args[i].startswith("-") and args[i] != "--":
        name, eq, value = args[i].partition("=")
        option = options.get(name)
        if option is None or option.is_flag or option.is_eager:
            if option is None and name not in ("-h", "--help"):
                problems.append(ConfigError(name, "no such option"))
                following = args[i + 1] if i + 1 < len(args) else "run"
                if not eq and following != "run" and not following.startswith("-"):
                    i += 1  # most likely its value: ``--colour auto run ...``
            else:
                kept.append(args[i])
            i += 1
            continue
        if not eq:
            if i + 1 >= len(args):
                return list(args), []  # nothing after it: no command to run
            value = args[i + 1]
            i += 1
        i += 1
        try:
            option.type.convert(value, option, None)
        except click.BadParameter as exc:
            problems.append(ConfigError(name, exc.message))
            continue
        kept += [name, value]
    if i >= len(args) or args[i] != "run" or not problems:
        return list(args), []
    return kept + list(args[i:]), problems


def main(argv: Sequence[str] | None = None) -> None:
    """Console entry point."""
    args, problems = lenient_run_args(list(argv) if argv is not None else sys.argv[1:])
    _IGNORED_OPTIONS[:] = problems
    cli.main(args=args, prog_name="errmesh")
