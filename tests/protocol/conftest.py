"""Every HTTP/1.1 protocol test runs over each parser: h11 (the reference) and httptools.

The modules in ``PARSED`` get an ``http1_parser`` parameter; their servers
come from ``_client.make_server`` / ``_client.http1_config``, which read it.
Without httptools the httptools runs skip, except under ``CI=true``, where a
missing httptools fails them (the ``test`` extra installs it).
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator

import pytest

from . import _client

#: The test modules that drive HTTP1Protocol, run once per parser.
PARSED = frozenset(
    {
        "test_http1",
        "test_http1_file_data",
        "test_http1_properties",
        "test_websocket",
        "test_h2c",
        "test_fuzz_corpus",
    }
)


def _parsers() -> list[object]:
    if importlib.util.find_spec("httptools") is not None or os.environ.get("CI"):
        return ["h11", "httptools"]
    skip = pytest.mark.skip(reason="httptools not installed (pip install 'tricorn[speed]')")
    return ["h11", pytest.param("httptools", marks=skip)]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if metafunc.module.__name__.rpartition(".")[2] in PARSED:
        metafunc.parametrize("http1_parser", _parsers(), indirect=True)


@pytest.fixture(autouse=True)
def http1_parser(request: pytest.FixtureRequest) -> Iterator[str]:
    """The parser this test's HTTP/1.1 servers use (h11 where not parametrised)."""
    parser: str = getattr(request, "param", "h11")
    previous, _client.PARSER = _client.PARSER, parser
    try:
        yield parser
    finally:
        _client.PARSER = previous
