"""JSON Schema validation of inputs, outputs and config against template schemas.

What it does (the user-facing page is docs/templates.md#schemas):

* **Where the schema comes from.** ``EngramTemplate`` (cluster-scoped) named by the Engram's
  ``spec.templateRef.name``; the Engram is ``BUBU_ENGRAM_NAME`` or the StepRun's
  ``spec.engramRef.name``, in ``StepRunNamespace`` (else the pod namespace). Impulses read
  ``ImpulseTemplate`` through the Impulse (``BUBU_IMPULSE_NAME`` / ``_NAMESPACE``). The whole
  lookup runs under ``BUBU_K8S_OPERATION_TIMEOUT``.
* **Skips.** No namespace, no engram name, no template name, a client without ``get`` and a
  ``403 Forbidden`` each skip validation with one debug line on ``bubu.schema``; the operator's
  admission and status checks stay authoritative. The operator's engram-runner Role grants no
  ``get`` on Engrams or EngramTemplates (docs/deploying.md#engram-runner-role), so in a default
  cluster validation is skipped unless the Engram's ``execution.rbac`` (and, for the cluster-scoped
  template, a ClusterRole) grants it.
* **Errors.** A lookup failure (other than 403) is a ``SchemaLookupError``: retryable,
  ``execution_error``, exit class ``retry``. A document that fails is a terminal
  ``SchemaValidationError`` (``validation_error``) whose message lists every violation with its
  JSON path, and whose ``violations`` holds them as ``(path, message)`` pairs.
* **Normalisation** (``normalize_schema``): external ``$ref`` rejected, boolean ``required``
  lifted into the parent's list, the ``x-bubu-allow-runtime-refs`` and
  ``x-bubu-allow-template-strings`` opt-ins (inherited, not pushed into ``oneOf`` branches).
* **The validator** is ``jsonschema-rs`` (compiled Rust; docs/decisions/0003-schema-validator.md
  has the measurement), imported on first use; each distinct schema is compiled once per
  process. Where its draft semantics differ from Go's ``gojsonschema`` is listed in
  docs/differences.md and pinned by tests/interop/test_schema_vs_go.py.

Where it runs (``bubu._payloads`` and ``bubu._impulse``, docs/contract/storage.md):

* batch, after input templates and before typed decode: ``validate_inputs(inputs)``;
* batch, after ``process`` and before offload: ``validate_output(output)``;
* impulse, after config hydration: ``TemplateSchemas.for_impulse(...).validate_config(config)``.

Imports ``bubu._k8s`` (the ``KubeAPI`` protocol and resource kinds), ``bubu._runtime`` and
``bubu.errors`` only.
"""

from __future__ import annotations

import asyncio
import copy
import hashlib
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import msgspec

from bubu._k8s.resources import ENGRAM, ENGRAM_TEMPLATE, IMPULSE, IMPULSE_TEMPLATE, STEP_RUN, Kind
from bubu.errors import (
    ForbiddenError,
    KubernetesError,
    SchemaLookupError,
    SchemaValidationError,
)

__all__ = [
    "ALLOW_RUNTIME_REFS",
    "ALLOW_TEMPLATE_STRINGS",
    "TEMPLATE_STRING_PATTERN",
    "CompiledSchema",
    "TemplateSchemas",
    "compile_schema",
    "normalize_schema",
    "validate_document",
]

_log = logging.getLogger("bubu.schema")

ALLOW_RUNTIME_REFS = "x-bubu-allow-runtime-refs"
ALLOW_TEMPLATE_STRINGS = "x-bubu-allow-template-strings"
TEMPLATE_STRING_PATTERN = r"^\s*\$?\{\{[\s\S]+\}\}\s*$"

_STORAGE_REF = "$bubuStorageRef"
_CONFIGMAP_REF = "$bubuConfigMapRef"
_SECRET_REF = "$bubuSecretRef"
_STORAGE_KEYS = (
    "$bubuStorageRef",
    "$bubuStoragePath",
    "$bubuStorageContentType",
    "$bubuStorageSchema",
    "$bubuStorageSchemaVersion",
)


# --- normalisation (docs/templates.md#schemas) ----------------------------------------------------


