"""Fixtures for the integration tests that run SDK code against the control plane."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any

import pytest

from bubu import _scope
from bubu._k8s.client import KubeClient
from bubu._runtime.sources import MappingSource


@pytest.fixture
async def admin_kube(controlplane: Any, k8s_namespace: str) -> AsyncIterator[KubeClient]:
    """A ``KubeClient`` with the admin identity, in ``k8s_namespace``."""
    async with await KubeClient.connect(
        kubeconfig=str(controlplane.admin_kubeconfig), namespace=k8s_namespace
    ) as kube:
        yield kube


@pytest.fixture
def as_identity() -> Callable[..., Any]:
    """``async with as_identity(identity, env) as kube:`` - a RunScope acting as ``identity``
    (anything with ``kubeconfig_path`` and ``namespace``) with ``env`` as its BUBU_* source."""

    @contextlib.asynccontextmanager
    async def make(ident: Any, env: Mapping[str, str]) -> AsyncIterator[KubeClient]:
        async with await KubeClient.connect(
            kubeconfig=str(ident.kubeconfig_path), namespace=ident.namespace
        ) as kube:
            with _scope.activate(_scope.RunScope(source=MappingSource(dict(env)), kube=kube)):
                yield kube

    return make
