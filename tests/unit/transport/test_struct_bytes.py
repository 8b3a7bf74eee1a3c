"""``codec.struct_bytes`` / ``codec.data_request_bytes``: the session's byte-level encode path.

It must parse to exactly what the upb-built packet holds (``to_pb_data_request``), and for
documents whose maps have one key (no map-order freedom) the bytes must equal upb's.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from typing import Any

import pytest
from google.protobuf import struct_pb2
from hypothesis import given, settings
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


KEYS = st.sampled_from(["", "a", "é", "k" * 125, "k" * 126, "k" * 127, "k" * 200, "x" * 20000])
LEAVES = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=300)
    | st.sampled_from(["", "s" * 121, "s" * 122, "s" * 125, "s" * 126, "s" * 127, "ü" * 70])
)
JSON = st.recursive(
    LEAVES,
    lambda inner: (
        st.lists(inner, max_size=6) | st.dictionaries(st.text(max_size=5) | KEYS, inner, max_size=4)
    ),
    max_leaves=40,
)
ONE_KEY = st.recursive(
    LEAVES,
    lambda inner: st.lists(inner, max_size=6) | st.dictionaries(KEYS, inner, max_size=1),
    max_leaves=30,
)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.text(max_size=8) | KEYS, JSON, max_size=6))
def test_struct_bytes_parse_to_the_filled_struct(doc: dict[str, Any]) -> None:
    assert struct_pb2.Struct.FromString(codec.struct_bytes(doc)) == codec.dict_to_struct(doc)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(KEYS, ONE_KEY, max_size=1))
def test_struct_bytes_equal_upb_bytes_without_map_order_freedom(doc: dict[str, Any]) -> None:
    assert codec.struct_bytes(doc) == codec.dict_to_struct(doc).SerializeToString()


def test_struct_bytes_keep_the_reference_errors_and_fallbacks() -> None:
    for bad in ({"a": 10**400}, {"a": object()}, {1: "x"}):
        with pytest.raises(ProtocolViolationError, match="payload decode failed"):
            codec.struct_bytes(bad)  # type: ignore[arg-type]
    # A Mapping the fast writer does not take: the reference filler handles it.
    from types import MappingProxyType

    doc = {"m": MappingProxyType({"a": 1}), "t": (1, "x")}
    assert struct_pb2.Struct.FromString(codec.struct_bytes(doc)) == codec.dict_to_struct(doc)


TS = dt.datetime(2026, 4, 1, 12, 0, 0, 123000, tzinfo=dt.UTC)
DOC = {"id": "c0a8", "n": 3, "f": 1.5, "ok": True, "none": None, "l": [1, "a", {"b": []}], "o": {}}
RAW = json.dumps(DOC).encode()


@pytest.mark.parametrize(
    "msg",
    [
        StreamMessage.json(DOC),
        StreamMessage.json(
            DOC,
            kind="data",
            message_id="m-1",
            metadata={"a": "b", "traceparent": "00-x"},
            inputs={"i": [1, 2]},
            timestamp=TS,
            transports=(
                TransportDescriptor(name="t", kind="k", mode="m"),
                TransportDescriptor(name="u", typed_config=TransportConfig(transport_ref="r")),
            ),
            envelope=StreamEnvelope(stream_id="s", sequence=4, partition="p"),
        ),
        StreamMessage.json({}, envelope=StreamEnvelope()),
        StreamMessage(payload=RAW, binary=BinaryFrame(payload=RAW, mime_type="application/json")),
        StreamMessage(kind="hook", metadata={"x": "y"}),
        StreamMessage.from_bytes(b"\x00\x01", "application/custom", timestamp_ms=5),
        StreamMessage(
            audio=AudioFrame(pcm=b"\x00" * 64, sample_rate_hz=16000, codec="pcm16"),
            payload=RAW,
            inputs=b'{"q": 1}',
        ),
        StreamMessage(video=VideoFrame(payload=b"v", codec="h264", width=2, height=2)),
    ],
)
def test_data_request_bytes_parse_to_the_built_request(msg: StreamMessage) -> None:
    data, head, tail = codec.data_request_bytes(msg)
    assert pb.DataRequest.FromString(data) == codec.to_pb_data_request(msg)
    assert not head.HasField("payload") and not head.HasField("inputs")
    assert (tail is not None) == bool(msg.transports or msg.envelope is not None)


def test_data_request_bytes_field_order_matches_upb() -> None:
    # One-key documents leave no map-order freedom: then the bytes are upb's, byte for byte.
    msg = StreamMessage.json(
        {"a": [1, {"b": "c"}]},
        kind="data",
        inputs={"i": None},
        transports=(TransportDescriptor(name="t"),),
        envelope=StreamEnvelope(stream_id="s", sequence=1),
    )
    data, _, _ = codec.data_request_bytes(msg)
    assert data == codec.to_pb_data_request(msg).SerializeToString()


def test_data_request_bytes_keep_the_encode_errors() -> None:
    with pytest.raises(ProtocolViolationError, match="envelope payload is not valid JSON"):
        codec.data_request_bytes(StreamMessage(payload=b"{nope", kind="data"))
    with pytest.raises(ProtocolViolationError, match="payload decode failed"):
        codec.data_request_bytes(StreamMessage(payload=b"[1]", kind="data"))
    with pytest.raises(ProtocolViolationError, match="missing audio, video, or binary"):
        codec.data_request_bytes(StreamMessage())


# -- the compiled writer (bubu/_transport/_structwire.c, built by hatch_build.py) ---------------


def _python_writer(doc: dict[str, Any]) -> bytes:
    buf = bytearray()
    codec._write_struct(buf, doc)
    return bytes(buf)


@pytest.fixture(scope="module")
def compiled() -> Any:
    if os.environ.get("BUBU_NO_EXTENSIONS"):
        pytest.skip("installed with BUBU_NO_EXTENSIONS=1: the C writer was not built on purpose")
    return codec._compiled_struct_bytes


def test_the_compiled_writer_is_built_and_used(compiled: Any) -> None:
    # An install with a C compiler (CI's) must carry it; a missing build is a failure here.
    assert compiled is not None, "bubu._transport._structwire was not built (see hatch_build.py)"
    doc = {"a": [1, "x", {"b": None}]}
    assert codec.struct_bytes(doc) == compiled(doc) == _python_writer(doc)


@settings(max_examples=500, deadline=None)
@given(st.dictionaries(st.text(max_size=8) | KEYS, JSON, max_size=6))
def test_compiled_and_python_writers_write_the_same_bytes(
    compiled: Any, doc: dict[str, Any]
) -> None:
    assert compiled(doc) == _python_writer(doc)


@pytest.mark.parametrize(
    "doc",
    [
        {},
        {"": ""},
        {"n": -0.0, "i": 2**60, "big": 2**1000, "inf": float("inf"), "nan": float("nan")},
        {"s" * 300: "v" * 20000, "l": ["x" * 16384] * 3},
        {"l": [[[[]]]], "o": {"o": {"o": {}}}},
        {"deep": json.loads("[" * 200 + "]" * 200)},
    ],
)
def test_compiled_writer_edge_documents(compiled: Any, doc: dict[str, Any]) -> None:
    assert compiled(doc) == _python_writer(doc)


class _Dict(dict[str, Any]):
    pass


class _Str(str):
    pass


@pytest.mark.parametrize(
    "doc",
    [
        {"a": 10**400},  # no double holds it
        {"a": object()},
        {1: "x"},
        {"a": (1, 2)},
        {"a": "\ud800"},  # lone surrogate: no UTF-8
        {"\ud800": 1},
        {"a": _Dict(b=1)},  # subclasses go to the Python writer, which decides
        {_Str("k"): 1},
        _Dict(a=1),
    ],
)
def test_compiled_writer_refuses_anything_unusual(compiled: Any, doc: Any) -> None:
    with pytest.raises((TypeError, OverflowError, UnicodeEncodeError)):
        compiled(doc)


def test_compiled_writer_refuses_runaway_nesting_and_struct_bytes_still_answers(
    compiled: Any,
) -> None:
    doc: dict[str, Any] = {}
    inner = doc
    for _ in range(600):
        inner["o"] = {}
        inner = inner["o"]
    with pytest.raises(RecursionError):
        compiled(doc)
    # codec.struct_bytes falls back to the Python writer: same bytes as before the C writer.
    assert codec.struct_bytes(doc) == _python_writer(doc)


def test_without_the_compiled_writer_everything_still_works() -> None:
    # A build without a C compiler: the import fails and codec uses the Python writer.
    code = (
        "import sys; sys.modules['bubu._transport._structwire'] = None\n"
        "from bubu._transport import codec\n"
        "assert codec._compiled_struct_bytes is None\n"
        "doc = {'a': [1, 'x', {'b': None}], 'f': 1.5}\n"
        "from google.protobuf import struct_pb2\n"
        "parsed = struct_pb2.Struct.FromString(codec.struct_bytes(doc))\n"
        "assert parsed == codec.dict_to_struct(doc)\n"
        "print('ok')\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


@pytest.mark.parametrize("doc", [{"k": {1, 2}}, {"k": [b"x"]}, {"k": [[{"d": object()}]]}])
def test_python_writer_names_the_type_it_cannot_store(doc: dict[str, Any]) -> None:
    with pytest.raises(
        TypeError, match=r"^cannot store (set|bytes|object) in a google\.protobuf\.Struct$"
    ):
        _python_writer(doc)
