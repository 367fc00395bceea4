"""bench/report.py turns benchmark JSON into the docs' tables and charts, the same every time."""

from __future__ import annotations

import argparse
import json
import shutil
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import docutils.core  # type: ignore[import-untyped]
import pytest
from bench import app, http1, record, report

SVG = "{http://www.w3.org/2000/svg}"
PINNED = {"server_cpus": [0], "load_cpus": [1]}


def machine(load: float = 0.2, **more: Any) -> dict[str, Any]:
    return {
        "date": "2026-12-01T10:00:00Z",
        "cpu_model": "Test CPU",
        "cores": 2,
        "python": "CPython 3.11.7",
        "platform": "Linux",
        "load_average_at_start": [load, 0.3, 0.4],
        "busy_before_start": 0.05,
        "tricorn_commit": "abc1234",
        "versions": {"tricorn": "0.1.0", "uvicorn": "0.55.0", "hypercorn": "0.18.0"},
        "tools": {"wrk": "wrk 4.1.0"},
        **PINNED,
        **more,
    }


def row(
    server: str, loop: str, req_s: float | None, parser: str | None = None, **more: Any
) -> dict[str, Any]:
    values = {"req_s": req_s}
    cells = {"status": "ok" if req_s is not None else "failed", "error": more.pop("error", None)}
    built = record.row(
        machine(),
        scenario="hello",
        server=server,
        loop=loop,
        parser=parser,
        label=server,
        status=str(more.pop("status", cells["status"])),
        error=cells["error"],
        values=values,
        p50_ms=1.0,
        p99_ms=more.pop("p99_ms", 5.0),
        cpu_us_per_req=more.pop("cpu", 100.0),
        server_cpu=1.0,
        load_cpu=more.pop("load_cpu", 0.3),
        other_cpu=more.pop("other_cpu", 0.01),
    )
    return {**built, **more}


def http1_document(load: float = 0.2) -> dict[str, Any]:
    rows = [
        row("tricorn", "asyncio", 2000.0, "h11"),
        row("tricorn", "asyncio", 3000.0, "httptools"),
        row("uvicorn", "asyncio", 1000.0, "h11"),
        row("uvicorn", "asyncio", 4000.0, "httptools"),
        row("hypercorn", "asyncio", 1600.0),
        row("granian", "asyncio", None, error="did not answer *in time* | really\nmore lines"),
        row("tricorn", "trio", 800.0, load_cpu=0.95),
        row("hypercorn", "trio", 400.0, server_pinned=False, disturbed=True),
    ]
    return record.document(
        "http1",
        "HTTP/1.1 hello world",
        machine(load),
        [record.scenario("hello", "GET / (13 B)")],
        rows,
        results=[],
    )


def memory_document() -> dict[str, Any]:
    def mem(server: str, kind: str, value: float) -> dict[str, Any]:
        key = "us_per_conn" if kind == "accept" else "kib_per_conn"
        return record.row(
            machine(),
            scenario=kind,
            server=server,
            loop="asyncio",
            label=server,
            status="ok",
            values={key: value},
        )

    return record.document(
        "memory",
        "Per-connection cost",
        machine(load=0.9),
        [
            record.scenario(
                "http1",
                "idle HTTP/1.1",
                metric="kib_per_conn",
                unit="KiB/conn",
                higher_is_better=False,
            ),
            record.scenario(
                "accept",
                "new connections",
                metric="us_per_conn",
                unit="µs/conn",
                higher_is_better=False,
            ),
        ],
        [
            mem("tricorn", "http1", 24.0),
            mem("hypercorn", "http1", 12.0),
            mem("tricorn", "accept", 600.0),
            mem("hypercorn", "accept", 500.0),
        ],
    )


def write_results(directory: Path, *documents: dict[str, Any]) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    for document in documents:
        (directory / f"{document['benchmark']}.json").write_text(json.dumps(document))
    return directory


