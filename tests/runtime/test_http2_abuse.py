"""HTTP/2 abuse against a real server: each attack is answered, bounded, and spares other clients.

Every test runs one attack over a raw connection, with frames built by
hyperframe and headers encoded by hpack, for at most ``ATTACK_SECONDS`` or a
fixed number of frames, and checks three things:

* the server answers as it should: GOAWAY(ENHANCE_YOUR_CALM) where an abuse
  budget applies, otherwise the GOAWAY or RST_STREAM code RFC 9113 asks for;
* a well-behaved client (h2c with prior knowledge), connected before the
  attack and again after it, still gets its 200;
* memory stays bounded: the peak of what tracemalloc traces during the
  attack grows by less than ``MEMORY_BOUND``, and the apps the attack got to
  run never outnumber ``h2_max_concurrent_streams``.

The attacks run through the real runtime over the in-memory harness
(``_memory``), in virtual time: time passes only while every task waits, so
``ATTACK_SECONDS`` bounds an attack that stalls, and the budgets (token
buckets refilled over time) do not refill while an attack goes on. The
well-behaved client there is H2Wire. One attack (rapid reset) runs over TCP
against a listening server, with httpx as the well-behaved client, so that a
real client beside an attack stays covered.

The budgets are small (``BUDGETS``) so that each attack trips them quickly.
"""

from __future__ import annotations

import tracemalloc
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anyio
import anyio.abc
import h2.config
import h2.connection
import h2.events
import hpack
import httpx
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from tests.conftest import running_server

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import Endpoint, open_stream

pytestmark = pytest.mark.anyio

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
#: No attack runs longer than this, whether or not the server reacted.
ATTACK_SECONDS = 2.0
#: How much more memory the whole process may hold at the attack's peak.
MEMORY_BOUND = 20 * 1024 * 1024
MAX_STREAMS = 10
BUDGETS: dict[str, Any] = {
    "lifespan": "off",
    "h2_max_concurrent_streams": MAX_STREAMS,
    "h2_max_resets": 50,
    "h2_max_control_frames": 100,
    # The sleeping apps are cut short when the test ends.
    "graceful_timeout": 0.2,
}
#: Errors that mean the server hung up on the attacker.
HUNG_UP = (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream, OSError)


BIG = 4 * 1024 * 1024


