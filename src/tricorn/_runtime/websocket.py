"""One WebSocket and the app task serving it: handshake, messages, keepalive, close.

Like :class:`~tricorn._runtime.exchange.HTTPExchange` it talks to its
connection only through the :class:`~tricorn._runtime.exchange.Transport`
protocol, so an HTTP/1.1 upgrade and an HTTP/2 stream (RFC 8441) run the
same code.
"""

from __future__ import annotations

import contextlib
import math
import time
from typing import Final

import anyio
import anyio.abc

from .._asgi.cycle import WebSocketCycle, WebSocketCycleState
from .._asgi.types import ASGI3App, Message, WebSocketScope
from .._protocol import AcceptWebSocket, CloseWebSocket, SendMessage, SendPing
from ..config import Config
from ..errors import AppProtocolError, ClientDisconnected
from .exchange import Inbox, Transport, internal_error, only_disconnects
from .logging import error_logger, log_access

__all__ = ["WebSocketExchange"]

#: Messages held for an app that is not receiving before the reader stops
#: reading: a few small ones, or one of any size.
_INBOX_MESSAGES: Final = 16
_INBOX_BYTES: Final = 64 * 1024

#: RFC 6455 7.1.5: the code when the connection ended without a close frame.
ABNORMAL_CLOSURE: Final = 1006
_GOING_AWAY: Final = 1001
_INTERNAL_ERROR: Final = 1011
_PING_PAYLOAD: Final = b"tricorn keepalive"
#: How long a keepalive helper started while messages come and go waits
#: before it looks whether the app is back in ``receive()``: a busy WebSocket
#: starts about one helper a second, not one a message. After a quiet spell
#: the app's next wait in ``receive()`` sends the helper off at once.
_HANDOVER_BUSY: Final = 1.0

_CONNECTED = WebSocketCycleState.CONNECTED


def _message(data: bytes | str) -> Message:
    if isinstance(data, str):
        return {"type": "websocket.receive", "text": data}
    return {"type": "websocket.receive", "bytes": data}


