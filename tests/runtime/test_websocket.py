"""WebSocket over HTTP/1.1 against raw clients: bad frames, keepalive, backpressure, handshakes.

The client is wsproto's client side over an in-memory connection to the real
runtime (a TCP stream where a test needs the socket, or lifespan), plus frames
built by hand for what a conforming client never sends. The application is a real
ASGI callable that records what it saw, so each test checks both ends.
"""

from __future__ import annotations

import contextlib
import struct
import zlib
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import anyio
import anyio.abc
import pytest
import wsproto
import wsproto.events as ws_events
from wsproto.extensions import PerMessageDeflate

from tests.conftest import running_server
from tricorn.errors import ClientDisconnected

from ._memory import assert_took, memory_server
from ._support import (
    WAIT,
    Endpoint,
    open_stream,
    request,
    server,
    watch_log,
    websocket_until_disconnect,
)

pytestmark = pytest.mark.anyio

KiB = 1024
TEXT, BINARY, CLOSE, PING = 0x1, 0x2, 0x8, 0x9
_MASK = b"\x37\xfa\x21\x3d"
_HANDSHAKE_HEADERS = [
    ("Upgrade", "websocket"),
    ("Connection", "Upgrade"),
    ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
    ("Sec-WebSocket-Version", "13"),
]


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, rsv1: bool = False, mask: bool = True
) -> bytes:
    """One frame built by hand (RFC 6455 5.2), masked as a client must unless told not to."""
    head = bytes([(0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode])
    mask_bit = 0x80 if mask else 0
    length = len(payload)
    if length < 126:
        head += bytes([mask_bit | length])
    elif length < 1 << 16:
        head += bytes([mask_bit | 126]) + struct.pack("!H", length)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", length)
    if not mask:
        return head + payload
    masked = bytes(byte ^ _MASK[index % 4] for index, byte in enumerate(payload))
    return head + _MASK + masked


def deflate(data: bytes) -> bytes:
    """A permessage-deflate payload (RFC 7692 7.2.1): raw deflate, sync flush, tail removed."""
    compressor = zlib.compressobj(wbits=-15)
    out = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


class WSClient:
    """wsproto's client side over a byte stream; raw bytes may be sent around it."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.ws = wsproto.WSConnection(wsproto.ConnectionType.CLIENT)
        self.eof = False
        self.accepted: ws_events.AcceptConnection | None = None

    def handshake_bytes(
        self,
        target: str = "/",
        *,
        subprotocols: Sequence[str] = (),
        deflate: bool = False,
    ) -> bytes:
        extensions: list[Any] = [PerMessageDeflate()] if deflate else []
        return self.ws.send(
            ws_events.Request(
                host="test", target=target, subprotocols=list(subprotocols), extensions=extensions
            )
        )

    async def handshake(
        self, target: str = "/", *, subprotocols: Sequence[str] = (), deflate: bool = False
    ) -> ws_events.AcceptConnection:
        await self.stream.send(
            self.handshake_bytes(target, subprotocols=subprotocols, deflate=deflate)
        )
        event = await self.next_event()
        assert isinstance(event, ws_events.AcceptConnection), event
        self.accepted = event
        return event

    async def send(self, event: ws_events.Event) -> None:
        await self.stream.send(self.ws.send(event))

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send(data)

    async def _read(self) -> None:
        try:
            data: bytes | None = await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            data = None
        if data is None:
            # Not fed to wsproto, which would make up a 1006 close event.
            self.eof = True
        else:
            self.ws.receive_data(data)

    async def next_event(self, within: float = WAIT) -> ws_events.Event | None:
        """The next wsproto event, or None once the server closed the TCP connection."""
        with anyio.fail_after(within):
            while True:
                for event in self.ws.events():
                    return event
                if self.eof:
                    return None
                await self._read()

    async def close_frame(self, within: float = WAIT) -> tuple[int, str | None]:
        """Read up to the server's close frame (answering pings); its code and reason."""
        with anyio.fail_after(within):
            while True:
                event = await self.next_event()
                if isinstance(event, ws_events.CloseConnection):
                    return int(event.code), event.reason
                if isinstance(event, ws_events.Ping):
                    await self.send(event.response())
                    continue
                raise AssertionError(f"expected a close frame, got {event!r}")

    async def eof_after(self, within: float = WAIT) -> list[ws_events.Event]:
        """Read everything until the server closes the TCP connection."""
        events: list[ws_events.Event] = []
        with anyio.fail_after(within):
            while (event := await self.next_event(within)) is not None:
                events.append(event)
        return events


@asynccontextmanager
async def ws_client(endpoint: Endpoint) -> AsyncIterator[WSClient]:
    """A WebSocket client connected to an address or an in-memory server."""
    stream = await open_stream(endpoint)
    async with stream:
        yield WSClient(stream)


@dataclass
class Recorder:
    """An ASGI WebSocket app that accepts, records every message, and ends on disconnect.

    With ``echo`` it sends each message back; with ``send_after_disconnect``
    it tries one more send and keeps what it raised in ``send_errors``.
    """

    echo: bool = False
    accept: bool = True
    send_after_disconnect: bool = False
    scopes: list[dict[str, Any]] = field(default_factory=list)
    messages: list[dict[str, Any]] = field(default_factory=list)
    send_errors: list[BaseException] = field(default_factory=list)
    calls: int = 0
    connected: anyio.Event = field(default_factory=anyio.Event)
    done: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.calls += 1
        self.scopes.append(scope)
        try:
            if scope["type"] != "websocket":
                await send({"type": "http.response.start", "status": 200, "headers": []})
                await send({"type": "http.response.body", "body": b"plain http"})
                return
            assert (await receive()) == {"type": "websocket.connect"}
            if self.accept:
                await send({"type": "websocket.accept"})
            self.connected.set()
            while True:
                message = await receive()
                self.messages.append(message)
                if message["type"] == "websocket.disconnect":
                    break
                if self.echo:
                    await send({**message, "type": "websocket.send"})
            if self.send_after_disconnect:
                try:
                    await send({"type": "websocket.send", "text": "too late"})
                except Exception as exc:
                    self.send_errors.append(exc)
        finally:
            self.done.set()

    async def wait_done(self, within: float = WAIT) -> None:
        with anyio.fail_after(within):
            await self.done.wait()

    @property
    def disconnect(self) -> dict[str, Any]:
        assert self.messages, "the app saw no message"
        last = self.messages[-1]
        assert last["type"] == "websocket.disconnect", self.messages
        return last


# -- frames right behind the handshake -------------------------------------------


async def test_frame_pipelined_behind_the_handshake_reaches_the_app() -> None:
    app = Recorder(echo=True)
    async with memory_server(app) as srv, ws_client(srv) as client:
        data = client.handshake_bytes() + frame(TEXT, b"right behind")
        await client.send_raw(data)
        accepted = await client.next_event()
        assert isinstance(accepted, ws_events.AcceptConnection)
        echoed = await client.next_event()
        assert isinstance(echoed, ws_events.TextMessage)
        assert echoed.data == "right behind"
        await client.send(ws_events.CloseConnection(1000))
        assert await client.close_frame() == (1000, "")
        await app.wait_done()
    assert app.messages[0] == {"type": "websocket.receive", "text": "right behind"}


# -- the client goes away ----------------------------------------------------------


async def test_client_vanishing_gives_1006_and_a_later_send_raises_client_disconnected() -> None:
    app = Recorder(send_after_disconnect=True)
    async with memory_server(app) as srv:
        async with ws_client(srv) as client:
            await client.handshake()
            with anyio.fail_after(WAIT):
                await app.connected.wait()
        await app.wait_done()
    assert app.messages == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]
    [error] = app.send_errors
    assert isinstance(error, ClientDisconnected)
    assert isinstance(error, OSError)


