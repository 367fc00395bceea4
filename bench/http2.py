"""HTTP/2 throughput and latency: tricorn beside Hypercorn and Granian, measured with h2load.

Each server runs alone, with one worker, on 127.0.0.1 and a port the OS picked,
serving ``bench.app:app``, started afresh for every transport and workload:

- ``h2c``: cleartext HTTP/2 with prior knowledge (h2load's default for
  ``http://`` URLs: the connection preface, no Upgrade);
- ``tls``: HTTP/2 over TLS, chosen by ALPN (h2load offers only ``h2``), with
  a certificate made for the run by trustme and written to a temporary
  directory.

On each, h2load runs two workloads: ``hello``, ``GET /`` (13 bytes), and
``body``, ``GET /bytes/65536``: 64 KiB, one byte more than the RFC's initial
flow-control window of 65,535 bytes, which h2load is told to keep for streams
and the connection (``-w 16 -W 16``; its own default is 2**30-1), so every
response waits for at least one WINDOW_UPDATE. ``--clients`` connections each keep
``--streams`` requests in flight. By default a run is timing-based
(``h2load -D``, after ``--warm-up-time``), so a fast and a slow server are
measured for the same time; ``--requests N`` makes it count-based (``-n N``,
after an unmeasured run of N/10). The tables give requests per second, the
mean and 99th percentile request time (from h2load's per-request log), the
server's CPU per request, and the throughput relative to Hypercorn.

A row fails, loudly, if h2load saw a failed, errored or timed-out request or
any non-2xx answer, or negotiated anything but HTTP/2: no number is reported
for it. Only a tricorn row that does not speak HTTP/2 at all (it answers the
preface as HTTP/1.1, does not offer h2 by ALPN, or rejects the command-line
options) is skipped instead, with the reason. Hypercorn gets a config file
that lifts its cap of 1,000 requests per connection, which h2load, as it
does not reconnect, would count as failures.

Run it as ``nox -s bench-h2`` or ``python bench/http2.py [--duration 5]
[--clients 16] [--streams 10] [--only hypercorn,granian] [--json h2.json]``
from the repository root. It needs h2load (``apt-get install -y
nghttp2-client``) and, for the TLS rows, trustme. Exit status: 0 when every
row was measured or skipped, 1 when at least one failed, 2 when h2load or
trustme is missing or an argument is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import math
import os
import platform
import re
import socket
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO, Any, Final

import h2.config
import h2.connection
import h2.events
import h2.exceptions

if not __package__:
    # Run as ``python bench/http2.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import http1, record

ROOT: Final = http1.ROOT
APP: Final = http1.APP
HOST: Final = "127.0.0.1"
BASELINE: Final = ("hypercorn", "asyncio")  # the row every ratio is relative to
#: Servers whose rows are skipped, not failed, when they do not speak HTTP/2.
MAY_LACK_H2: Final = frozenset({"tricorn"})

PROBE_TIMEOUT: Final = 2.0  # seconds for one readiness probe
H2LOAD_SLACK: Final = 60.0  # seconds h2load may take beyond its planned time

TRANSPORTS: Final = ("h2c", "tls")
WORKLOADS: Final = ("hello", "body")

#: The flags that give each server its certificate and key.
TLS_FLAGS: Final = {
    "tricorn": ("--certfile", "--keyfile"),
    "hypercorn": ("--certfile", "--keyfile"),
    "granian": ("--ssl-certificate", "--ssl-keyfile"),
}
#: Hypercorn's --config file: no cap on the requests per connection (see as_run).
HYPERCORN_CONFIG: Final = "keep_alive_max_requests = 2147483647\n"


# -- the servers -------------------------------------------------------------

#: One row of the table: a server and its event loop.
Row = http1.Server


def granian(loop: str) -> Row:
    return http1.granian(loop, http="2")


def rows(args: argparse.Namespace) -> list[Row]:
    """tricorn and Hypercorn as in bench/http1.py (h2c needs no flag), and Granian."""
    result = [http1.tricorn("asyncio"), http1.hypercorn("asyncio"), granian("asyncio")]
    if args.uvloop:
        result += [http1.tricorn("uvloop"), http1.hypercorn("uvloop"), granian("uvloop")]
    if args.trio:
        # Granian has no trio support.
        result += [http1.tricorn("trio"), http1.hypercorn("trio")]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        result = [row for row in result if row.name in wanted]
    return result


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A server certificate and its key on disk, and a client context that trusts it."""

    certfile: Path
    keyfile: Path
    client: ssl.SSLContext


