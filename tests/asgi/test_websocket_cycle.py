"""The ASGI WebSocket message cycle as a state table, and the websocket scope."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tricorn._asgi.cycle import WebSocketCycle, WebSocketCycleState
from tricorn._asgi.scope import ConnectionInfo, build_websocket_scope
from tricorn._protocol.events import (
    AcceptWebSocket,
    CloseWebSocket,
    RequestReceived,
    SendData,
    SendMessage,
    StartResponse,
    WebSocketRequest,
)
from tricorn.errors import AppProtocolError

ACCEPT: dict[str, Any] = {"type": "websocket.accept"}


def state_of(cycle: WebSocketCycle) -> WebSocketCycleState:
    """The cycle's state, read afresh (so that mypy does not keep an old narrowing)."""
    return cycle.state


def connected(*subprotocols: str) -> WebSocketCycle:
    cycle = WebSocketCycle(1, subprotocols)
    cycle.commands_for(ACCEPT)
    return cycle


def closed() -> WebSocketCycle:
    cycle = connected()
    cycle.commands_for({"type": "websocket.close"})
    return cycle


# -- accept ----------------------------------------------------------------------


def test_accept_is_accept_websocket() -> None:
    cycle = WebSocketCycle(1)
    assert cycle.state is WebSocketCycleState.HANDSHAKE
    assert not cycle.accepted
    assert cycle.commands_for(ACCEPT) == [AcceptWebSocket(1, None, ())]
    assert state_of(cycle) is WebSocketCycleState.CONNECTED
    assert cycle.accepted


def test_accept_names_an_offered_subprotocol() -> None:
    cycle = WebSocketCycle(3, ["chat", "superchat"])
    commands = cycle.commands_for({"type": "websocket.accept", "subprotocol": "superchat"})
    assert commands == [AcceptWebSocket(3, "superchat", ())]


def test_accept_with_subprotocol_none_names_none() -> None:
    cycle = WebSocketCycle(1, ["chat"])
    assert cycle.commands_for({"type": "websocket.accept", "subprotocol": None}) == [
        AcceptWebSocket(1, None, ())
    ]


def test_accept_with_a_subprotocol_not_offered_is_an_error() -> None:
    cycle = WebSocketCycle(1, ["chat"])
    with pytest.raises(AppProtocolError, match=r"'graphql'.*not offered.*\['chat'\]"):
        cycle.commands_for({"type": "websocket.accept", "subprotocol": "graphql"})
    assert cycle.state is WebSocketCycleState.HANDSHAKE


def test_accept_with_a_non_str_subprotocol_is_an_error() -> None:
    cycle = WebSocketCycle(1, ["chat"])
    with pytest.raises(AppProtocolError, match="'subprotocol' must be a str"):
        cycle.commands_for({"type": "websocket.accept", "subprotocol": b"chat"})


def test_accept_passes_the_app_headers() -> None:
    cycle = WebSocketCycle(1)
    commands = cycle.commands_for(
        {"type": "websocket.accept", "headers": [[b"x-app", b"1"], (b"set-cookie", b"a=b")]}
    )
    assert commands == [AcceptWebSocket(1, None, ((b"x-app", b"1"), (b"set-cookie", b"a=b")))]


def test_accept_with_headers_none_has_no_headers() -> None:
    cycle = WebSocketCycle(1)
    assert cycle.commands_for({"type": "websocket.accept", "headers": None}) == [
        AcceptWebSocket(1, None, ())
    ]


@pytest.mark.parametrize(
    ("headers", "match"),
    [
        ([("x-app", "1")], "pair of byte strings"),
        ([(b"x-app", "1")], "pair of byte strings"),
        ([(b"x-app",)], "not a \\[name, value\\] pair"),
        ([b"x-app: 1"], "not a \\[name, value\\] pair"),
        (b"x-app: 1", "iterable of \\[name, value\\] pairs"),
        (42, "iterable of \\[name, value\\] pairs"),
    ],
)
def test_accept_with_malformed_headers_is_an_error(headers: object, match: str) -> None:
    cycle = WebSocketCycle(1)
    with pytest.raises(AppProtocolError, match=match):
        cycle.commands_for({"type": "websocket.accept", "headers": headers})
    assert cycle.state is WebSocketCycleState.HANDSHAKE


