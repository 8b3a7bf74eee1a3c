"""``bubu.templating`` against the Go SDK's public ``cel`` package, case by case.

See docs/templates.md#evaluator.

Every case runs through the Go oracle (tests/interop/cmd/templating: ``cel.NewEvaluator`` and
``cel.ExtractExpression`` of the Go SDK v0.1.5) and through ``bubu.templating``: the results
must be equal (as Go JSON, numbers compared as Go's float64) and the errors must be errors on
both sides with the same text.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bubu.errors import TemplateError
from bubu.templating import Evaluator, extract_expression
from tests.integration._gotemplating import GoTemplating, same_value

pytestmark = pytest.mark.interop

VARS: dict[str, Any] = {
    "inputs": {
        "n": 4,
        "name": "Ada",
        "items": [1, 2, 3],
        "none": [],
        "flag": True,
        "obj": {"a": [1, 2], "b": "x"},
        "text": "  padded  ",
        "json": '{"k": [1, true]}',
        "yes": "YES",
    },
    "steps": {"fetch": {"output": {"status": 200, "body": "ok"}}},
}

EXPRESSIONS = [
    "",
    "   ",
    "add inputs.n 3",
    "inputs.n",
    ".inputs.name",
    "inputs.obj",
    "inputs.items",
    "inputs.flag",
    "{{ inputs.name }} and {{ inputs.n }}",
    "{{ inputs.n }}",
    "{{ inputs.json }}",
    "inputs.json",
    "inputs.text",
    "toJson inputs.obj",
    "steps.fetch.output.status",
    'printf "%d-%s" inputs.n inputs.name',
    "len inputs.items",
    "eq inputs.n 4",
    "nosuchfunc 1",
    "inputs.n |",
    "{{ if inputs.flag }}on{{ else }}off{{ end }}",
    "quote inputs.name",
    '"literal"',
    "1.5",
    "-0",
]

CONDITIONS = [
    "",
    "true",
    "{{ inputs.flag }}",
    "{{ gt (len inputs.items) 0 }}",
    "{{ gt (len inputs.none) 0 }}",
    "{{ inputs.yes }}",
    " no ",
    "0",
    "{{ inputs.n }}",
    "maybe",
    "gt (len inputs.items) 0",
    "{{ nosuchfunc }}",
    "{{ eq steps.fetch.output.status 200 }}",
    "{{ gt inputs.n 3 }}",  # Go: inputs are float64, 3 an int: an error on both sides
    "{{ gt inputs.n 3.0 }}",
]

TEMPLATES: list[Any] = [
    {"a": "{{ inputs.n }}", "b": ["x{{ inputs.n }}", {"c": "{{ inputs.obj }}"}], "d": 5},
    {"$bubuTemplate": "inputs.items", "$bubuTemplateVars": {"extra": 1}},
    {"$bubuTemplate": "{{ inputs.items }}"},
    {"$bubuTemplate": "{{ .extra }}", "$bubuTemplateVars": {"extra": {"k": 1}}},
    {"wrapped": {"$bubuTemplate": "{{ add inputs.n 1 }}"}},
    "{{ inputs.n }}",
    "{{ inputs.obj }}",
    "plain text",
    "{{ inputs.name }}!",
    "{{ nosuchfunc }}",
    5,
    None,
    [1, "{{ inputs.n }}"],
    {},
]

WRAPPERS: list[Any] = [
    {"$bubuTemplate": "inputs.n", "$bubuTemplateVars": {"k": 1}},
    {"$bubuTemplate": "inputs.n", "$bubuTemplateVars": [1]},
    {"$bubuTemplate": "  "},
    {"$bubuTemplate": 3},
    {"other": 1},
    "inputs.n",
    None,
    [{"$bubuTemplate": "x"}],
]


@pytest.fixture(scope="module")
def go(interop_bin: Path) -> Iterator[GoTemplating]:
    oracle = GoTemplating(Path(interop_bin) / "templating")
    yield oracle
    oracle.close()


def _ours(call: Any) -> dict[str, Any]:
    try:
        return {"ok": True, "value": call()}
    except TemplateError as exc:
        return {"ok": False, "error": str(exc)}


def _assert_same(theirs: dict[str, Any], mine: dict[str, Any], case: Any) -> None:
    assert theirs["ok"] == mine["ok"], (case, theirs, mine)
    if theirs["ok"]:
        assert same_value(theirs.get("value"), mine["value"]), (case, theirs, mine)
    else:
        assert theirs["error"] == mine["error"], (case, theirs, mine)


@pytest.mark.parametrize("expression", EXPRESSIONS)
def test_evaluate_expression_matches_go(go: GoTemplating, expression: str) -> None:
    theirs = go.run(op="sdk_expression", template=expression, vars=VARS)
    mine = _ours(lambda: Evaluator().evaluate_expression(expression, VARS))
    _assert_same(theirs, mine, expression)


@pytest.mark.parametrize("expression", CONDITIONS)
def test_evaluate_condition_matches_go(go: GoTemplating, expression: str) -> None:
    theirs = go.run(op="sdk_condition", template=expression, vars=VARS)
    mine = _ours(lambda: Evaluator().evaluate_condition(expression, VARS))
    _assert_same(theirs, mine, expression)
    if mine["ok"]:
        assert isinstance(mine["value"], bool)


@pytest.mark.parametrize("template", TEMPLATES, ids=lambda t: repr(t)[:40])
def test_resolve_template_matches_go(go: GoTemplating, template: Any) -> None:
    theirs = go.run(op="sdk_resolve", value=template, vars=VARS)
    mine = _ours(lambda: Evaluator().resolve_template(template, VARS))
    _assert_same(theirs, mine, template)


def test_deterministic_evaluator_refuses_now_like_go(go: GoTemplating) -> None:
    theirs = go.run(op="sdk_expression", template="now", vars=VARS, deterministic=True)
    mine = _ours(lambda: Evaluator(deterministic=True).evaluate_expression("now", VARS))
    assert not theirs["ok"]
    _assert_same(theirs, mine, "now")


def test_max_output_bytes_is_enforced_like_go(go: GoTemplating) -> None:
    template = '{{ repeat 100 "x" }}'
    theirs = go.run(op="sdk_expression", template=template, vars=VARS, maxOutputBytes=10)
    mine = _ours(lambda: Evaluator(max_output_bytes=10).evaluate_expression(template, VARS))
    assert not theirs["ok"]
    _assert_same(theirs, mine, template)


@pytest.mark.parametrize("value", WRAPPERS, ids=lambda v: repr(v)[:40])
def test_extract_expression_matches_go(go: GoTemplating, value: Any) -> None:
    theirs = go.run(op="sdk_extract", value=value)["value"]
    found = extract_expression(value)
    assert (found is not None) == theirs["found"], (value, theirs)
    if found is not None:
        assert found.expr == theirs["expr"]
        assert found.vars == theirs["vars"]


_JSONISH = st.one_of(
    st.text(alphabet='{}[]",:0123456789.eE+-truefalsn \\u', max_size=12),
    st.from_regex(r"\A\s?-?[0-9]{1,25}(\.[0-9]{1,5})?([eE][+-]?[0-9]{1,3})?\s?\Z"),
    st.builds(
        json.dumps,
        st.recursive(
            st.none() | st.booleans() | st.integers() | st.text(max_size=5),
            lambda inner: (
                st.lists(inner, max_size=3)
                | st.dictionaries(st.text(max_size=3), inner, max_size=3)
            ),
            max_leaves=6,
        ),
    ),
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    database=None,
)
@given(text=_JSONISH)
def test_an_expressions_text_result_is_decoded_as_go_decodes_it(
    go: GoTemplating, text: str
) -> None:
    # EvaluateExpression JSON-decodes a text result when it can (Go's encoding/json): what
    # counts as JSON, and what it decodes to, must agree.
    variables = {"inputs": {"x": text}}
    theirs = go.run(op="sdk_expression", template="inputs.x", vars=variables)
    mine = _ours(lambda: Evaluator().evaluate_expression("inputs.x", variables))
    _assert_same(theirs, mine, text)
