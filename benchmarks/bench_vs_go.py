"""Benchmark: the Go SDK's echo engram and bubu's, side by side through the same Go connector.

Issue 11, deliverable 4. One Go connector (``tests/interop/cmd/connector``, tractatus's Go code)
feeds one echo engram: the Go SDK's (``tests/interop/cmd/echo``, ``sdk.StartStreaming``) or
bubu's (``benchmarks/_echo_engram.py``, ``bubu.run(bubu.start_streaming(...))``), started the way
the operator starts one (``BUBU_TRANSPORT_BINDING`` from the connector). Every case runs for
both SDKs in the same round, in alternating order, a fresh connector and engram each time:

* payload: ``json`` (a 1 KiB JSON document, the payload Struct of a JSON message) or ``audio``
  (20 ms of PCM16 at 16 kHz mono: a 640-byte audio frame);
* window: 64 or 1 packets in flight (the connector's ``--window``);
* placement: ``pinned`` (connector on CPU 0, engram on CPU 1, through ``taskset``) or
  ``unpinned``.

Measured per run: msg/s and the send-to-echo round trip p50/p99 (the connector's ``bench``
command: ``--messages`` copies queued as the window moves, timed from the first send to the
last echo), the engram's CPU per message (its threads' nanoseconds on CPU, ``schedstat``,
across the timed part: clock ticks would round a quick run's few hundred echoes to 0), its idle
RSS (``VmRSS`` one second after the handshake, before any traffic) and spawn-to-handshake
(process spawn until the connector has both its Data and Control streams). A warm-up of
``--warmup`` messages precedes the timed part. The table shows medians over ``--rounds``
interleaved rounds and the bubu/Go ratios.

Trigger submission: ``bench_trigger_sdks.py`` (the real operator; bubu's ``start_story`` and the
Go SDK's ``sdk.StartStory`` as shipped, 20 requests/s client limit included, and with that limit
lifted) is run and its medians read back; the floor compares with the Go SDK as shipped.

Floors (issue 11; medians of interleaved rounds): JSON msg/s >= 2.5x Go (window 64); audio
msg/s >= 1.0x Go (window 64, pinned); window-1 audio p50 <= Go's; spawn-to-handshake <= 2x Go;
idle RSS <= Go's; triggers/s >= 1.5x Go (as shipped).

    flock /tmp/bubu-bench.lock python benchmarks/bench_vs_go.py [--rounds 5] [--messages 5000]
        [--quick] [--no-triggers] [--json out.json] [--strict]

The Python engrams run on a small cached venv (``engram_python``): this interpreter's
dependency directories without the ``.pth`` start-up hooks this machine may have (a container
image runs none), so spawn-to-handshake is what a deployed engram pays.

``--quick`` is a smoke run (few messages, one round, a short trigger run). ``--baseline DIR``
runs a third engram, ``bubu-base``, on the bubu package in ``DIR`` (say, a ``git worktree`` of
an older commit): before/after numbers of a change in the same interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import hashlib
import json
import os
import signal
import statistics
import subprocess
import sys
import sysconfig
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _proc import cpu_between, thread_cpu  # noqa: E402
from bench_stream_echo import json_document  # noqa: E402  (the same 1 KiB document)

PAYLOADS = ("json", "audio")
WINDOWS = (64, 1)
PLACEMENTS = ("pinned", "unpinned")
SDKS = ("go", "bubu")
BASELINE = "bubu-base"  # --baseline: another bubu source tree, for before/after numbers
CONNECTOR_CPU, ENGRAM_CPU = 0, 1
STEP = "echo"
#: The Go SDK drops a receipt when its control queue (this many entries, 16 by default) is full,
#: which at window 64 strands packets in the connector's window for good; both SDKs get room.
BUFFER_ENV = {"BUBU_GRPC_CHANNEL_BUFFER_SIZE": "256"}


@dataclass
class Run:
    """One engram's run of one case."""

    rate: float  # msg/s
    p50_us: float
    p99_us: float
    cpu_us: float  # engram CPU per message
    connector_cpu_us: float  # the Go connector's, for where a bound is
    rss_mb: float  # idle, after the handshake
    handshake_ms: float  # spawn until both streams are open at the connector


ENGRAM_VENVS = (
    Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "bubu" / "engram-venv"
)