class App:
    """``/slow`` sleeps (until the server is shut down), ``/big`` is 4 MiB of body.

    Anything else is a quick 200.

    It counts the ``/slow`` requests that reached it and how many ran at once.
    """

    def __init__(self) -> None:
        self.started = 0
        self.running = 0
        self.peak = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        if scope["path"] == "/slow":
            self.started += 1
            self.running += 1
            self.peak = max(self.peak, self.running)
            try:
                await anyio.sleep(60)
            finally:
                self.running -= 1
        await send({"type": "http.response.start", "status": 200, "headers": []})
        if scope["path"] == "/big":
            for _ in range(BIG // 65536):
                await send({"type": "http.response.body", "body": b"b" * 65536, "more_body": True})
        await send({"type": "http.response.body", "body": b"ok"})


def request_block_headers(
    path: str = "/slow", *extra: tuple[str, str], method: str = "GET"
) -> list[tuple[str, str]]:
    return [
        (":method", method),
        (":scheme", "http"),
        (":authority", "example.com"),
        (":path", path),
        *extra,
    ]


def request_block(
    encoder: hpack.Encoder, path: str = "/slow", *extra: tuple[str, str], method: str = "GET"
) -> bytes:
    return encoder.encode(request_block_headers(path, *extra, method=method))


class Attacker:
    """A raw HTTP/2 client connection: frames out, frames in, what the server said.

    A reader task parses the server's frames, acknowledges its SETTINGS and
    records RST_STREAM codes, response statuses and the GOAWAY.
    """

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self._stream = stream
        self._send_lock = anyio.Lock()
        self._buffer = bytearray()
        self.encoder = hpack.Encoder()
        self._decoder = hpack.Decoder()
        self.goaway: GoAwayFrame | None = None
        self.resets: dict[int, int] = {}
        self.statuses: dict[int, int] = {}
        self._answered: dict[int, anyio.Event] = {}
        self._finished: dict[int, anyio.Event] = {}
        self._reset: dict[int, anyio.Event] = {}
        self.hung_up = anyio.Event()
        #: Set by a GOAWAY or the server hanging up, whichever comes first.
        self.ended = anyio.Event()
        self.sent = 0

    def request(
        self, stream_id: int, path: str = "/slow", *, end_stream: bool = True
    ) -> HeadersFrame:
        flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
        return HeadersFrame(stream_id, data=request_block(self.encoder, path), flags=flags)

    async def send(self, *frames: Frame | bytes) -> bool:
        """Send the frames (or raw frame bytes); False once the server hung up."""
        data = b"".join(
            frame if isinstance(frame, bytes) else frame.serialize() for frame in frames
        )
        return await self.send_bytes(data, len(frames))

    async def send_bytes(self, data: bytes, frames: int = 0) -> bool:
        if self.hung_up.is_set():
            return False
        try:
            async with self._send_lock:
                await self._stream.send(data)
        except HUNG_UP:
            return False
        self.sent += frames
        return True

    async def read(self) -> None:
        try:
            while True:
                self._buffer += await self._stream.receive()
                await self._parse()
        except HUNG_UP:
            pass
        finally:
            self.hung_up.set()
            self.ended.set()

    async def _parse(self) -> None:
        while len(self._buffer) >= 9:
            frame, length = Frame.parse_frame_header(memoryview(self._buffer[:9]))
            if len(self._buffer) < 9 + length:
                return
            frame.parse_body(memoryview(self._buffer[9 : 9 + length]))
            del self._buffer[: 9 + length]
            match frame:
                case SettingsFrame() if "ACK" not in frame.flags:
                    await self.send(SettingsFrame(0, flags=["ACK"]))
                case GoAwayFrame():
                    self.goaway = frame
                    self.ended.set()
                case RstStreamFrame():
                    self.resets[frame.stream_id] = frame.error_code
                    self.reset(frame.stream_id).set()
                case HeadersFrame():
                    # Every header block is decoded, to keep the HPACK state.
                    for name, value in self._decoder.decode(frame.data, raw=True):
                        if name == b":status":
                            self.statuses[frame.stream_id] = int(value)
                            self.answered(frame.stream_id).set()
                    if "END_STREAM" in frame.flags:
                        self.finished(frame.stream_id).set()
                case DataFrame() if "END_STREAM" in frame.flags:
                    self.finished(frame.stream_id).set()

    def answered(self, stream_id: int) -> anyio.Event:
        """Set once a response head arrived on the stream."""
        return self._answered.setdefault(stream_id, anyio.Event())

    def finished(self, stream_id: int) -> anyio.Event:
        """Set once the response on the stream ended (END_STREAM)."""
        return self._finished.setdefault(stream_id, anyio.Event())

    def reset(self, stream_id: int) -> anyio.Event:
        """Set once the server reset the stream."""
        return self._reset.setdefault(stream_id, anyio.Event())

    def goaway_code(self) -> ErrorCodes | int | None:
        if self.goaway is None:
            return None
        try:
            return ErrorCodes(self.goaway.error_code)
        except ValueError:
            return self.goaway.error_code

    def reset_codes(self) -> set[ErrorCodes | int]:
        codes: set[ErrorCodes | int] = set()
        for code in self.resets.values():
            try:
                codes.add(ErrorCodes(code))
            except ValueError:
                codes.add(code)
        return codes

    async def flood(self, batch: Callable[[int], Sequence[Frame | bytes]], *, rounds: int) -> None:
        """Send ``batch(i)`` for i in 0..rounds until the server ends it, ATTACK_SECONDS at most.

        Then wait (as long again at most) for the server's GOAWAY or hang-up.
        """
        with anyio.move_on_after(ATTACK_SECONDS):
            for index in range(rounds):
                if self.ended.is_set() or not await self.send(*batch(index)):
                    break
        with anyio.move_on_after(ATTACK_SECONDS):
            await self.ended.wait()


@asynccontextmanager
async def attacker(endpoint: Endpoint) -> AsyncIterator[Attacker]:
    async with await open_stream(endpoint) as stream:
        client = Attacker(stream)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.read)
            await client.send_bytes(PREFACE + SettingsFrame(0).serialize())
            yield client
            task_group.cancel_scope.cancel()


