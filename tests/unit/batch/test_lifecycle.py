"""start_batch lifecycle: outcomes, exit codes and the status written.

See docs/contract/batch-lifecycle.md#steps, docs/contract/steprun-status.md#merge-rules and
docs/contract/errors.md#structured-error.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import msgspec
import pytest

import bubu
from bubu._aio.shutdown import Shutdown
from bubu._batch import run_batch, start_batch
from bubu._k8s.status import MemoryStatusSink
from bubu._runtime.sources import MappingSource
from bubu.errors import (
    ConflictError,
    EngramError,
    SchemaValidationError,
    SecretExpansionError,
    StepTimeoutError,
)
from bubu.testkit import BatchHarness
from tests.unit.k8s.status_fakes import FakeStepRuns

SECRET = "s3cr3t-value-XYZ"


class Config(msgspec.Struct):
    greeting: str = "Hello"


class Inputs(msgspec.Struct):
    name: str
    count: int = 1


class Hello(bubu.BatchEngram[Config, Inputs]):
    def __init__(self, behaviour: str = "ok") -> None:
        self.behaviour = behaviour
        self.calls: list[str] = []

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.calls.append("init")
        self.config = config
        self.secrets = secrets
        if self.behaviour == "init-fails":
            raise ValueError("cannot connect")
        if self.behaviour == "init-slow":
            await asyncio.sleep(10)

    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        self.calls.append("process")
        b = self.behaviour
        if b == "raise":
            raise ValueError("boom")
        if b == "engram-error":
            raise EngramError(
                "upstream said no",
                type="validation_error",
                retryable=True,
                code="E42",
                details={"field": "name"},
            )
        if b == "slow":
            await asyncio.sleep(10)
        if b == "leak":
            token = self.secrets.get("api")
            ctx.logger.error("calling with %s", token)
            raise RuntimeError(f"request failed with token {token}")
        if b == "list":
            return bubu.Result([1, 2])
        return bubu.Result(
            {"greeting": f"{self.config.greeting}, {inputs.name}!", "count": inputs.count}
        )


def src(**values: str) -> MappingSource:
    base = {"BUBU_TRIGGER_DATA": '{"name": "Ada"}'}
    base.update(values)
    return MappingSource(base)


async def test_success_writes_succeeded_output_and_exit_0() -> None:
    sink = MemoryStatusSink()
    code = await start_batch(
        Hello(), source=src(BUBU_STEP_CONFIG='{"greeting": "Hi"}'), status_sink=sink
    )
    assert code == 0
    st = sink.status
    assert st["phase"] == "Succeeded" and st["exitClass"] == "success"
    assert st["output"] == {"greeting": "Hi, Ada!", "count": 1}
    assert st["retries"] == 0 and "exitCode" not in st and "error" not in st
    assert st["finishedAt"].endswith("Z") and st["duration"].endswith("s")


async def test_weak_typing_decodes_string_int() -> None:
    sink = MemoryStatusSink()
    code = await start_batch(
        Hello(), source=src(BUBU_TRIGGER_DATA='{"name": "A", "count": "3"}'), status_sink=sink
    )
    assert code == 0 and sink.status["output"]["count"] == 3


async def test_exception_gives_failed_exit_1_with_structured_error() -> None:
    sink = MemoryStatusSink()
    report = await run_batch(Hello("raise"), source=src(), status_sink=sink)
    assert report.exit_code == 1 and isinstance(report.exception, ValueError)
    st = sink.status
    assert st["phase"] == "Failed" and st["exitCode"] == 1 and st["exitClass"] == "terminal"
    assert st["error"] == {
        "version": "v1",
        "type": "execution_error",
        "message": "ValueError: boom",
        "retryable": False,
        "exitCode": 1,
        "exitClass": "terminal",
    }
    assert st["lastFailureMsg"] == "ValueError: boom"
    assert "output" not in st


async def test_engram_error_overrides_type_class_code_details() -> None:
    sink = MemoryStatusSink()
    code = await start_batch(Hello("engram-error"), source=src(), status_sink=sink)
    assert code == 1
    err = sink.status["error"]
    assert err["type"] == "validation_error" and err["retryable"] is True
    assert err["exitClass"] == "retry" and sink.status["exitClass"] == "retry"
    assert err["code"] == "E42" and err["details"] == {"field": "name"}


async def test_timeout_gives_timeout_124_class_retry() -> None:
    sink = MemoryStatusSink()
    report = await run_batch(Hello("slow"), source=src(BUBU_STEP_TIMEOUT="50ms"), status_sink=sink)
    assert report.exit_code == 124 and isinstance(report.exception, StepTimeoutError)
    st = sink.status
    assert st["phase"] == "Timeout" and st["exitCode"] == 124 and st["exitClass"] == "retry"
    assert st["error"]["type"] == "timeout"
    assert "timed out after 50ms" in st["error"]["message"]


async def test_timeout_during_init_is_timeout_too() -> None:
    sink = MemoryStatusSink()
    code = await start_batch(
        Hello("init-slow"), source=src(BUBU_STEP_TIMEOUT="50ms"), status_sink=sink
    )
    assert code == 124 and sink.status["phase"] == "Timeout"


async def test_shutdown_request_cancels_and_writes_terminal_status() -> None:
    sink = MemoryStatusSink()
    shutdown = Shutdown(grace=2.0)
    engram = Hello("slow")
    task = asyncio.create_task(run_batch(engram, source=src(), status_sink=sink, shutdown=shutdown))
    while "process" not in engram.calls:  # noqa: ASYNC110 - polling the fake engram
        await asyncio.sleep(0.005)
    shutdown.request("SIGTERM")
    report = await asyncio.wait_for(task, 5)
    assert report.exit_code == 143 and report.interrupted == "SIGTERM"
    st = sink.status
    assert st["phase"] == "Failed" and st["exitClass"] == "retry" and st["exitCode"] == 143
    assert st["error"]["code"] == "Interrupted" and "SIGTERM" in st["error"]["message"]


async def test_contract_error_fails_naming_the_variable() -> None:
    sink = MemoryStatusSink()
    engram = Hello()
    report = await run_batch(engram, source=src(BUBU_TRIGGER_DATA="[1]"), status_sink=sink)
    assert report.exit_code == 1 and engram.calls == []
    assert "BUBU_TRIGGER_DATA" in sink.status["lastFailureMsg"]
    assert sink.status["phase"] == "Failed" and sink.status["error"]["version"] == "v1"


async def test_input_decode_error_names_json_path() -> None:
    sink = MemoryStatusSink()
    engram = Hello()
    report = await run_batch(
        engram, source=src(BUBU_TRIGGER_DATA='{"name": "A", "count": []}'), status_sink=sink
    )
    assert report.exit_code == 1 and engram.calls == ["init"]
    assert isinstance(report.exception, SchemaValidationError)
    assert report.exception.path == "$.count"
    assert sink.status["lastFailureMsg"].startswith("inputs: $.count:")
    assert sink.status["error"]["type"] == "validation_error"


async def test_strict_config_rejects_unknown_key() -> None:
    sink = MemoryStatusSink()
    report = await run_batch(
        Hello(),
        source=src(BUBU_STEP_CONFIG='{"greting": "x"}', BUBU_RUNTIME_STRICT_UNMARSHAL="true"),
        status_sink=sink,
    )
    assert report.exit_code == 1 and "config: $.greting" in sink.status["lastFailureMsg"]


async def test_init_failure_is_initialization_error_and_skips_process() -> None:
    sink = MemoryStatusSink()
    engram = Hello("init-fails")
    code = await start_batch(engram, source=src(), status_sink=sink)
    assert code == 1 and engram.calls == ["init"]
    assert sink.status["error"]["type"] == "initialization_error"
    assert sink.status["lastFailureMsg"] == (
        "engram initialization failed: ValueError: cannot connect"
    )


async def test_secret_expansion_failure_skips_init(tmp_path: Any) -> None:
    sink = MemoryStatusSink()
    engram = Hello()
    missing = tmp_path / "nope"
    report = await run_batch(engram, source=src(BUBU_SECRET_db=f"file:{missing}"), status_sink=sink)
    assert report.exit_code == 1 and engram.calls == []
    assert isinstance(report.exception, SecretExpansionError)
    msg = sink.status["lastFailureMsg"]
    assert "failed to expand secrets" in msg and 'secret "db" (file)' in msg
    assert str(missing) not in msg


async def test_non_object_output_fails_with_clear_message() -> None:
    sink = MemoryStatusSink()
    code = await start_batch(Hello("list"), source=src(), status_sink=sink)
    assert code == 1
    assert sink.status["error"]["type"] == "serialization_error"
    assert "must be a JSON object, got list" in sink.status["lastFailureMsg"]


async def test_secret_values_never_reach_status_or_logs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    sink = MemoryStatusSink()
    code = await start_batch(
        Hello("leak"), source=src(BUBU_SECRET_api=SECRET, BUBU_DEBUG="1"), status_sink=sink
    )
    assert code == 1
    assert SECRET not in repr(sink.writes) and SECRET not in repr(sink.status)
    assert "[REDACTED]" in sink.status["lastFailureMsg"]
    logged = "\n".join(r.getMessage() + (r.exc_text or "") for r in caplog.records)
    assert "calling with" in logged
    assert SECRET not in logged


async def test_kube_sink_used_when_steprun_named() -> None:
    kube = FakeStepRuns()
    kube.seed("step-1", {"phase": "Running", "retries": 0, "startedAt": "t"})
    code = await start_batch(
        Hello(),
        source=src(BUBU_STEPRUN_NAME="step-1", BUBU_STEPRUN_NAMESPACE="default"),
        client=kube,
    )
    assert code == 0
    assert kube.status("step-1")["phase"] == "Succeeded"
    assert kube.status("step-1")["output"]["greeting"] == "Hello, Ada!"


async def test_status_write_failure_after_success_exits_1() -> None:
    kube = FakeStepRuns()
    kube.seed("step-1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [ConflictError("conflict", status_code=409)] * 10
    report = await run_batch(
        Hello(), source=src(BUBU_STEPRUN_NAME="step-1", BUBU_K8S_PATCH_MAX_RETRIES="1"), client=kube
    )
    assert report.exit_code == 1 and report.phase == "Succeeded"
    assert isinstance(report.status_error, ConflictError)


async def test_contract_error_reported_on_cluster_steprun() -> None:
    kube = FakeStepRuns()
    kube.seed("step-1", {"phase": "Running", "retries": 0})
    code = await start_batch(
        Hello(), source=src(BUBU_STEPRUN_NAME="step-1", BUBU_TRIGGER_DATA="[1]"), client=kube
    )
    assert code == 1
    st = kube.status("step-1")
    assert st["phase"] == "Failed" and "BUBU_TRIGGER_DATA" in st["lastFailureMsg"]


async def test_wrong_engram_type_rejected_before_io() -> None:
    class NotAnEngram:
        pass

    with pytest.raises(TypeError):
        await start_batch(NotAnEngram(), source=src())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="instance"):
        await start_batch(Hello, source=src())  # type: ignore[arg-type]


async def test_harness_returns_result_and_status() -> None:
    harness = BatchHarness(
        engram=Hello(),
        config=Config(greeting="Hey"),
        inputs=Inputs(name="Bo"),
        secrets={"api": "file:/nope"},
    )
    result = await harness.run()
    assert result.data == {"greeting": "Hey, Bo!", "count": 1}
    assert harness.status["phase"] == "Succeeded"


async def test_harness_raises_engram_exceptions() -> None:
    with pytest.raises(ValueError, match="boom"):
        await BatchHarness(engram=Hello("raise"), inputs={"name": "x"}).run()
    with pytest.raises(ValueError, match="cannot connect"):
        await BatchHarness(engram=Hello("init-fails"), inputs={"name": "x"}).run()
    with pytest.raises(StepTimeoutError):
        await BatchHarness(engram=Hello("slow"), inputs={"name": "x"}, timeout=0.05).run()
    with pytest.raises(SchemaValidationError, match=r"\$\.name"):
        await BatchHarness(engram=Hello(), inputs={}).run()


async def test_harness_secrets_are_literal_and_exposed() -> None:
    engram = Hello()
    await BatchHarness(engram=engram, inputs={"name": "x"}, secrets={"api": "env:HOME"}).run()
    assert engram.secrets.get("api") == "env:HOME"


async def test_plugin_fixture_factory(bubu_batch_harness: Any) -> None:
    result = await bubu_batch_harness(engram=Hello(), inputs={"name": "Z"}).run()
    assert result.data["greeting"] == "Hello, Z!"


def test_bubu_env_fixture_sets_variables(bubu_env: Any) -> None:
    import os

    bubu_env(step_timeout="5s", BUBU_DEBUG="1")
    assert os.environ["BUBU_STEP_TIMEOUT"] == "5s" and os.environ["BUBU_DEBUG"] == "1"
    bubu_env(debug=None)
    assert "BUBU_DEBUG" not in os.environ


class Introspect(bubu.BatchEngram[dict, dict]):
    async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> bubu.Result:
        return bubu.Result(
            {
                "run": ctx.story_info.story_run_id,
                "step": ctx.story_info.step_run_id,
                "tpl": ctx.template_context,
                "key": ctx.idempotency_key(),
            }
        )


async def test_harness_passes_identity_and_template_context() -> None:
    info = bubu.StoryInfo(
        story_name="s", story_run_id="r1", step_name="a", step_run_id="sr1", step_run_namespace="ns"
    )
    result = await BatchHarness(
        engram=Introspect(), story_info=info, template_context={"inputs": {"x": 1}}
    ).run()
    assert result.data == {
        "run": "r1",
        "step": "sr1",
        "tpl": {"inputs": {"x": 1}},
        "key": "ns/ns/storyrun/r1/steprun/sr1",
    }


async def test_process_may_return_plain_dict() -> None:
    class Plain(bubu.BatchEngram[dict, dict]):
        async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> Any:
            return {"ok": True}

    sink = MemoryStatusSink()
    assert await start_batch(Plain(), source=src(), status_sink=sink) == 0
    assert sink.status["output"] == {"ok": True}


async def test_secret_never_reaches_json_log_stream_in_process() -> None:
    import io

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a pod: nobody configured logging, bubu installs JSON logs
    stream = io.StringIO()
    try:
        sink = MemoryStatusSink()
        report = await run_batch(
            Hello("leak"),
            source=src(BUBU_SECRET_api=SECRET, BUBU_DEBUG="true"),
            status_sink=sink,
            log_stream=stream,
        )
    finally:
        root.handlers[:] = saved
    printed = stream.getvalue()
    assert report.exit_code == 1
    assert "calling with [REDACTED]" in printed and "Traceback" in printed
    assert SECRET not in printed and SECRET not in repr(sink.writes)


async def test_engram_cancelling_itself_is_a_failure() -> None:
    class SelfCancel(bubu.BatchEngram[dict, dict]):
        async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> bubu.Result:
            raise asyncio.CancelledError

    sink = MemoryStatusSink()
    assert await start_batch(SelfCancel(), source=src(), status_sink=sink) == 1
    assert sink.status["phase"] == "Failed"
    assert "cancelled" in sink.status["lastFailureMsg"]


async def test_cancelling_the_run_cancels_the_engram() -> None:
    engram = Hello("slow")
    task = asyncio.create_task(run_batch(engram, source=src(), status_sink=MemoryStatusSink()))
    while "process" not in engram.calls:  # noqa: ASYNC110 - polling the fake engram
        await asyncio.sleep(0.005)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await asyncio.sleep(0)
    leftovers = [t for t in asyncio.all_tasks() if t.get_name() == "bubu.batch.work"]
    assert all(t.done() or t.cancelling() for t in leftovers)


async def test_fast_pod_on_pending_steprun_keeps_output_without_phase() -> None:
    sink = MemoryStatusSink({"phase": "Pending", "retries": 0})
    code = await start_batch(Hello(), source=src(), status_sink=sink)
    assert code == 0
    # the controller sets Succeeded (docs/contract/steprun-status.md#controller)
    assert sink.status["phase"] == "Pending"
    assert sink.status["output"]["greeting"] == "Hello, Ada!"
    assert sink.status["exitClass"] == "success"


async def test_terminal_steprun_refuses_late_write() -> None:
    sink = MemoryStatusSink({"phase": "Canceled", "retries": 0})
    report = await run_batch(Hello(), source=src(), status_sink=sink)
    assert report.exit_code == 1 and sink.status == {"phase": "Canceled", "retries": 0}


class Stubborn(bubu.BatchEngram[dict, dict]):
    """Swallows the deadline's cancellation and returns a result anyway."""

    async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> bubu.Result:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)
        return bubu.Result({"late": True})


