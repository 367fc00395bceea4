"""bench/latency.py: percentiles, h2load's log, the window, saturation and the docs' table."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
from bench import http1, http2, latency, record, report

from tests.test_bench_report import list_tables, machine, parse_rst


def test_percentile_is_the_nearest_rank() -> None:
    hundred = [float(n) for n in range(1, 101)]
    # 0.99 * 100 is 99.00000000000001 in floating point: still the 99th value, not the 100th.
    assert http2.percentile(hundred, 0.99) == 99.0
    assert http2.percentile(hundred, 0.5) == 50.0
    assert http2.percentile(hundred, 0.999) == 100.0  # rank 99.9 rounds up
    assert http2.percentile(hundred, 1.0) == 100.0
    assert http2.percentile([1.0, 2.0, 3.0, 4.0], 0.5) == 2.0  # at least half are <= 2
    assert http2.percentile([1.0, 2.0, 3.0, 4.0, 5.0], 0.5) == 3.0  # rank 2.5 -> 3
    assert http2.percentile([7.0], 0.001) == 7.0
    thousand = [float(n) for n in range(1000)]
    assert http2.percentile(thousand, 0.99) == 989.0  # ten values above it
    for bad in (0.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="quantile"):
            http2.percentile(hundred, bad)
    with pytest.raises(ValueError, match="at least one value"):
        http2.percentile([], 0.5)


def test_http2_percentiles_read_the_same_log(tmp_path: Path) -> None:
    log = tmp_path / "h2load.log"
    log.write_text("".join(f"{1000 + n}\t200\t{n * 1000}\n" for n in range(1, 101)))
    result = http2.Result("tricorn", "asyncio", "h2c", "hello", "tricorn")
    http2.percentiles(log, result)
    assert (result.p50_ms, result.p99_ms) == (50.0, 99.0)


def test_parse_log_takes_three_columns_and_names_a_bad_line() -> None:
    text = "1700000000000000\t200\t350\n\n1700000000000100\t-1\t0\tmore\n"
    assert latency.parse_log(text) == [
        latency.Request(1_700_000_000_000_000, 200, 350),
        latency.Request(1_700_000_000_000_100, -1, 0),  # a later column is ignored
    ]
    with pytest.raises(ValueError, match="line 2"):
        latency.parse_log("1\t200\t3\n1\t200\n")
    with pytest.raises(ValueError, match="line 1"):
        latency.parse_log("start\tstatus\ttime\n")


def steady(
    start_us: int, seconds: float, rate: float, duration_us: int = 500
) -> list[latency.Request]:
    """One h2load process's log: ``rate`` requests a second for ``seconds``, all 200."""
    step = 1e6 / rate
    return [
        latency.Request(start_us + round(i * step), 200, duration_us)
        for i in range(round(seconds * rate))
    ]


def test_summary_counts_only_the_window_every_process_measured() -> None:
    t0 = 1_700_000_000_000_000
    early = steady(t0, 5.0, 100)  # measures from t0 to t0 + 5 s
    late = steady(t0 + 500_000, 5.0, 100)  # from t0 + 0.5 s to t0 + 5.5 s
    # Slow answers outside the window (before the late one started) do not count.
    early[:10] = [latency.Request(r.start_us, 200, 90_000) for r in early[:10]]
    # Within it: one answer of 20 ms, one failed request, one 500.
    late[100] = latency.Request(late[100].start_us, 200, 20_000)
    late[101] = latency.Request(late[101].start_us, -1, 0)
    late[102] = latency.Request(late[102].start_us, 500, 400)
    # Answered, but h2load did not read the status (an empty reason phrase): it counts.
    late[103] = latency.Request(late[103].start_us, 0, 500)
    s = latency.summarise([early, late, []])  # a process that logged nothing is ignored
    assert s.window_s == pytest.approx(4.49)  # t0 + 0.5 s to early's last request, t0 + 4.99 s
    assert s.requests == 449 + 449  # 100 a second each, over 4.49 s
    assert s.req_s == pytest.approx(200, rel=0.01)
    assert (s.errors, s.status_unread) == (2, 1)
    assert (s.p50_ms, s.p99_ms) == (0.5, 0.5)
    assert s.p999_ms == 20.0  # the slowest of 896 answered requests
    assert (s.fewest_in_a_second, s.most_in_a_second) == (200, 200)
    with pytest.raises(ValueError, match="no request"):
        latency.summarise([[], []])
    with pytest.raises(ValueError, match="overlap"):
        latency.summarise([steady(t0, 1.0, 10), steady(t0 + 2_000_000, 1.0, 10)])


