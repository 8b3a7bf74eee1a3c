"""Template schemas from the code: ``bubu schema`` and the generator ``bubu check``/``init`` share.

An ``EngramTemplate`` carries ``configSchema``, ``inputSchema``, ``outputSchema`` and
``secretSchema``; an ``ImpulseTemplate`` carries ``configSchema`` and ``secretSchema``
(docs/deploying.md). They are generated from the component's msgspec types:

* ``configSchema``: the ``ConfigT`` of ``BatchEngram[C, I]``, ``StreamingEngram[C]`` or
  ``Impulse[C]``;
* ``inputSchema``: the ``InputsT`` of a batch engram, or a streaming engram's ``inputs_type``
  class attribute (the JSON payload it expects);
* ``outputSchema``: the ``output_type`` class attribute (what ``Result`` or the published JSON
  payload holds);
* ``secretSchema``: the ``secret_schema`` class attribute, a Struct whose fields are the logical
  secret names; each field's type is a Struct whose field names are the keys expected in the
  Kubernetes Secret. A field without a default is a required secret.

The schemas are **structural** in the Kubernetes sense, so the apiserver accepts them as a CRD's
``openAPIV3Schema`` and the operator can apply them to a typed API: every node has a ``type``
(or ``x-kubernetes-preserve-unknown-fields`` / ``x-kubernetes-int-or-string``), there is no
``$ref``, ``Optional[X]`` is ``nullable``, and keywords OpenAPI v3.0 lacks are translated
(``exclusiveMinimum: 3`` becomes ``minimum: 3, exclusiveMinimum: true``) or dropped.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from typing import Any, Final

import msgspec

from bubu.engram import BatchEngram, Impulse, StreamingEngram, engram_types

__all__ = [
    "SchemaError",
    "component_kind",
    "component_schemas",
    "secret_schema",
    "structural_schema",
]

# The JSONSchemaProps fields of apiextensions.k8s.io/v1 that we emit; anything else msgspec
# produces (contentEncoding, prefixItems, $defs...) is translated or dropped.
_KEEP: Final = frozenset(
    {
        "title",
        "description",
        "default",
        "maxLength",
        "minLength",
        "pattern",
        "maxItems",
        "minItems",
        "uniqueItems",
        "multipleOf",
        "maxProperties",
        "minProperties",
        "example",
    }
)
# Formats the apiserver knows (k8s.io/kube-openapi strfmt); others draw a warning there.
_FORMATS: Final = frozenset(
    {
        "bsonobjectid",
        "uri",
        "email",
        "hostname",
        "ipv4",
        "ipv6",
        "cidr",
        "mac",
        "uuid",
        "uuid3",
        "uuid4",
        "uuid5",
        "isbn",
        "isbn10",
        "isbn13",
        "creditcard",
        "ssn",
        "hexcolor",
        "rgbcolor",
        "byte",
        "password",
        "date",
        "duration",
        "datetime",
        "date-time",
    }
)
_ANY: Final = "x-kubernetes-preserve-unknown-fields"


class SchemaError(Exception):
    """A component's types cannot be turned into a template schema (the message says why)."""


def _json_type(value: Any) -> str | None:
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    return None


