"""Every sender that waits is woken by what it waits for.

Two senders on one connection may wait at once: for the write lock (a
WebSocket app sending while its keepalive ping is due) or, on HTTP/2, for the
same stream's window. Each must return once what it waits for happens, even
when a third waiter gave up (was cancelled) meanwhile.
"""

from __future__ import annotations

from typing import Any

import anyio
import h2.events
import h2.settings
import pytest
import wsproto.events as ws_events
from wsproto.connection import Connection, ConnectionType

from tests.conftest import running_server

from ._h2wire import H2Wire
from ._support import WAIT, accepted_websocket, server
from .test_websocket import ws_client

pytestmark = pytest.mark.anyio

#: More than loopback's socket buffers hold, so a send of it waits on the client.
HUGE = 16 * 1024 * 1024


async def test_a_sender_waiting_for_the_write_lock_survives_a_cancelled_one() -> None:
    # The app's first send holds the write lock, stuck on a client that does
    # not read. A second sender queues for the lock and gives up (as the
    # keepalive ping does when its timeout passes); a third queues behind it.
    # Once the client reads, the third must get the lock and its message out.
    all_waiting = anyio.Event()
    done = anyio.Event()
    outcome: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send, {"type": "websocket.send", "bytes": b"x" * HUGE})
            await anyio.wait_all_tasks_blocked()
            given_up = anyio.CancelScope()
            tasks.start_soon(cancellable_send, given_up, send)
            await anyio.wait_all_tasks_blocked()

            async def last() -> None:
                await send({"type": "websocket.send", "text": "last"})
                outcome.append("last sent")

            tasks.start_soon(last)
            await anyio.wait_all_tasks_blocked()
            given_up.cancel()
            await anyio.wait_all_tasks_blocked()
            all_waiting.set()
        done.set()

    async def cancellable_send(scope: anyio.CancelScope, send: Any) -> None:
        with scope:
            await send({"type": "websocket.send", "text": "never"})

    async with running_server(app, lifespan="off") as address, ws_client(address) as client:
        await client.handshake()
        with anyio.fail_after(WAIT):
            await all_waiting.wait()
        received: list[Any] = []
        with anyio.fail_after(WAIT * 5):
            while not any(isinstance(e, ws_events.TextMessage) for e in received):
                event = await client.next_event(within=WAIT * 5)
                assert event is not None
                received.append(event)
            await done.wait()
    assert outcome == ["last sent"]
    texts = [e.data for e in received if isinstance(e, ws_events.TextMessage)]
    assert texts == ["last"]


async def test_two_senders_waiting_for_one_http2_streams_window_both_return() -> None:
    # A WebSocket over HTTP/2 whose client opened a small window: the app's
    # message fills it, and a second message (as a keepalive ping would)
    # waits behind it. When the window opens, both sends return.
    both_waiting = anyio.Event()
    both_returned = anyio.Event()
    returned: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if not await accepted_websocket(scope, receive, send):
            return

        async def send_one(name: str, size: int) -> None:
            await send({"type": "websocket.send", "bytes": name.encode() * size})
            returned.append(name)

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(send_one, "a", 4096)
            await anyio.wait_all_tasks_blocked()
            tasks.start_soon(send_one, "b", 16)
            await anyio.wait_all_tasks_blocked()
            both_waiting.set()
        both_returned.set()
        await receive()

    window = 1024
    async with server(app) as srv:
        wire = await H2Wire.connect(
            srv.address, {h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window}
        )
        stream_id = await wire.open_websocket()
        with anyio.fail_after(WAIT):
            await both_waiting.wait()
        assert returned == []
        # Open the window wide, and read what comes.
        wire.conn.increment_flow_control_window(1 << 20, stream_id)
        wire.conn.increment_flow_control_window(1 << 20)
        await wire.flush()
        ws = Connection(ConnectionType.CLIENT)
        messages: list[bytes] = []
        partial = bytearray()
        with anyio.fail_after(WAIT):
            while len(messages) < 2:
                for event in await wire.read():
                    if isinstance(event, h2.events.DataReceived):
                        wire.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                        ws.receive_data(event.data)
                        for e in ws.events():
                            if isinstance(e, ws_events.Message):
                                partial += e.data
                                if e.message_finished:
                                    messages.append(bytes(partial))
                                    partial = bytearray()
                await wire.flush()
                assert not wire.closed
        with anyio.fail_after(WAIT):
            await both_returned.wait()
        await wire.aclose()
    assert messages == [b"a" * 4096, b"b" * 16]
    assert sorted(returned) == ["a", "b"]
