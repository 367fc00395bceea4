"""Fuzz the sans-IO HTTP/1.1 protocol: any bytes in -> events or our error.

Run it under atheris (``python fuzz/fuzz_http1.py fuzz/corpus/http1``), or
call :func:`test_one_input` from plain Python (the test suite replays the
corpus that way, without atheris).

Input layout. Bytes for the connection come from the front of the input and
every control value from the back (``FuzzedDataProvider.ConsumeIntInRange``
reads from the end), so a corpus file is readable: raw HTTP followed by a
short control trailer. Read from the last byte backwards the trailer holds:

* a flags byte (see the ``_*`` bit constants below),
* two bytes of ``h11_max_incomplete_size`` (1..4096) if ``_SMALL_HEAD``,
* two bytes of ``max_request_body_size`` (0..4096) if ``_BODY_LIMIT``,
* a byte with the number of split points (0..15) and two bytes per split
  point (the length of each chunk before the rest).

Invariants checked:

* ``receive_data`` / ``start_next_cycle`` return only protocol events, in
  the order RequestReceived, DataReceived*, StreamEnded per cycle, with
  RequestRejected / ConnectionClosed last and the protocol closed after them;
* the only exceptions are ``TricornError`` subclasses (from ``handle``);
* ``data_to_send`` is bounded: our own answers are small and an error
  response is bounded by the head size limit;
* the body handed on never exceeds ``max_request_body_size``.

Any other exception, or a failed assertion, is a crash.

The parser is ``HTTP1_PARSER`` (``TRICORN_FUZZ_HTTP1_PARSER``, default auto):
the corpus test replays every seed through h11 and through httptools.
"""

from __future__ import annotations

import os
import sys
import types
from collections.abc import Callable
from typing import Protocol

from tricorn._protocol.events import (
    ConnectionClosed,
    DataReceived,
    Event,
    RequestReceived,
    RequestRejected,
    SendData,
    SendInformational,
    StartResponse,
    StreamEnded,
)
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn.config import Config
from tricorn.errors import TricornError

# Flag bits of the control trailer's first (last-in-file) byte.
#: Which HTTP/1.1 parser the harness drives (``Config.http1_parser``).
HTTP1_PARSER = os.environ.get("TRICORN_FUZZ_HTTP1_PARSER", "auto")

_SMALL_HEAD = 0x01  # a small h11_max_incomplete_size
_BODY_LIMIT = 0x02  # a max_request_body_size
_EOF = 0x04  # end the input with EOF (b"")
_CONTINUE = 0x08  # answer "Expect: 100-continue" with a 100 first
_STOP_KEEP_ALIVE = 0x10  # stop keep-alive before the second response
_CHUNKED_RESPONSE = 0x20  # answer without content-length (chunked / close-delimited)
_EARLY_RESPONSE = 0x40  # answer on RequestReceived instead of on StreamEnded

_BODY = b"fuzz"
_DEFAULT_HEADERS = ((b"date", b"Thu, 01 Jan 1970 00:00:00 GMT"), (b"server", b"tricorn"))
#: Our own answers (head, default headers, 4-byte body, chunk framing) fit here.
_ANSWER_BOUND = 1024


class DataProvider(Protocol):
    def ConsumeIntInRange(self, low: int, high: int, /) -> int: ...
    def ConsumeBytes(self, count: int, /) -> bytes: ...
    def remaining_bytes(self) -> int: ...


class PurePythonDataProvider:
    """The ``atheris.FuzzedDataProvider`` methods this harness uses, in pure Python.

    Bytes come from the front, integers from the back (libFuzzer's
    FuzzedDataProvider), so an input decodes identically with or without
    atheris; ``tests/protocol/test_fuzz_corpus.py`` checks that.
    """

    def __init__(self, data: bytes) -> None:
        self._data = bytes(data)
        self._start = 0
        self._end = len(self._data)

    def remaining_bytes(self) -> int:
        return self._end - self._start

    def ConsumeBytes(self, count: int, /) -> bytes:
        count = max(0, min(count, self._end - self._start))
        taken = self._data[self._start : self._start + count]
        self._start += count
        return taken

    def ConsumeIntInRange(self, low: int, high: int, /) -> int:
        span = high - low
        result = 0
        offset = 0
        while offset < 64 and span >> offset > 0 and self._end > self._start:
            self._end -= 1
            result = (result << 8) | self._data[self._end]
            offset += 8
        if span != 2**64 - 1:
            result %= span + 1
        return low + result


#: Replaced by ``atheris.FuzzedDataProvider`` when run under atheris.
make_provider: Callable[[bytes], DataProvider] = PurePythonDataProvider


