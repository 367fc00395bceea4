"""Where tricorn reaches beneath h2's public API: every such place, and nowhere else.

h2 leaves out what a server under attack needs (its events frame by frame,
a count of the frames it takes in without an event, the size a pending frame announces, the bytes of
a header block waiting for CONTINUATIONs), and treats a graceful GOAWAY from
the peer as the end of the connection. These functions get at h2's private
parts for that; ``pyproject.toml`` bounds h2 to the versions they are proven
on, :func:`check` runs at import so that an h2 that moved them fails loudly
instead of switching a defence off, and tests/protocol/test_h2_seams.py pins
what each one does.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import h2.config
import h2.connection
import h2.errors
import h2.events
import h2.exceptions
import h2.frame_buffer
import h2.settings
from h2.settings import SettingCodes
from hpack.hpack import Decoder, Encoder
from hpack.struct import HeaderTuple
from hpack.table import HeaderTable
from hyperframe.exceptions import InvalidPaddingError
from hyperframe.frame import Frame, GoAwayFrame

__all__ = [
    "CachingDecoder",
    "CachingEncoder",
    "CompactSettings",
    "CountingH2Connection",
    "check",
    "graceful_goaway",
    "oversized_frame_pending",
    "pending_header_block",
    "reopen_after_graceful_goaway",
]


def check() -> None:
    """Raise ImportError if h2 no longer has the parts the functions here rely on."""
    missing = []
    for method in ("_receive_frame", "_terminate_connection"):
        if not callable(getattr(h2.connection.H2Connection, method, None)):
            missing.append(f"H2Connection.{method}")
    buffer = vars(h2.frame_buffer.FrameBuffer(server=True))
    missing += [
        f"FrameBuffer.{name}" for name in ("_data", "_headers_buffer") if name not in buffer
    ]
    if not hasattr(h2.connection.ConnectionState, "SERVER_OPEN"):
        missing.append("ConnectionState.SERVER_OPEN")
    settings = getattr(h2.settings.Settings(), "_settings", None)
    if not isinstance(settings, dict) or not all(
        hasattr(values, "popleft") for values in settings.values()
    ):
        missing.append("Settings._settings")
    table = HeaderTable()
    if not isinstance(vars(HeaderTable).get("maxsize"), property) or not all(
        hasattr(table, name) for name in ("add", "resized", "_maxsize", "dynamic_entries")
    ):
        missing.append("hpack HeaderTable")
    if not all(hasattr(coder(), "header_table") for coder in (Encoder, Decoder)):
        missing.append("hpack Encoder/Decoder.header_table")
    if missing:
        raise ImportError(
            "tricorn's HTTP/2 abuse defences rely on h2 internals that this h2 lacks: "
            + ", ".join(missing)
            + "; install an h2 within the range pyproject.toml allows"
        )


class _Values(list[Any]):
    """One setting's current value and those proposed after it, as h2 keeps them.

    h2 uses a deque (624 bytes each, for a value or two), one per setting, on
    both sides: about 8 KiB per connection. A list does the same in a tenth.
    """

    __slots__ = ()

    def popleft(self) -> Any:
        return self.pop(0)


class CompactSettings(h2.settings.Settings):
    """h2's settings, each setting's values in a small list instead of a deque."""

    def __init__(
        self, client: bool = True, initial_values: dict[SettingCodes, int] | None = None
    ) -> None:
        super().__init__(client, initial_values)
        for key, values in self._settings.items():
            self._settings[key] = _Values(values)  # type: ignore[assignment]

    def __setitem__(self, key: SettingCodes | int, value: int) -> None:
        super().__setitem__(key, value)
        values = self._settings[key]
        if not isinstance(values, _Values):
            self._settings[key] = _Values(values)  # type: ignore[assignment]


class _CountingTable(HeaderTable):
    """hpack's dynamic table, counting its changes: what makes a cached block stale."""

    generation = 0

    def add(self, name: bytes, value: bytes) -> None:
        self.generation += 1
        super().add(name, value)

    @property
    def maxsize(self) -> int:
        return self._maxsize

    @maxsize.setter
    def maxsize(self, value: int) -> None:
        self.generation += 1
        vars(HeaderTable)["maxsize"].__set__(self, value)


#: Response header lists a connection remembers the encoding of; past this
#: the memory is cleared, so lists that never repeat cost a lookup, no more.
_ENCODED_CACHE = 16
#: Request header blocks a connection remembers the fields of, and the
#: largest such block, in bytes and in fields: a peer sending every block
#: different makes us hold a few KiB at most.
_DECODED_CACHE = 4
_MAX_CACHED_BLOCK = 1024
_MAX_CACHED_FIELDS = 32


