"""Go parse rules: durations, Atoi, ParseBool, truthy sets, envInt/envDur, JSON objects."""

from __future__ import annotations

import logging

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubu._runtime import parse
from bubu._runtime.parse import (
    GoParseError,
    env_dur,
    env_int,
    format_go_duration,
    format_go_duration_ns,
    go_trim_space,
    parse_atoi,
    parse_bool_go,
    parse_go_duration,
    parse_go_duration_ns,
    parse_json_array,
    parse_json_object,
)
from bubu.errors import ContractError

# --- time.ParseDuration ---


@pytest.mark.parametrize(
    ("text", "ns"),
    [
        ("0", 0),
        ("+0", 0),
        ("-0", 0),
        ("0s", 0),
        ("5s", 5_000_000_000),
        ("300ms", 300_000_000),
        ("1.5h", 5_400_000_000_000),
        ("-1.5h", -5_400_000_000_000),
        ("1h2m3.5s", 3_723_500_000_000),
        ("1ns", 1),
        ("1us", 1_000),
        ("1\u00b5s", 1_000),
        ("1\u03bcs", 1_000),
        ("1.5ms", 1_500_000),
        (".5s", 500_000_000),
        ("1.s", 1_000_000_000),
        ("30m0s", 1_800_000_000_000),
        ("1h0m0s", 3_600_000_000_000),
        ("9223372036854775807ns", (1 << 63) - 1),
        ("-9223372036854775808ns", -(1 << 63)),
        ("2562047h47m16.854775807s", (1 << 63) - 1),
        # Go ignores fraction digits that no longer fit.
        ("1.0000000000000000000000001s", 1_000_000_000),
    ],
)
def test_parse_go_duration_accepts_go_syntax(text: str, ns: int) -> None:
    assert parse_go_duration_ns(text) == ns
    assert parse_go_duration(text) == ns / 1e9


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", 'time: invalid duration ""'),
        ("-", 'time: invalid duration "-"'),
        (".", 'time: invalid duration "."'),
        ("x", 'time: invalid duration "x"'),
        ("s", 'time: invalid duration "s"'),
        ("1", 'time: missing unit in duration "1"'),
        ("1d", 'time: unknown unit "d" in duration "1d"'),
        ("1h ", 'time: unknown unit "h " in duration "1h "'),
        (" 1h", 'time: invalid duration " 1h"'),
        ("1e3s", 'time: unknown unit "e" in duration "1e3s"'),
        ("9223372036854775808ns", 'time: invalid duration "9223372036854775808ns"'),
        ("2562047h47m16.854775808s", 'time: invalid duration "2562047h47m16.854775808s"'),
        ("1h\n", 'time: unknown unit "h\\x0a" in duration "1h\\x0a"'),
    ],
)
def test_parse_go_duration_rejects_with_go_message(text: str, message: str) -> None:
    with pytest.raises(GoParseError) as info:
        parse_go_duration_ns(text)
    assert str(info.value) == message


@pytest.mark.parametrize(
    ("seconds", "text"),
    [
        (0, "0s"),
        (1800, "30m0s"),
        (3600, "1h0m0s"),
        (1.5, "1.5s"),
        (0.5, "500ms"),
        (0.0015, "1.5ms"),
        (120.5, "2m0.5s"),
        (1.1, "1.1s"),
        (-90, "-1m30s"),
        (300, "5m0s"),
        (15, "15s"),
    ],
)
def test_format_go_duration_matches_duration_string(seconds: float, text: str) -> None:
    assert format_go_duration(seconds) == text


@pytest.mark.parametrize(
    ("ns", "text"),
    [(1, "1ns"), (999, "999ns"), (1_000, "1\u00b5s"), (1_500, "1.5\u00b5s"), (1_000_000, "1ms")],
)
def test_format_go_duration_ns_sub_second_units(ns: int, text: str) -> None:
    assert format_go_duration_ns(ns) == text


@given(st.integers(min_value=-(1 << 63) + 1, max_value=(1 << 63) - 1))
def test_go_duration_round_trips_any_int64(ns: int) -> None:
    assert parse_go_duration_ns(format_go_duration_ns(ns)) == ns


@given(st.text(max_size=20))
def test_parse_go_duration_raises_only_go_parse_error(text: str) -> None:
    try:
        value = parse_go_duration_ns(text)
    except GoParseError:
        return
    assert -(1 << 63) <= value < (1 << 63)


# --- strconv ---


@pytest.mark.parametrize(("text", "value"), [("0", 0), ("+5", 5), ("-12", -12), ("007", 7)])
def test_parse_atoi_accepts_sign_and_ascii_digits(text: str, value: int) -> None:
    assert parse_atoi(text) == value


@pytest.mark.parametrize(
    "text", ["", "+", "-", " 1", "1 ", "1_000", "1.0", "0x10", "\u0661", "1e3"]
)
def test_parse_atoi_rejects_like_go(text: str) -> None:
    with pytest.raises(GoParseError, match=r"^strconv\.Atoi: parsing .*: invalid syntax$"):
        parse_atoi(text)


