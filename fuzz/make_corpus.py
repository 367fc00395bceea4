"""Write the seed corpora of the fuzz harnesses into fuzz/corpus/<name>/.

An http1 seed is raw HTTP followed by the control trailer fuzz_http1.py
reads from the end of its input (flags, limits, split points). A websocket
seed is an options byte, client frames and the trailer fuzz_websocket.py
reads (split points and the command after each). An http2 seed is an options
byte and either the client's bytes after the preface with fuzz_http2.py's
split-point trailer, or (frames mode) its frame records. Re-run after changing
a layout: ``python fuzz/make_corpus.py``.
"""

from __future__ import annotations

import struct
import sys
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import fuzz_http1 as harness
import fuzz_http2 as h2_harness
import fuzz_websocket as ws_harness
import hpack
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    Frame,
    GoAwayFrame,
    HeadersFrame,
    PingFrame,
    PriorityFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from wsproto import frame_protocol
from wsproto.extensions import PerMessageDeflate
from wsproto.frame_protocol import FrameProtocol

CORPUS = Path(__file__).resolve().parent / "corpus" / "http1"
WS_CORPUS = Path(__file__).resolve().parent / "corpus" / "websocket"
H2_CORPUS = Path(__file__).resolve().parent / "corpus" / "http2"


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


# -- websocket ---------------------------------------------------------------

#: RFC 6455 5.7's masking key, so the seeds come out the same on every run.
MASK = b"\x37\xfa\x21\x3d"


class _FixedMaskOS:
    @staticmethod
    def urandom(count: int) -> bytes:
        return MASK[:count]


@contextmanager
def _fixed_mask() -> Iterator[None]:
    """wsproto masks with os.urandom; a fixed key keeps the corpus reproducible."""
    real = frame_protocol.os
    frame_protocol.os = _FixedMaskOS  # type: ignore[assignment]
    try:
        yield
    finally:
        frame_protocol.os = real


def client(deflate: str | None = None) -> FrameProtocol:
    """wsproto's client frame layer, with permessage-deflate as the server accepted it."""
    extensions = []
    if deflate is not None:
        extension = PerMessageDeflate()
        extension.finalize(deflate)
        extensions.append(extension)
    return FrameProtocol(client=True, extensions=extensions)


def frames(proto: FrameProtocol, *items: tuple[str, object] | bytes) -> bytes:
    """Serialize ("text"|"bytes", data), ("ping"|"pong", payload), ("close", (code, reason)),
    ("part", (data, fin)) through wsproto's client; raw bytes pass through as they are."""
    out = bytearray()
    with _fixed_mask():
        for item in items:
            if isinstance(item, bytes):
                out += item
                continue
            kind, value = item
            if kind in ("text", "bytes"):
                assert isinstance(value, (str, bytes))
                out += proto.send_data(value, fin=True)
            elif kind == "part":
                assert isinstance(value, tuple)
                out += proto.send_data(value[0], fin=value[1])
            elif kind == "ping":
                assert isinstance(value, bytes)
                out += proto.ping(value)
            elif kind == "pong":
                assert isinstance(value, bytes)
                out += proto.pong(value)
            elif kind == "close":
                assert isinstance(value, tuple)
                out += proto.close(*value)
            else:
                raise ValueError(kind)
    return bytes(out)


def raw_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv: int = 0,
    masked: bool = True,
    length: int | None = None,
    length_form: int | None = None,
) -> bytes:
    """A frame built by hand, for what a real client refuses to write.

    ``length`` announces a payload length other than the real one;
    ``length_form`` forces the 7-bit (0), 16-bit (126) or 64-bit (127) form.
    """
    announced = len(payload) if length is None else length
    if length_form is None:
        length_form = 0 if announced < 126 else 126 if announced < 65536 else 127
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    mask_bit = 0x80 if masked else 0
    if length_form == 0:
        head += bytes([mask_bit | announced])
    elif length_form == 126:
        head += bytes([mask_bit | 126]) + struct.pack("!H", announced)
    else:
        head += bytes([mask_bit | 127]) + struct.pack("!Q", announced)
    if not masked:
        return head + payload
    return head + MASK + bytes(byte ^ MASK[i % 4] for i, byte in enumerate(payload))


