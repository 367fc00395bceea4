"""Virtual time for asyncio: the event loop's clock jumps to the next timer when nothing is ready.

trio has ``MockClock(autojump_threshold=0)``; this is the same idea for
asyncio. The loop's selector first polls without blocking; if no I/O is ready
and a timer is due later, it advances the loop's clock to that timer instead of
sleeping, so a 10 s timeout fires at once and at exactly 10 s of loop time.
The clock moves only by these jumps (running code takes no time), as on trio.
With no timer at all it blocks for real (a thread or a socket will wake it).

Use it only where every wait is on the loop itself (in-memory connections, no
worker threads): a jump does not wait for a thread that is still working.
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any


class _JumpingSelector(selectors.BaseSelector):
    """A selector that turns a timed wait with nothing ready into a jump of the clock."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self._real = selectors.DefaultSelector()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = self._real.select(0)
        if ready or timeout is None or timeout <= 0:
            return ready if ready or timeout is not None else self._real.select(None)
        self._loop.advance(timeout)
        return []

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._real.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._real.modify(fileobj, events, data)

    def get_map(self) -> Any:
        return self._real.get_map()

    def close(self) -> None:
        self._real.close()


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An asyncio loop whose ``time()`` moves only by jumps (work takes no time, as on trio)."""

    def __init__(self) -> None:
        self._now = 0.0
        super().__init__(selector=_JumpingSelector(self))

    def advance(self, seconds: float) -> None:
        self._now += seconds

    def time(self) -> float:
        return self._now