def test_accept_with_a_sec_websocket_protocol_header_points_to_subprotocol() -> None:
    cycle = WebSocketCycle(1, ["chat"])
    with pytest.raises(AppProtocolError, match="use the 'subprotocol' key"):
        cycle.commands_for(
            {"type": "websocket.accept", "headers": [(b"Sec-WebSocket-Protocol", b"chat")]}
        )


@pytest.mark.parametrize(
    "name",
    [b"sec-websocket-accept", b"Sec-WebSocket-Extensions", b"upgrade", b"Connection", b":status"],
)
def test_accept_with_a_handshake_header_is_an_error(name: bytes) -> None:
    cycle = WebSocketCycle(1)
    with pytest.raises(AppProtocolError, match="server's to set") as info:
        cycle.commands_for({"type": "websocket.accept", "headers": [(name, b"x")]})
    assert "subprotocol" not in str(info.value)


def test_accept_twice_is_an_error_naming_message_and_state() -> None:
    cycle = connected()
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.accept' while connected")):
        cycle.commands_for(ACCEPT)


def test_accept_after_close_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.accept' while closed")):
        closed().commands_for(ACCEPT)


# -- send --------------------------------------------------------------------------


def test_send_text_is_a_text_message() -> None:
    assert connected().commands_for({"type": "websocket.send", "text": "hi"}) == [
        SendMessage(1, "hi")
    ]


@pytest.mark.parametrize("data", [b"\x00hi", bytearray(b"\x00hi"), memoryview(b"\x00hi")])
def test_send_bytes_is_a_binary_message(data: bytes | bytearray | memoryview) -> None:
    commands = connected().commands_for({"type": "websocket.send", "bytes": data})
    assert commands == [SendMessage(1, b"\x00hi")]
    assert type(commands[0].data) is bytes  # type: ignore[union-attr]


def test_send_with_the_other_key_none_is_allowed() -> None:
    cycle = connected()
    assert cycle.commands_for({"type": "websocket.send", "bytes": None, "text": ""}) == [
        SendMessage(1, "")
    ]
    assert cycle.commands_for({"type": "websocket.send", "bytes": b"", "text": None}) == [
        SendMessage(1, b"")
    ]


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.send", "text": "a", "bytes": b"a"},
        {"type": "websocket.send"},
        {"type": "websocket.send", "text": None, "bytes": None},
    ],
    ids=["both", "neither", "both-none"],
)
def test_send_needs_exactly_one_of_text_and_bytes(message: dict[str, Any]) -> None:
    cycle = connected()
    with pytest.raises(AppProtocolError, match="exactly one of 'bytes' and 'text'") as info:
        cycle.commands_for(message)
    assert "'websocket.send'" in str(info.value)
    assert cycle.state is WebSocketCycleState.CONNECTED


def test_send_text_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match="'text' must be a str"):
        connected().commands_for({"type": "websocket.send", "text": b"bytes"})


def test_send_bytes_of_the_wrong_type_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match="'bytes' must be a byte string"):
        connected().commands_for({"type": "websocket.send", "bytes": "text"})


def test_send_before_accept_is_an_error_naming_message_and_state() -> None:
    cycle = WebSocketCycle(1)
    with pytest.raises(
        AppProtocolError, match=re.escape("'websocket.send' while awaiting websocket.accept")
    ):
        cycle.commands_for({"type": "websocket.send", "text": "early"})


def test_send_after_close_is_an_error_naming_message_and_state() -> None:
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.send' while closed")):
        closed().commands_for({"type": "websocket.send", "text": "late"})


def test_long_bodies_are_cut_in_error_messages() -> None:
    with pytest.raises(AppProtocolError) as info:
        closed().commands_for({"type": "websocket.send", "bytes": b"x" * 10_000})
    assert len(str(info.value)) < 600


