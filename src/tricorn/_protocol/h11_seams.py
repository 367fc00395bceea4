"""Where tricorn reaches beneath h11's public API: the size of the chunk being read.

h11 parses a chunk header and then waits for that many bytes without saying
how many it expects, so a chunk size of twenty hex digits (a number no 64-bit
proxy in front agrees on) would hold the connection waiting. Bounding it needs
the size h11 parsed. ``pyproject.toml`` bounds h11 to the versions this is
proven on, :func:`check` runs at import so that an h11 that moved it fails
loudly instead of switching the bound off, and tests/protocol/test_h11_seams.py
pins what it does.
"""

from __future__ import annotations

import h11
import h11._readers

__all__ = ["check", "chunk_bytes_expected"]


def check() -> None:
    """Raise ImportError if h11 no longer has the parts :func:`chunk_bytes_expected` reads."""
    reader = h11._readers.ChunkedReader()
    missing = (
        []
        if isinstance(getattr(reader, "_bytes_in_chunk", None), int)
        else ["ChunkedReader._bytes_in_chunk"]
    )
    if "_reader" not in vars(h11.Connection(h11.SERVER)):
        missing.append("Connection._reader")
    if missing:
        raise ImportError(
            "tricorn's chunk-size bound relies on h11 internals that this h11 lacks: "
            + ", ".join(missing)
            + "; install an h11 within the range pyproject.toml allows"
        )


def chunk_bytes_expected(connection: h11.Connection) -> int:
    """Bytes of the current chunk h11 has parsed the size of and not yet received (0 if none)."""
    reader = connection._reader
    if isinstance(reader, h11._readers.ChunkedReader):
        return reader._bytes_in_chunk
    return 0


check()
