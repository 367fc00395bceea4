from __future__ import annotations

from typing import Any

import httpx
import pytest

from tests.conftest import running_server

pytestmark = pytest.mark.anyio


async def hello(scope: Any, receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"5")]}
    )
    await send({"type": "http.response.body", "body": b"hello"})


async def test_serves_a_request_over_a_real_socket() -> None:
    async with running_server(hello, lifespan="off") as address, httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/")
    assert response.status_code == 200
    assert response.text == "hello"
    assert response.headers["server"] == "tricorn"