class _Converter:
    def __init__(self, defs: Mapping[str, Any]) -> None:
        self.defs = defs

    def convert(self, node: Mapping[str, Any], stack: tuple[str, ...] = ()) -> dict[str, Any]:
        annotations = {k: node[k] for k in ("title", "description") if k in node}
        ref = node.get("$ref")
        if isinstance(ref, str):
            name = ref.rsplit("/", 1)[-1]
            if name in stack:
                # A recursive type has no structural form: accept any value at the cycle.
                return {**annotations, _ANY: True}
            target = self.defs.get(name)
            if target is None:
                raise SchemaError(f"unresolved schema reference {ref!r}")
            resolved = self.convert(target, (*stack, name))
            resolved.update(annotations)
            return resolved
        branches = node.get("anyOf") or node.get("oneOf")
        if branches is not None:
            return self._union(node, branches, annotations, stack)
        if "const" in node:
            node = {**node, "enum": [node["const"]]}
        kind = node.get("type")
        nullable = False
        if isinstance(kind, list):
            nullable = "null" in kind
            kinds = [k for k in kind if k != "null"]
            kind = kinds[0] if len(kinds) == 1 else None
            if len(kinds) > 1:
                return {**annotations, _ANY: True, **({"nullable": True} if nullable else {})}
        if kind is None and "enum" in node:
            values = [v for v in node["enum"] if v is not None]
            nullable = nullable or len(values) != len(node["enum"])
            types = {_json_type(v) for v in values}
            if len(types) == 1 and None not in types:
                kind = types.pop()
            else:
                return {**annotations, _ANY: True}
        if kind is None:
            return {**annotations, _ANY: True}
        if kind == "null":
            return {**annotations, _ANY: True, "nullable": True}
        out: dict[str, Any] = {"type": kind}
        for key, value in node.items():
            if key in _KEEP:
                out[key] = value
        if nullable:
            out["nullable"] = True
        if "enum" in node:
            out["enum"] = [v for v in node["enum"] if v is not None]
        fmt = node.get("format")
        if isinstance(fmt, str) and fmt in _FORMATS:
            out["format"] = fmt
        for bound, flag in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
            if bound in node:
                out[flag] = node[bound]
                out[bound] = True
            elif flag in node:
                out[flag] = node[flag]
        if kind == "object":
            self._object(node, out, stack)
        elif kind == "array":
            items = node.get("items")
            if isinstance(items, Mapping) and items:
                out["items"] = self.convert(items, stack)
            else:
                # Tuples (prefixItems) and bare lists: any item.
                out["items"] = {_ANY: True}
            if "prefixItems" in node and items is False:
                out["maxItems"] = len(node["prefixItems"])
        if "default" in out and out["default"] is None:
            # A null default means "absent"; the apiserver refuses it on a non-nullable field.
            del out["default"]
        return out

    def _object(self, node: Mapping[str, Any], out: dict[str, Any], stack: tuple[str, ...]) -> None:
        properties = node.get("properties")
        extra = node.get("additionalProperties")
        if properties:
            out["properties"] = {k: self.convert(v, stack) for k, v in properties.items()}
            if node.get("required"):
                out["required"] = list(node["required"])
            # ``additionalProperties: false`` is not allowed in a structural schema; unknown
            # fields are pruned by the apiserver (and refused by the SDK's strict decode).
            if extra is True or (isinstance(extra, Mapping) and extra):
                out[_ANY] = True
        elif isinstance(extra, Mapping) and extra:
            out["additionalProperties"] = self.convert(extra, stack)
        elif extra is not False:
            out[_ANY] = True

    def _union(
        self,
        node: Mapping[str, Any],
        branches: list[Any],
        annotations: dict[str, Any],
        stack: tuple[str, ...],
    ) -> dict[str, Any]:
        rest = [b for b in branches if not (isinstance(b, Mapping) and b.get("type") == "null")]
        nullable = len(rest) != len(branches)
        extra = {"nullable": True} if nullable else {}
        if len(rest) == 1:
            out = self.convert(rest[0], stack)
            if _ANY in out and "type" not in out:
                out.pop("nullable", None)
                return {**out, **annotations}
            out.update(extra)
            out.update(annotations)
            if node.get("default") is not None:
                out["default"] = node["default"]
            return out
        kinds = {b.get("type") for b in rest if isinstance(b, Mapping)}
        if kinds == {"integer", "string"}:
            return {**annotations, "x-kubernetes-int-or-string": True, **extra}
        return {**annotations, _ANY: True}


def structural_schema(tp: Any) -> dict[str, Any]:
    """Return the structural OpenAPI v3 schema of a msgspec-supported type.

    Raises:
        SchemaError: the type is not supported by msgspec or a reference does not resolve.
    """
    try:
        raw = msgspec.json.schema(tp)
    except (TypeError, ValueError) as exc:
        raise SchemaError(f"{getattr(tp, '__qualname__', tp)!s}: {exc}") from None
    defs = raw.pop("$defs", {})
    return _Converter(defs).convert(raw)


