"""systemd integration in a real subprocess: socket activation, sd_notify, --pid-file.

No systemd is needed: the test plays its part. It binds the listening socket
and hands it over as fd 3 with LISTEN_FDS/LISTEN_PID, as a ``.socket`` unit
does, and binds the NOTIFY_SOCKET datagram socket that systemd would read.
"""

from __future__ import annotations

import os
import shlex
import signal
import socket
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._server_process import (
    ServerProcess,
    clean_environ,
    run_cli,
    server_processes,
    write_module,
)

APP = """
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    seen = ",".join(
        f"{name}={os.environ[name]}" for name in
        ("LISTEN_FDS", "LISTEN_PID", "NOTIFY_SOCKET", "WATCHDOG_USEC") if name in os.environ
    )
    body = f"pid={os.getpid()} env=[{seen}]".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

#: What systemd does between fork and exec: the passed socket becomes fd 3,
#: and LISTEN_PID names the process that will serve it (known only here,
#: after the fork, and unchanged by exec).
LAUNCHER = """
import fcntl, os, sys
fds = [int(fd) for fd in sys.argv[1].split(",")]
# Out of the way first, so that moving one to 3, 4, ... never overwrites another.
high = [fcntl.fcntl(fd, fcntl.F_DUPFD, 100) for fd in fds]
for fd in fds:
    os.close(fd)
for index, fd in enumerate(high):
    os.dup2(fd, 3 + index)
    os.close(fd)
os.environ["LISTEN_PID"] = str(os.getpid())
os.execv(sys.executable, [sys.executable, "-m", "tricorn", *sys.argv[2:]])
"""

#: Bound on every datagram wait.
RECEIVE_TIMEOUT = 20.0


@pytest.fixture
def app_dir(tmp_path: Path) -> Path:
    write_module(tmp_path, "svc", APP)
    return tmp_path


@pytest.fixture
def listener() -> Iterator[socket.socket]:
    with _listener() as sock:
        yield sock


def _listener() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    sock.listen(16)
    return sock


class NotifySocket:
    """The datagram socket systemd reads sd_notify messages from."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind("\0" + address[1:] if address.startswith("@") else address)
        self.sock.settimeout(RECEIVE_TIMEOUT)

    def receive_until(self, field: str) -> list[dict[str, str]]:
        """Every message up to and including the first that carries ``field`` (e.g. READY=1)."""
        messages: list[dict[str, str]] = []
        while True:
            try:
                data = self.sock.recv(4096)
            except TimeoutError:
                raise AssertionError(f"no {field} within {RECEIVE_TIMEOUT}s: {messages}") from None
            lines = data.decode().splitlines()
            message = dict(line.split("=", 1) for line in lines if line)
            messages.append(message)
            if field in lines:
                return messages


@pytest.fixture
def notify_socket() -> Iterator[NotifySocket]:
    # The abstract namespace: no path, so no length limit and nothing to clean up.
    notify = NotifySocket(f"@tricorn-test-{uuid.uuid4().hex}")
    yield notify
    notify.sock.close()


def _activated(app_dir: Path, listener: socket.socket, *args: str, **environ: str) -> ServerProcess:
    fd = listener.fileno()
    return ServerProcess(
        ["svc:app", *args],
        cwd=app_dir,
        command=(sys.executable, "-c", LAUNCHER, str(fd)),
        env=clean_environ(LISTEN_FDS="1", LISTEN_FDNAMES="web", **environ),
        pass_fds=(fd,),
    )


