"""The ``tricorn`` command line in a real subprocess, talking over real sockets.

Apps live in small modules written to ``tmp_path``, which is the server's
working directory, so ``module:app`` imports from there as it would for a
user. Servers bind ``127.0.0.1:0`` and the port is read from the
"serving on HOST:PORT" line on stderr.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import websockets.sync.client

import tricorn
from tests.conftest import _selected
from tests.e2e._server_process import (
    MODULE_COMMAND,
    SCRIPT_COMMAND,
    ServerProcess,
    clean_environ,
    run_cli,
    server_processes,
    write_module,
)
from tricorn.config import option_specs

DEMO = "tricorn.demo:app"
LOCAL = ("-b", "127.0.0.1:0")

Start = Callable[..., ServerProcess]


@pytest.fixture(params=_selected())
def worker_class(request: pytest.FixtureRequest) -> str:
    """Each runtime behaviour is checked under every --worker-class."""
    return str(request.param)


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Start]:
    """Start ``tricorn ARGS`` in ``tmp_path``; whatever is left running is killed."""
    with server_processes() as started:

        def start(
            *args: str, command: tuple[str, ...] = MODULE_COMMAND, env: dict[str, str] | None = None
        ) -> ServerProcess:
            server = ServerProcess(args, cwd=tmp_path, command=command, env=env)
            started.append(server)
            return server

        yield start


def _flag(field: Any) -> str:
    flags: tuple[str, ...] = field.metadata["flags"]
    return flags[0] if flags else "--" + field.name.replace("_", "-")


def _stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


class _Request(threading.Thread):
    """An HTTP request in a thread, so a signal can be sent while it is in flight."""

    def __init__(self, url: str, timeout: float = 15.0) -> None:
        super().__init__(name="in-flight-request", daemon=True)
        self.url = url
        self.timeout = timeout
        self.response: httpx.Response | None = None
        self.error: Exception | None = None

    def run(self) -> None:
        try:
            self.response = httpx.get(self.url, timeout=self.timeout)
        except Exception as exc:
            self.error = exc

    def result(self, timeout: float = 20.0) -> httpx.Response:
        self.join(timeout)
        assert not self.is_alive(), f"request to {self.url} still running after {timeout}s"
        if self.error is not None:
            raise self.error
        assert self.response is not None
        return self.response


SLOW_APP = """
import sys

import anyio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    print("request started", scope["path"], file=sys.stderr, flush=True)
    if scope["path"] == "/forever":
        await anyio.sleep_forever()
    await anyio.sleep(1.0)
    body = b"finished"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

SCOPE_APP = """
import json


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = json.dumps({key: scope[key] for key in ("path", "root_path")}).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-type", b"application/json")]})
    await send({"type": "http.response.body", "body": body})
"""

FACTORY_APP = """
def create_app():
    async def app(scope, receive, send):
        if scope["type"] != "http":
            return
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"made by the factory"})

    return app
"""

ASGI2_APPS = """
async def _answer(send, text):
    body = text.encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


class ClassApp:
    def __init__(self, scope):
        self.scope = scope

    async def __call__(self, receive, send):
        if self.scope["type"] == "http":
            await _answer(send, "asgi2 class " + self.scope["path"])


def function_app(scope):
    async def asgi(receive, send):
        if scope["type"] == "http":
            await _answer(send, "asgi2 function " + scope["path"])

    return asgi
"""

STARLETTE_APP = """
import contextlib
import sys

import anyio
from starlette.applications import Starlette
from starlette.routing import Route


async def forever(request):
    print("request started", request.url.path, file=sys.stderr, flush=True)
    await anyio.sleep_forever()


@contextlib.asynccontextmanager
async def lifespan(app):
    yield


app = Starlette(routes=[Route("/forever", forever)], lifespan=lifespan)
"""

FAILING_STARTUP_APP = """
async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        message = await receive()
        assert message["type"] == "lifespan.startup"
        await send({"type": "lifespan.startup.failed", "message": "db down"})
        return
    await send({"type": "http.response.start", "status": 500, "headers": []})
    await send({"type": "http.response.body", "body": b"should never be served"})
"""


# -- serving -----------------------------------------------------------------


