"""HTTP/3 throughput, latency and CPU per request: tricorn beside Hypercorn, over QUIC.

The installed h2load (nghttp2 1.52) cannot speak HTTP/3, so the load comes
from a client built here on aioquic's sans-IO core: ``QuicConnection`` and
``H3Connection`` over plain non-blocking UDP sockets and one ``selectors``
loop, no asyncio. ``--clients`` QUIC connections each keep ``--streams``
``GET /`` requests in flight (a new request as soon as one completes) for
``--duration`` seconds, after ``--warmup`` seconds that are not counted.

Each server runs alone with one worker on 127.0.0.1, serving ``bench.app:app``
over HTTPS on a TCP port and HTTP/3 on the same UDP port number, with a
certificate made for the run by trustme (the client verifies it):

- tricorn: ``--quic-bind 127.0.0.1:PORT --certfile ... --keyfile ...`` on
  asyncio, uvloop and trio;
- Hypercorn: ``--quic-bind 127.0.0.1:PORT --certfile ... --keyfile ...`` on
  asyncio, uvloop and trio.

Both run QUIC and HTTP/3 on aioquic; what differs is everything around it.
The table gives completed requests per second, p50 and p99 request time
(from sending the request's HEADERS to the end of its response), the server's
CPU per request (its process group's utime + stime from /proc/PID/stat over
the measured seconds), and the CPU the client and everything else used.

The client is Python too and may be the bottleneck: with one core each, it
often is (``client cpu`` near 1.00). Then req/s says more about the client
than the server, and the server's CPU per request is the number to compare.
The server is pinned to ``--server-cpu`` and the client (this process) to
``--load-cpus``, as the other benchmarks do.

A row fails, loudly, when any request is answered with anything but 200, a
stream is reset, or a connection is closed during the run: no number is
reported for it.

Run it as ``nox -s bench-h3`` or ``python bench/http3.py [--duration 5]
[--clients 8] [--streams 10] [--only tricorn] [--json h3.json]`` from the
repository root. Exit status: 0 when every row was measured, 1 when at least
one failed, 2 when aioquic or trustme is missing or an argument is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import platform
import resource
import selectors
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any, Final

if not __package__:
    # Run as ``python bench/http3.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import http1, record

try:
    from aioquic.h3 import events as h3_events
    from aioquic.h3.connection import H3_ALPN, H3Connection
    from aioquic.quic import events as quic_events
    from aioquic.quic.configuration import QuicConfiguration
    from aioquic.quic.connection import QuicConnection
except ImportError:  # reported by main()
    QuicConnection = None  # type: ignore[assignment,misc]

ROOT: Final = http1.ROOT
APP: Final = http1.APP
HOST: Final = "127.0.0.1"
BASELINE: Final = ("hypercorn", "asyncio")  # the row every ratio is relative to
PROBE_TIMEOUT: Final = 2.0  # seconds for one readiness probe
HANDSHAKE_TIMEOUT: Final = 10.0  # seconds for every client connection's handshake
DRAIN_TIMEOUT: Final = 5.0  # seconds to let the requests in flight finish after a run
MAX_DATAGRAM: Final = 65536


# -- the servers -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    name: str
    loop: str
    argv_template: tuple[str, ...]  # "{port}", "{certfile}", "{keyfile}" are filled in

    @property
    def label(self) -> str:
        return f"{self.name} ({self.loop})"

    def argv(self, port: int, certfile: Path, keyfile: Path) -> list[str]:
        values = {"port": port, "certfile": certfile, "keyfile": keyfile}
        return [sys.executable, *(arg.format(**values) for arg in self.argv_template)]


_TLS: Final = ("--certfile", "{certfile}", "--keyfile", "{keyfile}")


def tricorn(loop: str) -> Row:
    return Row(
        "tricorn",
        loop,
        ("-m", "tricorn", APP, "--bind", f"{HOST}:{{port}}", "--quic-bind", f"{HOST}:{{port}}",
         *_TLS, "--worker-class", loop, "--no-access-log", "--log-level", "warning"),
    )  # fmt: skip


def hypercorn(loop: str) -> Row:
    # Hypercorn's access log is off unless --access-logfile is given.
    return Row(
        "hypercorn",
        loop,
        ("-m", "hypercorn", APP, "--bind", f"{HOST}:{{port}}", "--quic-bind", f"{HOST}:{{port}}",
         *_TLS, "--workers", "1", "--worker-class", loop, "--log-level", "warning"),
    )  # fmt: skip


def rows(args: argparse.Namespace) -> list[Row]:
    loops = ["asyncio", *(["uvloop"] if args.uvloop else []), *(["trio"] if args.trio else [])]
    result = [make(loop) for loop in loops for make in (tricorn, hypercorn)]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        result = [row for row in result if row.name in wanted]
    return result


def free_port() -> int:
    """A loopback port number free for both TCP and UDP (the servers bind both)."""
    for _ in range(50):
        port = http1.free_port()
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            try:
                udp.bind((HOST, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no port free on both TCP and UDP in 50 tries")


@dataclasses.dataclass(frozen=True)
class Certificate:
    certfile: Path
    keyfile: Path
    cafile: Path


def make_certificate(directory: Path) -> Certificate:
    """A fresh CA and a certificate for 127.0.0.1 and localhost."""
    import trustme

    ca = trustme.CA()
    issued = ca.issue_cert(HOST, "localhost")
    certificate = Certificate(directory / "cert.pem", directory / "key.pem", directory / "ca.pem")
    certificate.certfile.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    issued.private_key_pem.write_to_path(str(certificate.keyfile))
    ca.cert_pem.write_to_path(str(certificate.cafile))
    return certificate


# -- the load client ---------------------------------------------------------------


class LoadError(Exception):
    """The run saw a failed request or a lost connection: its numbers do not count."""


class Client:
    """One QUIC connection that keeps ``streams`` GET requests in flight."""

    def __init__(self, address: tuple[str, int], cafile: Path, authority: bytes) -> None:
        configuration = QuicConfiguration(
            is_client=True, alpn_protocols=H3_ALPN, server_name="localhost"
        )
        configuration.load_verify_locations(cafile=str(cafile))
        self.address = address
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.setblocking(False)
        self.sock.connect(address)
        self.quic = QuicConnection(configuration=configuration)
        self.h3 = H3Connection(self.quic)
        self.head = [(b":method", b"GET"), (b":scheme", b"https"), (b":authority", authority),
                     (b":path", b"/")]  # fmt: skip
        self.started: dict[int, int] = {}  # stream id -> perf_counter_ns at send
        self.status: dict[int, bytes] = {}
        self.ready = False
        self.closed: str | None = None
        self.quic.connect(address, now=time.monotonic())

    def request(self) -> None:
        stream_id = self.quic.get_next_available_stream_id()
        self.h3.send_headers(stream_id, self.head, end_stream=True)
        self.started[stream_id] = time.perf_counter_ns()

    def receive(self, now: float) -> None:
        while True:
            try:
                data = self.sock.recv(MAX_DATAGRAM)
            except BlockingIOError:
                return
            except ConnectionRefusedError:  # ICMP port unreachable: not listening (yet)
                self.closed = "connection refused (ICMP port unreachable)"
                return
            self.quic.receive_datagram(data, self.address, now)

    def fire_timer(self, now: float) -> None:
        timer = self.quic.get_timer()
        if timer is not None and timer <= now:
            self.quic.handle_timer(now)

    def events(self) -> Iterator[tuple[int, int | None, str | None]]:
        """(stream id, nanoseconds taken or None, error or None) per finished request."""
        while (event := self.quic.next_event()) is not None:
            if isinstance(event, quic_events.HandshakeCompleted):
                self.ready = True
            elif isinstance(event, quic_events.ConnectionTerminated):
                self.closed = f"closed by the server: {event.error_code:#x} {event.reason_phrase}"
            elif isinstance(event, quic_events.StreamReset) and event.stream_id in self.started:
                self.started.pop(event.stream_id)
                yield event.stream_id, None, f"stream reset with {event.error_code:#x}"
            for h3_event in self.h3.handle_event(event):
                match h3_event:
                    case h3_events.HeadersReceived(stream_id=stream_id, headers=headers):
                        status = dict(headers).get(b":status", b"?")
                        if not status.startswith(b"1"):
                            self.status.setdefault(stream_id, status)
                        ended = h3_event.stream_ended
                    case h3_events.DataReceived(stream_id=stream_id):
                        ended = h3_event.stream_ended
                    case _:
                        continue
                if ended and stream_id in self.started:
                    taken = time.perf_counter_ns() - self.started.pop(stream_id)
                    status = self.status.pop(stream_id, b"none")
                    error = None if status == b"200" else f"answered {status.decode()}"
                    yield stream_id, taken, error

    def transmit(self, now: float) -> None:
        for data, _ in self.quic.datagrams_to_send(now):
            with contextlib.suppress(BlockingIOError, ConnectionRefusedError):
                self.sock.send(data)  # a lost datagram is QUIC's to recover

    def close(self) -> None:
        self.quic.close()
        self.transmit(time.monotonic())
        self.sock.close()


@dataclasses.dataclass
class Counts:
    completed: int = 0
    errors: list[str] = dataclasses.field(default_factory=list)
    latencies_ns: list[int] = dataclasses.field(default_factory=list)


class Load:
    """``clients`` connections to ``port``, driven by one selector loop."""

    def __init__(self, port: int, cafile: Path, clients: int, streams: int) -> None:
        authority = f"{HOST}:{port}".encode()
        self.streams = streams
        self.selector = selectors.DefaultSelector()
        self.clients = [Client((HOST, port), cafile, authority) for _ in range(clients)]
        for client in self.clients:
            self.selector.register(client.sock, selectors.EVENT_READ, client)
        self.issuing = False
        self.counts = Counts()

    def close(self) -> None:
        for client in self.clients:
            with contextlib.suppress(OSError):
                client.close()
        self.selector.close()

    def _step(self, until: float) -> None:
        """Wait for datagrams or the next QUIC timer (at most until ``until``), then react."""
        timers = [t for c in self.clients if (t := c.quic.get_timer()) is not None]
        timeout = max(0.0, min([until, *timers]) - time.monotonic())
        ready = self.selector.select(timeout)
        now = time.monotonic()
        for key, _ in ready:
            key.data.receive(now)
        for client in self.clients:
            client.fire_timer(now)
            for _, taken, error in client.events():
                if error is not None:
                    self.counts.errors.append(error)
                elif taken is not None:
                    self.counts.completed += 1
                    self.counts.latencies_ns.append(taken)
            if client.closed is not None:
                raise LoadError(client.closed)
            if self.issuing and client.ready:
                while len(client.started) < self.streams:
                    client.request()
            client.transmit(now)

    def handshake(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        for client in self.clients:
            client.transmit(time.monotonic())
        while not all(client.ready for client in self.clients):
            if time.monotonic() >= deadline:
                done = sum(client.ready for client in self.clients)
                raise LoadError(f"{done} of {len(self.clients)} handshakes done in {timeout:.0f} s")
            self._step(deadline)

    def run(self, seconds: float) -> Counts:
        """Keep every connection busy for ``seconds``; the counts of that span only."""
        self.issuing = True
        self.counts = Counts()
        deadline = time.monotonic() + seconds
        while (now := time.monotonic()) < deadline:
            self._step(min(deadline, now + 0.05))
        counts, self.counts = self.counts, Counts()
        return counts

    def drain(self, timeout: float) -> None:
        """Stop issuing; let the requests in flight finish (a clean end, not a pile of resets)."""
        self.issuing = False
        deadline = time.monotonic() + timeout
        while any(client.started for client in self.clients) and time.monotonic() < deadline:
            self._step(deadline)


def probe(port: int, cafile: Path) -> str | None:
    """None once one ``GET /`` over HTTP/3 answers 200; otherwise why not (not up yet)."""
    load = Load(port, cafile, clients=1, streams=1)
    try:
        load.handshake(PROBE_TIMEOUT)
        load.issuing = True
        deadline = time.monotonic() + PROBE_TIMEOUT
        while not load.counts.completed and not load.counts.errors:
            if time.monotonic() >= deadline:
                return f"no answer to GET / within {PROBE_TIMEOUT:.0f} s"
            load._step(deadline)
        return load.counts.errors[0] if load.counts.errors else None
    except LoadError as exc:
        return str(exc)
    finally:
        load.close()


def wait_until_up(process: subprocess.Popen[bytes], port: int, cafile: Path) -> str | None:
    deadline = time.monotonic() + http1.STARTUP_TIMEOUT
    why: str | None = "not probed"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode} before answering"
        if (why := probe(port, cafile)) is None:
            return None
        time.sleep(0.1)
    return f"did not answer over HTTP/3 on port {port} within {http1.STARTUP_TIMEOUT:.0f} s: {why}"


# -- one measurement ---------------------------------------------------------------


@dataclasses.dataclass
class Result:
    server: str
    loop: str
    label: str
    status: str = "failed"  # "ok" or "failed"
    requests: int | None = None  # completed in the measured span
    seconds: float | None = None
    requests_per_sec: float | None = None
    p50_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    # CPU during the measured span, in cores (1.0 = one core busy the whole time):
    server_cpu: float | None = None
    client_cpu: float | None = None
    other_cpu: float | None = None  # everything else on the machine: noise
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests_per_sec:
            return None
        return self.server_cpu / self.requests_per_sec * 1e6


@dataclasses.dataclass(frozen=True)
class Snapshot:
    wall: float
    machine: float | None
    server: float | None
    client: float


def snapshot(pgid: int) -> Snapshot:
    try:
        machine: float | None = http1._cpu_times()[0] / http1._TICK
    except (OSError, ValueError, IndexError):
        machine = None
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return Snapshot(
        time.monotonic(), machine, http1.group_cpu_seconds(pgid), usage.ru_utime + usage.ru_stime
    )


def account(result: Result, before: Snapshot, after: Snapshot) -> None:
    wall = after.wall - before.wall
    result.client_cpu = (after.client - before.client) / wall
    if after.server is not None and before.server is not None:
        result.server_cpu = (after.server - before.server) / wall
    if after.machine is not None and before.machine is not None and result.server_cpu is not None:
        machine = (after.machine - before.machine) / wall
        result.other_cpu = max(0.0, machine - result.server_cpu - result.client_cpu)


def percentile(sorted_ns: list[int], q: float) -> float:
    """Nearest rank, in milliseconds."""
    return sorted_ns[min(len(sorted_ns) - 1, max(0, round(q * len(sorted_ns)) - 1))] / 1e6


@contextlib.contextmanager
def running(
    row: Row, port: int, args: argparse.Namespace
) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """The server, in its own process group, its output in a temporary file; stopped after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    cert: Certificate = args.certificate
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            row.argv(port, cert.certfile, cert.keyfile), cwd=ROOT, env=env,
            stdin=subprocess.DEVNULL, stdout=output, stderr=subprocess.STDOUT,
            start_new_session=True, preexec_fn=http1.pinned(http1.server_cpus(args)),
        )  # fmt: skip
        try:
            yield process, output
        finally:
            http1.stop(process)


