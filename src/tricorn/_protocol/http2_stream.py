"""One HTTP/2 stream as this side keeps it: a state and a transition table.

h2 keeps the stream states of RFC 9113 5.1; what it cannot know is where the
app's response stands (started? its end held back by the peer's window?).
One :class:`StreamState` says both, and :data:`TRANSITIONS` says how each
:class:`StreamEvent` moves it, in the manner of the ASGI cycles in
``_asgi/cycle.py``: a pair missing from the table is a bug, reported with the
state and the event.

::

    request open:   OPEN -> OPEN_RESPONDING -> OPEN_ENDING -> HALF_CLOSED_LOCAL
                     |           |                 |               |
    REQUEST_ENDED    v           v                 v               v
    request done:   HALF_CLOSED_REMOTE -> RESPONDING -> ENDING ->  CLOSED

Across: RESPONSE_STARTED, RESPONSE_ENDING (the app's end is queued),
RESPONSE_ENDED (END_STREAM went out). RESET closes a stream from any state.
"""

from __future__ import annotations

import enum
from collections import deque
from typing import Final

from . import websocket
from .events import Headers, WebSocketRequest

__all__ = ["TRANSITIONS", "Stream", "StreamEvent", "StreamState"]


class StreamState(enum.Enum):
    # Members are singletons compared by identity: hash them so too, not
    # by Enum's __hash__ (Python code), as they key the transition tables.
    __hash__ = object.__hash__

    #: The request is arriving; no response yet.
    OPEN = "open"
    #: The request is arriving; the response has started.
    OPEN_RESPONDING = "open, responding"
    #: The request is arriving; the app has ended its response, whose end
    #: waits for the peer's window.
    OPEN_ENDING = "open, ending"
    #: The response is out in full; the request is still arriving.
    HALF_CLOSED_LOCAL = "half-closed (local)"
    #: The request is complete; no response yet.
    HALF_CLOSED_REMOTE = "half-closed (remote)"
    #: The request is complete; the response has started.
    RESPONDING = "responding"
    #: The request is complete; the response's end waits for the window.
    ENDING = "ending"
    #: Both sides are done, or the stream was reset.
    CLOSED = "closed"


class StreamEvent(enum.Enum):
    # Members are singletons compared by identity: hash them so too, not
    # by Enum's __hash__ (Python code), as they key the transition tables.
    __hash__ = object.__hash__

    #: The peer's END_STREAM.
    REQUEST_ENDED = "request ended"
    #: A response head (or a WebSocket's acceptance) from the app.
    RESPONSE_STARTED = "response started"
    #: The app's last body chunk or trailers, queued.
    RESPONSE_ENDING = "response ending"
    #: Our END_STREAM went out.
    RESPONSE_ENDED = "response ended"
    #: RST_STREAM, either way, or the connection's end.
    RESET = "reset"


_S = StreamState
_V = StreamEvent

TRANSITIONS: Final[dict[tuple[StreamState, StreamEvent], StreamState]] = {
    (_S.OPEN, _V.REQUEST_ENDED): _S.HALF_CLOSED_REMOTE,
    (_S.OPEN, _V.RESPONSE_STARTED): _S.OPEN_RESPONDING,
    (_S.OPEN_RESPONDING, _V.REQUEST_ENDED): _S.RESPONDING,
    (_S.OPEN_RESPONDING, _V.RESPONSE_ENDING): _S.OPEN_ENDING,
    (_S.OPEN_ENDING, _V.REQUEST_ENDED): _S.ENDING,
    (_S.OPEN_ENDING, _V.RESPONSE_ENDED): _S.HALF_CLOSED_LOCAL,
    (_S.HALF_CLOSED_LOCAL, _V.REQUEST_ENDED): _S.CLOSED,
    (_S.HALF_CLOSED_REMOTE, _V.RESPONSE_STARTED): _S.RESPONDING,
    (_S.RESPONDING, _V.RESPONSE_ENDING): _S.ENDING,
    (_S.ENDING, _V.RESPONSE_ENDED): _S.CLOSED,
    **{(state, _V.RESET): _S.CLOSED for state in StreamState},
}

_REQUEST_DONE: Final = frozenset({_S.HALF_CLOSED_REMOTE, _S.RESPONDING, _S.ENDING, _S.CLOSED})
_NOT_STARTED: Final = frozenset({_S.OPEN, _S.HALF_CLOSED_REMOTE})
_RESPONSE_DONE: Final = frozenset({_S.OPEN_ENDING, _S.HALF_CLOSED_LOCAL, _S.ENDING, _S.CLOSED})
_END_HELD: Final = frozenset({_S.OPEN_ENDING, _S.ENDING})


class Stream:
    """What this side keeps about one stream beyond h2's own state."""

    __slots__ = (
        "authority",
        "body_allowed",
        "head",
        "held",
        "held_trailers",
        "method",
        "received",
        "state",
        "stream_id",
        "unacknowledged",
        "websocket",
        "ws_request",
    )

    def __init__(
        self, stream_id: int, method: bytes, authority: bytes = b"", *, request_done: bool = False
    ) -> None:
        self.stream_id = stream_id
        self.method = method
        self.authority = authority
        self.state = _S.HALF_CLOSED_REMOTE if request_done else _S.OPEN
        #: A response head held until the first body chunk, so that an
        #: empty body ends the stream on the HEADERS frame itself.
        self.head: Headers | None = None
        #: Response data the peer's window does not admit yet.
        self.held: deque[bytes] = deque()
        self.held_trailers: Headers | None = None
        #: Request body bytes received, and those not yet acknowledged.
        self.received = 0
        self.unacknowledged = 0
        self.body_allowed = True
        self.ws_request: WebSocketRequest | None = None
        self.websocket: websocket.WebSocketProtocol | None = None

    def advance(self, event: StreamEvent) -> StreamState:
        """Move to the state the table names; RuntimeError if it names none."""
        try:
            self.state = TRANSITIONS[self.state, event]
        except KeyError:
            raise RuntimeError(
                f"HTTP/2 stream {self.stream_id}: no transition from {self.state.value!r} "
                f"on {event.value!r}"
            ) from None
        if self.state is _S.CLOSED:
            self.held.clear()
            self.held_trailers = None
        return self.state

    @property
    def request_done(self) -> bool:
        """The peer has ended its side (or the stream is closed)."""
        return self.state in _REQUEST_DONE

    @property
    def response_started(self) -> bool:
        return self.state not in _NOT_STARTED

    @property
    def response_done(self) -> bool:
        """The app has ended its response (its end may still wait for the window)."""
        return self.state in _RESPONSE_DONE

    @property
    def end_held(self) -> bool:
        """The response's end (END_STREAM, or trailers) waits for the window."""
        return self.state in _END_HELD

    @property
    def ended(self) -> bool:
        return self.state is _S.CLOSED

    @property
    def holds_output(self) -> bool:
        """Data or the end waits for the peer's window."""
        return bool(self.held) or self.state in _END_HELD
