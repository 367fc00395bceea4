"""The request rule book: what makes a request acceptable, for every protocol.

HTTP/1.1 and HTTP/2 (and any parser under them) ask these functions, so the
same fault gets the same answer whichever way the request arrived. Pure
functions over header lists (lower-case names, as both parsers give them).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from http import HTTPStatus
from typing import Final

from .events import Headers

#: Header fields as either parser hands them over: (lower-case name, value).
Fields = Iterable[tuple[bytes, bytes]]

__all__ = [
    "CONNECTION_HEADERS",
    "MAX_CHUNK_SIZE",
    "absolute_form_host",
    "accepts_trailers",
    "chunk_fault",
    "connect_fault",
    "declared_length_exceeds",
    "field_section_size",
    "fields_fault",
    "framing_fault",
    "header_tokens",
    "parse_fault",
    "refusal",
    "response_allows_body",
    "response_fields",
    "short_reason",
    "split_fields",
    "status_phrase",
    "with_host",
]


def header_tokens(headers: Fields, name: bytes) -> list[str]:
    """The comma-separated elements of every ``name`` header, stripped."""
    result: list[str] = []
    for key, value in headers:
        if key == name:
            result.extend(
                part.strip() for part in value.decode("latin-1").split(",") if part.strip()
            )
    return result


def accepts_trailers(headers: Fields) -> bool:
    """The client sent ``TE: trailers`` (RFC 9110 10.1.4)."""
    return any(token.lower() == "trailers" for token in header_tokens(headers, b"te"))


def framing_fault(headers: Fields) -> str | None:
    """Why an HTTP/1.x request's body framing cannot be trusted, or None.

    RFC 9112 6.1: a request with both Transfer-Encoding and Content-Length
    may be an attempt at request smuggling (a proxy in front may have framed
    it by the other header), and the server must close the connection after
    answering it. It is refused outright: answered 400, then closed, so no
    byte after its body is ever read as a request.
    """
    has_length = has_encoding = False
    for name, _ in headers:
        if name == b"content-length":
            has_length = True
        elif name == b"transfer-encoding":
            has_encoding = True
    if has_length and has_encoding:
        return "both Content-Length and Transfer-Encoding"
    return None


def connect_fault(method: bytes, protocol: bytes | None, websocket: bool) -> str | None:
    """Why a CONNECT request cannot be served (answered 501 without the app), or None.

    ASGI has no tunnels: the only CONNECT served is HTTP/2's extended
    CONNECT for a WebSocket (RFC 8441), and only while WebSocket is on.
    Over HTTP/1.1 (no ``:protocol``) every CONNECT is refused.
    """
    if method != b"CONNECT":
        return None
    if websocket and protocol is not None and protocol.lower() == b"websocket":
        return None
    return "CONNECT is only served for WebSocket over HTTP/2 (RFC 8441)"


def absolute_form_host(target: bytes) -> bytes | None:
    """The authority of an absolute-form request target, or None for any other form.

    RFC 9112 3.2.2: a server given ``GET http://host/path`` uses the target's
    host, not the Host header. Raises ValueError for an authority that is
    empty or carries userinfo (RFC 9110 4.2.4: likely hiding the real host).
    """
    scheme, separator, rest = target.partition(b"://")
    if not separator or scheme.lower() not in (b"http", b"https"):
        return None
    authority = rest.split(b"/", 1)[0].split(b"?", 1)[0].split(b"#", 1)[0]
    if not authority or b"@" in authority:
        raise ValueError("invalid authority in the request target")
    return authority


def with_host(headers: Headers, host: bytes) -> Headers:
    """``headers`` with every Host field replaced by one carrying ``host``."""
    return ((b"host", host), *((name, value) for name, value in headers if name != b"host"))


def split_fields(
    raw: Fields,
) -> tuple[dict[bytes, bytes], list[tuple[bytes, bytes]]]:
    """An HTTP/2 or HTTP/3 request's field section: (pseudo-headers, headers).

    The headers come out as HTTP/1.1 would give them to an app: split
    cookie fields joined with "; " (RFC 9113 8.2.3, RFC 9114 4.2.1), and
    ``:authority`` standing in for a missing Host (RFC 9113 8.3.1, RFC 9114
    4.3.1), since ASGI apps read Host.
    """
    pseudo: dict[bytes, bytes] = {}
    headers: list[tuple[bytes, bytes]] = []
    cookies: list[bytes] = []
    for name, value in raw:
        if name.startswith(b":"):
            pseudo[name] = value
        elif name == b"cookie":
            cookies.append(value)
        else:
            headers.append((name, value))
    if cookies:
        headers.append((b"cookie", b"; ".join(cookies)))
    authority = pseudo.get(b":authority")
    if authority is not None and not any(name == b"host" for name, _ in headers):
        headers.insert(0, (b"host", authority))
    return pseudo, headers


#: Pseudo-header fields a request may carry (RFC 9113 8.3.1, RFC 8441 4).
REQUEST_PSEUDO_HEADERS: Final = frozenset(
    {b":method", b":scheme", b":authority", b":path", b":protocol"}
)
#: A byte no field name may hold (RFC 9113 8.2.1): controls, space, upper
#: case, DEL and beyond, and a colon (past a pseudo-header's first byte).
_BAD_NAME: Final = re.compile(rb"[^!-9;-@\[-~]")
#: A field value with NUL, CR or LF, or starting or ending with a space or
#: tab (RFC 9113 8.2.1).
_BAD_VALUE: Final = re.compile(rb"[\x00\r\n]|\A[ \t]|[ \t]\Z")


def fields_fault(raw: Sequence[tuple[bytes, bytes]], *, trailers: bool = False) -> str | None:
    """Why an HTTP/2 request's field section (or trailer section) is malformed, or None.

    RFC 9113 8.1.1: a malformed request is a stream error. The checks are
    those of RFC 9113 8.2 and 8.3 (which h2 would make with its header
    validation, switched off for being many times slower): field names
    lower-case and free of forbidden bytes, values free of NUL, CR, LF and
    surrounding whitespace, no connection-specific field, ``TE`` only as
    ``trailers``; pseudo-header fields known, single, first, and none in
    trailers; the pseudo-headers the method needs (a plain CONNECT has no
    ``:scheme`` or ``:path``, ``:protocol`` only on CONNECT), a non-empty
    ``:path``, and ``:authority`` or one ``Host``, equal when both are there.
    """
    pseudo: dict[bytes, bytes] = {}
    regular = False
    host: bytes | None = None
    for name, value in raw:
        if name[:1] == b":":
            if trailers:
                return "a pseudo-header field in trailers"
            if regular:
                return "a pseudo-header field after a regular field"
            if name not in REQUEST_PSEUDO_HEADERS:
                return "an unknown pseudo-header field"
            if name in pseudo:
                return "a repeated pseudo-header field"
            pseudo[name] = value
        else:
            regular = True
            if not name or _BAD_NAME.search(name):
                return "an invalid field name"
            if name in CONNECTION_HEADERS:
                return "a connection-specific field"
            if name == b"te" and value.lower() != b"trailers":
                return "TE other than trailers"
            if name == b"host":
                if host is not None:
                    return "more than one Host field"
                host = value
        if value and _BAD_VALUE.search(value):
            return "an invalid field value"
    if trailers:
        return None
    method = pseudo.get(b":method")
    if method is None:
        return "no :method"
    if method == b"CONNECT" and b":protocol" not in pseudo:
        if b":scheme" in pseudo or b":path" in pseudo:
            return "a CONNECT with :scheme or :path"
    else:
        if b":protocol" in pseudo and method != b"CONNECT":
            return ":protocol without CONNECT"
        if b":scheme" not in pseudo or b":path" not in pseudo:
            return "no :scheme or :path"
        if not pseudo[b":path"]:
            return "an empty :path"
    authority = pseudo.get(b":authority")
    if authority is None and host is None:
        return "neither :authority nor Host"
    if authority is not None and host is not None and authority != host:
        return ":authority and Host differ"
    return None


def field_section_size(raw: Fields) -> int:
    """A field section's size as HTTP/2 and HTTP/3 count it against their limit:
    each field's name and value, plus 32 (RFC 9113 6.5.2, RFC 9114 4.2.2)."""
    return sum(len(name) + len(value) + 32 for name, value in raw)


