"""HTTP/1.1 as a sans-IO state machine over h11 (or httptools, answering as h11 does).

Bytes in -> events out (``receive_data``), commands in (``handle``) -> bytes
out (``data_to_send``). No clock, no sockets: the runtime owns those.
"""

from __future__ import annotations

from collections.abc import Callable
from collections.abc import Set as AbstractSet
from typing import ClassVar, Final, assert_never

import h11

from ..config import Config
from ..errors import AppProtocolError, ClientDisconnected, PeerProtocolError
from . import http1_wire, rules, websocket
from .events import (
    AcceptWebSocket,
    CloseWebSocket,
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    Headers,
    HTTP2PrefaceReceived,
    MessageReceived,
    PushPromise,
    RequestReceived,
    RequestRejected,
    SendData,
    SendInformational,
    SendMessage,
    SendPing,
    SendTrailers,
    StartResponse,
    StreamEnded,
    WebSocketRequest,
)
from .http1_wire import RequestHead
from .http2 import PREFACE
from .interface import Phase

__all__ = ["HTTP1Protocol"]

#: HTTP/1.1 has one exchange at a time; it still gets a stream id so the
#: layers above can treat HTTP/1.1 and HTTP/2 alike.
STREAM_ID: Final = 1

#: How much of a request's start is kept to read its request line.
_LINE_START: Final = 512

#: The largest request body read ahead of an ``Upgrade: h2c`` switch.
H2C_BODY_LIMIT: Final = 64 * 1024

#: Bytes of pipelined requests we hold while the current response is still
#: being written. Past this the runtime stops reading (``wants_data``).
_PIPELINE_BUFFER: Final = 64 * 1024

#: Request body bytes handed to the app and not yet taken by it, past which
#: the runtime stops reading: HTTP/1.1's flow-control window.
_BODY_BUFFER: Final = 64 * 1024

HeaderSource = Callable[[], Headers]

#: Request headers that call for a check or a decision beyond the plain case
#: (body framing, upgrades, 100-continue, trailers).
_NOTED: Final = frozenset({b"content-length", b"transfer-encoding", b"upgrade", b"expect", b"te"})
_NOTHING_NOTED: Final[frozenset[bytes]] = frozenset()

_DONE: Final = h11.DONE

#: The end of a body-less request's (non-)body: one serves every request.
_ENDED: Final = StreamEnded(STREAM_ID)

_UPGRADE_HEADERS: Final = ((b"upgrade", b"websocket"), (b"connection", b"Upgrade"))

_RESPONSE_HEAD_SENT: Final = frozenset({h11.SEND_BODY, h11.DONE, h11.MUST_CLOSE, h11.CLOSED})

#: Client states in which the request has been read in full. An Upgrade
#: request leaves h11 in a switch state rather than DONE; its body is
#: complete all the same, and bytes after it must be bounded like any other.
_REQUEST_COMPLETE: Final = frozenset(
    {
        h11.DONE,
        h11.MUST_CLOSE,
        h11.CLOSED,
        # h11 exports these states but leaves MIGHT_SWITCH_PROTOCOL out of __all__.
        h11.MIGHT_SWITCH_PROTOCOL,  # type: ignore[attr-defined]
        h11.SWITCHED_PROTOCOL,
    }
)


def error_response(
    status_code: int, reason: str, default_headers: Headers, extra_headers: Headers = ()
) -> bytes:
    """A complete ``Connection: close`` response for a request we refuse.

    Written by hand rather than through h11 because h11 may already be in its
    ERROR state, and this answer must go out regardless.
    """
    headers, body = rules.refusal(status_code, reason)
    head = [b"HTTP/1.1 %d %s" % (status_code, rules.status_phrase(status_code))]
    head.extend(
        name + b": " + value
        for name, value in (*headers, (b"connection", b"close"), *extra_headers, *default_headers)
    )
    return b"\r\n".join(head) + b"\r\n\r\n" + body