async def test_client_vanishing_mid_message_gives_1006_and_no_partial_message() -> None:
    app = Recorder()
    async with memory_server(app) as srv:
        async with ws_client(srv) as client:
            await client.handshake()
            await client.send_raw(frame(TEXT, b"first half", fin=False))
            with anyio.fail_after(WAIT):
                await app.connected.wait()
        await app.wait_done()
    assert app.messages == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


async def test_close_frame_without_a_code_gives_1005_to_the_app() -> None:
    app = Recorder()
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(frame(CLOSE, b""))
        code, _ = await client.close_frame()
        # RFC 6455 7.4.1: 1005 must not be put in a close frame; the answer may
        # be empty (wsproto reads that as 1005) or a normal closure.
        assert code in (1000, 1005)
        assert await client.eof_after() == []
        await app.wait_done()
    assert app.messages == [{"type": "websocket.disconnect", "code": 1005, "reason": ""}]


async def test_client_leaving_before_accept_gives_the_app_a_disconnect() -> None:
    app = Recorder(accept=False)
    async with memory_server(app) as srv:
        async with ws_client(srv) as client:
            await client.send_raw(client.handshake_bytes())
            with anyio.fail_after(WAIT):
                await app.connected.wait()
        await app.wait_done(within=1)
    assert app.messages == [{"type": "websocket.disconnect", "code": 1006, "reason": ""}]


