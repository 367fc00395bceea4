"""HTTP1Protocol, driven by h11's client side: no event loop, no sockets."""

from __future__ import annotations

import h11
import pytest

from tricorn._protocol.events import (
    ConnectionClosed,
    DataReceived,
    RequestReceived,
    RequestRejected,
    SendData,
    SendInformational,
    StartResponse,
    StreamEnded,
)
from tricorn.errors import AppProtocolError, ClientDisconnected

from ._client import (
    DEFAULT_HEADERS,
    Conversation,
    body_of,
    get,
    make_server,
    merge_data,
    request_bytes,
    serve,
)

HOST = (b"host", b"example.com")


def post(body: bytes, *headers: tuple[bytes, bytes]) -> list[h11.Event]:
    """A POST with a Content-Length body, as h11 events."""
    return [
        h11.Request(
            method="POST",
            target="/upload",
            headers=[HOST, (b"content-length", str(len(body)).encode()), *headers],
        ),
        h11.Data(data=body),
        h11.EndOfMessage(),
    ]


def chunked_post(*chunks: bytes) -> list[h11.Event]:
    return [
        h11.Request(method="POST", target="/", headers=[HOST, (b"transfer-encoding", b"chunked")]),
        *(h11.Data(data=chunk) for chunk in chunks),
        h11.EndOfMessage(),
    ]


def parse_response(raw: bytes, method: bytes = b"GET") -> list[h11.Event]:
    """Parse a response to a request h11 could not have written itself.

    The client first sends a stand-in request head (never on the wire) so
    its state machine expects a response; ``raw`` is then read until EOF.
    """
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method=method, target="/", headers=[HOST]))
    client.receive_data(raw)
    client.receive_data(b"")
    events: list[h11.Event] = []
    while not isinstance(event := client.next_event(), type):
        events.append(event)
        if isinstance(event, h11.ConnectionClosed):
            break
    return events


def response_of(events: list[h11.Event]) -> h11.Response:
    responses = [event for event in events if isinstance(event, h11.Response)]
    assert len(responses) == 1, events
    return responses[0]


def header_values(response: h11.Response, name: bytes) -> list[bytes]:
    return [value for key, value in response.headers if key == name]


def client_body(events: list[h11.Event]) -> bytes:
    return b"".join(bytes(event.data) for event in events if isinstance(event, h11.Data))


# -- requests in, responses out ------------------------------------------------


def test_simple_get_yields_request_then_stream_end() -> None:
    conv = Conversation()
    events = conv.send(*get(b"/path?q=1", (b"accept", b"*/*")))
    assert events == [
        RequestReceived(
            stream_id=1,
            method=b"GET",
            target=b"/path?q=1",
            http_version="1.1",
            headers=(HOST, (b"accept", b"*/*")),
            expects_continue=False,
            can_send_early_hints=True,
        ),
        StreamEnded(1),
    ]
    assert conv.server.request_complete
    assert not conv.server.response_started

    reply = conv.respond(200, b"hello")
    assert response_of(reply).status_code == 200
    assert client_body(reply) == b"hello"
    assert isinstance(reply[-1], h11.EndOfMessage)
    assert conv.server.response_complete
    assert conv.server.reusable


def test_keep_alive_serves_two_sequential_requests_after_start_next_cycle() -> None:
    conv = Conversation()
    assert isinstance(conv.send(*get(b"/one"))[0], RequestReceived)
    conv.respond(200, b"1")
    assert conv.server.reusable
    assert conv.next_cycle() == []
    assert conv.server.idle

    events = conv.send(*get(b"/two"))
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/two"
    reply = conv.respond(200, b"2")
    assert client_body(reply) == b"2"
    assert conv.server.reusable


