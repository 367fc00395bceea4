"""Sans-IO protocol state machines: bytes in -> events out, commands in -> bytes out."""

from .events import (
    Command,
    ConnectionClosed,
    DataReceived,
    Event,
    Headers,
    RequestReceived,
    RequestRejected,
    SendData,
    SendInformational,
    StartResponse,
    StreamEnded,
)
from .http1 import HTTP1Protocol

__all__ = [
    "Command",
    "ConnectionClosed",
    "DataReceived",
    "Event",
    "HTTP1Protocol",
    "Headers",
    "RequestReceived",
    "RequestRejected",
    "SendData",
    "SendInformational",
    "StartResponse",
    "StreamEnded",
]
