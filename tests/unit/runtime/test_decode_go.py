"""Typed decode against Go itself: the Go SDK's ``UnmarshalFromMap`` (mapstructure, weak typing).

Expected values and refusals come from ``go_ref`` (tests/_goref.py), which decodes the same JSON
document with the Go SDK into Go types shaped like the Structs below (``weak_decode`` in
``tests/interop/cmd/vectors``). Where bubu departs from Go on purpose (docs/differences.md,
"Typed decode"), the test asserts Go's answer and bubu's, so the documented difference is checked.
"""

from __future__ import annotations

import json
import math
import struct
from datetime import timedelta
from typing import Any

import msgspec
import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bubu._runtime.decode import decode
from bubu.errors import SchemaValidationError
from tests._goref import GoError, GoRef, go_settings

pytestmark = pytest.mark.interop

_SETTINGS = go_settings(200)


@pytest.fixture(autouse=True)
def _fresh_type_tables() -> None:
    # decode caches per-type tables; a test must not lean on tables an earlier test built
    # (under mutation testing they would hide the mutated table code).
    from bubu._runtime import decode as module

    module._FIELDS.clear()
    module._NODE_FLAGS.clear()
    module._TYPE_INFO.clear()


class IntBox(msgspec.Struct):
    v: int = 0


class FloatBox(msgspec.Struct):
    v: float = 0.0


class StrBox(msgspec.Struct):
    v: str = ""


class BoolBox(msgspec.Struct):
    v: bool = False


class DurationBox(msgspec.Struct):
    v: timedelta = timedelta(0)


class IntsBox(msgspec.Struct):
    v: list[int] | None = None


class StrsBox(msgspec.Struct):
    v: list[str] | None = None


class StrMapBox(msgspec.Struct):
    v: dict[str, str] | None = None


BOXES: dict[str, type[msgspec.Struct]] = {
    "int": IntBox,
    "float": FloatBox,
    "string": StrBox,
    "bool": BoolBox,
    "duration": DurationBox,
    "ints": IntsBox,
    "strings": StrsBox,
    "string_map": StrMapBox,
}


class WItem(msgspec.Struct):
    """Go ``weakItem``."""

    qty: int = 0
    name: str = ""


class WObject(msgspec.Struct, rename="camel"):
    """Go ``weakObject`` (nil slices, maps and pointers are ``None``)."""

    max_retries: int = 0
    name: str = ""
    timeout: timedelta = timedelta(0)
    inner: WItem = msgspec.field(default_factory=WItem)
    items: list[WItem] | None = None
    tags: dict[str, str] | None = None
    counts: dict[str, int] | None = None
    flags: list[bool] | None = None
    by_name: dict[str, WItem] | None = None
    opt: WItem | None = None


