"""Lifespan over a real server: startup, state, failure modes and shutdown order."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest

import tricorn
from tests.conftest import running_server
from tricorn._runtime.serve import Server
from tricorn.errors import LifespanFailure

from ._memory import assert_took
from ._support import (
    WAIT,
    lifespan_ok,
    ok_app,
    raw_client,
    record_lifespan,
    request,
    server,
    watch_log,
)

pytestmark = pytest.mark.anyio


def flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [leaf for inner in exc.exceptions for leaf in flatten(inner)]
    return [exc]


async def serve_until_it_fails(app: Any, **options: Any) -> LifespanFailure:
    """Run serve, expecting it to raise LifespanFailure (alone or in an ExceptionGroup)."""
    options.setdefault("bind", ("127.0.0.1:0",))
    options.setdefault("access_log", False)
    config = tricorn.Config(**options)
    with pytest.raises((LifespanFailure, BaseExceptionGroup)) as info:
        await serve_briefly(app, config)
    failures = [e for e in flatten(info.value) if isinstance(e, LifespanFailure)]
    assert failures, f"serve raised {info.value!r}, not LifespanFailure"
    return failures[0]


async def serve_briefly(app: Any, config: tricorn.Config) -> None:
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            await task_group.start(tricorn.serve, app, config)
            task_group.cancel_scope.cancel()


async def test_startup_state_reaches_every_request_as_a_shallow_copy() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            message = await receive()
            assert message["type"] == "lifespan.startup"
            scope["state"]["db"] = "connected"
            scope["state"]["hits"] = []
            await send({"type": "lifespan.startup.complete"})
            await lifespan_ok(receive, send)
            return
        state = scope["state"]
        seen.append(dict(state))
        state["per_request"] = True
        state["hits"].append(scope["path"])
        await ok_app(scope, receive, send)

    async with running_server(app, lifespan="on") as address, httpx.AsyncClient() as client:
        await client.get(f"http://{address}/one")
        await client.get(f"http://{address}/two")
    assert [s["db"] for s in seen] == ["connected", "connected"]
    assert "per_request" not in seen[1]
    # The values are shared: a mutable one is the same object in every request.
    assert seen[1]["hits"] == ["/one", "/two"]


async def test_auto_mode_serves_an_app_that_raises_on_lifespan() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("only http here")
        await ok_app(scope, receive, send)

    async with running_server(app, lifespan="auto") as address, httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/")
    assert response.text == "ok"


async def test_auto_mode_serves_an_app_that_returns_on_lifespan() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        await ok_app(scope, receive, send)

    async with running_server(app, lifespan="auto") as address, httpx.AsyncClient() as client:
        response = await client.get(f"http://{address}/")
    assert response.text == "ok"


async def test_on_mode_with_an_app_that_raises_makes_serve_fail() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("no lifespan support")
        await ok_app(scope, receive, send)

    failure = await serve_until_it_fails(app, lifespan="on")
    assert "no lifespan support" in str(failure)


async def test_startup_failed_message_is_in_the_lifespan_failure() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "database unreachable"})

    failure = await serve_until_it_fails(app, lifespan="auto")
    assert "database unreachable" in str(failure)


async def test_startup_failure_leaves_the_port_unserved() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "nope"})

    calls: list[str] = []

    async def watching_app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["type"])
        await app(scope, receive, send)

    await serve_until_it_fails(watching_app)
    assert calls == ["lifespan"]


async def test_startup_timeout_makes_serve_fail() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await anyio.sleep_forever()

    failure = await serve_until_it_fails(app, lifespan="on", lifespan_timeout=0.2)
    assert "startup" in str(failure)


async def test_request_sent_during_startup_is_served_after_it(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    in_startup, finish_startup = anyio.Event(), anyio.Event()
    order: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            in_startup.set()
            await finish_startup.wait()
            order.append("startup complete")
            await send({"type": "lifespan.startup.complete"})
            await lifespan_ok(receive, send)
            return
        order.append("request")
        await ok_app(scope, receive, send)

    config = tricorn.Config(bind=(f"unix:{path}",), access_log=False, lifespan="on")
    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(tricorn.serve, app, config)
            await in_startup.wait()
            # Bound before startup: the connection waits in the backlog.
            async with raw_client(f"unix:{path}") as client:
                await client.send(request())
                finish_startup.set()
                response = await client.response()
            task_group.cancel_scope.cancel()
    assert response.body == b"ok"
    assert order == ["startup complete", "request"]


async def test_off_mode_never_sends_a_lifespan_scope() -> None:
    types: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        types.append(scope["type"])
        await ok_app(scope, receive, send)

    async with running_server(app, lifespan="off") as address, httpx.AsyncClient() as client:
        await client.get(f"http://{address}/")
    assert types == ["http"]


async def test_lifespan_scope_carries_asgi_versions_and_state() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            scopes.append(scope)
        await ok_app(scope, receive, send)

    async with running_server(app, lifespan="on"):
        pass
    (scope,) = scopes
    assert scope["asgi"]["version"] == "3.0"
    assert isinstance(scope["state"], dict)


async def test_shutdown_runs_after_in_flight_requests_finish() -> None:
    order: list[str] = []
    in_request = anyio.Event()
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await record_lifespan(order, receive, send)
            return
        order.append("request begins")
        in_request.set()
        await release.wait()
        order.append("request ends")
        await ok_app(scope, receive, send)

    with watch_log() as log:
        async with server(app, lifespan="on") as handle, raw_client(handle.address) as client:
            await client.send(request())
            with anyio.fail_after(WAIT):
                await in_request.wait()
            handle.shutdown()
            await log.wait_for("shutting down")
            assert "lifespan.shutdown" not in order
            release.set()
            response = await client.response()
            await handle.wait_stopped()
    assert response.body == b"ok"
    assert order == [
        "lifespan.startup",
        "request begins",
        "request ends",
        "lifespan.shutdown",
    ]


async def test_shutdown_failure_is_logged_and_serve_returns() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await send({"type": "lifespan.shutdown.failed", "message": "flush failed"})
            return
        await ok_app(scope, receive, send)

    with watch_log() as log:
        async with server(app, lifespan="on") as handle:
            handle.shutdown()
            await handle.wait_stopped()
    assert any("flush failed" in message for message in log.messages())


@pytest.mark.mock_clock
async def test_hung_lifespan_shutdown_is_bounded_by_lifespan_timeout(virtual_time: bool) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await receive()
            await anyio.sleep_forever()
        await ok_app(scope, receive, send)

    with watch_log() as log:
        async with server(app, lifespan="on", lifespan_timeout=0.3) as handle:
            handle.shutdown()
            start = anyio.current_time()
            await handle.wait_stopped()
            elapsed = anyio.current_time() - start
    assert_took(elapsed, 0.3, virtual_time)
    assert any("lifespan shutdown" in message for message in log.messages())


async def answer_cancellation_like_starlette(receive: Any, send: Any) -> None:
    """Starlette's lifespan: any exception after startup becomes lifespan.shutdown.failed."""
    await receive()
    await send({"type": "lifespan.startup.complete"})
    try:
        await receive()
    except BaseException:
        await send({"type": "lifespan.shutdown.failed", "message": "Traceback ..."})
        raise
    await send({"type": "lifespan.shutdown.complete"})


