"""Session-level packet helpers: encode + validate outbound, validate + decode inbound, drop rules.

Thin glue between the session and :mod:`bubu._transport.codec` / :mod:`bubu._transport.validate`
so that the session reads as the protocol (streaming.md 3) and the hot path lives in one place.
Every outbound ``DataRequest`` and ``ControlRequest`` and every inbound ``DataResponse`` and
``ControlResponse`` passes the ``buf.validate`` rules, as in Go v0.1.5 (streaming.md 1.5).
"""

from __future__ import annotations

import time
from typing import Any, Final

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import KIND_HEARTBEAT, KIND_NOOP, StreamMessage
from bubu._transport import codec, validate
from bubu._transport.channel import MessageTooLargeError
from bubu._transport.settings import TransportSettings

__all__ = [
    "MessageTooLargeError",
    "control_heartbeat",
    "control_request",
    "control_type",
    "data_heartbeat",
    "decode_inbound",
    "encode_outbound",
    "should_drop",
    "validate_control_request",
    "validate_control_response",
]

control_type = codec.control_type
control_request = codec.control_request

_HEARTBEAT: Final = codec.heartbeat_data_request()


def data_heartbeat() -> Any:
    """The Data heartbeat (``bubu-heartbeat: true``, nothing else; streaming.md 3.8)."""
    return _HEARTBEAT


def control_heartbeat() -> Any:
    """The Control heartbeat ``{HEARTBEAT, {ts: <unix ms>}}`` (streaming.md 3.2)."""
    return pb.ControlRequest(
        action=pb.CONTROL_ACTION_HEARTBEAT, metadata={"ts": str(int(time.time() * 1000))}
    )


def validate_control_request(request: Any) -> None:
    """Apply the buf.validate rules to an outbound ControlRequest.

    Raises:
        ProtocolViolationError: a rule is broken (a handler reply with a bad key, say).
    """
    validate.check(request, what="transport control request invalid")


def validate_control_response(response: Any) -> None:
    """Apply the buf.validate rules to an inbound ControlResponse (Go ``processControlMessage``).

    Raises:
        ProtocolViolationError: a rule is broken.
    """
    validate.check(response, what="transport control response invalid")


def encode_outbound(message: StreamMessage, settings: TransportSettings) -> Any:
    """Turn an engram's message into a validated ``DataRequest`` within the send cap.

    Raises:
        ProtocolViolationError: the message breaks ``StreamMessage.validate`` or a buf.validate
            rule (Go: "transport publish request invalid").
        MessageTooLargeError: the encoded request is over ``BUBU_GRPC_CLIENT_MAX_SEND_BYTES``.
    """
    request = codec.to_pb_data_request(message)
    validate.check_packet(request, what="transport publish request invalid")
    size = request.ByteSize()
    if size > settings.max_send_bytes:
        raise MessageTooLargeError(
            f"trying to send message larger than max ({size} vs. {settings.max_send_bytes})"
        )
    return request


def decode_inbound(packet: Any) -> StreamMessage:
    """Validate a reassembled packet and decode it (Go ``publishRequestToStreamMessage``).

    Raises:
        ProtocolViolationError: a buf.validate rule, the envelope or ``StreamMessage.validate``
            fails; the session treats it as a retryable session error.
    """
    validate.check_packet(packet, what="transport packet invalid")
    return codec.from_pb_packet(packet)


def should_drop(message: StreamMessage) -> bool:
    """Go ``shouldDropSubscribeMessage`` (streaming.md 3.3 step 5).

    Heartbeat metadata, kind ``heartbeat`` or ``noop``, or a completely empty message.
    """
    if message.metadata and codec.is_heartbeat_metadata(message.metadata):
        return True
    kind = message.kind.lower()
    if kind in (KIND_HEARTBEAT, KIND_NOOP):
        return True
    return message.is_empty
