"""Memory per idle connection and CPU per new connection: tricorn beside Uvicorn and Hypercorn.

Each measurement starts a fresh server (one worker, 127.0.0.1, a port the OS
picked, pinned to ``--server-cpu``) serving ``bench.ws_app:app``, and a client
process pinned to ``--load-cpus`` that speaks plain sockets:

- **http1**: N connections, each sends one ``GET /`` (keep-alive), reads the
  answer and stays open, idle.
- **h2**: N connections, each opens HTTP/2 with prior knowledge (h2c), sends
  one ``GET /``, reads the answer and stays open, idle (not Uvicorn: it has
  no HTTP/2).
- **ws**: N WebSockets, each is accepted, echoes one small text message and
  stays open, idle.

A few connections of the same kind are opened first and kept (the warm-up:
imports, caches and the allocator's first arenas are paid for there). Then
the server's resident memory (VmRSS, summed over its process group) is read,
the N connections are opened, the memory is read again once it stops moving,
and the difference divided by N is the row's bytes per connection.

**accept** runs N sequential cycles of connect, one ``GET /``, read the
answer, close, and divides the server's CPU time (utime + stime from
/proc/PID/stat, summed over its process group) by N. For reference it also
sends N requests one after another on a single keep-alive connection; the
difference between the two is what a new connection costs beyond its
request.

Run it as ``nox -s bench-memory`` or ``python bench/memory.py [--connections
1000] [--kinds http1,h2,ws,accept] [--only tricorn] [--json memory.json]`` from
the repository root. Exit status: 0 when every measurement succeeded, 1 when
at least one failed, 2 when an argument is wrong.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import dataclasses
import os
import platform
import resource
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any, Final

if not __package__:
    # Run as ``python bench/memory.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import http1, record

ROOT: Final = Path(__file__).resolve().parent.parent
THIS: Final = str(Path(__file__).resolve())
APP: Final = "bench.ws_app:app"  # HTTP goes on to bench.app, WebSockets echo
HOST: Final = "127.0.0.1"
#: Long enough that no connection is closed as idle while it is measured.
IDLE_TIMEOUT: Final = 600

KINDS: Final = ("http1", "h2", "ws", "accept")
MEMORY_KINDS: Final = ("http1", "h2", "ws")
MAX_CONNECTIONS: Final = 10_000
MAX_CYCLES: Final = 50_000
BATCH: Final = 32  # connections opened at once (Hypercorn's backlog is 100)
SOCKET_TIMEOUT: Final = 10.0  # per connect, send and receive in the client
SETTLE_INTERVAL: Final = 0.25  # seconds between RSS samples while it settles
SETTLE_TIMEOUT: Final = 5.0  # at most this long waiting for RSS to stop moving
SETTLE_BYTES: Final = 64 * 1024  # RSS moving less than this between samples is settled
BODY: Final = b"Hello, world!"  # bench.app's answer: the end of a response
GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


# -- the servers -------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Row:
    """A server, its event loop, how to start it, and what it is measured on."""

    server: http1.Server
    kinds: frozenset[str]

    @property
    def label(self) -> str:
        return self.server.label


def tricorn(loop: str) -> Row:
    server = http1.Server(
        "tricorn",
        loop,
        ("-m", "tricorn", APP, "--bind", f"{HOST}:{{port}}", "--worker-class", loop,
         "--no-access-log", "--log-level", "warning", "--keep-alive-timeout", str(IDLE_TIMEOUT)),
    )  # fmt: skip
    return Row(server, frozenset(KINDS))


def uvicorn(ws: str, loop: str, kinds: Sequence[str]) -> Row:
    server = http1.Server(
        "uvicorn",
        loop,
        ("-m", "uvicorn", APP, "--http", "h11", "--ws", ws, "--loop", loop, "--no-access-log",
         "--host", HOST, "--port", "{port}", "--workers", "1", "--log-level", "warning",
         "--timeout-keep-alive", str(IDLE_TIMEOUT)),
        impl=ws,
    )  # fmt: skip
    return Row(server, frozenset(kinds))


def hypercorn(loop: str) -> Row:
    server = http1.Server(
        "hypercorn",
        loop,
        ("-m", "hypercorn", APP, "--bind", f"{HOST}:{{port}}", "--workers", "1",
         "--worker-class", loop, "--log-level", "warning", "--keep-alive", str(IDLE_TIMEOUT)),
    )  # fmt: skip
    return Row(server, frozenset(KINDS))


def rows(args: argparse.Namespace) -> list[Row]:
    # Uvicorn has no HTTP/2. Its WebSocket library matters for the ws row
    # only: the default (websockets) everywhere, wsproto (tricorn's) beside it.
    no_h2 = ("http1", "ws", "accept")
    result = [
        tricorn("asyncio"),
        uvicorn("websockets", "asyncio", no_h2),
        uvicorn("wsproto", "asyncio", ("ws",)),
        hypercorn("asyncio"),
    ]
    if args.uvloop:
        result += [
            tricorn("uvloop"),
            uvicorn("websockets", "uvloop", no_h2),
            uvicorn("wsproto", "uvloop", ("ws",)),
        ]
    if args.trio:
        # Uvicorn has no trio support; Hypercorn does.
        result += [tricorn("trio"), hypercorn("trio")]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        result = [row for row in result if row.server.name in wanted]
    return result


# -- the client (a separate process, pinned to the load CPUs) ----------------


def read_until(sock: socket.socket, buffer: bytearray, marker: bytes) -> None:
    """Receive into ``buffer`` until it holds ``marker``; bounded by the socket's timeout."""
    while marker not in buffer:
        if len(buffer) > 1024 * 1024:
            raise RuntimeError(f"no {marker!r} in the first MiB of the answer")
        chunk = sock.recv(65536)
        if not chunk:
            raise RuntimeError(f"the server closed the connection before {marker!r}")
        buffer += chunk


