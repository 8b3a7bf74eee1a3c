"""The evaluator's resolve layer and the SDK's second pass (docs/templates.md#templates).

Go parity of the template language itself is in tests/integration/test_templating_vs_go.py;
these tests pin the behaviour around it: wrappers, limits, storage selectors, the config and
input flows with a fake storage manager, the parse cache and the "bad input" cases.
"""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import pytest

from bubu import _templating
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._templating import (
    Evaluator,
    TemplateConfig,
    TemplateLimits,
    find_storage_ref_paths,
    hydrate_config,
    render_key_template,
    resolve_inputs,
    resolve_templates,
)
from bubu.errors import OffloadedDataError, TemplateBlockedError, TemplateError

VARS = {
    "inputs": {"name": "Ada", "count": 3, "items": [1, 2], "n": 1000000},
    "steps": {
        "fetch": {"output": {"body": "ok"}},
        "big": {"output": {"$bubuStorageRef": "s3://bucket/obj"}},
    },
}


class FakeStorage:
    """Stands in for the storage manager: ``hydrate`` replaces refs from a dict of objects."""

    def __init__(self, objects: dict[str, Any]) -> None:
        self.objects = {"s3://bucket/obj": {"rows": [{"id": 7}]}, **objects}
        self.calls: list[Any] = []

    async def hydrate(self, value: Any) -> Any:
        self.calls.append(copy.deepcopy(value))
        return self._walk(value)

    def _walk(self, value: Any) -> Any:
        if isinstance(value, dict):
            ref = value.get("$bubuStorageRef")
            if isinstance(ref, str):
                content = copy.deepcopy(self.objects[ref])
                path = value.get("$bubuStoragePath")
                for part in path.split(".") if path else ():
                    content = content[part]
                return content
            return {k: self._walk(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._walk(v) for v in value]
        return value


def resolve(value: Any, **config: Any) -> Any:
    return Evaluator(TemplateConfig(**config)).resolve_value(value, VARS)


# --- what a template is -------------------------------------------------------------------------


def test_strings_without_braces_are_untouched_and_maps_are_copied() -> None:
    payload = {"a": "plain", "b": [1, None, True], "c": {"d": "{{ .inputs.name }}"}}
    out = resolve(payload)
    assert out == {"a": "plain", "b": [1, None, True], "c": {"d": "Ada"}}
    assert payload["c"]["d"] == "{{ .inputs.name }}"


def test_single_actions_return_typed_values() -> None:
    assert resolve("{{ .inputs.count }}") == 3
    assert resolve("{{ .inputs.items }}") == [1, 2]
    assert resolve("{{ len .inputs.items }}") == 2  # rendered "2" is JSON-decoded
    assert resolve("{{ add 1 2 }}") == "3"  # a Sprig call is not single-action in Go's check
    assert resolve("n={{ .inputs.n }}") == "n=1e+06"


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ -0.0 }}", -0.0),
        ('{{ printf "[%v, {\\"a\\": -0}]" -0.0 }}', [-0.0, {"a": -0.0}]),
        (
            '{{ printf "[\\"x\\\\\\"-0\\", 1e-0, 2E-0, -0.5, -0e1]" }}',
            ['x"-0', 1.0, 2.0, -0.5, -0.0],
        ),
    ],
)
def test_a_printed_minus_zero_is_read_back_as_the_float_go_reads(
    template: str, expected: Any
) -> None:
    import math

    value = resolve(template)
    assert value == expected

    def signs(v: Any) -> Any:
        if isinstance(v, list):
            return [signs(x) for x in v]
        if isinstance(v, dict):
            return {k: signs(x) for k, x in v.items()}
        return (type(v), math.copysign(1.0, v)) if isinstance(v, float) else v

    assert signs(value) == signs(expected)


def test_template_wrappers_merge_their_vars() -> None:
    wrapper = {
        "$bubuTemplate": "{{ .greeting }}, {{ .inputs.name }}",
        "$bubuTemplateVars": {"greeting": "{{ .inputs.name | upper }}"},
    }
    assert resolve({"x": wrapper}) == {"x": "ADA, Ada"}
    with pytest.raises(TemplateError, match=r"^\$bubuTemplate must be a string$"):
        resolve({"$bubuTemplate": 1})
    with pytest.raises(TemplateError, match=r"^\$bubuTemplateVars must be an object$"):
        resolve({"$bubuTemplate": "x", "$bubuTemplateVars": "{{ .inputs.items }}"})
    with pytest.raises(TemplateError, match=r"^template vars: template: bubu:1: function"):
        resolve({"$bubuTemplate": "x", "$bubuTemplateVars": {"a": "{{ nope }}"}})


