"""--workers and --reload: the supervisor in a real subprocess."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._server_process import ServerProcess, clean_environ, server_processes, write_module

APP = """
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = f"{os.getpid()} VERSION".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 10.0) -> str:
    """GET with retries until the server answers or the time runs out."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return httpx.get(url, timeout=2.0).text
        except httpx.TransportError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.1)


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    (tmp_path / "svc.py").write_text(APP.replace("VERSION", "one"))
    return tmp_path


def _start(
    app_dir: Path, *args: str, new_session: bool = False
) -> tuple[subprocess.Popen[str], str]:
    port = _free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tricorn",
            "svc:app",
            "-b",
            f"127.0.0.1:{port}",
            "--no-access-log",
            *args,
        ],
        cwd=app_dir,
        env=clean_environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=new_session,
    )
    return process, f"http://127.0.0.1:{port}/"


@pytest.fixture
def stop() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    yield started
    for process in started:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        if process.stderr:
            process.stderr.close()


def test_workers_serve_from_separate_processes_and_stop_on_sigterm(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    process, url = _start(app_dir, "--workers", "2")
    stop.append(process)
    pids: set[str] = set()
    deadline = time.monotonic() + 20
    while len(pids) < 2 and time.monotonic() < deadline:
        # New connections each time; the kernel spreads them over the workers.
        pids.add(_get(url).split()[0])
    assert len(pids) == 2
    assert str(process.pid) not in pids
    process.send_signal(signal.SIGTERM)
    assert process.wait(20) == 0
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(int(pid), 0)


def test_a_worker_that_dies_is_replaced(app_dir: Path, stop: list[subprocess.Popen[str]]) -> None:
    process, url = _start(app_dir, "--workers", "2")
    stop.append(process)
    victim = _get(url).split()[0]
    os.kill(int(victim), signal.SIGKILL)
    seen: set[str] = set()
    deadline = time.monotonic() + 20
    while len(seen - {victim}) < 2 and time.monotonic() < deadline:
        try:
            seen.add(_get(url, timeout=2).split()[0])
        except httpx.TransportError:
            continue
    # Two live workers answer again, neither of them the one that died.
    assert len(seen - {victim}) == 2
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


def test_reload_restarts_the_worker_when_a_source_file_changes(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    process, url = _start(app_dir, "--reload")
    stop.append(process)
    assert _get(url).endswith("one")
    time.sleep(1.1)  # coarse mtime resolution on some filesystems
    (app_dir / "svc.py").write_text(APP.replace("VERSION", "two"))
    deadline = time.monotonic() + 20
    body = ""
    while not body.endswith("two") and time.monotonic() < deadline:
        try:
            body = _get(url, timeout=2)
        except httpx.TransportError:
            continue
        time.sleep(0.2)
    assert body.endswith("two")
    process.send_signal(signal.SIGINT)
    assert process.wait(20) == 0


def test_workers_fail_fast_when_the_app_cannot_start(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    (app_dir / "svc.py").write_text(
        "async def app(scope, receive, send):\n"
        "    await receive()\n"
        "    await send({'type': 'lifespan.startup.failed', 'message': 'no database'})\n"
    )
    process, _ = _start(app_dir, "--workers", "2")
    stop.append(process)
    assert process.wait(30) == 3
    assert process.stderr is not None
    assert "no database" in process.stderr.read()


def test_ctrl_c_to_the_process_group_lets_workers_finish_in_flight_requests(
    app_dir: Path, stop: list[subprocess.Popen[str]]
) -> None:
    (app_dir / "svc.py").write_text(
        "import anyio\n"
        "async def app(scope, receive, send):\n"
        "    if scope['type'] != 'http':\n"
        "        return\n"
        "    await anyio.sleep(1.5)\n"
        "    await send({'type': 'http.response.start', 'status': 200, 'headers': []})\n"
        "    await send({'type': 'http.response.body', 'body': b'finished'})\n"
    )
    # A terminal's Ctrl+C signals the whole process group: start the server
    # in a group of its own and signal that group, as a terminal would.
    process, url = _start(app_dir, "--workers", "2", new_session=True)
    stop.append(process)
    _get(url)  # up, and one slow request done
    result: list[str] = []
    thread = threading.Thread(target=lambda: result.append(httpx.get(url, timeout=10).text))
    thread.start()
    time.sleep(0.5)  # the request is in flight
    os.killpg(process.pid, signal.SIGINT)
    thread.join(15)
    assert result == ["finished"]
    assert process.wait(20) == 0


WSGI_APP = """
def app(environ, start_response):
    body = repr(environ["wsgi.multiprocess"]).encode()
    start_response("200 OK", [("Content-Length", str(len(body)))])
    return [body]
