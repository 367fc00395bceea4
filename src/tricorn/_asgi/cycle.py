"""The ASGI HTTP and WebSocket message cycles as state tables.

An app's ``send(message)`` either becomes protocol commands or raises
:class:`AppProtocolError` naming the state and the message. The table is the
whole rule set: a ``(state, message type)`` pair that is not in it is an error.
"""

from __future__ import annotations

import enum
import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import quote

from .._protocol.events import (
    AcceptWebSocket,
    CloseWebSocket,
    Command,
    Headers,
    PushPromise,
    SendData,
    SendInformational,
    SendMessage,
    SendTrailers,
    StartResponse,
)
from ..errors import AppProtocolError

__all__ = [
    "FILE_MESSAGES",
    "FileBody",
    "HTTPCycle",
    "HTTPCycleState",
    "WebSocketCycle",
    "WebSocketCycleState",
    "check_headers",
]


class HTTPCycleState(enum.Enum):
    # Members are singletons compared by identity: hash them so too, not
    # by Enum's __hash__ (Python code), as they key the transition tables.
    __hash__ = object.__hash__

    AWAITING_START = "awaiting http.response.start"
    #: The start is held back until the first body message (ASGI allows it),
    #: so an app that fails in between can still get a clean 500.
    START_HELD = "response started, no body sent yet"
    SENDING_BODY = "sending the response body"
    #: The app announced trailers (``trailers: True``) and sent its last body.
    AWAITING_TRAILERS = "awaiting http.response.trailers"
    DONE = "response complete"


_S = HTTPCycleState
_TRANSITIONS: Final[dict[tuple[HTTPCycleState, str], HTTPCycleState]] = {
    (_S.AWAITING_START, "http.response.start"): _S.START_HELD,
    (_S.START_HELD, "http.response.body"): _S.SENDING_BODY,
    (_S.SENDING_BODY, "http.response.body"): _S.SENDING_BODY,
    (_S.AWAITING_TRAILERS, "http.response.trailers"): _S.AWAITING_TRAILERS,
    # Extensions (ASGI extensions spec): early hints and pushes go out
    # between the start and the final body; an early hint before the start
    # is as useful, so it is taken there too.
    (_S.AWAITING_START, "http.response.early_hint"): _S.AWAITING_START,
    (_S.START_HELD, "http.response.early_hint"): _S.START_HELD,
    # Once a body chunk is out the final head is too, and a 1xx can no
    # longer precede it: a late early hint is dropped (see commands_for).
    (_S.SENDING_BODY, "http.response.early_hint"): _S.SENDING_BODY,
    (_S.START_HELD, "http.response.push"): _S.START_HELD,
    (_S.SENDING_BODY, "http.response.push"): _S.SENDING_BODY,
    # A file as the body (ASGI extensions spec): pathsend is the whole body,
    # once, never mixed with http.response.body; zerocopysend is a body
    # message like any other. Their last one ends the body as the last
    # http.response.body does (see file_sent).
    (_S.START_HELD, "http.response.pathsend"): _S.DONE,
    (_S.START_HELD, "http.response.zerocopysend"): _S.SENDING_BODY,
    (_S.SENDING_BODY, "http.response.zerocopysend"): _S.SENDING_BODY,
}

#: The extension a message needs offered before it may be sent.
_NEEDS_EXTENSION: Final = {
    "http.response.early_hint": "early_hints",
    "http.response.push": "push",
}

#: The messages whose body is a file: the runtime reads it (or has the
#: kernel send it), so they go through ``file_for`` / ``file_sent``.
FILE_MESSAGES: Final = frozenset({"http.response.pathsend", "http.response.zerocopysend"})


@dataclass(frozen=True, slots=True)
class FileBody:
    """A file the app hands over as (a piece of) the response body.

    ``path`` for pathsend (the runtime opens it), else ``fd``, the
    zerocopysend file's descriptor (the app's, which the runtime never
    closes). ``offset`` None means the file's current position, ``count``
    None up to its end.
    """

    path: str | None
    fd: int | None
    offset: int | None
    count: int | None
    more_body: bool


