"""The hand-checked buf.validate rules agree with protovalidate (bubu._transport.wire)."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import StreamMessage
from bubu._runtime.transport import TransportSettings
from bubu._transport import codec, validate, wire
from bubu.errors import MessageTooLargeError, ProtocolViolationError


def _around(limit: int) -> st.SearchStrategy[int]:
    return st.sampled_from([0, 1, limit - 1, limit, limit + 1])


def _text(limit: int) -> st.SearchStrategy[str]:
    return _around(limit).map(lambda n: "é" * max(n, 0))


@st.composite
def packets(draw: Any) -> pb.DataResponse:
    packet = pb.DataResponse()
    frame = draw(st.sampled_from(["none", "audio", "video", "binary"]))
    if frame == "audio":
        packet.audio.pcm = b"\x00" * draw(st.sampled_from([0, 2]))
        packet.audio.sample_rate_hz = draw(st.sampled_from([0, 7999, 8000, 192000, 192001]))
        packet.audio.channels = draw(st.sampled_from([0, 1, 8, 9, -1]))
        packet.audio.codec = draw(_text(32))
    elif frame == "video":
        packet.video.payload = b"v"
        packet.video.codec = draw(_text(32))
        packet.video.width = draw(_around(16384))
        packet.video.height = draw(_around(16384))
    elif frame == "binary":
        packet.binary.payload = b"b"
        packet.binary.mime_type = draw(_text(255))
    for _ in range(draw(st.sampled_from([0, 1, 3]))):
        packet.metadata[draw(_text(128))] = draw(_text(1024))
    if draw(st.booleans()):
        for i in range(draw(st.sampled_from([100, 101]))):
            packet.metadata[f"k{i}"] = "v"
    for _ in range(draw(st.sampled_from([0, 1, 10, 11]))):
        t = packet.transports.add(name=draw(_text(128)), kind=draw(_text(128)))
        if draw(st.booleans()):
            t.typed_config.transport_ref = draw(_text(253))
            t.typed_config.mode_reason = draw(_text(512))
            t.typed_config.SetInParent()
    if draw(st.booleans()):
        env = packet.envelope
        env.SetInParent()
        env.stream_id = draw(_text(128))
        env.partition = draw(_text(128))
        env.chunk_id = draw(st.sampled_from(["", "c", "c" * 129]))
        env.chunk_count = draw(st.sampled_from([0, 1, 3, 256, 257]))
        env.chunk_index = draw(st.sampled_from([0, 1, 2, 3]))
        env.chunk_bytes = draw(st.sampled_from([0, 5, 10 * 1024 * 1024 + 1]))
        env.total_bytes = draw(st.sampled_from([0, 5, 64 * 1024 * 1024 + 1]))
    if draw(st.booleans()):
        packet.payload.fields["a"].number_value = 1
    return packet


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(packets())
def test_packet_rules_agree_with_protovalidate(packet: pb.DataResponse) -> None:
    assert wire.packet_ok(packet) == (validate.violations(packet) == [])


def _checked_then_decoded(packet: pb.DataResponse) -> StreamMessage:
    # decode_inbound as it was: every rule first, then the decode.
    if not wire.packet_ok(packet):
        validate.check_packet(packet, what="transport packet invalid")
    return codec.from_pb_packet(packet)


def _outcome(decode: Any, packet: pb.DataResponse) -> tuple[str, Any]:
    try:
        return "decoded", decode(packet)
    except ProtocolViolationError as exc:
        return "refused", str(exc)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    packets(),
    st.sampled_from(
        [
            "",
            "text/plain",
            "text/" + "p" * 250,
            "text/" + "p" * 251,
            "application/vnd.bubu.packet+json",
        ]
    ),
    st.sampled_from([b'{"kind":"data","payload":{"a":1}}', b"{nope", b'{"kind":"error"}']),
)
def test_decode_inbound_is_the_rules_then_the_decode(
    packet: pb.DataResponse, mime: str, document: bytes
) -> None:
    if packet.WhichOneof("frame") == "binary" and mime:
        packet.binary.mime_type = mime
        if "packet" in mime:
            packet.binary.payload = document
    assert _outcome(wire.decode_inbound, packet) == _outcome(_checked_then_decoded, packet)


def _valid(frame: str) -> pb.DataResponse:
    packet = pb.DataResponse(envelope=pb.StreamEnvelope(stream_id="s", sequence=1))
    if frame == "audio":
        packet.audio.pcm = b"\x00\x01"
        packet.audio.sample_rate_hz = 16000
        packet.audio.channels = 1
    elif frame == "video":
        packet.video.payload = b"v"
        packet.video.codec = "h264"
    elif frame == "raw":
        packet.binary.payload = b"b"
        packet.binary.mime_type = "text/plain"
    else:
        packet.binary.payload = b'{"kind":"data","payload":{"a":1}}'
        packet.binary.mime_type = "application/vnd.bubu.packet+json"
    return packet


def _broken(rule: str) -> pb.DataResponse:
    frame = rule.split(".", maxsplit=1)[0]
    packet = _valid(frame if frame in ("audio", "video", "raw") else "envelope")
    if rule == "audio.pcm":
        packet.audio.pcm = b"\x00" * (10 * 1024 * 1024 + 1)
    elif rule == "audio.rate.low":
        packet.audio.sample_rate_hz = 7999
    elif rule == "audio.rate.high":
        packet.audio.sample_rate_hz = 192001
    elif rule == "audio.channels":
        packet.audio.channels = 9
    elif rule == "audio.codec":
        packet.audio.codec = "c" * 33
    elif rule == "video.payload":
        packet.video.payload = b"\x00" * (10 * 1024 * 1024 + 1)
    elif rule == "video.codec":
        packet.video.codec = "c" * 33
    elif rule == "video.width":
        packet.video.width = 16385
    elif rule == "video.height":
        packet.video.height = 16385
    elif rule == "raw.payload":
        packet.binary.payload = b"\x00" * (10 * 1024 * 1024 + 1)
    elif rule == "raw.mime":
        packet.binary.mime_type = "text/" + "p" * 251
    elif rule == "metadata":
        packet.metadata["k" * 129] = "v"
    elif rule == "transports":
        for i in range(11):
            packet.transports.add(name=f"t{i}")
    else:
        packet.envelope.chunk_index = 1  # without a chunk count
    return packet


RULES = [
    "audio.pcm",
    "audio.rate.low",
    "audio.rate.high",
    "audio.channels",
    "audio.codec",
    "video.payload",
    "video.codec",
    "video.width",
    "video.height",
    "raw.payload",
    "raw.mime",
    "metadata",
    "transports",
    "envelope",
]


@pytest.mark.parametrize("rule", RULES)
def test_decode_inbound_reports_each_broken_rule(rule: str) -> None:
    packet = _broken(rule)
    assert not wire.packet_ok(packet)
    with pytest.raises(ProtocolViolationError, match="transport packet invalid"):
        wire.decode_inbound(packet)


@pytest.mark.parametrize("frame", ["audio", "video", "raw", "envelope"])
def test_decode_inbound_passes_the_rule_edges(frame: str) -> None:
    packet = _valid(frame)
    if frame == "audio":
        packet.audio.sample_rate_hz = 192000
        packet.audio.channels = 8
        packet.audio.codec = "c" * 32
    elif frame == "video":
        packet.video.codec = "c" * 32
        packet.video.width = packet.video.height = 16384
    elif frame == "raw":
        packet.binary.mime_type = "text/" + "p" * 250
    for i in range(10):
        packet.transports.add(name=f"t{i}")
    packet.metadata["k" * 128] = "v" * 1024
    assert wire.packet_ok(packet)
    assert wire.decode_inbound(packet) == codec.from_pb_packet(packet)


@st.composite
def controls(draw: Any) -> pb.ControlResponse:
    message = pb.ControlResponse(custom_action=draw(_text(128)))
    for _ in range(draw(st.sampled_from([0, 2]))):
        message.metadata[draw(_text(128))] = draw(_text(1024))
    if draw(st.booleans()):
        for i in range(draw(st.sampled_from([256, 257]))):
            message.flow.partition_acks.add(partition=f"p{i}")
        message.flow.partition_acks.add(partition=draw(_text(128)))
    if draw(st.booleans()):
        message.error.code = draw(st.sampled_from([-1, 0, 5]))
        message.error.message = draw(_text(2048))
        for i in range(draw(st.sampled_from([0, 50, 51]))):
            message.error.details[f"d{i}"] = "x"
        message.error.SetInParent()
    return message


@settings(max_examples=200, deadline=None)
@given(controls())
def test_control_rules_agree_with_protovalidate(message: pb.ControlResponse) -> None:
    assert wire.control_ok(message) == (validate.violations(message) == [])


@settings(max_examples=100, deadline=None)
@given(controls())
def test_control_request_rules_agree_with_protovalidate(response: pb.ControlResponse) -> None:
    request = pb.ControlRequest(
        action=response.action, custom_action=response.custom_action, metadata=response.metadata
    )
    request.flow.CopyFrom(response.flow)
    assert wire.control_ok(request) == (validate.violations(request) == [])


def test_encode_outbound_reports_the_protovalidate_error() -> None:
    msg = StreamMessage.json({"a": 1}, metadata={"k" * 129: "v"})
    with pytest.raises(ProtocolViolationError, match="metadata") as caught:
        wire.encode_outbound(msg, TransportSettings())
    assert not caught.value.retryable  # the same message fails the same way every time


def test_should_drop_rules() -> None:
    assert wire.should_drop(StreamMessage(kind="heartbeat"))
    assert wire.should_drop(StreamMessage(kind="NOOP"))
    assert wire.should_drop(StreamMessage(kind="x", metadata={"bubu-heartbeat": "TRUE"}))
    assert wire.should_drop(StreamMessage())
    assert not wire.should_drop(StreamMessage.json({"a": 1}))
    assert not wire.should_drop(StreamMessage.from_audio(b"\x00\x00", 16000))


@pytest.mark.parametrize(
    ("stream_id", "sequence", "partition", "size"),
    [
        ("ns/run/step", 1, "", 138),
        ("s" * 128, 2**63, "p" * 128, 10 * 1024 * 1024),
        ("é", 7, "p0", 0),
        ("s", 2**64 - 1, "", 2**64 - 1),  # 20 digits each: the longest heads
        ("s", 9, "", 10),
        ("s", 10, "", 9),
    ],
)
def test_receipt_bytes_equal_the_codec_receipt_and_pass_the_rules(
    stream_id: str, sequence: int, partition: str, size: int
) -> None:
    from bubu._transport import codec

    raw = wire.receipt_bytes(stream_id, sequence, partition, size)
    parsed = pb.ControlRequest.FromString(raw)
    assert parsed == codec.delivery_receipt(stream_id, sequence, partition, size)
    assert validate.violations(parsed) == []


def test_encode_outbound_bytes_matches_the_request() -> None:
    msg = StreamMessage.json({"a": 1})
    raw = wire.encode_outbound_bytes(msg, TransportSettings())
    assert pb.DataRequest.FromString(raw) == wire.encode_outbound(msg, TransportSettings())
    with pytest.raises(MessageTooLargeError):
        wire.encode_outbound_bytes(msg, TransportSettings(max_send_bytes=10))


def test_receipt_bytes_cache_is_bounded_and_keeps_receipts_exact() -> None:
    from bubu._transport import codec

    for i in range(600):  # more streams than the cache holds: it is cleared, never wrong
        stream_id, partition = f"ns/run-{i}/step", f"p{i % 3}"
        for sequence in (1, 2**40):
            raw = wire.receipt_bytes(stream_id, sequence, partition, 100 + i)
            expected = codec.delivery_receipt(stream_id, sequence, partition, 100 + i)
            assert pb.ControlRequest.FromString(raw) == expected
    assert len(wire._STREAM_ENTRIES) <= wire._STREAM_ENTRIES_MAX


def test_a_broken_rule_is_reported_before_a_decode_error() -> None:
    packet = _valid("envelope")
    packet.binary.payload = b"{nope"
    with pytest.raises(ProtocolViolationError, match="envelope decode failed"):
        wire.decode_inbound(packet)
    packet.metadata["k" * 129] = "v"
    with pytest.raises(ProtocolViolationError, match="transport packet invalid"):
        wire.decode_inbound(packet)
