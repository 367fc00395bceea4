"""--statsd-host with --workers 2: every worker sends its own, the supervisor the gauge."""

from __future__ import annotations

import signal
import socket
from collections import Counter
from pathlib import Path

import httpx

from tests.e2e._server_process import ServerProcess, server_processes, write_module

APP = """
async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    await send({"type": "http.response.start", "status": 200, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})
"""


def test_workers_send_their_requests_and_the_supervisor_the_worker_gauge(
    tmp_path: Path,
) -> None:
    write_module(tmp_path, "svc", APP)
    with (
        socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as statsd,
        server_processes() as started,
    ):
        statsd.bind(("127.0.0.1", 0))
        host = f"127.0.0.1:{statsd.getsockname()[1]}"
        server = ServerProcess(
            [
                *("svc:app", "-b", "127.0.0.1:0", "--no-access-log", "--workers", "2"),
                *("--statsd-host", host, "--statsd-prefix", "web"),
            ],
            cwd=tmp_path,
        )
        started.append(server)
        url = server.url()
        for _ in range(10):
            # A new connection each time: the kernel spreads them over the workers.
            assert httpx.get(url, headers={"connection": "close"}).text == "ok"
        server.send_signal(signal.SIGTERM)
        assert server.wait() == 0
        # Loopback delivered every datagram as it was sent: all are here now.
        statsd.setblocking(False)
        lines: list[str] = []
        senders: set[object] = set()
        while True:
            try:
                datagram, sender = statsd.recvfrom(65536)
            except BlockingIOError:
                break
            senders.add(sender)
            lines += datagram.decode().split("\n")
    counters: Counter[str] = Counter()
    for line in lines:
        name, _, rest = line.partition(":")
        value, _, kind = rest.partition("|")
        if kind == "c":
            counters[name] += int(value)
    assert counters["web.tricorn.requests"] == 10
    assert counters["web.tricorn.request.status.200"] == 10
    assert counters["web.tricorn.connections.opened"] == 10
    assert counters["web.tricorn.connections.closed"] == 10
    # The supervisor: both workers ready, then none once they stopped.
    gauges = [line for line in lines if line.startswith("web.tricorn.workers:")]
    assert "web.tricorn.workers:2|g" in gauges
    assert gauges[-1] == "web.tricorn.workers:0|g"
    # Its socket and at least one worker's.
    assert len(senders) >= 2
