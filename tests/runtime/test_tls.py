"""TLS: certificates from trustme, real handshakes over loopback, real clients.

The server runs with a certificate issued by a throwaway trustme CA; clients
trust that CA. Each test checks what the client saw and what the app saw
(or, for clients that are refused, what the server logged).
"""

from __future__ import annotations

import datetime
import socket
import ssl
import time
import warnings
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import httpx
import pytest
import trustme
from anyio.streams.tls import TLSAttribute, TLSStream
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

import tricorn
from tests.conftest import running_server
from tricorn._asgi.proxy import ProxyTrust
from tricorn._asgi.scope import ConnectionInfo
from tricorn._runtime.tls import (
    accept_tls,
    certificate_subject,
    create_ssl_context,
    h2_forbidden_ciphers,
    negotiated_protocol,
    tls_extension,
)
from tricorn.errors import ConfigError

from ._support import WAIT, RawClient, lifespan_ok, raw_client, request, server, watch_log
from .test_proxy_protocol import v2_tcp4

#: IANA numbers of the TLS 1.3 suites (RFC 8446 B.4).
TLS13_SUITES = {0x1301, 0x1302, 0x1303}


@dataclass(frozen=True)
class PKI:
    """A CA, a server certificate for localhost and a client certificate, as files."""

    ca: trustme.CA
    server: trustme.LeafCert
    client: trustme.LeafCert
    ca_file: str
    #: The server's private key and certificate chain in one PEM file.
    certfile: str
    directory: Path

    def server_options(self, **options: Any) -> dict[str, Any]:
        return {"certfile": self.certfile, **options}

    def client_context(
        self,
        *,
        alpn: tuple[str, ...] = ("http/1.1",),
        with_cert: bool = False,
    ) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=self.ca_file)
        if alpn:
            context.set_alpn_protocols(list(alpn))
        if with_cert:
            self.client.configure_cert(context)
        return context


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    client = ca.issue_cert("client.example", common_name="alice, the client")
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    return PKI(
        ca=ca,
        server=leaf,
        client=client,
        ca_file=str(directory / "ca.pem"),
        certfile=str(directory / "server.pem"),
        directory=directory,
    )


