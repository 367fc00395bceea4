"""HTTP/2 field sections checked by tricorn itself, with h2's own validation switched off.

Every check h2's ``validate_inbound_headers`` made is made by
``rules.fields_fault``: each malformed request below is sent by an h2 client
whose own checks are off too, and must be answered with RST_STREAM
(PROTOCOL_ERROR, RFC 9113 8.1.1), never reach an app, and leave the
connection serving. On the way out, what h2's normalisation did to an app's
fields is done by the protocol.
"""

from __future__ import annotations

import h2.errors
import h2.events
import pytest
from hpack import NeverIndexedHeaderTuple

from tricorn._protocol import RequestReceived, SendData, StartResponse, StreamReset, rules

from ._h2client import AUTHORITY, H2Conversation, request_headers

_E = h2.errors.ErrorCodes

Fields = list[tuple[bytes, bytes]]


def _unchecked() -> H2Conversation:
    """A conversation whose client sends any field section as given."""
    conv = H2Conversation()
    conv.client.config.validate_outbound_headers = False
    conv.client.config.normalize_outbound_headers = False
    return conv


def _without(name: bytes) -> Fields:
    return [(n, v) for n, v in request_headers() if n != name]


MALFORMED: dict[str, Fields] = {
    "upper-case name": [*request_headers(), (b"Accept", b"*/*")],
    "space in a name": [*request_headers(), (b"x thing", b"1")],
    "control byte in a name": [*request_headers(), (b"x\x01", b"1")],
    "colon inside a name": [*request_headers(), (b"x:y", b"1")],
    "non-ASCII name": [*request_headers(), (b"caf\xe9", b"1")],
    "DEL in a name": [*request_headers(), (b"x\x7f", b"1")],
    "empty name": [*request_headers(), (b"", b"1")],
    "NUL in a value": [*request_headers(), (b"x-thing", b"a\x00b")],
    "CR in a value": [*request_headers(), (b"x-thing", b"a\rb")],
    "LF in a value": [*request_headers(), (b"x-thing", b"a\nb")],
    "leading space in a value": [*request_headers(), (b"x-thing", b" a")],
    "trailing tab in a value": [*request_headers(), (b"x-thing", b"a\t")],
    "LF in a pseudo-header value": [*_without(b":path"), (b":path", b"/a\nb")],
    "connection": [*request_headers(), (b"connection", b"keep-alive")],
    "keep-alive": [*request_headers(), (b"keep-alive", b"timeout=5")],
    "proxy-connection": [*request_headers(), (b"proxy-connection", b"close")],
    "transfer-encoding": [*request_headers(), (b"transfer-encoding", b"chunked")],
    "upgrade": [*request_headers(), (b"upgrade", b"websocket")],
    "TE other than trailers": [*request_headers(), (b"te", b"gzip")],
    "pseudo-header after a regular field": [
        (b"accept", b"*/*"),
        *request_headers(),
    ],
    "repeated pseudo-header": [*request_headers(), (b":path", b"/again")],
    "unknown pseudo-header": [(b":thing", b"1"), *request_headers()],
    "response pseudo-header in a request": [(b":status", b"200"), *request_headers()],
    "no :method": _without(b":method"),
    "no :scheme": _without(b":scheme"),
    "no :path": _without(b":path"),
    "empty :path": [*_without(b":path"), (b":path", b"")],
    ":protocol without CONNECT": [*request_headers(), (b":protocol", b"websocket")],
    "plain CONNECT with :path": [
        (b":method", b"CONNECT"),
        (b":authority", AUTHORITY),
        (b":path", b"/"),
    ],
    "plain CONNECT with :scheme": [
        (b":method", b"CONNECT"),
        (b":authority", AUTHORITY),
        (b":scheme", b"http"),
    ],
    "extended CONNECT without :path": [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":authority", AUTHORITY),
    ],
    "neither :authority nor Host": _without(b":authority"),
    "two Host fields": [*_without(b":authority"), (b"host", b"a"), (b"host", b"a")],
    ":authority and Host differ": [*request_headers(), (b"host", b"other.example")],
}


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_request_is_a_stream_error_and_reaches_no_app(fields: Fields) -> None:
    conv = _unchecked()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, fields, end_stream=True)
    events = conv.exchange()
    assert events == []
    (reset,) = conv.seen(h2.events.StreamReset, stream_id)
    assert reset.error_code == _E.PROTOCOL_ERROR
    # The connection goes on serving.
    assert conv.goaway() is None
    _, events = conv.request()
    assert isinstance(events[0], RequestReceived)


