"""Fuzz the WebSocket frame layer behind an HTTP/1.1 upgrade: any bytes in -> events or our close.

Run it under atheris (``python fuzz/fuzz_websocket.py fuzz/corpus/websocket``),
or call :func:`test_one_input` from plain Python (the test suite replays the
corpus that way, without atheris).

Each input is one connection. The harness sends a valid opening handshake
(which the input does not contain), accepts it with ``AcceptWebSocket`` and
then feeds the input's frames to ``HTTP1Protocol.receive_data`` in chunks,
running a command (``SendMessage``, ``SendPing``, ``CloseWebSocket``) after
some of them. ``ws_max_message_size`` is 64 KiB (1000 bytes with the
``_SMALL_LIMIT`` flag, so short inputs reach it) and permessage-deflate is on.

Input layout, like ``fuzz_http1.py``: bytes come from the front and control
values from the back (``FuzzedDataProvider.ConsumeIntInRange`` reads from the
end), so a corpus file reads as an options byte, raw client frames, then a
short control trailer.

* The first byte holds the options: the permessage-deflate offer (the low
  three bits index ``OFFERS``) and the ``_*`` flag bits below (EOF at the
  end, frames pipelined behind the handshake, a subprotocol, a small
  message limit, byte-at-a-time feeding).
* Read from the last byte backwards, the trailer holds the number of split
  points (0..15) and, per split point, two bytes of chunk length and one
  action byte. The action runs after its chunk is fed: its low three bits
  pick the command (see ``_Run.act``), the high five bits are its parameter.
* What is left in between is the byte stream from the client.

Invariants checked:

* the only exception is ``ClientDisconnected``, and only for a command once
  the WebSocket is closed (or, for a message, closing);
* every event is one of the declared ``Event`` types, for stream 1, and
  ``WebSocketClosed`` / ``ConnectionClosed`` come last, with the protocol
  closed after them; a closed protocol returns ``[]`` for any bytes;
* a ``MessageReceived`` never exceeds ``ws_max_message_size`` (text measured
  in UTF-8);
* the output is a 101 response followed by frames that wsproto's client
  side parses with the negotiated extension: the messages, pings and closes
  we asked for, in order, plus the close answer the protocol owes the peer,
  and nothing after a close frame;
* the output stays bounded (4x the input plus 1 MiB);
* when no command ran, the events do not depend on how the input was split:
  the same stream fed in one piece gives the same events as the chunks (or
  single bytes) did, close reasons aside.

Any other exception, or a failed assertion, is a crash.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Final

from wsproto.extensions import Extension, PerMessageDeflate
from wsproto.frame_protocol import Frame, FrameProtocol, Opcode
from wsproto.utilities import generate_accept_token

from tricorn._protocol.events import (
    AcceptWebSocket,
    CloseWebSocket,
    ConnectionClosed,
    Event,
    MessageReceived,
    PongReceived,
    RequestReceived,
    SendMessage,
    SendPing,
    StreamEnded,
    WebSocketClosed,
)
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn.config import Config
from tricorn.errors import ClientDisconnected

# The data provider is fuzz_http1's, so both harnesses decode an input alike.
sys.path.insert(0, str(Path(__file__).resolve().parent))
import fuzz_http1
from fuzz_http1 import DataProvider, PurePythonDataProvider, fuzz

MAX_MESSAGE_SIZE: Final = 64 * 1024
SMALL_MAX_MESSAGE_SIZE: Final = 1000
KEY: Final = b"dGhlIHNhbXBsZSBub25jZQ=="

#: The Sec-WebSocket-Extensions offer, indexed by the options byte's low bits.
OFFERS: Final[tuple[bytes | None, ...]] = (
    None,
    b"permessage-deflate",
    b"permessage-deflate; client_no_context_takeover; server_no_context_takeover",
    b"permessage-deflate; server_max_window_bits=9",
    b"permessage-deflate; client_max_window_bits",
    b"permessage-deflate; server_no_context_takeover",
    b"permessage-deflate; server_max_window_bits=8; client_max_window_bits=9",
    b"x-unknown, permessage-deflate; client_no_context_takeover",
)
_OFFER_MASK = 0x07
# Flag bits of the options byte.
_EOF = 0x08  # end the input with EOF (b"")
_PIPELINED = 0x10  # the first chunk rides behind the handshake, before the accept
_SUBPROTOCOL = 0x20  # offer subprotocols and accept one
_SMALL_LIMIT = 0x40  # ws_max_message_size is SMALL_MAX_MESSAGE_SIZE
_BYTE_BY_BYTE = 0x80  # feed the first BYTE_BY_BYTE_BOUND bytes one at a time

#: Byte-at-a-time feeding is slow; past this many bytes the chunks are whole.
BYTE_BY_BYTE_BOUND: Final = 4096

# Actions: the low three bits of an action byte.
_TEXT = 2  # SendMessage(str), parameter * 997 characters
_BINARY = 3  # SendMessage(bytes), parameter * 1021 bytes
_PING = 4  # SendPing(parameter bytes)
_CLOSE = 5  # CloseWebSocket(CLOSE_CODES[parameter % len], short reason)
#: 1014 (Bad Gateway, IANA) is sendable too, but wsproto's client, which
#: checks our output, does not know it and fails the connection on it.
CLOSE_CODES: Final = (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013)
CLOSE_CODES_APP: Final = (3000, 4000, 4999)

_EVENT_TYPES: Final = typing.get_args(Event)
_DEFAULT_HEADERS = ((b"date", b"Thu, 01 Jan 1970 00:00:00 GMT"), (b"server", b"tricorn"))


def handshake(options: int) -> bytes:
    """The client's opening handshake for these options."""
    lines = [
        b"GET /chat?room=1 HTTP/1.1",
        b"Host: example.com",
        b"Upgrade: websocket",
        b"Connection: keep-alive, Upgrade",
        b"Sec-WebSocket-Key: " + KEY,
        b"Sec-WebSocket-Version: 13",
    ]
    offer = OFFERS[options & _OFFER_MASK]
    if offer is not None:
        lines.append(b"Sec-WebSocket-Extensions: " + offer)
    if options & _SUBPROTOCOL:
        lines.append(b"Sec-WebSocket-Protocol: chat, superchat")
    return b"\r\n".join(lines) + b"\r\n\r\n"


