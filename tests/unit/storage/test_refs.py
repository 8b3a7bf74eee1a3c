"""Reference recognition, path validation, selectors and ConfigMap/Secret ref parsing."""

from __future__ import annotations

from typing import Any

import pytest

from bubu._runtime import refs
from bubu._runtime.refs import KubeRef
from bubu.errors import StorageRefError


def test_storage_ref_needs_a_string_ref_and_only_allowed_keys() -> None:
    assert refs.storage_ref_selector({"$bubuStorageRef": "a.json"}) == ("a.json", "")
    assert refs.storage_ref_selector(
        {"$bubuStorageRef": "a.json", "$bubuStoragePath": "x[0]", "$bubuStorageSchema": "s"}
    ) == ("a.json", "x[0]")
    assert refs.storage_ref_selector({"$bubuStorageRef": "a.json", "other": 1}) is None
    assert refs.storage_ref_selector({"$bubuStorageRef": 5}) is None
    assert refs.storage_ref_selector({"$bubuStorageRef": "a", "$bubuStoragePath": 3}) is None
    assert refs.storage_ref_selector(["$bubuStorageRef"]) is None
    # containsStorageRef ignores the selector's type
    assert refs.is_storage_ref({"$bubuStorageRef": "a", "$bubuStoragePath": 3})


def test_contains_storage_ref_stops_at_the_depth_limit() -> None:
    nested: object = {"$bubuStorageRef": "a"}
    for _ in range(5):
        nested = {"x": [nested]}
    assert refs.contains_storage_ref(nested, 10)
    assert not refs.contains_storage_ref(nested, 5)
    assert not refs.contains_storage_ref({"a": 1}, 10)


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("", "storage reference path is empty"),
        (
            "/abs/x.json",
            "invalid storage reference: absolute paths not allowed (got '/abs/x.json')",
        ),
        ("a/../b", "invalid storage reference: path traversal detected (got 'a/../b')"),
        ("..", "invalid storage reference: path traversal detected (got '..')"),
        ("a\\..\\b", "invalid storage reference: path traversal detected (got 'a\\..\\b')"),
    ],
)
def test_bad_paths_are_refused(path: str, message: str) -> None:
    with pytest.raises(StorageRefError) as info:
        refs.validate_storage_path(path)
    assert str(info.value) == message
    assert info.value.ref == path


@pytest.mark.parametrize("path", ["a.json", "outputs/ns/x/y.json", "a/./b", "..a/b", "a../b"])
def test_good_paths_pass(path: str) -> None:
    refs.validate_storage_path(path)


def test_clean_path_is_go_filepath_clean() -> None:
    assert refs.clean_path("a//b/./c") == "a/b/c"
    assert refs.clean_path("a/b/") == "a/b"
    assert refs.clean_path("") == "."


DATA = {"items": [{"name": "a", "tags": [1, 2]}, {"name": "b"}, {"x": 1}], "m": {"k": None}}


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("items[0].name", "a"),
        (".items[1].name", "b"),
        ("items[*].name", ["a", "b", None]),
        ("items[*].tags[1]", [2, None, None]),
        ("items[ 2 ].x", 1),
        ("m", {"k": None}),
        ("m.k", None),
    ],
)
def test_selectors(selector: str, expected: object) -> None:
    assert refs.resolve_selector(DATA, selector) == expected


@pytest.mark.parametrize(
    ("selector", "message"),
    [
        ("", "path is empty"),
        ("items[0", "unterminated index in path"),
        ("items[]", "empty index in path"),
        ("items[a]", 'invalid index "a"'),
        ('items["a"]', 'invalid index "\\"a\\""'),
        ("m[0]", "expected array for index 0, got map[string]interface {}"),
        ("m[*]", "expected array for wildcard index, got map[string]interface {}"),
        ("items.name", 'expected object for field "name", got []interface {}'),
        ("nope", 'missing field "nope"'),
        ("items[9]", "index 9 out of bounds"),
        ("items[0].name.x", 'expected object for field "x", got string'),
    ],
)
def test_selector_errors_name_the_problem(selector: str, message: str) -> None:
    with pytest.raises(StorageRefError) as info:
        refs.resolve_selector(DATA, selector)
    assert str(info.value) == message