async def test_messages_sent_before_the_close_reach_the_app_before_the_disconnect() -> None:
    release = anyio.Event()
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while (message := await receive())["type"] != "websocket.disconnect":
            received.append(message)
        received.append(message)

    messages = [frame(TEXT, b"m%d" % n) for n in range(20)]
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(b"".join(messages) + frame(CLOSE, struct.pack("!H", 1000)))
        release.set()
        assert await client.close_frame() == (1000, "")
        assert await client.eof_after() == []
    assert received == [
        *({"type": "websocket.receive", "text": f"m{n}"} for n in range(20)),
        {"type": "websocket.disconnect", "code": 1000, "reason": ""},
    ]


# -- protocol violations -----------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "code"),
    [
        pytest.param(frame(TEXT, b"bad \xff\xfe utf-8"), 1007, id="invalid-utf8-text"),
        pytest.param(frame(TEXT, b"unmasked", mask=False), 1002, id="unmasked"),
        pytest.param(frame(0x3, b"reserved"), 1002, id="reserved-opcode"),
        pytest.param(frame(CLOSE, struct.pack("!H", 999)), 1002, id="close-code-999"),
        pytest.param(frame(CLOSE, struct.pack("!H", 1005)), 1002, id="close-code-1005"),
        pytest.param(frame(PING, b"p" * 126), 1002, id="ping-over-125"),
        pytest.param(frame(TEXT, b"abc", rsv1=True), 1002, id="rsv1-without-deflate"),
        pytest.param(bytes([0xA1, 0x80]) + _MASK, 1002, id="rsv2-set"),
        pytest.param(frame(CLOSE, b"\x03"), 1002, id="close-payload-of-one-byte"),
        pytest.param(
            frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007, id="close-reason-invalid-utf8"
        ),
        pytest.param(frame(PING, b"", fin=False), 1002, id="fragmented-ping"),
        pytest.param(frame(0x0, b"orphan"), 1002, id="continuation-without-start"),
        pytest.param(
            frame(TEXT, b"first", fin=False) + frame(TEXT, b"second"),
            1002,
            id="new-message-inside-a-fragmented-one",
        ),
    ],
)
async def test_protocol_violation_closes_with_the_rfc_code(data: bytes, code: int) -> None:
    app = Recorder()
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(data)
        assert (await client.close_frame())[0] == code
        # The server closes the TCP connection once its close frame is out.
        assert await client.eof_after() == []
        await app.wait_done()
    assert app.disconnect["code"] == code
    assert [m["type"] for m in app.messages] == ["websocket.disconnect"]


async def test_connection_stays_usable_before_a_violation() -> None:
    """The parametrized violations above are not closed for some other reason."""
    app = Recorder(echo=True)
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(frame(TEXT, "ünïcode ok".encode()))
        event = await client.next_event()
        assert isinstance(event, ws_events.TextMessage)
        assert event.data == "ünïcode ok"
        await client.send_raw(frame(PING, b"p" * 125))
        pong = await client.next_event()
        assert isinstance(pong, ws_events.Pong)
        assert pong.payload == b"p" * 125
        await client.send_raw(frame(CLOSE, struct.pack("!H", 4999) + b"bye"))
        assert await client.close_frame() == (4999, "")
        await app.wait_done()
    assert app.disconnect == {"type": "websocket.disconnect", "code": 4999, "reason": "bye"}


# -- compression and message size --------------------------------------------------


async def test_compressed_frame_when_deflate_was_declined_closes_with_1002() -> None:
    app = Recorder()
    async with (
        memory_server(app, ws_per_message_deflate=False) as srv,
        ws_client(srv) as client,
    ):
        accepted = await client.handshake(deflate=True)
        assert accepted.extensions == []
        await client.send_raw(frame(TEXT, deflate(b"hello hello hello"), rsv1=True))
        assert (await client.close_frame())[0] == 1002
        await app.wait_done()
    assert app.disconnect["code"] == 1002