def recording_app(scopes: list[dict[str, Any]]) -> Any:
    """Answers 200 "ok" to every request and WebSocket handshake, keeping each scope."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_ok(receive, send)
            return
        scopes.append(scope)
        if scope["type"] == "websocket":
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.close", "code": 1000})
            return
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]}
        )
        await send({"type": "http.response.body", "body": b"ok"})

    return app


def https_url(address: str, path: str = "/") -> str:
    return f"https://localhost:{address.rpartition(':')[2]}{path}"


@asynccontextmanager
async def tls_client(address: str, context: ssl.SSLContext) -> AsyncIterator[RawClient]:
    """A raw HTTP/1.1 client over TLS (see ``_support.RawClient``)."""
    host, _, port = address.rpartition(":")
    with anyio.fail_after(WAIT):
        stream = await anyio.connect_tcp(
            host,
            int(port),
            ssl_context=context,
            tls_hostname="localhost",
            tls_standard_compatible=False,
        )
    async with stream:
        yield RawClient(stream)


async def get_ok(address: str, pki: PKI, **client_options: Any) -> httpx.Response:
    context = pki.client_context(**client_options)
    async with httpx.AsyncClient(verify=context, timeout=WAIT) as client:
        response = await client.get(https_url(address))
    assert response.status_code == 200
    assert response.text == "ok"
    return response


def der(pem: str | bytes) -> bytes:
    return ssl.PEM_cert_to_DER_cert(pem.decode() if isinstance(pem, bytes) else pem)


# -- serving HTTPS ----------------------------------------------------------------


@pytest.mark.anyio
async def test_https_request_reaches_the_app_with_scheme_https_and_the_tls_extension(
    pki: PKI,
) -> None:
    scopes: list[dict[str, Any]] = []
    async with running_server(recording_app(scopes), **pki.server_options()) as address:
        context = pki.client_context()
        async with httpx.AsyncClient(verify=context, timeout=WAIT) as client:
            for _ in range(2):
                response = await client.get(https_url(address))
                assert response.status_code == 200
    first, second = scopes
    assert first["scheme"] == "https"
    tls = first["extensions"]["tls"]
    assert der(tls["server_cert"]) == der(pki.server.cert_chain_pems[0].bytes())
    assert tls["client_cert_chain"] == []
    assert tls["client_cert_name"] is None
    assert tls["client_cert_error"] is None
    assert tls["tls_version"] == 0x0304
    assert tls["cipher_suite"] in TLS13_SUITES
    # Each request gets its own copy: what one app changes stays in its request.
    assert second["extensions"]["tls"] == tls
    assert second["extensions"]["tls"] is not tls


@pytest.mark.anyio
async def test_tls_12_reports_the_version_and_cipher_suite_numbers(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    context = pki.client_context()
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    # trustme's keys are ECDSA; TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256 is {0xC0, 0x2B}.
    context.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
    async with (
        running_server(recording_app(scopes), **pki.server_options()) as address,
        tls_client(address, context) as client,
    ):
        await client.send(request())
        assert (await client.response()).status_code == 200
    tls = scopes[0]["extensions"]["tls"]
    assert tls["tls_version"] == 0x0303
    assert tls["cipher_suite"] == 0xC02B


@pytest.mark.anyio
async def test_an_http11_only_client_negotiates_http11_and_is_served(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    context = pki.client_context(alpn=("http/1.1",))
    async with (
        running_server(recording_app(scopes), **pki.server_options()) as address,
        tls_client(address, context) as client,
    ):
        assert client.stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
        await client.send(request())
        response = await client.response()
    assert response.status_code == 200
    assert scopes[0]["http_version"] == "1.1"


@pytest.mark.anyio
async def test_alpn_prefers_h2_when_the_client_offers_both(pki: PKI) -> None:
    context = pki.client_context(alpn=("http/1.1", "h2"))
    async with (
        running_server(recording_app([]), **pki.server_options()) as address,
        tls_client(address, context) as client,
    ):
        # RFC 7301 3.2: the server chooses, and it prefers h2.
        assert client.stream.extra(TLSAttribute.alpn_protocol) == "h2"


@pytest.mark.anyio
async def test_alpn_offers_only_http11_when_http2_is_off(pki: PKI) -> None:
    context = pki.client_context(alpn=("h2", "http/1.1"))
    async with (
        running_server(recording_app([]), **pki.server_options(http2=False)) as address,
        tls_client(address, context) as client,
    ):
        assert client.stream.extra(TLSAttribute.alpn_protocol) == "http/1.1"
        await client.send(request())
        assert (await client.response()).status_code == 200


@pytest.mark.anyio
async def test_a_websocket_over_tls_has_scheme_wss_and_the_tls_extension(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    headers = [
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
        ("Sec-WebSocket-Version", "13"),
    ]
    async with (
        running_server(recording_app(scopes), **pki.server_options()) as address,
        tls_client(address, pki.client_context()) as client,
    ):
        await client.send(request(headers=headers))
        with anyio.fail_after(WAIT):
            answer = await client.receive_some()
    assert answer.startswith(b"HTTP/1.1 101 ")
    assert scopes[0]["type"] == "websocket"
    assert scopes[0]["scheme"] == "wss"
    assert scopes[0]["extensions"]["tls"]["tls_version"] == 0x0304
    assert "websocket.http.response" in scopes[0]["extensions"]


@pytest.mark.anyio
async def test_a_trusted_proxy_changes_the_client_but_keeps_the_tls_extension(pki: PKI) -> None:
    scopes: list[dict[str, Any]] = []
    async with (
        running_server(recording_app(scopes), **pki.server_options()) as address,
        httpx.AsyncClient(verify=pki.client_context(), timeout=WAIT) as client,
    ):
        headers = {"x-forwarded-for": "198.51.100.7"}
        response = await client.get(https_url(address), headers=headers)
    assert response.status_code == 200
    assert scopes[0]["client"] == ("198.51.100.7", 0)
    assert scopes[0]["scheme"] == "https"
    assert scopes[0]["extensions"]["tls"]["tls_version"] == 0x0304


# -- clients that are refused ---------------------------------------------------


@pytest.mark.anyio
async def test_a_tls_11_client_is_refused(pki: PKI) -> None:
    old = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    old.load_verify_locations(pki.ca_file)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLS 1.1 is, which is the point
        old.minimum_version = old.maximum_version = ssl.TLSVersion.TLSv1_1
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # let this client offer TLS 1.1 at all
    with watch_log() as log:
        async with running_server(recording_app([]), **pki.server_options()) as address:
            with pytest.raises((ssl.SSLError, anyio.BrokenResourceError, anyio.EndOfStream)):
                async with tls_client(address, old):
                    pass
            await log.wait_for("TLS handshake with 127.0.0.1")
            await get_ok(address, pki)
    assert any("unsupported protocol" in message for message in log.messages()), log.messages()


@pytest.mark.anyio
async def test_required_client_certificates_refuse_a_client_without_one(pki: PKI) -> None:
    options = pki.server_options(verify_mode="required", ca_certs=pki.ca_file)
    scopes: list[dict[str, Any]] = []
    with watch_log() as log:
        async with running_server(recording_app(scopes), **options) as address:
            async with httpx.AsyncClient(verify=pki.client_context(), timeout=WAIT) as client:
                with pytest.raises(httpx.TransportError):
                    await client.get(https_url(address))
            await log.wait_for("TLS handshake with 127.0.0.1")
    assert scopes == []
    assert any("certificate" in message for message in log.messages()), log.messages()


@pytest.mark.anyio
async def test_a_client_certificate_reaches_the_app_as_name_and_chain(pki: PKI) -> None:
    options = pki.server_options(verify_mode="required", ca_certs=pki.ca_file)
    scopes: list[dict[str, Any]] = []
    async with running_server(recording_app(scopes), **options) as address:
        await get_ok(address, pki, with_cert=True)
    tls = scopes[0]["extensions"]["tls"]
    client_pem = pki.client.cert_chain_pems[0].bytes()
    subject = x509.load_pem_x509_certificate(client_pem).subject
    assert tls["client_cert_name"] == subject.rfc4514_string()
    assert "CN=alice\\, the client" in tls["client_cert_name"]
    assert [der(pem) for pem in tls["client_cert_chain"]][:1] == [der(client_pem)]
    assert tls["client_cert_error"] is None


@pytest.mark.anyio
async def test_optional_client_certificates_serve_a_client_without_one(pki: PKI) -> None:
    options = pki.server_options(verify_mode="optional", ca_certs=pki.ca_file)
    scopes: list[dict[str, Any]] = []
    async with running_server(recording_app(scopes), **options) as address:
        await get_ok(address, pki)
        await get_ok(address, pki, with_cert=True)
    without, with_cert = (scope["extensions"]["tls"] for scope in scopes)
    assert without["client_cert_name"] is None
    assert without["client_cert_chain"] == []
    assert with_cert["client_cert_name"] is not None
    assert len(with_cert["client_cert_chain"]) >= 1


@pytest.mark.anyio
async def test_a_client_certificate_from_another_ca_is_refused_even_when_optional(
    pki: PKI,
) -> None:
    stranger = trustme.CA().issue_cert("stranger.example")
    context = pki.client_context()
    stranger.configure_cert(context)
    options = pki.server_options(verify_mode="optional", ca_certs=pki.ca_file)
    scopes: list[dict[str, Any]] = []
    with watch_log() as log:
        async with (
            running_server(recording_app(scopes), **options) as address,
            httpx.AsyncClient(verify=context, timeout=WAIT) as client,
        ):
            with pytest.raises(httpx.TransportError):
                await client.get(https_url(address))
            await log.wait_for("client certificate refused")
    assert scopes == []


@pytest.mark.anyio
async def test_a_silent_client_is_dropped_after_the_handshake_timeout_while_others_are_served(
    pki: PKI,
) -> None:
    timeout = 0.5
    with watch_log() as log:
        async with (
            running_server(
                recording_app([]), **pki.server_options(tls_handshake_timeout=timeout)
            ) as address,
            raw_client(address) as silent,
        ):
            began = time.monotonic()
            await get_ok(address, pki)
            assert await silent.closed_by_server(within=timeout + WAIT)
            elapsed = time.monotonic() - began
            await log.wait_for("not done within 0.5s")
    assert elapsed >= timeout * 0.8, f"dropped after {elapsed:.2f}s"


@pytest.mark.anyio
async def test_plain_http_on_the_tls_port_is_dropped_and_the_server_carries_on(pki: PKI) -> None:
    with watch_log() as log:
        async with running_server(recording_app([]), **pki.server_options()) as address:
            async with raw_client(address) as plain:
                await plain.send(request())
                assert await plain.closed_by_server()
            await get_ok(address, pki)
    assert any("http request" in message for message in log.messages()), log.messages()
    assert not [record for record in log.records if record.levelname == "ERROR"]


@pytest.mark.anyio
async def test_shutdown_does_not_wait_for_a_pending_handshake(pki: PKI) -> None:
    options = pki.server_options(tls_handshake_timeout=30, graceful_timeout=30)
    async with server(recording_app([]), **options) as handle, raw_client(handle.address) as silent:
        # Until every task waits: the server has accepted it (the connection
        # was queued before connect returned) and waits for a ClientHello.
        await anyio.wait_all_tasks_blocked()
        handle.shutdown()
        await handle.wait_stopped(within=WAIT)
        assert await silent.closed_by_server()


@pytest.mark.anyio
async def test_a_bad_certificate_fails_serve_before_lifespan_startup(tmp_path: Path) -> None:
    types: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        types.append(scope["type"])
        await lifespan_ok(receive, send)

    config = tricorn.Config(
        bind=("127.0.0.1:0",), certfile=str(tmp_path / "missing.pem"), lifespan="on"
    )
    with pytest.raises(ConfigError) as raised:
        await tricorn.serve(app, config)
    assert raised.value.key == "certfile"
    assert types == []


# -- the API the connection layer uses ----------------------------------------------


@asynccontextmanager
async def tls_pair(
    server_context: ssl.SSLContext, client_context: ssl.SSLContext
) -> AsyncIterator[tuple[anyio.abc.ByteStream | None, TLSStream]]:
    """Both ends of one TLS connection over a socket pair: (accept_tls's result, client)."""
    left, right = socket.socketpair()
    server_stream = await anyio.abc.UNIXSocketStream.from_socket(left)
    client_stream = await anyio.abc.UNIXSocketStream.from_socket(right)
    accepted: list[anyio.abc.ByteStream | None] = []

    async def accept() -> None:
        accepted.append(await accept_tls(server_stream, server_context, WAIT))

    with anyio.fail_after(WAIT):
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(accept)
            client = await TLSStream.wrap(
                client_stream,
                hostname="localhost",
                ssl_context=client_context,
                standard_compatible=False,
            )
    try:
        yield accepted[0], client
    finally:
        await client.aclose()
        if accepted[0] is not None:
            await accepted[0].aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("offered", "chosen"),
    [(("h2", "http/1.1"), "h2"), (("http/1.1",), "http/1.1"), ((), None)],
    ids=["both", "http1.1", "no-alpn"],
)
async def test_negotiated_protocol_is_what_alpn_chose(
    pki: PKI, offered: tuple[str, ...], chosen: str | None
) -> None:
    context = create_ssl_context(tricorn.Config(**pki.server_options()))
    assert context is not None
    async with tls_pair(context, pki.client_context(alpn=offered)) as (accepted, client):
        assert accepted is not None
        assert negotiated_protocol(accepted) == chosen
        assert client.extra(TLSAttribute.alpn_protocol) == chosen
        extension = tls_extension(accepted)
        assert extension is not None
        assert extension["tls_version"] == 0x0304


