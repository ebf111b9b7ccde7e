"""libp2p private networks (pnet, ``/key/swarm/psk/1.0.0/``) as go, kubo and js speak them.

A private network keeps every peer without the pre-shared key (PSK) out
before anything else happens on a connection: each side's first write is a
random 24-byte nonce, and every byte it writes after is XSalsa20(PSK, nonce)
ciphertext; each side reads the peer's nonce first and decrypts with it. An
outsider gets no multistream-select, no Noise and no peer id out of us.

py-libp2p 0.8.1 ships a pnet (``libp2p.security.pnet``) that uses Salsa20
with an 8-byte nonce: it cannot talk to go or js peers, so this module
replaces it (:func:`protect_swarm`). Beyond go-libp2p, a connection accepts
several keys, so that a fleet rotates its key without a flag day: each peer
writes with its first key and reads with whichever accepted key the peer
wrote with, recognised by the header both sides always send first (the
multistream-select line, :data:`MULTISTREAM_HEADER`). With one key this is
go-libp2p's protocol byte for byte.

This module reads randomness and sockets, so it is an IO edge like
``mesh/gossip.py``. It imports neither libp2p nor PyCryptodome at load time:
importing it first must not defeat :func:`mesh.libp2p_host.import_libp2p`'s
lean import (which also decides how PyCryptodome loads its C code).
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import struct
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Any, Final, Protocol, cast

from mesh.errors import PnetError
from mesh.wire.limits import MIN_KEY

if TYPE_CHECKING:
    from Crypto.Cipher.Salsa20 import Salsa20Cipher
    from libp2p.abc import IRawConnection
    from libp2p.connection_types import ConnectionType

__all__ = [
    "KEY_SIZE",
    "MULTISTREAM_HEADER",
    "NONCE_SIZE",
    "SWARM_KEY_HEADER",
    "ProtectedConn",
    "RawConn",
    "XSalsa20",
    "derive_psk",
    "format_swarm_key",
    "hsalsa20",
    "parse_swarm_key",
    "protect",
    "protect_swarm",
]

#: First line of a swarm key file: the key's codec (go-libp2p ``core/pnet``).
SWARM_KEY_HEADER: Final = b"/key/swarm/psk/1.0.0/"
KEY_SIZE: Final = 32
NONCE_SIZE: Final = 24
#: What a peer always writes first once the pnet nonce is out: multistream-select's
#: header, a varint length (19) then the protocol line. It tells which key the peer uses.
MULTISTREAM_HEADER: Final = b"\x13/multistream/1.0.0\n"
#: The label :func:`derive_psk` binds into the PSK, so no other use of the
#: cluster key ever yields the same 32 bytes.
PSK_LABEL: Final = b"errmesh/pnet/1"

_SIGMA: Final = struct.unpack("<4I", b"expand 32-byte k")
_MASK: Final = 0xFFFFFFFF
#: Salsa20's quarter-rounds, as (target, a, b, rotation): x[target] ^= (x[a] + x[b]) <<< rotation.
#: The first four are the column round, the last four the row round.
_QUARTER_ROUNDS: Final = (
    ((4, 0, 12, 7), (8, 4, 0, 9), (12, 8, 4, 13), (0, 12, 8, 18)),
    ((9, 5, 1, 7), (13, 9, 5, 9), (1, 13, 9, 13), (5, 1, 13, 18)),
    ((14, 10, 6, 7), (2, 14, 10, 9), (6, 2, 14, 13), (10, 6, 2, 18)),
    ((3, 15, 11, 7), (7, 3, 15, 9), (11, 7, 3, 13), (15, 11, 7, 18)),
    ((1, 0, 3, 7), (2, 1, 0, 9), (3, 2, 1, 13), (0, 3, 2, 18)),
    ((6, 5, 4, 7), (7, 6, 5, 9), (4, 7, 6, 13), (5, 4, 7, 18)),
    ((11, 10, 9, 7), (8, 11, 10, 9), (9, 8, 11, 13), (10, 9, 8, 18)),
    ((12, 15, 14, 7), (13, 12, 15, 9), (14, 13, 12, 13), (15, 14, 13, 18)),
)


# --- XSalsa20 ------------------------------------------------------------------------


def hsalsa20(key: bytes, nonce16: bytes) -> bytes:
    """XSalsa20's subkey for ``key`` and the first 16 nonce bytes (NaCl's ``crypto_core_hsalsa20``).

    Pure Python: it runs once per connection and direction (~60 µs), and
    PyCryptodome offers Salsa20 but not HSalsa20.
    """
    if len(key) != KEY_SIZE or len(nonce16) != 16:
        raise PnetError(f"HSalsa20 takes 32 key and 16 nonce bytes, not {len(key)}, {len(nonce16)}")
    k = struct.unpack("<8I", key)
    n = struct.unpack("<4I", nonce16)
    x = [_SIGMA[0], *k[:4], _SIGMA[1], *n, _SIGMA[2], *k[4:], _SIGMA[3]]
    for _ in range(10):  # 20 rounds, two at a time
        for quarter in _QUARTER_ROUNDS:
            for target, a, b, rotation in quarter:
                total = (x[a] + x[b]) & _MASK
                x[target] ^= ((total << rotation) | (total >> (32 - rotation))) & _MASK
    # Unlike Salsa20's block function, no feed-forward: the diagonal and the nonce words.
    return struct.pack("<8I", *(x[i] for i in (0, 5, 10, 15, 6, 7, 8, 9)))


class XSalsa20:
    """One direction's XSalsa20 keystream: :meth:`xor` continues where the last call stopped.

    Salsa20 itself is PyCryptodome's (in C, installed with py-libp2p), keyed
    with the HSalsa20 subkey and the last 8 nonce bytes, as NaCl does.
    """

    __slots__ = ("_cipher",)

    def __init__(self, key: bytes, nonce: bytes) -> None:
        if len(nonce) != NONCE_SIZE:
            raise PnetError(f"an XSalsa20 nonce is {NONCE_SIZE} bytes, not {len(nonce)}")
        from Crypto.Cipher import Salsa20

        self._cipher: Salsa20Cipher = Salsa20.new(key=hsalsa20(key, nonce[:16]), nonce=nonce[16:])

    def xor(self, data: bytes) -> bytes:
        """``data`` XOR the next ``len(data)`` keystream bytes (encrypts and decrypts alike)."""
        return self._cipher.encrypt(data)


# --- Keys ----------------------------------------------------------------------------

_HEX_KEY: Final = re.compile(rb"[0-9a-fA-F]{64}")


def parse_swarm_key(data: bytes | str) -> bytes:
    """The 32-byte PSK of a go/kubo swarm key file (``swarm.key``).

    Three lines: :data:`SWARM_KEY_HEADER`, an encoding (``/base16/`` as kubo
    and js-libp2p write it; ``/base64/`` and ``/bin/`` as go-libp2p also
    reads), then the key. Lines may end in CRLF, as go accepts. Stricter than
    go where go silently ignores what follows the key: a key of the wrong
    length is an error here, not a truncation.
    """
    raw = data.encode() if isinstance(data, str) else bytes(data)
    header, _, rest = raw.partition(b"\n")
    if header.rstrip(b"\r") != SWARM_KEY_HEADER:
        raise PnetError(
            f"not a swarm key: the first line is {_shown(header)}, not {SWARM_KEY_HEADER.decode()}"
        )
    encoding, _, body = rest.partition(b"\n")
    encoding = encoding.rstrip(b"\r")
    if encoding == b"/bin/":
        return _binary_key(body)
    text = body.strip()
    if encoding == b"/base16/":
        if not _HEX_KEY.fullmatch(text):
            raise PnetError(_bad_text_key("base16", 64, text))
        return bytes.fromhex(text.decode())
    if encoding == b"/base64/":
        try:
            key = base64.b64decode(text, validate=True)
        except binascii.Error:
            raise PnetError(_bad_text_key("base64", 44, text)) from None
        if len(key) != KEY_SIZE:
            raise PnetError(_bad_text_key("base64", 44, text))
        return key
    raise PnetError(f"swarm key encoding {_shown(encoding)} is none of /base16/, /base64/, /bin/")


def _binary_key(body: bytes) -> bytes:
    """A ``/bin/`` key: 32 raw bytes, then at most a newline (a key byte may be one too)."""
    if len(body) == KEY_SIZE + 1 and body.endswith(b"\n"):
        body = body[:KEY_SIZE]
    if len(body) != KEY_SIZE:
        raise PnetError(f"a /bin/ swarm key is {KEY_SIZE} bytes, this one {len(body)}")
    return body


def _bad_text_key(encoding: str, size: int, text: bytes) -> str:
    """The error for a text key: what is wrong with it, never the key itself (logs keep it)."""
    if len(text) != size:
        return f"a {encoding} swarm key is {size} characters, this one {len(text)}"
    return f"this {encoding} swarm key has characters that are not {encoding}"


def _shown(line: bytes) -> str:
    """A header line as an error message shows it: short, and printable whatever it holds."""
    return repr(line[:40].decode("utf-8", "replace"))


def format_swarm_key(psk: bytes) -> str:
    """A swarm key file for ``psk``, in the base16 form kubo writes and go and js read.

    What an operator hands a go or js peer (``IPFS_PATH/swarm.key``, js's
    ``preSharedKey``) to join a private network whose PSK is ours.
    """
    return f"{SWARM_KEY_HEADER.decode()}\n/base16/\n{_checked_key(psk).hex()}\n"


def derive_psk(cluster_key: bytes) -> bytes:
    """The PSK of a fleet with a cluster key: HMAC-SHA256(cluster key, :data:`PSK_LABEL`).

    Every peer with the cluster key derives it, so a private network needs
    no second secret to distribute; the label keeps it apart from the
    cluster key's other use (the wire's MACs), and the HMAC means the PSK,
    handed to a go or js peer, does not give away the cluster key.
    """
    if len(cluster_key) < MIN_KEY:
        raise PnetError(f"the cluster key must be at least {MIN_KEY} bytes")
    return hmac.new(cluster_key, PSK_LABEL, hashlib.sha256).digest()


def _checked_key(psk: bytes) -> bytes:
    if not isinstance(psk, (bytes, bytearray)) or len(psk) != KEY_SIZE:
        size = len(psk) if isinstance(psk, (bytes, bytearray)) else type(psk).__name__
        raise PnetError(f"a PSK is {KEY_SIZE} bytes, not {size}")
    return bytes(psk)


def _checked_keys(keys: Sequence[bytes]) -> tuple[bytes, ...]:
    """Accepted keys as a tuple, the one to write with first; a lone ``bytes`` is a mistake."""
    if isinstance(keys, (bytes, bytearray, str)):
        raise PnetError("pass the accepted PSKs as a sequence, the one to write with first: [psk]")
    checked = tuple(_checked_key(key) for key in keys)
    if not checked:
        raise PnetError("a private network needs at least one PSK")
    return checked


# --- Connections ---------------------------------------------------------------------


class RawConn(Protocol):
    """What :class:`ProtectedConn` needs of the connection it wraps: py-libp2p's IRawConnection."""

    is_initiator: bool

    async def read(self, n: int | None = None) -> bytes: ...
    async def write(self, data: bytes) -> None: ...
    async def close(self) -> None: ...
    def get_remote_address(self) -> tuple[str, int] | None: ...
    def get_transport_addresses(self) -> list[Any]: ...
    def get_connection_type(self) -> ConnectionType: ...


