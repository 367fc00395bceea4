"""Drive an ``HTTP1Protocol`` with h11's own client side.

The client writes every request and reads every response, so no test
hand-parses HTTP; the server under test only ever sees what a real h11
client would put on the wire.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import h11

from tricorn._protocol.events import (
    Command,
    DataReceived,
    Event,
    Headers,
    SendData,
    StartResponse,
    StreamEnded,
)
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn.config import Config

#: What the runtime would add; fixed here so outputs are comparable.
DEFAULT_HEADERS: Headers = (
    (b"date", b"Thu, 01 Jan 1970 00:00:00 GMT"),
    (b"server", b"tricorn"),
)


#: The HTTP/1.1 parser under test (set per test by conftest.py's ``http1_parser``).
PARSER = "h11"


def http1_config(**config: Any) -> Config:
    """A Config for an HTTP/1.1 server under test: ``config`` over the parser under test."""
    return Config(**{"http1_parser": PARSER, **config})


def make_server(**config: Any) -> HTTP1Protocol:
    return HTTP1Protocol(http1_config(**config), default_headers=lambda: DEFAULT_HEADERS)


def request_bytes(*events: h11.Event, client: h11.Connection | None = None) -> bytes:
    """Serialise request events with a (fresh, unless given) h11 client.

    Each further ``h11.Request`` after a complete one is written by a fresh
    client, which is how pipelined requests look on the wire.
    """
    client = client if client is not None else h11.Connection(h11.CLIENT)
    out = bytearray()
    for event in events:
        if isinstance(event, h11.Request) and client.our_state is h11.DONE:
            client = h11.Connection(h11.CLIENT)
        out += client.send(event) or b""
    return bytes(out)


def get(target: bytes = b"/", *headers: tuple[bytes, bytes]) -> list[h11.Event]:
    """A bodiless GET, as h11 events."""
    return [
        h11.Request(method="GET", target=target, headers=[(b"host", b"example.com"), *headers]),
        h11.EndOfMessage(),
    ]


def merge_data(events: Iterable[Event]) -> list[Event]:
    """Join adjacent DataReceived: how a body is chunked depends on the reads."""
    merged: list[Event] = []
    for event in events:
        if (
            isinstance(event, DataReceived)
            and merged
            and isinstance(previous := merged[-1], DataReceived)
        ):
            merged[-1] = DataReceived(event.stream_id, previous.data + event.data)
        else:
            merged.append(event)
    return merged


def body_of(events: Iterable[Event]) -> bytes:
    return b"".join(event.data for event in events if isinstance(event, DataReceived))


class Conversation:
    """One server protocol and one h11 client talking over an imaginary wire."""

    def __init__(self, **config: Any) -> None:
        self.server = make_server(**config)
        self.client = h11.Connection(h11.CLIENT)

    def send(self, *events: h11.Event) -> list[Event]:
        """The client sends ``events``; returns what the server made of them."""
        return self.server.receive_data(request_bytes(*events, client=self.client))

    def answer(self, *commands: Command) -> list[h11.Event]:
        """The server handles ``commands``; returns what the client parsed."""
        for command in commands:
            self.server.handle(command)
        return self.read()

    def read(self) -> list[h11.Event]:
        """Everything the client can parse from the server's pending output."""
        self.client.receive_data(self.server.data_to_send())
        events: list[h11.Event] = []
        while True:
            event = self.client.next_event()
            if isinstance(event, type):  # the NEED_DATA / PAUSED sentinels
                return events
            events.append(event)
            if isinstance(event, h11.ConnectionClosed):
                return events

    def respond(
        self, status: int = 200, body: bytes = b"", headers: Headers | None = None
    ) -> list[h11.Event]:
        """A whole response: head and body in one go."""
        if headers is None:
            headers = ((b"content-length", str(len(body)).encode()),)
        return self.answer(
            StartResponse(1, status, headers),
            SendData(1, body, end_stream=True),
        )

    def next_cycle(self) -> list[Event]:
        """Both sides start their next request/response cycle."""
        self.client.start_next_cycle()
        return self.server.start_next_cycle()


def serve(
    server: HTTP1Protocol, chunks: Iterable[bytes], *, finish: bool = False
) -> tuple[list[Event], bytes]:
    """Feed ``chunks`` as a runtime would; answer every request with ``200 ok``.

    Each completed request is answered at once, and the next cycle started
    when the connection allows it, so pipelined requests come out one after
    the other. With ``finish`` each exchange ends as the runtime ends it
    (``exchange_finished``, which also closes what cannot be kept alive).
    Returns every event (bodies merged) and every byte written.
    """
    seen: list[Event] = []
    out = bytearray()

    def process(events: list[Event]) -> None:
        pending = list(events)
        while pending:
            event = pending.pop(0)
            seen.append(event)
            if isinstance(event, StreamEnded) and not server.closed:
                server.handle(StartResponse(1, 200, ((b"content-length", b"2"),)))
                server.handle(SendData(1, b"ok", end_stream=True))
                out.extend(server.data_to_send())
                if finish:
                    pending.extend(server.exchange_finished(1))
                elif server.reusable:
                    pending.extend(server.start_next_cycle())

    for chunk in chunks:
        process(server.receive_data(chunk))
    out += server.data_to_send()
    return merge_data(seen), bytes(out)
