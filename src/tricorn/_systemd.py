"""systemd's side of the process: socket activation and sd_notify, stdlib only.

Socket activation (sd_listen_fds(3)): systemd binds the sockets of a
``.socket`` unit and starts the service with them as fds 3, 4, ...;
``LISTEN_PID`` names the process they are meant for, ``LISTEN_FDS`` how many
there are and ``LISTEN_FDNAMES`` (colon-separated) their ``FileDescriptorName=``.

Notification (sd_notify(3)): with ``Type=notify`` systemd waits for
``READY=1`` on the datagram socket named by ``NOTIFY_SOCKET``, shows
``STATUS=`` lines in ``systemctl status``, and with ``WatchdogSec=`` expects
``WATCHDOG=1`` at least every ``WATCHDOG_USEC`` microseconds.

Both read their variables once and remove them from the environment (as
``unset_environment=1`` does), so worker processes and anything the app
starts never act on them a second time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import socket
import time
from collections.abc import MutableMapping
from typing import Final

from .errors import BindError

__all__ = ["LISTEN_FDS_START", "ListenFd", "Notifier", "listen_fds"]

#: sd_listen_fds(3): the first passed socket is fd 3.
LISTEN_FDS_START: Final = 3


@dataclasses.dataclass(frozen=True, slots=True)
class ListenFd:
    fd: int
    #: ``FileDescriptorName=`` of the socket unit; systemd's default is the unit's name.
    name: str


def listen_fds(environ: MutableMapping[str, str] | None = None) -> list[ListenFd]:
    """The sockets systemd passed to this process, if it passed any; unsets LISTEN_*.

    Sockets passed to another process (``LISTEN_PID`` is not ours, as when
    a shell wrapper exec'd something that did not consume them) are not ours.
    """
    env = os.environ if environ is None else environ
    pid = env.pop("LISTEN_PID", None)
    count = env.pop("LISTEN_FDS", None)
    names_text = env.pop("LISTEN_FDNAMES", None)
    if pid is None or count is None or not pid.isdigit() or int(pid) != os.getpid():
        return []
    if not count.isdigit() or int(count) == 0:
        return []
    names = names_text.split(":") if names_text else []
    passed = []
    for index in range(int(count)):
        fd = LISTEN_FDS_START + index
        try:
            # As sd_listen_fds does: the listeners are ours, not the app's children's.
            os.set_inheritable(fd, False)
        except OSError as exc:
            raise BindError(f"LISTEN_FDS={count}, but fd {fd} is not open: {exc.strerror}") from exc
        name = names[index] if index < len(names) else "unknown"
        passed.append(ListenFd(fd, name))
    return passed


class Notifier:
    """Sends sd_notify messages to ``NOTIFY_SOCKET``; does nothing when it is unset.

    Sending never blocks and never fails the server: a manager that is not
    listening loses a status line, nothing more.
    """

    def __init__(self, environ: MutableMapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        address = env.pop("NOTIFY_SOCKET", None)
        watchdog_usec = env.pop("WATCHDOG_USEC", None)
        watchdog_pid = env.pop("WATCHDOG_PID", None)
        self._address: str | bytes | None = None
        if address and (address.startswith("/") or address.startswith("@")):
            # "@name" is a socket in the abstract namespace: a leading NUL byte.
            self._address = "\0" + address[1:] if address.startswith("@") else address
        #: Seconds between WATCHDOG=1 pings (half the timeout, as sd_watchdog_enabled advises).
        self.watchdog_interval: float | None = None
        if (
            watchdog_usec is not None
            and watchdog_usec.isdigit()
            and int(watchdog_usec) > 0
            and (watchdog_pid is None or watchdog_pid == str(os.getpid()))
        ):
            self.watchdog_interval = int(watchdog_usec) / 2_000_000
        self._next_ping = time.monotonic()
        self._socket: socket.socket | None = None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def notify(self, **fields: str | int) -> None:
        """Send ``KEY=value`` lines, e.g. ``notify(READY=1, STATUS="serving")``."""
        if self._address is None:
            return
        message = "".join(f"{key}={value}\n" for key, value in fields.items())
        if self._socket is None:
            self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        with contextlib.suppress(OSError):
            self._socket.sendto(message.encode(), self._address)

    def ready(self, status: str) -> None:
        self.notify(READY=1, STATUS=status, MAINPID=os.getpid())

    def stopping(self, status: str) -> None:
        self.notify(STOPPING=1, STATUS=status)

    def watchdog_due_in(self) -> float | None:
        """Seconds until the next WATCHDOG=1 is due; None without a watchdog."""
        if self.watchdog_interval is None or self._address is None:
            return None
        return max(0.0, self._next_ping - time.monotonic())

    def ping_watchdog(self) -> None:
        """Send WATCHDOG=1 if it is due."""
        due = self.watchdog_due_in()
        if due is None or due > 0:
            return
        assert self.watchdog_interval is not None
        self.notify(WATCHDOG=1)
        self._next_ping = time.monotonic() + self.watchdog_interval

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None
