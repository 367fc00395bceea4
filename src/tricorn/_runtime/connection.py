"""One task per connection: byte stream <-> protocol, with a single writer.

An HTTP/1.1 connection serves one exchange at a time. While the app runs, the
connection keeps reading: body chunks go to the app (and reading pauses while
the app does not take them), and an early close from the client becomes
``http.disconnect``.
"""

from __future__ import annotations

import contextlib
import math
import socket
import time
from collections import deque
from collections.abc import Callable
from email.utils import formatdate
from typing import Final, Protocol, assert_never

import anyio
import anyio.abc

from .._asgi.proxy import ProxyTrust
from .._asgi.scope import ConnectionInfo, build_http_scope, build_websocket_scope
from .._asgi.types import ASGI3App
from .._protocol import (
    AcceptWebSocket,
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    Headers,
    HTTP1Protocol,
    MessageReceived,
    PongReceived,
    RequestReceived,
    RequestRejected,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WindowOpened,
)
from ..config import Config
from ..errors import ClientDisconnected
from .exchange import HTTPExchange
from .logging import error_logger
from .tls import tls_extension
from .websocket import WebSocketExchange

__all__ = [
    "CLOSE_TIMEOUT",
    "QUEUE_LIMIT",
    "READ_SIZE",
    "STREAM_ERRORS",
    "ConnectionContext",
    "Peer",
    "Guard",
    "HTTP1Connection",
    "connection_info",
    "default_headers",
]

READ_SIZE: Final = 64 * 1024
#: How long a closing connection waits for the peer to read what we wrote.
CLOSE_TIMEOUT: Final = 1.0
#: How long a WebSocket waits for the peer's answer to its close frame.
_WS_CLOSE_TIMEOUT: Final = 5.0
#: Unwritten bytes ``queue_commands`` may leave in the protocol; past this a
#: sender waits on the transport like any other.
QUEUE_LIMIT: Final = 64 * 1024

STREAM_ERRORS: Final = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)


def default_headers(
    config: Config, clock: Callable[[], float] = time.time
) -> Callable[[], Headers]:
    """The ``date`` / ``server`` headers added to responses that lack them.

    The Date value is formatted once per second, not once per response.
    """
    server: Headers = (
        ((b"server", config.server_name.encode("latin-1")),) if config.server_header else ()
    )
    if not config.date_header:
        return lambda: server
    cache: list[object] = [None, server]

    def headers() -> Headers:
        now = int(clock())
        if cache[0] != now:
            date = formatdate(now, usegmt=True).encode("ascii")
            cache[0] = now
            cache[1] = ((b"date", date), *server)
        result = cache[1]
        assert isinstance(result, tuple)
        return result

    return headers


def _address(value: object) -> tuple[str, int] | None:
    if isinstance(value, tuple) and len(value) >= 2 and isinstance(value[0], str):
        return (value[0], int(value[1]))
    return None


def connection_info(stream: anyio.abc.ByteStream, scheme: str = "http") -> ConnectionInfo:
    """Client and server addresses as the ASGI scope wants them.

    A TLS stream makes the scheme ``https`` and carries the ASGI TLS extension.
    """
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


class Guard:
    """A lock that costs no event loop trip when uncontended.

    A connection's writers (the app, an error answer from the read loop) and
    dispatchers (the read loop, a finishing exchange) rarely overlap, so the
    common path is a flag check where anyio's Lock would checkpoint.
    """

    __slots__ = ("_busy", "_waiters")

    def __init__(self) -> None:
        self._busy = False
        self._waiters: deque[anyio.Event] = deque()

    async def __aenter__(self) -> None:
        while self._busy:
            event = anyio.Event()
            self._waiters.append(event)
            await event.wait()
        self._busy = True

    async def __aexit__(self, *exc_info: object) -> None:
        self._busy = False
        if self._waiters:
            self._waiters.popleft().set()


