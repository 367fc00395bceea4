"""The httptools wire against h11's, step by step: same events, states, bytes and errors.

A request is read and a response written by both wires; after every step the
two must agree on what came out (an event, bytes, or an error of the same
type and message) and on both sides' states. Responses include what apps get
wrong (bad header names and values, bodies longer or shorter than their
Content-Length, trailers where they cannot go), so h11's refusals are
compared too.
"""

from __future__ import annotations

import importlib.util
import os
import re
from collections.abc import Callable
from typing import Any

import h11
import pytest
from hypothesis import HealthCheck, given, reject, settings
from hypothesis import strategies as st

from tricorn._protocol import http1_wire
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn._protocol.http1_wire import H11Wire, RequestHead, new_wire
from tricorn.config import Config
from tricorn.errors import ConfigError

if importlib.util.find_spec("httptools") is None and not os.environ.get("CI"):
    pytest.skip("httptools not installed (pip install 'tricorn[speed]')", allow_module_level=True)

REQUESTS = [
    b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.0\r\n\r\n",
    b"HEAD / HTTP/1.0\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
    b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc",
    b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n",
    b"POST / HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\nxyz",
    b"GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
    b"OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\nHost: a\nX: b\r\n c\n\nrest",
    b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    b"GET / HTTP/1.1\r\nHost: a\r\n",
    b"\x01GET",
    b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\n\r\nab",
]
# No CONNECT: HTTP1Protocol refuses it (501) by hand before either wire could answer it.

names = st.sampled_from(
    [
        b"content-type",
        b"Content-Length",
        b"content-length",
        b"Transfer-Encoding",
        b"connection",
        b"Connection",
        b"Host",
        b"x-a",
        b"bad name",
        b"",
    ]
)
values = st.sampled_from(
    [
        *(b"3", b"0", b"3, 3", b"3, 4", b"chunked", b"gzip", b"close", b"keep-alive"),
        *(b"Upgrade", b"text/plain", b"", b"a\r\nb", b" x", b"\x80"),
    ]
)
headers = st.lists(st.tuples(names, values), max_size=5)
commands = st.lists(
    st.one_of(
        st.tuples(st.just("informational"), st.sampled_from([100, 101, 103, 199, 200]), headers),
        st.tuples(st.just("response"), st.sampled_from([200, 204, 304, 404, 101, 1000]), headers),
        st.tuples(st.just("data"), st.sampled_from([b"", b"abc", b"x" * 10])),
        st.tuples(st.just("last"), st.sampled_from([b"", b"abc", b"x" * 10])),
        st.tuples(st.just("end"), headers),
        st.tuples(st.just("next_cycle")),
        st.tuples(st.just("read")),
    ),
    max_size=8,
)


def step(wire: Any, action: Callable[[Any], object]) -> tuple[object, ...]:
    """What ``action`` did on ``wire``, as comparable values, and the states after it."""
    outcome: object
    try:
        result = action(wire)
        outcome = [comparable(e) for e in result] if isinstance(result, list) else result
    except (h11.ProtocolError, RuntimeError) as exc:
        outcome = (type(exc).__name__, str(exc), getattr(exc, "error_status_hint", None))
    except AttributeError:
        # h11 fails this way when told to switch protocols twice (it names the
        # event type of a tuple); HTTP1Protocol never asks that of a wire.
        outcome = "h11 fails"
    trailing = wire.trailing_data
    # The cheap readings of what trailing_data copies out say the same.
    assert (wire.buffered, wire.peer_closed) == (len(trailing[0]), trailing[1])
    return (
        outcome,
        wire.their_state,
        wire.our_state,
        wire.they_are_waiting_for_100_continue,
        trailing,
        wire.chunk_bytes_expected(),
    )


def comparable(event: object) -> object:
    if isinstance(event, RequestHead):
        return (event.method, event.target, event.http_version, event.headers)
    if isinstance(event, h11.Data):
        return ("data", bytes(event.data))
    if isinstance(event, h11.EndOfMessage):
        return ("end", list(event.headers))
    if isinstance(event, h11.ConnectionClosed):
        return "closed"
    return event


def read_all(wire: Any) -> list[object]:
    events: list[object] = []
    for _ in range(10):
        event = wire.next_event()
        events.append(event)
        if event in (h11.NEED_DATA, h11.PAUSED) or isinstance(event, h11.ConnectionClosed):
            break
    return events


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(request=st.sampled_from(REQUESTS), script=commands, eof=st.booleans())
def test_the_httptools_wire_moves_exactly_as_h11s(
    request: bytes, script: list[tuple[Any, ...]], eof: bool
) -> None:
    wires = [new_wire("h11", 1024), new_wire("httptools", 1024)]
    for wire in wires:
        wire.receive_data(request)
        if eof:
            wire.receive_data(b"")

    def both(action: Callable[[Any], object]) -> None:
        reference, candidate = (step(wire, action) for wire in wires)
        if reference[0] == "h11 fails":
            reject()
        assert candidate == reference

    both(read_all)
    for command in script:
        both(action_for(command))


