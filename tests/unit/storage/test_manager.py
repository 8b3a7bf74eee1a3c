"""StorageManager on the file provider: hydration, offload, blobs, limits and bad input."""

from __future__ import annotations

import asyncio
import base64
import json
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from bubu._k8s.resources import CONFIG_MAP, SECRET, Kind
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._storage import shared
from bubu._storage.manager import StorageManager, _decode_raw_stream, namespaced_key
from bubu._storage.store import FileStore, WriteMeta
from bubu.errors import (
    ForbiddenError,
    NotFoundError,
    StorageAccessError,
    StorageDisabledError,
    StorageError,
    StorageNotFoundError,
    StorageRefError,
    StorageTimeoutError,
)


def manager(root: Path, **kw: Any) -> StorageManager:
    return StorageManager(FileStore(str(root)), **kw)


async def test_round_trip_through_the_file_store(tmp_path: Path) -> None:
    m = manager(tmp_path, max_inline_size=32)
    data = {"doc": "x" * 100, "items": [{"v": "y" * 40}, 1], "ok": True}
    out = await m.dehydrate(data, namespaced_key("ns", "step-1"))
    assert out["doc"] == {
        "$bubuStorageRef": "outputs/ns/step-1/doc.json",
        "$bubuStorageContentType": "text/plain",
    }
    assert out["items"][0]["v"]["$bubuStorageRef"] == "outputs/ns/step-1/items.0.v.json"
    assert await m.hydrate(out) == data
    assert data["doc"] == "x" * 100  # the input is not modified


def test_namespaced_key() -> None:
    assert namespaced_key(" ns ", " a/b ") == "ns/a/b"
    assert namespaced_key("", "x") == ""
    assert namespaced_key("ns", " ") == ""


async def test_storage_off_refuses_refs_and_large_outputs() -> None:
    m = StorageManager(None, max_inline_size=10)
    with pytest.raises(
        StorageDisabledError, match="found storage reference in inputs but storage is disabled"
    ):
        await m.hydrate({"a": [{"$bubuStorageRef": "x.json"}]})
    assert await m.hydrate({"a": 1}) == {"a": 1}
    assert await m.dehydrate({"a": 1}, "ns/x") == {"a": 1}
    with pytest.raises(StorageDisabledError, match=r"output size 16 bytes exceeds inline limit 10"):
        await m.dehydrate({"a": "x" * 8}, "ns/x")
    with pytest.raises(StorageDisabledError, match=r"BUBU_MAX_INLINE_SIZE=10 or higher"):
        await m.dehydrate_inputs({"a": "x" * 8}, "ns/x")
    with pytest.raises(StorageDisabledError):
        await m.read_blob("a.bin")


async def test_missing_object_names_the_ref(tmp_path: Path) -> None:
    m = manager(tmp_path)
    with pytest.raises(StorageNotFoundError) as info:
        await m.hydrate({"in": {"$bubuStorageRef": "outputs/ns/gone.json"}})
    assert info.value.ref == "outputs/ns/gone.json"
    assert "failed to read offloaded data from 'outputs/ns/gone.json'" in str(info.value)
    assert str(tmp_path) not in str(info.value)


async def test_escaping_refs_never_touch_the_disk(tmp_path: Path) -> None:
    (tmp_path / "root").mkdir()
    secret = tmp_path / "secret.json"
    secret.write_text(json.dumps({"contentType": "raw", "data": "top secret"}))
    m = manager(tmp_path / "root")
    for ref in ("../secret.json", str(secret), "a/..\\..\\secret.json"):
        with pytest.raises(StorageRefError) as info:
            await m.hydrate({"x": {"$bubuStorageRef": ref}})
        assert "top secret" not in str(info.value)
        assert info.value.ref == ref
    with pytest.raises(StorageRefError):
        await m.write_blob("../escape.bin", b"x")
    assert not (tmp_path / "escape.bin").exists()