@pytest.mark.anyio
async def test_a_plain_stream_has_no_protocol_and_no_tls_extension() -> None:
    left, right = socket.socketpair()
    async with (
        await anyio.abc.UNIXSocketStream.from_socket(left) as plain,
        await anyio.abc.UNIXSocketStream.from_socket(right),
    ):
        assert negotiated_protocol(plain) is None
        assert tls_extension(plain) is None


@pytest.mark.anyio
async def test_accept_tls_returns_none_when_the_client_hangs_up(pki: PKI) -> None:
    context = create_ssl_context(tricorn.Config(**pki.server_options()))
    assert context is not None
    left, right = socket.socketpair()
    right.close()
    stream = await anyio.abc.UNIXSocketStream.from_socket(left)
    with anyio.fail_after(WAIT):
        assert await accept_tls(stream, context, WAIT) is None


def test_the_proxy_keeps_the_tls_extension() -> None:
    tls: Any = {"tls_version": 0x0304}
    info = ConnectionInfo(
        client=("127.0.0.1", 5000), server=("127.0.0.1", 443), scheme="https", tls=tls
    )
    resolved = ProxyTrust.parse(["127.0.0.1"]).resolve(info, [(b"x-forwarded-for", b"10.1.2.3")])
    assert resolved.client == ("10.1.2.3", 0)
    assert resolved.tls is tls


