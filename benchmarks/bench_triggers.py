"""Benchmark: ``start_story`` against the real API server with the StoryTrigger stand-in.

Starts the test control plane (etcd + kube-apiserver with the CRDs), a namespace with a Story
and an Impulse, the stand-in controllers in their own process (``python -m tests._standins``,
standing in for the operator), then submits ``--calls`` StoryTriggers with ``--parallel`` in
flight, acting as the operator's Impulse ServiceAccount (crds.md 7.2: no ``watch`` on
storytriggers, so every decision is awaited by GET polling). Prints triggers/s and the
decision latency (create -> Created, including the StoryRun GET) p50/p90/p99.

    python benchmarks/bench_triggers.py [--calls 500] [--parallel 16] [--tokens]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bubu import _scope  # noqa: E402
from bubu._k8s.client import KubeClient  # noqa: E402
from bubu._k8s.resources import IMPULSE, STORY  # noqa: E402
from bubu._runtime.sources import MappingSource  # noqa: E402
from bubu._triggers import start_story, start_story_with_token  # noqa: E402
from tests._controlplane import rbac  # noqa: E402
from tests._controlplane.server import ControlPlane  # noqa: E402


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def bench(
    cp: ControlPlane, ns: str, calls: int, parallel: int, tokens: bool, watch: bool
) -> None:
    admin_cfg = str(cp.admin_kubeconfig)
    async with await KubeClient.connect(kubeconfig=admin_cfg, namespace=ns) as admin:
        await admin.create(
            STORY,
            {
                "metadata": {"name": "story"},
                "spec": {"steps": [{"name": "start", "type": "condition"}]},
            },
        )
        await admin.create(
            IMPULSE,
            {
                "metadata": {"name": "bench"},
                "spec": {"templateRef": {"name": "t"}, "storyRef": {"name": "story"}},
            },
        )
    # The operator's Impulse Role has no watch on storytriggers (crds.md 7.2); --watch adds it
    # to compare the watch-based wait with GET polling.
    extra = (
        [{"apiGroups": ["runs.bubustack.io"], "resources": ["storytriggers"], "verbs": ["watch"]}]
        if watch
        else None
    )
    ident = rbac.impulse_identity(cp, ns, impulse="bench", extra_rules=extra)
    standins = subprocess.Popen(  # noqa: ASYNC220 - starts at once, before the timed part
        [sys.executable, "-m", "tests._standins", "--kubeconfig", admin_cfg, "--namespace", ns],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert standins.stdout is not None
        standins.stdout.readline()  # "stand-ins running ..."
        env = {
            "BUBU_IMPULSE_NAME": "bench",
            "BUBU_IMPULSE_NAMESPACE": ns,
            "BUBU_TARGET_STORY_NAMESPACE": ns,
            "BUBU_K8S_OPERATION_TIMEOUT": "60s",
        }
        latencies: list[float] = []
        sem = asyncio.Semaphore(parallel)
        async with await KubeClient.connect(
            kubeconfig=str(ident.kubeconfig_path), namespace=ns
        ) as kube:
            with _scope.activate(_scope.RunScope(source=MappingSource(env), kube=kube)):
                await start_story("story", {"warmup": True})  # connection + 403 caches

                async def one(i: int) -> None:
                    async with sem:
                        t0 = time.perf_counter()
                        if tokens:
                            result = await start_story_with_token("story", f"evt-{i}", {"i": i})
                        else:
                            result = await start_story("story", {"i": i})
                        latencies.append(time.perf_counter() - t0)
                        assert result.decision == "Created", result

                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(calls)))
                elapsed = time.perf_counter() - started
    finally:
        standins.terminate()
        standins.wait(timeout=10)
    ms = [x * 1000 for x in latencies]
    wait = "watch" if watch else "GET polling"
    print(
        f"start_story x{calls}, {parallel} in flight, Impulse Role ({wait}), "
        f"{'token' if tokens else 'no-dedupe'} mode"
    )
    print(f"  throughput: {calls / elapsed:.1f} triggers/s ({elapsed:.2f} s total)")
    print(
        f"  decision latency: p50 {percentile(ms, 0.5):.1f} ms, "
        f"p90 {percentile(ms, 0.9):.1f} ms, p99 {percentile(ms, 0.99):.1f} ms, "
        f"max {max(ms):.1f} ms, mean {statistics.mean(ms):.1f} ms"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--tokens", action="store_true", help="use start_story_with_token")
    parser.add_argument("--watch", action="store_true", help="grant watch on storytriggers")
    args = parser.parse_args()
    cp = ControlPlane(log=lambda m: print(m, file=sys.stderr, flush=True)).start()
    try:
        ns = f"bench-{os.getpid()}"
        with cp.client() as c:
            r = c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            r.raise_for_status()
        with tempfile.TemporaryDirectory():
            asyncio.run(bench(cp, ns, args.calls, args.parallel, args.tokens, args.watch))
    finally:
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
