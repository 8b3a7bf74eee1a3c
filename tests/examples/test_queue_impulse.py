"""examples/redis-queue-impulse against a real redis-server, with the in-memory cluster.

The crash between admission and acknowledgement, with a real process kill against the real
kube-apiserver, is in tests/integration/test_queue_impulse.py.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import redis.asyncio as redis

from bubu.testkit import ImpulseHarness
from tests import _redis
from tests.examples._load import load_example

qi = load_example("redis-queue-impulse/queue_impulse.py")
redis_server = _redis.redis_server


@pytest.fixture
async def client(redis_server: str) -> AsyncIterator[redis.Redis]:
    conn = redis.Redis.from_url(redis_server, decode_responses=True)
    yield conn
    await conn.aclose()


async def eventually(check: Callable[[], Any], within: float = 15) -> None:
    """Poll ``check`` (Redis state has no change notification we could wait on)."""
    for _ in range(int(within / 0.02)):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"not true within {within} s: {check.__name__}")


def config(url: str, **extra: Any) -> dict[str, Any]:
    return {"url": url, "stream": "orders", "group": "g", "consumer": "c1", "blockMs": 50, **extra}


async def pending(conn: redis.Redis) -> int:
    info = await conn.xpending("orders", "g")
    return int(info["pending"])


async def test_each_entry_starts_one_story_run_and_is_acknowledged(
    redis_server: str,
    client: redis.Redis,
) -> None:
    first = await client.xadd("orders", {"sku": "a", "json": json.dumps({"qty": 2})})
    async with ImpulseHarness(impulse=qi.QueueImpulse(), config=config(redis_server)) as h:
        second = await client.xadd("orders", {"sku": "b"})

        async def both_admitted() -> bool:
            return len(h.story_runs) == 2 and await pending(client) == 0

        await eventually(both_admitted)
    assert h.exit_code == 0
    triggers = h.triggers
    tokens = [t["spec"]["deliveryIdentity"]["key"] for t in triggers]
    assert tokens == [f"orders/{first}", f"orders/{second}"]
    assert triggers[0]["spec"]["inputs"] == {
        "stream": "orders",
        "id": first,
        "fields": {"sku": "a", "qty": 2},
    }
    assert [d for _, d, _ in h.decisions] == ["Created", "Created"]
    groups = await client.xinfo_groups("orders")
    assert groups[0]["last-delivered-id"] == second


async def test_entries_another_consumer_abandoned_are_claimed(
    redis_server: str,
    client: redis.Redis,
) -> None:
    await client.xgroup_create("orders", "g", id="0", mkstream=True)
    entry = await client.xadd("orders", {"sku": "lost"})
    # A consumer that read the entry and died before acknowledging it.
    await client.xreadgroup("g", "dead-pod", {"orders": ">"}, count=10)
    assert await pending(client) == 1
    cfg = config(redis_server, consumer="new-pod", claimIdleMs=1)
    async with ImpulseHarness(impulse=qi.QueueImpulse(), config=cfg) as h:

        async def claimed() -> bool:
            return await pending(client) == 0 and len(h.story_runs) == 1

        await eventually(claimed)
    assert h.triggers[0]["spec"]["deliveryIdentity"]["key"] == f"orders/{entry}"


async def test_rejected_and_malformed_entries_go_to_the_dead_letter_stream(
    redis_server: str,
    client: redis.Redis,
) -> None:
    harness = ImpulseHarness(impulse=qi.QueueImpulse(), config=config(redis_server))
    harness.resolver.reject_next("InputsInvalid", "inputs do not match the Story schema")
    rejected = await client.xadd("orders", {"sku": "x"})
    malformed = await client.xadd("orders", {"json": "[1, 2]"})
    async with harness:

        async def parked() -> bool:
            return await client.xlen("orders:dead") == 2 and await pending(client) == 0

        await eventually(parked)
    dead = await client.xrange("orders:dead")
    assert [fields["_id"] for _, fields in dead] == [rejected, malformed]
    assert dead[0][1]["_reason"] == "inputs do not match the Story schema"
    assert "must hold a JSON object" in dead[1][1]["_reason"]
    assert harness.story_runs == []


async def test_shutdown_while_waiting_for_entries_is_clean(
    redis_server: str,
    client: redis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # redis-py holds a cancelled XREADGROUP until its socket timeout, so the example abandons the
    # blocked read; run() must end on the cancellation, well inside the grace.
    cfg = config(redis_server, blockMs=60_000)
    harness = ImpulseHarness(impulse=qi.QueueImpulse(), config=cfg, grace=30)
    await harness.start()
    async with asyncio.timeout(3):
        assert await harness.stop() == 0
    assert "did not stop" not in caplog.text

    async def only_the_test_connected() -> bool:
        # The impulse closed its connections (the server sees them go), not the garbage collector.
        return len(await client.client_list()) == 1

    await eventually(only_the_test_connected, within=5)
