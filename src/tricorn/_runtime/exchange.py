"""One exchange: a request (HTTP/1.1) or stream (HTTP/2) and the app task serving it.

The exchange is protocol-agnostic: it talks to its connection through the
small :class:`Transport` protocol and turns app messages into commands with
``_asgi.cycle``.
"""

from __future__ import annotations

import math
import os
import stat
import time
import types
from collections.abc import Awaitable, Callable, Coroutine, Generator
from typing import Any, Final, Protocol

import anyio

from .._asgi.cycle import FILE_MESSAGES, FileBody, HTTPCycle, HTTPCycleState
from .._asgi.types import ASGI3App, HTTPScope, Message
from .._protocol import Command, SendData, SendInformational, StartResponse, rules
from ..errors import AppProtocolError, ClientDisconnected
from . import transport
from .asyncio_apps import log_needs_asyncio
from .logging import DEFAULT_ACCESS_FORMAT, error_logger, log_access
from .transport import Timer

__all__ = ["HTTPExchange", "Inbox", "Transport", "internal_error", "only_disconnects"]


def only_disconnects(error: BaseException) -> bool:
    """An exception group whose every leaf is our ClientDisconnected."""
    if isinstance(error, BaseExceptionGroup):
        return all(only_disconnects(inner) for inner in error.exceptions)
    return isinstance(error, ClientDisconnected)


_TAKEN: Final[tuple[Message, int]] = ({}, 0)
#: Taken messages an Inbox keeps a place for before it shortens its list.
_COMPACT_AT: Final = 32


@types.coroutine
def _told_before_each_wait(
    coroutine: Coroutine[Any, Any, None], waits: Callable[[], None], yielded: Any
) -> Generator[Any, Any, None]:
    """Await the rest of ``coroutine``, whose first step yielded ``yielded``,
    calling ``waits()`` each time it is about to wait.

    It is ``await coroutine`` with a hook where the task suspends: what the
    coroutine yields is handed to the event loop (asyncio's futures, trio's
    traps) and what the loop sends or throws back is handed down, as ``yield
    from`` would. The caller takes the first step itself: a coroutine that
    runs to its end without waiting (most requests) then costs neither this
    generator nor a call of ``waits``. That is what a response head held for
    its body needs, where a callback at every loop turn cost each request.
    """
    send: Callable[[Any], Any] = coroutine.send
    value: Any = None
    error: BaseException | None = None
    while True:
        waits()
        try:
            value = yield yielded
        except GeneratorExit:
            coroutine.close()
            raise
        except BaseException as exc:  # the loop's cancellation, handed down
            error = exc
        try:
            if error is None:
                yielded = send(value)
            else:
                yielded, error = coroutine.throw(error), None
        except StopIteration:
            return


async def _as_coroutine(awaitable: Awaitable[None]) -> None:
    await awaitable


