"""--limit-concurrency: past the limit a request gets 503 with Retry-After; idle connections
do not count. In memory, on every backend."""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tricorn import Config
from tricorn.errors import ConfigError

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import WAIT, request

pytestmark = pytest.mark.anyio


class Gate:
    """``/wait`` holds until released; anything else answers at once."""

    def __init__(self) -> None:
        self.release = anyio.Event()
        self.waiting = 0
        self.arrived = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        if scope["path"] == "/wait":
            self.waiting += 1
            self.arrived.set()
            await self.release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async def wait_for(self, count: int) -> None:
        with anyio.fail_after(WAIT):
            while self.waiting < count:
                self.arrived = anyio.Event()
                await self.arrived.wait()


UPGRADE = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


async def test_past_the_limit_a_request_gets_503_with_retry_after() -> None:
    app = Gate()
    async with memory_server(app, limit_concurrency=2) as srv:
        async with srv.client() as first, srv.client() as second:
            await first.send(request(target="/wait"))
            await second.send(request(target="/wait"))
            await app.wait_for(2)
            async with srv.client() as third:
                await third.send(request())
                refused = await third.response()
                await third.send(request(target="/chat", headers=UPGRADE))
                socket_refused = await third.response()
            app.release.set()
            assert (await first.response()).status_code == 200
            assert (await second.response()).status_code == 200
        async with srv.client() as later:
            await later.send(request())
            assert (await later.response()).status_code == 200
    assert refused.status_code == 503
    assert refused.header(b"retry-after") == b"1"
    assert refused.body == b"503 Service Unavailable: the server is at its concurrency limit\n"
    assert socket_refused.status_code == 503


async def test_idle_keep_alive_connections_do_not_count() -> None:
    app = Gate()
    async with (
        memory_server(app, limit_concurrency=1) as srv,
        srv.client() as a,
        srv.client() as b,
        srv.client() as c,
    ):
        for client in (a, b, c):  # each served, then left open and idle
            await client.send(request())
            assert (await client.response()).status_code == 200
        await a.send(request())
        assert (await a.response()).status_code == 200


async def test_http2_streams_count_one_by_one() -> None:
    app = Gate()
    async with memory_server(app, limit_concurrency=1) as srv:
        wire = await H2Wire.connect(srv)
        held = await wire.get("/wait")
        await app.wait_for(1)
        refused = await wire.get("/")
        headers, _ = await wire.response(refused)
        app.release.set()
        ok, _ = await wire.response(held)
        await wire.aclose()
    assert headers[b":status"] == b"503"
    assert headers[b"retry-after"] == b"1"
    assert ok[b":status"] == b"200"


def test_a_limit_below_one_names_its_key() -> None:
    with pytest.raises(ConfigError) as caught:
        Config(limit_concurrency=0)
    assert caught.value.key == "limit_concurrency"
