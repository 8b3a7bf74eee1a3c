"""Typed decode with Go weak typing; error paths name the offending field.

See docs/contract/runtime-environment.md#inputs-config-secrets and docs/differences.md.
"""

from __future__ import annotations

import dataclasses
import enum
import os
from datetime import timedelta
from typing import Annotated, Any, Literal, TypedDict

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubu._runtime.decode import decode, is_decodable
from bubu.errors import SchemaValidationError


@pytest.fixture(autouse=True)
def _fresh_type_tables() -> None:
    # decode caches per-type tables; a test must not lean on tables an earlier test built
    # (under mutation testing they would hide the mutated table code).
    from bubu._runtime import decode as module

    module._FIELDS.clear()
    module._NODE_FLAGS.clear()
    module._TYPE_INFO.clear()


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


def test_map_from_empty_list_or_list_of_objects_struct_refuses_a_list() -> None:
    # Go-pinned in test_decode_go.py (mapstructure merges a list of maps into a map only).
    assert decode({"tags": []}, Inputs).tags == {}
    assert decode({"tags": [{"a": "1"}, {"b": 2}, {"a": 3}]}, Inputs).tags == {"a": 3, "b": 2}
    for value in ([], [{"maxRetries": 1}]):
        with pytest.raises(SchemaValidationError, match=r"^\$\.limits: expected object, got array"):
            decode({"limits": value}, Inputs)
    with pytest.raises(SchemaValidationError, match=r"^\$\.tags\[1\]: expected object, got int"):
        decode({"tags": [{"a": 1}, 2]}, Inputs)


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


# Fewer examples under mutation testing: every decode mutant runs this (scripts/mutants.py).
@settings(max_examples=60 if os.environ.get("BUBU_MUTANTS") else 400, deadline=None)
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


# --- key tables: which spelling wins when the looser tables are ambiguous ---


def test_exact_encoded_name_wins_where_case_folding_is_ambiguous() -> None:
    class Cased(msgspec.Struct):
        a: int = 0
        A: int = 0

    assert decode({"a": 1, "A": 2}, Cased) == Cased(a=1, A=2)
    assert decode({"A": 2}, Cased) == Cased(A=2)


def test_exact_python_name_wins_where_case_folding_is_ambiguous() -> None:
    class Named(msgspec.Struct, rename="camel"):
        max_retries: int = 0
        other: int = msgspec.field(default=0, name="MAX_RETRIES")

    assert decode({"max_retries": 1}, Named) == Named(max_retries=1)
    assert decode({"MAX_RETRIES": 2}, Named) == Named(other=2)
    assert decode({"Max_Retries": 3}, Named) == Named()  # folds onto both: matches neither


def test_case_folding_wins_where_ignoring_separators_is_ambiguous() -> None:
    class Twins(msgspec.Struct):
        a_b: int = 0
        ab: int = 0

    assert decode({"A_B": 1}, Twins) == Twins(a_b=1)
    assert decode({"AB": 2}, Twins) == Twins(ab=2)


def test_separators_in_an_encoded_name_are_ignored() -> None:
    class Kebab(msgspec.Struct):
        x: int = msgspec.field(default=0, name="max-retries")

    assert decode({"MaxRetries": 3}, Kebab) == Kebab(x=3)
    assert decode({"max_retries": 4}, Kebab) == Kebab(x=4)


# --- unions (Go has none: bubu's rule, first member that takes the value) ---


class Unions(msgspec.Struct):
    n: int | str = 0
    s: str | int = ""
    rows: list[Item] | str = ""
    table: dict[str, int] | bool = False
    pair: tuple[int, str] | None = None


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"n": "12"}, Unions(n=12)),
        ({"n": "x"}, Unions(n="x")),
        ({"n": True}, Unions(n=1)),
        ({"s": 5}, Unions(s="5")),
        ({"rows": [{"qty": "2"}]}, Unions(rows=[Item(qty=2)])),
        ({"rows": "none"}, Unions(rows="none")),
        ({"table": {"a": "3"}}, Unions(table={"a": 3})),
        ({"table": "t"}, Unions(table=True)),
        ({"pair": ["1", 2]}, Unions(pair=(1, "2"))),
        ({"pair": None}, Unions()),
    ],
)
def test_multi_member_unions_take_the_first_member_that_accepts(
    data: dict[str, Any], expected: Unions
) -> None:
    assert decode(data, Unions) == expected


def test_union_refusal_reports_the_first_member_error() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"n": [1]}, Unions, path="$.c")
    assert str(info.value) == "$.c.n: expected int, got array"
    with pytest.raises(SchemaValidationError) as info:
        decode({"rows": [{"name": "x"}]}, Unions)
    assert str(info.value) == "$.rows[0].qty: missing required field"