@pytest.mark.parametrize("fields", MALFORMED.values(), ids=MALFORMED.keys())
def test_the_rule_book_names_each_fault(fields: Fields) -> None:
    assert rules.fields_fault(fields) is not None


WELL_FORMED: dict[str, Fields] = {
    "plain GET": request_headers(),
    "TE trailers": [*request_headers(), (b"te", b"Trailers")],
    "Host equal to :authority": [*request_headers(), (b"host", AUTHORITY)],
    "Host without :authority": [*_without(b":authority"), (b"host", AUTHORITY)],
    "empty value": [*request_headers(), (b"x-empty", b"")],
    "inner whitespace": [*request_headers(), (b"x-thing", b"a \t b")],
    "token characters": [*request_headers(), (b"x-!#$%&'*+.^_`|~09", b"\x80\xff")],
    "plain CONNECT": [(b":method", b"CONNECT"), (b":authority", AUTHORITY)],
    "extended CONNECT": [
        (b":method", b"CONNECT"),
        (b":protocol", b"websocket"),
        (b":scheme", b"http"),
        (b":path", b"/chat"),
        (b":authority", AUTHORITY),
    ],
}


@pytest.mark.parametrize("fields", WELL_FORMED.values(), ids=WELL_FORMED.keys())
def test_well_formed_requests_pass_the_rule_book(fields: Fields) -> None:
    assert rules.fields_fault(fields) is None


def test_te_trailers_and_a_matching_host_reach_the_app() -> None:
    conv = _unchecked()
    _, events = conv.request(b"/", (b"te", b"trailers"), (b"host", AUTHORITY))
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.can_send_trailers


MALFORMED_TRAILERS: dict[str, Fields] = {
    "pseudo-header in trailers": [(b":path", b"/")],
    "upper-case name in trailers": [(b"X-Sum", b"1")],
    "connection-specific field in trailers": [(b"connection", b"close")],
    "LF in a trailer value": [(b"x-sum", b"1\n2")],
}


@pytest.mark.parametrize("trailers", MALFORMED_TRAILERS.values(), ids=MALFORMED_TRAILERS.keys())
def test_malformed_trailers_reset_the_stream_and_tell_its_exchange(trailers: Fields) -> None:
    conv = _unchecked()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"), end_stream=False)
    events = conv.exchange()
    assert isinstance(events[0], RequestReceived)
    conv.client.send_headers(stream_id, trailers, end_stream=True)
    events = conv.exchange()
    assert events == [StreamReset(stream_id, int(_E.PROTOCOL_ERROR))]
    (reset,) = conv.seen(h2.events.StreamReset, stream_id)
    assert reset.error_code == _E.PROTOCOL_ERROR
    assert conv.goaway() is None


def test_well_formed_trailers_end_the_body() -> None:
    conv = _unchecked()
    stream_id = conv.client.get_next_available_stream_id()
    conv.client.send_headers(stream_id, request_headers(method=b"POST"), end_stream=False)
    conv.exchange()
    conv.client.send_headers(stream_id, [(b"x-sum", b"1")], end_stream=True)
    events = conv.exchange()
    assert [type(event).__name__ for event in events] == ["StreamEnded"]