def _optional_size(message: Mapping[str, Any], key: str) -> int | None:
    value = message.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise AppProtocolError(f"{key!r} must be an int >= 0 in {_describe(message)}")
    return value


def _describe(message: object) -> str:
    """A short, log-safe rendering of a message: bodies are cut down."""
    if not isinstance(message, Mapping):
        return repr(message)[:200]
    shown = {
        key: (value[:32] + b"..." if isinstance(value, bytes) and len(value) > 32 else value)
        for key, value in message.items()
    }
    return repr(shown)[:400]


def check_headers(headers: object, message: Mapping[str, Any]) -> Headers:
    """Validate ASGI ``headers``: an iterable of ``[name, value]`` byte pairs."""
    if (type(headers) is not list and type(headers) is not tuple) and (
        not isinstance(headers, Iterable) or isinstance(headers, (bytes, str))
    ):
        raise AppProtocolError(
            f"'headers' must be an iterable of [name, value] pairs in {_describe(message)}"
        )
    result: list[tuple[bytes, bytes]] = []
    for pair in headers:
        try:
            name, value = pair
        except (TypeError, ValueError):
            raise AppProtocolError(
                f"header {pair!r} is not a [name, value] pair in {_describe(message)}"
            ) from None
        if (type(name) is not bytes and not isinstance(name, bytes)) or (
            type(value) is not bytes and not isinstance(value, bytes)
        ):
            raise AppProtocolError(
                f"header {pair!r} must be a pair of byte strings in {_describe(message)}"
            )
        result.append((name, value))
    return tuple(result)


