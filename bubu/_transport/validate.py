"""The ``buf.validate`` rules of ``transport.v1``, checked with protovalidate.

See docs/contract/stream.md#validation.

The Go SDK validates every outbound ``DataRequest`` (heartbeats included) and ``ControlRequest``,
and every inbound reassembled packet and ``ControlResponse``; a failure is a session error. This
module does the same check with one reused :class:`protovalidate.Validator` (its rule cache makes
reuse much faster) and reports the first violation as :class:`~bubu.errors.PacketValidationError`
naming the field path (``audio.sample_rate_hz``, ``metadata[""]``, ``transports``).

``google.protobuf.Struct`` has no rules, yet protovalidate walks it: docs/performance.md#ceiling
measured 80% of a JSON packet's validation time there. :func:`check_packet` therefore validates
with ``payload``/``inputs`` detached and re-attaches them (same result, ~10x faster).

The 10 MiB message caps (grpclib has no max-message option,
docs/contract/stream.md#keepalive-and-limits) are enforced by the session; the constants live
here so every caller uses the same numbers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Final

from google.protobuf.message import Message

from bubu.errors import PacketValidationError

if TYPE_CHECKING:
    import protovalidate

__all__ = [
    "MAX_CHUNKED_MESSAGE_BYTES",
    "MAX_FRAME_PAYLOAD_BYTES",
    "MAX_MESSAGE_BYTES",
    "MAX_METADATA_PAIRS",
    "check",
    "check_packet",
    "field_path",
    "violations",
]

MAX_MESSAGE_BYTES: Final = 10 * 1024 * 1024
"""Per-message cap on send and receive (Go ``BUBU_GRPC_CLIENT_MAX_*`` default, connector too)."""
MAX_FRAME_PAYLOAD_BYTES: Final = 10 * 1024 * 1024
"""``bytes.max_len`` of audio/video/binary frame payloads."""
MAX_CHUNKED_MESSAGE_BYTES: Final = 64 * 1024 * 1024
"""``StreamEnvelope.total_bytes`` limit: the largest reassembled payload."""
MAX_METADATA_PAIRS: Final = 100
"""``map.max_pairs`` of packet and control metadata."""

_validator: protovalidate.Validator | None = None


def _get_validator() -> protovalidate.Validator:
    # Imported and built on first use. The hot path checks the rules by hand (wire.packet_ok,
    # control_ok) and comes here only to name a broken rule, so a streaming engram whose
    # packets are valid never loads protovalidate: ~70 ms of start-up and a few MB of RSS.
    global _validator
    if _validator is None:
        import protovalidate

        _validator = protovalidate.Validator()
    return _validator


def field_path(violation: Any) -> str:
    """Render a protovalidate violation's field path: ``audio.sample_rate_hz``, ``metadata["k"]``.

    A message-level (CEL) violation names the message field that holds it (``envelope``), or
    ``<message>`` at the top level.
    """
    parts: list[str] = []
    proto = violation.proto
    for el in proto.field.elements:
        name = el.field_name
        sub = el.subscript
        if sub is not None:
            if sub.field == "index":
                name = f"{name}[{sub.value}]"
            else:
                name = (
                    f'{name}["{sub.value}"]'
                    if isinstance(sub.value, str)
                    else f"{name}[{sub.value}]"
                )
        parts.append(name)
    return ".".join(parts) or "<message>"


def violations(message: Message) -> list[tuple[str, str, str]]:
    """Every violation of ``message`` as ``(field_path, rule_id, message)`` tuples."""
    found = _get_validator().collect_violations(message)
    return [(field_path(v), v.proto.rule_id, v.proto.message) for v in found]


def check(message: Message, *, what: str = "") -> None:
    """Validate ``message`` against its ``buf.validate`` rules.

    Args:
        message: Any generated ``transport.v1`` message.
        what: A prefix for the error text (Go: "transport publish request invalid").

    Raises:
        PacketValidationError: the first violation, naming the field, the rule id and every
            violation found in ``.violations``.
    """
    found = _get_validator().collect_violations(message)
    if not found:
        return
    first = found[0]
    path = field_path(first)
    rule_id = first.proto.rule_id
    prefix = f"{what}: " if what else ""
    raise PacketValidationError(
        f"{prefix}{path}: {first.proto.message} ({rule_id})",
        field=path,
        rule_id=rule_id,
        violations=[(field_path(v), v.proto.rule_id, v.proto.message) for v in found],
    )


def check_packet(packet: Message, *, what: str = "") -> None:
    """Validate a ``DataRequest``/``DataResponse``/``DataPacket`` with its Structs detached.

    Same outcome as :func:`check` (``google.protobuf.Struct`` carries no rules), without paying
    for protovalidate's walk of the payload. The packet is left exactly as it was.

    Raises:
        PacketValidationError: as :func:`check`.
    """
    detached: list[tuple[str, Any]] = []
    for name in ("payload", "inputs"):
        if packet.HasField(name):
            # After ClearField, upb keeps the old reference alive as a standalone copy.
            held = getattr(packet, name)
            packet.ClearField(name)
            detached.append((name, held))
    try:
        check(packet, what=what)
    finally:
        for name, held in detached:
            getattr(packet, name).CopyFrom(held)
