"""WebSocket end to end: the ``websockets`` library as the client, over real sockets.

``websockets`` is asyncio-only, so its sync client runs the whole client side
of each conversation in a worker thread while the server runs on the test's
backend (asyncio, uvloop or trio). Apps are real ASGI callables that record
what they saw; each test checks both ends.
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio
import pytest
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.conftest import running_server
from tests.runtime._support import server, watch_log, websocket_until_disconnect

pytestmark = pytest.mark.anyio

T = TypeVar("T")

#: The bound on every wait, client threads included.
TIMEOUT = 10.0
MiB = 1024 * 1024


def _connect(address: str, path: str = "/", **options: Any) -> ClientConnection:
    options.setdefault("open_timeout", 5)
    options.setdefault("close_timeout", 5)
    options.setdefault("ping_interval", None)
    options.setdefault("proxy", None)
    ws: ClientConnection = connect(f"ws://{address}{path}", **options)
    return ws


async def _client(conversation: Callable[[], T]) -> T:
    """Run a blocking client conversation in a worker thread; return what it saw."""
    with anyio.fail_after(TIMEOUT):
        return await anyio.to_thread.run_sync(conversation, abandon_on_cancel=True)


def _closed_by_server(ws: ClientConnection) -> tuple[int, str]:
    """Wait for the server's close frame; its code and reason."""
    with pytest.raises(ConnectionClosed) as caught:
        ws.recv(timeout=5)
    assert caught.value.rcvd is not None, "no close frame from the server"
    return caught.value.rcvd.code, caught.value.rcvd.reason


def _refusal(address: str, path: str = "/", **options: Any) -> Any:
    """The HTTP response that refused a handshake."""
    with pytest.raises(InvalidStatus) as caught:
        _connect(address, path, **options)
    return caught.value.response


@dataclass
class EchoApp:
    """Accepts (with ``subprotocol`` and ``headers``), echoes every message, records it all."""

    subprotocol: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    scopes: list[dict[str, Any]] = field(default_factory=list)
    received: list[dict[str, Any]] = field(default_factory=list)
    done: anyio.Event = field(default_factory=anyio.Event)

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        try:
            assert (await receive()) == {"type": "websocket.connect"}
            await send(
                {
                    "type": "websocket.accept",
                    "subprotocol": self.subprotocol,
                    "headers": self.headers,
                }
            )
            while True:
                message = await receive()
                self.received.append(message)
                if message["type"] == "websocket.disconnect":
                    return
                await send({**message, "type": "websocket.send"})
        finally:
            self.done.set()

    async def wait_done(self) -> None:
        with anyio.fail_after(TIMEOUT):
            await self.done.wait()

    @property
    def disconnect(self) -> dict[str, Any]:
        assert self.received, "the app saw no message"
        assert self.received[-1]["type"] == "websocket.disconnect", self.received
        return self.received[-1]


# -- the scope ---------------------------------------------------------------------


async def test_scope_describes_the_websocket_request() -> None:
    app = EchoApp(subprotocol="b")

    def conversation(address: str) -> tuple[Any, Any]:
        with _connect(
            address,
            "/caf%C3%A9/a%20b?x=1&y=%20",
            subprotocols=["a", "b"],
            additional_headers={"X-Test": "yes"},
        ) as ws:
            ws.send("ping")
            assert ws.recv(timeout=5) == "ping"
            return ws.local_address, ws.remote_address

    async with running_server(app, lifespan="off") as address:
        local, remote = await _client(lambda: conversation(address))
        await app.wait_done()
    [scope] = app.scopes
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.5"}
    assert scope["http_version"] == "1.1"
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert (b"x-test", b"yes") in scope["headers"]
    assert (b"host", address.encode()) in scope["headers"]
    assert scope["subprotocols"] == ["a", "b"]
    assert scope["client"] == (local[0], local[1])
    assert scope["server"] == (remote[0], remote[1])
    assert "websocket.http.response" in scope["extensions"]
    assert app.received[0] == {"type": "websocket.receive", "text": "ping"}


async def test_scope_path_carries_the_root_path() -> None:
    app = EchoApp()

    def conversation(address: str) -> None:
        with _connect(address, "/chat/room%201"):
            pass

    async with running_server(app, lifespan="off", root_path="/api") as address:
        await _client(lambda: conversation(address))
        await app.wait_done()
    [scope] = app.scopes
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/chat/room 1"
    assert scope["raw_path"] == b"/chat/room%201"


