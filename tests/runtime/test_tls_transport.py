"""The TLS handshake straight from an accepted socket: the event loop's own TLS on asyncio
and uvloop, anyio's on trio, and the same outcome for every client that fails it.

The contract of the stream after the handshake (ordering, EOF, backpressure, the
write timeout, closing) is checked with every other transport in test_transport.py.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
import trustme
from anyio.streams.tls import TLSAttribute, TLSStream

import tricorn
from tricorn._runtime.tls import accept_tls, create_ssl_context, negotiated_protocol, tls_extension

from ._support import WAIT, connected, watch_log

pytestmark = pytest.mark.anyio


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture(scope="module")
def server_context(ca: trustme.CA, tmp_path_factory: pytest.TempPathFactory) -> ssl.SSLContext:
    """The server's context as tricorn builds it (ALPN h2 and http/1.1), asking for a
    client certificate but not requiring one."""
    directory = tmp_path_factory.mktemp("pki")
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(directory / "server.pem")
    )
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    config = tricorn.Config(
        certfile=str(directory / "server.pem"),
        ca_certs=str(directory / "ca.pem"),
        verify_mode="optional",
    )
    context = create_ssl_context(config)
    assert context is not None
    return context


def client_context(
    ca: trustme.CA, alpn: list[str], certificate: trustme.LeafCert | None = None
) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    context.set_alpn_protocols(alpn)
    if certificate is not None:
        certificate.configure_cert(context)
    return context


@asynccontextmanager
async def handshake(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> AsyncIterator[tuple[anyio.abc.ByteStream, TLSStream]]:
    """Both ends of a handshake: accept_tls's stream on an accepted socket, the client's."""
    async with connected() as (accepted, client):
        results: list[anyio.abc.ByteStream | None] = []

        async def accept() -> None:
            results.append(await accept_tls(accepted, server_context, WAIT))

        with anyio.fail_after(WAIT):
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(accept)
                tls = await TLSStream.wrap(
                    client,
                    hostname="127.0.0.1",
                    ssl_context=client_context,
                    standard_compatible=False,
                )
        server = results[0]
        assert server is not None
        async with server, tls:
            yield server, tls


def client_hello() -> bytes:
    """A real ClientHello, as a client's first flight."""
    context = ssl.create_default_context()
    outgoing = ssl.MemoryBIO()
    ssl_object = context.wrap_bio(ssl.MemoryBIO(), outgoing, server_hostname="localhost")
    with pytest.raises(ssl.SSLWantReadError):
        ssl_object.do_handshake()
    return outgoing.read()


async def test_the_event_loop_does_the_tls_on_asyncio_and_anyio_on_trio(
    ca: trustme.CA, server_context: ssl.SSLContext, backend_name: str
) -> None:
    context = client_context(ca, ["h2", "http/1.1"])
    async with handshake(server_context, context) as (server, client):
        if backend_name == "trio":
            assert isinstance(server, TLSStream)
        else:
            assert type(server).__name__ == "_AsyncioTLSStream"
        await client.send(b"ping")
        with anyio.fail_after(WAIT):
            assert await server.receive() == b"ping"
            await server.send(b"pong")
            assert await client.receive() == b"pong"


@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(["h2", "http/1.1"], "h2"), (["http/1.1"], "http/1.1"), ([], None)],
    ids=["both", "http1.1", "no-alpn"],
)
async def test_the_stream_tells_what_the_handshake_settled(
    ca: trustme.CA, server_context: ssl.SSLContext, offered: list[str], chosen: str | None
) -> None:
    certificate = ca.issue_cert("client.example", common_name="alice")
    context = client_context(ca, offered, certificate)
    async with handshake(server_context, context) as (server, client):
        assert negotiated_protocol(server) == chosen
        assert server.extra(TLSAttribute.alpn_protocol) == chosen
        assert server.extra(TLSAttribute.server_side) is True
        assert server.extra(TLSAttribute.standard_compatible) is False
        assert server.extra(TLSAttribute.tls_version) == client.extra(TLSAttribute.tls_version)
        assert server.extra(TLSAttribute.cipher) == client.extra(TLSAttribute.cipher)
        assert isinstance(server.extra(TLSAttribute.ssl_object), ssl.SSLObject)
        pem = certificate.cert_chain_pems[0].bytes().decode()
        assert server.extra(TLSAttribute.peer_certificate_binary) == ssl.PEM_cert_to_DER_cert(pem)
        address = server.extra(anyio.abc.SocketAttribute.remote_address)
        assert address == client.extra(anyio.abc.SocketAttribute.local_address)
        extension = tls_extension(server)
        assert extension is not None
        assert (extension["client_cert_name"] or "").startswith("CN=alice,")
        assert extension["client_cert_chain"][0] == ssl.DER_cert_to_PEM_cert(
            ssl.PEM_cert_to_DER_cert(pem)
        )


