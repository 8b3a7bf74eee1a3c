"""The Python storage layer against the operator's Go storage package, byte for byte.

Every case runs through ``tests/interop/cmd/storage`` (bobrapet ``pkg/storage`` v0.1.13 on a
fresh file store) and through ``bubu._storage`` on a fresh ``FileStore``; the returned values
(refs and inline data), the object paths and the stored bytes must be identical, and so must
the error texts we mirror.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from bubu._runtime import gojson
from bubu._storage.manager import StorageManager
from bubu._storage.store import FileStore
from bubu.errors import StorageDisabledError, StorageError, StorageRefError

pytestmark = pytest.mark.interop

ESCAPES = 'quote" backslash\\ <tag> & amp \u2028 \u2029 \x01 \x1f \x7f é 日本 😀 tab\t nl\n'


def _stored(content_type: str, data: Any) -> str:
    return json.dumps({"contentType": content_type, "data": data})


CASES: list[dict[str, Any]] = [
    {"name": "inline", "op": "dehydrate", "data": {"a": "small", "n": 1}, "id": "ns/sr"},
    {
        "name": "nested offloads",
        "op": "dehydrate",
        "maxInline": 40,
        "id": "ns/step-1",
        "data": {
            "text": "x" * 41,
            "exact": "y" * 40,
            "items": [1, {"deep": "z" * 50}, "short", ["q" * 45]],
            "num": 12345678,
            "floats": [1.5, 1e21, 1e-7, 0.1, 100.0],
            "obj": {"k1": "v" * 20, "k2": "w" * 20},
            "escapes": ESCAPES,
            "unicode": "é" * 30,
        },
    },
    {
        "name": "root offload",
        "op": "dehydrate",
        "maxInline": 10,
        "id": "ns/root",
        "data": [1, 2, 3, 4, 5, 6, 7],
    },
    {
        "name": "schema metadata",
        "op": "dehydrate",
        "maxInline": 16,
        "id": "ns/s",
        "schema": "bubu://engram/ns/e/output",
        "schemaVersion": "1.2.0",
        "data": {"big": "b" * 32},
    },
    {
        "name": "depth boundary",
        "op": "dehydrate",
        "maxInline": 1000,
        "maxDepth": 3,
        "id": "ns/deep",
        "data": {"a": {"b": {"c": {"d": {"e": "f"}}}}, "top": 1},
    },
    {
        "name": "bulk rule",
        "op": "dehydrate",
        "maxInline": 100,
        "id": "ns/bulk",
        "data": {f"k{i:04d}": "s" * 120 for i in range(3000)},
    },
    {
        "name": "zero inline limit",
        "op": "dehydrate",
        "maxInline": 0,
        "id": "ns/zero",
        "data": {"a": "", "b": 0, "c": None, "d": []},
    },
    {
        "name": "inputs whole",
        "op": "dehydrate_inputs",
        "maxInline": 60,
        "id": "ns/story-abc",
        "data": {f"f{i}": "v" * 20 for i in range(5)},
    },
    {
        "name": "inputs nested",
        "op": "dehydrate_inputs",
        "maxInline": 100,
        "id": "ns/story-def",
        "data": {"doc": "d" * 200, "n": 1},
    },
    {
        "name": "storage off small",
        "op": "dehydrate",
        "provider": "none",
        "maxInline": 100,
        "id": "ns/x",
        "data": {"a": 1},
    },
    {
        "name": "hydrate selectors",
        "op": "hydrate",
        "files": {
            "outputs/ns/sr/out.json": _stored(
                "json", {"items": [{"name": "a"}, {"name": "b"}, {"other": 1}], "m": {"k": 5}}
            ),
            "outputs/ns/sr/text.json": _stored("raw", ESCAPES),
        },
        "data": {
            "whole": {"$bubuStorageRef": "outputs/ns/sr/out.json"},
            "names": {
                "$bubuStorageRef": "outputs/ns/sr/out.json",
                "$bubuStoragePath": "items[*].name",
            },
            "first": {"$bubuStorageRef": "outputs/ns/sr/out.json", "$bubuStoragePath": ".items[0]"},
            "k": {
                "$bubuStorageRef": "outputs/ns/sr/out.json",
                "$bubuStoragePath": "m.k",
                "$bubuStorageContentType": "application/json",
            },
            "text": {"$bubuStorageRef": "outputs/ns/sr/text.json"},
            "not a ref": {"$bubuStorageRef": "x", "extra": 1},
        },
    },
    {
        "name": "hydrate nested ref",
        "op": "hydrate",
        "files": {
            "a.json": _stored("json", {"inner": {"$bubuStorageRef": "b.json"}}),
            "b.json": _stored("json", [1, 2]),
        },
        "data": {"x": {"$bubuStorageRef": "a.json"}},
    },
]

ERROR_CASES: list[dict[str, Any]] = [
    {"name": "absolute", "path": "/etc/passwd"},
    {"name": "dotdot", "path": "outputs/../../etc/passwd"},
    {"name": "backslash dotdot", "path": "outputs\\..\\secret.json"},
    {"name": "selector into non-array", "path": "o.json", "sel": "m[0]"},
    {"name": "wildcard into object", "path": "o.json", "sel": "m[*]"},
    {"name": "missing field", "path": "o.json", "sel": "nope.x"},
    {"name": "index out of bounds", "path": "o.json", "sel": "items[7]"},
    {"name": "bad index", "path": "o.json", "sel": "items[x]"},
    {"name": "unterminated", "path": "o.json", "sel": "items[0"},
]


def _go(interop_bin: Path, cases: list[dict[str, Any]]) -> list[dict[str, Any]]:
    proc = subprocess.run(
        [str(interop_bin / "storage"), "vectors"],
        input=json.dumps({"cases": cases}).encode(),
        capture_output=True,
        timeout=120,
        check=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("BUBU_")},
    )
    results: list[dict[str, Any]] = json.loads(proc.stdout)["results"]
    return results


async def _py(case: dict[str, Any], root: Path) -> dict[str, Any]:
    for rel, text in case.get("files", {}).items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    store = None if case.get("provider") == "none" else FileStore(str(root))
    manager = StorageManager(
        store,
        max_inline_size=case.get("maxInline", 1024),
        max_depth=case.get("maxDepth", 10),
    )
    out: dict[str, Any] = {"files": {}, "error": ""}
    try:
        if case["op"] == "dehydrate":
            result = await manager.dehydrate(
                case["data"],
                case["id"],
                schema=case.get("schema", ""),
                schema_version=case.get("schemaVersion", ""),
            )
        elif case["op"] == "dehydrate_inputs":
            result = await manager.dehydrate_inputs(case["data"], case["id"])
        else:
            result = await manager.hydrate(case["data"])
        out["result"] = json.loads(gojson.marshal(result))
    except StorageError as exc:
        out["error"] = str(exc)
        out["exc"] = exc
        out["result"] = None
    for path in root.rglob("*"):  # noqa: ASYNC240 - a test reading what it wrote
        rel = path.relative_to(root).as_posix()
        if path.is_file() and rel not in case.get("files", {}):
            out["files"][rel] = path.read_text()
    return out


async def test_dehydrate_and_hydrate_match_go(interop_bin: Path, tmp_path: Path) -> None:
    go_results = _go(interop_bin, CASES)
    for i, (case, go) in enumerate(zip(CASES, go_results, strict=True)):
        py = await _py(case, tmp_path / str(i))
        assert not go.get("error"), (case["name"], go.get("error"))
        assert py["error"] == "", (case["name"], py["error"])
        assert py["result"] == go["result"], case["name"]
        assert sorted(py["files"]) == sorted(go["files"]), case["name"]
        for path, text in go["files"].items():
            assert py["files"][path] == text, (case["name"], path)


async def test_bulk_rule_offloads_the_original_whole(interop_bin: Path, tmp_path: Path) -> None:
    case = next(c for c in CASES if c["name"] == "bulk rule")
    py = await _py(case, tmp_path)
    assert py["result"]["$bubuStorageRef"] == "outputs/ns/bulk/output.json"
    # the 3,000 per-field objects were written first, as in Go
    assert len(py["files"]) == 3001


async def test_storage_off_error_matches_go(interop_bin: Path, tmp_path: Path) -> None:
    case = {
        "name": "off",
        "op": "dehydrate",
        "provider": "none",
        "maxInline": 20,
        "id": "ns/x",
        "data": {"a": "x" * 30},
    }
    (go,) = _go(interop_bin, [case])
    py = await _py(case, tmp_path)
    assert isinstance(py["exc"], StorageDisabledError)
    # Go appends "%!(EXTRA int=...)" from surplus Errorf arguments; we stop before it.
    assert go["error"].startswith(py["error"])
    assert py["error"].endswith("or reduce output size")
    assert "output size 38 bytes exceeds inline limit 20" in py["error"]


@pytest.mark.parametrize("case", ERROR_CASES, ids=[c["name"] for c in ERROR_CASES])
async def test_bad_refs_fail_like_go(
    interop_bin: Path, tmp_path: Path, case: dict[str, Any]
) -> None:
    ref: dict[str, Any] = {"$bubuStorageRef": case["path"]}
    if "sel" in case:
        ref["$bubuStoragePath"] = case["sel"]
    vec = {
        "name": case["name"],
        "op": "hydrate",
        "files": {"o.json": _stored("json", {"items": [1, 2], "m": {"k": 1}})},
        "data": {"input": ref},
    }
    (go,) = _go(interop_bin, [vec])
    py = await _py(vec, tmp_path)
    assert go["error"], case
    assert isinstance(py["exc"], StorageRefError)
    assert py["error"] == go["error"]
    assert py["exc"].ref == case["path"]


async def test_depth_limit_matches_go(interop_bin: Path, tmp_path: Path) -> None:
    vec = {"name": "deep", "op": "hydrate", "maxDepth": 2, "data": {"a": {"b": {"c": {"d": 1}}}}}
    (go,) = _go(interop_bin, [vec])
    py = await _py(vec, tmp_path)
    assert isinstance(py["exc"], StorageRefError)
    assert py["error"] == go["error"] == "maximum recursion depth (2) exceeded during hydration"


def _random_value(rng: Any, depth: int) -> Any:
    kind = rng.randrange(9 if depth < 4 else 6)
    if kind == 0:
        return None
    if kind == 1:
        return rng.random() < 0.5
    if kind == 2:
        return rng.randrange(-(10**6), 10**6)
    if kind == 3:
        return rng.choice([0.5, 1e21, 1e-7, 123.0, -2.25, 1e300])
    if kind in (4, 5):
        alphabet = 'ab <>&"\\\n\té日😀\u2028'
        return "".join(rng.choice(alphabet) for _ in range(rng.choice([0, 3, 20, 90, 400])))
    if kind in (6, 7):
        return {f"k{i}": _random_value(rng, depth + 1) for i in range(rng.randrange(6))}
    return [_random_value(rng, depth + 1) for _ in range(rng.randrange(6))]


async def test_random_payloads_offload_like_go(interop_bin: Path, tmp_path: Path) -> None:
    import random

    rng = random.Random(20261206)
    cases = [
        {
            "name": f"random-{i}",
            "op": rng.choice(["dehydrate", "dehydrate_inputs"]),
            "maxInline": rng.choice([0, 8, 40, 150, 1024]),
            "maxDepth": rng.choice([2, 3, 10]),
            "id": f"ns/r{i}",
            "data": {f"f{j}": _random_value(rng, 1) for j in range(rng.randrange(1, 6))},
        }
        for i in range(60)
    ]
    written = 0
    for i, (case, go) in enumerate(zip(cases, _go(interop_bin, cases), strict=True)):
        py = await _py(case, tmp_path / str(i))
        assert py["error"] == go.get("error", ""), case["name"]
        assert py["result"] == go["result"], case["name"]
        assert py["files"] == go["files"], case["name"]
        written += len(py["files"])
    assert written > 100  # the cases do offload, at many depths
