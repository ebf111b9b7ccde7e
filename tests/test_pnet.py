"""Private networks (mesh/pnet.py): the cipher, the key files, and connections that keep outsiders out.

Read top to bottom: XSalsa20 against published and libsodium vectors (what
makes us wire-compatible with go-libp2p, kubo and js-libp2p, which all use
it), swarm key files and the PSK a cluster key derives, then two
``ProtectedConn`` over a real TCP connection (same key, key rotation, wrong
key, a peer outside any private network), and last two py-libp2p hosts
whose swarms :func:`protect_swarm` set up.

The vectors were computed once with libsodium (PyNaCl's, in a throwaway
venv: ``crypto_core_hsalsa20``, ``crypto_stream_xsalsa20``); PyNaCl is not a
dependency.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import asynccontextmanager
from typing import Any

import multiaddr
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st
from libp2p.abc import IRawConnection
from libp2p.crypto.ed25519 import create_new_key_pair
from libp2p.crypto.x25519 import create_new_key_pair as create_x25519
from libp2p.custom_types import TProtocol
from libp2p.io.exceptions import IOException
from libp2p.io.trio import TrioTCPStream
from libp2p.network.config import ConnectionConfig, RetryConfig
from libp2p.network.connection.exceptions import RawConnError
from libp2p.network.connection.raw_connection import RawConnection
from libp2p.peer.peerinfo import PeerInfo
from libp2p.security.noise.transport import PROTOCOL_ID as NOISE_ID
from libp2p.security.noise.transport import Transport as NoiseTransport

from mesh.errors import LocalError, PnetError
from mesh.libp2p_host import new_tcp_host
from mesh.pnet import (
    MULTISTREAM_HEADER,
    NONCE_SIZE,
    SWARM_KEY_HEADER,
    ProtectedConn,
    XSalsa20,
    derive_psk,
    format_swarm_key,
    hsalsa20,
    parse_swarm_key,
    protect,
    protect_swarm,
)

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
OTHER = b"\xee" * 32

# --- 1. XSalsa20: the cipher every libp2p pnet uses ----------------------------------

# "Cryptography in NaCl" (Bernstein), tests core1, core2, stream, stream3; confirmed with libsodium.
NACL_SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
NACL_FIRSTKEY = bytes.fromhex("1b27556473e985d462cd51197a9a46c76009549eac6474f206c4ee0844f68389")
NACL_NONCE = bytes.fromhex("69696ee955b62b73cd62bda875fc73d68219e0036b7a0b37")


def test_hsalsa20_derives_the_nacl_papers_keys() -> None:
    assert hsalsa20(NACL_SHARED, bytes(16)) == NACL_FIRSTKEY  # core1
    assert hsalsa20(NACL_FIRSTKEY, NACL_NONCE[:16]) == bytes.fromhex(  # core2
        "dc908dda0b9344a953629b733820778880f3ceb421bb61b91cbd4c3e66256ce4"
    )


def test_xsalsa20_gives_the_nacl_papers_stream() -> None:
    assert XSalsa20(NACL_FIRSTKEY, NACL_NONCE).xor(bytes(32)) == bytes.fromhex(  # stream3
        "eea6a7251c1e72916d11c2cb214d3c252539121d8e234e652d651fa4c8cff880"
    )
    four_mib = XSalsa20(NACL_FIRSTKEY, NACL_NONCE).xor(bytes(4 * 1024 * 1024))  # stream
    assert hashlib.sha256(four_mib).hexdigest() == (
        "662b9d0e3463029156069b12f918691a98f7dfb2ca0393c96bbfc6b1fbd630a2"
    )


@pytest.mark.parametrize(
    ("key", "nonce", "plaintext", "ciphertext"),
    [
        pytest.param(
            bytes(32),
            bytes(24),
            bytes(64),
            "ba6e26df4b2ea2cf64d2d3636623b5f45c8636d9998d194d605ac3ba3cff1512"
            "c63ebbfffe85ce2cebdef7dc42f494576d05bdd7b929ebb045f2a793f740277d",
            id="zero key and nonce, one block",
        ),
        pytest.param(
            bytes(range(32)),
            bytes(range(100, 124)),
            bytes(200),
            "687dffe12afa5fef7e0feb195d6cd992f49572d6194281e3c87fbb4e2106932c"
            "02b999c93ab6cee9b0fd23943784a3183eaa38a7e4a64b1ba60c42940a8bc988"
            "a86ff4184f379be4f51617620013dd65c190ae181286395f03e15304dbb29e64"
            "438b4c6dc83c488ab98f1ff240c3ed9354978d07a7ff7b02929b892778e6e5c6"
            "fac9e97befd93ac7037b7f8bbc5c9538782f964ad72b4009408c0ea3e411d63c"
            "be000d1837ce1d094d232b38ddc9e055632bf61f2d27721cab09a7726638c9f0"
            "817f2b28ddd1d367",
            id="over three blocks",
        ),
        pytest.param(
            NACL_FIRSTKEY,
            NACL_NONCE,
            MULTISTREAM_HEADER + b"\x07/noise\n",
            "fd89ca50706a1be21963a7aa4c620d0b15172217890c200a44167aae",
            id="a multistream proposal, as a pnet peer sends it",
        ),
    ],
)
def test_xsalsa20_matches_libsodium(
    key: bytes, nonce: bytes, plaintext: bytes, ciphertext: str
) -> None:
    assert XSalsa20(key, nonce).xor(plaintext).hex() == ciphertext


@settings(max_examples=50)
@given(
    key=st.binary(min_size=32, max_size=32),
    nonce=st.binary(min_size=24, max_size=24),
    data=st.binary(max_size=300),
    cuts=st.lists(st.integers(0, 300)),
)
def test_a_keystream_continues_across_calls_and_undoes_itself(
    key: bytes, nonce: bytes, data: bytes, cuts: list[int]
) -> None:
    """A connection encrypts write by write; the bytes must be those of one call."""
    whole = XSalsa20(key, nonce).xor(data)
    stream = XSalsa20(key, nonce)
    bounds = [0, *sorted(c for c in cuts if c <= len(data)), len(data)]
    assert b"".join(stream.xor(data[a:b]) for a, b in itertools.pairwise(bounds)) == whole
    assert XSalsa20(key, nonce).xor(whole) == data


def test_a_key_or_nonce_of_the_wrong_size_is_refused() -> None:
    with pytest.raises(PnetError, match="32 key and 16 nonce bytes"):
        hsalsa20(bytes(31), bytes(16))
    with pytest.raises(PnetError, match="nonce is 24 bytes, not 8"):
        XSalsa20(bytes(32), bytes(8))


# --- 2. Swarm key files, and the PSK of a cluster key ----------------------------------

KUBO_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f"
KUBO_KEY = f"/key/swarm/psk/1.0.0/\n/base16/\n{KUBO_HEX}\n"  # as ipfs-swarm-key-gen writes it


def test_a_kubo_swarm_key_file_parses_and_formats_back() -> None:
    assert parse_swarm_key(KUBO_KEY) == OLD
    assert parse_swarm_key(KUBO_KEY.encode()) == OLD
    assert format_swarm_key(OLD) == KUBO_KEY


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(KUBO_KEY.replace(KUBO_HEX, KUBO_HEX.upper()), id="capitals"),
        pytest.param(KUBO_KEY.replace("\n", "\r\n"), id="CRLF"),
        pytest.param(KUBO_KEY.rstrip("\n"), id="no final newline"),
    ],
)
def test_hex_keys_are_read_as_go_reads_them(text: str) -> None:
    assert parse_swarm_key(text) == OLD


def test_base64_and_binary_keys_are_read_as_go_reads_them() -> None:
    header = SWARM_KEY_HEADER + b"\n"
    assert parse_swarm_key(header + b"/base64/\n" + base64.b64encode(NEW) + b"\n") == NEW
    assert parse_swarm_key(header + b"/bin/\n" + NEW) == NEW
    newline_key = b"\n" * 32  # raw bytes may be newlines: only the 33rd is dropped
    assert parse_swarm_key(header + b"/bin/\n" + newline_key + b"\n") == newline_key


@given(st.binary(min_size=32, max_size=32))
def test_every_psk_round_trips_through_its_swarm_key_file(psk: bytes) -> None:
    assert parse_swarm_key(format_swarm_key(psk)) == psk


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(b"", "first line is ''", id="empty"),
        pytest.param(KUBO_KEY.replace("1.0.0", "2.0.0"), "not a swarm key", id="wrong header"),
        pytest.param(KUBO_KEY.replace("base16", "base32"), "'/base32/' is none of", id="codec"),
        pytest.param(KUBO_KEY.replace("1f\n", "\n"), "64 characters, this one 62", id="short hex"),
        pytest.param(
            KUBO_KEY.replace("1f\n", "1f20\n"), "64 characters, this one 66", id="long hex"
        ),
        pytest.param(
            KUBO_KEY.replace("0a0b", "0g0b"), "characters that are not base16", id="bad hex"
        ),
        pytest.param(
            "/key/swarm/psk/1.0.0/\n/base64/\n" + base64.b64encode(bytes(16)).decode(),
            "44 characters, this one 24",
            id="short base64",
        ),
        pytest.param("/key/swarm/psk/1.0.0/\n/base64/\n" + "!" * 44, "not base64", id="bad base64"),
        pytest.param(b"/key/swarm/psk/1.0.0/\n/bin/\n" + bytes(31), "this one 31", id="short bin"),
    ],
)
def test_a_bad_swarm_key_says_what_is_wrong(text: bytes | str, message: str) -> None:
    with pytest.raises(PnetError, match=message) as raised:
        parse_swarm_key(text)
    assert isinstance(raised.value, LocalError)  # a configuration to fix, not a peer's fault
    assert "0g0b" not in str(raised.value)  # the key's text never reaches a log


def test_a_cluster_key_derives_the_psk_an_operator_hands_to_go_or_js_peers() -> None:
    cluster_key = bytes(range(32))
    psk = derive_psk(cluster_key)
    assert psk == hmac.new(cluster_key, b"errmesh/pnet/1", "sha256").digest()
    assert len(psk) == 32 and psk != cluster_key
    assert derive_psk(b"\x01" * 32) != psk
    assert parse_swarm_key(format_swarm_key(psk)) == psk
    with pytest.raises(PnetError, match="at least 16 bytes"):
        derive_psk(b"short")


def test_a_psk_list_must_hold_32_byte_keys() -> None:
    with pytest.raises(PnetError, match="not 31"):
        format_swarm_key(bytes(31))
    conn: Any = object()
    with pytest.raises(PnetError, match="as a sequence"):
        ProtectedConn(conn, OLD)  # type: ignore[arg-type]  # a lone key, not [key]
    with pytest.raises(PnetError, match="at least one PSK"):
        ProtectedConn(conn, [])
    with pytest.raises(PnetError, match="not 16"):
        ProtectedConn(conn, [OLD, bytes(16)])


# --- 3. Two ProtectedConn over a real TCP connection ---------------------------------


@asynccontextmanager
async def tcp_pair() -> AsyncIterator[tuple[RawConnection, RawConnection]]:
    """py-libp2p's own raw connections, the dialler's and the listener's, over loopback TCP."""
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    client = await trio.open_tcp_stream("127.0.0.1", listener.socket.getsockname()[1])
    server = await listener.accept()
    await listener.aclose()
    try:
        yield (
            RawConnection(TrioTCPStream(client), True),
            RawConnection(TrioTCPStream(server), False),
        )
    finally:
        await client.aclose()
        await server.aclose()


