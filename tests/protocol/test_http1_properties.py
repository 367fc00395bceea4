"""Properties of HTTP1Protocol over generated requests and arbitrary bytes."""

from __future__ import annotations

from itertools import pairwise

import h11
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tricorn._protocol.events import (
    ConnectionClosed,
    DataReceived,
    RequestReceived,
    RequestRejected,
    SendData,
    StartResponse,
    StreamEnded,
)
from tricorn.errors import TricornError

from ._client import make_server, request_bytes, serve

SETTINGS = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

# RFC 9110 5.6.2: token = 1*tchar
TCHAR = "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
# RFC 9110 5.5: field-vchar = VCHAR / obs-text; SP and HTAB only between them.
FIELD_VCHAR = bytes(range(0x21, 0x7F)) + bytes(range(0x80, 0x100))
# Names whose values change framing or the connection's state; they get
# their own tests rather than random values.
RESERVED = {"host", "content-length", "transfer-encoding", "connection", "expect", "upgrade"}

header_names = st.text(TCHAR, min_size=1, max_size=20).filter(lambda n: n.lower() not in RESERVED)
field_vchar = st.sampled_from([bytes([b]) for b in FIELD_VCHAR])
field_values = st.one_of(
    st.just(b""),
    st.builds(
        lambda first, rest: first + b"".join(sep + word for sep, word in rest),
        st.lists(field_vchar, min_size=1, max_size=10).map(b"".join),
        st.lists(
            st.tuples(
                st.sampled_from([b" ", b"\t", b"  "]),
                st.lists(field_vchar, min_size=1, max_size=10).map(b"".join),
            ),
            max_size=3,
        ),
    ),
)
header_lists = st.lists(st.tuples(header_names, field_values), max_size=20)


@SETTINGS
@given(headers=header_lists)
def test_any_valid_header_list_round_trips_lower_cased_and_in_order(
    headers: list[tuple[str, bytes]],
) -> None:
    wire = request_bytes(
        h11.Request(
            method="GET",
            target="/",
            headers=[("Host", b"example.com"), *((name, value) for name, value in headers)],
        ),
        h11.EndOfMessage(),
    )
    events = make_server().receive_data(wire)
    assert isinstance(events[0], RequestReceived)
    assert events[0].headers == (
        (b"host", b"example.com"),
        *((name.lower().encode("ascii"), value) for name, value in headers),
    )
    assert events[1:] == [StreamEnded(1)]


# -- valid request streams, cut anywhere --------------------------------------

targets = st.builds(
    lambda segments, query: "/" + "/".join(segments) + (f"?{query}" if query else ""),
    st.lists(st.text("abcxyz0129-._~%2F", min_size=1, max_size=8), max_size=4),
    st.text("abc=&?/123", max_size=12),
)
bodies = st.binary(max_size=300)


@st.composite
def requests(draw: st.DrawFn) -> list[h11.Event]:
    """One request as h11 events: bodiless, Content-Length or chunked."""
    target = draw(targets)
    extra = draw(st.lists(st.tuples(header_names, field_values), max_size=3))
    headers = [("host", b"example.com"), *extra]
    framing = draw(st.sampled_from(["none", "length", "chunked"]))
    if framing == "none":
        return [h11.Request(method="GET", target=target, headers=headers), h11.EndOfMessage()]
    body = draw(bodies)
    if framing == "length":
        headers.append(("content-length", str(len(body)).encode()))
        pieces = [body] if body else []
    else:
        headers.append(("transfer-encoding", "chunked"))
        cuts = sorted(draw(st.lists(st.integers(0, len(body)), max_size=4)))
        bounds = [0, *cuts, len(body)]
        pieces = [body[a:b] for a, b in pairwise(bounds) if body[a:b]]
    return [
        h11.Request(method="POST", target=target, headers=headers),
        *(h11.Data(data=piece) for piece in pieces),
        h11.EndOfMessage(),
    ]


@st.composite
def streams_and_cuts(draw: st.DrawFn) -> tuple[bytes, list[int]]:
    wire = request_bytes(
        *(e for r in draw(st.lists(requests(), min_size=1, max_size=3)) for e in r)
    )
    cuts = sorted(set(draw(st.lists(st.integers(1, max(1, len(wire) - 1)), max_size=12))))
    return wire, cuts


@SETTINGS
@given(streams_and_cuts())
def test_any_split_of_a_valid_request_stream_gives_identical_events(
    stream: tuple[bytes, list[int]],
) -> None:
    wire, cuts = stream
    bounds = [0, *cuts, len(wire)]
    chunks = [wire[a:b] for a, b in pairwise(bounds)]

    whole_events, whole_out = serve(make_server(), [wire])
    split_events, split_out = serve(make_server(), chunks)
    assert split_events == whole_events
    assert split_out == whole_out
    assert not any(isinstance(event, RequestRejected) for event in whole_events)
    requests_seen = sum(isinstance(event, RequestReceived) for event in whole_events)
    assert requests_seen == sum(isinstance(event, StreamEnded) for event in whole_events)


# -- arbitrary bytes ----------------------------------------------------------

