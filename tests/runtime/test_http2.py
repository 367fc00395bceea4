"""HTTP/2 through the real runtime: streams as tasks, flow control, resets, shutdown.

Cleartext with prior knowledge. The client is h2's own client side over the
in-memory harness (``_memory``), where the tests that wait for a timeout run
in virtual time; httpx with http2 checks a real client over a real socket,
on a port that also serves HTTP/1.1.
"""

from __future__ import annotations

from typing import Any

import anyio
import h2.errors
import h2.events
import h2.settings
import httpx
import pytest
from wsproto.connection import Connection, ConnectionType
from wsproto.events import CloseConnection, TextMessage

from ._h2wire import H2Wire
from ._memory import assert_took, memory_server
from ._support import WAIT, accepted_websocket, ok_app, server

pytestmark = pytest.mark.anyio

_E = h2.errors.ErrorCodes


async def test_httpx_gets_http2_by_prior_knowledge_and_http1_still_works() -> None:
    seen: list[str] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            seen.append(scope["http_version"])
        await ok_app(scope, receive, send)

    async with server(app) as srv:
        async with httpx.AsyncClient(http1=False, http2=True) as client:
            responses = [await client.get(f"http://{srv.address}/{n}") for n in range(3)]
        async with httpx.AsyncClient() as client:
            plain = await client.get(f"http://{srv.address}/")
    assert [r.http_version for r in responses] == ["HTTP/2"] * 3
    assert all(r.text == "ok" for r in responses)
    assert plain.http_version == "HTTP/1.1"
    assert seen == ["2", "2", "2", "1.1"]


async def test_a_slow_stream_never_blocks_the_others() -> None:
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/slow":
            await release.wait()
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        slow = await wire.get("/slow")
        fast = [await wire.get(f"/fast{n}") for n in range(5)]
        for stream_id in fast:
            headers, body = await wire.response(stream_id)
            assert headers[b":status"] == b"200"
            assert body == b"ok"
        release.set()
        _, body = await wire.response(slow)
        assert body == b"ok"
        await wire.aclose()


async def test_rst_stream_gives_that_app_http_disconnect_only() -> None:
    outcome: dict[str, Any] = {}
    started = anyio.Event()
    finished = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/doomed":
            started.set()
            message = await receive()  # the (empty) body
            outcome["body"] = message["type"]
            outcome["next"] = (await receive())["type"]
            finished.set()
            return
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        doomed = await wire.get("/doomed", end=False)
        with anyio.fail_after(WAIT):
            await started.wait()
        wire.conn.reset_stream(doomed, _E.CANCEL)
        await wire.flush()
        other = await wire.get("/other")
        _, body = await wire.response(other)
        assert body == b"ok"
        with anyio.fail_after(WAIT):
            await finished.wait()
        await wire.aclose()
    assert outcome["next"] == "http.disconnect"


