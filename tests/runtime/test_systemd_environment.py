"""Reading systemd's environment: whose sockets, which notify socket, what watchdog."""

from __future__ import annotations

import os
import socket
import uuid

import pytest

from tricorn._systemd import Notifier, listen_fds
from tricorn.errors import BindError


def test_listen_fds_for_another_process_are_ignored_and_unset() -> None:
    environ = {"LISTEN_PID": str(os.getpid() + 1), "LISTEN_FDS": "2", "LISTEN_FDNAMES": "a:b"}
    assert listen_fds(environ) == []
    assert environ == {}


def test_listen_fds_without_a_count_are_ignored() -> None:
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": "0"}
    assert listen_fds(environ) == []
    assert environ == {}


def test_listen_fds_that_are_not_open_are_a_bind_error() -> None:
    # fd 1000 is above anything this test process has open.
    count = 1000 - 3 + 1
    environ = {"LISTEN_PID": str(os.getpid()), "LISTEN_FDS": str(count)}
    with pytest.raises(BindError, match="is not open"):
        listen_fds(environ)


def test_notifier_without_notify_socket_does_nothing() -> None:
    notifier = Notifier({"WATCHDOG_USEC": "200000"})
    assert not notifier.enabled
    assert notifier.watchdog_due_in() is None
    notifier.ready("serving")  # no socket, no error


def test_notifier_unsets_its_variables() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1", "X": "y"}
    Notifier(environ).close()
    assert environ == {"X": "y"}


def test_watchdog_for_another_process_is_not_ours() -> None:
    notifier = Notifier(
        {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)}
    )
    assert notifier.watchdog_interval is None


def test_watchdog_interval_is_half_the_timeout() -> None:
    environ = {"NOTIFY_SOCKET": "@x", "WATCHDOG_USEC": "3000000", "WATCHDOG_PID": str(os.getpid())}
    assert Notifier(environ).watchdog_interval == 1.5


def test_abstract_notify_socket_receives_ready_with_status_and_mainpid() -> None:
    name = f"tricorn-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as receiver:
        receiver.bind("\0" + name)
        receiver.settimeout(10)
        notifier = Notifier({"NOTIFY_SOCKET": "@" + name})
        try:
            notifier.ready("serving on 127.0.0.1:8000")
            message = receiver.recv(4096).decode()
        finally:
            notifier.close()
    assert message == f"READY=1\nSTATUS=serving on 127.0.0.1:8000\nMAINPID={os.getpid()}\n"
