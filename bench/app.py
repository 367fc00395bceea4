"""The hello-world ASGI 3 application every server in the benchmark serves.

It answers every HTTP request with ``200 text/plain`` "Hello, world!" and a
Content-Length, and speaks the lifespan protocol properly (startup.complete,
shutdown.complete), so no server takes a "lifespan unsupported" path that the
others do not.
"""

from __future__ import annotations

from typing import Any

BODY = b"Hello, world!"

_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(BODY)).encode("ascii")),
    ],
}
_BODY = {"type": "http.response.body", "body": BODY, "more_body": False}


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
        await send(dict(_START))
        await send(dict(_BODY))
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
