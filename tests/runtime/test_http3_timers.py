"""HTTP/3's clocks on virtual time: the idle timeout, the handshake deadline, the closing period.

The real endpoint and connection runner (``QuicEndpoint``, ``HTTP3Connection``)
and aioquic's client, with only the UDP sockets replaced by an in-memory
datagram wire, so that ``@pytest.mark.mock_clock`` can move time: when every
task waits, the clock jumps to the next deadline (QUIC's timer, the
keep-alive timeout), and an elapsed time is exact.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import anyio.abc
import pytest
from anyio.abc import SocketAttribute

try:
    from aioquic.quic.connection import QuicConnection
except ImportError:  # pragma: no cover - depends on the environment
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

import tricorn
from tricorn._runtime.connection import CLOSE_TIMEOUT
from tricorn._runtime.context import ConnectionContext
from tricorn._runtime.quic import HTTP3Connection, QuicEndpoint, QuicSetup

from ._quic_client import H3Client, client_configuration
from .test_tls import PKI, pki

__all__ = ["pki"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio

SERVER = ("127.0.0.1", 4433)
CLIENT = ("127.0.0.1", 50000)
#: Datagrams a side may have queued before more are dropped (a socket buffer).
_QUEUED = 256
KEEP_ALIVE = 5.0


class _Wire:
    """Two in-memory datagram queues between one client address and the server."""

    def __init__(self) -> None:
        self.to_server, self.server_inbox = anyio.create_memory_object_stream[
            tuple[bytes, tuple[str, int]]
        ](_QUEUED)
        self.to_client, self.client_inbox = anyio.create_memory_object_stream[bytes](_QUEUED)
        #: Every datagram the server sent, for tests that look at them.
        self.server_sent = 0
        self._changed = anyio.Event()

    def changed(self) -> None:
        """Something a test may wait for happened: a datagram, a connection's news."""
        self._changed.set()
        self._changed = anyio.Event()

    async def wait_until(self, predicate: Callable[[], bool], within: float) -> None:
        """Wait (on the virtual clock) until ``predicate`` holds; fail after ``within`` s."""
        with anyio.fail_after(within):
            while not predicate():
                await self._changed.wait()

    def close(self) -> None:
        for stream in (self.to_server, self.server_inbox, self.to_client, self.client_inbox):
            stream.close()


class ServerSocket(anyio.abc.UDPSocket):
    """The server's unconnected UDP socket, on the wire."""

    def __init__(self, wire: _Wire) -> None:
        self._wire = wire

    async def receive(self) -> tuple[bytes, tuple[str, int]]:
        return await self._wire.server_inbox.receive()

    async def send(self, item: tuple[bytes, tuple[str, int]]) -> None:
        data, address = item
        assert address == CLIENT, address
        self._wire.server_sent += 1
        self._wire.changed()
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
            self._wire.to_client.send_nowait(bytes(data))  # lost, as UDP may lose it
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._wire.server_inbox.close()

    @property
    def _raw_socket(self) -> Any:
        raise NotImplementedError("an in-memory socket")

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {SocketAttribute.local_address: lambda: SERVER}


class ClientSocket(anyio.abc.ConnectedUDPSocket):
    """The client's connected UDP socket, on the wire."""

    def __init__(self, wire: _Wire) -> None:
        self._wire = wire

    async def receive(self) -> bytes:
        return await self._wire.client_inbox.receive()

    async def send(self, item: bytes) -> None:
        with contextlib.suppress(anyio.WouldBlock, anyio.BrokenResourceError):
            self._wire.to_server.send_nowait((bytes(item), CLIENT))
        await anyio.lowlevel.checkpoint()

    async def aclose(self) -> None:
        self._wire.client_inbox.close()

    @property
    def _raw_socket(self) -> Any:
        raise NotImplementedError("an in-memory socket")

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            SocketAttribute.local_address: lambda: CLIENT,
            SocketAttribute.remote_address: lambda: SERVER,
        }


class WatchedEndpoint(QuicEndpoint):
    """The real endpoint, telling the wire when a connection moves or is forgotten."""

    def __init__(self, wire: _Wire, *args: Any) -> None:
        super().__init__(*args)
        self._wire = wire

    def update(self, connection: HTTP3Connection) -> None:
        super().update(connection)
        self._wire.changed()

    def forget(self, connection: HTTP3Connection) -> None:
        super().forget(connection)
        self._wire.changed()


async def ok_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    assert scope["type"] == "http"
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