@pytest.mark.parametrize(
    "message",
    [None, "websocket.send", {"text": "no type"}, {"type": 7}],
    ids=["none", "str", "no-type", "int-type"],
)
def test_a_message_must_be_a_dict_with_a_str_type(message: object) -> None:
    with pytest.raises(AppProtocolError, match="must be a dict with a str 'type'"):
        connected().commands_for(message)


def test_an_unknown_message_type_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.bogus' while connected")):
        connected().commands_for({"type": "websocket.bogus"})


def test_an_http_message_is_an_error_in_a_websocket() -> None:
    with pytest.raises(AppProtocolError, match=re.escape("'http.response.start' while awaiting")):
        WebSocketCycle(1).commands_for({"type": "http.response.start", "status": 200})


# -- close ------------------------------------------------------------------------


def test_close_before_accept_is_a_403() -> None:
    cycle = WebSocketCycle(1)
    commands = cycle.commands_for({"type": "websocket.close", "code": 4000})
    assert commands == [
        StartResponse(1, 403, ((b"content-length", b"0"),)),
        SendData(1, b"", end_stream=True),
    ]
    assert cycle.state is WebSocketCycleState.CLOSED
    assert not cycle.accepted
    assert cycle.response is not None
    assert cycle.response.status == 403


def test_close_with_code_and_reason() -> None:
    cycle = connected()
    commands = cycle.commands_for({"type": "websocket.close", "code": 4000, "reason": "bye"})
    assert commands == [CloseWebSocket(1, 4000, "bye")]
    assert cycle.state is WebSocketCycleState.CLOSED
    assert cycle.close_code == 4000
    assert cycle.accepted


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.close"},
        {"type": "websocket.close", "code": None},
        {"type": "websocket.close", "code": None, "reason": None},
    ],
    ids=["missing", "none", "none-reason-none"],
)
def test_close_without_a_code_is_1000(message: dict[str, Any]) -> None:
    assert connected().commands_for(message) == [CloseWebSocket(1, 1000, "")]


@pytest.mark.parametrize(
    ("reason", "sent"),
    [
        ("a" * 123, "a" * 123),
        ("a" * 124, "a" * 123),
        ("a" * 122 + "é", "a" * 122),  # 124 bytes; the 2-byte character is not split
        ("é" * 100, "é" * 61),
        ("€" * 42, "€" * 41),  # 3-byte characters: 123 bytes fit exactly 41
        ("a" * 121 + "😀", "a" * 121),
    ],
    ids=["123-ascii", "124-ascii", "split-2-byte", "2-byte-chars", "3-byte-chars", "4-byte"],
)
def test_close_reason_is_cut_to_123_utf8_bytes_on_a_character_boundary(
    reason: str, sent: str
) -> None:
    commands = connected().commands_for({"type": "websocket.close", "code": 1000, "reason": reason})
    assert commands == [CloseWebSocket(1, 1000, sent)]
    assert len(sent.encode()) <= 123


@pytest.mark.parametrize(
    "code", [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 4999]
)
def test_close_with_a_sendable_code(code: int) -> None:
    assert connected().commands_for({"type": "websocket.close", "code": code}) == [
        CloseWebSocket(1, code, "")
    ]


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000, True, "1000", 1000.0]
)
def test_close_with_a_code_that_may_not_be_sent_is_an_error(code: object) -> None:
    with pytest.raises(AppProtocolError, match="code"):
        connected().commands_for({"type": "websocket.close", "code": code})


def test_close_with_a_non_str_reason_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match="'reason' must be a str"):
        connected().commands_for({"type": "websocket.close", "reason": b"bytes"})


@pytest.mark.parametrize(
    "message",
    [
        {"type": "websocket.close", "code": 1005},
        {"type": "websocket.close", "code": 1000, "reason": 42},
    ],
    ids=["bad-code", "bad-reason"],
)
def test_a_rejected_close_leaves_the_websocket_connected(message: dict[str, Any]) -> None:
    cycle = connected()
    with pytest.raises(AppProtocolError):
        cycle.commands_for(message)
    assert cycle.state is WebSocketCycleState.CONNECTED
    assert cycle.close_code is None


