"""The httptools wire: request heads parsed by llhttp, everything else as h11 does it.

h11 is the reference. This wire keeps h11's server-side state machine (the
same states, the same transitions, the same keep-alive and protocol-switch
rules) and changes only what costs: h11 builds and validates an event object
for every step and parses heads with a regex per line, where llhttp parses a
head in C.

Answers must not differ from h11's, and llhttp is both stricter (it knows a
fixed list of methods, rejects bare LF and obs-fold) and laxer (it takes a
Content-Length of any size, a Transfer-Encoding list ending in chunked) in
places. So a head is taken from httptools only when it also matches h11's own
grammar in full (one regex built from h11's ABNF, CRLF line ends, no
obs-fold) and its framing headers are of the plain kind (one Host, at most one
all-digit Content-Length, at most one ``Transfer-Encoding: chunked``). Any
other head is handed to a throwaway h11 connection, whose verdict (a request,
or the error it would raise) is the answer: the uncommon and the hostile go
through h11 itself. Request bodies are read by h11's own body readers (chunk
sizes, chunk extensions, trailers), and response headers are validated and
framed by h11's own header functions, so the rules have one author.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable
from typing import Final

import h11
import httptools
from h11._abnf import field_name, field_value, token
from h11._headers import Headers as H11Headers
from h11._headers import get_comma_header, normalize_and_validate, set_comma_header
from h11._readers import ChunkedReader, ContentLengthReader
from h11._receivebuffer import ReceiveBuffer
from h11._util import Sentinel

from . import h11_seams
from .events import Headers
from .http1_wire import END, Fields, RequestHead, whole_chunks

__all__ = ["HttptoolsWire"]

State = type[Sentinel]

IDLE: Final = h11.IDLE
SEND_RESPONSE: Final = h11.SEND_RESPONSE
SEND_BODY: Final = h11.SEND_BODY
DONE: Final = h11.DONE
MUST_CLOSE: Final = h11.MUST_CLOSE
CLOSED: Final = h11.CLOSED
ERROR: Final = h11.ERROR
SWITCHED_PROTOCOL: Final = h11.SWITCHED_PROTOCOL
# h11 exports this state but leaves it out of __all__.
MIGHT_SWITCH_PROTOCOL: Final[State] = h11.MIGHT_SWITCH_PROTOCOL  # type: ignore[attr-defined]

#: A whole head in h11's grammar (RFC 9112 as h11 reads it), CRLF line ends
#: only: a head it matches is one h11 reads line by line to the same result.
#: h11 writes a field line as ``token ":" OWS field-value OWS``, whose value
#: is runs of visible bytes (anything but NUL and whitespace) joined by
#: spaces and tabs. Together with the whitespace around it, that is exactly
#: any run of bytes but NUL, CR, LF, FF and VT; written so, the same
#: language costs the regex engine half as much (no nested repetition to
#: backtrack through). A test holds it to h11's own pattern.
_STRICT_HEAD: Final = re.compile(
    rb"%(token)s [\x21-\x7e]+ HTTP/[0-9]\.[0-9]\r\n(?:%(token)s:[^\x00\r\n\f\v]*\r\n)*\r\n"
    % {b"token": token.encode("ascii")}
)

#: Request fields that frame a body by chunks, propose a switch or call for
#: an answer (100 Continue, trailers): a head with any of them is never plain.
_NOT_PLAIN_REQUEST: Final = frozenset(
    {b"transfer-encoding", b"connection", b"upgrade", b"expect", b"te"}
)

#: The fields a plain request is judged by (see _Head.on_header).
_NOTED_REQUEST: Final = _NOT_PLAIN_REQUEST | {b"host", b"content-length"}

#: Where a head ends, as h11 finds it (h11._receivebuffer).
_BLANK_LINE: Final = re.compile(b"\n\r?\n")

#: h11's header field grammar (h11._headers validates with the same).
_FIELD_NAME: Final = re.compile(field_name.encode("ascii"))
_FIELD_VALUE: Final = re.compile(field_value.encode("ascii"))

#: h11 bounds a Content-Length at this many digits (h11._headers).
_LENGTH_DIGITS: Final = 20

#: Joint-state rules h11 applies after every event (h11._state), server side.
_JOINT: Final[dict[tuple[State, State], tuple[State, State]]] = {
    (MIGHT_SWITCH_PROTOCOL, SWITCHED_PROTOCOL): (SWITCHED_PROTOCOL, SWITCHED_PROTOCOL),
    (CLOSED, DONE): (CLOSED, MUST_CLOSE),
    (CLOSED, IDLE): (CLOSED, MUST_CLOSE),
    (ERROR, DONE): (ERROR, MUST_CLOSE),
    (DONE, CLOSED): (MUST_CLOSE, CLOSED),
    (IDLE, CLOSED): (MUST_CLOSE, CLOSED),
    (DONE, ERROR): (MUST_CLOSE, ERROR),
}

_Reader = Callable[[ReceiveBuffer], h11.Data | h11.EndOfMessage | None]


class _Head:
    """httptools' callbacks for one head: its fields, lower-case names (as h11
    gives them), and what a plain request needs to know of them."""

    __slots__ = ("complete", "headers", "hosts", "length", "lengths", "noted")

    def __init__(self) -> None:
        self.headers: list[tuple[bytes, bytes]] = []
        self.complete = False
        #: How many Host and Content-Length fields came, the last length,
        #: and whether any of _NOT_PLAIN_REQUEST did.
        self.hosts = self.lengths = 0
        self.length = b""
        self.noted = False

    def on_header(self, name: bytes, value: bytes) -> None:
        name = name.lower()
        # llhttp keeps a value's trailing whitespace; h11 strips it (OWS).
        value = value.rstrip(b" \t")
        if name in _NOTED_REQUEST:
            if name == b"host":
                self.hosts += 1
            elif name == b"content-length":
                self.lengths += 1
                self.length = value
            else:
                self.noted = True
        self.headers.append((name, value))

    def on_message_complete(self) -> None:
        self.complete = True


def _declared_length(head: _Head) -> int | None:
    """The body length a head's Content-Length declares (0 without one); None
    unless it is one run of digits within h11's bound, the only kind read here."""
    if not head.lengths:
        return 0
    length = head.length
    if head.lengths > 1 or not length.isdigit() or len(length) > _LENGTH_DIGITS:
        return None
    return int(length)


