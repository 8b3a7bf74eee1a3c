"""Streaming echo benchmark: the SDK against a bare grpclib + protobuf echo, same run, same peer.

Topology (docs/performance.md#ceiling): a *connector* process serves
``TransportConnectorService`` on loopback TCP and feeds ``DataResponse`` packets carrying a 1 KB
JSON document (envelope frame + payload Struct, as a Go connector sends them) with 64 in flight;
an *engram* process echoes them back on the Data stream. The connector measures messages/s and
the send-to-echo latency (p50/p99). The engram is either

* ``bare``: a grpclib client that echoes each packet with protobuf only (the ceiling), or
* ``sdk``: ``bubu.start_streaming`` with an echo engram (handshake, validation both ways,
  decode to ``StreamMessage``, ``done()`` receipts on Control, encode, validation).

Both use the same connector code, so the only difference is the engram side. The two modes
alternate for ``--rounds`` rounds; the throughput ratio is the median of the per-round ratios
(the machine is shared, so adjacent rounds see similar load). The CPU each process spends per
message, counted from the first packet (start-up, imports and the handshake excluded), the load
average and the CPU time the hypervisor took from this VM (``steal`` in /proc/stat) are printed
too: on a busy host the throughput is partly scheduling-bound (a vCPU taken away for tens of
milliseconds stalls the pipeline), while the engram CPU per message is the SDK's real cost. The
payload Struct the hub needs for every JSON message is written by the compiled writer
(``bubu/_transport/_structwire.c``) when the install built it; the bench says which, and
``--pure-python`` measures the Python writer instead.
Also measured: the RSS of an idle streaming engram (connected, no traffic).

Floors (exit status 1 when missed): SDK throughput >= 70% of bare; idle RSS <= 60 MB.

Usage: ``python benchmarks/bench_stream_echo.py [--messages 20000] [--rounds 7] [--pure-python]``
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

THROUGHPUT_FLOOR = 0.70
RSS_FLOOR_MB = 60.0
WINDOW = 64
PURE_PYTHON_ENV = "BUBU_BENCH_PURE_PYTHON"


def json_document() -> dict[str, Any]:
    """The 1 KiB JSON document of the streaming benchmarks (bench_vs_go sends it too)."""
    doc: dict[str, Any] = {
        "id": "c0a8012e-7d1f-4b5e-9a51-3f0e6f0b9a11",
        "kind": "order.created",
        "customer": {"name": "Ada Lovelace", "email": "ada@example.com", "tier": "gold"},
        "items": [
            {"sku": f"SKU-{i:04d}", "qty": i + 1, "price": 9.99 + i, "tags": ["a", "b"]}
            for i in range(6)
        ],
        "total": 123.45,
        "paid": True,
        "notes": None,
        "address": {"street": "12 Analytical Way", "city": "London", "zip": "NW1 2DB"},
    }
    filler = 1024 - len(json.dumps(doc, separators=(",", ":")))
    doc["pad"] = "x" * max(filler - 10, 0)
    return doc


# -- connector process -----------------------------------------------------------------------


async def connector_main(mode: str, messages: int, port_file: str, idle: float) -> None:
    from grpclib.const import Cardinality, Handler
    from grpclib.server import Server

    from bubu._gen.transport.v1 import transport_pb2 as pb
    from bubu._runtime.messages import StreamMessage
    from bubu._transport import codec

    template = codec.to_pb_data_response(StreamMessage.json(json_document()))
    template.envelope.stream_id = "bench/run/step"
    encoded_size = template.ByteSize()
    ready = asyncio.Event()
    finished = asyncio.Event()
    result: dict[str, Any] = {"packet_bytes": encoded_size}

    async def control(stream: Any) -> None:
        await stream.send_message(
            codec.control_response("connector.ready", {"startup.capabilities": "none"})
        )
        receipts = 0
        async for req in stream:
            if req.custom_action == "downstream.delivered":
                receipts += 1
                result["receipts"] = receipts
            elif req.action == pb.CONTROL_ACTION_ACK and req.metadata.get("type") == (
                "connector.ready"
            ):
                ready.set()

    async def data(stream: Any) -> None:
        if mode == "bare":
            ready.set()
        if idle > 0:
            await ready.wait()
            result["ready"] = True
            await asyncio.sleep(idle)
            finished.set()
            return
        await ready.wait()
        sent_at: list[float] = [0.0] * messages
        latencies: list[float] = []
        window = asyncio.Semaphore(WINDOW)

        async def sender() -> None:
            packet = pb.DataResponse()
            for i in range(messages):
                await window.acquire()
                packet.CopyFrom(template)
                packet.envelope.sequence = i + 1
                sent_at[i] = time.perf_counter()
                await stream.send_message(packet)

        # Tell the orchestrator traffic starts now, so start-up (imports, dial, handshake) is
        # not counted in the per-message CPU.
        with open(port_file + ".started", "w"):  # noqa: ASYNC230 - once, before any traffic
            pass
        start = time.perf_counter()
        task = asyncio.create_task(sender())
        received = 0
        while received < messages:
            message = await stream.recv_message()
            if message is None:
                break
            if message.WhichOneof("frame") is None:
                continue  # data heartbeat
            latencies.append(time.perf_counter() - sent_at[received])
            received += 1
            window.release()
        elapsed = time.perf_counter() - start
        await task
        latencies.sort()
        result.update(
            messages=received,
            seconds=elapsed,
            rate=received / elapsed,
            p50_us=latencies[len(latencies) // 2] * 1e6,
            p99_us=latencies[int(len(latencies) * 0.99)] * 1e6,
        )
        finished.set()

    async def unimplemented(stream: Any) -> None:
        return None

    class Service:
        def __mapping__(self) -> dict[str, Handler]:
            base = "/transport.v1.TransportConnectorService"
            return {
                f"{base}/Data": Handler(
                    data, Cardinality.STREAM_STREAM, pb.DataRequest, pb.DataResponse
                ),
                f"{base}/Control": Handler(
                    control, Cardinality.STREAM_STREAM, pb.ControlRequest, pb.ControlResponse
                ),
                f"{base}/HubPush": Handler(
                    unimplemented,
                    Cardinality.STREAM_STREAM,
                    pb.HubPushRequest,
                    pb.HubPushResponse,
                ),
            }

    server = Server([Service()])
    await server.start("127.0.0.1", 0)
    port = server._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    with open(port_file + ".tmp", "w") as fh:  # noqa: ASYNC230 - once, before any traffic
        fh.write(str(port))
    os.replace(port_file + ".tmp", port_file)
    await finished.wait()
    if mode == "sdk" and idle == 0:
        # Let the last receipts arrive, for the record.
        await asyncio.sleep(0.2)
    print(json.dumps(result), flush=True)
    server.close()


# -- engram process --------------------------------------------------------------------------


async def bare_engram(port: int) -> None:
    from grpclib.client import Channel
    from grpclib.const import Cardinality

    from bubu._gen.transport.v1 import transport_pb2 as pb

    channel = Channel("127.0.0.1", port)
    try:
        async with channel.request(
            "/transport.v1.TransportConnectorService/Data",
            Cardinality.STREAM_STREAM,
            pb.DataRequest,
            pb.DataResponse,
            metadata={"bubu-transport-protocol": "1.0.0"},
        ) as stream:
            await stream.send_request()
            while True:
                message = await stream.recv_message()
                if message is None:
                    break
                await stream.send_message(pb.DataRequest.FromString(message.SerializeToString()))
    except Exception:  # the connector ends the run by closing the connection
        pass
    finally:
        channel.close()


def sdk_engram(port: int) -> None:
    if os.environ.get(PURE_PYTHON_ENV):
        # What an install without a C compiler runs: codec's Python Struct writer.
        sys.modules["bubu._transport._structwire"] = None  # type: ignore[assignment]
    import bubu
    from bubu._runtime.sources import MappingSource
    from bubu._streaming import start_streaming

    class Echo(bubu.StreamingEngram[dict[str, Any]]):
        async def stream(self, inbound: Any) -> Any:
            async for msg in inbound:
                yield bubu.StreamMessage(payload=msg.payload, binary=msg.binary)
                msg.done()

    binding = {
        "name": "bench",
        "namespace": "bench",
        "binding": {
            "driver": "bench",
            "endpoint": f"127.0.0.1:{port}",
            "protocolVersion": "1.0.0",
        },
    }
    source = MappingSource(
        {"BUBU_TRANSPORT_BINDING": json.dumps(binding), "BUBU_GRPC_RECONNECT_MAX_RETRIES": "0"}
    )

    async def run() -> None:
        try:
            await start_streaming(Echo(), source=source)
        except Exception as exc:  # the connector ends the run by closing the connection
            print(f"engram ended: {exc!r}", file=sys.stderr)

    asyncio.run(run())


# -- orchestration ---------------------------------------------------------------------------


def _spawn(*args: str, stderr: Any = subprocess.PIPE) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, __file__, *args],
        stdout=subprocess.PIPE if stderr is subprocess.PIPE else subprocess.DEVNULL,
        stderr=stderr,
        text=True,
    )


def _wait_port(path: str, proc: subprocess.Popen[str]) -> int:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if os.path.exists(path):
            with open(path) as fh:
                return int(fh.read())
        if proc.poll() is not None:
            err = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"connector exited early: {err}")
        time.sleep(0.02)
    raise RuntimeError("connector did not start")


def run_round(mode: str, messages: int, tmp: str, idle: float = 0.0) -> dict[str, Any]:
    import psutil

    port_file = os.path.join(tmp, f"port-{mode}-{time.monotonic_ns()}")
    connector = _spawn(
        "--role",
        "connector",
        "--mode",
        mode,
        "--messages",
        str(messages),
        "--port-file",
        port_file,
        "--idle",
        str(idle),
    )
    port = _wait_port(port_file, connector)
    log_path = port_file + ".engram.log"
    log = open(log_path, "w")  # noqa: SIM115 - closed in finally
    engram = _spawn("--role", f"engram-{mode}", "--port", str(port), stderr=log)
    try:
        rss = 0.0
        if idle > 0:
            time.sleep(idle / 2)
            rss = psutil.Process(engram.pid).memory_info().rss / (1024 * 1024)
        watched = [psutil.Process(engram.pid), psutil.Process(connector.pid)]
        cpu_start: list[float] | None = None
        cpu_last = [0.0, 0.0]
        started = port_file + ".started"
        deadline = time.monotonic() + 300
        while connector.poll() is None:
            for i, proc in enumerate(watched):
                with contextlib.suppress(psutil.Error):
                    cpu_last[i] = sum(proc.cpu_times()[:2])
            if cpu_start is None and os.path.exists(started):
                cpu_start = list(cpu_last)
            if engram.poll() is not None and connector.poll() is None:
                time.sleep(1.0)
                if connector.poll() is None:
                    connector.kill()
                    with open(log_path) as fh:
                        raise RuntimeError(f"{mode} engram exited early:\n{fh.read()[-3000:]}")
            if time.monotonic() > deadline:
                connector.kill()
                raise RuntimeError(f"{mode} round did not finish in 300 s")
            time.sleep(0.05)
        out, err = connector.communicate()
        if connector.returncode != 0:
            raise RuntimeError(f"connector failed: {err}")
        result: dict[str, Any] = json.loads(out.strip().splitlines()[-1])
        if messages:
            if cpu_start is None:
                raise RuntimeError(f"{mode} round: the connector never started sending")
            result["engram_cpu_us"] = (cpu_last[0] - cpu_start[0]) / messages * 1e6
            result["connector_cpu_us"] = (cpu_last[1] - cpu_start[1]) / messages * 1e6
        if idle > 0:
            result["rss_mb"] = rss
        return result
    finally:
        engram.kill()
        engram.wait()
        log.close()
        with_suppressed_remove(port_file)
        with_suppressed_remove(port_file + ".started")
        with_suppressed_remove(log_path)


def _cpu_ticks() -> tuple[int, int]:
    """(all CPU ticks, steal ticks) from /proc/stat; zeros where it does not exist."""
    try:
        with open("/proc/stat") as fh:
            fields = [int(x) for x in fh.readline().split()[1:]]
    except (OSError, ValueError):
        return (0, 0)
    return (sum(fields[:8]), fields[7] if len(fields) > 7 else 0)


def with_suppressed_remove(path: str) -> None:
    with contextlib.suppress(OSError):
        os.remove(path)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", default="main")
    parser.add_argument("--mode", default="sdk")
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=7)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--port-file", default="")
    parser.add_argument("--idle", type=float, default=0.0)
    parser.add_argument(
        "--pure-python",
        action="store_true",
        help="run the SDK engram without the compiled Struct writer (as a build without a C "
        "compiler would)",
    )
    args = parser.parse_args()
    if args.pure_python:
        os.environ[PURE_PYTHON_ENV] = "1"  # inherited by the engram processes

    if args.role == "connector":
        asyncio.run(connector_main(args.mode, args.messages, args.port_file, args.idle))
        return 0
    if args.role == "engram-bare":
        asyncio.run(bare_engram(args.port))
        return 0
    if args.role == "engram-sdk":
        sdk_engram(args.port)
        return 0

    import tempfile

    load_before = os.getloadavg()
    steal_before = _cpu_ticks()
    results: dict[str, list[dict[str, Any]]] = {"bare": [], "sdk": []}
    with tempfile.TemporaryDirectory() as tmp:
        for round_no in range(args.rounds):
            for mode in ("bare", "sdk"):
                res = run_round(mode, args.messages, tmp)
                results[mode].append(res)
                print(
                    f"round {round_no + 1} {mode:4}: {res['rate']:8.0f} msg/s  "
                    f"p50 {res['p50_us']:8.0f} us  p99 {res['p99_us']:8.0f} us  "
                    f"CPU/msg engram {res['engram_cpu_us']:5.0f} us, "
                    f"connector {res['connector_cpu_us']:5.0f} us",
                    flush=True,
                )
        idle = run_round("sdk", 0, tmp, idle=3.0)

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results[mode])

    # The machine is shared and noisy: compare each SDK round with the bare round run just
    # before it, and report the median of those ratios.
    ratio = statistics.median(
        s["rate"] / b["rate"] for b, s in zip(results["bare"], results["sdk"], strict=True)
    )
    print()
    load_after = os.getloadavg()
    steal_after = _cpu_ticks()
    print(
        f"load average (1/5/15 min) before {load_before[0]:.2f}/{load_before[1]:.2f}/"
        f"{load_before[2]:.2f}, after {load_after[0]:.2f}/{load_after[1]:.2f}/{load_after[2]:.2f}"
        f" on {os.cpu_count()} CPUs"
    )
    busy = steal_after[0] - steal_before[0]
    if busy > 0:
        print(
            f"CPU time taken by the hypervisor (steal) during the run: "
            f"{(steal_after[1] - steal_before[1]) / busy:.1%} of all CPU time"
        )
    from bubu._transport import codec

    compiled = codec._compiled_struct_bytes is not None and not args.pure_python
    writer = "compiled (C)" if compiled else "pure Python"
    print(f"payload Struct writer: {writer}")
    print(
        f"workload: 1 KB JSON payload, {results['sdk'][0]['packet_bytes']} B DataResponse, "
        f"window {WINDOW}, {args.messages} messages x {args.rounds} rounds (median)"
    )
    print(f"{'':22}{'msgs/s':>10}{'p50 us':>10}{'p99 us':>10}{'engram CPU us/msg':>19}")
    for mode, label in (("bare", "bare grpclib echo"), ("sdk", "bubu SDK echo")):
        print(
            f"{label:22}{median(mode, 'rate'):10.0f}{median(mode, 'p50_us'):10.0f}"
            f"{median(mode, 'p99_us'):10.0f}{median(mode, 'engram_cpu_us'):19.0f}"
        )
    print(
        f"SDK / bare throughput: {ratio:.0%} (median of per-round ratios; floor "
        f"{THROUGHPUT_FLOOR:.0%})"
    )
    # What the CPU costs allow when each process has a free core: the slower side sets the pace.
    bound = {
        mode: 1e6 / max(median(mode, "engram_cpu_us"), median(mode, "connector_cpu_us"))
        for mode in ("bare", "sdk")
    }
    print(
        f"CPU-bound estimate (one free core per process): bare {bound['bare']:.0f} msg/s, "
        f"SDK {bound['sdk']:.0f} msg/s ({bound['sdk'] / bound['bare']:.0%}); engram CPU "
        f"SDK/bare {median('sdk', 'engram_cpu_us') / median('bare', 'engram_cpu_us'):.2f}x"
    )
    print(f"idle streaming engram RSS: {idle['rss_mb']:.1f} MB (floor {RSS_FLOOR_MB:.0f} MB)")
    failed = False
    if ratio < THROUGHPUT_FLOOR:
        print("FLOOR MISSED: SDK throughput below 70% of the bare echo")
        failed = True
    if idle["rss_mb"] > RSS_FLOOR_MB:
        print("FLOOR MISSED: idle engram RSS above 60 MB")
        failed = True
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
