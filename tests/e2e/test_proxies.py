"""tricorn behind a real nginx and a real HAProxy, and the Kubernetes readiness pattern.

The proxies run the configurations docs/proxies.rst shows, read from
docs/examples/proxies/, with only their listening addresses, tricorn's
address and the certificate paths put in (each substitution must match
exactly once, so the documentation and these tests cannot drift apart).
tricorn runs as ``docs/proxies.rst`` says: defaults behind an HTTP proxy
(which trust the loopback addresses), ``--proxy-protocol`` with TLS behind
a TCP proxy.

Addresses tell the parties apart: tricorn and the proxies listen on
127.0.0.1, the proxies reach tricorn from 127.0.0.1 (trusted by default),
and every client connects from 127.0.0.3, which no one trusts. So the app
must see 127.0.0.3 as its client through every proxy, and a client that
talks to tricorn directly, forging forwarding headers or a PROXY header, is
not believed.

nginx and haproxy are Debian packages (nginx, libnginx-mod-stream, haproxy);
without them these tests skip, except under ``CI=true``, where they fail.
Every wait is bounded.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import httpx
import pytest
import trustme
import websockets.sync.client

from tests.conftest import _selected
from tests.e2e._server_process import ServerProcess, write_module
from tricorn.config import flags_of, option_specs

EXAMPLES = Path(__file__).resolve().parents[2] / "docs" / "examples" / "proxies"

#: Where every client connects from: an address no tricorn here trusts.
CLIENT_HOST = "127.0.0.3"
#: Bound on every wait for a proxy to listen or to exit.
PROXY_TIMEOUT = 15.0

#: Echoes what the app was told about its connection, as JSON.
ECHO_APP = """
import json
import pathlib
import sys

import anyio

async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    view = json.dumps({
        "type": scope["type"],
        "http_version": scope["http_version"],
        "scheme": scope["scheme"],
        "client": scope["client"],
        "server": scope["server"],
        "root_path": scope["root_path"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
    })
    if scope["type"] == "websocket":
        await receive()
        await send({"type": "websocket.accept"})
        await send({"type": "websocket.send", "text": view})
        await send({"type": "websocket.close", "code": 1000})
        return
    while (await receive()).get("more_body"):
        pass
    if scope["path"] == "/hold":
        # Answers once the test creates the file the query names.
        print("holding", scope["query_string"].decode(), file=sys.stderr, flush=True)
        while not pathlib.Path(scope["query_string"].decode()).exists():
            await anyio.sleep(0.01)
    body = view.encode()
    await send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})
"""

WORKER_CLASSES = [name for name in _selected() if name in ("asyncio", "trio")]


# --- the proxies' binaries ---------------------------------------------------


def _missing(message: str) -> NoReturn:
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


def _binary(name: str, package: str) -> str:
    found = shutil.which(name) or shutil.which(name, path="/usr/sbin:/usr/local/sbin")
    if found is None:
        _missing(f"{name} not found: apt-get install {package}")
    return found


def _nginx_stream_module(nginx: str) -> str | None:
    """The load_module line nginx's stream module needs, or None when it is built in."""
    built = subprocess.run([nginx, "-V"], capture_output=True, text=True, timeout=10).stderr
    if "--with-stream=dynamic" not in built:
        if "--with-stream" not in built:
            _missing("this nginx has no stream module")
        return None
    found = re.search(r"--modules-path=(\S+)", built)
    module = Path(found.group(1) if found else "/usr/lib/nginx/modules") / "ngx_stream_module.so"
    if not module.exists():
        _missing(f"{module} not found: apt-get install libnginx-mod-stream")
    return f"load_module {module};"


# --- addresses and processes ---------------------------------------------------


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host, int(port)


def _from_example(name: str, replacements: Mapping[str, str]) -> str:
    """A documented configuration with some of its lines' text replaced, each exactly once."""
    text = (EXAMPLES / name).read_text()
    for old, new in replacements.items():
        assert text.count(old) == 1, f"{name}: expected {old!r} exactly once"
        text = text.replace(old, new)
    return text


