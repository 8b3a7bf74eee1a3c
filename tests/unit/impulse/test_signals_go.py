"""Signal summaries against Go: size and sha256 are taken over the bytes Go's json.Marshal writes.

``go_ref.call("marshal_typed", raw)`` marshals the value a Go caller would hold (integers as
int64, other numbers float64, maps with sorted keys, HTML-safe escapes), which is what the Go
SDK's ``summarizeSignalValue`` measures and hashes.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bubu._effects import bounded_details
from bubu._signals import build_signal_values
from tests._goref import GoRef, go_settings

pytestmark = pytest.mark.interop

# Go's signalTypeSummary names (reflect kinds of the typed value) and whether a length is given.
GO_TYPE = {bool: ("bool", False), int: ("int", False), float: ("float", False)}
GO_TYPE |= {str: ("string", True), list: ("array", True), dict: ("map", True)}

_TEXT = st.text(
    st.sampled_from(["a", "<", ">", "&", "é", "\u2028", "\x00", '"', "\\", "😀"]), max_size=6
)
values = st.recursive(
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _TEXT
    | st.none(),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(_TEXT, children, max_size=3),
    max_leaves=10,
).filter(lambda v: v is not None)


@go_settings(150)
@given(value=values)
@example(value={"html": "<b>&</b>", "n": 1, "f": 1e-7, "g": 1e21, "z": False})
@example(value=[0.5, 1.0, -0.0, 2**53 + 1])
@example(value="<é>")
@example(value=False)
def test_summary_matches_go(go_ref: GoRef, value: Any) -> None:
    raw = go_ref.call("marshal_typed", json.dumps(value)).encode("utf-8")
    stored, payload = build_signal_values("k", value, 1 << 20)
    kind, has_len = GO_TYPE[type(value)]
    expected: dict[str, Any] = {
        "sizeBytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "type": kind,
    }
    if has_len:
        expected["details"] = {"len": len(value.encode()) if isinstance(value, str) else len(value)}
    assert payload == expected
    assert stored == {**expected, "redacted": True}


class Reading(msgspec.Struct):
    where: str
    celsius: float
    tags: dict[str, int]


def test_struct_summary_is_a_go_struct(go_ref: GoRef) -> None:
    # Go writes a struct's fields in declaration order (and a map inside it sorted).
    _stored, payload = build_signal_values("k", Reading("<lab>", 1e-7, {"b": 1, "a": 2}), 8192)
    text = '{"where": "<lab>", "celsius": 1e-7, "tags": {"a": 2, "b": 1}}'
    raw = go_ref.call("marshal_raw", text)
    assert payload == {
        "sizeBytes": len(raw.encode()),
        "sha256": hashlib.sha256(raw.encode()).hexdigest(),
        "type": "struct",
    }


def test_truncated_effect_details_match_go(go_ref: GoRef) -> None:
    value = {"z": "<" * 40, "a": [1, 0.5, 1e21], "m": False}
    raw = go_ref.call("marshal_typed", json.dumps(value)).encode()
    assert bounded_details(value, len(raw)) == value  # exactly at the limit: kept whole
    assert bounded_details(value, len(raw) - 1) == {
        "truncated": True,
        "sizeBytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "type": "map",
        "details": {"len": 3},
    }
