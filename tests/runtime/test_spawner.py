"""The transport's spawner: the group every exchange task starts in (see transport.Spawner).

It stands in for anyio's ``start_soon`` on the request path, so it must keep
a task group's promises on every backend: the block waits for its tasks, a
cancelled scope around it cancels them (once, letting a task answer its
cancellation), an error in one cancels the others and comes out of the block,
and each task starts with a copy of the spawning task's context.
"""

from __future__ import annotations

import contextvars

import anyio
import pytest

from tricorn._runtime.transport import open_spawner

pytestmark = pytest.mark.anyio

_REQUEST: contextvars.ContextVar[str] = contextvars.ContextVar("request", default="none")


async def test_the_block_waits_for_its_tasks() -> None:
    finished: list[int] = []
    release = anyio.Event()

    async def task(number: int) -> None:
        await release.wait()
        finished.append(number)

    async with anyio.create_task_group() as tg, open_spawner() as spawner:
        for number in range(3):
            spawner.spawn(task, number, name=f"task {number}")
        tg.start_soon(_set_when_all_blocked, release)
    assert sorted(finished) == [0, 1, 2]


async def _set_when_all_blocked(event: anyio.Event) -> None:
    await anyio.wait_all_tasks_blocked()
    event.set()


async def test_cancelling_the_scope_around_it_cancels_its_tasks_and_lets_them_clean_up() -> None:
    cleaned: list[str] = []
    started = anyio.Event()

    async def stubborn() -> None:
        try:
            started.set()
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            # What an exchange does at a forced shutdown: answer, shielded.
            with anyio.CancelScope(shield=True):
                await anyio.lowlevel.checkpoint()
                await anyio.lowlevel.checkpoint()
                cleaned.append("answered")
            raise

    with anyio.CancelScope() as scope:
        async with open_spawner() as spawner:
            spawner.spawn(stubborn, name="stubborn")
            await started.wait()
            scope.cancel()
            await anyio.sleep_forever()
    assert scope.cancelled_caught
    assert cleaned == ["answered"]


async def test_a_deadline_on_the_scope_around_it_cancels_a_task_left_running() -> None:
    # An orphaned HTTP/1.1 app: the connection's task group gets a deadline
    # while its body already waits in the spawner's exit.
    cancelled: list[bool] = []

    async def endless() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(True)
            raise

    async with anyio.create_task_group() as tg, open_spawner() as spawner:
        spawner.spawn(endless, name="endless")
        await anyio.wait_all_tasks_blocked()
        tg.cancel_scope.deadline = anyio.current_time()
    assert tg.cancel_scope.cancelled_caught
    assert cancelled == [True]


@pytest.mark.parametrize("lasting", [False, True])
async def test_an_error_in_one_task_cancels_the_others_and_leaves_the_block(
    lasting: bool,
) -> None:
    # lasting: a connection's task, whose books a done callback keeps.
    cancelled: list[str] = []

    async def failing() -> None:
        await anyio.wait_all_tasks_blocked()
        raise ValueError("boom")

    async def bystander() -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append("bystander")
            raise

    async def run_both() -> None:
        async with open_spawner() as spawner:
            spawner.spawn(bystander, name="bystander", lasting=lasting)
            spawner.spawn(failing, name="failing", lasting=lasting)

    with pytest.raises((ValueError, BaseExceptionGroup)) as caught:
        await run_both()
    error = caught.value
    if isinstance(error, BaseExceptionGroup):  # trio's nursery groups its errors
        matched, _ = error.split(ValueError)
        assert matched is not None
    assert cancelled == ["bystander"]


async def test_each_task_starts_with_a_copy_of_the_spawning_context() -> None:
    seen: list[str] = []

    async def request(name: str) -> None:
        seen.append(_REQUEST.get())
        _REQUEST.set(name)  # stays in this task: the next one must not see it

    async with open_spawner() as spawner:
        _REQUEST.set("connection")
        spawner.spawn(request, "first", name="first")
        await anyio.wait_all_tasks_blocked()
        spawner.spawn(request, "second", name="second")
    assert seen == ["connection", "connection"]
    assert _REQUEST.get() == "connection"


async def test_cancel_cancels_the_groups_tasks() -> None:
    # How an HTTP/1.1 app left running by a client that is gone is stopped,
    # once reading is over and the block only waits for it.
    cancelled: list[str] = []

    async def task(name: str) -> None:
        try:
            await anyio.sleep_forever()
        except anyio.get_cancelled_exc_class():
            cancelled.append(name)
            raise

    with anyio.CancelScope() as outer:
        async with open_spawner() as spawner:
            spawner.spawn(task, "app", name="app")
            spawner.spawn(task, "writer", name="writer")
            await anyio.wait_all_tasks_blocked()
            spawner.cancel()
    assert sorted(cancelled) == ["app", "writer"]
    assert not outer.cancelled_caught  # the scope around the group is not touched


@pytest.mark.parametrize("lasting", [False, True])
async def test_a_task_cancelled_before_its_first_step_does_not_hold_the_block(
    lasting: bool,
) -> None:
    # A forced shutdown just after a request arrived: its task is cancelled
    # before it ever ran (on asyncio nothing of its body runs then), and yet
    # the block must see it gone rather than wait for it forever.
    async def task() -> None:
        await anyio.sleep_forever()

    # Failing, this hangs in the block's exit (pytest-timeout ends it).
    with anyio.CancelScope() as outer:
        async with open_spawner() as spawner:
            spawner.spawn(task, name="never started", lasting=lasting)
            spawner.cancel()
    with anyio.CancelScope() as around:
        async with open_spawner() as spawner:
            spawner.spawn(task, name="never started either", lasting=lasting)
            around.cancel()
        await anyio.lowlevel.checkpoint()
    assert around.cancelled_caught
    assert not outer.cancelled_caught


async def test_a_failing_task_leaves_no_unretrieved_error_behind() -> None:
    async def failing() -> None:
        raise KeyError("gone")

    with pytest.raises((KeyError, BaseExceptionGroup)):
        async with open_spawner() as spawner:
            spawner.spawn(failing, name="failing")