def row_with(
    rate: int,
    achieved: float,
    errors: int = 0,
    p99: float = 2.0,
    *,
    run: int = 1,
    p50: float = 0.3,
    p999: float = 5.0,
    server_cpu: float = 0.5,
    other_cpu: float = 0.01,
) -> latency.Row:
    """One synthetic run of tricorn (httptools, asyncio), classified as measure() would."""
    server = http1.tricorn("asyncio", "httptools")
    row = latency.Row.of(server, rate, run)
    row.summary = latency.Summary(
        window_s=4.0, requests=round(achieved * 4), errors=errors, status_unread=0, req_s=achieved,
        p50_ms=p50, p99_ms=p99, p999_ms=p999, fewest_in_a_second=None, most_in_a_second=None,
    )  # fmt: skip
    row.server_cpu, row.load_cpu, row.other_cpu = server_cpu, 0.3, other_cpu
    row.classify()
    return row


def as_uvicorn(row: latency.Row) -> latency.Row:
    row.server, row.impl, row.label = "uvicorn", "httptools", "uvicorn (httptools)"
    return row


def test_a_server_answering_under_95_percent_is_saturated_and_gets_no_latency() -> None:
    kept_up = row_with(6000, 5_710.0)  # 95.2 %
    assert (kept_up.status, kept_up.error) == ("ok", None)
    assert kept_up.cpu_us_per_req == pytest.approx(0.5 / 5_710 * 1e6)
    behind = row_with(6000, 4_575.0)
    assert behind.status == "saturated"
    assert behind.error == "answered 4,575 of 6,000 req/s (76%)"
    assert behind.latency is None
    failing = row_with(2000, 2000.0, errors=3)
    assert failing.status == "failed"
    assert failing.error is not None
    assert "3 of 8000" in failing.error

    block = {**machine(), **record.cpus(argparse.Namespace(server_cpu=0, load_cpus="1"))}
    shaped = latency.json_row(block, latency.combine([behind]))
    assert (shaped["scenario"], shaped["status"], shaped["req_s"]) == (
        "rate-6000",
        "saturated",
        4575,
    )
    assert shaped["offered_req_s"] == 6000
    assert (shaped["p50_ms"], shaped["p99_ms"], shaped["p999_ms"]) == (None, None, None)
    assert shaped["error"] == "answered 4,575 of 6,000 req/s (76%)"  # one run: as before
    shaped = latency.json_row(block, latency.combine([kept_up]))
    assert (shaped["p99_ms"], shaped["p999_ms"], shaped["server_pinned"]) == (2.0, 5.0, True)
    assert (shaped["p99_min_ms"], shaped["p99_max_ms"], shaped["runs"]) == (2.0, 2.0, 1)
    assert "note" not in shaped


def test_p99_is_compared_with_uvicorn_httptools_on_the_same_loop_and_rate() -> None:
    mine = latency.combine([row_with(2000, 2000.0, p99=3.0)])
    uvicorn = latency.combine([as_uvicorn(row_with(2000, 2000.0, p99=2.0))])
    other_rate = latency.combine([as_uvicorn(row_with(6000, 6000.0, p99=1.0))])
    rows = [mine, uvicorn, other_rate]
    assert latency.p99_vs_uvicorn(rows, mine) == pytest.approx(1.5)
    behind = latency.combine([row_with(2000, 100.0)])
    header, lines = latency.table_rows([mine, uvicorn, behind])
    cells = [dict(zip(header, line, strict=True)) for line in lines]
    assert cells[0]["p99 vs uvicorn"] == "1.50"
    assert (cells[0]["p99 min-max"], cells[0]["runs"]) == ("3.00-3.00", "1/1 ok")
    assert cells[2]["p50 ms"] == "saturated at this rate"
    assert (cells[2]["achieved"], cells[2]["runs"]) == ("100", "0/1 ok")


