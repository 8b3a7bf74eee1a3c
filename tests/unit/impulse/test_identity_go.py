"""Identity against Go itself: every expected name, hash and number comes from running the Go code.

``go_ref`` (tests/_goref.py) answers with the operator's ``pkg/runs/identity``, core's
``SafeLabelValue``, the Go SDK's ``ComposeDNS1123Name`` and ``encoding/json`` / ``fmt``. Inputs
are hand-picked edge cases plus Hypothesis-generated ones; the comparison is of exact strings, so
``false``, ``0`` and ``0.0`` can never pass for one another.
"""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bubu._k8s import identity
from tests._goref import GoRef, go_settings

pytestmark = pytest.mark.interop

_SETTINGS = go_settings(150)

# Every ASCII printable character (so each neighbour of [a-z0-9] is tried), the two non-ASCII
# characters Go lower-cases into ASCII, and a few other letters.
_NAME_CHARS = st.sampled_from(
    [chr(c) for c in range(0x20, 0x7F)]
    + ["\u0130", "\u212a", "é", "ß", "Σ", "\u00c0", "\t", "\x1c", "\x85", "\xa0", "\u3000"]
)
names = st.text(_NAME_CHARS, max_size=40)
long_names = st.integers(min_value=200, max_value=300).map(lambda n: ("ab-" * 120)[:n])

EDGE_TOKENS = [
    "",
    "abc",
    "ABC",
    "xyz",
    "a:b;c<d=e>f?g@h",
    "[a]b\\c^d_e`f{g|h}i~",
    "\u0130stanbul",
    "\u212aelvin",
    "Order#123",
    "---",
    "-a-",
    "a--b",
    "zz",
    "0b6f2f0e-1c1e-4c39-9c49-5d2d8a3f7a10",
    "t" * 300,
]
EDGE_STORIES = ["smoke-story", "My_Story", "s", "", "a" * 228, "a" * 229, "a-" * 126, "a" * 260]


@pytest.mark.parametrize("story", EDGE_STORIES)
@pytest.mark.parametrize("token", EDGE_TOKENS)
@pytest.mark.parametrize("ns", ["", "default"])
def test_names_match_go_on_edge_cases(go_ref: GoRef, ns: str, story: str, token: str) -> None:
    assert identity.derive_story_trigger_name(ns, story, token, "sub-1") == go_ref.call(
        "trigger_name", ns, story, token, "sub-1"
    )
    assert identity.derive_story_trigger_name(ns, story, "", token) == go_ref.call(
        "trigger_name", ns, story, "", token
    )
    assert identity.derive_story_run_name(ns, story, token) == go_ref.call(
        "run_name", ns, story, token
    )
    assert identity.derive_effect_claim_name(ns, story, token) == go_ref.call(
        "claim_name", ns, story, token
    )


@_SETTINGS
@given(ns=names, story=names | long_names, token=names | long_names)
def test_names_match_go(go_ref: GoRef, ns: str, story: str, token: str) -> None:
    assert identity.derive_story_trigger_name(ns, story, token, "s") == go_ref.call(
        "trigger_name", ns, story, token, "s"
    )
    assert identity.derive_story_run_name(ns, story, token) == go_ref.call(
        "run_name", ns, story, token
    )
    assert identity.derive_effect_claim_name(ns, story, token) == go_ref.call(
        "claim_name", ns, story, token
    )


@_SETTINGS
@given(ns=names, run=names | long_names, step=names | long_names)
@example(ns=" ns ", run=" r ", step=" s ")
@example(ns="\x1cns\x1f", run="\x85r\u3000", step="\x1ds\xa0")
@example(ns="ns", run="r" * 230, step="s" * 10)
@example(ns="", run="r" * 239, step="s" * 3)
@example(ns="", run="r" * 238, step="s" * 3)
def test_idempotency_key_matches_go(go_ref: GoRef, ns: str, run: str, step: str) -> None:
    assert identity.step_run_idempotency_key(ns, run, step) == go_ref.call(
        "idempotency_key", ns, run, step
    )


