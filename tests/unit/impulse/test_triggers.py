"""start_story, start_story_with_token, stop_story on the in-memory cluster.

See docs/contract/story-trigger.md, docs/contract/story-trigger.md#stop-story.
"""

from __future__ import annotations

import asyncio
import hashlib

import pytest

from bubu import _triggers
from bubu._k8s import identity
from bubu._k8s.resources import STORY_RUN, STORY_TRIGGER
from bubu._runtime import env as _env
from bubu._templating import render_key_template
from bubu._triggers import start_story, start_story_with_token, stop_story
from bubu.errors import (
    ContractError,
    KubernetesError,
    StoryRunNotFoundError,
    TemplateError,
    TriggerError,
    TriggerIdentityConflictError,
    TriggerPendingError,
    TriggerRejectedError,
)

from .conftest import NS


async def test_first_submission_is_created_with_deterministic_identity(world):
    result = await start_story_with_token("story", "order-42", {"b": 1.0, "a": "<&>"})
    assert result.decision == "Created" and not result.reused
    assert result.story_run == identity.derive_story_run_name(NS, "story", "order-42")
    trigger = world.cluster.peek(STORY_TRIGGER, result.trigger, NS)
    assert trigger["metadata"]["name"] == identity.derive_story_trigger_name(
        NS, "story", "order-42", "order-42"
    )
    delivery = trigger["spec"]["deliveryIdentity"]
    assert delivery == {
        "mode": "token",
        "key": "order-42",
        "submissionId": "order-42",
        "inputHash": identity.compute_trigger_input_hash({"a": "<&>", "b": 1}),
    }
    assert "namespace" not in trigger["spec"]["storyRef"]  # only when passed explicitly


async def test_same_token_and_inputs_give_one_trigger_one_run_decision_created(world):
    first = await start_story_with_token("story", "tok", {"x": 1})
    second = await start_story_with_token("story", "tok", {"x": 1.0})
    assert first.story_run == second.story_run
    assert second.decision == "Created"
    assert len(world.cluster.objects(STORY_TRIGGER)) == 1
    assert len(world.cluster.objects(STORY_RUN)) == 1


async def test_same_token_with_different_inputs_is_the_documented_error(world):
    await start_story_with_token("story", "tok", {"x": 1})
    with pytest.raises(TriggerIdentityConflictError, match="different immutable request identity"):
        await start_story_with_token("story", "tok", {"x": 2})
    assert len(world.cluster.objects(STORY_TRIGGER)) == 1


async def test_preexisting_run_with_matching_inputs_is_reused(world):
    name = identity.derive_story_run_name(NS, "story", "ext")
    world.cluster.put(
        STORY_RUN,
        {"metadata": {"name": name}, "spec": {"storyRef": {"name": "story"}, "inputs": {"k": "v"}}},
    )
    result = await start_story_with_token("story", "ext", {"k": "v"})
    assert result.decision == "Reused" and result.reused
    assert result.story_run == name


async def test_preexisting_run_with_different_inputs_is_rejected(world):
    name = identity.derive_story_run_name(NS, "story", "ext")
    world.cluster.put(
        STORY_RUN,
        {
            "metadata": {"name": name},
            "spec": {"storyRef": {"name": "story"}, "inputs": {"k": "other"}},
        },
    )
    with pytest.raises(
        TriggerRejectedError, match="does not match StoryTrigger storyRef and inputs"
    ) as info:
        await start_story_with_token("story", "ext", {"k": "v"})
    assert info.value.reason == "StoryRunConflict"
    assert not info.value.retryable


async def test_without_a_resolver_the_call_is_pending_and_retryable(world, scoped):
    world.resolver.pending = True
    with scoped(world, BUBU_K8S_OPERATION_TIMEOUT="150ms"):
        with pytest.raises(TriggerPendingError, match="is still pending") as info:
            await start_story("story", {})
    assert info.value.retryable
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert not (trigger.get("status") or {}).get("decision")


async def test_missing_story_is_refused_at_admission(world):
    # As the operator's StoryTrigger webhook does: no trigger is created, nothing is decided
    # (tests/integration/test_testkit_twin.py runs the same call against the real operator).
    missing = "referenced story 'team-a/nope' not found"
    with pytest.raises(TriggerRejectedError, match=missing) as info:
        await start_story("nope", {})
    assert info.value.reason == "AdmissionDenied"
    assert world.cluster.objects(STORY_TRIGGER) == []