class Proxy:
    """nginx or haproxy in the foreground, its output in a file, ready once its ports accept."""

    def __init__(self, argv: list[str], log: Path, ports: list[int]) -> None:
        self.log = log
        with log.open("wb") as output:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        try:
            self._wait_listening(ports)
        except BaseException:
            self.close()
            raise

    def _wait_listening(self, ports: list[int]) -> None:
        deadline = time.monotonic() + PROXY_TIMEOUT
        for port in ports:
            while True:
                if self.process.poll() is not None:
                    raise AssertionError(f"{self.process.args!r} exited:\n{self.output}")
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=1).close()
                    break
                except OSError:
                    if time.monotonic() > deadline:
                        raise AssertionError(
                            f"port {port} not listening within {PROXY_TIMEOUT}s:\n{self.output}"
                        ) from None
                    time.sleep(0.02)  # polling for readiness, with a deadline

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(PROXY_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(PROXY_TIMEOUT)


@dataclass(frozen=True)
class Tricorn:
    server: ServerProcess
    host: str
    port: int


@dataclass(frozen=True)
class Certificates:
    server: Path
    ca: Path

    def client_context(self) -> ssl.SSLContext:
        return ssl.create_default_context(cafile=str(self.ca))


# --- fixtures ------------------------------------------------------------------


@pytest.fixture(scope="module", params=WORKER_CLASSES)
def worker_class(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="module")
def app_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("app")
    write_module(directory, "echo", ECHO_APP)
    return directory


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> Certificates:
    directory = tmp_path_factory.mktemp("tls")
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_and_cert_chain_pem.write_to_path(str(directory / "server.pem"))
    ca.cert_pem.write_to_path(str(directory / "ca.pem"))
    return Certificates(server=directory / "server.pem", ca=directory / "ca.pem")


def _start_tricorn(app_dir: Path, *args: str) -> Iterator[Tricorn]:
    server = ServerProcess(["echo:app", "--bind", "127.0.0.1:0", *args], cwd=app_dir)
    try:
        host, port = _host_port(server.addresses()[0])
        yield Tricorn(server, host, port)
    finally:
        server.close()


@pytest.fixture(scope="module")
def tricorn_http(app_dir: Path, worker_class: str) -> Iterator[Tricorn]:
    """Behind an HTTP proxy: the defaults, which trust the proxy on the loopback."""
    yield from _start_tricorn(app_dir, "--worker-class", worker_class)


@pytest.fixture(scope="module")
def tricorn_tcp(app_dir: Path, worker_class: str, certificates: Certificates) -> Iterator[Tricorn]:
    """Behind a TCP proxy: PROXY protocol from the loopback, TLS (and HTTP/2) of its own."""
    yield from _start_tricorn(
        app_dir,
        "--worker-class",
        worker_class,
        "--proxy-protocol",
        "--certfile",
        str(certificates.server),
    )


@dataclass(frozen=True)
class Nginx:
    http_port: int
    https_port: int
    stream_port: int


@contextmanager
def _nginx(
    tmp_path: Path, http_upstream: int, tcp_upstream: int, certificates: Certificates
) -> Iterator[Nginx]:
    """nginx with nginx-http.conf in its http block and nginx-stream.conf in its stream block."""
    binary = _binary("nginx", "nginx")
    load_stream = _nginx_stream_module(binary) or ""
    ports = Nginx(http_port=_free_port(), https_port=_free_port(), stream_port=_free_port())
    site = _from_example(
        "nginx-http.conf",
        {
            "listen 80;": f"listen 127.0.0.1:{ports.http_port};",
            "listen 443 ssl http2;": f"listen 127.0.0.1:{ports.https_port} ssl http2;",
            "server 127.0.0.1:8000;": f"server 127.0.0.1:{http_upstream};",
            "/etc/ssl/example.com/fullchain.pem": str(certificates.server),
            "/etc/ssl/example.com/privkey.pem": str(certificates.server),
        },
    )
    stream = _from_example(
        "nginx-stream.conf",
        {
            "listen 443;": f"listen 127.0.0.1:{ports.stream_port};",
            "proxy_pass 127.0.0.1:8443;": f"proxy_pass 127.0.0.1:{tcp_upstream};",
        },
    )
    (tmp_path / "site.conf").write_text(site)
    (tmp_path / "stream.conf").write_text(stream)
    # What a packaged nginx.conf around them does, minus the daemon, the
    # user switch and the system paths, so that it runs in the foreground
    # as whoever runs the tests.
    (tmp_path / "nginx.conf").write_text(
        f"""
        {load_stream}
        daemon off;
        master_process off;
        pid {tmp_path}/nginx.pid;
        error_log stderr notice;
        events {{ worker_connections 256; }}
        http {{
            access_log off;
            client_body_temp_path {tmp_path}/client_body;
            proxy_temp_path {tmp_path}/proxy;
            fastcgi_temp_path {tmp_path}/fastcgi;
            uwsgi_temp_path {tmp_path}/uwsgi;
            scgi_temp_path {tmp_path}/scgi;
            include {tmp_path}/site.conf;
        }}
        stream {{
            include {tmp_path}/stream.conf;
        }}
        """
    )
    argv = [binary, "-e", "stderr", "-p", str(tmp_path), "-c", str(tmp_path / "nginx.conf")]
    proxy = Proxy(
        argv, tmp_path / "nginx.log", [ports.http_port, ports.https_port, ports.stream_port]
    )
    try:
        yield ports
    finally:
        proxy.close()


@pytest.fixture
def nginx(
    tmp_path: Path, tricorn_http: Tricorn, tricorn_tcp: Tricorn, certificates: Certificates
) -> Iterator[Nginx]:
    with _nginx(tmp_path, tricorn_http.port, tricorn_tcp.port, certificates) as ports:
        yield ports


StartHAProxy = Callable[..., int]


@pytest.fixture
def haproxy(tmp_path: Path) -> Iterator[StartHAProxy]:
    """Start haproxy on a documented configuration; returns the port it listens on."""
    binary = _binary("haproxy", "haproxy")
    started: list[Proxy] = []

    def start(example: str, bind: str, upstream: str, target: Tricorn, suffix: str = "") -> int:
        port = _free_port()
        config = _from_example(
            example,
            {
                bind: f"bind 127.0.0.1:{port}",
                f"server tricorn1 {upstream}": (
                    f"server tricorn1 {target.host}:{target.port}{suffix}"
                ),
            },
        )
        path = tmp_path / f"haproxy-{len(started)}.cfg"
        path.write_text(config)
        log = tmp_path / f"haproxy-{len(started)}.log"
        started.append(Proxy([binary, "-db", "-f", str(path)], log, [port]))
        return port

    try:
        yield start
    finally:
        for proxy in started:
            proxy.close()


# --- clients -------------------------------------------------------------------


def _client(*, http2: bool = False, verify: ssl.SSLContext | bool = False) -> httpx.Client:
    transport = httpx.HTTPTransport(local_address=CLIENT_HOST, http2=http2, verify=verify)
    return httpx.Client(transport=transport, timeout=PROXY_TIMEOUT)


@dataclass(frozen=True)
class Seen:
    """What the app saw, and the client's own end of the connection."""

    scope: dict[str, Any]
    client_port: int
    http_version: str

    @property
    def headers(self) -> dict[str, str]:
        return {name: value for name, value in self.scope["headers"]}


def _get(
    url: str, *, http2: bool = False, verify: ssl.SSLContext | bool = False, **kw: Any
) -> Seen:
    with _client(http2=http2, verify=verify) as client:
        response = client.get(url, **kw)
        assert response.status_code == 200, response.text
        stream = response.extensions["network_stream"]
        client_host, client_port = stream.get_extra_info("client_addr")
        assert client_host == CLIENT_HOST
        return Seen(response.json(), client_port, response.http_version)


FORGED = {
    "X-Forwarded-For": "203.0.113.7",
    "X-Forwarded-Proto": "https",
    "X-Forwarded-Host": "forged.example",
    "Forwarded": "for=203.0.113.8;proto=https;host=forged.example",
}


# --- nginx -----------------------------------------------------------------------


def test_nginx_proxy_pass_hands_on_the_client_scheme_and_host(nginx: Nginx) -> None:
    seen = _get(f"http://127.0.0.1:{nginx.http_port}/")
    assert seen.http_version == "HTTP/1.1"
    assert seen.scope["client"] == [CLIENT_HOST, 0]  # X-Forwarded-For carries no port
    assert seen.scope["scheme"] == "http"
    assert seen.scope["server"] == ["127.0.0.1", nginx.http_port]
    assert seen.headers["x-forwarded-for"] == CLIENT_HOST


def test_nginx_keeps_a_client_from_forging_its_address(nginx: Nginx) -> None:
    seen = _get(f"http://127.0.0.1:{nginx.http_port}/", headers={"X-Forwarded-For": "203.0.113.7"})
    # nginx appends the client's address to the forged one; tricorn takes
    # the right-most hop it does not trust.
    assert seen.headers["x-forwarded-for"] == f"203.0.113.7, {CLIENT_HOST}"
    assert seen.scope["client"] == [CLIENT_HOST, 0]


def test_nginx_terminating_tls_and_http2_hands_on_https(
    nginx: Nginx, certificates: Certificates
) -> None:
    # nginx cannot proxy_pass over HTTP/2, so the client's HTTP/2 ends at
    # nginx; what matters is that the scheme and client survive the change.
    seen = _get(
        f"https://127.0.0.1:{nginx.https_port}/",
        http2=True,
        verify=certificates.client_context(),
    )
    assert seen.http_version == "HTTP/2"
    assert seen.scope["http_version"] == "1.1"
    assert seen.scope["client"] == [CLIENT_HOST, 0]
    assert seen.scope["scheme"] == "https"
    assert seen.scope["server"] == ["127.0.0.1", nginx.https_port]


def test_a_websocket_through_nginx_sees_the_client(nginx: Nginx) -> None:
    sock = socket.socket()
    sock.bind((CLIENT_HOST, 0))
    sock.settimeout(PROXY_TIMEOUT)
    sock.connect(("127.0.0.1", nginx.http_port))
    with websockets.sync.client.connect(
        f"ws://127.0.0.1:{nginx.http_port}/ws", sock=sock, open_timeout=PROXY_TIMEOUT
    ) as ws:
        scope = json.loads(ws.recv(timeout=PROXY_TIMEOUT))
    assert scope["type"] == "websocket"
    assert scope["client"] == [CLIENT_HOST, 0]
    assert scope["scheme"] == "ws"
    assert scope["server"] == ["127.0.0.1", nginx.http_port]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_nginx_stream_with_proxy_protocol_names_the_client(
    nginx: Nginx, certificates: Certificates, http2: bool
) -> None:
    # TLS passes through nginx: tricorn terminates it and picks HTTP/2 by
    # ALPN, and learns the client's address and port from the PROXY header.
    seen = _get(
        f"https://127.0.0.1:{nginx.stream_port}/",
        http2=http2,
        verify=certificates.client_context(),
    )
    assert seen.http_version == ("HTTP/2" if http2 else "HTTP/1.1")
    assert seen.scope["http_version"] == ("2" if http2 else "1.1")
    assert seen.scope["client"] == [CLIENT_HOST, seen.client_port]
    assert seen.scope["scheme"] == "https"
    assert seen.scope["server"] == ["127.0.0.1", nginx.stream_port]


def test_sigterm_lets_a_request_in_flight_through_nginx_finish(
    tmp_path: Path, app_dir: Path, worker_class: str, certificates: Certificates
) -> None:
    """What a pod's termination does once preStop is over (docs/proxies.rst)."""
    server = ServerProcess(["echo:app", "--bind", "127.0.0.1:0", "-k", worker_class], cwd=app_dir)
    release = app_dir / f"release-{worker_class}"
    try:
        _, port = _host_port(server.addresses()[0])
        with (
            _nginx(tmp_path, port, port, certificates) as ports,
            ThreadPoolExecutor(1) as pool,
        ):
            held = pool.submit(_get, f"http://127.0.0.1:{ports.http_port}/hold?{release}")
            server.wait_for_line(f"holding {release}")
            server.send_signal(signal.SIGTERM)
            server.wait_for_line(r"shutting down: \d+ open connection")
            release.touch()
            seen = held.result(PROXY_TIMEOUT)
            assert seen.scope["client"] == [CLIENT_HOST, 0]
            assert server.wait() == 0
            # Nothing listens any more: nginx says so rather than hang.
            with _client() as client:
                assert client.get(f"http://127.0.0.1:{ports.http_port}/").status_code == 502
    finally:
        server.close()


# --- HAProxy ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("suffix", "http_version"),
    [("", "1.1"), (" proto h2", "2")],
    ids=["http1-upstream", "http2-upstream"],
)
def test_haproxy_option_forwardfor_names_the_client(
    haproxy: StartHAProxy, tricorn_http: Tricorn, suffix: str, http_version: str
) -> None:
    port = haproxy("haproxy-http.cfg", "bind :80", "127.0.0.1:8000", tricorn_http, suffix)
    seen = _get(f"http://127.0.0.1:{port}/", headers={"X-Forwarded-For": "203.0.113.7"})
    assert seen.scope["http_version"] == http_version
    assert seen.scope["client"] == [CLIENT_HOST, 0]
    assert seen.scope["scheme"] == "http"
    assert seen.scope["server"] == ["127.0.0.1", port]


