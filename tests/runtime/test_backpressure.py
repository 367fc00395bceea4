"""Backpressure both ways: the body is streamed to the app and the response to the client.

Reading is the runtime's own decision (it stops reading while the app lags),
shown over an in-memory connection whose client writes wait once 16 writes are
unread, as a socket's do once its buffers are full. Writing waits on the
transport: that is shown on a real socket, whose kernel buffer fills up.
"""

from __future__ import annotations

from typing import Any

import anyio
import h11
import pytest

from tests.conftest import running_server

from ._memory import memory_server
from ._support import WAIT, raw_client, request

pytestmark = pytest.mark.anyio

MiB = 1024 * 1024


async def test_app_gets_the_first_body_chunk_before_the_whole_body_is_sent() -> None:
    first_chunk = anyio.Event()
    received: list[bytes] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        while True:
            message = await receive()
            received.append(message.get("body", b""))
            first_chunk.set()
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"%d" % sum(map(len, received))})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request("POST", headers=[("Content-Length", "10")]) + b"abc")
        with anyio.fail_after(WAIT):
            await first_chunk.wait()
        assert b"".join(received) == b"abc"
        await client.send(b"defghij")
        response = await client.response(b"POST")
    assert response.body == b"10"


@pytest.mark.mock_clock
async def test_reading_pauses_while_the_app_does_not_consume_the_body() -> None:
    size = 16 * MiB
    app_reads = anyio.Event()
    total = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal total
        await app_reads.wait()
        while True:
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"done"})

    async with memory_server(app) as srv, srv.client() as client:
        sent = anyio.Event()

        async def upload() -> None:
            await client.send(request("POST", headers=[("Content-Length", str(size))]))
            chunk = b"x" * (64 * 1024)
            for _ in range(size // len(chunk)):
                await client.send(chunk)
            sent.set()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(upload)
            with anyio.move_on_after(0.5):
                await sent.wait()
            assert not sent.is_set(), "the server buffered the whole body the app did not read"
            app_reads.set()
            with anyio.fail_after(5):
                await sent.wait()
        response = await client.response(b"POST")
    assert response.body == b"done"
    assert total == size


async def test_streamed_response_chunk_arrives_before_the_app_sends_the_next() -> None:
    first_seen = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"first", "more_body": True})
        with anyio.fail_after(WAIT):
            await first_seen.wait()
        await send({"type": "http.response.body", "body": b"second"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        client.expect()
        head = await client.next_event()
        assert isinstance(head, h11.Response)
        data = await client.next_event()
        assert isinstance(data, h11.Data)
        assert data.data == b"first"
        first_seen.set()
        rest = await client.read_body()
    assert rest == b"second"


async def test_send_waits_until_the_client_takes_the_bytes() -> None:
    chunk = b"y" * MiB
    chunks_total = 64
    sent_chunks = 0
    outcome: list[BaseException] = []
    app_done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent_chunks
        try:
            await send({"type": "http.response.start", "status": 200, "headers": []})
            for _ in range(chunks_total):
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                sent_chunks += 1
            await send({"type": "http.response.body", "body": b""})
        except OSError as exc:
            outcome.append(exc)
        finally:
            app_done.set()

    async with running_server(app, lifespan="off") as address:
        async with raw_client(address) as client:
            await client.send(request())
            # The client never reads: the app must not get through 64 MiB.
            # Once every task waits, the app's send waits on the full socket.
            with anyio.fail_after(10):
                await anyio.wait_all_tasks_blocked()
            assert not app_done.is_set()
            assert sent_chunks < chunks_total
        with anyio.fail_after(WAIT):
            await app_done.wait()
    assert sent_chunks < chunks_total
    assert len(outcome) == 1
