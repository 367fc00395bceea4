"""A large download two ways: the file handed to the server (pathsend) or read and sent by the app.

tricorn serves ``bench/download_app.py`` with one worker on each loop; a
client pinned away from the server downloads a ``--size`` MiB file
``--downloads`` times from ``/pathsend`` and from ``/loop``. The table gives
the throughput and the server's CPU time per download (from /proc), and how
much of the loop's CPU pathsend saves. On cleartext HTTP/1.1 tricorn sends a
pathsend file with ``os.sendfile``: the bytes never enter Python.

Run it as ``python bench/download.py [--size 100] [--downloads 5]
[--server-cpu 0 --load-cpus 1] [--json download.json]`` from the repository
root; no external tool is needed. Exit status 1 when a row failed.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import http1, record

APP = "bench.download_app:app"
MODES = ("pathsend", "loop")
RECEIVE = 1024 * 1024


@dataclasses.dataclass
class Result:
    loop: str
    mode: str
    ok: bool = False
    mib_per_s: float | None = None
    cpu_ms_per_download: float | None = None
    error: str | None = None


def download(port: int, path: str) -> int:
    """Download ``path`` once, reading the body into one buffer; the body's size."""
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(f"GET {path} HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n".encode())
        buffer = bytearray(RECEIVE)
        view = memoryview(buffer)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk:
                raise RuntimeError("the server closed before the head")
            head += chunk
        head, _, body = head.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 200"):
            raise RuntimeError(head.split(b"\r\n", 1)[0].decode(errors="replace"))
        length = next(
            int(line.split(b":", 1)[1])
            for line in head.split(b"\r\n")
            if line.lower().startswith(b"content-length:")
        )
        received = len(body)
        while received < length:
            n = sock.recv_into(view)
            if not n:
                raise RuntimeError(f"the body ended at {received} of {length} bytes")
            received += n
        return received


def client(port: int, path: str, downloads: int, cpus: set[int]) -> None:
    """Run the downloads in a child process pinned to ``cpus`` (the load generator's)."""
    code = (
        "import sys; sys.path.insert(0, sys.argv[1]); from bench.download import download\n"
        "for _ in range(int(sys.argv[4])): download(int(sys.argv[2]), sys.argv[3])\n"
    )
    subprocess.run(
        [sys.executable, "-c", code, str(http1.ROOT), str(port), path, str(downloads)],
        check=True,
        preexec_fn=http1.pinned(cpus),
        timeout=600,
    )


def measure(loop: str, file: str, args: argparse.Namespace) -> list[Result]:
    results = [Result(loop, mode) for mode in MODES]
    port = http1.free_port()
    argv = [
        sys.executable, "-m", "tricorn", APP, "--bind", f"127.0.0.1:{port}",
        "--worker-class", loop, "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    with tempfile.TemporaryFile() as output:
        process = http1.launch(argv, args, output, BENCH_DOWNLOAD_FILE=file)
        try:
            if (why := http1.wait_until_up(process, port, http1.STARTUP_TIMEOUT)) is not None:
                for result in results:
                    result.error = f"{why}; its output:\n{http1.tail(output)}"
                return results
            for result in results:
                path = f"/{result.mode}"
                client(port, path, 1, http1.load_cpus(args))  # warm-up, page cache
                before = http1.group_cpu_seconds(process.pid)
                started = time.monotonic()
                client(port, path, args.downloads, http1.load_cpus(args))
                wall = time.monotonic() - started
                after = http1.group_cpu_seconds(process.pid)
                result.mib_per_s = args.size * args.downloads / wall
                if before is not None and after is not None:
                    result.cpu_ms_per_download = (after - before) * 1000 / args.downloads
                result.ok = True
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired, OSError) as exc:
            for result in results:
                if not result.ok:
                    result.error = f"{exc}\n{http1.tail(output)}"
        finally:
            http1.stop(process)
    return results


