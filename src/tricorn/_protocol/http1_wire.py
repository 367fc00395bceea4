"""The seam under ``HTTP1Protocol``: the server side of one HTTP/1.1 connection.

``HTTP1Protocol`` decides what to say (keep-alive, limits, upgrades, refusals);
a *wire* reads requests off the bytes and writes responses onto them, keeping
h11's state machine: ``their_state`` / ``our_state`` take h11's states,
``next_event`` returns :class:`RequestHead`, ``h11.Data``,
``h11.EndOfMessage``, ``h11.ConnectionClosed`` or h11's ``NEED_DATA`` /
``PAUSED``, and a peer's fault raises ``h11.RemoteProtocolError``, an app's
``h11.LocalProtocolError``. Two wires exist:

- :class:`H11Wire`, h11 itself: the reference, and the default wherever
  nothing faster is installed;
- ``http1_httptools.HttptoolsWire``: heads parsed by httptools (llhttp, in
  C), answered exactly as h11 answers them (see that module).
"""

from __future__ import annotations

import importlib.util
import re
from collections.abc import Sequence
from functools import cache
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, cast

import h11
import h11._readers
import h11._receivebuffer

from ..errors import ConfigError
from . import h11_seams
from .events import Headers, event

if TYPE_CHECKING:
    from .http1_httptools import HttptoolsWire

__all__ = [
    "END",
    "Fields",
    "H11Wire",
    "Parser",
    "RequestHead",
    "Wire",
    "new_wire",
    "resolve",
    "whole_chunks",
]

Parser = Literal["h11", "httptools"]

#: Header fields handed to a wire to write: (name, value) pairs.
Fields: TypeAlias = Sequence[tuple[bytes, bytes]]

#: The end of a message without trailers: immutable, so one serves every request.
END: Final = h11.EndOfMessage()

#: A chunk header h11 reads the same way (its chunk-size, an extension that
#: holds neither CR nor LF, optional whitespace, CRLF). Any other header is
#: left to h11's reader, which accepts or refuses it.
_PLAIN_CHUNK_HEADER: Final = re.compile(rb"([0-9A-Fa-f]{1,20})(?:;[^\r\n]*)?[ \t]*\r\n")


def whole_chunks(
    reader: object, buffer: h11._receivebuffer.ReceiveBuffer, limit: int | None = None
) -> h11.Data | None:
    """The run of whole, plain chunks at the start of ``buffer``, taken as one Data event.

    h11 reads a chunked body one event per chunk, so a body of one-byte chunks
    costs an event, and a trip through the protocol, per byte (200,000 of them
    took a second and a half of CPU). Between chunks, this takes every chunk
    that is entirely in the buffer (header, data and CRLF) and that h11 would
    read the same way, at once. It stops at the last chunk, at a chunk not yet
    all here, and at anything unusual: h11's reader goes on from there, with
    its own verdict. None when fewer than two chunks qualify. With ``limit``,
    the run carries at most that many bytes: the chunk that would pass it is
    read by h11's reader, so a body limit refuses at the same chunk either way.
    """
    if not isinstance(reader, h11._readers.ChunkedReader):
        return None
    if not h11_seams.between_chunks(reader, buffer):
        return None
    data = h11_seams.buffered(buffer)
    match = _PLAIN_CHUNK_HEADER.match
    pieces: list[bytearray] = []
    position = taken = 0
    room = len(data) if limit is None else limit
    while (header := match(data, position)) is not None:
        start = header.end()
        size = int(header.group(1), 16)
        end = start + size
        if not size or taken + size > room or data[end : end + 2] != b"\r\n":
            break  # the last chunk (its trailer is h11's), one past the limit, or not all here
        pieces.append(data[start:end])
        taken += size
        position = end + 2
    if len(pieces) < 2:
        return None
    h11_seams.take(buffer, position)
    return h11.Data(data=b"".join(pieces), chunk_start=True, chunk_end=True)


@event  # frozen to the type checker, cheap to make (see events.event)
class RequestHead(h11.Event):
    """A request line and header block, read and validated by the wire.

    ``headers`` are (lower-case name, value) pairs, as h11 normalises them.
    """

    method: bytes
    target: bytes
    http_version: bytes
    headers: Headers


