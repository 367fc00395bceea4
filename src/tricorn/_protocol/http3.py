"""HTTP/3 (RFC 9114) over QUIC (RFC 9000) as a sans-IO state machine over aioquic.

Datagrams in -> events out (``receive_datagram``), commands in (``handle``)
-> datagrams out (``datagrams_to_send``), and a timer the runtime keeps
(``next_timer``, ``handle_timer``): QUIC retransmits, acknowledges and times
out on its own clock, which is the runtime's, passed in as ``now``. Events
and commands are those of :class:`~tricorn._protocol.http2.HTTP2Protocol`,
and so is the shape: streams, held response data, acknowledged request data,
GOAWAY, WebSocket on extended CONNECT (RFC 9220), the same abuse budgets.

Flow control both ways, as on HTTP/2:

- Request data is acknowledged only when the runtime says the app took it
  (:meth:`HTTP3Protocol.acknowledge`); a request stream's QUIC window, and
  the connection's, open by what was taken, so a stream holds at most its
  window (aioquic would open them as data arrives; see :mod:`.quic_seams`).
- Response data is handed to QUIC only while the stream has less than
  ``SEND_BUFFER`` bytes not yet sent; the rest is held, and
  :meth:`~HTTP3Protocol.held` says so until it is let out. A window the peer
  keeps shut, and congestion control alike, hold the app back. When a
  stream's held data is all let out (in :meth:`~HTTP3Protocol.datagrams_to_send`),
  a :class:`WindowOpened` waits in :meth:`~HTTP3Protocol.pending_events`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from typing import Any, Final, assert_never

from aioquic.h3 import events as h3_events
from aioquic.h3.connection import ErrorCode, validate_header_name
from aioquic.h3.connection import ProtocolError as H3ProtocolError
from aioquic.h3.connection import validate_header_value as _validate_value
from aioquic.quic import events as quic_events
from aioquic.quic.configuration import QuicConfiguration
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from ..config import Config
from ..errors import AppProtocolError, ClientDisconnected, PeerProtocolError
from . import rules, websocket
from .events import (
    AcceptWebSocket,
    CloseWebSocket,
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    MessageReceived,
    PushPromise,
    RequestReceived,
    SendData,
    SendInformational,
    SendMessage,
    SendPing,
    SendTrailers,
    StartResponse,
    StreamEnded,
    StreamReset,
    WebSocketRequest,
    WindowOpened,
)
from .http2_guard import Budget, Stillborn
from .http2_stream import Stream, StreamEvent
from .interface import Phase
from .quic_seams import (
    CreditedQuicConnection,
    ServerH3Connection,
    cipher_suite,
    close_event,
    has_peer,
    is_request_stream,
    send_goaway,
    sending,
    terminated,
    unsent,
)

__all__ = ["ALPN", "SEND_BUFFER", "Address", "HTTP3Protocol", "server_configuration"]

#: The ALPN token of HTTP/3 (RFC 9114 3.1).
ALPN: Final = "h3"

#: Response bytes a stream may have in QUIC's hands, not yet sent; beyond
#: it the app waits (``held``). Bounds what one stream makes us buffer when
#: the peer's window is shut or the path is congested.
SEND_BUFFER: Final = 64 * 1024

#: How many streams' windows the connection window spans, as on HTTP/2.
_WINDOW_STREAMS: Final = 16

#: A peer's address as the runtime's UDP socket gives it (host, port, ...).
Address = Any

HeaderSource = Callable[[], Headers]

_E = ErrorCode

#: The largest number of QUIC-level rounds one datagrams_to_send call makes
#: (let held data out, build datagrams, again): plenty for a full window.
_SEND_ROUNDS: Final = 64


def server_configuration(
    config: Config,
    *,
    certificate_chain: bytes,
    private_key: bytes,
    password: bytes | None = None,
    idle_timeout: float = 60.0,
) -> QuicConfiguration:
    """The QUIC configuration of a server, from PEM bytes the runtime read.

    One configuration serves every connection of a listener. The receive
    windows are HTTP/2's (``h2_initial_window_size`` per stream); TLS 1.3 is
    QUIC's own (RFC 9001), so only the certificate and key are taken.
    """
    certificates = x509.load_pem_x509_certificates(certificate_chain)
    key = serialization.load_pem_private_key(private_key, password)
    window = config.h2_initial_window_size
    return QuicConfiguration(
        is_client=False,
        alpn_protocols=[ALPN],
        certificate=certificates[0],
        certificate_chain=certificates[1:],
        private_key=key,
        max_stream_data=window,
        max_data=window * min(config.h2_max_concurrent_streams, _WINDOW_STREAMS),
        idle_timeout=idle_timeout,
    )


class HTTP3Protocol:
    """One HTTP/3 server connection over QUIC.

    Made by the runtime when a client's first Initial packet arrives:
    ``original_destination_connection_id`` is that packet's destination
    connection ID (and ``retry_source_connection_id`` the one a Retry gave,
    RFC 9000 7.3). ``now`` starts the clock that every later call advances.
    """

    def __init__(
        self,
        config: Config,
        configuration: QuicConfiguration,
        *,
        original_destination_connection_id: bytes,
        retry_source_connection_id: bytes | None = None,
        default_headers: HeaderSource = tuple,
        now: float = 0.0,
    ) -> None:
        self._config = config
        self._default_headers = default_headers
        self._now = now
        self._quic = CreditedQuicConnection(
            configuration=configuration,
            original_destination_connection_id=original_destination_connection_id,
            retry_source_connection_id=retry_source_connection_id,
        )
        self._quic.limit_streams(config.h2_max_concurrent_streams)
        self._h3 = ServerH3Connection(
            self._quic,
            connect_protocol=config.ws != "none",
            max_field_section_size=config.h2_max_header_list_size,
        )
        self._stream_window = configuration.max_stream_data
        self._connection_window = configuration.max_data
        #: A HEADERS frame announcing more than this ends the connection: it
        #: cannot decode to a list within h2_max_header_list_size.
        self._max_header_block = 2 * config.h2_max_header_list_size
        self._streams: dict[int, Stream] = {}
        #: Streams whose exchange (app task) is still running, reset or not.
        self._active: set[int] = set()
        #: Request body and WebSocket bytes handed to apps and not yet taken.
        self._unacknowledged = 0
        self._pending: list[Event] = []
        self._closed = False
        self._terminated = False
        self._close_announced = False
        #: The first stream ID our GOAWAY refuses (RFC 9114 5.2), once sent.
        self._goaway_id: int | None = None
        self._last_stream_id = -4
        self._stillborn = Stillborn()
        self._resets = Budget(config.h2_max_resets, self._clock)
        self._control = Budget(config.h2_max_control_frames, self._clock)
        self._issued: list[bytes] = []
        self._retired: list[bytes] = []
        #: Why the connection ended on our side, for the log.
        self.error: str | None = None

    def _clock(self) -> float:
        return self._now

    # -- state the runtime reads ----------------------------------------------

    @property
    def closed(self) -> bool:
        """No more HTTP passes; QUIC may still be closing (see :attr:`terminated`)."""
        return self._closed

    @property
    def terminated(self) -> bool:
        """QUIC's closing period is over: the runtime forgets the connection and its IDs."""
        return self._terminated or terminated(self._quic)

    @property
    def draining(self) -> bool:
        return self._goaway_id is not None

    @property
    def active_streams(self) -> int:
        return len(self._active)

    @property
    def phase(self) -> Phase:
        return Phase.BUSY if self._active else Phase.IDLE

    @property
    def wants_data(self) -> bool:
        """Always, until closed: QUIC's windows bound what the peer may send."""
        return not self._closed

    @property
    def host_connection_ids(self) -> tuple[bytes, bytes]:
        """The IDs datagrams for this connection arrive with at first: the client's
        original destination ID and the one we chose (RFC 9000 7.2)."""
        return self._quic.original_destination_connection_id, self._quic.host_cid

    def connection_id_changes(self) -> tuple[list[bytes], list[bytes]]:
        """Connection IDs issued and retired since the last call, for routing datagrams."""
        changes = (self._issued, self._retired)
        self._issued, self._retired = [], []
        return changes

    def held(self, stream_id: int) -> bool:
        """Response data for the stream waits for QUIC to send what it has."""
        stream = self._streams.get(stream_id)
        return not self._closed and stream is not None and stream.holds_output

    def stream_open(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.ended and not self._closed

    @property
    def cipher_suite(self) -> int | None:
        """The TLS 1.3 cipher suite of the handshake, for the ASGI TLS extension."""
        return cipher_suite(self._quic)

    def close(self) -> None:
        """End the connection now (CONNECTION_CLOSE, H3_NO_ERROR): a forced shutdown."""
        self._close(_E.H3_NO_ERROR, "server stopping")

    def stop_keep_alive(self) -> None:
        """Other streams go on; an unfinished response is reset when its exchange ends."""

    def timed_out(self) -> str:
        """Idle past the keep-alive timeout: GOAWAY, then close."""
        self.start_shutdown()
        self._close(_E.H3_NO_ERROR, "idle")
        return "closing an idle HTTP/3 connection"

    # -- datagrams in ------------------------------------------------------------

    def receive_datagram(self, data: bytes, addr: Address, now: float) -> list[Event]:
        """Feed one UDP datagram from ``addr``; the events it produced.

        QUIC drops what it cannot authenticate or parse, so any bytes are
        safe here; a peer that breaks HTTP/3 gets the connection closed.
        """
        return self.receive_datagrams(((data, addr),), now)

    def receive_datagrams(
        self, datagrams: Iterable[tuple[bytes, Address]], now: float
    ) -> list[Event]:
        """Feed a burst of datagrams read at once; their events together.

        A stream opened and reset within one burst never reaches an app.
        """
        self._now = now
        for data, addr in datagrams:
            self._quic.receive_datagram(data, addr, now)
        return self._process()

    def next_timer(self) -> float | None:
        """When :meth:`handle_timer` is due (None: no timer, the connection is over)."""
        if self.terminated:
            return None
        return self._quic.get_timer()

    def handle_timer(self, now: float) -> list[Event]:
        """The timer fired: retransmissions, delayed ACKs, the idle timeout."""
        self._now = now
        self._quic.handle_timer(now)
        return self._process()

    def _process(self) -> list[Event]:
        events: list[Event] = []
        self._stillborn.begin()
        touched: set[int] = set()
        while (event := self._quic.next_event()) is not None:
            if self._closed:
                if isinstance(event, quic_events.ConnectionTerminated):
                    self._terminated = True
                continue  # nothing more is served; what remains is QUIC's
            self._on_quic_event(event, events, touched)
        events = self._drop_stillborn(events)
        if not self._closed:
            self._grant(touched)
            self._finish_draining()
        self._check_closing(events)
        return events

    def _on_quic_event(
        self, event: quic_events.QuicEvent, events: list[Event], touched: set[int]
    ) -> None:
        match event:
            case quic_events.StreamDataReceived(stream_id=stream_id):
                touched.add(stream_id)
                self._on_h3_events(self._h3.handle_event(event), events)
                if (
                    is_request_stream(stream_id)
                    and self._h3.pending_frame_size(stream_id) > self._max_header_block
                ):
                    self.error = "a header block far over h2_max_header_list_size"
                    self._close(_E.H3_EXCESSIVE_LOAD, "header block too large")
            case quic_events.StreamReset(stream_id=stream_id, error_code=code):
                self._h3.handle_event(event)
                if is_request_stream(stream_id):
                    self._peer_reset(stream_id, code, events)
            case quic_events.StopSendingReceived(stream_id=stream_id, error_code=code):
                # QUIC has reset our side already (RFC 9000 3.5): the response
                # cannot be delivered, so the exchange is over, as on RST_STREAM.
                self._h3.handle_event(event)
                if is_request_stream(stream_id):
                    self._peer_reset(stream_id, code, events)
            case quic_events.ConnectionTerminated():
                self._terminated = True
            case quic_events.ConnectionIdIssued(connection_id=cid):
                self._issued.append(cid)
            case quic_events.ConnectionIdRetired(connection_id=cid):
                self._retired.append(cid)
            case quic_events.DatagramFrameReceived():
                # Not offered (no max_datagram_frame_size): QUIC refuses them.
                self._spend(self._control, "datagrams")
            case _:
                # Handshake progress, ALPN, pings we sent: QUIC's own business.
                self._h3.handle_event(event)

    def _on_h3_events(self, h3_events_: list[h3_events.H3Event], events: list[Event]) -> None:
        headers_left: dict[int, int] = {}
        for event in h3_events_:
            if isinstance(event, h3_events.HeadersReceived):
                headers_left[event.stream_id] = headers_left.get(event.stream_id, 0) + 1
        for event in h3_events_:
            if self._closed:
                return
            match event:
                case h3_events.HeadersReceived(stream_id=stream_id, stream_ended=ended):
                    in_batch = headers_left[stream_id]
                    headers_left[stream_id] = in_batch - 1
                    # The request's HEADERS, not trailers, if every HEADERS
                    # frame the stream had so far is in this batch: a stream
                    # we answered and forgot may still send its trailers.
                    if stream_id not in self._streams and (
                        self._h3.headers_seen(stream_id) == in_batch
                    ):
                        self._request(stream_id, event.headers, ended, events)
                    elif ended:
                        # ASGI has no request trailers; they only end the body.
                        self._stream_ended(stream_id, events)
                case h3_events.DataReceived(stream_id=stream_id, data=data, stream_ended=ended):
                    self._data(stream_id, data, ended, events)
                case _:
                    # Pushes cannot reach a server; WebTransport and HTTP
                    # datagrams are not offered.
                    self._spend(self._control, "unexpected HTTP/3 frames")

    def _drop_stillborn(self, events: list[Event]) -> list[Event]:
        """Take out every event of a stream opened and reset within this input.

        As on HTTP/2: starting an app only to cancel it is work an attacker
        gets for free. Its body bytes count as taken.
        """
        return self._stillborn.take_out(events)[0]

    def pending_events(self) -> list[Event]:
        """Events produced outside ``receive_datagram``: WindowOpened as held data leaves."""
        events, self._pending = self._pending, []
        return events

    def _request(
        self, stream_id: int, raw: list[tuple[bytes, bytes]], ended: bool, events: list[Event]
    ) -> None:
        self._last_stream_id = max(self._last_stream_id, stream_id)
        pseudo, headers = rules.split_fields(raw)
        authority = pseudo.get(b":authority")
        method = pseudo.get(b":method", b"")
        stream = Stream(stream_id, method, authority or b"", request_done=ended)
        self._streams[stream_id] = stream
        if self._goaway_id is not None and stream_id >= self._goaway_id:
            # RFC 9114 5.2: requests at or past our GOAWAY are not processed.
            self._reset(stream, _E.H3_REQUEST_REJECTED)
            return
        if len(self._active) >= self._config.h2_max_concurrent_streams:
            # QUIC counts open streams; a reset stream's app may still run.
            # Refusing here keeps the apps bounded too (RFC 9114 4.1.1).
            self._spend(self._resets, "streams reset")
            self._reset(stream, _E.H3_REQUEST_REJECTED)
            return
        if _pseudo_fault(pseudo) is not None:
            # RFC 9114 4.1.2: a malformed request is a stream error, and like
            # any reset the peer caused it is budgeted (CVE-2025-8671).
            self._spend(self._resets, "streams reset")
            self._reset(stream, _E.H3_MESSAGE_ERROR)
            return
        if rules.field_section_size(raw) > self._config.h2_max_header_list_size:
            self._refuse(stream, 431, "request header fields too large")
            return
        request = self._check_request(stream, pseudo, headers)
        if request is None:
            return
        self._active.add(stream_id)
        self._stillborn.announced(stream_id)
        events.append(request)
        if ended:
            events.append(StreamEnded(stream_id))

    def _check_request(
        self, stream: Stream, pseudo: dict[bytes, bytes], headers: list[tuple[bytes, bytes]]
    ) -> RequestReceived | None:
        """The request event, or None once it has been answered here."""
        method = stream.method
        ws_request: WebSocketRequest | None = None
        if method == b"CONNECT":
            protocol = pseudo.get(b":protocol")
            if fault := rules.connect_fault(method, protocol, self._config.ws != "none"):
                self._refuse(stream, 501, fault)
                return None
            try:
                ws_request = websocket.read_connect_handshake(tuple(headers))
            except PeerProtocolError as exc:
                self._refuse(stream, exc.status_code, str(exc), websocket.refusal_headers(exc))
                return None
            stream.ws_request = ws_request
        if rules.declared_length_exceeds(headers, self._config.max_request_body_size):
            self._refuse(stream, 413, "request body too large")
            return None
        return RequestReceived(
            stream_id=stream.stream_id,
            method=method,
            target=pseudo.get(b":path", b"/"),
            http_version="3",
            headers=tuple(headers),
            expects_continue=not stream.request_done
            and any(
                name == b"expect" and value.lower() == b"100-continue" for name, value in headers
            ),
            websocket=ws_request,
            can_send_trailers=ws_request is None and rules.accepts_trailers(tuple(headers)),
            can_push=False,
            can_send_early_hints=ws_request is None,
        )

    def _data(self, stream_id: int, data: bytes, ended: bool, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if not data and not ended:
            # An empty DATA frame carries nothing but work (CVE-2019-9518).
            self._spend(self._control, "empty DATA frames")
        if stream is None or stream.ended or stream_id not in self._active:
            # Nobody will take these bytes: they count as taken (see _grant).
            return
        if stream.websocket is not None:
            ws_events = stream.websocket.receive_data(data) if data else []
            if any(isinstance(event, MessageReceived) for event in ws_events):
                # Held back until the app takes its messages (acknowledge).
                self._hold(stream, len(data))
            # Part of a message still arriving counts as taken, or a message
            # larger than the window would wait for itself; the frame layer
            # bounds what it holds (ws_max_message_size, then 1009).
            events.extend(ws_events)
            self._pump_websocket(stream)
        elif stream.ws_request is not None:
            # Bytes before the handshake is accepted: a WebSocket client
            # waits for the 200 (RFC 9220 3, RFC 8441 5), so they are dropped.
            pass
        else:
            stream.received += len(data)
            max_body = self._config.max_request_body_size
            if max_body is not None and stream.received > max_body:
                if stream.response_started and stream.head is None:
                    self._reset(stream, _E.H3_REQUEST_CANCELLED)
                else:
                    self._refuse(stream, 413, "request body too large")
                self._lost(stream_id, int(_E.H3_REQUEST_CANCELLED), events)
                return
            if data:
                self._hold(stream, len(data))
                events.append(DataReceived(stream_id, data))
        if ended:
            self._stream_ended(stream_id, events)

    def _hold(self, stream: Stream, size: int) -> None:
        stream.unacknowledged += size
        self._unacknowledged += size

    def _stream_ended(self, stream_id: int, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended or stream.request_done:
            return
        stream.advance(StreamEvent.REQUEST_ENDED)
        if stream.websocket is not None:
            # RFC 9220 3: the stream's FIN is the WebSocket's TCP FIN. Before
            # the closing handshake finished, that is an abnormal end.
            if not stream.websocket.closed:
                stream.websocket.receive_data(b"")
                self._lost(stream_id, 0, events)
                self._spend(self._resets, "streams reset")
                self._reset(stream, _E.H3_REQUEST_CANCELLED)
                return
            self._settle(stream)
            return
        if stream_id in self._active:
            events.append(StreamEnded(stream_id))
        self._settle(stream)

    def _peer_reset(self, stream_id: int, code: int, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None and stream_id > self._last_stream_id:
            # A stream opened by its reset (RFC 9000 3.2 lets a RESET_STREAM
            # open one) cost a stream and never carried a request: a reset
            # the peer caused like any other (CVE-2023-44487).
            self._spend(self._resets, "streams reset")
            self._last_stream_id = stream_id
            return
        if stream is None or stream.ended:
            return
        if not stream.response_done:
            self._spend(self._resets, "streams reset")
        # Both ways: the peer wants neither the request nor the response.
        self._reset(stream, _E.H3_REQUEST_CANCELLED)
        self._lost(stream_id, code, events)

    def _lost(self, stream_id: int, code: int, events: list[Event]) -> None:
        """Tell the stream's exchange its stream is gone; or, if its request is
        in this input's events, see that no exchange ever starts."""
        if self._stillborn.lost(stream_id):
            # It stops counting against the concurrency limit now, and
            # _drop_stillborn takes its events out.
            self._active.discard(stream_id)
            if (stream := self._streams.get(stream_id)) is not None:
                self._settle(stream)
        elif stream_id in self._active:
            events.append(StreamReset(stream_id, code))

    def _check_closing(self, events: list[Event]) -> None:
        """Report the connection's end once QUIC has begun it (either side)."""
        ending = close_event(self._quic)
        if ending is None and not self._terminated:
            return
        if not self._closed:
            self._closed = True
            code = ending.error_code if ending is not None else 0
            if code not in (0, _E.H3_NO_ERROR) and self.error is None:
                reason = ending.reason_phrase if ending is not None else ""
                self.error = f"HTTP/3 connection closed with error 0x{code:x}: {reason[:200]}"
        if not self._close_announced:
            # Exchanges see a disconnect; the runtime keeps the connection
            # until it is terminated, for QUIC's closing period.
            self._close_announced = True
            events.append(ConnectionClosed())

    # -- budgets -------------------------------------------------------------------

    def _spend(self, budget: Budget, what: str) -> None:
        if budget.spend() or self._closed:
            return
        self.error = f"too many {what}: ended the connection with H3_EXCESSIVE_LOAD"
        self._close(_E.H3_EXCESSIVE_LOAD, what)

    def _close(self, code: int, reason: str) -> None:
        """End the connection with CONNECTION_CLOSE(code) now (RFC 9114 8.1)."""
        if self._closed:
            return
        self._quic.close(error_code=code, reason_phrase=reason)
        self._closed = True
        for stream in self._streams.values():
            if not stream.ended:
                stream.advance(StreamEvent.RESET)

    # -- commands in ----------------------------------------------------------------

    def handle(self, command: Command) -> None:
        """Turn a command into HTTP/3 frames; raises ClientDisconnected once the stream is gone."""
        stream = self._streams.get(command.stream_id)
        if self._closed or stream is None or stream.ended:
            raise ClientDisconnected("the stream is closed")
        try:
            self._handle(command, stream)
        except H3ProtocolError as exc:
            # The app asked for an invalid header: a 500 if no byte of the
            # response went out yet, else the stream is reset.
            self._app_failed(stream)
            raise AppProtocolError(f"invalid response: {rules.short_reason(exc)}") from None

    def _handle(self, command: Command, stream: Stream) -> None:
        if stream.websocket is not None:
            if not isinstance(command, (SendMessage, SendPing, CloseWebSocket)):
                raise AppProtocolError(f"{type(command).__name__} on a WebSocket stream")
            stream.websocket.handle(command)
            self._pump_websocket(stream)
            return
        stream_id = stream.stream_id
        match command:
            case SendInformational(status_code=status_code, headers=headers):
                self._h3.send_headers(
                    stream_id, [(b":status", str(status_code).encode()), *_clean(headers)]
                )
            case StartResponse(status_code=status_code, headers=headers):
                head = [(b":status", str(status_code).encode()), *self._response_headers(headers)]
                stream.advance(StreamEvent.RESPONSE_STARTED)
                stream.body_allowed = rules.response_allows_body(stream.method, status_code)
                # Held until the first body chunk, so that an empty body ends
                # the stream with the HEADERS frame itself.
                stream.head = tuple(head)
            case SendData(data=data, end_stream=end_stream):
                self._send_head(stream, end_stream=end_stream and not data)
                if data and stream.body_allowed:
                    stream.held.append(data)
                if end_stream and not stream.response_done:
                    stream.advance(StreamEvent.RESPONSE_ENDING)
                self._let_out_stream(stream)
            case SendTrailers(headers=headers):
                trailers = tuple(_clean(headers))
                self._send_head(stream, end_stream=False)
                stream.held_trailers = trailers
                stream.advance(StreamEvent.RESPONSE_ENDING)
                self._let_out_stream(stream)
            case PushPromise():
                pass  # ASGI: a push the connection cannot make is not made
            case AcceptWebSocket():
                self._accept_websocket(stream, command)
            case SendMessage() | SendPing() | CloseWebSocket():
                raise AppProtocolError("the WebSocket handshake is not complete")
            case _:
                assert_never(command)

    def _send_head(self, stream: Stream, *, end_stream: bool) -> None:
        """Send the held response head; with ``end_stream`` it is the whole response."""
        if stream.head is None:
            return
        head, stream.head = stream.head, None
        self._h3.send_headers(stream.stream_id, list(head), end_stream=end_stream)
        if end_stream:
            stream.advance(StreamEvent.RESPONSE_ENDING)
            stream.advance(StreamEvent.RESPONSE_ENDED)
            self._response_sent(stream)

    def _response_headers(self, headers: Headers) -> list[tuple[bytes, bytes]]:
        result = _clean(headers)
        present = {name for name, _ in result}
        result.extend(
            (name, value) for name, value in self._default_headers() if name not in present
        )
        return result

    def _accept_websocket(self, stream: Stream, command: AcceptWebSocket) -> None:
        request = stream.ws_request
        if request is None:
            raise AppProtocolError("not a WebSocket handshake")
        headers, guard = websocket.accept_handshake(
            request,
            command.subprotocol,
            per_message_deflate=self._config.ws_per_message_deflate,
            max_message_size=self._config.ws_max_message_size,
        )
        # RFC 9220 3 (as RFC 8441 5): a 2xx answer to the extended CONNECT
        # opens the WebSocket.
        head = [(b":status", b"200"), *self._response_headers((*headers, *command.headers))]
        self._h3.send_headers(stream.stream_id, head)
        stream.advance(StreamEvent.RESPONSE_STARTED)
        stream.websocket = websocket.WebSocketProtocol(stream.stream_id, guard)

    def _pump_websocket(self, stream: Stream) -> None:
        """Move the frame layer's bytes into DATA frames; FIN once it closed."""
        ws = stream.websocket
        assert ws is not None
        if ws.output_size:
            stream.held.append(ws.data_to_send())
        if ws.closed and not stream.response_done:
            stream.advance(StreamEvent.RESPONSE_ENDING)
        self._let_out_stream(stream)

    # -- flow control -------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app took ``size`` bytes of what the stream delivered: open its window again.

        On a WebSocket stream every message handed over counts as taken.
        """
        stream = self._streams.get(stream_id)
        if stream is None or self._closed:
            return
        if stream.websocket is not None:
            size = stream.unacknowledged
        taken = min(max(size, 0), stream.unacknowledged)
        stream.unacknowledged -= taken
        self._unacknowledged -= taken
        self._grant({stream_id})

    def _grant(self, stream_ids: set[int]) -> None:
        """Open the windows by what was taken; in steps of half a window at least.

        A stream's limit is what it delivered in order (HTTP/3 framing and
        all) less what its app has not taken, plus the window; the
        connection's likewise over every stream.
        """
        window = self._stream_window
        for stream_id in stream_ids:
            if not is_request_stream(stream_id):
                continue
            state = self._quic.stream_window(stream_id)
            if state is None:
                continue
            delivered, limit = state
            stream = self._streams.get(stream_id)
            held = stream.unacknowledged if stream is not None else 0
            target = delivered - held + window
            if target - limit >= window // 2:
                self._quic.grant_stream(stream_id, target)
        used, limit = self._quic.connection_window()
        target = used - self._unacknowledged + self._connection_window
        if target - limit >= self._connection_window // 2:
            self._quic.grant_connection(target)

    def _let_out(self) -> None:
        """Hand held data to QUIC as far as it sends; WindowOpened for each stream drained."""
        for stream in list(self._streams.values()):
            if stream.holds_output:
                self._let_out_stream(stream)
                if not stream.holds_output:
                    self._pending.append(WindowOpened(stream.stream_id))

    def _let_out_stream(self, stream: Stream) -> None:
        stream_id = stream.stream_id
        while stream.held:
            room = SEND_BUFFER - unsent(self._quic, stream_id)
            if room <= 0:
                return
            chunk = stream.held[0]
            if len(chunk) > room:
                stream.held[0] = chunk[room:]
                chunk = chunk[:room]
            else:
                stream.held.popleft()
            end = stream.end_held and not stream.held and stream.held_trailers is None
            self._h3.send_data(stream_id, chunk, end_stream=end)
            if end:
                stream.advance(StreamEvent.RESPONSE_ENDED)
                self._response_sent(stream)
                return
        if stream.end_held:
            trailers, stream.held_trailers = stream.held_trailers, None
            if trailers is not None:
                self._h3.send_headers(stream_id, list(trailers), end_stream=True)
            else:
                self._h3.send_data(stream_id, b"", end_stream=True)
            stream.advance(StreamEvent.RESPONSE_ENDED)
            self._response_sent(stream)

    def _response_sent(self, stream: Stream) -> None:
        if not stream.request_done and stream.stream_id not in self._active:
            # The exchange is over and the rest of the request is of no use.
            self._stop(stream.stream_id, _E.H3_NO_ERROR)
            stream.advance(StreamEvent.REQUEST_ENDED)
        self._settle(stream)

    # -- stream ends -----------------------------------------------------------------

    def exchange_finished(self, stream_id: int) -> list[Event]:
        """The app task for the stream ended. Whatever is still open is closed.

        An unfinished response is reset (H3_INTERNAL_ERROR); a complete one
        whose request body is still arriving is followed by
        STOP_SENDING(H3_NO_ERROR), RFC 9114 4.1, so the client stops sending.
        """
        self._active.discard(stream_id)
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.ended and not self._closed:
            if not stream.response_done:
                self._reset(stream, _E.H3_INTERNAL_ERROR)
            elif not stream.request_done and not stream.holds_output:
                self._stop(stream_id, _E.H3_NO_ERROR)
                stream.advance(StreamEvent.REQUEST_ENDED)
        if stream is not None:
            self._forget_unacknowledged(stream)
            self._settle(stream)
        self._finish_draining()
        return []

    def reset_stream(self, stream_id: int) -> None:
        """Give up on one stream: RESET_STREAM and STOP_SENDING, H3_REQUEST_CANCELLED."""
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.ended and not self._closed:
            self._reset(stream, _E.H3_REQUEST_CANCELLED)

    def _app_failed(self, stream: Stream) -> None:
        if stream.head is not None or not stream.response_started:
            stream.head = None
            self._refuse(stream, 500, "the application sent an invalid response")
        else:
            self._reset(stream, _E.H3_INTERNAL_ERROR)

    def _refuse(self, stream: Stream, status: int, reason: str, headers: Headers = ()) -> None:
        """Answer a request here, without the app, and close the stream."""
        stream.head = None
        head, body = rules.refusal(status, reason)
        self._h3.send_headers(
            stream.stream_id,
            [(b":status", str(status).encode()), *head, *_clean(headers), *self._default_headers()],
        )
        self._h3.send_data(stream.stream_id, body, end_stream=True)
        if not stream.response_started:
            stream.advance(StreamEvent.RESPONSE_STARTED)
        stream.advance(StreamEvent.RESPONSE_ENDING)
        stream.advance(StreamEvent.RESPONSE_ENDED)
        if not stream.request_done:
            # The rest of the request is of no use (RFC 9114 4.1).
            self._stop(stream.stream_id, _E.H3_NO_ERROR)
            stream.advance(StreamEvent.REQUEST_ENDED)
        self._settle(stream)

    def _stop(self, stream_id: int, code: int) -> None:
        with contextlib.suppress(ValueError):  # aioquic forgot the stream already
            self._quic.stop_stream(stream_id, code)

    def _reset(self, stream: Stream, code: int) -> None:
        """Reset both halves of the stream (RFC 9114 4.1.1)."""
        stream_id = stream.stream_id
        self._quic.reset_stream(stream_id, code)
        self._h3.end_sending(stream_id)
        if not stream.request_done:
            self._stop(stream_id, code)
        stream.advance(StreamEvent.RESET)
        self._settle(stream)

    def _forget_unacknowledged(self, stream: Stream) -> None:
        """Bytes an app will never take count as taken."""
        self._unacknowledged -= stream.unacknowledged
        stream.unacknowledged = 0

    def _settle(self, stream: Stream) -> None:
        """Forget a closed stream once no exchange runs for it."""
        if stream.ended and stream.stream_id not in self._active:
            self._forget_unacknowledged(stream)
            self._streams.pop(stream.stream_id, None)

    # -- shutdown ---------------------------------------------------------------------

    def start_shutdown(self) -> None:
        """Graceful GOAWAY (RFC 9114 5.2): no new requests; those in flight finish.

        The connection closes once the last exchange ended and its response
        is acknowledged by the peer.
        """
        if self._goaway_id is not None or self._closed:
            return
        self._goaway_id = self._last_stream_id + 4
        send_goaway(self._h3, self._quic, self._goaway_id)
        self._finish_draining()

    def _finish_draining(self) -> None:
        if self._goaway_id is None or self._closed or self._active:
            return
        if any(stream.holds_output for stream in self._streams.values()) or sending(self._quic):
            return
        self._close(_E.H3_NO_ERROR, "")

    # -- datagrams out ------------------------------------------------------------------

    def datagrams_to_send(self, now: float) -> list[tuple[bytes, Address]]:
        """The datagrams to send now, each with its destination.

        Held response data is handed to QUIC as it sends, in as many rounds
        as QUIC goes on sending; streams it drained have a WindowOpened in
        :meth:`pending_events`. Call :meth:`next_timer` afterwards.
        """
        self._now = now
        datagrams: list[tuple[bytes, Address]] = []
        if not has_peer(self._quic):
            return datagrams  # no datagram was ever accepted: nobody to answer
        for _ in range(_SEND_ROUNDS):
            if not self._closed:
                self._let_out()
            batch = self._quic.datagrams_to_send(now)
            datagrams.extend(batch)
            if not batch or self._closed:
                break
            if not any(stream.holds_output for stream in self._streams.values()):
                break
        if not self._closed:
            self._finish_draining()
            if self._closed:
                datagrams.extend(self._quic.datagrams_to_send(now))
        return datagrams


def _pseudo_fault(pseudo: dict[bytes, bytes]) -> str | None:
    """Why a request's pseudo-header fields make it malformed (RFC 9114 4.3.1), or None.

    aioquic checks names, duplicates and ``:authority``; what each method
    needs is checked here. An extended CONNECT (RFC 9220 3) is a request with
    a path, a plain CONNECT (RFC 9114 4.4) has none.
    """
    method = pseudo.get(b":method")
    if not method:
        return "no :method"
    protocol = b":protocol" in pseudo
    if method == b"CONNECT" and not protocol:
        if b":scheme" in pseudo or b":path" in pseudo:
            return "CONNECT with :scheme or :path"
        return None
    if protocol and method != b"CONNECT":
        return ":protocol without CONNECT"
    if not pseudo.get(b":scheme") or not pseudo.get(b":path"):
        return "no :scheme or :path"
    return None


def _clean(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The rule book's response fields, each also checked as aioquic would
    (anything invalid raises its MessageError)."""
    result = rules.response_fields(headers)
    for name, value in result:
        validate_header_name(name)
        _validate_value(name, value)
    return result
