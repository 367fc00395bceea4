"""Request smuggling and framing edge cases: httptools answers each exactly as h11 does.

Every case is served by both parsers, start to end (each request answered
``200 ok`` as a runtime would), and the two must agree byte for byte on what
went out and on whether the connection closed; each case also states the
answer h11, the reference, gives. llhttp alone is laxer than h11 in several
of these (it reads ``Transfer-Encoding: gzip, chunked`` as chunked, takes a
twenty-digit chunk size, accepts any Content-Length) and stricter in others
(bare LF, obs-fold, unknown methods); the httptools wire hands every head it
cannot vouch for to h11, and reads every body with h11's readers.
"""

from __future__ import annotations

import importlib.util
import os
import re
from dataclasses import dataclass

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tricorn._protocol.events import RequestReceived, RequestRejected
from tricorn._protocol.http1 import HTTP1Protocol
from tricorn.config import Config

from ._client import DEFAULT_HEADERS, serve

if importlib.util.find_spec("httptools") is None and not os.environ.get("CI"):
    pytest.skip("httptools not installed (pip install 'tricorn[speed]')", allow_module_level=True)


@dataclass(frozen=True)
class Answer:
    """What a server made of some bytes: the statuses it sent, the close, the bytes."""

    statuses: tuple[int, ...]
    closed: bool
    rejected: tuple[RequestRejected, ...]
    requests: tuple[RequestReceived, ...]
    output: bytes


def answer(parser: str, chunks: list[bytes], **config: object) -> Answer:
    """Serve ``chunks`` as the runtime would: answer each request, then finish its exchange."""
    server = HTTP1Protocol(
        Config(http1_parser=parser, **config),  # type: ignore[arg-type]
        default_headers=lambda: DEFAULT_HEADERS,
    )
    events, output = serve(server, chunks, finish=True)
    statuses = tuple(int(status) for status in re.findall(rb"HTTP/1\.1 (\d{3}) ", output))
    return Answer(
        statuses,
        server.closed,
        tuple(event for event in events if isinstance(event, RequestRejected)),
        tuple(event for event in events if isinstance(event, RequestReceived)),
        output,
    )


H = b"Host: a\r\n"
SMUGGLED = b"GET /smuggled HTTP/1.1\r\nHost: a\r\n\r\n"