# -- the SSLContext -------------------------------------------------------------------


def test_no_certfile_means_no_context() -> None:
    assert create_ssl_context(tricorn.Config()) is None


def test_the_context_is_tls12_and_later_without_compression_or_renegotiation(pki: PKI) -> None:
    context = create_ssl_context(tricorn.Config(**pki.server_options()))
    assert context is not None
    assert context.minimum_version == ssl.TLSVersion.TLSv1_2
    assert context.options & ssl.OP_NO_COMPRESSION
    assert context.options & ssl.OP_NO_RENEGOTIATION
    assert context.verify_mode == ssl.CERT_NONE


def test_default_ciphers_are_all_ones_http2_accepts(pki: PKI) -> None:
    context = create_ssl_context(tricorn.Config(**pki.server_options()))
    assert context is not None
    tls12 = [cipher for cipher in context.get_ciphers() if cipher["protocol"] == "TLSv1.2"]
    assert tls12
    # RFC 9113 9.2.2 / Appendix A: no CBC, no static RSA.
    assert all(cipher["aead"] for cipher in tls12), tls12
    assert all(cipher["kea"] in ("kx-ecdhe", "kx-dhe") for cipher in tls12), tls12
    assert h2_forbidden_ciphers(context) == []


def test_a_cipher_string_replaces_the_default_for_tls12(pki: PKI) -> None:
    config = tricorn.Config(**pki.server_options(ciphers="ECDHE-ECDSA-AES128-GCM-SHA256"))
    context = create_ssl_context(config)
    assert context is not None
    tls12 = [c["name"] for c in context.get_ciphers() if c["protocol"] == "TLSv1.2"]
    assert tls12 == ["ECDHE-ECDSA-AES128-GCM-SHA256"]


