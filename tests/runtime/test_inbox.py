"""The Inbox between the read loop and an app: first in, first out, whatever the pace.

Its list is read from a moving head and shortened now and then (an empty
deque would cost every exchange 600 bytes), so the order and the ``ready`` /
``full`` answers are checked against a plain model over any interleaving of
puts and gets.
"""

from __future__ import annotations

import collections

import anyio
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tricorn._runtime.exchange import Inbox


@settings(max_examples=200, deadline=None)
@given(
    steps=st.lists(st.tuples(st.booleans(), st.integers(0, 5)), max_size=300),
    max_items=st.integers(1, 8),
    max_bytes=st.integers(0, 20),
)
def test_inbox_hands_out_messages_in_order_and_says_when_it_is_full(
    steps: list[tuple[bool, int]], max_items: int, max_bytes: int
) -> None:
    async def run() -> None:
        inbox = Inbox(max_items, max_bytes)
        model: collections.deque[tuple[int, int]] = collections.deque()
        serial = 0
        for put, size in steps:
            if put:
                inbox.put_nowait({"serial": serial}, size)
                model.append((serial, size))
                serial += 1
            elif model:
                expected, _ = model.popleft()
                message = await inbox.get()
                assert message == {"serial": expected}
            waiting = sum(size for _, size in model)
            assert inbox.ready == bool(model)
            assert inbox.full == (len(model) >= max_items or (bool(model) and waiting >= max_bytes))
        inbox.close(keep=True)
        for expected, _ in model:
            assert await inbox.get() == {"serial": expected}
        assert await inbox.get() is None

    anyio.run(run)


@pytest.mark.anyio
async def test_a_waiting_get_wakes_for_the_next_message_and_for_close() -> None:
    inbox = Inbox()
    got: list[object] = []

    async def take(count: int) -> None:
        for _ in range(count):
            got.append(await inbox.get())

    async with anyio.create_task_group() as tasks:
        tasks.start_soon(take, 2)
        await anyio.wait_all_tasks_blocked()
        inbox.put_nowait({"n": 1})
        await anyio.wait_all_tasks_blocked()
        assert got == [{"n": 1}]
        inbox.close()
    assert got == [{"n": 1}, None]
