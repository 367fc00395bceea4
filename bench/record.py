"""The one JSON shape every benchmark writes with ``--json``, which bench/report.py reads.

Each script keeps its own keys (``environment``, ``results``, ...) and adds these,
built here so that they mean the same thing everywhere::

    {
      "benchmark": "http1",                 # the name; docs/benchmarks/<name>.rst
      "title": "HTTP/1.1 hello world",
      "machine": {...},                     # machine(): where, when, how busy, which versions
      "scenarios": [                        # one table and one chart each
        {"name": "hello", "title": "...", "metric": "req_s", "unit": "req/s",
         "higher_is_better": true, "per": "req", "extra": {"mb_s": "MB/s"}}
      ],
      "rows": [                             # row(): one server on one loop in one scenario
        {"scenario": "hello", "server": "tricorn", "loop": "uvloop", "parser": "httptools",
         "label": "tricorn (httptools, uvloop)", "status": "ok", "error": null,
         "req_s": 41234.5, "p50_ms": 1.4, "p99_ms": 3.1, "cpu_us_per_req": 23.9,
         "server_cpu": 0.99, "load_cpu": 0.31, "other_cpu": 0.02,
         "server_pinned": true, "load_saturated": false, "disturbed": false}
      ]
    }

A scenario's ``metric`` names the row key its table shows first and its chart
draws (``req_s``, ``msg_s``, ``kib_per_conn``, ...); ``cpu_us_per_req`` is the
server's CPU per unit of work, a request or a message (the scenario's ``per``).
``status`` is ``ok``, ``failed`` or ``skipped``, or ``saturated`` (bench/latency.py:
the server answered too few of the requests offered at a fixed rate to time them).
A row may have a ``note`` for the table's notes. A scenario may have a ``spread``:
``{"p99_ms": ["p99_min_ms", "p99_max_ms"]}`` when its rows are medians of
repeated runs (bench/latency.py), naming the keys of the runs' lowest and highest value.
Numbers that were not measured are null, and so are ``load_saturated`` and
``disturbed`` when the script cannot tell. The scripts import this module, so it
imports none of them.
"""

from __future__ import annotations

import argparse
import datetime
import importlib.metadata
import os
import platform
import subprocess
from pathlib import Path
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parent.parent

