"""tricorn's configuration: one frozen dataclass, validated, no I/O.

Every field carries its own documentation in ``metadata``: the CLI builds its
options from it and the docs build the reference from it, so an option is
described exactly once, here.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import math
import re
from collections.abc import Mapping
from typing import Any, Final, Literal, get_args

from .errors import ConfigError

__all__ = [
    "DEFAULT_ACCESS_LOG_FORMAT",
    "STATSD_PORT",
    "Config",
    "HTTP1Parser",
    "Interface",
    "LifespanMode",
    "LogLevel",
    "QuicRetry",
    "VerifyMode",
    "WebSocketMode",
    "WorkerClass",
    "choices_of",
    "flags_of",
    "option_specs",
    "parse_bind",
    "parse_statsd_host",
    "uds_mode_bits",
]

WorkerClass = Literal["asyncio", "uvloop", "trio"]
Interface = Literal["auto", "asgi3", "asgi2", "wsgi"]
LifespanMode = Literal["auto", "on", "off"]
LogLevel = Literal["critical", "error", "warning", "info", "debug"]
WebSocketMode = Literal["auto", "none"]
VerifyMode = Literal["none", "optional", "required"]
HTTP1Parser = Literal["auto", "h11", "httptools"]
QuicRetry = Literal["auto", "always", "never"]

#: The access log line when none is configured: client, request line, status,
#: bytes and milliseconds.
DEFAULT_ACCESS_LOG_FORMAT: Final = '%(client)s "%(r)s" %(s)s %(B)s %(Mf)sms'

_FD_BIND = re.compile(r"fd://(\d+)")
_IPV6_BIND = re.compile(r"\[([^\]]+)\]:(\d+)")
#: RFC 9110 5.6.2 token characters: what a Server header value may safely be.
_TOKEN = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z/ ()]+")
_HOST_BIND = re.compile(r"([^:\[\]]*):(\d+)")
#: What a StatsD name may hold: "." separates its parts, ":" "|" "@" "#" and
#: newlines are the line format's own.
_STATSD_NAME = re.compile(r"[A-Za-z0-9_\-][A-Za-z0-9_.\-]*")
_DOGSTATSD_TAG = re.compile(r"[^|#@,\s]+")
#: The port StatsD servers listen on unless told otherwise.
STATSD_PORT: Final = 8125


def _option(
    default: Any,
    help: str,
    *,
    flags: tuple[str, ...] = (),
    metavar: str | None = None,
    repeatable: bool = False,
) -> Any:
    """A Config field with the documentation the CLI and the docs render."""
    metadata = {"help": help, "flags": flags, "metavar": metavar, "repeatable": repeatable}
    if isinstance(default, (list, dict, set)):
        raise TypeError("mutable defaults are not allowed in Config")
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True, slots=True, kw_only=True)
class Config:
    """How tricorn serves an application.

    Build it with keywords (``Config(bind=("127.0.0.1:0",))``) or from a
    mapping with :meth:`Config.from_mapping`, which rejects unknown keys.
    Every value is checked on construction; a bad one raises
    :class:`tricorn.errors.ConfigError` naming the key.
    """

    bind: tuple[str, ...] = _option(
        ("127.0.0.1:8000",),
        "Address to listen on: HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N. "
        "Repeat the option to listen on several. Port 0 lets the OS pick a free port.",
        flags=("--bind", "-b"),
        metavar="ADDRESS",
        repeatable=True,
    )
    worker_class: WorkerClass = _option(
        "asyncio",
        "The event loop to run on. uvloop and trio need their extras: "
        "pip install 'tricorn[uvloop]' or 'tricorn[trio]'.",
        flags=("--worker-class", "-k"),
    )
    metrics_bind: str | None = _option(
        None,
        "Serve Prometheus metrics at GET /metrics on this address of its own "
        "(HOST:PORT, [IPv6]:PORT, unix:PATH or fd://N), plain HTTP. Unset: no metrics, "
        "at no cost. Needs pip install 'tricorn[metrics]'.",
        metavar="ADDRESS",
    )
    statsd_host: str | None = _option(
        None,
        "Send StatsD metrics over UDP to this address: HOST:PORT, [IPv6]:PORT, HOST "
        "(port 8125) or unix:PATH (a datagram socket). Each worker sends its own; the "
        "supervisor sends the worker gauge. Unset: no StatsD, at no cost.",
        metavar="ADDRESS",
    )
    statsd_prefix: str = _option(
        "",
        "Put this before every StatsD metric name (a dot is added): with myapp, "
        "myapp.tricorn.requests.",
        metavar="PREFIX",
    )
    dogstatsd_tags: str = _option(
        "",
        "DogStatsD tags added to every StatsD metric, comma-separated: env:prod,team:web.",
        metavar="TAGS",
    )
    workers: int = _option(
        1,
        "Worker processes. Each runs its own event loop and lifespan; they share the "
        "listening sockets, which the supervisor binds once. A worker that dies is restarted.",
        flags=("--workers", "-w"),
        metavar="N",
    )
    reload: bool = _option(
        False,
        "Restart the worker when a .py file under the working directory changes "
        "(for development; runs a single worker, so not with --workers).",
    )
    max_requests: int = _option(
        0,
        "Requests (and WebSockets) a worker serves before it is replaced by a fresh "
        "one: the new worker is ready before the old one shuts down gracefully, so no "
        "request is dropped. 0: never. Runs the supervisor even with one worker.",
        metavar="N",
    )
    max_requests_jitter: int = _option(
        0,
        "Add a random 0 to N to --max-requests for each worker, so that workers "
        "started together are not all replaced at once.",
        metavar="N",
    )
    timeout_worker_healthcheck: float = _option(
        30.0,
        "Seconds a worker's event loop may go without its heartbeat to the supervisor "
        "(sent every few seconds) before the worker is killed and replaced: a loop "
        "blocked by synchronous code, or hung. 0: no healthcheck. Not with --reload.",
        metavar="SECONDS",
    )
    timeout_worker_startup: float = _option(
        120.0,
        "Seconds a worker has to import the app, run lifespan startup and serve; one "
        "that takes longer is killed: at start-up the server stops, later the worker is "
        "started again (within the crash-loop limit). 0: no limit. Not with --reload.",
        metavar="SECONDS",
    )
    interface: Interface = _option(
        "auto",
        "The application's interface. auto tells ASGI 3, ASGI 2 and WSGI apart by their signature.",
    )
    factory: bool = _option(
        False, "Treat the application path as a factory: call it with no arguments to get the app."
    )
    lifespan: LifespanMode = _option(
        "auto",
        "Run the ASGI lifespan protocol. auto runs it and carries on if the app does not "
        "support it; on makes a failure fatal; off never sends the lifespan scope.",
    )
    root_path: str = _option(
        "",
        "The path prefix the app is mounted under behind a proxy (WSGI's SCRIPT_NAME).",
        metavar="PATH",
    )
    proxy_headers: bool = _option(
        True,
        "When the peer is a trusted proxy (see --forwarded-allow-ips), take the client, "
        "scheme, host and path prefix from Forwarded (RFC 7239) or X-Forwarded-For/-Proto/"
        "-Host/-Port/-Prefix.",
    )
    forwarded_allow_ips: tuple[str, ...] = _option(
        ("127.0.0.1", "::1"),
        "Proxies whose forwarding headers are believed: addresses, networks "
        "(10.0.0.0/8) or * for any. Unix socket peers are always trusted. Repeatable.",
        metavar="ADDRESS",
        repeatable=True,
    )
    proxy_protocol: bool = _option(
        False,
        "Expect a PROXY protocol header (v1 or v2) from peers in --forwarded-allow-ips and "
        "serve their connections as the client it names; a header from any other peer is "
        "refused, and a trusted peer that sends none is closed.",
    )
    graceful_timeout: float = _option(
        10.0,
        "Seconds that in-flight requests get to finish after a shutdown begins.",
        metavar="SECONDS",
    )
    keep_alive_timeout: float = _option(
        5.0,
        "Seconds an idle keep-alive connection stays open waiting for its next request.",
        metavar="SECONDS",
    )
    request_head_timeout: float = _option(
        10.0,
        "Seconds a client has to send a complete request line and headers.",
        metavar="SECONDS",
    )
    body_timeout: float = _option(
        60.0,
        "Seconds an app waiting for the request body may wait for it to make progress "
        "(1 KiB, or its end); past it the request is answered 408 and dropped.",
        metavar="SECONDS",
    )
    write_timeout: float = _option(
        60.0,
        "Seconds a write may wait for a client that does not read; past it the "
        "connection is closed and the app's send() raises as for a disconnect.",
        metavar="SECONDS",
    )
    app_disconnect_grace: float = _option(
        30.0,
        "Seconds an app may go on after its client left before its response was "
        "complete; then it is cancelled. An app whose response is complete is left alone.",
        metavar="SECONDS",
    )
    http1_parser: HTTP1Parser = _option(
        "auto",
        "What reads HTTP/1.1 requests: h11, or httptools (llhttp, in C; several times "
        "faster), which answers every request, well-formed or not, exactly as h11 does. "
        "auto takes httptools where it is installed (pip install 'tricorn[speed]'), else h11.",
    )
    gc_freeze: bool = _option(
        True,
        "Once a worker is serving, take every object alive then (the app, its modules, "
        "what lifespan startup made) out of Python's garbage collector's full passes "
        "(gc.freeze()): each pass then looks at what requests made, not the whole "
        "program, which under load paused a worker for milliseconds. The command line "
        "only; a program that calls serve() decides for itself.",
    )
    h11_max_incomplete_size: int = _option(
        16 * 1024,
        "Largest request line plus header block, in bytes. A longer request line is "
        "answered 414, a longer header block 431.",
        metavar="BYTES",
    )
    limit_concurrency: int | None = _option(
        None,
        "Most requests (and WebSockets) served at once per worker; past it a request is "
        "answered 503 with Retry-After. Idle keep-alive connections do not count. "
        "Unset means no limit.",
        metavar="N",
    )
    max_request_body_size: int | None = _option(
        None,
        "Largest request body, in bytes; a larger body is answered 413. "
        "Unset means no limit (bodies are streamed, memory stays bounded either way).",
        metavar="BYTES",
    )
    lifespan_timeout: float = _option(
        60.0,
        "Seconds the app has to complete lifespan startup and, separately, shutdown.",
        metavar="SECONDS",
    )
    wsgi_max_workers: int = _option(
        10,
        "Threads in the pool that runs a WSGI app; at most this many WSGI requests run at once.",
        metavar="N",
    )
    ws: WebSocketMode = _option(
        "auto",
        "WebSocket support. auto serves WebSocket upgrade requests as websocket scopes; "
        "none turns WebSocket off, so upgrade requests reach the app as plain HTTP requests.",
    )
    ws_max_message_size: int = _option(
        16 * 1024 * 1024,
        "Largest incoming WebSocket message, in bytes, after decompression. A larger "
        "message closes the connection with 1009 (message too big).",
        metavar="BYTES",
    )
    ws_ping_interval: float = _option(
        20.0,
        "Seconds between the server's keepalive pings on an open WebSocket; 0 sends none.",
        metavar="SECONDS",
    )
    ws_ping_timeout: float = _option(
        20.0,
        "Seconds a client has to answer a keepalive ping before its WebSocket is closed "
        "as dead (the app sees code 1006); 0 waits forever.",
        metavar="SECONDS",
    )
    ws_per_message_deflate: bool = _option(
        True,
        "Negotiate permessage-deflate compression (RFC 7692) when the client offers it.",
    )
    http2: bool = _option(
        True,
        "Serve HTTP/2. On TLS binds ALPN offers h2 beside http/1.1; on cleartext binds "
        "see --h2c-prior-knowledge and --h2c-upgrade.",
    )
    h2c_prior_knowledge: bool = _option(
        True,
        "On cleartext binds, serve HTTP/2 to clients that open with the HTTP/2 connection "
        "preface (prior knowledge, RFC 9113 3.3) beside HTTP/1.1.",
    )
    h2c_upgrade: bool = _option(
        True,
        "On cleartext binds, switch to HTTP/2 when an HTTP/1.1 request asks with "
        "'Upgrade: h2c'. A request body that comes with the upgrade is read first, up to "
        "64 KiB; a larger one is served over HTTP/1.1 instead.",
    )
    h2_max_concurrent_streams: int = _option(
        100,
        "HTTP/2 streams a client may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). "
        "Requests whose app is still running count, even once the stream is reset.",
        metavar="N",
    )
    h2_initial_window_size: int = _option(
        65535,
        "Bytes of request body a client may send on one HTTP/2 stream before the app has "
        "read them (SETTINGS_INITIAL_WINDOW_SIZE). Bounds the memory a stream can hold.",
        metavar="BYTES",
    )
    h2_max_frame_size: int = _option(
        16384,
        "Largest HTTP/2 frame payload the server accepts (SETTINGS_MAX_FRAME_SIZE, "
        "16384 to 16777215).",
        metavar="BYTES",
    )
    h2_max_header_list_size: int = _option(
        65536,
        "Largest decoded HTTP/2 header list, in bytes (SETTINGS_MAX_HEADER_LIST_SIZE); a "
        "larger one is refused with 431, and an HPACK bomb ends the connection.",
        metavar="BYTES",
    )
    h2_max_resets: int = _option(
        200,
        "Streams that may be reset (by the client, or by the server for the client's "
        "errors) per 10 seconds, as a burst; past it the connection ends with "
        "GOAWAY(ENHANCE_YOUR_CALM). Guards against rapid reset (CVE-2023-44487) and "
        "MadeYouReset (CVE-2025-8671).",
        metavar="N",
    )
    h2_max_control_frames: int = _option(
        1000,
        "Frames that cost the server work but carry no request a client may send per 10 "
        "seconds, as a burst: PING, SETTINGS (and their ACKs), PRIORITY, unknown frame "
        "types, empty DATA, frames on closed streams, and WINDOW_UPDATEs beyond two per "
        "DATA frame the server sent. Past it the connection ends with "
        "GOAWAY(ENHANCE_YOUR_CALM).",
        metavar="N",
    )
    quic_bind: tuple[str, ...] = _option(
        (),
        "Serve HTTP/3 over QUIC on this UDP address (HOST:PORT or [IPv6]:PORT), beside the "
        "TCP binds; repeatable. Needs --certfile (QUIC is always TLS 1.3) and "
        "pip install 'tricorn[h3]'. With --workers, each worker binds its own socket "
        "(SO_REUSEPORT), so the port must not be 0.",
        metavar="ADDRESS",
        repeatable=True,
    )
    quic_retry: QuicRetry = _option(
        "auto",
        "Validate a QUIC client's address with a Retry round trip before serving it "
        "(RFC 9000 8.1). auto does so once half of --quic-max-connections are in use, "
        "so that spoofed handshakes cannot fill the rest; always costs every new "
        "connection one round trip; never trusts every address.",
    )
    quic_max_connections: int = _option(
        4096,
        "Most QUIC connections per worker; a client past it is refused "
        "(CONNECTION_REFUSED) and falls back to TCP.",
        metavar="N",
    )
    alt_svc: str = _option(
        "auto",
        "The Alt-Svc header on TCP responses, which tells browsers HTTP/3 is served. "
        'auto advertises each --quic-bind port (h3=":PORT"; ma=86400) and nothing without '
        "one; off sends none; any other value is sent as it is (a port that a load "
        "balancer maps, say).",
        metavar="VALUE",
    )
    certfile: str | None = _option(
        None,
        "Serve HTTPS: the PEM file with the server certificate, followed by any "
        "intermediate certificates (and the private key, unless --keyfile is given). "
        "Unset serves plain HTTP.",
        metavar="FILE",
    )
    keyfile: str | None = _option(
        None,
        "The PEM file with the certificate's private key, when it is not in --certfile.",
        metavar="FILE",
    )
    keyfile_password: str | None = _option(
        None,
        "The password of an encrypted private key. Prefer TRICORN_KEYFILE_PASSWORD or "
        "the config file to the command line, where other users can see it.",
        metavar="PASSWORD",
    )
    ca_certs: str | None = _option(
        None,
        "A PEM file of the CA certificates that client certificates are checked against "
        "(see --verify-mode).",
        metavar="FILE",
    )
    verify_mode: VerifyMode = _option(
        "none",
        "Client certificates (mutual TLS). none asks for none; optional asks, and checks "
        "one that is sent; required refuses a client without a valid certificate. "
        "optional and required need --ca-certs.",
    )
    ciphers: str | None = _option(
        None,
        "The OpenSSL cipher string for TLS 1.2. Unset means AEAD suites with forward "
        "secrecy only, which HTTP/2 accepts (RFC 9113 9.2.2). TLS 1.3 suites are not "
        "affected.",
        metavar="CIPHERS",
    )
    tls_handshake_timeout: float = _option(
        10.0,
        "Seconds a client has to complete the TLS handshake; a slower one is dropped.",
        metavar="SECONDS",
    )
    backlog: int = _option(1024, "The listen backlog for each bound socket.", metavar="N")
    uds_mode: str | None = _option(
        None,
        "Permissions of unix socket files, in octal (660): who may connect. "
        "Unset leaves them to the umask.",
        metavar="MODE",
    )
    uds_owner: str | None = _option(
        None, "Owner of unix socket files: a user name or id.", metavar="USER"
    )
    uds_group: str | None = _option(
        None, "Group of unix socket files: a group name or id.", metavar="GROUP"
    )
    systemd_socket: tuple[str, ...] = _option(
        (),
        "With systemd socket activation, serve only the passed socket with this "
        "FileDescriptorName= (as listed in LISTEN_FDNAMES) in place of --bind; repeat for "
        "several. Unset: every passed socket.",
        metavar="NAME",
        repeatable=True,
    )
    pid_file: str | None = _option(
        None,
        "Write the server's process id (the supervisor's, with --workers) to this file, and "
        "remove it at exit. A file naming a process that is still running refuses the start.",
        metavar="FILE",
    )
    server_header: bool = _option(True, "Add a Server header to responses that do not carry one.")
    server_name: str = _option("tricorn", "The value of the Server header.", metavar="NAME")
    date_header: bool = _option(True, "Add a Date header to responses that do not carry one.")
    access_log: bool = _option(
        True, "Log one line per completed request to the tricorn.access logger."
    )
    access_log_format: str = _option(
        DEFAULT_ACCESS_LOG_FORMAT,
        'The access log line, with Gunicorn\'s atoms (%(h)s %(l)s %(u)s %(t)s "%(r)s" '
        '%(s)s %(b)s "%(f)s" "%(a)s" %(D)s %(L)s, %({header}i)s, %({header}o)s, '
        "%(H)s protocol, %(S)s stream id), or json for one JSON object per request.",
        metavar="FORMAT",
    )
    log_level: LogLevel = _option("info", "The level of tricorn's error log.")
    access_logfile: str | None = _option(
        None, "Where access log lines go: a file, or - for stdout. Unset: stderr.", metavar="FILE"
    )
    error_logfile: str | None = _option(
        None, "Where the error log goes: a file, or - for stdout. Unset: stderr.", metavar="FILE"
    )
    log_config: str | None = _option(
        None,
        "A logging configuration file that replaces tricorn's own: .json or .toml for "
        "logging.config.dictConfig, anything else as INI for fileConfig.",
        metavar="FILE",
    )

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            # Friendly conversions a user would expect to just work: a list
            # of binds, a whole number of seconds.
            if isinstance(value, list) and field.type == "tuple[str, ...]":
                value = tuple(value)
            elif field.type == "float" and type(value) is int:
                value = float(value)
            object.__setattr__(self, field.name, value)
            _check(field.name, field.type, value)
        if not self.bind:
            raise ConfigError("bind", "at least one address is needed")
        if self.uds_mode is not None and uds_mode_bits(self.uds_mode) is None:
            raise ConfigError(
                "uds_mode",
                f"{self.uds_mode!r} is not a file mode",
                allowed=("octal digits from 0 to 777, e.g. 660",),
            )
        for address in self.bind:
            parse_bind(address)
        if self.metrics_bind is not None:
            parse_bind(self.metrics_bind, key="metrics_bind")
        self._check_statsd()
        self._check_quic()
        for key in (
            "graceful_timeout",
            "keep_alive_timeout",
            "request_head_timeout",
            "body_timeout",
            "write_timeout",
            "app_disconnect_grace",
            "lifespan_timeout",
            "tls_handshake_timeout",
        ):
            value = getattr(self, key)
            if not (value > 0 and math.isfinite(value)):
                raise ConfigError(
                    key, f"must be a positive, finite number of seconds, not {value!r}"
                )
        for key in (
            "ws_ping_interval",
            "ws_ping_timeout",
            "timeout_worker_healthcheck",
            "timeout_worker_startup",
        ):
            value = getattr(self, key)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(
                    key, f"must be 0 (off) or a positive, finite number of seconds, not {value!r}"
                )
        for key in (
            "h11_max_incomplete_size",
            "wsgi_max_workers",
            "backlog",
            "workers",
            "ws_max_message_size",
            "h2_max_concurrent_streams",
            "h2_initial_window_size",
            "h2_max_header_list_size",
            "h2_max_resets",
            "h2_max_control_frames",
            "quic_max_connections",
        ):
            if getattr(self, key) < 1:
                raise ConfigError(key, f"must be at least 1, not {getattr(self, key)!r}")
        for key in ("max_requests", "max_requests_jitter"):
            if getattr(self, key) < 0:
                raise ConfigError(key, f"must be 0 (off) or more, not {getattr(self, key)!r}")
        if self.max_requests_jitter and not self.max_requests:
            raise ConfigError("max_requests_jitter", "needs max_requests: it is added to it")
        if self.h2_initial_window_size > 2**31 - 1:
            raise ConfigError(
                "h2_initial_window_size", "must be at most 2147483647 (RFC 9113 6.5.2)"
            )
        if not 16384 <= self.h2_max_frame_size <= 16777215:
            raise ConfigError(
                "h2_max_frame_size",
                f"must be from 16384 to 16777215 (RFC 9113 6.5.2), not {self.h2_max_frame_size}",
            )
        if self.limit_concurrency is not None and self.limit_concurrency < 1:
            raise ConfigError("limit_concurrency", "must be at least 1 (or unset for no limit)")
        if self.max_request_body_size is not None and self.max_request_body_size < 0:
            raise ConfigError("max_request_body_size", "must not be negative")
        for value in self.forwarded_allow_ips:
            if value.strip() != "*":
                try:
                    ipaddress.ip_network(value.strip(), strict=False)
                except ValueError:
                    raise ConfigError(
                        "forwarded_allow_ips",
                        f"{value!r} is not an IP address or network",
                        allowed=("*", "ADDRESS", "NETWORK/PREFIX"),
                    ) from None
        if self.reload and self.workers > 1:
            raise ConfigError(
                "reload", "cannot be combined with workers > 1; reload runs one worker"
            )
        if not _TOKEN.fullmatch(self.server_name):
            raise ConfigError(
                "server_name", f"{self.server_name!r} is not a valid header value (visible ASCII)"
            )
        self._check_tls()
        if self.root_path and (not self.root_path.startswith("/") or self.root_path.endswith("/")):
            raise ConfigError(
                "root_path", f"must start with '/' and not end with one, not {self.root_path!r}"
            )

    def _check_statsd(self) -> None:
        if self.statsd_host is not None:
            parse_statsd_host(self.statsd_host)
        if self.statsd_prefix and not _STATSD_NAME.fullmatch(self.statsd_prefix):
            raise ConfigError(
                "statsd_prefix",
                f"{self.statsd_prefix!r} cannot start a StatsD metric name",
                allowed=("letters, digits and . _ - (not a leading dot)",),
            )
        if self.dogstatsd_tags:
            for tag in self.dogstatsd_tags.split(","):
                if not _DOGSTATSD_TAG.fullmatch(tag):
                    raise ConfigError(
                        "dogstatsd_tags",
                        f"{tag!r} in {self.dogstatsd_tags!r} is not a DogStatsD tag",
                        allowed=("NAME or NAME:VALUE, comma-separated, without | # @ or spaces",),
                    )

    def _check_quic(self) -> None:
        """HTTP/3 needs TLS, UDP host:port binds, and a fixed port across workers."""
        for address in self.quic_bind:
            kind, _, port = parse_bind(address, key="quic_bind")
            if kind != "tcp":
                raise ConfigError(
                    "quic_bind",
                    f"{address!r} is not a UDP address",
                    allowed=("HOST:PORT", "[IPv6]:PORT"),
                )
            if port == 0 and self.workers > 1:
                raise ConfigError(
                    "quic_bind",
                    f"{address!r}: with workers > 1 each worker binds the port itself, "
                    "so it cannot be 0",
                )
        if self.quic_bind and self.certfile is None:
            raise ConfigError(
                "quic_bind", "needs certfile (and keyfile): QUIC always runs over TLS 1.3"
            )
        if any(char in self.alt_svc for char in "\r\n\0") or not self.alt_svc.isascii():
            raise ConfigError("alt_svc", f"{self.alt_svc!r} is not a valid header value")

    def _check_tls(self) -> None:
        """Cross-field TLS rules; the files themselves are read when serving starts."""
        if self.certfile is None:
            for key in ("keyfile", "keyfile_password", "ca_certs", "ciphers"):
                if getattr(self, key) is not None:
                    raise ConfigError(key, "needs certfile: TLS is off without a certificate")
            if self.verify_mode != "none":
                raise ConfigError("verify_mode", "needs certfile: TLS is off without a certificate")
        if self.verify_mode != "none" and self.ca_certs is None:
            raise ConfigError(
                "verify_mode",
                f"{self.verify_mode!r} needs ca_certs, the CA certificates that client "
                "certificates are checked against",
            )

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> Config:
        """Build a Config from plain data (a TOML table, parsed options).

        Keys may use ``-`` or ``_``. Strings are converted to the field's type,
        so values from the environment work as they are.
        """
        known = {field.name: field for field in dataclasses.fields(cls)}
        kwargs: dict[str, Any] = {}
        for raw_key, value in values.items():
            key = raw_key.replace("-", "_")
            if key not in known:
                raise ConfigError(raw_key, "unknown configuration key", allowed=sorted(known))
            kwargs[key] = _coerce(key, known[key].type, value)
        return cls(**kwargs)


def uds_mode_bits(text: str) -> int | None:
    """``660``, ``0660`` or ``0o660`` as permission bits; None if it is not one."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or any(char not in "01234567" for char in digits):
        return None
    value = int(digits, 8)
    return value if value <= 0o777 else None


