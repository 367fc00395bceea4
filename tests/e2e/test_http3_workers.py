"""--workers with --quic-bind: each worker binds the QUIC port itself (SO_REUSEPORT)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import anyio
import pytest
import trustme

from tests.e2e._server_process import clean_environ

try:
    import aioquic  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

from tests.runtime._quic_client import h3_client

APP = """
import os
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = str(os.getpid()).encode()
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": body})
"""


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def _pid_over_http3(address: str, ca_file: str) -> str | None:
    try:
        async with h3_client(address, ca_file) as client:
            return bytes((await client.get("/")).body).decode()
    except (TimeoutError, AssertionError, ExceptionGroup):
        return None  # not serving yet (or refused): try again


def test_each_worker_serves_http3_on_the_shared_port(tmp_path: Path) -> None:
    (tmp_path / "svc.py").write_text(APP)
    ca = trustme.CA()
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    ca.issue_cert("localhost").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    port = _free_udp_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tricorn",
            "svc:app",
            "--bind",
            "127.0.0.1:0",
            "--quic-bind",
            f"127.0.0.1:{port}",
            "--certfile",
            str(tmp_path / "server.pem"),
            "--workers",
            "2",
            "--no-access-log",
        ],
        cwd=tmp_path,
        env=clean_environ(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        pids: set[str] = set()
        deadline = time.monotonic() + 30
        while len(pids) < 2 and time.monotonic() < deadline:
            # A new UDP socket (source port) each time: the kernel spreads
            # the clients over the workers' sockets.
            pid = anyio.run(_pid_over_http3, f"127.0.0.1:{port}", str(tmp_path / "ca.pem"))
            if pid is not None:
                pids.add(pid)
        assert len(pids) == 2, pids
        assert str(process.pid) not in pids
        process.send_signal(signal.SIGTERM)
        assert process.wait(20) == 0
        assert process.stderr is not None
        stderr = process.stderr.read()
        # The supervisor announces the QUIC port beside the TCP one.
        assert f"serving on https://127.0.0.1:{port} (HTTP/3, QUIC)" in stderr, stderr
    finally:
        if process.poll() is None:
            process.kill()
            process.wait(10)
        assert process.stderr is not None
        process.stderr.close()
