"""The fuzz corpora, replayed through their harnesses without atheris.

Every seed in ``fuzz/corpus/http1/`` runs through ``fuzz_http1.test_one_input``,
every seed in ``fuzz/corpus/websocket/`` through ``fuzz_websocket``'s and every
seed in ``fuzz/corpus/http2/`` through ``fuzz_http2``'s in the normal suite, so the harnesses and
their invariants stay exercised even where atheris is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ / "corpus" / "http1"
WS_CORPUS = FUZZ / "corpus" / "websocket"
H2_CORPUS = FUZZ / "corpus" / "http2"


def _load_harness(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


harness = _load_harness("fuzz_http1")
# Loaded second: it takes its data provider from the fuzz_http1 loaded above.
ws_harness = _load_harness("fuzz_websocket")
h2_harness = _load_harness("fuzz_http2")
SEEDS = sorted(CORPUS.iterdir())
WS_SEEDS = sorted(WS_CORPUS.iterdir())
H2_SEEDS = sorted(H2_CORPUS.iterdir())


@pytest.fixture(autouse=True)
def _harness_parser(http1_parser: str) -> Iterator[None]:
    """The harnesses drive the parser under test."""
    previous, harness.HTTP1_PARSER = harness.HTTP1_PARSER, http1_parser
    try:
        yield
    finally:
        harness.HTTP1_PARSER = previous


def test_the_corpus_has_a_dozen_or_more_seeds() -> None:
    assert len(SEEDS) >= 12


@pytest.mark.parametrize("seed", SEEDS, ids=[seed.name for seed in SEEDS])
def test_corpus_seed_runs_clean_through_the_harness(seed: Path) -> None:
    harness.test_one_input(seed.read_bytes())


def test_the_websocket_corpus_has_two_dozen_or_more_seeds() -> None:
    assert len(WS_SEEDS) >= 24


@pytest.mark.parametrize("seed", WS_SEEDS, ids=[seed.name for seed in WS_SEEDS])
def test_websocket_corpus_seed_runs_clean_through_the_harness(seed: Path) -> None:
    ws_harness.test_one_input(seed.read_bytes())


def test_the_http2_corpus_has_three_dozen_or_more_seeds() -> None:
    assert len(H2_SEEDS) >= 36


@pytest.mark.parametrize("seed", H2_SEEDS, ids=[seed.name for seed in H2_SEEDS])
def test_http2_corpus_seed_runs_clean_through_the_harness(seed: Path) -> None:
    h2_harness.test_one_input(seed.read_bytes())


@pytest.mark.parametrize(
    "module", [harness, ws_harness, h2_harness], ids=["http1", "websocket", "http2"]
)
def test_the_harness_does_not_import_atheris(module: ModuleType) -> None:
    assert "atheris" not in vars(module)
    assert module.make_provider is harness.PurePythonDataProvider


# One call to the data provider: ("bytes", count, _) or ("int", low, span).
calls = st.lists(
    st.tuples(
        st.sampled_from(["bytes", "int"]),
        st.integers(0, 5000),
        st.sampled_from([0, 1, 15, 255, 256, 4095, 4096, 65535, 2**20, 2**32 - 1]),
    ),
    max_size=12,
)


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris not installed")
@settings(max_examples=200, deadline=None)
@given(data=st.binary(max_size=64), script=calls)
def test_pure_python_provider_decodes_like_atheris(
    data: bytes, script: list[tuple[str, int, int]]
) -> None:
    import atheris

    theirs = atheris.FuzzedDataProvider(data)
    ours = harness.PurePythonDataProvider(data)
    for kind, number, span in script:
        if kind == "bytes":
            count = number % 41
            assert ours.ConsumeBytes(count) == theirs.ConsumeBytes(count)
        else:
            low, high = number, number + span
            assert ours.ConsumeIntInRange(low, high) == theirs.ConsumeIntInRange(low, high)
        assert ours.remaining_bytes() == theirs.remaining_bytes()
