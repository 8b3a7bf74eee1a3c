"""The testkit's in-memory operator against the real one: the same calls, the same outcomes.

``bubu.testkit`` ships an in-memory cluster whose admission checks and controllers stand in for
the operator (``FakeCluster``, ``TriggerResolver``, ``StopStoryController``,
``EffectClaimPhases``), so users can unit-test engrams and impulses without a cluster. Each
scenario here runs twice, through the same SDK calls: once on the testkit, once against the
real operator (its webhooks and controllers, bobrapet v0.1.13), in a namespace of the same name
so messages compare as they are. Every difference is a testkit bug.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from bubu import _scope
from bubu._k8s import identity
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import STORY_RUN
from bubu._runtime.sources import MappingSource
from bubu._triggers import start_story, start_story_with_token, stop_story
from bubu.testkit._fakes import FakeCluster, StopStoryController, TriggerResolver
from tests._controlplane import workloads

pytestmark = pytest.mark.integration


def env(ns: str) -> dict[str, str]:
    return {
        "BUBU_IMPULSE_NAME": "hook",
        "BUBU_IMPULSE_NAMESPACE": ns,
        "BUBU_TARGET_STORY_NAMESPACE": ns,
        "BUBU_K8S_OPERATION_TIMEOUT": "20s",
    }


class Fake:
    """The testkit's cluster and controllers; ``acting()`` makes the SDK use them."""

    def __init__(self, namespace: str) -> None:
        self.namespace = namespace
        self.cluster = FakeCluster(namespace)
        self.resolver = TriggerResolver(self.cluster)
        StopStoryController(self.cluster)
        self.cluster.seed_story("story", namespace)
        self.cluster.seed_story("versioned", namespace, version="v2")

    async def seed_run(self, name: str, story: str, inputs: Any) -> None:
        await self.cluster.create(STORY_RUN, workloads.story_run(name, story=story, inputs=inputs))

    @contextlib.asynccontextmanager
    async def acting(self) -> AsyncIterator[None]:
        scope = _scope.RunScope(source=MappingSource(env(self.namespace)), kube=self.cluster)
        with _scope.activate(scope):
            yield
        await self.resolver.aclose()


class Real:
    """The real operator; ``acting()`` makes the SDK act as the Impulse's ServiceAccount."""

    def __init__(self, namespace: str, ident: Any, admin: KubeClient) -> None:
        self.namespace = namespace
        self.ident, self.admin = ident, admin

    async def seed_run(self, name: str, story: str, inputs: Any) -> None:
        await self.admin.create(STORY_RUN, workloads.story_run(name, story=story, inputs=inputs))

    @contextlib.asynccontextmanager
    async def acting(self) -> AsyncIterator[None]:
        async with await KubeClient.connect(
            kubeconfig=str(self.ident.kubeconfig_path), namespace=self.namespace
        ) as kube:
            scope = _scope.RunScope(source=MappingSource(env(self.namespace)), kube=kube)
            with _scope.activate(scope):
                yield


async def outcome(call: Awaitable[Any]) -> tuple[Any, ...]:
    """What a caller can observe: the result's fields, or the error's type, reason, message."""
    try:
        result = await call
    except Exception as exc:
        return ("error", type(exc).__name__, getattr(exc, "reason", None), str(exc))
    if isinstance(result, bool):
        return ("value", result)
    return ("result", result.decision, result.story_run, result.deduplicated)


Scenario = Callable[[Any], Awaitable[list[tuple[Any, ...]]]]


async def created_then_deduplicated(w: Any) -> list[tuple[Any, ...]]:
    return [
        await outcome(start_story_with_token("story", "tok", {"x": 1})),
        await outcome(start_story_with_token("story", "tok", {"x": 1})),
    ]


async def same_token_other_inputs(w: Any) -> list[tuple[Any, ...]]:
    return [
        await outcome(start_story_with_token("story", "tok", {"x": 1})),
        await outcome(start_story_with_token("story", "tok", {"x": 2})),
    ]


async def matching_run_is_reused(w: Any) -> list[tuple[Any, ...]]:
    name = identity.derive_story_run_name(w.namespace, "story", "ext")
    await w.seed_run(name, "story", {"k": "v"})
    return [await outcome(start_story_with_token("story", "ext", {"k": "v"}))]


async def different_run_is_a_conflict(w: Any) -> list[tuple[Any, ...]]:
    name = identity.derive_story_run_name(w.namespace, "story", "ext")
    await w.seed_run(name, "story", {"k": "other"})
    return [await outcome(start_story_with_token("story", "ext", {"k": "v"}))]


async def missing_story(w: Any) -> list[tuple[Any, ...]]:
    return [await outcome(start_story("nope", {}))]


async def missing_story_with_a_token(w: Any) -> list[tuple[Any, ...]]:
    return [await outcome(start_story_with_token("nope", "t-1", {"a": 1}))]


async def story_in_another_namespace(w: Any) -> list[tuple[Any, ...]]:
    return [await outcome(start_story("story", {}, namespace="elsewhere"))]


async def stop_a_run_twice(w: Any) -> list[tuple[Any, ...]]:
    run = await start_story_with_token("story", "stop-me", {})
    return [
        await outcome(stop_story(run.story_run)),
        await outcome(stop_story(run.story_run)),
        await outcome(stop_story("ghost")),
    ]


SCENARIOS: dict[str, Scenario] = {
    "created-then-deduplicated": created_then_deduplicated,
    "same-token-other-inputs": same_token_other_inputs,
    "matching-run-is-reused": matching_run_is_reused,
    "different-run-is-a-conflict": different_run_is_a_conflict,
    "missing-story": missing_story,
    "missing-story-with-a-token": missing_story_with_a_token,
    "story-in-another-namespace": story_in_another_namespace,
    "stop-a-run-twice": stop_a_run_twice,
}