@dataclass(frozen=True, slots=True)
class _OptIns:
    runtime_refs: bool = False
    template_strings: bool = False


def _reject_external_refs(node: Any, where: str) -> None:
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                ref = value.strip()
                if ref and not ref.startswith("#"):
                    quoted = msgspec.json.encode(ref).decode()
                    raise SchemaValidationError(
                        f"external schema reference {quoted} is not allowed (at {where})",
                        path=where,
                    )
            _reject_external_refs(value, f"{where}/{key}")
    elif isinstance(node, list):
        for i, item in enumerate(node):
            _reject_external_refs(item, f"{where}/{i}")


def _ref_object(key: str) -> dict[str, Any]:
    target = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "name": {"type": "string"},
            "key": {"type": "string"},
            "namespace": {"type": "string"},
            "format": {"type": "string", "enum": ["auto", "json", "raw"]},
        },
        "required": ["name", "key"],
    }
    return {
        "type": "object",
        "additionalProperties": False,
        "properties": {key: {"anyOf": [{"type": "string"}, target]}},
        "required": [key],
    }


def _runtime_ref_alternatives() -> list[dict[str, Any]]:
    storage = {
        "type": "object",
        "additionalProperties": False,
        "properties": {key: {"type": "string"} for key in _STORAGE_KEYS},
        "required": [_STORAGE_REF],
    }
    return [storage, _ref_object(_CONFIGMAP_REF), _ref_object(_SECRET_REF)]


def _template_string_schema() -> dict[str, Any]:
    return {"type": "string", "pattern": TEMPLATE_STRING_PATTERN}


def _is_runtime_ref_schema(schema: Mapping[str, Any]) -> bool:
    props = schema.get("properties")
    keys = (_STORAGE_REF, _CONFIGMAP_REF, _SECRET_REF)
    return isinstance(props, dict) and any(k in props for k in keys)


def _is_template_string_schema(schema: Mapping[str, Any]) -> bool:
    return schema.get("type") == "string" and schema.get("pattern") == TEMPLATE_STRING_PATTERN


def _has_alternative(schema: Mapping[str, Any], predicate: Any) -> bool:
    if predicate(schema):
        return True
    for key in ("anyOf", "oneOf", "allOf"):
        branches = schema.get(key)
        if isinstance(branches, list) and any(
            isinstance(b, dict) and _has_alternative(b, predicate) for b in branches
        ):
            return True
    return False


def _any_has(branches: list[Any], predicate: Any) -> bool:
    return any(isinstance(b, dict) and _has_alternative(b, predicate) for b in branches)


def _with_alternatives(schema: dict[str, Any], opts: _OptIns) -> Any:
    if not schema or not (opts.runtime_refs or opts.template_strings):
        return schema
    if _is_runtime_ref_schema(schema):
        return schema
    for key in ("anyOf", "oneOf"):
        branches = schema.get(key)
        if isinstance(branches, list):
            if opts.runtime_refs and not _any_has(branches, _is_runtime_ref_schema):
                branches.extend(_runtime_ref_alternatives())
            if opts.template_strings and not _any_has(branches, _is_template_string_schema):
                branches.append(_template_string_schema())
            return schema
    alternatives: list[Any] = [schema]
    if opts.runtime_refs:
        alternatives.extend(_runtime_ref_alternatives())
    if opts.template_strings:
        alternatives.append(_template_string_schema())
    wrapped: dict[str, Any] = {"anyOf": alternatives}
    for key in ("title", "description"):
        if key in schema:
            wrapped[key] = schema[key]
    return wrapped


