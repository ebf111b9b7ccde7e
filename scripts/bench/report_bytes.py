"""Encoded sizes of the two messages that carry errors across the mesh.

py-libp2p's pubsub queues hold 32 messages and drop silently when full
(DESIGN section 7), and every byte of gossip is paid by every peer, so the
wire format has two byte budgets:

- a first ``report`` for a 30-frame trace with 50 log lines, with its 16-byte
  MAC: at most 4 KB (4,096 bytes);
- a repeat (``occ`` with one occurrence, a ~20-character host), with its MAC:
  at most 128 bytes.

The report is synthetic but shaped like a real one: dotted module names,
method names, relative file names, ~60-character source lines, ~80-character
log lines of a handful of formats with varying numbers and ids, argv, facts,
one chained cause. A second report is captured for real (``from_exception``
on the 30-frame chain in ``_chain.py``) with the same log lines. Sizes are
given as sent (``wire.encode(..., key=32 bytes)``) and, for context, without
the MAC, without compression (the ``"z"`` field inflated and repacked, as a
receiver sees it), with a libp2p peer id as sender, and as stored in the
spool (``encode_report``: no MAC, no sender). The goals apply to the "as
sent" rows. Pure computation: runs in well under a second.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import zlib
from typing import Any

import _chain
import msgpack
from _common import REPO, emit, parser, table

from mesh import wire
from mesh.report import Cause, Frame, Occurrence, Report
from mesh.severity import Severity
from node.context import EventContext
from node.event import from_exception

REPORT_GOAL = 4096
OCC_GOAL = 128
KEY = bytes(range(32))
#: A libp2p peer id (base58 of an ed25519 identity), as a sender would carry.
PEER_ID = "12D3KooWQx4Lk8yRUbxHdyzYV2tsYSXtPKwQ3ULT9Zd5K7VDbW6z"
HOST = "build-runner-07.corp"  # 20 characters

_MODULES = (
    "acme_sync.cli",
    "acme_sync.commands.sync",
    "acme_sync.jobs.runner",
    "acme_sync.remote.session",
    "acme_sync.remote.auth",
    "acme_sync.manifest.loader",
    "acme_sync.pipeline.batches",
    "acme_sync.pipeline.validate",
    "acme_sync.schema.coerce",
    "acme_sync.storage.staging",
    "acme_sync.codecs.csv_rows",
)
_FUNCTIONS = (
    "main",
    "SyncCommand.run",
    "JobRunner.execute",
    "Session.open",
    "TokenManager.refresh",
    "load_credentials",
    "ManifestLoader.fetch",
    "parse_manifest",
    "iter_batches",
    "BatchProcessor.process",
    "validate_records",
    "Schema.apply",
    "coerce_fields",
    "normalise_dates",
    "resolve_timezone",
    "RegionTable.lookup",
    "apply_override",
    "compute_checksum",
    "StagingWriter.write",
    "StagingWriter.flush",
    "encode_rows",
    "RowSerializer.serialise",
    "quote_value",
    "escape_value",
    "Column.lookup",
    "Cell.read",
    "Decimal.parse",
    "convert_amount",
    "CurrencyTable.rate",
    "read_cell",
)
_LIBRARY = {0: ("click.core", "Command.invoke", "click/core.py")}
_STATEMENTS = (
    "return self.{fn}(job, settings=settings, dry_run=dry_run)",
    "result = {fn}(records, schema=self.schema, strict=True)",
    "for batch in {fn}(manifest, batch_size=self.batch_size):",
    "value = self.{fn}(row[column.index], column.type, tz)",
    "if not {fn}(record, required=self.required_fields):",
    "self._buffer.extend({fn}(rows, delimiter=self.delimiter))",
    "token = {fn}(self.profile, scope='read:sync', force=False)",
)
_LOGS = (
    "{ts} INFO acme_sync.jobs: batch {n}: {m} records in {s:.2f}s",
    "{ts} DEBUG acme_sync.remote: GET /v2/manifests/{h} -> 200",
    "{ts} INFO acme_sync.pipeline: offset {n} of {m} ({s:.1f}%)",
    "{ts} WARNING acme_sync.schema: 'amount' null in {m} rows",
    "{ts} DEBUG acme_sync.staging: flushed {m} bytes to {h}.csv",
    "{ts} INFO acme_sync.auth: token refreshed ({n}s)",
)


def synthetic_report(rng: random.Random) -> Report:
    """A first report: 30 frames, 50 log lines, realistic lengths and variety."""
    frames = []
    for i, function in enumerate(_FUNCTIONS):
        module, func, filename = _LIBRARY.get(
            i,
            (
                _MODULES[min(i * len(_MODULES) // len(_FUNCTIONS), len(_MODULES) - 1)],
                function,
                "",
            ),
        )
        callee = _FUNCTIONS[min(i + 1, len(_FUNCTIONS) - 1)].split(".")[-1]
        frames.append(
            Frame(
                module=module,
                function=func,
                filename=filename or module.replace(".", "/") + ".py",
                lineno=rng.randint(12, 480),
                in_app=i not in _LIBRARY,
                line=rng.choice(_STATEMENTS).format(fn=callee),
            )
        )
    log_tail = []
    t = 1_764_072_000.0
    for _ in range(50):
        t += rng.uniform(0.01, 3.0)
        ms = int(t * 1000) % 1000
        ts = f"2026-11-25 13:{int(t) // 60 % 60:02d}:{int(t) % 60:02d},{ms:03d}"
        log_tail.append(
            rng.choice(_LOGS).format(
                ts=ts,
                n=rng.randint(100, 99_999),
                m=rng.randint(10, 99_999),
                s=rng.uniform(0.1, 99.0),
                h=f"{rng.getrandbits(48):012x}",
            )
        )
    return Report(
        origin=rng.randbytes(16),
        seq=1,
        count=1,
        signature=hashlib.sha256(b"bench").digest()[:16],
        kind="exception",
        exc_type="acme_sync.codecs.csv_rows.RecordError",
        message="cannot read column 'amount' of record 1182-7 at offset 1024 in "
        "/var/lib/acme/batch-0042.csv",
        causes=(Cause(type="KeyError", message="'amount'", relation="cause"),),
        frames=tuple(frames),
        log_tail=tuple(log_tail),
        argv=("/usr/local/bin/acme-sync", "sync", "--all", "--profile", "default"),
        app="acme-sync",
        app_version="3.4.1",
        host=HOST,
        os="Linux 6.8.0-45-generic x86_64",
        python="CPython 3.11.7",
        timestamp=t,
        severity=Severity.MEDIUM,
        facts=(
            ("pid", "48213"),
            ("cwd", "/srv/acme-sync"),
            ("executable", "/usr/local/bin/python3.11"),
        ),
    )


def captured_report(log_tail: tuple[str, ...]) -> Report:
    """The same log lines, with the frames of a real exception (``_chain.py``)."""
    ctx = EventContext(
        app="acme-sync",
        app_version="3.4.1",
        argv=("/usr/local/bin/acme-sync", "sync", "--all", "--profile", "default"),
        log_tail=log_tail,
        host=HOST,
        os="Linux 6.8.0-45-generic x86_64",
        python="CPython 3.11.7",
        facts=(("pid", "48213"), ("cwd", str(REPO)), ("executable", "/usr/local/bin/python3")),
        cwd=str(REPO),
    )
    raw = from_exception(_chain.raise_error(), ctx, now=1_764_072_100.0)
    return raw.replace(
        origin=bytes(range(16)), seq=1, count=1, signature=hashlib.sha256(b"c").digest()[:16]
    )


def inflated_size(frame: bytes, key: bytes | None) -> int:
    """The payload's size with ``"z"`` inflated and repacked (no MAC)."""
    payload = frame[: -wire.MAC_BYTES] if key is not None else frame
    outer: dict[str, Any] = msgpack.unpackb(payload, raw=False)
    if "z" in outer:
        inner = msgpack.unpackb(zlib.decompress(outer.pop("z")), raw=False)
        outer |= inner
    return len(msgpack.packb(outer, use_bin_type=True))


