"""Trusting a reverse proxy's X-Forwarded-For / X-Forwarded-Proto.

Behind nginx or a load balancer the socket's peer is the proxy; the real
client and scheme arrive in headers. They are believed only from peers the
configuration trusts, since any client can send them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, replace

from .scope import ConnectionInfo

__all__ = ["ProxyTrust"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """The peers whose forwarding headers are believed."""

    networks: tuple[IPNetwork, ...]
    everyone: bool = False

    @classmethod
    def parse(cls, allowed: Iterable[str]) -> ProxyTrust:
        """From config values: ``*``, addresses or networks (``10.0.0.0/8``).

        Validation and error messages live in Config; here they are known good.
        """
        values = [value.strip() for value in allowed]
        if "*" in values:
            return cls(networks=(), everyone=True)
        return cls(networks=tuple(ipaddress.ip_network(value, strict=False) for value in values))

    def trusts(self, host: str | None) -> bool:
        # A unix socket peer (no host) is a local process allowed in by file
        # permissions, as much a part of the deployment as a loopback proxy.
        if self.everyone or host is None:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in network for network in self.networks)

    def trusts_peer(self, connection: ConnectionInfo) -> bool:
        """Whether this connection's peer is a proxy whose headers count.

        The peer does not change during a connection: ask once, then call
        :meth:`resolve` per request only when the answer is yes.
        """
        return self.trusts(connection.client[0] if connection.client is not None else None)

    def resolve(
        self, connection: ConnectionInfo, headers: Iterable[tuple[bytes, bytes]]
    ) -> ConnectionInfo:
        """The connection as the client saw it, given that the peer is trusted."""
        forwarded_for: list[str] = []
        proto: str | None = None
        for name, value in headers:
            if name == b"x-forwarded-for":
                forwarded_for.extend(hop.strip() for hop in value.decode("latin-1").split(","))
            elif name == b"x-forwarded-proto":
                # Each proxy may append; the last value is the one the
                # nearest (trusted) proxy vouches for.
                proto = value.decode("latin-1").split(",")[-1].strip().lower()
        client = connection.client
        # Walk from the nearest hop outwards: the first address not itself a
        # trusted proxy is the client. If every hop is trusted, the farthest.
        hops = [hop for hop in forwarded_for if hop]
        for index in range(len(hops) - 1, -1, -1):
            if index == 0 or not self.trusts(hops[index]):
                # The port the client used is not forwarded; 0 says unknown.
                client = (hops[index], 0)
                break
        scheme = proto if proto in _SCHEMES else connection.scheme
        if client == connection.client and scheme == connection.scheme:
            return connection
        # The TLS extension stays: it describes the hop the request arrived
        # on, which is TLS whatever the proxy says of the hop before it.
        return replace(connection, client=client, scheme=scheme)
