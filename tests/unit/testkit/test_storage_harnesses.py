"""The harnesses use a file store by default, so offloaded payloads are testable locally."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import msgspec
import pytest

import bubu
from bubu.errors import StorageDisabledError
from bubu.testkit import BatchHarness, ImpulseHarness, LocalStorage, StreamHarness


class Doc(msgspec.Struct):
    title: str
    body: str


class Inputs(msgspec.Struct):
    doc: Doc
    words: int = 0


class Summarise(bubu.BatchEngram[dict, Inputs]):
    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        return bubu.Result(
            {"title": inputs.doc.title.upper(), "echo": inputs.doc.body, "words": inputs.words}
        )


async def test_batch_harness_hydrates_refs_and_offloads_large_output() -> None:
    storage = LocalStorage()
    body = "lorem ipsum " * 200
    ref = await storage.put({"title": "t", "body": body}, name="doc")
    harness = BatchHarness(engram=Summarise(), inputs={"doc": ref, "words": 400}, storage=storage)
    result = await harness.run()
    assert result.data["title"] == "T"
    output = harness.status["output"]
    assert output["title"] == "T" and output["words"] == 400
    assert output["echo"]["$bubuStorageRef"] == "outputs/echo.json"  # no StepRun: Go's path
    assert await storage.hydrate(output) == {"title": "T", "echo": body, "words": 400}
    assert "outputs/echo.json" in storage.files()


async def test_batch_harness_default_store_is_a_temporary_directory() -> None:
    harness = BatchHarness(engram=Summarise(), inputs={"doc": {"title": "a", "body": "b"}})
    assert isinstance(harness.storage, LocalStorage)
    root = harness.storage.root
    assert root.is_dir()
    await harness.run()
    harness.storage.cleanup()
    assert not root.exists()


async def test_batch_harness_without_storage_behaves_like_a_cluster_without_it() -> None:
    harness = BatchHarness(
        engram=Summarise(),
        inputs={"doc": {"title": "t", "body": "x" * 5000}},
        storage=False,
    )
    assert harness.storage is None
    with pytest.raises(StorageDisabledError, match="exceeds inline limit 1024"):
        await harness.run()
    assert harness.status["phase"] == "Failed"
    assert harness.status["error"]["type"] == "storage_error"


async def test_batch_harness_keeps_a_provider_named_in_env(tmp_path: Path) -> None:
    env = {"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(tmp_path)}
    harness = BatchHarness(
        engram=Summarise(), inputs={"doc": {"title": "t", "body": "y" * 3000}}, env=env
    )
    assert harness.storage is None
    await harness.run()
    assert (tmp_path / "outputs/echo.json").is_file()


class Banner(msgspec.Struct):
    text: str
    url: str = ""


class Shout(bubu.StreamingEngram[Banner]):
    async def init(self, config: Banner, secrets: bubu.Secrets) -> None:
        self.config = config

    async def stream(self, inbound: Any) -> Any:
        async for message in inbound:
            payload = {"text": self.config.text, "url": self.config.url}
            yield bubu.StreamMessage(kind="data", payload=msgspec.json.encode(payload))
            message.done()


async def test_stream_harness_hydrates_config_refs_and_templates() -> None:
    storage = LocalStorage()
    ref = await storage.put("Welcome {{ not a template }} " * 10)
    harness = StreamHarness(
        engram=Shout(),
        config={"text": ref, "url": "https://{{ .inputs.host }}/feed"},
        template_context={"inputs": {"host": "example.com"}},
        inputs=[bubu.StreamMessage(kind="data", payload=b"{}")],
        storage=storage,
    )
    (out,) = await harness.run()
    assert msgspec.json.decode(out.payload) == {
        "text": "Welcome {{ not a template }} " * 10,
        "url": "https://example.com/feed",
    }


class Forward(bubu.Impulse[dict]):
    async def run(self, client: bubu.ImpulseClient) -> None:
        await client.start_story_with_token("tok-1", {"report": "z" * 3000, "n": 1})


async def test_impulse_harness_offloads_large_trigger_inputs() -> None:
    harness = ImpulseHarness(impulse=Forward())
    assert await harness.run() == 0
    assert harness.storage is not None
    (trigger,) = harness.triggers
    inputs = trigger["spec"]["inputs"]
    assert inputs["n"] == 1
    assert inputs["report"]["$bubuStorageSchema"] == "bubu://story/default/story/inputs"
    assert await harness.storage.hydrate(inputs) == {"report": "z" * 3000, "n": 1}


class Recorder(bubu.BatchEngram[dict, dict]):
    async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> bubu.Result:
        audio = bytes(range(256)) * 40
        ref = await bubu.offload_blob(audio, content_type="audio/wav", scope=["cam-1"])
        assert ref is not None and await bubu.read_blob(ref) == audio
        assert await bubu.offload_blob(b"tiny") is None  # small payloads stay inline
        logs = await bubu.publish_logs("recorded one clip\n")
        return bubu.Result({"clip": ref.path, "size": ref.size_bytes, "logs": logs})


async def test_blob_and_log_helpers_use_the_runs_storage() -> None:
    info = bubu.StoryInfo(
        story_name="story",
        story_run_id="run-1",
        step_name="record",
        step_run_id="record-1",
        step_run_namespace="team-a",
    )
    harness = BatchHarness(engram=Recorder(), inputs={}, story_info=info)
    result = await harness.run()
    assert harness.storage is not None
    clip = result.data["clip"]
    assert clip.startswith("streams/team-a/run-1/record/cam-1/") and clip.endswith(".bin")
    assert result.data["size"] == 256 * 40 and clip in harness.storage.files()
    published = result.data["logs"]
    assert published["$bubuStorageContentType"] == "text/plain; charset=utf-8"
    assert (harness.storage.root / published["$bubuStorageRef"]).read_text() == (
        "recorded one clip\n"
    )
    assert published["$bubuStorageRef"].startswith("team-a/logs/run-1/record/record-1/")
    assert published["$bubuStorageSchema"] == "bubu://story/team-a/story/steps/record/logs"
    # A harness installs no logging, so nothing was captured to replace it at the end.
    assert harness.status["logs"] == published


class Greeting(msgspec.Struct):
    banner: str = ""
    path: str = ""


class Configured(bubu.Impulse[Greeting]):
    async def init(self, config: Greeting, secrets: bubu.Secrets) -> None:
        self.config = config

    async def run(self, client: bubu.ImpulseClient) -> None:
        return None


async def test_impulse_harness_hydrates_config_refs_and_templates() -> None:
    storage = LocalStorage()
    ref = await storage.put("Hi {{ there }} " * 100)
    impulse = Configured()
    harness = ImpulseHarness(
        impulse=impulse,
        config={"banner": ref, "path": "/hooks/{{ .inputs.team }}"},
        env={"BUBU_TEMPLATE_CONTEXT": '{"inputs": {"team": "red"}}'},
        storage=storage,
    )
    assert await harness.run() == 0
    assert impulse.config == Greeting(banner="Hi {{ there }} " * 100, path="/hooks/red")


async def test_impulse_config_with_a_missing_ref_fails_before_init() -> None:
    impulse = Configured()
    harness = ImpulseHarness(
        impulse=impulse, config={"banner": {"$bubuStorageRef": "outputs/x/gone.json"}}
    )
    with pytest.raises(RuntimeError, match="ended before run started"):
        await harness.run()
    assert harness.exit_code == 1 and not hasattr(impulse, "config")