class ProtectedConn:
    """A raw connection inside a private network: py-libp2p's ``IRawConnection``, encrypted.

    ``keys`` are the accepted PSKs; this side writes with the first. Until the
    peer's key is known, :meth:`read` returns nothing: it reads the nonce and
    the peer's first 20 bytes, and only the key that decrypts them to
    :data:`MULTISTREAM_HEADER` is used after (:attr:`peer_key`). A peer
    without an accepted key, or with none at all, is refused there with
    py-libp2p's ``RawConnError`` (an ``IOException``): multistream-select
    turns it into a failed upgrade, so the swarm drops the connection as a
    go node drops a peer whose key differs. One reader and one writer at a
    time, as for every raw connection; each write is encrypted before it
    awaits, so writes queued on the connection keep their order.
    """

    def __init__(self, conn: RawConn, keys: Sequence[bytes]) -> None:
        self._conn = conn
        self._keys = _checked_keys(keys)
        self._writer: XSalsa20 | None = None
        self._reader: XSalsa20 | None = None
        self._pending = b""  # decrypted, not yet returned (the header, when n was small)
        #: Index in ``keys`` of the key the peer writes with, once its first bytes are in.
        self.peer_key: int | None = None
        _register_as_raw_connection()

    @property
    def is_initiator(self) -> bool:
        return self._conn.is_initiator

    async def write(self, data: bytes) -> None:
        """Encrypt and send ``data``; the first write sends a fresh nonce ahead of it."""
        if self._writer is None:
            nonce = os.urandom(NONCE_SIZE)
            self._writer = XSalsa20(self._keys[0], nonce)
            await self._conn.write(nonce + self._writer.xor(data))
            return
        await self._conn.write(self._writer.xor(data))

    async def read(self, n: int | None = None) -> bytes:
        """Up to ``n`` decrypted bytes (``None``: what arrives); ``b""`` at the stream's end."""
        if self._reader is None:
            self._reader = await self._handshake()
        if self._pending:
            size = len(self._pending) if n is None else n
            taken, self._pending = self._pending[:size], self._pending[size:]
            return taken
        data = await self._conn.read(n)
        return self._reader.xor(data) if data else b""

    async def _handshake(self) -> XSalsa20:
        """The peer's nonce, and the accepted key its first 20 bytes decrypt to the header under."""
        head = await self._read_exactly(len(MULTISTREAM_HEADER), "the nonce")
        if head == MULTISTREAM_HEADER:  # a random nonce is this with probability 2^-160
            raise _refused("the peer is not in a private network (plain multistream-select)")
        nonce = head + await self._read_exactly(NONCE_SIZE - len(head), "the nonce")
        first = await self._read_exactly(len(MULTISTREAM_HEADER), "the first message")
        for index, key in enumerate(self._keys):
            reader = XSalsa20(key, nonce)
            if reader.xor(first) == MULTISTREAM_HEADER:
                self.peer_key, self._pending = index, MULTISTREAM_HEADER
                return reader
        raise _refused(f"the peer writes with none of our {len(self._keys)} PSK(s)")

    async def _read_exactly(self, size: int, what: str) -> bytes:
        data = b""
        while len(data) < size:
            chunk = await self._conn.read(size - len(data))
            if not chunk:
                raise _refused(f"the peer closed after {len(data)} of {size} bytes of {what}")
            data += chunk
        return data

    async def close(self) -> None:
        await self._conn.close()

    def get_remote_address(self) -> tuple[str, int] | None:
        return self._conn.get_remote_address()

    def get_transport_addresses(self) -> list[Any]:
        return self._conn.get_transport_addresses()

    def get_connection_type(self) -> ConnectionType:
        return self._conn.get_connection_type()


