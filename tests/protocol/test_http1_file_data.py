"""Body bytes written out of band (sendfile): the protocol frames them without seeing them."""

from __future__ import annotations

import h11
import pytest

from tricorn._protocol.events import SendData, StartResponse
from tricorn.errors import AppProtocolError

from ._client import Conversation, get

HOST = (b"host", b"example.com")
FILE = b"0123456789" * 1000


def client_sees(conv: Conversation, raw: bytes) -> list[h11.Event]:
    conv.client.receive_data(raw)
    events: list[h11.Event] = []
    while not isinstance(event := conv.client.next_event(), type):
        events.append(event)
    return events


def body_of(events: list[h11.Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, h11.Data))


def send_file(conv: Conversation, data: bytes, *, end_stream: bool = True) -> bytes:
    """What the runner writes: the output, the file's bytes by the kernel, the output again."""
    size = conv.server.send_file_data(len(data))
    before = conv.server.data_to_send()
    conv.server.file_data_sent(end_stream=end_stream)
    return before + data[:size] + conv.server.data_to_send()


def test_a_content_length_body_is_accounted_and_the_connection_stays_reusable() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"%d" % len(FILE)),)))
    assert conv.server.sends_file_data
    assert conv.server.send_file_data(len(FILE)) == len(FILE)
    head = conv.server.data_to_send()
    assert head.endswith(b"\r\n\r\n")  # nothing framed around the file
    conv.server.file_data_sent(end_stream=True)
    assert conv.server.data_to_send() == b""
    events = client_sees(conv, head + FILE)
    assert body_of(events) == FILE
    assert isinstance(events[-1], h11.EndOfMessage)
    assert conv.server.reusable


def test_a_file_in_a_chunked_body_gets_its_chunk_framing() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ()))
    conv.server.handle(SendData(1, b"<"))
    raw = conv.server.data_to_send() + send_file(conv, FILE, end_stream=False)
    conv.server.handle(SendData(1, b">", end_stream=True))
    raw += conv.server.data_to_send()
    assert b"%x\r\n%s\r\n" % (len(FILE), FILE) in raw
    events = client_sees(conv, raw)
    assert body_of(events) == b"<" + FILE + b">"
    assert conv.server.reusable


def test_an_empty_file_frames_nothing() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ()))
    raw = conv.server.data_to_send() + send_file(conv, b"")
    assert raw.endswith(b"\r\n\r\n0\r\n\r\n")
    assert body_of(client_sees(conv, raw)) == b""


def test_a_head_response_has_no_byte_of_the_file_written() -> None:
    conv = Conversation()
    conv.send(h11.Request(method="HEAD", target="/", headers=[HOST]), h11.EndOfMessage())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"%d" % len(FILE)),)))
    assert conv.server.send_file_data(len(FILE)) == 0
    raw = conv.server.data_to_send()
    conv.server.file_data_sent(end_stream=True)
    raw += conv.server.data_to_send()
    events = client_sees(conv, raw)
    assert body_of(events) == b""
    assert isinstance(events[-1], h11.EndOfMessage)
    assert conv.server.reusable


def test_an_http10_client_gets_the_file_close_delimited() -> None:
    conv = Conversation()
    conv.server.receive_data(b"GET / HTTP/1.0\r\nHost: example.com\r\n\r\n")
    conv.server.handle(StartResponse(1, 200, ()))
    raw = conv.server.data_to_send() + send_file(conv, FILE)
    assert raw.endswith(b"\r\n\r\n" + FILE)


def test_a_file_longer_than_the_content_length_is_the_app_s_error() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"5"),)))
    with pytest.raises(AppProtocolError, match="Content-Length"):
        conv.server.send_file_data(6)
    assert conv.server.closed
    # Nothing of the response went out yet: the client gets an honest 500.
    assert conv.server.data_to_send().startswith(b"HTTP/1.1 500 ")


def test_a_file_shorter_than_the_content_length_is_the_app_s_error() -> None:
    conv = Conversation()
    conv.send(*get())
    conv.server.handle(StartResponse(1, 200, ((b"content-length", b"50"),)))
    conv.server.send_file_data(5)
    conv.server.data_to_send()
    with pytest.raises(AppProtocolError, match="Content-Length"):
        conv.server.file_data_sent(end_stream=True)
    assert conv.server.closed
