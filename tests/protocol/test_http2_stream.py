"""The HTTP/2 stream state table: every path a stream takes, and the error off them."""

from __future__ import annotations

import pytest

from tricorn._protocol.http2_stream import TRANSITIONS, Stream, StreamEvent, StreamState

S, V = StreamState, StreamEvent


@pytest.mark.parametrize(
    ("request_done", "events", "final"),
    [
        # A GET: the request ends on its HEADERS, then the response.
        (True, [V.RESPONSE_STARTED, V.RESPONSE_ENDING, V.RESPONSE_ENDED], S.CLOSED),
        # An upload answered before its body is in: half-closed (local) first.
        (
            False,
            [V.RESPONSE_STARTED, V.RESPONSE_ENDING, V.RESPONSE_ENDED, V.REQUEST_ENDED],
            S.CLOSED,
        ),
        # The body ends while the response's end waits for the window.
        (False, [V.RESPONSE_STARTED, V.RESPONSE_ENDING, V.REQUEST_ENDED], S.ENDING),
        (False, [V.REQUEST_ENDED, V.RESPONSE_STARTED], S.RESPONDING),
        (False, [V.RESPONSE_STARTED, V.RESET], S.CLOSED),
    ],
)
def test_a_stream_follows_the_table(
    request_done: bool, events: list[StreamEvent], final: StreamState
) -> None:
    stream = Stream(1, b"POST", request_done=request_done)
    for event in events:
        stream.advance(event)
    assert stream.state is final


def test_the_derived_views_agree_with_the_state() -> None:
    stream = Stream(3, b"GET", request_done=True)
    assert stream.request_done
    assert not stream.response_started
    stream.advance(V.RESPONSE_STARTED)
    assert stream.response_started
    assert not stream.response_done
    stream.held.append(b"waiting for the window")
    stream.advance(V.RESPONSE_ENDING)
    assert stream.response_done
    assert stream.end_held
    assert stream.holds_output
    stream.advance(V.RESET)
    assert stream.ended
    assert not stream.holds_output
    assert not stream.held


def test_a_missing_transition_names_the_stream_the_state_and_the_event() -> None:
    stream = Stream(5, b"GET", request_done=True)
    expected = r"stream 5: .*'half-closed \(remote\)'.*'response ended'"
    with pytest.raises(RuntimeError, match=expected):
        stream.advance(V.RESPONSE_ENDED)


def test_reset_closes_from_every_state_and_closed_takes_nothing_else() -> None:
    assert all(TRANSITIONS[state, V.RESET] is S.CLOSED for state in StreamState)
    assert [event for event in StreamEvent if (S.CLOSED, event) in TRANSITIONS] == [V.RESET]
