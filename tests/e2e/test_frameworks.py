"""Real applications (Starlette, Django, Flask, ASGI 2, curl as the client) over real sockets.

Each app is served in-process with ``running_server`` on a free loopback
port and queried with httpx, on every anyio backend.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
import shutil
import signal
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import anyio
import httpx
import pytest

from tests.conftest import running_server
from tests.e2e._server_process import ServerProcess, server_processes, write_module
from tricorn._asgi.app import detect_interface, wrap_app

TIMEOUT = 20.0


def _client(address: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(base_url=f"http://{address}", timeout=10)


# -- Starlette -------------------------------------------------------------------

from starlette.applications import Starlette  # noqa: E402
from starlette.requests import Request  # noqa: E402
from starlette.responses import JSONResponse, PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402

STREAM_CHUNKS = [f"chunk {n}\n" for n in range(8)]


@contextlib.asynccontextmanager
async def _starlette_lifespan(app: Starlette) -> AsyncIterator[dict[str, Any]]:
    yield {"greeting": "hello from lifespan"}


async def _home(request: Request) -> PlainTextResponse:
    return PlainTextResponse("starlette home")


async def _about(request: Request) -> JSONResponse:
    return JSONResponse({"page": "about", "method": request.method})


async def _user(request: Request) -> JSONResponse:
    user_id = request.path_params["user_id"]
    return JSONResponse({"user_id": user_id, "type": type(user_id).__name__})


async def _search(request: Request) -> JSONResponse:
    return JSONResponse(
        {"q": request.query_params.getlist("q"), "page": request.query_params.get("page")}
    )


async def _stream(request: Request) -> StreamingResponse:
    async def chunks() -> AsyncIterator[str]:
        for chunk in STREAM_CHUNKS:
            yield chunk
            await anyio.sleep(0.01)

    return StreamingResponse(chunks(), media_type="text/plain")


async def _body(request: Request) -> JSONResponse:
    raw = await request.body()
    data = await request.json()
    return JSONResponse(
        {"size": len(raw), "sha256": hashlib.sha256(raw).hexdigest(), "keys": sorted(data)}
    )


async def _state(request: Request) -> PlainTextResponse:
    return PlainTextResponse(request.state.greeting)


async def _where(request: Request) -> JSONResponse:
    return JSONResponse(
        {
            "root_path": request.scope["root_path"],
            "path": request.url.path,
            "url_for": str(request.url_for("where")),
        }
    )


starlette_app = Starlette(
    routes=[
        Route("/", _home),
        Route("/about", _about, methods=["GET", "POST"]),
        Route("/users/{user_id:int}", _user),
        Route("/search", _search),
        Route("/stream", _stream),
        Route("/body", _body, methods=["POST"]),
        Route("/state", _state),
        Route("/where", _where, name="where"),
    ],
    lifespan=_starlette_lifespan,
)


@pytest.mark.anyio
async def test_starlette_routes_requests_and_answers_404() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(starlette_app) as address, _client(address) as client:
            home = await client.get("/")
            assert home.status_code == 200
            assert home.text == "starlette home"
            about = await client.post("/about")
            assert about.json() == {"page": "about", "method": "POST"}
            missing = await client.get("/nowhere")
            assert missing.status_code == 404


@pytest.mark.anyio
async def test_starlette_path_and_query_params() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(starlette_app) as address, _client(address) as client:
            user = await client.get("/users/42")
            assert user.json() == {"user_id": 42, "type": "int"}
            assert (await client.get("/users/not-a-number")).status_code == 404
            search = await client.get("/search", params=[("q", "a b"), ("q", "ü"), ("page", "2")])
            assert search.json() == {"q": ["a b", "ü"], "page": "2"}


@pytest.mark.anyio
async def test_starlette_streaming_response_arrives_in_order() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(starlette_app) as address, _client(address) as client:
            async with client.stream("GET", "/stream") as response:
                assert response.status_code == 200
                assert "content-length" not in response.headers
                assert response.headers["transfer-encoding"] == "chunked"
                received = "".join([text async for text in response.aiter_text()])
            assert received == "".join(STREAM_CHUNKS)


@pytest.mark.anyio
async def test_starlette_reads_the_request_body_and_json() -> None:
    payload = {f"key{n}": "x" * 1000 for n in range(300)}
    raw = json.dumps(payload).encode()

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 7000):
            yield raw[start : start + 7000]

    with anyio.fail_after(TIMEOUT):
        async with running_server(starlette_app) as address, _client(address) as client:
            fixed = await client.post("/body", content=raw)
            chunked = await client.post("/body", content=in_pieces())
    expected = {
        "size": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "keys": sorted(payload),
    }
    assert fixed.json() == expected
    assert chunked.json() == expected


@pytest.mark.anyio
async def test_starlette_lifespan_state_reaches_the_request() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            running_server(starlette_app, lifespan="on") as address,
            _client(address) as client,
        ):
            response = await client.get("/state")
    assert response.status_code == 200
    assert response.text == "hello from lifespan"


@pytest.mark.anyio
async def test_starlette_under_root_path_routes_and_builds_urls() -> None:
    # A proxy strips /api before forwarding; the scope's path has it back in
    # front and Starlette routes on what follows root_path.
    with anyio.fail_after(TIMEOUT):
        async with (
            running_server(starlette_app, root_path="/api") as address,
            _client(address) as client,
        ):
            response = await client.get("/where")
    assert response.status_code == 200, response.text
    assert response.json() == {
        "root_path": "/api",
        "path": "/api/where",
        "url_for": f"http://{address}/api/where",
    }


# -- Django ----------------------------------------------------------------------

import django  # noqa: E402
from django.conf import settings  # noqa: E402

if not settings.configured:
    settings.configure(
        DEBUG=False,
        ROOT_URLCONF=__name__,
        ALLOWED_HOSTS=["*"],
        SECRET_KEY="tricorn-e2e-tests-not-a-secret",
        INSTALLED_APPS=[],
        MIDDLEWARE=[],
        DATABASES={},
        USE_TZ=True,
    )

from django.core.asgi import get_asgi_application  # noqa: E402
from django.http import HttpRequest, JsonResponse, StreamingHttpResponse  # noqa: E402
from django.urls import path as django_path  # noqa: E402
from django.views.decorators.csrf import csrf_exempt  # noqa: E402

DJANGO_PARTS = [f"part {n}\n".encode() for n in range(6)]


@csrf_exempt
def _django_echo(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "method": request.method,
            "path": request.path,
            "body": request.body.decode(),
            "q": request.GET.get("q"),
        }
    )


async def _django_stream(request: HttpRequest) -> StreamingHttpResponse:
    async def parts() -> AsyncIterator[bytes]:
        for part in DJANGO_PARTS:
            yield part

    return StreamingHttpResponse(parts(), content_type="text/plain")


urlpatterns = [
    django_path("echo/", _django_echo),
    django_path("stream/", _django_stream),
]


@pytest.fixture
def django_app(backend_name: str) -> Any:
    if backend_name == "trio":
        pytest.skip("Django's ASGI handler runs on asgiref, which needs an asyncio event loop")
    assert django.VERSION >= (5, 0)
    return get_asgi_application()


@pytest.mark.anyio
async def test_django_view_sees_method_path_and_body(django_app: Any) -> None:
    # Django's handler raises on the lifespan scope; under "auto" tricorn
    # carries on serving without it.
    with anyio.fail_after(TIMEOUT):
        async with (
            running_server(django_app, lifespan="auto") as address,
            _client(address) as client,
        ):
            got = await client.get("/echo/", params={"q": "django"})
            posted = await client.post("/echo/", content=b"hello django")
            missing = await client.get("/nope/")
    assert got.status_code == 200
    assert got.json() == {"method": "GET", "path": "/echo/", "body": "", "q": "django"}
    assert posted.status_code == 200
    assert posted.json() == {"method": "POST", "path": "/echo/", "body": "hello django", "q": None}
    assert missing.status_code == 404


@pytest.mark.anyio
async def test_django_streaming_response_arrives_in_full(django_app: Any) -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            running_server(django_app) as address,
            _client(address) as client,
            client.stream("GET", "/stream/") as response,
        ):
            assert response.status_code == 200
            body = b"".join([chunk async for chunk in response.aiter_bytes()])
    assert body == b"".join(DJANGO_PARTS)


# -- Flask, through the WSGI adapter -----------------------------------------------

from flask import Flask, Response, jsonify  # noqa: E402
from flask import request as flask_request  # noqa: E402

flask_app = Flask(__name__)
FLASK_LINES = [f"line {n:04d}\n" for n in range(2000)]


@flask_app.get("/")
def _flask_home() -> str:
    return "flask home"


@flask_app.get("/hello/<name>")
def _flask_hello(name: str) -> str:
    return f"hello {name}"


@flask_app.post("/json")
def _flask_json() -> Any:
    raw = flask_request.get_data()
    return jsonify(size=len(raw), payload=json.loads(raw), parsed=flask_request.get_json())


@flask_app.get("/stream")
def _flask_stream() -> Response:
    def lines() -> Iterator[str]:
        yield from FLASK_LINES

    return Response(lines(), mimetype="text/plain")


def _wrapped_flask() -> Any:
    return wrap_app(flask_app, "auto", wsgi_max_workers=4)


def test_flask_app_is_detected_as_wsgi() -> None:
    assert detect_interface(flask_app) == "wsgi"


@pytest.mark.anyio
async def test_flask_routes_requests_and_answers_404() -> None:
    with anyio.fail_after(TIMEOUT):
        async with running_server(_wrapped_flask()) as address, _client(address) as client:
            home = await client.get("/")
            hello = await client.get("/hello/world")
            missing = await client.get("/nowhere")
    assert (home.status_code, home.text) == (200, "flask home")
    assert (hello.status_code, hello.text) == (200, "hello world")
    assert missing.status_code == 404


@pytest.mark.anyio
async def test_flask_reads_the_request_body_and_json() -> None:
    payload = {"items": list(range(5000)), "name": "flask"}
    raw = json.dumps(payload).encode()

    async def in_pieces() -> AsyncIterator[bytes]:
        for start in range(0, len(raw), 4096):
            yield raw[start : start + 4096]

    with anyio.fail_after(TIMEOUT):
        async with running_server(_wrapped_flask()) as address, _client(address) as client:
            fixed = await client.post(
                "/json", content=raw, headers={"content-type": "application/json"}
            )
            # No Content-Length: Werkzeug reads a chunked body when the server
            # says the input is terminated (wsgi.input_terminated).
            chunked = await client.post(
                "/json", content=in_pieces(), headers={"content-type": "application/json"}
            )
    expected = {"size": len(raw), "payload": payload, "parsed": payload}
    assert fixed.status_code == 200, fixed.text
    assert fixed.json() == expected
    assert chunked.status_code == 200, chunked.text
    assert chunked.json() == expected


@pytest.mark.anyio
async def test_flask_streamed_response_arrives_in_full() -> None:
    with anyio.fail_after(TIMEOUT):
        async with (
            running_server(_wrapped_flask()) as address,
            _client(address) as client,
            client.stream("GET", "/stream") as response,
        ):
            assert response.status_code == 200
            text = "".join([piece async for piece in response.aiter_text()])
    assert text == "".join(FLASK_LINES)


FLASK_MODULE = """
from flask import Flask

