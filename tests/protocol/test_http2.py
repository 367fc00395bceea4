"""HTTP2Protocol driven by h2's own client side: streams, flow control, extensions, errors."""

from __future__ import annotations

import h2.connection
import h2.errors
import h2.events
import h2.settings
import pytest
from hyperframe.frame import ContinuationFrame, HeadersFrame, PingFrame, RstStreamFrame
from wsproto.connection import Connection, ConnectionType
from wsproto.events import BytesMessage, CloseConnection, TextMessage

from tricorn._protocol import (
    PREFACE,
    AcceptWebSocket,
    CloseWebSocket,
    ConnectionClosed,
    DataReceived,
    MessageReceived,
    PushPromise,
    RequestReceived,
    SendData,
    SendInformational,
    SendMessage,
    SendTrailers,
    StartResponse,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WindowOpened,
)
from tricorn.errors import ClientDisconnected

from ._h2client import AUTHORITY, H2Conversation, request_headers

_E = h2.errors.ErrorCodes


def respond(conv: H2Conversation, stream_id: int, body: bytes = b"ok", status: int = 200) -> None:
    conv.server.handle(StartResponse(stream_id, status, ((b"content-type", b"text/plain"),)))
    conv.server.handle(SendData(stream_id, body, end_stream=True))
    conv.server.exchange_finished(stream_id)
    conv.exchange()


# -- requests and responses ---------------------------------------------------------


def test_get_becomes_a_request_with_host_from_authority() -> None:
    conv = H2Conversation()
    stream_id, events = conv.request(b"/path?q=1", (b"accept", b"*/*"))
    assert events == [
        RequestReceived(
            stream_id=stream_id,
            method=b"GET",
            target=b"/path?q=1",
            http_version="2",
            headers=((b"host", AUTHORITY), (b"accept", b"*/*")),
            can_send_early_hints=True,
            can_push=True,
        ),
        StreamEnded(stream_id),
    ]


def test_response_carries_status_default_headers_and_body() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    respond(conv, stream_id, b"hello")
    headers = conv.response_headers(stream_id)
    assert headers[b":status"] == b"200"
    assert headers[b"server"] == b"tricorn"
    assert conv.body(stream_id) == b"hello"
    assert conv.seen(h2.events.StreamEnded, stream_id)


def test_empty_body_ends_the_stream_on_the_headers_frame() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    respond(conv, stream_id, b"", status=204)
    (response,) = conv.seen(h2.events.ResponseReceived, stream_id)
    assert response.stream_ended is not None
    assert not conv.seen(h2.events.DataReceived, stream_id)


def test_head_response_sends_no_body() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request(method=b"HEAD")
    respond(conv, stream_id, b"dropped")
    assert conv.body(stream_id) == b""
    assert conv.seen(h2.events.StreamEnded, stream_id)


def test_split_cookie_headers_are_joined_for_the_app() -> None:
    conv = H2Conversation()
    _, events = conv.request(b"/", (b"cookie", b"a=1"), (b"cookie", b"b=2"))
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert (b"cookie", b"a=1; b=2") in request.headers


def test_connection_specific_and_upper_case_app_headers_are_fixed() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(
        StartResponse(
            stream_id,
            200,
            (
                (b"Connection", b"keep-alive"),
                (b"X-Thing", b"1"),
                (b"transfer-encoding", b"chunked"),
            ),
        )
    )
    conv.server.handle(SendData(stream_id, b"", end_stream=True))
    conv.exchange()
    headers = conv.response_headers(stream_id)
    assert headers[b"x-thing"] == b"1"
    assert b"connection" not in headers
    assert b"transfer-encoding" not in headers


def test_request_body_arrives_as_data_then_end() -> None:
    conv = H2Conversation()
    stream_id, events = conv.request(method=b"POST", body=b"payload")
    assert events[1:] == [DataReceived(stream_id, b"payload"), StreamEnded(stream_id)]