def test_a_row_is_the_median_of_its_runs_with_the_p99_spread() -> None:
    runs = [
        row_with(2000, 2000.0, p99=2.0, run=1, p50=0.30, p999=9.0, server_cpu=0.40),
        row_with(2000, 1990.0, p99=12.0, run=2, p50=0.50, p999=30.0, server_cpu=0.44),
        row_with(2000, 2004.0, p99=3.0, run=3, p50=0.20, p999=4.0, server_cpu=0.36),
    ]
    runs[1].other_cpu = 0.6  # the second run was disturbed: its p99 is an outlier
    m = latency.combine(runs)
    assert (m.status, m.error, m.note) == ("ok", None, None)
    assert (m.p50_ms, m.p99_ms, m.p999_ms) == (0.30, 3.0, 9.0)  # each the middle value
    assert (m.p99_min_ms, m.p99_max_ms) == (2.0, 12.0)
    assert m.req_s == 2000.0
    assert m.server_cpu == 0.40
    assert m.cpu_us_per_req == pytest.approx(0.40 / 2000.0 * 1e6)  # the middle run's
    assert m.other_cpu == 0.01  # the median: one disturbed run does not flag the row
    assert (m.disturbed_runs, m.saturated_runs, m.failed_runs) == (1, 0, 0)
    # An even number of runs: the mean of the middle two.
    two = latency.combine(runs[:2])
    assert (two.p99_ms, two.p99_min_ms, two.p99_max_ms) == (7.0, 2.0, 12.0)

    block = {**machine(), **record.cpus(argparse.Namespace(server_cpu=0, load_cpus="1"))}
    shaped = latency.json_row(block, m)
    assert (shaped["p50_ms"], shaped["p99_ms"], shaped["p999_ms"]) == (0.30, 3.0, 9.0)
    assert (shaped["p99_min_ms"], shaped["p99_max_ms"]) == (2.0, 12.0)
    assert (shaped["runs"], shaped["runs_saturated"], shaped["runs_failed"]) == (3, 0, 0)
    assert (shaped["runs_disturbed"], shaped["disturbed"]) == (1, False)


def test_a_row_saturated_in_most_runs_is_saturated() -> None:
    def runs(*achieved: float) -> list[latency.Row]:
        return [
            row_with(5000, rate, p99=2.0 + i, run=i + 1, server_cpu=0.3 + i / 10)
            for i, rate in enumerate(achieved)
        ]

    most = latency.combine(runs(4000.0, 5000.0, 4200.0))
    assert most.status == "saturated"
    assert (most.p50_ms, most.p99_ms, most.p999_ms) == (None, None, None)
    assert (most.p99_min_ms, most.p99_max_ms) == (None, None)
    assert most.req_s == 4200.0  # the median of all three
    assert most.error == (
        "answered 4,200 of 5,000 req/s (84%), the median of 3 runs; saturated in 2 of 3 runs"
    )
    assert most.server_cpu == pytest.approx(0.4)  # the saturated runs' median (0.3, 0.5)
    assert latency.combine(runs(4000.0, 4100.0, 4200.0)).status == "saturated"

    # Saturated once in three: kept up. The saturated run counts as the slowest, so
    # the median p99 is the slower of the two that kept up, not their mean.
    once = latency.combine(runs(5000.0, 4000.0, 5000.0))
    assert (once.status, once.error) == ("ok", None)
    assert once.note == "saturated in 1 of 3 runs"
    assert (once.p99_ms, once.p99_min_ms, once.p99_max_ms) == (4.0, 2.0, 4.0)
    assert once.server_cpu == pytest.approx(0.4)  # the runs that kept up (0.3, 0.5)
    # A tie (an even number of runs) is saturated: half the time it could not keep up.
    assert latency.combine(runs(5000.0, 4000.0)).status == "saturated"


