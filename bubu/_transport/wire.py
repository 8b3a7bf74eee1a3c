"""Session-level packet helpers: encode + validate outbound, validate + decode inbound, drop rules.

Thin glue between the session and :mod:`bubu._transport.codec` / :mod:`bubu._transport.validate`
so that the session reads as the protocol (docs/contract/stream.md#session) and the hot path
lives in one place. Every outbound ``DataRequest`` and ``ControlRequest`` and every inbound
``DataResponse`` and ``ControlResponse`` passes the ``buf.validate`` rules, as in Go v0.1.5
(docs/contract/stream.md#validation).
"""

from __future__ import annotations

import time
from typing import Any, Final

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import KIND_HEARTBEAT, KIND_NOOP, StreamMessage
from bubu._runtime.transport import TransportSettings
from bubu._transport import codec, validate
from bubu.errors import MessageTooLargeError

__all__ = [
    "control_heartbeat",
    "control_ok",
    "control_request",
    "control_type",
    "data_heartbeat",
    "decode_inbound",
    "encode_outbound",
    "encode_outbound_bytes",
    "packet_ok",
    "receipt_bytes",
    "should_drop",
    "validate_control_request",
    "validate_control_response",
]

control_type = codec.control_type
control_request = codec.control_request

_HEARTBEAT: Final = codec.heartbeat_data_request()


def data_heartbeat() -> Any:
    """The Data heartbeat (``bubu-heartbeat: true``, nothing else).

    See docs/contract/stream.md#heartbeats.
    """
    return _HEARTBEAT


def control_heartbeat() -> Any:
    """The Control heartbeat ``{HEARTBEAT, {ts: <unix ms>}}``.

    See docs/contract/stream.md#control.
    """
    return pb.ControlRequest(
        action=pb.CONTROL_ACTION_HEARTBEAT, metadata={"ts": str(int(time.time() * 1000))}
    )


# -- buf.validate rules, hand-checked on the hot path ----------------------------------------
#
# protovalidate costs ~20-60 us per packet even with the Structs detached
# (docs/performance.md#ceiling); these checks cost ~2 us. They implement exactly the rules
# transport.proto declares for the messages the session sends and receives; when one fails,
# protovalidate runs to produce the canonical error. tests/unit/streaming/test_wire.py checks both
# agree on generated packets.

_MIB10: Final = 10 * 1024 * 1024


def _metadata_ok(metadata: Any, max_pairs: int = 100) -> bool:
    if len(metadata) > max_pairs:
        return False
    for key, value in metadata.items():
        if not 0 < len(key) <= 128 or len(value) > 1024:
            return False
    return True


def _envelope_ok(env: Any) -> bool:
    count = env.chunk_count
    if (
        len(env.stream_id) > 128
        or len(env.partition) > 128
        or len(env.chunk_id) > 128
        or count > 256
        or env.chunk_bytes > _MIB10
        or env.total_bytes > 64 * 1024 * 1024
    ):
        return False
    if count == 0:
        # stream_envelope.no_chunk_fields_without_count
        return bool(
            env.chunk_index == 0
            and env.chunk_bytes == 0
            and env.total_bytes == 0
            and env.chunk_id == ""
        )
    # chunk_id_required, stream_id_required, chunk_index_less_than_count
    return bool(len(env.chunk_id) > 0 and len(env.stream_id) > 0 and env.chunk_index < count)


# The buf.validate rules of each frame, for a packet's frame or the decoded one (same fields).
def _binary_ok(b: Any) -> bool:
    return len(b.payload) <= _MIB10 and len(b.mime_type) <= 255


def _audio_ok(a: Any) -> bool:
    return (
        len(a.pcm) <= _MIB10
        and 8000 <= a.sample_rate_hz <= 192000
        and 1 <= a.channels <= 8
        and len(a.codec) <= 32
    )


def _video_ok(v: Any) -> bool:
    return (
        len(v.payload) <= _MIB10 and len(v.codec) <= 32 and v.width <= 16384 and v.height <= 16384
    )


def packet_ok(packet: Any) -> bool:
    """Whether a DataRequest/DataResponse passes every buf.validate rule of transport.proto."""
    frame = packet.WhichOneof("frame")
    if (
        (frame == "binary" and not _binary_ok(packet.binary))
        or (frame == "audio" and not _audio_ok(packet.audio))
        or (frame == "video" and not _video_ok(packet.video))
    ):
        return False
    if packet.metadata and not _metadata_ok(packet.metadata):
        return False
    transports = packet.transports
    if transports and not _transports_ok(transports):
        return False
    return not packet.HasField("envelope") or _envelope_ok(packet.envelope)


