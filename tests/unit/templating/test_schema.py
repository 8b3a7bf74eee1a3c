"""Schema normalisation, validation and lookup (docs/templates.md#schemas) without a cluster.

The lookup against the real kube-apiserver under the engram-runner Role is in
tests/integration/test_schema_lookup.py; parity with Go's gojsonschema in
tests/interop/test_schema_vs_go.py.
"""

from __future__ import annotations

import asyncio
import copy
import logging
from typing import Any

import pytest

from bubu import _schema
from bubu._schema import (
    ALLOW_RUNTIME_REFS,
    ALLOW_TEMPLATE_STRINGS,
    TemplateSchemas,
    compile_schema,
    normalize_schema,
    validate_document,
)
from bubu.errors import (
    ForbiddenError,
    KubernetesError,
    NotFoundError,
    SchemaLookupError,
    SchemaValidationError,
)

COLOR = {"type": "string", "enum": ["red", "blue"]}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props}


# --- normalisation ---------------------------------------------------------------------------


def test_external_ref_is_rejected_with_its_location() -> None:
    with pytest.raises(SchemaValidationError) as err:
        normalize_schema(_obj(a={"$ref": "https://example.com/schema.json"}))
    assert str(err.value) == (
        'external schema reference "https://example.com/schema.json" is not allowed '
        "(at #/properties/a)"
    )
    assert err.value.path == "#/properties/a"


@pytest.mark.parametrize("ref", ["#/definitions/x", "#", "  ", ""])
def test_local_and_empty_refs_are_allowed(ref: str) -> None:
    schema = {"definitions": {"x": {"type": "string"}}, "properties": {"a": {"$ref": ref}}}
    assert normalize_schema(schema)["properties"]["a"] == {"$ref": ref}


def test_external_ref_inside_a_list_is_rejected() -> None:
    with pytest.raises(SchemaValidationError, match='"other.json"'):
        normalize_schema({"anyOf": [{"type": "string"}, {"$ref": "other.json"}]})


def test_boolean_required_is_lifted_keeping_existing_order() -> None:
    schema = {
        "type": "object",
        "required": ["z"],
        "properties": {
            "a": {"type": "string", "required": True},
            "b": {"type": "string", "required": False},
            "z": {"type": "string", "required": True},
            "c": {"type": "object", "required": ["inner"], "properties": {"inner": {}}},
            "d": {"type": "integer", "required": True},
        },
    }
    original = copy.deepcopy(schema)
    out = normalize_schema(schema)
    assert schema == original  # the input is not modified
    assert out["required"] == ["z", "a", "d"]
    assert "required" not in out["properties"]["a"]
    assert "required" not in out["properties"]["b"]  # false is dropped too
    assert out["properties"]["c"]["required"] == ["inner"]  # a real list stays


def test_required_is_lifted_in_nested_locations() -> None:
    inner = {"type": "object", "properties": {"x": {"required": True}}}
    schema = {
        "items": copy.deepcopy(inner),
        "additionalProperties": copy.deepcopy(inner),
        "patternProperties": {"^p": copy.deepcopy(inner)},
        "allOf": [copy.deepcopy(inner)],
        "anyOf": [copy.deepcopy(inner)],
        "oneOf": [copy.deepcopy(inner)],
        "definitions": {"d": copy.deepcopy(inner)},
        "$defs": {"d": copy.deepcopy(inner)},
        "not": copy.deepcopy(inner),
    }
    out = normalize_schema(schema)
    found = [
        out["items"],
        out["additionalProperties"],
        out["patternProperties"]["^p"],
        out["allOf"][0],
        out["anyOf"][0],
        out["oneOf"][0],
        out["definitions"]["d"],
        out["$defs"]["d"],
        out["not"],
    ]
    assert all(node["required"] == ["x"] for node in found)