class HTTPCycle:
    """One HTTP response, from ``http.response.start`` to the last body chunk.

    ``prefix`` serves the WebSocket denial response, whose messages are the
    HTTP ones with ``websocket.`` in front.
    """

    __slots__ = (
        "_early_hints",
        "_head_released",
        "_held",
        "_pathsend",
        "_prefix",
        "_push",
        "_trailers",
        "_trailers_announced",
        "_trailers_held",
        "_zerocopysend",
        "bytes_sent",
        "headers",
        "state",
        "status",
        "stream_id",
    )

    def __init__(
        self,
        stream_id: int,
        *,
        prefix: str = "",
        trailers: bool = False,
        push: bool = False,
        early_hints: bool = False,
        pathsend: bool = False,
        zerocopysend: bool = False,
    ) -> None:
        self.stream_id = stream_id
        self._pathsend = pathsend
        self._zerocopysend = zerocopysend
        self._prefix = prefix
        self._trailers = trailers
        self._push = push
        self._early_hints = early_hints
        self.state = HTTPCycleState.AWAITING_START
        self.status: int | None = None
        #: The response's headers, once the app started it (for the access log).
        self.headers: Headers = ()
        self.bytes_sent = 0
        self._held: StartResponse | None = None
        self._trailers_announced = False
        #: The trailers sent so far (made on the first: most responses have none).
        self._trailers_held: list[tuple[bytes, bytes]] | None = None
        self._head_released = False

    @property
    def started(self) -> bool:
        return self.state is not HTTPCycleState.AWAITING_START

    @property
    def flushed(self) -> bool:
        """Whether any byte of the response went to the protocol."""
        return self._head_released or self.state in (
            HTTPCycleState.SENDING_BODY,
            HTTPCycleState.DONE,
        )

    @property
    def head_held(self) -> bool:
        """The response has started and its head waits for the first body message."""
        return self._held is not None

    def release_head(self) -> StartResponse | None:
        """The held head, to go out now without a body (the app went on to wait)."""
        head, self._held = self._held, None
        if head is not None:
            self._head_released = True
        return head

    @property
    def done(self) -> bool:
        return self.state is HTTPCycleState.DONE

    def commands_for(self, message: object) -> list[Command]:
        """The protocol commands for one app message, or AppProtocolError."""
        if type(message) is dict and not self._prefix:
            # The two messages of nearly every response, where the state
            # allows them: straight to their commands.
            kind = message.get("type")
            state = self.state
            if kind == "http.response.body" and (
                state is HTTPCycleState.SENDING_BODY or state is HTTPCycleState.START_HELD
            ):
                return self._body_commands(message)
            if kind == "http.response.start" and state is HTTPCycleState.AWAITING_START:
                return self._start_commands(message)
        return self._commands_for(message)

    def _commands_for(self, message: object) -> list[Command]:
        if (type(message) is not dict and not isinstance(message, Mapping)) or not isinstance(
            message.get("type"), str
        ):
            raise AppProtocolError(
                f"an ASGI message must be a dict with a str 'type', got {_describe(message)}"
            )
        name: str = message["type"]
        kind = name
        if prefix := self._prefix:
            kind = name.removeprefix(prefix) if name.startswith(prefix) else ""
        next_state = _TRANSITIONS.get((self.state, kind))
        if next_state is None:
            raise AppProtocolError(
                f"unexpected ASGI message {name!r} while {self.state.value}: {_describe(message)}"
            )
        if kind in FILE_MESSAGES:
            # Only the runtime can read a file: it takes these (file_for).
            raise AppProtocolError(
                f"{name!r} cannot be sent on this exchange: {_describe(message)}"
            )
        extension = _NEEDS_EXTENSION.get(kind)
        if extension is not None:
            if not getattr(self, "_" + extension):
                raise AppProtocolError(
                    f"{name!r} needs the {kind} extension, which is not offered on this "
                    f"connection: {_describe(message)}"
                )
            if kind == "http.response.early_hint" and self.state is HTTPCycleState.SENDING_BODY:
                return []
            return self._extension_commands(kind, message)
        commands: list[Command]
        if kind == "http.response.trailers":
            commands = self._trailer_commands(message)
            if self.state is HTTPCycleState.DONE:
                return commands
        elif kind == "http.response.start":
            return self._start_commands(message)
        else:
            return self._body_commands(message)
        self.state = next_state
        return commands

    def _start_commands(self, message: Mapping[str, Any]) -> list[Command]:
        """``http.response.start``: its head is held for the first body message."""
        self._held = held = self._start(message)
        self.status = held.status_code
        self.headers = held.headers
        self.state = HTTPCycleState.START_HELD
        return []

    def _body_commands(self, message: Mapping[str, Any]) -> list[Command]:
        """``http.response.body``: its data, after the head if that was held."""
        body = message.get("body", b"")
        if type(body) is not bytes:
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise AppProtocolError(f"'body' must be a byte string in {_describe(message)}")
            body = bytes(body)
        more_body = message.get("more_body", False)
        if more_body is not False and more_body is not True:
            raise AppProtocolError(f"'more_body' must be a bool in {_describe(message)}")
        self.bytes_sent += len(body)
        if more_body:
            self.state = HTTPCycleState.SENDING_BODY
            ends = False
        elif self._trailers_announced:
            self.state = HTTPCycleState.AWAITING_TRAILERS
            ends = False
        else:
            self.state = HTTPCycleState.DONE
            ends = True
        data = SendData(self.stream_id, body, end_stream=ends)
        if (head := self._held) is not None:
            self._held = None
            return [head, data]
        return [data]

    def file_for(self, message: Mapping[str, Any]) -> FileBody:
        """Check a pathsend or zerocopysend message; the state moves only in :meth:`file_sent`.

        The runtime opens the file in between; if that fails, the response
        has not begun and the app's error can still become a 500.
        """
        name = message["type"]
        if not self._prefix and not getattr(self, "_" + name.rpartition(".")[2]):
            raise AppProtocolError(
                f"{name!r} needs its extension, which is not offered on this connection: "
                f"{_describe(message)}"
            )
        if self._prefix or (self.state, name) not in _TRANSITIONS:
            raise AppProtocolError(
                f"unexpected ASGI message {name!r} while {self.state.value}: {_describe(message)}"
            )
        if name == "http.response.pathsend":
            path = message.get("path")
            if not isinstance(path, str) or not os.path.isabs(path):
                raise AppProtocolError(
                    f"'path' must be an absolute path (a str) in {_describe(message)}"
                )
            return FileBody(path, None, 0, None, more_body=False)
        file = message.get("file")
        fileno = getattr(file, "fileno", None)
        try:
            fd = fileno() if callable(fileno) else file
        except (OSError, ValueError) as exc:  # io.UnsupportedOperation is both
            raise AppProtocolError(
                f"'file' has no file descriptor ({exc}) in {_describe(message)}"
            ) from None
        if not isinstance(fd, int) or isinstance(fd, bool) or fd < 0:
            raise AppProtocolError(
                f"'file' must be a file object with a fileno() in {_describe(message)}"
            )
        more_body = message.get("more_body", False)
        if not isinstance(more_body, bool):
            raise AppProtocolError(f"'more_body' must be a bool in {_describe(message)}")
        return FileBody(
            None,
            fd,
            _optional_size(message, "offset"),
            _optional_size(message, "count"),
            more_body=more_body,
        )

    def file_sent(self, body: FileBody, size: int) -> tuple[list[Command], bool]:
        """The file's ``size`` bytes go out now.

        Returns the commands that go before them (the held head) and whether
        they end the stream.
        """
        commands: list[Command] = []
        if self._held is not None:
            commands.append(self._held)
            self._held = None
        self.bytes_sent += size
        if body.more_body:
            self.state = HTTPCycleState.SENDING_BODY
            return commands, False
        if self._trailers_announced:
            self.state = HTTPCycleState.AWAITING_TRAILERS
            return commands, False
        self.state = HTTPCycleState.DONE
        return commands, True

    def _extension_commands(self, kind: str, message: Mapping[str, Any]) -> list[Command]:
        if kind == "http.response.early_hint":
            links = message.get("links", ())
            if not isinstance(links, Iterable) or isinstance(links, (bytes, str)):
                raise AppProtocolError(
                    f"'links' must be a list of byte strings in {_describe(message)}"
                )
            links_headers: list[tuple[bytes, bytes]] = []
            for link in links:
                if not isinstance(link, bytes):
                    raise AppProtocolError(
                        f"link {link!r} must be a byte string in {_describe(message)}"
                    )
                links_headers.append((b"link", link))
            if not links_headers:
                return []
            return [SendInformational(self.stream_id, 103, tuple(links_headers))]
        path = message.get("path")
        if not isinstance(path, str) or not path.startswith("/"):
            raise AppProtocolError(
                f"'path' must be a str starting with '/' in {_describe(message)}"
            )
        headers = check_headers(message.get("headers", ()), message)
        return [
            PushPromise(self.stream_id, quote(path, safe="/%?=&;:@!$'()*+,~-._").encode(), headers)
        ]

    def _trailer_commands(self, message: Mapping[str, Any]) -> list[Command]:
        if self._trailers_held is None:
            self._trailers_held = []
        self._trailers_held.extend(check_headers(message.get("headers", ()), message))
        more = message.get("more_trailers", False)
        if not isinstance(more, bool):
            raise AppProtocolError(f"'more_trailers' must be a bool in {_describe(message)}")
        if more:
            return []
        self.state = HTTPCycleState.DONE
        return [SendTrailers(self.stream_id, tuple(self._trailers_held))]

    def _start(self, message: Mapping[str, Any]) -> StartResponse:
        status = message.get("status")
        if (
            type(status) is not int and (not isinstance(status, int) or isinstance(status, bool))
        ) or not 200 <= status <= 599:
            raise AppProtocolError(
                f"'status' must be an int from 200 to 599 in {_describe(message)}"
            )
        trailers = message.get("trailers", False)
        if trailers is not False:
            if trailers is not True:
                raise AppProtocolError(f"'trailers' must be a bool in {_describe(message)}")
            if not self._trailers:
                raise AppProtocolError(
                    "'trailers' is set but the http.response.trailers extension is not "
                    f"offered on this connection: {_describe(message)}"
                )
            self._trailers_announced = True
        headers = check_headers(message.get("headers", ()), message)
        return StartResponse(self.stream_id, status, headers)


