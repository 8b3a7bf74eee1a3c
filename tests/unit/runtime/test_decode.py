"""Typed decode with Go weak typing; error paths name the offending field.

See docs/contract/runtime-environment.md#inputs-config-secrets and docs/differences.md.
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta
from typing import Annotated, Any, Literal

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubu._runtime.decode import decode, is_decodable
from bubu.errors import SchemaValidationError


class Item(msgspec.Struct):
    qty: int
    name: str = ""


class Limits(msgspec.Struct, rename="camel"):
    max_retries: int = 3
    timeout: timedelta = timedelta(seconds=5)


class Inputs(msgspec.Struct):
    items: list[Item] = []
    limits: Limits = msgspec.field(default_factory=Limits)
    enabled: bool = False
    ratio: float = 0.0
    label: str = ""
    tags: dict[str, int] = {}
    maybe: int | None = None
    mode: Literal["fast", "slow"] = "fast"


# --- weak typing ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("123", 123),
        ("-7", -7),
        ("+7", 7),
        ("0x1f", 31),
        ("0o17", 15),
        ("017", 15),
        ("0b101", 5),
        ("1_000", 1000),
        ("", 0),
        (True, 1),
        (False, 0),
        (3.0, 3),
        (12, 12),
    ],
)
def test_int_field_weak_conversions(value: Any, expected: int) -> None:
    assert decode({"qty": value}, Item).qty == expected


@pytest.mark.parametrize("value", ["1.5", "abc", " 1", "9223372036854775808", [1], {"a": 1}, 1.5])
def test_int_field_rejects_with_path(value: Any) -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"items": [{"qty": value}]}, Inputs, path="$.inputs")
    assert info.value.path == "$.inputs.items[0].qty"
    assert str(info.value).startswith("$.inputs.items[0].qty: expected int, got ")


@pytest.mark.parametrize(
    ("value", "expected"),
    [("1.5", 1.5), ("1e3", 1000.0), ("", 0.0), (True, 1.0), (2, 2), ("-0.25", -0.25)],
)
def test_float_field_weak_conversions(value: Any, expected: float) -> None:
    assert decode({"ratio": value}, Inputs).ratio == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (True, "1"),
        (False, "0"),
        (42, "42"),
        (1.0, "1"),
        (2.5, "2.5"),
        (1e21, "1000000000000000000000"),
        ("x", "x"),
    ],
)
def test_str_field_weak_conversions(value: Any, expected: str) -> None:
    assert decode({"label": value}, Inputs).label == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("true", True),
        ("T", True),
        ("1", True),
        ("0", False),
        ("False", False),
        ("", False),
        (1, True),
        (0, False),
        (0.5, True),
        (True, True),
    ],
)
def test_bool_field_weak_conversions(value: Any, expected: bool) -> None:
    assert decode({"enabled": value}, Inputs).enabled is expected


@pytest.mark.parametrize("value", ["yes", "on", "tRUE", [True]])
def test_bool_field_rejects_non_go_bools(value: Any) -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"enabled": value}, Inputs)
    assert info.value.path == "$.enabled"


def test_single_value_lifts_into_list_and_empty_object_is_empty_list() -> None:
    assert decode({"items": {"qty": "2"}}, Inputs).items == [Item(qty=2)]
    assert decode({"items": {}}, Inputs).items == []


def test_object_from_empty_list_or_list_of_objects() -> None:
    assert decode({"limits": []}, Inputs).limits == Limits()
    merged = decode({"limits": [{"maxRetries": 1}, {"timeout": "2s"}]}, Inputs).limits
    assert merged == Limits(max_retries=1, timeout=timedelta(seconds=2))


def test_nested_structs_and_dict_values() -> None:
    got = decode(
        {"items": [{"qty": "1", "name": 5}], "limits": {"maxRetries": "9"}, "tags": {"a": "3"}},
        Inputs,
    )
    assert got.items == [Item(qty=1, name="5")]
    assert got.limits.max_retries == 9
    assert got.tags == {"a": 3}


def test_optional_and_literal_fields() -> None:
    assert decode({"maybe": None}, Inputs).maybe is None
    assert decode({"maybe": "4"}, Inputs).maybe == 4
    assert decode({"mode": "slow"}, Inputs).mode == "slow"
    with pytest.raises(SchemaValidationError) as info:
        decode({"mode": "medium"}, Inputs, path="$.config")
    assert info.value.path == "$.config.mode"


# --- durations ---


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("5s", timedelta(seconds=5)),
        ("1h30m", timedelta(minutes=90)),
        ("250ms", timedelta(milliseconds=250)),
        ("-1s", timedelta(seconds=-1)),
        ("0", timedelta(0)),
    ],
)
def test_duration_fields_accept_go_strings(value: str, expected: timedelta) -> None:
    assert decode({"timeout": value}, Limits).timeout == expected


@pytest.mark.parametrize(("value", "kind"), [(5, "int"), (1.5, "float"), (True, "bool")])
def test_duration_fields_reject_numbers(value: Any, kind: str) -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"limits": {"timeout": value}}, Inputs, path="$.config")
    assert str(info.value) == (
        f"$.config.limits.timeout: duration values must be strings like 5s, not {kind}"
    )
    assert info.value.path == "$.config.limits.timeout"


def test_duration_field_bad_string_uses_go_error() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"timeout": "5 s"}, Limits)
    assert str(info.value) == '$.timeout: time: unknown unit " s" in duration "5 s"'


# --- field matching ---


def test_field_matching_rename_python_name_case_and_separators() -> None:
    assert decode({"maxRetries": 1}, Limits).max_retries == 1
    assert decode({"max_retries": 2}, Limits).max_retries == 2
    assert decode({"MAXRETRIES": 3}, Limits).max_retries == 3
    assert decode({"Max-Retries": 4}, Limits).max_retries == 4
    assert decode({"QTY": "5"}, Item).qty == 5


def test_exact_key_wins_over_case_insensitive_one() -> None:
    assert decode({"Qty": 1, "qty": 2}, Item).qty == 2
    assert decode({"qty": 2, "Qty": 1}, Item).qty == 2


def test_ambiguous_loose_spelling_matches_nothing() -> None:
    class Twins(msgspec.Struct):
        a_b: int = 0
        ab: int = 0

    assert decode({"A-B": 5}, Twins) == Twins()
    assert decode({"a_b": 1, "ab": 2}, Twins) == Twins(a_b=1, ab=2)


# --- strict mode and required fields ---


def test_unknown_keys_ignored_by_default_and_rejected_in_strict_mode() -> None:
    assert decode({"qty": 1, "extra": True}, Item) == Item(qty=1)
    with pytest.raises(SchemaValidationError) as info:
        decode({"items": [{"qty": 1, "zeta": 1, "alpha": 2}]}, Inputs, strict=True, path="$.inputs")
    assert str(info.value) == "$.inputs.items[0].alpha: unknown field(s): alpha, zeta"
    assert info.value.path == "$.inputs.items[0].alpha"


def test_strict_mode_duplicate_case_variant_is_unused() -> None:
    with pytest.raises(SchemaValidationError, match="unknown field"):
        decode({"qty": 1, "QTY": 2}, Item, strict=True)


def test_missing_required_field_path_names_the_field() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"items": [{"name": "x"}]}, Inputs, path="$.inputs")
    assert str(info.value) == "$.inputs.items[0].qty: missing required field"
    assert info.value.path == "$.inputs.items[0].qty"


def test_non_object_for_struct() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"limits": "fast"}, Inputs)
    assert str(info.value) == "$.limits: expected object, got str"


def test_dict_key_paths_quote_odd_keys() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"tags": {"a b": "x"}}, Inputs)
    assert info.value.path == '$.tags["a b"]'


class Bounded(msgspec.Struct):
    n: Annotated[int, msgspec.Meta(ge=0)]


class Outer(msgspec.Struct):
    rows: list[Bounded]


def test_constraint_errors_from_msgspec_keep_the_path() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"rows": [{"n": 1}, {"n": "-1"}]}, Outer, path="$.inputs")
    assert info.value.path == "$.inputs.rows[1].n"
    assert str(info.value) == "$.inputs.rows[1].n: Expected `int` >= 0"


# --- passthrough, zero value, other targets ---


def test_dict_and_any_pass_through() -> None:
    data = {"a": [1, {"b": 2}]}
    assert decode(data, dict) is data
    assert decode(data, dict[str, Any]) is data
    assert decode(data, Any) is data
    assert decode(None, dict) == {}


def test_none_decodes_as_empty_object() -> None:
    assert decode(None, Limits) == Limits()
    with pytest.raises(SchemaValidationError, match=r"^\$\.qty: missing required field$"):
        decode(None, Item)


def test_struct_instance_passes_through() -> None:
    item = Item(qty=1)
    assert decode(item, Item) is item


def test_dataclass_target() -> None:
    @dataclasses.dataclass
    class DC:
        count: int
        on: bool = False

    assert decode({"COUNT": "3", "on": "t"}, DC) == DC(count=3, on=True)


def test_is_decodable() -> None:
    assert is_decodable(Item)
    assert is_decodable(dict)
    assert not is_decodable(object())


# --- fuzz ---

_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=20,
)
_keys = st.sampled_from(
    ["items", "limits", "enabled", "ratio", "label", "tags", "maybe", "mode", "qty", "timeout", "x"]
)


@settings(max_examples=400, deadline=None)
@given(st.dictionaries(_keys | st.text(max_size=6), _json, max_size=8), st.booleans())
def test_decode_raises_only_schema_validation_error(data: dict[str, Any], strict: bool) -> None:
    try:
        result = decode(data, Inputs, strict=strict, path="$.inputs")
    except SchemaValidationError as exc:
        assert exc.path is not None
        assert exc.path.startswith("$.inputs")
        assert str(exc).startswith(exc.path + ": ")
    else:
        assert isinstance(result, Inputs)


# --- the fast path must not change results ---


class Plain(msgspec.Struct):
    qty: int = 0
    ratio: float = 0.0
    children: list[Plain] = []


def test_fast_path_does_not_drop_case_variant_keys() -> None:
    # Exact keys take msgspec's fast path; a case variant must still fill the field.
    assert decode({"qty": 5}, Plain).qty == 5
    assert decode({"QTY": 5}, Plain).qty == 5
    assert decode({"children": [{"Qty": 2}]}, Plain).children == [Plain(qty=2)]


def test_fast_path_respects_strict_mode_and_int_to_float() -> None:
    assert decode({"qty": 1, "ratio": 2}, Plain, strict=True) == Plain(qty=1, ratio=2.0)
    with pytest.raises(SchemaValidationError, match=r"^\$\.children\[0\]\.extra: unknown"):
        decode({"children": [{"extra": 1}]}, Plain, strict=True)


def test_iso8601_durations_are_not_accepted() -> None:
    with pytest.raises(SchemaValidationError, match="time: invalid duration"):
        decode({"timeout": "PT5S"}, Limits)


def test_recursive_struct_types_decode() -> None:
    got = decode({"children": [{"children": [{"qty": "3"}]}]}, Plain)
    assert got.children[0].children[0].qty == 3
