"""One runner for every connection: byte stream <-> protocol, one dispatch, one writer.

HTTP/1.1 is a protocol with at most one stream at a time, HTTP/2 one with
many; the runner drives either through :class:`~tricorn._protocol.ServerProtocol`
and starts an exchange task (the app) per request, stream or WebSocket in the
connection's task group. What is particular to a protocol (a 408 for a slow
head, the keep-alive cycle, HTTP/1.1's pipeline, HTTP/2's windows, the switch
to h2c) is decided in the protocol layer and reaches the runner as events, a
phase and ``wants_data``.

- **Reading** never waits on an app. Events are dispatched synchronously:
  request data goes into the exchange's inbox with ``put_nowait``, and what
  bounds it is the protocol's window (HTTP/2's flow control, HTTP/1.1's
  ``wants_data``, which stops reading while an app lags), reopened as the app
  takes the data (``acknowledge``).
- **Timeouts** follow the protocol's :class:`~tricorn._protocol.Phase`: each
  phase's timeout starts when the phase begins; bytes do not move it.
- **Writing**: a sender writes its own commands' bytes under the write lock,
  and returns once the peer's window let them out (the senders of one stream
  wait together, see :class:`_WindowGate`). On HTTP/2 a sender whose bytes
  leave less than QUEUE_LIMIT unwritten leaves them to the writer task, so
  the answers of all the streams served in one loop turn go out in one
  write. Bytes the protocol produces on its own (acks, pongs, refusals,
  GOAWAY) go out with the read loop's next write, or through the writer task.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Coroutine
from typing import Any, Final, assert_never

import anyio
import anyio.abc
import anyio.lowlevel

from .._asgi.scope import build_http_scope, build_websocket_scope
from .._asgi.types import ASGIReceive, ASGISend
from .._protocol import (
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    HTTP1Protocol,
    HTTP2PrefaceReceived,
    HTTP2Protocol,
    MessageReceived,
    Phase,
    PongReceived,
    RequestReceived,
    RequestRejected,
    ServerProtocol,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WindowOpened,
    rules,
)
from ..errors import AppProtocolError, ClientDisconnected
from . import transport
from .context import ConnectionContext, Peer
from .exchange import HTTPExchange
from .logging import error_logger
from .transport import WriteTimeout
from .websocket import WebSocketExchange

__all__ = ["CLOSE_TIMEOUT", "READ_SIZE", "STREAM_ERRORS", "Connection"]

READ_SIZE: Final = 64 * 1024
#: Apps left running for a client that is gone (server-wide) past which new
#: ones are cancelled at once rather than after app_disconnect_grace.
MAX_ORPHANS: Final = 1000
#: How long a closing connection waits to write what is left, and to close.
CLOSE_TIMEOUT: Final = 1.0
#: How long a closing connection reads what the peer still sends, so that
#: closing with unread input does not reset the connection under our last
#: answer (a 413, a GOAWAY). A peer that read it closes at once; this bounds
#: one that waits for us to close first (over TLS, which cannot half-close).
_LINGER: Final = 0.5
#: The most a closing connection reads and drops: a client that sends a
#: larger body after our refusal is cut off (and may miss the answer).
_LINGER_BYTES: Final = 8 * 1024 * 1024
#: How long a WebSocket waits for the peer's answer to its close frame.
_WS_CLOSE_TIMEOUT: Final = 5.0
#: Seconds a new HTTP/1.1 connection with no request yet has to send its
#: first once a graceful shutdown began (see Connection.shutdown).
FIRST_REQUEST_GRACE: Final = 1.0
#: Unwritten bytes ``queue_commands`` may leave in the protocol; past this a
#: sender waits on the transport like any other.
QUEUE_LIMIT: Final = 64 * 1024

STREAM_ERRORS: Final = (
    anyio.EndOfStream,
    anyio.BrokenResourceError,
    anyio.ClosedResourceError,
    OSError,
)

Exchange = HTTPExchange | WebSocketExchange
_BUSY: Final = Phase.BUSY
#: The name of every exchange task (anyio would work one out per task).
_EXCHANGE: Final = "tricorn exchange"
_WRITER: Final = "tricorn writer"
_WS_SHUTDOWN: Final = "tricorn websocket shutdown"


#: The empty stream set every connection starts with (an empty set() costs
#: 216 bytes, and most connections never need one).
_NO_STREAMS: Final[frozenset[int]] = frozenset()


def _with(streams: set[int] | frozenset[int], stream_id: int) -> set[int]:
    """``streams`` with ``stream_id`` added (a set of its own from the first one on)."""
    result = streams if isinstance(streams, set) else set(streams)
    result.add(stream_id)
    return result


def _without(streams: set[int] | frozenset[int], stream_id: int) -> set[int] | frozenset[int]:
    """``streams`` without ``stream_id``; the shared empty set once none is left."""
    if isinstance(streams, set):
        streams.discard(stream_id)
    return streams if streams else _NO_STREAMS


class _WriteLock:
    """One writer at a time, first come first served.

    anyio's Lock, less its bookkeeping on the path every write takes: a free
    lock is taken with one check, without a trip through the event loop, and
    waiters (rare: a WebSocket's ping beside its app's message, HTTP/2's
    senders) each get an event. A waiter cancelled after the lock was handed
    to it passes it on.
    """

    __slots__ = ("_locked", "_waiters")

    def __init__(self) -> None:
        self._locked = False
        self._waiters: list[transport.Flag] | None = None

    def try_acquire(self) -> bool:
        if self._locked:
            return False
        self._locked = True
        return True

    async def acquire(self) -> None:
        if self.try_acquire():
            return
        if self._waiters is None:
            self._waiters = []
        event = transport.new_flag()
        self._waiters.append(event)
        try:
            await event.wait()
        except BaseException:
            if event in self._waiters:
                self._waiters.remove(event)
            else:
                self.release()  # handed over as we were cancelled: pass it on
            raise

    def release(self) -> None:
        if self._waiters:
            self._waiters.pop(0).set()  # the lock stays taken: it is the waiter's
        else:
            self._locked = False

    async def __aenter__(self) -> None:
        await self.acquire()

    async def __aexit__(self, *exc_info: object) -> None:
        self.release()


class _WindowGate:
    """Senders waiting for their stream's flow-control window to let their data out.

    All the senders of one stream wait on one event, which the window opening
    sets: a second sender (a WebSocket's keepalive ping beside the app's
    message) joins the first rather than taking its place, and a sender
    cancelled while it waits leaves nothing behind.
    """

    __slots__ = ("_events",)

    def __init__(self) -> None:
        self._events: dict[int, transport.Flag] = {}

    async def wait(self, stream_id: int) -> None:
        event = self._events.get(stream_id)
        if event is None:
            event = self._events[stream_id] = transport.new_flag()
        await event.wait()

    def open(self, stream_id: int) -> None:
        event = self._events.pop(stream_id, None)
        if event is not None:
            event.set()

    def open_all(self) -> None:
        events, self._events = self._events, {}
        for event in events.values():
            event.set()


#: The answer past limit_concurrency: come back in a second.
_AT_CAPACITY: Final = rules.refusal(503, "the server is at its concurrency limit")


async def _at_capacity(scope: Any, receive: ASGIReceive, send: ASGISend) -> None:
    """The app a request gets past limit_concurrency: 503 with Retry-After, no app run."""
    headers, body = _AT_CAPACITY
    start = {"status": 503, "headers": [*headers, (b"retry-after", b"1")]}
    if scope["type"] == "websocket":
        await send({"type": "websocket.http.response.start", **start})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "http.response.start", **start})
        await send({"type": "http.response.body", "body": body})


def _log_orphan_cancelled(grace: float) -> None:
    error_logger.info(
        "cancelled an app that went on for %gs after its client left without its "
        "response (app_disconnect_grace)",
        grace,
    )


class _StreamTransport:
    """The :class:`~tricorn._runtime.exchange.Transport` of one stream."""

    __slots__ = ("_connection", "_stream_id")

    def __init__(self, connection: Connection, stream_id: int) -> None:
        self._connection = connection
        self._stream_id = stream_id

    # The connection's coroutines handed out as they are, not awaited in one
    # of these: a coroutine less on each of an app's sends.

    def send_commands(self, *commands: Command) -> Coroutine[Any, Any, None]:
        return self._connection.send(self._stream_id, commands)

    def queue_commands(self, *commands: Command) -> bool:
        return self._connection.queue(self._stream_id, commands)

    def send_file(
        self, commands: tuple[Command, ...], fd: int, offset: int, count: int, *, end_stream: bool
    ) -> Coroutine[Any, Any, bool]:
        return self._connection.send_file(
            self._stream_id, commands, fd, offset, count, end_stream=end_stream
        )

    def consumed(self, size: int) -> None:
        self._connection.acknowledge(self._stream_id, size)

    def soon(self, action: Callable[[], tuple[Command, ...]]) -> None:
        self._connection.soon(self._stream_id, action)

    def stop_keep_alive(self) -> None:
        self._connection.stop_keep_alive()

    def abort(self) -> None:
        self._connection.reset(self._stream_id)


class Connection:
    """One connection, from its first byte to its close, whatever it speaks.

    ``http2`` starts it as HTTP/2 (TLS with ALPN ``h2``); otherwise it starts
    as HTTP/1.1 and may switch to HTTP/2 (h2c: the preface, or an upgrade).
    """

    # Slots, not a dict: thirty-odd attributes are past what a shared-key
    # instance dict holds, and a dict of its own cost 1.5 KiB per connection.
    __slots__ = (
        "_carried",
        "_clock",
        "_config",
        "_context",
        "_counted",
        "_deadline",
        "_eof",
        "_exchanges",
        "_first_request_by",
        "_first_transport",
        "_held",
        "_metrics",
        "_orphaned",
        "_parked",
        "_peer",
        "_phase",
        "_protocol",
        "_read_scope",
        "_reading_over",
        "_reset",
        "_resume",
        "_scopes",
        "_shutdown_pending",
        "_soon",
        "_spawner",
        "_started",
        "_stopped",
        "_stream",
        "_stuck",
        "_timer",
        "_timer_at",
        "_transport_closed",
        "_windows",
        "_write_lock",
        "_writing",
    )

    def __init__(
        self,
        stream: anyio.abc.ByteStream,
        context: ConnectionContext,
        *,
        http2: bool = False,
        peer: Peer | None = None,
        protocol: ServerProtocol | None = None,
    ) -> None:
        """``peer`` and ``protocol`` are for a variant that brings its own
        (HTTP/3, see quic.py); otherwise both come from the stream."""
        self._stream = stream
        self._context = context
        self._config = context.config
        self._peer = context.peer(stream) if peer is None else peer
        self._metrics = context.metrics  # None when off: each hook is one check
        if protocol is None:
            protocol = self._http2() if http2 else self._http1()
        self._protocol: ServerProtocol = protocol
        if isinstance(self._protocol, HTTP2Protocol):
            self._protocol.initiate()
        self._write_lock = _WriteLock()
        self._windows = _WindowGate()
        self._exchanges: dict[int, Exchange] = {}
        #: Exchanges started so far.
        self._started = 0
        #: Streams the peer reset while their exchange runs.
        self._reset: set[int] | frozenset[int] = _NO_STREAMS
        #: Where this connection's tasks start (exchanges, the writer): a
        #: group of the loop's own tasks (see transport.Spawner).
        self._spawner: transport.Spawner | None = None
        self._read_scope = anyio.CancelScope()
        #: The phase whose timeout is armed, and when it runs out (see _arm).
        self._phase: Phase | None = None
        self._deadline = math.inf
        self._clock = transport.clock()
        #: The timer that checks the deadline, and when it fires.
        self._timer: transport.Timer | None = None
        self._timer_at = math.inf
        #: Set when reading may go on after ``wants_data`` stopped it.
        self._resume: transport.Flag | None = None
        #: The writer task runs: it takes any output queued before it ends.
        self._writing = False
        self._reading_over = False
        #: Output of the protocol the connection switched away from (the 101).
        self._carried = b""
        self._shutdown_pending = False
        self._first_request_by: float | None = None
        self._stopped = False
        #: The read loop waits (for bytes, or for leave to read): a stop may
        #: cancel it there, never while it writes.
        self._parked = False
        self._eof = False
        self._transport_closed = False
        #: A write waited past write_timeout: the peer reads nothing more.
        self._stuck = False
        #: HTTP/2 exchanges' own cancel scopes, and the streams whose client
        #: left before their response was done (see _orphan).
        self._scopes: dict[int, anyio.CancelScope] = {}
        self._orphaned: set[int] | frozenset[int] = _NO_STREAMS
        #: Body bytes per stream handed to its app and not yet taken.
        self._held: dict[int, int] = {}
        #: Streams whose app counts against limit_concurrency.
        self._counted: set[int] | frozenset[int] = _NO_STREAMS
        #: Stream 1's transport, kept: HTTP/1.1's every exchange uses it.
        self._first_transport: _StreamTransport | None = None
        #: Actions to run when the current task yields (see soon()).
        self._soon: list[tuple[int, Callable[[], tuple[Command, ...]]]] = []

    def _http1(self) -> HTTP1Protocol:
        config = self._config
        # h2c is HTTP/2 over cleartext only (RFC 9113 3.3); TLS has ALPN.
        cleartext = config.http2 and self._peer.info.tls is None
        return HTTP1Protocol(
            config,
            self._context.default_headers,
            h2c_upgrade=cleartext and config.h2c_upgrade,
            h2c_prior_knowledge=cleartext and config.h2c_prior_knowledge,
        )

    @property
    def _coalescing(self) -> bool:
        """Senders leave their bytes for one write per loop turn (HTTP/2)."""
        return type(self._protocol) is HTTP2Protocol

    def _http2(self) -> HTTP2Protocol:
        return HTTP2Protocol(
            self._config,
            self._context.default_headers,
            anyio.current_time,
            scheme=self._peer.info.scheme.encode("ascii"),
        )

    # -- what exchanges write through ----------------------------------------

    async def send(self, stream_id: int, commands: tuple[Command, ...]) -> None:
        """Write the commands' bytes; return once the peer's window let them out.

        On HTTP/2 the answers of all the streams served in one loop turn go
        out in one write: a sender whose bytes leave less than QUEUE_LIMIT
        unwritten returns at once (as queue() would), and the writer task
        writes them all once this turn's senders have had their say. A
        sender past the limit writes, and waits on the transport, itself.
        """
        protocol = self._protocol
        if type(protocol) is HTTP2Protocol and protocol.output_size < QUEUE_LIMIT:  # coalescing
            try:
                for command in commands:
                    protocol.handle(command)
            except BaseException:
                # What the protocol queued (the 500 that replaces an invalid
                # response) must go out all the same.
                self._wake_writer()
                raise
            if protocol.output_size < QUEUE_LIMIT:
                self._wake_writer()
            else:
                await self._write_lock.acquire()
                try:
                    await self._write_output()
                finally:
                    self._write_lock.release()
        else:
            if not self._write_lock.try_acquire():  # free, most often: no coroutine for it
                await self._write_lock.acquire()
            try:
                for command in commands:
                    protocol.handle(command)
            finally:
                try:
                    # Also when the protocol refused a command: what it queued
                    # (the 500 that replaces an invalid response) must go out.
                    await self._write(self._take_output())
                finally:
                    self._write_lock.release()
        protocol = self._protocol
        if type(protocol) is HTTP1Protocol and not protocol.upgraded:
            # No events a command can make, no window: once written, done;
            # and the request in flight keeps the phase where it is.
            self._refresh(phase=False)
            return
        if events := protocol.pending_events():
            self._dispatch(events)
        self._refresh()
        waited = False
        while self._protocol.held(stream_id):
            waited = True
            await self._windows.wait(stream_id)
        if stream_id in self._reset:
            raise ClientDisconnected("the client reset the stream")
        if waited and self._protocol.closed:
            # The connection ended with data still held for the window.
            raise ClientDisconnected("the connection closed")

    async def send_file(
        self,
        stream_id: int,
        commands: tuple[Command, ...],
        fd: int,
        offset: int,
        count: int,
        *,
        end_stream: bool,
    ) -> bool:
        """Write the commands, then a file range by the kernel; False where it cannot.

        Only HTTP/1.1 over a stream that can hand a file to the kernel (a
        cleartext socket) can: the protocol frames the bytes without seeing
        them. A sendfile cut short (the client left, write_timeout, a
        cancelled app) leaves the response unfinishable, so the connection
        closes.
        """
        protocol = self._protocol
        sendfile = getattr(self._stream, "sendfile", None)
        if sendfile is None or not isinstance(protocol, HTTP1Protocol):
            return False
        if not protocol.sends_file_data:
            return False
        await self._write_lock.acquire()
        try:
            try:
                for command in commands:
                    protocol.handle(command)
                size = protocol.send_file_data(count)
            finally:
                await self._write(self._take_output())
            if size:
                finished = False
                try:
                    await sendfile(fd, offset, size)
                    finished = True
                except WriteTimeout:
                    self._stuck = True
                    error_logger.info(
                        "closed a connection whose client read nothing for %gs (write_timeout)",
                        self._config.write_timeout,
                    )
                    raise ClientDisconnected("the client stopped reading (write_timeout)") from None
                except EOFError as exc:
                    raise AppProtocolError(f"the file to send {exc}") from None
                except STREAM_ERRORS as exc:
                    raise ClientDisconnected(f"the client has disconnected: {exc!r}") from None
                finally:
                    if not finished:
                        protocol.reset_stream(stream_id)
                        self._stop_reading()
                if self._metrics is not None:
                    self._metrics.sent.inc(size)
            protocol.file_data_sent(end_stream=end_stream)
            await self._write(self._take_output())
        finally:
            self._write_lock.release()
        if events := protocol.pending_events():
            self._dispatch(events)
        self._refresh()
        return True

    def soon(self, stream_id: int, action: Callable[[], tuple[Command, ...]]) -> None:
        """Run ``action`` when the current task yields, and write the commands it returns.

        The transport runs it at the end of the loop's turn when it can write
        without waiting (asyncio); otherwise the writer task does, which also
        runs only once the current task yields.
        """
        self._soon.append((stream_id, action))
        if len(self._soon) > 1:
            return  # already scheduled
        call_soon = getattr(self._stream, "call_soon", None)
        if call_soon is not None:
            call_soon(self._run_soon)
        else:
            self._wake_writer()

    def _take_soon(self) -> bool:
        """Run the pending ``soon`` actions: their commands go into the protocol.

        False when none had anything to say (the head they would release
        went out with its body): nothing changed.
        """
        pending, self._soon = self._soon, []
        handled = False
        for stream_id, action in pending:
            commands = action()
            if not commands or self._protocol.closed:
                continue
            handled = True
            try:
                for command in commands:
                    self._protocol.handle(command)
            except AppProtocolError as exc:
                exchange = self._exchanges.get(stream_id)
                if isinstance(exchange, HTTPExchange):
                    exchange.head_failed(exc)
            except ClientDisconnected:
                pass
        return handled

    def _run_soon(self) -> None:
        """The end of a loop turn: run the soon actions; what they made goes out now.

        A transport that can write without waiting (asyncio's) takes it here;
        otherwise the writer task starts, only when there is something to write.
        """
        if not self._take_soon() and not self._protocol.has_output:
            return  # the common case: the head went out with its body
        write_now = getattr(self._stream, "write_now", None)
        if (
            write_now is not None
            and not self._coalescing
            and not self._transport_closed
            and (data := self._take_output())
        ):
            # Not on HTTP/2: there the output may hold the answers of many
            # streams, whose senders returned without waiting; the writer
            # task writes them and waits for the transport, so that a peer
            # that reads nothing holds them up, not the transport's buffer.
            write_now(data)
        self._refresh()

    def queue(self, stream_id: int, commands: tuple[Command, ...]) -> bool:
        """Turn commands into bytes the next write takes along (see Transport.queue_commands)."""
        protocol = self._protocol
        if protocol.output_size >= QUEUE_LIMIT or protocol.held(stream_id):
            return False
        for command in commands:
            protocol.handle(command)
        self._wake_writer()
        return True

    def acknowledge(self, stream_id: int, size: int) -> None:
        if stream_id in self._held:
            self._release(stream_id, size)
        self._protocol.acknowledge(stream_id, size)
        # Taking bytes changes no phase: what may follow is a window update
        # to write, or leave to read on.
        self._refresh(phase=False)

    def _release(self, stream_id: int, size: int) -> None:
        """``size`` of the stream's held body bytes were taken (or will never be)."""
        held = self._held[stream_id]
        taken = min(size, held)
        if taken == held:
            del self._held[stream_id]
        else:
            self._held[stream_id] = held - taken
        self._context.body_taken(taken)

    def resume_reading(self) -> None:
        if self._resume is not None:
            self._resume.set()

    def _reading_paused(self) -> bool:
        """The protocol wants no data (an app lags, pipelined bytes are held), or
        this connection holds body bytes while the server is past its budget."""
        if not self._protocol.wants_data:
            return True
        return bool(self._held) and self._context.over_body_budget(self)

    def reset(self, stream_id: int) -> None:
        self._protocol.reset_stream(stream_id)
        self._refresh()

    def stop_keep_alive(self) -> None:
        self._protocol.stop_keep_alive()

    def _take_output(self) -> bytes:
        data = self._protocol.data_to_send()
        if self._carried:
            data, self._carried = self._carried + data, b""
        if self._metrics is not None and data:
            self._metrics.sent.inc(len(data))
        return data

    async def _write(self, data: bytes) -> None:
        if not data:
            return
        try:
            await self._stream.send(data)
        except WriteTimeout:
            # The client stopped reading (the transport keeps the write
            # timeout). What was cut short cannot be resumed, so the
            # connection is over, and nothing more is tried on it: its task,
            # buffers and app go now.
            self._stuck = True
            self._stop_reading()
            error_logger.info(
                "closed a connection whose client read nothing for %gs (write_timeout)",
                self._config.write_timeout,
            )
            raise ClientDisconnected("the client stopped reading (write_timeout)") from None
        except STREAM_ERRORS as exc:
            self._stop_reading()
            raise ClientDisconnected(f"the client has disconnected: {exc!r}") from None

    async def _write_output(self) -> None:
        """Write what the protocol has to send (the write lock is held)."""
        await self._write(self._take_output())

    async def _flush(self) -> None:
        """Write what the protocol produced on its own."""
        async with self._write_lock:
            with contextlib.suppress(ClientDisconnected):
                await self._write_output()

    def _refresh(self, *, phase: bool = True) -> None:
        """Act on a protocol state change made outside the read loop
        (``phase``: one that may have moved the protocol's phase)."""
        protocol = self._protocol
        if protocol.has_output or self._carried:
            self._wake_writer()
        if protocol.closed:
            self._stop_reading()
            return
        if phase:
            self._arm()
        if self._resume is not None and not self._reading_paused():
            self._resume.set()

    def _wake_writer(self) -> None:
        """Have what the protocol queued outside any sender written, by the writer task.

        The task runs only while there is something to write (most writes are
        made by the sender itself), so an idle connection keeps no task for it.
        """
        if self._writing or self._spawner is None or self._reading_over:
            # A running writer takes it along before it ends; once reading is
            # over, the close writes what is left.
            return
        self._writing = True
        self._spawner.spawn(self._writer, name=_WRITER)

    async def _writer(self) -> None:
        try:
            while True:
                if self._soon:
                    self._take_soon()
                if self._shutdown_pending:
                    self._shutdown_pending = False
                    assert self._spawner is not None
                    for exchange in list(self._exchanges.values()):
                        if isinstance(exchange, WebSocketExchange):
                            self._spawner.spawn(exchange.shutdown, name=_WS_SHUTDOWN)
                if not (self._protocol.has_output or self._carried):
                    break
                await self._flush()
            if self._protocol.closed:
                self._stop_reading()
        finally:
            self._writing = False  # with no wait since the last look at the output

    # -- shutdown ------------------------------------------------------------

    def shutdown(self) -> None:
        """Wind down: in-flight requests finish, nothing new; WebSockets get 1001.

        HTTP/1.1 answers its request in flight with ``Connection: close`` (or
        closes if idle); HTTP/2 sends GOAWAY.

        A new HTTP/1.1 connection that has had no request yet is not idle: it
        was accepted to send one, most likely on its way or unread in the
        socket already. Closed, that request would be lost to a client that
        cannot know it was not seen (and, on a new connection, does not
        retry). It gets FIRST_REQUEST_GRACE to send it and an answer with
        ``Connection: close``; one that sends nothing (a browser's
        preconnect) is closed then. That is what lets a worker retire while
        the others take over its listeners without dropping a request.
        """
        if self._started == 0 and not isinstance(self._protocol, HTTP2Protocol):
            self._protocol.stop_keep_alive()
            self._first_request_by = anyio.current_time() + FIRST_REQUEST_GRACE
            self._phase = None  # re-arm with the grace
            self._refresh()
            return
        self._protocol.start_shutdown()
        self._shutdown_pending = True
        self._wake_writer()

    def _stop_reading(self) -> None:
        """End the read loop on purpose (not a timeout), where it waits.

        A write in progress is never cut short: the bytes it took from the
        protocol would be lost.
        """
        self._stopped = True
        if self._parked:
            self._read_scope.cancel()

    # -- the connection task -------------------------------------------------

    async def run(self) -> None:
        self._context.connections.add(self)
        if self._metrics is not None:
            self._metrics.connection_opened(self._protocol)
        try:
            # The connection's task group: its tasks are the loop's own (a
            # third of anyio's task group in memory and CPU, on every
            # connection), cancelled with the scope around it.
            async with transport.open_spawner() as spawner:
                self._spawner = spawner
                if self._context.shutting_down:
                    self.shutdown()
                await self._read_loop()
                self._reading_over = True
                # Nothing more will be read. Apps still running learn that
                # their client is gone, and the transport is closed now:
                # nothing more can pass on it, so they must not hold it open.
                for stream_id, exchange in list(self._exchanges.items()):
                    exchange.disconnect()
                    self._orphan(stream_id, exchange)
                self._windows.open_all()
                await self._close(linger=self._protocol.drain_on_close)
            self._spawner = None  # nothing may start in it once it is done
        finally:
            self._disarm()
            self._spawner = None
            self._context.connections.discard(self)
            if self._metrics is not None:
                self._metrics.connection_closed(self._protocol)
            if self._protocol.error is not None:
                error_logger.info("connection ended: %s", self._protocol.error)
            # Reached with the transport open only when cancelled (a forced
            # shutdown) or failing: close at once, without lingering.
            await self._close(linger=False)

    async def _read_loop(self) -> None:
        # asyncio's transport hands what arrives while the loop waits to
        # _fed, in its callback: most reads then cost no step of this task.
        receive_feeding = getattr(self._stream, "receive_feeding", None)
        # One scope for the whole loop: its deadline follows the protocol's
        # phase, and when it fires (a timeout) or is cancelled (close,
        # shutdown) the loop is over either way.
        with self._read_scope:
            await self._flush()  # HTTP/2's preface
            self._arm()  # from here on, every change of phase re-arms (see _refresh)
            while not self._protocol.closed and not self._stopped:
                started = self._started
                data: bytes | None
                self._parked = True
                try:
                    if self._reading_paused():
                        # An app lags, enough pipelined bytes are held, or
                        # the server holds enough body bytes for its apps.
                        self._resume = transport.new_flag()
                        await self._resume.wait()
                        continue
                    if receive_feeding is None:
                        data = await self._stream.receive(READ_SIZE)
                    else:
                        data = await receive_feeding(READ_SIZE, self._fed)
                except STREAM_ERRORS:
                    data = b""
                finally:
                    self._parked = False
                if data is not None:  # else _fed took it
                    self._take(data)
                if self._protocol.has_output or self._carried:
                    await self._flush()  # acks, pongs, refusals
                elif self._started != started and len(self._exchanges) > 1:
                    # Streams side by side (HTTP/2): let those this read
                    # started take their first step (most answer at once)
                    # and write, before reading again, so that what their
                    # answers prompt arrives in one read, not one per stream.
                    await anyio.lowlevel.checkpoint()
                    async with self._write_lock:
                        pass
        self._disarm()
        if self._read_scope.cancelled_caught and not self._stopped:
            error_logger.debug(self._protocol.timed_out())

    def _take(self, data: bytes) -> None:
        """What one read brought (b"": the peer's EOF) goes to the protocol; events on."""
        if not data:
            self._eof = True
        elif self._metrics is not None:
            self._metrics.received.inc(len(data))
        self._dispatch(self._protocol.receive_data(data))
        self._arm()

    def _fed(self, data: bytes) -> bool:
        """Bytes that arrived while the read loop waits, taken in the transport's callback.

        True when the loop may wait on: nothing is to be written, no stream
        started beside another, reading goes on. Else the loop wakes to do
        what its own read would have done next.
        """
        # Not parked while taking: a read that ends reading (see
        # _stop_reading) ends it as the loop's own would, at the loop's test.
        self._parked = False
        started = self._started
        self._take(data)
        protocol = self._protocol
        if (
            protocol.has_output
            or self._carried
            or protocol.closed
            or self._stopped
            or (self._started != started and len(self._exchanges) > 1)
            or self._reading_paused()
        ):
            return False
        self._parked = True
        return True

    def _arm(self) -> None:
        """Start the timeout of the protocol's phase when the phase begins.

        The phase changes two or three times per request, so a change costs
        no timer: it moves the deadline, and one timer per connection looks
        at the deadline when it fires, cancelling the read scope once it has
        passed, or waiting on to the new one. Only a deadline earlier than
        the timer's moves the timer.
        """
        phase = self._protocol.phase
        if phase is self._phase:
            return
        self._phase = phase
        if phase is _BUSY:
            # No clock read for the phase without a deadline (the one each request enters).
            self._deadline = math.inf
            return
        match phase:
            case Phase.IDLE:
                timeout = self._config.keep_alive_timeout
            case Phase.HEAD:
                timeout = self._config.request_head_timeout
                if self._first_request_by is not None:  # a shutdown's grace (see shutdown)
                    timeout = min(timeout, self._first_request_by - anyio.current_time())
            case Phase.CLOSING:
                timeout = _WS_CLOSE_TIMEOUT
            case Phase.BUSY:
                raise AssertionError("taken above")
            case _:
                assert_never(phase)
        if timeout == math.inf:
            self._deadline = math.inf
            return
        deadline = self._deadline = self._clock() + timeout
        if deadline < self._timer_at:
            if self._timer is not None:
                self._timer.cancel()
            self._timer_at = deadline
            self._timer = transport.call_later(max(timeout, 0.0), self._deadline_check)

    def _deadline_check(self) -> None:
        """The timer fired: end the read loop if the phase's deadline passed, else wait on."""
        self._timer, self._timer_at = None, math.inf
        if self._reading_over or self._deadline == math.inf:
            return
        left = self._deadline - self._clock()
        if left <= 0:
            self._read_scope.cancel()
        else:
            self._timer_at = self._deadline
            self._timer = transport.call_later(left, self._deadline_check)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer, self._timer_at = None, math.inf

    async def _close(self, *, linger: bool) -> None:
        """Write what is left and close the transport (once).

        Closing a socket with unread input makes the kernel answer with RST,
        which can destroy our last answer still in flight; so the write side
        is shut first and the input drained for _LINGER at most (a lingering
        close). TLS cannot half-close, but a peer that read our answer closes
        its side, so the input is drained there too.
        """
        if self._transport_closed:
            return
        self._transport_closed = True
        if self._stuck:
            # A write timed out: the peer reads nothing, so nothing more is
            # written or drained; the socket just goes.
            await self._close_transport()
            return
        if self._eof and not self._protocol.has_output and not self._carried:
            # The peer closed first and nothing is left to say: just close.
            await self._close_transport()
            return
        with (
            anyio.move_on_after(CLOSE_TIMEOUT, shield=True),
            contextlib.suppress(*STREAM_ERRORS, NotImplementedError),
        ):
            async with self._write_lock:
                if data := self._take_output():
                    await self._stream.send(data)
                if self._eof:
                    pass  # the peer closed first: nothing is left unread
                elif self._peer.info.tls is None:
                    try:
                        await self._stream.send_eof()
                    except RuntimeError:
                        # uvloop's word for a transport the peer already reset.
                        self._eof = True
        if linger and not self._eof:
            with (
                anyio.move_on_after(_LINGER, shield=True),
                contextlib.suppress(*STREAM_ERRORS, NotImplementedError),
            ):
                drained = 0
                while drained < _LINGER_BYTES:
                    drained += len(await self._stream.receive(READ_SIZE))  # until EndOfStream
        await self._close_transport()

    async def _close_transport(self) -> None:
        """Close the stream: at once where the transport can (asyncio's), else bounded."""
        close_now = getattr(self._stream, "close_now", None)
        if close_now is not None:
            close_now()
            return
        with anyio.move_on_after(CLOSE_TIMEOUT, shield=True):
            await self._stream.aclose()

    # -- dispatch ------------------------------------------------------------

    def _dispatch(self, events: list[Event]) -> None:
        """Hand protocol events on. Nothing here waits."""
        if len(events) == 2:
            # Most reads: a request and its end. What the loop below does
            # with them (a request without a body), without the loop.
            request, ended = events
            if (
                type(request) is RequestReceived
                and type(ended) is StreamEnded
                and ended.stream_id == request.stream_id
            ):
                self._start(request, body_ended=True)
                return
        websockets: set[int] | None = None  # made only when a WebSocket is fed
        for index, event in enumerate(events):
            # A body's events by exact type, ahead of the match below (whose
            # class patterns cost an isinstance per case tried).
            if type(event) is DataReceived:
                stream_id, body = event.stream_id, event.data
                exchange = self._exchanges.get(stream_id)
                if type(exchange) is HTTPExchange:
                    # A final chunk and the end of the body: one message.
                    following = events[index + 1] if index + 1 < len(events) else None
                    ends = type(following) is StreamEnded and following.stream_id == stream_id
                    exchange.put_nowait(body, more_body=not ends)
                    if body:
                        held = self._held
                        held[stream_id] = held.get(stream_id, 0) + len(body)
                        self._context.body_held += len(body)
                else:
                    # Nobody will take these bytes: let the peer send on.
                    self._protocol.acknowledge(stream_id, len(body))
                continue
            if type(event) is StreamEnded:
                stream_id = event.stream_id
                exchange = self._exchanges.get(stream_id)
                if type(exchange) is HTTPExchange:
                    previous = events[index - 1] if index else None
                    if (
                        type(previous) is not DataReceived and type(previous) is not RequestReceived
                    ) or previous.stream_id != stream_id:
                        # Else told already: with the last data, or at the
                        # request's start (a request without a body).
                        exchange.put_nowait(b"", more_body=False)
                continue
            match event:
                case RequestReceived(stream_id=stream_id):
                    # A request whose end follows its head has no body (most):
                    # its exchange knows from the start that the body is empty.
                    following = events[index + 1] if index + 1 < len(events) else None
                    self._start(
                        event,
                        body_ended=type(following) is StreamEnded
                        and following.stream_id == stream_id,
                    )
                case DataReceived() | StreamEnded():
                    raise AssertionError("taken above")
                case MessageReceived(stream_id=stream_id, data=data):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.put_nowait(data)
                        websockets = websockets or set()
                        websockets.add(stream_id)
                case PongReceived(stream_id=stream_id):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.pong_received()
                case WebSocketClosed(stream_id=stream_id, code=code, reason=reason):
                    exchange = self._exchanges.get(stream_id)
                    if isinstance(exchange, WebSocketExchange):
                        exchange.closed(code, reason)
                    websockets = websockets or set()
                    websockets.add(stream_id)
                case StreamReset(stream_id=stream_id):
                    self._reset = _with(self._reset, stream_id)
                    exchange = self._exchanges.get(stream_id)
                    if exchange is not None:
                        exchange.disconnect()
                        self._orphan(stream_id, exchange)
                    self._windows.open(stream_id)
                case WindowOpened(stream_id=stream_id):
                    self._windows.open(stream_id)
                case ConnectionClosed():
                    for exchange in self._exchanges.values():
                        exchange.disconnect()
                    self._windows.open_all()
                case RequestRejected(status_code=status, reason=reason, detail=detail):
                    error_logger.debug(
                        "rejected a request with %d: %s%s",
                        status,
                        reason,
                        detail and f" ({detail})",
                    )
                case H2CUpgradeRequested(data=data):
                    self._switch_to_http2(data, event)
                case HTTP2PrefaceReceived(data=data):
                    self._switch_to_http2(data)
                case _:
                    assert_never(event)
        for stream_id in websockets or ():
            # While the app keeps up, more may come as the frames are read;
            # once it lags, only its receive() lets more in (see acknowledge).
            exchange = self._exchanges.get(stream_id)
            if isinstance(exchange, WebSocketExchange) and exchange.keeping_up:
                self._protocol.acknowledge(stream_id, 0)

    def _switch_to_http2(self, data: bytes, upgrade: H2CUpgradeRequested | None = None) -> None:
        """Carry on as HTTP/2 (h2c): after the preface, or after the 101 of an upgrade."""
        self._carried += self._protocol.data_to_send()  # the 101
        if self._metrics is not None:
            self._metrics.connection_switched()
        protocol = self._http2()
        self._protocol = protocol
        if upgrade is None:
            protocol.initiate()
            events: list[Event] = []
        else:
            # The upgrading request is stream 1 (RFC 7540 3.2).
            events = protocol.initiate_upgrade(upgrade.settings, upgrade.request, upgrade.body)
        if self._context.shutting_down:
            protocol.start_shutdown()
        if data:
            events += protocol.receive_data(data)
        self._dispatch(events)

    # -- exchanges -----------------------------------------------------------

    def _start(self, request: RequestReceived, *, body_ended: bool = False) -> None:
        """A request, or a WebSocket handshake: its exchange task starts now
        (``body_ended``: the request ended with its head)."""
        info = self._peer.for_request(request)
        config, context = self._config, self._context
        transport = self._first_transport
        if transport is None or request.stream_id != 1:
            transport = self._transport_for(request.stream_id)
        app = context.app
        context.count_request()
        if config.limit_concurrency is not None:
            if context.running_apps >= config.limit_concurrency:
                app = _at_capacity  # answers 503 itself, and does not count
            else:
                context.running_apps += 1
                self._counted = _with(self._counted, request.stream_id)
        exchange: Exchange
        if request.websocket is None:
            exchange = HTTPExchange(
                app,
                build_http_scope(request, info, root_path=config.root_path, state=context.state),
                transport,
                stream_id=request.stream_id,
                expects_continue=request.expects_continue,
                body_ended=body_ended,
                access_log=config.access_log,
                access_log_format=config.access_log_format,
                body_timeout=config.body_timeout,
            )
        else:
            exchange = WebSocketExchange(
                app,
                build_websocket_scope(
                    request, info, root_path=config.root_path, state=context.state
                ),
                transport,
                stream_id=request.stream_id,
                config=config,
            )
        self._begin(request.stream_id, exchange)
        if context.shutting_down and isinstance(exchange, WebSocketExchange):
            assert self._spawner is not None
            self._spawner.spawn(exchange.shutdown, name=_WS_SHUTDOWN)

    def _transport_for(self, stream_id: int) -> _StreamTransport:
        """The transport of a stream's exchange: it holds nothing but the stream id."""
        if stream_id != 1:
            return _StreamTransport(self, stream_id)
        if self._first_transport is None:
            self._first_transport = _StreamTransport(self, 1)
        return self._first_transport

    def _orphan(self, stream_id: int, exchange: Exchange) -> None:
        """The client of a running exchange is gone: cancel its app after the grace.

        Only an unfinished response makes an orphan; an app whose response
        is complete may go on with background work. Past MAX_ORPHANS of them
        server-wide (a reconnecting attacker's), new ones are cancelled at once.
        """
        if stream_id in self._orphaned or (
            isinstance(exchange, HTTPExchange) and exchange.response_complete
        ):
            return
        self._orphaned = _with(self._orphaned, stream_id)
        self._context.orphans += 1
        grace = self._config.app_disconnect_grace
        delay = grace if self._context.orphans <= MAX_ORPHANS else 0.0
        scope = self._scopes.get(stream_id)
        if scope is not None:
            scope.deadline = min(scope.deadline, anyio.current_time() + delay)
        elif not self._multiplexed:
            # HTTP/1.1: one exchange at a time, without a scope of its own
            # (one per request would cost every request). Reading is over,
            # so the connection's group has nothing left but this exchange:
            # the group is cancelled, unless the exchange has ended by then.
            def cancel() -> None:
                if self._exchanges.get(stream_id) is exchange and self._spawner is not None:
                    self._spawner.cancel()
                    _log_orphan_cancelled(grace)

            transport.call_later(delay, cancel)

    @property
    def _multiplexed(self) -> bool:
        """Streams side by side (HTTP/2, HTTP/3), each exchange in a scope of its own."""
        return not isinstance(self._protocol, HTTP1Protocol)

    def _begin(self, stream_id: int, exchange: Exchange) -> None:
        self._started += 1
        self._exchanges[stream_id] = exchange
        assert self._spawner is not None
        self._spawner.spawn(self._run_exchange, stream_id, exchange, name=_EXCHANGE)

    async def _run_exchange(self, stream_id: int, exchange: Exchange) -> None:
        metrics = self._metrics
        started = 0.0 if metrics is None else metrics.exchange_started(self._protocol, exchange)
        try:
            if type(self._protocol) is not HTTP1Protocol:  # multiplexed
                # Streams outlive one another: each gets its own scope, so an
                # orphan can be cancelled alone (HTTP/1.1 cancels its group).
                with anyio.CancelScope() as scope:
                    self._scopes[stream_id] = scope
                    await exchange.run()
                if scope.cancelled_caught:
                    _log_orphan_cancelled(self._config.app_disconnect_grace)
            else:
                await exchange.run()
        finally:
            if metrics is not None:
                metrics.exchange_finished(self._protocol, exchange, started)
            if stream_id in self._counted:
                self._counted = _without(self._counted, stream_id)
                self._context.running_apps -= 1
            if self._scopes:
                self._scopes.pop(stream_id, None)
            if stream_id in self._held:
                self._release(stream_id, self._held[stream_id])  # never taken now
            if stream_id in self._orphaned:
                self._orphaned = _without(self._orphaned, stream_id)
                self._context.orphans -= 1
            if self._exchanges.get(stream_id) is exchange:
                del self._exchanges[stream_id]
            if stream_id in self._reset:
                self._reset = _without(self._reset, stream_id)
            # The next pipelined request, a stream's end, or the close.
            if events := self._protocol.exchange_finished(stream_id):
                self._dispatch(events)
            self._refresh()