#: (name, bytes, the statuses h11 answers with, whether the connection closes)
CASES = [
    (
        "cl-te",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED,
        (400,),
        True,
    ),
    (
        "te-cl",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n"
        b"0\r\n\r\n" + SMUGGLED,
        (400,),
        True,
    ),
    (
        "duplicate-cl-equal",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2\r\nContent-Length: 2\r\n\r\nab" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "duplicate-cl-conflicting",
        b"POST / HTTP/1.1\r\n"
        + H
        + b"Content-Length: 2\r\nContent-Length: 30\r\n\r\nab"
        + SMUGGLED,
        (400,),
        True,
    ),
    (
        "cl-list-equal",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2, 2\r\n\r\nab" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "cl-list-conflicting",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 2, 30\r\n\r\nab" + SMUGGLED,
        (400,),
        True,
    ),
    ("cl-plus-sign", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: +2\r\n\r\nab", (400,), True),
    ("cl-hex", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 0x2\r\n\r\nab", (400,), True),
    ("cl-negative", b"POST / HTTP/1.1\r\n" + H + b"Content-Length: -2\r\n\r\nab", (400,), True),
    (
        "cl-21-digits",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length: 100000000000000000000\r\n\r\n",
        (400,),
        True,
    ),
    (
        "space-before-colon",
        b"POST / HTTP/1.1\r\n" + H + b"Content-Length : 2\r\n\r\nab" + SMUGGLED,
        (400,),
        True,
    ),
    (
        "obs-fold",
        b"GET / HTTP/1.1\r\n" + H + b"X-Folded: a\r\n b\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "obs-fold-transfer-encoding",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "obs-fold-first-line",
        b"GET / HTTP/1.1\r\n a: b\r\n" + H + b"\r\n",
        (400,),
        True,
    ),
    ("bare-lf-head", b"GET / HTTP/1.1\nHost: a\n\n" + SMUGGLED, (200, 200), False),
    ("bare-lf-mixed", b"GET / HTTP/1.1\r\nHost: a\n\r\n" + SMUGGLED, (200, 200), False),
    ("bare-cr", b"GET / HTTP/1.1\r\nHost: a\rX: b\r\n\r\n", (400,), True),
    (
        "bare-lf-chunk-size",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\nab\r\n0\r\n\r\n",
        (400,),
        True,
    ),
    (
        "bare-lf-chunk-end",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nab\n0\r\n\r\n",
        (400,),
        True,
    ),
    (
        "chunk-size-21-digits",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"100000000000000000001\r\nab\r\n0\r\n\r\n",
        (400,),
        True,
    ),
    (
        "chunk-size-overflows-64-bits",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"10000000000000002\r\nab\r\n0\r\n\r\n",
        (400,),
        True,
    ),
    (
        "chunk-size-over-1-gib",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n80000000\r\nab",
        (400,),
        True,
    ),
    (
        "chunk-size-whitespace-and-extension",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2 \r\nab\r\n2;x=y\r\ncd\r\n0\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "chunk-missing-crlf",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n2\r\nabX\r\n0\r\n\r\n",
        (400,),
        True,
    ),
    (
        "chunk-trailers",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n\r\n"
        b"2\r\nab\r\n0\r\nX-Trailer: 1\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "te-chunked-identity",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n",
        (501,),
        True,
    ),
    (
        "te-gzip-chunked",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
        (501,),
        True,
    ),
    (
        "te-identity",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: identity\r\n\r\n" + SMUGGLED,
        (501,),
        True,
    ),
    (
        "te-twice",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: chunked\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        (501,),
        True,
    ),
    (
        "te-upper-case",
        b"POST / HTTP/1.1\r\n" + H + b"Transfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    (
        "te-with-http-1.0",
        b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n",
        (200,),
        True,
    ),
    ("host-missing", b"GET / HTTP/1.1\r\n\r\n", (400,), True),
    ("host-twice", b"GET / HTTP/1.1\r\n" + H + H + b"\r\n", (400,), True),
    ("host-missing-http-1.0", b"GET / HTTP/1.0\r\n\r\n", (200,), True),
    ("nul-in-value", b"GET / HTTP/1.1\r\n" + H + b"X: a\x00b\r\n\r\n", (400,), True),
    (
        "ctl-in-value",
        b"GET / HTTP/1.1\r\n" + H + b"X: a\x01b\r\n\r\n" + SMUGGLED,
        (200, 200),
        False,
    ),
    ("obs-text-in-target", b"GET /\x80 HTTP/1.1\r\n" + H + b"\r\n", (400,), True),
    ("unknown-method", b"BREW /pot HTTP/1.1\r\n" + H + b"\r\n" + SMUGGLED, (200, 200), False),
    ("lower-case-method", b"get / HTTP/1.1\r\n" + H + b"\r\n", (200,), False),
    ("http-1.2", b"GET / HTTP/1.2\r\n" + H + b"\r\n", (505,), True),
    ("double-space", b"GET  / HTTP/1.1\r\n" + H + b"\r\n", (400,), True),
    ("connect", b"CONNECT a:443 HTTP/1.1\r\n" + H + b"\r\n", (501,), True),
    (
        "absolute-form-userinfo",
        b"GET http://user@evil/ HTTP/1.1\r\n" + H + b"\r\n",
        (400,),
        True,
    ),
    (
        "body-after-connection-close",
        b"POST / HTTP/1.1\r\n" + H + b"Connection: close\r\nContent-Length: 2\r\n\r\nab" + SMUGGLED,
        (200,),
        True,
    ),
    ("leading-crlf", b"\r\n\r\nGET / HTTP/1.1\r\n" + H + b"\r\n", (200,), False),
    (
        # A parser reused across requests must not read one request's body
        # into the next head (llhttp, fed heads alone, would).
        "pipelined-get-post-get",
        b"GET /1 HTTP/1.1\r\n" + H + b"\r\nPOST /2 HTTP/1.1\r\n" + H + b"Content-Length: 1\r\n"
        b"\r\nxXGET /3 HTTP/1.1\r\n" + H + b"\r\n",
        (200, 200, 200),
        False,
    ),
]


@pytest.mark.parametrize(
    ("wire", "statuses", "closes"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_httptools_answers_each_case_exactly_as_h11(
    wire: bytes, statuses: tuple[int, ...], closes: bool
) -> None:
    reference = answer("h11", [wire])
    assert (reference.statuses, reference.closed) == (statuses, closes)
    assert answer("httptools", [wire]) == reference


@pytest.mark.parametrize("wire", [case[1] for case in CASES], ids=[case[0] for case in CASES])
def test_httptools_answers_each_case_as_h11_byte_by_byte(wire: bytes) -> None:
    """Fed one byte at a time, heads and bodies straddle every read boundary."""
    chunks = [wire[i : i + 1] for i in range(len(wire))]
    assert answer("httptools", chunks) == answer("h11", chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    case=st.sampled_from([case[1] for case in CASES]),
    edits=st.lists(
        st.tuples(st.integers(0, 400), st.sampled_from([b"\r", b"\n", b" ", b"\t", b",", b"0"])),
        max_size=3,
    ),
    cut=st.integers(1, 64),
)
def test_httptools_answers_mutated_cases_as_h11(
    case: bytes, edits: list[tuple[int, bytes]], cut: int
) -> None:
    """Near misses of each case (a CR, LF, space or comma put in) get the same answer."""
    wire = bytearray(case)
    for at, byte in edits:
        wire[at % (len(wire) + 1) : at % (len(wire) + 1)] = byte
    chunks = [bytes(wire[i : i + cut]) for i in range(0, len(wire), cut)]
    assert answer("httptools", chunks) == answer("h11", chunks)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(wire=st.binary(max_size=200), head_limit=st.sampled_from([16, 64, 16 * 1024]))
def test_httptools_answers_any_bytes_as_h11(wire: bytes, head_limit: int) -> None:
    prefix = b"GET / HTTP/1.1\r\nHost: a\r\n"
    for data in (wire, prefix + wire):
        assert answer("httptools", [data], h11_max_incomplete_size=head_limit) == answer(
            "h11", [data], h11_max_incomplete_size=head_limit
        )


#: Pieces of requests, good and bad, for heads and bodies built at random.
PIECES = [
    b"GET / HTTP/1.1",
    b"POST /p HTTP/1.1",
    b"HEAD / HTTP/1.0",
    b"GET / HTTP/1.0",
    b"OPTIONS * HTTP/1.1",
    b"BREW / HTTP/1.1",
    b"GET http://a/ HTTP/1.1",
    b"\r\n",
    b"\n",
    b"\r",
    b" ",
    b"\t",
    b"Host: a",
    b"host:b",
    b"Content-Length: 3",
    b"Content-Length: 0",
    b"content-length: 3, 3",
    b"Content-Length: 1x",
    b"Transfer-Encoding: chunked",
    b"Transfer-Encoding: gzip",
    b"Connection: close",
    b"Connection: keep-alive",
    b"Connection: Upgrade",
    b"Upgrade: websocket",
    b"Upgrade: h2c",
    b"Expect: 100-continue",
    b"X: \x01\x7f\x80",
    b"3",
    b"0",
    b"3;e=1",
    b"abc",
    b"ffffffffffffffffffff",
]


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    pieces=st.lists(st.sampled_from(PIECES), max_size=30),
    cut=st.integers(1, 64),
    head_limit=st.sampled_from([32, 16 * 1024]),
)
def test_httptools_answers_requests_built_from_pieces_as_h11(
    pieces: list[bytes], cut: int, head_limit: int
) -> None:
    wire = b"".join(pieces)
    chunks = [wire[i : i + cut] for i in range(0, len(wire), cut)]
    assert answer("httptools", chunks, h11_max_incomplete_size=head_limit) == answer(
        "h11", chunks, h11_max_incomplete_size=head_limit
    )
