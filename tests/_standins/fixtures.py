"""pytest fixtures for tests that need the stand-in controllers and bubu scopes on the real API.

Import them in a test module (until they are registered project-wide)::

    from tests._standins.fixtures import standins, admin_kube, as_identity  # noqa: F401
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

import pytest

from bubu import _scope
from bubu._k8s import identity
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import IMPULSE, STEP_RUN, STORY, STORY_RUN
from bubu._runtime.sources import MappingSource
from tests._standins import StandIns


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.fixture
async def standins(controlplane: Any, k8s_namespace: str) -> AsyncIterator[StandIns]:
    async with controlplane.async_client() as http:
        async with StandIns(str(controlplane.admin_kubeconfig), http, k8s_namespace) as s:
            yield s


@pytest.fixture
async def admin_kube(controlplane: Any, k8s_namespace: str) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(
        kubeconfig=str(controlplane.admin_kubeconfig), namespace=k8s_namespace
    ) as kube:
        yield kube


@pytest.fixture
def as_identity() -> Callable[..., Any]:
    """``async with as_identity(identity, env) as kube:`` - a RunScope acting as ``identity``."""

    @contextlib.asynccontextmanager
    async def make(ident: Any, env: Mapping[str, str]) -> AsyncIterator[KubeClient]:
        async with await KubeClient.connect(
            kubeconfig=str(ident.kubeconfig_path), namespace=ident.namespace
        ) as kube:
            with _scope.activate(_scope.RunScope(source=MappingSource(dict(env)), kube=kube)):
                yield kube

    return make


async def seed_story(kube: KubeClient, name: str = "story", version: str = "") -> None:
    spec: dict[str, Any] = {"steps": [{"name": "start", "type": "condition"}]}
    if version:
        spec["version"] = version
    await kube.create(STORY, {"metadata": {"name": name}, "spec": spec})


async def seed_step_run(
    kube: KubeClient, name: str, *, story_run: str = "run-1", step_id: str = "step-a"
) -> dict[str, Any]:
    """Play the StepRun controller (crds.md 9.3): create it, then mark it Running."""
    ns = kube.namespace
    obj = await kube.create(
        STEP_RUN,
        {
            "metadata": {"name": name},
            "spec": {
                "storyRunRef": {"name": story_run},
                "stepId": step_id,
                "idempotencyKey": identity.step_run_idempotency_key(ns, story_run, step_id),
            },
        },
    )
    await kube.merge_patch(
        STEP_RUN,
        name,
        {"status": {"retries": 0, "phase": "Running", "startedAt": now()}},
        subresource="status",
    )
    return obj


async def seed_story_run(
    kube: KubeClient, name: str, *, phase: str = "Running", inputs: Any = None, story: str = "story"
) -> dict[str, Any]:
    spec: dict[str, Any] = {"storyRef": {"name": story}}
    if inputs is not None:
        spec["inputs"] = inputs
    obj = await kube.create(STORY_RUN, {"metadata": {"name": name}, "spec": spec})
    if phase:
        await kube.merge_patch(
            STORY_RUN,
            name,
            {"status": {"phase": phase, "startedAt": now()}},
            subresource="status",
        )
    return obj


async def seed_impulse(kube: KubeClient, name: str, story: str = "story") -> None:
    await kube.create(
        IMPULSE,
        {
            "metadata": {"name": name},
            "spec": {"templateRef": {"name": "template"}, "storyRef": {"name": story}},
        },
    )


@contextlib.contextmanager
def nothing() -> Iterator[None]:
    yield
