"""StreamMessage <-> ``transport.v1`` protobuf: the one place ``bubu._gen`` meets the public types.

Replicates the Go SDK v0.1.5 exactly where the wire can tell the difference:

- outbound encoding decision tree (``streamMessageToPublishRequest``,
  docs/contract/stream.md#encoding) including the JSON-mirror rule
  (docs/contract/stream.md#json-mirror) and the raw-binary bypass;
- inbound decode precedence and metadata hoisting (``publishRequestToStreamMessage``, 4.6);
- the JSON packet envelope (``application/vnd.bubu.packet+json``, tractatus ``envelope``, 1.6);
- control-action type strings (docs/contract/stream.md#enums), heartbeats
  (docs/contract/stream.md#heartbeats) and delivery receipts (docs/contract/stream.md#control,
  docs/contract/stream.md#acks).

Struct conversion uses hand-written fillers rather than ``json_format``/``Struct.update``:
docs/performance.md#ceiling measured them 1.7-4x faster, and ``MessageToDict`` turns every integer
into a float. Struct -> JSON renders integral doubles as integers, like Go's ``encoding/json``.

The packet functions work on any of ``DataRequest``, ``DataResponse`` and ``PublishRequest`` (same
field names and numbers) and, for decoding, ``DataPacket`` (same names, other numbers).
"""

from __future__ import annotations

import datetime as _dt
import re
import struct as _struct
from collections.abc import Callable, Mapping
from typing import Any, Final, TypeVar, cast

import msgspec
from google.protobuf import struct_pb2

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import (
    ENVELOPE_MIME_TYPE,
    JSON_MIME_TYPE,
    KIND_DATA,
    KIND_ERROR,
    OCTET_STREAM_MIME_TYPE,
    AudioFrame,
    BinaryFrame,
    StreamEnvelope,
    StreamMessage,
    TransportConfig,
    TransportDescriptor,
    VideoFrame,
    is_envelope_mime,
)
from bubu.errors import ProtocolViolationError

__all__ = [
    "CONTROL_TYPE_ACK",
    "CONTROL_TYPE_DOWNSTREAM_DELIVERED",
    "HEARTBEAT_METADATA_KEY",
    "MAX_ENVELOPE_BYTES",
    "META_KIND",
    "META_MESSAGE_ID",
    "META_TIMESTAMP_MS",
    "ONE_BYTE_VARINTS",
    "control_request",
    "control_response",
    "control_type",
    "control_type_to_pb",
    "data_request_bytes",
    "decode_envelope",
    "delivery_receipt",
    "dict_to_struct",
    "encode_envelope",
    "envelope_request_bytes",
    "from_pb_data_response",
    "from_pb_packet",
    "heartbeat_data_request",
    "is_heartbeat_metadata",
    "packet_size",
    "struct_bytes",
    "struct_to_dict",
    "struct_to_json",
    "to_pb_data_request",
    "to_pb_data_response",
    "varint",
]

# Reserved packet-metadata keys (docs/contract/stream.md#non-protobuf-contracts).
META_KIND: Final = "bubu.envelope.kind"
META_MESSAGE_ID: Final = "bubu.envelope.message_id"
META_TIMESTAMP_MS: Final = "bubu.envelope.timestamp_ms"
HEARTBEAT_METADATA_KEY: Final = "bubu-heartbeat"

CONTROL_TYPE_ACK: Final = "ack"
CONTROL_TYPE_DOWNSTREAM_DELIVERED: Final = "downstream.delivered"

MAX_ENVELOPE_BYTES: Final = 10 * 1024 * 1024
"""tractatus ``envelope.Unmarshal`` refuses larger envelope documents."""

_INT64_MAX: Final = (1 << 63) - 1
_EPOCH: Final = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC)
_ONE_MS: Final = _dt.timedelta(milliseconds=1)
# Go encoding/json prints integral float64 values below 1e21 without an exponent.
_GO_INT_LIMIT: Final = 1e21

_P = TypeVar("_P", pb.DataRequest, pb.DataResponse, pb.PublishRequest)

# -- control action names (docs/contract/stream.md#enums) ---------------------------------------

_ACTION_NAMES: Final[dict[int, str]] = {
    pb.CONTROL_ACTION_NOOP: "noop",
    pb.CONTROL_ACTION_START: "start",
    pb.CONTROL_ACTION_STOP: "stop",
    pb.CONTROL_ACTION_START_UPSTREAM: "start-upstream",
    pb.CONTROL_ACTION_STOP_UPSTREAM: "stop-upstream",
    pb.CONTROL_ACTION_START_DOWNSTREAM: "start-downstream",
    pb.CONTROL_ACTION_STOP_DOWNSTREAM: "stop-downstream",
    pb.CONTROL_ACTION_HEARTBEAT: "heartbeat",
    pb.CONTROL_ACTION_CONNECTOR_READY: "connector.ready",
    pb.CONTROL_ACTION_CONNECTOR_CAPABILITIES: "connector.capabilities",
    pb.CONTROL_ACTION_HANDOFF_DRAINING: "handoff.draining",
    pb.CONTROL_ACTION_HANDOFF_CUTOVER: "handoff.cutover",
    pb.CONTROL_ACTION_HANDOFF_READY: "handoff.ready",
    pb.CONTROL_ACTION_ACK: "ack",
    pb.CONTROL_ACTION_ERROR: "error",
    pb.CONTROL_ACTION_CODEC_SELECT: "codec-select",
}
_ACTION_BY_NAME: Final[dict[str, int]] = {v: k for k, v in _ACTION_NAMES.items()}


def control_type(action: int, custom_action: str = "") -> str:
    """The type string of a control message: a non-blank ``custom_action`` wins, else the enum.

    Unknown enum numbers map to ``""`` (Go decoding rule, docs/contract/stream.md#enums).
    """
    custom = custom_action.strip()
    if custom:
        return custom
    return _ACTION_NAMES.get(action, "")


def control_type_to_pb(type_: str) -> tuple[int, str]:
    """Map a type string to ``(action, custom_action)`` (Go ``controlTypeToProto``).

    The type is trimmed and lower-cased; ``""`` and ``noop`` give NOOP; a known name gives its
    enum; anything else gives ``UNSPECIFIED`` plus ``custom_action`` = the trimmed original.
    """
    trimmed = type_.strip()
    lowered = trimmed.lower()
    if not lowered:
        return pb.CONTROL_ACTION_NOOP, ""
    action = _ACTION_BY_NAME.get(lowered)
    if action is not None:
        return action, ""
    return pb.CONTROL_ACTION_UNSPECIFIED, trimmed


