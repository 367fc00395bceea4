"""Helpers for the runtime tests: a raw HTTP/1.1 client, a controllable server, a log watcher.

The raw client writes request bytes by hand (so tests can send anything,
including garbage) and parses responses with h11's client side.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol

import anyio
import anyio.abc
import h11

import tricorn

#: Every wait in these tests is bounded; this is the default bound.
WAIT: float = 2.0


@dataclass
class Response:
    status_code: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    informational: list[int] = field(default_factory=list)

    def header(self, name: bytes) -> bytes | None:
        values = self.header_values(name)
        return values[0] if values else None

    def header_values(self, name: bytes) -> list[bytes]:
        return [value for key, value in self.headers if key == name.lower()]


class RawClient:
    """One client connection: raw bytes out, h11-parsed events in."""

    def __init__(self, stream: anyio.abc.ByteStream) -> None:
        self.stream = stream
        self.h11 = h11.Connection(h11.CLIENT)

    async def send(self, data: bytes) -> None:
        await self.stream.send(data)

    def expect(self, method: bytes = b"GET", http_version: bytes = b"1.1") -> None:
        """Tell the h11 client side which request the next response answers.

        The bytes were (or will be) written by hand; h11 only needs the method
        (HEAD responses have no body) and its own state moved to "request sent".
        """
        if self.h11.our_state is h11.DONE and self.h11.their_state is h11.DONE:
            self.h11.start_next_cycle()
        headers = [(b"host", b"test")]
        if http_version == b"1.0":
            # h11 only writes HTTP/1.1; an HTTP/1.0 request means "close after this".
            headers.append((b"connection", b"close"))
        self.h11.send(h11.Request(method=method, target=b"/", headers=headers))
        self.h11.send(h11.EndOfMessage())

    async def receive_some(self) -> bytes:
        """Bytes from the server, or b"" once it closed (or reset) the connection."""
        try:
            return await self.stream.receive()
        except (anyio.EndOfStream, anyio.BrokenResourceError):
            return b""

    async def next_event(self) -> Any:
        """The next h11 event from the server (never NEED_DATA)."""
        with anyio.fail_after(WAIT):
            while True:
                event = self.h11.next_event()
                if event is not h11.NEED_DATA:
                    return event
                self.h11.receive_data(await self.receive_some())

    async def response(self, method: bytes = b"GET", http_version: bytes = b"1.1") -> Response:
        """Read one complete response (1xx responses are collected on the way)."""
        self.expect(method, http_version)
        return await self.read_response()

    async def read_response(self) -> Response:
        informational: list[int] = []
        while True:
            event = await self.next_event()
            if isinstance(event, h11.InformationalResponse):
                informational.append(event.status_code)
                continue
            assert isinstance(event, h11.Response), event
            break
        body = await self.read_body()
        return Response(event.status_code, list(event.headers), body, informational)

    async def read_body(self) -> bytes:
        """The rest of the current response body, up to its end."""
        body = bytearray()
        while True:
            event = await self.next_event()
            if isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(body)
            else:
                raise AssertionError(f"unexpected event {event!r}")

    async def closed_by_server(self, within: float = WAIT) -> bool:
        """Whether the server closes the connection (reading anything left) ``within`` seconds."""
        with anyio.move_on_after(within):
            while await self.receive_some():
                pass
            return True
        return False

    async def assert_closed(self) -> None:
        """The server closes with nothing more said: h11 sees ConnectionClosed."""
        event = await self.next_event()
        assert isinstance(event, h11.ConnectionClosed), event


class Connectable(Protocol):
    """A server a test reaches without a socket (``_memory.MemoryServer``)."""

    def connect(self) -> anyio.abc.ByteStream: ...


#: Where a test client connects: an address (``host:port``, ``[v6]:port``,
#: ``unix:path``) or an in-memory server.
Endpoint = str | Connectable


async def open_stream(endpoint: Endpoint) -> anyio.abc.ByteStream:
    """A new connection to ``endpoint``: a socket for an address, else an in-memory pair."""
    if not isinstance(endpoint, str):
        return endpoint.connect()
    with anyio.fail_after(WAIT):
        if endpoint.startswith("unix:"):
            return await anyio.connect_unix(endpoint[len("unix:") :])
        host, _, port = endpoint.rpartition(":")
        return await anyio.connect_tcp(host.strip("[]"), int(port))


@asynccontextmanager
async def raw_client(endpoint: Endpoint) -> AsyncIterator[RawClient]:
    """A raw client connected to ``endpoint`` (an address or an in-memory server)."""
    stream = await open_stream(endpoint)
    async with stream:
        yield RawClient(stream)


def request(
    method: str = "GET",
    target: str = "/",
    headers: Sequence[tuple[str, str]] = (),
    body: bytes = b"",
    *,
    http_version: str = "1.1",
) -> bytes:
    """Request bytes, written by hand. A Host header is added unless given."""
    lines = [f"{method} {target} HTTP/{http_version}"]
    if not any(name.lower() == "host" for name, _ in headers):
        lines.append("Host: test")
    lines.extend(f"{name}: {value}" for name, value in headers)
    if body and not any(
        name.lower() in ("content-length", "transfer-encoding") for name, _ in headers
    ):
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body


@dataclass
class Server:
    addresses: list[str]
    _scope: anyio.CancelScope
    stopped: anyio.Event

    @property
    def address(self) -> str:
        return self.addresses[0]

    def shutdown(self) -> None:
        """Begin a graceful shutdown: cancel the scope serve runs in."""
        self._scope.cancel()

    async def wait_stopped(self, within: float = WAIT) -> None:
        with anyio.fail_after(within):
            await self.stopped.wait()


@asynccontextmanager
async def server(app: Any, **options: Any) -> AsyncIterator[Server]:
    """Serve ``app`` with Config ``options``; the handle can shut it down mid-test."""
    options.setdefault("bind", ("127.0.0.1:0",))
    options.setdefault("access_log", False)
    config = tricorn.Config(**options)
    scope = anyio.CancelScope()
    stopped = anyio.Event()

    async def run(*, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        try:
            with scope:
                await tricorn.serve(app, config, task_status=task_status)
        finally:
            stopped.set()

    async with anyio.create_task_group() as task_group:
        with anyio.fail_after(WAIT):
            addresses = await task_group.start(run)
        handle = Server(addresses, scope, stopped)
        try:
            yield handle
        finally:
            scope.cancel()


class LogWatcher(logging.Handler):
    """Collects ``tricorn.error`` records; tests wait for a message to appear."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self._waiters: list[tuple[str, anyio.Event]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)
        message = record.getMessage()
        for text, event in self._waiters:
            if text in message:
                event.set()

    def messages(self) -> list[str]:
        return [record.getMessage() for record in self.records]

    async def wait_for(self, text: str, within: float = WAIT) -> None:
        if any(text in message for message in self.messages()):
            return
        event = anyio.Event()
        self._waiters.append((text, event))
        try:
            with anyio.fail_after(within):
                await event.wait()
        finally:
            self._waiters.remove((text, event))