async def test_rejection_message_is_status_message(world):
    world.resolver.reject_next("SchemaInvalid", "inputs.x is required")
    with pytest.raises(TriggerRejectedError) as info:
        await start_story("story", {})
    assert str(info.value) == "inputs.x is required"
    assert info.value.reason == "SchemaInvalid"


async def test_no_token_means_a_new_run_per_call(world):
    a = await start_story("story", {"x": 1})
    b = await start_story("story", {"x": 1})
    assert a.story_run != b.story_run
    modes = {t["spec"]["deliveryIdentity"]["mode"] for t in world.cluster.objects(STORY_TRIGGER)}
    assert modes == {"none"}


async def test_watch_forbidden_falls_back_to_get_polling(world):
    # The generated Impulse Role has no watch on storytriggers (docs/deploying.md#impulse-role).
    world.cluster.forbid("watch", STORY_TRIGGER)
    first = await start_story("story", {})
    second = await start_story("story", {})
    assert first.decision == second.decision == "Created"
    # the 403 is remembered: one refused watch, then only GETs
    assert world.cluster.count("watch", STORY_TRIGGER) == 1


async def test_decision_arrives_through_the_watch(world):
    result = await start_story("story", {})
    assert result.decision == "Created"
    assert world.cluster.count("watch", STORY_TRIGGER) >= 1


async def test_inputs_must_be_a_json_object(world):
    with pytest.raises(TriggerError, match="must be a JSON object"):
        await start_story("story", [1, 2])
    with pytest.raises(TriggerError, match="not JSON-serialisable"):
        await start_story("story", {"x": object()})


async def test_empty_story_name_and_token_are_refused(world):
    with pytest.raises(TriggerError, match="story name is required"):
        await start_story("  ", {})
    with pytest.raises(TriggerError, match="token must not be empty"):
        await start_story_with_token("story", " ", {})


async def test_token_longer_than_submission_id_limit_is_refused(world):
    with pytest.raises(TriggerError, match="at most 253"):
        await start_story_with_token("story", "t" * 254, {})


async def test_env_token_and_context_token(world, scoped):
    with scoped(world, BUBU_TRIGGER_TOKEN="env-token"):
        r1 = await start_story("story", {})
        with _triggers.trigger_token("ctx-token"):
            r2 = await start_story("story", {})
    assert r1.story_run == identity.derive_story_run_name(NS, "story", "env-token")
    assert r2.story_run == identity.derive_story_run_name(NS, "story", "ctx-token")


async def test_key_mode_hashes_the_rendered_template(world, scoped):
    with scoped(
        world,
        BUBU_TRIGGER_DEDUPE_MODE="key",
        BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE="{{ inputs.eventId }}",
    ):
        result = await start_story("story", {"eventId": "evt-123"})
    key = hashlib.sha256(b"evt-123").hexdigest()
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert trigger["spec"]["deliveryIdentity"]["mode"] == "key"
    assert trigger["spec"]["deliveryIdentity"]["key"] == key
    assert result.story_run == identity.derive_story_run_name(NS, "story", key)


async def test_token_mode_without_token_fails(world, scoped):
    with scoped(world, BUBU_TRIGGER_DEDUPE_MODE="token"):
        with pytest.raises(
            TriggerError, match="trigger token required by BUBU_TRIGGER_DEDUPE_MODE=token"
        ):
            await start_story("story", {})


async def test_key_mode_token_mismatch(world, scoped):
    with scoped(
        world, BUBU_TRIGGER_DEDUPE_MODE="key", BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE="{{ inputs.id }}"
    ):
        with pytest.raises(TriggerError, match="trigger token mismatch"):
            await start_story_with_token("story", "other", {"id": "x"})


async def test_invalid_settings_fail_the_call_naming_the_variable(world, scoped):
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="-1"):
        with pytest.raises(
            ContractError, match="BUBU_TRIGGER_RETRY_MAX_ATTEMPTS must be a non-negative"
        ):
            await start_story("story", {})