def replay(script: list[tuple[Any, ...]], reference: Any, candidate: Any) -> None:
    """Run the script on both wires: the same outcome at every step, until h11 fails."""
    for command in script:
        action = action_for(command)
        outcome = step(reference, action)
        if outcome[0] == "h11 fails":
            return
        assert step(candidate, action) == outcome


def send_last(wire: Any, data: bytes) -> bytes:
    """The last body bytes and the end, as HTTP1Protocol sends them: by the
    wire's shortcut where it takes them, else data then end."""
    out: bytes | None = wire.last_data(data)
    if out is None:
        out = (wire.send_data(data) if data else b"") + wire.send_end()
    return out


def action_for(command: tuple[Any, ...]) -> Callable[[Any], object]:
    """What one scripted command does to a wire."""
    match command:
        case ("informational", status, fields):
            return lambda wire: wire.send_informational(status, fields, b"Info")
        case ("response", status, fields):
            return lambda wire: wire.send_response(status, fields, b"Reason")
        case ("data", data):
            return lambda wire: wire.send_data(data)
        case ("last", data):
            return lambda wire: send_last(wire, data)
        case ("end", fields):
            return lambda wire: wire.send_end(fields)
        case ("next_cycle",):
            return lambda wire: wire.start_next_cycle()
    return read_all


def test_auto_picks_httptools_where_it_is_installed() -> None:
    assert http1_wire.resolve("auto") == "httptools"
    assert http1_wire.resolve("httptools") == "httptools"
    assert http1_wire.resolve("h11") == "h11"


def test_without_httptools_auto_is_h11_and_httptools_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(http1_wire, "_httptools_installed", lambda: False)
    assert http1_wire.resolve("auto") == "h11"
    assert http1_wire.resolve("h11") == "h11"
    with pytest.raises(ConfigError, match=r"http1_parser: httptools is not installed"):
        http1_wire.resolve("httptools")


@pytest.mark.parametrize("parser", ["h11", "httptools"])
def test_the_protocol_runs_on_the_wire_its_config_names(parser: str) -> None:
    protocol = HTTP1Protocol(Config(http1_parser=parser))  # type: ignore[arg-type]
    wire = protocol._wire
    assert isinstance(wire, H11Wire) is (parser == "h11")


def test_httptools_reads_the_head_after_a_body_itself(monkeypatch: pytest.MonkeyPatch) -> None:
    """llhttp is fed heads alone: after a head that announced a body it starts afresh."""
    from tricorn._protocol import http1_httptools

    def no_fallback(head: bytes) -> RequestHead:
        raise AssertionError(f"h11 was asked about {head!r}")

    monkeypatch.setattr(http1_httptools, "_h11_verdict", no_fallback)
    wire = new_wire("httptools", 1024)
    wire.receive_data(b"GET /1 HTTP/1.1\r\nHost: a\r\n\r\n")
    wire.receive_data(b"POST /2 HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\n\r\nx")
    wire.receive_data(b"GET /3 HTTP/1.1\r\nHost: a\r\n\r\n")
    targets = []
    for _ in range(3):
        events = read_all(wire)
        targets += [event.target for event in events if isinstance(event, RequestHead)]
        wire.send_response(200, [(b"content-length", b"0")], b"OK")
        wire.send_end()
        wire.start_next_cycle()
    assert targets == [b"/1", b"/2", b"/3"]


def _h11_head_pattern() -> re.Pattern[bytes]:
    """A whole head in h11's grammar, built from h11's own ABNF as h11 reads it."""
    from h11._abnf import header_field, request_line

    return re.compile(f"{request_line}\r\n(?:{header_field}\r\n)*\r\n".encode("ascii"))


head_bytes = st.lists(
    st.sampled_from(
        [
            *(b"GET", b" ", b"/", b"HTTP/1.1", b"HTTP/1.", b"\r\n", b"\n", b"\r", b"Host", b":"),
            *(b"a", b"\t", b"\x00", b"\x0b", b"\x0c", b"\x80", b"\x7f", b"\x1f", b"(", b"x-y"),
        ]
    ),
    max_size=24,
).map(b"".join)