def measure(row: Row, args: argparse.Namespace) -> Result:
    result = Result(row.name, row.loop, row.label)
    port = free_port()
    cafile = args.certificate.cafile
    with running(row, port, args) as (process, output):
        try:
            if (why := wait_until_up(process, port, cafile)) is not None:
                raise LoadError(why)
            load = Load(port, cafile, args.clients, args.streams)
            try:
                load.handshake(HANDSHAKE_TIMEOUT)
                if args.warmup:
                    load.run(args.warmup)
                before = snapshot(process.pid)
                counts = load.run(args.duration)
                after = snapshot(process.pid)
                load.drain(DRAIN_TIMEOUT)
            finally:
                load.close()
            account(result, before, after)
            if process.poll() is not None:
                raise LoadError(f"the server exited with status {process.returncode}")
            if counts.errors:
                kinds = sorted(set(counts.errors))
                raise LoadError(f"{len(counts.errors)} failed requests: {', '.join(kinds[:3])}")
            if not counts.completed:
                raise LoadError("no request completed")
            times = sorted(counts.latencies_ns)
            result.requests, result.seconds = counts.completed, after.wall - before.wall
            result.requests_per_sec = counts.completed / result.seconds
            result.p50_ms, result.p99_ms = percentile(times, 0.5), percentile(times, 0.99)
            result.max_ms = times[-1] / 1e6
            result.status = "ok"
        except (LoadError, OSError) as exc:
            result.error = f"{exc}\nserver output:\n{http1.tail(output)}"
    return result