def option_specs() -> list[dataclasses.Field[Any]]:
    """The documented fields of Config, in declaration order."""
    return list(dataclasses.fields(Config))


def flags_of(field: dataclasses.Field[Any]) -> tuple[str, ...]:
    """A field's command-line flags: the declared ones, else ``--name-with-dashes``.

    The CLI and the docs both spell options this way; this is the one rule.
    """
    flags: tuple[str, ...] = field.metadata["flags"]
    return flags or ("--" + field.name.replace("_", "-"),)


def choices_of(annotation: Any) -> tuple[str, ...] | None:
    """The allowed values of a Literal-typed field, else None."""
    resolved = _resolve(annotation)
    if getattr(resolved, "__origin__", None) is Literal:
        return tuple(str(arg) for arg in get_args(resolved))
    return None


_NAMES: Final = {
    "WorkerClass": WorkerClass,
    "Interface": Interface,
    "LifespanMode": LifespanMode,
    "LogLevel": LogLevel,
    "WebSocketMode": WebSocketMode,
    "VerifyMode": VerifyMode,
    "HTTP1Parser": HTTP1Parser,
    "QuicRetry": QuicRetry,
}


def _resolve(annotation: Any) -> Any:
    """Turn a string annotation (from ``__future__`` annotations) into its type."""
    if not isinstance(annotation, str):
        return annotation
    if annotation in _NAMES:
        return _NAMES[annotation]
    return {
        "bool": bool,
        "int": int,
        "float": float,
        "str": str,
        "int | None": int | None,
        "str | None": str | None,
        "tuple[str, ...]": tuple[str, ...],
    }[annotation]