def deflated(data: bytes, *, final: bool = False, wbits: int = 15) -> bytes:
    """A message body as permessage-deflate sends it (RFC 7692 7.2.1).

    ``final`` ends it with a BFINAL block instead of a sync flush, which
    RFC 7692 7.2.1 allows (example in 7.2.3.4).
    """
    compressor = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -wbits)
    if final:
        return compressor.compress(data) + compressor.flush(zlib.Z_FINISH)
    body = compressor.compress(data) + compressor.flush(zlib.Z_SYNC_FLUSH)
    assert body.endswith(b"\x00\x00\xff\xff")
    return body[:-4]


def ws_encode(
    stream: bytes,
    *,
    offer: int = 0,
    flags: int = 0,
    plan: tuple[tuple[int, int], ...] = (),
) -> bytes:
    """The options byte, ``stream`` and the trailer: (chunk length, action) per split point."""
    assert 0 <= offer <= ws_harness._OFFER_MASK
    assert len(plan) <= 15
    options = offer | flags
    # In the order the harness consumes them, each read from the end of the
    # input, most significant byte first.
    fields = [len(plan).to_bytes(1, "little")]
    for size, action in plan:
        fields.append(size.to_bytes(2, "little"))
        fields.append(action.to_bytes(1, "little"))
    data = bytes([options]) + stream + b"".join(reversed(fields))

    provider = harness.PurePythonDataProvider(data)
    assert provider.ConsumeBytes(1) == bytes([options])
    assert provider.ConsumeIntInRange(0, 15) == len(plan)
    assert [
        (provider.ConsumeIntInRange(0, 65535), provider.ConsumeIntInRange(0, 255)) for _ in plan
    ] == list(plan)
    assert provider.ConsumeBytes(provider.remaining_bytes()) == stream
    return data


def action(kind: int, parameter: int = 0) -> int:
    assert 0 <= parameter < 32
    return kind | parameter << 3


TEXT, BINARY, PING, CLOSE = (
    ws_harness._TEXT,
    ws_harness._BINARY,
    ws_harness._PING,
    ws_harness._CLOSE,
)
# Offers, as indexes into fuzz_websocket.OFFERS.
PLAIN, NO_CONTEXT, WINDOW_9, WINDOW_8 = 1, 2, 3, 6
DEFLATE = "permessage-deflate"
NO_CONTEXT_ACCEPTED = "permessage-deflate; client_no_context_takeover; server_no_context_takeover"


