"""Processes and signals: one worker in this process, or N workers and a supervisor.

The supervisor binds every listening socket once and hands them to its
workers (spawned, not forked, so no event loop state is shared), which serve
them as ``fd://N``. Each worker has a pipe to the supervisor: the worker
says "ready" on it once lifespan startup completed and its listeners serve;
the supervisor asks for a graceful shutdown (or, on a second Ctrl+C, an
immediate stop) on it; and a worker whose supervisor is gone sees the pipe
close and shuts down. A worker that dies after it was ready is replaced; one
that dies before is a failed startup, and the server stops. With ``reload``
the worker is restarted when a source file changes.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import multiprocessing
import multiprocessing.connection
import os
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio

from . import __version__
from ._asgi.app import load_app
from ._asgi.types import ASGI3App
from ._runtime.logging import configure_logging, error_logger
from ._runtime.serve import Server
from ._runtime.sockets import (
    bind_sockets,
    format_address,
    format_url,
    remove_unix_sockets,
    unix_paths,
)
from ._systemd import Notifier, listen_fds
from .config import Config
from .errors import AppLoadError, BindError, LifespanFailure

__all__ = ["EXIT_FAILURE", "EXIT_STARTUP", "EXIT_USAGE", "run", "run_worker"]

#: Exit statuses: 1 the app could not be loaded or served, 2 bad usage or
#: configuration (argparse's own convention), 3 lifespan startup failed.
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_STARTUP: Final = 3

#: A crash loop is not restarted forever: more than max(_RESTART_LIMIT,
#: workers) replacements within _RESTART_WINDOW seconds stop the server.
_RESTART_LIMIT: Final = 5
_RESTART_WINDOW: Final = 60.0
#: How often --reload looks at the source files' modification times.
_POLL: Final = 0.5
_SKIP_DIRS: Final = {".git", ".hg", ".venv", "venv", ".nox", ".tox", "node_modules", "__pycache__"}

#: Worker -> supervisor.
_READY: Final = b"ready"
#: Supervisor -> worker.
_SHUTDOWN: Final = b"shutdown"
_STOP_NOW: Final = b"stop now"


def fail(status: int, message: str) -> NoReturn:
    print(f"tricorn: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def run(app_path: str, config: Config) -> None:
    """Serve from the command line: in this process, or under a supervisor."""
    # Read (and unset) systemd's variables first, before any worker is
    # spawned: only this process is the service's main process.
    notifier = Notifier()
    config = _socket_activated(config)
    try:
        with _pid_file(config.pid_file):
            if config.workers > 1 or config.reload:
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


def _summary(config: Config, pids: list[int], *, supervisor: int | None = None) -> str:
    """The line that says the server is up, and how to stop it."""
    if supervisor is None:
        processes = f"pid {pids[0]}"
    else:
        plural = "es" if len(pids) > 1 else ""
        listed = ", ".join(str(pid) for pid in pids)
        processes = (
            f"{len(pids)} worker process{plural} (pid {listed}) under supervisor {supervisor}"
        )
    reload = f", reloading on .py changes under {Path.cwd()}" if config.reload else ""
    return (
        f"tricorn {__version__} ready: {processes}, worker class {config.worker_class}{reload}."
        " Press Ctrl+C to quit"
    )


# -- one worker ------------------------------------------------------------


def run_worker(
    app_path: str,
    config: Config,
    sockets: list[socket.socket] | None = None,
    *,
    multiprocess: bool = False,
    supervisor: Connection | None = None,
    notifier: Notifier | None = None,
) -> None:
    """Load the app and serve until SIGINT/SIGTERM; exits with a status on failure.

    Under a supervisor, ``sockets`` are the listeners it bound,
    ``multiprocess`` says whether other workers serve the same app, and
    ``supervisor`` is this worker's pipe to it. ``notifier`` tells systemd
    (when this process is the service's main process).
    """
    configure_logging(config)
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    if sockets is not None:
        # Under a supervisor, Ctrl+C reaches every process in the group; the
        # supervisor answers it on each worker's pipe (a second Ctrl+C with
        # "stop now"). A worker that also acted on SIGINT would count every
        # Ctrl+C twice.
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signals = (signal.SIGTERM,)
        config = dataclasses.replace(
            config, bind=tuple(f"fd://{sock.detach()}" for sock in sockets)
        )
    try:
        app = load_app(
            app_path,
            interface=config.interface,
            factory=config.factory,
            wsgi_max_workers=config.wsgi_max_workers,
            multiprocess=multiprocess,
        )
    except AppLoadError as exc:
        fail(EXIT_FAILURE, str(exc))
    backend, options = _backend(config.worker_class)
    try:
        anyio.run(
            _serve_until_signal,
            app,
            config,
            signals,
            supervisor,
            notifier or Notifier({}),
            backend=backend,
            backend_options=options,
        )
    except KeyboardInterrupt:
        pass  # Ctrl+C before the signal handlers were installed: nothing to wind down.
    except BaseException as exc:
        error = _leaf(exc)
        if isinstance(error, LifespanFailure):
            fail(EXIT_STARTUP, f"lifespan startup failed: {error}")
        if isinstance(error, BindError):
            fail(EXIT_FAILURE, str(error))
        if isinstance(error, KeyboardInterrupt):
            return
        raise


def _leaf(error: BaseException) -> BaseException:
    """The first non-group exception inside (nested) exception groups."""
    while isinstance(error, BaseExceptionGroup):
        error = error.exceptions[0]
    return error


def _backend(worker_class: str) -> tuple[str, dict[str, Any]]:
    if worker_class == "uvloop":
        try:
            import uvloop  # noqa: F401
        except ImportError:
            fail(EXIT_USAGE, "--worker-class uvloop needs uvloop: pip install 'tricorn[uvloop]'")
        return "asyncio", {"use_uvloop": True}
    if worker_class == "trio":
        try:
            import trio  # noqa: F401
        except ImportError:
            fail(EXIT_USAGE, "--worker-class trio needs trio: pip install 'tricorn[trio]'")
    return worker_class, {}


async def _serve_until_signal(
    app: ASGI3App,
    config: Config,
    signals: tuple[signal.Signals, ...],
    supervisor: Connection | None,
    notifier: Notifier,
) -> None:
    """Serve until one of ``signals`` arrives, then shut down gracefully.

    The signals are listened to until the server has stopped: a second one
    during the graceful shutdown stops at once. (Left to the backends, a
    second Ctrl+C is a KeyboardInterrupt on asyncio but, on trio, only a
    cancellation that the graceful shutdown's shield absorbs.)
    """
    server = Server(app, config, announce=supervisor is None, reuse_port=supervisor is not None)
    with anyio.open_signal_receiver(*signals) as received:
        async with anyio.create_task_group() as task_group:
            serving = anyio.CancelScope()

            def shut_down(reason: str, hint: str = "") -> None:
                if not serving.cancel_called:
                    notifier.stopping(reason)
                    error_logger.info(
                        "%s, shutting down (graceful timeout %gs)%s",
                        reason,
                        config.graceful_timeout,
                        hint,
                    )
                    serving.cancel()

            def stop_now(reason: str) -> None:
                error_logger.info("%s", reason)
                server.stop_now()

            async def run() -> None:
                try:
                    with serving:
                        async with anyio.create_task_group() as inner:
                            addresses = await inner.start(server.serve)
                            if supervisor is None:
                                error_logger.info(_summary(config, [os.getpid()]))
                                notifier.ready(f"serving on {', '.join(addresses)}")
                            else:
                                supervisor.send_bytes(_READY)
                finally:
                    task_group.cancel_scope.cancel()  # stop listening for signals

            task_group.start_soon(run)
            if notifier.watchdog_due_in() is not None:
                task_group.start_soon(_ping_watchdog, notifier)
            if supervisor is not None:
                task_group.start_soon(_obey_supervisor, supervisor, shut_down, stop_now)
            async for signum in received:
                name = signal.Signals(signum).name
                if not serving.cancel_called:
                    shut_down(f"received {name}", "; send it again to stop at once")
                else:
                    stop_now(f"received {name} again")


async def _ping_watchdog(notifier: Notifier) -> None:
    """WATCHDOG=1 from the event loop itself: a loop that hangs stops the pings."""
    while (due := notifier.watchdog_due_in()) is not None:
        await anyio.sleep(due)
        notifier.ping_watchdog()


async def _obey_supervisor(
    supervisor: Connection,
    shut_down: Callable[[str], None],
    stop_now: Callable[[str], None],
) -> None:
    """Act on the supervisor's messages; its end closing means it is gone."""
    while True:
        await anyio.wait_readable(supervisor.fileno())
        try:
            message = supervisor.recv_bytes()
        except (EOFError, OSError):
            # Killed, most likely; a worker without a supervisor would be
            # left serving (and holding the port) with nobody to stop it.
            shut_down(f"worker {os.getpid()}: the supervisor is gone")
            return
        if message == _SHUTDOWN:
            shut_down(f"worker {os.getpid()} asked by the supervisor")
        elif message == _STOP_NOW:
            stop_now(f"worker {os.getpid()} asked by the supervisor to stop now")


# -- the supervisor --------------------------------------------------------


def _worker_entry(
    app_path: str,
    config: Config,
    sockets: list[socket.socket],
    multiprocess: bool,
    supervisor: Connection,
) -> None:
    run_worker(app_path, config, sockets, multiprocess=multiprocess, supervisor=supervisor)


@dataclasses.dataclass(eq=False)
class _Worker:
    process: BaseProcess
    pipe: Connection
    #: The worker it replaces, if it does.
    replaces: int | None = None
    ready: bool = False
    #: The pipe was closed by the worker (it is exiting).
    hung_up: bool = False

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def tell(self, message: bytes) -> None:
        with contextlib.suppress(OSError):  # it is exiting; its sentinel will say so
            self.pipe.send_bytes(message)


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
        self._workers: list[_Worker] = []
        self._signals = 0
        self._signal_name = ""
        self._wake_read, self._wake_write = os.pipe()
        os.set_blocking(self._wake_write, False)
        self._restarts: collections.deque[float] = collections.deque()
        self._restart_limit = max(_RESTART_LIMIT, self._count)

    def run(self) -> None:
        configure_logging(self._config)
        try:
            sockets = bind_sockets(self._config)
        except BindError as exc:
            fail(EXIT_FAILURE, str(exc))
        for sock in sockets:
            error_logger.debug("supervisor listening on %s", format_address(sock))
        previous = {
            signum: signal.signal(signum, self._on_signal)
            for signum in (signal.SIGINT, signal.SIGTERM)
        }
        status = 0
        try:
            self._workers = [self._spawn(sockets) for _ in range(self._count)]
            status = self._watch(sockets)
        finally:
            self._stop_workers()
            for signum, handler in previous.items():
                signal.signal(signum, handler)
            for sock in sockets:
                sock.close()
            remove_unix_sockets(unix_paths(self._config))
            os.close(self._wake_read)
            os.close(self._wake_write)
        if status:
            raise SystemExit(status)

    def _on_signal(self, signum: int, frame: object) -> None:
        # Only note it: the main loop logs and acts (logging here could
        # deadlock on a lock the interrupted code holds).
        self._signals += 1
        self._signal_name = signal.Signals(signum).name
        with contextlib.suppress(BlockingIOError):  # a wake-up is pending already
            os.write(self._wake_write, b"!")

    def _drain_wakeups(self) -> None:
        while multiprocessing.connection.wait([self._wake_read], timeout=0):
            os.read(self._wake_read, 64)

    def _spawn(self, sockets: list[socket.socket], *, replaces: int | None = None) -> _Worker:
        config = dataclasses.replace(self._config, workers=1, reload=False)
        ours, theirs = self._context.Pipe()
        process = self._context.Process(
            target=_worker_entry,
            args=(self._app_path, config, sockets, self._count > 1, theirs),
            name="tricorn-worker",
        )
        process.start()
        theirs.close()  # the worker has its own copy; ours must not keep it open
        error_logger.debug("started worker %s", process.pid)
        return _Worker(process, ours, replaces=replaces)

    def _announce(self, sockets: list[socket.socket]) -> None:
        tls = self._config.certfile is not None
        for sock in sockets:
            error_logger.info("serving on %s", format_url(sock, tls=tls))
        # Each worker binds the QUIC ports itself (their ports are fixed).
        for address in self._config.quic_bind:
            error_logger.info("serving on https://%s (HTTP/3, QUIC)", address)
        pids = [worker.pid for worker in self._workers]
        error_logger.info(_summary(self._config, pids, supervisor=os.getpid()))
        quic = [f"{address} (QUIC)" for address in self._config.quic_bind]
        addresses = ", ".join([*(format_address(sock) for sock in sockets), *quic])
        self._notifier.ready(f"serving on {addresses} with {len(pids)} workers")

    def _wait(self, waitables: list[Any], timeout: float | None) -> None:
        """Wait for any of ``waitables``, waking in time for the next watchdog ping."""
        due = self._notifier.watchdog_due_in()
        if due is not None:
            timeout = due if timeout is None else min(timeout, due)
        multiprocessing.connection.wait(waitables, timeout=timeout)
        self._notifier.ping_watchdog()

    def _watch(self, sockets: list[socket.socket]) -> int:
        """Keep the workers alive until told to stop; return the exit status."""
        mtimes = dict(_source_mtimes()) if self._config.reload else {}
        waiting_for_change = False
        announced = False
        while True:
            waitables: list[Any] = [self._wake_read]
            # A dead worker's sentinel stays readable: while waiting for a
            # file change, only the clock and signals matter.
            for worker in [] if waiting_for_change else self._workers:
                waitables.append(worker.process.sentinel)
                if not worker.ready and not worker.hung_up:
                    waitables.append(worker.pipe)
            self._wait(waitables, _POLL if self._config.reload else None)
            self._drain_wakeups()
            if self._signals:
                error_logger.info("supervisor received %s, stopping workers", self._signal_name)
                self._notifier.stopping(f"received {self._signal_name}, stopping workers")
                return 0
            if self._config.reload:
                current = dict(_source_mtimes())
                if current != mtimes:
                    changed = sorted(set(current.items()) ^ set(mtimes.items()))
                    error_logger.info("%s changed, restarting", changed[0][0])
                    mtimes = current
                    self._stop_workers()
                    self._workers = [self._spawn(sockets) for _ in range(self._count)]
                    waiting_for_change = False
                    continue
            if waiting_for_change:
                continue
            for worker in self._workers:
                self._read_pipe(worker, announced)
            if not announced and all(worker.ready for worker in self._workers):
                self._announce(sockets)
                announced = True
            for index, worker in enumerate(self._workers):
                if worker.process.is_alive():
                    continue
                worker.process.join()
                worker.pipe.close()
                how = _describe_exit(worker.process.exitcode)
                if not worker.ready:
                    if self._config.reload:
                        error_logger.error(
                            "worker %s %s before it was ready; "
                            "waiting for a file change before restarting",
                            worker.pid,
                            how,
                        )
                        waiting_for_change = True
                        break
                    error_logger.error(
                        "worker %s %s before it was ready (its startup failed); "
                        "stopping the server",
                        worker.pid,
                        how,
                    )
                    code = worker.process.exitcode
                    return code if code is not None and code > 0 else EXIT_FAILURE
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
                replacement = self._spawn(sockets, replaces=worker.pid)
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

    def _read_pipe(self, worker: _Worker, announced: bool) -> None:
        if worker.ready or worker.hung_up or not worker.pipe.poll():
            return
        try:
            message = worker.pipe.recv_bytes()
        except (EOFError, OSError):
            worker.hung_up = True
            return
        if message != _READY:
            return
        worker.ready = True
        if worker.replaces is not None:
            error_logger.info(
                "worker %s is ready, replacing worker %s", worker.pid, worker.replaces
            )
        elif announced:
            error_logger.info("worker %s is ready", worker.pid)  # after a reload
        if announced and all(w.ready for w in self._workers):
            self._notifier.notify(STATUS=f"serving with {len(self._workers)} workers")
        else:
            error_logger.debug("worker %s is ready", worker.pid)

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
        """Graceful shutdown for every worker; a second signal meanwhile stops them at once."""
        for worker in self._workers:
            worker.tell(_SHUTDOWN)
        deadline = time.monotonic() + self._config.graceful_timeout + 5.0
        forced = False
        while (alive := [w for w in self._workers if w.process.is_alive()]) and (
            remaining := deadline - time.monotonic()
        ) > 0:
            if not forced and self._signals >= 2:
                forced = True
                error_logger.info(
                    "supervisor received %s again, stopping workers now", self._signal_name
                )
                for worker in alive:
                    worker.tell(_STOP_NOW)
            self._wait([self._wake_read, *(w.process.sentinel for w in alive)], remaining)
            self._drain_wakeups()
        for worker in self._workers:
            if worker.process.is_alive():
                error_logger.warning("worker %s did not stop in time; killing it", worker.pid)
                worker.process.kill()
            worker.process.join()
            worker.pipe.close()
        self._workers = []


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
