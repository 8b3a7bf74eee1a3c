"""StoryDispatcher sessions and coalesced Impulse counters (Go story_dispatcher).

See docs/contract/story-trigger.md#impulse-counters.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bubu._dispatcher import StoryDispatcher
from bubu._k8s.resources import IMPULSE, STORY_RUN
from bubu._triggers import ImpulseStats
from bubu.errors import (
    ImpulseSessionExistsError,
    ImpulseSessionNotFoundError,
    StoryRunNotFoundError,
    TriggerPendingError,
    TriggerRejectedError,
)

from .conftest import NS


@pytest.fixture
def stats(world):
    world.cluster.seed_impulse("hook", NS)
    return ImpulseStats(world.cluster, "hook", NS, interval=0.05)


async def test_trigger_then_stop_returns_the_session(world, stats):
    d = StoryDispatcher(stats=stats)
    out = await d.trigger("pr-1", story_name="story", inputs={"n": 1}, metadata={"who": "me"})
    assert out.session is not None and d.has_session("pr-1")
    assert out.session.metadata["bubustack.io/storyrun"] == out.story_run
    assert out.session.metadata["who"] == "me"
    with pytest.raises(TypeError):
        out.session.metadata["x"] = "y"  # read-only copy
    stopped = await d.stop("pr-1")
    assert stopped.story_run == out.story_run and not d.has_session("pr-1")
    assert world.cluster.peek(STORY_RUN, out.story_run, NS)["spec"]["cancelRequested"] is True


async def test_duplicate_key_is_refused(world, stats):
    d = StoryDispatcher(stats=stats)
    await d.trigger("k", story_name="story")
    # Go's ErrImpulseSessionExists text first, then the key.
    with pytest.raises(ImpulseSessionExistsError, match=r"^impulse session already active: 'k'$"):
        await d.trigger("k", story_name="story")


async def test_target_story_from_env(world, scoped, stats):
    with scoped(world, BUBU_TARGET_STORY_NAME="story"):
        out = await StoryDispatcher(stats=stats).trigger("k")
    assert out.session.story_name == "story"


async def test_stop_unknown_key_and_missing_run(world, stats):
    d = StoryDispatcher(stats=stats)
    # Go's ErrImpulseSessionNotFound text first, then the key.
    with pytest.raises(ImpulseSessionNotFoundError, match=r"^impulse session not found: 'nope'$"):
        await d.stop("nope")
    out = await d.trigger("k", story_name="story")
    await world.cluster.delete(STORY_RUN, out.story_run, NS)
    with pytest.raises(StoryRunNotFoundError) as info:
        await d.stop("k")
    assert info.value.session.key == "k"
    assert not d.has_session("k")  # dropped anyway (Go behaviour)


async def test_failed_trigger_forgets_the_reserved_key(world, stats):
    world.resolver.reject_next("Nope", "denied")
    d = StoryDispatcher(stats=stats)
    with pytest.raises(TriggerRejectedError):
        await d.trigger("k", story_name="story")
    assert not d.has_session("k")
    assert d.forget("k") is None


async def test_forget_and_session_copies(world, stats):
    d = StoryDispatcher(stats=stats)
    await d.trigger("k", story_name="story")
    assert d.session("k") == d.session("k") and d.session("k") is not d.session("k")
    assert d.forget("k").key == "k" and d.session("k") is None


async def test_counts_stay_in_memory_and_operator_owned_counters_are_not_written(world):
    # The operator recomputes received/launched/failed from StoryRuns
    # (docs/contract/story-trigger.md#impulse-counters); the real operator showed a mix of both
    # counts when the SDK also wrote them (docs/differences.md).
    world.cluster.seed_impulse("hook", NS)
    stats = ImpulseStats(world.cluster, "hook", NS, interval=5)
    d = StoryDispatcher(stats=stats)
    await asyncio.gather(*(d.trigger(story_name="story", inputs={"i": i}) for i in range(20)))
    world.resolver.reject_next("Nope", "denied")
    with pytest.raises(TriggerRejectedError):
        await d.trigger(story_name="story")
    await stats.aclose()
    assert stats.totals == {
        "triggersReceived": 21,
        "storiesLaunched": 20,
        "failedTriggers": 1,
        "throttledTriggers": 0,
    }
    assert stats.patches == 0
    assert "status" not in world.cluster.peek(IMPULSE, "hook", NS)


async def test_throttles_are_coalesced_into_few_patches(world):
    world.cluster.seed_impulse("hook", NS)
    stats = ImpulseStats(world.cluster, "hook", NS, interval=5)
    for _ in range(20):
        stats.record(received=1, throttled=1)
        await asyncio.sleep(0)
    await stats.aclose()
    status = world.cluster.peek(IMPULSE, "hook", NS)["status"]
    assert set(status) == {"throttledTriggers", "lastThrottled"}
    assert status["throttledTriggers"] == 20
    assert stats.patches <= 2  # the first record, then the flush on close; Go sends 20
    assert status["lastThrottled"].endswith("Z") and "." not in status["lastThrottled"]


async def test_retryable_errors_count_as_received_only(world, scoped, stats):
    world.resolver.pending = True
    d = StoryDispatcher(stats=stats)
    with scoped(world, BUBU_K8S_OPERATION_TIMEOUT="50ms"):
        with pytest.raises(TriggerPendingError, match="is still pending") as caught:
            await d.trigger(story_name="story")
    assert caught.value.retryable  # a pending decision is worth retrying: not a failure
    await stats.aclose()
    assert stats.totals["triggersReceived"] == 1 and stats.totals["failedTriggers"] == 0


async def test_timestamps_only_move_forward(world, stats):
    future = (datetime.now(UTC) + timedelta(days=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    obj = world.cluster.peek(IMPULSE, "hook", NS)
    obj["status"] = {"lastThrottled": future, "throttledTriggers": 5}
    world.cluster.put(IMPULSE, obj)
    stats.record(throttled=1)
    await stats.aclose()
    status = world.cluster.peek(IMPULSE, "hook", NS)["status"]
    assert status["lastThrottled"] == future and status["throttledTriggers"] == 6


async def test_conflicting_writer_does_not_lose_increments(world, stats):
    original = world.cluster.get
    raced = False

    async def racing_get(kind, name, namespace=None):
        nonlocal raced
        obj = await original(kind, name, namespace)
        if kind == IMPULSE and not raced:
            raced = True  # another writer bumps the counter between our GET and PATCH
            other = await original(kind, name, namespace)
            other["status"] = {"throttledTriggers": 100}
            world.cluster.put(IMPULSE, other)
        return obj

    world.cluster.get = racing_get
    stats.record(throttled=2)
    await stats.aclose()
    assert world.cluster.peek(IMPULSE, "hook", NS)["status"]["throttledTriggers"] == 102


def test_negative_deltas_are_refused(world):
    stats = ImpulseStats(world.cluster, "hook", NS)
    with pytest.raises(ValueError, match="non-negative"):
        stats.record(received=-1)
