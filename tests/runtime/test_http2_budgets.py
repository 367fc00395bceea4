"""HTTP/2 abuse budgets are exact: checked per frame, not per read, through the real runtime."""

from __future__ import annotations

import h2.events
import pytest
from h2.errors import ErrorCodes
from hyperframe.frame import PingFrame

from ._h2wire import H2Wire
from ._memory import memory_server
from ._support import ok_app

pytestmark = pytest.mark.anyio

BUDGET = 50


async def test_a_ping_flood_in_one_write_gets_the_budgets_worth_of_answers() -> None:
    # 64 KiB of PINGs (3,855 frames) arrive in one read; before, every one
    # was answered before the budget could end the connection.
    ping = PingFrame(0, opaque_data=b"12345678").serialize()
    async with memory_server(ok_app, h2_max_control_frames=BUDGET) as srv:
        wire = await H2Wire.connect(srv)
        await wire.stream.send(ping * (65536 // len(ping)))
        goaway = await wire.until(lambda event: isinstance(event, h2.events.ConnectionTerminated))
        while not wire.closed:
            await wire.read()
        await wire.aclose()
    assert isinstance(goaway, h2.events.ConnectionTerminated)
    assert goaway.error_code == ErrorCodes.ENHANCE_YOUR_CALM
    answers = [event for event in wire.events if isinstance(event, h2.events.PingAckReceived)]
    assert len(answers) <= BUDGET + 1  # the PING that overdraws it is answered as it is read
