"""The batch payload stages (bubu._payloads in run_batch): references, templates, offload, logs.

Each test runs the real lifecycle with a file store in a temporary directory and reads what
the StepRun status would hold (docs/contract/storage.md#stages).
"""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path
from typing import Any

import msgspec
import pytest

import bubu
from bubu import _payloads
from bubu._batch import run_batch
from bubu._k8s.status import MemoryStatusSink
from bubu._runtime import gojson
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._storage import shared
from bubu._storage.manager import StorageManager
from bubu.errors import StorageUnavailableError

NS = "team-a"


class Item(msgspec.Struct):
    id: int
    name: str


class Inputs(msgspec.Struct):
    items: list[Item] = []
    note: str = ""
    first: str = ""
    size: int = 0


class Config(msgspec.Struct):
    endpoint: str = ""
    banner: str = ""


class Echo(bubu.BatchEngram[Config, Inputs]):
    def __init__(self, output: Any = None) -> None:
        self.output = output
        self.seen: Inputs | None = None
        self.config: Config | None = None

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config

    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        self.seen = inputs
        logging.getLogger("echo").warning("processed %d items", len(inputs.items))
        print("plain print from the engram")
        return bubu.Result(self.output if self.output is not None else {"ok": True})


@pytest.fixture(autouse=True)
def _fresh_managers() -> Any:
    shared.reset()
    yield
    shared.reset()


