"""The access log: one line per request on ``tricorn.access``, and only when configured."""

from __future__ import annotations

import base64
import json
import logging
import os
import re
from collections.abc import Iterator
from typing import Any

import pytest

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import ok_app, request

pytestmark = pytest.mark.anyio


@pytest.fixture
def access_records() -> Iterator[list[logging.LogRecord]]:
    """Records on ``tricorn.access``, with the logger enabled as a host program might."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tricorn.access")
    handler = Collect(logging.DEBUG)
    saved = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


async def test_access_log_writes_one_line_per_request(
    access_records: list[logging.LogRecord],
) -> None:
    async with memory_server(ok_app, access_log=True) as srv, srv.client() as client:
        await client.send(request(target="/path?q=1"))
        await client.response()
        await client.send(request(target="/other"))
        await client.response()
    lines = [record.getMessage() for record in access_records]
    assert len(lines) == 2
    assert '"GET /path?q=1 HTTP/1.1" 200' in lines[0]
    assert '"GET /other HTTP/1.1" 200' in lines[1]


async def test_access_log_records_500_for_a_failing_app(
    access_records: list[logging.LogRecord],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async with memory_server(app, access_log=True) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
    assert len(access_records) == 1
    assert '" 500 ' in access_records[0].getMessage()


async def test_access_log_off_writes_nothing_even_when_the_logger_is_enabled(
    access_records: list[logging.LogRecord],
) -> None:
    async with memory_server(ok_app, access_log=False) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
    assert access_records == []


async def typed_app(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"2")]
    await send({"type": "http.response.start", "status": 201, "headers": headers})
    await send({"type": "http.response.body", "body": b"ok"})


async def test_gunicorn_combined_format(access_records: list[logging.LogRecord]) -> None:
    log_format = '%(h)s %(l)s %(u)s %(t)s "%(r)s" %(s)s %(b)s "%(f)s" "%(a)s"'
    headers = [
        ("Referer", "https://example.com/from"),
        ("User-Agent", "curl/8.5"),
        ("Authorization", "Basic " + base64.b64encode(b"alice:secret").decode()),
    ]
    async with (
        memory_server(typed_app, access_log=True, access_log_format=log_format) as srv,
        srv.client() as client,
    ):
        await client.send(request(target="/p?q=1", headers=headers))
        await client.response()
    (line,) = [record.getMessage() for record in access_records]
    # A memory peer has no address: the remote host is "-".
    assert re.fullmatch(
        r'- - alice \[\d\d/\w{3}/\d{4}:\d\d:\d\d:\d\d [+-]\d{4}\] "GET /p\?q=1 HTTP/1.1" 201 2 '
        r'"https://example.com/from" "curl/8.5"',
        line,
    ), line


async def test_header_atoms_protocol_stream_and_times(
    access_records: list[logging.LogRecord],
) -> None:
    log_format = "%({x-request-id}i)s %({content-type}o)s %(H)s %(S)s %(D)s %(L)s %(zz)s"
    async with memory_server(typed_app, access_log=True, access_log_format=log_format) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/", (b"x-request-id", b"abc-123"))
        await wire.response(stream_id)
        await wire.aclose()
    (line,) = [record.getMessage() for record in access_records]
    request_id, content_type, protocol, stream, micros, seconds, unknown = line.split()
    assert (request_id, content_type, protocol) == ("abc-123", "text/plain", "HTTP/2")
    assert stream == str(stream_id)
    assert micros.isdigit()
    assert float(seconds) >= 0
    assert unknown == "-"  # an unknown atom is a blank, not a broken line


async def test_json_access_log(access_records: list[logging.LogRecord]) -> None:
    async with (
        memory_server(typed_app, access_log=True, access_log_format="json") as srv,
        srv.client() as client,
    ):
        await client.send(request(target="/p?q=1", headers=[("User-Agent", "curl/8.5")]))
        await client.response()
    (line,) = [record.getMessage() for record in access_records]
    entry = json.loads(line)
    assert entry["method"] == "GET"
    assert (entry["path"], entry["query"]) == ("/p", "q=1")
    assert (entry["status"], entry["bytes"], entry["protocol"]) == (201, 2, "HTTP/1.1")
    assert entry["user_agent"] == "curl/8.5"
    assert entry["pid"] == os.getpid()
    assert set(entry) >= {"time", "client", "duration_ms", "referer", "stream_id"}


async def test_a_websocket_is_logged_with_the_status_its_handshake_got(
    access_records: list[logging.LogRecord],
) -> None:
    # 101 for an HTTP/1.1 upgrade; 200 for an extended CONNECT (RFC 8441).
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})

    upgrade = request(
        target="/ws",
        headers=[
            ("upgrade", "websocket"),
            ("connection", "upgrade"),
            ("sec-websocket-key", base64.b64encode(os.urandom(16)).decode()),
            ("sec-websocket-version", "13"),
        ],
    )
    async with memory_server(app, access_log=True) as srv:
        async with srv.client() as client:
            await client.send(upgrade)
            assert (await client.receive_some()).startswith(b"HTTP/1.1 101 ")
        wire = await H2Wire.connect(srv)
        stream_id = await wire.open_websocket("/ws")
        headers, _ = await wire.response(stream_id)
        assert headers[b":status"] == b"200"
        await wire.aclose()
    lines = [record.getMessage() for record in access_records]
    assert len(lines) == 2, lines
    assert '"GET /ws HTTP/1.1" 101' in lines[0]
    assert '"GET /ws HTTP/2" 200' in lines[1], lines