async def test_each_scope_gets_its_own_copy_of_the_lifespan_state() -> None:
    scopes: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    scope["state"]["greeting"] = "hello"
                await send({"type": message["type"] + ".complete"})
                if message["type"] == "lifespan.shutdown":
                    return
        scopes.append(scope)
        seen = dict(scope["state"])
        scope["state"]["leak"] = "from one connection"
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": repr(sorted(seen.items()))})
        await send({"type": "websocket.close"})

    def conversation(address: str) -> list[str | bytes]:
        seen = []
        for _ in range(2):
            with _connect(address) as ws:
                seen.append(ws.recv(timeout=5))
        return seen

    async with running_server(app, lifespan="on") as address:
        seen = await _client(lambda: conversation(address))
    assert seen == ["[('greeting', 'hello')]"] * 2
    assert scopes[0]["state"] is not scopes[1]["state"]


# -- messages ----------------------------------------------------------------------


async def test_text_binary_empty_and_unicode_messages_echo() -> None:
    app = EchoApp()
    messages: list[str | bytes] = ["hello", b"\x00\x01\xff", "", b"", "ünïcødé ✓ 🎉 中文"]

    def conversation(address: str) -> list[str | bytes]:
        echoed = []
        with _connect(address) as ws:
            for message in messages:
                ws.send(message)
                echoed.append(ws.recv(timeout=5))
        return echoed

    async with running_server(app, lifespan="off") as address:
        echoed = await _client(lambda: conversation(address))
        await app.wait_done()
    assert echoed == messages
    assert [type(message) for message in echoed] == [str, bytes, str, bytes, str]
    assert app.received[:-1] == [
        {"type": "websocket.receive", "text": m}
        if isinstance(m, str)
        else {"type": "websocket.receive", "bytes": m}
        for m in messages
    ]
    assert app.disconnect == {"type": "websocket.disconnect", "code": 1000, "reason": ""}


async def test_fragmented_message_reaches_the_app_whole() -> None:
    app = EchoApp()

    def conversation(address: str) -> list[str | bytes]:
        with _connect(address) as ws:
            ws.send(iter(["frag", "men", "ted ✓"]))
            ws.send(iter([b"\x01\x02", b"", b"\x03"]))
            return [ws.recv(timeout=5), ws.recv(timeout=5)]

    async with running_server(app, lifespan="off") as address:
        echoed = await _client(lambda: conversation(address))
        await app.wait_done()
    assert echoed == ["fragmented ✓", b"\x01\x02\x03"]
    assert app.received[:2] == [
        {"type": "websocket.receive", "text": "fragmented ✓"},
        {"type": "websocket.receive", "bytes": b"\x01\x02\x03"},
    ]


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_large_messages_travel_both_ways(compression: str | None) -> None:
    app = EchoApp()
    payload = random.Random(6455).randbytes(4 * MiB)
    text = "ß" * (2 * MiB)

    def conversation(address: str) -> list[str | bytes]:
        with _connect(address, max_size=None, compression=compression) as ws:
            ws.send(payload)
            first = ws.recv(timeout=8)
            ws.send(text)
            return [first, ws.recv(timeout=8)]

    async with running_server(app, lifespan="off") as address:
        echoed = await _client(lambda: conversation(address))
        await app.wait_done()
    assert echoed[0] == payload
    assert echoed[1] == text
    assert app.received[0]["bytes"] == payload


# -- subprotocols and accept headers -----------------------------------------------


async def test_the_app_picks_a_subprotocol_and_adds_headers() -> None:
    app = EchoApp(subprotocol="b", headers=[(b"x-extra", b"yes"), (b"set-cookie", b"k=v")])

    def conversation(address: str) -> tuple[str | None, str | None, str | None]:
        with _connect(address, subprotocols=["a", "b"]) as ws:
            headers = ws.response.headers if ws.response else {}
            return ws.subprotocol, headers.get("x-extra"), headers.get("set-cookie")

    async with running_server(app, lifespan="off") as address:
        seen = await _client(lambda: conversation(address))
        await app.wait_done()
    assert seen == ("b", "yes", "k=v")
    assert app.scopes[0]["subprotocols"] == ["a", "b"]


