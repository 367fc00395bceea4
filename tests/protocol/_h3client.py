"""An HTTP/3 conversation between aioquic's own client side and our protocol, no I/O.

Datagrams are handed across in memory and a fake clock moves on by a
millisecond a round, jumping to the next timer (a delayed ACK, a probe) when
both sides are quiet, so QUIC's timers run without waiting.
"""

from __future__ import annotations

import functools
from typing import Any

import trustme
from aioquic.buffer import Buffer
from aioquic.h3 import events as h3_events
from aioquic.h3.connection import H3Connection
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import pull_quic_header

from tricorn import Config
from tricorn._protocol.events import Event
from tricorn._protocol.http3 import ALPN, HTTP3Protocol, server_configuration

AUTHORITY = b"localhost"
CLIENT_ADDR = ("127.0.0.1", 50000)
SERVER_ADDR = ("127.0.0.1", 4433)

#: Timers further off than this are the idle timeout, not QUIC's business
#: within one exchange.
_TIMER_HORIZON = 1.0


@functools.cache
def _pki() -> tuple[bytes, bytes, bytes]:
    """(CA certificate, server certificate chain, server key), PEM, made once."""
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    cert = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
    chain = b"".join(blob.bytes() for blob in cert.cert_chain_pems)
    return ca.cert_pem.bytes(), chain, cert.private_key_pem.bytes()


def request_headers(
    path: bytes = b"/", method: bytes = b"GET", *extra: tuple[bytes, bytes]
) -> list[tuple[bytes, bytes]]:
    return [
        (b":method", method),
        (b":scheme", b"https"),
        (b":authority", AUTHORITY),
        (b":path", path),
        *extra,
    ]


