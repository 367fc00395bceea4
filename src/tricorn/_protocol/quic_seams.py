"""Where tricorn reaches beneath aioquic's public API: every such place, and nowhere else.

aioquic's sans-IO core leaves out what a server that must bound its memory
needs: it opens a stream's receive window as data *arrives* (doubling it
whenever half is used), not as the application *takes* it, and it buffers
any amount of response data handed to it. It has no API to send an HTTP/3
GOAWAY, sets SETTINGS_ENABLE_CONNECT_PROTOCOL whatever the server serves,
and tells of a connection's end only after the closing period. The classes
and functions here get at aioquic's private parts for that;
``pyproject.toml`` bounds aioquic to the versions they are proven on,
:func:`check` runs at import so that an aioquic that moved them fails loudly
instead of switching a bound off, and tests/protocol/test_http3.py pins what
each one does.
"""

from __future__ import annotations

import pylsqpack
from aioquic.buffer import encode_uint_var
from aioquic.h3.connection import FrameType, H3Connection, HeadersState, Setting, encode_frame
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection, QuicConnectionState
from aioquic.quic.events import ConnectionTerminated
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.recovery import QuicPacketSpace
from aioquic.quic.stream import QuicStream

__all__ = [
    "CreditedQuicConnection",
    "ServerH3Connection",
    "check",
    "cipher_suite",
    "close_event",
    "has_peer",
    "is_request_stream",
    "send_goaway",
    "sending",
    "terminated",
    "unsent",
]


def check() -> None:
    """Raise ImportError if aioquic no longer has the parts the code here relies on."""
    missing = []
    for method in ("_write_connection_limits", "_write_stream_limits"):
        if not callable(getattr(QuicConnection, method, None)):
            missing.append(f"QuicConnection.{method}")
    if not callable(getattr(H3Connection, "_get_local_settings", None)):
        missing.append("H3Connection._get_local_settings")
    connection = QuicConnection(configuration=QuicConfiguration(is_client=True))
    for name in (
        "_local_max_data",
        "_local_max_streams_bidi",
        "_streams",
        "_close_event",
        "_network_paths",
    ):
        if not hasattr(connection, name):
            missing.append(f"QuicConnection.{name}")
    if hasattr(connection, "_local_max_data_consumed"):
        # aioquic 1.9 raises credit by consumed offset with a growing window:
        # the tricks in CreditedQuicConnection would silently do nothing.
        missing.append("the receive flow control of aioquic 1.7 (this is a later one)")
    limit = getattr(connection, "_local_max_data", None)
    missing += [f"Limit.{name}" for name in ("used", "value", "sent") if not hasattr(limit, name)]
    stream = QuicStream(stream_id=0)
    if not hasattr(stream.receiver, "highest_offset"):
        missing.append("QuicStreamReceiver.highest_offset")
    missing += [
        f"QuicStreamSender.{name}"
        for name in ("_buffer_stop", "highest_offset")
        if not hasattr(stream.sender, name)
    ]
    if not missing:  # a later aioquic's H3Connection may not even build here
        h3 = H3Connection(connection)
        missing += [
            f"H3Connection.{name}"
            for name in ("_local_control_stream_id", "_stream")
            if not hasattr(h3, name)
        ]
    if missing:
        raise ImportError(
            "tricorn's HTTP/3 bounds rely on aioquic internals that this aioquic lacks: "
            + ", ".join(missing)
            + "; install an aioquic within the range pyproject.toml allows"
        )


def is_request_stream(stream_id: int) -> bool:
    """A client-initiated bidirectional stream: one request (RFC 9114 6.1)."""
    return stream_id % 4 == 0