def run(test: Callable[[RawConnection, RawConnection], Awaitable[None]]) -> None:
    async def main() -> None:
        with trio.fail_after(5):
            async with tcp_pair() as (dialler, listener):
                await test(dialler, listener)

    trio.run(main)


async def send(conn: ProtectedConn | RawConnection, data: bytes, pieces: Sequence[int]) -> None:
    """Write ``data`` cut in ``pieces``-sized writes (cycling), as a protocol above writes."""
    sent = 0
    for size in _cycle(pieces):
        if sent >= len(data):
            return
        await conn.write(data[sent : sent + size])
        sent += size


async def receive(conn: ProtectedConn, size: int, asks: Sequence[int | None]) -> bytes:
    """Read ``size`` bytes with reads of ``asks`` (cycling); no read returns more than asked."""
    got = b""
    for ask in _cycle(asks):
        if len(got) >= size:
            return got
        chunk = await conn.read(ask)
        assert 0 < len(chunk) <= (ask or len(chunk)), (ask, len(chunk))
        got += chunk
    raise AssertionError("unreachable")


def _cycle(sizes: Sequence[int | None]) -> Any:
    while True:
        yield from sizes


#: What a libp2p peer writes first on a raw connection, then whatever follows.
def message(body: bytes) -> bytes:
    return MULTISTREAM_HEADER + body


