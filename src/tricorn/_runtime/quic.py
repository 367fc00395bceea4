"""HTTP/3: QUIC endpoints over anyio UDP sockets, and one runner per QUIC connection.

An endpoint reads its UDP socket and routes each datagram with the sans-IO
:class:`~tricorn._protocol.QuicRouter`: to the connection its connection ID
names, to a new connection (an Initial packet), or to a stateless answer
(Version Negotiation, Retry, a refusal). Each QUIC connection is a
:class:`~tricorn._runtime.connection.Connection` like any TCP one, the same
dispatch, exchanges and writer, whose reader is the queue of datagrams the
endpoint routed to it and the timer QUIC asks for, and whose writer sends
datagrams on the endpoint's socket.

The tree: serve's connection task group holds each endpoint's task and each
QUIC connection's task (which holds its exchanges). On shutdown an endpoint
refuses new clients and keeps routing datagrams to the connections it has
until the last one has drained (GOAWAY, within the graceful timeout).
"""

from __future__ import annotations

import contextlib
import math
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Final

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute

from .._asgi.types import TLSExtension
from .._protocol import (
    Command,
    Event,
    HTTP3Protocol,
    Opened,
    Phase,
    QuicRouter,
    require_http3,
    server_configuration,
)
from ..config import Config
from ..errors import ConfigError
from .connection import CLOSE_TIMEOUT, STREAM_ERRORS, Connection
from .context import ConnectionContext
from .logging import error_logger

__all__ = ["HTTP3Connection", "QuicEndpoint", "QuicSetup", "open_endpoints"]

#: Datagrams waiting for one connection's task; past it they are dropped,
#: as a full socket buffer would (QUIC retransmits what mattered).
INBOX: Final = 256
#: Datagrams one wake-up of a connection takes in at once.
_BATCH: Final = 32

_PEM_CERTIFICATE: Final = re.compile(
    rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----\s*", re.DOTALL
)
_PEM_KEY: Final = re.compile(
    rb"-----BEGIN ([A-Z ]*)PRIVATE KEY-----.+?-----END \1PRIVATE KEY-----", re.DOTALL
)

Address = Any


class QuicSetup:
    """What every QUIC endpoint of a server shares: its QUIC configuration and the
    certificate the ASGI TLS extension reports. Made before anything is bound,
    so that a bad certificate or a missing extra is a ConfigError."""

    def __init__(self, config: Config) -> None:
        require_http3()
        assert config.certfile is not None  # Config checks quic_bind needs it
        chain = _read("certfile", config.certfile)
        key_file = chain if config.keyfile is None else _read("keyfile", config.keyfile)
        certificates = b"".join(match.group() for match in _PEM_CERTIFICATE.finditer(chain))
        key = _PEM_KEY.search(key_file)
        if not certificates or key is None:
            raise ConfigError("certfile", "holds no PEM certificate and private key for HTTP/3")
        password = config.keyfile_password
        try:
            self.configuration = server_configuration(
                config,
                certificate_chain=certificates,
                private_key=key.group(),
                password=None if password is None else password.encode(),
            )
        except (ValueError, TypeError) as exc:
            raise ConfigError(
                "keyfile" if config.keyfile is not None else "certfile",
                f"cannot load the key pair for HTTP/3: {exc}",
            ) from None
        first = _PEM_CERTIFICATE.search(chain)
        assert first is not None
        self.server_cert = first.group().decode("ascii").strip() + "\n"


def _read(key: str, path: str) -> bytes:
    try:
        with open(path, "rb") as file:
            return file.read()
    except OSError as exc:
        raise ConfigError(key, f"cannot read {path!r}: {exc.strerror or exc}") from None