async def test_success_after_the_deadline_is_still_a_timeout() -> None:
    # Go's TestRunWithClientsTimeoutSuccessStillForcesExitCode: a result that arrives after
    # the deadline does not count; the step is Timeout/124 and the late output is not written.
    sink = MemoryStatusSink()
    report = await run_batch(Stubborn(), source=src(BUBU_STEP_TIMEOUT="50ms"), status_sink=sink)
    assert report.exit_code == 124 and isinstance(report.exception, StepTimeoutError)
    st = sink.status
    assert st["phase"] == "Timeout" and st["exitCode"] == 124 and st["exitClass"] == "retry"
    assert "output" not in st


@pytest.mark.parametrize(
    ("behaviour", "patch_fails", "phase", "exit_code", "exception"),
    [
        ("ok", False, "Succeeded", 0, None),
        ("raise", False, "Failed", 1, ValueError),
        ("ok", True, "Succeeded", 1, None),
        ("raise", True, "Failed", 1, ValueError),
    ],
)
async def test_result_and_patch_outcome_matrix(
    behaviour: str, patch_fails: bool, phase: str, exit_code: int, exception: Any
) -> None:
    # Go's TestHandleResultAndPatchStatus: success / process error / patch error / both.
    kube = FakeStepRuns()
    kube.seed("step-1", {"phase": "Running", "retries": 0})
    if patch_fails:
        kube.fail_patch = [ConflictError("conflict", status_code=409)] * 10
    report = await run_batch(
        Hello(behaviour),
        source=src(BUBU_STEPRUN_NAME="step-1", BUBU_K8S_PATCH_MAX_RETRIES="1"),
        client=kube,
    )
    assert (report.phase, report.exit_code) == (phase, exit_code)
    assert isinstance(report.exception, exception) if exception else report.exception is None
    assert isinstance(report.status_error, ConflictError) is patch_fails
    stored = kube.status("step-1")
    if patch_fails:
        assert stored["phase"] == "Running" and len(kube.patches) == 2
    else:
        assert stored["phase"] == phase and len(kube.patches) == 1
        assert ("output" in stored) is (exception is None)


