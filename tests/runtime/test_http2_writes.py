"""HTTP/2 writes: the answers of many streams in one loop turn go out in one write,
and a sender that says more than the queue holds still waits on the transport."""

from __future__ import annotations

from typing import Any

import anyio
import h2.events
import h2.settings
import pytest

import tricorn
from tricorn._runtime.connection import QUEUE_LIMIT
from tricorn._runtime.context import ConnectionContext
from tricorn._runtime.serve import serve_stream

from ._h2wire import H2Wire
from ._memory import MemoryByteStream, memory_server, stream_pair
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


class _GatedStream(MemoryByteStream):
    """A server end whose large writes wait until the test lets them through."""

    def __init__(self, inner: MemoryByteStream) -> None:
        super().__init__(inner._send, inner._receive)
        self.gate = anyio.Event()

    async def send(self, item: bytes) -> None:
        if len(item) > QUEUE_LIMIT:
            await self.gate.wait()
        await super().send(item)


async def test_a_message_larger_than_the_queue_is_written_before_its_send_returns() -> None:
    returned = anyio.Event()
    size = 4 * QUEUE_LIMIT

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"x" * size})
        returned.set()

    context = ConnectionContext(app, tricorn.Config(access_log=False), state={})
    client, server = stream_pair()
    gated = _GatedStream(server)
    async with anyio.create_task_group() as task_group:
        task_group.start_soon(serve_stream, gated, context)
        wire = H2Wire(client, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2**31 - 1})
        wire.conn.increment_flow_control_window(2**31 - 1 - 65535)
        await wire.flush()
        await _settled(wire)
        stream_id = await wire.get("/")
        await anyio.wait_all_tasks_blocked()
        assert not returned.is_set()  # its bytes wait on the transport, and so does it
        gated.gate.set()
        _, body = await wire.response(stream_id)
        assert len(body) == size
        with anyio.fail_after(5):
            await returned.wait()
        await wire.aclose()
        task_group.cancel_scope.cancel()
