"""HTTP/1.1 latency at a fixed request rate: every server gets the same load.

bench/http1.py is closed-loop: wrk's connections each send their next request
as soon as the last answer arrives, so every server runs flat out, each at its
own rate, and its p99 is mostly the time a request waits in the queue of a
saturated server. Here the load is open-loop: requests are sent at a fixed
total rate (``--rates``, per second, ``GET /``), whatever the server does, and
the latencies of servers that keep up are compared at the same offered load.

The servers and their order are bench/http1.py's (``--uvloop``, ``--trio``,
``--only``), one worker each, pinned to ``--server-cpu`` (0), serving
``bench.app:app``. A run starts a server, measures it at each rate in turn
and stops it; there are ``--repeat`` (3) runs of every server, round-robin (all
the servers, then all of them again), so that a disturbance from elsewhere on
the machine lands in one run of several servers rather than in every run of
one. The load is h2load (``--h1``, one request in flight per connection,
``--rps`` per connection): ``--connections`` (64) connections, from
``--processes`` h2load processes pinned to ``--load-cpus`` (1), one connection
each by default. One h2load starts all its connections at once and sends on
all of them in the same instant, a burst of 64 every period rather than an
even stream, so the processes are started one after the other, which spreads
their send times over the period. After ``--warmup`` seconds (not logged),
each h2load logs every request it sends for ``--duration`` seconds: when it
was sent, its status, and the microseconds until its response ended.

The script reads those logs: the requests sent while every h2load was
measuring (from the last one's first request to the first one's last) give the
achieved rate, and the 50th, 99th and 99.9th percentiles (nearest rank) of
their times. A server that answers fewer than 95 % of the offered requests is
"saturated at this rate": its queue grows for as long as the run lasts, so no
latency is reported for it. A failed request or an answer other than 200
fails the run. The server's CPU time (its process group, from /proc) over the
same span, divided by the requests, is its CPU per request; the load
generators' and everything else's CPU are recorded too (a run where other
processes used more than a tenth of a core is flagged as disturbed).

A row of the tables (one server at one rate) is the median of its runs (see
Median): one stall of the machine moves one run's p99 several times over, the
median of three does not follow it. Each row also gives the lowest and
highest p99 of its runs that kept up: how far one run can be trusted. A
saturated run counts as infinitely slow, so a row saturated in most of its
runs is saturated; failed runs are left out, and a row fails when at least
half of its runs did. The JSON's ``rows`` are the medians, its ``results``
every run.

Caveat: h2load times a request from when it sends it. When a server stalls, a
connection's next request waits in h2load until the previous one is answered,
and that wait is not counted (coordinated omission); at the rates where a
server keeps up, a connection's requests are tens of milliseconds apart and
this is rare.

Run it as ``nox -s bench-latency`` or ``python bench/latency.py [--rates
2000,5000] [--duration 3] [--repeat 3] [--only tricorn,uvicorn] [--json
latency.json]`` from the repository root; the defaults take about 6 minutes
for the 12 servers on two cores. It needs h2load (``apt-get install -y
nghttp2-client``). Exit status: 0 when every run was measured (saturated
ones included), 1 when one failed, 2 when h2load is missing or an argument
is wrong.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any, Final

if not __package__:
    # Run as ``python bench/latency.py``: make ``bench`` importable.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench import http1, http2, record

BENCHMARK: Final = "latency"
TITLE: Final = "HTTP/1.1 latency at a fixed request rate"
#: A server answering fewer than this share of the offered requests is saturated.
SUSTAINED: Final = 0.95
#: Seconds kept clear of the h2load runs' start and end when the CPU time is read.
EDGE: Final = 0.1
#: The percentiles every row reports, as quantiles.
QUANTILES: Final = (0.5, 0.99, 0.999)


@dataclasses.dataclass(frozen=True)
class Request:
    """One line of h2load's ``--log-file``."""

    start_us: int  # when h2load sent it, in microseconds since the epoch
    status: int  # the HTTP status; -1 for a failed request, 0: see ANSWERED
    duration_us: int  # from sending it to the end of its response


