"""bubu engrams against the Go connector of this module (``cmd/connector``, tractatus's Go code).

The connector behaves as docs/contract/stream.md describes the real sidecar (bobravoz-grpc is not
published): the protocol header check, connector.ready and capabilities, heartbeat ACKs,
receipts, hub metadata on delivered packets, graceful stop. bubu's ``start_streaming`` runs
in-process against it, with the binding the connector prints (encoded by core's
``EncodeBindingEnvelope``, as the operator encodes it).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from grpclib.client import Channel
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import AudioFrame, InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._streaming import start_streaming
from bubu.engram import StreamingEngram
from bubu.errors import ProtocolViolationError
from tests.interop._peers import GoConnector, go_engram, read_records

pytestmark = pytest.mark.interop

BEAT = {"BUBU_GRPC_HEARTBEAT_INTERVAL": "150ms", "BUBU_TRANSPORT_HEARTBEAT_INTERVAL": "150ms"}


class Echo(StreamingEngram[dict[str, Any]]):
    """Sends every message back (same id, kind, payload and frames), then marks it done."""

    def __init__(self, silent: bool = False) -> None:
        self.silent = silent
        self.seen: list[StreamMessage] = []

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            m = msg.message
            self.seen.append(m)
            if not self.silent:
                yield StreamMessage(
                    payload=m.payload,
                    binary=m.binary,
                    audio=m.audio,
                    kind=m.kind,
                    message_id=m.message_id,
                    metadata={k: v for k, v in m.metadata.items() if k.startswith("chain.")},
                )
            msg.done()


@contextlib.asynccontextmanager
async def serving(engram: Any, env: Mapping[str, str]) -> AsyncIterator[asyncio.Task[int]]:
    """``start_streaming(engram)`` in a task, with ``env`` as its environment."""
    task = asyncio.create_task(start_streaming(engram, source=MappingSource(dict(env))))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


def _mixed(n: int) -> list[StreamMessage]:
    out = []
    for i in range(1, n + 1):
        meta = {"chain.index": str(i)}
        if i % 3 == 1:
            out.append(StreamMessage.json({"i": i, "s": "<&>"}, message_id=f"m{i}", metadata=meta))
        elif i % 3 == 2:
            out.append(
                StreamMessage.from_bytes(bytes([i % 256]) * 33, message_id=f"m{i}", metadata=meta)
            )
        else:
            audio = AudioFrame(pcm=bytes([i % 256]) * 320, sample_rate_hz=8000, codec="pcm16")
            out.append(StreamMessage(audio=audio, message_id=f"m{i}", metadata=meta))
    return out


async def test_handshake_headers_and_startup_acks(go_bin: Path) -> None:
    async with GoConnector(go_bin, ["py"]) as conn, serving(Echo(), conn.binding_env("py")):
        data = await conn.wait_event(lambda e: e["ev"] == "stream" and e["stream"] == "data")
        control = await conn.wait_event(lambda e: e["ev"] == "stream" and e["stream"] == "control")
        assert data["headers"]["bubu-transport-protocol"] == "1.0.0"
        assert control["headers"]["bubu-transport-protocol"] == "1.0.0"
        assert control["headers"]["bubu.transport.binding"] == "default/py-binding"
        for type_, reason in (
            ("connector.ready", "startup"),
            ("connector.capabilities", "capabilities"),
            ("handoff.cutover", "handoff"),
        ):
            ack = await conn.wait_event(
                lambda e, t=type_: (
                    e["ev"] == "control" and e["type"] == "ack" and e["metadata"].get("type") == t
                )
            )
            assert ack["metadata"] == {"type": type_, "handled": "true", "reason": reason}


@pytest.mark.parametrize("version", [None, "9.9.9"])
async def test_protocol_header_is_checked(go_bin: Path, version: str | None) -> None:
    async with GoConnector(go_bin, ["py"]) as conn:
        metadata = {} if version is None else {"bubu-transport-protocol": version}
        channel = Channel("127.0.0.1", conn.ports["py"])
        try:
            for method, req, resp in (
                ("Data", pb.DataRequest, pb.DataResponse),
                ("Control", pb.ControlRequest, pb.ControlResponse),
            ):
                # grpc-go answers trailers-only and resets the stream; grpclib's stream exit
                # turns that back into the status (bubu's session does the same)
                with pytest.raises(GRPCError) as exc:
                    async with channel.request(
                        f"/transport.v1.TransportConnectorService/{method}",
                        Cardinality.STREAM_STREAM,
                        req,
                        resp,
                        metadata=metadata,
                    ) as stream:
                        await stream.send_request()
                        await stream.recv_message()
                assert exc.value.status is Status.FAILED_PRECONDITION
        finally:
            channel.close()
        await conn.wait_until(lambda: len(conn.of("refused", step="py")) == 2)


async def test_heartbeats_are_acked_alive(go_bin: Path) -> None:
    async with (
        GoConnector(go_bin, ["py"], env=BEAT) as conn,
        serving(Echo(), conn.binding_env("py")),
    ):
        await conn.reach("py", "controlHeartbeats", 2)
        await conn.reach("py", "dataHeartbeats", 2)
        beat = conn.of("control", step="py", type="heartbeat")[0]
        assert beat["action"] == "CONTROL_ACTION_HEARTBEAT" and beat["metadata"]["ts"].isdigit()


async def test_receipts_for_every_shape_with_go_sizes(go_bin: Path) -> None:
    sent = _mixed(30)
    engram = Echo()
    async with GoConnector(go_bin, ["py"]) as conn, serving(engram, conn.binding_env("py")):
        for msg in sent:
            await conn.send("py", msg)
        await conn.reach("py", "acked", len(sent))
        # the echoes travel on Data, the receipts on Control: either may be read first
        await conn.reach("py", "published", len(sent))
        stats = (await conn.stats())["py"]
        c = stats["counters"]
        # every packet got exactly one receipt whose size_bytes is Go's proto.Size of it
        assert c["receipts"] == c["acked"] == len(sent)
        assert c["receiptSizeErrors"] == 0 and c["receiptsUnmatched"] == 0
        assert stats["pending"] == 0 and c["published"] == len(sent)
        receipts = conn.of("receipt", step="py")
        assert [int(r["sequence"]) for r in receipts] == list(range(1, len(sent) + 1))
        assert all(r["stream_id"] == "default/interop-run/py" for r in receipts)
    for want, got in zip(sent, engram.seen, strict=True):
        assert got.message_id == want.message_id
        assert got.audio == want.audio
        if want.binary is not None and want.binary.mime_type == "application/json":
            # The JSON mirror comes back as the envelope carried it: Go's encoding/json escapes
            # (<, >, & as \u003c...), the same value.
            assert got.binary is not None and got.binary.mime_type == want.binary.mime_type
            assert json.loads(got.binary.payload) == json.loads(want.binary.payload)
        else:
            assert got.binary == want.binary


async def test_hub_metadata_reaches_a_go_engram_downstream(go_bin: Path, tmp_path: Path) -> None:
    # bubu engram on step "py" -> hub -> Go SDK engram on step "go": the Go side sees what
    # bubu published, stamped by the hub, and acknowledges it.
    record = tmp_path / "go.jsonl"
    sent = _mixed(12)
    async with (
        GoConnector(go_bin, ["py", "go"], routes={"py": "go"}, args=["--record"]) as conn,
        serving(Echo(), conn.binding_env("py")),
        go_engram(
            go_bin,
            "echo",
            {**conn.binding_env("go"), "INTEROP_SILENT": "1", "INTEROP_RECORD": str(record)},
        ),
    ):
        for msg in sent:
            await conn.send("py", msg)
        await conn.reach("go", "acked", len(sent), limit=60)
        published = {e["id"]: e for e in conn.of("published", step="py")}
    got = read_records(record)
    assert [r["messageId"] for r in got] == [m.message_id for m in sent]
    for want, r in zip(sent, got, strict=True):
        meta = r["metadata"]
        assert meta["storyrun-name"] == "interop-run"
        assert meta["storyrun-namespace"] == "default"
        assert meta["current-step-id"] == "go"
        assert meta["chain.index"] == want.metadata["chain.index"]
        assert r["streamId"] == "default/interop-run/go" and r["sequence"] >= 1
        if want.audio is not None:
            assert r["audio"]["payload"] == want.audio.pcm
            assert (r["audio"]["sampleRateHz"], r["audio"]["codec"]) == (8000, "pcm16")
        elif want.binary.mime_type == "application/json":
            assert want.json_data() == StreamMessage(payload=r["payload"]).json_data()
        else:
            assert r["binary"]["payload"] == want.binary.payload
            assert r["binary"]["mime"] == "application/octet-stream"
        assert want.message_id in published


@pytest.mark.parametrize("mode", ["none", "required"])
async def test_startup_capabilities_modes(go_bin: Path, mode: str) -> None:
    args = ["--startup-capabilities", mode]
    engram = Echo()
    async with (
        GoConnector(go_bin, ["py"], args=args) as conn,
        serving(engram, conn.binding_env("py")),
    ):
        await conn.send("py", StreamMessage.json({"ok": True}, message_id="after-handshake"))
        await conn.reach("py", "acked", 1)
    assert [m.message_id for m in engram.seen] == ["after-handshake"]


async def test_invalid_startup_capabilities_stop_the_engram(go_bin: Path) -> None:
    async with GoConnector(go_bin, ["py"], args=["--startup-capabilities", "legacy"]) as conn:
        task = asyncio.create_task(
            start_streaming(Echo(), source=MappingSource(conn.binding_env("py")))
        )
        with pytest.raises(ProtocolViolationError, match="startup"):
            async with asyncio.timeout(30):
                await task
        assert len(conn.of("stream", step="py", stream="control")) == 1  # no reconnect


async def test_graceful_stop_then_restart_resumes(go_bin: Path) -> None:
    engram = Echo(silent=True)
    conn = GoConnector(go_bin, ["py"], args=["--grace", "1s"])
    async with conn, serving(engram, conn.binding_env("py")) as task:
        await conn.send("py", StreamMessage.json({"n": 1}, message_id="before"))
        await conn.reach("py", "acked", 1)
        assert await conn.stop() == 0
        assert conn.of("stopped")
        # the engram keeps trying (reconnect with backoff) while the connector is down
        await asyncio.sleep(0.3)
        assert not task.done()
        await conn.start()
        # A connector (hub) started without durable state numbers the stream from 1 again:
        # sequence 1 is one the engram already finished, so the SDK drops it and re-sends its
        # receipt, as Go's deduper does across sessions (docs/contract/stream.md#dedupe).
        await conn.send("py", StreamMessage.json({"n": 2}, message_id="after-1"))
        await conn.send("py", StreamMessage.json({"n": 3}, message_id="after-2"))
        await conn.reach("py", "acked", 2)
    assert [m.message_id for m in engram.seen] == ["before", "after-2"]


async def test_hub_heartbeats_and_unsequenced_packets(go_bin: Path) -> None:
    # The hub's heartbeat (an envelope frame marked bubu-heartbeat) is never handed to the
    # engram (docs/contract/stream.md#dedupe); a packet without a sequence is delivered but needs
    # no receipt.
    engram = Echo(silent=True)
    args = ["--hub-heartbeat", "50ms"]
    async with (
        GoConnector(go_bin, ["py"], args=args) as conn,
        serving(engram, conn.binding_env("py")),
    ):
        await conn.reach("py", "hubHeartbeats", 3)
        await conn.send("py", StreamMessage.json({"n": 1}, message_id="unsequenced"), raw=True)
        await conn.send("py", StreamMessage.json({"n": 2}, message_id="sequenced"))
        await conn.reach("py", "acked", 1)
        stats = (await conn.stats())["py"]
    assert [m.message_id for m in engram.seen] == ["unsequenced", "sequenced"]
    assert stats["counters"]["receipts"] == 1 and stats["pending"] == 0
    # The heartbeats (an envelope that also says kind heartbeat) never rebuilt the session.
    assert stats["counters"]["dataStreams"] == 1, stats["counters"]
