"""The supervisor's process management, in a real subprocess.

Worker recycling (--max-requests), SIGHUP's rolling restart, SIGTTIN and
SIGTTOU, the worker healthcheck, --timeout-worker-startup, and the metrics
of every worker served by the supervisor. The tests synchronise on the log
lines the server writes; where only the state of other processes can tell
(a pid gone, a gauge moved), they poll it with a deadline.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e._server_process import ServerProcess, clean_environ, server_processes, write_module

pytest.importorskip("prometheus_client", reason="the metrics need prometheus-client")

from prometheus_client.parser import text_string_to_metric_families

WORKER_CLASSES = ["asyncio", "trio"]

#: "hang" holds a number: that many workers importing the app hang in
#: the import (each takes one), standing for a startup that never ends.
APP = """
import os
import sys
import time

VERSION = "one"

if os.path.exists("hang"):
    with open("hang") as file:
        left = int(file.read() or 0)
    if left > 0:
        with open("hang", "w") as file:
            file.write(str(left - 1))
        time.sleep(30)


async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    if scope["path"] == "/block":
        print(f"worker {os.getpid()} blocks its event loop", file=sys.stderr, flush=True)
        time.sleep(10)  # the healthcheck kills it long before
    body = f"{os.getpid()} {VERSION}".encode()
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""

_READY = r"ready: (\d+) worker process(?:es)? \(pid ([\d, ]+)\)"
_METRICS = r"serving metrics on http://(\S+)/metrics"