class Connection(Protocol):
    """What the server needs of every connection, whatever its protocol."""

    def shutdown(self) -> None:
        """Wind down: finish what is in flight, take nothing new."""
        ...


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

    def __init__(self, app: ASGI3App, config: Config, state: dict[str, object] | None) -> None:
        self.app = app
        self.config = config
        self.state = state
        self.default_headers = default_headers(config)
        self.proxy = ProxyTrust.parse(config.forwarded_allow_ips) if config.proxy_headers else None
        self.shutting_down = False
        self.connections: set[Connection] = set()

    def peer(self, stream: anyio.abc.ByteStream) -> Peer:
        """What is known of a new connection's peer, proxy trust included."""
        info = connection_info(stream)
        proxy = self.proxy
        return Peer(info, proxy if proxy is not None and proxy.trusts_peer(info) else None)

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        for connection in list(self.connections):
            connection.shutdown()


class HTTP1Connection:
    """One HTTP/1.1 connection: a single read loop and one exchange at a time.

    The read loop never stops between requests: the read that watches for a
    disconnect during a response is the same read that receives the next
    request, so keep-alive costs no cancellation. The loop's deadline follows
    the state: none while an exchange runs, the keep-alive timeout while idle,
    the head timeout once a request head has begun.
    """

    def __init__(
        self, stream: anyio.abc.ByteStream, context: ConnectionContext, *, initial: bytes = b""
    ) -> None:
        self._stream = stream
        #: Bytes already read from the stream (while telling HTTP/1.1 from HTTP/2).
        self._initial = initial
        self._context = context
        self._config = context.config
        self._peer = context.peer(stream)
        self._info = self._peer.info
        config = context.config
        self._protocol = HTTP1Protocol(
            config,
            context.default_headers,
            # h2c is HTTP/2 over cleartext only (RFC 7540 3.2); TLS has ALPN.
            h2c_upgrade=config.http2 and config.h2c_upgrade and self._info.tls is None,
        )
        #: Set when the connection switches to HTTP/2 (``Upgrade: h2c``):
        #: the request, and the bytes the client sent after it.
        self.h2c: tuple[H2CUpgradeRequested, bytes] | None = None
        self._write_lock = Guard()
        # Events are taken from the protocol and handed on under this lock, by
        # the read loop or by a finishing exchange (for pipelined requests).
        self._dispatch_lock = Guard()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._exchange: HTTPExchange | WebSocketExchange | None = None
        self._read_scope = anyio.CancelScope()
        self._flush_scheduled = False
        self._stopped = False
        self._cycle_done: anyio.Event | None = None
        self._idle_deadline = anyio.current_time() + self._config.request_head_timeout
        self._head_deadline: float | None = None
        self._close_deadline: float | None = None

    # -- the Transport an exchange writes through --------------------------

    async def send_commands(self, *commands: Command) -> None:
        async with self._write_lock:
            try:
                for command in commands:
                    self._protocol.handle(command)
            finally:
                # Also when the protocol refused a command: what it queued
                # (the 500 that replaces an invalid response) must go out.
                await self._write(self._protocol.data_to_send())
        if self._protocol.closing:
            # Our WebSocket close frame is out: the peer's answer has a deadline.
            self._read_scope.deadline = self._deadline()
        if isinstance(commands[0], AcceptWebSocket):
            # Frames the client sent behind its handshake wait in the protocol.
            assert self._task_group is not None
            self._task_group.start_soon(self._dispatch_pending)

    def queue_commands(self, *commands: Command) -> bool:
        if self._protocol.output_size >= QUEUE_LIMIT:
            return False
        for command in commands:
            self._protocol.handle(command)
        # The sender's next write takes these bytes along; if it has no next
        # write for now, a flush just after it yields does.
        if not self._flush_scheduled:
            self._flush_scheduled = True
            assert self._task_group is not None
            self._task_group.start_soon(self._flush_queued)
        return True

    async def _flush_queued(self) -> None:
        # One such task at a time: while it waits for the write lock, the
        # sender's own writes usually take the queued bytes first.
        try:
            while self._protocol.has_output and not self._protocol.closed:
                await self._flush()
        finally:
            self._flush_scheduled = False

    def consumed(self, size: int) -> None:
        pass  # HTTP/1.1 has no window: reading pauses while the app does not read

    def stop_keep_alive(self) -> None:
        self._protocol.stop_keep_alive()

    def abort(self) -> None:
        self._stop_reading()

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._stream.send(data)
        except STREAM_ERRORS as exc:
            raise ClientDisconnected(f"the client has disconnected: {exc!r}") from None

    async def _flush(self) -> None:
        """Write what the protocol queued by itself (error responses)."""
        async with self._write_lock:
            with contextlib.suppress(ClientDisconnected):
                await self._write(self._protocol.data_to_send())

    # -- shutdown -----------------------------------------------------------

    def shutdown(self) -> None:
        """Finish the current request with ``Connection: close``; close if idle.

        A WebSocket is closed with 1001 (going away).
        """
        self._protocol.stop_keep_alive()
        if isinstance(self._exchange, WebSocketExchange):
            assert self._task_group is not None
            self._task_group.start_soon(self._exchange.shutdown)
        elif self._exchange is None and self._protocol.awaiting_request:
            # No request is being served; a half-received head is dropped,
            # as the client cannot know it was seen and will retry.
            self._stop_reading()

    def _stop_reading(self) -> None:
        """End the read loop on purpose (not a timeout)."""
        self._stopped = True
        self._read_scope.cancel()

    # -- the connection task ----------------------------------------------

    async def run(self) -> None:
        """Serve until the connection closes, or until it switches to HTTP/2.

        After a switch (``self.h2c`` set) the stream is left open for the
        HTTP/2 connection that takes it over.
        """
        self._context.connections.add(self)
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                await self._read_loop()
                if self._protocol.upgraded:
                    await self._end_websocket()
        finally:
            self._context.connections.discard(self)
            if self.h2c is None:
                with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                    await self._stream.aclose()

    async def _end_websocket(self) -> None:
        """The WebSocket is over: tell the app and close the TCP connection now.

        RFC 6455 7.1.1: once the closing handshake is done the server closes
        the connection first, whether or not the app has returned yet.
        """
        if self._exchange is not None:
            self._exchange.disconnect()
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._stream.aclose()

    def _deadline(self) -> float:
        if self._protocol.upgraded and (self._exchange is None or self._protocol.closing):
            if self._close_deadline is None:
                self._close_deadline = anyio.current_time() + _WS_CLOSE_TIMEOUT
            return self._close_deadline
        if self._exchange is not None:
            return math.inf
        if self._protocol.idle:
            return self._idle_deadline
        if self._head_deadline is None:
            self._head_deadline = anyio.current_time() + self._config.request_head_timeout
        return self._head_deadline

    async def _read_loop(self) -> None:
        # One scope for the whole loop: its deadline is moved before every
        # read, and when it fires (a timeout) or is cancelled (close,
        # shutdown) the loop is over either way.
        with self._read_scope:
            while not self._protocol.closed:
                if not self._protocol.wants_data:
                    # Enough pipelined bytes are held; wait for the response.
                    self._cycle_done = anyio.Event()
                    self._read_scope.deadline = math.inf
                    await self._cycle_done.wait()
                    continue
                self._read_scope.deadline = self._deadline()
                data, self._initial = self._initial, b""
                try:
                    data = data or await self._stream.receive(READ_SIZE)
                except STREAM_ERRORS:
                    data = b""
                async with self._dispatch_lock:
                    events = self._protocol.receive_data(data)
                    if self._protocol.has_output:
                        await self._flush()  # pongs, close answers
                    await self._dispatch(events)
        if self._read_scope.cancelled_caught and not self._stopped:
            await self._timed_out()

    async def _dispatch_pending(self) -> None:
        async with self._dispatch_lock:
            events = self._protocol.pending_events()
            if self._protocol.has_output:
                await self._flush()
            await self._dispatch(events)

    async def _timed_out(self) -> None:
        if self._protocol.upgraded:
            error_logger.debug("the WebSocket peer did not answer our close in time")
        elif not self._protocol.idle:
            error_logger.debug("request head not received in time; answering 408")
            self._protocol.request_timed_out()
            await self._flush()

    async def _dispatch(self, events: list[Event]) -> None:
        """Hand protocol events on; the caller holds the dispatch lock."""
        exchange = self._exchange
        for index, event in enumerate(events):
            match event:
                case RequestReceived(websocket=None):
                    exchange = self._start_exchange(event)
                case RequestReceived():
                    exchange = self._start_websocket(event)
                case MessageReceived(data=data):
                    if isinstance(exchange, WebSocketExchange):
                        await exchange.feed_message(data)
                case PongReceived():
                    if isinstance(exchange, WebSocketExchange):
                        exchange.pong_received()
                case WebSocketClosed(code=code, reason=reason):
                    if isinstance(exchange, WebSocketExchange):
                        exchange.closed(code, reason)
                case DataReceived(data=data):
                    if isinstance(exchange, HTTPExchange):
                        # Merge a final chunk with the end of the body: one message.
                        ends = index + 1 < len(events) and isinstance(
                            events[index + 1], StreamEnded
                        )
                        await exchange.feed_body(data, more_body=not ends)
                case StreamEnded():
                    if exchange is None:
                        # The response went out before the body was read in
                        # full; now that it has, the next request may come.
                        await self._next_cycle()
                    elif isinstance(exchange, HTTPExchange) and (
                        index == 0 or not isinstance(events[index - 1], DataReceived)
                    ):
                        await exchange.feed_body(b"", more_body=False)
                case ConnectionClosed():
                    if exchange is not None:
                        exchange.disconnect()
                case RequestRejected(status_code=status, reason=reason):
                    error_logger.debug("rejected a request with %d: %s", status, reason)
                    await self._flush()
                    if exchange is not None:
                        exchange.disconnect()
                case StreamReset() | WindowOpened():
                    pass  # HTTP/2 only
                case H2CUpgradeRequested():
                    leftover = self._protocol.accept_h2c()
                    await self._flush()  # the 101
                    self.h2c = (event, leftover)
                    self._stop_reading()
                case _:
                    assert_never(event)

    def _start_websocket(self, request: RequestReceived) -> WebSocketExchange:
        scope = build_websocket_scope(
            request,
            self._peer.for_request(request),
            root_path=self._config.root_path,
            state=self._context.state,
        )
        exchange = WebSocketExchange(
            self._context.app, scope, self, stream_id=request.stream_id, config=self._config
        )
        self._begin(exchange)
        if self._context.shutting_down:
            assert self._task_group is not None
            self._task_group.start_soon(exchange.shutdown)
        return exchange

    def _start_exchange(self, request: RequestReceived) -> HTTPExchange:
        scope = build_http_scope(
            request,
            self._peer.for_request(request),
            root_path=self._config.root_path,
            state=self._context.state,
        )
        if self._context.shutting_down:
            self._protocol.stop_keep_alive()
        exchange = HTTPExchange(
            self._context.app,
            scope,
            self,
            stream_id=request.stream_id,
            expects_continue=request.expects_continue,
            access_log=self._config.access_log,
        )
        self._begin(exchange)
        return exchange

    def _begin(self, exchange: HTTPExchange | WebSocketExchange) -> None:
        self._exchange = exchange
        self._head_deadline = None
        # No timeout while the app runs; set now, not at the next read, as
        # feeding the rest of this batch of body chunks may wait on the app.
        self._read_scope.deadline = math.inf
        assert self._task_group is not None
        self._task_group.start_soon(self._run_exchange, exchange)

    async def _run_exchange(self, exchange: HTTPExchange | WebSocketExchange) -> None:
        await exchange.run()
        async with self._dispatch_lock:
            self._exchange = None
            if self._cycle_done is not None:
                self._cycle_done.set()
            if self._protocol.upgraded:
                # The app is done; the closing handshake finishes in the read
                # loop, within its deadline.
                self._read_scope.deadline = self._deadline()
            elif self._protocol.reusable:
                await self._next_cycle()
            elif not self._protocol.keep_alive:
                # Nothing more can be said on this connection: stop reading.
                self._stop_reading()
            # else: the response is done but the request body is still
            # arriving; the read loop drains it and then starts the next cycle.

    async def _next_cycle(self) -> None:
        """Start the next request on a kept-alive connection (dispatch lock held)."""
        if not self._protocol.reusable:
            self._stop_reading()
            return
        if self._context.shutting_down:
            self._stop_reading()
            return
        self._idle_deadline = anyio.current_time() + self._config.keep_alive_timeout
        self._head_deadline = None
        await self._dispatch(self._protocol.start_next_cycle())
        # The read loop may be waiting with the "exchange running" deadline.
        self._read_scope.deadline = self._deadline()