@settings(max_examples=2000, deadline=None)
@given(
    head=st.one_of(
        head_bytes,
        st.tuples(head_bytes, head_bytes).map(lambda p: b"GET / HTTP/1.1\r\n" + p[0] + p[1]),
    )
)
def test_the_strict_head_pattern_is_h11s_grammar(head: bytes) -> None:
    from tricorn._protocol.http1_httptools import _STRICT_HEAD

    for candidate in (head, head + b"\r\n\r\n", head + b"\r\n"):
        ours = _STRICT_HEAD.fullmatch(candidate) is not None
        assert ours is (_h11_head_pattern().fullmatch(candidate) is not None), candidate


methods = st.sampled_from([b"GET", b"HEAD", b"POST", b"OPTIONS", b"CONNECT", b"get", b"M-SEARCH"])
targets = st.sampled_from([b"/", b"/a?b=c", b"*", b"http://a/b", b"/%20x", b"a:80"])
versions = st.sampled_from([b"HTTP/1.1", b"HTTP/1.0", b"HTTP/2.0"])
request_names = st.sampled_from(
    [
        *(b"Host", b"host", b"Content-Length", b"Transfer-Encoding", b"TE", b"Expect"),
        *(b"Connection", b"Upgrade", b"HTTP2-Settings", b"x-a", b"User-Agent", b"bad name"),
    ]
)
request_values = st.sampled_from(
    [
        *(b"a", b" a ", b"a\tb", b"", b"0", b"1", b"chunked", b"close", b"trailers"),
        *(b"100-continue", b"websocket", b"h2c", b"\x80", b"a\x0bb", b"\x00"),
    ]
)


@st.composite
def request_reads(draw: st.DrawFn) -> bytes:
    """One read: a request head (mostly plain, sometimes not), perhaps more behind it."""
    line = b"%s %s %s\r\n" % (draw(methods), draw(targets), draw(versions))
    fields = draw(st.lists(st.tuples(request_names, request_values), max_size=4))
    if draw(st.booleans()):
        fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"example.com"))
    newline = draw(st.sampled_from([b"\r\n"] * 5 + [b"\n"]))
    head = line + b"".join(name + b": " + value + newline for name, value in fields) + newline
    return head + draw(st.sampled_from([b""] * 4 + [b"abc", b"GET / HTTP/1.1\r\n"]))


@st.composite
def plain_reads(draw: st.DrawFn) -> bytes:
    """A plain request head, perhaps a Content-Length and body bytes behind it
    (fewer than it declares, as many, or more: the next request's)."""
    line = b"%s %s HTTP/1.1\r\n" % (
        draw(st.sampled_from([b"GET", b"HEAD", b"POST", b"DELETE"])),
        draw(st.sampled_from([b"/", b"/a?b=c", b"/%20x"])),
    )
    names = st.sampled_from([b"x-a", b"User-Agent", b"Accept", b"TE", b"Host"])
    values = st.sampled_from([b"a", b" a ", b"a\tb", b"", b"\x80", b"*/*"])
    fields = draw(st.lists(st.tuples(names, values), max_size=3))
    fields.insert(draw(st.integers(0, len(fields))), (b"Host", b"example.com"))
    behind = b""
    if draw(st.booleans()):
        size = draw(st.sampled_from([b"0", b"1", b"5", b"20", b"05", b" 5"]))
        name = draw(st.sampled_from([b"Content-Length", b"content-length"]))
        fields.insert(draw(st.integers(0, len(fields))), (name, size))
        behind = b"x" * draw(st.integers(0, 25))
    head = line + b"".join(name + b": " + value + b"\r\n" for name, value in fields) + b"\r\n"
    return head + behind


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    read=st.one_of(plain_reads(), request_reads()),
    max_body=st.sampled_from([None, None, 3, 100]),
    more=st.sampled_from([b"", b"y", b"y" * 30, b"yyyGET / HTTP/1.1\r\nHost: a\r\n\r\n"]),
    script=commands,
)
def test_a_plain_request_read_in_one_step_is_what_h11_reads(
    read: bytes, max_body: int | None, more: bytes, script: list[tuple[Any, ...]]
) -> None:
    """plain_request and plain_body either decline, touching nothing, or read
    the request, its body and its end exactly as h11 does, leaving the wire
    where h11's would be."""
    reference, candidate = new_wire("h11", 1024), new_wire("httptools", 1024)

    def nothing(wire: Any) -> None:
        return None

    def read_plainly(data: bytes) -> list[object]:
        if candidate.their_state is h11.DONE:
            candidate.receive_data(data)
            return []
        taken = candidate.plain_body(data)
        assert taken is not None
        body, ended = taken
        return [("data", body)] * bool(body) + [("end", [])] * ended

    def read_reference(data: bytes) -> list[object]:
        reference.receive_data(data)
        events = [comparable(event) for event in read_all(reference)]
        assert events[-1] in (h11.NEED_DATA, h11.PAUSED)
        return events[:-1]

    before = step(candidate, nothing)
    plain = candidate.plain_request(read, max_body)
    if plain is None:
        assert step(candidate, nothing) == before
        return
    head, rest = plain
    ours = [comparable(head)]
    if candidate.their_state is h11.DONE:
        ours.append(("end", []))
    if rest:
        ours += read_plainly(rest)
    assert ours == read_reference(read)
    assert step(candidate, nothing) == step(reference, nothing)
    if more:
        assert read_plainly(more) == read_reference(more)
        assert step(candidate, nothing) == step(reference, nothing)
    replay(script, reference, candidate)


