"""Apps that raise or break the ASGI message cycle: 500, closed connections, clear logs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import anyio
import h11
import pytest

from ._memory import memory_server
from ._support import (
    ok_app,
    request,
    request_then_leave,
    stream_until_send_fails,
)

pytestmark = pytest.mark.anyio


class Boom(Exception):
    pass


@pytest.fixture
def error_log(caplog: pytest.LogCaptureFixture) -> Iterator[pytest.LogCaptureFixture]:
    """caplog wired straight to ``tricorn.error``, whatever other tests did to propagation."""
    logger = logging.getLogger("tricorn.error")
    saved = (logger.level, logger.propagate)
    logger.addHandler(caplog.handler)
    logger.propagate = False
    logger.setLevel(logging.DEBUG)
    try:
        yield caplog
    finally:
        logger.removeHandler(caplog.handler)
        logger.level, logger.propagate = saved


def errors(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "tricorn.error" and r.levelno >= logging.ERROR]


async def get_response(app: Any) -> Any:
    """One GET; also checks the server still answers afterwards, on a new connection."""
    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
            response = await client.response()
            await client.assert_closed()
        async with srv.client() as client:
            await client.send(request(target="/health"))
            health = await client.response()
    assert health.status_code in (200, 500)
    return response


async def get_truncated(app: Any) -> bytes:
    """One GET whose response must start and then be cut off; returns the body received."""
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        client.expect()
        head = await client.next_event()
        assert isinstance(head, h11.Response)
        assert head.status_code == 200
        received = bytearray()
        while True:
            try:
                event = await client.next_event()
            except h11.RemoteProtocolError:
                return bytes(received)  # closed before the end of the body
            assert isinstance(event, h11.Data), event
            received += event.data


async def test_exception_before_response_start_gives_500_and_logs_traceback(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise Boom("kaput")

    response = await get_response(app)
    assert response.status_code == 500
    assert response.header(b"connection") == b"close"
    records = [r for r in errors(error_log) if r.exc_info]
    assert records, error_log.text
    assert records[0].exc_info is not None
    assert records[0].exc_info[0] is Boom
    assert "kaput" in error_log.text


async def test_exception_after_start_before_body_gives_500(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 201, "headers": [(b"x-a", b"1")]})
        raise Boom("after start")

    response = await get_response(app)
    assert response.status_code == 500
    assert response.header(b"x-a") is None
    assert any(r.exc_info and r.exc_info[0] is Boom for r in errors(error_log))


async def test_exception_after_body_started_closes_the_connection(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        raise Boom("mid body")

    received = await get_truncated(app)
    assert received == b"partial"
    assert any(r.exc_info and r.exc_info[0] is Boom for r in errors(error_log))


async def test_exception_after_body_with_content_length_closes_the_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"12345", "more_body": True})
        raise Boom("mid body")

    assert await get_truncated(app) == b"12345"


async def test_app_returning_without_response_gives_500(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        return

    response = await get_response(app)
    assert response.status_code == 500
    assert any("without" in r.getMessage() for r in errors(error_log))


async def test_app_returning_after_start_only_gives_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})

    response = await get_response(app)
    assert response.status_code == 500


async def test_app_returning_mid_body_closes_the_connection(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"half", "more_body": True})

    assert await get_truncated(app) == b"half"
    assert any("completing" in r.getMessage() for r in errors(error_log))


async def test_body_before_start_gives_500_and_log_names_the_message(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.body", "body": b"no start"})

    response = await get_response(app)
    assert response.status_code == 500
    assert "http.response.body" in error_log.text


async def test_unknown_message_type_gives_500_and_log_names_it(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.bogus"})

    response = await get_response(app)
    assert response.status_code == 500
    assert "http.response.bogus" in error_log.text


async def test_second_start_after_body_closes_the_connection(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"a", "more_body": True})
        await send({"type": "http.response.start", "status": 200, "headers": []})

    assert await get_truncated(app) == b"a"
    assert "http.response.start" in error_log.text


async def test_message_after_response_complete_is_reported(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await ok_app(scope, receive, send)
        await send({"type": "http.response.body", "body": b"extra"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.assert_closed()
    assert response.body == b"ok"
    assert "http.response.body" in error_log.text


async def test_second_start_before_body_gives_500(error_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.start", "status": 201, "headers": []})

    response = await get_response(app)
    assert response.status_code == 500
    assert "http.response.start" in error_log.text


async def test_trailers_without_the_extension_give_500(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        start = {"type": "http.response.start", "status": 200, "headers": [], "trailers": True}
        await send(start)
        await send({"type": "http.response.body", "body": b""})

    response = await get_response(app)
    assert response.status_code == 500
    assert "trailers" in error_log.text


async def test_non_dict_message_gives_500(error_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(["http.response.start", 200])

    response = await get_response(app)
    assert response.status_code == 500
    assert "dict" in error_log.text


async def test_exception_after_the_response_is_logged_and_closes_keep_alive(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await ok_app(scope, receive, send)
        raise Boom("after the response")

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.assert_closed()
    assert response.body == b"ok"
    assert any(r.exc_info and r.exc_info[0] is Boom for r in errors(error_log))


async def test_client_disconnect_is_not_logged_as_an_app_error(
    error_log: pytest.LogCaptureFixture,
) -> None:
    streaming = anyio.Event()
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:  # ClientDisconnected ends the stream and is not caught
            await stream_until_send_fails(send, streaming)
        finally:
            done.set()

    await request_then_leave(app, streaming, done)
    assert errors(error_log) == []


async def test_str_body_gives_500_and_log_names_body(error_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": "text, not bytes"})

    response = await get_response(app)
    assert response.status_code == 500
    assert "'body'" in error_log.text


async def test_non_bool_more_body_gives_500(error_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"", "more_body": "yes"})

    response = await get_response(app)
    assert response.status_code == 500
    assert "more_body" in error_log.text


@pytest.mark.parametrize(
    "headers",
    [
        [("content-type", "text/plain")],
        [(b"content-type", "text/plain")],
        [(b"content-type",)],
        b"content-type: text/plain",
    ],
    ids=["str-pair", "str-value", "one-item", "bytes-block"],
)
async def test_bad_header_types_give_500(headers: Any, error_log: pytest.LogCaptureFixture) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"x"})

    response = await get_response(app)
    assert response.status_code == 500
    assert "header" in error_log.text


@pytest.mark.parametrize(
    "header",
    [(b"x-bad", b"line\r\nbreak"), (b"bad name", b"value")],
    ids=["crlf-in-value", "space-in-name"],
)
async def test_header_h11_refuses_gives_500(
    header: tuple[bytes, bytes], error_log: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [header]})
        await send({"type": "http.response.body", "body": b"x"})

    response = await get_response(app)
    assert response.status_code == 500
    assert response.header(header[0]) is None


async def test_body_longer_than_content_length_closes_the_connection(
    error_log: pytest.LogCaptureFixture,
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"3")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b"def"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.assert_closed()
    assert response.body == b"abc"
    assert errors(error_log)


async def test_body_ending_short_of_content_length_closes_the_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc", "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    assert await get_truncated(app) == b"abc"


async def test_single_body_short_of_content_length_gives_500() -> None:
    # start + one body message: no byte reached the wire before the error,
    # so the client can still get a clean 500 rather than a silent close.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"10")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"abc"})

    response = await get_response(app)
    assert response.status_code == 500


@pytest.mark.parametrize("status", [99, 100, 199, 600, "200", True, None])
async def test_status_out_of_range_or_wrong_type_gives_500(
    status: Any, error_log: pytest.LogCaptureFixture
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    response = await get_response(app)
    assert response.status_code == 500
    assert "status" in error_log.text


async def test_server_keeps_serving_after_an_app_error() -> None:
    calls = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise Boom("first request fails")
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
            assert (await client.response()).status_code == 500
        for _ in range(2):
            async with srv.client() as client:
                await client.send(request())
                assert (await client.response()).body == b"ok"


async def test_a_disconnect_raised_through_a_task_group_is_not_an_app_error(
    error_log: pytest.LogCaptureFixture,
) -> None:
    streaming = anyio.Event()
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            async with anyio.create_task_group() as task_group:  # as Starlette streams
                task_group.start_soon(stream_until_send_fails, send, streaming)
        finally:
            done.set()

    await request_then_leave(app, streaming, done)
    assert errors(error_log) == []


async def test_an_exception_after_the_client_left_is_logged_below_error(
    error_log: pytest.LogCaptureFixture,
) -> None:
    streaming = anyio.Event()
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await stream_until_send_fails(send, streaming)
        except OSError:
            raise RuntimeError("the stream broke") from None
        finally:
            done.set()

    with error_log.at_level(logging.INFO, logger="tricorn.error"):
        await request_then_leave(app, streaming, done)
    assert errors(error_log) == []
    assert "the stream broke" in error_log.text
