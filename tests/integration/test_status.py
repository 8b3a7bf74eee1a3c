"""StepRun status protocol against the real kube-apiserver, the CRDs and the real operator.

Most tests write the status of the StepRun the operator made (``run-1-step-a`` of StoryRun
``run-1``, Running, its Job never runs) while the operator's controllers reconcile it, as the
engram-runner ServiceAccount the operator made, bound to the Role it generated (stepruns
get/watch, stepruns/status patch/update; no list). The few that need a StepRun state the
operator never leaves a pod in (no status at all, ``Pending``) run before the operator starts,
seed that state themselves and use their own ServiceAccount (``OWN_RUNNER_RULES``).
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Any

import pytest

import tests.conftest as _root_conftest
from bubu._aio.backoff import Backoff
from bubu._k8s import status
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import STEP_RUN, StepRunStatus
from bubu.errors import (
    ForbiddenError,
    InvalidTransitionError,
    KubernetesError,
    PodFencedError,
)
from tests._controlplane import workloads

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    # Until the lead registers the control-plane plugin in tests/conftest.py.
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        fault_proxy,
        k8s_namespace,
        make_identity,
    )

pytestmark = pytest.mark.integration

RUNS = "/apis/runs.bubustack.io/v1alpha1"
MERGE = {"Content-Type": "application/merge-patch+json"}
FAST = Backoff(base=0.01, factor=2.0, maximum=0.1, jitter=0.25)


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def seed_step_run(cp: Any, ns: str, name: str, status_: dict[str, Any] | None = None) -> None:
    """Play the controller: create the StepRun, then seed its status.

    See docs/testing.md#run-fixtures.
    """
    with cp.client() as c:
        r = c.post(
            f"{RUNS}/namespaces/{ns}/stepruns",
            json={
                "apiVersion": "runs.bubustack.io/v1alpha1",
                "kind": "StepRun",
                "metadata": {"name": name},
                "spec": {"storyRunRef": {"name": "run-1"}, "stepId": "step-a"},
            },
        )
        assert r.status_code == 201, r.text
        if status_ is not None:
            r = c.patch(
                f"{RUNS}/namespaces/{ns}/stepruns/{name}/status",
                json={"status": status_},
                headers=MERGE,
            )
            assert r.status_code == 200, r.text


def record_pod(cp: Any, ns: str, name: str, pod: str) -> None:
    """Record ``pod`` as the StepRun's pod (``status.podName``), as the admin."""
    with cp.client() as c:
        r = c.patch(
            f"{RUNS}/namespaces/{ns}/stepruns/{name}/status",
            json={"status": {"podName": pod}},
            headers=MERGE,
        )
        assert r.status_code == 200, r.text


def read_step_run(cp: Any, ns: str, name: str) -> dict[str, Any]:
    with cp.client() as c:
        r = c.get(f"{RUNS}/namespaces/{ns}/stepruns/{name}")
        assert r.status_code == 200, r.text
        return dict(r.json())


RUNNING = {"retries": 0, "phase": "Running", "startedAt": "2026-01-01T00:00:00Z"}

#: the operator's StepRun for step ``step-a`` of StoryRun ``run-1`` (``engram_runner_identity``)
SR = "run-1-step-a"

#: what the seeded-state tests grant their own ServiceAccount: a test's Role, not the operator's
OWN_RUNNER_RULES = [
    {"apiGroups": ["runs.bubustack.io"], "resources": ["stepruns"], "verbs": ["get", "watch"]},
    {"apiGroups": ["runs.bubustack.io"], "resources": ["stepruns/status"], "verbs": ["patch"]},
]


async def runner_client(identity: Any) -> KubeClient:
    return await KubeClient.connect(kubeconfig=str(identity.kubeconfig_path))