def response_fields(headers: Fields) -> list[tuple[bytes, bytes]]:
    """An app's response headers as HTTP/2 and HTTP/3 want them.

    Field names lower-case (RFC 9113 8.2.1, RFC 9114 4.2), no HTTP/1.1
    connection-specific field and no pseudo-header; an app written for
    HTTP/1.1 may send either, so they are fixed or dropped rather than
    failing the app. ``TE`` survives only as ``trailers``.
    """
    result: list[tuple[bytes, bytes]] = []
    for name, value in headers:
        lowered = name.lower()
        if lowered in CONNECTION_HEADERS or lowered.startswith(b":"):
            continue
        if lowered == b"te" and value.strip().lower() != b"trailers":
            continue
        result.append((lowered, value))
    return result


#: The largest chunk of a chunked request body accepted (1 GiB). No client
#: sends a chunk near this; a larger size is an attack on a parser in front
#: (twenty hex digits overflow any 64-bit one, and it and tricorn would then
#: disagree on where the body ends).
MAX_CHUNK_SIZE: Final = 1 << 30


def chunk_fault(size: int) -> str | None:
    """Why a request body chunk of ``size`` bytes is refused (400), or None."""
    if size > MAX_CHUNK_SIZE:
        return "chunk size too large"
    return None


#: Headers meaningful only to one HTTP/1.1 connection; HTTP/2 forbids them
#: (RFC 9113 8.2.2), and an h2c upgrade leaves them behind.
CONNECTION_HEADERS: Final = frozenset(
    {b"connection", b"keep-alive", b"proxy-connection", b"transfer-encoding", b"upgrade"}
)