EVENT_TYPES = (RequestReceived, DataReceived, StreamEnded, ConnectionClosed, RequestRejected)
prefixes = st.sampled_from(
    [
        b"",
        b"GET / HTTP/1.1\r\nhost: a\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ncontent-length: 5\r\n\r\n",
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n",
        b"GET / HTTP/1.1\r\nhost: a\r\n\r\nGET",
    ]
)


@SETTINGS
@given(
    prefix=prefixes,
    junk=st.binary(max_size=600),
    cuts=st.lists(st.integers(0, 700), max_size=8),
    eof=st.booleans(),
    limits=st.sampled_from([{}, {"h11_max_incomplete_size": 64}, {"max_request_body_size": 3}]),
)
def test_arbitrary_bytes_only_ever_produce_events(
    prefix: bytes, junk: bytes, cuts: list[int], eof: bool, limits: dict[str, int]
) -> None:
    data = prefix + junk
    bounds = [0, *sorted(c for c in cuts if c < len(data)), len(data)]
    chunks = [data[a:b] for a, b in pairwise(bounds)]
    if eof:
        chunks.append(b"")
    server = make_server(**limits)
    for chunk in chunks:
        events = server.receive_data(chunk)
        while True:
            assert all(isinstance(event, EVENT_TYPES) for event in events)
            if any(isinstance(event, RequestRejected | ConnectionClosed) for event in events):
                assert server.closed
                assert isinstance(events[-1], RequestRejected | ConnectionClosed)
            if not any(isinstance(event, StreamEnded) for event in events) or server.closed:
                break
            try:
                server.handle(StartResponse(1, 200, ((b"content-length", b"0"),)))
                server.handle(SendData(1, b"", end_stream=True))
            except TricornError:
                break
            if not server.reusable:
                break
            events = server.start_next_cycle()
    out = server.data_to_send()
    if server.closed and out:
        assert out.startswith(b"HTTP/1.1 ")


# -- chunked bodies: runs of whole chunks are read in one step -----------------

chunk_extensions = st.sampled_from(
    [b"", b";a=b", b"; name", b';x="q"', b" ", b"\t", b";a\rb", b";a\nb", b"z", b";"]
)


@st.composite
def chunked_bodies(draw: st.DrawFn) -> bytes:
    """A chunked body, mostly well formed: odd extensions, sizes and endings mixed in."""
    out = bytearray()
    for _ in range(draw(st.integers(0, 40))):
        size = draw(st.integers(1, 5))
        digits = draw(st.sampled_from([f"{size:x}", f"{size:X}", f"{size:03x}"]))
        out += digits.encode() + draw(chunk_extensions) + b"\r\n"
        out += bytes(draw(st.integers(0x21, 0x7E)) for _ in range(size))
        out += draw(st.sampled_from([b"\r\n"] * 8 + [b"\n", b"xx", b"\r\n\r\n"]))
    out += draw(st.sampled_from([b"0\r\n\r\n", b"0\r\nx-trailer: 1\r\n\r\n", b"0\r\n", b""]))
    return bytes(out)


def h11_reads(body: bytes) -> tuple[bytes, bool]:
    """What h11 itself makes of the body: the bytes it hands on, and whether it ends well."""
    server = h11.Connection(h11.SERVER)
    server.receive_data(b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n" + body)
    data = bytearray()
    try:
        while True:
            event = server.next_event()
            if isinstance(event, h11.Data):
                data += event.data
            elif isinstance(event, h11.EndOfMessage):
                return bytes(data), True
            elif event is h11.NEED_DATA:
                return bytes(data), False
    except h11.RemoteProtocolError:
        return bytes(data), False


@SETTINGS
@given(body=chunked_bodies(), cuts=st.lists(st.integers(1, 400), max_size=6))
def test_a_chunked_body_gives_the_app_what_h11_reads_however_it_arrives(
    body: bytes, cuts: list[int]
) -> None:
    head = b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
    data = head + body
    bounds = [0, *sorted({c for c in cuts if c < len(data)}), len(data)]
    server = make_server()
    events = []
    for a, b in pairwise(bounds):
        events += server.receive_data(data[a:b])
    delivered = b"".join(e.data for e in events if isinstance(e, DataReceived))
    expected, ends = h11_reads(body)
    assert delivered == expected
    assert any(isinstance(e, StreamEnded) for e in events) == ends
    if not ends and any(isinstance(e, RequestRejected) for e in events):
        assert server.closed


def test_two_hundred_thousand_one_byte_chunks_reach_the_app_in_a_few_pieces() -> None:
    server = make_server()
    events = server.receive_data(
        b"POST / HTTP/1.1\r\nhost: a\r\ntransfer-encoding: chunked\r\n\r\n"
    )
    body = b"1\r\nX\r\n" * 200_000 + b"0\r\n\r\n"
    for start in range(0, len(body), 65536):
        events += server.receive_data(body[start : start + 65536])
        server.acknowledge(1, 65536)
    pieces = [e.data for e in events if isinstance(e, DataReceived)]
    assert b"".join(pieces) == b"X" * 200_000
    assert len(pieces) <= 2 * (len(body) // 65536 + 1)  # about one per read, not one per chunk
    assert isinstance(events[-1], StreamEnded)
