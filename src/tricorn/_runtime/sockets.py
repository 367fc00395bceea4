"""Binding listening sockets for every bind syntax.

Synchronous on purpose: the supervisor binds once in the parent and hands
the sockets to its workers as ``fd://N``, and ``serve`` wraps the same
sockets for AnyIO. One binding path serves both.
"""

from __future__ import annotations

import contextlib
import grp
import os
import pwd
import socket
import stat

from ..config import Config, parse_bind, uds_mode_bits
from ..errors import BindError, ConfigError

__all__ = [
    "bind_udp_sockets",
    "bind_sockets",
    "format_address",
    "format_url",
    "remove_unix_sockets",
    "unix_paths",
]


def bind_sockets(config: Config) -> list[socket.socket]:
    """Bind and listen on every configured address; BindError names the one that failed."""
    sockets: list[socket.socket] = []
    try:
        for address in config.bind:
            try:
                sockets.extend(_bind(address, config))
            except BindError:
                raise
            except OSError as exc:
                raise BindError(f"could not bind {address}: {exc.strerror or exc}") from exc
    except BaseException:
        # Leave nothing behind: the sockets bound so far, and their files.
        created = {sock.getsockname() for sock in sockets if sock.family == socket.AF_UNIX}
        for sock in sockets:
            sock.close()
        remove_unix_sockets([path for path in unix_paths(config) if path in created])
        raise
    return sockets


def bind_udp_sockets(config: Config, *, reuse_port: bool = False) -> list[socket.socket]:
    """Bind a UDP socket for every ``quic_bind`` address; BindError names the one that failed.

    ``reuse_port``: each of several workers binds the same port with
    SO_REUSEPORT, and the kernel keeps a client's datagrams (hashed by
    address) on one worker's socket. Never set for a lone server, so that
    a second server on the port fails to bind rather than take half of it.
    """
    sockets: list[socket.socket] = []
    try:
        for address in config.quic_bind:
            _, host, port = parse_bind(address, key="quic_bind")
            assert isinstance(host, str)
            assert port is not None
            try:
                sockets.extend(_bind_udp(host, port, reuse_port=reuse_port))
            except OSError as exc:
                raise BindError(f"could not bind {address} (UDP): {exc.strerror or exc}") from exc
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def _bind(address: str, config: Config) -> list[socket.socket]:
    backlog = config.backlog
    kind, target, port = parse_bind(address)
    if kind == "fd":
        assert isinstance(target, int)
        sock = socket.socket(fileno=target)
        sock.listen(backlog)
        sock.setblocking(False)
        return [sock]
    if kind == "unix":
        assert isinstance(target, str)
        return [_bind_unix(target, config)]
    assert isinstance(target, str)
    assert port is not None
    return _bind_tcp(target, port, backlog)


def _bind_udp(host: str, port: int, *, reuse_port: bool) -> list[socket.socket]:
    return _bind_inet(host, port, socket.SOCK_DGRAM, reuse_port=reuse_port)


def _bind_tcp(host: str, port: int, backlog: int) -> list[socket.socket]:
    return _bind_inet(host, port, socket.SOCK_STREAM, backlog=backlog)