class HTTP1Protocol:
    """One HTTP/1.1 server connection.

    ``default_headers`` returns the headers the server adds to every response
    that lacks them (``date``, ``server``); it is a callable so the runtime
    owns the clock.
    """

    label: ClassVar[str] = "http1"

    def __init__(
        self,
        config: Config,
        default_headers: HeaderSource = tuple,
        *,
        h2c_upgrade: bool = False,
        h2c_prior_knowledge: bool = False,
    ) -> None:
        #: Which parser reads requests (``http1_parser``; auto resolved).
        self._parser = http1_wire.resolve(config.http1_parser)
        self._wire = http1_wire.new_wire(self._parser, config.h11_max_incomplete_size)
        #: The wire reads a plain request, and writes a plain response head,
        #: in one step (see HttptoolsWire.plain_request, plain_response).
        self._plain = self._parser == "httptools"
        self._max_body = config.max_request_body_size
        self._max_head = config.h11_max_incomplete_size
        self._default_headers = default_headers
        #: The bytes waiting for data_to_send, kept as the pieces they came
        #: in: joined once when taken (a bytearray grown by += and copied out
        #: cost a 1 MiB body two copies), not at all when there is one piece.
        self._out: list[bytes] = []
        self._out_size = 0
        self._closed = False
        self._keep_alive = True
        self._config = config
        # After a WebSocket upgrade the connection carries frames: this
        # protocol hands bytes and commands to the frame layer from then on.
        self._ws: websocket.WebSocketProtocol | None = None
        #: The connection switched to WebSocket (``_ws`` is set).
        self.upgraded = False
        self._ws_held = b""
        self._ws_request: WebSocketRequest | None = None
        # Per-cycle state, reset by start_next_cycle.
        self._head_handed_out = False
        self._method = b""
        self._body_received = 0
        self._body_allowed = True
        self._chunked = False
        #: The request body comes in chunks (Transfer-Encoding: chunked).
        self._chunked_request = False
        #: ``Upgrade: h2c`` is honoured (cleartext, HTTP/2 and the upgrade on).
        self._h2c_allowed = h2c_upgrade
        self._h2c: tuple[RequestReceived, bytes] | None = None
        self._h2c_body = bytearray()
        #: The first bytes of the current request, to tell a malformed
        #: HTTP/1.x request line from a peer speaking something else.
        self._line_start = b""
        #: The connection's first bytes while they may still be the HTTP/2
        #: preface (prior knowledge on a port that also serves HTTP/1.1).
        self._sniffed: bytearray | None = bytearray() if h2c_prior_knowledge else None
        #: An exchange (app task) serves the current request.
        self._in_flight = False
        #: Some request has been received: between requests is now idleness.
        self._served = False
        #: Body bytes delivered to the exchange and not yet acknowledged.
        self._unacknowledged = 0
        #: WebSocket messages were delivered and the app has not caught up.
        self._ws_lagging = False
        #: The framing that follows body bytes written out of band.
        self._after_file = b""
        #: Why the connection ended on our side, for the log.
        self.error: str | None = None

    # -- state the runtime reads ---------------------------------------------

    @property
    def closed(self) -> bool:
        """True once the connection can carry nothing more."""
        return self._closed or (self._ws is not None and self._ws.closed)

    @property
    def closing(self) -> bool:
        """A WebSocket close frame went out and the peer's answer is awaited."""
        return self._ws is not None and self._ws.closing

    @property
    def request_complete(self) -> bool:
        """The current request's body has been received in full."""
        return self._wire.their_state in _REQUEST_COMPLETE

    @property
    def response_complete(self) -> bool:
        return self._wire.our_state in (h11.DONE, h11.MUST_CLOSE, h11.CLOSED)

    @property
    def response_started(self) -> bool:
        return (
            self._wire.our_state is not h11.SEND_RESPONSE and self._wire.our_state is not h11.IDLE
        )

    @property
    def awaiting_request(self) -> bool:
        """No request is being processed: between requests, perhaps mid-head."""
        return self._wire.their_state is h11.IDLE

    @property
    def idle(self) -> bool:
        """Between requests, with no byte of the next one received yet."""
        return self._wire.their_state is h11.IDLE and not self._wire.buffered

    @property
    def keep_alive(self) -> bool:
        """The response is complete and allows another request on this connection."""
        return not self._closed and self._keep_alive and self._wire.our_state is h11.DONE

    @property
    def reusable(self) -> bool:
        """Both sides finished and the connection may carry another request."""
        return self.keep_alive and self._wire.their_state is h11.DONE

    @property
    def wants_data(self) -> bool:
        """False while the app lags or enough pipelined bytes are held: stop reading."""
        if self._ws is not None:
            return not self.closed and not self._ws_lagging
        if self._closed or self._unacknowledged >= _BODY_BUFFER:
            return False
        if self._wire.their_state not in _REQUEST_COMPLETE:
            return True  # what is buffered is this request's own
        return self._wire.buffered < _PIPELINE_BUFFER

    @property
    def drain_on_close(self) -> bool:
        """A request was cut short (refused, or its body unread) or a WebSocket
        ended without its closing handshake: the client may still be sending.

        Between requests, or after a request read in full, nothing is owed.
        """
        if self._ws is not None:
            return not self._ws.closed
        their_state = self._wire.their_state
        return their_state is not h11.IDLE and their_state not in _REQUEST_COMPLETE

    @property
    def phase(self) -> Phase:
        if self._in_flight and self._ws is None:
            return Phase.BUSY
        if self._ws is not None:
            # Once the app is done with an open WebSocket, or our close
            # frame is out, the peer's closing handshake has a deadline.
            return Phase.CLOSING if self._ws.closing or not self._in_flight else Phase.BUSY
        if self._in_flight:
            return Phase.BUSY
        wire = self._wire
        if self._served and wire.their_state is h11.IDLE and not wire.buffered:
            return Phase.IDLE  # idle: between requests, nothing of the next one yet
        # A head has begun, or a new connection has yet to send its first:
        # either way the client owes a request head, on one deadline.
        return Phase.HEAD

    def held(self, stream_id: int) -> bool:
        """HTTP/1.1 has no window: a write waits for the transport only."""
        return False

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app took ``size`` body bytes (or caught up with its WebSocket messages)."""
        if self._ws is not None:
            self._ws_lagging = False
        else:
            self._unacknowledged = max(0, self._unacknowledged - size)

    def exchange_finished(self, stream_id: int) -> list[Event]:
        """The app task ended: start the next request, drain the body, or close.

        Returns the events of a request that was pipelined behind this one.
        """
        self._in_flight = False
        self._unacknowledged = 0
        if self._closed or self._ws is not None:
            return []
        keep_alive = self._keep_alive and self._wire.our_state is h11.DONE
        if keep_alive and self._wire.their_state is h11.DONE:  # reusable
            return self.start_next_cycle()
        if not keep_alive:
            # Nothing more can be said on this connection.
            self._closed = True
        # else: the response is done and the request body still arriving;
        # it is read and dropped, then the next request may come.
        return []

    def reset_stream(self, stream_id: int) -> None:
        """Give up on the connection (a dead WebSocket peer, a half-sent denial)."""
        self._closed = True

    def start_shutdown(self) -> None:
        """Answer the request in flight with ``Connection: close``; close if none is.

        A half-received head is dropped: the client cannot know it was seen
        and will retry.
        """
        self._keep_alive = False
        if self._ws is None and not self._in_flight and self.awaiting_request:
            self._closed = True

    def timed_out(self) -> str:
        """The phase's timeout passed: 408 for a started head, else just close."""
        if self._ws is not None:
            self._closed = True
            return "the WebSocket peer did not answer our close in time"
        if self.idle:
            self._closed = True
            return "closing an idle connection"
        self.request_timed_out()
        return "request head not received in time; answered 408"

    def stop_keep_alive(self) -> None:
        """Answer the current request (if any) with ``Connection: close`` and stop."""
        self._keep_alive = False

    # -- bytes in ------------------------------------------------------------

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        if self._plain and self._sniffed is None and not self._closed and self._ws is None and data:
            # Most reads: a whole plain head (and its body, if it has one
            # within bounds), or the next bytes of that body. None of the
            # checks below applies to them (see HttptoolsWire.plain_request).
            if self._in_flight:
                if (taken := self._wire.plain_body(data)) is not None:
                    return self._plain_body(taken[0], taken[1])
            elif (plain := self._wire.plain_request(data, self._max_body)) is not None:
                head, rest = plain
                self._method = head.method
                self._in_flight = self._served = True
                request = RequestReceived(
                    STREAM_ID,
                    head.method,
                    head.target,
                    "1.1",
                    head.headers,
                    expects_continue=False,
                    websocket=None,
                    can_send_trailers=False,
                    can_send_early_hints=True,
                )
                if rest or self._wire.their_state is not _DONE:
                    return self._plain_rest(request, rest)
                return [request, _ENDED]  # a GET alone: most reads
        if self._sniffed is not None:
            return self._sniff(data)
        if self._closed:
            return []
        if self._ws is not None:
            return self._ws_events(self.pending_events() + self._ws.receive_data(data))
        return self._receive(data)

    def _plain_rest(self, request: RequestReceived, rest: bytes) -> list[Event]:
        """The events of a plain request (see receive_data) with a body, or with
        bytes after its head: its body's, or a pipelined request's."""
        if self._wire.their_state is _DONE:
            self._wire.receive_data(rest)  # the next cycle's
            return [request, _ENDED]
        if not rest:
            return [request]
        taken = self._wire.plain_body(rest)
        assert taken is not None, "nothing is buffered before the bytes behind a plain head"
        return [request, *self._plain_body(taken[0], taken[1])]

    def _plain_body(self, body: bytes, ended: bool) -> list[Event]:
        """The events of a plain request's body bytes: its bound was checked from its length."""
        size = len(body)
        self._body_received += size
        self._unacknowledged += size
        if not size:
            return [_ENDED] if ended else []
        data = DataReceived(STREAM_ID, body)
        return [data, _ENDED] if ended else [data]

    def _sniff(self, data: bytes) -> list[Event]:
        """Hold the first bytes until they tell the HTTP/2 preface from HTTP/1.x."""
        assert self._sniffed is not None
        self._sniffed += data
        sniffed = bytes(self._sniffed)
        if data and len(sniffed) < len(PREFACE) and PREFACE.startswith(sniffed):
            return []
        self._sniffed = None
        if sniffed.startswith(PREFACE):
            self._closed = True
            return [HTTP2PrefaceReceived(sniffed)]
        events = self._receive(sniffed) if sniffed else []
        if not data:
            events += self.receive_data(b"")
        return events

    def _ws_events(self, events: list[Event]) -> list[Event]:
        if any(isinstance(event, MessageReceived) for event in events):
            # Until the runtime says the app keeps up (acknowledge).
            self._ws_lagging = True
        return events

    def _receive(self, data: bytes) -> list[Event]:
        if self._wire.their_state is h11.MUST_CLOSE and data:
            return []  # RFC 9112 9.6: no further requests are processed
        if data and self.idle:
            data = data.lstrip(b"\r\n")  # RFC 9112 2.2
            if not data:
                return []
        if not self._method and len(self._line_start) < _LINE_START:
            self._line_start += data[: _LINE_START - len(self._line_start)]
        try:
            self._wire.receive_data(data)
        except RuntimeError:
            # h11 refuses data after the peer closed; the connection is over.
            return self._close_event()
        return self._events()

    def pending_events(self) -> list[Event]:
        """Events from bytes that arrived before the switch to WebSocket."""
        held, self._ws_held = self._ws_held, b""
        if self._ws is None or not held:
            return []
        return self._ws_events(self._ws.receive_data(held))

    def start_next_cycle(self) -> list[Event]:
        """Begin the next request on a kept-alive connection; returns buffered events."""
        if not self._next_cycle() and not self._wire.peer_closed:
            return []  # nothing pipelined: the next request's bytes are still to come
        return self._events()

    def _next_cycle(self) -> int:
        """The wire's next cycle, and this protocol's; how many bytes are buffered."""
        self._wire.start_next_cycle()
        buffered = self._wire.buffered
        if buffered:
            leftover, eof = self._wire.trailing_data
        else:
            leftover, eof = b"", False  # eof alone needs no fresh parser
        if leftover[:1] in (b"\r", b"\n"):
            # RFC 9112 2.2: ignore empty lines before a request line. h11
            # cannot drop bytes it holds, so a fresh parser takes the rest.
            self._wire = http1_wire.new_wire(self._parser, self._max_head)
            if leftover := bytes(leftover).lstrip(b"\r\n"):
                self._wire.receive_data(leftover)
            if eof:
                self._wire.receive_data(b"")
            buffered = self._wire.buffered
        self._head_handed_out = False
        self._method = b""
        self._body_received = 0
        self._body_allowed = True
        self._chunked = False
        self._chunked_request = False
        self._ws_request = None
        # (_h2c_body needs no reset: a request that sets _h2c ends the
        # protocol, by the switch or by an error, never in a next cycle.)
        self._h2c = None
        self._line_start = bytes(leftover[:_LINE_START]) if buffered else b""
        self._in_flight = False
        self._unacknowledged = 0
        return buffered

    def _events(self) -> list[Event]:
        events: list[Event] = []
        self._parse(events)
        return _merge_body(events)

    def _parse(self, events: list[Event]) -> None:
        wire = self._wire
        while True:
            if wire.their_state is h11.MUST_CLOSE:
                if wire.peer_closed:
                    events.extend(self._close_event())
                return
            if self._max_body is not None:
                wire.chunk_run_limit = self._max_body - self._body_received
            try:
                event = wire.next_event()
            except h11.RemoteProtocolError as exc:
                if not self._speaks_http1():
                    # Not an HTTP/1.x request line at all (no HTTP-version):
                    # such a peer cannot read an HTTP/1.1 answer. Most often
                    # it is an HTTP/2 client with a broken preface, for which
                    # closing is the answer RFC 9113 3.4 allows.
                    self._closed = True
                    events.append(RequestRejected(400, "not an HTTP/1.x request"))
                    return
                status = self._status_for(exc)
                reason = {
                    414: "request line too long",
                    431: "request header block too large",
                }.get(status) or rules.parse_fault(str(exc))
                events.append(self._reject(status, reason, detail=rules.short_reason(exc)))
                return
            # Dispatch on the exact type: h11's events are ABCs, whose
            # isinstance checks (a match statement's class patterns) cost.
            kind = type(event)
            if kind is RequestHead:
                assert isinstance(event, RequestHead)
                if not self._request(event, events):
                    return
            elif kind is h11.Data:
                assert isinstance(event, h11.Data)
                if self._h2c is not None:
                    self._h2c_body += event.data
                    continue
                self._body_received += len(event.data)
                if (rejected := self._body_fault()) is not None:
                    events.append(rejected)
                    return
                if self._in_flight:
                    self._unacknowledged += len(event.data)
                    events.append(DataReceived(STREAM_ID, bytes(event.data)))
                # else the app is done with this request: its body is dropped.
            elif kind is h11.EndOfMessage:
                if self._h2c is not None:
                    request, settings = self._h2c
                    data = self._accept_h2c()
                    events.append(
                        H2CUpgradeRequested(request, settings, bytes(self._h2c_body), data)
                    )
                    return
                if self._in_flight:
                    events.append(StreamEnded(STREAM_ID))
                    if not wire.buffered and not wire.peer_closed:
                        return  # the request is complete and nothing follows yet
                else:
                    # The body of a request already answered is drained.
                    if not self.reusable:
                        self._closed = True
                        return
                    self._next_cycle()
                    wire = self._wire  # a fresh one, when empty lines led the rest
            elif kind is h11.ConnectionClosed:
                events.extend(self._close_event())
                return
            elif (
                event is h11.PAUSED
                and wire.peer_closed
                and wire.their_state is h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]
            ):
                # An Upgrade request waits for our answer, and h11 reports
                # PAUSED there even once the peer has closed: the client
                # that would have switched protocols is gone.
                events.extend(self._close_event())
                return
            else:
                # NEED_DATA or PAUSED: nothing more until bytes arrive or
                # the next cycle starts. A chunk header may have been
                # read without any of its bytes: judge its size now.
                if self._chunked_request and (rejected := self._body_fault()) is not None:
                    events.append(rejected)
                return

    def _request(self, head: RequestHead, events: list[Event]) -> bool:
        """A request head arrived: its event, or its refusal (False: parse no further)."""
        noted = self._check_request(head, events)
        if noted is None:
            return False
        headers = head.headers
        target = head.target
        if target[:1] != b"/":
            try:
                if (host := rules.absolute_form_host(target)) is not None:
                    headers = rules.with_host(headers, host)
            except ValueError as exc:
                events.append(self._reject(400, str(exc)))
                return False
        http_version = "1.1" if head.http_version == b"1.1" else "1.0"
        upgrade = b"upgrade" in noted
        if upgrade and self._config.ws != "none" and websocket.is_websocket_upgrade(headers):
            try:
                self._ws_request = websocket.read_handshake(head.method, http_version, headers)
            except PeerProtocolError as exc:
                events.append(
                    self._reject(exc.status_code, str(exc), websocket.refusal_headers(exc))
                )
                return False
        plain = http_version == "1.1" and self._ws_request is None
        request = RequestReceived(
            stream_id=STREAM_ID,
            method=head.method,
            target=target,
            http_version=http_version,
            headers=headers,
            expects_continue=b"expect" in noted and self._wire.they_are_waiting_for_100_continue,
            websocket=self._ws_request,
            # Trailers need a chunked body and a client that asked for them
            # (ASGI trailers extension).
            can_send_trailers=plain and b"te" in noted and rules.accepts_trailers(headers),
            can_send_early_hints=plain,
        )
        settings = self._h2c_settings(request) if upgrade else None
        if settings is not None:
            # Read the body first: the answer comes as HTTP/2.
            self._h2c = (request, settings)
        else:
            self._in_flight = self._served = True
            events.append(request)
        return True

    def _body_fault(self) -> RequestRejected | None:
        """Refuse a body that is, or has announced that it will be, too large.

        A chunked body announces each chunk's size before its bytes: a chunk
        past the limit is refused then, not after it has been read.
        """
        expected = self._wire.chunk_bytes_expected() if self._chunked_request else 0
        if (fault := rules.chunk_fault(expected)) is not None:
            return self._reject(400, fault)
        if self._max_body is not None and self._body_received + expected > self._max_body:
            return self._reject(413, "request body too large")
        return None

    def _speaks_http1(self) -> bool:
        """The request line so far carries an HTTP-version (or is still incomplete)."""
        if self._method or self._head_handed_out:
            return True  # this cycle's request line parsed; the error is later on
        line, newline, _ = self._line_start.partition(b"\n")
        return not newline or b" HTTP/" in line

    def _h2c_settings(self, request: RequestReceived) -> bytes | None:
        """The HTTP2-Settings of a request that may switch to h2c, else None.

        RFC 7540 3.2: the request names ``h2c`` in Upgrade, ``HTTP2-Settings``
        in Connection, and carries exactly one HTTP2-Settings header. Its body
        is read before switching, so only a body of known, bounded size
        qualifies; any other such request is served over HTTP/1.1, which RFC
        7540 allows (the upgrade is a proposal).
        """
        if not self._h2c_allowed or request.websocket is not None:
            return None
        headers = request.headers
        if "h2c" not in (t.lower() for t in rules.header_tokens(headers, b"upgrade")):
            return None  # the common case: asked for nothing, so looked no further
        connection = [t.lower() for t in rules.header_tokens(headers, b"connection")]
        settings = [value for name, value in headers if name == b"http2-settings"]
        if "http2-settings" not in connection or len(settings) != 1:
            return None
        if any(name == b"transfer-encoding" for name, _ in headers):
            return None
        for name, value in headers:
            if name == b"content-length" and int(value) > H2C_BODY_LIMIT:
                return None
        return settings[0]

    def _accept_h2c(self) -> bytes:
        """Queue the 101 for an h2c upgrade; the bytes the client sent after its request.

        This protocol is done: the connection carries HTTP/2 from here on.
        """
        self._emit(
            self._wire.send_informational(
                101, ((b"connection", b"Upgrade"), (b"upgrade", b"h2c")), b"Switching Protocols"
            )
        )
        leftover = bytes(self._wire.trailing_data[0])
        self._closed = True
        return leftover

    def _check_request(
        self, request: RequestHead, events: list[Event]
    ) -> AbstractSet[bytes] | None:
        """Refuse a head we do not serve (into ``events``: None), else the
        names among :data:`_NOTED` it carries: a head without any of them
        needs none of the checks they would bring."""
        self._method = method = request.method
        if request.http_version not in (b"1.0", b"1.1"):
            # h11 parses any HTTP/x.y; this parser serves 1.0 and 1.1 only.
            # An HTTP/2 preface lands here when prior knowledge is off.
            events.append(self._reject(505, "HTTP version not supported"))
            return None
        # h11 bounds a head only while it is incomplete, so a head that
        # arrives in one read escapes it; measure the parsed head instead
        # ("METHOD SP target SP HTTP/x.y CRLF", then "name: value CRLF").
        line = len(method) + len(request.target) + 12
        if line > self._max_head:
            events.append(self._reject(414, "request line too long"))
            return None
        size = line + 2
        noted: set[bytes] | None = None
        for name, value in request.headers:
            size += len(name) + len(value) + 4
            if name in _NOTED:
                if noted is None:
                    noted = set()
                noted.add(name)
        if size > self._max_head:
            events.append(self._reject(431, "request header block too large"))
            return None
        fault: str | None
        if noted is None:
            if method == b"CONNECT":
                fault = rules.connect_fault(method, None, websocket=False)
                assert fault is not None
                events.append(self._reject(501, fault))
                return None
            return _NOTHING_NOTED
        headers = request.headers
        if (fault := rules.framing_fault(headers)) is not None:
            events.append(self._reject(400, fault))
            return None
        if (fault := rules.connect_fault(method, None, websocket=False)) is not None:
            # Answered here, as on HTTP/2: an app could not serve a tunnel,
            # and h11 would fail it for any 2xx (a protocol switch).
            events.append(self._reject(501, fault))
            return None
        # h11 answers any coding but chunked itself (501), so this means chunked.
        self._chunked_request = b"transfer-encoding" in noted
        if b"content-length" in noted and rules.declared_length_exceeds(headers, self._max_body):
            events.append(self._reject(413, "request body too large"))
            return None
        return noted

    def _status_for(self, exc: h11.RemoteProtocolError) -> int:
        status = exc.error_status_hint
        if status == 431:
            # h11 says 431 for any over-long head; when the request line
            # itself never ended, the honest answer is 414 (RFC 9112 3).
            buffered, _ = self._wire.trailing_data
            if b"\n" not in buffered:
                return 414
        return status

    def request_timed_out(self) -> RequestRejected:
        """The runtime's head timeout fired with part of a request received.

        RFC 9110 15.5.9: answer 408 and close, so the client knows not to
        wait and may retry on a new connection.
        """
        return self._reject(408, "request head not received in time")

    def _reject(
        self, status_code: int, reason: str, headers: Headers = (), *, detail: str = ""
    ) -> RequestRejected:
        if not self.response_started:
            self._emit(error_response(status_code, reason, self._default_headers(), headers))
        self._closed = True
        return RequestRejected(status_code, reason, detail)

    def _close_event(self) -> list[Event]:
        self._closed = True
        return [ConnectionClosed()]

    # -- commands in, bytes out ----------------------------------------------

    def handle(self, command: Command) -> None:
        """Turn a command into bytes; raises ClientDisconnected once closed."""
        if self._ws is not None:
            if self._closed or self._ws.closed:
                raise ClientDisconnected("the connection is closed")
            if not isinstance(command, (SendMessage, SendPing, CloseWebSocket)):
                raise AppProtocolError(f"{type(command).__name__} on a WebSocket connection")
            self._ws.handle(command)
            return
        if self._closed:
            raise ClientDisconnected("the connection is closed")
        try:
            # The two commands of nearly every response, by exact type (a
            # class pattern's isinstance and attribute lookups cost more).
            if type(command) is SendData:
                # HEAD, 204 and 304 responses carry no body (RFC 9110
                # 6.4.1); the app may still send one, and it is dropped.
                data = command.data if self._body_allowed else b""
                if command.end_stream and (last := self._wire.last_data(data)) is not None:
                    if last:  # the whole rest of the body, and its end
                        self._out.append(last)
                        self._out_size += len(last)
                    return
                if data:
                    self._emit(self._wire.send_data(data))
                if command.end_stream and (end := self._wire.send_end()):
                    self._emit(end)
                return
            if type(command) is StartResponse:
                self._start_response(command.status_code, command.headers)
                return
            match command:
                case SendData() | StartResponse():
                    raise AssertionError("taken above")
                case SendInformational(status_code=status_code, headers=headers):
                    self._emit(
                        self._wire.send_informational(
                            status_code, headers, rules.status_phrase(status_code)
                        )
                    )
                case SendTrailers(headers=headers):
                    # h11 writes trailers only after a chunked body; a
                    # response with a Content-Length ends without them.
                    self._emit(self._wire.send_end(headers if self._chunked else ()))
                case PushPromise():
                    pass  # never offered on HTTP/1.1 (can_push is False)
                case AcceptWebSocket():
                    self._accept_websocket(command)
                case SendMessage() | SendPing() | CloseWebSocket():
                    raise AppProtocolError("the WebSocket handshake is not complete")
                case _:
                    assert_never(command)
        except h11.LocalProtocolError as exc:
            raise self._invalid_response(exc) from None

    def _start_response(self, status_code: int, headers: Headers) -> None:
        if self._wire.they_are_waiting_for_100_continue:
            # A final answer without 100 Continue: the client may never send
            # the body h11 would wait for, so the next request could be read
            # as this one's body. Close instead (RFC 9110 10.1.1).
            self._keep_alive = False
        if self._ws_request is not None:
            # A refused WebSocket handshake: the answer ends the connection
            # (ASGI websocket denial response).
            self._keep_alive = False
        self._body_allowed = rules.response_allows_body(self._method, status_code)
        if self._keep_alive and self._plain:
            # The app's fields and the defaults they lack, merged and written
            # in one pass where all is plain (a Content-Length among them).
            head = self._wire.plain_response(
                status_code, headers, rules.status_phrase(status_code), self._default_headers()
            )
            if head is not None:
                self._chunked = False
                self._out.append(head)
                self._out_size += len(head)
                return
        fields, present = self._response_headers(headers)
        self._chunked = self._body_allowed and b"content-length" not in present
        self._emit(self._wire.send_response(status_code, fields, rules.status_phrase(status_code)))

    def _invalid_response(self, exc: h11.LocalProtocolError) -> AppProtocolError:
        """h11 refused what the app asked for (a bad header value, a body
        shorter or longer than its Content-Length ...). Nothing sane can
        follow on this connection; if no byte of the response has been handed
        out yet, the client still gets an honest 500."""
        self._closed = True
        if not self._head_handed_out:
            self._out.clear()
            self._out_size = 0
            self._emit(
                error_response(
                    500, "the application sent an invalid response", self._default_headers()
                )
            )
        return AppProtocolError(f"invalid response: {exc}")

    # -- body bytes written by the caller (sendfile) -------------------------

    @property
    def sends_file_data(self) -> bool:
        """The response body may be written out of band now (not on a WebSocket)."""
        return self._ws is None and not self.closed

    def send_file_data(self, size: int) -> int:
        """Account ``size`` body bytes the caller writes itself, after ``data_to_send()``.

        Their framing (a chunk's size line) joins the output; returns how
        many bytes the caller writes: ``size``, or 0 for a response that
        carries no body (HEAD, 204, 304). :meth:`file_data_sent` follows.
        """
        if self.closed:
            raise ClientDisconnected("the connection is closed")
        if not self._body_allowed:
            self._after_file = b""
            return 0
        try:
            before, self._after_file = self._wire.send_data_elsewhere(size)
        except h11.LocalProtocolError as exc:
            raise self._invalid_response(exc) from None
        self._emit(before)
        return size

    def file_data_sent(self, *, end_stream: bool) -> None:
        """The caller wrote the bytes :meth:`send_file_data` accounted."""
        self._emit(self._after_file)
        self._after_file = b""
        if end_stream:
            try:
                self._emit(self._wire.send_end())
            except h11.LocalProtocolError as exc:
                raise self._invalid_response(exc) from None

    def _accept_websocket(self, command: AcceptWebSocket) -> None:
        request = self._ws_request
        if request is None:
            raise AppProtocolError("not a WebSocket handshake")
        headers, guard = websocket.accept_handshake(
            request,
            command.subprotocol,
            per_message_deflate=self._config.ws_per_message_deflate,
            max_message_size=self._config.ws_max_message_size,
        )
        self._emit(
            self._wire.send_informational(
                101,
                self._response_headers(
                    (
                        (b"upgrade", b"websocket"),
                        (b"connection", b"Upgrade"),
                        *headers,
                        *command.headers,
                    ),
                    switching=True,
                )[0],
                b"Switching Protocols",
            )
        )
        self._ws = websocket.WebSocketProtocol(STREAM_ID, guard)
        self.upgraded = True
        # Frames the client sent right behind its handshake.
        self._ws_held = bytes(self._wire.trailing_data[0])

    def _response_headers(
        self, headers: Headers, *, switching: bool = False
    ) -> tuple[list[tuple[bytes, bytes]], set[bytes]]:
        """The headers to send (the app's, then the defaults it lacks), and the
        lower-case names the app gave."""
        result = list(headers)
        present = {name.lower() for name, _ in result}
        for field in self._default_headers():
            if field[0] not in present:
                result.append(field)
        if not self._keep_alive and not switching and b"connection" not in present:
            result.append((b"connection", b"close"))
        return result, present

    def _emit(self, data: bytes) -> None:
        """Bytes for ``data_to_send``."""
        if data:
            self._out.append(data)
            self._out_size += len(data)

    @property
    def has_output(self) -> bool:
        """Bytes are waiting to be written: pongs, close replies, frames an app queued."""
        return self._out_size > 0 or (self._ws is not None and self._ws.output_size > 0)

    @property
    def output_size(self) -> int:
        """Bytes waiting for ``data_to_send``."""
        return self._out_size + (self._ws.output_size if self._ws is not None else 0)

    def data_to_send(self) -> bytes:
        """The bytes to write to the peer, emptied on each call."""
        out = self._out
        if not out:
            data = b""
        else:
            if self._wire.our_state in _RESPONSE_HEAD_SENT:
                self._head_handed_out = True
            data = out[0] if len(out) == 1 else b"".join(out)
            out.clear()
            self._out_size = 0
        if self._ws is not None:
            data += self._ws.data_to_send()
        return data


def _merge_body(events: list[Event]) -> list[Event]:
    """One DataReceived for the body bytes of one read, however finely chunked.

    A chunked body of one-byte chunks would otherwise cost the runtime and
    the app one message per byte.
    """
    found = 0
    for event in events:
        if isinstance(event, DataReceived):
            found += 1
            if found == 2:
                break
    else:
        return events  # at most one: nothing to join
    merged: list[Event] = []
    parts: list[bytes] = []
    for event in events:
        if isinstance(event, DataReceived):
            parts.append(event.data)
            continue
        if parts:
            merged.append(DataReceived(STREAM_ID, b"".join(parts)))
            parts = []
        merged.append(event)
    if parts:
        merged.append(DataReceived(STREAM_ID, b"".join(parts)))
    return merged