def make_certificate(directory: Path) -> Certificate:
    """A fresh CA and a certificate for 127.0.0.1, the key in PKCS#8 (Granian needs it)."""
    import trustme
    from cryptography.hazmat.primitives import serialization

    ca = trustme.CA()
    issued = ca.issue_cert(HOST, "localhost")
    certfile, keyfile = directory / "cert.pem", directory / "key.pem"
    certfile.write_bytes(b"".join(blob.bytes() for blob in issued.cert_chain_pems))
    key = serialization.load_pem_private_key(issued.private_key_pem.bytes(), password=None)
    keyfile.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    client = ssl.create_default_context()
    ca.configure_trust(client)
    client.set_alpn_protocols(["h2"])
    return Certificate(certfile, keyfile, client)


def as_run(row: Row, transport: str, args: argparse.Namespace) -> Row:
    """``row`` with what this benchmark adds: TLS options, and Hypercorn's config.

    Hypercorn closes every connection after 1,000 requests by default
    (``keep_alive_max_requests``). h2load does not reconnect, so the streams
    left would count as failures: the config file lifts the cap, and every
    server keeps its connections for the whole run.
    """
    extra: list[str] = []
    if row.name == "hypercorn":
        extra += ["--config", str(args.hypercorn_config)]
    if transport == "tls":
        cert_flag, key_flag = TLS_FLAGS[row.name]
        cert: Certificate = args.certificate
        extra += [cert_flag, str(cert.certfile), key_flag, str(cert.keyfile)]
    # Row.argv() formats every argument: protect braces in the paths.
    extra = [arg.replace("{", "{{").replace("}", "}}") for arg in extra]
    return dataclasses.replace(row, argv_template=(*row.argv_template, *extra))


# -- is it up, and does it speak HTTP/2? ---------------------------------------


class NoHttp2(Exception):
    """The server answers, but not in HTTP/2."""


def probe(port: int, tls: ssl.SSLContext | None) -> str | None:
    """None once ``GET /`` over HTTP/2 answers 200; otherwise why not (not up yet).

    Raises NoHttp2 when the server answered but does not speak HTTP/2.
    """
    try:
        sock = socket.create_connection((HOST, port), timeout=PROBE_TIMEOUT)
    except OSError as exc:
        return f"cannot connect: {exc}"
    try:
        if tls is not None:
            try:
                sock = tls.wrap_socket(sock, server_hostname=HOST)
            except (ssl.SSLError, OSError) as exc:
                return f"TLS handshake failed: {exc}"
            if (chosen := sock.selected_alpn_protocol()) != "h2":
                raise NoHttp2(f"offered ALPN h2 and the server chose {chosen or 'none'}")
        conn = h2.connection.H2Connection(h2.config.H2Configuration())
        conn.initiate_connection()
        stream = conn.get_next_available_stream_id()
        scheme = "https" if tls is not None else "http"
        head = [(":method", "GET"), (":scheme", scheme), (":authority", f"{HOST}:{port}"),
                (":path", "/")]  # fmt: skip
        conn.send_headers(stream, head, end_stream=True)
        sock.sendall(conn.data_to_send())
        first, status = True, None
        while True:
            data = sock.recv(65536)
            if not data:
                return "closed the connection without an HTTP/2 answer"
            if first and data.startswith(b"HTTP/"):
                line = data.split(b"\r\n", 1)[0].decode("latin-1")
                raise NoHttp2(f"answered the HTTP/2 preface with {line!r}")
            first = False
            try:
                events = conn.receive_data(data)
            except h2.exceptions.ProtocolError as exc:
                raise NoHttp2(f"answered the HTTP/2 preface with {data[:32]!r}: {exc}") from exc
            for event in events:
                if isinstance(event, h2.events.ResponseReceived):
                    status = dict(event.headers).get(b":status", b"").decode("latin-1")
                elif isinstance(event, h2.events.StreamEnded):
                    return None if status == "200" else f"GET / answered {status}"
                elif isinstance(event, h2.events.StreamReset | h2.events.ConnectionTerminated):
                    return f"GET / ended with {event}"
            sock.sendall(conn.data_to_send())
    except OSError as exc:  # a timeout, a reset
        return f"no answer: {exc}"
    finally:
        sock.close()