def report_rows(report: Report) -> list[tuple[str, int]]:
    assert wire.bound_report(report) == report, "nothing may be cut to fit"
    sent = wire.encode(wire.ReportMsg(report=report), key=KEY)
    return [
        ("as sent: MAC, no sender", len(sent)),
        ("without MAC", len(wire.encode(wire.ReportMsg(report=report)))),
        ("without compression, without MAC", inflated_size(sent, KEY)),
        (
            "with MAC and a peer id as sender",
            len(wire.encode(wire.ReportMsg(report=report, sender=PEER_ID), key=KEY)),
        ),
        ("stored in the spool (encode_report)", len(wire.encode_report(report))),
    ]


def occurrence(**changes: Any) -> Occurrence:
    """A repeat: one origin's cumulative count for one signature."""
    occ = Occurrence(
        origin=bytes(range(16)),
        signature=hashlib.sha256(b"bench").digest()[:16],
        count=1234,
        first_seen=1_764_072_000.125,
        last_seen=1_764_075_611.5,
        host=HOST,
        severity=Severity.MEDIUM,
    )
    return dataclasses.replace(occ, **changes)


def occ_rows() -> list[tuple[str, int]]:
    one = wire.OccMsg(occurrences=(occurrence(),))
    big = wire.OccMsg(occurrences=(occurrence(count=2**32 - 1, severity=Severity.CRITICAL),))
    with_sender = wire.OccMsg(occurrences=(occurrence(),), sender=PEER_ID)
    batch = wire.OccMsg(
        occurrences=tuple(
            occurrence(signature=hashlib.sha256(bytes([i])).digest()[:16], count=1234 + i)
            for i in range(10)
        ),
        sender=PEER_ID,
    )
    return [
        ("as sent: MAC, no sender, count 1,234", len(wire.encode(one, key=KEY))),
        ("count 2^32-1, severity critical, MAC", len(wire.encode(big, key=KEY))),
        ("without MAC", len(wire.encode(one))),
        ("with MAC and a peer id as sender", len(wire.encode(with_sender, key=KEY))),
        (
            "10 signatures in one message, sender, MAC: per occ",
            len(wire.encode(batch, key=KEY)) // 10,
        ),
    ]