@pytest.mark.parametrize("http2", [False, True], ids=["http1", "http2"])
def test_haproxy_send_proxy_v2_names_the_client(
    haproxy: StartHAProxy, tricorn_tcp: Tricorn, certificates: Certificates, http2: bool
) -> None:
    port = haproxy("haproxy-tcp.cfg", "bind :443", "127.0.0.1:8443", tricorn_tcp)
    seen = _get(f"https://127.0.0.1:{port}/", http2=http2, verify=certificates.client_context())
    assert seen.scope["http_version"] == ("2" if http2 else "1.1")
    assert seen.scope["client"] == [CLIENT_HOST, seen.client_port]
    assert seen.scope["scheme"] == "https"
    assert seen.scope["server"] == ["127.0.0.1", port]


# --- clients that skip the proxy ---------------------------------------------------


def test_a_direct_client_forging_forwarding_headers_is_not_believed(
    tricorn_http: Tricorn,
) -> None:
    seen = _get(f"http://127.0.0.1:{tricorn_http.port}/", headers=FORGED)
    assert seen.scope["client"] == [CLIENT_HOST, seen.client_port]
    assert seen.scope["scheme"] == "http"
    assert seen.scope["server"] == ["127.0.0.1", tricorn_http.port]


def test_a_direct_client_is_served_as_itself_beside_the_proxy_protocol(
    tricorn_tcp: Tricorn, certificates: Certificates
) -> None:
    seen = _get(
        f"https://127.0.0.1:{tricorn_tcp.port}/",
        http2=True,
        verify=certificates.client_context(),
        headers=FORGED,
    )
    assert seen.scope["client"] == [CLIENT_HOST, seen.client_port]
    assert seen.scope["server"] == ["127.0.0.1", tricorn_tcp.port]


