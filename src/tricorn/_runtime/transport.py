"""Accepted socket -> the byte stream the connection runner reads and writes.

The one room of the runtime that may know which event loop runs (see
ARCHITECTURE.md, "Transports"). On asyncio and uvloop a connection sits on
an ``asyncio.BufferedProtocol``: reading stays on while the runner keeps up,
so a small request costs no ``pause_reading``/``resume_reading`` pair (two
``epoll_ctl`` calls) and no trip through the loop when its bytes are already
in; writes go straight to the loop's transport. On trio it is trio's own
stream, through anyio.

Whatever the loop, the contract is the runner's, and what
tests/runtime/test_transport.py checks against every transport:

* ``receive()`` returns what arrived (at most ``max_bytes``), waits when
  nothing has, raises ``EndOfStream`` after the peer's EOF and
  ``BrokenResourceError`` after a reset; reading stops once
  ``_READ_AHEAD`` bytes wait untaken, so a runner that stops asking stops
  the peer (TCP backpressure);
* ``send()`` returns once the bytes are accepted by the kernel, and raises
  :class:`WriteTimeout` (a ``BrokenResourceError``) when the peer read
  nothing for ``write_timeout`` seconds; the stream is then unusable;
* cancellation and ``aclose()`` mean what they mean on an anyio
  ``ByteStream``.

A stream over a plain socket (not TLS, not behind a PROXY header reader)
also has ``sendfile(fd, offset, count)``: the kernel copies a file range to
the socket (``os.sendfile``), with the same write timeout and cancellation;
the runner writes file bodies (ASGI pathsend, zerocopysend) with it.

TLS keeps that contract. On asyncio and uvloop the loop's own TLS layer
does the handshake and the records (``connect_accepted_socket(ssl=...)``;
uvloop's runs in C), under the same stream class: ``send()`` returns once
that layer has encrypted the bytes and handed them to the socket's
transport, which may still hold that one write while the kernel takes it
(the next ``send()`` waits for it). The loop's TLS starts on the socket
itself: it cannot be handed bytes already read (see proxy_protocol.py for
a PROXY header ahead of it). On trio, and over a stream that has read some
(``wrap_tls``), it is anyio's ``TLSStream``.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import logging
import math
import os
import socket
import ssl
import threading
from collections import deque
from collections.abc import Callable, Coroutine, Mapping
from types import TracebackType
from typing import Any, Final, Protocol, cast

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.abc import SocketAttribute
from anyio.streams.tls import TLSAttribute, TLSStream

__all__ = [
    "Spawner",
    "Timer",
    "WriteTimeout",
    "call_later",
    "on_asyncio",
    "open_socket_stream",
    "open_spawner",
    "open_tls_stream",
    "prepare_socket",
    "sendfile_bytes",
    "with_write_timeout",
]

#: Bytes the asyncio transport reads ahead of the runner before it pauses.
_READ_AHEAD: Final = 64 * 1024
#: The _TrioSoon of the current trio run (a trio RunVar, made on first use).
_TRIO_SOON: Any = None


#: The most one ``os.sendfile`` call is asked for: a fast reader gets a
#: file in these pieces, with a checkpoint between them, so one download
#: never holds the loop for long.
_SENDFILE_PIECE: Final = 1024 * 1024
#: Bytes this process has had the kernel send from files (see sendfile_bytes).
_sendfile_total = 0


class WriteTimeout(anyio.BrokenResourceError):
    """A write waited ``write_timeout`` seconds for a peer that read nothing."""


def sendfile_bytes() -> int:
    """How many bytes this process has sent with ``os.sendfile`` so far (for tests and benches)."""
    return _sendfile_total


async def _sendfile(
    out: int, fd: int, offset: int, count: int, write_timeout: float, lost: Callable[[], bool]
) -> None:
    """``count`` bytes of ``fd`` from ``offset`` to the non-blocking socket ``out``.

    Waits for the socket to drain when the kernel takes no more, for
    ``write_timeout`` at most without progress (WriteTimeout). A file
    shorter than the range raises EOFError; a dead peer BrokenResourceError.
    """
    global _sendfile_total
    while count:
        if lost():
            raise anyio.BrokenResourceError
        try:
            sent = os.sendfile(out, fd, offset, min(count, _SENDFILE_PIECE))
        except (BlockingIOError, InterruptedError):
            with anyio.move_on_after(write_timeout) as scope:
                await anyio.wait_writable(out)
            if scope.cancelled_caught:
                raise WriteTimeout from None
            continue
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if not sent:
            raise EOFError(f"ended {count} bytes early")
        _sendfile_total += sent
        offset += sent
        count -= sent
        if count:
            await anyio.lowlevel.checkpoint()


def prepare_socket(sock: socket.socket) -> None:
    """Make an accepted socket non-blocking, with Nagle off, before anything reads it raw.

    For TLS, which starts on the socket itself (and a PROXY header read
    ahead of it); :func:`open_socket_stream` needs no such call.
    """
    sock.setblocking(False)
    _no_delay(sock)


def _no_delay(sock: socket.socket) -> None:
    # Responses are written whole; Nagle would only delay them.
    if sock.family != socket.AF_UNIX:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


async def open_socket_stream(sock: socket.socket, write_timeout: float) -> anyio.abc.ByteStream:
    """The runner's stream over an accepted socket (plain TCP or unix).

    Either loop makes the socket non-blocking itself; Nagle goes here (only
    uvloop turns it off on its own), since responses are written whole.
    """
    _no_delay(sock)
    if on_asyncio():
        return await _AsyncioStream.open(sock, write_timeout)
    try:
        stream = await anyio.abc.SocketStream.from_socket(sock)
    except ValueError as exc:
        # anyio first asks for the peer's name, which a connection reset
        # while it waited in the backlog no longer has (ENOTCONN), and says
        # so with a ValueError: that is a client gone, an OSError as anywhere else.
        if isinstance(exc.__cause__, OSError):
            raise ConnectionResetError(exc.__cause__.errno, str(exc.__cause__)) from exc
        raise
    return _SocketFirstStream(stream, sock, write_timeout)


async def open_tls_stream(
    sock: socket.socket,
    context: ssl.SSLContext,
    write_timeout: float,
    handshake_timeout: float,
) -> anyio.abc.ByteStream:
    """The server side of a TLS handshake over an accepted, non-blocking socket.

    On asyncio and uvloop the loop's TLS does it; on trio, anyio's
    ``TLSStream`` over trio's socket stream. Raises what the client caused:
    an ``ssl.SSLError``, ``anyio.EndOfStream`` (it left mid-handshake) or
    ``anyio.BrokenResourceError``; the caller closes ``sock`` then. The
    caller also keeps the deadline (``handshake_timeout`` is the loop's own
    backstop, never meant to be the one that fires).
    """
    if on_asyncio():
        return await _AsyncioTLSStream.open_tls(sock, context, write_timeout, handshake_timeout)
    stream = await open_socket_stream(sock, write_timeout)
    try:
        return await wrap_tls(stream, context)
    except BaseException:
        await anyio.aclose_forcefully(stream)
        raise


async def wrap_tls(stream: anyio.abc.ByteStream, context: ssl.SSLContext) -> TLSStream:
    """anyio's TLS (``ssl.MemoryBIO`` pumped in Python) over any byte stream, server side."""
    # standard_compatible=False, as most servers do. Clients often close
    # without close_notify once they have what they need, and RFC 9112 9.8
    # asks servers to expect that: with it, that is a plain end of stream,
    # not an error. And closing never waits for the client's close_notify,
    # so a silent client cannot hold a closing connection. The cost: we
    # send no close_notify either, so only a response framed by the close
    # itself (HTTP/1.0 without Content-Length) cannot be told from a
    # truncated one; every other response carries its length or chunks.
    # The loop's TLS (below) behaves the same way.
    return await TLSStream.wrap(
        stream, server_side=True, ssl_context=context, standard_compatible=False
    )


