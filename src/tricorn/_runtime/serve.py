"""serve(): bind, accept, run every connection in the tree, shut down gracefully.

The tree: serve's task group -> one accept task per listener -> one task per
connection -> one task per exchange. Nothing lives outside it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
from typing import Any

import anyio
import anyio.abc

from .._asgi.types import ASGI3App
from ..config import Config, parse_bind
from ..errors import BindError, LifespanFailure
from .connection import ConnectionContext, HTTP1Connection
from .lifespan import Lifespan
from .logging import error_logger

__all__ = ["serve"]

SocketListener = anyio.abc.SocketListener


async def serve(
    app: ASGI3App,
    config: Config,
    *,
    task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until the enclosing cancel scope is cancelled.

    Start it with ``addresses = await task_group.start(serve, app, config)``:
    that returns once every listener is bound, with the bound addresses in
    bind syntax (port 0 comes back as the real port). Cancelling the scope
    stops accepting, lets in-flight requests finish within
    ``config.graceful_timeout``, then runs lifespan shutdown. No signal
    handlers are installed; that is the CLI's business.
    """
    server = _Server(app, config)
    async with anyio.create_task_group() as task_group:
        try:
            addresses = await task_group.start(server.run)
            task_status.started(addresses)
            await server.stopped.wait()
        finally:
            server.request_shutdown()


class _Server:
    def __init__(self, app: ASGI3App, config: Config) -> None:
        self._app = app
        self._config = config
        self._shutdown_requested = anyio.Event()
        self._grace: anyio.CancelScope | None = None
        self.stopped = anyio.Event()

    def request_shutdown(self) -> None:
        self._shutdown_requested.set()

    async def run(self, *, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        # Shielded: the enclosing scope's cancellation is our cue to shut down
        # gracefully, not a reason to drop in-flight requests. The deadline
        # set on `grace` bounds how long that takes.
        try:
            with anyio.CancelScope(shield=True):
                await self._run(task_status)
        finally:
            self.stopped.set()

    async def _run(self, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        config = self._config
        lifespan = Lifespan(self._app, config)
        failure: str | None = None
        async with anyio.create_task_group() as lifespan_group:
            failure = await lifespan.startup(lifespan_group)
            if failure is None:
                try:
                    await self._serve(lifespan.state, task_status)
                finally:
                    await lifespan.shutdown()
            lifespan_group.cancel_scope.cancel()
        if failure is not None:
            raise LifespanFailure(failure)

    async def _serve(
        self, state: dict[str, Any], task_status: anyio.abc.TaskStatus[list[str]]
    ) -> None:
        listeners, addresses, unix_paths = await _bind_all(self._config)
        context = ConnectionContext(self._app, self._config, state)
        try:
            with anyio.CancelScope() as grace:
                async with anyio.create_task_group() as connections:
                    async with anyio.create_task_group() as accepting:
                        for listener in listeners:
                            accepting.start_soon(_accept, listener, connections, context)
                        task_status.started(addresses)
                        for address in addresses:
                            error_logger.info("serving on %s", address)
                        await self._shutdown_requested.wait()
                        accepting.cancel_scope.cancel()
                    error_logger.info(
                        "shutting down: %d open connection(s)", len(context.connections)
                    )
                    context.begin_shutdown()
                    grace.deadline = anyio.current_time() + self._config.graceful_timeout
            if grace.cancelled_caught:
                error_logger.warning(
                    "graceful timeout (%gs) passed; closed the remaining connections",
                    self._config.graceful_timeout,
                )
        finally:
            for listener in listeners:
                await listener.aclose()
            for path in unix_paths:
                with contextlib.suppress(OSError):
                    os.unlink(path)


async def _accept(
    listener: SocketListener, connections: anyio.abc.TaskGroup, context: ConnectionContext
) -> None:
    while True:
        try:
            stream = await listener.accept()
        except anyio.ClosedResourceError:
            return
        except OSError as exc:
            # EMFILE and friends: keep serving the connections we have and
            # try again shortly rather than spin or die.
            error_logger.error("accept failed: %s", exc)
            await anyio.sleep(0.1)
            continue
        connections.start_soon(_handle, stream, context)


async def _handle(stream: anyio.abc.SocketStream, context: ConnectionContext) -> None:
    await HTTP1Connection(stream, context).run()


def format_address(family: int, address: Any) -> str:
    """A bound address in bind syntax: ``host:port``, ``[v6]:port`` or ``unix:path``."""
    if family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"


async def _bind_all(config: Config) -> tuple[list[SocketListener], list[str], list[str]]:
    listeners: list[SocketListener] = []
    unix_paths: list[str] = []
    try:
        for address in config.bind:
            try:
                listeners.extend(await _bind(address, config, unix_paths))
            except OSError as exc:
                raise BindError(f"could not bind {address}: {exc.strerror or exc}") from exc
    except BaseException:
        for listener in listeners:
            await listener.aclose()
        raise
    addresses = [
        format_address(
            listener.extra(anyio.abc.SocketAttribute.family),
            listener.extra(anyio.abc.SocketAttribute.local_address),
        )
        for listener in listeners
    ]
    return listeners, addresses, unix_paths


async def _bind(address: str, config: Config, unix_paths: list[str]) -> list[SocketListener]:
    kind, target, port = parse_bind(address)
    if kind == "tcp":
        assert isinstance(target, str)
        assert port is not None
        multi = await anyio.create_tcp_listener(
            local_host=target, local_port=port, backlog=config.backlog
        )
        return [listener for listener in multi.listeners if isinstance(listener, SocketListener)]
    if kind == "unix":
        assert isinstance(target, str)
        _remove_stale_socket(target)
        listener = await anyio.create_unix_listener(target, backlog=config.backlog)
        unix_paths.append(target)
        return [listener]
    assert isinstance(target, int)
    sock = socket.socket(fileno=target)
    sock.listen(config.backlog)
    return [await SocketListener.from_socket(sock)]


def _remove_stale_socket(path: str) -> None:
    """A socket file left by a crashed server would make bind fail; remove it."""
    with contextlib.suppress(FileNotFoundError):
        if stat.S_ISSOCK(os.stat(path).st_mode):
            os.unlink(path)
