"""The request rule book: what makes a request acceptable, for every protocol.

HTTP/1.1 and HTTP/2 (and any parser under them) ask these functions, so the
same fault gets the same answer whichever way the request arrived. Pure
functions over header lists (lower-case names, as both parsers give them).
"""

from __future__ import annotations

from collections.abc import Iterable

#: Header fields as either parser hands them over: (lower-case name, value).
Fields = Iterable[tuple[bytes, bytes]]

__all__ = ["accepts_trailers", "framing_fault", "header_tokens"]


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
