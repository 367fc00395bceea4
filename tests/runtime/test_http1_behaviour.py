"""HTTP/1.1: connections, bodies, 100-continue, headers, scope and binds.

The protocol's behaviour is shown over in-memory connections (``memory_server``);
what depends on a real socket (binds, addresses in the scope) over loopback.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path
from typing import Any

import anyio
import h11
import httpx
import pytest

from tests.conftest import running_server

from ._memory import memory_server
from ._support import (
    WAIT,
    lifespan_ok,
    ok_app,
    raw_client,
    read_body,
    request,
    server,
)

pytestmark = pytest.mark.anyio


async def echo_app(scope: Any, receive: Any, send: Any) -> None:
    """Answers with the request path and body: ``<path>|<body>``."""
    if scope["type"] == "lifespan":
        await lifespan_ok(receive, send)
        return
    body, _ = await read_body(receive)
    payload = scope["path"].encode() + b"|" + body
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(payload)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": payload})


def recording_app(scopes: list[dict[str, Any]]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            await lifespan_ok(receive, send)
            return
        scopes.append(scope)
        await ok_app(scope, receive, send)

    return app


# -- connection reuse ----------------------------------------------------------


async def test_keep_alive_serves_two_requests_on_one_connection() -> None:
    async with memory_server(echo_app) as srv, srv.client() as client:
        await client.send(request(target="/one"))
        first = await client.response()
        await client.send(request(target="/two"))
        second = await client.response()
    assert (first.status_code, first.body) == (200, b"/one|")
    assert (second.status_code, second.body) == (200, b"/two|")
    assert first.header(b"connection") is None


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with memory_server(echo_app) as srv, srv.client() as client:
        await client.send(
            request(target="/a") + request("POST", "/b", body=b"xyz") + request(target="/c")
        )
        responses = [await client.response(), await client.response(), await client.response()]
    assert [r.body for r in responses] == [b"/a|", b"/b|xyz", b"/c|"]


async def test_unread_request_body_is_skipped_before_the_next_request() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request("POST", "/", body=b"x" * 1000))
        first = await client.response()
        await client.send(request(target="/next"))
        second = await client.response()
    assert (first.status_code, second.status_code) == (200, 200)


# -- request bodies ------------------------------------------------------------


async def test_content_length_request_body_reaches_the_app() -> None:
    body = bytes(range(256)) * 1000
    async with memory_server(echo_app) as srv, srv.client() as client:
        await client.send(request("POST", "/upload", body=body))
        response = await client.response(b"POST")
    assert response.body == b"/upload|" + body


async def test_chunked_request_body_reaches_the_app_dechunked() -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        body, received = await read_body(receive)
        messages.extend(received)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    chunked = b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request("POST", headers=[("Transfer-Encoding", "chunked")]) + chunked)
        response = await client.response()
    assert response.body == b"hello world"
    assert all(m["type"] == "http.request" for m in messages)
    assert all(isinstance(m["body"], bytes) for m in messages)
    assert messages[-1]["more_body"] is False


async def test_get_without_body_gets_one_empty_final_request_message() -> None:
    messages: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        messages.append(await receive())
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
    assert messages == [{"type": "http.request", "body": b"", "more_body": False}]


# -- responses -----------------------------------------------------------------


async def test_response_without_content_length_is_chunked() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header(b"transfer-encoding") == b"chunked"
    assert response.body == b"one,two"


async def test_head_response_carries_no_body() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request("HEAD"))
        head = await client.response(b"HEAD")
        # The next response parses cleanly only if no body bytes followed the HEAD answer.
        await client.send(request(target="/after"))
        after = await client.response()
    assert head.status_code == 200
    assert head.header(b"content-length") == b"2"
    assert head.body == b""
    assert after.body == b"ok"


@pytest.mark.parametrize("status", [204, 304])
async def test_bodyless_status_carries_no_body(status: int) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.send(request())
        again = await client.response()
    assert (response.status_code, response.body) == (status, b"")
    assert response.header(b"transfer-encoding") is None
    assert again.status_code == status


async def test_body_an_app_sends_with_304_is_dropped() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 304, "headers": []})
        await send({"type": "http.response.body", "body": b"should not be sent"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.send(request())
        again = await client.response()
    assert (response.status_code, response.body) == (304, b"")
    assert again.status_code == 304


# -- closing -------------------------------------------------------------------


async def test_connection_close_request_gets_connection_close_and_server_closes() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request(headers=[("Connection", "close")]))
        response = await client.response()
        await client.assert_closed()
    assert response.status_code == 200
    assert response.header(b"connection") == b"close"


async def test_http_1_0_request_is_answered_and_closed() -> None:
    versions: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        versions.append(scope["http_version"])
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request(http_version="1.0"))
        response = await client.response(http_version=b"1.0")
        await client.assert_closed()
    assert (response.status_code, response.body) == (200, b"ok")
    assert versions == ["1.0"]


# -- 100-continue --------------------------------------------------------------


@pytest.mark.mock_clock
async def test_100_continue_is_sent_only_when_the_app_reads_the_body() -> None:
    entered = anyio.Event()
    proceed = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        entered.set()
        await proceed.wait()
        body, _ = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(
            request("POST", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        )
        client.expect(b"POST")
        with anyio.fail_after(WAIT):
            await entered.wait()
        with anyio.move_on_after(0.2):
            early = await client.receive_some()
            pytest.fail(f"the server said something before the app read the body: {early!r}")
        proceed.set()
        interim = await client.next_event()
        assert isinstance(interim, h11.InformationalResponse)
        assert interim.status_code == 100
        await client.send(b"hello")
        response = await client.read_response()
    assert response.body == b"hello"


async def test_no_100_continue_when_the_app_answers_without_reading() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(
            request("POST", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        )
        response = await client.response(b"POST")
    assert response.informational == []
    assert response.status_code == 200


async def test_final_response_without_100_continue_closes_the_connection() -> None:
    # The client never sent the body (it waited for a 100 that did not come);
    # keeping the connection would read its next request as that body
    # (RFC 9110 10.1.1; Go's net/http and nginx close here).
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(
            request("POST", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        )
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 200
    assert response.header(b"connection") == b"close"


async def test_100_continue_is_sent_when_the_app_reads_after_a_held_start() -> None:
    # The start is held until the first body message, so nothing final has
    # reached the client yet: it is still waiting for 100 before sending.
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        body, _ = await read_body(receive)
        await send({"type": "http.response.body", "body": body})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(
            request("POST", headers=[("Expect", "100-continue"), ("Content-Length", "5")])
        )
        client.expect(b"POST")
        interim = await client.next_event()
        assert isinstance(interim, h11.InformationalResponse)
        await client.send(b"hello")
        response = await client.read_response()
    assert response.body == b"hello"


# -- default headers -----------------------------------------------------------


async def test_date_and_server_headers_are_added_by_default() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header_values(b"server") == [b"tricorn"]
    [date] = response.header_values(b"date")
    assert date.endswith(b" GMT")


async def test_server_header_can_be_turned_off() -> None:
    async with memory_server(ok_app, server_header=False) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header(b"server") is None
    assert response.header(b"date") is not None


async def test_date_header_can_be_turned_off() -> None:
    async with memory_server(ok_app, date_header=False) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header(b"date") is None
    assert response.header(b"server") is not None


async def test_server_name_sets_the_server_header() -> None:
    async with memory_server(ok_app, server_name="edge/1.0") as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header_values(b"server") == [b"edge/1.0"]


async def test_app_server_header_is_not_duplicated() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send(
            {"type": "http.response.start", "status": 200, "headers": [(b"server", b"mine")]}
        )
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header_values(b"server") == [b"mine"]


async def test_app_server_header_in_mixed_case_is_not_duplicated() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"Server", b"mine")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header_values(b"server") == [b"mine"]


async def test_app_date_header_is_not_duplicated() -> None:
    date = b"Thu, 01 Jan 1970 00:00:00 GMT"

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": [(b"date", date)]})
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.header_values(b"date") == [date]


# -- scope ---------------------------------------------------------------------


async def test_scope_follows_asgi_http_spec() -> None:
    scopes: list[dict[str, Any]] = []
    async with running_server(recording_app(scopes)) as address, raw_client(address) as client:
        await client.send(
            request(target="/caf%C3%A9/a%20b?x=1&y=%20", headers=[("X-Custom-Header", "Value")])
        )
        await client.response()
        client_address = client.stream.extra(anyio.abc.SocketAttribute.local_address)
    (scope,) = scopes
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert (b"x-custom-header", b"Value") in [tuple(h) for h in scope["headers"]]
    assert all(
        isinstance(name, bytes) and isinstance(value, bytes) and name == name.lower()
        for name, value in scope["headers"]
    )
    host, port = address.rsplit(":", 1)
    assert scope["server"] == (host, int(port))
    assert scope["client"] == (client_address[0], client_address[1])
    assert isinstance(scope["client"][0], str)
    assert isinstance(scope["client"][1], int)
    assert isinstance(scope["state"], dict)
    assert isinstance(scope["extensions"], dict)


async def test_scope_without_query_has_empty_query_string() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        await client.send(request(target="/plain"))
        await client.response()
    assert scopes[0]["query_string"] == b""
    assert scopes[0]["path"] == "/plain"


async def test_method_is_passed_as_sent() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        await client.send(request("PATCH"))
        await client.response(b"PATCH")
    assert scopes[0]["method"] == "PATCH"


async def test_root_path_prefixes_path() -> None:
    scopes: list[dict[str, Any]] = []
    app = recording_app(scopes)
    async with memory_server(app, root_path="/api") as srv, srv.client() as client:
        await client.send(request(target="/users/1?q=2"))
        await client.response()
    (scope,) = scopes
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/users/1"
    assert scope["query_string"] == b"q=2"


async def test_requests_on_one_connection_share_the_client_address() -> None:
    scopes: list[dict[str, Any]] = []
    async with running_server(recording_app(scopes)) as address, raw_client(address) as client:
        for _ in range(2):
            await client.send(request())
            await client.response()
    assert scopes[0]["client"] == scopes[1]["client"]


# -- binds ---------------------------------------------------------------------


async def test_tcp_bind_reports_the_real_port() -> None:
    async with server(ok_app, bind=("127.0.0.1:0", "127.0.0.1:0")) as handle:
        addresses = handle.addresses
    assert len(addresses) == 2
    for address in addresses:
        host, port = address.rsplit(":", 1)
        assert host == "127.0.0.1"
        assert int(port) > 0
    assert addresses[0] != addresses[1]


async def test_unix_socket_bind_serves_with_path_server_and_no_client(tmp_path: Path) -> None:
    path = str(tmp_path / "s.sock")
    scopes: list[dict[str, Any]] = []
    async with server(recording_app(scopes), bind=(f"unix:{path}",)) as handle:
        assert handle.addresses == [f"unix:{path}"]
        transport = httpx.AsyncHTTPTransport(uds=path)
        async with httpx.AsyncClient(transport=transport) as client:
            response = await client.get("http://localhost/")
    assert response.text == "ok"
    assert scopes[0]["server"] == (path, None)
    assert scopes[0]["client"] is None


async def test_unix_socket_file_is_removed_after_serving(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with server(ok_app, bind=(f"unix:{path}",)) as handle:
        assert path.exists()
    await handle.wait_stopped()
    assert not path.exists()


async def test_unix_socket_bind_replaces_a_stale_socket_file(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # closed without unlinking, as after a crash
    async with (
        server(ok_app, bind=(f"unix:{path}",)) as handle,
        raw_client(handle.address) as client,
    ):
        await client.send(request())
        response = await client.response()
    assert response.body == b"ok"


async def test_tcp_and_unix_binds_serve_together(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    async with server(ok_app, bind=("127.0.0.1:0", f"unix:{path}")) as handle:
        assert handle.addresses[1] == f"unix:{path}"
        bodies = []
        for address in handle.addresses:
            async with raw_client(address) as client:
                await client.send(request())
                bodies.append((await client.response()).body)
    assert bodies == [b"ok", b"ok"]


def _ipv6_available() -> bool:
    if not socket.has_ipv6:
        return False
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


@pytest.mark.skipif(not _ipv6_available(), reason="IPv6 loopback is not available")
async def test_ipv6_bind_serves_and_reports_bracketed_address() -> None:
    scopes: list[dict[str, Any]] = []
    async with server(recording_app(scopes), bind=("[::1]:0",)) as handle:
        (address,) = handle.addresses
        assert address.startswith("[::1]:")
        port = int(address.rsplit(":", 1)[1])
        assert port > 0
        async with httpx.AsyncClient() as client:
            response = await client.get(f"http://{address}/")
    assert response.text == "ok"
    assert scopes[0]["server"] == ("::1", port)
    assert scopes[0]["client"][0] == "::1"


async def test_fd_bind_serves_an_inherited_socket() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        # The server gets its own descriptor of the socket, as a worker would.
        fd = os.dup(sock.fileno())
        async with server(ok_app, bind=(f"fd://{fd}",)) as handle:
            assert handle.addresses == [f"127.0.0.1:{port}"]
            async with httpx.AsyncClient() as client:
                response = await client.get(f"http://127.0.0.1:{port}/")
    assert response.text == "ok"


# -- more connection handling --------------------------------------------------


async def test_many_pipelined_requests_are_all_answered_in_order() -> None:
    # Over twice the 64 KiB of pipelined requests the server holds while it
    # answers, so it must stop reading and resume more than once. The time
    # this takes is work per request (each one an exchange, and h11 on both
    # sides): padded requests get there with fewer of them.
    count = 600
    padding = [("X-Padding", "p" * 200)]
    async with memory_server(echo_app) as srv, srv.client() as client:
        payload = b"".join(request(target=f"/{i}", headers=padding) for i in range(count))
        assert len(payload) > 2 * 64 * 1024

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(client.send, payload)
            bodies = [(await client.response()).body for _ in range(count)]
    assert bodies == [f"/{i}|".encode() for i in range(count)]


async def test_pipelined_request_with_unread_body_is_skipped_cleanly() -> None:
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request("POST", "/a", body=b"b" * 5000) + request(target="/b"))
        first = await client.response()
        second = await client.response()
    assert (first.body, second.body) == (b"ok", b"ok")


async def test_unread_large_body_is_drained_for_keep_alive() -> None:
    size = 1024 * 1024
    async with memory_server(ok_app) as srv, srv.client() as client:
        await client.send(request("POST", headers=[("Content-Length", str(size))]))
        first = await client.response(b"POST")
        await client.send(b"d" * size + request(target="/next"))
        second = await client.response()
    assert (first.status_code, second.status_code) == (200, 200)


async def test_request_after_connection_close_request_is_not_served() -> None:
    paths: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        paths.append(scope["path"])
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(
            request(target="/a", headers=[("Connection", "close")]) + request(target="/b")
        )
        await client.response()
        await client.assert_closed()
    assert paths == ["/a"]


async def test_app_connection_close_header_closes_the_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        headers = [(b"connection", b"close"), (b"content-length", b"0")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
        await client.assert_closed()
    assert response.header_values(b"connection") == [b"close"]


async def test_streamed_response_to_http_1_0_ends_with_close() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request(http_version="1.0"))
        response = await client.response(http_version=b"1.0")
        await client.assert_closed()
    assert response.body == b"one,two"
    assert response.header(b"transfer-encoding") is None


async def test_streamed_head_response_carries_no_body() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"one,", "more_body": True})
        await send({"type": "http.response.body", "body": b"two"})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request("HEAD") + request("HEAD"))
        first = await client.response(b"HEAD")
        second = await client.response(b"HEAD")
    assert (first.body, second.body) == (b"", b"")


async def test_large_response_arrives_intact() -> None:
    body = bytes(range(256)) * 32 * 1024  # 8 MiB

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        for start in range(0, len(body), 1 << 20):
            chunk = body[start : start + (1 << 20)]
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        await send({"type": "http.response.body", "body": b""})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.body == body


async def test_bytearray_and_memoryview_bodies_are_sent() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": bytearray(b"ab"), "more_body": True})
        await send({"type": "http.response.body", "body": memoryview(b"cd")})

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(request())
        response = await client.response()
    assert response.body == b"abcd"


# -- more scope ----------------------------------------------------------------


async def test_absolute_form_target_routes_on_its_path() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        await client.send(request(target="http://example.com/abs/path?q=1"))
        await client.response()
    assert scopes[0]["path"] == "/abs/path"
    assert scopes[0]["query_string"] == b"q=1"


async def test_repeated_headers_keep_their_order_in_scope() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        await client.send(request(headers=[("X-Multi", "1"), ("Accept", "a"), ("X-Multi", "2")]))
        await client.response()
    multi = [value for name, value in scopes[0]["headers"] if name == b"x-multi"]
    assert multi == [b"1", b"2"]


async def test_invalid_utf8_in_path_is_replaced_not_fatal() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        await client.send(request(target="/bad%FFbyte"))
        response = await client.response()
    assert response.status_code == 200
    assert scopes[0]["raw_path"] == b"/bad%FFbyte"
    assert scopes[0]["path"] == "/bad\ufffdbyte"


async def test_each_request_gets_its_own_scope_and_state_copy() -> None:
    scopes: list[dict[str, Any]] = []
    async with memory_server(recording_app(scopes)) as srv, srv.client() as client:
        for _ in range(2):
            await client.send(request())
            await client.response()
    assert scopes[0] is not scopes[1]
    assert scopes[0]["state"] is not scopes[1]["state"]