def test_list_errors_name_the_index() -> None:
    with pytest.raises(TemplateError, match=r"^index 1: missing key at inputs.missing$"):
        resolve(["ok", "{{ .inputs.missing }}"])


# --- special cases (docs/templates.md#templates) ---------------------------------------------


def test_missing_step_output_blocks() -> None:
    with pytest.raises(TemplateBlockedError) as err:
        resolve("{{ .steps.later.output.x }}")
    assert str(err.value) == "template evaluation blocked: missing key at steps.later"


def test_offloaded_step_output_gives_a_lazy_selector_or_fails_compound_use() -> None:
    # (Go's parser refuses numeric subscripts in templates, so selectors carry keys.)
    assert resolve("{{ .steps.big.output.rows }}") == {
        "$bubuStorageRef": "s3://bucket/obj",
        "$bubuStoragePath": "rows",
    }
    assert resolve('{{ (index .steps "big").output.a.b }}')["$bubuStoragePath"] == "a.b"
    with pytest.raises(OffloadedDataError, match="compound template references step output"):
        resolve("{{ .steps.big.output.rows | len }}")
    selector = {"steps": {"s": {"output": {"$bubuStorageRef": "r", "$bubuStoragePath": "p"}}}}
    with pytest.raises(OffloadedDataError, match="len requires hydrated data for r.p"):
        Evaluator().resolve_template_string(
            "{{ $x := .other }}{{ len .sel }}",
            {"sel": selector["steps"]["s"]["output"], "other": 1},
        )


# --- limits --------------------------------------------------------------------------------------


def test_output_limit_text_is_gos() -> None:
    with pytest.raises(TemplateError) as err:
        resolve("{{ range 100 }}abc{{ end }}", max_output_bytes=10)
    assert str(err.value) == "template output exceeds max bytes (current=9, writing=3, max=10)"


def test_a_loop_stops_at_the_deadline() -> None:
    started = time.monotonic()
    with pytest.raises(TemplateError, match=r"^template evaluation timed out after 100ms$"):
        resolve("{{ range 100000000 }}{{ end }}", evaluation_timeout=0.1)
    assert time.monotonic() - started < 5  # checked per iteration, not only on writes


def test_an_explosion_stops_at_a_limit() -> None:
    # 2**40 elements would exhaust memory: the deadline (or the output cap) stops it first.
    template = "{{ $x := list 1 }}{{ range 40 }}{{ $x = concat $x $x }}{{ end }}{{ len $x }}"
    with pytest.raises(TemplateError, match="timed out"):
        resolve(template, evaluation_timeout=0.2)
    with pytest.raises(TemplateError, match="exceeds max bytes"):
        resolve('{{ range 1000 }}{{ printf "%900d" 1 }}{{ end }}', max_output_bytes=100_000)


def test_recursive_templates_stop_at_depth_100() -> None:
    with pytest.raises(TemplateError, match=r"exceeded maximum template depth \(100\)"):
        resolve('{{ define "r" }}{{ template "r" . }}{{ end }}{{ template "r" . }}')


def test_depth_and_cycles_in_values() -> None:
    deep: Any = "x"
    for _ in range(130):
        deep = {"d": deep}
    with pytest.raises(TemplateError, match="exceeded max resolve depth 128"):
        resolve(deep)
    cyclic: dict[str, Any] = {}
    cyclic["self"] = cyclic
    with pytest.raises(TemplateError, match="cyclic template value detected"):
        resolve(cyclic)