def test_failed_runs_are_left_out_and_at_least_half_fail_the_row() -> None:
    good = row_with(2000, 2000.0, p99=2.0, run=1)
    errors = row_with(2000, 2000.0, errors=3, run=2)
    crashed = latency.Row.of(http1.tricorn("asyncio", "httptools"), 2000, run=3)
    crashed.error = "exited with status 1 during the run"
    m = latency.combine([good, errors, crashed])
    assert m.status == "failed"
    assert m.error is not None
    assert m.error.startswith("failed in 2 of 3 runs; run 2: 3 of 8000 requests failed")
    assert (m.p99_ms, m.p99_min_ms, m.cpu_us_per_req) == (None, None, None)
    # One failed run of three: the other two give the row, and a note says so.
    m = latency.combine([good, row_with(2000, 2000.0, p99=4.0, run=2), crashed])
    assert (m.status, m.p99_ms, m.p99_max_ms) == ("ok", 3.0, 4.0)
    assert m.note == "failed in 1 of 3 runs: exited with status 1 during the run"
    assert latency.combine([crashed]).error == "exited with status 1 during the run"


def test_runs_are_combined_per_server_and_rate_in_first_seen_order() -> None:
    rows = []
    for run in (1, 2, 3):  # as main() measures them: every server, then again
        rows += [
            row_with(2000, 2000.0, p99=float(run), run=run),
            row_with(5000, 5000.0, p99=10.0 * run, run=run),
            as_uvicorn(row_with(2000, 2000.0, p99=2.0 * run, run=run)),
        ]
    medians = latency.combine_all(rows)
    assert [(m.server, m.rate, m.p99_ms) for m in medians] == [
        ("tricorn", 2000, 2.0),
        ("tricorn", 5000, 20.0),
        ("uvicorn", 2000, 4.0),
    ]
    assert [r.run for r in medians[0].runs] == [1, 2, 3]
    assert latency.p99_vs_uvicorn(medians, medians[0]) == pytest.approx(0.5)
    # The JSON's results: every run, compared with Uvicorn in the same run.
    per_run = latency.run_json(rows)
    assert len(per_run) == 9
    assert [(r["run"], r["rate"], r["p99_vs_uvicorn"]) for r in per_run[:3]] == [
        (1, 2000, 0.5),
        (1, 5000, None),  # Uvicorn did not run at 5,000 req/s
        (1, 2000, 1.0),  # Uvicorn itself
    ]
    with pytest.raises(ValueError, match="one server"):
        latency.combine(rows[:2])
    with pytest.raises(ValueError, match="no runs"):
        latency.combine([])


def test_arguments() -> None:
    args = latency.parse_args([])
    assert (args.rates, args.connections, args.processes) == ([2000, 5000], 64, 64)
    assert (args.duration, args.warmup, args.server_cpu, args.load_cpus) == (3, 1, 0, "1")
    assert args.repeat == 3
    args = latency.parse_args(["--rates", "1000, 3000", "-c", "32", "--processes", "8"])
    assert (args.rates, args.processes) == ([1000, 3000], 8)
    argv = latency.h2load_argv("http://127.0.0.1:1/", 3000, args, Path("x.log"))
    assert argv[:5] == [
        "h2load",
        "--h1",
        "--clients=4",
        "--max-concurrent-streams=1",
        "--rps=93.75",
    ]
    assert "--warm-up-time=1" in argv
    args.warmup = 0
    assert not any(a.startswith("--warm-up") for a in latency.h2load_argv("u", 1, args, Path()))


