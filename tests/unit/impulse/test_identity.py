"""Identity algorithms against Go-produced vectors.

See docs/contract/identity.md#names, docs/contract/identity.md#names.
"""

from __future__ import annotations

import hashlib
import json
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubu._k8s import identity

EMPTY_HASH = "44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a"


@pytest.mark.parametrize(
    ("ns", "story", "key", "submission", "trigger", "run"),
    [
        (
            "default",
            "smoke-story",
            "test-trigger-token",
            "test-trigger-token",
            "smoke-story-trigger-5830b795c652e136",
            "smoke-story-test-trigger-token-5830b795c652e136",
        ),
        (
            "default",
            "smoke-story",
            "",
            "0b6f2f0e-1c1e-4c39-9c49-5d2d8a3f7a10",
            "smoke-story-trigger-a05673964e13e436",
            "smoke-story-0b6f2f0e-1c1e-4c39-9c49-5d2d8a3f7a10-a05673964e13e436",
        ),
        (
            "team-a",
            "My_Story",
            "Order#123",
            "Order#123",
            "My_Story-trigger-63de1cbdcb789a34",
            "My_Story-order-123-63de1cbdcb789a34",
        ),
        (
            "",
            "smoke-story",
            "abc",
            "abc",
            "smoke-story-trigger-8a816125183bbfd4",
            "smoke-story-abc",
        ),
    ],
)
def test_trigger_and_run_names_match_go_vectors(ns, story, key, submission, trigger, run):
    assert identity.derive_story_trigger_name(ns, story, key, submission) == trigger
    assert identity.derive_story_run_name(ns, story, key or submission) == run


@pytest.mark.parametrize(
    ("ns", "step_run", "key", "expected"),
    [
        ("default", "sr-1", "effect-1", "sr-1-effect-5837c012d29a3c18"),
        (
            "default",
            "storyrun-x-step-a",
            "charge:order/42",
            "storyrun-x-step-a-effect-15b7b38c0de1bcb6",
        ),
        ("test-ns", "step-1", "effect-3", "step-1-effect-afaed76b3b6d524b"),
    ],
)
def test_effect_claim_names_match_go_vectors(ns, step_run, key, expected):
    assert identity.derive_effect_claim_name(ns, step_run, key) == expected


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (("", "workflow", "abc123"), "workflow-abc123"),
        (("", "workflow", "Order 42 / Completed"), "workflow-order-42-completed-4669722e042c75d8"),
        (("team-a", "workflow", "deploy-42"), "workflow-deploy-42-57f8791470eb9006"),
        (("", "workflow", "!!!"), "workflow-85a42a866aa6da17"),
    ],
)
def test_story_run_name_recomputed_vectors(args, expected):
    assert identity.derive_story_run_name(*args) == expected


def test_trigger_name_for_key_equals_submission_vector():
    assert (
        identity.derive_story_trigger_name("team-a", "workflow", "deploy-42", "deploy-42")
        == "workflow-trigger-57f8791470eb9006"
    )


def test_empty_identity_gives_empty_names():
    assert identity.derive_story_trigger_name("ns", "s", "", "") == ""
    assert identity.derive_effect_claim_name("ns", "sr", "") == ""


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ({}, EMPTY_HASH),
        (None, EMPTY_HASH),
        ({"hello": "world"}, "93a23971a914e5eacbf0a8d25154cda309c3c1c72fbb9914d47c60f3cb681588"),
        (
            {"b": 1, "a": [1, 2.5, {"z": True, "y": None}]},
            "df92dc717727a5be73a233f3f9131e6c68f16a2d3a775ac635860314eb056a81",
        ),
    ],
)
def test_input_hash_matches_go_vectors(value, expected):
    assert identity.compute_trigger_input_hash(value) == expected


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (1.0, "1"),
        (1e-7, "1e-7"),
        (1e21, "1e+21"),
        (-0.0, "-0"),
        (12345678901234567890, "12345678901234567000"),
        (1e20, "100000000000000000000"),
        (0.000001, "0.000001"),
        (1.5e-7, "1.5e-7"),
        (1e100, "1e+100"),
        (123.456, "123.456"),
        (5e-324, "5e-324"),
        (1.7976931348623157e308, "1.7976931348623157e+308"),
        (0, "0"),
        (-2.5, "-2.5"),
    ],
)
def test_go_float_formatting(number, expected):
    assert identity.go_canonical_json(number) == expected


