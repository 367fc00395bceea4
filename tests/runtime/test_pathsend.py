"""File bodies (ASGI pathsend, zerocopysend): sendfile on cleartext HTTP/1.1, pieces elsewhere.

Real sockets on loopback; whether the kernel sent the file is read from the
transport's own count of sendfile bytes (``sendfile_bytes``), which only
``os.sendfile`` moves.
"""

from __future__ import annotations

import os
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, BinaryIO

import anyio
import h2.events
import pytest
import trustme

from tests.conftest import running_server
from tricorn._runtime.transport import sendfile_bytes
from tricorn.errors import ClientDisconnected

from ._h2wire import H2Wire
from ._support import WAIT, RawClient, raw_client, request, watch_log

pytestmark = pytest.mark.anyio

#: 1 MiB and an odd tail: more than one read piece, not a multiple of one.
ODD_SIZE = 1024 * 1024 + 4099


def make_file(directory: Path, size: int, name: str = "body.bin") -> tuple[str, bytes]:
    data = os.urandom(size)
    path = directory / name
    path.write_bytes(data)
    return str(path), data


def sparse_file(directory: Path) -> str:
    """A file as large as the socket buffers many times over, on no disk."""
    path = directory / "large.bin"
    with open(path, "wb") as file:
        file.truncate(256 * 1024 * 1024)
    return str(path)


def reader(path: str) -> BinaryIO:
    return open(path, "rb")


def pathsend_app(
    path: str,
    *,
    length: bool = True,
    errors: list[BaseException] | None = None,
    failed: anyio.Event | None = None,
) -> Callable[..., Any]:
    """Answers every request with the file at ``path`` by pathsend (with a Content-Length).

    What the send raises goes into ``errors``, and sets ``failed``.
    """
    size = os.path.getsize(path) if length and os.path.exists(path) else None

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert scope["type"] == "http"
        assert "http.response.pathsend" in scope["extensions"]
        headers = [(b"content-type", b"application/octet-stream")]
        if size is not None:
            headers.append((b"content-length", str(size).encode()))
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        try:
            await send({"type": "http.response.pathsend", "path": path})
        except BaseException as exc:
            if errors is not None:
                errors.append(exc)
            if failed is not None:
                failed.set()
            raise

    return app


@asynccontextmanager
async def serving(app: Any, **options: Any) -> AsyncIterator[str]:
    options.setdefault("lifespan", "off")
    async with running_server(app, **options) as address:
        yield address


@pytest.mark.parametrize("size", [0, 1, ODD_SIZE])
async def test_pathsend_over_cleartext_http1_is_sent_by_the_kernel(
    tmp_path: Path, size: int
) -> None:
    path, data = make_file(tmp_path, size)
    async with serving(pathsend_app(path)) as address, raw_client(address) as client:
        before = sendfile_bytes()
        await client.send(request())
        response = await client.response()
    assert response.status_code == 200
    assert response.header(b"content-length") == str(size).encode()
    assert response.body == data
    assert sendfile_bytes() - before == size


async def test_pathsend_without_content_length_is_chunked_around_the_kernel_s_bytes(
    tmp_path: Path,
) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    async with serving(pathsend_app(path, length=False)) as address, raw_client(address) as client:
        before = sendfile_bytes()
        await client.send(request())
        response = await client.response()
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.body == data
    assert sendfile_bytes() - before == ODD_SIZE


