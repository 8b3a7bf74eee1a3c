"""Benchmark: ``bubu run examples/hello.py`` end to end (floor: median <= 400 ms).

Times the whole local run as a user sees it: process start, ``import bubu``, loading the
engram, the batch lifecycle with the in-memory StepRun, printing the JSON result, exit.
Prints the median, min and max; exits 1 if the median misses the floor or a run fails.

    python benchmarks/bench_hello_batch.py [--runs 10]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

FLOOR_MS = 400.0
ROOT = Path(__file__).resolve().parents[1]
COMMAND = [sys.executable, "-m", "bubu", "run", str(ROOT / "examples" / "hello.py"),
           "--inputs", '{"name": "Ada"}']


def run_once(env: dict[str, str]) -> float:
    started = time.perf_counter()
    out = subprocess.run(COMMAND, check=False, capture_output=True, text=True, env=env, cwd=ROOT)
    elapsed = (time.perf_counter() - started) * 1000
    if out.returncode != 0 or json.loads(out.stdout) != {"greeting": "Hello, Ada!"}:
        raise SystemExit(f"FAIL: bubu run exited {out.returncode}: {out.stderr.strip()}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    run_once(env)  # warm the filesystem cache and .pyc files
    samples = [run_once(env) for _ in range(args.runs)]
    median = statistics.median(samples)
    print(f"bubu run examples/hello.py: median {median:.1f} ms, min {min(samples):.1f} ms, "
          f"max {max(samples):.1f} ms over {args.runs} runs (floor {FLOOR_MS:.0f} ms)")
    if median > FLOOR_MS:
        print(f"FAIL: median {median:.1f} ms > {FLOOR_MS:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