def on_asyncio() -> bool:
    """Whether the current thread runs an asyncio (or uvloop) event loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False  # trio (or another loop anyio runs on)
    return True


def with_write_timeout(stream: anyio.abc.ByteStream, write_timeout: float) -> anyio.abc.ByteStream:
    """``stream`` whose writes give up (WriteTimeout) after ``write_timeout`` seconds."""
    if isinstance(stream, (_AsyncioStream, _TimedStream)):
        return stream
    return _TimedStream(stream, write_timeout)


class Flag(Protocol):
    """A signal that tasks wait on until it is set; it stays set."""

    def set(self) -> None: ...

    def is_set(self) -> bool: ...

    async def wait(self) -> None: ...


def new_flag() -> Flag:
    """A :class:`Flag` for the running loop: trio's Event, or one future on asyncio.

    For what is waited on once per request or message (a body read, a
    WebSocket message): anyio's Event finds its backend, then builds an
    asyncio.Event with its list of waiters, for the one task that waits.
    """
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # the only other loop tricorn runs on

        return trio.Event()
    return _FutureFlag(loop)


class _FutureFlag:
    __slots__ = ("_future", "_set")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._future: asyncio.Future[None] = loop.create_future()
        self._set = False

    def set(self) -> None:
        self._set = True
        if not self._future.done():
            self._future.set_result(None)

    def is_set(self) -> bool:
        return self._set

    async def wait(self) -> None:
        if self._set:
            return
        if self._future.done():
            # Cancelled with a waiter that was: a fresh one for this wait.
            self._future = self._future.get_loop().create_future()
        await self._future


class Timer(Protocol):
    """What :func:`call_later` returns: a callback that may still be called off."""

    def cancel(self) -> None: ...


def call_later(delay: float, callback: Callable[[], None]) -> Timer:
    """Run the plain ``callback`` after ``delay`` seconds (of the loop's clock).

    For deadlines that need no task of their own, such as a WebSocket's
    keepalive: a timer costs a few hundred bytes where a sleeping task with
    its cancel scopes costs kilobytes. ``callback`` runs outside any task, so
    it must not wait; what it starts goes through ``call_soon`` and the like.
    """
    if on_asyncio():
        return asyncio.get_running_loop().call_later(delay, callback)
    return _trio_runner().call_later(delay, callback)


def clock() -> Callable[[], float]:
    """The event loop's clock (the one :func:`call_later` counts in), as a plain function.

    ``anyio.current_time()`` finds the loop anew on each call; a connection
    that reads the clock once per request keeps this instead.
    """
    if on_asyncio():
        return asyncio.get_running_loop().time
    import trio

    return trio.current_time


class Spawner(Protocol):
    """Starts tasks that its ``async with`` block waits for: a task group, for one kind of task.

    Made for the task every request gets: anyio's ``start_soon`` costs about
    three times the loop's own task (a handle, a cancel scope and an event
    per task), paid on every request. A spawner is a plain task group of the
    loop's own: trio's nursery, or asyncio tasks it keeps the books of. A
    cancel scope around the block cancels its tasks as anyio's would: trio's
    natively; on asyncio, the block's exit cancels them when the waiting
    task is cancelled (once: a task answering its cancellation, such as an
    exchange writing its 503, is left to finish, shielded), and re-raises
    the cancellation once they are done. A task's exception cancels the
    others and is raised from the block.
    """

    def spawn(
        self,
        function: Callable[..., Coroutine[Any, Any, None]],
        *args: Any,
        name: str,
        lasting: bool = False,
    ) -> None:
        """Start ``function(*args)`` in the group. ``lasting``: a task that mostly
        waits (a connection), for which memory counts more than a turn of the loop."""
        ...

    def cancel(self) -> None:
        """Cancel the group's tasks (on trio the rest of the block as well, as a
        task group's scope would): for a block with nothing left to do but wait."""
        ...

    async def __aenter__(self) -> Spawner: ...

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None: ...


