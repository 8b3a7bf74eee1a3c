"""Fixtures of the Go-peer tests: a second namespace for the Go twin and the operator's objects.

The twin runs use the real operator (``operator`` fixture): each side's namespace gets the same
seed (Engram ``engram``, Story ``story`` with one Job step, Story ``quick`` with one condition
step, StoryRun ``run-1``, Impulse ``hook``), and each side acts as the ServiceAccount the
operator made for it, with the env the operator put in its pod template.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bubu import _scope
from bubu._k8s.client import KubeClient
from bubu._runtime.sources import MappingSource
from tests._controlplane import rbac, workloads

#: the StepRun the operator makes for step ``step-a`` of StoryRun ``run-1`` (and its Job)
SR = "run-1-step-a"


@pytest.fixture
def go_namespace(controlplane: Any, k8s_namespace: str) -> Iterator[str]:
    """A fresh namespace for the Go side of a twin run (``k8s_namespace`` is bubu's)."""
    name = f"go-{k8s_namespace}"[:55].rstrip("-") + "-" + secrets.token_hex(2)
    with controlplane.client() as c:
        r = c.post(
            "/api/v1/namespaces",
            json={"metadata": {"name": name, "labels": {"bubu.test/namespace": "true"}}},
        )
        assert r.status_code < 300, r.text
    try:
        yield name
    finally:
        with controlplane.client() as c:
            c.delete(f"/api/v1/namespaces/{name}")


class Twins:
    """Both namespaces of a twin run, seeded for the operator; identities and pod env per side."""

    def __init__(self, cp: Any, py: str, go: str) -> None:
        self.cp, self.py, self.go = cp, py, go
        quick = workloads.story("quick", steps=[{"name": "check", "type": "condition"}])
        for ns in (py, go):
            workloads.seed(
                cp,
                ns,
                workloads.engram(),
                workloads.story(),
                quick,
                workloads.story_run("run-1"),
                workloads.impulse(),
            )

    def runner(self, ns: str) -> rbac.Identity:
        """The engram-runner identity of ``run-1``, once its StepRun is Running."""
        ident = workloads.engram_runner(self.cp, ns, "run-1")
        workloads.step_run(
            self.cp, ns, SR, lambda obj: (obj.get("status") or {}).get("phase") == "Running"
        )
        return ident

    def impulse(self, ns: str) -> rbac.Identity:
        """The identity the operator made for Impulse ``hook``."""
        return workloads.impulse_runner(self.cp, ns, "hook")

    def impulse_env(self, ns: str) -> dict[str, str]:
        """The env the operator put in Impulse ``hook``'s Deployment (the test plays its pod)."""
        deployment = f"hook-{workloads.IMPULSE_TEMPLATE}-impulse"
        return workloads.pod_env(self.cp, ns, deployment, kind="Deployment")

    def job_env(self, ns: str) -> dict[str, str]:
        """The env the operator put in the Job of step ``step-a`` (the test plays its pod)."""
        return workloads.pod_env(self.cp, ns, SR, pod_name=f"{SR}-pod")


@pytest.fixture
def twins(controlplane: Any, operator: Any, k8s_namespace: str, go_namespace: str) -> Twins:
    """The operator serving both namespaces of a twin run (python: ``.py``, go: ``.go``)."""
    return Twins(controlplane, k8s_namespace, go_namespace)


@pytest.fixture(scope="session")
def go_bin(interop_bin: Any) -> Path:
    """The directory of the Go peer programs (``interop_bin`` as a Path)."""
    return Path(interop_bin)


@pytest.fixture
async def admin_in(controlplane: Any) -> AsyncIterator[Callable[[str], Any]]:
    """``admin_in(namespace)``: an admin ``KubeClient`` for that namespace (closed afterwards)."""
    async with contextlib.AsyncExitStack() as stack:
        clients: dict[str, KubeClient] = {}

        async def make(namespace: str) -> KubeClient:
            if namespace not in clients:
                kube = await KubeClient.connect(
                    kubeconfig=str(controlplane.admin_kubeconfig), namespace=namespace
                )
                clients[namespace] = await stack.enter_async_context(kube)
            return clients[namespace]

        yield make


@contextlib.asynccontextmanager
async def as_identity(ident: Any, env: Mapping[str, str]) -> AsyncIterator[KubeClient]:
    """A bubu RunScope acting as ``ident`` with ``env`` as its environment (a pod's view)."""
    async with await KubeClient.connect(
        kubeconfig=str(ident.kubeconfig_path), namespace=ident.namespace
    ) as kube:
        with _scope.activate(_scope.RunScope(source=MappingSource(dict(env)), kube=kube)):
            yield kube