def _ns(value: timedelta) -> int:
    return (value // timedelta(microseconds=1)) * 1000


def _go_us(ns: int) -> int:
    """Go nanoseconds as bubu holds them: timedelta has microseconds, cut toward zero."""
    cut = abs(ns) // 1000 * 1000
    return -cut if ns < 0 else cut


def _tagged(value: Any) -> Any:
    """A value with its type kept, so that ``True`` and ``1`` and ``1.0`` never compare equal."""
    if isinstance(value, float):
        return ("float", "nan" if math.isnan(value) else struct.pack("<d", value).hex())
    if isinstance(value, list):
        return ("list", [_tagged(v) for v in value])
    if isinstance(value, dict):
        return ("dict", {k: _tagged(v) for k, v in value.items()})
    return (type(value).__name__, value)


def _go_scalar(go_ref: GoRef, target: str, doc: str, strict: bool = False) -> Any:
    """Go's decoded ``v``, as a Python value of bubu's type; GoError when Go refuses."""
    args = [target, doc] + (["strict"] if strict else [])
    got = go_ref.call("weak_decode", *args)
    if target == "int":
        return int(got)
    if target == "float":
        return struct.unpack("<d", struct.pack("<Q", int(got)))[0]
    if target == "duration":
        return timedelta(microseconds=_go_us(int(got)) // 1000)
    if target == "ints":
        return [int(n) for n in got]
    return got


def _py_scalar(target: str, doc: str, strict: bool = False) -> Any:
    return decode(json.loads(doc), BOXES[target], strict=strict).v  # type: ignore[attr-defined]


def _both(go_ref: GoRef, target: str, value: Any) -> tuple[Any, Any]:
    """(Go, bubu) for ``{"v": value}``: the value or the string ``"error"``."""
    doc = json.dumps({"v": value})
    try:
        go = _tagged(_go_scalar(go_ref, target, doc))
    except GoError:
        go = "error"
    try:
        py = _tagged(_py_scalar(target, doc))
    except SchemaValidationError as exc:
        assert exc.path.startswith("$.v"), exc
        py = "error"
    return go, py


# The same answer as Go, value and type, or a refusal where Go refuses.
# fmt: off
SCALAR_CASES: list[tuple[str, Any]] = [
    *[
        ("int", v)
        for v in [
            "123", "-7", "+7", "0x1f", "0X1F", "-0x_1F", "0o17", "0O17", "017", "0_17", "00",
            "08", "0b101", "0B101", "0b", "0x", "1_000", "1__000", "_1", "1_", "", " 1", "1 ",
            "1.5", "abc", "\u0661\u0662", "\uff11", "9223372036854775807",
            "-9223372036854775808", "9223372036854775808", "-9223372036854775809",
            True, False, 3.0, -3.0, 12, 0, [1], {"a": 1},
        ]
    ],
    *[
        ("float", v)
        for v in [
            "1.5", "1e3", "1E+02", "-0.25", ".5", "1.", "1_000.5", "1_0e1_0", "0_1", "_1",
            "1_", "1__0", "1_.5", "", " 1", "1 ", "inf", "+Inf", "-INFINITY", "infinity",
            "infin", "nan", "NaN", "+nan", "-nan", "0x1p-2", "0X1.8P1", "-0x_1p0", "0x1_p0",
            "0x10", "0x.p1", "0x1p", "0o17", "0b1", "1e400", "-1e400", "0x1p2000",
            "0x1_0p0", "0x1p1_0", "0x1._8p0", "0x1.8_0p0", "0x1p_1", "+0x_1p0", "0x_p0",
            "0x__1p0", "0x1__0p0", "0x1p1_", "0xA_bp-4", "0x1p+1_0",
            "5e-400", "0x1p-2000", "1e", "e1", "\u0661\u0662", "\uff11.5", "abc",
            True, False, 2, -0.0, 0.1, 1e300, [1.5], {"a": 1},
        ]
    ],
    *[
        ("string", v)
        for v in [
            True, False, 42, -42, 0, 1.0, 2.5, -0.0, 1e21, 1e22, 1.5e-7, 123456.789,
            0.1, 1e-320, "x", "", [1], {"a": 1},
        ]
    ],
    *[
        ("bool", v)
        for v in [
            "true", "T", "t", "TRUE", "True", "tRUE", "1", "0", "f", "F", "False", "FALSE",
            "false", "", "yes", "on", " true", 1, 0, 0.5, -1, 0.0, True, False, [True],
        ]
    ],
    *[
        ("duration", v)
        for v in [
            "5s", "1h30m", "1.5s", "-1.5us", "1.5us", "-1.5h", "300ms", "1\u00b5s", "0",
            "", "5", "1d", "9223372036854775807ns", 5, 1.5, [1],
        ]
    ],
    *[
        ("ints", v)
        for v in ["3", 3, [1, "2", True], [], {}, ["x"], {"a": 1}, True]
    ],
    *[("strings", v) for v in ["a", 1.5, [1, True, "x"], [], {}, [[1]]]],
    *[
        ("string_map", v)
        for v in [
            {"a": 1, "b": True, "c": 2.5, "d": "x"}, [], [{"a": 1}, {"b": True}],
            [{"a": 1}, {"a": 2}], {}, [1], "x", 1,
        ]
    ],
]
# fmt: on


@pytest.mark.parametrize(("target", "value"), SCALAR_CASES)
def test_weak_scalar_conversions_match_go(go_ref: GoRef, target: str, value: Any) -> None:
    go, py = _both(go_ref, target, value)
    assert py == go


_NUMBERISH = st.text(alphabet="0123456789+-_.xXoObBeEpPaAfFnNiItTyY \u0661", max_size=8)


@given(text=_NUMBERISH)
@example(text="0x1p1")
@example(text="1e1_0")
@_SETTINGS
def test_weak_number_strings_match_go(go_ref: GoRef, text: str) -> None:
    for target in ("int", "float"):
        go, py = _both(go_ref, target, text)
        assert py == go, target


@given(value=st.floats(allow_nan=False, allow_infinity=False) | st.integers(-(2**53), 2**53))
@_SETTINGS
def test_weak_number_to_string_and_bool_match_go(go_ref: GoRef, value: float) -> None:
    for target in ("string", "bool", "float"):
        go, py = _both(go_ref, target, value)
        assert py == go, target


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan])
def test_non_finite_float_to_string_is_spelled_as_go_spells_it(go_ref: GoRef, value: float) -> None:
    # JSON cannot carry these; a Python caller can. strconv.FormatFloat ('f', as mapstructure
    # calls it) and fmt print them alike.
    assert decode({"v": value}, StrBox).v == go_ref.sprint_float(value)