def main() -> None:
    args = parser(__doc__).parse_args()  # --quick changes nothing: this is pure and fast
    rng = random.Random(20261125)
    synthetic = synthetic_report(rng)
    captured = captured_report(synthetic.log_tail)
    shapes = {
        "synthetic": synthetic,
        "captured (_chain.py)": captured,
    }
    print("report_bytes: encoded sizes (bytes)\n")
    results: dict[str, Any] = {}
    for name, report in shapes.items():
        frame_lines = sum(len(f.line) for f in report.frames) / len(report.frames)
        log_lines = sum(map(len, report.log_tail)) / len(report.log_tail)
        print(
            f"first report, {name}: {len(report.frames)} frames (source lines avg "
            f"{frame_lines:.0f} chars), {len(report.log_tail)} log lines "
            f"(avg {log_lines:.0f} chars)"
        )
        rows = report_rows(report)
        print(table(["encoding", "bytes"], rows))
        print()
        results[f"report {name}"] = dict(rows)
    rows = occ_rows()
    print(f"repeat occurrence (occ, host {HOST!r}, {len(HOST)} chars)")
    print(table(["encoding", "bytes"], rows))
    results["occ"] = dict(rows)

    report_size = results["report synthetic"]["as sent: MAC, no sender"]
    captured_size = results["report captured (_chain.py)"]["as sent: MAC, no sender"]
    occ_size = rows[0][1]
    report_met = max(report_size, captured_size) <= REPORT_GOAL
    occ_met = occ_size <= OCC_GOAL
    print(
        f"\ngoal: first report <= {REPORT_GOAL} B with MAC: {report_size} B synthetic, "
        f"{captured_size} B captured -> {'met' if report_met else 'NOT met'}"
    )
    print(
        f"goal: repeat occurrence <= {OCC_GOAL} B with MAC: {occ_size} B "
        f"-> {'met' if occ_met else 'NOT met'}"
    )
    emit(
        "report_bytes",
        goal=f"first report <= {REPORT_GOAL} B, repeat occ <= {OCC_GOAL} B (with 16-byte MAC)",
        met=report_met and occ_met,
        quick=args.quick,
        results=results
        | {
            "headline": f"report {report_size} B (captured {captured_size} B), occ {occ_size} B",
        },
    )


if __name__ == "__main__":
    main()