async def test_server_compresses_what_it_sends_when_deflate_is_negotiated() -> None:
    payload = "compress me " * 10_000

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": payload})
        await send({"type": "websocket.close", "code": 1000})

    async with memory_server(app) as srv, ws_client(srv) as client:
        accepted = await client.handshake(deflate=True)
        assert [ext.name for ext in accepted.extensions] == ["permessage-deflate"]
        wire = bytearray()
        events: list[ws_events.Event] = []
        with anyio.fail_after(WAIT):
            while not any(isinstance(e, ws_events.CloseConnection) for e in events):
                data = await client.stream.receive()
                wire += data
                client.ws.receive_data(data)
                events.extend(client.ws.events())
        await client.send(ws_events.CloseConnection(1000))
        assert await client.eof_after() == []
    texts = [e for e in events if isinstance(e, ws_events.TextMessage)]
    assert "".join(e.data for e in texts) == payload
    assert len(wire) < len(payload) // 20


async def test_compressed_message_within_the_limit_is_inflated_for_the_app() -> None:
    app = Recorder()
    async with (
        memory_server(app, ws_max_message_size=1024) as srv,
        ws_client(srv) as client,
    ):
        await client.handshake(deflate=True)
        await client.send_raw(frame(BINARY, deflate(b"\0" * 1024), rsv1=True))
        await client.send(ws_events.CloseConnection(1000))
        assert await client.close_frame() == (1000, "")
        await app.wait_done()
    assert app.messages[0] == {"type": "websocket.receive", "bytes": b"\0" * 1024}
    assert app.disconnect["code"] == 1000


async def test_deflate_bomb_closes_with_1009_before_inflating() -> None:
    app = Recorder()
    bomb = deflate(b"\0" * (4 * 1024 * KiB))
    assert len(bomb) < 8 * KiB
    async with (
        memory_server(app, ws_max_message_size=1024) as srv,
        ws_client(srv) as client,
    ):
        accepted = await client.handshake(deflate=True)
        assert [ext.name for ext in accepted.extensions] == ["permessage-deflate"]
        await client.send_raw(frame(BINARY, bomb, rsv1=True))
        assert (await client.close_frame())[0] == 1009
        await app.wait_done()
    assert app.disconnect["code"] == 1009
    assert [m["type"] for m in app.messages] == ["websocket.disconnect"]


async def test_fragmented_message_over_the_limit_closes_with_1009() -> None:
    app = Recorder()
    async with (
        memory_server(app, ws_max_message_size=1024) as srv,
        ws_client(srv) as client,
    ):
        await client.handshake()
        await client.send_raw(frame(BINARY, b"a" * 600, fin=False))
        await client.send_raw(frame(0x0, b"b" * 600))
        assert (await client.close_frame())[0] == 1009
        await app.wait_done()
    assert app.disconnect["code"] == 1009


# -- keepalive ---------------------------------------------------------------------


@pytest.mark.mock_clock
async def test_server_sends_keepalive_pings_and_a_client_that_answers_stays_open(
    virtual_time: bool,
) -> None:
    app = Recorder(echo=True)
    pings = 0
    options = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.3}
    async with memory_server(app, **options) as srv, srv.connect() as stream:
        client = WSClient(stream)
        await client.handshake()
        with anyio.move_on_after(1.1):
            while True:
                event = await client.next_event()
                assert isinstance(event, ws_events.Ping), event
                pings += 1
                await client.send(event.response())
        await client.send(ws_events.TextMessage("still here"))
        event = await client.next_event()
        while isinstance(event, ws_events.Ping):
            await client.send(event.response())
            event = await client.next_event()
        assert isinstance(event, ws_events.TextMessage)
        assert event.data == "still here"
    assert pings >= 1
    if virtual_time:
        assert pings == 5  # one each 0.2 s within 1.1 s


@pytest.mark.mock_clock
async def test_client_that_never_answers_pings_is_dropped_and_the_app_sees_1006(
    virtual_time: bool,
) -> None:
    app = Recorder()
    options = {"ws_ping_interval": 0.2, "ws_ping_timeout": 0.3}
    async with memory_server(app, **options) as srv, srv.connect() as stream:
        client = WSClient(stream)
        await client.handshake()
        start = anyio.current_time()
        events = await client.eof_after(within=3)
        elapsed = anyio.current_time() - start
        await app.wait_done()
    assert events
    assert all(isinstance(event, ws_events.Ping) for event in events), events
    assert app.disconnect["code"] == 1006
    assert_took(elapsed, 0.5, virtual_time)  # the first ping, then its timeout


