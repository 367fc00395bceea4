"""The transport's contract, the same on every backend: asyncio's protocol-based stream,
uvloop's, and trio's through anyio (see tricorn/_runtime/transport.py), in cleartext
and over TLS (the event loop's own TLS on asyncio and uvloop, anyio's on trio)."""

from __future__ import annotations

import os
import socket
import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSStream

from tricorn._runtime.transport import WriteTimeout, open_socket_stream, open_tls_stream

from ._support import WAIT

pytestmark = pytest.mark.anyio

#: Every contract test runs on each of these, on every backend.
KINDS = ("plain", "tls")


@pytest.fixture(scope="module")
def contexts() -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for 127.0.0.1, and a client context that trusts it."""
    ca = trustme.CA()
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    return server, client


@pytest.fixture(params=KINDS)
def kind(request: pytest.FixtureRequest) -> str:
    value: str = request.param
    return value


@pytest.fixture
def make_pair(kind: str, contexts: tuple[ssl.SSLContext, ssl.SSLContext]) -> Any:
    def make(write_timeout: float = 30.0) -> Any:
        return pair(write_timeout, contexts if kind == "tls" else None)

    return make


@asynccontextmanager
async def pair(
    write_timeout: float = 30.0,
    tls: tuple[ssl.SSLContext, ssl.SSLContext] | None = None,
) -> AsyncIterator[tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]]:
    """A server end (the transport under test) and a client end, over loopback TCP."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with anyio.fail_after(WAIT):
            client: anyio.abc.ByteStream = await anyio.connect_tcp(
                "127.0.0.1", listener.getsockname()[1]
            )
            accepted, _ = listener.accept()
            accepted.setblocking(False)
            if tls is None:
                server = await open_socket_stream(accepted, write_timeout)
            else:
                server, client = await handshake(accepted, client, tls, write_timeout)
        async with client, server:
            yield server, client
    finally:
        listener.close()


async def handshake(
    accepted: socket.socket,
    client: anyio.abc.ByteStream,
    contexts: tuple[ssl.SSLContext, ssl.SSLContext],
    write_timeout: float,
) -> tuple[anyio.abc.ByteStream, anyio.abc.ByteStream]:
    """Both ends of a TLS handshake: the transport's server end, anyio's client end."""
    servers: list[anyio.abc.ByteStream] = []

    async def serve() -> None:
        servers.append(await open_tls_stream(accepted, contexts[0], write_timeout, WAIT))

    async with anyio.create_task_group() as task_group:
        task_group.start_soon(serve)
        wrapped = await TLSStream.wrap(
            client, hostname="127.0.0.1", ssl_context=contexts[1], standard_compatible=False
        )
    return servers[0], wrapped


async def finish(client: anyio.abc.ByteStream) -> None:
    """The client is done sending: a half-close; over TLS, the TCP half-close of a
    client that sends no close_notify (which ends the whole connection there)."""
    if isinstance(client, TLSStream):
        await client.transport_stream.send_eof()
    else:
        await client.send_eof()


async def test_bytes_arrive_in_order_and_eof_follows_them(make_pair: Any) -> None:
    async with make_pair() as (server, client):
        await client.send(b"hello ")
        await client.send(b"world")
        await finish(client)
        received = b""
        with anyio.fail_after(WAIT):
            while True:
                try:
                    received += await server.receive()
                except anyio.EndOfStream:
                    break
        assert received == b"hello world"
        with pytest.raises(anyio.EndOfStream):
            await server.receive()


async def test_receive_returns_at_most_max_bytes(make_pair: Any) -> None:
    async with make_pair() as (server, client):
        await client.send(b"x" * 1000)
        got = b""
        with anyio.fail_after(WAIT):
            while len(got) < 1000:
                chunk = await server.receive(300)
                assert len(chunk) <= 300
                got += chunk


async def test_a_half_closed_peer_still_gets_our_answer() -> None:
    # Cleartext only: over TLS the end of the client's bytes is the end of the connection.
    async with pair() as (server, client):
        await client.send(b"request")
        await client.send_eof()
        with anyio.fail_after(WAIT):
            assert await server.receive() == b"request"
        await server.send(b"answer")
        await server.send_eof()
        with anyio.fail_after(WAIT):
            assert await client.receive() == b"answer"


async def test_reading_stops_when_nobody_asks_so_the_peer_is_held_back(make_pair: Any) -> None:
    # The server reads nothing: the client's writes must stall once the
    # transport's read-ahead and the kernel buffers are full. (A client write
    # is never cancelled midway: that would break its TLS stream.)
    chunk = b"y" * 65536
    sent = 0
    never_held = anyio.Event()

    async def write_forever(client: anyio.abc.ByteStream) -> None:
        nonlocal sent
        while True:
            await client.send(chunk)
            sent += len(chunk)
            if sent >= 256 * 1024 * 1024:
                never_held.set()

    async with make_pair() as (server, client), anyio.create_task_group() as task_group:
        task_group.start_soon(write_forever, client)
        with anyio.move_on_after(1):
            await never_held.wait()
        held = sent
        assert not never_held.is_set(), "the client was never held back"
        # Once the server reads, the client is let through again.
        got = 0
        with anyio.fail_after(WAIT * 5):
            while got < held + 4 * len(chunk):
                got += len(await server.receive())
        assert sent > held
        task_group.cancel_scope.cancel()


