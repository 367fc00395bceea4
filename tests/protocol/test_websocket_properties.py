"""Properties of the WebSocket frame layer, over HTTP1Protocol after the upgrade.

- However a message is fragmented, with control frames in between, and
  however the byte stream is cut into reads, it arrives as one identical
  message and every ping is answered.
- Any bytes from the peer produce events, never an exception; once the
  WebSocket is closed, further bytes produce nothing.
- permessage-deflate round-trips any payloads in both directions.
"""

from __future__ import annotations

import itertools
import zlib
from typing import Any

from hypothesis import event, given, settings
from hypothesis import strategies as st
from wsproto.events import BytesMessage, TextMessage
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol, Opcode

from tricorn._protocol.events import (
    AcceptWebSocket,
    ConnectionClosed,
    Event,
    MessageReceived,
    PongReceived,
    RequestReceived,
    SendMessage,
    WebSocketClosed,
)
from tricorn._protocol.http1 import HTTP1Protocol

from ._client import make_server
from ._wsclient import WebSocketConversation, deflate_offer, handshake, raw_frame

SETTINGS = settings(max_examples=60, deadline=None)

payloads = st.one_of(st.text(max_size=200), st.binary(max_size=200))
ping_payloads = st.binary(max_size=125)


def upgraded_server(*, deflate: bool = False, **config: Any) -> HTTP1Protocol:
    server = make_server(**config)
    offer = (deflate_offer(b"permessage-deflate"),) if deflate else ()
    events = server.receive_data(handshake(*offer))
    assert isinstance(events[0], RequestReceived)
    server.handle(AcceptWebSocket(1))
    server.data_to_send()
    return server


def cut(data: bytes, points: list[int]) -> list[bytes]:
    """``data`` in pieces at the given offsets (taken modulo its length)."""
    offsets = sorted({point % (len(data) + 1) for point in points} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(offsets) if b > a]


def feed(server: HTTP1Protocol, data: bytes, points: list[int]) -> list[Event]:
    events: list[Event] = []
    for piece in cut(data, points):
        events += server.receive_data(piece)
    return events


def pong_payloads(data: bytes) -> list[bytes]:
    proto = FrameProtocol(client=True, extensions=[])
    proto.receive_bytes(data)
    frames = list(proto.received_frames())
    assert all(frame.opcode is Opcode.PONG for frame in frames), frames
    return [bytes(frame.payload) for frame in frames]  # type: ignore[arg-type]


@st.composite
def fragmented(draw: st.DrawFn, compressor: Any = None) -> tuple[bytes | str, bytes, list[bytes]]:
    """A message, its frames (cut anywhere, pings between) and the pings' payloads."""
    message = draw(payloads)
    encoded = message.encode() if isinstance(message, str) else message
    rsv = 0
    if compressor is not None and draw(st.booleans()):
        body = compressor.compress(encoded) + compressor.flush(zlib.Z_SYNC_FLUSH)
        encoded, rsv = body[:-4], 0b100
    points = draw(st.lists(st.integers(0, max(len(encoded), 1)), max_size=6))
    pieces = cut(encoded, points) or [b""]
    opcode = 0x1 if isinstance(message, str) else 0x2
    wire = bytearray()
    pings: list[bytes] = []
    for index, piece in enumerate(pieces):
        last = index == len(pieces) - 1
        wire += raw_frame(
            opcode if index == 0 else 0x0, piece, fin=last, rsv=rsv if index == 0 else 0
        )
        if not last and draw(st.booleans()):
            ping = draw(ping_payloads)
            pings.append(ping)
            wire += raw_frame(0x9, ping)
    return message, bytes(wire), pings


@SETTINGS
@given(data=st.data(), deflate=st.booleans(), count=st.integers(1, 4))
def test_any_fragmentation_and_chunking_delivers_each_message_whole(
    data: st.DataObject, deflate: bool, count: int
) -> None:
    server = upgraded_server(deflate=deflate)
    # A client with context takeover: one compressor for the whole connection.
    compressor = (
        zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15) if deflate else None
    )
    messages, wire, pings = [], bytearray(), []
    for _ in range(count):
        message, frames, message_pings = data.draw(fragmented(compressor))
        messages.append(message)
        wire += frames
        pings += message_pings
    points = data.draw(st.lists(st.integers(0, len(wire)), max_size=20))
    events = feed(server, bytes(wire), points)
    assert events == [MessageReceived(1, message) for message in messages]
    assert pong_payloads(server.data_to_send()) == pings
    assert not server.closed