@pytest.mark.parametrize(
    "argv",
    [
        ["--rates", "fast"],
        ["--rates", "2000,0"],
        ["--rates", ","],
        ["-c", "64", "--processes", "5"],
        ["--processes", "0"],
        ["--duration", "1"],
        ["--repeat", "0"],
    ],
)
def test_bad_arguments_exit_with_status_2(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        latency.parse_args(argv)
    assert exit_.value.code == 2
    assert "bench/latency.py" in capsys.readouterr().err


def test_the_docs_table_leads_with_p99_and_notes_saturation(tmp_path: Path) -> None:
    args = latency.parse_args(["--rates", "6000"])
    block = {**machine(), **record.cpus(args)}
    tricorn = [row_with(6000, 6000.0, p99=p99, run=i) for i, p99 in enumerate((3.0, 2.5, 9.0))]
    uvicorn = [as_uvicorn(row_with(6000, 6000.0, p99=2.0, run=i)) for i in (1, 2, 3)]
    uvicorn[0] = as_uvicorn(row_with(6000, 5000.0, run=1))  # saturated once
    hypercorn = [row_with(6000, 5000.0, run=i) for i in (1, 2, 3)]
    for r in hypercorn:
        r.server, r.impl = "hypercorn", None
    medians = [latency.combine(runs) for runs in (tricorn, uvicorn, hypercorn)]
    document = record.document(
        latency.BENCHMARK,
        latency.TITLE,
        block,
        [latency.scenario(6000, args)],
        [latency.json_row(block, m) for m in medians],
    )
    results = tmp_path / "results"
    results.mkdir()
    (results / "latency.json").write_text(json.dumps(document))
    report.main([str(results), "--out", str(tmp_path / "out")])
    rst = (tmp_path / "out" / "latency.rst").read_text()
    [table] = list_tables(rst)
    assert table[0] == [
        "server",
        "loop",
        "p99 ms",
        "p99 min\u2013max ms",
        "offered req/s",
        "achieved req/s",
        "p50 ms",
        "p99.9 ms",
        "server CPU µs/req",
        "vs uvicorn",
        "notes",
    ]  # fmt: skip
    # No second p99 column; Hypercorn kept up nowhere, so no vs hypercorn column.
    rows = {cells[0]: dict(zip(table[0], cells, strict=True)) for cells in table[1:]}
    mine = rows["tricorn (httptools)"]
    assert (mine["p99 ms"], mine["p99 min\u2013max ms"]) == ("3.00", "2.50\u20139.00")
    assert mine["vs uvicorn"] == "1.50"  # of the medians
    assert (mine["p99.9 ms"], mine["notes"]) == ("5.00", "")
    assert "GET / at 6,000 req/s offered" in rst
    assert "median of 3 runs of 3 s" in rst
    theirs = rows["uvicorn (httptools)"]
    assert (theirs["p99 ms"], theirs["p99 min\u2013max ms"]) == ("2.00", "2.00\u20132.00")
    assert theirs["notes"] == "saturated in 1 of 3 runs"
    saturated = rows["hypercorn"]
    assert (saturated["p99 ms"], saturated["p99 min\u2013max ms"], saturated["p50 ms"]) == (
        "saturated",
        "\u2013",
        "\u2013",
    )
    assert saturated["vs uvicorn"] == "\u2013"
    assert saturated["notes"] == (
        r"saturated at this rate\: answered 5,000 of 6,000 req/s (83%), the median of 3 runs;"
        " saturated in 3 of 3 runs"
    )
    assert "p99 ms: less is better. p99 ms is the median of the row's repeated runs" in rst
    svg = (tmp_path / "out" / "latency.svg").read_text()
    assert svg.count('class="spread"') == 2  # tricorn's and Uvicorn's, not Hypercorn's
    assert "<title>2.50\u20139.00 p99 ms</title>" in svg
    parse_rst(rst)


def test_report_runs_fit_in_six_minutes() -> None:
    """bench/report.py --run's latency entry: three runs of every server in about 6 minutes."""
    script, *argv = report.RUNS["latency"]
    assert script == "bench/latency.py"
    args = latency.parse_args(argv)
    assert args.repeat == 3
    servers = len(http1.servers(uvloop=True, trio=True))
    assert latency.estimate_s(args, servers) <= 6 * 60
