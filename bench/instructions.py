"""Instructions per request: a deterministic cost, counted by valgrind's callgrind.

CPU time and req/s on a shared machine swing by 10-30 % from run to run, which
hides a change of a few per cent. The instructions a server's processes execute
in user space, as callgrind counts them, repeat to about 0.1 % with
``PYTHONHASHSEED`` fixed (tricorn's to 0.03 %; a server's work on a timer,
such as Uvicorn's 0.1 s tick, is counted too and varies with the run's length):
this script is for before/after comparisons of small changes. It counts no
kernel time (system calls, the TCP stack), no cache misses and no waiting, so it
is no substitute for ``bench/http1.py``'s req/s.

Each server of ``bench/http1.py`` (its command lines, ``--only``, ``--uvloop``,
``--trio``) runs under ``valgrind --tool=callgrind`` serving ``bench.app:app``.
One client connection sends N sequential keep-alive requests of a workload
(``hello``: ``GET /``; ``post64k``: ``POST /upload`` with a 64 KiB body), checking
every answer (200 and the expected body), then the server gets SIGINT and
valgrind prints ``Collected : X``, the instructions of the whole process (of
every process, with ``--trace-children=yes``, summed). The server runs twice, with
N1 and N2 requests; (X(N2) - X(N1)) / (N2 - N1) is the cost of one request, the
start-up and shutdown cancelling out.

Run it as ``nox -s bench-instructions`` or ``python bench/instructions.py
[--requests 200,1200] [--workloads hello,post64k] [--only tricorn,uvicorn]
[--json results.json]`` from the repository root. It needs valgrind
(``apt-get install -y valgrind``). Exit status: 0 when every row was measured
(or skipped), 1 when one failed, 2 when valgrind is missing or an argument is wrong.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

if not __package__:
    # Run as ``python bench/instructions.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import app as bench_app
from bench import http1, record

#: The rows, in the table's order: (server, loop, parser) of bench/http1.py's servers.
ROWS: tuple[tuple[str, str, str | None], ...] = (
    ("tricorn", "asyncio", "httptools"),
    ("tricorn", "uvloop", "httptools"),
    ("tricorn", "trio", None),
    ("tricorn", "asyncio", "h11"),
    ("uvicorn", "asyncio", "httptools"),
    ("uvicorn", "uvloop", "httptools"),
    ("uvicorn", "asyncio", "h11"),
    ("hypercorn", "asyncio", None),
    ("granian", "asyncio", None),
)
WORKLOADS = ("hello", "post64k")
#: Servers whose failure under valgrind skips their row rather than failing the run.
OPTIONAL = {"granian": "Granian's Rust runtime under valgrind"}
VALGRIND = (
    "valgrind",
    "--tool=callgrind",
    "--callgrind-out-file=/dev/null",
    "--trace-children=yes",
)
STARTUP_TIMEOUT = 180.0  # seconds: Python starts ~50 times slower under valgrind
STOP_TIMEOUT = 120.0  # seconds between SIGINT and SIGKILL: valgrind's exit is slow too
ANSWER_TIMEOUT = 60.0  # seconds for one answer
ENV = {"PYTHONHASHSEED": "0"}  # str hashes, and so dict and set orders, the same every run

_COLLECTED = re.compile(r"^==\d+== Collected : (\d+)\s*$", re.MULTILINE)


@dataclasses.dataclass
class Result:
    server: str
    loop: str
    impl: str | None
    workload: str
    status: str = "failed"  # "ok", "failed" or "skipped"
    error: str | None = None
    instructions: dict[int, int] = dataclasses.field(default_factory=dict)  # N -> Collected
    per_request: float | None = None
    seconds: float = 0.0
    reconnects: dict[int, int] = dataclasses.field(default_factory=dict)  # N -> new connections

    @property
    def note(self) -> str | None:
        """What the table's notes say of a server that closed the keep-alive connection."""
        if not any(self.reconnects.values()):
            return None
        runs = ", ".join(f"{k} in the {n}-request run" for n, k in sorted(self.reconnects.items()))
        return f"the server closed the connection (Connection: close), new ones: {runs}"

    @property
    def label(self) -> str:
        inside = f"{self.impl}, {self.loop}" if self.impl else self.loop
        return f"{self.server} ({inside})"