class CreditedQuicConnection(QuicConnection):
    """aioquic's connection, with the receive windows of request streams in our hands.

    aioquic raises MAX_STREAM_DATA and MAX_DATA by doubling once the peer has
    *sent* half of the window, so a client can make us hold any amount of
    request body an app does not read. Here a request stream's window, and
    the connection's, move only by :meth:`grant_stream` and
    :meth:`grant_connection`; the streams HTTP/3 itself reads at once
    (control, QPACK) keep aioquic's own policy.
    """

    def _write_connection_limits(self, builder: QuicPacketBuilder, space: QuicPacketSpace) -> None:
        # aioquic doubles MAX_DATA when `used` passes half of it; with `used`
        # hidden for the call it only sends what grant_connection set. `used`
        # is read nowhere else in the method (MAX_STREAMS reads its own).
        limit = self._local_max_data
        used, limit.used = limit.used, 0
        try:
            super()._write_connection_limits(builder, space)
        finally:
            limit.used = used

    def _write_stream_limits(
        self, builder: QuicPacketBuilder, space: QuicPacketSpace, stream: QuicStream
    ) -> None:
        stream_id = stream.stream_id
        if stream_id is None or not is_request_stream(stream_id):
            super()._write_stream_limits(builder, space, stream)
            return
        # The same trick per stream: the doubling reads highest_offset only.
        receiver = stream.receiver
        highest, receiver.highest_offset = receiver.highest_offset, 0
        try:
            super()._write_stream_limits(builder, space, stream)
        finally:
            receiver.highest_offset = highest

    def stream_window(self, stream_id: int) -> tuple[int, int] | None:
        """(bytes delivered in order, current limit) of a stream aioquic still keeps."""
        stream = self._streams.get(stream_id)
        if stream is None:
            return None
        return stream.receiver.starting_offset(), stream.max_stream_data_local

    def grant_stream(self, stream_id: int, limit: int) -> None:
        """Raise the stream's MAX_STREAM_DATA to ``limit`` (never lowers it)."""
        stream = self._streams.get(stream_id)
        if stream is not None and limit > stream.max_stream_data_local:
            stream.max_stream_data_local = limit

    def connection_window(self) -> tuple[int, int]:
        """(bytes received on all streams, current MAX_DATA)."""
        return self._local_max_data.used, self._local_max_data.value

    def grant_connection(self, limit: int) -> None:
        """Raise MAX_DATA to ``limit`` (never lowers it)."""
        if limit > self._local_max_data.value:
            self._local_max_data.value = limit

    def limit_streams(self, count: int) -> None:
        """The number of request streams the peer may open at first (before the handshake).

        aioquic grants 128 and one more as each closes; the protocol bounds
        running exchanges itself, so this only sets the first grant.
        """
        limit = self._local_max_streams_bidi
        limit.value = limit.sent = count