class CachingEncoder(Encoder):
    """hpack's encoder, remembering what each header list encoded to.

    A response's header list repeats (the same status, type, length, date
    and server, answer after answer), and once its fields are all in the
    dynamic table it encodes to the same bytes every time, without changing
    the table. Such an encoding is kept and reused until the table changes
    (a new field, a new size). A list with a never-indexed field is always
    encoded afresh.
    """

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _CountingTable()
        self._blocks: dict[tuple[Any, ...], tuple[int, bytes]] = {}

    def encode(self, headers: Any, huffman: bool = True) -> bytes:
        table = self.header_table
        assert isinstance(table, _CountingTable)
        if (
            table.resized
            or type(headers) is not list
            or any(isinstance(field, HeaderTuple) and not field.indexable for field in headers)
        ):
            return super().encode(headers, huffman)
        key = (huffman, *headers)
        try:
            cached = self._blocks.get(key)
        except TypeError:  # an unhashable field: nothing to remember
            return super().encode(headers, huffman)
        if cached is not None and cached[0] == table.generation:
            return cached[1]
        generation = table.generation
        encoded = super().encode(headers, huffman)
        if table.generation == generation:
            if len(self._blocks) >= _ENCODED_CACHE:
                self._blocks.clear()
            self._blocks[key] = (generation, encoded)
        return encoded


class CachingDecoder(Decoder):
    """hpack's decoder, remembering what each header block decoded to.

    The same request, sent again with every field indexed, is the same
    bytes; decoding those leaves the table as it was. Such a block's fields
    are kept and handed out again until the table or a limit changes.
    """

    def __init__(self) -> None:
        super().__init__()
        self.header_table = _CountingTable()
        self.max_allowed_table_size = self.header_table.maxsize
        self._blocks: dict[tuple[bytes, bool], tuple[int, int, int, list[Any]]] = {}

    def decode(self, data: bytes, raw: bool = False) -> list[Any]:
        table = self.header_table
        assert isinstance(table, _CountingTable)
        if len(data) > _MAX_CACHED_BLOCK:
            return list(super().decode(data, raw))
        key = (bytes(data), raw)
        cached = self._blocks.get(key)
        if (
            cached is not None
            and cached[0] == table.generation
            and cached[1] == self.max_header_list_size
            and cached[2] == self.max_allowed_table_size
        ):
            return list(cached[3])
        generation = table.generation
        headers = list(super().decode(data, raw))
        if table.generation == generation and len(headers) <= _MAX_CACHED_FIELDS:
            if len(self._blocks) >= _DECODED_CACHE:
                self._blocks.clear()
            self._blocks[key] = (
                generation,
                self.max_header_list_size,
                self.max_allowed_table_size,
                headers,
            )
        return list(headers)


class CountingH2Connection(h2.connection.H2Connection):
    """h2's connection, counting the frames it takes in without an event.

    Those are frames on closed streams, which h2 ignores (RFC 9113 5.1) or
    answers with RST_STREAM; without the count a flood of them would cost
    no budget. Its settings are :class:`CompactSettings`.
    """

    ignored_frames = 0

    def __init__(self, config: h2.config.H2Configuration) -> None:
        super().__init__(config)
        self.remote_settings = CompactSettings(client=not config.client_side)
        # Nothing is encoded or decoded yet: fresh tables, as h2's own.
        self.encoder = CachingEncoder()
        decoder = CachingDecoder()
        decoder.max_header_list_size = self.decoder.max_header_list_size
        self.decoder = decoder

    def receive_frames(self, data: bytes) -> Iterator[list[h2.events.Event]]:
        """``receive_data``, one frame at a time: the events of each frame as it is read.

        The caller checks its budgets between frames and stops iterating once
        the connection is condemned, so a 64 KiB read of PINGs is not all
        answered first, and what follows the condemning frame is never
        parsed. Errors are handled as ``receive_data`` handles them.
        """
        self.incoming_buffer.add_data(data)
        self.incoming_buffer.max_frame_size = self.max_inbound_frame_size
        try:
            for frame in self.incoming_buffer:
                yield self._receive_frame(frame)
        except InvalidPaddingError as exc:
            self._terminate_connection(h2.errors.ErrorCodes.PROTOCOL_ERROR)
            raise h2.exceptions.ProtocolError("Received frame with invalid padding.") from exc
        except h2.exceptions.ProtocolError as exc:
            self._terminate_connection(exc.error_code)
            raise

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


def reopen_after_graceful_goaway(connection: h2.connection.H2Connection) -> None:
    """Undo h2's reading of a graceful GOAWAY from the peer as the connection's end.

    RFC 9113 6.8: after GOAWAY(NO_ERROR) the peer opens no more streams, and
    those in flight still finish; h2 would refuse to send their responses.
    The streams keep their own state; the connection's goes back to open.
    """
    connection.state_machine.state = h2.connection.ConnectionState.SERVER_OPEN


def graceful_goaway(connection: h2.connection.H2Connection) -> bytes:
    """A GOAWAY(NO_ERROR) naming the last stream we will serve, serialised by hand.

    h2's close_connection would also stop h2 from carrying the responses of
    the streams in flight, which a graceful shutdown must let finish.
    """
    last = connection.highest_inbound_stream_id
    return bytes(GoAwayFrame(0, last_stream_id=last, error_code=0).serialize())


check()
