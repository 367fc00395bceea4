"""The bundled demo app: ``tricorn tricorn.demo:app``.

A page that shows how the request arrived (protocol: "HTTP/1.1", "HTTP/2" or
"HTTP/3" from the scope's ``http_version``; scheme, client, server), a
response streamed in pieces and a WebSocket echo page. It is an ordinary ASGI
3 app; it uses only AnyIO, so it runs on every worker class.

The echo page checks itself as it opens: the server's greeting names the HTTP
version the WebSocket rode (the websocket scope's ``http_version``: "2" means
an extended CONNECT, RFC 8441, "3" one over HTTP/3, RFC 9220), the page sends
a probe and, once the probe comes back, writes ``page=<version> ws=<version>
echo=ok`` into ``<output id="result">`` (``echo=failed code=<close code>`` if
it does not). A browser test reads that marker.
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
<code>POST</code> a body to <code>/echo</code> and it comes back.
<a href="/ws">/ws</a> is a WebSocket echo.</p>
</body></html>
"""

_WS_PAGE = """<!doctype html>
<html lang="en">
<head><meta charset="utf-8"><title>tricorn WebSocket echo</title>
<style>body{font-family:system-ui,sans-serif;max-width:42rem;margin:2rem auto;padding:0 1rem}
#log{background:#f4f4f4;padding:.5rem;min-height:8rem;white-space:pre-wrap}</style></head>
<body data-http-version="__HTTP_VERSION__">
<h1>WebSocket echo</h1>
<p>This page came over HTTP/__HTTP_VERSION__ (__SCHEME__).
Self-check: <output id="result">pending</output></p>
<form id="form"><input id="text" size="40" autofocus placeholder="type and press Enter">
<button>Send</button></form>
<p id="status">connecting&hellip;</p>
<div id="log"></div>
<script>
const log = (line) => { document.getElementById("log").textContent += line + "\\n"; };
const url = new URL("ws", location.href);
url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
const socket = new WebSocket(url);
// The self-check: the greeting says "... over HTTP/<version>", then a probe
// must come back unchanged.
const probe = "probe " + Date.now();
let wsVersion = "?";
let checking = true;
const report = (echo) => {
  document.getElementById("result").textContent =
    "page=" + document.body.dataset.httpVersion + " ws=" + wsVersion + " echo=" + echo;
};
socket.onopen = () => { document.getElementById("status").textContent = "open: " + url; };
socket.onmessage = (event) => {
  log("< " + event.data);
  if (!checking || typeof event.data !== "string") return;
  const at = event.data.lastIndexOf(" over HTTP/");
  if (wsVersion === "?" && at >= 0) {
    wsVersion = event.data.slice(at + " over HTTP/".length);
    socket.send(probe);
    log("> " + probe);
  } else if (event.data === probe) {
    checking = false;
    report("ok");
  }
};
socket.onclose = (event) => {
  document.getElementById("status").textContent = "closed with code " + event.code;
  if (checking) report("failed code=" + event.code);
};
document.getElementById("form").onsubmit = (event) => {
  event.preventDefault();
  const input = document.getElementById("text");
  if (socket.readyState === WebSocket.OPEN && input.value) {
    socket.send(input.value);
    log("> " + input.value);
    input.value = "";
  }
};
</script>
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


async def _websocket_echo(scope: Any, receive: Any, send: Any) -> None:
    """Accept, greet, then send every message back until the client leaves."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    await send(
        {
            "type": "websocket.send",
            "text": f"connected to tricorn over HTTP/{scope.get('http_version', '1.1')}",
        }
    )
    while True:
        message = await receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await send({"type": "websocket.send", "text": message["text"]})
        else:
            await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})


def _app_path(scope: Any) -> str:
    """The path below root_path: behind a proxy mounted at /api, "/api/stream" is "/stream"."""
    path: str = scope["path"]
    root_path = scope.get("root_path", "")
    if root_path and path.startswith(root_path):
        path = path[len(root_path) :] or "/"
    return path


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        await _lifespan(scope, receive, send)
        return
    if scope["type"] == "websocket":
        if _app_path(scope) == "/ws":
            await _websocket_echo(scope, receive, send)
        else:
            await receive()
            await send({"type": "websocket.close"})  # refused: 403
        return
    if scope["type"] != "http":
        return
    counter = scope.get("state", {}).get("served")
    if counter is not None:
        counter[0] += 1
    path = _app_path(scope)
    if path == "/ws":
        page = _WS_PAGE.replace("__HTTP_VERSION__", html.escape(scope["http_version"]))
        page = page.replace("__SCHEME__", html.escape(scope["scheme"]))
        await _send_text(send, 200, page.encode(), b"text/html; charset=utf-8")
    elif path == "/stream":
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
