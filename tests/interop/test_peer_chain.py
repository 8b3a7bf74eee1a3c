"""A chain across SDKs: Go producer -> bubu engram -> Go engram, through the Go connector.

The Go ``producer`` publishes 10,000 messages (JSON, raw binary and PCM audio in turn), the hub
of ``cmd/connector`` delivers them to a bubu engram that sends each one back out, and a Go SDK
engram at the end records what it receives. Every hop is sequenced and receipted. The tests
check that nothing is lost or doubled, that the frames arrive byte for byte, and that the chain
survives its connector being killed and started again.

Also here: the receipt test under load. Go's ``Done()`` drops a receipt when its 16-slot
control queue is full (the key is released, so the hub will deliver the packet again); bubu
keeps receipts in an outbox and sends them all once the control stream moves.
"""

from __future__ import annotations

import json
import struct
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from bubu._runtime.messages import StreamMessage
from tests.interop._peers import (
    GoConnector,
    decode_published,
    go_engram,
    read_records,
    supervised,
)
from tests.interop.test_peer_go_connector import Echo, serving

pytestmark = pytest.mark.interop

SLOW_SENDS_OK = {"BUBU_GRPC_MESSAGE_TIMEOUT": "120s"}

#: Go's Done() drops a receipt when its control queue (BUBU_GRPC_CHANNEL_BUFFER_SIZE, 16 by
#: default) is full, which happens on a busy machine whenever its control loop lags 16 receipts
#: behind (see test_receipts_under_a_full_control_queue). The chain makes that queue deeper than
#: the connector's window, so no more receipts can be outstanding than the queue holds.
CHAIN_ENV = {**SLOW_SENDS_OK, "BUBU_GRPC_CHANNEL_BUFFER_SIZE": "512"}


def expected(i: int) -> dict[str, Any]:
    """What the ``producer`` program publishes as message ``i`` (see its doc comment)."""
    if i % 3 == 1:
        return {"json": {"i": i, "text": "<&> é \u2028", "big": 1e21, "half": 0.5}}
    if i % 3 == 2:
        return {"binary": bytes((i * 7 + j) & 0xFF for j in range(64))}
    pcm = b"".join(struct.pack("<H", (i * 31 + j) & 0xFFFF) for j in range(0, 640, 2))
    return {"audio": pcm, "timestamp": i * 20}


def check_record(i: int, r: dict[str, Any]) -> None:
    want = expected(i)
    assert r["messageId"] == f"m-{i:06d}"
    assert r["metadata"]["chain.index"] == str(i)
    assert r["metadata"]["current-step-id"] == "sink"
    if "json" in want:
        assert json.loads(r["payload"]) == want["json"]
        assert r["binary"]["mime"] == "application/json" and r["kind"] == "data"
        # Go's encoding/json wrote these bytes; bubu passed the envelope payload through, so
        # the Go engram at the end gets Go's bytes back (HTML escapes and all).
        assert r["payload"] == (
            b'{"big":1e+21,"half":0.5,"i":%d,"text":"\\u003c\\u0026\\u003e \xc3\xa9 \\u2028"}' % i
        )
    elif "binary" in want:
        assert r["binary"]["payload"] == want["binary"]
        assert r["binary"]["mime"] == "application/octet-stream"
    else:
        assert r["audio"]["payload"] == want["audio"]
        assert (r["audio"]["sampleRateHz"], r["audio"]["channels"]) == (16000, 1)
        assert (r["audio"]["codec"], r["audio"]["timestampMs"]) == ("pcm16", want["timestamp"])


async def _chain(conn: GoConnector, go_bin: Path, record: Path, count: int) -> Any:
    return (
        go_engram(go_bin, "producer", {**conn.binding_env("prod"), "INTEROP_COUNT": str(count)}),
        serving(Echo(), conn.binding_env("py")),
        go_engram(
            go_bin,
            "echo",
            {**conn.binding_env("sink"), "INTEROP_SILENT": "1", "INTEROP_RECORD": str(record)},
        ),
    )


