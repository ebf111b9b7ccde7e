"""The wire codec's contract: what round-trips, what is refused and why, and sizes.

Read top to bottom: round trips for every kind, then the receiver's defences
(each hand-crafted attack names the reason it must yield), then the sender's
strictness, ``bound_report``, the byte budgets, and the store's helpers.
"""

from __future__ import annotations

import base64
import dataclasses
import random
import struct
import zlib
from pathlib import Path
from typing import Any

import msgpack
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mesh import wire
from mesh.election import Heartbeat
from mesh.errors import LocalError, WireError
from mesh.report import Cause, Frame, Leaf, Occurrence, Report
from mesh.severity import Severity
from mesh.sigstate import IssueLink, Limits, OriginCount, SigState
from mesh.wire import (
    MAC_BYTES,
    MAX_MESSAGE,
    AckMsg,
    DigestEntry,
    DigestMsg,
    HeartbeatMsg,
    IssueMsg,
    Message,
    OccMsg,
    Rejected,
    ReportMsg,
    StateMsg,
    bound_report,
    decode,
    decode_report,
    decode_state,
    encode,
    encode_report,
    encode_state,
)
from mesh.wire import bound as wire_bound
from node.frames import INNER_FRAMES, OUTER_FRAMES

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))
MESSAGE_TYPES = (ReportMsg, OccMsg, AckMsg, HeartbeatMsg, IssueMsg, DigestMsg, StateMsg)
#: The schema tables: one per message kind and one per record type.
RECORD_TABLES = [
    *wire._TABLES.values(),
    wire._REPORT,
    wire._FRAME,
    wire._CAUSE,
    wire._LEAF,
    wire._OCCURRENCE,
    wire._ORIGIN_COUNT,
    wire._ISSUE_LINK,
    wire._SIG_STATE,
    wire._HEARTBEAT,
    wire._DIGEST_ENTRY,
]

# --------------------------------------------------------------------------
# Strategies: every value within the wire's bounds. Strings are kept short
# (a quarter of their byte limit at most, so any code point fits) for speed;
# the limits themselves are tested by hand below.

ids = st.binary(min_size=16, max_size=16)
uints = st.integers(0, 2**63 - 1)
ints = st.integers(-(2**63), 2**63 - 1)
terms = st.integers(0, wire.MAX_TERM)
times = st.floats(allow_nan=False, allow_infinity=False)
severities = st.sampled_from(Severity)
names = st.text(max_size=12)
lines = st.text(max_size=40)
peers = st.text(max_size=52)

frames = st.builds(
    Frame,
    module=names,
    function=names,
    filename=names,
    lineno=uints,
    in_app=st.booleans(),
    line=lines,
    pre_context=st.lists(lines, max_size=wire.MAX_CONTEXT_LINES).map(tuple),
    context_line=lines,
    post_context=st.lists(lines, max_size=wire.MAX_CONTEXT_LINES).map(tuple),
)
causes = st.builds(Cause, type=names, message=lines, relation=st.sampled_from(("cause", "context")))
reports = st.builds(
    Report,
    origin=ids,
    seq=uints,
    count=uints,
    signature=ids,
    kind=st.sampled_from(("exception", "command")),
    exc_type=names,
    message=lines,
    causes=st.lists(causes, max_size=3).map(tuple),
    frames=st.lists(frames, max_size=6).map(tuple),
    log_tail=st.lists(lines, max_size=6).map(tuple),
    argv=st.lists(lines, max_size=4).map(tuple),
    app=names,
    app_version=names,
    host=names,
    os=names,
    python=names,
    timestamp=times,
    severity=severities,
    exit_code=st.none() | ints,
    signal=st.none() | st.integers(0, 64),
    facts=st.lists(st.tuples(names, lines), max_size=3).map(tuple),
    fingerprint=st.none() | st.lists(names, max_size=3).map(tuple),
    tags=st.lists(st.tuples(names, names), max_size=3).map(tuple),
    contexts=st.lists(st.tuples(names, lines), max_size=3).map(tuple),
    environment=names,
    release=names,
    stdout_tail=st.lists(lines, max_size=3).map(tuple),
)
occurrences = st.builds(
    Occurrence,
    origin=ids,
    signature=ids,
    count=uints,
    first_seen=times,
    last_seen=times,
    host=names,
    severity=severities,
)
links = st.builds(
    IssueLink,
    ref=lines,
    number=st.none() | st.integers(0, wire.MAX_NUMBER),
    url=lines,
    state=st.sampled_from(("open", "closed")),
    term=terms,
    synced_total=uints,
    synced_at=times,
    severity=severities,
)
origin_counts = st.builds(OriginCount, count=uints, first_seen=times, last_seen=times, host=names)
states = st.builds(
    SigState,
    signature=ids,
    detail=st.none() | reports,
    counts=st.dictionaries(ids, origin_counts, max_size=4),
    severity=severities,
    link=st.none() | links,
    evicted_origins=uints,
)
heartbeats = st.builds(
    Heartbeat, peer=peers, priority=ints, term=terms, leading=st.booleans(), eligible=st.booleans()
)
digest_entries = st.builds(
    DigestEntry, signature=ids, total=uints, link_term=terms | st.just(-1), link_synced_total=ints
)


def batch(strategy: st.SearchStrategy[Any], max_size: int = 5) -> st.SearchStrategy[Any]:
    return st.lists(strategy, max_size=max_size).map(tuple)


messages: st.SearchStrategy[Message] = st.one_of(
    st.builds(ReportMsg, report=reports, sender=peers),
    st.builds(OccMsg, occurrences=batch(occurrences), sender=peers),
    st.builds(AckMsg, ids=batch(st.tuples(ids, uints)), acker=peers, sender=peers),
    st.builds(HeartbeatMsg, heartbeat=heartbeats, sender=peers),
    st.builds(IssueMsg, links=batch(st.tuples(ids, links)), sender=peers),
    st.builds(DigestMsg, entries=batch(digest_entries), sender=peers),
    st.builds(StateMsg, states=batch(states, 3), sender=peers),
)
keys = st.none() | st.just(KEY)

