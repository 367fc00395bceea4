"""Each place tricorn reaches beneath h2's public API still does its job.

These fail if an h2 release moves what ``_protocol/h2_seams.py`` relies on,
so a defence can never switch itself off quietly with a new h2.
"""

from __future__ import annotations

import h2.config
import h2.connection
import h2.events
from hyperframe.frame import DataFrame, HeadersFrame

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