def wait_until_up(
    process: subprocess.Popen[bytes], port: int, tls: ssl.SSLContext | None
) -> str | None:
    """None once the server answers over HTTP/2; otherwise why it did not.

    Raises NoHttp2 as soon as it answers in something else.
    """
    deadline = time.monotonic() + http1.STARTUP_TIMEOUT
    why: str | None = "not probed"
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode} before answering"
        why = probe(port, tls)
        if why is None:
            return None
        time.sleep(0.1)
    return f"did not answer on port {port} within {http1.STARTUP_TIMEOUT:.0f} s: {why}"


# -- h2load ----------------------------------------------------------------------


@dataclasses.dataclass
class Result:
    server: str
    loop: str
    transport: str  # "h2c" or "tls"
    workload: str  # "hello" or "body"
    label: str
    status: str = "failed"  # "ok", "skipped" or "failed"
    requests_per_sec: float | None = None
    mb_per_sec: float | None = None  # h2load's traffic rate, frames included (MB = 10**6 B)
    elapsed_s: float | None = None  # h2load's "finished in" (warm-up included when timing-based)
    protocol: str | None = None  # h2load's "Application protocol"
    requests: dict[str, int] = dataclasses.field(default_factory=dict)  # total, done, failed...
    status_codes: dict[str, int] = dataclasses.field(default_factory=dict)  # 2xx, 3xx, ...
    mean_ms: float | None = None  # h2load's "time for request" mean
    max_ms: float | None = None
    p50_ms: float | None = None  # from h2load's --log-file
    p99_ms: float | None = None
    # CPU during the h2load run, in cores (1.0 = one core busy the whole time):
    server_cpu: float | None = None
    h2load_cpu: float | None = None
    other_cpu: float | None = None  # everything else on the machine: noise
    error: str | None = None  # why the row failed or was skipped
    h2load_output: str = ""

    @property
    def ok(self) -> bool:
        return self.status == "ok"

    @property
    def cpu_us_per_request(self) -> float | None:
        if self.server_cpu is None or not self.requests_per_sec:
            return None
        return self.server_cpu / self.requests_per_sec * 1e6


_RATE_UNITS: Final = {"B": 1e-6, "KB": 1024 / 1e6, "MB": 1024**2 / 1e6, "GB": 1024**3 / 1e6}
_FINISHED: Final = re.compile(
    r"^finished in ([\d.]+)(us|ms|s|m|h), ([\d.]+) req/s, ([\d.]+)(B|KB|MB|GB)/s", re.MULTILINE
)
_REQUESTS: Final = re.compile(
    r"^requests: (?P<total>\d+) total, (?P<started>\d+) started, (?P<done>\d+) done, "
    r"(?P<succeeded>\d+) succeeded, (?P<failed>\d+) failed, (?P<errored>\d+) errored, "
    r"(?P<timeout>\d+) timeout",
    re.MULTILINE,
)
_CODES: Final = re.compile(
    r"^status codes: (?P<c2xx>\d+) 2xx, (?P<c3xx>\d+) 3xx, (?P<c4xx>\d+) 4xx, (?P<c5xx>\d+) 5xx",
    re.MULTILINE,
)
_TIME: Final = r"([\d.]+)(us|ms|s|m|h)"
_REQUEST_TIME: Final = re.compile(
    rf"^time for request:\s+{_TIME}\s+{_TIME}\s+{_TIME}", re.MULTILINE
)
_PROTOCOL: Final = re.compile(r"^Application protocol: (\S+)", re.MULTILINE)
_NO_PROTOCOL: Final = "No protocol negotiated"


