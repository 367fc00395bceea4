"""The hello-world ASGI 3 application every server in the benchmark serves.

It answers every HTTP request with ``200 text/plain`` "Hello, world!" and a
Content-Length, and speaks the lifespan protocol properly (startup.complete,
shutdown.complete), so no server takes a "lifespan unsupported" path that the
others do not.

``GET /bytes/N`` answers instead with N bytes (at most ``MAX_BYTES``) of
``application/octet-stream`` in one body message, built once per size; the
HTTP/2 benchmark uses it for responses larger than a flow-control window.
"""

from __future__ import annotations

import functools
from typing import Any

BODY = b"Hello, world!"
BYTES_PREFIX = "/bytes/"
MAX_BYTES = 16 * 1024 * 1024

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(BODY)).encode("ascii")),
    ],
}
_BODY = {"type": "http.response.body", "body": BODY, "more_body": False}
_NOT_FOUND = {
    "type": "http.response.start",
    "status": 404,
    "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"content-length", b"0")],
}
_EMPTY = {"type": "http.response.body", "body": b"", "more_body": False}


@functools.lru_cache(maxsize=8)
def _sized(path: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The two messages that answer ``/bytes/N``: a 200 with N bytes, or a 404."""
    digits = path[len(BYTES_PREFIX) :]
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_BYTES:
        return _NOT_FOUND, _EMPTY
    size = int(digits)
    body = bytes(range(256)) * (size // 256 + 1)
    start = {
        "type": "http.response.start",
        "status": 200,
        "headers": [
            (b"content-type", b"application/octet-stream"),
            (b"content-length", str(size).encode("ascii")),
        ],
    }
    return start, {"type": "http.response.body", "body": body[:size], "more_body": False}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        # The request has no body worth reading for a GET; a request with a
        # body is drained so that every server sees the same behaviour.
        if scope.get("method") not in ("GET", "HEAD"):
            while True:
                message = await receive()
                if message["type"] != "http.request" or not message.get("more_body"):
                    break
        path = scope.get("path", "/")
        start, body = _sized(path) if path.startswith(BYTES_PREFIX) else (_START, _BODY)
        await send(dict(start))
        await send(dict(body))
    elif kind == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    else:
        raise RuntimeError(f"bench.app does not serve {kind!r} scopes")
