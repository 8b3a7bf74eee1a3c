"""Hot-path shortcuts of the streaming session keep the observable behaviour (issue 5 perf pass)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from bubu import _telemetry
from bubu._runtime.messages import BinaryFrame, InboundMessage, StreamEnvelope, StreamMessage
from bubu._transport import wire
from bubu._transport._fastpath import stage_messages
from bubu._transport.session import Receipt


def test_inbound_message_forwards_every_message_field() -> None:
    msg = StreamMessage.json(
        {"a": 1}, kind="data", message_id="m", metadata={"k": "v"}, envelope=StreamEnvelope()
    )
    inbound = InboundMessage(msg)
    for name in msg.__struct_fields__:
        assert getattr(inbound, name) == getattr(msg, name), name
    assert inbound.json_data() == {"a": 1}  # methods still forward through __getattr__


def test_receipt_is_a_value_with_the_same_wire_bytes() -> None:
    a, b = Receipt("s", 3, "p", 10), Receipt("s", 3, "p", 10)
    assert a == b and hash(a) == hash(b)
    assert a.encoded() == wire.receipt_bytes("s", 3, "p", 10)
    assert a.to_pb().SerializeToString() == Receipt("s", 3, "p", 10).to_pb().SerializeToString()


def test_inject_w3c_writes_nothing_without_an_active_context() -> None:
    carrier: dict[str, str] = {}
    _telemetry.inject_w3c(carrier)
    assert carrier == {}


def test_inject_w3c_still_writes_an_active_span() -> None:
    from opentelemetry import trace

    ctx = trace.SpanContext(
        0x0AF7651916CD43DD8448EB211C80319C, 0xB9C7C989F97918E1, False, trace.TraceFlags(1)
    )
    carrier: dict[str, str] = {}
    with trace.use_span(trace.NonRecordingSpan(ctx)):
        _telemetry.inject_w3c(carrier)
    assert carrier == {"traceparent": "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"}


class _Unopened:
    """A grpclib stream before send_request: nothing may be staged on it."""

    _stream: Any = None
    _send_request_done = False
    _end_done = False


def test_receipts_are_not_staged_on_a_stream_that_is_not_open() -> None:
    assert not stage_messages(_Unopened(), [b"x"], _Unopened())  # type: ignore[arg-type]


def test_outbound_bytes_of_a_forwarded_json_message_parse_to_the_request() -> None:
    from bubu._gen.transport.v1 import transport_pb2 as pb
    from bubu._runtime.transport import TransportSettings

    raw = b'{"b": [1, 2, {"c": null}], "a": "x y"}'
    msg = StreamMessage(payload=raw, binary=BinaryFrame(payload=raw, mime_type="application/json"))
    data = wire.encode_outbound_bytes(msg, TransportSettings())
    assert pb.DataRequest.FromString(data) == wire.encode_outbound(msg, TransportSettings())


def test_fast_path_feature_check_passes_on_the_pinned_versions() -> None:
    from bubu._transport import _fastpath

    assert _fastpath.check() is None
    assert set(_fastpath.WRITTEN_FOR) == {"grpclib", "h2", "hyperframe"}


async def test_disabled_fast_path_uses_the_public_api_one_message_at_a_time() -> None:
    from bubu._transport import _fastpath

    class PublicOnly:
        def __init__(self) -> None:
            self.sent: list[object] = []

        async def send_message(self, message: object) -> None:
            self.sent.append(message)

    was = _fastpath.enabled()
    _fastpath.disable()
    try:
        stream = PublicOnly()
        await _fastpath.send_batch(stream, [b"a", b"b"])  # type: ignore[arg-type]
        assert stream.sent == [b"a", b"b"]
        assert not _fastpath.stage_messages(stream, [b"x"], stream)  # type: ignore[arg-type]
        assert _fastpath.codec_of(stream) is None  # type: ignore[arg-type]
    finally:
        if was:
            _fastpath.enable()


class _Recorder:
    """An asyncio transport stand-in that keeps every write (the unit under test is the flush)."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def is_closing(self) -> bool:
        return False


def _frame_types(data: bytes) -> list[tuple[int, int]]:
    out, at = [], 0
    while at + 9 <= len(data):
        out.append((data[at + 3], data[at + 4]))
        at += 9 + int.from_bytes(data[at : at + 3], "big")
    return out


@contextlib.contextmanager
def _fast_path(on: bool) -> Iterator[None]:
    # Explicit either way: CI runs this module again with --transport-fast-path=off.
    from bubu._transport import _fastpath

    was = _fastpath.enabled()
    _fastpath.enable() if on else _fastpath.disable()
    try:
        yield
    finally:
        _fastpath.enable() if was else _fastpath.disable()


def _client_connection() -> tuple[Any, _Recorder]:
    from grpclib.config import Configuration
    from grpclib.protocol import Connection
    from h2.config import H2Configuration
    from h2.connection import H2Connection
    from hyperframe.frame import PingFrame, SettingsFrame

    h2c = H2Connection(H2Configuration(client_side=True, header_encoding=None))
    h2c.initiate_connection()
    h2c.data_to_send()
    h2c.receive_data(SettingsFrame(0).serialize())  # the server's preface
    h2c.data_to_send()  # our SETTINGS ack
    transport = _Recorder()
    conn = Connection(h2c, transport, config=Configuration().__for_test__())  # type: ignore[arg-type]

    class Protocol:
        connection = conn

    from bubu._transport import _fastpath

    _fastpath.coalesce_ping_acks(Protocol())
    conn.feed(PingFrame(0, opaque_data=b"12345678").serialize())  # h2 queues the ack
    return conn, transport


async def test_a_ping_ack_rides_on_the_next_write() -> None:
    with _fast_path(True):
        conn, transport = _client_connection()
        conn.flush()  # what grpclib does after every read
        assert transport.writes == []  # held back
        stream_id = conn._connection.get_next_available_stream_id()
        headers = [(":method", "POST"), (":scheme", "http"), (":authority", "x"), (":path", "/")]
        conn._connection.send_headers(stream_id, headers)
        conn.flush()
    assert len(transport.writes) == 1
    assert [t for t, _ in _frame_types(transport.writes[0])] == [0x6, 0x1]  # PING ack, HEADERS
    assert _frame_types(transport.writes[0])[0][1] & 0x1


async def test_a_lone_ping_ack_is_written_after_the_delay() -> None:
    import asyncio

    from bubu._transport import _fastpath

    with _fast_path(True):
        conn, transport = _client_connection()
        conn.flush()
        assert transport.writes == []
        await asyncio.sleep(_fastpath.PING_ACK_DELAY * 5)
    assert [_frame_types(w) for w in transport.writes] == [[(0x6, 0x1)]]


async def test_ping_acks_are_written_at_once_without_the_fast_path() -> None:
    with _fast_path(True):
        conn, transport = _client_connection()
    with _fast_path(False):  # switched off after the connection was made: no holding back
        conn.flush()
    assert [_frame_types(w) for w in transport.writes] == [[(0x6, 0x1)]]
