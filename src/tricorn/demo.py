"""The bundled demo app: ``tricorn tricorn.demo:app``.

A page that shows how the request arrived (protocol, scheme, client, server)
and a response streamed in pieces. It is an ordinary ASGI 3 app; it uses
only AnyIO, so it runs on every worker class.
"""

from __future__ import annotations

import html
import json
from typing import Any

import anyio

__all__ = ["app"]

_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tricorn demo</title>
<style>body{{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}}
th{{text-align:left;padding-right:1rem}}code{{background:#eee;padding:0 .2rem}}</style></head>
<body>
<h1>tricorn is serving this page</h1>
<table>
<tr><th>Protocol</th><td>HTTP/{http_version}</td></tr>
<tr><th>Scheme</th><td>{scheme}</td></tr>
<tr><th>Client</th><td>{client}</td></tr>
<tr><th>Server</th><td>{server}</td></tr>
<tr><th>Method and path</th><td><code>{method} {path}</code></td></tr>
<tr><th>Served since startup</th><td>{served} requests</td></tr>
</table>
<p>Try <a href="/stream">/stream</a>: a response sent in ten pieces, a tenth of a second apart,
and <a href="/scope">/scope</a>: this request's ASGI scope as JSON.
<code>POST</code> a body to <code>/echo</code> and it comes back.</p>
</body></html>
"""


def _address(value: Any) -> str:
    if not value:
        return "(unknown)"
    host, port = value
    return f"{host}:{port}" if port is not None else str(host)


async def _send_text(send: Any, status: int, body: bytes, content_type: bytes) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", content_type),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def _lifespan(scope: Any, receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            scope["state"]["served"] = [0]
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] != "http":
        return
    counter = scope.get("state", {}).get("served")
    if counter is not None:
        counter[0] += 1
    # Route on the path below root_path: behind a proxy mounted at /api,
    # "/api/stream" is this app's "/stream".
    path = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    if path == "/stream":
        await send(
            {
                "type": "http.response.start",
                "status": 200,
                "headers": [(b"content-type", b"text/plain; charset=utf-8")],
            }
        )
        for piece in range(1, 11):
            await send(
                {
                    "type": "http.response.body",
                    "body": f"piece {piece} of 10\n".encode(),
                    "more_body": True,
                }
            )
            await anyio.sleep(0.1)
        await send({"type": "http.response.body", "body": b""})
    elif path == "/echo":
        chunks = []
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        await _send_text(send, 200, b"".join(chunks), b"application/octet-stream")
    elif path == "/scope":
        shown = {key: value for key, value in scope.items() if key not in ("state", "headers")}
        shown["headers"] = [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]]
        body = json.dumps(shown, default=lambda v: v.decode("latin-1"), indent=2).encode()
        await _send_text(send, 200, body, b"application/json")
    elif path == "/":
        page = _PAGE.format(
            http_version=html.escape(scope["http_version"]),
            scheme=html.escape(scope["scheme"]),
            client=html.escape(_address(scope.get("client"))),
            server=html.escape(_address(scope.get("server"))),
            method=html.escape(scope["method"]),
            path=html.escape(scope["path"]),
            served=counter[0] if counter is not None else "?",
        )
        await _send_text(send, 200, page.encode(), b"text/html; charset=utf-8")
    else:
        await _send_text(send, 404, b"Not Found\n", b"text/plain; charset=utf-8")