def test_go_string_escapes_html_and_line_separators():
    assert identity.go_canonical_json("<&>") == '"\\u003c\\u0026\\u003e"'
    assert identity.go_canonical_json("a\u2028b\u2029") == '"a\\u2028b\\u2029"'
    assert identity.go_canonical_json("\x01\n\t\x7f é") == '"\\u0001\\n\\t\x7f é"'
    assert identity.go_canonical_json('"\\') == '"\\"\\\\"'


def test_canonical_json_sorts_keys_and_has_no_whitespace():
    assert identity.go_canonical_json({"b": [1, 2], "a": {"d": None, "c": True}}) == (
        '{"a":{"c":true,"d":null},"b":[1,2]}'
    )


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), {1: "x"}, {"a": object()}, 10**400])
def test_canonical_json_rejects_non_json_naming_the_problem(bad):
    with pytest.raises(ValueError):
        identity.go_canonical_json(bad)


def test_canonical_json_error_names_the_path():
    with pytest.raises(ValueError, match=r"\$\.a\[1\]"):
        identity.go_canonical_json({"a": [1, float("nan")]})


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_go_float_round_trips(value):
    # Go's shortest formatting must parse back to the same float64.
    assert float(identity.go_float(value)) == value


json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.integers(min_value=-(2**60), max_value=2**60)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_canonical_json_is_valid_json_of_the_same_value(value):
    text = identity.go_canonical_json(value)
    assert "<" not in text and ">" not in text and "&" not in text

    def tagged(v):
        # Type-tagged, so False, 0 and 0.0 never compare equal (Go's JSON keeps them apart;
        # every number is a float64 there, so 1 and 1.0 are the same value).
        if v is None:
            return ("null",)
        if isinstance(v, bool):
            return ("bool", v)
        if isinstance(v, int | float):
            return ("number", float(v))
        if isinstance(v, str):
            return ("string", v)
        if isinstance(v, list):
            return ("array", [tagged(x) for x in v])
        return ("object", {k: tagged(x) for k, x in v.items()})

    # hypothesis text() never yields lone surrogates, so the value survives unchanged
    assert tagged(json.loads(text)) == tagged(value)


def test_canonical_json_is_independent_of_key_order():
    a = {"x": 1, "y": {"b": 2, "a": 1}}
    b = {"y": {"a": 1, "b": 2}, "x": 1.0}
    assert identity.compute_trigger_input_hash(a) == identity.compute_trigger_input_hash(b)


def _sha1_16(seed: str) -> str:
    return hashlib.sha1(seed.encode()).hexdigest()[:16]


@pytest.mark.parametrize("story_len", [228, 229, 230, 250, 260])
def test_long_names_are_cut_to_253_keeping_the_hash(story_len):
    # Go: "<story cut to 253 - len(infix) - 16>-trigger-<sha1/8 bytes hex>", the cut trimmed of
    # trailing '-' (test_identity_go.py checks the same against the Go code itself).
    story = ("s" * 227 + "-" + "x" * 40)[:story_len]
    trigger = identity.derive_story_trigger_name("ns", story, "k", "k")
    head = story if len(story) <= 228 else story[:228].rstrip("-")
    assert trigger == f"{head}-trigger-{_sha1_16(f'ns/{story}/k')}"
    claim = identity.derive_effect_claim_name("ns", story, "k")
    head = story if len(story) <= 229 else story[:229].rstrip("-")
    assert claim == f"{head}-effect-{_sha1_16(f'ns/{story}/k')}"
    token = "t" * 300
    run = identity.derive_story_run_name("ns", story, token)
    head = story if len(story) <= 236 else story[:236].strip("-")
    assert run == f"{head}-{_sha1_16(f'ns/{story}/{token}')}"
    assert max(len(trigger), len(claim), len(run)) <= 253