def table(results: list[Result]) -> str:
    header = ("loop", "mode", "MiB/s", "server cpu ms/download", "vs loop")
    rows = []
    for r in results:
        if not r.ok:
            rows.append((r.loop, r.mode, "FAILED", "-", "-"))
            continue
        baseline = next(
            (b for b in results if b.loop == r.loop and b.mode == "loop" and b.ok), None
        )
        ratio = (
            f"{r.cpu_ms_per_download / baseline.cpu_ms_per_download:.2f}"
            if baseline and baseline.cpu_ms_per_download and r.cpu_ms_per_download is not None
            else "?"
        )
        cpu = "?" if r.cpu_ms_per_download is None else f"{r.cpu_ms_per_download:.1f}"
        rows.append((r.loop, r.mode, f"{r.mib_per_s:,.0f}", cpu, ratio))
    return http1.render_table(header, rows)


def json_row(machine: dict[str, Any], r: Result, results: list[Result]) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py): the mode is the parser column's place."""
    loop = next((b for b in results if (b.loop, b.mode, b.ok) == (r.loop, "loop", True)), None)
    vs_loop = (
        r.cpu_ms_per_download / loop.cpu_ms_per_download
        if loop and loop.cpu_ms_per_download and r.cpu_ms_per_download is not None
        else None
    )
    return record.row(
        machine, scenario="download", server="tricorn", loop=r.loop, parser=r.mode,
        label=f"tricorn ({r.mode}, {r.loop})", status="ok" if r.ok else "failed", error=r.error,
        values={"cpu_ms_per_download": r.cpu_ms_per_download, "mib_s": r.mib_per_s,
                "vs_loop": vs_loop},
    )  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/download.py",
        description="A large download: pathsend (sendfile) against an app's read-and-send loop.",
    )
    parser.add_argument("--size", type=int, default=100, help="file size in MiB (default 100)")
    parser.add_argument(
        "--downloads", type=int, default=5, help="measured downloads per row (default 5)"
    )
    parser.add_argument(
        "--loops",
        default="asyncio,uvloop,trio",
        help="comma-separated worker classes to run (default asyncio,uvloop,trio)",
    )
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH as JSON")
    parser.add_argument(
        "--server-cpu",
        type=int,
        default=0,
        metavar="N",
        help="pin the server to CPU N, away from the client (default 0; -1 pins nothing)",
    )
    parser.add_argument(
        "--load-cpus", default="1", metavar="LIST", help="CPUs for the client (default 1)"
    )
    args = parser.parse_args(argv)
    if args.size < 1 or args.downloads < 1:
        parser.error("--size and --downloads must be at least 1")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    machine = record.machine(args, busy=http1.busy_fraction())
    loops = [name for name in args.loops.split(",") if name]
    results: list[Result] = []
    with tempfile.TemporaryDirectory() as directory:
        file = os.path.join(directory, "download.bin")
        with open(file, "wb") as out:
            piece = os.urandom(1024 * 1024)
            for _ in range(args.size):
                out.write(piece)
        for loop in loops:
            print(f"- tricorn ({loop}) ...", file=sys.stderr, flush=True)
            results += measure(loop, file, args)
    print()
    print(
        f"{args.size} MiB download x {args.downloads}, one tricorn worker, client pinned "
        f"to CPUs {args.load_cpus}, server to CPU {args.server_cpu}"
    )
    print(table(results))
    print("vs loop = the server's CPU per download relative to the read-and-send loop")
    failed = [r for r in results if not r.ok]
    for r in failed:
        first = (r.error or "unknown").splitlines()[0]
        print(f"{r.loop} {r.mode} failed: {first}")
    if args.json:
        what = f"{args.size} MiB over cleartext HTTP/1.1, {args.downloads} downloads per row"
        document = record.document(
            "download",
            "Large downloads: pathsend against a read-and-send loop",
            machine,
            [record.scenario("download", what, metric="cpu_ms_per_download",
                             unit="server CPU ms/download", higher_is_better=False,
                             extra={"mib_s": "MiB/s", "vs_loop": "CPU vs loop"})],
            [json_row(machine, r, results) for r in results],
            size_mib=args.size,
            downloads=args.downloads,
            results=[dataclasses.asdict(r) for r in results],
        )  # fmt: skip
        http1.write_json(args.json, document)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