async def test_patch_succeeded_as_engram_runner(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    started = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert started["phase"] == "Running" and started["retries"] == 0  # the operator's
    async with await runner_client(engram_runner_identity) as kube:
        assert kube.namespace == k8s_namespace
        await status.patch_step_run_status(
            kube,
            SR,
            None,
            StepRunStatus(
                phase="Succeeded",
                exit_class="success",
                output={"a": [1, 2]},
                finished_at=now(),
                duration="1.5s",
            ),
        )
    st = read_step_run(controlplane, k8s_namespace, SR)["status"]
    assert st["phase"] == "Succeeded" and st["output"] == {"a": [1, 2]}
    assert st["startedAt"] == started["startedAt"] and st["retries"] == 0
    # The operator takes the pod's terminal status: the run's only step succeeded, so does it.
    workloads.wait_storyrun(
        controlplane, k8s_namespace, "run-1", "Succeeded", steps={"step-a": "Succeeded"}
    )


async def test_first_write_carries_required_retries(
    controlplane: Any, k8s_namespace: str, make_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1")  # no status yet (the operator always sets it)
    async with await runner_client(make_identity(OWN_RUNNER_RULES)) as kube:
        # Without retries the CRD rejects the write
        # (docs/contract/steprun-status.md#retries-required) ...
        with pytest.raises(KubernetesError) as info:
            await kube.merge_patch(
                STEP_RUN, "s1", {"status": {"phase": "Failed"}}, subresource="status"
            )
        assert info.value.status_code == 422 and info.value.reason == "Invalid"
        assert not info.value.retryable and "retries" in str(info.value)
        # ... the protocol always sends it on the first write.
        await status.patch_step_run_status(kube, "s1", None, StepRunStatus(phase="Failed"))
    st = read_step_run(controlplane, k8s_namespace, "s1")["status"]
    assert st == {"phase": "Failed", "retries": 0}


async def test_phase_machine_refuses_pending_to_succeeded(
    controlplane: Any, k8s_namespace: str, make_identity: Any
) -> None:
    seed_step_run(controlplane, k8s_namespace, "s1", {"retries": 0, "phase": "Pending"})
    async with await runner_client(make_identity(OWN_RUNNER_RULES)) as kube:
        with pytest.raises(InvalidTransitionError, match="Pending"):
            await status.patch_step_run_status(kube, "s1", None, {"phase": "Succeeded"})
        await status.patch_step_run_status(kube, "s1", None, {"phase": "Timeout"})
        with pytest.raises(InvalidTransitionError):
            await status.patch_step_run_status(kube, "s1", None, {"phase": "Running"})
    assert read_step_run(controlplane, k8s_namespace, "s1")["status"]["phase"] == "Timeout"


async def test_fencing_with_mismatched_pod(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    # Neither the operator nor the Go SDK ever writes status.podName (checked against bobrapet
    # v0.1.13): fencing acts only on a podName some writer recorded. The admin records one here.
    record_pod(controlplane, k8s_namespace, SR, "pod-a")
    async with await runner_client(engram_runner_identity) as kube:
        with pytest.raises(PodFencedError, match="pod-b"):
            await status.patch_step_run_status(
                kube, SR, None, {"phase": "Failed"}, pod_name="pod-b"
            )
        await status.patch_step_run_status(kube, SR, None, {"phase": "Failed"}, pod_name="pod-a")
    assert read_step_run(controlplane, k8s_namespace, SR)["status"]["phase"] == "Failed"
    workloads.wait_storyrun(
        controlplane, k8s_namespace, "run-1", "Failed", steps={"step-a": "Failed"}
    )


async def test_conflicts_and_throttling_are_retried_through_proxy(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, fault_proxy: Any
) -> None:
    fault_proxy.conflict("PATCH", rf"/stepruns/{SR}/status$", times=2)
    fault_proxy.throttle("GET", rf"/stepruns/{SR}$", retry_after=0.2, times=1)
    fault_proxy.server_error("PATCH", rf"/stepruns/{SR}/status$", status=503, times=1)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    async with await KubeClient.connect(kubeconfig=str(kubeconfig)) as kube:
        started = asyncio.get_running_loop().time()
        await status.patch_step_run_status(kube, SR, None, {"phase": "Succeeded"}, backoff=FAST)
        assert asyncio.get_running_loop().time() - started >= 0.2  # Retry-After honoured
    patches = [r for r in fault_proxy.requests if r.method == "PATCH"]
    assert [p.status for p in patches] == [409, 409, 503, 200]
    assert read_step_run(controlplane, k8s_namespace, SR)["status"]["phase"] == "Succeeded"


async def test_retries_exhausted_raise_retryable_error(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, fault_proxy: Any
) -> None:
    fault_proxy.server_error("PATCH", rf"/stepruns/{SR}/status$", status=500, times=None)
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    async with await KubeClient.connect(kubeconfig=str(kubeconfig)) as kube:
        with pytest.raises(KubernetesError) as info:
            await status.patch_step_run_status(
                kube, SR, None, {"phase": "Failed"}, max_retries=2, backoff=FAST
            )
    assert info.value.retryable and info.value.status_code == 500
    assert len([r for r in fault_proxy.requests if r.method == "PATCH"]) == 3


async def test_least_privilege_role_needs_no_list(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any, fault_proxy: Any
) -> None:
    kubeconfig = fault_proxy.kubeconfig(token=engram_runner_identity.token, namespace=k8s_namespace)
    async with await KubeClient.connect(kubeconfig=str(kubeconfig)) as kube:
        obj = await kube.get(STEP_RUN, SR)
        events: list[str] = []

        async def watch() -> None:
            rv = obj["metadata"]["resourceVersion"]
            async for etype, item in kube.watch(
                STEP_RUN, SR, resource_version=rv, timeout_seconds=10
            ):
                events.append(etype)
                if item.get("status", {}).get("signals"):
                    return

        task = asyncio.create_task(watch())
        await asyncio.sleep(0.2)
        await status.patch_step_run_status(kube, SR, None, {"signals": {"progress": {"pct": 50}}})
        await asyncio.wait_for(task, 10)
        assert "MODIFIED" in events
        # The Role really has no list: a collection GET without watch is forbidden.
        with pytest.raises(ForbiddenError):
            await kube._request("GET", STEP_RUN)
    lists = [
        r
        for r in fault_proxy.requests
        if r.method == "GET" and r.path.endswith("/stepruns") and "watch=1" not in r.query
    ]
    assert [r.status for r in lists] == [403]  # only the deliberate probe above


async def test_optimistic_appends_survive_concurrent_writers(
    controlplane: Any, k8s_namespace: str, engram_runner_identity: Any
) -> None:
    async with await runner_client(engram_runner_identity) as kube:
        await asyncio.gather(
            *(
                status.patch_step_run_status(
                    kube,
                    SR,
                    None,
                    {
                        "effects": [
                            {"seq": 0, "key": f"k{i}", "status": "succeeded", "emittedAt": now()}
                        ]
                    },
                    optimistic=True,
                    max_retries=20,
                    backoff=FAST,
                )
                for i in range(5)
            )
        )
    effects = read_step_run(controlplane, k8s_namespace, SR)["status"]["effects"]
    assert sorted(e["key"] for e in effects) == [f"k{i}" for i in range(5)]
    assert sorted(e["seq"] for e in effects) == [1, 2, 3, 4, 5]


async def test_in_cluster_config_wins_over_kubeconfig(
    controlplane: Any,
    k8s_namespace: str,
    engram_runner_identity: Any,
    tmp_path: Any,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Go order (docs/contract/runtime-environment.md#kubernetes-client): the pod's service account
    # first, even when KUBECONFIG is set.
    from urllib.parse import urlsplit

    sa = tmp_path / "sa"
    sa.mkdir()
    (sa / "token").write_text(engram_runner_identity.token)
    (sa / "ca.crt").write_bytes(controlplane.ca_path.read_bytes())
    (sa / "namespace").write_text(k8s_namespace)
    url = urlsplit(controlplane.url)
    monkeypatch.setenv("KUBERNETES_SERVICE_HOST", url.hostname or "127.0.0.1")
    monkeypatch.setenv("KUBERNETES_SERVICE_PORT", str(url.port))
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "does-not-exist"))
    async with await KubeClient.connect(service_account_dir=str(sa)) as kube:
        assert kube.namespace == k8s_namespace
        obj = await kube.get(STEP_RUN, SR)
    assert obj["metadata"]["name"] == SR