@pytest.mark.parametrize(
    ("values", "variable"),
    [
        ({"BUBU_STEP_TIMEOUT": "soon"}, "BUBU_STEP_TIMEOUT"),
        ({"BUBU_K8S_PATCH_MAX_RETRIES": "many"}, "BUBU_K8S_PATCH_MAX_RETRIES"),
        ({"BUBU_TRIGGER_DATA": "[1]"}, "BUBU_TRIGGER_DATA"),
    ],
)
async def test_environment_problems_are_json_log_lines_naming_the_variable(
    values: dict[str, str], variable: str
) -> None:
    # Loading the environment happens under the JSON handler: an ignored invalid value
    # (warning) and an unusable one (error) both come out as JSON lines that name it.
    import io
    import json

    root = logging.getLogger()
    saved = root.handlers[:]
    root.handlers.clear()  # as in a pod: nobody configured logging
    stream = io.StringIO()
    try:
        await run_batch(
            Hello(), source=src(**values), status_sink=MemoryStatusSink(), log_stream=stream
        )
    finally:
        root.handlers[:] = saved
    lines = [json.loads(line) for line in stream.getvalue().splitlines()]
    named = [x for x in lines if variable in x["msg"] and x["level"] in ("WARNING", "ERROR")]
    assert named, lines
