"""Apps whose client left before their response was done are cancelled after a grace period.

An app that ignores ``http.disconnect`` would otherwise run on after its stream
was reset or its connection closed, and a reconnecting attacker could pile them
up without bound. Virtual time over in-memory connections: the grace is exact.
"""

from __future__ import annotations

from typing import Any

import anyio
import pytest

from tricorn._runtime import connection as connection_module

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import WAIT, ok_app, request, watch_log

pytestmark = [pytest.mark.anyio, pytest.mark.mock_clock]


class Sleeper:
    """An app that ignores its client: it sleeps 1000 s before answering (or after, with
    ``answer_first``), and records when it started and when (and how) it ended."""

    def __init__(self, *, answer_first: bool = False) -> None:
        self.answer_first = answer_first
        self.started = anyio.Event()
        self.ended: list[tuple[str, float]] = []
        self.done = anyio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] != "/sleep":
            await ok_app(scope, receive, send)
            return
        self.started.set()
        if self.answer_first:
            await ok_app(scope, receive, send)
        try:
            await anyio.sleep(1000)
        except anyio.get_cancelled_exc_class():
            self.ended.append(("cancelled", anyio.current_time()))
            self.done.set()
            raise
        self.ended.append(("finished", anyio.current_time()))
        self.done.set()


async def test_an_app_whose_http1_client_left_is_cancelled_after_the_grace(
    virtual_time: bool,
) -> None:
    app = Sleeper()
    with watch_log() as log:
        async with memory_server(app, app_disconnect_grace=10) as srv:
            async with srv.client() as client:
                await client.send(request(target="/sleep"))
                with anyio.fail_after(WAIT):
                    await app.started.wait()
            left = anyio.current_time()
            await srv.wait_closed(within=100)
    assert [how for how, _ in app.ended] == ["cancelled"]
    assert_took(app.ended[0][1] - left, 10, virtual_time)
    assert any("app_disconnect_grace" in message for message in log.messages())


async def test_an_app_whose_response_is_complete_is_left_to_its_background_work() -> None:
    app = Sleeper(answer_first=True)
    async with memory_server(app, app_disconnect_grace=10) as srv:
        async with srv.client() as client:
            await client.send(request(target="/sleep"))
            assert (await client.response()).status_code == 200
        await srv.wait_closed(within=2000)
    assert [how for how, _ in app.ended] == ["finished"]


async def test_an_app_whose_http2_stream_was_reset_is_cancelled_and_the_connection_serves_on(
    virtual_time: bool,
) -> None:
    app = Sleeper()
    async with memory_server(app, app_disconnect_grace=10) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/sleep")
        with anyio.fail_after(WAIT):
            await app.started.wait()
        wire.conn.reset_stream(stream_id)
        await wire.flush()
        reset = anyio.current_time()
        with anyio.fail_after(100):
            await app.done.wait()
        other = await wire.get("/")
        headers, _ = await wire.response(other)
        await wire.aclose()
    assert [how for how, _ in app.ended] == ["cancelled"]
    assert_took(app.ended[0][1] - reset, 10, virtual_time)
    assert headers[b":status"] == b"200"


async def test_past_the_server_wide_bound_orphans_are_cancelled_at_once(
    monkeypatch: pytest.MonkeyPatch, virtual_time: bool
) -> None:
    monkeypatch.setattr(connection_module, "MAX_ORPHANS", 2)
    app = Sleeper()
    async with memory_server(app, app_disconnect_grace=10) as srv:
        left = []
        for _ in range(3):
            app.started = anyio.Event()
            async with srv.client() as client:
                await client.send(request(target="/sleep"))
                with anyio.fail_after(WAIT):
                    await app.started.wait()
            left.append(anyio.current_time())
        await srv.wait_closed(within=100)
    ended = sorted(when for _, when in app.ended)
    assert len(ended) == 3
    # The third orphan met the bound: cancelled when its client left.
    assert_took(ended[0] - left[2], 0, virtual_time)
    assert_took(ended[2] - left[1], 10, virtual_time)