async def test_parent_metadata_and_impulse_ref_from_env(world, scoped):
    with scoped(
        world,
        BUBU_STORYRUN_ID="Parent_Run",
        BUBU_STEP_NAME="step-a",
        BUBU_IMPULSE_NAME="hook",
        BUBU_IMPULSE_NAMESPACE=NS,
    ):
        await start_story("story", {})
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert trigger["metadata"]["labels"]["bubustack.io/parent-storyrun"] == "parent-run"
    assert trigger["metadata"]["annotations"]["bubustack.io/parent-storyrun"] == "Parent_Run"
    assert trigger["metadata"]["labels"]["bubustack.io/steprun"] == "run-1-step-a"
    assert trigger["metadata"]["annotations"]["bubustack.io/parent-steprun"] == "run-1-step-a"
    assert trigger["spec"]["impulseRef"] == {"name": "hook", "namespace": NS}


async def test_story_version_is_pinned_when_readable(world):
    world.cluster.seed_story("versioned", NS, version="v2")
    await start_story("versioned", {})
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert trigger["spec"]["storyRef"]["version"] == "v2"


async def test_transient_create_error_is_retried(world, scoped):
    world.cluster.fail(
        "create", STORY_TRIGGER, KubernetesError("boom", status_code=503, retryable=True), times=2
    )
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="3", BUBU_TRIGGER_RETRY_BASE_DELAY="1ms"):
        result = await start_story_with_token("story", "retry-me", {})
    assert result.decision == "Created"


async def test_permanent_error_is_not_retried(world, scoped):
    world.cluster.fail("create", STORY_TRIGGER, KubernetesError("bad", status_code=422), times=1)
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="3", BUBU_TRIGGER_RETRY_BASE_DELAY="1ms"):
        with pytest.raises(KubernetesError, match="bad"):
            await start_story("story", {})
    assert world.cluster.count("create", STORY_TRIGGER) == 1


async def test_throttle_bounds_calls_in_flight(world, scoped):
    world.cluster.seed_impulse("hook", NS)
    active = peak = 0
    original = world.cluster.create

    async def slow_create(kind, body, namespace=None):
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.01)
        active -= 1
        return await original(kind, body, namespace)

    world.cluster.create = slow_create
    with scoped(world, BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT="2"):
        await asyncio.gather(*(start_story("story", {"i": i}) for i in range(6)))
    assert peak == 2


async def test_stop_story_sets_cancel_requested_once(world):
    world.cluster.seed_story_run("run-x", NS, phase="Running")
    assert await stop_story("run-x") is True
    run = world.cluster.peek(STORY_RUN, "run-x", NS)
    assert run["spec"]["cancelRequested"] is True
    assert run["status"]["phase"] == "Finished"  # the stand-in controller reacted
    assert await stop_story("run-x") is False


async def test_stop_story_on_terminal_run_is_a_noop(world):
    world.cluster.seed_story_run("done", NS, phase="Succeeded")
    assert await stop_story("done") is False
    assert "cancelRequested" not in world.cluster.peek(STORY_RUN, "done", NS)["spec"]


async def test_stop_story_missing_run(world):
    with pytest.raises(StoryRunNotFoundError, match='storyrun "ghost" not found'):
        await stop_story("ghost")


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("{{ inputs.eventId }}", "evt-1"),
        ("{{ .inputs.eventId }}", "evt-1"),
        ("{{ inputs.n }}", 3),
        ("id-{{ inputs.eventId }}-{{ inputs.n }}", "id-evt-1-3"),
        ("{{ index inputs.items 1 }}", "b"),
        ('{{ inputs["odd key"] }}', "v"),
        ("{{ inputs.eventId | upper }}", "EVT-1"),
        ('{{ inputs.missing2 | default "x" }}', "x"),  # a missing key inside a pipeline is zero
        ("{{ inputs.missing2 }}", None),  # a single path to a missing key is an error
        ("{{- inputs.eventId -}}  ", "evt-1"),
        ("{{ .story.name }}/{{ .impulse.name }}", "s/i"),  # only inputs/steps/packet drop the dot
        ("{{ inputs.f }}", 1000000.0),
        ("f={{ inputs.f }}", "f=1e+06"),
        ('{{ print "a" inputs.n }}', "a3"),
        ('{{ index .inputs "odd key" }}', "v"),
    ],
)
def test_key_template_subset(template, expected):
    variables = {
        "inputs": {"eventId": "evt-1", "n": 3, "items": ["a", "b"], "odd key": "v", "f": 1e6},
        "story": {"name": "s"},
        "impulse": {"name": "i"},
    }
    if expected is None:
        with pytest.raises(TemplateError, match="missing key at inputs.missing2"):
            render_key_template(template, variables)
        return
    assert render_key_template(template, variables) == expected


