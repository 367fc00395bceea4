"""The HTTP cycle's file messages (pathsend, zerocopysend): checked, then the state moves."""

from __future__ import annotations

import io
import os
import tempfile
from collections.abc import Iterator

import pytest

from tricorn._asgi.cycle import FileBody, HTTPCycle, WebSocketCycle
from tricorn._protocol.events import StartResponse
from tricorn.errors import AppProtocolError

START = {"type": "http.response.start", "status": 200}
PATHSEND = {"type": "http.response.pathsend", "path": "/srv/file.bin"}


@pytest.fixture
def file() -> Iterator[io.BufferedReader]:
    with tempfile.TemporaryFile() as raw:
        raw.write(b"data")
        raw.seek(0)
        with open(raw.fileno(), "rb", closefd=False) as reader:
            yield reader


def cycle() -> HTTPCycle:
    return HTTPCycle(1, pathsend=True, zerocopysend=True)


def test_pathsend_is_the_whole_body_and_releases_the_held_head() -> None:
    http = cycle()
    http.commands_for(START)
    body = http.file_for(PATHSEND)
    assert body == FileBody("/srv/file.bin", None, 0, None, more_body=False)
    assert not http.flushed  # nothing moves until the file is open
    assert http.file_sent(body, 10) == ([StartResponse(1, 200, ())], True)
    assert http.done
    assert http.bytes_sent == 10


def test_pathsend_needs_an_absolute_path() -> None:
    http = cycle()
    http.commands_for(START)
    with pytest.raises(AppProtocolError, match="absolute path"):
        http.file_for({**PATHSEND, "path": "file.bin"})
    with pytest.raises(AppProtocolError, match="absolute path"):
        http.file_for({**PATHSEND, "path": b"/srv/file.bin"})


def test_pathsend_cannot_follow_a_body_message() -> None:
    http = cycle()
    http.commands_for(START)
    http.commands_for({"type": "http.response.body", "body": b"x", "more_body": True})
    with pytest.raises(AppProtocolError, match="unexpected ASGI message"):
        http.file_for(PATHSEND)


def test_a_file_before_the_start_is_out_of_order() -> None:
    with pytest.raises(AppProtocolError, match=r"awaiting http\.response\.start"):
        cycle().file_for(PATHSEND)


def test_file_messages_need_their_extension(file: io.BufferedReader) -> None:
    http = HTTPCycle(1)
    http.commands_for(START)
    with pytest.raises(AppProtocolError, match="not offered"):
        http.file_for(PATHSEND)
    with pytest.raises(AppProtocolError, match="not offered"):
        http.file_for({"type": "http.response.zerocopysend", "file": file})


def test_zerocopysend_mixes_with_body_messages(file: io.BufferedReader) -> None:
    http = cycle()
    http.commands_for(START)
    message = {"type": "http.response.zerocopysend", "file": file, "more_body": True}
    body = http.file_for({**message, "offset": 1, "count": 2})
    assert body == FileBody(None, file.fileno(), 1, 2, more_body=True)
    assert http.file_sent(body, 2) == ([StartResponse(1, 200, ())], False)
    http.commands_for({"type": "http.response.body", "body": b"x", "more_body": True})
    last = http.file_for({**message, "more_body": False})
    assert last.offset is None
    assert last.count is None
    assert http.file_sent(last, 4) == ([], True)
    assert http.done
    assert http.bytes_sent == 7


def test_zerocopysend_before_trailers_leaves_them_to_end_the_response(
    file: io.BufferedReader,
) -> None:
    http = HTTPCycle(1, trailers=True, zerocopysend=True)
    http.commands_for({**START, "trailers": True})
    body = http.file_for({"type": "http.response.zerocopysend", "file": file})
    assert http.file_sent(body, 4)[1] is False
    assert not http.done
    http.commands_for({"type": "http.response.trailers", "headers": []})
    assert http.done


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"file": io.BytesIO(b"data")}, "file descriptor"),
        ({"file": "/srv/file.bin"}, "fileno"),
        ({"offset": -1}, "'offset' must be an int >= 0"),
        ({"count": 1.5}, "'count' must be an int >= 0"),
        ({"more_body": 1}, "'more_body' must be a bool"),
    ],
)
def test_zerocopysend_keys_are_checked(
    file: io.BufferedReader, change: dict[str, object], error: str
) -> None:
    http = cycle()
    http.commands_for(START)
    with pytest.raises(AppProtocolError, match=error):
        http.file_for({"type": "http.response.zerocopysend", "file": file, **change})


def test_a_file_message_is_never_taken_as_a_body_message() -> None:
    http = cycle()
    http.commands_for(START)
    with pytest.raises(AppProtocolError, match="cannot be sent"):
        http.commands_for(PATHSEND)


def test_a_websocket_denial_response_has_no_file_messages() -> None:
    ws = WebSocketCycle(1)
    ws.commands_for({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError):
        ws.commands_for({**PATHSEND, "type": "websocket.http.response.pathsend"})


def test_the_file_body_carries_the_descriptor_not_the_file(file: io.BufferedReader) -> None:
    http = cycle()
    http.commands_for(START)
    body = http.file_for({"type": "http.response.zerocopysend", "file": file})
    assert body.fd == file.fileno()
    assert os.fstat(body.fd).st_size == 4
