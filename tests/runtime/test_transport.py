"""The transport's contract, the same on every backend: asyncio's protocol-based stream,
uvloop's, and trio's through anyio (see tricorn/_runtime/transport.py)."""

from __future__ import annotations

import os
import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import anyio
import anyio.abc
import pytest

from tricorn._runtime.transport import WriteTimeout, open_socket_stream

from ._support import WAIT

pytestmark = pytest.mark.anyio


@asynccontextmanager
async def pair(
    write_timeout: float = 30.0,
) -> AsyncIterator[tuple[anyio.abc.ByteStream, anyio.abc.SocketStream]]:
    """A server end (the transport under test) and a plain client end, over loopback TCP."""
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        with anyio.fail_after(WAIT):
            client = await anyio.connect_tcp("127.0.0.1", listener.getsockname()[1])
            accepted, _ = listener.accept()
        accepted.setblocking(False)
        server = await open_socket_stream(accepted, write_timeout)
        async with client, server:
            yield server, client
    finally:
        listener.close()


async def test_bytes_arrive_in_order_and_eof_follows_them() -> None:
    async with pair() as (server, client):
        await client.send(b"hello ")
        await client.send(b"world")
        await client.send_eof()
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


async def test_receive_returns_at_most_max_bytes() -> None:
    async with pair() as (server, client):
        await client.send(b"x" * 1000)
        got = b""
        with anyio.fail_after(WAIT):
            while len(got) < 1000:
                chunk = await server.receive(300)
                assert len(chunk) <= 300
                got += chunk


async def test_a_half_closed_peer_still_gets_our_answer() -> None:
    async with pair() as (server, client):
        await client.send(b"request")
        await client.send_eof()
        with anyio.fail_after(WAIT):
            assert await server.receive() == b"request"
        await server.send(b"answer")
        await server.send_eof()
        with anyio.fail_after(WAIT):
            assert await client.receive() == b"answer"


async def test_reading_stops_when_nobody_asks_so_the_peer_is_held_back() -> None:
    # The server reads nothing: the client's writes must stall once the
    # transport's read-ahead and the kernel buffers are full.
    async with pair() as (server, client):
        sent = 0
        chunk = b"y" * 65536
        with anyio.move_on_after(1):
            while sent < 256 * 1024 * 1024:
                await client.send(chunk)
                sent += len(chunk)
        assert sent < 256 * 1024 * 1024, "the client was never held back"
        await client.send_eof()
        got = 0
        with anyio.fail_after(WAIT * 5):
            while True:
                try:
                    got += len(await server.receive())
                except anyio.EndOfStream:
                    break
        # Every byte arrives once reading resumes (the cancelled last send
        # may have put part of its chunk through).
        assert sent <= got <= sent + len(chunk)


async def test_a_peer_that_reads_nothing_makes_a_write_time_out() -> None:
    async def write_forever(server: anyio.abc.ByteStream) -> None:
        while True:
            await server.send(b"z" * 1024 * 1024)

    async with pair(write_timeout=0.2) as (server, _client):
        with anyio.fail_after(WAIT * 5), pytest.raises(WriteTimeout):
            await write_forever(server)


async def test_a_receive_waiting_when_we_close_ends_with_closed_resource() -> None:
    async with pair() as (server, _client):
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


async def test_a_peer_that_resets_makes_sends_fail() -> None:
    async with pair() as (server, client):
        raw = client.extra(anyio.abc.SocketAttribute.raw_socket)
        raw.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        await client.aclose()  # linger 0: an RST

        async def send_until_it_fails() -> None:
            while True:
                await server.send(b"after the reset")
                await anyio.sleep(0.01)

        with anyio.fail_after(WAIT), pytest.raises(anyio.BrokenResourceError):
            await send_until_it_fails()


async def test_the_stream_knows_its_addresses() -> None:
    async with pair() as (server, client):
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
