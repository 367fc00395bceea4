"""Prometheus metrics: what the runner counts, and the endpoint that serves them.

Off by default. With ``metrics_bind`` set, every server's
:class:`~tricorn._runtime.context.ConnectionContext` holds one
:class:`Metrics` (its own registry, never prometheus-client's global one), and
the runner keeps it as ``self._metrics``; with it unset that is ``None``, and
a hook costs one ``None`` check. The hooks live here, not in the runner, so
that each is one line there; the protocol layer knows nothing of metrics (the
abuse budgets are read from ``protocol.error`` when a connection ends).

Labels are fixed sets, made up front: a series exists (at 0) from the start,
and the hot path indexes a dict rather than calling ``labels()``.

StatsD (``statsd_host``, see ``statsd.py``) has the same hooks. With both on,
the runner's one object is a :class:`Fanout` to the two; with neither, it is
``None`` still (:func:`combine`).

Under the supervisor the workers' metrics live in prometheus-client's
multiprocess mode (``PROMETHEUS_MULTIPROC_DIR``, set by the supervisor before
it spawns them): each worker writes its values to files there, and the
supervisor serves the sum (:func:`multiprocess_registry`) with its own
:class:`SupervisorMetrics`. A gauge says how its workers' values combine
(``multiprocess_mode``); outside that mode the setting is ignored.
"""

from __future__ import annotations

import math
import re
import time
from typing import TYPE_CHECKING, Any, Final, Protocol

import anyio
import anyio.abc

from .._asgi.types import ASGI3App, ASGIReceive, ASGISend
from .._protocol import ServerProtocol
from ..config import Config, parse_bind
from ..errors import ConfigError
from .exchange import HTTPExchange
from .websocket import WebSocketExchange

if TYPE_CHECKING:
    from prometheus_client import CollectorRegistry

    from .statsd import StatsdClient

__all__ = [
    "DURATION_BUCKETS",
    "RESTART_REASONS",
    "STATSD_GAUGE_EVERY",
    "Fanout",
    "Hooks",
    "Metrics",
    "SupervisorMetrics",
    "abuse_kind",
    "check_metrics",
    "combine",
    "forget_process",
    "metrics_app",
    "multiprocess_registry",
    "open_metrics",
    "serve_metrics",
]

PROTOCOLS: Final = ("http1", "h2", "h3")
STATUS_CLASSES: Final = ("1xx", "2xx", "3xx", "4xx", "5xx", "none")
#: Seconds, from a cached answer (1 ms) to a long poll (a minute).
DURATION_BUCKETS: Final = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
)
#: The abuse budgets of the HTTP/2 protocol (``HTTP2Protocol._spend``), by the
#: words its ``error`` names them with, and the ``kind`` label each gets.
ABUSE_KINDS: Final = {
    "streams reset": "resets",
    "control frames": "control_frames",
    "frames on closed streams": "closed_stream_frames",
    "empty DATA frames": "empty_data_frames",
}
#: Seconds after which the supervisor sends its unchanged worker gauge again
#: (StatsD servers flush every 10 s by default).
STATSD_GAUGE_EVERY: Final = 10.0
#: Why the supervisor restarted a worker (``tricorn_worker_restarts_total``).
RESTART_REASONS: Final = ("crashed", "startup_failed", "max_requests", "reload", "healthcheck")
_ABUSE: Final = re.compile(r"too many (.+): ended the connection with ENHANCE_YOUR_CALM")
_INSTALL: Final = "needs prometheus-client: pip install 'tricorn[metrics]'"


def check_metrics(config: Config) -> None:
    """With ``metrics_bind`` set, prometheus-client must be importable: else a ConfigError."""
    if config.metrics_bind is None:
        return
    try:
        import prometheus_client  # noqa: F401
    except ImportError:
        raise ConfigError("metrics_bind", _INSTALL) from None


def open_metrics(config: Config) -> Metrics | None:
    """The metrics of one server, or None when ``metrics_bind`` is unset."""
    if config.metrics_bind is None:
        return None
    check_metrics(config)
    return Metrics()


