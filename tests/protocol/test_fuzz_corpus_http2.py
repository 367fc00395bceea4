"""The HTTP/2 fuzz corpus, replayed through its harness without atheris.

Every seed in ``fuzz/corpus/http2/`` runs through ``fuzz_http2.test_one_input``
in the normal suite, so the harness and its invariants stay exercised even
where atheris is not installed.
"""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

FUZZ = Path(__file__).resolve().parents[2] / "fuzz"
CORPUS = FUZZ / "corpus" / "http2"


def _load_harness(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(name, FUZZ / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault(spec.name, module)
    spec.loader.exec_module(module)
    return module


_FIRST = "fuzz_http1" not in sys.modules
harness = _load_harness("fuzz_http2")
if _FIRST:
    # fuzz_http2 imported fuzz_http1 by name; test_fuzz_corpus.py loads its
    # own from the file and expects to be the one in sys.modules.
    del sys.modules["fuzz_http1"]
SEEDS = sorted(CORPUS.iterdir())


def test_the_http2_corpus_has_three_dozen_or_more_seeds() -> None:
    assert len(SEEDS) >= 36


@pytest.mark.parametrize("seed", SEEDS, ids=[seed.name for seed in SEEDS])
def test_http2_corpus_seed_runs_clean_through_the_harness(seed: Path) -> None:
    harness.test_one_input(seed.read_bytes())


def test_the_http2_harness_does_not_import_atheris() -> None:
    assert "atheris" not in vars(harness)
    # The data provider is fuzz_http1's, as for the other harnesses.
    assert harness.make_provider is harness.PurePythonDataProvider
    assert harness.PurePythonDataProvider.__module__ == "fuzz_http1"


def test_both_modes_are_in_the_corpus() -> None:
    modes = {seed.read_bytes()[0] & harness._FRAMES for seed in SEEDS}
    assert modes == {0, harness._FRAMES}
