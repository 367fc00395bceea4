"""The real runtime over an in-memory byte stream pair: no ports, and time a test can move.

The server side is ``serve_stream``, the function the listener hands every
accepted socket to: the same connection runner, protocols and exchanges, with
only the socket replaced. On trio with ``@pytest.mark.mock_clock`` the clock is
trio's ``MockClock(autojump_threshold=0)``: when every task waits, time jumps
to the next deadline, so a 10 s timeout takes no time and no luck.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

import tricorn
from tricorn._runtime.context import ConnectionContext
from tricorn._runtime.serve import serve_stream

from ._support import WAIT, RawClient, raw_client

#: Writes a side may have in flight before its send waits (a socket buffer).
_BUFFERED_WRITES = 16


class MemoryByteStream(anyio.abc.ByteStream):
    """One end of an in-memory connection: what one side sends, the other receives."""

    def __init__(
        self, send: MemoryObjectSendStream[bytes], receive: MemoryObjectReceiveStream[bytes]
    ) -> None:
        self._send = send
        self._receive = receive
        self._pending = b""

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if not self._pending:
            self._pending = await self._receive.receive()  # EndOfStream once the peer closed
        data, self._pending = self._pending[:max_bytes], self._pending[max_bytes:]
        return data

    async def send(self, item: bytes) -> None:
        if not item:
            # Nothing to send, as on a socket: an empty item would reach the
            # peer as an empty read, which means end of stream.
            await anyio.lowlevel.checkpoint()
            return
        await self._send.send(bytes(item))  # BrokenResourceError once the peer closed

    async def send_eof(self) -> None:
        await self._send.aclose()

    async def aclose(self) -> None:
        await self._send.aclose()
        await self._receive.aclose()


def stream_pair() -> tuple[MemoryByteStream, MemoryByteStream]:
    """A client end and a server end, connected."""
    to_server, server_inbox = anyio.create_memory_object_stream[bytes](_BUFFERED_WRITES)
    to_client, client_inbox = anyio.create_memory_object_stream[bytes](_BUFFERED_WRITES)
    return MemoryByteStream(to_server, client_inbox), MemoryByteStream(to_client, server_inbox)


class MemoryServer:
    """Serves ``app`` on in-memory connections; ``shutdown()`` winds them down as serve() would."""

    def __init__(self, task_group: anyio.abc.TaskGroup, context: ConnectionContext) -> None:
        self._task_group = task_group
        self.context = context
        self._serving = 0
        self._ended = anyio.Event()

    def connect(self) -> MemoryByteStream:
        """A new connection's client end; the runtime serves the other end."""
        client, server = stream_pair()
        self._serving += 1
        self._task_group.start_soon(self._serve, server)
        return client

    async def _serve(self, stream: MemoryByteStream) -> None:
        try:
            await serve_stream(stream, self.context)
        finally:
            self._serving -= 1
            self._ended.set()

    async def wait_closed(self, within: float = WAIT) -> None:
        """Wait until the runtime is done with every connection made so far."""
        with anyio.fail_after(within):
            while self._serving:
                self._ended = anyio.Event()
                await self._ended.wait()

    @asynccontextmanager
    async def client(self) -> AsyncIterator[RawClient]:
        async with raw_client(self) as client:
            yield client

    def shutdown(self) -> None:
        self.context.begin_shutdown()

    @property
    def open_connections(self) -> int:
        return len(self.context.connections)


@asynccontextmanager
async def memory_server(app: Any, **options: Any) -> AsyncIterator[MemoryServer]:
    """Serve ``app`` (an ASGI 3 callable) with Config ``options``; no lifespan, no listener."""
    options.setdefault("access_log", False)
    context = ConnectionContext(app, tricorn.Config(**options), state={})
    # As serve() does: StatsD (if configured) is sent until every connection is done.
    async with context.reporting(), anyio.create_task_group() as task_group:
        yield MemoryServer(task_group, context)
        task_group.cancel_scope.cancel()


def assert_took(elapsed: float, seconds: float, virtual_time: bool) -> None:
    """Under virtual time an elapsed time is exact; under the wall clock nothing is asserted."""
    if virtual_time:
        assert elapsed == pytest.approx(seconds), f"took {elapsed}s, not {seconds}s"
