"""The one place tricorn reads h11's internals: pinned, so an h11 that moves them fails here."""

from __future__ import annotations

import h11
import h11._readers
import h11._receivebuffer

from tricorn._protocol import h11_seams


def test_check_passes_on_the_installed_h11() -> None:
    h11_seams.check()


def _server_after(data: bytes) -> h11.Connection:
    connection = h11.Connection(h11.SERVER)
    connection.receive_data(data)
    while connection.next_event() is not h11.NEED_DATA:
        pass
    return connection


def test_chunk_bytes_expected_counts_down_the_chunk_being_read() -> None:
    head = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
    assert h11_seams.chunk_bytes_expected(_server_after(head)) == 0
    assert h11_seams.chunk_bytes_expected(_server_after(head + b"a\r\n")) == 10
    assert h11_seams.chunk_bytes_expected(_server_after(head + b"a\r\n0123")) == 6
    assert h11_seams.chunk_bytes_expected(_server_after(head + b"a\r\n0123456789\r\n")) == 0


def test_chunk_bytes_expected_is_zero_for_a_content_length_body() -> None:
    head = b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 10\r\n\r\n0123"
    assert h11_seams.chunk_bytes_expected(_server_after(head)) == 0


def test_buffered_and_take_read_and_consume_the_receive_buffer() -> None:
    from h11._receivebuffer import ReceiveBuffer

    buffer = ReceiveBuffer()
    buffer += b"GET / HTTP/1.1\r\n\r\nrest"
    assert h11_seams.buffered(buffer) == b"GET / HTTP/1.1\r\n\r\nrest"
    assert h11_seams.take(buffer, 18) == b"GET / HTTP/1.1\r\n\r\n"
    assert bytes(buffer) == b"rest"


def test_chunk_bytes_left_is_what_chunk_bytes_expected_reads() -> None:
    head = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
    connection = _server_after(head + b"a\r\n0123")
    reader = connection._reader
    assert isinstance(reader, h11._readers.ChunkedReader)
    assert h11_seams.chunk_bytes_left(reader) == h11_seams.chunk_bytes_expected(connection) == 6


def test_take_body_hands_on_the_read_itself_and_counts_it_as_read() -> None:
    reader = h11._readers.ContentLengthReader(5)
    data = b"abc"
    body, rest = h11_seams.take_body(reader, data)
    assert body is data
    assert rest == b""
    body, rest = h11_seams.take_body(reader, b"deGET")
    assert (body, rest) == (b"de", b"GET")
    # h11's own reader agrees that the body is complete.
    assert type(reader(h11._receivebuffer.ReceiveBuffer())) is h11.EndOfMessage


def test_take_bytes_and_take_from_buffer_read_as_h11_would() -> None:
    buffer = h11._receivebuffer.ReceiveBuffer()
    buffer += b"head\r\n\r\n0123456789GET"
    assert h11_seams.take_bytes(buffer, 8) == b"head\r\n\r\n"
    reader = h11._readers.ContentLengthReader(10)
    body = h11_seams.take_from_buffer(reader, buffer)
    assert body == b"0123456789"
    assert type(body) is bytes
    assert h11_seams.take_from_buffer(reader, buffer) == b""
    assert type(reader(buffer)) is h11.EndOfMessage
    assert bytes(buffer) == b"GET"
    # h11's line search starts over on what is left.
    buffer += b" / HTTP/1.1\r\n"
    assert buffer.maybe_extract_next_line() == b"GET / HTTP/1.1\r\n"


def test_header_pairs_are_what_iterating_h11s_headers_gives() -> None:
    request = h11.Request(
        method="GET", target="/", headers=[("Host", "a"), ("X-Two", "b c"), ("x-two", "d")]
    )
    assert h11_seams.header_pairs(request.headers) == tuple(request.headers)
    assert h11_seams.header_pairs(request.headers)[1] == (b"x-two", b"b c")


def test_body_left_counts_down_a_content_length_body() -> None:
    reader = h11._readers.ContentLengthReader(5)
    assert h11_seams.body_left(reader) == 5
    h11_seams.take_body(reader, b"abc")
    assert h11_seams.body_left(reader) == 2