# --------------------------------------------------------------------------
# Fixtures of realistic size: a 30-frame trace through a CLI, click and
# httpx, and 50 log lines of about 80 characters.

_TRACE = [
    ("ipfs_accelerate.__main__", "<module>", "ipfs_accelerate/__main__.py", 4, True,
     "sys.exit(main(prog_name='ipfs-accelerate', standalone_mode=True))"),
    ("ipfs_accelerate.cli", "main", "ipfs_accelerate/cli.py", 212, True,
     "return cli(obj=Context(config=load_config(env=os.environ)), **kwargs)"),
    ("click.core", "__call__", "click/core.py", 1157, False,
     "return self.main(*args, **kwargs)  # click entry point, see cli.main"),
    ("click.core", "main", "click/core.py", 1078, False,
     "rv = self.invoke(ctx)  # type: ignore[func-returns-value]"),
    ("click.core", "invoke", "click/core.py", 1688, False,
     "return _process_result(sub_ctx.command.invoke(sub_ctx))"),
    ("click.core", "invoke", "click/core.py", 1434, False,
     "return ctx.invoke(self.callback, **ctx.params)"),
    ("click.core", "invoke", "click/core.py", 783, False,
     "return __callback(*args, **kwargs)"),
    ("ipfs_accelerate.commands.model", "pull", "ipfs_accelerate/commands/model.py", 88, True,
     "manifest = registry.resolve(name, revision=revision, prefer_local=not refresh)"),
    ("ipfs_accelerate.registry", "resolve", "ipfs_accelerate/registry.py", 141, True,
     "return self._resolve_remote(name, revision, timeout=self.config.fetch_timeout)"),
    ("ipfs_accelerate.registry", "_resolve_remote", "ipfs_accelerate/registry.py", 177, True,
     "blocks = [self.store.get(cid, verify=True) for cid in manifest.block_cids]"),
    ("ipfs_accelerate.registry", "<listcomp>", "ipfs_accelerate/registry.py", 177, True,
     "blocks = [self.store.get(cid, verify=True) for cid in manifest.block_cids]"),
    ("ipfs_accelerate.storage.block_store", "get", "ipfs_accelerate/storage/block_store.py",
     96, True, "data = self._fetch_with_retry(cid, attempts=self.config.retries)"),
    ("ipfs_accelerate.storage.block_store", "_fetch_with_retry",
     "ipfs_accelerate/storage/block_store.py", 131, True,
     "return self.gateway.fetch_block(cid, timeout=self._backoff.timeout(attempt))"),
    ("ipfs_accelerate.net.gateway", "fetch_block", "ipfs_accelerate/net/gateway.py", 64, True,
     'response = self.client.get(f"/ipfs/{cid}", params={"format": "raw"})'),
    ("httpx._client", "get", "httpx/_client.py", 1054, False,
     'return self.request("GET", url, params=params, headers=headers, timeout=timeout)'),
    ("httpx._client", "request", "httpx/_client.py", 827, False,
     "return self.send(request, auth=auth, follow_redirects=follow_redirects)"),
    ("httpx._client", "send", "httpx/_client.py", 914, False,
     "response = self._send_handling_auth(request, auth=auth, history=[])"),
    ("httpx._client", "_send_handling_auth", "httpx/_client.py", 942, False,
     "response = self._send_handling_redirects(request, follow_redirects, history)"),
    ("httpx._client", "_send_handling_redirects", "httpx/_client.py", 979, False,
     "response = self._send_single_request(request)"),
    ("httpx._client", "_send_single_request", "httpx/_client.py", 1015, False,
     "response = transport.handle_request(request)  # one attempt, no retries here"),
    ("httpx._transports.default", "handle_request", "httpx/_transports/default.py", 232,
     False, "with map_httpcore_exceptions():"),
    ("contextlib", "__exit__", "contextlib.py", 158, False,
     "self.gen.throw(typ, value, traceback)"),
    ("httpx._transports.default", "map_httpcore_exceptions", "httpx/_transports/default.py",
     86, False, "raise mapped_exc(message) from exc"),
    ("httpcore._sync.connection_pool", "handle_request", "httpcore/_sync/connection_pool.py",
     216, False,
     "raise exc from None  # the pool keeps no reference to the failed connection"),
    ("httpcore._sync.connection_pool", "handle_request", "httpcore/_sync/connection_pool.py",
     196, False, "response = connection.handle_request(pool_request.request)"),
    ("httpcore._sync.connection", "handle_request", "httpcore/_sync/connection.py", 99, False,
     "raise exc"),
    ("httpcore._sync.connection", "handle_request", "httpcore/_sync/connection.py", 76, False,
     "stream = self._connect(request)  # may raise ConnectError or ConnectTimeout"),
    ("httpcore._sync.connection", "_connect", "httpcore/_sync/connection.py", 122, False,
     "stream = self._network_backend.connect_tcp(**kwargs)"),
    ("httpcore._backends.sync", "connect_tcp", "httpcore/_backends/sync.py", 205, False,
     "with map_exceptions(exc_map):"),
    ("httpcore._exceptions", "map_exceptions", "httpcore/_exceptions.py", 14, False,
     "raise to_exc(exc) from exc"),
]  # fmt: skip


def realistic_log_tail(n: int = 50, seed: int = 7) -> tuple[str, ...]:
    """Log lines as a CLI writes them: timestamp, level, logger, varied text with ids."""
    rng = random.Random(seed)
    templates = (
        "fetched {cid} in {ms} ms",
        "cache miss {cid}, asking gw{n}",
        "retry {cid}: timeout ({n}/5)",
        "pinned {cid}, {size} B",
        "{peer} gone after {ms} ms",
    )
    out = []
    for i in range(n):
        text = rng.choice(templates).format(
            cid="bafk" + "".join(rng.choice("abcdefghijklmnopqrstuvwxyz234567") for _ in range(12)),
            peer=f"12D3KooW{rng.getrandbits(40):010x}",
            ms=rng.randint(3, 30_000),
            size=rng.randint(1_000, 1_000_000),
            n=rng.randint(1, 5),
        )
        level = rng.choice(("INFO", "INFO", "INFO", "DEBUG", "WARNING"))
        out.append(
            f"2025-11-25 13:16:{i % 60:02d},{rng.randint(0, 999):03d} {level} accel.model: {text}"
        )
    return tuple(out)