def _check(key: str, annotation: Any, value: Any) -> None:
    kind = _resolve(annotation)
    choices = choices_of(annotation)
    if choices is not None:
        if value not in choices:
            raise ConfigError(key, f"{value!r} is not allowed", allowed=choices)
        return
    if kind is bool:
        ok = isinstance(value, bool)
    elif kind is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif kind is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
    elif kind is str:
        ok = isinstance(value, str)
    elif kind == int | None:
        ok = value is None or (isinstance(value, int) and not isinstance(value, bool))
    elif kind == str | None:
        ok = value is None or isinstance(value, str)
    else:  # tuple[str, ...]
        ok = isinstance(value, tuple) and all(isinstance(item, str) for item in value)
    if not ok:
        raise ConfigError(key, f"expected {_describe(kind)}, got {value!r}")


def _describe(kind: Any) -> str:
    if kind == int | None:
        return "an integer or nothing"
    if kind == str | None:
        return "a string or nothing"
    if kind == tuple[str, ...]:
        return "a list of strings"
    return {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[kind]


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}


def _coerce(key: str, annotation: Any, value: Any) -> Any:
    """Convert a value from text or TOML into the field's type, naming the key on failure."""
    kind = _resolve(annotation)
    if kind == tuple[str, ...]:
        if isinstance(value, str):
            return tuple(part for part in value.split(",") if part)
        if isinstance(value, list):
            return tuple(value)
        return value
    if not isinstance(value, str) or kind is str or choices_of(annotation) is not None:
        if kind is float and isinstance(value, int) and not isinstance(value, bool):
            return float(value)
        return value
    try:
        if kind is bool:
            lowered = value.strip().lower()
            if lowered in _TRUE:
                return True
            if lowered in _FALSE:
                return False
            raise ValueError(value)
        if kind is int:
            return int(value)
        if kind is float:
            return float(value)
        if kind == int | None:
            return None if value.strip().lower() in {"", "none"} else int(value)
        if kind == str | None:
            return None if value.strip().lower() in {"", "none"} else value
    except ValueError:
        raise ConfigError(key, f"expected {_describe(kind)}, got {value!r}") from None
    return value


