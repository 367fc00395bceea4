"""tricorn's two loggers: ``tricorn.error`` (what went wrong) and ``tricorn.access``.

Only the runtime logs. The CLI configures handlers; as a library tricorn
leaves handler setup to the host program.
"""

from __future__ import annotations

import base64
import json
import logging
import logging.config
import os
import sys
import tomllib
from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Final

from .._asgi.types import HTTPScope, WebSocketScope
from .._protocol import Headers
from ..config import DEFAULT_ACCESS_LOG_FORMAT, Config
from ..errors import ConfigError

__all__ = [
    "DEFAULT_ACCESS_FORMAT",
    "AccessAtoms",
    "access_logger",
    "configure_logging",
    "error_logger",
    "log_access",
]

error_logger: Final = logging.getLogger("tricorn.error")
access_logger: Final = logging.getLogger("tricorn.access")


#: The line every error-log (and default access-log) record starts with; the
#: pid tells the workers of one server apart.
_PREFIX: Final = "[%(asctime)s] [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(config: Config) -> None:
    """Set up the CLI's logging: files or streams, or the user's own logging config.

    ``--log-config`` (JSON or TOML for ``logging.config.dictConfig``, INI for
    ``fileConfig``) replaces all of it. Otherwise ``tricorn.error`` goes to
    ``--error-logfile`` and ``tricorn.access`` to ``--access-logfile`` (``-``
    is stdout; unset, stderr). A custom access log format is written as it is,
    with no prefix: it says what it wants, time included.
    """
    if config.log_config is not None:
        _load_log_config(config.log_config)
        return
    error_handler = _handler(config.error_logfile)
    error_handler.setFormatter(logging.Formatter(_PREFIX))
    if config.access_logfile == config.error_logfile:
        access_handler = error_handler
    else:
        access_handler = _handler(config.access_logfile)
    plain = config.access_log_format != DEFAULT_ACCESS_FORMAT
    if plain:
        if access_handler is error_handler:
            access_handler = _handler(config.access_logfile)
        access_handler.setFormatter(logging.Formatter("%(message)s"))
    elif access_handler is not error_handler:
        access_handler.setFormatter(logging.Formatter(_PREFIX))
    error_logger.handlers[:] = [error_handler]
    access_logger.handlers[:] = [access_handler]
    for logger in (error_logger, access_logger):
        logger.propagate = False
    error_logger.setLevel(config.log_level.upper())
    access_logger.setLevel(logging.INFO if config.access_log else logging.CRITICAL + 1)


def _handler(target: str | None) -> logging.Handler:
    if target is None:
        return logging.StreamHandler(sys.stderr)
    if target == "-":
        return logging.StreamHandler(sys.stdout)
    return logging.FileHandler(target, encoding="utf-8")