#: The statuses of an answered request. h2load 1.52 reads an HTTP/1.1 status in
#: llhttp's callback for the reason phrase, which never comes when the phrase is
#: empty: Hypercorn's ``HTTP/1.1 200 `` is logged as 0 (and h2load's own summary
#: calls it failed), though the response arrived whole. measure() has checked
#: that the server answers ``GET /`` with a 200 before the run.
ANSWERED: Final = frozenset({200, 0})


def parse_log(text: str) -> list[Request]:
    """h2load's per-request log: start (µs since the epoch), status, µs to the response's end.

    h2load may add columns later; they are ignored. ValueError for a line that
    does not start with three integers.
    """
    requests = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        fields = line.split("\t")
        try:
            requests.append(Request(int(fields[0]), int(fields[1]), int(fields[2])))
        except (IndexError, ValueError):
            raise ValueError(
                f"h2load's log, line {number}: not start<TAB>status<TAB>time: {line!r}"
            ) from None
    return requests


@dataclasses.dataclass(frozen=True)
class Summary:
    """The requests sent while every h2load process was measuring."""

    window_s: float
    requests: int  # sent in the window and logged (answered or failed)
    errors: int  # of them: failed, or answered with a status other than 200
    status_unread: int  # of them: answered, but h2load did not read the status (ANSWERED)
    req_s: float  # requests / window_s: the achieved rate
    p50_ms: float | None  # of the answered requests
    p99_ms: float | None
    p999_ms: float | None
    # Requests sent in each whole second of the window: how steady the rate was.
    fewest_in_a_second: int | None
    most_in_a_second: int | None


