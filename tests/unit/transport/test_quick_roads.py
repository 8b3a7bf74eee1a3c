"""The quick encode roads: ``codec.envelope_request_bytes`` for a payload object with at most a
kind, and ``codec.audio_request_bytes``.

Every case must give the bytes of the general road (``codec.data_request_bytes``, which
test_struct_bytes.py pins to upb), the same metadata for the rules and the same errors; the JSON
road with and without the compiled ``_structwire.go_compact``.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubu._runtime.messages import (
    AudioFrame,
    BinaryFrame,
    StreamEnvelope,
    StreamMessage,
    TransportDescriptor,
)
from bubu._runtime.transport import TransportSettings
from bubu._transport import _structwire, codec, wire
from bubu.errors import MessageTooLargeError, ProtocolViolationError

TS = dt.datetime(2026, 4, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
DOC = {"id": "c0a8", "n": 3, "f": 1.5, "ok": True, "none": None, "l": [1, "a <&> \u2028"], "o": {}}
SPACED = b' {\n "a" : [ 1 ,\t"x y\\" <z>" ] ,\r\n "b":{ } } '


def _mirror(payload: bytes, **fields: Any) -> StreamMessage:
    return StreamMessage(
        payload=payload, binary=BinaryFrame(payload=payload, mime_type="application/json"), **fields
    )


@pytest.fixture(params=["compiled", "python"])
def road(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    if request.param == "python":
        monkeypatch.setattr(codec, "_compiled_go_compact", None)
        monkeypatch.setattr(codec, "_compiled_json_payload", None)
    codec._KIND_PIECES.clear()
    return str(request.param)


CASES = [
    StreamMessage.json(DOC),
    StreamMessage.json(DOC, kind="data"),
    StreamMessage.json(DOC, kind="custom.kind-1"),
    StreamMessage.json({"a": 1}, kind="data", message_id="m <1>", timestamp=TS),
    StreamMessage.json({"a": 1}, metadata={"traceparent": "00-x", "k": "<v>"}),
    StreamMessage.json({"a": 1}, kind="data", metadata={"k": "v"}),
    StreamMessage.json({"a": 1}, message_id="only-id"),
    StreamMessage.json({"a": 1}, timestamp=dt.datetime(1970, 1, 1, tzinfo=dt.UTC)),
    StreamMessage.json({"a": 1}, timestamp=dt.datetime(1969, 1, 1, tzinfo=dt.UTC)),
    _mirror(SPACED, kind="data"),
    _mirror(b'{"a":1,"a":[2]}', kind="data"),  # msgspec's road: a duplicate key
    _mirror(b'{"k\\u00e9":"\\u00e9"}', kind="data"),  # msgspec's road: an escaped key
    _mirror(b'{"n":123456789012345678901234567890}', kind="data"),
    _mirror(SPACED, kind="data", timestamp=TS),
    StreamMessage(
        payload=b'{"a":1}',
        binary=BinaryFrame(payload=b'{"a":1}', mime_type="application/json", timestamp_ms=7),
        kind="data",
    ),
    StreamMessage(payload=b'{"a":1}', kind="data"),  # no mirror: the envelope is still used
    StreamMessage.json({"a": 1}, inputs={"i": 2}),
    StreamMessage.json({"a": 1}, transports=(TransportDescriptor(name="t"),)),
    StreamMessage.json({"a": 1}, envelope=StreamEnvelope(stream_id="s", sequence=3)),
    StreamMessage(kind="hook", metadata={"x": "y"}),
]


@pytest.mark.parametrize("msg", CASES)
def test_quick_road_gives_the_general_road_bytes(road: str, msg: StreamMessage) -> None:
    fast = codec.envelope_request_bytes(msg)
    assert fast is not None
    data, doc_len, metadata, tail = fast
    expected, head, expected_tail = codec.data_request_bytes(msg)
    assert data == expected
    assert doc_len == len(head.binary.payload)
    assert dict(metadata or {}) == dict(head.metadata)
    assert (tail is None) == (expected_tail is None)
    assert wire.encode_outbound_bytes(msg, TransportSettings()) == expected


def test_payload_and_kind_only_uses_the_cached_pieces(road: str) -> None:
    msg = _mirror(b' { "a" : [1, "x <y>"] } ', kind="data")
    data, _, metadata, _ = codec.envelope_request_bytes(msg) or (b"", 0, None, None)
    assert metadata == {"bubu.envelope.kind": "data"}
    assert ("data" in codec._KIND_PIECES) == (road == "compiled")
    assert data == codec.to_pb_data_request(msg).SerializeToString()  # one key per map: upb's
    # Without a kind the packet has no metadata at all (the envelope still says "data").
    data, _, metadata, _ = codec.envelope_request_bytes(_mirror(b'{"a":1}')) or (b"", 0, {}, None)
    assert metadata is None
    assert b'"kind":"data"' in data


def test_kind_pieces_stay_bounded_and_exact() -> None:
    codec._KIND_PIECES.clear()
    for n in range(codec._KIND_PIECES_MAX):
        codec._kind_pieces(f"k{n}")
    assert len(codec._KIND_PIECES) == codec._KIND_PIECES_MAX
    opening, meta, mapping = codec._kind_pieces("x" * 200)  # a two-byte varint length
    assert len(codec._KIND_PIECES) == 1
    assert opening == b'{"version":"v1","kind":"' + b"x" * 200 + b'"'
    built = codec._packet_metadata(StreamMessage(kind="x" * 200)).SerializeToString()
    assert meta == built
    assert mapping == {"bubu.envelope.kind": "x" * 200}


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (b"{nope", "envelope payload is not valid JSON"),
        (b"[1]", "payload decode failed: payload must be a JSON object"),
        (b'"s"', "payload decode failed: payload must be a JSON object"),
    ],
)
def test_quick_road_keeps_the_general_errors(road: str, payload: bytes, error: str) -> None:
    with pytest.raises(ProtocolViolationError, match=error):
        codec.envelope_request_bytes(_mirror(payload, kind="data"))


def test_out_of_range_frame_timestamp_is_left_to_upb(road: str) -> None:
    msg = StreamMessage(
        payload=b'{"a":1}',
        binary=BinaryFrame(payload=b'{"a":1}', mime_type="application/json", timestamp_ms=2**64),
        kind="data",
    )
    assert codec.envelope_request_bytes(msg) is None


def test_a_kind_breaking_the_metadata_rule_is_reported(road: str) -> None:
    msg = _mirror(b'{"a":1}', kind="k" * 1025)  # a valid kind, too long for a metadata value
    with pytest.raises(ProtocolViolationError, match="transport publish request invalid"):
        wire.encode_outbound_bytes(msg, TransportSettings())


TEXT = st.text(alphabet=st.sampled_from(list('ab <>&"\\\u2028\u2029é\n\t')), max_size=12)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4),
    max_leaves=20,
)


@settings(max_examples=300, deadline=None)
@given(JSON, st.sampled_from([None, 0, 2]), st.booleans())
def test_go_compact_is_compact_json_with_go_escapes(
    doc: Any, indent: int | None, ascii_: bool
) -> None:
    raw = json.dumps(doc, indent=indent, ensure_ascii=ascii_).encode()
    expected = codec.go_escape_json(msgspec.json.format(raw, indent=-1))
    assert _structwire.go_compact(raw) == expected
    assert _structwire.go_compact(b" \r\n\t" + raw + b"\n") == expected


def test_go_compact_returns_a_compact_document_itself() -> None:
    raw = b'{"a":"x y","b":[1,2]}'
    assert _structwire.go_compact(raw) is raw
    assert _structwire.go_compact(b'{"a":"\\u003c"}') == b'{"a":"\\u003c"}'
    assert _structwire.go_compact(b'["\xe2\x80\xa8\xe2\x80\xa9\xe2\x80\xa7"]') == (
        b'["\\u2028\\u2029\xe2\x80\xa7"]'
    )
    with pytest.raises(TypeError, match="expected bytes"):
        _structwire.go_compact(bytearray(b"{}"))  # type: ignore[arg-type]


PCM = bytes(range(256)) * 3

AUDIO_CASES = [
    StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, channels=1, codec="pcm16")),
    StreamMessage(audio=AudioFrame(pcm=b"\x01", sample_rate_hz=8000)),  # no codec, channels 1
    StreamMessage(
        audio=AudioFrame(
            pcm=PCM, sample_rate_hz=48000, channels=2, codec="opus", timestamp_ms=2**40
        )
    ),
    StreamMessage(
        audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, timestamp_ms=2**64 - 1),
        kind="data",
        message_id="m",
        timestamp=TS,
        metadata={"a": "b", "c": "d"},
    ),
    StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), kind="voice"),
    StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), metadata={"k": "v"}),
    # each of the packet-metadata sources alone (a message id without a timestamp, and back)
    StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), message_id="m"),
    StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), timestamp=TS),
]


@pytest.mark.parametrize("msg", AUDIO_CASES)
def test_audio_bytes_equal_the_general_road(msg: StreamMessage) -> None:
    fast = codec.audio_request_bytes(msg)
    assert fast is not None
    data, metadata = fast
    expected, head, tail = codec.data_request_bytes(msg)
    assert tail is None
    assert data == expected
    assert dict(metadata or {}) == dict(head.metadata)
    assert (metadata is None) == (not head.metadata)
    assert wire.encode_outbound_bytes(msg, TransportSettings()) == expected


@pytest.mark.parametrize(
    "msg",
    [
        StreamMessage(payload=b'{"a":1}'),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), payload=b'{"a":1}'),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), inputs=b'{"a":1}'),
        StreamMessage(
            audio=AudioFrame(pcm=PCM, sample_rate_hz=16000),
            transports=(TransportDescriptor(name="t"),),
        ),
        StreamMessage(
            audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), envelope=StreamEnvelope(sequence=1)
        ),
        StreamMessage(audio=AudioFrame(pcm=bytearray(PCM), sample_rate_hz=16000)),  # type: ignore[arg-type]
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000.0)),  # type: ignore[arg-type]
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, channels=True)),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, codec=b"x")),  # type: ignore[arg-type]
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, timestamp_ms=1.0)),  # type: ignore[arg-type]
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=2**31)),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, channels=2**31)),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, timestamp_ms=2**64)),
        StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, codec="pcmé")),
    ],
)
def test_audio_bytes_leave_everything_else_to_the_general_road(msg: StreamMessage) -> None:
    assert codec.audio_request_bytes(msg) is None


def test_audio_bytes_take_the_int32_and_uint64_edges() -> None:
    msg = StreamMessage(
        audio=AudioFrame(
            pcm=PCM, sample_rate_hz=2**31 - 1, channels=2**31 - 1, timestamp_ms=2**64 - 1
        )
    )
    data, _ = codec.audio_request_bytes(msg) or (b"", None)
    assert data == codec.to_pb_data_request(msg).SerializeToString()


def test_audio_non_ascii_codec_still_encodes_on_the_general_road() -> None:
    msg = StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000, codec="pcmé"))
    data = wire.encode_outbound_bytes(msg, TransportSettings())
    assert data == codec.to_pb_data_request(msg).SerializeToString()


def test_audio_validation_runs_first() -> None:
    with pytest.raises(ProtocolViolationError, match="audio.pcm: must not be empty"):
        codec.audio_request_bytes(StreamMessage(audio=AudioFrame(pcm=b"", sample_rate_hz=16000)))


@pytest.mark.parametrize(
    "audio",
    [
        AudioFrame(pcm=PCM, sample_rate_hz=7999),
        AudioFrame(pcm=PCM, sample_rate_hz=192001),
        AudioFrame(pcm=PCM, sample_rate_hz=16000, channels=9),
        AudioFrame(pcm=PCM, sample_rate_hz=16000, codec="c" * 33),
    ],
)
def test_audio_rules_are_reported_like_protovalidate(audio: AudioFrame) -> None:
    with pytest.raises(ProtocolViolationError, match="transport publish request invalid"):
        wire.encode_outbound_bytes(StreamMessage(audio=audio), TransportSettings())


@pytest.mark.parametrize(
    "audio",
    [
        AudioFrame(pcm=PCM, sample_rate_hz=8000, channels=8, codec="c" * 32),
        AudioFrame(pcm=PCM, sample_rate_hz=192000, channels=1),
    ],
)
def test_audio_rule_edges_pass(audio: AudioFrame) -> None:
    msg = StreamMessage(audio=audio, metadata={"k" * 128: "v" * 1024})
    assert wire.encode_outbound_bytes(msg, TransportSettings()) == codec.data_request_bytes(msg)[0]


def test_audio_metadata_rules_are_reported() -> None:
    msg = StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000), metadata={"k": "v" * 1025})
    with pytest.raises(ProtocolViolationError, match="transport publish request invalid"):
        wire.encode_outbound_bytes(msg, TransportSettings())


def test_audio_send_cap_is_enforced() -> None:
    msg = StreamMessage(audio=AudioFrame(pcm=PCM, sample_rate_hz=16000))
    with pytest.raises(MessageTooLargeError, match="larger than max"):
        wire.encode_outbound_bytes(msg, TransportSettings(max_send_bytes=len(PCM)))


def _json_struct_bytes(raw: bytes) -> bytes | None:
    pieces = _structwire.json_payload(raw)
    if pieces is None:
        return None
    body, compact = pieces
    assert compact == codec.go_escape_json(msgspec.json.format(raw, indent=-1))
    if compact == raw:
        assert compact is raw
    return body


def _reference_struct(raw: bytes) -> bytes | None:
    # What the quick road used before json_struct_bytes: msgspec, then struct_bytes.
    try:
        obj = msgspec.json.decode(raw)
    except (msgspec.DecodeError, UnicodeDecodeError):  # msgspec raises both
        return None
    if type(obj) is not dict:
        return None
    try:
        return codec.struct_bytes(obj)
    except ProtocolViolationError:
        return None


ANY_TEXT = st.text(
    alphabet=st.sampled_from(list('az "\\/\b\f\n\r\t\x00\x1f\x7f<>&é\u2028\ud7ff\ue000\U0001f600')),
    max_size=10,
)
PLAIN_KEY = st.text(alphabet=st.sampled_from(list("abcé\U0001f600 <")), max_size=6)
NUMBERS = (
    st.integers(min_value=-(2**80), max_value=2**80)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from([0, -0.0, 0.0, 5e-324, 1.7976931348623157e308, 2**53 + 1, -(2**63)])
)
DOCS = st.recursive(
    st.none() | st.booleans() | NUMBERS | ANY_TEXT,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(PLAIN_KEY, inner, max_size=4),
    max_leaves=25,
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(PLAIN_KEY, DOCS, max_size=5), st.sampled_from([None, 2]), st.booleans())
def test_json_payload_equal_the_msgspec_road(
    doc: dict[str, Any], indent: int | None, ascii_: bool
) -> None:
    raw = json.dumps(doc, indent=indent, ensure_ascii=ascii_).encode()
    got = _json_struct_bytes(raw)
    if ascii_ and b"\\u" in raw:
        assert got is None or got == _reference_struct(raw)  # declined if a key is escaped
    else:
        assert got is not None  # nothing unusual: no escaped key, duplicate or deep nesting
        assert got == _reference_struct(raw)


@settings(max_examples=600, deadline=None)
@given(
    st.dictionaries(PLAIN_KEY, DOCS, min_size=1, max_size=4),
    st.data(),
)
def test_json_payload_refuse_what_msgspec_refuses(doc: dict[str, Any], data: Any) -> None:
    raw = bytearray(json.dumps(doc, ensure_ascii=data.draw(st.booleans())).encode())
    for _ in range(data.draw(st.integers(min_value=1, max_value=3))):
        at = data.draw(st.integers(min_value=0, max_value=len(raw)))
        edit = data.draw(st.sampled_from(["insert", "delete", "replace"]))
        byte = data.draw(
            st.sampled_from(b'{}[]",:\\ u0-+.eE1tfnl\x00\x1f\x80\xbf\xc3\xed\xf0\xf4\xff')
        )
        if edit == "insert":
            raw[at:at] = bytes((byte,))
        elif at < len(raw):
            raw[at : at + 1] = b"" if edit == "delete" else bytes((byte,))
    got = _json_struct_bytes(bytes(raw))
    expected = _reference_struct(bytes(raw))
    assert got is None or got == expected


@pytest.mark.parametrize(
    "raw",
    [
        b"",
        b"  ",
        b"[1]",
        b'"s"',
        b"{",
        b'{"a":1',
        b'{"a":1} x',
        b'{"a":1,}',
        b'{"a" 1}',
        b'{"a":01}',
        b'{"a":1.}',
        b'{"a":.5}',
        b'{"a":1e}',
        b'{"a":-}',
        b'{"a":+1}',
        b'{"a":tru}',
        b'{"a":nul}',
        b'{"a":falsy}',
        b'{"a":[1,]}',
        b'{"a":[1 2]}',
        b'{"a":"\x01"}',
        b'{"a":"\\x"}',
        b'{"a":"\\u12"}',
        b'{"a":"\\ud800"}',
        b'{"a":"\\udc00"}',
        b'{"a":"\\ud800\\u0041"}',
        b'{"a":"\xff"}',
        b'{"a":"\xc3"}',
        b'{"a":"\xe0\x80\x80"}',
        b'{"a":"\xed\xa0\x80"}',
        b'{"a":"\xf0\x80\x80\x80"}',
        b'{"a":"\xf4\x90\x80\x80"}',
        b'{"a":"unterminated}',
        b'{"a":1e400}',
        b'{"a":' + b"1" * 65 + b"}",
        b'{"a":1,"a":2}',
        b'{"\\u0061":1}',
        b"{" + b",".join(b'"k%d":1' % i for i in range(65)) + b"}",
        b'{"a":' + b"[" * 64 + b"]" * 64 + b"}",
        b'{"a":{"b":' + b"[" * 63 + b"]" * 63 + b"}}",
    ],
)
def test_json_payload_decline(raw: bytes) -> None:
    assert _json_struct_bytes(raw) is None


@pytest.mark.parametrize(
    "raw",
    [
        b"{}",
        b' {\t"a" : [ ] , "b" : { } }\n',
        b'{"a":-0,"b":-0.0,"c":0e0,"d":-0e0,"e":1E+2,"f":1.5e-3,"g":' + b"9" * 64 + b"}",
        b'{"a":"\\"\\\\\\/\\b\\f\\n\\r\\t\\u00e9\\u20ac\\ud83d\\ude00\\u0000"}',
        b'{"a":"\xc3\xa9\xe2\x82\xac\xf0\x9f\x98\x80\xef\xbf\xbf\xf4\x8f\xbf\xbf"}',
        b"{" + b",".join(b'"k%d":[true,false,null]' % i for i in range(64)) + b"}",
        b'{"a":' + b"[" * 63 + b"]" * 63 + b"}",
        b'{"s":"' + b"x" * 300 + b'","l":[' + b",".join(b"1" for _ in range(200)) + b"]}",
    ],
)
def test_json_payload_take_plain_documents(raw: bytes) -> None:
    got = _json_struct_bytes(raw)
    assert got is not None
    assert got == _reference_struct(raw)


def test_json_payload_take_bytes_only() -> None:
    with pytest.raises(TypeError, match="expected bytes"):
        _structwire.json_payload(bytearray(b"{}"))  # type: ignore[arg-type]
