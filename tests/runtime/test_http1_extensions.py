"""ASGI response extensions over HTTP/1.1: trailers (chunked, TE: trailers) and 103 Early Hints."""

from __future__ import annotations

from typing import Any

import h11
import pytest

from ._memory import memory_server
from ._support import lifespan_ok, request

pytestmark = pytest.mark.anyio


def extension_app(seen: list[dict[str, Any]], *, length: bytes | None = None) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_ok(receive, send)
            return
        seen.append(dict(scope["extensions"]))
        if "http.response.early_hint" in scope["extensions"]:
            await send({"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]})
        trailers = "http.response.trailers" in scope["extensions"]
        headers = [(b"trailer", b"x-sum")] if trailers else []
        if length is not None:
            headers.append((b"content-length", length))
        await send(
            {"type": "http.response.start", "status": 200, "headers": headers, "trailers": trailers}
        )
        await send({"type": "http.response.body", "body": b"body"})
        if trailers:
            await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"42")]})

    return app


async def read_trailers(client: Any) -> tuple[list[int], list[tuple[bytes, bytes]]]:
    client.expect()
    informational: list[int] = []
    trailers: list[tuple[bytes, bytes]] = []
    while True:
        event = await client.next_event()
        if isinstance(event, h11.InformationalResponse):
            informational.append(event.status_code)
        elif isinstance(event, h11.EndOfMessage):
            trailers = list(event.headers)
            return informational, trailers


async def test_trailers_follow_a_chunked_body_when_the_client_asks() -> None:
    seen: list[dict[str, Any]] = []
    async with memory_server(extension_app(seen)) as srv, srv.client() as client:
        await client.send(request(headers=(("TE", "trailers"),)))
        informational, trailers = await read_trailers(client)
    assert trailers == [(b"x-sum", b"42")]
    assert informational == [103]
    assert "http.response.trailers" in seen[0]


async def test_trailers_are_not_offered_without_te_trailers() -> None:
    seen: list[dict[str, Any]] = []
    async with memory_server(extension_app(seen)) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.body == b"body"
    assert "http.response.trailers" not in seen[0]
    assert "http.response.early_hint" in seen[0]


async def test_trailers_are_dropped_when_the_body_has_a_content_length() -> None:
    seen: list[dict[str, Any]] = []
    app = extension_app(seen, length=b"4")
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request(headers=(("TE", "trailers"),)))
        _, trailers = await read_trailers(client)
        # The connection is still good for the next request.
        await client.send(request())
        response = await client.response()
    assert trailers == []
    assert response.status_code == 200


async def test_no_early_hints_for_http10_clients() -> None:
    seen: list[dict[str, Any]] = []
    async with memory_server(extension_app(seen)) as srv, srv.client() as client:
        await client.send(b"GET / HTTP/1.0\r\nhost: test\r\n\r\n")
        response = await client.response(http_version=b"1.0")
    assert response.informational == []
    assert "http.response.early_hint" not in seen[0]
