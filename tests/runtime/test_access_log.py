"""The access log: one line per request on ``tricorn.access``, and only when configured."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from ._memory import memory_server
from ._support import ok_app, request

pytestmark = pytest.mark.anyio


@pytest.fixture
def access_records() -> Iterator[list[logging.LogRecord]]:
    """Records on ``tricorn.access``, with the logger enabled as a host program might."""
    records: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    logger = logging.getLogger("tricorn.access")
    handler = Collect(logging.DEBUG)
    saved = logger.level
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved)


async def test_access_log_writes_one_line_per_request(
    access_records: list[logging.LogRecord],
) -> None:
    async with memory_server(ok_app, access_log=True) as srv, srv.client() as client:
        await client.send(request(target="/path?q=1"))
        await client.response()
        await client.send(request(target="/other"))
        await client.response()
    lines = [record.getMessage() for record in access_records]
    assert len(lines) == 2
    assert '"GET /path?q=1 HTTP/1.1" 200' in lines[0]
    assert '"GET /other HTTP/1.1" 200' in lines[1]


async def test_access_log_records_500_for_a_failing_app(
    access_records: list[logging.LogRecord],
) -> None:
    async def app(scope: Any, receive: Any, send: Any) -> None:
        raise RuntimeError("boom")

    async with memory_server(app, access_log=True) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
    assert len(access_records) == 1
    assert '" 500 ' in access_records[0].getMessage()


async def test_access_log_off_writes_nothing_even_when_the_logger_is_enabled(
    access_records: list[logging.LogRecord],
) -> None:
    async with memory_server(ok_app, access_log=False) as srv, srv.client() as client:
        await client.send(request())
        await client.response()
    assert access_records == []