def http1_request(port: int) -> bytes:
    return f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\n\r\n".encode("ascii")


def connect(port: int) -> socket.socket:
    return socket.create_connection((HOST, port), timeout=SOCKET_TIMEOUT)


def open_http1(port: int, count: int) -> list[socket.socket]:
    """``count`` connections, each after one answered keep-alive request."""
    socks = [connect(port) for _ in range(count)]
    request = http1_request(port)
    for sock in socks:
        sock.sendall(request)
    for sock in socks:
        read_until(sock, bytearray(), BODY)
    return socks


def open_h2(port: int, count: int) -> list[socket.socket]:
    """``count`` h2c (prior knowledge) connections, each after one answered stream."""
    import h2.config
    import h2.connection
    import h2.events

    socks = [connect(port) for _ in range(count)]
    connections = []
    for sock in socks:
        connection = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        connection.initiate_connection()
        headers = [(":method", "GET"), (":scheme", "http"), (":authority", f"{HOST}:{port}"),
                   (":path", "/")]  # fmt: skip
        connection.send_headers(1, headers, end_stream=True)
        sock.sendall(connection.data_to_send())
        connections.append(connection)
    for sock, connection in zip(socks, connections, strict=True):
        ended = False
        while not ended:
            data = sock.recv(65536)
            if not data:
                raise RuntimeError("the server closed an HTTP/2 connection before answering")
            for event in connection.receive_data(data):
                if isinstance(event, h2.events.StreamEnded) and event.stream_id == 1:
                    ended = True
                elif isinstance(event, h2.events.ConnectionTerminated):
                    raise RuntimeError(f"the server sent GOAWAY: {event}")
            # SETTINGS ACK and the like: the connection is left settled.
            if out := connection.data_to_send():
                sock.sendall(out)
    return socks


def ws_frame(payload: bytes) -> bytes:
    """A masked text frame with a payload under 126 bytes (RFC 6455 5.2)."""
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    return bytes((0x81, 0x80 | len(payload))) + mask + masked