class H3Conversation:
    """Our server protocol and aioquic's client, back to back."""

    def __init__(self, *, client_window: int | None = None, **config: Any) -> None:
        self.clock = 1.0
        ca, chain, key = _pki()
        client_configuration = QuicConfiguration(
            is_client=True, alpn_protocols=[ALPN], server_name="localhost", cadata=ca
        )
        if client_window is not None:
            client_configuration.max_stream_data = client_window
            client_configuration.max_data = client_window
        self.client = QuicConnection(configuration=client_configuration)
        self.client.connect(SERVER_ADDR, now=self.clock)
        self.client_h3 = H3Connection(self.client)
        first = self.client.datagrams_to_send(self.clock)
        header = pull_quic_header(Buffer(data=first[0][0]), host_cid_length=8)
        self.server_configuration = server_configuration(
            Config(**config), certificate_chain=chain, private_key=key
        )
        self.server = HTTP3Protocol(
            Config(**config),
            self.server_configuration,
            original_destination_connection_id=header.destination_cid,
            default_headers=lambda: ((b"server", b"tricorn"),),
            now=self.clock,
        )
        #: Everything the client has seen, in order (HTTP/3 and QUIC events).
        self.client_events: list[Any] = []
        #: What the server's datagrams_to_send left in pending_events.
        self.pending: list[Event] = []
        events = self.server.receive_datagrams([(data, CLIENT_ADDR) for data, _ in first], 1.0)
        events += self.exchange()
        assert events == [], events
        assert any(isinstance(e, quic_events.HandshakeCompleted) for e in self.client_events)

    # -- moving datagrams ----------------------------------------------------------

    def exchange(self, *, deliver_to_client: bool = True) -> list[Event]:
        """Move datagrams both ways until both sides are quiet; the server's events.

        WindowOpened events the server leaves in ``pending_events`` are part
        of what is returned, in order. With ``deliver_to_client=False`` the
        server's datagrams are lost, as on a client that stopped reading.
        """
        events: list[Event] = []
        for _ in range(2000):
            self.clock += 0.001
            to_server = self.client.datagrams_to_send(self.clock)
            if to_server:
                events += self.server.receive_datagrams(
                    [(data, CLIENT_ADDR) for data, _ in to_server], self.clock
                )
            to_client = self.server.datagrams_to_send(self.clock)
            events += self.server.pending_events()
            if deliver_to_client:
                for data, _ in to_client:
                    self.client.receive_datagram(data, SERVER_ADDR, self.clock)
                self._client_events()
            if to_server or (to_client and deliver_to_client):
                continue
            if not self._fire_timers(events):
                return events
        raise AssertionError("the conversation did not settle")

    def _fire_timers(self, events: list[Event]) -> bool:
        """Jump to the nearest timer if it is close; False when none is."""
        timers = [
            (at, side)
            for at, side in (
                (self.client.get_timer(), "client"),
                (self.server.next_timer(), "server"),
            )
            if at is not None and at - self.clock < _TIMER_HORIZON
        ]
        if not timers:
            return False
        at, side = min(timers)
        self.clock = max(self.clock, at)
        if side == "client":
            self.client.handle_timer(self.clock)
            self._client_events()
        else:
            events += self.server.handle_timer(self.clock)
        return True

    def _client_events(self) -> None:
        while (event := self.client.next_event()) is not None:
            self.client_events.append(event)
            self.client_events.extend(self.client_h3.handle_event(event))

    def elapse(self, seconds: float) -> list[Event]:
        """Let time pass with nothing sent, firing every timer on the way."""
        events: list[Event] = []
        end = self.clock + seconds
        while True:
            due = [
                at
                for at in (self.client.get_timer(), self.server.next_timer())
                if at is not None and at <= end
            ]
            if not due:
                break
            self.clock = max(self.clock, min(due))
            self.client.handle_timer(self.clock)
            self._client_events()
            events += self.server.handle_timer(self.clock)
            events += self.exchange()
        self.clock = end
        return events

    # -- requests --------------------------------------------------------------------

    def new_stream(self) -> int:
        return self.client.get_next_available_stream_id()

    def request(
        self,
        path: bytes = b"/",
        *extra: tuple[bytes, bytes],
        method: bytes = b"GET",
        body: bytes | None = None,
    ) -> tuple[int, list[Event]]:
        stream_id = self.new_stream()
        self.client_h3.send_headers(
            stream_id, request_headers(path, method, *extra), end_stream=body is None
        )
        if body is not None:
            self.client_h3.send_data(stream_id, body, end_stream=True)
        return stream_id, self.exchange()

    # -- what the client saw -----------------------------------------------------------

    def seen(self, kind: type[Any], stream_id: int | None = None) -> list[Any]:
        return [
            event
            for event in self.client_events
            if isinstance(event, kind)
            and (stream_id is None or getattr(event, "stream_id", None) == stream_id)
        ]

    def body(self, stream_id: int) -> bytes:
        return b"".join(event.data for event in self.seen(h3_events.DataReceived, stream_id))

    def heads(self, stream_id: int) -> list[dict[bytes, bytes]]:
        """Every header section the client received on the stream, in order."""
        return [dict(event.headers) for event in self.seen(h3_events.HeadersReceived, stream_id)]

    def response_headers(self, stream_id: int) -> dict[bytes, bytes]:
        finals = [head for head in self.heads(stream_id) if not head[b":status"].startswith(b"1")]
        return finals[0]

    def ended(self, stream_id: int) -> bool:
        return any(
            event.stream_ended
            for event in self.seen(h3_events.DataReceived, stream_id)
            + self.seen(h3_events.HeadersReceived, stream_id)
        )

    def reset_code(self, stream_id: int) -> int | None:
        resets = self.seen(quic_events.StreamReset, stream_id)
        return resets[-1].error_code if resets else None

    def stop_code(self, stream_id: int) -> int | None:
        stops = self.seen(quic_events.StopSendingReceived, stream_id)
        return stops[-1].error_code if stops else None

    def terminated(self) -> quic_events.ConnectionTerminated | None:
        found = self.seen(quic_events.ConnectionTerminated)
        return found[-1] if found else None
