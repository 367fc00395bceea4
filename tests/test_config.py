"""Config validation: every bad value is named by its key, with the allowed values."""

from __future__ import annotations

from typing import Any

import pytest

from tricorn import Config
from tricorn.config import choices_of, option_specs, parse_bind
from tricorn.errors import ConfigError


def test_defaults_are_valid_and_finite() -> None:
    config = Config()
    assert config.bind == ("127.0.0.1:8000",)
    assert 0 < config.graceful_timeout < float("inf")


def test_every_option_is_documented() -> None:
    for field in option_specs():
        assert field.metadata["help"], field.name


@pytest.mark.parametrize(
    ("values", "key", "fragment"),
    [
        ({"worker_class": "gevent"}, "worker_class", "allowed: asyncio, uvloop, trio"),
        ({"lifespan": "maybe"}, "lifespan", "allowed: auto, on, off"),
        ({"interface": "rsgi"}, "interface", "allowed: auto, asgi3, asgi2, wsgi"),
        ({"keep_alive_timeout": -1}, "keep_alive_timeout", "positive"),
        ({"graceful_timeout": float("inf")}, "graceful_timeout", "finite"),
        ({"workers": 0}, "workers", "at least 1"),
        ({"backlog": "many"}, "backlog", "an integer"),
        ({"access_log": "perhaps"}, "access_log", "true or false"),
        ({"bind": ()}, "bind", "at least one"),
        ({"bind": ("localhost",)}, "bind", "HOST:PORT"),
        ({"bind": ("127.0.0.1:70000",)}, "bind", "out of range"),
        ({"bind": ("[not-v6]:80",)}, "bind", "not an IPv6 address"),
        ({"root_path": "api/"}, "root_path", "start with '/'"),
        ({"server_name": "a\r\nb"}, "server_name", "header value"),
        ({"forwarded_allow_ips": ("nope",)}, "forwarded_allow_ips", "not an IP"),
        ({"reload": True, "workers": 2}, "reload", "workers"),
        ({"max_request_body_size": -5}, "max_request_body_size", "negative"),
        ({"max_requests": -1}, "max_requests", "0 (off) or more"),
        ({"max_requests_jitter": -1}, "max_requests_jitter", "0 (off) or more"),
        ({"max_requests_jitter": 5}, "max_requests_jitter", "needs max_requests"),
        ({"timeout_worker_healthcheck": -1}, "timeout_worker_healthcheck", "0 (off)"),
        ({"timeout_worker_startup": float("inf")}, "timeout_worker_startup", "finite"),
        ({"timeout_worker_startup": "soon"}, "timeout_worker_startup", "a number"),
        ({"keyfile": "key.pem"}, "keyfile", "needs certfile"),
        ({"keyfile_password": "secret"}, "keyfile_password", "needs certfile"),
        ({"ca_certs": "ca.pem"}, "ca_certs", "needs certfile"),
        ({"ciphers": "HIGH"}, "ciphers", "needs certfile"),
        ({"verify_mode": "required"}, "verify_mode", "needs certfile"),
        ({"certfile": "cert.pem", "verify_mode": "optional"}, "verify_mode", "needs ca_certs"),
        ({"verify_mode": "always"}, "verify_mode", "allowed: none, optional, required"),
        ({"certfile": 5}, "certfile", "a string or nothing"),
        ({"tls_handshake_timeout": 0}, "tls_handshake_timeout", "positive"),
        ({"tls_handshake_timeout": float("nan")}, "tls_handshake_timeout", "finite"),
        ({"tls_handshake_timeout": "soon"}, "tls_handshake_timeout", "a number"),
    ],
)
def test_a_bad_value_is_named_by_its_key(values: dict[str, Any], key: str, fragment: str) -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_mapping(values)
    assert raised.value.key == key
    assert str(raised.value).startswith(f"{key}: ")
    assert fragment in str(raised.value)


def test_an_unknown_key_lists_the_known_ones() -> None:
    with pytest.raises(ConfigError) as raised:
        Config.from_mapping({"keep-alive": 5})
    assert raised.value.key == "keep-alive"
    assert raised.value.allowed is not None
    assert "keep_alive_timeout" in raised.value.allowed


def test_from_mapping_converts_text_as_the_environment_gives_it() -> None:
    config = Config.from_mapping(
        {
            "bind": "127.0.0.1:0,unix:/tmp/t.sock",
            "keep-alive-timeout": "2.5",
            "workers": "3",
            "access_log": "off",
            "max_request_body_size": "none",
        }
    )
    assert config.bind == ("127.0.0.1:0", "unix:/tmp/t.sock")
    assert config.keep_alive_timeout == 2.5
    assert config.workers == 3
    assert config.access_log is False
    assert config.max_request_body_size is None


def test_tls_options_from_text_treat_empty_and_none_as_unset() -> None:
    config = Config.from_mapping(
        {
            "certfile": "cert.pem",
            "keyfile": "",
            "keyfile-password": "none",
            "ca_certs": "ca.pem",
            "verify_mode": "required",
            "ciphers": "ECDHE+AESGCM",
            "tls_handshake_timeout": "2.5",
        }
    )
    assert config.certfile == "cert.pem"
    assert config.keyfile is None
    assert config.keyfile_password is None
    assert config.ca_certs == "ca.pem"
    assert config.verify_mode == "required"
    assert config.ciphers == "ECDHE+AESGCM"
    assert config.tls_handshake_timeout == 2.5


def test_tls_is_off_by_default_and_config_reads_no_files() -> None:
    config = Config()
    assert config.certfile is None
    assert config.verify_mode == "none"
    assert config.tls_handshake_timeout == 10.0
    # Files are read when serving starts, not here.
    assert Config(certfile="/nonexistent/cert.pem").certfile == "/nonexistent/cert.pem"


def test_keywords_accept_a_list_of_binds_and_whole_seconds() -> None:
    config = Config(bind=["127.0.0.1:0"], graceful_timeout=30)  # type: ignore[arg-type]  # lists are accepted on purpose
    assert config.bind == ("127.0.0.1:0",)
    assert isinstance(config.graceful_timeout, float)


def test_config_is_frozen() -> None:
    config = Config()
    with pytest.raises(AttributeError):
        config.workers = 2  # type: ignore[misc]  # the point of the test


@pytest.mark.parametrize(
    ("address", "parsed"),
    [
        ("127.0.0.1:8000", ("tcp", "127.0.0.1", 8000)),
        (":8000", ("tcp", "0.0.0.0", 8000)),
        ("[::1]:0", ("tcp", "::1", 0)),
        ("[fe80::1%eth0]:80", ("tcp", "fe80::1%eth0", 80)),
        ("unix:/run/app.sock", ("unix", "/run/app.sock", None)),
        ("fd://3", ("fd", 3, None)),
    ],
)
def test_bind_syntax(address: str, parsed: tuple[str, str | int, int | None]) -> None:
    assert parse_bind(address) == parsed


def test_choices_are_read_from_the_annotations() -> None:
    fields = {field.name: field for field in option_specs()}
    assert choices_of(fields["worker_class"].type) == ("asyncio", "uvloop", "trio")
    assert choices_of(fields["workers"].type) is None
    assert choices_of(fields["verify_mode"].type) == ("none", "optional", "required")
    assert choices_of(fields["certfile"].type) is None