def open_ws(port: int, count: int) -> list[socket.socket]:
    """``count`` accepted WebSockets, each after one echoed message."""
    socks = [connect(port) for _ in range(count)]
    buffers = [bytearray() for _ in socks]
    for sock in socks:
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        sock.sendall(
            (f"GET / HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
             f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
             "Sec-WebSocket-Version: 13\r\n\r\n").encode("ascii")
        )  # fmt: skip
    for sock, buffer in zip(socks, buffers, strict=True):
        read_until(sock, buffer, b"\r\n\r\n")
        if not buffer.startswith(b"HTTP/1.1 101"):
            raise RuntimeError(f"no 101 to a WebSocket handshake: {bytes(buffer[:40])!r}")
        sock.sendall(ws_frame(b"hi"))
    for sock, buffer in zip(socks, buffers, strict=True):
        read_until(sock, buffer, b"\x81\x02hi")
    return socks


OPENERS: Final[dict[str, Callable[[int, int], list[socket.socket]]]] = {
    "http1": open_http1,
    "h2": open_h2,
    "ws": open_ws,
}


def open_many(kind: str, port: int, count: int) -> list[socket.socket]:
    socks: list[socket.socket] = []
    opener = OPENERS[kind]
    while len(socks) < count:
        socks += opener(port, min(BATCH, count - len(socks)))
    return socks


def cycles(port: int, count: int) -> None:
    """``count`` times: connect, one request, read the answer, close."""
    request = http1_request(port)
    for _ in range(count):
        with connect(port) as sock:
            sock.sendall(request)
            read_until(sock, bytearray(), BODY)


def requests(port: int, count: int) -> None:
    """``count`` requests one after another on one keep-alive connection.

    A server that closes the connection after a number of requests (Hypercorn
    does after 1,000) gets a new one: one more accept per thousand requests.
    """
    request = http1_request(port)
    sock = connect(port)
    try:
        for _ in range(count):
            sock.sendall(request)
            buffer = bytearray()
            try:
                read_until(sock, buffer, BODY)
            except RuntimeError:
                if buffer:
                    raise  # closed halfway through an answer: a failure
                sock.close()
                sock = connect(port)
                sock.sendall(request)
                read_until(sock, buffer, BODY)
    finally:
        sock.close()


def client_main(argv: list[str]) -> int:
    """Talks to the parent by lines: prints ``warm``, waits for ``go``, prints ``ready``/``done``.

    Memory kinds keep their connections open until stdin says ``close`` or
    ends. ``accept`` does its cycles, prints ``done``, waits for ``go`` again,
    does its keep-alive requests and prints ``done``.
    """
    parser = argparse.ArgumentParser(prog="bench/memory.py _client")
    parser.add_argument("--kind", choices=KINDS, required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--warmup", type=int, required=True)
    args = parser.parse_args(argv)

    def say(line: str) -> None:
        sys.stdout.write(line + "\n")
        sys.stdout.flush()

    def wait_for(word: str) -> None:
        if sys.stdin.readline().strip() != word:
            raise SystemExit(f"expected {word!r} from the parent")

    try:
        if args.kind == "accept":
            cycles(args.port, args.warmup)
            requests(args.port, args.warmup)
            say("warm")
            wait_for("go")
            cycles(args.port, args.count)
            say("done")
            wait_for("go")
            requests(args.port, args.count)
            say("done")
            return 0
        held = open_many(args.kind, args.port, args.warmup)
        say("warm")
        wait_for("go")
        held += open_many(args.kind, args.port, args.count)
        say("ready")
        sys.stdin.readline()  # "close", or EOF when the parent is gone
        for sock in held:
            sock.close()
    except (OSError, RuntimeError) as exc:
        say(f"error {exc!r}")
        return 1
    return 0


# -- measuring ---------------------------------------------------------------


@dataclasses.dataclass
class Measurement:
    label: str
    server: str
    loop: str
    impl: str | None
    kind: str
    ok: bool
    count: int = 0
    error: str | None = None
    rss_before: int | None = None  # bytes, the server's process group, after warm-up
    rss_after: int | None = None  # bytes, with the N connections open
    bytes_per_connection: float | None = None
    open_seconds: float | None = None  # how long the client took to open the N
    us_per_connection: float | None = None  # accept: CPU per connect+request+close
    us_per_request: float | None = None  # accept: CPU per request on one connection


def group_pids(pgid: int) -> list[int]:
    pids = []
    with contextlib.suppress(OSError):
        for name in os.listdir("/proc"):
            if not name.isdigit():
                continue
            try:
                with open(f"/proc/{name}/stat") as stat:
                    fields = stat.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue
            if int(fields[2]) == pgid:
                pids.append(int(name))
    return pids


def group_rss(pgid: int) -> int:
    """VmRSS in bytes, summed over the live processes of process group ``pgid``."""
    total = 0
    for pid in group_pids(pgid):
        with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1]) * 1024
                    break
    return total


