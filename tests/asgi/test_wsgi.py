"""WSGIAdapter: a PEP 3333 app served as an ASGI 3 app on a bounded thread pool.

Every test drives the adapter as a server would: an ``http`` scope, and a
``receive``/``send`` pair over anyio memory object streams, standing in for
the runtime's exchange. The WSGI apps are ordinary WSGI callables (and one
real Flask app).
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from typing import Any

import anyio
import anyio.from_thread
import flask
import pytest

from tricorn._asgi.types import HTTPScope, LifespanScope, Message
from tricorn._asgi.wsgi import StartResponse, WSGIAdapter, WSGIEnvironment
from tricorn.errors import AppProtocolError, ClientDisconnected, ConfigError, TricornError

WAIT = 5.0  # seconds; an upper bound for things that should happen at once


def http_scope(
    *,
    method: str = "GET",
    path: str = "/",
    query_string: bytes = b"",
    headers: Iterable[tuple[bytes, bytes]] = (),
    root_path: str = "",
    server: tuple[str, int | None] | None = ("127.0.0.1", 8000),
    client: tuple[str, int] | None = ("10.0.0.7", 54321),
    scheme: str = "http",
    http_version: str = "1.1",
) -> HTTPScope:
    return {
        "type": "http",
        "asgi": {"version": "3.0", "spec_version": "2.5"},
        "http_version": http_version,
        "method": method,
        "scheme": scheme,
        "path": path,
        "raw_path": path.encode(),
        "query_string": query_string,
        "root_path": root_path,
        "headers": list(headers),
        "client": client,
        "server": server,
        "extensions": {},
    }


class Exchange:
    """The server's side of one ASGI exchange.

    ``deliver`` offers a message to the app's ``receive()``; with
    ``inbox_size=0`` it returns only once the app has taken it. What the app
    sends is readable from ``sent``. Closing the inbox makes ``receive()``
    report ``http.disconnect``, as the runtime does when the client leaves.
    """

    def __init__(self, *, inbox_size: float = math.inf, outbox_size: float = math.inf) -> None:
        self._inbox_writer, self._inbox = anyio.create_memory_object_stream[Message](inbox_size)
        self._outbox, self.sent = anyio.create_memory_object_stream[Message](outbox_size)

    def __enter__(self) -> Exchange:
        return self

    def __exit__(self, *exc: object) -> None:
        for stream in (self._inbox_writer, self._inbox, self._outbox, self.sent):
            stream.close()

    async def receive(self) -> Message:
        try:
            return await self._inbox.receive()
        except anyio.EndOfStream:
            return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        await self._outbox.send(dict(message))

    async def deliver_message(self, message: Message) -> None:
        await self._inbox_writer.send(message)

    async def deliver(self, body: bytes, *, more_body: bool) -> None:
        await self.deliver_message({"type": "http.request", "body": body, "more_body": more_body})

    def disconnect(self) -> None:
        self._inbox_writer.close()

    def sent_so_far(self) -> list[Message]:
        messages = []
        while True:
            try:
                messages.append(self.sent.receive_nowait())
            except anyio.WouldBlock:
                return messages


async def request(
    adapter: WSGIAdapter, scope: HTTPScope | None = None, body: Iterable[bytes] = (b"",)
) -> list[Message]:
    """Run one exchange whose body is all there up front; return what the app sent."""
    chunks = list(body)
    with Exchange() as exchange:
        for index, chunk in enumerate(chunks):
            await exchange.deliver(chunk, more_body=index < len(chunks) - 1)
        await adapter(scope or http_scope(), exchange.receive, exchange.send)
        return exchange.sent_so_far()


def response(messages: list[Message]) -> tuple[int, list[tuple[bytes, bytes]], list[bytes]]:
    """Check the message order of a complete response; return status, headers, body chunks."""
    start, *bodies, last = messages
    assert start["type"] == "http.response.start"
    assert all(m["type"] == "http.response.body" and m["more_body"] for m in bodies)
    assert last == {"type": "http.response.body", "body": b"", "more_body": False}
    return start["status"], list(start["headers"]), [m["body"] for m in bodies]


def capture_environ(seen: list[WSGIEnvironment]) -> Callable[..., Iterable[bytes]]:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        seen.append(environ)
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [b"ok"]

    return app


# -- environ -------------------------------------------------------------------


@pytest.mark.anyio
async def test_environ_describes_a_get_request_with_query_string_and_headers() -> None:
    seen: list[WSGIEnvironment] = []
    scope = http_scope(
        path="/items/7",
        query_string=b"q=caf%C3%A9&page=2",
        headers=[
            (b"host", b"example.com"),
            (b"accept", b"text/html"),
            (b"x-multi", b"a"),
            (b"x-multi", b"b"),
            (b"cookie", b"a=1"),
            (b"cookie", b"b=2"),
        ],
    )
    messages = await request(WSGIAdapter(capture_environ(seen), max_workers=1), scope)

    environ = seen[0]
    assert environ["REQUEST_METHOD"] == "GET"
    assert environ["SCRIPT_NAME"] == ""
    assert environ["PATH_INFO"] == "/items/7"
    assert environ["QUERY_STRING"] == "q=caf%C3%A9&page=2"
    assert (environ["SERVER_NAME"], environ["SERVER_PORT"]) == ("127.0.0.1", "8000")
    assert (environ["REMOTE_ADDR"], environ["REMOTE_PORT"]) == ("10.0.0.7", "54321")
    assert environ["SERVER_PROTOCOL"] == "HTTP/1.1"
    assert environ["HTTP_HOST"] == "example.com"
    assert environ["HTTP_ACCEPT"] == "text/html"
    assert environ["HTTP_X_MULTI"] == "a,b"
    assert environ["HTTP_COOKIE"] == "a=1; b=2"
    assert "CONTENT_TYPE" not in environ
    assert "CONTENT_LENGTH" not in environ
    assert environ["wsgi.version"] == (1, 0)
    assert environ["wsgi.url_scheme"] == "http"
    assert (environ["wsgi.multithread"], environ["wsgi.multiprocess"]) == (True, False)
    assert environ["wsgi.run_once"] is False
    for method in ("read", "readline", "readlines", "__iter__"):
        assert callable(getattr(environ["wsgi.input"], method))
    for method in ("write", "writelines", "flush"):
        assert callable(getattr(environ["wsgi.errors"], method))
    assert response(messages) == (200, [(b"content-type", b"text/plain")], [b"ok"])


@pytest.mark.anyio
async def test_content_type_and_length_are_cgi_variables_not_http_ones() -> None:
    seen: list[WSGIEnvironment] = []
    headers = [(b"content-type", b"application/json"), (b"content-length", b"2")]
    scope = http_scope(method="POST", headers=headers, scheme="https", http_version="2")
    await request(WSGIAdapter(capture_environ(seen), max_workers=1), scope, [b"{}"])

    environ = seen[0]
    assert environ["CONTENT_TYPE"] == "application/json"
    assert environ["CONTENT_LENGTH"] == "2"
    assert "HTTP_CONTENT_TYPE" not in environ
    assert "HTTP_CONTENT_LENGTH" not in environ
    assert environ["wsgi.url_scheme"] == "https"
    assert environ["SERVER_PROTOCOL"] == "HTTP/2"


@pytest.mark.anyio
async def test_header_names_with_underscores_are_dropped() -> None:
    seen: list[WSGIEnvironment] = []
    headers = [(b"x-user", b"alice"), (b"x_user", b"mallory")]
    await request(WSGIAdapter(capture_environ(seen), max_workers=1), http_scope(headers=headers))

    assert seen[0]["HTTP_X_USER"] == "alice"


@pytest.mark.anyio
async def test_root_path_becomes_script_name_and_the_rest_path_info() -> None:
    seen: list[WSGIEnvironment] = []
    adapter = WSGIAdapter(capture_environ(seen), max_workers=1)
    await request(adapter, http_scope(root_path="/app", path="/app/caf\u00e9/x"))
    await request(adapter, http_scope(root_path="/app", path="/app"))
    await request(adapter, http_scope(root_path="/app", path="/application"))

    # PEP 3333: the URL's UTF-8 bytes, each as one latin-1 character.
    assert (seen[0]["SCRIPT_NAME"], seen[0]["PATH_INFO"]) == ("/app", "/caf\u00c3\u00a9/x")
    assert (seen[1]["SCRIPT_NAME"], seen[1]["PATH_INFO"]) == ("/app", "")
    assert (seen[2]["SCRIPT_NAME"], seen[2]["PATH_INFO"]) == ("/app", "/application")


@pytest.mark.anyio
async def test_unix_socket_server_has_placeholder_name_and_port() -> None:
    seen: list[WSGIEnvironment] = []
    scope = http_scope(server=("/run/tricorn.sock", None), client=None)
    await request(WSGIAdapter(capture_environ(seen), max_workers=1), scope)

    assert (seen[0]["SERVER_NAME"], seen[0]["SERVER_PORT"]) == ("localhost", "0")
    assert "REMOTE_ADDR" not in seen[0]


# -- the request body ----------------------------------------------------------


@pytest.mark.anyio
async def test_request_body_is_streamed_to_wsgi_input_as_the_app_reads() -> None:
    first_read = anyio.Event()
    reads: list[object] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        reads.append(stream.read(6))
        anyio.from_thread.run_sync(first_read.set)
        reads.append(stream.readline())
        reads.append(stream.read(3))
        reads.append(stream.readlines())
        reads.append(stream.read())
        start_response("204 No Content", [])
        return []

    adapter = WSGIAdapter(app, max_workers=1)
    # inbox_size=0: deliver() returns only once the app's receive() took the chunk.
    with Exchange(inbox_size=0) as exchange:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(
                adapter, http_scope(method="POST"), exchange.receive, exchange.send
            )
            with anyio.fail_after(WAIT):
                await exchange.deliver(b"first-", more_body=True)
                await first_read.wait()
                assert reads == [b"first-"]  # read before the second chunk even exists
                await exchange.deliver(b"line one\nli", more_body=True)
                await exchange.deliver(b"ne two\nab", more_body=True)
                await exchange.deliver(b"c\ntail", more_body=False)
        messages = exchange.sent_so_far()

    assert reads == [
        b"first-",
        b"line one\n",
        b"lin",
        [b"e two\n", b"abc\n", b"tail"],
        b"",
    ]
    assert response(messages)[0] == 204


@pytest.mark.anyio
async def test_wsgi_input_readline_honours_size_and_iterates_lines() -> None:
    reads: list[object] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        stream = environ["wsgi.input"]
        reads.append(stream.readline(4))
        reads.append(stream.readline(100))
        reads.append(list(stream))
        start_response("204 No Content", [])
        return []

    await request(WSGIAdapter(app, max_workers=1), body=[b"abcdef\n", b"gh\ni", b"j\n", b"k"])

    assert reads == [b"abcd", b"ef\n", [b"gh\n", b"ij\n", b"k"]]


@pytest.mark.anyio
async def test_wsgi_input_reports_end_of_file_when_the_client_disconnects() -> None:
    reads: list[bytes] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        reads.append(environ["wsgi.input"].read())
        reads.append(environ["wsgi.input"].read(10))
        start_response("400 Bad Request", [])
        return []

    with Exchange() as exchange:
        await exchange.deliver(b"partial", more_body=True)
        exchange.disconnect()
        await WSGIAdapter(app, max_workers=1)(http_scope(), exchange.receive, exchange.send)

    assert reads == [b"partial", b""]


# -- the response --------------------------------------------------------------


class Chunks:
    """A response iterable with ``close()`` that records how far it was consumed."""

    def __init__(self, chunks: Iterable[bytes]) -> None:
        self._chunks = iter(chunks)
        self.yielded = 0
        self.closed = False

    def __iter__(self) -> Iterator[bytes]:
        return self

    def __next__(self) -> bytes:
        chunk = next(self._chunks)
        self.yielded += 1
        return chunk

    def close(self) -> None:
        self.closed = True


@pytest.mark.anyio
async def test_generator_response_is_streamed_chunk_by_chunk_and_closed() -> None:
    client_has_first_chunk = threading.Event()

    def generate(start_response: StartResponse) -> Iterator[bytes]:
        # PEP 3333: start_response may come late, as long as no body went out yet.
        yield b""
        start_response("200 OK", [("Content-Type", "text/plain")])
        yield b"one"
        assert client_has_first_chunk.wait(WAIT)
        yield b""
        yield b"two"
        yield b"three"

    body: list[Chunks] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        body.append(Chunks(generate(start_response)))
        return body[0]

    adapter = WSGIAdapter(app, max_workers=1)
    # outbox_size=0: the app's send() returns only once we took the message.
    with Exchange(outbox_size=0) as exchange:
        async with anyio.create_task_group() as task_group:
            task_group.start_soon(adapter, http_scope(), exchange.receive, exchange.send)
            with anyio.fail_after(WAIT):
                start = await exchange.sent.receive()
                first = await exchange.sent.receive()
                client_has_first_chunk.set()
                rest = [await exchange.sent.receive() for _ in range(3)]

    status, headers, chunks = response([start, first, *rest])
    assert (status, headers) == (200, [(b"content-type", b"text/plain")])
    assert chunks == [b"one", b"two", b"three"]
    assert body[0].closed


@pytest.mark.anyio
async def test_write_callable_sends_body_before_the_returned_iterable() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"first ")
        write(b"")
        write(b"second ")
        return [b"third"]

    messages = await request(WSGIAdapter(app, max_workers=1))

    assert response(messages) == (200, [], [b"first ", b"second ", b"third"])


@pytest.mark.anyio
async def test_empty_response_sends_the_head_at_the_end() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("304 Not Modified", [("ETag", '"v1"')])
        return [b"", b""]

    messages = await request(WSGIAdapter(app, max_workers=1))

    assert response(messages) == (304, [(b"etag", b'"v1"')], [])


@pytest.mark.anyio
async def test_exc_info_replaces_the_response_before_the_head_is_sent() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [("Content-Type", "text/html")])
        try:
            raise ValueError("rendering failed")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return [b"sorry"]

    messages = await request(WSGIAdapter(app, max_workers=1))

    assert response(messages) == (500, [], [b"sorry"])


@pytest.mark.anyio
async def test_exc_info_is_reraised_once_the_head_is_sent() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        write = start_response("200 OK", [])
        write(b"partial")
        try:
            raise ValueError("too late")
        except ValueError:
            start_response("500 Internal Server Error", [], sys.exc_info())
        return []

    with pytest.raises(ValueError, match="too late"):
        await request(WSGIAdapter(app, max_workers=1))


@pytest.mark.anyio
async def test_second_start_response_without_exc_info_is_an_error() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        start_response("404 Not Found", [])
        return []

    with pytest.raises(AppProtocolError, match="second time"):
        await request(WSGIAdapter(app, max_workers=1))


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("status", "headers", "body", "match"),
    [
        ("OK", [], [b"x"], "three-digit"),
        ("200 OK", [("X-Name", "\u2603")], [b"x"], "latin-1"),
        ("200 OK", [], ["text"], "bytes"),
        (None, [], [b"x"], "without calling start_response"),
    ],
    ids=["status-without-code", "non-latin-1-header", "str-chunk", "no-start-response"],
)
async def test_malformed_wsgi_responses_are_app_protocol_errors(
    status: str | None, headers: list[tuple[str, str]], body: list[Any], match: str
) -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if status is not None:
            start_response(status, headers)
        return body

    with pytest.raises(AppProtocolError, match=match):
        await request(WSGIAdapter(app, max_workers=1))


# -- errors --------------------------------------------------------------------


@pytest.mark.anyio
async def test_exception_in_the_app_propagates() -> None:
    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        await request(WSGIAdapter(app, max_workers=1))


@pytest.mark.anyio
async def test_exception_in_the_response_iterable_propagates_and_closes_it() -> None:
    def generate() -> Iterator[bytes]:
        yield b"fine"
        raise RuntimeError("broken stream")

    body = Chunks(generate())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    with pytest.raises(RuntimeError, match="broken stream"):
        await request(WSGIAdapter(app, max_workers=1))
    assert body.closed


@pytest.mark.anyio
async def test_send_raising_oserror_stops_the_iteration_and_closes_it() -> None:
    def forever() -> Iterator[bytes]:
        while True:
            yield b"tick"

    body = Chunks(forever())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        start_response("200 OK", [])
        return body

    with Exchange() as exchange:

        async def send(message: Message) -> None:
            if message["type"] == "http.response.body":
                raise ClientDisconnected("the client has disconnected")
            await exchange.send(message)

        with pytest.raises(OSError, match="disconnected"):
            await WSGIAdapter(app, max_workers=1)(http_scope(), exchange.receive, send)

    assert body.yielded == 1
    assert body.closed


@pytest.mark.anyio
async def test_cancelling_the_exchange_cancels_a_wsgi_call_waiting_for_the_body() -> None:
    raised: list[type[BaseException]] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        try:
            environ["wsgi.input"].read()
        except BaseException as exc:  # the backend's cancellation, re-raised below
            raised.append(type(exc))
            raise
        start_response("200 OK", [])
        return []

    adapter = WSGIAdapter(app, max_workers=1)
    waiting = anyio.Event()
    # The body never comes: only the cancellation can end this exchange.
    with Exchange(inbox_size=0) as exchange, anyio.fail_after(WAIT):

        async def receive() -> Message:
            waiting.set()
            return await exchange.receive()

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(adapter, http_scope(method="POST"), receive, exchange.send)
            await waiting.wait()
            task_group.cancel_scope.cancel()
        assert exchange.sent_so_far() == []

    assert raised == [anyio.get_cancelled_exc_class()]


@pytest.mark.anyio
async def test_wsgi_call_still_running_after_cancellation_sees_the_client_gone() -> None:
    cancelled = threading.Event()
    seen: list[object] = []

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        # Busy in the thread while the exchange is cancelled; its next calls
        # into the event loop start only afterwards.
        anyio.from_thread.run_sync(running.set)
        assert cancelled.wait(WAIT)
        seen.append(environ["wsgi.input"].read())
        write = start_response("200 OK", [])
        try:
            write(b"late")
        except OSError as exc:
            seen.append(type(exc))
            raise
        return []

    adapter = WSGIAdapter(app, max_workers=1)
    running = anyio.Event()
    with Exchange(inbox_size=0) as exchange, anyio.fail_after(WAIT):

        async def exchange_task() -> None:
            # The runtime treats this error as "the client went away".
            with contextlib.suppress(ClientDisconnected):
                await adapter(http_scope(method="POST"), exchange.receive, exchange.send)

        async with anyio.create_task_group() as task_group:
            task_group.start_soon(exchange_task)
            await running.wait()
            task_group.cancel_scope.cancel()
            cancelled.set()
        assert exchange.sent_so_far() == []

    assert seen == [b"", ClientDisconnected]


@pytest.mark.anyio
async def test_wsgi_errors_are_logged_on_the_error_logger() -> None:
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        errors = environ["wsgi.errors"]
        errors.write("line one\nline")
        errors.writelines([" two\n", "tail"])
        start_response("200 OK", [])
        return []

    logger = logging.getLogger("tricorn.error")
    handler, level = Collect(), logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.ERROR)
    try:
        await request(WSGIAdapter(app, max_workers=1))
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)

    assert records == ["line one", "line two", "tail"]


# -- concurrency ---------------------------------------------------------------


@pytest.mark.anyio
async def test_max_workers_bounds_concurrent_wsgi_calls() -> None:
    lock = threading.Lock()
    gate = threading.Event()
    counts = {"entered": 0, "running": 0, "peak": 0}
    entries_writer, entries = anyio.create_memory_object_stream[None](math.inf)

    def app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        with lock:
            counts["entered"] += 1
            counts["running"] += 1
            counts["peak"] = max(counts["peak"], counts["running"])
        anyio.from_thread.run_sync(entries_writer.send_nowait, None)
        try:
            assert gate.wait(WAIT)
        finally:
            with lock:
                counts["running"] -= 1
        start_response("204 No Content", [])
        return []

    adapter = WSGIAdapter(app, max_workers=2)
    with entries_writer, entries:
        async with anyio.create_task_group() as task_group:
            for _ in range(4):
                task_group.start_soon(request, adapter)
            try:
                with anyio.fail_after(WAIT):
                    await entries.receive()
                    await entries.receive()
                # Unbounded, a third call would enter well within this grace period.
                with anyio.move_on_after(0.1):
                    await entries.receive()
                    pytest.fail("a third WSGI call ran while two were still running")
            finally:
                gate.set()

    assert counts == {"entered": 4, "running": 0, "peak": 2}


@pytest.mark.anyio
async def test_multiprocess_is_true_when_other_processes_serve_the_app() -> None:
    seen: list[WSGIEnvironment] = []
    await request(WSGIAdapter(capture_environ(seen), max_workers=1, multiprocess=True))
    assert seen[0]["wsgi.multiprocess"] is True


@pytest.fixture
def adapter_made_outside_the_loop() -> WSGIAdapter:
    seen: list[WSGIEnvironment] = []
    return WSGIAdapter(capture_environ(seen), max_workers=1)


@pytest.mark.anyio
async def test_adapter_made_before_the_event_loop_runs_works_inside_it(
    adapter_made_outside_the_loop: WSGIAdapter,
) -> None:
    messages = await request(adapter_made_outside_the_loop)

    assert response(messages)[2] == [b"ok"]


def test_max_workers_below_one_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="wsgi_max_workers"):
        WSGIAdapter(capture_environ([]), max_workers=0)


# -- other scopes --------------------------------------------------------------


@pytest.mark.anyio
async def test_lifespan_scope_is_answered_for_the_wsgi_app() -> None:
    adapter = WSGIAdapter(capture_environ([]), max_workers=1)
    scope: LifespanScope = {
        "type": "lifespan",
        "asgi": {"version": "3.0", "spec_version": "2.0"},
        "state": {},
    }
    with Exchange() as exchange:
        await exchange.deliver_message({"type": "lifespan.startup"})
        await exchange.deliver_message({"type": "lifespan.shutdown"})
        with anyio.fail_after(WAIT):
            await adapter(scope, exchange.receive, exchange.send)
        messages = exchange.sent_so_far()

    assert messages == [
        {"type": "lifespan.startup.complete"},
        {"type": "lifespan.shutdown.complete"},
    ]


@pytest.mark.anyio
async def test_websocket_scope_is_an_error_naming_the_scope_type() -> None:
    adapter = WSGIAdapter(capture_environ([]), max_workers=1)
    # Not a scope the WSGI side knows, by design; hence Any.
    scope: Any = {**http_scope(), "type": "websocket", "subprotocols": []}
    with Exchange() as exchange, pytest.raises(TricornError, match="'websocket'"):
        await adapter(scope, exchange.receive, exchange.send)


# -- a real framework ----------------------------------------------------------


def make_flask_app() -> flask.Flask:
    app = flask.Flask("wsgi_test")

    @app.post("/echo")
    def echo() -> flask.Response:
        data = flask.request.get_data()
        return flask.jsonify(
            text=data.decode(),
            length=len(data),
            script_root=flask.request.script_root,
            path=flask.request.path,
            args=flask.request.args.to_dict(),
        )

    return app


@pytest.mark.anyio
@pytest.mark.parametrize("content_length", [True, False], ids=["content-length", "chunked"])
async def test_flask_app_reads_the_body_and_answers_json(content_length: bool) -> None:
    chunks = [b"hello, ", b"flask ", b"\xc3\xa9"]
    headers = [(b"content-type", b"text/plain; charset=utf-8")]
    if content_length:
        headers.append((b"content-length", str(sum(map(len, chunks))).encode()))
    scope = http_scope(
        method="POST", root_path="/api", path="/api/echo", query_string=b"x=1", headers=headers
    )

    messages = await request(WSGIAdapter(make_flask_app(), max_workers=2), scope, chunks)

    status, response_headers, body = response(messages)
    assert status == 200
    assert (b"content-type", b"application/json") in response_headers
    assert json.loads(b"".join(body)) == {
        "text": "hello, flask \u00e9",
        "length": 15,
        "script_root": "/api",
        "path": "/echo",
        "args": {"x": "1"},
    }


@pytest.mark.anyio
async def test_flask_app_route_not_found_is_a_404() -> None:
    messages = await request(
        WSGIAdapter(make_flask_app(), max_workers=1), http_scope(path="/missing")
    )

    assert response(messages)[0] == 404
