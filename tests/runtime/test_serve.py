"""serve() itself: bind errors, reported addresses, cancellation at any point."""

from __future__ import annotations

import signal
import socket
import struct
from typing import Any

import anyio
import httpx
import pytest

import tricorn
from tests.conftest import running_server
from tricorn.errors import BindError

from ._support import WAIT, ok_app, raw_client, request, server

pytestmark = pytest.mark.anyio


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]


async def start_and_stop(app: Any, config: tricorn.Config) -> None:
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(tricorn.serve, app, config)
            task_group.cancel_scope.cancel()


async def test_address_in_use_raises_bind_error_naming_it() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        config = tricorn.Config(bind=(address,), access_log=False)
        with pytest.raises((BindError, BaseExceptionGroup)) as info:
            await start_and_stop(ok_app, config)
    errors = [e for e in flatten(info.value) if isinstance(e, BindError)]
    assert errors, repr(info.value)
    assert address in str(errors[0])
    assert isinstance(errors[0], OSError)


async def test_bind_error_happens_before_lifespan_startup() -> None:
    types: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        types.append(scope["type"])
        await ok_app(scope, receive, send)

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        config = tricorn.Config(
            bind=(f"127.0.0.1:{taken.getsockname()[1]}",), access_log=False, lifespan="on"
        )
        with pytest.raises((BindError, BaseExceptionGroup)):
            await start_and_stop(app, config)
    assert types == []


async def test_serve_reports_addresses_after_lifespan_startup() -> None:
    startup_done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            startup_done.set()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await ok_app(scope, receive, send)

    async with server(app, lifespan="on") as handle:
        assert startup_done.is_set()
        async with raw_client(handle.address) as client:
            await client.send(request())
            assert (await client.response()).body == b"ok"


async def test_cancelling_serve_during_a_hung_startup_returns_promptly() -> None:
    in_startup = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        in_startup.set()
        await anyio.sleep_forever()

    config = tricorn.Config(
        bind=("127.0.0.1:0",), access_log=False, lifespan="on", lifespan_timeout=3
    )
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(tricorn.serve, app, config)
            await in_startup.wait()
            task_group.cancel_scope.cancel()


async def test_serve_can_be_restarted_on_the_same_port() -> None:
    async with server(ok_app) as handle:
        address = handle.address
    await handle.wait_stopped()
    async with server(ok_app, bind=(address,)) as again, raw_client(again.address) as client:
        await client.send(request())
        assert (await client.response()).body == b"ok"


async def test_serve_installs_no_signal_handlers() -> None:
    watched = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
    before = {signum: signal.getsignal(signum) for signum in watched}
    async with running_server(ok_app) as address:
        during = {signum: signal.getsignal(signum) for signum in watched}
        async with httpx.AsyncClient() as client:
            assert (await client.get(f"http://{address}/")).status_code == 200
    assert during == before


async def test_a_client_that_resets_before_it_is_accepted_leaves_the_server_serving() -> None:
    """A connection reset in the backlog is accepted with no peer any more.

    On trio, anyio's socket stream checks the peer's name, which such a
    socket no longer has (ENOTCONN); that is one client gone, never a reason
    to stop the server. HAProxy's health checks do this all day: connect,
    send a PROXY header, reset. The lifespan startup holds the accept loop
    back until the reset is done, so the order is certain.
    """
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await release.wait()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.complete"})
            return
        await ok_app(scope, receive, send)

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    host, port = listener.getsockname()
    # tricorn owns (and closes) a socket it serves as fd://N.
    config = tricorn.Config(bind=(f"fd://{listener.detach()}",), access_log=False, lifespan="on")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(tricorn.serve, app, config)
            with socket.create_connection((host, port)) as leaving:
                # SO_LINGER with a zero timeout: close() sends RST.
                leaving.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            release.set()
            async with raw_client(f"{host}:{port}") as client:
                await client.send(request())
                assert (await client.response()).body == b"ok"
            task_group.cancel_scope.cancel()
