"""h2spec, the HTTP/2 conformance suite (RFC 9113 / RFC 7541), against the real server.

h2spec is a Go program that neither Debian nor PyPI packages; a prebuilt
static h2spec 2.6.0 lies beside the project in ``../shared/tools/h2spec``
(see its README), found there, through ``TRICORN_H2SPEC`` or on PATH. Without
it these tests skip, except under ``CI=true``, where a missing h2spec is a
failure. Every case must pass, strict mode included, over TLS and over
cleartext with prior knowledge on a port that also serves HTTP/1.1.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import xml.etree.ElementTree as ElementTree
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
import trustme

from tests.e2e._server_process import ServerProcess, clean_environ

from . import autobahn

_SHARED_H2SPEC = autobahn.REPO_ROOT.parent / "shared" / "tools" / "h2spec" / "h2spec"

H2SPEC = (
    os.environ.get("TRICORN_H2SPEC")
    or (str(_SHARED_H2SPEC) if os.access(_SHARED_H2SPEC, os.X_OK) else None)
    or shutil.which("h2spec")
)


def _h2spec() -> str:
    if H2SPEC is None:
        message = (
            f"h2spec not found: looked for {_SHARED_H2SPEC}, TRICORN_H2SPEC and PATH "
            "(not packaged by Debian or PyPI; see docs/http2.rst)"
        )
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return H2SPEC


@contextmanager
def _server(backend: str, *tls: str) -> Iterator[ServerProcess]:
    server = ServerProcess(
        [
            "tests.conformance.h2spec_app:app",
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            backend,
            "--no-access-log",
            "--lifespan",
            "off",
            *tls,
        ],
        cwd=autobahn.REPO_ROOT,
        env=clean_environ(),
    )
    try:
        yield server
    finally:
        server.close()


def _failures(report: Path) -> list[str]:
    """The failed cases of a JUnit report, as ``http2/6.5: <description>``."""
    return [
        f"{case.get('package', '')}: {case.get('classname', '')}"
        # h2spec copies what the server sent into its messages verbatim,
        # control characters included, which XML does not allow.
        for case in ElementTree.fromstring(
            re.sub(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]", b"?", report.read_bytes())
        ).iter("testcase")
        if case.find("failure") is not None or case.find("error") is not None
    ]


def _run(h2spec: str, address: str, report: Path, *options: str) -> list[str]:
    host, port = address.rsplit(":", 1)
    result = subprocess.run(
        [h2spec, "-h", host, "-p", port, "-o", "5", "-j", str(report), *options],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    summary = re.search(r"(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed", result.stdout)
    assert summary is not None, result.stdout + result.stderr
    assert int(summary.group(1)) >= 146, summary.group(0)
    return _failures(report)


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
@pytest.mark.timeout(600)
def test_h2spec_over_tls_passes_every_case_strict_included(backend: str, tmp_path: Path) -> None:
    h2spec = _h2spec()
    ca = trustme.CA()
    cert = tmp_path / "server.pem"
    ca.issue_cert("localhost", "127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(cert))
    with _server(backend, "--certfile", str(cert)) as server:
        address = server.addresses()[0]
        failed = _run(h2spec, address, tmp_path / "tls.xml", "-t", "-k")
        failed += _run(h2spec, address, tmp_path / "strict.xml", "-t", "-k", "-S")
    assert failed == []
    assert "Traceback" not in server.stderr, server.stderr


@pytest.mark.parametrize("backend", ["asyncio", "uvloop", "trio"])
@pytest.mark.timeout(600)
def test_h2spec_over_h2c_prior_knowledge_passes_every_case(backend: str, tmp_path: Path) -> None:
    h2spec = _h2spec()
    with _server(backend) as server:
        address = server.addresses()[0]
        failed = _run(h2spec, address, tmp_path / "h2c.xml")
        failed += _run(h2spec, address, tmp_path / "strict.xml", "-S")
    assert failed == []
    assert "Traceback" not in server.stderr, server.stderr