def _protocol_label(protocol: ServerProtocol) -> str:
    return protocol.label


def abuse_kind(protocol: ServerProtocol) -> str | None:
    """The abuse budget (``ABUSE_KINDS`` value) a connection that ended had spent, if any."""
    error = protocol.error
    if error is not None and (match := _ABUSE.fullmatch(error)):
        return ABUSE_KINDS.get(match.group(1))
    return None


class Counting(Protocol):
    """A counter the runner adds bytes to (prometheus-client's ``Counter`` is one)."""

    def inc(self, amount: float = ...) -> None: ...


class Hooks(Protocol):
    """What the runner calls, one line per call site; :class:`Metrics` and ``StatsdSink``."""

    @property
    def received(self) -> Counting: ...

    @property
    def sent(self) -> Counting: ...

    def connection_opened(self, protocol: ServerProtocol) -> None: ...

    def connection_switched(self) -> None: ...

    def connection_closed(self, protocol: ServerProtocol) -> None: ...

    def exchange_started(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange
    ) -> float: ...

    def exchange_finished(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange, started: float
    ) -> None: ...


def combine(*sinks: Hooks | None) -> Hooks | None:
    """The one object the runner calls: None when every sink is off, a Fanout when two are on."""
    on = [sink for sink in sinks if sink is not None]
    if not on:
        return None
    return on[0] if len(on) == 1 else Fanout(on)


class _BothCounting:
    __slots__ = ("_counters",)

    def __init__(self, counters: list[Counting]) -> None:
        self._counters = counters

    def inc(self, amount: float = 1) -> None:
        for counter in self._counters:
            counter.inc(amount)


class Fanout:
    """Several sinks behind one object (Prometheus and StatsD both on)."""

    def __init__(self, sinks: list[Hooks]) -> None:
        self._sinks = sinks
        self.received = _BothCounting([sink.received for sink in sinks])
        self.sent = _BothCounting([sink.sent for sink in sinks])

    def connection_opened(self, protocol: ServerProtocol) -> None:
        for sink in self._sinks:
            sink.connection_opened(protocol)

    def connection_switched(self) -> None:
        for sink in self._sinks:
            sink.connection_switched()

    def connection_closed(self, protocol: ServerProtocol) -> None:
        for sink in self._sinks:
            sink.connection_closed(protocol)

    def exchange_started(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange
    ) -> float:
        # Every sink reads the same clock (time.perf_counter): one reading serves all.
        started = 0.0
        for sink in self._sinks:
            started = sink.exchange_started(protocol, exchange)
        return started

    def exchange_finished(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange, started: float
    ) -> None:
        for sink in self._sinks:
            sink.exchange_finished(protocol, exchange, started)


