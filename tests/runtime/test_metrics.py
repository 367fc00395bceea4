"""Prometheus metrics through the real runtime: what the runner counts, and /metrics.

The counting runs over the in-memory harness (``_memory``): the server's own
registry (``context.metrics.registry``) is read after real HTTP/1.1, HTTP/2
and WebSocket traffic. One test scrapes ``--metrics-bind`` over a real socket.
"""

from __future__ import annotations

import os
import socket
import sys
from typing import Any

import anyio
import h2.events
import httpx
import pytest

import tricorn
from tricorn._runtime.context import ConnectionContext
from tricorn._runtime.metrics import Metrics, SupervisorMetrics, check_metrics
from tricorn.errors import ConfigError

from ._h2wire import H2Wire
from ._memory import MemoryServer, memory_server
from ._support import accepted_websocket, ok_app, request, server

pytestmark = pytest.mark.anyio

#: Any address: the in-memory harness binds nothing, the metrics count all the same.
ON = {"metrics_bind": "127.0.0.1:0"}


def metrics_of(srv: MemoryServer) -> Metrics:
    metrics = srv.context.prometheus
    assert metrics is not None
    return metrics


def value(srv: MemoryServer, name: str, **labels: str) -> float:
    sample = metrics_of(srv).registry.get_sample_value(name, labels)
    assert sample is not None, f"no sample {name}{labels}"
    return sample


async def status_app(scope: Any, receive: Any, send: Any) -> None:
    """``/boom`` raises (500), ``/missing`` is 404, anything else 200."""
    if scope["path"] == "/boom":
        raise RuntimeError("boom")
    status = 404 if scope["path"] == "/missing" else 200
    await send({"type": "http.response.start", "status": status, "headers": []})
    await send({"type": "http.response.body", "body": b"ok"})


def test_metrics_are_off_by_default() -> None:
    assert ConnectionContext(ok_app, tricorn.Config(), state={}).metrics is None


def test_a_bad_metrics_bind_is_a_config_error_naming_it() -> None:
    with pytest.raises(ConfigError, match="metrics_bind"):
        tricorn.Config(metrics_bind="nowhere")


def test_metrics_bind_with_several_workers_is_allowed() -> None:
    # The supervisor serves their sum (prometheus-client's multiprocess mode).
    assert tricorn.Config(metrics_bind="127.0.0.1:9100", workers=2).workers == 2


def test_metrics_bind_without_prometheus_client_says_how_to_install_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # import raises ImportError
    with pytest.raises(ConfigError, match=r"metrics_bind.*pip install 'tricorn\[metrics\]'"):
        check_metrics(tricorn.Config(metrics_bind="127.0.0.1:9100"))
    check_metrics(tricorn.Config())  # off: nothing is imported


async def test_http1_requests_are_counted_by_status_class_with_bytes_and_durations() -> None:
    sent = b"".join(request(target=path) for path in ("/", "/missing", "/boom"))
    async with memory_server(status_app, **ON) as srv:
        async with srv.client() as client:
            await client.send(sent)
            statuses = [(await client.response()).status_code for _ in range(3)]
            assert value(srv, "tricorn_connections_open", protocol="http1") == 1
        await srv.wait_closed()
        assert statuses == [200, 404, 500]
        assert value(srv, "tricorn_connections_total", protocol="http1") == 1
        assert value(srv, "tricorn_connections_open", protocol="http1") == 0
        for status_class in ("2xx", "4xx", "5xx"):
            labels = {"protocol": "http1", "status_class": status_class}
            assert value(srv, "tricorn_requests_total", **labels) == 1
        assert value(srv, "tricorn_requests_total", protocol="http1", status_class="3xx") == 0
        assert value(srv, "tricorn_request_duration_seconds_count", protocol="http1") == 3
        assert value(srv, "tricorn_received_bytes_total") == len(sent)
        assert value(srv, "tricorn_sent_bytes_total") > 3 * len(b"HTTP/1.1 200 OK\r\n")
        assert value(srv, "tricorn_connections_total", protocol="h2") == 0


