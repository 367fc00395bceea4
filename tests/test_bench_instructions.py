"""bench/instructions.py: valgrind's count, the per-request difference, the answers, the report.

None of these runs valgrind: the measurement itself is bench/instructions.py's to run.
"""

from __future__ import annotations

import argparse
import json
import socket
import threading
from pathlib import Path

import pytest
from bench import http1, instructions, record, report

from tests.test_bench_report import machine

# What valgrind 3.19's callgrind prints on stderr, for a server that started one child.
STDERR = """\
==4242== Callgrind, a call-graph generating cache profiler
==4242== Copyright (C) 2002-2017, and GNU GPL'd, by Josef Weidendorfer et al.
==4242== Command: /usr/bin/python3 -m tricorn bench.app:app --bind 127.0.0.1:40000
==4242==
==4242== For interactive control, run 'callgrind_control -h'.
INFO: some log line of the server's own: Collected : 5
==4243== Events    : Ir
==4243== Collected : 2000000
==4243==
==4243== I   refs:      2,000,000
==4242==
==4242== Events    : Ir
==4242== Collected : 1380042889
==4242==
==4242== I   refs:      1,380,042,889
"""


def test_collected_sums_every_process_and_ignores_other_lines() -> None:
    assert instructions.collected(STDERR) == 1_380_042_889 + 2_000_000
    assert instructions.collected("==1== Collected : 17\n") == 17
    with pytest.raises(ValueError, match="Collected"):
        instructions.collected("==4242== Callgrind\nKilled\n")  # SIGKILL: valgrind never ended


