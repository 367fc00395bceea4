"""WebSocket echo throughput and latency: tricorn beside Uvicorn and Hypercorn.

Each server runs alone, with one worker, on 127.0.0.1 and a port the OS picked,
serving the echo app ``bench.ws_app:app``. ``--connections`` WebSockets (spread
over ``--clients`` load-generator processes) each keep ``--window`` small text
messages in flight: with a window of 1 every connection is a ping-pong bound
by round-trip latency, with a larger one the messages are pipelined. After
``--warmup`` seconds, the echoes received during ``--duration`` seconds are
counted; the table gives messages per second, the p50 and p99 round-trip
time, the server's CPU per message, its RSS at the end, and the throughput
relative to Hypercorn.

The load generator is this script again (``_client``): asyncio Protocols on raw
sockets that send pre-built masked frames and parse the server's frames with
a few lines of code. Its own ceiling is the first row: the same load against
a trivial echo server written on asyncio Protocols (``_echo``), which costs
next to nothing per message. The client does not offer permessage-deflate
unless ``--deflate`` is given, and fails a connection whose server answers
with an extension it did not offer.

Run it as ``nox -s bench-ws`` or ``python bench/websocket.py [--duration 10]
[--connections 32] [--window 1] [--json results.json]`` from the repository
root. Exit status: 0 when every server was measured, 1 when at least one
failed, 2 when an argument is wrong.
"""

from __future__ import annotations

import argparse
import array
import asyncio
import base64
import collections
import contextlib
import dataclasses
import hashlib
import json
import math
import os
import platform
import select
import socket
import subprocess
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Coroutine, Sequence
from itertools import repeat
from pathlib import Path
from typing import IO, Any, Final, cast

if not __package__:
    # Run as ``python bench/websocket.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import http1, record

ROOT: Final = Path(__file__).resolve().parent.parent
THIS: Final = str(Path(__file__).resolve())
APP: Final = "bench.ws_app:app"
HOST: Final = "127.0.0.1"
BASELINE: Final = ("hypercorn", "asyncio")  # the row every ratio is relative to
CEILING: Final = "raw-echo"  # the generator's own ceiling

GO_DELAY: Final = 0.5  # seconds between "go" and the first message
CONNECT_TIMEOUT: Final = 10.0  # per connection and handshake
DRAIN_TIMEOUT: Final = 5.0  # for the last echoes and the closing handshake
MAX_DURATION: Final = 120
MAX_WARMUP: Final = 30
NOISE_WARNING: Final = 0.1  # flag a row when other processes used this many cores

GUID: Final = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG = 0x0, 0x1, 0x2, 0x8, 0x9, 0xA
DEFLATE_OFFER: Final = "permessage-deflate; client_max_window_bits"
ZLIB_TAIL: Final = b"\x00\x00\xff\xff"


# -- the servers -------------------------------------------------------------


#: One row of the table: a server, its WebSocket library (Uvicorn's --ws), its loop.
Row = http1.Server


def tricorn(loop: str) -> Row:
    return Row(
        "tricorn",
        loop,
        ("-m", "tricorn", APP, "--bind", f"{HOST}:{{port}}", "--worker-class", loop,
         "--no-access-log", "--log-level", "warning"),
    )  # fmt: skip


def uvicorn(ws: str, loop: str) -> Row:
    # --http h11 as in bench/http1.py; it only parses the opening handshake here.
    return Row(
        "uvicorn",
        loop,
        ("-m", "uvicorn", APP, "--http", "h11", "--ws", ws, "--loop", loop, "--no-access-log",
         "--host", HOST, "--port", "{port}", "--workers", "1", "--log-level", "warning"),
        impl=ws,
    )  # fmt: skip


def hypercorn(loop: str) -> Row:
    return Row(
        "hypercorn",
        loop,
        ("-m", "hypercorn", APP, "--bind", f"{HOST}:{{port}}", "--workers", "1",
         "--worker-class", loop, "--log-level", "warning"),
    )  # fmt: skip


def raw_echo(loop: str) -> Row:
    return Row(CEILING, loop, (THIS, "_echo", "--port", "{port}", "--loop", loop))


def rows(args: argparse.Namespace) -> list[Row]:
    result = [raw_echo(args.client_loop)] if args.ceiling else []
    result += [
        tricorn("asyncio"),
        uvicorn("websockets", "asyncio"),
        uvicorn("wsproto", "asyncio"),
        hypercorn("asyncio"),
    ]
    if args.uvloop:
        result += [tricorn("uvloop"), uvicorn("websockets", "uvloop"), uvicorn("wsproto", "uvloop")]
    if args.trio:
        # Uvicorn has no trio support; Hypercorn does.
        result += [tricorn("trio"), hypercorn("trio")]
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        result = [row for row in result if row.name in wanted]
    return result


