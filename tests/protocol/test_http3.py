"""HTTP3Protocol driven by aioquic's own client side: streams, flow control, WebSocket, errors."""

from __future__ import annotations

import os

import pytest

try:
    import aioquic  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    # As the conformance tests do with their tools: only outside CI may a
    # missing aioquic skip these; under CI=true it is a failure.
    if os.environ.get("CI"):
        raise
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

from aioquic.h3 import events as h3_events
from aioquic.h3.connection import ErrorCode, Setting
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from tricorn._protocol.events import (
    AcceptWebSocket,
    CloseWebSocket,
    ConnectionClosed,
    DataReceived,
    MessageReceived,
    RequestReceived,
    SendData,
    SendInformational,
    SendMessage,
    SendTrailers,
    StartResponse,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WebSocketRequest,
    WindowOpened,
)
from tricorn._protocol.http3 import SEND_BUFFER
from tricorn._protocol.interface import Phase
from tricorn.errors import AppProtocolError, ClientDisconnected

from ._h3client import AUTHORITY, CLIENT_ADDR, H3Conversation, request_headers

_E = ErrorCode


def respond(conv: H3Conversation, stream_id: int, body: bytes = b"ok", status: int = 200) -> None:
    conv.server.handle(StartResponse(stream_id, status, ((b"content-type", b"text/plain"),)))
    conv.server.handle(SendData(stream_id, body, end_stream=True))
    conv.server.exchange_finished(stream_id)
    conv.exchange()


def body_of(events: list[object], stream_id: int) -> bytes:
    return b"".join(
        event.data
        for event in events
        if isinstance(event, DataReceived) and event.stream_id == stream_id
    )


# -- requests and responses ---------------------------------------------------------


def test_get_becomes_a_request_with_host_from_authority() -> None:
    conv = H3Conversation()
    stream_id, events = conv.request(b"/path?q=1", (b"accept", b"*/*"))
    assert events == [
        RequestReceived(
            stream_id=stream_id,
            method=b"GET",
            target=b"/path?q=1",
            http_version="3",
            headers=((b"host", AUTHORITY), (b"accept", b"*/*")),
            can_send_early_hints=True,
            can_push=False,
        ),
        StreamEnded(stream_id),
    ]
    assert conv.server.phase is Phase.BUSY


def test_response_carries_status_default_headers_and_body() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    respond(conv, stream_id, b"hello")
    headers = conv.response_headers(stream_id)
    assert headers[b":status"] == b"200"
    assert headers[b"server"] == b"tricorn"
    assert conv.body(stream_id) == b"hello"
    assert conv.ended(stream_id)
    assert conv.server.phase is Phase.IDLE


def test_empty_body_ends_the_stream_on_the_headers_frame() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(StartResponse(stream_id, 204, ()))
    conv.server.handle(SendData(stream_id, b"", end_stream=True))
    conv.exchange()
    (head,) = conv.seen(h3_events.HeadersReceived, stream_id)
    assert head.stream_ended
    assert conv.seen(h3_events.DataReceived, stream_id) == []


def test_split_cookie_fields_are_joined() -> None:
    conv = H3Conversation()
    _, events = conv.request(b"/", (b"cookie", b"a=1"), (b"cookie", b"b=2"))
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert (b"cookie", b"a=1; b=2") in request.headers


def test_connection_specific_and_upper_case_response_headers_are_fixed() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(
        StartResponse(stream_id, 200, ((b"Connection", b"close"), (b"X-Thing", b"1")))
    )
    conv.server.handle(SendData(stream_id, b"", end_stream=True))
    conv.exchange()
    headers = conv.response_headers(stream_id)
    assert b"connection" not in headers
    assert headers[b"x-thing"] == b"1"


