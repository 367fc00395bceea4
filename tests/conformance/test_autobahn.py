"""tricorn against the Autobahn|Testsuite fuzzing client (RFC 6455 and RFC 7692).

The ``tricorn`` command serves ``bench.ws_app`` (an echo app) on a free
loopback port and ``wstest -m fuzzingclient`` runs its cases against it; every
case must pass (see :func:`autobahn.failures` for what counts). Install wstest
with ``.ci/install-autobahn``; without it these tests are skipped, except under
``CI=true``, where a missing wstest fails them. Autobahn's HTML and JSON
reports stay in pytest's tmp dir (the path is printed on failure).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pytest

from tests.conformance import autobahn
from tests.e2e._server_process import ServerProcess, clean_environ

pytestmark = pytest.mark.slow

WSTEST = autobahn.find_wstest()

#: (cases, exclude) per wstest run. Every case, compression included, runs on
#: the default backend, in two shards served by two servers at once so that
#: both cores work (the compression groups 12 and 13 are nine tenths of the
#: time). The frame layer is sans-IO and the same on every backend, so the
#: other backends run the cases that exercise I/O: fragmentation across reads,
#: large payloads, pipelined frames, closing, and compressed traffic.
Shard = tuple[tuple[str, ...], tuple[str, ...]]
_HALF = ("12.1.*", "12.2.*", "12.3.*", "12.4.*", "13.1.*")  # about half the time
FULL: tuple[Shard, ...] = ((_HALF, ()), (("*",), _HALF))
PER_BACKEND: tuple[Shard, ...] = (
    (("1.*", "2.*", "3.*", "4.*", "5.*", "6.1.*", "6.4.*", "7.*", "9.1.*", "12.1.*"), ()),
)

#: Autobahn's 9.x cases send messages of up to 16 MiB; the server's limit
#: (16 MiB by default) must leave room for them.
MAX_MESSAGE = str(32 * 1024 * 1024)
WSTEST_TIMEOUT = 1500.0


def _wstest() -> Path:
    if WSTEST is not None:
        return WSTEST
    message = "wstest not found: run .ci/install-autobahn (or set TRICORN_WSTEST)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextmanager
def _server(backend: str) -> Iterator[ServerProcess]:
    server = ServerProcess(
        [
            "bench.ws_app:app",
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            backend,
            "--lifespan",
            "off",
            "--no-access-log",
            "--ws-max-message-size",
            MAX_MESSAGE,
        ],
        cwd=autobahn.REPO_ROOT,
        env=clean_environ(),
    )
    try:
        yield server
    finally:
        server.close()


@pytest.mark.parametrize(
    ("backend", "shards"),
    [
        pytest.param("asyncio", FULL, id="asyncio-all-cases"),
        pytest.param("uvloop", PER_BACKEND, id="uvloop"),
        pytest.param("trio", PER_BACKEND, id="trio"),
    ],
)
@pytest.mark.timeout(WSTEST_TIMEOUT + 120)
def test_autobahn_fuzzingclient_passes_every_case(
    backend: str, shards: Sequence[Shard], tmp_path: Path
) -> None:
    wstest = _wstest()
    agent = f"tricorn-{backend}"
    with ExitStack() as stack:
        servers = [stack.enter_context(_server(backend)) for _ in shards]
        addresses = [server.addresses()[0] for server in servers]
        with ThreadPoolExecutor(len(shards)) as pool:
            runs = [
                pool.submit(
                    autobahn.run_fuzzingclient,
                    wstest,
                    f"ws://{address}",
                    agent,
                    tmp_path / f"autobahn-{index}",
                    cases=cases,
                    exclude=exclude,
                    timeout=WSTEST_TIMEOUT,
                )
                for index, (address, (cases, exclude)) in enumerate(
                    zip(addresses, shards, strict=True)
                )
            ]
            results = {case: result for run in runs for case, result in run.result().items()}
    failed = autobahn.failures(results)
    assert not failed, (
        f"{len(failed)} of {len(results)} Autobahn cases failed on {backend}"
        f" (reports in {tmp_path}):\n" + "\n".join(failed)
    )
    for server in servers:
        assert " ERROR " not in server.stderr, server.stderr
        assert "Traceback" not in server.stderr, server.stderr
