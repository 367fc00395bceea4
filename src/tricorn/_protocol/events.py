"""The vocabulary between the protocol layer and everything above it.

Inbound events (from the peer) are named in the past tense; outbound commands
(to the peer) are imperatives. One type never serves both directions. All are
frozen, slotted dataclasses so they can be matched on and never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass, field

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
    #: What the response to this request may carry besides a head and a body:
    #: trailers (HTTP/2, or chunked HTTP/1.1 to a client that sent
    #: ``TE: trailers``), server push (HTTP/2 with push enabled by the client)
    #: and 103 Early Hints (not to an HTTP/1.0 client, RFC 9110 15.2).
    can_send_trailers: bool = False
    can_push: bool = False
    can_send_early_hints: bool = False


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
    be sent (never to a peer that does not speak HTTP/1.x at all); the
    connection must be closed once that is written.
    """

    status_code: int
    reason: str
    #: What the parser said, for the debug log only: it may quote the
    #: request, so it never reaches the client.
    detail: str = field(default="", compare=False)


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


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class HTTP2PrefaceReceived:
    """A cleartext connection opened with the HTTP/2 preface (prior knowledge, RFC 9113 3.3).

    The HTTP/1.1 protocol is done; ``data`` (the preface and what followed)
    is the HTTP/2 connection's first input.
    """

    data: bytes


@dataclass(frozen=True, slots=True)
class StreamReset:
    """An HTTP/2 stream is gone before its exchange finished.

    The peer reset it, or we did because the peer broke the protocol on it;
    either way nothing more passes on it and its app sees a disconnect.
    """

    stream_id: int
    error_code: int = 0


@dataclass(frozen=True, slots=True)
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


@dataclass(frozen=True, slots=True)
class SendTrailers:
    """End the response with a trailer section."""

    stream_id: int
    headers: Headers


@dataclass(frozen=True, slots=True)
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
