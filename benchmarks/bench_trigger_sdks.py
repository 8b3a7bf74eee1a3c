"""Benchmark: starting Stories with the Go SDK and with bubu, side by side, on the real operator.

One control plane (etcd + kube-apiserver with the CRDs), the BubuStack operator as released
(bobrapet v0.1.13, webhooks off) and one Story. Each variant is a fresh process that makes one
warm-up trigger (client and connection set-up, not timed) and then ``--calls`` triggers with
``--parallel`` in flight, as the admin user (no RBAC limits: the decision is awaited the way
each SDK does it best - Go polls every 50 ms, bubu watches):

* ``go-shipped``: ``sdk.StartStory`` (``k8s.SharedClient``: client-go limited to 20 requests/s,
  bursts of 40; the Go SDK offers no environment variable for it);
* ``go-unthrottled``: the same SDK with that limit lifted through its public API
  (``k8s.GetConfig()``, ``QPS = -1``, ``k8s.NewClientForConfig``, ``Client.TriggerStory``;
  see ``tests/interop/cmd/triggerbench``);
* ``bubu-out``: ``bubu.start_story`` outside any run scope (the process-wide shared client);
* ``bubu-in``: the same calls inside a run scope with the run's own client (an Impulse).

Each runs without and with delivery tokens (``start_story_with_token`` / ``WithTriggerToken``).
Rounds are interleaved (every variant once per round, in a rotating order) and the table shows
medians over rounds of triggers/s, latency p50/p99 (call to return, StoryRun read included) and
the SDK process's CPU per trigger, with ratios to ``go-unthrottled``. Between runs the StoryRuns
and StoryTriggers are deleted and the machine is let settle, so no run pays for the previous
one's cleanup. The floors of issue 15 are checked at the end: bubu's triggers/s >= 1.0x and
p50 <= the unthrottled Go SDK's, bubu's SDK CPU per trigger <= 2x Go's.

    python benchmarks/bench_trigger_sdks.py [--calls 300] [--parallel 16] [--rounds 3]
        [--variants go-shipped,go-unthrottled,bubu-out,bubu-in] [--strict] [--json out.json]

Take ``flock /tmp/bubu-bench.lock`` around it on a shared machine; the load average is printed
with the numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _proc import cpu_seconds  # noqa: E402

VARIANTS = ("go-shipped", "go-unthrottled", "bubu-out", "bubu-in")
STORY = "bench-story"
REFERENCE = "go-unthrottled"


# --- the bubu worker (a separate process per run, like the Go program) ------------------------


async def _worker(args: argparse.Namespace) -> dict[str, Any]:
    import bubu
    from bubu import _scope
    from bubu._k8s.client import KubeClient
    from bubu._runtime.sources import OsEnviron

    async def one(i: int) -> None:
        inputs = {"i": i, "id": f"{args.prefix}-{i}"}
        if args.tokens:
            await bubu.start_story_with_token(STORY, f"{args.prefix}-{i}", inputs)
        else:
            await bubu.start_story(STORY, inputs)

    async def timed() -> dict[str, Any]:
        await one(-1)  # warm-up: client, connection, caches
        sem = asyncio.Semaphore(args.parallel)
        latencies = [0.0] * args.calls
        errors: list[str] = []

        async def call(i: int) -> None:
            async with sem:
                t0 = time.perf_counter()
                try:
                    await one(i)
                except Exception as exc:  # reported, not fatal: the table shows errors
                    errors.append(repr(exc))
                latencies[i] = (time.perf_counter() - t0) * 1000

        cpu0 = time.process_time()
        t0 = time.perf_counter()
        await asyncio.gather(*(call(i) for i in range(args.calls)))
        seconds = time.perf_counter() - t0
        return {
            "calls": args.calls,
            "seconds": seconds,
            "latencies_ms": latencies,
            "cpu_seconds": time.process_time() - cpu0,
            "errors": len(errors),
            "first_error": errors[0] if errors else "",
        }

    if args.worker == "bubu-out":
        return await timed()
    async with await KubeClient.connect() as kube:
        with _scope.activate(_scope.RunScope(source=OsEnviron(), kube=kube)):
            return await timed()


# --- the operator (small and replaceable: tests/_controlplane will own a launcher) -----------


@contextlib.contextmanager
def operator(cp: Any, workdir: Path) -> Iterator[subprocess.Popen[bytes]]:
    """Run the released BubuStack operator against ``cp`` with webhooks off until the block ends."""
    from tests._controlplane import build

    manager = build.ensure(build.OPERATOR) / "manager"
    log = workdir / "operator.log"
    env = {**os.environ, "ENABLE_WEBHOOKS": "false", "KUBECONFIG": str(cp.admin_kubeconfig)}
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                str(manager),
                f"--kubeconfig={cp.admin_kubeconfig}",
                "--metrics-bind-address=0",
                "--health-probe-bind-address=127.0.0.1:0",
                "--leader-elect=false",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
        )
    try:
        deadline = time.monotonic() + 120
        while b'"controller":"runs-storytrigger"' not in log.read_bytes() or (
            b"Starting workers" not in log.read_bytes()
        ):
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"operator did not start; log tail:\n{log.read_text()[-3000:]}")
            time.sleep(0.2)
        yield proc
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# --- orchestration ------------------------------------------------------------------------------


def settle(pids: list[int], *, busy: float = 0.15, limit: float = 90.0) -> None:
    """Wait until the control plane and the operator use less than ``busy`` of a core."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = sum(cpu_seconds(p) for p in pids)
        time.sleep(1.0)
        if sum(cpu_seconds(p) for p in pids) - before < busy:
            return


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