# -- report ----------------------------------------------------------------------


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def baseline_rps(results: list[Result]) -> float | None:
    for r in results:
        if (r.server, r.loop) == BASELINE:
            return r.requests_per_sec if r.ok else None
    return None


def table(results: list[Result]) -> str:
    header = ("server", "req/s", "p50 ms", "p99 ms", "cpu µs/req", f"vs {BASELINE[0]}",
              "srv cpu", "client cpu", "other cpu")  # fmt: skip
    base = baseline_rps(results)
    lines = []
    for r in results:
        if not r.ok:
            lines.append((r.label, "FAILED", *("-" * (len(header) - 2))))
            continue
        noisy = " !" if r.other_cpu is not None and r.other_cpu > http1.NOISE_WARNING else ""
        lines.append(
            (
                r.label + noisy,
                _num(r.requests_per_sec, ",.0f"),
                _num(r.p50_ms, ".2f"),
                _num(r.p99_ms, ".2f"),
                _num(r.cpu_us_per_request, ",.0f"),
                f"{r.requests_per_sec / base:.2f}" if base and r.requests_per_sec else "n/a",
                _num(r.server_cpu, ".2f"),
                _num(r.client_cpu, ".2f"),
                _num(r.other_cpu, ".2f"),
            )
        )
    return http1.render_table(header, lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    names = ("tricorn", "hypercorn", "aioquic", "uvloop", "trio", "trustme")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "busy_before_start": http1.busy_fraction(),
        "openssl": ssl.OPENSSL_VERSION,
        "versions": {name: http1.version(name) for name in names},
        "load": {
            "client": "bench/http3.py (aioquic sans-IO, one selectors loop)",
            "clients": args.clients,
            "streams": args.streams,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/http3.py",
        description="Benchmark tricorn beside Hypercorn (HTTP/3 over QUIC, one worker, "
        "an aioquic load client).",
    )
    option = parser.add_argument
    option("--duration", "-D", type=int, default=5, metavar="S",
           help="seconds measured per server (default 5)")  # fmt: skip
    option("--warmup", type=int, default=1, metavar="S",
           help="seconds of unmeasured load first (default 1)")  # fmt: skip
    option("--clients", "-c", type=int, default=8, metavar="N",
           help="QUIC connections (default 8)")  # fmt: skip
    option("--streams", "-m", type=int, default=10, metavar="N",
           help="requests in flight per connection (default 10)")  # fmt: skip
    http1.add_selection_options(parser, example="tricorn")
    helps = {"uvloop": "also run both servers on uvloop", "trio": "also run both servers on trio"}
    for action in parser._actions:
        if action.dest in helps:
            action.help = f"{helps[action.dest]} (default: on)"
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be at least 1 and --warmup at least 0")
    if args.clients < 1 or args.streams < 1:
        parser.error("--clients and --streams must be at least 1")
    return args


def json_row(machine: dict[str, Any], r: Result) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py)."""
    return record.row(
        machine, scenario="hello", server=r.server, loop=r.loop, label=r.label, status=r.status,
        error=r.error, values={"req_s": r.requests_per_sec}, p50_ms=r.p50_ms, p99_ms=r.p99_ms,
        cpu_us_per_req=r.cpu_us_per_request, server_cpu=r.server_cpu, load_cpu=r.client_cpu,
        other_cpu=r.other_cpu,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if QuicConnection is None:
        print("bench/http3.py needs aioquic: pip install 'tricorn[h3]'", file=sys.stderr)
        return 2
    try:
        import trustme  # noqa: F401
    except ImportError:
        print("bench/http3.py needs trustme: pip install trustme", file=sys.stderr)
        return 2
    selected = rows(args)
    env = environment(args)
    machine = record.machine(args, busy=env["busy_before_start"])
    if (cpus := http1.load_cpus(args)) and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, cpus)  # the load client is this process
    print(
        f"{args.clients} QUIC connections x {args.streams} streams of GET /, "
        f"{args.duration} s after {args.warmup} s of warm-up; one worker per server on "
        f"{HOST}; {env['cpus']} CPUs shared by the client and the server",
        file=sys.stderr,
    )
    http1.warn_if_busy(env)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tricorn-bench-h3-") as tmp:
        args.certificate = make_certificate(Path(tmp))
        for row in selected:
            print(f"- {row.label} ...", file=sys.stderr, flush=True)
            r = measure(row, args)
            if r.ok:
                cpu = _num(r.cpu_us_per_request, ",.0f")
                print(f"  {r.requests_per_sec:,.0f} req/s, p99 {_num(r.p99_ms, '.2f')} ms, "
                      f"{cpu} µs CPU/req", file=sys.stderr)  # fmt: skip
            else:
                print(f"  FAILED: {r.error}", file=sys.stderr)
            results.append(r)

    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items())
    sys.stderr.flush()
    print()
    print(f"HTTP/3, Python {env['python']}, {versions}")
    print(f"{args.clients} connections x {args.streams} streams, GET / (13 B), {args.duration} s")
    print(table(results))
    print()
    if any(r.ok and r.other_cpu is not None and r.other_cpu > http1.NOISE_WARNING for r in results):
        print(
            f"! other processes used more than {http1.NOISE_WARNING:.2f} of a core during this "
            "row's run: its numbers are disturbed; rerun on a quiet machine"
        )
    print(
        "cpu µs/req = the server's CPU per request; srv cpu, client cpu = their CPU use in "
        "cores (a client near 1.00 is the bottleneck: compare cpu µs/req then); other cpu = "
        "everything else"
    )
    for r in results:
        if not r.ok:
            print(f"{r.label} failed: {(r.error or 'unknown').splitlines()[0]}")
    if args.json:
        what = f"GET / (13 B), {args.clients} QUIC connections x {args.streams} streams"
        document = record.document(
            "http3",
            "HTTP/3",
            machine,
            [record.scenario("hello", what)],
            [json_row(machine, r) for r in results],
            environment=env,
            baseline=f"{BASELINE[0]} ({BASELINE[1]})",
            results=[
                {**dataclasses.asdict(r), "cpu_us_per_request": r.cpu_us_per_request}
                for r in results
            ],
        )
        http1.write_json(args.json, document)
    return 1 if any(not r.ok for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