#: Replaced by ``atheris.FuzzedDataProvider`` when run under atheris.
make_provider: Callable[[bytes], DataProvider] = PurePythonDataProvider


class _ClientView:
    """The output as a client reads it: the 101 head, then frames via wsproto."""

    def __init__(self, options: int) -> None:
        self.options = options
        self.head = b""
        self.frames: FrameProtocol | None = None
        self.received: list[tuple[str, object]] = []
        self.closed = False
        self._message: list[bytes | str] = []

    def feed(self, out: bytes) -> None:
        if self.frames is None:
            self.head += out
            if b"\r\n\r\n" not in self.head:
                raise AssertionError(f"no complete 101 head in {self.head[:200]!r}")
            head, _, rest = self.head.partition(b"\r\n\r\n")
            self.frames = FrameProtocol(client=True, extensions=self._extensions(head))
            out = rest
        if not out:
            return
        assert not self.closed, f"{len(out)} bytes after our close frame: {out[:40]!r}"
        self.frames.receive_bytes(out)
        for frame in self.frames.received_frames():
            self._frame(frame)

    def _extensions(self, head: bytes) -> list[Extension]:
        lines = head.split(b"\r\n")
        assert lines[0] == b"HTTP/1.1 101 Switching Protocols", lines[0]
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            assert name.lower() not in headers, f"repeated header {name!r}"
            headers[name.lower()] = value.strip()
        assert headers[b"upgrade"] == b"websocket"
        assert headers[b"connection"] == b"Upgrade"
        assert headers[b"sec-websocket-accept"] == generate_accept_token(KEY)
        if self.options & _SUBPROTOCOL:
            assert headers[b"sec-websocket-protocol"] == b"chat"
        else:
            assert b"sec-websocket-protocol" not in headers
        accepted = headers.get(b"sec-websocket-extensions")
        if OFFERS[self.options & _OFFER_MASK] is None:
            assert accepted is None, accepted
            return []
        assert accepted is not None, "a valid permessage-deflate offer was declined"
        params = [part.strip() for part in accepted.decode().split(";")]
        assert params[0] == "permessage-deflate", accepted
        # The client inflates with the window the server promised (RFC 7692
        # 7.1.2.1); wsproto cannot inflate with 8 bits, and a server that
        # promised 8 sends uncompressed messages, so 15 reads those.
        extension = PerMessageDeflate()
        kept = [p for p in params[1:] if p != "server_max_window_bits=8"]
        extension.finalize("; ".join(["permessage-deflate", *kept]))
        return [extension]

    def _frame(self, frame: Frame) -> None:
        match frame.opcode:
            case Opcode.PONG:
                self.received.append(("pong", frame.payload))
            case Opcode.PING:
                self.received.append(("ping", frame.payload))
            case Opcode.CLOSE:
                assert isinstance(frame.payload, tuple)
                self.received.append(("close", int(frame.payload[0])))
                self.closed = True
            case _:
                # wsproto before 1.3 hands out a bytearray.
                assert isinstance(frame.payload, (bytes, bytearray, str))
                self._message.append(frame.payload)
                if frame.message_finished:
                    parts, self._message = self._message, []
                    if isinstance(parts[0], str):
                        self.received.append(("message", "".join(map(str, parts))))
                    else:
                        self.received.append(("message", b"".join(map(bytes, parts))))


