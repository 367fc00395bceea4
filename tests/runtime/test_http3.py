"""HTTP/3 end to end: tricorn's QUIC endpoint and runner, aioquic's client over real UDP."""

from __future__ import annotations

import os
from typing import Any

import pytest

try:
    import aioquic  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

from ._quic_client import h3_client
from ._support import server
from .test_tls import PKI, pki

__all__ = ["pki"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio


def quic_address(addresses: list[str]) -> str:
    return next(a.removeprefix("quic:") for a in addresses if a.startswith("quic:"))


def h3_options(pki: PKI, **options: Any) -> dict[str, Any]:
    return pki.server_options(quic_bind=("127.0.0.1:0",), **options)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    assert scope["type"] == "http"
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['http_version']} {scope['scheme']} {scope['method']} {scope['path']}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-info", text.encode())],
        }
    )
    await send({"type": "http.response.body", "body": bytes(body) or b"hello"})


async def test_get_is_served_over_http3(pki: PKI) -> None:
    async with (
        server(echo_app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        response = await client.get("/path")
    assert response.status == 200
    assert response.headers[b"x-info"] == b"3 https GET /path"
    assert bytes(response.body) == b"hello"


async def test_post_of_two_mebibytes_is_echoed(pki: PKI) -> None:
    body = os.urandom(2 * 1024 * 1024)
    async with (
        server(echo_app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        stream_id = await client.send_request("/echo", method="POST", body=body)
        response = await client.response(stream_id, within=20)
    assert response.status == 200
    assert bytes(response.body) == body
