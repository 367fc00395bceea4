"""--proxy-protocol before TLS: the header is read straight from the socket and never past
it, so the TLS handshake can start on the socket itself (the event loop's own TLS on
asyncio and uvloop cannot be handed bytes already read)."""

from __future__ import annotations

import socket
import ssl
from typing import Any

import anyio
import anyio.abc
import pytest

import tricorn
from tricorn._protocol import ProxyHeader
from tricorn._runtime.context import ConnectionContext, ProxyAttribute
from tricorn._runtime.proxy_protocol import ProxiedSource, accept_proxy_header_before_tls
from tricorn._runtime.transport import open_socket_stream

from ._support import WAIT, connected, watch_log
from .test_proxy_protocol import v2_tcp4

pytestmark = pytest.mark.anyio

V1 = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"


def client_hello() -> bytes:
    """A real ClientHello, a client's first flight."""
    outgoing = ssl.MemoryBIO()
    ssl_object = ssl.create_default_context().wrap_bio(
        ssl.MemoryBIO(), outgoing, server_hostname="localhost"
    )
    with pytest.raises(ssl.SSLWantReadError):
        ssl_object.do_handshake()
    return outgoing.read()


def context(trusted: bool = True, **options: Any) -> ConnectionContext:
    allowed = ("127.0.0.1",) if trusted else ("10.9.9.9",)
    config = tricorn.Config(proxy_protocol=True, forwarded_allow_ips=allowed, **options)
    return ConnectionContext(_app, config, None)


async def _app(scope: Any, receive: Any, send: Any) -> None:
    raise AssertionError("no request gets this far")


async def read_header(sock: socket.socket, ctx: ConnectionContext) -> ProxiedSource | None:
    with anyio.fail_after(WAIT):
        return await accept_proxy_header_before_tls(
            sock, ctx, lambda accepted: open_socket_stream(accepted, 30.0)
        )


def header_of(door: ProxiedSource) -> ProxyHeader | None:
    """The header the wrapper puts on the TLS stream (tried on a stand-in stream)."""
    _, wrap = door
    header: ProxyHeader | None = wrap(_Nothing()).extra(ProxyAttribute.header, None)
    return header


class _Nothing(anyio.abc.ByteStream):
    async def receive(self, max_bytes: int = 65536) -> bytes:
        raise anyio.EndOfStream

    async def send(self, item: bytes) -> None:
        pass

    async def send_eof(self) -> None:
        pass

    async def aclose(self) -> None:
        pass


async def taken(sock: socket.socket) -> None:
    """Until the server has taken everything the socket had queued."""
    with anyio.fail_after(WAIT):
        while True:
            try:
                queued(sock, 1)
            except BlockingIOError:
                return
            await anyio.sleep(0.01)


def queued(sock: socket.socket, size: int) -> bytes:
    """What waits in the socket's receive queue (looked at, not taken)."""
    return sock.recv(size, socket.MSG_PEEK)


@pytest.mark.parametrize("header", [V1, v2_tcp4("203.0.113.7", "192.0.2.1", (56324, 443))])
async def test_a_header_and_the_client_hello_in_one_write_leave_the_hello_queued(
    header: bytes,
) -> None:
    hello = client_hello()
    async with connected() as (accepted, client):
        await client.send(header + hello)
        door = await read_header(accepted, context())
        assert door is not None
        source, _ = door
        assert source is accepted
        assert queued(accepted, len(hello) + 1) == hello
        proxied = header_of(door)
        assert proxied is not None
        assert proxied.client == ("203.0.113.7", 56324)


async def test_a_header_that_arrives_in_pieces_is_read_whole() -> None:
    hello = client_hello()
    async with connected() as (accepted, client):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(read_header, accepted, context())
            for piece in (V1[:3], V1[3:20], V1[20:]):
                await client.send(piece)
                await anyio.wait_all_tasks_blocked()
            await client.send(hello)
        assert queued(accepted, len(hello) + 1) == hello


async def test_an_untrusted_tls_client_is_left_untouched_for_the_handshake() -> None:
    hello = client_hello()
    async with connected() as (accepted, client):
        await client.send(hello)
        door = await read_header(accepted, context(trusted=False))
        assert door is not None
        assert door[0] is accepted
        assert header_of(door) is None
        assert queued(accepted, len(hello) + 1) == hello


async def test_an_untrusted_peer_that_sends_a_header_is_refused_and_closed() -> None:
    with watch_log() as log:
        async with connected() as (accepted, client):
            await client.send(V1)
            assert await read_header(accepted, context(trusted=False)) is None
            assert accepted.fileno() == -1
    assert any("not a trusted proxy" in message for message in log.messages())


async def test_bytes_that_only_began_like_a_header_are_replayed_on_a_stream() -> None:
    async with connected() as (accepted, client):
        async with anyio.create_task_group() as task_group:
            doors: list[ProxiedSource | None] = []

            async def read() -> None:
                doors.append(await read_header(accepted, context(trusted=False)))

            task_group.start_soon(read)
            await client.send(b"PRO")
            await taken(accepted)  # too few to tell: the reader took them to wait for more
            await client.send(b"XZ and more")
        (door,) = doors
        assert door is not None
        source, _ = door
        assert isinstance(source, anyio.abc.ByteStream)
        async with source:
            received = b""
            with anyio.fail_after(WAIT):
                while len(received) < len(b"PROXZ and more"):
                    received += await source.receive()
            assert received == b"PROXZ and more"


async def test_a_trusted_peer_without_a_header_is_closed() -> None:
    with watch_log() as log:
        async with connected() as (accepted, client):
            await client.send(client_hello())
            assert await read_header(accepted, context()) is None
            assert accepted.fileno() == -1
    assert any("no PROXY protocol header" in message for message in log.messages())


async def test_a_peer_that_leaves_inside_the_header_is_closed() -> None:
    async with connected() as (accepted, client):
        await client.send(V1[:10])
        await client.send_eof()
        assert await read_header(accepted, context()) is None
        assert accepted.fileno() == -1


@pytest.mark.mock_clock
async def test_a_header_that_never_completes_is_closed_at_the_head_timeout() -> None:
    async with connected() as (accepted, client):
        await client.send(V1[:10])
        began = anyio.current_time()
        ctx = context(request_head_timeout=7.0)
        assert await accept_proxy_header_before_tls(accepted, ctx, _no_stream) is None
        assert anyio.current_time() - began == pytest.approx(7.0)
        assert accepted.fileno() == -1


async def _no_stream(sock: socket.socket) -> anyio.abc.ByteStream:
    raise AssertionError("nothing to replay here")
