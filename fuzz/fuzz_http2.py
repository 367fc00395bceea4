"""Fuzz the sans-IO HTTP/2 protocol: any bytes in -> events or a clean GOAWAY.

Run it under atheris (``python fuzz/fuzz_http2.py fuzz/corpus/http2``), or
call :func:`test_one_input` from plain Python (the test suite replays the
corpus that way, without atheris).

Each input is one connection. The harness plays the client's connection
preface (the magic and an empty SETTINGS frame), which the input does not
contain, and then the runtime's part: it answers each request (a 200 with a
body, or trailers; a WebSocket handshake is accepted and each message echoed),
acknowledges the request data the "app" took, and reports each exchange
finished, as ``_runtime/http2.py`` does.

The first byte of the input holds the options (the ``_*`` bits below). Its
lowest bit picks one of two modes:

* **raw**: the rest is the client's byte stream after the preface. As in
  ``fuzz_http1.py``, the control trailer is read from the back: a byte with
  the number of split points (0..15) and two bytes per split point (the
  length of each chunk before the rest).
* **frames** (``_FRAMES``): the rest is a sequence of records, read from the
  front, each building one frame with hyperframe (and hpack, for header
  blocks): ``kind``, ``stream`` (which stream id; bit 0x80 feeds what was
  built so far to the protocol), ``flags``, a two-byte big-endian length
  and that many bytes of payload, which the kind reads in its own way (see
  ``_Frames``). Random frame types, stream ids, flags and payloads come from
  the ``_RAW`` kind; the others make frames that get deeper into the state
  machine (valid requests, bodies, settings, resets, window updates ...).

Invariants checked:

* ``receive_data`` never raises; ``handle`` raises only ``ClientDisconnected``
  (our commands are valid), and only once the stream is gone;
* every event is one of the declared ``Event`` types, on a client stream
  (odd id), in order per stream: RequestReceived, DataReceived*, then
  StreamEnded or StreamReset (WebSocket: messages, then WebSocketClosed or
  StreamReset), nothing after the end; a ``ConnectionClosed`` comes last and
  the protocol is closed after it, and a closed protocol returns ``[]``;
* never more apps running than ``h2_max_concurrent_streams``, and the
  protocol's per-stream state stays bounded by it;
* the body handed on never exceeds ``max_request_body_size``;
* the output parses as HTTP/2 frames, nothing follows a GOAWAY with an error
  code, and its size is bounded by the input's and our responses' sizes.

Any other exception, or a failed assertion, is a crash.
"""

from __future__ import annotations

import sys
import typing
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Final

import hpack
from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tricorn._protocol.events import (
    AcceptWebSocket,
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    H2CUpgradeRequested,
    MessageReceived,
    PongReceived,
    RequestReceived,
    RequestRejected,
    SendData,
    SendMessage,
    SendTrailers,
    StartResponse,
    StreamEnded,
    StreamReset,
    WebSocketClosed,
    WindowOpened,
)
from tricorn._protocol.http2 import PREFACE, HTTP2Protocol
from tricorn.config import Config
from tricorn.errors import ClientDisconnected

# The data provider and the atheris driver are fuzz_http1's.
sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_http1 import DataProvider, PurePythonDataProvider, fuzz

# Option bits of the first byte.
_FRAMES = 0x01  # structured frame records instead of raw bytes
_EOF = 0x02  # end the input with EOF (b"")
_SMALL = 0x04  # small limits: streams, windows, header list, budgets, body size
_EARLY = 0x08  # answer on RequestReceived and return, not at the end of the request
_BIG_BODY = 0x10  # answer with a body larger than the default window
_NO_ACK = 0x20  # the "app" never takes request data (windows stay shut)
_SHUTDOWN = 0x40  # start a graceful shutdown after the first chunk
_TRAILERS = 0x80  # end responses with trailers

#: The client's preface: the magic and its SETTINGS frame (RFC 9113 3.4).
CLIENT_PREFACE: Final = PREFACE + SettingsFrame(0).serialize()
SMALL: Final = Config(
    h2_max_concurrent_streams=3,
    h2_initial_window_size=100,
    h2_max_header_list_size=200,
    h2_max_resets=5,
    h2_max_control_frames=10,
    max_request_body_size=300,
)
DEFAULT: Final = Config()
BIG_BODY: Final = 100_000
_BODY: Final = b"fuzz"
_DEFAULT_HEADERS = ((b"date", b"Thu, 01 Jan 1970 00:00:00 GMT"), (b"server", b"tricorn"))
_EVENT_TYPES: Final = typing.get_args(Event)
#: Frame records past this many are not read: enough for every path.
MAX_RECORDS: Final = 256