@contextmanager
def watch_log() -> Iterator[LogWatcher]:
    logger = logging.getLogger("tricorn.error")
    watcher = LogWatcher()
    saved = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(watcher)
    try:
        yield watcher
    finally:
        logger.removeHandler(watcher)
        logger.setLevel(saved)


async def ok_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers every HTTP request 200 "ok"; completes lifespan."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    await send(
        {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
    )
    await send({"type": "http.response.body", "body": b"ok"})


async def accepted_websocket(scope: Any, receive: Any, send: Any) -> bool:
    """Serve lifespan (False), or take the connect and accept the WebSocket (True)."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return False
    await receive()
    await send({"type": "websocket.accept"})
    return True


async def lifespan_ok(receive: Any, send: Any) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


async def record_lifespan(order: list[str], receive: Any, send: Any) -> None:
    """Complete every lifespan message, appending its type to ``order``."""
    while True:
        message = await receive()
        order.append(message["type"])
        await send({"type": message["type"] + ".complete"})
        if message["type"] == "lifespan.shutdown":
            return


def websocket_until_disconnect(order: list[str], accepted: anyio.Event) -> Any:
    """An app that records its lifespan and the code its accepted WebSocket ends with."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await record_lifespan(order, receive, send)
            return
        await receive()
        await send({"type": "websocket.accept"})
        accepted.set()
        message = await receive()
        order.append(f"{message['type']} {message['code']}")

    return app


async def read_body(receive: Any) -> tuple[bytes, list[dict[str, Any]]]:
    """The whole request body and the messages it came in."""
    body = bytearray()
    messages = []
    while True:
        message = await receive()
        messages.append(message)
        if message["type"] != "http.request":
            break
        body += message.get("body", b"")
        if not message.get("more_body", False):
            break
    return bytes(body), messages


async def stream_until_send_fails(send: Any, streaming: anyio.Event) -> None:
    """Start a response, set ``streaming``, then send chunks until send() raises."""
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"tick", "more_body": True})
    streaming.set()
    chunk = {"type": "http.response.body", "body": b"x" * 65536, "more_body": True}
    with anyio.fail_after(WAIT):
        while True:
            await send(chunk)


async def request_then_leave(app: Any, streaming: anyio.Event, done: anyio.Event) -> None:
    """Serve ``app`` in memory, send one request, leave once it is streaming, await ``done``."""
    from ._memory import memory_server

    async with memory_server(app) as srv:
        async with srv.client() as client:
            await client.send(request())
            with anyio.fail_after(WAIT):
                await streaming.wait()
        with anyio.fail_after(WAIT):
            await done.wait()


@asynccontextmanager
async def connected() -> AsyncIterator[tuple[socket.socket, anyio.abc.SocketStream]]:
    """An accepted, non-blocking server socket and the client's stream, over loopback."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with anyio.fail_after(WAIT):
            client = await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1])
            accepted, _ = listener.accept()
        accepted.setblocking(False)
        async with client:
            try:
                yield accepted, client
            finally:
                accepted.close()
    finally:
        listener.close()