@pytest.mark.parametrize(
    "read",
    [
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"HEAD /x?y HTTP/1.1\r\nhost: a\r\nUser-Agent: b c \r\nAccept: */*\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nxyz",
    ],
)
def test_a_plain_request_is_read_in_one_step(read: bytes) -> None:
    plain = new_wire("httptools", 1024).plain_request(read, None)
    assert plain is not None
    assert plain[0].headers[0] == (b"host", b"a")


@pytest.mark.parametrize(
    "read",
    [
        b"GET / HTTP/1.0\r\nHost: a\r\n\r\n",
        b"GET / HTTP/1.1\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        b"GET http://a/ HTTP/1.1\r\nHost: a\r\n\r\n",
        b"CONNECT a:80 HTTP/1.1\r\nHost: a\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +1\r\n\r\nx",
        b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        b"GET / HTTP/1.1\r\nHost: a\r\n",
        b"GET / HTTP/1.1\nHost: a\n\n",
        b"\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
    ],
)
def test_anything_but_a_plain_request_goes_the_general_way(read: bytes) -> None:
    assert new_wire("httptools", 1024).plain_request(read, 100) is None


default_fields = st.lists(
    st.sampled_from(
        [
            (b"date", b"Mon, 07 Dec 2026 20:00:00 GMT"),
            (b"server", b"tricorn"),
            (b"content-type", b"text/html"),
            (b"connection", b"close"),
            (b"x-a", b"\x80"),
            (b"bad name", b"x"),
        ]
    ),
    max_size=3,
)


@st.composite
def response_fields(draw: st.DrawFn) -> list[tuple[bytes, bytes]]:
    """Mostly plain response fields with a Content-Length (once, sometimes twice)."""
    fields = draw(
        st.lists(
            st.sampled_from(
                [
                    (b"content-type", b"text/plain"),
                    (b"Date", b"yesterday"),
                    (b"server", b"app"),
                    (b"X-A", b"b c"),
                ]
            ),
            max_size=3,
        )
    )
    for _ in range(draw(st.sampled_from([1, 1, 1, 2]))):
        length = (draw(st.sampled_from([b"Content-Length", b"content-length"])), b"3")
        fields.insert(draw(st.integers(0, len(fields))), length)
    return fields


@settings(max_examples=1000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    request=st.sampled_from(REQUESTS[:3] * 5 + REQUESTS),
    status=st.sampled_from([200, 204, 304, 404, 101, 1000]),
    fields=st.one_of(response_fields(), headers),
    defaults=default_fields,
    script=commands,
)
def test_a_plain_response_is_written_as_h11_writes_the_merged_fields(
    request: bytes,
    status: int,
    fields: list[tuple[bytes, bytes]],
    defaults: list[tuple[bytes, bytes]],
    script: list[tuple[Any, ...]],
) -> None:
    """plain_response either declines, touching nothing, or writes what h11
    writes for the app's fields followed by the defaults whose names they lack."""
    reference, candidate = new_wire("h11", 1024), new_wire("httptools", 1024)
    for wire in (reference, candidate):
        wire.receive_data(request)
        step(wire, read_all)

    def nothing(wire: Any) -> None:
        return None

    before = step(candidate, nothing)
    head = candidate.plain_response(status, fields, b"Reason", defaults)
    if head is None:
        assert step(candidate, nothing) == before
        return
    names = {name.lower() for name, _ in fields}
    merged = [*fields, *(field for field in defaults if field[0] not in names)]
    assert step(reference, lambda wire: wire.send_response(status, merged, b"Reason")) == step(
        candidate, lambda wire: head
    )
    replay(script, reference, candidate)
