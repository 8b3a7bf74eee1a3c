"""Benchmark: ``import bubu`` wall time in a fresh interpreter (floor: median <= 150 ms).

Each run starts a new Python process and times only the ``import bubu`` statement inside it,
so interpreter start-up is excluded. Prints the median, min and max; exits 1 if the median
misses the floor.

    python benchmarks/bench_import.py [--runs 15]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys

FLOOR_MS = 150.0
SNIPPET = (
    "import time; t = time.perf_counter(); import bubu; print((time.perf_counter() - t) * 1000)"
)


def measure(runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        out = subprocess.run(
            [sys.executable, "-c", SNIPPET], capture_output=True, text=True, check=True
        )
        samples.append(float(out.stdout.strip()))
    return samples


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    samples = measure(args.runs)
    median = statistics.median(samples)
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    print(
        f"import bubu: median {median:.1f} ms, min {min(samples):.1f} ms, "
        f"max {max(samples):.1f} ms over {args.runs} runs (floor {FLOOR_MS:.0f} ms; "
        f"load average {load})"
    )
    if median > FLOOR_MS:
        print(f"FAIL: median {median:.1f} ms > {FLOOR_MS:.0f} ms")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