def test_an_invalid_response_header_becomes_a_500() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    with pytest.raises(AppProtocolError):
        conv.server.handle(StartResponse(stream_id, 200, ((b"x-bad", b"a\nb"),)))
    conv.exchange()
    assert conv.response_headers(stream_id)[b":status"] == b"500"
    assert conv.ended(stream_id)


def test_a_command_on_a_finished_stream_is_a_disconnect() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    respond(conv, stream_id)
    with pytest.raises(ClientDisconnected):
        conv.server.handle(SendData(stream_id, b"more"))


def test_many_concurrent_streams_are_served_side_by_side() -> None:
    conv = H3Conversation()
    stream_ids = []
    for index in range(40):
        stream_id = conv.new_stream()
        conv.client_h3.send_headers(stream_id, request_headers(f"/{index}".encode()), True)
        stream_ids.append(stream_id)
    events = conv.exchange()
    requests = [event for event in events if isinstance(event, RequestReceived)]
    assert [request.stream_id for request in requests] == stream_ids
    assert conv.server.active_streams == 40
    for stream_id in reversed(stream_ids):
        conv.server.handle(StartResponse(stream_id, 200, ()))
        conv.server.handle(SendData(stream_id, f"body {stream_id}".encode(), end_stream=True))
        conv.server.exchange_finished(stream_id)
    conv.exchange()
    for stream_id in stream_ids:
        assert conv.body(stream_id) == f"body {stream_id}".encode()
    assert conv.server.active_streams == 0


def test_quic_lets_the_client_open_no_more_streams_than_the_limit() -> None:
    conv = H3Conversation(h2_max_concurrent_streams=2)
    first, _ = conv.request()
    conv.request()
    third, events = conv.request()
    assert events == []  # QUIC's MAX_STREAMS holds it back at the client
    conv.server.handle(StartResponse(first, 200, ()))
    conv.server.handle(SendData(first, b"", end_stream=True))
    conv.server.exchange_finished(first)
    events = conv.exchange()
    assert [type(event) for event in events] == [RequestReceived, StreamEnded]
    assert events[0].stream_id == third


def test_requests_beyond_the_running_apps_limit_are_rejected() -> None:
    conv = H3Conversation(h2_max_concurrent_streams=2)
    running = [conv.request()[0], conv.request()[0]]
    for stream_id in running:
        conv.client.reset_stream(stream_id, _E.H3_REQUEST_CANCELLED)
        conv.client.stop_stream(stream_id, _E.H3_REQUEST_CANCELLED)
    conv.exchange()
    # The streams are gone, their apps still run: QUIC lets a new stream
    # open, the protocol refuses it.
    third, events = conv.request()
    assert events == []
    assert conv.reset_code(third) == _E.H3_REQUEST_REJECTED
    for stream_id in running:
        conv.server.exchange_finished(stream_id)
    conv.exchange()
    _, events = conv.request()
    assert isinstance(events[0], RequestReceived)


# -- request bodies and receive flow control ----------------------------------------------


def test_request_body_is_delivered_then_ended() -> None:
    conv = H3Conversation()
    stream_id, events = conv.request(b"/upload", method=b"POST", body=b"payload")
    assert isinstance(events[0], RequestReceived)
    assert events[1:] == [DataReceived(stream_id, b"payload"), StreamEnded(stream_id)]


def test_a_body_larger_than_the_window_flows_only_as_the_app_takes_it() -> None:
    window = 65535
    conv = H3Conversation(h2_initial_window_size=window)
    body = bytes(range(256)) * 1024  # 256 KiB, four windows
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/up", b"POST"))
    conv.client_h3.send_data(stream_id, body, end_stream=True)
    events = conv.exchange()
    received = body_of(events, stream_id)
    # Nothing is taken yet: at most one window arrived, and it stays so.
    assert 0 < len(received) <= window
    assert body_of(conv.exchange(), stream_id) == b""
    assert body_of(conv.elapse(0.5), stream_id) == b""
    rounds = 0
    while not any(isinstance(event, StreamEnded) for event in events):
        conv.server.acknowledge(stream_id, len(body_of(events, stream_id)))
        events = conv.exchange()
        received += body_of(events, stream_id)
        rounds += 1
        assert rounds < 50
    assert received == body
    assert rounds >= 3


