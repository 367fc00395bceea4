"""An HTTP/2 conversation between h2's own client side and our protocol, no I/O."""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events

from tricorn import Config
from tricorn._protocol import Event, HTTP2Protocol

AUTHORITY = b"example.com"


def request_headers(
    path: bytes = b"/", method: bytes = b"GET", *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"http"),
        (b":authority", AUTHORITY),
        (b":path", path),
        *extra,
    ]


class H2Conversation:
    """Our server protocol and h2's client, wired back to back."""

    def __init__(self, *, client_settings: dict[Any, int] | None = None, **config: Any) -> None:
        self.clock = 0.0
        self.server = HTTP2Protocol(
            Config(**config),
            lambda: ((b"server", b"tricorn"),),
            lambda: self.clock,
        )
        self.client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        self.client.initiate_connection()
        if client_settings:
            self.client.update_settings(client_settings)
        self.server.initiate()
        #: Everything the client has seen, in order.
        self.client_events: list[h2.events.Event] = []
        self.exchange()

    def exchange(self) -> list[Event]:
        """Move bytes both ways until both sides are quiet; the server's events."""
        events: list[Event] = []
        for _ in range(50):
            to_server = self.client.data_to_send()
            if to_server:
                events.extend(self.server.receive_data(to_server))
            to_client = self.server.data_to_send()
            if to_client:
                self.client_events.extend(self.client.receive_data(to_client))
            if not to_server and not to_client:
                return events
        raise AssertionError("the conversation did not settle")

    def send_raw(self, data: bytes) -> list[Event]:
        events = self.server.receive_data(data)
        to_client = self.server.data_to_send()
        if to_client:
            self.client_events.extend(self.client.receive_data(to_client))
        return events

    def request(
        self,
        path: bytes = b"/",
        *extra: tuple[bytes, bytes],
        method: bytes = b"GET",
        body: bytes | None = None,
    ) -> tuple[int, list[Event]]:
        stream_id = self.client.get_next_available_stream_id()
        self.client.send_headers(
            stream_id, request_headers(path, method, *extra), end_stream=body is None
        )
        if body is not None:
            self.client.send_data(stream_id, body, end_stream=True)
        return stream_id, self.exchange()

    def seen(self, kind: type[h2.events.Event], stream_id: int | None = None) -> list[Any]:
        return [
            event
            for event in self.client_events
            if isinstance(event, kind)
            and (stream_id is None or getattr(event, "stream_id", None) == stream_id)
        ]

    def body(self, stream_id: int) -> bytes:
        return b"".join(event.data for event in self.seen(h2.events.DataReceived, stream_id))

    def response_headers(self, stream_id: int) -> dict[bytes, bytes]:
        (response,) = self.seen(h2.events.ResponseReceived, stream_id)
        return dict(response.headers)

    def goaway(self) -> h2.events.ConnectionTerminated | None:
        found = self.seen(h2.events.ConnectionTerminated)
        return found[-1] if found else None
