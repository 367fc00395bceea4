"""One worker process: load the app, serve it until told to stop.

Alone (no supervisor) it answers SIGINT and SIGTERM itself. Under the
supervisor (see ``_supervisor.py``) it serves the sockets the supervisor
bound, and talks to it over a pipe: "ready" once lifespan startup completed
and its listeners serve, "alive" every few seconds from its event loop (a
loop that blocks stops saying it, and the supervisor replaces the worker),
and "retire" once it has served ``max_requests``; the supervisor asks it on
the same pipe to shut down gracefully, or to stop now. A worker whose
supervisor is gone sees the pipe close and shuts down.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import os
import random
import signal
import socket
import sys
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any, Final, NoReturn

import anyio

from . import __version__
from ._asgi.app import load_app
from ._asgi.types import ASGI3App
from ._runtime.logging import configure_logging, error_logger
from ._runtime.serve import Server
from ._systemd import Notifier
from .config import Config
from .errors import AppLoadError, BindError, LifespanFailure

__all__ = [
    "ALIVE",
    "EXIT_FAILURE",
    "EXIT_STARTUP",
    "EXIT_USAGE",
    "READY",
    "RETIRE",
    "ACCEPT",
    "SHUTDOWN",
    "STOP_NOW",
    "fail",
    "heartbeat_interval",
    "run_worker",
    "summary",
]

#: Exit statuses: 1 the app could not be loaded or served, 2 bad usage or
#: configuration (argparse's own convention), 3 lifespan startup failed.
EXIT_FAILURE: Final = 1
EXIT_USAGE: Final = 2
EXIT_STARTUP: Final = 3

#: Worker -> supervisor.
READY: Final = b"ready"
ALIVE: Final = b"alive"
RETIRE: Final = b"retire"
#: Supervisor -> worker. ACCEPT: every worker is ready (or, later, this one
#: is): take connections from the shared listeners now.
ACCEPT: Final = b"accept"
SHUTDOWN: Final = b"shutdown"
STOP_NOW: Final = b"stop now"

#: Signals meant for the supervisor: a worker leaves them alone, so that one
#: sent to the whole process group (a terminal's hangup, a Ctrl+C) does not
#: stop or kill the workers behind the supervisor's back.
_SUPERVISOR_SIGNALS: Final = (signal.SIGINT, signal.SIGHUP, signal.SIGTTIN, signal.SIGTTOU)


def fail(status: int, message: str) -> NoReturn:
    print(f"tricorn: error: {message}", file=sys.stderr)
    raise SystemExit(status)


def heartbeat_interval(timeout: float) -> float:
    """How often a worker says "alive": a few times within ``timeout``, at least every 5 s."""
    return min(5.0, timeout / 4)


def summary(config: Config, pids: list[int], *, supervisor: int | None = None) -> str:
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
        for signum in _SUPERVISOR_SIGNALS:
            signal.signal(signum, signal.SIG_IGN)
        signals = (signal.SIGTERM,)
        config = dataclasses.replace(
            config, bind=tuple(f"fd://{sock.detach()}" for sock in sockets)
        )
    if supervisor is not None and config.max_requests:
        # This worker's own limit, so that workers started together retire apart.
        jitter = random.randint(0, config.max_requests_jitter)
        config = dataclasses.replace(
            config, max_requests=config.max_requests + jitter, max_requests_jitter=0
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
        error = leaf(exc)
        if isinstance(error, LifespanFailure):
            fail(EXIT_STARTUP, f"lifespan startup failed: {error}")
        if isinstance(error, BindError):
            fail(EXIT_FAILURE, str(error))
        if isinstance(error, KeyboardInterrupt):
            return
        raise


def leaf(error: BaseException) -> BaseException:
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


def _tell(supervisor: Connection, message: bytes) -> None:
    with contextlib.suppress(OSError):  # it is gone; _obey_supervisor shuts us down
        supervisor.send_bytes(message)


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
    on_max_requests: Callable[[], None] | None = None
    if supervisor is not None and config.max_requests:
        pipe = supervisor

        def on_max_requests() -> None:
            error_logger.info(
                "worker %s served %d requests (max_requests), asking to be replaced",
                os.getpid(),
                config.max_requests,
            )
            _tell(pipe, RETIRE)

    accept = anyio.Event()
    if supervisor is None:
        accept.set()
    server = Server(
        app,
        config,
        announce=supervisor is None,
        # Under a supervisor, it serves the sum of every worker's metrics.
        metrics_endpoint=supervisor is None,
        on_max_requests=on_max_requests,
        # Each worker binds the QUIC ports itself, beside the others.
        reuse_port=supervisor is not None,
        # The shared listeners are taken from once the supervisor says so:
        # at start-up, when every worker's lifespan startup is done.
        accept_after=accept,
    )
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
                            if config.gc_freeze:
                                # The app and its startup are in place: what
                                # is alive now stays, so the collector's full
                                # passes need not walk it again and again.
                                gc.freeze()
                            if supervisor is None:
                                error_logger.info(summary(config, [os.getpid()]))
                                notifier.ready(f"serving on {', '.join(addresses)}")
                            else:
                                _tell(supervisor, READY)
                finally:
                    task_group.cancel_scope.cancel()  # stop listening for signals

            task_group.start_soon(run)
            if notifier.watchdog_due_in() is not None:
                task_group.start_soon(_ping_watchdog, notifier)
            if supervisor is not None:
                task_group.start_soon(_obey_supervisor, supervisor, shut_down, stop_now, accept)
                if config.timeout_worker_healthcheck:
                    interval = heartbeat_interval(config.timeout_worker_healthcheck)
                    task_group.start_soon(_heartbeat, supervisor, interval)
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


async def _heartbeat(supervisor: Connection, interval: float) -> None:
    """ "alive" from the event loop itself: a loop that blocks stops saying it."""
    while True:
        _tell(supervisor, ALIVE)
        await anyio.sleep(interval)


async def _obey_supervisor(
    supervisor: Connection,
    shut_down: Callable[[str], None],
    stop_now: Callable[[str], None],
    accept: anyio.Event,
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
        if message == ACCEPT:
            accept.set()
        elif message == SHUTDOWN:
            shut_down(f"worker {os.getpid()} asked by the supervisor")
        elif message == STOP_NOW:
            stop_now(f"worker {os.getpid()} asked by the supervisor to stop now")
