"""Unix socket files as operators need them: mode, owner, group, and no stealing a live one."""

from __future__ import annotations

import os
import socket
import stat
from pathlib import Path

import pytest

import tricorn
from tricorn.errors import BindError, ConfigError

from ._support import ok_app, raw_client, request, server

pytestmark = pytest.mark.anyio


def raised(kind: type[BaseException], error: BaseException) -> BaseException:
    """The ``kind`` error that serve() raised, alone or inside its task groups' groups."""
    if isinstance(error, kind):
        return error
    if isinstance(error, BaseExceptionGroup):
        for inner in error.exceptions:
            if (found := raised(kind, inner)) is not None:
                return found
    raise AssertionError(f"no {kind.__name__} in {error!r}")


async def get_ok(address: str) -> bytes:
    async with raw_client(address) as client:
        await client.send(request())
        return (await client.response()).body


@pytest.mark.parametrize(("mode", "bits"), [("660", 0o660), ("0o600", 0o600), ("0777", 0o777)])
async def test_the_socket_file_gets_the_mode_asked_for(
    tmp_path: Path, mode: str, bits: int
) -> None:
    path = tmp_path / "s.sock"
    async with server(ok_app, bind=(f"unix:{path}",), uds_mode=mode) as handle:
        assert stat.S_IMODE(path.stat().st_mode) == bits
        assert await get_ok(handle.address) == b"ok"


async def test_the_socket_file_gets_the_owner_and_group_asked_for(tmp_path: Path) -> None:
    # Only root may give a file away; the ids of this process work for anyone.
    path = tmp_path / "s.sock"
    uid, gid = os.getuid(), os.getgid()
    options = {"uds_owner": str(uid), "uds_group": str(gid), "uds_mode": "640"}
    async with server(ok_app, bind=(f"unix:{path}",), **options) as handle:
        info = path.stat()
        assert (info.st_uid, info.st_gid) == (uid, gid)
        assert await get_ok(handle.address) == b"ok"


@pytest.mark.parametrize("key", ["uds_owner", "uds_group"])
async def test_an_unknown_owner_or_group_names_its_key(tmp_path: Path, key: str) -> None:
    config = tricorn.Config(bind=(f"unix:{tmp_path / 's.sock'}",), **{key: "no-such-name-here"})
    with pytest.raises((ConfigError, BindError, BaseExceptionGroup)) as caught:
        await tricorn.serve(ok_app, config)
    error = raised(ConfigError, caught.value)
    assert isinstance(error, ConfigError)
    assert error.key == key
    assert not (tmp_path / "s.sock").exists()


def test_a_mode_that_is_not_octal_names_the_key() -> None:
    for bad in ("rw-rw----", "999", "1777", ""):
        with pytest.raises(ConfigError) as caught:
            tricorn.Config(uds_mode=bad)
        assert caught.value.key == "uds_mode"


async def test_a_socket_file_a_live_server_listens_on_is_never_taken_over(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s.sock"
    async with server(ok_app, bind=(f"unix:{path}",)) as first:
        with pytest.raises((ConfigError, BindError, BaseExceptionGroup)) as caught:
            await tricorn.serve(ok_app, tricorn.Config(bind=(f"unix:{path}",)))
        assert str(raised(BindError, caught.value)) == (
            f"could not bind unix:{path}: another server is listening on it"
        )
        assert await get_ok(first.address) == b"ok"  # the first one serves on


async def test_a_stale_socket_file_is_replaced(tmp_path: Path) -> None:
    path = tmp_path / "s.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as stale:
        stale.bind(str(path))  # closed without unlinking, as after a crash
    async with server(ok_app, bind=(f"unix:{path}",)) as handle:
        assert await get_ok(handle.address) == b"ok"


async def test_a_path_that_is_not_a_socket_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "not-a-socket"
    path.write_text("precious")
    with pytest.raises((ConfigError, BindError, BaseExceptionGroup)) as caught:
        await tricorn.serve(ok_app, tricorn.Config(bind=(f"unix:{path}",)))
    assert "Address already in use" in str(raised(BindError, caught.value))
    assert path.read_text() == "precious"
