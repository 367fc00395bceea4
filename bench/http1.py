"""HTTP/1.1 throughput: tricorn beside Uvicorn, Hypercorn and Granian, with wrk.

Each server runs alone, with one worker, on 127.0.0.1 and a port the OS picked,
serving ``bench.app:app``, started afresh for every workload (``--workloads``):
``hello``, ``GET /`` (13 bytes); ``post64k``, ``POST /upload`` with a 64 KiB
body that the app reads in full and answers with its length; ``get1m``,
``GET /bytes/1048576``, a 1 MiB response from one preallocated bytes object.
After checking one answer and a short warm-up, ``wrk --latency`` loads it for
``--duration`` seconds; the table gives requests per second, the body bytes
moved per second (MB/s, the body workloads only), the 99th percentile latency,
errors, the throughput relative to Hypercorn (asyncio) and to Uvicorn
(httptools) on the same loop, and (from /proc) the CPU the server used and the
CPU anything else used meanwhile, which flags a disturbed row.

Run it as ``nox -s bench`` or ``python bench/http1.py [--duration 10]
[--connections 64] [--workloads hello,post64k,get1m] [--no-uvloop] [--json
results.json]`` from the repository root. It needs wrk (``apt-get install -y
wrk``). Exit status: 0 when every server was measured, 1 when at least one
failed, 2 when wrk is missing or an argument is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import importlib.metadata
import json
import os
import platform
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO, Any

if not __package__:
    # Run as ``python bench/http1.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import record

ROOT = Path(__file__).resolve().parent.parent
APP = "bench.app:app"
BASELINE = "hypercorn"  # the row every ratio is relative to
UVICORN = ("uvicorn", "httptools")  # the "vs uvicorn" row, on each row's own loop

STARTUP_TIMEOUT = 15.0  # seconds for a server to answer its first request
STOP_TIMEOUT = 10.0  # seconds between SIGINT and SIGKILL
STDERR_TAIL = 2000  # characters of a failed server's stderr to show
BUSY_WARNING = 0.15  # warn when the CPUs are busier than this before the run
NOISE_WARNING = 0.1  # flag a row when other processes used this many cores during it


@dataclasses.dataclass(frozen=True)
class Workload:
    """What every wrk connection asks for, again and again, and what bench.app answers."""

    name: str
    title: str  # the request, for the table's title
    path: str
    answer_length: int  # the response body's bytes
    upload: int = 0  # the request body's bytes (a POST when above 0)
    moves_bytes: bool = False  # whether MB/s (payload bytes per second) means something

    @property
    def payload(self) -> int:
        """What MB/s counts per request: the upload's bytes for a POST, else the answer's."""
        return self.upload or self.answer_length

    @property
    def method(self) -> str:
        return "POST" if self.upload else "GET"

    def wrk_script(self) -> str | None:
        """The Lua that makes wrk send this request (None: wrk's plain GET does)."""
        if not self.upload:
            return None
        return (
            f'wrk.method = "{self.method}"\n'
            f'wrk.body = string.rep("x", {self.upload})\n'
            'wrk.headers["Content-Type"] = "application/octet-stream"\n'
        )  # wrk adds the Content-Length of wrk.body itself


MIB = 1024 * 1024
WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload("hello", "GET / (13 B)", "/", answer_length=13),
        Workload(
            "post64k",
            "POST /upload with a 64 KiB body, read whole, answered with its length",
            "/upload",
            answer_length=len(str(64 * 1024)),
            upload=64 * 1024,
            moves_bytes=True,
        ),
        Workload(
            "get1m",
            f"GET /bytes/{MIB}: a 1 MiB response",
            f"/bytes/{MIB}",
            answer_length=MIB,
            moves_bytes=True,
        ),
    )
}


