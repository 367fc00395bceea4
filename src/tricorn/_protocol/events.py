"""The vocabulary between the protocol layer and everything above it.

Inbound events (from the peer) are named in the past tense; outbound commands
(to the peer) are imperatives. One type never serves both directions. All are
frozen, slotted dataclasses so they can be matched on and never mutated.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "Command",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "Headers",
    "RequestReceived",
    "RequestRejected",
    "SendData",
    "SendInformational",
    "StartResponse",
    "StreamEnded",
]

Headers = tuple[tuple[bytes, bytes], ...]


# -- inbound ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RequestReceived:
    """A complete request head arrived. Header names are lower-cased."""

    stream_id: int
    method: bytes
    target: bytes
    http_version: str
    headers: Headers
    expects_continue: bool = False


@dataclass(frozen=True, slots=True)
class DataReceived:
    """A piece of a request body arrived."""

    stream_id: int
    data: bytes


@dataclass(frozen=True, slots=True)
class StreamEnded:
    """The request body is complete; no more data will come for this stream."""

    stream_id: int


@dataclass(frozen=True, slots=True)
class ConnectionClosed:
    """The peer closed its side of the connection."""


@dataclass(frozen=True, slots=True)
class RequestRejected:
    """The peer broke the protocol and earned ``status_code``.

    The protocol has already queued the error response where one could still
    be sent; the connection must be closed once that is written.
    """

    status_code: int
    reason: str


Event = RequestReceived | DataReceived | StreamEnded | ConnectionClosed | RequestRejected


# -- outbound --------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SendInformational:
    """Send a 1xx interim response (100 Continue, 103 Early Hints)."""

    stream_id: int
    status_code: int
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class StartResponse:
    """Send the final response head."""

    stream_id: int
    status_code: int
    headers: Headers


@dataclass(frozen=True, slots=True)
class SendData:
    """Send a piece of the response body; ``end_stream`` completes the response."""

    stream_id: int
    data: bytes
    end_stream: bool = False


Command = SendInformational | StartResponse | SendData
