"""Go parse rules against Go itself: ``time.ParseDuration``, ``Duration.String``, ``strconv``.

Expected values and error texts come from ``go_ref`` (tests/_goref.py), which runs the Go code.
"""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bubu._runtime import parse
from tests._goref import GoRef, go_settings

pytestmark = pytest.mark.interop

_SETTINGS = go_settings(300)
INT64_MAX = (1 << 63) - 1
INT64_MIN = -(1 << 63)


def _go_duration(go_ref: GoRef, text: str) -> int | str:
    """Go's nanoseconds for ``text``, or its error text."""
    err = go_ref.err("parse_duration", text)
    return err if err is not None else int(go_ref.call("parse_duration", text))


def _py_duration(text: str) -> int | str:
    try:
        return parse.parse_go_duration_ns(text)
    except parse.GoParseError as exc:
        return str(exc)


EDGE_DURATIONS = [
    "",
    "0",
    "+0",
    "-0",
    "0s",
    "1",
    "1s",
    "1.1s",
    "1.5h",
    "-1.5h",
    ".5s",
    "1.s",
    ".s",
    "-.",
    "+",
    "1d",
    "1h2m3.5s",
    "300ms",
    "1us",
    "1\u00b5s",
    "1\u03bcs",
    "2h45m",
    "1h-2m",
    "9223372036854775807ns",
    "9223372036854775808ns",
    # a fraction past the uint64 guard: one more digit kept would change the nanoseconds
    ".169055709531388872799h",
    ".977092297945833360209h",
    "-9223372036854775808ns",
    "-9223372036854775809ns",
    "2562047h47m16.854775807s",
    "2562047h47m16.854775808s",
    "-2562047h47m16.854775808s",
    "-2562047h47m16.854775809s",
    "9223372036s854775807ns",
    "9223372036s854775808ns",
    "-9223372036s854775808ns",
    "-9223372036s854775809ns",
    "2562048h",
    "-2562048h",
    "1.00000000000000000000000000001s",
    "0.1234567890123456789012345h",
    "1.9999999999999999999s",
    "99999999999999999999s",
    "1e3s",
    " 1s",
    "1s ",
    "1 s",
    "1ss",
    "1sm",
    'x"y\\',
    "1\x80s",
    "1\x7fs",
    "1:s",
    ":1s",
    "1.:s",
    "1.5:s",
    "X1s",
    "1s:",
    "1A",
    "9223372036854775808x",
    "9223372036854775809x",
    "92233720368547758080x",
    "0.92233720368547758090s",
    "0.90000000000000000001h",
    "1.5\u00e9s",
    "1s.5",
    "1h.5m",
]


@pytest.mark.parametrize("text", EDGE_DURATIONS)
def test_parse_duration_matches_go_edge_cases(go_ref: GoRef, text: str) -> None:
    assert _py_duration(text) == _go_duration(go_ref, text)


_DURATION_TEXT = st.text(st.sampled_from(list('0123456789.+-nsuµμmhd x:A"\\')), max_size=14)
_DURATION_WORDS = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=10**20).map(str),
        st.sampled_from(["", ".", ".5", ".000000001", ".999999999999"]),
        st.sampled_from(["ns", "us", "µs", "ms", "s", "m", "h"]),
    ).map("".join),
    min_size=1,
    max_size=4,
).map("".join)


@_SETTINGS
@given(text=_DURATION_TEXT | _DURATION_WORDS | _DURATION_WORDS.map(lambda t: "-" + t))
def test_parse_duration_matches_go(go_ref: GoRef, text: str) -> None:
    assert _py_duration(text) == _go_duration(go_ref, text)


EDGE_NS = [
    0,
    1,
    -1,
    999,
    1000,
    1001,
    999_999,
    1_000_000,
    1_500_000,
    999_999_999,
    1_000_000_000,
    1_100_000_000,
    59_999_999_999,
    60_000_000_000,
    3_600_000_000_000,
    3_661_000_000_001,
    INT64_MAX,
    INT64_MIN,
    INT64_MIN + 1,
]


@_SETTINGS
@given(ns=st.integers(min_value=INT64_MIN, max_value=INT64_MAX))
def test_duration_string_matches_go(go_ref: GoRef, ns: int) -> None:
    assert parse.format_go_duration_ns(ns) == go_ref.call("duration_string", str(ns))


