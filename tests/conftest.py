"""Shared test fixtures: every anyio test runs on asyncio, asyncio+uvloop and trio.

TRICORN_TEST_BACKENDS=trio (or a comma-separated list) narrows the set.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest

_ALL = {
    "asyncio": ("asyncio", {}),
    "uvloop": ("asyncio", {"use_uvloop": True}),
    "trio": ("trio", {}),
}


def _selected() -> list[str]:
    names = [n for n in os.environ.get("TRICORN_TEST_BACKENDS", "").split(",") if n]
    names = names or list(_ALL)
    if importlib.util.find_spec("uvloop") is None and "uvloop" in names:
        names.remove("uvloop")
    return names


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "mock_clock: on trio, run with MockClock(autojump_threshold=0); time jumps "
        "to the next deadline whenever every task waits (use with in-memory connections)",
    )


@pytest.fixture(params=_selected())
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    name, options = _ALL[request.param]
    if name == "trio" and request.node.get_closest_marker("mock_clock") is not None:
        import trio.testing

        options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
    return name, options


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """The worker class that matches the current anyio backend."""
    name: str = request.node.callspec.params["anyio_backend"]
    return name


@pytest.fixture
def virtual_time(backend_name: str, request: pytest.FixtureRequest) -> bool:
    """Whether time is trio's MockClock here, so elapsed times are exact."""
    return backend_name == "trio" and request.node.get_closest_marker("mock_clock") is not None


@asynccontextmanager
async def running_server(app: Any, **options: Any) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yield ``host:port``; shut down on exit.

    Keyword options are Config keys (e.g. ``keep_alive_timeout=0.5``).
    """
    import anyio

    import tricorn

    options.setdefault("bind", ("127.0.0.1:0",))
    options.setdefault("access_log", False)
    config = tricorn.Config(**options)
    async with anyio.create_task_group() as task_group:
        addresses = await task_group.start(tricorn.serve, app, config)
        try:
            yield addresses[0]
        finally:
            task_group.cancel_scope.cancel()
