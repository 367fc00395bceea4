"""Run tricorn inside a trio program, talk to it, then shut it down.

Run it with ``python docs/examples/serve_trio.py`` (needs ``trio`` and
``httpx``). It prints the response's status and body and exits 0.
"""

from __future__ import annotations

from typing import Any

import httpx
import trio

import tricorn


async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    """The smallest useful ASGI 3 app: answer every request with a greeting."""
    if scope["type"] != "http":
        return  # no lifespan support; tricorn notices and serves without it
    body = f"hello from {scope['path']}\n".encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"text/plain; charset=utf-8"),
                (b"content-length", str(len(body)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": body})


async def main() -> None:
    # Port 0: the OS picks a free port, and serve() reports which one.
    config = tricorn.Config(bind=("127.0.0.1:0",))
    async with trio.open_nursery() as nursery:
        # start() returns once every listener is bound.
        addresses = await nursery.start(tricorn.serve, app, config)
        print("serving on", addresses[0])

        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{addresses[0]}/")
        print(response.status_code, response.text, end="")

        # Cancelling the nursery is the graceful shutdown: stop accepting,
        # let in-flight requests finish, run lifespan shutdown.
        nursery.cancel_scope.cancel()


if __name__ == "__main__":
    trio.run(main)
