"""The HTTP/2 frame fast path (``_fastpath.fast_frames``) against grpclib + h2 on the same bytes.

Two grpclib client protocols, one as grpclib builds it and one with the fast path installed, are
driven the same way and fed the same server byte stream, cut at many places; everything either
of them can observe must match: the bytes they write, h2's windows and stream states, what each
stream's reader gets, grpclib's counters, and whether (and how) a protocol error closes it.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from grpclib.config import Configuration
from grpclib.exceptions import ProtocolError
from grpclib.protocol import AbstractHandler, H2Protocol
from h2.config import H2Configuration
from h2.connection import H2Connection
from h2.events import RequestReceived
from h2.settings import SettingCodes
from h2.windows import WindowManager
from hyperframe.frame import (
    DataFrame,
    HeadersFrame,
    PingFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)
from hypothesis import given
from hypothesis import strategies as st

from bubu._transport import _fastpath
from bubu._transport.channel import flow_config

STREAMS = 4  # 4 stream windows of 4 MiB: more than the 12 MiB connection window
REQUEST = [(":method", "POST"), (":scheme", "http"), (":path", "/s/M"), (":authority", "x")]
RESPONSE = [(":status", "200"), ("content-type", "application/grpc")]


@pytest.fixture(autouse=True)
def _fast_path_on() -> Iterator[None]:
    # Explicit: CI runs this module again with --transport-fast-path=off, and these tests compare
    # the two paths whatever the session default is.
    was = _fastpath.enabled()
    _fastpath.enable()
    yield
    _fastpath.enable() if was else _fastpath.disable()


class _Transport:
    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written += data

    def is_closing(self) -> bool:
        return self.closed

    def close(self) -> None:
        self.closed = True

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return default


class _Handler(AbstractHandler):
    def accept(self, stream: Any, headers: Any, release_stream: Any) -> None:
        raise AssertionError("a client accepts no streams")

    def cancel(self, stream: Any) -> None:
        pass

    def close(self) -> None:
        pass


def _h2_config() -> H2Configuration:
    # grpclib's client settings (grpclib.client.Channel)
    return H2Configuration(
        client_side=True,
        header_encoding="ascii",
        validate_inbound_headers=False,
        validate_outbound_headers=False,
        normalize_inbound_headers=False,
        normalize_outbound_headers=False,
    )


class _Client:
    """A grpclib client protocol on a recording transport, fast or as grpclib builds it."""

    def __init__(self, fast: bool) -> None:
        self.protocol = H2Protocol(_Handler(), flow_config().__for_client__(), _h2_config())
        self.transport = _Transport()
        self.protocol.connection_made(self.transport)  # type: ignore[arg-type]
        if fast:
            assert _fastpath.fast_frames(self.protocol)
            assert type(self.protocol).__name__ == "_FastProtocol"
        self.streams: list[Any] = []
        self.released: list[Any] = []

    async def open_stream(self) -> Any:
        stream = self.protocol.connection.create_stream()
        release = await stream.send_request(REQUEST, _processor=self.protocol.processor)
        self.streams.append(stream)
        self.released.append(release)
        return stream

    @property
    def h2(self) -> Any:
        return self.protocol.connection._connection

    def feed(self, data: bytes, cuts: list[int]) -> None:
        at = 0
        for cut in [*cuts, len(data)]:
            if self.transport.closed:
                break  # asyncio reads no more
            if cut > at:
                self.protocol.data_received(data[at:cut])
                at = cut

    def state(self) -> dict[str, Any]:
        h2 = self.h2
        connection = self.protocol.connection
        closed = not hasattr(self.protocol.processor, "processors")
        out: dict[str, Any] = {
            "written": bytes(self.transport.written),
            "closed": closed,
            "transport_closed": self.transport.closed,
            "h2_state": h2.state_machine.state,
            "out_window": h2.outbound_flow_control_window,
            "in_window": h2._inbound_flow_control_window_manager.current_window_size,
            "in_processed": h2._inbound_flow_control_window_manager._bytes_processed,
            "pending": bytes(h2._data_to_send),
            # Once a protocol error closed the connection, what h2 left unparsed is never read.
            "buffered": None if closed else bytes(h2.incoming_buffer._data),
            "data_received": connection.data_received,
            "streams": {},
        }
        for stream in self.streams:
            h2s = h2.streams.get(stream.id)
            out["streams"][stream.id] = {
                "data_received": stream.data_received,
                "window_updated": stream.window_updated.is_set(),
                "headers": stream.headers,
                "trailers": stream.trailers,
                "h2": None
                if h2s is None
                else (
                    h2s.state_machine.state,
                    h2s.outbound_flow_control_window,
                    h2s._inbound_window_manager.current_window_size,
                    h2s._inbound_window_manager._bytes_processed,
                    h2s._actual_content_length,
                ),
            }
        return out


async def _drain(stream: Any, limit: int) -> tuple[bytes, str]:
    """Read what the stream's buffer holds, in the chunks a gRPC reader asks for, without
    waiting for more (``limit`` bytes at most)."""
    out = bytearray()
    outcome = "ok"
    while len(out) < limit:
        try:
            chunk = await asyncio.wait_for(stream.recv_data(min(7, limit - len(out))), 0.05)
        except TimeoutError:
            outcome = "waiting"
            break
        except AssertionError as exc:
            outcome = f"assertion: {exc}"
            break
        if not chunk:
            outcome = "eof"
            break
        out += chunk
    return bytes(out), outcome


def _server_for(client_bytes: bytes) -> H2Connection:
    server = H2Connection(H2Configuration(client_side=False, validate_inbound_headers=False))
    server.initiate_connection()
    events = server.receive_data(client_bytes)
    assert any(isinstance(e, RequestReceived) for e in events)
    return server  # its preface and SETTINGS ack lead what the test sends


def _frames(*frames: Any) -> bytes:
    return b"".join(f.serialize() for f in frames)


def _data(stream_id: int, body: bytes, *flags: str, pad: int | None = None) -> bytes:
    frame = DataFrame(stream_id, body)
    for flag in flags:
        frame.flags.add(flag)
    if pad is not None:
        frame.flags.add("PADDED")
        frame.pad_length = pad
    return frame.serialize()


def _cuttings(data: bytes, seed: int) -> list[list[int]]:
    rng = random.Random(seed)
    size = len(data)
    if size > 100_000:  # megabytes: reads of a socket's size, not of a byte
        return [[], list(range(0, size, 65536)), list(range(0, size, 16384 + 9 + 5))]
    return [
        [],  # one read
        list(range(1, size)),  # one byte per read
        sorted(rng.sample(range(1, size), min(size - 1, 12))),
        list(range(0, size, 9)),  # cuts inside and between frame headers
    ]


async def _compare(
    script: Any, cuttings_seed: int = 0, read_limit: int = 1 << 20
) -> list[dict[str, Any]]:
    """Run ``script(server, client_bytes) -> bytes`` both ways over every cutting; compare."""
    results = []
    reference = _Client(fast=False)
    for _ in range(STREAMS):
        await reference.open_stream()
    server = _server_for(bytes(reference.transport.written))
    wire = script(server)
    for cuts in _cuttings(wire, cuttings_seed):
        states = []
        for fast in (False, True):
            client = _Client(fast=fast)
            for _ in range(STREAMS):
                await client.open_stream()
            client.feed(wire, cuts)
            # After a protocol error grpclib cancels every reader (StreamTerminatedError).
            closed = client.transport.closed
            reads = [] if closed else [await _drain(s, read_limit) for s in client.streams]
            state = client.state()
            state["reads"] = reads
            # What reading gave back to the peer once the readers have waited.
            state["after_read_written"] = bytes(client.transport.written)
            for release in client.released:
                if not state["closed"]:
                    release()
            state["after_release"] = client.state()
            states.append(state)
        assert states[0] == states[1], cuts
        results.append(states[0])
    return results


# --- the happy path and everything around it ---------------------------------------------------


async def test_data_ping_and_window_updates_match_h2() -> None:
    def script(server: H2Connection) -> bytes:
        server.send_headers(1, RESPONSE)
        server.send_headers(3, RESPONSE)
        for i in range(40):
            body = bytes([i]) * (i * 37 % 900)
            server.send_data(1 if i % 3 else 3, b"\x00" + len(body).to_bytes(4, "big") + body)
            if i % 5 == 0:
                server.ping(f"ping{i:04d}".encode())
            if i % 7 == 0:
                server.increment_flow_control_window(1000 + i)
            if i % 11 == 0:
                server.increment_flow_control_window(500, stream_id=1)
        return server.data_to_send()

    for result in await _compare(script):
        assert result["reads"][0][1] == "waiting"
        assert result["reads"][0][0]
        assert not result["closed"]
        assert result["written"].count(b"\x00\x00\x08\x06\x01") == 8  # a PING ack each


async def test_frames_h2_keeps_match_h2() -> None:
    # Padded DATA, END_STREAM DATA, a PING ack, SETTINGS (new window, frame size), trailers,
    # an empty DATA frame, a stream WINDOW_UPDATE, an unknown frame type, RST_STREAM.
    def script(server: H2Connection) -> bytes:
        server.send_headers(1, RESPONSE)
        server.send_headers(3, RESPONSE)
        out = bytearray(server.data_to_send())
        out += _data(1, b"\x00\x00\x00\x00\x03abc", pad=4)
        out += _frames(PingFrame(0, opaque_data=b"12345678", flags=["ACK"]))
        out += _data(1, b"")
        settings = SettingsFrame(0)
        settings.settings = {SettingCodes.INITIAL_WINDOW_SIZE: 70000}
        out += settings.serialize()
        out += _data(3, b"\x00\x00\x00\x00\x02hi")
        out += _data(1, b"\x00\x00\x00\x00\x01z", "END_STREAM")
        out += _frames(RstStreamFrame(3, error_code=8))
        out += _data(3, b"late")  # after the reset: h2 answers with RST_STREAM
        return bytes(out)

    for result in await _compare(script):
        assert not result["closed"]


async def test_headers_with_continuation_match_h2() -> None:
    def script(server: H2Connection) -> bytes:
        server.send_headers(1, RESPONSE)
        out = server.data_to_send() + _data(1, b"\x00\x00\x00\x00\x01a")
        server.send_headers(3, RESPONSE)
        block = server.data_to_send()
        # The HEADERS frame of stream 3 as HEADERS + CONTINUATION, split by hand.
        payload = block[9:]
        first = HeadersFrame(3, payload[:2])  # no END_HEADERS
        second = b"".join(
            [len(payload[2:]).to_bytes(3, "big"), b"\x09\x04", (3).to_bytes(4, "big"), payload[2:]]
        )
        return out + first.serialize() + second + _data(3, b"\x00\x00\x00\x00\x01b")

    for result in await _compare(script):
        assert result["streams"][3]["headers"] is not None


async def test_a_frame_larger_than_a_read_matches_h2() -> None:
    def script(server: H2Connection) -> bytes:
        server.send_headers(1, RESPONSE)
        body = bytes(range(256)) * 60  # 15 KiB: one frame, cut by most cuttings
        server.send_data(1, b"\x00" + len(body).to_bytes(4, "big") + body)
        server.send_data(1, b"\x00" + len(body).to_bytes(4, "big") + body)
        return server.data_to_send()

    await _compare(script)


# --- protocol errors: found exactly where h2 finds them ----------------------------------------


def _opened(server: H2Connection) -> bytes:
    server.send_headers(1, RESPONSE)
    server.send_headers(3, RESPONSE)
    return server.data_to_send() + _data(1, b"\x00\x00\x00\x00\x01a")


ERRORS: dict[str, Any] = {
    # DATA beyond the stream window (4 MiB): sent by a peer that ignores flow control.
    "stream window": lambda s: _opened(s) + b"".join(_data(1, b"x" * 16384) for _ in range(257)),
    # Beyond the connection window (12 MiB) across both streams, each within its own.
    "connection window": lambda s: (
        _opened(s) + b"".join(_data(1 + 2 * (i % 4), b"x" * 16384) for i in range(770))
    ),
    "unknown stream": lambda s: _opened(s) + _data(9, b"x"),
    "stream 0": lambda s: _opened(s) + b"\x00\x00\x01\x00\x00\x00\x00\x00\x00x",
    "too long": lambda s: _opened(s) + b"\x00\x40\x01\x00\x00\x00\x00\x00\x01" + b"x" * 16385,
    "ping length": lambda s: _opened(s) + b"\x00\x00\x07\x06\x00\x00\x00\x00\x00" + b"x" * 7,
    "ping on a stream": lambda s: _opened(s) + b"\x00\x00\x08\x06\x00\x00\x00\x00\x01" + b"x" * 8,
    "zero window increment": lambda s: (
        _opened(s) + b"\x00\x00\x04\x08\x00\x00\x00\x00\x00" + bytes(4)
    ),
    "window overflow": lambda s: (
        _opened(s) + _frames(WindowUpdateFrame(0, window_increment=2**31 - 1))
    ),
    "data before headers": lambda s: (
        (s.send_headers(3, RESPONSE), s.data_to_send())[1] + _data(1, b"x")
    ),
    "data after goaway": lambda s: (
        _opened(s) + b"\x00\x00\x08\x07\x00\x00\x00\x00\x00" + bytes(8) + _data(1, b"x")
    ),
    "bad padding": lambda s: _opened(s) + b"\x00\x00\x02\x00\x08\x00\x00\x00\x01\x05x",
}


@pytest.mark.parametrize("case", sorted(ERRORS))
async def test_protocol_errors_match_h2(case: str) -> None:
    results = await _compare(ERRORS[case], read_limit=64)
    assert all(r["closed"] or r["streams"][1]["h2"] is None for r in results)


async def test_a_read_after_a_stream_is_released_is_acknowledged_at_once() -> None:
    def script(server: H2Connection) -> bytes:
        return _opened(server)

    for fast in (False, True):
        client = _Client(fast=fast)
        await client.open_stream()
        await client.open_stream()
        wire = script(_server_for(bytes(client.transport.written)))
        client.released[0]()  # grpclib forgets stream 1; h2 still has it open
        before = client.protocol.connection._connection._inbound_flow_control_window_manager
        processed = before._bytes_processed
        client.feed(wire, [])
        assert before._bytes_processed == processed + 6


# --- the stream buffer ---------------------------------------------------------------------------


async def _buffer_run(buffer: Any, frames: list[tuple[bytes, int]], sizes: list[int]) -> Any:
    acks: list[int] = []
    buffer._ack_callback = acks.append
    for data, ack in frames:
        buffer.add(data, ack)
    out = []
    for size in sizes:
        try:
            out.append(await asyncio.wait_for(buffer.read(size), 0.01))
        except TimeoutError:
            out.append("waits")
            break
        except AssertionError as exc:
            out.append(str(exc))
            break
    # grpclib returns window as the reader takes each frame, the fast buffer in batches: the
    # same total either way, once the stream is released.
    return out, sum(acks) + buffer.unacked_size()


@given(
    bodies=st.lists(st.binary(max_size=40), max_size=8),
    sizes=st.lists(st.integers(0, 60), max_size=10),
    padding=st.integers(0, 3),
    eof=st.booleans(),
)
def test_fast_buffer_reads_what_grpclib_buffer_reads(
    bodies: list[bytes], sizes: list[int], padding: int, eof: bool
) -> None:
    from grpclib.protocol import Buffer

    frames = [(b, len(b) + padding) for b in bodies]

    async def run(cls: Any) -> Any:
        buffer = cls(lambda size: None)
        if eof:
            for data, ack in frames:
                buffer.add(data, ack)
            buffer.eof()
            return await _buffer_run(buffer, [], sizes)
        return await _buffer_run(buffer, frames, sizes)

    assert asyncio.run(run(Buffer)) == asyncio.run(run(_fastpath._FastBuffer))


async def test_fast_buffer_returns_window_when_caught_up_and_in_batches() -> None:
    acks: list[int] = []
    buffer = _fastpath._FastBuffer(acks.append)
    body = b"x" * 1000
    for _ in range(3):
        buffer.add(body, 1001)
    for _ in range(2):
        assert await buffer.read(1000) == body
    assert acks == []  # frames still waiting, far below the batch: nothing returned yet
    assert await buffer.read(1000) == body
    assert acks == [3003]  # the reader took the last frame: returned before it can wait
    frames = _fastpath.ACK_BATCH // 1000 + 1
    for _ in range(frames + 1):
        buffer.add(body, 1000)
    for _ in range(frames):
        await buffer.read(1000)
    assert acks == [3003, frames * 1000]  # a batch went back with a frame still unread
    reader = asyncio.ensure_future(buffer.read(2000))
    await asyncio.sleep(0)
    assert acks == [3003, frames * 1000, 1000]  # returned before waiting for more
    buffer.add(body, 1000)
    assert await reader == body * 2


async def test_fast_buffer_returns_window_when_an_empty_frame_ends_a_read() -> None:
    acks: list[int] = []
    buffer = _fastpath._FastBuffer(acks.append)
    buffer.add(b"abc", 3)
    buffer.add(b"", 0)
    buffer.add(b"d", 1)
    with pytest.raises(AssertionError, match="less data"):
        await buffer.read(5)
    assert acks == [3]  # as grpclib: taken, so returned


async def test_fast_buffer_read_cancelled_while_waiting_loses_nothing() -> None:
    buffer = _fastpath._FastBuffer(lambda size: None)
    buffer.add(b"abc", 3)
    reader = asyncio.ensure_future(buffer.read(5))
    await asyncio.sleep(0)
    reader.cancel()
    with pytest.raises(asyncio.CancelledError):
        await reader
    buffer.add(b"defg", 4)
    assert await buffer.read(5) == b"abcde"
    assert await buffer.read(2) == b"fg"


async def test_fast_buffer_joins_a_read_across_frames() -> None:
    buffer = _fastpath._FastBuffer(lambda size: None)
    for part in (b"ab", b"cd", b"efg"):
        buffer.add(part, len(part))
    assert await buffer.read(1) == b"a"
    assert await buffer.read(5) == b"bcdef"
    assert await buffer.read(1) == b"g"


# --- window acknowledgements ---------------------------------------------------------------------


@given(
    window=st.integers(1, 1 << 20),
    sizes=st.lists(st.integers(1, 1 << 18), min_size=1, max_size=20),
    consumed=st.integers(0, 1 << 20),
)
def test_window_update_due_is_h2s_rule(window: int, sizes: list[int], consumed: int) -> None:
    manager = WindowManager(window)
    manager.window_consumed(min(consumed, window))
    for size in sizes:
        due = _fastpath._window_update_due(manager, size)
        increment = manager.process_bytes(size)
        assert due == (manager._bytes_processed == 0), (window, size)
        assert not increment or due


async def test_connection_ack_sends_what_h2_sends() -> None:
    rng = random.Random(7)
    sizes = [rng.choice((5, 700, 1024, 16384, 16393)) for _ in range(3000)]
    written = []
    for fast in (False, True):
        client = _Client(fast=fast)
        stream = await client.open_stream()
        server = _server_for(bytes(client.transport.written))
        server.send_headers(1, RESPONSE)
        client.feed(server.data_to_send(), [])
        h2 = client.h2
        marks = []
        for i, size in enumerate(sizes):
            # The peer's DATA as far as h2's windows go, then the reader's acknowledgement of
            # it (a few at a time, as a batch does).
            h2._inbound_flow_control_window_manager.window_consumed(size)
            h2.streams[1]._inbound_window_manager.window_consumed(size)
            if i % 3 == 2:
                client.protocol.connection.ack(stream.id, sum(sizes[i - 2 : i + 1]))
            marks.append(len(client.transport.written) + len(h2._data_to_send))
        written.append((bytes(client.transport.written), marks))
    assert written[0] == written[1]
    assert written[0][0].count(b"\x00\x00\x04\x08") > 2  # WINDOW_UPDATEs were sent


async def test_connection_ack_on_an_unknown_stream_raises_like_h2() -> None:
    from h2.exceptions import NoSuchStreamError

    for fast in (False, True):
        client = _Client(fast=fast)
        await client.open_stream()
        with pytest.raises(NoSuchStreamError):
            client.protocol.connection.ack(99, 5)


# --- sending -------------------------------------------------------------------------------------


async def _send_both(payloads: list[bytes], prepare: Any = None) -> list[Any]:
    from grpclib.protocol import Stream as ProtocolStream

    results = []
    for fast in (False, True):
        client = _Client(fast=False)
        stream = await client.open_stream()
        server = _server_for(bytes(client.transport.written))
        client.feed(server.data_to_send(), [])
        if prepare is not None:
            prepare(client, server)
        outcome = "ok"
        for payload in payloads:
            try:
                if fast:
                    await asyncio.wait_for(_fastpath._send_data(stream, payload), 0.05)
                else:
                    await asyncio.wait_for(ProtocolStream.send_data(stream, payload), 0.05)
            except TimeoutError:
                outcome = "waiting"
                break
            except Exception as exc:
                outcome = repr(exc)
                break
        h2s = client.h2.streams.get(stream.id)
        results.append(
            (
                bytes(client.transport.written),
                outcome,
                client.h2.outbound_flow_control_window,
                None
                if h2s is None
                else (h2s.outbound_flow_control_window, h2s.state_machine.state),
                stream.data_sent,
                client.protocol.connection.data_sent,
            )
        )
    assert results[0] == results[1]
    return results


async def test_send_data_writes_what_h2_writes() -> None:
    await _send_both([b"\x00\x00\x00\x00\x03abc", b"y" * 40000, b"z" * 16384, b"w"])


async def test_send_data_splits_at_a_smaller_frame_size_and_the_window() -> None:
    def prepare(client: _Client, server: H2Connection) -> None:
        settings = SettingsFrame(0)
        settings.settings = {
            SettingCodes.INITIAL_WINDOW_SIZE: 30000,
            SettingCodes.MAX_FRAME_SIZE: 16384,
        }
        client.feed(settings.serialize(), [])

    results = await _send_both([b"a" * 20000, b"b" * 20000], prepare)
    assert results[0][1] == "waiting"  # the stream window ran out


async def test_send_data_on_a_half_closed_and_a_reset_stream() -> None:
    def half_closed(client: _Client, server: H2Connection) -> None:
        server.send_headers(1, RESPONSE, end_stream=True)
        client.feed(server.data_to_send(), [])

    def reset(client: _Client, server: H2Connection) -> None:
        client.feed(_frames(RstStreamFrame(1, error_code=8)), [])

    assert (await _send_both([b"abc"], half_closed))[0][1] == "ok"
    assert (await _send_both([b"abc"], reset))[0][1] != "ok"


async def test_staged_receipts_are_the_frame_h2_builds() -> None:
    from bubu._transport._fastpath import _append_data_frame

    written = []
    for fast in (False, True):
        client = _Client(fast=False)
        stream = await client.open_stream()
        server = _server_for(bytes(client.transport.written))
        client.feed(server.data_to_send(), [])
        if fast:
            assert _append_data_frame(client.h2, stream.id, b"receipt")
        else:
            client.h2.send_data(stream.id, b"receipt")
        written.append((client.h2.data_to_send(), client.h2.outbound_flow_control_window))
    assert written[0] == written[1]


def test_data_frames_are_left_to_h2_when_they_do_not_fit() -> None:
    from bubu._transport._fastpath import _append_data_frame

    h2 = H2Connection(_h2_config())
    h2.initiate_connection()
    h2.send_headers(1, REQUEST)
    assert not _append_data_frame(h2, 1, b"x" * 70000)  # over the 65535 window
    assert not _append_data_frame(h2, 3, b"x")  # no such stream
    h2.end_stream(1)
    assert not _append_data_frame(h2, 1, b"x")  # half-closed (local)


# --- installing it -------------------------------------------------------------------------------


def test_fast_frames_is_not_installed_on_the_fallback_or_a_foreign_protocol() -> None:
    protocol = H2Protocol(_Handler(), Configuration().__for_client__(), _h2_config())
    protocol.connection_made(_Transport())  # type: ignore[arg-type]
    _fastpath.disable()
    assert not _fastpath.fast_frames(protocol)
    _fastpath.enable()

    class Other(H2Protocol):
        pass

    other = Other(_Handler(), Configuration().__for_client__(), _h2_config())
    other.connection_made(_Transport())  # type: ignore[arg-type]
    assert not _fastpath.fast_frames(other)
    assert not _fastpath.fast_frames(object())
    assert type(protocol) is H2Protocol


async def test_disabled_after_install_every_read_goes_through_h2() -> None:
    client = _Client(fast=True)
    stream = await client.open_stream()
    server = _server_for(bytes(client.transport.written))
    server.send_headers(1, RESPONSE)
    server.send_data(1, b"\x00\x00\x00\x00\x02ok")
    wire = server.data_to_send()
    seen = []
    original = client.h2.receive_data

    def spy(data: bytes) -> Any:
        seen.append(len(data))
        return original(data)

    client.h2.receive_data = spy
    _fastpath.disable()
    client.feed(wire, [])
    assert seen == [len(wire)]
    assert await stream.recv_data(7) == b"\x00\x00\x00\x00\x02ok"


def test_frames_check_passes_on_the_pinned_versions() -> None:
    assert _fastpath._frames_check() is None


async def test_send_data_resumes_when_the_window_opens() -> None:
    from grpclib.protocol import Stream as ProtocolStream

    written = []
    for fast in (False, True):
        client = _Client(fast=fast)
        stream = await client.open_stream()
        server = _server_for(bytes(client.transport.written))
        settings = SettingsFrame(0)
        settings.settings = {SettingCodes.INITIAL_WINDOW_SIZE: 30000}
        client.feed(server.data_to_send() + settings.serialize(), [])
        send = _fastpath._send_data if fast else ProtocolStream.send_data
        sender = asyncio.ensure_future(send(stream, b"q" * 50000))
        for _ in range(3):
            await asyncio.sleep(0)
        assert not sender.done()  # the stream window (30000) ran out
        client.feed(_frames(WindowUpdateFrame(1, window_increment=25000)), [])
        await asyncio.wait_for(sender, 1)
        written.append((bytes(client.transport.written), client.h2.outbound_flow_control_window))
    assert written[0] == written[1]


def test_data_frames_are_left_to_h2_on_a_closed_connection() -> None:
    from bubu._transport._fastpath import _append_data_frame

    h2 = H2Connection(_h2_config())
    h2.initiate_connection()
    h2.send_headers(1, REQUEST)
    h2.close_connection()
    assert not _append_data_frame(h2, 1, b"x")


async def test_a_read_of_another_buffer_type_matches_h2() -> None:
    def script(server: H2Connection) -> bytes:
        server.send_headers(1, RESPONSE)
        server.send_data(1, b"\x00\x00\x00\x00\x02ok")
        server.ping(b"pingpong")
        return server.data_to_send()

    states = []
    for fast in (False, True):
        client = _Client(fast=fast)
        stream = await client.open_stream()
        wire = script(_server_for(bytes(client.transport.written)))
        client.protocol.data_received(bytearray(wire))  # type: ignore[arg-type]
        states.append((client.state(), await stream.recv_data(7)))
    assert states[0] == states[1]


# --- reading whole messages ----------------------------------------------------------------------


def _grpc_messages(bodies: list[bytes]) -> bytes:
    return b"".join(b"\x00" + len(b).to_bytes(4, "big") + b for b in bodies)


class _Identity:
    def decode(self, data: bytes, message_type: Any) -> bytes:
        return data


async def _read_messages(buffer: Any, fast: bool, count: int) -> list[Any]:
    from grpclib.stream import recv_message

    class Stream:
        async def recv_data(self, size: int) -> bytes:
            return bytes(await buffer.read(size))

    out: list[Any] = []
    for _ in range(count):
        try:
            if fast:
                out.append(await asyncio.wait_for(buffer.read_message(), 0.01))
            else:
                out.append(await asyncio.wait_for(recv_message(Stream(), _Identity(), bytes), 0.01))
        except TimeoutError:
            out.append("waits")
            break
        except (AssertionError, NotImplementedError, ProtocolError) as exc:
            # A message marked compressed: grpclib's NotImplementedError, our ProtocolError.
            out.append("compressed" if type(exc) is not AssertionError else "AssertionError")
            break
        if out[-1] is None:
            break
    return out


@given(
    bodies=st.lists(st.binary(max_size=30), max_size=6),
    cuts=st.lists(st.integers(0, 200), max_size=6),
    padding=st.integers(0, 2),
    eof=st.booleans(),
    junk=st.binary(max_size=6),
)
def test_read_message_reads_what_grpclib_reads(
    bodies: list[bytes], cuts: list[int], padding: int, eof: bool, junk: bytes
) -> None:
    wire = _grpc_messages(bodies) + junk  # junk: a cut-off prefix, or a "compressed" flag
    points = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    frames = [wire[a:b] for a, b in zip(points, points[1:], strict=False)]

    async def run(fast: bool) -> Any:
        from grpclib.protocol import Buffer

        acks: list[int] = []
        buffer = (_fastpath._FastBuffer if fast else Buffer)(acks.append)
        for frame in frames:
            buffer.add(frame, len(frame) + padding)
        if eof:
            buffer.eof()
        messages = await _read_messages(buffer, fast, len(bodies) + 2)
        return messages, sum(acks) + buffer.unacked_size()

    assert asyncio.run(run(False)) == asyncio.run(run(True))


async def test_read_message_leaves_the_rest_of_a_frame_for_the_next() -> None:
    acks: list[int] = []
    buffer = _fastpath._FastBuffer(acks.append)
    buffer.add(_grpc_messages([b"one", b"two"]) + b"\x00\x00", 20)
    assert await buffer.read_message() == b"one"
    assert acks == [20]  # the only frame was taken
    assert await buffer.read_message() == b"two"
    buffer.add(b"\x00\x00\x05three", 10)
    assert await buffer.read_message() == b"three"


async def test_fast_channel_streams_read_through_the_fast_buffer() -> None:
    from grpclib.client import Channel, Stream

    channel = _fastpath.fast_channel(Channel("127.0.0.1", 1))
    assert type(channel).__name__ == "_FastChannel"
    stream = channel.request("/s/M", Any, bytes, bytes)  # type: ignore[arg-type]
    assert type(stream) is _fastpath._FastClientStream
    assert type(stream) in _fastpath._CLIENT_STREAMS  # send_batch and stage_messages take it
    _fastpath.disable()
    assert type(channel.request("/s/M", Any, bytes, bytes)) is Stream  # type: ignore[arg-type]
    assert type(_fastpath.fast_channel(Channel("127.0.0.1", 1))) is Channel
    channel.close()


async def test_fast_client_stream_reads_like_grpclib_with_and_without_listeners() -> None:
    from grpclib.client import Channel, Stream
    from grpclib.events import RecvMessage, listen

    results = []
    for fast, listener in ((False, False), (True, False), (True, True)):
        seen: list[Any] = []

        async def on_message(event: RecvMessage) -> None:
            seen.append(event.message)

        def prepare(channel: Channel) -> None:
            if listener:
                listen(channel, RecvMessage, on_message)

        stream, _, channel = await _client_stream(fast, prepare)
        h2s = stream._stream
        h2s.buffer.add(_grpc_messages([b"a", b"bc"]), 12)
        h2s.buffer.eof()
        got = [await stream.recv_message() for _ in range(3)]
        results.append((got, stream._messages_received, h2s.connection.messages_received))
        assert seen == ([b"a", b"bc"] if listener else [])
        assert type(stream) is (_fastpath._FastClientStream if fast else Stream)
        channel.close()
    assert results[0] == results[1] == results[2] == ([b"a", b"bc", None], 2, 2)


async def _client_stream(
    fast: bool, prepare: Callable[[Any], None] | None = None
) -> tuple[Any, _Client, Any]:
    """A client stream whose request is sent and response headers read, on a :class:`_Client`
    connection; ``prepare`` gets the channel before the stream is made (event listeners)."""
    from grpclib.client import Channel
    from grpclib.utils import Wrapper

    channel = Channel("127.0.0.1", 1)
    if fast:
        _fastpath.fast_channel(channel)
    if prepare is not None:
        prepare(channel)
    stream = channel.request("/s/M", Any, bytes, bytes)  # type: ignore[arg-type]
    client = _Client(fast=fast)
    h2s = await client.open_stream()
    stream._wrapper = Wrapper()
    stream._stream = h2s
    stream._send_request_done = True
    stream._recv_initial_metadata_done = True
    stream._codec = _Identity()
    return stream, client, channel


async def test_a_terminated_stream_raises_before_reading_or_sending() -> None:
    from grpclib.exceptions import StreamTerminatedError

    for fast in (False, True):
        stream, client, channel = await _client_stream(fast)
        stream._stream.buffer.add(_grpc_messages([b"a"]), 6)
        stream._wrapper.cancel(StreamTerminatedError("reset"))
        with pytest.raises(StreamTerminatedError):
            await stream.recv_message()
        with pytest.raises(StreamTerminatedError):
            await _fastpath.send_batch(stream, [b"x", b"y"])
        channel.close()


async def test_send_batch_writes_what_grpclib_writes_now_and_after_a_wait() -> None:
    from grpclib.protocol import Stream as ProtocolStream

    written = []
    for fast in (False, True):
        stream, client, channel = await _client_stream(fast)
        if not fast:
            # The public path: one write per batch through grpclib's own send_data.
            original = _fastpath._send_data_now
            _fastpath._send_data_now = lambda h2s, data: False  # type: ignore[assignment]
            _fastpath._send_data = ProtocolStream.send_data  # type: ignore[assignment]
        try:
            await _fastpath.send_batch(stream, [b"one", b"two"])
            await _fastpath.send_batch(stream, [b"m" * 20000, b"n" * 20000])  # 3 frames
            assert client.h2.outbound_flow_control_window == 65535 - 16 - 40010
            sender = asyncio.ensure_future(_fastpath.send_batch(stream, [b"z" * 70000]))
            for _ in range(3):
                await asyncio.sleep(0)
            assert not sender.done()  # 65535: the stream's window before any SETTINGS
            client.feed(_frames(WindowUpdateFrame(1, window_increment=50000)), [])
            client.feed(_frames(WindowUpdateFrame(0, window_increment=50000)), [])
            await asyncio.wait_for(sender, 1)
        finally:
            if not fast:
                _fastpath._send_data_now = original
                _fastpath._send_data = _SEND_DATA
        written.append(
            (bytes(client.transport.written), stream._messages_sent, stream._stream.data_sent)
        )
        channel.close()
    assert written[0] == written[1]


_SEND_DATA = _fastpath._send_data


@pytest.mark.parametrize(
    "pieces",
    [
        [_grpc_messages([b"whole"])],  # the reader waits, the frame brings all of it
        [b"\x00\x00\x00", b"\x00\x04ab", b"cd"],  # prefix and body split across frames
        [b"", _grpc_messages([b"after an empty frame"])],
        [_grpc_messages([b"a", b"b"])],  # two in one frame
    ],
    ids=["whole", "split", "empty-first", "two"],
)
async def test_a_waiting_reader_gets_what_grpclib_gives(pieces: list[bytes]) -> None:
    from grpclib.protocol import Buffer
    from grpclib.stream import recv_message

    results = []
    for fast in (False, True):
        acks: list[int] = []
        buffer = (_fastpath._FastBuffer if fast else Buffer)(acks.append)

        class Stream:
            async def recv_data(self, size: int) -> bytes:
                return bytes(await buffer.read(size))

        async def one() -> Any:
            if fast:
                return await buffer.read_message()
            return await recv_message(Stream(), _Identity(), bytes)

        reader = asyncio.ensure_future(one())
        got = []
        for piece in [*pieces, None]:
            await asyncio.sleep(0)
            if reader.done():
                try:
                    got.append(reader.result())
                except AssertionError as exc:
                    got.append(str(exc))
                reader = asyncio.ensure_future(one())
                await asyncio.sleep(0)
            if piece is None:
                buffer.eof()
            else:
                buffer.add(piece, len(piece) + 1)
        await asyncio.sleep(0)
        try:
            got.append(await asyncio.wait_for(reader, 0.1))
        except AssertionError as exc:
            got.append(str(exc))
        results.append((got, sum(acks) + buffer.unacked_size()))
    assert results[0] == results[1]


# --- messages taken in the protocol callback (direct_reads) -------------------------------------


async def _read_with_direct(
    frames: list[bytes], eof: bool, fail_on: bytes | None = None
) -> tuple[list[Any], int, int]:
    """Feed ``frames`` one at a time to a fast client stream whose reader loops on
    ``recv_message`` with ``direct_reads`` installed; returns every message in the order the
    consumer saw it (``("direct", m)`` or ``("read", m)``, an exception's name), the window
    returned, and the stream's message count."""
    stream, client, channel = await _client_stream(True)
    h2s = stream._stream
    acks: list[int] = []
    h2s.buffer._ack_callback = acks.append
    seen: list[Any] = []

    def deliver(message: bytes) -> None:
        if message == fail_on:
            raise ValueError("refused")
        seen.append(("direct", message))

    stop = _fastpath.direct_reads(stream, deliver)
    assert stop is not None

    async def reader() -> None:
        while True:
            try:
                message = await stream.recv_message()
            except ValueError:
                seen.append("ValueError")
                continue
            except AssertionError:
                seen.append("AssertionError")
                return
            seen.append(("read", message))
            if message is None:
                return

    task = asyncio.ensure_future(reader())
    for frame in frames:
        await asyncio.sleep(0)
        h2s.buffer.add(frame, len(frame))
    await asyncio.sleep(0)
    if eof:
        h2s.buffer.eof()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(task, 0.05)
    stop()
    assert h2s.buffer.direct is None
    channel.close()
    return seen, sum(acks) + h2s.buffer.unacked_size(), stream._messages_received


@given(
    bodies=st.lists(st.binary(max_size=30), max_size=6),
    cuts=st.lists(st.integers(0, 200), max_size=8),
    eof=st.booleans(),
)
def test_direct_reads_hand_over_what_the_reader_would_read_in_order(
    bodies: list[bytes], cuts: list[int], eof: bool
) -> None:
    wire = _grpc_messages(bodies)
    points = sorted({0, len(wire), *(c for c in cuts if c < len(wire))})
    frames = [wire[a:b] for a, b in zip(points, points[1:], strict=False)]
    seen, window, count = asyncio.run(_read_with_direct(frames, eof))
    messages = [m for _, m in seen if m is not None]
    assert messages == bodies  # every message once, in order, whoever took it
    assert window == len(wire)  # all the window went back
    assert count == len(bodies)
    assert (("read", None) in seen) is eof
    whole = [f for f in frames if f.startswith(b"\x00") and len(f) == 5 + int.from_bytes(f[1:5])]
    if frames and frames[0] in whole:
        # A frame holding exactly one message, arriving while the reader waits: taken by
        # the protocol callback, not by waking the reader.
        assert seen[0][0] == "direct"


async def test_direct_reads_skip_a_reader_waiting_inside_a_message() -> None:
    # The prefix in one frame, the body in the next: the reader waits for the body with
    # nothing buffered, and the body is not mistaken for the start of a message.
    # The body itself looks like a whole message (a gRPC message holding one).
    body = _grpc_messages([b"xyz"])
    seen, window, _ = await _read_with_direct([b"\x00\x00\x00\x00\x08", body], eof=True)
    assert seen == [("read", body), ("read", None)]
    assert window == 13


async def test_a_direct_delivery_error_is_raised_by_the_waiting_reader_then_reads_go_on() -> None:
    frames = [_grpc_messages([b"a"]), _grpc_messages([b"bad"]), _grpc_messages([b"c"])]
    seen, window, count = await _read_with_direct(frames, eof=True, fail_on=b"bad")
    assert seen == [("direct", b"a"), "ValueError", ("direct", b"c"), ("read", None)]
    assert window == 6 + 8 + 6 and count == 3


async def test_direct_reads_wait_for_the_response_headers_and_stay_off_on_the_fallback() -> None:
    stream, client, channel = await _client_stream(True)
    stream._recv_initial_metadata_done = False
    assert _fastpath.direct_reads(stream, lambda m: None) is None  # not yet: ask again
    stream._recv_initial_metadata_done = True
    stop = _fastpath.direct_reads(stream, lambda m: None)
    assert stop is not None and stream._stream.buffer.direct is not None
    stop()
    _fastpath.disable()
    stop = _fastpath.direct_reads(stream, lambda m: None)
    assert stop is not None and stream._stream.buffer.direct is None
    stop()
    channel.close()
    plain, _, other = await _client_stream(False)
    stop = _fastpath.direct_reads(plain, lambda m: None)
    assert stop is not None and not hasattr(plain._stream.buffer, "direct")
    other.close()


async def test_direct_reads_leave_a_cancelled_reader_alone() -> None:
    stream, client, channel = await _client_stream(True)
    taken: list[bytes] = []
    stop = _fastpath.direct_reads(stream, taken.append)
    assert stop is not None
    reader = asyncio.ensure_future(stream.recv_message())
    await asyncio.sleep(0)
    reader.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await reader
    stream._stream.buffer.add(_grpc_messages([b"kept"]), 9)
    assert taken == []  # nobody waits: left in the buffer for the next read
    assert await stream.recv_message() == b"kept"
    stop()
    channel.close()


def _only_ping_acks_by_walking(pending: bytes) -> bool:
    end, at = len(pending), 0
    while at < end:
        if end - at < 9 or pending[at + 3] != 0x6 or not pending[at + 4] & 0x1:
            return False
        at += 9 + int.from_bytes(pending[at : at + 3], "big")
    return end > 0 and at == end


_PING_ACK = b"\x00\x00\x08\x06\x01\x00\x00\x00\x00" + b"12345678"


@given(
    pieces=st.lists(
        st.sampled_from(
            [
                _PING_ACK,
                _PING_ACK[:4] + b"\x00" + _PING_ACK[5:],  # a PING, not its acknowledgement
                b"\x00\x00\x07" + _PING_ACK[3:16],  # a 7-byte payload: 16 bytes
                b"\x00\x00\x09" + _PING_ACK[3:] + b"9",  # 9 bytes: 18
                b"\x01\x00\x08" + _PING_ACK[3:],  # a length of 65544, 17 bytes here
                b"\x00\x01\x08" + _PING_ACK[3:],
                b"\x00\x00\x08\x00\x01" + _PING_ACK[5:],  # a DATA frame
                b"\x00\x00\x00\x06\x01\x00\x00\x00\x00",  # an empty PING ACK
            ]
        ),
        max_size=3,
    ),
    cut=st.integers(0, 60),
    byte=st.binary(min_size=0, max_size=17),
)
def test_only_ping_acks_matches_walking_the_frames(
    pieces: list[bytes], cut: int, byte: bytes
) -> None:
    for pending in (b"".join(pieces), b"".join(pieces)[:cut], byte):
        expected = _only_ping_acks_by_walking(pending)
        assert _fastpath._only_ping_acks(pending) is expected
        assert _fastpath._only_ping_acks(bytearray(pending)) is expected


@pytest.mark.parametrize(
    ("pending", "expected"),
    [
        (_PING_ACK, True),
        (_PING_ACK[:4] + b"\x00" + _PING_ACK[5:], False),  # PING without ACK
        (_PING_ACK[:4] + b"\x03" + _PING_ACK[5:], True),  # ACK among other flag bits
        (b"\x00\x00\x09" + _PING_ACK[3:], False),  # 17 bytes, but a 9-byte payload claimed
        (b"\x00\x01\x08" + _PING_ACK[3:], False),
        (b"\x01\x00\x08" + _PING_ACK[3:], False),
        (b"\x00\x00\x08\x00" + _PING_ACK[4:], False),  # a DATA frame
        (b"\x00\x00\x00\x06\x01\x00\x00\x00\x00" * 2, True),  # two empty ACKs: 18 bytes
    ],
)
def test_only_ping_acks_on_seventeen_bytes_and_around(pending: bytes, expected: bool) -> None:
    assert _only_ping_acks_by_walking(pending) is expected
    assert _fastpath._only_ping_acks(pending) is expected


async def test_a_message_marked_compressed_is_a_protocol_error_naming_it() -> None:
    buffer = _fastpath._FastBuffer(lambda size: None)
    buffer.add(b"\x01\x00\x00", 3)  # the flag, then a frame boundary inside the length
    buffer.add(b"\x00\x02ab", 4)
    with pytest.raises(ProtocolError, match="marked compressed, but no compression"):
        await buffer.read_message()
