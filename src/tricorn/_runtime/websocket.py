"""One WebSocket and the app task serving it: handshake, messages, keepalive, close.

Like :class:`~tricorn._runtime.exchange.HTTPExchange` it talks to its
connection only through the :class:`~tricorn._runtime.exchange.Transport`
protocol, so an HTTP/1.1 upgrade and an HTTP/2 stream (RFC 8441) run the
same code.
"""

from __future__ import annotations

import contextlib
import time
from typing import Final

from .._asgi.cycle import WebSocketCycle, WebSocketCycleState
from .._asgi.types import ASGI3App, Message, WebSocketScope
from .._protocol import AcceptWebSocket, CloseWebSocket, SendMessage, SendPing
from ..config import Config
from ..errors import AppProtocolError, ClientDisconnected
from .asyncio_apps import log_needs_asyncio
from .exchange import Inbox, Transport, internal_error, only_disconnects
from .logging import error_logger, log_access
from .transport import Timer, call_later

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

_CONNECTED = WebSocketCycleState.CONNECTED


def _message(data: bytes | str) -> Message:
    if isinstance(data, str):
        return {"type": "websocket.receive", "text": data}
    return {"type": "websocket.receive", "bytes": data}


class WebSocketExchange:
    """Runs ``app(scope, receive, send)`` for one WebSocket and keeps its books."""

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
        #: The keepalive's next deadline: the next ping, or the pong's.
        self._timer: Timer | None = None
        self._awaiting_pong = False
        self._shutting_down = False
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
        if self._awaiting_pong:
            self._awaiting_pong = False
            self._stop_keepalive()
            self._start_keepalive()

    async def shutdown(self) -> None:
        """The server is stopping: close with 1001 (now, or as soon as accepted)."""
        self._shutting_down = True
        if self._cycle.state is _CONNECTED:
            await self._server_close(_GOING_AWAY, "server shutting down")

    def _finish(self, code: int, reason: str) -> None:
        if self._end is None:
            self._end = (code, reason)
        self._inbox.close(keep=True)
        self._stop_keepalive()

    # -- the app's side ----------------------------------------------------

    async def receive(self) -> Message:
        if not self._connect_sent:
            self._connect_sent = True
            return {"type": "websocket.connect"}
        message = await self._inbox.get()
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
            # 101 Switching Protocols on HTTP/1.1; extended CONNECT (RFC 8441,
            # RFC 9220) accepts with a 200.
            self._log(101 if self.scope["http_version"] == "1.1" else 200, 0)
            self._start_keepalive()
            if self._shutting_down:
                await self._server_close(_GOING_AWAY, "server shutting down")
        elif isinstance(first, CloseWebSocket):
            self._finish(first.code, first.reason)
        elif (response := self._cycle.response) is not None and response.done:
            self._log(response.status, response.bytes_sent)
            self._finish(ABNORMAL_CLOSURE, "")

    # -- keepalive ---------------------------------------------------------
    #
    # Timers, not a task: every ws_ping_interval a ping goes out (written
    # when the current task yields, like a held head), and a pong must come
    # within ws_ping_timeout. An idle WebSocket keeps two small timer handles
    # instead of a sleeping task with its task group and cancel scopes.

    def _start_keepalive(self) -> None:
        if self._config.ws_ping_interval > 0 and self._end is None:
            self._timer = call_later(self._config.ws_ping_interval, self._ping)

    def _ping(self) -> None:
        if self._end is not None:
            return
        self._awaiting_pong = True
        self._transport.soon(lambda: (SendPing(self._stream_id, _PING_PAYLOAD),))
        if self._config.ws_ping_timeout:
            self._timer = call_later(self._config.ws_ping_timeout, self._no_pong)

    def _no_pong(self) -> None:
        if self._end is not None or not self._awaiting_pong:
            return
        error_logger.info(
            "WebSocket %s: no pong within %gs; closing the connection",
            self.scope["path"],
            self._config.ws_ping_timeout,
        )
        self._finish(ABNORMAL_CLOSURE, "keepalive ping timeout")
        self._transport.abort()

    def _stop_keepalive(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    async def _server_close(self, code: int, reason: str) -> None:
        if self._end is not None:
            return
        self._finish(code, reason)
        with contextlib.suppress(ClientDisconnected):
            await self._transport.send_commands(CloseWebSocket(self._stream_id, code, reason))

    # -- the task ----------------------------------------------------------

    async def run(self) -> None:
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
            elif not log_needs_asyncio(self.scope, exc):
                error_logger.error("exception in ASGI WebSocket app", exc_info=exc)
            await self._fail()
        else:
            await self._returned()
        finally:
            self._inbox.close()
            self._stop_keepalive()

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
