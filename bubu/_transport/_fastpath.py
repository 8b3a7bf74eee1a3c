"""Everything that touches grpclib or h2 internals, in one place, with a public-API fallback.

The streaming hot path does five things grpclib has no public API for (docs/decisions and
docs/performance.md#ceiling measured ~90% of the per-message cost in the pure-Python HTTP/2 stack):

* :func:`fast_frames` (with :func:`fast_channel`) reads the frames a streaming connection
  receives most (DATA, PING, connection WINDOW_UPDATE) without h2's frame objects and events,
  with h2's checks and state changes done here, and everything else through h2; DATA frames are
  written the same way; grpclib's stream buffer loses its asyncio.Queue, returns flow-control
  window per batch instead of per frame, and hands a whole message to the client stream at once;
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
``send_message`` per message, nothing staged, frames left alone (:func:`fast_frames` checks its
own list, :func:`_frames_check`, including h2's state-machine tables). Wire bytes are the same
either way; only the number of writes, and when WINDOW_UPDATE frames leave, differ.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import struct
import time
from collections.abc import Callable
from typing import Any, Final

import grpclib
import h2
import hyperframe
from grpclib import protocol as _grpclib_protocol
from grpclib.client import Channel, Stream
from grpclib.events import _ident as _grpclib_ident
from grpclib.exceptions import ProtocolError as GrpclibProtocolError
from grpclib.utils import Wrapper
from h2 import stream as _h2_stream
from h2.config import DummyLogger
from h2.connection import ConnectionInputs, ConnectionState, H2Connection, H2ConnectionStateMachine
from h2.exceptions import ProtocolError
from h2.frame_buffer import FrameBuffer
from h2.stream import H2StreamStateMachine, StreamInputs, StreamState
from hyperframe.frame import DataFrame

__all__ = [
    "MAX_BATCH",
    "PING_ACK_DELAY",
    "WRITTEN_FOR",
    "check",
    "coalesce_ping_acks",
    "codec_of",
    "direct_reads",
    "disable",
    "enable",
    "enabled",
    "fast_channel",
    "fast_frames",
    "open_connection",
    "quiet_frame_trace",
    "send_batch",
    "send_batch_now",
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


# What the frame fast path assumes of h2's state machines: the inputs it applies itself leave
# the state as it is and run no callback (connection), or run the callback it reimplements
# (stream). Checked against h2's own tables, so an h2 that changes them turns it off.
_OPEN_CONNECTION: Final = (ConnectionState.CLIENT_OPEN, ConnectionState.SERVER_OPEN)
_RECV_DATA_STATES: Final = (StreamState.OPEN, StreamState.HALF_CLOSED_LOCAL)
_SEND_DATA_STATES: Final = (StreamState.OPEN, StreamState.HALF_CLOSED_REMOTE)


def _frames_check() -> str | None:
    """Why :func:`fast_frames` cannot be used with the installed h2 and grpclib, or None."""
    connection_table = getattr(H2ConnectionStateMachine, "_transitions", {})
    for state in _OPEN_CONNECTION:
        for name in ("RECV_DATA", "RECV_PING", "RECV_WINDOW_UPDATE", "SEND_DATA"):
            if connection_table.get((state, ConnectionInputs[name])) != (None, state):
                return f"h2 connection state machine differs on {name}"
    stream_table = getattr(_h2_stream, "_transitions", {})
    data_received = getattr(H2StreamStateMachine, "data_received", None)
    for recv_state in _RECV_DATA_STATES:
        if stream_table.get((recv_state, StreamInputs.RECV_DATA)) != (data_received, recv_state):
            return "h2 stream state machine differs on RECV_DATA"
    for send_state in _SEND_DATA_STATES:
        if stream_table.get((send_state, StreamInputs.SEND_DATA)) != (None, send_state):
            return "h2 stream state machine differs on SEND_DATA"
    from h2.config import H2Configuration

    probe = H2Connection(H2Configuration(client_side=True))
    try:
        # A stream object as h2 builds one, without encoding headers (hpack logs at DEBUG).
        stream = _h2_stream.H2Stream(1, probe.config, 65535, 65535)
    except Exception as exc:  # another constructor: other internals
        return f"h2 H2Stream cannot be built: {exc}"
    needs = {
        "H2Connection": (
            probe,
            (
                "outbound_flow_control_window",
                "max_inbound_frame_size",
                "_inbound_flow_control_window_manager",
                "state_machine",
            ),
        ),
        "H2Stream": (
            stream,
            (
                "state_machine",
                "_inbound_window_manager",
                "outbound_flow_control_window",
                "open",
                "_expected_content_length",
                "_actual_content_length",
            ),
        ),
        "H2StreamStateMachine": (stream.state_machine, ("state", "headers_received")),
        "WindowManager": (
            stream._inbound_window_manager,
            ("current_window_size", "max_window_size", "_bytes_processed"),
        ),
        "FrameBuffer": (probe.incoming_buffer, ("_data", "_headers_buffer", "_preamble_len")),
        "grpclib H2Protocol": (_grpclib_protocol.H2Protocol, ("data_received",)),
        "grpclib Connection": (_grpclib_protocol.Connection, ("create_stream", "ack", "flush")),
        "grpclib Stream": (_grpclib_protocol.Stream, ("init_stream", "send_data")),
        "grpclib Buffer": (_grpclib_protocol.Buffer, ("add", "eof", "read", "unacked_size")),
        "grpclib Wrapper": (Wrapper, ("_error", "__enter__", "__exit__")),
    }
    for owner, (obj, names) in needs.items():
        missing = [name for name in names if not hasattr(obj, name)]
        if missing:
            return f"{owner} lacks {', '.join(missing)}"
    if not isinstance(probe._data_to_send, bytearray):
        return "h2 send buffer is not a bytearray"
    if type(probe.config.logger) is not DummyLogger:
        return "h2 logs by default"
    return None


_REASON: str | None = check()
_FRAMES_REASON: str | None = _REASON or _frames_check()
_enabled: bool = _REASON is None
if _REASON is not None:
    logger.debug("streaming fast path off: %s; using grpclib's public API", _REASON)
elif _FRAMES_REASON is not None:
    logger.debug("HTTP/2 frame fast path off: %s; frames go through h2", _FRAMES_REASON)


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
        and type(stream) in _CLIENT_STREAMS
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
    payload = b"".join(parts)
    wrapper = stream._wrapper
    if wrapper._error is not None:  # what entering it checks
        raise wrapper._error
    if not _send_data_now(stream._stream, payload):
        with wrapper:  # a wait can be cut short by a stream reset
            await _send_data(stream._stream, payload)
    _count_sent(stream, len(messages))


def send_batch_now(stream: Stream[Any, Any], messages: list[bytes]) -> bool:
    """:func:`send_batch` of encoded messages when it would not wait; False, with nothing done,
    otherwise (and always on the public-API fallback).

    For a caller that must not wait itself: grpclib's ``Wrapper`` cancels the task that entered
    it when the stream is reset, so a write that has to wait belongs to the task that waits.
    """
    if not _usable(stream) or not stream._send_request_done or stream._wrapper._error is not None:
        return False
    parts: list[bytes] = []
    for body in messages:
        parts.append(_PREFIX + len(body).to_bytes(4, "big"))
        parts.append(body)
    if not _send_data_now(stream._stream, b"".join(parts)):
        return False
    _count_sent(stream, len(messages))
    return True


def _count_sent(stream: Any, count: int) -> None:
    # grpclib's send_message bookkeeping, for the messages one write carried.
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
        if not _append_data_frame(h2, h2s.id, payload):
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
    if end == 17:
        # One acknowledgement (a 9-byte header and 8 bytes of opaque data): nearly every call,
        # at one packet in flight, on the way from the socket to the engram.
        return (
            pending[3] == _PING_FRAME
            and (pending[4] & _ACK_FLAG) != 0
            and pending[2] == 8
            and not (pending[0] or pending[1])
        )
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


# --- HTTP/2 frames without h2's frame objects -----------------------------------------------------

_HEADER: Final = struct.Struct(">BHBBL")  # length (24 bits), type, flags, stream id
_DATA: Final = 0x0
_PING: Final = 0x6
_WINDOW_UPDATE: Final = 0x8
_END_STREAM_OR_PADDED: Final = 0x01 | 0x08
_STREAM_ID_MASK: Final = 0x7FFFFFFF
_MAX_WINDOW: Final = 2**31 - 1
_PING_ACK_HEADER: Final = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00"
_CONNECTION_WINDOW_UPDATED: Final = object()  # stands for h2's WindowUpdated(stream_id=0)

ACK_BATCH: Final = 64 * 1024
"""Most flow-controlled bytes a stream's reader has consumed before it returns them to h2.

