"""The PROXY protocol, versions 1 and 2: who the client is, said by a proxy in front.

A load balancer in TCP mode (HAProxy, nginx ``proxy_protocol``, Envoy, AWS
NLB) opens each connection with one header naming the client's and the
server's addresses, then relays the client's bytes unchanged, TLS included.
This reads that header: bytes in, a :class:`ProxyHeader` and the bytes after
it out. No I/O; the runtime decides whom to believe.

Version 1 is one text line (``PROXY TCP4 203.0.113.7 192.0.2.1 56324 443``),
at most 107 bytes. Version 2 is binary: a 12-byte signature, a command
(``LOCAL``: a health check from the proxy itself; ``PROXY``: relayed), the
address family, the addresses, then type-length-value fields, among them
what the proxy learnt from the client's TLS handshake.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Final

from ..errors import PeerProtocolError

__all__ = ["V1_PREFIX", "V2_SIGNATURE", "ProxyHeader", "ProxyHeaderReader"]

V1_PREFIX: Final = b"PROXY "
V2_SIGNATURE: Final = b"\r\n\r\n\x00\r\nQUIT\n"
#: The longest version 1 line, CRLF included.
_V1_MAX: Final = 107
#: The fixed part of a version 2 header: signature, command, family, length.
_V2_FIXED: Final = 16
#: The largest version 2 body accepted (addresses and TLVs). The format
#: allows 64 KiB; what proxies send is well under a kilobyte.
_V2_MAX_BODY: Final = 4096

# Version 2 TLV types (section 2.2 of the spec).
_PP2_TYPE_ALPN: Final = 0x01
_PP2_TYPE_AUTHORITY: Final = 0x02
_PP2_TYPE_SSL: Final = 0x20
_PP2_SUBTYPE_SSL_VERSION: Final = 0x21
_PP2_SUBTYPE_SSL_CN: Final = 0x22
_PP2_SUBTYPE_SSL_CIPHER: Final = 0x23
_PP2_CLIENT_SSL: Final = 0x01

#: TLS version names as proxies write them, and the numbers ASGI wants.
_TLS_VERSIONS: Final = {
    "TLSv1": 0x0301,
    "TLSv1.0": 0x0301,
    "TLSv1.1": 0x0302,
    "TLSv1.2": 0x0303,
    "TLSv1.3": 0x0304,
}


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    """What the proxy said. ``client`` is None when it relays nobody (a ``LOCAL``
    health check, ``UNKNOWN``, or a family without addresses): the connection's
    own peer stands."""

    client: tuple[str, int] | None
    server: tuple[str, int] | None
    #: The client reached the proxy over TLS (version 2, PP2_CLIENT_SSL).
    tls: bool = False
    #: e.g. 0x0304 for TLS 1.3, as the ASGI TLS extension writes it.
    tls_version: int | None = None
    tls_cipher: str | None = None
    #: The client certificate's subject (its common name, as ``CN=...``).
    client_cert_name: str | None = None
    #: The host name the client asked for (SNI), and the protocol ALPN chose.
    authority: str | None = None
    alpn: bytes | None = None


class ProxyHeaderReader:
    """Collects bytes until a whole PROXY header is in; raises PeerProtocolError
    on anything else (a client that does not speak it, a malformed header)."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> tuple[ProxyHeader, bytes] | None:
        """The header and the bytes after it, or None while it is incomplete.

        ``b""`` means the peer closed: an incomplete header is then an error.
        """
        self._buffer += data
        result = self._parse()
        if result is None and not data:
            raise PeerProtocolError("the connection closed inside the PROXY protocol header")
        return result

    def _parse(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        if buffer[:1] == V2_SIGNATURE[:1]:
            if not V2_SIGNATURE.startswith(bytes(buffer[:12])):
                raise PeerProtocolError("no PROXY protocol header")
            return self._v2()
        if not V1_PREFIX.startswith(bytes(buffer[:6])):
            raise PeerProtocolError("no PROXY protocol header")
        end = buffer.find(b"\r\n", 0, _V1_MAX)
        if end < 0:
            if len(buffer) >= _V1_MAX:
                raise PeerProtocolError("PROXY protocol v1 line too long")
            return None
        header = _parse_v1(bytes(buffer[len(V1_PREFIX) : end]))
        return header, bytes(buffer[end + 2 :])

    def _v2(self) -> tuple[ProxyHeader, bytes] | None:
        buffer = self._buffer
        if len(buffer) < _V2_FIXED:
            return None
        version, command = buffer[12] >> 4, buffer[12] & 0x0F
        if version != 2 or command not in (0, 1):
            raise PeerProtocolError("unsupported PROXY protocol v2 version or command")
        length = int.from_bytes(buffer[14:16])
        if length > _V2_MAX_BODY:
            raise PeerProtocolError("PROXY protocol v2 header too large")
        if len(buffer) < _V2_FIXED + length:
            return None
        body = bytes(buffer[_V2_FIXED : _V2_FIXED + length])
        rest = bytes(buffer[_V2_FIXED + length :])
        family, transport = buffer[13] >> 4, buffer[13] & 0x0F
        if command == 0:
            return ProxyHeader(None, None), rest  # LOCAL: the proxy's own check
        return _parse_v2(family, transport, body), rest


def _parse_v1(line: bytes) -> ProxyHeader:
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise PeerProtocolError("malformed PROXY protocol v1 line") from None
    parts = text.split(" ")
    if parts[0] == "UNKNOWN":
        return ProxyHeader(None, None)
    if len(parts) != 5 or parts[0] not in ("TCP4", "TCP6"):
        raise PeerProtocolError("malformed PROXY protocol v1 line")
    version = 4 if parts[0] == "TCP4" else 6
    source = _ip(parts[1], version)
    destination = _ip(parts[2], version)
    return ProxyHeader((source, _port(parts[3])), (destination, _port(parts[4])))


def _ip(text: str, version: int) -> str:
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        raise PeerProtocolError("malformed address in PROXY protocol header") from None
    if address.version != version:
        raise PeerProtocolError("address family mismatch in PROXY protocol header")
    return str(address)


def _port(text: str) -> int:
    if not text.isdigit() or len(text) > 5 or (len(text) > 1 and text[0] == "0"):
        raise PeerProtocolError("malformed port in PROXY protocol header")
    port = int(text)
    if port > 65535:
        raise PeerProtocolError("malformed port in PROXY protocol header")
    return port


#: Address block sizes by family: AF_INET, AF_INET6 (AF_UNIX carries paths).
_ADDRESS_SIZES: Final = {1: 12, 2: 36, 3: 216}


def _parse_v2(family: int, transport: int, body: bytes) -> ProxyHeader:
    size = _ADDRESS_SIZES.get(family, 0)
    if len(body) < size:
        raise PeerProtocolError("PROXY protocol v2 address block too short")
    client = server = None
    if family in (1, 2) and transport == 1:  # TCP over IPv4 or IPv6
        width = 4 if family == 1 else 16
        source = ipaddress.ip_address(body[:width])
        destination = ipaddress.ip_address(body[width : 2 * width])
        ports = body[2 * width : 2 * width + 4]
        client = (str(source), int.from_bytes(ports[:2]))
        server = (str(destination), int.from_bytes(ports[2:]))
    fields = _tlvs(body[size:])
    tls = fields.get(_PP2_TYPE_SSL)
    details: dict[int, bytes] = {}
    client_ssl = False
    if tls is not None:
        if len(tls) < 5:
            raise PeerProtocolError("malformed PROXY protocol v2 SSL field")
        client_ssl = bool(tls[0] & _PP2_CLIENT_SSL)
        details = _tlvs(tls[5:])
    version = details.get(_PP2_SUBTYPE_SSL_VERSION)
    return ProxyHeader(
        client,
        server,
        tls=client_ssl,
        tls_version=_TLS_VERSIONS.get(version.decode("ascii", "replace")) if version else None,
        tls_cipher=_text(details.get(_PP2_SUBTYPE_SSL_CIPHER)),
        client_cert_name=_distinguished_name(details.get(_PP2_SUBTYPE_SSL_CN)),
        authority=_text(fields.get(_PP2_TYPE_AUTHORITY)),
        alpn=fields.get(_PP2_TYPE_ALPN),
    )


def _tlvs(data: bytes) -> dict[int, bytes]:
    """Type-length-value fields; the first of each type counts."""
    fields: dict[int, bytes] = {}
    offset = 0
    while offset < len(data):
        if offset + 3 > len(data):
            raise PeerProtocolError("malformed PROXY protocol v2 TLV")
        kind = data[offset]
        length = int.from_bytes(data[offset + 1 : offset + 3])
        end = offset + 3 + length
        if end > len(data):
            raise PeerProtocolError("malformed PROXY protocol v2 TLV")
        fields.setdefault(kind, data[offset + 3 : end])
        offset = end
    return fields


def _distinguished_name(common_name: bytes | None) -> str | None:
    """The certificate subject as ASGI writes it (RFC 4514), from the CN the proxy passed."""
    name = _text(common_name)
    if name is None:
        return None
    escaped = name.replace("\\", "\\\\").replace(",", "\\,").replace("+", "\\+")
    return f"CN={escaped}"


def _text(value: bytes | None) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", "replace")
