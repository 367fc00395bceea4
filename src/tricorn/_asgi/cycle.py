"""The ASGI HTTP message cycle as a state table.

An app's ``send(message)`` either becomes protocol commands or raises
:class:`AppProtocolError` naming the state and the message. The table is the
whole rule set: a ``(state, message type)`` pair that is not in it is an error.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from typing import Any, Final

from .._protocol.events import Command, Headers, SendData, StartResponse
from ..errors import AppProtocolError

__all__ = ["HTTPCycle", "HTTPCycleState", "check_headers"]


class HTTPCycleState(enum.Enum):
    AWAITING_START = "awaiting http.response.start"
    #: The start is held back until the first body message (ASGI allows it),
    #: so an app that fails in between can still get a clean 500.
    START_HELD = "response started, no body sent yet"
    SENDING_BODY = "sending the response body"
    DONE = "response complete"


_S = HTTPCycleState
_TRANSITIONS: Final[dict[tuple[HTTPCycleState, str], HTTPCycleState]] = {
    (_S.AWAITING_START, "http.response.start"): _S.START_HELD,
    (_S.START_HELD, "http.response.body"): _S.SENDING_BODY,
    (_S.SENDING_BODY, "http.response.body"): _S.SENDING_BODY,
}


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
    if not isinstance(headers, Iterable) or isinstance(headers, (bytes, str)):
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
        if not isinstance(name, bytes) or not isinstance(value, bytes):
            raise AppProtocolError(
                f"header {pair!r} must be a pair of byte strings in {_describe(message)}"
            )
        result.append((name, value))
    return tuple(result)


class HTTPCycle:
    """One HTTP response, from ``http.response.start`` to the last body chunk."""

    __slots__ = ("_held", "bytes_sent", "state", "status", "stream_id")

    def __init__(self, stream_id: int) -> None:
        self.stream_id = stream_id
        self.state = HTTPCycleState.AWAITING_START
        self.status: int | None = None
        self.bytes_sent = 0
        self._held: StartResponse | None = None

    @property
    def started(self) -> bool:
        return self.state is not HTTPCycleState.AWAITING_START

    @property
    def flushed(self) -> bool:
        """Whether any byte of the response went to the protocol."""
        return self.state in (HTTPCycleState.SENDING_BODY, HTTPCycleState.DONE)

    @property
    def done(self) -> bool:
        return self.state is HTTPCycleState.DONE

    def commands_for(self, message: object) -> list[Command]:
        """The protocol commands for one app message, or AppProtocolError."""
        if not isinstance(message, Mapping) or not isinstance(message.get("type"), str):
            raise AppProtocolError(
                f"an ASGI message must be a dict with a str 'type', got {_describe(message)}"
            )
        kind: str = message["type"]
        next_state = _TRANSITIONS.get((self.state, kind))
        if next_state is None:
            raise AppProtocolError(
                f"unexpected ASGI message {kind!r} while {self.state.value}: {_describe(message)}"
            )
        commands: list[Command]
        if kind == "http.response.start":
            self._held = self._start(message)
            self.status = self._held.status_code
            commands = []
        else:
            body = message.get("body", b"")
            if not isinstance(body, (bytes, bytearray, memoryview)):
                raise AppProtocolError(f"'body' must be a byte string in {_describe(message)}")
            more_body = message.get("more_body", False)
            if not isinstance(more_body, bool):
                raise AppProtocolError(f"'more_body' must be a bool in {_describe(message)}")
            commands = []
            if self._held is not None:
                commands.append(self._held)
                self._held = None
            data = bytes(body)
            self.bytes_sent += len(data)
            commands.append(SendData(self.stream_id, data, end_stream=not more_body))
            if not more_body:
                next_state = HTTPCycleState.DONE
        self.state = next_state
        return commands

    def _start(self, message: Mapping[str, Any]) -> StartResponse:
        status = message.get("status")
        if not isinstance(status, int) or isinstance(status, bool) or not 200 <= status <= 599:
            raise AppProtocolError(
                f"'status' must be an int from 200 to 599 in {_describe(message)}"
            )
        if message.get("trailers", False):
            raise AppProtocolError(
                "'trailers' is set but the http.response.trailers extension is not "
                f"offered on this connection: {_describe(message)}"
            )
        headers = check_headers(message.get("headers", ()), message)
        return StartResponse(self.stream_id, status, headers)
