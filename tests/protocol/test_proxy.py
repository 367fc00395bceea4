"""The PROXY protocol reader, v1 and v2, from bytes: no event loop, no sockets.

Version 2 headers are packed here by hand from the spec's layout
(haproxy.org proxy-protocol.txt, section 2.2), not by the code under test.
"""

from __future__ import annotations

import ipaddress
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tricorn._protocol.proxy import V2_SIGNATURE, ProxyHeader, ProxyHeaderReader
from tricorn.errors import PeerProtocolError

REQUEST = b"GET / HTTP/1.1\r\nHost: a\r\n\r\n"


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


def v2(
    *,
    command: int = 1,
    family: int = 1,
    transport: int = 1,
    source: str = "203.0.113.7",
    destination: str = "192.0.2.1",
    ports: tuple[int, int] = (56324, 443),
    tlvs: bytes = b"",
) -> bytes:
    addresses = b""
    if family in (1, 2):
        addresses = (
            ipaddress.ip_address(source).packed
            + ipaddress.ip_address(destination).packed
            + struct.pack("!HH", *ports)
        )
    elif family == 3:
        addresses = b"/tmp/a".ljust(108, b"\0") + b"/tmp/b".ljust(108, b"\0")
    body = addresses + tlvs
    return (
        V2_SIGNATURE
        + bytes([0x20 | command, family << 4 | transport])
        + struct.pack("!H", len(body))
        + body
    )


def read(data: bytes) -> tuple[ProxyHeader, bytes]:
    result = ProxyHeaderReader().feed(data)
    assert result is not None
    return result


# -- version 1 ---------------------------------------------------------------


