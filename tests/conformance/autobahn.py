"""Drive the Autobahn|Testsuite fuzzing client (``wstest -m fuzzingclient``).

wstest is Python 2.7 only; ``.ci/install-autobahn`` installs it into
``.autobahn/`` without Docker. This module finds it, runs it against one server
and reads back its verdicts, using nothing but the standard library.

Autobahn grades every case twice: ``behavior`` (the protocol exchange) and
``behaviorClose`` (the closing handshake). :func:`failures` lets these through:

* ``OK``.
* ``NON-STRICT``: Autobahn's own "passes, but not as strictly as the RFC
  allows" (e.g. failing fast on invalid UTF-8 only at the end of a frame).
* ``INFORMATIONAL``: the case has no right answer (e.g. 1.1.x payload
  timings, 7.1.6 closing with data queued); Autobahn never grades it.
* ``UNIMPLEMENTED``: the server declined an extension the client offered.
  Only the permessage-deflate cases (12.* and 13.*) ever report it, and the
  server under test offers permessage-deflate, so there it is a failure;
  anywhere else it is let through.

Everything else fails: ``FAILED``, and, of ``behaviorClose``'s own
statuses, ``WRONG CODE`` (a close code outside the ones the case accepts),
``UNCLEAN`` (no clean closing handshake where one is required) and
``FAILED BY CLIENT`` (the client, not the server, had to drop the TCP
connection; RFC 6455 7.1.1 wants the server to close it first). Autobahn's
HTML report shades those last two as near-passes; we hold a server to more.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

__all__ = [
    "REPO_ROOT",
    "WstestError",
    "case_key",
    "failures",
    "find_wstest",
    "groups",
    "run_fuzzingclient",
]

REPO_ROOT = Path(__file__).resolve().parents[2]
PASSING = frozenset({"OK", "NON-STRICT", "INFORMATIONAL"})
EXTENSION_GROUPS = ("12", "13")  # permessage-deflate: UNIMPLEMENTED fails here

_PLANNED = re.compile(rb"will run (\d+) test cases")


class WstestError(RuntimeError):
    """wstest did not finish, or did not report every case it was asked to run."""


def find_wstest() -> Path | None:
    """The wstest to use: $TRICORN_WSTEST, else .autobahn/bin/wstest, else PATH."""
    configured = os.environ.get("TRICORN_WSTEST")
    if configured:
        return Path(configured)
    local = REPO_ROOT / ".autobahn" / "bin" / "wstest"
    if os.access(local, os.X_OK):
        return local
    found = shutil.which("wstest")
    return Path(found) if found else None


def run_fuzzingclient(
    wstest: Path,
    url: str,
    agent: str,
    outdir: Path,
    *,
    cases: Sequence[str] = ("*",),
    exclude: Sequence[str] = (),
    timeout: float,
) -> dict[str, dict[str, object]]:
    """Run the fuzzing client against the server at ``url`` and return its verdicts.

    ``cases`` and ``exclude`` take Autobahn's case patterns ("*", "9.*", "12.1.*",
    "6.4.3"). The spec, wstest's output (wstest.log) and Autobahn's reports
    (index.json, index.html, one JSON and HTML file per case) go to ``outdir``.
    wstest is killed after ``timeout`` seconds. Returns ``{case id: result}``
    for ``agent``, in case order; each result has ``behavior``,
    ``behaviorClose``, ``remoteCloseCode``, ``duration`` (ms) and ``reportfile``.

    Raises WstestError when wstest times out or exits non-zero, or when fewer
    cases come back than it planned (it gives up silently on the remaining cases
    once a connection is refused).
    """
    outdir = outdir.resolve()
    outdir.mkdir(parents=True, exist_ok=True)
    index = outdir / "index.json"
    index.unlink(missing_ok=True)
    spec = {
        "outdir": str(outdir),
        "servers": [{"agent": agent, "url": url}],
        "cases": list(cases),
        "exclude-cases": list(exclude),
        "exclude-agent-cases": {},
    }
    spec_path = outdir / "fuzzingclient.json"
    spec_path.write_text(json.dumps(spec, indent=2) + "\n")
    log_path = outdir / "wstest.log"
    command = [str(wstest), "--mode", "fuzzingclient", "--spec", str(spec_path)]
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=outdir,
            start_new_session=True,  # its own process group, so a wrapper dies with it
        )
        try:
            returncode = process.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            _kill_group(process)
            raise WstestError(
                f"wstest did not finish within {timeout:g}s\n{_tail(log_path)}"
            ) from None
        finally:
            if process.poll() is None:  # interrupted some other way: leave no orphan
                _kill_group(process)
    if returncode != 0:
        raise WstestError(f"wstest exited with {returncode}\n{_tail(log_path)}")
    if not index.exists():
        raise WstestError(f"wstest wrote no {index}\n{_tail(log_path)}")
    report = json.loads(index.read_text())
    results: dict[str, dict[str, object]] = report.get(agent, {})
    planned = _PLANNED.search(log_path.read_bytes())
    if planned is None or len(results) != int(planned.group(1)):
        expected = planned.group(1).decode() if planned else "?"
        raise WstestError(
            f"wstest reported {len(results)} of {expected} cases for {agent!r}\n{_tail(log_path)}"
        )
    return {case: results[case] for case in sorted(results, key=case_key)}


def failures(results: Mapping[str, Mapping[str, object]]) -> list[str]:
    """One line per case whose behavior or behaviorClose is not a pass (see module doc)."""
    lines = []
    for case in sorted(results, key=case_key):
        result = results[case]
        behavior = str(result.get("behavior"))
        close = str(result.get("behaviorClose"))
        if not (_passes(case, behavior) and _passes(case, close)):
            lines.append(
                f"{case}: behavior={behavior} behaviorClose={close}"
                f" remoteCloseCode={result.get('remoteCloseCode')}"
                f" ({result.get('duration')} ms, {result.get('reportfile')})"
            )
    return lines


def case_key(case: str) -> tuple[int, ...]:
    """Sort key for case ids: 9.10.1 comes after 9.2.1."""
    return tuple(int(part) for part in case.split(".") if part.isdigit())


def groups(results: Iterable[str]) -> dict[str, int]:
    """How many of the given case ids fall in each top-level group ("1", "9", ...)."""
    counts: dict[str, int] = {}
    for case in results:
        group = case.split(".", 1)[0]
        counts[group] = counts.get(group, 0) + 1
    return dict(sorted(counts.items(), key=lambda item: case_key(item[0])))


def _passes(case: str, status: str) -> bool:
    if status == "UNIMPLEMENTED":
        return case.split(".", 1)[0] not in EXTENSION_GROUPS
    return status in PASSING


def _kill_group(process: subprocess.Popen[bytes]) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    process.wait()


def _tail(path: Path, lines: int = 20) -> str:
    text = path.read_text(errors="replace").splitlines()
    return "\n".join(text[-lines:])