async def test_malformed_and_unknown_stored_objects(tmp_path: Path) -> None:
    m = manager(tmp_path)
    (tmp_path / "bad.json").write_text("{not json")
    (tmp_path / "odd.json").write_text('{"contentType":"yaml","data":"x"}')
    with pytest.raises(StorageError, match="failed to unmarshal stored object from 'bad.json'"):
        await m.hydrate({"$bubuStorageRef": "bad.json"})
    with pytest.raises(
        StorageError, match="unknown content type 'yaml' in stored object 'odd.json'"
    ):
        await m.hydrate({"$bubuStorageRef": "odd.json"})


async def test_depth_and_cycles_fail_fast(tmp_path: Path) -> None:
    m = manager(tmp_path, max_depth=3)
    with pytest.raises(
        StorageRefError, match=r"maximum recursion depth \(3\) exceeded during hydration"
    ):
        await m.hydrate({"a": {"b": {"c": {"d": {}}}}})
    cyclic: dict[str, Any] = {}
    cyclic["me"] = cyclic
    with pytest.raises(StorageRefError):
        await manager(tmp_path, max_depth=1000).hydrate(cyclic)
    with pytest.raises(StorageRefError, match="cycle"):
        await manager(tmp_path).dehydrate(cyclic, "ns/x")
    with pytest.raises(StorageRefError, match=r"unsupported value.*\$\.f"):
        await manager(tmp_path).dehydrate({"f": float("nan")}, "ns/x")


async def test_a_self_referencing_stored_object_stops_at_the_depth_limit(tmp_path: Path) -> None:
    (tmp_path / "loop.json").write_text(
        '{"contentType":"json","data":{"$bubuStorageRef":"loop.json"}}'
    )
    with pytest.raises(StorageRefError, match="maximum recursion depth"):
        await manager(tmp_path).hydrate({"$bubuStorageRef": "loop.json"})


async def test_dehydrate_inputs_offloads_the_whole_remaining_input(tmp_path: Path) -> None:
    m = manager(tmp_path, max_inline_size=50)
    data = {f"k{i}": "v" * 20 for i in range(4)}
    out = await m.dehydrate_inputs(data, "ns/story-x", schema="bubu://story/ns/s/inputs")
    assert out == {
        "$bubuStorageRef": "inputs/ns/story-x/input.json",
        "$bubuStorageContentType": "application/json",
        "$bubuStorageSchema": "bubu://story/ns/s/inputs",
    }
    assert await m.hydrate(out) == data
    # an explicit limit overrides the manager's
    assert await m.dehydrate_inputs(data, "ns/story-y", max_inline_size=10_000) == data


async def test_write_is_atomic_when_the_source_fails(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))

    async def failing() -> AsyncIterator[bytes]:
        yield b"x" * (2 << 20)
        raise RuntimeError("producer died")

    with pytest.raises(RuntimeError):
        await store.write("a/b.bin", failing(), WriteMeta("application/octet-stream", -1))
    assert not (tmp_path / "a" / "b.bin").exists()
    assert list((tmp_path / "a").iterdir()) == []


async def test_cancelled_write_leaves_nothing(tmp_path: Path) -> None:
    store = FileStore(str(tmp_path))
    started = asyncio.Event()

    async def slow() -> AsyncIterator[bytes]:
        yield b"x"
        started.set()
        await asyncio.Event().wait()
        yield b"never"

    task = asyncio.create_task(store.write("c.bin", slow(), WriteMeta("x", -1)))
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert list(tmp_path.iterdir()) == []  # noqa: ASYNC240


class _HangingStore(FileStore):
    async def read(self, key: str) -> AsyncIterator[bytes]:  # type: ignore[override]
        await asyncio.Event().wait()
        yield b""