def parse_h2load(output: str, result: Result, expected_protocol: str) -> None:
    """Fill in ``result`` from h2load's report.

    Raises NoHttp2 when h2load did not get HTTP/2, ValueError when the report
    has no numbers or shows a single failed request or non-2xx answer.
    """
    if _NO_PROTOCOL in output:
        raise NoHttp2(f"h2load: {_NO_PROTOCOL}")
    if (protocol := _PROTOCOL.search(output)) is not None:
        result.protocol = protocol.group(1)
        if result.protocol != expected_protocol:
            raise NoHttp2(f"h2load negotiated {result.protocol}, not {expected_protocol}")
    finished, requests, codes = (p.search(output) for p in (_FINISHED, _REQUESTS, _CODES))
    if finished is None or requests is None or codes is None:
        raise ValueError("h2load printed no 'finished in', 'requests:' or 'status codes:' line")
    result.elapsed_s = http1.to_ms(finished.group(1), finished.group(2)) / 1e3
    result.requests = {name: int(value) for name, value in requests.groupdict().items()}
    result.status_codes = {
        name[1:]: int(value) for name, value in codes.groupdict().items()
    }  # fmt: skip
    if times := _REQUEST_TIME.search(output):
        result.max_ms = http1.to_ms(times.group(3), times.group(4))
        result.mean_ms = http1.to_ms(times.group(5), times.group(6))
    problems = [
        f"{result.requests[kind]} {kind}"
        for kind in ("failed", "errored", "timeout")
        if result.requests[kind]
    ]
    problems += [
        f"{n} {code} answers" for code, n in result.status_codes.items() if n and code != "2xx"
    ]
    if not result.requests["succeeded"]:
        problems.append("no request succeeded")
    if problems:
        raise ValueError("h2load saw " + ", ".join(problems))
    result.requests_per_sec = float(finished.group(3))
    result.mb_per_sec = float(finished.group(4)) * _RATE_UNITS[finished.group(5)]


def percentile(ordered: Sequence[float], q: float) -> float:
    """The ``q`` quantile (0 < q <= 1) of ``ordered`` (sorted), by nearest rank.

    The smallest value that at least ``q`` of all values are at most: of 1,000
    times, p99 is the 990th smallest, so ten are above it (or equal to it).
    """
    if not ordered or not 0 < q <= 1:
        raise ValueError(f"a quantile in (0, 1] of at least one value, not {q} of {len(ordered)}")
    rank = math.ceil(q * len(ordered) - 1e-9)  # 0.99 * 100 is 99.00000000000001
    return ordered[max(rank, 1) - 1]


def percentiles(log: Path, result: Result) -> None:
    """p50 and p99 (nearest rank) of the request times in h2load's --log-file."""
    with log.open() as file:
        times = sorted(int(line.split("\t")[2]) for line in file if line.strip())
    if times:
        result.p50_ms, result.p99_ms = (percentile(times, q) / 1e3 for q in (0.5, 0.99))