def control_request(type_: str, metadata: Mapping[str, str] | None = None) -> pb.ControlRequest:
    """Build a ``ControlRequest`` (engram -> connector) for a type string."""
    action, custom = control_type_to_pb(type_)
    return pb.ControlRequest(
        action=cast(Any, action), custom_action=custom, metadata=metadata or {}
    )


def control_response(type_: str, metadata: Mapping[str, str] | None = None) -> pb.ControlResponse:
    """Build a ``ControlResponse`` (connector -> engram) for a type string."""
    action, custom = control_type_to_pb(type_)
    return pb.ControlResponse(
        action=cast(Any, action), custom_action=custom, metadata=metadata or {}
    )


def delivery_receipt(
    stream_id: str, sequence: int, partition: str, size_bytes: int
) -> pb.ControlRequest:
    """The ``downstream.delivered`` receipt for a sequenced packet.

    See docs/contract/stream.md#control, docs/contract/stream.md#acks.

    Sent with ``action=UNSPECIFIED`` and the custom action, exactly as Go does.
    """
    return pb.ControlRequest(
        action=pb.CONTROL_ACTION_UNSPECIFIED,
        custom_action=CONTROL_TYPE_DOWNSTREAM_DELIVERED,
        metadata={
            "stream_id": stream_id,
            "sequence": str(sequence),
            "partition": partition,
            "size_bytes": str(size_bytes),
        },
    )


def heartbeat_data_request() -> pb.DataRequest:
    """The Data-stream heartbeat: metadata ``bubu-heartbeat: true``, nothing else.

    See docs/contract/stream.md#heartbeats.
    """
    return pb.DataRequest(metadata={HEARTBEAT_METADATA_KEY: "true"})


def is_heartbeat_metadata(metadata: Mapping[str, str]) -> bool:
    """Whether packet metadata marks a heartbeat (``bubu-heartbeat`` = ``true``, any case)."""
    value = metadata.get(HEARTBEAT_METADATA_KEY)
    return value is not None and value.strip().lower() == "true"


def packet_size(packet: pb.DataRequest | pb.DataResponse | pb.PublishRequest) -> int:
    """Encoded size of a packet in its DataRequest form: the receipt's ``size_bytes``.

    See docs/contract/stream.md#acks.

    DataRequest and DataResponse share one layout, and upb encodes empty map values the way Go
    does, so ``ByteSize()`` equals Go's ``proto.Size`` of the reassembled packet. Pass the packet
    with chunk fields already cleared (the reassembler does that).
    """
    return int(packet.ByteSize())


# -- Struct <-> Python ------------------------------------------------------------------------


def _fill_value(value: struct_pb2.Value, item: Any) -> None:
    # Type dispatch in frequency order; bool before int because bool is an int subclass.
    t = type(item)
    if t is str:
        value.string_value = item
    elif t is dict:
        st = value.struct_value
        if not item:
            st.SetInParent()  # an empty object must still be set (kind=struct_value)
        fields = st.fields
        for k, v in item.items():
            _fill_value(fields[k], v)
    elif t is bool:
        value.bool_value = item
    elif t is int or t is float:
        value.number_value = item
    elif item is None:
        value.null_value = struct_pb2.NULL_VALUE
    elif t is list or t is tuple:
        lv = value.list_value
        if not item:
            lv.SetInParent()  # as for an empty object: kind=list_value must be set
        values = lv.values
        for v in item:
            _fill_value(values.add(), v)
    elif isinstance(item, Mapping):
        _fill_value(value, dict(item))
    elif isinstance(item, bool):
        value.bool_value = bool(item)
    elif isinstance(item, int | float):
        value.number_value = float(item)
    elif isinstance(item, str):
        value.string_value = str(item)
    else:
        raise TypeError(f"cannot store {t.__name__} in a google.protobuf.Struct")


def dict_to_struct(
    data: Mapping[str, Any], target: struct_pb2.Struct | None = None
) -> struct_pb2.Struct:
    """Fill ``target`` (or a new Struct) from a JSON object; numbers become doubles (as in Go).

    Raises:
        ProtocolViolationError: a value cannot be represented (non-string key, out-of-range
            number, unsupported type).
    """
    st = struct_pb2.Struct() if target is None else target
    try:
        fields = st.fields
        for k, v in data.items():
            if type(k) is not str:
                raise TypeError(f"object keys must be strings, got {type(k).__name__}")
            _fill_value(fields[k], v)
    except (TypeError, ValueError, OverflowError) as exc:
        raise ProtocolViolationError(f"payload decode failed: {exc}") from None
    return st


