"""execute_effect_once on real EffectClaims, against the real operator.

The SDK acts as the engram-runner ServiceAccount the operator made for StoryRun ``run-1``, on
the StepRun ``run-1-step-a`` the operator created for it (its Job never runs: the test process
is the pod). The operator's Role grants effectclaims get/create/update (no patch, no delete)
and stepruns get + stepruns/status patch. Every claim write (acquire, renew, complete,
release, takeover) goes through the operator's EffectClaim webhook, which would answer 403 to
an invalid one, and its EffectClaim controller derives ``status.phase``. The testkit's own
admission check (``effect_claim_violations``) must agree that every claim is valid.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

import tests.conftest as _root_conftest
from bubu._effects import execute_effect_once, has_effect, record_effect
from bubu._k8s import identity
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN
from bubu.errors import EffectAlreadyRecordedError
from bubu.testkit._fakes import effect_claim_violations

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        k8s_namespace,
    )

pytestmark = pytest.mark.integration


SR = "run-1-step-a"
ROOT = Path(__file__).resolve().parents[2]


def env(ns: str, **extra: str) -> dict[str, str]:
    return {"BUBU_STEPRUN_NAME": SR, "BUBU_STEPRUN_NAMESPACE": ns, **extra}


@pytest.fixture
async def step(engram_runner_identity, admin_kube):
    """The StepRun the operator made for step ``step-a`` of StoryRun ``run-1`` (Running)."""
    return await admin_kube.get(STEP_RUN, SR)


async def claims_valid(kube, names):
    """The testkit's webhook model accepts what the real webhook accepted."""
    step_uid = (await kube.get(STEP_RUN, SR))["metadata"]["uid"]
    for name in names:
        claim = await kube.get(EFFECT_CLAIM, name)
        assert effect_claim_violations(claim, step_run_uid=step_uid) == [], claim


async def wait_phase(kube, name: str, phase: str) -> dict:
    for _ in range(500):
        claim = await kube.get(EFFECT_CLAIM, name)
        if (claim.get("status") or {}).get("phase") == phase:
            return claim
        await asyncio.sleep(0.02)
    raise AssertionError(f"claim {name} never reached {phase}: {claim.get('status')}")


@pytest.mark.interop
async def test_runs_once_records_and_is_webhook_valid(
    step, as_identity, engram_runner_identity, k8s_namespace, admin_kube, go_ref
):
    calls = []

    async def charge():
        calls.append(1)
        return {"chargeId": "ch_1"}

    async with as_identity(engram_runner_identity, env(k8s_namespace)):
        assert await execute_effect_once("charge:42", charge) == {"chargeId": "ch_1"}
        with pytest.raises(EffectAlreadyRecordedError) as info:
            await execute_effect_once("charge:42", charge)
        assert info.value.details == {"chargeId": "ch_1"}
        assert await has_effect("charge:42")
        await record_effect("audit", "succeeded", {"n": 1})
    assert calls == [1]
    name = go_ref.call("claim_name", k8s_namespace, SR, "charge:42")
    claim = await wait_phase(admin_kube, name, "Completed")
    assert claim["spec"]["completionStatus"] == "completed"
    assert claim["metadata"]["ownerReferences"][0]["uid"] == step["metadata"]["uid"]
    effects = (await admin_kube.get(STEP_RUN, SR))["status"]["effects"]
    assert [e["key"] for e in effects] == ["charge:42", "audit"]
    await claims_valid(admin_kube, [name])


@pytest.mark.interop
async def test_failure_releases_and_retry_reruns(
    step, as_identity, engram_runner_identity, k8s_namespace, admin_kube, go_ref
):
    attempts = 0

    async def flaky():
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("declined")
        return "ok"

    async with as_identity(engram_runner_identity, env(k8s_namespace)):
        with pytest.raises(RuntimeError):
            await execute_effect_once("pay", flaky)
        name = go_ref.call("claim_name", k8s_namespace, SR, "pay")
        released = await admin_kube.get(EFFECT_CLAIM, name)
        assert "holderIdentity" not in released["spec"]
        # option (a), docs/contract/effect-claim.md#completion-and-release
        assert "completionStatus" not in released["spec"]
        assert await execute_effect_once("pay", flaky) == "ok"
    assert attempts == 2
    await wait_phase(admin_kube, name, "Completed")
    await claims_valid(admin_kube, [name])