def test_many_streams_are_served_in_any_order() -> None:
    conv = H2Conversation()
    ids = [conv.request(f"/{n}".encode())[0] for n in range(5)]
    for stream_id in reversed(ids):
        respond(conv, stream_id, str(stream_id).encode())
    assert [conv.body(stream_id) for stream_id in ids] == [str(i).encode() for i in ids]


# -- flow control -----------------------------------------------------------------------


def test_response_beyond_the_window_is_held_until_window_update() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    body = b"x" * 100_000
    conv.server.handle(StartResponse(stream_id, 200, ()))
    conv.server.handle(SendData(stream_id, body, end_stream=True))
    conv.exchange()
    # The client's default window is 65535 bytes; h2 acknowledges nothing
    # by itself, so the rest waits.
    assert len(conv.body(stream_id)) == 65535
    assert conv.server.held(stream_id)
    conv.client.acknowledge_received_data(65535, stream_id)
    events = conv.exchange()
    assert WindowOpened(stream_id) in events
    assert not conv.server.held(stream_id)
    assert conv.body(stream_id) == body
    assert conv.seen(h2.events.StreamEnded, stream_id)


def test_request_data_is_acknowledged_only_when_the_app_took_it() -> None:
    conv = H2Conversation()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"))
    for _ in range(4):
        conv.client.send_data(stream_id, b"a" * 10_000)
    conv.exchange()
    window = conv.client.local_flow_control_window(stream_id)
    assert window == 65535 - 40_000
    conv.server.acknowledge(stream_id, 40_000)
    conv.exchange()
    assert conv.client.local_flow_control_window(stream_id) == 65535


def test_one_stalled_stream_does_not_starve_the_connection_window() -> None:
    conv = H2Conversation(h2_initial_window_size=65535, h2_max_concurrent_streams=4)
    stalled = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stalled, request_headers(method=b"POST"))
    for _ in range(4):
        conv.client.send_data(stalled, b"a" * 16383)
    conv.exchange()
    # The stalled app has read nothing; another stream can still send.
    other = conv.client.get_next_available_stream_id()
    conv.client.send_headers(other, request_headers(method=b"POST"))
    assert conv.client.local_flow_control_window(other) == 65535


# -- resets and limits -----------------------------------------------------------------


def test_client_reset_reports_that_stream_only() -> None:
    conv = H2Conversation()
    first, _ = conv.request(b"/1")
    second, _ = conv.request(b"/2")
    conv.client.reset_stream(first, _E.CANCEL)
    events = conv.exchange()
    assert events == [StreamReset(first, int(_E.CANCEL))]
    with pytest.raises(ClientDisconnected):
        conv.server.handle(StartResponse(first, 200, ()))
    respond(conv, second, b"fine")
    assert conv.body(second) == b"fine"


def test_streams_whose_app_still_runs_count_against_the_limit_after_a_reset() -> None:
    conv = H2Conversation(h2_max_concurrent_streams=2)
    for path in (b"/1", b"/2"):
        stream_id, _ = conv.request(path)
        conv.client.reset_stream(stream_id, _E.CANCEL)
        conv.exchange()
    # Both apps still run: the third stream is refused, not served.
    third, events = conv.request(b"/3")
    assert events == []
    (reset,) = conv.seen(h2.events.StreamReset, third)
    assert reset.error_code == _E.REFUSED_STREAM


def test_rapid_reset_spends_the_budget_and_ends_with_enhance_your_calm() -> None:
    conv = H2Conversation(h2_max_resets=20)
    for _ in range(25):
        stream_id, _ = conv.request()
        conv.client.reset_stream(stream_id, _E.CANCEL)
        conv.exchange()
        conv.server.exchange_finished(stream_id)
        if conv.server.closed:
            break
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.ENHANCE_YOUR_CALM
    assert conv.server.closed


def test_budget_refills_with_time() -> None:
    conv = H2Conversation(h2_max_control_frames=10)
    for _ in range(3):
        for _ in range(8):
            conv.client.ping(b"12345678")
        conv.exchange()
        conv.clock += 10.0
    assert conv.goaway() is None
    assert len(conv.seen(h2.events.PingAckReceived)) == 24


