"""A WSGI (PEP 3333) application as an ASGI 3 application, run on a bounded thread pool.

Each request runs the WSGI call in a worker thread. The thread never holds the
whole request or response: ``wsgi.input`` pulls ``http.request`` messages from
the event loop as the app reads, and every body chunk the app produces is sent
as it comes, so the server's backpressure (``send()`` returns once the bytes
are accepted, ARCHITECTURE.md "One request's trip") reaches the WSGI app too.

This is the only ``_asgi`` module that touches anyio: for its worker threads
and for the calls from those threads back into the event loop.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable, Iterable, Iterator
from types import TracebackType
from typing import Any, Final, Protocol, TypeAlias

import anyio
import anyio.from_thread
import anyio.to_thread

from ..errors import AppProtocolError, ClientDisconnected, ConfigError, TricornError
from .types import ASGIReceive, ASGISend, HTTPScope, Message, Scope

__all__ = ["StartResponse", "WSGIAdapter", "WSGIApp", "WSGIEnvironment", "build_environ"]

ExcInfo: TypeAlias = tuple[type[BaseException], BaseException, TracebackType]
OptExcInfo: TypeAlias = ExcInfo | tuple[None, None, None]
WSGIEnvironment: TypeAlias = dict[str, Any]
WriteCallable: TypeAlias = Callable[[bytes], object]


class StartResponse(Protocol):
    """PEP 3333's ``start_response``; the same shape as typeshed's, so apps typed
    against ``_typeshed.wsgi`` (Flask, Werkzeug, Django) are accepted as they are."""

    def __call__(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = ...,
        /,
    ) -> WriteCallable: ...


WSGIApp: TypeAlias = Callable[[WSGIEnvironment, StartResponse], Iterable[bytes]]

_error_logger: Final = logging.getLogger("tricorn.error")


class WSGIAdapter:
    """Serve ``app`` as an ASGI 3 app; at most ``max_workers`` WSGI calls run at once.

    ``http`` scopes run the WSGI app; ``lifespan`` scopes are answered at once
    (WSGI has no lifespan), so the server's ``lifespan = "auto"`` goes quietly
    ahead. Any other scope type is an error naming it.

    The thread limiter is created on the first call, inside the running event
    loop, because anyio binds a ``CapacityLimiter`` to the backend it was made
    on; an adapter therefore serves one event loop.
    """

    def __init__(self, app: WSGIApp, *, max_workers: int, multiprocess: bool = False) -> None:
        if max_workers < 1:
            raise ConfigError("wsgi_max_workers", f"must be at least 1, not {max_workers!r}")
        self.app = app
        self.max_workers = max_workers
        #: ``wsgi.multiprocess``: whether other processes serve the same app
        #: (``--workers`` above 1), so per-process state is not shared state.
        self.multiprocess = multiprocess
        self._limiter: anyio.CapacityLimiter | None = None

    async def __call__(self, scope: Scope, receive: ASGIReceive, send: ASGISend) -> None:
        kind: str = scope["type"]
        if scope["type"] == "http":
            await self._serve_http(scope, receive, send)
        elif scope["type"] == "lifespan":
            await _answer_lifespan(receive, send)
        else:
            raise TricornError(
                f"a WSGI application cannot serve a {kind!r} scope; "
                "it serves 'http' only ('lifespan' is answered for it)"
            )

    async def _serve_http(self, scope: HTTPScope, receive: ASGIReceive, send: ASGISend) -> None:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(self.max_workers)
        errors = _ErrorStream()
        environ = build_environ(
            scope, _RequestBody(receive), errors, multiprocess=self.multiprocess
        )
        call = _WSGICall(self.app, environ, send)
        try:
            await anyio.to_thread.run_sync(call.run, limiter=self._limiter)
        finally:
            errors.flush()


async def _answer_lifespan(receive: ASGIReceive, send: ASGISend) -> None:
    """Lifespan spec 2.0 for an app that has nothing to start or stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return


# -- the environ ---------------------------------------------------------------


def _native(text: str) -> str:
    """PEP 3333 "native strings": the URL's UTF-8 bytes, each read as one latin-1 char."""
    return text.encode("utf-8").decode("latin-1")


def _script_name_and_path_info(root_path: str, path: str) -> tuple[str, str]:
    """Split ``path`` at the mount point ``root_path`` (ASGI spec 2.5: path includes it).

    The split is on a segment boundary, so ``/app`` owns ``/app`` and
    ``/app/x`` but not ``/application``. A path outside the mount point (an
    older server that left ``root_path`` out of ``path``) is taken as it is.
    """
    script_name = root_path.rstrip("/")
    if script_name and (path == script_name or path.startswith(script_name + "/")):
        return script_name, path[len(script_name) :]
    return script_name, path


