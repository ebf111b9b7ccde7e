"""Commit first, enrich after: the first durable byte of a dying process's report.

A failing process that is killed (OOM killer, ``kill -9``, a container
stopped, a CI step's timeout) between its ``raise`` and the commit of its
report leaves nothing. Building, scrubbing and encoding the report needs
the scrubber, the event builder and msgpack (~20 ms of imports on a cold
process, ~60 ms more for the full pipeline), so this module commits a
**skeleton** first, with nothing but ``sqlite3``: the exception's type, its
causes' types and its frames' code locations (module, function, line, file).
Those are code, not data: no message, argv, log line or environment value is
in a skeleton, so nothing in it needs scrubbing.

The caller then builds the real report and replaces the skeleton with it in
one transaction (:func:`replace_sql` for the hand-over row; the full path
drops it in the spool commit, :meth:`mesh.store.Store.spool`). If the
process dies in between, whoever opens the store next takes the skeleton
once its writer is gone (:func:`stale`) and spools a report without the
message (:data:`LOST_MESSAGE`): the occurrence is counted, under the
signature of its type and call site.

The payload is plain text (one field per line, tab separated) so that
writing it imports nothing and reading it back cannot execute anything.
"""

from __future__ import annotations

import os
import sys

from node.chain import causes, qualified_name

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence
    from types import TracebackType
    from typing import Any

    from node.event import Event

    #: The environment, the settings a dying process reads, the cluster's state folder.
    Located = tuple[Mapping[str, str], dict[str, Any], str]

__all__ = [
    "GRACE",
    "LOST_MESSAGE",
    "MAGIC",
    "commit",
    "decode",
    "encode",
    "locate",
    "record",
    "stale",
    "to_event",
]

_DB_NAME = "errmesh.sqlite3"  # mesh.store.DB_NAME (pinned by the tests)
#: First line of every skeleton payload (and its version).
MAGIC = "errmesh-skeleton 1"
#: The message of a report rebuilt from a skeleton.
LOST_MESSAGE = "<not recorded: the process ended before errmesh had scrubbed its message>"
#: A skeleton older than this is taken even when its writer's pid is alive (reused, hung).
GRACE = 600.0
#: Frames kept (innermost), causes kept: as bounded as a report.
_MAX_FRAMES = 64
_MAX_CAUSES = 8
_MAX_FIELD = 512


def _field(value: object) -> str:
    text = str(value)[:_MAX_FIELD]
    return text.replace("\t", " ").replace("\n", " ").replace("\r", " ")


def encode(
    exc: BaseException,
    *,
    now: float,
    app: str,
    caller_package: str,
    in_app_include: Sequence[str],
    in_app_exclude: Sequence[str],
    fingerprint: Sequence[str] | None,
) -> str:
    """The skeleton of ``exc``: code locations only, innermost frames kept."""
    lines = [MAGIC, f"created\t{now!r}", f"pid\t{os.getpid()}"]
    lines.append(f"type\t{_field(qualified_name(type(exc)))}")
    lines.append("mro" + "".join(f"\t{_field(qualified_name(c))}" for c in type(exc).__mro__))
    lines.append(f"app\t{_field(app)}")
    lines.append(f"caller\t{_field(caller_package)}")
    lines.extend(f"include\t{_field(p)}" for p in in_app_include)
    lines.extend(f"exclude\t{_field(p)}" for p in in_app_exclude)
    if fingerprint is not None:
        lines.append("fingerprint" + "".join(f"\t{_field(p)}" for p in fingerprint))
    lines.extend(
        f"cause\t{relation}\t{_field(qualified_name(type(nxt)))}"
        for nxt, relation in causes(exc, _MAX_CAUSES)
    )
    lines.extend(_frame_lines(exc.__traceback__))
    return "\n".join(lines)


def _frame_lines(tb: TracebackType | None) -> list[str]:
    ring: list[str] = []
    while tb is not None:
        frame = tb.tb_frame
        code = frame.f_code
        module = str(frame.f_globals.get("__name__", "") or "")
        function = getattr(code, "co_qualname", code.co_name)
        ring.append(
            f"frame\t{_field(module)}\t{_field(function)}\t{tb.tb_lineno or 0}\t"
            f"{_field(code.co_filename)}"
        )
        if len(ring) > 2 * _MAX_FRAMES:
            del ring[:_MAX_FRAMES]
        tb = tb.tb_next
    return ring[-_MAX_FRAMES:]


