"""WebSocket over HTTP/1.1: the handshake, the frame layer and permessage-deflate.

HTTP1Protocol is driven by wsproto's client (and h11's, for handshake
requests wsproto would not write); frames that break RFC 6455 in ways no
real client will are built by hand with ``raw_frame``.
"""

from __future__ import annotations

import base64
import os
import random
import tracemalloc
import zlib
from typing import Any

import h11
import pytest
from wsproto.events import (
    BytesMessage,
    CloseConnection,
    Ping,
    Pong,
    TextMessage,
)
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import CloseReason, FrameProtocol, Opcode
from wsproto.utilities import generate_accept_token

from tricorn._protocol.events import (
    AcceptWebSocket,
    CloseWebSocket,
    ConnectionClosed,
    MessageReceived,
    PongReceived,
    RequestReceived,
    RequestRejected,
    SendData,
    SendMessage,
    SendPing,
    StartResponse,
    StreamEnded,
    WebSocketClosed,
    WebSocketRequest,
)
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn._protocol.websocket import accept_handshake
from tricorn.errors import AppProtocolError, ClientDisconnected

from ._client import DEFAULT_HEADERS, make_server, request_bytes
from ._wsclient import (
    SAMPLE_ACCEPT,
    SAMPLE_KEY,
    WebSocketConversation,
    accepted,
    close_payload,
    deflate_offer,
    first_frame_rsv1,
    handshake,
    handshake_headers,
    header_values,
    parse_response,
    raw_frame,
    read_body,
    server_frames,
    split_frames,
)

_ZLIB_TAIL = b"\x00\x00\xff\xff"


def close_code_of(data: bytes) -> tuple[int, str]:
    """The (code, reason) of the single close frame in the server's output."""
    frames = server_frames(data)
    assert [frame.opcode for frame in frames] == [Opcode.CLOSE], frames
    payload = frames[0].payload
    assert isinstance(payload, tuple)
    code, reason = payload
    return int(code), reason