@pytest.mark.parametrize("worker_class", ["asyncio", "trio"])
def test_socket_activation_serves_the_passed_socket_and_unsets_listen_vars(
    app_dir: Path, listener: socket.socket, worker_class: str
) -> None:
    port = listener.getsockname()[1]
    with server_processes() as started:
        server = _activated(app_dir, listener, "--worker-class", worker_class)
        started.append(server)
        assert server.addresses() == [f"127.0.0.1:{port}"]
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert response.text == f"pid={server.process.pid} env=[]"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_socket_activation_is_shared_by_every_worker(
    app_dir: Path, listener: socket.socket
) -> None:
    port = listener.getsockname()[1]
    with server_processes() as started:
        server = _activated(app_dir, listener, "--workers", "2")
        started.append(server)
        assert server.addresses() == [f"127.0.0.1:{port}"]
        server.wait_for_line(r"ready: 2 worker processes")
        response = httpx.get(f"http://127.0.0.1:{port}/", timeout=10)
        assert response.text.endswith(" env=[]")
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_socket_activation_for_another_process_is_ignored(
    app_dir: Path, listener: socket.socket
) -> None:
    """LISTEN_PID names someone else: the sockets are not ours, --bind is served."""
    with server_processes() as started:
        server = ServerProcess(
            ["svc:app", "--bind", "127.0.0.1:0"],
            cwd=app_dir,
            env=clean_environ(LISTEN_FDS="1", LISTEN_PID="1"),
        )
        started.append(server)
        [address] = server.addresses()
        assert address != f"127.0.0.1:{listener.getsockname()[1]}"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_notify_ready_once_serving_and_stopping_on_sigterm(
    app_dir: Path, notify_socket: NotifySocket, workers: str
) -> None:
    with server_processes() as started:
        server = ServerProcess(
            ["svc:app", "--bind", "127.0.0.1:0", "--workers", workers],
            cwd=app_dir,
            env=clean_environ(NOTIFY_SOCKET=notify_socket.address),
        )
        started.append(server)
        [*_, ready] = notify_socket.receive_until("READY=1")
        assert ready["MAINPID"] == str(server.process.pid)
        assert ready["STATUS"].startswith("serving on 127.0.0.1:")
        # READY=1 means serving: the first request, with no retry, is answered.
        response = httpx.get(f"http://{ready['STATUS'].split()[2]}/", timeout=10)
        assert response.status_code == 200
        # Neither the app nor a worker sees the notify socket: only the main process reports.
        assert response.text.endswith(" env=[]")
        server.send_signal(signal.SIGTERM)
        [*_, stopping] = notify_socket.receive_until("STOPPING=1")
        assert "SIGTERM" in stopping["STATUS"]
        assert server.wait() == 0


@pytest.mark.parametrize("workers", ["1", "2"])
def test_watchdog_is_pinged_at_half_the_timeout(
    app_dir: Path, tmp_path: Path, workers: str
) -> None:
    # A socket file this time (sun_path has room for about 100 bytes).
    path = os.path.join(os.path.dirname(tmp_path), f"n{uuid.uuid4().hex[:8]}")
    notify = NotifySocket(path)
    try:
        with server_processes() as started:
            server = ServerProcess(
                ["svc:app", "--bind", "127.0.0.1:0", "--workers", workers],
                cwd=app_dir,
                env=clean_environ(NOTIFY_SOCKET=path, WATCHDOG_USEC="200000"),
            )
            started.append(server)
            notify.receive_until("READY=1")
            for _ in range(3):
                notify.receive_until("WATCHDOG=1")
            server.send_signal(signal.SIGTERM)
            assert server.wait() == 0
    finally:
        notify.sock.close()
        os.unlink(path)


@pytest.mark.parametrize("workers", ["1", "2"])
def test_pid_file_holds_the_main_pid_while_serving(
    app_dir: Path, tmp_path: Path, workers: str
) -> None:
    pid_file = tmp_path / "tricorn.pid"
    with server_processes() as started:
        server = ServerProcess(
            ["svc:app", "--bind", "127.0.0.1:0", "--workers", workers, "--pid-file", str(pid_file)],
            cwd=app_dir,
        )
        started.append(server)
        server.wait_for_line(r"ready: ")
        assert pid_file.read_text() == f"{server.process.pid}\n"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert not pid_file.exists()


def test_pid_file_of_a_running_process_refuses_the_start(app_dir: Path, tmp_path: Path) -> None:
    pid_file = tmp_path / "tricorn.pid"
    pid_file.write_text(f"{os.getpid()}\n")  # this test's process: alive
    result = run_cli(["svc:app", "--bind", "127.0.0.1:0", "--pid-file", str(pid_file)], cwd=app_dir)
    assert result.returncode == 2
    assert f"--pid-file: {str(pid_file)!r} names process {os.getpid()}, which is running" in (
        result.stderr
    )
    assert pid_file.read_text() == f"{os.getpid()}\n"


