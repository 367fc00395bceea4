"""One HTTP/2 connection: a read loop, one writer, and an exchange task per stream.

The exchanges are the same :class:`HTTPExchange` and :class:`WebSocketExchange`
that serve HTTP/1.1; each talks to its stream through a :class:`_StreamTransport`.
The read loop never waits on an app: request data goes into inboxes that the
stream's flow-control window bounds, and the window opens again only as the
app takes the data. ``send()`` waits for the peer's window, so a client that
stops reading holds up only its own streams.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import Final, assert_never

import anyio
import anyio.abc

from .._asgi.scope import build_http_scope, build_websocket_scope
from .._protocol import (
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    HTTP2Protocol,
    MessageReceived,
    PongReceived,
    RequestReceived,
    RequestRejected,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WindowOpened,
)
from ..errors import ClientDisconnected
from .connection import (
    CLOSE_TIMEOUT,
    QUEUE_LIMIT,
    READ_SIZE,
    STREAM_ERRORS,
    ConnectionContext,
    Guard,
)
from .exchange import HTTPExchange, Inbox
from .logging import error_logger
from .websocket import WebSocketExchange

__all__ = ["HTTP2Connection"]

Exchange = HTTPExchange | WebSocketExchange

#: How long a closing connection reads what the peer still sends, so that
#: closing with unread input does not reset the connection under our GOAWAY.
#: A peer that read the GOAWAY closes at once; this bounds one that waits
#: for us to close first (over TLS, which cannot send a FIN on its own).
_LINGER: Final = 0.5

#: An inbox no put waits on: the stream's window is the bound (see module doc).
_UNBOUNDED: Final = sys.maxsize


class _StreamTransport:
    """The :class:`~tricorn._runtime.exchange.Transport` of one stream."""

    __slots__ = ("_connection", "_stream_id")

    def __init__(self, connection: HTTP2Connection, stream_id: int) -> None:
        self._connection = connection
        self._stream_id = stream_id

    async def send_commands(self, *commands: Command) -> None:
        await self._connection.send(self._stream_id, commands)

    def queue_commands(self, *commands: Command) -> bool:
        return self._connection.queue(self._stream_id, commands)

    def consumed(self, size: int) -> None:
        self._connection.acknowledge(self._stream_id, size)

    def stop_keep_alive(self) -> None:
        pass  # other streams go on; an unfinished response is reset at the end

    def abort(self) -> None:
        self._connection.reset(self._stream_id)


class HTTP2Connection:
    """One HTTP/2 connection (TLS with ALPN h2, or cleartext with prior knowledge)."""

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        context: ConnectionContext,
        *,
        initial: bytes = b"",
        upgrade: H2CUpgradeRequested | None = None,
    ) -> None:
        self._stream = stream
        self._context = context
        self._config = context.config
        self._peer = context.peer(stream)
        self._info = self._peer.info
        self._protocol = HTTP2Protocol(
            context.config,
            context.default_headers,
            anyio.current_time,
            scheme=self._info.scheme.encode("ascii"),
        )
        self._initial = initial
        self._upgrade = upgrade
        self._write_lock = Guard()
        self._exchanges: dict[int, Exchange] = {}
        #: Senders waiting for the peer's window, by stream.
        self._waiting: dict[int, anyio.Event] = {}
        #: Streams the peer reset while their exchange runs.
        self._reset: set[int] = set()
        self._task_group: anyio.abc.TaskGroup | None = None
        self._read_scope = anyio.CancelScope()
        #: Set when output waits for the writer task (see _writer).
        self._output_ready = anyio.Event()
        self._writer_scope = anyio.CancelScope()
        self._shutdown_pending = False
        self._stopped = False
        self._transport_closed = False

    # -- what exchanges write through ----------------------------------------

    async def send(self, stream_id: int, commands: tuple[Command, ...]) -> None:
        async with self._write_lock:
            try:
                for command in commands:
                    self._protocol.handle(command)
            finally:
                await self._write(self._protocol.data_to_send())
        if pushed := self._protocol.pending_events():
            self._dispatch(pushed)
        # Backpressure: return once the peer's window let the data out.
        waited = False
        while self._protocol.held(stream_id):
            waited = True
            event = self._waiting[stream_id] = anyio.Event()
            await event.wait()
        if stream_id in self._reset:
            raise ClientDisconnected("the client reset the stream")
        if waited and self._protocol.closed:
            # The connection ended with data still held for the window.
            raise ClientDisconnected("the connection closed")

    def queue(self, stream_id: int, commands: tuple[Command, ...]) -> bool:
        if self._protocol.output_size >= QUEUE_LIMIT or self._protocol.held(stream_id):
            return False
        for command in commands:
            self._protocol.handle(command)
        self._schedule_flush()
        return True

    def acknowledge(self, stream_id: int, size: int) -> None:
        self._protocol.acknowledge(stream_id, size)
        self._schedule_flush()

    def reset(self, stream_id: int) -> None:
        self._protocol.reset_stream(stream_id)
        self._schedule_flush()

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._stream.send(data)
        except STREAM_ERRORS as exc:
            self._stop_reading()
            raise ClientDisconnected(f"the client has disconnected: {exc!r}") from None

    async def _flush(self) -> None:
        async with self._write_lock:
            with contextlib.suppress(ClientDisconnected):
                await self._write(self._protocol.data_to_send())

    def _schedule_flush(self) -> None:
        self._output_ready.set()

    async def _writer(self) -> None:
        """Writes what the protocol queued outside any sender: acks, resets, GOAWAY.

        One task for the connection's life, woken by an event, so nothing
        outside the connection (a server shutdown) ever starts a task in
        its task group, which may be closing by then.
        """
        with self._writer_scope:
            while True:
                await self._output_ready.wait()
                self._output_ready = anyio.Event()
                if self._shutdown_pending:
                    self._shutdown_pending = False
                    assert self._task_group is not None
                    for exchange in list(self._exchanges.values()):
                        if isinstance(exchange, WebSocketExchange):
                            self._task_group.start_soon(exchange.shutdown)
                while self._protocol.has_output:
                    await self._flush()
                if self._protocol.closed:
                    self._stop_reading()

    # -- shutdown ------------------------------------------------------------

    def shutdown(self) -> None:
        """GOAWAY: in-flight streams finish, new ones are refused; WebSockets get 1001."""
        self._protocol.start_shutdown()
        self._shutdown_pending = True
        self._output_ready.set()

    def _stop_reading(self) -> None:
        self._stopped = True
        self._read_scope.cancel()

    # -- the connection task -------------------------------------------------

    async def run(self) -> None:
        self._context.connections.add(self)
        try:
            async with anyio.create_task_group() as task_group:
                self._task_group = task_group
                task_group.start_soon(self._writer)
                if self._upgrade is None:
                    self._protocol.initiate()
                    await self._read_loop()
                else:
                    await self._read_loop(self._upgraded())
                self._writer_scope.cancel()
                for exchange in self._exchanges.values():
                    exchange.disconnect()
                for event in self._waiting.values():
                    event.set()
                if self._protocol.closed:
                    # RFC 9113 5.4.1: after a GOAWAY for an error the TCP
                    # connection is closed; nothing more can pass on it, so
                    # apps that have not finished yet must not hold it open.
                    await self._close()
        finally:
            self._context.connections.discard(self)
            if self._protocol.error is not None:
                error_logger.info("HTTP/2 connection ended: %s", self._protocol.error)
            await self._close()

    async def _close(self) -> None:
        """Write what is left and close the TCP connection (once).

        Closing a socket with unread input makes the kernel answer with RST,
        which can destroy the GOAWAY still in flight; so the write side is
        shut first and the input drained for CLOSE_TIMEOUT at most (a
        lingering close). TLS cannot half-close, but the peer that read our
        GOAWAY closes its side, so the input is drained there too.
        """
        if self._transport_closed:
            return
        self._transport_closed = True
        with (
            anyio.move_on_after(CLOSE_TIMEOUT, shield=True),
            contextlib.suppress(*STREAM_ERRORS, NotImplementedError),
        ):
            if self._protocol.has_output:
                await self._stream.send(self._protocol.data_to_send())
            if self._info.tls is None:
                try:
                    await self._stream.send_eof()
                except RuntimeError:
                    # uvloop's word for a transport the peer already reset.
                    return await self._abort_close()
        with (
            anyio.move_on_after(_LINGER, shield=True),
            contextlib.suppress(*STREAM_ERRORS, NotImplementedError),
        ):
            while True:
                await self._stream.receive(READ_SIZE)  # until EndOfStream
        await self._abort_close()

    async def _abort_close(self) -> None:
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._stream.aclose()

    def _deadline(self) -> float:
        if self._protocol.active_streams:
            return math.inf
        return anyio.current_time() + self._config.keep_alive_timeout

    def _upgraded(self) -> list[Event]:
        """Stream 1 from the HTTP/1.1 request that asked for h2c."""
        upgrade = self._upgrade
        assert upgrade is not None
        return self._protocol.initiate_upgrade(upgrade.settings, upgrade.request, upgrade.body)

    async def _read_loop(self, events: list[Event] | None = None) -> None:
        with self._read_scope:
            if events is not None:
                await self._flush()
                self._dispatch(events)
            data, self._initial = self._initial, b""
            if data:
                await self._receive(data)
            else:
                await self._flush()
            while not self._protocol.closed:
                self._read_scope.deadline = self._deadline()
                try:
                    data = await self._stream.receive(READ_SIZE)
                except STREAM_ERRORS:
                    data = b""
                await self._receive(data)
            await self._flush()
        if self._read_scope.cancelled_caught and not self._stopped:
            # Idle past the keep-alive timeout: say goodbye properly.
            error_logger.debug("closing an idle HTTP/2 connection")
            self._protocol.start_shutdown()
            with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
                await self._flush()

    async def _receive(self, data: bytes) -> None:
        events = self._protocol.receive_data(data)
        # Settings ACKs, pings, window updates and data let out go first.
        await self._flush()
        self._dispatch(events)

    def _dispatch(self, events: list[Event]) -> None:
        """Hand protocol events on. Nothing here waits on an app."""
        websockets: set[int] = set()
        for index, event in enumerate(events):
            match event:
                case RequestReceived(websocket=None):
                    self._start_exchange(event)
                case RequestReceived():
                    self._start_websocket(event)
                case DataReceived(stream_id=stream_id, data=data):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, HTTPExchange):
                        following = events[index + 1] if index + 1 < len(events) else None
                        ends = (
                            isinstance(following, StreamEnded) and following.stream_id == stream_id
                        )
                        exchange.give_body(data, more_body=not ends)
                    else:
                        self._protocol.acknowledge(stream_id, len(data))
                case StreamEnded(stream_id=stream_id):
                    exchange = self._exchanges.get(stream_id)
                    previous = events[index - 1] if index else None
                    merged = isinstance(previous, DataReceived) and previous.stream_id == stream_id
                    if isinstance(exchange, HTTPExchange) and not merged:
                        exchange.give_body(b"", more_body=False)
                case StreamReset(stream_id=stream_id):
                    self._reset.add(stream_id)
                    exchange = self._exchanges.get(stream_id)
                    if exchange is not None:
                        exchange.disconnect()
                    self._wake(stream_id)
                case WindowOpened(stream_id=stream_id):
                    self._wake(stream_id)
                case MessageReceived(stream_id=stream_id, data=data):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.offer_message(data)
                        websockets.add(stream_id)
                case PongReceived(stream_id=stream_id):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.pong_received()
                case WebSocketClosed(stream_id=stream_id, code=code, reason=reason):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.closed(code, reason)
                    websockets.add(stream_id)
                case ConnectionClosed():
                    for exchange in self._exchanges.values():
                        exchange.disconnect()
                    for waiting in self._waiting.values():
                        waiting.set()
                case RequestRejected(status_code=status, reason=reason):
                    error_logger.debug("rejected a request with %d: %s", status, reason)
                case H2CUpgradeRequested():
                    pass  # an HTTP/1.1 event
                case _:
                    assert_never(event)
        for stream_id in websockets:
            # While the app keeps up, its window opens as the frames come;
            # once it lags, only its receive() opens it (see offer_message).
            exchange = self._exchanges.get(stream_id)
            if isinstance(exchange, WebSocketExchange) and exchange.keeping_up:
                self._protocol.acknowledge(stream_id, 0)
        if self._protocol.has_output:
            self._schedule_flush()

    def _wake(self, stream_id: int) -> None:
        waiting = self._waiting.pop(stream_id, None)
        if waiting is not None:
            waiting.set()

    def _start_exchange(self, request: RequestReceived) -> None:
        info = self._peer.for_request(request)
        scope = build_http_scope(
            request, info, root_path=self._config.root_path, state=self._context.state
        )
        exchange = HTTPExchange(
            self._context.app,
            scope,
            _StreamTransport(self, request.stream_id),
            stream_id=request.stream_id,
            expects_continue=request.expects_continue,
            access_log=self._config.access_log,
            inbox=Inbox(_UNBOUNDED, _UNBOUNDED),
        )
        self._begin(request.stream_id, exchange)

    def _start_websocket(self, request: RequestReceived) -> None:
        info = self._peer.for_request(request)
        scope = build_websocket_scope(
            request, info, root_path=self._config.root_path, state=self._context.state
        )
        exchange = WebSocketExchange(
            self._context.app,
            scope,
            _StreamTransport(self, request.stream_id),
            stream_id=request.stream_id,
            config=self._config,
        )
        self._begin(request.stream_id, exchange)
        if self._context.shutting_down:
            assert self._task_group is not None
            self._task_group.start_soon(exchange.shutdown)

    def _begin(self, stream_id: int, exchange: Exchange) -> None:
        self._exchanges[stream_id] = exchange
        assert self._task_group is not None
        self._task_group.start_soon(self._run_exchange, stream_id, exchange)

    async def _run_exchange(self, stream_id: int, exchange: Exchange) -> None:
        try:
            await exchange.run()
        finally:
            self._exchanges.pop(stream_id, None)
            self._reset.discard(stream_id)
            self._waiting.pop(stream_id, None)
            self._protocol.exchange_finished(stream_id)
            if self._protocol.closed:
                # The last stream of a draining connection: write the rest
                # and end the read loop.
                await self._flush()
                self._stop_reading()
            elif self._protocol.has_output:
                self._schedule_flush()
            if not self._protocol.active_streams:
                self._read_scope.deadline = self._deadline()
