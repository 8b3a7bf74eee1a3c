"""Every ``BUBU_GRPC_*`` / ``BUBU_TRANSPORT_*`` knob of the contract, with Go defaults.

See docs/contract/stream.md#environment.

Values are read through an :class:`~bubu._runtime.binding.EnvResolver` (binding ``payload.env``
first, then the process environment) and parsed with the Go rules of
:mod:`bubu._runtime.parse`: durations use ``time.ParseDuration`` syntax, and a non-positive or
invalid value falls back to the default. Pure: no I/O.
"""

from __future__ import annotations

import logging

import msgspec

from bubu._runtime.parse import (
    BOOL_FALSE,
    BOOL_TRUE,
    GoParseError,
    env_dur,
    env_int,
    go_trim_space,
    parse_atoi,
)
from bubu._runtime.sources import EnvSource

__all__ = [
    "CHANNEL_BUFFER_SIZE",
    "CHANNEL_SEND_TIMEOUT",
    "CLIENT_MAX_RECV_BYTES",
    "CLIENT_MAX_SEND_BYTES",
    "CONTROL_HEARTBEAT_INTERVAL",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "DIAL_TIMEOUT",
    "HANG_TIMEOUT",
    "HEARTBEAT_INTERVAL",
    "MESSAGE_TIMEOUT",
    "RECONNECT_BASE_BACKOFF",
    "RECONNECT_MAX_BACKOFF",
    "RECONNECT_MAX_RETRIES",
    "SECURITY_MODE",
    "TRACE_PROPAGATION",
    "TransportSettings",
    "resolve_settings",
]

logger = logging.getLogger("bubu.transport")

DIAL_TIMEOUT = "BUBU_GRPC_DIAL_TIMEOUT"
CLIENT_MAX_RECV_BYTES = "BUBU_GRPC_CLIENT_MAX_RECV_BYTES"
CLIENT_MAX_SEND_BYTES = "BUBU_GRPC_CLIENT_MAX_SEND_BYTES"
CHANNEL_BUFFER_SIZE = "BUBU_GRPC_CHANNEL_BUFFER_SIZE"
MESSAGE_TIMEOUT = "BUBU_GRPC_MESSAGE_TIMEOUT"
CHANNEL_SEND_TIMEOUT = "BUBU_GRPC_CHANNEL_SEND_TIMEOUT"
HANG_TIMEOUT = "BUBU_GRPC_HANG_TIMEOUT"
HEARTBEAT_INTERVAL = "BUBU_GRPC_HEARTBEAT_INTERVAL"
CONTROL_HEARTBEAT_INTERVAL = "BUBU_TRANSPORT_HEARTBEAT_INTERVAL"
RECONNECT_BASE_BACKOFF = "BUBU_GRPC_RECONNECT_BASE_BACKOFF"
RECONNECT_MAX_BACKOFF = "BUBU_GRPC_RECONNECT_MAX_BACKOFF"
RECONNECT_MAX_RETRIES = "BUBU_GRPC_RECONNECT_MAX_RETRIES"
SECURITY_MODE = "BUBU_TRANSPORT_SECURITY_MODE"
TRACE_PROPAGATION = "BUBU_TRACE_PROPAGATION"

DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
"""10 MiB: the Go SDK client cap and the connector/hub server cap.

See docs/contract/stream.md#keepalive-and-limits.
"""

_ONE_NS = 1e-9


# A frozen msgspec Struct rather than a frozen dataclass: the same fields, constructor, repr,
# equality and immutability, but defined in ~0.05 ms instead of ~1.2 ms of every streaming
# engram's start (docs/performance.md, spawn-to-handshake).
class TransportSettings(msgspec.Struct, frozen=True):
    """Resolved transport knobs; durations are seconds, ``0`` meaning "off" where noted.

    Attributes:
        dial_timeout: connect deadline (``BUBU_GRPC_DIAL_TIMEOUT``, 10 s).
        max_recv_bytes: largest inbound message (``BUBU_GRPC_CLIENT_MAX_RECV_BYTES``, 10 MiB).
        max_send_bytes: largest outbound message (``BUBU_GRPC_CLIENT_MAX_SEND_BYTES``, 10 MiB).
        buffer_size: inbound, outbound and control queue depth
            (``BUBU_GRPC_CHANNEL_BUFFER_SIZE``, 16).
        message_timeout: per-send timeout and startup-handshake timeout
            (``BUBU_GRPC_MESSAGE_TIMEOUT``, 30 s).
        channel_send_timeout: ``0`` blocks; ``> 0`` drops an inbound message the engram does not
            take in time, without a receipt (``BUBU_GRPC_CHANNEL_SEND_TIMEOUT``).
        hang_timeout: ``0`` off; ``> 0`` ends the session when no traffic is seen
            (``BUBU_GRPC_HANG_TIMEOUT``).
        heartbeat_interval: Data heartbeat, clamped below ``message_timeout``
            (``BUBU_GRPC_HEARTBEAT_INTERVAL``, 10 s).
        control_heartbeat_interval: Control heartbeat (``BUBU_TRANSPORT_HEARTBEAT_INTERVAL``, 30 s).
        reconnect_base_backoff: first reconnect delay (``BUBU_GRPC_RECONNECT_BASE_BACKOFF``, 0.5 s).
        reconnect_max_backoff: backoff cap (``BUBU_GRPC_RECONNECT_MAX_BACKOFF``, 30 s).
        reconnect_max_retries: retries after the first attempt; negative is unlimited
            (``BUBU_GRPC_RECONNECT_MAX_RETRIES``, 10).
        security_mode: ``""`` or ``"tls"``; anything else fails the dial
            (``BUBU_TRANSPORT_SECURITY_MODE``).
        trace_propagation: inject W3C context into packet metadata (``BUBU_TRACE_PROPAGATION``).
    """

    dial_timeout: float = 10.0
    max_recv_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_send_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    buffer_size: int = 16
    message_timeout: float = 30.0
    channel_send_timeout: float = 0.0
    hang_timeout: float = 0.0
    heartbeat_interval: float = 10.0
    control_heartbeat_interval: float = 30.0
    reconnect_base_backoff: float = 0.5
    reconnect_max_backoff: float = 30.0
    reconnect_max_retries: int = 10
    security_mode: str = ""
    trace_propagation: bool = True


