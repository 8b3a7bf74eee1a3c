# ruff: noqa: E501  (one schema case per line)
"""bubu's schema validator (jsonschema-rs) against the Go SDK's (gojsonschema v1.2.0).

Both sides validate the same documents against the same normalised schemas (the keywords
template schemas use: types, required, enums, patterns, formats, bounds, composition, local
``$ref``). The verdicts must agree, except for the differences written down in
docs/differences.md ("Schemas"), which are asserted here so a change on either side shows up.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from bubu._schema import compile_schema, normalize_schema
from bubu.errors import SchemaValidationError
from tests.integration._gotemplating import GoTemplating

pytestmark = pytest.mark.interop

CASES: list[tuple[dict[str, Any], list[Any]]] = [
    ({"type": "integer"}, [1, 1.0, 1.5, "1", 10**20]),
    ({"type": "number"}, [1, 1.5, "x", True]),
    (
        {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
        [{"a": "x"}, {}, {"a": 1}],
    ),
    (
        {"type": "object", "properties": {"a": {"type": "string", "required": True}}},
        [{"a": "x"}, {}],
    ),
    ({"enum": [1, "a", None]}, [1, 1.0, "a", None, 2]),
    ({"const": 1}, [1, 1.0, 2]),
    ({"type": "string", "pattern": "^a+$"}, ["aa", "b", ""]),
    ({"type": "string", "minLength": 2, "maxLength": 3}, ["é", "éé", "abcd"]),
    ({"maximum": 3, "exclusiveMaximum": True}, [3, 2]),
    ({"exclusiveMaximum": 3}, [3, 2]),
    (
        {
            "$schema": "http://json-schema.org/draft-04/schema#",
            "maximum": 3,
            "exclusiveMaximum": True,
        },
        [3, 2],
    ),
    (
        {
            "type": "array",
            "items": [{"type": "string"}, {"type": "integer"}],
            "additionalItems": False,
        },
        [["a", 1], ["a", 1, 2], [1]],
    ),
    (
        {"type": "array", "items": {"type": "integer"}, "minItems": 1, "maxItems": 2},
        [[], [1], [1, 2, 3], ["x"]],
    ),
    ({"type": "array", "uniqueItems": True}, [[1, 1.0], [1, 2], [{"a": 1}, {"a": 1}]]),
    ({"type": "array", "contains": {"type": "string"}}, [[1, "a"], [1]]),
    ({"dependencies": {"a": ["b"]}}, [{"a": 1}, {"a": 1, "b": 2}]),
    (
        {"if": {"properties": {"a": {"const": 1}}}, "then": {"required": ["b"]}},
        [{"a": 1}, {"a": 1, "b": 1}, {"a": 2}],
    ),
    ({"propertyNames": {"maxLength": 2}}, [{"ab": 1}, {"abc": 1}]),
    (
        {
            "definitions": {"s": {"type": "string"}},
            "properties": {"a": {"$ref": "#/definitions/s"}},
        },
        [{"a": "x"}, {"a": 1}],
    ),
    (
        {"$defs": {"s": {"type": "string"}}, "properties": {"a": {"$ref": "#/$defs/s"}}},
        [{"a": "x"}, {"a": 1}],
    ),
    ({"type": "string", "format": "email"}, ["a@b.co", "nope"]),
    ({"type": "string", "format": "date-time"}, ["2024-05-01T12:00:00Z", "2024-05-01T12:00:00"]),
    ({"type": "string", "format": "date"}, ["2024-05-01", "2024-13-01"]),
    ({"type": "string", "format": "uri"}, ["https://x.io/a", "not a uri", "/relative"]),
    ({"type": "string", "format": "hostname"}, ["example.com", "-bad-", "a_b"]),
    ({"type": "string", "format": "ipv4"}, ["1.2.3.4", "1.2.3.256"]),
    ({"type": "string", "format": "ipv6"}, ["::1", "::g"]),
    ({"type": "string", "format": "uuid"}, ["123e4567-e89b-12d3-a456-426614174000", "nope"]),
    ({"type": "string", "format": "regex"}, ["^a+$", "(("]),
    ({"type": "string", "format": "custom-unknown"}, ["x"]),
    ({"multipleOf": 0.1}, [0.3, 0.35]),
    ({"type": "object", "additionalProperties": {"type": "integer"}}, [{"a": 1}, {"a": "x"}]),
    (
        {"type": "object", "patternProperties": {"^x": {"type": "integer"}}},
        [{"xa": 1}, {"xa": "s"}, {"y": "s"}],
    ),
    ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, [1, 1.5]),
    ({"anyOf": [{"type": "integer"}, {"type": "string"}]}, [1, "a", None]),
    ({"allOf": [{"minimum": 1}, {"maximum": 3}]}, [0, 2, 4]),
    ({"not": {"type": "string"}}, [1, "a"]),
    ({"minProperties": 1, "maxProperties": 1}, [{}, {"a": 1}, {"a": 1, "b": 2}]),
    ({"type": ["string", "null"]}, ["a", None, 1]),
    (
        {
            "type": "object",
            "x-bubu-allow-runtime-refs": True,
            "x-bubu-allow-template-strings": True,
            "properties": {"n": {"type": "integer"}},
        },
        [{"n": "{{ .inputs.n }}"}, {"n": {"$bubuStorageRef": "a/b"}}, {"n": "x"}],
    ),
]

# Where the verdicts differ on purpose or by library (docs/differences.md, "Schemas").
KNOWN = {
    # gojsonschema accepts a bare date as "date-time"; RFC 3339 (and jsonschema-rs) needs a time.
    ('{"type": "string", "format": "date-time"}', '"2024-05-01"'): (True, False),
}


@pytest.fixture(scope="module")
def go(interop_bin: Path) -> Iterator[GoTemplating]:
    oracle = GoTemplating(Path(interop_bin) / "templating")
    yield oracle
    oracle.close()


@pytest.mark.parametrize(("schema", "docs"), CASES, ids=range(len(CASES)))
def test_verdicts_match_go(go: GoTemplating, schema: dict[str, Any], docs: list[Any]) -> None:
    compiled = compile_schema(schema)
    for doc in docs:
        theirs = go.run(op="schema", schema=normalize_schema(schema), doc=doc)
        assert theirs["ok"], theirs
        mine = not compiled.violations(doc)
        assert theirs["valid"] == mine, (schema, doc, theirs.get("errors"))


def test_known_differences_still_hold(go: GoTemplating) -> None:
    for (schema_text, doc_text), (go_verdict, our_verdict) in KNOWN.items():
        schema, doc = json.loads(schema_text), json.loads(doc_text)
        assert go.run(op="schema", schema=schema, doc=doc)["valid"] is go_verdict
        assert (not compile_schema(schema).violations(doc)) is our_verdict


def test_invalid_schemas_fail_on_both_sides(go: GoTemplating) -> None:
    for schema in ({"required": True}, {"type": "strin"}):
        assert not go.run(op="schema", schema=schema, doc={})["ok"]
        with pytest.raises(SchemaValidationError, match="invalid schema"):
            compile_schema(schema)