def realistic_report(**changes: Any) -> Report:
    report = Report(
        origin=bytes.fromhex("5f0c8e1a9b3d47e2a1c4d6f8e0b2a4c6"),
        seq=1,
        count=1,
        signature=bytes.fromhex("e636a076eb5cc83f9d1e2b3c4d5e6f70"),
        kind="exception",
        exc_type="httpx.ConnectTimeout",
        message="timed out connecting to gw2.example.net:443 after 30.0 seconds",
        causes=(Cause(type="httpcore.ConnectTimeout", message="timed out"),),
        frames=tuple(
            Frame(module=m, function=f, filename=p, lineno=n, in_app=a, line=s)
            for m, f, p, n, a, s in _TRACE
        ),
        log_tail=realistic_log_tail(),
        argv=("ipfs-accelerate", "model", "pull", "llama-3-8b-instruct", "--revision", "main"),
        app="ipfs_accelerate",
        app_version="0.4.2",
        host="build-runner-07.corp",
        os="Linux-6.8.0-48-generic-x86_64-with-glibc2.39",
        python="3.11.9",
        timestamp=1732540562.123,
        severity=Severity.HIGH,
        facts=(("cwd", "/home/ci/work"), ("user", "ci")),
    )
    return report.replace(**changes)


def sample_messages() -> list[Message]:
    """One realistic message of every kind."""
    report = realistic_report()
    link = IssueLink(
        ref="octo/app#42",
        number=42,
        url="https://github.com/octo/app/issues/42",
        state="open",
        term=3,
        synced_total=7,
        synced_at=1732540600.0,
    )
    count = OriginCount(count=7, first_seen=1.0, last_seen=2.0, host="build-runner-07.corp")
    return [
        ReportMsg(report=report, sender="12D3KooWQx4Lk8yRUbxHdyzYV2tsYSXtPKwQ3ULT9Zd5K7VDbW6z"),
        OccMsg(occurrences=(report.occurrence(),)),
        AckMsg(ids=((report.origin, report.seq),), acker="relay-1"),
        HeartbeatMsg(heartbeat=Heartbeat(peer="12D3KooWrelay", priority=10, term=3, leading=True)),
        IssueMsg(links=((report.signature, link),)),
        DigestMsg(
            entries=(
                DigestEntry(signature=report.signature, total=7, link_term=3, link_synced_total=7),
            )
        ),
        StateMsg(
            states=(
                SigState(
                    signature=report.signature,
                    detail=report,
                    counts={report.origin: count},
                    link=link,
                ),
            )
        ),
    ]


def unpacked(frame: bytes) -> dict[str, Any]:
    """An unsigned frame as a plain msgpack map, its compressed fields inflated."""
    outer: dict[str, Any] = msgpack.unpackb(frame, raw=False)
    if "z" in outer:
        outer |= msgpack.unpackb(zlib.decompress(outer.pop("z")), raw=False)
    return outer


def packed(value: Any) -> bytes:
    data: bytes = msgpack.packb(value, use_bin_type=True)
    return data


def reason(data: bytes, key: bytes | None = None) -> str:
    result = decode(data, key)
    assert isinstance(result, Rejected), result
    return result.reason


# --------------------------------------------------------------------------
# Round trips


@settings(max_examples=150, deadline=None)
@given(msg=messages, key=keys)
def test_every_message_round_trips_with_and_without_a_key(msg: Message, key: bytes | None) -> None:
    data = encode(msg, key)
    assert len(data) <= MAX_MESSAGE
    assert decode(data, key) == msg


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_realistic_messages_round_trip(msg: Message) -> None:
    assert decode(encode(msg, KEY), KEY) == msg
    assert decode(encode(msg)) == msg


def test_every_field_of_every_record_has_a_wire_key() -> None:
    for table in RECORD_TABLES:
        attrs = [f.attr for f in table.fields]
        keys = [f.key for f in table.fields]
        assert sorted(attrs) == sorted(f.name for f in dataclasses.fields(table.cls)), table.cls
        assert len(set(keys)) == len(keys), table.cls


def test_the_envelope_is_a_map_with_version_kind_and_sender() -> None:
    msg = HeartbeatMsg(heartbeat=Heartbeat(peer="p", priority=1, term=2, leading=False), sender="s")
    assert unpacked(encode(msg)) == {
        "v": 1,
        "k": "hb",
        "n": "s",
        "h": {"p": "p", "r": 1, "t": 2, "l": False},
    }


def test_keys_equal_to_their_default_are_left_out() -> None:
    frame = Frame(module="m", function="f", filename="m.py", lineno=3, in_app=False)
    report = realistic_report(
        frames=(frame,),
        causes=(),
        log_tail=(),
        argv=(),
        facts=(),
        app="",
        app_version="",
        os="",
        python="",
        severity=Severity.MEDIUM,
    )
    fields = unpacked(encode(ReportMsg(report=report)))["r"]
    assert sorted(fields) == ["c", "e", "f", "h", "m", "o", "q", "s", "t", "ts"]
    assert fields["f"] == [{"m": "m", "fn": "f", "f": "m.py", "n": 3}]


def test_big_messages_travel_compressed_and_small_ones_do_not() -> None:
    big = encode(ReportMsg(report=realistic_report(), sender="peer"))
    assert sorted(msgpack.unpackb(big)) == ["k", "n", "v", "z"]
    small = encode(OccMsg(occurrences=(realistic_report().occurrence(),)))
    assert "z" not in msgpack.unpackb(small)


def test_unknown_keys_are_ignored_at_every_level() -> None:
    fields = unpacked(encode(ReportMsg(report=realistic_report())))
    fields["future"] = [[[1, 2]], {"deep": None}]
    fields["r"]["zz"] = "new field"
    fields["r"]["f"][0]["zz"] = 7
    assert decode(packed(fields)) == ReportMsg(report=realistic_report())


def test_uncompressed_fields_of_any_size_are_accepted() -> None:
    msg = ReportMsg(report=realistic_report())
    assert decode(packed(unpacked(encode(msg)))) == msg