def list_tables(rst: str) -> list[list[list[str]]]:
    """Each list-table in ``rst`` as rows of cells (header first)."""
    tables: list[list[list[str]]] = []
    for line in rst.splitlines():
        if line.startswith(".. list-table::"):
            tables.append([])
        elif line.startswith("   * -"):
            tables[-1].append([line[6:].strip()])
        elif line.startswith("     -") and tables and tables[-1]:
            tables[-1][-1].append(line[6:].strip())
    return tables


def by_server(table: list[list[str]]) -> dict[tuple[str, str], dict[str, str]]:
    header, *rows = table
    return {(cells[0], cells[1]): dict(zip(header, cells, strict=True)) for cells in rows}


def parse_rst(text: str) -> None:
    """Parse ``text`` with docutils; any warning (bad markup) raises."""
    docutils.core.publish_doctree(
        text, settings_overrides={"halt_level": 2, "report_level": 2, "warning_stream": False}
    )


def test_table_rows_ratios_and_notes(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results", http1_document())
    assert report.main([str(results), "--out", str(tmp_path / "out")]) == 1  # others missing
    rst = (tmp_path / "out" / "http1.rst").read_text()
    [table] = list_tables(rst)
    assert table[0] == [
        "server", "loop", "req/s", "p50 ms", "p99 ms", "server CPU µs/req",
        "vs hypercorn", "vs uvicorn", "notes",
    ]  # fmt: skip
    rows = by_server(table)
    h11 = rows[("tricorn (h11)", "asyncio")]
    assert (h11["req/s"], h11["vs hypercorn"], h11["vs uvicorn"]) == ("2,000", "1.25", "2.00")
    fast = rows[("tricorn (httptools)", "asyncio")]
    assert (fast["vs hypercorn"], fast["vs uvicorn"]) == ("1.88", "0.75")  # its own parser's row
    trio = rows[("tricorn", "trio")]
    assert (trio["vs hypercorn"], trio["vs uvicorn"]) == ("2.00", "\u2013")  # no uvicorn on trio
    assert trio["notes"] == "load generator saturated"  # 0.95 cores of its one pinned CPU
    assert rows[("hypercorn", "trio")]["notes"] == (
        "server not pinned; disturbed by other processes"
    )
    failed = rows[("granian", "asyncio")]
    assert (failed["req/s"], failed["vs hypercorn"]) == ("failed", "\u2013")
    # Only the error's first line, its markup characters escaped.
    assert failed["notes"] == r"failed\: did not answer \*in time\* \| really"
    assert "vs granian" not in table[0]  # Granian measured nowhere: no column
    assert ".. image:: /benchmarks/http1.svg" in rst
    assert ".. warning::" not in rst  # load average 0.2 at the start
    parse_rst(rst)


def test_less_is_better_scenarios_get_a_table_and_a_chart_each(tmp_path: Path) -> None:
    out = tmp_path / "out"
    report.main([str(write_results(tmp_path / "results", memory_document())), "--out", str(out)])
    rst = (out / "memory.rst").read_text()
    idle, accept = list_tables(rst)
    assert by_server(idle)[("tricorn", "asyncio")]["vs hypercorn"] == "2.00"  # twice the memory
    assert by_server(accept)[("tricorn", "asyncio")]["µs/conn"] == "600"
    assert "KiB/conn: less is better." in rst
    assert ".. warning::" in rst  # load average 0.9 at the start
    assert (out / "memory-accept.svg").exists()
    chart = ET.parse(out / "memory-http1.svg").getroot()
    assert "KiB/conn (less is better)" in [t.text for t in chart.iter(f"{SVG}text")]
    parse_rst(rst)


def test_the_chart_is_well_formed_svg_with_a_bar_per_measured_row(tmp_path: Path) -> None:
    out = tmp_path / "out"
    document = http1_document()
    document["rows"].reverse()  # trio's rows first: the chart still starts with asyncio
    report.main([str(write_results(tmp_path / "results", document)), "--out", str(out)])
    root = ET.parse(out / "http1.svg").getroot()
    assert root.tag == f"{SVG}svg"
    width = float(root.attrib["width"])
    bars = [r for r in root.iter(f"{SVG}rect") if r.find(f"{SVG}title") is not None]
    assert len(bars) == 7  # eight rows, one failed
    widths = {r.findtext(f"{SVG}title"): float(r.attrib["width"]) for r in bars}
    # Bars are proportional to req/s and stay inside the picture.
    assert widths["uvicorn (httptools), asyncio: 4,000 req/s"] == pytest.approx(
        2 * widths["tricorn (h11), asyncio: 2,000 req/s"], abs=0.1
    )
    assert all(float(r.attrib["x"]) + float(r.attrib["width"]) < width for r in bars)
    texts = [t.text or "" for t in root.iter(f"{SVG}text")]
    assert texts.index("asyncio") < texts.index("trio")  # grouped by loop
    assert "failed" in texts  # the failed row is labelled, without a bar
    assert "req/s (more is better)" in texts
    assert {"0", "1,000", "4,000"} <= set(texts)  # the axis' ticks


def test_machine_block_and_busy_warning(tmp_path: Path) -> None:
    out = tmp_path / "out"
    documents = (http1_document(load=0.2), memory_document())
    report.main([str(write_results(tmp_path / "results", *documents)), "--out", str(out)])
    text = (out / "machine.rst").read_text()
    assert text.startswith(":orphan:\n\n")  # performance.rst includes it from line 3
    machine_table, runs = list_tables(text)
    assert ["CPU", "Test CPU, 2 cores"] in machine_table
    assert ["wrk", "wrk 4.1.0"] in machine_table
    assert ["http1", "2026-12-01 10\\:00\\:00", "0.20 / 0.30 / 0.40", "5%", "0", "1"] in runs
    assert ".. warning::" in text
    assert "memory (0.90)" in text
    assert "http1 (" not in text
    parse_rst(text)
    # Benchmarks without a result say so rather than show stale numbers.
    assert "Not measured in the last run" in (out / "http2.rst").read_text()


def test_output_is_deterministic_and_replaces_only_generated_files(tmp_path: Path) -> None:
    first = write_results(tmp_path / "a", http1_document(), memory_document())
    second = write_results(tmp_path / "b", memory_document(), http1_document())  # other order
    out_a, out_b = tmp_path / "out-a", tmp_path / "out-b"
    out_b.mkdir()
    (out_b / "stale.svg").write_text(f"<!-- {report.MARK} -->\n<svg/>")
    (out_b / "README.txt").write_text("mine")
    (out_b / "notes.rst").write_text("not generated")
    report.main([str(first), "--out", str(out_a)])
    report.main([str(second), "--out", str(out_b)])
    generated = sorted(p.name for p in out_a.iterdir())
    assert generated == sorted(p.name for p in out_b.iterdir() if p.name not in
                               {"README.txt", "notes.rst"})  # fmt: skip
    for name in generated:
        assert (out_a / name).read_bytes() == (out_b / name).read_bytes(), name
    assert not (out_b / "stale.svg").exists()
    assert (out_b / "notes.rst").read_text() == "not generated"
    # Once more into the same directory: nothing changes.
    before = {name: (out_a / name).read_bytes() for name in generated}
    shutil.copy(first / "http1.json", first / "http1.json.bak")  # not read: not *.json
    report.main([str(first), "--out", str(out_a)])
    assert {name: (out_a / name).read_bytes() for name in generated} == before


def test_files_in_another_shape_are_skipped(tmp_path: Path) -> None:
    results = write_results(tmp_path / "results", http1_document())
    (results / "old.json").write_text(json.dumps({"environment": {}, "results": []}))
    (results / "broken.json").write_text("{")
    assert [d["benchmark"] for d in report.load(results)] == ["http1"]


def test_http1_rows_in_the_common_shape() -> None:
    args = argparse.Namespace(server_cpu=0, load_cpus="1")
    block = {**machine(), **record.cpus(args)}
    result = http1.Result("tricorn", "uvloop", ok=True, impl="httptools")
    result.requests_per_sec, result.p50_ms, result.p99_ms = 40_000.0, 1.5, 3.0
    result.server_cpu, result.wrk_cpu, result.other_cpu = 0.99, 0.25, 0.2
    shaped = http1.json_row(block, result)
    assert (shaped["server"], shaped["parser"], shaped["req_s"]) == ("tricorn", "httptools", 4e4)
    assert shaped["cpu_us_per_req"] == pytest.approx(24.75)
    assert (shaped["server_pinned"], shaped["load_saturated"], shaped["disturbed"]) == (
        True,
        False,
        True,
    )
    unpinned = record.cpus(argparse.Namespace(server_cpu=-1, load_cpus="1"))
    assert unpinned == {"server_cpus": [], "load_cpus": []}
    assert http1.json_row({**machine(), **unpinned}, result)["server_pinned"] is False
    with pytest.raises(ValueError, match="machine"):
        record.document("x", "x", {}, [], [], machine={})


def test_run_replaces_each_result_and_reports_a_missing_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    results, out = tmp_path / "results", tmp_path / "out"
    write_results(results, http1_document(), memory_document())  # an earlier run's
    fresh = http1_document(load=0.1)
    fresh["machine"]["date"] = "2026-12-02T00:00:00Z"
    code = f"import sys; open(sys.argv[2], 'w').write({json.dumps(fresh)!r})"
    fake = {"http1": ("-c", code), "memory": ("-c", "raise SystemExit(2)")}  # memory: no tool
    monkeypatch.setattr(report, "RUNS", fake)
    assert report.main([str(results), "--out", str(out), "--run", "--only", "http1,memory"]) == 1
    assert "2026-12-02 00\\:00\\:00" in (out / "http1.rst").read_text()
    assert not (results / "memory.json").exists()  # the old numbers are not passed off as new
    assert "Not measured" in (out / "memory.rst").read_text()
    assert not (out / "memory-http1.svg").exists()


def measured(server: str, loop: str, rps: float, impl: str | None, workload: str) -> http1.Result:
    result = http1.Result(server, loop, ok=True, impl=impl, workload=workload)
    result.requests_per_sec, result.p50_ms, result.p99_ms = rps, 2.0, 9.0
    result.server_cpu, result.wrk_cpu, result.other_cpu = 1.0, 0.5, 0.0
    return result


def test_body_workloads_count_their_bytes_and_compare_with_uvicorn_httptools() -> None:
    results = [
        measured("tricorn", "asyncio", 3000.0, "h11", "post64k"),
        measured("uvicorn", "asyncio", 1000.0, "h11", "post64k"),
        measured("uvicorn", "asyncio", 2000.0, "httptools", "post64k"),
        measured("tricorn", "uvloop", 2500.0, "httptools", "post64k"),
        measured("uvicorn", "uvloop", 5000.0, "httptools", "post64k"),
        measured("uvicorn", "asyncio", 9999.0, "httptools", "hello"),  # another workload's
        measured("tricorn", "trio", 1000.0, None, "post64k"),
    ]
    bodies = [r for r in results if r.workload == "post64k"]
    header, rows = http1.table_rows(bodies)
    cells = {row[0]: dict(zip(header, row, strict=True)) for row in rows}
    # 3000 uploads of 64 KiB a second: 196.6 MB/s of request body.
    assert cells["tricorn (h11, asyncio)"]["MB/s"] == "197"
    # Against Uvicorn with httptools on the same loop, in the same workload.
    assert cells["tricorn (h11, asyncio)"]["vs uvicorn"] == "1.50"
    assert cells["tricorn (httptools, uvloop)"]["vs uvicorn"] == "0.50"
    assert cells["tricorn (trio)"]["vs uvicorn"] == "n/a"  # Uvicorn has no trio
    assert cells["tricorn (trio)"]["cpu us/req"] == "1000"
    hello, _ = http1.table_rows([r for r in results if r.workload == "hello"])
    assert "MB/s" not in hello  # 13 bytes a request: no throughput worth a column

    block = {**machine(), **PINNED}
    shaped = http1.json_row(block, bodies[0])
    assert (shaped["scenario"], shaped["mb_s"]) == ("post64k", pytest.approx(196.608))
    assert "mb_s" not in http1.json_row(block, results[5])
    get1m = http1.json_row(block, measured("tricorn", "asyncio", 500.0, "h11", "get1m"))
    assert get1m["mb_s"] == pytest.approx(500 * 1024 * 1024 / 1e6)


def test_the_body_workloads_are_a_benchmark_of_their_own(tmp_path: Path) -> None:
    assert http1.document_name(["hello"]) == ("http1", "HTTP/1.1 hello world")
    assert http1.document_name(["post64k", "get1m"])[0] == "http1-bodies"
    assert http1.document_name(["hello", "get1m"])[0] == "http1"
    args = http1.parse_args(["--workloads", "post64k,get1m", "--duration", "5"])
    assert args.workloads == ["post64k", "get1m"]
    assert http1.parse_args([]).workloads == ["hello"]
    with pytest.raises(SystemExit):
        http1.parse_args(["--workloads", "post1g"])
    assert report.RUNS["http1-bodies"][:3] == ("bench/http1.py", "--workloads", "post64k,get1m")

    rows = [
        record.row(
            machine(), scenario=name, server=server, loop="asyncio", parser=parser, label=server,
            status="ok", values={"req_s": rps, "mb_s": rps * size / 1e6}, p99_ms=5.0,
        )
        for name, size in (("post64k", 65536), ("get1m", 1048576))
        for server, parser, rps in (("tricorn", "httptools", 900.0),
                                    ("uvicorn", "httptools", 600.0))
    ]  # fmt: skip
    document = record.document(
        "http1-bodies",
        "HTTP/1.1 request and response bodies",
        machine(),
        [http1.scenario(http1.WORKLOADS[name], args) for name in args.workloads],
        rows,
    )
    out = tmp_path / "out"
    report.main([str(write_results(tmp_path / "results", document)), "--out", str(out)])
    rst = (out / "http1-bodies.rst").read_text()
    post, get = list_tables(rst)
    assert post[0][:4] == ["server", "loop", "req/s", "MB/s"]
    tricorn = by_server(get)[("tricorn (httptools)", "asyncio")]
    assert (tricorn["MB/s"], tricorn["vs uvicorn"]) == ("944", "1.50")
    assert {"http1-bodies-post64k.svg", "http1-bodies-get1m.svg"} <= {p.name for p in out.iterdir()}
    parse_rst(rst)


def test_wrk_posts_the_upload_with_a_lua_script() -> None:
    assert http1.WORKLOADS["hello"].wrk_script() is None
    assert http1.WORKLOADS["get1m"].wrk_script() is None
    script = http1.WORKLOADS["post64k"].wrk_script() or ""
    assert 'wrk.method = "POST"' in script
    assert 'wrk.body = string.rep("x", 65536)' in script


async def call(scope: dict[str, Any], body: list[bytes]) -> tuple[dict[str, Any], bytes]:
    """Run bench.app on one request whose body arrives in ``body``'s pieces."""
    pieces = [
        {"type": "http.request", "body": piece, "more_body": i < len(body) - 1}
        for i, piece in enumerate(body)
    ]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return pieces.pop(0)

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app.app({"type": "http", **scope}, receive, send)
    start, answer = sent
    assert not answer.get("more_body")
    return start, answer["body"]


@pytest.mark.anyio
async def test_the_app_answers_an_upload_with_its_length_and_a_mebibyte_whole() -> None:
    start, body = await call({"method": "POST", "path": "/upload"}, [b"x" * 40000, b"y" * 25536])
    assert (start["status"], body) == (200, b"65536")
    assert (b"content-length", b"5") in start["headers"]
    start, body = await call({"method": "POST", "path": "/"}, [b"z" * 10, b""])  # read, hello
    assert body == app.BODY
    start, body = await call({"method": "GET", "path": "/bytes/1048576"}, [b""])
    assert (start["status"], len(body)) == (200, 1024 * 1024)
    assert (b"content-length", b"1048576") in start["headers"]
    again = await call({"method": "GET", "path": "/bytes/1048576"}, [b""])
    assert again[1] is body  # built once, sent from the same bytes every time