class _Run:
    """One connection's worth of fuzzing, with the invariants as assertions."""

    def __init__(self, flags: int, config: Config) -> None:
        self.flags = flags
        self.config = config
        self.protocol = HTTP1Protocol(config, default_headers=lambda: _DEFAULT_HEADERS)
        # An error response quotes at most the offending head, escaped (x4).
        self.output_bound = _ANSWER_BOUND + 4 * config.h11_max_incomplete_size
        self.state = "idle"  # idle -> body -> done -> (next cycle) idle; or over
        self.request: RequestReceived | None = None
        self.answered = False
        self.responses = 0
        self.body_bytes = 0
        self.stopped_keep_alive = False

    def feed(self, chunk: bytes) -> None:
        was_closed = self.protocol.closed
        events = self.protocol.receive_data(chunk)
        if was_closed:
            assert events == [], events
        self.process(events)

    def process(self, events: list[Event]) -> None:
        while True:
            for event in events:
                self.observe(event)
            self.drain()
            if self.state != "done" or not self.protocol.reusable:
                return
            if self.stopped_keep_alive:
                raise AssertionError("reusable after stop_keep_alive")
            self.state = "idle"
            self.answered = False
            self.body_bytes = 0
            events = self.protocol.start_next_cycle()

    def observe(self, event: Event) -> None:
        assert self.state != "over", f"{event!r} after the connection ended"
        match event:
            case RequestReceived():
                assert self.state == "idle", f"request head in state {self.state}"
                self.state = "body"
                if self.flags & _EARLY_RESPONSE:
                    self.answer(event)
                self.request = event
            case DataReceived(data=data):
                assert self.state == "body", f"body data in state {self.state}"
                assert data, "empty DataReceived"
                self.body_bytes += len(data)
                limit = self.config.max_request_body_size
                assert limit is None or self.body_bytes <= limit, "body past the limit"
            case StreamEnded():
                assert self.state == "body", f"stream end in state {self.state}"
                self.state = "done"
                if not self.answered:
                    assert self.request is not None
                    self.answer(self.request)
            case RequestRejected(status_code=status):
                assert 400 <= status < 600, status
                assert self.protocol.closed
                self.state = "over"
            case ConnectionClosed():
                assert self.protocol.closed
                self.state = "over"
            case _:
                raise AssertionError(f"not an event: {event!r}")

    def answer(self, request: RequestReceived) -> None:
        self.answered = True
        if self.protocol.closed:
            return
        try:
            if request.expects_continue and self.flags & _CONTINUE:
                self.protocol.handle(SendInformational(1, 100))
            if self.responses == 1 and self.flags & _STOP_KEEP_ALIVE:
                self.protocol.stop_keep_alive()
                self.stopped_keep_alive = True
            headers = () if self.flags & _CHUNKED_RESPONSE else ((b"content-length", b"4"),)
            self.protocol.handle(StartResponse(1, 200, headers))
            self.protocol.handle(SendData(1, _BODY, end_stream=True))
        except TricornError:
            # Only ClientDisconnected can be right here: our answers are valid.
            assert self.protocol.closed
            self.state = "over"
        self.responses += 1
        assert self.protocol.response_complete or self.protocol.closed

    def drain(self) -> None:
        out = self.protocol.data_to_send()
        assert len(out) <= self.output_bound, f"{len(out)} bytes queued at once"
        if out:
            assert out.startswith(b"HTTP/1.1 "), out[:40]


def test_one_input(data: bytes) -> None:
    provider = make_provider(data)
    flags = provider.ConsumeIntInRange(0, 255)
    options: dict[str, int] = {}
    if flags & _SMALL_HEAD:
        options["h11_max_incomplete_size"] = provider.ConsumeIntInRange(1, 4096)
    if flags & _BODY_LIMIT:
        options["max_request_body_size"] = provider.ConsumeIntInRange(0, 4096)
    splits = [
        provider.ConsumeIntInRange(0, 65535) for _ in range(provider.ConsumeIntInRange(0, 15))
    ]
    stream = provider.ConsumeBytes(provider.remaining_bytes())

    chunks = []
    for size in splits:
        chunks.append(stream[:size])
        stream = stream[size:]
    chunks.append(stream)

    run = _Run(flags, Config(http1_parser=HTTP1_PARSER, **options))  # type: ignore[arg-type]
    for chunk in chunks:
        if chunk:  # b"" means EOF; that only comes when the flag says so
            run.feed(chunk)
    if flags & _EOF:
        run.feed(b"")
    if run.protocol.closed:
        assert run.protocol.receive_data(b"GET / HTTP/1.1\r\nhost: a\r\n\r\n") == []


#: Coverage feedback comes from these modules only; instrumenting everything
#: tricorn pulls in (anyio, asyncio, ssl ...) costs a quarter of a minute.
_INSTRUMENTED = ("tricorn._protocol", "h11", __name__)


def fuzz(harness: types.ModuleType, instrumented: tuple[str, ...]) -> None:
    """Fuzz ``harness.test_one_input`` with atheris, its coverage taken from ``instrumented``.

    The harness's ``make_provider`` becomes atheris's data provider.
    """
    import gc

    import atheris

    harness.make_provider = atheris.FuzzedDataProvider
    for obj in gc.get_objects():
        if isinstance(obj, types.FunctionType) and (obj.__module__ or "").startswith(instrumented):
            atheris.instrument_func(obj)
    atheris.Setup(sys.argv, harness.test_one_input)
    atheris.Fuzz()


def main() -> None:
    fuzz(sys.modules[__name__], _INSTRUMENTED)


if __name__ == "__main__":
    main()