@pytest.mark.anyio
async def test_a_cipher_string_http2_may_refuse_is_warned_about_and_still_served(
    pki: PKI,
) -> None:
    ciphers = "ECDHE-ECDSA-AES128-SHA256:ECDHE-ECDSA-AES128-GCM-SHA256"
    with watch_log() as log:
        async with running_server(
            recording_app([]), **pki.server_options(ciphers=ciphers)
        ) as address:
            await get_ok(address, pki)
    warned = [r.getMessage() for r in log.records if r.levelname == "WARNING"]
    assert any("ECDHE-ECDSA-AES128-SHA256" in message for message in warned), warned
    assert not any("ECDHE-ECDSA-AES128-GCM-SHA256" in message for message in warned)


@pytest.fixture(scope="module")
def key_files(pki: PKI) -> dict[str, str]:
    """Certificate and key files, good and bad, by name."""
    directory = pki.directory
    key = serialization.load_pem_private_key(pki.server.private_key_pem.bytes(), None)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"s3cret"),
    )
    files = {
        "cert": pki.server.cert_chain_pems[0].bytes(),
        "key": pki.server.private_key_pem.bytes(),
        "encrypted": encrypted,
        "other-key": pki.ca.issue_cert("other.example").private_key_pem.bytes(),
        "junk": b"not a certificate\n",
        "broken-cert": b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    }
    paths = {}
    for name, content in files.items():
        (directory / f"{name}.pem").write_bytes(content)
        paths[name] = str(directory / f"{name}.pem")
    paths["missing"] = str(directory / "missing.pem")
    return paths


@pytest.mark.parametrize(
    ("options", "key", "fragment"),
    [
        ({"certfile": "missing"}, "certfile", "No such file"),
        ({"certfile": "junk"}, "certfile", "no PEM certificate"),
        ({"certfile": "broken-cert", "keyfile": "key"}, "certfile", "does not parse"),
        ({"certfile": "cert"}, "keyfile", "holds no private key"),
        ({"certfile": "cert", "keyfile": "missing"}, "keyfile", "No such file"),
        ({"certfile": "cert", "keyfile": "junk"}, "keyfile", "no PEM private key"),
        ({"certfile": "cert", "keyfile": "other-key"}, "keyfile", "does not match"),
        ({"certfile": "cert", "keyfile": "encrypted"}, "keyfile_password", "encrypted"),
        (
            {"certfile": "cert", "keyfile": "encrypted", "keyfile_password": "wrong"},
            "keyfile_password",
            "cannot decrypt",
        ),
        ({"certfile": "cert", "keyfile": "key", "ciphers": "NOPE"}, "ciphers", "NOPE"),
        ({"certfile": "cert", "keyfile": "key", "ca_certs": "missing"}, "ca_certs", "No such"),
        ({"certfile": "cert", "keyfile": "key", "ca_certs": "junk"}, "ca_certs", "no CA"),
    ],
)
def test_a_file_problem_is_a_config_error_naming_the_key(
    key_files: dict[str, str], options: dict[str, str], key: str, fragment: str
) -> None:
    files = {"certfile", "keyfile", "ca_certs"}
    values = {name: key_files[value] if name in files else value for name, value in options.items()}
    with pytest.raises(ConfigError) as raised:
        create_ssl_context(tricorn.Config(**values))
    assert raised.value.key == key
    assert fragment in str(raised.value)


