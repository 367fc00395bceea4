"""A real browser against the ``tricorn`` command: HTTP/2 over TLS, WebSocket over HTTP/2.

``tricorn tricorn.demo:app`` serves HTTPS with a trustme certificate on a free
loopback port; headless Chromium opens the demo's WebSocket echo page, whose
script writes ``page=<version> ws=<version> echo=<ok|failed ...>`` into
``#result`` once its echo round trip is done (see ``tricorn.demo``). The page
version is the page scope's ``http_version``; the WebSocket version is the one
the server greets with, from the websocket scope. Chromium opens a WebSocket
over HTTP/2 (RFC 8441) only on an HTTP/2 connection it already has to the
origin, and only after that connection's SETTINGS carried
SETTINGS_ENABLE_CONNECT_PROTOCOL=1; loading the page first provides the
connection.

The browser is driven over the DevTools protocol (``--remote-debugging-port``,
the ``websockets`` client), because ``--dump-dom`` dumps at the load event,
before the WebSocket has even opened. Chromium's own view is checked too: the
page's response protocol is ``h2`` and the WebSocket handshake was answered
200 (an extended CONNECT) rather than 101 (an HTTP/1.1 upgrade). The
certificate is trusted by its public key hash
(``--ignore-certificate-errors-spki-list``), so no other certificate error is
ignored.

Without a Chromium binary (``chromium``, ``chromium-browser``,
``google-chrome`` on PATH, or $TRICORN_CHROMIUM) the test is skipped, except
under ``CI=true``, where it fails. Every wait is bounded.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytest
import trustme
import websockets.exceptions
import websockets.sync.client
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.conftest import _selected
from tests.e2e._server_process import ServerProcess, clean_environ

BROWSER_START_TIMEOUT = 20.0
CALL_TIMEOUT = 10.0
RESULT_TIMEOUT = 20.0
BROWSER_STOP_TIMEOUT = 10.0

EXPECTED = "page=2 ws=2 echo=ok"


def find_chromium() -> str | None:
    """$TRICORN_CHROMIUM, else the first Chromium or Chrome on PATH."""
    configured = os.environ.get("TRICORN_CHROMIUM")
    if configured:
        return configured
    for name in ("chromium", "chromium-browser", "google-chrome"):
        if found := shutil.which(name):
            return found
    return None


CHROMIUM = find_chromium()


def _chromium() -> str:
    if CHROMIUM is not None:
        return CHROMIUM
    message = "chromium not found: apt-get install chromium (or set TRICORN_CHROMIUM)"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _spki_sha256(cert_pem: bytes) -> str:
    """Base64 SHA-256 of the certificate's SubjectPublicKeyInfo, as Chromium's flag wants it."""
    cert = x509.load_pem_x509_certificate(cert_pem)
    spki = cert.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return base64.b64encode(hashlib.sha256(spki).digest()).decode()


class DevTools:
    """Just enough of the Chrome DevTools protocol: commands in order, events kept."""

    def __init__(self, connection: websockets.sync.client.ClientConnection) -> None:
        self._connection = connection
        self._ids = itertools.count(1)
        self.events: list[dict[str, Any]] = []

    def call(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        """Send one command and return its reply (``result`` or ``error``)."""
        command_id = next(self._ids)
        command: dict[str, Any] = {"id": command_id, "method": method, "params": params or {}}
        if session_id is not None:
            command["sessionId"] = session_id
        self._connection.send(json.dumps(command))
        deadline = time.monotonic() + CALL_TIMEOUT
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AssertionError(f"no DevTools reply to {method} within {CALL_TIMEOUT}s")
            message = json.loads(self._connection.recv(timeout=remaining))
            if message.get("id") == command_id:
                return dict(message)
            if "method" in message:
                self.events.append(message)

    def result(
        self, method: str, params: dict[str, Any] | None = None, *, session_id: str | None = None
    ) -> dict[str, Any]:
        reply = self.call(method, params, session_id=session_id)
        assert "error" not in reply, f"{method} failed: {reply['error']}"
        return dict(reply["result"])

    def of(self, method: str) -> list[dict[str, Any]]:
        return [event["params"] for event in self.events if event["method"] == method]


@contextmanager
def headless_chromium(
    profile: Path, trusted_spki: str, extra_flags: Sequence[str] = ()
) -> Iterator[DevTools]:
    """A headless Chromium with a fresh profile; yields a DevTools client for it."""
    profile.mkdir()
    log_path = profile.parent / "chromium.log"
    with log_path.open("wb") as log:
        browser = subprocess.Popen(
            [
                _chromium(),
                "--headless=new",
                "--no-sandbox",  # tests often run as root in a container
                "--disable-gpu",
                "--no-first-run",
                "--no-default-browser-check",
                f"--user-data-dir={profile}",
                # Honoured only together with --user-data-dir.
                f"--ignore-certificate-errors-spki-list={trusted_spki}",
                "--remote-debugging-port=0",
                *extra_flags,
                "about:blank",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=log,
        )
    try:
        # Chromium writes "PORT\n/devtools/browser/ID" here once it listens.
        active_port = profile / "DevToolsActivePort"
        deadline = time.monotonic() + BROWSER_START_TIMEOUT
        while len(lines := _read_lines(active_port)) < 2:
            if browser.poll() is not None:
                raise AssertionError(
                    f"chromium exited ({browser.returncode}) before DevTools listened;"
                    f" its log:\n{_tail(log_path)}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"chromium's DevTools did not listen within {BROWSER_START_TIMEOUT}s;"
                    f" its log:\n{_tail(log_path)}"
                )
            time.sleep(0.05)
        port, path = lines[:2]
        with websockets.sync.client.connect(
            f"ws://127.0.0.1:{port}{path}", open_timeout=CALL_TIMEOUT, max_size=None
        ) as connection:
            devtools = DevTools(connection)
            yield devtools
            # The browser may drop the connection before it answers.
            with suppress(websockets.exceptions.ConnectionClosed):
                devtools.call("Browser.close")
        browser.wait(BROWSER_STOP_TIMEOUT)
    finally:
        if browser.poll() is None:
            browser.kill()
            browser.wait(BROWSER_STOP_TIMEOUT)


def _read_lines(path: Path) -> list[str]:
    try:
        return path.read_text().split()
    except FileNotFoundError:
        return []


def _tail(path: Path, lines: int = 30) -> str:
    return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])


def _open_page(devtools: DevTools, url: str) -> tuple[str | None, str, str]:
    """Load ``url`` in a new tab.

    Returns Chromium's navigation error (None if the page loaded), #result's
    final text and the page's visible text.
    """
    target = devtools.result("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = devtools.result("Target.attachToTarget", {"targetId": target, "flatten": True})[
        "sessionId"
    ]
    for domain in ("Network", "Runtime", "Page"):
        devtools.result(f"{domain}.enable", session_id=session)
    navigated = devtools.result("Page.navigate", {"url": url}, session_id=session)
    if "errorText" in navigated:  # e.g. net::ERR_SSL_PROTOCOL_ERROR
        return str(navigated["errorText"]), "", ""
    probe = 'document.getElementById("result")?.textContent ?? null'
    deadline = time.monotonic() + RESULT_TIMEOUT
    result = None
    while time.monotonic() < deadline:
        reply = devtools.call(
            "Runtime.evaluate", {"expression": probe, "returnByValue": True}, session_id=session
        )
        # Until the page's document exists the value is null (or the context is gone).
        result = reply.get("result", {}).get("result", {}).get("value")
        if result not in (None, "pending"):
            break
        time.sleep(0.1)
    shown = devtools.call(
        "Runtime.evaluate",
        {"expression": "document.body?.innerText ?? null", "returnByValue": True},
        session_id=session,
    )
    return None, str(result), str(shown.get("result", {}).get("result", {}).get("value"))


@pytest.mark.parametrize("worker_class", _selected())
@pytest.mark.timeout(120)  # above the sum of the bounded waits, so theirs fire first
def test_chromium_loads_the_demo_over_h2_and_its_websocket_rides_http2(
    worker_class: str, tmp_path: Path
) -> None:
    _chromium()  # skip (or fail under CI) before starting anything
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(certfile))
    leaf.private_key_pem.write_to_path(str(keyfile))
    trusted_spki = _spki_sha256(leaf.cert_chain_pems[0].bytes())

    server = ServerProcess(
        [
            "tricorn.demo:app",
            "--bind",
            "127.0.0.1:0",
            "--worker-class",
            worker_class,
            "--certfile",
            str(certfile),
            "--keyfile",
            str(keyfile),
        ],
        cwd=tmp_path,
        env=clean_environ(),
    )
    try:
        url = f"https://{server.addresses()[0]}/ws"
        with headless_chromium(tmp_path / "profile", trusted_spki) as devtools:
            navigation_error, result, shown = _open_page(devtools, url)
        assert navigation_error is None, (
            f"chromium could not load {url}: {navigation_error}\nserver stderr:\n{server.stderr}"
        )
        page_errors = [
            event["exceptionDetails"].get("exception", {}).get("description")
            for event in devtools.of("Runtime.exceptionThrown")
        ]
        assert result == EXPECTED, (
            f"#result is {result!r}, not {EXPECTED!r}\npage:\n{shown}\n"
            f"page errors: {page_errors}\nserver stderr:\n{server.stderr}"
        )
        # Chromium's own account: the page came over h2 and the WebSocket
        # handshake was an extended CONNECT, answered 200 (RFC 8441 section 5),
        # not an HTTP/1.1 upgrade answered 101.
        documents = [
            event["response"]
            for event in devtools.of("Network.responseReceived")
            if event["type"] == "Document"
        ]
        assert [document["protocol"] for document in documents] == ["h2"], documents
        handshakes = [
            event["response"] for event in devtools.of("Network.webSocketHandshakeResponseReceived")
        ]
        assert [handshake["status"] for handshake in handshakes] == [200], handshakes
        assert "Traceback" not in server.stderr, server.stderr
    finally:
        server.close()