def _value_to_py(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "string_value":
        return value.string_value
    if kind == "number_value":
        x = value.number_value
        if x.is_integer() and -_GO_INT_LIMIT < x < _GO_INT_LIMIT:
            return int(x)
        return x
    if kind == "struct_value":
        return {k: _value_to_py(v) for k, v in value.struct_value.fields.items()}
    if kind == "bool_value":
        return value.bool_value
    if kind == "list_value":
        return [_value_to_py(v) for v in value.list_value.values]
    return None  # null_value, or an unset Value (Go renders both as null)


def struct_to_dict(st: struct_pb2.Struct) -> dict[str, Any]:
    """Struct -> plain dict; integral doubles below 1e21 come back as ``int`` (Go rendering)."""
    return {k: _value_to_py(v) for k, v in st.fields.items()}


_sorted_encoder = msgspec.json.Encoder(order="sorted")
_decoder = msgspec.json.Decoder()


def struct_to_json(st: struct_pb2.Struct) -> bytes:
    """Compact JSON of a Struct with sorted keys, e.g. ``{"baz":1}`` (Go ``AsMap`` + Marshal)."""
    return _sorted_encoder.encode(struct_to_dict(st))


# -- dict -> serialized google.protobuf.Struct (the outbound hot path) ---------------------------
#
# Building the Struct through the upb API costs ~0.6 us per JSON value (a wrapper object per map
# entry and per setattr); the session only needs the *bytes* of the packet, so the payload Struct
# is written straight into wire format here (~25% less CPU for a 1 KB document, and upb does not
# serialize it again). Per object key, the entry prefixes are encoded once and cached: streams
# repeat a handful of key names. The output parses to exactly the Struct `dict_to_struct` builds
# (map entries in the document's order, where upb uses its hash order: protobuf map order is
# unspecified and Go randomises it; tests/unit/transport/test_codec.py checks byte equality on
# single-key documents and parse equality otherwise). Anything unusual (a non-str key, a number
# out of range, a lone surrogate, a type msgspec does not decode to) raises, and the caller falls
# back to `dict_to_struct`, which gives the canonical error or the same result.

_pack_double = _struct.Struct("<d").pack


def varint(value: int) -> bytes:
    """Encode a protobuf varint (one-byte values come from a table)."""
    if value < 0x80:
        return ONE_BYTE_VARINTS[value]
    if value < 0x4000:
        return bytes(((value & 0x7F) | 0x80, value >> 7))
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


ONE_BYTE_VARINTS: Final = tuple(bytes((n,)) for n in range(0x80))
# Header table for short strings as ListValue items (values tag + length, Value {string_value:
# n bytes} = tag 3, n), so an item costs one `+=` per piece; object entries cache theirs per key
# and length (_KeyEntry.heads).
_ITEM_STRING_HEAD: Final = tuple(bytes((0x0A, n + 2, 0x1A, n)) for n in range(0x7E))


class _KeyEntry:
    """Pre-encoded pieces of one Struct map entry ``{1: key, 2: Value}`` for a key name."""

    __slots__ = ("false", "heads", "list_open", "null", "number", "prefix", "struct_open", "true")

    def __init__(self, key: str) -> None:
        raw = key.encode()
        # entry field 1 (key) + the tag of entry field 2 (value); the Value length follows.
        prefix = b"\x0a" + varint(len(raw)) + raw + b"\x12"
        n = len(prefix)
        self.prefix = prefix
        # Complete entries (map field tag + entry length + entry) for fixed-size Values:
        # number_value (2, double), bool_value (4, varint), null_value (1, enum 0).
        self.number = b"\x0a" + varint(n + 10) + prefix + b"\x09\x11"
        self.true = b"\x0a" + varint(n + 3) + prefix + b"\x02\x20\x01"
        self.false = b"\x0a" + varint(n + 3) + prefix + b"\x02\x20\x00"
        self.null = b"\x0a" + varint(n + 3) + prefix + b"\x02\x08\x00"
        # Openings of an entry holding an object/list: map tag + entry length placeholder, the
        # prefix, Value length placeholder, struct_value (5) / list_value (6) tag + placeholder.
        self.struct_open = b"\x0a\x00" + prefix + b"\x00\x2a\x00"
        self.list_open = b"\x0a\x00" + prefix + b"\x00\x32\x00"
        # Everything before the UTF-8 bytes of a string Value, by byte length (filled lazily).
        self.heads: dict[int, bytes] = {}

    def string_head(self, n: int) -> bytes:
        """The entry bytes that precede an ``n``-byte string value (cached per length)."""
        prefix = self.prefix
        length = varint(n)
        value_len = varint(n + 1 + len(length))
        head = (
            b"\x0a"
            + varint(len(prefix) + len(value_len) + 1 + len(length) + n)
            + prefix
            + value_len
            + b"\x1a"
            + length
        )
        heads = self.heads
        if len(heads) < _HEADS_MAX:
            heads[n] = head
        return head


_HEADS_MAX: Final = 256
_KEY_ENTRIES: dict[str, _KeyEntry] = {}
_KEY_ENTRIES_MAX: Final = 4096


def _key_entry(key: str) -> _KeyEntry:
    if type(key) is not str:
        raise TypeError(f"object keys must be strings, got {type(key).__name__}")
    entry = _KeyEntry(key)
    if len(_KEY_ENTRIES) >= _KEY_ENTRIES_MAX:
        _KEY_ENTRIES.clear()  # keys come from user data: stay bounded
    _KEY_ENTRIES[key] = entry
    return entry


# Lengths of nested messages are not known up front: a one-byte placeholder is written and
# patched once the content is written (widened in place in the rare case it needs more bytes).
# The patch code is inlined below: these loops run once per JSON value.


def _write_struct(
    buf: bytearray,
    data: dict[str, Any],
    *,
    entry_for: Callable[[str], _KeyEntry | None] = _KEY_ENTRIES.get,
    pack: Callable[[float], bytes] = _pack_double,
    varint: Callable[[int], bytes] = varint,
) -> None:
    # Struct.fields (1): one length-delimited map entry per key.
    for key, item in data.items():
        entry = entry_for(key)
        if entry is None:
            entry = _key_entry(key)
        t = type(item)
        if t is str:
            raw = item.encode()
            head = entry.heads.get(len(raw))
            buf += entry.string_head(len(raw)) if head is None else head
            buf += raw
        elif t is float or t is int:
            buf += entry.number
            buf += pack(item)
        elif t is bool:
            buf += entry.true if item else entry.false
        elif item is None:
            buf += entry.null
        elif t is dict or t is list:
            at = len(buf) + 1
            # Entry length placeholder at `at`; Value and struct_value/list_value ones end it.
            if t is dict:
                buf += entry.struct_open
                inner = len(buf) - 1
                _write_struct(buf, item)
            else:
                buf += entry.list_open
                inner = len(buf) - 1
                _write_list(buf, item)
            n = len(buf) - inner - 1
            if n < 0x7E:  # both lengths fit one byte
                buf[inner] = n
                buf[inner - 2] = n + 2
            else:
                buf[inner : inner + 1] = varint(n)
                n = len(buf) - inner + 1
                buf[inner - 2 : inner - 1] = varint(n)
            n = len(buf) - at - 1
            if n < 0x80:
                buf[at] = n
            else:
                buf[at : at + 1] = varint(n)
        else:
            raise TypeError(f"cannot store {t.__name__} in a google.protobuf.Struct")


def _write_list(
    buf: bytearray,
    items: list[Any],
    *,
    pack: Callable[[float], bytes] = _pack_double,
    varint: Callable[[int], bytes] = varint,
    item_head: tuple[bytes, ...] = _ITEM_STRING_HEAD,
) -> None:
    # ListValue.values (1): one length-delimited Value per item.
    for item in items:
        t = type(item)
        if t is str:
            raw = item.encode()
            n = len(raw)
            if n < 0x7E:
                buf += item_head[n]
            else:
                length = varint(n)
                buf.append(0x0A)
                buf += varint(n + 1 + len(length))
                buf.append(0x1A)
                buf += length
            buf += raw
        elif t is float or t is int:
            buf += b"\x0a\x09\x11"
            buf += pack(item)
        elif t is bool:
            buf += b"\x0a\x02\x20\x01" if item else b"\x0a\x02\x20\x00"
        elif item is None:
            buf += b"\x0a\x02\x08\x00"
        elif t is dict or t is list:
            # Value placeholder, then struct_value (5) or list_value (6) placeholder.
            if t is dict:
                buf += b"\x0a\x00\x2a\x00"
                inner = len(buf) - 1
                _write_struct(buf, item)
            else:
                buf += b"\x0a\x00\x32\x00"
                inner = len(buf) - 1
                _write_list(buf, item)
            n = len(buf) - inner - 1
            if n < 0x7E:  # both lengths fit one byte
                buf[inner] = n
                buf[inner - 2] = n + 2
            else:
                buf[inner : inner + 1] = varint(n)
                n = len(buf) - inner + 1
                buf[inner - 2 : inner - 1] = varint(n)
        else:
            raise TypeError(f"cannot store {t.__name__} in a google.protobuf.Struct")


def struct_bytes(data: dict[str, Any]) -> bytes:
    """The serialized ``google.protobuf.Struct`` of a decoded JSON object (no Struct built).

    Parses to the same Struct as :func:`dict_to_struct`; numbers become doubles.

    Raises:
        ProtocolViolationError: as :func:`dict_to_struct`.
    """
    if _compiled_struct_bytes is not None:
        try:
            return _compiled_struct_bytes(data)
        except Exception:  # anything unusual: the Python writer decides (see above)
            pass
    buf = bytearray()
    try:
        _write_struct(buf, data)
    except Exception:
        return bytes(dict_to_struct(data).SerializeToString())
    return bytes(buf)


# The same writer in C (bubu/_transport/_structwire.c, built by hatch_build.py): ~10x faster,
# the same bytes. Optional: a build without a compiler uses the Python writer above.
_compiled_struct_bytes: Callable[[dict[str, Any]], bytes] | None
# Its go_compact is _compact_json + go_escape_json in one pass, for JSON already known valid;
# json_payload is (struct_bytes(msgspec decode), go_compact) straight from the text of plain
# documents.
_compiled_go_compact: Callable[[bytes], bytes] | None
_compiled_json_payload: Callable[[bytes], tuple[bytes, bytes] | None] | None
try:
    from bubu._transport import _structwire
except ImportError:  # pragma: no cover - depends on the build
    _compiled_struct_bytes = _compiled_go_compact = _compiled_json_payload = None
else:
    _compiled_struct_bytes = _structwire.struct_bytes
    _compiled_go_compact = _structwire.go_compact
    _compiled_json_payload = _structwire.json_payload


# -- the JSON packet envelope (docs/contract/stream.md#non-protobuf-contracts) ------------------


class _EnvTypedConfig(msgspec.Struct, rename="camel", omit_defaults=True):
    transport_ref: str = ""
    mode_reason: str = ""


class _EnvTransport(msgspec.Struct, rename="camel", omit_defaults=True):
    name: str = ""
    kind: str = ""
    mode: str = ""
    typed_config: _EnvTypedConfig | None = None


class _EnvelopeDoc(msgspec.Struct, rename="camel"):
    # Decoders ignore unknown keys (the v0.3.0 connector still writes a legacy `config`).
    version: str = ""
    kind: str = ""
    message_id: str = ""
    timestamp_ms: int = 0
    metadata: dict[str, str] | None = None
    payload: msgspec.Raw = msgspec.Raw()
    inputs: msgspec.Raw = msgspec.Raw()
    transports: list[_EnvTransport] | None = None


_envelope_decoder = msgspec.json.Decoder(_EnvelopeDoc)
_plain_encoder = msgspec.json.Encoder()


def _raw_bytes(raw: msgspec.Raw) -> bytes:
    # `"payload": null` stays the 4 bytes `null`, as in a Go json.RawMessage.
    return bytes(raw)


def _ms(ts: _dt.datetime) -> int:
    if ts.tzinfo is None:
        ts = ts.replace(tzinfo=_dt.UTC)  # naive datetimes are taken as UTC
    return (ts - _EPOCH) // _ONE_MS


def _from_ms(ms: int) -> _dt.datetime:
    return _EPOCH + _dt.timedelta(milliseconds=ms)


def _compact_json(raw: bytes, what: str) -> bytes:
    try:
        return msgspec.json.format(raw, indent=-1)
    except msgspec.DecodeError:
        raise ProtocolViolationError(f"envelope {what} is not valid JSON") from None


def _transport_to_env(t: TransportDescriptor) -> _EnvTransport:
    cfg = t.typed_config
    typed = None if cfg is None else _typed_config(cfg.transport_ref, cfg.mode_reason)
    return _EnvTransport(
        name=t.name,
        kind=t.kind,
        mode=t.mode,
        typed_config=None
        if typed is None
        else _EnvTypedConfig(transport_ref=typed.transport_ref, mode_reason=typed.mode_reason),
    )


# Go's encoding/json writes <, >, & and U+2028/U+2029 as \u escapes inside strings, also when it
# re-compacts a RawMessage (the payload and inputs). In compact JSON these bytes occur only inside
# strings, so replacing them over the whole document gives Go's bytes.
_GO_ESCAPED: Final = re.compile(b"[<>&]|\xe2\x80[\xa8\xa9]")
_GO_ESCAPES: Final = {
    b"<": b"\\u003c",
    b">": b"\\u003e",
    b"&": b"\\u0026",
    "\u2028".encode(): b"\\u2028",
    "\u2029".encode(): b"\\u2029",
}


def _go_escape(match: re.Match[bytes]) -> bytes:
    return _GO_ESCAPES[match.group()]


def go_escape_json(doc: bytes) -> bytes:
    """``doc`` (compact JSON) with Go's string escapes for <, >, & and U+2028/U+2029.

    Most documents hold none of them: four substring scans (memchr speed) cost a tenth of the
    regex scan, which on a 1 KiB document was a tenth of a streamed message's CPU.
    """
    if b"<" in doc or b">" in doc or b"&" in doc or b"\xe2\x80" in doc:
        return _GO_ESCAPED.sub(_go_escape, doc)
    return doc


def encode_envelope(msg: StreamMessage) -> tuple[bytes, int] | None:
    """Build the envelope JSON of ``msg`` (tractatus ``envelope.Marshal``).

    Returns ``(json_bytes, timestamp_ms)``, or ``None`` when the envelope would carry none of
    kind, payload, inputs or transports (Go then falls back to a raw frame). Metadata is the
    user's map only; the ``bubu.envelope.*`` keys live in the packet metadata.

    Raises:
        ProtocolViolationError: payload or inputs are not valid JSON.
    """
    kind = msg.kind
    if not (kind or msg.payload or msg.inputs or msg.transports):
        return None
    if not kind:
        kind = KIND_DATA  # default when payload, inputs or transports are present
    ts = _ms(msg.timestamp) if msg.timestamp is not None else 0
    # Field order follows the Go struct (version, kind, messageId, timestampMs, metadata,
    # payload, inputs, transports); all omitempty except version.
    parts = [b'{"version":"v1","kind":', _plain_encoder.encode(kind)]
    if msg.message_id:
        parts += (b',"messageId":', _plain_encoder.encode(msg.message_id))
    if ts:
        parts += (b',"timestampMs":', str(ts).encode())
    if msg.metadata:
        parts += (b',"metadata":', _sorted_encoder.encode(msg.metadata))
    if msg.payload:
        parts += (b',"payload":', _compact_json(msg.payload, "payload"))
    if msg.inputs:
        parts += (b',"inputs":', _compact_json(msg.inputs, "inputs"))
    if msg.transports:
        envs = [_transport_to_env(t) for t in msg.transports]
        parts += (b',"transports":', _plain_encoder.encode(envs))
    parts.append(b"}")
    return go_escape_json(b"".join(parts)), ts


class DecodedEnvelope(msgspec.Struct, frozen=True, gc=False):
    """The fields of a decoded packet envelope."""

    kind: str
    message_id: str
    timestamp_ms: int
    metadata: dict[str, str]
    payload: bytes
    inputs: bytes
    transports: tuple[TransportDescriptor, ...]


def decode_envelope(data: bytes, frame_timestamp_ms: int = 0) -> DecodedEnvelope:
    """Decode envelope JSON (tractatus ``FromBinaryFrame``).

    A missing ``timestampMs`` is filled from the frame timestamp. A missing ``kind`` stays empty
    (Go's receiver does not default it; only ``encode_envelope`` writes ``data``).

    Raises:
        ProtocolViolationError: "envelope decode failed: ..." for invalid JSON, a document over
            10 MiB, or a frame timestamp above int64 max.
    """
    if len(data) > MAX_ENVELOPE_BYTES:
        raise ProtocolViolationError("envelope decode failed: envelope exceeds 10 MiB")
    try:
        try:
            doc = _envelope_decoder.decode(data)
        except UnicodeDecodeError:
            # Go's encoding/json reads each invalid UTF-8 sequence in a string as U+FFFD
            # instead of refusing the document; outside strings the bytes stay a syntax error.
            doc = _envelope_decoder.decode(data.decode("utf-8", "replace").encode())
    except msgspec.DecodeError as exc:
        raise ProtocolViolationError(f"envelope decode failed: {exc}") from None
    ts = doc.timestamp_ms
    # A negative timestampMs decodes (tractatus checks the sign only on Marshal); the message
    # then has no timestamp, as in Go.
    if ts == 0 and frame_timestamp_ms:
        if frame_timestamp_ms > _INT64_MAX:
            raise ProtocolViolationError("envelope decode failed: frame timestamp overflows int64")
        ts = frame_timestamp_ms
    payload = _raw_bytes(doc.payload)
    inputs = _raw_bytes(doc.inputs)
    transports: tuple[TransportDescriptor, ...] = ()
    if doc.transports:
        transports = tuple(
            TransportDescriptor(
                name=t.name,
                kind=t.kind,
                mode=t.mode,
                typed_config=None
                if t.typed_config is None
                else _typed_config(t.typed_config.transport_ref, t.typed_config.mode_reason),
            )
            for t in doc.transports
        )
    return DecodedEnvelope(
        kind=doc.kind,
        message_id=doc.message_id,
        timestamp_ms=ts,
        metadata=doc.metadata or {},
        payload=payload,
        inputs=inputs,
        transports=transports,
    )


# -- outbound: StreamMessage -> DataRequest (docs/contract/stream.md#encoding) ------------------


def _json_object(raw: bytes, field: str) -> dict[str, Any]:
    try:
        obj = _decoder.decode(raw)
    except msgspec.DecodeError as exc:
        raise ProtocolViolationError(f"{field} decode failed: {exc}") from None
    except UnicodeDecodeError:
        raise ProtocolViolationError(
            f"{field} decode failed: a string is not valid UTF-8"
        ) from None
    if type(obj) is not dict:
        raise ProtocolViolationError(f"{field} decode failed: {field} must be a JSON object")
    return obj


def _set_transports(packet: Any, transports: tuple[TransportDescriptor, ...]) -> None:
    for t in transports:
        d = packet.transports.add(name=t.name, kind=t.kind, mode=t.mode)
        cfg = t.typed_config
        if cfg is not None and (cfg.transport_ref.strip() or cfg.mode_reason.strip()):
            d.typed_config.transport_ref = cfg.transport_ref.strip()
            d.typed_config.mode_reason = cfg.mode_reason.strip()


def _set_envelope(packet: Any, env: StreamEnvelope | None) -> None:
    if env is None:
        return
    e = packet.envelope
    # Presence matters: Go writes an empty-but-set envelope (`42 00`) and a Go receiver sees it.
    e.SetInParent()
    e.stream_id = env.stream_id
    e.sequence = env.sequence
    e.partition = env.partition
    e.chunk_id = env.chunk_id
    e.chunk_index = env.chunk_index
    e.chunk_count = env.chunk_count
    e.chunk_bytes = env.chunk_bytes
    e.total_bytes = env.total_bytes


def _set_structs(packet: Any, msg: StreamMessage, encoded: list[bytes] | None = None) -> None:
    # With `encoded`, the Structs are appended there as serialized fields 5 (payload) and
    # 6 (inputs) instead of being built on the packet (see struct_bytes).
    if msg.payload:
        obj = _json_object(msg.payload, "payload")
        if encoded is None:
            packet.payload.SetInParent()
            dict_to_struct(obj, packet.payload)
        else:
            body = struct_bytes(obj)
            encoded.append(b"\x2a" + varint(len(body)))
            encoded.append(body)
    if msg.inputs:
        obj = _json_object(msg.inputs, "inputs")
        if encoded is None:
            packet.inputs.SetInParent()
            dict_to_struct(obj, packet.inputs)
        else:
            body = struct_bytes(obj)
            encoded.append(b"\x32" + varint(len(body)))
            encoded.append(body)


def _uses_raw_bypass(msg: StreamMessage) -> bool:
    b = msg.binary
    if b is None or is_envelope_mime(b.mime_type):
        return False
    if msg.inputs or msg.transports or msg.envelope is not None:
        return False
    if not msg.payload:
        return True
    mime = b.mime_type.split(";", 1)[0].strip().lower()
    return mime != JSON_MIME_TYPE and msg.payload == b.payload


def _build(
    msg: StreamMessage, cls: type[_P], *, validate: bool, encoded: list[bytes] | None = None
) -> _P:
    # With `encoded`: the Structs go there as bytes, and transports/envelope are left to the
    # caller (fields 7-8 come after them on the wire; see data_request_bytes).
    if validate:
        msg.validate()
    packet = cls()
    audio = msg.audio
    video = msg.video
    binary = msg.binary
    if audio is not None:
        pa = packet.audio
        pa.SetInParent()
        pa.pcm = audio.pcm
        pa.sample_rate_hz = audio.sample_rate_hz
        pa.channels = audio.channels
        pa.codec = audio.codec.strip()
        pa.timestamp_ms = max(audio.timestamp_ms, 0)
        _set_structs(packet, msg, encoded)
    elif video is not None:
        pv = packet.video
        pv.SetInParent()
        pv.payload = video.payload
        pv.codec = video.codec.strip()
        pv.width = video.width
        pv.height = video.height
        pv.timestamp_ms = max(video.timestamp_ms, 0)
        pv.raw = video.raw
        _set_structs(packet, msg, encoded)
    else:
        envelope = None if _uses_raw_bypass(msg) else encode_envelope(msg)
        if envelope is not None:
            doc, ts = envelope
            if binary is not None:
                # Go quirk (docs/contract/stream.md#encoding): the caller's Binary timestamp
                # overwrites the envelope's, even when it is 0.
                ts = max(binary.timestamp_ms, 0)
            pb_ = packet.binary
            pb_.payload = doc
            pb_.mime_type = ENVELOPE_MIME_TYPE
            pb_.timestamp_ms = ts
            _set_structs(packet, msg, encoded)
        elif binary is not None:
            pb_ = packet.binary
            pb_.payload = binary.payload
            pb_.mime_type = binary.mime_type or OCTET_STREAM_MIME_TYPE
            pb_.timestamp_ms = max(binary.timestamp_ms, 0)
        else:
            raise ProtocolViolationError("stream message missing audio, video, or binary payload")
    _fill_metadata(packet.metadata, msg)
    if encoded is None:
        _set_transports(packet, msg.transports)
        _set_envelope(packet, msg.envelope)
    return packet


def to_pb_data_request(msg: StreamMessage, *, validate: bool = True) -> pb.DataRequest:
    """Encode ``msg`` as the ``DataRequest`` the Go SDK would send.

    See docs/contract/stream.md#encoding.

    Args:
        msg: The message to publish.
        validate: Run :meth:`StreamMessage.validate` first (Go always does; the protovalidate
            rules are separate, see ``bubu._transport.validate``).

    Raises:
        ProtocolViolationError: the message is invalid or cannot be encoded; the text matches
            Go's where tests pin it ("payload decode failed", "envelope payload is not valid
            JSON", "stream message missing audio, video, or binary payload").
    """
    return _build(msg, pb.DataRequest, validate=validate)


def to_pb_data_response(msg: StreamMessage, *, validate: bool = True) -> pb.DataResponse:
    """Encode ``msg`` as a ``DataResponse`` (connector -> engram; same layout as DataRequest)."""
    return _build(msg, pb.DataResponse, validate=validate)


def data_request_bytes(
    msg: StreamMessage, *, validate: bool = True
) -> tuple[bytes, pb.DataRequest, pb.DataRequest | None]:
    """Encode ``msg`` straight to serialized ``DataRequest`` bytes (the session's send path).

    Parses to exactly ``to_pb_data_request(msg)``: the fields are written in field-number order
    (frame and metadata, then the payload/inputs Structs from :func:`struct_bytes`, then
    transports and envelope), as upb does; only the order of the entries inside the Structs'
    maps may differ (protobuf map order is unspecified).

    Returns:
        ``(data, head, tail)``: the bytes, and the packets they were serialized from (``head``
        holds the frame and metadata, ``tail`` the transports and envelope or is ``None``), so
        the caller can check the buf.validate rules (the Structs carry none).

    Raises:
        ProtocolViolationError: as :func:`to_pb_data_request`.
    """
    encoded: list[bytes] = []
    head = _build(msg, pb.DataRequest, validate=validate, encoded=encoded)
    tail = None
    if msg.transports or msg.envelope is not None:
        tail = pb.DataRequest()
        _set_transports(tail, msg.transports)
        _set_envelope(tail, msg.envelope)
    data: bytes = head.SerializeToString()
    if encoded:
        data += b"".join(encoded)
    if tail is not None:
        data += tail.SerializeToString()
    return data, head, tail


_ENVELOPE_MIME_FIELD: Final = (
    b"\x12" + varint(len(ENVELOPE_MIME_TYPE)) + ENVELOPE_MIME_TYPE.encode()
)
_UINT64_MAX: Final = (1 << 64) - 1


def envelope_request_bytes(
    msg: StreamMessage,
) -> tuple[bytes, int, Mapping[str, str] | None, pb.DataRequest | None] | None:
    """:func:`data_request_bytes` for the usual JSON message (an envelope frame), faster.

    The ``BinaryFrame`` (field 3) is written directly, as upb writes it (payload, MIME, then
    a non-zero timestamp). A message with a payload object and nothing but an optional kind
    besides (what an engram usually sends) takes the quickest road: the payload's Struct is
    written straight from its text by ``_structwire.json_payload``, which also proves it valid
    JSON and compacts it with Go's escapes (msgspec decodes the unusual documents it declines),
    and its one metadata entry (the kind) is a cached byte string. Other messages have their
    metadata (field 4) serialized by upb, so the map order is upb's. Same bytes as
    :func:`data_request_bytes`; anything that fails takes the general road, whose errors are the
    canonical ones.

    Returns:
        ``None`` when ``msg`` takes another branch of the encoding tree (audio, video, raw
        bypass, no envelope); else ``(data, envelope_len, metadata, tail)``: the bytes, the length
        of the frame's envelope document, the packet metadata (``None`` when empty) and the
        packet holding the transports/envelope (``None`` when absent), for the buf.validate
        rules.

    Raises:
        ProtocolViolationError: as :func:`to_pb_data_request`.
    """
    if msg.audio is not None or msg.video is not None or _uses_raw_bypass(msg):
        return None
    msg.validate()
    payload = msg.payload
    if (
        payload
        and _compiled_go_compact is not None
        and _compiled_json_payload is not None
        and not (msg.inputs or msg.transports or msg.envelope is not None)
    ):
        pieces = _compiled_json_payload(payload)  # None: not plain enough, or not valid
        if pieces is not None:
            return _json_request_bytes(msg, *pieces)
        try:
            obj = _decoder.decode(payload)
        except (msgspec.DecodeError, UnicodeDecodeError):  # the general road reports it
            obj = None
        if type(obj) is dict:
            return _json_request_bytes(msg, struct_bytes(obj), _compiled_go_compact(payload))
    return _envelope_request_bytes(msg)


_INT32_MAX: Final = (1 << 31) - 1


def audio_request_bytes(msg: StreamMessage) -> tuple[bytes, Mapping[str, str] | None] | None:
    """:func:`data_request_bytes` for an audio message without Structs, transports or envelope.

    The ``AudioFrame`` (field 1) is written directly, as upb writes it: the fields in number
    order, zero values left out; the metadata (field 4), if any, is serialized by upb. Same bytes
    as :func:`data_request_bytes`.

    Returns:
        ``None`` when ``msg`` is not such a message or holds a value of an unexpected type or
        range (the general road then encodes or reports it); else ``(data, metadata)``: the
        bytes and the packet metadata (``None`` when empty), for the buf.validate rules.

    Raises:
        ProtocolViolationError: ``msg`` breaks :meth:`StreamMessage.validate`.
    """
    audio = msg.audio
    if audio is None or msg.payload or msg.inputs or msg.transports or msg.envelope is not None:
        return None
    msg.validate()
    pcm = audio.pcm
    rate = audio.sample_rate_hz
    channels = audio.channels
    name = audio.codec
    ts = audio.timestamp_ms
    # validate() made pcm non-empty and rate and channels positive; upb decides anything odd.
    if not (
        type(pcm) is bytes
        and type(rate) is int
        and type(channels) is int
        and type(name) is str
        and type(ts) is int
        and rate <= _INT32_MAX
        and channels <= _INT32_MAX
        and ts <= _UINT64_MAX
        and name.isascii()
    ):
        return None
    parts = [b"\x0a", varint(len(pcm)), pcm, b"\x10", varint(rate), b"\x18", varint(channels)]
    name = name.strip()
    if name:
        parts += (b"\x22", varint(len(name)), name.encode())
    if ts:  # validate() refused a negative one
        parts += (b"\x28", varint(ts))
    frame = b"".join(parts)
    out = [b"\x0a", varint(len(frame)), frame]
    metadata: Mapping[str, str] | None = None
    if msg.metadata or msg.kind or msg.message_id or msg.timestamp is not None:
        meta = _packet_metadata(msg)
        metadata = meta.metadata
        out.append(meta.SerializeToString())
    return b"".join(out), metadata


_KIND_PIECES: dict[str, tuple[bytes, bytes, dict[str, str]]] = {}
_KIND_PIECES_MAX: Final = 256


def _kind_pieces(kind: str) -> tuple[bytes, bytes, dict[str, str]]:
    # A validated kind ([A-Za-z0-9._-]+) needs no JSON escape. Per kind: the envelope's opening,
    # the packet metadata field holding {bubu.envelope.kind: kind} as upb writes a one-entry map,
    # and that map for the rules. Bounded: kinds come from user code.
    pieces = _KIND_PIECES.get(kind)
    if pieces is None:
        raw = kind.encode()
        key = META_KIND.encode()
        entry = b"\x0a" + varint(len(key)) + key + b"\x12" + varint(len(raw)) + raw
        pieces = (
            b'{"version":"v1","kind":"' + raw + b'"',
            b"\x22" + varint(len(entry)) + entry,
            {META_KIND: kind},
        )
        if len(_KIND_PIECES) >= _KIND_PIECES_MAX:
            _KIND_PIECES.clear()
        _KIND_PIECES[kind] = pieces
    return pieces


def _json_request_bytes(
    msg: StreamMessage, body: bytes, payload_json: bytes
) -> tuple[bytes, int, Mapping[str, str] | None, pb.DataRequest | None] | None:
    # envelope_request_bytes for a validated message whose payload is a JSON object with Struct
    # bytes `body` that compacts to `payload_json`, with no inputs, transports or envelope:
    # encode_envelope and the general road below, piece by piece (Go's escapes apply inside
    # strings only, so escaping each piece equals escaping the document).
    kind = msg.kind
    opening, kind_meta, kind_map = _kind_pieces(kind or KIND_DATA)
    doc_parts = [opening]
    if msg.message_id:
        doc_parts += (b',"messageId":', go_escape_json(_plain_encoder.encode(msg.message_id)))
    ts = 0
    if msg.timestamp is not None:
        ts = _ms(msg.timestamp)
        if ts:
            doc_parts += (b',"timestampMs":', str(ts).encode())
    if msg.metadata:
        doc_parts += (b',"metadata":', go_escape_json(_sorted_encoder.encode(msg.metadata)))
    doc_parts += (b',"payload":', payload_json, b"}")
    doc = b"".join(doc_parts)
    binary = msg.binary
    if binary is not None:
        ts = max(binary.timestamp_ms, 0)  # the Go quirk of _build
    if not 0 <= ts <= _UINT64_MAX:
        return None  # let upb report it
    head = b"\x0a" + varint(len(doc))
    tail = _ENVELOPE_MIME_FIELD + b"\x18" + varint(ts) if ts else _ENVELOPE_MIME_FIELD
    parts = [b"\x1a", varint(len(head) + len(doc) + len(tail)), head, doc, tail]
    metadata: Mapping[str, str] | None = None
    if msg.metadata or msg.message_id or msg.timestamp is not None:
        meta = _packet_metadata(msg)
        metadata = meta.metadata
        parts.append(meta.SerializeToString())
    elif kind:
        metadata = kind_map
        parts.append(kind_meta)
    parts += (b"\x2a", varint(len(body)), body)
    return b"".join(parts), len(doc), metadata, None


def _packet_metadata(msg: StreamMessage) -> pb.DataRequest:
    meta = pb.DataRequest()
    _fill_metadata(meta.metadata, msg)
    return meta


def _fill_metadata(entries: Any, msg: StreamMessage) -> None:
    # Packet metadata = the user's map plus the bubu.envelope.* keys
    # (docs/contract/stream.md#encoding), set in place in this order.
    for key, value in msg.metadata.items():
        entries[key] = value
    if msg.kind:
        entries[META_KIND] = msg.kind
    if msg.message_id:
        entries[META_MESSAGE_ID] = msg.message_id
    if msg.timestamp is not None:
        entries[META_TIMESTAMP_MS] = str(_ms(msg.timestamp))


def _envelope_request_bytes(
    msg: StreamMessage,
) -> tuple[bytes, int, Mapping[str, str] | None, pb.DataRequest | None] | None:
    # envelope_request_bytes' general road, for a message already validated.
    envelope = encode_envelope(msg)
    if envelope is None:
        return None
    doc, ts = envelope
    binary = msg.binary
    if binary is not None:
        ts = max(binary.timestamp_ms, 0)  # the Go quirk of _build
    if not 0 <= ts <= _UINT64_MAX:
        return None  # let upb report it
    frame = b"\x0a" + varint(len(doc)) + doc + _ENVELOPE_MIME_FIELD
    if ts:
        frame += b"\x18" + varint(ts)
    parts = [b"\x1a" + varint(len(frame)), frame]
    metadata: Mapping[str, str] | None = None
    if msg.metadata or msg.kind or msg.message_id or msg.timestamp is not None:
        meta = _packet_metadata(msg)
        metadata = meta.metadata
        parts.append(meta.SerializeToString())
    _set_structs(None, msg, parts)
    tail = None
    if msg.transports or msg.envelope is not None:
        tail = pb.DataRequest()
        _set_transports(tail, msg.transports)
        _set_envelope(tail, msg.envelope)
        parts.append(tail.SerializeToString())
    return b"".join(parts), len(doc), metadata, tail


# -- inbound: DataResponse -> StreamMessage (docs/contract/stream.md#inbound-decode) ------------


def _hoist(
    outer: Mapping[str, str],
) -> tuple[str | None, str | None, _dt.datetime | None, dict[str, str]]:
    kind = message_id = None
    timestamp = None
    rest: dict[str, str] = {}
    for key, value in outer.items():
        # Go hydrateStreamMessageMetadata: a present key wins even when blank (trimmed); a
        # timestamp that is not a positive int64 is dropped.
        if key == META_KIND:
            kind = value.strip()
        elif key == META_MESSAGE_ID:
            message_id = value.strip()
        elif key == META_TIMESTAMP_MS:
            try:
                ms = int(value) if value.isascii() and value.lstrip("+-").isdigit() else -1
            except ValueError:
                continue
            if 0 < ms <= _INT64_MAX:
                timestamp = _from_ms(ms)
        else:
            rest[key] = value
    return kind, message_id, timestamp, rest


def _frame_envelope(env: pb.StreamEnvelope) -> StreamEnvelope:
    return StreamEnvelope(
        stream_id=env.stream_id,
        sequence=env.sequence,
        partition=env.partition,
        chunk_id=env.chunk_id,
        chunk_index=env.chunk_index,
        chunk_count=env.chunk_count,
        chunk_bytes=env.chunk_bytes,
        total_bytes=env.total_bytes,
    )


def _typed_config(transport_ref: str, mode_reason: str) -> TransportConfig | None:
    # Go transportConfigFrom/ToProto: values trimmed; both blank means no typed config.
    ref, reason = transport_ref.strip(), mode_reason.strip()
    if not ref and not reason:
        return None
    return TransportConfig(transport_ref=ref, mode_reason=reason)


def _pb_transports(packet: Any) -> tuple[TransportDescriptor, ...]:
    out = []
    for t in packet.transports:
        cfg = None
        if t.HasField("typed_config"):
            cfg = _typed_config(t.typed_config.transport_ref, t.typed_config.mode_reason)
        out.append(TransportDescriptor(name=t.name, kind=t.kind, mode=t.mode, typed_config=cfg))
    return tuple(out)


def from_pb_packet(packet: Any, *, validate: bool = True) -> StreamMessage:
    """Decode a received packet into a :class:`StreamMessage` (Go decode precedence, 4.6).

    1. Audio/video: the frame. 2. Binary with the envelope MIME: the envelope's kind, id,
    timestamp, metadata, payload (mirrored into ``binary`` as ``application/json``), inputs and
    transports. 3. Other binary: ``payload`` = the bytes, mirrored with the MIME (empty ->
    ``application/octet-stream``). Then *merge*: hoist ``bubu.envelope.*`` metadata over the
    envelope values; the remaining outer metadata, if any, replaces the envelope metadata; the
    ``payload``/``inputs`` Structs and ``transports`` fill only what is still empty; the proto
    envelope is copied. A frameless packet (Go never translates one) decodes by *merge* alone.

    Run the protovalidate rules (``bubu._transport.validate``) on the packet before this.

    Args:
        packet: A ``DataResponse`` (or ``DataRequest``/``PublishRequest``/``DataPacket``).
        validate: Run :meth:`StreamMessage.validate` on the result, as Go does.

    Raises:
        ProtocolViolationError: the envelope cannot be decoded or the result is invalid; a
            session error in Go.
    """
    frame = packet.WhichOneof("frame")
    kind = message_id = ""
    timestamp: _dt.datetime | None = None
    metadata: dict[str, str] = {}
    payload = inputs = b""
    transports: tuple[TransportDescriptor, ...] = ()
    audio = video = None
    binary = None
    if frame == "binary":
        b = packet.binary
        if is_envelope_mime(b.mime_type):
            env = decode_envelope(b.payload, b.timestamp_ms)
            # Go trims both (populateMessageFromEnvelope).
            kind, message_id = env.kind.strip(), env.message_id.strip()
            metadata = env.metadata
            if env.timestamp_ms > 0:
                timestamp = _from_ms(env.timestamp_ms)
            if env.payload:
                payload = env.payload
            # Departure from Go v0.1.5: Go mirrors the payload into Binary here even for
            # kind "error", which its own Validate then rejects ("error messages must not carry
            # media frames"), so a Go SDK cannot receive stream error messages. We skip the
            # mirror for error messages so they decode (docs/contract/stream.md#errors: they
            # travel normally).
            if payload and kind.lower() != KIND_ERROR:
                binary = BinaryFrame(
                    payload=payload,
                    mime_type=JSON_MIME_TYPE,
                    timestamp_ms=max(env.timestamp_ms, 0),
                )
            inputs, transports = env.inputs, env.transports
        else:
            payload = b.payload
            binary = BinaryFrame(
                payload=payload,
                mime_type=b.mime_type or OCTET_STREAM_MIME_TYPE,
                timestamp_ms=b.timestamp_ms,
            )
    elif frame == "audio":
        a = packet.audio
        audio = AudioFrame(
            pcm=a.pcm,
            sample_rate_hz=a.sample_rate_hz,
            channels=a.channels,
            codec=a.codec,
            timestamp_ms=a.timestamp_ms,
        )
    elif frame == "video":
        v = packet.video
        video = VideoFrame(
            payload=v.payload,
            codec=v.codec,
            width=v.width,
            height=v.height,
            timestamp_ms=v.timestamp_ms,
            raw=v.raw,
        )

    # merge (Go mergeRequestContextIntoStreamMessage)
    if packet.metadata:
        h_kind, h_id, h_ts, rest = _hoist(packet.metadata)
        if h_kind is not None:
            kind = h_kind
        if h_id is not None:
            message_id = h_id
        if h_ts is not None:
            timestamp = h_ts
        if rest:
            metadata = rest
    if not payload and packet.HasField("payload"):
        payload = struct_to_json(packet.payload)
    if not inputs and packet.HasField("inputs"):
        inputs = struct_to_json(packet.inputs)
    if not transports and len(packet.transports):
        transports = _pb_transports(packet)
    envelope = _frame_envelope(packet.envelope) if packet.HasField("envelope") else None

    msg = StreamMessage(
        payload=payload,
        metadata=metadata,
        inputs=inputs,
        transports=transports,
        envelope=envelope,
        kind=kind,
        message_id=message_id,
        timestamp=timestamp,
        audio=audio,
        video=video,
        binary=binary,
    )
    if validate:
        msg.validate()
    return msg


from_pb_data_response = from_pb_packet
"""Alias: decode a ``DataResponse`` (what the engram receives)."""
