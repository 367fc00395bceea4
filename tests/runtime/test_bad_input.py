"""Bad or slow clients over raw sockets: 400, 413, 414, 431, 408 and timeouts."""

from __future__ import annotations

from typing import Any

import anyio
import h11
import pytest

from tests.conftest import running_server

from ._memory import assert_took, memory_server
from ._support import WAIT, ok_app, raw_client, read_body, request, watch_log

pytestmark = pytest.mark.anyio


def app_recording_calls(calls: list[str]) -> Any:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        calls.append(scope["path"])
        body, _ = await read_body(receive)
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    return app


# -- malformed and oversized heads ---------------------------------------------


async def test_malformed_request_line_gets_400_and_close() -> None:
    calls: list[str] = []
    async with running_server(app_recording_calls(calls), lifespan="off") as address:
        async with raw_client(address) as client:
            await client.send(b"GET /a b HTTP/1.1\r\n\r\n")
            response = await client.response()
            await client.assert_closed()
        async with raw_client(address) as client:
            await client.send(request(target="/next"))
            after = await client.response()
    assert response.status_code == 400
    assert response.header(b"connection") == b"close"
    assert after.status_code == 200
    assert calls == ["/next"]


async def test_invalid_header_line_gets_400() -> None:
    async with running_server(ok_app) as address, raw_client(address) as client:
        await client.send(b"GET / HTTP/1.1\r\nHost: test\r\nno colon here\r\n\r\n")
        response = await client.response()
        await client.assert_closed()
    assert response.status_code == 400


async def test_too_long_request_line_gets_414() -> None:
    async with (
        running_server(ok_app, h11_max_incomplete_size=1024) as address,
        raw_client(address) as client,
    ):
        await client.send(b"GET /" + b"a" * 2000)
        response = await client.response()
        await client.assert_closed()
    assert response.status_code == 414
    assert response.header(b"connection") == b"close"


async def test_too_long_header_block_gets_431() -> None:
    async with (
        running_server(ok_app, h11_max_incomplete_size=1024) as address,
        raw_client(address) as client,
    ):
        await client.send(b"GET / HTTP/1.1\r\nHost: test\r\n" + b"X-Big: " + b"b" * 2000)
        response = await client.response()
        await client.assert_closed()
    assert response.status_code == 431
    assert response.header(b"connection") == b"close"


async def test_error_responses_carry_the_default_headers() -> None:
    async with running_server(ok_app, server_name="edge") as address, raw_client(address) as client:
        await client.send(b"GET /a b HTTP/1.1\r\n\r\n")
        response = await client.response()
    assert response.header(b"server") == b"edge"
    assert response.header(b"date") is not None


# -- body size limit -----------------------------------------------------------


async def test_content_length_over_the_limit_gets_413_without_calling_the_app() -> None:
    calls: list[str] = []
    app = app_recording_calls(calls)
    async with (
        running_server(app, lifespan="off", max_request_body_size=100) as address,
        raw_client(address) as client,
    ):
        await client.send(request("POST", headers=[("Content-Length", "1000")]))
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 413
    assert response.header(b"connection") == b"close"
    assert calls == []


async def test_body_at_the_limit_is_accepted() -> None:
    calls: list[str] = []
    app = app_recording_calls(calls)
    async with (
        running_server(app, lifespan="off", max_request_body_size=100) as address,
        raw_client(address) as client,
    ):
        await client.send(request("POST", body=b"z" * 100))
        response = await client.response(b"POST")
    assert response.status_code == 200
    assert response.body == b"z" * 100


async def test_chunked_body_over_the_limit_gets_413() -> None:
    calls: list[str] = []
    app = app_recording_calls(calls)
    async with (
        running_server(app, lifespan="off", max_request_body_size=100) as address,
        raw_client(address) as client,
    ):
        await client.send(
            request("POST", headers=[("Transfer-Encoding", "chunked")])
            + b"c8\r\n"
            + b"q" * 200
            + b"\r\n0\r\n\r\n"
        )
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 413


async def test_chunked_body_over_the_limit_after_response_started_closes_connection() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"partial", "more_body": True})
        await read_body(receive)
        await send({"type": "http.response.body", "body": b"end"})

    async with (
        running_server(app, lifespan="off", max_request_body_size=100) as address,
        raw_client(address) as client,
    ):
        await client.send(request("POST", headers=[("Transfer-Encoding", "chunked")]))
        client.expect(b"POST")
        head = await client.next_event()
        assert isinstance(head, h11.Response)
        assert head.status_code == 200
        await client.send(b"c8\r\n" + b"q" * 200 + b"\r\n0\r\n\r\n")
        with pytest.raises(h11.RemoteProtocolError):
            await client.read_body()