async def test_streams_read_together_each_get_one_empty_body_then_only_their_disconnect() -> None:
    """Several requests without a body in one read: each app gets its empty
    body once, and its next receive() waits for the stream's end (here a reset)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    started = {"/a": anyio.Event(), "/b": anyio.Event()}
    finished = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        path = scope["path"]
        messages = seen.setdefault(path, [await receive()])
        started[path].set()
        messages.append(await receive())
        if len(seen) == 2 and all(len(m) == 2 for m in seen.values()):
            finished.set()

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        # Both HEADERS frames in one write, so the server reads them together.
        streams = [await wire.get(path, flush=False) for path in ("/a", "/b")]
        await wire.flush()
        with anyio.fail_after(WAIT):
            for event in started.values():
                await event.wait()
        for stream_id in streams:
            wire.conn.reset_stream(stream_id, _E.CANCEL)
        await wire.flush()
        with anyio.fail_after(WAIT):
            await finished.wait()
        await wire.aclose()
    empty = {"type": "http.request", "body": b"", "more_body": False}
    assert seen == {path: [empty, {"type": "http.disconnect"}] for path in ("/a", "/b")}


@pytest.mark.mock_clock
async def test_send_waits_for_the_clients_window() -> None:
    progress: list[int] = []
    done = anyio.Event()
    chunk = b"x" * 16384

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        for n in range(64):  # 1 MiB
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
            progress.append(n)
        await send({"type": "http.response.body"})
        done.set()

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/big")
        # Read without acknowledging: the server may send one window (64 KiB).
        with anyio.move_on_after(0.5):
            while True:
                await wire.read()
        received = sum(
            len(event.data) for event in wire.events if isinstance(event, h2.events.DataReceived)
        )
        assert received <= 65535
        assert len(progress) <= 5  # the app is held back, not buffering 1 MiB
        _, body = await wire.response(stream_id, within=WAIT)
        assert len(body) == 64 * len(chunk)  # everything, the first window included
        with anyio.fail_after(WAIT):
            await done.wait()
        await wire.aclose()


@pytest.mark.mock_clock
async def test_request_body_window_opens_only_as_the_app_reads() -> None:
    read_now = anyio.Event()
    got = anyio.Event()
    size = 40_000

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await read_now.wait()
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        got.set()
        await ok_app(scope, receive, send)
        assert len(body) == size

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/upload", end=False)
        wire.conn.send_data(stream_id, b"a" * 16000)
        wire.conn.send_data(stream_id, b"a" * 16000)
        wire.conn.send_data(stream_id, b"a" * 8000, end_stream=True)
        await wire.flush()
        with anyio.move_on_after(0.3):
            while True:
                await wire.read()
        assert not any(
            isinstance(event, h2.events.WindowUpdated) and event.stream_id == stream_id
            for event in wire.events
        )
        read_now.set()
        with anyio.fail_after(WAIT):
            await got.wait()
        updated = await wire.until(
            lambda event: (
                isinstance(event, h2.events.WindowUpdated) and event.stream_id in (0, stream_id)
            )
        )
        assert updated is not None
        _, body = await wire.response(stream_id)
        assert body == b"ok"
        await wire.aclose()


async def test_app_that_fails_mid_response_resets_only_its_stream() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/broken":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"half", "more_body": True})
            raise RuntimeError("boom")
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        broken = await wire.get("/broken")
        reset = await wire.until(
            lambda event: isinstance(event, h2.events.StreamReset) and event.stream_id == broken
        )
        assert isinstance(reset, h2.events.StreamReset)
        assert reset.error_code == _E.INTERNAL_ERROR
        _, body = await wire.response(await wire.get("/fine"))
        assert body == b"ok"
        await wire.aclose()


async def test_app_that_fails_before_responding_gets_a_500() -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)  # HTTP/2: h2 reads nothing else
        headers, _ = await wire.response(await wire.get("/"))
        await wire.aclose()
    assert headers[b":status"] == b"500"


@pytest.mark.mock_clock
async def test_shutdown_sends_goaway_and_lets_the_stream_in_flight_finish() -> None:
    release = anyio.Event()
    started = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        started.set()
        await release.wait()
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/slow")
        with anyio.fail_after(WAIT):
            await started.wait()
        srv.shutdown()
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        assert isinstance(goaway, h2.events.ConnectionTerminated)
        assert goaway.error_code == _E.NO_ERROR
        assert goaway.last_stream_id == stream_id
        # h2's client would take the GOAWAY as the end of everything.
        wire.conn.state_machine.state = h2.connection.ConnectionState.CLIENT_OPEN
        release.set()
        _, body = await wire.response(stream_id)
        assert body == b"ok"
        await srv.wait_closed()
        await wire.aclose()


@pytest.mark.mock_clock
async def test_idle_connection_is_closed_with_goaway_after_keep_alive_timeout(
    virtual_time: bool,
) -> None:
    async with memory_server(ok_app, keep_alive_timeout=0.2) as srv:
        wire = await H2Wire.connect(srv)
        _, body = await wire.response(await wire.get("/"))
        assert body == b"ok"
        idle_since = anyio.current_time()
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        assert isinstance(goaway, h2.events.ConnectionTerminated)
        assert goaway.error_code == _E.NO_ERROR
        assert_took(anyio.current_time() - idle_since, 0.2, virtual_time)
        assert await wire.until(lambda event: False) is None  # then the server closes
        await wire.aclose()


async def test_trailers_early_hints_and_push_are_offered_and_delivered() -> None:
    extensions: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/style.css":
            await send({"type": "http.response.start", "status": 200})
            await send({"type": "http.response.body", "body": b"body{}"})
            return
        extensions.update(scope["extensions"])
        await send({"type": "http.response.early_hint", "links": [b"</style.css>; rel=preload"]})
        await send({"type": "http.response.start", "status": 200, "trailers": True})
        await send({"type": "http.response.push", "path": "/style.css", "headers": []})
        await send({"type": "http.response.body", "body": b"page"})
        await send({"type": "http.response.trailers", "headers": [(b"x-sum", b"1")]})

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.get("/", (b"te", b"trailers"))
        _, body = await wire.response(stream_id)
        assert body == b"page"
        hints = [e for e in wire.events if isinstance(e, h2.events.InformationalResponseReceived)]
        assert dict(hints[0].headers)[b":status"] == b"103"
        (trailers,) = [e for e in wire.events if isinstance(e, h2.events.TrailersReceived)]
        assert dict(trailers.headers) == {b"x-sum": b"1"}
        (pushed,) = [e for e in wire.events if isinstance(e, h2.events.PushedStreamReceived)]
        _, pushed_body = await wire.response(pushed.pushed_stream_id)
        assert pushed_body == b"body{}"
        await wire.aclose()
    assert set(extensions) >= {
        "http.response.trailers",
        "http.response.early_hint",
        "http.response.push",
    }


async def test_push_is_not_offered_when_the_client_disables_it() -> None:
    extensions: dict[str, Any] = {}

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            extensions.update(scope["extensions"])
        await ok_app(scope, receive, send)

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv, {h2.settings.SettingCodes.ENABLE_PUSH: 0})
        await wire.until(lambda event: isinstance(event, h2.events.SettingsAcknowledged))
        _, body = await wire.response(await wire.get("/"))
        assert body == b"ok"
        await wire.aclose()
    assert "http.response.push" not in extensions


async def test_websocket_over_http2_echoes_and_closes() -> None:
    seen: dict[str, Any] = {}
    ended = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen["scope"] = (scope["type"], scope["http_version"], scope["scheme"], scope["path"])
        assert (await receive())["type"] == "websocket.connect"
        await send({"type": "websocket.accept"})
        while True:
            message = await receive()
            if message["type"] == "websocket.disconnect":
                seen["code"] = message["code"]
                ended.set()
                return
            await send({"type": "websocket.send", "text": "echo " + message["text"]})

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.open_websocket("/chat")
        response = await wire.until(lambda event: isinstance(event, h2.events.ResponseReceived))
        assert isinstance(response, h2.events.ResponseReceived)
        assert dict(response.headers)[b":status"] == b"200"
        ws = Connection(ConnectionType.CLIENT)
        replies: list[str] = []
        for text in ("one", "two"):
            wire.conn.send_data(stream_id, ws.send(TextMessage(text)))
            await wire.flush()
            with anyio.fail_after(WAIT):
                while len(replies) < (1 if text == "one" else 2):
                    for event in await wire.read():
                        if isinstance(event, h2.events.DataReceived):
                            wire.conn.acknowledge_received_data(
                                event.flow_controlled_length, stream_id
                            )
                            ws.receive_data(event.data)
                            replies.extend(
                                e.data for e in ws.events() if isinstance(e, TextMessage)
                            )
                    await wire.flush()
        assert replies == ["echo one", "echo two"]
        wire.conn.send_data(stream_id, ws.send(CloseConnection(1000)), end_stream=True)
        await wire.flush()
        with anyio.fail_after(WAIT):
            await ended.wait()
        await wire.aclose()
    assert seen["scope"] == ("websocket", "2", "ws", "/chat")
    assert seen["code"] == 1000


async def test_sender_waiting_for_the_window_is_released_when_the_client_leaves() -> None:
    outcome: list[str] = []
    blocked = anyio.Event()
    ended = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        await send({"type": "http.response.start", "status": 200})
        try:
            blocked.set()
            for _ in range(64):
                await send({"type": "http.response.body", "body": b"x" * 16384, "more_body": True})
        except OSError:
            outcome.append("send raised")
        finally:
            ended.set()

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        await wire.get("/big")
        with anyio.fail_after(WAIT):
            await blocked.wait()
            received = 0
            while received < 65535:  # the whole window: the server now waits
                events = await wire.read()
                received += sum(
                    len(event.data) for event in events if isinstance(event, h2.events.DataReceived)
                )
        await wire.aclose()  # leaves with the response held for its window
        with anyio.fail_after(WAIT):
            await ended.wait()
        srv.shutdown()
        await srv.wait_closed()  # promptly: nothing is left hanging
    assert outcome == ["send raised"]


@pytest.mark.mock_clock
async def test_pings_do_not_keep_an_idle_connection_open(virtual_time: bool) -> None:
    # Idleness counts streams doing work, not bytes: a PING every 0.2 s
    # does not stop the keep-alive timeout (0.5 s) from ending the connection.
    async with memory_server(ok_app, keep_alive_timeout=0.5) as srv, srv.connect() as stream:
        wire = H2Wire(stream, None)
        await wire.flush()
        start = anyio.current_time()

        async def ping() -> None:
            for n in range(20):
                await anyio.sleep(0.2)
                wire.conn.ping(b"%08d" % n)
                try:
                    await wire.flush()
                except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                    return

        async with anyio.create_task_group() as tasks:
            tasks.start_soon(ping)
            goaway = await wire.until(
                lambda event: isinstance(event, h2.events.ConnectionTerminated), within=WAIT
            )
            elapsed = anyio.current_time() - start
            tasks.cancel_scope.cancel()
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert goaway.error_code == 0
    assert_took(elapsed, 0.5, virtual_time)


async def test_a_websocket_message_larger_than_the_stream_window_arrives() -> None:
    # The client can send only a window's worth before the server opens it
    # again; a message bigger than the window must not wait for itself.
    size = 200 * 1024
    echoed = anyio.Event()
    seen: list[int] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if not await accepted_websocket(scope, receive, send):
            return
        message = await receive()
        seen.append(len(message.get("bytes") or b""))
        echoed.set()
        await receive()

    async with memory_server(app) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.open_websocket()
        await wire.until(lambda event: isinstance(event, h2.events.ResponseReceived))
        ws = Connection(ConnectionType.CLIENT)
        from wsproto.events import BytesMessage

        pending = ws.send(BytesMessage(b"z" * size))
        with anyio.fail_after(WAIT):
            while pending:
                window = min(
                    wire.conn.local_flow_control_window(stream_id),
                    wire.conn.max_outbound_frame_size,
                )
                if window > 0:
                    wire.conn.send_data(stream_id, pending[:window])
                    pending = pending[window:]
                    await wire.flush()
                else:
                    await wire.read()  # for the server's WINDOW_UPDATE
            await echoed.wait()
        await wire.aclose()
    assert seen == [size]