def test_unknown_functions_and_unsupported_constructs_name_the_place() -> None:
    with pytest.raises(TemplateError) as err:
        resolve("line one\n{{ .inputs.name | shout }}")
    assert str(err.value) == 'template: bubu:2: function "shout" not defined'
    for name in ("env", "expandenv", "getHostByName", "regexMatch", "merge", "repeat"):
        with pytest.raises(TemplateError, match=f'function "{name}" not defined'):
            resolve(f"{{{{ {name} }}}}")
    with pytest.raises(TemplateError) as err:
        resolve('x{{ printf "%p" .inputs.items }}')
    assert err.value.position == "1:4"
    assert "printf verb %p (a memory address) is not supported" in str(err.value)
    with pytest.raises(TemplateError, match="complex constants are not supported: 1i"):
        resolve("{{ 1i }}")


def test_negative_limits_are_refused() -> None:
    with pytest.raises(TemplateError):
        Evaluator(TemplateConfig(evaluation_timeout=-1))
    with pytest.raises(TemplateError):
        Evaluator(TemplateConfig(max_output_bytes=-1))


def test_conditions() -> None:
    evaluator = Evaluator()
    assert evaluator.evaluate_condition("", VARS) is True
    assert evaluator.evaluate_condition("{{ gt .inputs.count 2.0 }}", VARS) is True
    assert evaluator.evaluate_condition('{{ .inputs.name | lower | eq "ada" }}', VARS)
    assert evaluator.evaluate_condition("no", VARS) is False
    with pytest.raises(TemplateError, match='condition did not resolve to boolean: "maybe"'):
        evaluator.evaluate_condition("maybe", VARS)
    with pytest.raises(TemplateError, match="got float64|got int"):
        evaluator.evaluate_condition("{{ .inputs.count }}", VARS)


# --- the parse cache -----------------------------------------------------------------------------


def test_each_template_is_parsed_once() -> None:
    _templating.clear_parse_cache()
    hits, misses = _templating.parse_cache_stats()
    text = "cached {{ .inputs.name }} {{ .inputs.count }}"
    for _ in range(50):
        resolve(text)
    new_hits, new_misses = _templating.parse_cache_stats()
    assert new_misses - misses == 1
    assert new_hits - hits >= 49


# --- trigger keys --------------------------------------------------------------------------------


def test_key_templates_are_deterministic() -> None:
    with pytest.raises(TemplateError, match='function "now" not defined'):
        render_key_template("{{ now }}", {"inputs": {}})
    assert render_key_template("{{ inputs.n }}-x", {"inputs": {"n": 1000000}}) == "1e+06-x"


# --- the SDK's second pass (docs/templates.md#templates)
# -----------------------------------------------------------------


async def test_resolve_templates_hydrates_the_context_first() -> None:
    storage = FakStorage = FakeStorage({"s3://bucket/obj": {"rows": [{"id": 7}]}})
    out = await resolve_templates(
        {"first": "{{ (index .steps.big.output.rows 0).id }}"}, VARS, storage=storage
    )
    assert out == {"first": 7}
    assert FakStorage.calls and FakStorage.calls[0]["steps"]["big"]["output"]["$bubuStorageRef"]


async def test_size_limits_on_payload_and_context() -> None:
    limits = TemplateLimits(max_input_bytes=20)
    with pytest.raises(
        TemplateError, match=r"^template payload exceeds max input bytes \(\d+ > 20\)$"
    ):
        await resolve_templates({"x": "a" * 30}, {}, limits=limits)
    with pytest.raises(TemplateError, match=r"^template context exceeds max input bytes"):
        await resolve_templates({"x": 1}, {"inputs": {"a": "b" * 30}}, limits=limits)
    with pytest.raises(TemplateError, match=r"^template payload size check failed"):
        await resolve_templates({"x": object()}, {})


def test_limits_follow_the_environment_with_go_fallbacks() -> None:
    env = load_env(
        MappingSource(
            {
                "BUBU_TEMPLATE_MAX_INPUT_BYTES": "100",
                "BUBU_TEMPLATE_MAX_OUTPUT_BYTES": "not-a-number",
                "BUBU_TEMPLATE_EVALUATION_TIMEOUT": "2s",
            }
        )
    )
    limits = TemplateLimits.from_env(env)
    assert limits.max_input_bytes == 100
    assert limits.max_output_bytes == 1024 * 1024  # invalid values fall back to the default
    assert limits.evaluation_timeout == 2.0


