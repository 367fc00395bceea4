"""Processes and signals: one worker in this process, or N workers and a supervisor.

The supervisor binds every listening socket once and hands them to its
workers (spawned, not forked, so no event loop state is shared), which serve
them as ``fd://N``; each worker has a pipe to it (see ``_worker.py``). A
worker that dies after it was ready is replaced; one that dies before, while
the server starts, is a failed startup, and the server stops. Later
replacements that fail are retried within the crash-loop limit.

Planned replacements never leave a slot unserved: the new worker starts,
and only once it is ready is the old one asked to shut down gracefully.
That is how a worker that served ``max_requests`` retires, and how SIGHUP
restarts every worker, one at a time, on freshly imported code. SIGTTIN adds
a worker, SIGTTOU retires one. A worker silent on its pipe for
``timeout_worker_healthcheck`` (its event loop is blocked), or not ready
within ``timeout_worker_startup``, is killed. With ``reload`` the worker is
restarted when a source file changes.

With ``metrics_bind``, the workers keep their metrics in prometheus-client's
multiprocess mode and the supervisor serves their sum, with its own. With
``statsd_host``, each worker sends its own StatsD metrics and the supervisor
sends the worker gauge and restarts.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final

import anyio.from_thread

from ._runtime.logging import configure_logging, error_logger
from ._runtime.metrics import (
    SupervisorMetrics,
    check_metrics,
    forget_process,
    multiprocess_registry,
    serve_metrics,
)
from ._runtime.sockets import (
    bind_sockets,
    format_address,
    format_url,
    remove_unix_sockets,
    unix_paths,
)
from ._runtime.statsd import StatsdClient
from ._systemd import Notifier, listen_fds
from ._worker import (
    ACCEPT,
    ALIVE,
    EXIT_FAILURE,
    EXIT_STARTUP,
    EXIT_USAGE,
    READY,
    RETIRE,
    SHUTDOWN,
    STOP_NOW,
    fail,
    leaf,
    run_worker,
    summary,
)
from .config import Config
from .errors import BindError, ConfigError

__all__ = ["EXIT_FAILURE", "EXIT_STARTUP", "EXIT_USAGE", "run", "run_worker"]

#: A crash loop is not restarted forever: more than max(_RESTART_LIMIT,
#: workers) unplanned replacements within _RESTART_WINDOW seconds stop the server.
_RESTART_LIMIT: Final = 5
_RESTART_WINDOW: Final = 60.0
#: How often --reload looks at the source files' modification times.
_POLL: Final = 0.5
_SKIP_DIRS: Final = {".git", ".hg", ".venv", "venv", ".nox", ".tox", "node_modules", "__pycache__"}
#: Seconds past graceful_timeout a worker that was asked to shut down has
#: before it is killed.
_STOP_GRACE: Final = 5.0
#: The signals that steer the supervisor, besides SIGINT and SIGTERM.
_CONTROLS: Final = (signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)
_MULTIPROC_DIR: Final = "PROMETHEUS_MULTIPROC_DIR"


def run(app_path: str, config: Config) -> None:
    """Serve from the command line: in this process, or under a supervisor."""
    # Read (and unset) systemd's variables first, before any worker is
    # spawned: only this process is the service's main process.
    notifier = Notifier()
    config = _socket_activated(config)
    try:
        with _pid_file(config.pid_file):
            if config.workers > 1 or config.reload or config.max_requests:
                _Supervisor(app_path, config, notifier).run()
            else:
                run_worker(app_path, config, notifier=notifier)
    finally:
        notifier.close()


def _socket_activated(config: Config) -> Config:
    """Serve the sockets systemd passed (LISTEN_FDS), in place of --bind.

    --systemd-socket picks some by name. A --bind made only of fd://N
    addresses says which of them to serve and is kept as it is.
    """
    try:
        passed = listen_fds()
    except BindError as exc:
        fail(EXIT_FAILURE, str(exc))
    wanted = config.systemd_socket
    if wanted:
        names = [fd.name for fd in passed]
        if missing := [name for name in wanted if name not in names]:
            offered = ", ".join(names) if names else "none (LISTEN_FDS is not set for us)"
            fail(
                EXIT_USAGE,
                f"--systemd-socket: systemd passed no socket named {missing[0]!r};"
                f" it passed: {offered}",
            )
        for fd in passed:
            if fd.name not in wanted:
                os.close(fd.fd)  # not to be served: not to be held open either
        passed = [fd for fd in passed if fd.name in wanted]
    if not passed or all(address.startswith("fd://") for address in config.bind):
        return config
    return dataclasses.replace(config, bind=tuple(f"fd://{fd.fd}" for fd in passed))


@contextlib.contextmanager
def _pid_file(path: str | None) -> Iterator[None]:
    """Write our pid to ``path`` for the run; refuse if it names a live process."""
    if path is None:
        yield
        return
    try:
        with open(path) as file:
            text = file.read().strip()
    except FileNotFoundError:
        text = ""
    except OSError as exc:
        fail(EXIT_USAGE, f"--pid-file: cannot read {path!r}: {exc.strerror or exc}")
    if text.isdigit() and int(text) != os.getpid() and _alive(int(text)):
        fail(EXIT_USAGE, f"--pid-file: {path!r} names process {text}, which is running")
    pid = str(os.getpid())
    try:
        with open(path, "w") as file:
            file.write(pid + "\n")
    except OSError as exc:
        fail(EXIT_USAGE, f"--pid-file: cannot write {path!r}: {exc.strerror or exc}")
    try:
        yield
    finally:
        # Only our own file: a second server that replaced it owns it now.
        ours = False
        with contextlib.suppress(OSError), open(path) as file:
            ours = file.read().strip() == pid
        if ours:
            with contextlib.suppress(OSError):
                os.unlink(path)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, alive
    return True


# -- the supervisor --------------------------------------------------------


def _worker_entry(
    app_path: str,
    config: Config,
    sockets: list[socket.socket],
    multiprocess: bool,
    supervisor: Connection,
) -> None:
    run_worker(app_path, config, sockets, multiprocess=multiprocess, supervisor=supervisor)


#: How the log says why a worker was replaced.
_WHY: Final = {
    "crashed": "it died",
    "max_requests": "it served max_requests",
    "reload": "SIGHUP",
    "healthcheck": "its healthcheck failed",
}


@dataclasses.dataclass(eq=False)
class _Worker:
    process: BaseProcess
    pipe: Connection
    #: When it was started, and when it last said anything (time.monotonic()).
    started: float
    last_seen: float
    #: Why it was started: a RESTART_REASONS entry, or None (not a restart).
    reason: str | None = None
    #: The pid of the worker it replaces, if it does.
    replaces: int | None = None
    ready: bool = False
    #: The pipe was closed by the worker (it is exiting).
    hung_up: bool = False
    #: A worker started to take this one's place, which it does once ready.
    successor: _Worker | None = None
    #: Set on a successor until it has taken its predecessor's place.
    predecessor: _Worker | None = None
    #: Once asked to shut down: when it is killed if it has not exited.
    stop_by: float | None = None
    #: Why the supervisor killed it, if it did.
    killed_for: str | None = None
    #: It served max_requests and asked to be replaced.
    retire: bool = False

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def tell(self, message: bytes) -> None:
        with contextlib.suppress(OSError):  # it is exiting; its sentinel will say so
            self.pipe.send_bytes(message)

    def kill(self, why: str) -> None:
        self.killed_for = why
        self.process.kill()


def _describe_exit(code: int | None) -> str:
    if code is not None and code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with status {code}"


class _Supervisor:
    def __init__(self, app_path: str, config: Config, notifier: Notifier) -> None:
        self._notifier = notifier
        self._app_path = app_path
        self._config = config
        self._count = 1 if config.reload else config.workers
        self._context = multiprocessing.get_context("spawn")
        self._sockets: list[socket.socket] = []
        #: One worker per slot (``_count`` of them), each perhaps with a
        #: successor starting; and the workers asked to shut down.
        self._workers: list[_Worker] = []
        self._stopping: list[_Worker] = []
        self._announced = False
        self._waiting_for_change = False
        self._signals = 0
        self._signal_name = ""
        self._controls: collections.deque[int] = collections.deque()
        #: SIGHUP's rolling restart: the workers still to replace, the
        #: successor starting now, and whether one is under way.
        self._rolling: collections.deque[_Worker] = collections.deque()
        self._rolling_now: _Worker | None = None
        self._rolling_on = False
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._restarts: collections.deque[float] = collections.deque()
        self._restart_limit = max(_RESTART_LIMIT, self._count)
        self._metrics = SupervisorMetrics()
        self._metrics_dir: str | None = None
        # Under --reload a debugger may stop the loop, or startup, for as
        # long as it likes.
        self._healthcheck = 0.0 if config.reload else config.timeout_worker_healthcheck
        self._startup = 0.0 if config.reload else config.timeout_worker_startup

    def run(self) -> None:
        configure_logging(self._config)
        try:
            self._sockets = bind_sockets(self._config)
        except BindError as exc:
            fail(EXIT_FAILURE, str(exc))
        for sock in self._sockets:
            error_logger.debug("supervisor listening on %s", format_address(sock))
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM, *_CONTROLS)
        }
        status = 0
        try:
            with self._sending_statsd(), self._serving_metrics():
                try:
                    self._workers = [self._spawn() for _ in range(self._count)]
                    status = self._watch()
                finally:
                    self._stop_workers()
        finally:
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for sock in self._sockets:
                sock.close()
            remove_unix_sockets(unix_paths(self._config))
            os.close(self._wake_read)
            os.close(self._wake_write)
        if status:
            raise SystemExit(status)

    @contextlib.contextmanager
    def _sending_statsd(self) -> Iterator[None]:
        """Send the worker gauge and restarts to statsd_host (the workers send their own)."""
        try:
            client = StatsdClient.from_config(self._config)
        except ConfigError as exc:
            fail(EXIT_USAGE, f"--statsd-host: {str(exc).split(': ', 1)[1]}")
        if client is None:
            yield
            return
        client.open()
        self._metrics.statsd = client
        try:
            yield
        finally:
            self._metrics.workers = 0  # every worker has stopped
            self._metrics.statsd = None
            client.close()

    @contextlib.contextmanager
    def _serving_metrics(self) -> Iterator[None]:
        """Serve the workers' metrics, summed, on metrics_bind (from a thread of ours).

        The workers find their directory in PROMETHEUS_MULTIPROC_DIR, which
        must be set before they import prometheus-client: it is, as they are
        spawned after this. A directory set by the user is used and left;
        our own is removed at exit.
        """
        if self._config.metrics_bind is None:
            yield
            return
        try:
            check_metrics(self._config)
        except ConfigError as exc:
            fail(EXIT_USAGE, f"--metrics-bind: {str(exc).split(': ', 1)[1]}")
        given = os.environ.get(_MULTIPROC_DIR)
        path = given or tempfile.mkdtemp(prefix="tricorn-metrics-")
        os.environ[_MULTIPROC_DIR] = path
        self._metrics_dir = path
        error_logger.debug("workers keep their metrics in %s", path)
        try:
            registry = multiprocess_registry(path, self._metrics)
            with anyio.from_thread.start_blocking_portal("asyncio") as portal:
                try:
                    endpoint, _ = portal.start_task(serve_metrics, registry, self._config)
                except Exception as exc:
                    error = leaf(exc)
                    if isinstance(error, (BindError, ConfigError)):
                        fail(EXIT_FAILURE, f"--metrics-bind: {error}")
                    raise
                try:
                    yield
                finally:
                    endpoint.cancel()
        finally:
            if given is None:
                os.environ.pop(_MULTIPROC_DIR, None)
                shutil.rmtree(path, ignore_errors=True)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it: the main loop logs and acts (logging here could
        # deadlock on a lock the interrupted code holds).
        if signum in _CONTROLS:
            self._controls.append(signum)
        else:
            self._signals += 1
            self._signal_name = signal.Signals(signum).name
        with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
            os.write(self._wake_write, b"!")

    def _drain_wakeups(self) -> None:
        while multiprocessing.connection.wait([self._wake_read], timeout=0):
            os.read(self._wake_read, 64)

    def _spawn(self, *, reason: str | None = None, replaces: int | None = None) -> _Worker:
        config = dataclasses.replace(
            self._config,
            workers=1,
            reload=False,
            timeout_worker_healthcheck=self._healthcheck,
        )
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_entry,
            args=(self._app_path, config, self._sockets, self._count > 1, theirs),
            name="tricorn-worker",
        )
        process.start()
        theirs.close()  # the worker has its own copy; ours must not keep it open
        error_logger.debug("started worker %s", process.pid)
        now = time.monotonic()
        return _Worker(process, ours, now, now, reason=reason, replaces=replaces)

    def _start_successor(self, worker: _Worker, reason: str) -> None:
        """Start a worker to take ``worker``'s place once it is ready."""
        successor = self._spawn(reason=reason, replaces=worker.pid)
        successor.predecessor = worker
        worker.successor = successor
        self._metrics.worker_restarted(reason)
        error_logger.info(
            "started worker %s to replace worker %s (%s)", successor.pid, worker.pid, _WHY[reason]
        )

    def _ask_to_stop(self, worker: _Worker) -> None:
        worker.tell(SHUTDOWN)
        worker.stop_by = time.monotonic() + self._config.graceful_timeout + _STOP_GRACE
        self._stopping.append(worker)

    def _processes(self) -> list[_Worker]:
        """Every worker process: in the slots, starting as successors, stopping."""
        every: list[_Worker] = []
        for worker in self._workers:
            every.append(worker)
            if worker.successor is not None:
                every.append(worker.successor)
        return every + self._stopping

    def _announce(self) -> None:
        tls = self._config.certfile is not None
        for sock in self._sockets:
            error_logger.info("serving on %s", format_url(sock, tls=tls))
        # Each worker binds the QUIC ports itself (their ports are fixed).
        for address in self._config.quic_bind:
            error_logger.info("serving on https://%s (HTTP/3, QUIC)", address)
        pids = [worker.pid for worker in self._workers]
        self._metrics.addresses = [
            *(format_address(sock) for sock in self._sockets),
            *(f"quic:{address}" for address in self._config.quic_bind),
        ]
        error_logger.info(summary(self._config, pids, supervisor=os.getpid()))
        quic = [f"{address} (QUIC)" for address in self._config.quic_bind]
        addresses = ", ".join([*(format_address(sock) for sock in self._sockets), *quic])
        self._notifier.ready(f"serving on {addresses} with {len(pids)} workers")
        self._announced = True
        # Only now does any worker take connections: a request that came
        # during start-up waited in the backlog until every worker was ready
        # (a readiness probe passes when the whole server can serve).
        for worker in self._workers:
            worker.tell(ACCEPT)

    def _wait(self, waitables: list[Any], timeout: float | None) -> None:
        """Wait for any of ``waitables``, waking in time for the next watchdog ping."""
        due = self._notifier.watchdog_due_in()
        if due is not None:
            timeout = due if timeout is None else min(timeout, due)
        multiprocessing.connection.wait(waitables, timeout=timeout)
        self._notifier.ping_watchdog()

    def _watch(self) -> int:
        """Keep the workers alive until told to stop; return the exit status."""
        reload = self._config.reload
        mtimes = dict(_source_mtimes()) if reload else {}
        while True:
            waitables: list[Any] = [self._wake_read]
            # A dead worker's sentinel stays readable: while waiting for a
            # file change, only the clock and signals matter.
            if not self._waiting_for_change:
                for worker in self._processes():
                    waitables.append(worker.process.sentinel)
                    if not worker.hung_up:
                        waitables.append(worker.pipe)
            timeout = self._next_deadline()
            if reload:
                timeout = _POLL if timeout is None else min(timeout, _POLL)
            self._wait(waitables, timeout)
            self._drain_wakeups()
            if self._signals:
                error_logger.info("supervisor received %s, stopping workers", self._signal_name)
                self._notifier.stopping(f"received {self._signal_name}, stopping workers")
                return 0
            if reload:
                current = dict(_source_mtimes())
                if current != mtimes:
                    changed = sorted(set(current.items()) ^ set(mtimes.items()))
                    error_logger.info("%s changed, restarting", changed[0][0])
                    mtimes = current
                    self._stop_workers()
                    self._workers = [self._spawn(reason="reload") for _ in range(self._count)]
                    for _ in self._workers:
                        self._metrics.worker_restarted("reload")
                    self._waiting_for_change = False
                    continue
            if self._waiting_for_change:
                continue
            for worker in self._processes():
                self._read_pipe(worker)
            self._promote()
            for worker in self._workers:
                # A successor may have served its max_requests before it took over.
                if worker.retire and worker.successor is None and worker.process.is_alive():
                    self._start_successor(worker, "max_requests")
            self._check_timers()
            status = self._reap()
            if status is not None:
                return status
            if not self._announced and all(worker.ready for worker in self._workers):
                self._announce()
            self._obey_controls()
            self._roll_on()
            self._metrics.workers = sum(1 for worker in self._workers if worker.ready)

    def _read_pipe(self, worker: _Worker) -> None:
        while not worker.hung_up and worker.pipe.poll():
            try:
                message = worker.pipe.recv_bytes()
            except (EOFError, OSError):
                worker.hung_up = True
                return
            worker.last_seen = time.monotonic()
            if message == READY and not worker.ready:
                worker.ready = True
                self._on_ready(worker)
            elif message == RETIRE:
                worker.retire = True
            elif message not in (READY, ALIVE, RETIRE):
                error_logger.warning("worker %s said %r, which means nothing", worker.pid, message)

    def _on_ready(self, worker: _Worker) -> None:
        if self._announced:
            worker.tell(ACCEPT)  # a replacement, or one more: the server is up already
        if worker.predecessor is not None:
            return  # _promote says it
        if worker.replaces is not None:
            error_logger.info(
                "worker %s is ready, replacing worker %s", worker.pid, worker.replaces
            )
        elif self._announced:
            error_logger.info("worker %s is ready", worker.pid)  # after a reload, or SIGTTIN
        else:
            error_logger.debug("worker %s is ready", worker.pid)
        if self._announced and all(w.ready for w in self._workers):
            self._notifier.notify(STATUS=f"serving with {len(self._workers)} workers")

    def _promote(self) -> None:
        """Successors that are ready take their predecessor's place, which shuts down."""
        for index, worker in enumerate(self._workers):
            successor = worker.successor
            if successor is None or not successor.ready:
                continue
            self._workers[index] = successor
            successor.predecessor = None
            worker.successor = None
            self._ask_to_stop(worker)
            assert successor.reason is not None
            error_logger.info(
                "worker %s is ready, replacing worker %s (%s), which shuts down gracefully",
                successor.pid,
                worker.pid,
                _WHY[successor.reason],
            )
            if successor is self._rolling_now:
                self._rolling_now = None

    def _deadlines(self) -> Iterator[tuple[float, _Worker, str]]:
        """When each worker is due to be killed, and why."""
        for worker in self._processes():
            if worker.killed_for is not None:
                continue
            if worker.stop_by is not None:
                yield worker.stop_by, worker, "stop"
            elif not worker.ready:
                if self._startup:
                    yield worker.started + self._startup, worker, "startup"
            elif self._healthcheck:
                yield worker.last_seen + self._healthcheck, worker, "healthcheck"

    def _next_deadline(self) -> float | None:
        due = [deadline for deadline, _, _ in self._deadlines()]
        return max(0.0, min(due) - time.monotonic()) if due else None

    def _check_timers(self) -> None:
        now = time.monotonic()
        for deadline, worker, why in list(self._deadlines()):
            if now < deadline or not worker.process.is_alive():
                continue
            if why == "stop":
                error_logger.warning("worker %s did not stop in time; killing it", worker.pid)
            elif why == "startup":
                error_logger.error(
                    "worker %s was not ready within %gs (timeout_worker_startup); killing it",
                    worker.pid,
                    self._startup,
                )
            else:
                error_logger.error(
                    "worker %s sent no heartbeat for %gs (timeout_worker_healthcheck): its "
                    "event loop is blocked or hung; killing it",
                    worker.pid,
                    self._healthcheck,
                )
            worker.kill(why)

    def _bury(self, worker: _Worker) -> None:
        worker.process.join()
        worker.pipe.close()
        if self._metrics_dir is not None:
            forget_process(self._metrics_dir, worker.pid)

    def _reap(self) -> int | None:
        """Act on the workers that exited; an exit status if the server must stop."""
        for worker in list(self._stopping):
            if not worker.process.is_alive():
                self._stopping.remove(worker)
                self._bury(worker)
                error_logger.debug(
                    "worker %s %s", worker.pid, _describe_exit(worker.process.exitcode)
                )
        for index, worker in enumerate(self._workers):
            successor = worker.successor
            if successor is not None and not successor.process.is_alive():
                status = self._successor_died(worker, successor)
                if status is not None:
                    return status
            if worker.process.is_alive():
                continue
            self._bury(worker)
            how = _describe_exit(worker.process.exitcode)
            if worker.successor is not None:
                # It was being replaced anyway: the successor takes its place now.
                successor = self._workers[index] = worker.successor
                successor.predecessor = None
                error_logger.warning(
                    "worker %s %s; worker %s, starting to replace it, takes its place",
                    worker.pid,
                    how,
                    successor.pid,
                )
                continue
            if not worker.ready:
                if self._config.reload:
                    error_logger.error(
                        "worker %s %s before it was ready; "
                        "waiting for a file change before restarting",
                        worker.pid,
                        how,
                    )
                    self._waiting_for_change = True
                    return None
                if not self._announced:
                    error_logger.error(
                        "worker %s %s before it was ready (its startup failed); "
                        "stopping the server",
                        worker.pid,
                        how,
                    )
                    code = worker.process.exitcode
                    return code if code is not None and code > 0 else EXIT_FAILURE
                how += " before it was ready"
            if not self._may_restart():
                error_logger.error(
                    "worker %s %s; %d workers were replaced within %gs, so this looks "
                    "like a crash loop: stopping the server",
                    worker.pid,
                    how,
                    len(self._restarts),
                    _RESTART_WINDOW,
                )
                return EXIT_FAILURE
            if worker.killed_for == "healthcheck":
                reason = "healthcheck"
            else:
                # A replacement whose lifespan startup failed (or did not end
                # within timeout_worker_startup) counts apart from a crash.
                reason = "crashed" if worker.ready else "startup_failed"
            replacement = self._spawn(reason=reason, replaces=worker.pid)
            self._metrics.worker_restarted(reason)
            # Exit status 0: someone stopped it on purpose (a SIGTERM of its own).
            log = error_logger.warning if worker.process.exitcode == 0 else error_logger.error
            log(
                "worker %s %s; started worker %s to replace it",
                worker.pid,
                how,
                replacement.pid,
            )
            self._workers[index] = replacement
            self._notifier.notify(
                STATUS=f"worker {worker.pid} {how}; worker {replacement.pid} replaces it"
            )
        return None

    def _successor_died(self, worker: _Worker, successor: _Worker) -> int | None:
        """A successor died before it took over: try again, or leave ``worker`` serving."""
        self._bury(successor)
        worker.successor = None
        if successor is self._rolling_now:
            self._rolling_now = None
        how = _describe_exit(successor.process.exitcode)
        if successor.reason == "reload":
            # New code that does not start: what serves now serves on.
            self._rolling.clear()
            self._rolling_on = False
            error_logger.error(
                "worker %s, started to replace worker %s (SIGHUP), %s before it was ready; "
                "rolling restart abandoned, the workers that serve keep serving",
                successor.pid,
                worker.pid,
                how,
            )
            return None
        if not self._may_restart():
            error_logger.error(
                "worker %s, started to replace worker %s, %s before it was ready; this "
                "looks like a crash loop: stopping the server",
                successor.pid,
                worker.pid,
                how,
            )
            return EXIT_FAILURE
        error_logger.error(
            "worker %s, started to replace worker %s, %s before it was ready; trying again",
            successor.pid,
            worker.pid,
            how,
        )
        assert successor.reason is not None
        self._start_successor(worker, successor.reason)
        return None

    def _obey_controls(self) -> None:
        """SIGHUP restarts every worker, SIGTTIN adds one, SIGTTOU removes one."""
        while self._controls:
            signum = self._controls.popleft()
            name = signal.Signals(signum).name
            if signum == signal.SIGHUP:
                error_logger.info(
                    "received SIGHUP: restarting the %d workers one at a time", len(self._workers)
                )
                self._rolling = collections.deque(self._workers)
                self._rolling_on = True
            elif self._config.reload:
                error_logger.info("received %s: ignored, --reload runs one worker", name)
            elif signum == signal.SIGTTIN:
                self._count += 1
                self._restart_limit = max(_RESTART_LIMIT, self._count)
                worker = self._spawn()
                self._workers.append(worker)
                error_logger.info(
                    "received SIGTTIN: started worker %s; workers now: %d", worker.pid, self._count
                )
            elif self._count == 1:
                error_logger.info("received SIGTTOU: the last worker stays")
            else:
                self._count -= 1
                oldest = min(self._workers, key=lambda w: w.started)
                self._workers.remove(oldest)
                for stopping in (oldest, oldest.successor):
                    if stopping is not None:
                        self._ask_to_stop(stopping)
                if oldest.successor is self._rolling_now:
                    self._rolling_now = None
                oldest.successor = None
                error_logger.info(
                    "received SIGTTOU: worker %s shuts down gracefully; workers now: %d",
                    oldest.pid,
                    self._count,
                )

    def _roll_on(self) -> None:
        """SIGHUP's rolling restart: the next worker, once the last one's successor took over."""
        if self._rolling_now is not None or not self._rolling_on:
            return
        while self._rolling:
            worker = self._rolling.popleft()
            if worker in self._workers and worker.ready and worker.successor is None:
                self._start_successor(worker, "reload")
                self._rolling_now = worker.successor
                return
        self._rolling_on = False
        pids = ", ".join(str(worker.pid) for worker in self._workers)
        error_logger.info("rolling restart done: workers %s serve", pids)
        self._notifier.notify(STATUS=f"serving with {len(self._workers)} workers")

    def _may_restart(self) -> bool:
        """Count one restart; False once the crash-loop bound is reached."""
        now = time.monotonic()
        while self._restarts and now - self._restarts[0] > _RESTART_WINDOW:
            self._restarts.popleft()
        if len(self._restarts) >= self._restart_limit:
            return False
        self._restarts.append(now)
        return True

    def _stop_workers(self) -> None:
        """Graceful shutdown for every worker; a second signal meanwhile stops them at once.

        Each has graceful_timeout (and a little) to exit; one still starting
        has no more than what is left of its timeout_worker_startup.
        """
        every = self._processes()
        now = time.monotonic()
        for worker in every:
            if worker.stop_by is None:
                worker.tell(SHUTDOWN)
                worker.stop_by = now + self._config.graceful_timeout + _STOP_GRACE
            if not worker.ready and self._startup:
                worker.stop_by = min(worker.stop_by, worker.started + self._startup)
        forced = False
        while alive := [w for w in every if w.process.is_alive() and w.killed_for is None]:
            if not forced and self._signals >= 2:
                forced = True
                error_logger.info(
                    "supervisor received %s again, stopping workers now", self._signal_name
                )
                for worker in alive:
                    worker.tell(STOP_NOW)
            now = time.monotonic()
            for worker in alive:
                assert worker.stop_by is not None
                if worker.stop_by <= now:
                    error_logger.warning("worker %s did not stop in time; killing it", worker.pid)
                    worker.kill("stop")
            remaining = min(w.stop_by for w in alive if w.stop_by is not None) - now
            self._wait([self._wake_read, *(w.process.sentinel for w in alive)], max(0, remaining))
            self._drain_wakeups()
        for worker in every:
            self._bury(worker)
        self._workers = []
        self._stopping = []
        self._rolling.clear()
        self._rolling_now = None
        self._rolling_on = False


def _source_mtimes(root: Path | None = None) -> Iterator[tuple[str, float]]:
    """Modification times of the .py files under the working directory."""
    for directory, subdirs, files in os.walk(root or Path.cwd()):
        subdirs[:] = [d for d in subdirs if d not in _SKIP_DIRS and not d.startswith(".")]
        for name in files:
            if name.endswith(".py"):
                path = os.path.join(directory, name)
                try:
                    yield path, os.stat(path).st_mtime
                except OSError:
                    continue