class H11Wire(h11.Connection):
    """h11's own server connection, speaking the wire's vocabulary."""

    def __init__(self, max_incomplete_event_size: int) -> None:
        super().__init__(h11.SERVER, max_incomplete_event_size=max_incomplete_event_size)
        #: The most body bytes one run of whole chunks may carry (see whole_chunks).
        self.chunk_run_limit: int | None = None
        #: The bytes h11's buffer holds (the same bytearray for the connection's
        #: life: h11 grows and trims it in place), read for ``buffered``.
        self._held = h11_seams.buffered(h11_seams.receive_buffer(self))

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        if self.their_state is h11.SEND_BODY:
            chunks = whole_chunks(
                h11_seams.body_reader(self), h11_seams.receive_buffer(self), self.chunk_run_limit
            )
            if chunks is not None:
                # What h11 does for each Data event it hands out (its state
                # machine stays in SEND_BODY).
                self.client_is_waiting_for_100_continue = False
                return chunks
        event = super().next_event()
        if type(event) is h11.Request:
            return RequestHead(
                event.method,
                event.target,
                event.http_version,
                h11_seams.header_pairs(event.headers),
            )
        return event

    def plain_request(self, data: bytes, max_body: int | None) -> tuple[RequestHead, bytes] | None:
        """None: h11 reads every request its own way (HttptoolsWire has a shortcut)."""
        return None

    def plain_body(self, data: bytes) -> tuple[bytes, bool] | None:
        """None: h11 reads every body its own way (HttptoolsWire has a shortcut)."""
        return None

    def plain_response(
        self, status_code: int, headers: Fields, reason: bytes, defaults: Fields
    ) -> bytes | None:
        """None: h11 writes every response its own way (HttptoolsWire has a shortcut)."""
        return None

    def last_data(self, data: bytes) -> bytes | None:
        """None: h11 sends every body its own way (HttptoolsWire has a shortcut)."""
        return None

    def send_informational(self, status_code: int, headers: Fields, reason: bytes) -> bytes:
        return self.send(
            h11.InformationalResponse(status_code=status_code, headers=list(headers), reason=reason)
        )

    def send_response(self, status_code: int, headers: Fields, reason: bytes) -> bytes:
        return self.send(
            h11.Response(status_code=status_code, headers=list(headers), reason=reason)
        )

    def send_data(self, data: bytes) -> bytes:
        return self.send(h11.Data(data=data))

    def send_end(self, trailers: Fields = ()) -> bytes:
        return self.send(h11.EndOfMessage(headers=list(trailers)) if trailers else END)

    def send_data_elsewhere(self, size: int) -> tuple[bytes, bytes]:
        """Account ``size`` body bytes the caller writes itself (sendfile).

        h11's data passthrough frames a stand-in of that length (h11's own
        sendfile recipe); returns the framing before and after it.
        """
        stand_in = _Elsewhere(size)
        parts = self.send_with_data_passthrough(h11.Data(data=cast(bytes, stand_in))) or []
        for index, part in enumerate(parts):
            if part is cast(object, stand_in):
                return b"".join(parts[:index]), b"".join(parts[index + 1 :])
        return b"".join(parts), b""  # an empty chunk: nothing framed, nothing to write

    def chunk_bytes_expected(self) -> int:
        return h11_seams.chunk_bytes_expected(self)

    @property
    def buffered(self) -> int:
        """How many received bytes wait to be parsed (``trailing_data`` without the copy)."""
        return len(self._held)

    @property
    def peer_closed(self) -> bool:
        """The peer closed its side (``trailing_data``'s flag without the copy)."""
        return h11_seams.receive_closed(self)


class _Elsewhere:
    """A body piece h11 frames but never sees: only its length is real."""

    __slots__ = ("_size",)

    def __init__(self, size: int) -> None:
        self._size = size

    def __len__(self) -> int:
        return self._size


Wire: TypeAlias = "H11Wire | HttptoolsWire"


@cache
def _httptools_installed() -> bool:
    return importlib.util.find_spec("httptools") is not None


def resolve(choice: str) -> Parser:
    """The parser ``http1_parser`` names: auto is httptools where it is installed, else h11."""
    if choice == "h11":
        return "h11"
    if _httptools_installed():
        return "httptools"
    if choice == "httptools":
        raise ConfigError(
            "http1_parser", "httptools is not installed: pip install 'tricorn[speed]'"
        )
    return "h11"


def new_wire(parser: Parser, max_head: int) -> Wire:
    """A fresh server-side wire of the given parser, bounding heads at ``max_head`` bytes."""
    if parser == "httptools":
        from .http1_httptools import HttptoolsWire

        return HttptoolsWire(max_head)
    return H11Wire(max_head)
