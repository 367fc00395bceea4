"""Upgrade: h2c (RFC 7540 3.2): HTTP/1.1 hands a request over to HTTP/2 stream 1."""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
import h11

from tricorn import Config
from tricorn._protocol import (
    DataReceived,
    H2CUpgradeRequested,
    HTTP1Protocol,
    HTTP2Protocol,
    RequestReceived,
    SendData,
    StartResponse,
    StreamEnded,
)
from tricorn._protocol.http1 import H2C_BODY_LIMIT

from ._client import http1_config

HOST = (b"host", b"example.com")


def upgrade_request(
    client: h2.connection.H2Connection, body: bytes = b"", *extra: tuple[bytes, bytes]
) -> bytes:
    settings = client.initiate_upgrade_connection()
    assert settings is not None
    headers = [
        HOST,
        (b"connection", b"Upgrade, HTTP2-Settings"),
        (b"upgrade", b"h2c"),
        # RFC 7540 3.2.1 leaves the base64url padding out, as curl does.
        (b"http2-settings", settings.rstrip(b"=")),
        *extra,
    ]
    if body:
        headers.append((b"content-length", str(len(body)).encode()))
    writer = h11.Connection(h11.CLIENT)
    data = writer.send(h11.Request(method="POST" if body else "GET", target="/up", headers=headers))
    assert data is not None
    if body:
        data += writer.send(h11.Data(data=body)) or b""
    return data + (writer.send(h11.EndOfMessage()) or b"")


def new_client() -> h2.connection.H2Connection:
    return h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )


def test_upgrade_request_with_body_becomes_one_event_after_the_body() -> None:
    server = HTTP1Protocol(http1_config(), h2c_upgrade=True)
    events = server.receive_data(upgrade_request(new_client(), b"hello"))
    assert len(events) == 1
    event = events[0]
    assert isinstance(event, H2CUpgradeRequested)
    assert event.body == b"hello"
    assert event.request.method == b"POST"
    assert event.request.target == b"/up"


def test_upgrade_is_ignored_when_turned_off() -> None:
    server = HTTP1Protocol(http1_config(), h2c_upgrade=False)
    events = server.receive_data(upgrade_request(new_client()))
    assert isinstance(events[0], RequestReceived)
    assert events[0].http_version == "1.1"


def test_body_past_the_limit_is_served_over_http1() -> None:
    server = HTTP1Protocol(http1_config(), h2c_upgrade=True)
    body = b"x" * (H2C_BODY_LIMIT + 1)
    events = server.receive_data(upgrade_request(new_client(), body))
    assert isinstance(events[0], RequestReceived)
    assert any(isinstance(event, DataReceived) for event in events)


def test_upgrade_without_http2_settings_is_served_over_http1() -> None:
    server = HTTP1Protocol(http1_config(), h2c_upgrade=True)
    writer = h11.Connection(h11.CLIENT)
    data = writer.send(
        h11.Request(
            method="GET",
            target="/",
            headers=[HOST, (b"connection", b"Upgrade"), (b"upgrade", b"h2c")],
        )
    )
    assert data is not None
    events = server.receive_data(data + (writer.send(h11.EndOfMessage()) or b""))
    assert isinstance(events[0], RequestReceived)


def test_whole_upgrade_serves_stream_one_over_http2() -> None:
    client = new_client()
    http1 = HTTP1Protocol(http1_config(), h2c_upgrade=True)
    (event,) = http1.receive_data(upgrade_request(client, b"body"))
    assert isinstance(event, H2CUpgradeRequested)
    head = http1.data_to_send()
    assert head.startswith(b"HTTP/1.1 101 ")
    assert b"upgrade: h2c" in head.lower()
    assert event.data == b""
    assert http1.closed

    server = HTTP2Protocol(Config())
    events = server.initiate_upgrade(event.settings, event.request, event.body)
    assert [type(e) for e in events] == [RequestReceived, DataReceived, StreamEnded]
    request = events[0]
    assert isinstance(request, RequestReceived)
    assert request.stream_id == 1
    assert request.http_version == "2"
    assert all(
        name not in (b"connection", b"upgrade", b"http2-settings") for name, _ in request.headers
    )
    server.handle(StartResponse(1, 200, ()))
    server.handle(SendData(1, b"over h2", end_stream=True))
    seen = client.receive_data(server.data_to_send())
    client_events = seen + client.receive_data(b"")
    bodies = [e.data for e in client_events if isinstance(e, h2.events.DataReceived)]
    assert bodies == [b"over h2"]


def test_bad_http2_settings_ends_the_upgraded_connection() -> None:
    http1 = HTTP1Protocol(http1_config(), h2c_upgrade=True)
    writer = h11.Connection(h11.CLIENT)
    data = writer.send(
        h11.Request(
            method="GET",
            target="/",
            headers=[
                HOST,
                (b"connection", b"Upgrade, HTTP2-Settings"),
                (b"upgrade", b"h2c"),
                (b"http2-settings", b"!!!not base64"),
            ],
        )
    )
    assert data is not None
    (event,) = http1.receive_data(data + (writer.send(h11.EndOfMessage()) or b""))
    assert isinstance(event, H2CUpgradeRequested)
    server = HTTP2Protocol(Config())
    events = server.initiate_upgrade(event.settings, event.request, event.body)
    assert server.closed
    assert events
    assert server.error is not None