def test_union_with_only_msgspec_errors_lets_msgspec_report() -> None:
    class Lit(msgspec.Struct):
        v: Literal["a"] | Literal[1] = "a"

    with pytest.raises(SchemaValidationError, match=r"^\$\.v: "):
        decode({"v": "b"}, Lit)


def test_tuple_fields_walk_each_item() -> None:
    class Pair(msgspec.Struct):
        p: tuple[int, bool] = (0, False)

    assert decode({"p": ["3", "t"]}, Pair) == Pair(p=(3, True))
    with pytest.raises(SchemaValidationError) as info:
        decode({"p": ["3", "x"]}, Pair)
    assert info.value.path == "$.p[1]"


def test_dict_keys_are_converted_and_paths_name_them() -> None:
    class Keys(msgspec.Struct):
        by_id: dict[int, bool] = {}

    assert decode({"by_id": {"7": "1"}}, Keys) == Keys(by_id={7: True})
    with pytest.raises(SchemaValidationError) as info:
        decode({"by_id": {"x": True}}, Keys, strict=True)
    assert str(info.value) == "$.by_id.x: expected int, got a string that is not an integer"
    with pytest.raises(SchemaValidationError) as info:
        decode({"by_id": {"7": "maybe"}}, Keys, strict=True)
    assert info.value.path == '$.by_id["7"]'


def test_float_refusal_message_names_the_problem_not_the_value() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"ratio": "0x10"}, Inputs)
    assert str(info.value) == "$.ratio: expected float, got a string that is not a number"


# --- the fast path: only exact keys, everywhere in the value ---
# The nested types have defaults everywhere, so msgspec's strict convert (the fast path) would
# succeed and silently drop a case-variant key: only the key check keeps it on the walk.


class Opt(msgspec.Struct):
    qty: int = 0


class Deep(msgspec.Struct):
    one: Opt | None = None
    rows: list[Opt] = []
    by_name: dict[str, Opt] = {}
    plain: dict[str, int] = {}
    pair: tuple[Opt, int] = (Opt(), 0)
    inner: Opt = msgspec.field(default_factory=Opt)
    maybe_rows: list[Opt] | None = None
    opt_rows: list[Opt | None] = []
    opt_map: dict[str, Opt | None] = {}


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"one": {"QTY": 1}}, Deep(one=Opt(qty=1))),
        ({"inner": {"Qty": 1}}, Deep(inner=Opt(qty=1))),
        ({"rows": [{"qty": 1}, {"QTY": 2}]}, Deep(rows=[Opt(qty=1), Opt(qty=2)])),
        ({"by_name": {"a": {"qty": 1}, "b": {"Qty": 2}}}, Deep(by_name={"a": Opt(1), "b": Opt(2)})),
        ({"By_Name": {"a": {"qty": 1}}}, Deep(by_name={"a": Opt(1)})),
        ({"one": None, "plain": {"Q": 1}}, Deep(plain={"Q": 1})),
        ({"rows": {"qty": 3}}, Deep(rows=[Opt(qty=3)])),
        ({"by_name": []}, Deep()),
        ({"pair": [{"QTY": 4}, 5]}, Deep(pair=(Opt(qty=4), 5))),
        ({"maybe_rows": [{"QTY": 6}]}, Deep(maybe_rows=[Opt(qty=6)])),
        ({"opt_rows": [None, {"QTY": 7}]}, Deep(opt_rows=[None, Opt(qty=7)])),
        ({"opt_map": {"a": None, "b": {"QTY": 8}}}, Deep(opt_map={"a": None, "b": Opt(qty=8)})),
        (
            {"one": {"qty": 1}, "rows": [{"qty": 2}], "by_name": {"k": {"qty": 3}}},
            Deep(one=Opt(1), rows=[Opt(2)], by_name={"k": Opt(3)}),
        ),
    ],
)
def test_case_variant_keys_anywhere_are_honoured(data: dict[str, Any], expected: Deep) -> None:
    assert decode(data, Deep) == expected


def test_struct_instances_inside_values_pass_through() -> None:
    assert decode({"one": Opt(qty=4), "rows": [Opt(qty=5)]}, Deep) == Deep(
        one=Opt(qty=4), rows=[Opt(qty=5)]
    )
    assert decode(Deep(rows=[Opt(1)]), Deep) == Deep(rows=[Opt(1)])


class Cat(msgspec.Struct, tag=True):
    lives: int = 9


class Dog(msgspec.Struct, tag=True):
    good: bool = True


class Pets(msgspec.Struct):
    pet: Cat | Dog = msgspec.field(default_factory=Cat)
    cat: Cat | None = None


