"""Write the seed corpus for fuzz_http1.py into fuzz/corpus/http1/.

Each seed is raw HTTP followed by the control trailer fuzz_http1.py reads
from the end of its input (flags, limits, split points). Re-run after
changing the trailer layout: ``python fuzz/make_corpus.py``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_http1 as harness

CORPUS = Path(__file__).resolve().parent / "corpus" / "http1"


def encode(
    http: bytes,
    *,
    flags: int = 0,
    head_limit: int | None = None,
    body_limit: int | None = None,
    splits: tuple[int, ...] = (),
) -> bytes:
    """``http`` plus the trailer that makes the harness read back these choices."""
    if head_limit is not None:
        flags |= harness._SMALL_HEAD
    if body_limit is not None:
        flags |= harness._BODY_LIMIT
    assert len(splits) <= 15
    # In the order the harness consumes them; each integer is read from the
    # end of the input, most significant byte first.
    fields = [flags.to_bytes(1, "little")]
    if head_limit is not None:
        fields.append((head_limit - 1).to_bytes(2, "little"))
    if body_limit is not None:
        fields.append(body_limit.to_bytes(2, "little"))
    fields.append(len(splits).to_bytes(1, "little"))
    fields.extend(size.to_bytes(2, "little") for size in splits)
    data = http + b"".join(reversed(fields))

    provider = harness.PurePythonDataProvider(data)
    assert provider.ConsumeIntInRange(0, 255) == flags
    if head_limit is not None:
        assert provider.ConsumeIntInRange(1, 4096) == head_limit
    if body_limit is not None:
        assert provider.ConsumeIntInRange(0, 4096) == body_limit
    assert provider.ConsumeIntInRange(0, 15) == len(splits)
    assert [provider.ConsumeIntInRange(0, 65535) for _ in splits] == list(splits)
    assert provider.ConsumeBytes(provider.remaining_bytes()) == http
    return data


GET = b"GET /index.html?q=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n"
POST = b"POST /form HTTP/1.1\r\nHost: example.com\r\nContent-Length: 11\r\n\r\nhello world"
CHUNKED = (
    b"POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\n\r\n"
    b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\nx-trailer: yes\r\n\r\n"
)

SEEDS: dict[str, bytes] = {
    "get": encode(GET),
    "get_split": encode(GET, splits=(3, 20, 1)),
    "head": encode(b"HEAD / HTTP/1.1\r\nHost: a\r\n\r\n"),
    "post_content_length": encode(POST, splits=(40,)),
    "post_chunked": encode(CHUNKED, splits=(70, 9)),
    "pipelined": encode(GET + POST + CHUNKED + GET),
    "pipelined_stop_keep_alive": encode(
        GET + GET + GET, flags=harness._STOP_KEEP_ALIVE, splits=(10, 60)
    ),
    "pipelined_early_response": encode(POST + CHUNKED, flags=harness._EARLY_RESPONSE),
    "http10": encode(
        b"GET /old HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
        flags=harness._CHUNKED_RESPONSE | harness._EOF,
    ),
    "connection_close": encode(b"GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" + GET),
    "expect_100": encode(
        b"PUT /big HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\nbody",
        flags=harness._CONTINUE,
        splits=(68,),
    ),
    "bad_request_line": encode(b"GET /\x00 HTTP/1.1\r\nHost: a\r\n\r\n"),
    "bad_header": encode(b"GET / HTTP/1.1\r\nHost: a\r\nbad header: x\r\n\r\n"),
    "huge_header": encode(
        b"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + b"v" * 6000 + b"\r\n\r\n",
        head_limit=1024,
        splits=(512,) * 12,
    ),
    "long_request_line": encode(
        b"GET /" + b"a" * 3000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", head_limit=1024, splits=(512,) * 6
    ),
    "body_limit_content_length": encode(POST, body_limit=10),
    "body_limit_chunked": encode(CHUNKED, body_limit=8, splits=(80,)),
    "eof_mid_body": encode(POST[:-4], flags=harness._EOF),
    "eof_mid_head": encode(GET[:20], flags=harness._EOF),
    "absolute_form_and_options": encode(
        b"GET http://example.com/x?y HTTP/1.1\r\nHost: example.com\r\n\r\n"
        b"OPTIONS * HTTP/1.1\r\nHost: example.com\r\n\r\n"
    ),
    "bare_lf_and_obs_fold": encode(b"GET / HTTP/1.1\nHost: a\nX-Fold: one\n  two\n\n"),
}


def main() -> None:
    CORPUS.mkdir(parents=True, exist_ok=True)
    for name, data in SEEDS.items():
        (CORPUS / name).write_bytes(data)
        harness.test_one_input(data)  # a seed must not crash the harness itself
    print(f"wrote {len(SEEDS)} seeds to {CORPUS}")


if __name__ == "__main__":
    main()