"""


@pytest.mark.parametrize(("workers", "expected"), [("1", "False"), ("2", "True")])
def test_wsgi_multiprocess_says_whether_other_workers_serve_the_app(
    tmp_path: Path, workers: str, expected: str
) -> None:
    write_module(tmp_path, "wsgiapp", WSGI_APP)
    with server_processes() as started:
        server = ServerProcess(
            ["wsgiapp:app", "-b", "127.0.0.1:0", "--workers", workers], cwd=tmp_path
        )
        started.append(server)
        assert httpx.get(server.url(), timeout=10).text == expected


DYING_APP = """
import os
import sys

import anyio


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/forever":
        print("request started /forever", file=sys.stderr, flush=True)
        await anyio.sleep_forever()
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
    if scope["path"] == "/die":
        os._exit(1)
"""

_REPLACED = r"worker (\d+) exited with status 1; started worker (\d+) to replace it"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    write_module(tmp_path, "dying", DYING_APP)
    with server_processes() as started:

        def start(*args: str) -> ServerProcess:
            server = ServerProcess(
                ["dying:app", "-b", "127.0.0.1:0", "--no-access-log", *args], cwd=tmp_path
            )
            started.append(server)
            return server

        yield start


def _die(url: str) -> None:
    """Ask a worker to exit right after it answered."""
    # The answer may be lost with the process; the log tells what happened.
    with contextlib.suppress(httpx.TransportError):
        httpx.get(url + "die", timeout=10)


def test_a_worker_that_dies_after_serving_is_replaced_even_right_after_its_start(
    start: Callable[..., ServerProcess],
) -> None:
    # The worker dies well within the first seconds of its life: it had
    # served, so it is a crash to recover from, not a failed startup.
    server = start("--workers", "2")
    url = server.url()
    _die(url)
    match = server.wait_for_line(_REPLACED)
    victim, replacement = match.group(1), match.group(2)
    server.wait_for_line(rf"worker {replacement} is ready, replacing worker {victim}")
    answered = {httpx.get(url, timeout=10).text for _ in range(10)}
    assert victim not in answered
    assert server.process.poll() is None, server.stderr
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


def test_a_crash_loop_stops_the_server_with_a_reason(
    start: Callable[..., ServerProcess],
) -> None:
    server = start("--workers", "2")
    url = server.url()
    # max(5, workers) replacements are allowed within the window; the
    # sixth death stops the server.
    for deaths in range(1, 6):
        _die(url)
        (*_, match) = server.wait_for_lines(_REPLACED, deaths)
        server.wait_for_line(rf"worker {match.group(2)} is ready")
    _die(url)
    server.wait_for_line(r"crash loop: stopping the server")
    assert server.wait() == 1, server.stderr


def test_a_worker_failing_startup_stops_the_server_promptly_saying_why(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    write_module(
        tmp_path,
        "dying",
        """
        async def app(scope, receive, send):
            await receive()
            await send({"type": "lifespan.startup.failed", "message": "no database"})
        """,
    )
    server = start("--workers", "2")
    assert server.wait(20) == 3, server.stderr
    assert "no database" in server.stderr
    assert "before it was ready (its startup failed); stopping the server" in server.stderr
    assert "serving on" not in server.stderr


def test_second_ctrl_c_stops_the_workers_at_once(start: Callable[..., ServerProcess]) -> None:
    server = start("--workers", "2", "--graceful-timeout", "30")
    url = server.url()
    request = threading.Thread(target=_get_once, args=(url + "forever",), daemon=True)
    request.start()
    server.wait_for_line(r"request started /forever")
    server.send_signal_to_group(signal.SIGINT)
    server.wait_for_lines(r"asked by the supervisor, shutting down", 2)
    server.send_signal_to_group(signal.SIGINT)
    assert server.wait(10) == 0, server.stderr
    assert "stopping workers now" in server.stderr


def _get_once(url: str) -> None:
    with contextlib.suppress(httpx.TransportError):
        httpx.get(url, timeout=40)


def test_workers_shut_down_when_the_supervisor_is_killed(
    start: Callable[..., ServerProcess],
) -> None:
    server = start("--workers", "2")
    pids = server.wait_for_line(r"worker processes \(pid (\d+), (\d+)\)").groups()
    server.process.kill()
    server.process.wait(10)
    # The workers' stderr is the same pipe: it closes when the last one exits.
    server.wait_for_lines(r"the supervisor is gone, shutting down", 2)
    server.wait_for_eof(10)
    assert [pid for pid in pids if _running(int(pid))] == []


def _running(pid: int) -> bool:
    """Whether ``pid`` runs; an exited orphan may stay a zombie until its new parent reaps it."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, perhaps while being read
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def test_workers_announce_each_bind_once(start: Callable[..., ServerProcess]) -> None:
    server = start("--workers", "2", "-b", "127.0.0.1:0")
    summary = server.wait_for_line(r"ready: 2 worker processes .*")
    assert summary.group(0).endswith("Press Ctrl+C to quit")
    serving = [line for line in server.stderr.splitlines() if "serving on" in line]
    assert len(serving) == 2, server.stderr  # two binds, one line each
    assert all("serving on http://127.0.0.1:" in line for line in serving)