@dataclasses.dataclass(frozen=True)
class Server:
    """One row of the table: a server, an event loop, and how to start it."""

    name: str  # "tricorn", "uvicorn", "hypercorn"
    loop: str  # "asyncio", "uvloop" or "trio"
    argv_template: tuple[str, ...]  # "{port}" is replaced by the port
    impl: str | None = None  # a server's choice of library, shown in the label

    @property
    def label(self) -> str:
        inside = f"{self.impl}, {self.loop}" if self.impl else self.loop
        return f"{self.name} ({inside})"

    def argv(self, port: int) -> list[str]:
        return [sys.executable, *(arg.format(port=port) for arg in self.argv_template)]


def tricorn(loop: str, parser: str | None = None) -> Server:
    """tricorn on ``loop``; ``parser`` names its HTTP/1.1 parser (None: its default, auto)."""
    chosen = () if parser is None else ("--http1-parser", parser)
    return Server(
        "tricorn",
        loop,
        ("-m", "tricorn", APP, "--bind", "127.0.0.1:{port}", "--worker-class", loop,
         "--no-access-log", "--log-level", "warning", *chosen),
        impl=parser,
    )  # fmt: skip


def uvicorn(loop: str, http: str = "h11") -> Server:
    return Server(
        "uvicorn",
        loop,
        ("-m", "uvicorn", APP, "--http", http, "--loop", loop, "--no-access-log",
         "--host", "127.0.0.1", "--port", "{port}", "--workers", "1", "--log-level", "warning"),
        impl=http,
    )  # fmt: skip


def granian(loop: str, http: str = "1") -> Server:
    """Granian's ASGI interface, one worker (its HTTP runs in Rust; the app on ``loop``)."""
    return Server(
        "granian",
        loop,
        ("-m", "granian", APP, "--interface", "asgi", "--http", http, "--host", "127.0.0.1",
         "--port", "{port}", "--workers", "1", "--loop", loop, "--no-access-log",
         "--log-level", "warning"),
    )  # fmt: skip


def hypercorn(loop: str) -> Server:
    # Hypercorn's access log is off unless --access-logfile is given.
    return Server(
        "hypercorn",
        loop,
        ("-m", "hypercorn", APP, "--bind", "127.0.0.1:{port}", "--workers", "1",
         "--worker-class", loop, "--log-level", "warning"),
    )  # fmt: skip


def servers(uvloop: bool, trio: bool = True) -> list[Server]:
    rows = [
        tricorn("asyncio", "h11"),
        tricorn("asyncio", "httptools"),
        uvicorn("asyncio", "h11"),
        uvicorn("asyncio", "httptools"),
        hypercorn("asyncio"),
        granian("asyncio"),
    ]
    if uvloop:
        rows += [
            tricorn("uvloop", "httptools"),
            uvicorn("uvloop", "httptools"),
            hypercorn("uvloop"),
            granian("uvloop"),
        ]
    if trio:
        # Uvicorn has no trio support; Hypercorn does.
        rows += [tricorn("trio"), hypercorn("trio")]
    return rows


def selected_servers(args: argparse.Namespace) -> list[Server]:
    """The rows add_selection_options() chose: ``--uvloop``, ``--trio`` and ``--only``."""
    rows = servers(args.uvloop, args.trio)
    if args.only:
        wanted = {name.strip() for name in args.only.split(",")}
        rows = [row for row in rows if row.name in wanted]
    return rows


@dataclasses.dataclass
class Result:
    server: str
    loop: str
    ok: bool
    requests_per_sec: float | None = None
    p99_ms: float | None = None
    p50_ms: float | None = None
    requests: int | None = None
    socket_errors: dict[str, int] = dataclasses.field(
        default_factory=lambda: dict.fromkeys(("connect", "read", "write", "timeout"), 0)
    )
    non_2xx_3xx: int = 0
    error: str | None = None  # why the server could not be measured
    impl: str | None = None  # the server's choice of library (its HTTP/1.1 parser)
    # CPU during the measured run, in cores (1.0 = one core busy the whole time):
    server_cpu: float | None = None  # the server's process group
    wrk_cpu: float | None = None
    other_cpu: float | None = None  # everything else on the machine: noise
    wrk_output: str = ""
    workload: str = "hello"  # a key of WORKLOADS

    @property
    def mb_per_sec(self) -> float | None:
        """The body bytes moved per second, in MB (10**6 B), where the workload moves some."""
        workload = WORKLOADS[self.workload]
        if not workload.moves_bytes or self.requests_per_sec is None:
            return None
        return self.requests_per_sec * workload.payload / 1e6

    @property
    def label(self) -> str:
        inside = f"{self.impl}, {self.loop}" if self.impl else self.loop
        return f"{self.server} ({inside})"

    @property
    def errors(self) -> int:
        return sum(self.socket_errors.values()) + self.non_2xx_3xx