def test_malformed_requests_spend_the_reset_budget() -> None:
    conv = H2Conversation(h2_max_resets=10)
    conv.client.config.validate_outbound_headers = False
    conv.client.config.normalize_outbound_headers = False
    for _ in range(15):
        stream_id = conv.client.get_next_available_stream_id()
        conv.client.send_headers(stream_id, [*request_headers(), (b"Bad", b"1")], end_stream=True)
        conv.exchange()
        if conv.server.closed:
            break
    goaway = conv.goaway()
    assert goaway is not None
    assert goaway.error_code == _E.ENHANCE_YOUR_CALM


# -- the way out -------------------------------------------------------------------


def _answer(conv: H2Conversation, stream_id: int, headers: tuple[tuple[bytes, bytes], ...]) -> None:
    conv.server.handle(StartResponse(stream_id, 200, headers))
    conv.server.handle(SendData(stream_id, b"", end_stream=True))
    conv.server.exchange_finished(stream_id)
    conv.exchange()


def test_app_fields_are_stripped_of_surrounding_whitespace() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    _answer(conv, stream_id, ((b" X-Thing\t", b"  value \t"),))
    headers = conv.response_headers(stream_id)
    assert headers[b"x-thing"] == b"value"


def test_credentials_are_never_indexed_by_hpack() -> None:
    conv = H2Conversation()
    stream_id, _ = conv.request()
    _answer(
        conv,
        stream_id,
        (
            (b"authorization", b"Bearer secret"),
            (b"proxy-authorization", b"Basic c2VjcmV0"),
            (b"cookie", b"id=1"),
            (b"set-cookie", b"id=1"),
        ),
    )
    (response,) = conv.seen(h2.events.ResponseReceived, stream_id)
    kinds = {field[0]: isinstance(field, NeverIndexedHeaderTuple) for field in response.headers}
    assert kinds[b"authorization"]
    assert kinds[b"proxy-authorization"]
    assert kinds[b"cookie"]
    assert not kinds[b"set-cookie"]
    # ... and so stay out of the encoder's dynamic table.
    table = conv.server._h2.encoder.header_table.dynamic_entries
    assert all(name not in (b"authorization", b"proxy-authorization") for name, _ in table)


def test_a_repeated_response_head_follows_the_date() -> None:
    now = [b"Mon, 07 Dec 2026 12:00:00 GMT"]
    conv = H2Conversation()
    conv.server._default_headers = lambda: ((b"date", now[0]), (b"server", b"tricorn"))
    headers = ((b"content-type", b"text/plain"),)
    first, _ = conv.request()
    _answer(conv, first, headers)
    second, _ = conv.request()
    _answer(conv, second, headers)
    now[0] = b"Mon, 07 Dec 2026 12:00:01 GMT"
    third, _ = conv.request()
    _answer(conv, third, headers)
    dates = [conv.response_headers(s)[b"date"] for s in (first, second, third)]
    assert dates == [
        b"Mon, 07 Dec 2026 12:00:00 GMT",
        b"Mon, 07 Dec 2026 12:00:00 GMT",
        b"Mon, 07 Dec 2026 12:00:01 GMT",
    ]
    assert all(
        conv.response_headers(s)[b"content-type"] == b"text/plain" for s in (first, second, third)
    )


def test_a_repeated_field_section_is_read_as_the_first_was() -> None:
    conv = _unchecked()
    bad = [*request_headers(), (b"x-thing", b" padded")]
    for _ in range(3):
        _, first = conv.request(b"/same", (b"accept", b"*/*"))
        stream_id = conv.client.get_next_available_stream_id()
        conv.client.send_headers(stream_id, bad, end_stream=True)
        assert conv.exchange() == []
        (reset,) = conv.seen(h2.events.StreamReset, stream_id)
        assert reset.error_code == _E.PROTOCOL_ERROR
        request = first[0]
        assert isinstance(request, RequestReceived)
        assert request.target == b"/same"
        assert request.headers == ((b"host", AUTHORITY), (b"accept", b"*/*"))
