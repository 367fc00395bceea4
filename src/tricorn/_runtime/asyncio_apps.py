"""An app written for asyncio, served on trio: one clear line instead of a traceback.

``asyncio.get_running_loop()`` (and everything built on it: ``asyncio.sleep``,
``create_task``, asyncio locks) raises ``RuntimeError: no running event loop``
when trio runs the show. The fix is never in the app's code but in the
command line, so the log says that, once, and keeps the traceback at debug.
"""

from __future__ import annotations

from typing import Final

from .._asgi.types import Scope
from .logging import error_logger
from .transport import on_asyncio

__all__ = [
    "NEEDS_ASYNCIO",
    "log_needs_asyncio",
    "needs_asyncio",
    "on_asyncio",
    "says_needs_asyncio",
]

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


def log_needs_asyncio(scope: Scope, error: BaseException) -> bool:
    """Log the one clear line when ``error`` is an asyncio app's on another loop.

    The exchanges ask this of an app's exception: True means it was that
    error and is logged (the traceback at debug); the exchange answers it as
    any other failure (500, or 1011 once a WebSocket is accepted). Asking
    there, rather than wrapping the app, costs nothing per message.
    """
    if not needs_asyncio(error):
        return False
    kind = "WebSocket" if scope["type"] == "websocket" else "request"
    error_logger.error("%s %s: %s", kind, scope.get("path", ""), NEEDS_ASYNCIO)
    error_logger.debug("the exception", exc_info=error)
    return True