def _transports_ok(transports: Any) -> bool:
    if len(transports) > 10:
        return False
    for t in transports:
        if len(t.name) > 128 or len(t.kind) > 128 or len(t.mode) > 128:
            return False
        if t.HasField("typed_config"):
            c = t.typed_config
            if len(c.transport_ref) > 253 or len(c.mode_reason) > 512:
                return False
    return True


def control_ok(message: Any) -> bool:
    """Whether a ControlRequest/ControlResponse passes every buf.validate rule."""
    if len(message.custom_action) > 128 or not _metadata_ok(message.metadata):
        return False
    if message.HasField("flow"):
        acks = message.flow.partition_acks
        if len(acks) > 256 or any(len(a.partition) > 128 for a in acks):
            return False
    if type(message) is pb.ControlResponse and message.HasField("error"):
        e = message.error
        if e.code < 0 or len(e.message) > 2048 or not _metadata_ok(e.details, 50):
            return False
    return True


def validate_control_request(request: Any) -> None:
    """Apply the buf.validate rules to an outbound ControlRequest.

    Raises:
        ProtocolViolationError: a rule is broken (a handler reply with a bad key, say).
    """
    if not control_ok(request):
        validate.check(request, what="transport control request invalid")


def validate_control_response(response: Any) -> None:
    """Apply the buf.validate rules to an inbound ControlResponse (Go ``processControlMessage``).

    Raises:
        ProtocolViolationError: a rule is broken.
    """
    if not control_ok(response):
        validate.check(response, what="transport control response invalid")


def encode_outbound(message: StreamMessage, settings: TransportSettings) -> Any:
    """Turn an engram's message into a validated ``DataRequest`` within the send cap.

    Raises:
        ProtocolViolationError: the message breaks ``StreamMessage.validate`` or a buf.validate
            rule (Go: "transport publish request invalid").
        MessageTooLargeError: the encoded request is over ``BUBU_GRPC_CLIENT_MAX_SEND_BYTES``.
    """
    request = codec.to_pb_data_request(message)
    if not packet_ok(request):
        validate.check_packet(request, what="transport publish request invalid")
    size = request.ByteSize()
    if size > settings.max_send_bytes:
        raise MessageTooLargeError(
            f"trying to send message larger than max ({size} vs. {settings.max_send_bytes})"
        )
    return request


def encode_outbound_bytes(message: StreamMessage, settings: TransportSettings) -> bytes:
    """:func:`encode_outbound`, serialized once: what the session queues for the Data stream.

    Raises:
        ProtocolViolationError: as :func:`encode_outbound`.
        MessageTooLargeError: as :func:`encode_outbound`.
    """
    # The Structs are written as bytes (codec.struct_bytes); the rules live on the other fields,
    # which head and tail hold. A broken rule is reported on the full packet, as before.
    a = message.audio
    audio = None if a is None else codec.audio_request_bytes(message)
    fast = None if audio is not None else codec.envelope_request_bytes(message)
    if audio is not None and a is not None:
        # The frame as written: codec trimmed (validate() refused surrounding whitespace).
        data, meta = audio
        ok = (
            len(a.pcm) <= _MIB10
            and 8000 <= a.sample_rate_hz <= 192000
            and 1 <= a.channels <= 8
            and len(a.codec) <= 32
            and (meta is None or _metadata_ok(meta))
        )
    elif fast is not None:
        # The frame is the envelope document with the envelope MIME (255 characters max).
        data, doc_len, meta, tail = fast
        ok = (
            doc_len <= _MIB10
            and (meta is None or _metadata_ok(meta))
            and (tail is None or packet_ok(tail))
        )
    else:
        data, head, tail = codec.data_request_bytes(message)
        ok = packet_ok(head) and (tail is None or packet_ok(tail))
    if not ok:
        validate.check_packet(
            codec.to_pb_data_request(message, validate=False),
            what="transport publish request invalid",
        )
    if len(data) > settings.max_send_bytes:
        raise MessageTooLargeError(
            f"trying to send message larger than max ({len(data)} vs. {settings.max_send_bytes})"
        )
    return data


_varint = codec.varint
_SHORT: Final = codec.ONE_BYTE_VARINTS
"""One-byte varints: every length a receipt field has in practice."""


