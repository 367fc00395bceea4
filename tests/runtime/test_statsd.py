"""StatsD metrics through the real runtime, received on a real UDP socket.

The server side is the in-memory harness (``_memory``), which sends StatsD as
``serve()`` does, or a real server; the StatsD server is a UDP socket the test
binds on 127.0.0.1:0 and reads. Loopback delivers a datagram during the
``sendto`` that sends it, so once the server has stopped (its last send is on
the way out) every datagram is already waiting to be read.
"""

from __future__ import annotations

import contextlib
import re
import socket
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anyio
import h2.events
import httpx
import pytest

import tricorn
from tricorn._cli import build_parser, config_from_args
from tricorn._runtime.context import ConnectionContext
from tricorn._runtime.metrics import Fanout, SupervisorMetrics
from tricorn._runtime.statsd import MAX_DATAGRAM, StatsdClient, StatsdSink, check_statsd
from tricorn.errors import ConfigError

from ._h2wire import H2Wire
from ._memory import MemoryServer, memory_server
from ._support import WAIT, accepted_websocket, ok_app, request, server

pytestmark = pytest.mark.anyio

#: One StatsD line as tricorn writes it: name, value, type, DogStatsD tags.
LINE = re.compile(r"([A-Za-z0-9_.\-]+):(\d+(?:\.\d+)?)\|(c|ms|g)(?:\|#(\S+))?")


class StatsdServer:
    """A UDP socket on a free loopback port that collects what it is sent."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.datagrams: list[bytes] = []

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.sock.getsockname()[1]}"

    def read(self) -> list[bytes]:
        """Every datagram received so far (without waiting for more)."""
        while True:
            try:
                self.datagrams.append(self.sock.recv(65536))
            except BlockingIOError:
                return self.datagrams

    def lines(self) -> list[str]:
        lines = [line for datagram in self.read() for line in datagram.decode().split("\n")]
        for line in lines:
            assert LINE.fullmatch(line), f"not a StatsD line: {line!r}"
        return lines

    def counters(self) -> Counter[str]:
        """Every counter's sum over the datagrams received."""
        sums: Counter[str] = Counter()
        for line in self.lines():
            match = LINE.fullmatch(line)
            assert match is not None
            if match.group(3) == "c":
                sums[match.group(1)] += int(match.group(2))
        return sums

    def timings(self, name: str) -> list[float]:
        matches = (LINE.fullmatch(line) for line in self.lines())
        return [float(m.group(2)) for m in matches if m and m.group(1) == name]

    async def until_counted(self, name: str, value: int) -> None:
        """Wait (bounded) until counter ``name`` has summed to ``value``."""
        with anyio.fail_after(WAIT):
            while self.counters()[name] < value:
                await anyio.wait_readable(self.sock)
        assert self.counters()[name] == value


@pytest.fixture
def statsd() -> Iterator[StatsdServer]:
    receiver = StatsdServer()
    with receiver.sock:
        yield receiver


def sink_of(srv: MemoryServer) -> StatsdSink:
    sink = srv.context.statsd
    assert sink is not None
    return sink


async def status_app(scope: Any, receive: Any, send: Any) -> None:
    """``/boom`` raises (500), ``/missing`` is 404, anything else 200."""
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    status = 404 if scope["path"] == "/missing" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


# -- configuration -------------------------------------------------------------


def test_statsd_is_off_by_default() -> None:
    context = ConnectionContext(ok_app, tricorn.Config(), state={})
    assert context.statsd is None
    assert context.metrics is None  # the runner's hooks stay one None check


@pytest.mark.parametrize(
    "address", ["127.0.0.1:0", "127.0.0.1:70000", "fd://3", ":8125", "[nope]:8125", "unix:", "a b"]
)
def test_a_bad_statsd_host_is_a_config_error_naming_it(address: str) -> None:
    with pytest.raises(ConfigError, match="statsd_host"):
        tricorn.Config(statsd_host=address)


def test_a_statsd_host_without_a_port_means_port_8125() -> None:
    client = StatsdClient.from_config(tricorn.Config(statsd_host="127.0.0.1"))
    assert client is not None
    assert client.address == ("127.0.0.1", 8125)


def test_a_statsd_host_that_does_not_resolve_is_a_config_error_naming_it() -> None:
    # .invalid never resolves (RFC 6761 6.4).
    with pytest.raises(ConfigError, match=r"statsd_host: cannot resolve 'nowhere\.invalid'"):
        check_statsd(tricorn.Config(statsd_host="nowhere.invalid:8125"))


