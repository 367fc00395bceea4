"""When the response head goes out: with the first body message if the app sends it
straight away (one write), or as soon as the app waits on anything else (an event
stream whose first event comes later shows its headers at once)."""

from __future__ import annotations

from typing import Any

import anyio
import h2.events
import h11
import pytest

from tests.conftest import running_server

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import WAIT, raw_client, request

pytestmark = pytest.mark.anyio


def event_stream(release: anyio.Event) -> Any:
    """Starts a response, then waits for ``release`` before its first body message."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"content-type", b"text/event-stream")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await release.wait()
        await send({"type": "http.response.body", "body": b"data: first\n\n"})

    return app


async def hello(scope: Any, receive: Any, send: Any) -> None:
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"13")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    await send({"type": "http.response.body", "body": b"Hello, world!"})


@pytest.mark.mock_clock
async def test_the_head_goes_out_while_the_app_waits_for_its_first_event(
    virtual_time: bool,
) -> None:
    release = anyio.Event()
    async with memory_server(event_stream(release)) as srv, srv.client() as client:
        start = anyio.current_time()
        await client.send(request())
        client.expect()
        head = await client.next_event()
        assert isinstance(head, h11.Response)
        assert not release.is_set()  # the body has not been sent yet
        assert_took(anyio.current_time() - start, 0, virtual_time)
        release.set()
        assert await client.read_body() == b"data: first\n\n"


async def test_over_http2_too() -> None:
    release = anyio.Event()
    async with memory_server(event_stream(release)) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/")
        head = await wire.until(lambda event: isinstance(event, h2.events.ResponseReceived))
        assert isinstance(head, h2.events.ResponseReceived)
        assert head.stream_id == stream_id
        release.set()
        _, body = await wire.response(stream_id)
        await wire.aclose()
    assert body == b"data: first\n\n"


async def test_over_a_real_socket() -> None:
    release = anyio.Event()
    async with (
        running_server(event_stream(release), lifespan="off") as address,
        raw_client(address) as client,
    ):
        await client.send(request())
        client.expect()
        assert isinstance(await client.next_event(), h11.Response)
        release.set()
        assert await client.read_body() == b"data: first\n\n"


async def test_a_head_and_the_body_sent_at_once_go_out_in_one_write() -> None:
    async with running_server(hello, lifespan="off") as address, raw_client(address) as client:
        await client.send(request())
        with anyio.fail_after(WAIT):
            first = await client.receive_some()
    assert first.startswith(b"HTTP/1.1 200 OK\r\n")
    assert first.endswith(b"\r\n\r\nHello, world!")


async def test_an_app_that_fails_after_its_head_went_out_cuts_the_response_short() -> None:
    # Once the app has waited after http.response.start, its head is out: a
    # later failure can no longer become a 500, and the close says it.
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await release.wait()
        raise RuntimeError("boom")

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        client.expect()
        head = await client.next_event()
        release.set()
        with pytest.raises(h11.RemoteProtocolError):
            await client.read_body()
    assert isinstance(head, h11.Response)
    assert head.status_code == 200


class _AwaitableApp:
    """An app whose call returns an awaitable that is not a coroutine (a
    generator-based one), as some adapters do."""

    def __init__(self, release: anyio.Event) -> None:
        self._app = event_stream(release)

    def __call__(self, scope: Any, receive: Any, send: Any) -> Any:
        return _Awaiting(self._app(scope, receive, send))


class _Awaiting:
    def __init__(self, coroutine: Any) -> None:
        self._coroutine = coroutine

    def __await__(self) -> Any:
        return (yield from self._coroutine.__await__())


async def test_an_app_returning_another_awaitable_gets_its_head_out_while_it_waits() -> None:
    release = anyio.Event()
    async with memory_server(_AwaitableApp(release)) as srv, srv.client() as client:
        await client.send(request())
        client.expect()
        assert isinstance(await client.next_event(), h11.Response)
        assert not release.is_set()
        release.set()
        assert await client.read_body() == b"data: first\n\n"


async def test_an_app_cancelled_while_it_waits_with_its_head_held_sees_the_cancellation() -> None:
    # The loop's cancellation reaches the app through the hook that watches
    # its waits, and what the app then sends still goes out.
    scopes: list[anyio.CancelScope] = []
    waiting = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        with anyio.CancelScope() as waited:
            scopes.append(waited)
            waiting.set()
            await anyio.sleep_forever()
        body = b"cancelled" if waited.cancelled_caught else b"not cancelled"
        await send({"type": "http.response.body", "body": body})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        client.expect()
        assert isinstance(await client.next_event(), h11.Response)
        await waiting.wait()
        scopes[0].cancel()
        assert await client.read_body() == b"cancelled"
