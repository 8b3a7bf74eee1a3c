"""``BUBU_TRANSPORT_BINDING``: the binding envelope, its checks and its env overrides.

See docs/contract/stream.md#non-protobuf-contracts and docs/contract/stream.md#environment.
The value is a JSON envelope
``{"name", "namespace", "binding": <protojson BindingInfo>}``; ``binding.payload`` (base64) is the
raw JSON of the TransportBinding's settings, whose ``env`` object overrides process variables.
Pure: the caller passes the raw value and an :class:`~bubu._runtime.sources.EnvSource`; this
module never reads ``os.environ`` and never imports protobuf (protojson is decoded by hand).
"""

from __future__ import annotations

import base64
import binascii
import json
import math
from collections.abc import Iterable, Mapping
from typing import Any

import msgspec

from bubu._runtime.parse import go_trim_space
from bubu._runtime.sources import EnvSource
from bubu.errors import ContractError

__all__ = [
    "BINDING_ENV",
    "MAX_BINDING_BYTES",
    "PROTOCOL_VERSION",
    "Binding",
    "BindingInfo",
    "EnvResolver",
    "parse_binding",
    "validate_protocol_version",
]

BINDING_ENV = "BUBU_TRANSPORT_BINDING"
PROTOCOL_VERSION = "1.0.0"
"""The only transport protocol version spoken (core ``ProtocolVersion``; exact match)."""
MAX_BINDING_BYTES = 1024 * 1024
"""Largest accepted ``BUBU_TRANSPORT_BINDING`` value (core ``maxBindingPayloadBytes``)."""

# BindingInfo buf.validate limits (docs/contract/stream.md#validation): field -> max length.
_STRING_LIMITS = {"transportRef": 128, "driver": 128, "endpoint": 2048, "protocolVersion": 128}
_LIST_LIMITS = {"audioCodecs": (32, 64), "videoCodecs": (32, 64), "binaryTypes": (32, 255)}
_MAX_PAYLOAD = 1024 * 1024
# protojson accepts the JSON (lowerCamel) name and the proto (snake_case) name of each field.
_ALIASES = {
    "transport_ref": "transportRef",
    "audio_codecs": "audioCodecs",
    "video_codecs": "videoCodecs",
    "binary_types": "binaryTypes",
    "protocol_version": "protocolVersion",
}


def _fail(message: str) -> ContractError:
    return ContractError(message, variable=BINDING_ENV)


# Frozen msgspec Structs rather than frozen dataclasses: the same fields, constructor, repr,
# equality and immutability, defined in a tenth of the time (a streaming engram's start,
# docs/performance.md).
class BindingInfo(msgspec.Struct, frozen=True):
    """The decoded ``transport.v1.BindingInfo`` of a binding."""

    transport_ref: str = ""
    driver: str = ""
    endpoint: str = ""
    audio_codecs: tuple[str, ...] = ()
    video_codecs: tuple[str, ...] = ()
    payload: bytes = b""
    binary_types: tuple[str, ...] = ()
    protocol_version: str = ""


class Binding(msgspec.Struct, frozen=True):
    """A parsed ``BUBU_TRANSPORT_BINDING`` envelope.

    Attributes:
        name: the TransportBinding name (required).
        namespace: its namespace; may be empty (see :meth:`with_namespace`).
        info: the BindingInfo.
        env_overrides: ``payload.env`` rendered as strings, consulted before process env.
        settings: the whole decoded ``payload`` object (``flowControl``, ``delivery``, ...).
    """

    name: str
    namespace: str
    info: BindingInfo
    env_overrides: Mapping[str, str] = msgspec.field(default_factory=dict)
    settings: Mapping[str, Any] = msgspec.field(default_factory=dict)

    @property
    def endpoint(self) -> str:
        """The connector endpoint, trimmed."""
        return go_trim_space(self.info.endpoint)

    @property
    def reference(self) -> str:
        """``<namespace>/<name>``, or ``<name>`` without a namespace (Control header value)."""
        return f"{self.namespace}/{self.name}" if self.namespace else self.name

    def with_namespace(self, namespace: str) -> Binding:
        """Return a copy whose namespace is ``namespace`` when the envelope had none."""
        if self.namespace or not namespace:
            return self
        return Binding(self.name, namespace, self.info, self.env_overrides, self.settings)


class EnvResolver:
    """Go ``envResolver``: binding ``payload.env`` first (non-blank values), then the source.

    Args:
        overrides: the binding's env overrides.
        source: the process environment (or a test mapping).
    """

    __slots__ = ("_overrides", "_source")

    def __init__(self, overrides: Mapping[str, str], source: EnvSource) -> None:
        self._overrides = overrides
        self._source = source

    def get(self, name: str) -> str | None:
        """Return the effective value of ``name``, or ``None`` when unset everywhere."""
        value = self._overrides.get(name)
        if value is not None and go_trim_space(value):
            return value
        return self._source.get(name)

    def items(self) -> Iterable[tuple[str, str]]:
        """Return every effective variable (overrides win)."""
        merged = dict(self._source.items())
        merged.update((k, v) for k, v in self._overrides.items() if go_trim_space(v))
        return list(merged.items())


def validate_protocol_version(version: str) -> None:
    """Check a peer's protocol version against ours (core ``ValidateProtocolVersion``).

    Raises:
        ContractError: the version is not exactly ``1.0.0``; the text contains "protocol
            mismatch"-class wording, which the reconnect loop never retries.
    """
    if version != PROTOCOL_VERSION:
        raise _fail(
            "invalid transport protocol version in binding: unsupported transport protocol "
            f"version {version!r} (want {PROTOCOL_VERSION!r}; protocol mismatch)"
        )