def test_the_cli_reports_an_unresolvable_statsd_host_as_a_usage_error() -> None:
    args = build_parser().parse_args(["app:app", "--statsd-host", "nowhere.invalid:8125"])
    config, error = config_from_args(args, {})
    assert config is None
    assert error.startswith("--statsd-host: cannot resolve 'nowhere.invalid'")


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("statsd_prefix", ".app"),
        ("statsd_prefix", "my app"),
        ("statsd_prefix", "app:x"),
        ("dogstatsd_tags", "env:prod,,team:web"),
        ("dogstatsd_tags", "env:prod|x"),
        ("dogstatsd_tags", "env prod"),
    ],
)
def test_a_bad_statsd_prefix_or_tag_is_a_config_error_naming_it(key: str, value: str) -> None:
    with pytest.raises(ConfigError, match=key):
        tricorn.Config.from_mapping({key: value})


# -- what is sent ----------------------------------------------------------------


async def test_http1_requests_are_counted_by_status_with_durations_and_bytes(
    statsd: StatsdServer,
) -> None:
    sent = b"".join(request(target=path) for path in ("/", "/missing", "/boom"))
    async with memory_server(status_app, statsd_host=statsd.host) as srv:
        async with srv.client() as client:
            await client.send(sent)
            statuses = [(await client.response()).status_code for _ in range(3)]
        await srv.wait_closed()
    assert statuses == [200, 404, 500]
    counters = statsd.counters()
    assert counters["tricorn.requests"] == 3
    for status in (200, 404, 500):
        assert counters[f"tricorn.request.status.{status}"] == 1
    assert counters["tricorn.connections.opened"] == 1
    assert counters["tricorn.connections.closed"] == 1
    assert counters["tricorn.bytes.received"] == len(sent)
    assert counters["tricorn.bytes.sent"] > 3 * len(b"HTTP/1.1 200 OK\r\n")
    durations = statsd.timings("tricorn.request.duration")
    assert len(durations) == 3
    assert all(0 <= duration < WAIT * 1000 for duration in durations)
    assert sink_of(srv).client.dropped == 0


async def test_counts_are_sent_while_serving_not_only_at_the_end(statsd: StatsdServer) -> None:
    async with memory_server(ok_app, statsd_host=statsd.host) as srv:
        async with srv.client() as client:
            await client.send(request())
            assert (await client.response()).status_code == 200
            await statsd.until_counted("tricorn.request.status.200", 1)
            assert statsd.counters()["tricorn.connections.closed"] == 0  # still open
        await srv.wait_closed()


async def test_the_prefix_and_dogstatsd_tags_are_on_every_line(statsd: StatsdServer) -> None:
    options = {"statsd_prefix": "myapp.", "dogstatsd_tags": "env:test,canary"}
    async with memory_server(ok_app, statsd_host=statsd.host, **options) as srv:
        async with srv.client() as client:
            await client.send(request())
            assert (await client.response()).status_code == 200
        await srv.wait_closed()
    lines = statsd.lines()
    assert "myapp.tricorn.requests:1|c|#env:test,canary" in lines
    assert "myapp.tricorn.request.status.200:1|c|#env:test,canary" in lines
    (duration,) = [line for line in lines if line.startswith("myapp.tricorn.request.duration:")]
    assert re.fullmatch(
        r"myapp\.tricorn\.request\.duration:\d+\.\d{3}\|ms\|#env:test,canary", duration
    )
    assert all(line.startswith("myapp.tricorn.") for line in lines)


async def test_http2_requests_are_counted_once_per_stream(statsd: StatsdServer) -> None:
    async with memory_server(ok_app, statsd_host=statsd.host) as srv:
        wire = await H2Wire.connect(srv)
        for stream_id in [await wire.get("/") for _ in range(3)]:
            headers, _ = await wire.response(stream_id)
            assert headers[b":status"] == b"200"
        await wire.aclose()
        await srv.wait_closed()
    counters = statsd.counters()
    assert counters["tricorn.requests"] == 3
    assert counters["tricorn.request.status.200"] == 3
    # Prior knowledge: one connection, switched to HTTP/2 (h2c), counted once.
    assert counters["tricorn.connections.opened"] == 1
    assert counters["tricorn.connections.closed"] == 1


async def test_websockets_are_counted_when_opened_and_when_closed(statsd: StatsdServer) -> None:
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if await accepted_websocket(scope, receive, send):
            await release.wait()
            await send({"type": "websocket.close"})

    async with memory_server(app, statsd_host=statsd.host) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.open_websocket()
        await wire.until(
            lambda event: (
                isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id
            )
        )
        await statsd.until_counted("tricorn.websockets.opened", 1)
        assert statsd.counters()["tricorn.websockets.closed"] == 0
        release.set()
        await wire.aclose()
        await srv.wait_closed()
    counters = statsd.counters()
    assert counters["tricorn.websockets.closed"] == 1
    # A WebSocket is not a request.
    assert counters["tricorn.requests"] == 0
    assert statsd.timings("tricorn.request.duration") == []


