"""Everything that touches grpclib or h2 internals, in one place, with a public-API fallback.

The streaming hot path does four things grpclib has no public API for (docs/decisions and
docs/performance.md#ceiling measured ~90% of the per-message cost in the pure-Python HTTP/2 stack):

* :func:`send_batch` writes several gRPC messages of one stream with one HTTP/2 write;
* :func:`stage_messages` puts Control messages (receipts) into the connection's send buffer so
  they leave with the Data write that follows;
* :func:`quiet_frame_trace` makes the ``repr`` of received DATA frames cheap (h2 formats every
  frame for a trace log nobody reads);
* :func:`coalesce_ping_acks` lets a PING acknowledgement wait (at most
  :data:`PING_ACK_DELAY`) for the next write instead of costing a write of its own.

Plus three small ones: :func:`open_connection` (dial now, so a refused dial can be retried the way
grpc-go's WaitForReady does, instead of on the first request), :func:`status_of` (the gRPC status
a peer sent before resetting the stream) and :func:`codec_of` (the codec that knows the size of
the message just decoded).

They were written for the versions in :data:`WRITTEN_FOR` (pinned in pyproject.toml). At import,
:func:`check` verifies the installed versions and every attribute used; when anything differs,
or after :func:`disable` (CI runs the streaming tests once that way: ``pytest
--transport-fast-path=off``), each function falls back to grpclib's public API: one
``send_message`` per message, nothing staged, frames left alone. Wire bytes are the same either
way; only the number of writes differs.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import Any, Final

import grpclib
import h2
import hyperframe
from grpclib.client import Stream
from h2.connection import H2Connection
from h2.frame_buffer import FrameBuffer
from hyperframe.frame import DataFrame

__all__ = [
    "MAX_BATCH",
    "PING_ACK_DELAY",
    "WRITTEN_FOR",
    "check",
    "coalesce_ping_acks",
    "codec_of",
    "disable",
    "enable",
    "enabled",
    "open_connection",
    "quiet_frame_trace",
    "send_batch",
    "stage_messages",
    "status_of",
]

logger = logging.getLogger("bubu.transport")

WRITTEN_FOR: Final = {
    "grpclib": ("0.4.", "0.4.9"),
    "h2": ("4.", "4.1"),
    "hyperframe": ("6.", "6.0"),
}
"""Package -> (required version prefix, oldest version checked): the internals used here."""

MAX_BATCH: Final = 64
"""Most messages one write carries."""

PING_ACK_DELAY: Final = 0.002
"""Longest a PING acknowledgement waits for a write to ride on, in seconds."""

_PREFIX: Final = b"\x00"  # gRPC message prefix: not compressed, then a 4-byte length

# Attributes of a grpclib client Stream the fast path reads or writes (grpclib 0.4.x).
_STREAM_ATTRS: Final = (
    "_send_request_done",
    "_end_done",
    "_wrapper",
    "_stream",
    "_codec",
    "_send_type",
    "_send_message_done",
    "_messages_sent",
    "_maybe_raise",
)
_H2_ATTRS: Final = (
    "local_flow_control_window",
    "max_outbound_frame_size",
    "send_data",
    "streams",
    "incoming_buffer",
    "_frame_dispatch_table",
    "_data_to_send",
    "data_to_send",
)


def _version_ok(package: str, prefix: str) -> bool:
    # The modules' own __version__ (all three have one): importlib.metadata alone costs a
    # streaming engram's start-up ~15 ms, and reading three dist-infos a few more.
    module = {"grpclib": grpclib, "h2": h2, "hyperframe": hyperframe}.get(package)
    version = getattr(module, "__version__", None)
    if not isinstance(version, str):
        import importlib.metadata

        try:
            version = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            return False
    return version.startswith(prefix)


def check() -> str | None:
    """Return why the fast path cannot be used with the installed packages, or None."""
    for package, (prefix, _oldest) in WRITTEN_FOR.items():
        if not _version_ok(package, prefix):
            return f"{package} is not {prefix}x"
    missing = [name for name in _STREAM_ATTRS if not hasattr(Stream, name)]
    # Instance attributes set in __init__ are not on the class; these are class defaults.
    missing = [m for m in missing if m not in ("_wrapper", "_stream", "_codec", "_send_type")]
    if missing:
        return f"grpclib Stream lacks {', '.join(missing)}"
    from h2.config import H2Configuration

    probe = H2Connection(H2Configuration(client_side=True))
    h2_missing = [name for name in _H2_ATTRS if not hasattr(probe, name)]
    if h2_missing:
        return f"h2 H2Connection lacks {', '.join(h2_missing)}"
    if not hasattr(FrameBuffer, "__next__"):
        return "h2 FrameBuffer is not an iterator"
    return None


_REASON: str | None = check()
_enabled: bool = _REASON is None
if _REASON is not None:
    logger.debug("streaming fast path off: %s; using grpclib's public API", _REASON)


def enabled() -> bool:
    """Whether the fast path is in use."""
    return _enabled


def disable() -> None:
    """Use grpclib's public API only (tests, CI, and a way out if an upgrade breaks it)."""
    global _enabled
    _enabled = False


