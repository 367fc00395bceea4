"""The PROXY protocol at the door: who the client is, from a TCP proxy we trust.

With ``--proxy-protocol`` a peer in ``--forwarded-allow-ips`` must open its
connection with a PROXY header (v1 or v2); its stream is then served as the
client's, with the addresses (and TLS facts) the header names. Any other
peer is served as itself, and one that sends a PROXY header anyway is
refused: only a trusted proxy may say who the client is. A header that does
not complete within the request head timeout, or is malformed, closes the
connection before any request is read.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio
import anyio.abc
from anyio.abc import SocketAttribute

from .._asgi.proxy import ProxyTrust
from .._protocol import ProxyHeader, ProxyHeaderReader
from ..errors import PeerProtocolError
from .context import ConnectionContext, ProxyAttribute, connection_info
from .logging import error_logger

__all__ = ["ProxyAttribute", "accept_proxy_header"]

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