# -- timeouts ------------------------------------------------------------------
#
# Over in-memory connections with trio's MockClock, where virtual time makes
# every elapsed time exact; other backends check what happens, not when.


@pytest.mark.mock_clock
async def test_partial_head_is_answered_408_and_closed_after_head_timeout(
    virtual_time: bool,
) -> None:
    async with memory_server(ok_app, request_head_timeout=0.3) as srv, srv.client() as client:
        start = anyio.current_time()
        await client.send(b"GET / HTTP/1.1\r\nHost: te")
        response = await client.response()
        await client.assert_closed()
        elapsed = anyio.current_time() - start
    assert response.status_code == 408
    assert_took(elapsed, 0.3, virtual_time)


@pytest.mark.mock_clock
@pytest.mark.parametrize(
    "first_bytes",
    # Nothing at all; or the start of the HTTP/2 preface, whose bytes are
    # read within the head timeout of the first request, not before it.
    [b"", b"PRI"],
    ids=["nothing", "start_of_the_http2_preface"],
)
async def test_fresh_connection_that_sends_no_request_is_closed_after_one_head_timeout(
    first_bytes: bytes, virtual_time: bool
) -> None:
    async with memory_server(ok_app, request_head_timeout=0.3) as srv, srv.client() as client:
        start = anyio.current_time()
        if first_bytes:
            await client.send(first_bytes)
        assert await client.receive_some() == b""
        elapsed = anyio.current_time() - start
    assert_took(elapsed, 0.3, virtual_time)


@pytest.mark.mock_clock
async def test_idle_keep_alive_connection_is_closed_after_keep_alive_timeout(
    virtual_time: bool,
) -> None:
    async with memory_server(ok_app, keep_alive_timeout=0.3) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
        start = anyio.current_time()
        await client.assert_closed()
        elapsed = anyio.current_time() - start
    assert_took(elapsed, 0.3, virtual_time)


@pytest.mark.mock_clock
async def test_keep_alive_timeout_does_not_cut_a_slow_app() -> None:
    app_started = anyio.Event()
    proceed = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        app_started.set()
        await proceed.wait()
        await ok_app(scope, receive, send)

    options = {"keep_alive_timeout": 0.2, "request_head_timeout": 0.2}
    async with memory_server(app, **options) as srv, srv.client() as client:
        await client.send(request())
        await app_started.wait()
        await anyio.sleep(0.5)  # the app's own work, longer than both timeouts
        proceed.set()
        response = await client.response()
    assert response.body == b"ok"


@pytest.mark.mock_clock
async def test_head_timeout_restarts_for_a_request_after_keep_alive(virtual_time: bool) -> None:
    options = {"request_head_timeout": 0.3, "keep_alive_timeout": 1.5}
    async with memory_server(ok_app, **options) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
        await anyio.sleep(1)  # idle, within the keep-alive timeout
        start = anyio.current_time()
        await client.send(b"GET / HTTP/1.1\r\n")
        response = await client.response()
        elapsed = anyio.current_time() - start
    assert response.status_code == 408
    assert_took(elapsed, 0.3, virtual_time)


# -- more malformed input ------------------------------------------------------


async def test_conflicting_content_lengths_get_400() -> None:
    calls: list[str] = []
    app = app_recording_calls(calls)
    async with (
        running_server(app, lifespan="off") as address,
        raw_client(address) as client,
    ):
        await client.send(
            request("POST", headers=[("Content-Length", "3"), ("Content-Length", "4")]) + b"abcd"
        )
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 400
    assert calls == []


async def test_invalid_chunk_size_gets_400_and_the_app_sees_disconnect() -> None:
    seen: list[dict[str, Any]] = []
    done = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        try:
            while True:
                message = await receive()
                seen.append(message)
                if message["type"] == "http.disconnect" or not message["more_body"]:
                    break
        finally:
            done.set()

    async with (
        running_server(app, lifespan="off") as address,
        raw_client(address) as client,
    ):
        await client.send(request("POST", headers=[("Transfer-Encoding", "chunked")]) + b"zz\r\n")
        response = await client.response(b"POST")
        await client.assert_closed()
        with anyio.fail_after(WAIT):
            await done.wait()
    assert response.status_code == 400
    assert seen[-1] == {"type": "http.disconnect"}


async def test_oversized_body_with_expect_continue_gets_413_without_100() -> None:
    async with (
        running_server(ok_app, max_request_body_size=10) as address,
        raw_client(address) as client,
    ):
        await client.send(
            request("POST", headers=[("Expect", "100-continue"), ("Content-Length", "11")])
        )
        response = await client.response(b"POST")
    assert response.informational == []
    assert response.status_code == 413