class Metrics:
    """tricorn's metrics, in a registry of their own (``registry``)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = registry = registry if registry is not None else CollectorRegistry()
        connections_open = Gauge(
            "tricorn_connections_open",
            "Connections open, by the protocol they speak now.",
            ["protocol"],
            registry=registry,
            multiprocess_mode="livesum",
        )
        connections = Counter(
            "tricorn_connections",
            "Connections accepted, by the protocol they began with "
            "(an h2c switch counts once more, under h2).",
            ["protocol"],
            registry=registry,
        )
        requests = Counter(
            "tricorn_requests",
            "HTTP requests answered (or abandoned: status_class none), by protocol "
            "and the class of the status sent.",
            ["protocol", "status_class"],
            registry=registry,
        )
        duration = Histogram(
            "tricorn_request_duration_seconds",
            "Time from a request's head to its app's end.",
            ["protocol"],
            buckets=DURATION_BUCKETS,
            registry=registry,
        )
        self.received = Counter(
            "tricorn_received_bytes", "Bytes read from clients.", registry=registry
        )
        self.sent = Counter(
            "tricorn_sent_bytes", "Bytes handed to the transport for clients.", registry=registry
        )
        self.http2_streams_open = Gauge(
            "tricorn_http2_streams_open",
            "HTTP/2 streams whose exchange (app) runs.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self.websockets_open = Gauge(
            "tricorn_websocket_connections_open",
            "WebSocket connections (HTTP/1.1 upgrades and HTTP/2 streams) whose app runs.",
            registry=registry,
            multiprocess_mode="livesum",
        )
        self._listening = Gauge(
            "tricorn_listening",
            "The addresses the server serves on, 1 each (QUIC ones as quic:HOST:PORT).",
            ["address"],
            registry=registry,
            multiprocess_mode="max",
        )
        abuse = Counter(
            "tricorn_http2_abuse_budget_hits",
            "HTTP/2 connections ended with ENHANCE_YOUR_CALM for spending an abuse budget.",
            ["kind"],
            registry=registry,
        )
        self._connections_open = {p: connections_open.labels(p) for p in PROTOCOLS}
        self._connections = {p: connections.labels(p) for p in PROTOCOLS}
        self._requests = {(p, c): requests.labels(p, c) for p in PROTOCOLS for c in STATUS_CLASSES}
        self._duration = {p: duration.labels(p) for p in PROTOCOLS}
        self._abuse = {kind: abuse.labels(kind) for kind in ABUSE_KINDS.values()}

    def listening(self, addresses: list[str]) -> None:
        """The server serves on ``addresses`` (said once, when it starts to)."""
        for address in addresses:
            self._listening.labels(address).set(1)

    # -- the runner's hooks --------------------------------------------------

    def connection_opened(self, protocol: ServerProtocol) -> None:
        label = _protocol_label(protocol)
        self._connections[label].inc()
        self._connections_open[label].inc()

    def connection_switched(self) -> None:
        """A cleartext HTTP/1.1 connection carries on as HTTP/2 (h2c)."""
        self._connections_open["http1"].dec()
        self._connections_open["h2"].inc()
        self._connections["h2"].inc()

    def connection_closed(self, protocol: ServerProtocol) -> None:
        self._connections_open[_protocol_label(protocol)].dec()
        kind = abuse_kind(protocol)
        if kind is not None:
            self._abuse[kind].inc()

    def exchange_started(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange
    ) -> float:
        """An exchange's app starts: the clock reading its end is measured from."""
        if not isinstance(exchange, HTTPExchange):
            self.websockets_open.inc()
        if protocol.label == "h2":
            self.http2_streams_open.inc()
        return time.perf_counter()

    def exchange_finished(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange, started: float
    ) -> None:
        """An exchange's app ended: a request is counted by the status it sent, if any."""
        label = _protocol_label(protocol)
        if label == "h2":
            self.http2_streams_open.dec()
        if not isinstance(exchange, HTTPExchange):
            self.websockets_open.dec()
            return
        status = exchange.status
        status_class = "none" if status is None else f"{status // 100}xx"
        self._requests[label, status_class].inc()
        self._duration[label].observe(time.perf_counter() - started)