def test_selector_builders_for_templates() -> None:
    path = refs.selector_path(["items", 0, "name"])
    assert path == "items[0].name"
    assert refs.resolve_selector(DATA, path) == "a"
    assert refs.make_selector("o.json", path) == {
        "$bubuStorageRef": "o.json",
        "$bubuStoragePath": "items[0].name",
    }
    assert refs.make_selector("o.json", "") == {"$bubuStorageRef": "o.json"}


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("cfg:key", KubeRef("configmap", "ns1", "cfg", "key")),
        (" ns1 / cfg : key ", KubeRef("configmap", "ns1", "cfg", "key")),
        (
            {"name": "cfg", "key": "k", "format": "raw"},
            KubeRef("configmap", "ns1", "cfg", "k", "raw"),
        ),
        ({"name": "cfg", "key": "k", "namespace": "ns1"}, KubeRef("configmap", "ns1", "cfg", "k")),
        ("cfg:a:b", KubeRef("configmap", "ns1", "cfg", "a:b")),
    ],
)
def test_kube_ref_forms(raw: object, expected: KubeRef) -> None:
    assert refs.parse_kube_ref("configmap", raw, "ns1") == expected


@pytest.mark.parametrize(
    ("raw", "workload", "message"),
    [
        (
            "other/cfg:key",
            "ns1",
            'cross-namespace references are not allowed: "other" (workload namespace: "ns1")',
        ),
        (
            {"name": "c", "key": "k", "namespace": "x"},
            "ns1",
            "cross-namespace references are not allowed",
        ),
        (
            "ns1/cfg:key",
            "",
            'explicit namespace "ns1" is not allowed without workload namespace context',
        ),
        ("cfg:key", "", 'namespace is required for reference "cfg:key"'),
        ("cfg", "ns1", "expected name:key or namespace/name:key"),
        ("cfg:", "ns1", "expected name:key"),
        (":key", "ns1", "(missing name)"),
        ("  ", "ns1", "reference is empty"),
        ({"name": "c"}, "ns1", "reference requires name and key"),
        (5, "ns1", "invalid ref type float64"),
    ],
)
def test_kube_ref_errors(raw: object, workload: str, message: str) -> None:
    with pytest.raises(StorageRefError) as info:
        refs.parse_kube_ref("secret", raw, workload)
    assert message in str(info.value)


def test_kube_ref_only_as_the_single_key() -> None:
    assert refs.kube_ref_of({"$bubuSecretRef": "s:k"}) == ("secret", "s:k")
    assert refs.kube_ref_of({"$bubuConfigMapRef": "c:k"}) == ("configmap", "c:k")
    assert refs.kube_ref_of({"$bubuSecretRef": "s:k", "x": 1}) is None


@pytest.mark.parametrize(
    ("raw", "fmt", "expected"),
    [
        (b'{"a": 1}', "auto", {"a": 1}),
        (b"plain text", "auto", "plain text"),
        (b"   ", "auto", ""),
        (b" 42 ", "auto", 42),
        (b'{"a": 1}', "raw", '{"a": 1}'),
        (b"[1,2]", "JSON", [1, 2]),
    ],
)
def test_ref_value_formats(raw: bytes, fmt: str, expected: object) -> None:
    assert refs.decode_ref_value(raw, KubeRef("configmap", "n", "c", "k", fmt)) == expected


def test_ref_value_format_errors_do_not_echo_the_value() -> None:
    with pytest.raises(StorageRefError) as info:
        refs.decode_ref_value(b"s3cr3t-not-json", KubeRef("secret", "n", "s", "k", "json"))
    assert "s3cr3t" not in str(info.value)
    assert "secret n/s:k" in str(info.value)
    with pytest.raises(StorageRefError, match='unsupported format "yaml"'):
        refs.decode_ref_value(b"x", KubeRef("secret", "n", "s", "k", "yaml"))


@pytest.mark.parametrize(
    "value",
    [
        {},
        {"a": 1},
        [[]],
        {"a": [{"b": "]]}}{{"}]},
        {"x": '"[{', "y": ['a\\"b', {"z": [1, 2, {"w": None}]}]},
        {"k": {"$bubuStorageRef": "outputs/x.json"}},
        {"k": {"$bubuSecretRef": "s:k"}},
        {"t": {"$bubuTemplate": ".inputs.x"}},
        {"deep": {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": 1}}}}}}}}}}},
    ],
)
def test_scan_fast_path_agrees_with_the_walk(value: Any) -> None:
    # The C-speed check (JSON bytes) may only skip the walk when the walk would find nothing
    # and stay within the limit; depth and node counts are then upper bounds within limits.
    fast = refs.scan(value, limit=10)
    walked = refs.scan(value, limit=10, quick_limit=-1)
    assert (fast.refs, fast.kube_refs, fast.templates) == (
        walked.refs,
        walked.kube_refs,
        walked.templates,
    )
    assert (fast.depth > 10) == (walked.depth > 10)
    assert fast.depth >= walked.depth or fast.depth <= 10