class Inbox:
    """The queue of messages between the read loop and the app.

    The read loop never waits on it (``put_nowait``): what bounds it is the
    protocol's window, which opens again only as the app takes messages.
    ``max_items`` and ``max_bytes`` say when it is ``full``, the sign that the
    app lags. Unlike a memory object stream it does not yield when a message
    is ready: on the hot path (a GET's single message) the app does not wait,
    so it pays no trip through the event loop.
    """

    __slots__ = (
        "_bytes",
        "_closed",
        "_head",
        "_max_bytes",
        "_max_items",
        "_messages",
        "_readable",
    )

    def __init__(self, max_items: int = 1, max_bytes: int = 0) -> None:
        # A list read from ``_head`` on, not a deque: an empty deque costs
        # 600 bytes more, on every exchange and every idle WebSocket.
        self._messages: list[tuple[Message, int]] = []
        self._head = 0
        self._max_items = max_items
        self._max_bytes = max_bytes
        self._bytes = 0
        self._closed = False
        self._readable: transport.Flag | None = None

    def _full(self) -> bool:
        waiting = len(self._messages) - self._head
        return waiting >= self._max_items or (waiting > 0 and self._bytes >= self._max_bytes)

    def put_nowait(self, message: Message, size: int = 0) -> None:
        """Queue a message even past the limits (the sender bounds itself); dropped once closed."""
        if self._closed:
            return
        self._messages.append((message, size))
        self._bytes += size
        if self._readable is not None:
            self._readable.set()

    @property
    def full(self) -> bool:
        """At or past the limits: a ``put`` would wait."""
        return self._full()

    async def get(self, *, until_woken: bool = False) -> Message | None:
        """The next message, or None once the inbox is closed and empty.

        With ``until_woken``, also None when :meth:`wake` ends the wait
        before a message came (a timer's way to give up on it).
        """
        messages = self._messages
        while self._head == len(messages):
            if self._closed:
                return None
            self._readable = transport.new_flag()
            await self._readable.wait()
            if until_woken and self._head == len(messages):
                return None
        head = self._head
        message, size = messages[head]
        self._bytes -= size
        if head + 1 == len(messages):
            messages.clear()
            self._head = 0
        elif head >= _COMPACT_AT:
            del messages[: head + 1]  # an app always a few behind: the list stays short
            self._head = 0
        else:
            messages[head] = _TAKEN  # let the message go now
            self._head = head + 1
        return message

    def wake(self) -> None:
        """End a wait of ``get(until_woken=True)`` without a message."""
        if self._readable is not None:
            self._readable.set()

    @property
    def ready(self) -> bool:
        """A message is waiting: ``get()`` returns at once."""
        return self._head < len(self._messages)

    def close(self, *, keep: bool = False) -> None:
        """No more messages: a waiting reader gets None, a waiting writer returns.

        With ``keep`` the messages already queued are still handed out first.
        """
        self._closed = True
        if not keep:
            self._messages.clear()
            self._head = 0
            self._bytes = 0
        if self._readable is not None:
            self._readable.set()


#: The inbox of an exchange closed before it needed one of its own: it holds
#: nothing, takes nothing, and ``get()`` returns None at once.
_CLOSED_INBOX: Final = Inbox()
_CLOSED_INBOX.close()

_DISCONNECT: Final = {"type": "http.disconnect"}
#: The cycle's state once the response is complete (a property call cost more).
_DONE: Final = HTTPCycleState.DONE
#: The piece of a file body read per write where the kernel cannot send it:
#: no more than a sender may queue (connection.QUEUE_LIMIT).
_FILE_PIECE: Final = 64 * 1024
_INTERNAL_ERROR_BODY: Final = b"Internal Server Error\n"
#: Body bytes that count as progress for the body timeout: a client must send
#: at least this much (or the rest of its body) per body_timeout.
_BODY_PROGRESS: Final = 1024
#: How long an app cancelled by a forced shutdown may take to write its 503.
_GIVE_UP_TIMEOUT: Final = 1.0


def internal_error(stream_id: int) -> tuple[StartResponse, SendData]:
    """The 500 response an app earns by failing before its response started."""
    headers = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(_INTERNAL_ERROR_BODY)).encode()),
    )
    return (
        StartResponse(stream_id, 500, headers),
        SendData(stream_id, _INTERNAL_ERROR_BODY, end_stream=True),
    )


def body_timed_out(stream_id: int) -> tuple[StartResponse, SendData]:
    """The 408 for a request whose body stopped coming, if no response went out."""
    headers, body = rules.refusal(408, "request body not received in time")
    return StartResponse(stream_id, 408, headers), SendData(stream_id, body, end_stream=True)


def service_unavailable(stream_id: int) -> tuple[StartResponse, SendData]:
    """The 503 an app still running at a forced shutdown leaves its client, if nothing went out."""
    headers, body = rules.refusal(503, "the server is shutting down")
    return StartResponse(stream_id, 503, headers), SendData(stream_id, body, end_stream=True)


