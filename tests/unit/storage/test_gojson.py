"""Go encoding/json bytes from bubu._runtime.gojson (docs/contract/identity.md#go-json)."""

from __future__ import annotations

import json
import math

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubu._k8s.identity import go_canonical_json
from bubu._runtime import gojson


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({"b": 1, "a": [True, None, "x"]}, b'{"a":[true,null,"x"],"b":1}'),
        (
            [1.0, 1e21, 1e-7, -0.0, 0.1, 123456789.0, 1e20, 1.5e-6],
            b"[1,1e+21,1e-7,-0,0.1,123456789,100000000000000000000,0.0000015]",
        ),
        ("<a href='x'>&</a>", b"\"\\u003ca href='x'\\u003e\\u0026\\u003c/a\\u003e\""),
        (
            '\u2028\u2029\x00\x1f\x7f\b\f\n\r\t"\\',
            b'"\\u2028\\u2029\\u0000\\u001f\x7f\\b\\f\\n\\r\\t\\"\\\\"',
        ),
        ("é😀", '"é😀"'.encode()),
        ("\ud800x", '"\ufffdx"'.encode()),
        (12345678901234567890, b"12345678901234567890"),
    ],
)
def test_marshal_matches_go(value: object, expected: bytes) -> None:
    assert gojson.marshal(value) == expected


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(json_values)
def test_marshal_agrees_with_the_slow_canonical_encoder(value: object) -> None:
    # identity.go_canonical_json is the reference (float64 semantics); ints within 2**53 agree.
    assert gojson.marshal(value).decode() == go_canonical_json(value)


@settings(max_examples=100, deadline=None)
@given(st.text(), st.integers(1, 7))
def test_string_chunks_concatenate_to_the_marshalled_string(text: str, chunk: int) -> None:
    assert b"".join(gojson.encode_string_chunks(text, chunk)) == gojson.marshal(text)


def test_refuses_what_go_refuses() -> None:
    with pytest.raises(ValueError, match=r"unsupported value.*at \$\.a\[1\]"):
        gojson.marshal({"a": [1, math.nan]})
    cyclic: dict[str, object] = {}
    cyclic["self"] = [cyclic]
    with pytest.raises(ValueError, match=r"cycle at \$\.self\[0\]"):
        gojson.marshal(cyclic)
    with pytest.raises(ValueError, match="keys must be strings"):
        gojson.marshal({1: "x"})


def test_a_shared_subtree_is_not_a_cycle() -> None:
    shared = {"k": 1.5}
    assert gojson.marshal({"a": shared, "b": [shared]}) == b'{"a":{"k":1.5},"b":[{"k":1.5}]}'


def test_structs_become_plain_data() -> None:
    class Point(msgspec.Struct):
        y: float
        x: int

    assert json.loads(gojson.marshal({"p": Point(1.0, 2)})) == {"p": {"x": 2, "y": 1}}


def test_trees_without_floats_are_not_copied() -> None:
    data = {"a": ["x", {"b": 1}]}
    assert gojson.prepare(data) is data


def test_utf8_len_is_go_len() -> None:
    assert gojson.utf8_len("abc") == 3
    assert gojson.utf8_len("é😀") == 6