@dataclass
class Run:
    rate: float
    p50: float
    p99: float
    cpu_ms: float
    errors: int


def run_variant(
    variant: str, tokens: bool, prefix: str, args: argparse.Namespace, env: dict[str, str]
) -> Run:
    common = ["-calls", str(args.calls), "-parallel", str(args.parallel)]
    if variant.startswith("go-"):
        from tests._controlplane import build

        exe = build.ensure(build.INTEROP) / "triggerbench"
        cmd = [str(exe), "-story", STORY, "-token-prefix", prefix, *common]
        if tokens:
            cmd.append("-tokens")
        if variant == "go-unthrottled":
            cmd.append("-unthrottled")
    else:
        cmd = [sys.executable, __file__, "--worker", variant, "--prefix", prefix]
        cmd += ["--calls", str(args.calls), "--parallel", str(args.parallel)]
        if tokens:
            cmd.append("--tokens")
    out = subprocess.run(cmd, env=env, capture_output=True, check=False, timeout=900)
    if out.returncode != 0:
        raise RuntimeError(f"{variant} failed ({out.returncode}): {out.stderr.decode()[-2000:]}")
    data = json.loads(out.stdout.decode().strip().splitlines()[-1])
    if data["errors"]:
        print(f"  {variant}: {data['errors']} errors, first: {data['first_error']}", flush=True)
    lat = data["latencies_ms"]
    return Run(
        rate=data["calls"] / data["seconds"],
        p50=percentile(lat, 0.5),
        p99=percentile(lat, 0.99),
        cpu_ms=1000 * data["cpu_seconds"] / data["calls"],
        errors=data["errors"],
    )


def self_contained_kubeconfig(source: Path, target: Path) -> Path:
    """The admin kubeconfig with its CA, certificate and key inlined (``*-data``).

    The callers then depend on this one file only, which the benchmark owns: a long run should
    not fail because a file of the control plane's work directory went away.
    """
    import base64

    import yaml

    doc = yaml.safe_load(source.read_text())

    def inline(entry: dict[str, Any], key: str) -> None:
        if key in entry:
            data = Path(entry.pop(key)).read_bytes()
            entry[f"{key}-data"] = base64.b64encode(data).decode()

    for cluster in doc["clusters"]:
        inline(cluster["cluster"], "certificate-authority")
    for user in doc["users"]:
        inline(user["user"], "client-certificate")
        inline(user["user"], "client-key")
    target.write_text(yaml.safe_dump(doc))
    target.chmod(0o600)
    return target


