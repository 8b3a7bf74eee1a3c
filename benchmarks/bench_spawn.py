"""Benchmark: spawn-to-handshake of a streaming engram, and the part no Python SDK avoids.

The start-up half of ``bench_vs_go.py`` on its own, with enough spawns for a steady median and
a floor to compare with. Each spawn gets a fresh Go connector (``tests/interop/cmd/connector``);
the time runs from the engram's process spawn until the connector has both its Data and Control
streams, as in ``bench_vs_go.py``. Variants, interleaved in alternating order:

* ``go``: the Go SDK's echo engram (``tests/interop/cmd/echo``);
* ``bubu``: ``benchmarks/_echo_engram.py`` on this tree, on the engram interpreter of
  ``bench_vs_go.engram_python`` (this machine's packages, none of its ``.pth`` start-up hooks);
* ``bubu-base`` (``--baseline DIR``): the same on another bubu tree, for before/after numbers;
* ``bubu-host`` (``--host-python PATH``): bubu on that interpreter as it is, its site hooks
  included (what the engram paid before ``engram_python``);
* ``floor``: ``benchmarks/_floor_engram.py``: the interpreter, ``import asyncio, grpclib.client``,
  the binding's JSON and the two calls, no SDK. Its own marks split it into the interpreter's
  start (spawn to the script's first line), ``import asyncio``, ``import grpclib.client`` and
  the rest.

Each spawn also records the engram's CPU time until the handshake (every thread's
``schedstat``), steadier than the wall time on a shared machine.

    flock /tmp/bubu-bench.lock python benchmarks/bench_spawn.py [--spawns 15]
        [--baseline DIR] [--host-python PATH] [--json out.json]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import signal
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from bench_vs_go import (  # noqa: E402
    BUFFER_ENV,
    ROOT,
    STEP,
    engram_env,
    engram_python,
    handshake_after,
    load,
)


def cpu_ms(pid: int) -> float:
    """CPU time of every thread of ``pid`` so far (``/proc/<pid>/task/*/schedstat``, ns)."""
    total = 0
    for task in Path(f"/proc/{pid}/task").iterdir():
        with contextlib.suppress(OSError):
            total += int((task / "schedstat").read_text().split()[0])
    return total / 1e6


async def spawn_once(bin_dir: Path, variant: str, args: argparse.Namespace) -> dict[str, float]:
    from tests.interop._peers import GoConnector

    conn = GoConnector(bin_dir, [STEP], env=BUFFER_ENV, args=["--window", "1", "--quiet"])
    async with conn:
        env = engram_env(conn)
        if variant == "go":
            program = [str(bin_dir / "echo")]
        elif variant == "floor":
            program = [args.engram_python, str(HERE / "_floor_engram.py")]
        else:
            python = args.host_python if variant == "bubu-host" else args.engram_python
            program = [python, str(HERE / "_echo_engram.py")]
            env["PYTHONPATH"] = args.baseline if variant == "bubu-base" else str(ROOT)
        mark = len(conn.events)
        spawned = time.time_ns()
        proc = await asyncio.create_subprocess_exec(
            *program,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            result = {"handshake_ms": await handshake_after(conn, mark, spawned)}
            # the engram's own CPU up to now (it idles after the handshake): steadier than the
            # wall time when other work shares the machine
            result["cpu_ms"] = cpu_ms(proc.pid)
            if variant == "floor":
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), 10)
                started, imported_asyncio, imported = map(int, line.decode().split()[1:])
                result["interpreter_ms"] = (started - spawned) / 1e6
                result["asyncio_ms"] = (imported_asyncio - started) / 1e6
                result["grpclib_ms"] = (imported - imported_asyncio) / 1e6
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    return result


async def run_all(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    from tests._controlplane import build

    bin_dir = Path(build.ensure(build.INTEROP, log=lambda m: print(m, file=sys.stderr)))
    results: dict[str, list[dict[str, float]]] = {v: [] for v in args.variants}
    print(f"{args.spawns} spawns x {', '.join(args.variants)}; load average {load()}", flush=True)
    for i in range(args.spawns):
        for variant in args.variants if i % 2 == 0 else args.variants[::-1]:
            run = await spawn_once(bin_dir, variant, args)
            results[variant].append(run)
        print(
            f"  spawn {i + 1}: "
            + ", ".join(f"{v} {results[v][-1]['handshake_ms']:.1f}" for v in args.variants)
            + f" ms (load {load()})",
            flush=True,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--spawns", type=int, default=15)
    parser.add_argument("--baseline", help="another bubu tree, run as bubu-base")
    parser.add_argument("--host-python", help="an interpreter run as is, as bubu-host")
    parser.add_argument("--json", help="write the medians and every spawn here")
    args = parser.parse_args()
    args.engram_python = engram_python()
    args.variants = ["go", "bubu"]
    if args.baseline:
        args.variants.append("bubu-base")
    if args.host_python:
        args.variants.append("bubu-host")
    args.variants.append("floor")
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(run_all(args))
    medians = {
        v: {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        for v, runs in results.items()
    }
    go = medians["go"]["handshake_ms"]
    print(f"\nmedians of {args.spawns} spawns; load average now {load()}, {os.cpu_count()} CPUs")
    for v, m in medians.items():
        # the quartile and minimum too: on a shared machine a burst of load lifts the median
        low = sorted(r["handshake_ms"] for r in results[v])
        print(
            f"  {v:<9} {m['handshake_ms']:7.1f} ms  {m['handshake_ms'] / go:5.2f}x Go  "
            f"(first quartile {low[len(low) // 4]:.1f}, min {low[0]:.1f}); "
            f"engram CPU {m['cpu_ms']:.1f} ms"
        )
    floor = medians["floor"]
    rest = floor["handshake_ms"] - floor["interpreter_ms"] - floor["asyncio_ms"]
    rest -= floor["grpclib_ms"]
    print(
        f"floor split: interpreter start {floor['interpreter_ms']:.1f} ms, "
        f"import asyncio {floor['asyncio_ms']:.1f} ms, "
        f"import grpclib.client {floor['grpclib_ms']:.1f} ms, "
        f"binding + connect + two calls {rest:.1f} ms; 2x Go = {2 * go:.1f} ms"
    )
    if args.json:
        Path(args.json).write_text(json.dumps({"medians": medians, "runs": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