def open_spawner() -> Spawner:
    """A :class:`Spawner` for the running loop; enter it with ``async with``."""
    if on_asyncio():
        return _AsyncioSpawner(asyncio.get_running_loop())
    return _TrioSpawner()


class _AsyncioSpawner:
    __slots__ = ("_cancelled", "_error", "_idle", "_loop", "_tasks")

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        # A list: most hold one task at a time (HTTP/1.1), and an empty set
        # costs 216 bytes per connection.
        self._tasks: list[asyncio.Task[None]] = []
        #: Set when the last task ends while the block's exit waits.
        self._idle: asyncio.Future[None] | None = None
        self._error: BaseException | None = None
        self._cancelled = False

    async def __aenter__(self) -> _AsyncioSpawner:
        return self

    def spawn(
        self,
        function: Callable[..., Coroutine[Any, Any, None]],
        *args: Any,
        name: str,
        lasting: bool = False,
    ) -> None:
        if lasting:
            # Its books in a done callback: a body of ours around it would
            # be one more coroutine held while it waits (280 bytes per idle
            # connection), for a loop turn saved once in its life.
            task = self._loop.create_task(function(*args), name=name)
            task.add_done_callback(self._ended)
        else:
            task = self._loop.create_task(self._run(function, args), name=name)
        self._tasks.append(task)

    async def _run(
        self, function: Callable[..., Coroutine[Any, Any, None]], args: tuple[Any, ...]
    ) -> None:
        """The task's body: its books are kept here, not in a done callback
        (one more trip through the loop per task, on every request)."""
        try:
            await function(*args)
        except Exception as error:
            self._failed(error)
        finally:
            # The loop given: without it, current_task asks for the running loop
            # (a getpid() system call). No cast(): it is a call.
            self._forget(asyncio.current_task(self._loop))  # type: ignore[arg-type]

    def _ended(self, task: asyncio.Task[None]) -> None:
        """A lasting task, or one cancelled, is done: its books, where no body of
        ours kept them (a lasting task has none; a task cancelled before its
        first step ends without running it)."""
        if not task.cancelled() and (error := task.exception()) is not None:
            self._failed(error)
        if task in self._tasks:
            self._forget(task)

    def _failed(self, error: BaseException) -> None:
        """A task raised: the first error is the block's, and the others are cancelled."""
        if self._error is None:
            self._error = error
        self.cancel()

    def _forget(self, task: asyncio.Task[None]) -> None:
        """The task is over: off the books, and the block's exit may go on once none is left."""
        self._tasks.remove(task)
        if not self._tasks and self._idle is not None and not self._idle.done():
            self._idle.set_result(None)

    def cancel(self) -> None:
        if not self._cancelled:
            self._cancelled = True
            for task in self._tasks:
                task.cancel()
                task.add_done_callback(self._ended)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is not None:
            self.cancel()  # the block failed, or was cancelled
        cancellation: BaseException | None = None
        while self._tasks:
            self._idle = self._loop.create_future()
            try:
                if cancellation is None:
                    await self._idle
                else:
                    # Cancelled already: the tasks were told once; wait
                    # them out without anyio telling us again each turn.
                    with anyio.CancelScope(shield=True):
                        await self._idle
            except asyncio.CancelledError as error:
                cancellation = error
                self.cancel()
        self._idle = None
        if self._error is not None and exc_type is None:
            raise self._error
        if cancellation is not None and exc_type is None:
            raise cancellation