It always returns them before it waits for more data, so the peer never waits on this; and it is
a sixty-fourth of the stream window :func:`bubu._transport.channel.flow_config` sets (h2 itself
only sends WINDOW_UPDATE once half a window has been consumed)."""


def _receive_frames(h2c: Any, data: bytes) -> list[Any]:
    """Apply the complete frames in ``data`` to ``h2c``; keep a partial one in its buffer.

    Returns h2's events in frame order, with ``(stream_id, payload)`` in place of the
    DataReceived and :data:`_CONNECTION_WINDOW_UPDATED` in place of the connection-level
    WindowUpdated of the frames read here. A frame is read here only when h2 would accept it
    with no other effect than the one applied (every check below is one h2 makes); anything else,
    in order, goes to ``h2c.receive_data`` as a frame of its own, which raises ProtocolError as it
    would have for the whole read.
    """
    items: list[Any] = []
    end_of_data = len(data)
    at = 0
    unpack = _HEADER.unpack_from
    max_size = h2c.max_inbound_frame_size
    streams = h2c.streams
    connection_window = h2c._inbound_flow_control_window_manager
    machine = h2c.state_machine
    while end_of_data - at >= 9:
        high, low, kind, flags, stream_id = unpack(data, at)
        length = high << 16 | low
        end = at + 9 + length
        if length > max_size:
            # h2 raises FrameTooLargeError once the frame is complete: let it buffer and count.
            items.extend(h2c.receive_data(data[at:]))
            return items
        if end > end_of_data:
            break
        stream_id &= _STREAM_ID_MASK
        if machine.state in _OPEN_CONNECTION:
            if kind == _DATA:
                stream = streams.get(stream_id) if stream_id else None
                if (
                    stream is not None
                    and not flags & _END_STREAM_OR_PADDED
                    and length <= connection_window.current_window_size
                    and stream.state_machine.state in _RECV_DATA_STATES
                    and stream.state_machine.headers_received
                    and stream._expected_content_length is None
                    and length <= stream._inbound_window_manager.current_window_size
                ):
                    connection_window.current_window_size -= length
                    stream._inbound_window_manager.current_window_size -= length
                    stream._actual_content_length += length
                    items.append((stream_id, data[at + 9 : end]))
                    at = end
                    continue
            elif kind == _PING:
                if length == 8 and not stream_id and not flags & _ACK_FLAG:
                    h2c._data_to_send += _PING_ACK_HEADER + data[at + 9 : end]
                    at = end
                    continue
            elif kind == _WINDOW_UPDATE and length == 4 and not stream_id:
                increment = int.from_bytes(data[at + 9 : end], "big") & _STREAM_ID_MASK
                if increment and h2c.outbound_flow_control_window + increment <= _MAX_WINDOW:
                    h2c.outbound_flow_control_window += increment
                    items.append(_CONNECTION_WINDOW_UPDATED)
                    at = end
                    continue
        items.extend(h2c.receive_data(data[at:end]))
        at = end
        if h2c.incoming_buffer._headers_buffer:
            break  # a header block is open: h2 checks the CONTINUATION frames that follow
    if at < end_of_data:
        rest = data[at:] if at else data
        if h2c.incoming_buffer._headers_buffer:
            items.extend(h2c.receive_data(rest))
        else:
            h2c.incoming_buffer._data += rest  # what h2 does with a partial frame
    return items


class _FastProtocol(_grpclib_protocol.H2Protocol):
    """grpclib's client protocol whose reads go through :func:`_receive_frames`."""

    def data_received(self, data: bytes) -> None:
        connection = self.connection
        h2c = connection._connection
        buffer = h2c.incoming_buffer
        processor = self.processor
        if not _enabled or buffer._headers_buffer or not hasattr(processor, "processors"):
            _grpclib_protocol.H2Protocol.data_received(self, data)
            return
        held = buffer._data
        if held:
            # A partial frame left by the last read: read it again with the rest, unless it
            # is too long (then h2 keeps buffering it and raises once it is complete).
            if len(held) >= 9 and int.from_bytes(held[:3], "big") > h2c.max_inbound_frame_size:
                _grpclib_protocol.H2Protocol.data_received(self, data)
                return
            data = bytes(held) + data
            buffer._data = bytearray()
        elif type(data) is not bytes:
            data = bytes(data)
        try:
            items = _receive_frames(h2c, data)
        except ProtocolError:
            _grpclib_protocol.log.debug("Protocol error", exc_info=True)
            processor.close("Protocol error")
            return
        # grpclib flushes before and after handling the events; with nothing to send that is a
        # no-op, and it is nearly always nothing after a read of DATA frames.
        if h2c._data_to_send:
            connection.flush()
        streams = processor.streams
        received = 0
        for item in items:
            if type(item) is tuple:
                # grpclib's EventsProcessor.process_data_received, for an unpadded frame.
                stream_id, payload = item
                size = len(payload)
                stream = streams.get(stream_id)
                if stream is not None:
                    stream.buffer.add(payload, size)
                    stream.data_received += size
                else:
                    connection.ack(stream_id, size)
                received += size
            elif item is _CONNECTION_WINDOW_UPDATED:
                for stream in streams.values():
                    stream.window_updated.set()
            else:
                processor.process(item)
                if not hasattr(processor, "processors"):
                    break  # closed by this event: grpclib ignores the events after it
        if received:
            connection.data_received += received
            connection.last_data_received = time.monotonic()
        if h2c._data_to_send:
            connection.flush()


