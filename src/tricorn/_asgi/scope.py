"""Request head + connection facts -> ASGI scope (ASGI HTTP spec 2.5)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final
from urllib.parse import unquote_to_bytes

from .._protocol.events import RequestReceived
from .types import ASGIVersions, HTTPScope, TLSExtension, WebSocketScope

__all__ = [
    "ConnectionInfo",
    "asgi_versions",
    "build_http_scope",
    "build_websocket_scope",
    "decode_path",
    "split_target",
]


def asgi_versions() -> ASGIVersions:
    """A fresh ``scope["asgi"]``: a dict shared between scopes would let one
    app's mutation leak into every later request."""
    return {"version": "3.0", "spec_version": "2.5"}


@dataclass(frozen=True, slots=True)
class ConnectionInfo:
    """What the runtime knows about a connection before any request arrives."""

    client: tuple[str, int] | None
    server: tuple[str, int | None] | None
    scheme: str = "http"
    #: The ASGI TLS extension on a TLS connection; None otherwise (the spec
    #: forbids offering it over plain TCP).
    tls: TLSExtension | None = None
    #: The Host the client addressed, when a trusted proxy says it was not
    #: the one the request carries (X-Forwarded-Host, Forwarded host=).
    host: bytes | None = None
    #: The path prefix a trusted proxy took off (X-Forwarded-Prefix); it goes
    #: in front of the configured root_path.
    root_path: str | None = None


#: Single bytes, looked for as ints: ``b"?" in target`` takes a buffer of
#: each operand and costs several times as much.
_QUERY: Final = ord("?")
_FRAGMENT: Final = ord("#")
_ESCAPE: Final = ord("%")


def split_target(target: bytes) -> tuple[bytes, bytes]:
    """Split a request target into ``(raw_path, query_string)``.

    Handles origin-form (``/a?b``), absolute-form (``http://host/a?b``,
    RFC 9112 3.2.2, whose path is what the app routes on) and asterisk-form
    (``*``, for ``OPTIONS``), which is passed through as the path.
    """
    if target[:1] == b"/" and _QUERY not in target and _FRAGMENT not in target:
        return target, b""  # most targets: a path alone
    # A fragment is never sent by a conforming client (RFC 9112 3.2); if one
    # is, it belongs to neither the path nor the query (RFC 3986 3.5).
    target = target.partition(b"#")[0]
    path, _, query = target.partition(b"?")
    if not path.startswith(b"/") and b"://" in path:
        # absolute-form: drop scheme and authority, keep the path.
        after_authority = path.split(b"://", 1)[1]
        slash = after_authority.find(b"/")
        path = after_authority[slash:] if slash >= 0 else b"/"
    return path, query


def decode_path(raw_path: bytes) -> str:
    """Percent-decode a path and read it as UTF-8 (invalid bytes become U+FFFD)."""
    if _ESCAPE not in raw_path:
        return raw_path.decode("utf-8", "replace")
    return unquote_to_bytes(raw_path).decode("utf-8", "replace")


#: The scope's method for the usual ones, without decoding each time.
_METHODS: Final = {
    method.encode("ascii"): method
    for method in ("GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS", "CONNECT", "TRACE")
}


def build_http_scope(
    request: RequestReceived,
    connection: ConnectionInfo,
    *,
    root_path: str,
    state: dict[str, Any] | None,
) -> HTTPScope:
    """The ``http`` scope for one request.

    ``path`` carries ``root_path`` in front of the request's own path, as
    Uvicorn and Starlette expect; ``raw_path`` is left exactly as received.
    """
    raw_path, query_string = split_target(request.target)
    if connection.root_path is not None:
        root_path = connection.root_path + root_path
    headers = list(request.headers)
    if connection.host is not None:
        headers = [(b"host", connection.host), *(h for h in headers if h[0] != b"host")]
    scope: HTTPScope = {
        "type": "http",
        "asgi": asgi_versions(),
        "http_version": request.http_version,
        "method": _METHODS.get(request.method) or request.method.decode("ascii").upper(),
        "scheme": connection.scheme,
        "path": root_path + decode_path(raw_path),
        "raw_path": raw_path,
        "query_string": query_string,
        "root_path": root_path,
        "headers": headers,
        "client": connection.client,
        "server": connection.server,
        "extensions": _extensions(request),
    }
    if connection.tls is not None:
        # A copy per scope, like state: what one request's app changes stays
        # in that request.
        tls = connection.tls.copy()
        tls["client_cert_chain"] = list(tls["client_cert_chain"])
        scope["extensions"]["tls"] = tls
    if state is not None:
        # A shallow copy per request (lifespan spec): an app may add keys for
        # one request without leaking them into the next.
        scope["state"] = dict(state)
    return scope


def _extensions(request: RequestReceived) -> dict[str, dict[object, object]]:
    """The ASGI extensions this request's response may use: only those that work.

    A file body works on every protocol: the kernel sends it (sendfile) on
    cleartext HTTP/1.1, the runtime reads it in pieces elsewhere.
    """
    extensions: dict[str, dict[object, object]] = {
        "http.response.pathsend": {},
        "http.response.zerocopysend": {},
    }
    if request.can_send_trailers:
        extensions["http.response.trailers"] = {}
    if request.can_push:
        extensions["http.response.push"] = {}
    if request.can_send_early_hints:
        extensions["http.response.early_hint"] = {}
    return extensions


#: The WebSocket scheme for the scheme of the connection it rides on.
_WS_SCHEMES = {"http": "ws", "https": "wss"}


def build_websocket_scope(
    request: RequestReceived,
    connection: ConnectionInfo,
    *,
    root_path: str,
    state: dict[str, Any] | None,
) -> WebSocketScope:
    """The ``websocket`` scope for a handshake (ASGI WebSocket spec 2.5).

    It offers the denial-response extension: the app may answer the
    handshake with an HTTP response of its own.
    """
    assert request.websocket is not None
    http = build_http_scope(request, connection, root_path=root_path, state=state)
    scope: WebSocketScope = {
        "type": "websocket",
        "asgi": http["asgi"],
        "http_version": http["http_version"],
        "scheme": _WS_SCHEMES.get(connection.scheme, connection.scheme),
        "path": http["path"],
        "raw_path": http["raw_path"],
        "query_string": http["query_string"],
        "root_path": http["root_path"],
        "headers": http["headers"],
        "client": http["client"],
        "server": http["server"],
        "subprotocols": list(request.websocket.subprotocols),
        "extensions": {"websocket.http.response": {}},
    }
    if "tls" in http["extensions"]:
        scope["extensions"]["tls"] = http["extensions"]["tls"]
    if "state" in http:
        scope["state"] = http["state"]
    return scope