@asynccontextmanager
async def memory_endpoint(pki: PKI, **options: Any) -> AsyncIterator[tuple[QuicEndpoint, _Wire]]:
    """A QUIC endpoint serving ``ok_app`` on an in-memory wire."""
    config = tricorn.Config(
        certfile=pki.certfile, quic_bind=(f"{SERVER[0]}:{SERVER[1]}",), access_log=False, **options
    )
    context = ConnectionContext(ok_app, config, state={}, quic_ports=[SERVER[1]])
    wire = _Wire()
    try:
        async with anyio.create_task_group() as connections:
            endpoint = WatchedEndpoint(
                wire, ServerSocket(wire), context, QuicSetup(config), connections
            )
            connections.start_soon(endpoint.run)
            yield endpoint, wire
            connections.cancel_scope.cancel()
    finally:
        wire.close()


@pytest.mark.mock_clock
async def test_an_idle_connection_is_closed_after_the_keep_alive_timeout(
    pki: PKI, virtual_time: bool
) -> None:
    async with memory_endpoint(pki, keep_alive_timeout=KEEP_ALIVE) as (endpoint, wire):
        quic = QuicConnection(configuration=client_configuration(pki.ca_file))
        quic.connect(SERVER, now=anyio.current_time())
        client = H3Client(ClientSocket(wire), quic)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.run)
            await client.transmit()
            response = await client.response(await client.send_request("/"), within=10)
            assert response.status == 200
            assert endpoint.connections == 1
            idle_since = anyio.current_time()
            await client.wait_for(lambda: client.terminated is not None, within=KEEP_ALIVE + 5)
            closed_after = anyio.current_time() - idle_since
            # The server ends its side once its closing period is over.
            await wire.wait_until(lambda: endpoint.connections == 0, within=5)
            task_group.cancel_scope.cancel()
    assert client.terminated is not None
    assert client.terminated.error_code == 0x100  # H3_NO_ERROR: a clean close, not an error
    if virtual_time:
        # The client's ACK of the response, a delayed ACK, is the last thing heard.
        assert KEEP_ALIVE <= closed_after <= KEEP_ALIVE + 0.1, closed_after


@pytest.mark.mock_clock
async def test_a_handshake_that_never_completes_is_dropped_after_the_keep_alive_timeout(
    pki: PKI, virtual_time: bool
) -> None:
    async with memory_endpoint(pki, keep_alive_timeout=KEEP_ALIVE) as (endpoint, wire):
        # A client that sends its Initial and then hears nothing: the server
        # retransmits its handshake flight into the void, then gives up.
        quic = QuicConnection(configuration=client_configuration(pki.ca_file))
        quic.connect(SERVER, now=anyio.current_time())
        started = anyio.current_time()
        for data, _ in quic.datagrams_to_send(anyio.current_time()):
            wire.to_server.send_nowait((data, CLIENT))
        await wire.wait_until(lambda: endpoint.connections == 1, within=1)
        await wire.wait_until(lambda: endpoint.connections == 0, within=KEEP_ALIVE + 5)
        gone_after = anyio.current_time() - started
    assert wire.server_sent > 1  # the first flight, then its retransmissions
    if virtual_time:
        # The keep-alive timeout, then at most the closing period (capped at 1 s).
        assert KEEP_ALIVE <= gone_after <= KEEP_ALIVE + 1.1, gone_after


@pytest.mark.mock_clock
async def test_the_closing_period_absorbs_late_packets_then_forgets_the_connection(
    pki: PKI, virtual_time: bool
) -> None:
    """RFC 9000 10.2: after its CONNECTION_CLOSE the connection keeps its IDs for a
    closing period (at most CLOSE_TIMEOUT here), so a late packet is not taken for
    a new client; then it is forgotten.

    aioquic drops every packet in the closing state, so the late packet gets no
    answer; RFC 9000 10.2.1 would have the close sent again.
    """
    async with memory_endpoint(pki, keep_alive_timeout=KEEP_ALIVE) as (endpoint, wire):
        quic = QuicConnection(configuration=client_configuration(pki.ca_file))
        quic.connect(SERVER, now=anyio.current_time())
        client = H3Client(ClientSocket(wire), quic)
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.run)
            await client.transmit()
            response = await client.response(await client.send_request("/"), within=10)
            assert response.status == 200
            # The client goes deaf shortly before the server's idle close.
            await anyio.sleep(KEEP_ALIVE - 0.5)
            task_group.cancel_scope.cancel()
        sent_before_close = wire.server_sent
        await wire.wait_until(lambda: wire.server_sent > sent_before_close, within=KEEP_ALIVE)
        closed_at = anyio.current_time()
        assert endpoint.connections == 1  # in its closing period
        # A late packet from the client, whose QUIC never learnt of the close.
        quic.send_ping(1)
        for data, _ in quic.datagrams_to_send(anyio.current_time()):
            wire.to_server.send_nowait((data, CLIENT))
        sent_in_closing = wire.server_sent
        await wire.wait_until(lambda: endpoint.connections == 0, within=2)
        closing_period = anyio.current_time() - closed_at
    assert wire.server_sent == sent_in_closing  # absorbed: no new connection, no answer
    if virtual_time:
        assert 0 < closing_period <= CLOSE_TIMEOUT + 0.02, closing_period
