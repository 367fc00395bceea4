"""The ASGI lifespan protocol (lifespan spec 2.0): startup before serving, shutdown after."""

from __future__ import annotations

from typing import Any

import anyio
import anyio.abc

from .._asgi.scope import asgi_versions
from .._asgi.types import ASGI3App, LifespanScope, Message
from ..config import Config
from ..errors import AppProtocolError
from .asyncio_apps import NEEDS_ASYNCIO, needs_asyncio, says_needs_asyncio
from .logging import error_logger

__all__ = ["Lifespan"]

_EXPECTED = {
    "startup": ("lifespan.startup.complete", "lifespan.startup.failed"),
    "shutdown": ("lifespan.shutdown.complete", "lifespan.shutdown.failed"),
}


class Lifespan:
    """Runs the app's lifespan task and reports how startup and shutdown went.

    ``state`` is the dict the app may fill during startup; every request
    scope gets a shallow copy of it.
    """

    def __init__(self, app: ASGI3App, config: Config) -> None:
        self.state: dict[str, Any] = {}
        self._app = app
        self._mode = config.lifespan
        self._timeout = config.lifespan_timeout
        self._phase = "startup"
        self._answered = anyio.Event()
        self._failure: str | None = None
        self._spoke = False
        self._running = False
        self._abandoned = False
        self._replied = False
        self._reply: str | None = None

    def abandon(self) -> None:
        """A forced stop is cancelling the lifespan task: nothing it says is an answer now."""
        self._abandoned = True

    async def startup(self, task_group: anyio.abc.TaskGroup) -> str | None:
        """Start the lifespan task; return None on success, else why startup failed."""
        if self._mode == "off":
            return None
        self._running = True
        self._inbox_send, self._inbox = anyio.create_memory_object_stream[Message](2)
        task_group.start_soon(self._run_app)
        return await self._ask("startup")

    async def shutdown(self) -> None:
        """Ask the app to shut down; failures are logged, they change nothing now."""
        if not self._running:
            return
        failure = await self._ask("shutdown")
        if failure is not None:
            error_logger.error("lifespan shutdown failed: %s", failure)

    async def _ask(self, phase: str) -> str | None:
        self._phase = phase
        self._answered = anyio.Event()
        self._replied = False
        try:
            await self._inbox_send.send({"type": f"lifespan.{phase}"})
        except (anyio.BrokenResourceError, anyio.ClosedResourceError):
            return self._failure  # the lifespan task already ended
        with anyio.move_on_after(self._timeout) as scope:
            await self._answered.wait()
        if scope.cancelled_caught:
            return f"the app did not complete lifespan {phase} within {self._timeout:g} seconds"
        if self._replied:
            # The answer stands, whatever the app does right after it.
            return self._reply
        if not self._running and self._failure is None and phase == "startup":
            return None  # unsupported under "auto": serve without it.
        return self._failure

    async def _receive(self) -> Message:
        return await self._inbox.receive()

    async def _send(self, message: Message) -> None:
        kind = message.get("type") if isinstance(message, dict) else None
        if self._abandoned:
            # Frameworks answer the cancellation of their lifespan task with
            # lifespan.shutdown.failed (Starlette does); during a forced stop
            # that is the echo of our own cancellation, not the app's failure.
            error_logger.debug("lifespan message during a forced stop: %.200r", message)
            return
        complete, failed = _EXPECTED[self._phase]
        if kind not in (complete, failed) or self._answered.is_set():
            raise AppProtocolError(f"unexpected lifespan message {self._where()}: {message!r}")
        self._spoke = True
        self._replied = True
        self._reply = None
        if kind == failed:
            self._reply = str(message.get("message", "")) or f"lifespan.{self._phase}.failed"
            if says_needs_asyncio(self._reply):
                # A framework's report of the error (Starlette sends the traceback text).
                error_logger.debug("lifespan %s failed: %s", self._phase, self._reply)
                self._reply = NEEDS_ASYNCIO
            self._failure = self._reply
        self._answered.set()

    def _where(self) -> str:
        if not self._answered.is_set():
            return f"during {self._phase}"
        if self._phase == "startup":
            return "after lifespan startup completed, before shutdown was asked"
        return "after lifespan shutdown was answered"

    async def _run_app(self) -> None:
        scope: LifespanScope = {"type": "lifespan", "asgi": asgi_versions(), "state": self.state}
        try:
            await self._app(scope, self._receive, self._send)
        except Exception as exc:
            if self._abandoned:
                error_logger.debug("the lifespan task ended during a forced stop", exc_info=exc)
            elif needs_asyncio(exc):
                # Not "lifespan unsupported", even under auto: the app would
                # fail the same way on its first request.
                self._failure = NEEDS_ASYNCIO
                error_logger.debug("exception in the lifespan task", exc_info=exc)
            elif self._mode == "auto" and not self._spoke:
                error_logger.info(
                    "the app does not support the lifespan protocol; serving without it"
                )
                error_logger.debug("lifespan error", exc_info=exc)
            else:
                self._failure = f"exception in lifespan {self._phase}: {exc!r}"
                if isinstance(exc, AppProtocolError):
                    error_logger.error("the app broke the lifespan protocol: %s", exc, exc_info=exc)
                else:
                    error_logger.error("exception in the lifespan task", exc_info=exc)
        else:
            if not self._answered.is_set() and self._mode == "on":
                self._failure = f"the app returned during lifespan {self._phase} without answering"
        finally:
            self._running = False
            self._answered.set()
            self._inbox.close()
            self._inbox_send.close()