def h2load_argv(url: str, args: argparse.Namespace, *, requests: int | None) -> list[str]:
    """h2load for ``url``: count-based with ``requests``, else timing-based."""
    argv = [
        "h2load", f"--clients={args.clients}", f"--max-concurrent-streams={args.streams}",
        f"--threads={args.threads}", f"--window-bits={args.window_bits}",
        f"--connection-window-bits={args.connection_window_bits}",
    ]  # fmt: skip
    if url.startswith("https:"):
        argv.append("--npn-list=h2")  # ALPN: h2 or nothing, never a silent HTTP/1.1
    if requests is not None:
        argv.append(f"--requests={requests}")
    else:
        argv += [f"--duration={args.duration}", f"--warm-up-time={args.warmup}"]
    return [*argv, url]


def run_h2load(argv: list[str], args: argparse.Namespace) -> str:
    # Count-based, allow for a rate as low as 100 req/s.
    planned = args.requests / 100 if args.requests else args.duration + args.warmup
    done = subprocess.run(
        argv,
        capture_output=True,
        text=True,
        timeout=planned + H2LOAD_SLACK,
        check=False,
        preexec_fn=http1.pinned(http1.load_cpus(args)),
    )
    if done.returncode != 0:
        raise RuntimeError(f"h2load exited with status {done.returncode}: {done.stderr.strip()}")
    return done.stdout