def _load_log_config(path: str) -> None:
    """A logging configuration file, by its extension: .json, .toml, else INI."""
    lowered = path.lower()
    try:
        if lowered.endswith(".json"):
            with open(path, encoding="utf-8") as file:
                logging.config.dictConfig(json.load(file))
        elif lowered.endswith(".toml"):
            with open(path, "rb") as file:
                logging.config.dictConfig(tomllib.load(file))
        else:
            logging.config.fileConfig(path, disable_existing_loggers=False)
    except (OSError, ValueError, KeyError, TypeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError("log_config", f"cannot use {path!r}: {exc}") from exc


def format_client(client: tuple[str, int] | None) -> str:
    if client is None:
        return "-"
    host, port = client
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


#: The line written when no --access-log-format is given.
DEFAULT_ACCESS_FORMAT: Final = DEFAULT_ACCESS_LOG_FORMAT


def log_access(
    scope: HTTPScope | WebSocketScope,
    status: int | None,
    size: int,
    duration: float,
    response_headers: Headers = (),
    *,
    stream_id: int | None = None,
    log_format: str = DEFAULT_ACCESS_FORMAT,
) -> None:
    """One access line; a WebSocket's is written when its handshake is answered."""
    if not access_logger.isEnabledFor(logging.INFO):
        return
    atoms = AccessAtoms(scope, status, size, duration, response_headers, stream_id)
    if log_format == "json":
        access_logger.info(atoms.json())
    else:
        access_logger.info(log_format, atoms)


class AccessAtoms(Mapping[str, object]):
    """The values an access log format names, computed only when named.

    Gunicorn's (and Hypercorn's) atoms: ``h`` remote address, ``l`` ``-``,
    ``u`` user (from Basic auth), ``t`` time, ``r`` request line, ``m``
    method, ``U`` path, ``q`` query, ``H`` protocol, ``s`` status, ``B``
    bytes, ``b`` bytes or ``-``, ``f`` referer, ``a`` user agent, ``T``
    seconds, ``M`` milliseconds, ``D`` microseconds, ``L`` seconds with
    decimals, ``p`` pid, ``{name}i`` a request header, ``{name}o`` a
    response header; and tricorn's ``client`` (address with port),
    ``Mf`` (milliseconds, one decimal) and ``S`` (HTTP/2 stream id).
    """

    __slots__ = ("_duration", "_headers", "_response", "_scope", "_size", "_status", "_stream")

    def __init__(
        self,
        scope: HTTPScope | WebSocketScope,
        status: int | None,
        size: int,
        duration: float,
        response_headers: Headers,
        stream_id: int | None,
    ) -> None:
        self._scope = scope
        self._status = status
        self._size = size
        self._duration = duration
        self._response = response_headers
        self._headers: dict[bytes, bytes] | None = None
        self._stream = stream_id

    def __getitem__(self, key: str) -> object:
        if key.startswith("{") and key[-2:] in ("}i", "}o"):
            name = key[1:-2].lower().encode("latin-1")
            if key.endswith("i"):
                return self._request_header(name) or "-"
            return next((v.decode("latin-1") for n, v in self._response if n.lower() == name), "-")
        atom = _ATOMS.get(key)
        if atom is None:
            return "-"  # an unknown atom prints as a blank, never breaks the line
        return atom(self)

    def __iter__(self) -> Iterator[str]:
        return iter(_ATOMS)

    def __len__(self) -> int:
        return len(_ATOMS)

    def json(self) -> str:
        """One JSON object per request, for log collectors."""
        record = {
            "time": datetime.now(UTC).isoformat(timespec="milliseconds"),
            "client": self["h"],
            "client_port": self._scope["client"][1] if self._scope["client"] else None,
            "method": self["m"],
            "path": self["U"],
            "query": self["q"],
            "protocol": self["H"],
            "status": self._status,
            "bytes": self._size,
            "duration_ms": round(self._duration * 1000, 3),
            "referer": self._request_header(b"referer"),
            "user_agent": self._request_header(b"user-agent"),
            "stream_id": self._stream,
            "pid": os.getpid(),
        }
        return json.dumps(record, separators=(",", ":"))

    # -- the atoms ----------------------------------------------------------

    def _request_header(self, name: bytes) -> str | None:
        if self._headers is None:
            self._headers = {}
            for key, value in self._scope["headers"]:
                self._headers.setdefault(key, value)
        found = self._headers.get(name)
        return found.decode("latin-1") if found is not None else None

    def _method(self) -> str:
        return self._scope["method"] if self._scope["type"] == "http" else "GET"

    def _target(self) -> str:
        target = self._scope["raw_path"].decode("latin-1")
        if self._scope["query_string"]:
            target += "?" + self._scope["query_string"].decode("latin-1")
        return target

    def _user(self) -> str:
        auth = self._request_header(b"authorization")
        if auth and auth[:6].lower() == "basic ":
            try:
                return base64.b64decode(auth[6:].strip()).decode("utf-8").split(":", 1)[0] or "-"
            except (ValueError, UnicodeDecodeError):
                return "-"
        return "-"


def _request_line(atoms: AccessAtoms) -> str:
    return f"{atoms._method()} {atoms._target()} {atoms['H']}"


_ATOMS: Final[dict[str, Callable[[AccessAtoms], object]]] = {
    "h": lambda a: a._scope["client"][0] if a._scope["client"] else "-",
    "client": lambda a: format_client(a._scope["client"]),
    "l": lambda a: "-",
    "u": AccessAtoms._user,
    "t": lambda a: datetime.now().astimezone().strftime("[%d/%b/%Y:%H:%M:%S %z]"),
    "r": _request_line,
    "m": AccessAtoms._method,
    "U": lambda a: a._scope["path"],
    "q": lambda a: a._scope["query_string"].decode("latin-1"),
    "H": lambda a: f"HTTP/{a._scope['http_version']}",
    "s": lambda a: a._status if a._status is not None else "-",
    "B": lambda a: a._size,
    "b": lambda a: a._size or "-",
    "f": lambda a: a._request_header(b"referer") or "-",
    "a": lambda a: a._request_header(b"user-agent") or "-",
    "T": lambda a: int(a._duration),
    "M": lambda a: int(a._duration * 1000),
    "Mf": lambda a: f"{a._duration * 1000:.1f}",
    "D": lambda a: int(a._duration * 1_000_000),
    "L": lambda a: f"{a._duration:.6f}",
    "p": lambda a: f"<{os.getpid()}>",
    "S": lambda a: a._stream if a._stream is not None else "-",
}