# -- wrk's output ----------------------------------------------------------

_UNITS_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}
_RPS = re.compile(r"^Requests/sec:\s+([\d.]+)", re.MULTILINE)
_P99 = re.compile(r"^\s*99(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_P50 = re.compile(r"^\s*50(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", re.MULTILINE)
_TOTAL = re.compile(r"^\s*(\d+) requests in ", re.MULTILINE)
_SOCKET_ERRORS = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_NON_2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")


def to_ms(value: str, unit: str) -> float:
    return float(value) * _UNITS_MS[unit]


def parse_wrk(output: str, result: Result) -> None:
    """Fill in ``result`` from wrk's report; raises ValueError if it has no numbers."""
    rps = _RPS.search(output)
    p99 = _P99.search(output)
    if rps is None or p99 is None:
        raise ValueError("wrk printed no Requests/sec or 99% latency")
    result.requests_per_sec = float(rps.group(1))
    result.p99_ms = to_ms(p99.group(1), p99.group(2))
    if p50 := _P50.search(output):
        result.p50_ms = to_ms(p50.group(1), p50.group(2))
    if total := _TOTAL.search(output):
        result.requests = int(total.group(1))
    if errors := _SOCKET_ERRORS.search(output):
        names = ("connect", "read", "write", "timeout")
        result.socket_errors = dict(zip(names, map(int, errors.groups()), strict=True))
    if non_2xx := _NON_2XX.search(output):
        result.non_2xx_3xx = int(non_2xx.group(1))


# -- processes -------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def answers(port: int) -> bool:
    """Whether a server on ``port`` answers ``GET /`` with a 200."""
    request = f"GET / HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n"
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0) as sock:
            sock.sendall(request.encode("ascii"))
            head = sock.recv(64)
    except OSError:
        return False
    return head.startswith(b"HTTP/1.1 200")


def check_answer(port: int, workload: Workload) -> None:
    """Ask ``workload``'s request once; RuntimeError unless bench.app's answer comes back whole."""
    head = (
        f"{workload.method} {workload.path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n"
        f"Content-Length: {workload.upload}\r\nConnection: close\r\n\r\n"
    )
    answer = bytearray()
    with socket.create_connection(("127.0.0.1", port), timeout=10.0) as sock:
        sock.sendall(head.encode("ascii") + b"x" * workload.upload)
        while chunk := sock.recv(1 << 20):
            answer += chunk
    status, _, rest = bytes(answer).partition(b"\r\n")
    body = rest.partition(b"\r\n\r\n")[2]
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"{workload.name}: answered {status.decode(errors='replace')!r}")
    if len(body) != workload.answer_length:
        raise RuntimeError(
            f"{workload.name}: a body of {len(body)} bytes, not {workload.answer_length}"
        )
    if workload.upload and body != str(workload.upload).encode("ascii"):
        raise RuntimeError(f"{workload.name}: the app read {body!r} bytes, not {workload.upload}")


