"""HTTP/2 flow control on the way out: response data held for the peer's windows.

The app's body chunks are queued on their stream (:attr:`Stream.held`) and let
out as far as the stream's and the connection's windows admit, in frames no
larger than the peer allows; the rest waits for WINDOW_UPDATE. The end of a
response (END_STREAM, or trailers) goes out after its last byte.
"""

from __future__ import annotations

import h2.connection

from .http2_stream import Stream, StreamEvent

__all__ = ["OutboundFlow"]


class OutboundFlow:
    """Lets held response data out of one connection as the windows open."""

    __slots__ = ("_h2", "credit")

    def __init__(self, connection: h2.connection.H2Connection) -> None:
        self._h2 = connection
        #: WINDOW_UPDATEs the DATA frames we sent have earned: a client that
        #: reads our data owes them in step with it (RFC 9113 6.9), one for
        #: the stream and one for the connection, so they are not a flood.
        self.credit = 0

    def take_credit(self) -> bool:
        """Count one WINDOW_UPDATE against the credit; False once there is none."""
        if self.credit > 0:
            self.credit -= 1
            return True
        return False

    def let_out(self, streams: list[Stream]) -> list[Stream]:
        """Send what the windows admit now; the streams whose output is all out."""
        drained: list[Stream] = []
        for stream in streams:
            if stream.holds_output:
                self.let_out_stream(stream)
                if not stream.holds_output:
                    drained.append(stream)
        return drained

    def let_out_stream(self, stream: Stream) -> None:
        """Send as much of the stream's held output as its window admits."""
        stream_id = stream.stream_id
        while stream.held:
            window = min(
                self._h2.local_flow_control_window(stream_id), self._h2.max_outbound_frame_size
            )
            if window <= 0:
                return
            chunk = stream.held[0]
            if len(chunk) > window:
                stream.held[0] = chunk[window:]
                chunk = chunk[:window]
            else:
                stream.held.popleft()
            end = stream.end_held and not stream.held and stream.held_trailers is None
            self._h2.send_data(stream_id, chunk, end_stream=end)
            self.credit += 2
            if end:
                stream.advance(StreamEvent.RESPONSE_ENDED)
                return
        if stream.end_held:
            trailers, stream.held_trailers = stream.held_trailers, None
            if trailers is not None:
                self._h2.send_headers(stream_id, list(trailers), end_stream=True)
            else:
                self._h2.end_stream(stream_id)
            stream.advance(StreamEvent.RESPONSE_ENDED)