class _FastBuffer(_grpclib_protocol.Buffer):
    """grpclib's stream Buffer without an asyncio.Queue, returning window in batches.

    Same contract: ``add`` per DATA frame, ``eof`` at END_STREAM, ``read(n)`` returns exactly
    ``n`` bytes (or ``b""`` at the end), an empty item ends a read early as in grpclib, and
    ``unacked_size`` (when the stream is released) hands back everything not yet returned.
    The flow-controlled size of what the reader consumed goes back to h2 once it reaches
    :data:`ACK_BATCH` or the reader has taken every frame received, so always before it waits.
    """

    def __init__(self, ack_callback: Any) -> None:  # no super(): no Queue
        self._ack_callback = ack_callback
        self._eof = False
        self._frames: collections.deque[tuple[bytes, int]] = collections.deque()
        self._chunks: collections.deque[bytes] = collections.deque()
        self._offset = 0  # into _chunks[0]
        self._acked_size = 0  # bytes in _chunks, from _offset
        self._owed = 0  # flow-controlled bytes consumed and not yet returned to h2
        self._waiter: asyncio.Future[None] | None = None
        # The reader waits between two messages in read_message (not inside one, in read).
        self._between = False
        # Takes the complete messages of a frame as it is added, while the reader waits
        # between messages (see direct_reads); True when it left nothing to wake the reader for.
        self.direct: Callable[[], bool] | None = None

    def add(self, data: bytes, ack_size: int) -> None:
        self._frames.append((data, ack_size))
        waiter = self._waiter
        if waiter is None:
            return
        if waiter.done():  # the reader was cancelled
            self._waiter = None
            return
        direct = self.direct
        if direct is not None and self._between:
            try:
                if direct():
                    return
            except BaseException as exc:  # the reader's to raise, as if it had read the frame
                self._waiter = None
                waiter.set_exception(exc)
                return
        self._waiter = None
        waiter.set_result(None)

    def eof(self) -> None:
        self.add(b"", 0)
        self._eof = True

    def _return_window(self) -> None:
        owed = self._owed
        self._owed = 0
        self._ack_callback(owed)

    async def read(self, size: int) -> bytes:
        assert size >= 0, "Size can not be negative"
        if size == 0:
            return b""
        frames = self._frames
        if self._acked_size < size and (not self._eof or frames):
            while self._acked_size < size:
                if not frames:
                    if self._owed:
                        self._return_window()
                    self._waiter = waiter = asyncio.get_running_loop().create_future()
                    await waiter
                    continue
                data, ack_size = frames.popleft()
                if not ack_size:
                    if self._owed:
                        self._return_window()  # the read ends here, short or at the end
                    break
                self._chunks.append(data)
                self._acked_size += len(data)
                self._owed += ack_size
            if self._owed and (self._owed >= ACK_BATCH or not frames):
                self._return_window()  # a batch, or the reader has caught up with the peer
        if self._eof and self._acked_size == 0:
            return b""
        if self._acked_size < size:
            raise AssertionError("Received less data than expected")
        self._acked_size -= size
        chunks = self._chunks
        first = chunks[0]
        start = self._offset
        stop = start + size
        if stop < len(first):
            self._offset = stop
            return first[start:stop]
        if stop == len(first):
            chunks.popleft()
            self._offset = 0
            return first[start:] if start else first
        parts = [first[start:] if start else first]
        chunks.popleft()
        self._offset = 0
        need = stop - len(first)
        while need:
            chunk = chunks[0]
            if len(chunk) <= need:
                parts.append(chunk)
                chunks.popleft()
                need -= len(chunk)
            else:
                parts.append(chunk[:need])
                self._offset = need
                need = 0
        return b"".join(parts)

    def take_message(self) -> bytes | None:
        """The next gRPC message when the next frame holds all of it and nothing is half read
        (the usual case), else None: what :meth:`read_message` would return, without waiting."""
        frames = self._frames
        if self._acked_size or self._chunks or not frames:
            return None
        data, ack_size = frames[0]
        if not ack_size or len(data) < 5 or data[0]:
            return None
        end = 5 + int.from_bytes(data[1:5], "big")
        if len(data) < end:
            return None
        frames.popleft()
        self._owed += ack_size
        if len(data) > end:  # more messages in this frame
            self._chunks.append(data)
            self._offset = end
            self._acked_size = len(data) - end
        if self._owed >= ACK_BATCH or not frames:
            self._return_window()
        return data[5:end]

    async def read_message(self) -> bytes | None:
        """One gRPC message: grpclib's ``recv_message`` reading (5-byte prefix, then the body)
        in one call, and without even that when the next frame holds the whole message."""
        body = self.take_message()
        if body is not None:
            return body
        # Nothing buffered (a reader keeping up with the peer): wait for the next frame here,
        # then take the message from it whole; anything else is read as grpclib reads it.
        while not (self._frames or self._chunks or self._eof):
            if self._owed:
                self._return_window()
            self._waiter = waiter = asyncio.get_running_loop().create_future()
            self._between = True
            try:
                await waiter
            finally:
                self._between = False
            body = self.take_message()
            if body is not None:
                return body
        meta = await self.read(5)
        if not meta:
            return None
        if meta[0]:
            # grpclib raises NotImplementedError here; this names what the peer did wrong.
            raise GrpclibProtocolError(
                "a gRPC message arrived marked compressed, but no compression was negotiated"
            )
        size = int.from_bytes(meta[1:], "big")
        body = await self.read(size)
        assert len(body) == size, f"{len(body)} != {size}"
        return body

    def unacked_size(self) -> int:
        size = self._owed + sum(ack_size for _, ack_size in self._frames)
        self._owed = 0
        self._frames.clear()
        return size