# Record kinds (the first byte of a record, modulo their count).
HEADERS, DATA, CONTINUATION, RST_STREAM, SETTINGS, PING = range(6)
WINDOW_UPDATE, GOAWAY, PRIORITY, PUSH_PROMISE, TRAILERS, RAW = range(6, 12)
KINDS: Final = 12
#: The frame type each kind builds (RAW's comes from its payload).
FRAME_TYPES: Final = (0x1, 0x0, 0x9, 0x3, 0x4, 0x6, 0x8, 0x7, 0x2, 0x5, 0x1, 0xFF)

#: Header sets a HEADERS record picks from with its first payload byte.
_AUTHORITY = (":authority", "example.com")
HEADER_SETS: Final[tuple[tuple[tuple[str, str], ...], ...]] = (
    ((":method", "GET"), (":scheme", "http"), _AUTHORITY, (":path", "/")),
    (
        (":method", "POST"),
        (":scheme", "http"),
        _AUTHORITY,
        (":path", "/upload"),
        ("content-length", "10"),
    ),
    (
        (":method", "CONNECT"),
        (":protocol", "websocket"),
        (":scheme", "http"),
        _AUTHORITY,
        (":path", "/ws"),
        ("sec-websocket-version", "13"),
        ("sec-websocket-extensions", "permessage-deflate"),
    ),
    ((":method", "CONNECT"), _AUTHORITY),
    (
        (":method", "HEAD"),
        (":scheme", "https"),
        _AUTHORITY,
        (":path", "/h?q=1"),
        ("cookie", "a=1"),
        ("cookie", "b=2"),
        ("te", "trailers"),
    ),
    ((":method", "GET"), (":scheme", "http"), (":path", "/"), ("Upper", "x")),
    ((":method", "GET"), (":scheme", "http"), _AUTHORITY, (":path", "/"), ("connection", "x")),
    ((":method", "GET"), _AUTHORITY, (":path", "/")),
)

#: Replaced by ``atheris.FuzzedDataProvider`` when run under atheris.
make_provider: Callable[[bytes], DataProvider] = PurePythonDataProvider


class _Stream:
    """What the harness knows about one stream, as the runtime would."""

    __slots__ = ("answered", "body", "finished", "state", "websocket")

    def __init__(self, websocket: bool) -> None:
        self.websocket = websocket
        #: "open", then "ended" (StreamEnded, or WebSocketClosed), "reset" last.
        self.state = "open"
        self.answered = False
        self.finished = False  # exchange_finished was called
        self.body = 0


class _Output:
    """The protocol's output as a client reads it: frames, nothing after an error GOAWAY."""

    def __init__(self) -> None:
        self.buffer = bytearray()
        self.size = 0
        self.goaway_error = False

    def feed(self, out: bytes) -> None:
        self.size += len(out)
        self.buffer += out
        while len(self.buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self.buffer[:9]))
            assert len(self.buffer) >= 9 + length, f"a {length}-byte frame cut short"
            frame.parse_body(memoryview(self.buffer[9 : 9 + length]))
            del self.buffer[: 9 + length]
            assert not self.goaway_error, f"{frame!r} after a GOAWAY with an error"
            if isinstance(frame, GoAwayFrame) and frame.error_code:
                self.goaway_error = True
        assert not self.buffer, f"{len(self.buffer)} bytes that are not a frame"