#: One httptools parser per thread, shared by its connections: it is fed one
#: whole head at a time and left between messages (or renewed) after each,
#: so no connection's state stays in it, and a connection costs no parser.
_PARSERS: Final = threading.local()


def _renew_parser() -> tuple[_Head, httptools.HttpRequestParser]:
    callbacks = _Head()
    pair = _PARSERS.pair = callbacks, httptools.HttpRequestParser(callbacks)
    return pair


def _feed(head: bytes) -> _Head | None:
    """httptools' reading of one whole head, or None if llhttp refuses it.

    The shared parser is left ready for the next head. A message that ends
    its connection (``Connection: close``, HTTP/1.0) leaves llhttp refusing
    anything after it, so a refusal is tried once more on a fresh parser
    before it counts.
    """
    for fresh in (False, True):
        pair: tuple[_Head, httptools.HttpRequestParser] | None
        if fresh or (pair := getattr(_PARSERS, "pair", None)) is None:
            pair = _renew_parser()
        callbacks, parser = pair
        callbacks.headers = []
        callbacks.complete = callbacks.noted = False
        callbacks.hosts = callbacks.lengths = 0
        try:
            parser.feed_data(head)
        except httptools.HttpParserUpgrade:
            # The head is read; llhttp parses nothing after an upgrade.
            _renew_parser()
            return callbacks
        except httptools.HttpParserError:
            continue
        if not callbacks.complete:
            # A body is announced: llhttp would read the next head as its bytes.
            _renew_parser()
        return callbacks
    _renew_parser()
    return None