def declared_length_exceeds(headers: Fields, limit: int | None) -> bool:
    """The request's Content-Length is over ``limit``: refused (413) before any body is read."""
    if limit is None:
        return False
    return any(
        name == b"content-length" and value.isdigit() and int(value) > limit
        for name, value in headers
    )


def response_allows_body(method: bytes, status_code: int) -> bool:
    """RFC 9110 6.4.1: a response to HEAD, and a 204 or 304, carries no body.

    An app may still send one; it is dropped, on every protocol alike.
    """
    return not (method == b"HEAD" or status_code in (204, 304))


#: Every status the standard names, with its reason phrase.
_PHRASES: Final = {status.value: status.phrase.encode("ascii") for status in HTTPStatus}


def status_phrase(status_code: int) -> bytes:
    """The reason phrase of a status (b"" for one the standard does not name)."""
    return _PHRASES.get(status_code, b"")


def refusal(status_code: int, reason: str) -> tuple[Headers, bytes]:
    """The headers and body of an answer tricorn gives without the app.

    A one-line text/plain body, such as ``413 Content Too Large: request
    body too large``, the same on every protocol.
    """
    body = f"{status_code} {status_phrase(status_code).decode()}: {reason}\n".encode()
    headers: Headers = (
        (b"content-type", b"text/plain; charset=utf-8"),
        (b"content-length", str(len(body)).encode()),
    )
    return headers, body


#: What a parser's complaint (by how its message begins) is called in our
#: answer: a fixed phrase, so a refusal never echoes the request's bytes or
#: the parser's internals back (those go to the debug log).
_PARSE_FAULTS: Final = (
    ("illegal request line", "malformed request line"),
    ("no request line", "malformed request line"),
    ("continuation line", "malformed header field"),
    ("illegal header line", "malformed header field"),
    ("illegal header name", "malformed header field"),
    ("illegal header value", "malformed header field"),
    ("missing mandatory host", "missing Host header"),
    ("found multiple host", "more than one Host header"),
    ("conflicting content-length", "conflicting Content-Length headers"),
    ("bad content-length", "invalid Content-Length"),
    ("multiple transfer-encoding", "unsupported Transfer-Encoding"),
    ("only transfer-encoding: chunked", "unsupported Transfer-Encoding"),
    ("illegal chunk header", "malformed chunked body"),
    ("malformed chunk footer", "malformed chunked body"),
    ("peer unexpectedly closed", "incomplete request"),
    ("peer closed connection without sending complete", "incomplete request body"),
)


def parse_fault(message: str) -> str:
    """The fixed reason a refusal gives for a parser's error ``message``."""
    lowered = message.lower()
    for start, reason in _PARSE_FAULTS:
        if lowered.startswith(start):
            return reason
    return "malformed request"


def short_reason(error: BaseException) -> str:
    """A library's error message, bounded, for a log line or an error's text."""
    return str(error)[:200] or type(error).__name__