def enable() -> None:
    """Use the fast path again, if :func:`check` allows it."""
    global _enabled
    _enabled = _REASON is None


def _usable(stream: Any) -> bool:
    # Per stream: the instance attributes exist only on a real grpclib client stream.
    return (
        _enabled
        and type(stream) is Stream
        and hasattr(stream, "_stream")
        and hasattr(stream, "_codec")
        and hasattr(stream, "_wrapper")
    )


async def send_batch(stream: Stream[Any, Any], messages: list[Any]) -> None:
    """Send several gRPC messages on ``stream``, with one HTTP/2 write when possible.

    gRPC length-prefixes every message and a DATA frame may carry several of them: the peer sees
    exactly the same message sequence as with one ``send_message`` per message (any gRPC
    implementation parses the byte stream, not the frames), but the HTTP/2 stack and the socket
    are entered once per batch. ``bytes`` items are messages encoded already (outbound packets,
    receipts: validated and size-checked when they were built).
    """
    if len(messages) == 1 and type(messages[0]) is not bytes:
        await stream.send_message(messages[0])
        return
    if not _usable(stream):
        # Public API: the codec passes pre-encoded bytes through (CappedProtoCodec).
        for message in messages:
            await stream.send_message(message)
        return
    if not stream._send_request_done:
        await stream.send_request()
    parts: list[bytes] = []
    codec = stream._codec
    send_type = stream._send_type
    for message in messages:
        body = message if type(message) is bytes else codec.encode(message, send_type)
        parts.append(_PREFIX + len(body).to_bytes(4, "big"))
        parts.append(body)
    with stream._wrapper:
        await stream._stream.send_data(b"".join(parts), end_stream=False)
    count = len(messages)
    stream._send_message_done = True
    stream._messages_sent += count
    connection = stream._stream.connection
    connection.messages_sent += count
    connection.last_message_sent = time.monotonic()


def stage_messages(
    stream: Stream[Any, Any], bodies: list[bytes], carrier: Stream[Any, Any]
) -> bool:
    """Put encoded gRPC messages for ``stream`` into the HTTP/2 send buffer, without writing.

    ``carrier`` is the stream whose write follows at once (grpclib writes the connection's whole
    HTTP/2 buffer on every send). Only done when nothing can wait in between: both streams open
    for sending, the connection writable, the carrier's flow-control window open, and the
    messages fit one DATA frame and ``stream``'s window; and never while another send on
    ``stream`` is in progress (the caller checks).

    Returns:
        Whether the messages were staged (never, on the public-API fallback).
    """
    if not (_usable(stream) and _usable(carrier)):
        return False
    h2s = getattr(stream, "_stream", None)
    carrier_h2s = getattr(carrier, "_stream", None)
    if (
        h2s is None
        or carrier_h2s is None
        or not stream._send_request_done
        or stream._end_done
        or stream._wrapper._error is not None
    ):
        return False
    connection = h2s.connection
    if not connection.write_ready.is_set() or h2s.id is None or carrier_h2s.id is None:
        return False
    h2 = h2s._h2_connection
    parts: list[bytes] = []
    for body in bodies:
        parts.append(_PREFIX + len(body).to_bytes(4, "big"))
        parts.append(body)
    payload = b"".join(parts)
    try:
        if (
            h2s.id not in h2.streams
            or carrier_h2s.id not in h2.streams
            # The carrier must still be able to send after the connection-level window shrinks
            # by `payload`, or its write would wait with the staged frame unflushed.
            or h2.local_flow_control_window(carrier_h2s.id) <= len(payload)
            or len(payload) > min(h2.local_flow_control_window(h2s.id), h2.max_outbound_frame_size)
        ):
            return False
        h2.send_data(h2s.id, payload)
    except Exception:  # any h2 state problem: leave it to the control task
        return False
    count = len(bodies)
    h2s.data_sent += len(payload)
    connection.data_sent += len(payload)
    connection.data_send_process()
    stream._send_message_done = True
    stream._messages_sent += count
    connection.messages_sent += count
    connection.last_message_sent = time.monotonic()
    return True


async def open_connection(channel: Any) -> Any:
    """Open the channel's HTTP/2 connection now; returns its protocol, or None when grpclib has
    no such entry point (then the first request connects, and a refused dial is not retried).

    A failed attempt leaves nothing behind (grpclib stores the protocol only on success), so
    calling this again dials afresh.
    """
    connect = getattr(channel, "__connect__", None)
    if connect is None:
        return None
    return await connect()


