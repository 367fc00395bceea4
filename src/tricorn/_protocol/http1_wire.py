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
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from typing import TYPE_CHECKING, Final, Literal, TypeAlias, cast

import h11

from ..errors import ConfigError
from . import h11_seams
from .events import Headers

if TYPE_CHECKING:
    from .http1_httptools import HttptoolsWire

__all__ = ["END", "Fields", "H11Wire", "Parser", "RequestHead", "Wire", "new_wire", "resolve"]

Parser = Literal["h11", "httptools"]

#: Header fields handed to a wire to write: (name, value) pairs.
Fields: TypeAlias = Sequence[tuple[bytes, bytes]]

#: The end of a message without trailers: immutable, so one serves every request.
END: Final = h11.EndOfMessage()


@dataclass(frozen=True, slots=True)
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

    def next_event(self) -> h11.Event | type[h11.NEED_DATA] | type[h11.PAUSED]:
        event = super().next_event()
        if type(event) is h11.Request:
            return RequestHead(event.method, event.target, event.http_version, tuple(event.headers))
        return event

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
