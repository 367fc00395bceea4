"""StatsD metrics: what the runner counts, sent as StatsD lines over UDP.

Off by default. With ``statsd_host`` set, every server's
:class:`~tricorn._runtime.context.ConnectionContext` holds one
:class:`StatsdSink`, with the hooks :class:`~tricorn._runtime.metrics.Metrics`
has (the runner calls one object: the sink, the Prometheus metrics, or a
fan-out to both).

Sending never waits and never fails the runner: the socket is non-blocking,
``sendto`` is fire-and-forget, and a datagram the OS will not take (a full
buffer, an unreachable address) is dropped and counted in ``dropped``. The
address is resolved once, at startup.

The hooks only count. While the server serves (:meth:`StatsdSink.running`),
one task sends what was counted once per event-loop turn: counters summed
(``tricorn.requests:3|c``), one timing per request, packed into datagrams of
at most ``MAX_DATAGRAM`` bytes, lines separated by ``\\n`` as StatsD servers
expect. Under the supervisor each worker sends its own (the StatsD server adds
them up: that is what it is for) and the supervisor sends the worker gauge.

Open connections and WebSockets are counters of those opened and closed, not
gauges: workers cannot share an absolute gauge, and DogStatsD does not take
the relative (``+1|g``) form.
"""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any, Final

import anyio

from .._protocol import ServerProtocol
from ..config import Config, parse_statsd_host
from ..errors import ConfigError
from .exchange import HTTPExchange
from .metrics import abuse_kind
from .websocket import WebSocketExchange

__all__ = ["MAX_DATAGRAM", "StatsdClient", "StatsdSink", "check_statsd", "open_statsd"]

#: The largest datagram sent: a 1500-byte Ethernet frame less IP and UDP
#: headers, with room to spare (what StatsD's own docs suggest for a LAN).
MAX_DATAGRAM: Final = 1432
#: Request durations held between two sends; past this, under a stall, they are dropped.
_MAX_PENDING: Final = 10_000


