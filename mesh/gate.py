"""Who may hold a connection to this peer: bans by peer id and by address, sans-IO.

A peer whose frames keep failing validation is banned by the id of the
connection that delivered them (``mesh.relay_policy.Rejections`` decides
when), not only by the frames' signer: an attacker that signs every frame
with a fresh identity still delivers them over one connection. A banned
peer is disconnected and its new connections are closed as soon as they
open, for ``ban_for`` seconds.

An attacker may also reconnect under a fresh peer id. When
``ip_ban_after`` distinct banned ids came from one IP address while their
bans run, the address itself is refused for ``ban_for`` seconds: its dials
are turned away before the security handshake (py-libp2p's connection gate
deny list). A lone misbehaving process behind a shared address (NAT, one
host's loopback) costs its address nothing until it has burnt through
several identities.

Everything is bounded: at most ``max_peers`` banned ids and ``max_ips``
addresses are remembered (the oldest ban is forgotten first), so a flood
of identities costs bounded memory. The IO (disconnecting, the deny list)
is ``mesh.gossip``'s; here are only the decisions, on an explicit clock.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

__all__ = ["Ban", "BanGate", "GateOptions"]


@dataclass(frozen=True, slots=True, kw_only=True)
class GateOptions:
    ban_for: float = 600.0
    ip_ban_after: int = 3
    max_peers: int = 4_096
    max_ips: int = 1_024


@dataclass(frozen=True, slots=True)
class Ban:
    """What to carry out for one ban: the peer to drop, and an address to refuse."""

    peer: str
    deny_ip: str | None


class BanGate:
    def __init__(self, options: GateOptions | None = None) -> None:
        self.options = options or GateOptions()
        self._peers: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._ips: collections.OrderedDict[str, float] = collections.OrderedDict()
        #: Per address, the banned ids seen from it and until when each ban runs.
        self._ids_by_ip: collections.OrderedDict[str, dict[str, float]] = collections.OrderedDict()

    def ban(self, peer: str, ip: str | None, now: float) -> Ban:
        """Ban ``peer`` (reached at ``ip``, if known) from ``now``."""
        until = now + self.options.ban_for
        self._remember(self._peers, peer, until, self.options.max_peers)
        deny = None
        if ip is not None:
            ids = self._ids_by_ip.pop(ip, {})
            ids = {p: t for p, t in ids.items() if t > now}
            ids[peer] = until
            self._ids_by_ip[ip] = ids
            while len(self._ids_by_ip) > self.options.max_ips:
                self._ids_by_ip.popitem(last=False)
            if len(ids) >= self.options.ip_ban_after and ip not in self._ips:
                deny = ip
            if len(ids) >= self.options.ip_ban_after:
                self._remember(self._ips, ip, until, self.options.max_ips)
        return Ban(peer=peer, deny_ip=deny)

    @staticmethod
    def _remember(
        table: collections.OrderedDict[str, float], key: str, until: float, limit: int
    ) -> None:
        table.pop(key, None)
        table[key] = until
        while len(table) > limit:
            table.popitem(last=False)

    def refuses(self, peer: str, ip: str | None, now: float) -> bool:
        """Whether a connection from ``peer`` at ``ip`` is to be closed now."""
        if self._peers.get(peer, -1.0) > now:
            return True
        return ip is not None and self._ips.get(ip, -1.0) > now

    def expire(self, now: float) -> tuple[list[str], list[str]]:
        """Lift the bans that ran out; returns (peers, addresses) allowed back."""
        peers = [p for p, until in self._peers.items() if until <= now]
        ips = [ip for ip, until in self._ips.items() if until <= now]
        for peer in peers:
            del self._peers[peer]
        for ip in ips:
            del self._ips[ip]
        for ip in [ip for ip, ids in self._ids_by_ip.items() if max(ids.values()) <= now]:
            del self._ids_by_ip[ip]
        return peers, ips

    @property
    def banned_peers(self) -> list[str]:
        return list(self._peers)

    @property
    def banned_ips(self) -> list[str]:
        return list(self._ips)

    def __len__(self) -> int:
        return len(self._peers) + len(self._ips) + len(self._ids_by_ip)