def test_per_request_is_the_difference_over_the_extra_requests() -> None:
    assert instructions.per_request({200: 1_000_000, 1200: 321_000_000}) == 320_000.0
    assert instructions.per_request({1200: 321_000_000, 200: 1_000_000}) == 320_000.0
    with pytest.raises(ValueError, match="two runs"):
        instructions.per_request({200: 1})
    with pytest.raises(ValueError, match="no more instructions"):
        instructions.per_request({200: 5_000, 1200: 5_000})
    with pytest.raises(ValueError, match="at least 1"):
        instructions.per_request({0: 0, 10: 100})


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["--requests", "1200"], "two request counts"),
        (["--requests", "a,b"], "two request counts"),
        (["--requests", "1,2,3"], "two request counts"),
        (["--requests", "1200,200"], "1 <= N1 < N2"),
        (["--requests", "0,10"], "1 <= N1 < N2"),
        (["--workloads", "get1m"], "choose from hello,post64k"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(
    argv: list[str], error: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        instructions.parse_args(argv)
    assert exited.value.code == 2
    assert error in capsys.readouterr().err


def test_defaults_and_the_rows_chosen_from_http1() -> None:
    args = instructions.parse_args([])
    assert args.requests == (200, 1200)
    assert args.workloads == ["hello", "post64k"]
    rows = instructions.selected(args)
    assert [(s.name, s.loop, s.impl) for s in rows] == list(instructions.ROWS)
    assert rows[0].argv(8000) == http1.tricorn("asyncio", "httptools").argv(8000)  # http1's own
    narrowed = instructions.selected(instructions.parse_args(["--only", "uvicorn", "--no-uvloop"]))
    assert [s.label for s in narrowed] == ["uvicorn (httptools, asyncio)", "uvicorn (h11, asyncio)"]


def test_without_valgrind_it_exits_2_saying_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no valgrind on it
    assert instructions.main(["--json", str(tmp_path / "out.json")]) == 2
    assert "apt-get install -y valgrind" in capsys.readouterr().err
    assert not (tmp_path / "out.json").exists()


def result(server: str, loop: str, impl: str | None, cost: float | None) -> instructions.Result:
    r = instructions.Result(server, loop, impl, "hello")
    if cost is not None:
        r.status, r.per_request = "ok", cost
        r.instructions = {200: 1_000_000_000, 1200: 1_000_000_000 + round(cost * 1000)}
    return r


def test_ratios_are_to_uvicorn_on_the_same_loop_h11_to_h11() -> None:
    rows = [
        result("tricorn", "asyncio", "httptools", 320_000),
        result("tricorn", "asyncio", "h11", 649_000),
        result("tricorn", "trio", None, 400_000),
        result("hypercorn", "asyncio", None, 1_000_000),
        result("uvicorn", "asyncio", "httptools", 160_000),
        result("uvicorn", "asyncio", "h11", 590_000),
    ]
    assert instructions.ratio(rows, rows[0]) == 2.0
    assert instructions.ratio(rows, rows[1]) == pytest.approx(649 / 590)
    assert instructions.ratio(rows, rows[2]) is None  # Uvicorn has no trio
    assert instructions.ratio(rows, rows[3]) == 6.25
    text = instructions.table([*rows, result("granian", "asyncio", None, None)])
    assert "320,000" in text
    assert "2.00" in text
    assert "n/a" in text
    assert "FAILED" in text


@pytest.mark.parametrize(
    ("answer", "error"),
    [
        (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello, world!", None),
        (b"HTTP/1.1 500 Oops\r\nContent-Length: 13\r\n\r\nHello, world!", "answered 500"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nHello", "answered 200 with b'Hello'"),
        (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "chunked"),
        (b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n\r\nHello", "within a body"),
        (b"", "closed the connection"),
    ],
)
def test_every_answer_is_checked_over_a_real_socket(answer: bytes, error: str | None) -> None:
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        with socket.create_connection(("127.0.0.1", port)) as client:
            server, _ = listener.accept()
            with server, client.makefile("rb") as stream:
                client.sendall(instructions.request(http1.WORKLOADS["hello"]))
                assert server.recv(4096).startswith(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")
                server.sendall(answer)
                server.shutdown(socket.SHUT_WR)
                if error is None:
                    assert instructions.check_answer(stream, http1.WORKLOADS["hello"]) is False
                    return
                with pytest.raises(RuntimeError, match=error):
                    instructions.check_answer(stream, http1.WORKLOADS["hello"])


def test_a_server_that_closes_the_connection_gets_a_new_one() -> None:
    """As Hypercorn after 1,000 requests: Connection: close, then the client reconnects."""
    hello = http1.WORKLOADS["hello"]
    ok = b"HTTP/1.1 200 OK\r\nContent-Length: 13\r\n%s\r\nHello, world!"
    served: list[int] = []

    def serve(listener: socket.socket) -> None:
        for _ in range(3):  # three connections, of 2, 2 and 1 requests
            conn, _ = listener.accept()
            with conn, conn.makefile("rb") as stream:
                for n in range(1, 3):
                    if stream.readline() == b"":
                        break
                    while stream.readline() != b"\r\n":
                        pass
                    served.append(len(served) + 1)
                    conn.sendall(ok % (b"Connection: close\r\n" if n == 2 else b""))

    with socket.create_server(("127.0.0.1", 0)) as listener:
        thread = threading.Thread(target=serve, args=(listener,))
        thread.start()
        try:
            assert instructions.send_requests(listener.getsockname()[1], hello, 5) == 2
        finally:
            thread.join(10)
    assert served == [1, 2, 3, 4, 5]
    r = result("hypercorn", "asyncio", None, 1_000_000)
    r.reconnects = {200: 0, 1200: 1}
    assert r.note == (
        "the server closed the connection (Connection: close), new ones:"
        " 0 in the 200-request run, 1 in the 1200-request run"
    )
    assert instructions.json_row(machine(), r, [r])["note"] == r.note


def test_the_upload_request_carries_its_length_and_expects_it_back() -> None:
    upload = http1.WORKLOADS["post64k"]
    data = instructions.request(upload)
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"POST /upload HTTP/1.1\r\n")
    assert b"Content-Length: 65536" in head
    assert len(body) == 65536
    assert instructions.expected_body(upload) == b"65536"


def test_the_json_is_in_the_common_shape_and_the_report_shows_less_is_better(
    tmp_path: Path,
) -> None:
    rows = [
        result("tricorn", "asyncio", "httptools", 320_000),
        result("uvicorn", "asyncio", "httptools", 160_000),
        result("granian", "asyncio", None, None),
    ]
    rows[2].status, rows[2].error = "skipped", "Granian's Rust runtime under valgrind: boom"
    block = machine(tools={"valgrind": "valgrind-3.19.0"})
    args = argparse.Namespace(requests=(200, 1200))
    document = record.document(
        "instructions",
        "Instructions per request (callgrind)",
        block,
        [instructions.scenario("hello", args)],
        [instructions.json_row(block, r, rows) for r in rows],
    )
    assert document["rows"][0]["instr_per_req"] == 320_000
    assert document["rows"][0]["vs_uvicorn"] == 2.0
    results = tmp_path / "results"
    results.mkdir()
    (results / "instructions.json").write_text(json.dumps(document))
    out = tmp_path / "out"
    report.main([str(results), "--out", str(out)])
    text = (out / "instructions.rst").read_text()
    assert "instructions/req: less is better." in text
    assert "320,000" in text
    assert "2.00" in text
    assert "skipped\\: Granian's Rust runtime under valgrind\\: boom" in text
    assert (out / "instructions.svg").exists()


def test_report_skips_instructions_where_valgrind_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    assert report.RUNS["instructions"][0] == "bench/instructions.py"
    assert report.ORDER[-1] == "instructions"
    monkeypatch.setenv("PATH", str(tmp_path))  # no valgrind on it
    results, out = tmp_path / "results", tmp_path / "out"
    results.mkdir()
    (results / "instructions.json").write_text("{}")  # an earlier run's, never passed off as new
    assert report.main([str(results), "--out", str(out), "--run", "--only", "instructions"]) == 0
    err = capsys.readouterr().err
    assert "instructions: skipped: valgrind is not installed (apt-get install -y valgrind)" in err
    assert not (results / "instructions.json").exists()
    page = (out / "instructions.rst").read_text()
    assert "Not measured" in page
    assert "apt-get install -y valgrind" in page
