"""Slow clients are bounded: a body that stops coming (RUDY) and a client that stops reading.

All in virtual time over in-memory connections, so the timeouts are exact and
take no wall time.
"""

from __future__ import annotations

from typing import Any

import anyio
import h2.events
import pytest

from tricorn.errors import ClientDisconnected

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import read_body, request, watch_log

pytestmark = [pytest.mark.anyio, pytest.mark.mock_clock]


def body_reader(seen: list[dict[str, Any]]) -> Any:
    """Reads the whole body (recording every message), then answers with its length."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body, messages = await read_body(receive)
        seen.extend(messages)
        if messages[-1]["type"] == "http.disconnect":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    return app


async def test_a_body_trickled_a_byte_at_a_time_is_answered_408(virtual_time: bool) -> None:
    seen: list[dict[str, Any]] = []
    async with (
        memory_server(body_reader(seen), body_timeout=1) as srv,
        srv.client() as client,
    ):
        await client.send(request("POST", headers=[("Content-Length", "100000")]))
        start = anyio.current_time()

        async def trickle() -> None:
            try:
                for _ in range(100):
                    await anyio.sleep(0.15)
                    await client.send(b"x")
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                pass

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(trickle)
            response = await client.response(b"POST")
            elapsed = anyio.current_time() - start
            await client.assert_closed()
            task_group.cancel_scope.cancel()
        await srv.wait_closed()
    assert response.status_code == 408
    assert response.body == b"408 Request Timeout: request body not received in time\n"
    assert response.header(b"connection") == b"close"
    assert seen[-1] == {"type": "http.disconnect"}
    # Six bytes came, 0.15 s apart (0.9 s of waiting), then 0.1 s more without one.
    assert_took(elapsed, 1, virtual_time)


async def test_a_body_that_keeps_making_progress_is_read_however_long_it_takes() -> None:
    seen: list[dict[str, Any]] = []
    chunk = b"y" * 1024  # the progress unit: each one refills the allowance
    async with (
        memory_server(body_reader(seen), body_timeout=10) as srv,
        srv.client() as client,
    ):
        await client.send(request("POST", headers=[("Content-Length", str(len(chunk) * 5))]))
        for _ in range(5):
            await anyio.sleep(9)
            await client.send(chunk)
        response = await client.response(b"POST")
    assert response.status_code == 200
    assert response.body == b"5120"


async def test_a_slow_app_never_costs_its_client_the_body_timeout() -> None:
    # Only the app's waiting counts: here the body is all there, and the app
    # takes 100 s between reads.
    done = anyio.Event()

    async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
        total = 0
        while True:
            await anyio.sleep(100)
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(total).encode()})
        done.set()

    async with memory_server(slow_reader, body_timeout=10) as srv, srv.client() as client:
        await client.send(request("POST", body=b"z" * 200_000))
        with anyio.fail_after(10_000):
            await done.wait()
        response = await client.response(b"POST")
    assert response.status_code == 200
    assert response.body == b"200000"


async def test_an_http2_body_that_stops_coming_is_answered_408_on_its_stream(
    virtual_time: bool,
) -> None:
    seen: list[dict[str, Any]] = []
    async with memory_server(body_reader(seen), body_timeout=10) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/", (b"content-length", b"100"), end=False)
        wire.conn.send_data(stream_id, b"only ten b")
        await wire.flush()
        start = anyio.current_time()
        headers, body = await wire.response(stream_id, within=30)
        elapsed = anyio.current_time() - start
        seen_before = list(seen)
        ok = await wire.get("/")  # the connection itself serves on
        answer, _ = await wire.response(ok)
        await wire.aclose()
    assert headers[b":status"] == b"408"
    assert body == b"408 Request Timeout: request body not received in time\n"
    assert answer[b":status"] == b"200"
    assert_took(elapsed, 10, virtual_time)
    assert seen_before[-1] == {"type": "http.disconnect"}
    assert not any(isinstance(e, h2.events.ConnectionTerminated) for e in wire.events)


async def test_a_client_that_stops_reading_is_closed_after_the_write_timeout(
    virtual_time: bool,
) -> None:
    failures: list[BaseException] = []

    async def streamer(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        chunk = {"type": "http.response.body", "body": b"s" * 65536, "more_body": True}
        try:
            while True:
                await send(chunk)
        except ClientDisconnected as exc:
            failures.append(exc)

    with watch_log() as log:
        async with memory_server(streamer, write_timeout=20) as srv, srv.client() as client:
            start = anyio.current_time()
            await client.send(request())
            # The client reads nothing: the in-memory pair fills (as a socket
            # buffer would) at once, in virtual time, and the write waits.
            await srv.wait_closed(within=100)
            elapsed = anyio.current_time() - start
    assert len(failures) == 1
    assert "write_timeout" in str(failures[0])
    assert_took(elapsed, 20, virtual_time)
    assert any("write_timeout" in message for message in log.messages())