# --------------------------------------------------------------------------
# The receiver: decode never raises, and says why it refused.


@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=300), key=keys)
def test_decode_never_raises_on_arbitrary_bytes(data: bytes, key: bytes | None) -> None:
    assert isinstance(decode(data, key), (Rejected, *MESSAGE_TYPES))


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_truncation_is_rejected(msg: Message) -> None:
    data = encode(msg)
    assert {reason(data[:n]) for n in range(len(data))} == {"undecodable"}
    signed = encode(msg, KEY)
    for n in range(len(signed)):
        expected = "missing-mac" if n == len(data) else "bad-mac"
        assert reason(signed[:n], KEY) == expected


@pytest.mark.parametrize("msg", sample_messages(), ids=lambda m: type(m).__name__)
def test_every_flipped_byte_is_caught_by_the_mac_and_never_raises_without(msg: Message) -> None:
    signed, plain = encode(msg, KEY), encode(msg)
    for i in range(len(signed)):
        for mask in (0x01, 0x80, 0xFF):
            flipped = bytearray(signed)
            flipped[i] ^= mask
            assert reason(bytes(flipped), KEY) == "bad-mac"
            if i < len(plain):
                flipped = bytearray(plain)
                flipped[i] ^= mask
                assert isinstance(decode(bytes(flipped)), (Rejected, *MESSAGE_TYPES))


