"""run_impulse against the real operator, as the pod of the Deployment it made for an Impulse.

``impulse_identity`` creates Impulse ``hook`` (targeting Story ``story``); the operator makes
its Deployment (whose pod never starts: the test process is that pod), the
``hook-impulse-runner`` ServiceAccount and its Role. ``impulse_env`` is that Deployment's env.
The operator's webhook admits each StoryTrigger and its controller decides it. The
webhook-example test runs ``examples/webhook_impulse.py`` as a real process: signed deliveries
over loopback HTTP, a redelivery deduplicated, then SIGTERM and a clean exit 0.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import bubu
import tests.conftest as _root_conftest
from bubu._aio.shutdown import Shutdown
from bubu._impulse import run_impulse
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import STORY_RUN, STORY_TRIGGER
from bubu._runtime.sources import MappingSource
from tests._controlplane import workloads

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        impulse_identity,
        k8s_namespace,
    )

pytestmark = pytest.mark.integration


ROOT = Path(__file__).resolve().parents[2]
SECRET = "integration-secret"


#: the Deployment the operator makes for Impulse ``hook`` of ImpulseTemplate ``IMPULSE_TEMPLATE``
DEPLOYMENT = f"hook-{workloads.IMPULSE_TEMPLATE}-impulse"


@pytest.fixture
def impulse_env(controlplane, k8s_namespace, impulse_identity) -> dict[str, str]:
    """The operator's pod env for Impulse ``hook``, plus the impulse's config."""
    env = workloads.pod_env(controlplane, k8s_namespace, DEPLOYMENT, kind="Deployment")
    assert env["BUBU_IMPULSE_NAME"] == "hook" and env["BUBU_TARGET_STORY_NAME"] == "story"
    return {**env, "BUBU_STEP_CONFIG": json.dumps({"events": 3})}


class Three(bubu.Impulse[dict]):
    """Starts three stories through the dispatcher, then serves until stopped."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.done = asyncio.Event()

    async def run(self, client) -> None:
        self.stats = client.stats
        for i in range(3):
            out = await client.dispatcher.trigger(f"k{i}", inputs={"i": i}, token=f"evt-{i}")
            self.runs.append(out.story_run)
        self.done.set()
        await client.shutdown.wait()


async def test_run_impulse_starts_stories_and_leaves_the_counters_to_the_operator(
    impulse_env, impulse_identity, k8s_namespace, admin_kube, controlplane
):
    impulse = Three()
    stop = Shutdown(grace=5)
    async with await KubeClient.connect(
        kubeconfig=str(impulse_identity.kubeconfig_path), namespace=k8s_namespace
    ) as kube:
        task = asyncio.ensure_future(
            run_impulse(
                impulse,
                source=MappingSource(impulse_env),
                shutdown=stop,
                client=kube,
                stats_interval=30,
            )
        )
        await asyncio.wait_for(impulse.done.wait(), 30)
        stop.request("SIGTERM")
        assert await task == 0
    # The SDK counted three launches; the status holds the operator's own count (three runs
    # started, none succeeded: their Jobs never run), and nothing the SDK added on top.
    assert impulse.stats.totals["triggersReceived"] == 3
    assert impulse.stats.totals["storiesLaunched"] == 3
    await operator_counts(controlplane, k8s_namespace, received=3, launched=0)
    for name in impulse.runs:
        run = await admin_kube.get(STORY_RUN, name)
        assert run["spec"]["impulseRef"]["name"] == "hook"


async def operator_counts(cp, ns, *, received, launched):
    """The Impulse status once the operator's counts are ``received``/``launched``."""

    def settled(obj):
        st = obj.get("status") or {}
        return (st.get("triggersReceived"), st.get("storiesLaunched")) == (received, launched)

    impulse = await workloads.await_object(
        cp, workloads.collection("impulses", ns), "hook", settled
    )
    assert (
        "throttledTriggers" not in impulse["status"] or impulse["status"]["throttledTriggers"] == 0
    )
    return impulse


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def post(port: int, body: bytes, delivery: str) -> tuple[int, dict]:
    sig = "sha256=" + hmac.new(SECRET.encode(), body, hashlib.sha256).hexdigest()
    head = (
        f"POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n"
        f"X-Hub-Signature-256: {sig}\r\nX-GitHub-Event: push\r\n"
        f"X-GitHub-Delivery: {delivery}\r\n\r\n"
    )
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head.encode() + body)
    raw = await reader.read()
    writer.close()
    await writer.wait_closed()
    status = int(raw.split(b" ", 2)[1])
    return status, json.loads(raw.partition(b"\r\n\r\n")[2] or b"{}")


async def test_webhook_example_process_end_to_end_and_sigterm_exits_zero(
    impulse_env, impulse_identity, k8s_namespace, admin_kube, controlplane
):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    environ.update(impulse_env)
    environ.update(
        {
            "KUBECONFIG": str(impulse_identity.kubeconfig_path),
            "BUBU_STEP_CONFIG": json.dumps({"host": "127.0.0.1", "port": port}),
            "BUBU_SECRET_WEBHOOK_SECRET": SECRET,
        }
    )
    proc = subprocess.Popen(  # noqa: ASYNC220 - returns at once; we wait via to_thread
        [sys.executable, str(ROOT / "examples" / "webhook_impulse.py")],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        for _ in range(300):
            try:
                _, probe = await asyncio.open_connection("127.0.0.1", port)
                probe.close()
                await probe.wait_closed()
                break
            except OSError:
                await asyncio.sleep(0.05)
        body = json.dumps(
            {"ref": "refs/heads/main", "repository": {"full_name": "o/r"}, "commits": [{}]}
        ).encode()
        first = await post(port, body, "delivery-1")
        again = await post(port, body, "delivery-1")
        assert first[0] == 202 and first[1]["status"] == "accepted"
        assert again[0] == 200 and again[1]["status"] == "duplicate"
        assert again[1]["storyRun"] == first[1]["storyRun"]
        proc.send_signal(signal.SIGTERM)
        stdout, stderr = await asyncio.to_thread(proc.communicate, timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 0, stderr.decode()[-3000:]
    async with controlplane.async_client() as http:
        triggers = (await http.get(STORY_TRIGGER.path(namespace=k8s_namespace))).json()["items"]
    assert len(triggers) == 1
    await operator_counts(controlplane, k8s_namespace, received=1, launched=0)  # one run


async def test_webhook_example_process_refuses_to_start_without_a_secret(
    impulse_env, impulse_identity, k8s_namespace
):
    port = free_port()
    environ = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    environ.update(impulse_env)
    environ.update(
        {
            "KUBECONFIG": str(impulse_identity.kubeconfig_path),
            "BUBU_STEP_CONFIG": json.dumps({"host": "127.0.0.1", "port": port}),
        }
    )
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(ROOT / "examples" / "webhook_impulse.py"),
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    stdout, _ = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 1
    # Logged as every run logs, in every mode: one JSON line on stdout (Go's slog default).
    lines = [json.loads(line) for line in stdout.decode().splitlines() if line.startswith("{")]
    failure = [e for e in lines if "WEBHOOK_SECRET is not configured" in e["msg"]]
    assert failure and failure[0]["mode"] == "impulse" and failure[0]["level"] == "ERROR"
    with pytest.raises(OSError):  # it never listened
        await asyncio.open_connection("127.0.0.1", port)
