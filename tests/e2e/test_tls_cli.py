"""HTTPS from the ``tricorn`` command: certificate errors and a real curl client.

Certificates come from a throwaway trustme CA written to ``tmp_path``.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
import trustme
from cryptography.hazmat.primitives import serialization

from tests.e2e._server_process import ServerProcess, clean_environ, run_cli, server_processes

DEMO = "tricorn.demo:app"
LOCAL = ("-b", "127.0.0.1:0")


@pytest.fixture
def certificates(tmp_path: Path) -> tuple[Path, Path]:
    """(server.pem with key and chain, ca.pem) in ``tmp_path``."""
    ca = trustme.CA()
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(
        str(tmp_path / "server.pem")
    )
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    return tmp_path / "server.pem", tmp_path / "ca.pem"


@pytest.fixture
def started() -> Iterator[list[ServerProcess]]:
    with server_processes() as processes:
        yield processes


def _stderr_lines(result: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in result.stderr.splitlines() if line.strip()]


@pytest.mark.parametrize(
    ("args", "env", "named"),
    [
        pytest.param(("--certfile", "missing.pem"), {}, "--certfile", id="flag"),
        pytest.param((), {"TRICORN_CERTFILE": "missing.pem"}, "TRICORN_CERTFILE", id="env"),
    ],
)
def test_a_missing_certfile_exits_2_with_one_line_naming_it(
    tmp_path: Path, args: tuple[str, ...], env: dict[str, str], named: str
) -> None:
    result = run_cli([DEMO, *LOCAL, *args], cwd=tmp_path, env=clean_environ(**env))
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "serving on" not in result.stderr
    lines = [line for line in _stderr_lines(result) if "certfile" in line.lower()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith(f"tricorn: error: {named}: ")
    assert "missing.pem" in lines[0]
    assert "No such file" in lines[0]


def test_a_wrong_key_password_exits_2_naming_the_password_option(
    tmp_path: Path, certificates: tuple[Path, Path]
) -> None:
    server_pem, _ = certificates
    key = serialization.load_pem_private_key(server_pem.read_bytes(), None)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"right"),
        )
    )
    args = ["--certfile", "server.pem", "--keyfile", "key.pem"]
    env = clean_environ(TRICORN_KEYFILE_PASSWORD="wrong")
    result = run_cli([DEMO, *LOCAL, *args], cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "TRICORN_KEYFILE_PASSWORD: cannot decrypt" in result.stderr


def test_serves_https_to_curl(
    tmp_path: Path, certificates: tuple[Path, Path], started: list[ServerProcess]
) -> None:
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl is not installed, and this test is about a real client")
    server = ServerProcess([DEMO, *LOCAL, "--certfile", "server.pem"], cwd=tmp_path)
    started.append(server)
    server.wait_for_line(r"serving on https://\S+")
    port = server.addresses()[0].rpartition(":")[2]
    result = subprocess.run(
        [curl, "-sS", "--http1.1", "--cacert", "ca.pem", f"https://localhost:{port}/scope"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert result.returncode == 0, result.stderr + server.stderr
    scope = json.loads(result.stdout)
    assert scope["scheme"] == "https"
    assert scope["http_version"] == "1.1"
    tls = scope["extensions"]["tls"]
    assert tls["tls_version"] == 0x0304
    assert tls["server_cert"].startswith("-----BEGIN CERTIFICATE-----")
    assert tls["client_cert_chain"] == []