def _paths(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Every place in a decoded map where a field value sits."""
    out = [path] if path else []
    if isinstance(value, dict):
        for k, v in value.items():
            out += _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            out += _paths(v, (*path, i))
    return out


def _wire_type(value: Any) -> str:
    return {
        bool: "bool",
        int: "num",
        float: "num",
        str: "str",
        bytes: "bin",
        list: "array",
        dict: "map",
        type(None): "nil",
    }[type(value)]


any_value = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | times
    | st.text(max_size=8)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=3), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=400, deadline=None)
@given(msg=st.sampled_from(sample_messages()), data=st.data(), junk=any_value)
def test_a_field_of_the_wrong_type_is_a_bad_field(msg: Message, data: Any, junk: Any) -> None:
    fields = unpacked(encode(msg))
    paths = [p for p in _paths(fields) if p[0] not in ("v", "k")]
    path = data.draw(st.sampled_from(paths))
    parent = fields
    for step in path[:-1]:
        parent = parent[step]
    original = parent[path[-1]]
    assume(_wire_type(junk) not in (_wire_type(original), "nil"))
    parent[path[-1]] = junk
    result = decode(packed(fields))
    if type(original) is float and type(junk) is int:
        return  # an integral timestamp is fine: see test_integral_floats_may_arrive_as_ints
    assert isinstance(result, Rejected), (path, junk)
    assert result.reason in ("bad-field", "oversized", "too-many"), result


BAD_FIELDS = [
    ("count is a bool", ("r", "c"), True),
    ("count is negative", ("r", "c"), -1),
    ("seq over int64", ("r", "q"), 2**63),
    ("origin is 15 bytes", ("r", "o"), b"x" * 15),
    ("signature is a str", ("r", "s"), "e636a076eb5cc83f"),
    ("kind is unknown", ("r", "t"), "panic"),
    ("severity 0", ("r", "sv"), 0),
    ("severity 5", ("r", "sv"), 5),
    ("timestamp is NaN", ("r", "ts"), float("nan")),
    ("timestamp is infinite", ("r", "ts"), float("inf")),
    ("in_app is 1", ("r", "f", 0, "a"), 1),
    ("lineno is a float", ("r", "f", 0, "n"), 3.0),
    ("a frame is an array", ("r", "f", 0), ["m", "f", "m.py", 3]),
    ("frames is a map", ("r", "f"), {"m": "x"}),
    ("relation is unknown", ("r", "ca", 0, "r"), "because"),
    ("a fact is a 3-array", ("r", "fa", 0), ["a", "b", "c"]),
    ("exit code is a str", ("r", "x"), "1"),
    ("message is missing", ("r", "m"), None),
]


@pytest.mark.parametrize(
    ("path", "value"), [c[1:] for c in BAD_FIELDS], ids=[c[0] for c in BAD_FIELDS]
)
def test_hand_picked_bad_fields(path: tuple[Any, ...], value: Any) -> None:
    fields = unpacked(encode(ReportMsg(report=realistic_report())))
    parent = fields
    for step in path[:-1]:
        parent = parent[step]
    if value is None:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    result = decode(packed(fields))
    assert isinstance(result, Rejected)
    assert result.reason == "bad-field"
    assert result.detail.startswith("report.report.")  # it names the field


def test_nil_is_accepted_exactly_where_a_field_may_be_none() -> None:
    fields = unpacked(encode(ReportMsg(report=realistic_report())))
    fields["r"]["x"] = None
    fields["r"]["fp"] = None
    assert decode(packed(fields)) == ReportMsg(report=realistic_report())


def test_integral_floats_may_arrive_as_ints() -> None:
    fields = unpacked(encode(ReportMsg(report=realistic_report())))
    fields["r"]["ts"] = 1732540562
    msg = decode(packed(fields))
    assert isinstance(msg, ReportMsg)
    assert msg.report.timestamp == 1732540562.0


def test_duplicate_origins_in_a_state_are_a_bad_field() -> None:
    fields = unpacked(encode(sample_messages()[-1]))
    counts = fields["s"][0]["c"]
    counts.append(counts[0])
    assert reason(packed(fields)) == "bad-field"


def nested(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


def _envelope(**fields: Any) -> bytes:
    return packed({"v": 1, "k": "hb", "h": {"p": "p", "r": 0, "t": 0, "l": False}} | fields)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        # Size and framing
        (b"\x80" * (MAX_MESSAGE + 1), "oversized"),
        (b"", "undecodable"),
        (b"\xc1", "undecodable"),  # the one byte msgpack never uses
        (_envelope() + b"\x00", "undecodable"),  # trailing bytes
        (packed([1, 2, 3]), "not-a-map"),
        (packed("hello"), "not-a-map"),
        (packed({1: "int keys"}), "undecodable"),
        (packed({"v": "1"}), "unknown-version"),  # the key is not an int
        (b"\xa2\xff\xfe", "undecodable"),  # invalid UTF-8
        # Versions and kinds
        (_envelope(v=2), "unknown-version"),
        (_envelope(v=0), "unknown-version"),
        (_envelope(v=True), "unknown-version"),
        (_envelope(v="1"), "unknown-version"),
        (packed({"k": "hb"}), "unknown-version"),
        (_envelope(k="gossip"), "unknown-kind"),
        (_envelope(k=7), "bad-field"),
        # Huge declared lengths: refused before anything is allocated
        (b"\xdd" + struct.pack(">I", 2**31), "too-many"),  # array32
        (b"\xdf" + struct.pack(">I", 2**31), "too-many"),  # map32
        (b"\xdb" + struct.pack(">I", 2**31) + b"ab", "undecodable"),  # str32, data missing
        (b"\xc6" + struct.pack(">I", 2**31) + b"ab", "undecodable"),  # bin32, data missing
        (b"\xc9" + struct.pack(">I", 2**31) + b"\x05", "undecodable"),  # ext32, data missing
        (b"\xc9" + struct.pack(">I", 3) + b"\x05abc", "ext-type"),  # ext32, data present
        (packed({"v": 1, "k": "occ", "o": list(range(wire.MAX_BATCH + 1))}), "too-many"),
        (packed({"v": 1, "k": "hb", "x": "a" * (wire.MAX_TEXT + 1)}), "oversized"),
        # Deep nesting
        (b"\x91" * 10_000 + b"\xc0", "too-deep"),
        (b"\x81\xa1a" * 10_000 + b"\xc0", "too-deep"),
        (_envelope(x=nested(20)), "too-deep"),
        # Ext types, the timestamp ext included
        (b"\xd6\xff" + struct.pack(">I", 0), "ext-type"),  # timestamp 32
        (b"\xd7\xff" + b"\x00" * 8, "ext-type"),  # timestamp 64
        (b"\xc7\x0c\xff" + b"\x00" * 12, "ext-type"),  # timestamp 96
        (b"\xd4\x05\x00", "ext-type"),
        (_envelope(x=msgpack.ExtType(5, b"abc")), "ext-type"),
        (_envelope(x=msgpack.Timestamp(0)), "ext-type"),
    ],
)
def test_hand_crafted_attacks(data: bytes, expected: str) -> None:
    assert reason(data) == expected


def test_nesting_is_bounded_not_forbidden() -> None:
    # The envelope is level 1, so an ignored key may hold 15 levels more.
    assert isinstance(decode(_envelope(x=nested(wire.MAX_DEPTH - 1))), HeartbeatMsg)
    assert reason(_envelope(x=nested(wire.MAX_DEPTH))) == "too-deep"


def test_the_depth_limit_leaves_room_for_every_record() -> None:
    # The deepest path: envelope > states > state > detail > frames > frame.
    state = StateMsg(states=(SigState(signature=bytes(16), detail=realistic_report()),))
    assert decode(encode(state)) == state
    assert wire.MAX_DEPTH >= 6


kinds_and_junk = st.tuples(
    st.sampled_from(wire.KINDS),
    st.dictionaries(
        st.sampled_from(sorted({f.key for table in RECORD_TABLES for f in table.fields})),
        any_value,
        max_size=6,
    ),
)


@settings(max_examples=300, deadline=None)
@given(kind_and_fields=kinds_and_junk)
def test_decode_never_raises_on_maps_of_junk_under_known_keys(
    kind_and_fields: tuple[str, dict[str, Any]],
) -> None:
    kind, fields = kind_and_fields
    result = decode(packed({"v": 1, "k": kind} | fields))
    assert isinstance(result, (Rejected, *MESSAGE_TYPES))


def test_compressed_fields_are_checked_like_plain_ones() -> None:
    def with_z(z: Any) -> bytes:
        return packed({"v": 1, "k": "report", "z": z})

    bomb = zlib.compress(packed({"pad": b"\x00" * (wire.MAX_INFLATED // 2)}) * 3)
    assert len(bomb) < 2000
    assert reason(with_z(bomb)) == "oversized"
    assert reason(with_z(b"not zlib")) == "undecodable"
    assert reason(with_z(zlib.compress(packed({"r": {}}))[:-3])) == "undecodable"
    assert reason(with_z(zlib.compress(packed({"r": {}})) + b"tail")) == "undecodable"
    assert reason(with_z("a str")) == "bad-field"
    assert reason(with_z(zlib.compress(packed([1])))) == "bad-field"
    assert reason(with_z(zlib.compress(b"\xd6\xff\x00\x00\x00\x00"))) == "ext-type"
    assert reason(with_z(zlib.compress(packed({"r": {"o": 1}})))) == "bad-field"


def test_a_string_at_its_limit_passes_and_one_byte_more_is_oversized() -> None:
    at_limit = "é" * (wire.MAX_NAME // 2)  # 2 bytes each in UTF-8
    msg = HeartbeatMsg(heartbeat=Heartbeat(peer=at_limit, priority=0, term=0, leading=False))
    fields = unpacked(encode(msg))
    assert decode(packed(fields)) == msg
    fields["h"]["p"] += "x"
    assert reason(packed(fields)) == "oversized"


def test_more_frames_than_the_limit_is_too_many() -> None:
    fields = unpacked(encode(ReportMsg(report=realistic_report())))
    fields["r"]["f"] = fields["r"]["f"] * 3
    assert reason(packed(fields)) == "too-many"


def test_the_mac_binds_the_payload_to_the_cluster_key() -> None:
    msg = sample_messages()[1]
    signed = encode(msg, KEY)
    assert len(signed) == len(encode(msg)) + MAC_BYTES
    assert reason(signed, OTHER_KEY) == "bad-mac"
    assert reason(encode(msg), KEY) == "missing-mac"
    assert reason(signed) == "undecodable"  # a MAC where none is expected is trailing junk
    assert reason(b"\x80", KEY) == "missing-mac"
    assert reason(b"short", KEY) == "bad-mac"


def test_a_bad_message_from_an_authenticated_peer_is_still_checked() -> None:
    payload = packed({"v": 2, "k": "hb"})
    frame = payload + wire._mac(KEY, payload)
    assert reason(frame, KEY) == "unknown-version"


def test_a_short_cluster_key_is_a_local_error() -> None:
    with pytest.raises(LocalError):
        decode(b"", key=b"short")
    with pytest.raises(LocalError):
        encode(sample_messages()[1], key=b"")


ABOVE_THE_CEILING = [
    ("heartbeat term", "hb", ("h", "t"), wire.MAX_TERM),
    ("issue link term", "issue", ("l", 0, 1, "t"), wire.MAX_TERM),
    ("digest link term", "digest", ("d", 0, "t"), wire.MAX_TERM),
    ("stored link term", "state", ("s", 0, "k", "t"), wire.MAX_TERM),
    ("issue link number", "issue", ("l", 0, 1, "n"), wire.MAX_NUMBER),
    ("stored link number", "state", ("s", 0, "k", "n"), wire.MAX_NUMBER),
]


@pytest.mark.parametrize(
    ("kind", "path", "ceiling"),
    [c[1:] for c in ABOVE_THE_CEILING],
    ids=[c[0] for c in ABOVE_THE_CEILING],
)
@pytest.mark.parametrize("above", [1, 2**63 - 1], ids=["ceiling+1", "2**63-1"])
def test_a_term_or_issue_number_above_its_ceiling_is_out_of_range(
    kind: str, path: tuple[Any, ...], ceiling: int, above: int
) -> None:
    """A leader takes term + 1, a file sink number + 1: a value the mesh could
    never send or store after that must not get in."""
    msg = next(m for m in sample_messages() if isinstance(m, wire._TABLES[kind].cls))
    fields = unpacked(encode(msg))
    parent = fields
    for step in path[:-1]:
        parent = parent[step]
    assert path[-1] in parent, "the sample carries the field"
    parent[path[-1]] = ceiling
    assert not isinstance(decode(packed(fields)), Rejected), "the ceiling itself is allowed"
    parent[path[-1]] = min(ceiling + above, 2**63 - 1)
    result = decode(packed(fields))
    assert isinstance(result, Rejected)
    assert result.reason == "out-of-range"
    assert "ceiling" in result.detail


def test_every_reason_is_listed() -> None:
    assert set(wire.REJECT_REASONS) == {
        "oversized",
        "undecodable",
        "not-a-map",
        "unknown-version",
        "unknown-kind",
        "bad-field",
        "out-of-range",
        "ext-type",
        "too-deep",
        "too-many",
        "missing-mac",
        "bad-mac",
    }


# --------------------------------------------------------------------------
# The sender: encode refuses what a receiver would refuse.

BAD_REPORTS = [
    ("origin of 15 bytes", {"origin": b"x" * 15}),
    ("negative count", {"count": -1}),
    ("seq over uint63", {"seq": 2**64}),
    ("NaN timestamp", {"timestamp": float("nan")}),
    ("message over 8 KiB", {"message": "x" * (wire.MAX_TEXT + 1)}),
    ("65 frames", {"frames": realistic_report().frames * 3}),
    ("a frame that is not a Frame", {"frames": ("not a frame",)}),
    ("a lone surrogate", {"host": "bad\udcff"}),
    ("a bool timestamp", {"timestamp": True}),
    ("unknown kind", {"kind": "panic"}),
]


@pytest.mark.parametrize("changes", [c[1] for c in BAD_REPORTS], ids=[c[0] for c in BAD_REPORTS])
def test_encode_refuses_a_report_outside_the_bounds(changes: dict[str, Any]) -> None:
    with pytest.raises(LocalError):
        encode(ReportMsg(report=realistic_report(**changes)))
    with pytest.raises(LocalError):
        encode_report(realistic_report(**changes))


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(LocalError, match="not a wire message"):
        encode(realistic_report())  # type: ignore[arg-type]


def test_encode_refuses_a_batch_over_the_byte_limit() -> None:
    rng = random.Random(1)

    def state() -> SigState:
        noise = tuple(rng.randbytes(100).hex() for _ in range(50))  # compresses to half
        return SigState(signature=bytes(16), detail=realistic_report(log_tail=noise))

    with pytest.raises(LocalError, match="split it"):
        encode(StateMsg(states=tuple(state() for _ in range(12))))
    with pytest.raises(LocalError, match="over 262144"):  # MAX_INFLATED
        encode(StateMsg(states=tuple(state() for _ in range(20))))
    occ = realistic_report().occurrence()
    assert len(encode(OccMsg(occurrences=(occ,) * 400), KEY)) <= MAX_MESSAGE


# --------------------------------------------------------------------------
# bound_report: anything the capture side builds can be sent.


def huge_text(max_repeat: int) -> st.SearchStrategy[str]:
    """Big strings fast: a random chunk (any code point, surrogates too) repeated."""
    return st.builds(
        lambda chunk, n: chunk * n,
        st.text(st.characters(), min_size=1, max_size=6)
        | st.text(st.characters(codec=None), min_size=1, max_size=6),
        st.just(max_repeat) | st.integers(0, max_repeat),
    )


def repeated(strategy: st.SearchStrategy[Any], times: int) -> st.SearchStrategy[tuple[Any, ...]]:
    """Long tuples fast: a few random items repeated."""
    return st.builds(
        lambda items, n: tuple(items) * n,
        st.lists(strategy, max_size=4),
        st.just(times) | st.integers(0, times),
    )


huge_frames = st.builds(
    Frame,
    module=huge_text(200),
    function=huge_text(200),
    filename=huge_text(200),
    lineno=uints,
    in_app=st.booleans(),
    line=huge_text(2000),
    pre_context=repeated(huge_text(2000), 12),
    context_line=huge_text(2000),
    post_context=repeated(huge_text(2000), 12),
)
huge_reports = st.builds(
    Report,
    origin=ids,
    seq=uints,
    count=uints,
    signature=ids,
    kind=st.sampled_from(("exception", "command")),
    exc_type=huge_text(500),
    message=huge_text(50_000),
    causes=repeated(st.builds(Cause, type=huge_text(200), message=huge_text(2000)), 4),
    frames=repeated(huge_frames, 40),
    log_tail=repeated(huge_text(500), 30),
    argv=repeated(huge_text(500), 30),
    host=huge_text(300),
    os=huge_text(300),
    facts=repeated(st.tuples(huge_text(200), huge_text(1000)), 15),
    fingerprint=st.none() | repeated(huge_text(200), 4),
)


@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(report=huge_reports)
def test_a_bounded_report_always_fits_a_signed_frame(report: Report) -> None:
    bounded = bound_report(report)
    msg = ReportMsg(report=bounded, sender="p" * wire.MAX_NAME)
    data = encode(msg, KEY)
    assert len(data) <= MAX_MESSAGE
    assert len(packed(unpacked(data[:-MAC_BYTES]))) <= MAX_MESSAGE  # even uncompressed
    assert decode(data, KEY) == msg
    assert bound_report(bounded) == bounded


@settings(max_examples=60, deadline=None)
@given(report=reports)
def test_a_report_within_bounds_is_left_alone(report: Report) -> None:
    assert bound_report(report) == report


def test_the_worst_case_report_shrinks_until_it_fits() -> None:
    wide = "\U0001f600" * 10_000  # 4 bytes per code point, far over every limit
    frame = Frame(module=wide, function=wide, filename=wide, lineno=1, in_app=True, line=wide)
    report = realistic_report(
        exc_type=wide,
        message=wide,
        causes=(Cause(type=wide, message=wide),) * 20,
        frames=(frame,) * 200,
        log_tail=(wide,) * 200,
        argv=(wide,) * 200,
        app=wide,
        app_version=wide,
        host=wide,
        os=wide,
        python=wide,
        facts=((wide, wide),) * 50,
        fingerprint=(wide,) * 20,
        tags=((wide, wide),) * 50,
        contexts=((wide, wide),) * 50,
        environment=wide,
        release=wide,
    )
    bounded = bound_report(report)
    assert len(encode(ReportMsg(report=bounded, sender="p" * wire.MAX_NAME), KEY)) <= MAX_MESSAGE
    assert bounded.message.endswith("bytes]")  # even the message had to give way
    assert len(bounded.tags) == wire.MAX_TAGS and len(bounded.contexts) == wire.MAX_CONTEXTS


def test_an_older_peer_decodes_a_report_with_tags_and_contexts() -> None:
    """The scope's keys are optional: a reader that lacks them ignores them."""
    from mesh.wire.codecs import _Record
    from mesh.wire.schema import _REPORT

    scoped = realistic_report(
        tags=(("region", "eu-west-1"),),
        contexts=(("user.id", "42"),),
        environment="production",
        release="3.4.1",
        stdout_tail=("done",),
    )
    older = _Record(
        Report, *(f for f in _REPORT.fields if f.key not in ("tg", "cx", "en", "rl", "so"))
    )
    fields = _REPORT.write(scoped)
    assert {"tg", "cx", "en", "rl", "so"} <= set(fields)
    assert older.read(fields) == realistic_report()  # what the older peer sees
    assert set(_REPORT.write(realistic_report())) == set(older.write(realistic_report()))


def test_bound_report_keeps_the_innermost_frames_and_the_newest_lines() -> None:
    frames = tuple(
        Frame(module="m", function=f"f{i}", filename="m.py", lineno=i, in_app=True)
        for i in range(100)
    )
    log_tail = tuple(f"line {i}" for i in range(80))
    argv = tuple(f"arg{i}" for i in range(70))
    bounded = bound_report(realistic_report(frames=frames, log_tail=log_tail, argv=argv))
    assert len(bounded.frames) == wire.MAX_FRAMES
    assert bounded.frames[:5] == frames[:5]
    assert bounded.frames[5].function == "…[cut 37 frames]"
    assert bounded.frames[6:] == frames[-58:]
    assert bounded.log_tail == ("…[cut 31 older lines]", *log_tail[-49:])
    assert bounded.argv == (*argv[:63], "…[cut 7 arguments]")


def test_bound_report_counts_frames_a_capture_marker_stood_for() -> None:
    frames = tuple(
        Frame(module="m", function=f"f{i}", filename="m.py", lineno=i + 1, in_app=True)
        for i in range(100)
    )
    marker = Frame(module="", function="…[cut 900 frames]", filename="", lineno=0, in_app=False)
    bounded = bound_report(realistic_report(frames=(*frames[:10], marker, *frames[10:])))
    assert bounded.frames[5].function == "…[cut 937 frames]"  # 36 frames and the 900
    assert bound_report(bounded) == bounded


def test_the_capture_walk_has_the_wires_shape() -> None:
    assert OUTER_FRAMES == wire_bound.OUTER_FRAMES
    assert OUTER_FRAMES + 1 + INNER_FRAMES == wire.MAX_FRAMES


def test_bound_report_cuts_strings_with_a_visible_marker() -> None:
    bounded = bound_report(realistic_report(message="é" * 5000, host="bad\udcffhost"))
    assert len(bounded.message.encode()) <= wire.MAX_TEXT
    assert bounded.message.startswith("éé")
    assert bounded.message.endswith("…[cut 1828 bytes]")  # 10,000 bytes down to 8,191
    assert bounded.host == "bad?host"


def test_an_unbounded_report_that_is_too_big_is_refused_but_its_bounded_copy_is_sent() -> None:
    big = realistic_report(
        log_tail=tuple(str(i) * 499 for i in range(10)) * 5,
        argv=tuple(str(i) * 499 for i in range(10)) * 6,
    )
    with pytest.raises(LocalError):
        encode(ReportMsg(report=big.replace(message="x" * 9000)))
    assert len(encode(ReportMsg(report=bound_report(big)), KEY)) <= MAX_MESSAGE


def test_bound_report_refuses_what_cannot_be_cut() -> None:
    with pytest.raises(LocalError):
        bound_report(realistic_report(seq=2**64))


# --------------------------------------------------------------------------
# Byte budgets (codec contract, docs/PROTOCOL.md "Byte budget")


def test_a_first_report_with_30_frames_and_50_log_lines_is_at_most_4_kb() -> None:
    report = realistic_report()
    assert len(report.frames) == 30
    assert len(report.log_tail) == 50
    assert 75 <= sum(map(len, report.log_tail)) / 50 <= 85
    assert 55 <= sum(len(f.line) for f in report.frames) / 30 <= 65
    assert bound_report(report) == report  # nothing was cut to get there
    sender = "12D3KooWQx4Lk8yRUbxHdyzYV2tsYSXtPKwQ3ULT9Zd5K7VDbW6z"
    assert len(encode(ReportMsg(report=report, sender=sender), KEY)) <= 4096


def test_a_repeat_occurrence_is_at_most_128_bytes_with_its_mac() -> None:
    occ = Occurrence(
        origin=bytes(16),
        signature=bytes(16),
        count=2**32 - 1,
        first_seen=1732540562.123,
        last_seen=1732540600.5,
        host="build-runner-07.corp",
        severity=Severity.CRITICAL,
    )
    assert len(occ.host) == 20
    assert len(encode(OccMsg(occurrences=(occ,)), KEY)) <= 128


# --------------------------------------------------------------------------
# The durable store's bytes


@settings(max_examples=60, deadline=None)
@given(report=reports, state=states)
def test_stored_reports_and_states_round_trip(report: Report, state: SigState) -> None:
    assert decode_report(encode_report(report)) == report
    decoded = decode_state(encode_state(state))
    assert decoded == state
    assert type(decoded.counts) is dict


def test_a_stored_report_is_an_unsigned_report_message() -> None:
    report = realistic_report()
    data = encode_report(report)
    assert decode(data) == ReportMsg(report=report)
    assert decode(data + wire._mac(KEY, data), KEY) == ReportMsg(report=report)


def test_a_full_state_fits_the_store() -> None:
    counts = {
        bytes([i % 256, i // 256]) * 8: OriginCount(
            count=i, first_seen=1.0, last_seen=2.0, host="h" * wire.MAX_NAME
        )
        for i in range(wire.MAX_ORIGINS)
    }
    state = SigState(signature=bytes(16), detail=bound_report(realistic_report()), counts=counts)
    assert decode_state(encode_state(state)) == state
    assert Limits().max_origins <= wire.MAX_ORIGINS


def test_a_state_too_big_for_a_frame_still_fits_the_store() -> None:
    rng = random.Random(3)

    def noise(n: int) -> str:
        return base64.b85encode(rng.randbytes(n * 4 // 5)).decode()

    counts = {
        rng.randbytes(16): OriginCount(count=1, first_seen=1.0, last_seen=2.0, host=noise(200))
        for _ in range(wire.MAX_ORIGINS)
    }
    lines = tuple(noise(500) for _ in range(50))
    detail = bound_report(realistic_report(log_tail=lines, argv=lines))
    state = SigState(signature=bytes(16), detail=detail, counts=counts)
    data = encode_state(state)
    assert MAX_MESSAGE < len(data) <= wire.MAX_STORED
    assert decode_state(data) == state
    with pytest.raises(LocalError, match="split it"):
        encode(StateMsg(states=(state,)))


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (b"garbage", "undecodable"),
        (b"\x80" * (wire.MAX_STORED + 1), "oversized"),
        (packed({"v": 9, "k": "report"}), "unknown-version"),
    ],
)
def test_bad_stored_bytes_raise_a_wire_error(data: bytes, expected: str) -> None:
    with pytest.raises(WireError) as info:
        decode_report(data)
    assert info.value.reason == expected
    with pytest.raises(WireError):
        decode_state(data)


def test_stored_bytes_of_the_other_kind_are_refused() -> None:
    with pytest.raises(WireError, match="unknown-kind"):
        decode_state(encode_report(realistic_report()))
    with pytest.raises(WireError, match="unknown-kind"):
        decode_report(encode_state(SigState(signature=bytes(16))))
    with pytest.raises(WireError, match="bad-field"):
        decode_state(encode(StateMsg(states=())))


# --------------------------------------------------------------------------
# docs/PROTOCOL.md says what the code does

PROTOCOL = (Path(__file__).parent.parent / "docs" / "PROTOCOL.md").read_text()


def test_the_protocol_document_lists_every_key_of_every_record() -> None:
    for table in RECORD_TABLES:
        for field in table.fields:
            if table.cls in MESSAGE_TYPES and field.key == "n":
                continue  # the sender, described once with the envelope
            row = f"| `{field.key}` | `{field.attr}` |"
            assert row in PROTOCOL, f"{table.cls.__name__}: {row}"


def test_the_protocol_documents_test_vectors_are_what_encode_writes() -> None:
    hb = HeartbeatMsg(heartbeat=Heartbeat(peer="12D3KooWA", priority=10, term=3, leading=True))
    occ = Occurrence(
        origin=bytes(range(16)),
        signature=bytes(range(16, 32)),
        count=7,
        first_seen=1700000000.0,
        last_seen=1700000060.5,
        host="build-runner-07.corp",
        severity=Severity.HIGH,
    )
    for msg in (hb, OccMsg(occurrences=(occ,))):
        assert encode(msg, KEY).hex() in PROTOCOL


def test_a_groups_leaves_round_trip_and_a_report_without_them_is_unchanged() -> None:
    leaf_frames = tuple(
        Frame(module="m", function=f"f{i}", filename="m.py", lineno=i + 1, in_app=True)
        for i in range(40)
    )
    leaves = tuple(
        Leaf(type="ValueError", message=f"leaf {i}", frames=leaf_frames) for i in range(12)
    )
    plain = realistic_report()
    assert b"lv" not in encode_report(plain) and b"lc" not in encode_report(plain)
    bounded = bound_report(plain.replace(leaves=leaves, leaves_cut=3))
    assert len(bounded.leaves) == wire.MAX_LEAVES and bounded.leaves_cut == 5
    assert len(bounded.leaves[0].frames) == wire.MAX_LEAF_FRAMES
    assert bounded.leaves[0].frames[2].function == "…[cut 25 frames]"
    assert decode_report(encode_report(bounded)) == bounded