def test_acknowledging_part_of_the_body_opens_only_that_much() -> None:
    window = 65535
    conv = H3Conversation(h2_initial_window_size=window)
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/up", b"POST"))
    conv.client_h3.send_data(stream_id, b"x" * (4 * window), end_stream=True)
    first = len(body_of(conv.exchange(), stream_id))
    conv.server.acknowledge(stream_id, window // 2)
    second = len(body_of(conv.exchange(), stream_id))
    assert first + second <= window + window // 2 + 64  # 64: DATA frame headers


def test_body_bytes_of_a_finished_exchange_do_not_stall_the_connection() -> None:
    window = 65535
    conv = H3Conversation(h2_initial_window_size=window, h2_max_concurrent_streams=4)
    # Each upload fills its window and its app ends without reading: the
    # connection's window (4 streams' worth) must not stay used up.
    for _ in range(8):
        stream_id = conv.new_stream()
        conv.client_h3.send_headers(stream_id, request_headers(b"/up", b"POST"))
        conv.client_h3.send_data(stream_id, b"y" * window, end_stream=False)
        events = conv.exchange()
        assert isinstance(events[0], RequestReceived)
        respond(conv, stream_id)
        assert conv.stop_code(stream_id) == _E.H3_NO_ERROR
    stream_id, events = conv.request(b"/last", method=b"POST", body=b"z" * 1000)
    assert body_of(events, stream_id) == b"z" * 1000


def test_a_body_over_the_declared_limit_is_refused_413() -> None:
    conv = H3Conversation(max_request_body_size=10)
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(
        stream_id, request_headers(b"/", b"POST", (b"content-length", b"100"))
    )
    events = conv.exchange()
    assert events == []
    assert conv.response_headers(stream_id)[b":status"] == b"413"
    assert conv.body(stream_id).startswith(b"413 ")
    assert conv.stop_code(stream_id) == _E.H3_NO_ERROR


def test_a_streamed_body_over_the_limit_is_refused_413_and_the_app_sees_a_reset() -> None:
    conv = H3Conversation(max_request_body_size=10)
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    events = conv.exchange()
    assert isinstance(events[0], RequestReceived)
    conv.client_h3.send_data(stream_id, b"x" * 20, end_stream=False)
    events = conv.exchange()
    assert events == [StreamReset(stream_id, _E.H3_REQUEST_CANCELLED)]
    assert conv.response_headers(stream_id)[b":status"] == b"413"


def test_a_header_list_over_the_limit_is_refused_431() -> None:
    conv = H3Conversation(h2_max_header_list_size=4096)
    stream_id, events = conv.request(b"/", (b"x-big", b"v" * 5000))
    assert events == []
    assert conv.response_headers(stream_id)[b":status"] == b"431"


def test_a_header_block_far_over_the_limit_ends_the_connection() -> None:
    conv = H3Conversation(h2_max_header_list_size=4096)
    headers = [(f"x-h{index}".encode(), b"v" * 100) for index in range(100)]
    _, events = conv.request(b"/", *headers)
    assert events == [ConnectionClosed()]
    assert conv.server.closed
    assert conv.server.error is not None
    assert "header block" in conv.server.error
    conv.elapse(1.0)
    terminated = conv.terminated()
    assert terminated is not None
    assert terminated.error_code == _E.H3_EXCESSIVE_LOAD


def test_expect_100_continue_is_reported_and_answered() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(
        stream_id, request_headers(b"/", b"POST", (b"expect", b"100-continue"))
    )
    (request,) = conv.exchange()
    assert isinstance(request, RequestReceived)
    assert request.expects_continue
    conv.server.handle(SendInformational(stream_id, 100))
    conv.exchange()
    assert conv.heads(stream_id)[0][b":status"] == b"100"


def test_a_malformed_request_is_reset_as_a_message_error() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    # aioquic itself ends the connection for most malformations; a
    # :protocol without CONNECT it lets through (RFC 9220 3 forbids it).
    conv.client_h3.send_headers(stream_id, [*request_headers(), (b":protocol", b"websocket")])
    assert conv.exchange() == []
    assert conv.reset_code(stream_id) == _E.H3_MESSAGE_ERROR
    assert not conv.server.closed


# -- response bodies and send flow control ------------------------------------------------


def test_a_response_larger_than_the_send_buffer_is_held_until_quic_sends_it() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    body = bytes(range(256)) * 2048  # 512 KiB
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, body, end_stream=True))
    assert conv.server.held(stream_id)
    events = conv.exchange()
    assert WindowOpened(stream_id) in events
    assert not conv.server.held(stream_id)
    assert conv.body(stream_id) == body
    assert conv.ended(stream_id)