def wait_until_up(process: subprocess.Popen[bytes], port: int, timeout: float) -> str | None:
    """None once the server answers; otherwise why it did not."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return f"exited with status {process.returncode} before answering"
        if answers(port):
            return None
        time.sleep(0.1)
    return f"did not answer on port {port} within {timeout:.0f} s"


def stop(process: subprocess.Popen[bytes]) -> None:
    """SIGINT the server's process group (as Ctrl-C would), SIGKILL it if it lingers."""
    if process.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        print(f"  did not stop within {STOP_TIMEOUT:.0f} s of SIGINT; SIGKILL", file=sys.stderr)
    # Also reap anything the server spawned (Hypercorn's worker process).
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)


def pinned(cpus: set[int]) -> Callable[[], None] | None:
    """A preexec_fn that pins the child to ``cpus`` (None where that is not possible)."""
    if not cpus or not hasattr(os, "sched_setaffinity"):
        return None
    return lambda: os.sched_setaffinity(0, cpus)


def server_cpus(args: argparse.Namespace) -> set[int]:
    return set() if args.server_cpu < 0 else {args.server_cpu}


def load_cpus(args: argparse.Namespace) -> set[int]:
    return set() if args.server_cpu < 0 else {int(n) for n in args.load_cpus.split(",") if n}


def run_wrk(
    port: int, seconds: int, args: argparse.Namespace, workload: Workload = WORKLOADS["hello"]
) -> str:
    argv = [
        "wrk", f"-t{args.threads}", f"-c{args.connections}", f"-d{seconds}s", "--latency",
        f"http://127.0.0.1:{port}{workload.path}",
    ]  # fmt: skip
    with tempfile.TemporaryDirectory() as directory:
        if (script := workload.wrk_script()) is not None:
            lua = Path(directory, f"{workload.name}.lua")
            lua.write_text(script)
            argv[1:1] = ["-s", str(lua)]
        done = subprocess.run(
            argv,
            capture_output=True,
            text=True,
            timeout=seconds + 30,
            check=False,
            preexec_fn=pinned(load_cpus(args)),
        )
    if done.returncode != 0:
        raise RuntimeError(f"wrk exited with status {done.returncode}: {done.stderr.strip()}")
    return done.stdout


# -- CPU accounting (Linux /proc; None elsewhere) ----------------------------

_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


@dataclasses.dataclass(frozen=True)
class CpuSnapshot:
    wall: float
    machine: float | None  # busy CPU seconds over all CPUs, since boot
    group: float | None  # CPU seconds of the server's process group
    children: float  # CPU seconds of our reaped children (wrk)


def group_cpu_seconds(pgid: int) -> float | None:
    """CPU seconds used so far by the live processes in process group ``pgid``."""
    ticks = 0
    try:
        entries = os.listdir("/proc")
    except OSError:
        return None
    for name in entries:
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat") as stat:
                fields = stat.read().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # After "pid (comm)": state ppid pgrp ... utime stime (fields 3.., 14, 15).
        if int(fields[2]) == pgid:
            ticks += int(fields[11]) + int(fields[12])
    return ticks / _TICK


def cpu_snapshot(pgid: int) -> CpuSnapshot:
    try:
        machine: float | None = _cpu_times()[0] / _TICK
    except (OSError, ValueError, IndexError):
        machine = None
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return CpuSnapshot(
        time.monotonic(), machine, group_cpu_seconds(pgid), usage.ru_utime + usage.ru_stime
    )


def account_cpu(result: Result, before: CpuSnapshot, after: CpuSnapshot) -> None:
    """Split the run's CPU time into the server, wrk and everything else."""
    wall = after.wall - before.wall
    if wall <= 0:
        return
    result.wrk_cpu = (after.children - before.children) / wall
    if after.group is not None and before.group is not None:
        result.server_cpu = (after.group - before.group) / wall
    if after.machine is not None and before.machine is not None and result.server_cpu is not None:
        machine = (after.machine - before.machine) / wall
        result.other_cpu = max(0.0, machine - result.server_cpu - result.wrk_cpu)


def tail(file: IO[bytes]) -> str:
    file.seek(0)
    text = file.read().decode(errors="replace").strip()
    return text[-STDERR_TAIL:] if text else "(no output)"