PROXY_V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 4711 443\r\n"
PROXY_V2 = (
    b"\r\n\r\n\x00\r\nQUIT\n"
    + bytes([0x21, 0x11, 0, 12])  # v2 PROXY, TCP over IPv4, 12 address bytes
    + bytes([203, 0, 113, 7, 127, 0, 0, 1])
    + (4711).to_bytes(2, "big")
    + (443).to_bytes(2, "big")
)


@pytest.mark.parametrize("header", [PROXY_V1, PROXY_V2], ids=["v1", "v2"])
def test_a_direct_client_sending_a_proxy_header_is_refused(
    tricorn_tcp: Tricorn, header: bytes
) -> None:
    with socket.socket() as sock:
        sock.bind((CLIENT_HOST, 0))
        sock.settimeout(PROXY_TIMEOUT)
        sock.connect(("127.0.0.1", tricorn_tcp.port))
        sock.sendall(header)
        assert sock.recv(1024) == b""  # closed, not served
    tricorn_tcp.server.wait_for_line(
        rf"refused a PROXY header from \('{CLIENT_HOST}', \d+\), which is not a trusted proxy"
    )


# --- Kubernetes --------------------------------------------------------------------

SLOW_START_APP = """
import pathlib
import anyio

started = False

async def app(scope, receive, send):
    global started
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                # Startup takes as long as the test wants: until it says go.
                while not pathlib.Path("go").exists():
                    await anyio.sleep(0.01)
                started = True
            await send({"type": message["type"] + ".complete"})
            if message["type"] == "lifespan.shutdown":
                return
    body = b"started" if started else b"NOT started"
    await send({"type": "http.response.start", "status": 200,
                "headers": [(b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})
"""