class WebSocketExchange:
    """Runs ``app(scope, receive, send)`` for one WebSocket and keeps its books.

    The keepalive is a deadline (the next ping, or the pong a ping awaits)
    kept by whoever waits: the app's own task while it waits in
    ``receive()``, where an idle WebSocket spends its life, and a helper task
    only while the app may be elsewhere (its own work, a send held by
    backpressure, another event). An idle WebSocket so costs no task of its
    own; the pings, the timeout and the 1006 are the same either way.
    """

    __slots__ = (
        "_app",
        "_busy_until",
        "_config",
        "_connect_sent",
        "_cycle",
        "_eager",
        "_end",
        "_handover",
        "_helper",
        "_inbox",
        "_logged",
        "_nap",
        "_ping_due",
        "_pong_due",
        "_shutting_down",
        "_started",
        "_stream_id",
        "_tasks",
        "_transport",
        "_wait",
        "scope",
    )

    def __init__(
        self,
        app: ASGI3App,
        scope: WebSocketScope,
        transport: Transport,
        *,
        stream_id: int,
        config: Config,
    ) -> None:
        self.scope = scope
        self._app = app
        self._transport = transport
        self._stream_id = stream_id
        self._config = config
        self._cycle = WebSocketCycle(stream_id, scope["subprotocols"])
        self._inbox = Inbox(_INBOX_MESSAGES, _INBOX_BYTES)
        self._connect_sent = False
        #: (code, reason) for ``websocket.disconnect``, once the WebSocket is over.
        self._end: tuple[int, str] | None = None
        #: When the next keepalive ping is due (never until accepted).
        self._ping_due = math.inf
        #: While a ping awaits its pong: when the peer is given up on.
        self._pong_due: float | None = None
        #: A helper task keeps the keepalive's time (the app may be away).
        self._helper = False
        #: When the helper next looks whether the app waits in ``receive()``.
        self._handover = math.inf
        #: The app's next wait in ``receive()`` sends the helper off.
        self._eager = False
        #: Until when the WebSocket counts as busy (see _HANDOVER_BUSY).
        self._busy_until = -math.inf
        #: The scope of the app's wait in ``receive()``, while it waits there.
        self._wait: anyio.CancelScope | None = None
        #: The helper's sleep until its next look, while it sleeps.
        self._nap: anyio.CancelScope | None = None
        self._shutting_down = False
        self._tasks: anyio.abc.TaskGroup | None = None
        self._started = time.perf_counter()
        self._logged = False

    # -- the connection's side ---------------------------------------------

    def put_nowait(self, data: bytes | str) -> None:
        """Hand a message to the app. The connection never waits on it: once the
        app lags (not ``keeping_up``), the protocol stops letting more in until
        the app receives."""
        self._inbox.put_nowait(_message(data), len(data))

    @property
    def keeping_up(self) -> bool:
        """The app takes messages as fast as they come: the inbox has room."""
        return not self._inbox.full

    def closed(self, code: int, reason: str) -> None:
        """The closing handshake finished, or the peer broke the protocol and was closed."""
        self._finish(code, reason)

    def disconnect(self) -> None:
        """The transport is gone without a close frame."""
        self._finish(ABNORMAL_CLOSURE, "")

    def pong_received(self) -> None:
        if self._pong_due is not None:
            self._pong_due = None
            self._ping_due = due = anyio.current_time() + self._config.ws_ping_interval
            # The next ping may be due before the pong's time would have run out.
            # Whoever keeps the time (the helper, else the app's wait) wakes then.
            sleeper = self._nap if self._helper else self._wait
            if sleeper is not None and sleeper.deadline > due:
                sleeper.deadline = due

    async def shutdown(self) -> None:
        """The server is stopping: close with 1001 (now, or as soon as accepted)."""
        self._shutting_down = True
        if self._cycle.state is _CONNECTED:
            await self._server_close(_GOING_AWAY, "server shutting down")

    def _finish(self, code: int, reason: str) -> None:
        if self._end is None:
            self._end = (code, reason)
        self._inbox.close(keep=True)

    # -- the app's side ----------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        if self._ping_due == math.inf:
            return self._delivered(await self._inbox.get())  # no keepalive (yet)
        # The keepalive's time is kept here while the app waits (see the class).
        # One frame less than a helper coroutine, for every idle WebSocket.
        try:
            while not self._inbox.ready and self._end is None:
                deadline = math.inf if self._helper else self._keepalive_deadline()
                with anyio.CancelScope(deadline=deadline) as wait:
                    self._wait = wait
                    if self._helper and self._eager:
                        self._send_helper_off()
                    try:
                        return self._delivered(await self._inbox.get())
                    finally:
                        self._wait = None
                self._keepalive_due()  # only reached when the deadline passed
            return self._delivered(await self._inbox.get())
        finally:
            # The app goes back to its own business: someone must keep time.
            if not self._helper and self._end is None and self._tasks is not None:
                now = anyio.current_time()
                quiet = now >= self._busy_until
                self._busy_until = now + _HANDOVER_BUSY
                self._start_helper(eager=quiet)

    def _delivered(self, message: Message | None) -> Message:
        if message is not None:
            self._transport.consumed(len(message.get("bytes") or message.get("text") or ""))
            return message
        code, reason = self._end or (ABNORMAL_CLOSURE, "")
        return {"type": "websocket.disconnect", "code": code, "reason": reason}

    async def send(self, message: Message) -> None:
        commands = self._cycle.commands_for(message)
        if self._end is not None:
            if message["type"] == "websocket.close":
                return  # already closed: the app's wish is granted
            code, _ = self._end
            raise ClientDisconnected(
                f"cannot send {message['type']!r}: the WebSocket is closed (code {code})"
            )
        if not commands:
            return  # a denial response's start, held until its first body
        try:
            # An app working through messages that already wait for it need
            # not wait on the transport for each reply: the replies go out
            # together, with the last one's write. A reply while nothing
            # waits, or past the queue's limit, waits for the transport.
            if not (
                self._inbox.ready
                and isinstance(commands[0], SendMessage)
                and self._transport.queue_commands(*commands)
            ):
                await self._transport.send_commands(*commands)
        except ClientDisconnected:
            self._finish(ABNORMAL_CLOSURE, "")
            raise
        first = commands[0]
        if isinstance(first, AcceptWebSocket):
            self._log(101, 0)
            self._start_keepalive()
            if self._shutting_down:
                await self._server_close(_GOING_AWAY, "server shutting down")
        elif isinstance(first, CloseWebSocket):
            self._finish(first.code, first.reason)
        elif (response := self._cycle.response) is not None and response.done:
            self._log(response.status, response.bytes_sent)
            self._finish(ABNORMAL_CLOSURE, "")

    # -- keepalive ---------------------------------------------------------

    def _start_keepalive(self) -> None:
        if self._config.ws_ping_interval > 0 and self._tasks is not None:
            self._ping_due = anyio.current_time() + self._config.ws_ping_interval
            self._start_helper(eager=True)

    def _keepalive_deadline(self) -> float:
        if self._end is not None:
            return math.inf
        return self._ping_due if self._pong_due is None else self._pong_due

    def _keepalive_due(self) -> None:
        """The deadline passed while the app waits in ``receive()``: ping, or give up."""
        if self._end is not None:
            return
        now = anyio.current_time()
        if self._pong_due is not None:
            if now >= self._pong_due:
                self._ping_timed_out()
        elif now >= self._ping_due:
            self._pong_due = now + (self._config.ws_ping_timeout or math.inf)
            if not self._transport.queue_commands(SendPing(self._stream_id, _PING_PAYLOAD)):
                # Enough unwritten output is held already: the helper waits on
                # the transport with the ping, as the pong's time runs.
                self._pong_due = None
                self._start_helper(eager=False)

    def _start_helper(self, *, eager: bool) -> None:
        tasks = self._tasks
        if self._helper or tasks is None or tasks.cancel_scope.cancel_called:
            return
        self._helper = True
        self._eager = eager
        self._handover = math.inf if eager else anyio.current_time() + _HANDOVER_BUSY
        tasks.start_soon(self._keep_time)

    def _send_helper_off(self) -> None:
        """The app waits in ``receive()`` again: the helper hands the time over now."""
        self._eager = False
        self._handover = anyio.current_time()
        if self._nap is not None:
            self._nap.deadline = self._handover

    async def _keep_time(self) -> None:
        """Keep the keepalive's time while the app may be away from ``receive()``.

        Whenever it looks (at ``_handover``, and after each ping) and finds the
        app waiting in ``receive()``, the helper leaves the time to that wait
        and ends.
        """
        try:
            while self._end is None:
                now = anyio.current_time()
                if now >= self._keepalive_deadline():
                    if not await self._ping():
                        return
                    self._handover = now
                    continue
                if now >= self._handover:
                    if self._wait is not None:
                        return
                    self._handover = math.inf
                with anyio.CancelScope(
                    deadline=min(self._keepalive_deadline(), self._handover)
                ) as nap:
                    self._nap = nap
                    try:
                        await anyio.sleep_forever()
                    finally:
                        self._nap = None
        finally:
            self._helper = False
            if self._wait is not None:
                self._wait.deadline = self._keepalive_deadline()

    async def _ping(self) -> bool:
        """The deadline passed: ping and start the pong's time, or give up. False once over."""
        if self._pong_due is not None:
            self._ping_timed_out()
            return False
        self._pong_due = anyio.current_time() + (self._config.ws_ping_timeout or math.inf)
        with anyio.CancelScope(deadline=self._pong_due) as scope:
            try:
                await self._transport.send_commands(SendPing(self._stream_id, _PING_PAYLOAD))
            except ClientDisconnected:
                return False
        if scope.cancelled_caught and self._end is None:
            self._ping_timed_out()
            return False
        return True

    def _ping_timed_out(self) -> None:
        error_logger.info(
            "WebSocket %s: no pong within %gs; closing the connection",
            self.scope["path"],
            self._config.ws_ping_timeout,
        )
        self._finish(ABNORMAL_CLOSURE, "keepalive ping timeout")
        self._transport.abort()

    async def _server_close(self, code: int, reason: str) -> None:
        if self._end is not None:
            return
        self._finish(code, reason)
        with contextlib.suppress(ClientDisconnected):
            await self._transport.send_commands(CloseWebSocket(self._stream_id, code, reason))

    # -- the task ----------------------------------------------------------

    async def run(self) -> None:
        if self._config.ws_ping_interval <= 0:
            await self._run_app()  # no keepalive: no helper, so no task group
            return
        async with anyio.create_task_group() as tasks:
            self._tasks = tasks
            try:
                await self._run_app()
            finally:
                tasks.cancel_scope.cancel()

    async def _run_app(self) -> None:
        try:
            await self._app(self.scope, self.receive, self.send)
        except ClientDisconnected:
            error_logger.debug("client left WebSocket %s", self.scope["path"])
        except Exception as exc:
            if only_disconnects(exc):
                error_logger.debug("client left WebSocket %s", self.scope["path"])
            elif self._end is not None and not isinstance(exc, AppProtocolError):
                error_logger.info("ASGI app raised after its WebSocket closed: %r", exc)
                error_logger.debug("the exception", exc_info=exc)
            elif isinstance(exc, AppProtocolError):
                error_logger.error(
                    "ASGI app broke the WebSocket message cycle: %s", exc, exc_info=exc
                )
            else:
                error_logger.error("exception in ASGI WebSocket app", exc_info=exc)
            await self._fail()
        else:
            await self._returned()
        finally:
            self._inbox.close()

    async def _returned(self) -> None:
        state = self._cycle.state
        if state is WebSocketCycleState.HANDSHAKE and self._end is None:
            error_logger.error("ASGI app returned without accepting or closing the WebSocket")
            await self._fail()
        elif state is WebSocketCycleState.RESPONDING:
            error_logger.error("ASGI app returned without completing its denial response")
            self._transport.abort()
        elif state is _CONNECTED:
            # ASGI: when the app ends, the socket closes.
            await self._server_close(1000, "")

    async def _fail(self) -> None:
        """500 while the handshake is open, 1011 once accepted, else let go."""
        state = self._cycle.state
        response = self._cycle.response
        if state is _CONNECTED:
            await self._server_close(_INTERNAL_ERROR, "")
        elif self._end is not None:
            return  # closed, refused, or the client left
        elif response is not None and response.flushed:
            self._transport.abort()  # half a denial response is out
        else:
            await self._internal_error()

    async def _internal_error(self) -> None:
        self._transport.stop_keep_alive()
        try:
            commands = internal_error(self._stream_id)
            await self._transport.send_commands(*commands)
            self._log(500, len(commands[1].data))
        except (ClientDisconnected, AppProtocolError):
            error_logger.debug("could not send the 500 response to a WebSocket handshake")
        self._finish(ABNORMAL_CLOSURE, "")

    def _log(self, status: int | None, size: int) -> None:
        if self._logged or not self._config.access_log:
            return
        self._logged = True
        log_access(
            self.scope,
            status,
            size,
            time.perf_counter() - self._started,
            stream_id=self._stream_id,
            log_format=self._config.access_log_format,
        )