@asynccontextmanager
async def bystander(endpoint: Endpoint) -> AsyncIterator[Callable[[], Any]]:
    """A well-behaved HTTP/2 client (H2Wire); the callable asserts it gets a 200 now."""

    async def get_ok_on(wire: H2Wire) -> None:
        headers, body = await wire.response(await wire.get("/"), within=2.0)
        assert headers[b":status"] == b"200"
        assert body == b"ok"

    wire = await H2Wire.connect(endpoint)  # HTTP/2 by construction: h2 reads nothing else
    try:
        await get_ok_on(wire)
        yield lambda: get_ok_on(wire)
    finally:
        await wire.aclose()
    # A new connection after the attack is served too.
    fresh = await H2Wire.connect(endpoint)
    try:
        headers, _ = await fresh.response(await fresh.get("/"), within=2.0)
        assert headers[b":status"] == b"200"
    finally:
        await fresh.aclose()


@asynccontextmanager
async def httpx_bystander(address: str) -> AsyncIterator[Callable[[], Any]]:
    """A well-behaved HTTP/2 client (httpx); the callable asserts it gets a 200 now."""
    async with httpx.AsyncClient(http1=False, http2=True, timeout=2.0) as client:

        async def get_ok() -> None:
            response = await client.get(f"http://{address}/")
            assert response.http_version == "HTTP/2"
            assert response.status_code == 200
            assert response.content == b"ok"

        await get_ok()
        yield get_ok
        # A new connection after the attack is served too.
        async with httpx.AsyncClient(http1=False, http2=True, timeout=2.0) as fresh:
            response = await fresh.get(f"http://{address}/")
            assert response.status_code == 200