def test_parse_atoi_out_of_range() -> None:
    with pytest.raises(GoParseError, match="value out of range"):
        parse_atoi("9223372036854775808")


@pytest.mark.parametrize("text", ["1", "t", "T", "TRUE", "true", "True"])
def test_parse_bool_go_true_set(text: str) -> None:
    assert parse_bool_go(text) is True


@pytest.mark.parametrize("text", ["0", "f", "F", "FALSE", "false", "False"])
def test_parse_bool_go_false_set(text: str) -> None:
    assert parse_bool_go(text) is False


@pytest.mark.parametrize("text", ["yes", "tRUE", "on", "", " true", "2"])
def test_parse_bool_go_rejects_others(text: str) -> None:
    with pytest.raises(GoParseError, match="strconv.ParseBool"):
        parse_bool_go(text)


def test_truthy_sets_are_separate_and_exact() -> None:
    assert frozenset({"1", "true", "yes", "y", "on"}) == parse.TRUTHY
    assert frozenset({"1", "true", "t", "yes", "y", "on", "debug"}) == parse.DEBUG_TRUTHY
    assert frozenset({"1", "true", "t", "yes", "y", "on"}) == parse.BOOL_TRUE
    assert frozenset({"0", "false", "f", "no", "n", "off"}) == parse.BOOL_FALSE
    assert frozenset({"0", "false", "no", "off"}) == parse.BRIDGE_OFF


@pytest.mark.parametrize(
    ("value", "truthy", "debug"),
    [
        (None, False, False),
        ("", False, False),
        ("TRUE", True, True),
        (" yes ", True, True),
        ("t", False, True),
        ("debug", False, True),
        ("off", False, False),
    ],
)
def test_is_truthy_and_is_debug(value: str | None, truthy: bool, debug: bool) -> None:
    assert parse.is_truthy(value) is truthy
    assert parse.is_debug(value) is debug


@pytest.mark.parametrize(
    ("value", "enabled"),
    [
        (None, True),
        ("", True),
        ("0", False),
        ("FALSE", False),
        ("No", False),
        ("off", False),
        ("f", True),
        ("n", True),
        ("anything", True),
        (" off", True),
    ],
)
def test_is_bridge_enabled_is_off_only_for_the_negative_set(
    value: str | None, enabled: bool
) -> None:
    assert parse.is_bridge_enabled(value) is enabled


def test_go_trim_space_keeps_information_separators() -> None:
    # unicode.IsSpace excludes U+001C..U+001F, which str.strip() removes.
    assert go_trim_space("\x1c5s\x1f") == "\x1c5s\x1f"
    assert go_trim_space("\t\n\v\f\r \x85\xa0\u3000 5s \u2028") == "5s"


# --- pkg/env GetInt / GetDuration ---