@pytest.mark.parametrize(
    "template",
    # Go's parser refuses numeric subscripts ("bad character U+005B '['") and bare "story".
    ["{{ nope }}", "{{ (inputs.a }}", "{{ story.name }}", "{{ inputs.a[0] }}"],
)
def test_key_template_errors_are_clear(template):
    with pytest.raises(TemplateError):
        render_key_template(template, {"inputs": {"a": 1}})


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"BUBU_TRIGGER_DEDUPE_MODE": "sometimes"},
            "BUBU_TRIGGER_DEDUPE_MODE must be one of none, token, key",
        ),
        (
            {"BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE": "{{ inputs.x }}"},
            "requires BUBU_TRIGGER_DEDUPE_MODE=key",
        ),
        ({"BUBU_TRIGGER_RETRY_BACKOFF": "random"}, "must be one of exponential, linear, constant"),
        ({"BUBU_TRIGGER_RETRY_BASE_DELAY": "soon"}, "BUBU_TRIGGER_RETRY_BASE_DELAY invalid"),
        (
            {"BUBU_TRIGGER_THROTTLE_BURST": "1_000"},
            "BUBU_TRIGGER_THROTTLE_BURST must be a non-negative",
        ),
    ],
)
async def test_trigger_settings_are_reread_and_errors_name_the_variable(
    world, scoped, env, message
):
    with scoped(world, **env):
        with pytest.raises(ContractError, match=message):
            await start_story("story", {})
    with scoped(world, **dict.fromkeys(env, "")):
        assert (await start_story("story", {})).decision == "Created"  # re-read per call


async def test_rate_limit_waits_and_counts_throttled(world, scoped):
    import time

    from bubu._triggers import ImpulseStats, StoryTriggers

    world.cluster.seed_impulse("hook", NS)
    stats = ImpulseStats(world.cluster, "hook", NS, interval=0)
    with scoped(world, BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND="20", BUBU_TRIGGER_THROTTLE_BURST="1"):
        engine = StoryTriggers(world.cluster, world.scope.source, stats=stats)
        started = time.monotonic()
        await asyncio.gather(*(engine.start("story", {"i": i}) for i in range(4)))
        elapsed = time.monotonic() - started
    await stats.aclose()
    assert elapsed >= 0.12  # 3 of 4 calls waited ~50 ms each for a token
    from bubu._k8s.resources import IMPULSE

    status = world.cluster.peek(IMPULSE, "hook", NS)["status"]
    assert status["throttledTriggers"] == 3 and "lastThrottled" in status


async def test_webhook_denial_is_a_rejection_not_a_permission_error(world):
    # A cross-namespace storyRef is denied by the StoryTrigger webhook (403,
    # docs/contract/story-trigger.md#admission-webhook).
    with pytest.raises(
        TriggerRejectedError, match="cross-namespace StoryRef references are not allowed"
    ) as info:
        await start_story("story", {}, namespace="elsewhere")
    assert info.value.reason == "AdmissionDenied" and not info.value.retryable
    assert world.cluster.denials


# --- Go test cases not covered above (docs/contract/errors.md#kubernetes-errors) ------------------


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, NS),  # nothing set: the client's namespace
        ({"BUBU_POD_NAMESPACE": "pod-ns"}, "pod-ns"),
        ({"BUBU_POD_NAMESPACE": "pod-ns", "BUBU_STEPRUN_NAMESPACE": "sr-ns"}, "sr-ns"),
        ({"BUBU_STEPRUN_NAMESPACE": "sr-ns", "BUBU_IMPULSE_NAMESPACE": "imp-ns"}, "imp-ns"),
        ({"BUBU_IMPULSE_NAMESPACE": "imp-ns", "BUBU_TARGET_STORY_NAMESPACE": "t-ns"}, "t-ns"),
        ({"BUBU_TARGET_STORY_NAMESPACE": "  ", "BUBU_POD_NAMESPACE": "pod-ns"}, "pod-ns"),
    ],
)
def test_client_namespace_precedence_and_blank_values(world, env, expected):
    # Go getPodNamespace: target story > impulse > steprun > pod > client; blanks are unset.
    from bubu._runtime.sources import MappingSource

    source = MappingSource({"BUBU_STEPRUN_NAME": "", **env})
    assert _triggers.StoryTriggers(world.cluster, source).client_namespace() == expected