#: The libraries whose versions every machine block records (tricorn and its peers).
VERSIONS: Final = (
    "tricorn", "uvicorn", "hypercorn", "granian", "anyio", "h11", "h2", "wsproto", "httptools",
    "uvloop", "trio", "websockets", "aioquic",
)  # fmt: skip
#: A load generator using this share of the CPUs it is pinned to is the bottleneck.
SATURATED: Final = 0.9
#: Other processes using more than this many cores during a row disturb it.
DISTURBED: Final = 0.1  # as http1.NOISE_WARNING


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def _git(*argv: str) -> subprocess.CompletedProcess[str] | None:
    try:
        return subprocess.run(
            ["git", "-C", str(ROOT), *argv], capture_output=True, text=True, timeout=10, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None


def _commit() -> str | None:
    """The repository's commit, with ``+changes`` when src/ differs from it; None outside git."""
    head = _git("rev-parse", "--short=10", "HEAD")
    if head is None or head.returncode != 0 or not head.stdout.strip():
        return None
    changed = _git("diff", "--quiet", "HEAD", "--", "src")
    return head.stdout.strip() + ("+changes" if changed and changed.returncode == 1 else "")


def version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpus(
    args: argparse.Namespace, *, server_pinned: bool = True, load_pinned: bool = True
) -> dict[str, list[int]]:
    """The CPUs the server and the load generator are pinned to (empty: not pinned).

    As the scripts' ``--server-cpu N`` / ``--load-cpus LIST`` mean it: ``-1`` pins neither.
    """
    if not hasattr(os, "sched_setaffinity") or args.server_cpu < 0:
        return {"server_cpus": [], "load_cpus": []}
    load = sorted({int(n) for n in str(args.load_cpus).split(",") if n.strip()})
    return {
        "server_cpus": [args.server_cpu] if server_pinned else [],
        "load_cpus": load if load_pinned else [],
    }


def machine(
    args: argparse.Namespace | None,
    *,
    busy: float | None = None,
    tools: dict[str, str] | None = None,
    server_pinned: bool = True,
    load_pinned: bool = True,
) -> dict[str, Any]:
    """Where and when a benchmark ran: call it before the first measurement.

    ``busy`` is the share of the CPUs in use just before (``http1.busy_fraction``);
    ``server_pinned`` and ``load_pinned`` are False for a script that does not pin
    its servers or its load generator to the CPUs ``--server-cpu`` / ``--load-cpus`` name.
    """
    try:
        load: list[float] | None = [round(value, 2) for value in os.getloadavg()]
    except OSError:
        load = None
    pinning = (
        cpus(args, server_pinned=server_pinned, load_pinned=load_pinned) if args is not None else {}
    )
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "cpu_model": _cpu_model(),
        "cores": os.cpu_count(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "platform": platform.platform(),
        "load_average_at_start": load,  # 1, 5 and 15 minutes
        "busy_before_start": None if busy is None else round(busy, 3),
        "server_cpus": pinning.get("server_cpus", []),
        "load_cpus": pinning.get("load_cpus", []),
        "tricorn_commit": _commit(),
        "versions": {name: version(name) for name in VERSIONS},
        "tools": dict(tools or {}),
    }


def scenario(
    name: str,
    title: str,
    *,
    metric: str = "req_s",
    unit: str = "req/s",
    higher_is_better: bool = True,
    per: str = "req",
    extra: dict[str, str] | None = None,
    spread: dict[str, tuple[str, str]] | None = None,
) -> dict[str, Any]:
    """A table and a chart; ``extra`` maps more row keys to show to their column headers.

    ``spread`` maps a row key that is the median of repeated runs (``p99_ms``) to
    the keys of the runs' lowest and highest values (``p99_min_ms``, ``p99_max_ms``):
    the table shows them beside it, the chart as a line over the bar.
    """
    found = {
        "name": name,
        "title": title,
        "metric": metric,
        "unit": unit,
        "higher_is_better": higher_is_better,
        "per": per,
        "extra": dict(extra or {}),
    }
    if spread:
        found["spread"] = {key: list(bounds) for key, bounds in spread.items()}
    return found


def row(
    machine_block: dict[str, Any],
    *,
    server: str,
    loop: str,
    label: str,
    status: str,
    scenario: str = "",
    parser: str | None = None,
    error: str | None = None,
    note: str | None = None,
    values: dict[str, float | int | None] | None = None,
    p50_ms: float | None = None,
    p99_ms: float | None = None,
    cpu_us_per_req: float | None = None,
    server_cpu: float | None = None,
    load_cpu: float | None = None,
    other_cpu: float | None = None,
) -> dict[str, Any]:
    """One row; pinning and saturation come from the machine block's CPUs.

    ``note``: something the table's notes should say about a row that was measured.
    """
    load_cpus = machine_block.get("load_cpus") or []
    saturated = (
        load_cpu >= SATURATED * len(load_cpus) if load_cpu is not None and load_cpus else None
    )
    return {
        "scenario": scenario,
        "server": server,
        "loop": loop,
        "parser": parser,
        "label": label,
        "status": status,
        "error": (error or "").strip().splitlines()[0] if error and error.strip() else None,
        **({"note": " ".join(note.split())} if note and note.strip() else {}),
        **(values or {}),
        "p50_ms": p50_ms,
        "p99_ms": p99_ms,
        "cpu_us_per_req": cpu_us_per_req,
        "server_cpu": server_cpu,
        "load_cpu": load_cpu,
        "other_cpu": other_cpu,
        "server_pinned": bool(machine_block.get("server_cpus")),
        "load_saturated": saturated,
        "disturbed": other_cpu > DISTURBED if other_cpu is not None else None,
    }


def document(
    benchmark: str,
    title: str,
    machine_block: dict[str, Any],
    scenarios: list[dict[str, Any]],
    rows: list[dict[str, Any]],
    **own: Any,
) -> dict[str, Any]:
    """The common keys first, then the script's own (which may not reuse a common name)."""
    common = {
        "benchmark": benchmark,
        "title": title,
        "machine": machine_block,
        "scenarios": scenarios,
        "rows": rows,
    }
    if clash := set(common) & set(own):
        raise ValueError(f"a benchmark's own keys clash with the common ones: {sorted(clash)}")
    return {**common, **own}