# -- frames ------------------------------------------------------------------


def _header(first: int, length: int, masked: bool) -> bytes:
    bit = 0x80 if masked else 0
    if length < 126:
        return bytes((first, bit | length))
    if length < 65536:
        return bytes((first, bit | 126)) + length.to_bytes(2, "big")
    return bytes((first, bit | 127)) + length.to_bytes(8, "big")


def frame_length(data: bytes, pos: int) -> tuple[int, int] | None:
    """(end of the length field, payload length) of the frame at ``pos`` (RFC 6455 5.2).

    None while its extended length has not arrived in full.
    """
    length = data[pos + 1] & 0x7F
    if length < 126:
        return pos + 2, length
    start = pos + (4 if length == 126 else 10)
    if start > len(data):
        return None
    return start, int.from_bytes(data[pos + 2 : start], "big")


def unmask(payload: bytes, mask: bytes) -> bytes:
    """XOR ``payload`` with the repeated 4-byte ``mask`` (masking is its own inverse)."""
    n = len(payload)
    if not n:
        return b""
    key = int.from_bytes((mask * (n // 4 + 1))[:n], "little")
    return (int.from_bytes(payload, "little") ^ key).to_bytes(n, "little")


def client_frame(opcode: int, payload: bytes, mask: bytes, *, rsv1: bool = False) -> bytes:
    """A complete masked frame, as a client must send it (RFC 6455 5.3)."""
    first = 0x80 | (0x40 if rsv1 else 0) | opcode
    return _header(first, len(payload), True) + mask + unmask(payload, mask)


def server_frame(opcode: int, payload: bytes) -> bytes:
    """A complete unmasked frame, as a server sends it."""
    return _header(0x80 | opcode, len(payload), False) + payload


def accept_token(key: bytes) -> bytes:
    return base64.b64encode(hashlib.sha1(key + GUID).digest())


def handshake_request(key: bytes, port: int, deflate: bool) -> bytes:
    extensions = f"Sec-WebSocket-Extensions: {DEFLATE_OFFER}\r\n" if deflate else ""
    return (
        f"GET /ws HTTP/1.1\r\nHost: {HOST}:{port}\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {key.decode()}\r\n"
        f"Sec-WebSocket-Version: 13\r\n{extensions}\r\n"
    ).encode("ascii")


def deflate_message(payload: bytes, window_bits: int) -> bytes:
    """One message compressed on its own (no context takeover), tail removed (RFC 7692 7.2.1)."""
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -window_bits)
    data = compressor.compress(payload) + compressor.flush(zlib.Z_SYNC_FLUSH)
    return data[: -len(ZLIB_TAIL)] if data.endswith(ZLIB_TAIL) else data


def make_payload(size: int) -> bytes:
    """``size`` bytes of ASCII text."""
    text = b"tricorn websocket echo benchmark "
    return (text * (size // len(text) + 1))[:size]


# -- the load generator (``_client``) ------------------------------------------


class Run:
    """What the connections of one client process share."""

    __slots__ = ("errors", "measure_from", "measure_to", "rtts", "window")

    def __init__(self, window: int) -> None:
        self.window = window
        self.measure_from = math.inf
        self.measure_to = math.inf  # also when the connections stop sending
        self.rtts = array.array("d")  # seconds, one per echo received in the window
        self.errors: collections.Counter[str] = collections.Counter()


class ClientConnection(asyncio.Protocol):
    """One WebSocket that keeps ``window`` messages in flight until the window closes."""

    def __init__(self, run: Run, port: int, payload: bytes, deflate: bool) -> None:
        self.run = run
        self.port = port
        self.payload = payload
        self.offer_deflate = deflate
        self.deflated = False
        self.key = base64.b64encode(os.urandom(16))
        # One mask per connection, reused for every frame: RFC 6455 wants a
        # fresh one per frame, but no server can tell, and this way the frame
        # is built once.
        self.mask = os.urandom(4)
        self.frame = client_frame(OP_TEXT, payload, self.mask)
        self.echo = server_frame(OP_TEXT, payload)  # what the server sends back
        self.inflater: Any = None
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.buf = b""
        self.sent: collections.deque[float] = collections.deque()
        self.received = 0  # echoes in the measured window
        self.opcode = 0
        self.compressed = False
        self.fragments: list[bytes] = []
        self.closing = False
        self.close_answered = False
        loop = asyncio.get_running_loop()
        self.ready: asyncio.Future[None] = loop.create_future()
        self.done: asyncio.Future[None] = loop.create_future()

    # -- asyncio.Protocol -------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)
        self.transport.write(handshake_request(self.key, self.port, self.offer_deflate))

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(f"connection lost in the handshake: {exc!r}"))
        elif not self.closing:
            self.run.errors["connection lost while sending"] += 1
        elif not self.close_answered:
            self.run.errors["connection closed without a close frame"] += 1
        if not self.done.done():
            self.done.set_result(None)

    def data_received(self, data: bytes) -> None:
        if not self.open:
            self._handshake(data)
            return
        now = time.monotonic()
        if self.buf:
            data = self.buf + data
            self.buf = b""
        # The common case: exactly one echo, byte for byte what we expect.
        got = 1 if data == self.echo else self._frames(data)
        if not got:
            return
        run = self.run
        sent = self.sent
        if got > len(sent):
            run.errors["more echoes than messages sent"] += got - len(sent)
            got = len(sent)
        if run.measure_from <= now < run.measure_to:
            self.received += got
            append = run.rtts.append
            popleft = sent.popleft
            for _ in range(got):
                append(now - popleft())
        else:
            for _ in range(got):
                sent.popleft()
        if now < run.measure_to:
            assert self.transport is not None
            if got == 1:
                self.transport.write(self.frame)
                sent.append(now)
            else:
                self.transport.write(self.frame * got)
                sent.extend(repeat(now, got))
        elif not sent and not self.closing:
            self.close()

    # -- the run ------------------------------------------------------------

    def begin(self, now: float) -> None:
        assert self.transport is not None
        window = self.run.window
        self.transport.write(self.frame * window)
        self.sent.extend(repeat(now, window))

    def close(self) -> None:
        """Start the closing handshake (1000)."""
        assert self.transport is not None
        self.closing = True
        self.transport.write(client_frame(OP_CLOSE, (1000).to_bytes(2, "big"), self.mask))

    def _fail(self, why: str) -> None:
        if not self.ready.done():
            self.ready.set_exception(RuntimeError(why))
        else:
            self.run.errors[why] += 1
        if self.transport is not None:
            self.transport.abort()

    def _handshake(self, data: bytes) -> None:
        self.buf += data
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buf) > 65536:
                self._fail("handshake response too long")
            return
        head, rest = self.buf[:end].decode("latin-1"), self.buf[end + 4 :]
        self.buf = b""
        status, *lines = head.split("\r\n")
        if status.split(" ", 2)[1:2] != ["101"]:
            self._fail(f"the handshake was answered {status!r}")
            return
        headers: dict[str, str] = {}
        for line in lines:
            name, _, value = line.partition(":")
            name = name.strip().lower()
            headers[name] = (
                f"{headers[name]}, {value.strip()}" if name in headers else value.strip()
            )
        if headers.get("sec-websocket-accept", "").encode() != accept_token(self.key):
            self._fail("wrong Sec-WebSocket-Accept")
            return
        if extensions := headers.get("sec-websocket-extensions"):
            if not self.offer_deflate:
                self._fail(f"the server negotiated an extension we did not offer: {extensions}")
                return
            name, *params = (part.strip() for part in extensions.split(";"))
            if name.lower() != "permessage-deflate" or "," in extensions:
                self._fail(f"unexpected Sec-WebSocket-Extensions: {extensions}")
                return
            bits = 15
            for param in params:
                key, _, value = param.partition("=")
                if key.strip().lower() == "client_max_window_bits":
                    bits = int(value.strip().strip('"'))
            self.deflated = True
            self.inflater = zlib.decompressobj(-15)
            self.echo = b""  # never equals received data: every echo takes _frames()
            if bits >= 9:  # zlib cannot compress with a 256-byte window; send plain
                compressed = deflate_message(self.payload, bits)
                self.frame = client_frame(OP_TEXT, compressed, self.mask, rsv1=True)
        self.open = True
        self.ready.set_result(None)
        if rest:
            self.buf = rest

    def _frames(self, data: bytes) -> int:
        """Parse whole frames, keep a partial one; the number of echoes completed."""
        got = 0
        pos = 0
        n = len(data)
        while n - pos >= 2:
            first = data[pos]
            second = data[pos + 1]
            if (span := frame_length(data, pos)) is None:
                break
            start, length = span
            end = start + length
            if end > n:
                break
            payload = data[start:end]
            pos = end
            if second & 0x80:
                self._fail("a masked frame from the server")
                return got
            opcode = first & 0x0F
            if opcode >= OP_CLOSE:
                if opcode == OP_PING:
                    assert self.transport is not None
                    self.transport.write(client_frame(OP_PONG, payload, self.mask))
                elif opcode == OP_CLOSE:
                    self._close_frame(payload)
                    return got
                continue
            if opcode != OP_CONT:
                self.opcode = opcode
                self.compressed = bool(first & 0x40)
                self.fragments = []
            self.fragments.append(payload)
            if not first & 0x80:
                continue
            message = b"".join(self.fragments)
            self.fragments = []
            if self.compressed:
                message = self.inflater.decompress(message + ZLIB_TAIL)
            if message != self.payload or self.opcode != OP_TEXT:
                self.run.errors["an echo that differs from the message"] += 1
            got += 1
        if pos < n:
            self.buf = data[pos:]
        return got

    def _close_frame(self, payload: bytes) -> None:
        assert self.transport is not None
        if self.closing:
            self.close_answered = True
        else:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else 1005
            self.run.errors[f"the server closed the WebSocket with {code}"] += 1
            self.close_answered = True
            self.closing = True
            self.transport.write(client_frame(OP_CLOSE, payload[:2], self.mask))
        self.transport.close()


async def client(args: argparse.Namespace) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    run = Run(args.window)
    payload = make_payload(args.size)
    connections: list[ClientConnection] = []
    for _ in range(args.connections):
        _, connection = await asyncio.wait_for(
            loop.create_connection(
                lambda: ClientConnection(run, args.port, payload, args.deflate), HOST, args.port
            ),
            CONNECT_TIMEOUT,
        )
        connections.append(connection)
        await asyncio.wait_for(connection.ready, CONNECT_TIMEOUT)
    print("ready", flush=True)
    line = await loop.run_in_executor(None, sys.stdin.readline)
    start = float(line.split()[1])
    run.measure_from = start + args.warmup
    run.measure_to = run.measure_from + args.duration
    cpu: dict[str, float] = {}

    def cpu_at(name: str) -> Callable[[], None]:
        return lambda: cpu.__setitem__(name, time.process_time())

    loop.call_later(run.measure_from - time.monotonic(), cpu_at("from"))
    loop.call_later(run.measure_to - time.monotonic(), cpu_at("to"))
    await asyncio.sleep(max(0.0, start - time.monotonic()))
    now = time.monotonic()
    for connection in connections:
        connection.begin(now)
    await asyncio.sleep(max(0.0, run.measure_to - time.monotonic()) + 0.05)
    # Each connection closes after its last echo; wait for all of them.
    await asyncio.wait([c.done for c in connections], timeout=DRAIN_TIMEOUT)
    for connection in connections:
        if not connection.done.done():
            what = "the closing handshake" if connection.closing else "the last echoes"
            run.errors[f"{what} did not finish within {DRAIN_TIMEOUT:.0f} s"] += 1
            if connection.transport is not None:
                connection.transport.abort()
    histogram = collections.Counter(round(rtt * 1e6) for rtt in run.rtts)
    return {
        "messages": len(run.rtts),
        "cpu_s": cpu["to"] - cpu["from"] if "from" in cpu and "to" in cpu else None,
        "histogram_us": {str(us): count for us, count in sorted(histogram.items())},
        "per_connection": [c.received for c in connections],
        "deflated": sum(c.deflated for c in connections),
        "errors": dict(run.errors),
    }


def client_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/websocket.py _client")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--connections", type=int, required=True)
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--size", type=int, required=True)
    parser.add_argument("--warmup", type=float, required=True)
    parser.add_argument("--duration", type=float, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), required=True)
    parser.add_argument("--deflate", action="store_true")
    parser.add_argument("--result", required=True, help="where to write the JSON report")
    args = parser.parse_args(argv)
    try:
        result = run_on(args.loop, client(args))
    except (OSError, RuntimeError, TimeoutError) as exc:
        print(f"error {exc!r}", flush=True)
        return 1
    # A file, not stdout: the report can be larger than a pipe holds, and a
    # report printed to the stdout pipe was seen cut off at 64 KiB.
    Path(args.result).write_text(json.dumps(result))
    return 0


