"""The runnable examples in docs/examples do what their docstrings promise."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e._server_process import clean_environ

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples"


@pytest.mark.parametrize("name", ["serve_trio.py", "serve_asyncio.py"])
def test_example_serves_a_request_and_exits_0(name: str, tmp_path: Path) -> None:
    example = EXAMPLES / name
    if not example.exists():
        pytest.skip(f"{example} does not exist yet")
    result = subprocess.run(
        [sys.executable, str(example)],
        cwd=tmp_path,
        env=clean_environ(),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=45,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert re.search(r"^200\b", result.stdout, re.MULTILINE), result.stdout
    assert "Traceback" not in result.stderr
