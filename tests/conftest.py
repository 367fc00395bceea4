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

_ALL: dict[str, tuple[str, dict[str, Any]]] = {
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
        "mock_clock: virtual time: trio runs with MockClock(autojump_threshold=0), "
        "asyncio with tests._virtual_time.VirtualTimeLoop; time jumps to the next "
        "deadline whenever every task waits (use with in-memory connections). uvloop's "
        "clock is libuv's own, so these tests do not run on uvloop",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Virtual-time tests run on asyncio and trio; uvloop's clock cannot be moved."""
    keep: list[pytest.Item] = []
    drop: list[pytest.Item] = []
    for item in items:
        callspec = getattr(item, "callspec", None)
        on_uvloop = callspec is not None and callspec.params.get("anyio_backend") == "uvloop"
        virtual = item.get_closest_marker("mock_clock") is not None
        (drop if on_uvloop and virtual else keep).append(item)
    if drop:
        config.hook.pytest_deselected(items=drop)
        items[:] = keep


@pytest.fixture(params=_selected())
def anyio_backend(request: pytest.FixtureRequest) -> Any:
    name, options = _ALL[request.param]
    if request.node.get_closest_marker("mock_clock") is not None:
        if request.param == "trio":
            import trio.testing

            options = {"clock": trio.testing.MockClock(autojump_threshold=0)}
        elif request.param == "asyncio":
            from tests._virtual_time import VirtualTimeLoop

            options = {"loop_factory": VirtualTimeLoop}
    return name, options


@pytest.fixture
def backend_name(request: pytest.FixtureRequest) -> str:
    """The worker class that matches the current anyio backend."""
    name: str = request.node.callspec.params["anyio_backend"]
    return name


@pytest.fixture
def virtual_time(backend_name: str, request: pytest.FixtureRequest) -> bool:
    """Whether time is virtual here (``mock_clock``), so elapsed times are exact."""
    return backend_name != "uvloop" and request.node.get_closest_marker("mock_clock") is not None


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