def test_held_lasts_while_the_clients_window_is_shut() -> None:
    conv = H3Conversation(client_window=16384)
    stream_id, _ = conv.request()
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, b"z" * (4 * SEND_BUFFER)))
    # The client reads nothing: its window stays at 16 KiB, QUIC sends no
    # more than that, and the rest stays held, bounded by SEND_BUFFER.
    events = conv.exchange(deliver_to_client=False)
    assert WindowOpened(stream_id) not in events
    assert conv.server.held(stream_id)
    events = conv.exchange(deliver_to_client=False)
    assert conv.server.held(stream_id)
    # Once the client reads, its window opens and the data flows.
    events = conv.elapse(1.0)
    events += conv.exchange()
    assert WindowOpened(stream_id) in events
    assert conv.body(stream_id) == b"z" * (4 * SEND_BUFFER)


def test_trailers_end_the_response_when_the_client_accepts_them() -> None:
    conv = H3Conversation()
    stream_id, events = conv.request(b"/", (b"te", b"trailers"))
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.can_send_trailers
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, b"body"))
    conv.server.handle(SendTrailers(stream_id, ((b"x-checksum", b"abc"),)))
    conv.exchange()
    heads = conv.seen(h3_events.HeadersReceived, stream_id)
    assert dict(heads[-1].headers) == {b"x-checksum": b"abc"}
    assert heads[-1].stream_ended
    assert conv.body(stream_id) == b"body"


def test_trailers_are_not_offered_without_te_trailers() -> None:
    conv = H3Conversation()
    _, events = conv.request()
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert not request.can_send_trailers


def test_request_trailers_only_end_the_body() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    conv.client_h3.send_data(stream_id, b"abc", end_stream=False)
    conv.client_h3.send_headers(stream_id, [(b"x-sum", b"1")], end_stream=True)
    events = conv.exchange()
    assert events[1:] == [DataReceived(stream_id, b"abc"), StreamEnded(stream_id)]


def test_request_trailers_after_the_response_do_not_start_a_request() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    conv.exchange()
    # The stream is answered and forgotten while the trailers are on their way.
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, b"ok", end_stream=True))
    conv.server.exchange_finished(stream_id)
    conv.client_h3.send_headers(stream_id, [(b"x-sum", b"1")], end_stream=True)
    assert conv.exchange() == []
    assert conv.body(stream_id) == b"ok"
    assert conv.reset_code(stream_id) is None
    assert not conv.server.closed


def test_early_hints_precede_the_response() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(SendInformational(stream_id, 103, ((b"link", b"</s.css>; rel=preload"),)))
    respond(conv, stream_id)
    heads = conv.heads(stream_id)
    assert heads[0][b":status"] == b"103"
    assert heads[0][b"link"] == b"</s.css>; rel=preload"
    assert heads[1][b":status"] == b"200"