# --- documented differences (docs/differences.md, "Typed decode") ---------------------------


@pytest.mark.parametrize(("value", "go_int"), [(1.5, 1), (-3.7, -3), (0.5, 0)])
def test_non_integral_float_for_int_go_truncates_bubu_refuses(
    go_ref: GoRef, value: float, go_int: int
) -> None:
    assert _go_scalar(go_ref, "int", json.dumps({"v": value})) == go_int
    with pytest.raises(SchemaValidationError, match=r"^\$\.v: expected int, got float"):
        _py_scalar("int", json.dumps({"v": value}))


@pytest.mark.parametrize(("value", "go_ns"), [(True, 1), (False, 0)])
def test_bool_for_duration_go_takes_as_nanoseconds_bubu_refuses(
    go_ref: GoRef, value: bool, go_ns: int
) -> None:
    assert go_ref.call("weak_decode", "duration", json.dumps({"v": value})) == str(go_ns)
    with pytest.raises(SchemaValidationError, match="duration values must be strings like 5s"):
        _py_scalar("duration", json.dumps({"v": value}))


# --- objects: key matching, nesting, slices and maps ----------------------------------------


def _go_object(go_ref: GoRef, doc: dict[str, Any], strict: bool = False) -> Any:
    args = ["object", json.dumps(doc)] + (["strict"] if strict else [])
    got = go_ref.call("weak_decode", *args)
    got["timeout"] = _go_us(got["timeout"])
    return _tagged(got)


def _py_object(doc: dict[str, Any], strict: bool = False) -> Any:
    got = msgspec.to_builtins(
        decode(json.loads(json.dumps(doc)), WObject, strict=strict), builtin_types=(timedelta,)
    )
    assert isinstance(got, dict)
    # Go marshals every field; bubu's zero values are the defaults above.
    full = {f: getattr(WObject(), f) for f in WObject.__struct_fields__}
    out = msgspec.to_builtins(full, builtin_types=(timedelta,))
    out = {WObject.__struct_encode_fields__[i]: v for i, v in enumerate(out.values())}
    out.update(got)
    out["timeout"] = _ns(out["timeout"])
    return _tagged(out)