def _normalize(node: Any, inherited: _OptIns) -> Any:
    if isinstance(node, list):
        return [_normalize(item, inherited) for item in node]
    if not isinstance(node, dict):
        return node
    runtime_refs = node.get(ALLOW_RUNTIME_REFS)
    template_strings = node.get(ALLOW_TEMPLATE_STRINGS)
    opts = _OptIns(
        runtime_refs if isinstance(runtime_refs, bool) else inherited.runtime_refs,
        template_strings if isinstance(template_strings, bool) else inherited.template_strings,
    )
    props = node.get("properties")
    if isinstance(props, dict):
        lifted: list[str] = []
        for name, child in list(props.items()):
            # A boolean ``required`` on a property is the old shorthand: lift it into the
            # parent's list, keeping the existing order (Go appends in map order; we use the
            # property order so messages are stable).
            if (
                isinstance(child, dict)
                and isinstance(child.get("required"), bool)
                and child.pop("required")
            ):
                lifted.append(name)
            props[name] = _normalize(child, opts)
        if lifted:
            existing = node.get("required")
            names = [n for n in existing or () if isinstance(n, str)]
            if not isinstance(existing, list):
                names = []
            names.extend(n for n in lifted if n not in names)
            node["required"] = names
    items = node.get("items")
    if isinstance(items, dict | list):
        node["items"] = _normalize(items, opts)
    for key in ("additionalProperties", "not"):
        if isinstance(node.get(key), dict):
            node[key] = _normalize(node[key], opts)
    for key in ("patternProperties", "definitions", "$defs"):
        mapping = node.get(key)
        if isinstance(mapping, dict):
            for name, child in list(mapping.items()):
                mapping[name] = _normalize(child, opts)
    for key in ("allOf", "anyOf", "oneOf"):
        branches = node.get(key)
        if isinstance(branches, list):
            # oneOf stays exclusive: inherited broadening is added once at the oneOf node,
            # never inside each branch (docs/templates.md#schemas).
            child_opts = _OptIns() if key == "oneOf" else opts
            node[key] = [_normalize(b, child_opts) for b in branches]
    return _with_alternatives(node, opts)


def normalize_schema(schema: Any) -> Any:
    """Return the normalised copy of a template schema; ``schema`` is not modified.

    See docs/templates.md#schemas.

    Raises:
        SchemaValidationError: the schema holds an external ``$ref`` (anything not starting
            with ``#``); the message names the reference and where it is.
    """
    _reject_external_refs(schema, "#")
    return _normalize(copy.deepcopy(schema), _OptIns())


# --- compiled validators -------------------------------------------------------------------------


def _json_path(parts: Sequence[str | int]) -> str:
    out = ["$"]
    for part in parts:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif part.isidentifier():
            out.append(f".{part}")
        else:
            out.append("[" + msgspec.json.encode(part).decode() + "]")
    return "".join(out)


def _describe(kind: Any) -> tuple[str, str | None]:
    """Message for one violation, built from the keyword and the schema's limits only.

    The document's value is never echoed: inputs can carry secrets or personal data, and
    the message ends up in the StepRun status. The second item is a property name to append
    to the path (``required``), when there is one.
    """
    name = kind.name
    info = kind.as_dict()
    messages: dict[str, Callable[[], str]] = {
        "type": lambda: "expected " + " or ".join(info.get("types") or []),
        "minLength": lambda: f"shorter than {info.get('limit')} characters",
        "maxLength": lambda: f"longer than {info.get('limit')} characters",
        "minItems": lambda: f"fewer than {info.get('limit')} items",
        "maxItems": lambda: f"more than {info.get('limit')} items",
        "minProperties": lambda: f"fewer than {info.get('limit')} properties",
        "maxProperties": lambda: f"more than {info.get('limit')} properties",
        "minimum": lambda: f"less than the minimum {info.get('limit')}",
        "maximum": lambda: f"greater than the maximum {info.get('limit')}",
        "exclusiveMinimum": lambda: f"not greater than {info.get('limit')}",
        "exclusiveMaximum": lambda: f"not less than {info.get('limit')}",
        "multipleOf": lambda: f"not a multiple of {info.get('multiple_of')}",
        "pattern": lambda: f"does not match the pattern {info.get('pattern')!r}",
        "format": lambda: f"not a valid {info.get('format')}",
        "enum": lambda: "not one of the allowed values",
        "const": lambda: "not the required constant",
        "uniqueItems": lambda: "items are not unique",
        "anyOf": lambda: "matches none of the allowed schemas (anyOf)",
        "oneOfNotValid": lambda: "matches none of the schemas (oneOf)",
        "oneOfMultipleValid": lambda: "matches more than one schema (oneOf)",
        "not": lambda: "matches a schema it must not match (not)",
        "falseSchema": lambda: "no value is allowed here",
        "contains": lambda: "no item matches the contains schema",
        "additionalItems": lambda: "additional items are not allowed",
        "propertyNames": lambda: "a property name is not allowed",
    }
    if name == "required":
        return "missing required property", str(info.get("property"))
    if name == "additionalProperties":
        extra = info.get("unexpected") or []
        return "additional properties are not allowed: " + ", ".join(map(str, extra)), None
    if name in messages:
        return messages[name](), None
    return f"fails {name}", None


