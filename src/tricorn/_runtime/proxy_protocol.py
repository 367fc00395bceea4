"""The PROXY protocol at the door: who the client is, from a TCP proxy we trust.

With ``--proxy-protocol`` a peer in ``--forwarded-allow-ips`` must open its
connection with a PROXY header (v1 or v2); its stream is then served as the
client's, with the addresses (and TLS facts) the header names. Any other
peer is served as itself, and one that sends a PROXY header anyway is
refused: only a trusted proxy may say who the client is. A header that does
not complete within the request head timeout, or is malformed, closes the
connection before any request is read.

Ahead of TLS the header is read from the socket itself, never past its end,
so that the handshake can start on the socket (``accept_proxy_header_before_tls``).
"""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, Final, TypeAlias

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .._asgi.proxy import ProxyTrust
from .._protocol import ProxyHeader, ProxyHeaderReader
from ..errors import PeerProtocolError
from .context import AttributesOnly, ConnectionContext, ProxyAttribute, connection_info
from .logging import error_logger

__all__ = ["ProxyAttribute", "accept_proxy_header", "accept_proxy_header_before_tls"]

_V1: bytes = b"PROXY "
_V2: bytes = b"\r\n\r\n\x00\r\nQUIT\n"


async def accept_proxy_header(
    stream: anyio.abc.ByteStream, context: ConnectionContext
) -> anyio.abc.ByteStream | None:
    """The stream to serve, or None once it is closed (a refused or broken header)."""
    trust = ProxyTrust.parse(context.config.forwarded_allow_ips)
    trusted = trust.trusts_peer(connection_info(stream))
    reader = ProxyHeaderReader()
    seen = b""
    with anyio.move_on_after(context.config.request_head_timeout):
        try:
            while True:
                try:
                    data = await stream.receive()
                except (anyio.EndOfStream, anyio.BrokenResourceError):
                    data = b""
                if not trusted:
                    seen += data
                    verdict = _looks_like_proxy(seen)
                    if verdict is None and data:
                        continue
                    if verdict:
                        error_logger.info(
                            "refused a PROXY header from %s, which is not a trusted proxy",
                            _peer_text(stream),
                        )
                        break
                    return _Replayed(stream, seen)
                result = reader.feed(data)
                if result is not None:
                    header, rest = result
                    return _Proxied(stream, header, rest)
        except PeerProtocolError as exc:
            error_logger.debug("closed a connection from %s: %s", _peer_text(stream), exc)
    await stream.aclose()
    return None


#: What ``accept_proxy_header_before_tls`` hands on: the source of the TLS
#: handshake (the socket itself, or rarely a stream with bytes to replay),
#: and what to wrap the TLS stream in.
ProxiedSource: TypeAlias = tuple[
    anyio.abc.ByteStream | socket.socket,
    Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream],
]

#: How much one look at the socket's queue takes in (a header is rarely longer).
_PEEK: int = 4096


async def accept_proxy_header_before_tls(
    sock: socket.socket,
    context: ConnectionContext,
    open_stream: Callable[[socket.socket], Awaitable[anyio.abc.ByteStream]],
) -> ProxiedSource | None:
    """``accept_proxy_header`` for a connection whose TLS handshake comes next.

    Reads the header straight from the socket and never past it: it peeks
    at what has arrived and takes only the header's bytes, so the handshake
    can start on the socket itself (where the transport may give it to the
    event loop's TLS, which cannot be handed bytes already read). Returns
    the handshake's source and the wrapper for the TLS stream (naming the
    client the header names), or None once the socket is closed.
    ``open_stream`` opens a stream on the socket, for the one case that
    must replay bytes taken: an untrusted peer whose first bytes look like
    the start of a header and turn out not to be one.
    """
    trust = ProxyTrust.parse(context.config.forwarded_allow_ips)
    trusted = trust.trusts_peer(connection_info(_SocketFacts(sock)))
    try:
        source = await _read_before_tls(sock, trusted, context, open_stream)
    except BaseException:
        sock.close()
        raise
    if source is None:
        _discard_arrived(sock)
        sock.close()
    return source


#: What a refused connection's close reads away first, at most.
_DISCARD: Final = 64 * 1024


