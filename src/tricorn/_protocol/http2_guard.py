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

from .events import Event

__all__ = ["BUDGET_PERIOD", "Budget", "Clock", "Stillborn"]

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


class Stillborn:
    """Streams opened and reset within one batch of input: they never reach an app.

    Such a stream (a rapid reset, or a request followed by a fault that resets
    it) is gone before its app could run: starting an app only to cancel it is
    work an attacker gets for free, and an app that ignores the cancellation
    would outlive its stream. HTTP/2 and HTTP/3 keep these books alike: a
    stream is *announced* when its RequestReceived joins the batch's events;
    if it is *lost* before the batch is handed on, its events are taken out.
    """

    __slots__ = ("_announcing", "_stillborn")

    def __init__(self) -> None:
        self._announcing: set[int] = set()
        self._stillborn: set[int] = set()

    def begin(self) -> None:
        """A new batch of input starts."""
        self._announcing.clear()
        self._stillborn.clear()

    def announced(self, stream_id: int) -> None:
        self._announcing.add(stream_id)

    def lost(self, stream_id: int) -> bool:
        """The stream was reset: True if its request is still in this batch (stillborn)."""
        if stream_id not in self._announcing:
            return False
        self._announcing.discard(stream_id)
        self._stillborn.add(stream_id)
        return True

    def take_out(self, events: list[Event]) -> tuple[list[Event], list[Event]]:
        """The batch's events without the stillborn streams', and the ones taken out."""
        self._announcing.clear()
        if not self._stillborn:
            return events, []
        stillborn, self._stillborn = self._stillborn, set()
        kept: list[Event] = []
        dropped: list[Event] = []
        for event in events:
            (dropped if getattr(event, "stream_id", None) in stillborn else kept).append(event)
        return kept, dropped