def _check_demo(base: str) -> None:
    with httpx.Client(base_url=base, timeout=10) as client:
        page = client.get("/")
        assert page.status_code == 200
        assert page.headers["content-type"].startswith("text/html")
        assert "tricorn" in page.text

        with client.stream("GET", "/stream") as response:
            assert response.status_code == 200
            lines = [line for line in response.iter_lines() if line]
        assert lines == [f"piece {n} of 10" for n in range(1, 11)]

        body = b"echo me \x00\xff" * 1000
        echoed = client.post("/echo", content=body)
        assert echoed.status_code == 200
        assert echoed.content == body

        page = client.get("/ws")
        assert page.status_code == 200
        assert "new WebSocket(url)" in page.text
        assert 'data-http-version="1.1"' in page.text  # what the page's self-check reports
    with websockets.sync.client.connect(
        base.replace("http", "ws", 1).rstrip("/") + "/ws", open_timeout=10
    ) as ws:
        assert ws.recv(timeout=10) == "connected to tricorn over HTTP/1.1"
        ws.send("héllo")
        assert ws.recv(timeout=10) == "héllo"
        ws.send(b"\x00\x01")
        assert ws.recv(timeout=10) == b"\x00\x01"


def test_serves_the_demo_app(start: Start, worker_class: str) -> None:
    server = start(DEMO, *LOCAL, "--worker-class", worker_class)
    _check_demo(server.url())


def test_console_script_serves_the_demo_app(start: Start) -> None:
    server = start(DEMO, *LOCAL, command=SCRIPT_COMMAND)
    _check_demo(server.url())
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0


def test_repeated_bind_serves_on_every_address(start: Start, worker_class: str) -> None:
    server = start(DEMO, "-b", "127.0.0.1:0", "-b", "127.0.0.1:0", "-k", worker_class)
    first, second = server.addresses(2)
    assert first != second
    for address in (first, second):
        response = httpx.get(f"http://{address}/", timeout=10)
        assert response.status_code == 200
        assert "tricorn" in response.text


@pytest.fixture
def short_dir() -> Iterator[Path]:
    # A unix socket path must fit in sun_path (~107 bytes); tmp_path may not.
    directory = Path(tempfile.mkdtemp(prefix="tc-"))
    yield directory
    shutil.rmtree(directory, ignore_errors=True)