def cleanup(cp: Any, ns: str) -> None:
    with cp.client(timeout=120) as c:
        for plural in ("storytriggers", "storyruns"):
            r = c.delete(f"/apis/runs.bubustack.io/v1alpha1/namespaces/{ns}/{plural}")
            r.raise_for_status()


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=300)
    parser.add_argument("--parallel", type=int, default=16)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    parser.add_argument("--token-modes", default="none,token", help="none, token or both")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor is missed")
    parser.add_argument("--json", help="write the medians per caller here (first token mode)")
    parser.add_argument("--worker", choices=("bubu-in", "bubu-out"), help=argparse.SUPPRESS)
    parser.add_argument("--prefix", default="bubu", help=argparse.SUPPRESS)
    parser.add_argument("--tokens", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(asyncio.run(_worker(args))), flush=True)
        return 0

    from tests._controlplane import build
    from tests._controlplane.server import ControlPlane

    variants = [v for v in args.variants.split(",") if v]
    modes = [m == "token" for m in args.token_modes.split(",") if m]
    if any(v.startswith("go-") for v in variants):
        build.ensure(build.INTEROP, log=lambda m: print(m, file=sys.stderr, flush=True))
    cp = ControlPlane(log=lambda m: print(m, file=sys.stderr, flush=True)).start()
    own_dir = tempfile.mkdtemp(prefix="bubu-bench-")
    ns = f"bench-{os.getpid()}"
    results: dict[tuple[str, bool], list[Run]] = {}
    failures: list[str] = []
    try:
        with cp.client() as c:
            c.post("/api/v1/namespaces", json={"metadata": {"name": ns}}).raise_for_status()
            c.post(
                f"/apis/bubustack.io/v1alpha1/namespaces/{ns}/stories",
                json={
                    "apiVersion": "bubustack.io/v1alpha1",
                    "kind": "Story",
                    "metadata": {"name": STORY},
                    "spec": {"steps": [{"name": "start", "type": "condition"}]},
                },
            ).raise_for_status()
        kubeconfig = self_contained_kubeconfig(
            Path(cp.admin_kubeconfig), Path(own_dir) / "admin.kubeconfig"
        )
        env = {
            **os.environ,
            "KUBECONFIG": str(kubeconfig),
            "BUBU_TARGET_STORY_NAMESPACE": ns,
            "BUBU_K8S_OPERATION_TIMEOUT": "120s",
        }
        for key in [k for k in env if k.startswith("BUBU_TRIGGER_")]:
            del env[key]
        workdir = Path(cp.workdir) if cp.workdir else Path("/tmp")
        with operator(cp, workdir) as op:
            pids = [p.pid for p in (op, cp._apiserver, cp._etcd) if p is not None]
            jobs = [(v, t) for t in modes for v in variants]
            print(
                f"{len(jobs)} runs per round x {args.rounds} rounds, {args.calls} triggers each, "
                f"{args.parallel} in flight; load average at start {load()}, "
                f"{os.cpu_count()} CPUs",
                flush=True,
            )
            for rnd in range(args.rounds):
                order = jobs[rnd % len(jobs) :] + jobs[: rnd % len(jobs)]
                for variant, tokens in order:
                    settle(pids)
                    prefix = f"r{rnd}-{variant}-{'t' if tokens else 'n'}"
                    try:
                        run = run_variant(variant, tokens, prefix, args, env)
                    except (RuntimeError, subprocess.TimeoutExpired, ValueError) as exc:
                        # One broken run costs its sample, not the other rounds' numbers.
                        failures.append(f"round {rnd + 1} {variant} {prefix}: {exc}")
                        print(f"  round {rnd + 1} {variant}: FAILED ({exc})"[:600], flush=True)
                        continue
                    results.setdefault((variant, tokens), []).append(run)
                    print(
                        f"  round {rnd + 1} {variant:<15} {'token' if tokens else 'none':<5} "
                        f"{run.rate:6.1f}/s p50 {run.p50:7.1f} ms p99 {run.p99:7.1f} ms "
                        f"CPU {run.cpu_ms:5.2f} ms/trigger  (load {load()})",
                        flush=True,
                    )
                    cleanup(cp, ns)
    finally:
        cp.stop()
        shutil.rmtree(own_dir, ignore_errors=True)
    code = report(results, variants, modes, args)
    if args.json:
        write_medians(Path(args.json), results, modes[0] if modes else False)
    if failures:
        print(f"{len(failures)} run(s) failed and are not in the medians:")
        for line in failures:
            print(f"  {line[:300]}")
    return code


