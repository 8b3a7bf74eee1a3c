"""Benchmark: ``start_story`` against the real API server and the real operator.

Starts the test control plane (etcd + kube-apiserver with the CRDs) and the real operator
(bobrapet's manager with its webhooks, ``tests._controlplane.operator``), a namespace with a
Story (one condition step, so the operator runs each StoryRun to the end) and an Impulse, then
submits ``--calls`` StoryTriggers with ``--parallel`` in flight, acting as the ServiceAccount the
operator made for the Impulse, under the Role it generated (no ``watch`` on storytriggers, so
every decision is awaited by GET polling; ``--watch`` adds the rule users add through the
Impulse's ``execution.rbac.rules``). Prints triggers/s, the decision latency (create ->
Created, including the StoryRun GET) p50/p90/p99, the API requests the SDK made per trigger,
and where the CPU went per trigger (SDK process, operator, kube-apiserver, etcd) so a slow
number can be pinned on the SDK or on the control plane it shares the machine with.

    python benchmarks/bench_triggers.py [--calls 500] [--parallel 16] [--tokens] [--watch]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import cpu_seconds  # noqa: E402

from bubu import _scope  # noqa: E402
from bubu._k8s import identity  # noqa: E402
from bubu._k8s.client import KubeClient  # noqa: E402
from bubu._k8s.resources import STORY_TRIGGER, Kind  # noqa: E402
from bubu._runtime.sources import MappingSource  # noqa: E402
from bubu._triggers import start_story, start_story_with_token  # noqa: E402
from tests._controlplane import workloads  # noqa: E402
from tests._controlplane.operator import Operator  # noqa: E402
from tests._controlplane.server import ControlPlane  # noqa: E402
from tests._controlplane.workloads import watch_collection  # noqa: E402


class CountingKube:
    """Delegates to a KubeClient and counts the requests the SDK makes, by verb and kind."""

    def __init__(self, kube: KubeClient) -> None:
        self._kube = kube
        self.counts: Counter[str] = Counter()

    @property
    def namespace(self) -> str:
        return self._kube.namespace

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.counts[f"GET {kind.plural}"] += 1
        return await self._kube.get(kind, name, namespace)

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        self.counts[f"POST {kind.plural}"] += 1
        return await self._kube.create(kind, body, namespace)

    async def replace(self, kind: Kind, name: str, body: Any, *args: Any) -> dict[str, Any]:
        self.counts[f"PUT {kind.plural}"] += 1
        return await self._kube.replace(kind, name, body, *args)

    async def merge_patch(self, kind: Kind, name: str, patch: Any, *args: Any) -> dict[str, Any]:
        self.counts[f"PATCH {kind.plural}"] += 1
        return await self._kube.merge_patch(kind, name, patch, *args)

    async def watch(
        self, kind: Kind, name: str, *args: Any, **kw: Any
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        self.counts[f"WATCH {kind.plural}"] += 1
        async for event in self._kube.watch(kind, name, *args, **kw):
            yield event


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def baseline(cp: ControlPlane, admin: KubeClient, ns: str, calls: int, parallel: int) -> None:
    """The ceiling without the SDK: raw admin POSTs of valid StoryTriggers (no decision wait),
    timed until the operator has decided them all. The SDK run below cannot beat it on
    the same machine, so the gap between the two is what the SDK costs."""
    label = {"bench": "baseline"}
    sem = asyncio.Semaphore(parallel)
    decided: set[str] = set()
    all_decided = asyncio.Event()

    async def observe() -> None:
        async with cp.async_client() as http:
            async for _, obj in watch_collection(http, STORY_TRIGGER, ns):
                meta = obj["metadata"]
                if (meta.get("labels") or {}) == label and (obj.get("status") or {}).get(
                    "decision"
                ):
                    decided.add(meta["name"])
                    if len(decided) >= calls:
                        all_decided.set()

    async def post(i: int) -> None:
        sid = f"baseline-{i}"
        name = identity.derive_story_trigger_name(ns, "story", "", sid)
        spec = {
            "storyRef": {"name": "story"},
            "inputs": {"i": i},
            "deliveryIdentity": {"mode": "none", "submissionId": sid},
        }
        async with sem:
            await admin.create(
                STORY_TRIGGER, {"metadata": {"name": name, "labels": label}, "spec": spec}
            )

    watcher = asyncio.get_running_loop().create_task(observe())
    try:
        started = time.perf_counter()
        await asyncio.gather(*(post(i) for i in range(calls)))
        posted = time.perf_counter() - started
        await asyncio.wait_for(all_decided.wait(), 300)
        elapsed = time.perf_counter() - started
    finally:
        watcher.cancel()
        await asyncio.gather(watcher, return_exceptions=True)
    print(
        f"baseline (no SDK): {calls} raw POSTs with {parallel} in flight in {posted:.2f} s, all "
        f"decided by the operator after {elapsed:.2f} s: {calls / elapsed:.1f} triggers/s"
    )


async def bench(
    cp: ControlPlane,
    op: Operator,
    ns: str,
    calls: int,
    parallel: int,
    tokens: bool,
    watch: bool,
    with_baseline: bool,
) -> None:
    admin_cfg = str(cp.admin_kubeconfig)
    # The operator's Impulse Role has no watch on storytriggers; --watch adds it through the
    # Impulse's execution.rbac.rules to compare the watch-based wait with GET polling.
    extra = (
        [{"apiGroups": ["runs.bubustack.io"], "resources": ["storytriggers"], "verbs": ["watch"]}]
        if watch
        else None
    )
    story = workloads.story(steps=[{"name": "start", "type": "condition"}])
    workloads.seed(cp, ns, story, workloads.impulse("bench", rbac_rules=extra))
    ident = workloads.impulse_runner(cp, ns, "bench")
    try:
        if with_baseline:
            async with await KubeClient.connect(kubeconfig=admin_cfg, namespace=ns) as admin:
                await baseline(cp, admin, ns, calls, parallel)
        env = {
            "BUBU_IMPULSE_NAME": "bench",
            "BUBU_IMPULSE_NAMESPACE": ns,
            "BUBU_TARGET_STORY_NAMESPACE": ns,
            "BUBU_K8S_OPERATION_TIMEOUT": "60s",
        }
        latencies: list[float] = []
        sem = asyncio.Semaphore(parallel)
        pids = {"apiserver": cp._apiserver, "etcd": cp._etcd}  # private: benchmark only
        async with await KubeClient.connect(
            kubeconfig=str(ident.kubeconfig_path), namespace=ns
        ) as real:
            kube = CountingKube(real)
            scope = _scope.RunScope(source=MappingSource(env), kube=kube)  # type: ignore[arg-type]
            with _scope.activate(scope):
                await start_story("story", {"warmup": True})  # connection + 403 caches
                kube.counts.clear()

                async def one(i: int) -> None:
                    async with sem:
                        t0 = time.perf_counter()
                        if tokens:
                            result = await start_story_with_token("story", f"evt-{i}", {"i": i})
                        else:
                            result = await start_story("story", {"i": i})
                        latencies.append(time.perf_counter() - t0)
                        assert result.decision == "Created", result

                procs = {"operator": op.pid}
                procs.update({k: p.pid for k, p in pids.items() if p is not None})
                cpu0 = {k: cpu_seconds(pid) for k, pid in procs.items()}
                sdk0 = time.process_time()
                started = time.perf_counter()
                await asyncio.gather(*(one(i) for i in range(calls)))
                elapsed = time.perf_counter() - started
                cpu = {"sdk": time.process_time() - sdk0}
                cpu.update({k: cpu_seconds(pid) - cpu0[k] for k, pid in procs.items()})
    except BaseException:
        print(f"operator log: {op.log_path}", file=sys.stderr)
        raise
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
    per = ", ".join(f"{k} {v / calls:.2f}" for k, v in sorted(kube.counts.items()))
    print(f"  SDK requests per trigger: {per}")
    spent = ", ".join(f"{k} {1000 * v / calls:.1f}" for k, v in cpu.items())
    print(f"  CPU ms per trigger: {spent} (total {1000 * sum(cpu.values()) / calls:.1f})")
    print(f"  load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}, {os.cpu_count()} CPUs")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--tokens", action="store_true", help="use start_story_with_token")
    parser.add_argument("--watch", action="store_true", help="grant watch on storytriggers")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the raw-POST run without the SDK"
    )
    args = parser.parse_args()

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    cp = ControlPlane(log=log).start()
    op = Operator(cp, log=log)
    try:
        op.start()
        log(f"operator ready in {op.startup_seconds:.1f}s; log: {op.log_path}")
        ns = f"bench-{os.getpid()}"
        with cp.client() as c:
            r = c.post("/api/v1/namespaces", json={"metadata": {"name": ns}})
            r.raise_for_status()
        with tempfile.TemporaryDirectory():
            asyncio.run(
                bench(
                    cp,
                    op,
                    ns,
                    args.calls,
                    args.parallel,
                    args.tokens,
                    args.watch,
                    not args.no_baseline,
                )
            )
    finally:
        op.stop()
        cp.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
