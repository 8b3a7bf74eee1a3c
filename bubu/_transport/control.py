"""Go's default replies to connector control directives, without grpclib.

See docs/contract/stream.md#control.

Kept apart from :mod:`bubu._transport.session` so that :mod:`bubu._streaming` (whose
``ControlDirective.default_reply`` exposes the same table to engrams) stays cheap to import:
this module imports nothing beyond the standard library.
"""

from __future__ import annotations

__all__ = ["ControlReply", "default_control_reply"]

#: A control reply: (type string, metadata), or None for no reply.
ControlReply = tuple[str, dict[str, str]] | None

_HANDOFF = frozenset({"handoff.draining", "handoff.cutover", "handoff.ready"})


def default_control_reply(directive_type: str) -> ControlReply:
    """Go ``defaultControlDirectiveHandler``: the ACK for a directive.

    Returns:
        ``None`` for ``ack`` (no reply, so no ack ping-pong), else ``("ack", metadata)`` with
        ``handled``, ``reason`` and the directive's ``type``.
    """
    if directive_type == "ack":
        return None
    if directive_type in ("", "noop"):
        handled, reason = "false", "noop"
    elif directive_type == "connector.ready":
        handled, reason = "true", "startup"
    elif directive_type == "connector.capabilities":
        handled, reason = "true", "capabilities"
    elif directive_type in _HANDOFF:
        handled, reason = "true", "handoff"
    else:
        handled, reason = "false", "no_control_handler"
    return "ack", {"handled": handled, "reason": reason, "type": directive_type}
