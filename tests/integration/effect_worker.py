"""A separate process that runs ``execute_effect_once`` as an engram pod would (effects tests).

    python -m tests.integration.effect_worker --kubeconfig K --out FILE race --keys 100 \
        [--seed 7 --start-at <epoch seconds>]
    python -m tests.integration.effect_worker --kubeconfig K --out FILE hold --key k

The StepRun identity comes from ``BUBU_STEPRUN_NAME``/``BUBU_STEPRUN_NAMESPACE`` (and the lease
from ``BUBU_EFFECT_LEASE_DURATION``). Every execution of an effect body appends one line
``<key> <pid>`` to ``--out`` (flushed and fsynced), so the test can count side effects across
processes, including ones that were SIGKILLed. In ``race`` mode, workers given the same
``--seed`` walk the keys in the same order and ``--start-at`` makes them begin at the same
instant, so they contend on each key at the same time instead of one trailing the other.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import time

from bubu import _scope
from bubu._effects import execute_effect_once
from bubu._k8s.client import KubeClient
from bubu._runtime.sources import OsEnviron
from bubu.errors import EffectAlreadyRecordedError


def side_effect(out: str, key: str) -> None:
    with open(out, "a", encoding="utf-8") as fh:
        fh.write(f"{key} {os.getpid()}\n")
        fh.flush()
        os.fsync(fh.fileno())


async def race(
    keys: int, out: str, parallel: int, seed: int | None, start_at: float | None
) -> dict[str, int]:
    order = [f"effect-{i}" for i in range(keys)]
    random.Random(seed).shuffle(order)
    counts = {"ran": 0, "already": 0, "in_progress": 0}
    sem = asyncio.Semaphore(parallel)

    async def one(key: str) -> None:
        async def body() -> dict[str, str]:
            side_effect(out, key)
            return {"by": str(os.getpid())}

        async with sem:
            try:
                await execute_effect_once(key, body)
                counts["ran"] += 1
            except EffectAlreadyRecordedError as exc:
                counts["already"] += 1
                counts["in_progress"] += int(exc.in_progress)

    if start_at is not None:
        await asyncio.sleep(max(0.0, start_at - time.time()))
    await asyncio.gather(*(one(k) for k in order))
    return counts


async def hold(key: str, out: str) -> dict[str, int]:
    async def body() -> None:
        side_effect(out, key)
        await asyncio.sleep(3600)  # killed (SIGKILL) by the test while holding the lease

    await execute_effect_once(key, body)
    return {"ran": 1}


async def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.integration.effect_worker")
    parser.add_argument("--kubeconfig", required=True)
    parser.add_argument("--out", required=True)
    sub = parser.add_subparsers(dest="mode", required=True)
    r = sub.add_parser("race")
    r.add_argument("--keys", type=int, default=100)
    r.add_argument("--parallel", type=int, default=8)
    r.add_argument("--seed", type=int, default=None)
    r.add_argument("--start-at", type=float, default=None)
    h = sub.add_parser("hold")
    h.add_argument("--key", required=True)
    args = parser.parse_args()
    namespace = os.environ["BUBU_STEPRUN_NAMESPACE"]
    async with await KubeClient.connect(kubeconfig=args.kubeconfig, namespace=namespace) as kube:
        with _scope.activate(_scope.RunScope(source=OsEnviron(), kube=kube)):
            if args.mode == "race":
                result = await race(args.keys, args.out, args.parallel, args.seed, args.start_at)
            else:
                result = await hold(args.key, args.out)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