def _retries(raw: str | None, default: int) -> int:
    # Go: negative is unlimited, N permits N retries, a non-integer is ignored
    # (docs/contract/stream.md#environment).
    text = go_trim_space(raw) if raw is not None else ""
    if not text:
        return default
    try:
        return parse_atoi(text)
    except GoParseError:
        logger.warning(
            "ignoring invalid env var integer, using default",
            extra={"env": RECONNECT_MAX_RETRIES, "value": text, "default": default},
        )
        return default


def _bool(raw: str | None, default: bool) -> bool:
    # The observability bool set; an invalid value warns and keeps the default
    # (docs/contract/runtime-environment.md#effects-signals-logs).
    if raw is None or not go_trim_space(raw):
        return default
    lowered = go_trim_space(raw).lower()
    if lowered in BOOL_TRUE:
        return True
    if lowered in BOOL_FALSE:
        return False
    logger.warning(
        "ignoring invalid env var boolean, using default",
        extra={"env": TRACE_PROPAGATION, "value": raw, "default": default},
    )
    return default


def resolve_settings(env: EnvSource) -> TransportSettings:
    """Resolve every knob from ``env`` (usually an ``EnvResolver``).

    Args:
        env: where values come from; binding overrides should already be layered in.

    Returns:
        The settings, with Go defaults for unset, invalid or non-positive values.
    """
    d = TransportSettings()
    message_timeout = env_dur(MESSAGE_TIMEOUT, env.get(MESSAGE_TIMEOUT), d.message_timeout)
    heartbeat = env_dur(HEARTBEAT_INTERVAL, env.get(HEARTBEAT_INTERVAL), d.heartbeat_interval)
    if heartbeat >= message_timeout:
        # Go clamps the Data heartbeat to messageTimeout - 1ns so a heartbeat always lands
        # before a peer's message timeout (TestResolvePublishHeartbeatIntervalClamps...).
        heartbeat = message_timeout - _ONE_NS
    base = env_dur(
        RECONNECT_BASE_BACKOFF, env.get(RECONNECT_BASE_BACKOFF), d.reconnect_base_backoff
    )
    cap = env_dur(RECONNECT_MAX_BACKOFF, env.get(RECONNECT_MAX_BACKOFF), d.reconnect_max_backoff)
    return TransportSettings(
        dial_timeout=env_dur(DIAL_TIMEOUT, env.get(DIAL_TIMEOUT), d.dial_timeout),
        max_recv_bytes=env_int(
            CLIENT_MAX_RECV_BYTES, env.get(CLIENT_MAX_RECV_BYTES), d.max_recv_bytes
        ),
        max_send_bytes=env_int(
            CLIENT_MAX_SEND_BYTES, env.get(CLIENT_MAX_SEND_BYTES), d.max_send_bytes
        ),
        buffer_size=env_int(CHANNEL_BUFFER_SIZE, env.get(CHANNEL_BUFFER_SIZE), d.buffer_size),
        message_timeout=message_timeout,
        channel_send_timeout=_off_or_dur(CHANNEL_SEND_TIMEOUT, env.get(CHANNEL_SEND_TIMEOUT)),
        hang_timeout=_off_or_dur(HANG_TIMEOUT, env.get(HANG_TIMEOUT)),
        heartbeat_interval=heartbeat,
        control_heartbeat_interval=env_dur(
            CONTROL_HEARTBEAT_INTERVAL,
            env.get(CONTROL_HEARTBEAT_INTERVAL),
            d.control_heartbeat_interval,
        ),
        reconnect_base_backoff=base,
        reconnect_max_backoff=cap,
        reconnect_max_retries=_retries(env.get(RECONNECT_MAX_RETRIES), d.reconnect_max_retries),
        security_mode=go_trim_space(env.get(SECURITY_MODE) or ""),
        trace_propagation=_bool(env.get(TRACE_PROPAGATION), d.trace_propagation),
    )


def _off_or_dur(name: str, raw: str | None) -> float:
    # "0" (or unset) means off; env_dur would warn about the documented "0", so skip it here.
    text = go_trim_space(raw) if raw is not None else ""
    if not text or text in {"0", "+0", "-0"}:
        return 0.0
    return env_dur(name, text, 0.0)