def settled_rss(pgid: int) -> int:
    """The group's RSS once two samples in a row differ by less than SETTLE_BYTES."""
    deadline = time.monotonic() + SETTLE_TIMEOUT
    previous = group_rss(pgid)
    while time.monotonic() < deadline:
        time.sleep(SETTLE_INTERVAL)
        current = group_rss(pgid)
        if abs(current - previous) < SETTLE_BYTES:
            return current
        previous = current
    return previous


def group_cpu(pgid: int) -> float:
    cpu = http1.group_cpu_seconds(pgid)
    if cpu is None:
        raise RuntimeError("no /proc: cannot read the server's CPU time")
    return cpu


def read_line(process: subprocess.Popen[str], timeout: float) -> str:
    """The client's next line, or an error once ``timeout`` passes or it exits."""
    import select

    assert process.stdout is not None
    ready, _, _ = select.select([process.stdout], [], [], timeout)
    if not ready:
        raise RuntimeError(f"the client said nothing within {timeout:.0f} s")
    line = process.stdout.readline().strip()
    if not line:
        raise RuntimeError(f"the client exited (status {process.wait(5)})")
    if line.startswith("error"):
        raise RuntimeError(f"the client failed: {line[6:]}")
    return line


def tell(process: subprocess.Popen[str], word: str) -> None:
    assert process.stdin is not None
    process.stdin.write(word + "\n")
    process.stdin.flush()


def client_timeout(count: int) -> float:
    """Generous and bounded: 30 s plus 10 ms per connection or cycle."""
    return 30.0 + count * 0.01


def run_client(
    port: int, kind: str, count: int, args: argparse.Namespace, log: IO[str]
) -> subprocess.Popen[str]:
    argv = [
        sys.executable, THIS, "_client", "--kind", kind, "--port", str(port), "--count",
        str(count), "--warmup", str(args.warmup),
    ]  # fmt: skip
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        preexec_fn=http1.pinned(http1.load_cpus(args)),
    )