@pytest.mark.mock_clock
async def test_a_spent_http2_abuse_budget_is_counted_by_kind(statsd: StatsdServer) -> None:
    async with memory_server(ok_app, h2_max_control_frames=5, statsd_host=statsd.host) as srv:
        wire = await H2Wire.connect(srv)
        for index in range(50):
            wire.conn.ping(index.to_bytes(8, "big"))
        await wire.flush()
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        assert goaway is not None
        await wire.aclose()
        await srv.wait_closed()
    counters = statsd.counters()
    assert counters["tricorn.abuse.control_frames"] == 1
    assert counters["tricorn.abuse.resets"] == 0


async def test_prometheus_and_statsd_both_count_the_same_requests(statsd: StatsdServer) -> None:
    async with memory_server(ok_app, statsd_host=statsd.host, metrics_bind="127.0.0.1:0") as srv:
        assert isinstance(srv.context.metrics, Fanout)
        async with srv.client() as client:
            await client.send(request() + request())
            for _ in range(2):
                assert (await client.response()).status_code == 200
        await srv.wait_closed()
        prometheus = srv.context.prometheus
        assert prometheus is not None
        sample = prometheus.registry.get_sample_value
        labels = {"protocol": "http1", "status_class": "2xx"}
        assert sample("tricorn_requests_total", labels) == 2
        assert sample("tricorn_request_duration_seconds_count", {"protocol": "http1"}) == 2
        received = sample("tricorn_received_bytes_total", {})
    counters = statsd.counters()
    assert counters["tricorn.requests"] == 2
    assert counters["tricorn.bytes.received"] == received
    assert len(statsd.timings("tricorn.request.duration")) == 2


# -- never in the way ------------------------------------------------------------


async def test_a_statsd_host_nobody_listens_on_never_breaks_serving() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as closed:
        closed.bind(("127.0.0.1", 0))
        nobody = f"127.0.0.1:{closed.getsockname()[1]}"
    async with server(ok_app, statsd_host=nobody) as handle, httpx.AsyncClient() as client:
        for _ in range(5):
            response = await client.get(f"http://{handle.address}/")
            assert response.text == "ok"


async def test_datagrams_the_os_refuses_are_dropped_and_serving_goes_on(tmp_path: Path) -> None:
    # A unix datagram socket that does not exist: every sendto fails at once.
    async with memory_server(ok_app, statsd_host=f"unix:{tmp_path}/absent.sock") as srv:
        async with srv.client() as client:
            for _ in range(3):
                await client.send(request())
                assert (await client.response()).status_code == 200
        await srv.wait_closed()
    assert sink_of(srv).client.dropped >= 1


async def test_a_unix_datagram_socket_receives_the_lines(tmp_path: Path) -> None:
    path = str(tmp_path / "statsd.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind(path)
        receiver.setblocking(False)
        async with memory_server(ok_app, statsd_host=f"unix:{path}") as srv:
            async with srv.client() as client:
                await client.send(request())
                assert (await client.response()).status_code == 200
            await srv.wait_closed()
        lines: list[str] = []
        with contextlib.suppress(BlockingIOError):
            while True:
                lines += receiver.recv(65536).decode().split("\n")
    assert "tricorn.requests:1|c" in lines


# -- the client and the supervisor's numbers ------------------------------------------


def test_many_lines_are_packed_into_datagrams_that_fit(statsd: StatsdServer) -> None:
    client = StatsdClient.from_config(tricorn.Config(statsd_host=statsd.host))
    assert client is not None
    client.open()
    try:
        client.send([(f"request.status.{code}", "1|c") for code in range(100, 600)])
    finally:
        client.close()
    datagrams = statsd.read()
    assert 1 < len(datagrams) < 500
    assert all(len(datagram) <= MAX_DATAGRAM for datagram in datagrams)
    lines = [line for datagram in datagrams for line in datagram.decode().split("\n")]
    assert lines == [f"tricorn.request.status.{code}:1|c" for code in range(100, 600)]


def test_the_supervisor_sends_the_worker_gauge_when_it_changes_and_restarts_as_counted(
    statsd: StatsdServer,
) -> None:
    client = StatsdClient.from_config(tricorn.Config(statsd_host=statsd.host))
    assert client is not None
    client.open()
    try:
        metrics = SupervisorMetrics(statsd=client)
        metrics.workers = 2
        metrics.workers = 2  # unchanged within STATSD_GAUGE_EVERY: not sent again
        metrics.worker_restarted("crashed")
        metrics.workers = 1
    finally:
        client.close()
    assert statsd.lines() == [
        "tricorn.workers:2|g",
        "tricorn.worker.restarts.crashed:1|c",
        "tricorn.workers:1|g",
    ]
    assert metrics.restarts["crashed"] == 1
