"""Fixtures of the Go-peer tests: a second namespace for the Go twin, identities, stand-ins."""

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
from tests._controlplane import rbac
from tests._standins import StandIns


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


@pytest.fixture
def identity_in(controlplane: Any) -> Callable[..., rbac.Identity]:
    """``identity_in(namespace, "engram"|"impulse", extra_rules=None)``: the operator's Role."""

    def make(namespace: str, role: str, extra_rules: list[dict[str, Any]] | None = None) -> Any:
        if role == "engram":
            return rbac.engram_runner_identity(controlplane, namespace, extra_rules=extra_rules)
        return rbac.impulse_identity(controlplane, namespace, extra_rules=extra_rules)

    return make


@pytest.fixture
async def twin_standins(
    controlplane: Any, k8s_namespace: str, go_namespace: str
) -> AsyncIterator[tuple[StandIns, StandIns]]:
    """The operator stand-ins (tests/_standins) for both namespaces: (python, go)."""
    async with controlplane.async_client() as http:
        async with (
            StandIns(str(controlplane.admin_kubeconfig), http, k8s_namespace) as py,
            StandIns(str(controlplane.admin_kubeconfig), http, go_namespace) as go,
        ):
            yield py, go


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
