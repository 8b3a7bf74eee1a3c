"""The env the real operator gives its pods, read by the SDK; hybrid mode end to end.

The operator writes each workload's env into the pod template (``workloads.pod_env`` reads it
back and fills in the downward-API fields a kubelet would). The SDK must read every value the
operator writes as it is meant (Go durations such as ``5m0s``, its booleans, its storage
block) and warn about none. Hybrid mode is the operator's choice for a batch step that feeds
a streaming step: the SDK runs the step as batch from that env, the operator takes the result
and starts the streaming step.
"""

from __future__ import annotations

import logging
from typing import Any

import msgspec
import pytest

import bubu
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._start import start
from bubu.engram import BatchEngram, StreamingEngram
from tests._controlplane import workloads

pytestmark = pytest.mark.integration


def load_quietly(env: dict[str, str], caplog: pytest.LogCaptureFixture) -> Any:
    with caplog.at_level(logging.WARNING):
        loaded = load_env(MappingSource(env))
    complaints = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    assert complaints == []
    return loaded


def test_the_batch_job_env_reads_as_the_operator_means_it(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, caplog: Any
) -> None:
    ns = k8s_namespace
    env = workloads.pod_env(controlplane, ns, "run-1-step-a", pod_name="run-1-step-a-x7k2p")
    loaded = load_quietly(env, caplog)
    assert (loaded.steprun_name, loaded.steprun_namespace) == ("run-1-step-a", ns)
    assert (loaded.story_name, loaded.storyrun_id, loaded.step_name) == ("story", "run-1", "step-a")
    assert loaded.engram_name == "engram" and loaded.pod_name == "run-1-step-a-x7k2p"
    assert loaded.execution_mode == "batch" and loaded.is_batch_mode
    assert env["BUBU_STEP_TIMEOUT"] == "5m0s" and loaded.step_timeout == 300.0
    assert loaded.max_inline_size == 4096 and loaded.max_recursion_depth == 32
    assert loaded.grpc_port == 50051
    assert loaded.storage is not None and loaded.storage.provider == "s3"
    assert loaded.started_at.isoformat().startswith(env["BUBU_STARTED_AT"][:19])


def test_the_impulse_deployment_env_reads_as_the_operator_means_it(
    controlplane: Any, k8s_namespace: str, impulse_identity: Any, caplog: Any
) -> None:
    deployment = f"hook-{workloads.IMPULSE_TEMPLATE}-impulse"
    env = workloads.pod_env(controlplane, k8s_namespace, deployment, kind="Deployment")
    loaded = load_quietly(env, caplog)
    assert (loaded.impulse_name, loaded.impulse_namespace) == ("hook", k8s_namespace)
    assert (loaded.target_story_name, loaded.target_story_namespace) == ("story", k8s_namespace)
    assert loaded.max_inline_size == 4096 and loaded.max_recursion_depth == 32


class Inputs(msgspec.Struct):
    x: int = 0


class Dual(BatchEngram[dict, Inputs], StreamingEngram[dict]):
    """Batch and streaming in one class, as an engram that serves both kinds of step."""

    async def process(self, ctx: Any, inputs: Inputs) -> bubu.Result:
        return bubu.Result({"y": inputs.x * 3})

    async def stream(self, inbound: Any) -> Any:  # never called here
        async for _ in inbound:
            yield None


async def test_hybrid_step_runs_as_batch_and_the_operator_starts_the_streaming_step(
    controlplane: Any, operator: Any, k8s_namespace: str, caplog: Any
) -> None:
    ns = k8s_namespace
    hybrid = workloads.story(
        "hybrid",
        steps=[
            {"name": "step-a", "ref": {"name": "engram"}},
            {"name": "step-b", "ref": {"name": "streamer"}, "needs": ["step-a"]},
        ],
    )
    streamer = workloads.engram(
        "streamer", template=workloads.STREAMING_TEMPLATE, mode="deployment"
    )
    workloads.seed(
        controlplane, ns, workloads.engram(), streamer, hybrid, workloads.story_run("h", "hybrid")
    )
    runner = workloads.engram_runner(controlplane, ns, "h")
    step = workloads.step_run(
        controlplane, ns, "h-step-a", lambda o: (o.get("status") or {}).get("phase") == "Running"
    )
    # The operator chose hybrid: step-b streams, so step-a's output also goes downstream.
    assert step["spec"]["downstreamTargets"] == [{"grpc": {"endpoint": f"streamer.{ns}.svc:50051"}}]
    env = workloads.pod_env(controlplane, ns, "h-step-a")
    loaded = load_quietly(env, caplog)
    assert loaded.execution_mode == "hybrid" and loaded.hybrid_bridge is True
    # No transports on the Story: the operator names no binding, so the SDK skips the bridge.
    assert loaded.transport_binding is None
    env.update({"KUBECONFIG": str(runner.kubeconfig_path), "BUBU_TRIGGER_DATA": '{"x": 5}'})
    assert await start(Dual(), source=MappingSource(env)) == 0
    done = workloads.step_run(
        controlplane, ns, "h-step-a", lambda o: (o.get("status") or {}).get("phase") == "Succeeded"
    )
    assert done["status"]["output"] == {"y": 15}
    # The operator takes the result and starts the streaming step.
    downstream = workloads.step_run(controlplane, ns, "h-step-b", lambda o: True)
    assert downstream["spec"]["engramRef"]["name"] == "streamer"