def test_pipelined_requests_in_one_chunk_are_answered_in_order() -> None:
    server = make_server()
    wire = request_bytes(*get(b"/first"), *get(b"/second"))
    events = server.receive_data(wire)
    # Only the first request; the second waits in the buffer until the next cycle.
    assert [type(event) for event in events] == [RequestReceived, StreamEnded]
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/first"
    assert not server.idle

    server.handle(StartResponse(1, 200, ((b"content-length", b"5"),)))
    server.handle(SendData(1, b"first", end_stream=True))
    second = server.start_next_cycle()
    assert [type(event) for event in second] == [RequestReceived, StreamEnded]
    assert isinstance(second[0], RequestReceived)
    assert second[0].target == b"/second"
    server.handle(StartResponse(1, 200, ((b"content-length", b"6"),)))
    server.handle(SendData(1, b"second", end_stream=True))

    client = h11.Connection(h11.CLIENT)
    bodies = []
    output = server.data_to_send()
    client.receive_data(output)
    for _ in range(2):
        client.send(get()[0])
        client.send(h11.EndOfMessage())
        parsed = []
        while not isinstance(event := client.next_event(), type):
            parsed.append(event)
        bodies.append(client_body(parsed))
        client.start_next_cycle()
    assert bodies == [b"first", b"second"]


def test_content_length_body_is_delivered_then_stream_ends() -> None:
    conv = Conversation()
    events = conv.send(*post(b"name=value&x=1"))
    assert isinstance(events[0], RequestReceived)
    assert (b"content-length", b"14") in events[0].headers
    assert body_of(events) == b"name=value&x=1"
    assert events[-1] == StreamEnded(1)


def test_chunked_request_body_is_delivered_dechunked() -> None:
    conv = Conversation()
    events = conv.send(*chunked_post(b"hello ", b"chunked ", b"world"))
    assert isinstance(events[0], RequestReceived)
    assert body_of(events) == b"hello chunked world"
    assert all(b"\r\n" not in event.data for event in events if isinstance(event, DataReceived))
    assert events[-1] == StreamEnded(1)


def test_response_without_content_length_is_chunked() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ((b"content-type", b"text/plain"),)))
    conv.server.handle(SendData(1, b"abc"))
    conv.server.handle(SendData(1, b"def", end_stream=True))
    raw = conv.server.data_to_send()
    assert b"\r\n3\r\nabc\r\n" in raw  # the chunk framing itself

    conv.client.receive_data(raw)
    parsed = []
    while not isinstance(event := conv.client.next_event(), type):
        parsed.append(event)
    response = response_of(parsed)
    assert header_values(response, b"transfer-encoding") == [b"chunked"]
    assert header_values(response, b"content-length") == []
    assert client_body(parsed) == b"abcdef"
    assert conv.server.reusable


def test_http10_request_gets_close_delimited_response_and_is_not_reusable() -> None:
    server = make_server()
    # h11 only writes HTTP/1.1 requests, so the HTTP/1.0 one is spelled out.
    events = server.receive_data(b"GET /old HTTP/1.0\r\nhost: example.com\r\n\r\n")
    assert isinstance(events[0], RequestReceived)
    assert events[0].http_version == "1.0"
    server.handle(StartResponse(1, 200, ()))
    server.handle(SendData(1, b"to the end of the connection", end_stream=True))
    assert not server.reusable
    assert not server.keep_alive

    parsed = parse_response(server.data_to_send())
    response = response_of(parsed)
    assert header_values(response, b"transfer-encoding") == []  # HTTP/1.0 knows no chunks
    assert header_values(response, b"connection") == [b"close"]
    assert client_body(parsed) == b"to the end of the connection"


def test_http10_request_gets_content_length_response_when_the_app_sets_one() -> None:
    server = make_server()
    server.receive_data(b"GET / HTTP/1.0\r\n\r\n")
    server.handle(StartResponse(1, 200, ((b"content-length", b"2"),)))
    server.handle(SendData(1, b"ok", end_stream=True))
    assert not server.reusable
    parsed = parse_response(server.data_to_send())
    assert header_values(response_of(parsed), b"content-length") == [b"2"]
    assert client_body(parsed) == b"ok"


def test_connection_close_request_makes_the_connection_not_reusable() -> None:
    conv = Conversation()
    conv.send(*get(b"/", (b"connection", b"close")))
    reply = conv.respond(200, b"bye")
    assert header_values(response_of(reply), b"connection") == [b"close"]
    assert conv.server.response_complete
    assert not conv.server.reusable


