"""The QUIC endpoint's router, sans-IO: routes, stateless answers, limits, and the fuzz corpus."""

from __future__ import annotations

import importlib.util
import os
import sys
from pathlib import Path
from types import ModuleType

import pytest

try:
    import aioquic  # noqa: F401
except ImportError:  # pragma: no cover - depends on the environment
    if os.environ.get("CI"):
        raise
    pytest.skip("aioquic is not installed (pip install 'tricorn[h3]')", allow_module_level=True)

from aioquic.buffer import Buffer
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicPacketType, pull_quic_header
from hypothesis import given, settings
from hypothesis import strategies as st

from tricorn import Config
from tricorn._protocol.http3 import HTTP3Protocol
from tricorn._protocol.quic_endpoint import Opened, QuicRouter, RetryMode

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ / "corpus" / "quic"
ADDRESS = ("192.0.2.1", 50000)


def _load_harness() -> ModuleType:
    sys.path.insert(0, str(FUZZ))
    spec = importlib.util.spec_from_file_location("fuzz_quic", FUZZ / "fuzz_quic.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


harness = _load_harness()
SEEDS = sorted(CORPUS.iterdir())


def router(retry: RetryMode = "never", max_connections: int = 10) -> QuicRouter[HTTP3Protocol]:
    return QuicRouter(
        Config(),
        harness.configuration(),
        retry=retry,
        max_connections=max_connections,
        default_headers=tuple,
    )


def first_flight() -> list[bytes]:
    client = QuicConnection(configuration=QuicConfiguration(is_client=True, alpn_protocols=["h3"]))
    client.connect(ADDRESS, now=1.0)
    return [data for data, _ in client.datagrams_to_send(1.0)]


def packet_type(datagram: bytes) -> QuicPacketType:
    return pull_quic_header(Buffer(data=datagram), host_cid_length=8).packet_type


def test_an_initial_opens_a_connection_and_its_ids_route_to_it() -> None:
    routes = router()
    first = first_flight()[0]
    opened = routes.route(first, ADDRESS, 1.0)
    assert isinstance(opened, Opened)
    routes.register(opened.protocol, opened.protocol)
    # The client's next datagrams carry the same destination ID.
    assert routes.route(first, ADDRESS, 1.1) is opened.protocol
    routes.forget(opened.protocol)
    assert routes.connections == 0
    assert isinstance(routes.route(first, ADDRESS, 1.2), Opened)


def test_an_unknown_version_is_answered_with_version_negotiation() -> None:
    answer = router().route(b"\xc0\x1a\x2b\x3c\x4d\x08" + bytes(9) + bytes(1200), ADDRESS, 1.0)
    assert isinstance(answer, bytes)
    assert packet_type(answer) is QuicPacketType.VERSION_NEGOTIATION


def test_small_datagrams_for_no_connection_get_no_answer() -> None:
    assert router().route(b"\xc0\x1a\x2b\x3c\x4d\x08" + bytes(9) + bytes(100), ADDRESS, 1.0) is None
    assert router().route(first_flight()[0][:1100], ADDRESS, 1.0) is None


def test_retry_always_answers_a_first_initial_with_retry() -> None:
    routes = router("always")
    answer = routes.route(first_flight()[0], ADDRESS, 1.0)
    assert isinstance(answer, bytes)
    assert packet_type(answer) is QuicPacketType.RETRY
    assert routes.retries == 1


def test_past_the_limit_a_client_is_refused_with_a_small_initial() -> None:
    routes = router(max_connections=1)
    opened = routes.route(first_flight()[0], ADDRESS, 1.0)
    assert isinstance(opened, Opened)
    routes.register(opened.protocol, opened.protocol)
    refusal = routes.route(first_flight()[0], ADDRESS, 1.0)
    assert isinstance(refusal, bytes)
    assert packet_type(refusal) is QuicPacketType.INITIAL
    assert len(refusal) < 1200
    assert routes.refused == 1


def test_a_server_that_stopped_accepting_refuses_new_clients() -> None:
    routes = router()
    routes.accepting = False
    assert isinstance(routes.route(first_flight()[0], ADDRESS, 1.0), bytes)


def test_the_corpus_has_seeds() -> None:
    assert len(SEEDS) >= 5


@pytest.mark.parametrize("seed", SEEDS, ids=[seed.name for seed in SEEDS])
def test_corpus_seed_keeps_the_invariants(seed: Path) -> None:
    harness.test_one_input(seed.read_bytes())


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=4096))
def test_any_input_keeps_the_invariants(data: bytes) -> None:
    harness.test_one_input(data)


@settings(max_examples=50, deadline=None)
@given(st.integers(0, 1199), st.integers(0, 255))
def test_a_real_initial_cut_short_or_flipped_keeps_the_invariants(cut: int, flags: int) -> None:
    first = first_flight()[0]
    mangled = bytearray(first)
    mangled[cut] ^= 0xFF
    harness.test_one_input(bytes(mangled) + bytes([0, flags]))
