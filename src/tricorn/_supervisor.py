"""Processes and signals: one worker in this process, or N workers and a supervisor.

The supervisor binds every listening socket once and hands them to its
workers (spawned, not forked, so no event loop state is shared), which serve
them as ``fd://N``. It forwards SIGINT/SIGTERM for a graceful shutdown,
restarts a worker that dies, and with ``reload`` restarts the worker when a
source file changes.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import os
import signal
import socket
import sys
import threading
import time
from collections.abc import Iterator
from multiprocessing.process import BaseProcess
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio

from ._asgi.app import load_app
from ._asgi.types import ASGI3App
from ._runtime.logging import configure_logging, error_logger
from ._runtime.serve import Server
from ._runtime.sockets import bind_sockets, format_address, remove_unix_sockets, unix_paths
from .config import Config
from .errors import AppLoadError, BindError, LifespanFailure

__all__ = ["EXIT_FAILURE", "EXIT_STARTUP", "EXIT_USAGE", "run", "run_worker"]

#: Exit statuses: 1 the app could not be loaded or served, 2 bad usage or
#: configuration (argparse's own convention), 3 lifespan startup failed.
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_STARTUP: Final = 3

#: A worker that exits within this many seconds of starting failed to start;
#: restarting it in a loop would only repeat the failure.
_STARTUP_GRACE: Final = 3.0
_POLL: Final = 0.5
_SKIP_DIRS: Final = {".git", ".hg", ".venv", "venv", ".nox", ".tox", "node_modules", "__pycache__"}


def fail(status: int, message: str) -> NoReturn:
    print(f"tricorn: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def run(app_path: str, config: Config) -> None:
    """Serve from the command line: in this process, or under a supervisor."""
    if config.workers > 1 or config.reload:
        _Supervisor(app_path, config).run()
    else:
        run_worker(app_path, config)


# -- one worker ------------------------------------------------------------


def run_worker(
    app_path: str,
    config: Config,
    sockets: list[socket.socket] | None = None,
    *,
    multiprocess: bool = False,
) -> None:
    """Load the app and serve until SIGINT/SIGTERM; exits with a status on failure.

    ``multiprocess``: other worker processes serve the same app.
    """
    configure_logging(config.log_level, access_log=config.access_log)
    signals: tuple[signal.Signals, ...] = (signal.SIGINT, signal.SIGTERM)
    if sockets is not None:
        # Under a supervisor, Ctrl+C reaches every process in the group; the
        # supervisor answers it with one SIGTERM per worker. A worker that
        # also acted on SIGINT would take that SIGTERM as a second signal
        # after its handlers were gone, and die mid-request.
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
            _serve_until_signal, app, config, signals, backend=backend, backend_options=options
        )
    except KeyboardInterrupt:
        pass  # a second Ctrl+C during the graceful shutdown: stop now.
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
    app: ASGI3App, config: Config, signals: tuple[signal.Signals, ...]
) -> None:
    """Serve until one of ``signals`` arrives, then shut down gracefully.

    The signals are listened to until the server has stopped: a second one
    during the graceful shutdown stops at once. (Left to the backends, a
    second Ctrl+C is a KeyboardInterrupt on asyncio but, on trio, only a
    cancellation that the graceful shutdown's shield absorbs.)
    """
    server = Server(app, config)
    with anyio.open_signal_receiver(*signals) as received:
        async with anyio.create_task_group() as task_group:
            serving = anyio.CancelScope()

            async def run() -> None:
                try:
                    with serving:
                        async with anyio.create_task_group() as inner:
                            await inner.start(server.serve)
                finally:
                    task_group.cancel_scope.cancel()  # stop listening for signals

            task_group.start_soon(run)
            async for signum in received:
                name = signal.Signals(signum).name
                if not serving.cancel_called:
                    error_logger.info(
                        "received %s, shutting down (graceful timeout %gs); "
                        "send it again to stop at once",
                        name,
                        config.graceful_timeout,
                    )
                    serving.cancel()
                else:
                    error_logger.info("received %s again", name)
                    server.stop_now()


# -- the supervisor --------------------------------------------------------


def _worker_entry(
    app_path: str, config: Config, sockets: list[socket.socket], multiprocess: bool
) -> None:
    run_worker(app_path, config, sockets, multiprocess=multiprocess)


class _Supervisor:
    def __init__(self, app_path: str, config: Config) -> None:
        self._app_path = app_path
        self._config = config
        self._count = 1 if config.reload else config.workers
        self._context = multiprocessing.get_context("spawn")
        self._stop = threading.Event()
        self._workers: list[tuple[BaseProcess, float]] = []

    def run(self) -> None:
        configure_logging(self._config.log_level, access_log=self._config.access_log)
        try:
            sockets = bind_sockets(self._config)
        except BindError as exc:
            fail(EXIT_FAILURE, str(exc))
        for sock in sockets:
            error_logger.info("supervisor listening on %s", format_address(sock))
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
        if status:
            raise SystemExit(status)

    def _on_signal(self, signum: int, frame: object) -> None:
        error_logger.info("supervisor received %s, stopping workers", signal.Signals(signum).name)
        self._stop.set()

    def _spawn(self, sockets: list[socket.socket]) -> tuple[BaseProcess, float]:
        config = dataclasses.replace(self._config, workers=1, reload=False)
        process = self._context.Process(
            target=_worker_entry,
            args=(self._app_path, config, sockets, self._count > 1),
            name="tricorn-worker",
        )
        process.start()
        error_logger.info("started worker %s", process.pid)
        return process, time.monotonic()

    def _watch(self, sockets: list[socket.socket]) -> int:
        """Keep the workers alive until told to stop; return the exit status."""
        mtimes = dict(_source_mtimes()) if self._config.reload else {}
        waiting_for_change = False
        while not self._stop.wait(_POLL):
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
            for index, (process, started) in enumerate(self._workers):
                if process.is_alive():
                    continue
                code = process.exitcode
                error_logger.error("worker %s exited with status %s", process.pid, code)
                if time.monotonic() - started < _STARTUP_GRACE and code not in (0, None):
                    if self._config.reload:
                        error_logger.info("waiting for a file change before restarting")
                        waiting_for_change = True
                        break
                    return code if code and code > 0 else EXIT_FAILURE
                self._workers[index] = self._spawn(sockets)
        return 0

    def _stop_workers(self) -> None:
        for process, _ in self._workers:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + self._config.graceful_timeout + 5.0
        for process, _ in self._workers:
            process.join(max(0.0, deadline - time.monotonic()))
            if process.is_alive():
                error_logger.warning("worker %s did not stop in time; killing it", process.pid)
                process.kill()
                process.join()
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
