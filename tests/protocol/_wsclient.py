"""Drive an upgraded ``HTTP1Protocol`` with wsproto's own client side.

The handshake request comes from wsproto's client (or from h11's, when a
test needs a header wsproto would never write); frames come from wsproto's
``FrameProtocol(client=True)``, so they are masked as a browser masks them.
Only violations a real client refuses to produce are built by hand
(:func:`raw_frame`).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence
from typing import Any

import h11
from wsproto import ConnectionType, WSConnection
from wsproto.events import AcceptConnection, Request
from wsproto.events import Event as WSEvent
from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import Frame, FrameProtocol

from tricorn._protocol.events import (
    AcceptWebSocket,
    Event,
    Headers,
    RequestReceived,
    StreamEnded,
)
from tricorn._protocol.http1 import HTTP1Protocol

from ._client import make_server, request_bytes

#: RFC 6455 1.3's example nonce and the accept token it yields.
SAMPLE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
SAMPLE_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

HOST = (b"host", b"example.com")


def handshake_headers(
    *extra: tuple[bytes, bytes],
    key: bytes | None = SAMPLE_KEY,
    version: bytes | None = b"13",
    connection: bytes = b"Upgrade",
) -> list[tuple[bytes, bytes]]:
    """The headers of an opening handshake; ``None`` leaves a header out."""
    headers = [HOST, (b"upgrade", b"websocket"), (b"connection", connection)]
    if key is not None:
        headers.append((b"sec-websocket-key", key))
    if version is not None:
        headers.append((b"sec-websocket-version", version))
    headers.extend(extra)
    return headers


def handshake(
    *extra: tuple[bytes, bytes],
    method: str = "GET",
    target: str = "/chat",
    **options: Any,
) -> bytes:
    """An opening handshake written by h11's client (any header we like)."""
    return request_bytes(
        h11.Request(method=method, target=target, headers=handshake_headers(*extra, **options)),
        h11.EndOfMessage(),
    )


def parse_response(raw: bytes) -> h11.Response | h11.InformationalResponse:
    """The response head in ``raw``, read by an h11 client that proposed the upgrade."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=handshake_headers()))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    event = client.next_event()
    assert isinstance(event, (h11.Response, h11.InformationalResponse)), event
    return event


def read_body(raw: bytes) -> tuple[h11.Response, bytes]:
    """A complete (non-101) response to a handshake: its head and its body."""
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target="/", headers=handshake_headers()))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    client.receive_data(b"")
    head = client.next_event()
    assert isinstance(head, h11.Response), head
    body = bytearray()
    while not isinstance(event := client.next_event(), (h11.EndOfMessage, type)):
        assert isinstance(event, h11.Data), event
        body += event.data
    return head, bytes(body)


def header_values(response: h11.Response | h11.InformationalResponse, name: bytes) -> list[bytes]:
    return [value for key, value in response.headers if key == name]


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
) -> bytes:
    """One frame built by hand. ``rsv`` is the 3 RSV bits (0b100 is RSV1).

    ``length`` overrides the announced payload length (the payload is still
    appended as given), for frames whose header is what a test is about.
    """
    first = (0x80 if fin else 0) | (rsv << 4) | opcode
    size = len(payload) if length is None else length
    mask_bit = 0x80 if masked else 0
    if size <= 125:
        head = bytes([first, mask_bit | size])
    elif size <= 0xFFFF:
        head = bytes([first, mask_bit | 126]) + struct.pack("!H", size)
    else:
        head = bytes([first, mask_bit | 127]) + struct.pack("!Q", size)
    if not masked:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(byte ^ key[i % 4] for i, byte in enumerate(payload))


def close_payload(code: int, reason: bytes = b"") -> bytes:
    return struct.pack("!H", code) + reason


def server_frames(data: bytes, extensions: Sequence[Extension] = ()) -> list[Frame]:
    """Every frame in the server's output, parsed by a client frame decoder."""
    proto = FrameProtocol(client=True, extensions=list(extensions))
    proto.receive_bytes(data)
    return list(proto.received_frames())


def first_frame_rsv1(data: bytes) -> bool:
    """Whether the first frame in ``data`` has RSV1 (compressed) set."""
    return bool(data[0] & 0x40)


def split_frames(data: bytes) -> list[bytes]:
    """Cut unmasked server output into its frames, header included."""
    frames = []
    while data:
        size = data[1] & 0x7F
        offset = 2
        if size == 126:
            (size,) = struct.unpack("!H", data[2:4])
            offset = 4
        elif size == 127:
            (size,) = struct.unpack("!Q", data[2:10])
            offset = 10
        frames.append(data[: offset + size])
        data = data[offset + size :]
    return frames


def deflate_offer(*extensions: bytes) -> tuple[bytes, bytes]:
    return (b"sec-websocket-extensions", b", ".join(extensions))


class WebSocketConversation:
    """One server protocol and one wsproto client, across the upgrade.

    The constructor sends the handshake; :meth:`accept` lets the server
    answer it and hands the 101 to the client, after which both sides speak
    frames. ``extensions`` are the client's (wsproto ``PerMessageDeflate``
    offers and, once accepted, encodes and decodes).
    """

    def __init__(
        self,
        *,
        extensions: Iterable[Extension] = (),
        subprotocols: Iterable[str] = (),
        target: str = "/chat",
        trailing: bytes = b"",
        **config: Any,
    ) -> None:
        self.server: HTTP1Protocol = make_server(**config)
        self.client = WSConnection(ConnectionType.CLIENT)
        request = self.client.send(
            Request(
                host="example.com",
                target=target,
                extensions=list(extensions),
                subprotocols=list(subprotocols),
            )
        )
        self.request_events = self.server.receive_data(request + trailing)
        received = [e for e in self.request_events if isinstance(e, RequestReceived)]
        assert len(received) == 1, self.request_events
        self.request = received[0]

    def accept(self, subprotocol: str | None = None, headers: Headers = ()) -> AcceptConnection:
        self.server.handle(AcceptWebSocket(1, subprotocol, headers))
        self.client.receive_data(self.server.data_to_send())
        events = list(self.client.events())
        assert len(events) == 1, events
        assert isinstance(events[0], AcceptConnection), events
        return events[0]

    def send(self, *events: WSEvent) -> list[Event]:
        """The client sends ``events``; returns what the server made of them."""
        return self.server.receive_data(b"".join(self.client.send(event) for event in events))

    def send_raw(self, data: bytes) -> list[Event]:
        return self.server.receive_data(data)

    def read(self) -> list[WSEvent]:
        """What the client parses from the server's pending output."""
        self.client.receive_data(self.server.data_to_send())
        return list(self.client.events())


def accepted(**options: Any) -> WebSocketConversation:
    """A conversation past the handshake."""
    conversation = WebSocketConversation(**options)
    conversation.accept()
    return conversation


def deflate_client(**params: Any) -> PerMessageDeflate:
    return PerMessageDeflate(**params)


def without_stream_ended(events: Iterable[Event]) -> list[Event]:
    """The handshake request's events minus its (empty) body's end."""
    return [event for event in events if not isinstance(event, StreamEnded)]
