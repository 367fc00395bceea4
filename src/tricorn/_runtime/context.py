"""What a connection knows of its server and its peer.

The server's shared state (app, config, lifespan state, the set of open
connections, shutdown) and one connection's peer (addresses, TLS, the proxy
trust that applies to it), plus the headers every response gets.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from email.utils import formatdate
from typing import Any, Protocol

import anyio
import anyio.abc
from anyio import TypedAttributeSet, typed_attribute

from .._asgi.proxy import ProxyTrust
from .._asgi.scope import ConnectionInfo
from .._asgi.types import ASGI3App, TLSExtension
from .._protocol import Headers, ProxyHeader, RequestReceived
from ..config import Config
from .metrics import combine, open_metrics
from .statsd import open_statsd
from .tls import tls_extension

__all__ = [
    "AttributesOnly",
    "ConnectionContext",
    "Member",
    "Peer",
    "alt_svc",
    "connection_info",
    "default_headers",
]


def default_headers(
    config: Config, clock: Callable[[], float] = time.time, *, extra: Headers = ()
) -> Callable[[], Headers]:
    """The ``date`` / ``server`` headers (and ``extra``) added to responses that lack them.

    The Date value is formatted once per second, not once per response.
    """
    server: Headers = (
        ((b"server", config.server_name.encode("latin-1")),) if config.server_header else ()
    ) + extra
    if not config.date_header:
        return lambda: server
    second = -1
    current = server

    def headers() -> Headers:
        nonlocal second, current
        now = int(clock())
        if now != second:
            date = formatdate(now, usegmt=True).encode("ascii")
            second, current = now, ((b"date", date), *server)
        return current

    return headers


def alt_svc(config: Config, quic_ports: list[int]) -> Headers:
    """The Alt-Svc field advertising HTTP/3 (RFC 7838, RFC 9114 3.1.1) on TCP responses."""
    value = config.alt_svc
    if value in ("", "off"):
        return ()
    if value == "auto":
        if not quic_ports:
            return ()
        ports = dict.fromkeys(quic_ports)  # each once, in bind order
        value = ", ".join(f'h3=":{port}"; ma=86400' for port in ports)
    return ((b"alt-svc", value.encode("ascii")),)


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2 and isinstance(value[0], str):
        return (value[0], int(value[1]))
    return None


class ProxyAttribute(TypedAttributeSet):
    #: The PROXY header a trusted proxy opened the connection with.
    header: ProxyHeader = typed_attribute()


def connection_info(stream: anyio.abc.ByteStream, scheme: str = "http") -> ConnectionInfo:
    """Client and server addresses as the ASGI scope wants them.

    A TLS stream makes the scheme ``https`` and carries the ASGI TLS extension.
    A PROXY header from a trusted proxy stands for the socket's own facts.
    """
    header = stream.extra(ProxyAttribute.header, None)
    if header is not None:
        return _proxied_info(connection_info(_Plain(stream), scheme), header)
    local = stream.extra(anyio.abc.SocketAttribute.local_address, None)
    remote = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    family = stream.extra(anyio.abc.SocketAttribute.family, None)
    tls = tls_extension(stream)
    if tls is not None:
        scheme = "https"
    if family == socket.AF_UNIX:
        path = local if isinstance(local, str) else None
        server = (path, None) if path else None
        return ConnectionInfo(client=None, server=server, scheme=scheme, tls=tls)
    return ConnectionInfo(client=_address(remote), server=_address(local), scheme=scheme, tls=tls)


class AttributesOnly(anyio.abc.ByteStream):
    """Stream attributes with no stream: for reading facts as any stream's.

    Subclasses give ``extra_attributes``; nothing is ever sent or received.
    """

    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise NotImplementedError

    async def send(self, item: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        raise NotImplementedError


class _Plain(AttributesOnly):
    """A stream's attributes without the PROXY header's (to read the socket's own)."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: dict[Any, Callable[[], Any]] = {**self._stream.extra_attributes}
        attributes.pop(ProxyAttribute.header, None)
        return attributes


def _proxied_info(own: ConnectionInfo, header: ProxyHeader) -> ConnectionInfo:
    """What the proxy says of the client, over what the socket says of the proxy."""
    if header.client is None:
        return own  # LOCAL or UNKNOWN: the proxy speaks for itself
    tls = own.tls
    scheme = own.scheme
    if header.tls and tls is None:
        scheme = "https"
        tls = {
            "server_cert": None,
            "client_cert_chain": [],
            "client_cert_name": header.client_cert_name,
            "client_cert_error": None,
            "tls_version": header.tls_version,
            "cipher_suite": None,
        }
    server = header.server if header.server is not None else own.server
    return ConnectionInfo(client=header.client, server=server, scheme=scheme, tls=tls)


class Member(Protocol):
    """What the server needs of each open connection (or handshake) to shut down."""

    def shutdown(self) -> None:
        """Wind down: finish what is in flight, take nothing new."""
        ...


class Reader(Protocol):
    """A connection that stopped reading for the server-wide body budget."""

    def resume_reading(self) -> None:
        """The budget has room again: read on if nothing else holds reading back."""
        ...


#: Request body bytes handed to apps and not yet taken by them, across the
#: server, past which a connection holding any stops reading until apps
#: catch up. Each connection's own share is bounded by its window.
MAX_BODY_BUFFER = 64 * 1024 * 1024


class Peer:
    """A connection's peer: its addresses, and the proxy trust that applies to it."""

    __slots__ = ("info", "proxy")

    def __init__(self, info: ConnectionInfo, proxy: ProxyTrust | None) -> None:
        self.info = info
        self.proxy = proxy

    def for_request(self, request: RequestReceived) -> ConnectionInfo:
        """The addresses one request's scope gets (a trusted proxy's headers applied)."""
        if self.proxy is not None:
            return self.proxy.resolve(self.info, request.headers)
        return self.info


class ConnectionContext:
    """What every connection of one server shares: app, config, state, shutdown."""

    def __init__(
        self,
        app: ASGI3App,
        config: Config,
        state: dict[str, object] | None,
        *,
        quic_ports: list[int] | None = None,
        on_max_requests: Callable[[], None] | None = None,
    ) -> None:
        self.app = app
        self.config = config
        self.state = state
        #: TCP responses advertise HTTP/3 when it is served; HTTP/3 ones need not.
        self.default_headers = default_headers(config, extra=alt_svc(config, quic_ports or []))
        self.quic_default_headers = default_headers(config)
        self.proxy = ProxyTrust.parse(config.forwarded_allow_ips) if config.proxy_headers else None
        #: None unless metrics_bind is set (see metrics.py).
        self.prometheus = open_metrics(config)
        #: None unless statsd_host is set (see statsd.py).
        self.statsd = open_statsd(config)
        #: What the runner calls: None when both are off, so each hook is one check.
        self.metrics = combine(self.prometheus, self.statsd)
        self.shutting_down = False
        self.connections: set[Member] = set()
        #: Apps still running for a client that is gone, with an unfinished
        #: response: each is cancelled after app_disconnect_grace, or at once
        #: past MAX_ORPHANS (see Connection._orphan).
        self.orphans = 0
        #: Apps running that count against limit_concurrency.
        self.running_apps = 0
        #: Request body bytes held for apps server-wide (see MAX_BODY_BUFFER),
        #: and the connections waiting for it to fall.
        self.body_held = 0
        self._starved: set[Reader] = set()
        #: Requests (and WebSockets) started. Once ``max_requests`` have, a
        #: supervised worker asks to be replaced (``on_max_requests``).
        self.requests = 0
        self._max_requests = config.max_requests if on_max_requests is not None else 0
        self._on_max_requests = on_max_requests

    def reporting(self) -> AbstractAsyncContextManager[None]:
        """Around serving: StatsD is sent while in it (nothing to do without statsd_host)."""
        if self.statsd is None:
            return contextlib.nullcontext()
        return self.statsd.running()

    def peer(self, stream: anyio.abc.ByteStream) -> Peer:
        """What is known of a new connection's peer, proxy trust included."""
        info = connection_info(stream)
        proxy = self.proxy
        return Peer(info, proxy if proxy is not None and proxy.trusts_peer(info) else None)

    def datagram_peer(self, client: object, server: object, tls: TLSExtension) -> Peer:
        """What is known of a QUIC connection's peer (HTTP/3 is always https)."""
        info = ConnectionInfo(
            client=_address(client), server=_address(server), scheme="https", tls=tls
        )
        proxy = self.proxy
        return Peer(info, proxy if proxy is not None and proxy.trusts_peer(info) else None)

    def over_body_budget(self, reader: Reader) -> bool:
        """Past the server-wide body budget: ``reader`` waits for resume_reading()."""
        if self.body_held <= MAX_BODY_BUFFER:
            return False
        self._starved.add(reader)
        return True

    def body_taken(self, size: int) -> None:
        """Apps took (or dropped) ``size`` held body bytes; wake readers once there is room."""
        self.body_held -= size
        if self._starved and self.body_held <= MAX_BODY_BUFFER:
            starved, self._starved = self._starved, set()
            for reader in starved:
                reader.resume_reading()

    def count_request(self) -> None:
        self.requests += 1
        if self.requests == self._max_requests and self._on_max_requests is not None:
            self._on_max_requests()

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        for connection in list(self.connections):
            connection.shutdown()
