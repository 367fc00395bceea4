from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import running_server

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