OBJECT_CASES: list[dict[str, Any]] = [
    {},
    {"maxRetries": "3", "name": 7, "timeout": "1m"},
    {"MAXRETRIES": 5, "NAME": True},
    {"maxretries": "0x10", "Timeout": "-1.5us"},
    {"inner": {"qty": "2", "name": 1.5}},
    {"inner": {"QTY": 2, "Name": "x"}},
    {"inner": {}},
    {"items": [{"qty": "1"}, {"QTY": 2}]},
    {"items": {"qty": "2"}},
    {"items": {}},
    {"items": []},
    {"tags": {"a": 1, "b": True, "c": 2.5}},
    {"tags": [{"a": 1}, {"b": "x"}]},
    {"tags": []},
    {"counts": {"a": "0x1f", "b": True, "c": 3}},
    {"flags": ["t", "0", 2, 0, "FALSE"]},
    {"flags": "true"},
    {"byName": {"x": {"QTY": "4"}, "y": {"qty": 1}}},
    {"byName": {"x": {"Qty": 1, "nAmE": "n"}}},
    {"opt": {"QTY": 3}},
    {"opt": {"qty": 3}},
    {"maxRetries": None, "name": None, "timeout": None, "inner": None, "items": None},
    {"tags": None, "counts": None, "flags": None, "byName": None, "opt": None},
    {"inner": {"qty": None, "name": "n"}},
    {"items": [{"qty": None}]},
    {"unknown": 1, "name": "n"},
    {"inner": {"qty": 1, "extra": 2}},
    # refused by Go
    {"inner": []},
    {"inner": [{"qty": 1}, {"name": "x"}]},
    {"inner": "x"},
    {"items": [{"qty": "x"}]},
    {"counts": {"a": "1.5"}},
    {"timeout": 5},
    {"timeout": "5"},
    {"tags": "x"},
    {"flags": ["yes"]},
    {"byName": {"x": []}},
    {"opt": [1]},
]


@pytest.mark.parametrize("doc", OBJECT_CASES, ids=lambda d: json.dumps(d)[:60])
def test_weak_object_decode_matches_go(go_ref: GoRef, doc: dict[str, Any]) -> None:
    try:
        go = _go_object(go_ref, doc)
    except GoError:
        with pytest.raises(SchemaValidationError):
            _py_object(doc)
        return
    assert _py_object(doc) == go


@pytest.mark.parametrize(
    ("doc", "path"),
    [({"items": [None]}, "$.items[0]"), ({"tags": {"a": None}}, "$.tags.a")],
)
def test_null_list_item_or_map_value_go_zero_fills_bubu_refuses(
    go_ref: GoRef, doc: dict[str, Any], path: str
) -> None:
    go = go_ref.call("weak_decode", "object", json.dumps(doc))
    assert go["items"] in (None, [{"qty": 0, "name": ""}])
    assert go["tags"] in (None, {"a": ""})
    with pytest.raises(SchemaValidationError, match="got null") as info:
        _py_object(doc)
    assert info.value.path == path


@pytest.mark.parametrize(
    "doc",
    [
        {"unknown": 1},
        {"zzz": 1, "aaa": 2, "name": "n"},
        {"inner": {"qty": 1, "extra": 2}},
        {"items": [{"qty": 1, "x": 1}]},
        {"byName": {"k": {"nope": 1}}},
        {"opt": {"qty": 1, "y": 2}},
        {"name": "n", "inner": {"QTY": 1}},
        {"tags": {"anything": "goes"}},
    ],
    ids=lambda d: json.dumps(d)[:60],
)
def test_strict_mode_refuses_what_go_refuses(go_ref: GoRef, doc: dict[str, Any]) -> None:
    try:
        go = _go_object(go_ref, doc, strict=True)
    except GoError:
        with pytest.raises(SchemaValidationError, match="unknown field"):
            _py_object(doc, strict=True)
        return
    assert _py_object(doc, strict=True) == go