def status_of(stream: Stream[Any, Any], exc: BaseException) -> BaseException:
    """Prefer the gRPC status the peer sent over the reset that followed it.

    grpclib reports a trailers-only error answer followed by RST_STREAM as
    ``StreamTerminatedError``; its own ``__aexit__`` recovers the status the same way. This is
    about which error is reported, not speed, so it does not depend on :func:`disable`; when the
    internal is missing, the reset itself is reported.
    """
    from grpclib.exceptions import GRPCError, StreamTerminatedError

    if isinstance(exc, StreamTerminatedError) and callable(getattr(stream, "_maybe_raise", None)):
        try:
            stream._maybe_raise()
        except GRPCError as status_error:
            return status_error
        except Exception:
            return exc
    return exc


def codec_of(stream: Stream[Any, Any]) -> Any:
    """The codec ``stream`` decodes with (it records the size of the last message), or None."""
    return getattr(stream, "_codec", None) if _enabled else None


class _TracedDataFrame(DataFrame):
    """A received DATA frame whose ``repr`` is cheap (see :func:`quiet_frame_trace`)."""

    def __repr__(self) -> str:
        return f"DataFrame(stream_id={self.stream_id}): {len(self.data)} bytes"


class _QuietFrameBuffer(FrameBuffer):
    def __next__(self) -> Any:
        frame = FrameBuffer.__next__(self)
        if type(frame) is DataFrame:
            frame.__class__ = _TracedDataFrame
        return frame


def quiet_frame_trace(protocol: Any) -> None:
    """Make the ``repr`` of received DATA frames cheap on this connection only.

    h2 (4.x) formats every received frame for its trace log before calling the logger, and
    grpclib gives it a no-op logger: for a DATA frame that is a copy of the body plus a hex dump,
    ~7% of a streaming engram's CPU (one frame per packet). The frames keep their type for every
    ``isinstance`` check and are dispatched like DataFrame; nothing else reads the repr. Left
    alone on the fallback or if the internals are not the expected ones.
    """
    if not _enabled:
        return
    try:
        h2 = protocol.connection._connection
        buffer = h2.incoming_buffer
        table = h2._frame_dispatch_table
    except AttributeError:
        return
    if type(buffer) is not FrameBuffer or DataFrame not in table:
        return
    table[_TracedDataFrame] = table[DataFrame]
    buffer.__class__ = _QuietFrameBuffer


_PING_FRAME: Final = 0x6
_ACK_FLAG: Final = 0x1


def _only_ping_acks(pending: bytes | bytearray) -> bool:
    """Whether ``pending`` (serialized HTTP/2 frames) is nothing but PING acknowledgements."""
    end = len(pending)
    at = 0
    while at < end:
        if end - at < 9 or pending[at + 3] != _PING_FRAME or not pending[at + 4] & _ACK_FLAG:
            return False
        at += 9 + int.from_bytes(pending[at : at + 3], "big")
    return end > 0 and at == end


class _CoalescingFlush:
    """A grpclib ``Connection.flush`` that holds back a lone PING acknowledgement.

    Everything else is written at once, with any acknowledgement held back in front of it (h2
    keeps one outbound buffer; grpclib's every write takes all of it).
    """

    __slots__ = ("_h2", "_loop", "_timer", "_transport")

    def __init__(self, h2_connection: Any, transport: Any, loop: asyncio.AbstractEventLoop):
        self._h2 = h2_connection
        self._transport = transport
        self._loop = loop
        self._timer: asyncio.TimerHandle | None = None

    def __call__(self) -> None:
        if _enabled and _only_ping_acks(self._h2._data_to_send):
            if self._timer is None:
                self._timer = self._loop.call_later(PING_ACK_DELAY, self._deadline)
            return
        self._write()

    def _deadline(self) -> None:
        self._timer = None
        self._write()

    def _write(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._transport.is_closing():
            return
        data = self._h2.data_to_send()
        if data:
            self._transport.write(data)


def coalesce_ping_acks(protocol: Any) -> None:
    """Let PING acknowledgements on this connection ride on the next write.

    grpc-go peers (the connector) send a PING with the first DATA frame after every answered one
    (its bandwidth-delay estimator), so at one packet in flight each delivery brings a PING. h2
    answers it at once and grpclib writes the answer on its own: a second write per packet for
    the engram and a second wake-up of the connector. Held back, the answer leaves in front of
    the engram's next write (its echo, its receipt), or after :data:`PING_ACK_DELAY` when
    nothing is written before: the peer sees the same frames, a little later, in fewer
    segments. Left alone on the fallback or if the internals are not the expected ones.
    """
    if not _enabled:
        return
    try:
        connection = protocol.connection
        h2_connection = connection._connection
        transport = connection._transport
    except AttributeError:
        return
    if not isinstance(getattr(h2_connection, "_data_to_send", None), bytearray):
        return
    connection.flush = _CoalescingFlush(h2_connection, transport, asyncio.get_running_loop())