# -- resets -----------------------------------------------------------------------------


def test_a_client_reset_reaches_the_app_as_stream_reset() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    events = conv.exchange()
    assert isinstance(events[0], RequestReceived)
    conv.client.reset_stream(stream_id, _E.H3_REQUEST_CANCELLED)
    conv.client.stop_stream(stream_id, _E.H3_REQUEST_CANCELLED)
    events = conv.exchange()
    assert events == [StreamReset(stream_id, _E.H3_REQUEST_CANCELLED)]
    assert conv.server.phase is Phase.BUSY  # the app still runs until it notices
    with pytest.raises(ClientDisconnected):
        conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.exchange_finished(stream_id)
    assert conv.server.phase is Phase.IDLE


def test_a_stream_opened_and_reset_in_one_burst_never_reaches_an_app() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    opened = conv.client.datagrams_to_send(conv.clock)
    conv.client.reset_stream(stream_id, _E.H3_REQUEST_CANCELLED)
    reset = conv.client.datagrams_to_send(conv.clock)
    events = conv.server.receive_datagrams(
        [(data, CLIENT_ADDR) for data, _ in opened + reset], conv.clock
    )
    assert events == []
    assert conv.server.active_streams == 0
    conv.exchange()
    # The connection serves on.
    stream_id, events = conv.request()
    assert isinstance(events[0], RequestReceived)


def test_a_stop_sending_from_the_client_ends_the_exchange() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.client.stop_stream(stream_id, _E.H3_REQUEST_CANCELLED)
    events = conv.exchange()
    assert events == [StreamReset(stream_id, _E.H3_REQUEST_CANCELLED)]


def test_reset_stream_sends_reset_and_stop_sending_request_cancelled() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
    conv.exchange()
    conv.server.reset_stream(stream_id)
    conv.exchange()
    assert conv.reset_code(stream_id) == _E.H3_REQUEST_CANCELLED
    assert conv.stop_code(stream_id) == _E.H3_REQUEST_CANCELLED


def test_an_unfinished_response_is_reset_when_its_exchange_ends() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, b"part"))
    conv.server.exchange_finished(stream_id)
    conv.exchange()
    assert conv.reset_code(stream_id) == _E.H3_INTERNAL_ERROR


@pytest.mark.parametrize("headers_first", [True, False])
def test_rapid_resets_past_the_budget_end_the_connection(headers_first: bool) -> None:
    conv = H3Conversation(h2_max_resets=5)
    for _ in range(10):
        stream_id = conv.new_stream()
        conv.client_h3.send_headers(stream_id, request_headers(b"/", b"POST"))
        if headers_first:
            opened = conv.client.datagrams_to_send(conv.clock)
            conv.server.receive_datagrams([(data, CLIENT_ADDR) for data, _ in opened], conv.clock)
        # Otherwise the reset goes out alone: the stream is opened by it.
        conv.client.reset_stream(stream_id, _E.H3_REQUEST_CANCELLED)
        conv.exchange()
        if conv.server.closed:
            break
    assert conv.server.closed
    assert conv.server.error is not None
    assert "streams reset" in conv.server.error
    conv.elapse(1.0)
    terminated = conv.terminated()
    assert terminated is not None
    assert terminated.error_code == _E.H3_EXCESSIVE_LOAD


# -- CONNECT and WebSocket over HTTP/3 (RFC 9220) --------------------------------------------


def websocket_headers(*extra: tuple[bytes, bytes]) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"https"),
        (b":path", b"/ws"),
        (b":authority", AUTHORITY),
        (b"sec-websocket-version", b"13"),
        *extra,
    ]