flask_app = Flask(__name__)


@flask_app.get("/")
def home():
    return "flask through the cli"
"""


def test_flask_app_served_through_the_cli(tmp_path: Path) -> None:
    write_module(tmp_path, "flaskmod", FLASK_MODULE)
    with server_processes() as started:
        server = ServerProcess(["flaskmod:flask_app", "-b", "127.0.0.1:0"], cwd=tmp_path)
        started.append(server)
        response = httpx.get(server.url(), timeout=10)
        assert response.status_code == 200
        assert response.text == "flask through the cli"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0, server.stderr


# -- ASGI 2 ----------------------------------------------------------------------


async def _read_body(receive: Any) -> bytes:
    body = b""
    while True:
        message = await receive()
        if message["type"] != "http.request":
            return body
        body += message.get("body", b"")
        if not message.get("more_body", False):
            return body


async def _answer(send: Any, text: str) -> None:
    body = text.encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-length", str(len(body)).encode())],
        }
    )
    await send({"type": "http.response.body", "body": body})


class ClassASGI2:
    """An ASGI 2 app: the class is instantiated with the scope."""

    def __init__(self, scope: dict[str, Any]) -> None:
        self.scope = scope

    async def __call__(self, receive: Any, send: Any) -> None:
        if self.scope["type"] == "http":
            body = await _read_body(receive)
            await _answer(send, f"class {self.scope['path']} {body.decode()}")


def function_asgi2(scope: dict[str, Any]) -> Any:
    """An ASGI 2 app: a callable of the scope that returns the coroutine callable."""

    async def asgi(receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            body = await _read_body(receive)
            await _answer(send, f"function {scope['path']} {body.decode()}")

    return asgi


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("app", "name"),
    [(ClassASGI2, "class"), (function_asgi2, "function")],
    ids=["class", "function"],
)
async def test_asgi2_app_is_detected_and_served(app: Any, name: str) -> None:
    assert detect_interface(app) == "asgi2"
    wrapped = wrap_app(app, "auto", wsgi_max_workers=1)
    with anyio.fail_after(TIMEOUT):
        async with running_server(wrapped) as address, _client(address) as client:
            response = await client.post("/two", content=b"callables")
    assert response.status_code == 200
    assert response.text == f"{name} /two callables"


# -- curl as the client -------------------------------------------------------------


async def _probe(scope: Any, receive: Any, send: Any) -> None:
    """Describe the request it received, as JSON."""
    if scope["type"] != "http":
        return
    body = await _read_body(receive)
    headers = {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}
    answer = json.dumps(
        {
            "method": scope["method"],
            "path": scope["path"],
            "http_version": scope["http_version"],
            "size": len(body),
            "sha256": hashlib.sha256(body).hexdigest(),
            "transfer_encoding": headers.get("transfer-encoding"),
        }
    ).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(answer)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": answer})


async def _curl(*args: str) -> tuple[str, str]:
    curl = shutil.which("curl")
    assert curl is not None
    result = await anyio.run_process([curl, "-sS", "--max-time", "10", *args], check=False)
    stdout, stderr = result.stdout.decode(), result.stderr.decode()
    assert result.returncode == 0, stderr
    return stdout, stderr


def _split_response(text: str) -> tuple[str, dict[str, str], str]:
    head, _, body = text.partition("\r\n\r\n")
    status, *lines = head.split("\r\n")
    headers = {}
    for line in lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


@pytest.mark.anyio
async def test_curl_talks_to_the_server(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.skip("curl is not installed")
    upload = tmp_path / "upload.bin"
    data = bytes(range(256)) * 1024
    upload.write_bytes(data)
    with anyio.fail_after(TIMEOUT * 2):
        async with running_server(_probe) as address:
            base = f"http://{address}"

            # -i: the status line, headers and body of a plain GET.
            status, headers, body = _split_response((await _curl("-i", f"{base}/plain"))[0])
            assert status.startswith("HTTP/1.1 200")
            assert headers["server"] == "tricorn"
            assert "date" in headers
            plain = json.loads(body)
            assert plain["method"] == "GET"
            assert plain["http_version"] == "1.1"
            assert headers["content-length"] == str(len(body))

            # A chunked upload from a file arrives byte for byte.
            stdout, _ = await _curl(
                "-H", "Transfer-Encoding: chunked", "--data-binary", f"@{upload}", f"{base}/up"
            )
            uploaded = json.loads(stdout)
            assert uploaded["method"] == "POST"
            assert uploaded["transfer_encoding"] == "chunked"
            assert uploaded["size"] == len(data)
            assert uploaded["sha256"] == hashlib.sha256(data).hexdigest()

            # HTTP/1.0: the app sees version 1.0 and the server closes the connection.
            status, headers, body = _split_response(
                (await _curl("-i", "--http1.0", f"{base}/old"))[0]
            )
            assert re.match(r"HTTP/1\.[01] 200", status), status
            assert json.loads(body)["http_version"] == "1.0"
            assert headers.get("connection", "close").lower() == "close"

            # HEAD (-I): the GET's headers, no body.
            stdout, _ = await _curl("-I", f"{base}/plain")
            status, headers, body = _split_response(stdout)
            assert status.startswith("HTTP/1.1 200")
            head_answer = json.dumps({**plain, "method": "HEAD", "path": "/plain"}).encode()
            assert headers["content-length"] == str(len(head_answer))
            assert body == ""

            # Two URLs in one invocation share one keep-alive connection.
            stdout, stderr = await _curl("-v", f"{base}/first", f"{base}/second")
            assert re.search(r"Re-?using existing.* connection", stderr, re.IGNORECASE), stderr
            assert stderr.count("Connected to") == 1, stderr
            decoder = json.JSONDecoder()
            first, end = decoder.raw_decode(stdout)
            second, _ = decoder.raw_decode(stdout[end:])
            assert (first["path"], second["path"]) == ("/first", "/second")
