"""The ``tricorn`` command in a subprocess, with its stderr read line by line.

The server is started with ``--bind 127.0.0.1:0``; the real address comes
from the "serving on http://HOST:PORT" lines it logs at info level. Every wait is
bounded.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import IO

import tricorn

#: The ``tricorn`` console script installed next to this interpreter.
TRICORN_SCRIPT = str(Path(sys.executable).with_name("tricorn"))
MODULE_COMMAND = (sys.executable, "-m", "tricorn")
SCRIPT_COMMAND = (TRICORN_SCRIPT,)

START_TIMEOUT = 20.0
STOP_TIMEOUT = 20.0

#: "serving on http://HOST:PORT" (https with TLS), or "serving on unix:PATH".
_SERVING = re.compile(r"serving on (?:https?://)?(\S+)")


#: The source tree of the tricorn these tests import, so the server in the
#: subprocess is the same code even when another checkout is installed (an
#: editable install elsewhere, or ``PYTHONPATH=src`` relative to a directory
#: the subprocess does not run in).
SOURCE_ROOT = str(Path(tricorn.__file__).resolve().parents[1])


def clean_environ(**extra: str) -> dict[str, str]:
    """This process's environment without TRICORN_* settings, plus ``extra``.

    ``PYTHONPATH`` starts with the tested tricorn's source tree.
    """
    environ = {k: v for k, v in os.environ.items() if not k.startswith("TRICORN_")}
    paths = [os.path.abspath(p) for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    environ["PYTHONPATH"] = os.pathsep.join([SOURCE_ROOT, *(p for p in paths if p != SOURCE_ROOT)])
    environ.update(extra)
    return environ


def write_module(directory: Path, name: str, source: str) -> None:
    """Write ``name.py`` into ``directory`` (the working directory of the server)."""
    (directory / f"{name}.py").write_text(textwrap.dedent(source))


class ServerProcess:
    """A running ``tricorn`` process whose stderr is collected as it arrives."""

    def __init__(
        self,
        args: Sequence[str],
        *,
        cwd: Path,
        command: Sequence[str] = MODULE_COMMAND,
        env: dict[str, str] | None = None,
        stdout: IO[str] | int = subprocess.DEVNULL,
        pass_fds: Sequence[int] = (),
    ) -> None:
        self.process = subprocess.Popen(
            [*command, *args],
            cwd=cwd,
            env=env if env is not None else clean_environ(),
            stdin=subprocess.DEVNULL,
            stdout=stdout,
            pass_fds=pass_fds,
            stderr=subprocess.PIPE,
            text=True,
            # A group of its own: close() can kill the workers of a
            # supervisor too, and a test can signal the group as a terminal's
            # Ctrl+C would.
            start_new_session=True,
        )
        self._lines: list[str] = []
        self._eof = False
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, name="tricorn-stderr", daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self._lines.append(line)
                self._changed.notify_all()
        with self._changed:
            self._eof = True
            self._changed.notify_all()

    @property
    def stderr(self) -> str:
        with self._changed:
            return "".join(self._lines)

    def wait_for_line(self, pattern: str, *, timeout: float = START_TIMEOUT) -> re.Match[str]:
        """The first stderr line matching ``pattern``; fails after ``timeout`` or at EOF."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self._changed:
            while True:
                for line in self._lines[seen:]:
                    if match := regex.search(line):
                        return match
                seen = len(self._lines)
                if self._eof:
                    raise AssertionError(
                        f"tricorn exited ({self.process.poll()}) before logging {pattern!r};"
                        f" stderr:\n{''.join(self._lines)}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"no {pattern!r} on stderr within {timeout}s; stderr:\n"
                        + "".join(self._lines)
                    )
                self._changed.wait(remaining)

    def wait_for_lines(
        self, pattern: str, count: int, *, timeout: float = START_TIMEOUT
    ) -> list[re.Match[str]]:
        """The first ``count`` stderr lines matching ``pattern``; fails after ``timeout`` or EOF."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m for line in self._lines if (m := regex.search(line))]
                if len(found) >= count:
                    return found[:count]
                if self._eof:
                    raise AssertionError(
                        f"tricorn exited ({self.process.poll()}) after {len(found)} of {count}"
                        f" {pattern!r} lines; stderr:\n{''.join(self._lines)}"
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"{len(found)} of {count} {pattern!r} lines within {timeout}s; stderr:\n"
                        + "".join(self._lines)
                    )
                self._changed.wait(remaining)

    def wait_for_eof(self, timeout: float = STOP_TIMEOUT) -> None:
        """Wait until every process that holds the stderr pipe (workers too) has closed it."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while not self._eof:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"stderr still open after {timeout}s; stderr:\n" + "".join(self._lines)
                    )
                self._changed.wait(remaining)

    def addresses(self, count: int = 1, *, timeout: float = START_TIMEOUT) -> list[str]:
        """The first ``count`` addresses the server reports it is serving on."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                found = [m.group(1) for line in self._lines if (m := _SERVING.search(line))]
                if len(found) >= count:
                    return found[:count]
                if self._eof:
                    raise AssertionError(
                        f"tricorn exited ({self.process.poll()}) before serving; stderr:\n"
                        + "".join(self._lines)
                    )
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(
                        f"tricorn did not report {count} address(es) within {timeout}s;"
                        f" stderr:\n{''.join(self._lines)}"
                    )
                self._changed.wait(remaining)

    def url(self, path: str = "/") -> str:
        return f"http://{self.addresses()[0]}{path}"

    def send_signal(self, signum: signal.Signals) -> None:
        self.process.send_signal(signum)

    def wait(self, timeout: float = STOP_TIMEOUT) -> int:
        """The exit status; fails if the process is still running after ``timeout``."""
        try:
            status = self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(
                f"tricorn still running after {timeout}s; stderr:\n{self.stderr}"
            ) from None
        self._reader.join(5)
        return status

    def send_signal_to_group(self, signum: signal.Signals) -> None:
        """Signal every process of the server, as a terminal's Ctrl+C does."""
        os.killpg(self.process.pid, signum)

    def close(self) -> None:
        # The whole group: workers left behind by a supervisor that was
        # killed would keep the stderr pipe (and their ports) open.
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(10)
        self._reader.join(5)
        if self.process.stderr is not None:
            self.process.stderr.close()


@contextmanager
def server_processes() -> Iterator[list[ServerProcess]]:
    """Collect started processes; kill whatever is still running at the end."""
    started: list[ServerProcess] = []
    try:
        yield started
    finally:
        for server in started:
            server.close()


def run_cli(
    args: Sequence[str],
    *,
    cwd: Path,
    command: Sequence[str] = MODULE_COMMAND,
    env: dict[str, str] | None = None,
    timeout: float = 30.0,
) -> subprocess.CompletedProcess[str]:
    """Run a tricorn command that is expected to end on its own."""
    return subprocess.run(
        [*command, *args],
        cwd=cwd,
        env=env if env is not None else clean_environ(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