class CompiledSchema:
    """One normalised schema compiled by jsonschema-rs; ``violations(doc)`` lists failures."""

    __slots__ = ("_validator", "schema")

    def __init__(self, schema: Any) -> None:
        import jsonschema_rs  # ~0.2 s to import: only when a template really has a schema

        self.schema = schema
        if _declares_draft(schema):
            validator_cls = jsonschema_rs.validator_cls_for(schema)
        elif _uses_draft4_booleans(schema):
            # gojsonschema's "hybrid" mode (no $schema) takes draft-4 boolean
            # exclusiveMinimum/Maximum; Draft 7 refuses them, Draft 4 reads them the same way.
            validator_cls = jsonschema_rs.Draft4Validator
        else:
            validator_cls = jsonschema_rs.Draft7Validator
        try:
            # Formats are assertions in gojsonschema; ask for the same here, including the
            # "uuid" format gojsonschema knows and Draft 7 does not.
            self._validator = validator_cls(
                schema, validate_formats=True, formats={"uuid": _is_uuid}
            )
        except (ValueError, jsonschema_rs.ValidationError) as exc:
            raise SchemaValidationError(f"invalid schema: {exc}") from None

    def violations(self, document: Any) -> list[tuple[str, str]]:
        """Every violation of ``document`` as ``(json_path, message)``, in validator order."""
        if self._validator.is_valid(document):
            return []
        out: list[tuple[str, str]] = []
        for error in self._validator.iter_errors(document):
            message, prop = _describe(error.kind)
            parts = list(error.instance_path)
            if prop is not None:
                parts.append(prop)
            out.append((_json_path(parts), message))
        return out


_UUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def _is_uuid(value: str) -> bool:
    return _UUID.match(value) is not None


def _uses_draft4_booleans(node: Any) -> bool:
    if isinstance(node, dict):
        if any(isinstance(node.get(k), bool) for k in ("exclusiveMinimum", "exclusiveMaximum")):
            return True
        return any(_uses_draft4_booleans(v) for v in node.values())
    if isinstance(node, list):
        return any(_uses_draft4_booleans(v) for v in node)
    return False


def _declares_draft(schema: Any) -> bool:
    return isinstance(schema, dict) and isinstance(schema.get("$schema"), str)


_CACHE_SIZE = 256
_cache: OrderedDict[bytes, CompiledSchema] = OrderedDict()
_cache_lock = threading.Lock()


def compile_schema(schema: Any) -> CompiledSchema:
    """Normalise and compile ``schema`` once per process (keyed by its canonical JSON).

    Raises:
        SchemaValidationError: an external ``$ref`` or a schema jsonschema-rs refuses.
    """
    key = hashlib.sha256(msgspec.json.encode(schema, order="sorted")).digest()
    with _cache_lock:
        hit = _cache.get(key)
        if hit is not None:
            _cache.move_to_end(key)
            return hit
    compiled = CompiledSchema(normalize_schema(schema))
    with _cache_lock:
        _cache[key] = compiled
        if len(_cache) > _CACHE_SIZE:
            _cache.popitem(last=False)
    return compiled


def validate_document(document: Any, schema: Any, schema_name: str) -> None:
    """Validate ``document`` against ``schema``; ``schema_name`` reads ``EngramTemplate x inputs``.

    Raises:
        SchemaValidationError: with every violation; the message is
            ``object is invalid against <schema_name> schema: [<path>: <why>; ...]``.
    """
    try:
        compiled = compile_schema(schema)
    except SchemaValidationError as exc:
        raise SchemaValidationError(
            f"error validating against {schema_name} schema: failed to normalize schema: {exc}",
            path=exc.path,
        ) from None
    found = compiled.violations(document)
    if found:
        listed = "; ".join(f"{path}: {why}" for path, why in found)
        raise SchemaValidationError(
            f"object is invalid against {schema_name} schema: [{listed}]",
            path=found[0][0],
            violations=tuple(found),
        )