def open_websocket(conv: H3Conversation) -> tuple[int, Connection]:
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, websocket_headers((b"sec-websocket-protocol", b"chat")))
    (request,) = conv.exchange()
    assert isinstance(request, RequestReceived)
    assert request.websocket == WebSocketRequest(subprotocols=("chat",))
    assert request.target == b"/ws"
    conv.server.handle(AcceptWebSocket(stream_id, "chat"))
    conv.exchange()
    headers = conv.response_headers(stream_id)
    assert headers[b":status"] == b"200"
    assert headers[b"sec-websocket-protocol"] == b"chat"
    return stream_id, Connection(ConnectionType.CLIENT)


def test_settings_offer_extended_connect_and_no_qpack_table() -> None:
    conv = H3Conversation(h2_max_header_list_size=8192)
    settings = conv.client_h3.received_settings
    assert settings is not None
    assert settings[Setting.ENABLE_CONNECT_PROTOCOL] == 1
    assert settings[Setting.MAX_FIELD_SECTION_SIZE] == 8192
    assert settings[Setting.QPACK_MAX_TABLE_CAPACITY] == 0


def test_extended_connect_is_not_offered_without_websocket() -> None:
    conv = H3Conversation(ws="none")
    settings = conv.client_h3.received_settings
    assert settings is not None
    assert settings[Setting.ENABLE_CONNECT_PROTOCOL] == 0
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(stream_id, websocket_headers())
    assert conv.exchange() == []
    assert conv.response_headers(stream_id)[b":status"] == b"501"


def test_websocket_messages_ride_data_frames_both_ways() -> None:
    conv = H3Conversation()
    stream_id, ws = open_websocket(conv)
    conv.client_h3.send_data(stream_id, ws.send(TextMessage("hello")), end_stream=False)
    events = conv.exchange()
    assert events == [MessageReceived(stream_id, "hello")]
    conv.server.acknowledge(stream_id, 0)
    conv.server.handle(SendMessage(stream_id, b"\x01\x02"))
    conv.exchange()
    ws.receive_data(conv.body(stream_id))
    (message,) = list(ws.events())
    assert isinstance(message, BytesMessage)
    assert message.data == b"\x01\x02"


def test_websocket_close_handshake_ends_the_stream() -> None:
    conv = H3Conversation()
    stream_id, ws = open_websocket(conv)
    conv.server.handle(CloseWebSocket(stream_id, 1000, "bye"))
    conv.exchange()
    ws.receive_data(conv.body(stream_id))
    (close,) = list(ws.events())
    assert isinstance(close, CloseConnection)
    assert not conv.ended(stream_id)  # the FIN waits for the client's close
    conv.client_h3.send_data(stream_id, ws.send(close.response()), end_stream=True)
    events = conv.exchange()
    assert events == [WebSocketClosed(stream_id, 1000, "bye")]
    assert conv.ended(stream_id)
    conv.server.exchange_finished(stream_id)
    assert conv.server.active_streams == 0
    assert conv.reset_code(stream_id) is None


def test_a_websocket_stream_ended_without_a_close_is_a_reset() -> None:
    conv = H3Conversation()
    stream_id, _ = open_websocket(conv)
    conv.client_h3.send_data(stream_id, b"", end_stream=True)
    events = conv.exchange()
    assert StreamReset(stream_id, 0) in events
    assert conv.reset_code(stream_id) == _E.H3_REQUEST_CANCELLED


def test_websocket_without_version_13_is_refused_426() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    headers = [h for h in websocket_headers() if h[0] != b"sec-websocket-version"]
    conv.client_h3.send_headers(stream_id, [*headers, (b"sec-websocket-version", b"8")])
    assert conv.exchange() == []
    response = conv.response_headers(stream_id)
    assert response[b":status"] == b"426"
    assert response[b"sec-websocket-version"] == b"13"


def test_a_plain_connect_is_answered_501() -> None:
    conv = H3Conversation()
    stream_id = conv.new_stream()
    conv.client_h3.send_headers(
        stream_id, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    )
    assert conv.exchange() == []
    assert conv.response_headers(stream_id)[b":status"] == b"501"


