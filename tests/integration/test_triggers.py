"""start_story / stop_story / the dispatcher against the real API server (crds.md 2, 5, 6, 9.2).

Acts as the operator's Impulse ServiceAccount (crds.md 7.2: storytriggers create/get - no
watch, so the SDK falls back to GET polling; storyruns get/list/patch; impulses get,
impulses/status patch). The StoryTrigger controller is the stand-in of ``tests._standins``.
"""

from __future__ import annotations

import asyncio

import pytest

import tests.conftest as _root_conftest
from bubu._dispatcher import StoryDispatcher
from bubu._k8s import identity
from bubu._k8s.resources import IMPULSE, STORY_RUN, STORY_TRIGGER
from bubu._triggers import ImpulseStats, start_story, start_story_with_token, stop_story
from bubu.errors import (
    StoryRunNotFoundError,
    TriggerIdentityConflictError,
    TriggerPendingError,
    TriggerRejectedError,
)
from bubu.testkit._fakes import story_trigger_violations
from tests._standins import fixtures as _fixtures
from tests._standins.fixtures import seed_impulse, seed_story, seed_story_run

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        impulse_identity,
        k8s_namespace,
        make_identity,
    )

pytestmark = pytest.mark.integration

# Fixtures shared with the other stand-in tests (not yet registered project-wide).
admin_kube = _fixtures.admin_kube
as_identity = _fixtures.as_identity
standins = _fixtures.standins


def env(ns: str, **extra: str) -> dict[str, str]:
    return {
        "BUBU_IMPULSE_NAME": "hook",
        "BUBU_IMPULSE_NAMESPACE": ns,
        "BUBU_TARGET_STORY_NAME": "story",
        "BUBU_TARGET_STORY_NAMESPACE": ns,
        "BUBU_K8S_OPERATION_TIMEOUT": "10s",
        **extra,
    }


@pytest.fixture
async def story(admin_kube):
    await seed_story(admin_kube)
    await seed_impulse(admin_kube, "hook")