def decode(payload: str) -> dict[str, Any]:
    """The fields of a skeleton; raises ``ValueError`` for anything else."""
    lines = payload.split("\n")
    if not lines or lines[0] != MAGIC:
        raise ValueError("not an errmesh skeleton")
    out: dict[str, Any] = {
        "include": [],
        "exclude": [],
        "causes": [],
        "frames": [],
        "fingerprint": None,
        "mro": [],
        "app": "",
        "caller": "",
    }
    for line in lines[1:]:
        key, _, rest = line.partition("\t")
        parts = rest.split("\t")
        if key in ("created",):
            out[key] = float(rest)
        elif key == "pid":
            out[key] = int(rest)
        elif key in ("type", "app", "caller"):
            out[key] = rest
        elif key in ("include", "exclude"):
            out[key].append(rest)
        elif key == "mro":
            out[key] = parts if rest else []
        elif key == "fingerprint":
            out[key] = [] if not rest and line == "fingerprint" else parts
        elif key == "cause" and len(parts) == 2:
            out["causes"].append((parts[1], parts[0]))
        elif key == "frame" and len(parts) == 4:
            out["frames"].append((parts[0], parts[1], int(parts[2]), parts[3]))
        else:
            raise ValueError(f"skeleton: bad line {key!r}")
    if "type" not in out or "created" not in out:
        raise ValueError("skeleton: no type or time")
    return out


def to_event(payload: str, *, facts: Mapping[str, str]) -> Event:
    """The event a skeleton stands for: no message, no log tail, no argv.

    ``facts``: the taker's :func:`node.event.host_facts` (the same machine).
    """
    from mesh.severity import severity_for_types
    from node.context import EventContext
    from node.frames import _in_app, _is_library_file

    fields = decode(payload)
    include = tuple(fields["include"]) + ((fields["caller"],) if fields["caller"] else ())
    ctx = EventContext(
        app=fields["app"],
        app_version="",
        log_tail=(),
        in_app_include=include,
        in_app_exclude=tuple(fields["exclude"]),
    )
    frames = tuple(
        (
            module,
            function,
            os.path.basename(path),
            lineno,
            _in_app(module, path, _is_library_file(path), ctx),
            "",
        )
        for module, function, lineno, path in fields["frames"]
    )
    event: dict[str, object] = {
        "kind": "exception",
        "exc_type": fields["type"],
        "message": LOST_MESSAGE,
        "causes": tuple((t, "", relation) for t, relation in fields["causes"]),
        "frames": frames,
        "log_tail": (),
        "argv": (),
        "app": fields["app"],
        "app_version": "",
        "host": facts.get("host", ""),
        "os": facts.get("os", sys.platform),
        "python": facts.get("python", ""),
        "timestamp": fields["created"],
        "severity": int(severity_for_types(fields["mro"] or [fields["type"]])),
        "facts": (("skeleton", "the process ended while errmesh was recording this error"),),
        "fingerprint": None if fields["fingerprint"] is None else tuple(fields["fingerprint"]),
    }
    return event  # type: ignore[return-value]


def commit(path: str, payload: str, *, now: float, values: Mapping[str, Any]) -> int | None:
    """Commit one skeleton durably; its row id, or None when it cannot be (no harm done)."""
    import sqlite3

    from mesh.spool_rows import SKELETON_TABLE, add_skeleton

    fresh = not os.path.exists(path)
    try:
        os.makedirs(os.path.dirname(path), mode=0o700, exist_ok=True)
        conn = sqlite3.connect(path, timeout=5.0, isolation_level=None)
    except (OSError, sqlite3.Error):
        return None
    try:
        if fresh:  # the store's own settings, which Store.open would set
            conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(
            f"PRAGMA synchronous = {'FULL' if values['spool_sync'] == 'full' else 'NORMAL'}"
        )
        conn.execute(SKELETON_TABLE)
        return add_skeleton(conn, created=now, pid=os.getpid(), payload=payload)
    except sqlite3.Error:  # read-only, full, locked for 5 s: the caller goes on without
        return None
    finally:
        conn.close()


def locate(flags: Mapping[str, object], environ: Mapping[str, str] | None) -> Located:
    """The environment, the settings a dying process reads, and the cluster's state folder.

    A bad setting falls back to its default, said once on stderr: errmesh's
    own settings never stop the host program (DECISIONS 32).
    """
    from node.settings import DEFAULTS, load_values, say_problems

    env = os.environ if environ is None else environ
    problems: list[Any] = []
    values = {**DEFAULTS, **load_values(flags, env, problems=problems)}
    say_problems(problems)
    return env, values, os.path.join(values["state_dir"], values["cluster"])


def record(
    exc: BaseException,
    *,
    flags: Mapping[str, object],
    caller_package: str,
    fingerprint: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    now: float,
    located: Located | None = None,
) -> int | None:
    """Commit the skeleton of ``exc``'s report; its row id.

    ``located``: :func:`locate`'s result, when the caller has it already.
    None when nothing could be written (the report then goes the usual way,
    unprotected until its own commit). Never raises.
    """
    try:
        _, values, directory = located or locate(flags, environ)
        payload = encode(
            exc,
            now=now,
            app=str(flags.get("app") or values["app"] or ""),
            caller_package=caller_package,
            in_app_include=tuple(values["in_app_include"]),
            in_app_exclude=tuple(values["in_app_exclude"]),
            fingerprint=fingerprint,
        )
        return commit(os.path.join(directory, _DB_NAME), payload, now=now, values=values)
    except Exception:
        return None


def stale(pid: int, created: float, now: float) -> bool:
    """Whether a skeleton's writer is gone (or has had :data:`GRACE` to replace it)."""
    if now - created > GRACE:
        return True
    if pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except OSError:  # another user's live process
        return False
    return False