@pytest.mark.parametrize("ns", EDGE_NS)
def test_duration_string_matches_go_edge_cases(go_ref: GoRef, ns: int) -> None:
    assert parse.format_go_duration_ns(ns) == go_ref.call("duration_string", str(ns))


@pytest.mark.parametrize(
    "seconds", [0, 1, 1.0, 1.1, 0.5, 1.5, 60, 90.25, 1800, 3600.000001, -1.5, 2e-9, 1e-10]
)
def test_format_duration_from_seconds_matches_go(go_ref: GoRef, seconds: float) -> None:
    ns = round(seconds * 1_000_000_000)
    assert parse.format_go_duration(seconds) == go_ref.call("duration_string", str(ns))


EDGE_ATOI = [
    "0",
    "-0",
    "+0",
    "42",
    "+42",
    "-42",
    "007",
    "",
    "+",
    "-",
    " 1",
    "1 ",
    "1_000",
    "0x10",
    "１",
    "9223372036854775807",
    "9223372036854775808",
    "-9223372036854775808",
    "-9223372036854775809",
    "99999999999999999999999",
    "++1",
    "1e3",
    "1:",
    ":",
    "A",
    'a"b',
    "a\\b",
    "\n",
    "\t",
    "\r",
    "\x07",
    "\x7f",
    "\x80",
    "\u00ad",
    "\u2028",
    "\uffff",
    "\U0001f600",
    "\U000e0001",
    "é",
]


def _atoi_both(go_ref: GoRef, text: str) -> tuple[int | str, int | str]:
    err = go_ref.err("atoi", text)
    go: int | str = err if err is not None else int(go_ref.call("atoi", text))
    try:
        py: int | str = parse.parse_atoi(text)
    except parse.GoParseError as exc:
        py = str(exc)
    return py, go


@pytest.mark.parametrize("text", EDGE_ATOI)
def test_atoi_matches_go_edge_cases(go_ref: GoRef, text: str) -> None:
    py, go = _atoi_both(go_ref, text)
    assert py == go


@_SETTINGS
@given(text=st.text(st.sampled_from(list("+-0123456789 x:A")), max_size=21))
@example(text="9" * 19)
def test_atoi_matches_go(go_ref: GoRef, text: str) -> None:
    py, go = _atoi_both(go_ref, text)
    assert py == go


@pytest.mark.parametrize(
    "text",
    ["1", "t", "T", "TRUE", "true", "True", "0", "f", "F", "FALSE", "false", "False"]
    + ["", "yes", "tRUE", " true", "2", "on", "y"],
)
def test_parse_bool_matches_go(go_ref: GoRef, text: str) -> None:
    err = go_ref.err("parse_bool", text)
    if err is not None:
        with pytest.raises(parse.GoParseError) as caught:
            parse.parse_bool_go(text)
        assert str(caught.value) == err
    else:
        value = parse.parse_bool_go(text)
        assert type(value) is bool and value is go_ref.call("parse_bool", text)


_SPACES = [chr(c) for c in range(0, 0x21)] + ["\x85", "\xa0", "\u1680", "\u2000", "\u200a"]
_SPACES += ["\u200b", "\u2028", "\u2029", "\u202f", "\u205f", "\u3000", "\ufeff", "a", "b"]


@_SETTINGS
@given(text=st.text(st.sampled_from(_SPACES), max_size=8))
def test_trim_space_matches_go(go_ref: GoRef, text: str) -> None:
    assert parse.go_trim_space(text) == go_ref.call("trim_space", text)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("7", 7),
        (" 7 ", 7),
        ("9223372036854775807", INT64_MAX),
        ("9223372036854775808", 5),
        ("0", 5),
        ("-3", 5),
        ("x", 5),
        ("", 5),
        (None, 5),
    ],
)
def test_env_int_follows_go_atoi(go_ref: GoRef, raw: str | None, expected: int) -> None:
    # pkg/env.GetInt: a value Go's Atoi accepts and that is > 0 wins, anything else is the default.
    if raw is not None and raw.strip() and go_ref.err("atoi", raw.strip()) is None:
        assert int(go_ref.call("atoi", raw.strip())) == expected or expected == 5
    assert parse.env_int("BUBU_X", raw, 5) == expected