class _QuicProtocol:
    """:class:`HTTP3Protocol` as the runner's :class:`~tricorn._protocol.ServerProtocol`.

    The byte-stream half does not apply (datagrams go through
    :meth:`HTTP3Connection._write_output`); ``has_output`` says that a
    command, an acknowledgement or a shutdown may have given QUIC something
    to send.
    """

    __slots__ = ("dirty", "inner")
    label: ClassVar[str] = "h3"

    def __init__(self, inner: HTTP3Protocol) -> None:
        self.inner = inner
        self.dirty = True

    @property
    def error(self) -> str | None:
        return self.inner.error

    @error.setter
    def error(self, value: str | None) -> None:
        self.inner.error = value

    @property
    def closed(self) -> bool:
        return self.inner.closed

    @property
    def phase(self) -> Phase:
        return self.inner.phase

    @property
    def wants_data(self) -> bool:
        return self.inner.wants_data

    @property
    def has_output(self) -> bool:
        return self.dirty

    @property
    def drain_on_close(self) -> bool:
        return True  # QUIC's closing period (see HTTP3Connection._close)

    @property
    def output_size(self) -> int:
        return 0  # what a stream may hold is bounded by the protocol (SEND_BUFFER)

    def receive_data(self, data: bytes) -> list[Event]:
        raise NotImplementedError("HTTP/3 receives datagrams")

    def data_to_send(self) -> bytes:
        return b""

    def handle(self, command: Command) -> None:
        self.dirty = True
        self.inner.handle(command)

    def pending_events(self) -> list[Event]:
        return self.inner.pending_events()

    def held(self, stream_id: int) -> bool:
        return self.inner.held(stream_id)

    def acknowledge(self, stream_id: int, size: int) -> None:
        self.dirty = True
        self.inner.acknowledge(stream_id, size)

    def exchange_finished(self, stream_id: int) -> list[Event]:
        self.dirty = True
        return self.inner.exchange_finished(stream_id)

    def reset_stream(self, stream_id: int) -> None:
        self.dirty = True
        self.inner.reset_stream(stream_id)

    def stop_keep_alive(self) -> None:
        self.inner.stop_keep_alive()

    def start_shutdown(self) -> None:
        self.dirty = True
        self.inner.start_shutdown()

    def timed_out(self) -> str:
        self.dirty = True
        return self.inner.timed_out()


class _NoStream(anyio.abc.ByteStream):
    """The byte stream a QUIC connection does not have: its datagrams go round it."""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise NotImplementedError

    async def send(self, item: bytes) -> None:
        raise NotImplementedError

    async def send_eof(self) -> None:
        raise NotImplementedError

    async def aclose(self) -> None:
        pass

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {}