@pytest.fixture
def start(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    write_module(tmp_path, "svc", APP)
    (tmp_path / "tmp").mkdir()
    with server_processes() as started:

        def start(*args: str) -> ServerProcess:
            server = ServerProcess(
                ["svc:app", "-b", "127.0.0.1:0", "--no-access-log", *args],
                cwd=tmp_path,
                env=clean_environ(TMPDIR=str(tmp_path / "tmp")),
            )
            started.append(server)
            return server

        yield start


def _pids(server: ServerProcess) -> set[int]:
    match = server.wait_for_line(_READY)
    return {int(pid) for pid in match.group(2).split(", ")}


def _fresh_client() -> httpx.Client:
    """A new connection for every request: each one goes through accept()."""
    return httpx.Client(timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def _running(pid: int) -> bool:
    """Whether ``pid`` runs (an exited child of the server may be a zombie for a moment)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):  # gone, perhaps while being read
        return False
    return stat.rpartition(")")[2].split()[0] != "Z"


def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def _scrape(address: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    text = httpx.get(f"http://{address}/metrics", timeout=10).text
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _requests_total(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(value for (name, _), value in samples.items() if name == "tricorn_requests_total")


class _Hammer:
    """Requests, one after another on fresh connections, until stopped; every outcome kept.

    ``sent`` counts the requests begun; ``sent_before[i]`` is that count
    when the request of ``answers[i]`` began, so a check can pick the
    answers to requests sent after some moment (an answer is appended a
    little after its worker wrote it, perhaps after that worker exited).
    """

    def __init__(self, url: str) -> None:
        self._url = url
        self._stop = threading.Event()
        self.sent = 0
        self.answers: list[str] = []
        self.sent_before: list[int] = []
        self.failures: list[str] = []
        self.answered = threading.Condition()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        with _fresh_client() as client:
            while not self._stop.is_set():
                with self.answered:
                    number = self.sent
                    self.sent += 1
                try:
                    response = client.get(self._url)
                    outcome = response.text if response.status_code == 200 else None
                except httpx.HTTPError as exc:
                    outcome, error = None, repr(exc)
                else:
                    error = f"status {response.status_code}"
                with self.answered:
                    if outcome is None:
                        self.failures.append(error)
                    else:
                        self.answers.append(outcome)
                        self.sent_before.append(number)
                    self.answered.notify_all()

    def wait_for(self, condition: Callable[[list[str]], bool], timeout: float = 20.0) -> None:
        with self.answered:
            assert self.answered.wait_for(lambda: condition(self.answers), timeout), (
                f"{len(self.answers)} answers, failures: {self.failures}"
            )

    def answers_to_requests_sent_from(self, mark: int) -> list[str]:
        with self.answered:
            return [a for a, n in zip(self.answers, self.sent_before, strict=True) if n >= mark]

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_max_requests_replaces_the_worker_without_failing_a_request(
    start: Callable[..., ServerProcess], worker_class: str
) -> None:
    # One worker: the supervisor runs for --max-requests all the same.
    server = start(
        *("--worker-class", worker_class, "--metrics-bind", "127.0.0.1:0"),
        *("--max-requests", "3", "--max-requests-jitter", "2"),
    )
    (first,) = _pids(server)
    hammer = _Hammer(server.url())
    try:
        served = server.wait_for_line(rf"worker {first} served (\d+) requests \(max_requests\)")
        assert 3 <= int(served.group(1)) <= 5
        replaced = server.wait_for_line(
            rf"worker (\d+) is ready, replacing worker {first} \(it served max_requests\)"
        )
        second = replaced.group(1)
        hammer.wait_for(lambda answers: any(a.startswith(second) for a in answers[-1:]))
    finally:
        hammer.stop()
    assert hammer.failures == []
    # Every request reached a worker that was serving: the old one until
    # the new one was ready.
    assert {answer.split()[0] for answer in hammer.answers} >= {str(first), second}
    _until(lambda: not _running(first))
    samples = _scrape(server.wait_for_line(_METRICS).group(1))
    restarts = samples["tricorn_worker_restarts_total", (("reason", "max_requests"),)]
    assert restarts >= 1
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_sighup_restarts_every_worker_on_new_code_without_failing_a_request(
    start: Callable[..., ServerProcess], worker_class: str, tmp_path: Path
) -> None:
    server = start("--workers", "2", "--worker-class", worker_class)
    old = _pids(server)
    hammer = _Hammer(server.url())
    try:
        hammer.wait_for(lambda answers: len(answers) >= 5)
        write_module(tmp_path, "svc", APP.replace('VERSION = "one"', 'VERSION = "two"'))
        server.send_signal(signal.SIGHUP)
        done = server.wait_for_line(r"rolling restart done: workers (\d+), (\d+) serve")
        new = {int(pid) for pid in done.groups()}
        # The old workers finish what they accepted, then exit.
        _until(lambda: not any(_running(pid) for pid in old))
        with hammer.answered:
            mark = hammer.sent
        hammer.wait_for(lambda _: len(hammer.answers_to_requests_sent_from(mark)) >= 10)
    finally:
        hammer.stop()
    assert hammer.failures == []
    assert new.isdisjoint(old)
    assert len(server.wait_for_lines(r"\(SIGHUP\), which shuts down gracefully", 2)) == 2
    # Requests sent once the old workers were gone reach only the new
    # ones, which run the new code.
    later = hammer.answers_to_requests_sent_from(mark)
    assert {answer for answer in later} <= {f"{pid} two" for pid in new}
    assert {answer for answer in hammer.answers[:5]} <= {f"{pid} one" for pid in old}
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


def test_sigttin_adds_a_worker_and_sigttou_retires_one_but_never_the_last(
    start: Callable[..., ServerProcess],
) -> None:
    server = start("--workers", "2")
    _pids(server)
    server.send_signal(signal.SIGTTIN)
    added = server.wait_for_line(r"received SIGTTIN: started worker (\d+); workers now: 3")
    server.wait_for_line(rf"worker {added.group(1)} is ready")
    retired = []
    for count in (2, 1):
        server.send_signal(signal.SIGTTOU)
        line = rf"received SIGTTOU: worker (\d+) shuts down gracefully; workers now: {count}"
        retired.append(int(server.wait_for_line(line).group(1)))
    server.send_signal(signal.SIGTTOU)
    server.wait_for_line(r"received SIGTTOU: the last worker stays")
    _until(lambda: not any(_running(pid) for pid in retired))
    with _fresh_client() as client:
        answers = {client.get(server.url()).text.split()[0] for _ in range(5)}
    assert len(answers) == 1
    assert int(answers.pop()) not in retired
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_a_worker_whose_event_loop_is_blocked_is_killed_and_replaced(
    start: Callable[..., ServerProcess], worker_class: str
) -> None:
    server = start(
        *("--workers", "2", "--worker-class", worker_class),
        *("--timeout-worker-healthcheck", "3", "--metrics-bind", "127.0.0.1:0"),
    )
    _pids(server)
    blocked = threading.Thread(target=_get_and_lose, args=(server.url("/block"),), daemon=True)
    blocked.start()
    pid = server.wait_for_line(r"worker (\d+) blocks its event loop").group(1)
    server.wait_for_line(rf"worker {pid} sent no heartbeat for 3s \(timeout_worker_healthcheck\)")
    replaced = server.wait_for_line(rf"worker {pid} was killed by SIGKILL; started worker (\d+)")
    server.wait_for_line(rf"worker {replaced.group(1)} is ready, replacing worker {pid}")
    blocked.join(15)
    address = server.wait_for_line(_METRICS).group(1)
    samples = _scrape(address)
    assert samples["tricorn_worker_restarts_total", (("reason", "healthcheck"),)] == 1
    assert samples["tricorn_worker_restarts_total", (("reason", "crashed"),)] == 0
    with _fresh_client() as client:
        assert {client.get(server.url()).status_code for _ in range(5)} == {200}
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


def _get_and_lose(url: str) -> None:
    """A request whose worker is killed under it: the answer never comes."""
    with pytest.raises(httpx.TransportError):
        httpx.get(url, timeout=20)


def test_a_worker_not_ready_within_timeout_worker_startup_fails_the_start(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    (tmp_path / "hang").write_text("99")
    # The other worker, stuck in its import too, is not waited for past its
    # own startup timeout either.
    server = start("--workers", "2", "--timeout-worker-startup", "1")
    assert server.wait(10) == 1, server.stderr
    assert "was not ready within 1s (timeout_worker_startup); killing it" in server.stderr
    assert "before it was ready (its startup failed); stopping the server" in server.stderr
    assert "serving on" not in server.stderr


def test_a_replacement_not_ready_within_timeout_worker_startup_is_started_again(
    start: Callable[..., ServerProcess], tmp_path: Path
) -> None:
    # Long enough for the first workers to start on a busy machine.
    server = start("--workers", "2", "--timeout-worker-startup", "5")
    victim = min(_pids(server))
    (tmp_path / "hang").write_text("1")  # the next worker to start hangs
    os.kill(victim, signal.SIGKILL)
    hung = server.wait_for_line(rf"worker {victim} was killed by SIGKILL; started worker (\d+)")
    hung_pid = hung.group(1)
    server.wait_for_line(rf"worker {hung_pid} was not ready within 5s")
    again = server.wait_for_line(
        rf"worker {hung_pid} was killed by SIGKILL before it was ready; started worker (\d+)"
    )
    server.wait_for_line(rf"worker {again.group(1)} is ready, replacing worker {hung_pid}")
    assert server.process.poll() is None, server.stderr
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_metrics_bind_with_workers_serves_their_sum_from_the_supervisor(
    start: Callable[..., ServerProcess], worker_class: str, tmp_path: Path
) -> None:
    server = start(
        *("--workers", "2", "--worker-class", worker_class, "--metrics-bind", "127.0.0.1:0")
    )
    pids = _pids(server)
    address = server.wait_for_line(_METRICS).group(1)
    with _fresh_client() as client:
        answered = {client.get(server.url()).text.split()[0] for _ in range(20)}
    samples = _scrape(address)
    assert _requests_total(samples) == 20
    assert samples["tricorn_workers", ()] == 2
    assert samples["tricorn_connections_open", (("protocol", "http1"),)] == 0
    assert samples["tricorn_worker_restarts_total", (("reason", "crashed"),)] == 0
    # A worker that dies takes its live gauges along, but not what it counted.
    victim = int(answered.pop()) if answered else min(pids)
    os.kill(victim, signal.SIGKILL)
    server.wait_for_line(rf"worker \d+ is ready, replacing worker {victim}")
    _until(lambda: _scrape(address)["tricorn_workers", ()] == 2)
    samples = _scrape(address)
    assert samples["tricorn_worker_restarts_total", (("reason", "crashed"),)] == 1
    assert _requests_total(samples) == 20
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0, server.stderr
    # The supervisor's directory of metrics files is gone with it.
    assert list((tmp_path / "tmp").iterdir()) == []


#: Each worker's lifespan startup says it began (``started-PID``) and waits
#: for ``go-PID``; a request says whether every worker was released by then.
GATED_APP = """
import os
import pathlib
import time


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        await receive()
        pid = os.getpid()
        pathlib.Path(f"started-{pid}").touch()
        while not pathlib.Path(f"go-{pid}").exists():
            time.sleep(0.01)  # only start-up is held: nothing is served yet
        await send({"type": "lifespan.startup.complete"})
        await receive()
        await send({"type": "lifespan.shutdown.complete"})
        return
    started = {path.name.split("-")[1] for path in pathlib.Path().glob("started-*")}
    released = {path.name.split("-")[1] for path in pathlib.Path().glob("go-*")}
    body = b"all ready" if started <= released else b"answered during start-up"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


GATED_OPTIONS = ("-b", "unix:sock", "-w", "2", "--no-access-log", "--log-level", "debug")


@pytest.mark.parametrize("worker_class", WORKER_CLASSES)
def test_no_worker_takes_a_connection_before_every_worker_is_ready(
    tmp_path: Path, worker_class: str
) -> None:
    # A readiness probe that passes must mean the whole server serves: a
    # request made while one worker's startup still runs waits in the
    # backlog, and is answered once every worker is ready.
    write_module(tmp_path, "gated", GATED_APP)
    with server_processes() as started:
        server = ServerProcess(
            ["gated:app", *GATED_OPTIONS, "-k", worker_class],
            cwd=tmp_path,
        )
        started.append(server)
        _until(lambda: len(list(tmp_path.glob("started-*"))) == 2)
        first, second = sorted(path.name.split("-")[1] for path in tmp_path.glob("started-*"))
        (tmp_path / f"go-{first}").touch()
        server.wait_for_line(rf"worker {first} is ready")
        answers: list[str] = []

        def ask() -> None:
            transport = httpx.HTTPTransport(uds=str(tmp_path / "sock"))
            with httpx.Client(transport=transport, timeout=30) as client:
                answers.append(client.get("http://localhost/").text)

        asking = threading.Thread(target=ask, daemon=True)
        asking.start()
        # The ready worker would answer within this (it did, before the
        # gate); the answer would then say it came during start-up.
        asking.join(timeout=1.0)
        (tmp_path / f"go-{second}").touch()
        asking.join(timeout=30)
        assert answers == ["all ready"], server.stderr
