"""The HTTP cycle's extension messages: trailers, early hints, push."""

from __future__ import annotations

import pytest

from tricorn._asgi.cycle import HTTPCycle
from tricorn._protocol.events import (
    PushPromise,
    SendData,
    SendInformational,
    SendTrailers,
    StartResponse,
)
from tricorn.errors import AppProtocolError

START = {"type": "http.response.start", "status": 200}


def test_trailers_follow_the_last_body_and_end_the_response() -> None:
    cycle = HTTPCycle(1, trailers=True)
    assert cycle.commands_for({**START, "trailers": True}) == []
    assert cycle.commands_for({"type": "http.response.body", "body": b"x"}) == [
        StartResponse(1, 200, ()),
        SendData(1, b"x", end_stream=False),
    ]
    assert not cycle.done
    assert (
        cycle.commands_for(
            {"type": "http.response.trailers", "headers": [(b"a", b"1")], "more_trailers": True}
        )
        == []
    )
    assert cycle.commands_for({"type": "http.response.trailers", "headers": [(b"b", b"2")]}) == [
        SendTrailers(1, ((b"a", b"1"), (b"b", b"2")))
    ]
    assert cycle.done


def test_trailers_need_the_extension() -> None:
    with pytest.raises(AppProtocolError, match="trailers"):
        HTTPCycle(1).commands_for({**START, "trailers": True})


def test_early_hint_before_the_body_is_a_103() -> None:
    cycle = HTTPCycle(1, early_hints=True)
    hint = {"type": "http.response.early_hint", "links": [b"</a.css>; rel=preload"]}
    assert cycle.commands_for(hint) == [
        SendInformational(1, 103, ((b"link", b"</a.css>; rel=preload"),))
    ]
    cycle.commands_for(START)
    assert cycle.commands_for(hint)  # after the (held) start, still before the head goes out


def test_late_early_hint_is_dropped_not_an_error() -> None:
    cycle = HTTPCycle(1, early_hints=True)
    cycle.commands_for(START)
    cycle.commands_for({"type": "http.response.body", "body": b"a", "more_body": True})
    hint = {"type": "http.response.early_hint", "links": [b"</a.css>"]}
    assert cycle.commands_for(hint) == []


def test_extension_messages_need_their_extension() -> None:
    with pytest.raises(AppProtocolError, match="early_hint"):
        HTTPCycle(1).commands_for({"type": "http.response.early_hint", "links": []})
    cycle = HTTPCycle(1)
    cycle.commands_for(START)
    with pytest.raises(AppProtocolError, match="push"):
        cycle.commands_for({"type": "http.response.push", "path": "/x", "headers": []})


def test_push_path_is_percent_encoded() -> None:
    cycle = HTTPCycle(1, push=True)
    cycle.commands_for(START)
    assert cycle.commands_for(
        {"type": "http.response.push", "path": "/caf\u00e9 a.css", "headers": []}
    ) == [PushPromise(1, b"/caf%C3%A9%20a.css", ())]
