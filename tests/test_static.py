"""mypy --strict and ruff are part of the test suite."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _run(*command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=300)


def test_mypy_strict_is_clean() -> None:
    result = _run(sys.executable, "-m", "mypy")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_check_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = _run(ruff, "check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_ruff_format_is_clean() -> None:
    ruff = shutil.which("ruff") or str(Path(sys.executable).with_name("ruff"))
    result = _run(ruff, "format", "--check", ".")
    assert result.returncode == 0, result.stdout + result.stderr


def test_events_and_commands_are_read_only_to_mypy(tmp_path: Path) -> None:
    # At run time they are plain slotted dataclasses (a frozen one costs five
    # times as much to make, on every request): mypy is what keeps them
    # unmutated, so it must see them as frozen.
    snippet = tmp_path / "mutates.py"
    snippet.write_text(
        "from tricorn._protocol.events import RequestReceived, SendData\n"
        "from tricorn._protocol.http1_wire import RequestHead\n"
        "request = RequestReceived(1, b'GET', b'/', '1.1', ())\n"
        "request.target = b'/admin'\n"
        "SendData(1, b'').data = b'x'\n"
        "RequestHead(b'GET', b'/', b'1.1', ()).method = b'POST'\n"
    )
    result = _run(sys.executable, "-m", "mypy", "--strict", "--no-incremental", str(snippet))
    assert result.returncode == 1, result.stdout + result.stderr
    assert result.stdout.count("is read-only") == 3, result.stdout
