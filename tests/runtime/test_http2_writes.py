"""HTTP/2 writes: the answers of many streams in one loop turn go out in one write,
and a sender that says more than the queue holds still waits on the transport."""

from __future__ import annotations

from typing import Any

import anyio
import h2.events
import h2.settings
import pytest

from tricorn._runtime.connection import QUEUE_LIMIT

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import ok_app

pytestmark = pytest.mark.anyio

_STREAMS = 8


async def _settled(wire: H2Wire) -> None:
    """Read until the preface exchange is over: the server's SETTINGS and its ACK of ours."""
    await wire.until(lambda event: isinstance(event, h2.events.RemoteSettingsChanged))
    await wire.until(lambda event: isinstance(event, h2.events.SettingsAcknowledged))


async def test_the_answers_of_streams_served_in_one_turn_go_out_in_one_write() -> None:
    async with memory_server(ok_app) as srv:
        wire = await H2Wire.connect(srv)
        await _settled(wire)
        streams = []
        for n in range(_STREAMS):
            stream_id = wire.conn.get_next_available_stream_id()
            wire.conn.send_headers(
                stream_id,
                [
                    (b":method", b"GET"),
                    (b":scheme", b"http"),
                    (b":authority", b"localhost"),
                    (b":path", f"/{n}".encode()),
                ],
                end_stream=True,
            )
            streams.append(stream_id)
        await wire.flush()  # all the requests in one read
        # One write of the server is one item on the in-memory stream, read
        # whole by one receive(): all the answers are in it.
        with anyio.fail_after(5):
            data = await wire.stream.receive(1 << 20)
        events = wire.conn.receive_data(data)
        ended = {event.stream_id for event in events if isinstance(event, h2.events.StreamEnded)}
        assert ended == set(streams)
        answered = [e for e in events if isinstance(e, h2.events.ResponseReceived)]
        assert all(dict(e.headers)[b":status"] == b"200" for e in answered)
        assert len(answered) == _STREAMS
        await wire.aclose()


async def test_a_sender_past_the_queue_limit_waits_for_a_client_that_does_not_read() -> None:
    """Queued bytes are bounded: with the client reading nothing and its windows
    wide open, the app's sends stop once the transport's buffer is full."""
    chunk = 16 * 1024
    total = 64 * 1024 * 1024
    sent = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent
        await send({"type": "http.response.start", "status": 200, "headers": []})
        while sent < total:
            await send({"type": "http.response.body", "body": b"x" * chunk, "more_body": True})
            sent += chunk
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        wire.conn.increment_flow_control_window(2**31 - 1 - 65535)
        await _settled(wire)
        await wire.get("/")
        await anyio.wait_all_tasks_blocked()
        # The in-memory stream holds 16 writes; each is at most what the
        # queue holds plus the chunk that crossed the limit.
        assert 0 < sent <= 17 * (QUEUE_LIMIT + chunk)
        await wire.aclose()
