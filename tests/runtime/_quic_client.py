"""An HTTP/3 client for runtime tests: aioquic's sans-IO client over a real anyio UDP socket.

aioquic's ``QuicConnection`` and ``H3Connection`` (client side) are driven
here the way tricorn drives its server side: datagrams from a connected
anyio UDP socket, QUIC's timer on anyio's clock, on asyncio and trio alike.
Tests wait on what the client saw (``wait_for``), never on time.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection

from ._support import WAIT


@dataclass
class StreamRecord:
    """What the client saw on one request stream."""

    heads: list[list[tuple[bytes, bytes]]] = field(default_factory=list)
    body: bytearray = field(default_factory=bytearray)
    ended: bool = False
    reset: int | None = None

    @property
    def status(self) -> int:
        return int(self.headers[b":status"])

    @property
    def headers(self) -> dict[bytes, bytes]:
        """The final response head (not informational ones, not trailers)."""
        finals = [
            dict(head)
            for head in self.heads
            if not dict(head).get(b":status", b"1").startswith(b"1")
        ]
        return finals[0]

    @property
    def done(self) -> bool:
        return self.ended or self.reset is not None


class H3Client:
    """One HTTP/3 connection to a server under test."""

    def __init__(self, sock: anyio.abc.ConnectedUDPSocket, quic: QuicConnection) -> None:
        self.sock = sock
        self.quic = quic
        self.h3 = H3Connection(quic, enable_webtransport=False)
        self.streams: dict[int, StreamRecord] = {}
        self.events: list[Any] = []
        self.terminated: quic_events.ConnectionTerminated | None = None
        self._changed = anyio.Event()
        self._send_lock = anyio.Lock()

    # -- the loop ----------------------------------------------------------------

    async def run(self) -> None:
        """Read datagrams and fire QUIC's timer until the connection is over."""
        while self.terminated is None:
            timer = self.quic.get_timer()
            with anyio.CancelScope(deadline=math.inf if timer is None else timer):
                try:
                    data = await self.sock.receive()
                except (anyio.ClosedResourceError, anyio.EndOfStream):
                    return
                except OSError:
                    continue  # a port unreachable from an earlier datagram
                self.quic.receive_datagram(data, self.sock.extra(_REMOTE), anyio.current_time())
            now = anyio.current_time()
            timer = self.quic.get_timer()
            if timer is not None and timer <= now:
                self.quic.handle_timer(now)
            self._take_events()
            await self.transmit()

    def _take_events(self) -> None:
        while (event := self.quic.next_event()) is not None:
            self.events.append(event)
            if isinstance(event, quic_events.ConnectionTerminated):
                self.terminated = event
            if isinstance(event, quic_events.StreamReset):
                self.stream(event.stream_id).reset = event.error_code
            for h3_event in self.h3.handle_event(event):
                self.events.append(h3_event)
                match h3_event:
                    case h3_events.HeadersReceived(stream_id=stream_id):
                        record = self.stream(stream_id)
                        record.heads.append(list(h3_event.headers))
                        record.ended = record.ended or h3_event.stream_ended
                    case h3_events.DataReceived(stream_id=stream_id):
                        record = self.stream(stream_id)
                        record.body += h3_event.data
                        record.ended = record.ended or h3_event.stream_ended
                    case _:
                        pass
        self._changed.set()
        self._changed = anyio.Event()

    async def transmit(self) -> None:
        async with self._send_lock:
            for data, _ in self.quic.datagrams_to_send(anyio.current_time()):
                await self.sock.send(data)

    async def wait_for(self, predicate: Callable[[], bool], within: float = WAIT) -> None:
        with anyio.fail_after(within):
            while not predicate():
                await self._changed.wait()

    # -- requests ------------------------------------------------------------------

    def stream(self, stream_id: int) -> StreamRecord:
        return self.streams.setdefault(stream_id, StreamRecord())

    async def send_request(
        self,
        path: str = "/",
        *,
        method: str = "GET",
        headers: tuple[tuple[bytes, bytes], ...] = (),
        body: bytes | None = None,
        end_stream: bool = True,
        protocol: bytes | None = None,
    ) -> int:
        stream_id = self.quic.get_next_available_stream_id()
        head = [
            (b":method", method.encode()),
            (b":scheme", b"https"),
            (b":authority", b"localhost"),
            (b":path", path.encode()),
        ]
        if protocol is not None:
            head.append((b":protocol", protocol))
        self.h3.send_headers(stream_id, [*head, *headers], end_stream=body is None and end_stream)
        if body is not None:
            self.h3.send_data(stream_id, body, end_stream=end_stream)
        self.stream(stream_id)
        await self.transmit()
        return stream_id

    async def send_data(self, stream_id: int, data: bytes, *, end_stream: bool = False) -> None:
        self.h3.send_data(stream_id, data, end_stream=end_stream)
        await self.transmit()

    async def response(self, stream_id: int, within: float = WAIT) -> StreamRecord:
        record = self.stream(stream_id)
        await self.wait_for(lambda: record.done, within)
        return record

    async def get(self, path: str = "/", **options: Any) -> StreamRecord:
        return await self.response(await self.send_request(path, **options))

    async def reset(self, stream_id: int, code: int = 0x10C) -> None:
        """RESET_STREAM and STOP_SENDING, H3_REQUEST_CANCELLED by default."""
        self.quic.reset_stream(stream_id, code)
        self.quic.stop_stream(stream_id, code)
        await self.transmit()

    async def close(self) -> None:
        self.quic.close()
        await self.transmit()


_REMOTE = anyio.abc.SocketAttribute.remote_address


def client_configuration(ca_file: str, **options: Any) -> QuicConfiguration:
    configuration = QuicConfiguration(
        is_client=True, alpn_protocols=["h3"], server_name="localhost", **options
    )
    configuration.load_verify_locations(cafile=ca_file)
    return configuration


@asynccontextmanager
async def h3_client(
    address: str, ca_file: str, *, handshake: bool = True, **options: Any
) -> AsyncIterator[H3Client]:
    """A client connected to ``host:port`` (UDP); with ``handshake`` the handshake is done."""
    host, _, port = address.rpartition(":")
    async with await anyio.create_connected_udp_socket(host.strip("[]"), int(port)) as sock:
        quic = QuicConnection(configuration=client_configuration(ca_file, **options))
        quic.connect(sock.extra(_REMOTE), now=anyio.current_time())
        client = H3Client(sock, quic)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.run)
            await client.transmit()
            if handshake:
                await client.wait_for(
                    lambda: (
                        client.terminated is not None
                        or any(isinstance(e, quic_events.HandshakeCompleted) for e in client.events)
                    )
                )
                assert client.terminated is None, client.terminated
            try:
                yield client
            finally:
                if client.terminated is None:
                    # A client that says goodbye: the server need not wait
                    # for it to go idle.
                    with anyio.move_on_after(WAIT, shield=True):
                        await client.close()
                task_group.cancel_scope.cancel()


__all__ = ["H3Client", "StreamRecord", "h3_client"]
