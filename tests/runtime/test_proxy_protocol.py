"""--proxy-protocol through a real server: the trusted proxy's header names the client;
nobody else may send one. v2 headers are packed by hand from the spec's layout."""

from __future__ import annotations

import ipaddress
import struct
from typing import Any

import anyio
import pytest

from ._support import WAIT, raw_client, request, server, watch_log

pytestmark = pytest.mark.anyio

V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"


def v2_tcp4(source: str, destination: str, ports: tuple[int, int], tlvs: bytes = b"") -> bytes:
    body = (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address(destination).packed
        + struct.pack("!HH", *ports)
        + tlvs
    )
    return V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", len(body)) + body


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def recorder(scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            return
        scopes.append(scope)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    return app


async def test_a_v1_header_from_the_trusted_proxy_names_the_client() -> None:
    scopes: list[dict[str, Any]] = []
    async with (
        server(recorder(scopes), lifespan="off", proxy_protocol=True) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" + request())
        assert (await client.response()).status_code == 200
        await client.send(request())  # the same connection: still that client
        assert (await client.response()).status_code == 200
    assert [scope["client"] for scope in scopes] == [("203.0.113.7", 56324)] * 2
    assert scopes[0]["server"] == ("192.0.2.1", 443)
    assert scopes[0]["scheme"] == "http"


async def test_a_v2_header_carries_tls_facts_to_the_scope() -> None:
    scopes: list[dict[str, Any]] = []
    ssl = bytes([0x01]) + bytes(4) + tlv(0x21, b"TLSv1.3") + tlv(0x22, b"alice")
    header = v2_tcp4("198.51.100.9", "192.0.2.1", (40000, 443), tlv(0x20, ssl))
    async with (
        server(recorder(scopes), lifespan="off", proxy_protocol=True) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(header + request())
        assert (await client.response()).status_code == 200
    (scope,) = scopes
    assert scope["client"] == ("198.51.100.9", 40000)
    assert scope["scheme"] == "https"
    tls = scope["extensions"]["tls"]
    assert (tls["tls_version"], tls["client_cert_name"]) == (0x0304, "CN=alice")


async def test_a_trusted_peer_that_sends_no_header_is_closed_unserved() -> None:
    scopes: list[dict[str, Any]] = []
    async with (
        server(recorder(scopes), lifespan="off", proxy_protocol=True) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(request())
        assert await client.closed_by_server()
    assert scopes == []


async def test_a_header_that_never_completes_is_closed_at_the_head_timeout() -> None:
    options = {"proxy_protocol": True, "request_head_timeout": 0.2}
    async with (
        server(recorder([]), lifespan="off", **options) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(b"PROXY TCP4 203.0")
        assert await client.closed_by_server(within=WAIT)


async def test_an_untrusted_peer_is_served_as_itself_and_refused_a_header() -> None:
    scopes: list[dict[str, Any]] = []
    options = {"proxy_protocol": True, "forwarded_allow_ips": ("10.0.0.0/8",)}
    with watch_log() as log:
        async with server(recorder(scopes), lifespan="off", **options) as handle:
            async with raw_client(handle.address) as client:
                await client.send(request())
                assert (await client.response()).status_code == 200
            async with raw_client(handle.address) as forger:
                await forger.send(b"PROXY TCP4 1.1.1.1 192.0.2.1 1 2\r\n" + request())
                assert await forger.closed_by_server()
            with anyio.fail_after(WAIT):
                await log.wait_for("refused a PROXY header")
    assert [scope["client"][0] for scope in scopes] == ["127.0.0.1"]


async def test_a_malformed_header_is_closed_before_any_request() -> None:
    scopes: list[dict[str, Any]] = []
    async with (
        server(recorder(scopes), lifespan="off", proxy_protocol=True) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(b"PROXY TCP4 not-an-address 192.0.2.1 1 2\r\n" + request())
        assert await client.closed_by_server()
    assert scopes == []
