"""WebSocket (RFC 6455, RFC 7692) as a sans-IO state machine over wsproto.

Two halves, kept apart so that HTTP/1.1 (``Upgrade``) and HTTP/2 (extended
CONNECT, RFC 8441) share the second:

- the handshake: :func:`read_handshake` checks a request head and
  :func:`accept_handshake` builds the response headers and the negotiated
  extension. The hosting protocol sends the response (101 or 200).
- the frame layer: :class:`WebSocketProtocol`, bytes in -> events out,
  commands in -> bytes out, for one WebSocket.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from typing import Final, assert_never

from wsproto.connection import Connection, ConnectionState, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, Ping, Pong, TextMessage
from wsproto.extensions import Extension
from wsproto.frame_protocol import CloseReason, FrameDecoder, FrameProtocol, Opcode, RsvBits
from wsproto.utilities import generate_accept_token

from ..errors import ClientDisconnected, PeerProtocolError
from .events import (
    CloseWebSocket,
    ConnectionClosed,
    Event,
    Headers,
    MessageReceived,
    PongReceived,
    SendMessage,
    SendPing,
    WebSocketClosed,
    WebSocketRequest,
)
from .rules import header_tokens

__all__ = [
    "MessageGuard",
    "WebSocketProtocol",
    "accept_handshake",
    "is_websocket_upgrade",
    "read_connect_handshake",
    "read_handshake",
]

#: The only version of RFC 6455 there is (section 4.1).
VERSION: Final = b"13"
_DEFLATE: Final = "permessage-deflate"
_ZLIB_TAIL: Final = b"\x00\x00\xff\xff"


def is_websocket_upgrade(headers: Headers) -> bool:
    """Whether a request asks to switch to WebSocket (valid or not)."""
    return any(token.lower() == "websocket" for token in header_tokens(headers, b"upgrade"))


def read_handshake(method: bytes, http_version: str, headers: Headers) -> WebSocketRequest:
    """Check an HTTP/1.1 opening handshake (RFC 6455 4.2.1).

    Raises :class:`PeerProtocolError` with the status to answer: 426 for a
    version we do not speak (with ``Sec-WebSocket-Version: 13`` in the
    answer), 400 for anything else.
    """
    if method != b"GET":
        raise PeerProtocolError("a WebSocket handshake must be a GET request")
    if http_version != "1.1":
        raise PeerProtocolError("a WebSocket handshake needs HTTP/1.1")
    if not any(token.lower() == "upgrade" for token in header_tokens(headers, b"connection")):
        raise PeerProtocolError("a WebSocket handshake needs 'Connection: Upgrade'")
    keys = [value for name, value in headers if name == b"sec-websocket-key"]
    if len(keys) != 1:
        raise PeerProtocolError("a WebSocket handshake needs exactly one Sec-WebSocket-Key")
    try:
        nonce = base64.b64decode(keys[0].strip(), validate=True)
    except (binascii.Error, ValueError):
        nonce = b""
    if len(nonce) != 16:
        raise PeerProtocolError("Sec-WebSocket-Key is not 16 bytes in base64")
    versions = [value.strip() for name, value in headers if name == b"sec-websocket-version"]
    if not versions:
        raise PeerProtocolError("a WebSocket handshake needs Sec-WebSocket-Version")
    if versions != [VERSION]:
        raise PeerProtocolError(
            "unsupported Sec-WebSocket-Version; this server speaks 13", status_code=426
        )
    for name, value in headers:
        if (name == b"content-length" and value.strip() != b"0") or name == b"transfer-encoding":
            raise PeerProtocolError("a WebSocket handshake must not carry a body")
    return WebSocketRequest(
        subprotocols=tuple(header_tokens(headers, b"sec-websocket-protocol")),
        extensions=tuple(header_tokens(headers, b"sec-websocket-extensions")),
        key=keys[0].strip(),
    )


def read_connect_handshake(headers: Headers) -> WebSocketRequest:
    """Check an HTTP/2 extended CONNECT for WebSocket (RFC 8441 5).

    The pseudo-headers are the hosting protocol's to check; what is left is
    RFC 6455's version rule. There is no key: the stream itself proves the
    client meant it (RFC 8441 5: no ``Sec-WebSocket-Key``/``-Accept``).
    """
    versions = [value.strip() for name, value in headers if name == b"sec-websocket-version"]
    if versions != [VERSION]:
        raise PeerProtocolError(
            "unsupported or missing Sec-WebSocket-Version; this server speaks 13",
            status_code=426 if versions else 400,
        )
    return WebSocketRequest(
        subprotocols=tuple(header_tokens(headers, b"sec-websocket-protocol")),
        extensions=tuple(header_tokens(headers, b"sec-websocket-extensions")),
    )


def refusal_headers(error: PeerProtocolError) -> Headers:
    """Headers a handshake refusal must carry (RFC 6455 4.4)."""
    return ((b"sec-websocket-version", VERSION),) if error.status_code == 426 else ()


def accept_handshake(
    request: WebSocketRequest,
    subprotocol: str | None,
    *,
    per_message_deflate: bool,
    max_message_size: int,
) -> tuple[Headers, MessageGuard]:
    """The handshake response headers and the frame layer's extension.

    Headers of the hosting protocol (``Upgrade``/``Connection`` on HTTP/1.1)
    are the caller's to add.
    """
    headers: list[tuple[bytes, bytes]] = []
    if request.key is not None:
        headers.append((b"sec-websocket-accept", generate_accept_token(request.key)))
    if subprotocol is not None:
        headers.append((b"sec-websocket-protocol", subprotocol.encode("latin-1")))
    deflate: _DeflateParams | None = None
    if per_message_deflate:
        for offer in request.extensions:
            deflate = _DeflateParams.accept(offer)
            if deflate is not None:
                headers.append((b"sec-websocket-extensions", deflate.response().encode()))
                break
    return tuple(headers), MessageGuard(max_message_size, deflate)


class _DeflateParams:
    """One accepted permessage-deflate offer (RFC 7692 7.1)."""

    __slots__ = (
        "client_no_context_takeover",
        "offered_server_window",
        "server_no_context_takeover",
        "server_window",
    )

    def __init__(
        self,
        *,
        server_window: int | None,
        server_no_context_takeover: bool,
        client_no_context: bool,
    ) -> None:
        #: The client asked for a window limit, which the response must state.
        self.offered_server_window = server_window is not None
        self.server_window = server_window or 15
        self.server_no_context_takeover = server_no_context_takeover
        self.client_no_context_takeover = client_no_context

    @classmethod
    def accept(cls, offer: str) -> _DeflateParams | None:
        """Accept an offer, or None to decline it (unknown, repeated or bad parameters)."""
        name, *raw_params = (part.strip() for part in offer.split(";"))
        if name.lower() != _DEFLATE:
            return None
        seen: set[str] = set()
        server_window: int | None = None
        server_no_context = client_no_context = False
        for raw in raw_params:
            key, has_value, value = (part.strip() for part in raw.partition("="))
            key = key.lower()
            value = value.strip('"')
            if key in seen:
                return None
            seen.add(key)
            if key in ("server_no_context_takeover", "client_no_context_takeover"):
                if has_value:
                    return None
                if key == "server_no_context_takeover":
                    server_no_context = True
                else:
                    client_no_context = True
            elif key == "server_max_window_bits":
                if not (value.isdigit() and 8 <= int(value) <= 15):
                    return None
                server_window = int(value)
            elif key == "client_max_window_bits":
                # We inflate with the largest window, which reads any
                # smaller one, so the value only needs to be valid.
                if has_value and not (value.isdigit() and 8 <= int(value) <= 15):
                    return None
            else:
                return None
        return cls(
            server_window=server_window,
            server_no_context_takeover=server_no_context,
            client_no_context=client_no_context,
        )

    def response(self) -> str:
        parts = [_DEFLATE]
        if self.server_no_context_takeover:
            parts.append("server_no_context_takeover")
        if self.client_no_context_takeover:
            parts.append("client_no_context_takeover")
        if self.offered_server_window:
            # RFC 7692 7.1.2.1: an offered limit is answered with ours.
            parts.append(f"server_max_window_bits={self.server_window}")
        return "; ".join(parts)


class MessageGuard(Extension):
    """Bounds inbound message size and, when negotiated, runs permessage-deflate.

    wsproto calls an extension's hooks for every frame, so this is where a
    message is measured as it arrives: an uncompressed frame whose header
    announces too much fails at once, a compressed one as soon as its
    inflated size passes the limit (a deflate bomb never inflates). Either
    way the connection closes with 1009 before the message is held.
    """

    name = _DEFLATE

    def __init__(self, max_message_size: int, deflate: _DeflateParams | None) -> None:
        self._limit = max_message_size
        self._deflate = deflate
        self._size = 0
        self._data_frame = False
        self._inflating = False
        self._inflater: zlib._Decompress | None = None
        self._deflater: zlib._Compress | None = None
        #: Why this guard failed the connection: wsproto reports any
        #: extension's failure as "error in extension", which says nothing.
        self.failure: str | None = None

    @property
    def deflate(self) -> bool:
        return self._deflate is not None

    def enabled(self) -> bool:
        return True

    def offer(self) -> bool | str:
        return False  # server side only: never offers

    # -- inbound -------------------------------------------------------------

    def frame_inbound_header(
        self, proto: FrameDecoder | FrameProtocol, opcode: Opcode, rsv: RsvBits, payload_length: int
    ) -> CloseReason | RsvBits:
        self._data_frame = not opcode.iscontrol()
        if not self._data_frame:
            if rsv.rsv1 and self._deflate is not None:
                return self._fail(CloseReason.PROTOCOL_ERROR, "RSV1 set on a control frame")
            return RsvBits(False, False, False)
        if opcode is not Opcode.CONTINUATION:
            self._size = 0
            self._inflating = rsv.rsv1 and self._deflate is not None
        elif rsv.rsv1 and self._deflate is not None:
            # RFC 7692 6.1: RSV1 belongs on a message's first frame only.
            return self._fail(CloseReason.PROTOCOL_ERROR, "RSV1 set on a continuation frame")
        # wsproto calls this hook again when it re-reads a header that was
        # split across reads, so it only checks: the payload hook counts.
        if not self._inflating and self._size + payload_length > self._limit:
            return self._too_big()
        return RsvBits(self._deflate is not None, False, False)

    def frame_inbound_payload_data(
        self, proto: FrameDecoder | FrameProtocol, data: bytes
    ) -> bytes | CloseReason:
        if not self._data_frame:
            return data
        if self._inflating:
            return self._inflate(data)
        self._size += len(data)
        return data

    def frame_inbound_complete(
        self, proto: FrameDecoder | FrameProtocol, fin: bool
    ) -> bytes | CloseReason | None:
        if not (fin and self._data_frame and self._inflating):
            return None
        # RFC 7692 7.2.2: put back the empty block the sender took off.
        data = self._inflate(_ZLIB_TAIL)
        self._inflating = False
        assert self._deflate is not None
        assert self._inflater is not None
        # A message may end its deflate stream with a BFINAL block (RFC 7692
        # 7.2.3.4); the next message then starts a new stream.
        if self._deflate.client_no_context_takeover or self._inflater.eof:
            self._inflater = None
        return data

    def _inflate(self, data: bytes) -> bytes | CloseReason:
        if self._inflater is None:
            self._inflater = zlib.decompressobj(-15)
        budget = self._limit - self._size
        try:
            # Ask for one byte more than allowed: getting it means too big.
            out = self._inflater.decompress(data, budget + 1)
        except zlib.error:
            return self._fail(
                CloseReason.INVALID_FRAME_PAYLOAD_DATA, "compressed message does not inflate"
            )
        if len(out) > budget or self._inflater.unconsumed_tail:
            return self._too_big()
        self._size += len(out)
        return out

    def _too_big(self) -> CloseReason:
        return self._fail(CloseReason.MESSAGE_TOO_BIG, f"message larger than {self._limit} bytes")

    def _fail(self, code: CloseReason, why: str) -> CloseReason:
        self.failure = why
        return code

    # -- outbound ------------------------------------------------------------

    def frame_outbound(
        self,
        proto: FrameDecoder | FrameProtocol,
        opcode: Opcode,
        rsv: RsvBits,
        data: bytes,
        fin: bool,
    ) -> tuple[RsvBits, bytes]:
        deflate = self._deflate
        # zlib cannot deflate with a 256-byte window; a client that asked for
        # one gets uncompressed messages, which RFC 7692 allows any time.
        if deflate is None or opcode.iscontrol() or deflate.server_window < 9:
            return rsv, data
        if self._deflater is None:
            self._deflater = zlib.compressobj(
                zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -deflate.server_window
            )
        if opcode is not Opcode.CONTINUATION:
            rsv = RsvBits(True, rsv.rsv2, rsv.rsv3)
        data = self._deflater.compress(data)
        if fin:
            data += self._deflater.flush(zlib.Z_SYNC_FLUSH)
            data = data[: -len(_ZLIB_TAIL)] if data.endswith(_ZLIB_TAIL) else data
            if deflate.server_no_context_takeover:
                self._deflater = None
        return rsv, data


class WebSocketProtocol:
    """The frame layer of one WebSocket, after the handshake.

    Pings are answered here, a peer's close is answered here, and a peer that
    breaks RFC 6455 is closed here with the code the RFC prescribes; the
    layers above see messages, pongs and the end.
    """

    def __init__(self, stream_id: int, guard: MessageGuard) -> None:
        self._stream_id = stream_id
        self._guard = guard
        self._ws = Connection(ConnectionType.SERVER, [guard])
        self._out = bytearray()
        self._parts: list[bytes | str] = []
        self._closed = False

    @property
    def closed(self) -> bool:
        """Nothing more can pass: the closing handshake finished, failed or the transport went."""
        return self._closed

    @property
    def closing(self) -> bool:
        """We sent a close frame and wait for the peer's."""
        return not self._closed and self._ws.state is ConnectionState.LOCAL_CLOSING

    @property
    def open(self) -> bool:
        return not self._closed and self._ws.state is ConnectionState.OPEN

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the transport closed."""
        if self._closed:
            return []
        if not data:
            self._closed = True
            return [ConnectionClosed()]
        self._ws.receive_data(data)
        events: list[Event] = []
        for event in self._ws.events():
            match event:
                case TextMessage() | BytesMessage():
                    piece = event.data
                    self._parts.append(piece if isinstance(piece, str) else bytes(piece))
                    if event.message_finished:
                        data_parts, self._parts = self._parts, []
                        if self._ws.state is ConnectionState.OPEN:
                            events.append(MessageReceived(self._stream_id, _join(data_parts)))
                case Ping():
                    if self._ws.state is ConnectionState.OPEN:
                        self._out += self._ws.send(event.response())
                case Pong(payload=payload):
                    events.append(PongReceived(self._stream_id, bytes(payload)))
                case CloseConnection(code=code, reason=reason):
                    events.append(self._close_received(int(code), reason or ""))
                    return events
        return events

    def _close_received(self, code: int, reason: str) -> WebSocketClosed:
        self._closed = True
        self._parts = []
        state = self._ws.state
        if state is ConnectionState.REMOTE_CLOSING:
            # The peer started the closing handshake: echo its code (RFC 6455
            # 5.5.1). A close without a code reads as 1005, which must never
            # be sent (7.4.1), so it is answered without one; wsproto leaves
            # the code out only for its own enum member.
            answer = CloseReason.NO_STATUS_RCVD if code == CloseReason.NO_STATUS_RCVD else code
            self._out += self._ws.send(CloseConnection(answer))
        elif state is ConnectionState.OPEN:
            # A parse failure, not a close frame: fail the connection with
            # the code wsproto chose (1002, 1007 or 1009), and say why.
            reason = _failure_reason(code, reason, self._guard.failure)
            self._out += self._ws.send(CloseConnection(code, _short(reason)))
        # LOCAL_CLOSING -> CLOSED: the answer to our own close.
        return WebSocketClosed(self._stream_id, code, reason)

    def handle(self, command: SendMessage | SendPing | CloseWebSocket) -> None:
        """Turn a command into frames; a message after the close raises ClientDisconnected."""
        match command:
            case SendMessage(data=data):
                if not self.open:
                    raise ClientDisconnected("the WebSocket is closed")
                message = TextMessage(data) if isinstance(data, str) else BytesMessage(data)
                self._out += self._ws.send(message)
            case SendPing(payload=payload):
                if self.open:
                    self._out += self._ws.send(Ping(payload))
            case CloseWebSocket(code=code, reason=reason):
                if self.open:
                    self._out += self._ws.send(CloseConnection(code, reason or None))
            case _:
                assert_never(command)

    @property
    def output_size(self) -> int:
        """Bytes waiting for ``data_to_send``."""
        return len(self._out)

    def data_to_send(self) -> bytes:
        data = bytes(self._out)
        self._out.clear()
        return data


def _join(parts: list[bytes | str]) -> bytes | str:
    if len(parts) == 1:
        return parts[0]
    if isinstance(parts[0], str):
        return "".join(part for part in parts if isinstance(part, str))
    return b"".join(part for part in parts if isinstance(part, bytes))


def _failure_reason(code: int, reason: str, guard_failure: str | None) -> str:
    """The close reason for a peer's fault: the real cause, not a library's placeholder."""
    if guard_failure is not None:
        return guard_failure  # wsproto said only "error in extension"
    if code == CloseReason.INVALID_FRAME_PAYLOAD_DATA and "codec can't decode" in reason:
        # Python's decoder message: name the fault, not the codec.
        where = "close reason" if reason.startswith("Error decoding CLOSE") else "text message"
        return f"invalid UTF-8 in a {where}"
    return reason


def _short(reason: str) -> str:
    """A close reason that fits a control frame (123 bytes of UTF-8)."""
    encoded = reason.encode("utf-8")
    if len(encoded) <= 123:
        return reason
    return encoded[:123].decode("utf-8", "ignore")