async def test_stop_now_during_graceful_shutdown_skips_lifespan_shutdown_quietly() -> None:
    in_request = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await answer_cancellation_like_starlette(receive, send)
            return
        in_request.set()
        await anyio.sleep_forever()

    config = tricorn.Config(bind=("127.0.0.1:0",), access_log=False, graceful_timeout=60)
    server = Server(app, config)
    serving = anyio.CancelScope()
    stopped = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        try:
            with serving:
                await server.serve(task_status=task_status)
        finally:
            stopped.set()

    with watch_log() as log, anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            (address,) = await task_group.start(run)
            async with raw_client(address) as client:
                await client.send(request())
                await in_request.wait()
                serving.cancel()  # graceful: the request would be waited for 60 s
                await log.wait_for("shutting down")
                server.stop_now()
                await stopped.wait()
    assert any("lifespan shutdown skipped" in message for message in log.messages())
    errors = [r.getMessage() for r in log.records if r.levelno >= logging.ERROR]
    assert errors == []


async def test_unasked_shutdown_message_is_named_as_such() -> None:
    # The app answers shutdown before it was asked; the error must not say
    # "during startup", which ended successfully.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await receive()
            await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.failed", "message": "too early"})
            return
        await ok_app(scope, receive, send)

    with watch_log() as log:
        async with running_server(app, lifespan="on"):
            await log.wait_for("unexpected lifespan message")
    (message,) = [m for m in log.messages() if "unexpected lifespan message" in m]
    assert "during startup" not in message
    assert "after lifespan startup completed" in message