#: Frames that are mostly well-formed, so that the noise gets past the first
#: header: valid opcodes, clean RSV bits, masked, UTF-8 text, sometimes not.
frames = st.builds(
    raw_frame,
    st.sampled_from([0x1] * 4 + [0x2] * 4 + [0x0, 0x9, 0x9, 0xA, 0x8, 0x3, 0xB, 0xF]),
    st.one_of(
        st.binary(max_size=140),
        st.text(max_size=40).map(str.encode),
        st.builds(
            lambda code, reason: code.to_bytes(2, "big") + reason.encode(),
            st.sampled_from([1000, 1001, 1005, 1011, 3000, 4999, 999, 5000]),
            st.text(max_size=20),
        ),
    ),
    fin=st.sampled_from([True, True, False]),
    rsv=st.sampled_from([0, 0, 0, 0, 0, 0, 0b100, 0b010, 0b001]),
    masked=st.sampled_from([True] * 9 + [False]),
)
noise = st.lists(st.one_of(frames, frames, frames, st.binary(max_size=30)), max_size=12).map(
    b"".join
)


@settings(max_examples=150, deadline=None)
@given(
    data=noise,
    points=st.lists(st.integers(0, 2000), max_size=10),
    deflate=st.booleans(),
    limit=st.sampled_from([16, 100, 16 * 1024 * 1024]),
)
def test_any_bytes_after_the_upgrade_only_produce_events(
    data: bytes, points: list[int], deflate: bool, limit: int
) -> None:
    server = upgraded_server(deflate=deflate, ws_max_message_size=limit)
    events: list[Event] = []
    closed_at: int | None = None
    for piece in cut(data, points):
        new = server.receive_data(piece)
        if closed_at is not None:
            assert new == []
        events += new
        if any(isinstance(event, WebSocketClosed) for event in new):
            closed_at = len(events)
    for item in events:
        assert isinstance(item, (MessageReceived, PongReceived, WebSocketClosed)), item
        if isinstance(item, MessageReceived) and limit < 1000:
            size = len(item.data.encode() if isinstance(item.data, str) else item.data)
            assert size <= limit
    closes = [item for item in events if isinstance(item, WebSocketClosed)]
    assert len(closes) <= 1
    event(f"closed with {closes[0].code}" if closes else "still open")
    if closes:
        assert events[-1] is closes[0]
        assert server.closed
        assert server.receive_data(raw_frame(0x1, b"more")) == []
        assert server.receive_data(b"") == []
    # Whatever we wrote is well-formed to a client: pongs, then maybe one close.
    proto = FrameProtocol(client=True, extensions=[])
    proto.receive_bytes(server.data_to_send())
    out = [frame.opcode for frame in proto.received_frames()]
    assert set(out) <= {Opcode.PONG, Opcode.CLOSE}
    assert out.count(Opcode.CLOSE) == (1 if closes else 0)
    if not closes:
        assert server.receive_data(b"") == [ConnectionClosed()]


@SETTINGS
@given(
    messages=st.lists(payloads, min_size=1, max_size=6),
    params=st.fixed_dictionaries(
        {},
        optional={
            "client_no_context_takeover": st.booleans(),
            "server_no_context_takeover": st.booleans(),
            "client_max_window_bits": st.integers(9, 15),
            "server_max_window_bits": st.integers(9, 15),
        },
    ),
)
def test_compressed_messages_round_trip(
    messages: list[str | bytes], params: dict[str, Any]
) -> None:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate(**params)])
    accept = conversation.accept()
    assert [extension.name for extension in accept.extensions] == ["permessage-deflate"]
    for message in messages:
        sent = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        assert conversation.send(sent) == [MessageReceived(1, message)]
    for message in messages:
        conversation.server.handle(SendMessage(1, message))
    received = conversation.read()
    assert [event.data for event in received] == messages  # type: ignore[attr-defined]