# -- backpressure ------------------------------------------------------------------

# On loopback sockets: what bounds a transport here is its buffer in bytes. The
# in-memory pair bounds the number of writes, and would hold sixteen 4 MiB answers.


async def test_send_blocks_while_the_client_does_not_read() -> None:
    sent = 0
    failure: list[BaseException] = []
    finished = anyio.Event()
    chunk = {"type": "websocket.send", "bytes": b"x" * (64 * KiB)}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal sent
        await receive()
        await send({"type": "websocket.accept"})
        try:
            with anyio.fail_after(20):
                while True:
                    await send(chunk)
                    sent += 1
        except OSError as exc:
            failure.append(exc)
        finally:
            finished.set()

    async with running_server(app, lifespan="off") as address:
        async with ws_client(address) as client:
            await client.handshake()
            with anyio.fail_after(10):
                # Every task waits (the app's send on the full socket) once
                # the buffers are full: nothing moves until the client reads.
                await anyio.wait_all_tasks_blocked()
            # Loopback socket buffers hold a few MiB; without backpressure the
            # app would have queued hundreds of MiB by now.
            assert 0 < sent < 256
        with anyio.fail_after(WAIT):
            await finished.wait()
    [error] = failure
    assert isinstance(error, ClientDisconnected)


# -- replies to messages that arrive together ------------------------------------


async def test_replies_to_a_burst_of_messages_arrive_in_order() -> None:
    app = Recorder(echo=True)
    burst = [b"m%d" % n for n in range(50)]
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(b"".join(frame(TEXT, text) for text in burst))
        echoes = [await client.next_event() for _ in burst]
        assert echoes == [ws_events.TextMessage(text.decode()) for text in burst]
        await client.send(ws_events.CloseConnection(1000))
        assert await client.close_frame() == (1000, "")


async def test_a_reply_goes_out_while_the_app_waits_on_something_else() -> None:
    # The second message is already waiting when the app answers the first,
    # so that answer is not written at once; it must not wait for the app's
    # next write or receive.
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        first = await receive()
        await send({"type": "websocket.send", "text": "re: " + first["text"]})
        await release.wait()
        second = await receive()
        await send({"type": "websocket.send", "text": "re: " + second["text"]})
        await receive()

    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.handshake()
        await client.send_raw(frame(TEXT, b"one") + frame(TEXT, b"two"))
        assert await client.next_event() == ws_events.TextMessage("re: one")
        release.set()
        assert await client.next_event() == ws_events.TextMessage("re: two")
        await client.send(ws_events.CloseConnection(1000))
        assert await client.close_frame() == (1000, "")


async def test_echoing_to_a_client_that_does_not_read_blocks_the_app() -> None:
    echoed = 0

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal echoed
        await receive()
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "bytes": message["bytes"]})
            echoed += 1

    message = frame(BINARY, b"x" * (16 * KiB))
    async with running_server(app, lifespan="off") as address, ws_client(address) as client:
        await client.handshake()
        # The client writes 32 MiB and reads nothing: once the socket buffers
        # are full both ways, the app's sends and then the client's writes stop.
        async with anyio.create_task_group() as tasks:

            async def flood() -> None:
                for _ in range(2048):
                    await client.send_raw(message)

            tasks.start_soon(flood)
            with anyio.fail_after(10):
                await anyio.wait_all_tasks_blocked()
            tasks.cancel_scope.cancel()
        # Loopback buffers hold a few MiB; the app must have stopped well short.
        assert 0 < echoed < 1024


async def test_big_replies_to_a_burst_wait_for_the_transport() -> None:
    # Sixteen requests arrive in one read and each gets a 4 MiB answer that
    # the client never reads. Answers past the first wait for the transport,
    # so the server holds a few of them at most, not all sixteen.
    answered = 0
    first = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        nonlocal answered
        await receive()
        await send({"type": "websocket.accept"})
        with contextlib.suppress(OSError):
            while (await receive())["type"] == "websocket.receive":
                await send({"type": "websocket.send", "bytes": bytes(4 * 1024 * KiB)})
                answered += 1
                first.set()

    async with running_server(app, lifespan="off") as address:
        async with ws_client(address) as client:
            await client.handshake()
            await client.send_raw(frame(TEXT, b"go") * 16)
            with anyio.fail_after(10):
                # The kernel takes the first answer as its buffers grow; only
                # then is "every task waits" the state the test is about.
                await first.wait()
                await anyio.wait_all_tasks_blocked()
        assert 0 < answered <= 8


