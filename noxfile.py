"""The single entry point for checks: nox -s tests | lint | typecheck | docs | fuzz | bench."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import nox

nox.options.sessions = ["tests", "lint", "typecheck", "docs"]
nox.options.reuse_venv = "yes"

BACKENDS = ["asyncio", "uvloop", "trio"]


@nox.session
def tests(session: nox.Session) -> None:
    """The whole suite, every backend (what the README's test command runs)."""
    session.install("-e", ".[test]")
    session.run("pytest", *session.posargs)


@nox.session(name="tests-backend")
@nox.parametrize("backend", BACKENDS)
def tests_backend(session: nox.Session, backend: str) -> None:
    """The runtime and end-to-end tests on one backend.

    nox -s "tests-backend(backend='trio')"
    """
    session.install("-e", ".[test]")
    session.run(
        "pytest",
        "tests/runtime",
        "tests/e2e",
        *session.posargs,
        env={"TRICORN_TEST_BACKENDS": backend},
    )


def _requirements() -> list[str]:
    """tricorn's runtime requirements and its optional extras, as pyproject.toml has them."""
    project = tomllib.loads(Path("pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    optional = ("trio", "uvloop", "speed", "h3", "metrics")
    return [*project["dependencies"], *(item for name in optional for item in extras[name])]


def _lowest(requirement: str) -> str:
    """``name>=1.2,<2; marker`` -> ``name==1.2; marker``."""
    spec, _, marker = requirement.partition(";")
    match = re.fullmatch(r"\s*([A-Za-z0-9_.-]+(?:\[[^\]]*\])?)\s*>=\s*([^,\s]+).*", spec)
    if match is None:
        raise ValueError(f"no lower bound to test in {requirement!r}")
    pinned = f"{match.group(1)}=={match.group(2)}"
    return f"{pinned}; {marker.strip()}" if marker else pinned


#: What runs at each end of the dependency ranges: everything but the
#: conformance suites, which test the protocols, not the libraries' versions.
_RANGE_TESTS = ("tests/protocol", "tests/asgi", "tests/runtime", "tests/e2e")


@nox.session(name="deps-lowest")
def deps_lowest(session: nox.Session) -> None:
    """The tests with every runtime dependency at the lowest version pyproject.toml allows."""
    session.install("-e", ".[test]")
    session.install(*[_lowest(requirement) for requirement in _requirements()])
    session.run("pip", "list")
    session.run("pytest", *_RANGE_TESTS, *session.posargs)


@nox.session(name="deps-highest")
def deps_highest(session: nox.Session) -> None:
    """The tests with every runtime dependency at the highest version pyproject.toml allows."""
    session.install("-e", ".[test]")
    session.install("--upgrade", *_requirements())
    session.run("pip", "list")
    session.run("pytest", *_RANGE_TESTS, *session.posargs)


@nox.session
def lint(session: nox.Session) -> None:
    session.install("ruff>=0.5")
    session.run("ruff", "check", ".")
    session.run("ruff", "format", "--check", ".")


@nox.session
def typecheck(session: nox.Session) -> None:
    session.install("-e", ".[test]")
    session.run("mypy")


@nox.session
def docs(session: nox.Session) -> None:
    """Build the Sphinx docs; any warning fails the build."""
    session.install("-e", ".[docs]")
    session.run("sphinx-build", "-W", "--keep-going", "-b", "html", "docs", "docs/_build/html")


@nox.session
def fuzz(session: nox.Session) -> None:
    """Run every atheris harness for a bounded time (FUZZ_SECONDS, default 60 each)."""
    session.install("-e", ".[fuzz]")
    session.run("python", "fuzz/run_all.py", *session.posargs)


@nox.session
def bench(session: nox.Session) -> None:
    """Benchmark tricorn beside Uvicorn, Hypercorn and Granian with wrk (needs Debian's wrk).

    Uvicorn gets httptools (its fast parser) and tricorn its speed extra.
    nox -s bench -- --duration 20 --rst bench.rst   (options: python bench/http1.py -h)
    nox -s bench -- --workloads post64k,get1m   (a 64 KiB upload, a 1 MiB download)
    """
    session.install("-e", ".[speed,trio]", "uvicorn", "httptools", "hypercorn", "granian")
    session.run("python", "bench/http1.py", *session.posargs)


@nox.session(name="bench-latency")
def bench_latency(session: nox.Session) -> None:
    """HTTP/1.1 p50/p99/p99.9 at fixed request rates (open loop), the same servers as bench.

    The median of 3 runs per server and rate, the runs round-robin over the servers.
    Needs Debian's nghttp2-client (apt-get install -y nghttp2-client) for h2load.
    nox -s bench-latency -- --rates 1000,4000 --repeat 5 --json latency.json
    (options: python bench/latency.py -h)
    """
    session.install("-e", ".[speed,trio]", "uvicorn", "httptools", "hypercorn", "granian")
    session.run("python", "bench/latency.py", "--repeat", "3", *session.posargs)


@nox.session(name="bench-download")
def bench_download(session: nox.Session) -> None:
    """A 100 MiB download: pathsend (sendfile) against an app's read-and-send loop.

    nox -s bench-download -- --size 100 --downloads 10   (options: python bench/download.py -h)
    """
    session.install("-e", ".[speed,trio]")
    session.run("python", "bench/download.py", *session.posargs)


@nox.session(name="bench-ws")
def bench_ws(session: nox.Session) -> None:
    """WebSocket echo msgs/s and latency, tricorn beside Uvicorn and Hypercorn.

    nox -s bench-ws -- --window 16 --json ws.json   (options: python bench/websocket.py -h)
    """
    session.install("-e", ".[uvloop,trio]", "uvicorn", "hypercorn", "websockets", "wsproto")
    session.run("python", "bench/websocket.py", *session.posargs)


@nox.session(name="bench-h2")
def bench_h2(session: nox.Session) -> None:
    """HTTP/2 req/s and latency (h2c and TLS), tricorn beside Hypercorn and Granian, with h2load.

    Needs Debian's nghttp2-client (apt-get install -y nghttp2-client) for h2load.
    nox -s bench-h2 -- --only hypercorn,granian --json h2.json   (options: python bench/http2.py -h)
    """
    session.install("-e", ".[uvloop,trio]", "hypercorn", "granian", "trustme")
    session.run("python", "bench/http2.py", *session.posargs)


@nox.session(name="bench-h3")
def bench_h3(session: nox.Session) -> None:
    """HTTP/3 req/s, latency and CPU per request, tricorn beside Hypercorn, over QUIC.

    h2load here cannot speak HTTP/3: the load client is bench/http3.py's own, on aioquic.
    nox -s bench-h3 -- --duration 10 --json h3.json   (options: python bench/http3.py -h)
    """
    session.install("-e", ".[uvloop,trio,h3]", "hypercorn[h3]", "trustme")
    session.run("python", "bench/http3.py", *session.posargs)


@nox.session(name="bench-memory")
def bench_memory(session: nox.Session) -> None:
    """Memory per idle connection (HTTP/1.1, h2c, WebSocket) and CPU per new connection.

    tricorn beside Uvicorn and Hypercorn; needs no external tool.
    nox -s bench-memory -- --connections 2000 --json memory.json
    (options: python bench/memory.py -h)
    """
    session.install("-e", ".[uvloop,trio]", "uvicorn", "hypercorn", "wsproto", "websockets", "h2")
    session.run("python", "bench/memory.py", *session.posargs)


@nox.session(name="bench-instructions")
def bench_instructions(session: nox.Session) -> None:
    """Instructions per request under valgrind's callgrind: deterministic, for before/after.

    Needs Debian's valgrind (apt-get install -y valgrind); about 11 minutes on 2 cores.
    nox -s bench-instructions -- --only tricorn --workloads hello --requests 100,600
    (options: python bench/instructions.py -h)
    """
    session.install("-e", ".[speed,trio]", "uvicorn", "httptools", "hypercorn", "granian")
    session.run("python", "bench/instructions.py", *session.posargs)


@nox.session(name="bench-report")
def bench_report(session: nox.Session) -> None:
    """Every benchmark, short (about 30 minutes on 2 cores), then the docs' tables and charts.

    Writes bench/results/*.json and docs/benchmarks/ (see docs/performance.rst). Needs
    Debian's wrk and nghttp2-client (and valgrind, else instructions is skipped).
    nox -s bench-report -- --only http1,http2
    (options: python bench/report.py -h; without --run it only rewrites the docs)
    """
    session.install(
        "-e", ".[speed,trio,h3]", "uvicorn", "httptools", "hypercorn[h3]", "granian",
        "websockets", "wsproto", "h2", "trustme",
    )  # fmt: skip
    session.run("python", "bench/report.py", "--run", *session.posargs)