class WebSocketCycleState(enum.Enum):
    # Members are singletons compared by identity: hash them so too, not
    # by Enum's __hash__ (Python code), as they key the transition tables.
    __hash__ = object.__hash__

    HANDSHAKE = "awaiting websocket.accept, websocket.close or websocket.http.response.start"
    #: The app answers the handshake with its own HTTP response (denial).
    RESPONDING = "sending a websocket.http.response"
    CONNECTED = "connected"
    CLOSED = "closed"


_W = WebSocketCycleState

#: RFC 6455 7.4: the codes an endpoint may send. 1004-1006 and 1015 are
#: reserved; 1016-2999 belong to future RFCs; 3000-4999 to apps and registries.
_SENDABLE_CLOSE_CODES: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
) | frozenset(range(3000, 5000))

#: Handshake headers only the server may set; the app names its subprotocol
#: with the ``subprotocol`` key (ASGI WebSocket spec, Accept).
_RESERVED_ACCEPT_HEADERS: Final = frozenset(
    {
        b"sec-websocket-protocol",
        b"sec-websocket-accept",
        b"sec-websocket-extensions",
        b"upgrade",
        b"connection",
    }
)


_FORBIDDEN: Final = ((b"content-length", b"0"),)
_EMPTY_BODY: Final = {"type": "http.response.body"}