def summarise(logs: Sequence[Sequence[Request]]) -> Summary:
    """The achieved rate and latency percentiles of the window all ``logs`` cover.

    Each log is one h2load process's. The window runs from the latest first
    request of any process to the earliest last one, so that each process was
    sending all through it; a request counts if it was sent in the window.
    """
    measured = [log for log in logs if log]
    if not measured:
        raise ValueError("h2load logged no request")
    begin = max(min(r.start_us for r in log) for log in measured)
    end = min(max(r.start_us for r in log) for log in measured)
    if end <= begin:
        raise ValueError("the h2load processes' measured times did not overlap")
    sent = [r for log in measured for r in log if begin <= r.start_us < end]
    answered = sorted(r.duration_us / 1e3 for r in sent if r.status in ANSWERED)
    p50, p99, p999 = (
        (http2.percentile(answered, q) for q in QUANTILES) if answered else (None, None, None)
    )
    window_s = (end - begin) / 1e6
    per_second = [0] * int(window_s)
    for r in sent:
        if (second := (r.start_us - begin) // 1_000_000) < len(per_second):
            per_second[second] += 1
    return Summary(
        window_s=window_s,
        requests=len(sent),
        errors=len(sent) - len(answered),
        status_unread=sum(r.status == 0 for r in sent),
        req_s=len(sent) / window_s,
        p50_ms=p50,
        p99_ms=p99,
        p999_ms=p999,
        fewest_in_a_second=min(per_second, default=None),
        most_in_a_second=max(per_second, default=None),
    )


@dataclasses.dataclass
class Row:
    """One server at one offered rate."""

    server: str
    loop: str
    impl: str | None
    label: str
    rate: int  # offered, requests per second
    run: int = 1  # which of the ``--repeat`` passes, from 1
    status: str = "failed"  # "ok", "saturated" or "failed"
    error: str | None = None  # why it failed, or how far short of the rate it fell
    summary: Summary | None = None
    # CPU over the measured span, in cores (1.0 = one core busy all the time):
    server_cpu: float | None = None  # the server's process group
    load_cpu: float | None = None  # the h2load processes
    other_cpu: float | None = None  # everything else on the machine: noise

    @classmethod
    def of(cls, server: http1.Server, rate: int, run: int = 1) -> Row:
        return cls(server.name, server.loop, server.impl, server.label, rate, run)

    @property
    def latency(self) -> Summary | None:
        """The summary, where its latencies mean something: the server kept up."""
        return self.summary if self.status == "ok" else None

    @property
    def cpu_us_per_req(self) -> float | None:
        if self.server_cpu is None or self.summary is None or not self.summary.req_s:
            return None
        return self.server_cpu / self.summary.req_s * 1e6

    def classify(self) -> None:
        """ok, saturated (it answered under 95 % of the offered rate) or failed (errors)."""
        s = self.summary
        if s is None:
            return
        if s.errors:
            self.status = "failed"
            self.error = f"{s.errors} of {s.requests} requests failed or were not answered 200"
        elif s.req_s < SUSTAINED * self.rate:
            self.status = "saturated"
            self.error = (
                f"answered {s.req_s:,.0f} of {self.rate:,} req/s ({s.req_s / self.rate:.0%})"
            )
        else:
            self.status, self.error = "ok", None


def _median(values: Sequence[float | None]) -> float | None:
    """The median of the values that were measured; None when none was."""
    known = [v for v in values if v is not None]
    return statistics.median(known) if known else None


def _count(some: int, runs: int, what: str) -> str:
    return f"{what} in {some} of {runs} runs"


@dataclasses.dataclass(frozen=True)
class Median:
    """One server at one offered rate over its ``--repeat`` runs: what the tables show.

    A run that failed is left out, and the row fails when at least half of its
    runs did. Of the others, a run that fell behind the rate (saturated) counts
    as infinitely slow: each percentile is the median of the runs' values with
    those runs as infinity, so the row is saturated when at least half of them
    were (2 of 3: "saturated in most runs"), and otherwise its p99 is pushed up
    towards the slower runs that kept up, not flattered by dropping one. The p99
    spread is the lowest and highest p99 of the runs that kept up. The rates
    and the CPU figures are medians too, over the runs whose status is the row's.
    """

    server: str
    loop: str
    impl: str | None
    label: str
    rate: int
    runs: tuple[Row, ...]
    status: str  # "ok", "saturated" or "failed"
    error: str | None  # why it failed, or how far short of the rate it fell
    note: str | None  # an ok row's runs that were saturated or failed
    req_s: float | None  # achieved, the median of the runs that were measured
    p50_ms: float | None  # medians, where the row kept up
    p99_ms: float | None
    p999_ms: float | None
    p99_min_ms: float | None  # the spread of the p99 over the runs that kept up
    p99_max_ms: float | None
    cpu_us_per_req: float | None
    server_cpu: float | None
    load_cpu: float | None
    other_cpu: float | None
    disturbed_runs: int  # runs where other processes used over a tenth of a core

    @property
    def saturated_runs(self) -> int:
        return sum(r.status == "saturated" for r in self.runs)

    @property
    def failed_runs(self) -> int:
        return sum(r.status == "failed" for r in self.runs)

    @property
    def kept_up(self) -> bool:
        return self.status == "ok"


def combine(runs: Sequence[Row]) -> Median:
    """The median row of one server's ``runs`` at one rate (see Median)."""
    if not runs:
        raise ValueError("no runs to combine")
    first, n = runs[0], len(runs)
    if any((r.server, r.loop, r.impl, r.rate) != (first.server, first.loop, first.impl, first.rate)
           for r in runs):  # fmt: skip
        raise ValueError("the runs combined must be one server's at one rate")
    failed = [r for r in runs if r.status == "failed" or r.summary is None]
    measured = [r for r in runs if r not in failed]
    kept_up = [r for r in measured if r.status == "ok"]
    fields: dict[str, Any] = {
        "p50_ms": None, "p99_ms": None, "p999_ms": None, "p99_min_ms": None, "p99_max_ms": None,
    }  # fmt: skip
    notes = []
    if 2 * len(failed) >= n:
        status = "failed"
        why = (failed[0].error or "no reason given").strip()
        error = why if n == 1 else f"{_count(len(failed), n, 'failed')}; run {failed[0].run}: {why}"
        agreeing: list[Row] = []
    else:

        def percentile(r: Row, name: str) -> float:
            value = getattr(r.latency, name) if r.latency else None
            return math.inf if value is None else float(value)

        for name in ("p50_ms", "p99_ms", "p999_ms"):
            fields[name] = statistics.median(percentile(r, name) for r in measured)
        if math.isinf(fields["p99_ms"]):
            status, agreeing = "saturated", [r for r in measured if r.status == "saturated"]
            fields.update(p50_ms=None, p99_ms=None, p999_ms=None)
        else:
            status, agreeing = "ok", kept_up
            p99s = [percentile(r, "p99_ms") for r in kept_up]
            fields.update(p99_min_ms=min(p99s), p99_max_ms=max(p99s))
            if sat := len(measured) - len(kept_up):
                notes.append(_count(sat, n, "saturated"))
        if failed:
            notes.append(f"{_count(len(failed), n, 'failed')}: {failed[0].error or '?'}")
        error = None
    req_s = _median([r.summary.req_s for r in measured if r.summary])
    if status == "saturated" and req_s is not None:
        error = f"answered {req_s:,.0f} of {first.rate:,} req/s ({req_s / first.rate:.0%})"
        if n > 1:
            error += f", the median of {n} runs; " + _count(len(agreeing), n, "saturated")
            if failed:
                error += f", {len(failed)} failed"
    return Median(
        server=first.server, loop=first.loop, impl=first.impl, label=first.label,
        rate=first.rate, runs=tuple(runs), status=status, error=error,
        note="; ".join(notes) or None, req_s=req_s, **fields,
        cpu_us_per_req=_median([r.cpu_us_per_req for r in agreeing]),
        server_cpu=_median([r.server_cpu for r in agreeing]),
        load_cpu=_median([r.load_cpu for r in agreeing]),
        other_cpu=_median([r.other_cpu for r in agreeing]),
        disturbed_runs=sum(
            r.other_cpu is not None and r.other_cpu > record.DISTURBED for r in measured
        ),
    )  # fmt: skip


def combine_all(rows: Sequence[Row]) -> list[Median]:
    """Each server's runs at each rate combined, in the order of their first runs."""
    groups: dict[tuple[str, str, str | None, int], list[Row]] = {}
    for r in rows:
        groups.setdefault((r.server, r.loop, r.impl, r.rate), []).append(r)
    return [combine(runs) for runs in groups.values()]


# -- the load --------------------------------------------------------------------


def h2load_argv(url: str, rate: int, args: argparse.Namespace, log: Path) -> list[str]:
    """One h2load process's share of ``rate``: its connections, each at rate/connections."""
    argv = [
        "h2load", "--h1", f"--clients={args.connections // args.processes}",
        "--max-concurrent-streams=1", f"--rps={rate / args.connections:.6g}",
        f"--duration={args.duration}",
    ]  # fmt: skip
    if args.warmup > 0:
        argv.append(f"--warm-up-time={args.warmup}")
    return [*argv, f"--log-file={log}", url]


def sleep_until(moment: float) -> None:
    if (delay := moment - time.monotonic()) > 0:
        time.sleep(delay)


def output_tail(path: Path) -> str:
    text = path.read_text(errors="replace").strip()
    return text[-http1.STDERR_TAIL :] if text else "(no output)"


def offer(row: Row, port: int, args: argparse.Namespace, directory: Path, server_pid: int) -> None:
    """Send ``row.rate`` requests a second for the warm-up and the duration; fill in ``row``."""
    url = f"http://127.0.0.1:{port}/"
    # Start the processes spread over one period of a connection (the time between
    # two of its requests); starting one takes about as long, so their phases scatter.
    spacing = args.connections / row.rate / args.processes
    logs = [directory / f"h2load-{row.rate}-{i}.log" for i in range(args.processes)]
    outputs = [directory / f"h2load-{row.rate}-{i}.out" for i in range(args.processes)]
    processes: list[subprocess.Popen[bytes]] = []
    files: list[IO[bytes]] = []
    if load := http1.load_cpus(args):
        # Pin this process to the load CPUs: they inherit it, and start faster without
        # a preexec_fn; and this script's own work stays off the server's CPU.
        os.sched_setaffinity(0, load)
    started = time.monotonic()
    try:
        for i, (log, out) in enumerate(zip(logs, outputs, strict=True)):
            sleep_until(started + i * spacing)
            files.append(out.open("wb"))
            processes.append(
                subprocess.Popen(
                    h2load_argv(url, row.rate, args, log),
                    stdin=subprocess.DEVNULL,
                    stdout=files[-1],
                    stderr=subprocess.STDOUT,
                    process_group=processes[0].pid if processes else 0,  # one group: its CPU
                )
            )
        # The CPU time while every process is past its warm-up and none has finished.
        since = time.monotonic() + args.warmup + EDGE  # the last one started just now
        until = started + args.warmup + args.duration - EDGE
        if until - since >= 0.5:
            sleep_until(since)
            before = http1.cpu_snapshot(server_pid), http1.group_cpu_seconds(processes[0].pid)
            sleep_until(until)
            after = http1.cpu_snapshot(server_pid), http1.group_cpu_seconds(processes[0].pid)
            account_cpu(row, before, after)
        for process in processes:
            process.wait(timeout=args.warmup + args.duration + 30)
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
        for file in files:
            file.close()
    for process, out in zip(processes, outputs, strict=True):
        if process.returncode != 0:
            raise RuntimeError(
                f"h2load exited with status {process.returncode}: {output_tail(out)}"
            )
    row.summary = summarise([parse_log(log.read_text()) for log in logs])
    row.classify()


def account_cpu(
    row: Row,
    before: tuple[http1.CpuSnapshot, float | None],
    after: tuple[http1.CpuSnapshot, float | None],
) -> None:
    """Split the span's CPU time into the server, the h2load processes and everything else."""
    (was, load_was), (now, load_now) = before, after
    wall = now.wall - was.wall
    if wall <= 0:
        return
    if now.group is not None and was.group is not None:
        row.server_cpu = (now.group - was.group) / wall
    if load_now is not None and load_was is not None:
        row.load_cpu = (load_now - load_was) / wall
    if None not in (now.machine, was.machine, row.server_cpu, row.load_cpu):
        machine = (now.machine - was.machine) / wall  # type: ignore[operator]
        row.other_cpu = max(0.0, machine - row.server_cpu - row.load_cpu)  # type: ignore[operator]


def measure(server: http1.Server, args: argparse.Namespace, run: int = 1) -> list[Row]:
    """``server``, started afresh for this ``run``, at each of ``args.rates`` in turn."""
    rows = [Row.of(server, rate, run) for rate in args.rates]
    port = http1.free_port()
    with tempfile.TemporaryFile() as output, tempfile.TemporaryDirectory() as directory:
        process = http1.launch(server.argv(port), args, output)
        try:
            if (why := http1.wait_until_up(process, port, http1.STARTUP_TIMEOUT)) is not None:
                for row in rows:
                    row.error = f"{why}; its output:\n{http1.tail(output)}"
                return rows
            http1.check_answer(port, http1.WORKLOADS["hello"])
            for row in rows:
                try:
                    offer(row, port, args, Path(directory), process.pid)
                except (RuntimeError, ValueError, OSError, subprocess.TimeoutExpired) as exc:
                    row.status, row.error = "failed", str(exc)
                if process.poll() is not None:
                    row.status = "failed"
                    row.error = f"exited with status {process.returncode} during the run"
                    break
        except (RuntimeError, OSError) as exc:
            for row in rows:
                row.error = row.error or str(exc)
        finally:
            http1.stop(process)
        for row in rows:
            if row.status == "failed" and row.error is None:
                row.error = "not measured: the server failed at an earlier rate"
    return rows


# -- report ----------------------------------------------------------------------


def uvicorn_row(rows: Sequence[Median], row: Median) -> Median | None:
    """Uvicorn with httptools on ``row``'s loop at ``row``'s rate, where it kept up."""
    for other in rows:
        if (other.server, other.impl, other.loop, other.rate) == (
            *http1.UVICORN,
            row.loop,
            row.rate,
        ) and other.kept_up:
            return other
    return None


def p99_vs_uvicorn(rows: Sequence[Median], row: Median) -> float | None:
    """``row``'s p99 over Uvicorn's (httptools, same loop, same rate)."""
    reference = uvicorn_row(rows, row)
    mine = row.p99_ms if row.kept_up else None
    theirs = reference.p99_ms if reference else None
    return mine / theirs if mine is not None and theirs else None


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def _spread(row: Median) -> str:
    if row.p99_min_ms is None or row.p99_max_ms is None:
        return "-"
    return f"{row.p99_min_ms:.2f}-{row.p99_max_ms:.2f}"


def table_rows(rows: Sequence[Median]) -> tuple[tuple[str, ...], list[tuple[str, ...]]]:
    """The console table of one rate's ``rows``: the medians of their runs."""
    header = (
        "server", "offered", "achieved", "p50 ms", "p99 ms", "p99 min-max", "p99.9 ms",
        "cpu us/req", "p99 vs uvicorn", "load cpu", "other cpu", "runs",
    )  # fmt: skip
    lines: list[tuple[str, ...]] = []
    for r in rows:
        achieved = "-" if r.req_s is None else f"{r.req_s:,.0f}"
        runs = f"{len(r.runs) - r.failed_runs - r.saturated_runs}/{len(r.runs)} ok"
        if not r.kept_up:
            why = (r.error or r.status).splitlines()[0] if r.status == "failed" else r.status
            cells = ("saturated at this rate",) if r.status == "saturated" else (f"FAILED: {why}",)
            blank = ("",) * (len(header) - 5)
            lines.append((r.label, f"{r.rate:,}", achieved, *cells, *blank, runs))
            continue
        noisy = " !" if r.other_cpu is not None and r.other_cpu > record.DISTURBED else ""
        ratio = p99_vs_uvicorn(rows, r)
        lines.append(
            (
                r.label + noisy,
                f"{r.rate:,}",
                achieved,
                _ms(r.p50_ms),
                _ms(r.p99_ms),
                _spread(r),
                _ms(r.p999_ms),
                "?" if r.cpu_us_per_req is None else f"{r.cpu_us_per_req:.0f}",
                "n/a" if ratio is None else f"{ratio:.2f}",
                "?" if r.load_cpu is None else f"{r.load_cpu:.2f}",
                "?" if r.other_cpu is None else f"{r.other_cpu:.2f}",
                runs,
            )
        )
    return header, lines


def scenario(rate: int, args: argparse.Namespace) -> dict[str, Any]:
    repeat = getattr(args, "repeat", 1)
    runs = f"median of {repeat} runs of {args.duration} s" if repeat > 1 else f"{args.duration} s"
    title = f"GET / at {rate:,} req/s offered, {args.connections} connections, h2load --rps, {runs}"
    return record.scenario(
        f"rate-{rate}",
        title,
        metric="p99_ms",
        unit="p99 ms",
        higher_is_better=False,
        extra={"offered_req_s": "offered req/s", "req_s": "achieved req/s"},
        spread={"p99_ms": ("p99_min_ms", "p99_max_ms")} if repeat > 1 else None,
    )


def json_row(machine: dict[str, Any], r: Median) -> dict[str, Any]:
    """``r`` in the common shape (bench/record.py); latencies only where the server kept up."""
    values: dict[str, float | int | None] = {
        "offered_req_s": r.rate,
        "req_s": r.req_s,
        "p999_ms": r.p999_ms,
        "p99_min_ms": r.p99_min_ms,
        "p99_max_ms": r.p99_max_ms,
        "errors": sum(run.summary.errors for run in r.runs if run.summary),
        "status_unread": sum(run.summary.status_unread for run in r.runs if run.summary),
        "runs": len(r.runs),
        "runs_saturated": r.saturated_runs,
        "runs_failed": r.failed_runs,
        "runs_disturbed": r.disturbed_runs,
    }
    return record.row(
        machine, scenario=f"rate-{r.rate}", server=r.server, loop=r.loop, parser=r.impl,
        label=r.label, status=r.status, error=r.error, note=r.note, values=values,
        p50_ms=r.p50_ms, p99_ms=r.p99_ms, cpu_us_per_req=r.cpu_us_per_req,
        server_cpu=r.server_cpu, load_cpu=r.load_cpu, other_cpu=r.other_cpu,
    )  # fmt: skip


def run_json(rows: Sequence[Row]) -> list[dict[str, Any]]:
    """Every run as measured (the ``results`` key), its p99 against Uvicorn's in the same run."""
    singles = [combine([r]) for r in rows]
    return [
        {
            **dataclasses.asdict(r),
            "cpu_us_per_req": r.cpu_us_per_req,
            "p99_vs_uvicorn": p99_vs_uvicorn([m for m in singles if m.runs[0].run == r.run], one),
        }
        for r, one in zip(rows, singles, strict=True)
    ]


def rates(value: str) -> list[int]:
    """``--rates``: comma-separated positive whole requests per second (argparse's ``type``)."""
    try:
        found = [int(part) for part in value.split(",") if part.strip()]
    except ValueError:
        found = []
    if not found or any(rate < 1 for rate in found):
        raise argparse.ArgumentTypeError(
            f"comma-separated whole requests per second above 0, e.g. 2000,6000 (not {value!r})"
        )
    return found


#: Seconds one server takes to start and stop, about, on two busy cores (for the estimate).
START_STOP: Final = 1.0
#: Seconds around each rate's h2load runs (starting 64 processes, reading their logs).
PER_RATE: Final = 0.5


def estimate_s(args: argparse.Namespace, servers: int) -> float:
    """About how long the run takes: every server started once per run, every rate measured."""
    per_rate = float(args.warmup + args.duration + PER_RATE)
    return float(args.repeat) * servers * (START_STOP + len(args.rates) * per_rate)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="bench/latency.py",
        description=(
            "HTTP/1.1 latency of tricorn, Uvicorn, Hypercorn and Granian at fixed request rates "
            "(open-loop, h2load --rps), the median of repeated runs."
        ),
    )
    parser.add_argument(
        "--rates",
        type=rates,
        default=[2000, 5000],
        metavar="LIST",
        help="comma-separated total requests per second to offer each server (default 2000,5000)",
    )
    parser.add_argument(
        "--duration", type=int, default=3, help="seconds measured per rate and run (default 3)"
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="seconds of load before each rate's (default 1)"
    )
    parser.add_argument(
        "--repeat",
        type=int,
        default=3,
        metavar="N",
        help="runs per server and rate, round-robin over the servers; the tables show "
        "their medians (default 3)",
    )
    parser.add_argument(
        "--connections", "-c", type=int, default=64, help="connections in all (default 64)"
    )
    parser.add_argument(
        "--processes",
        type=int,
        metavar="N",
        help="h2load processes sharing the connections (default: one per connection)",
    )
    http1.add_selection_options(parser, example="tricorn,uvicorn")
    args = parser.parse_args(argv)
    if args.duration < 2 or args.warmup < 0 or args.repeat < 1:
        parser.error("--duration must be at least 2, --warmup at least 0 and --repeat at least 1")
    if args.processes is None:
        args.processes = args.connections
    if args.connections < 1 or args.processes < 1 or args.connections % args.processes:
        parser.error(
            f"--connections ({args.connections}) must be a multiple of --processes "
            f"({args.processes}), both at least 1"
        )
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not http1.has_tool(
        "h2load", "the HTTP/2 and HTTP/1.1 load generator", "nghttp2-client", "bench/latency.py"
    ):
        return 2
    servers = http1.selected_servers(args)
    busy = http1.busy_fraction()
    machine = record.machine(args, busy=busy, tools={"h2load": http2.h2load_version()})
    print(
        f"open loop: {','.join(map(str, args.rates))} req/s offered over {args.connections} "
        f"connections from {args.processes} h2load processes, {args.warmup} s warm-up and "
        f"{args.duration} s measured per rate; one worker per server on 127.0.0.1; "
        f"{args.repeat} run(s), each server in turn; about "
        f"{estimate_s(args, len(servers)) / 60:.0f} min",
        file=sys.stderr,
    )
    http1.warn_if_busy({"busy_before_start": busy})
    started = time.monotonic()
    rows: list[Row] = []
    # Round-robin: every server at every rate, then all of them again, so that a
    # disturbance (another process waking up) lands in one run of several servers
    # rather than in every run of one.
    for run in range(1, args.repeat + 1):
        for server in servers:
            print(f"- run {run}/{args.repeat}: {server.label} ...", file=sys.stderr, flush=True)
            for r in measure(server, args, run):
                if r.latency is not None:
                    said = f"answered {r.latency.req_s:,.0f}/s, p99 {_ms(r.latency.p99_ms)} ms"
                else:
                    said = (r.error or r.status).splitlines()[0]
                    if r.status == "saturated":
                        said = f"saturated at this rate: {said}"
                print(f"  {r.rate:,} req/s: {said}", file=sys.stderr)
                rows.append(r)
    medians = combine_all(rows)
    print(f"took {time.monotonic() - started:.0f} s", file=sys.stderr)

    sys.stderr.flush()
    versions = ", ".join(f"{name} {v}" for name, v in machine["versions"].items())
    print(f"\n{TITLE}, {machine['tools']['h2load']}, {machine['python']}, {versions}")
    for rate in args.rates:
        print(f"\n{scenario(rate, args)['title']}")
        print(http1.render_table(*table_rows([m for m in medians if m.rate == rate])))
    print(
        f"\nthe median of {args.repeat} run(s) of each row; p99 min-max = the lowest and highest "
        "p99 of the runs that kept up; achieved = requests sent per second while every h2load "
        "was measuring; p99 vs uvicorn = this p99 over Uvicorn's (httptools) on the same loop at "
        "the same rate; cpu = cores used during the measured time; saturated = answered under "
        f"{SUSTAINED:.0%} of the offered rate in at least half the runs, so its latency is only "
        "its queue growing; runs = how many kept up"
    )
    if args.json:
        document = record.document(
            BENCHMARK,
            TITLE,
            machine,
            [scenario(rate, args) for rate in args.rates],
            [json_row(machine, m) for m in medians],
            load={
                "tool": "h2load --h1 --rps",
                "rates": args.rates,
                "connections": args.connections,
                "processes": args.processes,
                "duration_s": args.duration,
                "warmup_s": args.warmup,
                "repeat": args.repeat,
            },
            results=run_json(rows),
        )
        http1.write_json(args.json, document)
    return 1 if any(r.status == "failed" for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