async def test_no_subprotocol_when_the_app_picks_none() -> None:
    app = EchoApp()

    def conversation(address: str) -> tuple[str | None, str | None]:
        with _connect(address, subprotocols=["a", "b"]) as ws:
            assert ws.response is not None
            return ws.subprotocol, ws.response.headers.get("sec-websocket-protocol")

    async with running_server(app, lifespan="off") as address:
        seen = await _client(lambda: conversation(address))
    assert seen == (None, None)


async def test_accepting_a_subprotocol_not_offered_is_answered_500_and_logged() -> None:
    app = EchoApp(subprotocol="c")
    with watch_log() as log:
        async with running_server(app, lifespan="off") as address:
            response = await _client(lambda: _refusal(address, subprotocols=["a", "b"]))
            await app.wait_done()
            await log.wait_for("not offered")
    assert response.status_code == 500
    [record] = [r for r in log.records if "not offered" in r.getMessage()]
    assert record.levelno == logging.ERROR
    assert "'c'" in record.getMessage()


# -- ping and pong -----------------------------------------------------------------


async def test_a_client_ping_is_answered() -> None:
    app = EchoApp()

    def conversation(address: str) -> bool:
        with _connect(address) as ws:
            return ws.ping(b"are you there").wait(5)

    async with running_server(app, lifespan="off") as address:
        assert await _client(lambda: conversation(address))


async def test_server_keepalive_pings_keep_a_live_client_connected() -> None:
    app = EchoApp()

    def conversation(address: str) -> str | bytes:
        with _connect(address) as ws:
            # The client answers the server's pings by itself meanwhile; a
            # missed answer would drop the connection after 0.5 s.
            with pytest.raises(TimeoutError):
                ws.recv(timeout=1.2)
            ws.send("still open")
            return ws.recv(timeout=5)

    async with running_server(
        app, lifespan="off", ws_ping_interval=0.2, ws_ping_timeout=0.3
    ) as address:
        assert await _client(lambda: conversation(address)) == "still open"
        await app.wait_done()
    assert app.disconnect["code"] == 1000


# -- closing -----------------------------------------------------------------------


@pytest.mark.parametrize(("code", "reason"), [(1000, "done"), (4000, "custom bye ✓")])
async def test_client_close_code_and_reason_reach_the_app(code: int, reason: str) -> None:
    app = EchoApp()

    def conversation(address: str) -> tuple[int | None, str | None]:
        with _connect(address) as ws:
            ws.close(code, reason)
        assert ws.protocol.close_rcvd is not None
        return ws.protocol.close_rcvd.code, ws.protocol.close_rcvd.reason

    async with running_server(app, lifespan="off") as address:
        answer = await _client(lambda: conversation(address))
        await app.wait_done()
    assert app.disconnect == {"type": "websocket.disconnect", "code": code, "reason": reason}
    assert answer[0] == code  # RFC 6455 5.5.1: the answer echoes the code


def scripted(*messages: dict[str, Any], error: Exception | None = None) -> Any:
    """An app that takes websocket.connect, sends ``messages``, then raises ``error`` or returns."""

    async def app(scope: Any, receive: Any, send: Any) -> None:
        assert (await receive())["type"] == "websocket.connect"
        for message in messages:
            await send(message)
        if error is not None:
            raise error

    return app


ACCEPT = {"type": "websocket.accept"}


@pytest.mark.parametrize(
    ("app", "code", "reason"),
    [
        pytest.param(
            scripted(ACCEPT, {"type": "websocket.close", "code": 4001, "reason": "nope ✗"}),
            4001,
            "nope ✗",
            id="app-closes-4001",
        ),
        pytest.param(scripted(ACCEPT, {"type": "websocket.close"}), 1000, "", id="app-closes"),
        pytest.param(scripted(ACCEPT), 1000, "", id="app-returns"),
    ],
)
async def test_the_app_ending_the_websocket_closes_it_with_its_code(
    app: Any, code: int, reason: str
) -> None:
    def conversation(address: str) -> tuple[int, str]:
        with _connect(address) as ws:
            return _closed_by_server(ws)

    async with running_server(app, lifespan="off") as address:
        assert await _client(lambda: conversation(address)) == (code, reason)


class Boom(Exception):
    pass