def go_sprint(value: Any) -> str:
    """Render a decoded JSON value the way Go's ``fmt.Sprint`` does (env override values)."""
    if isinstance(value, str):
        return value
    if value is None:
        return "<nil>"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        number = float(value)
        if math.isfinite(number) and number == int(number) and abs(number) < 1e21:
            return str(int(number))
        text = repr(number)
        if "e" in text:
            mantissa, exponent = text.split("e")
            sign = "-" if exponent.startswith("-") else "+"
            return f"{mantissa}e{sign}{abs(int(exponent)):02d}"
        return text
    if isinstance(value, list):
        return "[" + " ".join(go_sprint(v) for v in value) + "]"
    if isinstance(value, dict):
        inner = " ".join(f"{k}:{go_sprint(value[k])}" for k in sorted(value))
        return f"map[{inner}]"
    return str(value)


def _decode_binding_info(raw: Any) -> BindingInfo:
    if not isinstance(raw, dict):
        raise _fail("decode binding info: binding must be a JSON object")
    fields: dict[str, Any] = {}
    for key, value in raw.items():
        fields[_ALIASES.get(str(key), str(key))] = value
    strings: dict[str, str] = {}
    for name, limit in _STRING_LIMITS.items():
        value = fields.get(name)
        if value is None:
            value = ""
        if not isinstance(value, str):
            raise _fail(f"decode binding info: {name} must be a string")
        if len(value) > limit:
            raise _fail(f"decode binding info: {name} longer than {limit} characters")
        strings[name] = value
    lists: dict[str, tuple[str, ...]] = {}
    for name, (max_items, max_len) in _LIST_LIMITS.items():
        value = fields.get(name)
        if value is None:
            value = []
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise _fail(f"decode binding info: {name} must be a list of strings")
        if len(value) > max_items or any(len(v) > max_len for v in value):
            raise _fail(f"decode binding info: {name} exceeds {max_items} items of {max_len}")
        lists[name] = tuple(value)
    payload_text = fields.get("payload") or ""
    if not isinstance(payload_text, str):
        raise _fail("decode binding info: payload must be base64 text")
    try:
        # protojson accepts standard and URL-safe base64, with or without padding.
        padded = payload_text + "=" * (-len(payload_text) % 4)
        payload = base64.b64decode(padded.replace("-", "+").replace("_", "/"), validate=True)
    except (binascii.Error, ValueError):
        raise _fail("decode binding info: payload is not valid base64") from None
    if len(payload) > _MAX_PAYLOAD:
        raise _fail(f"decode binding info: payload exceeds {_MAX_PAYLOAD} bytes")
    return BindingInfo(
        transport_ref=strings["transportRef"],
        driver=strings["driver"],
        endpoint=strings["endpoint"],
        audio_codecs=lists["audioCodecs"],
        video_codecs=lists["videoCodecs"],
        payload=payload,
        binary_types=lists["binaryTypes"],
        protocol_version=strings["protocolVersion"],
    )


def _decode_settings(payload: bytes) -> tuple[dict[str, Any], dict[str, str]]:
    if not payload.strip():
        return {}, {}
    try:
        settings = json.loads(payload)
    except ValueError:
        # Go ignores settings it cannot decode when resolving env overrides.
        return {}, {}
    if not isinstance(settings, dict):
        return {}, {}
    env = settings.get("env")
    overrides: dict[str, str] = {}
    if isinstance(env, dict):
        for key, value in env.items():
            rendered = go_sprint(value)
            if go_trim_space(rendered) and value is not None:
                overrides[str(key)] = rendered
    return settings, overrides


def parse_binding(value: str | None) -> Binding:
    """Parse and check a ``BUBU_TRANSPORT_BINDING`` value.

    Args:
        value: the raw variable.

    Returns:
        The binding, with its env overrides decoded.

    Raises:
        ContractError: missing, oversized, not a JSON envelope, no ``name`` or ``binding``
            ("binding envelope name is required"), a protocol version other than ``1.0.0``, or a
            missing endpoint ("transport binding missing endpoint"). None of these is retried.
    """
    text = go_trim_space(value or "")
    if not text:
        raise _fail("transport binding missing: BUBU_TRANSPORT_BINDING is empty")
    if len(text.encode("utf-8", "surrogatepass")) > MAX_BINDING_BYTES:
        raise _fail(f"binding payload exceeds max size of {MAX_BINDING_BYTES} bytes")
    if not text.startswith("{"):
        raise _fail("binding payload must be a JSON envelope")
    try:
        envelope = json.loads(text)
    except ValueError as exc:
        raise _fail(f"unmarshal binding envelope: {exc}") from None
    if not isinstance(envelope, dict):
        raise _fail("unmarshal binding envelope: not a JSON object")
    name = envelope.get("name")
    if not isinstance(name, str) or not go_trim_space(name):
        raise _fail("binding envelope name is required")
    raw_info = envelope.get("binding")
    if raw_info is None or raw_info == "":
        raise _fail("binding envelope binding payload is required")
    namespace = envelope.get("namespace") or ""
    if not isinstance(namespace, str):
        raise _fail("unmarshal binding envelope: namespace must be a string")
    info = _decode_binding_info(raw_info)
    validate_protocol_version(info.protocol_version)
    if not go_trim_space(info.endpoint):
        raise _fail("transport binding missing endpoint")
    settings, overrides = _decode_settings(info.payload)
    return Binding(
        name=go_trim_space(name),
        namespace=go_trim_space(namespace),
        info=info,
        env_overrides=overrides,
        settings=settings,
    )
