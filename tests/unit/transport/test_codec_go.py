"""Packet encoders against Go itself: tractatus's envelope, the Go SDK's Struct payloads.

Expected bytes and fields come from ``go_ref`` (tests/_goref.py): ``envelope_marshal`` runs
tractatus ``envelope.ToBinaryFrame`` on the envelope the Go SDK fills from a message,
``envelope_from_frame`` runs ``envelope.FromBinaryFrame``, ``struct_of`` builds the Struct the Go
SDK sends for a JSON object (``structpb.NewStruct``) and ``struct_json`` renders received Struct
bytes as the Go SDK hands them to an engram (``Struct.MarshalJSON``).
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
from bubu._runtime.messages import StreamMessage, TransportConfig, TransportDescriptor
from bubu._transport import codec
from bubu.errors import ProtocolViolationError
from tests._goref import GoError, GoRef, go_settings

pytestmark = pytest.mark.interop

_SETTINGS = go_settings(150)


@pytest.fixture(autouse=True)
def _fresh_key_entries() -> None:
    # The writer caches per-key entry bytes; a test must not lean on entries an earlier test
    # built (under mutation testing they would hide the mutated entry code).
    codec._KEY_ENTRIES.clear()


_text = st.text(
    alphabet=st.sampled_from(list('az09 _-.<>&"\\/\n\t\u00e9\u2028\u2029\U0001f600\x00\x1f\x7f')),
    max_size=6,
)
_json = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_text, children, max_size=3),
    max_leaves=12,
)
_objects = st.dictionaries(_text, _json, max_size=4)


def _numbers_as_go(text: str | bytes) -> Any:
    """Decoded JSON with every number a float64, as Go holds Struct numbers."""
    return json.loads(text, parse_int=float)


# --- Struct payloads ---------------------------------------------------------------------------

STRUCT_DOCS: list[dict[str, Any]] = [
    {},
    {"a": 1},
    {"a": ""},
    {"a": None, "b": True, "c": False},
    {"a": [], "b": {}, "c": [[]], "d": [{}]},
    {"n": 0.1, "m": -5, "big": 2**53, "e": 1e300, "tiny": 5e-324, "x": 1e21},
    {"nested": {"deep": {"deeper": [1, "two", None, True, {"k": [False]}]}}},
    {"long": "x" * 200, "list": ["y" * 130, "z" * 20000]},
    {"k" * 130: {"k" * 300: ["v" * 126, "v" * 127, "v" * 128]}},
    {"k": [{"a": [{"b": -0.0}]}, [[1.5, "s" * 200, {"c": {"d": [None] * 70}}]]]},
    {"one": {"two": {"three": {"four": "x" * 126}}}},
    {"": "", "\u00e9": "\U0001f600", "<&>": "\u2028"},
    {"wide": [{"i": i, "s": str(i)} for i in range(40)]},
]


def _go_struct(go_ref: GoRef, doc: dict[str, Any]) -> bytes:
    return bytes.fromhex(go_ref.call("struct_of", json.dumps(doc)))


def _parsed(data: bytes) -> struct_pb2.Struct:
    return struct_pb2.Struct.FromString(data)


def _one_key_per_map(value: Any) -> bool:
    if isinstance(value, dict):
        return len(value) <= 1 and all(_one_key_per_map(v) for v in value.values())
    if isinstance(value, list):
        return all(_one_key_per_map(v) for v in value)
    return True


def _python_writer(doc: dict[str, Any]) -> bytes:
    buf = bytearray()
    codec._write_struct(buf, doc)
    return bytes(buf)


def _check_struct(go_ref: GoRef, doc: dict[str, Any]) -> None:
    go = _go_struct(go_ref, doc)
    # Protobuf map order is free (upb and Go even sort differently in deterministic mode), so
    # the Structs are compared parsed; a document without two keys in one map has fixed bytes.
    assert _parsed(codec.struct_bytes(doc)) == _parsed(go)
    assert _parsed(_python_writer(doc)) == _parsed(go)
    assert codec.dict_to_struct(doc) == _parsed(go)
    if _one_key_per_map(doc):
        assert codec.struct_bytes(doc) == go == _python_writer(doc)
        assert codec.dict_to_struct(doc).SerializeToString() == go


@pytest.mark.parametrize("doc", STRUCT_DOCS, ids=lambda d: json.dumps(d)[:40])
def test_struct_bytes_are_the_struct_go_sends(go_ref: GoRef, doc: dict[str, Any]) -> None:
    _check_struct(go_ref, doc)


@given(doc=_objects)
@_SETTINGS
def test_struct_bytes_are_the_struct_go_sends_for_any_document(
    go_ref: GoRef, doc: dict[str, Any]
) -> None:
    _check_struct(go_ref, doc)


def _check_struct_json(go_ref: GoRef, doc: dict[str, Any]) -> None:
    data = codec.struct_bytes(doc)
    go = go_ref.call("struct_json", data.hex())
    ours = codec.struct_to_json(struct_pb2.Struct.FromString(data))
    # Same value with every number a float64; protojson spells some numbers its own way
    # (1e+21, -0, shortest digits), so bytes are compared only where it cannot.
    assert _numbers_as_go(ours) == _numbers_as_go(go)
    assert list(json.loads(ours)) == sorted(json.loads(ours))


@pytest.mark.parametrize("doc", STRUCT_DOCS, ids=lambda d: json.dumps(d)[:40])
def test_struct_json_is_the_value_go_hands_the_engram(go_ref: GoRef, doc: dict[str, Any]) -> None:
    _check_struct_json(go_ref, doc)


@given(doc=_objects)
@_SETTINGS
def test_struct_json_is_the_value_go_hands_the_engram_for_any_document(
    go_ref: GoRef, doc: dict[str, Any]
) -> None:
    _check_struct_json(go_ref, doc)


@pytest.mark.parametrize(
    ("doc", "text"),
    [
        ({"a": 1, "b": [2, 3.5], "c": {"d": None}}, '{"a":1,"b":[2,3.5],"c":{"d":null}}'),
        ({"z": "x", "a": True, "m": False}, '{"a":true,"m":false,"z":"x"}'),
        ({"n": -7, "f": 0.25}, '{"f":0.25,"n":-7}'),
    ],
)
def test_struct_json_bytes_equal_go_for_plain_values(
    go_ref: GoRef, doc: dict[str, Any], text: str
) -> None:
    data = codec.struct_bytes(doc)
    assert go_ref.call("struct_json", data.hex()) == text
    assert codec.struct_to_json(struct_pb2.Struct.FromString(data)) == text.encode()


# --- the JSON envelope ------------------------------------------------------------------------


def _spec(msg: StreamMessage) -> dict[str, Any]:
    """The envelope the Go SDK fills from ``msg`` (payload and inputs as their text)."""
    transports = []
    for t in msg.transports:
        item: dict[str, Any] = {"name": t.name, "kind": t.kind, "mode": t.mode}
        cfg = t.typed_config
        if cfg is not None and (cfg.transport_ref.strip() or cfg.mode_reason.strip()):
            item["typedConfig"] = {
                "transportRef": cfg.transport_ref.strip(),
                "modeReason": cfg.mode_reason.strip(),
            }
        transports.append(item)
    ts = 0
    if msg.timestamp is not None:
        ts = int(msg.timestamp.timestamp() * 1000)
    return {
        "kind": msg.kind,
        "messageId": msg.message_id,
        "timestampMs": ts,
        "metadata": dict(msg.metadata) or None,
        "payload": msg.payload.decode(),
        "inputs": msg.inputs.decode(),
        "transports": transports or None,
    }


_T0 = dt.datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=dt.UTC)

ENVELOPE_MESSAGES: list[StreamMessage] = [
    StreamMessage(payload=b'{"a":1}'),
    StreamMessage(payload=b' { "z" : 1 , "a" : [ 1 , 2 ] } ', kind="custom"),
    StreamMessage(kind="heartbeat"),
    StreamMessage(kind="data", message_id="m-1", timestamp=_T0),
    StreamMessage(
        payload=b'{"html":"<a href=\\"x\\">&amp;</a>","ls":"\xe2\x80\xa8\xe2\x80\xa9"}',
        inputs=b'{"q":"a<b"}',
        metadata={"b": "<", "a": "&", "\u00e9": "\u2028"},
        message_id="<id>",
        kind="k&k",
        timestamp=_T0,
    ),
    StreamMessage(inputs=b'{"only":"inputs"}', metadata={"trace": "t"}),
    StreamMessage(
        payload=b"[1,2]",
        transports=(
            TransportDescriptor(name="hot", kind="grpc", mode="hot"),
            TransportDescriptor(
                name="cold", typed_config=TransportConfig(transport_ref=" ref ", mode_reason="")
            ),
            TransportDescriptor(name="n", typed_config=TransportConfig(mode_reason="  ")),
        ),
    ),
    StreamMessage(payload=b'"text"', metadata={"k": "v\n\t\x01\x7f"}),
    StreamMessage(payload=b"null"),
    StreamMessage(payload=b'{"e":1E+2,"f":-0,"u":"\\u00e9\\/"}'),
    StreamMessage(kind="x", timestamp=dt.datetime(1970, 1, 1, 0, 0, 0, 1000)),
]


@pytest.mark.parametrize("msg", ENVELOPE_MESSAGES, ids=lambda m: repr(m)[:60])
def test_envelope_json_is_go_bytes(go_ref: GoRef, msg: StreamMessage) -> None:
    go = go_ref.call("envelope_marshal", json.dumps(_spec(msg)))
    got = codec.encode_envelope(msg)
    assert got is not None
    doc, ts = got
    assert doc == go["json"].encode()
    assert str(ts) == go["timestampMs"]


@pytest.mark.parametrize(
    ("payload", "field"), [(b"{", "payload"), (b"{'a':1}", "payload"), (b"nul", "payload")]
)
def test_invalid_payload_json_is_refused_as_go_refuses(
    go_ref: GoRef, payload: bytes, field: str
) -> None:
    spec = _spec(StreamMessage(kind="data"))
    spec[field] = payload.decode()
    with pytest.raises(GoError, match="not valid JSON"):
        go_ref.call("envelope_marshal", json.dumps(spec))
    with pytest.raises(ProtocolViolationError, match=f"envelope {field} is not valid JSON"):
        codec.encode_envelope(StreamMessage(kind="data", payload=payload))


def _go_frame(go_ref: GoRef, doc: bytes, frame_ts: int) -> dict[str, Any] | str:
    try:
        got = go_ref.call("envelope_from_frame", doc.decode(), str(frame_ts))
    except GoError:
        return "error"
    assert isinstance(got, dict)
    transports = tuple(
        TransportDescriptor(
            name=t["name"],
            kind=t.get("kind", ""),
            mode=t.get("mode", ""),
            typed_config=codec._typed_config(
                t.get("typedConfig", {}).get("transportRef", ""),
                t.get("typedConfig", {}).get("modeReason", ""),
            ),
        )
        for t in got["transports"] or ()
    )
    return {
        "kind": got["kind"],
        "message_id": got["messageId"],
        "timestamp_ms": int(got["timestampMs"]),
        "metadata": got["metadata"] or {},
        "payload": got["payload"].encode(),
        "inputs": got["inputs"].encode(),
        "transports": transports,
    }


def _ours(doc: bytes, frame_ts: int) -> dict[str, Any] | str:
    try:
        env = codec.decode_envelope(doc, frame_ts)
    except ProtocolViolationError as exc:
        assert str(exc).startswith("envelope decode failed: ")
        return "error"
    return {f: getattr(env, f) for f in env.__struct_fields__}


FRAMES: list[tuple[bytes, int]] = [
    (b'{"version":"v1","kind":"data","payload":{"a":1}}', 0),
    (b'{"kind":"custom","messageId":"m","timestampMs":12,"metadata":{"a":"b"}}', 99),
    (b'{"kind":"k","payload":{"a":1}}', 7),
    (b'{"kind":"k","timestampMs":0}', 9223372036854775807),
    (b'{"kind":"k"}', 9223372036854775808),
    (b'{"kind":"k","timestampMs":5}', 9223372036854775808),
    (b'{"kind":"k","timestampMs":-1}', 0),
    (b'{"kind":"k","timestampMs":-1,"payload":{"a":1}}', 5),
    (b'{"kind":" spaced ","messageId":" id "}', 0),
    (b'{"kind":"k","payload": { "b" : [ 1 , 2 ] },"inputs":[1]}', 0),
    (b'{"kind":"k","inputs":{"x":"\\u003c"}}', 0),
    (
        b'{"kind":"k","transports":[{"name":"a","kind":"grpc","mode":"hot","typedConfig":'
        b'{"transportRef":" r ","modeReason":""}},{"name":"b","typedConfig":{}}]}',
        0,
    ),
    (b'{"kind":"k","config":{"legacy":true},"unknown":1}', 0),
    (b'{"kind":"k","metadata":null,"transports":null}', 0),
    (b'{"payload":{"a":1}}', 0),
    (b'{"inputs":{"a":1}}', 0),
    (b'{"transports":[{"name":"t"}]}', 0),
    (b'{"kind":"k","payload":null,"inputs":null}', 0),
    (b"{}", 3),
    (b"{", 0),
    (b"[]", 0),
    (b'{"kind":1}', 0),
    (b'{"timestampMs":"5"}', 0),
    (b'{"metadata":{"a":1}}', 0),
]


@pytest.mark.parametrize(("doc", "frame_ts"), FRAMES, ids=lambda v: repr(v)[:50])
def test_envelope_decode_is_go_decode(go_ref: GoRef, doc: bytes, frame_ts: int) -> None:
    assert _ours(doc, frame_ts) == _go_frame(go_ref, doc, frame_ts)


def test_envelope_over_the_size_limit_is_refused_as_go_refuses(go_ref: GoRef) -> None:
    doc = b'{"kind":"k","payload":"' + b"x" * codec.MAX_ENVELOPE_BYTES + b'"}'
    assert _go_frame(go_ref, doc, 0) == "error" == _ours(doc, 0)
    fits = b'{"kind":"k","payload":"' + b"x" * (codec.MAX_ENVELOPE_BYTES - 25) + b'"}'
    assert len(fits) == codec.MAX_ENVELOPE_BYTES
    assert _ours(fits, 0) == _go_frame(go_ref, fits, 0)


def test_negative_envelope_timestamp_is_received_without_a_timestamp(go_ref: GoRef) -> None:
    doc = b'{"kind":"k","timestampMs":-3,"payload":{"a":1}}'
    assert _go_frame(go_ref, doc, 5) != "error"
    resp = pb.DataResponse(binary=pb.BinaryFrame(payload=doc, mime_type=codec.ENVELOPE_MIME_TYPE))
    msg = codec.from_pb_packet(resp)
    assert msg.timestamp is None
    assert msg.binary is not None and msg.binary.timestamp_ms == 0
    assert msg.payload == b'{"a":1}'