@pytest.mark.parametrize(
    ("env", "expected"),
    [
        ({}, None),
        ({"BUBU_IMPULSE_NAME": "hook"}, {"name": "hook"}),
        (
            {"BUBU_IMPULSE_NAME": "hook", "BUBU_IMPULSE_NAMESPACE": NS},
            {"name": "hook", "namespace": NS},
        ),
    ],
)
async def test_impulse_ref_from_env(world, scoped, env, expected):
    with scoped(world, **env):
        await start_story("story", {})
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert trigger["spec"].get("impulseRef") == expected


async def test_empty_trigger_token_context_changes_nothing(world, scoped):
    with scoped(world, BUBU_TRIGGER_TOKEN="env-token"):
        with _triggers.trigger_token("  "):
            result = await start_story("story", {})
    assert result.story_run == identity.derive_story_run_name(NS, "story", "env-token")


async def test_none_inputs_are_sent_as_an_empty_object_with_its_hash(world):
    await start_story_with_token("story", "nil-inputs", None)
    (trigger,) = world.cluster.objects(STORY_TRIGGER)
    assert trigger["spec"]["inputs"] == {}
    ident = trigger["spec"]["deliveryIdentity"]
    assert ident == {
        "mode": "token",
        "key": "nil-inputs",
        "submissionId": "nil-inputs",
        "inputHash": identity.compute_trigger_input_hash({}),
    }


async def test_story_ref_namespace_is_part_of_the_request_identity(world):
    # Go: matching is namespace-sensitive; an unset namespace does not match an explicit one.
    await start_story_with_token("story", "ns-sensitive", {"a": 1})
    with pytest.raises(TriggerIdentityConflictError, match="different immutable request identity"):
        await start_story_with_token("story", "ns-sensitive", {"a": 1}, namespace=NS)


async def test_transient_get_after_already_exists_is_retried(world, scoped):
    first = await start_story_with_token("story", "exists", {"a": 1})
    world.cluster.fail(
        "get", STORY_TRIGGER, KubernetesError("reset", status_code=503, retryable=True), times=1
    )
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="3", BUBU_TRIGGER_RETRY_BASE_DELAY="1ms"):
        again = await start_story_with_token("story", "exists", {"a": 1})
    assert again.story_run == first.story_run and again.deduplicated


async def test_retries_exhausted_on_get_after_already_exists_is_an_error(world, scoped):
    await start_story_with_token("story", "exists", {"a": 1})
    world.cluster.fail(
        "get", STORY_TRIGGER, KubernetesError("reset", status_code=503, retryable=True), times=3
    )
    gets = world.cluster.count("get", STORY_TRIGGER)
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="2", BUBU_TRIGGER_RETRY_BASE_DELAY="1ms"):
        with pytest.raises(KubernetesError, match="reset") as caught:
            await start_story_with_token("story", "exists", {"a": 1})
    # Both attempts read the existing trigger, and no third one was made.
    assert world.cluster.count("get", STORY_TRIGGER) - gets == 2
    assert caught.value.retryable


@pytest.mark.parametrize("token", [None, "with-token"])
async def test_transient_create_timeout_is_retried_with_and_without_token(world, scoped, token):
    world.cluster.fail(
        "create", STORY_TRIGGER, KubernetesError("timeout", status_code=504, retryable=True)
    )
    with scoped(world, BUBU_TRIGGER_RETRY_MAX_ATTEMPTS="2", BUBU_TRIGGER_RETRY_BASE_DELAY="1ms"):
        if token:
            result = await start_story_with_token("story", token, {})
        else:
            result = await start_story("story", {})
    assert result.decision == "Created"
    assert world.cluster.count("create", STORY_TRIGGER) == 2


