"""Fuzz the QUIC endpoint: any datagrams in -> a route, a small answer, or events.

Run it under atheris (``python fuzz/fuzz_quic.py fuzz/corpus/quic``), or call
:func:`test_one_input` from plain Python (``tests/protocol/test_quic_endpoint.py``
replays the corpus that way).

Input layout: the datagrams' bytes from the front; from the back (read by
``ConsumeIntInRange``) a flags byte, a count of split points (0..15) and two
bytes per split point (the length of each datagram before the rest). The
seeds (``make_seeds``) include a real client's first flight, so the path
past the header parser (Initial decryption, the TLS handshake) is reached.

Invariants checked:

* :meth:`QuicRouter.route` never raises, and answers (Version Negotiation,
  Retry, a refusal) only datagrams of 1200 bytes or more, with fewer bytes
  than they carry (RFC 9000 8: no amplification);
* a connection fed any datagram returns only protocol events, and its
  ``datagrams_to_send`` and timer never raise;
* the connection ID map forgets every ID of a forgotten connection.

Any other exception, or a failed assertion, is a crash.
"""

from __future__ import annotations

import sys
import typing
from functools import cache
from pathlib import Path
from typing import Any, Final

import trustme
from aioquic.quic.configuration import QuicConfiguration

from tricorn._protocol.events import Event
from tricorn._protocol.http3 import HTTP3Protocol, server_configuration
from tricorn._protocol.quic_endpoint import Opened, QuicRouter, RetryMode
from tricorn.config import Config

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fuzz_http1 import DataProvider, PurePythonDataProvider, fuzz

ADDRESS: Final = ("192.0.2.1", 50000)
_EVENT_TYPES: Final = typing.get_args(Event)
_RETRY: Final[tuple[RetryMode, ...]] = ("never", "always", "auto")
_MAX_DATAGRAM: Final = 2048


def make_provider(data: bytes) -> DataProvider:
    return PurePythonDataProvider(data)


@cache
def configuration() -> QuicConfiguration:
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", key_type=trustme.KeyType.ECDSA)
    chain = b"".join(blob.bytes() for blob in leaf.cert_chain_pems)
    return server_configuration(
        Config(), certificate_chain=chain, private_key=leaf.private_key_pem.bytes()
    )


def test_one_input(data: bytes) -> None:
    provider = make_provider(data)
    flags = provider.ConsumeIntInRange(0, 255)
    splits = [
        provider.ConsumeIntInRange(0, _MAX_DATAGRAM)
        for _ in range(provider.ConsumeIntInRange(0, 15))
    ]
    payload = provider.ConsumeBytes(provider.remaining_bytes())
    datagrams = []
    for size in splits:
        datagrams.append(payload[:size])
        payload = payload[size:]
    datagrams.append(payload)
    router: QuicRouter[HTTP3Protocol] = QuicRouter(
        Config(),
        configuration(),
        retry=_RETRY[flags % 3],
        max_connections=1 + (flags >> 2) % 2,
        default_headers=tuple,
    )
    now = 1.0
    opened: list[HTTP3Protocol] = []
    for datagram in datagrams:
        now += 0.01
        target: Any = router.route(datagram, ADDRESS, now)
        if target is None:
            continue
        if isinstance(target, bytes):
            assert len(datagram) >= 1200, "answered a datagram too small to open a connection"
            assert len(target) <= len(datagram), "an answer larger than its datagram"
            continue
        if isinstance(target, Opened):
            router.register(target.protocol, target.protocol)
            opened.append(target.protocol)
            target = target.protocol
        assert isinstance(target, HTTP3Protocol)
        events = target.receive_datagram(datagram, ADDRESS, now)
        assert all(isinstance(event, _EVENT_TYPES) for event in events), events
        target.datagrams_to_send(now)
        router.update(target, target)
        timer = target.next_timer()
        if flags & 0x08 and timer is not None:
            target.handle_timer(max(now, timer))
            target.datagrams_to_send(max(now, timer))
    for protocol in opened:
        router.forget(protocol)
    assert router.connections == 0
    assert not router._routes, "a forgotten connection's ID still routes"


def make_seeds() -> dict[str, bytes]:
    """Seeds: garbage, an unknown version, and a real client's first flight."""
    from aioquic.quic.connection import QuicConnection

    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    client.connect(ADDRESS, now=1.0)
    first = [data for data, _ in client.datagrams_to_send(1.0)]

    def seed(datagrams: list[bytes], flags: int) -> bytes:
        splits = [len(d) for d in datagrams[:-1]]
        tail = b"".join(size.to_bytes(2, "little") for size in reversed(splits))
        return b"".join(datagrams) + tail + bytes([len(splits), flags])

    unknown = b"\xc0\x1a\x2b\x3c\x4d\x08" + b"unknown!" + b"\x00" + bytes(1200)
    return {
        "garbage": seed([b"\x00" * 30, b"\xff" * 1300], 0),
        "short-header": seed([b"\x40" + bytes(40)], 0),
        "unknown-version": seed([unknown], 0),
        "initial": seed(first, 0),
        "initial-retry": seed(first, 1),
        "initial-timer": seed(first + first, 8),
    }


_INSTRUMENTED = ("tricorn._protocol", "aioquic", __name__)


def main() -> None:
    fuzz(sys.modules[__name__], _INSTRUMENTED)


if __name__ == "__main__":
    main()