def engram_python() -> str:
    """The interpreter the Python engrams run on: deployed conditions, this machine's packages.

    An engram's container installs bubu and its dependencies into a plain ``site-packages``; the
    interpreter running this benchmark may carry start-up hooks of its own (``.pth`` files that
    execute code: a sandbox's CA injection importing ``certifi``, setuptools' distutils shim),
    which every engram spawn would pay in its spawn-to-handshake. So the engrams run on a venv
    made once (``python -m venv --without-pip``, cached under ``ENGRAM_VENVS`` by interpreter and
    dependency directories) whose ``site-packages`` holds one ``.pth`` of plain paths: this
    interpreter's dependency directories. A plain path line adds its directory to ``sys.path``
    without executing the ``.pth`` files in it. bubu itself comes from ``PYTHONPATH`` (the tree
    under test), as before.
    """
    paths = sysconfig.get_paths()
    deps = list(dict.fromkeys(os.path.realpath(paths[k]) for k in ("purelib", "platlib")))
    key = hashlib.sha256("\n".join([sys.version, sys.executable, *deps]).encode()).hexdigest()
    venv = ENGRAM_VENVS / key[:16]
    python = venv / "bin" / "python"
    if python.exists():
        return str(python)
    ENGRAM_VENVS.mkdir(parents=True, exist_ok=True)
    # built aside and renamed into place: a concurrent run sees no half-made venv
    with tempfile.TemporaryDirectory(dir=ENGRAM_VENVS) as tmp:
        staged = Path(tmp) / "venv"
        subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(staged)], check=True)
        site = subprocess.run(
            [
                str(staged / "bin" / "python"),
                "-c",
                "import sysconfig; print(sysconfig.get_paths()['purelib'])",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.strip()
        # the venv's own site-packages path, under the staging name until the rename below
        Path(site, "_bench_engram_deps.pth").write_text("".join(d + "\n" for d in deps))
        with contextlib.suppress(OSError):  # another run got there first: use its venv
            staged.rename(venv)
    return str(python)


def packet(payload: str) -> str:
    """The base64 ``DataResponse`` the connector copies for the engram."""
    from bubu._runtime.messages import AudioFrame, StreamMessage
    from bubu._transport import codec

    if payload == "json":
        msg = StreamMessage.json(json_document())
    else:
        pcm = bytes((i * 37) % 256 for i in range(640))  # 20 ms x 16 kHz x 2 bytes
        msg = StreamMessage(
            audio=AudioFrame(pcm=pcm, sample_rate_hz=16000, channels=1, codec="pcm16")
        )
    return base64.b64encode(codec.to_pb_data_response(msg).SerializeToString()).decode()


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"no VmRSS for {pid}")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def engram_env(conn: Any) -> dict[str, str]:
    """The environment an engram starts with: the operator's binding for ``STEP`` on ``conn``,
    the benchmark's buffer size, and nothing of this process but ``PATH`` and ``HOME``."""
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/"),
        **BUFFER_ENV,
        **conn.binding_env(STEP),
    }


async def handshake_after(conn: Any, mark: int, spawned_ns: int) -> float:
    """Milliseconds from ``spawned_ns`` until the connector has both of the engram's streams
    (Data and Control), from its events after index ``mark``."""
    opened: dict[str, int] = {}
    for _ in range(2):
        ev = await conn.wait_event(
            lambda e: e["ev"] == "stream" and e["stream"] not in opened, after=mark
        )
        opened[ev["stream"]] = int(ev["t"])
    return (max(opened.values()) - spawned_ns) / 1e6


