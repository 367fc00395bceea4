"""The transport's Flag: what an inbox's reader waits on, once per body read or message.

It stands in for anyio's Event on that path, so it keeps the promises the
inbox relies on, on every backend: a wait ends once the flag is set (at
once if it was already), every waiter is woken, and a waiter cancelled
while it waits leaves the flag usable by the next one.
"""

from __future__ import annotations

import anyio
import pytest

from tricorn._runtime.transport import new_flag

pytestmark = pytest.mark.anyio


async def test_a_wait_ends_when_the_flag_is_set_and_at_once_after() -> None:
    flag = new_flag()
    woken: list[str] = []

    async def waiter(name: str) -> None:
        await flag.wait()
        woken.append(name)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter, "first")
        tg.start_soon(waiter, "second")
        await anyio.wait_all_tasks_blocked()
        assert woken == []
        assert not flag.is_set()
        flag.set()
    assert sorted(woken) == ["first", "second"]
    assert flag.is_set()
    await flag.wait()  # set already: no wait
    flag.set()  # setting twice is harmless


async def test_a_cancelled_waiter_leaves_the_flag_usable() -> None:
    flag = new_flag()
    with anyio.CancelScope() as scope:
        async with anyio.create_task_group() as tg:
            tg.start_soon(flag.wait)
            await anyio.wait_all_tasks_blocked()
            scope.cancel()
    assert scope.cancelled_caught
    assert not flag.is_set()
    woken: list[bool] = []

    async def waiter() -> None:
        await flag.wait()
        woken.append(True)

    async with anyio.create_task_group() as tg:
        tg.start_soon(waiter)
        await anyio.wait_all_tasks_blocked()
        flag.set()
    assert woken == [True]