# -- shutdown -------------------------------------------------------------------------------


def test_graceful_shutdown_finishes_the_stream_in_flight_then_closes() -> None:
    conv = H3Conversation()
    in_flight, _ = conv.request()
    conv.server.start_shutdown()
    assert conv.server.draining
    conv.exchange()
    assert not conv.server.closed
    # A request opened after the GOAWAY is not processed (RFC 9114 5.2).
    late, events = conv.request()
    assert events == []
    assert conv.reset_code(late) == _E.H3_REQUEST_REJECTED
    conv.server.handle(StartResponse(in_flight, 200, ()))
    conv.server.handle(SendData(in_flight, b"x" * 200_000, end_stream=True))
    conv.server.exchange_finished(in_flight)
    events = conv.exchange()
    assert conv.body(in_flight) == b"x" * 200_000
    assert conv.server.closed
    assert ConnectionClosed() in events
    assert conv.server.error is None
    conv.elapse(2.0)
    terminated = conv.terminated()
    assert terminated is not None
    assert terminated.error_code == _E.H3_NO_ERROR
    assert conv.server.terminated
    assert conv.server.next_timer() is None


def test_shutdown_with_nothing_in_flight_closes_at_once() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    respond(conv, stream_id)
    conv.server.start_shutdown()
    assert conv.server.closed
    conv.exchange()
    conv.elapse(2.0)
    assert conv.terminated() is not None


def test_the_idle_timeout_ends_the_connection() -> None:
    conv = H3Conversation()
    events = conv.elapse(120.0)
    assert events == [ConnectionClosed()]
    assert conv.server.closed
    assert conv.server.terminated


def test_a_client_that_closes_is_reported() -> None:
    conv = H3Conversation()
    stream_id, _ = conv.request()
    conv.client.close(error_code=_E.H3_NO_ERROR)
    events = conv.exchange()
    assert events == [ConnectionClosed()]
    assert conv.server.error is None
    with pytest.raises(ClientDisconnected):
        conv.server.handle(StartResponse(stream_id, 200, ()))


# -- garbage ----------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(datagrams=st.lists(st.binary(max_size=1500), min_size=1, max_size=5))
def test_any_datagrams_never_raise_out_of_an_open_connection(datagrams: list[bytes]) -> None:
    conv = _shared_conversation()
    for data in datagrams:
        events = conv.server.receive_datagram(data, CLIENT_ADDR, conv.clock)
        assert all(isinstance(event, ConnectionClosed) for event in events)
    conv.server.datagrams_to_send(conv.clock)


@settings(max_examples=100, deadline=None)
@given(data=st.binary(min_size=1, max_size=1500))
def test_any_datagram_never_raises_out_of_a_new_connection(data: bytes) -> None:
    conv = _shared_conversation()
    from tricorn import Config
    from tricorn._protocol.http3 import HTTP3Protocol

    server = HTTP3Protocol(
        Config(), conv.server_configuration, original_destination_connection_id=b"\x01" * 8
    )
    assert server.receive_datagram(data, CLIENT_ADDR, 1.0) in ([], [ConnectionClosed()])
    server.datagrams_to_send(1.0)
    server.next_timer()


def test_garbage_leaves_an_open_connection_serving() -> None:
    conv = H3Conversation()
    for data in (b"", b"\x00" * 1200, b"\x40" + bytes(range(256)) * 4, b"\xc0\x00\x00\x00\x01"):
        assert conv.server.receive_datagram(data, CLIENT_ADDR, conv.clock) == []
    _stream_id, events = conv.request()
    assert isinstance(events[0], RequestReceived)


_SHARED: list[H3Conversation] = []


def _shared_conversation() -> H3Conversation:
    """One handshake for all hypothesis examples: a handshake costs milliseconds."""
    if not _SHARED:
        _SHARED.append(H3Conversation())
    return _SHARED[0]