def test_expect_100_continue_is_flagged_and_informational_writes_100_continue() -> None:
    conv = Conversation()
    events = conv.send(
        h11.Request(
            method="POST",
            target="/",
            headers=[HOST, (b"content-length", b"4"), (b"expect", b"100-continue")],
        )
    )
    assert events == [
        RequestReceived(
            stream_id=1,
            method=b"POST",
            target=b"/",
            http_version="1.1",
            headers=(HOST, (b"content-length", b"4"), (b"expect", b"100-continue")),
            expects_continue=True,
            can_send_early_hints=True,
        )
    ]
    conv.server.handle(SendInformational(1, 100))
    raw = conv.server.data_to_send()
    assert raw.startswith(b"HTTP/1.1 100 Continue\r\n")
    assert not conv.server.response_started  # a 1xx is not the response

    conv.client.receive_data(raw)
    interim = conv.client.next_event()
    assert isinstance(interim, h11.InformationalResponse)
    assert interim.status_code == 100
    assert body_of(conv.send(h11.Data(data=b"body"), h11.EndOfMessage())) == b"body"


def test_head_response_carries_no_body_but_keeps_content_length() -> None:
    conv = Conversation()
    conv.send(h11.Request(method="HEAD", target="/", headers=[HOST]), h11.EndOfMessage())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"11"),)))
    conv.server.handle(SendData(1, b"hello world", end_stream=True))
    raw = conv.server.data_to_send()
    assert raw.endswith(b"\r\n\r\n")
    assert b"hello world" not in raw

    conv.client.receive_data(raw)
    parsed = []
    while not isinstance(event := conv.client.next_event(), type):
        parsed.append(event)
    assert header_values(response_of(parsed), b"content-length") == [b"11"]
    assert client_body(parsed) == b""
    assert isinstance(parsed[-1], h11.EndOfMessage)
    assert conv.server.reusable


@pytest.mark.parametrize("status", [204, 304])
def test_no_content_statuses_carry_no_body(status: int) -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, status, ()))
    conv.server.handle(SendData(1, b"ignored body", end_stream=True))
    raw = conv.server.data_to_send()
    assert raw.endswith(b"\r\n\r\n")
    assert b"ignored body" not in raw

    conv.client.receive_data(raw)
    parsed = []
    while not isinstance(event := conv.client.next_event(), type):
        parsed.append(event)
    response = response_of(parsed)
    assert response.status_code == status
    assert header_values(response, b"transfer-encoding") == []
    assert client_body(parsed) == b""
    assert conv.server.reusable


# -- headers the server adds ----------------------------------------------------


def test_default_headers_are_added_when_the_app_sets_none() -> None:
    conv = Conversation()
    conv.send(*get())
    response = response_of(conv.respond(200, b""))
    for name, value in DEFAULT_HEADERS:
        assert header_values(response, name) == [value]


def test_default_headers_are_not_duplicated_when_the_app_sets_them() -> None:
    conv = Conversation()
    conv.send(*get())
    response = response_of(
        conv.respond(
            200,
            b"",
            headers=(
                (b"Server", b"my-app"),
                (b"date", b"Fri, 02 Jan 1970 00:00:00 GMT"),
                (b"content-length", b"0"),
            ),
        )
    )
    assert header_values(response, b"server") == [b"my-app"]
    assert header_values(response, b"date") == [b"Fri, 02 Jan 1970 00:00:00 GMT"]


def test_stop_keep_alive_adds_connection_close_and_ends_reuse() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.stop_keep_alive()
    reply = conv.respond(200, b"last")
    assert header_values(response_of(reply), b"connection") == [b"close"]
    assert conv.server.response_complete
    assert not conv.server.reusable


# -- malformed input ------------------------------------------------------------


