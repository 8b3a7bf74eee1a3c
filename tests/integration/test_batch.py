"""start_batch end to end against the real operator, as the pod of the Job it made.

``runner_env`` is the env the operator put in the Job of step ``step-a`` of StoryRun ``run-1``
(``workloads.pod_env``; the Job's pod never starts, the test process is that pod), plus
``KUBECONFIG`` for the engram-runner ServiceAccount the operator made and the step's input
(``BUBU_TRIGGER_DATA``). The SDK writes the status of the operator's StepRun while the operator
reconciles it, and the operator takes the result into the StoryRun. One test needs a
``Pending`` StepRun, which the operator never leaves a pod on: it runs before the operator
starts and seeds that state with its own Role.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import msgspec
import pytest

import bubu
import tests.conftest as _root_conftest
from bubu._batch import run_batch
from bubu._runtime.sources import MappingSource
from bubu.errors import PodFencedError
from tests._controlplane import workloads
from tests.integration.test_status import (
    OWN_RUNNER_RULES,
    SR,
    read_step_run,
    record_pod,
    seed_step_run,
)

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


@pytest.fixture
def runner_env(controlplane: Any, k8s_namespace: str, engram_runner_identity: Any) -> Any:
    """``env_for(kubeconfig, **extra)``: the operator's Job env for ``run-1-step-a`` and more."""
    job = workloads.pod_env(controlplane, k8s_namespace, SR, pod_name=f"{SR}-pod")
    assert job["BUBU_STEPRUN_NAME"] == SR and job["BUBU_STEPRUN_NAMESPACE"] == k8s_namespace

    def env_for(kubeconfig: Any, **extra: str) -> dict[str, str]:
        values = {**job, "KUBECONFIG": str(kubeconfig), "BUBU_TRIGGER_DATA": '{"name": "Ada"}'}
        values.update(extra)
        return values

    return env_for


def succeeded_run(controlplane: Any, ns: str) -> None:
    """The operator took the pod's result: the StoryRun's only step, and the run, succeeded."""
    workloads.wait_storyrun(controlplane, ns, "run-1", "Succeeded", steps={"step-a": "Succeeded"})


async def test_batch_success_writes_succeeded_with_output(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    fault_proxy: Any,
) -> None:
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    code = await bubu.start_batch(Greeter(), source=MappingSource(runner_env(kubeconfig)))
    assert code == 0
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Succeeded" and st["exitClass"] == "success"
    assert st["output"] == {"greeting": "Hello, Ada!"} and st["retries"] == 0
    # Least privilege: the whole run needed only object GETs and status PATCHes.
    calls = {
        (r.method, r.path.rsplit("/", 2)[-2] if r.path.endswith("/status") else "obj")
        for r in fault_proxy.requests
        if "/stepruns" in r.path
    }
    assert calls <= {("GET", "obj"), ("PATCH", SR)}
    # The schema lookup (docs/templates.md#schemas) reads the Engram, which the operator's Role does
    # not allow: one 403, as the Go SDK gets, and validation is skipped. Every other request
    # succeeded.
    refused = [(r.method, r.path, r.status) for r in fault_proxy.requests if r.status >= 400]
    engrams = f"/apis/bubustack.io/v1alpha1/namespaces/{k8s_namespace}/engrams/engram"
    assert refused == [("GET", engrams, 403)]
    succeeded_run(controlplane, k8s_namespace)