def _refused(detail: str) -> Exception:
    """A refused handshake, raised as the swarm's upgrade expects a failed read to fail."""
    from libp2p.network.connection.exceptions import RawConnError

    return RawConnError(f"pnet: {detail}")


@cache
def _register_as_raw_connection() -> None:
    """Make ProtectedConn an ``IRawConnection`` (the swarm checks) with no libp2p import at load."""
    from libp2p.abc import IRawConnection

    IRawConnection.register(ProtectedConn)


def protect(conn: RawConn, keys: Sequence[bytes]) -> IRawConnection:
    """``conn`` inside the private network of ``keys`` (py-libp2p's ``new_protected_conn``)."""
    return cast("IRawConnection", ProtectedConn(conn, keys))  # one by registration


class _KeyRing(str):
    """``swarm.psk`` as :func:`protect_swarm` sets it: a str, as py-libp2p types that
    attribute (the write key's hex), carrying every accepted key."""

    keys: tuple[bytes, ...]

    def __new__(cls, keys: tuple[bytes, ...]) -> _KeyRing:
        ring = super().__new__(cls, keys[0].hex())
        ring.keys = keys
        return ring

    def __repr__(self) -> str:
        return f"<pnet key ring: {len(self.keys)} key(s)>"  # never the key in a log