def env_for(store: Path | None, **extra: Any) -> dict[str, str]:
    values = {
        "BUBU_STEPRUN_NAMESPACE": NS,
        "BUBU_STORYRUN_ID": "run-1",
        "BUBU_STEP_NAME": "echo",
        "BUBU_STORY_NAME": "story",
    }
    if store is not None:
        values.update({"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(store)})
    for key, value in extra.items():
        values[key] = value if isinstance(value, str) else json.dumps(value)
    return values


async def offload(store: Path, data: Any, ident: str = f"{NS}/producer") -> Any:
    """What an earlier step wrote: ``data`` offloaded whole (the limit just below its size)."""
    limit = len(gojson.marshal(data)) - 1 if not isinstance(data, str) else len(data) - 1
    manager = StorageManager.from_env(
        load_env(MappingSource(env_for(store, BUBU_MAX_INLINE_SIZE=str(limit))))
    )
    return await manager.dehydrate(data, ident)


async def run(engram: Echo, env: dict[str, str], sink: MemoryStatusSink | None = None) -> Any:
    return await run_batch(
        engram,
        source=MappingSource(env),
        status_sink=sink or MemoryStatusSink(),
        install_logging=False,
    )


async def test_storage_ref_inputs_are_hydrated_before_decode(tmp_path: Path) -> None:
    items = [{"id": i, "name": f"item-{i}"} for i in range(3)]
    ref = await offload(tmp_path, {"items": items})
    assert set(ref) >= {"$bubuStorageRef"}
    engram = Echo()
    report = await run(engram, env_for(tmp_path, BUBU_TRIGGER_DATA={"items": ref}))
    assert report.exit_code == 1  # the ref is the whole object: {"items": [...]}, not a list
    assert "inputs: $.items" in str(report.exception)
    ref_to_list = await offload(tmp_path, items, ident=f"{NS}/producer-2")
    engram = Echo()
    report = await run(engram, env_for(tmp_path, BUBU_TRIGGER_DATA={"items": ref_to_list}))
    assert report.exit_code == 0, report.exception
    assert engram.seen == Inputs(items=[Item(**i) for i in items])


async def test_selector_picks_into_the_stored_object(tmp_path: Path) -> None:
    items = [{"id": i, "name": f"item-{i}"} for i in range(3)]
    ref = await offload(tmp_path, {"items": items})
    inputs = {
        "items": {**ref, "$bubuStoragePath": "items"},
        "first": {**ref, "$bubuStoragePath": "items[0].name"},
    }
    engram = Echo()
    report = await run(engram, env_for(tmp_path, BUBU_TRIGGER_DATA=inputs))
    assert report.exit_code == 0, report.exception
    assert engram.seen == Inputs(items=[Item(**i) for i in items], first="item-0")


async def test_templates_resolve_from_the_template_context(tmp_path: Path) -> None:
    context = {"steps": {"fetch": {"output": {"title": "Report", "count": 7}}}}
    inputs = {"note": "{{ .steps.fetch.output.title }} ({{ .steps.fetch.output.count }})"}
    inputs["size"] = "{{ .steps.fetch.output.count }}"  # type: ignore[assignment]
    engram = Echo()
    report = await run(
        engram, env_for(None, BUBU_TRIGGER_DATA=inputs, BUBU_TEMPLATE_CONTEXT=context)
    )
    assert report.exit_code == 0, report.exception
    assert engram.seen is not None
    assert engram.seen.note == "Report (7)" and engram.seen.size == 7


async def test_stored_text_is_never_evaluated_as_a_template(tmp_path: Path) -> None:
    # docs/templates.md#storage-values-are-data: hydrated user data may hold literal "{{ }}";
    # sibling templates still render.
    ref = await offload(tmp_path, "Dear {{ customer }}, your order shipped" + "." * 50)
    context = {"inputs": {"who": "Ada"}}
    inputs = {"note": ref, "first": "{{ .inputs.who }}"}
    engram = Echo()
    report = await run(
        engram, env_for(tmp_path, BUBU_TRIGGER_DATA=inputs, BUBU_TEMPLATE_CONTEXT=context)
    )
    assert report.exit_code == 0, report.exception
    assert engram.seen is not None
    assert engram.seen.note.startswith("Dear {{ customer }}") and engram.seen.first == "Ada"


async def test_skip_input_templating_leaves_templates_alone(tmp_path: Path) -> None:
    engram = Echo()
    env = env_for(None, BUBU_TRIGGER_DATA={"note": "{{ .x }}"}, BUBU_SKIP_INPUT_TEMPLATING="1")
    assert (await run(engram, env)).exit_code == 0
    assert engram.seen is not None and engram.seen.note == "{{ .x }}"


@pytest.mark.parametrize(
    ("store", "inputs", "message", "error_type"),
    [
        (
            True,
            {"note": {"$bubuStorageRef": f"outputs/{NS}/gone/output.json"}},
            f"failed to hydrate inputs: failed to read offloaded data from 'outputs/{NS}/gone/"
            "output.json'",
            "storage_error",
        ),
        (
            False,
            {"note": {"$bubuStorageRef": f"outputs/{NS}/x/output.json"}},
            "failed to hydrate inputs: found storage reference in inputs but storage is disabled",
            "storage_error",
        ),
        (
            True,
            {"note": {"$bubuStorageRef": "../../etc/passwd"}},
            "failed to hydrate inputs: failed to read offloaded data from '../../etc/passwd'",
            "storage_error",
        ),
        (
            False,
            {"note": "{{ nope .x }}"},
            'failed to resolve input templates: template: bubu:1: function "nope" not defined',
            "validation_error",
        ),
        (
            False,
            {"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {"i": {"j": {"k": 1}}}}}}}}}}},
            "failed to hydrate inputs: maximum recursion depth (10) exceeded during hydration",
            "storage_error",
        ),
    ],
    ids=["missing-object", "storage-off", "traversal", "unknown-function", "too-deep"],
)
async def test_bad_input_fails_the_step_naming_it(
    tmp_path: Path, store: bool, inputs: Any, message: str, error_type: str
) -> None:
    sink = MemoryStatusSink()
    engram = Echo()
    report = await run(engram, env_for(tmp_path if store else None, BUBU_TRIGGER_DATA=inputs), sink)
    assert report.exit_code == 1 and engram.seen is None
    status = sink.status
    assert status["phase"] == "Failed" and status["exitClass"] == "terminal"
    assert status["lastFailureMsg"].startswith(message), status["lastFailureMsg"]
    assert status["error"]["type"] == error_type and status["error"]["retryable"] is False


async def test_large_output_is_offloaded_with_go_paths_and_schema(tmp_path: Path) -> None:
    output = {"summary": "short", "body": "x" * 3000, "rows": [{"n": i} for i in range(3)]}
    sink = MemoryStatusSink()
    env = env_for(
        tmp_path,
        BUBU_STEPRUN_NAME="echo-abc",
        BUBU_ENGRAM_NAME="echo",
        BUBU_ENGRAM_VERSION="1.2.0",
    )
    report = await run(Echo(output), env, sink)
    assert report.exit_code == 0, report.exception
    written = sink.status["output"]
    assert written["summary"] == "short" and written["rows"] == output["rows"]
    assert written["body"] == {
        "$bubuStorageRef": f"outputs/{NS}/echo-abc/body.json",
        "$bubuStorageContentType": "text/plain",
        "$bubuStorageSchema": f"bubu://engram/{NS}/echo/output",
        "$bubuStorageSchemaVersion": "1.2.0",
    }
    stored = json.loads((tmp_path / f"outputs/{NS}/echo-abc/body.json").read_bytes())
    assert stored == {"contentType": "raw", "data": "x" * 3000}


async def test_oversized_output_with_storage_off_fails_as_go(tmp_path: Path) -> None:
    sink = MemoryStatusSink()
    report = await run(Echo({"body": "x" * 2000}), env_for(None), sink)
    assert report.exit_code == 1
    status = sink.status
    assert status["phase"] == "Failed" and "output" not in status
    assert status["lastFailureMsg"].startswith(
        "failed to dehydrate output: output size 2011 bytes exceeds inline limit 1024 and "
        "storage is disabled; either enable storage (BUBU_STORAGE_PROVIDER=s3|file)"
    )
    assert status["error"]["type"] == "storage_error" and status["exitClass"] == "terminal"


async def test_small_output_never_touches_storage(tmp_path: Path, monkeypatch: Any) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the storage manager was built for an output that fits")

    monkeypatch.setattr(shared, "manager_for", refuse)
    sink = MemoryStatusSink()
    report = await run(Echo({"ok": True}), env_for(tmp_path), sink)
    assert report.exit_code == 0 and sink.status["output"] == {"ok": True}


async def test_config_refs_and_templates_are_hydrated(tmp_path: Path) -> None:
    ref = await offload(tmp_path, "Welcome to {{ the shop }}" + "!" * 40)
    config = {"banner": ref, "endpoint": "https://{{ .inputs.host }}/api"}
    context = {"inputs": {"host": "example.com"}}
    engram = Echo()
    env = env_for(tmp_path, BUBU_STEP_CONFIG=config, BUBU_TEMPLATE_CONTEXT=context)
    assert (await run(engram, env)).exit_code == 0
    assert engram.config == Config(
        endpoint="https://example.com/api", banner="Welcome to {{ the shop }}" + "!" * 40
    )


async def test_config_guard_fails_init(tmp_path: Path) -> None:
    sink = MemoryStatusSink()
    env = env_for(
        None, BUBU_STEP_CONFIG={"a": {"b": {"c": 1}}}, BUBU_CONFIG_HYDRATION_MAX_DEPTH="2"
    )
    report = await run(Echo(), env, sink)
    assert report.exit_code == 1
    assert sink.status["lastFailureMsg"] == (
        "failed to hydrate config: config rejected before hydration: config exceeds max depth 2"
    )


async def test_captured_logs_are_published_to_status_logs(tmp_path: Path) -> None:
    sink = MemoryStatusSink()
    env = env_for(tmp_path, BUBU_STEPRUN_NAME="echo-abc", BUBU_SECRET_token="tok-9f8e7d6c")
    report = await run(Echo(), env, sink)
    assert report.exit_code == 0
    logs = sink.status["logs"]
    assert logs["$bubuStorageContentType"] == "application/x-ndjson"
    assert logs["$bubuStorageRef"].startswith(f"{NS}/logs/run-1/echo/echo-abc/")
    published = (tmp_path / logs["$bubuStorageRef"]).read_text()
    assert "processed 0 items" in published and "plain print from the engram" in published
    assert sys.stdout is not None  # the tee is gone: printing still works


async def test_no_capture_without_storage(tmp_path: Path) -> None:
    sink = MemoryStatusSink()
    report = await run(Echo(), env_for(None, BUBU_STEPRUN_NAME="echo-abc"), sink)
    assert report.exit_code == 0 and "logs" not in sink.status


class _Flaky:
    """A store that is unavailable ``failures`` times, then works (file store underneath)."""

    def __init__(self, inner: Any, failures: int) -> None:
        self.inner = inner
        self.failures = failures
        self.calls = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    async def write(self, key: str, data: Any, meta: Any) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise StorageUnavailableError("connection refused", ref=key)
        await self.inner.write(key, data, meta)


@pytest.mark.parametrize(("failures", "ok"), [(2, True), (3, False)])
async def test_unavailable_store_is_tried_three_times(
    tmp_path: Path, monkeypatch: Any, failures: int, ok: bool
) -> None:
    from bubu._runtime.context import load_run_context
    from bubu._storage.store import FileStore

    monkeypatch.setattr(_payloads, "_DEHYDRATE_BACKOFF", 0.0)
    store = _Flaky(FileStore(str(tmp_path)), failures)
    run_ctx = load_run_context(
        MappingSource(env_for(tmp_path, BUBU_STEPRUN_NAME="s", BUBU_MAX_INLINE_SIZE="10"))
    )
    manager = StorageManager(store, max_inline_size=10)  # type: ignore[arg-type]
    payloads = _payloads.Payloads(run_ctx, kube=None, manager=manager)
    if ok:
        out = await payloads.output({"body": "y" * 100})
        assert "$bubuStorageRef" in out["body"] and store.calls == 3
        return
    with pytest.raises(StorageUnavailableError) as info:
        await payloads.output({"body": "y" * 100})
    assert str(info.value).startswith(
        "failed to dehydrate output after 3 retries (storage backend unavailable): "
    )
    assert info.value.retryable and store.calls == 3
