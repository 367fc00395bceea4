"""HTTP/2 limits through the real runtime: exact budgets, and deadlines bytes cannot move."""

from __future__ import annotations

import contextlib
from typing import Any

import anyio
import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import HeadersFrame, PingFrame

from tricorn._runtime import context as context_module

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import ok_app, read_body

pytestmark = pytest.mark.anyio

BUDGET = 50


async def test_a_ping_flood_in_one_write_gets_the_budgets_worth_of_answers() -> None:
    # 64 KiB of PINGs (3,855 frames) arrive in one read; before, every one
    # was answered before the budget could end the connection.
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    async with memory_server(ok_app, h2_max_control_frames=BUDGET) as srv:
        wire = await H2Wire.connect(srv)
        await wire.stream.send(ping * (65536 // len(ping)))
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        while not wire.closed:
            await wire.read()
        await wire.aclose()
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    answers = [event for event in wire.events if isinstance(event, h2.events.PingAckReceived)]
    assert len(answers) <= BUDGET + 1  # the PING that overdraws it is answered as it is read


@pytest.mark.mock_clock
async def test_a_header_block_trickled_a_byte_a_second_is_cut_at_the_idle_deadline(
    virtual_time: bool,
) -> None:
    # Slowloris over HTTP/2: no stream is doing work, so bytes arriving (here
    # a HEADERS frame that never completes) do not move the deadline.
    frame = HeadersFrame(1)
    frame.data = b"\x82" * 200  # never sent in full
    frame.flags = {"END_HEADERS", "END_STREAM"}
    trickle = frame.serialize()

    async def send_a_byte_a_second(wire: H2Wire) -> None:
        with contextlib.suppress(anyio.BrokenResourceError):
            for byte in trickle[:30]:
                await anyio.sleep(1)
                await wire.stream.send(bytes([byte]))

    async with memory_server(ok_app, keep_alive_timeout=5) as srv:
        wire = await H2Wire.connect(srv)
        start = anyio.current_time()
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(send_a_byte_a_second, wire)
            with contextlib.suppress(anyio.BrokenResourceError):  # a SETTINGS ACK too late
                while not wire.closed:
                    await wire.read()
            elapsed = anyio.current_time() - start
            task_group.cancel_scope.cancel()
        await wire.aclose()
    assert_took(elapsed, 5, virtual_time)


async def test_request_bodies_held_for_apps_are_capped_server_wide(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Three connections, eight uploads each, to apps that read nothing yet:
    # uncapped that is 1.5 MiB held; the budget stops reading far below it,
    # and once the apps read, every upload completes.
    monkeypatch.setattr(context_module, "MAX_BODY_BUFFER", 256 * 1024)
    release = anyio.Event()

    async def late_reader(scope: Any, receive: Any, send: Any) -> None:
        await release.wait()
        body, _ = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": str(len(body)).encode()})

    size = 65535  # one stream window each
    async with memory_server(late_reader) as srv:
        wires = [await H2Wire.connect(srv) for _ in range(3)]
        streams: list[tuple[H2Wire, int]] = []
        for wire in wires:
            await wire.until(lambda event: isinstance(event, h2.events.RemoteSettingsChanged))
            for _ in range(8):
                stream_id = await wire.get("/", end=False)
                for start in range(0, size, 16384):  # the largest frame allowed
                    piece = b"b" * min(16384, size - start)
                    wire.conn.send_data(stream_id, piece, end_stream=start + 16384 >= size)
                streams.append((wire, stream_id))
            await wire.flush()
        await anyio.wait_all_tasks_blocked()
        held = srv.context.body_held
        release.set()
        answers = [await wire.response(stream_id) for wire, stream_id in streams]
        for wire in wires:
            await wire.aclose()
    assert held <= 256 * 1024 + 3 * 64 * 1024  # the budget, and one read per connection
    assert [(headers[b":status"], body) for headers, body in answers] == [
        (b"200", str(size).encode())
    ] * 24
    assert srv.context.body_held == 0
