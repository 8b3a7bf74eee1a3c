"""Hot-path shortcuts of the streaming session keep the observable behaviour (issue 5 perf pass)."""

from __future__ import annotations

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