def stop_client(process: subprocess.Popen[str]) -> None:
    with contextlib.suppress(OSError, ValueError):
        tell(process, "close")
    try:
        process.wait(10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(5)


def measure(row: Row, kind: str, args: argparse.Namespace) -> Measurement:
    server = row.server
    result = Measurement(server.label, server.name, server.loop, server.impl, kind, ok=False)
    count = args.cycles if kind == "accept" else args.connections
    result.count = count
    port = http1.free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(tempfile.TemporaryFile())
        log = stack.enter_context(tempfile.TemporaryFile("w+"))
        process = subprocess.Popen(
            server.argv(port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for http1.stop()
            preexec_fn=http1.pinned(http1.server_cpus(args)),
        )
        stack.callback(http1.stop, process)  # runs last: after the client is gone
        try:
            if (why := http1.wait_until_up(process, port, http1.STARTUP_TIMEOUT)) is not None:
                result.error = f"{why}; its output:\n{http1.tail(output)}"
                return result
            client = run_client(port, kind, count, args, log)
            stack.callback(stop_client, client)
            if (line := read_line(client, client_timeout(args.warmup))) != "warm":
                raise RuntimeError(f"unexpected {line!r} from the client")
            if kind == "accept":
                measure_accept(process.pid, client, count, result)
            else:
                measure_memory(process.pid, client, count, result)
            if process.poll() is not None:
                raise RuntimeError(f"the server exited with status {process.returncode}")
            result.ok = True
        except (RuntimeError, OSError) as exc:
            log.seek(0)
            client_log = log.read().strip()[-http1.STDERR_TAIL :]
            result.error = (
                f"{exc}\nclient stderr: {client_log}\nserver output: {http1.tail(output)}"
            )
    return result


def measure_memory(
    pgid: int, client: subprocess.Popen[str], count: int, result: Measurement
) -> None:
    result.rss_before = settled_rss(pgid)
    started = time.monotonic()
    tell(client, "go")
    if (line := read_line(client, client_timeout(count))) != "ready":
        raise RuntimeError(f"unexpected {line!r} from the client")
    result.open_seconds = time.monotonic() - started
    result.rss_after = settled_rss(pgid)
    result.bytes_per_connection = (result.rss_after - result.rss_before) / count


def measure_accept(
    pgid: int, client: subprocess.Popen[str], count: int, result: Measurement
) -> None:
    per_phase = []
    for _ in ("cycles", "requests"):
        before = group_cpu(pgid)
        tell(client, "go")
        if (line := read_line(client, client_timeout(count))) != "done":
            raise RuntimeError(f"unexpected {line!r} from the client")
        # What the server still does for the last close is part of the cost.
        time.sleep(0.2)
        per_phase.append((group_cpu(pgid) - before) / count * 1e6)
    result.us_per_connection, result.us_per_request = per_phase


# -- report --------------------------------------------------------------------


def _kib(value: float | None) -> str:
    return "-" if value is None else f"{value / 1024:.1f}"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:.0f}"


def table(results: list[Measurement]) -> str:
    header = (
        "server", "http1 KiB", "h2 KiB", "ws KiB", "accept µs/conn", "µs/req (keep-alive)",
        "µs/conn beyond req",
    )  # fmt: skip
    labels = list(dict.fromkeys(r.label for r in results))
    lines = []
    for label in labels:
        mine = {r.kind: r for r in results if r.label == label}
        cells = [label]
        for kind in MEMORY_KINDS:
            r = mine.get(kind)
            cells.append(
                "FAILED" if r and not r.ok else _kib(r.bytes_per_connection if r else None)
            )
        accept = mine.get("accept")
        if accept is not None and not accept.ok:
            cells += ["FAILED", "-", "-"]
        elif accept is not None and accept.us_per_connection is not None:
            per_request = accept.us_per_request or 0.0
            cells += [
                _us(accept.us_per_connection),
                _us(accept.us_per_request),
                _us(accept.us_per_connection - per_request),
            ]
        else:
            cells += ["-", "-", "-"]
        lines.append(tuple(cells))
    return http1.render_table(header, lines)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    names = ("tricorn", "uvicorn", "hypercorn", "anyio", "h11", "h2", "wsproto", "websockets",
             "uvloop", "trio")  # fmt: skip
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "busy_before_start": http1.busy_fraction(),
        "versions": {name: http1.version(name) for name in names},
        "args": {
            "connections": args.connections,
            "cycles": args.cycles,
            "warmup": args.warmup,
            "kinds": args.kinds,
            "server_cpu": args.server_cpu,
            "load_cpus": args.load_cpus,
        },
    }