async def run_case(
    bin_dir: Path, sdk: str, payload: str, window: int, placement: str, args: argparse.Namespace
) -> Run:
    from tests.interop._peers import GoConnector

    pinned = placement == "pinned"
    conn = GoConnector(
        bin_dir,
        [STEP],
        env=BUFFER_ENV,
        args=["--window", str(window), "--quiet"],
        launcher=["taskset", "-c", str(CONNECTOR_CPU)] if pinned else None,
    )
    async with conn:
        env = engram_env(conn)
        program = (
            [str(bin_dir / "echo")]
            if sdk == "go"
            else [args.engram_python, str(HERE / "_echo_engram.py")]
        )
        if sdk == BASELINE:
            env["PYTHONPATH"] = args.baseline
        elif sdk != "go":
            env["PYTHONPATH"] = str(HERE.parent)  # this checkout's bubu, installed or not
        launcher = ["taskset", "-c", str(ENGRAM_CPU)] if pinned else []
        mark = len(conn.events)
        spawned = time.time_ns()
        proc = await asyncio.create_subprocess_exec(
            *launcher,
            *program,
            env=env,
            stdout=asyncio.subprocess.DEVNULL,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        try:
            handshake_ms = await handshake_after(conn, mark, spawned)
            await asyncio.sleep(1.0)  # idle: whatever start-up left behind is settled
            idle_rss = rss_mb(proc.pid)
            data = packet(payload)
            if args.warmup:
                await conn.command("bench", step=STEP, packet=data, value=args.warmup, limit=120)
            hub_pid = int(conn.events[0]["pid"])
            cpu0, hub0 = thread_cpu(proc.pid), thread_cpu(hub_pid)
            done = await conn.command(
                "bench", step=STEP, packet=data, value=args.messages_for(window), limit=600
            )
            cpu = cpu_between(cpu0, thread_cpu(proc.pid))
            hub_cpu = cpu_between(hub0, thread_cpu(hub_pid))
            # every echo was receipted with the size of what the connector sent (its bench
            # copies go out pre-encoded: a wrong byte count would show here)
            counters = (await conn.stats())[STEP]["counters"]
            if counters["receiptSizeErrors"] or counters["receiptsUnmatched"]:
                raise RuntimeError(f"receipts did not match the packets sent: {counters}")
        except BaseException:
            if proc.stderr is not None and proc.returncode is not None:
                sys.stderr.write((await proc.stderr.read()).decode(errors="replace")[-2000:])
            raise
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            await proc.wait()
    n = int(done["messages"])
    return Run(
        rate=float(done["rate"]),
        p50_us=float(done["p50_us"]),
        p99_us=float(done["p99_us"]),
        cpu_us=cpu / n * 1e6,
        connector_cpu_us=hub_cpu / n * 1e6,
        rss_mb=idle_rss,
        handshake_ms=handshake_ms,
    )


def run_triggers(args: argparse.Namespace) -> dict[str, Any] | None:
    """bench_trigger_sdks.py (Go as shipped, Go unthrottled, bubu) and its medians."""
    with tempfile.TemporaryDirectory(prefix="bubu-vs-go-") as tmp:
        out = Path(tmp) / "triggers.json"
        cmd = [
            sys.executable,
            str(HERE / "bench_trigger_sdks.py"),
            "--variants",
            "go-shipped,go-unthrottled,bubu-out",
            "--token-modes",
            "none",
            "--rounds",
            str(args.trigger_rounds),
            "--calls",
            str(args.trigger_calls),
            "--json",
            str(out),
        ]
        print("$ " + " ".join(cmd[1:]), flush=True)
        rc = subprocess.call(cmd)
        if rc != 0 or not out.exists():
            print(f"trigger benchmark failed (exit {rc})", flush=True)
            return None
        result: dict[str, Any] = json.loads(out.read_text())
        return result


def median(runs: list[Run], attr: str) -> float:
    return float(statistics.median(getattr(r, attr) for r in runs))


def report(
    results: dict[tuple[str, str, int, str], list[Run]],
    triggers: dict[str, Any] | None,
    args: argparse.Namespace,
) -> tuple[list[tuple[str, bool, str]], dict[str, Any]]:
    print(
        f"\nmedians of {args.rounds} interleaved round(s); load average now {load()}, "
        f"{os.cpu_count()} CPUs; ratio = bubu / Go"
    )
    print(
        f"{'payload':<6} {'win':>3} {'placement':<9} {'sdk':<9} {'msg/s':>8} {'x':>5} "
        f"{'CPU us/msg':>10} {'x':>5} {'p50 us':>8} {'x':>5} {'p99 us':>8} {'x':>5}"
    )
    summary: dict[str, Any] = {"cases": {}}
    for payload in PAYLOADS:
        for window in WINDOWS:
            for placement in PLACEMENTS:
                go = results.get(("go", payload, window, placement))
                for sdk in args.sdks:
                    runs = results.get((sdk, payload, window, placement))
                    if not runs:
                        continue
                    vals = {a: median(runs, a) for a in ("rate", "cpu_us", "p50_us", "p99_us")}
                    ratio = {
                        a: (
                            f"{vals[a] / median(go, a):5.2f}"
                            if go and sdk != "go" and median(go, a)
                            else ""
                        )
                        for a in vals
                    }
                    print(
                        f"{payload:<6} {window:>3} {placement:<9} {sdk:<9} {vals['rate']:8.0f} "
                        f"{ratio['rate']:>5} {vals['cpu_us']:10.1f} {ratio['cpu_us']:>5} "
                        f"{vals['p50_us']:8.0f} {ratio['p50_us']:>5} {vals['p99_us']:8.0f} "
                        f"{ratio['p99_us']:>5}"
                    )
                    summary["cases"][f"{sdk}/{payload}/{window}/{placement}"] = vals

    def all_runs(sdk: str) -> list[Run]:
        return [r for (s, *_), runs in results.items() if s == sdk for r in runs]

    start: dict[str, dict[str, float]] = {}
    print(f"\n{'sdk':<9} {'idle RSS MB':>11} {'spawn-to-handshake ms':>22}  (medians of all runs)")
    for sdk in args.sdks:
        runs = all_runs(sdk)
        if runs:
            start[sdk] = {
                "rss_mb": median(runs, "rss_mb"),
                "handshake_ms": median(runs, "handshake_ms"),
            }
            print(f"{sdk:<9} {start[sdk]['rss_mb']:11.1f} {start[sdk]['handshake_ms']:22.1f}")
    summary["startup"] = start

    floors: list[tuple[str, bool, str]] = []

    def ratio(payload: str, window: int, placement: str, attr: str) -> float | None:
        go = results.get(("go", payload, window, placement))
        bubu = results.get(("bubu", payload, window, placement))
        if not go or not bubu or not median(go, attr):
            return None  # nothing to compare against
        return median(bubu, attr) / median(go, attr)

    def floor(name: str, value: float | None, ok: bool, shown: str) -> None:
        if value is not None:
            floors.append((name, ok, shown))

    for placement in PLACEMENTS:
        r = ratio("json", 64, placement, "rate")
        floor(
            f"JSON msg/s >= 2.5x Go (window 64, {placement})",
            r,
            bool(r and r >= 2.5),
            f"{r or 0:.2f}x",
        )
    r = ratio("audio", 64, "pinned", "rate")
    floor("audio msg/s >= 1.0x Go (window 64, pinned)", r, bool(r and r >= 1.0), f"{r or 0:.2f}x")
    for placement in PLACEMENTS:
        r = ratio("audio", 1, placement, "p50_us")
        floor(
            f"window-1 audio p50 <= Go's ({placement})", r, bool(r and r <= 1.0), f"{r or 0:.2f}x"
        )
    if "go" in start and "bubu" in start:
        r = start["bubu"]["handshake_ms"] / start["go"]["handshake_ms"]
        floor("spawn-to-handshake <= 2x Go", r, r <= 2.0, f"{r:.2f}x")
        r = start["bubu"]["rss_mb"] / start["go"]["rss_mb"]
        floor("idle RSS <= Go's", r, r <= 1.0, f"{r:.2f}x")
    if triggers:
        rates = {v: triggers[v]["rate"] for v in triggers}
        print("\ntriggers/s (median): " + ", ".join(f"{v} {rate:.1f}" for v, rate in rates.items()))
        if "bubu-out" in rates and "go-shipped" in rates:
            r = rates["bubu-out"] / rates["go-shipped"]
            floor("triggers/s >= 1.5x Go (as shipped)", r, r >= 1.5, f"{r:.2f}x")
        if "bubu-out" in rates and "go-unthrottled" in rates:
            print(
                f"bubu / Go unthrottled: {rates['bubu-out'] / rates['go-unthrottled']:.2f}x "
                "(no floor in issue 11)"
            )
        summary["triggers"] = triggers
    print("\nfloors:")
    for name, ok, shown in floors:
        print(f"  {'PASS' if ok else 'MISS'}  {name}: {shown}")
    summary["floors"] = [{"floor": n, "pass": ok, "value": v} for n, ok, v in floors]
    return floors, summary


async def run_all(args: argparse.Namespace) -> dict[tuple[str, str, int, str], list[Run]]:
    from tests._controlplane import build

    bin_dir = Path(build.ensure(build.INTEROP, log=lambda m: print(m, file=sys.stderr)))
    payloads = [p for p in args.payloads.split(",") if p]
    windows = [int(w) for w in args.windows.split(",") if w]
    placements = [p for p in args.placements.split(",") if p]
    if len(os.sched_getaffinity(0)) < 2:
        placements = [p for p in placements if p != "pinned"]
        print("fewer than 2 CPUs: no pinned runs", flush=True)
    cases = [(p, w, pl) for p in payloads for w in windows for pl in placements]
    results: dict[tuple[str, str, int, str], list[Run]] = {}
    failures: list[str] = args.failures
    print(
        f"{len(cases)} cases x {len(args.sdks)} SDKs x {args.rounds} rounds; "
        f"{args.messages} messages "
        f"(window 1: {args.messages_for(1)}), warm-up {args.warmup}; load average {load()}",
        flush=True,
    )
    for rnd in range(args.rounds):
        for i, (payload, window, placement) in enumerate(cases):
            order = args.sdks if (rnd + i) % 2 == 0 else args.sdks[::-1]
            for sdk in order:
                try:
                    run = await run_case(bin_dir, sdk, payload, window, placement, args)
                except (TimeoutError, AssertionError, RuntimeError) as exc:
                    # one broken run costs its sample, not the other rounds' numbers
                    failures.append(
                        f"round {rnd + 1} {payload} w{window} {placement} {sdk}: {exc!r}"
                    )
                    print(f"  {failures[-1][:400]}", flush=True)
                    continue
                results.setdefault((sdk, payload, window, placement), []).append(run)
                print(
                    f"  round {rnd + 1} {payload:<5} w{window:<2} {placement:<8} {sdk:<9} "
                    f"{run.rate:8.0f}/s p50 {run.p50_us:7.0f} us p99 {run.p99_us:7.0f} us "
                    f"CPU {run.cpu_us:6.1f} us/msg (hub {run.connector_cpu_us:5.1f}) "
                    f"RSS {run.rss_mb:5.1f} MB "
                    f"start {run.handshake_ms:6.1f} ms (load {load()})",
                    flush=True,
                )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--messages", type=int, default=5000, help="per timed run, window 64")
    parser.add_argument("--messages-window1", type=int, default=1500)
    parser.add_argument("--warmup", type=int, default=300)
    parser.add_argument("--payloads", default=",".join(PAYLOADS))
    parser.add_argument("--windows", default=",".join(map(str, WINDOWS)))
    parser.add_argument("--placements", default=",".join(PLACEMENTS))
    parser.add_argument("--no-triggers", action="store_true")
    parser.add_argument("--trigger-rounds", type=int, default=3)
    parser.add_argument("--trigger-calls", type=int, default=300)
    parser.add_argument(
        "--baseline",
        help="a bubu source tree (the directory holding bubu/) run as a third engram, bubu-base",
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: few messages, one round")
    parser.add_argument("--json", help="write the medians and floors here")
    parser.add_argument("--strict", action="store_true", help="exit 1 when a floor is missed")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.messages, args.messages_window1, args.warmup = 1, 300, 100, 50
        args.trigger_rounds, args.trigger_calls = 1, 20
    args.failures = []
    args.engram_python = engram_python()
    args.sdks = (*SDKS, BASELINE) if args.baseline else SDKS
    args.messages_for = lambda w: args.messages if w > 1 else args.messages_window1

    # SIGTERM (a `timeout`, a CI cancel) unwinds like Ctrl-C, so the connector and engram of the
    # run in progress (own sessions, so a signal to this process group misses them) are killed.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    results = asyncio.run(run_all(args))
    triggers = None if args.no_triggers else run_triggers(args)
    floors, summary = report(results, triggers, args)
    summary["runs"] = {"/".join(map(str, k)): [asdict(r) for r in v] for k, v in results.items()}
    summary["failures"] = args.failures
    if args.failures:
        print(f"{len(args.failures)} run(s) failed and are not in the medians:")
        for line in args.failures:
            print(f"  {line[:300]}")
    if args.json:
        Path(args.json).write_text(json.dumps(summary, indent=1))
    return 1 if args.strict and not all(ok for _, ok, _ in floors) else 0


if __name__ == "__main__":
    sys.exit(main())