class Transport(Protocol):
    """What an exchange needs from its connection."""

    async def send_commands(self, *commands: Command) -> None:
        """Write the commands' bytes in one go; raise ClientDisconnected if the peer is gone."""
        ...

    def queue_commands(self, *commands: Command) -> bool:
        """Turn the commands into bytes that go out with the next write, or soon after.

        For a sender with more to say straight away, which need not wait on the
        transport for each piece. Returns False, queuing nothing, when enough
        unwritten bytes are held already: the caller then awaits
        ``send_commands``, and that is where backpressure makes it wait.
        """
        ...

    async def send_file(
        self, commands: tuple[Command, ...], fd: int, offset: int, count: int, *, end_stream: bool
    ) -> bool:
        """Write the commands, then ``count`` bytes of ``fd`` from ``offset``, by the kernel.

        Returns False, having done nothing, where the connection cannot
        write a file itself (TLS, HTTP/2): the caller sends it as data.
        """
        ...

    def consumed(self, size: int) -> None:
        """The app took ``size`` bytes the peer sent (HTTP/2 opens its window again)."""
        ...

    def soon(self, action: Callable[[], tuple[Command, ...]]) -> None:
        """Run ``action`` once the sender's task yields, and write the commands it returns.

        For a response head held for its body: if the app waits on anything
        before sending the body, the head goes out on its own at that point;
        if the body comes first, ``action`` finds nothing left to send.
        """
        ...

    def stop_keep_alive(self) -> None:
        """Close the connection after this exchange (HTTP/1.1) or do nothing (HTTP/2)."""
        ...

    def abort(self) -> None:
        """Give up on the peer: stop reading and close (a dead WebSocket peer)."""
        ...


