"""Run every fuzz/fuzz_*.py harness under atheris for a bounded time.

    FUZZ_SECONDS=60 python fuzz/run_all.py

Each harness runs in its own subprocess with libFuzzer's
``-max_total_time=FUZZ_SECONDS``, its seed corpus ``fuzz/corpus/<name>/``
(``fuzz_http1.py`` -> ``corpus/http1``, ``fuzz_websocket.py`` ->
``corpus/websocket``, ``fuzz_http2.py`` -> ``corpus/http2``) and crash files
written to ``fuzz/crashes/<name>/``.
New inputs found during the run go to a scratch directory, so the checked-in
seed corpus only changes by hand. Exits non-zero if any harness crashed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

FUZZ = Path(__file__).resolve().parent
CORPUS = FUZZ / "corpus"
CRASHES = FUZZ / "crashes"


def run(harness: Path, seconds: int) -> int:
    name = harness.stem.removeprefix("fuzz_")
    seeds = CORPUS / name
    crashes = CRASHES / name
    crashes.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f"tricorn-fuzz-{name}-") as scratch:
        command = [
            sys.executable,
            str(harness),
            scratch,  # the first corpus dir receives new inputs
            *([str(seeds)] if seeds.is_dir() else []),
            f"-max_total_time={seconds}",
            f"-artifact_prefix={crashes}{os.sep}",
            "-print_final_stats=1",
        ]
        print(f"== {harness.name}: {seconds}s", flush=True)
        # The harness prints libFuzzer's log; a crash is a non-zero exit.
        result = subprocess.run(command, cwd=FUZZ.parent, check=False)
    status = "ok" if result.returncode == 0 else f"CRASHED (exit {result.returncode})"
    print(f"== {harness.name}: {status}; crash files, if any, in {crashes}", flush=True)
    return result.returncode


def main() -> int:
    seconds = int(os.environ.get("FUZZ_SECONDS", "60"))
    harnesses = sorted(FUZZ.glob("fuzz_*.py"))
    if not harnesses:
        print("no fuzz/fuzz_*.py harness found", file=sys.stderr)
        return 1
    failed = [harness.name for harness in harnesses if run(harness, seconds) != 0]
    if failed:
        print(f"crashed: {', '.join(failed)}", file=sys.stderr)
        return 1
    print(f"all {len(harnesses)} harness(es) ran {seconds}s without a crash")
    return 0


if __name__ == "__main__":
    sys.exit(main())