def test_story_run_name_token_case_only_difference_gets_hash():
    assert identity.derive_story_run_name("", "wf", "ABC") != "wf-abc"
    assert identity.derive_story_run_name("", "wf", "ABC").startswith("wf-abc-")


@pytest.mark.parametrize(
    ("name", "expected"),
    [("My_Run", "my-run"), ("", "resource"), ("---", "resource"), ("a.b.c", "a-b-c")],
)
def test_safe_label_value(name, expected):
    assert identity.safe_label_value(name) == expected


def test_safe_label_value_long_names_are_hashed_and_valid():
    value = identity.safe_label_value("x" * 100)
    assert len(value) <= 63
    assert re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", value)


def test_step_run_idempotency_key():
    assert identity.step_run_idempotency_key("ns", "run", "step") == "ns/ns/storyrun/run/step/step"
    assert identity.step_run_idempotency_key("", "run", "step") == "storyrun/run/step/step"
    assert identity.step_run_idempotency_key("ns", "r" * 300, "s").startswith("sha256:")


def test_compose_dns1123_name():
    assert identity.compose_dns1123_name("My", "Name!") == "my-name"
    assert identity.compose_dns1123_name("", "!!") == "resource"
    long = identity.compose_dns1123_name("a" * 80, "b")
    assert len(long) <= 63 and re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", long)


def test_go_format_g_matches_fmt_sprint():
    assert [identity.go_format_g(v) for v in (1e6, 100000.0, 1234567.0, 3.0, 1e-5, 0.0001)] == [
        "1e+06",
        "100000",
        "1.234567e+06",
        "3",
        "1e-05",
        "0.0001",
    ]


# --- edges the mutation run showed untested ----------------------------------------------------


def test_a_cut_inside_a_character_drops_the_partial_character():
    # Go slices bytes; the cut character is dropped rather than left as invalid UTF-8.
    story = "a" + "é" * 130  # 261 bytes: byte 228 and byte 236 fall inside an "é"
    trigger = identity.derive_story_trigger_name("ns", story, "k", "k")
    assert trigger == "a" + "é" * 113 + f"-trigger-{_sha1_16(f'ns/{story}/k')}"
    run = identity.derive_story_run_name("ns", story, "t" * 300)
    assert run == "a" + "é" * 117 + f"-{_sha1_16(f'ns/{story}/' + 't' * 300)}"


def test_a_cut_prefix_loses_trailing_dashes_and_nothing_else():
    story = "a" * 226 + "X-" + "b" * 40  # cut at 228: "...aX-"
    assert identity.derive_story_trigger_name("", story, "k", "k").startswith(
        "a" * 226 + "X-trigger-"
    )


@pytest.mark.parametrize("edge", ["X", "-"])
def test_a_cut_prefix_is_trimmed_of_dashes_only(edge):
    story = edge + "a" * 226 + "-" + edge + "b" * 40
    trigger = identity.derive_story_trigger_name("ns", story, "k", "k")
    assert trigger.startswith(edge + "a" * 226 + "-trigger-")  # Go trims trailing '-' only
    story = edge + "a" * 234 + "-" + edge + "b" * 40
    run = identity.derive_story_run_name("ns", story, "t" * 300)
    assert run.startswith((edge + "a" * 234).strip("-") + "-") and run.count("-") == 1


def test_an_all_dash_prefix_becomes_s():
    story = "-" * 260
    assert identity.derive_story_trigger_name("", story, "k", "k").startswith("s-trigger-")
    assert identity.derive_effect_claim_name("", story, "k").startswith("s-effect-")
    assert identity.derive_story_run_name("", story, "k" * 300).startswith("s-")
    assert len(identity.derive_story_run_name("", story, "k" * 300)) == 18