def _bind_inet(
    host: str, port: int, kind: int, *, backlog: int | None = None, reuse_port: bool = False
) -> list[socket.socket]:
    """A socket per address ``host`` resolves to: TCP listening with ``backlog``, or UDP."""
    proto = socket.IPPROTO_TCP if kind == socket.SOCK_STREAM else socket.IPPROTO_UDP
    infos = socket.getaddrinfo(host, port, type=kind, proto=proto, flags=socket.AI_PASSIVE)
    sockets: list[socket.socket] = []
    seen: set[tuple[int, object]] = set()
    try:
        for family, sock_kind, sock_proto, _, sockaddr in infos:
            if (family, sockaddr) in seen:
                continue
            seen.add((family, sockaddr))
            sock = socket.socket(family, sock_kind, sock_proto)
            sockets.append(sock)
            if kind == socket.SOCK_STREAM:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            if family == socket.AF_INET6:
                # One socket per family: "localhost" binds ::1 and 127.0.0.1
                # separately, so the IPv6 one must not claim IPv4 too.
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            if port == 0 and len(sockets) > 1:
                # Port 0 on a name with several addresses: all share the
                # port the OS picked for the first.
                sockaddr = (sockaddr[0], sockets[0].getsockname()[1], *sockaddr[2:])
            sock.bind(sockaddr)
            if backlog is not None:
                sock.listen(backlog)
            sock.setblocking(False)
    except BaseException:
        for sock in sockets:
            sock.close()
        raise
    return sockets


def format_address(sock: socket.socket) -> str:
    """A bound socket's address in bind syntax: ``host:port``, ``[v6]:port``, ``unix:path``."""
    address = sock.getsockname()
    if sock.family == socket.AF_UNIX:
        return f"unix:{address}"
    host, port = address[0], address[1]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


def format_url(sock: socket.socket, *, tls: bool) -> str:
    """Where to point a browser or curl: ``http(s)://host:port``, ``[v6]`` in brackets.

    A unix socket has no URL; it stays ``unix:path`` (with " over TLS" if so).
    """
    if sock.family == socket.AF_UNIX:
        return format_address(sock) + (" over TLS" if tls else "")
    return ("https://" if tls else "http://") + format_address(sock)


def unix_paths(config: Config) -> list[str]:
    """The socket files this config creates (and so must remove); fd:// ones are not ours."""
    paths = []
    for address in config.bind:
        kind, target, _ = parse_bind(address)
        if kind == "unix":
            assert isinstance(target, str)
            paths.append(target)
    return paths


def remove_unix_sockets(paths: list[str]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            os.unlink(path)


def _bind_unix(path: str, config: Config) -> socket.socket:
    """Bind a unix socket file with the configured mode, owner and group.

    The mode holds from the first moment: the file is created under a umask
    that grants no more than it, then set exactly.
    """
    owner = _user_id(config.uds_owner)
    group = _group_id(config.uds_group)
    mode = uds_mode_bits(config.uds_mode) if config.uds_mode is not None else None
    _remove_stale_socket(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if mode is None:
            sock.bind(path)
        else:
            saved = os.umask(0o777 & ~mode)
            try:
                sock.bind(path)
            finally:
                os.umask(saved)
            os.chmod(path, mode)
        if owner is not None or group is not None:
            os.chown(path, -1 if owner is None else owner, -1 if group is None else group)
        sock.listen(config.backlog)
    except BaseException:
        sock.close()
        raise
    sock.setblocking(False)
    return sock


def _user_id(name: str | None) -> int | None:
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return pwd.getpwnam(name).pw_uid
    except KeyError:
        raise ConfigError("uds_owner", f"no user named {name!r}") from None


def _group_id(name: str | None) -> int | None:
    if name is None:
        return None
    if name.isdigit():
        return int(name)
    try:
        return grp.getgrnam(name).gr_gid
    except KeyError:
        raise ConfigError("uds_group", f"no group named {name!r}") from None


def _remove_stale_socket(path: str) -> None:
    """Remove a socket file a crashed server left behind, never one a live server listens on.

    Another process answering on it means a second server was started on
    the same path: that is refused, not taken over.
    """
    try:
        if not stat.S_ISSOCK(os.stat(path).st_mode):
            return  # not a socket: bind fails and says the path is taken
    except FileNotFoundError:
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except (ConnectionRefusedError, FileNotFoundError):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)  # nobody listens: stale
        return
    except OSError:
        return  # cannot tell (no permission): leave it, and let bind say why
    finally:
        probe.close()
    raise BindError(f"could not bind unix:{path}: another server is listening on it")