class _TrioSpawner:
    __slots__ = ("_manager", "_nursery")

    def __init__(self) -> None:
        import trio

        self._manager = trio.open_nursery()
        self._nursery: Any = None

    async def __aenter__(self) -> _TrioSpawner:
        self._nursery = await self._manager.__aenter__()
        return self

    def spawn(
        self,
        function: Callable[..., Coroutine[Any, Any, None]],
        *args: Any,
        name: str,
        lasting: bool = False,
    ) -> None:
        self._nursery.start_soon(function, *args, name=name)  # one kind of task on trio

    def cancel(self) -> None:
        self._nursery.cancel_scope.cancel()

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool:
        return bool(await self._manager.__aexit__(exc_type, exc, tb))


def _soon_runner() -> Callable[[Callable[[], None]], object]:
    """How this event loop runs a plain callback once the running task yields."""
    if on_asyncio():
        return asyncio.get_running_loop().call_soon
    return _trio_runner().call_soon


def _trio_runner() -> _TrioSoon:
    """trio's answer to ``loop.call_soon`` and ``call_later``: one system task per run.

    ``TrioToken.run_sync_soon`` would do for the first, but it is made for
    threads and writes to the wake-up socket each time (about 9 us); a parked
    task is woken with a reschedule, and runs every callback queued by then
    at once. Timers wake the same task, at the earliest deadline.
    """
    import trio  # the only other loop tricorn runs on

    global _TRIO_SOON
    if _TRIO_SOON is None:
        _TRIO_SOON = trio.lowlevel.RunVar("tricorn_call_soon")
    soon: _TrioSoon | None = _TRIO_SOON.get(None)
    if soon is None:
        soon = _TrioSoon()
        _TRIO_SOON.set(soon)
        trio.lowlevel.spawn_system_task(soon.run, name="tricorn call_soon")
    return soon