class _Run:
    """One WebSocket's worth of fuzzing, with the invariants as assertions."""

    def __init__(self, options: int, stream_size: int) -> None:
        self.limit = SMALL_MAX_MESSAGE_SIZE if options & _SMALL_LIMIT else MAX_MESSAGE_SIZE
        config = Config(
            ws_max_message_size=self.limit,
            ws_per_message_deflate=True,
            http1_parser=fuzz_http1.HTTP1_PARSER,  # type: ignore[arg-type]
        )
        self.protocol = HTTP1Protocol(config, default_headers=lambda: _DEFAULT_HEADERS)
        self.options = options
        self.client = _ClientView(options)
        self.events: list[Event] = []
        #: Frames the client must see, pongs aside, in order.
        self.expected: list[tuple[str, object]] = []
        self.over = False
        self.output = 0
        self.output_bound = 4 * stream_size + 1024 * 1024

    def start(self, pipelined: bytes) -> None:
        events = self.protocol.receive_data(handshake(self.options) + pipelined)
        # A handshake has no body: its head and its end, nothing else.
        assert len(events) == 2, events
        request, end = events
        assert isinstance(request, RequestReceived), request
        assert isinstance(end, StreamEnded), end
        assert request.websocket is not None, "a valid handshake was not read as one"
        subprotocol = "chat" if self.options & _SUBPROTOCOL else None
        self.protocol.handle(AcceptWebSocket(1, subprotocol))
        assert self.protocol.upgraded
        self.drain()
        # As the runtime does once the 101 is out: frames that came with the head.
        self.observe(self.protocol.pending_events())
        self.drain()

    def feed(self, chunk: bytes) -> None:
        was_closed = self.protocol.closed
        events = self.protocol.receive_data(chunk)
        if was_closed:
            assert events == [], events
        self.observe(events)
        self.drain()

    def observe(self, events: list[Event]) -> None:
        for event in events:
            assert isinstance(event, _EVENT_TYPES), f"not an event: {event!r}"
            assert not self.over, f"{event!r} after the WebSocket ended"
            match event:
                case MessageReceived(stream_id=stream_id, data=data):
                    assert stream_id == 1
                    size = len(data.encode("utf-8")) if isinstance(data, str) else len(data)
                    assert size <= self.limit, f"a {size}-byte message passed the limit"
                case PongReceived(stream_id=stream_id, payload=payload):
                    assert stream_id == 1
                    assert len(payload) <= 125
                case WebSocketClosed(stream_id=stream_id, code=code, reason=reason):
                    assert stream_id == 1
                    assert code == 1005 or 1000 <= code <= 4999, code
                    assert isinstance(reason, str)
                    if not self.close_sent:
                        # The peer's close is echoed (one without a code by one
                        # without a code, read as 1005); a broken frame gets our code.
                        self.expected.append(("close", code))
                    self.end()
                case ConnectionClosed():
                    self.end()
                case _:
                    raise AssertionError(f"not a WebSocket event: {event!r}")
            self.events.append(event)

    @property
    def close_sent(self) -> bool:
        return any(kind == "close" for kind, _ in self.expected)

    def end(self) -> None:
        assert self.protocol.closed, "the WebSocket ended but the protocol is open"
        self.over = True

    def act(self, action: int) -> None:
        kind, parameter = action & 0x07, action >> 3
        command: SendMessage | SendPing | CloseWebSocket
        if kind == _TEXT:
            command = SendMessage(1, ("tricorn \u00e9\U0001f600 " * 3000)[: parameter * 997])
        elif kind == _BINARY:
            command = SendMessage(1, bytes(range(256)) * 4 * parameter)
        elif kind == _PING:
            command = SendPing(1, b"p" * parameter)
        elif kind == _CLOSE:
            codes = CLOSE_CODES + CLOSE_CODES_APP
            command = CloseWebSocket(1, codes[parameter % len(codes)], "bye" * (parameter % 8))
        else:
            return
        open_before = not self.protocol.closed and not self.protocol.closing
        closed_before = self.protocol.closed
        try:
            self.protocol.handle(command)
        except ClientDisconnected:
            # Documented: a command once the connection is closed, or a
            # message once our close frame is out.
            assert closed_before or (isinstance(command, SendMessage) and self.protocol.closing), (
                f"ClientDisconnected on an open WebSocket for {command!r}"
            )
        else:
            assert not closed_before, f"{command!r} accepted on a closed connection"
            if open_before:
                match command:
                    case SendMessage(data=data):
                        self.expected.append(("message", data))
                    case SendPing(payload=payload):
                        self.expected.append(("ping", payload))
                    case CloseWebSocket(code=code):
                        self.expected.append(("close", code))
                        assert self.protocol.closing, "our close frame did not start closing"
        self.drain()

    def drain(self) -> None:
        out = self.protocol.data_to_send()
        self.output += len(out)
        assert self.output <= self.output_bound, f"{self.output} bytes of output"
        self.client.feed(out)

    def check_output(self) -> None:
        received = [frame for frame in self.client.received if frame[0] != "pong"]
        assert received == self.expected, (
            f"the client read {_short(received)}, expected {_short(self.expected)}"
        )


