"""serve(): bind, accept, run every connection in the tree, shut down gracefully.

The tree: serve's task group -> one accept task per listener -> one task per
connection -> one task per exchange. Nothing lives outside it.
"""

from __future__ import annotations

import socket
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Final

import anyio
import anyio.abc
from anyio.streams.tls import TLSAttribute

from .._asgi.types import ASGI3App
from .._protocol import require_http3, resolve_http1_parser
from ..config import Config
from ..errors import LifespanFailure
from . import transport
from .connection import Connection
from .context import ConnectionContext
from .lifespan import Lifespan
from .logging import error_logger
from .metrics import check_metrics, serve_metrics
from .proxy_protocol import accept_proxy_header, accept_proxy_header_before_tls
from .sockets import (
    bind_sockets,
    bind_udp_sockets,
    format_address,
    format_url,
    remove_unix_sockets,
    unix_paths,
)
from .statsd import check_statsd
from .tls import accept_tls, create_ssl_context, h2_forbidden_ciphers
from .transport import open_socket_stream, prepare_socket, with_write_timeout

if TYPE_CHECKING:
    from .quic import QuicEndpoint, QuicSetup

__all__ = ["Server", "quic_setup", "serve"]


async def serve(
    app: ASGI3App,
    config: Config,
    *,
    task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until the enclosing cancel scope is cancelled.

    Start it with ``addresses = await task_group.start(serve, app, config)``:
    that returns once every listener is bound, with the bound addresses in
    bind syntax (port 0 comes back as the real port). Cancelling the scope
    stops accepting, lets in-flight requests finish within
    ``config.graceful_timeout``, then runs lifespan shutdown. No signal
    handlers are installed; that is the CLI's business.
    """
    await Server(app, config).serve(task_status=task_status)


class Server:
    """One server: ``serve`` as above, plus a forced stop for the CLI's second signal.

    Cancelling ``serve`` is the graceful shutdown, which deliberately
    outlives that cancellation (the shielded scope below). ``stop_now``
    cancels what the shield protects: connections are dropped and lifespan
    shutdown is skipped.
    """

    def __init__(
        self,
        app: ASGI3App,
        config: Config,
        *,
        announce: bool = True,
        metrics_endpoint: bool = True,
        on_max_requests: Callable[[], None] | None = None,
        reuse_port: bool = False,
        accept_after: anyio.Event | None = None,
    ) -> None:
        """``announce``: log "serving on URL" at info level (else at debug).

        Under a supervisor: ``metrics_endpoint`` False counts the metrics
        but leaves serving them to the supervisor, ``on_max_requests`` is
        called once ``config.max_requests`` requests have started, and
        ``reuse_port`` has each worker bind the QUIC ports itself
        (SO_REUSEPORT), and connections are accepted only once
        ``accept_after`` is set (when every worker is ready).
        """
        self._server = _Server(
            app,
            config,
            announce=announce,
            metrics_endpoint=metrics_endpoint,
            on_max_requests=on_max_requests,
            reuse_port=reuse_port,
            accept_after=accept_after,
        )

    async def serve(
        self, *, task_status: anyio.abc.TaskStatus[list[str]] = anyio.TASK_STATUS_IGNORED
    ) -> None:
        server = self._server
        async with anyio.create_task_group() as task_group:
            try:
                addresses = await task_group.start(server.run)
                task_status.started(addresses)
                await server.stopped.wait()
            finally:
                server.request_shutdown()

    def stop_now(self) -> None:
        self._server.stop_now()


class _Server:
    def __init__(
        self,
        app: ASGI3App,
        config: Config,
        *,
        announce: bool,
        metrics_endpoint: bool,
        on_max_requests: Callable[[], None] | None,
        reuse_port: bool,
        accept_after: anyio.Event | None,
    ) -> None:
        self._announce = announce
        self._metrics_endpoint = metrics_endpoint
        self._on_max_requests = on_max_requests
        self._reuse_port = reuse_port
        self._accept_after = accept_after
        self._app = app
        self._config = config
        # Before anything is bound or started: a bad certificate is a
        # ConfigError, like any other bad option.
        self._ssl_context = create_ssl_context(config)
        if self._ssl_context is not None and (forbidden := h2_forbidden_ciphers(self._ssl_context)):
            error_logger.warning(
                "ciphers enables TLS 1.2 suites that HTTP/2 clients may refuse "
                "(RFC 9113 9.2.2): %s",
                ", ".join(forbidden),
            )
        # HTTP/3: the extra, the certificate and key as QUIC loads them.
        self._quic = quic_setup(config)
        self._shutdown_requested = anyio.Event()
        self._protected: anyio.CancelScope | None = None
        self._lifespan: Lifespan | None = None
        self._forced = False
        self._context: ConnectionContext | None = None
        self.stopped = anyio.Event()

    def request_shutdown(self) -> None:
        self._shutdown_requested.set()

    def stop_now(self) -> None:
        """Cancel everything, shielded or not: connections, the app, lifespan shutdown."""
        if self._forced:
            return
        self._forced = True
        self._shutdown_requested.set()
        open_connections = len(self._context.connections) if self._context is not None else 0
        error_logger.warning(
            "stopping now: %d open connection(s) dropped, lifespan shutdown skipped",
            open_connections,
        )
        if self._lifespan is not None:
            self._lifespan.abandon()
        if self._protected is not None:
            self._protected.cancel()

    async def run(self, *, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        try:
            await self._run(task_status)
        finally:
            self.stopped.set()

    async def _run(self, task_status: anyio.abc.TaskStatus[list[str]]) -> None:
        # A parser that is not installed is a bad config, said before anything binds.
        resolve_http1_parser(self._config.http1_parser)
        check_metrics(self._config)
        check_statsd(self._config)
        # Bind first: an address in use should fail before the app's startup
        # opens its database pools. Connections wait in the backlog meanwhile.
        sockets = bind_sockets(self._config)
        paths = unix_paths(self._config)
        try:
            sockets += bind_udp_sockets(self._config, reuse_port=self._reuse_port)
        except BaseException:
            for sock in sockets:
                sock.close()
            remove_unix_sockets(paths)
            raise
        try:
            lifespan = self._lifespan = Lifespan(self._app, self._config)
            failure: str | None = None
            async with anyio.create_task_group() as lifespan_group:
                # stop_now cancels this scope, shield or no shield.
                self._protected = lifespan_group.cancel_scope
                if self._forced:
                    lifespan_group.cancel_scope.cancel()
                # Startup may be cancelled outright: nothing is served yet.
                failure = await lifespan.startup(lifespan_group)
                if failure is None:
                    # From here on the enclosing scope's cancellation is the
                    # cue to shut down gracefully, not a reason to drop
                    # in-flight requests or skip lifespan shutdown. The
                    # deadline set on `grace` in _serve bounds how long.
                    lifespan_group.cancel_scope.shield = True
                    try:
                        addresses = [
                            ("quic:" if sock.type == socket.SOCK_DGRAM else "")
                            + format_address(sock)
                            for sock in sockets
                        ]
                        await self._serve(sockets, addresses, lifespan.state, task_status)
                    finally:
                        await lifespan.shutdown()
                lifespan_group.cancel_scope.cancel()
        finally:
            for sock in sockets:
                sock.close()
            remove_unix_sockets(paths)
        if failure is not None:
            raise LifespanFailure(failure)

    async def _serve(
        self,
        listeners: list[socket.socket],
        addresses: list[str],
        state: dict[str, Any],
        task_status: anyio.abc.TaskStatus[list[str]],
    ) -> None:
        datagram = [sock for sock in listeners if sock.type == socket.SOCK_DGRAM]
        listeners = [sock for sock in listeners if sock.type != socket.SOCK_DGRAM]
        context = self._context = ConnectionContext(
            self._app,
            self._config,
            state,
            quic_ports=[sock.getsockname()[1] for sock in datagram],
            on_max_requests=self._on_max_requests,
        )
        with anyio.CancelScope() as grace:
            # StatsD is sent until the last connection is done (or the grace is over).
            async with (
                context.reporting(),
                anyio.create_task_group() as connections,
                # The connection tasks, one per accepted client: the loop's own
                # (see transport.Spawner), cancelled with the group around them.
                transport.open_spawner() as clients,
            ):
                endpoints = await self._open_quic(datagram, context, connections)
                async with anyio.create_task_group() as accepting:
                    if context.prometheus is not None and self._metrics_endpoint:
                        context.prometheus.listening(addresses)
                        # Stops when accepting does.
                        await accepting.start(
                            serve_metrics, context.prometheus.registry, self._config
                        )
                    for listener in listeners:
                        accepting.start_soon(
                            _accept,
                            listener,
                            clients,
                            context,
                            self._ssl_context,
                            self._accept_after,
                        )
                    task_status.started(addresses)
                    # Under a supervisor, the supervisor says it once for all workers.
                    announce = error_logger.info if self._announce else error_logger.debug
                    tls = self._ssl_context is not None
                    for listener in listeners:
                        announce("serving on %s", format_url(listener, tls=tls))
                    for endpoint in endpoints:
                        announce("serving on %s", endpoint.describe())
                    await self._shutdown_requested.wait()
                    accepting.cancel_scope.cancel()
                # Stop accepting before winding down: close the listeners now
                # so new connections are refused, not left in the backlog.
                for listener in listeners:
                    listener.close()
                error_logger.info("shutting down: %d open connection(s)", len(context.connections))
                context.begin_shutdown()
                for endpoint in endpoints:
                    endpoint.shutdown()  # refuse new QUIC clients, route the rest
                grace.deadline = anyio.current_time() + self._config.graceful_timeout
        if grace.cancelled_caught:
            error_logger.warning(
                "graceful timeout (%gs) passed; closed the remaining connections",
                self._config.graceful_timeout,
            )

    async def _open_quic(
        self,
        sockets: list[socket.socket],
        context: ConnectionContext,
        connections: anyio.abc.TaskGroup,
    ) -> list[QuicEndpoint]:
        """Start an HTTP/3 endpoint on each bound UDP socket, in the connections' group."""
        if not sockets or self._quic is None:
            return []
        from .quic import open_endpoints

        endpoints = await open_endpoints(sockets, context, self._quic, connections)
        for endpoint in endpoints:
            connections.start_soon(endpoint.run)
        return endpoints


def quic_setup(config: Config) -> QuicSetup | None:
    """HTTP/3's setup when a quic_bind is configured (aioquic is only imported then)."""
    if not config.quic_bind:
        return None
    require_http3()
    from .quic import QuicSetup

    return QuicSetup(config)


class _Handshake:
    """A new connection's TLS handshake, under way.

    It counts as one of the server's connections meanwhile, so a shutdown
    drops it, as it closes idle connections: until the handshake is done
    there is no request to finish, and waiting out the handshake timeout
    would only delay the shutdown.
    """

    def __init__(self, context: ConnectionContext) -> None:
        self._context = context
        self._scope = anyio.CancelScope()

    def shutdown(self) -> None:
        self._scope.cancel()

    async def accept(
        self, source: anyio.abc.ByteStream | socket.socket, ssl_context: ssl.SSLContext
    ) -> anyio.abc.ByteStream | None:
        """The TLS stream, or None (``source`` closed) if the handshake failed or was dropped."""
        if self._context.shutting_down:
            self._scope.cancel()
        self._context.connections.add(self)
        try:
            with self._scope:
                config = self._context.config
                return await accept_tls(
                    source, ssl_context, config.tls_handshake_timeout, config.write_timeout
                )
        finally:
            self._context.connections.discard(self)
        return None


async def _accept(
    listener: socket.socket,
    connections: transport.Spawner,
    context: ConnectionContext,
    ssl_context: ssl.SSLContext | None,
    after: anyio.Event | None = None,
) -> None:
    """Accept every pending connection each time the listener is readable.

    One accept per wake-up (as anyio's listener does) lets a busy loop take
    hundreds of milliseconds to let a burst of new clients in; draining the
    backlog in one go keeps a new connection's first request as quick as
    any other. With ``after``, nothing is accepted before it is set.
    """
    if after is not None:
        await after.wait()
    while True:
        await anyio.wait_readable(listener)
        while True:
            try:
                client, _ = listener.accept()
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # EMFILE and friends: keep serving the connections we have
                # and try again shortly rather than spin or die.
                error_logger.error("accept failed: %s", exc)
                await anyio.sleep(0.1)
                break
            connections.spawn(_handle, client, context, ssl_context, name=_CONNECTION, lasting=True)


#: The name of every connection task.
_CONNECTION: Final = "tricorn connection"


async def _handle(
    client: socket.socket, context: ConnectionContext, ssl_context: ssl.SSLContext | None
) -> None:
    write_timeout = context.config.write_timeout
    try:
        # TLS starts on the socket itself (the transport may then give the
        # handshake to the event loop's own TLS); cleartext on a stream. The
        # transport sets the socket's options either way.
        stream = None
        if ssl_context is None:
            stream = await open_socket_stream(client, write_timeout)
        else:
            prepare_socket(client)
    except OSError as exc:
        # The client left between accept and now.
        error_logger.debug("dropping a connection that failed on arrival: %s", exc)
        client.close()
        return
    except Exception as exc:
        # As below: one connection's failure never takes the server down.
        error_logger.error("unexpected error on a new connection", exc_info=exc)
        client.close()
        return
    try:
        if stream is not None:
            if context.config.proxy_protocol:
                # A TCP proxy sends its header ahead of the client's bytes.
                proxied = await accept_proxy_header(stream, context)
                if proxied is None:
                    return
                stream = proxied
            await serve_stream(stream, context)
            return
        assert ssl_context is not None
        source: anyio.abc.ByteStream | socket.socket = client
        wrap: Callable[[anyio.abc.ByteStream], anyio.abc.ByteStream] = _same
        if context.config.proxy_protocol:
            # Before TLS, and never read past: the handshake starts on the socket.
            door = await accept_proxy_header_before_tls(
                client, context, lambda sock: open_socket_stream(sock, write_timeout)
            )
            if door is None:
                return
            source, wrap = door
        if (tls := await _Handshake(context).accept(source, ssl_context)) is not None:
            await serve_stream(wrap(tls), context)
    except Exception as exc:
        # One connection's failure is a bug to report, never a reason to take
        # the server and every other connection down with it.
        error_logger.error("unexpected error on a connection", exc_info=exc)


def _same(stream: anyio.abc.ByteStream) -> anyio.abc.ByteStream:
    return stream


async def serve_stream(stream: anyio.abc.ByteStream, context: ConnectionContext) -> None:
    """Serve one accepted stream with the protocol it speaks.

    On TLS, ALPN decides (RFC 9113 3.2). On cleartext the connection starts
    as HTTP/1.1, which hands over to HTTP/2 when the client opens with the
    preface (prior knowledge, RFC 9113 3.3) or asks to upgrade.
    """
    config = context.config
    http2 = (
        config.http2
        and stream.extra(TLSAttribute.ssl_object, None) is not None
        and stream.extra(TLSAttribute.alpn_protocol, None) == "h2"
    )
    stream = with_write_timeout(stream, config.write_timeout)
    await Connection(stream, context, http2=http2).run()
