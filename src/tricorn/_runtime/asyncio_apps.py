"""An app written for asyncio, served on trio: one clear line instead of a traceback.

``asyncio.get_running_loop()`` (and everything built on it: ``asyncio.sleep``,
``create_task``, asyncio locks) raises ``RuntimeError: no running event loop``
when trio runs the show. The fix is never in the app's code but in the
command line, so the log says that, once, and keeps the traceback at debug.
"""

from __future__ import annotations

from typing import Final

from .._asgi.types import ASGI3App, ASGIReceive, ASGISend, Message, Scope
from .logging import error_logger
from .transport import on_asyncio

__all__ = ["NEEDS_ASYNCIO", "guard_requests", "needs_asyncio", "on_asyncio", "says_needs_asyncio"]

NEEDS_ASYNCIO: Final = (
    "the app needs asyncio (it called asyncio, which has no running event loop here); "
    "serve it with --worker-class asyncio or --worker-class uvloop"
)

_NO_LOOP: Final = "no running event loop"


def needs_asyncio(error: BaseException) -> bool:
    """Whether ``error`` (or a leaf of it) is asyncio finding no loop where ours runs."""
    if isinstance(error, BaseExceptionGroup):
        return any(needs_asyncio(inner) for inner in error.exceptions)
    return isinstance(error, RuntimeError) and _NO_LOOP in str(error) and not on_asyncio()


def says_needs_asyncio(text: str) -> bool:
    """Whether an app's own failure report (a framework's traceback text) is that error."""
    return f"RuntimeError: {_NO_LOOP}" in text and not on_asyncio()


def guard_requests(app: ASGI3App) -> ASGI3App:
    """``app``, with that error answered 500 and logged in one line.

    Only worth its wrapper off asyncio. An error after the response started
    is left to the exchange, as any other.
    """

    async def guarded(scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] == "lifespan":
            await app(scope, receive, send)  # Lifespan reports it itself
            return
        sent = False

        async def watched_send(message: Message) -> None:
            nonlocal sent
            sent = True
            await send(message)

        try:
            await app(scope, receive, watched_send)
        except Exception as exc:
            if sent or not needs_asyncio(exc):
                raise
            error_logger.error("%s %s: %s", _kind(scope), scope.get("path", ""), NEEDS_ASYNCIO)
            error_logger.debug("the exception", exc_info=exc)
            await _answer_500(scope, send)

    return guarded


def _kind(scope: Scope) -> str:
    return "WebSocket" if scope["type"] == "websocket" else "request"


async def _answer_500(scope: Scope, send: ASGISend) -> None:
    body = b"Internal Server Error"
    headers = [
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    ]
    if scope["type"] == "http":
        await send({"type": "http.response.start", "status": 500, "headers": headers})
        await send({"type": "http.response.body", "body": body})
    elif isinstance(extensions := scope.get("extensions"), dict) and (
        "websocket.http.response" in extensions
    ):
        await send({"type": "websocket.http.response.start", "status": 500, "headers": headers})
        await send({"type": "websocket.http.response.body", "body": body})
    else:
        await send({"type": "websocket.close", "code": 1011})
