"""The app of the download benchmark: one file, sent two ways.

``GET /pathsend`` hands the file to the server (ASGI ``http.response.pathsend``);
``GET /loop`` reads it in 64 KiB pieces and sends each as a body message, as
an app does where the server offers no file extension. ``GET /`` answers
"ok" (the start-up probe). The file is ``$BENCH_DOWNLOAD_FILE``.
"""

from __future__ import annotations

import os
from typing import Any

PIECE = 64 * 1024


async def app(scope: Any, receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    path = os.environ["BENCH_DOWNLOAD_FILE"]
    if scope["path"] not in ("/pathsend", "/loop"):
        headers = [(b"content-length", b"2")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b"ok"})
        return
    size = os.stat(path).st_size
    headers = [
        (b"content-type", b"application/octet-stream"),
        (b"content-length", str(size).encode("ascii")),
    ]
    await send({"type": "http.response.start", "status": 200, "headers": headers})
    if scope["path"] == "/pathsend":
        await send({"type": "http.response.pathsend", "path": path})
        return
    with open(path, "rb") as file:  # noqa: ASYNC230 - the read-and-send loop under test
        while piece := file.read(PIECE):
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    await send({"type": "http.response.body", "body": b""})