def _object_schema(tp: Any, what: str) -> dict[str, Any]:
    if tp is None or tp is dict or tp is Any:
        return {"type": "object", _ANY: True}
    schema = structural_schema(tp)
    if schema.get("type") != "object":
        raise SchemaError(f"{what} must be a JSON object type (a Struct or dict), got {tp!r}")
    return schema


def _doc(tp: Any) -> str:
    doc = inspect.getdoc(tp) or ""
    first = doc.strip().split("\n\n", 1)[0]
    return " ".join(first.split())


def secret_schema(tp: Any) -> dict[str, Any]:
    """Return the ``secretSchema`` map from a Struct of logical secret names (see module doc).

    Raises:
        SchemaError: ``tp`` or one of its field types is not a msgspec Struct.
    """
    if not (inspect.isclass(tp) and issubclass(tp, msgspec.Struct)):
        raise SchemaError(f"secret_schema must be a msgspec Struct type, got {tp!r}")
    out: dict[str, Any] = {}
    info = msgspec.inspect.type_info(tp)
    assert isinstance(info, msgspec.inspect.StructType)
    for field in info.fields:
        keys_type: msgspec.inspect.Type = field.type
        nullable = isinstance(keys_type, msgspec.inspect.UnionType)
        if isinstance(keys_type, msgspec.inspect.UnionType):
            members = [t for t in keys_type.types if not isinstance(t, msgspec.inspect.NoneType)]
            keys_type = members[0] if len(members) == 1 else keys_type
        if not isinstance(keys_type, msgspec.inspect.StructType):
            raise SchemaError(
                f"secret_schema.{field.name}: the type must be a Struct listing the keys of the "
                f"Kubernetes Secret, got {getattr(field.type, '__class__', type).__name__}"
            )
        entry: dict[str, Any] = {}
        description = _doc(keys_type.cls)
        if description:
            entry["description"] = description
        entry["expectedKeys"] = [f.encode_name for f in keys_type.fields]
        entry["required"] = bool(field.required) and not nullable
        out[field.encode_name] = entry
    return out


def component_kind(component: Any) -> str:
    """Return ``batch``, ``streaming`` or ``impulse`` for an engram/impulse class or instance.

    Raises:
        SchemaError: it is none of the three.
    """
    cls = component if inspect.isclass(component) else type(component)
    if issubclass(cls, BatchEngram):
        return "batch"
    if issubclass(cls, StreamingEngram):
        return "streaming"
    if issubclass(cls, Impulse):
        return "impulse"
    raise SchemaError(f"{cls.__qualname__} is not a BatchEngram, StreamingEngram or Impulse")


def component_schemas(component: Any) -> dict[str, Any]:
    """Return the template schema fields generated from a component's types.

    Engrams get ``configSchema``, ``inputSchema``, ``outputSchema`` and ``secretSchema``;
    impulses get ``configSchema`` and ``secretSchema``. A schema the code does not declare is
    an object that accepts anything (``x-kubernetes-preserve-unknown-fields``), and an engram
    without ``secret_schema`` has an empty ``secretSchema``.

    Raises:
        SchemaError: a declared type has no JSON object schema.
    """
    cls = component if inspect.isclass(component) else type(component)
    kind = component_kind(cls)
    config_type, inputs_type = engram_types(cls)
    out: dict[str, Any] = {"configSchema": _object_schema(config_type, "ConfigT")}
    if kind != "impulse":
        if kind == "streaming":
            inputs_type = getattr(cls, "inputs_type", None)
        out["inputSchema"] = _object_schema(inputs_type, "the inputs type")
        out["outputSchema"] = _object_schema(getattr(cls, "output_type", None), "output_type")
    secrets = getattr(cls, "secret_schema", None)
    out["secretSchema"] = secret_schema(secrets) if secrets is not None else {}
    return out