# -- numbers ---------------------------------------------------------------------------


def collected(stderr: str) -> int:
    """The instructions valgrind counted: the sum of every ``Collected`` line (one a process).

    ValueError when there is none: the process did not exit through valgrind's end
    (SIGKILL) or did not run under callgrind.
    """
    counts = [int(found) for found in _COLLECTED.findall(stderr)]
    if not counts:
        raise ValueError("valgrind printed no 'Collected : N' line")
    return sum(counts)


def per_request(counts: dict[int, int]) -> float:
    """The instructions one more request costs: (X(N2) - X(N1)) / (N2 - N1)."""
    if len(counts) != 2:
        raise ValueError(f"need the counts of two runs, not {len(counts)}")
    (n1, x1), (n2, x2) = sorted(counts.items())
    if n1 == n2 or n1 < 1:
        raise ValueError("the two runs need different numbers of requests, at least 1")
    cost = (x2 - x1) / (n2 - n1)
    if cost <= 0:
        raise ValueError(f"{n2} requests took no more instructions than {n1}: {x2} <= {x1}")
    return cost


def ratio(results: Sequence[Result], r: Result) -> float | None:
    """``r``'s instructions per request over Uvicorn's on the same loop and parser.

    h11 rows are compared with Uvicorn (h11), every other with Uvicorn (httptools).
    """
    parser = "h11" if r.impl == "h11" else "httptools"
    for other in results:
        if (other.server, other.loop, other.impl, other.workload) == (
            "uvicorn", r.loop, parser, r.workload,
        ) and other.per_request and r.per_request:  # fmt: skip
            return r.per_request / other.per_request
    return None


# -- one server --------------------------------------------------------------------------


def request(workload: http1.Workload) -> bytes:
    head = f"{workload.method} {workload.path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if workload.upload:
        head += f"Content-Type: application/octet-stream\r\nContent-Length: {workload.upload}\r\n"
    return (head + "\r\n").encode("ascii") + b"x" * workload.upload


def expected_body(workload: http1.Workload) -> bytes:
    return str(workload.upload).encode("ascii") if workload.upload else bench_app.BODY


@dataclasses.dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    close: bool  # the server said ``Connection: close``: it ends the connection after this