def test_a_short_prefix_is_kept_as_is_even_with_a_long_token():
    story = "a" * 235 + "-"  # 236 characters: not cut, so not trimmed (Go)
    run = identity.derive_story_run_name("", story, "t" * 300)
    assert run == f"{story}-{_sha1_16(f'/{story}/' + 't' * 300)}"


def test_go_json_keeps_ints_and_sorts_unless_told():
    value = {"b": 1, "a": {"d": 2**60, "c": [1.0, 0.5, 1e-7]}}
    assert identity.go_json(value) == b'{"a":{"c":[1,0.5,1e-7],"d":1152921504606846976},"b":1}'
    assert identity.go_json(value, sort_keys=False) == (
        b'{"b":1,"a":{"d":1152921504606846976,"c":[1,0.5,1e-7]}}'
    )
    assert identity.go_json({"<": "\u2028&"}) == b'{"\\u003c":"\\u2028\\u0026"}'
    assert identity.go_json([{"b": 1, "a": 2}], sort_keys=False) == b'[{"b":1,"a":2}]'


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ({"a": [1, float("nan")]}, r"^unsupported JSON number nan: NaN and Inf cannot be encoded "),
        ({"a": {1: 2}}, r"^object key 1 at \$\.a is not a string$"),
        ([10**400], r"^number at \$\[0\] is out of float64 range$"),
        (
            {"x": {"y": b"raw"}},
            r"^value at \$\.x\.y of type bytes is not JSON \(convert it with msgspec"
            r"\.to_builtins first\)$",
        ),
    ],
)
def test_encoding_errors_name_the_path(bad, message):
    with pytest.raises(ValueError, match=message):
        identity.go_canonical_json(bad)
    if bad != [10**400]:  # go_json keeps ints exact
        with pytest.raises(ValueError, match=message):
            identity.go_json(bad)


def test_only_surrogates_become_replacement_characters():
    assert identity.go_canonical_json("\ud800\udfff\ue000\ud7ff") == '"\ufffd\ufffd\ue000\ud7ff"'


@pytest.mark.parametrize(
    ("value", "name"),
    [
        (None, "null"),
        (True, "bool"),
        (0, "int"),
        (0.0, "float"),
        ("", "string"),
        ([], "array"),
        ((1,), "array"),
        ({}, "map"),
        (object(), "struct"),
    ],
)
def test_go_type_names(value, name):
    # Go's signalTypeSummary names for the reflect kind of the value.
    assert identity.go_type_name(value) == name


def test_utc_seconds_is_utc_whatever_the_local_zone(monkeypatch):
    import time
    from datetime import datetime, timedelta, timezone

    monkeypatch.setenv("TZ", "Asia/Tokyo")
    time.tzset()
    try:
        moment = datetime(2024, 1, 2, 3, 4, 5, tzinfo=timezone(timedelta(hours=-5)))
        assert identity.utc_seconds(moment) == "2024-01-02T08:04:05Z"
    finally:
        monkeypatch.undo()
        time.tzset()


def test_utc_seconds_is_whole_second_utc():
    from datetime import datetime, timedelta, timezone

    moment = datetime(2024, 1, 2, 5, 4, 5, 999999, tzinfo=timezone(timedelta(hours=2)))
    assert identity.utc_seconds(moment) == "2024-01-02T03:04:05Z"


@pytest.mark.parametrize(
    ("text", "parsed"),
    [
        ("2024-01-02T03:04:05Z", (2024, 1, 2, 3, 4, 5, 0)),
        ("2024-01-02T03:04:05.5+02:00", (2024, 1, 2, 1, 4, 5, 500000)),
        ("", None),
        (None, None),
        (17, None),
        ("yesterday", None),
        ("2024-01-02T03:04:05z", None),
    ],
)
def test_parse_time(text, parsed):
    from datetime import UTC

    got = identity.parse_time(text)
    if parsed is None:
        assert got is None
    else:
        assert got is not None and got.utcoffset() is not None
        at = got.astimezone(UTC)
        assert (at.year, at.month, at.day, at.hour, at.minute, at.second, at.microsecond) == parsed
