"""Logs operators can configure, through the real command: files, stdout, --log-config."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import IO

import pytest

from ._server_process import ServerProcess, run_cli, server_processes

DEMO = "tricorn.demo:app"


@pytest.fixture
def started(tmp_path: Path) -> Iterator[list[ServerProcess]]:
    with server_processes() as processes:
        yield processes


def serve_one_request(
    processes: list[ServerProcess], tmp_path: Path, *args: str, stdout: IO[str] | None = None
) -> ServerProcess:
    """Start tricorn on a socket we bound (so its logs may go anywhere), make one
    request, stop it; return the finished process."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        server = ServerProcess(
            [DEMO, "-b", f"fd://{listener.fileno()}", *args],
            cwd=tmp_path,
            pass_fds=(listener.fileno(),),
            stdout=stdout if stdout is not None else subprocess.DEVNULL,
        )
        processes.append(server)
        # The connection waits in our listener's backlog until tricorn accepts.
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/?x=1", timeout=20) as response:
            assert response.status == 200
    server.send_signal(signal.SIGTERM)
    assert server.wait() == 0
    return server


def test_access_and_error_logs_go_to_their_files_with_the_pid(
    started: list[ServerProcess], tmp_path: Path
) -> None:
    access, errors = tmp_path / "access.log", tmp_path / "error.log"
    server = serve_one_request(
        started, tmp_path, "--access-logfile", str(access), "--error-logfile", str(errors)
    )
    pid = server.process.pid
    access_lines = access.read_text().splitlines()
    assert len(access_lines) == 1
    assert '"GET /?x=1 HTTP/1.1" 200' in access_lines[0]
    assert f"[{pid}]" in access_lines[0]
    assert f"[{pid}] INFO tricorn.error: serving on " in errors.read_text()
    assert "serving on" not in server.stderr  # it all went to the file


def test_a_json_access_log_on_stdout(started: list[ServerProcess], tmp_path: Path) -> None:
    out = tmp_path / "stdout.txt"
    with out.open("w") as stdout:
        serve_one_request(
            started,
            tmp_path,
            "--access-logfile",
            "-",
            "--access-log-format",
            "json",
            stdout=stdout,
        )
    (line,) = out.read_text().splitlines()
    entry = json.loads(line)  # no prefix: the line is the JSON object
    assert (entry["method"], entry["path"], entry["query"], entry["status"]) == (
        "GET",
        "/",
        "x=1",
        200,
    )


@pytest.mark.parametrize("kind", ["json", "toml", "ini"])
def test_log_config_replaces_tricorns_logging(
    started: list[ServerProcess], tmp_path: Path, kind: str
) -> None:
    target = tmp_path / "custom.log"
    if kind == "ini":
        config = tmp_path / "logging.ini"
        config.write_text(
            "[loggers]\nkeys=root,access\n[handlers]\nkeys=file\n[formatters]\nkeys=plain\n"
            "[logger_root]\nhandlers=\n[logger_access]\nqualname=tricorn.access\n"
            "handlers=file\nlevel=INFO\npropagate=0\n"
            f"[handler_file]\nclass=FileHandler\nargs=({str(target)!r},)\nformatter=plain\n"
            "[formatter_plain]\nformat=CUSTOM %(message)s\n"
        )
    else:
        settings = {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "CUSTOM %(message)s"}},
            "handlers": {
                "file": {
                    "class": "logging.FileHandler",
                    "filename": str(target),
                    "formatter": "plain",
                }
            },
            "loggers": {
                "tricorn.access": {"handlers": ["file"], "level": "INFO", "propagate": False}
            },
        }
        config = tmp_path / f"logging.{kind}"
        if kind == "json":
            config.write_text(json.dumps(settings))
        else:
            config.write_text(
                "version = 1\ndisable_existing_loggers = false\n"
                '[formatters.plain]\nformat = "CUSTOM %(message)s"\n'
                '[handlers.file]\nclass = "logging.FileHandler"\n'
                f'filename = "{target}"\nformatter = "plain"\n'
                '[loggers."tricorn.access"]\nhandlers = ["file"]\n'
                'level = "INFO"\npropagate = false\n'
            )
    serve_one_request(started, tmp_path, "--log-config", str(config))
    (line,) = target.read_text().splitlines()
    assert line.startswith("CUSTOM ")
    assert '"GET /?x=1 HTTP/1.1" 200' in line


def test_a_broken_log_config_names_the_option(tmp_path: Path) -> None:
    config = tmp_path / "broken.json"
    config.write_text("{not json")
    result = run_cli([DEMO, "-b", "127.0.0.1:0", "--log-config", str(config)], cwd=tmp_path)
    assert result.returncode != 0
    assert "log_config" in result.stderr or "log-config" in result.stderr