@pytest.mark.parametrize("raw", [None, "", "   "])
def test_env_int_unset_or_empty_gives_default_silently(
    raw: str | None, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env_int("BUBU_X", raw, 7) == 7
    assert caplog.records == []


@pytest.mark.parametrize("raw", ["abc", "0", "-3", "1.5", "1_0"])
def test_env_int_invalid_zero_negative_warns_and_defaults(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env_int("BUBU_X", raw, 7) == 7
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring invalid env var integer BUBU_X={raw!r}, using default 7"
    ]
    assert caplog.records[0].env == "BUBU_X"  # type: ignore[attr-defined]


def test_env_int_trims() -> None:
    assert env_int("BUBU_X", " 42\n", 7) == 42


@pytest.mark.parametrize("raw", ["abc", "0s", "-5s", "5"])
def test_env_dur_invalid_zero_negative_warns_and_defaults(
    raw: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env_dur("BUBU_X", raw, 30.0) == 30.0
    assert [r.getMessage() for r in caplog.records] == [
        f"ignoring invalid env var duration BUBU_X={raw!r}, using default 30s"
    ]


def test_env_dur_parses_trimmed_go_duration() -> None:
    assert env_dur("BUBU_X", " 1m30s ", 30.0) == 90.0
    assert env_dur("BUBU_X", None, 30.0) == 30.0


# --- JSON rules ---


@pytest.mark.parametrize("raw", [None, "", "  \n"])
def test_parse_json_object_blank_is_none(raw: str | None) -> None:
    assert parse_json_object("BUBU_TRIGGER_DATA", raw) is None


def test_parse_json_object_null_is_empty_dict() -> None:
    assert parse_json_object("BUBU_TRIGGER_DATA", "null") == {}


def test_parse_json_object_decodes_object() -> None:
    assert parse_json_object("BUBU_STEP_CONFIG", ' {"a": [1, 2.5, "x"]} ') == {"a": [1, 2.5, "x"]}


@pytest.mark.parametrize(
    ("raw", "detail"),
    [
        ("[1]", "expected a JSON object, got array"),
        ('"s"', "expected a JSON object, got string"),
        ("3", "expected a JSON object, got number"),
        ("true", "expected a JSON object, got bool"),
    ],
)
def test_parse_json_object_non_object_is_contract_error(raw: str, detail: str) -> None:
    with pytest.raises(ContractError) as info:
        parse_json_object("BUBU_TRIGGER_DATA", raw)
    assert str(info.value) == f"failed to unmarshal BUBU_TRIGGER_DATA: {detail}"
    assert info.value.variable == "BUBU_TRIGGER_DATA"


@pytest.mark.parametrize("raw", ["{", "{'a': 1}", "{} {}", "\ud800"])
def test_parse_json_object_invalid_json_is_contract_error(raw: str) -> None:
    with pytest.raises(ContractError, match=r"^failed to unmarshal BUBU_STEP_CONFIG: ") as info:
        parse_json_object("BUBU_STEP_CONFIG", raw)
    assert info.value.variable == "BUBU_STEP_CONFIG"


def test_parse_json_array_rules() -> None:
    assert parse_json_array("BUBU_TRANSPORTS", " ") is None
    assert parse_json_array("BUBU_TRANSPORTS", "null") is None
    assert parse_json_array("BUBU_TRANSPORTS", "[]") == []
    with pytest.raises(ContractError, match="expected a JSON array, got object"):
        parse_json_array("BUBU_TRANSPORTS", "{}")


# --- edges the mutation run showed untested ----------------------------------------------------


def test_env_int_and_env_dur_accept_the_smallest_positive_value(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env_int("BUBU_X", "1", 7) == 1
        assert env_dur("BUBU_Y", "1ns", 5.0) == 1e-9
        assert env_int("BUBU_X", None, 7) == 7
        assert env_dur("BUBU_Y", None, 5.0) == 5.0
    assert caplog.records == []  # neither a valid value nor an unset one is worth a warning


def test_invalid_values_log_the_variable_the_value_and_the_default(
    caplog: pytest.LogCaptureFixture,
) -> None:
    with caplog.at_level(logging.WARNING, logger="bubu.runtime"):
        assert env_int("BUBU_X", " zero ", 7) == 7
        assert env_dur("BUBU_Y", "-1s", 90.0) == 90.0
    fields = [(r.env, r.value, r.default) for r in caplog.records]  # type: ignore[attr-defined]
    assert fields == [("BUBU_X", "zero", 7), ("BUBU_Y", "-1s", "1m30s")]
    assert caplog.records[1].getMessage() == (
        "ignoring invalid env var duration BUBU_Y='-1s', using default 1m30s"
    )


def test_format_go_duration_refuses_non_finite_naming_the_value() -> None:
    with pytest.raises(ValueError, match=r"^cannot format non-finite duration nan$"):
        format_go_duration(float("nan"))
    with pytest.raises(ValueError, match=r"^cannot format non-finite duration -inf$"):
        format_go_duration(float("-inf"))


def test_bytes_from_os_environ_are_quoted_as_go_sees_them() -> None:
    # os.environ holds an invalid byte as a lone surrogate; Go quotes the byte itself.
    with pytest.raises(parse.GoParseError) as info:
        parse_go_duration_ns("1\udcffs")
    assert str(info.value) == 'time: unknown unit "\\xffs" in duration "1\\xffs"'
    with pytest.raises(parse.GoParseError) as info:
        parse_atoi("1\udcff")
    assert str(info.value) == 'strconv.Atoi: parsing "1\\xff": invalid syntax'
    assert parse.go_quote("\ud800") == '"\\xed\\xa0\\x80"'
    assert parse.go_quote("\udfff") == '"\\xed\\xbf\\xbf"'
    assert parse.go_quote("\ue000") == '"\\ue000"'  # private use: not printable, valid


def test_parse_json_array_errors_name_the_variable() -> None:
    with pytest.raises(ContractError) as info:
        parse_json_array("BUBU_TRANSPORTS", ' {"a": 1} ')
    assert str(info.value) == (
        "failed to unmarshal BUBU_TRANSPORTS: expected a JSON array, got object"
    )
    assert info.value.variable == "BUBU_TRANSPORTS"
    with pytest.raises(ContractError, match="expected a JSON array, got number$"):
        parse_json_array("BUBU_TRANSPORTS", "5")
    with pytest.raises(ContractError) as info:
        parse_json_array("BUBU_TRANSPORTS", "[")
    assert str(info.value).startswith("failed to unmarshal BUBU_TRANSPORTS: ")
    assert info.value.variable == "BUBU_TRANSPORTS"


@pytest.mark.parametrize(
    ("raw", "value"),
    [("1", True), (" TRUE ", True), ("t", True), ("On", True), ("y", True), ("yes", True)]
    + [("0", False), ("false", False), ("F", False), (" off\n", False), ("N", False)]
    + [("no", False)],
)
def test_parse_bool_set(raw: str, value: bool) -> None:
    assert parse.parse_bool_set(raw) is value


@pytest.mark.parametrize("raw", ["", "2", "enabled", "tru", "nope"])
def test_parse_bool_set_rejects_with_the_value(raw: str) -> None:
    with pytest.raises(parse.GoParseError) as info:
        parse.parse_bool_set(raw)
    assert str(info.value) == f"invalid boolean value {parse.go_quote(raw)}"
