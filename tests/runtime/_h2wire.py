"""h2's client side over a TCP or in-memory connection, for runtime tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events

from ._support import Endpoint, open_stream


class H2Wire:
    """A cleartext HTTP/2 client with prior knowledge, one frame batch at a time."""

    def __init__(self, stream: anyio.abc.ByteStream, settings: dict[Any, int] | None) -> None:
        self.stream = stream
        self.conn = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.conn.initiate_connection()
        if settings:
            self.conn.update_settings(settings)
        self.events: list[h2.events.Event] = []
        self.closed = False

    @classmethod
    async def connect(cls, endpoint: Endpoint, settings: dict[Any, int] | None = None) -> H2Wire:
        """Connect to an address or an in-memory server and send the preface."""
        wire = cls(await open_stream(endpoint), settings)
        await wire.flush()
        return wire

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send(data)

    async def read(self) -> list[h2.events.Event]:
        try:
            data = await self.stream.receive(65536)
        except (anyio.EndOfStream, anyio.BrokenResourceError, OSError):
            data = b""
        if not data:
            self.closed = True
            return []
        events = self.conn.receive_data(data)
        self.events.extend(events)
        await self.flush()  # settings ACKs, ping answers
        return events

    async def until(
        self, predicate: Callable[[h2.events.Event], bool], within: float = 5.0
    ) -> h2.events.Event | None:
        """Read until an event matches (returned) or the connection closes (None)."""
        for event in self.events:
            if predicate(event):
                return event
        with anyio.fail_after(within):
            while not self.closed:
                for event in await self.read():
                    if predicate(event):
                        return event
        return None

    async def get(
        self, path: str, *extra: tuple[bytes, bytes], end: bool = True, flush: bool = True
    ) -> int:
        """Open a stream with a GET (a POST with ``end=False``); ``flush=False`` leaves
        its HEADERS to go out with the next flush (several requests in one write)."""
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (b":method", b"GET" if end else b"POST"),
                (b":scheme", b"http"),
                (b":authority", b"localhost"),
                (b":path", path.encode()),
                *extra,
            ],
            end_stream=end,
        )
        if flush:
            await self.flush()
        return stream_id

    async def open_websocket(self, path: str = "/") -> int:
        """Send an extended CONNECT for a WebSocket (RFC 8441 4) once the server allows it."""
        await self.until(lambda event: isinstance(event, h2.events.RemoteSettingsChanged))
        assert self.conn.remote_settings.enable_connect_protocol == 1
        stream_id = self.conn.get_next_available_stream_id()
        self.conn.send_headers(
            stream_id,
            [
                (b":method", b"CONNECT"),
                (b":protocol", b"websocket"),
                (b":scheme", b"http"),
                (b":path", path.encode()),
                (b":authority", b"localhost"),
                (b"sec-websocket-version", b"13"),
            ],
        )
        await self.flush()
        return stream_id

    async def response(
        self, stream_id: int, within: float = 5.0
    ) -> tuple[dict[bytes, bytes], bytes]:
        """Read one whole response (acknowledging its data as it comes)."""
        body = bytearray()
        headers: dict[bytes, bytes] = {}
        with anyio.fail_after(within):
            done = False
            seen = 0
            while not done:
                for event in self.events[seen:]:
                    seen += 1
                    if getattr(event, "stream_id", None) != stream_id:
                        continue
                    if isinstance(event, h2.events.ResponseReceived):
                        headers = dict(event.headers)
                    elif isinstance(event, h2.events.DataReceived):
                        body += event.data
                        self.conn.acknowledge_received_data(event.flow_controlled_length, stream_id)
                    if isinstance(event, (h2.events.StreamEnded, h2.events.StreamReset)):
                        done = True
                await self.flush()
                if not done:
                    if self.closed:
                        raise AssertionError("connection closed before the response ended")
                    await self.read()
        return headers, bytes(body)

    async def aclose(self) -> None:
        await self.stream.aclose()