@pytest.mark.mock_clock
async def test_trickled_head_is_cut_off_at_the_head_timeout(virtual_time: bool) -> None:
    head = request(headers=[("X-Padding", "p" * 40)])
    async with memory_server(ok_app, request_head_timeout=0.4) as srv, srv.client() as client:
        start = anyio.current_time()

        async def trickle() -> None:
            # One byte every 50 ms would take ~3 s; the deadline must not move.
            for index in range(len(head) - 1):
                try:
                    await client.send(head[index : index + 1])
                except (anyio.BrokenResourceError, OSError):
                    return
                await anyio.sleep(0.05)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(trickle)
            response = await client.response()
            elapsed = anyio.current_time() - start
            task_group.cancel_scope.cancel()
    assert response.status_code == 408
    assert_took(elapsed, 0.4, virtual_time)


async def test_server_keeps_serving_after_oversized_heads() -> None:
    async with running_server(ok_app, h11_max_incomplete_size=1024) as address:
        async with raw_client(address) as client:
            await client.send(b"GET /" + b"a" * 2000)
            assert (await client.response()).status_code == 414
        async with raw_client(address) as client:
            await client.send(request())
            assert (await client.response()).body == b"ok"


async def test_http_1_1_request_without_host_gets_400() -> None:
    async with running_server(ok_app) as address, raw_client(address) as client:
        await client.send(b"GET / HTTP/1.1\r\n\r\n")
        response = await client.response()
        await client.assert_closed()
    assert response.status_code == 400


@pytest.mark.mock_clock
async def test_head_timeout_is_fresh_for_a_request_after_a_drained_body() -> None:
    size = 1024 * 1024
    options = {"request_head_timeout": 0.4, "keep_alive_timeout": 1.5}
    async with memory_server(ok_app, **options) as srv, srv.client() as client:
        # The app answers without reading; the server then drains the body.
        await client.send(request("POST", headers=[("Content-Length", str(size))]))
        await client.response(b"POST")
        await client.send(b"d" * size)
        await anyio.sleep(0.6)  # idle for longer than the head timeout, within keep-alive
        await client.send(b"GET /next HTTP/1.1\r\n")
        await anyio.sleep(0.05)  # let the partial head arrive on its own
        await client.send(b"Host: test\r\n\r\n")
        response = await client.response()
    assert response.status_code == 200