def _map_entry(key: bytes, value: str) -> bytes:
    # map<string, string> field 2: entry {1: key, 2: value}, length-delimited.
    raw = value.encode()
    n = len(raw)
    entry = b"\x0a" + _SHORT[len(key)] + key + b"\x12" + (_SHORT[n] if n < 0x80 else _varint(n))
    entry += raw
    size = len(entry)
    return b"\x12" + (_SHORT[size] if size < 0x80 else _varint(size)) + entry


_DELIVERED: Final = b"\x22" + _varint(20) + b"downstream.delivered"

# The stream_id and partition entries repeat for every receipt of a stream: encode them once.
# Bounded (cleared when full) because stream ids come from the wire.
_STREAM_ENTRIES: dict[tuple[str, str], bytes] = {}
_STREAM_ENTRIES_MAX: Final = 256


def receipt_bytes(stream_id: str, sequence: int, partition: str, size_bytes: int) -> bytes:
    """The encoded ``downstream.delivered`` ControlRequest, built directly.

    See docs/contract/stream.md#control.

    Equal, field for field, to ``codec.delivery_receipt(...)`` (action UNSPECIFIED, the custom
    action, the four metadata keys) at a fraction of the cost; a receipt goes out per message.
    It always passes the buf.validate rules: the keys are fixed, ``stream_id`` and ``partition``
    come from an inbound envelope already checked (<= 128 characters) and the numbers are short.
    """
    head = _STREAM_ENTRIES.get((stream_id, partition))
    if head is None:
        if len(_STREAM_ENTRIES) >= _STREAM_ENTRIES_MAX:
            _STREAM_ENTRIES.clear()
        head = _map_entry(b"stream_id", stream_id) + _map_entry(b"partition", partition)
        _STREAM_ENTRIES[(stream_id, partition)] = head
    # Map entries may come in any order on the wire; the numbers are ASCII and short.
    seq = b"%d" % sequence
    size = b"%d" % size_bytes
    return head + _SEQUENCE_HEADS[len(seq)] + seq + _SIZE_HEADS[len(size)] + size + _DELIVERED


# The bytes before a receipt's sequence and size_bytes digits, by digit count (a uint64 has at
# most 20): map entry tag and length, key, value tag and length.
_SEQUENCE_HEADS: Final = tuple(
    b"\x12" + _SHORT[n + 12] + b"\x0a\x08sequence\x12" + _SHORT[n] for n in range(22)
)
_SIZE_HEADS: Final = tuple(
    b"\x12" + _SHORT[n + 14] + b"\x0a\x0asize_bytes\x12" + _SHORT[n] for n in range(22)
)


def decode_inbound(packet: Any) -> StreamMessage:
    """Validate a reassembled packet and decode it (Go ``publishRequestToStreamMessage``).

    Raises:
        ProtocolViolationError: a buf.validate rule, the envelope or ``StreamMessage.validate``
            fails; the session treats it as a retryable session error.
    """
    # Decoded first, checked after on the decoded values (each packet field read once; upb reads
    # cost ~0.15 us each). A packet that fails to decode is checked before its error is raised,
    # so a broken rule is still the error reported first.
    try:
        message = codec.from_pb_packet(packet)
    except Exception:
        if not packet_ok(packet):
            validate.check_packet(packet, what="transport packet invalid")
        raise
    if not _decoded_ok(packet, message):
        validate.check_packet(packet, what="transport packet invalid")
    return message


def _decoded_ok(packet: Any, message: StreamMessage) -> bool:
    # packet_ok, reading the frame and envelope from `message`, decoded from `packet` by
    # codec.from_pb_packet: its audio, video and envelope are the packet's, field for field.
    a = message.audio
    v = message.video
    if a is not None:
        if not _audio_ok(a):
            return False
    elif v is not None:
        if not _video_ok(v):
            return False
    elif not _binary_ok(packet.binary):  # an empty default when the packet has no frame
        return False
    metadata = packet.metadata
    if metadata and not _metadata_ok(metadata):
        return False
    # The packet's transports fill the message's when the envelope has none, so the message
    # has none only when the packet has none either.
    if message.transports and not _transports_ok(packet.transports):
        return False
    e = message.envelope
    return e is None or _envelope_ok(e)


def should_drop(message: StreamMessage) -> bool:
    """Go ``shouldDropSubscribeMessage`` (docs/contract/stream.md#inbound).

    Heartbeat metadata, kind ``heartbeat`` or ``noop``, or a completely empty message.
    """
    if message.metadata and codec.is_heartbeat_metadata(message.metadata):
        return True
    kind = message.kind.lower()
    if kind in (KIND_HEARTBEAT, KIND_NOOP):
        return True
    return message.is_empty
