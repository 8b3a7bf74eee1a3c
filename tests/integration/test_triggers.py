"""start_story / stop_story / the dispatcher against the real operator.

See docs/contract/story-trigger.md and docs/testing.md#trigger-resolver.

Everything runs against the real operator (``operator`` fixture): its StoryTrigger webhook
admits or denies each request, its StoryTrigger controller decides it and creates the StoryRun,
its StoryRun controller handles ``cancelRequested``. The SDK acts as the ServiceAccount the
operator made for Impulse ``hook`` (``impulse_identity``), bound to the Role the operator
generated (storytriggers create/get - no watch, so the SDK falls back to GET polling; storyruns
get/list/patch; impulses get, impulses/status patch). The decision-wait tests go through the
fault proxy, which records every request: with the ``watch`` rule users add through the
Impulse's ``execution.rbac.rules`` (merged into that Role by the operator) the decision arrives
on the watch with no GET of the trigger; a broken watch (410, a dropped connection) is followed
by a GET.
"""

from __future__ import annotations

import asyncio
import json

import pytest

from bubu._dispatcher import StoryDispatcher
from bubu._k8s.resources import STORY, STORY_RUN, STORY_TRIGGER
from bubu._triggers import ImpulseStats, start_story, start_story_with_token, stop_story
from bubu.errors import (
    StoryRunNotFoundError,
    TriggerIdentityConflictError,
    TriggerPendingError,
    TriggerRejectedError,
)
from bubu.testkit._fakes import story_trigger_violations
from tests._controlplane import workloads
from tests._controlplane.faults import Fault

pytestmark = pytest.mark.integration


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
def story(controlplane, operator, k8s_namespace):
    """Story ``story`` (one engram step: a Job that never runs, so its runs stay Running) and
    Story ``quick`` (one condition step: the operator finishes its runs by itself)."""
    quick = workloads.story("quick", steps=[{"name": "check", "type": "condition"}])
    workloads.seed(controlplane, k8s_namespace, workloads.engram(), workloads.story(), quick)


async def story_run_when(cp, ns, name, predicate, what=""):
    return await workloads.await_object(
        cp, workloads.collection("storyruns", ns), name, predicate, timeout=60, what=what or name
    )


def phase(obj):
    return (obj.get("status") or {}).get("phase")


@pytest.mark.interop
async def test_first_submission_is_created(
    story, as_identity, impulse_identity, k8s_namespace, admin_kube, go_ref
):
    async with as_identity(impulse_identity, env(k8s_namespace)):
        result = await start_story_with_token("story", "order-42", {"total": 12.5, "note": "<&>"})
    assert result.decision == "Created" and not result.reused
    assert result.story_run == go_ref.call("run_name", k8s_namespace, "story", "order-42")
    trigger = await admin_kube.get(STORY_TRIGGER, result.trigger)
    assert story_trigger_violations(trigger) == []  # what the webhook would check
    assert trigger["spec"]["impulseRef"] == {"name": "hook", "namespace": k8s_namespace}
    run = await admin_kube.get(STORY_RUN, result.story_run)
    annotations = run["metadata"]["annotations"]
    assert annotations["storyrun.bubustack.io/trigger-input-hash"] == go_ref.call(
        "input_hash", json.dumps({"total": 12.5, "note": "<&>"})
    )


async def test_same_token_same_inputs_one_trigger_one_run(
    story, as_identity, impulse_identity, k8s_namespace, controlplane
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
    story, as_identity, impulse_identity, k8s_namespace
):
    async with as_identity(impulse_identity, env(k8s_namespace)):
        await start_story_with_token("story", "tok", {"x": 1})
        with pytest.raises(
            TriggerIdentityConflictError, match="different immutable request identity"
        ):
            await start_story_with_token("story", "tok", {"x": 2})


@pytest.mark.interop
async def test_preexisting_matching_run_is_reused(
    story, as_identity, impulse_identity, k8s_namespace, admin_kube, go_ref
):
    name = go_ref.call("run_name", k8s_namespace, "story", "ext")
    await admin_kube.create(STORY_RUN, workloads.story_run(name, inputs={"k": "v"}))
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        result = await start_story_with_token("story", "ext", {"k": "v"})
    assert result.decision == "Reused" and result.story_run == name


