"""The hello-world ASGI 3 application every server in the benchmark serves.

It answers every HTTP request with ``200 text/plain`` "Hello, world!" and a
Content-Length, and speaks the lifespan protocol properly (startup.complete,
shutdown.complete), so no server takes a "lifespan unsupported" path that the
others do not.

``GET /bytes/N`` answers instead with N bytes (at most ``MAX_BYTES``) of
``application/octet-stream`` in one body message, built once per size; the
HTTP/2 benchmark uses it for responses larger than a flow-control window, and
``bench/http1.py --workloads get1m`` for its 1 MiB response.

``POST /upload`` reads the whole request body and answers its length in bytes,
as decimal digits (``bench/http1.py --workloads post64k``, ``bench/chunks.py``).
Any other request with a body is read in full too, then answered as ``GET /``.
"""

from __future__ import annotations

import functools
from typing import Any

BODY = b"Hello, world!"
BYTES_PREFIX = "/bytes/"
UPLOAD = "/upload"
MAX_BYTES = 16 * 1024 * 1024

Messages = tuple[dict[str, Any], dict[str, Any]]


def _answer(
    body: bytes, content_type: bytes = b"text/plain; charset=utf-8", status: int = 200
) -> Messages:
    """The two messages that answer with ``body`` whole, with its Content-Length."""
    start = {
        "type": "http.response.start",
        "status": status,
        "headers": [
            (b"content-type", content_type),
            (b"content-length", str(len(body)).encode("ascii")),
        ],
    }
    return start, {"type": "http.response.body", "body": body, "more_body": False}


_START, _BODY = _answer(BODY)
_NOT_FOUND, _EMPTY = _answer(b"", status=404)


@functools.lru_cache(maxsize=8)
def _sized(path: str) -> Messages:
    """The two messages that answer ``/bytes/N``: a 200 with N bytes, or a 404."""
    digits = path[len(BYTES_PREFIX) :]
    if not (digits.isascii() and digits.isdigit()) or int(digits) > MAX_BYTES:
        return _NOT_FOUND, _EMPTY
    size = int(digits)
    body = bytes(range(256)) * (size // 256 + 1)
    return _answer(body[:size], b"application/octet-stream")


async def _read_body(receive: Any) -> int:
    """Read the request body to its end (or the client's disconnect); its length."""
    size = 0
    while True:
        message = await receive()
        size += len(message.get("body", b""))
        if message["type"] != "http.request" or not message.get("more_body"):
            return size


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    kind = scope["type"]
    if kind == "http":
        path = scope.get("path", "/")
        # The request has no body worth reading for a GET; a request with a
        # body is read in full so that every server sees the same behaviour.
        size = await _read_body(receive) if scope.get("method") not in ("GET", "HEAD") else 0
        if path == UPLOAD:
            start, body = _answer(str(size).encode("ascii"))
        elif path.startswith(BYTES_PREFIX):
            start, body = _sized(path)
        else:
            start, body = _START, _BODY
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
