"""Each place tricorn reaches beneath h2's public API still does its job.

These fail if an h2 release moves what ``_protocol/h2_seams.py`` relies on,
so a defence can never switch itself off quietly with a new h2.
"""

from __future__ import annotations

from typing import Any

import h2.config
import h2.connection
import h2.events
import pytest
from hpack import Decoder, Encoder, NeverIndexedHeaderTuple, OversizedHeaderListError
from hyperframe.frame import DataFrame, HeadersFrame
from hypothesis import given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from tricorn._protocol import h2_seams

from ._h2client import request_headers


def _server() -> h2_seams.CountingH2Connection:
    server = h2_seams.CountingH2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    server.receive_data(_client().data_to_send())
    return server


def _client() -> h2.connection.H2Connection:
    client = h2.connection.H2Connection(
        h2.config.H2Configuration(client_side=True, header_encoding=None)
    )
    client.initiate_connection()
    return client


def test_the_installed_h2_has_every_part_the_seams_use() -> None:
    h2_seams.check()  # raises ImportError naming what is missing


def test_frames_taken_in_without_an_event_are_counted() -> None:
    client = _client()
    server = h2_seams.CountingH2Connection(
        h2.config.H2Configuration(client_side=False, header_encoding=None)
    )
    server.initiate_connection()
    client.send_headers(1, request_headers(), end_stream=False)
    server.receive_data(client.data_to_send())
    server.reset_stream(1)
    counted = server.ignored_frames
    # A frame on a stream we reset is ignored by h2 (RFC 9113 5.4.2): no event.
    assert server.receive_data(DataFrame(1, b"late").serialize()) == []
    assert server.ignored_frames == counted + 1


def test_a_pending_frame_over_the_max_frame_size_is_seen_from_its_header() -> None:
    server = _server()
    header = HeadersFrame(1, b"x" * (server.max_inbound_frame_size + 1)).serialize()
    server.receive_data(header[:12])  # the 9-byte frame header and a little more
    assert h2_seams.oversized_frame_pending(server)


def test_a_header_block_awaiting_continuation_is_measured_in_bytes() -> None:
    server = _server()
    block = HeadersFrame(1, b"\x82" * 100)  # END_HEADERS not set: CONTINUATIONs follow
    server.receive_data(block.serialize())
    assert h2_seams.pending_header_block(server) == 100


def test_after_a_graceful_goaway_in_flight_streams_can_still_answer() -> None:
    server = _server()
    client = _client()
    client.data_to_send()
    client.send_headers(1, request_headers(), end_stream=True)
    client.close_connection(last_stream_id=0)  # GOAWAY(NO_ERROR)
    server.receive_data(client.data_to_send())
    h2_seams.reopen_after_graceful_goaway(server)
    server.send_headers(1, [(b":status", b"200")], end_stream=True)  # h2 would refuse
    assert server.data_to_send()


def test_a_graceful_goaway_names_the_last_stream_and_reads_as_no_error() -> None:
    server = _server()
    client = _client()
    client.data_to_send()
    client.send_headers(1, request_headers(), end_stream=True)
    server.receive_data(client.data_to_send())
    events = client.receive_data(server.data_to_send() + h2_seams.graceful_goaway(server))
    [goaway] = [event for event in events if isinstance(event, h2.events.ConnectionTerminated)]
    assert goaway.error_code == 0
    assert goaway.last_stream_id == 1


def test_compact_settings_behave_as_h2s_own() -> None:
    from h2.settings import SettingCodes, Settings

    from tricorn._protocol.h2_seams import CompactSettings

    initial = {SettingCodes.MAX_CONCURRENT_STREAMS: 10}
    theirs, ours = (
        Settings(client=False, initial_values=initial),
        CompactSettings(client=False, initial_values=initial),
    )
    for settings in (theirs, ours):
        settings[SettingCodes.INITIAL_WINDOW_SIZE] = 1000  # proposed, not yet in force
        settings[SettingCodes.MAX_HEADER_LIST_SIZE] = 5000  # a key that was not there
    for settings in (theirs, ours):
        assert settings.initial_window_size == 65535  # until acknowledged
        assert settings.get(SettingCodes.MAX_HEADER_LIST_SIZE) is None
    changed_theirs, changed_ours = theirs.acknowledge(), ours.acknowledge()
    assert {k: (c.original_value, c.new_value) for k, c in changed_ours.items()} == {
        k: (c.original_value, c.new_value) for k, c in changed_theirs.items()
    }
    assert dict(ours) == dict(theirs)
    assert ours.initial_window_size == 1000
    assert ours.max_header_list_size == 5000