def launch(
    argv: list[str], args: argparse.Namespace, output: IO[bytes], **env: str
) -> subprocess.Popen[bytes]:
    """Start a server: from the repository root, pinned to the server CPUs, in a
    process group of its own (for stop()), its output to ``output``; ``env``
    adds to the environment."""
    environment = {**os.environ, "PYTHONUNBUFFERED": "1", **env}
    environment["PYTHONPATH"] = os.pathsep.join(
        filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])
    )
    return subprocess.Popen(
        argv,
        cwd=ROOT,
        env=environment,
        stdin=subprocess.DEVNULL,
        stdout=output,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        preexec_fn=pinned(server_cpus(args)),
    )


def measure(server: Server, args: argparse.Namespace, workload: str = "hello") -> Result:
    """``workload`` against a fresh ``server``."""
    result = Result(server.name, server.loop, ok=False, impl=server.impl, workload=workload)
    load = WORKLOADS[workload]
    port = free_port()
    with tempfile.TemporaryFile() as output:
        process = launch(server.argv(port), args, output)
        try:
            if (why := wait_until_up(process, port, STARTUP_TIMEOUT)) is not None:
                result.error = f"{why}; its output:\n{tail(output)}"
                return result
            check_answer(port, load)
            if args.warmup > 0:
                run_wrk(port, args.warmup, args, load)
            before = cpu_snapshot(process.pid)
            result.wrk_output = run_wrk(port, args.duration, args, load)
            account_cpu(result, before, cpu_snapshot(process.pid))
            if process.poll() is not None:
                result.error = f"exited with status {process.returncode} during the run"
                return result
            parse_wrk(result.wrk_output, result)
            result.ok = True
        except (RuntimeError, ValueError, subprocess.TimeoutExpired, OSError) as exc:
            result.error = f"{exc}\n{result.wrk_output}".strip()
        finally:
            stop(process)
    return result


# -- report ----------------------------------------------------------------


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def wrk_version() -> str:
    done = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found = re.search(r"wrk\s+\S+", done.stdout or done.stderr)
    return found.group(0) if found else "wrk (unknown version)"


def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies over all CPUs, from /proc/stat."""
    with open("/proc/stat") as stat:
        fields = [int(value) for value in stat.readline().split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return sum(fields) - idle, sum(fields)


def busy_fraction(seconds: float = 1.0) -> float | None:
    """How busy the CPUs are right now (0..1), or None where /proc/stat is missing."""
    try:
        busy0, total0 = _cpu_times()
        time.sleep(seconds)
        busy1, total1 = _cpu_times()
    except (OSError, ValueError, IndexError):
        return None
    return (busy1 - busy0) / (total1 - total0) if total1 > total0 else None


def environment(args: argparse.Namespace) -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "busy_before_start": busy_fraction(),
        "wrk": wrk_version(),
        "versions": {
            name: version(name)
            for name in ("tricorn", "uvicorn", "hypercorn", "granian", "uvloop", "h11", "httptools")
        },
        "wrk_args": {
            "threads": args.threads,
            "connections": args.connections,
            "duration_s": args.duration,
            "warmup_s": args.warmup,
            "workloads": list(args.workloads),
        },
    }


def rps_of(
    results: list[Result], workload: str, server: str, loop: str, impl: str | None = None
) -> float | None:
    """The req/s of ``server`` on ``loop`` (with ``impl``, if given) in ``workload``."""
    for r in results:
        if (
            r.ok
            and (r.server, r.loop, r.workload) == (server, loop, workload)
            and (impl is None or r.impl == impl)
        ):
            return r.requests_per_sec
    return None


def baseline_rps(results: list[Result], workload: str = "hello") -> float | None:
    return rps_of(results, workload, BASELINE, "asyncio")


def uvicorn_rps(results: list[Result], r: Result) -> float | None:
    """Uvicorn's (httptools) req/s on ``r``'s loop, in ``r``'s workload."""
    return rps_of(results, r.workload, UVICORN[0], r.loop, UVICORN[1])


