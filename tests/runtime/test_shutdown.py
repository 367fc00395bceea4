"""Graceful shutdown: in-flight requests finish, idle connections close, new ones are refused.

How a connection winds down is shown in memory, through ``begin_shutdown``,
the call serve() makes; what serve() itself does (close the listeners,
the graceful timeout) on a real server.
"""

from __future__ import annotations

from typing import Any

import anyio
import h2.connection
import h2.events
import h11
import pytest

from tricorn._runtime.connection import FIRST_REQUEST_GRACE

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import WAIT, ok_app, raw_client, request, server, watch_log

pytestmark = pytest.mark.anyio


def blocking_app(in_request: anyio.Event, release: anyio.Event) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        in_request.set()
        await release.wait()
        await ok_app(scope, receive, send)

    return app


async def test_in_flight_request_finishes_with_connection_close() -> None:
    in_request, release = anyio.Event(), anyio.Event()
    app = blocking_app(in_request, release)
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        with anyio.fail_after(WAIT):
            await in_request.wait()
        srv.shutdown()
        release.set()
        response = await client.response()
        await client.assert_closed()
        await srv.wait_closed()
    assert response.body == b"ok"
    assert response.header(b"connection") == b"close"


async def test_in_flight_streamed_response_completes_during_shutdown() -> None:
    streaming, release = anyio.Event(), anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first,", "more_body": True})
        streaming.set()
        await release.wait()
        await send({"type": "http.response.body", "body": b"last"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        with anyio.fail_after(WAIT):
            await streaming.wait()
        srv.shutdown()
        release.set()
        response = await client.response()
        await client.assert_closed()
        await srv.wait_closed()
    assert response.body == b"first,last"


@pytest.mark.mock_clock
async def test_idle_keep_alive_connection_is_closed_promptly_on_shutdown(
    virtual_time: bool,
) -> None:
    async with memory_server(ok_app, keep_alive_timeout=30) as srv:
        async with srv.client() as client:
            await client.send(request())
            await client.response()
            srv.shutdown()
            start = anyio.current_time()
            await client.assert_closed()
            elapsed = anyio.current_time() - start
            assert elapsed < 1
        await srv.wait_closed()
    assert_took(elapsed, 0, virtual_time)


@pytest.mark.mock_clock
async def test_a_partial_first_head_gets_the_first_request_grace_on_shutdown(
    virtual_time: bool,
) -> None:
    async with memory_server(ok_app, request_head_timeout=30) as srv:
        async with srv.client() as client:
            await client.send(b"GET / HTTP/1.1\r\n")
            with anyio.fail_after(WAIT):
                await anyio.wait_all_tasks_blocked()  # the head is read, and waits
            srv.shutdown()
            start = anyio.current_time()
            # The grace, not the head timeout: the rest never comes.
            assert await client.closed_by_server(within=FIRST_REQUEST_GRACE + 1)
            elapsed = anyio.current_time() - start
        await srv.wait_closed()
    assert_took(elapsed, FIRST_REQUEST_GRACE, virtual_time)


@pytest.mark.mock_clock
async def test_a_new_connections_first_request_sent_after_shutdown_began_is_answered() -> None:
    # A worker retiring for a replacement may have accepted a connection
    # whose request is still on its way: it is served, not dropped.
    async with memory_server(ok_app) as srv:
        async with srv.client() as client:
            with anyio.fail_after(WAIT):
                await anyio.wait_all_tasks_blocked()  # connected, nothing sent
            srv.shutdown()
            await client.send(request())
            response = await client.response()
            await client.assert_closed()
        await srv.wait_closed()
    assert response.body == b"ok"
    assert response.header(b"connection") == b"close"


async def test_new_connections_are_refused_once_shutdown_begins() -> None:
    in_request, release = anyio.Event(), anyio.Event()
    app = blocking_app(in_request, release)
    with watch_log() as log:
        async with server(app, lifespan="off") as handle, raw_client(handle.address) as client:
            await client.send(request())
            with anyio.fail_after(WAIT):
                await in_request.wait()
            handle.shutdown()
            await log.wait_for("shutting down")
            host, port = handle.address.rsplit(":", 1)
            with pytest.raises(OSError, match="connection attempts failed"):
                await anyio.connect_tcp(host, int(port))
            release.set()
            await client.response()
            await handle.wait_stopped()


@pytest.mark.mock_clock
async def test_graceful_timeout_cancels_an_app_that_never_finishes(virtual_time: bool) -> None:
    in_request = anyio.Event()
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        in_request.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    with watch_log() as log:
        async with (
            server(app, lifespan="off", graceful_timeout=0.5) as handle,
            raw_client(handle.address) as client,
        ):
            await client.send(request())
            with anyio.fail_after(WAIT):
                await in_request.wait()
            handle.shutdown()
            start = anyio.current_time()
            await handle.wait_stopped()
            elapsed = anyio.current_time() - start
            # No response had started: the client is told, not left with an EOF.
            response = await client.response()
            await client.assert_closed()
    assert_took(elapsed, 0.5, virtual_time)
    assert cancelled == [True]
    assert response.status_code == 503
    assert response.header(b"connection") == b"close"
    assert response.body == b"503 Service Unavailable: the server is shutting down\n"
    assert any("graceful timeout" in message for message in log.messages())


async def test_graceful_timeout_cuts_a_started_response_short() -> None:
    # Part of the response went out: there is no room for a 503, so the
    # connection closes and the client sees the body end early.
    streaming = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-length", b"100")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        streaming.set()
        await anyio.sleep_forever()

    async with (
        server(app, lifespan="off", graceful_timeout=0.2) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(request())
        client.expect()
        assert isinstance(await client.next_event(), h11.Response)
        with anyio.fail_after(WAIT):
            await streaming.wait()
        handle.shutdown()
        await handle.wait_stopped()
        with pytest.raises(h11.RemoteProtocolError):
            await client.read_body()


async def test_graceful_timeout_answers_an_http2_stream_without_a_response_503() -> None:
    in_request = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        in_request.set()
        await anyio.sleep_forever()

    async with server(app, lifespan="off", graceful_timeout=0.2) as handle:
        wire = await H2Wire.connect(handle.address)
        stream_id = await wire.get("/")
        with anyio.fail_after(WAIT):
            await in_request.wait()
        handle.shutdown()
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        assert isinstance(goaway, h2.events.ConnectionTerminated)
        # h2 takes any GOAWAY for the end; a graceful one lets streams finish.
        wire.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        headers, body = await wire.response(stream_id)
        await handle.wait_stopped()
        await wire.aclose()
    assert headers[b":status"] == b"503"
    assert body == b"503 Service Unavailable: the server is shutting down\n"


async def test_shutdown_with_no_connections_returns_promptly() -> None:
    async with server(ok_app) as handle:
        handle.shutdown()
        await handle.wait_stopped(within=1)


async def test_fresh_connection_is_closed_while_another_request_finishes() -> None:
    in_request, release = anyio.Event(), anyio.Event()
    app = blocking_app(in_request, release)
    async with memory_server(app) as srv:
        async with srv.client() as busy, srv.client() as idle:
            await busy.send(request())
            with anyio.fail_after(WAIT):
                await in_request.wait()
            srv.shutdown()
            # The connection that sent nothing is closed after the first
            # request grace; nothing it sends later is served.
            assert await idle.closed_by_server()
            release.set()
            response = await busy.response()
        await srv.wait_closed()
    assert response.header(b"connection") == b"close"