def test_an_encrypted_key_loads_with_its_password(key_files: dict[str, str]) -> None:
    config = tricorn.Config(
        certfile=key_files["cert"], keyfile=key_files["encrypted"], keyfile_password="s3cret"
    )
    assert create_ssl_context(config) is not None


# -- RFC 4514 names -------------------------------------------------------------------


def _certificate(subject: x509.Name) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    start = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "issuer")]))
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return certificate.public_bytes(serialization.Encoding.DER)


@pytest.mark.parametrize(
    "subject",
    [
        x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "alice")]),
        x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "NZ"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Ex, Ample; <Ltd>"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "#1 team "),
                x509.NameAttribute(NameOID.COMMON_NAME, ' "quoted" + back\\slash'),
            ]
        ),
        x509.Name(
            [
                x509.RelativeDistinguishedName(
                    [
                        x509.NameAttribute(NameOID.COMMON_NAME, "multi"),
                        x509.NameAttribute(NameOID.USER_ID, "u1"),
                    ]
                ),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.DOMAIN_COMPONENT, "example")]
                ),
                x509.RelativeDistinguishedName(
                    [x509.NameAttribute(NameOID.LOCALITY_NAME, "Zürich")]
                ),
            ]
        ),
        x509.Name([]),
    ],
    ids=["simple", "escapes", "multivalued-utf8", "empty"],
)
def test_certificate_subject_is_the_rfc4514_string(subject: x509.Name) -> None:
    assert certificate_subject(_certificate(subject)) == subject.rfc4514_string()


def test_an_attribute_without_a_short_name_is_a_dotted_oid_with_hex_ber() -> None:
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.EMAIL_ADDRESS, "a@b"),
            x509.NameAttribute(NameOID.COMMON_NAME, "alice"),
        ]
    )
    # RFC 4514 2.3 / 2.4: IA5String (0x16) of length 3, "a@b".
    assert certificate_subject(_certificate(subject)) == "CN=alice,1.2.840.113549.1.9.1=#1603614062"


def test_a_certificate_that_does_not_parse_has_no_subject() -> None:
    assert certificate_subject(b"\x30\x82\xff") is None


class _HeaderFirst(anyio.abc.ByteStream):
    """A TCP stream whose first write carries a PROXY header ahead of the bytes given."""

    def __init__(self, stream: anyio.abc.ByteStream, header: bytes) -> None:
        self._stream = stream
        self._header = header

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        item, self._header = self._header + item, b""
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("header", "with_hello"),
    [
        (b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n", False),
        (v2_tcp4("203.0.113.7", "192.0.2.1", (56324, 443)), False),
        (b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n", True),
        (v2_tcp4("203.0.113.7", "192.0.2.1", (56324, 443)), True),
    ],
    ids=["v1", "v2", "v1-with-hello", "v2-with-hello"],
)
async def test_a_proxy_header_comes_before_the_tls_handshake(
    pki: PKI, header: bytes, with_hello: bool
) -> None:
    # A TCP proxy (HAProxy send-proxy) relays TLS untouched, after its header;
    # the client's ClientHello may come in the same segment.
    scopes: list[dict[str, Any]] = []
    options = pki.server_options(proxy_protocol=True)
    async with server(recording_app(scopes), **options) as handle:
        host, _, port = handle.address.rpartition(":")
        tcp: anyio.abc.ByteStream = await anyio.connect_tcp(host, int(port))
        if with_hello:
            tcp = _HeaderFirst(tcp, header)
        else:
            await tcp.send(header)
        tls = await TLSStream.wrap(
            tcp, hostname="localhost", ssl_context=pki.client_context(), standard_compatible=False
        )
        async with tls:
            client = RawClient(tls)
            await client.send(request())
            assert (await client.response()).status_code == 200
    (scope,) = [scope for scope in scopes if scope["type"] == "http"]
    assert scope["client"] == ("203.0.113.7", 56324)
    assert scope["scheme"] == "https"
    assert scope["extensions"]["tls"]["tls_version"] in (0x0303, 0x0304)
