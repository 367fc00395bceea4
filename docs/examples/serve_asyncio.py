"""Run tricorn inside an asyncio program, talk to it, then shut it down.

Run it with ``python docs/examples/serve_asyncio.py`` (needs ``httpx``). It
prints the response's status and body and exits 0. The program is plain
``asyncio.run()``; AnyIO's task group provides the ``start()`` handshake that
reports the bound addresses.
"""

from __future__ import annotations

import asyncio
from typing import Any

import anyio
import httpx

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
    async with anyio.create_task_group() as tg:
        # start() returns once every listener is bound.
        addresses = await tg.start(tricorn.serve, app, config)
        print("serving on", addresses[0])

        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{addresses[0]}/")
        print(response.status_code, response.text, end="")

        # Cancelling the task group is the graceful shutdown: stop accepting,
        # let in-flight requests finish, run lifespan shutdown.
        tg.cancel_scope.cancel()


if __name__ == "__main__":
    asyncio.run(main())