def test_malformed_request_line_is_answered_400_with_connection_close() -> None:
    server = make_server()
    events = server.receive_data(b"GET /a b HTTP/1.1\r\n\r\n")
    assert len(events) == 1
    assert isinstance(events[0], RequestRejected)
    assert events[0].status_code == 400
    assert server.closed

    response = response_of(parse_response(server.data_to_send()))
    assert response.status_code == 400
    assert header_values(response, b"connection") == [b"close"]
    assert server.receive_data(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n") == []


@pytest.mark.parametrize(
    "framing",
    [
        b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n",
        b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n",
    ],
)
def test_content_length_with_transfer_encoding_is_refused_and_closes(framing: bytes) -> None:
    # RFC 9112 6.1: the bytes after the chunked body ("X") must never be
    # read as the start of the next request.
    server = make_server()
    raw = b"POST / HTTP/1.1\r\nHost: a\r\n" + framing + b"\r\n0\r\n\r\nX"
    events = server.receive_data(raw + b"GET /follow HTTP/1.1\r\nHost: a\r\n\r\n")
    assert events == [RequestRejected(400, "both Content-Length and Transfer-Encoding")]
    assert server.closed
    response = response_of(parse_response(server.data_to_send(), b"POST"))
    assert response.status_code == 400
    assert header_values(response, b"connection") == [b"close"]


def _summary(events: list[object]) -> list[str]:
    """Event names (and rejection statuses), short enough to read in a failure."""
    return [
        f"RequestRejected({event.status_code})"
        if isinstance(event, RequestRejected)
        else type(event).__name__
        for event in events
    ]


def _in_pieces(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def _fed(conv: Conversation, data: bytes, size: int) -> list[object]:
    events: list[object] = []
    for piece in _in_pieces(data, size):
        events += conv.server.receive_data(piece)
        if conv.server.closed:
            break
    return events


def test_request_line_over_the_limit_arriving_in_pieces_is_answered_414() -> None:
    conv = Conversation(h11_max_incomplete_size=1024)
    wire = request_bytes(*get(b"/" + b"a" * 4000), client=conv.client)
    events = _fed(conv, wire, 512)
    assert events == [RequestRejected(414, "request line too long")]
    reply = conv.read()
    response = response_of(reply)
    assert response.status_code == 414
    assert header_values(response, b"connection") == [b"close"]


def test_header_block_over_the_limit_arriving_in_pieces_is_answered_431() -> None:
    conv = Conversation(h11_max_incomplete_size=1024)
    wire = request_bytes(*get(b"/", (b"x-big", b"v" * 4000)), client=conv.client)
    events = _fed(conv, wire, 512)
    assert events == [RequestRejected(431, "request header block too large")]
    response = response_of(conv.read())
    assert response.status_code == 431
    assert header_values(response, b"connection") == [b"close"]


def test_request_line_over_the_limit_is_answered_414_when_the_whole_head_arrives_at_once() -> None:
    # Config.h11_max_incomplete_size promises "a longer request line is answered
    # 414"; h11 only checks the limit while a head is still incomplete.
    conv = Conversation(h11_max_incomplete_size=1024)
    events = conv.send(*get(b"/" + b"a" * 4000))
    assert _summary(events) == ["RequestRejected(414)"]


def test_header_block_over_the_limit_is_answered_431_when_the_whole_head_arrives_at_once() -> None:
    conv = Conversation(h11_max_incomplete_size=1024)
    events = conv.send(*get(b"/", (b"x-big", b"v" * 4000)))
    assert _summary(events) == ["RequestRejected(431)"]


def test_error_response_to_a_malformed_head_does_not_quote_the_head() -> None:
    # 60 KiB of control bytes in the target, all in one read (the runtime reads
    # 64 KiB): the answer must stay small, not echo the request line (x4 once
    # repr() escapes it) into the response body.
    server = make_server()
    events = server.receive_data(b"GET /" + b"\x01" * 60_000 + b" HTTP/1.1\r\nhost: a\r\n\r\n")
    assert len(events) == 1
    assert isinstance(events[0], RequestRejected)
    assert len(events[0].reason) <= 1024
    assert len(server.data_to_send()) <= 2048


@pytest.mark.parametrize(
    ("head", "reason"),
    [
        (b"GET /a b HTTP/1.1\r\nhost: a\r\n\r\n", "malformed request line"),
        (b"GET / HTTP/1.1\r\nhost: a\r\nx-secret\x01: 1\r\n\r\n", "malformed header field"),
        (b"GET / HTTP/1.1\r\nhost: a\r\nno-colon-secret\r\n\r\n", "malformed header field"),
        (b"GET / HTTP/1.1\r\nx-secret: 1\r\n\r\n", "missing Host header"),
        (b"GET / HTTP/1.1\r\nhost: a\r\nhost: b\r\n\r\n", "more than one Host header"),
        (b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1x\r\n\r\n", "invalid Content-Length"),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\n",
            "conflicting Content-Length headers",
        ),
        (
            b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\nsecret\r\n",
            "malformed chunked body",
        ),
    ],
)
def test_refusal_body_is_a_fixed_reason_never_the_request_bytes(head: bytes, reason: str) -> None:
    # The parser's own message (which quotes the request) goes to the debug
    # log through ``detail``; the client gets one fixed line.
    server = make_server()
    events = server.receive_data(head)
    rejected = events[-1]
    assert isinstance(rejected, RequestRejected)
    assert (rejected.status_code, rejected.reason) == (400, reason)
    assert rejected.detail  # what h11 said, for the log
    body = client_body(parse_response(server.data_to_send()))
    assert body == f"400 Bad Request: {reason}\n".encode()


def test_content_length_above_max_body_is_rejected_413_before_any_request_event() -> None:
    conv = Conversation(max_request_body_size=10)
    events = conv.send(
        h11.Request(method="POST", target="/", headers=[HOST, (b"content-length", b"11")])
    )
    assert events == [RequestRejected(413, "request body too large")]
    response = response_of(conv.read())
    assert response.status_code == 413
    assert header_values(response, b"connection") == [b"close"]


def test_content_length_at_max_body_is_accepted() -> None:
    conv = Conversation(max_request_body_size=10)
    events = conv.send(*post(b"0123456789"))
    assert body_of(events) == b"0123456789"
    assert events[-1] == StreamEnded(1)


def test_chunked_body_exceeding_max_body_is_rejected_413() -> None:
    conv = Conversation(max_request_body_size=10)
    events = conv.send(*chunked_post(b"123456", b"7890ab"))
    assert isinstance(events[0], RequestReceived)
    assert events[-1] == RequestRejected(413, "request body too large")
    assert body_of(events) == b"123456"  # nothing past the limit is handed on
    assert conv.server.closed
    response = response_of(conv.read())
    assert response.status_code == 413
    assert header_values(response, b"connection") == [b"close"]


CHUNKED_HEAD = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"


@pytest.mark.parametrize(
    "size_line",
    [b"F" * 20 + b"\r\n", b"F" * 20 + b"\r\nsome bytes of it", b"40000001\r\n"],
    ids=["header-alone", "header-and-bytes", "just-over-1GiB"],
)
def test_chunk_size_above_the_bound_is_answered_400_before_its_bytes(size_line: bytes) -> None:
    # Twenty hex digits overflow any 64-bit parser in front of us: refused
    # when the size is read, not waited for.
    server = make_server()
    events = server.receive_data(CHUNKED_HEAD + size_line)
    assert _summary(events)[0] == "RequestReceived"
    assert events[-1] == RequestRejected(400, "chunk size too large")
    assert server.closed
    response = response_of(parse_response(server.data_to_send(), b"POST"))
    assert response.status_code == 400
    assert header_values(response, b"connection") == [b"close"]


def test_chunk_of_the_bound_with_leading_zeros_is_read() -> None:
    server = make_server()
    events = server.receive_data(CHUNKED_HEAD + b"0" * 19 + b"1\r\nA\r\n40000000\r\nB")
    assert not any(isinstance(event, RequestRejected) for event in events)
    assert body_of(events) == b"AB"


def test_chunk_announced_past_max_body_is_answered_413_before_its_bytes() -> None:
    server = make_server(max_request_body_size=1000)
    events = server.receive_data(CHUNKED_HEAD + b"10\r\n0123456789abcdef\r\n3e9\r\n")
    assert events[-1] == RequestRejected(413, "request body too large")
    assert body_of(events) == b"0123456789abcdef"
    response = response_of(parse_response(server.data_to_send(), b"POST"))
    assert response.status_code == 413


def test_connect_is_answered_501_without_a_request_event() -> None:
    # ASGI has no tunnels; HTTP/2 answers a plain CONNECT the same way.
    server = make_server()
    events = server.receive_data(
        b"CONNECT example.com:443 HTTP/1.1\r\nhost: example.com:443\r\n\r\n"
    )
    assert events == [
        RequestRejected(501, "CONNECT is only served for WebSocket over HTTP/2 (RFC 8441)")
    ]
    response = response_of(parse_response(server.data_to_send(), b"CONNECT"))
    assert response.status_code == 501
    assert header_values(response, b"connection") == [b"close"]


@pytest.mark.parametrize(
    ("target", "host"),
    [
        (b"http://origin.example:8080/path?q=1", b"origin.example:8080"),
        (b"HTTPS://origin.example", b"origin.example"),
        (b"http://[::1]:9000/", b"[::1]:9000"),
    ],
)
def test_absolute_form_target_replaces_the_host_header(target: bytes, host: bytes) -> None:
    # RFC 9112 3.2.2: the target's authority wins over the Host header.
    server = make_server()
    events = server.receive_data(
        b"GET " + target + b" HTTP/1.1\r\nhost: spoofed.example\r\nx-a: b\r\n\r\n"
    )
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.target == target
    assert [value for name, value in request.headers if name == b"host"] == [host]
    assert (b"x-a", b"b") in request.headers


@pytest.mark.parametrize("target", [b"http:///path", b"http://user@evil.example/"])
def test_absolute_form_target_without_a_plain_host_is_answered_400(target: bytes) -> None:
    server = make_server()
    events = server.receive_data(b"GET " + target + b" HTTP/1.1\r\nhost: a\r\n\r\n")
    assert events == [RequestRejected(400, "invalid authority in the request target")]
    assert response_of(parse_response(server.data_to_send())).status_code == 400


def test_origin_form_target_that_looks_like_a_url_keeps_the_host_header() -> None:
    server = make_server()
    events = server.receive_data(b"GET /http://x/ HTTP/1.1\r\nhost: a\r\n\r\n")
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert (b"host", b"a") in request.headers


def test_bytes_after_a_connection_close_request_do_not_reject_that_request() -> None:
    # RFC 9112 9.6: after a request with "close" the server answers it and
    # MUST NOT process further requests; it does not turn the answer into a 400.
    conv = Conversation()
    wire = request_bytes(*get(b"/", (b"connection", b"close")), client=conv.client)
    events = conv.server.receive_data(wire + request_bytes(*get(b"/ignored")))
    assert _summary(events) == ["RequestReceived", "StreamEnded"]
    assert not conv.server.closed
    reply = conv.respond(200, b"answered")
    assert response_of(reply).status_code == 200
    assert client_body(reply) == b"answered"


def test_stray_crlf_after_an_http10_post_body_does_not_reject_the_request() -> None:
    # RFC 9112 2.2: some user agents send an extra CRLF after a POST body.
    server = make_server()
    events = server.receive_data(b"POST /form HTTP/1.0\r\ncontent-length: 2\r\n\r\nok")
    assert _summary(events) == ["RequestReceived", "DataReceived", "StreamEnded"]
    assert server.receive_data(b"\r\n") == []
    assert not server.closed
    server.handle(StartResponse(1, 200, ((b"content-length", b"0"),)))
    server.handle(SendData(1, b"", end_stream=True))
    assert response_of(parse_response(server.data_to_send())).status_code == 200


def test_empty_line_before_the_request_line_is_ignored() -> None:
    # RFC 9112 2.2: a server expecting a request-line SHOULD ignore at least
    # one empty line received before it (e.g. a stray CRLF after a POST body).
    conv = Conversation()
    conv.send(*post(b"ab"))
    conv.respond(200, b"")
    conv.server.receive_data(b"\r\n")
    conv.client.start_next_cycle()
    events = conv.server.start_next_cycle() + conv.send(*get(b"/next"))
    assert _summary(events) == ["RequestReceived", "StreamEnded"]


# -- delivery -------------------------------------------------------------------


def test_data_fed_byte_by_byte_gives_the_same_events_as_whole() -> None:
    wire = request_bytes(
        *post(b"x=1", (b"x-a", b"b")),
        *chunked_post(b"ab", b"cdef"),
        *get(b"/last?z", (b"connection", b"close")),
    )
    whole_events, whole_out = serve(make_server(), [wire])
    split_events, split_out = serve(make_server(), [wire[i : i + 1] for i in range(len(wire))])
    assert [type(event) for event in whole_events] == [
        RequestReceived,
        DataReceived,
        StreamEnded,
        RequestReceived,
        DataReceived,
        StreamEnded,
        RequestReceived,
        StreamEnded,
    ]
    assert split_events == whole_events
    assert split_out == whole_out


def test_eof_mid_head_is_rejected_400() -> None:
    server = make_server()
    assert server.receive_data(b"GET / HTTP/1.1\r\nhost: exa") == []
    events = server.receive_data(b"")
    assert events == [RequestRejected(400, "incomplete request")]
    assert server.closed
    assert response_of(parse_response(server.data_to_send())).status_code == 400


def test_eof_mid_body_is_rejected_400() -> None:
    conv = Conversation()
    events = conv.send(
        h11.Request(method="POST", target="/", headers=[HOST, (b"content-length", b"10")]),
        h11.Data(data=b"abc"),
    )
    assert body_of(events) == b"abc"
    events = conv.server.receive_data(b"")
    assert len(events) == 1
    assert isinstance(events[0], RequestRejected)
    assert events[0].status_code == 400
    assert conv.server.closed


def test_eof_between_requests_is_connection_closed() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.respond(200, b"")
    conv.next_cycle()
    assert conv.server.receive_data(b"") == [ConnectionClosed()]
    assert conv.server.closed
    assert conv.server.data_to_send() == b""


def test_handle_after_close_raises_client_disconnected() -> None:
    conv = Conversation()
    conv.send(*get())
    assert conv.server.receive_data(b"") == [ConnectionClosed()]
    with pytest.raises(ClientDisconnected):
        conv.server.handle(StartResponse(1, 200, ()))
    with pytest.raises(OSError, match="closed"):  # ASGI spec 2.4: an OSError subclass
        conv.server.handle(SendData(1, b"", end_stream=True))


# -- what the app gets wrong ----------------------------------------------------


def test_invalid_header_value_from_the_app_raises_app_protocol_error() -> None:
    conv = Conversation()
    conv.send(*get())
    with pytest.raises(AppProtocolError):
        conv.server.handle(StartResponse(1, 200, ((b"x-evil", b"a\r\nb"),)))
    assert conv.server.closed
    assert b"x-evil" not in conv.server.data_to_send()


def test_body_longer_than_declared_content_length_raises_app_protocol_error() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"2"),)))
    with pytest.raises(AppProtocolError):
        conv.server.handle(SendData(1, b"abc", end_stream=True))
    assert conv.server.closed


