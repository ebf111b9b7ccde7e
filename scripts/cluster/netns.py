"""The cluster's network: one namespace per host, a bridge namespace, addresses.

Layout (``N`` hosts, names unique per run so parallel or leftover runs never
collide; addresses only exist inside the run's namespaces, so two runs can
use the same ones):

- ``em<run>-br``: the bridge ``br0`` (``10.99.0.1/24``), one veth port per
  host. The test GitHub listens here, reachable from every host; the
  fault proxy's outbound legs start here too.
- ``em<run>-h<i>``: ``eth0`` = ``10.99.0.<10+i>/24`` on the bridge, and on
  ``lo`` the *service addresses* of every host, ``10.99.1.<j>``. Relay ``i``
  listens on its own, ``10.99.1.<i>``; the proxy listens on every other one
  in this namespace, so a dial to relay ``j`` from host ``i`` (at the
  address ``j`` advertises, whoever told it) always reaches the proxy's
  ``i -> j`` listener, which connects on to ``j`` over the bridge and ``j``'s
  veth. Every byte between relays therefore passes through the proxy, and
  the kernel (no netem, no iptables here) is not asked for any filtering.

Sockets are put into a namespace with ``setns(2)`` on the calling *thread*
(:func:`socket_in`): the harness process itself stays where it is.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

__all__ = [
    "BRIDGE_ADDR",
    "Topology",
    "netns_unavailable",
    "service_addr",
    "socket_in",
]

CLONE_NEWNET = 0x40000000
BRIDGE_ADDR = "10.99.0.1"
NETNS_DIR = "/run/netns"


def service_addr(index: int) -> str:
    """The address host ``index`` (1-based) listens on, the same in every namespace."""
    return f"10.99.1.{index}"


def eth_addr(index: int) -> str:
    return f"10.99.0.{10 + index}"


def ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """``ip ARGS``: the only way this module changes the network."""
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30, check=False)
    if check and done.returncode != 0:
        raise OSError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done


def netns_unavailable() -> str | None:
    """Why this machine cannot run the cluster (None when it can)."""
    if os.geteuid() != 0:
        return "network namespaces need root (ip netns add)"
    if shutil.which("ip") is None:
        return "no ip command (iproute2)"
    name = f"emprobe{os.getpid()}"
    try:
        added = ip("netns", "add", name, check=False)
        if added.returncode != 0:
            return f"ip netns add is not permitted here: {added.stderr.strip()}"
        veth = ip(
            "-n", name, "link", "add", "p0", "type", "veth", "peer", "name", "p1", check=False
        )
        if veth.returncode != 0:
            return f"veth pairs are not permitted here: {veth.stderr.strip()}"
    finally:
        ip("netns", "del", name, check=False)
    return None


_libc = ctypes.CDLL(None, use_errno=True)
_setns_lock = threading.Lock()


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"setns: {os.strerror(errno)}")


@contextlib.contextmanager
def entered(namespace: str) -> Iterator[None]:
    """This thread in ``namespace`` for the block (sockets made inside stay there).

    ``setns`` moves only the calling thread; threads started inside the
    block are born in the namespace.
    """
    own = os.open(f"/proc/self/task/{threading.get_native_id()}/ns/net", os.O_RDONLY)
    target = os.open(f"{NETNS_DIR}/{namespace}", os.O_RDONLY)
    try:
        _setns(target)
        try:
            yield
        finally:
            _setns(own)
    finally:
        os.close(target)
        os.close(own)


def socket_in(namespace: str) -> socket.socket:
    """A non-blocking TCP socket that lives in ``namespace``."""
    with _setns_lock, entered(namespace):
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setblocking(False)
    return sock


@dataclass(frozen=True)
class Topology:
    """The namespaces of one run; :meth:`create` builds them, :meth:`destroy` removes them."""

    run: str
    hosts: int

    @property
    def bridge_ns(self) -> str:
        return f"em{self.run}-br"

    def host_ns(self, index: int) -> str:
        return f"em{self.run}-h{index}"

    @property
    def namespaces(self) -> list[str]:
        return [self.bridge_ns, *(self.host_ns(i) for i in self.indices)]

    @property
    def indices(self) -> range:
        return range(1, self.hosts + 1)

    def port_name(self, index: int) -> str:
        """The bridge side of host ``index``'s veth."""
        return f"b{index}"

    def create(self) -> None:
        br = self.bridge_ns
        ip("netns", "add", br)
        ip("-n", br, "link", "set", "lo", "up")
        ip("-n", br, "link", "add", "br0", "type", "bridge")
        ip("-n", br, "addr", "add", f"{BRIDGE_ADDR}/24", "dev", "br0")
        ip("-n", br, "link", "set", "br0", "up")
        for i in self.indices:
            ns = self.host_ns(i)
            ip("netns", "add", ns)
            ip("-n", ns, "link", "set", "lo", "up")
            port = self.port_name(i)
            ip("-n", br, "link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
            ip("-n", br, "link", "set", port, "master", "br0")
            ip("-n", br, "link", "set", port, "up")
            ip("-n", ns, "addr", "add", f"{eth_addr(i)}/24", "dev", "eth0")
            ip("-n", ns, "link", "set", "eth0", "up")
            for j in self.indices:
                ip("-n", ns, "addr", "add", f"{service_addr(j)}/32", "dev", "lo")
            ip("-n", br, "route", "add", f"{service_addr(i)}/32", "via", eth_addr(i))

    def set_link(self, index: int, up: bool) -> None:
        """Host ``index``'s cable: its veth, both ends, up or down."""
        state = "up" if up else "down"
        ip("-n", self.bridge_ns, "link", "set", self.port_name(index), state)
        ip("-n", self.host_ns(index), "link", "set", "eth0", state)
        if up:  # a link brought down loses the route through it
            ip(
                "-n",
                self.bridge_ns,
                "route",
                "replace",
                f"{service_addr(index)}/32",
                "via",
                eth_addr(index),
            )

    def exec_prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.host_ns(index)]

    def destroy(self) -> list[str]:
        """Kill whatever still runs in the namespaces, then delete them; returns problems."""
        return destroy_namespaces(self.namespaces)


def existing_namespaces(prefix: str = "em") -> list[str]:
    done = ip("netns", "list", check=False)
    names = [line.split()[0] for line in done.stdout.splitlines() if line.strip()]
    return [n for n in names if n.startswith(prefix)]


def destroy_namespaces(names: Sequence[str]) -> list[str]:
    problems: list[str] = []
    present = set(existing_namespaces(""))
    for name in names:
        if name not in present:
            continue
        pids = ip("netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), 9)
        deleted = ip("netns", "del", name, check=False)
        if deleted.returncode != 0:
            problems.append(f"{name}: {deleted.stderr.strip()}")
    return problems