async def test_batch_timeout_writes_timeout_and_124(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    env = runner_env(
        engram_runner_identity.kubeconfig_path,
        BUBU_TRIGGER_DATA='{"name": "A", "sleep": 30}',
        BUBU_STEP_TIMEOUT="300ms",
    )
    report = await run_batch(Greeter(), source=MappingSource(env))
    assert report.exit_code == 124
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Timeout" and st["exitCode"] == 124 and st["exitClass"] == "retry"
    assert st["error"]["type"] == "timeout"


async def test_malformed_environment_fails_steprun_naming_variable(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    env = runner_env(engram_runner_identity.kubeconfig_path, BUBU_TRIGGER_DATA="[1]")
    code = await bubu.start_batch(Greeter(), source=MappingSource(env))
    assert code == 1
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Failed" and st["exitCode"] == 1
    assert "BUBU_TRIGGER_DATA" in st["lastFailureMsg"]
    assert st["error"]["version"] == "v1"


async def test_engram_exception_fails_steprun_with_structured_error(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    env = runner_env(
        engram_runner_identity.kubeconfig_path,
        BUBU_TRIGGER_DATA='{"name": []}',
        BUBU_SECRET_api="tok-abcdef-123",
    )
    code = await bubu.start_batch(Greeter(), source=MappingSource(env))
    assert code == 1
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
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
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    tmp_path: Path,
) -> None:
    script = tmp_path / "slow.py"
    script.write_text(SCRIPT)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    env.update(runner_env(engram_runner_identity.kubeconfig_path))
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
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Failed" and st["exitClass"] == "retry" and st["exitCode"] == 143
    assert st["error"]["code"] == "Interrupted"


async def test_fast_pod_on_pending_steprun_keeps_output(
    controlplane: Any, k8s_namespace: str, make_identity: Any
) -> None:
    # The operator marks the StepRun Running as it creates the Job; a pod this fast is a race
    # the test seeds (no operator here), with a Role of its own.
    seed_step_run(controlplane, k8s_namespace, "s1", {"retries": 0, "phase": "Pending"})
    env = {
        "BUBU_STEPRUN_NAME": "s1",
        "BUBU_STEPRUN_NAMESPACE": k8s_namespace,
        "KUBECONFIG": str(make_identity(OWN_RUNNER_RULES).kubeconfig_path),
        "BUBU_TRIGGER_DATA": '{"name": "Ada"}',
    }
    assert await bubu.start_batch(Greeter(), source=MappingSource(env)) == 0
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st["phase"] == "Pending" and st["output"] == {"greeting": "Hello, Ada!"}


ENGRAM = textwrap.dedent("""
    import asyncio, msgspec, bubu

    class Inputs(msgspec.Struct):
        name: str
        sleep: float = 0.0

    class Greeter(bubu.BatchEngram[dict, Inputs]):
        async def process(self, ctx, inputs):
            await asyncio.sleep(inputs.sleep)
            return bubu.Result({"greeting": f"Hello, {inputs.name}!"})

    bubu.run(bubu.start_batch(Greeter()))
""")


@pytest.mark.parametrize(
    ("extra", "exit_code", "phase", "named"),
    [
        ({}, 0, "Succeeded", None),
        ({"BUBU_TRIGGER_DATA": "[1]"}, 1, "Failed", "BUBU_TRIGGER_DATA"),
        ({"BUBU_STEP_CONFIG": '{"a": '}, 1, "Failed", "BUBU_STEP_CONFIG"),
        ({"BUBU_TRANSPORTS": '[{"kind": "grpc"}]'}, 1, "Failed", "BUBU_TRANSPORTS"),
        (
            {"BUBU_TRIGGER_DATA": '{"name": "A", "sleep": 30}', "BUBU_STEP_TIMEOUT": "300ms"},
            124,
            "Timeout",
            None,
        ),
    ],
    ids=["success", "bad-trigger-data", "bad-step-config", "bad-transports", "timeout"],
)
def test_engram_process_exit_code_and_steprun(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    tmp_path: Path,
    extra: dict[str, str],
    exit_code: int,
    phase: str,
    named: str | None,
) -> None:
    # The pod's view: `python engram.py` under `bubu.run`, as the engram-runner
    # ServiceAccount, with the operator's environment (docs/contract/batch-lifecycle.md#steps).
    script = tmp_path / "engram.py"
    script.write_text(ENGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    env.update(runner_env(engram_runner_identity.kubeconfig_path, **extra))
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert out.returncode == exit_code, out.stdout + out.stderr
    assert "Traceback" not in out.stdout + out.stderr
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == phase and st["retries"] == 0
    if exit_code == 0:
        assert st["output"] == {"greeting": "Hello, Ada!"} and st["exitClass"] == "success"
        succeeded_run(controlplane, k8s_namespace)
        return
    assert st["exitCode"] == exit_code and st["error"]["version"] == "v1"
    if named is not None:
        # The named error: in the process's log and on the StepRun.
        assert named in out.stdout + out.stderr
        assert named in st["lastFailureMsg"] and named in st["error"]["message"]
        assert st["exitClass"] == "terminal"
    else:
        assert st["exitClass"] == "retry" and st["error"]["type"] == "timeout"


def fail_job(controlplane: Any, ns: str, job: str) -> None:
    """Mark the operator's Job failed, as the Job controller would once its pod exited non-zero
    (there is no kubelet or Job controller here: the admin plays them)."""
    path = f"/apis/batch/v1/namespaces/{ns}/jobs/{job}/status"
    now_ = workloads_now()
    status = {
        "startTime": now_,
        "failed": 1,
        "conditions": [
            {
                "type": t,
                "status": "True",
                "reason": "BackoffLimitExceeded",
                "message": "pod failed",
                "lastProbeTime": now_,
                "lastTransitionTime": now_,
            }
            for t in ("FailureTarget", "Failed")
        ],
    }
    with controlplane.client() as c:
        r = c.patch(
            path, json={"status": status}, headers={"Content-Type": "application/merge-patch+json"}
        )
        assert r.status_code == 200, r.text


def collect_jobs_until_running(controlplane: Any, ns: str, name: str, timeout: float = 60) -> None:
    """Play the garbage collector until StepRun ``name`` runs again: the operator deletes a
    failed Job (with the ``orphan`` finalizer, which kube-controller-manager would remove) before
    a retry, and may delete the next one too if it made it before the retry was due."""
    jobs = f"/apis/batch/v1/namespaces/{ns}/jobs"
    deadline = time.monotonic() + timeout
    with controlplane.client() as c:
        while time.monotonic() < deadline:
            job = c.get(f"{jobs}/{name}")
            meta = job.json()["metadata"] if job.status_code == 200 else {}
            if meta.get("deletionTimestamp"):
                c.patch(
                    f"{jobs}/{name}",
                    json={"metadata": {"finalizers": None}},
                    headers={"Content-Type": "application/merge-patch+json"},
                )
            status = read_step_run(controlplane, ns, name)["status"]
            if meta and not meta.get("deletionTimestamp") and status.get("phase") == "Running":
                return
            time.sleep(0.2)
    raise AssertionError(f"StepRun {name} did not run again: {status}")


def workloads_now() -> str:
    from datetime import UTC, datetime

    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_a_failure_the_pod_reports_is_final_whatever_its_exit_class(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    # The operator (v0.1.13) looks at the SDK's exitClass only for a Job that failed while its
    # StepRun was not terminal; once the pod wrote Timeout/Failed the StepRun is final, even
    # with exitClass "retry" and retries left (operator default: 3).
    ns = k8s_namespace
    env = runner_env(
        engram_runner_identity.kubeconfig_path,
        BUBU_TRIGGER_DATA='{"name": "A", "sleep": 30}',
        BUBU_STEP_TIMEOUT="300ms",
    )
    assert (await run_batch(Greeter(), source=MappingSource(env))).exit_code == 124
    fail_job(controlplane, ns, SR)  # the pod exited 124
    workloads.wait_storyrun(controlplane, ns, "run-1", "Failed", steps={"step-a": "Timeout"})
    st = read_step_run(controlplane, ns, SR)["status"]
    assert (st["phase"], st["exitClass"], st["retries"]) == ("Timeout", "retry", 0)


async def test_a_pod_that_died_without_a_status_is_retried_and_the_next_pod_succeeds(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    # A pod killed before it wrote anything: the Job fails, the operator schedules a retry
    # (Pending, retries+1, a new Job), and the SDK in the next pod writes on top of that.
    ns = k8s_namespace
    first_job = workloads.job_uid(controlplane, ns, SR)
    fail_job(controlplane, ns, SR)
    workloads.step_run(controlplane, ns, SR, lambda o: (o.get("status") or {}).get("retries") == 1)
    collect_jobs_until_running(controlplane, ns, SR)
    assert read_step_run(controlplane, ns, SR)["status"]["retries"] == 1
    assert workloads.job_uid(controlplane, ns, SR) != first_job  # the operator made a new Job
    env = runner_env(engram_runner_identity.kubeconfig_path)
    assert await bubu.start_batch(Greeter(), source=MappingSource(env)) == 0
    st = read_step_run(controlplane, ns, SR)["status"]
    assert st["phase"] == "Succeeded" and st["retries"] == 1
    assert st["output"] == {"greeting": "Hello, Ada!"}
    succeeded_run(controlplane, ns)


async def test_batch_status_write_rides_out_conflicts_and_5xx(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    fault_proxy: Any,
) -> None:
    # The terminal write of a whole run retries 409 and 503
    # (docs/contract/steprun-status.md#merge-rules) within BUBU_K8S_PATCH_MAX_RETRIES and still
    # reports Succeeded with the output.
    fault_proxy.conflict("PATCH", rf"/stepruns/{SR}/status$", times=2)
    fault_proxy.server_error("PATCH", rf"/stepruns/{SR}/status$", status=503, times=1)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    env = runner_env(kubeconfig, BUBU_K8S_PATCH_MAX_RETRIES="3")
    assert await bubu.start_batch(Greeter(), source=MappingSource(env)) == 0
    patches = [r.status for r in fault_proxy.requests if r.method == "PATCH"]
    assert patches == [409, 409, 503, 200]
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Succeeded" and st["output"] == {"greeting": "Hello, Ada!"}


async def test_batch_retries_exhausted_exit_1(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    fault_proxy: Any,
) -> None:
    # Go: "engram completed successfully but status patch failed" -> exit 1; the attempts are
    # 1 + BUBU_K8S_PATCH_MAX_RETRIES.
    fault_proxy.server_error("PATCH", rf"/stepruns/{SR}/status$", status=500, times=None)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    env = runner_env(kubeconfig, BUBU_K8S_PATCH_MAX_RETRIES="1")
    report = await run_batch(Greeter(), source=MappingSource(env))
    assert report.exit_code == 1 and report.phase == "Succeeded"
    assert report.status_error is not None and report.status_error.retryable  # type: ignore[attr-defined]
    assert [r.status for r in fault_proxy.requests if r.method == "PATCH"] == [500, 500]
    assert read_step_run(controlplane, k8s_namespace, SR)["status"]["phase"] == "Running"


async def test_batch_zombie_pod_is_fenced(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, runner_env: Any
) -> None:
    # BUBU_POD_NAME fencing (docs/contract/steprun-status.md#merge-rules): a pod that no longer owns
    # the StepRun writes nothing. (The operator never records status.podName; the admin plays the
    # writer that did.)
    record_pod(controlplane, k8s_namespace, SR, "pod-new")
    env = runner_env(engram_runner_identity.kubeconfig_path, BUBU_POD_NAME="pod-old")
    report = await run_batch(Greeter(), source=MappingSource(env))
    assert report.exit_code == 1
    assert isinstance(report.status_error, PodFencedError)
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Running" and "output" not in st


LEAKY = textwrap.dedent("""
    import logging, bubu

    class Leaky(bubu.BatchEngram[dict, dict]):
        async def init(self, config, secrets):
            self.secrets = secrets

        async def process(self, ctx, inputs):
            token = self.secrets.get("api")
            ctx.logger.warning("calling with %s", token)
            logging.getLogger("bubu.engram").info("secrets: %r %s", self.secrets, self.secrets)
            raise RuntimeError(f"request failed: Authorization: Bearer {token} (token={token})")

    bubu.run(bubu.start_batch(Leaky()))
""")


def test_secret_never_leaves_the_pod(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    runner_env: Any,
    tmp_path: Path,
) -> None:
    # Scan everything the process printed (stdout, stderr) and wrote (the whole StepRun).
    secret = "tok-7Hq2-secret-value"
    script = tmp_path / "leaky.py"
    script.write_text(LEAKY)
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    env.update(
        runner_env(
            engram_runner_identity.kubeconfig_path,
            BUBU_SECRET_api=secret,
            BUBU_DEBUG="true",  # tracebacks in the logs too
        )
    )
    out = subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert out.returncode == 1
    obj = read_step_run(controlplane, k8s_namespace, SR)
    written = msgspec.json.encode(obj).decode()
    for where, text in (("stdout", out.stdout), ("stderr", out.stderr), ("StepRun", written)):
        assert secret not in text, where
    assert "calling with [REDACTED]" in out.stdout and "Traceback" in out.stdout
    assert obj["status"]["phase"] == "Failed" and "[REDACTED]" in obj["status"]["lastFailureMsg"]


async def test_throttled_status_patch_is_retried_after_retry_after(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    fault_proxy: Any,
    runner_env: Any,
) -> None:
    # A 429 on the terminal status PATCH itself (not on the GET before it): the lifecycle
    # waits the Retry-After, patches again and still exits 0 with the output written.
    fault_proxy.throttle("PATCH", rf"/stepruns/{SR}/status$", retry_after=0.4, times=2)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    started = time.monotonic()
    code = await bubu.start_batch(Greeter(), source=MappingSource(runner_env(kubeconfig)))
    assert code == 0
    assert time.monotonic() - started >= 0.8  # both Retry-After waits honoured
    patches = [r.status for r in fault_proxy.requests if r.method == "PATCH"]
    assert patches == [429, 429, 200]
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Succeeded" and st["output"] == {"greeting": "Hello, Ada!"}