def test_unix_socket_bind_serves_over_the_socket(
    start: Start, worker_class: str, short_dir: Path
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed; it is the client for the unix socket")
    path = short_dir / "tricorn.sock"
    server = start(DEMO, "--bind", f"unix:{path}", "-k", worker_class)
    assert server.addresses() == [f"unix:{path}"]
    result = subprocess.run(
        [curl, "-sS", "--max-time", "10", "--unix-socket", str(path), "http://localhost/"],
        capture_output=True,
        text=True,
        timeout=20,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "tricorn is serving this page" in result.stdout
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    assert not path.exists(), "the socket file is removed on shutdown"


def _ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as sock:
            sock.bind(("::1", 0))
    except OSError:
        return False
    return True


def test_startup_message_names_a_url_per_bind_the_worker_class_and_how_to_quit(
    start: Start, worker_class: str, short_dir: Path
) -> None:
    path = short_dir / "t.sock"
    binds = ["-b", "127.0.0.1:0", "-b", f"unix:{path}"]
    expected = [r"http://127\.0\.0\.1:\d+", f"unix:{path}"]
    if _ipv6_loopback():
        binds += ["-b", "[::1]:0"]
        expected.append(r"http://\[::1\]:\d+")
    server = start(DEMO, *binds, "-k", worker_class)
    summary = server.wait_for_line(r"ready: .*")
    assert f"worker class {worker_class}" in summary.group(0)
    assert summary.group(0).endswith("Press Ctrl+C to quit")
    serving = [line for line in server.stderr.splitlines() if "serving on" in line]
    assert len(serving) == len(expected), server.stderr
    for line, url in zip(serving, expected, strict=True):
        assert re.search(rf"INFO tricorn.error: serving on {url}$", line), line
    # The URL is the one to click: it answers.
    url = re.search(r"serving on (http://\S+)", serving[0])
    assert url is not None
    assert httpx.get(url.group(1), timeout=10).status_code == 200


def test_root_path_is_visible_in_the_demo_scope(start: Start, worker_class: str) -> None:
    # Behind a proxy that strips /api, GET /api/scope reaches the server as
    # GET /scope; the scope's path carries root_path in front (as in Uvicorn),
    # so an app routes on path[len(root_path):].
    server = start(DEMO, *LOCAL, "--root-path", "/api", "-k", worker_class)
    response = httpx.get(server.url("/scope"), timeout=10)
    assert response.status_code == 200, response.text
    scope = response.json()
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/scope"


def test_factory_is_called_for_the_app(start: Start, tmp_path: Path, worker_class: str) -> None:
    write_module(tmp_path, "factorymod", FACTORY_APP)
    server = start("factorymod:create_app", "--factory", *LOCAL, "-k", worker_class)
    response = httpx.get(server.url(), timeout=10)
    assert response.status_code == 200
    assert response.text == "made by the factory"


@pytest.mark.parametrize(
    ("target", "options", "expected"),
    [
        pytest.param("asgi2mod:ClassApp", (), "asgi2 class /x", id="class-auto"),
        pytest.param(
            "asgi2mod:ClassApp", ("--interface", "asgi2"), "asgi2 class /x", id="class-explicit"
        ),
        pytest.param("asgi2mod:function_app", (), "asgi2 function /x", id="function-auto"),
        pytest.param(
            "asgi2mod:function_app",
            ("--interface", "asgi2"),
            "asgi2 function /x",
            id="function-explicit",
        ),
    ],
)
def test_asgi2_app_is_served(
    start: Start,
    tmp_path: Path,
    worker_class: str,
    target: str,
    options: tuple[str, ...],
    expected: str,
) -> None:
    write_module(tmp_path, "asgi2mod", ASGI2_APPS)
    server = start(target, *options, *LOCAL, "-k", worker_class)
    response = httpx.get(server.url("/x"), timeout=10)
    assert response.status_code == 200
    assert response.text == expected


def test_config_file_and_environment_set_options(start: Start, tmp_path: Path) -> None:
    write_module(tmp_path, "scopemod", SCOPE_APP)
    (tmp_path / "tricorn.toml").write_text('root_path = "/from-file"\nbind = ["127.0.0.1:0"]\n')

    from_file = start("scopemod:app", "--config", "tricorn.toml")
    response = httpx.get(from_file.url("/x"), timeout=10)
    assert response.status_code == 200, from_file.stderr
    assert response.json() == {
        "path": "/from-file/x",
        "root_path": "/from-file",
    }

    # Precedence: command line > environment > config file.
    env = clean_environ(TRICORN_ROOT_PATH="/from-env")
    from_env = start("scopemod:app", "--config", "tricorn.toml", env=env)
    assert httpx.get(from_env.url("/x"), timeout=10).json()["root_path"] == "/from-env"

    from_argv = start("scopemod:app", "--config", "tricorn.toml", "--root-path", "/argv", env=env)
    assert httpx.get(from_argv.url("/x"), timeout=10).json()["root_path"] == "/argv"


# -- help, version, bad usage ------------------------------------------------


def test_help_documents_every_option(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    help_text = result.stdout
    missing = [_flag(field) for field in option_specs() if _flag(field) not in help_text]
    assert missing == [], f"options missing from --help: {missing}"
    for extra in ("--config", "--version", "APP"):
        assert extra in help_text


def test_console_script_help_exits_0(tmp_path: Path) -> None:
    result = run_cli(["--help"], cwd=tmp_path, command=SCRIPT_COMMAND)
    assert result.returncode == 0, result.stderr
    assert "--worker-class" in result.stdout


def test_version_prints_the_version(tmp_path: Path) -> None:
    result = run_cli(["--version"], cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == f"tricorn {tricorn.__version__}"


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        pytest.param(
            ("--worker-class", "nope"),
            ("--worker-class", "nope", "asyncio", "uvloop", "trio"),
            id="worker-class",
        ),
        pytest.param(
            ("--lifespan", "maybe"), ("--lifespan", "maybe", "auto", "on", "off"), id="lifespan"
        ),
        pytest.param(("--keep-alive-timeout", "-1"), ("--keep-alive-timeout",), id="negative"),
        pytest.param(("--bind", "nonsense"), ("--bind", "nonsense"), id="bind"),
    ],
)
def test_bad_option_value_exits_2_naming_the_option(
    tmp_path: Path, args: tuple[str, ...], expected: tuple[str, ...]
) -> None:
    result = run_cli([DEMO, *args], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    for text in expected:
        assert text in result.stderr
    assert "Traceback" not in result.stderr


def test_unknown_config_file_key_exits_2_naming_the_key(tmp_path: Path) -> None:
    (tmp_path / "f.toml").write_text("bogus = 1\n")
    result = run_cli(["--config", "f.toml", DEMO], cwd=tmp_path)
    assert result.returncode == 2, result.stderr
    assert "bogus" in result.stderr
    assert "Traceback" not in result.stderr


def test_bad_environment_value_exits_2_naming_the_option(tmp_path: Path) -> None:
    env = clean_environ(TRICORN_KEEP_ALIVE_TIMEOUT="abc")
    result = run_cli([DEMO], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "--keep-alive-timeout" in result.stderr or "TRICORN_KEEP_ALIVE_TIMEOUT" in result.stderr
    assert "abc" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("target", "missing"),
    [
        pytest.param("nosuchmodule:app", "nosuchmodule", id="module"),
        pytest.param("tricorn.demo:nosuch", "nosuch", id="attribute"),
        pytest.param("justamodule", "justamodule", id="no-attribute"),
    ],
)
def test_unloadable_app_exits_with_a_one_line_error(
    tmp_path: Path, target: str, missing: str
) -> None:
    result = run_cli([target, *LOCAL], cwd=tmp_path)
    assert result.returncode != 0
    assert "Traceback" not in result.stderr
    lines = _stderr_lines(result)
    assert len(lines) == 1, result.stderr
    assert missing in lines[0]


# -- lifespan, signals, shutdown ----------------------------------------------


def test_lifespan_startup_failure_exits_3_with_the_message(
    tmp_path: Path, worker_class: str
) -> None:
    write_module(tmp_path, "failing", FAILING_STARTUP_APP)
    result = run_cli(["failing:app", *LOCAL, "-k", worker_class], cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    assert "db down" in result.stderr
    assert "serving on" not in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signal_shuts_down_gracefully_after_in_flight_request(
    start: Start, tmp_path: Path, worker_class: str, signum: signal.Signals
) -> None:
    write_module(tmp_path, "slow", SLOW_APP)
    server = start("slow:app", *LOCAL, "-k", worker_class)
    request = _Request(server.url("/slow"))
    request.start()
    server.wait_for_line(r"request started /slow")
    server.send_signal(signum)
    response = request.result()
    assert response.status_code == 200
    assert response.text == "finished"
    assert server.wait(15) == 0, server.stderr
    assert "Traceback" not in server.stderr


def test_graceful_timeout_bounds_shutdown(start: Start, tmp_path: Path, worker_class: str) -> None:
    write_module(tmp_path, "slow", SLOW_APP)
    server = start("slow:app", *LOCAL, "-k", worker_class, "--graceful-timeout", "1")
    request = _Request(server.url("/forever"))
    request.start()
    server.wait_for_line(r"request started /forever")
    began = time.monotonic()
    server.send_signal(signal.SIGTERM)
    status = server.wait(15)
    elapsed = time.monotonic() - began
    assert status == 0, server.stderr
    assert 0.8 <= elapsed < 8, f"shutdown took {elapsed:.2f}s with --graceful-timeout 1"
    # The client is not left hanging: it gets an answer or a closed connection.
    request.join(15)
    assert not request.is_alive()
    assert "Traceback" not in server.stderr


def _force_quit(server: ServerProcess) -> float:
    """Ctrl+C twice while a request never finishes; how long the second one took."""
    request = _Request(server.url("/forever"), timeout=60)
    request.start()
    server.wait_for_line(r"request started /forever")
    server.send_signal(signal.SIGINT)
    server.wait_for_line(r"received SIGINT, shutting down")
    began = time.monotonic()
    server.send_signal(signal.SIGINT)
    assert server.wait(10) == 0, server.stderr
    request.join(10)
    assert not request.is_alive(), "the client is left hanging after a forced stop"
    return time.monotonic() - began


def test_second_sigint_stops_at_once(start: Start, tmp_path: Path, worker_class: str) -> None:
    # The graceful timeout (30 s) is far above the bound the stop must meet.
    write_module(tmp_path, "slow", SLOW_APP)
    server = start("slow:app", *LOCAL, "-k", worker_class, "--graceful-timeout", "30")
    _force_quit(server)
    assert "stopping now" in server.stderr
    assert "Traceback" not in server.stderr


def test_forced_stop_logs_no_lifespan_error(
    start: Start, tmp_path: Path, worker_class: str
) -> None:
    # Starlette answers the cancellation of its lifespan task with
    # lifespan.shutdown.failed; a forced stop is not the app's failure.
    write_module(tmp_path, "starapp", STARLETTE_APP)
    server = start("starapp:app", *LOCAL, "-k", worker_class, "--graceful-timeout", "30")
    _force_quit(server)
    assert "ERROR" not in server.stderr, server.stderr
    assert "Traceback" not in server.stderr
    assert "lifespan shutdown skipped" in server.stderr


def test_address_in_use_exits_1_naming_the_address(tmp_path: Path, worker_class: str) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = run_cli([DEMO, "-b", f"127.0.0.1:{port}", "-k", worker_class], cwd=tmp_path)
    assert result.returncode == 1, result.stderr
    assert "Traceback" not in result.stderr
    lines = [line for line in _stderr_lines(result) if f"127.0.0.1:{port}" in line]
    assert len(lines) == 1, result.stderr
    assert "serving on" not in result.stderr


def test_demo_scope_is_json(start: Start) -> None:
    server = start(DEMO, *LOCAL)
    scope = httpx.get(server.url("/scope?a=1"), timeout=10).json()
    assert scope["type"] == "http"
    assert scope["root_path"] == ""
    assert scope["path"] == "/scope"
    assert scope["query_string"] == "a=1"


def test_app_dir_imports_the_app_from_another_directory(start: Start, tmp_path: Path) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    write_module(elsewhere, "factorymod", FACTORY_APP)
    # Run from tmp_path, where factorymod is not importable without --app-dir.
    server = start("factorymod:create_app", "--factory", "--app-dir", str(elsewhere), *LOCAL)
    assert httpx.get(server.url(), timeout=10).text == "made by the factory"


ASYNCIO_ONLY_APPS = """
import asyncio
import contextlib

from starlette.applications import Starlette


async def in_requests(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    await asyncio.sleep(0.01)  # asyncio.get_running_loop() underneath
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"unreachable on trio"})


async def in_lifespan(scope, receive, send):
    await receive()
    asyncio.get_running_loop()


async def in_websocket(scope, receive, send):
    if scope["type"] == "lifespan":
        return await in_requests(scope, receive, send)
    await receive()  # websocket.connect
    await asyncio.sleep(0.01)
    await send({"type": "websocket.accept"})


@contextlib.asynccontextmanager
async def lifespan(app):
    await asyncio.sleep(0.01)
    yield


starlette_app = Starlette(lifespan=lifespan)
"""


def _assert_one_clear_line(stderr: str) -> None:
    lines = [line for line in stderr.splitlines() if "--worker-class asyncio" in line]
    assert len(lines) == 1, stderr
    assert "the app needs asyncio" in lines[0]
    assert "Traceback" not in stderr
    assert "RuntimeError" not in stderr


def test_asyncio_only_request_on_trio_is_a_500_and_one_clear_line(
    start: Start, tmp_path: Path
) -> None:
    write_module(tmp_path, "asyncio_only", ASYNCIO_ONLY_APPS)
    server = start("asyncio_only:in_requests", *LOCAL, "-k", "trio", "--no-access-log")
    response = httpx.get(server.url("/x"), timeout=10)
    assert response.status_code == 500
    server.wait_for_line(r"the app needs asyncio")
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr
    _assert_one_clear_line(server.stderr)


def test_asyncio_only_websocket_on_trio_is_a_500_and_one_clear_line(
    start: Start, tmp_path: Path
) -> None:
    write_module(tmp_path, "asyncio_only", ASYNCIO_ONLY_APPS)
    server = start("asyncio_only:in_websocket", *LOCAL, "-k", "trio", "--no-access-log")
    handshake = {
        "connection": "upgrade",
        "upgrade": "websocket",
        "sec-websocket-key": "dGhlIHNhbXBsZSBub25jZQ==",
        "sec-websocket-version": "13",
    }
    response = httpx.get(server.url("/ws"), headers=handshake, timeout=10)
    assert response.status_code == 500
    server.wait_for_line(r"the app needs asyncio")
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr
    _assert_one_clear_line(server.stderr)
    assert "WebSocket /ws" in server.stderr


@pytest.mark.parametrize("target", ["in_lifespan", "starlette_app"])
def test_asyncio_only_lifespan_on_trio_exits_3_with_one_clear_line(
    tmp_path: Path, target: str
) -> None:
    write_module(tmp_path, "asyncio_only", ASYNCIO_ONLY_APPS)
    result = run_cli([f"asyncio_only:{target}", *LOCAL, "-k", "trio"], cwd=tmp_path)
    assert result.returncode == 3, result.stderr
    _assert_one_clear_line(result.stderr)
    assert "serving on" not in result.stderr


FREEZE_APP = """
import gc

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(gc.get_freeze_count()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


@pytest.mark.parametrize(("options", "frozen"), [((), True), (("--no-gc-freeze",), False)])
def test_a_serving_worker_freezes_what_startup_made_unless_told_not_to(
    start: Start, tmp_path: Path, worker_class: str, options: tuple[str, ...], frozen: bool
) -> None:
    # The app module, its imports and the server's own objects are alive by
    # then: a frozen heap holds thousands; an unfrozen one none at all.
    write_module(tmp_path, "freezemod", FREEZE_APP)
    server = start("freezemod:app", *LOCAL, "-k", worker_class, *options)
    response = httpx.get(server.url(), timeout=10)
    assert response.status_code == 200
    count = int(response.text)
    assert (count > 1000) if frozen else (count == 0), count