def test_opt_ins_wrap_a_node_keeping_title_and_description() -> None:
    schema = {"type": "string", "title": "T", "description": "D", ALLOW_TEMPLATE_STRINGS: True}
    out = normalize_schema(schema)
    assert out["title"] == "T" and out["description"] == "D"
    assert out["anyOf"][0]["type"] == "string"
    assert out["anyOf"][1] == {"type": "string", "pattern": _schema.TEMPLATE_STRING_PATTERN}


def test_runtime_refs_add_three_alternatives_once() -> None:
    out = normalize_schema({"type": "string", ALLOW_RUNTIME_REFS: True})
    keys = [next(iter(alt["properties"])) for alt in out["anyOf"][1:]]
    assert keys == ["$bubuStorageRef", "$bubuConfigMapRef", "$bubuSecretRef"]
    again = normalize_schema(out | {ALLOW_RUNTIME_REFS: True})
    assert len(again["anyOf"]) == 4  # already present: not added twice


def test_opt_ins_reach_anyof_branches_and_are_not_repeated_at_the_parent() -> None:
    # As in Go: the branches inherit the opt-in and get wrapped first, so the parent anyOf
    # already "has" the alternative and nothing is appended to it.
    schema = {"anyOf": [{"type": "string"}, {"type": "integer"}], ALLOW_TEMPLATE_STRINGS: True}
    out = normalize_schema(schema)
    assert len(out["anyOf"]) == 2
    assert all(b["anyOf"][1]["pattern"] == _schema.TEMPLATE_STRING_PATTERN for b in out["anyOf"])
    plain = normalize_schema({"anyOf": [True, {"type": "integer"}], ALLOW_TEMPLATE_STRINGS: False})
    assert plain["anyOf"] == [True, {"type": "integer"}]


def test_inherited_opt_ins_are_not_pushed_into_oneof_branches() -> None:
    schema = {
        "type": "object",
        ALLOW_TEMPLATE_STRINGS: True,
        "properties": {"color": {"oneOf": [{"type": "string", "pattern": "^[a-z]+$"}, {}]}},
    }
    out = normalize_schema(schema)
    branches = out["anyOf"][0]["properties"]["color"]["oneOf"]
    assert branches[0] == {"type": "string", "pattern": "^[a-z]+$"}  # not wrapped
    assert branches[-1]["pattern"] == _schema.TEMPLATE_STRING_PATTERN  # added at the oneOf node


# --- validation (Go's schema_validation_test.go cases) ------------------------------------------


def test_runtime_alternatives_are_rejected_by_default() -> None:
    schema = _obj(secret={"type": "string"}, color=COLOR) | {"required": ["secret", "color"]}
    with pytest.raises(SchemaValidationError):
        validate_document({"secret": {"$bubuSecretRef": "ns/n:k"}, "color": "red"}, schema, "t")
    with pytest.raises(SchemaValidationError):
        validate_document({"secret": "plain", "color": "{{ .inputs.color }}"}, schema, "t")


def test_runtime_alternatives_are_allowed_when_the_schema_opts_in() -> None:
    schema = _obj(secret={"type": "string"}, color=COLOR) | {
        "required": ["secret", "color"],
        ALLOW_RUNTIME_REFS: True,
        ALLOW_TEMPLATE_STRINGS: True,
    }
    validate_document(
        {"secret": {"$bubuSecretRef": "ns/n:k"}, "color": "{{ .inputs.color }}"}, schema, "t"
    )
    validate_document(
        {"secret": {"$bubuStorageRef": "a/b", "$bubuStoragePath": "x"}, "color": "red"}, schema, "t"
    )
    validate_document(
        {"secret": {"$bubuConfigMapRef": {"name": "cm", "key": "k", "format": "json"}}},
        schema | {"required": []},
        "t",
    )
    with pytest.raises(SchemaValidationError):  # the ref object itself is checked
        validate_document({"secret": {"$bubuSecretRef": {"name": "s"}}}, schema, "t")