async def test_keep_alive_carries_on_after_a_pathsend(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    async with serving(pathsend_app(path)) as address, raw_client(address) as client:
        for _ in range(2):
            await client.send(request())
            response = await client.response()
            assert response.body == data
            assert response.header(b"connection") is None


async def test_head_answers_the_file_s_length_and_sends_no_byte_of_it(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    async with serving(pathsend_app(path)) as address, raw_client(address) as client:
        before = sendfile_bytes()
        await client.send(request("HEAD"))
        head = await client.response(b"HEAD")
        await client.send(request())
        response = await client.response()  # the connection is still in step
    assert head.header(b"content-length") == str(ODD_SIZE).encode()
    assert head.body == b""
    assert response.body == data
    assert sendfile_bytes() - before == ODD_SIZE


async def test_a_missing_file_is_the_app_s_error_and_the_client_gets_500(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    app = pathsend_app(str(tmp_path / "nowhere.bin"), errors=errors)
    with watch_log() as log:
        async with serving(app) as address, raw_client(address) as client:
            await client.send(request())
            response = await client.response()
            await log.wait_for("broke the HTTP message cycle")
    assert response.status_code == 500
    assert "cannot open" in str(errors[0])
    assert "nowhere.bin" in str(errors[0])


async def test_a_relative_path_is_refused_with_500(tmp_path: Path) -> None:
    errors: list[BaseException] = []
    app = pathsend_app("body.bin", errors=errors)
    async with serving(app) as address, raw_client(address) as client:
        await client.send(request())
        response = await client.response()
    assert response.status_code == 500
    assert "absolute path" in str(errors[0])


async def test_zerocopysend_sends_ranges_mixed_with_body_messages(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    positions: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert "http.response.zerocopysend" in scope["extensions"]
        await send({"type": "http.response.start", "status": 200})
        with reader(path) as file:
            await send({"type": "http.response.body", "body": b"<", "more_body": True})
            message = {"type": "http.response.zerocopysend", "file": file}
            await send({**message, "offset": 10, "count": 1000, "more_body": True})
            # Without an offset: from the file's position, which moves on.
            await send({**message, "count": 5, "more_body": True})
            positions.append(os.lseek(file.fileno(), 0, os.SEEK_CUR))
            await send({**message, "more_body": True})  # to the end
            await send({**message, "offset": ODD_SIZE - 3, "count": 100, "more_body": True})
            await send({"type": "http.response.body", "body": b">"})

    async with serving(app) as address, raw_client(address) as client:
        await client.send(request())
        response = await client.response()
    assert response.body == b"<" + data[10:1010] + data[:5] + data[5:] + data[-3:] + b">"
    assert positions == [5]


async def test_a_zerocopysend_without_more_body_ends_the_response(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, 100)
    late: list[BaseException] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        with reader(path) as file:
            await send({"type": "http.response.zerocopysend", "file": file, "offset": 0})
        try:
            await send({"type": "http.response.body", "body": b"late"})
        except Exception as exc:
            late.append(exc)

    async with serving(app) as address, raw_client(address) as client:
        await client.send(request())
        response = await client.response()
        await client.send(request())  # and the connection carries on
        assert (await client.response()).body == data
    assert response.body == data
    assert late
    assert "http.response.body" in str(late[0])


async def test_a_client_leaving_mid_file_ends_the_app_s_send_with_a_disconnect(
    tmp_path: Path,
) -> None:
    path = sparse_file(tmp_path)
    errors: list[BaseException] = []
    failed = anyio.Event()
    async with serving(pathsend_app(path, errors=errors, failed=failed)) as address:
        async with raw_client(address) as client:
            await client.send(request())
            assert await client.stream.receive()  # the head and the start of the body
        with anyio.fail_after(WAIT):
            await failed.wait()
    assert isinstance(errors[0], ClientDisconnected)


async def test_a_client_that_stops_reading_is_cut_off_after_write_timeout(
    tmp_path: Path,
) -> None:
    path = sparse_file(tmp_path)
    errors: list[BaseException] = []
    app = pathsend_app(path, errors=errors)
    with watch_log() as log:
        async with serving(app, write_timeout=0.3) as address, raw_client(address) as client:
            await client.send(request())
            await log.wait_for("write_timeout", within=WAIT + 0.3)
            assert await client.closed_by_server()
    assert isinstance(errors[0], ClientDisconnected)


# -- where the kernel cannot send it: pieces through the ordinary send --------


async def test_pathsend_over_http2_goes_in_pieces_within_the_windows(tmp_path: Path) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    async with serving(pathsend_app(path)) as address:
        before = sendfile_bytes()
        wire = await H2Wire.connect(address)
        try:
            headers, body = await wire.response(await wire.get("/"))
            _, other = await wire.response(await wire.get("/"))
        finally:
            await wire.aclose()
    assert headers[b":status"] == b"200"
    assert headers[b"content-length"] == str(ODD_SIZE).encode()
    assert body == other == data
    assert sendfile_bytes() == before


async def test_a_head_over_http2_gets_no_body(tmp_path: Path) -> None:
    path, _ = make_file(tmp_path, ODD_SIZE)
    async with serving(pathsend_app(path)) as address:
        wire = await H2Wire.connect(address)
        try:
            stream_id = wire.conn.get_next_available_stream_id()
            wire.conn.send_headers(
                stream_id,
                [
                    (b":method", b"HEAD"),
                    (b":scheme", b"http"),
                    (b":authority", b"localhost"),
                    (b":path", b"/"),
                ],
                end_stream=True,
            )
            await wire.flush()
            headers, body = await wire.response(stream_id)
        finally:
            await wire.aclose()
    assert headers[b"content-length"] == str(ODD_SIZE).encode()
    assert body == b""
    assert not any(isinstance(event, h2.events.StreamReset) for event in wire.events)


@pytest.fixture(scope="module")
def certfile(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, trustme.CA]:
    directory = tmp_path_factory.mktemp("pki")
    ca = trustme.CA()
    leaf = ca.issue_cert("localhost", "127.0.0.1")
    leaf.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    return str(directory / "server.pem"), ca


async def test_pathsend_over_tls_goes_in_pieces(
    tmp_path: Path, certfile: tuple[str, trustme.CA]
) -> None:
    path, data = make_file(tmp_path, ODD_SIZE)
    server_cert, ca = certfile
    context = ssl.create_default_context()
    ca.configure_trust(context)
    async with serving(pathsend_app(path), certfile=server_cert) as address:
        host, _, port = address.rpartition(":")
        before = sendfile_bytes()
        with anyio.fail_after(WAIT):
            stream = await anyio.connect_tcp(
                host,
                int(port),
                ssl_context=context,
                tls_hostname="localhost",
                tls_standard_compatible=False,
            )
        async with stream:
            client = RawClient(stream)
            for _ in range(2):
                await client.send(request())
                assert (await client.response()).body == data
    assert sendfile_bytes() == before


# -- Starlette's FileResponse ---------------------------------------------------


async def test_starlette_file_response_is_sent_by_pathsend(tmp_path: Path) -> None:
    from starlette.applications import Starlette
    from starlette.responses import FileResponse
    from starlette.routing import Route

    path, data = make_file(tmp_path, ODD_SIZE, "download.bin")

    async def download(request: Any) -> FileResponse:
        return FileResponse(path)

    app = Starlette(routes=[Route("/download", download)])
    async with serving(app) as address, raw_client(address) as client:
        before = sendfile_bytes()
        await client.send(request("GET", "/download"))
        response = await client.response()
    assert response.status_code == 200
    assert response.body == data
    assert sendfile_bytes() - before == ODD_SIZE