# -- backpressure ---------------------------------------------------------------


def _pipelined(total: int) -> bytes:
    wire = b""
    while len(wire) <= total:
        wire += request_bytes(*post(b"p" * 1000))
    return wire


def test_wants_data_turns_false_when_over_64k_of_pipelined_bytes_are_held() -> None:
    server = make_server()
    assert server.wants_data
    server.receive_data(request_bytes(*get()))
    server.handle(StartResponse(1, 200, ()))
    held = 0
    for piece in _in_pieces(_pipelined(70 * 1024), 8 * 1024):
        assert server.wants_data == (held < 64 * 1024)
        assert server.receive_data(piece) == []  # held, not parsed
        held += len(piece)
    assert not server.wants_data

    server.handle(SendData(1, b"", end_stream=True))
    served = 0
    while server.reusable:
        events = server.start_next_cycle()
        if not events:
            break
        assert isinstance(events[0], RequestReceived)
        served += 1
        server.handle(StartResponse(1, 204, ()))
        server.handle(SendData(1, b"", end_stream=True))
    assert served == len(_pipelined(70 * 1024)) // len(request_bytes(*post(b"p" * 1000)))
    assert server.wants_data  # everything held has been served


def test_wants_data_turns_false_when_pipelined_bytes_arrive_with_the_request() -> None:
    server = make_server()
    first = merge_data(server.receive_data(request_bytes(*get()) + _pipelined(70 * 1024)))
    assert [type(event) for event in first] == [RequestReceived, StreamEnded]
    server.handle(StartResponse(1, 200, ()))
    assert not server.wants_data