def test_ping_flood_ends_with_enhance_your_calm() -> None:
    conv = H2Conversation(h2_max_control_frames=50)
    flood = b"".join(PingFrame(0, opaque_data=b"12345678").serialize() for _ in range(100))
    events = conv.send_raw(flood)
    assert ConnectionClosed() in events
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.ENHANCE_YOUR_CALM


def test_a_ping_flood_in_one_read_gets_no_more_answers_than_the_budget() -> None:
    # Budgets are checked per frame: 64 KiB of PINGs in one read (3,855 of
    # them) get the budget's worth of ACKs (and one for the PING that
    # overdraws it, answered as it is read), then the GOAWAY.
    conv = H2Conversation(h2_max_control_frames=50)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    events = conv.send_raw(ping * (65536 // len(ping)))
    assert ConnectionClosed() in events
    assert len(conv.seen(h2.events.PingAckReceived)) <= 51
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.ENHANCE_YOUR_CALM


def test_no_stream_is_opened_after_the_frame_that_spent_the_budget() -> None:
    # Requests behind the condemning frame in the same read are never parsed.
    conv = H2Conversation(h2_max_control_frames=5)
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    request = HeadersFrame(1)
    request.data = conv.client.encoder.encode(request_headers())
    request.flags = {"END_HEADERS", "END_STREAM"}
    events = conv.send_raw(ping * 10 + request.serialize())
    assert not any(isinstance(event, RequestReceived) for event in events)
    assert ConnectionClosed() in events


def test_invalid_preface_is_a_protocol_error() -> None:
    conv = H2Conversation()
    fresh = type(conv.server)(conv.server._config)  # a server that saw no preface yet
    fresh.initiate()
    fresh.data_to_send()
    events = fresh.receive_data(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
    assert events == [ConnectionClosed()]
    assert fresh.closed
    assert fresh.data_to_send()[3:4] == b"\x07"  # a GOAWAY frame went out


def test_headers_on_an_even_stream_are_a_connection_error() -> None:
    conv = H2Conversation()
    frame = HeadersFrame(2)
    frame.data = conv.client.encoder.encode(request_headers())
    frame.flags = {"END_HEADERS", "END_STREAM"}
    conv.send_raw(frame.serialize())
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.PROTOCOL_ERROR


def test_rst_stream_on_idle_stream_is_a_connection_error() -> None:
    conv = H2Conversation()
    conv.send_raw(RstStreamFrame(5, error_code=0).serialize())
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.PROTOCOL_ERROR


def test_body_over_the_limit_is_answered_413() -> None:
    conv = H2Conversation(max_request_body_size=10)
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"))
    conv.client.send_data(stream_id, b"a" * 20)
    events = conv.exchange()
    # Refused within the read that opened it: no app is ever started for it.
    assert events == []
    assert conv.response_headers(stream_id)[b":status"] == b"413"


def test_body_over_the_limit_in_a_later_read_resets_the_running_exchange() -> None:
    conv = H2Conversation(max_request_body_size=10)
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"))
    assert isinstance(conv.exchange()[0], RequestReceived)
    conv.client.send_data(stream_id, b"a" * 20)
    events = conv.exchange()
    assert StreamReset(stream_id, int(_E.CANCEL)) in events
    assert conv.response_headers(stream_id)[b":status"] == b"413"


def test_a_stream_opened_and_reset_in_one_read_never_reaches_an_app() -> None:
    # Rapid reset: HEADERS then RST_STREAM in the same read.
    conv = H2Conversation()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"))
    conv.client.send_data(stream_id, b"body")
    conv.client.reset_stream(stream_id)
    assert conv.exchange() == []
    _, events = conv.request(b"/next")  # and the connection serves on
    assert isinstance(events[0], RequestReceived)


def test_declared_content_length_over_the_limit_never_reaches_the_app() -> None:
    conv = H2Conversation(max_request_body_size=10)
    stream_id, events = conv.request(b"/", (b"content-length", b"100"), method=b"POST")
    assert events == []
    assert conv.response_headers(stream_id)[b":status"] == b"413"


def test_plain_connect_is_answered_501() -> None:
    conv = H2Conversation()
    # RFC 9113 8.5: a plain CONNECT has no :scheme or :path; h2 before 4.4
    # refuses to send one, though its server side reads one as it should.
    conv.client.config.validate_outbound_headers = False
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(
        stream_id, [(b":method", b"CONNECT"), (b":authority", b"example.com:443")]
    )
    events = conv.exchange()
    assert events == []
    assert conv.response_headers(stream_id)[b":status"] == b"501"


# -- extensions -----------------------------------------------------------------------


def test_trailers_are_offered_with_te_trailers_and_sent_after_the_body() -> None:
    conv = H2Conversation()
    stream_id, events = conv.request(b"/", (b"te", b"trailers"))
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.can_send_trailers
    conv.server.handle(StartResponse(stream_id, 200, ((b"trailer", b"x-checksum"),)))
    conv.server.handle(SendData(stream_id, b"body"))
    conv.server.handle(SendTrailers(stream_id, ((b"x-checksum", b"abc"),)))
    conv.exchange()
    (trailers,) = conv.seen(h2.events.TrailersReceived, stream_id)
    assert dict(trailers.headers) == {b"x-checksum": b"abc"}
    assert conv.body(stream_id) == b"body"


def test_no_trailers_without_te_trailers() -> None:
    conv = H2Conversation()
    _, events = conv.request()
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert not request.can_send_trailers


def test_early_hints_go_out_before_the_response() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(SendInformational(stream_id, 103, ((b"link", b"</a.css>; rel=preload"),)))
    respond(conv, stream_id)
    (hint,) = conv.seen(h2.events.InformationalResponseReceived, stream_id)
    assert dict(hint.headers)[b":status"] == b"103"
    assert dict(hint.headers)[b"link"] == b"</a.css>; rel=preload"


def test_push_promise_opens_a_pushed_request() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    conv.server.handle(PushPromise(stream_id, b"/style.css", ((b"host", AUTHORITY),)))
    pushed = conv.server.pending_events()
    assert isinstance(pushed[0], RequestReceived)
    promised = pushed[0].stream_id
    assert promised % 2 == 0
    assert pushed[0].target == b"/style.css"
    assert pushed[1:] == [StreamEnded(promised)]
    respond(conv, promised, b"body{}")
    respond(conv, stream_id)
    (promise,) = conv.seen(h2.events.PushedStreamReceived)
    assert dict(promise.headers)[b":path"] == b"/style.css"
    assert conv.body(promised) == b"body{}"


def test_push_is_not_offered_when_the_client_disabled_it() -> None:
    conv = H2Conversation(client_settings={h2.settings.SettingCodes.ENABLE_PUSH: 0})
    _, events = conv.request()
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert not request.can_push


# -- WebSocket over HTTP/2 (RFC 8441) ----------------------------------------------------


def open_websocket(conv: H2Conversation) -> tuple[int, Connection]:
    assert conv.client.remote_settings.enable_connect_protocol == 1
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/ws"),
            (b":authority", AUTHORITY),
            (b"sec-websocket-version", b"13"),
            (b"sec-websocket-protocol", b"chat"),
        ],
    )
    events = conv.exchange()
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.websocket is not None
    assert request.websocket.subprotocols == ("chat",)
    conv.server.handle(AcceptWebSocket(stream_id, "chat"))
    conv.exchange()
    headers = conv.response_headers(stream_id)
    assert headers[b":status"] == b"200"
    assert headers[b"sec-websocket-protocol"] == b"chat"
    # RFC 8441 5: the frames ride in DATA; a client-side wsproto reads them.
    return stream_id, Connection(ConnectionType.CLIENT)


def test_settings_offer_extended_connect() -> None:
    conv = H2Conversation()
    assert conv.client.remote_settings.enable_connect_protocol == 1


def test_extended_connect_is_not_offered_without_websocket() -> None:
    conv = H2Conversation(ws="none")
    assert conv.client.remote_settings.enable_connect_protocol == 0


def test_websocket_messages_ride_data_frames_both_ways() -> None:
    conv = H2Conversation()
    stream_id, ws = open_websocket(conv)
    conv.client.send_data(stream_id, ws.send(TextMessage("hello")))
    events = conv.exchange()
    assert MessageReceived(stream_id, "hello") in events
    conv.server.handle(SendMessage(stream_id, b"\x01\x02"))
    conv.exchange()
    ws.receive_data(conv.body(stream_id))
    (message,) = list(ws.events())
    assert isinstance(message, BytesMessage)
    assert message.data == b"\x01\x02"


def test_websocket_close_handshake_ends_the_stream() -> None:
    conv = H2Conversation()
    stream_id, ws = open_websocket(conv)
    conv.server.handle(CloseWebSocket(stream_id, 1000, "bye"))
    conv.exchange()
    ws.receive_data(conv.body(stream_id))
    (close,) = list(ws.events())
    assert isinstance(close, CloseConnection)
    conv.client.send_data(stream_id, ws.send(close.response()), end_stream=True)
    events = conv.exchange()
    assert WebSocketClosed(stream_id, 1000, "bye") in events
    assert conv.seen(h2.events.StreamEnded, stream_id)


def test_websocket_without_version_13_is_refused() -> None:
    conv = H2Conversation()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(
        stream_id,
        [
            (b":method", b"CONNECT"),
            (b":protocol", b"websocket"),
            (b":scheme", b"http"),
            (b":path", b"/ws"),
            (b":authority", AUTHORITY),
            (b"sec-websocket-version", b"8"),
        ],
    )
    assert conv.exchange() == []
    headers = conv.response_headers(stream_id)
    assert headers[b":status"] == b"426"
    assert headers[b"sec-websocket-version"] == b"13"


# -- shutdown ----------------------------------------------------------------------------


def test_graceful_goaway_lets_in_flight_streams_finish_and_refuses_new_ones() -> None:
    conv = H2Conversation()
    in_flight, _ = conv.request(b"/slow")
    conv.server.start_shutdown()
    conv.exchange()
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.NO_ERROR
    assert goaway.last_stream_id == in_flight
    assert not conv.server.closed
    # h2's client treats any GOAWAY as the end and would refuse the response
    # still in flight, which RFC 9113 6.8 lets through; it is put back.
    conv.client.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
    late = conv.client.get_next_available_stream_id()
    conv.client.send_headers(late, request_headers(b"/late"), end_stream=True)
    assert conv.exchange() == []
    (refused,) = conv.seen(h2.events.StreamReset, late)
    assert refused.error_code == _E.REFUSED_STREAM
    respond(conv, in_flight, b"done")
    assert conv.body(in_flight) == b"done"
    assert conv.server.closed


def test_preface_constant_matches_rfc() -> None:
    assert PREFACE == b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def test_continuation_flood_is_bounded_by_bytes_at_the_largest_frame_size() -> None:
    # h2 alone would hold 64 CONTINUATION frames: 1 GiB at this frame size.
    conv = H2Conversation(h2_max_frame_size=16_777_215, h2_max_header_list_size=16384)
    headers = HeadersFrame(1)
    headers.data = conv.client.encoder.encode(request_headers())
    conv.send_raw(headers.serialize())
    chunk = ContinuationFrame(1)
    chunk.data = b"\x00" * 100_000
    sent = 0
    while not conv.server.closed and sent < 64:
        conv.send_raw(chunk.serialize())
        sent += 1
    assert conv.server.closed
    assert sent * 100_000 <= 4 * 16384 + 100_000
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.ENHANCE_YOUR_CALM


def test_the_connection_window_spans_sixteen_streams_not_all_of_them() -> None:
    # The most request body one connection can make us hold, whatever
    # h2_max_concurrent_streams allows (100 streams x 64 KiB was 6.5 MB).
    conv = H2Conversation(h2_max_concurrent_streams=100)
    assert conv.client.outbound_flow_control_window == 16 * 65535
    small = H2Conversation(h2_max_concurrent_streams=4)
    assert small.client.outbound_flow_control_window == 4 * 65535