def build_environ(
    scope: HTTPScope, body: _RequestBody, errors: _ErrorStream, *, multiprocess: bool = False
) -> WSGIEnvironment:
    """The PEP 3333 environ for an ``http`` scope."""
    script_name, path_info = _script_name_and_path_info(scope["root_path"], scope["path"])
    server = scope.get("server")
    if server is None or server[1] is None:
        # No address, or a unix socket (path, None): there is no host or port to name.
        server_name, server_port = "localhost", "0"
    else:
        server_name, server_port = server[0], str(server[1])
    environ: WSGIEnvironment = {
        "REQUEST_METHOD": scope["method"],
        "SCRIPT_NAME": _native(script_name),
        "PATH_INFO": _native(path_info),
        "QUERY_STRING": scope["query_string"].decode("latin-1"),
        "SERVER_NAME": server_name,
        "SERVER_PORT": server_port,
        "SERVER_PROTOCOL": f"HTTP/{scope['http_version']}",
        "wsgi.version": (1, 0),
        "wsgi.url_scheme": scope["scheme"],
        "wsgi.input": body,
        # The body ends where the stream says so even without Content-Length
        # (chunked, HTTP/2); Werkzeug reads such bodies only when told this.
        "wsgi.input_terminated": True,
        "wsgi.errors": errors,
        "wsgi.multithread": True,
        # PEP 3333: true when another process may be running the same app.
        "wsgi.multiprocess": multiprocess,
        "wsgi.run_once": False,
    }
    client = scope.get("client")
    if client is not None:
        environ["REMOTE_ADDR"] = client[0]
        environ["REMOTE_PORT"] = str(client[1])
    environ.update(_header_variables(scope["headers"]))
    return environ


def _header_variables(headers: Iterable[tuple[bytes, bytes]]) -> dict[str, str]:
    """``CONTENT_TYPE``, ``CONTENT_LENGTH`` and ``HTTP_*`` (PEP 3333, CGI RFC 3875 4.1.18)."""
    variables: dict[str, str] = {}
    for raw_name, raw_value in headers:
        name = raw_name.decode("latin-1")
        if "_" in name:
            # "X_Forwarded_For" and "X-Forwarded-For" would both become
            # HTTP_X_FORWARDED_FOR; a client could smuggle the one past a proxy
            # that checks the other, so names with "_" are dropped (as nginx does).
            continue
        key = name.upper().replace("-", "_")
        if key not in ("CONTENT_TYPE", "CONTENT_LENGTH"):
            key = "HTTP_" + key
        value = raw_value.decode("latin-1")
        if key in variables:
            # RFC 9110 5.3: repeated fields combine with ","; Cookie is the
            # exception and combines with "; " (RFC 9113 8.2.3).
            separator = "; " if key == "HTTP_COOKIE" else ","
            variables[key] = f"{variables[key]}{separator}{value}"
        else:
            variables[key] = value
    return variables


class _RequestBody:
    """``wsgi.input``: the request body, pulled from the event loop as the app reads.

    Used from the worker thread only. ``read(size)`` blocks until ``size``
    bytes or the end of the body, like a buffered file. ``http.disconnect``
    ends the body early: the app sees end-of-file.
    """

    def __init__(self, receive: ASGIReceive) -> None:
        self._receive = receive
        self._buffer = bytearray()
        self._more = True

    def _pull(self) -> bool:
        """Fetch the next ``http.request`` into the buffer; False once the body has ended."""
        if not self._more:
            return False
        message = anyio.from_thread.run(self._next_message)
        if message["type"] == "http.request":
            self._buffer += message.get("body", b"")
            self._more = bool(message.get("more_body", False))
        else:
            self._more = False  # http.disconnect
        return True

    async def _next_message(self) -> Message:
        # from_thread.run() takes a coroutine function; receive() is any awaitable.
        if _cancelled_before_start():
            return {"type": "http.disconnect"}
        return await self._receive()

    def _take(self, size: int) -> bytes:
        data = bytes(self._buffer[:size])
        del self._buffer[:size]
        return data

    def read(self, size: int | None = -1) -> bytes:
        if size is None or size < 0:
            while self._pull():
                pass
            return self._take(len(self._buffer))
        while len(self._buffer) < size and self._pull():
            pass
        return self._take(size)

    def readline(self, size: int | None = -1) -> bytes:
        limit = -1 if size is None else size
        searched = 0
        while True:
            newline = self._buffer.find(b"\n", searched)
            if newline >= 0:
                end = newline + 1
                break
            if 0 <= limit <= len(self._buffer):
                end = limit
                break
            searched = len(self._buffer)
            if not self._pull():
                end = len(self._buffer)
                break
        if limit >= 0:
            end = min(end, limit)
        return self._take(end)

    def readlines(self, hint: int = -1) -> list[bytes]:
        lines: list[bytes] = []
        total = 0
        for line in self:
            lines.append(line)
            total += len(line)
            if 0 < hint <= total:
                break
        return lines

    def __iter__(self) -> Iterator[bytes]:
        while line := self.readline():
            yield line