class _FastStream(_grpclib_protocol.Stream):
    """grpclib's HTTP/2 stream with a :class:`_FastBuffer`."""

    def init_stream(self, stream_id: int, connection: Any) -> None:
        super().init_stream(stream_id, connection)
        self.buffer = _FastBuffer(self.buffer._ack_callback)


def _window_update_due(manager: Any, size: int) -> bool:
    """Whether h2's ``WindowManager.process_bytes(size)`` would hand out window (its rule)."""
    processed = manager._bytes_processed + size
    most = manager.max_window_size
    return bool(
        processed
        and (
            (manager.current_window_size == 0 and processed > min(1024, most // 4))
            or processed >= most // 2
        )
    )


def _quiet_ack(h2c: Any, stream_id: int, size: int) -> bool:
    """Record ``size`` consumed bytes of ``stream_id`` as h2's ``acknowledge_received_data``
    does when neither window is due an update (no frame to send, so nothing to flush); False,
    with nothing changed, otherwise."""
    stream = h2c.streams.get(stream_id)
    if stream is None or not stream.open or stream_id <= 0 or size <= 0:
        return False
    connection_manager = h2c._inbound_flow_control_window_manager
    stream_manager = stream._inbound_window_manager
    if _window_update_due(connection_manager, size) or _window_update_due(stream_manager, size):
        return False
    connection_manager._bytes_processed += size
    stream_manager._bytes_processed += size
    return True


class _FastConnection(_grpclib_protocol.Connection):
    """grpclib's connection whose new streams are :class:`_FastStream`, and whose ``ack``
    skips h2 and the flush when it would send nothing."""

    def ack(self, stream_id: int, size: int) -> None:
        if size and _enabled and _quiet_ack(self._connection, stream_id, size):
            return
        _grpclib_protocol.Connection.ack(self, stream_id, size)

    def create_stream(self, *, stream_id: int | None = None, wrapper: Any = None) -> Any:
        return _FastStream(
            self, self._connection, self._transport, stream_id=stream_id, wrapper=wrapper
        )


class _FastClientStream(Stream):  # type: ignore[type-arg]
    """grpclib's client stream whose ``recv_message`` reads a :class:`_FastBuffer` directly."""

    async def recv_message(self) -> Any:
        h2s: Any = self._stream if self._recv_initial_metadata_done else None
        buffer = getattr(h2s, "buffer", None)
        if (
            not _enabled
            or type(buffer) is not _FastBuffer
            or self._dispatch.__dict__.get("recv_message") is not _grpclib_ident
        ):
            return await Stream.recv_message(self)
        # grpclib's Stream.recv_message, with no event listeners to dispatch to. Its Wrapper
        # lets a stream reset cancel a reader that waits; one that does not wait only needs
        # the check on entry.
        wrapper = self._wrapper
        if wrapper._error is not None:
            raise wrapper._error
        body = buffer.take_message()
        if body is not None:
            message = self._codec.decode(body, self._recv_type)
        else:
            with wrapper:
                body = await buffer.read_message()
                if body is None:
                    return None
                message = self._codec.decode(body, self._recv_type)
        _count_received(self, h2s.connection)
        return message


def _count_received(stream: Any, connection: Any) -> None:
    # grpclib's recv_message bookkeeping, for one message.
    stream._messages_received += 1
    connection.messages_received += 1
    connection.last_message_received = time.monotonic()


_CLIENT_STREAMS: Final = (Stream, _FastClientStream)


def direct_reads(
    stream: Stream[Any, Any], deliver: Callable[[Any], None]
) -> Callable[[], None] | None:
    """Hand ``stream``'s complete messages to ``deliver`` from the protocol callback, as their
    frames arrive, while the stream's reader waits between messages in ``recv_message``.

    A reader that keeps up with its peer waits there for every message; waking it is one more
    event-loop turn per message before anything is done with it (docs/performance.md#vs-go).
    Here the frame's messages are decoded as ``recv_message`` decodes them (same codec, same
    counters, same window returned) and given to ``deliver`` at once. Whatever else the frame
    holds (the start of a message, the end of the stream) wakes the reader, which reads it as
    before. An exception from the codec or from ``deliver`` is raised in the reader, by the
    ``recv_message`` that was waiting, with the messages after it still buffered, in order.
    A reader that waits anywhere else (inside a message, or not in ``recv_message`` at all) is
    not bypassed. Nothing is done on the fallback (grpclib's buffer, event listeners,
    :func:`disable`). Returns the function that stops it, or None when it cannot start yet:
    before the response headers are read (the first ``recv_message`` reads them); call again
    after that.
    """
    h2s: Any = getattr(stream, "_stream", None)
    buffer = getattr(h2s, "buffer", None)
    if not _enabled or type(stream) is not _FastClientStream or type(buffer) is not _FastBuffer:
        return _no_stop
    if not stream._recv_initial_metadata_done:
        return None
    wrapper = stream._wrapper
    codec = stream._codec
    recv_type = stream._recv_type
    dispatch = stream._dispatch.__dict__
    connection = h2s.connection

    def read() -> bool:
        if (
            not _enabled
            or wrapper._error is not None
            or dispatch.get("recv_message") is not _grpclib_ident
        ):
            return False
        take = buffer.take_message
        while (body := take()) is not None:
            message = codec.decode(body, recv_type)
            _count_received(stream, connection)
            deliver(message)
        return not (buffer._frames or buffer._chunks)

    def stop() -> None:
        if buffer.direct is read:
            buffer.direct = None

    buffer.direct = read
    return stop


def _no_stop() -> None:
    pass


class _FastChannel(Channel):
    """grpclib's channel whose streams are :class:`_FastClientStream`."""

    def request(self, *args: Any, **kwargs: Any) -> Any:
        stream = Channel.request(self, *args, **kwargs)
        if _enabled and _FRAMES_REASON is None and type(stream) is Stream:
            stream.__class__ = _FastClientStream
        return stream


def fast_channel(channel: Channel) -> Channel:
    """Let ``channel``'s streams read messages straight from a :class:`_FastBuffer` (see
    :func:`fast_frames`); they fall back to grpclib's reading per call on any other buffer, with
    event listeners, or after :func:`disable`. Returns ``channel``."""
    if _enabled and _FRAMES_REASON is None and type(channel) is Channel:
        channel.__class__ = _FastChannel
    return channel


def fast_frames(protocol: Any) -> bool:
    """Read this client connection's frames without h2's frame objects where h2 allows it.

    Received DATA (unpadded, not ending the stream, on an open stream, within both windows),
    PING and connection WINDOW_UPDATE frames are applied to h2's state directly, with the same
    checks and the same effects (windows, stream state, the PING acknowledgement, grpclib's
    stream buffer); every other frame, and any one of those h2 would refuse, goes through h2 in
    the same order. New streams get a :class:`_FastBuffer`. Returns whether it was installed
    (not on the fallback, nor when grpclib's or h2's internals are not the expected ones); a
    :func:`disable` later sends every read through h2 again.
    """
    if not _enabled or _FRAMES_REASON is not None:
        return False
    connection = getattr(protocol, "connection", None)
    h2c = getattr(connection, "_connection", None)
    if (
        type(protocol) is not _grpclib_protocol.H2Protocol
        or type(connection) is not _grpclib_protocol.Connection
        or type(h2c) is not H2Connection
        or type(h2c.config.logger) is not DummyLogger
        or type(h2c.incoming_buffer) not in (FrameBuffer, _QuietFrameBuffer)
        or h2c.incoming_buffer._preamble_len
        or not isinstance(h2c._data_to_send, bytearray)
    ):
        return False
    protocol.__class__ = _FastProtocol
    connection.__class__ = _FastConnection
    return True


def _append_data_frame(h2c: Any, stream_id: int, payload: bytes) -> bool:
    """Queue one DATA frame (no END_STREAM, no padding) as ``h2c.send_data`` would, or return
    False to leave it to h2: when the connection or stream state is not one where sending data
    changes nothing but the windows, or ``payload`` exceeds a window or the frame size (h2
    raises there)."""
    if _FRAMES_REASON is not None or h2c.state_machine.state not in _OPEN_CONNECTION:
        return False
    stream = h2c.streams.get(stream_id)
    size = len(payload)
    if (
        stream is None
        or stream.state_machine.state not in _SEND_DATA_STATES
        or size > h2c.outbound_flow_control_window
        or size > stream.outbound_flow_control_window
        or size > h2c.max_outbound_frame_size
        or type(h2c.config.logger) is not DummyLogger
    ):
        return False
    pending = h2c._data_to_send
    pending += _HEADER.pack(size >> 16, size & 0xFFFF, _DATA, 0, stream_id & _STREAM_ID_MASK)
    pending += payload
    stream.outbound_flow_control_window -= size
    h2c.outbound_flow_control_window -= size
    return True


def _send_data_now(h2s: Any, data: bytes) -> bool:
    """:func:`_send_data` when it would not wait: the connection writable and ``data`` within
    the windows, so the same frames (split at the frame size) built by
    :func:`_append_data_frame`, in one write instead of one per frame. False, with nothing
    done, otherwise."""
    connection = h2s.connection
    h2c = h2s._h2_connection
    total = len(data)
    if not total or not connection.write_ready.is_set():
        return False
    if total > h2c.local_flow_control_window(h2s.id):
        return False
    frame_size = h2c.max_outbound_frame_size
    if total <= frame_size:
        if not _append_data_frame(h2c, h2s.id, data):
            return False
    else:
        view = memoryview(data)
        if not _append_data_frame(h2c, h2s.id, bytes(view[:frame_size])):
            return False
        for at in range(frame_size, total, frame_size):
            chunk = bytes(view[at : at + frame_size])
            if not _append_data_frame(h2c, h2s.id, chunk):
                h2c.send_data(h2s.id, chunk)  # the same state as the first: h2 says why not
    h2s._transport.write(h2c.data_to_send())
    h2s.data_sent += total
    connection.data_sent += total
    connection.data_send_process()
    return True


async def _send_data(h2s: Any, data: bytes) -> None:
    """grpclib's ``Stream.send_data(data, end_stream=False)`` with frames from
    :func:`_append_data_frame`: the same chunks (window and frame size), waits and counters."""
    connection = h2s.connection
    h2c = h2s._h2_connection
    transport = h2s._transport
    total = len(data)
    sent = 0
    while True:
        await connection.write_ready.wait()
        window = h2c.local_flow_control_window(h2s.id)
        if not window > 0:  # it can be negative
            h2s.window_updated.clear()
            await h2s.window_updated.wait()
            continue  # others may have sent meanwhile: check again
        size = min(window, h2c.max_outbound_frame_size, total - sent)
        chunk = data if size == total else data[sent : sent + size]
        sent += size
        if not _append_data_frame(h2c, h2s.id, chunk):
            h2c.send_data(h2s.id, chunk)
        transport.write(h2c.data_to_send())
        h2s.data_sent += size
        connection.data_sent += size
        connection.data_send_process()
        if sent == total:
            break
