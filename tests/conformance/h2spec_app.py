"""The app h2spec talks to: reads each request whole, then answers with a short page.

h2spec checks how the server reacts to frames that follow a request's
HEADERS (a body longer than its Content-Length, a stream window pushed past
2^31-1). An app that answers before those frames are read closes the stream
first, and the check then depends on how busy the machine is; reading the
body and yielding briefly first keeps the stream open while they arrive.
"""

from __future__ import annotations

from typing import Any

import anyio

BODY = b"<!doctype html><title>h2spec</title><p>tricorn conformance target</p>\n"


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] != "http":
        return
    while True:
        message = await receive()
        if message["type"] != "http.request" or not message.get("more_body"):
            break
    await anyio.sleep(0.05)
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"text/html"), (b"content-length", b"%d" % len(BODY))],
        }
    )
    await send({"type": "http.response.body", "body": BODY})