async def test_app_raising_after_accept_closes_with_1011_and_logs_the_traceback() -> None:
    app = scripted(ACCEPT, {"type": "websocket.send", "text": "hi"}, error=Boom("kaboom"))

    def conversation(address: str) -> tuple[str | bytes, tuple[int, str]]:
        with _connect(address) as ws:
            return ws.recv(timeout=5), _closed_by_server(ws)

    with watch_log() as log:
        async with running_server(app, lifespan="off") as address:
            seen = await _client(lambda: conversation(address))
            await log.wait_for("exception in ASGI WebSocket app")
    assert seen == ("hi", (1011, ""))
    [record] = [r for r in log.records if r.exc_info and isinstance(r.exc_info[1], Boom)]
    assert record.levelno == logging.ERROR
    assert "exception in ASGI WebSocket app" in record.getMessage()


@pytest.mark.parametrize(
    ("app", "status", "logged"),
    [
        pytest.param(scripted(error=Boom("early")), 500, "exception in ASGI", id="raises"),
        pytest.param(scripted({"type": "websocket.close"}), 403, None, id="closes"),
        pytest.param(scripted(), 500, "returned without accepting", id="returns"),
    ],
)
async def test_app_ending_before_accept_refuses_the_handshake(
    app: Any, status: int, logged: str | None
) -> None:
    with watch_log() as log:
        async with running_server(app, lifespan="off") as address:
            response = await _client(lambda: _refusal(address))
            if logged is not None:
                await log.wait_for(logged)
    assert response.status_code == status
    if logged is None:
        assert not [r for r in log.records if r.levelno >= logging.WARNING]


@pytest.mark.parametrize(
    ("messages", "code", "named"),
    [
        pytest.param(
            [ACCEPT, {"type": "websocket.close"}, {"type": "websocket.send", "text": "x"}],
            1000,
            ["'websocket.send'"],
            id="send-after-close",
        ),
        pytest.param([ACCEPT, ACCEPT], 1011, ["'websocket.accept'"], id="accept-twice"),
        pytest.param(
            [ACCEPT, {"type": "websocket.send", "text": "x", "bytes": b"x"}],
            1011,
            ["'bytes'", "'text'"],
            id="text-and-bytes",
        ),
        pytest.param(
            [ACCEPT, {"type": "websocket.close", "code": 1005}],
            1011,
            ["close code 1005", "'websocket.close'"],
            id="unsendable-close-code",
        ),
    ],
)
async def test_app_breaking_the_message_cycle_is_logged_naming_the_message(
    messages: list[dict[str, Any]], code: int, named: list[str]
) -> None:
    def conversation(address: str) -> tuple[int, str]:
        with _connect(address) as ws:
            return _closed_by_server(ws)

    with watch_log() as log:
        async with running_server(scripted(*messages), lifespan="off") as address:
            closed = await _client(lambda: conversation(address))
            await log.wait_for("broke the WebSocket message cycle")
    assert closed[0] == code
    [record] = [r for r in log.records if "broke the WebSocket message cycle" in r.getMessage()]
    assert record.levelno == logging.ERROR
    for name in named:
        assert name in record.getMessage()


# -- the denial response -----------------------------------------------------------


async def test_denial_response_reaches_the_client() -> None:
    app = scripted(
        {
            "type": "websocket.http.response.start",
            "status": 401,
            "headers": [(b"www-authenticate", b"Bearer"), (b"content-type", b"text/plain")],
        },
        {"type": "websocket.http.response.body", "body": b"denied: ", "more_body": True},
        {"type": "websocket.http.response.body", "body": b"no token"},
    )
    async with running_server(app, lifespan="off") as address:
        response = await _client(lambda: _refusal(address))
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.headers["content-type"] == "text/plain"
    assert response.body == b"denied: no token"


# -- compression and size limits ---------------------------------------------------


@pytest.mark.parametrize("enabled", [True, False])
async def test_permessage_deflate_follows_the_config(enabled: bool) -> None:
    app = EchoApp()
    message = "compressible " * 20_000

    def conversation(address: str) -> tuple[str | None, int, str | bytes]:
        with _connect(address, max_size=None) as ws:
            assert ws.response is not None
            header = ws.response.headers.get("sec-websocket-extensions")
            ws.send(message)
            return header, len(ws.protocol.extensions), ws.recv(timeout=5)

    async with running_server(app, lifespan="off", ws_per_message_deflate=enabled) as address:
        header, extensions, echoed = await _client(lambda: conversation(address))
    assert echoed == message
    if enabled:
        assert header is not None
        assert header.split(";")[0] == "permessage-deflate"
        assert extensions == 1
    else:
        assert header is None
        assert extensions == 0