def load(
    process: subprocess.Popen[bytes], url: str, result: Result, args: argparse.Namespace
) -> None:
    """Warm up, measure and parse one workload; raises on any failure."""
    log = Path(args.tmp) / "requests.log"
    log.unlink(missing_ok=True)  # h2load appends to its --log-file
    if args.requests is not None and (warmup := args.requests // 10) >= args.clients:
        run_h2load(h2load_argv(url, args, requests=warmup), args)
    argv = h2load_argv(url, args, requests=args.requests)
    argv.insert(-1, f"--log-file={log}")
    before = http1.cpu_snapshot(process.pid)
    result.h2load_output = run_h2load(argv, args)
    cpu = http1.Result(result.server, result.loop, ok=False)
    http1.account_cpu(cpu, before, http1.cpu_snapshot(process.pid))
    result.server_cpu, result.h2load_cpu, result.other_cpu = (
        cpu.server_cpu, cpu.wrk_cpu, cpu.other_cpu
    )  # fmt: skip
    if process.poll() is not None:
        raise RuntimeError(f"the server exited with status {process.returncode} during the run")
    parse_h2load(result.h2load_output, result, "h2" if url.startswith("https:") else "h2c")
    percentiles(log, result)


# -- one measurement ------------------------------------------------------------


@contextlib.contextmanager
def running(
    row: Row, port: int, args: argparse.Namespace
) -> Iterator[tuple[subprocess.Popen[bytes], IO[bytes]]]:
    """The server, in its own process group, its output in a temporary file; stopped after."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    with tempfile.TemporaryFile() as output:
        process = subprocess.Popen(
            row.argv(port), cwd=ROOT, env=env, stdin=subprocess.DEVNULL, stdout=output,
            stderr=subprocess.STDOUT, start_new_session=True,
            preexec_fn=http1.pinned(http1.server_cpus(args)),
        )  # fmt: skip
        try:
            yield process, output
        finally:
            http1.stop(process)


def skip_reason(row: Row, output: IO[bytes], no_h2: str | None) -> str | None:
    """Why ``row`` is skipped: it may lack HTTP/2 (or TLS options), and it does; else None."""
    if row.name not in MAY_LACK_H2:
        return None
    for line in http1.tail(output).splitlines():
        if "unrecognized arguments" in line:  # argparse: no --certfile/--keyfile yet
            return f"{row.name} does not take the options it is run with: {line.strip()}"
    return None if no_h2 is None else f"{row.name} does not speak HTTP/2 yet: {no_h2}"


def measure(row: Row, transport: str, workload: str, args: argparse.Namespace) -> Result:
    """One workload against a fresh ``row`` started for ``transport``.

    A fresh process each time: h2load ends a timing-based run by closing its
    connections with streams in flight, and what a server makes of that must
    not leak into the next measurement.
    """
    result = Result(row.name, row.loop, transport, workload, row.label)
    tls = args.certificate.client if transport == "tls" else None
    port = http1.free_port()
    path = "/" if workload == "hello" else f"/bytes/{args.body_size}"
    url = f"{'https' if tls is not None else 'http'}://{HOST}:{port}{path}"
    with running(as_run(row, transport, args), port, args) as (process, output):
        skip = None
        try:
            if (why := wait_until_up(process, port, tls)) is None:
                load(process, url, result, args)
                result.status = "ok"
                return result
            skip, result.error = skip_reason(row, output, None), why
        except NoHttp2 as exc:
            skip, result.error = skip_reason(row, output, str(exc)), str(exc)
        except (RuntimeError, ValueError, subprocess.TimeoutExpired, OSError) as exc:
            result.error = f"{exc}\n{result.h2load_output}".strip()
        if skip is not None:
            result.status, result.error = "skipped", skip
        else:
            result.error += f"\nserver output:\n{http1.tail(output)}"
    return result


# -- report ----------------------------------------------------------------------


def scenario(transport: str, workload: str, args: argparse.Namespace) -> str:
    what = "GET / (13 B)" if workload == "hello" else f"GET /bytes/{args.body_size}"
    how = "cleartext, prior knowledge" if transport == "h2c" else "TLS, ALPN h2"
    return f"{transport} {workload}: {what}, {how}"


def baseline_rps(results: list[Result], transport: str, workload: str) -> float | None:
    for r in results:
        if (r.server, r.loop) == BASELINE and (r.transport, r.workload) == (transport, workload):
            return r.requests_per_sec if r.ok else None
    return None


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    header = ("server", "req/s", "MB/s", "mean ms", "p99 ms", "cpu µs/req", f"vs {BASELINE[0]}",
              "srv cpu", "other cpu")  # fmt: skip
    lines = []
    for r in results:
        if not r.ok:
            lines.append((r.label, r.status.upper(), *("-" * (len(header) - 2))))
            continue
        base = baseline_rps(results, r.transport, r.workload)
        noisy = " !" if r.other_cpu is not None and r.other_cpu > http1.NOISE_WARNING else ""
        lines.append(
            (
                r.label + noisy,
                _num(r.requests_per_sec, ",.0f"),
                _num(r.mb_per_sec, ",.1f"),
                _num(r.mean_ms, ".2f"),
                _num(r.p99_ms, ".2f"),
                _num(r.cpu_us_per_request, ",.0f"),
                f"{r.requests_per_sec / base:.2f}" if base and r.requests_per_sec else "n/a",
                _num(r.server_cpu, ".2f"),
                _num(r.other_cpu, ".2f"),
            )
        )
    return http1.render_table(header, lines)


def summary(results: list[Result], args: argparse.Namespace) -> str:
    """req/s of every row in every scenario, side by side."""
    columns = [(t, w) for t in args.transports for w in args.workloads]
    labels = list(dict.fromkeys(r.label for r in results))
    by_key = {(r.label, r.transport, r.workload): r for r in results}
    lines = []
    for label in labels:
        cells = []
        for t, w in columns:
            r = by_key.get((label, t, w))
            cells.append(_num(r.requests_per_sec, ",.0f") if r is not None and r.ok else "-")
        lines.append((label, *cells))
    return http1.render_table(("req/s", *(f"{t} {w}" for t, w in columns)), lines)


def h2load_version() -> str:
    done = subprocess.run(["h2load", "--version"], capture_output=True, text=True, check=False)
    return done.stdout.strip() or "h2load (unknown version)"


def environment(args: argparse.Namespace) -> dict[str, Any]:
    names = ("tricorn", "hypercorn", "granian", "h2", "uvloop", "trio", "trustme")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "busy_before_start": http1.busy_fraction(),
        "h2load": h2load_version(),
        "openssl": ssl.OPENSSL_VERSION,
        "versions": {name: http1.version(name) for name in names},
        "h2load_args": {
            "clients": args.clients,
            "max_concurrent_streams": args.streams,
            "threads": args.threads,
            "window_bits": args.window_bits,
            "connection_window_bits": args.connection_window_bits,
            "duration_s": None if args.requests else args.duration,
            "warmup_s": None if args.requests else args.warmup,
            "requests": args.requests,
            "body_size": args.body_size,
        },
    }


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/http2.py",
        description="Benchmark tricorn beside Hypercorn and Granian (HTTP/2, one worker, h2load).",
    )
    option = parser.add_argument
    option(
        "--duration",
        "-D",
        type=int,
        default=5,
        metavar="S",
        help="seconds measured per workload, timing-based (default 5)",
    )
    option(
        "--warmup",
        type=int,
        default=1,
        metavar="S",
        help="seconds of unmeasured load first (default 1)",
    )
    option(
        "--requests",
        "-n",
        type=int,
        metavar="N",
        help="count-based instead: N requests per workload, after N/10 unmeasured",
    )
    option(
        "--clients", "-c", type=int, default=16, metavar="N", help="h2load connections (default 16)"
    )
    option(
        "--streams",
        "-m",
        type=int,
        default=10,
        metavar="N",
        help="max concurrent streams per connection (default 10)",
    )
    option("--threads", "-t", type=int, default=1, metavar="N", help="h2load threads (default 1)")
    option(
        "--window-bits",
        "-w",
        type=int,
        default=16,
        metavar="N",
        help="h2load's stream window is 2**N-1 (default 16: the RFC's 65,535)",
    )
    option(
        "--connection-window-bits",
        "-W",
        type=int,
        default=16,
        metavar="N",
        help="h2load's connection window is 2**N-1 (default 16)",
    )
    option(
        "--body-size",
        type=int,
        default=65536,
        metavar="BYTES",
        help="the body workload's response size (default 65536)",
    )
    option(
        "--transports",
        type=lambda v: http1.comma_names(v, TRANSPORTS),
        default=list(TRANSPORTS),
        metavar="NAMES",
        help="comma-separated: h2c (cleartext, prior knowledge), tls (ALPN) (default: h2c,tls)",
    )
    option("--workloads", type=lambda v: http1.comma_names(v, WORKLOADS), default=list(WORKLOADS),
           metavar="NAMES", help="comma-separated: hello (GET /), body (GET /bytes/SIZE) "
           "(default: hello,body)")  # fmt: skip
    http1.add_selection_options(parser, example="hypercorn,granian")
    helps = {
        "uvloop": "also run every server on uvloop",
        "trio": "also run tricorn and Hypercorn on trio",
    }
    for action in parser._actions:
        if action.dest in helps:
            action.help = f"{helps[action.dest]} (default: on)"
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be at least 1 and --warmup at least 0")
    if args.threads < 1 or args.clients < args.threads or args.streams < 1:
        parser.error("--threads and --streams must be at least 1, --clients at least --threads")
    if args.requests is not None and args.requests < args.clients:
        parser.error("--requests must be at least --clients")
    if not 0 <= args.body_size <= 16 * 1024 * 1024:
        parser.error("--body-size must be between 0 and 16 MiB (bench.app's limit)")
    if not (14 <= args.window_bits <= 30 and 14 <= args.connection_window_bits <= 30):
        parser.error("window bits must be between 14 and 30")
    return args


def json_row(machine: dict[str, Any], r: Result) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py); its scenario is ``transport-workload``."""
    return record.row(
        machine, scenario=f"{r.transport}-{r.workload}", server=r.server, loop=r.loop,
        label=r.label, status=r.status, error=r.error,
        values={"req_s": r.requests_per_sec, "mb_s": r.mb_per_sec}, p50_ms=r.p50_ms,
        p99_ms=r.p99_ms, cpu_us_per_req=r.cpu_us_per_request, server_cpu=r.server_cpu,
        load_cpu=r.h2load_cpu, other_cpu=r.other_cpu,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not http1.has_tool(
        "h2load", "nghttp2's HTTP/2 load generator", "nghttp2-client", "bench/http2.py"
    ):
        return 2
    selected = rows(args)
    env = environment(args)
    machine = record.machine(
        args,
        busy=env["busy_before_start"],
        tools={"h2load": env["h2load"], "openssl": env["openssl"]},
    )
    mode = (
        f"-n {args.requests}"
        if args.requests
        else f"-D {args.duration} --warm-up-time {args.warmup}"
    )
    print(
        f"h2load -c {args.clients} -m {args.streams} -t {args.threads} -w {args.window_bits} "
        f"-W {args.connection_window_bits} {mode}; one worker per server on 127.0.0.1; "
        f"{env['cpus']} CPUs shared by h2load and the server",
        file=sys.stderr,
    )
    http1.warn_if_busy(env)
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="tricorn-bench-h2-") as tmp:
        args.tmp = tmp
        args.certificate = None
        args.hypercorn_config = Path(tmp) / "hypercorn.toml"
        args.hypercorn_config.write_text(HYPERCORN_CONFIG)
        if "tls" in args.transports:
            try:
                args.certificate = make_certificate(Path(tmp))
            except ImportError as exc:
                print(f"the TLS rows need trustme ({exc}); pip install trustme, or "
                      "--transports h2c", file=sys.stderr)  # fmt: skip
                return 2
        for row in selected:
            for transport in args.transports:
                print(f"- {row.label}, {transport} ...", file=sys.stderr, flush=True)
                for workload in args.workloads:
                    r = measure(row, transport, workload, args)
                    if r.ok:
                        print(f"  {r.workload}: {r.requests_per_sec:,.0f} req/s, "
                              f"p99 {_num(r.p99_ms, '.2f')} ms", file=sys.stderr)  # fmt: skip
                    else:
                        print(f"  {r.workload}: {r.status.upper()}: {r.error}", file=sys.stderr)
                    results.append(r)

    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items())
    sys.stderr.flush()
    print()
    print(f"HTTP/2, {env['h2load']}, Python {env['python']}, {versions}")
    for transport in args.transports:
        for workload in args.workloads:
            print()
            print(scenario(transport, workload, args))
            print(table([r for r in results if (r.transport, r.workload) == (transport, workload)]))
    print()
    print(summary(results, args))
    print()
    if any(r.ok and r.other_cpu is not None and r.other_cpu > http1.NOISE_WARNING for r in results):
        print(
            f"! other processes used more than {http1.NOISE_WARNING:.2f} of a core during this "
            "row's run: its numbers are disturbed; rerun on a quiet machine"
        )
    print(
        "MB/s = h2load's traffic, frames and headers included; cpu µs/req = the server's CPU "
        "per request; srv cpu = the server's CPU use, in cores; other cpu = everything except "
        "the server and h2load"
    )
    for r in results:
        if not r.ok:
            first = (r.error or "unknown").splitlines()[0]
            print(f"{r.label}, {r.transport} {r.workload} {r.status}: {first}")

    if args.json:
        own = [
            {
                **dataclasses.asdict(r),
                "cpu_us_per_request": r.cpu_us_per_request,
                "ratio_to_baseline": (
                    r.requests_per_sec / base
                    if r.ok
                    and r.requests_per_sec
                    and (base := baseline_rps(results, r.transport, r.workload))
                    else None
                ),
            }
            for r in results
        ]
        document = record.document(
            "http2",
            "HTTP/2",
            machine,
            [
                record.scenario(f"{t}-{w}", scenario(t, w, args))
                for t in args.transports
                for w in args.workloads
            ],
            [json_row(machine, r) for r in results],
            environment=env,
            baseline=f"{BASELINE[0]} ({BASELINE[1]})",
            results=own,
        )
        http1.write_json(args.json, document)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