@contextmanager
def memory_growth() -> Iterator[Callable[[], int]]:
    """Trace allocations meanwhile; the callable gives the peak so far, in bytes."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        yield lambda: tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def header_frames(stream_id: int, block: bytes, *, end_stream: bool = True) -> list[Frame]:
    """A header block as HEADERS and as many CONTINUATION frames as 16 KiB frames need."""
    size = 16384
    chunks = [block[start : start + size] for start in range(0, len(block), size)] or [b""]
    first = HeadersFrame(stream_id, data=chunks[0], flags=["END_STREAM"] if end_stream else [])
    frames: list[Frame] = [first]
    frames.extend(ContinuationFrame(stream_id, data=chunk) for chunk in chunks[1:])
    frames[-1].flags.add("END_HEADERS")
    return frames


def stream_ids(start: int = 1) -> Iterator[int]:
    stream_id = start
    while True:
        yield stream_id
        stream_id += 2


# -- rapid reset (CVE-2023-44487) ---------------------------------------------


async def test_rapid_reset_starts_no_app_for_a_reset_stream_and_enhances_calm() -> None:
    app = App()
    async with running_server(app, **BUDGETS) as address, httpx_bystander(address) as get_ok:
        with memory_growth() as peak:
            async with attacker(address) as client:
                ids = stream_ids()

                def open_and_cancel(_: int) -> list[Frame]:
                    # Four streams opened and reset in one write (for /slow,
                    # whose app would count itself), and a fifth, quick one
                    # left open: the server's answer to it shows on the wire.
                    frames: list[Frame] = []
                    for _ in range(4):
                        stream_id = next(ids)
                        frames.append(client.request(stream_id))
                        frames.append(RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL))
                    frames.append(client.request(next(ids), "/"))
                    return frames

                await client.flood(open_and_cancel, rounds=1000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    # A stream reset in the read that opened it never gets an app: nothing
    # to cancel, and nothing that could outlive its stream.
    assert app.started == 0
    assert client.sent < 1000 * 9
    assert growth < MEMORY_BOUND


@pytest.mark.mock_clock
async def test_rapid_reset_of_quick_requests_ends_with_enhance_your_calm() -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                ids = stream_ids()

                def open_and_cancel(_: int) -> list[Frame]:
                    stream_id = next(ids)
                    return [
                        client.request(stream_id, "/"),
                        RstStreamFrame(stream_id, error_code=ErrorCodes.CANCEL),
                    ]

                await client.flood(open_and_cancel, rounds=5000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert app.peak <= MAX_STREAMS
    assert growth < MEMORY_BOUND


# -- CONTINUATION flood (CVE-2024-27316) --------------------------------------


@pytest.mark.mock_clock
async def test_continuation_flood_ends_the_connection_before_the_header_block_grows_large() -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                # A header block that never ends: HEADERS without END_HEADERS,
                # then CONTINUATION frames of literal headers, none ending it.
                block = request_block(client.encoder, "/slow")
                await client.send(HeadersFrame(1, data=block, flags=["END_STREAM"]))
                filler = hpack.Encoder()
                filler.header_table_size = 0
                chunk = filler.encode([("x-filler", "v" * 16000)])

                def more(_: int) -> list[Frame]:
                    return [ContinuationFrame(1, data=chunk)]

                await client.flood(more, rounds=10_000)
            growth = peak()
        await get_ok()
    # h2 stops at 64 CONTINUATION frames; the block was never decoded.
    assert client.goaway_code() == ErrorCodes.PROTOCOL_ERROR
    assert client.sent < 100
    assert app.started == 0
    assert growth < MEMORY_BOUND


# -- control frame floods ------------------------------------------------------


@pytest.mark.parametrize(
    "flood",
    [
        pytest.param(lambda i: [PingFrame(0, opaque_data=i.to_bytes(8, "big"))], id="ping"),
        pytest.param(lambda i: [PingFrame(0, flags=["ACK"])], id="ping-ack"),
        pytest.param(lambda i: [SettingsFrame(0, settings={0x4: 65535 + i % 2})], id="settings"),
        pytest.param(lambda i: [SettingsFrame(0)], id="empty-settings"),
        pytest.param(lambda i: [SettingsFrame(0, flags=["ACK"])], id="settings-ack"),
        pytest.param(lambda i: [WindowUpdateFrame(0, window_increment=1)], id="window-update"),
        pytest.param(
            lambda i: [PriorityFrame(2 * i + 1, depends_on=0, stream_weight=16)], id="priority"
        ),
        # RFC 9113 5.5: an unknown frame type is ignored, but not for free.
        pytest.param(lambda i: [b"\x00\x00\x02\xfa\x00\x00\x00\x00\x00xx"], id="unknown-type"),
    ],
)
@pytest.mark.mock_clock
async def test_control_frame_flood_ends_with_enhance_your_calm(
    flood: Callable[[int], list[Frame | bytes]],
) -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                await client.flood(flood, rounds=10_000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert client.sent < 10_000
    assert growth < MEMORY_BOUND


@pytest.mark.mock_clock
async def test_window_updates_in_step_with_a_large_response_are_not_a_flood() -> None:
    # A client with RFC 9113's default 64 KiB windows (h2's own client side)
    # sends a WINDOW_UPDATE for the stream and one for the connection every
    # 32 KiB it reads: 256 for this response, more than the budget of 100.
    # They answer our DATA; only updates beyond those are a flood.
    app = App()
    async with memory_server(app, **BUDGETS) as srv:
        client = h2.connection.H2Connection(
            h2.config.H2Configuration(client_side=True, header_encoding=None)
        )
        client.initiate_connection()
        client.send_headers(1, request_block_headers("/big"), end_stream=True)
        body = 0
        ended: list[h2.events.Event] = []
        async with await open_stream(srv) as stream:
            with anyio.fail_after(5):
                while not ended:
                    await stream.send(client.data_to_send())
                    for event in client.receive_data(await stream.receive()):
                        match event:
                            case h2.events.DataReceived(data=data, stream_id=1):
                                body += len(data or b"")
                                client.acknowledge_received_data(
                                    event.flow_controlled_length or 0, 1
                                )
                            case h2.events.StreamEnded() | h2.events.ConnectionTerminated():
                                ended.append(event)
    assert isinstance(ended[0], h2.events.StreamEnded)
    assert body == BIG + 2


@pytest.mark.mock_clock
async def test_window_update_flood_on_an_open_stream_ends_with_enhance_your_calm() -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                await client.send(client.request(1))

                def nudge(_: int) -> list[Frame]:
                    return [WindowUpdateFrame(1, window_increment=1)]

                await client.flood(nudge, rounds=10_000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert client.sent < 10_000
    assert growth < MEMORY_BOUND


@pytest.mark.parametrize("padded", [False, True], ids=["empty", "padding-only"])
@pytest.mark.mock_clock
async def test_empty_data_flood_on_an_open_request_body_ends_with_enhance_your_calm(
    padded: bool,
) -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                await client.send(client.request(1, end_stream=False))

                def empty(_: int) -> list[Frame]:
                    if padded:
                        return [DataFrame(1, data=b"", flags=["PADDED"], pad_length=10)]
                    return [DataFrame(1, data=b"")]

                await client.flood(empty, rounds=10_000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert client.sent < 10_000
    assert growth < MEMORY_BOUND


@pytest.mark.mock_clock
async def test_the_connection_is_closed_after_goaway_though_an_app_still_runs() -> None:
    # RFC 9113 5.4.1: after the GOAWAY for a connection error, the TCP
    # connection is closed; an app that has not finished must not hold it.
    app = App()
    async with memory_server(app, **BUDGETS) as srv, attacker(srv) as client:
        await client.send(client.request(1))

        def ping(index: int) -> list[Frame]:
            return [PingFrame(0, opaque_data=index.to_bytes(8, "big"))]

        await client.flood(ping, rounds=10_000)
        assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
        with anyio.move_on_after(1.0):
            await client.hung_up.wait()
        assert client.hung_up.is_set()
        assert app.running == 1


# -- frames on closed streams -------------------------------------------------


@pytest.mark.parametrize(
    ("path", "end_stream", "flood"),
    [
        # RFC 9113 5.1: a closed stream's frames are ignored, but not for free.
        pytest.param("/", True, lambda i: [RstStreamFrame(1, error_code=0)], id="rst-stream"),
        pytest.param(
            "/", True, lambda i: [WindowUpdateFrame(1, window_increment=1)], id="window-update"
        ),
        # The app answers without reading the body, so the server resets the
        # stream (NO_ERROR, RFC 9113 8.1); h2 answers each DATA after that
        # with another RST_STREAM.
        pytest.param("/", False, lambda i: [DataFrame(1, data=b"x")], id="data-after-our-reset"),
    ],
)
@pytest.mark.mock_clock
async def test_frame_flood_on_a_closed_stream_ends_with_enhance_your_calm(
    path: str, end_stream: bool, flood: Callable[[int], list[Frame]]
) -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                await client.send(client.request(1, path, end_stream=end_stream))
                with anyio.fail_after(2.0):
                    await client.answered(1).wait()
                    # The stream is closed on the server now: h2 there closed
                    # it as it wrote the response's END_STREAM (the request
                    # had ended) or the RST_STREAM that followed it.
                    await client.finished(1).wait()
                    if not end_stream:
                        await client.reset(1).wait()
                await client.flood(flood, rounds=10_000)
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert client.sent < 10_000
    assert growth < MEMORY_BOUND


# -- MadeYouReset (CVE-2025-8671) -----------------------------------------------


def _data_after_end_stream(stream_id: int) -> Frame:
    return DataFrame(stream_id, data=b"x")


def _window_overflow(stream_id: int) -> Frame:
    return WindowUpdateFrame(stream_id, window_increment=2**31 - 1)


def _headers_after_end_stream(stream_id: int) -> Frame:
    return HeadersFrame(stream_id, data=b"\x82", flags=["END_HEADERS", "END_STREAM"])


@pytest.mark.parametrize(
    ("provoke", "code"),
    [
        # RFC 9113 5.1: frames other than WINDOW_UPDATE, PRIORITY and
        # RST_STREAM on a half-closed (remote) stream are STREAM_CLOSED.
        pytest.param(_data_after_end_stream, ErrorCodes.STREAM_CLOSED, id="data-after-end-stream"),
        pytest.param(
            _headers_after_end_stream, ErrorCodes.STREAM_CLOSED, id="headers-after-end-stream"
        ),
        # RFC 9113 6.9.1: a stream window past 2^31-1 is FLOW_CONTROL_ERROR.
        pytest.param(_window_overflow, ErrorCodes.FLOW_CONTROL_ERROR, id="window-overflow"),
    ],
)
@pytest.mark.mock_clock
async def test_made_you_reset_keeps_the_apps_bounded_and_ends_with_enhance_your_calm(
    provoke: Callable[[int], Frame], code: ErrorCodes
) -> None:
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                ids = stream_ids()

                def open_and_provoke(_: int) -> list[Frame]:
                    stream_id = next(ids)
                    return [client.request(stream_id), provoke(stream_id)]

                await client.flood(open_and_provoke, rounds=5000)
            growth = peak()
        await get_ok()
    # The server reset each stream with the RFC's code, in the read that
    # opened it, so none of them ever got an app.
    assert client.reset_codes() == {code}
    assert app.started == 0
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert growth < MEMORY_BOUND


@pytest.mark.mock_clock
async def test_zero_window_update_on_an_open_stream_ends_the_connection_with_protocol_error() -> (
    None
):
    # RFC 9113 6.9 makes it a stream error; 5.4.1 lets an endpoint treat a
    # stream error as a connection error, which is what h2 does here, so this
    # MadeYouReset primitive cannot be repeated at all.
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        async with attacker(srv) as client:
            ids = stream_ids()

            def open_and_provoke(_: int) -> list[Frame]:
                stream_id = next(ids)
                return [client.request(stream_id), WindowUpdateFrame(stream_id, window_increment=0)]

            await client.flood(open_and_provoke, rounds=1000)
        await get_ok()
    assert client.goaway_code() == ErrorCodes.PROTOCOL_ERROR
    assert app.started <= 1


# -- header lists over h2_max_header_list_size --------------------------------

HEADER_LIST_LIMIT = 16384


@pytest.mark.mock_clock
async def test_header_list_over_the_limit_is_answered_431_and_the_connection_goes_on() -> None:
    app = App()
    config = {**BUDGETS, "h2_max_header_list_size": HEADER_LIST_LIMIT}
    async with memory_server(app, **config) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                block = request_block(
                    client.encoder, "/", ("x-big", "v" * (HEADER_LIST_LIMIT + 100))
                )
                await client.send(*header_frames(1, block))
                # The block was decoded (HPACK state stays in step), so the
                # connection still serves the next request.
                await client.send(client.request(3, "/"))
                with anyio.move_on_after(2.0):
                    await client.answered(3).wait()
            growth = peak()
        await get_ok()
    assert client.statuses == {1: 431, 3: 200}
    assert client.goaway is None
    assert growth < MEMORY_BOUND


@pytest.mark.mock_clock
async def test_hpack_bomb_ends_the_connection_with_enhance_your_calm() -> None:
    app = App()
    config = {**BUDGETS, "h2_max_header_list_size": HEADER_LIST_LIMIT}
    async with memory_server(app, **config) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                # One 4000-byte header goes into the dynamic table, then one
                # byte each (indexed field, RFC 7541 6.1, index 62: the newest
                # entry) refers to it: 16 KiB on the wire, ~50 MB decoded.
                block = request_block(client.encoder, "/", ("x-bomb", "b" * 4000))
                block += b"\xbe" * (16384 - len(block))
                await client.send(*header_frames(1, block))
                with anyio.move_on_after(2.0):
                    await client.ended.wait()
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.ENHANCE_YOUR_CALM
    assert app.started == 0
    assert growth < MEMORY_BOUND


# -- frames over h2_max_frame_size ---------------------------------------------


@pytest.mark.mock_clock
async def test_frame_over_the_max_frame_size_is_refused_before_its_payload_is_buffered() -> None:
    # RFC 9113 4.2: a frame over SETTINGS_MAX_FRAME_SIZE is a FRAME_SIZE_ERROR;
    # its 9-byte header says so, so none of the 16 MiB it announces is kept.
    app = App()
    async with memory_server(app, **BUDGETS) as srv, bystander(srv) as get_ok:
        with memory_growth() as peak:
            async with attacker(srv) as client:
                await client.send(client.request(1, end_stream=False))
                header = (2**24 - 1).to_bytes(3, "big") + b"\x00\x00" + (1).to_bytes(4, "big")
                await client.send_bytes(header)
                payload = b"p" * 65536
                with anyio.move_on_after(ATTACK_SECONDS):
                    # The 16 MiB the header announces, unless the server ends it first.
                    for _ in range(256):
                        if client.ended.is_set() or not await client.send_bytes(payload):
                            break
                with anyio.move_on_after(ATTACK_SECONDS):
                    await client.ended.wait()
            growth = peak()
        await get_ok()
    assert client.goaway_code() == ErrorCodes.FRAME_SIZE_ERROR
    assert growth < 4 * 1024 * 1024
