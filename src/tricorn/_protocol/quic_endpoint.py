"""A QUIC server endpoint as a sans-IO router: one UDP socket's datagrams -> connections.

Every datagram on a QUIC server socket either belongs to a connection (its
destination connection ID says which), opens one (an Initial packet of a
version we speak), or gets a stateless answer: Version Negotiation, Retry,
or a CONNECTION_CLOSE in an Initial packet. :meth:`QuicRouter.route` makes
that choice; the runtime owns the socket, the connections' tasks and time.

The router maps connection IDs to the runtime's handle of each connection
(whatever it is: the type parameter ``T``), kept current from each
connection's :meth:`~tricorn._protocol.http3.HTTP3Protocol.connection_id_changes`.
Nothing here trusts a datagram: what cannot be parsed, or belongs to no
connection and opens none, is dropped without an answer larger than itself
(RFC 9000 8: the amplification limit).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Callable
from typing import Final, Generic, Literal, TypeVar

from aioquic._buffer import Buffer
from aioquic.quic.configuration import SMALLEST_MAX_DATAGRAM_SIZE, QuicConfiguration
from aioquic.quic.crypto import CryptoPair
from aioquic.quic.packet import (
    QuicErrorCode,
    QuicFrameType,
    QuicPacketType,
    encode_quic_retry,
    encode_quic_version_negotiation,
    pull_quic_header,
)
from aioquic.quic.packet_builder import QuicPacketBuilder
from aioquic.quic.retry import QuicRetryTokenHandler

from ..config import Config
from .events import Headers
from .http3 import Address, HTTP3Protocol

__all__ = ["Opened", "QuicRouter", "RetryMode"]

T = TypeVar("T")

RetryMode = Literal["auto", "always", "never"]

#: The length of the connection IDs we choose (aioquic's default), which is
#: how a short header packet's destination ID is read.
CID_LENGTH: Final = 8


@dataclasses.dataclass(frozen=True, slots=True)
class Opened:
    """A client's first Initial packet opened a connection: the runtime starts
    it, registers it (:meth:`QuicRouter.register`), and feeds it that datagram."""

    protocol: HTTP3Protocol


class QuicRouter(Generic[T]):
    """Routes the datagrams of one UDP socket to the connections they belong to.

    ``retry``: ``always`` validates every client's address with a Retry
    round trip (RFC 9000 8.1.2) before a connection is made for it; ``auto``
    does so once half of ``max_connections`` are taken, so a flood of
    spoofed Initial packets cannot fill the rest; ``never`` does not.
    Past ``max_connections`` a new client gets CONNECTION_REFUSED.
    """

    def __init__(
        self,
        config: Config,
        configuration: QuicConfiguration,
        *,
        retry: RetryMode,
        max_connections: int,
        default_headers: Callable[[], Headers],
    ) -> None:
        self._config = config
        self._configuration = configuration
        self._retry_mode = retry
        self._max_connections = max_connections
        self._default_headers = default_headers
        self._versions = list(configuration.supported_versions)
        self._tokens: QuicRetryTokenHandler | None = None
        self._routes: dict[bytes, T] = {}
        self._cids: dict[T, set[bytes]] = {}
        #: False once the server shuts down: new clients are refused.
        self.accepting = True
        #: How many Retry packets were sent (the address validations asked for).
        self.retries = 0
        #: How many new clients were refused (the limit, a shutdown).
        self.refused = 0

    @property
    def connections(self) -> int:
        return len(self._cids)

    def route(self, data: bytes, addr: Address, now: float) -> T | Opened | bytes | None:
        """Where a datagram goes: a connection's handle, a new connection,
        an answer to send back to ``addr`` (bytes), or nowhere (None)."""
        try:
            header = pull_quic_header(Buffer(data=data), host_cid_length=CID_LENGTH)
        except ValueError:
            return None
        known = self._routes.get(header.destination_cid)
        if known is not None:
            return known
        if header.packet_type is QuicPacketType.VERSION_NEGOTIATION:
            return None  # never answered (RFC 9000 6.1), lest two servers loop
        if len(data) < SMALLEST_MAX_DATAGRAM_SIZE:
            # Too small to open a connection (RFC 9000 14.1), and so to earn
            # any answer: one larger than the input would amplify.
            return None
        if header.version is not None and header.version not in self._versions:
            # RFC 9000 6.1: a client trying a version we lack learns ours.
            return encode_quic_version_negotiation(
                source_cid=header.destination_cid,
                destination_cid=header.source_cid,
                supported_versions=self._versions,
            )
        if header.packet_type is not QuicPacketType.INITIAL or header.version is None:
            return None  # a lost connection's packet: nothing to say to it
        version = header.version
        if not self.accepting or len(self._cids) >= self._max_connections:
            self.refused += 1
            return _initial_close(
                version, header.destination_cid, header.source_cid, QuicErrorCode.CONNECTION_REFUSED
            )
        original = header.destination_cid
        retry_source: bytes | None = None
        if self._wants_retry():
            tokens = self._token_handler()
            if not header.token:
                self.retries += 1
                source = os.urandom(CID_LENGTH)
                return encode_quic_retry(
                    version=version,
                    source_cid=source,
                    destination_cid=header.source_cid,
                    original_destination_cid=header.destination_cid,
                    retry_token=tokens.create_token(
                        address=addr,
                        original_destination_connection_id=header.destination_cid,
                        retry_source_connection_id=source,
                        now=now,
                    ),
                )
            try:
                original = tokens.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
            except ValueError:
                # RFC 9000 8.1.3: a token we cannot use ends the attempt.
                return _initial_close(
                    version,
                    header.destination_cid,
                    header.source_cid,
                    QuicErrorCode.INVALID_TOKEN,
                )
            retry_source = header.destination_cid
        elif header.token and self._tokens is not None:
            # A client answering an earlier Retry after we stopped asking:
            # its token still says which connection ID it began with.
            try:
                original = self._tokens.validate_token(
                    address=addr,
                    destination_cid=header.destination_cid,
                    token=header.token,
                    now=now,
                )
                retry_source = header.destination_cid
            except ValueError:
                original = header.destination_cid
        protocol = HTTP3Protocol(
            self._config,
            self._configuration,
            original_destination_connection_id=original,
            retry_source_connection_id=retry_source,
            default_headers=self._default_headers,
            now=now,
        )
        return Opened(protocol)

    def _wants_retry(self) -> bool:
        match self._retry_mode:
            case "always":
                return True
            case "never":
                return False
            case "auto":
                return 2 * len(self._cids) >= self._max_connections
        return False  # pragma: no cover - the Literal is exhausted above

    def _token_handler(self) -> QuicRetryTokenHandler:
        if self._tokens is None:
            self._tokens = QuicRetryTokenHandler()
        return self._tokens

    # -- the connection ID map --------------------------------------------------

    def register(self, handle: T, protocol: HTTP3Protocol) -> None:
        """Route the new connection's IDs (its first packet's among them) to ``handle``."""
        cids = self._cids.setdefault(handle, set())
        for cid in protocol.host_connection_ids:
            cids.add(cid)
            self._routes[cid] = handle
        self.update(handle, protocol)

    def update(self, handle: T, protocol: HTTP3Protocol) -> None:
        """Take in the connection IDs the connection issued and retired since the last call."""
        issued, retired = protocol.connection_id_changes()
        cids = self._cids.get(handle)
        if cids is None:
            return
        for cid in issued:
            cids.add(cid)
            self._routes[cid] = handle
        for cid in retired:
            cids.discard(cid)
            if self._routes.get(cid) is handle:
                del self._routes[cid]

    def forget(self, handle: T) -> None:
        """The connection is over: its IDs route nowhere now."""
        for cid in self._cids.pop(handle, ()):
            if self._routes.get(cid) is handle:
                del self._routes[cid]


def _initial_close(version: int, client_dcid: bytes, client_scid: bytes, code: int) -> bytes:
    """An Initial packet closing the attempt with ``code`` (RFC 9000 10.2.3).

    Initial keys come from the client's destination ID (RFC 9001 5.2), so
    this needs no connection state; it is smaller than the 1200-byte
    datagram it answers.
    """
    crypto = CryptoPair()
    crypto.setup_initial(cid=client_dcid, is_client=False, version=version)
    builder = QuicPacketBuilder(
        host_cid=client_dcid,
        is_client=False,
        max_datagram_size=SMALLEST_MAX_DATAGRAM_SIZE,
        peer_cid=client_scid,
        version=version,
    )
    builder.start_packet(QuicPacketType.INITIAL, crypto)
    frame = builder.start_frame(QuicFrameType.TRANSPORT_CLOSE, capacity=32)
    frame.push_uint_var(code)
    frame.push_uint_var(QuicFrameType.PADDING)  # no frame caused it
    frame.push_uint_var(0)  # no reason phrase
    datagrams, _ = builder.flush()
    return datagrams[0]