async def both_ways(
    a: ProtectedConn,
    b: ProtectedConn,
    bodies: tuple[bytes, bytes],
    pieces: Sequence[int] = (4096,),
    asks: Sequence[int | None] = (4096,),
) -> tuple[bytes, bytes]:
    """Each side sends its message while reading the other's; what each received."""
    sent_by_a, sent_by_b = message(bodies[0]), message(bodies[1])
    received: dict[str, bytes] = {}

    async def reader(name: str, conn: ProtectedConn, size: int) -> None:
        received[name] = await receive(conn, size, asks)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send, a, sent_by_a, pieces)
        nursery.start_soon(send, b, sent_by_b, pieces)
        nursery.start_soon(reader, "b", b, len(sent_by_a))
        nursery.start_soon(reader, "a", a, len(sent_by_b))
    return received["b"], received["a"]


@settings(max_examples=25, deadline=None)
@given(
    bodies=st.tuples(st.binary(max_size=3000), st.binary(max_size=3000)),
    pieces=st.lists(st.integers(1, 700), min_size=1, max_size=8),
    asks=st.lists(st.one_of(st.none(), st.integers(1, 700)), min_size=1, max_size=8),
)
def test_peers_with_the_same_key_talk_both_ways_however_the_bytes_are_cut(
    bodies: tuple[bytes, bytes], pieces: list[int], asks: list[int | None]
) -> None:
    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        a, b = ProtectedConn(dialler, [OLD]), ProtectedConn(listener, [OLD])
        got_by_b, got_by_a = await both_ways(a, b, bodies, pieces, asks)
        assert got_by_b == message(bodies[0]) and got_by_a == message(bodies[1])
        assert a.peer_key == b.peer_key == 0

    run(test)