@_SETTINGS
@given(value=names | long_names)
@example(value="My_Run")
@example(value="a.b.c")
@example(value="x" * 63)
@example(value="x" * 64)
@example(value="-" * 70)
@example(value="a" * 51 + "-" + "b" * 20)
@example(value="a" * 52 + "--" + "b" * 20)
def test_label_and_dns_names_match_go(go_ref: GoRef, value: str) -> None:
    assert identity.safe_label_value(value) == go_ref.call("safe_label", value)
    assert identity.compose_dns1123_name(value) == go_ref.call("dns1123", value)
    assert identity.compose_dns1123_name(value, "b", value) == go_ref.call(
        "dns1123", value, "b", value
    )


# --- canonical JSON and the input hash ---------------------------------------------------------

_TEXT = st.text(
    st.sampled_from(
        [chr(c) for c in range(0, 0x80)] + ["\u2028", "\u2029", "é", "\ufffd", "😀", "\u0085"]
    ),
    max_size=12,
)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**63), max_value=2**63)
    | _TEXT,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(_TEXT, children, max_size=4),
    max_leaves=20,
)


@_SETTINGS
@given(value=json_values)
@example(value={"flag": False, "zero": 0, "float": 0.0, "one": 1.0, "t": True})
@example(value=[False, 0, 0.0, -0.0, None, "", [], {}])
@example(value={"<&>": "\u2028<script>&amp;", "\x7f": "\x00\x1f"})
@example(value=[0.5, 1e21, 1e20, 1e-6, 1e-7, -1.5e-7, 5e-324, 2**53 + 1, 12345678901234567890])
def test_canonical_json_and_input_hash_match_go(go_ref: GoRef, value: object) -> None:
    raw = json.dumps(value)
    assert identity.go_canonical_json(value) == go_ref.call("canonical_json", raw)
    assert identity.compute_trigger_input_hash(value) == go_ref.call("input_hash", raw)


def test_absent_inputs_hash_like_go_empty_raw(go_ref: GoRef) -> None:
    assert identity.compute_trigger_input_hash(None) == go_ref.call("input_hash", "")
    assert identity.compute_trigger_input_hash({}) == go_ref.call("input_hash", "{}")


def test_lone_surrogates_encode_as_go_does(go_ref: GoRef) -> None:
    # Go decodes a lone surrogate escape into U+FFFD and writes it raw.
    raw = '{"a":"x\\ud800y","\\udfff":1}'
    assert identity.go_canonical_json(json.loads(raw)) == go_ref.call("canonical_json", raw)


# --- numbers: encoding/json and fmt -------------------------------------------------------------

EDGE_FLOATS = [
    0.0,
    -0.0,
    0.5,
    -0.5,
    1.0,
    -1.0,
    1.5,
    10.0,
    100000.0,
    999999.0,
    1e6,
    -1e6,
    1234567.0,
    1e20,
    1e21,
    -1e21,
    1e-4,
    1e-5,
    1e-6,
    1e-7,
    1.5e-7,
    123.456,
    5e-324,
    1.7976931348623157e308,
    2.0**53,
    2.0**63,
    0.1 + 0.2,
]


@pytest.mark.parametrize("value", EDGE_FLOATS, ids=repr)
def test_float_text_matches_go_edge_cases(go_ref: GoRef, value: float) -> None:
    assert identity.go_float(value) == go_ref.json_float(value)
    assert identity.go_format_g(value) == go_ref.sprint_float(value)


@_SETTINGS
@given(value=st.floats(allow_nan=False, allow_infinity=False))
def test_float_text_matches_go(go_ref: GoRef, value: float) -> None:
    assert identity.go_float(value) == go_ref.json_float(value)
    assert identity.go_format_g(value) == go_ref.sprint_float(value)


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_floats_print_as_go_and_refuse_json(go_ref: GoRef, value: float) -> None:
    assert identity.go_format_g(value) == go_ref.sprint_float(value)
    assert go_ref.err("json_float", go_ref.bits(value)) is not None
    with pytest.raises(ValueError, match="NaN and Inf"):
        identity.go_float(value)