async def test_first_submission_is_created(
    standins, story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    async with as_identity(impulse_identity, env(k8s_namespace)):
        result = await start_story_with_token("story", "order-42", {"total": 12.5, "note": "<&>"})
    assert result.decision == "Created" and not result.reused
    assert result.story_run == identity.derive_story_run_name(k8s_namespace, "story", "order-42")
    trigger = await admin_kube.get(STORY_TRIGGER, result.trigger)
    assert story_trigger_violations(trigger) == []  # what the webhook would check
    assert trigger["spec"]["impulseRef"] == {"name": "hook", "namespace": k8s_namespace}
    run = await admin_kube.get(STORY_RUN, result.story_run)
    annotations = run["metadata"]["annotations"]
    assert annotations[
        "storyrun.bubustack.io/trigger-input-hash"
    ] == identity.compute_trigger_input_hash({"total": 12.5, "note": "<&>"})


async def test_same_token_same_inputs_one_trigger_one_run(
    standins, story, as_identity, impulse_identity, k8s_namespace, controlplane
):
    async with as_identity(impulse_identity, env(k8s_namespace)):
        a = await start_story_with_token("story", "tok", {"x": 1})
        b = await start_story_with_token("story", "tok", {"x": 1})
    assert a.story_run == b.story_run and b.decision == "Created" and b.deduplicated
    async with controlplane.async_client() as http:
        triggers = (await http.get(STORY_TRIGGER.path(namespace=k8s_namespace))).json()["items"]
        runs = (await http.get(STORY_RUN.path(namespace=k8s_namespace))).json()["items"]
    assert len(triggers) == 1 and len(runs) == 1


async def test_token_reused_with_different_inputs_is_rejected(
    standins, story, as_identity, impulse_identity, k8s_namespace
):
    async with as_identity(impulse_identity, env(k8s_namespace)):
        await start_story_with_token("story", "tok", {"x": 1})
        with pytest.raises(
            TriggerIdentityConflictError, match="different immutable request identity"
        ):
            await start_story_with_token("story", "tok", {"x": 2})


async def test_preexisting_matching_run_is_reused(
    standins, story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    name = identity.derive_story_run_name(k8s_namespace, "story", "ext")
    await seed_story_run(admin_kube, name, phase="", inputs={"k": "v"})
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        result = await start_story_with_token("story", "ext", {"k": "v"})
    assert result.decision == "Reused" and result.story_run == name


async def test_preexisting_different_run_is_rejected(
    standins, story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    name = identity.derive_story_run_name(k8s_namespace, "story", "ext")
    await seed_story_run(admin_kube, name, phase="", inputs={"k": "other"})
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        with pytest.raises(
            TriggerRejectedError, match="does not match StoryTrigger storyRef and inputs"
        ) as info:
            await start_story_with_token("story", "ext", {"k": "v"})
    assert info.value.reason == "StoryRunConflict"


async def test_without_resolver_pending_is_retryable_and_undecided(
    story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    async with as_identity(
        impulse_identity, env(k8s_namespace, BUBU_K8S_OPERATION_TIMEOUT="150ms")
    ):
        with pytest.raises(TriggerPendingError, match="still pending") as info:
            await start_story_with_token("story", "lonely", {})
    assert info.value.retryable
    name = identity.derive_story_trigger_name(k8s_namespace, "story", "lonely", "lonely")
    assert not ((await admin_kube.get(STORY_TRIGGER, name)).get("status") or {}).get("decision")


async def test_missing_story_is_rejected(standins, as_identity, impulse_identity, k8s_namespace):
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        with pytest.raises(TriggerRejectedError) as info:
            await start_story("nope", {})
    assert info.value.reason == "StoryNotFound"


async def test_admin_identity_resolves_through_the_watch(
    standins, story, as_identity, controlplane, k8s_namespace, make_identity
):
    rules = [
        {
            "apiGroups": ["runs.bubustack.io"],
            "resources": ["storytriggers"],
            "verbs": ["create", "get", "watch"],
        },
        {"apiGroups": ["runs.bubustack.io"], "resources": ["storyruns"], "verbs": ["get"]},
    ]
    watcher = make_identity(rules, name="watcher")
    async with as_identity(watcher, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        result = await start_story("story", {"via": "watch"})
    assert result.decision == "Created"


async def test_stop_story(
    standins, story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    await seed_story_run(admin_kube, "run-x", phase="Running")
    await seed_story_run(admin_kube, "run-done", phase="Succeeded")
    async with as_identity(impulse_identity, env(k8s_namespace)):
        assert await stop_story("run-x") is True
        assert await stop_story("run-x") is False
        assert await stop_story("run-done") is False
        with pytest.raises(StoryRunNotFoundError):
            await stop_story("ghost")
    run = await admin_kube.get(STORY_RUN, "run-x")
    assert run["spec"]["cancelRequested"] is True
    for _ in range(500):  # the stand-in finishes it
        run = await admin_kube.get(STORY_RUN, "run-x")
        if (run.get("status") or {}).get("phase") == "Finished":
            break
        await asyncio.sleep(0.02)
    assert run["status"]["phase"] == "Finished"
    assert "cancelRequested" not in (await admin_kube.get(STORY_RUN, "run-done"))["spec"]


async def test_dispatcher_counts_land_in_the_impulse_status_coalesced(
    standins, story, as_identity, impulse_identity, k8s_namespace, admin_kube
):
    async with as_identity(impulse_identity, env(k8s_namespace)) as kube:
        stats = ImpulseStats(kube, "hook", k8s_namespace, interval=5)
        d = StoryDispatcher(stats=stats)
        await asyncio.gather(*(d.trigger(f"k{i}", inputs={"i": i}) for i in range(8)))
        await d.stop("k0")
        await stats.aclose()
    status = (await admin_kube.get(IMPULSE, "hook"))["status"]
    assert status["triggersReceived"] == 8 and status["storiesLaunched"] == 8
    assert status["failedTriggers"] == 0 and stats.patches <= 2  # first record + final flush


async def test_key_mode_dedupes_by_template(
    standins, story, as_identity, impulse_identity, k8s_namespace
):
    extra = {
        "BUBU_TRIGGER_DEDUPE_MODE": "key",
        "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE": "{{ inputs.eventId }}",
    }
    async with as_identity(impulse_identity, env(k8s_namespace, **extra)):
        a = await start_story("story", {"eventId": "evt-1", "n": 1})
        b = await start_story("story", {"eventId": "evt-1", "n": 1})
    assert a.story_run == b.story_run
    assert standins.resolver.errors == []