class ServerH3Connection(H3Connection):
    """aioquic's HTTP/3 connection, with our SETTINGS and without a QPACK dynamic table.

    pylsqpack decodes a header block with no bound on the decoded size, and a
    dynamic table entry of 4 KiB referenced by a one-byte field line makes a
    small block decode to a vast list (the QPACK bomb, RFC 9204 7.3). With no
    dynamic table on our side, only the static table's entries (under 100
    bytes each) can be referenced, so a block of n bytes decodes to at most
    about 100 n. Responses still use the client's table.
    """

    def __init__(
        self, quic: QuicConnection, *, connect_protocol: bool, max_field_section_size: int
    ) -> None:
        self._tricorn_settings: dict[int, int] = {
            Setting.QPACK_MAX_TABLE_CAPACITY: 0,
            Setting.QPACK_BLOCKED_STREAMS: 0,
            # RFC 9220 3: offering extended CONNECT is what lets a client open
            # a WebSocket on a stream; aioquic offers it unconditionally.
            Setting.ENABLE_CONNECT_PROTOCOL: int(connect_protocol),
            # RFC 9114 4.2.2: the largest header section we accept, announced.
            Setting.MAX_FIELD_SECTION_SIZE: max_field_section_size,
        }
        super().__init__(quic)
        # The decoder aioquic made has the table its SETTINGS would have
        # offered; ours offered none, and no header block has arrived yet.
        self._max_table_capacity = 0
        self._blocked_streams = 0
        self._decoder = pylsqpack.Decoder(0, 0)

    def _get_local_settings(self) -> dict[int, int]:
        settings = super()._get_local_settings()
        settings.update(self._tricorn_settings)
        return settings

    def pending_frame_size(self, stream_id: int) -> int:
        """The size a HEADERS (or other buffered) frame being received on the stream announces.

        aioquic buffers such a frame whole before it decodes it; DATA is
        handed over as it arrives and counts as nothing here.
        """
        stream = self._stream.get(stream_id)
        if stream is None or stream.frame_type in (None, FrameType.DATA):
            return len(stream.buffer) if stream is not None else 0
        return max(stream.frame_size or 0, len(stream.buffer))

    def end_sending(self, stream_id: int) -> None:
        """Our side of the stream was reset: aioquic's HTTP/3 layer would keep it forever.

        aioquic forgets a request stream once both of its halves ended, and
        learns of the sending half's end only from its own send calls or the
        peer's STOP_SENDING, never from QuicConnection.reset_stream.
        """
        stream = self._stream.get(stream_id)
        if stream is not None:
            stream.sending_ended = True
            if stream.is_ended():
                del self._stream[stream_id]

    def headers_seen(self, stream_id: int) -> int:
        """How many HEADERS frames of the stream have been read: 0 (or gone), 1, 2 (trailers)."""
        stream = self._stream.get(stream_id)
        if stream is None:
            return 0
        return {
            HeadersState.INITIAL: 0,
            HeadersState.AFTER_HEADERS: 1,
            HeadersState.AFTER_TRAILERS: 2,
        }[stream.headers_recv_state]


def send_goaway(h3: H3Connection, quic: QuicConnection, stream_id: int) -> None:
    """Send GOAWAY on our control stream (RFC 9114 5.2, 7.2.6).

    Requests on ``stream_id`` and later are not served. aioquic 1.x has no
    API to send one.
    """
    control = h3._local_control_stream_id
    if control is not None:
        quic.send_stream_data(control, encode_frame(FrameType.GOAWAY, encode_uint_var(stream_id)))


def sending(quic: QuicConnection) -> bool:
    """Response data on some request stream is not all acknowledged by the peer yet.

    Closing the connection now would lose it: after CONNECTION_CLOSE nothing
    is retransmitted.
    """
    return any(
        is_request_stream(stream_id) and not stream.sender.is_finished
        for stream_id, stream in quic._streams.items()
    )


def has_peer(quic: QuicConnection) -> bool:
    """A datagram was accepted: there is an address to send to.

    aioquic's datagrams_to_send fails without one (and has no public way to
    ask before 1.3's get_peer_address).
    """
    return bool(quic._network_paths)


def close_event(quic: QuicConnection) -> ConnectionTerminated | None:
    """Why the connection is ending, as soon as it is.

    aioquic reports ConnectionTerminated only after the closing period.
    """
    return quic._close_event


def terminated(quic: QuicConnection) -> bool:
    """The closing (or draining) period is over: nothing more passes, the state can go."""
    return quic._state is QuicConnectionState.TERMINATED


def cipher_suite(quic: QuicConnection) -> int | None:
    """The TLS 1.3 cipher suite the handshake chose (None before it did)."""
    tls = getattr(quic, "tls", None)
    schedule = getattr(tls, "key_schedule", None)
    suite = getattr(schedule, "cipher_suite", None)
    return None if suite is None else int(suite)


def unsent(quic: QuicConnection, stream_id: int) -> int:
    """Bytes handed to the stream that aioquic has not sent yet (held by credit or congestion)."""
    stream = quic._streams.get(stream_id)
    if stream is None:
        return 0
    sender = stream.sender
    return max(0, sender._buffer_stop - sender.highest_offset)


check()