class HTTP3Connection(Connection):
    """One QUIC connection: the runner of :mod:`.connection` over datagrams and QUIC's timer."""

    def __init__(
        self,
        endpoint: QuicEndpoint,
        protocol: HTTP3Protocol,
        address: Address,
        context: ConnectionContext,
    ) -> None:
        self._endpoint = endpoint
        self._quic = protocol
        self._adapter = _QuicProtocol(protocol)
        self._inbox_in, self._inbox = anyio.create_memory_object_stream[tuple[bytes, Address]](
            INBOX
        )
        self._tls: TLSExtension = {
            "server_cert": endpoint.server_cert,
            "client_cert_chain": [],
            "client_cert_name": None,
            "client_cert_error": None,
            "tls_version": 0x0304,  # QUIC is TLS 1.3 (RFC 9001 4.2)
            "cipher_suite": None,  # known once the handshake chose it
        }
        #: The scope of the wait for datagrams, whose deadline is QUIC's timer.
        self._timer_scope: anyio.CancelScope | None = None
        super().__init__(
            _NoStream(),
            context,
            peer=context.datagram_peer(address, endpoint.local_address, self._tls),
            protocol=self._adapter,
        )

    def deliver(self, data: bytes, address: Address) -> None:
        """A datagram the endpoint routed here; dropped if the connection lags far behind."""
        with contextlib.suppress(anyio.WouldBlock, anyio.ClosedResourceError):
            self._inbox_in.send_nowait((data, address))

    # -- writing: datagrams ------------------------------------------------------

    async def _write_output(self) -> None:
        """Send what QUIC has to send, and act on what sending let out (WindowOpened)."""
        protocol = self._quic
        self._adapter.dirty = False
        datagrams = protocol.datagrams_to_send(anyio.current_time())
        for data, address in datagrams:
            await self._endpoint.send(data, address)
        if self._metrics is not None and datagrams:
            self._metrics.sent.inc(sum(len(data) for data, _ in datagrams))
        if events := protocol.pending_events():
            self._dispatch(events)
        self._endpoint.update(self)
        if self._timer_scope is not None:
            # What was sent may have set a timer (loss detection) sooner than
            # the one the read loop waits for.
            timer = protocol.next_timer()
            self._timer_scope.deadline = math.inf if timer is None else timer

    # -- reading: datagrams and the timer ----------------------------------------

    async def _next_batch(self) -> list[tuple[bytes, Address]] | None:
        """The datagrams that arrived (at least one), ``[]`` when QUIC's timer is due,
        or None once the endpoint is gone."""
        timer = self._quic.next_timer()
        try:
            with anyio.CancelScope(deadline=math.inf if timer is None else timer) as scope:
                self._timer_scope = scope
                batch = [await self._inbox.receive()]
                while len(batch) < _BATCH:
                    try:
                        batch.append(self._inbox.receive_nowait())
                    except anyio.WouldBlock:
                        break
                return batch
        except (anyio.EndOfStream, anyio.ClosedResourceError):
            return None
        finally:
            self._timer_scope = None
        return []

    def _take_in(self, batch: list[tuple[bytes, Address]]) -> None:
        """Feed the datagrams (or the timer) to QUIC and dispatch the events."""
        protocol = self._quic
        now = anyio.current_time()
        events = protocol.receive_datagrams(batch, now) if batch else []
        timer = protocol.next_timer()
        if timer is not None and timer <= now:
            events += protocol.handle_timer(now)
        self._adapter.dirty = True
        if batch and self._metrics is not None:
            self._metrics.received.inc(sum(len(data) for data, _ in batch))
        if self._tls["cipher_suite"] is None:
            self._tls["cipher_suite"] = protocol.cipher_suite
        self._endpoint.update(self)
        self._dispatch(events)

    async def _read_loop(self) -> None:
        protocol = self._quic
        with self._read_scope:
            await self._flush()
            self._arm()
            while not protocol.closed and not self._stopped:
                self._parked = True
                try:
                    batch = await self._next_batch()
                finally:
                    self._parked = False
                if batch is None:
                    break
                started = self._started
                self._take_in(batch)
                self._arm()
                await self._flush()
                if self._started != started and len(self._exchanges) > 1:
                    # As on HTTP/2: let the streams this read started answer
                    # first, so their answers leave in as few datagrams as can be.
                    await anyio.lowlevel.checkpoint()
                    async with self._write_lock:
                        pass
        self._disarm()
        if self._read_scope.cancelled_caught and not self._stopped:
            error_logger.debug(self._protocol.timed_out())

    async def _close(self, *, linger: bool) -> None:
        """Send the CONNECTION_CLOSE, sit out QUIC's closing period (RFC 9000 10.2)
        when ``linger``, and forget the connection's IDs."""
        if self._transport_closed:
            return
        self._transport_closed = True
        protocol = self._quic
        try:
            if not protocol.closed:
                protocol.close()  # reading ended otherwise: a forced stop
            with (
                anyio.move_on_after(CLOSE_TIMEOUT, shield=True),
                contextlib.suppress(*STREAM_ERRORS),
            ):
                async with self._write_lock:
                    await self._write_output()
            if linger:
                # The peer may not have our CONNECTION_CLOSE yet: what it
                # sends meanwhile is taken in, and dropped, until QUIC's
                # closing period ends (three probe timeouts). aioquic in its
                # closing state answers nothing; RFC 9000 10.2.1 would have
                # the CONNECTION_CLOSE sent again (rate-limited).
                with anyio.move_on_after(CLOSE_TIMEOUT):
                    while not protocol.terminated:
                        batch = await self._next_batch()
                        if batch is None:
                            break
                        self._take_in(batch)
                        async with self._write_lock:
                            await self._write_output()
        finally:
            self._endpoint.forget(self)
            self._inbox_in.close()
            self._inbox.close()