def test_tagged_structs_keep_their_tag() -> None:
    assert decode({"cat": {"type": "Cat", "lives": 3}}, Pets) == Pets(cat=Cat(lives=3))
    assert decode({"cat": {"type": "Cat", "LIVES": "3"}}, Pets) == Pets(cat=Cat(lives=3))
    assert decode({"cat": {"type": "Cat", "LIVES": 3}}, Pets) == Pets(cat=Cat(lives=3))
    with pytest.raises(SchemaValidationError, match=r"^\$\.pet\.type: Invalid value 'Bird'$"):
        decode({"pet": {"type": "Bird"}}, Pets)
    assert decode({"cat": {"type": "Cat", "lives": 3}}, Pets, strict=True).cat == Cat(lives=3)
    assert decode({"pet": {"type": "Dog", "good": "f"}}, Pets).pet == Dog(good=False)


class TD(TypedDict):
    qty: int


class Holder(msgspec.Struct):
    td: TD | None = None


class OnlyCat(msgspec.Struct):
    cat: Cat | None = None


def test_keys_after_the_tag_are_checked_too() -> None:
    # One tagged member: the fast path applies, and must not stop checking at the tag key.
    assert decode({"cat": {"type": "Cat", "LIVES": 3}}, OnlyCat) == OnlyCat(cat=Cat(lives=3))
    assert decode({"cat": {"LIVES": 3, "type": "Cat"}}, OnlyCat) == OnlyCat(cat=Cat(lives=3))
    assert decode({"cat": {"type": "Cat", "lives": 3}}, OnlyCat) == OnlyCat(cat=Cat(lives=3))


def test_typed_dict_targets_are_walked() -> None:
    assert decode({"td": {"QTY": "2"}}, Holder) == Holder(td={"qty": 2})
    assert decode({"td": {"qty": 2}}, Holder) == Holder(td={"qty": 2})
    with pytest.raises(SchemaValidationError) as info:
        decode({"td": [1]}, Holder)
    assert str(info.value) == "$.td: expected object, got array"


def test_is_decodable_passes_any_and_plain_containers() -> None:
    assert is_decodable(Any)
    assert is_decodable(object)
    assert is_decodable(dict)
    assert is_decodable(list[int])
    assert not is_decodable(3)


def test_exact_encoded_name_differing_from_the_python_name_wins() -> None:
    class Renamed(msgspec.Struct):
        x: int = msgspec.field(default=0, name="Key")
        y: int = msgspec.field(default=0, name="KEY")

    assert decode({"Key": 1}, Renamed) == Renamed(x=1)
    assert decode({"KEY": 2, "Key": 1}, Renamed) == Renamed(x=1, y=2)
    # A weak conversion takes the walk, where the exact-name table decides.
    assert decode({"Key": "1"}, Renamed) == Renamed(x=1)
    assert decode({"KEY": "2", "Key": "1"}, Renamed) == Renamed(x=1, y=2)


class Color(enum.IntEnum):
    RED = 1


class EnumUnions(msgspec.Struct):
    v: Color | str = ""
    cs: list[Color] | str = ""
    cd: dict[str, Color] | str = ""
    anything: Any = 5


def test_union_members_are_tried_strictly() -> None:
    assert decode({"v": "1"}, EnumUnions).v == "1"  # not Color.RED: "1" is no int
    assert decode({"v": 1}, EnumUnions).v is Color.RED
    with pytest.raises(SchemaValidationError) as info:
        decode({"cs": ["1"]}, EnumUnions)
    assert str(info.value) == "$.cs: expected str, got array"
    with pytest.raises(SchemaValidationError) as info:
        decode({"cd": {"a": "1"}}, EnumUnions)
    assert str(info.value) == "$.cd: expected str, got object"


def test_null_for_an_any_field_is_kept() -> None:
    assert decode({"anything": None}, EnumUnions).anything is None
    assert decode({}, EnumUnions).anything == 5


class StrictHolder(msgspec.Struct):
    pair: tuple[Opt, int] = (Opt(), 0)
    rows: list[Opt] | str = ""
    lifted: list[Opt] = []


@pytest.mark.parametrize(
    ("data", "path"),
    [
        ({"pair": [{"qty": 1, "zz": 1}, 2]}, "$.pair[0].zz"),
        ({"rows": [{"qty": 1, "zz": 1}]}, "$.rows[0].zz"),
        ({"lifted": {"qty": 1, "zz": 1}}, "$.lifted[0].zz"),
    ],
)
def test_strict_mode_reaches_tuple_items_union_members_and_lifted_values(
    data: dict[str, Any], path: str
) -> None:
    assert decode(data, StrictHolder) is not None
    with pytest.raises(SchemaValidationError) as info:
        decode(data, StrictHolder, strict=True)
    assert info.value.path == path