async def test_chain_of_10000_messages_none_lost_none_doubled(go_bin: Path, tmp_path: Path) -> None:
    count = 10_000
    record = tmp_path / "sink.jsonl"
    conn = GoConnector(
        go_bin,
        ["prod", "py", "sink"],
        routes={"prod": "py", "py": "sink"},
        env=CHAIN_ENV,
        args=["--quiet", "--window", "256"],
    )
    async with conn:
        producer, middle, sink = await _chain(conn, go_bin, record, count)
        async with producer, middle, sink:
            await conn.reach("sink", "acked", count, limit=600)
            stats = await conn.stats()
    prod, py, end = (stats[s]["counters"] for s in ("prod", "py", "sink"))
    assert prod["published"] == py["published"] == count
    for c in (py, end):
        assert c["receipts"] == c["acked"] == count
        assert c["receiptSizeErrors"] == c["receiptsUnmatched"] == 0
    assert all(stats[s]["pending"] == 0 for s in ("py", "sink"))
    assert prod["duplicatesDropped"] == py["duplicatesDropped"] == 0

    got = read_records(record)
    assert [r["messageId"] for r in got] == [f"m-{i:06d}" for i in range(1, count + 1)]
    assert [r["sequence"] for r in got] == list(range(1, count + 1))
    for i, r in enumerate(got, start=1):
        check_record(i, r)


