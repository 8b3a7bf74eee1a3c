"""``bubu.templating``: the public evaluator's own behaviour (Go parity is in
tests/integration/test_templating_public_vs_go.py, against the Go SDK's ``cel`` package)."""

from __future__ import annotations

import logging

import pytest

from bubu.errors import TemplateError
from bubu.templating import Evaluator, Expression, extract_expression

VARS = {"inputs": {"n": 4, "obj": {"a": [1, 2]}, "name": "Ada"}}


def test_a_bare_expression_is_wrapped_and_its_json_result_typed() -> None:
    evaluator = Evaluator()
    assert evaluator.evaluate_expression("add inputs.n 3", VARS) == 7
    assert evaluator.evaluate_expression("inputs.obj", VARS) == {"a": [1, 2]}
    assert evaluator.evaluate_expression("{{ inputs.name }} and {{ inputs.n }}", VARS) == (
        "Ada and 4"
    )
    assert evaluator.evaluate_expression("  ", VARS) == ""


def test_a_condition_accepts_booleans_and_their_words_only() -> None:
    evaluator = Evaluator()
    assert evaluator.evaluate_condition("", None) is True
    assert evaluator.evaluate_condition('{{ eq inputs.name "Ada" }}', VARS) is True
    assert evaluator.evaluate_condition(" No ", VARS) is False
    with pytest.raises(TemplateError, match="condition did not resolve to boolean"):
        evaluator.evaluate_condition("maybe", VARS)


def test_resolve_template_walks_mappings_renders_strings_and_passes_the_rest() -> None:
    evaluator = Evaluator()
    template = {"a": "{{ inputs.n }}", "b": ["x{{ inputs.n }}"], "c": 1.5}
    assert evaluator.resolve_template(template, VARS) == {"a": 4, "b": ["x4"], "c": 1.5}
    assert template["a"] == "{{ inputs.n }}"  # the caller's value is left alone
    assert evaluator.resolve_template("{{ inputs.n }}", VARS) == 4
    sentinel = object()
    assert evaluator.resolve_template(sentinel, VARS) is sentinel


def test_limits_are_enforced_and_checked() -> None:
    with pytest.raises(TemplateError, match='function "now" not defined'):
        Evaluator(deterministic=True).evaluate_expression("now", None)
    with pytest.raises(TemplateError):
        Evaluator(max_output_bytes=10).evaluate_expression('{{ repeat 100 "x" }}', None)
    with pytest.raises(TemplateError, match="timeout must be >= 0"):
        Evaluator(timeout=-1)
    assert repr(Evaluator(timeout=0.25)) == (
        "Evaluator(timeout=0.25, max_output_bytes=0, deterministic=False)"
    )


def test_extract_expression_finds_only_non_blank_string_wrappers() -> None:
    wrapped = {"$bubuTemplate": "inputs.n", "$bubuTemplateVars": {"k": 1}}
    assert extract_expression(wrapped) == Expression("inputs.n", {"k": 1})
    assert extract_expression({"$bubuTemplate": "x", "$bubuTemplateVars": [1]}) == Expression("x")
    assert extract_expression({"$bubuTemplate": " \t"}) is None
    assert extract_expression({"$bubuTemplate": 3}) is None
    assert extract_expression("inputs.n") is None


def test_with_a_logger_each_evaluation_logs_as_go_does(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("test.templating")
    evaluator = Evaluator(logger=logger)
    with caplog.at_level(logging.DEBUG, logger="test.templating"):
        evaluator.evaluate_expression("inputs.n", VARS)
        with pytest.raises(TemplateError):
            evaluator.evaluate_expression("nosuchfunc 1", VARS)
    records = [(r.levelname, r.getMessage(), getattr(r, "type", None)) for r in caplog.records]
    assert records == [
        ("DEBUG", "Template evaluation started", "expression"),
        ("DEBUG", "Template evaluation succeeded", "expression"),
        ("DEBUG", "Template evaluation started", "expression"),
        ("ERROR", "Template evaluation failed", "expression"),
    ]
    first, failed = caplog.records[0], caplog.records[-1]
    assert first.expression == "{{ inputs.n }}"  # type: ignore[attr-defined]
    assert 'function "nosuchfunc" not defined' in failed.error  # type: ignore[attr-defined]
    assert failed.duration.endswith("s")  # type: ignore[attr-defined]


def test_without_a_logger_nothing_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG):
        Evaluator().evaluate_expression("inputs.n", VARS)
    assert not [r for r in caplog.records if r.getMessage().startswith("Template")]