class _ErrorStream:
    """``wsgi.errors``: text the app writes, logged on ``tricorn.error``.

    Text waits until a newline (or ``flush()``, done at the end of every
    request) completes it, so a line written in pieces becomes one record.
    """

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        self._pending += text
        complete, newline, rest = self._pending.rpartition("\n")
        if newline:
            self._pending = rest
            _error_logger.error("%s", complete)
        return len(text)

    def writelines(self, lines: Iterable[str]) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._pending:
            pending, self._pending = self._pending, ""
            _error_logger.error("%s", pending)


# -- the call ------------------------------------------------------------------


def _parse_status(status: object) -> int:
    """``"200 OK"`` -> 200 (PEP 3333: a three-digit code, a space, a reason)."""
    if not isinstance(status, str):
        raise AppProtocolError(f"WSGI status must be a str like '200 OK', not {status!r}")
    code = status.partition(" ")[0]
    if len(code) != 3 or not (code.isascii() and code.isdigit()):
        raise AppProtocolError(f"WSGI status must start with a three-digit code, not {status!r}")
    return int(code)


def _encode_headers(headers: object) -> list[tuple[bytes, bytes]]:
    """PEP 3333 header tuples of native strings -> ASGI's lowercased latin-1 bytes."""
    if not isinstance(headers, list):
        raise AppProtocolError(f"WSGI response headers must be a list, not {type(headers)!r}")
    encoded: list[tuple[bytes, bytes]] = []
    for header in headers:
        if not (
            isinstance(header, tuple)
            and len(header) == 2
            and isinstance(header[0], str)
            and isinstance(header[1], str)
        ):
            raise AppProtocolError(f"WSGI response header must be a (str, str) tuple: {header!r}")
        name, value = header
        try:
            encoded.append((name.lower().encode("latin-1"), value.encode("latin-1")))
        except UnicodeEncodeError:
            raise AppProtocolError(
                f"WSGI response header {name!r} is not latin-1 (PEP 3333 native strings)"
            ) from None
    return encoded


class _WSGICall:
    """One WSGI invocation; everything but ``__init__`` runs in the worker thread.

    PEP 3333 asks for the response head to go out with the first non-empty
    body chunk, not at ``start_response``, so an app may still change its
    mind (``exc_info``) until then.
    """

    def __init__(self, app: WSGIApp, environ: WSGIEnvironment, send: ASGISend) -> None:
        self._app = app
        self._environ = environ
        self._send = send
        self._status: int | None = None
        self._headers: list[tuple[bytes, bytes]] = []
        self._head_sent = False

    def run(self) -> None:
        body = self._app(self._environ, self._start_response)
        try:
            for chunk in body:
                self._write(chunk)
            self._send_head()
            self._send_message({"type": "http.response.body", "body": b"", "more_body": False})
        finally:
            # PEP 3333: close() is called whether the request ended well or not,
            # e.g. when send() raised because the client is gone.
            close = getattr(body, "close", None)
            if callable(close):
                close()

    def _start_response(
        self,
        status: str,
        headers: list[tuple[str, str]],
        exc_info: OptExcInfo | None = None,
        /,
    ) -> WriteCallable:
        if exc_info is not None and exc_info[1] is not None:
            if self._head_sent:
                # Too late to change the response: PEP 3333 says re-raise.
                raise exc_info[1].with_traceback(exc_info[2])
        elif self._status is not None:
            raise AppProtocolError(
                "WSGI start_response called a second time without exc_info (PEP 3333)"
            )
        self._status = _parse_status(status)
        self._headers = _encode_headers(headers)
        return self._write

    def _write(self, data: bytes) -> None:
        if not isinstance(data, bytes):
            raise AppProtocolError(f"WSGI body chunks must be bytes, not {type(data).__name__}")
        if not data:
            return
        self._send_head()
        self._send_message({"type": "http.response.body", "body": data, "more_body": True})

    def _send_head(self) -> None:
        if self._head_sent:
            return
        if self._status is None:
            raise AppProtocolError("WSGI app produced a response without calling start_response")
        self._head_sent = True
        self._send_message(
            {"type": "http.response.start", "status": self._status, "headers": self._headers}
        )

    def _send_message(self, message: Message) -> None:
        anyio.from_thread.run(self._send_in_loop, message)

    async def _send_in_loop(self, message: Message) -> None:
        # from_thread.run() takes a coroutine function; send() is any awaitable.
        if _cancelled_before_start():
            raise ClientDisconnected("the exchange was cancelled; the response cannot be sent")
        await self._send(message)


def _cancelled_before_start() -> bool:
    """Whether the exchange this call from the worker thread serves is already cancelled.

    anyio hands a cancellation to the tasks that exist when it happens; on
    asyncio a call the worker thread starts later runs in the cancelled scope
    without ever being cancelled, and a ``receive()`` that waits for a body
    that never comes would then hold up shutdown forever. Such a late call
    treats the client as gone instead: ``http.disconnect`` in, ``OSError`` out.
    Checked in the event loop, where cancelling happens, so there is no race.
    """
    return anyio.current_effective_deadline() == -math.inf