@pytest.mark.interop
async def test_long_effect_renews_its_lease_through_the_webhook(
    step, as_identity, engram_runner_identity, k8s_namespace, admin_kube, go_ref
):
    # A 1 s lease renews every ~333 ms (Go's clamp(lease/3, 100 ms, 30 s)); each renewal and
    # the completion are PUTs the operator's webhook checks (renewTime >= acquireTime,
    # completedAt >= renewTime although metav1.Time keeps whole seconds).
    async def slow():
        await asyncio.sleep(1.6)
        return "done"

    lease = env(k8s_namespace, BUBU_EFFECT_LEASE_DURATION="1s")
    async with as_identity(engram_runner_identity, lease):
        assert await execute_effect_once("slow", slow) == "done"
    name = go_ref.call("claim_name", k8s_namespace, SR, "slow")
    claim = await wait_phase(admin_kube, name, "Completed")
    spec = claim["spec"]
    acquired, renewed = (
        identity.parse_time(spec["acquireTime"]),
        identity.parse_time(spec["renewTime"]),
    )
    assert renewed > acquired  # renewed at least once while the body ran
    assert identity.parse_time(spec["completedAt"]) >= renewed.replace(microsecond=0)
    await claims_valid(admin_kube, [name])


def worker(
    kubeconfig: Path, out: Path, ns: str, *args: str, lease: str = "10m"
) -> subprocess.Popen:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    environ.update(env(ns, BUBU_EFFECT_LEASE_DURATION=lease))
    environ.pop("KUBECONFIG", None)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "tests.integration.effect_worker",
            "--kubeconfig",
            str(kubeconfig),
            "--out",
            str(out),
            *args,
        ],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


@pytest.mark.interop
async def test_two_processes_race_100_keys_each_body_runs_once(
    step, engram_runner_identity, k8s_namespace, tmp_path, admin_kube, go_ref
):
    out = tmp_path / "side-effects.log"
    # Same key order and a common start instant (after both interpreters have started), so the
    # two processes reach each key at the same time: a real race on every key, not a trailer
    # that only ever finds finished claims.
    start_at = f"{time.time() + 4:.3f}"
    args = ("race", "--keys", "100", "--seed", "7", "--start-at", start_at)
    procs = [
        worker(engram_runner_identity.kubeconfig_path, out, k8s_namespace, *args) for _ in range(2)
    ]
    results = await asyncio.gather(*(asyncio.to_thread(p.communicate, timeout=240) for p in procs))
    counts = []
    for proc, (stdout, stderr) in zip(procs, results, strict=True):
        assert proc.returncode == 0, stderr.decode()[-2000:]
        counts.append(json.loads(stdout.decode().strip().splitlines()[-1]))
    lines = out.read_text().splitlines()
    per_key = Counter(line.split()[0] for line in lines)
    assert len(per_key) == 100
    assert set(per_key.values()) == {1}, [k for k, n in per_key.items() if n != 1]
    # Every key ran in exactly one process and was "already" for the other.
    assert sum(c["ran"] for c in counts) == 100 and sum(c["already"] for c in counts) == 100
    print("race counts", counts)  # shown with -s: how the keys split
    # Both processes won some keys: they really raced.
    assert all(c["ran"] > 0 for c in counts), counts
    effects = (await admin_kube.get(STEP_RUN, SR))["status"]["effects"]
    assert len({e["key"] for e in effects}) == 100 == len(effects)
    names = [go_ref.call("claim_name", k8s_namespace, SR, f"effect-{i}") for i in range(100)]
    await claims_valid(admin_kube, names)


@pytest.mark.interop
async def test_holder_killed_mid_effect_is_taken_over_after_expiry(
    step, as_identity, engram_runner_identity, k8s_namespace, tmp_path, admin_kube, go_ref
):
    out = tmp_path / "side-effects.log"
    holder = worker(
        engram_runner_identity.kubeconfig_path, out, k8s_namespace, "hold", "--key", "k", lease="2s"
    )
    try:
        for _ in range(500):
            if out.exists() and out.read_text().strip():
                break
            await asyncio.sleep(0.02)
        assert out.read_text().strip(), "the holder never started the effect"
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.communicate(timeout=30)  # reaps it and closes its pipes
    assert holder.returncode == -signal.SIGKILL

    calls = []

    async def body():
        calls.append(1)
        return "recovered"

    async with as_identity(
        engram_runner_identity, env(k8s_namespace, BUBU_EFFECT_LEASE_DURATION="2s")
    ):
        with pytest.raises(EffectAlreadyRecordedError) as info:
            await execute_effect_once("k", body)  # the lease is still live
        assert info.value.in_progress
        result = None
        for _ in range(100):
            try:
                result = await execute_effect_once("k", body)
                break
            except EffectAlreadyRecordedError as exc:
                assert exc.in_progress
                await asyncio.sleep(0.1)
    assert result == "recovered" and calls == [1]
    name = go_ref.call("claim_name", k8s_namespace, SR, "k")
    claim = await wait_phase(admin_kube, name, "Completed")
    assert claim["spec"]["leaseTransitions"] == 1
    effects = (await admin_kube.get(STEP_RUN, SR))["status"]["effects"]
    assert [e["key"] for e in effects] == ["k"]
    await claims_valid(admin_kube, [name])