async def test_writes_larger_than_the_buffers_wait_for_the_peer_and_all_arrive(
    make_pair: Any,
) -> None:
    # Each send outgrows the kernel's buffers, so each waits until the peer
    # has read enough: a wake-up the transport missed would end in WriteTimeout.
    chunk = bytes(range(256)) * 4096  # 1 MiB
    count = 8
    async with make_pair(write_timeout=WAIT) as (server, client):
        received = bytearray()

        async def read_all() -> None:
            while len(received) < count * len(chunk):
                received.extend(await client.receive())

        with anyio.fail_after(WAIT * 2):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(read_all)
                for _ in range(count):
                    await server.send(chunk)
        assert received == chunk * count


async def test_a_peer_that_reads_nothing_makes_a_write_time_out(make_pair: Any) -> None:
    async def write_forever(server: anyio.abc.ByteStream) -> None:
        while True:
            await server.send(b"z" * 1024 * 1024)

    async with make_pair(write_timeout=0.2) as (server, _client):
        with anyio.fail_after(WAIT * 5), pytest.raises(WriteTimeout):
            await write_forever(server)


async def test_a_receive_waiting_when_we_close_ends_with_closed_resource(make_pair: Any) -> None:
    async with make_pair() as (server, _client):
        errors: list[BaseException] = []

        async def reader() -> None:
            try:
                await server.receive()
            except anyio.ClosedResourceError as exc:
                errors.append(exc)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(reader)
            await anyio.wait_all_tasks_blocked()
            await server.aclose()
        assert len(errors) == 1


async def test_a_peer_that_resets_makes_sends_fail(make_pair: Any) -> None:
    async with make_pair() as (server, client):
        raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await client.aclose()  # linger 0: an RST

        async def send_until_it_fails() -> None:
            while True:
                await server.send(b"after the reset")
                await anyio.sleep(0.01)

        with anyio.fail_after(WAIT), pytest.raises(anyio.BrokenResourceError):
            await send_until_it_fails()


async def test_the_stream_knows_its_addresses(make_pair: Any) -> None:
    async with make_pair() as (server, client):
        local = server.extra(anyio.abc.SocketAttribute.local_address)
        remote = server.extra(anyio.abc.SocketAttribute.remote_address)
        assert remote == client.extra(anyio.abc.SocketAttribute.local_address)
        assert local == client.extra(anyio.abc.SocketAttribute.remote_address)


async def test_an_accepted_socket_is_made_non_blocking_and_unbuffered_by_the_transport() -> None:
    # The transport owns the socket's options (each loop sets some itself;
    # setting them again costs two syscalls per connection).
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with anyio.fail_after(WAIT):
            client = await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1])
            accepted, _ = listener.accept()
        assert accepted.getblocking()
        assert not accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
        server = await open_socket_stream(accepted, 30.0)
        async with client, server:
            fd = server.extra(anyio.abc.SocketAttribute.raw_socket).fileno()
            assert fd == accepted.fileno()
            assert not os.get_blocking(fd)
            assert accepted.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            await server.send(b"ok")
            assert await client.receive() == b"ok"
    finally:
        listener.close()


async def test_what_arrives_while_the_reader_waits_goes_to_its_sink(
    make_pair: Any, anyio_backend_name: str
) -> None:
    # asyncio's and uvloop's streams parse a small request in the loop's
    # callback (the connection's _fed) instead of waking the reader's task.
    async with make_pair() as (server, client):
        receive_feeding = getattr(server, "receive_feeding", None)
        if anyio_backend_name == "trio":
            assert receive_feeding is None  # trio's reader task reads itself
            return
        assert receive_feeding is not None
        fed: list[bytes] = []
        each = anyio.Event()
        returned: list[bytes | None] = []

        def sink(data: bytes) -> bool:
            nonlocal each
            fed.append(data)
            each.set()
            return len(fed) < 2  # wait on after the first read, not after the second

        async def reader() -> None:
            returned.append(await receive_feeding(100, sink))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(reader)
                await anyio.wait_all_tasks_blocked()
                await client.send(b"one")
                await each.wait()
                each = anyio.Event()
                assert not returned  # the sink said wait on: the reader still waits
                await client.send(b"two")
            assert fed == [b"one", b"two"]
            assert returned == [None]  # taken by the sink, not handed back

            # With no sink, what arrives is returned as by receive().
            await client.send(b"three")
            got = await receive_feeding(100, None)
            assert got == b"three"

            # The peer's EOF is receive()'s: the sink never sees it.
            await finish(client)
            with pytest.raises(anyio.EndOfStream):
                await receive_feeding(100, sink)
        assert fed == [b"one", b"two"]


async def test_an_error_in_the_sink_is_raised_to_the_reader(
    make_pair: Any, anyio_backend_name: str
) -> None:
    async with make_pair() as (server, client):
        receive_feeding = getattr(server, "receive_feeding", None)
        if receive_feeding is None:
            assert anyio_backend_name == "trio"
            return

        def sink(data: bytes) -> bool:
            raise ValueError(f"cannot take {data!r}")

        async def send_when_waiting() -> None:
            await anyio.wait_all_tasks_blocked()
            await client.send(b"bad")

        caught: list[ValueError] = []
        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as tg:
                tg.start_soon(send_when_waiting)
                try:
                    await receive_feeding(100, sink)
                except ValueError as exc:
                    caught.append(exc)
        assert [str(exc) for exc in caught] == ["cannot take b'bad'"]
