"""The vocabulary between the protocol layer and everything above it.

Inbound events (from the peer) are named in the past tense; outbound commands
(to the peer) are imperatives. One type never serves both directions. All are
frozen, slotted dataclasses so they can be matched on and never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AcceptWebSocket",
    "CloseWebSocket",
    "Command",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "Headers",
    "MessageReceived",
    "PongReceived",
    "RequestReceived",
    "RequestRejected",
    "SendData",
    "SendInformational",
    "SendMessage",
    "SendPing",
    "StartResponse",
    "StreamEnded",
    "WebSocketClosed",
    "WebSocketRequest",
]

Headers = tuple[tuple[bytes, bytes], ...]


# -- inbound ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class WebSocketRequest:
    """A valid WebSocket opening handshake, as the hosting protocol read it.

    ``extensions`` are the offered extensions, one header element each
    (``permessage-deflate; client_max_window_bits``). ``key`` is the
    ``Sec-WebSocket-Key`` of an HTTP/1.1 upgrade; HTTP/2 (RFC 8441) has none.
    """

    subprotocols: tuple[str, ...] = ()
    extensions: tuple[str, ...] = ()
    key: bytes | None = None


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A piece of a request body arrived."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The request body is complete; no more data will come for this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """The peer broke the protocol and earned ``status_code``.

    The protocol has already queued the error response where one could still
    be sent; the connection must be closed once that is written.
    """

    status_code: int
    reason: str


@dataclass(frozen=True, slots=True)
class MessageReceived:
    """A complete WebSocket message (fragments joined, text decoded)."""

    stream_id: int
    data: bytes | str


@dataclass(frozen=True, slots=True)
class PongReceived:
    """The peer answered a ping (or sent an unsolicited pong)."""

    stream_id: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class WebSocketClosed:
    """The WebSocket is over: the closing handshake finished or the peer broke RFC 6455.

    ``code`` is the peer's close code (1005 when its frame had none), or the
    code we closed with when the peer broke the protocol (1002, 1007, 1009).
    """

    stream_id: int
    code: int
    reason: str = ""


Event = (
    RequestReceived
    | DataReceived
    | StreamEnded
    | ConnectionClosed
    | RequestRejected
    | MessageReceived
    | PongReceived
    | WebSocketClosed
)


# -- outbound --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendInformational:
    """Send a 1xx interim response (100 Continue, 103 Early Hints)."""

    stream_id: int
    status_code: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class StartResponse:
    """Send the final response head."""

    stream_id: int
    status_code: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class SendData:
    """Send a piece of the response body; ``end_stream`` completes the response."""

    stream_id: int
    data: bytes
    end_stream: bool = False


@dataclass(frozen=True, slots=True)
class AcceptWebSocket:
    """Complete the WebSocket handshake (101, or 200 on HTTP/2)."""

    stream_id: int
    subprotocol: str | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class SendMessage:
    """Send one WebSocket message: ``str`` as text, ``bytes`` as binary."""

    stream_id: int
    data: bytes | str


@dataclass(frozen=True, slots=True)
class SendPing:
    stream_id: int
    payload: bytes = b""


@dataclass(frozen=True, slots=True)
class CloseWebSocket:
    """Start the closing handshake with ``code``; a no-op once closing."""

    stream_id: int
    code: int = 1000
    reason: str = ""


Command = (
    SendInformational
    | StartResponse
    | SendData
    | AcceptWebSocket
    | SendMessage
    | SendPing
    | CloseWebSocket
)