def _ratio(value: float, base: float | None) -> str:
    return f"{value / base:.2f}" if base else "n/a"


def _cores(value: float | None) -> str:
    return "?" if value is None else f"{value:.2f}"


def _cpu_us(r: Result) -> str:
    """The server's CPU time per request, in microseconds."""
    if r.server_cpu is None or not r.requests_per_sec:
        return "?"
    return f"{r.server_cpu / r.requests_per_sec * 1e6:.0f}"


def table_rows(results: list[Result]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The table of one workload's ``results``: its header and rows, as text cells.

    MB/s only where the workload moves body bytes; vs uvicorn is against Uvicorn
    with httptools on the row's own loop.
    """
    mb_s = any(WORKLOADS[r.workload].moves_bytes for r in results)
    header = (
        "server", "req/s", *(("MB/s",) if mb_s else ()), "p99 ms", "errors", f"vs {BASELINE}",
        f"vs {UVICORN[0]}", "cpu", "cpu us/req", "other cpu",
    )  # fmt: skip
    rows: list[tuple[str, ...]] = []
    for r in results:
        if not r.ok or r.requests_per_sec is None or r.p99_ms is None:
            rows.append((r.label, "FAILED", *("-" * (len(header) - 2))))
            continue
        noisy = " !" if r.other_cpu is not None and r.other_cpu > NOISE_WARNING else ""
        rows.append(
            (
                r.label + noisy,
                f"{r.requests_per_sec:,.0f}",
                *((f"{r.mb_per_sec or 0:,.0f}",) if mb_s else ()),
                f"{r.p99_ms:.2f}",
                str(r.errors),
                _ratio(r.requests_per_sec, baseline_rps(results, r.workload)),
                _ratio(r.requests_per_sec, uvicorn_rps(results, r)),
                _cores(r.server_cpu),
                _cpu_us(r),
                _cores(r.other_cpu),
            )
        )
    return header, rows


def table(results: list[Result]) -> str:
    return render_table(*table_rows(results))


def rst_table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """The table as a reStructuredText list-table, for the docs."""
    lines = [f".. list-table:: {title}", "   :header-rows: 1", ""]
    for row in [header, *rows]:
        lines.append(f"   * - {row[0]}")
        lines.extend(f"     - {cell}" for cell in row[1:])
    return "\n".join(lines) + "\n"


def render_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """Columns padded to fit, the first left-aligned, the rest right-aligned."""
    widths = [max(len(row[i]) for row in [header, *rows]) for i in range(len(header))]
    lines = []
    for i, row in enumerate([header, *rows]):
        cells = [
            row[0].ljust(widths[0]),
            *(c.rjust(w) for c, w in zip(row[1:], widths[1:], strict=True)),
        ]
        lines.append("  ".join(cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def add_selection_options(parser: argparse.ArgumentParser, *, example: str) -> None:
    """The options both benchmarks share: which servers and loops to run, and --json."""
    parser.add_argument(
        "--uvloop",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run tricorn and Uvicorn on uvloop (default: on)",
    )
    parser.add_argument(
        "--trio",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also run tricorn and Hypercorn on trio (default: on)",
    )
    parser.add_argument(
        "--only",
        metavar="NAMES",
        help=f"comma-separated servers to run, e.g. {example} (default: all)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    parser.add_argument(
        "--server-cpu",
        type=int,
        default=0,
        metavar="N",
        help="pin the server to CPU N, away from the load generator (default 0; -1 pins nothing)",
    )
    parser.add_argument(
        "--load-cpus",
        default="1",
        metavar="LIST",
        help="comma-separated CPUs for the load generator (default 1)",
    )


def write_json(path: str, document: dict[str, Any]) -> None:
    Path(path).write_text(json.dumps(document, indent=2) + "\n")
    print(f"wrote {path}", file=sys.stderr)


def json_row(machine: dict[str, Any], r: Result) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py); its scenario is its workload."""
    cpu_us = (
        r.server_cpu / r.requests_per_sec * 1e6 if r.server_cpu and r.requests_per_sec else None
    )
    values: dict[str, float | int | None] = {"req_s": r.requests_per_sec, "errors": r.errors}
    if WORKLOADS[r.workload].moves_bytes:
        values["mb_s"] = r.mb_per_sec
    return record.row(
        machine, scenario=r.workload, server=r.server, loop=r.loop, parser=r.impl, label=r.label,
        status="ok" if r.ok else "failed", error=r.error, values=values, p50_ms=r.p50_ms,
        p99_ms=r.p99_ms, cpu_us_per_req=cpu_us, server_cpu=r.server_cpu, load_cpu=r.wrk_cpu,
        other_cpu=r.other_cpu,
    )  # fmt: skip


def scenario(workload: Workload, args: argparse.Namespace) -> dict[str, Any]:
    """The workload's table in the common shape: req/s, and MB/s where it moves bytes."""
    what = f"{workload.title}, wrk -t{args.threads} -c{args.connections} -d{args.duration}s"
    extra = {"mb_s": "MB/s"} if workload.moves_bytes else None
    return record.scenario(workload.name, what, extra=extra)


def document_name(workloads: Sequence[str]) -> tuple[str, str]:
    """The JSON document's benchmark name and title.

    ``http1`` when it holds the hello workload; the body workloads alone are
    ``http1-bodies``, a benchmark (and docs table) of their own.
    """
    if list(workloads) == ["hello"]:
        return "http1", "HTTP/1.1 hello world"
    if "hello" in workloads:
        return "http1", "HTTP/1.1"
    return "http1-bodies", "HTTP/1.1 request and response bodies"


def comma_names(value: str, allowed: Sequence[str]) -> list[str]:
    """An option's comma-separated names, each one of ``allowed`` (argparse's ``type``)."""
    names = [name.strip() for name in value.split(",") if name.strip()]
    if not names or any(name not in allowed for name in names):
        raise argparse.ArgumentTypeError(f"choose from {','.join(allowed)}")
    return names


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/http1.py",
        description=(
            "Benchmark tricorn beside Uvicorn, Hypercorn and Granian (HTTP/1.1, one worker, wrk)."
        ),
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds of load (default 10)")
    parser.add_argument("--warmup", type=int, default=2, help="seconds of warm-up (default 2)")
    parser.add_argument(
        "--connections", "-c", type=int, default=64, help="wrk connections (default 64)"
    )
    parser.add_argument("--threads", "-t", type=int, default=2, help="wrk threads (default 2)")
    parser.add_argument(
        "--workloads",
        type=lambda v: comma_names(v, tuple(WORKLOADS)),
        default=["hello"],
        metavar="NAMES",
        help="comma-separated: hello (GET /, 13 B), post64k (POST /upload, a 64 KiB body), "
        "get1m (GET /bytes/1048576, a 1 MiB response) (default: hello)",
    )
    add_selection_options(parser, example="tricorn,uvicorn,granian")
    parser.add_argument(
        "--rst",
        metavar="PATH",
        help="also write the table to PATH as a reStructuredText list-table (for the docs)",
    )
    args = parser.parse_args(argv)
    if args.duration < 1 or args.warmup < 0:
        parser.error("--duration must be at least 1 and --warmup at least 0")
    if args.threads < 1 or args.connections < args.threads:
        parser.error("--threads must be at least 1 and --connections at least --threads")
    return args


def has_tool(command: str, what: str, package: str, script: str) -> bool:
    """Whether ``command`` is on PATH; if not, say how to install it."""
    if shutil.which(command) is not None:
        return True
    print(
        f"{script} needs {command}, {what}. On Debian or Ubuntu:\n"
        f"    sudo apt-get update && sudo apt-get install -y {package}",
        file=sys.stderr,
    )
    return False


def warn_if_busy(env: dict[str, Any]) -> None:
    """Warn when something else kept the CPUs busy before the run began."""
    if (busy := env["busy_before_start"]) is not None and busy > BUSY_WARNING:
        print(
            f"warning: the CPUs were {busy:.0%} busy before the benchmark started; something "
            "else is running, so these numbers will be low and noisy",
            file=sys.stderr,
        )


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not has_tool("wrk", "the HTTP benchmarking tool", "wrk", "bench/http1.py"):
        return 2
    rows = selected_servers(args)
    env = environment(args)
    machine = record.machine(args, busy=env["busy_before_start"], tools={"wrk": env["wrk"]})
    print(
        f"wrk -t{args.threads} -c{args.connections} -d{args.duration}s --latency "
        f"(after {args.warmup} s of warm-up); one worker per server on 127.0.0.1; "
        f"{env['cpus']} CPUs shared by wrk and the server",
        file=sys.stderr,
    )
    warn_if_busy(env)
    results = []
    for server in rows:
        print(f"- {server.label} ...", file=sys.stderr, flush=True)
        for workload in args.workloads:
            started = time.monotonic()
            result = measure(server, args, workload)
            took = time.monotonic() - started
            if result.ok:
                rps, p99 = result.requests_per_sec, result.p99_ms
                print(
                    f"  {workload}: {rps:,.0f} req/s, p99 {p99:.2f} ms ({took:.0f} s)",
                    file=sys.stderr,
                )
            else:
                print(f"  {workload}: FAILED: {result.error}", file=sys.stderr)
            results.append(result)

    versions = ", ".join(f"{name} {v}" for name, v in env["versions"].items())
    benchmark, heading = document_name(args.workloads)
    sys.stderr.flush()
    print()
    print(f"{heading}, {env['wrk']}, Python {env['python']}, {versions}")
    tables = []
    for workload in args.workloads:
        title = scenario(WORKLOADS[workload], args)["title"]
        ran = [r for r in results if r.workload == workload]
        print(f"\n{title}")
        print(table(ran))
        tables.append(rst_table(f"{heading}: {title}", *table_rows(ran)))
        if not baseline_rps(results, workload):
            print(f"({BASELINE} (asyncio) was not measured, so there are no vs {BASELINE} ratios)")
    if args.rst:
        Path(args.rst).write_text("\n".join(tables))
        print(f"wrote {args.rst}", file=sys.stderr)
    failed = [r for r in results if not r.ok]
    if any(r.ok and r.other_cpu is not None and r.other_cpu > NOISE_WARNING for r in results):
        print(
            f"! other processes used more than {NOISE_WARNING:.2f} of a core during this row's "
            "run: its numbers are disturbed; rerun on a quiet machine"
        )
    print(
        "MB/s = the request body's bytes per second for a POST, the response body's for a GET "
        "(MB = 10**6 B); vs uvicorn = against Uvicorn (httptools) on the same loop; cpu = the "
        "server's CPU use during the run, in cores; other cpu = everything except the server "
        "and wrk"
    )
    for r in failed:
        first = (r.error or "").splitlines()[0] if r.error else "unknown"
        print(f"{r.label}, {r.workload} failed: {first}")

    if args.json:

        def over(value: float | None, base: float | None) -> float | None:
            return value / base if value and base else None

        own = [
            {
                **dataclasses.asdict(r),
                "label": r.label,
                "errors": r.errors,
                "mb_per_sec": r.mb_per_sec,
                "ratio_to_baseline": over(r.requests_per_sec, baseline_rps(results, r.workload)),
                "ratio_to_uvicorn": over(r.requests_per_sec, uvicorn_rps(results, r)),
            }
            for r in results
        ]
        document = record.document(
            benchmark,
            heading,
            machine,
            [scenario(WORKLOADS[w], args) for w in args.workloads],
            [json_row(machine, r) for r in results],
            environment=env,
            baseline=f"{BASELINE} (asyncio)",
            results=own,
        )
        write_json(args.json, document)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