def deflate(data: bytes, wbits: int = 15) -> bytes:
    """One permessage-deflate payload (RFC 7692 7.2.1): sync flush, tail removed."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(_ZLIB_TAIL)
    return out[: -len(_ZLIB_TAIL)]


def inflate_with_window(payload: bytes, wbits: int) -> bytes:
    """Inflate a small piece at a time, so back-references must fit in the window.

    In one big call zlib resolves references from its own output buffer and
    never notices that a distance is longer than the window.
    """
    inflater = zlib.decompressobj(-wbits)
    data = payload + _ZLIB_TAIL
    out = bytearray()
    while data:
        out += inflater.decompress(data, 16)
        data = inflater.unconsumed_tail
    return bytes(out)


def upgraded_with_offer(offer: bytes, **config: object) -> tuple[HTTP1Protocol, bytes]:
    """A server that accepted a handshake offering ``offer``; returns it and the 101."""
    server = make_server(**config)
    events = server.receive_data(handshake(deflate_offer(offer)))
    assert isinstance(events[0], RequestReceived)
    server.handle(AcceptWebSocket(1))
    return server, server.data_to_send()


# -- the opening handshake ---------------------------------------------------


def test_valid_handshake_is_a_request_with_its_websocket_request() -> None:
    server = make_server()
    events = server.receive_data(
        handshake(
            (b"sec-websocket-protocol", b"chat, superchat"),
            (b"sec-websocket-protocol", b"v2"),
            deflate_offer(b"permessage-deflate; client_max_window_bits", b"x-foo"),
        )
    )
    assert len(events) == 2
    request, end = events
    assert isinstance(request, RequestReceived)
    assert end == StreamEnded(1)
    assert request.method == b"GET"
    assert request.target == b"/chat"
    assert request.http_version == "1.1"
    assert request.websocket == WebSocketRequest(
        subprotocols=("chat", "superchat", "v2"),
        extensions=("permessage-deflate; client_max_window_bits", "x-foo"),
        key=SAMPLE_KEY,
    )
    assert not server.upgraded
    assert server.data_to_send() == b""


def test_wsproto_client_handshake_is_a_websocket_request() -> None:
    conversation = WebSocketConversation(subprotocols=["graphql-ws"])
    assert conversation.request.websocket is not None
    assert conversation.request.websocket.subprotocols == ("graphql-ws",)


@pytest.mark.parametrize(
    "headers",
    [
        handshake_headers(connection=b"keep-alive, Upgrade"),
        handshake_headers(connection=b"upgrade"),
        [
            (b"host", b"example.com"),
            (b"upgrade", b"WebSocket"),
            (b"connection", b"Upgrade"),
            (b"sec-websocket-key", SAMPLE_KEY),
            (b"sec-websocket-version", b"13"),
        ],
    ],
    ids=["connection-list", "lower-case-upgrade", "mixed-case-websocket"],
)
def test_handshake_header_tokens_are_case_insensitive_list_elements(
    headers: list[tuple[bytes, bytes]],
) -> None:
    server = make_server()
    events = server.receive_data(
        request_bytes(h11.Request(method="GET", target="/", headers=headers), h11.EndOfMessage())
    )
    assert isinstance(events[0], RequestReceived)
    assert events[0].websocket is not None


BAD_HANDSHAKES = [
    pytest.param(
        handshake(key=b"not base64 at all!!!!!!"), 400, "Sec-WebSocket-Key", id="key-not-base64"
    ),
    pytest.param(
        handshake(key=base64.b64encode(b"x" * 15)), 400, "Sec-WebSocket-Key", id="key-15-bytes"
    ),
    pytest.param(
        handshake(key=base64.b64encode(b"x" * 17)), 400, "Sec-WebSocket-Key", id="key-17-bytes"
    ),
    pytest.param(
        handshake((b"sec-websocket-key", base64.b64encode(os.urandom(16)))),
        400,
        "exactly one Sec-WebSocket-Key",
        id="two-keys",
    ),
    pytest.param(handshake(key=None), 400, "Sec-WebSocket-Key", id="no-key"),
    pytest.param(handshake(version=None), 400, "Sec-WebSocket-Version", id="no-version"),
    pytest.param(
        handshake(connection=b"keep-alive"), 400, "Connection: Upgrade", id="no-connection-upgrade"
    ),
    pytest.param(handshake((b"content-length", b"0"), method="POST"), 400, "GET", id="post"),
    pytest.param(
        b"GET /chat HTTP/1.0\r\nHost: example.com\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: " + SAMPLE_KEY + b"\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n",
        400,
        "HTTP/1.1",
        id="http-1.0",
    ),
    pytest.param(
        request_bytes(
            h11.Request(
                method="GET",
                target="/chat",
                headers=handshake_headers((b"content-length", b"5")),
            ),
            h11.Data(data=b"hello"),
            h11.EndOfMessage(),
        ),
        400,
        "body",
        id="content-length-body",
    ),
    pytest.param(
        request_bytes(
            h11.Request(
                method="GET",
                target="/chat",
                headers=handshake_headers((b"transfer-encoding", b"chunked")),
            ),
            h11.EndOfMessage(),
        ),
        400,
        "body",
        id="chunked-body",
    ),
]


@pytest.mark.parametrize(("raw", "status", "reason"), BAD_HANDSHAKES)
def test_bad_handshake_is_rejected_with_a_closing_error_response(
    raw: bytes, status: int, reason: str
) -> None:
    server = make_server()
    events = server.receive_data(raw)
    assert len(events) == 1
    rejected = events[0]
    assert isinstance(rejected, RequestRejected)
    assert rejected.status_code == status
    assert reason in rejected.reason
    response, body = read_body(server.data_to_send())
    assert response.status_code == status
    assert header_values(response, b"connection") == [b"close"]
    assert reason.encode() in body
    assert server.closed


def test_unsupported_version_is_answered_426_naming_version_13() -> None:
    server = make_server()
    events = server.receive_data(handshake(version=b"8"))
    assert len(events) == 1
    assert isinstance(events[0], RequestRejected)
    assert events[0].status_code == 426
    response, _ = read_body(server.data_to_send())
    assert response.status_code == 426
    assert header_values(response, b"sec-websocket-version") == [b"13"]
    assert header_values(response, b"connection") == [b"close"]
    assert server.closed


def test_rejection_other_than_426_does_not_name_a_version() -> None:
    server = make_server()
    server.receive_data(handshake(key=None))
    response, _ = read_body(server.data_to_send())
    assert header_values(response, b"sec-websocket-version") == []


def test_with_websocket_off_an_upgrade_request_is_a_plain_request() -> None:
    server = make_server(ws="none")
    events = server.receive_data(handshake())
    assert isinstance(events[0], RequestReceived)
    assert events[0].websocket is None
    with pytest.raises(AppProtocolError, match="not a WebSocket handshake"):
        server.handle(AcceptWebSocket(1))


def test_with_websocket_off_a_bad_upgrade_request_is_a_plain_request() -> None:
    server = make_server(ws="none")
    events = server.receive_data(handshake(version=b"8"))
    assert isinstance(events[0], RequestReceived)
    assert events[0].websocket is None


def test_plain_request_has_no_websocket_request() -> None:
    server = make_server()
    events = server.receive_data(
        request_bytes(
            h11.Request(method="GET", target="/", headers=[(b"host", b"a")]), h11.EndOfMessage()
        )
    )
    assert isinstance(events[0], RequestReceived)
    assert events[0].websocket is None


@pytest.mark.parametrize("ws", ["auto", "none"])
def test_eof_while_the_handshake_awaits_the_app_is_connection_closed(ws: str) -> None:
    server = make_server(ws=ws)
    events = server.receive_data(handshake())
    assert isinstance(events[0], RequestReceived)
    assert server.receive_data(b"") == [ConnectionClosed()]
    assert not server.wants_data


# -- accepting ---------------------------------------------------------------


def test_accept_sends_101_with_the_rfc_6455_accept_token() -> None:
    assert generate_accept_token(SAMPLE_KEY) == SAMPLE_ACCEPT
    server = make_server()
    server.receive_data(handshake())
    server.handle(AcceptWebSocket(1))
    response = parse_response(server.data_to_send())
    assert response.status_code == 101
    assert header_values(response, b"upgrade") == [b"websocket"]
    assert header_values(response, b"connection") == [b"Upgrade"]
    assert header_values(response, b"sec-websocket-accept") == [SAMPLE_ACCEPT]
    assert header_values(response, b"sec-websocket-protocol") == []
    for name, value in DEFAULT_HEADERS:
        assert header_values(response, name) == [value]
    assert server.upgraded
    assert not server.closed


def test_accept_names_the_subprotocol_and_adds_the_app_headers() -> None:
    server = make_server()
    server.receive_data(handshake((b"sec-websocket-protocol", b"chat, superchat")))
    server.handle(AcceptWebSocket(1, "superchat", ((b"x-app", b"yes"), (b"server", b"my-app"))))
    response = parse_response(server.data_to_send())
    assert response.status_code == 101
    assert header_values(response, b"sec-websocket-protocol") == [b"superchat"]
    assert header_values(response, b"x-app") == [b"yes"]
    # The app's own Server header wins over the default.
    assert header_values(response, b"server") == [b"my-app"]
    assert header_values(response, b"date") == [DEFAULT_HEADERS[0][1]]


def test_accept_after_stop_keep_alive_does_not_say_connection_close() -> None:
    server = make_server()
    server.receive_data(handshake())
    server.stop_keep_alive()
    server.handle(AcceptWebSocket(1))
    response = parse_response(server.data_to_send())
    assert response.status_code == 101
    assert header_values(response, b"connection") == [b"Upgrade"]
    assert server.upgraded


def test_wsproto_client_accepts_the_101() -> None:
    conversation = WebSocketConversation(subprotocols=["chat"])
    accept = conversation.accept("chat")
    assert accept.subprotocol == "chat"
    assert accept.extensions == []


def test_accepting_twice_is_an_app_error() -> None:
    conversation = accepted()
    with pytest.raises(AppProtocolError):
        conversation.server.handle(AcceptWebSocket(1))


def test_accept_with_an_invalid_header_value_is_an_app_error_and_a_500() -> None:
    server = make_server()
    server.receive_data(handshake())
    with pytest.raises(AppProtocolError):
        server.handle(AcceptWebSocket(1, None, ((b"x-bad", b"a\r\nb"),)))
    response, _ = read_body(server.data_to_send())
    assert response.status_code == 500
    assert not server.upgraded
    assert server.closed


def test_websocket_commands_before_the_handshake_completes_are_app_errors() -> None:
    server = make_server()
    server.receive_data(handshake())
    for command in (SendMessage(1, "x"), SendPing(1), CloseWebSocket(1)):
        with pytest.raises(AppProtocolError, match="handshake is not complete"):
            server.handle(command)


def test_http_commands_after_the_upgrade_are_app_errors() -> None:
    conversation = accepted()
    with pytest.raises(AppProtocolError):
        conversation.server.handle(StartResponse(1, 200, ()))
    with pytest.raises(AppProtocolError):
        conversation.server.handle(SendData(1, b"x"))


# -- messages and control frames ----------------------------------------------


def test_text_message_is_received_as_str() -> None:
    conversation = accepted()
    assert conversation.send(TextMessage("héllo")) == [MessageReceived(1, "héllo")]


def test_binary_message_is_received_as_bytes() -> None:
    conversation = accepted()
    assert conversation.send(BytesMessage(b"\x00\x01\xff")) == [MessageReceived(1, b"\x00\x01\xff")]


def test_empty_messages_are_received() -> None:
    conversation = accepted()
    assert conversation.send(TextMessage(""), BytesMessage(b"")) == [
        MessageReceived(1, ""),
        MessageReceived(1, b""),
    ]


def test_large_binary_message_is_received_whole() -> None:
    payload = os.urandom(200_000)
    conversation = accepted()
    assert conversation.send(BytesMessage(payload)) == [MessageReceived(1, payload)]


def test_fragmented_message_with_an_interleaved_ping_is_one_message() -> None:
    conversation = accepted()
    events = conversation.send(
        TextMessage("he", message_finished=False),
        Ping(b"mid"),
        TextMessage("ll", message_finished=False),
        TextMessage("o", message_finished=True),
    )
    assert events == [MessageReceived(1, "hello")]
    assert conversation.read() == [Pong(b"mid")]


def test_fragmented_binary_message_is_joined() -> None:
    conversation = accepted()
    events = conversation.send(
        BytesMessage(b"ab", message_finished=False), BytesMessage(b"cd", message_finished=True)
    )
    assert events == [MessageReceived(1, b"abcd")]


def test_text_split_inside_a_character_across_fragments_is_decoded() -> None:
    encoded = "€uro".encode()
    conversation = accepted()
    events = conversation.send_raw(
        raw_frame(0x1, encoded[:1], fin=False)
        + raw_frame(0x0, encoded[1:2], fin=False)
        + raw_frame(0x0, encoded[2:])
    )
    assert events == [MessageReceived(1, "€uro")]


def test_ping_is_answered_with_a_pong_carrying_its_payload() -> None:
    conversation = accepted()
    assert conversation.send(Ping(b"abc")) == []
    assert conversation.server.has_output
    assert conversation.read() == [Pong(b"abc")]
    assert not conversation.server.has_output


def test_pong_is_reported() -> None:
    conversation = accepted()
    assert conversation.send(Pong(b"xyz")) == [PongReceived(1, b"xyz")]
    assert not conversation.server.has_output


def test_client_close_is_reported_and_answered_with_its_code() -> None:
    conversation = accepted()
    events = conversation.send(CloseConnection(1000, "bye"))
    assert events == [WebSocketClosed(1, 1000, "bye")]
    assert conversation.server.closed
    assert conversation.read() == [CloseConnection(1000, "")]


def test_client_close_with_an_application_code_is_echoed() -> None:
    conversation = accepted()
    assert conversation.send(CloseConnection(4321, "")) == [WebSocketClosed(1, 4321, "")]
    assert conversation.read() == [CloseConnection(4321, "")]


def test_client_close_without_a_code_is_1005() -> None:
    conversation = accepted()
    assert conversation.send_raw(raw_frame(0x8)) == [WebSocketClosed(1, 1005, "")]
    assert conversation.server.closed


def test_client_close_without_a_code_is_answered_with_an_empty_close() -> None:
    conversation = accepted()
    conversation.send_raw(raw_frame(0x8))
    assert conversation.server.data_to_send() == b"\x88\x00"


def test_frames_after_the_client_close_are_ignored() -> None:
    conversation = accepted()
    data = raw_frame(0x8, close_payload(1000)) + raw_frame(0x1, b"late") + raw_frame(0x9)
    assert conversation.send_raw(data) == [WebSocketClosed(1, 1000, "")]
    assert conversation.send_raw(raw_frame(0x1, b"later")) == []
    assert close_code_of(conversation.server.data_to_send()) == (1000, "")


def test_server_messages_reach_the_client() -> None:
    conversation = accepted()
    conversation.server.handle(SendMessage(1, "hi ☃"))
    conversation.server.handle(SendMessage(1, b"\x00bin"))
    conversation.server.handle(SendPing(1, b"are you there"))
    assert conversation.read() == [
        TextMessage("hi ☃"),
        BytesMessage(b"\x00bin"),
        Ping(b"are you there"),
    ]


def test_server_frames_are_unmasked() -> None:
    conversation = accepted()
    conversation.server.handle(SendMessage(1, b"x"))
    assert conversation.server.data_to_send() == b"\x82\x01x"


def test_server_close_then_client_answer_finishes_the_closing_handshake() -> None:
    conversation = accepted()
    conversation.server.handle(CloseWebSocket(1, 1001, "going away"))
    assert conversation.server.closing
    assert not conversation.server.closed
    events = conversation.read()
    assert events == [CloseConnection(1001, "going away")]
    assert isinstance(events[0], CloseConnection)
    # wsproto's answer echoes the code and the reason.
    server_events = conversation.send(events[0].response())
    assert server_events == [WebSocketClosed(1, 1001, "going away")]
    assert conversation.server.closed
    assert not conversation.server.closing
    assert conversation.server.data_to_send() == b""


def test_server_close_reason_is_cut_to_fit_a_control_frame() -> None:
    conversation = accepted()
    conversation.server.handle(CloseWebSocket(1, 1000, "é" * 100))
    code, reason = close_code_of(conversation.server.data_to_send())
    assert code == 1000
    assert reason == "é" * 61


def test_close_and_ping_after_close_are_no_ops() -> None:
    conversation = accepted()
    conversation.server.handle(CloseWebSocket(1, 1000))
    first = conversation.server.data_to_send()
    conversation.server.handle(CloseWebSocket(1, 1001))
    conversation.server.handle(SendPing(1))
    assert conversation.server.data_to_send() == b""
    assert close_code_of(first) == (1000, "")


def test_send_message_while_closing_raises_client_disconnected() -> None:
    conversation = accepted()
    conversation.server.handle(CloseWebSocket(1))
    with pytest.raises(ClientDisconnected):
        conversation.server.handle(SendMessage(1, "too late"))
    assert isinstance(ClientDisconnected("x"), OSError)


def test_send_message_after_the_client_closed_raises_client_disconnected() -> None:
    conversation = accepted()
    conversation.send(CloseConnection(1000))
    with pytest.raises(ClientDisconnected):
        conversation.server.handle(SendMessage(1, "too late"))


def test_messages_arriving_while_we_close_are_not_reported() -> None:
    conversation = accepted()
    conversation.server.handle(CloseWebSocket(1))
    conversation.server.data_to_send()
    assert conversation.send_raw(raw_frame(0x1, b"in flight")) == []
    assert conversation.send_raw(raw_frame(0x8, close_payload(1000))) == [
        WebSocketClosed(1, 1000, "")
    ]


def test_eof_is_connection_closed() -> None:
    conversation = accepted()
    assert conversation.send_raw(b"") == [ConnectionClosed()]
    assert conversation.server.closed
    assert conversation.send_raw(raw_frame(0x1, b"x")) == []
    with pytest.raises(ClientDisconnected):
        conversation.server.handle(SendMessage(1, "x"))


def test_wants_data_follows_the_websocket() -> None:
    conversation = accepted()
    assert conversation.server.wants_data
    conversation.send(CloseConnection(1000))
    assert not conversation.server.wants_data


# -- bytes that came with the handshake ----------------------------------------


def test_frame_sent_right_behind_the_handshake_is_delivered_after_accept() -> None:
    early = bytes(FrameProtocol(client=True, extensions=[]).send_data("early"))
    conversation = WebSocketConversation(trailing=early)
    assert [type(e) for e in conversation.request_events] == [RequestReceived, StreamEnded]
    conversation.accept()
    assert conversation.server.pending_events() == [MessageReceived(1, "early")]
    assert conversation.server.pending_events() == []


def test_held_frames_come_before_new_ones_when_not_collected() -> None:
    early = bytes(FrameProtocol(client=True, extensions=[]).send_data("first"))
    conversation = WebSocketConversation(trailing=early)
    conversation.accept()
    assert conversation.send(TextMessage("second")) == [
        MessageReceived(1, "first"),
        MessageReceived(1, "second"),
    ]


def test_frames_arriving_before_accept_are_held_for_the_websocket() -> None:
    conversation = WebSocketConversation()
    early = bytes(FrameProtocol(client=True, extensions=[]).send_data(b"waiting"))
    assert conversation.server.receive_data(early) == []
    conversation.accept()
    assert conversation.server.pending_events() == [MessageReceived(1, b"waiting")]


def test_partial_frame_behind_the_handshake_is_completed_by_later_bytes() -> None:
    early = bytes(FrameProtocol(client=True, extensions=[]).send_data(b"split me"))
    conversation = WebSocketConversation(trailing=early[:5])
    conversation.accept()
    assert conversation.server.pending_events() == []
    assert conversation.send_raw(early[5:]) == [MessageReceived(1, b"split me")]


# -- denial --------------------------------------------------------------------


def test_denial_response_is_plain_http_and_closes_the_connection() -> None:
    server = make_server()
    server.receive_data(handshake())
    server.handle(StartResponse(1, 403, ((b"content-length", b"4"),)))
    server.handle(SendData(1, b"nope", end_stream=True))
    response, body = read_body(server.data_to_send())
    assert response.status_code == 403
    assert header_values(response, b"connection") == [b"close"]
    assert body == b"nope"
    assert not server.keep_alive
    assert not server.upgraded


def test_denial_response_without_content_length_still_closes() -> None:
    server = make_server()
    server.receive_data(handshake())
    server.handle(StartResponse(1, 401, ()))
    server.handle(SendData(1, b"who are you", end_stream=True))
    response, body = read_body(server.data_to_send())
    assert response.status_code == 401
    assert b"close" in header_values(response, b"connection")
    assert body == b"who are you"
    assert not server.keep_alive


# -- peers that break RFC 6455 -------------------------------------------------


VIOLATIONS = [
    pytest.param(raw_frame(0x1, b"ok\xff"), 1007, id="invalid-utf8-text"),
    pytest.param(raw_frame(0x1, b"ok\xc3"), 1007, id="truncated-utf8-text"),
    pytest.param(raw_frame(0x1, b"\xed\xa0\x80"), 1007, id="surrogate-in-text"),
    pytest.param(raw_frame(0x1, b"hi", masked=False), 1002, id="unmasked"),
    pytest.param(raw_frame(0x3, b"x"), 1002, id="reserved-data-opcode-3"),
    pytest.param(raw_frame(0xB, b""), 1002, id="reserved-control-opcode-b"),
    pytest.param(raw_frame(0x1, b"x", rsv=0b010), 1002, id="rsv2"),
    pytest.param(raw_frame(0x1, b"x", rsv=0b001), 1002, id="rsv3"),
    pytest.param(raw_frame(0x1, b"x", rsv=0b100), 1002, id="rsv1-without-deflate"),
    pytest.param(raw_frame(0x9, b"x", rsv=0b100), 1002, id="rsv1-on-ping-without-deflate"),
    pytest.param(raw_frame(0x9, b"x" * 126), 1002, id="ping-payload-126"),
    pytest.param(raw_frame(0x9, b"", fin=False), 1002, id="fragmented-ping"),
    pytest.param(raw_frame(0x8, close_payload(1000), fin=False), 1002, id="fragmented-close"),
    pytest.param(raw_frame(0x0, b"x"), 1002, id="continuation-without-start"),
    pytest.param(
        raw_frame(0x1, b"a", fin=False) + raw_frame(0x1, b"b"), 1002, id="text-inside-text"
    ),
    pytest.param(
        raw_frame(0x2, b"a", fin=False) + raw_frame(0x1, b"b"), 1002, id="text-inside-binary"
    ),
    pytest.param(raw_frame(0x8, b"\x03"), 1002, id="close-payload-1-byte"),
    pytest.param(raw_frame(0x8, close_payload(0)), 1002, id="close-code-0"),
    pytest.param(raw_frame(0x8, close_payload(999)), 1002, id="close-code-999"),
    pytest.param(raw_frame(0x8, close_payload(1004)), 1002, id="close-code-1004"),
    pytest.param(raw_frame(0x8, close_payload(1005)), 1002, id="close-code-1005"),
    pytest.param(raw_frame(0x8, close_payload(1006)), 1002, id="close-code-1006"),
    pytest.param(raw_frame(0x8, close_payload(1015)), 1002, id="close-code-1015"),
    pytest.param(raw_frame(0x8, close_payload(1016)), 1002, id="close-code-1016"),
    pytest.param(raw_frame(0x8, close_payload(2999)), 1002, id="close-code-2999"),
    pytest.param(raw_frame(0x8, close_payload(5000)), 1002, id="close-code-5000"),
    pytest.param(raw_frame(0x8, close_payload(1000, b"\xff")), 1007, id="close-reason-not-utf8"),
]


@pytest.mark.parametrize(("data", "code"), VIOLATIONS)
def test_violation_closes_with_the_rfc_code(data: bytes, code: int) -> None:
    conversation = accepted()
    events = conversation.send_raw(data)
    assert len(events) == 1, events
    closed = events[0]
    assert isinstance(closed, WebSocketClosed)
    assert (closed.stream_id, closed.code) == (1, code)
    assert close_code_of(conversation.server.data_to_send()) == (code, closed.reason)
    assert closed.reason
    assert "error in extension" not in closed.reason
    assert conversation.server.closed
    assert conversation.send_raw(raw_frame(0x1, b"after")) == []
    assert conversation.server.data_to_send() == b""


def test_overlong_length_encoding_is_a_protocol_error() -> None:
    # RFC 6455 5.2: "the minimal number of bytes MUST be used".
    conversation = accepted()
    data = bytes([0x82, 0x80 | 126, 0, 5]) + b"\x00" * 4 + b"hello"
    events = conversation.send_raw(data)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1002)]


def test_violation_reported_with_events_before_it() -> None:
    conversation = accepted()
    events = conversation.send_raw(raw_frame(0x1, b"fine") + raw_frame(0x3))
    assert events[0] == MessageReceived(1, "fine")
    assert isinstance(events[1], WebSocketClosed)
    assert events[1].code == 1002
    assert len(events) == 2


def test_invalid_utf8_in_the_first_fragment_fails_at_once() -> None:
    conversation = accepted()
    events = conversation.send_raw(raw_frame(0x1, b"ok\xff", fin=False))
    assert len(events) == 1
    assert isinstance(events[0], WebSocketClosed)
    assert events[0].code == 1007


def test_invalid_utf8_in_a_partly_received_frame_fails_at_once() -> None:
    conversation = accepted()
    frame = raw_frame(0x1, b"ok\xff" + b"a" * 1000)
    # Header (4) + mask (4) + the first 3 payload bytes: the frame is far from done.
    events = conversation.send_raw(frame[:11])
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1007)]


def test_close_reason_of_a_violation_fits_a_control_frame() -> None:
    conversation = accepted()
    conversation.send_raw(raw_frame(0x3))
    frames = split_frames(conversation.server.data_to_send())
    assert len(frames) == 1
    assert len(frames[0]) <= 2 + 125


# -- message size limit ----------------------------------------------------------


def test_too_big_frame_fails_on_its_header() -> None:
    conversation = accepted(ws_max_message_size=1000)
    header = raw_frame(0x2, b"", length=1001)[:4]  # 2 bytes + 2-byte length, no mask yet
    events = conversation.send_raw(header)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]
    assert close_code_of(conversation.server.data_to_send())[0] == 1009


def test_huge_announced_length_fails_on_its_header() -> None:
    conversation = accepted(ws_max_message_size=1000)
    header = raw_frame(0x2, b"", length=2**40)[:10]
    events = conversation.send_raw(header)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]


def test_fragments_past_the_limit_close_with_1009() -> None:
    conversation = accepted(ws_max_message_size=1000)
    events = conversation.send(
        BytesMessage(b"a" * 600, message_finished=False),
        BytesMessage(b"b" * 401, message_finished=True),
    )
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]
    assert close_code_of(conversation.server.data_to_send())[0] == 1009


def test_message_of_exactly_the_limit_passes() -> None:
    conversation = accepted(ws_max_message_size=1000)
    assert conversation.send(BytesMessage(b"x" * 1000)) == [MessageReceived(1, b"x" * 1000)]
    events = conversation.send(
        TextMessage("a" * 600, message_finished=False),
        TextMessage("b" * 400, message_finished=True),
    )
    assert events == [MessageReceived(1, "a" * 600 + "b" * 400)]


def test_the_limit_applies_per_message() -> None:
    conversation = accepted(ws_max_message_size=1000)
    for _ in range(5):
        assert conversation.send(BytesMessage(b"x" * 900)) == [MessageReceived(1, b"x" * 900)]


def test_control_frames_do_not_count_towards_the_message() -> None:
    conversation = accepted(ws_max_message_size=100)
    events = conversation.send(
        BytesMessage(b"a" * 60, message_finished=False),
        Ping(b"p" * 100),
        BytesMessage(b"b" * 40, message_finished=True),
    )
    assert events == [MessageReceived(1, b"a" * 60 + b"b" * 40)]


def test_continuation_header_split_across_reads_is_counted_once() -> None:
    conversation = accepted(ws_max_message_size=1000)
    first = raw_frame(0x2, b"a" * 600, fin=False)
    second = raw_frame(0x0, b"b" * 300)
    assert conversation.send_raw(first) == []
    # The 2-byte head and 2-byte length arrive, the masking key not yet.
    assert conversation.send_raw(second[:4]) == []
    assert conversation.send_raw(second[4:]) == [MessageReceived(1, b"a" * 600 + b"b" * 300)]


# -- permessage-deflate negotiation -----------------------------------------------


def _negotiated(*offers: str, enabled: bool = True) -> list[bytes]:
    headers, _ = accept_handshake(
        WebSocketRequest(extensions=offers, key=SAMPLE_KEY),
        None,
        per_message_deflate=enabled,
        max_message_size=1 << 20,
    )
    return [value for name, value in headers if name == b"sec-websocket-extensions"]


@pytest.mark.parametrize(
    ("offers", "response"),
    [
        (["permessage-deflate"], b"permessage-deflate"),
        (["Permessage-Deflate"], b"permessage-deflate"),
        (["permessage-deflate; client_max_window_bits"], b"permessage-deflate"),
        (["permessage-deflate; client_max_window_bits=10"], b"permessage-deflate"),
        (
            ["permessage-deflate; server_max_window_bits=10"],
            b"permessage-deflate; server_max_window_bits=10",
        ),
        (
            ['permessage-deflate; server_max_window_bits="12"'],
            b"permessage-deflate; server_max_window_bits=12",
        ),
        (
            ["permessage-deflate; server_no_context_takeover"],
            b"permessage-deflate; server_no_context_takeover",
        ),
        (
            ["permessage-deflate; client_no_context_takeover"],
            b"permessage-deflate; client_no_context_takeover",
        ),
        (
            ["permessage-deflate; client_max_window_bits=15; server_max_window_bits=15"],
            b"permessage-deflate; server_max_window_bits=15",
        ),
        (["permessage-deflate; foo=1", "permessage-deflate"], b"permessage-deflate"),
        (["permessage-deflate; foo", "permessage-deflate"], b"permessage-deflate"),
        (
            [
                "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
                "permessage-deflate",
            ],
            b"permessage-deflate",
        ),
        (
            [
                "permessage-deflate; server_max_window_bits=10; server_max_window_bits=11",
                "permessage-deflate; client_no_context_takeover",
            ],
            b"permessage-deflate; client_no_context_takeover",
        ),
        (
            ["permessage-deflate; server_max_window_bits=16", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; server_max_window_bits=7", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; server_max_window_bits", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; server_max_window_bits=ten", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; client_max_window_bits=16", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; server_no_context_takeover=1", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (
            ["permessage-deflate; client_no_context_takeover=", "permessage-deflate"],
            b"permessage-deflate",
        ),
        (["x-webkit-deflate-frame"], b""),
        (["x-webkit-deflate-frame", "permessage-deflate"], b"permessage-deflate"),
        (["permessage-deflate; foo=1"], b""),
        ([], b""),
    ],
)
def test_deflate_offer_is_answered_or_declined(offers: list[str], response: bytes) -> None:
    # A declined offer lets the next one in the list be taken; b"" means none is.
    assert _negotiated(*offers) == ([response] if response else [])


def test_deflate_off_declines_every_offer() -> None:
    assert _negotiated("permessage-deflate", enabled=False) == []


def test_deflate_is_negotiated_in_the_101() -> None:
    _, raw = upgraded_with_offer(b"permessage-deflate; server_max_window_bits=10")
    response = parse_response(raw)
    assert header_values(response, b"sec-websocket-extensions") == [
        b"permessage-deflate; server_max_window_bits=10"
    ]


def test_deflate_off_in_config_leaves_the_101_without_extensions() -> None:
    conversation = WebSocketConversation(
        extensions=[PerMessageDeflate()], ws_per_message_deflate=False
    )
    accept = conversation.accept()
    assert accept.extensions == []
    conversation.server.handle(SendMessage(1, "a" * 500))
    data = conversation.server.data_to_send()
    assert not first_frame_rsv1(data)
    # RSV1 is a protocol error where deflate was not negotiated.
    events = conversation.send_raw(raw_frame(0x1, deflate(b"x"), rsv=0b100))
    assert isinstance(events[0], WebSocketClosed)
    assert events[0].code == 1002


def test_server_window_bits_10_is_honoured_when_compressing() -> None:
    server, _ = upgraded_with_offer(b"permessage-deflate; server_max_window_bits=10")
    block = random.Random(1500).randbytes(1500)
    payload = block * 3  # repeats 1500 bytes back: beyond a 1024-byte window
    server.handle(SendMessage(1, payload))
    frame = split_frames(server.data_to_send())[0]
    assert first_frame_rsv1(frame)
    body = frame[4:]  # 2 bytes + 2-byte length; server frames are unmasked
    assert inflate_with_window(body, 10) == payload
    # Repeats that fit in the window are still found.
    near = random.Random(500).randbytes(500) * 6
    server.handle(SendMessage(1, near))
    frame = split_frames(server.data_to_send())[0]
    assert len(frame) < len(near) // 2
    inflater = zlib.decompressobj(-10)
    inflater.decompress(body + _ZLIB_TAIL)  # the shared window of the first message
    out = bytearray()
    data = frame[4:] + _ZLIB_TAIL
    while data:
        out += inflater.decompress(data, 16)
        data = inflater.unconsumed_tail
    assert out == near
    # The check bites: what a 15-bit window compressor makes needs the big window.
    with pytest.raises(zlib.error):
        inflate_with_window(deflate(payload), 10)


def test_server_window_bits_8_is_accepted_but_messages_go_uncompressed() -> None:
    server, raw = upgraded_with_offer(b"permessage-deflate; server_max_window_bits=8")
    assert header_values(parse_response(raw), b"sec-websocket-extensions") == [
        b"permessage-deflate; server_max_window_bits=8"
    ]
    server.handle(SendMessage(1, "a" * 300))
    data = server.data_to_send()
    assert not first_frame_rsv1(data)
    frames = server_frames(data)
    assert [frame.payload for frame in frames] == ["a" * 300]
    # Inbound compression still works.
    assert server.receive_data(raw_frame(0x1, deflate(b"hello"), rsv=0b100)) == [
        MessageReceived(1, "hello")
    ]


# -- permessage-deflate on the wire ---------------------------------------------


@pytest.mark.parametrize(
    "params",
    [
        {},
        {"client_no_context_takeover": True},
        {"server_no_context_takeover": True},
        {"client_no_context_takeover": True, "server_no_context_takeover": True},
        {"server_max_window_bits": 9},
        {"client_max_window_bits": 9, "server_max_window_bits": 12},
    ],
    ids=["defaults", "client-no-ctx", "server-no-ctx", "no-ctx", "server-9", "client-9"],
)
def test_compressed_messages_round_trip_with_wsproto(params: dict[str, object]) -> None:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate(**params)])  # type: ignore[arg-type]
    accept = conversation.accept()
    assert [ext.name for ext in accept.extensions] == ["permessage-deflate"]
    messages: list[str | bytes] = ["hello " * 100, b"\x00\x01" * 300, "hello " * 100, "", b"z"]
    for message in messages:
        wire = conversation.client.send(
            TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        )
        assert first_frame_rsv1(wire)
        assert conversation.send_raw(wire) == [MessageReceived(1, message)]
        conversation.server.handle(SendMessage(1, message))
        out = conversation.server.data_to_send()
        assert first_frame_rsv1(out)
        conversation.client.receive_data(out)
        expected = TextMessage(message) if isinstance(message, str) else BytesMessage(message)
        assert list(conversation.client.events()) == [expected]


def test_compressed_large_message_is_much_smaller_on_the_wire() -> None:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate()])
    conversation.accept()
    conversation.server.handle(SendMessage(1, "x" * 100_000))
    assert len(conversation.server.data_to_send()) < 1000


def test_compressed_fragmented_message_is_inflated_whole() -> None:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate()])
    conversation.accept()
    payload = deflate(b"fragmented and compressed " * 20)
    third = len(payload) // 3
    events = conversation.send_raw(
        raw_frame(0x2, payload[:third], fin=False, rsv=0b100)
        + raw_frame(0x9, b"ping")
        + raw_frame(0x0, payload[third : 2 * third], fin=False)
        + raw_frame(0x0, payload[2 * third :])
    )
    assert events == [MessageReceived(1, b"fragmented and compressed " * 20)]
    assert server_frames(conversation.server.data_to_send())[0].opcode is Opcode.PONG


def test_uncompressed_message_is_allowed_when_deflate_is_negotiated() -> None:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate()])
    conversation.accept()
    assert conversation.send_raw(raw_frame(0x1, b"plain")) == [MessageReceived(1, "plain")]


def _deflate_server() -> WebSocketConversation:
    conversation = WebSocketConversation(extensions=[PerMessageDeflate()])
    conversation.accept()
    return conversation


@pytest.mark.parametrize(
    "payloads",
    [
        pytest.param([bytes.fromhex("f248cdc9c90700")], id="7.2.3.1-one-block"),
        pytest.param(
            [bytes.fromhex("f248cdc9c90700"), bytes.fromhex("f200110000")],
            id="7.2.3.2-shared-window",
        ),
        pytest.param([bytes.fromhex("000500faff48656c6c6f00")], id="7.2.3.3-stored-block"),
        pytest.param([bytes.fromhex("f348cdc9c9070000")], id="7.2.3.4-bfinal"),
        pytest.param([bytes.fromhex("f248050000" + "00ffffcac9c90700")], id="7.2.3.5-two-blocks"),
    ],
)
def test_rfc_7692_examples_inflate_to_hello(payloads: list[bytes]) -> None:
    conversation = _deflate_server()
    events = []
    for payload in payloads:
        events += conversation.send_raw(raw_frame(0x1, payload, rsv=0b100))
    assert events == [MessageReceived(1, "Hello")] * len(payloads)


def test_message_after_a_bfinal_message_is_inflated() -> None:
    conversation = _deflate_server()
    bfinal_hello = bytes.fromhex("f348cdc9c9070000")
    events = conversation.send_raw(
        raw_frame(0x1, bfinal_hello, rsv=0b100) + raw_frame(0x1, bfinal_hello, rsv=0b100)
    )
    assert events == [MessageReceived(1, "Hello"), MessageReceived(1, "Hello")]


# -- permessage-deflate limits and violations -------------------------------------


def test_deflate_bomb_closes_with_1009_without_inflating_it() -> None:
    conversation = accepted(
        extensions=[PerMessageDeflate()],
        ws_max_message_size=10_000,
    )
    bomb = raw_frame(0x2, deflate(bytes(10_000_000)), rsv=0b100)
    assert len(bomb) < 20_000
    tracemalloc.start()
    try:
        events = conversation.send_raw(bomb)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]
    assert peak < 2_000_000
    assert close_code_of(conversation.server.data_to_send())[0] == 1009


def test_compressed_message_inflating_to_exactly_the_limit_passes() -> None:
    conversation = accepted(extensions=[PerMessageDeflate()], ws_max_message_size=10_000)
    events = conversation.send_raw(raw_frame(0x2, deflate(bytes(10_000)), rsv=0b100))
    assert events == [MessageReceived(1, bytes(10_000))]
    events = conversation.send_raw(raw_frame(0x2, deflate(bytes(10_001)), rsv=0b100))
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]


def test_compressed_fragments_past_the_limit_close_with_1009() -> None:
    conversation = accepted(extensions=[PerMessageDeflate()], ws_max_message_size=1000)
    payload = deflate(os.urandom(1200))
    events = conversation.send_raw(
        raw_frame(0x2, payload[:600], fin=False, rsv=0b100) + raw_frame(0x0, payload[600:])
    )
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, 1009)]


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(raw_frame(0x2, b"\xff\xff\xff\xff", rsv=0b100), 1007, id="corrupt-deflate"),
        pytest.param(
            raw_frame(0x1, deflate(b"\xff\xfe"), rsv=0b100), 1007, id="inflates-to-bad-utf8"
        ),
        pytest.param(
            raw_frame(0x1, deflate(b"ab")[:2], fin=False, rsv=0b100)
            + raw_frame(0x0, deflate(b"ab")[2:], rsv=0b100),
            1002,
            id="rsv1-on-continuation",
        ),
        pytest.param(raw_frame(0x9, b"", rsv=0b100), 1002, id="rsv1-on-ping"),
        pytest.param(raw_frame(0x8, close_payload(1000), rsv=0b100), 1002, id="rsv1-on-close"),
        pytest.param(raw_frame(0x1, b"x", rsv=0b110), 1002, id="rsv2-with-deflate"),
    ],
)
def test_deflate_violation_closes_with_the_rfc_code(data: bytes, code: int) -> None:
    conversation = _deflate_server()
    events = conversation.send_raw(data)
    assert [(type(e), getattr(e, "code", None)) for e in events] == [(WebSocketClosed, code)]
    sent_code, reason = close_code_of(conversation.server.data_to_send())
    assert sent_code == code
    assert "error in extension" not in reason


@pytest.mark.parametrize(
    ("options", "data", "code", "reason"),
    [
        pytest.param(
            {"ws_max_message_size": 1000},
            raw_frame(0x2, b"", length=2**40)[:10],
            1009,
            "message larger than 1000 bytes",
            id="announced-too-big",
        ),
        pytest.param(
            {"extensions": [PerMessageDeflate()], "ws_max_message_size": 10_000},
            raw_frame(0x2, deflate(bytes(20_000)), rsv=0b100),
            1009,
            "message larger than 10000 bytes",
            id="inflates-too-big",
        ),
        pytest.param(
            {"extensions": [PerMessageDeflate()]},
            raw_frame(0x2, b"\xff\xff\xff\xff", rsv=0b100),
            1007,
            "compressed message does not inflate",
            id="corrupt-deflate",
        ),
        pytest.param(
            {"extensions": [PerMessageDeflate()]},
            raw_frame(0x9, b"", rsv=0b100),
            1002,
            "RSV1 set on a control frame",
            id="rsv1-on-ping",
        ),
        pytest.param(
            {}, raw_frame(0x1, b"ok\xff"), 1007, "invalid UTF-8 in a text message", id="bad-utf8"
        ),
    ],
)
def test_a_close_we_choose_says_its_real_cause(
    options: dict[str, Any], data: bytes, code: int, reason: str
) -> None:
    # wsproto reports every extension's failure as "error in extension".
    conversation = accepted(**options)
    events = conversation.send_raw(data)
    assert events == [WebSocketClosed(1, code, reason)]
    assert close_code_of(conversation.server.data_to_send()) == (code, reason)


def test_server_does_not_compress_control_frames() -> None:
    conversation = _deflate_server()
    conversation.server.handle(SendPing(1, b"p" * 50))
    conversation.server.handle(CloseWebSocket(1, 1000, "bye"))
    data = conversation.server.data_to_send()
    frames = split_frames(data)
    assert [frame[0] for frame in frames] == [0x89, 0x88]


def test_close_reason_enum_codes_are_plain_ints() -> None:
    conversation = accepted()
    events = conversation.send(CloseConnection(CloseReason.GOING_AWAY))
    assert events == [WebSocketClosed(1, 1001, "")]
    assert type(events[0].code) is int  # type: ignore[union-attr]