def _resolve(config: Config) -> tuple[socket.AddressFamily, Any] | None:
    """``statsd_host`` as a socket family and address; a ConfigError naming it if unresolvable."""
    if config.statsd_host is None:
        return None
    target = parse_statsd_host(config.statsd_host)
    if isinstance(target, str):
        return (socket.AF_UNIX, target)
    host, port = target
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (OSError, UnicodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError("statsd_host", f"cannot resolve {host!r}: {reason}") from None
    # A name with IPv4 and IPv6 addresses ("localhost"): StatsD servers and
    # agents listen on IPv4 by default, so the first IPv4 address is taken.
    found.sort(key=lambda info: info[0] != socket.AF_INET)
    family, _, _, _, address = found[0]
    return (family, address)


def check_statsd(config: Config) -> None:
    """With ``statsd_host`` set, it must resolve: else a ConfigError naming it."""
    _resolve(config)


class StatsdClient:
    """A non-blocking datagram socket and where it sends: metrics in, datagrams out."""

    def __init__(
        self, family: socket.AddressFamily, address: Any, *, prefix: str, tags: str
    ) -> None:
        self._family = family
        self.address = address
        # As Gunicorn has it: "myapp" or "myapp." both give myapp.tricorn.requests.
        self._prefix = (prefix.rstrip(".") + "." if prefix else "") + "tricorn."
        self._suffix = f"|#{tags}" if tags else ""
        self._socket: socket.socket | None = None
        #: Datagrams the OS would not take; not sent again.
        self.dropped = 0

    @classmethod
    def from_config(cls, config: Config) -> StatsdClient | None:
        """The client ``config`` asks for (not yet open), or None when ``statsd_host`` is unset."""
        target = _resolve(config)
        if target is None:
            return None
        family, address = target
        return cls(family, address, prefix=config.statsd_prefix, tags=config.dogstatsd_tags)

    def open(self) -> None:
        sock = socket.socket(self._family, socket.SOCK_DGRAM)
        sock.setblocking(False)
        self._socket = sock

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None

    def send(self, metrics: list[tuple[str, str]]) -> None:
        """Send ``(name, "value|type")`` pairs, as few datagrams as they fit in."""
        prefix, suffix = self._prefix, self._suffix
        lines: list[bytes] = []
        size = 0
        for name, value in metrics:
            line = f"{prefix}{name}:{value}{suffix}".encode()
            if lines and size + 1 + len(line) > MAX_DATAGRAM:
                self._send(b"\n".join(lines))
                lines, size = [], 0
            size += len(line) + (1 if lines else 0)
            lines.append(line)
        if lines:
            self._send(b"\n".join(lines))

    def _send(self, datagram: bytes) -> None:
        if self._socket is None:
            self.dropped += 1
            return
        try:
            self._socket.sendto(datagram, self.address)
        except OSError:
            # A full buffer (BlockingIOError), nobody at a unix path, no
            # route: StatsD is best effort, and serving must not notice.
            self.dropped += 1


class _Tally:
    """Bytes counted between two sends (the runner's ``sent`` and ``received``)."""

    __slots__ = ("value",)

    def __init__(self) -> None:
        self.value = 0.0

    def inc(self, amount: float = 1) -> None:
        self.value += amount


def open_statsd(config: Config) -> StatsdSink | None:
    """The StatsD sink of one server, or None when ``statsd_host`` is unset."""
    client = StatsdClient.from_config(config)
    return None if client is None else StatsdSink(client)


class StatsdSink:
    """The runner's hooks, counting into what the next send carries."""

    def __init__(self, client: StatsdClient) -> None:
        self.client = client
        self.received = _Tally()
        self.sent = _Tally()
        self._counts: dict[str, int] = {}
        self._durations: list[float] = []
        #: Something was counted since the last send; the sender is woken once for it.
        self._due = False
        self._wake: anyio.Event | None = None

    @asynccontextmanager
    async def running(self) -> AsyncIterator[None]:
        """Send once per event-loop turn while in this block; what is left, at its end."""
        self.client.open()
        try:
            async with anyio.create_task_group() as task_group:
                task_group.start_soon(self._send_each_turn)
                try:
                    yield
                finally:
                    task_group.cancel_scope.cancel()
        finally:
            self._wake = None
            self.flush()
            self.client.close()

    async def _send_each_turn(self) -> None:
        while True:
            self.flush()
            # Set by the first count after this send; the task runs again once
            # the tasks ready now have run, so a turn's counts go out together.
            wake = self._wake = anyio.Event()
            await wake.wait()

    def flush(self) -> None:
        """Send what was counted since the last send, now."""
        self._due = False
        metrics = [(name, f"{count}|c") for name, count in self._counts.items()]
        self._counts.clear()
        if self._durations:
            metrics += [("request.duration", f"{ms:.3f}|ms") for ms in self._durations]
            self._durations.clear()
        for name, tally in (("bytes.received", self.received), ("bytes.sent", self.sent)):
            if tally.value:
                metrics.append((name, f"{int(tally.value)}|c"))
                tally.value = 0.0
        if metrics:
            self.client.send(metrics)

    def _count(self, name: str) -> None:
        counts = self._counts
        counts[name] = counts.get(name, 0) + 1
        if not self._due:
            self._due = True
            if self._wake is not None:
                self._wake.set()

    # -- the runner's hooks --------------------------------------------------

    def connection_opened(self, protocol: ServerProtocol) -> None:
        self._count("connections.opened")

    def connection_switched(self) -> None:
        """An h2c switch: the same connection, still open; nothing to count."""

    def connection_closed(self, protocol: ServerProtocol) -> None:
        self._count("connections.closed")
        kind = abuse_kind(protocol)
        if kind is not None:
            self._count(f"abuse.{kind}")

    def exchange_started(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange
    ) -> float:
        if not isinstance(exchange, HTTPExchange):
            self._count("websockets.opened")
        return time.perf_counter()

    def exchange_finished(
        self, protocol: ServerProtocol, exchange: HTTPExchange | WebSocketExchange, started: float
    ) -> None:
        if not isinstance(exchange, HTTPExchange):
            self._count("websockets.closed")
            return
        self._count("requests")
        status = exchange.status
        if status is not None:
            self._count(f"request.status.{status}")
        if len(self._durations) < _MAX_PENDING:
            self._durations.append((time.perf_counter() - started) * 1000.0)
