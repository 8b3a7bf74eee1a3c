"""buf.validate rules of transport.v1 via protovalidate (docs/contract/stream.md#validation)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from bubu._gen.transport.v1 import hub_pb2
from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import AudioFrame, StreamMessage
from bubu._transport import codec, validate
from bubu.errors import PacketValidationError, ProtocolViolationError

MIB = 1024 * 1024


def _meta(n: int) -> dict[str, str]:
    return {f"k{i}": "v" for i in range(n)}


def _data(**kw: Any) -> pb.DataRequest:
    return pb.DataRequest(**kw)


def _env(**kw: Any) -> pb.DataRequest:
    req = pb.DataRequest(binary=pb.BinaryFrame(payload=b"x"))
    for k, v in kw.items():
        setattr(req.envelope, k, v)
    return req


CASES: list[tuple[str, Callable[[], Any], str, str]] = [
    (
        "audio rate too low",
        lambda: _data(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=7999, channels=1)),
        "audio.sample_rate_hz",
        "int32.gte_lte",
    ),
    (
        "audio rate too high",
        lambda: _data(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=192001, channels=1)),
        "audio.sample_rate_hz",
        "int32.gte_lte",
    ),
    (
        "audio zero channels",
        lambda: _data(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=8000)),
        "audio.channels",
        "int32.gte_lte",
    ),
    (
        "audio 9 channels",
        lambda: _data(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=8000, channels=9)),
        "audio.channels",
        "int32.gte_lte",
    ),
    (
        "audio codec 33",
        lambda: _data(
            audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=8000, channels=1, codec="c" * 33)
        ),
        "audio.codec",
        "string.max_len",
    ),
    (
        "audio pcm > 10 MiB",
        lambda: _data(
            audio=pb.AudioFrame(pcm=b"x" * (10 * MIB + 1), sample_rate_hz=8000, channels=1)
        ),
        "audio.pcm",
        "bytes.max_len",
    ),
    (
        "video width",
        lambda: _data(video=pb.VideoFrame(payload=b"v", width=16385)),
        "video.width",
        "uint32.lte",
    ),
    (
        "video height",
        lambda: _data(video=pb.VideoFrame(payload=b"v", height=16385)),
        "video.height",
        "uint32.lte",
    ),
    (
        "video codec",
        lambda: _data(video=pb.VideoFrame(payload=b"v", codec="c" * 33)),
        "video.codec",
        "string.max_len",
    ),
    (
        "binary mime 256",
        lambda: _data(binary=pb.BinaryFrame(payload=b"x", mime_type="m" * 256)),
        "binary.mime_type",
        "string.max_len",
    ),
    ("101 metadata pairs", lambda: _data(metadata=_meta(101)), "metadata", "map.max_pairs"),
    ("empty metadata key", lambda: _data(metadata={"": "v"}), 'metadata[""]', "string.min_len"),
    (
        "metadata key 129",
        lambda: _data(metadata={"k" * 129: "v"}),
        f'metadata["{"k" * 129}"]',
        "string.max_len",
    ),
    (
        "metadata value 1025",
        lambda: _data(metadata={"k": "v" * 1025}),
        'metadata["k"]',
        "string.max_len",
    ),
    (
        "11 transports",
        lambda: _data(transports=[pb.TransportDescriptor(name="t")] * 11),
        "transports",
        "repeated.max_items",
    ),
    (
        "transport name 129",
        lambda: _data(transports=[pb.TransportDescriptor(name="n" * 129)]),
        "transports[0].name",
        "string.max_len",
    ),
    (
        "typed config ref 254",
        lambda: _data(
            transports=[
                pb.TransportDescriptor(
                    name="t", typed_config=pb.TransportConfig(transport_ref="r" * 254)
                )
            ]
        ),
        "transports[0].typed_config.transport_ref",
        "string.max_len",
    ),
    (
        "typed config reason 513",
        lambda: _data(
            transports=[
                pb.TransportDescriptor(
                    name="t", typed_config=pb.TransportConfig(mode_reason="r" * 513)
                )
            ]
        ),
        "transports[0].typed_config.mode_reason",
        "string.max_len",
    ),
    ("stream id 129", lambda: _env(stream_id="s" * 129), "envelope.stream_id", "string.max_len"),
    ("partition 129", lambda: _env(partition="p" * 129), "envelope.partition", "string.max_len"),
    (
        "chunk count 257",
        lambda: _env(chunk_count=257, chunk_id="c", stream_id="s"),
        "envelope.chunk_count",
        "uint32.lte",
    ),
    (
        "chunk bytes",
        lambda: _env(chunk_count=1, chunk_id="c", stream_id="s", chunk_bytes=10 * MIB + 1),
        "envelope.chunk_bytes",
        "uint32.lte",
    ),
    (
        "total bytes",
        lambda: _env(chunk_count=1, chunk_id="c", stream_id="s", total_bytes=64 * MIB + 1),
        "envelope.total_bytes",
        "uint32.lte",
    ),
    (
        "chunk fields without count",
        lambda: _env(chunk_index=1),
        "envelope",
        "stream_envelope.no_chunk_fields_without_count",
    ),
    (
        "chunk id required",
        lambda: _env(chunk_count=2, stream_id="s"),
        "envelope",
        "stream_envelope.chunk_id_required",
    ),
    (
        "stream id required",
        lambda: _env(chunk_count=2, chunk_id="c"),
        "envelope",
        "stream_envelope.stream_id_required",
    ),
    (
        "index < count",
        lambda: _env(chunk_count=2, chunk_index=2, chunk_id="c", stream_id="s"),
        "envelope",
        "stream_envelope.chunk_index_less_than_count",
    ),
    (
        "control custom action 129",
        lambda: pb.ControlRequest(custom_action="a" * 129),
        "custom_action",
        "string.max_len",
    ),
    (
        "control empty metadata key",
        lambda: pb.ControlRequest(metadata={"": "x"}),
        'metadata[""]',
        "string.min_len",
    ),
    (
        "control error code",
        lambda: pb.ControlResponse(error=pb.ControlError(code=-1)),
        "error.code",
        "int32.gte",
    ),
    (
        "control error message",
        lambda: pb.ControlResponse(error=pb.ControlError(message="m" * 2049)),
        "error.message",
        "string.max_len",
    ),
    (
        "control error details 51",
        lambda: pb.ControlResponse(error=pb.ControlError(details=_meta(51))),
        "error.details",
        "map.max_pairs",
    ),
    (
        "partition ack",
        lambda: pb.FlowControl(partition_acks=[pb.PartitionAck(partition="p" * 129)]),
        "partition_acks[0].partition",
        "string.max_len",
    ),
    (
        "257 partition acks",
        lambda: pb.FlowControl(partition_acks=[pb.PartitionAck()] * 257),
        "partition_acks",
        "repeated.max_items",
    ),
    ("binding endpoint", lambda: pb.BindingInfo(endpoint="e" * 2049), "endpoint", "string.max_len"),
    (
        "binding 33 codecs",
        lambda: pb.BindingInfo(audio_codecs=["c"] * 33),
        "audio_codecs",
        "repeated.max_items",
    ),
    (
        "binding codec 65",
        lambda: pb.BindingInfo(video_codecs=["c" * 65]),
        "video_codecs[0]",
        "string.max_len",
    ),
    (
        "binding binary type 256",
        lambda: pb.BindingInfo(binary_types=["t" * 256]),
        "binary_types[0]",
        "string.max_len",
    ),
    (
        "binding payload",
        lambda: pb.BindingInfo(payload=b"p" * (MIB + 1)),
        "payload",
        "bytes.max_len",
    ),
    (
        "binding protocol",
        lambda: pb.BindingInfo(protocol_version="v" * 129),
        "protocol_version",
        "string.max_len",
    ),
    (
        "hub packet metadata",
        lambda: hub_pb2.DataPacket(metadata={"": "x"}),
        'metadata[""]',
        "string.min_len",
    ),
]


@pytest.mark.parametrize(("case", "build", "field", "rule_id"), CASES, ids=[c[0] for c in CASES])
def test_rule_violation_names_field_and_rule(
    case: str, build: Callable[[], Any], field: str, rule_id: str
) -> None:
    with pytest.raises(PacketValidationError) as info:
        validate.check(build(), what="transport publish request invalid")
    err = info.value
    assert (err.field, err.rule_id) == (field, rule_id)
    assert str(err).startswith(f"transport publish request invalid: {field}: ")
    assert isinstance(err, ProtocolViolationError)


@pytest.mark.parametrize(
    "message",
    [
        pb.DataRequest(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=8000, channels=1)),
        pb.DataRequest(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=192000, channels=8)),
        pb.DataRequest(video=pb.VideoFrame(payload=b"v", width=16384, height=16384)),
        pb.DataRequest(metadata=_meta(100)),
        pb.DataRequest(transports=[pb.TransportDescriptor(name="t")] * 10),
        codec.heartbeat_data_request(),
        codec.delivery_receipt("s" * 128, 1, "", 10),
        pb.StreamEnvelope(chunk_count=256, chunk_index=255, chunk_id="c", stream_id="s"),
        pb.DataRequest(),
    ],
)
def test_valid_messages_pass(message: Any) -> None:
    validate.check(message)
    assert validate.violations(message) == []


def test_every_violation_is_collected() -> None:
    req = pb.DataRequest(
        audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=7999, channels=1), metadata={"": "x"}
    )
    with pytest.raises(PacketValidationError) as info:
        validate.check(req)
    assert [v[0] for v in info.value.violations] == ["audio.sample_rate_hz", 'metadata[""]']


def test_unset_frames_and_messages_are_not_validated() -> None:
    # A present AudioFrame is validated even with zero scalars; an absent one is not.
    assert validate.violations(pb.DataRequest()) == []
    present = pb.DataRequest()
    present.audio.SetInParent()
    assert [v[0] for v in validate.violations(present)] == [
        "audio.sample_rate_hz",
        "audio.channels",
    ]


def test_check_packet_detaches_structs_and_restores_them() -> None:
    msg = StreamMessage.json({"a": {"b": [1, 2]}}, inputs={"i": 1})
    req = codec.to_pb_data_request(msg)
    before = req.SerializeToString()
    validate.check_packet(req)
    assert req.SerializeToString() == before
    assert req.HasField("payload") and req.HasField("inputs")

    bare = codec.to_pb_data_request(StreamMessage.from_audio(b"x", 16000))
    validate.check_packet(bare)
    assert not bare.HasField("payload") and not bare.HasField("inputs")


def test_check_packet_restores_structs_after_a_violation() -> None:
    req = codec.to_pb_data_request(StreamMessage.json({"a": 1}, metadata={"k": "v" * 1025}))
    before = req.SerializeToString()
    with pytest.raises(PacketValidationError, match=r'metadata\["k"\]'):
        validate.check_packet(req, what="inbound packet invalid")
    assert req.SerializeToString() == before


def test_validate_outbound_sample_rate_below_wire_minimum_is_rejected() -> None:
    # StreamMessage.validate only needs > 0; the wire rule needs >= 8000 (4.2 item 6).
    msg = StreamMessage(audio=AudioFrame(pcm=b"x", sample_rate_hz=7999))
    msg.validate()
    with pytest.raises(PacketValidationError) as info:
        validate.check_packet(codec.to_pb_data_request(msg))
    assert info.value.field == "audio.sample_rate_hz"


def test_size_constants() -> None:
    assert validate.MAX_MESSAGE_BYTES == 10 * MIB
    assert validate.MAX_FRAME_PAYLOAD_BYTES == 10 * MIB
    assert validate.MAX_CHUNKED_MESSAGE_BYTES == 64 * MIB
    assert validate.MAX_METADATA_PAIRS == 100