@pytest.mark.mock_clock
async def test_head_timeout_does_not_fire_while_a_slow_app_takes_the_body() -> None:
    # The head and many body chunks arrive in one read; the app reads them
    # slowly, well past request_head_timeout. The request must not get 408.
    async def slow_reader(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        total = 0
        while True:
            await anyio.sleep(0.1)
            message = await receive()
            total += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        body = str(total).encode()
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": body})

    chunks = b"".join(b"1\r\nx\r\n" for _ in range(8)) + b"0\r\n\r\n"
    head = b"POST / HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
    async with (
        memory_server(slow_reader, request_head_timeout=0.3) as srv,
        srv.client() as client,
    ):
        await client.send(head + chunks)
        response = await client.response(method=b"POST")
    assert response.status_code == 200
    assert response.body == b"8"


async def test_a_peer_not_speaking_http1_is_closed_and_the_server_carries_on() -> None:
    async with running_server(ok_app) as address:
        async with raw_client(address) as client:
            await client.send(b"INVALID CONNECTION PREFACE\r\n\r\n")
            assert await client.receive_some() == b""  # a clean close, no answer
        async with raw_client(address) as client:
            await client.send(request())
            assert (await client.response()).status_code == 200


# -- request smuggling ---------------------------------------------------------


async def test_content_length_with_transfer_encoding_gets_400_and_close() -> None:
    # RFC 9112 6.1: a request with both must not leave the connection open,
    # or what follows its chunked body ("X") is read as the next request.
    calls: list[str] = []
    smuggled = (
        request(
            "POST",
            headers=[("Content-Length", "6"), ("Transfer-Encoding", "chunked")],
        )
        + b"0\r\n\r\nX"
    )
    async with (
        running_server(app_recording_calls(calls), lifespan="off") as address,
        raw_client(address) as client,
    ):
        await client.send(smuggled + request(target="/follow"))
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 400
    assert response.header(b"connection") == b"close"
    assert calls == []


@pytest.mark.mock_clock
async def test_a_rejected_pipelined_request_closes_at_once_and_nothing_follows(
    virtual_time: bool,
) -> None:
    calls: list[str] = []
    bad = b"GET /second HTTP/1.1\r\nHost: test\r\nContent-Length: -1\r\n\r\n"
    async with (
        memory_server(app_recording_calls(calls), request_head_timeout=5) as srv,
        srv.client() as client,
    ):
        await client.send(request(target="/first") + bad)
        first = await client.response()
        start = anyio.current_time()
        rejected = await client.response()
        rest = b""
        while data := await client.receive_some():
            rest += data
        elapsed = anyio.current_time() - start
    assert first.status_code == 200
    assert rejected.status_code == 400
    assert rejected.header(b"connection") == b"close"
    assert rest == b""  # no unsolicited 408, or anything else
    assert calls == ["/first"]
    assert_took(elapsed, 0, virtual_time)  # closed at once, not after a timeout


@pytest.mark.mock_clock
async def test_a_chunk_size_of_twenty_hex_digits_gets_400_at_once(virtual_time: bool) -> None:
    # A size no 64-bit parser in front agrees on: refused when read, the app
    # told its client is gone, and nothing waits for the chunk.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(await receive())
        seen.append(await receive())

    async with (
        memory_server(app, request_head_timeout=5) as srv,
        srv.client() as client,
    ):
        start = anyio.current_time()
        await client.send(
            request("POST", headers=[("Transfer-Encoding", "chunked")])
            + b"F" * 20
            + b"\r\nthe start of it"
        )
        response = await client.response(b"POST")
        await client.assert_closed()
        elapsed = anyio.current_time() - start
    assert response.status_code == 400
    assert response.body == b"400 Bad Request: chunk size too large\n"
    assert seen[-1] == {"type": "http.disconnect"}
    assert b"the start of it" not in b"".join(m.get("body", b"") for m in seen)
    assert_took(elapsed, 0, virtual_time)


@pytest.mark.mock_clock
async def test_a_chunk_announced_past_the_body_limit_gets_413_before_its_bytes() -> None:
    async with (
        memory_server(ok_app, max_request_body_size=1000, request_head_timeout=5) as srv,
        srv.client() as client,
    ):
        await client.send(request("POST", headers=[("Transfer-Encoding", "chunked")]) + b"3e9\r\n")
        response = await client.response(b"POST")
        await client.assert_closed()
    assert response.status_code == 413


async def test_connect_gets_501_without_the_app_or_an_error_in_the_log() -> None:
    # Any client could otherwise flood the log with tracebacks blaming the app.
    calls: list[str] = []
    with watch_log() as log:
        async with memory_server(app_recording_calls(calls)) as srv:
            async with srv.client() as client:
                await client.send(
                    b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
                )
                response = await client.response(b"CONNECT")
                await client.assert_closed()
            async with srv.client() as client:
                await client.send(request(target="/next"))
                assert (await client.response()).status_code == 200
    assert response.status_code == 501
    assert calls == ["/next"]
    assert [r.getMessage() for r in log.records if r.levelname in ("ERROR", "WARNING")] == []


async def test_absolute_form_target_gives_the_app_its_host() -> None:
    # RFC 9112 3.2.2: the target's authority, not the Host header.
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv, srv.client() as client:
        await client.send(
            b"GET http://origin.example:8080/p?q=1 HTTP/1.1\r\nHost: spoofed.example\r\n\r\n"
        )
        assert (await client.response()).status_code == 200
    (scope,) = seen
    assert [value for name, value in scope["headers"] if name == b"host"] == [
        b"origin.example:8080"
    ]
    assert (scope["path"], scope["query_string"]) == ("/p", b"q=1")


async def test_own_413_reaches_a_client_that_sends_its_whole_body_before_reading() -> None:
    # Closing with the body unread would make the kernel answer with RST and
    # destroy the 413 in flight (this fails on asyncio without the drain); the
    # rest of the body, up to 8 MiB and 0.5 s, is read and dropped first.
    size = 4 * 1024 * 1024
    async with (
        running_server(ok_app, max_request_body_size=1000) as address,
        raw_client(address) as client,
    ):
        await client.send(request("POST", body=b"x" * size))
        response = await client.response(b"POST")
    assert response.status_code == 413
    assert response.header(b"connection") == b"close"


async def test_a_400_says_a_fixed_reason_and_the_parsers_words_go_to_the_debug_log() -> None:
    with watch_log() as log:
        async with memory_server(ok_app) as srv, srv.client() as client:
            await client.send(b"GET / HTTP/1.1\r\nHost: a\r\nsecret-without-colon\r\n\r\n")
            response = await client.response()
            await client.assert_closed()
        await log.wait_for("rejected a request with 400")
    assert response.body == b"400 Bad Request: malformed header field\n"
    assert b"secret" not in response.body
    (line,) = [m for m in log.messages() if m.startswith("rejected a request")]
    assert "malformed header field" in line
    assert "secret-without-colon" in line