def test_tuple_field_needs_an_array_of_its_length() -> None:
    class Pair(msgspec.Struct):
        p: tuple[int, bool] = (0, False)

    for value in ("ab", {"a": 1, "b": 2}, [1]):
        with pytest.raises(SchemaValidationError) as info:
            decode({"p": value}, Pair)
        assert info.value.path == "$.p"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("qty", {"a": 1}, "expected int, got object"),
        ("qty", b"x", "expected int, got bytes"),
        ("qty", None, "missing required field"),
        ("name", [1], "expected str, got array"),
        ("name", {"a": 1}, "expected str, got object"),
    ],
)
def test_refusals_name_the_json_type(field: str, value: Any, message: str) -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"qty": 1, field: value}, Item)
    assert str(info.value) == f"$.{field}: {message}"


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("ratio", [1.5], "expected float, got array"),
        ("ratio", "x", "expected float, got a string that is not a number"),
        ("enabled", "yes", "expected bool, got a string that is not a Go bool"),
        ("enabled", [True], "expected bool, got array"),
        ("limits", 3, "expected object, got int"),
        ("tags", "x", "expected object, got str"),
    ],
)
def test_refusal_messages(field: str, value: Any, message: str) -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({field: value}, Inputs)
    assert str(info.value) == f"$.{field}: {message}"


# --- decode's own entry paths ---


def test_unhashable_annotations_are_decoded_without_the_cache() -> None:
    assert decode(True, Annotated[int, {"note": 1}]) == 1
    assert decode("7", Annotated[int, {"note": 1}]) == 7


def test_tagged_struct_without_its_tag_decodes() -> None:
    assert decode({"cat": {"LIVES": 3}}, OnlyCat) == OnlyCat(cat=Cat(lives=3))


def test_top_level_optional_struct() -> None:
    assert decode({"QTY": 1}, Opt | None) == Opt(qty=1)
    assert decode({"qty": 1}, Opt | None) == Opt(qty=1)
    assert decode(None, Opt | None) == Opt()


def test_pass_through_targets_take_any_shape() -> None:
    assert decode([1, 2], dict) == [1, 2]
    assert decode("x", object) == "x"
    assert decode(None, dict) == {}
    assert decode(None, Any) == {}


def test_undecodable_target_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"^cannot decode into 3: "):
        decode({}, 3)


class Either(msgspec.Struct):
    f: Item | Literal["x"] = "x"


def test_missing_field_reported_by_msgspec_names_the_field() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode({"f": {"name": "n"}}, Either, path="$.in")
    assert str(info.value) == "$.in.f.qty: missing required field"
    assert info.value.path == "$.in.f.qty"
    with pytest.raises(SchemaValidationError) as info:
        decode({"name": "n"}, Item | Literal["x"])
    assert str(info.value) == "$.qty: missing required field"


def test_top_level_msgspec_error_gets_the_base_path() -> None:
    with pytest.raises(SchemaValidationError) as info:
        decode("x", Literal["a"], path="$.in")
    assert str(info.value) == "$.in: Invalid enum value 'x'"
    assert info.value.path == "$.in"


class ColorBox(msgspec.Struct):
    c: Color = Color.RED
    d: int = 0


def test_msgspec_decides_enums_laxly_after_the_walk() -> None:
    assert decode({"c": "1", "D": 1}, ColorBox) == ColorBox(c=Color.RED, d=1)


class Arr(msgspec.Struct, array_like=True):
    a: int
    b: str


class HoldsArr(msgspec.Struct):
    p: Arr | None = None
    q: int = 0


def test_array_like_structs_are_left_to_msgspec() -> None:
    assert decode({"p": [1, "x"], "Q": 1}, HoldsArr) == HoldsArr(p=Arr(1, "x"), q=1)


@pytest.mark.parametrize("key", ["CHILDREN", "children"])  # the walk; the fast path's key check
def test_runaway_nesting_is_a_schema_error(key: str) -> None:
    doc: dict[str, Any] = {}
    cur = doc
    for _ in range(3000):
        nxt: dict[str, Any] = {}
        cur[key] = [nxt]
        cur = nxt
    with pytest.raises(SchemaValidationError) as info:
        decode(doc, Plain, path="$.in")
    assert str(info.value) == "$.in: value nested too deeply"
    assert info.value.path == "$.in"


class Shared(msgspec.Struct):
    d: timedelta = timedelta(0)
    a: Opt = msgspec.field(default_factory=Opt)
    b: Opt = msgspec.field(default_factory=Opt)


def test_type_flags_see_past_a_shared_node_and_are_kept_per_type() -> None:
    # Limits comes after a type whose flags are all false; Shared reaches Opt twice (one
    # type_info node) before its timedelta: both must still take the walk, which refuses ISO 8601
    # durations (msgspec's fast path would take them).
    assert decode(5, int) == 5
    with pytest.raises(SchemaValidationError, match="time: invalid duration"):
        decode({"timeout": "PT5S"}, Limits)
    with pytest.raises(SchemaValidationError, match="time: invalid duration"):
        decode({"d": "PT5S"}, Shared)
