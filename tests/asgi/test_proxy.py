from __future__ import annotations

import pytest

from tricorn._asgi.proxy import ProxyTrust
from tricorn._asgi.scope import ConnectionInfo

LOOPBACK = ProxyTrust.parse(["127.0.0.1", "::1"])
VIA_PROXY = ConnectionInfo(client=("127.0.0.1", 51000), server=("127.0.0.1", 8000))
DIRECT = ConnectionInfo(client=("203.0.113.9", 51000), server=("0.0.0.0", 8000))


def test_a_trusted_proxy_supplies_client_and_scheme() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-proto", b"https")]
    info = LOOPBACK.resolve(VIA_PROXY, headers)
    assert info.client == ("198.51.100.7", 0)
    assert info.scheme == "https"
    assert info.server == VIA_PROXY.server


def test_an_untrusted_peer_is_not_a_proxy() -> None:
    assert LOOPBACK.trusts_peer(VIA_PROXY)
    assert not LOOPBACK.trusts_peer(DIRECT)


def test_the_nearest_untrusted_hop_is_the_client() -> None:
    trust = ProxyTrust.parse(["127.0.0.1", "10.0.0.0/8"])
    # The client claimed 1.1.1.1; the real client 198.51.100.7 went through
    # two of our proxies (10.x), and the claim must not win.
    headers = [(b"x-forwarded-for", b"1.1.1.1, 198.51.100.7, 10.0.0.2, 10.0.0.3")]
    assert trust.resolve(VIA_PROXY, headers).client == ("198.51.100.7", 0)


def test_when_every_hop_is_trusted_the_farthest_is_the_client() -> None:
    headers = [(b"x-forwarded-for", b"127.0.0.1, 127.0.0.1")]
    assert LOOPBACK.resolve(VIA_PROXY, headers).client == ("127.0.0.1", 0)


def test_repeated_forwarded_for_headers_are_one_list() -> None:
    headers = [(b"x-forwarded-for", b"198.51.100.7"), (b"x-forwarded-for", b"127.0.0.1")]
    assert LOOPBACK.resolve(VIA_PROXY, headers).client == ("198.51.100.7", 0)


@pytest.mark.parametrize(
    ("value", "scheme"),
    [(b"https, http", "http"), (b"HTTPS", "https"), (b"gopher", "http"), (b"", "http")],
)
def test_the_last_recognised_proto_wins(value: bytes, scheme: str) -> None:
    assert LOOPBACK.resolve(VIA_PROXY, [(b"x-forwarded-proto", value)]).scheme == scheme


def test_a_unix_socket_peer_is_trusted() -> None:
    unix = ConnectionInfo(client=None, server=("/run/app.sock", None))
    assert LOOPBACK.trusts_peer(unix)
    info = LOOPBACK.resolve(unix, [(b"x-forwarded-for", b"198.51.100.7")])
    assert info.client == ("198.51.100.7", 0)


def test_star_trusts_everyone() -> None:
    everyone = ProxyTrust.parse(["*"])
    assert everyone.trusts_peer(DIRECT)
    assert everyone.resolve(DIRECT, [(b"x-forwarded-for", b"198.51.100.7")]).client == (
        "198.51.100.7",
        0,
    )


def test_no_headers_leave_the_connection_as_it_is() -> None:
    assert LOOPBACK.resolve(VIA_PROXY, [(b"host", b"example.com")]) is VIA_PROXY


# -- RFC 7239 Forwarded ------------------------------------------------------------


def test_forwarded_gives_client_port_scheme_and_host() -> None:
    headers = [(b"forwarded", b'for="[2001:db8::7]:4711";proto=https;host=example.com')]
    info = LOOPBACK.resolve(VIA_PROXY, headers)
    assert info.client == ("2001:db8::7", 4711)
    assert info.scheme == "https"
    assert info.server == ("example.com", 443)
    assert info.host == b"example.com"


def test_forwarded_takes_the_right_most_untrusted_hop_and_its_own_fields() -> None:
    trust = ProxyTrust.parse(["127.0.0.1", "10.0.0.0/8"])
    headers = [
        (b"forwarded", b"for=1.1.1.1;proto=http;host=spoofed.example"),  # the client's claim
        (b"forwarded", b"for=198.51.100.7;proto=https;host=shop.example, for=10.0.0.2"),
    ]
    info = trust.resolve(VIA_PROXY, headers)
    assert info.client == ("198.51.100.7", 0)
    assert info.scheme == "https"
    assert info.host == b"shop.example"


def test_forwarded_wins_over_x_forwarded() -> None:
    headers = [(b"x-forwarded-for", b"1.1.1.1"), (b"forwarded", b"for=198.51.100.7")]
    assert LOOPBACK.resolve(VIA_PROXY, headers).client == ("198.51.100.7", 0)


@pytest.mark.parametrize("node", [b"unknown", b"_hidden", b'"_x:1"'])
def test_a_forwarded_client_without_an_address_is_none(node: bytes) -> None:
    assert LOOPBACK.resolve(VIA_PROXY, [(b"forwarded", b"for=" + node)]).client is None


def test_forwarded_quoted_strings_may_hold_separators() -> None:
    headers = [(b"forwarded", b'for=198.51.100.7;host="a.example:8443";by="x;y,z"')]
    info = LOOPBACK.resolve(VIA_PROXY, headers)
    assert info.client == ("198.51.100.7", 0)
    assert info.server == ("a.example", 8443)


# -- X-Forwarded-Host, -Port, -Prefix --------------------------------------------


def test_x_forwarded_host_port_and_prefix_move_server_host_and_root_path() -> None:
    headers = [
        (b"x-forwarded-for", b"198.51.100.7"),
        (b"x-forwarded-proto", b"https"),
        (b"x-forwarded-host", b"shop.example"),
        (b"x-forwarded-port", b"8443"),
        (b"x-forwarded-prefix", b"/store/"),
    ]
    info = LOOPBACK.resolve(VIA_PROXY, headers)
    assert info.server == ("shop.example", 8443)
    assert info.host == b"shop.example"
    assert info.root_path == "/store"


@pytest.mark.parametrize("prefix", [b"/", b"", b"/a b"])
def test_a_prefix_that_is_no_path_is_ignored(prefix: bytes) -> None:
    info = LOOPBACK.resolve(VIA_PROXY, [(b"x-forwarded-prefix", prefix)])
    assert info.root_path is None


def test_an_untrusted_peer_moves_nothing() -> None:
    # resolve() is asked only for trusted peers; trust decides that.
    assert not LOOPBACK.trusts_peer(DIRECT)
