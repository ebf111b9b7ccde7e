"""The durable spool: committed before sending, shared by processes, bounded."""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
from pathlib import Path

import pytest

from mesh.bundling import BundlePolicy
from mesh.errors import StoreUnavailable
from mesh.report import Report
from mesh.sigstate import IssueLink
from mesh.store import Store


def make_report(sig: bytes = b"S" * 16, message: str = "boom", **changes: object) -> Report:
    report = Report(
        origin=b"",
        seq=0,
        count=0,
        signature=sig,
        kind="exception",
        exc_type="ValueError",
        message=message,
        host="host-a",
        timestamp=1_000.0,
    )
    return report.replace(**changes) if changes else report


def test_spool_stamps_origin_sequence_and_cumulative_count(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        first = store.spool(make_report())
        second = store.spool(make_report())
        other = store.spool(make_report(sig=b"T" * 16))
        assert first.origin == store.origin and len(store.origin) == 16
        assert (first.seq, second.seq, other.seq) == (1, 2, 3)
        assert (first.count, second.count, other.count) == (1, 2, 1)
        assert [r.seq for r in store.pending()] == [1, 2, 3]


def test_origin_survives_reopening(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        origin = store.origin
    with Store.open(tmp_path) as store:
        assert store.origin == origin


def test_ack_removes_only_this_origins_reports(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        a = store.spool(make_report())
        b = store.spool(make_report())
        assert store.ack([(b"X" * 16, a.seq)]) == 0
        assert store.ack([(store.origin, a.seq)]) == 1
        assert [r.seq for r in store.pending()] == [b.seq]


def test_sequence_numbers_are_never_reused_after_acks(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        a = store.spool(make_report())
        store.ack([(store.origin, a.seq)])
        assert store.spool(make_report()).seq == a.seq + 1


def test_merge_is_idempotent_and_unspools_atomically(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        for _ in range(3):
            store.spool(make_report())
        pending = store.pending()
        (state,) = store.merge_reports(pending)
        assert state.total == 3
        assert store.pending() == []
        (again,) = store.merge_reports(pending)  # a replay changes nothing
        assert again.total == 3
        assert store.load_state(b"S" * 16) == again


def test_gossiped_states_may_skip_the_fsync_and_are_still_stored(tmp_path: Path) -> None:
    """States any peer can resend are merged without waiting for the disk;
    the connection goes back to full durability for what it acks."""
    with Store.open(tmp_path / "a") as source:
        (state,) = source.merge_reports([source.spool(make_report())])
    with Store.open(tmp_path / "b") as store:
        store.merge_states([state], durable=False)
        assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    with Store.open(tmp_path / "b") as reopened:
        assert reopened.load_state(state.signature) == state


def test_links_are_last_writer_by_term(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.merge_reports([store.spool(make_report())])
        newer = IssueLink(
            ref="r", number=2, url="u", state="open", term=5, synced_total=1, synced_at=10.0
        )
        older = IssueLink(
            ref="r", number=1, url="u", state="open", term=4, synced_total=9, synced_at=99.0
        )
        store.set_link(b"S" * 16, newer)
        state = store.set_link(b"S" * 16, older)
        assert state.link == newer


def test_due_states_follow_the_policy(tmp_path: Path) -> None:
    policy = BundlePolicy(settle=5.0, window=60.0)
    with Store.open(tmp_path, policy=policy) as store:
        store.merge_reports([store.spool(make_report(timestamp=1_000.0))])
        assert store.due_states(1_004.0) == []
        assert [s.signature for s in store.due_states(1_005.0)] == [b"S" * 16]


def test_a_store_whose_clock_runs_behind_the_reporters_is_due_on_its_own_clock(
    tmp_path: Path,
) -> None:
    """Reports stamped 90 s in this machine's future (its clock is behind):
    the settle delay runs from when this store first held the signature, not
    from a first sighting it cannot reach before its clock does."""
    policy = BundlePolicy(settle=5.0, window=60.0)
    with Store.open(tmp_path, policy=policy) as store:
        store._clock = lambda: 1_000.0
        store.merge_reports([store.spool(make_report(timestamp=1_090.0))])
        assert store.heard_at(b"S" * 16) == 1_000.0
        assert store.due_states(1_004.0) == []
        assert [s.signature for s in store.due_states(1_005.0)] == [b"S" * 16]
        # Later merges keep the first time: a busy signature is not put off.
        store._clock = lambda: 1_003.0
        store.merge_reports([store.spool(make_report(timestamp=1_093.0))])
        assert store.heard_at(b"S" * 16) == 1_000.0
        assert [s.signature for s in store.due_states(1_005.0)] == [b"S" * 16]


def test_a_store_from_before_the_heard_column_is_migrated(tmp_path: Path) -> None:
    import sqlite3

    with Store.open(tmp_path) as store:
        store.merge_reports([store.spool(make_report())])
        db = store.path
    conn = sqlite3.connect(db)
    conn.execute("ALTER TABLE states DROP COLUMN heard")
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        assert store.heard_at(b"S" * 16) is None, "unknown for rows written before"
        assert store.states()[0].total == 1
        store.merge_reports([store.spool(make_report())])
        assert store.heard_at(b"S" * 16) is not None


def test_spool_cap_drops_the_oldest_and_counts(tmp_path: Path) -> None:
    with Store.open(tmp_path, max_reports=5) as store:
        for i in range(8):
            store.spool(make_report(message=f"m{i}"))
        assert [r.seq for r in store.pending()] == [4, 5, 6, 7, 8]
        assert store.statistics().spool_dropped == 3


def test_a_full_store_makes_room_by_dropping_old_reports(tmp_path: Path) -> None:
    """max_bytes is enforced by SQLite itself: it answers SQLITE_FULL like a full disk."""
    with Store.open(tmp_path, max_bytes=128 * 1024) as store:
        for i in range(60):
            store.spool(make_report(message=f"{i} {os.urandom(3000).hex()}"))
        stats = store.statistics()
        assert stats.spool_dropped > 0
        assert stats.pending > 0
        assert store.pending()[-1].message.startswith("59 ")


def test_unwritable_location_is_store_unavailable(tmp_path: Path) -> None:
    blocker = tmp_path / "a-file"
    blocker.write_text("not a directory")
    with pytest.raises(StoreUnavailable):
        Store.open(blocker / "spool")


def test_read_only_database_is_store_unavailable(tmp_path: Path) -> None:
    with Store.open(tmp_path) as store:
        store.spool(make_report())
    uri_dir = tmp_path / "ro"
    uri_dir.mkdir()
    # A read-only bind is not available to unprivileged tests; SQLite's own
    # read-only mode yields the same error the spool sees on a read-only disk.
    import sqlite3

    conn = sqlite3.connect(
        f"file:{tmp_path / 'errmesh.sqlite3'}?mode=ro", uri=True, isolation_level=None
    )
    store = Store.__new__(Store)
    store._conn = conn
    store.path = tmp_path / "errmesh.sqlite3"
    store.max_reports = 10
    store.policy = BundlePolicy()
    from mesh.sigstate import Limits

    store.limits = Limits()
    store.origin = b"O" * 16
    with pytest.raises(StoreUnavailable, match="readonly"):
        store.spool(make_report())
    conn.close()


def test_corrupt_rows_are_removed_and_counted(tmp_path: Path) -> None:
    import sqlite3

    with Store.open(tmp_path) as store:
        store.spool(make_report())
    conn = sqlite3.connect(tmp_path / "errmesh.sqlite3")
    conn.execute(
        "INSERT INTO spool (sig, created, payload) VALUES (?, 0, ?)", (b"S" * 16, b"\xc1junk")
    )
    conn.commit()
    conn.close()
    with Store.open(tmp_path) as store:
        assert len(store.pending()) == 1
        assert store.statistics().corrupt_rows == 1


def _writer(directory: str, worker: int, n: int) -> None:
    with Store.open(Path(directory), busy_timeout=30.0, sync="normal") as store:
        for i in range(n):
            sig = bytes([worker % 3]) * 16
            store.spool(make_report(sig=sig, message=f"w{worker} #{i}"))


def test_concurrent_writers_from_several_processes_lose_nothing(tmp_path: Path) -> None:
    workers, per_worker = 6, 40
    ctx = multiprocessing.get_context("spawn")
    procs = [
        ctx.Process(target=_writer, args=(str(tmp_path), w, per_worker)) for w in range(workers)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    with Store.open(tmp_path) as store:
        pending = store.pending(limit=10_000)
        assert len(pending) == workers * per_worker
        assert len({r.seq for r in pending}) == workers * per_worker
        for sig_byte in range(3):
            counts = sorted(r.count for r in pending if r.signature == bytes([sig_byte]) * 16)
            assert counts == list(range(1, len(counts) + 1))  # no count skipped or repeated
        states = store.merge_reports(pending)
        assert sum(s.total for s in states) == workers * per_worker


def test_leader_lock_is_exclusive_between_handles(tmp_path: Path) -> None:
    with Store.open(tmp_path) as one, Store.open(tmp_path) as two:
        with one.leader_lock() as held:
            assert held
            with two.leader_lock(timeout=0.05) as also:
                assert not also
        with two.leader_lock(timeout=0.05) as now_free:
            assert now_free


def test_database_is_private_to_the_user(tmp_path: Path) -> None:
    with Store.open(tmp_path / "s"):
        pass
    assert (os.stat(tmp_path / "s").st_mode & 0o077) == 0


def test_the_highest_link_term_is_remembered(tmp_path: Path) -> None:
    """A restarted mesh must not act in a term lower than links already written."""
    link = IssueLink(
        ref="r", number=1, url="u", state="open", term=7, synced_total=1, synced_at=1.0
    )
    with Store.open(tmp_path) as store:
        assert store.max_link_term() == 0
        store.set_link(b"S" * 16, link)
        store.set_link(b"T" * 16, dataclasses.replace(link, term=3))
    with Store.open(tmp_path) as store:
        assert store.max_link_term() == 7


def _poison(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    """Write rows straight into a store's database, as an older version or a bad disk might."""
    import contextlib
    import sqlite3

    with contextlib.closing(sqlite3.connect(db)) as conn, conn:
        for sql, args in statements:
            conn.execute(sql, args)


def _stored_with_term(state_bytes: bytes, term: int) -> bytes:
    """A stored state re-packed with its link's term changed (what an older version wrote)."""
    import msgpack

    outer = msgpack.unpackb(state_bytes, raw=False)
    if "z" in outer:
        import zlib

        outer |= msgpack.unpackb(zlib.decompress(outer.pop("z")), raw=False)
    outer["s"][0]["k"]["t"] = term
    return bytes(msgpack.packb(outer, use_bin_type=True))


def test_poisoned_rows_load_without_dying_and_are_counted(tmp_path: Path) -> None:
    """A relay that stored a poison (or whose disk garbled a row) must come up again."""
    from mesh import wire
    from mesh.bounds import MAX_TERM
    from mesh.sigstate import OriginCount, SigState

    good, text, old = b"G" * 16, b"T" * 16, b"O" * 16
    link = IssueLink(
        ref="r#1", number=1, url="u", state="open", term=3, synced_total=1, synced_at=1.0
    )
    rec = OriginCount(count=1, first_seen=1.0, last_seen=2.0, host="h")
    with Store.open(tmp_path) as store:
        store.merge_states([SigState(signature=s, counts={b"o" * 16: rec}) for s in (good, text)])
        db = store.path
    too_high = _stored_with_term(wire.encode_state(SigState(signature=old, link=link)), 2**63 - 1)
    _poison(
        db,
        ("UPDATE states SET state = 'not a blob' WHERE sig = ?", (text,)),
        ("INSERT INTO states (sig, state, last_seen) VALUES (?, ?, 0)", (old, too_high)),
        ("INSERT INTO counters (name, value) VALUES ('max_link_term', ?) "
         "ON CONFLICT (name) DO UPDATE SET value = excluded.value", (2**63 - 1,)),
        ("INSERT INTO spool (sig, created, payload) VALUES (?, 0, 'text, not a report')", (good,)),
    )  # fmt: skip
    with Store.open(tmp_path) as store:
        assert store.max_link_term() == MAX_TERM
        assert [s.signature for batch in store.iter_states() for s in batch] == [good]
        assert store.load_state(text) is None and store.load_state(old) is None
        assert store.pending() == []
        stats = store.statistics()
        assert stats.unreadable_rows >= 3 and stats.corrupt_rows == 1
        # The next merge of a skipped signature overwrites its row with a sound state.
        store.merge_states([SigState(signature=text, counts={b"o" * 16: rec})])
        assert store.load_state(text) == SigState(signature=text, counts={b"o" * 16: rec})