def parse_bind(address: str, *, key: str = "bind") -> tuple[str, str | int, int | None]:
    """Split a bind address into ``(kind, target, port)``.

    ``kind`` is ``"tcp"`` (target is the host), ``"unix"`` (target is the
    path) or ``"fd"`` (target is the file descriptor number). A bad address
    is a ConfigError naming ``key``.
    """
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ConfigError(key, f"{address!r} names no socket path")
        return ("unix", path, None)
    if match := _FD_BIND.fullmatch(address):
        return ("fd", int(match.group(1)), None)
    match = _IPV6_BIND.fullmatch(address) or _HOST_BIND.fullmatch(address)
    if match is None:
        raise ConfigError(
            key,
            f"{address!r} is not an address",
            allowed=("HOST:PORT", "[IPv6]:PORT", "unix:PATH", "fd://N"),
        )
    if address.startswith("["):
        try:
            ipaddress.IPv6Address(match.group(1).split("%")[0])
        except ValueError:
            raise ConfigError(
                key, f"{match.group(1)!r} in {address!r} is not an IPv6 address"
            ) from None
    port = int(match.group(2))
    if port > 65535:
        raise ConfigError(key, f"port {port} in {address!r} is out of range (0-65535)")
    return ("tcp", match.group(1) or "0.0.0.0", port)