def test_a_request_waits_for_lifespan_startup_though_the_port_accepts(
    tmp_path: Path, worker_class: str
) -> None:
    """Why the Kubernetes readiness probe must be an HTTP one (docs/proxies.rst).

    The listening socket is bound before lifespan startup, so a TCP connect
    succeeds at once; a request is served only by a worker whose startup has
    completed. Startup cannot complete before the test creates ``go``, which
    it does only after the request was sent: the answer "started" shows the
    request waited.
    """
    write_module(tmp_path, "slow", SLOW_START_APP)
    server = ServerProcess(
        [
            "slow:app",
            "--bind",
            "127.0.0.1:0",
            "--workers",
            "2",
            "--log-level",
            "debug",
            "--worker-class",
            worker_class,
        ],
        cwd=tmp_path,
    )
    try:
        host, port = _host_port(server.wait_for_line(r"supervisor listening on (\S+)").group(1))
        with socket.create_connection((host, port), timeout=PROXY_TIMEOUT) as sock:
            sock.sendall(b"GET /healthz HTTP/1.1\r\nHost: probe\r\nConnection: close\r\n\r\n")
            (tmp_path / "go").touch()
            response = b""
            while chunk := sock.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 200 "), response
        assert response.endswith(b"\r\n\r\nstarted"), response
        server.wait_for_line(r"ready: 2 worker processes")
    finally:
        server.close()


KUBERNETES = EXAMPLES / "kubernetes.yaml"


def test_the_kubernetes_example_gives_shutdown_the_time_it_needs() -> None:
    """terminationGracePeriodSeconds covers preStop's sleep and --graceful-timeout with room."""
    text = KUBERNETES.read_text()
    grace = re.search(r"terminationGracePeriodSeconds: (\d+)", text)
    pre_stop = re.search(r'command: \["sleep", "(\d+)"\]', text)
    graceful = re.search(r'- --graceful-timeout\n\s*- "(\d+)"', text)
    assert grace, text
    assert pre_stop, text
    assert graceful, text
    assert int(grace.group(1)) > int(pre_stop.group(1)) + int(graceful.group(1)) + 5
    known = {flag for field in option_specs() for flag in flags_of(field)}
    used = set(re.findall(r"- (--[a-z0-9-]+)", text))
    assert "--graceful-timeout" in used
    assert used <= known, used - known