def write_medians(path: Path, results: dict[tuple[str, bool], list[Run]], tokens: bool) -> None:
    """Medians per caller as JSON (what ``bench_vs_go.py`` reads back)."""
    medians = {
        variant: {
            attr: statistics.median(getattr(r, attr) for r in runs)
            for attr in ("rate", "p50", "p99", "cpu_ms")
        }
        | {"rounds": len(runs)}
        for (variant, tok), runs in results.items()
        if tok == tokens
    }
    path.write_text(json.dumps(medians))


def report(
    results: dict[tuple[str, bool], list[Run]],
    variants: list[str],
    modes: list[bool],
    args: argparse.Namespace,
) -> int:
    def med(runs: list[Run], attr: str) -> float:
        return statistics.median(getattr(r, attr) for r in runs)

    short = [f"{v} ({'token' if t else 'none'}): {len(r)}" for (v, t), r in results.items()]
    if any(len(r) < args.rounds for r in results.values()):
        print("rounds measured per caller: " + ", ".join(short))

    print(
        f"\nmedians of {args.rounds} interleaved rounds, {args.calls} triggers, "
        f"{args.parallel} in flight; load average now {load()}"
    )
    header = (
        f"{'caller':<15} {'tokens':<6} {'trig/s':>7} {'x ref':>6} {'p50 ms':>8} {'x ref':>6} "
        f"{'p99 ms':>8} {'CPU ms':>7} {'x ref':>6}"
    )
    print(header)
    missed: list[str] = []
    for tokens in modes:
        ref = results.get((REFERENCE, tokens))
        for variant in variants:
            runs = results.get((variant, tokens))
            if not runs:
                continue
            rate, p50, p99, cpu = (med(runs, a) for a in ("rate", "p50", "p99", "cpu_ms"))
            if ref:
                rr, rp, rc = med(ref, "rate"), med(ref, "p50"), med(ref, "cpu_ms")
                ratios = (f"{rate / rr:6.2f}", f"{p50 / rp:6.2f}", f"{cpu / rc:6.2f}")
            else:
                ratios = ("-", "-", "-")
            print(
                f"{variant:<15} {'token' if tokens else 'none':<6} {rate:7.1f} {ratios[0]:>6} "
                f"{p50:8.1f} {ratios[1]:>6} {p99:8.1f} {cpu:7.2f} {ratios[2]:>6}"
            )
            if ref and variant.startswith("bubu"):
                name = f"{variant} ({'token' if tokens else 'none'})"
                if rate < rr:
                    missed.append(f"{name}: triggers/s {rate:.1f} < {rr:.1f}")
                if p50 > rp:
                    missed.append(f"{name}: p50 {p50:.1f} ms > {rp:.1f} ms")
                if cpu > 2 * rc:
                    missed.append(f"{name}: CPU {cpu:.2f} ms > 2 x {rc:.2f} ms")
    if REFERENCE in variants:
        print(
            "floors (vs go-unthrottled): triggers/s >= 1.0x, p50 <= 1.0x, SDK CPU <= 2.0x: "
            + ("all met" if not missed else "MISSED")
        )
        for line in missed:
            print(f"  missed: {line}")
    return 1 if missed and args.strict else 0


if __name__ == "__main__":
    sys.exit(main())
