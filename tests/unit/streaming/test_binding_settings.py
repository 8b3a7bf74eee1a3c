"""BUBU_TRANSPORT_BINDING parsing and the transport knobs.

See docs/contract/stream.md#non-protobuf-contracts, docs/contract/stream.md#environment.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from bubu._runtime.binding import EnvResolver, go_sprint, parse_binding
from bubu._runtime.sources import MappingSource
from bubu._runtime.transport import TransportSettings, resolve_settings
from bubu.errors import ContractError


def envelope(info: dict[str, Any] | None = None, **top: Any) -> str:
    binding = {"driver": "demo", "endpoint": "connector:9000", "protocolVersion": "1.0.0"}
    binding.update(info or {})
    doc: dict[str, Any] = {"name": "binding-a", "namespace": "demo", "binding": binding}
    doc.update(top)
    return json.dumps(doc)


def test_parses_the_go_envelope() -> None:
    b = parse_binding(envelope())
    assert (b.name, b.namespace, b.endpoint) == ("binding-a", "demo", "connector:9000")
    assert b.info.driver == "demo" and b.reference == "demo/binding-a"


def test_accepts_snake_case_and_url_safe_base64_payload() -> None:
    payload = base64.urlsafe_b64encode(b'{"env":{"K":"v"}}').decode().rstrip("=")
    raw = json.dumps(
        {
            "name": "b",
            "binding": {
                "endpoint": "unix:///tmp/c.sock",
                "protocol_version": "1.0.0",
                "payload": payload,
            },
        }
    )
    b = parse_binding(raw)
    assert b.env_overrides == {"K": "v"} and b.reference == "b"
    assert b.with_namespace("ns").reference == "ns/b"


def test_env_overrides_render_like_go_fmt_sprint_and_win_over_process_env() -> None:
    settings = {"env": {"A": 5, "B": 1.5, "C": True, "D": " ", "E": "x", "F": 1e21}}
    payload = base64.b64encode(json.dumps(settings).encode()).decode()
    b = parse_binding(envelope({"payload": payload}))
    assert b.env_overrides == {"A": "5", "B": "1.5", "C": "true", "E": "x", "F": "1e+21"}
    resolver = EnvResolver(b.env_overrides, MappingSource({"A": "9", "D": "proc", "Z": "z"}))
    assert resolver.get("A") == "5"
    assert resolver.get("D") == "proc"  # blank override falls through
    assert resolver.get("Z") == "z" and resolver.get("missing") is None
    assert b.settings["env"]["A"] == 5


@pytest.mark.parametrize(
    ("value", "match"),
    [
        (envelope({"protocolVersion": "9.9.9"}), "unsupported transport protocol version"),
        (envelope({"protocolVersion": ""}), "protocol mismatch"),
        (envelope(name=" "), "binding envelope name is required"),
        (envelope(binding=None), "binding payload is required"),
        (json.dumps({"driver": "x", "endpoint": "e", "protocolVersion": "1.0.0"}), "name"),
        ("binding-legacy", "must be a JSON envelope"),
        ("{not json", "unmarshal binding envelope"),
        ("   ", "transport binding missing"),
        (envelope({"endpoint": " "}), "transport binding missing endpoint"),
        (envelope({"payload": "!!"}), "base64"),
        (envelope({"driver": "d" * 129}), "driver"),
        ("{" + " " * (1024 * 1024) + "}", "exceeds max size"),
    ],
)
def test_rejections_are_contract_errors(value: str, match: str) -> None:
    with pytest.raises(ContractError, match=match) as info:
        parse_binding(value)
    assert info.value.variable == "BUBU_TRANSPORT_BINDING"
    assert info.value.retryable is False


def test_go_sprint_of_composites() -> None:
    assert go_sprint([1, "a"]) == "[1 a]"
    assert go_sprint({"b": 1, "a": 2}) == "map[a:2 b:1]"
    assert go_sprint(None) == "<nil>"


def test_settings_defaults_match_go() -> None:
    assert resolve_settings(MappingSource({})) == TransportSettings(
        dial_timeout=10.0,
        max_recv_bytes=10485760,
        max_send_bytes=10485760,
        buffer_size=16,
        message_timeout=30.0,
        channel_send_timeout=0.0,
        hang_timeout=0.0,
        heartbeat_interval=10.0,
        control_heartbeat_interval=30.0,
        reconnect_base_backoff=0.5,
        reconnect_max_backoff=30.0,
        reconnect_max_retries=10,
        security_mode="",
        trace_propagation=True,
    )


def test_settings_from_env() -> None:
    s = resolve_settings(
        MappingSource(
            {
                "BUBU_GRPC_RECONNECT_BASE_BACKOFF": "750ms",
                "BUBU_GRPC_RECONNECT_MAX_BACKOFF": "45s",
                "BUBU_GRPC_RECONNECT_MAX_RETRIES": "5",
                "BUBU_GRPC_CHANNEL_BUFFER_SIZE": "32",
                "BUBU_GRPC_HEARTBEAT_INTERVAL": "7s",
                "BUBU_GRPC_CHANNEL_SEND_TIMEOUT": "250ms",
                "BUBU_GRPC_HANG_TIMEOUT": "1m",
                "BUBU_GRPC_DIAL_TIMEOUT": "3s",
                "BUBU_GRPC_CLIENT_MAX_RECV_BYTES": "1024",
                "BUBU_TRANSPORT_HEARTBEAT_INTERVAL": "5s",
                "BUBU_TRANSPORT_SECURITY_MODE": " tls ",
                "BUBU_TRACE_PROPAGATION": "off",
            }
        )
    )
    assert (s.reconnect_base_backoff, s.reconnect_max_backoff, s.reconnect_max_retries) == (
        0.75,
        45.0,
        5,
    )
    assert s.buffer_size == 32 and s.heartbeat_interval == 7.0
    assert s.channel_send_timeout == 0.25 and s.hang_timeout == 60.0
    assert s.dial_timeout == 3.0 and s.max_recv_bytes == 1024
    assert s.control_heartbeat_interval == 5.0
    assert s.security_mode == "tls" and s.trace_propagation is False


def test_heartbeat_is_clamped_below_the_message_timeout() -> None:
    s = resolve_settings(MappingSource({"BUBU_GRPC_HEARTBEAT_INTERVAL": "45s"}))
    assert s.heartbeat_interval == pytest.approx(30.0 - 1e-9)
    assert s.heartbeat_interval < s.message_timeout


@pytest.mark.parametrize("value", ["abc", "-1s", "0", ""])
def test_invalid_or_non_positive_values_fall_back(value: str) -> None:
    s = resolve_settings(
        MappingSource({"BUBU_GRPC_MESSAGE_TIMEOUT": value, "BUBU_GRPC_CHANNEL_BUFFER_SIZE": value})
    )
    assert s.message_timeout == 30.0 and s.buffer_size == 16


def test_retries_negative_is_unlimited_and_garbage_is_ignored() -> None:
    assert (
        resolve_settings(
            MappingSource({"BUBU_GRPC_RECONNECT_MAX_RETRIES": "-1"})
        ).reconnect_max_retries
        == -1
    )
    assert (
        resolve_settings(
            MappingSource({"BUBU_GRPC_RECONNECT_MAX_RETRIES": "1.5"})
        ).reconnect_max_retries
        == 10
    )
    assert (
        resolve_settings(
            MappingSource({"BUBU_GRPC_RECONNECT_MAX_RETRIES": "0"})
        ).reconnect_max_retries
        == 0
    )


def test_hang_timeout_zero_is_off() -> None:
    assert resolve_settings(MappingSource({"BUBU_GRPC_HANG_TIMEOUT": "0"})).hang_timeout == 0.0