async def test_http2_streams_are_counted_while_their_apps_run() -> None:
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if scope["path"] == "/wait":
            await release.wait()
        await ok_app(scope, receive, send)

    async with memory_server(app, **ON) as srv:
        wire = await H2Wire.connect(srv)
        waiting = await wire.get("/wait")
        await wire.until(lambda event: isinstance(event, h2.events.RemoteSettingsChanged))
        headers, _ = await wire.response(await wire.get("/"))
        assert headers[b":status"] == b"200"
        # The quick stream is done; the waiting one still runs.
        assert value(srv, "tricorn_http2_streams_open") == 1
        # Prior knowledge: the connection began as HTTP/1.1 and switched (h2c).
        assert value(srv, "tricorn_connections_open", protocol="h2") == 1
        assert value(srv, "tricorn_connections_open", protocol="http1") == 0
        release.set()
        await wire.response(waiting)
        await wire.aclose()
        await srv.wait_closed()
        assert value(srv, "tricorn_http2_streams_open") == 0
        assert value(srv, "tricorn_connections_open", protocol="h2") == 0
        assert value(srv, "tricorn_connections_total", protocol="h2") == 1
        assert value(srv, "tricorn_requests_total", protocol="h2", status_class="2xx") == 2
        assert value(srv, "tricorn_request_duration_seconds_count", protocol="h2") == 2
        assert value(srv, "tricorn_requests_total", protocol="http1", status_class="2xx") == 0


async def test_websocket_connections_are_counted_while_their_apps_run() -> None:
    release = anyio.Event()

    async def app(scope: Any, receive: Any, send: Any) -> None:
        if await accepted_websocket(scope, receive, send):
            await release.wait()
            await send({"type": "websocket.close"})

    async with memory_server(app, **ON) as srv:
        wire = await H2Wire.connect(srv)
        stream_id = await wire.open_websocket()
        await wire.until(
            lambda event: (
                isinstance(event, h2.events.ResponseReceived) and event.stream_id == stream_id
            )
        )
        assert value(srv, "tricorn_websocket_connections_open") == 1
        assert value(srv, "tricorn_http2_streams_open") == 1
        release.set()
        await wire.aclose()
        await srv.wait_closed()
        assert value(srv, "tricorn_websocket_connections_open") == 0
        assert value(srv, "tricorn_http2_streams_open") == 0
        # A WebSocket is not a request.
        assert value(srv, "tricorn_request_duration_seconds_count", protocol="h2") == 0


@pytest.mark.mock_clock
async def test_a_spent_http2_abuse_budget_is_counted_by_kind() -> None:
    async with memory_server(ok_app, h2_max_control_frames=5, **ON) as srv:
        wire = await H2Wire.connect(srv)
        for index in range(50):
            wire.conn.ping(index.to_bytes(8, "big"))
        await wire.flush()
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        assert goaway is not None
        await wire.aclose()
        await srv.wait_closed()
        assert value(srv, "tricorn_http2_abuse_budget_hits_total", kind="control_frames") == 1
        assert value(srv, "tricorn_http2_abuse_budget_hits_total", kind="resets") == 0


def test_worker_restarts_are_counted_by_reason_when_the_supervisor_says_so() -> None:
    from prometheus_client import CollectorRegistry

    metrics = SupervisorMetrics()
    registry = CollectorRegistry()
    registry.register(metrics)
    metrics.worker_restarted("max_requests")
    metrics.worker_restarted("startup_failed")
    metrics.workers = 3
    metrics.addresses = ["127.0.0.1:8000", "quic:127.0.0.1:8443"]
    sample = registry.get_sample_value
    assert sample("tricorn_worker_restarts_total", {"reason": "max_requests"}) == 1
    assert sample("tricorn_worker_restarts_total", {"reason": "startup_failed"}) == 1
    assert sample("tricorn_worker_restarts_total", {"reason": "crashed"}) == 0
    assert sample("tricorn_workers") == 3
    assert sample("tricorn_listening", {"address": "127.0.0.1:8000"}) == 1
    assert sample("tricorn_listening", {"address": "quic:127.0.0.1:8443"}) == 1


def test_a_worker_counts_no_restarts_of_its_own() -> None:
    # Summed across workers, a worker's own series would clash with the supervisor's.
    metrics = Metrics()
    assert metrics.registry.get_sample_value("tricorn_worker_restarts_total") is None


async def test_metrics_bind_serves_the_counters_at_slash_metrics() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        fd = os.dup(sock.fileno())
        async with (
            server(ok_app, metrics_bind=f"fd://{fd}") as handle,
            httpx.AsyncClient() as client,
        ):
            assert (await client.get(f"http://{handle.address}/")).text == "ok"
            scraped = await client.get(f"http://127.0.0.1:{port}/metrics")
            elsewhere = await client.get(f"http://127.0.0.1:{port}/")
    assert scraped.status_code == 200
    assert scraped.headers["content-type"].startswith("text/plain; version=")
    text = scraped.text
    assert 'tricorn_requests_total{protocol="http1",status_class="2xx"} 1.0' in text
    assert 'tricorn_connections_total{protocol="http1"} 1.0' in text
    assert f'tricorn_listening{{address="{handle.address}"}} 1.0' in text
    assert "# TYPE tricorn_request_duration_seconds histogram" in text
    assert elsewhere.status_code == 404
