"""HTTP/3 end to end: tricorn's QUIC endpoint and runner, aioquic's client over real UDP."""

from __future__ import annotations

import os
import random
import socket
from typing import Any

import anyio
import httpx
import pytest
from wsproto.connection import Connection as WSConnection
from wsproto.connection import ConnectionType
from wsproto.events import CloseConnection, TextMessage

try:
    import aioquic  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

import tricorn
from tricorn._runtime.context import alt_svc
from tricorn.errors import ConfigError

from ._quic_client import h3_client
from ._support import WAIT, server, watch_log
from .test_tls import PKI, https_url, pki

__all__ = ["pki"]  # the fixture, imported for pytest

pytestmark = pytest.mark.anyio


def quic_address(addresses: list[str]) -> str:
    return next(a.removeprefix("quic:") for a in addresses if a.startswith("quic:"))


def h3_options(pki: PKI, **options: Any) -> dict[str, Any]:
    return pki.server_options(quic_bind=("127.0.0.1:0",), **options)


async def echo_app(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        return
    assert scope["type"] == "http"
    body = bytearray()
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    text = f"{scope['http_version']} {scope['scheme']} {scope['method']} {scope['path']}"
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"x-info", text.encode())],
        }
    )
    await send({"type": "http.response.body", "body": bytes(body) or b"hello"})