def test_close_twice_is_an_error() -> None:
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.close' while closed")):
        closed().commands_for({"type": "websocket.close"})


# -- denial response ----------------------------------------------------------------


def test_denial_response_is_an_http_response() -> None:
    cycle = WebSocketCycle(1)
    start = {
        "type": "websocket.http.response.start",
        "status": 401,
        "headers": [(b"www-authenticate", b"Bearer")],
    }
    assert cycle.commands_for(start) == []
    assert cycle.state is WebSocketCycleState.RESPONDING
    commands = cycle.commands_for(
        {"type": "websocket.http.response.body", "body": b"who", "more_body": True}
    )
    assert commands == [
        StartResponse(1, 401, ((b"www-authenticate", b"Bearer"),)),
        SendData(1, b"who", end_stream=False),
    ]
    assert cycle.state is WebSocketCycleState.RESPONDING
    assert cycle.commands_for({"type": "websocket.http.response.body", "body": b" are you"}) == [
        SendData(1, b" are you", end_stream=True)
    ]
    assert state_of(cycle) is WebSocketCycleState.CLOSED
    assert not cycle.accepted
    assert cycle.response is not None
    assert (cycle.response.status, cycle.response.bytes_sent) == (401, 11)


def test_denial_response_body_without_start_is_an_error_naming_it() -> None:
    cycle = WebSocketCycle(1)
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.http.response.body'")):
        cycle.commands_for({"type": "websocket.http.response.body", "body": b"x"})


