from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import running_server

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import request

pytestmark = pytest.mark.anyio


async def echo_client(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    host, port = scope["client"]
    body = f"{host} {port} {scope['scheme']}".encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})


FORWARDED = {"x-forwarded-for": "198.51.100.7", "x-forwarded-proto": "https"}


async def test_forwarded_headers_from_loopback_set_client_and_scheme() -> None:
    async with running_server(echo_client, lifespan="off") as address, httpx.AsyncClient() as c:
        response = await c.get(f"http://{address}/", headers=FORWARDED)
    assert response.text == "198.51.100.7 0 https"


async def test_forwarded_headers_are_ignored_when_proxy_headers_are_off() -> None:
    async with (
        running_server(echo_client, lifespan="off", proxy_headers=False) as address,
        httpx.AsyncClient() as c,
    ):
        response = await c.get(f"http://{address}/", headers=FORWARDED)
    host, _, scheme = response.text.split()
    assert (host, scheme) == ("127.0.0.1", "http")


async def test_forwarded_headers_from_an_untrusted_peer_are_ignored() -> None:
    async with (
        running_server(echo_client, lifespan="off", forwarded_allow_ips=("10.0.0.0/8",)) as address,
        httpx.AsyncClient() as c,
    ):
        response = await c.get(f"http://{address}/", headers=FORWARDED)
    host, _, scheme = response.text.split()
    assert (host, scheme) == ("127.0.0.1", "http")


def scope_recorder(scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        scopes.append(scope)
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close"})
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


PROXIED = [
    ("Forwarded", 'for="[2001:db8::7]:4711";proto=https;host=shop.example'),
    ("X-Forwarded-Prefix", "/store"),
]


def assert_proxied(scope: dict[str, Any], scheme: str) -> None:
    assert scope["client"] == ("2001:db8::7", 4711)
    assert scope["scheme"] == scheme
    assert scope["server"] == ("shop.example", 443)
    assert scope["root_path"] == "/store"
    assert scope["path"] == "/store/chat"
    assert [value for name, value in scope["headers"] if name == b"host"] == [b"shop.example"]


async def test_forwarded_fields_reach_the_http1_http2_and_websocket_scopes() -> None:
    # An in-memory peer has no address and is trusted like a unix socket peer.
    scopes: list[dict[str, Any]] = []
    async with memory_server(scope_recorder(scopes)) as srv:
        async with srv.client() as client:
            await client.send(request(target="/chat", headers=PROXIED))
            assert (await client.response()).status_code == 200
            upgrade = [
                ("Upgrade", "websocket"),
                ("Connection", "Upgrade"),
                ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                ("Sec-WebSocket-Version", "13"),
            ]
        async with srv.client() as client:
            await client.send(request(target="/chat", headers=[*PROXIED, *upgrade]))
            assert (await client.receive_some()).startswith(b"HTTP/1.1 101 ")
        wire = await H2Wire.connect(srv)
        extra = [(b"forwarded", PROXIED[0][1].encode()), (b"x-forwarded-prefix", b"/store")]
        stream_id = await wire.get("/chat", *extra)
        headers, _ = await wire.response(stream_id)
        await wire.aclose()
    assert headers[b":status"] == b"200"
    http1, websocket, http2 = scopes
    assert_proxied(http1, "https")
    assert_proxied(websocket, "wss")
    assert_proxied(http2, "https")