def _discard_arrived(sock: socket.socket) -> None:
    """Read away what has arrived (up to _DISCARD): closing a socket with
    unread input makes the kernel answer with a reset, not a plain close."""
    left = _DISCARD
    with contextlib.suppress(OSError):  # BlockingIOError: nothing (more) has
        while left > 0 and (data := sock.recv(min(left, _PEEK))):
            left -= len(data)


async def _read_before_tls(
    sock: socket.socket,
    trusted: bool,
    context: ConnectionContext,
    open_stream: Callable[[socket.socket], Awaitable[anyio.abc.ByteStream]],
) -> ProxiedSource | None:
    reader = ProxyHeaderReader()
    seen = b""
    with anyio.move_on_after(context.config.request_head_timeout):
        try:
            while True:
                await anyio.wait_readable(sock)
                try:
                    data = sock.recv(_PEEK, socket.MSG_PEEK)
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not trusted:
                    verdict = _looks_like_proxy(seen + data)
                    if verdict:
                        error_logger.info(
                            "refused a PROXY header from %s, which is not a trusted proxy",
                            _peer_text(_SocketFacts(sock)),
                        )
                        break
                    if verdict is None and data:
                        # Too few bytes to tell, all of them the start of a
                        # header: take them, to wait for more.
                        seen += sock.recv(len(data))
                        continue
                    if seen:  # they were not a header after all: replay them
                        return _Replayed(await open_stream(sock), seen), _same
                    return sock, _same
                result = reader.feed(data)
                if result is None:
                    sock.recv(len(data))  # every byte of it is the header's
                    continue
                header, rest = result
                sock.recv(len(data) - len(rest))
                return sock, _proxied_by(header)
        except PeerProtocolError as exc:
            error_logger.debug(
                "closed a connection from %s: %s", _peer_text(_SocketFacts(sock)), exc
            )
    return None


def _same(stream: anyio.abc.ByteStream) -> anyio.abc.ByteStream:
    return stream


def _proxied_by(
    header: ProxyHeader,
) -> Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream]:
    return lambda stream: _Proxied(stream, header, b"")


class _SocketFacts(AttributesOnly):
    """A socket's addresses as stream attributes, to read them as any stream's."""

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        sock = self._sock

        def address(get: Callable[[], Any]) -> Any:
            try:
                return get()
            except OSError:  # the peer left already
                return None

        return {
            SocketAttribute.family: lambda: sock.family,
            SocketAttribute.local_address: lambda: address(sock.getsockname),
            SocketAttribute.remote_address: lambda: address(sock.getpeername),
        }


def _looks_like_proxy(data: bytes) -> bool | None:
    """Whether bytes open a PROXY header (None: too few to tell)."""
    for prefix in (_V1, _V2):
        if data[: len(prefix)] == prefix[: len(data)]:
            if len(data) < len(prefix):
                return None
            return True
    return False


def _peer_text(stream: anyio.abc.ByteStream) -> str:
    address = stream.extra(SocketAttribute.remote_address, None)
    return str(address) if address is not None else "a local peer"


class _Replayed(anyio.abc.ByteStream):
    """A stream whose first bytes, read to look at them, are handed out again first."""

    def __init__(self, stream: anyio.abc.ByteStream, first: bytes) -> None:
        self._stream = stream
        self._first = first

    async def receive(self, max_bytes: int = 65536) -> bytes:
        if self._first:
            data, self._first = self._first[:max_bytes], self._first[max_bytes:]
            return data
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        await self._stream.send(item)

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    def __getattr__(self, name: str) -> Any:
        # call_soon, write_now and the like of the transport underneath.
        return getattr(self._stream, name)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


class _Proxied(_Replayed):
    """The client's connection as the trusted proxy describes it."""

    def __init__(self, stream: anyio.abc.ByteStream, header: ProxyHeader, rest: bytes) -> None:
        super().__init__(stream, rest)
        self._header = header

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: dict[Any, Callable[[], Any]] = {**self._stream.extra_attributes}
        header = self._header
        attributes[ProxyAttribute.header] = lambda: header
        if header.client is not None:
            attributes[SocketAttribute.remote_address] = lambda: header.client
        if header.server is not None:
            attributes[SocketAttribute.local_address] = lambda: header.server
        return attributes
