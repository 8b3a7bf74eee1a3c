"""start_batch end to end against the real API server, as the engram-runner ServiceAccount."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

import bubu
import tests.conftest as _root_conftest
from bubu._batch import run_batch
from bubu._runtime.sources import MappingSource
from tests.integration.test_status import RUNNING, read_step_run, seed_step_run

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        fault_proxy,
        k8s_namespace,
        make_identity,
    )

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


class Inputs(msgspec.Struct):
    name: str
    sleep: float = 0.0


class Greeter(bubu.BatchEngram[dict, Inputs]):
    async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
        import asyncio

        await asyncio.sleep(inputs.sleep)
        return bubu.Result({"greeting": f"Hello, {inputs.name}!"})


def env_for(ns: str, kubeconfig: Any, **extra: str) -> dict[str, str]:
    values = {
        "BUBU_STEPRUN_NAME": "s1",
        "BUBU_STEPRUN_NAMESPACE": ns,
        "BUBU_STORYRUN_ID": "run-1",
        "BUBU_STEP_NAME": "step-a",
        "KUBECONFIG": str(kubeconfig),
        "BUBU_TRIGGER_DATA": '{"name": "Ada"}',
    }
    values.update(extra)
    return values


async def test_batch_success_writes_succeeded_with_output(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, fault_proxy: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", RUNNING)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    code = await bubu.start_batch(
        Greeter(), source=MappingSource(env_for(k8s_namespace, kubeconfig))
    )
    assert code == 0
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Succeeded" and st["exitClass"] == "success"
    assert st["output"] == {"greeting": "Hello, Ada!"} and st["retries"] == 0
    # Least privilege: the whole run needed only object GETs and status PATCHes.
    calls = {
        (r.method, r.path.rsplit("/", 2)[-2] if r.path.endswith("/status") else "obj")
        for r in fault_proxy.requests
        if "/stepruns" in r.path
    }
    assert calls <= {("GET", "obj"), ("PATCH", "s1")}
    assert all(r.status < 400 for r in fault_proxy.requests)


async def test_batch_timeout_writes_timeout_and_124(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", RUNNING)
    env = env_for(
        k8s_namespace,
        engram_runner_identity.kubeconfig_path,
        BUBU_TRIGGER_DATA='{"name": "A", "sleep": 30}',
        BUBU_STEP_TIMEOUT="300ms",
    )
    report = await run_batch(Greeter(), source=MappingSource(env))
    assert report.exit_code == 124
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Timeout" and st["exitCode"] == 124 and st["exitClass"] == "retry"
    assert st["error"]["type"] == "timeout"


async def test_malformed_environment_fails_steprun_naming_variable(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", RUNNING)
    env = env_for(k8s_namespace, engram_runner_identity.kubeconfig_path, BUBU_TRIGGER_DATA="[1]")
    code = await bubu.start_batch(Greeter(), source=MappingSource(env))
    assert code == 1
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Failed" and st["exitCode"] == 1
    assert "BUBU_TRIGGER_DATA" in st["lastFailureMsg"]
    assert st["error"]["version"] == "v1"


async def test_engram_exception_fails_steprun_with_structured_error(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", RUNNING)
    env = env_for(
        k8s_namespace,
        engram_runner_identity.kubeconfig_path,
        BUBU_TRIGGER_DATA='{"name": []}',
        BUBU_SECRET_api="tok-abcdef-123",
    )
    code = await bubu.start_batch(Greeter(), source=MappingSource(env))
    assert code == 1
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Failed" and st["error"]["type"] == "validation_error"
    assert st["lastFailureMsg"].startswith("inputs: $.name:")


SCRIPT = textwrap.dedent("""
    import asyncio, sys, bubu

    class Slow(bubu.BatchEngram[dict, dict]):
        async def process(self, ctx, inputs):
            print("READY", file=sys.stderr, flush=True)
            await asyncio.sleep(60)
            return bubu.Result({})

    bubu.run(bubu.start_batch(Slow()))
""")


def test_sigterm_subprocess_ends_with_terminal_status(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, tmp_path: Path
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", RUNNING)
    script = tmp_path / "slow.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    env.update(env_for(k8s_namespace, engram_runner_identity.kubeconfig_path))
    proc = subprocess.Popen(
        [sys.executable, str(script)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
        cwd=ROOT,
    )
    assert proc.stderr is not None
    assert proc.stderr.readline().strip() == "READY"
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Failed" and st["exitClass"] == "retry" and st["exitCode"] == 143
    assert st["error"]["code"] == "Interrupted"


async def test_fast_pod_on_pending_steprun_keeps_output(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", {"retries": 0, "phase": "Pending"})
    env = env_for(k8s_namespace, engram_runner_identity.kubeconfig_path)
    assert await bubu.start_batch(Greeter(), source=MappingSource(env)) == 0
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Pending" and st["output"] == {"greeting": "Hello, Ada!"}