class SupervisorMetrics:
    """What the supervisor knows of its workers, collected when scraped.

    Plain numbers rather than prometheus-client metrics: the supervisor
    writes no multiprocess files of its own, and no import order matters.
    With ``statsd`` (an open client) they are sent as they change, too: the
    worker gauge again every ``STATSD_GAUGE_EVERY`` seconds at most, so that
    a StatsD server that restarted learns it.
    """

    def __init__(self, statsd: StatsdClient | None = None) -> None:
        self.statsd = statsd
        self._workers = 0
        self._workers_sent = -math.inf
        self.restarts = dict.fromkeys(RESTART_REASONS, 0)
        #: What the server serves on, once every worker is ready.
        self.addresses: list[str] = []

    @property
    def workers(self) -> int:
        """Worker processes ready and serving (not shutting down)."""
        return self._workers

    @workers.setter
    def workers(self, count: int) -> None:
        if self.statsd is not None:
            now = time.monotonic()
            if count != self._workers or now - self._workers_sent >= STATSD_GAUGE_EVERY:
                self.statsd.send([("workers", f"{count}|g")])
                self._workers_sent = now
        self._workers = count

    def worker_restarted(self, reason: str) -> None:
        self.restarts[reason] += 1
        if self.statsd is not None:
            self.statsd.send([(f"worker.restarts.{reason}", "1|c")])

    def describe(self) -> list[Any]:
        return list(self.collect())

    def collect(self) -> list[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        restarts = CounterMetricFamily(
            "tricorn_worker_restarts",
            "Worker processes the supervisor started in place of another, by why.",
            labels=["reason"],
        )
        for reason, count in self.restarts.items():
            restarts.add_metric([reason], count)
        workers = GaugeMetricFamily(
            "tricorn_workers", "Worker processes ready and serving.", value=self.workers
        )
        listening = GaugeMetricFamily(
            "tricorn_listening",
            "The addresses the server serves on, 1 each (QUIC ones as quic:HOST:PORT).",
            labels=["address"],
        )
        for address in self.addresses:
            listening.add_metric([address], 1)
        return [workers, restarts, listening]


def multiprocess_registry(path: str, supervisor: SupervisorMetrics) -> CollectorRegistry:
    """The workers' metrics summed from their files in ``path``, and the supervisor's."""
    from prometheus_client import CollectorRegistry
    from prometheus_client.multiprocess import MultiProcessCollector

    registry = CollectorRegistry()
    # prometheus-client leaves these two unannotated.
    MultiProcessCollector(registry, path=path)  # type: ignore[no-untyped-call]
    registry.register(supervisor)
    return registry


def forget_process(path: str, pid: int) -> None:
    """A worker exited: its live gauges leave the sums (its counters stay counted)."""
    from prometheus_client.multiprocess import mark_process_dead

    mark_process_dead(pid, path)  # type: ignore[no-untyped-call]  # unannotated upstream


# -- the endpoint --------------------------------------------------------------


def metrics_app(registry: CollectorRegistry) -> ASGI3App:
    """A tiny ASGI app: ``GET /metrics`` is the registry in Prometheus' text format."""
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    content_type = CONTENT_TYPE_LATEST.encode("latin-1")

    async def app(scope: Any, receive: ASGIReceive, send: ASGISend) -> None:
        if scope["type"] != "http":
            return  # no lifespan runs here; a WebSocket is refused (403)
        headers: list[tuple[bytes, bytes]] = [(b"content-type", b"text/plain; charset=utf-8")]
        if scope["path"] != "/metrics":
            status, body = 404, b"not found: the metrics are at /metrics\n"
        elif scope["method"] not in ("GET", "HEAD"):
            status, body = 405, b"method not allowed\n"
            headers.append((b"allow", b"GET, HEAD"))
        else:
            status, body = 200, generate_latest(registry)
            headers = [(b"content-type", content_type)]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    return app


async def serve_metrics(
    registry: CollectorRegistry,
    config: Config,
    *,
    task_status: anyio.abc.TaskStatus[list[str]],
) -> None:
    """Serve ``/metrics`` on ``config.metrics_bind`` until cancelled (then shut down gracefully).

    The endpoint is a server of its own, plain HTTP/1.1 with no lifespan and
    no access log: what it is asked is not the app's traffic.
    """
    from .logging import error_logger
    from .serve import Server

    assert config.metrics_bind is not None
    parse_bind(config.metrics_bind, key="metrics_bind")
    own = Config(
        bind=(config.metrics_bind,),
        lifespan="off",
        access_log=False,
        http2=False,
        worker_class=config.worker_class,
        graceful_timeout=min(config.graceful_timeout, 5.0),
    )
    server = Server(metrics_app(registry), own, announce=False)
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(server.serve)
        for address in addresses:
            error_logger.info("serving metrics on http://%s/metrics", address)
        task_status.started(addresses)