@pytest.mark.parametrize("compression", ["deflate", None])
async def test_message_over_the_size_limit_closes_with_1009(compression: str | None) -> None:
    app = EchoApp()

    def conversation(address: str) -> tuple[str | bytes, tuple[int, str]]:
        with _connect(address, compression=compression) as ws:
            ws.send(b"k" * 1024)  # exactly the limit: fine
            echoed = ws.recv(timeout=5)
            ws.send(b"x" * 2000)
            return echoed, _closed_by_server(ws)

    async with running_server(app, lifespan="off", ws_max_message_size=1024) as address:
        echoed, (code, _) = await _client(lambda: conversation(address))
        await app.wait_done()
    assert echoed == b"k" * 1024
    assert code == 1009
    assert app.disconnect["code"] == 1009
    assert len(app.received) == 2


# -- graceful shutdown -------------------------------------------------------------


async def test_shutdown_closes_open_websockets_with_1001_before_lifespan_shutdown() -> None:
    order: list[str] = []
    accepted = anyio.Event()
    app = websocket_until_disconnect(order, accepted)

    def conversation(address: str) -> tuple[int, str]:
        with _connect(address) as ws:
            return _closed_by_server(ws)

    closed: list[tuple[int, str]] = []

    async def client(address: str) -> None:
        closed.append(await _client(lambda: conversation(address)))

    async with server(app) as handle, anyio.create_task_group() as tasks:
        tasks.start_soon(client, handle.address)
        with anyio.fail_after(TIMEOUT):
            await accepted.wait()
        handle.shutdown()
        await handle.wait_stopped(TIMEOUT)
    assert closed == [(1001, "server shutting down")]
    assert order == ["lifespan.startup", "websocket.disconnect 1001", "lifespan.shutdown"]


# -- Starlette ---------------------------------------------------------------------

from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse  # noqa: E402
from starlette.routing import WebSocketRoute  # noqa: E402
from starlette.websockets import WebSocket, WebSocketDisconnect  # noqa: E402


@dataclass
class _StarletteSeen:
    disconnects: list[int]
    event: anyio.Event


#: What the Starlette endpoint saw in the current test (set up by ``_starlette``).
_starlette_seen: list[_StarletteSeen] = []


async def _starlette_echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            text = await websocket.receive_text()
            if text == "close please":
                await websocket.close(code=4002, reason="as asked")
                return
            await websocket.send_text(f"echo: {text}")
    except WebSocketDisconnect as exc:
        seen = _starlette_seen[-1]
        seen.disconnects.append(exc.code)
        seen.event.set()


async def _starlette_deny(websocket: WebSocket) -> None:
    await websocket.send_denial_response(PlainTextResponse("members only", status_code=403))


starlette_app = Starlette(
    routes=[WebSocketRoute("/echo", _starlette_echo), WebSocketRoute("/deny", _starlette_deny)]
)


@contextlib.asynccontextmanager
async def _starlette() -> AsyncIterator[str]:
    _starlette_seen.append(_StarletteSeen([], anyio.Event()))
    try:
        async with running_server(starlette_app, lifespan="off") as address:
            yield address
    finally:
        _starlette_seen.clear()


async def test_starlette_websocket_echoes_and_closes_with_a_code() -> None:
    def conversation(address: str) -> tuple[list[str | bytes], tuple[int, str]]:
        with _connect(address, "/echo") as ws:
            ws.send("one")
            ws.send("twö")
            echoed = [ws.recv(timeout=5), ws.recv(timeout=5)]
            ws.send("close please")
            return echoed, _closed_by_server(ws)

    async with _starlette() as address:
        echoed, closed = await _client(lambda: conversation(address))
    assert echoed == ["echo: one", "echo: twö"]
    assert closed == (4002, "as asked")


async def test_starlette_websocket_sees_the_client_close() -> None:
    def conversation(address: str) -> None:
        with _connect(address, "/echo") as ws:
            ws.send("hi")
            assert ws.recv(timeout=5) == "echo: hi"
            ws.close(4100, "leaving")

    async with _starlette() as address:
        await _client(lambda: conversation(address))
        seen = _starlette_seen[-1]
        with anyio.fail_after(TIMEOUT):
            await seen.event.wait()
    assert seen.disconnects == [4100]


async def test_starlette_denial_response_reaches_the_client() -> None:
    async with _starlette() as address:
        response = await _client(lambda: _refusal(address, "/deny"))
    assert response.status_code == 403
    assert response.headers["content-type"] == "text/plain; charset=utf-8"
    assert response.body == b"members only"