def test_pid_file_of_a_dead_process_is_replaced(app_dir: Path, tmp_path: Path) -> None:
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    pid_file = tmp_path / "tricorn.pid"
    pid_file.write_text(f"{dead}\n")
    with server_processes() as started:
        server = ServerProcess(
            ["svc:app", "--bind", "127.0.0.1:0", "--pid-file", str(pid_file)], cwd=app_dir
        )
        started.append(server)
        server.wait_for_line(r"ready: ")
        assert pid_file.read_text() == f"{server.process.pid}\n"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        assert not pid_file.exists()


# -- the documented units --------------------------------------------------

DEPLOYMENT_DOC = Path(__file__).resolve().parents[2] / "docs" / "deployment.rst"


def _unit(caption: str) -> dict[str, str]:
    """``Key=value`` lines of the ``.. code-block:: ini`` with ``:caption: caption``."""
    lines = DEPLOYMENT_DOC.read_text().splitlines()
    start = lines.index(f"   :caption: {caption}") + 1
    settings: dict[str, str] = {}
    for line in lines[start:]:
        if line and not line.startswith("   "):
            break
        text = line.strip()
        if "=" in text and not text.startswith("#"):
            key, value = text.split("=", 1)
            settings[key] = value
    return settings


def test_documented_exec_start_options_parse() -> None:
    from tricorn._cli import build_parser, config_from_args

    command = shlex.split(_unit("tricorn.service")["ExecStart"])
    assert os.path.basename(command[0]) == "tricorn"
    args = build_parser().parse_args(command[1:])
    config, error = config_from_args(args, {})
    assert config is not None, error


def test_documented_units_start_tricorn_by_socket_activation(
    app_dir: Path, listener: socket.socket, notify_socket: NotifySocket
) -> None:
    """The documented service, started the way systemd starts it (the test's app, port 0)."""
    service = _unit("tricorn.service")
    socket_unit = _unit("tricorn.socket")
    assert service["Type"] == "notify"
    assert int(service["WatchdogSec"]) > 0
    host, _, _ = socket_unit["ListenStream"].rpartition(":")
    assert listener.getsockname()[0] == host
    _, _app, *options = shlex.split(service["ExecStart"])
    with server_processes() as started:
        server = _activated(app_dir, listener, *options, NOTIFY_SOCKET=notify_socket.address)
        started.append(server)
        [*_, ready] = notify_socket.receive_until("READY=1")
        assert ready["MAINPID"] == str(server.process.pid)
        address = f"127.0.0.1:{listener.getsockname()[1]}"
        assert ready["STATUS"].startswith(f"serving on {address}")
        assert httpx.get(f"http://{address}/", timeout=10).status_code == 200
        server.send_signal(signal.Signals[service["KillSignal"]])
        notify_socket.receive_until("STOPPING=1")
        assert server.wait() == 0


def test_systemd_socket_serves_only_the_named_sockets(app_dir: Path) -> None:
    with _listener() as web, _listener() as admin, server_processes() as started:
        fds = (web.fileno(), admin.fileno())
        server = ServerProcess(
            ["svc:app", "--systemd-socket", "admin"],
            cwd=app_dir,
            command=(sys.executable, "-c", LAUNCHER, ",".join(map(str, fds))),
            env=clean_environ(LISTEN_FDS="2", LISTEN_FDNAMES="web:admin"),
            pass_fds=fds,
        )
        started.append(server)
        server.wait_for_line(r"ready: ")
        assert server.addresses() == [f"127.0.0.1:{admin.getsockname()[1]}"]
        assert f"serving on http://127.0.0.1:{web.getsockname()[1]}" not in server.stderr
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0


def test_systemd_socket_with_an_unknown_name_is_a_usage_error(
    app_dir: Path, listener: socket.socket
) -> None:
    fd = listener.fileno()
    result = subprocess.run(
        [sys.executable, "-c", LAUNCHER, str(fd), "svc:app", "--systemd-socket", "admin"],
        cwd=app_dir,
        env=clean_environ(LISTEN_FDS="1", LISTEN_FDNAMES="web"),
        pass_fds=(fd,),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 2
    assert "--systemd-socket: systemd passed no socket named 'admin'; it passed: web" in (
        result.stderr
    )