async def test_storage_timeout_bounds_every_operation(tmp_path: Path) -> None:
    m = StorageManager(_HangingStore(str(tmp_path)), timeout=0.2)
    with pytest.raises(
        StorageTimeoutError, match=r"timed out after 200ms \(BUBU_STORAGE_TIMEOUT\)"
    ) as info:
        await m.hydrate({"$bubuStorageRef": "x.json"})
    assert info.value.retryable and info.value.exit_class == "retry"


async def test_blobs(tmp_path: Path) -> None:
    m = manager(tmp_path)
    await m.write_blob("b/one.bin", b"\x00\x01" * 1000, "application/x-test")
    await m.write_blob("b/two.bin", [b"ab", b"cd"])
    assert await m.read_blob("b/one.bin") == b"\x00\x01" * 1000
    assert b"".join([c async for c in m.open_blob("b/two.bin")]) == b"abcd"
    assert await m.list("b") == ["b/one.bin", "b/two.bin"]
    await m.delete("b/one.bin")
    await m.delete("b/one.bin")  # missing is fine
    assert await m.list("b") == ["b/two.bin"]
    with pytest.raises(StorageNotFoundError, match="failed to read blob"):
        await m.read_blob("b/one.bin")


def test_file_store_permissions(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        m = manager(tmp_path / "root")
        asyncio.run(m.write_blob("d/x.bin", b"x"))
    finally:
        os.umask(old)
    assert (tmp_path / "root" / "d").stat().st_mode & 0o777 == 0o750 & ~0o022
    assert (tmp_path / "root" / "d" / "x.bin").stat().st_mode & 0o777 == 0o644


# --- streaming decode of large raw objects --------------------------------------------------------


def _decode(data: bytes, size: int) -> str:
    pieces = [data[i : i + size] for i in range(0, len(data), size)]

    async def rest() -> AsyncIterator[bytes]:
        for piece in pieces[1:]:
            yield piece

    return asyncio.run(_decode_raw_stream(pieces[0], rest()))


tricky = st.lists(
    st.sampled_from(["a", "b", '"', "\\", "\n", "\t", "é", "😀", "\u2028", "<", "&", "\x01"]),
    min_size=1,
    max_size=50,
).map("".join)


@settings(max_examples=40, deadline=None)
@given(tricky, st.integers(3, 40))
def test_streaming_raw_decode_handles_every_boundary(piece: str, chunk: int) -> None:
    from bubu._runtime import gojson

    text = (piece * (1 + (1 << 18) // max(len(piece.encode()), 1)))[: (1 << 18) + 37]
    stored = b'{"contentType":"raw","data":' + gojson.marshal(text) + b"}"
    assert _decode(stored, chunk * 997) == text


@pytest.mark.parametrize("offset", range(0, 14))
def test_streaming_decode_keeps_escaped_surrogate_pairs_whole(offset: int) -> None:
    # Go writes raw UTF-8, but another writer may escape astral characters as pairs.
    body = b"x" * ((1 << 16) - offset) + b"\\ud83d\\ude00" * 3 + b"y" * 40
    stored = b'{"contentType":"raw","data":"' + body + b'"}\n'
    expected = "x" * ((1 << 16) - offset) + "😀" * 3 + "y" * 40
    for size in (1 << 16, (1 << 16) + 7, 4096, 29):
        assert _decode(stored, size) == expected


async def test_large_raw_objects_hydrate_through_the_stream(tmp_path: Path) -> None:
    m = manager(tmp_path)
    text = 'line with "quotes" and \\ and é\n' * 100_000
    ref = await m.dehydrate({"t": text}, "ns/big")
    assert (tmp_path / "outputs/ns/big/t.json").stat().st_size > 2 << 20
    assert (await m.hydrate(ref))["t"] == text
    # another writer's key order takes the whole-object path
    (tmp_path / "other.json").write_text(
        json.dumps({"data": "y" * (2 << 20), "contentType": "raw"})
    )
    assert await m.hydrate({"$bubuStorageRef": "other.json"}) == "y" * (2 << 20)
    (tmp_path / "bad.json").write_bytes(b'{"contentType":"raw","data":"' + b"x" * (2 << 20) + b'"')
    with pytest.raises(StorageError, match="content may be malformed"):
        await m.hydrate({"$bubuStorageRef": "bad.json"})


# --- ConfigMap and Secret refs (unit; the real API server is in tests/integration) ---------------


class FakeKube:
    namespace = "ns1"

    def __init__(
        self, objects: dict[tuple[str, str], dict[str, Any]], error: Exception | None = None
    ) -> None:
        self.objects = objects
        self.error = error
        self.calls: list[tuple[str, str, str | None]] = []

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.calls.append((kind.plural, name, namespace))
        if self.error:
            raise self.error
        try:
            return self.objects[(kind.plural, name)]
        except KeyError:
            raise NotFoundError(f"{kind.plural} {name} not found", status_code=404) from None


async def test_configmap_and_secret_refs(tmp_path: Path) -> None:
    kube = FakeKube(
        {
            ("configmaps", "cfg"): {"data": {"json": '{"a": [1]}', "text": "hello"}},
            ("secrets", "sec"): {"data": {"pw": base64.b64encode(b"hunter2").decode()}},
        }
    )
    m = StorageManager(None, workload_namespace="ns1", kube=kube)  # type: ignore[arg-type]
    data = {
        "a": {"$bubuConfigMapRef": "cfg:json"},
        "b": {"$bubuConfigMapRef": {"name": "cfg", "key": "text", "namespace": "ns1"}},
        "c": [{"$bubuSecretRef": "ns1/sec:pw"}],
    }
    assert await m.hydrate(data) == {"a": {"a": [1]}, "b": "hello", "c": ["hunter2"]}
    assert kube.calls[0] == ("configmaps", "cfg", "ns1")
    # storage-refs-only leaves them alone
    assert await m.hydrate_storage_refs_only(data) == data
    with pytest.raises(StorageNotFoundError, match='ConfigMap ns1/cfg missing key "nope"') as info:
        await m.hydrate({"$bubuConfigMapRef": "cfg:nope"})
    assert info.value.ref == "configmap ns1/cfg:nope"
    with pytest.raises(StorageNotFoundError, match="failed to read Secret ns1/gone: not found"):
        await m.hydrate({"$bubuSecretRef": "gone:k"})
    with pytest.raises(StorageRefError, match="cross-namespace"):
        await m.hydrate({"$bubuSecretRef": "kube-system/sec:pw"})
    assert len([c for c in kube.calls if c[2] == "kube-system"]) == 0


async def test_forbidden_kube_ref_says_which_verb() -> None:
    kube = FakeKube({}, ForbiddenError("forbidden", status_code=403))
    m = StorageManager(None, workload_namespace="ns1", kube=kube)  # type: ignore[arg-type]
    with pytest.raises(StorageAccessError, match='Role needs "get" on secrets'):
        await m.hydrate({"$bubuSecretRef": "sec:pw"})


async def test_kube_ref_without_a_client() -> None:
    m = StorageManager(None, workload_namespace="ns1")
    with pytest.raises(StorageError, match="no Kubernetes client"):
        await m.hydrate({"$bubuConfigMapRef": "cfg:k"})
    assert CONFIG_MAP.plural == "configmaps" and SECRET.plural == "secrets"


def test_manager_from_env_and_the_shared_cache(tmp_path: Path) -> None:
    env = load_env(
        MappingSource(
            {
                "BUBU_STORAGE_PROVIDER": "file",
                "BUBU_STORAGE_PATH": str(tmp_path),
                "BUBU_MAX_INLINE_SIZE": "2048",
                "BUBU_MAX_RECURSION_DEPTH": "32",
                "BUBU_STORAGE_TIMEOUT": "45s",
                "BUBU_POD_NAMESPACE": " pods ",
                "BUBU_STEPRUN_NAMESPACE": "steps",
            }
        )
    )
    m = StorageManager.from_env(env)
    assert (m.max_inline_size, m.max_depth, m.timeout, m.workload_namespace) == (
        2048,
        32,
        45.0,
        "pods",
    )
    assert isinstance(m.store, FileStore)
    shared.reset()
    assert shared.manager_for(env) is shared.manager_for(env)
    assert not StorageManager.from_env(load_env(MappingSource({}))).enabled


async def test_input_offload_fits_the_trigger_seam(tmp_path: Path) -> None:
    from bubu._storage.manager import input_offload
    from bubu._triggers import InputOffload

    offload: InputOffload = input_offload(
        manager(tmp_path, max_inline_size=150), schema="bubu://story/ns/s/inputs"
    )
    sent = await offload({"doc": "d" * 300}, "ns/run-abc-123")
    assert sent["doc"]["$bubuStorageRef"] == "inputs/ns/run-abc-123/doc.json"
    assert sent["doc"]["$bubuStorageSchema"] == "bubu://story/ns/s/inputs"
    with pytest.raises(StorageDisabledError):
        await input_offload(StorageManager(None, max_inline_size=10))({"a": "x" * 20}, "k")


async def test_spans_and_histograms_are_gos(tmp_path: Path) -> None:

    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

    from bubu._storage import manager as manager_module

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    reader = InMemoryMetricReader()
    meters = MeterProvider(metric_readers=[reader])
    tracer = provider.get_tracer(manager_module._SCOPE)
    import unittest.mock as um

    manager_module._histograms.clear()
    with (
        um.patch("bubu._telemetry.tracer", lambda name="": tracer),
        um.patch("bubu._telemetry.meter", lambda name="bubu-sdk": meters.get_meter(name)),
    ):
        m = manager(tmp_path, max_inline_size=8)
        ref = await m.dehydrate({"a": "x" * 20}, "ns/sr")
        await m.hydrate(ref, step_run_key="ns/sr")
        with pytest.raises(StorageNotFoundError):
            await m.hydrate({"$bubuStorageRef": "gone.json"})
    manager_module._histograms.clear()
    spans = {s.name: s for s in exporter.get_finished_spans()}
    assert {"storage.Dehydrate", "storage.Hydrate"} <= set(spans)
    assert spans["storage.Dehydrate"].attributes["storage.stepRunID"] == "ns/sr"
    events = [e.name for s in exporter.get_finished_spans() for e in s.events]
    assert {"dehydrate.success", "hydrate.success", "hydrate.error"} <= set(events)
    scopes = {
        metric.name: sm.scope.name
        for rm in reader.get_metrics_data().resource_metrics
        for sm in rm.scope_metrics
        for metric in sm.metrics
    }
    # Go's meter, not bubu-sdk: the storage package records them (docs/observability.md#metrics)
    assert scopes["bobrapet.storage.hydration.size_bytes"] == manager_module._SCOPE
    assert scopes["bobrapet.storage.dehydration.size_bytes"] == manager_module._SCOPE


def test_s3_without_the_extra_says_how_to_get_it(monkeypatch: pytest.MonkeyPatch) -> None:
    import builtins
    import sys

    from bubu._runtime.env import load_env
    from bubu._runtime.sources import MappingSource
    from bubu._storage.manager import open_store
    from bubu.errors import StorageError

    real_import = builtins.__import__

    def no_obstore(name: str, *args: object, **kwargs: object) -> object:
        if name == "obstore" or name.startswith("obstore."):
            raise ImportError("No module named 'obstore'")
        return real_import(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.delitem(sys.modules, "bubu._storage.s3", raising=False)
    monkeypatch.setattr(builtins, "__import__", no_obstore)
    env = load_env(MappingSource({"BUBU_STORAGE_PROVIDER": "s3", "BUBU_STORAGE_S3_BUCKET": "b"}))
    assert env.storage is not None
    with pytest.raises(StorageError, match=r"needs the bubu\[s3\] extra: pip install"):
        open_store(env.storage)
