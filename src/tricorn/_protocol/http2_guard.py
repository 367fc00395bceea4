"""What bounds an HTTP/2 peer: the abuse budgets.

The budgets are token buckets refilled over ``BUDGET_PERIOD``; the protocol
spends one per reset or control frame and ends the connection with
GOAWAY(ENHANCE_YOUR_CALM) once one is spent. The checks that need h2's
private parts (frames taken in without an event, oversized frames, header
blocks awaiting CONTINUATIONs) live in :mod:`.h2_seams`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

__all__ = ["BUDGET_PERIOD", "Budget", "Clock"]

Clock = Callable[[], float]

#: The period over which each abuse budget refills in full.
BUDGET_PERIOD: Final = 10.0


class Budget:
    """A token bucket: ``size`` tokens, refilled in full over ``BUDGET_PERIOD``."""

    __slots__ = ("_clock", "_last", "_rate", "_size", "_tokens")

    def __init__(self, size: int, clock: Clock) -> None:
        self._size = float(size)
        self._tokens = float(size)
        self._rate = size / BUDGET_PERIOD
        self._clock = clock
        self._last = clock()

    def spend(self) -> bool:
        """Take one token; False when the budget is spent."""
        now = self._clock()
        self._tokens = min(self._size, self._tokens + (now - self._last) * self._rate)
        self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True
