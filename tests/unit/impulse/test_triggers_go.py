"""Trigger identity resolution against Go: the dedupe key is the one core's evaluator renders.

``go_ref.call("trigger_key", ...)`` renders the template with core's deterministic template
evaluator over ``{inputs, story, impulse}`` exactly as the Go SDK's ``computeTriggerKey`` does
(a non-string result is JSON-encoded, then trimmed). The StoryTrigger key is the sha256 of that.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubu._runtime.env import TriggerSettings
from bubu._triggers import TargetStory, _resolve_identity
from bubu.errors import TemplateError
from tests._goref import GoRef, go_settings

pytestmark = pytest.mark.interop

STORY = TargetStory(name="orders", namespace="team-a")
IMPULSE = TargetStory(name="webhook", namespace="team-b")


def _python_key(template: str, inputs: dict[str, Any], token: str = "") -> str:
    settings = TriggerSettings(dedupe_mode="key", dedupe_key_template=template)
    ident = _resolve_identity(settings, token, inputs=inputs, story=STORY, impulse=IMPULSE)
    assert ident.mode == "key" and ident.submission_id == ident.key
    return ident.key


def _go_key(go_ref: GoRef, template: str, inputs: dict[str, Any]) -> str:
    rendered = go_ref.call(
        "trigger_key",
        template,
        inputs,
        STORY.name,
        STORY.namespace,
        IMPULSE.name,
        IMPULSE.namespace,
    )
    return hashlib.sha256(rendered["key"].encode("utf-8")).hexdigest()


INPUTS = {
    "id": "evt-1",
    "n": 3,
    "half": 0.5,
    "one": 1.0,
    "neg": -2.5,
    "big": 1e21,
    "million": 1e6,
    "tiny": 1.5e-7,
    "yes": True,
    "no": False,
    "zero": 0,
    "none": None,
    "spaced": "  padded\x1c ",
    "html": "<a&b>",
    "items": ["a", 2, False],
    "obj": {"b": [1, 0.5], "a": {"z": None, "y": False}},
    "odd key": "v",
    "empty": "",
    "nothing": [],
    "hollow": {},
    "fzero": 0.0,
}

TEMPLATES = [
    "{{ .inputs.id }}",
    "{{ inputs.id }}",
    "{{ .inputs.n }}",
    "{{ .inputs.half }}",
    "{{ .inputs.one }}",
    "{{ .inputs.neg }}",
    "{{ .inputs.big }}",
    "{{ .inputs.tiny }}",
    "{{ .inputs.yes }}",
    "{{ .inputs.no }}",
    "{{ .inputs.zero }}",
    "{{ .inputs.spaced }}",
    "{{ .inputs.html }}",
    "{{ .inputs.items }}",
    "{{ .inputs.obj }}",
    "{{ .inputs }}",
    "k-{{ .inputs.half }}-{{ .inputs.million }}-{{ .inputs.neg }}",
    "k-{{ .inputs.one }}/{{ .inputs.big }}/{{ .inputs.tiny }}/{{ .inputs.n }}",
    "k-{{ .inputs.yes }}-{{ .inputs.no }}-{{ .inputs.zero }}",
    "{{ .story.name }}/{{ .story.namespace }}/{{ .impulse.name }}/{{ .impulse.namespace }}",
    "{{ .inputs.id | upper }}",
    "{{ lower .inputs.html }}",
    "{{ .inputs.items | toJson }}",
    '{{ index .inputs "id" }}',
    "  {{- .inputs.id -}}  ",
    "a  {{- .inputs.id }} b",
    "a {{ .inputs.id -}}   b",
    "a {{- .inputs.id -}} b {{ .inputs.n }}",
    "{{ .inputs.id }}{{ .inputs.n }}",
    '{{ "lit" }}',
    '{{ "q\\"uote" }}',
    "{{ `raw` }}",
    "{{ 42 }}",
    "{{ -1.5 }}",
    "{{ 1e3 }}",
    "{{ 2.5E-3 }}",
    "n={{ 7 }}",
    "{{ true }}",
    "{{ false }}",
    "{{ (.inputs.id) }}",
    "{{ (lower .inputs.html) | upper }}",
    '{{ default "x" .inputs.zero }}',
    '{{ default "x" .inputs.id }}',
    '{{ default "x" .inputs.empty }}',
    '{{ default "x" .inputs.nothing }}',
    '{{ default "x" .inputs.hollow }}',
    '{{ default "x" .inputs.fzero }}',
    '{{ default "x" .inputs.no }}',
    '{{ default "x" .inputs.none }}',
    '{{ .inputs.no | default "d" }}',
    "{{ index .inputs.items 1 }}",
    "{{ index .inputs.obj.b 0 }}",
    "{{ hash_of .inputs.id }}",
    "{{ toJson .inputs.obj }}",
    "{{ .inputs.obj | toJson }}",
    "{{ trim .inputs.spaced }}",
    '{{ print "a" 1 true .inputs.half }}',
    "{{ $.inputs.id }}",
    '{{ .inputs["odd key"] }}',
    "{{ .inputs.obj.a.y }}",
    "{{ $.story.name }}-{{ $.inputs.n }}",
    '{{ print 1 2 "x" 3 true }}',
]
# Not compared: a map or list printed by a function or as "." renders as Go's map[...] / [a b]
# text there and as JSON here, and ".x[0]" is an error in Go (docs/differences.md).

BAD_TEMPLATES = [
    "{{ nope }}",
    "{{ (.inputs.id }}",
    "{{ }}",
    "{{ .inputs.id .inputs.n }}",
    '{{ "a" | "b" }}',
    "{{ .inputs.id ) }}",
    "{{ index .inputs.items 9 }}",
    '{{ index .inputs.id "x" }}',
    "{{ lower }}",
    "{{ .inputs.missing.deeper }}",
]


@pytest.mark.parametrize("template", TEMPLATES)
def test_key_matches_go(go_ref: GoRef, template: str) -> None:
    assert _python_key(template, INPUTS) == _go_key(go_ref, template, INPUTS)


@go_settings(100)
@given(
    value=st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.booleans()
    | st.text(max_size=6)
)
def test_key_of_any_scalar_matches_go(go_ref: GoRef, value: Any) -> None:
    # Go decodes the inputs as JSON (every number a float64), as the impulse path hands them on.
    inputs = json.loads(json.dumps({"v": value}))
    for template in ("{{ .inputs.v }}", "v={{ .inputs.v }};"):
        rendered = go_ref.call("trigger_key", template, inputs, "s", "n", "i", "n")
        if not rendered["key"]:
            continue  # Go refuses an empty key; covered below
        assert _python_key(template, inputs) == _go_key(go_ref, template, inputs)


@pytest.mark.parametrize("template", BAD_TEMPLATES)
def test_templates_go_refuses_are_refused(go_ref: GoRef, template: str) -> None:
    go = go_ref.err("trigger_key", template, INPUTS, "s", "n", "i", "n")
    assert go is not None, f"Go accepts {template!r}"
    with pytest.raises(TemplateError):
        _python_key(template, INPUTS)


def test_token_must_equal_the_key(go_ref: GoRef) -> None:
    key = _go_key(go_ref, "{{ .inputs.id }}", INPUTS)
    assert _python_key("{{ .inputs.id }}", INPUTS, token=key) == key