def _short(frames: list[tuple[str, object]]) -> str:
    return repr([(kind, value if len(repr(value)) < 40 else "...") for kind, value in frames])


def _comparable(events: list[Event]) -> list[object]:
    """Events without close reasons, which quote byte offsets within a chunk."""
    return [
        ("closed", event.code) if isinstance(event, WebSocketClosed) else event for event in events
    ]


def test_one_input(data: bytes) -> None:
    provider = make_provider(data)
    first = provider.ConsumeBytes(1)
    options = first[0] if first else 0
    plan = [
        (provider.ConsumeIntInRange(0, 65535), provider.ConsumeIntInRange(0, 255))
        for _ in range(provider.ConsumeIntInRange(0, 15))
    ]
    stream = provider.ConsumeBytes(provider.remaining_bytes())

    chunks: list[tuple[bytes, int]] = []
    rest = stream
    for size, action in plan:
        chunks.append((rest[:size], action))
        rest = rest[size:]
    chunks.append((rest, 0))

    run = _Run(options, len(stream))
    pipelined = b""
    if options & _PIPELINED:
        pipelined, action = chunks.pop(0)
        chunks.insert(0, (b"", action))
    run.start(pipelined)
    fed = 0
    for chunk, action in chunks:
        if options & _BYTE_BY_BYTE:
            count = min(len(chunk), BYTE_BY_BYTE_BOUND - fed)
            for index in range(count):
                run.feed(chunk[index : index + 1])
            chunk = chunk[count:]
            fed += count
        if chunk:  # b"" means EOF; that only comes when the flag says so
            run.feed(chunk)
        run.act(action)
    if options & _EOF:
        run.feed(b"")
    run.check_output()
    if run.protocol.closed:
        assert run.protocol.receive_data(b"\x81\x80\x00\x00\x00\x00") == []
        assert run.protocol.receive_data(b"") == []

    if not any(action & 0x07 in (_TEXT, _BINARY, _PING, _CLOSE) for _, action in chunks):
        # Splitting must not change what is read.
        whole = _Run(options, len(stream))
        whole.start(b"")
        if stream:
            whole.feed(stream)
        if options & _EOF:
            whole.feed(b"")
        assert _comparable(whole.events) == _comparable(run.events), (
            f"in one piece: {_comparable(whole.events)!r:.600}; "
            f"in chunks: {_comparable(run.events)!r:.600}"
        )


#: Coverage feedback comes from these modules only; instrumenting everything
#: tricorn pulls in (anyio, asyncio, ssl ...) costs a quarter of a minute.
_INSTRUMENTED = ("tricorn._protocol", "h11", "wsproto", __name__)


def main() -> None:
    fuzz(sys.modules[__name__], _INSTRUMENTED)


if __name__ == "__main__":
    main()
