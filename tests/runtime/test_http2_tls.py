"""HTTP/2 over TLS: ALPN picks h2 or http/1.1 on one port; scheme and TLS extension."""

from __future__ import annotations

import shutil
from typing import Any

import anyio
import h2.config
import h2.connection
import h2.events
import httpx
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection

from ._support import WAIT, server
from .test_tls import PKI, https_url, pki, recording_app

__all__ = ["pki"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio


async def test_httpx_negotiates_h2_by_alpn_and_http1_shares_the_port(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    async with server(recording_app(scopes), **pki.server_options()) as srv:
        url = https_url(srv.address)
        async with httpx.AsyncClient(
            http1=False, http2=True, verify=pki.client_context(alpn=())
        ) as c:
            h2_response = await c.get(url)
        async with httpx.AsyncClient(verify=pki.client_context(alpn=())) as c:
            h1_response = await c.get(url)
    assert h2_response.http_version == "HTTP/2"
    assert h1_response.http_version == "HTTP/1.1"
    assert [scope["http_version"] for scope in scopes] == ["2", "1.1"]
    h2_scope = scopes[0]
    assert h2_scope["scheme"] == "https"
    tls = h2_scope["extensions"]["tls"]
    assert tls["server_cert"] is not None
    assert tls["tls_version"] in (0x0303, 0x0304)


async def test_http2_off_leaves_alpn_to_http1(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    options = pki.server_options(http2=False)
    async with (
        server(recording_app(scopes), **options) as srv,
        httpx.AsyncClient(http2=True, verify=pki.client_context(alpn=())) as c,
    ):
        response = await c.get(https_url(srv.address))
    assert response.http_version == "HTTP/1.1"


async def test_websocket_over_http2_over_tls_is_wss(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    async with server(recording_app(scopes), **pki.server_options()) as srv:
        host, _, port = srv.address.rpartition(":")
        with anyio.fail_after(WAIT):
            stream = await anyio.connect_tcp(
                host,
                int(port),
                ssl_context=pki.client_context(alpn=("h2",)),
                tls_hostname="localhost",
                tls_standard_compatible=False,
            )
        async with stream:
            conn = h2.connection.H2Connection(
                h2.config.H2Configuration(client_side=True, header_encoding=None)
            )
            conn.initiate_connection()
            await stream.send(conn.data_to_send())
            events: list[h2.events.Event] = []
            with anyio.fail_after(WAIT):
                while conn.remote_settings.enable_connect_protocol != 1:
                    events += conn.receive_data(await stream.receive())
                    await stream.send(conn.data_to_send())
            conn.send_headers(
                1,
                [
                    (b":method", b"CONNECT"),
                    (b":protocol", b"websocket"),
                    (b":scheme", b"https"),
                    (b":path", b"/tls-ws"),
                    (b":authority", b"localhost"),
                    (b"sec-websocket-version", b"13"),
                ],
            )
            await stream.send(conn.data_to_send())
            ws = Connection(ConnectionType.CLIENT)
            closed = False
            with anyio.fail_after(WAIT):
                while not closed:
                    for event in conn.receive_data(await stream.receive()):
                        if isinstance(event, h2.events.ResponseReceived):
                            assert dict(event.headers)[b":status"] == b"200"
                        if isinstance(event, h2.events.DataReceived):
                            ws.receive_data(event.data)
                            for message in ws.events():
                                if isinstance(message, CloseConnection):
                                    closed = True
                    await stream.send(conn.data_to_send())
    (scope,) = scopes
    assert scope["type"] == "websocket"
    assert scope["scheme"] == "wss"
    assert scope["http_version"] == "2"
    assert "tls" in scope["extensions"]


async def test_curl_over_tls_negotiates_h2(pki: PKI) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed")
    scopes: list[dict[str, Any]] = []
    async with server(recording_app(scopes), **pki.server_options()) as srv:
        with anyio.fail_after(20):
            result = await anyio.run_process(
                [
                    curl,
                    "-sS",
                    "--max-time",
                    "10",
                    "--http2",
                    "--cacert",
                    pki.ca_file,
                    "-w",
                    "\n%{http_version}",
                    https_url(srv.address),
                ],
                check=False,
            )
    assert result.returncode == 0, result.stderr.decode()
    body, version = result.stdout.decode().rsplit("\n", 1)
    assert (body, version) == ("ok", "2")
