"""Benchmark: storage offload and hydration, Python beside Go, on the file store and on S3.

Two operations on a 1 MiB payload (a ~0.95 MiB text field and 1,000 small records):

* dehydrate a 1 MiB output (every part above ``BUBU_MAX_INLINE_SIZE`` goes to the store);
* hydrate and decode a 1 MiB offloaded input (read the refs back, then decode into a typed
  struct, as a batch engram's inputs are).

Each runs ``--iterations`` times on a fresh file store and on SeaweedFS (the ``s3`` test
artifact), in this process for bubu and through ``tests/interop/cmd/storage bench`` (the
operator's ``pkg/storage`` plus the Go SDK's ``UnmarshalFromMap``) for Go, in the same run.

    python benchmarks/bench_storage.py [--iterations 20]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import msgspec

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bubu._runtime.decode import decode  # noqa: E402
from bubu._runtime.env import load_env  # noqa: E402
from bubu._runtime.sources import MappingSource  # noqa: E402
from bubu._storage.manager import StorageManager  # noqa: E402
from tests._controlplane import build  # noqa: E402
from tests._controlplane.s3 import S3Server  # noqa: E402


class BenchInputs(msgspec.Struct):
    document: str
    items: list[dict[str, Any]]


def payload() -> dict[str, Any]:
    # The same shape as the Go program's benchPayload.
    items = [{"id": i, "name": f"item-{i}", "ok": i % 2 == 0} for i in range(1000)]
    return {
        "document": ("lorem ipsum dolor sit amet " * 37000)[: (1 << 20) - 60000],
        "items": items,
    }


async def python_ops(env: dict[str, str], n: int) -> tuple[float, float]:
    m = StorageManager.from_env(load_env(MappingSource(env)))
    data = payload()
    ref: Any = None
    t = time.perf_counter()
    for _ in range(n):
        ref = await m.dehydrate(data, "bench/py-steprun")
    dehydrate = n / (time.perf_counter() - t)
    inputs = {"input": ref}
    t = time.perf_counter()
    for _ in range(n):
        hydrated = await m.hydrate(inputs)
        decoded = decode(hydrated["input"], BenchInputs)
        assert len(decoded.items) == 1000
    hydrate = n / (time.perf_counter() - t)
    await m.aclose()
    return dehydrate, hydrate


def go_ops(bin_dir: Path, env: dict[str, str], n: int) -> tuple[float, float]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "AWS_"))}
    proc = subprocess.run(
        [str(bin_dir / "storage"), "bench", str(n)],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    r = json.loads(proc.stdout)
    return float(r["dehydrate_ops"]), float(r["hydrate_decode_ops"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--iterations", type=int, default=20)
    args = parser.parse_args()
    n = args.iterations
    print(f"load average: {os.getloadavg()}")
    interop = build.ensure(build.INTEROP)
    size = len(msgspec.json.encode(payload()))
    print(f"payload {size} bytes, {n} iterations each")
    server = S3Server(build.ensure(build.S3))
    server.start()
    try:
        with tempfile.TemporaryDirectory() as py_dir, tempfile.TemporaryDirectory() as go_dir:
            stores = {
                "file": (
                    {"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": py_dir},
                    {"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": go_dir},
                ),
                "s3": (server.env(), server.env()),
            }
            print(f"{'store':6s} {'operation':28s} {'bubu ops/s':>12s} {'Go ops/s':>12s}")
            for store, (py_env, go_env) in stores.items():
                py = asyncio.run(python_ops(py_env, n))
                go = go_ops(interop, go_env, n)
                for i, op in enumerate(("dehydrate 1 MiB output", "hydrate+decode 1 MiB input")):
                    print(f"{store:6s} {op:28s} {py[i]:12.1f} {go[i]:12.1f}")
    finally:
        server.stop()
    print(f"load average: {os.getloadavg()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