def _truncate_reason(reason: str) -> str:
    """A close reason fits in a control frame: 123 bytes of UTF-8."""
    encoded = reason.encode("utf-8")
    return reason if len(encoded) <= 123 else encoded[:123].decode("utf-8", "ignore")


class WebSocketCycle:
    """One WebSocket, from the handshake to the close, as the app drives it."""

    __slots__ = ("_offered", "close_code", "response", "state", "stream_id")

    def __init__(self, stream_id: int, subprotocols: Iterable[str] = ()) -> None:
        self.stream_id = stream_id
        self._offered = tuple(subprotocols)
        self.state = WebSocketCycleState.HANDSHAKE
        #: The denial response, once the app starts one.
        self.response: HTTPCycle | None = None
        #: The code the app closed with.
        self.close_code: int | None = None

    @property
    def accepted(self) -> bool:
        return self.close_code is not None or self.state is WebSocketCycleState.CONNECTED

    def commands_for(self, message: object) -> list[Command]:
        """The protocol commands for one app message, or AppProtocolError."""
        if (type(message) is not dict and not isinstance(message, Mapping)) or not isinstance(
            message.get("type"), str
        ):
            raise AppProtocolError(
                f"an ASGI message must be a dict with a str 'type', got {_describe(message)}"
            )
        kind: str = message["type"]
        handler = _WS_TRANSITIONS.get((self.state, kind))
        if handler is None:
            raise AppProtocolError(
                f"unexpected ASGI message {kind!r} while {self.state.value}: {_describe(message)}"
            )
        return handler(self, message)

    def _accept(self, message: Mapping[str, Any]) -> list[Command]:
        command = self._accept_command(message)
        self.state = _W.CONNECTED
        return [command]

    def _refuse(self, message: Mapping[str, Any]) -> list[Command]:
        # ASGI: closing before accepting refuses the handshake with 403.
        self.state = _W.CLOSED
        self.response = HTTPCycle(self.stream_id)
        start = {"type": "http.response.start", "status": 403, "headers": _FORBIDDEN}
        return self.response.commands_for(start) + self.response.commands_for(_EMPTY_BODY)

    def _respond(self, message: Mapping[str, Any]) -> list[Command]:
        if self.response is None:
            self.response = HTTPCycle(self.stream_id, prefix="websocket.")
        self.state = _W.RESPONDING
        commands = self.response.commands_for(message)
        if self.response.done:
            self.state = _W.CLOSED
        return commands

    def _send(self, message: Mapping[str, Any]) -> list[Command]:
        return [SendMessage(self.stream_id, self._payload(message))]

    def _close(self, message: Mapping[str, Any]) -> list[Command]:
        code = message.get("code", 1000)
        if code is None:
            code = 1000
        if not isinstance(code, int) or isinstance(code, bool):
            raise AppProtocolError(f"'code' must be an int in {_describe(message)}")
        if code not in _SENDABLE_CLOSE_CODES:
            raise AppProtocolError(
                f"close code {code} may not be sent (RFC 6455 7.4: use 1000-1003, "
                f"1007-1014 or 3000-4999) in {_describe(message)}"
            )
        reason = message.get("reason") or ""
        if not isinstance(reason, str):
            raise AppProtocolError(f"'reason' must be a str in {_describe(message)}")
        # Only a valid close ends the cycle: after a refused one the app
        # still holds an open WebSocket, which the runtime closes with 1011.
        self.state = _W.CLOSED
        self.close_code = code
        return [CloseWebSocket(self.stream_id, code, _truncate_reason(reason))]

    def _accept_command(self, message: Mapping[str, Any]) -> AcceptWebSocket:
        subprotocol = message.get("subprotocol")
        if subprotocol is not None:
            if not isinstance(subprotocol, str):
                raise AppProtocolError(
                    f"'subprotocol' must be a str or None in {_describe(message)}"
                )
            if subprotocol not in self._offered:
                raise AppProtocolError(
                    f"subprotocol {subprotocol!r} was not offered by the client "
                    f"(offered: {list(self._offered)}) in {_describe(message)}"
                )
        headers = check_headers(message.get("headers") or (), message)
        for name, _ in headers:
            if name.lower() in _RESERVED_ACCEPT_HEADERS or name.startswith(b":"):
                raise AppProtocolError(
                    f"header {name!r} is the server's to set in {_describe(message)}"
                    + (
                        " (use the 'subprotocol' key)"
                        if name.lower() == b"sec-websocket-protocol"
                        else ""
                    )
                )
        return AcceptWebSocket(self.stream_id, subprotocol, headers)

    @staticmethod
    def _payload(message: Mapping[str, Any]) -> bytes | str:
        data = message.get("bytes")
        text = message.get("text")
        if (data is None) == (text is None):
            raise AppProtocolError(
                f"exactly one of 'bytes' and 'text' must be set in {_describe(message)}"
            )
        if text is not None:
            if not isinstance(text, str):
                raise AppProtocolError(f"'text' must be a str in {_describe(message)}")
            return text
        if not isinstance(data, (bytes, bytearray, memoryview)):
            raise AppProtocolError(f"'bytes' must be a byte string in {_describe(message)}")
        return bytes(data)


_WebSocketHandler = Callable[[WebSocketCycle, Mapping[str, Any]], list[Command]]

#: The WebSocket cycle (ASGI WebSocket spec): what each message does in each
#: state. A pair that is not here is an error naming the state and the message.
_WS_TRANSITIONS: Final[dict[tuple[WebSocketCycleState, str], _WebSocketHandler]] = {
    (_W.HANDSHAKE, "websocket.accept"): WebSocketCycle._accept,
    (_W.HANDSHAKE, "websocket.close"): WebSocketCycle._refuse,
    (_W.HANDSHAKE, "websocket.http.response.start"): WebSocketCycle._respond,
    (_W.RESPONDING, "websocket.http.response.body"): WebSocketCycle._respond,
    (_W.CONNECTED, "websocket.send"): WebSocketCycle._send,
    (_W.CONNECTED, "websocket.close"): WebSocketCycle._close,
}