# --- template lookup ------------------------------------------------------------------------


def _spec_schema(template: Mapping[str, Any], field: str) -> Any:
    spec = template.get("spec")
    schema = spec.get(field) if isinstance(spec, Mapping) else None
    # An empty object is "no schema" for Go too (len(Raw) == 0 only for absent, but `{}`
    # accepts everything, so skipping it changes no outcome).
    return schema if isinstance(schema, dict) and schema else None


def _ref_name(obj: Mapping[str, Any], field: str) -> str:
    spec = obj.get("spec")
    ref = spec.get(field) if isinstance(spec, Mapping) else None
    name = ref.get("name") if isinstance(ref, Mapping) else None
    return name.strip() if isinstance(name, str) else ""


class TemplateSchemas:
    """The schemas of the template behind this run, looked up once and then reused.

    Build with ``for_engram`` or ``for_impulse``; every ``validate_*`` call awaits the same
    single lookup. ``template`` is the template object (None when validation is skipped).
    """

    def __init__(self, kind: Kind, kube: Any, lookup: Any, *, timeout: float) -> None:
        self._kind = kind
        self._kube = kube
        self._lookup = lookup
        self._timeout = timeout
        self._task: asyncio.Future[dict[str, Any] | None] | None = None
        self.template: dict[str, Any] | None = None

    @classmethod
    def for_engram(
        cls,
        kube: Any,
        *,
        namespace: str,
        engram_name: str = "",
        step_run_name: str = "",
        timeout: float = 30.0,
    ) -> TemplateSchemas:
        """Schemas of the EngramTemplate behind this StepRun (docs/templates.md#schemas).

        ``namespace`` is ``StepRunNamespace`` (else the pod namespace); ``engram_name`` is
        ``BUBU_ENGRAM_NAME`` when set, else the StepRun ``step_run_name`` is read for
        ``spec.engramRef.name``. ``timeout`` is ``BUBU_K8S_OPERATION_TIMEOUT``.
        """

        async def lookup() -> dict[str, Any] | None:
            if not namespace.strip():
                _log.debug("Schema validation skipped: step run namespace unavailable")
                return None
            name = engram_name.strip()
            if not name and step_run_name.strip():
                try:
                    step_run = await kube.get(STEP_RUN, step_run_name.strip(), namespace)
                except ForbiddenError:
                    _log.debug("Schema validation skipped: StepRun lookup forbidden")
                    return None
                except KubernetesError as exc:
                    raise SchemaLookupError(f"resolve engram name: {exc}") from exc
                name = _ref_name(step_run, "engramRef")
            if not name:
                _log.debug("Schema validation skipped: engram name unavailable")
                return None
            return await _template_via(
                kube, ENGRAM, name, namespace, ENGRAM_TEMPLATE, label="engram"
            )

        return cls(ENGRAM_TEMPLATE, kube, lookup, timeout=timeout)

    @classmethod
    def for_impulse(
        cls, kube: Any, *, namespace: str, impulse_name: str, timeout: float = 30.0
    ) -> TemplateSchemas:
        """Schemas of the ImpulseTemplate behind ``BUBU_IMPULSE_NAME`` in ``namespace``."""

        async def lookup() -> dict[str, Any] | None:
            if not namespace.strip() or not impulse_name.strip():
                _log.debug("Schema validation skipped: impulse name or namespace unavailable")
                return None
            return await _template_via(
                kube, IMPULSE, impulse_name.strip(), namespace, IMPULSE_TEMPLATE, label="impulse"
            )

        return cls(IMPULSE_TEMPLATE, kube, lookup, timeout=timeout)

    async def resolve(self) -> dict[str, Any] | None:
        """Look the template up (once); None when validation is skipped.

        Raises:
            SchemaLookupError: the API server failed or timed out (retryable).
        """
        if self._task is None:
            self._task = asyncio.ensure_future(self._resolve())
        return await asyncio.shield(self._task)

    async def _resolve(self) -> dict[str, Any] | None:
        if self._kube is None or not callable(getattr(self._kube, "get", None)):
            _log.debug("Schema validation skipped: client does not support get")
            return None
        try:
            async with asyncio.timeout(self._timeout):
                self.template = await self._lookup()
        except TimeoutError:
            raise SchemaLookupError(
                f"{self._kind.kind} lookup timed out after {self._timeout:g}s"
            ) from None
        return self.template

    def _name(self) -> str:
        meta = (self.template or {}).get("metadata") or {}
        return str(meta.get("name", ""))

    async def _validate(self, document: Any, field: str, label: str, what: str) -> None:
        try:
            template = await self.resolve()
        except SchemaLookupError as exc:
            raise SchemaLookupError(f"{what} schema resolution failed: {exc}") from exc
        schema = _spec_schema(template, field) if template else None
        if schema is None:
            return
        try:
            validate_document(document, schema, f"{self._kind.kind} {self._name()} {label}")
        except SchemaValidationError as exc:
            raise SchemaValidationError(
                f"{what} schema validation failed: {exc}", path=exc.path, violations=exc.violations
            ) from None

    async def validate_inputs(self, inputs: Mapping[str, Any] | None) -> None:
        """Validate step inputs against ``spec.inputSchema``; ``None``/empty is ``{}``.

        See docs/templates.md#schemas.

        Raises:
            SchemaLookupError: the lookup failed (retryable).
            SchemaValidationError: the inputs break the schema (terminal).
        """
        await self._validate(dict(inputs or {}), "inputSchema", "inputs", "input")

    async def validate_output(self, output: Any) -> None:
        """Validate a step output against ``spec.outputSchema``.

        An empty output (None) with an output schema is an error, as in Go.

        Raises:
            SchemaLookupError: the lookup failed (retryable).
            SchemaValidationError: the output breaks the schema or is empty (terminal).
        """
        template = await self._resolve_for("output")
        if template is None or _spec_schema(template, "outputSchema") is None:
            return
        if output is None:
            name = f"{self._kind.kind} {self._name()} output"
            raise SchemaValidationError(
                f"output schema validation failed: {name} output is empty but a schema is defined"
            )
        await self._validate(output, "outputSchema", "output", "output")

    async def validate_config(self, config: Mapping[str, Any] | None) -> None:
        """Validate config (``spec.with`` after hydration) against ``spec.configSchema``.

        Raises:
            SchemaLookupError: the lookup failed (retryable).
            SchemaValidationError: the config breaks the schema (terminal).
        """
        await self._validate(dict(config or {}), "configSchema", "config", "config")

    async def validate_context(self, context: Mapping[str, Any] | None) -> None:
        """Validate an impulse event context against ``ImpulseTemplate.spec.contextSchema``.

        Raises:
            SchemaLookupError: the lookup failed (retryable).
            SchemaValidationError: the context breaks the schema (terminal).
        """
        await self._validate(dict(context or {}), "contextSchema", "context", "context")

    async def _resolve_for(self, what: str) -> dict[str, Any] | None:
        try:
            return await self.resolve()
        except SchemaLookupError as exc:
            raise SchemaLookupError(f"{what} schema resolution failed: {exc}") from exc


async def _template_via(
    kube: Any, owner_kind: Kind, owner: str, namespace: str, template_kind: Kind, *, label: str
) -> dict[str, Any] | None:
    try:
        obj = await kube.get(owner_kind, owner, namespace)
    except ForbiddenError:
        _log.debug(
            "Schema validation skipped: %s lookup forbidden; controller-side validation "
            "remains authoritative",
            owner_kind.kind,
            extra={label: owner, "namespace": namespace},
        )
        return None
    except KubernetesError as exc:
        raise SchemaLookupError(f"fetch {label}: {exc}") from exc
    name = _ref_name(obj, "templateRef")
    if not name:
        _log.debug("Schema validation skipped: %s template name missing", label)
        return None
    try:
        template: dict[str, Any] = await kube.get(template_kind, name)
    except ForbiddenError:
        _log.debug(
            "Schema validation skipped: %s lookup forbidden; controller-side validation "
            "remains authoritative",
            template_kind.kind,
            extra={label: owner, "template": name},
        )
        return None
    except KubernetesError as exc:
        raise SchemaLookupError(f"fetch {label} template: {exc}") from exc
    return template