def test_template_alternative_is_added_to_a_oneof_with_another_pattern() -> None:
    schema = {
        "type": "object",
        ALLOW_TEMPLATE_STRINGS: True,
        "properties": {
            "color": {"oneOf": [{"type": "string", "pattern": "^[a-z]+$"}, {"type": "integer"}]}
        },
        "required": ["color"],
    }
    validate_document({"color": "{{ .inputs.color }}"}, schema, "t")
    validate_document({"color": " ${{ x }} "}, schema, "t")


def test_a_field_opt_in_does_not_broaden_its_siblings() -> None:
    schema = _obj(
        allowedSecret={"type": "string", ALLOW_RUNTIME_REFS: True},
        allowedColor=COLOR | {ALLOW_TEMPLATE_STRINGS: True},
        literalSecret={"type": "string"},
        literalColor=COLOR,
    )
    validate_document(
        {
            "allowedSecret": {"$bubuSecretRef": "ns/n:k"},
            "allowedColor": "{{ .inputs.color }}",
            "literalSecret": "plain",
            "literalColor": "red",
        },
        schema,
        "t",
    )
    with pytest.raises(SchemaValidationError) as err:
        validate_document(
            {
                "allowedSecret": "plain",
                "allowedColor": "red",
                "literalSecret": {"$bubuSecretRef": "ns/n:k"},
                "literalColor": "{{ .inputs.color }}",
            },
            schema,
            "t",
        )
    assert [p for p, _ in err.value.violations] == ["$.literalSecret", "$.literalColor"]


def test_every_violation_is_listed_with_its_json_path_and_no_value() -> None:
    schema = {
        "type": "object",
        "required": ["name"],
        "properties": {
            "age": {"type": "integer", "minimum": 0},
            "items": {"type": "array", "items": _obj(qty={"type": "integer"})},
            "odd key": {"type": "string", "maxLength": 2},
            "tags": {"type": "array", "uniqueItems": True},
            "email": {"type": "string", "format": "email"},
        },
        "additionalProperties": False,
    }
    doc = {
        "age": -4,
        "items": [{"qty": 1}, {"qty": "s3cr3t-value"}],
        "odd key": "longer",
        "tags": [1, 1],
        "email": "not-an-email",
        "extra": True,
    }
    with pytest.raises(SchemaValidationError) as err:
        validate_document(doc, schema, "EngramTemplate demo inputs")
    found = dict(err.value.violations)
    assert found == {
        "$.name": "missing required property",
        "$.age": "less than the minimum 0",
        "$.items[1].qty": "expected integer",
        '$["odd key"]': "longer than 2 characters",
        "$.tags": "items are not unique",
        "$.email": "not a valid email",
        "$": "additional properties are not allowed: extra",
    }
    message = str(err.value)
    assert message.startswith("object is invalid against EngramTemplate demo inputs schema: [")
    assert "$.items[1].qty: expected integer" in message
    assert "s3cr3t-value" not in message and "not-an-email" not in message
    assert err.value.error_type == "validation_error" and not err.value.retryable


def test_schema_with_external_ref_fails_validation_terminally() -> None:
    with pytest.raises(SchemaValidationError) as err:
        validate_document({}, {"$ref": "https://example.com/x.json"}, "EngramTemplate t inputs")
    assert str(err.value).startswith(
        "error validating against EngramTemplate t inputs schema: failed to normalize schema: "
        "external schema reference"
    )


def test_each_schema_is_compiled_once_per_process(monkeypatch: pytest.MonkeyPatch) -> None:
    made: list[Any] = []
    real = _schema.CompiledSchema

    class Counting(real):  # type: ignore[misc,valid-type]
        def __init__(self, schema: Any) -> None:
            made.append(schema)
            super().__init__(schema)

    monkeypatch.setattr(_schema, "CompiledSchema", Counting)
    schema = {"type": "object", "properties": {"unique-to-this-test": {"type": "string"}}}
    first = compile_schema(schema)
    # Same content, different key order and identity: still one compilation.
    second = compile_schema(
        {"properties": {"unique-to-this-test": {"type": "string"}}, "type": "object"}
    )
    assert first is second and len(made) == 1