async def test_stop_story_on_a_paused_run_requests_cancel(world):
    world.cluster.seed_story_run("paused", NS, phase="Paused")
    assert await stop_story("paused") is True
    assert world.cluster.peek(STORY_RUN, "paused", NS)["spec"]["cancelRequested"] is True


def test_impulse_stats_need_a_name(world):
    with pytest.raises(ValueError, match="impulse name is required"):
        _triggers.ImpulseStats(world.cluster, " ")


async def _until(predicate, limit: float = 10.0) -> None:
    """Yield to the loop until ``predicate()`` holds (the throttle offers no event to wait on)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110
            await asyncio.sleep(0.001)


async def test_cancel_while_waiting_for_an_in_flight_slot(world, scoped):
    gate = asyncio.Event()
    entered = asyncio.Event()
    original = world.cluster.create

    async def held_create(kind, body, namespace=None):
        entered.set()
        await gate.wait()
        return await original(kind, body, namespace)

    world.cluster.create = held_create
    with scoped(world, BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT="1"):
        holder = asyncio.ensure_future(start_story("story", {"i": 0}))
        await asyncio.wait_for(entered.wait(), 10)  # the holder has the only slot
        throttle = _triggers._throttle_for(_triggers.load_trigger_settings(world.scope.source))
        assert throttle is not None and throttle._sem is not None
        waiter = asyncio.ensure_future(start_story("story", {"i": 1}))
        await _until(lambda: bool(getattr(throttle._sem, "_waiters", None)))  # queued for it
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        gate.set()
        assert (await holder).decision == "Created"
        # The cancelled waiter took no slot with it: the next call gets one at once.
        assert (await asyncio.wait_for(start_story("story", {"i": 2}), 2)).decision == "Created"


async def test_cancel_during_the_rate_wait_releases_the_slot(world, scoped):
    env = {
        "BUBU_TRIGGER_THROTTLE_MAX_IN_FLIGHT": "1",
        "BUBU_TRIGGER_THROTTLE_RATE_PER_SECOND": "1",
        "BUBU_TRIGGER_THROTTLE_BURST": "1",
    }
    with scoped(world, **env):
        await start_story("story", {"i": 0})  # spends the only token
        throttle = _triggers._throttle_for(_triggers.load_trigger_settings(world.scope.source))
        assert throttle is not None and throttle._sem is not None
        waiter = asyncio.ensure_future(start_story("story", {"i": 1}))  # waits ~1 s for a token
        # Cancelled as soon as it has reserved the next token (tokens below zero), so the whole
        # 1 s wait is the margin, whatever the machine's load.
        await _until(lambda: throttle._tokens < 0)
        waiter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await waiter
        assert not throttle._sem.locked()  # the in-flight slot was released
        assert throttle._tokens > -0.5  # and the reserved token given back (else about -1)


async def test_offload_key_is_stable_and_independent_of_key_order(world):
    keys: list[str] = []

    async def offload(inputs, storage_key):
        keys.append(storage_key)
        return inputs

    engine = _triggers.StoryTriggers(world.cluster, world.scope.source, offload=offload)
    await engine.start("story", {"a": 1, "b": 2}, token="tok")
    await engine.start("story", {"b": 2, "a": 1}, token="tok")
    with pytest.raises(TriggerIdentityConflictError):
        await engine.start("story", {"a": 1, "b": 3}, token="tok")
    assert keys[0] == keys[1] != keys[2]
    run = identity.derive_story_run_name(NS, "story", "tok")
    assert keys[0].startswith(f"{NS}/{run}-")


# --- identity resolution: exact errors (the keys themselves are checked against Go in
# test_triggers_go.py) ---------------------------------------------------------------------------

_INPUTS = {"id": "evt-1", "empty": ""}
_STORY = _triggers.TargetStory(name="orders", namespace="team-a")


def _resolve(mode, template, token):
    settings = _env.TriggerSettings(dedupe_mode=mode, dedupe_key_template=template)
    return _triggers._resolve_identity(
        settings, token, inputs=_INPUTS, story=_STORY, impulse=_STORY
    )


@pytest.mark.parametrize(
    ("mode", "template", "token", "error", "message"),
    [
        ("token", "", "", TriggerError, "trigger token required by BUBU_TRIGGER_DEDUPE_MODE=token"),
        (
            "key",
            "",
            "",
            TriggerError,
            "trigger key template required by BUBU_TRIGGER_DEDUPE_MODE=key",
        ),
        (
            "key",
            "{{ .inputs.id }}",
            "other",
            TriggerError,
            "trigger token mismatch: provided token does not match "
            "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE output",
        ),
        ("key", "{{ .inputs.empty }}", "", TriggerError, "trigger key resolved to empty value"),
        ("key", "  ", "", TriggerError, "trigger key resolved to empty value"),
        (None, "", "t" * 254, TriggerError, "trigger token is 254 characters; at most 253 allowed"),
    ],
)
def test_identity_errors_say_what_is_wrong(mode, template, token, error, message) -> None:
    with pytest.raises(error) as info:
        _resolve(mode, template, token)
    assert str(info.value) == message


def test_template_errors_keep_go_text_and_position() -> None:
    with pytest.raises(TemplateError) as info:
        _resolve("key", "{{ .inputs.id", "")
    assert str(info.value).startswith("resolve trigger key template: ")
    assert info.value.position is not None


def test_identity_without_a_key() -> None:
    assert _resolve(None, "", "t" * 253) == _triggers._Identity("token", "t" * 253, "t" * 253)
    plain = _resolve("none", "", "")
    assert plain.mode == "none" and plain.key == "" and len(plain.submission_id) == 36


def test_storage_input_key_follows_go_rules():
    # Empty inputs: the StoryRun name alone; otherwise its name plus 12 hex digits of the
    # SHA-256 of the Go JSON (floats and <>& as Go writes them), cut to 253 characters.
    run = identity.derive_story_run_name(NS, "story", "tok")
    assert _triggers.storage_input_key(NS, "story", "tok", {}) == run
    inputs = {"x": 1e21, "t": "<&>", "f": 0.1}
    go_json = b'{"f":0.1,"t":"\\u003c\\u0026\\u003e","x":1e+21}'
    digest = hashlib.sha256(go_json).hexdigest()[:12]
    assert _triggers.storage_input_key(NS, "story", "tok", inputs) == f"{run}-{digest}"
    long_story = "s" * 240
    key = _triggers.storage_input_key(NS, long_story, "tok", inputs)
    assert len(key) == 253 and key.endswith(f"-{digest}")
    assert _triggers.story_input_schema(NS, "story") == f"bubu://story/{NS}/story/inputs"
    assert _triggers.story_input_schema("", "story") == "bubu://story/story/inputs"


async def test_storage_settings_offload_trigger_inputs(world, tmp_path):
    # With BUBU_STORAGE_PROVIDER the engine offloads by itself (Go's shared manager), for
    # start_story and the dispatcher alike; refs carry the story's input schema id.
    from bubu._dispatcher import StoryDispatcher
    from bubu._runtime.sources import MappingSource

    env = dict(world.env)
    env.update(
        {
            "BUBU_STORAGE_PROVIDER": "file",
            "BUBU_STORAGE_PATH": str(tmp_path),
            "BUBU_MAX_INLINE_SIZE": "300",
        }
    )
    engine = _triggers.StoryTriggers(world.cluster, MappingSource(env))
    result = await engine.start("story", {"doc": "d" * 500, "n": 1}, token="tok")
    dispatched = await StoryDispatcher(triggers=engine).trigger(
        "session-1", story_name="story", inputs={"doc": "e" * 500}
    )
    other = world.cluster.peek(STORY_TRIGGER, dispatched.result.trigger, NS)
    assert "$bubuStorageRef" in other["spec"]["inputs"]["doc"]
    trigger = world.cluster.peek(STORY_TRIGGER, result.trigger, NS)
    sent = trigger["spec"]["inputs"]
    assert sent["n"] == 1 and set(sent["doc"]) >= {"$bubuStorageRef", "$bubuStorageSchema"}
    assert sent["doc"]["$bubuStorageSchema"] == f"bubu://story/{NS}/story/inputs"
    stored = tmp_path / sent["doc"]["$bubuStorageRef"]
    assert stored.is_file() and b"d" * 500 in stored.read_bytes()
