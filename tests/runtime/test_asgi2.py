"""An ASGI 2 application (a class instantiated with the scope), wrapped and served.

``wrap_app`` adapts it (serve() takes ASGI 3 only); the lifespan test needs serve().
"""

from __future__ import annotations

from typing import Any, ClassVar

import httpx
import pytest

from tests.conftest import running_server
from tricorn._asgi.app import wrap_app

from ._memory import memory_server
from ._support import request

pytestmark = pytest.mark.anyio


class ASGI2App:
    scopes: ClassVar[list[dict[str, Any]]] = []

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope
        ASGI2App.scopes.append(scope)

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "lifespan":
            while True:
                message = await receive()
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        message = await receive()
        body = b"asgi2 " + self.scope["path"].encode() + b" " + message["body"]
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})


@pytest.fixture(autouse=True)
def _fresh_scopes() -> None:
    ASGI2App.scopes = []


async def test_asgi2_app_is_served() -> None:
    app = wrap_app(ASGI2App, "auto", wsgi_max_workers=1)
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request("POST", "/hello", body=b"body"))
        response = await client.response(b"POST")
    assert response.status_code == 200
    assert response.body == b"asgi2 /hello body"


async def test_asgi2_app_gets_one_instance_per_scope_including_lifespan() -> None:
    app = wrap_app(ASGI2App, "auto", wsgi_max_workers=1)
    async with running_server(app, lifespan="on") as address, httpx.AsyncClient() as client:
        await client.get(f"http://{address}/a")
        await client.get(f"http://{address}/b")
    assert [scope["type"] for scope in ASGI2App.scopes] == ["lifespan", "http", "http"]
    assert [scope.get("path") for scope in ASGI2App.scopes[1:]] == ["/a", "/b"]


async def test_asgi2_interface_forced_explicitly() -> None:
    app = wrap_app(ASGI2App, "asgi2", wsgi_max_workers=1)
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request(target="/x"))
        response = await client.response()
    assert response.body == b"asgi2 /x "