def test_declared_draft_is_honoured() -> None:
    # Draft 4 spells exclusiveMaximum as a boolean; Draft 7 (the default) as a number.
    draft4 = {
        "$schema": "http://json-schema.org/draft-04/schema#",
        "maximum": 3,
        "exclusiveMaximum": True,
    }
    with pytest.raises(SchemaValidationError):
        validate_document(3, draft4, "t")
    validate_document(3, {"maximum": 3}, "t")


# --- lookup --------------------------------------------------------------------------------------


class FakeKube:
    def __init__(self, objects: dict[tuple[str, str], Any]) -> None:
        self.objects = objects
        self.calls: list[tuple[str, str, str | None]] = []
        self.namespace = "default"

    async def get(self, kind: Any, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.calls.append((kind.kind, name, namespace))
        found = self.objects.get((kind.kind, name))
        if isinstance(found, BaseException):
            raise found
        if found is None:
            raise NotFoundError(f'{kind.plural} "{name}" not found', status_code=404)
        if callable(found):
            return await found()
        return copy.deepcopy(found)


SCHEMAS = {
    "inputSchema": _obj(name={"type": "string"}) | {"required": ["name"]},
    "outputSchema": _obj(greeting={"type": "string"}) | {"required": ["greeting"]},
    "configSchema": _obj(greeting={"type": "string"}),
}


def _cluster(**overrides: Any) -> FakeKube:
    objects: dict[tuple[str, str], Any] = {
        ("StepRun", "step-1"): {"spec": {"engramRef": {"name": "hello"}}},
        ("Engram", "hello"): {"spec": {"templateRef": {"name": "hello-tpl"}}},
        ("EngramTemplate", "hello-tpl"): {"metadata": {"name": "hello-tpl"}, "spec": SCHEMAS},
    }
    objects.update({tuple(k.split("/")): v for k, v in overrides.items()})  # type: ignore[misc]
    return FakeKube(objects)


def _engram(kube: Any, **kw: Any) -> TemplateSchemas:
    kw.setdefault("namespace", "ns")
    kw.setdefault("step_run_name", "step-1")
    return TemplateSchemas.for_engram(kube, **kw)


async def test_lookup_goes_steprun_engram_template_once() -> None:
    kube = _cluster()
    schemas = _engram(kube)
    await schemas.validate_inputs({"name": "Ada"})
    await schemas.validate_output({"greeting": "hi"})
    await schemas.validate_config({"greeting": "hi"})
    assert kube.calls == [
        ("StepRun", "step-1", "ns"),
        ("Engram", "hello", "ns"),
        ("EngramTemplate", "hello-tpl", None),
    ]


async def test_engram_name_from_env_skips_the_steprun_read() -> None:
    kube = _cluster()
    await _engram(kube, engram_name=" hello ").validate_inputs({"name": "Ada"})
    assert [c[0] for c in kube.calls] == ["Engram", "EngramTemplate"]


async def test_failures_name_the_template_and_are_terminal() -> None:
    schemas = _engram(_cluster())
    with pytest.raises(SchemaValidationError) as err:
        await schemas.validate_inputs({})  # empty inputs are validated as {}
    assert str(err.value) == (
        "input schema validation failed: object is invalid against EngramTemplate hello-tpl "
        "inputs schema: [$.name: missing required property]"
    )
    with pytest.raises(SchemaValidationError, match="output is empty but a schema is defined"):
        await schemas.validate_output(None)
    with pytest.raises(SchemaValidationError, match=r"output schema: \[\$.greeting: expected"):
        await schemas.validate_output({"greeting": 3})


@pytest.mark.parametrize("where", ["Engram/hello", "EngramTemplate/hello-tpl", "StepRun/step-1"])
async def test_forbidden_skips_with_one_debug_line(
    where: str, caplog: pytest.LogCaptureFixture
) -> None:
    kube = _cluster(**{where: ForbiddenError("forbidden", status_code=403)})
    with caplog.at_level(logging.DEBUG, logger="bubu.schema"):
        await _engram(kube).validate_inputs({})  # would fail validation if it ran
    records = [r for r in caplog.records if r.name == "bubu.schema"]
    assert len(records) == 1 and records[0].levelno == logging.DEBUG
    assert "skipped" in records[0].getMessage()


@pytest.mark.parametrize("kube", [None, object()])
async def test_a_client_without_get_skips(kube: Any, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="bubu.schema"):
        await _engram(kube).validate_inputs({})
    assert [r.getMessage() for r in caplog.records] == [
        "Schema validation skipped: client does not support get"
    ]


@pytest.mark.parametrize(
    ("kw", "objects"),
    [
        ({"namespace": ""}, {}),
        ({"step_run_name": ""}, {}),
        ({}, {"StepRun/step-1": {"spec": {}}}),
        ({}, {"Engram/hello": {"spec": {"templateRef": {"name": " "}}}}),
        ({}, {"EngramTemplate/hello-tpl": {"metadata": {"name": "x"}, "spec": {}}}),
    ],
)
async def test_missing_names_or_schemas_skip(kw: dict[str, Any], objects: dict[str, Any]) -> None:
    await _engram(_cluster(**objects), **kw).validate_inputs({})


@pytest.mark.parametrize(
    ("where", "text"),
    [
        ("StepRun/step-1", "resolve engram name"),
        ("Engram/hello", "fetch engram"),
        ("EngramTemplate/hello-tpl", "fetch engram template"),
    ],
)
async def test_lookup_errors_are_retryable(where: str, text: str) -> None:
    kube = _cluster(**{where: KubernetesError("connection refused")})
    with pytest.raises(SchemaLookupError) as err:
        await _engram(kube).validate_inputs({"name": "x"})
    assert str(err.value) == f"input schema resolution failed: {text}: connection refused"
    assert err.value.retryable and err.value.exit_class == "retry"
    assert err.value.error_type == "execution_error"


async def test_a_missing_template_is_a_lookup_error() -> None:
    kube = _cluster()
    del kube.objects[("EngramTemplate", "hello-tpl")]
    with pytest.raises(SchemaLookupError, match="not found"):
        await _engram(kube).validate_output({"greeting": "x"})


async def test_lookup_is_bounded_by_the_operation_timeout() -> None:
    async def hang() -> dict[str, Any]:
        await asyncio.Event().wait()
        raise AssertionError

    kube = _cluster(**{"Engram/hello": hang})
    with pytest.raises(SchemaLookupError, match="timed out after 0.05s"):
        await _engram(kube, timeout=0.05).validate_inputs({})


async def test_impulse_template_schemas() -> None:
    kube = FakeKube(
        {
            ("Impulse", "hook"): {"spec": {"templateRef": {"name": "webhook"}}},
            ("ImpulseTemplate", "webhook"): {
                "metadata": {"name": "webhook"},
                "spec": {
                    "configSchema": _obj(path={"type": "string"}),
                    "contextSchema": _obj(ref={"type": "string"}) | {"required": ["ref"]},
                },
            },
        }
    )
    schemas = TemplateSchemas.for_impulse(kube, namespace="ns", impulse_name="hook")
    await schemas.validate_config({"path": "/x"})
    with pytest.raises(SchemaValidationError, match=r"ImpulseTemplate webhook config schema"):
        await schemas.validate_config({"path": 1})
    with pytest.raises(SchemaValidationError, match=r"context schema: \[\$.ref: missing"):
        await schemas.validate_context({})
    assert kube.calls == [("Impulse", "hook", "ns"), ("ImpulseTemplate", "webhook", None)]
