"""TypedDicts for every ASGI scope and message tricorn produces or accepts.

Only the shapes live here; the rules of which message may follow which live in
``cycle.py``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from typing import Any, Literal, NotRequired, TypedDict

__all__ = [
    "ASGI2App",
    "ASGI3App",
    "ASGIReceive",
    "ASGISend",
    "ASGIVersions",
    "HTTPScope",
    "LifespanScope",
    "Message",
    "Scope",
    "WebSocketScope",
]


class ASGIVersions(TypedDict):
    version: str
    spec_version: str


class _ConnectionScope(TypedDict):
    """What the http and websocket scopes share (ASGI HTTP & WebSocket spec 2.5)."""

    asgi: ASGIVersions
    http_version: str
    scheme: str
    path: str
    raw_path: bytes
    query_string: bytes
    root_path: str
    headers: list[tuple[bytes, bytes]]
    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    state: NotRequired[dict[str, Any]]
    extensions: dict[str, dict[object, object]]


class HTTPScope(_ConnectionScope):
    type: Literal["http"]
    method: str


class WebSocketScope(_ConnectionScope):
    type: Literal["websocket"]
    subprotocols: list[str]


class LifespanScope(TypedDict):
    type: Literal["lifespan"]
    asgi: ASGIVersions
    state: dict[str, Any]


class HTTPRequestEvent(TypedDict):
    type: Literal["http.request"]
    body: bytes
    more_body: bool


class HTTPDisconnectEvent(TypedDict):
    type: Literal["http.disconnect"]


class HTTPResponseStartEvent(TypedDict):
    type: Literal["http.response.start"]
    status: int
    headers: NotRequired[Iterable[tuple[bytes, bytes]]]
    trailers: NotRequired[bool]


class HTTPResponseBodyEvent(TypedDict):
    type: Literal["http.response.body"]
    body: NotRequired[bytes]
    more_body: NotRequired[bool]


Scope = HTTPScope | WebSocketScope | LifespanScope
#: Messages are checked by hand at the edge (apps send whatever they like),
#: so inside tricorn they travel as plain mappings.
Message = MutableMapping[str, Any]
ASGIReceive = Callable[[], Awaitable[Message]]
ASGISend = Callable[[Message], Awaitable[None]]
ASGI3App = Callable[[Any, ASGIReceive, ASGISend], Awaitable[None]]
ASGI2App = Callable[[Any], Callable[[ASGIReceive, ASGISend], Awaitable[None]]]
