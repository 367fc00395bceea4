"""What bounds an HTTP/2 peer: abuse budgets and the frame checks h2 leaves out.

The budgets are token buckets refilled over ``BUDGET_PERIOD``; the protocol
spends one per reset or control frame and ends the connection with
GOAWAY(ENHANCE_YOUR_CALM) once one is spent. Two checks look beneath h2's
public API, each pinned by tests/runtime/test_http2_abuse.py: the count of
frames h2 takes in without an event, the size a pending frame announces,
and the size of a header block still waiting for its CONTINUATIONs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

import h2.connection
import h2.events
from hyperframe.frame import Frame

__all__ = [
    "BUDGET_PERIOD",
    "Budget",
    "Clock",
    "CountingH2Connection",
    "oversized_frame_pending",
    "pending_header_block",
]

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


class CountingH2Connection(h2.connection.H2Connection):
    """h2's connection, counting the frames it takes in without an event.

    Those are frames on closed streams, which h2 ignores (RFC 9113 5.1) or
    answers with RST_STREAM; without the count a flood of them would cost
    no budget.
    """

    ignored_frames = 0

    def _receive_frame(self, frame: Frame) -> list[h2.events.Event]:
        events = super()._receive_frame(frame)
        if not events:
            self.ignored_frames += 1
        return events


def oversized_frame_pending(connection: h2.connection.H2Connection) -> bool:
    """The frame h2 is buffering announces more than SETTINGS_MAX_FRAME_SIZE.

    RFC 9113 4.2 makes that a FRAME_SIZE_ERROR; h2 says so only once the
    whole frame is buffered (up to 16 MiB), while its 9-byte header tells
    already. What h2 keeps after receive_data is one incomplete frame at most.
    """
    pending = connection.incoming_buffer._data
    return len(pending) >= 9 and int.from_bytes(pending[:3]) > connection.max_inbound_frame_size


def pending_header_block(connection: h2.connection.H2Connection) -> int:
    """Bytes of a header block h2 holds while its CONTINUATION frames come in.

    h2 caps that at 64 frames, which is 1 MiB at the default frame size but
    1 GiB at the largest SETTINGS_MAX_FRAME_SIZE (CVE-2024-27316); the
    protocol bounds it by bytes instead.
    """
    return sum(len(frame.data) for frame in connection.incoming_buffer._headers_buffer)