class HttptoolsWire:
    """The server side of an HTTP/1.1 connection, heads read by httptools."""

    def __init__(self, max_incomplete_event_size: int) -> None:
        self._max_head = max_incomplete_event_size
        self._buffer = ReceiveBuffer()
        #: The buffer's bytes (the same bytearray for the buffer's life).
        self._data = h11_seams.buffered(self._buffer)
        #: The peer closed its side (EOF received).
        self.peer_closed = False
        #: Where the search for the blank line that ends a head goes on.
        self._search = 0
        self.their_state: State = IDLE
        self.our_state: State = IDLE
        self._keep_alive = True
        self._switch_upgrade = False
        self._switch_connect = False
        self._method = b""
        self._their_version: bytes | None = None
        #: The client sent Expect: 100-continue and no byte of its body yet
        #: (plain attributes here, as h11's properties cost a call each).
        self.they_are_waiting_for_100_continue = False
        #: The request body's reader while the client sends one (h11's own).
        self._reader: _Reader | None = None
        #: Body bytes taken straight from a read, ahead of the buffer (see receive_data).
        self._direct: h11.Data | None = None
        #: A read that came with nothing buffered between requests, not yet
        #: copied into the buffer: a head it holds whole is parsed from it,
        #: and the body bytes behind the head are taken from it (see _read_head).
        self._read = b""
        #: How the response body is framed: "content-length", "chunked" or "http/1.0".
        self._framing = ""
        self._remaining = 0
        #: The most body bytes one run of whole chunks may carry (see whole_chunks).
        self.chunk_run_limit: int | None = None

    # -- state ---------------------------------------------------------------

    @property
    def trailing_data(self) -> tuple[bytes, bool]:
        return bytes(self._buffer) + self._read, self.peer_closed

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed (``trailing_data`` without the copy)."""
        return len(self._data) + len(self._read)

    def chunk_bytes_expected(self) -> int:
        reader = self._reader
        return h11_seams.chunk_bytes_left(reader) if isinstance(reader, ChunkedReader) else 0

    def _settle(self) -> None:
        """h11's state-triggered transitions, to a fixed point."""
        client, server = self.their_state, self.our_state
        if (
            self._keep_alive
            and not (self._switch_upgrade or self._switch_connect)
            and client is not MIGHT_SWITCH_PROTOCOL
            and (client, server) not in _JOINT
        ):
            return  # the common case: no rule applies
        while True:
            before = client, server
            pending = self._switch_upgrade or self._switch_connect
            if pending and client is DONE:
                client = MIGHT_SWITCH_PROTOCOL
            elif not pending and client is MIGHT_SWITCH_PROTOCOL:
                client = DONE
            if not self._keep_alive:
                if client is DONE:
                    client = MUST_CLOSE
                if server is DONE:
                    server = MUST_CLOSE
            client, server = _JOINT.get((client, server), (client, server))
            if (client, server) == before:
                break
        self.their_state, self.our_state = client, server

    def start_next_cycle(self) -> None:
        if self.their_state is not DONE or self.our_state is not DONE:
            raise h11.LocalProtocolError(
                f"not in a reusable state. self.states="
                f"{ {h11.CLIENT: self.their_state, h11.SERVER: self.our_state} }"
            )
        self.their_state = self.our_state = IDLE
        self._method = b""
        self._reader = None

    # -- bytes in ------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        if data:
            if self.peer_closed:
                raise RuntimeError("received close, then received more data?")
            reader = self._reader
            if (
                type(reader) is ContentLengthReader
                and self._direct is None
                and not self._data
                and self.their_state is SEND_BODY
            ):
                # Body bytes with nothing before them: handed on as they
                # came, not copied into the buffer and out again.
                self._take_direct(reader, data)
            elif self.their_state is IDLE and not self._data and not self._read:
                self._read = data  # see _read_head
            else:
                self._buffer_read()
                self._buffer += data
        else:
            self.peer_closed = True

    def plain_request(self, data: bytes, max_body: int | None) -> tuple[RequestHead, bytes] | None:
        """A read that starts with a whole, plain request head: that request,
        and the bytes after its head (for ``plain_body`` when a body follows,
        else for ``receive_data``), with the wire moved on as ``receive_data``
        and ``next_event`` would have moved it for the head (and the end of a
        request without a body). Else None, and nothing changed: the read
        goes the general way.

        Plain: nothing buffered before it, the whole head within the bound,
        in h11's grammar, read by llhttp; HTTP/1.1, an origin-form target,
        one Host, not CONNECT, no body or one framed by a single plain
        Content-Length within ``max_body``, and none of the fields that frame
        a body by chunks or propose a switch (see _NOT_PLAIN_REQUEST). Most
        requests are this, and for them nothing below can differ from h11.
        """
        if (
            self.their_state is not IDLE
            or self.our_state is not IDLE
            or self._data
            or self._read
            or self._direct is not None
            or self.peer_closed
            or not self._keep_alive
        ):
            return None
        end = data.find(b"\r\n\r\n") + 4
        if end == 3 or end > self._max_head or not _STRICT_HEAD.fullmatch(data, 0, end):
            return None
        callbacks = _feed(data if end == len(data) else data[:end])
        if callbacks is None or callbacks.noted or callbacks.hosts != 1:
            return None
        method, target, version = data[: data.index(b"\r\n")].split(b" ")
        if version != b"HTTP/1.1" or target[0] != 47 or method == b"CONNECT":
            return None  # 47: "/"
        size = _declared_length(callbacks) if callbacks.lengths else 0
        if size is None:
            return None
        if max_body is not None and size > max_body:
            return None  # refused (413) the general way
        if callbacks.complete != (size == 0):
            return None  # llhttp and h11 would not agree on the body
        self._method = method
        self._their_version = b"1.1"
        self.our_state = SEND_RESPONSE
        if size:
            self._reader = ContentLengthReader(size)
            self.their_state = SEND_BODY
        else:
            self._reader = _NO_BODY
            self.their_state = DONE
        return RequestHead(method, target, b"1.1", tuple(callbacks.headers)), data[end:]

    def plain_body(self, data: bytes) -> tuple[bytes, bool] | None:
        """Bytes of a Content-Length body that arrived with nothing before them:
        the body's part of them, and whether that ends the body (what
        follows it is kept for the next request); the wire moved on as
        ``receive_data`` and ``next_event`` would have moved it. Else None,
        nothing changed.
        """
        reader = self._reader
        if (
            type(reader) is not ContentLengthReader
            or self.their_state is not SEND_BODY
            or self._direct is not None
            or self._data
            or self._read
            or self.peer_closed
            or not data
        ):
            return None
        body, rest = h11_seams.take_body(reader, data)
        self.they_are_waiting_for_100_continue = False
        if h11_seams.body_left(reader):
            return body, False
        self._request_ended()
        if rest:
            self._buffer += rest
        return body, True

    def _take_direct(self, reader: ContentLengthReader, data: bytes) -> None:
        """The body bytes ``data`` starts with become the next Data as they are;
        what follows the body goes to the buffer."""
        body, rest = h11_seams.take_body(reader, data)
        self._direct = h11.Data(data=body)
        if rest:
            self._buffer += rest

    def _buffer_read(self) -> None:
        """The held read goes into the buffer, where everything but a whole head is read."""
        if self._read:
            self._buffer += self._read
            self._read = b""

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        if self.their_state is ERROR:
            raise h11.RemoteProtocolError("Can't receive data when peer state is ERROR")
        try:
            event = self._next()
            if event is h11.NEED_DATA:
                if len(self._buffer) > self._max_head:
                    raise h11.RemoteProtocolError("Receive buffer too long", error_status_hint=431)
                if self.peer_closed:
                    raise h11.RemoteProtocolError("peer unexpectedly closed connection")
            return event
        except h11.ProtocolError as exc:
            self.their_state = ERROR
            self._settle()
            if isinstance(exc, h11.LocalProtocolError):
                # What the peer sent is at fault: h11 reports it as theirs.
                raise h11.RemoteProtocolError(str(exc), exc.error_status_hint) from None
            raise

    def _next(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        state = self.their_state
        buffer = self._buffer
        if state is SEND_BODY:
            if self._direct is not None:
                direct, self._direct = self._direct, None
                self.they_are_waiting_for_100_continue = False
                return direct
            if self._reader is _NO_BODY:  # most requests: the head was all
                self._request_ended()
                return END
            if type(self._reader) is ContentLengthReader and (
                taken := h11_seams.take_from_buffer(self._reader, buffer)
            ):
                # The body bytes that came with the head: one copy, not three.
                self.they_are_waiting_for_100_continue = False
                return h11.Data(data=taken)
            assert self._reader is not None
            chunks = whole_chunks(self._reader, buffer, self.chunk_run_limit)
            if chunks is not None:
                self.they_are_waiting_for_100_continue = False
                return chunks
            body = self._reader(buffer)
            if body is None:
                if buffer or not self.peer_closed:
                    return h11.NEED_DATA
                # Both of h11's request body readers raise here.
                body = self._reader.read_eof()  # type: ignore[attr-defined]
            if type(body) is h11.EndOfMessage:
                self._request_ended()
            else:
                self.they_are_waiting_for_100_continue = False
            return body
        if state is IDLE:
            request = self._read_head()
            if request is not None:
                return request
        elif state is DONE and buffer:
            return h11.PAUSED  # a pipelined request waits for the next cycle
        elif state is MIGHT_SWITCH_PROTOCOL or state is SWITCHED_PROTOCOL:
            return h11.PAUSED
        elif buffer:
            raise h11.LocalProtocolError("Got data when expecting EOF")
        if buffer or not self.peer_closed:
            return h11.NEED_DATA
        if state not in (IDLE, DONE, MUST_CLOSE, CLOSED):
            raise h11.LocalProtocolError(
                f"can't handle event type ConnectionClosed when role=CLIENT and state={state}"
            )
        self.their_state = CLOSED
        self._settle()
        return h11.ConnectionClosed()

    def _read_head(self) -> RequestHead | None:
        if self._read:
            read = self._read
            found = _BLANK_LINE.search(read)
            if found is not None and read[:1] not in (b"\r", b"\n"):
                # A whole head in one read, with nothing before it: parsed
                # from the read, whose rest (most often the start of the body,
                # or nothing) is the only part copied.
                self._read = b""
                end = found.end()
                request = self._head_read(read if end == len(read) else read[:end])
                if end < len(read):
                    rest = read[end:]
                    reader = self._reader
                    if type(reader) is ContentLengthReader:
                        self._take_direct(reader, rest)
                    else:
                        self._buffer += rest
                return request
            self._buffer_read()  # part of a head, or empty lines first: the buffer's way
        data = h11_seams.buffered(self._buffer)
        if data[:1] == b"\n" or data[:2] == b"\r\n":
            h11_seams.take(self._buffer, 1 if data[:1] == b"\n" else 2)
            raise h11.LocalProtocolError("no request line received")
        found = _BLANK_LINE.search(data, self._search)
        if found is None:
            self._search = max(0, len(data) - 2)
            if data and data[0] < 0x21:
                raise h11.LocalProtocolError("illegal request line")
            return None
        self._search = 0
        return self._head_read(h11_seams.take_bytes(self._buffer, found.end()))

    def _head_read(self, head: bytes) -> RequestHead:
        """One whole head: httptools' reading where it may judge it, else h11's."""
        request = self._parse(head) if _STRICT_HEAD.fullmatch(head) else None
        if request is None:
            request = _h11_verdict(head)
        self._request_received(request)
        return request

    def _parse(self, head: bytes) -> RequestHead | None:
        """The head as httptools reads it, or None where only h11 may judge it."""
        callbacks = _feed(head)
        if callbacks is None:
            return None
        if _declared_length(callbacks) is None:
            return None
        headers: list[tuple[bytes, bytes]] = []
        framing = False
        for name, value in callbacks.headers:
            if name == b"transfer-encoding":
                value = value.lower()
                if framing or value != b"chunked":
                    return None
                framing = True
            headers.append((name, value))
        # The request line matched h11's grammar: METHOD SP target SP HTTP/x.y.
        method, target, version = head[: head.index(b"\r\n")].split(b" ")
        version = version[5:]
        hosts = callbacks.hosts
        if hosts > 1 or (hosts == 0 and version == b"1.1"):
            return None
        return RequestHead(method, target, version, tuple(headers))

    def _request_received(self, request: RequestHead) -> None:
        """h11's bookkeeping for a request: switch proposals, keep-alive, 100-continue, framing."""
        headers = request.headers
        version = request.http_version
        self._method = request.method
        self._their_version = version
        if request.method == b"CONNECT":
            self._switch_connect = True
        length: bytes | None = None
        chunked = connection = upgrade = expect = False
        for name, value in headers:
            if name == b"content-length":
                length = value
            elif name == b"transfer-encoding":
                chunked = True
            elif name == b"connection":
                connection = True
            elif name == b"upgrade":
                upgrade = True
            elif name == b"expect":
                expect = True
        if upgrade and _tokens(headers, b"upgrade"):
            self._switch_upgrade = True
        if version < b"1.1" or (connection and b"close" in _tokens(headers, b"connection")):
            self._keep_alive = False
        if expect and version >= b"1.1" and b"100-continue" in _tokens(headers, b"expect"):
            self.they_are_waiting_for_100_continue = True
        if chunked:
            self._reader = ChunkedReader()
        elif length is not None and int(length):
            self._reader = ContentLengthReader(int(length))
        else:
            self._reader = _NO_BODY
        if self.our_state is not IDLE:
            raise h11.LocalProtocolError(
                f"can't handle event type Request when role=SERVER and state={self.our_state}"
            )
        self.their_state = SEND_BODY
        self.our_state = SEND_RESPONSE
        self._settle()

    def _request_ended(self) -> None:
        self.they_are_waiting_for_100_continue = False
        self.their_state = DONE
        self._settle()

    # -- bytes out -----------------------------------------------------------

    def _transition(self, event: str, to: State | None) -> None:
        if to is None:
            raise h11.LocalProtocolError(
                f"can't handle event type {event} when role=SERVER and state={self.our_state}"
            )
        self.our_state = to

    def _failed(self) -> None:
        self.our_state = ERROR
        self._settle()

    def _check_sendable(self) -> None:
        if self.our_state is ERROR:
            raise h11.LocalProtocolError("Can't send data when our state is ERROR")

    def send_informational(self, status_code: int, headers: Fields, reason: bytes) -> bytes:
        checked = normalize_and_validate(list(headers))
        if not 100 <= status_code < 200:
            raise h11.LocalProtocolError(
                "InformationalResponse status_code should be in range [100, 200), "
                f"not {status_code}"
            )
        self._check_sendable()
        try:
            to: State | None
            if status_code == 101:
                if not self._switch_upgrade:
                    raise h11.LocalProtocolError(
                        "Received server _SWITCH_UPGRADE event without a pending proposal"
                    )
                to = SWITCHED_PROTOCOL if self.our_state is SEND_RESPONSE else None
            else:
                to = SEND_RESPONSE if self.our_state is SEND_RESPONSE else None
            self._transition("InformationalResponse", to)
            self.they_are_waiting_for_100_continue = False
            self._settle()
            return _head(status_code, reason, checked._full_items)
        except BaseException:
            self._failed()
            raise

    def plain_response(
        self, status_code: int, headers: Fields, reason: bytes, defaults: Fields
    ) -> bytes | None:
        """``send_response`` of the app's headers and then those of ``defaults``
        whose names they lack, in one pass, where the result is plain (see
        _plain_fields) and nothing about the connection is special; else
        None, nothing changed: the caller merges and sends the general way.
        """
        if (
            not 200 <= status_code < 1000
            or self.our_state is not SEND_RESPONSE
            or not self._keep_alive
            or self._switch_connect
        ):
            return None
        names: set[bytes] = set()
        plain = _plain_fields(headers, names)
        if plain is None:
            return None
        lines, length = plain
        if defaults:
            seen, known_defaults = _DEFAULTS[0]
            if defaults is not seen:
                # New defaults (the Date moved on): learned once, for every response.
                learned = _learn_all(defaults)
                if learned is None:
                    return None
                known_defaults = learned
                _DEFAULTS[0] = defaults, learned
            for lower, line in known_defaults:
                if lower not in names:
                    lines.append(line)
        self.our_state = SEND_BODY
        self._switch_upgrade = False
        self.they_are_waiting_for_100_continue = False
        self._framing, self._remaining = _framing(status_code, False, length, self._method)
        if self.their_state is MIGHT_SWITCH_PROTOCOL:
            # The only rule that can apply (kept alive, no switch, and we send a
            # body): a proposed upgrade the answer declined.
            self._settle()
        return b"HTTP/1.1 %d %s\r\n%s\r\n" % (status_code, reason, b"".join(lines))

    def send_response(self, status_code: int, headers: Fields, reason: bytes) -> bytes:
        # The common case: valid fields, one Content-Length, nothing h11
        # would rewrite (framing, Connection, Host first).
        head = self.plain_response(status_code, headers, reason, ())
        if head is not None:
            return head
        checked = _validated(headers)
        if not 200 <= status_code < 1000:
            raise h11.LocalProtocolError(
                f"Response status_code should be in range [200, 1000), not {status_code}"
            )
        self._check_sendable()
        try:
            chunked, length, connection = _scan(checked)
            method = self._method
            # h11 frames the head as for GET when the request was HEAD.
            framing, _ = _framing(
                status_code, chunked, length, b"GET" if method == b"HEAD" else method
            )
            if framing != "content-length" or not self._keep_alive:
                checked = self._framed(framing, checked)
                chunked, length, connection = _scan(checked)
            state = self.our_state
            to: State | None
            if self._switch_connect and 200 <= status_code < 300:
                to = SWITCHED_PROTOCOL if state is SEND_RESPONSE else None
            else:
                to = SEND_BODY if state is SEND_RESPONSE or state is IDLE else None
                self._switch_upgrade = self._switch_connect = False
            self._transition("Response", to)
            if connection and b"close" in get_comma_header(checked, b"connection"):
                self._keep_alive = False
            self.they_are_waiting_for_100_continue = False
            self._framing, self._remaining = _framing(status_code, chunked, length, method)
            self._settle()
            return _head(status_code, reason, checked._full_items)
        except BaseException:
            self._failed()
            raise

    def _framed(self, framing: str, headers: H11Headers) -> H11Headers:
        """h11's clean-up of response headers: chunked or close-delimited framing, close."""
        need_close = False
        if framing in ("chunked", "http/1.0"):
            headers = set_comma_header(headers, b"content-length", [])
            if self._their_version is None or self._their_version < b"1.1":
                headers = set_comma_header(headers, b"transfer-encoding", [])
                if self._method != b"HEAD":
                    need_close = True
            else:
                headers = set_comma_header(headers, b"transfer-encoding", [b"chunked"])
        if not self._keep_alive or need_close:
            connection = set(get_comma_header(headers, b"connection"))
            connection.discard(b"keep-alive")
            connection.add(b"close")
            headers = set_comma_header(headers, b"connection", sorted(connection))
        return headers

    def send_data(self, data: bytes) -> bytes:
        self._check_sendable()
        try:
            self._transition("Data", SEND_BODY if self.our_state is SEND_BODY else None)
            framing = self._framing
            if framing == "content-length":
                self._remaining -= len(data)
                if self._remaining < 0:
                    raise h11.LocalProtocolError("Too much data for declared Content-Length")
                return data
            if framing == "chunked":
                return b"%x\r\n%s\r\n" % (len(data), data) if data else b""
            return data
        except BaseException:
            self._failed()
            raise

    def last_data(self, data: bytes) -> bytes | None:
        """``send_data(data)`` (if any) and ``send_end()`` in one step, where
        ``data`` is exactly what the declared Content-Length still expects;
        else None, nothing changed (the two go their own way, and refuse a
        body of the wrong length as they do)."""
        if (
            self._framing != "content-length"
            or self.our_state is not SEND_BODY
            or len(data) != self._remaining
        ):
            return None
        self._remaining = 0
        self.our_state = DONE
        their_state = self.their_state
        if (
            not self._keep_alive
            or self._switch_upgrade
            or self._switch_connect
            or (their_state is not DONE and their_state is not SEND_BODY)
        ):
            self._settle()  # else no rule applies to (DONE or SEND_BODY, DONE)
        return data

    def send_data_elsewhere(self, size: int) -> tuple[bytes, bytes]:
        """Account ``size`` body bytes the caller writes itself (sendfile).

        Returns the framing that goes before and after them (a chunk's size
        line and its CRLF; nothing for Content-Length or HTTP/1.0 framing).
        """
        self._check_sendable()
        try:
            self._transition("Data", SEND_BODY if self.our_state is SEND_BODY else None)
            framing = self._framing
            if framing == "content-length":
                self._remaining -= size
                if self._remaining < 0:
                    raise h11.LocalProtocolError("Too much data for declared Content-Length")
            elif framing == "chunked" and size:
                return b"%x\r\n" % size, b"\r\n"
            return b"", b""
        except BaseException:
            self._failed()
            raise

    def send_end(self, trailers: Fields = ()) -> bytes:
        checked = normalize_and_validate(list(trailers)) if trailers else None
        self._check_sendable()
        try:
            self._transition("EndOfMessage", DONE if self.our_state is SEND_BODY else None)
            self._settle()
            framing = self._framing
            if framing == "content-length":
                if self._remaining != 0:
                    raise h11.LocalProtocolError("Too little data for declared Content-Length")
                if checked:
                    raise h11.LocalProtocolError("Content-Length and trailers don't mix")
                return b""
            if framing == "chunked":
                return b"0\r\n" + _fields(checked._full_items if checked else [])
            if checked:
                raise h11.LocalProtocolError("can't send trailers to HTTP/1.0 client")
            return b""
        except BaseException:
            self._failed()
            raise


#: Response fields found plain (see _plain_fields), by (name, value): the
#: lower-case name and the line h11 writes for them. Bounded: emptied when full.
_PLAIN: Final[dict[tuple[bytes, bytes], tuple[bytes, bytes]]] = {}
_PLAIN_LIMIT: Final = 512

#: Response fields h11 may rewrite or reorder: never plain.
_NOT_PLAIN: Final = frozenset({b"transfer-encoding", b"connection", b"host"})


def _plain_fields(
    headers: Fields, names: set[bytes] | None = None
) -> tuple[list[bytes], bytes] | None:
    """The header lines of a response h11 would write as given, and its Content-Length.

    Plain: every field valid (h11's grammar), exactly one Content-Length, no
    Transfer-Encoding, Connection or Host (which h11 rewrites or moves).
    None for anything else, which goes through h11's own rules. ``names``
    gathers the fields' lower-case names.
    """
    lines: list[bytes] = []
    length: bytes | None = None
    for field in headers:
        known = _PLAIN.get(field) if type(field) is tuple else None
        if known is None and (known := _learn(field)) is None:
            return None
        lower, line = known
        if lower == b"content-length":
            if length is not None:
                return None  # h11 merges equal duplicates
            length = field[1]
        lines.append(line)
        if names is not None:
            names.add(lower)
    if length is None:
        return None
    return lines, length


#: The server's default fields last seen, and their names and lines (see
#: plain_response): one pair, replaced whole, as the Date moves on.
_DEFAULTS: Final[list[tuple[Fields, tuple[tuple[bytes, bytes], ...]]]] = [((), ())]


def _learn_all(fields: Fields) -> tuple[tuple[bytes, bytes], ...] | None:
    """The lower-case names and lines of plain fields; None if one is not plain."""
    known: list[tuple[bytes, bytes]] = []
    for field in fields:
        learned = _PLAIN.get(field) if type(field) is tuple else None
        if learned is None and (learned := _learn(field)) is None:
            return None
        known.append(learned)
    return tuple(known)


def _learn(field: tuple[bytes, bytes]) -> tuple[bytes, bytes] | None:
    """A plain field's lower-case name and line, remembered; None if it is not plain."""
    name, value = field
    if not (
        type(name) is bytes
        and type(value) is bytes
        and _FIELD_NAME.fullmatch(name)
        and _FIELD_VALUE.fullmatch(value)
    ):
        return None
    lower = name.lower()
    if lower in _NOT_PLAIN:
        return None
    if lower == b"content-length" and (not value.isdigit() or len(value) > _LENGTH_DIGITS):
        return None
    known = lower, b"%s: %s\r\n" % (name, value)
    if len(_PLAIN) >= _PLAIN_LIMIT:
        _PLAIN.clear()
    _PLAIN[(name, value)] = known
    return known


def _validated(headers: Fields) -> H11Headers:
    """h11's ``normalize_and_validate``, its common case (no Transfer-Encoding, one plain
    Content-Length) taken without its per-field overhead; anything else goes to h11's.
    """
    items: list[tuple[bytes, bytes, bytes]] = []
    length = False
    for name, value in headers:
        if not (
            type(name) is bytes
            and type(value) is bytes
            and _FIELD_NAME.fullmatch(name)
            and _FIELD_VALUE.fullmatch(value)
        ):
            break
        lower = name.lower()
        if lower == b"content-length":
            if length or not value.isdigit() or len(value) > _LENGTH_DIGITS:
                break
            length = True
        elif lower == b"transfer-encoding":
            break
        items.append((name, lower, value))
    else:
        return H11Headers(items)
    return normalize_and_validate(list(headers))


def _scan(headers: H11Headers) -> tuple[bool, bytes | None, bool]:
    """Of validated headers: chunked?, the Content-Length, a Connection field?"""
    chunked = connection = False
    length: bytes | None = None
    for _, name, value in headers._full_items:
        if name == b"transfer-encoding":
            chunked = True  # validated: "chunked", and only once
        elif name == b"content-length":
            length = value  # validated: one run of digits, duplicates merged
        elif name == b"connection":
            connection = True
    return chunked, length, connection


def _framing(
    status_code: int, chunked: bool, length: bytes | None, method: bytes
) -> tuple[str, int]:
    """How a response body is delimited, and its declared length (h11's ``_body_framing``)."""
    if (
        status_code in (204, 304)
        or method == b"HEAD"
        or (method == b"CONNECT" and 200 <= status_code < 300)
    ):
        return "content-length", 0
    if chunked:
        return "chunked", 0
    if length is not None:
        return "content-length", int(length)
    return "http/1.0", 0


def _tokens(headers: Headers, name: bytes) -> list[bytes]:
    """The lower-case, comma-separated elements of every ``name`` field, as h11 splits them."""
    found: list[bytes] = []
    for key, value in headers:
        if key == name:
            found.extend(
                item for item in (part.strip() for part in value.lower().split(b",")) if item
            )
    return found


def _fields(items: list[tuple[bytes, bytes, bytes]]) -> bytes:
    """A header block as h11 writes it: Host first, then the rest in order."""
    lines = [b"%s: %s\r\n" % (raw, value) for raw, name, value in items if name == b"host"]
    lines.extend(b"%s: %s\r\n" % (raw, value) for raw, name, value in items if name != b"host")
    lines.append(b"\r\n")
    return b"".join(lines)


def _head(status_code: int, reason: bytes, items: list[tuple[bytes, bytes, bytes]]) -> bytes:
    return b"HTTP/1.1 %d %s\r\n" % (status_code, reason) + _fields(items)


def _no_body(buffer: ReceiveBuffer) -> h11.EndOfMessage:
    return END


_NO_BODY: Final[_Reader] = _no_body


def _h11_verdict(head: bytes) -> RequestHead:
    """What h11 makes of a head: its request, or the error it raises."""
    connection = h11.Connection(h11.SERVER, max_incomplete_event_size=len(head) + 1)
    connection.receive_data(head)
    event = connection.next_event()
    assert type(event) is h11.Request, event
    return RequestHead(
        event.method, event.target, event.http_version, h11_seams.header_pairs(event.headers)
    )