def test_during_a_rotation_each_side_writes_its_first_key_and_reads_either() -> None:
    """A has moved to the new key and still accepts the old; B not yet: both work."""

    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        a, b = ProtectedConn(dialler, [NEW, OLD]), ProtectedConn(listener, [OLD, NEW])
        assert await both_ways(a, b, (b"from A", b"from B")) == (
            message(b"from A"),
            message(b"from B"),
        )
        assert a.peer_key == 1 and b.peer_key == 1  # each reads the other's with its second key

    run(test)


def test_the_bytes_on_the_wire_are_go_libp2ps_nonce_then_xsalsa20() -> None:
    """What a go or js peer reads from us, and what we read from one, byte for byte."""

    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        ours = ProtectedConn(dialler, [OLD])
        await ours.write(message(b"hello"))
        wire = await listener.read(NONCE_SIZE + len(message(b"hello")))
        nonce, ciphertext = wire[:NONCE_SIZE], wire[NONCE_SIZE:]
        assert XSalsa20(OLD, nonce).xor(ciphertext) == message(b"hello")

        go_nonce = bytes(range(24))  # a go peer's write, built from the cipher alone
        await listener.write(go_nonce + XSalsa20(OLD, go_nonce).xor(message(b"from go")))
        assert await receive(ours, len(message(b"from go")), [None]) == message(b"from go")

    run(test)


def test_small_reads_get_the_header_piece_by_piece() -> None:
    """The header is decrypted to choose the key; it is handed out as the caller asks."""

    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        a, b = ProtectedConn(dialler, [OLD]), ProtectedConn(listener, [OLD])
        await a.write(message(b"!"))
        assert [await b.read(1), await b.read(7), await b.read(100)] == [
            b"\x13",
            b"/multis",
            b"tream/1.0.0\n",
        ]
        assert await b.read(100) == b"!"

    run(test)


def test_a_peer_with_another_key_is_refused_before_any_byte_is_decrypted() -> None:
    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        a, b = ProtectedConn(dialler, [OTHER]), ProtectedConn(listener, [OLD, NEW])
        await a.write(message(b"secret"))
        with pytest.raises(RawConnError, match="none of our 2 PSK") as raised:
            await b.read(4096)  # the first read: nothing came back before the refusal
        assert isinstance(raised.value, IOException)  # the swarm's upgrade fails on it
        assert b.peer_key is None

    run(test)