# -- HPACK blocks remembered -------------------------------------------------------

_FIELDS = st.sampled_from(
    [
        (b":status", b"200"),
        (b":status", b"404"),
        (b"content-type", b"text/plain"),
        (b"content-length", b"13"),
        (b"server", b"tricorn"),
        (b"date", b"Mon, 07 Dec 2026 12:00:00 GMT"),
        (b"date", b"Mon, 07 Dec 2026 12:00:01 GMT"),
        (b"x-long", b"v" * 600),  # over a 256-byte table
        (b"authorization", b"secret"),
    ]
)
#: A step: a header list to encode, or a new table size (from the peer's SETTINGS).
_STEPS = st.lists(
    st.one_of(st.lists(_FIELDS, min_size=1, max_size=6), st.sampled_from([0, 256, 4096])),
    max_size=30,
)


def _sensitive(fields: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    return [
        NeverIndexedHeaderTuple(*field) if field[0] == b"authorization" else field
        for field in fields
    ]


@hypothesis_settings(deadline=None)
@given(_STEPS)
def test_remembered_blocks_are_the_bytes_hpack_would_make(steps: list[Any]) -> None:
    caching, plain = h2_seams.CachingEncoder(), Encoder()
    remembering, decoder = h2_seams.CachingDecoder(), Decoder()
    for step in steps * 2:  # the second round meets what the first left in the tables
        if isinstance(step, int):
            # Setting the size it has is skipped: hpack would then forget a
            # change not yet announced (h2 sets it only when SETTINGS change it).
            if step != plain.header_table_size:
                caching.header_table_size = plain.header_table_size = step
            continue
        fields = _sensitive(step)
        block = caching.encode(list(fields))
        assert block == plain.encode(list(fields))
        assert remembering.decode(block, raw=True) == decoder.decode(block, raw=True)


def test_a_never_indexed_field_is_never_served_from_memory() -> None:
    encoder = h2_seams.CachingEncoder()
    fields = [(b":status", b"200"), (b"authorization", b"secret")]
    sensitive = _sensitive(fields)
    for _ in range(3):
        decoded = Decoder().decode(encoder.encode(list(sensitive)), raw=True)
        assert isinstance(decoded[1], NeverIndexedHeaderTuple)
    assert all(name != b"authorization" for name, _ in encoder.header_table.dynamic_entries)
    # Its indexable twin, remembered, does not stand in for it either.
    plain = Encoder()
    for _ in range(3):
        assert encoder.encode(list(fields)) == plain.encode(list(fields))
    assert encoder.encode(list(sensitive)) == plain.encode(list(sensitive))


def test_a_remembered_block_is_checked_against_a_lowered_limit() -> None:
    encoder, decoder = Encoder(), h2_seams.CachingDecoder()
    fields = [(b":method", b"GET"), (b"x-big", b"v" * 200)]
    decoder.decode(encoder.encode(fields), raw=True)
    block = encoder.encode(fields)  # indexed now: decoding leaves the table alone
    assert decoder.decode(block, raw=True) == decoder.decode(block, raw=True)
    decoder.max_header_list_size = 100
    with pytest.raises(OversizedHeaderListError):
        decoder.decode(block, raw=True)


def test_an_h2_connection_encodes_and_decodes_through_the_remembering_coders() -> None:
    server = _server()
    assert isinstance(server.encoder, h2_seams.CachingEncoder)
    assert isinstance(server.decoder, h2_seams.CachingDecoder)