UPGRADE_REQUESTS = {
    "upgrade": h11.Request(
        method="GET",
        target="/",
        headers=[HOST, (b"connection", b"upgrade"), (b"upgrade", b"foo/2")],
    ),
}  # (a CONNECT is refused outright: test_connect_is_answered_501...)


@pytest.mark.parametrize("kind", UPGRADE_REQUESTS)
def test_request_with_a_protocol_switch_offer_is_complete_once_its_stream_ended(kind: str) -> None:
    conv = Conversation()
    events = conv.send(UPGRADE_REQUESTS[kind], h11.EndOfMessage())
    assert _summary(events) == ["RequestReceived", "StreamEnded"]
    assert conv.server.request_complete


@pytest.mark.parametrize("kind", UPGRADE_REQUESTS)
def test_wants_data_turns_false_when_over_64k_follow_a_protocol_switch_offer(kind: str) -> None:
    # Until the app answers, h11 holds every later byte; without this bound
    # the runtime keeps reading (and buffering) as long as the client sends.
    conv = Conversation()
    conv.send(UPGRADE_REQUESTS[kind], h11.EndOfMessage())
    for _ in range(9):
        assert conv.server.receive_data(b"x" * 8192) == []
    assert not conv.server.wants_data


def test_http2_preface_without_prior_knowledge_gets_505() -> None:
    server = make_server()
    events = server.receive_data(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
    assert events == [RequestRejected(505, "HTTP version not supported")]
    assert server.closed


def test_bytes_that_are_not_http1_at_all_are_closed_without_an_answer() -> None:
    # No HTTP-version on the line: an HTTP/1.1 answer would not be read, and
    # an HTTP/2 client with a broken preface expects the close (RFC 9113 3.4).
    server = make_server()
    events = server.receive_data(b"INVALID CONNECTION PREFACE\r\n\r\n")
    assert events == [RequestRejected(400, "not an HTTP/1.x request")]
    assert server.closed
    assert server.data_to_send() == b""


def test_an_incomplete_request_line_is_not_judged_early() -> None:
    server = make_server()
    assert server.receive_data(b"GET /slow") == []
    assert not server.closed


def test_a_body_arriving_read_by_read_is_delivered_in_order_with_the_next_request_behind_it() -> (
    None
):
    # The httptools wire hands a read that holds only body bytes on as it is
    # (no copy through its buffer); the part of a read past the body's end
    # is the next request, parsed once this one is done.
    server = make_server()
    head = b"POST /upload HTTP/1.1\r\nhost: example.com\r\ncontent-length: 10\r\n\r\n"
    events = server.receive_data(head)
    assert isinstance(events[0], RequestReceived)
    assert server.receive_data(b"0123") == [DataReceived(1, b"0123")]
    assert server.receive_data(b"45") == [DataReceived(1, b"45")]
    follow = b"GET /next HTTP/1.1\r\nhost: example.com\r\n\r\n"
    assert server.receive_data(b"6789" + follow) == [
        DataReceived(1, b"6789"),
        StreamEnded(1),
    ]
    server.handle(StartResponse(1, 200, ((b"content-length", b"0"),)))
    server.handle(SendData(1, b"", end_stream=True))
    server.data_to_send()
    events = server.exchange_finished(1)
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/next"
    assert events[1:] == [StreamEnded(1)]


def test_connections_interleaved_read_their_own_requests() -> None:
    # The httptools wire shares one parser between a thread's connections:
    # a head that announces a body, ends its connection, or upgrades must
    # leave nothing behind for another connection's next head.
    first, second = make_server(), make_server()
    heads = [
        (first, b"POST /a HTTP/1.1\r\nhost: x\r\ncontent-length: 5\r\n\r\n", b"/a"),
        (second, b"GET /b HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n", b"/b"),
        (first, b"hello", None),
        (second, b"", None),
    ]
    targets = []
    for server, data, target in heads:
        events = server.receive_data(data)
        if target is not None:
            assert isinstance(events[0], RequestReceived)
            targets.append(events[0].target)
    assert targets == [b"/a", b"/b"]
    third = make_server()
    events = third.receive_data(b"GET /c HTTP/1.0\r\n\r\n")
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/c"
    events = make_server().receive_data(b"GET /d HTTP/1.1\r\nhost: x\r\n\r\n")
    assert isinstance(events[0], RequestReceived)
    assert events[0].target == b"/d"
