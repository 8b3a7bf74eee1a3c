"""wait_for_object: watch first, GET after a broken watch, polling after a 403 (bubu._k8s.watch)."""

from __future__ import annotations

import asyncio

import pytest

from bubu._k8s import watch
from bubu._k8s.resources import STORY_RUN
from bubu.errors import KubernetesError, NotFoundError, WatchExpiredError
from bubu.testkit._fakes import FakeCluster


def finished(obj) -> bool:
    return (obj.get("status") or {}).get("phase") == "Finished"


async def finish_later(cluster: FakeCluster, name: str, delay: float = 0.05) -> None:
    await asyncio.sleep(delay)
    obj = cluster.peek(STORY_RUN, name)
    obj["status"] = {"phase": "Finished"}
    cluster.put(STORY_RUN, obj)


@pytest.fixture
def cluster():
    c = FakeCluster("ns")
    c.seed_story_run("r", "ns", phase="Running")
    return c


async def test_returns_the_initial_object_when_already_done(cluster):
    obj = cluster.peek(STORY_RUN, "r")
    obj["status"]["phase"] = "Finished"
    assert (
        await watch.wait_for_object(
            cluster, STORY_RUN, "r", None, done=finished, initial=obj, wait=1
        )
        is obj
    )
    assert cluster.requests == []


async def test_watch_sees_the_change(cluster):
    initial = cluster.peek(STORY_RUN, "r")
    task = asyncio.ensure_future(finish_later(cluster, "r"))
    got = await watch.wait_for_object(
        cluster, STORY_RUN, "r", None, done=finished, initial=initial, wait=2
    )
    await task
    assert finished(got)
    assert cluster.count("get", STORY_RUN) == 0


@pytest.mark.parametrize(
    "error",
    [WatchExpiredError("gone", status_code=410), KubernetesError("reset", retryable=True)],
)
async def test_broken_watch_is_followed_by_a_get_and_a_new_watch(cluster, error):
    cluster.fail("watch", STORY_RUN, error)
    task = asyncio.ensure_future(finish_later(cluster, "r", 0.1))
    got = await watch.wait_for_object(
        cluster, STORY_RUN, "r", None, done=finished, initial=cluster.peek(STORY_RUN, "r"), wait=2
    )
    await task
    assert finished(got)
    assert cluster.count("get", STORY_RUN) >= 1 and cluster.count("watch", STORY_RUN) >= 2


async def test_forbidden_watch_polls_and_is_remembered(cluster):
    cluster.forbid("watch", STORY_RUN)
    task = asyncio.ensure_future(finish_later(cluster, "r"))
    got = await watch.wait_for_object(
        cluster, STORY_RUN, "r", None, done=finished, initial=None, wait=2
    )
    await task
    assert finished(got) and watch.watch_forbidden(cluster, STORY_RUN)
    await watch.wait_for_object(cluster, STORY_RUN, "r", None, done=finished, initial=None, wait=1)
    assert cluster.count("watch", STORY_RUN) == 1


async def test_timeout_returns_none(cluster):
    got = await watch.wait_for_object(
        cluster, STORY_RUN, "r", None, done=finished, initial=cluster.peek(STORY_RUN, "r"), wait=0.1
    )
    assert got is None


async def test_deleted_object_is_not_found(cluster):
    async def delete_later():
        await asyncio.sleep(0.05)
        await cluster.delete(STORY_RUN, "r")

    task = asyncio.ensure_future(delete_later())
    with pytest.raises(NotFoundError, match="deleted"):
        await watch.wait_for_object(
            cluster,
            STORY_RUN,
            "r",
            None,
            done=finished,
            initial=cluster.peek(STORY_RUN, "r"),
            wait=2,
        )
    await task