def _new_protected_conn(conn: RawConn, psk: str) -> IRawConnection:
    """py-libp2p's ``new_protected_conn`` replaced: go-compatible, and a key ring's every key."""
    keys = psk.keys if isinstance(psk, _KeyRing) else (_hex_psk(psk),)
    return protect(conn, keys)


def _hex_psk(psk: str) -> bytes:
    if not _HEX_KEY.fullmatch(psk.encode()):
        raise PnetError("a swarm's psk is 64 hex digits")
    return bytes.fromhex(psk)


def protect_swarm(swarm: Any, keys: Sequence[bytes]) -> None:
    """Make a py-libp2p ``Swarm`` keep every connection it dials or accepts inside ``keys``.

    Call it before the swarm dials or listens. The swarm wraps each raw
    connection with ``libp2p.network.swarm.new_protected_conn(conn,
    swarm.psk)`` when ``swarm.psk`` is set: this sets ``swarm.psk`` to a key
    ring and points that function at this module's. The function is the
    module's, so another swarm of the process with a hex ``psk`` of its own
    then speaks the go-compatible protocol too (py-libp2p's 8-byte nonce
    talks to no one else).
    """
    import libp2p.network.swarm as swarm_module

    ring = _KeyRing(_checked_keys(keys))
    setattr(swarm_module, "new_protected_conn", _new_protected_conn)  # noqa: B010  # typed PskConn there
    swarm.psk = ring
