"""StreamMessage <-> transport.v1 codec, with the Go SDK's codec test cases.

See docs/contract/stream.md#encoding, docs/contract/stream.md#json-mirror and
docs/contract/stream.md#inbound-decode.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given
from hypothesis import strategies as st

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import (
    AudioFrame,
    BinaryFrame,
    StreamEnvelope,
    StreamMessage,
    TransportConfig,
    TransportDescriptor,
    VideoFrame,
)
from bubu._transport import codec
from bubu.errors import ProtocolViolationError


@pytest.fixture(autouse=True)
def _fresh_key_entries() -> None:
    # The writer caches per-key entry bytes; a test must not lean on entries an earlier test
    # built (under mutation testing they would hide the mutated entry code).
    codec._KEY_ENTRIES.clear()


ENV_MIME = "application/vnd.bubu.packet+json"
TS = dt.datetime(2026, 4, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
TS_MS = 1775044800123


def envelope_json(packet: Any) -> dict[str, Any]:
    assert packet.WhichOneof("frame") == "binary"
    assert packet.binary.mime_type == ENV_MIME
    return json.loads(packet.binary.payload)  # type: ignore[no-any-return]


def roundtrip(msg: StreamMessage) -> StreamMessage:
    """Encode as the engram would, carry the bytes as a DataResponse, decode."""
    wire = codec.to_pb_data_request(msg).SerializeToString()
    return codec.from_pb_packet(pb.DataResponse.FromString(wire))


# -- outbound (docs/contract/stream.md#encoding) ------------------------------------------------


def test_audio_fields_metadata_and_envelope_are_copied() -> None:
    msg = StreamMessage(
        audio=AudioFrame(
            pcm=b"\x01\x02", sample_rate_hz=16000, channels=1, codec="pcm16", timestamp_ms=10
        ),
        kind="speech.audio.v1",
        message_id="a-1",
        timestamp=TS,
        metadata={"user": "x"},
        envelope=StreamEnvelope(stream_id="s", sequence=3, partition="p"),
    )
    req = codec.to_pb_data_request(msg)
    assert req.WhichOneof("frame") == "audio"
    assert (req.audio.pcm, req.audio.sample_rate_hz, req.audio.channels) == (b"\x01\x02", 16000, 1)
    assert (req.audio.codec, req.audio.timestamp_ms) == ("pcm16", 10)
    assert dict(req.metadata) == {
        "user": "x",
        "bubu.envelope.kind": "speech.audio.v1",
        "bubu.envelope.message_id": "a-1",
        "bubu.envelope.timestamp_ms": str(TS_MS),
    }
    assert (req.envelope.stream_id, req.envelope.sequence, req.envelope.partition) == ("s", 3, "p")
    assert not req.HasField("payload")


def test_json_message_mirrors_into_envelope_frame_and_struct() -> None:
    msg = StreamMessage.json(
        {"b": 1, "a": "x"},
        kind="data",
        message_id="m-1",
        timestamp=TS,
        metadata={"k": "v"},
        inputs={"q": [1, 2]},
        transports=(
            TransportDescriptor(
                name="t", kind="livekit", mode="hot", typed_config=TransportConfig("ref", "why")
            ),
        ),
    )
    req = codec.to_pb_data_request(msg)
    doc = envelope_json(req)
    assert doc == {
        "version": "v1",
        "kind": "data",
        "messageId": "m-1",
        "timestampMs": TS_MS,
        "metadata": {"k": "v"},
        "payload": {"a": "x", "b": 1},
        "inputs": {"q": [1, 2]},
        "transports": [
            {
                "name": "t",
                "kind": "livekit",
                "mode": "hot",
                "typedConfig": {"transportRef": "ref", "modeReason": "why"},
            }
        ],
    }
    # The hub evaluates the Struct, never the envelope JSON
    # (docs/contract/stream.md#json-mirror).
    assert codec.struct_to_dict(req.payload) == {"a": "x", "b": 1}
    assert codec.struct_to_dict(req.inputs) == {"q": [1, 2]}
    assert req.transports[0].typed_config.transport_ref == "ref"
    # Envelope metadata is the user's map only; bubu.envelope.* ride in the packet metadata.
    assert req.metadata["bubu.envelope.message_id"] == "m-1"


def test_payload_without_kind_defaults_envelope_kind_to_data() -> None:
    req = codec.to_pb_data_request(StreamMessage(payload=b'{"x":1}'))
    assert envelope_json(req) == {"version": "v1", "kind": "data", "payload": {"x": 1}}
    assert "bubu.envelope.kind" not in req.metadata


def test_kind_only_message_becomes_envelope_without_struct() -> None:
    req = codec.to_pb_data_request(StreamMessage(kind="telemetry", metadata={"a": "b"}))
    assert envelope_json(req) == {"version": "v1", "kind": "telemetry", "metadata": {"a": "b"}}
    assert not req.HasField("payload")


def test_raw_binary_passthrough_keeps_mime_and_timestamp() -> None:
    req = codec.to_pb_data_request(
        StreamMessage.from_bytes(b"\x00\x01", "application/octet-stream", timestamp_ms=42)
    )
    assert req.binary.payload == b"\x00\x01"
    assert req.binary.mime_type == "application/octet-stream"
    assert req.binary.timestamp_ms == 42
    assert not req.HasField("payload") and not req.HasField("inputs")


def test_raw_binary_empty_mime_is_sent_as_octet_stream() -> None:
    req = codec.to_pb_data_request(StreamMessage.from_bytes(b"abc", ""))
    assert req.binary.mime_type == "application/octet-stream"


def test_mirrored_payload_with_non_json_mime_bypasses_envelope() -> None:
    data = b'{"a":1}'
    msg = StreamMessage(payload=data, binary=BinaryFrame(data, "application/custom-binary"))
    req = codec.to_pb_data_request(msg)
    assert req.binary.mime_type == "application/custom-binary"
    assert req.binary.payload == data
    assert not req.HasField("payload")


def test_binary_timestamp_overrides_envelope_frame_timestamp_even_when_zero() -> None:
    msg = StreamMessage.json({"a": 1}, timestamp=TS)
    req = codec.to_pb_data_request(msg)
    assert envelope_json(req)["timestampMs"] == TS_MS
    assert req.binary.timestamp_ms == 0  # Go quirk, 4.3 step 3


def test_raw_binary_with_inputs_uses_envelope_and_restores_json_mirror() -> None:
    data = b'{"a":1}'
    msg = StreamMessage(
        payload=data, binary=BinaryFrame(data, "application/octet-stream"), inputs=b'{"i":2}'
    )
    req = codec.to_pb_data_request(msg)
    assert envelope_json(req)["inputs"] == {"i": 2}
    back = codec.from_pb_packet(req)
    assert back.binary == BinaryFrame(data, "application/json", 0)
    assert back.inputs_data() == {"i": 2}
    assert back.kind == "data"


def test_envelope_json_is_compacted() -> None:
    msg = StreamMessage(payload=b'{ "a" : [1, 2] }', kind="data")
    assert b'"payload":{"a":[1,2]}' in codec.to_pb_data_request(msg).binary.payload


@pytest.mark.parametrize(
    ("msg", "error"),
    [
        (StreamMessage(payload=b"{bad", kind="data"), "envelope payload is not valid JSON"),
        (StreamMessage(payload=b"[1,2]", kind="data"), "payload decode failed"),
        (StreamMessage(inputs=b"{bad", kind="data"), "envelope inputs is not valid JSON"),
        (StreamMessage(), "missing audio, video, or binary payload"),
    ],
)
def test_unencodable_messages_are_rejected(msg: StreamMessage, error: str) -> None:
    with pytest.raises(ProtocolViolationError, match=error):
        codec.to_pb_data_request(msg)


def test_audio_payload_must_be_a_json_object() -> None:
    msg = StreamMessage(audio=AudioFrame(b"x", 16000), payload=b'"str"')
    with pytest.raises(ProtocolViolationError, match="payload decode failed"):
        codec.to_pb_data_request(msg)


@pytest.mark.parametrize(
    ("msg", "field"),
    [
        (StreamMessage(audio=AudioFrame(b"x", 16000), binary=BinaryFrame(b"y")), "frames"),
        (
            StreamMessage(payload=b'{"a":1}', binary=BinaryFrame(b'{"a":2}', "application/json")),
            "binary.payload",
        ),
        (StreamMessage(kind="error"), "payload"),
        (StreamMessage(kind="data", message_id=" id"), "message_id"),
        (StreamMessage(kind="data", metadata={"": "x"}), "metadata"),
        (StreamMessage(kind="heartbeat", payload=b"{}"), "kind"),
        (StreamMessage(audio=AudioFrame(b"", 16000)), "audio.pcm"),
        (StreamMessage(video=VideoFrame(b"v")), "video.codec"),
        (StreamMessage(video=VideoFrame(b"v", raw=True)), "video"),
        (StreamMessage(binary=BinaryFrame(b"x", ENV_MIME)), "binary.mime_type"),
        (StreamMessage(binary=BinaryFrame(b"x", ENV_MIME + "; charset=utf-8")), "binary.mime_type"),
        (StreamMessage(binary=BinaryFrame(b"x", "not a mime type")), "binary.mime_type"),
        (
            StreamMessage(
                kind="data", payload=b'{"a":1}', binary=BinaryFrame(b'{"b":1}', ENV_MIME)
            ),
            "binary.payload",
        ),
        (
            StreamMessage(
                kind="data",
                payload=b'{"a":1}',
                binary=BinaryFrame(b'{"b":1}', "APPLICATION/VND.BUBU.PACKET+JSON"),
            ),
            "binary.payload",
        ),
        (StreamMessage(binary=BinaryFrame(b"raw"), inputs=b'{"i":1}'), "binary.payload"),
        (StreamMessage(kind="bad kind"), "kind"),
    ],
)
def test_outbound_rejections_name_the_field(msg: StreamMessage, field: str) -> None:
    with pytest.raises(ProtocolViolationError, match=f"stream message {field}"):
        codec.to_pb_data_request(msg)


# -- inbound (docs/contract/stream.md#inbound-decode) -------------------------------------------


def test_inbound_audio_hoists_metadata_and_renders_structs_compactly() -> None:
    resp = pb.DataResponse(
        audio=pb.AudioFrame(
            pcm=b"pcm", sample_rate_hz=48000, channels=2, codec="opus", timestamp_ms=5
        ),
        metadata={
            "bubu.envelope.kind": "speech.audio.v1",
            "bubu.envelope.message_id": "id-9",
            "bubu.envelope.timestamp_ms": str(TS_MS),
            "x": "y",
        },
    )
    resp.payload.fields["foo"].string_value = "bar"
    resp.inputs.fields["baz"].number_value = 1
    resp.transports.add(name="t1")
    resp.envelope.stream_id = "s"
    resp.envelope.sequence = 9
    msg = codec.from_pb_packet(resp)
    assert msg.audio == AudioFrame(b"pcm", 48000, 2, "opus", 5)
    assert (msg.kind, msg.message_id, msg.timestamp) == ("speech.audio.v1", "id-9", TS)
    assert msg.metadata == {"x": "y"}
    assert msg.payload == b'{"foo":"bar"}'
    assert msg.inputs == b'{"baz":1}'
    assert msg.transports == (TransportDescriptor(name="t1"),)
    assert msg.envelope == StreamEnvelope(stream_id="s", sequence=9)


def test_inbound_envelope_restores_json_mirror_with_envelope_timestamp() -> None:
    doc = {
        "version": "v1",
        "kind": "data",
        "messageId": "m",
        "timestampMs": TS_MS,
        "metadata": {"a": "b"},
        "payload": {"x": 1},
        "inputs": {"i": True},
    }
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=json.dumps(doc).encode(), mime_type=ENV_MIME)
    )
    msg = codec.from_pb_packet(resp)
    assert msg.json_data() == {"x": 1}
    assert msg.binary is not None
    assert msg.binary.mime_type == "application/json"
    assert msg.binary.payload == msg.payload
    assert msg.binary.timestamp_ms == TS_MS
    assert (msg.kind, msg.message_id, msg.timestamp) == ("data", "m", TS)
    assert msg.metadata == {"a": "b"}
    assert msg.inputs_data() == {"i": True}


@pytest.mark.parametrize("mime", [ENV_MIME + "; charset=utf-8", "APPLICATION/VND.BUBU.PACKET+JSON"])
def test_inbound_envelope_mime_is_case_insensitive_with_parameters(mime: str) -> None:
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=b'{"payload":{"a":1}}', mime_type=mime))
    msg = codec.from_pb_packet(resp)
    assert msg.json_data() == {"a": 1}
    assert msg.kind == ""  # Go's receiver leaves a missing kind empty (test_codec_go.py)


def test_inbound_envelope_outer_metadata_replaces_envelope_metadata() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b'{"kind":"k","metadata":{"inner":"1"}}', mime_type=ENV_MIME),
        metadata={"outer": "2", "bubu.envelope.kind": "hoisted"},
    )
    msg = codec.from_pb_packet(resp)
    assert msg.metadata == {"outer": "2"}  # replaced, not merged
    assert msg.kind == "hoisted"  # hoisted metadata beats the envelope value


def test_inbound_envelope_keeps_its_metadata_when_only_reserved_keys_are_outside() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b'{"kind":"k","metadata":{"inner":"1"}}', mime_type=ENV_MIME),
        metadata={"bubu.envelope.message_id": "mid"},
    )
    msg = codec.from_pb_packet(resp)
    assert msg.metadata == {"inner": "1"}
    assert msg.message_id == "mid"


def test_inbound_envelope_payload_beats_struct_and_inputs_beat_struct() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(
            payload=b'{"payload":{"from":"envelope"},"inputs":{"from":"envelope"}}',
            mime_type=ENV_MIME,
        )
    )
    resp.payload.fields["from"].string_value = "struct"
    resp.inputs.fields["from"].string_value = "struct"
    msg = codec.from_pb_packet(resp)
    assert msg.json_data() == {"from": "envelope"}
    assert msg.inputs_data() == {"from": "envelope"}


def test_inbound_struct_fills_inputs_when_envelope_has_none() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b'{"payload":{"a":1}}', mime_type=ENV_MIME)
    )
    resp.inputs.fields["hub"].string_value = "evaluated"
    assert codec.from_pb_packet(resp).inputs_data() == {"hub": "evaluated"}


def test_inbound_binary_passthrough_text_plain() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b"hello", mime_type="text/plain", timestamp_ms=7)
    )
    msg = codec.from_pb_packet(resp)
    assert msg.payload == b"hello"
    assert msg.binary == BinaryFrame(b"hello", "text/plain", 7)


def test_inbound_binary_empty_mime_defaults_to_octet_stream() -> None:
    msg = codec.from_pb_packet(pb.DataResponse(binary=pb.BinaryFrame(payload=b"x")))
    assert msg.binary is not None and msg.binary.mime_type == "application/octet-stream"


def test_inbound_raw_bytes_win_over_payload_struct() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b"raw", mime_type="text/plain"),
        metadata={"bubu.envelope.kind": "data", "m": "1"},
    )
    resp.payload.fields["ignored"].bool_value = True
    msg = codec.from_pb_packet(resp)
    assert msg.payload == b"raw"
    assert msg.kind == "data" and msg.metadata == {"m": "1"}


def test_binary_passthrough_round_trip_stays_raw() -> None:
    msg = roundtrip(StreamMessage.from_bytes(b"hello", "text/plain", timestamp_ms=7))
    again = codec.to_pb_data_request(msg)
    assert again.binary.mime_type == "text/plain"
    assert not again.HasField("payload")


def test_inbound_rejects_invalid_binary_mime() -> None:
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=b"x", mime_type="not a mime type"))
    with pytest.raises(ProtocolViolationError, match="binary.mime_type"):
        codec.from_pb_packet(resp)


def test_inbound_rejects_error_envelope_without_payload() -> None:
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=b'{"kind":"error"}', mime_type=ENV_MIME))
    with pytest.raises(ProtocolViolationError, match="payload"):
        codec.from_pb_packet(resp)


def test_inbound_rejects_audio_without_pcm() -> None:
    resp = pb.DataResponse(audio=pb.AudioFrame(sample_rate_hz=16000, channels=1))
    with pytest.raises(ProtocolViolationError, match="audio.pcm"):
        codec.from_pb_packet(resp)


def test_inbound_rejects_encoded_video_without_codec() -> None:
    resp = pb.DataResponse(video=pb.VideoFrame(payload=b"v"))
    with pytest.raises(ProtocolViolationError, match="video.codec"):
        codec.from_pb_packet(resp)


@pytest.mark.parametrize(
    "payload",
    [b'{"payload": {bad', b'{"timestampMs": "1", "kind": "k"}', b"[]"],
)
def test_inbound_bad_envelope_is_envelope_decode_failed(payload: bytes) -> None:
    # Go-pinned in test_codec_go.py (tractatus FromBinaryFrame).
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=payload, mime_type=ENV_MIME))
    with pytest.raises(ProtocolViolationError, match="envelope decode failed"):
        codec.from_pb_packet(resp)


def test_inbound_envelope_timestamp_falls_back_to_frame_and_rejects_overflow() -> None:
    ok = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b'{"kind":"k"}', mime_type=ENV_MIME, timestamp_ms=TS_MS)
    )
    assert codec.from_pb_packet(ok).timestamp == TS
    bad = pb.DataResponse(
        binary=pb.BinaryFrame(payload=b'{"kind":"k"}', mime_type=ENV_MIME, timestamp_ms=(1 << 63))
    )
    with pytest.raises(ProtocolViolationError, match="envelope decode failed"):
        codec.from_pb_packet(bad)


def test_inbound_tolerates_legacy_transport_config_in_json_and_proto() -> None:
    doc = b'{"kind":"data","payload":{},"transports":[{"name":"t","config":{"x":1}}]}'
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=doc, mime_type=ENV_MIME))
    assert codec.from_pb_packet(resp).transports == (TransportDescriptor(name="t"),)
    # Field 4 (the removed `config` Struct) from an older peer is skipped as unknown.
    legacy = pb.TransportDescriptor(name="t").SerializeToString() + b"\x22\x00"
    assert pb.TransportDescriptor.FromString(legacy).name == "t"


def test_inbound_hook_packet_from_connector() -> None:
    doc = {"kind": "hook", "payload": {"kind": "hook", "type": "storyrun.ready"}}
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(payload=json.dumps(doc).encode(), mime_type=ENV_MIME),
        metadata={"bubu.envelope.message_id": "ns/run:storyrun.ready", "kind": "hook"},
    )
    msg = codec.from_pb_packet(resp)
    assert msg.kind == "hook"
    assert msg.message_id == "ns/run:storyrun.ready"


def test_frameless_packet_decodes_by_merge() -> None:
    resp = pb.DataResponse(metadata={"bubu.envelope.kind": "data"})
    resp.payload.fields["a"].number_value = 2
    msg = codec.from_pb_packet(resp)
    assert (msg.kind, msg.json_data(), msg.binary) == ("data", {"a": 2}, None)


# -- round trips ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "msg",
    [
        StreamMessage.json(
            {"n": 1, "s": "x", "l": [1, 2.5, None, True, {}], "o": {}},
            kind="data",
            message_id="m",
            metadata={"k": "v"},
        ),
        StreamMessage.from_bytes(b"\x00\xff", "application/octet-stream", timestamp_ms=3),
        StreamMessage.from_audio(
            b"\x00" * 640,
            16000,
            1,
            "pcm16",
            timestamp_ms=20,
            kind="speech.audio.v1",
            payload=b'{"a":1}',
        ),
        StreamMessage.from_video(b"frame", "h264", width=640, height=480, timestamp_ms=33),
        StreamMessage.from_video(b"rgb", width=2, height=2, raw=True),
        StreamMessage.error(
            "boom",
            type="timeout",
            retryable=True,
            exit_code=124,
            exit_class="retry",
            code="E1",
            details={"step": "s"},
        ),
        StreamMessage(kind="telemetry", metadata={"a": "b"}),
        StreamMessage.json(
            {"x": 1}, envelope=StreamEnvelope(stream_id="s", sequence=1, partition="p")
        ),
    ],
    ids=["json", "binary", "audio", "video", "raw-video", "error", "kind-only", "envelope"],
)
def test_round_trip_preserves_every_shape(msg: StreamMessage) -> None:
    back = roundtrip(msg)
    expected = msg
    if msg.binary is not None and not msg.payload:
        # Raw binary comes back with its bytes mirrored into payload (Go decode, 4.6 step 4).
        expected = msg.replace(payload=msg.binary.payload)
    if msg.payload and msg.audio is None and msg.video is None and not msg.kind:
        expected = msg.replace(kind="data")  # the envelope defaults the kind
    assert back.replace(binary=None) == expected.replace(binary=None)
    if msg.binary is not None:
        assert back.binary is not None
        assert (back.binary.payload, back.binary.mime_type) == (
            msg.binary.payload,
            msg.binary.mime_type,
        )


def test_error_message_round_trip_parses_structured_error() -> None:
    back = roundtrip(StreamMessage.error("boom", retryable=False, details={"k": 1}))
    assert back.is_error
    assert back.binary is None  # no JSON mirror for error messages (deliberate Go departure)
    assert back.error_info() == {
        "version": "v1",
        "type": "execution_error",
        "message": "boom",
        "retryable": False,
        "details": {"k": 1},
    }


def test_trace_context_metadata_passes_through() -> None:
    tp = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"
    msg = StreamMessage.json({"a": 1}, metadata={"traceparent": tp, "tracestate": "k=v"})
    req = codec.to_pb_data_request(msg)
    assert req.metadata["traceparent"] == tp
    assert envelope_json(req)["metadata"]["traceparent"] == tp
    assert roundtrip(msg).metadata == {"traceparent": tp, "tracestate": "k=v"}


# -- Struct fidelity -------------------------------------------------------------------------


def test_struct_fidelity_and_go_number_rendering() -> None:
    doc = {
        "int": 2**53,
        "neg": -7,
        "float": 1.5,
        "whole": 3.0,
        "big": 1e21,
        "null": None,
        "false": False,
        "zero": 0,
        "empty": "",
        "nested": {"l": [[], {}, [1, {"a": None}]]},
    }
    st = codec.dict_to_struct(doc)
    back = codec.struct_to_dict(struct_pb2.Struct.FromString(st.SerializeToString()))
    assert back == {**doc, "whole": 3, "big": 1e21}
    assert isinstance(back["whole"], int) and isinstance(back["big"], float)
    rendered = codec.struct_to_json(st)
    assert rendered.startswith(b'{"big":1e21,"empty":"","false":false,"float":1.5,')
    assert b'"int":9007199254740992,' in rendered and b'"whole":3,' in rendered


def test_struct_rejects_unrepresentable_values() -> None:
    with pytest.raises(ProtocolViolationError, match="payload decode failed"):
        codec.dict_to_struct({"a": 10**400})
    with pytest.raises(ProtocolViolationError, match="payload decode failed"):
        codec.dict_to_struct({"a": object()})


def test_empty_struct_payload_is_present_on_the_wire() -> None:
    req = codec.to_pb_data_request(StreamMessage.json({}))
    assert req.HasField("payload")
    assert roundtrip(StreamMessage.json({})).json_data() == {}


# -- control, heartbeats, receipts ------------------------------------------------------------

ALL_ACTIONS = [
    (pb.CONTROL_ACTION_NOOP, "noop"),
    (pb.CONTROL_ACTION_START, "start"),
    (pb.CONTROL_ACTION_STOP, "stop"),
    (pb.CONTROL_ACTION_START_UPSTREAM, "start-upstream"),
    (pb.CONTROL_ACTION_STOP_UPSTREAM, "stop-upstream"),
    (pb.CONTROL_ACTION_START_DOWNSTREAM, "start-downstream"),
    (pb.CONTROL_ACTION_STOP_DOWNSTREAM, "stop-downstream"),
    (pb.CONTROL_ACTION_HEARTBEAT, "heartbeat"),
    (pb.CONTROL_ACTION_CONNECTOR_READY, "connector.ready"),
    (pb.CONTROL_ACTION_CONNECTOR_CAPABILITIES, "connector.capabilities"),
    (pb.CONTROL_ACTION_HANDOFF_DRAINING, "handoff.draining"),
    (pb.CONTROL_ACTION_HANDOFF_CUTOVER, "handoff.cutover"),
    (pb.CONTROL_ACTION_HANDOFF_READY, "handoff.ready"),
    (pb.CONTROL_ACTION_ACK, "ack"),
    (pb.CONTROL_ACTION_ERROR, "error"),
    (pb.CONTROL_ACTION_CODEC_SELECT, "codec-select"),
]


@pytest.mark.parametrize(("action", "name"), ALL_ACTIONS)
def test_every_control_action_maps_both_ways(action: int, name: str) -> None:
    assert codec.control_type(action) == name
    assert codec.control_type_to_pb(name) == (action, "")
    assert codec.control_type_to_pb(f"  {name.upper()} ") == (action, "")
    req = pb.ControlRequest.FromString(codec.control_request(name).SerializeToString())
    assert (req.action, req.custom_action) == (action, "")


def test_control_custom_action_rules() -> None:
    assert codec.control_type_to_pb("") == (pb.CONTROL_ACTION_NOOP, "")
    assert codec.control_type_to_pb(" Custom.Thing ") == (
        pb.CONTROL_ACTION_UNSPECIFIED,
        "Custom.Thing",
    )
    assert codec.control_type(pb.CONTROL_ACTION_START, " resume ") == "resume"  # custom wins
    assert codec.control_type(99) == ""  # unknown enum numbers map to ""
    assert codec.control_type(pb.ControlResponse.FromString(b"\x08\x63").action) == ""


def test_delivery_receipt_shape() -> None:
    req = codec.delivery_receipt("ns/run/step", 12, "", 345)
    assert req.action == pb.CONTROL_ACTION_UNSPECIFIED
    assert req.custom_action == "downstream.delivered"
    assert dict(req.metadata) == {
        "stream_id": "ns/run/step",
        "sequence": "12",
        "partition": "",
        "size_bytes": "345",
    }


def test_packet_size_counts_empty_map_values_like_go() -> None:
    packet = pb.DataResponse(metadata={"a": ""})
    assert packet.SerializeToString() == b"\x22\x05\x0a\x01a\x12\x00"  # Go writes `12 00`
    assert codec.packet_size(packet) == 7
    # DataRequest and DataResponse share a layout: same size for the same content.
    assert codec.packet_size(pb.DataRequest.FromString(packet.SerializeToString())) == 7


def test_heartbeat_request_and_detection() -> None:
    hb = codec.heartbeat_data_request()
    assert hb.WhichOneof("frame") is None and dict(hb.metadata) == {"bubu-heartbeat": "true"}
    assert codec.is_heartbeat_metadata({"bubu-heartbeat": " TRUE "})
    assert not codec.is_heartbeat_metadata({"bubu-heartbeat": "false"})


def test_typed_config_is_trimmed_and_blank_means_absent() -> None:
    msg = StreamMessage.json(
        {"a": 1},
        transports=(
            TransportDescriptor(name="a", typed_config=TransportConfig(" ref ", "")),
            TransportDescriptor(name="b", typed_config=TransportConfig(" ", "")),
        ),
    )
    req = codec.to_pb_data_request(msg)
    assert req.transports[0].typed_config.transport_ref == "ref"
    assert not req.transports[1].HasField("typed_config")
    assert "typedConfig" not in envelope_json(req)["transports"][1]
    back = roundtrip(msg)
    assert back.transports == (
        TransportDescriptor(name="a", typed_config=TransportConfig("ref", "")),
        TransportDescriptor(name="b"),
    )


def test_hoisted_metadata_wins_even_when_blank_and_bad_timestamps_are_dropped() -> None:
    resp = pb.DataResponse(
        binary=pb.BinaryFrame(
            payload=b'{"kind":"k","messageId":"m","timestampMs":5}', mime_type=ENV_MIME
        ),
        metadata={"bubu.envelope.message_id": " ", "bubu.envelope.timestamp_ms": "1_000"},
    )
    msg = codec.from_pb_packet(resp)
    assert msg.message_id == ""  # a present key overrides the envelope, trimmed
    assert msg.timestamp == dt.datetime(1970, 1, 1, 0, 0, 0, 5000, tzinfo=dt.UTC)
    assert msg.metadata == {}


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False).filter(lambda x: not x.is_integer())
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)


@given(st.dictionaries(st.text(max_size=8), json_values, max_size=6))
def test_struct_round_trip_is_type_exact_for_json(doc: dict[str, Any]) -> None:
    st_ = codec.dict_to_struct(doc)
    wire = struct_pb2.Struct.FromString(st_.SerializeToString())
    assert codec.struct_to_dict(wire) == doc
    assert json.loads(codec.struct_to_json(wire)) == doc


def test_envelope_decode_error_texts() -> None:
    # Go-pinned accept/refuse in test_codec_go.py; the texts are bubu's own.
    big = b'{"kind":"k","payload":"' + b"x" * codec.MAX_ENVELOPE_BYTES + b'"}'
    with pytest.raises(ProtocolViolationError) as info:
        codec.decode_envelope(big)
    assert str(info.value) == "envelope decode failed: envelope exceeds 10 MiB"
    with pytest.raises(ProtocolViolationError) as info:
        codec.decode_envelope(b'{"kind":"k"}', 1 << 63)
    assert str(info.value) == "envelope decode failed: frame timestamp overflows int64"
    with pytest.raises(ProtocolViolationError) as info:
        codec.decode_envelope(b"{")
    assert str(info.value).startswith("envelope decode failed: ")


def test_envelope_decode_without_a_frame_timestamp_has_none() -> None:
    assert codec.decode_envelope(b'{"kind":"k"}').timestamp_ms == 0


@pytest.mark.parametrize(("field", "raw"), [("payload", b"{"), ("inputs", b"[1]")])
def test_struct_source_error_texts(field: str, raw: bytes) -> None:
    with pytest.raises(ProtocolViolationError) as info:
        codec._json_object(raw, field)
    assert str(info.value).startswith(f"{field} decode failed: ")


def test_inbound_envelope_reads_invalid_utf8_as_replacement_characters_like_go() -> None:
    # Go's encoding/json decodes an invalid UTF-8 sequence inside a string as U+FFFD; msgspec
    # refuses it with a UnicodeDecodeError that used to escape the codec.
    env = codec.decode_envelope(b'{"kind":"a\xffb","payload":{"x":"c\xfe"}}')
    assert env.kind == "a\ufffdb"
    assert json.loads(env.payload) == {"x": "c\ufffd"}


def test_inbound_envelope_with_invalid_bytes_outside_strings_is_a_protocol_violation() -> None:
    with pytest.raises(ProtocolViolationError, match="^envelope decode failed: "):
        codec.decode_envelope(b'{"kind":"a"}\xff')


@pytest.mark.parametrize("field", ["payload", "inputs"])
@pytest.mark.parametrize("encode", [codec.to_pb_data_request, codec.envelope_request_bytes])
def test_outbound_json_with_invalid_utf8_names_the_field(field: str, encode: Any) -> None:
    msg = StreamMessage(kind="data", **{field: b'{"a":"\xff"}'})
    with pytest.raises(ProtocolViolationError) as info:
        encode(msg)
    assert str(info.value) == f"{field} decode failed: a string is not valid UTF-8"
