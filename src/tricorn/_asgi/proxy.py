"""Trusting a reverse proxy's X-Forwarded-For / X-Forwarded-Proto.

Behind nginx or a load balancer the socket's peer is the proxy; the real
client and scheme arrive in headers. They are believed only from peers the
configuration trusts, since any client can send them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from typing import Final

from .scope import ConnectionInfo

__all__ = ["ProxyTrust"]

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_SCHEMES = frozenset({"http", "https"})
#: Peers whose answer ``trusts`` remembers: most connections come from a few
#: addresses (the proxies, or the same clients again), and parsing an address
#: is a good part of what a new connection costs.
_REMEMBERED: Final = 1024


@dataclass(frozen=True, slots=True)
class ProxyTrust:
    """The peers whose forwarding headers are believed."""

    networks: tuple[IPNetwork, ...]
    everyone: bool = False
    _answers: dict[str, bool] = field(default_factory=dict, compare=False, repr=False)

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
        answer = self._answers.get(host)
        if answer is None:
            if len(self._answers) >= _REMEMBERED:
                self._answers.clear()
            answer = self._answers[host] = self._judge(host)
        return answer

    def _judge(self, host: str) -> bool:
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
        """The connection as the client saw it, given that the peer is trusted.

        RFC 7239 ``Forwarded`` wins when present; otherwise the
        ``X-Forwarded-*`` family. Either way the hops are walked from the
        nearest (the trusted peer's own view) outwards, and the first one that
        is not itself a trusted proxy is the client: a client cannot pass off
        an address it writes into the header, only the proxies we trust can.
        """
        forwarded: list[bytes] = []
        fields: dict[bytes, list[str]] = {}
        for name, value in headers:
            if name == b"forwarded":
                forwarded.append(value)
            elif name in _X_FORWARDED:
                fields.setdefault(name, []).extend(_list(value))
        if forwarded:
            hop = self._client_element(_elements(b",".join(forwarded)))
            if hop is None:
                return connection
            client_hop: str | None = hop.get("for", "unknown")
            proto = hop.get("proto")
            host = hop.get("host")
            port = None
            # Forwarded has no word for a stripped prefix: that one header still counts.
            prefix = _last(fields.get(b"x-forwarded-prefix"))
        elif fields:
            client_hop = self._client_hop(fields.get(b"x-forwarded-for", []))
            # Each proxy may append; the last value is the one the nearest
            # (trusted) proxy vouches for.
            proto = _last(fields.get(b"x-forwarded-proto"))
            host = _last(fields.get(b"x-forwarded-host"))
            port = _last(fields.get(b"x-forwarded-port"))
            prefix = _last(fields.get(b"x-forwarded-prefix"))
        else:
            return connection
        changes: dict[str, object] = {}
        if client_hop is not None:
            changes["client"] = _node(client_hop)
        if proto is not None and proto.lower() in _SCHEMES:
            changes["scheme"] = proto.lower()
        scheme = str(changes.get("scheme", connection.scheme))
        server = _server(host, port, scheme)
        if server is not None:
            changes["server"] = server
            if host:
                changes["host"] = host.encode("latin-1")
        if prefix is not None and (root := _prefix(prefix)) is not None:
            changes["root_path"] = root
        if not changes:
            return connection
        # The TLS extension stays: it describes the hop the request arrived
        # on, which is TLS whatever the proxy says of the hop before it.
        return replace(connection, **changes)  # type: ignore[arg-type]

    def _client_hop(self, hops: list[str]) -> str | None:
        """From X-Forwarded-For: the first untrusted hop from the nearest (None: none given)."""
        hops = [hop for hop in hops if hop]
        for index in range(len(hops) - 1, -1, -1):
            if index == 0 or not self.trusts(_host_of(hops[index])):
                return hops[index]
        return None

    def _client_element(self, elements: list[dict[str, str]]) -> dict[str, str] | None:
        """From Forwarded: the element whose ``for`` is the first untrusted hop."""
        for index in range(len(elements) - 1, -1, -1):
            node = _node(elements[index].get("for"))
            host = node[0] if isinstance(node, tuple) else None
            if index == 0 or host is None or not self.trusts(host):
                return elements[index]
        return None


#: The X-Forwarded-* headers tricorn reads.
_X_FORWARDED = frozenset(
    {
        b"x-forwarded-for",
        b"x-forwarded-proto",
        b"x-forwarded-host",
        b"x-forwarded-port",
        b"x-forwarded-prefix",
    }
)

_DEFAULT_PORTS = {"http": 80, "https": 443}


def _list(value: bytes) -> list[str]:
    return [part.strip() for part in value.decode("latin-1").split(",")]


def _last(values: list[str] | None) -> str | None:
    if not values:
        return None
    return values[-1] or None


def _elements(value: bytes) -> list[dict[str, str]]:
    """RFC 7239 4: comma-separated elements of ``;``-separated ``name=value`` pairs.

    Values may be quoted strings (with backslash escapes); a malformed
    element is kept empty, so it still counts as a hop.
    """
    text = value.decode("latin-1")
    elements: list[dict[str, str]] = [{}]
    name = ""
    token = ""
    quoted = escaped = False
    for char in text + ",":
        if quoted:
            if escaped:
                token += char
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                quoted = False
            else:
                token += char
        elif char == '"':
            quoted = True
        elif char == "=" and not name:
            name, token = token.strip().lower(), ""
        elif char in ";,":
            if name:
                elements[-1].setdefault(name, token.strip())
            name, token = "", ""
            if char == ",":
                elements.append({})
        else:
            token += char
    return elements[:-1]


def _node(value: str | None) -> tuple[str, int] | None:
    """A forwarded node: ``192.0.2.1``, ``192.0.2.1:4711``, ``[2001:db8::1]:4711``.

    ``unknown`` and obfuscated names (``_hidden``) name no address: None.
    The port, when not given, is 0 (unknown).
    """
    if not value:
        return None
    host, port = value, "0"
    if value.startswith("["):
        host, _, rest = value[1:].partition("]")
        if rest.startswith(":"):
            port = rest[1:]
    elif value.count(":") == 1:
        host, port = value.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    return (str(address), int(port) if port.isdigit() and int(port) <= 65535 else 0)


def _host_of(hop: str) -> str | None:
    node = _node(hop)
    return node[0] if node is not None else hop


def _server(host: str | None, port: str | None, scheme: str) -> tuple[str, int] | None:
    """The server the client addressed: the forwarded host (and port), if any."""
    if not host and not port:
        return None
    name = host or ""
    port_number: int | None = None
    if name.startswith("["):
        inner, _, rest = name[1:].partition("]")
        name = inner
        if rest.startswith(":") and rest[1:].isdigit():
            port_number = int(rest[1:])
    elif name.count(":") == 1:
        name, _, text = name.partition(":")
        port_number = int(text) if text.isdigit() else None
    if port is not None and port.isdigit():
        port_number = int(port)
    if port_number is None or port_number > 65535:
        port_number = _DEFAULT_PORTS.get(scheme, 80)
    if not name:
        return None
    return (name, port_number)


def _prefix(value: str) -> str | None:
    """X-Forwarded-Prefix as a root path: ``/app`` (``/`` and junk give none)."""
    prefix = "/" + value.strip().strip("/")
    if prefix == "/" or any(ord(char) < 0x21 for char in prefix):
        return None
    return prefix
