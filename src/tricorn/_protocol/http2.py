"""HTTP/2 (RFC 9113) as a sans-IO state machine over h2.

Bytes in -> events out (``receive_data``), commands in (``handle``) -> bytes
out (``data_to_send``), like :class:`~tricorn._protocol.http1.HTTP1Protocol`,
with streams: every event and command names its ``stream_id``.

Flow control is kept here both ways. Response data the peer's window does not
admit yet is held per stream and let out as WINDOW_UPDATE frames arrive
(:class:`WindowOpened` tells the runtime when a stream's data is all out).
Request data is acknowledged only when the runtime says the app took it
(:meth:`HTTP2Protocol.acknowledge`), so a stream holds at most its window.

Abuse is bounded by budgets (a token bucket each, refilled over 10 seconds):
resets (rapid reset, MadeYouReset) and control frames (PING, SETTINGS,
WINDOW_UPDATE, PRIORITY and empty DATA floods). A spent budget ends the
connection with GOAWAY(ENHANCE_YOUR_CALM).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import ClassVar, Final, assert_never

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.settings
from hpack.struct import NeverIndexedHeaderTuple
from hyperframe.exceptions import HyperframeError

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
from .h2_seams import (
    CompactSettings,
    CountingH2Connection,
    graceful_goaway,
    oversized_frame_pending,
    pending_header_block,
    reopen_after_graceful_goaway,
)
from .http2_flow import OutboundFlow
from .http2_guard import Budget, Clock, Stillborn
from .http2_stream import Stream, StreamEvent
from .interface import Phase

__all__ = ["PREFACE", "HTTP2Protocol"]

#: How many streams' windows the connection window spans (1 MiB at the
#: default stream window): enough for that many uploads at full speed, and
#: the bound on the request body bytes one connection can make us hold.
_WINDOW_STREAMS: Final = 16

#: The client connection preface (RFC 9113 3.4); on a cleartext port it
#: tells an HTTP/2 client with prior knowledge from an HTTP/1.1 one.
PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

HeaderSource = Callable[[], Headers]

_E = h2.errors.ErrorCodes


class HTTP2Protocol:
    """One HTTP/2 server connection.

    ``default_headers`` and ``clock`` come from the runtime, which owns time:
    the first gives the ``date``/``server`` headers, the second drives the
    abuse budgets.
    """

    label: ClassVar[str] = "h2"

    def __init__(
        self,
        config: Config,
        default_headers: HeaderSource = tuple,
        clock: Clock | None = None,
        *,
        scheme: bytes = b"http",
    ) -> None:
        self._config = config
        self._default_headers = default_headers
        self._scheme = scheme
        self._h2 = CountingH2Connection(
            h2.config.H2Configuration(
                client_side=False,
                header_encoding=None,
                # h2's header checks cost more than the rest of a request's
                # parsing; the rule book makes them (rules.fields_fault on the
                # way in, _response_fields on the way out), in one pass.
                validate_inbound_headers=False,
                normalize_inbound_headers=False,
                validate_outbound_headers=False,
                normalize_outbound_headers=False,
            )
        )
        # The initial values go in the preface's SETTINGS frame; h2 would
        # send its defaults for values assigned one by one before initiate().
        self._h2.local_settings = CompactSettings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: config.h2_max_concurrent_streams,
                h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: config.h2_initial_window_size,
                h2.settings.SettingCodes.MAX_FRAME_SIZE: config.h2_max_frame_size,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: config.h2_max_header_list_size,
                # RFC 8441 3: offering extended CONNECT is what lets a client
                # open a WebSocket on a stream; without WebSocket, nothing to offer.
                h2.settings.SettingCodes.ENABLE_CONNECT_PROTOCOL: int(config.ws != "none"),
            },
        )
        self._h2.max_inbound_frame_size = config.h2_max_frame_size
        # RFC 9113 10.5.1: a header list over SETTINGS_MAX_HEADER_LIST_SIZE
        # is decoded all the same, so the HPACK state stays in step, and
        # answered 431 (see _request). Only past twice the limit (an HPACK
        # bomb) does h2 stop decoding and end the connection, ENHANCE_YOUR_CALM.
        self._h2.decoder.max_header_list_size = 2 * config.h2_max_header_list_size
        self._streams: dict[int, Stream] = {}
        #: Streams whose exchange (app task) is still running, reset or not:
        #: what bounds concurrency when a peer resets as fast as it opens.
        self._active: set[int] = set()
        self._out = bytearray()
        self._pending: list[Event] = []
        self._closed = False
        self._goaway_sent = False
        self._goaway_received = False
        self._last_stream_id = 0
        if clock is None:
            clock = _no_clock
        #: A compressed header block this big cannot decode to a list within
        #: the limit (HPACK's worst case is under 4 bytes a character).
        self._max_header_block = max(4 * config.h2_max_header_list_size, 64 * 1024)
        #: Streams whose RequestReceived is among the events of this read,
        #: and those of them reset within it (see _drop_stillborn).
        self._stillborn = Stillborn()
        self._resets = Budget(config.h2_max_resets, clock)
        self._control = Budget(config.h2_max_control_frames, clock)
        self._flow = OutboundFlow(self._h2)
        #: Request field sections read by the rule book (see _fields).
        self._requests: dict[tuple[tuple[bytes, bytes], ...], _Fields] = {}
        #: Response heads by (status, app headers, default headers).
        self._heads: dict[tuple[int, Headers, Headers], Headers] = {}
        #: Why the connection ended on our side, for the log.
        self.error: str | None = None

    # -- starting ------------------------------------------------------------

    def initiate(self) -> None:
        """Queue our connection preface: the SETTINGS frame (RFC 9113 3.4)."""
        self._h2.initiate_connection()
        self._widen_connection_window()
        self._collect()

    def initiate_upgrade(
        self, settings: bytes, request: RequestReceived, body: bytes
    ) -> list[Event]:
        """Take over from an HTTP/1.1 ``Upgrade: h2c`` request (RFC 7540 3.2).

        The request becomes stream 1, half-closed from the client's side, and
        its events are returned for the runtime to dispatch like any other.
        """
        # RFC 7540 3.2.1: base64url with the trailing "=" left out, which
        # the decoder h2 uses insists on.
        padded = settings.strip() + b"=" * (-len(settings.strip()) % 4)
        try:
            self._h2.initiate_upgrade_connection(padded)
        except (ValueError, HyperframeError, h2.exceptions.ProtocolError) as exc:
            # The 101 is out; a bad HTTP2-Settings is now a connection error.
            self.error = f"bad HTTP2-Settings in an h2c upgrade: {rules.short_reason(exc)}"
            self._terminate(_E.PROTOCOL_ERROR, "bad HTTP2-Settings")
            self._collect()
            return [ConnectionClosed()]
        self._widen_connection_window()
        self._streams[1] = Stream(1, request.method, request_done=True)
        self._active.add(1)
        self._last_stream_id = 1
        self._collect()
        events: list[Event] = [
            RequestReceived(
                stream_id=1,
                method=request.method,
                target=request.target,
                http_version="2",
                headers=tuple(
                    (name, value)
                    for name, value in request.headers
                    if name not in rules.CONNECTION_HEADERS
                    and name not in (b"http2-settings", b"te")
                ),
                can_send_trailers=rules.accepts_trailers(request.headers),
                can_push=self._push_allowed,
                can_send_early_hints=True,
            )
        ]
        if body:
            events.append(DataReceived(1, body))
        events.append(StreamEnded(1))
        return events

    def _widen_connection_window(self) -> None:
        # The connection window is shared by all streams; the RFC default of
        # 64 KiB would let one stream whose app does not read starve the rest.
        # Each stream stays bounded by its own window; the connection's, the
        # most one connection can make us hold, by _WINDOW_STREAMS of them.
        streams = min(self._config.h2_max_concurrent_streams, _WINDOW_STREAMS)
        target = self._config.h2_initial_window_size * streams
        increment = min(target, 2**31 - 1) - 65535
        if increment > 0:
            self._h2.increment_flow_control_window(increment)

    # -- state the runtime reads ----------------------------------------------

    @property
    def closed(self) -> bool:
        """Nothing more can pass on this connection."""
        return self._closed

    @property
    def draining(self) -> bool:
        """GOAWAY went one way or the other: no new streams; close when the last ends."""
        return self._goaway_sent or self._goaway_received

    @property
    def active_streams(self) -> int:
        return len(self._active)

    @property
    def drain_on_close(self) -> bool:
        """Frames may always be in flight behind our GOAWAY (RFC 9113 6.8)."""
        return True

    @property
    def phase(self) -> Phase:
        return Phase.BUSY if self._active else Phase.IDLE

    @property
    def wants_data(self) -> bool:
        """Always, until closed: each stream's window bounds what the peer may send."""
        return not self._closed

    def stop_keep_alive(self) -> None:
        """Other streams go on; an unfinished response is reset when its exchange ends."""

    def timed_out(self) -> str:
        """Idle past the keep-alive timeout: say goodbye with GOAWAY."""
        self.start_shutdown()
        self._closed = True
        return "closing an idle HTTP/2 connection"

    @property
    def _push_allowed(self) -> bool:
        return bool(self._h2.remote_settings.enable_push) and not self.draining

    def held(self, stream_id: int) -> bool:
        """Response data for the stream waits for the peer's window."""
        stream = self._streams.get(stream_id)
        return not self._closed and stream is not None and stream.holds_output

    def stream_open(self, stream_id: int) -> bool:
        stream = self._streams.get(stream_id)
        return stream is not None and not stream.ended and not self._closed

    # -- bytes in ------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._closed:
            return []
        if not data:
            return self._connection_lost()
        events: list[Event] = []
        self._stillborn.begin()
        try:
            for h2_events in self._h2.receive_frames(data):
                # Frame by frame, so that a budget is exact: once one is spent
                # (or the peer broke the protocol) nothing more is parsed.
                for event in h2_events:
                    self._on_event(event, events)
                    if self._closed:
                        break
                if self._h2.ignored_frames:
                    self._h2.ignored_frames = 0
                    self._spend(self._control, "frames on closed streams")
                if self._closed:
                    break
        except h2.exceptions.ProtocolError as exc:
            # h2 has queued a GOAWAY with the error code the RFC prescribes
            # (PROTOCOL_ERROR, FRAME_SIZE_ERROR, FLOW_CONTROL_ERROR,
            # COMPRESSION_ERROR, ENHANCE_YOUR_CALM for an HPACK bomb ...).
            self.error = f"HTTP/2 protocol error: {rules.short_reason(exc)}"
            self._collect()
            if not self._out:
                # h2 checks the preface before it can queue a GOAWAY; RFC
                # 9113 3.4 makes a bad one a PROTOCOL_ERROR all the same.
                with contextlib.suppress(h2.exceptions.ProtocolError):
                    self._terminate(_E.PROTOCOL_ERROR, "invalid connection preface")
                self._collect()
            return self._connection_lost()
        if not self._closed and pending_header_block(self._h2) > self._max_header_block:
            self.error = "a header block far over h2_max_header_list_size"
            self._terminate(_E.ENHANCE_YOUR_CALM, "header block too large")
        if not self._closed and oversized_frame_pending(self._h2):
            # RFC 9113 4.2: a frame over SETTINGS_MAX_FRAME_SIZE is a
            # FRAME_SIZE_ERROR. h2 tells only once the whole frame is
            # buffered, up to 16 MiB; its 9-byte header tells already.
            self.error = "a frame over h2_max_frame_size"
            self._terminate(_E.FRAME_SIZE_ERROR, "frame too large")
        events = self._drop_stillborn(events)
        if not self._closed:
            events.extend(self._let_out())
        self._collect()
        if self._closed and not any(isinstance(event, ConnectionClosed) for event in events):
            events.extend(self._connection_lost())
        return events

    def _drop_stillborn(self, events: list[Event]) -> list[Event]:
        """Take out every event of a stream opened and reset within this read.

        Such a stream (a rapid reset, or a request followed by a fault that
        resets it) is gone before its app could run: starting an app only to
        cancel it is work an attacker gets for free, and an app that ignores
        the cancellation would outlive its stream. Its body bytes are
        credited back, since nobody will take them.
        """
        kept, dropped = self._stillborn.take_out(events)
        for event in dropped:
            if isinstance(event, DataReceived):
                self._acknowledge(event.stream_id, len(event.data))
        return kept

    def pending_events(self) -> list[Event]:
        """Events that commands produced (a pushed request), for the runtime to dispatch."""
        events, self._pending = self._pending, []
        return events

    def _on_event(self, event: h2.events.Event, events: list[Event]) -> None:
        match event:
            case h2.events.RequestReceived(stream_id=stream_id, headers=headers):
                assert stream_id is not None
                assert headers is not None
                self._request(stream_id, headers, event.stream_ended is not None, events)
            case h2.events.DataReceived(stream_id=stream_id):
                assert stream_id is not None
                self._data(stream_id, event, events)
            case h2.events.StreamEnded(stream_id=stream_id):
                assert stream_id is not None
                self._stream_ended(stream_id, events)
            case h2.events.TrailersReceived(stream_id=stream_id, headers=headers):
                # ASGI has no request trailers; the trailer section only
                # ends the body (h2 reports the end as StreamEnded too).
                assert stream_id is not None
                if rules.fields_fault(headers or (), trailers=True) is not None:
                    self._malformed(stream_id, events)
            case h2.events.StreamReset(stream_id=stream_id, error_code=code):
                assert stream_id is not None
                stream = self._streams.get(stream_id)
                if stream is not None and not stream.response_done:
                    self._spend(self._resets, "streams reset")
                self._gone(stream_id, int(code or 0), events)
            case h2.events.WindowUpdated():
                # A client that reads our DATA owes WINDOW_UPDATEs in step
                # with it, one for the stream and one for the connection
                # (RFC 9113 6.9); only those beyond that are a flood.
                if not self._flow.take_credit():
                    self._spend(self._control, "control frames")
            case h2.events.PriorityUpdated():
                self._spend(self._control, "control frames")
            case h2.events.PingReceived() | h2.events.PingAckReceived():
                self._spend(self._control, "control frames")
            case h2.events.RemoteSettingsChanged():
                self._spend(self._control, "control frames")
            case h2.events.SettingsAcknowledged():
                # One ACK is owed per SETTINGS we send; a flood of unsolicited
                # ones is a control frame flood like any other.
                self._spend(self._control, "control frames")
            case h2.events.ConnectionTerminated(error_code=code, last_stream_id=last):
                self._goaway_from_peer(int(code or 0), last, events)
            case h2.events.UnknownFrameReceived() | h2.events.AlternativeServiceAvailable():
                # RFC 9113 5.5: unknown frame types are ignored.
                self._spend(self._control, "control frames")
            case _:
                # Client-only events (responses, pushes) cannot reach a server.
                pass

    def _request(
        self, stream_id: int, raw: list[tuple[bytes, bytes]], ended: bool, events: list[Event]
    ) -> None:
        self._last_stream_id = max(self._last_stream_id, stream_id)
        fault, pseudo, headers, size = self._fields(raw)
        authority = pseudo.get(b":authority")
        method = pseudo.get(b":method", b"")
        stream = Stream(stream_id, method, authority or b"", request_done=ended)
        self._streams[stream_id] = stream
        if self._goaway_sent:
            # RFC 9113 6.8: streams opened after our GOAWAY are not processed.
            self._reset(stream_id, _E.REFUSED_STREAM)
            return
        if fault is not None:
            self._malformed(stream_id, events)
            return
        if len(self._active) >= self._config.h2_max_concurrent_streams:
            # h2 counts only streams open in the protocol; a reset stream's
            # app may still run. Refusing here keeps the apps bounded too.
            self._spend(self._resets, "streams reset")
            self._reset(stream_id, _E.REFUSED_STREAM)
            return
        if size > self._config.h2_max_header_list_size:
            # See __init__ for why a list over the limit gets this far.
            self._refuse(stream_id, 431, "request header fields too large")
            return
        request = self._check_request(stream_id, stream, pseudo, headers)
        if request is None:
            return
        self._active.add(stream_id)
        self._stillborn.announced(stream_id)
        events.append(request)  # h2 reports END_STREAM as its own event next

    def _fields(self, raw: list[tuple[bytes, bytes]]) -> _Fields:
        """A request's field section read by the rule book: (fault, pseudo-headers,
        headers, size), remembered for a small section, since most requests
        repeat the one before (a decoded block repeats its field objects, so
        the lookup hashes nothing anew)."""
        key = tuple(raw)
        fields = self._requests.get(key)
        if fields is None:
            size = rules.field_section_size(raw)
            pseudo, headers = rules.split_fields(raw)
            fields = (rules.fields_fault(raw), pseudo, tuple(headers), size)
            if size <= _MAX_CACHED_SECTION:
                if len(self._requests) >= _REQUEST_CACHE:
                    self._requests.clear()
                self._requests[key] = fields
        return fields

    def _malformed(self, stream_id: int, events: list[Event]) -> None:
        """RFC 9113 8.1.1: a malformed request is a stream error (PROTOCOL_ERROR).

        Like any reset the peer caused, it is budgeted (CVE-2025-8671).
        """
        self._spend(self._resets, "streams reset")
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, _E.PROTOCOL_ERROR)
        self._gone(stream_id, int(_E.PROTOCOL_ERROR), events)

    def _check_request(
        self,
        stream_id: int,
        stream: Stream,
        pseudo: dict[bytes, bytes],
        headers: Headers,
    ) -> RequestReceived | None:
        """The request event, or None once it has been answered here."""
        method = stream.method
        ws_request: WebSocketRequest | None = None
        if method == b"CONNECT":
            protocol = pseudo.get(b":protocol")
            if fault := rules.connect_fault(method, protocol, self._config.ws != "none"):
                self._refuse(stream_id, 501, fault)
                return None
            try:
                ws_request = websocket.read_connect_handshake(headers)
            except PeerProtocolError as exc:
                self._refuse(stream_id, exc.status_code, str(exc), websocket.refusal_headers(exc))
                return None
            stream.ws_request = ws_request
        if rules.declared_length_exceeds(headers, self._config.max_request_body_size):
            self._refuse(stream_id, 413, "request body too large")
            return None
        return RequestReceived(
            stream_id=stream_id,
            method=method,
            target=pseudo.get(b":path", b"/") if ws_request is None else pseudo[b":path"],
            http_version="2",
            headers=headers,
            # RFC 9110 10.1.1 holds on HTTP/2 too: the client may wait for a
            # 100 before it sends the body.
            expects_continue=not stream.request_done
            and any(
                name == b"expect" and value.lower() == b"100-continue" for name, value in headers
            ),
            websocket=ws_request,
            can_send_trailers=ws_request is None and rules.accepts_trailers(headers),
            can_push=ws_request is None and self._push_allowed,
            can_send_early_hints=ws_request is None,
        )

    def _data(self, stream_id: int, event: h2.events.DataReceived, events: list[Event]) -> None:
        data = bytes(event.data or b"")
        flow = event.flow_controlled_length or 0
        stream = self._streams.get(stream_id)
        if not data and not event.stream_ended:
            # An empty DATA frame carries nothing but work (CVE-2019-9518).
            self._spend(self._control, "empty DATA frames")
        if stream is None or stream.ended or stream_id not in self._active:
            # The exchange is gone: nobody will take these bytes, so they are
            # acknowledged now or the connection window would shrink for good.
            self._acknowledge(stream_id, flow)
            return
        # Padding is never handed to the app; it is acknowledged at once.
        self._acknowledge(stream_id, flow - len(data))
        if stream.websocket is not None:
            ws_events = stream.websocket.receive_data(data) if data else []
            if any(isinstance(event, MessageReceived) for event in ws_events):
                # Held back until the app takes its messages (acknowledge).
                stream.unacknowledged += len(data)
            else:
                # Part of a message still arriving: only more bytes can
                # complete it, so the window opens now, or a message larger
                # than the window would wait for itself. The frame layer
                # bounds what it holds (ws_max_message_size, then 1009).
                self._acknowledge(stream_id, len(data))
            events.extend(ws_events)
            # h2 has read the whole batch before we see its events: a
            # RST_STREAM later in it closed the stream already (its
            # StreamReset follows), and the answer (a pong, a close) is moot.
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                self._pump_websocket(stream_id, stream)
            return
        if stream.ws_request is not None:
            # Bytes before the handshake is accepted: a WebSocket client waits
            # for the 200 (RFC 8441 5), so these are dropped.
            self._acknowledge(stream_id, len(data))
            return
        stream.received += len(data)
        max_body = self._config.max_request_body_size
        if max_body is not None and stream.received > max_body:
            self._acknowledge(stream_id, len(data))
            self._refuse(stream_id, 413, "request body too large")
            self._lost(stream_id, int(_E.CANCEL), events)
            return
        if data:
            events.append(DataReceived(stream_id, data))

    def _stream_ended(self, stream_id: int, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended:
            return
        if not stream.request_done:  # not when END_STREAM came on the HEADERS
            stream.advance(StreamEvent.REQUEST_ENDED)
        if stream.websocket is not None:
            # RFC 8441: END_STREAM is the WebSocket's TCP FIN. Without a
            # finished closing handshake that is an abnormal end.
            if not stream.websocket.closed:
                stream.websocket.receive_data(b"")
                self._lost(stream_id, 0, events)
                # Nothing more can pass: the stream is reset now (else a DATA
                # frame after it would be reported reset a second time), and
                # like any reset the peer caused it is budgeted (CVE-2025-8671).
                self._spend(self._resets, "streams reset")
                self._reset(stream_id, _E.CANCEL)
                return
            self._settle(stream)
            return
        if stream_id in self._active:
            events.append(StreamEnded(stream_id))

    def _goaway_from_peer(self, code: int, last: int | None, events: list[Event]) -> None:
        self._goaway_received = True
        if code != 0:
            self.error = f"the client ended the connection with GOAWAY error {code}"
            self._closed = True
            return
        # A graceful GOAWAY (RFC 9113 6.8): the peer opens no more streams,
        # and those in flight still finish.
        reopen_after_graceful_goaway(self._h2)
        if not self._active:
            self._closed = True

    def _connection_lost(self) -> list[Event]:
        self._closed = True
        return [ConnectionClosed()]

    # -- budgets ---------------------------------------------------------------

    def _spend(self, budget: Budget, what: str) -> None:
        if budget.spend() or self._closed:
            return
        self.error = f"too many {what}: ended the connection with ENHANCE_YOUR_CALM"
        self._terminate(_E.ENHANCE_YOUR_CALM, what)

    def _terminate(self, code: h2.errors.ErrorCodes, reason: str) -> None:
        """End the connection with GOAWAY(code) now."""
        self._h2.close_connection(
            error_code=code,
            additional_data=reason.encode("ascii", "replace")[:64],
            last_stream_id=self._last_stream_id,
        )
        self._closed = True
        self._goaway_sent = True

    # -- commands in, bytes out ----------------------------------------------

    def handle(self, command: Command) -> None:
        """Turn a command into frames; raises ClientDisconnected once the stream is gone."""
        stream = self._streams.get(command.stream_id)
        if self._closed or stream is None or stream.ended:
            raise ClientDisconnected("the stream is closed")
        try:
            self._handle(command, stream)
        except h2.exceptions.StreamClosedError:
            self._gone(command.stream_id, int(_E.STREAM_CLOSED), self._pending)
            raise ClientDisconnected("the client closed the stream") from None
        except h2.exceptions.ProtocolError as exc:
            # h2 refused what the app asked for (an invalid header ...): the
            # client gets a 500 if no byte of the response went out yet,
            # else the stream is reset.
            self._app_failed(command.stream_id, stream)
            raise AppProtocolError(f"invalid response: {rules.short_reason(exc)}") from None
        finally:
            self._collect()

    def _handle(self, command: Command, stream: Stream) -> None:
        stream_id = command.stream_id
        if stream.websocket is not None:
            if not isinstance(command, (SendMessage, SendPing, CloseWebSocket)):
                raise AppProtocolError(f"{type(command).__name__} on a WebSocket stream")
            stream.websocket.handle(command)
            self._pump_websocket(stream_id, stream)
            return
        match command:
            case SendInformational(status_code=status_code, headers=headers):
                self._h2.send_headers(
                    stream_id,
                    [(b":status", str(status_code).encode()), *_response_fields(headers)],
                )
            case StartResponse(status_code=status_code, headers=headers):
                stream.advance(StreamEvent.RESPONSE_STARTED)
                stream.body_allowed = rules.response_allows_body(stream.method, status_code)
                # Held until the first body chunk, so an empty body ends the
                # stream on the HEADERS frame itself.
                stream.head = self._head(status_code, headers)
            case SendData(data=data, end_stream=end_stream):
                self._send_head(stream, end_stream=end_stream and not data)
                if data and stream.body_allowed:
                    stream.held.append(data)
                if end_stream and not stream.response_done:
                    stream.advance(StreamEvent.RESPONSE_ENDING)
                self._let_out_stream(stream)
            case SendTrailers(headers=headers):
                self._send_head(stream, end_stream=False)
                stream.held_trailers = tuple(_response_fields(headers))
                stream.advance(StreamEvent.RESPONSE_ENDING)
                self._let_out_stream(stream)
            case PushPromise(path=path, headers=headers):
                self._push(stream_id, path, headers)
            case AcceptWebSocket():
                self._accept_websocket(stream_id, stream, command)
            case SendMessage() | SendPing() | CloseWebSocket():
                raise AppProtocolError("the WebSocket handshake is not complete")
            case _:
                assert_never(command)

    def _send_head(self, stream: Stream, *, end_stream: bool) -> None:
        """Send the held response head; with ``end_stream`` it is the whole response."""
        if stream.head is None:
            return
        head, stream.head = stream.head, None
        self._h2.send_headers(stream.stream_id, list(head), end_stream=end_stream)
        if end_stream:
            stream.advance(StreamEvent.RESPONSE_ENDING)
            stream.advance(StreamEvent.RESPONSE_ENDED)
            self._settle(stream)

    def _head(self, status_code: int, headers: Headers) -> Headers:
        """A response head's fields, remembered: most answers repeat the last ones."""
        defaults = self._default_headers()
        key = (status_code, headers, defaults)
        try:
            head = self._heads.get(key)
        except TypeError:  # unhashable headers (not from the ASGI cycle)
            return ((b":status", str(status_code).encode()), *self._response_headers(headers))
        if head is None:
            head = (
                (b":status", str(status_code).encode()),
                *self._response_headers(headers, defaults),
            )
            if len(self._heads) >= _HEAD_CACHE:
                self._heads.clear()
            self._heads[key] = head
        return head

    def _response_headers(
        self, headers: Headers, defaults: Headers | None = None
    ) -> list[tuple[bytes, bytes]]:
        result = _response_fields(headers)
        present = {name for name, _ in result}
        if defaults is None:
            defaults = self._default_headers()
        result.extend((name, value) for name, value in defaults if name not in present)
        return result

    def _accept_websocket(self, stream_id: int, stream: Stream, command: AcceptWebSocket) -> None:
        request = stream.ws_request
        if request is None:
            raise AppProtocolError("not a WebSocket handshake")
        headers, guard = websocket.accept_handshake(
            request,
            command.subprotocol,
            per_message_deflate=self._config.ws_per_message_deflate,
            max_message_size=self._config.ws_max_message_size,
        )
        # RFC 8441 5: a 2xx answer to the extended CONNECT opens the WebSocket.
        self._h2.send_headers(
            stream_id,
            [(b":status", b"200"), *self._response_headers((*headers, *command.headers))],
        )
        stream.advance(StreamEvent.RESPONSE_STARTED)
        stream.websocket = websocket.WebSocketProtocol(stream_id, guard)

    def _push(self, stream_id: int, path: bytes, headers: Headers) -> None:
        parent = self._streams[stream_id]
        if not self._push_allowed or not path.startswith(b"/"):
            return  # ASGI: a push the connection cannot make is not made
        authority = parent.authority
        clean: list[tuple[bytes, bytes]] = []
        for name, value in _response_fields(headers):
            if name == b"host":
                authority = value
            else:
                clean.append((name, value))
        promised_id = self._h2.get_next_available_stream_id()
        # RFC 9113 8.4.1: a promised request is safe and cacheable, and
        # carries the parent's authority unless the app names another.
        request_headers = [
            (b":method", b"GET"),
            (b":scheme", self._scheme),
            (b":path", path),
            (b":authority", authority),
            *clean,
        ]
        try:
            self._h2.push_stream(stream_id, promised_id, request_headers)
        except h2.exceptions.ProtocolError:
            return  # the peer's limits or the stream's state forbid it now
        self._streams[promised_id] = Stream(promised_id, b"GET", authority, request_done=True)
        self._active.add(promised_id)
        self._pending.append(
            RequestReceived(
                stream_id=promised_id,
                method=b"GET",
                target=path,
                http_version="2",
                headers=((b"host", authority), *clean),
            )
        )
        self._pending.append(StreamEnded(promised_id))

    # -- flow control ------------------------------------------------------------

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app took ``size`` bytes of the stream's request body: open the window again."""
        stream = self._streams.get(stream_id)
        if stream is not None and stream.websocket is not None:
            size, stream.unacknowledged = stream.unacknowledged, 0
        self._acknowledge(stream_id, size)
        self._collect()

    def _acknowledge(self, stream_id: int, size: int) -> None:
        if size <= 0 or self._closed:
            return
        try:
            self._h2.acknowledge_received_data(size, stream_id)
        except h2.exceptions.StreamClosedError:
            # The stream closed meanwhile: h2 still credits the connection.
            pass
        except h2.exceptions.ProtocolError:
            pass

    def _let_out(self) -> list[Event]:
        """Send what the windows admit now; a WindowOpened for each stream drained."""
        opened: list[Event] = []
        for stream in self._flow.let_out(list(self._streams.values())):
            opened.append(WindowOpened(stream.stream_id))
            self._settle(stream)
        return opened

    def _let_out_stream(self, stream: Stream) -> None:
        self._flow.let_out_stream(stream)
        self._settle(stream)

    def _pump_websocket(self, stream_id: int, stream: Stream) -> None:
        """Move the frame layer's bytes into DATA frames; END_STREAM once it closed."""
        ws = stream.websocket
        assert ws is not None
        if ws.output_size:
            stream.held.append(ws.data_to_send())
        if ws.closed and not stream.response_done:
            # RFC 8441 5: after the closing handshake the stream is ended
            # with END_STREAM, the equivalent of TCP's FIN.
            stream.advance(StreamEvent.RESPONSE_ENDING)
        self._let_out_stream(stream)

    # -- stream ends -------------------------------------------------------------

    def exchange_finished(self, stream_id: int) -> list[Event]:
        """The app task for the stream ended. Whatever is still open is closed.

        A response the app left unfinished is reset (INTERNAL_ERROR); a
        complete response whose request body is still arriving is followed
        by RST_STREAM(NO_ERROR), RFC 9113 8.1, so the client stops sending.
        """
        self._active.discard(stream_id)
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.ended and not self._closed:
            if not stream.response_done:
                self._reset(stream_id, _E.INTERNAL_ERROR)
            elif not stream.request_done and not stream.holds_output:
                self._reset(stream_id, _E.NO_ERROR)
        if stream is not None and stream.ended:
            self._streams.pop(stream_id, None)
        if self.draining and not self._active:
            self._closed = self._closed or not self._h2_busy()
        self._collect()
        return []

    def _h2_busy(self) -> bool:
        return any(stream.held for stream in self._streams.values())

    def reset_stream(self, stream_id: int) -> None:
        """Give up on one stream (a dead WebSocket peer, an app that broke its response)."""
        stream = self._streams.get(stream_id)
        if stream is not None and not stream.ended and not self._closed:
            self._reset(stream_id, _E.CANCEL if stream.websocket else _E.INTERNAL_ERROR)
            self._collect()

    def _app_failed(self, stream_id: int, stream: Stream) -> None:
        if stream.head is not None or not stream.response_started:
            stream.head = None
            self._refuse(stream_id, 500, "the application sent an invalid response")
        else:
            self._reset(stream_id, _E.INTERNAL_ERROR)

    def _refuse(self, stream_id: int, status: int, reason: str, headers: Headers = ()) -> None:
        """Answer a request here, without the app, and close the stream."""
        stream = self._streams.get(stream_id)
        head, body = rules.refusal(status, reason)
        try:
            self._h2.send_headers(
                stream_id,
                [
                    (b":status", str(status).encode()),
                    *head,
                    *_response_fields(headers),
                    *self._default_headers(),
                ],
            )
            self._h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.ProtocolError:
            self._reset(stream_id, _E.INTERNAL_ERROR)
            return
        if stream is not None:
            if not stream.response_started:
                stream.advance(StreamEvent.RESPONSE_STARTED)
            stream.advance(StreamEvent.RESPONSE_ENDING)
            stream.advance(StreamEvent.RESPONSE_ENDED)
            if not stream.request_done:
                # The rest of the request is of no use (RFC 9113 8.1).
                self._reset(stream_id, _E.NO_ERROR)
            else:
                self._settle(stream)

    def _reset(self, stream_id: int, code: h2.errors.ErrorCodes) -> None:
        with contextlib.suppress(h2.exceptions.ProtocolError):
            self._h2.reset_stream(stream_id, code)  # unless h2 closed it already
        stream = self._streams.get(stream_id)
        if stream is not None:
            stream.advance(StreamEvent.RESET)
            self._settle(stream)

    def _gone(self, stream_id: int, code: int, events: list[Event]) -> None:
        stream = self._streams.get(stream_id)
        if stream is None or stream.ended:
            return
        stream.advance(StreamEvent.RESET)
        self._settle(stream)
        self._lost(stream_id, code, events)

    def _lost(self, stream_id: int, code: int, events: list[Event]) -> None:
        """Tell the stream's exchange its stream is gone; or, if its request is
        still in this read's events, see that no exchange ever starts."""
        if self._stillborn.lost(stream_id):
            # It stops counting against the concurrency limit now, and
            # _drop_stillborn takes its events out.
            self._active.discard(stream_id)
            if (stream := self._streams.get(stream_id)) is not None:
                self._settle(stream)
        elif stream_id in self._active:
            events.append(StreamReset(stream_id, code))

    def _settle(self, stream: Stream) -> None:
        """Forget a closed stream once no exchange runs for it."""
        if stream.ended and stream.stream_id not in self._active:
            self._streams.pop(stream.stream_id, None)

    # -- shutdown ----------------------------------------------------------------

    def start_shutdown(self) -> None:
        """Graceful GOAWAY (RFC 9113 6.8): no new streams; those in flight finish.

        Sent by hand rather than with h2's close_connection, which would
        stop h2 from carrying the in-flight streams' responses.
        """
        if self._goaway_sent or self._closed:
            return
        self._goaway_sent = True
        self._collect()
        self._out += graceful_goaway(self._h2)
        if not self._active:
            self._closed = True

    # -- output --------------------------------------------------------------------

    def _collect(self) -> None:
        data = self._h2.data_to_send()
        if data:
            self._out += data

    @property
    def has_output(self) -> bool:
        return self.output_size > 0

    @property
    def output_size(self) -> int:
        return len(self._out)

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer, emptied on each call."""
        self._collect()
        data = bytes(self._out)
        self._out.clear()
        return data


#: A request field section as the rule book reads it (see HTTP2Protocol._fields).
_Fields = tuple[str | None, dict[bytes, bytes], Headers, int]
#: Request field sections a connection remembers, and the largest one (by
#: RFC 9113's count): a peer sending every one different makes us hold a few KiB.
_REQUEST_CACHE: Final = 4
_MAX_CACHED_SECTION: Final = 2048
#: Response heads a connection remembers (see HTTP2Protocol._head).
_HEAD_CACHE: Final = 16
#: Fields kept out of the HPACK tables (RFC 7541 7.1.3), as h2 keeps them.
_NEVER_INDEXED: Final = frozenset({b"authorization", b"proxy-authorization"})


def _response_fields(headers: Headers) -> list[tuple[bytes, bytes]]:
    """The rule book's response fields, as h2 would have normalised them.

    h2's own normalisation is off (it is slow): names and values are
    stripped of surrounding whitespace (RFC 9113 8.2.1), and credentials
    (and a short cookie, easily guessed) are never indexed, so that HPACK
    cannot leak them (RFC 7541 7.1).
    """
    result = rules.response_fields(headers)
    for index, (name, value) in enumerate(result):
        stripped = (name.strip(), value.strip())
        if stripped[0] in _NEVER_INDEXED or (stripped[0] == b"cookie" and len(stripped[1]) < 20):
            result[index] = NeverIndexedHeaderTuple(*stripped)
        elif stripped != (name, value):
            result[index] = stripped
    return result


def _no_clock() -> float:
    """Without a clock the budgets never refill: each is a plain count."""
    return 0.0
