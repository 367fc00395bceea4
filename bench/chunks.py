"""Tiny chunks: what a chunked body of one-byte chunks costs each server.

A client sends ``POST /upload`` with ``--chunks`` chunks of one byte each
(``1\\r\\nX\\r\\n``, 6 bytes on the wire per body byte), written in 64 KiB
pieces as fast as the server takes them, and reads the answer (the body's
size). The server's CPU time for the whole request (from /proc, its process
group) is the row's number: a server that pays per chunk rather than per
read is slow here, and an attacker can use that against everyone else on it.
Servers run one at a time, one worker, pinned away from the client, serving
``bench.app:app`` (whose ``/upload`` reads the whole body and answers its size).

Run it as ``python bench/chunks.py [--chunks 200000] [--repeat 3]
[--server-cpu 0 --load-cpus 1] [--json chunks.json]`` from the repository
root. Exit status 1 when a row failed, 2 when an argument is wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import socket
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import http1, record

PIECE = 64 * 1024


@dataclasses.dataclass
class Row:
    label: str
    server: str
    loop: str
    parser: str | None
    ok: bool = False
    cpu_s: list[float] = dataclasses.field(default_factory=list)
    wall_s: list[float] = dataclasses.field(default_factory=list)
    error: str | None = None


def servers() -> list[http1.Server]:
    return [
        http1.tricorn("asyncio", "h11"),
        http1.tricorn("asyncio", "httptools"),
        http1.tricorn("trio"),
        http1.uvicorn("asyncio", "h11"),
        http1.uvicorn("asyncio", "httptools"),
        http1.hypercorn("asyncio"),
        http1.granian("asyncio"),
    ]


def post_chunks(port: int, chunks: int) -> bytes:
    """Send the request, return the response body."""
    body = b"1\r\nX\r\n" * chunks + b"0\r\n\r\n"
    head = (
        b"POST /upload HTTP/1.1\r\nHost: bench\r\nTransfer-Encoding: chunked\r\n"
        b"Connection: close\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", port), timeout=120) as sock:
        sock.sendall(head)
        view = memoryview(body)
        for start in range(0, len(view), PIECE):
            sock.sendall(view[start : start + PIECE])
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    status, _, rest = answer.partition(b"\r\n")
    if not status.startswith(b"HTTP/1.1 200"):
        raise RuntimeError(f"answered {status!r}")
    return rest.partition(b"\r\n\r\n")[2]


def measure(server: http1.Server, args: argparse.Namespace) -> Row:
    row = Row(server.label, server.name, server.loop, server.impl)
    port = http1.free_port()
    with tempfile.TemporaryFile() as output:
        process = http1.launch(server.argv(port), args, output)
        try:
            if (why := http1.wait_until_up(process, port, http1.STARTUP_TIMEOUT)) is not None:
                row.error = f"{why}; its output:\n{http1.tail(output)}"
                return row
            load = http1.load_cpus(args)
            if load:
                os.sched_setaffinity(0, load)
            post_chunks(port, 1000)  # warm-up
            for _ in range(args.repeat):
                before = http1.group_cpu_seconds(process.pid)
                started = time.monotonic()
                answer = post_chunks(port, args.chunks)
                wall = time.monotonic() - started
                after = http1.group_cpu_seconds(process.pid)
                if answer != str(args.chunks).encode():
                    raise RuntimeError(f"the app read {answer!r} bytes, not {args.chunks}")
                if before is None or after is None:
                    raise RuntimeError("no /proc to read the server's CPU time from")
                row.cpu_s.append(after - before)
                row.wall_s.append(wall)
            row.ok = True
        except (RuntimeError, OSError) as exc:
            row.error = str(exc)
        finally:
            http1.stop(process)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench/chunks.py", description=__doc__.split("\n")[0])
    parser.add_argument("--chunks", type=int, default=200_000, help="one-byte chunks (200000)")
    parser.add_argument("--repeat", type=int, default=3, help="requests per server (3)")
    parser.add_argument("--only", help="comma-separated server names (tricorn,uvicorn,...)")
    parser.add_argument("--server-cpu", type=int, default=0)
    parser.add_argument("--load-cpus", default="1")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.chunks < 1 or args.repeat < 1:
        parser.error("--chunks and --repeat must be at least 1")
    machine = record.machine(args)
    chosen = servers()
    if args.only:
        names = set(args.only.split(","))
        chosen = [s for s in chosen if s.name in names]
    rows = []
    for server in chosen:
        print(f"measuring {server.label} ...", file=sys.stderr)
        rows.append(measure(server, args))
    wire = 6 * args.chunks + 5
    print(f"\n{args.chunks} one-byte chunks ({wire / 1e6:.1f} MB on the wire),", end=" ")
    print(f"median of {args.repeat}")
    print(f"{'server':32} {'server CPU s':>12} {'wall s':>8}")
    for row in rows:
        if row.ok:
            cpu, wall = statistics.median(row.cpu_s), statistics.median(row.wall_s)
            print(f"{row.label:32} {cpu:12.3f} {wall:8.3f}")
        else:
            print(f"{row.label:32} failed: {(row.error or '').splitlines()[0]}")
    if args.json:
        scenario = record.scenario(
            "tiny-chunks",
            f"One POST of {args.chunks:,} one-byte chunks: server CPU",
            metric="cpu_s",
            unit="s",
            higher_is_better=False,
            per="request",
            extra={"wall_s": "wall s"},
        )
        common = [
            record.row(
                machine,
                scenario="tiny-chunks",
                server=r.server,
                loop=r.loop,
                parser=r.parser,
                label=r.label,
                status="ok" if r.ok else "failed",
                error=r.error,
                values={
                    "cpu_s": statistics.median(r.cpu_s) if r.ok else None,
                    "wall_s": statistics.median(r.wall_s) if r.ok else None,
                },
            )
            for r in rows
        ]
        document = record.document(
            "chunks",
            "Tiny chunks",
            machine,
            [scenario],
            common,
            results=[dataclasses.asdict(r) for r in rows],
        )
        Path(args.json).write_text(json.dumps(document, indent=2))
    return 0 if all(row.ok for row in rows) else 1


if __name__ == "__main__":
    raise SystemExit(main())