async def test_hydrated_storage_values_are_never_template_evaluated() -> None:
    storage = FakeStorage({"cfg/body": "Hello {{ account_id }}", "cfg/list": ["{{ x }}"]})
    config = {
        "body": {"$bubuStorageRef": "cfg/body"},
        "greeting": "{{ .inputs.name }}",
        "nested": {"items": [{"$bubuStorageRef": "cfg/list"}, "{{ .inputs.count }}"]},
    }
    out = await hydrate_config(config, VARS, storage=storage)
    assert out == {
        "body": "Hello {{ account_id }}",
        "greeting": "Ada",
        "nested": {"items": [["{{ x }}"], 3]},
    }


def test_storage_ref_paths_are_found_without_descending_into_refs() -> None:
    value = {
        "a": {"$bubuStorageRef": "x", "inner": {"$bubuStorageRef": "y"}},
        "b": [{"c": {"$bubuStorageRef": "z"}}, 1],
    }
    assert find_storage_ref_paths(value) == [("a",), ("b", 0, "c")]


async def test_config_guards_reject_cycles_depth_and_node_budget() -> None:
    storage = FakeStorage({})
    cyclic: dict[str, Any] = {"a": {}}
    cyclic["a"]["loop"] = cyclic
    with pytest.raises(
        TemplateError, match="^config rejected before hydration: config contains cycle$"
    ):
        await hydrate_config(cyclic, VARS, storage=storage)
    with pytest.raises(TemplateError, match="max depth 2"):
        await hydrate_config(
            {"a": {"b": {"c": 1}}}, VARS, storage=storage, limits=TemplateLimits(config_max_depth=2)
        )
    big = FakeStorage({"r": [1, 2, 3, 4]})
    with pytest.raises(
        TemplateError, match="^hydrated config rejected before template resolution: .*max nodes 3$"
    ):
        await hydrate_config(
            {"a": {"$bubuStorageRef": "r"}},
            VARS,
            storage=big,
            limits=TemplateLimits(config_max_nodes=3),
        )
    with pytest.raises(TemplateError, match="storage manager is required"):
        await hydrate_config({"a": 1}, VARS, storage=None)
    assert await hydrate_config({}, VARS, storage=None) == {}


async def test_config_template_errors_are_prefixed() -> None:
    with pytest.raises(TemplateError, match="^failed to resolve config templates: missing key"):
        await hydrate_config({"a": "{{ .inputs.nope }}"}, VARS, storage=FakeStorage({}))


async def test_inputs_flow_and_skip_switch() -> None:
    storage = FakeStorage({"in/raw": "{{ not a template }}"})
    raw = {"doc": {"$bubuStorageRef": "in/raw"}, "who": "{{ .inputs.name }}"}
    out = await resolve_inputs(raw, VARS, storage=storage)
    assert out == {"doc": "{{ not a template }}", "who": "Ada"}
    skipped = await resolve_inputs(raw, VARS, storage=storage, skip=True)
    assert skipped == {"doc": "{{ not a template }}", "who": "{{ .inputs.name }}"}
    with pytest.raises(TemplateError, match="^failed to resolve input templates: "):
        await resolve_inputs({"x": "{{ .steps.none.output }}"}, VARS, storage=None)


async def test_a_slow_storage_does_not_block_other_tasks() -> None:
    class Slow(FakeStorage):
        async def hydrate(self, value: Any) -> Any:
            await asyncio.sleep(0)
            return await super().hydrate(value)

    results = await asyncio.gather(
        *(
            resolve_inputs({"i": f"{{{{ .inputs.count }}}}-{i}"}, VARS, storage=Slow({}))
            for i in range(5)
        )
    )
    assert [r["i"] for r in results] == [f"3-{i}" for i in range(5)]


def test_deep_nesting_is_refused_cleanly() -> None:
    nested = "{{ " + "(" * 400 + "1" + ")" * 400 + " }}"
    with pytest.raises(TemplateError, match=r"^template: bubu:1: max expression depth exceeded$"):
        resolve(nested)
    assert resolve("{{ " + "(" * 50 + "1" + ")" * 50 + " }}") == 1
    blocks = "{{ if true }}" * 600 + "x" + "{{ end }}" * 600
    with pytest.raises(TemplateError, match="depth exceeded"):
        resolve(blocks)
