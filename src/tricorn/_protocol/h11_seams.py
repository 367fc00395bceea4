"""Where tricorn reaches beneath h11's public API: the chunk being read, the receive buffer.

h11 parses a chunk header and then waits for that many bytes without saying
how many it expects, so a chunk size of twenty hex digits (a number no 64-bit
proxy in front agrees on) would hold the connection waiting. Bounding it needs
the size h11 parsed. ``pyproject.toml`` bounds h11 to the versions this is
proven on, :func:`check` runs at import so that an h11 that moved it fails
loudly instead of switching the bound off, and tests/protocol/test_h11_seams.py
pins what it does.

The httptools wire (``http1_httptools``) reads request bodies with h11's own
body readers over h11's own receive buffer, so a body is framed by the same
rules whichever parser read its head; it takes heads out of that buffer whole,
which :func:`buffered` and :func:`take` do.

A request's fields are read from h11's own list of them
(:func:`header_pairs`), not through its ``Sequence`` interface, which
calls Python code per field.

Both wires take runs of whole chunks out of the buffer in one step when the
reader stands between chunks (:func:`between_chunks`), rather than one event
per chunk; for the H11Wire that needs h11's own reader and buffer
(:func:`body_reader`, :func:`receive_buffer`).
"""

from __future__ import annotations

from collections.abc import Sequence

import h11
import h11._readers
import h11._receivebuffer

__all__ = [
    "between_chunks",
    "body_left",
    "body_reader",
    "header_pairs",
    "buffered",
    "check",
    "chunk_bytes_expected",
    "chunk_bytes_left",
    "receive_buffer",
    "receive_closed",
    "take",
    "take_body",
    "take_bytes",
    "take_from_buffer",
]


def check() -> None:
    """Raise ImportError if h11 no longer has the parts :func:`chunk_bytes_expected` reads."""
    reader = h11._readers.ChunkedReader()
    missing = (
        []
        if isinstance(getattr(reader, "_bytes_in_chunk", None), int)
        else ["ChunkedReader._bytes_in_chunk"]
    )
    for name in ("_bytes_to_discard", "_reading_trailer"):
        if not hasattr(reader, name):
            missing.append(f"ChunkedReader.{name}")
    connection_attributes = vars(h11.Connection(h11.SERVER))
    for name in ("_reader", "_receive_buffer", "_receive_buffer_closed"):
        if name not in connection_attributes:
            missing.append(f"Connection.{name}")
    if not isinstance(getattr(h11._readers.ContentLengthReader(1), "_remaining", None), int):
        missing.append("ContentLengthReader._remaining")
    request = h11.Request(method="GET", target="/", headers=[("Host", "a")])
    if getattr(request.headers, "_full_items", None) != [(b"Host", b"host", b"a")]:
        missing.append("Headers._full_items")
    buffer = h11._receivebuffer.ReceiveBuffer()
    if not isinstance(getattr(buffer, "_data", None), bytearray):
        missing.append("ReceiveBuffer._data")
    if not callable(getattr(buffer, "_extract", None)):
        missing.append("ReceiveBuffer._extract")
    if missing:
        raise ImportError(
            "tricorn's chunk-size bound and httptools wire rely on h11 internals "
            "that this h11 lacks: "
            + ", ".join(missing)
            + "; install an h11 within the range pyproject.toml allows"
        )


def chunk_bytes_expected(connection: h11.Connection) -> int:
    """Bytes of the current chunk h11 has parsed the size of and not yet received (0 if none)."""
    reader = connection._reader
    if isinstance(reader, h11._readers.ChunkedReader):
        return reader._bytes_in_chunk
    return 0


def chunk_bytes_left(reader: h11._readers.ChunkedReader) -> int:
    """Bytes of the chunk ``reader`` has parsed the size of and not yet received."""
    return reader._bytes_in_chunk


def between_chunks(
    reader: h11._readers.ChunkedReader, buffer: h11._receivebuffer.ReceiveBuffer
) -> bool:
    """Whether ``reader`` waits for a chunk header (no chunk data or trailer pending).

    The CRLF that ends the chunk it last read is taken here when it is in
    ``buffer`` as h11 expects it: h11 itself would take it first thing.
    """
    if reader._bytes_in_chunk or reader._reading_trailer:
        return False
    pending = reader._bytes_to_discard
    if pending:
        if not buffer._data.startswith(pending):
            return False  # not here yet, or wrong: h11's reader says which
        buffer._extract(len(pending))
        reader._bytes_to_discard = b""
    return True


def body_reader(connection: h11.Connection) -> object:
    """The reader h11 reads the request body with (None outside a body)."""
    return connection._reader


def receive_buffer(connection: h11.Connection) -> h11._receivebuffer.ReceiveBuffer:
    """The buffer h11 parses from."""
    return connection._receive_buffer


def receive_closed(connection: h11.Connection) -> bool:
    """Whether the peer closed its side (what ``trailing_data`` says, without its copy)."""
    return connection._receive_buffer_closed


def buffered(buffer: h11._receivebuffer.ReceiveBuffer) -> bytearray:
    """The bytes ``buffer`` holds, not copied: read them, never change them."""
    return buffer._data


def take_body(reader: h11._readers.ContentLengthReader, data: bytes) -> tuple[bytes, bytes]:
    """Read body bytes straight from ``data``, as ``reader`` would from a buffer holding it.

    Returns the part of ``data`` the body still expects (``data`` itself,
    not a copy, when the body takes all of it) and what follows it, and
    counts the part as read. For a reader whose buffer is empty: a request
    body arriving read by read is handed on without a copy per step.
    """
    left = reader._remaining
    if len(data) <= left:
        reader._remaining = left - len(data)
        return data, b""
    reader._remaining = 0
    return data[:left], data[left:]


def header_pairs(headers: Sequence[tuple[bytes, bytes]]) -> tuple[tuple[bytes, bytes], ...]:
    """h11's headers as (lower-case name, value) pairs, read from its own list.

    Iterating h11's ``Headers`` goes through ``Sequence.__iter__``, a Python
    generator calling ``__getitem__`` per field: its list of (raw name,
    name, value) triples is read directly instead.
    """
    full_items: list[tuple[bytes, bytes, bytes]] = headers._full_items  # type: ignore[attr-defined]
    return tuple([(name, value) for _, name, value in full_items])


def body_left(reader: h11._readers.ContentLengthReader) -> int:
    """How many bytes of its body ``reader`` still expects."""
    remaining: int = reader._remaining
    return remaining


def take_bytes(buffer: h11._receivebuffer.ReceiveBuffer, count: int) -> bytes:
    """:func:`take`, as bytes, in one copy (h11's own takes two, then bytes() a third)."""
    data = buffer._data
    with memoryview(data) as view:
        out = bytes(view[:count])
    del data[:count]
    buffer._extract(0)  # what h11 does whenever bytes are taken: its searches restart
    return out


def take_from_buffer(
    reader: h11._readers.ContentLengthReader, buffer: h11._receivebuffer.ReceiveBuffer
) -> bytes:
    """The body bytes ``buffer`` holds, up to what ``reader`` still expects, counted as read.

    What ``reader(buffer)`` would return as Data, in one copy; b"" once the
    body is complete (the reader then says so itself).
    """
    count = min(reader._remaining, len(buffer._data))
    if not count:
        return b""
    reader._remaining -= count
    return take_bytes(buffer, count)


def take(buffer: h11._receivebuffer.ReceiveBuffer, count: int) -> bytearray:
    """Remove the first ``count`` bytes of ``buffer`` and return them."""
    return buffer._extract(count)


check()
