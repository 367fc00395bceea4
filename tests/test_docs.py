"""The Sphinx docs build without a warning (the option reference is generated from Config)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytest.importorskip("sphinx", reason="the docs need Sphinx: pip install -e '.[test]'")


def test_docs_build_with_warnings_as_errors(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "sphinx",
            "-W",
            "--keep-going",
            "-q",
            "-b",
            "html",
            str(ROOT / "docs"),
            str(tmp_path / "html"),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    reference = (tmp_path / "html" / "configuration.html").read_text()
    assert "--graceful-timeout" in reference
    assert "TRICORN_KEEP_ALIVE_TIMEOUT" in reference
