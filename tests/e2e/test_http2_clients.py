"""HTTP/2 with real clients: curl (upgrade and prior knowledge), nghttp, httpx.

curl and nghttp come from Debian (curl, nghttp2-client); without them these
tests skip, except under CI=true, where .ci/run installs them and a missing
one is a failure.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import anyio
import httpx
import pytest

from tests.conftest import running_server

from .test_frameworks import _probe

pytestmark = pytest.mark.anyio


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian: curl, nghttp2-client)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    return path


async def _run(*args: str) -> str:
    with anyio.fail_after(20):
        result = await anyio.run_process(list(args), check=False)
    assert result.returncode == 0, result.stderr.decode()
    return result.stdout.decode()


async def test_curl_http2_upgrades_from_http1_with_a_body(tmp_path: Path) -> None:
    curl = _tool("curl")
    upload = tmp_path / "upload.bin"
    data = bytes(range(256)) * 100  # within the 64 KiB read before switching
    upload.write_bytes(data)
    async with running_server(_probe) as address:
        out = await _run(
            curl,
            "-sS",
            "--max-time",
            "10",
            "--http2",
            "--data-binary",
            f"@{upload}",
            "-w",
            "\n%{http_version}",
            f"http://{address}/up",
        )
    body, version = out.rsplit("\n", 1)
    answer = json.loads(body)
    assert version == "2"
    assert answer["http_version"] == "2"
    assert answer["method"] == "POST"
    assert answer["sha256"] == hashlib.sha256(data).hexdigest()


async def test_curl_http2_prior_knowledge() -> None:
    curl = _tool("curl")
    async with running_server(_probe) as address:
        out = await _run(
            curl,
            "-sS",
            "--max-time",
            "10",
            "--http2-prior-knowledge",
            "-w",
            "\n%{http_version}",
            f"http://{address}/pk?x=1",
        )
    body, version = out.rsplit("\n", 1)
    assert version == "2"
    assert json.loads(body)["path"] == "/pk"


async def test_h2c_upgrade_and_prior_knowledge_can_be_turned_off() -> None:
    curl = _tool("curl")
    async with running_server(_probe, h2c_upgrade=False) as address:
        out = await _run(curl, "-sS", "--http2", "-w", "\n%{http_version}", f"http://{address}/")
    assert out.rsplit("\n", 1)[1] == "1.1"
    async with (
        running_server(_probe, h2c_prior_knowledge=False) as address,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):
        with pytest.raises(httpx.HTTPError):
            await client.get(f"http://{address}/")


async def test_nghttp_multiplexes_requests_on_one_connection() -> None:
    nghttp = _tool("nghttp")
    async with running_server(_probe) as address:
        out = await _run(
            nghttp,
            "-nv",
            "-t",
            "10",
            f"http://{address}/a",
            f"http://{address}/b",
            f"http://{address}/c",
        )
    # Three responses on streams 13, 15, 17 of one connection, then GOAWAY.
    assert out.count(":status: 200") == 3
    assert "send GOAWAY" in out
    assert "SETTINGS_ENABLE_CONNECT_PROTOCOL(0x08):1" in out


async def test_httpx_runs_many_concurrent_streams_on_one_connection() -> None:
    results: list[httpx.Response] = []
    async with (
        running_server(_probe) as address,
        httpx.AsyncClient(http1=False, http2=True) as client,
    ):

        async def one(n: int) -> None:
            results.append(await client.post(f"http://{address}/{n}", content=b"x" * n))

        async with anyio.create_task_group() as group:
            for n in range(50):
                group.start_soon(one, n * 1000)
    assert len(results) == 50
    assert all(r.http_version == "HTTP/2" and r.status_code == 200 for r in results)
    sizes = sorted(json.loads(r.text)["size"] for r in results)
    assert sizes == [n * 1000 for n in range(50)]