class QuicEndpoint:
    """One UDP socket serving HTTP/3: routes datagrams, starts connections, sends for them."""

    def __init__(
        self,
        sock: anyio.abc.UDPSocket,
        context: ConnectionContext,
        setup: QuicSetup,
        connections: anyio.abc.TaskGroup,
    ) -> None:
        config = context.config
        self._socket = sock
        self._context = context
        self._task_group = connections
        self.server_cert = setup.server_cert
        self.local_address: Address = sock.extra(SocketAttribute.local_address)
        self.router: QuicRouter[HTTP3Connection] = QuicRouter(
            config,
            setup.configuration,
            retry=config.quic_retry,
            max_connections=config.quic_max_connections,
            default_headers=context.quic_default_headers,
        )
        self._open: set[HTTP3Connection] = set()
        self._send_lock = anyio.Lock(fast_acquire=True)
        self._scope = anyio.CancelScope()
        self._draining = False

    @property
    def connections(self) -> int:
        return len(self._open)

    async def run(self) -> None:
        """Route datagrams until shut down and the last connection is over."""
        try:
            with self._scope:
                await self._receive()
        finally:
            await self._socket.aclose()

    async def _receive(self) -> None:
        sock = self._socket
        router = self.router
        while True:
            try:
                data, address = await sock.receive()
            except (anyio.ClosedResourceError, anyio.BrokenResourceError, anyio.EndOfStream):
                return
            except OSError as exc:
                # An ICMP error reported on the socket (a port unreachable
                # for a datagram we sent): nothing to do with the next one.
                error_logger.debug("QUIC socket error: %s", exc)
                continue
            target = router.route(data, address, anyio.current_time())
            match target:
                case None:
                    pass
                case bytes():
                    await self.send(target, address)
                case Opened(protocol=protocol):
                    connection = HTTP3Connection(self, protocol, address, self._context)
                    router.register(connection, protocol)
                    self._open.add(connection)
                    self._task_group.start_soon(self._run_connection, connection)
                    connection.deliver(data, address)
                case HTTP3Connection():
                    target.deliver(data, address)

    async def _run_connection(self, connection: HTTP3Connection) -> None:
        try:
            await connection.run()
        except Exception as exc:
            error_logger.error("unexpected error on an HTTP/3 connection", exc_info=exc)
        finally:
            self.forget(connection)

    async def send(self, data: bytes, address: Address) -> None:
        """Send one datagram; a failure is a lost datagram, which QUIC recovers from."""
        try:
            # anyio lets one task at a time write a socket; every connection
            # of the endpoint writes this one.
            async with self._send_lock:
                await self._socket.sendto(data, address[0], address[1])
        except (OSError, anyio.BrokenResourceError, anyio.ClosedResourceError) as exc:
            error_logger.debug("could not send a QUIC datagram to %s: %s", address, exc)

    def update(self, connection: HTTP3Connection) -> None:
        self.router.update(connection, connection._quic)

    def forget(self, connection: HTTP3Connection) -> None:
        self.router.forget(connection)
        self._open.discard(connection)
        if self._draining and not self._open:
            self._scope.cancel()

    def shutdown(self) -> None:
        """Refuse new clients; stop once the connections have drained (each gets GOAWAY
        as a member of the server's connections)."""
        self._draining = True
        self.router.accepting = False
        if not self._open:
            self._scope.cancel()

    def describe(self) -> str:
        return f"https://{format_address_of(self.local_address)} (HTTP/3, QUIC)"


def format_address_of(address: Address) -> str:
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def open_endpoints(
    sockets: list[Any],
    context: ConnectionContext,
    setup: QuicSetup,
    connections: anyio.abc.TaskGroup,
) -> list[QuicEndpoint]:
    """An endpoint over each bound UDP socket (plain ``socket.socket``\\ s)."""
    endpoints = []
    for sock in sockets:
        udp = await anyio.abc.UDPSocket.from_socket(sock)
        endpoints.append(QuicEndpoint(udp, context, setup, connections))
    return endpoints