@pytest.mark.interop
async def test_preexisting_different_run_is_rejected(
    story, as_identity, impulse_identity, k8s_namespace, admin_kube, go_ref
):
    name = go_ref.call("run_name", k8s_namespace, "story", "ext")
    await admin_kube.create(STORY_RUN, workloads.story_run(name, inputs={"k": "other"}))
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        with pytest.raises(
            TriggerRejectedError, match="does not match StoryTrigger storyRef and inputs"
        ) as info:
            await start_story_with_token("story", "ext", {"k": "v"})
    assert info.value.reason == "StoryRunConflict"


@pytest.mark.interop
async def test_without_an_operator_pending_is_retryable_and_undecided(
    controlplane, as_identity, make_identity, k8s_namespace, admin_kube, go_ref
):
    # No operator in this test (it runs before the operator starts): nobody decides the trigger.
    await admin_kube.create(STORY, workloads.story())
    rules = [
        {
            "apiGroups": ["runs.bubustack.io"],
            "resources": ["storytriggers"],
            "verbs": ["create", "get"],
        }
    ]
    ident = make_identity(rules, name="no-operator")
    async with as_identity(ident, env(k8s_namespace, BUBU_K8S_OPERATION_TIMEOUT="150ms")):
        with pytest.raises(TriggerPendingError, match="still pending") as info:
            await start_story_with_token("story", "lonely", {})
    assert info.value.retryable
    name = go_ref.call("trigger_name", k8s_namespace, "story", "lonely", "lonely")
    assert not ((await admin_kube.get(STORY_TRIGGER, name)).get("status") or {}).get("decision")


async def test_missing_story_is_refused_by_the_webhook(
    operator, as_identity, impulse_identity, k8s_namespace, controlplane
):
    # The operator's StoryTrigger webhook looks the Story up: no trigger is ever created, so
    # there is no decision to wait for (not a "Rejected/StoryNotFound" status).
    async with as_identity(impulse_identity, env(k8s_namespace, BUBU_IMPULSE_NAME="")):
        with pytest.raises(TriggerRejectedError) as info:
            await start_story("nope", {})
    assert info.value.reason == "AdmissionDenied"
    assert f"referenced story '{k8s_namespace}/nope' not found" in str(info.value)
    async with controlplane.async_client() as http:
        triggers = (await http.get(STORY_TRIGGER.path(namespace=k8s_namespace))).json()["items"]
    assert triggers == []


async def test_an_engram_starts_a_story_under_the_role_the_operator_generates(
    story, controlplane, k8s_namespace, as_identity, admin_kube
):
    # The engram's template declares what starting a Story needs; the operator merges that into
    # the engram-runner Role of each StoryRun. The SDK call runs as that pod, with its env.
    ns = k8s_namespace
    parent = workloads.story("parent", steps=[{"name": "step-a", "ref": {"name": "starter"}}])
    starter = workloads.engram("starter", template=workloads.STARTER_TEMPLATE)
    workloads.seed(controlplane, ns, starter, parent, workloads.story_run("p-1", "parent"))
    runner = workloads.engram_runner(controlplane, ns, "p-1")
    for rule in workloads.STARTER_RULES:
        assert rule in runner.rules, runner.rules
    pod = workloads.pod_env(controlplane, ns, "p-1-step-a")
    async with as_identity(runner, pod):
        result = await start_story("quick", {"from": "engram"})
    assert result.decision == "Created"
    child = await admin_kube.get(STORY_RUN, result.story_run)
    assert child["spec"]["inputs"] == {"from": "engram"}


