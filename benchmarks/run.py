"""Run every benchmarks/bench_*.py in turn (or the ones named on the command line)."""

from __future__ import annotations

import pathlib
import subprocess
import sys


def main(argv: list[str]) -> int:
    here = pathlib.Path(__file__).parent
    names = argv or sorted(p.name for p in here.glob("bench_*.py"))
    failed = 0
    for name in names:
        print(f"== {name}", flush=True)
        rc = subprocess.call([sys.executable, str(here / name)])
        failed += rc != 0
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
