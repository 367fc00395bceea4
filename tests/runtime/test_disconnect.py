"""The client going away: http.disconnect, ClientDisconnected, and apps that end with it."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tricorn.errors import ClientDisconnected

from ._memory import memory_server
from ._support import WAIT, raw_client, request, request_then_leave, server, stream_until_send_fails

pytestmark = pytest.mark.anyio


async def test_client_closing_mid_body_gives_http_disconnect() -> None:
    messages: list[dict[str, Any]] = []
    first = anyio.Event()
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                messages.append(message)
                first.set()
                if message["type"] != "http.request" or not message["more_body"]:
                    break
        finally:
            done.set()

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request("POST", headers=[("Content-Length", "10")]) + b"abc")
            with anyio.fail_after(WAIT):
                await first.wait()
        with anyio.fail_after(WAIT):
            await done.wait()
    assert messages[0] == {"type": "http.request", "body": b"abc", "more_body": True}
    assert messages[-1] == {"type": "http.disconnect"}


async def test_long_poll_waiting_on_receive_sees_disconnect() -> None:
    waiting = anyio.Event()
    seen: list[dict[str, Any]] = []
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()  # the (empty) request body
        waiting.set()
        seen.append(await receive())
        done.set()

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
            with anyio.fail_after(WAIT):
                await waiting.wait()
        with anyio.fail_after(WAIT):
            await done.wait()
    assert seen == [{"type": "http.disconnect"}]


async def test_receive_keeps_returning_disconnect() -> None:
    seen: list[dict[str, Any]] = []
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        try:
            with anyio.fail_after(WAIT):
                for _ in range(3):
                    seen.append(await receive())
        finally:
            done.set()

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
        with anyio.fail_after(WAIT):
            await done.wait()
    assert seen == [{"type": "http.disconnect"}] * 3


async def test_send_after_client_is_gone_raises_client_disconnected() -> None:
    errors: list[BaseException] = []
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await receive()
            assert await receive() == {"type": "http.disconnect"}
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"too late"})
        except Exception as exc:
            errors.append(exc)
        finally:
            done.set()

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
        with anyio.fail_after(WAIT):
            await done.wait()
    assert len(errors) == 1
    assert isinstance(errors[0], ClientDisconnected)
    assert isinstance(errors[0], OSError)


async def test_send_of_streamed_body_raises_once_client_is_gone() -> None:
    errors: list[BaseException] = []
    streaming = anyio.Event()
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            await stream_until_send_fails(send, streaming)
        except OSError as exc:
            errors.append(exc)
        finally:
            done.set()

    await request_then_leave(app, streaming, done)
    assert len(errors) == 1
    assert isinstance(errors[0], ClientDisconnected)


async def test_receive_after_the_response_is_complete_gives_disconnect() -> None:
    after: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})
        with anyio.fail_after(WAIT):
            after.append(await receive())

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        # Still connected: the answer must not wait for the client to leave.
        await client.send(request())
        await client.response()
    assert response.body == b"ok"
    assert after[0] == {"type": "http.disconnect"}


async def test_app_that_returns_on_disconnect_lets_the_connection_end() -> None:
    ended = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while (await receive())["type"] != "http.disconnect":
                pass
        finally:
            ended.set()

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
        with anyio.fail_after(WAIT):
            await ended.wait()
        # Without a shutdown to close it: the runtime ends the connection itself.
        await srv.wait_closed()


async def test_app_ignoring_disconnect_is_cancelled_by_the_graceful_timeout() -> None:
    started = anyio.Event()
    cancelled: list[bool] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async with server(app, lifespan="off", graceful_timeout=0.3) as handle:
        async with raw_client(handle.address) as client:
            await client.send(request())
            with anyio.fail_after(WAIT):
                await started.wait()
        handle.shutdown()
        await handle.wait_stopped()
    assert cancelled == [True]