class _Run:
    """One connection's worth of fuzzing, with the invariants as assertions."""

    def __init__(self, options: int) -> None:
        self.options = options
        self.config = SMALL if options & _SMALL else DEFAULT
        self.clock = 0.0
        self.protocol = HTTP2Protocol(
            self.config, default_headers=lambda: _DEFAULT_HEADERS, clock=lambda: self.clock
        )
        self.streams: dict[int, _Stream] = {}
        self.output = _Output()
        self.over = False
        self.input_size = 0
        self.response_size = 0
        self.protocol.initiate()
        self.drain()
        self.feed(CLIENT_PREFACE)

    # -- bytes in ------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        self.input_size += len(chunk)
        self.clock += 0.5  # the budgets refill as time goes by
        was_closed = self.protocol.closed
        events = self.protocol.receive_data(chunk)
        if was_closed:
            assert events == [], events
        self.observe(events)
        self.drain()

    def observe(self, events: list[Event]) -> None:
        """Check the events, then act on them as the apps would.

        The runtime hands a whole list on before any app runs, so the
        harness answers (and finishes exchanges) only after the list.
        """
        actions: list[Callable[[], None]] = []
        for event in events:
            assert isinstance(event, _EVENT_TYPES), f"not an event: {event!r}"
            assert not self.over, f"{event!r} after ConnectionClosed"
            self.event(event, actions)
        self.check_bounds()
        for action in actions:
            action()
            self.check_bounds()

    def event(self, event: Event, actions: list[Callable[[], None]]) -> None:
        match event:
            case RequestReceived(stream_id=stream_id):
                assert stream_id % 2 == 1, f"a request on stream {stream_id}"
                assert stream_id not in self.streams, f"a second request on stream {stream_id}"
                stream = self.streams[stream_id] = _Stream(event.websocket is not None)
                if stream.websocket:
                    actions.append(lambda: self.command(stream_id, AcceptWebSocket(stream_id)))
                elif self.options & _EARLY:
                    # An app that answers without reading the body, and returns.
                    actions.append(lambda: self.answer(stream_id))
                    actions.append(lambda: self.finish(stream_id))
            case DataReceived(stream_id=stream_id, data=data):
                stream = self.stream(stream_id, event, "open")
                assert not stream.websocket, f"{event!r} on a WebSocket"
                assert data, "empty DataReceived"
                stream.body += len(data)
                limit = self.config.max_request_body_size
                assert limit is None or stream.body <= limit, "body past the limit"
                if not self.options & _NO_ACK:
                    actions.append(lambda: self.protocol.acknowledge(stream_id, len(data)))
            case StreamEnded(stream_id=stream_id):
                # A WebSocket's CONNECT may carry END_STREAM too: that
                # StreamEnded was read before the handshake was accepted.
                stream = self.stream(stream_id, event, "open")
                stream.state = "ended"
                if not stream.websocket:
                    actions.append(lambda: self.answer(stream_id))
                actions.append(lambda: self.finish(stream_id))
            case StreamReset(stream_id=stream_id):
                self.stream(stream_id, event, "open", "ended").state = "reset"
                actions.append(lambda: self.finish(stream_id))
            case MessageReceived(stream_id=stream_id, data=data):
                stream = self.stream(stream_id, event, "open")
                assert stream.websocket, f"{event!r} on an HTTP stream"
                actions.append(lambda: self.command(stream_id, SendMessage(stream_id, data)))
                if not self.options & _NO_ACK:
                    actions.append(lambda: self.protocol.acknowledge(stream_id, 0))
            case PongReceived(stream_id=stream_id):
                assert self.stream(stream_id, event, "open").websocket
            case WebSocketClosed(stream_id=stream_id):
                stream = self.stream(stream_id, event, "open")
                assert stream.websocket, f"{event!r} on an HTTP stream"
                stream.state = "ended"
                actions.append(lambda: self.finish(stream_id))
            case WindowOpened(stream_id=stream_id):
                # Also for a finished exchange whose response is still held.
                assert stream_id in self.streams, f"{event!r} for an unknown stream"
            case ConnectionClosed():
                assert self.protocol.closed, "ConnectionClosed on an open protocol"
                self.over = True
                actions.extend(partial(self.finish, stream_id) for stream_id in list(self.streams))
            case RequestRejected() | H2CUpgradeRequested():
                raise AssertionError(f"an HTTP/1.1 event on HTTP/2: {event!r}")
            case _:
                typing.assert_never(event)

    def stream(self, stream_id: int, event: Event, *states: str) -> _Stream:
        """The stream the event is on, which must be in one of ``states``."""
        stream = self.streams.get(stream_id)
        assert stream is not None, f"{event!r} before the request"
        assert not stream.finished, f"{event!r} after the exchange finished"
        assert stream.state in states, f"{event!r} on a stream in state {stream.state}"
        return stream

    # -- the runtime's part ----------------------------------------------------

    def answer(self, stream_id: int) -> None:
        stream = self.streams[stream_id]
        if stream.answered or stream.finished:
            return
        stream.answered = True
        body = b"b" * BIG_BODY if self.options & _BIG_BODY else _BODY
        self.response_size += len(body) + 256
        self.command(stream_id, StartResponse(stream_id, 200, ((b"content-type", b"text/plain"),)))
        if self.options & _TRAILERS:
            self.command(stream_id, SendData(stream_id, body))
            self.command(stream_id, SendTrailers(stream_id, ((b"x-checksum", b"1"),)))
        else:
            self.command(stream_id, SendData(stream_id, body, end_stream=True))

    def command(self, stream_id: int, command: Command) -> None:
        if self.streams[stream_id].finished:
            return
        self.response_size += 256 + (len(command.data) if isinstance(command, SendMessage) else 0)
        open_before = self.protocol.stream_open(stream_id)
        try:
            self.protocol.handle(command)
        except ClientDisconnected:
            # Documented: a command once the stream is gone, or a message
            # once the WebSocket is closing.
            assert not open_before or isinstance(command, SendMessage), (
                f"ClientDisconnected on an open stream for {command!r}"
            )
        # A stream h2 found closed while we sent is reported like a reset.
        self.observe(self.protocol.pending_events())

    def finish(self, stream_id: int) -> None:
        stream = self.streams[stream_id]
        if not stream.finished:
            stream.finished = True
            self.protocol.exchange_finished(stream_id)

    def check_bounds(self) -> None:
        running = sum(1 for stream in self.streams.values() if not stream.finished)
        limit = self.config.h2_max_concurrent_streams
        assert running <= limit, f"{running} apps running, the limit is {limit}"
        assert self.protocol.active_streams <= limit
        # Per-stream state: the running apps' streams and those h2 keeps open.
        kept = len(self.protocol._streams)
        assert kept <= 2 * limit + 1, f"{kept} streams kept"

    def drain(self) -> None:
        self.output.feed(self.protocol.data_to_send())
        bound = 65536 + 64 * self.input_size + 2 * self.response_size
        assert self.output.size <= bound, f"{self.output.size} bytes out, bound {bound}"

    def end(self) -> None:
        if self.protocol.closed:
            assert self.protocol.receive_data(CLIENT_PREFACE) == []
            assert self.protocol.receive_data(b"") == []