def test_a_peer_outside_any_private_network_is_refused_at_once() -> None:
    """A plain libp2p peer sends the multistream header and waits: no nonce will come."""

    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        b = ProtectedConn(listener, [OLD])
        await dialler.write(MULTISTREAM_HEADER + b"\x07/noise\n")
        with trio.fail_after(1), pytest.raises(RawConnError, match="not in a private network"):
            await b.read(4096)

    run(test)


@pytest.mark.parametrize(
    ("sent", "message_"),
    [
        pytest.param(b"", "after 0 of 20 bytes of the nonce", id="nothing"),
        pytest.param(bytes(22), "after 2 of 4 bytes of the nonce", id="part of the nonce"),
        pytest.param(bytes(30), "after 6 of 20 bytes of the first message", id="nonce only"),
    ],
)
def test_a_peer_that_hangs_up_early_is_refused(sent: bytes, message_: str) -> None:
    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        b = ProtectedConn(listener, [OLD])
        await dialler.write(sent)
        await dialler.close()
        with pytest.raises(RawConnError, match=message_):
            await b.read(4096)

    run(test)


def test_a_protected_conn_is_the_raw_connection_the_swarm_upgrades() -> None:
    async def test(dialler: RawConnection, listener: RawConnection) -> None:
        protected = protect(dialler, [OLD])
        assert isinstance(protected, IRawConnection) and isinstance(protected, ProtectedConn)
        assert protected.is_initiator and not protect(listener, [OLD]).is_initiator
        assert protected.get_remote_address() == dialler.get_remote_address()
        assert protected.get_transport_addresses() == dialler.get_transport_addresses()
        assert protected.get_connection_type() == dialler.get_connection_type()
        await protected.close()
        assert await listener.read(1) == b""  # closing it closes the connection

    run(test)


# --- 4. Two py-libp2p hosts, their swarms protected ----------------------------------


def new_host(keys: Sequence[bytes] | None, *, hex_psk: str | None = None) -> Any:
    key_pair = create_new_key_pair()
    host = new_tcp_host(
        key_pair=key_pair,
        sec_opt={
            TProtocol(NOISE_ID): NoiseTransport(key_pair, noise_privkey=create_x25519().private_key)
        },
        listen_addrs=[multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")],
        connection_config=ConnectionConfig(max_connections_per_peer=1),
    )
    swarm = host.get_network()
    swarm.retry_config = RetryConfig(max_retries=0)  # a refusal is final: fail fast
    if keys is not None:
        protect_swarm(swarm, keys)
    if hex_psk is not None:
        swarm.psk = hex_psk  # py-libp2p's own way to set a PSK
    return host


def connects(listener: Any, dialler: Any) -> bool:
    async def main() -> bool:
        address = multiaddr.Multiaddr("/ip4/127.0.0.1/tcp/0")
        async with listener.run(listen_addrs=[address]), dialler.run(listen_addrs=[address]):
            with trio.fail_after(5):
                try:
                    await dialler.connect(PeerInfo(listener.get_id(), listener.get_addrs()))
                except Exception:
                    return False
            joined = listener.get_id() in dialler.get_network().connections
            if joined:  # else py-libp2p leaves the dialler's socket open at exit
                await dialler.disconnect(listener.get_id())
            return joined

    return trio.run(main)


@pytest.mark.parametrize(
    ("listener_keys", "dialler_keys", "joined"),
    [
        pytest.param([OLD], [OLD], True, id="same key"),
        pytest.param([NEW, OLD], [OLD, NEW], True, id="rotation"),
        pytest.param([OLD], [OTHER], False, id="other key"),
        pytest.param([OLD], None, False, id="dialler without a key"),
        pytest.param(None, [OLD], False, id="listener without a key"),
    ],
)
def test_only_swarms_sharing_a_key_connect(
    listener_keys: list[bytes] | None, dialler_keys: list[bytes] | None, joined: bool
) -> None:
    assert connects(new_host(listener_keys), new_host(dialler_keys)) is joined


def test_a_swarm_given_a_hex_psk_the_py_libp2p_way_speaks_the_go_protocol_too() -> None:
    """protect_swarm replaced py-libp2p's pnet for the whole process (the first host's call)."""
    listener = new_host([OLD])
    assert connects(listener, new_host(None, hex_psk=OLD.hex()))