def _ws_seeds() -> dict[str, bytes]:
    hello = frames(client(), ("text", "Hello, tricorn \u00e9\U0001f600"))
    fragmented = frames(
        client(),
        ("part", ("Hel", False)),
        ("ping", b"between fragments"),
        ("part", ("lo ", False)),
        ("part", ("w\u00f6rld", True)),
        ("part", (b"\x00\x01", False)),
        ("part", (b"\x02" * 300, True)),
    )
    compressed = client(DEFLATE)
    two_compressed = frames(
        compressed,
        ("text", "compress me " * 40),
        ("text", "compress me " * 40 + "again"),
        ("bytes", bytes(range(256)) * 8),
    )
    no_context = frames(
        client(NO_CONTEXT_ACCEPTED),
        ("text", "no context " * 50),
        ("text", "no context " * 50),
        ("part", ("frag" * 100, False)),
        ("part", ("ment" * 100, True)),
    )
    control = frames(
        client(),
        ("ping", b""),
        ("ping", b"x" * 125),
        ("pong", b"unsolicited"),
        ("bytes", bytes(range(256)) * 2),
    )
    bye = frames(client(), ("close", (1000, "bye")))
    # Two fragments that inflate past the limit together, not alone.
    zeros = deflated(b"\x00" * (ws_harness.MAX_MESSAGE_SIZE + 1000))
    half = bytes(range(256)) * (ws_harness.MAX_MESSAGE_SIZE // 512)
    seeds = {
        "text_ping_pong_binary": ws_encode(hello + control + bye),
        "fragmented_byte_by_byte": ws_encode(
            hello
            + frames(client(), ("part", (b"\x01" * 10, False)), ("part", (b"\x02" * 150, True)))
            + bye,
            flags=ws_harness._SMALL_LIMIT | ws_harness._BYTE_BY_BYTE,
        ),
        "binary_at_the_limit": ws_encode(
            frames(client(DEFLATE), ("bytes", b"\xab" * ws_harness.MAX_MESSAGE_SIZE)),
            offer=PLAIN,
        ),
        "fragmented_with_ping_small_limit": ws_encode(
            fragmented + bye, flags=ws_harness._SMALL_LIMIT, plan=((7, 0), (30, 0), (9, 0))
        ),
        "pipelined_behind_handshake": ws_encode(hello + hello, flags=ws_harness._PIPELINED),
        "subprotocol_and_commands": ws_encode(
            hello * 3 + bye,
            flags=ws_harness._SUBPROTOCOL,
            plan=(
                (len(hello), action(TEXT, 3)),
                (len(hello), action(BINARY, 2)),
                (0, action(PING, 5)),
                (len(hello), action(CLOSE, 0)),
            ),
        ),
        "server_closes_first": ws_encode(
            hello * 2 + bye,
            plan=((len(hello), action(CLOSE, 12)), (2, action(TEXT, 1)), (0, action(PING, 1))),
        ),
        "eof_without_close": ws_encode(hello, flags=ws_harness._EOF),
        # permessage-deflate
        "deflate_two_messages": ws_encode(two_compressed + bye, offer=PLAIN),
        "deflate_no_context_takeover": ws_encode(
            no_context + bye, offer=NO_CONTEXT, plan=((30, action(TEXT, 20)),)
        ),
        "deflate_window_9": ws_encode(
            frames(client(DEFLATE + "; server_max_window_bits=9"), ("text", "window " * 300)) + bye,
            offer=WINDOW_9,
            plan=((0, action(TEXT, 31)), (0, action(BINARY, 20)), (0, action(TEXT, 31))),
        ),
        "deflate_window_8_uncompressed_answers": ws_encode(
            two_compressed, offer=WINDOW_8, plan=((0, action(TEXT, 4)),)
        ),
        "deflate_offered_message_plain": ws_encode(hello + hello + bye, offer=PLAIN),
        "deflate_split_fragments": ws_encode(
            raw_frame(0x1, deflated(b"split " * 500)[:40], fin=False, rsv=4)
            + raw_frame(0x0, deflated(b"split " * 500)[40:])
            + bye,
            offer=PLAIN,
            plan=((20, 0), (31, 0)),
        ),
        "deflate_bomb": ws_encode(
            raw_frame(0x2, deflated(b"\x00" * (4 * ws_harness.MAX_MESSAGE_SIZE)), rsv=4),
            offer=PLAIN,
        ),
        "deflate_just_over_limit": ws_encode(
            raw_frame(0x2, deflated(b"\x01" * (ws_harness.MAX_MESSAGE_SIZE + 1)), rsv=4),
            offer=PLAIN,
        ),
        "deflate_corrupt": ws_encode(
            raw_frame(0x1, b"\xff\xff\xff\xff not deflate", rsv=4), offer=PLAIN
        ),
        "deflate_bfinal_then_more": ws_encode(
            raw_frame(0x1, deflated(b"first", final=True), rsv=4)
            + raw_frame(0x1, deflated(b"second"), rsv=4),
            offer=NO_CONTEXT,
        ),
        "deflate_rsv1_on_continuation": ws_encode(
            raw_frame(0x1, deflated(b"a"), fin=False, rsv=4) + raw_frame(0x0, b"", rsv=4),
            offer=PLAIN,
        ),
        # invalid UTF-8
        "utf8_invalid": ws_encode(raw_frame(0x1, b"caf\xc3\x28")),
        "utf8_split_across_fragments": ws_encode(
            raw_frame(0x1, b"\xe2\x82", fin=False) + raw_frame(0x0, b"\xac ok") + bye
        ),
        "utf8_truncated_at_end": ws_encode(
            raw_frame(0x1, b"ok\xe2\x82", fin=False) + raw_frame(0x0, b"")
        ),
        "utf8_surrogate": ws_encode(raw_frame(0x1, b"\xed\xa0\x80")),
        "utf8_invalid_compressed": ws_encode(
            raw_frame(0x1, deflated(b"\xc0\xaf"), rsv=4), offer=PLAIN
        ),
        # framing violations
        "unmasked": ws_encode(raw_frame(0x1, b"hi", masked=False)),
        "rsv1_without_deflate": ws_encode(raw_frame(0x1, b"hi", rsv=4)),
        "reserved_opcodes": ws_encode(raw_frame(0x3, b"x") + raw_frame(0xB, b"")),
        "fragmented_ping": ws_encode(raw_frame(0x9, b"p", fin=False)),
        "ping_too_long": ws_encode(raw_frame(0x9, b"p" * 126)),
        "continuation_first": ws_encode(raw_frame(0x0, b"lost")),
        "new_message_mid_fragment": ws_encode(
            raw_frame(0x1, b"a", fin=False) + raw_frame(0x1, b"b")
        ),
        "length_not_minimal_16": ws_encode(raw_frame(0x2, b"x" * 5, length_form=126)),
        "length_64bit_msb": ws_encode(raw_frame(0x2, b"", length=1 << 63, length_form=127)),
        "length_huge": ws_encode(raw_frame(0x2, b"abc", length=1 << 40)),
        "length_over_limit_16": ws_encode(
            raw_frame(0x1, b"", length=ws_harness.MAX_MESSAGE_SIZE + 1)
        ),
        "fragments_over_limit_deflated": ws_encode(
            raw_frame(0x2, zeros[:20], fin=False, rsv=4) + raw_frame(0x0, zeros[20:]),
            offer=PLAIN,
        ),
        "fragments_at_the_limit": ws_encode(
            raw_frame(0x2, half, fin=False) + raw_frame(0x0, half) + bye,
            plan=((1000, 0), (40000, 0)),
        ),
        # close frames
        "close_empty": ws_encode(raw_frame(0x8, b"")),
        "close_one_byte": ws_encode(raw_frame(0x8, b"\x03")),
        "close_reason_invalid_utf8": ws_encode(raw_frame(0x8, struct.pack("!H", 1000) + b"\xff")),
        "close_then_garbage": ws_encode(bye + b"\xff" * 20),
    }
    for code in (1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014):
        seeds[f"close_{code}"] = ws_encode(raw_frame(0x8, struct.pack("!H", code) + b"reason"))
    for code in (3000, 4999):
        seeds[f"close_{code}"] = ws_encode(frames(client(), ("close", (code, "app code"))))
    for code in (1004, 1005, 1006, 5000):
        seeds[f"close_invalid_{code}"] = ws_encode(raw_frame(0x8, struct.pack("!H", code)))
    return seeds


WS_SEEDS: dict[str, bytes] = _ws_seeds()


# -- http2 -------------------------------------------------------------------


def h2_encode(stream: bytes, *, flags: int = 0, splits: tuple[int, ...] = ()) -> bytes:
    """Raw mode: the options byte, the client's bytes after the preface, the split trailer."""
    assert not flags & h2_harness._FRAMES
    assert len(splits) <= 15
    fields = [len(splits).to_bytes(1, "little")]
    fields.extend(size.to_bytes(2, "little") for size in splits)
    data = bytes([flags]) + stream + b"".join(reversed(fields))

    provider = harness.PurePythonDataProvider(data)
    assert provider.ConsumeBytes(1) == bytes([flags])
    assert provider.ConsumeIntInRange(0, 15) == len(splits)
    assert [provider.ConsumeIntInRange(0, 65535) for _ in splits] == list(splits)
    assert provider.ConsumeBytes(provider.remaining_bytes()) == stream
    return data


def h2_records(*records: tuple[int, int, int, bytes], flags: int = 0) -> bytes:
    """Frames mode: the options byte and (kind, stream selector, flags, payload) records."""
    out = bytearray([flags | h2_harness._FRAMES])
    for kind, selector, frame_flags, payload in records:
        out += bytes([kind, selector, frame_flags]) + len(payload).to_bytes(2, "big") + payload
    return bytes(out)


def wire(*frames: Frame | bytes) -> bytes:
    return b"".join(frame if isinstance(frame, bytes) else frame.serialize() for frame in frames)


def request(
    encoder: hpack.Encoder,
    stream_id: int,
    path: str = "/",
    *extra: tuple[str, str],
    method: str = "GET",
    end_stream: bool = True,
) -> HeadersFrame:
    headers = [(":method", method), (":scheme", "http"), (":authority", "example.com")]
    headers.append((":path", path))
    if method == "CONNECT" and not extra:
        # A plain CONNECT has neither :scheme nor :path (RFC 9113 8.5).
        headers = [(":method", method), (":authority", "example.com:443")]
    block = encoder.encode([*headers, *extra])
    flags = ["END_HEADERS", "END_STREAM"] if end_stream else ["END_HEADERS"]
    return HeadersFrame(stream_id, data=block, flags=flags)


def _h2_seeds() -> dict[str, bytes]:
    h2 = h2_harness
    ack = SettingsFrame(0, flags=["ACK"])
    seeds: dict[str, bytes] = {}

    e = hpack.Encoder()
    seeds["get"] = h2_encode(wire(ack, request(e, 1, "/index.html?q=1", ("accept", "*/*"))))
    e = hpack.Encoder()
    post = wire(
        request(e, 1, "/form", ("content-length", "11"), method="POST", end_stream=False),
        DataFrame(1, data=b"hello "),
        DataFrame(1, data=b"world", flags=["END_STREAM"]),
    )
    seeds["post_with_data"] = h2_encode(wire(ack) + post)
    seeds["post_split"] = h2_encode(wire(ack) + post, splits=(5, 9, 30, 1))
    seeds["post_early_response"] = h2_encode(wire(ack) + post, flags=h2._EARLY, splits=(60,))
    seeds["post_no_ack_small_window"] = h2_encode(
        wire(
            ack,
            request(hpack.Encoder(), 1, "/", method="POST", end_stream=False),
            DataFrame(1, data=b"x" * 100),
            DataFrame(1, data=b"x", flags=["END_STREAM"]),
        ),
        flags=h2._NO_ACK | h2._SMALL,
    )
    e = hpack.Encoder()
    seeds["padded_and_priority"] = h2_encode(
        wire(
            ack,
            request(e, 1, "/p", method="PUT", end_stream=False),
            DataFrame(1, data=b"pad", flags=["PADDED", "END_STREAM"], pad_length=20),
            PriorityFrame(3, depends_on=1, stream_weight=200, exclusive=True),
            HeadersFrame(
                5,
                data=e.encode(
                    [(":method", "GET"), (":scheme", "http"), (":authority", "a"), (":path", "/5")]
                ),
                flags=["END_HEADERS", "END_STREAM", "PRIORITY"],
                depends_on=1,
                stream_weight=10,
            ),
        )
    )
    e = hpack.Encoder()
    seeds["three_streams_trailers"] = h2_encode(
        wire(ack, request(e, 1, "/a"), request(e, 3, "/b"), request(e, 5, "/c")),
        flags=h2._TRAILERS,
    )
    e = hpack.Encoder()
    block = e.encode(
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":authority", "example.com"),
            (":path", "/continued"),
            ("cookie", "a=1"),
            ("cookie", "b=2"),
            ("x-long", "l" * 300),
        ]
    )
    seeds["continuation"] = h2_encode(
        wire(
            ack,
            HeadersFrame(1, data=block[:10], flags=["END_STREAM"]),
            ContinuationFrame(1, data=block[10:100]),
            ContinuationFrame(1, data=block[100:], flags=["END_HEADERS"]),
        )
    )
    e = hpack.Encoder()
    seeds["request_trailers"] = h2_encode(
        wire(
            ack,
            request(e, 1, "/t", ("te", "trailers"), method="POST", end_stream=False),
            DataFrame(1, data=b"body"),
            HeadersFrame(1, data=e.encode([("x-sum", "1")]), flags=["END_HEADERS", "END_STREAM"]),
        )
    )
    seeds["big_body_window_updates"] = h2_encode(
        wire(
            ack,
            request(hpack.Encoder(), 1, "/big"),
            *[WindowUpdateFrame(1, window_increment=30000) for _ in range(3)],
            WindowUpdateFrame(0, window_increment=100000),
        ),
        flags=h2._BIG_BODY,
        splits=(60, 13, 13),
    )
    seeds["settings_window_shrink"] = h2_encode(
        wire(
            ack,
            SettingsFrame(0, settings={0x4: 10, 0x5: 20000}),
            request(hpack.Encoder(), 1, "/big"),
            WindowUpdateFrame(1, window_increment=50),
            SettingsFrame(0, settings={0x4: 200000}),
        ),
        flags=h2._BIG_BODY | h2._TRAILERS,
        splits=(40, 30),
    )
    seeds["ping_priority_unknown"] = h2_encode(
        wire(
            ack,
            PingFrame(0, opaque_data=b"12345678"),
            PingFrame(0, opaque_data=b"87654321", flags=["ACK"]),
            PriorityFrame(1, depends_on=0, stream_weight=16),
            b"\x00\x00\x03\xfa\x00\x00\x00\x00\x00abc",
        )
    )
    seeds["goaway_graceful_with_stream"] = h2_encode(
        wire(ack, request(hpack.Encoder(), 1, "/"), GoAwayFrame(0, last_stream_id=0)),
        flags=h2._EARLY,
    )
    seeds["goaway_error"] = h2_encode(wire(GoAwayFrame(0, last_stream_id=0, error_code=2)))
    e = hpack.Encoder()
    seeds["shutdown_in_flight"] = h2_encode(
        wire(request(e, 1, "/", method="POST", end_stream=False), DataFrame(1, data=b"a"))
        + wire(request(e, 3, "/"), DataFrame(1, data=b"b", flags=["END_STREAM"])),
        flags=h2._SHUTDOWN,
        splits=(40,),
    )
    e = hpack.Encoder()
    rapid = b"".join(
        wire(request(e, stream_id, "/slow"), RstStreamFrame(stream_id, error_code=8))
        for stream_id in range(1, 40, 2)
    )
    seeds["rapid_reset"] = h2_encode(rapid, flags=h2._SMALL, splits=(50, 50, 50))
    e = hpack.Encoder()
    seeds["made_you_reset"] = h2_encode(
        b"".join(
            wire(request(e, stream_id), DataFrame(stream_id, data=b"x"))
            for stream_id in range(1, 30, 2)
        ),
        flags=h2._SMALL | h2._NO_ACK,
    )
    e = hpack.Encoder()
    seeds["window_overflow"] = h2_encode(
        wire(request(e, 1), WindowUpdateFrame(1, window_increment=2**31 - 1), request(e, 3))
    )
    seeds["connection_window_overflow"] = h2_encode(
        wire(WindowUpdateFrame(0, window_increment=2**31 - 1))
    )
    seeds["zero_window_update"] = h2_encode(
        wire(request(hpack.Encoder(), 1), WindowUpdateFrame(1, window_increment=0))
    )
    seeds["continuation_flood"] = h2_encode(
        wire(
            HeadersFrame(1, data=b"\x82", flags=["END_STREAM"]),
            *[ContinuationFrame(1, data=b"\x00") for _ in range(70)],
        )
    )
    e = hpack.Encoder()
    bomb = e.encode(
        [
            (":method", "GET"),
            (":scheme", "http"),
            (":path", "/"),
            (":authority", "example.com"),
            ("x-bomb", "b" * 4000),
        ]
    )
    seeds["hpack_bomb"] = h2_encode(
        wire(HeadersFrame(1, data=bomb + b"\xbe" * 8000, flags=["END_HEADERS", "END_STREAM"]))
    )
    e = hpack.Encoder()
    # Over SMALL's 200-byte limit, under twice that: decoded, answered 431.
    seeds["header_list_431_then_get"] = h2_encode(
        wire(request(e, 1, "/", ("x-big", "v" * 100)), request(e, 3, "/")), flags=h2._SMALL
    )
    seeds["oversized_frame_header"] = h2_encode(
        wire(request(hpack.Encoder(), 1, method="POST", end_stream=False))
        + (2**24 - 1).to_bytes(3, "big")
        + b"\x00\x00\x00\x00\x00\x01"
        + b"p" * 100
    )
    seeds["control_floods_small"] = h2_encode(
        wire(
            *[PingFrame(0, opaque_data=bytes(8)) for _ in range(6)],
            *[SettingsFrame(0, flags=["ACK"]) for _ in range(6)],
        ),
        flags=h2._SMALL,
    )
    e = hpack.Encoder()
    seeds["closed_stream_floods"] = h2_encode(
        wire(
            request(e, 1),
            *[RstStreamFrame(1, error_code=0) for _ in range(6)],
            *[WindowUpdateFrame(1, window_increment=1) for _ in range(6)],
        ),
        flags=h2._SMALL,
        splits=(30,),
    )
    # SMALL's windows are 100 bytes: each DATA is fed alone, so the window
    # the harness opens again (it acknowledges what it reads) lets the next in.
    e = hpack.Encoder()
    head = wire(request(e, 1, "/", method="POST", end_stream=False))
    chunk = wire(DataFrame(1, data=b"z" * 99))
    seeds["body_over_limit"] = h2_encode(
        head + chunk * 4 + wire(request(e, 3, "/", ("content-length", "1000"), method="POST")),
        flags=h2._SMALL,
        splits=(len(head), len(chunk), len(chunk), len(chunk)),
    )
    seeds["connection_header"] = h2_encode(
        wire(request(hpack.Encoder(), 1, "/", ("connection", "close")))
    )
    seeds["upper_case_header"] = h2_encode(wire(request(hpack.Encoder(), 1, "/", ("Upper", "x"))))
    seeds["content_length_mismatch"] = h2_encode(
        wire(
            request(
                hpack.Encoder(), 1, "/", ("content-length", "1"), method="POST", end_stream=False
            ),
            DataFrame(1, data=b"too long", flags=["END_STREAM"]),
        )
    )
    e = hpack.Encoder()
    head = wire(request(e, 1, "/", method="POST", end_stream=False))
    seeds["data_after_our_reset"] = h2_encode(
        head + wire(*[DataFrame(1, data=b"late") for _ in range(12)]),
        flags=h2._EARLY | h2._SMALL,
        splits=(len(head),),
    )
    seeds["priority_self_dependency"] = h2_encode(
        wire(request(hpack.Encoder(), 1), PriorityFrame(1, depends_on=1))
    )
    seeds["rst_idle_stream"] = h2_encode(wire(RstStreamFrame(7, error_code=0)))
    seeds["even_stream"] = h2_encode(wire(request(hpack.Encoder(), 2)))
    seeds["plain_connect_501"] = h2_encode(
        wire(request(hpack.Encoder(), 1, method="CONNECT", end_stream=False))
    )
    ws = frames(client(), ("text", "hello over h2"), ("ping", b"p"), ("close", (1000, "bye")))
    e = hpack.Encoder()
    connect = wire(
        ack,
        request(
            e,
            1,
            "/ws",
            (":protocol", "websocket"),
            ("sec-websocket-version", "13"),
            method="CONNECT",
            end_stream=False,
        ),
    )
    # The frames come once the handshake is accepted, after the first chunk.
    first = wire(DataFrame(1, data=ws[:10]))
    seeds["websocket"] = h2_encode(
        connect + first + wire(DataFrame(1, data=ws[10:])), splits=(len(connect), len(first))
    )
    seeds["websocket_reset"] = h2_encode(
        connect + wire(DataFrame(1, data=ws[:20]), RstStreamFrame(1, error_code=8)),
        splits=(len(connect),),
    )
    # A ping and a RST_STREAM in one read: h2 has closed the stream before
    # the pong is written (a crash the fuzzer found).
    seeds["websocket_ping_then_reset"] = h2_encode(
        connect
        + wire(
            DataFrame(1, data=frames(client(), ("ping", b"p"))), RstStreamFrame(1, error_code=8)
        ),
        splits=(len(connect),),
    )
    # DATA after the END_STREAM that ended the WebSocket abnormally: the
    # stream was reported reset twice (a bug the fuzzer found).
    seeds["websocket_data_after_end_stream"] = h2_encode(
        connect + wire(DataFrame(1, data=b"", flags=["END_STREAM"]), DataFrame(1, data=ws[:5])),
        splits=(len(connect),),
    )
    seeds["websocket_end_stream_without_close"] = h2_encode(
        connect + wire(DataFrame(1, data=ws[:20], flags=["END_STREAM"])),
        splits=(len(connect),),
    )
    seeds["eof_mid_frame"] = h2_encode(wire(request(hpack.Encoder(), 1))[:20], flags=h2._EOF)
    seeds["eof_with_stream_open"] = h2_encode(
        wire(request(hpack.Encoder(), 1, method="POST", end_stream=False)), flags=h2._EOF
    )
    # Frames mode: records the harness turns into frames.
    get, post = bytes([0]), bytes([1])
    seeds["records_get_and_post"] = h2_records(
        (h2.HEADERS, 0x80, 0x05, get),
        (h2.HEADERS, 0x00, 0x04, post),
        (h2.DATA, 0x81, 0x00, b"0123456789"[:5]),
        (h2.DATA, 0x81, 0x01, b"56789"),
        (h2.WINDOW_UPDATE, 0x83, 0x00, (1000).to_bytes(4, "big")),
        flags=h2._BIG_BODY,
    )
    seeds["records_controls"] = h2_records(
        (h2.SETTINGS, 0x83, 0x00, (4).to_bytes(2, "big") + (1).to_bytes(4, "big")),
        (h2.PING, 0x83, 0x00, b"pingpong"),
        (h2.PRIORITY, 0x80, 0x01, (0).to_bytes(4, "big") + b"\x10"),
        (h2.HEADERS, 0x80, 0x25, bytes([4])),
        (h2.RST_STREAM, 0x81, 0x00, (8).to_bytes(4, "big")),
        (h2.GOAWAY, 0x83, 0x00, bytes(8)),
    )
    seeds["records_websocket"] = h2_records(
        (h2.HEADERS, 0x80, 0x04, bytes([2])),
        (h2.DATA, 0x81, 0x00, ws),
        flags=h2._EOF,
    )
    seeds["records_raw_and_split_headers"] = h2_records(
        (h2.RAW, 0x83, 0xFF, b"\xfa" + b"unknown"),
        (h2.HEADERS, 0x80, 0x41, bytes([0x08, 0x00, 0x10])),
        (h2.CONTINUATION, 0x81, 0x04, b"\x82"),
        (h2.TRAILERS, 0x81, 0x05, b"t"),
        (h2.PUSH_PROMISE, 0x81, 0x00, bytes(4) + bytes([0])),
        flags=h2._SMALL,
    )
    seeds["records_hpack_bomb"] = h2_records((h2.HEADERS, 0x80, 0x05, bytes([0x18, 0x03, 0x00])))
    return seeds


H2_SEEDS: dict[str, bytes] = _h2_seeds()


def main() -> None:
    for corpus, seeds, run in (
        (CORPUS, SEEDS, harness.test_one_input),
        (WS_CORPUS, WS_SEEDS, ws_harness.test_one_input),
        (H2_CORPUS, H2_SEEDS, h2_harness.test_one_input),
    ):
        corpus.mkdir(parents=True, exist_ok=True)
        for name, data in seeds.items():
            (corpus / name).write_bytes(data)
            run(data)  # a seed must not crash the harness itself
        print(f"wrote {len(seeds)} seeds to {corpus}")


if __name__ == "__main__":
    main()