async def test_shutdown_before_accept_closes_with_1001_once_accepted() -> None:
    connected, release = anyio.Event(), anyio.Event()
    received: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await receive()
        connected.set()
        await release.wait()
        await send({"type": "websocket.accept"})
        received.append(await receive())

    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.send_raw(client.handshake_bytes())
        with anyio.fail_after(WAIT):
            await connected.wait()
        srv.shutdown()
        release.set()
        accepted = await client.next_event()
        assert isinstance(accepted, ws_events.AcceptConnection)
        assert await client.close_frame() == (1001, "server shutting down")
        await client.send(ws_events.CloseConnection(1001))
        assert await client.eof_after() == []
        await srv.wait_closed()
    assert received == [
        {"type": "websocket.disconnect", "code": 1001, "reason": "server shutting down"}
    ]


# -- handshakes the server refuses -------------------------------------------------


@pytest.mark.parametrize(
    ("method", "headers", "status"),
    [
        pytest.param(
            "GET",
            [*_HANDSHAKE_HEADERS[:2], ("Sec-WebSocket-Key", "short"), _HANDSHAKE_HEADERS[3]],
            400,
            id="bad-key",
        ),
        pytest.param(
            "GET", [*_HANDSHAKE_HEADERS[:3], ("Sec-WebSocket-Version", "8")], 426, id="version-8"
        ),
        pytest.param(
            "GET",
            [_HANDSHAKE_HEADERS[0], ("Connection", "keep-alive"), *_HANDSHAKE_HEADERS[2:]],
            400,
            id="no-connection-upgrade",
        ),
        pytest.param("POST", _HANDSHAKE_HEADERS, 400, id="post"),
    ],
)
async def test_invalid_handshake_is_refused_without_calling_the_app(
    method: str, headers: list[tuple[str, str]], status: int
) -> None:
    app = Recorder()
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request(method, "/chat", headers))
        response = await client.response(method.encode())
        await client.assert_closed()
    assert response.status_code == status
    if status == 426:
        assert response.header(b"sec-websocket-version") == b"13"
    assert app.calls == 0


async def test_valid_handshake_from_raw_bytes_is_accepted() -> None:
    """The refusals above differ from an accepted handshake by one header only."""
    app = Recorder()
    async with memory_server(app) as srv, ws_client(srv) as client:
        await client.send_raw(request("GET", "/chat", _HANDSHAKE_HEADERS))
        data = b""
        with anyio.fail_after(WAIT):
            while b"\r\n\r\n" not in data:
                data += await client.stream.receive()
    status_line, *lines = data.split(b"\r\n\r\n")[0].split(b"\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (x.partition(b":") for x in lines)}
    assert status_line.startswith(b"HTTP/1.1 101 ")
    # RFC 6455 1.3: the accept token for the RFC's own sample nonce.
    assert headers[b"sec-websocket-accept"] == b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
    assert app.calls == 1


async def test_upgrade_reaches_the_app_as_http_with_ws_none() -> None:
    app = Recorder()
    async with memory_server(app, ws="none") as srv, srv.client() as client:
        await client.send(request("GET", "/chat", _HANDSHAKE_HEADERS))
        response = await client.response()
    assert response.status_code == 200
    assert response.body == b"plain http"
    [scope] = app.scopes
    assert scope["type"] == "http"
    assert scope["path"] == "/chat"


# -- graceful shutdown -------------------------------------------------------------


async def test_shutdown_closes_a_raw_websocket_with_1001_before_lifespan_shutdown() -> None:
    order: list[str] = []
    accepted = anyio.Event()
    app = websocket_until_disconnect(order, accepted)

    with watch_log() as log:
        async with server(app) as handle, ws_client(handle.address) as client:
            await client.handshake()
            with anyio.fail_after(WAIT):
                await accepted.wait()
            handle.shutdown()
            await log.wait_for("shutting down")
            code, reason = await client.close_frame()
            await client.send(ws_events.CloseConnection(code))
            assert await client.eof_after() == []
            await handle.wait_stopped()
    assert code == 1001
    assert reason == "server shutting down"
    assert order == ["lifespan.startup", "websocket.disconnect 1001", "lifespan.shutdown"]
