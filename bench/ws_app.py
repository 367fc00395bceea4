"""The WebSocket echo ASGI 3 application every server in ``bench/websocket.py`` serves.

A ``websocket`` scope is accepted (no subprotocol, no extra headers) and every
message is sent straight back as it came: text as text, bytes as bytes. The
loop ends when the client disconnects. HTTP and lifespan scopes go to
``bench.app``, so ``GET /`` answers 200 and every server runs its lifespan
startup the same way.
"""

from __future__ import annotations

from typing import Any

from bench.app import app as http_app

_ACCEPT = {"type": "websocket.accept"}


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        await http_app(scope, receive, send)
        return
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send(dict(_ACCEPT))
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes") or b""})
        elif kind == "websocket.disconnect":
            return