async def test_get_is_served_over_http3(pki: PKI) -> None:
    async with (
        server(echo_app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        response = await client.get("/path")
    assert response.status == 200
    assert response.headers[b"x-info"] == b"3 https GET /path"
    assert bytes(response.body) == b"hello"


async def test_post_of_two_mebibytes_is_echoed(pki: PKI) -> None:
    body = os.urandom(2 * 1024 * 1024)
    async with (
        server(echo_app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        stream_id = await client.send_request("/echo", method="POST", body=body)
        response = await client.response(stream_id, within=20)
    assert response.status == 200
    assert bytes(response.body) == body


async def test_fifty_concurrent_streams_are_served_side_by_side(pki: PKI) -> None:
    arrived = 0
    all_arrived = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal arrived
        if scope["type"] != "http":
            return
        arrived += 1
        if arrived == 50:
            all_arrived.set()
        await all_arrived.wait()  # every request runs before any answers
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": scope["path"].encode()})

    async with (
        server(app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        stream_ids = [await client.send_request(f"/{n}") for n in range(50)]
        responses = [await client.response(stream_id) for stream_id in stream_ids]
    assert [bytes(r.body) for r in responses] == [f"/{n}".encode() for n in range(50)]


async def test_a_stream_the_client_resets_is_a_disconnect_for_the_app(pki: PKI) -> None:
    started = anyio.Event()
    disconnected = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        while (await receive())["type"] != "http.disconnect":
            pass
        disconnected.set()

    async with (
        server(app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        stream_id = await client.send_request("/upload", method="POST", body=b"x", end_stream=False)
        with anyio.fail_after(WAIT):
            await started.wait()
        await client.reset(stream_id)
        with anyio.fail_after(WAIT):
            await disconnected.wait()


async def test_trailers_follow_the_body(pki: PKI) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        assert "http.response.trailers" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200, "headers": [], "trailers": True})
        await send({"type": "http.response.body", "body": b"data"})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]})

    async with (
        server(app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        response = await client.get("/", headers=((b"te", b"trailers"),))
    assert response.status == 200
    assert bytes(response.body) == b"data"
    assert response.heads[-1] == [(b"grpc-status", b"0")]


async def test_websocket_over_http3_echoes_messages(pki: PKI) -> None:
    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "websocket":
            return
        assert scope["http_version"] == "3"
        assert scope["scheme"] == "wss"
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while (message := await receive())["type"] == "websocket.receive":
            await send({"type": "websocket.send", "text": "echo: " + message["text"]})

    ws = WSConnection(ConnectionType.CLIENT)
    async with (
        server(app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        stream_id = await client.send_request(
            "/chat",
            method="CONNECT",
            protocol=b"websocket",
            headers=((b"sec-websocket-version", b"13"),),
            end_stream=False,
        )
        record = client.stream(stream_id)
        await client.wait_for(lambda: bool(record.heads))
        assert record.status == 200
        received: list[str] = []
        taken = 0
        for text in ("one", "two", "three"):
            await client.send_data(stream_id, ws.send(TextMessage(text)))

            def echoed() -> bool:
                nonlocal taken
                ws.receive_data(bytes(record.body[taken:]))
                taken = len(record.body)
                received.extend(e.data for e in ws.events() if isinstance(e, TextMessage))
                return len(received) >= 1

            await client.wait_for(echoed)
            assert received.pop() == "echo: " + text
        await client.send_data(stream_id, ws.send(CloseConnection(1000)))
        await client.wait_for(lambda: record.ended)


async def test_shutdown_finishes_streams_in_flight_and_refuses_new_ones(pki: PKI) -> None:
    started = anyio.Event()
    release = anyio.Event()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        started.set()
        await release.wait()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"finished"})

    with watch_log() as watcher:
        async with (
            server(app, **h3_options(pki)) as handle,
            h3_client(quic_address(handle.addresses), pki.ca_file) as client,
        ):
            first = await client.send_request("/slow")
            with anyio.fail_after(WAIT):
                await started.wait()
            handle.shutdown()
            await watcher.wait_for("shutting down")
            second = await client.send_request("/late")
            refused = await client.response(second)
            assert refused.reset == 0x10B  # H3_REQUEST_REJECTED (RFC 9114 8.1)
            release.set()
            response = await client.response(first)
            assert response.status == 200
            assert bytes(response.body) == b"finished"
            await handle.wait_stopped()


async def test_garbage_datagrams_reach_no_app_and_break_nothing(pki: PKI) -> None:
    calls = 0

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        nonlocal calls
        if scope["type"] != "http":
            return
        calls += 1
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body"})

    rng = random.Random(14)
    garbage = [
        b"",
        b"\x00",
        b"\xc0",  # a long header cut short
        b"\xc0\x00\x00\x00\x01" + b"\xff" * 1195,  # Initial with a CID length past 20
        b"\xc0\x00\x00\x00\x01\x08" + bytes(8) + b"\x00" + b"\x00" * 1200,  # empty Initial
        b"\xc0\x1a\x2b\x3c\x4d\x08" + b"unknown!" + b"\x00" + bytes(1200),  # unknown version
        b"\x40" + bytes(30),  # short header for no connection
        *(rng.randbytes(rng.choice((1, 20, 200, 1200, 1500))) for _ in range(200)),
    ]
    async with server(app, **h3_options(pki)) as handle:
        host, _, port = quic_address(handle.addresses).rpartition(":")
        async with await anyio.create_connected_udp_socket(host, int(port)) as sock:
            for datagram in garbage:
                if datagram:
                    await sock.send(datagram)
            # The unknown version is told which one we speak.
            with anyio.fail_after(WAIT):
                answer = await sock.receive()
            assert answer[1:5] == bytes(4)  # Version Negotiation (RFC 9000 17.2.1)
        async with h3_client(quic_address(handle.addresses), pki.ca_file) as client:
            assert (await client.get("/")).status == 204
    assert calls == 1


async def test_retry_always_validates_the_address_first(pki: PKI) -> None:
    async with (
        server(echo_app, **h3_options(pki, quic_retry="always")) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        response = await client.get("/")
        assert client.quic._retry_count == 1
    assert response.status == 200


async def test_retry_auto_asks_once_half_the_connections_are_taken(pki: PKI) -> None:
    options = h3_options(pki, quic_retry="auto", quic_max_connections=2)
    async with server(echo_app, **options) as handle:
        address = quic_address(handle.addresses)
        async with h3_client(address, pki.ca_file) as first:
            assert first.quic._retry_count == 0
            async with h3_client(address, pki.ca_file) as second:
                assert second.quic._retry_count == 1
                assert (await second.get("/")).status == 200


async def test_clients_past_the_connection_limit_are_refused(pki: PKI) -> None:
    options = h3_options(pki, quic_retry="never", quic_max_connections=1)
    async with server(echo_app, **options) as handle:
        address = quic_address(handle.addresses)
        async with h3_client(address, pki.ca_file) as first:
            async with h3_client(address, pki.ca_file, handshake=False) as second:
                await second.wait_for(lambda: second.terminated is not None)
                assert second.terminated is not None
                assert second.terminated.error_code == 0x2  # CONNECTION_REFUSED
            assert (await first.get("/")).status == 200


async def test_tcp_responses_advertise_http3_with_alt_svc(pki: PKI) -> None:
    options = h3_options(pki, bind=("127.0.0.1:0",))
    async with server(echo_app, **options) as handle:
        port = quic_address(handle.addresses).rpartition(":")[2]
        async with httpx.AsyncClient(verify=pki.client_context(alpn=())) as http:
            response = await http.get(https_url(handle.address))
    assert response.headers["alt-svc"] == f'h3=":{port}"; ma=86400'


async def test_alt_svc_off_advertises_nothing(pki: PKI) -> None:
    async with (
        server(echo_app, **h3_options(pki, alt_svc="off")) as handle,
        httpx.AsyncClient(verify=pki.client_context(alpn=())) as http,
    ):
        response = await http.get(https_url(handle.address))
    assert "alt-svc" not in response.headers


# -- configuration -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({"quic_bind": ("127.0.0.1:4433",)}, "quic_bind", "needs certfile"),
        ({"quic_bind": ("unix:/tmp/q.sock",), "certfile": "c.pem"}, "quic_bind", "UDP"),
        ({"quic_bind": ("fd://3",), "certfile": "c.pem"}, "quic_bind", "UDP"),
        ({"quic_bind": ("nonsense",), "certfile": "c.pem"}, "quic_bind", "not an address"),
        (
            {"quic_bind": ("127.0.0.1:0",), "certfile": "c.pem", "workers": 2},
            "quic_bind",
            "cannot be 0",
        ),
        ({"quic_retry": "sometimes"}, "quic_retry", "not allowed"),
        ({"quic_max_connections": 0}, "quic_max_connections", "at least 1"),
        ({"alt_svc": 'h3=":443"\r\nx: y'}, "alt_svc", "not a valid header value"),
    ],
)
def test_bad_http3_options_name_the_key(options: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        tricorn.Config(**options)
    assert raised.value.key == key
    assert fragment in str(raised.value)


def test_ipv6_and_repeated_quic_binds_are_accepted() -> None:
    config = tricorn.Config(certfile="c.pem", quic_bind=("127.0.0.1:4433", "[::1]:4433"))
    assert config.quic_bind == ("127.0.0.1:4433", "[::1]:4433")


@pytest.mark.parametrize(
    ("value", "ports", "expected"),
    [
        ("auto", [], ()),
        ("auto", [4433], ((b"alt-svc", b'h3=":4433"; ma=86400'),)),
        ("auto", [443, 443], ((b"alt-svc", b'h3=":443"; ma=86400'),)),
        ("auto", [443, 8443], ((b"alt-svc", b'h3=":443"; ma=86400, h3=":8443"; ma=86400'),)),
        ("off", [4433], ()),
        ('h3=":443"; ma=3600', [4433], ((b"alt-svc", b'h3=":443"; ma=3600'),)),
    ],
)
def test_alt_svc_value(value: str, ports: list[int], expected: tuple[Any, ...]) -> None:
    assert alt_svc(tricorn.Config(alt_svc=value), ports) == expected


async def test_ipv6_quic_bind_serves_http3(pki: PKI) -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6 here")
    try:
        probe = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
        probe.bind(("::1", 0))
        probe.close()
    except OSError:
        pytest.skip("no IPv6 loopback here")
    leaf = pki.ca.issue_cert("localhost", "::1")
    certfile = pki.directory / "v6.pem"
    leaf.private_key_and_cert_chain_pem.write_to_path(str(certfile))
    options = {"certfile": str(certfile), "quic_bind": ("[::1]:0",)}
    async with server(echo_app, **options) as handle:
        address = quic_address(handle.addresses)
        assert address.startswith("[::1]:")
        async with h3_client(address, pki.ca_file) as client:
            response = await client.get("/v6")
    assert response.headers[b"x-info"] == b"3 https GET /v6"


async def test_http3_connections_and_requests_are_counted_under_their_own_label(pki: PKI) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        fd = os.dup(sock.fileno())
        async with server(echo_app, **h3_options(pki, metrics_bind=f"fd://{fd}")) as handle:
            async with h3_client(quic_address(handle.addresses), pki.ca_file) as client:
                assert (await client.get("/counted")).status == 200
            async with httpx.AsyncClient() as scraper:
                text = (await scraper.get(f"http://127.0.0.1:{port}/metrics")).text
    assert 'tricorn_requests_total{protocol="h3",status_class="2xx"} 1.0' in text
    assert 'tricorn_connections_total{protocol="h3"} 1.0' in text
    assert 'tricorn_requests_total{protocol="http1",status_class="2xx"} 0.0' in text


async def test_early_hints_and_the_tls_extension_work_as_on_http2(pki: PKI) -> None:
    seen: dict[str, Any] = {}

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        seen.update(scope["extensions"]["tls"])
        assert "http.response.early_hint" in scope["extensions"]
        await send({"type": "http.response.early_hint", "links": [b"</s.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"ok"})

    async with (
        server(app, **h3_options(pki)) as handle,
        h3_client(quic_address(handle.addresses), pki.ca_file) as client,
    ):
        response = await client.get("/")
    assert response.status == 200
    informational = dict(response.heads[0])
    assert informational[b":status"] == b"103"
    assert informational[b"link"] == b"</s.css>; rel=preload"
    assert seen["tls_version"] == 0x0304  # QUIC is TLS 1.3
    assert seen["cipher_suite"] is not None