class _TrioTimer:
    __slots__ = ("callback",)

    def __init__(self, callback: Callable[[], None]) -> None:
        self.callback: Callable[[], None] | None = callback

    def cancel(self) -> None:
        self.callback = None  # left in the heap until its deadline passes


class _TrioSoon:
    def __init__(self) -> None:
        self._callbacks: deque[Callable[[], None]] = deque()
        self._parked: Any = None
        #: (deadline, order, timer): a heap, earliest first.
        self._timers: list[tuple[float, int, _TrioTimer]] = []
        self._order = itertools.count()
        #: The deadline the parked task sleeps until.
        self._wake_at = math.inf

    def call_soon(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
        self._wake()

    def call_later(self, delay: float, callback: Callable[[], None]) -> _TrioTimer:
        import trio

        timer = _TrioTimer(callback)
        deadline = trio.current_time() + delay
        heapq.heappush(self._timers, (deadline, next(self._order), timer))
        if deadline < self._wake_at:
            self._wake()  # to sleep again until this earlier deadline
        return timer

    def _wake(self) -> None:
        if self._parked is not None:
            import trio

            task, self._parked = self._parked, None
            trio.lowlevel.reschedule(task)

    async def run(self) -> None:
        import trio

        while True:
            while self._callbacks:
                self._call(self._callbacks.popleft())
            timers = self._timers
            now = trio.current_time()
            while timers and timers[0][0] <= now:
                callback = heapq.heappop(timers)[2].callback
                if callback is not None:
                    self._call(callback)
            if self._callbacks:
                continue
            self._wake_at = timers[0][0] if timers else math.inf
            self._parked = trio.lowlevel.current_task()
            with trio.move_on_at(self._wake_at):
                await trio.lowlevel.wait_task_rescheduled(self._abort)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:  # a bug in one connection must not end the run
            logging.getLogger("tricorn.error").exception("error in a deferred callback")

    def _abort(self, raise_cancel: Any) -> Any:
        import trio

        self._parked = None
        return trio.lowlevel.Abort.SUCCEEDED


class _TimedStream(anyio.abc.ByteStream):
    """Any anyio stream, with the write timeout kept by a cancel scope per write."""

    def __init__(self, stream: anyio.abc.ByteStream, write_timeout: float) -> None:
        self._stream = stream
        self._write_timeout = write_timeout
        self.call_soon = _soon_runner()
        # Straight to the stream underneath: no frame of our own per read.
        self.receive = stream.receive  # type: ignore[method-assign]

    async def receive(self, max_bytes: int = 65536) -> bytes:
        return await self._stream.receive(max_bytes)

    async def send(self, item: bytes) -> None:
        with anyio.move_on_after(self._write_timeout) as scope:
            await self._stream.send(item)
        if scope.cancelled_caught:
            raise WriteTimeout

    async def send_eof(self) -> None:
        await self._stream.send_eof()

    async def aclose(self) -> None:
        await self._stream.aclose()

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return self._stream.extra_attributes


class _SocketFirstStream(_TimedStream):
    """A socket stream (trio's) whose writes first try the socket itself.

    Most writes fit in the kernel's buffer at once: those need neither the
    loop nor a timeout scope (7 us on trio). Only what the kernel does not
    take goes through the stream, under the write timeout.
    """

    def __init__(
        self, stream: anyio.abc.SocketStream, sock: socket.socket, write_timeout: float
    ) -> None:
        super().__init__(stream, write_timeout)
        self._sock = sock

    async def send(self, item: bytes) -> None:
        try:
            sent = self._sock.send(item)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        if sent < len(item):
            await super().send(item[sent:] if sent else item)

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of the file ``fd`` from ``offset``, by the kernel."""
        await _sendfile(self._sock.fileno(), fd, offset, count, self._write_timeout, _never)


def _never() -> bool:
    return False


# -- asyncio and uvloop ----------------------------------------------------------------

#: The buffer the loop reads into; taken out at once in buffer_updated, which
#: the loop calls right after filling it, so one per thread serves every
#: connection of that thread's loop.
_scratch = threading.local()
#: Its size: the most one read takes, as much as the loops read into a
#: buffer of their own (256 KiB), so that a request with a body of tens of
#: KiB most often arrives in one read, head and body, not in two or three.
#: Only what a read brought is copied out of it.
_SCRATCH_SIZE: Final = 256 * 1024


def _scratch_buffer() -> memoryview:
    buffer: memoryview | None = getattr(_scratch, "buffer", None)
    if buffer is None:
        buffer = _scratch.buffer = memoryview(bytearray(_SCRATCH_SIZE))
    return buffer


class _Protocol(asyncio.BufferedProtocol):
    """The loop's side: collects what arrives, wakes the one reader and the one writer."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        #: What arrived and the reader has not taken: the reads, as they came.
        self.incoming: list[bytes] = []
        self.size = 0
        self.eof = False
        self.error: BaseException | None = None
        self.lost = False
        self.paused = False
        self.readable: asyncio.Future[None] | None = None
        self.writable: asyncio.Future[None] | None = None
        #: Takes what arrives while the reader waits, in this callback (see
        #: _AsyncioStream.receive_feeding); whether the reader may wait on.
        self.sink: Callable[[bytes], bool] | None = None
        #: The reader was woken by its sink, not with bytes.
        self.fed = False
        #: The thread's scratch buffer (made in the loop's thread), kept at hand.
        self.scratch = _scratch_buffer()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports are asyncio.Transport in all but their class.
        self.transport = cast(asyncio.Transport, transport)
        # A write the kernel does not take in full waits until it has
        # (send() returns when the bytes are accepted: the backpressure).
        self.transport.set_write_buffer_limits(0)

    def get_buffer(self, sizehint: int) -> memoryview:
        return self.scratch

    def buffer_updated(self, nbytes: int) -> None:
        data = bytes(self.scratch[:nbytes])
        readable = self.readable
        if (
            self.sink is not None
            and readable is not None
            and not readable.done()
            and not self.incoming
        ):
            # The reader waits with nothing untaken: its sink takes the
            # bytes here, and the reader's task wakes only when the sink
            # leaves it something to do.
            try:
                wait_on = self.sink(data)
            except Exception as exc:
                if not readable.done():
                    readable.set_exception(exc)
                return
            if not wait_on and not readable.done():
                self.fed = True
                readable.set_result(None)
            return
        self.incoming.append(data)
        self.size += nbytes
        # A reader that waits takes all this on its next step: only when none
        # does may a full read (a request body) stop reading, two epoll_ctl
        # calls each time.
        if not self._wake_reader() and self.size >= _READ_AHEAD and self.transport is not None:
            self.transport.pause_reading()
            self.paused = True

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return True  # keep the write side open: a half-close

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if exc is not None:
            self.error = exc
        self._wake_reader()
        self._wake_writer()

    def pause_writing(self) -> None:
        pass  # send() looks at the buffer size itself

    def resume_writing(self) -> None:
        self._wake_writer()

    def _wake_reader(self) -> bool:
        """Wake the reader if it waits; whether it did."""
        if self.readable is not None and not self.readable.done():
            self.readable.set_result(None)
            return True
        return False

    def _wake_writer(self) -> None:
        if self.writable is not None and not self.writable.done():
            self.writable.set_result(None)


class _AsyncioStream(anyio.abc.ByteStream):
    """The runner's stream over an asyncio transport (see the module docstring)."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        transport: asyncio.Transport,
        protocol: _Protocol,
        sock: socket.socket,
        write_timeout: float,
    ) -> None:
        self._loop = loop
        self._transport = transport
        self._protocol = protocol
        self._family = sock.family
        self._local = sock.getsockname()
        try:
            self._remote = sock.getpeername()
        except OSError:
            self._remote = None
        self._write_timeout = write_timeout
        self._closed = False

    @classmethod
    async def open(cls, sock: socket.socket, write_timeout: float) -> _AsyncioStream:
        loop = asyncio.get_running_loop()
        transport, protocol = await loop.connect_accepted_socket(_Protocol, sock)
        return cls(loop, transport, protocol, sock, write_timeout)

    async def receive(self, max_bytes: int = 65536) -> bytes:
        data = await self.receive_feeding(max_bytes, None)
        assert data is not None  # no sink, nothing fed
        return data

    async def receive_feeding(
        self, max_bytes: int, sink: Callable[[bytes], bool] | None
    ) -> bytes | None:
        """``receive()``; but what arrives while it waits goes to ``sink`` at once.

        The sink is called in the loop's callback, with the bytes of one
        read, and says whether to wait on: a small request is then parsed
        and its app started without waking the reader's task. Returns None
        when the sink took bytes and said not to wait on. Bytes that were
        in already, EOF and errors are ``receive()``'s.
        """
        protocol = self._protocol
        if not protocol.incoming:
            if self._closed:
                raise anyio.ClosedResourceError
            if not protocol.eof and not protocol.lost:
                protocol.readable = self._loop.create_future()
                protocol.sink = sink
                protocol.fed = False
                try:
                    await protocol.readable
                finally:
                    protocol.readable = None
                    protocol.sink = None
                if protocol.fed:
                    protocol.fed = False
                    return None
            if not protocol.incoming:
                if self._closed:
                    raise anyio.ClosedResourceError
                if protocol.error is not None:
                    raise anyio.BrokenResourceError from protocol.error
                raise anyio.EndOfStream
        incoming = protocol.incoming
        # The common case, one read waiting that fits, is handed on as it is.
        data = incoming[0] if len(incoming) == 1 else b"".join(incoming)
        incoming.clear()
        if len(data) > max_bytes:
            incoming.append(data[max_bytes:])
            data = data[:max_bytes]
        protocol.size = len(incoming[0]) if incoming else 0
        if protocol.paused and protocol.size < _READ_AHEAD and not protocol.lost:
            protocol.paused = False
            self._transport.resume_reading()
        return data

    async def send(self, item: bytes) -> None:
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.error
        self._transport.write(item)
        if not self._transport.get_write_buffer_size():
            return  # the kernel took it all: no wait, no timer
        await self._drain()

    async def _drain(self) -> None:
        """Wait until the kernel has taken everything, for write_timeout at most."""
        protocol = self._protocol
        # The peer is slow: only now is a timer armed.
        deadline = self._loop.time() + self._write_timeout
        while self._transport.get_write_buffer_size() and not protocol.lost:
            protocol.writable = self._loop.create_future()
            handle = self._loop.call_at(deadline, protocol._wake_writer)
            try:
                await protocol.writable
            finally:
                handle.cancel()
                protocol.writable = None
            if self._loop.time() >= deadline and self._transport.get_write_buffer_size():
                self._transport.abort()
                raise WriteTimeout
        if self._closed:
            raise anyio.ClosedResourceError
        if protocol.lost and self._transport.get_write_buffer_size():
            raise anyio.BrokenResourceError from protocol.error

    async def sendfile(self, fd: int, offset: int, count: int) -> None:
        """``count`` bytes of the file ``fd`` from ``offset``, by the kernel.

        What the transport still buffers goes first. The socket is written
        through a duplicate of its descriptor: the loop lets nobody else
        wait on a transport's own, and a transport closed meanwhile cannot
        leave us writing to a descriptor number reused by another file.
        """
        if self._closed:
            raise anyio.ClosedResourceError
        protocol = self._protocol
        if protocol.lost or self._transport.is_closing():
            raise anyio.BrokenResourceError from protocol.error
        if self._transport.get_write_buffer_size():
            await self._drain()
        out = os.dup(self._transport.get_extra_info("socket").fileno())
        try:
            await _sendfile(out, fd, offset, count, self._write_timeout, self._lost)
        except WriteTimeout:
            self._transport.abort()
            raise
        finally:
            os.close(out)

    def _lost(self) -> bool:
        return self._closed or self._protocol.lost

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` once the running task yields (at the loop's next turn)."""
        self._loop.call_soon(callback)

    def write_now(self, data: bytes) -> None:
        """Write without waiting: for bytes made at the end of a loop turn.

        The kernel or the transport's buffer takes them at once; the next
        ``send()`` waits for the buffer to drain as always.
        """
        if not self._closed and not self._protocol.lost:
            self._transport.write(data)

    async def send_eof(self) -> None:
        if self._transport.can_write_eof() and not self._transport.is_closing():
            self._transport.write_eof()

    async def aclose(self) -> None:
        self.close_now()
        await anyio.lowlevel.checkpoint()

    def close_now(self) -> None:
        """``aclose()`` without its checkpoint: closing never waits here."""
        if not self._closed:
            self._closed = True
            self._transport.abort()
            self._protocol.connection_lost(None)

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        return {
            SocketAttribute.family: lambda: self._family,
            SocketAttribute.local_address: lambda: self._local,
            SocketAttribute.remote_address: lambda: self._remote,
            SocketAttribute.raw_socket: lambda: self._transport.get_extra_info("socket"),
        }


# -- the loop's TLS (asyncio and uvloop) ------------------------------------------------


class _TLSProtocol(_Protocol):
    """The application side of the loop's TLS layer (which is itself a BufferedProtocol).

    The loop calls ``connection_made`` once the handshake is done, with the
    TLS transport, whose write limits then make that layer report every byte
    it still holds. A client's EOF, with or without
    close_notify, ends the connection: TLS over the loop has no half-close.
    """

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        # Paused from the first byte held, resumed once none is: the TLS
        # layers compare with >=, so a high-water mark of 0 would have them
        # pause and resume us on every write.
        cast(asyncio.Transport, transport).set_write_buffer_limits(high=1, low=0)

    def eof_received(self) -> bool:
        self.eof = True
        self._wake_reader()
        return False  # the TLS layer closes the connection either way (and warns at True)


class _AsyncioTLSStream(_AsyncioStream):
    """The runner's stream over the loop's TLS transport (see the module docstring).

    Reading, writing and closing are :class:`_AsyncioStream`'s, on the TLS
    transport: reading pauses there at the read-ahead limit (the TLS layer
    then stops reading the socket once its own buffer is full), and a write
    waits while that layer holds bytes it could not pass on. Closing aborts
    at once: no close_notify is sent or awaited (as ``standard_compatible=False``
    on anyio's TLSStream).
    """

    #: No kernel sendfile here: it would write the file past TLS, in the clear.
    #: File bodies go through send() (the runner looks for this attribute).
    sendfile = None  # type: ignore[assignment]

    @classmethod
    async def open_tls(
        cls,
        sock: socket.socket,
        context: ssl.SSLContext,
        write_timeout: float,
        handshake_timeout: float,
    ) -> _AsyncioTLSStream:
        loop = asyncio.get_running_loop()
        # Made here: uvloop returns its TLS layer as the protocol, not ours.
        protocol = _TLSProtocol()
        try:
            transport, _ = await loop.connect_accepted_socket(
                lambda: protocol,
                sock,
                ssl=context,
                # The caller's deadline fires first; this one is a backstop.
                ssl_handshake_timeout=2 * handshake_timeout,
            )
        except ssl.SSLError:
            raise
        except ConnectionResetError as exc:
            if not exc.args:
                # The loop's word for an EOF before the handshake was done.
                raise anyio.EndOfStream from None
            raise anyio.BrokenResourceError from exc
        except OSError as exc:
            raise anyio.BrokenResourceError from exc
        return cls(loop, transport, protocol, sock, write_timeout)

    async def send(self, item: bytes) -> None:
        if self._protocol.eof and not self._closed:
            # The client's EOF (close_notify or not) ends the whole connection
            # here: the TLS layer would drop the bytes (and warn after a few).
            raise anyio.BrokenResourceError
        await super().send(item)

    def write_now(self, data: bytes) -> None:
        if not self._protocol.eof:
            super().write_now(data)

    async def send_eof(self) -> None:
        raise NotImplementedError("the loop's TLS transport cannot half-close")

    @property
    def extra_attributes(self) -> Mapping[Any, Callable[[], Any]]:
        attributes: Mapping[Any, Callable[[], Any]] | None = self.__dict__.get("_attributes")
        if attributes is None:  # once: the handshake settled all of it
            ssl_object: ssl.SSLObject = self._transport.get_extra_info("ssl_object")
            attributes = self.__dict__["_attributes"] = {
                **super().extra_attributes,
                TLSAttribute.alpn_protocol: ssl_object.selected_alpn_protocol,
                TLSAttribute.channel_binding_tls_unique: ssl_object.get_channel_binding,
                TLSAttribute.cipher: ssl_object.cipher,
                TLSAttribute.peer_certificate: lambda: ssl_object.getpeercert(False),
                TLSAttribute.peer_certificate_binary: lambda: ssl_object.getpeercert(True),
                TLSAttribute.server_side: lambda: True,
                TLSAttribute.shared_ciphers: ssl_object.shared_ciphers,
                TLSAttribute.standard_compatible: lambda: False,
                TLSAttribute.ssl_object: lambda: ssl_object,
                TLSAttribute.tls_version: ssl_object.version,
            }
        return attributes