async def test_admin_identity_resolves_through_the_watch(
    story, as_identity, controlplane, k8s_namespace, make_identity
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
    story, as_identity, impulse_identity, k8s_namespace, admin_kube, controlplane
):
    ns = k8s_namespace
    # The operator drains a canceled run's steps for the Story's gracefulShutdownTimeout (the
    # operator default is 20 s): it annotates each running StepRun so its pod can finish, then
    # deletes the StepRuns left and finishes the run. No pod runs here, so it waits it out.
    stoppable = workloads.story("stoppable", policy={"timeouts": {"gracefulShutdownTimeout": "5s"}})
    workloads.seed(controlplane, ns, stoppable)
    await admin_kube.create(STORY_RUN, workloads.story_run("run-x", story="stoppable"))
    await admin_kube.create(STORY_RUN, workloads.story_run("run-done", story="quick"))
    await story_run_when(controlplane, ns, "run-x", lambda r: phase(r) == "Running")
    await story_run_when(controlplane, ns, "run-done", lambda r: phase(r) == "Succeeded")
    async with as_identity(impulse_identity, env(ns)):
        assert await stop_story("run-x") is True
        assert await stop_story("run-x") is False
        assert await stop_story("run-done") is False
        with pytest.raises(StoryRunNotFoundError):
            await stop_story("ghost")
    run = await admin_kube.get(STORY_RUN, "run-x")
    assert run["spec"]["cancelRequested"] is True
    step = await workloads.await_object(
        controlplane,
        workloads.collection("stepruns", ns),
        "run-x-step-a",
        lambda s: "bubustack.io/cancel-requested" in (s["metadata"].get("annotations") or {}),
        what="the cancel-requested annotation on the running step",
    )
    assert step["metadata"]["annotations"]["bubustack.io/cancel-requested"] == "true"
    run = await story_run_when(
        controlplane, ns, "run-x", lambda r: phase(r) not in (None, "Running"), "run-x stopped"
    )
    assert phase(run) == "Finished", run["status"]
    assert run["status"]["message"] == "StoryRun gracefully canceled"
    assert "cancelRequested" not in (await admin_kube.get(STORY_RUN, "run-done"))["spec"]


async def test_impulse_counters_are_the_operators_and_the_sdk_adds_nothing_to_them(
    story, as_identity, impulse_identity, k8s_namespace, controlplane
):
    # The operator counts the StoryRuns that name the Impulse (started: triggersReceived,
    # succeeded: storiesLaunched) and overwrites those fields; when the SDK also added its
    # deltas the status read 10 received for these 8 triggers. Runs of "quick" succeed.
    async with as_identity(impulse_identity, env(k8s_namespace)) as kube:
        stats = ImpulseStats(kube, "hook", k8s_namespace, interval=5)
        d = StoryDispatcher(stats=stats)
        await asyncio.gather(
            *(d.trigger(f"k{i}", story_name="quick", inputs={"i": i}) for i in range(8))
        )
        await stats.aclose()
    assert stats.totals == {
        "triggersReceived": 8,
        "storiesLaunched": 8,
        "failedTriggers": 0,
        "throttledTriggers": 0,
    }
    assert stats.patches == 0  # nothing throttled: nothing of the SDK's to write

    def settled(obj):
        st = obj.get("status") or {}
        return st.get("triggersReceived") == 8 and st.get("storiesLaunched") == 8

    impulse = await workloads.await_object(
        controlplane, workloads.collection("impulses", k8s_namespace), "hook", settled
    )
    assert impulse["status"]["failedTriggers"] == 0


async def test_key_mode_dedupes_by_template(story, as_identity, impulse_identity, k8s_namespace):
    extra = {
        "BUBU_TRIGGER_DEDUPE_MODE": "key",
        "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE": "{{ inputs.eventId }}",
    }
    async with as_identity(impulse_identity, env(k8s_namespace, **extra)):
        a = await start_story("story", {"eventId": "evt-1", "n": 1})
        b = await start_story("story", {"eventId": "evt-1", "n": 1})
    assert a.story_run == b.story_run and b.deduplicated


# --- the decision wait: watch when the Role allows it, GET after a broken watch ----------------

#: What users add through ``Impulse.spec.execution.rbac.rules`` (or the ImpulseTemplate's) so
#: the operator-generated Role (docs/deploying.md#impulse-role: storytriggers create, get) also
#: allows the watch.
WATCH_RULE = {
    "apiGroups": ["runs.bubustack.io"],
    "resources": ["storytriggers"],
    "verbs": ["watch"],
}