def canceled_view(run: dict[str, Any]) -> tuple[Any, ...]:
    status = run.get("status") or {}
    conditions = sorted(
        (c["type"], c["status"], c["reason"], c.get("message"))
        for c in status.get("conditions") or []
    )
    return (status.get("phase"), status.get("message"), tuple(conditions))


async def test_a_canceled_run_finishes_the_same_way(
    controlplane, operator, k8s_namespace, impulse_identity, admin_kube
) -> None:
    ns = k8s_namespace
    # a short drain window: the operator waits it out for the step's pod, which never runs
    stoppable = workloads.story("stoppable", policy={"timeouts": {"gracefulShutdownTimeout": "2s"}})
    workloads.seed(controlplane, ns, stoppable)
    fake = Fake(ns)
    fake.cluster.seed_story("stoppable", ns)
    async with fake.acting():
        run = await start_story_with_token("stoppable", "t", {})
        assert await stop_story(run.story_run) is True
    expected = canceled_view(fake.cluster.peek(STORY_RUN, run.story_run, ns) or {})
    real = Real(ns, impulse_identity, admin_kube)
    async with real.acting():
        run = await start_story_with_token("stoppable", "t", {})
        await workloads.await_object(
            controlplane,
            workloads.collection("storyruns", ns),
            run.story_run,
            lambda r: (r.get("status") or {}).get("phase") == "Running",
        )
        assert await stop_story(run.story_run) is True
    finished = await workloads.await_object(
        controlplane,
        workloads.collection("storyruns", ns),
        run.story_run,
        lambda r: (r.get("status") or {}).get("phase") == "Finished",
    )
    assert expected == canceled_view(finished)


@pytest.mark.parametrize("name", list(SCENARIOS))
async def test_testkit_and_operator_agree(
    name: str, controlplane, operator, k8s_namespace, impulse_identity, admin_kube
) -> None:
    ns = k8s_namespace
    workloads.seed(controlplane, ns, workloads.story("versioned", version="v2"))
    fake = Fake(ns)
    async with fake.acting():
        expected = await SCENARIOS[name](fake)
    real = Real(ns, impulse_identity, admin_kube)
    async with real.acting():
        observed = await SCENARIOS[name](real)
    assert expected == observed


@pytest.fixture
async def admin_kube(controlplane, k8s_namespace) -> AsyncIterator[KubeClient]:
    async with await KubeClient.connect(
        kubeconfig=str(controlplane.admin_kubeconfig), namespace=k8s_namespace
    ) as kube:
        yield kube


# --- effects: the claims the SDK writes and the status the EffectClaim controller derives ------

SR = "run-1-step-a"


def step_env(ns: str) -> dict[str, str]:
    return {"BUBU_STEPRUN_NAME": SR, "BUBU_STEPRUN_NAMESPACE": ns, "BUBU_POD_NAME": "pod-1"}


def claim_view(claim: dict[str, Any]) -> tuple[Any, ...]:
    """What the SDK and its users read from a claim: the spec's lease and completion fields and
    the status the controller derived (timestamps aside)."""
    spec, status = claim.get("spec") or {}, claim.get("status") or {}
    conditions = sorted(
        (c["type"], c["status"], c["reason"]) for c in status.get("conditions") or []
    )
    holder = spec.get("holderIdentity") or ""
    return (
        holder.rsplit(":", 1)[0] if holder.count(":") >= 3 else holder,  # without the process id
        spec.get("completionStatus"),
        spec.get("leaseTransitions"),
        status.get("phase"),
        tuple(conditions),
    )


async def effects_scenario() -> list[tuple[Any, ...]]:
    from bubu._effects import execute_effect_once

    async def ok() -> dict[str, str]:
        return {"id": "1"}

    async def boom() -> None:
        raise RuntimeError("declined")

    return [
        await outcome_of(execute_effect_once("charge", ok)),
        await outcome_of(execute_effect_once("charge", ok)),
        await outcome_of(execute_effect_once("refund", boom)),
    ]


async def outcome_of(call: Awaitable[Any]) -> tuple[Any, ...]:
    try:
        return ("value", await call)
    except Exception as exc:
        return ("error", type(exc).__name__, str(exc))


async def test_effect_claims_agree(
    controlplane, k8s_namespace, engram_runner_identity, admin_kube
) -> None:
    from bubu._k8s.resources import EFFECT_CLAIM
    from bubu.testkit._fakes import EffectClaimPhases

    ns = k8s_namespace
    names = [identity.derive_effect_claim_name(ns, SR, key) for key in ("charge", "refund")]

    cluster = FakeCluster(ns)
    EffectClaimPhases(cluster)
    cluster.seed_step_run(SR, ns, story_run="run-1", step_id="step-a")
    with _scope.activate(_scope.RunScope(source=MappingSource(step_env(ns)), kube=cluster)):
        expected = await effects_scenario()
    expected_claims = [claim_view(cluster.peek(EFFECT_CLAIM, n, ns) or {}) for n in names]

    async with await KubeClient.connect(
        kubeconfig=str(engram_runner_identity.kubeconfig_path), namespace=ns
    ) as kube:
        with _scope.activate(_scope.RunScope(source=MappingSource(step_env(ns)), kube=kube)):
            observed = await effects_scenario()
    assert expected == observed
    collection = workloads.collection("effectclaims", ns)
    observed_claims = []
    for name, want in zip(names, expected_claims, strict=True):
        # the controller derives the status asynchronously: wait until it says the same phase
        claim = await workloads.await_object(
            controlplane, collection, name, lambda c, w=want: claim_view(c)[3] == w[3]
        )
        observed_claims.append(claim_view(claim))
    assert expected_claims == observed_claims
