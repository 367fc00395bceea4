"""One task per connection: byte stream <-> protocol, with a single writer.

An HTTP/1.1 connection serves one exchange at a time. While the app runs, the
connection keeps reading: body chunks go to the app (and reading pauses while
the app does not take them), and an early close from the client becomes
``http.disconnect``.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable
from email.utils import formatdate
from typing import Final, assert_never

import anyio
import anyio.abc

from .._asgi.scope import ConnectionInfo, build_http_scope
from .._asgi.types import ASGI3App
from .._protocol import (
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    HTTP1Protocol,
    RequestReceived,
    RequestRejected,
    StreamEnded,
)
from ..config import Config
from ..errors import ClientDisconnected
from .exchange import HTTPExchange
from .logging import error_logger

__all__ = ["ConnectionContext", "HTTP1Connection", "connection_info", "default_headers"]

_READ_SIZE: Final = 64 * 1024
#: How long a closing connection waits for the peer to read what we wrote.
_CLOSE_TIMEOUT: Final = 1.0

_STREAM_ERRORS: Final = (
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
    """Client and server addresses as the ASGI scope wants them."""
    local = stream.extra(anyio.abc.SocketAttribute.local_address, None)
    remote = stream.extra(anyio.abc.SocketAttribute.remote_address, None)
    family = stream.extra(anyio.abc.SocketAttribute.family, None)
    if family == socket.AF_UNIX:
        path = local if isinstance(local, str) else None
        return ConnectionInfo(client=None, server=(path, None) if path else None, scheme=scheme)
    return ConnectionInfo(client=_address(remote), server=_address(local), scheme=scheme)


class ConnectionContext:
    """What every connection of one server shares: app, config, state, shutdown."""

    def __init__(self, app: ASGI3App, config: Config, state: dict[str, object] | None) -> None:
        self.app = app
        self.config = config
        self.state = state
        self.default_headers = default_headers(config)
        self.shutting_down = False
        self.connections: set[HTTP1Connection] = set()

    def begin_shutdown(self) -> None:
        self.shutting_down = True
        for connection in list(self.connections):
            connection.shutdown()


class HTTP1Connection:
    def __init__(self, stream: anyio.abc.ByteStream, context: ConnectionContext) -> None:
        self._stream = stream
        self._context = context
        self._config = context.config
        self._protocol = HTTP1Protocol(context.config, context.default_headers)
        self._info = connection_info(stream)
        self._write_lock = anyio.Lock()
        self._idle_scope: anyio.CancelScope | None = None

    # -- the Transport an exchange writes through --------------------------

    async def send_commands(self, *commands: Command) -> None:
        async with self._write_lock:
            for command in commands:
                self._protocol.handle(command)
            await self._write(self._protocol.data_to_send())

    def stop_keep_alive(self) -> None:
        self._protocol.stop_keep_alive()

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._stream.send(data)
        except _STREAM_ERRORS as exc:
            raise ClientDisconnected(f"the client has disconnected: {exc!r}") from None

    async def _flush(self) -> None:
        """Write what the protocol queued by itself (error responses)."""
        async with self._write_lock:
            with contextlib.suppress(ClientDisconnected):
                await self._write(self._protocol.data_to_send())

    async def _read(self) -> bytes:
        try:
            return await self._stream.receive(_READ_SIZE)
        except _STREAM_ERRORS:
            return b""

    # -- shutdown -----------------------------------------------------------

    def shutdown(self) -> None:
        """Finish the current request with ``Connection: close``; drop an idle wait."""
        self._protocol.stop_keep_alive()
        if self._idle_scope is not None:
            self._idle_scope.cancel()

    # -- the connection task ----------------------------------------------

    async def run(self) -> None:
        self._context.connections.add(self)
        try:
            async with anyio.create_task_group() as task_group:
                await self._serve(task_group)
        finally:
            self._context.connections.discard(self)
            with anyio.move_on_after(_CLOSE_TIMEOUT, shield=True):
                await self._stream.aclose()

    async def _serve(self, task_group: anyio.abc.TaskGroup) -> None:
        events: list[Event] = []
        first = True
        while True:
            if not first:
                events = self._protocol.start_next_cycle()
            request, events = await self._next_request(events, first=first)
            first = False
            if request is None:
                return
            scope = build_http_scope(
                request, self._info, root_path=self._config.root_path, state=self._context.state
            )
            if self._context.shutting_down:
                self._protocol.stop_keep_alive()
            exchange = HTTPExchange(
                self._context.app,
                scope,
                self,
                stream_id=request.stream_id,
                expects_continue=request.expects_continue,
            )
            with anyio.CancelScope() as reader_scope:
                task_group.start_soon(self._run_exchange, exchange, reader_scope)
                await self._dispatch(events, exchange)
                await self._read_while_serving(exchange)
            await exchange.finished.wait()
            if not self._protocol.reusable:
                return

    async def _run_exchange(self, exchange: HTTPExchange, reader_scope: anyio.CancelScope) -> None:
        await exchange.run()
        if self._protocol.request_complete or not self._protocol.keep_alive:
            reader_scope.cancel()

    async def _next_request(
        self, events: list[Event], *, first: bool
    ) -> tuple[RequestReceived | None, list[Event]]:
        """Read until a request head is complete, within the configured timeouts."""
        now = anyio.current_time()
        # A fresh connection gets the head timeout to say anything at all;
        # a kept-alive one gets the (usually shorter) keep-alive timeout.
        idle_deadline = now + (
            self._config.request_head_timeout if first else self._config.keep_alive_timeout
        )
        head_deadline: float | None = None
        while True:
            for index, event in enumerate(events):
                match event:
                    case RequestReceived():
                        return event, events[index + 1 :]
                    case RequestRejected(status_code=status, reason=reason):
                        error_logger.debug("rejected a request with %d: %s", status, reason)
                        await self._flush()
                        return None, []
                    case ConnectionClosed():
                        return None, []
                    case DataReceived() | StreamEnded():
                        pass  # the tail of a body nobody wanted any more
            if self._protocol.closed:
                return None, []
            idle = self._protocol.idle
            if idle and self._context.shutting_down:
                return None, []
            if not idle and head_deadline is None:
                head_deadline = anyio.current_time() + self._config.request_head_timeout
            deadline = idle_deadline if idle else head_deadline
            assert deadline is not None
            with anyio.CancelScope(deadline=deadline) as scope:
                self._idle_scope = scope if idle else None
                data = await self._read()
            self._idle_scope = None
            if scope.cancelled_caught:
                if not idle:
                    error_logger.debug("request head not received in time; answering 408")
                    self._protocol.request_timed_out()
                    await self._flush()
                return None, []
            events = self._protocol.receive_data(data)

    async def _read_while_serving(self, exchange: HTTPExchange) -> None:
        """Feed the body to the exchange and watch for the client going away."""
        while not self._protocol.closed:
            if exchange.finished.is_set() and self._protocol.request_complete:
                return
            if not self._protocol.wants_data:
                # Enough pipelined bytes are held; wait for this response.
                await exchange.finished.wait()
                return
            events = self._protocol.receive_data(await self._read())
            await self._dispatch(events, exchange)

    async def _dispatch(self, events: list[Event], exchange: HTTPExchange) -> None:
        for index, event in enumerate(events):
            match event:
                case DataReceived(data=data):
                    # Merge a final chunk with the end of the body: one message.
                    ends = index + 1 < len(events) and isinstance(events[index + 1], StreamEnded)
                    await exchange.feed_body(data, more_body=not ends)
                case StreamEnded():
                    if index == 0 or not isinstance(events[index - 1], DataReceived):
                        await exchange.feed_body(b"", more_body=False)
                case ConnectionClosed():
                    exchange.disconnect()
                case RequestRejected(status_code=status, reason=reason):
                    error_logger.debug("rejected a request with %d: %s", status, reason)
                    await self._flush()
                    exchange.disconnect()
                case RequestReceived():
                    # HTTP/1.1 yields the next request only after start_next_cycle.
                    raise AssertionError("a second request head inside one exchange")
                case _:
                    assert_never(event)