class HTTPExchange:
    """Runs ``app(scope, receive, send)`` for one request and keeps its books."""

    # What most exchanges never change, as class-level defaults (an instance
    # sets its own only when one changes): a store each, per request, saved.
    _inbox: Inbox | None = None
    _disconnected = False
    _error_status: int | None = None
    _head_error: AppProtocolError | None = None
    _body_progress = 0
    _body_complete = False
    #: The body timeout's one timer (see _next_message), the end of the
    #: current wait's allowance, and whether the app waits now.
    _body_timer: Timer | None = None
    _body_deadline = math.inf
    _body_waiting = False
    _body_expired = False

    def __init__(
        self,
        app: ASGI3App,
        scope: HTTPScope,
        transport: Transport,
        *,
        stream_id: int,
        expects_continue: bool,
        body_ended: bool = False,
        access_log: bool = True,
        access_log_format: str = DEFAULT_ACCESS_FORMAT,
        body_timeout: float = math.inf,
    ) -> None:
        self.scope = scope
        self._app = app
        self._transport = transport
        extensions = scope["extensions"]
        self._cycle = HTTPCycle(
            stream_id,
            trailers="http.response.trailers" in extensions,
            push="http.response.push" in extensions,
            early_hints="http.response.early_hint" in extensions,
            pathsend="http.response.pathsend" in extensions,
            zerocopysend="http.response.zerocopysend" in extensions,
        )
        self._stream_id = stream_id
        self._awaiting_continue = expects_continue
        # The inbox: the protocol's window bounds what waits there (see
        # Inbox). Made when a message or a wait needs it: most GETs' apps
        # never wait on one.
        self._access_log = access_log
        self._access_log_format = access_log_format
        #: How long the app may wait, in all, for the body to make progress
        #: (see _next_message); refilled each time it does.
        self._body_timeout = body_timeout
        self._body_wait_left = body_timeout
        #: The request came without a body, ended with its head: the app's
        #: first receive() gets the empty body without a trip through the inbox.
        self._empty_body = body_ended

    # -- the connection's side ---------------------------------------------

    def put_nowait(self, data: bytes, *, more_body: bool) -> None:
        """Hand a body chunk to the app; the protocol's window bounds how many wait.

        Once the app finished, the rest of the body is dropped.
        """
        self._open_inbox().put_nowait(
            {"type": "http.request", "body": data, "more_body": more_body}, len(data)
        )

    def disconnect(self) -> None:
        """The peer is gone: ``receive()`` reports ``http.disconnect``, ``send()`` raises."""
        self._disconnected = True
        self._awaiting_continue = False
        self._empty_body = False
        self._close_inbox()

    @property
    def response_complete(self) -> bool:
        return self._cycle.state is _DONE

    @property
    def status(self) -> int | None:
        """The status sent, once its head went out (the app's, or our 500 / 503)."""
        return self._cycle.status if self._cycle.flushed else self._error_status

    def _open_inbox(self) -> Inbox:
        inbox = self._inbox
        if inbox is None:
            inbox = self._inbox = Inbox()
        return inbox

    def _close_inbox(self) -> None:
        """No more messages (see Inbox.close): the shared closed one if none was made."""
        inbox = self._inbox
        if inbox is None:
            self._inbox = _CLOSED_INBOX
        elif inbox is not _CLOSED_INBOX:
            inbox.close()

    # -- the app's side ----------------------------------------------------

    async def receive(self) -> Message:
        if self._cycle.state is _DONE:
            # Spec: once the response is sent, receive() reports disconnect.
            return dict(_DISCONNECT)
        if self._awaiting_continue and not self._cycle.flushed:
            # RFC 9110 10.1.1: the client waits for 100 before the body; we
            # say it only once the app asks for the body.
            self._awaiting_continue = False
            try:
                await self._transport.send_commands(SendInformational(self._stream_id, 100))
            except ClientDisconnected:
                return dict(_DISCONNECT)
        if self._empty_body:
            self._empty_body = False
            self._body_complete = True
            return {"type": "http.request", "body": b"", "more_body": False}
        message = await self._next_message()
        if message is None:
            return dict(_DISCONNECT)
        body = message.get("body")
        if body:
            self._transport.consumed(len(body))
        if message["type"] == "http.request":
            self._body_progressed(len(body or b""), message.get("more_body", False))
        return message

    async def _next_message(self) -> Message | None:
        """The next message; a body that stops coming ends the request (408).

        Only the time the app spends waiting for body bytes counts, and the
        allowance is refilled whenever the body makes progress, so a slow
        app never costs its client, and a client trickling its body (RUDY)
        is cut off once it falls below _BODY_PROGRESS bytes per body_timeout.
        """
        inbox = self._open_inbox()
        if inbox.ready or self._body_complete or self._body_timeout == math.inf:
            return await inbox.get()
        # A loop timer, not a cancel scope, and one per exchange, not one per
        # wait: it checks the deadline when it fires (see _body_timer_fired).
        # A wait's deadline is never earlier than a timer left running by an
        # earlier wait, whose allowance this one continues.
        clock = transport.clock()
        started = clock()
        self._body_deadline = started + self._body_wait_left
        if self._body_timer is None:
            self._body_timer = transport.call_later(self._body_wait_left, self._body_timer_fired)
        self._body_waiting = True
        try:
            message = await inbox.get(until_woken=True)
        finally:
            self._body_waiting = False
        if message is not None or not self._body_expired:
            self._body_wait_left -= clock() - started
            return message
        error_logger.debug(
            "request body stalled for %gs: %s %s",
            self._body_timeout,
            self.scope["method"],
            self.scope["path"],
        )
        await self._fail("the request body stopped coming", body_timed_out)
        self._transport.abort()  # the rest of the body is never read
        self.disconnect()
        return None

    def _body_timer_fired(self) -> None:
        """End a wait whose allowance ran out; wait on to the deadline of a
        later one; with no wait in progress, go (the next wait starts one)."""
        self._body_timer = None
        if not self._body_waiting:
            return
        left = self._body_deadline - transport.clock()()
        if left > 0:
            self._body_timer = transport.call_later(left, self._body_timer_fired)
            return
        self._body_expired = True
        self._open_inbox().wake()

    def _body_progressed(self, size: int, more_body: bool) -> None:
        if not more_body:
            self._body_complete = True
            return
        self._body_progress += size
        if self._body_progress >= _BODY_PROGRESS:
            self._body_progress = 0
            self._body_wait_left = self._body_timeout

    async def send(self, message: Message) -> None:
        if self._disconnected:
            raise ClientDisconnected("the client has disconnected")
        if self._head_error is not None:
            raise self._head_error  # the head the app sent could not go out
        if type(message) is dict and message.get("type") in FILE_MESSAGES:
            await self._send_file(self._cycle.file_for(message))
            return
        commands = self._cycle.commands_for(message)
        if commands:
            try:
                await self._transport.send_commands(*commands)
            except ClientDisconnected:
                self.disconnect()
                raise
        # else a head held so that a body sent straight away shares its
        # write: if the app waits on anything first, it goes then (_app_waits).
        if self._cycle.state is _DONE:
            self._close_inbox()

    def _app_waits(self) -> None:
        """The app's task is about to wait: a head it holds goes out now, not with a body."""
        if self._cycle.head_held:
            self._transport.soon(self._release_head)

    async def _send_file(self, body: FileBody) -> None:
        """Send a pathsend or zerocopysend file: by the kernel where it can, else in pieces.

        A pathsend file is opened here and closed when sent; a zerocopysend
        file is the app's (ASGI: the app closes it). A file that cannot be
        read is the app's error, raised before anything goes out, so the
        client still gets a 500.
        """
        if body.path is not None:
            try:
                fd = os.open(body.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
            except OSError as exc:
                raise AppProtocolError(
                    f"http.response.pathsend: cannot open {body.path!r}: {exc.strerror}"
                ) from None
            try:
                await self._send_file_range(body, fd)
            finally:
                os.close(fd)
        else:
            assert body.fd is not None
            await self._send_file_range(body, body.fd)

    async def _send_file_range(self, body: FileBody, fd: int) -> None:
        try:
            info = os.fstat(fd)
            offset = os.lseek(fd, 0, os.SEEK_CUR) if body.offset is None else body.offset
        except OSError as exc:
            raise AppProtocolError(f"cannot read the file to send: {exc.strerror}") from None
        if not stat.S_ISREG(info.st_mode):
            raise AppProtocolError("a file body must be a regular file")
        available = max(0, info.st_size - offset)
        count = available if body.count is None else min(body.count, available)
        commands, end_stream = self._cycle.file_sent(body, count)
        try:
            if not await self._transport.send_file(
                tuple(commands), fd, offset, count, end_stream=end_stream
            ):
                await self._send_file_pieces(commands, fd, offset, count, end_stream)
        except ClientDisconnected:
            self.disconnect()
            raise
        if body.offset is None:
            # Sent "from the current position" (ASGI): the position moves on,
            # as it would had the app read the file.
            os.lseek(fd, offset + count, os.SEEK_SET)
        if self._cycle.state is _DONE:
            self._close_inbox()

    async def _send_file_pieces(
        self, commands: list[Command], fd: int, offset: int, count: int, end_stream: bool
    ) -> None:
        """The file as data, a piece at a time: each waits for the transport and the window."""
        sent = 0
        while True:
            size = min(_FILE_PIECE, count - sent)
            data = os.pread(fd, size, offset + sent) if size else b""
            if len(data) < size:
                # The file shrank under us: the response cannot be completed.
                self._transport.stop_keep_alive()
                self._transport.abort()
                raise AppProtocolError(f"the file to send ended {count - sent} bytes early")
            sent += size
            last = sent == count
            commands.append(SendData(self._stream_id, data, end_stream=end_stream and last))
            await self._transport.send_commands(*commands)
            if last:
                return
            commands = []

    def _release_head(self) -> tuple[Command, ...]:
        if self._disconnected or (head := self._cycle.release_head()) is None:
            return ()
        # The empty, unfinished data says "the head goes now": a protocol
        # that holds a head for its first data (HTTP/2) lets it out.
        return head, SendData(self._stream_id, b"", end_stream=False)

    def head_failed(self, error: AppProtocolError) -> None:
        """The held head, sent on its own, was refused (a 500 went out instead)."""
        self._head_error = error
        self._error_status = 500

    # -- the task ----------------------------------------------------------

    async def run(self) -> None:
        started = time.perf_counter() if self._access_log else 0.0
        try:
            app_call = self._app(self.scope, self.receive, self.send)
            if type(app_call) is not types.CoroutineType:
                app_call = _as_coroutine(app_call)  # any other awaitable an app returns
            try:
                yielded = app_call.send(None)  # the first step, here (see _told_before_each_wait)
            except StopIteration:
                pass  # answered without waiting: most requests
            else:
                await _told_before_each_wait(app_call, self._app_waits, yielded)
        except anyio.get_cancelled_exc_class():
            # A forced shutdown: the graceful timeout passed with this app still
            # running. A client still waiting for its answer is told the
            # server gave up (503), not left to read an EOF.
            with anyio.CancelScope(shield=True), anyio.move_on_after(_GIVE_UP_TIMEOUT):
                await self._fail("the server is shutting down", service_unavailable)
            raise
        except ClientDisconnected:
            # The app let our own "client went away" error propagate: routine.
            error_logger.debug(
                "client disconnected during %s %s", self.scope["method"], self.scope["path"]
            )
        except Exception as exc:
            if only_disconnects(exc):
                # The same, from an app that sends inside a task group.
                error_logger.debug("client disconnected during %s", self.scope["path"])
            elif self._disconnected:
                # Most often the ripple of the disconnect through app code;
                # worth a line, not an alarm.
                error_logger.info("ASGI app raised after its client disconnected: %r", exc)
                error_logger.debug("the exception", exc_info=exc)
            elif isinstance(exc, AppProtocolError):
                error_logger.error("ASGI app broke the HTTP message cycle: %s", exc, exc_info=exc)
            elif not log_needs_asyncio(self.scope, exc):
                error_logger.error("exception in ASGI app", exc_info=exc)
            await self._fail("the app raised an exception")
        else:
            if self._cycle.state is _DONE or self._disconnected:
                pass
            elif not self._cycle.flushed:
                error_logger.error(
                    "ASGI app returned without %s",
                    "sending a response body" if self._cycle.started else "starting a response",
                )
                await self._fail("the app returned without a response")
            else:
                error_logger.error("ASGI app returned without completing the response")
                self._transport.stop_keep_alive()
        finally:
            if self._inbox is not _CLOSED_INBOX:  # most often closed with the response
                self._close_inbox()
            if self._body_timer is not None:
                self._body_timer.cancel()  # it would hold the exchange until it fires
                self._body_timer = None
            if self._access_log:
                flushed = self._cycle.flushed
                log_access(
                    self.scope,
                    self._cycle.status if flushed else self._error_status,
                    self._cycle.bytes_sent,
                    time.perf_counter() - started,
                    self._cycle.headers if flushed else (),
                    stream_id=self._stream_id,
                    log_format=self._access_log_format,
                )

    async def _fail(
        self, reason: str, answer: Callable[[int], tuple[StartResponse, SendData]] | None = None
    ) -> None:
        """Answer 500 (or ``answer``) if no byte went out yet, else give up on the connection."""
        self._transport.stop_keep_alive()
        if self._disconnected or self._cycle.flushed:
            return
        commands = (answer or internal_error)(self._stream_id)
        try:
            await self._transport.send_commands(*commands)
            self._error_status = commands[0].status_code
        except (ClientDisconnected, AppProtocolError):
            error_logger.debug(
                "could not send the %d response: %s", commands[0].status_code, reason
            )