def raise_fd_limit(needed: int) -> None:
    """Raise the soft RLIMIT_NOFILE (inherited by the server and client) to ``needed``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != resource.RLIM_INFINITY and soft < needed:
        limit = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
        resource.setrlimit(resource.RLIMIT_NOFILE, (limit, hard))
        if limit < needed:
            print(
                f"warning: RLIMIT_NOFILE's hard limit is {hard}; {needed} file descriptors "
                "were wanted, so the run may fail",
                file=sys.stderr,
            )


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/memory.py",
        description="Memory per idle connection and CPU per new connection, tricorn beside "
        "Uvicorn and Hypercorn.",
    )
    parser.add_argument(
        "--connections",
        "-c",
        type=int,
        default=1000,
        help=f"idle connections per memory measurement (default 1000, at most {MAX_CONNECTIONS})",
    )
    parser.add_argument(
        "--cycles",
        type=int,
        default=2000,
        help=f"connect+request+close cycles for accept (default 2000, at most {MAX_CYCLES})",
    )
    parser.add_argument(
        "--warmup",
        type=int,
        default=20,
        help="connections (or cycles) before the measurement starts (default 20)",
    )
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        metavar="NAMES",
        help=f"comma-separated measurements, of {', '.join(KINDS)} (default: all)",
    )
    http1.add_selection_options(parser, example="tricorn,uvicorn")
    args = parser.parse_args(argv)
    if not 1 <= args.connections <= MAX_CONNECTIONS:
        parser.error(f"--connections must be between 1 and {MAX_CONNECTIONS}")
    if not 1 <= args.cycles <= MAX_CYCLES:
        parser.error(f"--cycles must be between 1 and {MAX_CYCLES}")
    if not 1 <= args.warmup <= 1000:
        parser.error("--warmup must be between 1 and 1000")
    args.kinds = [kind.strip() for kind in args.kinds.split(",") if kind.strip()]
    if unknown := set(args.kinds) - set(KINDS):
        parser.error(f"unknown --kinds: {', '.join(sorted(unknown))}")
    return args


#: The kinds in the common shape (bench/record.py): less is better in all of them.
SCENARIOS: Final = {
    **{
        kind: record.scenario(kind, f"server memory per idle {what} connection",
                              metric="kib_per_conn", unit="KiB/conn", higher_is_better=False)
        for kind, what in (("http1", "HTTP/1.1"), ("h2", "HTTP/2 (h2c)"), ("ws", "WebSocket"))
    },
    "accept": record.scenario(
        "accept", "server CPU per new connection (connect, one GET /, close)",
        metric="us_per_conn", unit="µs/conn", higher_is_better=False,
    ),
}  # fmt: skip


def json_row(machine: dict[str, Any], r: Measurement) -> dict[str, Any]:
    """``r`` in the common shape; for accept, cpu_us_per_req is per keep-alive request."""
    kib = r.bytes_per_connection / 1024 if r.bytes_per_connection is not None else None
    return record.row(
        machine, scenario=r.kind, server=r.server, loop=r.loop, parser=r.impl, label=r.label,
        status="ok" if r.ok else "failed", error=r.error,
        values={"kib_per_conn": kib, "us_per_conn": r.us_per_connection},
        cpu_us_per_req=r.us_per_request,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return client_main(argv[1:])
    args = parse_args(argv)
    # The server and the client each hold every connection, plus the warm-up.
    raise_fd_limit(args.connections + args.warmup + 256)
    env = environment(args)
    machine = record.machine(args, busy=env["busy_before_start"])
    http1.warn_if_busy(env)
    print(
        f"{args.connections} idle connections per memory row (after {args.warmup} warm-up "
        f"ones), {args.cycles} cycles for accept; one worker per server on {HOST}, "
        f"server on CPU {args.server_cpu}, client on CPUs {args.load_cpus}",
        file=sys.stderr,
    )
    results: list[Measurement] = []
    for row in rows(args):
        for kind in args.kinds:
            if kind not in row.kinds:
                continue
            print(f"- {row.label} {kind} ...", file=sys.stderr, flush=True)
            result = measure(row, kind, args)
            if not result.ok:
                print(f"  FAILED: {result.error}", file=sys.stderr)
            elif result.bytes_per_connection is not None:
                print(f"  {result.bytes_per_connection / 1024:.1f} KiB/conn", file=sys.stderr)
            else:
                print(
                    f"  {result.us_per_connection:.0f} µs/conn, {result.us_per_request:.0f} µs/req",
                    file=sys.stderr,
                )
            results.append(result)

    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items())
    sys.stderr.flush()
    print()
    print(f"Per-connection cost, Python {env['python']}, {versions}")
    print(table(results))
    print(
        "KiB = server RSS growth per idle connection (http1: after one request; h2: h2c, "
        "after one request; ws: accepted, after one echo)\n"
        "accept µs/conn = server CPU per connect + one request + close; µs/req = per "
        "request on one keep-alive connection"
    )
    failed = [r for r in results if not r.ok]
    for r in failed:
        first = (r.error or "unknown").splitlines()[0]
        print(f"{r.label} {r.kind} failed: {first}")
    if args.json:
        document = record.document(
            "memory",
            "Per-connection cost",
            machine,
            [SCENARIOS[kind] for kind in KINDS if kind in args.kinds],
            [json_row(machine, r) for r in results],
            environment=env,
            results=[dataclasses.asdict(r) for r in results],
        )
        http1.write_json(args.json, document)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