@pytest.mark.parametrize(
    ("garbage", "reason"),
    [
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", "http request"),
        (b"\x16\x03\x01\x00\x05hello" + b"\x00" * 64, "TLS handshake with"),
        (b"\x00" * 200, "TLS handshake with"),
    ],
    ids=["plain-http", "broken-record", "zeros"],
)
async def test_a_client_that_sends_garbage_is_dropped_and_logged(
    server_context: ssl.SSLContext, garbage: bytes, reason: str
) -> None:
    with watch_log() as log:
        async with connected() as (accepted, client):
            await client.send(garbage)
            with anyio.fail_after(WAIT):
                assert await accept_tls(accepted, server_context, WAIT) is None
            assert accepted.fileno() == -1
            with anyio.fail_after(WAIT):
                try:
                    while await client.receive():
                        pass  # an alert, perhaps
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    pass
    assert any(reason in message for message in log.messages()), log.messages()
    assert all(record.levelname == "DEBUG" for record in log.records), log.messages()


async def test_a_client_that_leaves_mid_handshake_is_dropped_and_logged(
    server_context: ssl.SSLContext,
) -> None:
    hello = client_hello()
    with watch_log() as log:
        async with connected() as (accepted, client):
            await client.send(hello[: len(hello) // 2])
            await client.send_eof()
            with anyio.fail_after(WAIT):
                assert await accept_tls(accepted, server_context, WAIT) is None
    assert any("the client closed the connection" in m for m in log.messages()), log.messages()


@pytest.mark.mock_clock
async def test_a_silent_client_is_dropped_at_the_handshake_timeout(
    server_context: ssl.SSLContext,
) -> None:
    with watch_log() as log:
        async with connected() as (accepted, _client):
            began = anyio.current_time()
            assert await accept_tls(accepted, server_context, 10.0) is None
            assert anyio.current_time() - began == pytest.approx(10.0)
            assert accepted.fileno() == -1
    assert any("not done within 10s" in message for message in log.messages())


async def test_a_cancelled_handshake_closes_the_socket_and_raises(
    server_context: ssl.SSLContext,
) -> None:
    async with connected() as (accepted, _client):
        with anyio.CancelScope() as scope:
            async with anyio.create_task_group() as task_group:

                async def accept(*, task_status: Any) -> None:
                    task_status.started()
                    await accept_tls(accepted, server_context, WAIT)
                    pytest.fail("accept_tls returned after its cancellation")

                await task_group.start(accept)
                await anyio.wait_all_tasks_blocked()
                scope.cancel()
        assert scope.cancelled_caught
        assert accepted.fileno() == -1


async def test_the_clients_eof_without_close_notify_is_the_end_of_the_stream(
    ca: trustme.CA, server_context: ssl.SSLContext, backend_name: str
) -> None:
    context = client_context(ca, ["http/1.1"])
    async with handshake(server_context, context) as (server, client):
        await client.send(b"last words")
        await client.transport_stream.send_eof()  # a TCP FIN, no close_notify
        received = b""
        with anyio.fail_after(WAIT):
            while len(received) < len(b"last words"):
                received += await server.receive()
            assert received == b"last words"
            with pytest.raises(anyio.EndOfStream):
                await server.receive()
        if backend_name != "trio":
            # The loop's TLS has no half-close: the connection is over.
            with pytest.raises(anyio.BrokenResourceError):
                await server.send(b"too late")