def read_answer(stream: Any) -> Answer:
    """One response from a socket's binary file: its status and its Content-Length body."""
    status_line = stream.readline(65536)
    if not status_line:
        raise RuntimeError("the server closed the connection")
    parts = status_line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        raise RuntimeError(f"not an HTTP/1.1 status line: {status_line!r}")
    length, close = None, False
    while (line := stream.readline(65536)) not in (b"\r\n", b"\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value.strip())
        elif name.strip().lower() == b"transfer-encoding":
            raise RuntimeError("a chunked answer: bench.app answers with a Content-Length")
        elif name.strip().lower() == b"connection":
            close = b"close" in value.lower()
    if length is None:
        raise RuntimeError("an answer without a Content-Length")
    body = stream.read(length)
    if len(body) != length:
        raise RuntimeError("the server closed the connection within a body")
    return Answer(int(parts[1]), body, close)


def check_answer(stream: Any, workload: http1.Workload, n: int = 1) -> bool:
    """Read the answer to request number ``n``; RuntimeError unless it is 200 and bench.app's.

    True when the server closes the connection after it (``Connection: close``).
    """
    answer = read_answer(stream)
    body = expected_body(workload)
    if answer.status != 200 or answer.body != body:
        raise RuntimeError(
            f"request {n}: answered {answer.status} with {answer.body[:40]!r}, not 200 {body!r}"
        )
    return answer.close


def send_requests(port: int, workload: http1.Workload, count: int) -> int:
    """``count`` requests, one after the other, on a keep-alive connection; each checked.

    A server that closes the connection (``Connection: close``; Hypercorn does after
    1,000 requests, its keep_alive_max_requests) gets a new one: the number of those.
    """
    data, sent, reconnects = request(workload), 0, -1
    while sent < count:
        reconnects += 1
        with socket.create_connection(("127.0.0.1", port), timeout=ANSWER_TIMEOUT) as sock:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with sock.makefile("rb") as stream:
                while sent < count:
                    sock.sendall(data)
                    sent += 1
                    if check_answer(stream, workload, sent):
                        break
    return reconnects


def stop(process: subprocess.Popen[bytes]) -> bool:
    """SIGINT the server's process group; whether it exited without SIGKILL."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGINT)
    try:
        process.wait(STOP_TIMEOUT)
        clean = True
    except subprocess.TimeoutExpired:
        clean = False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)  # and anything it left behind
    with contextlib.suppress(subprocess.TimeoutExpired):
        process.wait(5)
    return clean


def count(
    server: http1.Server, args: argparse.Namespace, workload: str, requests: int
) -> tuple[int, int]:
    """The instructions of one server run under callgrind that answers ``requests`` requests,
    and how many times the client had to reconnect."""
    port = http1.free_port()
    with tempfile.TemporaryFile() as output:
        process = http1.launch([*VALGRIND, *server.argv(port)], args, output, **ENV)
        try:
            if (why := http1.wait_until_up(process, port, STARTUP_TIMEOUT)) is not None:
                raise RuntimeError(f"{why}; its output:\n{http1.tail(output)}")
            reconnects = send_requests(port, http1.WORKLOADS[workload], requests)
        finally:
            clean = stop(process)
        output.seek(0)
        text = output.read().decode(errors="replace")
    if not clean:
        raise RuntimeError(f"did not exit within {STOP_TIMEOUT:.0f} s of SIGINT")
    return collected(text), reconnects


def measure(server: http1.Server, args: argparse.Namespace, workload: str) -> Result:
    result = Result(server.name, server.loop, server.impl, workload)
    started = time.monotonic()
    try:
        for n in args.requests:
            result.instructions[n], result.reconnects[n] = count(server, args, workload, n)
        result.per_request = per_request(result.instructions)
        result.status = "ok"
    except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
        result.error = str(exc).strip() or type(exc).__name__
        if server.name in OPTIONAL:
            result.status = "skipped"
            result.error = f"{OPTIONAL[server.name]}: {result.error}"
    result.seconds = time.monotonic() - started
    return result


# -- the table -----------------------------------------------------------------------


def selected(args: argparse.Namespace) -> list[http1.Server]:
    """bench/http1.py's servers that ``--only``, ``--uvloop`` and ``--trio`` chose, of ROWS."""
    chosen = {(s.name, s.loop, s.impl): s for s in http1.selected_servers(args)}
    return [chosen[key] for key in ROWS if key in chosen]


def table(results: Sequence[Result]) -> str:
    header = ("server", "instructions/req", "vs uvicorn", "N1", "N2", "seconds")
    rows = []
    for r in results:
        if r.status != "ok" or r.per_request is None:
            rows.append((r.label, r.status.upper(), "-", "-", "-", f"{r.seconds:.0f}"))
            continue
        (_, x1), (_, x2) = sorted(r.instructions.items())
        vs = ratio(results, r)
        rows.append(
            (
                r.label,
                f"{r.per_request:,.0f}",
                "n/a" if vs is None else f"{vs:.2f}",
                f"{x1:,}",
                f"{x2:,}",
                f"{r.seconds:.0f}",
            )
        )
    return http1.render_table(header, rows)


def scenario(workload: str, args: argparse.Namespace) -> dict[str, Any]:
    n1, n2 = args.requests
    title = (
        f"{http1.WORKLOADS[workload].title}, {n1} and {n2} keep-alive requests on one"
        " connection, callgrind"
    )
    return record.scenario(
        workload,
        title,
        metric="instr_per_req",
        unit="instructions/req",
        higher_is_better=False,
        per="req",
    )


def json_row(machine: dict[str, Any], r: Result, results: Sequence[Result]) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py); ``results`` give its ratio to Uvicorn."""
    return record.row(
        machine, scenario=r.workload, server=r.server, loop=r.loop, parser=r.impl,
        label=r.label, status=r.status, error=r.error, note=r.note,
        values={"instr_per_req": r.per_request, "vs_uvicorn": ratio(results, r)},
    )  # fmt: skip


# -- the command line ------------------------------------------------------------------


def requests_pair(value: str) -> tuple[int, int]:
    """``--requests N1,N2``: two request counts, 1 <= N1 < N2."""
    try:
        n1, n2 = (int(part) for part in value.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError("give two request counts, N1,N2, e.g. 200,1200") from None
    if not 1 <= n1 < n2:
        raise argparse.ArgumentTypeError(f"need 1 <= N1 < N2, not {n1},{n2}")
    return n1, n2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/instructions.py",
        description="Instructions per HTTP/1.1 request (valgrind's callgrind), tricorn beside "
        "Uvicorn, Hypercorn and Granian: deterministic, for before/after comparisons.",
    )
    parser.add_argument(
        "--requests",
        type=requests_pair,
        default=(200, 1200),
        metavar="N1,N2",
        help="the two runs' request counts; the cost is the difference over N2-N1 "
        "(default 200,1200)",
    )
    parser.add_argument(
        "--workloads",
        type=lambda v: http1.comma_names(v, WORKLOADS),
        default=list(WORKLOADS),
        metavar="NAMES",
        help="comma-separated: hello (GET /), post64k (POST /upload, a 64 KiB body) "
        "(default: both)",
    )
    http1.add_selection_options(parser, example="tricorn,uvicorn")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if shutil.which("valgrind") is None:
        print(
            "bench/instructions.py needs valgrind (callgrind counts the instructions). On Debian"
            " or Ubuntu:\n    sudo apt-get update && sudo apt-get install -y valgrind",
            file=sys.stderr,
        )
        return 2
    done = subprocess.run(["valgrind", "--version"], capture_output=True, text=True, check=False)
    tool = done.stdout.strip() or "valgrind"
    machine = record.machine(args, tools={"valgrind": tool}, load_pinned=False)
    servers = selected(args)
    n1, n2 = args.requests
    print(f"{tool} --tool=callgrind; {n1} and {n2} requests per server", file=sys.stderr)
    results: list[Result] = []
    for server in servers:
        print(f"- {server.label} ...", file=sys.stderr, flush=True)
        for workload in args.workloads:
            r = measure(server, args, workload)
            shown = f"{r.per_request:,.0f} instructions/req" if r.per_request else r.status.upper()
            print(f"  {workload}: {shown} ({r.seconds:.0f} s)", file=sys.stderr, flush=True)
            if r.error or r.note:
                print(f"    {r.error or r.note}", file=sys.stderr)
            results.append(r)
    for workload in args.workloads:
        print(f"\n{scenario(workload, args)['title']}")
        print(table([r for r in results if r.workload == workload]))
    print(
        "instructions/req = user-space instructions of the server's processes per request; "
        "vs uvicorn = against Uvicorn on the same loop (httptools; h11 rows: Uvicorn h11); "
        "N1, N2 = the two runs' whole counts"
    )
    if args.json:
        rows = [json_row(machine, r, results) for r in results]
        document = record.document(
            "instructions",
            "Instructions per request (callgrind)",
            machine,
            [scenario(w, args) for w in args.workloads],
            rows,
            requests=list(args.requests),
            valgrind=list(VALGRIND),
            environment=ENV,
            results=[
                {**dataclasses.asdict(r), "label": r.label, "vs_uvicorn": ratio(results, r)}
                for r in results
            ],
        )
        http1.write_json(args.json, document)
    return 1 if any(r.status == "failed" for r in results) else 0


if __name__ == "__main__":
    sys.exit(main())