def watching_impulse_identity(cp, ns):
    """The operator's identity for an Impulse whose ``execution.rbac.rules`` add the watch."""
    workloads.seed(cp, ns, workloads.impulse(rbac_rules=[WATCH_RULE]))
    ident = workloads.impulse_runner(cp, ns, "hook")
    assert WATCH_RULE in ident.rules, ident.rules  # merged into the generated Role
    return ident


class _ViaProxy:
    """An identity whose kubeconfig points at the fault proxy (same token, same RBAC)."""

    def __init__(self, proxy, ident):
        self.namespace = ident.namespace
        self.kubeconfig_path = proxy.kubeconfig(
            token=ident.token, namespace=ident.namespace, name=f"{ident.service_account}.kubeconfig"
        )


def trigger_traffic(proxy, ns):
    """(watch requests, GETs of one trigger) on storytriggers in ``ns`` seen by the proxy."""
    collection = STORY_TRIGGER.path(namespace=ns)
    seen = proxy.requests
    watches = [
        r for r in seen if r.method == "GET" and r.path == collection and "watch=1" in r.query
    ]
    gets = [r for r in seen if r.method == "GET" and r.path.startswith(collection + "/")]
    return watches, gets


async def test_watch_rule_waits_on_the_watch_without_get_polling(
    story, as_identity, controlplane, k8s_namespace, fault_proxy
):
    ident = watching_impulse_identity(controlplane, k8s_namespace)
    async with as_identity(_ViaProxy(fault_proxy, ident), env(k8s_namespace)):
        results = [await start_story("story", {"n": i}) for i in range(5)]
    assert [r.decision for r in results] == ["Created"] * 5
    watches, gets = trigger_traffic(fault_proxy, k8s_namespace)
    # One watch per call, each answered 200 and carrying the decision; not one GET of a trigger.
    assert [w.status for w in watches] == [200] * 5
    assert all("fieldSelector=metadata.name" in w.query for w in watches)
    assert gets == []


async def test_generated_role_forbids_the_watch_once_then_polls_with_get(
    story, as_identity, impulse_identity, k8s_namespace, fault_proxy
):
    async with as_identity(_ViaProxy(fault_proxy, impulse_identity), env(k8s_namespace)):
        first = await start_story("story", {"n": 1})
        watches_after_first, gets_after_first = trigger_traffic(fault_proxy, k8s_namespace)
        second = await start_story("story", {"n": 2})
    assert first.decision == second.decision == "Created"
    assert [w.status for w in watches_after_first] == [403]
    assert len(gets_after_first) >= 1
    watches, gets = trigger_traffic(fault_proxy, k8s_namespace)
    assert len(watches) == 1  # the 403 is remembered per client: no second watch attempt
    assert len(gets) > len(gets_after_first)


@pytest.mark.parametrize("fault", ["410", "disconnect", "always-disconnect"])
async def test_broken_watch_falls_back_to_get_and_still_gets_the_decision(
    story, as_identity, controlplane, k8s_namespace, fault_proxy, fault
):
    ident = watching_impulse_identity(controlplane, k8s_namespace)
    collection = f"{STORY_TRIGGER.path(namespace=k8s_namespace)}$"
    if fault == "410":
        fault_proxy.fail("GET", collection, 410, query="watch=1")
    else:
        times = None if fault == "always-disconnect" else 1
        fault_proxy.add(Fault("GET", collection, disconnect=True, times=times, query="watch=1"))
    async with as_identity(_ViaProxy(fault_proxy, ident), env(k8s_namespace)):
        result = await start_story_with_token("story", f"evt-{fault}", {"fault": fault})
    assert result.decision == "Created"
    watches, gets = trigger_traffic(fault_proxy, k8s_namespace)
    assert watches[0].fault is not None  # the first watch was broken by the proxy
    assert len(gets) >= 1  # ...and a GET of the trigger followed it
    if fault == "always-disconnect":
        # Three broken watches in a row: give up on the watch for this call and poll.
        assert 1 <= len(watches) <= 3 and all(w.fault is not None for w in watches)
