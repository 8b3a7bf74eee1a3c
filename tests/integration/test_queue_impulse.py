"""The queue impulse killed between admission and acknowledgement, for real.

``examples/redis-queue-impulse/queue_impulse.py`` runs as a process with the ServiceAccount the
real operator made for Impulse ``queue`` (the operator's webhook admits and its controller
decides its StoryTriggers) and a real redis-server. The first process is SIGKILLed after its
first entry was admitted and before ``XACK``; the second process, with the same consumer name,
must re-submit that entry (same token: no second StoryRun), then handle the rest, and
acknowledge everything: three entries, three StoryRuns, nothing pending.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as redis

import tests.conftest as _root_conftest
from bubu._k8s.resources import STORY_RUN, STORY_TRIGGER
from tests import _redis
from tests._controlplane import workloads

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        impulse_identity,
        k8s_namespace,
    )

pytestmark = pytest.mark.integration

redis_server = _redis.redis_server

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "examples" / "redis-queue-impulse" / "queue_impulse.py"


@pytest.fixture
def queue_identity(controlplane, operator, k8s_namespace):
    """The operator's identity for Impulse ``queue`` (targeting Story ``story``)."""
    ns = k8s_namespace
    impulse = workloads.impulse("queue")
    workloads.seed(controlplane, ns, workloads.engram(), workloads.story(), impulse)
    return workloads.impulse_runner(controlplane, ns, "queue")


def start(url: str, ns: str, kubeconfig: str, *, pause: bool) -> subprocess.Popen[bytes]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    environ.update(
        {
            "KUBECONFIG": kubeconfig,
            "BUBU_IMPULSE_NAME": "queue",
            "BUBU_IMPULSE_NAMESPACE": ns,
            "BUBU_TARGET_STORY_NAME": "story",
            "BUBU_TARGET_STORY_NAMESPACE": ns,
            "BUBU_STEP_CONFIG": json.dumps(
                {
                    "url": url,
                    "stream": "orders",
                    "group": "bubu",
                    "consumer": "queue-0",
                    "blockMs": 100,
                }
            ),
        }
    )
    if pause:
        environ["QUEUE_IMPULSE_PAUSE_BEFORE_ACK"] = "1"
    return subprocess.Popen(
        [sys.executable, str(EXAMPLE)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


async def read_line(proc: subprocess.Popen[bytes], prefix: bytes, within: float = 60) -> bytes:
    assert proc.stdout is not None

    def read() -> bytes:
        assert proc.stdout is not None
        while line := proc.stdout.readline():
            if line.startswith(prefix):
                return line
        return b""

    line = await asyncio.wait_for(asyncio.to_thread(read), within)
    if not line:
        assert proc.stderr is not None
        raise AssertionError(f"process ended: {proc.stderr.read().decode()[-3000:]}")
    return line


async def test_a_kill_between_admission_and_ack_loses_nothing_and_duplicates_nothing(
    redis_server,
    queue_identity,
    k8s_namespace,
    controlplane,
) -> None:
    conn = redis.Redis.from_url(redis_server, decode_responses=True)
    ids = [await conn.xadd("orders", {"n": str(i)}) for i in range(3)]
    kubeconfig = str(queue_identity.kubeconfig_path)

    async def listed(kind: Any) -> list[dict[str, Any]]:
        async with controlplane.async_client() as http:
            r = await http.get(kind.path(namespace=k8s_namespace))
            return list(r.json()["items"])

    first = start(redis_server, k8s_namespace, kubeconfig, pause=True)
    try:
        line = await read_line(first, b"admitted ")
        assert line.split()[1].decode() == ids[0]
        # The StoryRun exists and the entry is still pending: now kill, no cleanup of any kind.
        first.send_signal(signal.SIGKILL)
        await asyncio.to_thread(first.communicate, timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
        first.communicate()  # closes the pipes
    assert first.returncode == -signal.SIGKILL
    pending = await conn.xpending("orders", "bubu")
    # All three were delivered in one read; none was acknowledged, one StoryRun exists.
    assert pending["pending"] == 3 and pending["min"] == ids[0]
    assert len(await listed(STORY_RUN)) == 1

    second = start(redis_server, k8s_namespace, kubeconfig, pause=False)
    try:
        admitted = [(await read_line(second, b"admitted ")).split()[1].decode() for _ in ids]
        assert admitted == ids  # the pending entry first, then the rest in order
        for _ in range(600):  # the XACK follows the "admitted" line at once
            if not (await conn.xpending("orders", "bubu"))["pending"]:
                break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("entries still pending after 30 s")
        second.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.to_thread(second.communicate, timeout=30)
    finally:
        if second.poll() is None:
            second.kill()
            second.communicate()
    assert second.returncode == 0, stderr.decode()[-3000:]
    runs = await listed(STORY_RUN)
    triggers = await listed(STORY_TRIGGER)
    assert len(runs) == 3, [r["metadata"]["name"] for r in runs]
    tokens = sorted(t["spec"]["deliveryIdentity"]["key"] for t in triggers)
    assert tokens == sorted(f"orders/{i}" for i in ids)
    await conn.aclose()