async def test_chain_survives_the_connector_being_killed(go_bin: Path, tmp_path: Path) -> None:
    count = 3000
    record = tmp_path / "sink.jsonl"
    conn = GoConnector(
        go_bin,
        ["prod", "py", "sink"],
        routes={"prod": "py", "py": "sink"},
        env=CHAIN_ENV,
        args=["--quiet", "--window", "128", "--state", str(tmp_path / "state")],
    )
    sink_env = {"INTEROP_SILENT": "1", "INTEROP_RECORD": str(record)}
    async with conn:
        # The Go engrams run as a Deployment's pods would: restarted if they exit. Go gives up
        # for good when a send is still blocked 2 s after its session broke (a non-retriable
        # "timed-send cleanup" error, docs/contract/stream.md#errors), which a loaded machine can
        # hit here.
        async with (
            supervised(
                go_bin, "producer", {**conn.binding_env("prod"), "INTEROP_COUNT": str(count)}
            ) as producer,
            serving(Echo(), conn.binding_env("py")),
            supervised(go_bin, "echo", {**conn.binding_env("sink"), **sink_env}) as sink,
        ):
            await conn.reach("sink", "acked", count // 3, limit=300)
            await conn.kill()  # SIGKILL mid-chain: no goodbye to any engram
            await conn.start()  # same ports, same write-ahead log
            assert conn.generation == 2
            try:
                await conn.reach("sink", "ackedTotal", count, limit=120)
            except AssertionError as exc:
                raise AssertionError(f"{exc}; exits: {producer.exits} {sink.exits}") from None
            stats = await conn.stats()
    assert stats["sink"]["counters"]["stored"] == count
    assert stats["sink"]["pending"] == 0 and stats["py"]["pending"] == 0

    got = read_records(record)
    ids = [r["messageId"] for r in got]
    seen = Counter(ids)
    # none lost: every message reached the Go engram, in order of first arrival
    assert list(dict.fromkeys(ids)) == [f"m-{i:06d}" for i in range(1, count + 1)]
    # none doubled by the chain: the sink's stream kept its ids and sequences across the
    # restart, so the Go SDK dropped (and re-receipted) what it had finished. A packet it was
    # handed but had not finished when the connector died is handed over again after the
    # restart (at-least-once, docs/contract/stream.md#dedupe): at most the packets in flight.
    redelivered = {k: n for k, n in seen.items() if n > 1}
    assert sum(seen.values()) - count == sum(n - 1 for n in redelivered.values())
    assert sum(n - 1 for n in redelivered.values()) <= 128 + 16, redelivered
    for r in got:
        check_record(int(r["messageId"][2:]), r)


@pytest.mark.parametrize("side", ["go", "bubu"])
async def test_receipts_under_a_full_control_queue(go_bin: Path, side: str) -> None:
    count = 4000  # bubu's receipt outbox holds 4096
    conn = GoConnector(
        go_bin, ["e"], env=SLOW_SENDS_OK, args=["--quiet", "--window", "0", "--static-window"]
    )
    async with conn:
        if side == "go":
            engram = go_engram(go_bin, "echo", conn.binding_env("e"))
        else:
            engram = serving(Echo(), conn.binding_env("e"))
        async with engram:
            await conn.wait_event(lambda e: e["ev"] == "stream" and e["stream"] == "control")
            await conn.command("stall_control", step="e")  # the connector stops reading
            await conn.flood("e", StreamMessage.json({"load": True}), count)
            # every packet was processed (and done()) while receipts could not flow
            await conn.reach("e", "published", count, limit=300)
            await conn.command("resume_control", step="e")
            # A marker's receipt queues behind every receipt the engram kept. Go may drop the
            # marker's too while its queue is still draining, so send markers until one is
            # acknowledged: after that, everything the engram was going to send has arrived.
            markers = 0
            while True:
                markers += 1
                await conn.send("e", StreamMessage.json({"m": markers}, message_id=f"m{markers}"))
                try:
                    await conn.command(
                        "await_acked",
                        limit=5 if side == "go" else 60,
                        step="e",
                        value=count + markers,
                    )
                    break
                except TimeoutError:
                    assert side == "go" and markers < 20
            stats = (await conn.stats())["e"]
    receipts = stats["counters"]["receipts"]
    if side == "bubu":
        assert markers == 1 and receipts == count + 1 and stats["pending"] == 0
    else:
        # Go released the keys of the receipts it dropped: the hub still holds those packets
        # and will deliver them again, to be processed a second time.
        assert receipts < count and stats["pending"] == count + markers - receipts


async def test_bubu_publishes_the_packets_go_publishes(go_bin: Path, tmp_path: Path) -> None:
    # The middle engram sends each message back as it got it, so for every message id the
    # connector sees the Go producer's packet and bubu's packet for the same StreamMessage.
    # Compared field by field on Go's deterministic re-encoding of each packet (map order is not
    # fixed by protobuf): the frames byte for byte (the envelope JSON, raw binary and PCM),
    # metadata, and the payload Struct.
    count = 30
    record = tmp_path / "sink.jsonl"
    conn = GoConnector(
        go_bin,
        ["prod", "py", "sink"],
        routes={"prod": "py", "py": "sink"},
        env=CHAIN_ENV,
        args=["--record", "--quiet"],
    )
    async with conn:
        producer, middle, sink = await _chain(conn, go_bin, record, count)
        async with producer, middle, sink:
            await conn.reach("sink", "acked", count, limit=120)
    go_packets = {e["id"]: decode_published(e) for e in conn.of("published", step="prod")}
    py_packets = {e["id"]: decode_published(e) for e in conn.of("published", step="py")}
    assert sorted(go_packets) == sorted(py_packets) == [f"m-{i:06d}" for i in range(1, count + 1)]
    for mid, go_pkt in go_packets.items():
        py_pkt = py_packets[mid]
        assert go_pkt.WhichOneof("frame") == py_pkt.WhichOneof("frame"), mid
        frame = go_pkt.WhichOneof("frame")
        go_frame, py_frame = getattr(go_pkt, frame), getattr(py_pkt, frame)
        # the envelope JSON included: bubu writes the bytes Go's envelope.Marshal writes
        assert go_frame.SerializeToString(deterministic=True) == py_frame.SerializeToString(
            deterministic=True
        ), mid
        assert dict(go_pkt.metadata) == dict(py_pkt.metadata), mid
        assert go_pkt.payload == py_pkt.payload and go_pkt.inputs == py_pkt.inputs, mid
        assert not go_pkt.HasField("envelope") and not py_pkt.HasField("envelope")
