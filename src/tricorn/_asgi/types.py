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
    "TLSExtension",
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
    #: Each value is the dict its extension's spec defines (TLSExtension for "tls").
    extensions: dict[str, Any]


class TLSExtension(TypedDict):
    """``scope["extensions"]["tls"]`` on a TLS connection (ASGI TLS extension 0.2)."""

    #: Our certificate, PEM-encoded.
    server_cert: str | None
    #: The client's certificate first, then the chain it sent, each PEM-encoded.
    client_cert_chain: list[str]
    #: The client certificate's subject as an RFC 4514 string; None without one.
    client_cert_name: str | None
    #: Always None: a client certificate that fails verification fails the handshake.
    client_cert_error: str | None
    #: The TLS version's wire number: 0x0303 for TLS 1.2, 0x0304 for TLS 1.3.
    tls_version: int | None
    #: The cipher suite's 16-bit IANA number (TLS_AES_128_GCM_SHA256 is 0x1301).
    cipher_suite: int | None


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