class _Frames:
    """Builds frames from the input's records (see the module docstring)."""

    def __init__(self) -> None:
        self.encoder = hpack.Encoder()
        self.newest = 0

    def stream_id(self, selector: int) -> int:
        match selector & 0x07:
            case 0:
                self.newest += 2 if self.newest else 1
                return self.newest
            case 1:
                return max(self.newest, 1)
            case 2:
                return max(self.newest - 2, 1)
            case 3:
                return 0
            case 4:
                return 2
            case 5:
                return 2**31 - 1
            case 6:
                return self.newest + 4 if self.newest else 3
            case _:
                return 1

    def header_block(self, payload: bytes) -> bytes:
        choice = payload[0] if payload else 0
        extra = payload[1:]
        if choice >= 0xF0:
            # Raw bytes: whatever HPACK the input spells.
            return bytes(extra)
        headers = list(HEADER_SETS[choice % len(HEADER_SETS)])
        if choice & 0x08:
            # A big value (up to 32 KiB): it fills the dynamic table, or the
            # header list past its limit. Not Huffman-coded, which is slow.
            headers.append(("x-big", "v" * (int.from_bytes(extra[:2] or b"\0") % 32768)))
        elif extra:
            headers.append((extra[: len(extra) // 2].hex(), extra[len(extra) // 2 :].hex()))
        block = self.encoder.encode(headers, huffman=not choice & 0x08)
        if choice & 0x10:
            # An HPACK bomb: references to the newest dynamic table entry.
            block += b"\xbe" * int.from_bytes(extra[:2] or b"\0")
        return bytes(block)

    def build(self, kind: int, stream_id: int, flags: int, payload: bytes) -> bytes:
        """The frame's bytes; a frame hyperframe refuses to build goes out raw."""
        try:
            frame = self.frame(kind, stream_id, flags, payload)
        except (HyperframeError, ValueError, OverflowError):
            return _raw(FRAME_TYPES[kind], flags, stream_id, payload)
        if isinstance(frame, bytes):
            return frame
        return bytes(frame.serialize())

    def frame(self, kind: int, stream_id: int, flags: int, payload: bytes) -> Frame | bytes:
        def number(start: int, size: int = 4) -> int:
            return int.from_bytes(payload[start : start + size] or b"\0")

        match kind:
            case 0 | 10:  # HEADERS, TRAILERS
                if kind == TRAILERS:
                    block = bytes(self.encoder.encode([("x-trailer", payload.hex())]))
                else:
                    block = self.header_block(payload)
                frame_flags = {"END_STREAM"} if flags & 0x01 else set()
                if flags & 0x20:
                    frame_flags.add("PRIORITY")
                if not flags & 0x04 and len(block) > 1:
                    # Split the block: HEADERS and a CONTINUATION (that ends
                    # it unless bit 0x40 leaves it open for later records).
                    half = len(block) // 2
                    first = HeadersFrame(stream_id, data=block[:half], flags=frame_flags)
                    rest = ContinuationFrame(stream_id, data=block[half:])
                    if not flags & 0x40:
                        rest.flags.add("END_HEADERS")
                    return bytes(first.serialize() + rest.serialize())
                frame_flags.add("END_HEADERS")
                headers = HeadersFrame(stream_id, data=block, flags=frame_flags)
                if flags & 0x08:
                    headers.flags.add("PADDED")
                    headers.pad_length = flags >> 4
                return headers
            case 1:  # DATA
                data = DataFrame(stream_id, data=payload, flags={"END_STREAM"} if flags & 1 else ())
                if flags & 0x08:
                    data.flags.add("PADDED")
                    data.pad_length = flags >> 4
                return data
            case 2:  # CONTINUATION
                return ContinuationFrame(
                    stream_id, data=payload, flags={"END_HEADERS"} if flags & 0x04 else ()
                )
            case 3:  # RST_STREAM
                return RstStreamFrame(stream_id, error_code=number(0) % 16 if flags else number(0))
            case 4:  # SETTINGS
                if flags & 0x01:
                    return SettingsFrame(stream_id, flags={"ACK"})
                settings = {
                    number(start, 2) % 10: number(start + 2)
                    for start in range(0, len(payload) - 5, 6)
                }
                return SettingsFrame(stream_id, settings=settings)
            case 5:  # PING
                return PingFrame(
                    stream_id,
                    opaque_data=payload[:8].ljust(8, b"\0"),
                    flags={"ACK"} if flags & 0x01 else (),
                )
            case 6:  # WINDOW_UPDATE
                increment = number(0) & 0x7FFFFFFF if flags & 0x01 else number(0) % 70_000
                return WindowUpdateFrame(stream_id, window_increment=increment)
            case 7:  # GOAWAY
                return GoAwayFrame(
                    stream_id,
                    last_stream_id=number(0) & 0x7FFFFFFF,
                    error_code=number(4) % 16,
                    additional_data=payload[8:],
                )
            case 8:  # PRIORITY
                return PriorityFrame(
                    stream_id,
                    depends_on=number(0) & 0x7FFFFFFF,
                    stream_weight=number(4, 1),
                    exclusive=bool(flags & 0x01),
                )
            case 9:  # PUSH_PROMISE: a client may not send it (RFC 9113 8.4)
                return PushPromiseFrame(
                    stream_id,
                    promised_stream_id=number(0) & 0x7FFFFFFF,
                    data=self.header_block(payload[4:]),
                    flags={"END_HEADERS"},
                )
            case _:  # RAW: any type, flags, stream and payload
                frame_type = payload[0] if payload else 0xFF
                return _raw(frame_type, flags, stream_id, payload[1:])


def _raw(frame_type: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return (
        len(payload).to_bytes(3, "big")
        + bytes([frame_type & 0xFF, flags & 0xFF])
        + (stream_id & 0xFFFFFFFF).to_bytes(4, "big")
        + payload
    )


def _records(provider: DataProvider, run: _Run) -> None:
    frames = _Frames()
    pending = bytearray()
    for _ in range(MAX_RECORDS):
        head = provider.ConsumeBytes(5)
        if len(head) < 5:
            break
        kind, selector, flags = head[0] % KINDS, head[1], head[2]
        payload = provider.ConsumeBytes(int.from_bytes(head[3:5]))
        pending += frames.build(kind, frames.stream_id(selector), flags, payload)
        if selector & 0x80:
            run.feed(bytes(pending))
            pending.clear()
            shutdown(run)
    if pending:
        run.feed(bytes(pending))


def shutdown(run: _Run) -> None:
    if run.options & _SHUTDOWN and not run.protocol.draining:
        run.protocol.start_shutdown()
        run.drain()


def test_one_input(data: bytes) -> None:
    provider = make_provider(data)
    options = provider.ConsumeBytes(1)
    flags = options[0] if options else 0
    run = _Run(flags)
    if flags & _FRAMES:
        _records(provider, run)
    else:
        splits = [
            provider.ConsumeIntInRange(0, 65535) for _ in range(provider.ConsumeIntInRange(0, 15))
        ]
        stream = provider.ConsumeBytes(provider.remaining_bytes())
        for size in splits:
            if stream[:size]:
                run.feed(stream[:size])
                shutdown(run)
            stream = stream[size:]
        if stream:
            run.feed(stream)
    if flags & _EOF:
        run.feed(b"")
        assert run.protocol.closed, "EOF did not close the connection"
    run.end()


#: Coverage feedback comes from these modules only; instrumenting everything
#: tricorn pulls in (anyio, asyncio, ssl ...) costs a quarter of a minute.
_INSTRUMENTED = ("tricorn._protocol", "h2", "hpack", "hyperframe", __name__)


def main() -> None:
    fuzz(sys.modules[__name__], _INSTRUMENTED)


if __name__ == "__main__":
    main()