def test_denial_response_start_twice_is_an_error() -> None:
    cycle = WebSocketCycle(1)
    cycle.commands_for({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError, match=re.escape("'websocket.http.response.start'")):
        cycle.commands_for({"type": "websocket.http.response.start", "status": 403})


def test_denial_response_body_after_the_last_is_an_error() -> None:
    cycle = WebSocketCycle(1)
    cycle.commands_for({"type": "websocket.http.response.start", "status": 403})
    cycle.commands_for({"type": "websocket.http.response.body"})
    with pytest.raises(
        AppProtocolError, match=re.escape("'websocket.http.response.body' while closed")
    ):
        cycle.commands_for({"type": "websocket.http.response.body"})


@pytest.mark.parametrize(
    "message",
    [
        ACCEPT,
        {"type": "websocket.close"},
        {"type": "websocket.send", "text": "x"},
    ],
    ids=["accept", "close", "send"],
)
def test_websocket_messages_during_a_denial_response_are_errors(message: dict[str, Any]) -> None:
    cycle = WebSocketCycle(1)
    cycle.commands_for({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError) as info:
        cycle.commands_for(message)
    assert repr(message["type"]) in str(info.value)
    assert "sending a websocket.http.response" in str(info.value)


def test_denial_response_after_accept_is_an_error() -> None:
    with pytest.raises(
        AppProtocolError, match=re.escape("'websocket.http.response.start' while connected")
    ):
        connected().commands_for({"type": "websocket.http.response.start", "status": 403})


@pytest.mark.parametrize("status", [101, 199, 600, "403", True])
def test_denial_response_status_is_validated(status: object) -> None:
    with pytest.raises(AppProtocolError, match="'status'"):
        WebSocketCycle(1).commands_for({"type": "websocket.http.response.start", "status": status})


def test_denial_response_body_and_more_body_are_validated() -> None:
    cycle = WebSocketCycle(1)
    cycle.commands_for({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError, match="'body' must be a byte string"):
        cycle.commands_for({"type": "websocket.http.response.body", "body": "text"})
    with pytest.raises(AppProtocolError, match="'more_body' must be a bool"):
        cycle.commands_for({"type": "websocket.http.response.body", "more_body": 1})


def test_unprefixed_http_response_body_during_denial_is_an_error() -> None:
    cycle = WebSocketCycle(1)
    cycle.commands_for({"type": "websocket.http.response.start", "status": 403})
    with pytest.raises(AppProtocolError, match=re.escape("'http.response.body'")):
        cycle.commands_for({"type": "http.response.body"})


# -- the websocket scope -------------------------------------------------------------


def ws_request(
    target: bytes = b"/chat?room=1",
    *,
    subprotocols: tuple[str, ...] = ("chat", "superchat"),
    headers: tuple[tuple[bytes, bytes], ...] = ((b"host", b"example.com"),),
) -> RequestReceived:
    return RequestReceived(
        stream_id=1,
        method=b"GET",
        target=target,
        http_version="1.1",
        headers=headers,
        websocket=WebSocketRequest(subprotocols=subprotocols, key=b"dGhlIHNhbXBsZSBub25jZQ=="),
    )


INFO = ConnectionInfo(client=("10.0.0.1", 5000), server=("10.0.0.2", 8000))


def test_websocket_scope_has_the_asgi_keys() -> None:
    scope = build_websocket_scope(ws_request(), INFO, root_path="", state=None)
    asgi = scope["asgi"]
    assert asgi["version"] == "3.0"
    assert isinstance(asgi["spec_version"], str)
    assert {**scope, "asgi": None} == {
        "type": "websocket",
        "asgi": None,
        "http_version": "1.1",
        "scheme": "ws",
        "path": "/chat",
        "raw_path": b"/chat",
        "query_string": b"room=1",
        "root_path": "",
        "headers": [(b"host", b"example.com")],
        "client": ("10.0.0.1", 5000),
        "server": ("10.0.0.2", 8000),
        "subprotocols": ["chat", "superchat"],
        "extensions": {"websocket.http.response": {}},
    }
    assert "method" not in scope
    assert "state" not in scope


@pytest.mark.parametrize(("scheme", "ws_scheme"), [("http", "ws"), ("https", "wss")])
def test_websocket_scheme_follows_the_connection(scheme: str, ws_scheme: str) -> None:
    info = ConnectionInfo(client=None, server=None, scheme=scheme)
    scope = build_websocket_scope(ws_request(), info, root_path="", state=None)
    assert scope["scheme"] == ws_scheme


def test_websocket_subprotocols_is_a_list_even_when_none_offered() -> None:
    scope = build_websocket_scope(ws_request(subprotocols=()), INFO, root_path="", state=None)
    assert scope["subprotocols"] == []
    assert isinstance(scope["subprotocols"], list)


def test_websocket_path_is_percent_decoded_and_raw_path_kept() -> None:
    scope = build_websocket_scope(
        ws_request(b"/caf%C3%A9/a%20b?x=%20"), INFO, root_path="", state=None
    )
    assert scope["path"] == "/café/a b"
    assert scope["raw_path"] == b"/caf%C3%A9/a%20b"
    assert scope["query_string"] == b"x=%20"


def test_websocket_path_carries_the_root_path() -> None:
    scope = build_websocket_scope(ws_request(b"/ws"), INFO, root_path="/api", state=None)
    assert scope["root_path"] == "/api"
    assert scope["path"] == "/api/ws"
    assert scope["raw_path"] == b"/ws"


def test_websocket_state_is_a_copy_per_scope() -> None:
    state: dict[str, Any] = {"db": "pool"}
    first = build_websocket_scope(ws_request(), INFO, root_path="", state=state)
    second = build_websocket_scope(ws_request(), INFO, root_path="", state=state)
    assert first["state"] == {"db": "pool"}
    first["state"]["user"] = "alice"
    assert second["state"] == {"db": "pool"}
    assert state == {"db": "pool"}


def test_websocket_scopes_share_no_mutable_parts() -> None:
    first = build_websocket_scope(ws_request(), INFO, root_path="", state=None)
    second = build_websocket_scope(ws_request(), INFO, root_path="", state=None)
    first["asgi"]["version"] = "2.0"
    first["extensions"]["mine"] = {}
    first["subprotocols"].append("x")
    first["headers"].append((b"x", b"y"))
    assert second["asgi"]["version"] == "3.0"
    assert second["extensions"] == {"websocket.http.response": {}}
    assert second["subprotocols"] == ["chat", "superchat"]
    assert second["headers"] == [(b"host", b"example.com")]