def parse_statsd_host(address: str) -> tuple[str, int] | str:
    """``statsd_host`` as ``(host, port)``, or the path of a unix datagram socket.

    A bare host means port 8125. A bad address is a ConfigError naming ``statsd_host``.
    """
    key = "statsd_host"
    if address.startswith("unix:"):
        path = address[len("unix:") :]
        if not path:
            raise ConfigError(key, f"{address!r} names no socket path")
        return path
    match = _IPV6_BIND.fullmatch(address) or _HOST_BIND.fullmatch(address)
    if match is None and address and not any(c in address for c in ":[]/ "):
        return (address, STATSD_PORT)
    if match is None or not match.group(1):
        raise ConfigError(
            key,
            f"{address!r} is not a StatsD address",
            allowed=("HOST:PORT", "[IPv6]:PORT", "HOST (port 8125)", "unix:PATH"),
        )
    host, port = match.group(1), int(match.group(2))
    if address.startswith("["):
        try:
            ipaddress.IPv6Address(host.split("%")[0])
        except ValueError:
            raise ConfigError(key, f"{host!r} in {address!r} is not an IPv6 address") from None
    if not 1 <= port <= 65535:
        raise ConfigError(key, f"port {port} in {address!r} is out of range (1-65535)")
    return (host, port)