def run_on(loop: str, coroutine: Coroutine[Any, Any, Any]) -> Any:
    if loop == "uvloop":
        import uvloop

        with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
            return runner.run(coroutine)
    return asyncio.run(coroutine)


# -- the trivial echo server (``_echo``): the generator's ceiling -------------


class EchoProtocol(asyncio.Protocol):
    """A WebSocket echo server in the fewest steps: no checks, no extensions."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.open = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        transport = self.transport
        assert transport is not None
        if self.buf:
            data = self.buf + data
            self.buf = b""
        if not self.open:
            end = data.find(b"\r\n\r\n")
            if end < 0:
                self.buf = data
                return
            key = b""
            for line in data[:end].split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"sec-websocket-key":
                    key = value.strip()
            transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                b"Connection: Upgrade\r\nSec-WebSocket-Accept: " + accept_token(key) + b"\r\n\r\n"
            )
            self.open = True
            data = data[end + 4 :]
        out = []
        pos = 0
        n = len(data)
        while n - pos >= 6:
            first = data[pos]
            if (span := frame_length(data, pos)) is None:
                break
            start, length = span
            end = start + 4 + length
            if end > n:
                break
            payload = unmask(data[start + 4 : end], data[start : start + 4])
            pos = end
            opcode = first & 0x0F
            if opcode == OP_CLOSE:
                out.append(server_frame(OP_CLOSE, payload[:2]))
                transport.write(b"".join(out))
                transport.close()
                return
            if opcode == OP_PING:
                out.append(server_frame(OP_PONG, payload))
            elif opcode != OP_PONG:
                out.append(_header(first, length, False) + payload)
        if pos < n:
            self.buf = data[pos:]
        if out:
            transport.write(out[0] if len(out) == 1 else b"".join(out))


async def echo_server(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(EchoProtocol, HOST, port, backlog=1024)
    async with server:
        await server.serve_forever()


def echo_main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="bench/websocket.py _echo")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        run_on(args.loop, echo_server(args.port))
    return 0


# -- one row -----------------------------------------------------------------


@dataclasses.dataclass
class Result:
    label: str
    server: str
    loop: str
    impl: str | None
    ok: bool
    messages: int | None = None
    messages_per_sec: float | None = None
    p50_ms: float | None = None
    p90_ms: float | None = None
    p99_ms: float | None = None
    max_ms: float | None = None
    errors: dict[str, int] = dataclasses.field(default_factory=dict)
    error: str | None = None  # why the server could not be measured
    # CPU during the measured window, in cores (1.0 = one core busy throughout):
    server_cpu: float | None = None  # the server's process group
    client_cpu: float | None = None  # the load generator's processes
    other_cpu: float | None = None  # everything else on the machine: noise
    interrupt_cpu: float | None = None  # irq + softirq (loopback TCP), for information
    server_us_per_msg: float | None = None
    client_us_per_msg: float | None = None
    rss_mib: float | None = None  # the serving process, at the end of the window
    peak_rss_mib: float | None = None
    deflated_connections: int = 0
    per_connection_min: int | None = None
    per_connection_max: int | None = None

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())


def probe(port: int) -> bool:
    """Whether a WebSocket handshake on ``port`` gets a 101; closes it cleanly if so."""
    key = base64.b64encode(os.urandom(16))
    try:
        with socket.create_connection((HOST, port), timeout=1.0) as sock:
            sock.sendall(handshake_request(key, port, deflate=False))
            head = b""
            while b"\r\n\r\n" not in head and len(head) < 65536:
                chunk = sock.recv(4096)
                if not chunk:
                    break
                head += chunk
            if not head.startswith(b"HTTP/1.1 101"):
                return False
            sock.sendall(client_frame(OP_CLOSE, (1000).to_bytes(2, "big"), os.urandom(4)))
            with contextlib.suppress(OSError):
                sock.recv(64)
    except OSError:
        return False
    return True


def wait_until_up(process: subprocess.Popen[bytes], port: int) -> str | None:
    deadline = time.monotonic() + http1.STARTUP_TIMEOUT
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode} before answering"
        if probe(port):
            return None
        time.sleep(0.1)
    return f"did not answer a WebSocket handshake on port {port} within 15 s"


def group_ticks(pgid: int) -> dict[int, int]:
    """CPU clock ticks used so far by each live process in process group ``pgid``."""
    ticks: dict[int, int] = {}
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
                ticks[int(name)] = int(fields[11]) + int(fields[12])
    return ticks


def machine_ticks() -> tuple[int, int] | None:
    """(busy, interrupt) CPU ticks over all CPUs since boot, from /proc/stat.

    Busy is everything but idle and iowait, as in http1.py. Interrupt (irq +
    softirq, where much of loopback TCP runs) is part of it; with the usual
    tick-based accounting it is also charged to whichever process was
    running, so it is recorded for information only.
    """
    try:
        with open("/proc/stat") as stat:
            fields = [int(value) for value in stat.readline().split()[1:]]
        # user nice system idle iowait irq softirq steal ...
        return sum(fields) - fields[3] - fields[4], fields[5] + fields[6]
    except (OSError, ValueError, IndexError):
        return None


def memory_mib(pid: int) -> tuple[float | None, float | None]:
    """(VmRSS, VmHWM) of ``pid`` in MiB."""
    values: dict[str, float] = {}
    with contextlib.suppress(OSError), open(f"/proc/{pid}/status") as status:
        for line in status:
            key, _, value = line.partition(":")
            if key in ("VmRSS", "VmHWM"):
                values[key] = int(value.split()[0]) / 1024
    return values.get("VmRSS"), values.get("VmHWM")


def split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if i < total % parts else 0) for i in range(parts)]


def start_clients(
    port: int, args: argparse.Namespace, logs: Sequence[IO[bytes]], results: Sequence[Path]
) -> list[subprocess.Popen[bytes]]:
    processes = []
    counts = split(args.connections, args.clients)
    for count, log, result in zip(counts, logs, results, strict=True):
        argv = [
            sys.executable, THIS, "_client", "--port", str(port), "--connections", str(count),
            "--window", str(args.window), "--size", str(args.size), "--warmup", str(args.warmup),
            "--duration", str(args.duration), "--loop", args.client_loop, "--result", str(result),
        ]  # fmt: skip
        if args.deflate:
            argv.append("--deflate")
        processes.append(
            subprocess.Popen(
                argv, cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=log
            )
        )
    return processes


def read_line(process: subprocess.Popen[bytes], timeout: float) -> str:
    assert process.stdout is not None
    readable, _, _ = select.select([process.stdout], [], [], timeout)
    if not readable:
        raise RuntimeError(f"a client process said nothing within {timeout:.0f} s")
    return process.stdout.readline().decode().strip()


def percentile(histogram: dict[int, int], total: int, fraction: float) -> float:
    """The ``fraction`` quantile of a {µs: count} histogram, in milliseconds."""
    rank = max(1, math.ceil(total * fraction))
    seen = 0
    for us in sorted(histogram):
        seen += histogram[us]
        if seen >= rank:
            return us / 1e3
    return max(histogram) / 1e3


def merge(result: Result, reports: list[dict[str, Any]], duration: float) -> None:
    histogram: collections.Counter[int] = collections.Counter()
    per_connection: list[int] = []
    for report in reports:
        histogram.update({int(us): count for us, count in report["histogram_us"].items()})
        per_connection += report["per_connection"]
        for why, count in report["errors"].items():
            result.errors[why] = result.errors.get(why, 0) + count
        result.deflated_connections += report["deflated"]
    total = sum(r["messages"] for r in reports)
    result.messages = total
    result.messages_per_sec = total / duration
    if per_connection:
        result.per_connection_min = min(per_connection)
        result.per_connection_max = max(per_connection)
    if total:
        result.p50_ms = percentile(histogram, total, 0.50)
        result.p90_ms = percentile(histogram, total, 0.90)
        result.p99_ms = percentile(histogram, total, 0.99)
        result.max_ms = max(histogram) / 1e3
    client_cpu = [r["cpu_s"] for r in reports]
    if all(cpu is not None for cpu in client_cpu):
        result.client_cpu = sum(client_cpu) / duration
        if total:
            result.client_us_per_msg = sum(client_cpu) / total * 1e6


def measure(row: Row, args: argparse.Namespace) -> Result:
    result = Result(row.label, row.name, row.loop, row.impl, ok=False)
    port = http1.free_port()
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["PYTHONUNBUFFERED"] = "1"
    clients: list[subprocess.Popen[bytes]] = []
    with contextlib.ExitStack() as stack:
        output = stack.enter_context(tempfile.TemporaryFile())
        logs = [stack.enter_context(tempfile.TemporaryFile()) for _ in range(args.clients)]
        directory = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        reports_at = [directory / f"client-{i}.json" for i in range(args.clients)]
        process = subprocess.Popen(
            row.argv(port),
            cwd=ROOT,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, for http1.stop()
        )
        try:
            if (why := wait_until_up(process, port)) is not None:
                result.error = f"{why}; its output:\n{http1.tail(output)}"
                return result
            clients = start_clients(port, args, logs, reports_at)
            for client_process in clients:
                if (line := read_line(client_process, 2 * CONNECT_TIMEOUT + 5)) != "ready":
                    raise RuntimeError(f"a client could not connect: {line or '(no output)'}")
            start = time.monotonic() + GO_DELAY
            for client_process in clients:
                assert client_process.stdin is not None
                client_process.stdin.write(f"go {start!r}\n".encode())
                client_process.stdin.flush()
            sleep_until(start + args.warmup)
            ticks0, machine0, wall0 = group_ticks(process.pid), machine_ticks(), time.monotonic()
            sleep_until(start + args.warmup + args.duration)
            ticks1, machine1, wall1 = group_ticks(process.pid), machine_ticks(), time.monotonic()
            used = {pid: t - ticks0.get(pid, 0) for pid, t in ticks1.items()}
            if used:
                # The serving process is the one that worked (Hypercorn's parent idles).
                result.rss_mib, result.peak_rss_mib = memory_mib(max(used, key=used.__getitem__))
            reports = []
            for client_process, report in zip(clients, reports_at, strict=True):
                out, _ = client_process.communicate(timeout=DRAIN_TIMEOUT + 30)
                if client_process.returncode != 0 or not report.exists():
                    last = out.decode().strip().splitlines()[-1:] or ["(no output)"]
                    raise RuntimeError(f"a client failed: {last[0]}")
                reports.append(json.loads(report.read_text()))
            if process.poll() is not None:
                result.error = f"exited with status {process.returncode} during the run"
                return result
            merge(result, reports, args.duration)
            wall = wall1 - wall0
            server_s = sum(used.values()) / http1._TICK
            result.server_cpu = server_s / wall
            if result.messages:
                result.server_us_per_msg = server_s / result.messages * 1e6
            if machine0 is not None and machine1 is not None:
                seconds = [
                    (m1 - m0) / http1._TICK / wall
                    for m0, m1 in zip(machine0, machine1, strict=True)
                ]
                result.interrupt_cpu = seconds[1]
                if result.client_cpu is not None:
                    mine = result.server_cpu + result.client_cpu
                    result.other_cpu = max(0.0, seconds[0] - mine)
            result.ok = bool(result.messages)
            if not result.ok:
                result.error = f"no echoes in the window; errors: {result.errors}"
        except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
            logs_text = "\n".join(http1.tail(log) for log in logs)
            result.error = f"{exc}\nclient stderr: {logs_text}\nserver output: {http1.tail(output)}"
        finally:
            for client_process in clients:
                if client_process.poll() is None:
                    client_process.kill()
                    client_process.wait()
            http1.stop(process)
            if process.returncode not in (0, None) and result.ok:
                # Not fatal to the numbers, but worth seeing.
                result.errors[f"server exited with status {process.returncode}"] = 1
    return result


def sleep_until(deadline: float) -> None:
    while (left := deadline - time.monotonic()) > 0:
        time.sleep(left)


# -- report ------------------------------------------------------------------


def baseline_rate(results: list[Result]) -> float | None:
    for r in results:
        if (r.server, r.loop) == BASELINE and r.ok:
            return r.messages_per_sec
    return None


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def table(results: list[Result]) -> str:
    base = baseline_rate(results)
    header = (
        "server", "msgs/s", "p50 ms", "p99 ms", "cpu µs/msg", "RSS MB", f"vs {BASELINE[0]}",
        "errors", "srv cpu", "gen cpu", "other cpu",
    )  # fmt: skip
    lines_: list[tuple[str, ...]] = []
    for r in results:
        if not r.ok or r.messages_per_sec is None:
            lines_.append((r.label, "FAILED", *("-" * (len(header) - 2))))
            continue
        ratio = f"{r.messages_per_sec / base:.2f}" if base else "n/a"
        noisy = " !" if r.other_cpu is not None and r.other_cpu > NOISE_WARNING else ""
        lines_.append(
            (
                r.label + noisy,
                f"{r.messages_per_sec:,.0f}",
                _num(r.p50_ms, ".2f"),
                _num(r.p99_ms, ".2f"),
                _num(r.server_us_per_msg, ".1f"),
                _num(r.rss_mib, ".1f"),
                ratio,
                str(r.error_count),
                _num(r.server_cpu, ".2f"),
                _num(r.client_cpu, ".2f"),
                _num(r.other_cpu, ".2f"),
            )
        )
    return http1.render_table(header, lines_)


def environment(args: argparse.Namespace) -> dict[str, Any]:
    names = ("tricorn", "uvicorn", "hypercorn", "websockets", "wsproto", "uvloop", "trio")
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "busy_before_start": http1.busy_fraction(),
        "versions": {name: http1.version(name) for name in names},
        "load": {
            "connections": args.connections,
            "window": args.window,
            "size": args.size,
            "deflate": args.deflate,
            "clients": args.clients,
            "client_loop": args.client_loop,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
        },
    }


def default_client_loop() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/websocket.py",
        description="WebSocket echo benchmark: tricorn beside Uvicorn and Hypercorn.",
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds measured (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (default 2)")
    parser.add_argument(
        "--connections", "-c", type=int, default=32, help="WebSockets in all (default 32)"
    )
    parser.add_argument(
        "--window",
        "-w",
        type=int,
        default=1,
        help="messages in flight per connection: 1 is ping-pong, more pipelines (default 1)",
    )
    parser.add_argument("--size", type=int, default=32, help="bytes of text per message (32)")
    parser.add_argument(
        "--clients", type=int, default=2, help="load-generator processes (default 2)"
    )
    parser.add_argument(
        "--client-loop",
        choices=("asyncio", "uvloop"),
        default=default_client_loop(),
        help="the generator's event loop (default: uvloop if installed)",
    )
    parser.add_argument(
        "--deflate",
        action="store_true",
        help="offer permessage-deflate and send compressed messages (default: off)",
    )
    parser.add_argument(
        "--ceiling",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="first measure the generator against a trivial echo server (default: on)",
    )
    http1.add_selection_options(parser, example="tricorn,raw-echo")
    args = parser.parse_args(argv)
    if not 1 <= args.duration <= MAX_DURATION or not 0 <= args.warmup <= MAX_WARMUP:
        parser.error(f"--duration must be 1..{MAX_DURATION} and --warmup 0..{MAX_WARMUP}")
    if not 1 <= args.clients <= args.connections or not 1 <= args.window <= 1024:
        parser.error("need 1 <= --clients <= --connections and 1 <= --window <= 1024")
    if not 1 <= args.size <= 1 << 20:
        parser.error("--size must be 1..1048576")
    return args


def json_row(machine: dict[str, Any], r: Result) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py): messages instead of requests."""
    return record.row(
        machine, scenario="echo", server=r.server, loop=r.loop, parser=r.impl, label=r.label,
        status="ok" if r.ok else "failed", error=r.error,
        values={"msg_s": r.messages_per_sec, "errors": r.error_count}, p50_ms=r.p50_ms,
        p99_ms=r.p99_ms, cpu_us_per_req=r.server_us_per_msg, server_cpu=r.server_cpu,
        load_cpu=r.client_cpu, other_cpu=r.other_cpu,
    )  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["_client"]:
        return client_main(argv[1:])
    if argv[:1] == ["_echo"]:
        return echo_main(argv[1:])
    args = parse_args(argv)
    env = environment(args)
    # The servers and clients here are not pinned (--server-cpu/--load-cpus are accepted only).
    machine = record.machine(
        args, busy=env["busy_before_start"], server_pinned=False, load_pinned=False
    )
    mode = f"window {args.window}" + (" (ping-pong)" if args.window == 1 else " (pipelined)")
    print(
        f"{args.connections} WebSockets x {mode}, {args.size}-byte text messages"
        f"{', permessage-deflate' if args.deflate else ''}; {args.duration} s measured after "
        f"{args.warmup} s of warm-up; {args.clients} client processes ({args.client_loop}); "
        f"{env['cpus']} CPUs shared by the clients and the server",
        file=sys.stderr,
    )
    http1.warn_if_busy(env)
    results = []
    for row in rows(args):
        print(f"- {row.label} ...", file=sys.stderr, flush=True)
        started = time.monotonic()
        result = measure(row, args)
        took = time.monotonic() - started
        if result.ok:
            print(
                f"  {result.messages_per_sec:,.0f} msgs/s, p50 {result.p50_ms:.2f} ms, "
                f"p99 {result.p99_ms:.2f} ms ({took:.0f} s)",
                file=sys.stderr,
            )
            if result.errors:
                print(f"  errors: {result.errors}", file=sys.stderr)
        else:
            print(f"  FAILED: {result.error}", file=sys.stderr)
        results.append(result)

    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items())
    sys.stderr.flush()
    print()
    print(
        f"WebSocket echo, {args.connections} connections x {mode}, {args.size} B text"
        f"{', permessage-deflate offered' if args.deflate else ''}; Python {env['python']}, "
        f"{versions}"
    )
    print(table(results))
    print(
        "cpu µs/msg = server CPU time per echoed message (= ms per 1k messages); RSS = the "
        "serving process at the end of the window; srv/gen/other cpu = cores used by the "
        "server, the load generator and everything else"
    )
    if args.ceiling:
        print(f"{CEILING}: the generator against a trivial echo server, i.e. its own ceiling")
    if args.deflate:
        for r in results:
            if r.ok and r.deflated_connections != args.connections:
                print(f"{r.label}: deflate negotiated on {r.deflated_connections} connections")
    if any(r.ok and r.other_cpu is not None and r.other_cpu > NOISE_WARNING for r in results):
        print(
            f"! other processes used more than {NOISE_WARNING:.2f} of a core during this row's "
            "run: its numbers are disturbed; rerun on a quiet machine"
        )
    for r in results:
        if r.ok and r.errors:
            print(f"{r.label} errors: {r.errors}")
        if r.ok and r.per_connection_min == 0:
            print(f"{r.label}: a connection got no echo at all during the window (starved)")
    failed = [r for r in results if not r.ok]
    for r in failed:
        first = (r.error or "").splitlines()[0] if r.error else "unknown"
        print(f"{r.label} failed: {first}")

    if args.json:
        base = baseline_rate(results)
        own = [
            {
                **dataclasses.asdict(r),
                "ratio_to_baseline": (
                    r.messages_per_sec / base if r.ok and r.messages_per_sec and base else None
                ),
            }
            for r in results
        ]
        what = (
            f"{args.connections} connections x {mode}, {args.size} B text messages"
            f"{', permessage-deflate offered' if args.deflate else ''}"
        )
        document = record.document(
            "websocket",
            "WebSocket echo",
            machine,
            [record.scenario("echo", what, metric="msg_s", unit="msgs/s", per="msg")],
            [json_row(machine, r) for r in results],
            environment=env,
            baseline=f"{BASELINE[0]} ({BASELINE[1]})",
            results=own,
        )
        http1.write_json(args.json, document)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