def test_v1_tcp4_gives_both_addresses_and_leaves_the_request() -> None:
    header, rest = read(b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" + REQUEST)
    assert header == ProxyHeader(("203.0.113.7", 56324), ("192.0.2.1", 443))
    assert rest == REQUEST


def test_v1_tcp6() -> None:
    header, _ = read(b"PROXY TCP6 2001:db8::7 2001:db8::1 4000 8443\r\n")
    assert header.client == ("2001:db8::7", 4000)
    assert header.server == ("2001:db8::1", 8443)


def test_v1_unknown_keeps_the_socket_peer() -> None:
    header, rest = read(b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\nX")
    assert header == ProxyHeader(None, None)
    assert rest == b"X"


def test_v1_arriving_a_byte_at_a_time() -> None:
    reader = ProxyHeaderReader()
    line = b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n"
    for byte in line[:-1]:
        assert reader.feed(bytes([byte])) is None
    result = reader.feed(line[-1:] + b"tail")
    assert result is not None
    assert result[1] == b"tail"


@pytest.mark.parametrize(
    "line",
    [
        b"PROXY TCP4 203.0.113.7 192.0.2.1 56324\r\n",  # a port missing
        b"PROXY TCP4 2001:db8::7 192.0.2.1 1 2\r\n",  # family mismatch
        b"PROXY TCP4 203.0.113.300 192.0.2.1 1 2\r\n",  # not an address
        b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 443\r\n",  # port too large
        b"PROXY TCP4 203.0.113.7 192.0.2.1 080 443\r\n",  # leading zero
        b"PROXY UDP4 203.0.113.7 192.0.2.1 1 2\r\n",
        b"PROXY TCP4  203.0.113.7 192.0.2.1 1 2\r\n",  # two spaces
        b"PROXY TCP4 203.0.113.7 192.0.2.1 1 2 " + b"x" * 80 + b"\r\n",  # over 107 bytes
    ],
)
def test_v1_malformed_lines_are_refused(line: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        ProxyHeaderReader().feed(line)


def test_v1_line_without_end_is_refused_at_107_bytes() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 " + b"1" * 90) is None
    with pytest.raises(PeerProtocolError):
        reader.feed(b"1" * 10)


@pytest.mark.parametrize(
    "data", [REQUEST, b"\x16\x03\x01\x02\x00", b"PRI * HTTP/2.0\r\n", b"proxy tcp4"]
)
def test_a_client_that_does_not_speak_proxy_is_refused_at_its_first_bytes(data: bytes) -> None:
    with pytest.raises(PeerProtocolError, match="no PROXY protocol header"):
        ProxyHeaderReader().feed(data)


def test_a_close_inside_the_header_is_refused() -> None:
    reader = ProxyHeaderReader()
    assert reader.feed(b"PROXY TCP4 1.2") is None
    with pytest.raises(PeerProtocolError):
        reader.feed(b"")


# -- version 2 ---------------------------------------------------------------


def test_v2_tcp4() -> None:
    header, rest = read(v2() + REQUEST)
    assert header == ProxyHeader(("203.0.113.7", 56324), ("192.0.2.1", 443))
    assert rest == REQUEST


def test_v2_tcp6() -> None:
    header, _ = read(v2(family=2, source="2001:db8::7", destination="2001:db8::1"))
    assert header.client == ("2001:db8::7", 56324)
    assert header.server == ("2001:db8::1", 443)


def test_v2_local_is_the_proxy_itself_and_keeps_the_socket_peer() -> None:
    header, rest = read(v2(command=0) + b"after")
    assert header == ProxyHeader(None, None)
    assert rest == b"after"


@pytest.mark.parametrize(("family", "transport"), [(0, 0), (3, 1), (1, 2)])
def test_v2_without_tcp_addresses_keeps_the_socket_peer(family: int, transport: int) -> None:
    header, _ = read(v2(family=family, transport=transport))
    assert header.client is None


def test_v2_tls_fields_reach_the_header() -> None:
    ssl = (
        bytes([0x01])  # PP2_CLIENT_SSL
        + struct.pack("!I", 0)  # verify: the certificate was verified
        + tlv(0x21, b"TLSv1.3")
        + tlv(0x23, b"TLS_AES_128_GCM_SHA256")
        + tlv(0x22, b"alice, admin")
    )
    tlvs = tlv(0x04, b"\0\0") + tlv(0x02, b"example.com") + tlv(0x01, b"h2") + tlv(0x20, ssl)
    header, _ = read(v2(tlvs=tlvs))
    assert header.tls
    assert header.tls_version == 0x0304
    assert header.tls_cipher == "TLS_AES_128_GCM_SHA256"
    assert header.client_cert_name == "CN=alice\\, admin"
    assert header.authority == "example.com"
    assert header.alpn == b"h2"


def test_v2_arriving_in_pieces() -> None:
    data = v2(tlvs=tlv(0x02, b"example.com")) + b"rest"
    reader = ProxyHeaderReader()
    for index in range(len(data) - 5):
        assert reader.feed(data[index : index + 1]) is None
    result = reader.feed(data[len(data) - 5 :])
    assert result is not None
    assert result[0].authority == "example.com"
    assert result[1] == b"rest"


@pytest.mark.parametrize(
    "data",
    [
        V2_SIGNATURE[:11] + b"X" + bytes(4),  # a broken signature
        V2_SIGNATURE + bytes([0x11, 0x11, 0, 12]) + bytes(12),  # version 1 in v2 form
        V2_SIGNATURE + bytes([0x22, 0x11, 0, 12]) + bytes(12),  # command 2
        V2_SIGNATURE + bytes([0x21, 0x11, 0, 4]) + bytes(4),  # address block short
        v2(tlvs=b"\x02\x00\x09abc"),  # a TLV longer than what is left
        v2(tlvs=b"\x02\x00"),  # a TLV cut in its header
        v2(tlvs=tlv(0x20, b"\x01\x00")),  # an SSL field too short
        V2_SIGNATURE + bytes([0x21, 0x11]) + struct.pack("!H", 5000),  # too large
    ],
)
def test_v2_malformed_headers_are_refused(data: bytes) -> None:
    with pytest.raises(PeerProtocolError):
        ProxyHeaderReader().feed(data + bytes(5000))


@given(st.binary(max_size=300))
def test_any_bytes_give_a_header_or_a_refusal_never_a_crash(data: bytes) -> None:
    reader = ProxyHeaderReader()
    try:
        reader.feed(data)
        reader.feed(b"")
    except PeerProtocolError:
        pass


@given(st.data())
def test_any_split_of_a_header_gives_the_same_result(data: st.DataObject) -> None:
    wire = data.draw(
        st.sampled_from(
            [
                b"PROXY TCP4 203.0.113.7 192.0.2.1 56324 443\r\n" + REQUEST,
                v2(tlvs=tlv(0x02, b"example.com")) + REQUEST,
            ]
        )
    )
    cuts = sorted(data.draw(st.lists(st.integers(0, len(wire)), max_size=6)))
    pieces = [wire[a:b] for a, b in zip([0, *cuts], [*cuts, len(wire)], strict=True)]
    reader = ProxyHeaderReader()
    for index, piece in enumerate(pieces):
        if not piece:
            continue
        result = reader.feed(piece)
        if result is not None:
            header, rest = result
            assert header.client == ("203.0.113.7", 56324)
            assert rest + b"".join(pieces[index + 1 :]) == REQUEST
            return
    raise AssertionError("no header read")
