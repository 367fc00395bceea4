"""What the connection runner needs of a protocol, whichever one it is.

HTTP/1.1 is a protocol with at most one stream at a time, HTTP/2 one with
many; the runner drives both through :class:`ServerProtocol` and never asks
which one it holds. What differs (a 408 for a slow head, the keep-alive
cycle, the switch to h2c) is decided here, below the runner, and reaches it
as events, a :class:`Phase` and the answers of these methods.
"""

from __future__ import annotations

import enum
from typing import ClassVar, Protocol

from .events import Command, Event

__all__ = ["Phase", "ServerProtocol"]


class Phase(enum.Enum):
    """What the connection waits for, which says which timeout runs.

    The runner starts a phase's timeout when the phase begins and keeps it
    while the phase lasts: bytes arriving do not move it.
    """

    #: Nothing in flight: the keep-alive timeout runs.
    IDLE = "idle"
    #: A request head (or the first bytes of a connection) has begun and is
    #: not complete: the request head timeout runs.
    HEAD = "head"
    #: Exchanges are running: the peer owes nothing, no timeout.
    BUSY = "busy"
    #: Our WebSocket close frame is out, or the app is done with an open
    #: WebSocket: the peer's closing handshake has a deadline.
    CLOSING = "closing"


class ServerProtocol(Protocol):
    """A sans-IO server connection: bytes in -> events, commands in -> bytes."""

    #: Why the connection ended on our side, for the log (None: it did not).
    error: str | None
    #: The protocol's short name, for metrics labels: "http1", "h2" or "h3".
    label: ClassVar[str]

    @property
    def closed(self) -> bool:
        """Nothing more can pass: the runner stops reading and closes."""
        ...

    @property
    def phase(self) -> Phase: ...

    @property
    def wants_data(self) -> bool:
        """False while the runner should not read (bytes held for an app that lags)."""
        ...

    @property
    def has_output(self) -> bool: ...

    @property
    def drain_on_close(self) -> bool:
        """The peer may still be sending: before closing, its input is drained
        (bounded) so that the kernel does not answer it with a reset that
        destroys our last answer."""
        ...

    @property
    def output_size(self) -> int: ...

    def receive_data(self, data: bytes) -> list[Event]:
        """Feed bytes from the peer; ``b""`` means the peer closed its side."""
        ...

    def handle(self, command: Command) -> None:
        """Turn a command into bytes; raises ClientDisconnected once its stream is gone."""
        ...

    def data_to_send(self) -> bytes:
        """The bytes to write, emptied on each call."""
        ...

    def pending_events(self) -> list[Event]:
        """Events that commands produced (a pushed request, frames behind a handshake)."""
        ...

    def held(self, stream_id: int) -> bool:
        """Response data of the stream waits for the peer's flow-control window."""
        ...

    def acknowledge(self, stream_id: int, size: int) -> None:
        """The app took ``size`` bytes of what the stream delivered: let more come."""
        ...

    def exchange_finished(self, stream_id: int) -> list[Event]:
        """The stream's app task ended; returns events it unblocked (a pipelined request)."""
        ...

    def reset_stream(self, stream_id: int) -> None:
        """Give up on a stream (a dead WebSocket peer, a broken response)."""
        ...

    def stop_keep_alive(self) -> None:
        """An exchange failed: a protocol that serves one stream at a time closes after it."""
        ...

    def start_shutdown(self) -> None:
        """Wind down: in-flight exchanges finish, nothing new is taken."""
        ...

    def timed_out(self) -> str:
        """The phase's timeout passed: answer as the protocol wants, close; why, for the log."""
        ...
