"""The vocabulary between the protocol layer and everything above it.

Inbound events (from the peer) are named in the past tense; outbound commands
(to the peer) are imperatives. One type never serves both directions. All are
frozen, slotted dataclasses so they can be matched on and never mutated.

Frozen to the type checker, that is (see :func:`event`): mypy --strict
refuses any assignment to a field. At run time they are plain slotted
dataclasses, because a frozen dataclass sets each field through
``object.__setattr__``: a request's RequestReceived cost 1.5 us to make that
way, 0.4 us this way, and a request makes five or six of these.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar, dataclass_transform

_T = TypeVar("_T")


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def event(cls: type[_T]) -> type[_T]:
    """A frozen, slotted dataclass to the type checker; at run time, slotted only.

    Hashable as a frozen one is (``unsafe_hash``: hashed by its fields).
    """
    made: Callable[[type[_T]], type[_T]] = dataclass(slots=True, unsafe_hash=True)
    return made(cls)


__all__ = [
    "AcceptWebSocket",
    "CloseWebSocket",
    "Command",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "H2CUpgradeRequested",
    "HTTP2PrefaceReceived",
    "Headers",
    "MessageReceived",
    "PongReceived",
    "PushPromise",
    "RequestReceived",
    "RequestRejected",
    "SendData",
    "SendInformational",
    "SendMessage",
    "SendPing",
    "StartResponse",
    "SendTrailers",
    "StreamEnded",
    "StreamReset",
    "WebSocketClosed",
    "WebSocketRequest",
    "WindowOpened",
]

Headers = tuple[tuple[bytes, bytes], ...]


# -- inbound ---------------------------------------------------------------


@event
class WebSocketRequest:
    """A valid WebSocket opening handshake, as the hosting protocol read it.

    ``extensions`` are the offered extensions, one header element each
    (``permessage-deflate; client_max_window_bits``). ``key`` is the
    ``Sec-WebSocket-Key`` of an HTTP/1.1 upgrade; HTTP/2 (RFC 8441) has none.
    """

    subprotocols: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    key: bytes | None = None


@event
class RequestReceived:
    """A complete request head arrived. Header names are lower-cased.

    ``websocket`` is set when the request is a valid WebSocket handshake and
    WebSocket is enabled: the exchange is then a WebSocket, not a response.
    """

    stream_id: int
    method: bytes
    target: bytes
    http_version: str
    headers: Headers
    expects_continue: bool = False
    websocket: WebSocketRequest | None = None
    #: What the response to this request may carry besides a head and a body:
    #: trailers (HTTP/2, or chunked HTTP/1.1 to a client that sent
    #: ``TE: trailers``), server push (HTTP/2 with push enabled by the client)
    #: and 103 Early Hints (not to an HTTP/1.0 client, RFC 9110 15.2).
    can_send_trailers: bool = False
    can_push: bool = False
    can_send_early_hints: bool = False


@event
class DataReceived:
    """A piece of a request body arrived."""

    stream_id: int
    data: bytes


@event
class StreamEnded:
    """The request body is complete; no more data will come for this stream."""

    stream_id: int


@event
class ConnectionClosed:
    """The peer closed its side of the connection."""


@event
class RequestRejected:
    """The peer broke the protocol and earned ``status_code``.

    The protocol has already queued the error response where one could still
    be sent (never to a peer that does not speak HTTP/1.x at all); the
    connection must be closed once that is written.
    """

    status_code: int
    reason: str
    #: What the parser said, for the debug log only: it may quote the
    #: request, so it never reaches the client.
    detail: str = field(default="", compare=False)


@event
class MessageReceived:
    """A complete WebSocket message (fragments joined, text decoded)."""

    stream_id: int
    data: bytes | str


@event
class PongReceived:
    """The peer answered a ping (or sent an unsolicited pong)."""

    stream_id: int
    payload: bytes


@event
class WebSocketClosed:
    """The WebSocket is over: the closing handshake finished or the peer broke RFC 6455.

    ``code`` is the peer's close code (1005 when its frame had none), or the
    code we closed with when the peer broke the protocol (1002, 1007, 1009).
    """

    stream_id: int
    code: int
    reason: str = ""


@event
class H2CUpgradeRequested:
    """An HTTP/1.1 request asked to continue as HTTP/2 (``Upgrade: h2c``).

    Its body, if any, has been read in full, and the 101 is queued: the
    HTTP/1.1 protocol is done, and the request is served as HTTP/2 stream 1
    (RFC 7540 3.2). ``data`` is what the client sent after the request.
    """

    request: RequestReceived
    settings: bytes
    body: bytes = b""
    data: bytes = b""


@event
class HTTP2PrefaceReceived:
    """A cleartext connection opened with the HTTP/2 preface (prior knowledge, RFC 9113 3.3).

    The HTTP/1.1 protocol is done; ``data`` (the preface and what followed)
    is the HTTP/2 connection's first input.
    """

    data: bytes


@event
class StreamReset:
    """An HTTP/2 stream is gone before its exchange finished.

    The peer reset it, or we did because the peer broke the protocol on it;
    either way nothing more passes on it and its app sees a disconnect.
    """

    stream_id: int
    error_code: int = 0


@event
class WindowOpened:
    """The peer's flow-control window let out everything held for the stream."""

    stream_id: int


Event = (
    RequestReceived
    | DataReceived
    | StreamEnded
    | ConnectionClosed
    | RequestRejected
    | MessageReceived
    | PongReceived
    | WebSocketClosed
    | StreamReset
    | WindowOpened
    | H2CUpgradeRequested
    | HTTP2PrefaceReceived
)


# -- outbound --------------------------------------------------------------


@event
class SendInformational:
    """Send a 1xx interim response (100 Continue, 103 Early Hints)."""

    stream_id: int
    status_code: int
    headers: Headers = ()


@event
class StartResponse:
    """Send the final response head."""

    stream_id: int
    status_code: int
    headers: Headers


@event
class SendData:
    """Send a piece of the response body; ``end_stream`` completes the response."""

    stream_id: int
    data: bytes
    end_stream: bool = False


@event
class AcceptWebSocket:
    """Complete the WebSocket handshake (101, or 200 on HTTP/2)."""

    stream_id: int
    subprotocol: str | None = None
    headers: Headers = ()


@event
class SendMessage:
    """Send one WebSocket message: ``str`` as text, ``bytes`` as binary."""

    stream_id: int
    data: bytes | str


@event
class SendPing:
    stream_id: int
    payload: bytes = b""


@event
class CloseWebSocket:
    """Start the closing handshake with ``code``; a no-op once closing."""

    stream_id: int
    code: int = 1000
    reason: str = ""


@event
class SendTrailers:
    """End the response with a trailer section."""

    stream_id: int
    headers: Headers


@event
class PushPromise:
    """Promise a pushed GET of ``path`` (HTTP/2 server push, RFC 9113 8.4)."""

    stream_id: int
    path: bytes
    headers: Headers = ()


Command = (
    SendInformational
    | StartResponse
    | SendData
    | SendTrailers
    | PushPromise
    | AcceptWebSocket
    | SendMessage
    | SendPing
    | CloseWebSocket
)
