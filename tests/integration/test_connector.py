"""LocalConnector over real loopback gRPC, driven by a minimal raw grpclib client.

Opens sockets on 127.0.0.1 (and a unix socket); no Kubernetes. The client here is deliberately
not the SDK's session, so these tests pin the connector's side of
docs/contract/stream.md#session, docs/contract/stream.md#hub on their own.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from grpclib.client import Channel, Stream
from grpclib.const import Cardinality, Status
from grpclib.exceptions import GRPCError, StreamTerminatedError

from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import StreamMessage
from bubu._transport import codec
from bubu.testkit._connector import LocalConnector

pytestmark = pytest.mark.loopback

SERVICE = "/transport.v1.TransportConnectorService"
PROTO = {"bubu-transport-protocol": "1.0.0"}


class RawEngram:
    """The engram side, by hand: Data + Control streams on one channel."""

    def __init__(self, conn: LocalConnector) -> None:
        if conn.address.startswith("unix://"):
            self.channel = Channel(path=conn.address[len("unix://") :])
        else:
            host, port = conn.address.rsplit(":", 1)
            self.channel = Channel(host, int(port))
        self._stack = contextlib.AsyncExitStack()
        self.data: Stream[pb.DataRequest, pb.DataResponse] | None = None
        self.control: Stream[pb.ControlRequest, pb.ControlResponse] | None = None

    async def open(self, headers: dict[str, str] | None = None) -> None:
        meta = PROTO if headers is None else headers
        self.data = await self._stack.enter_async_context(
            self.channel.request(
                f"{SERVICE}/Data",
                Cardinality.STREAM_STREAM,
                pb.DataRequest,
                pb.DataResponse,
                metadata=meta,
            )
        )
        await self.data.send_request()
        self.control = await self._stack.enter_async_context(
            self.channel.request(
                f"{SERVICE}/Control",
                Cardinality.STREAM_STREAM,
                pb.ControlRequest,
                pb.ControlResponse,
                metadata={**meta, "bubu.transport.binding": "default/local-binding"},
            )
        )
        await self.control.send_request()

    async def handshake(self) -> list[pb.ControlResponse]:
        """Read ready + capabilities + cutover and ACK each, as the Go default handler does."""
        assert self.control is not None
        got = []
        for _ in range(3):
            resp = await asyncio.wait_for(self.control.recv_message(), 5)
            assert resp is not None
            got.append(resp)
            type_ = codec.control_type(resp.action, resp.custom_action)
            reason = {
                "connector.ready": "startup",
                "connector.capabilities": "capabilities",
            }.get(type_, "handoff")
            await self.control.send_message(
                codec.control_request("ack", {"handled": "true", "reason": reason, "type": type_})
            )
        return got

    @staticmethod
    async def _recv(stream: Stream[Any, Any]) -> Any:
        resp = await asyncio.wait_for(stream.recv_message(), 5)
        if resp is None:
            # grpclib returns None at end of stream on a bidi call; the status is in the
            # trailers, which it only reads once our side is ended too.
            with contextlib.suppress(Exception):
                await stream.end()
            await stream.recv_trailing_metadata()  # raises GRPCError on a non-OK status
            raise EOFError("stream ended with OK")
        return resp

    async def recv_data(self) -> pb.DataResponse:
        assert self.data is not None
        return await self._recv(self.data)  # type: ignore[no-any-return]

    async def recv_control(self) -> pb.ControlResponse:
        assert self.control is not None
        return await self._recv(self.control)  # type: ignore[no-any-return]

    async def receipt(self, packet: pb.DataResponse) -> None:
        assert self.control is not None
        env = packet.envelope
        await self.control.send_message(
            codec.delivery_receipt(
                env.stream_id, env.sequence, env.partition, codec.packet_size(packet)
            )
        )

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()
        self.channel.close()


@pytest.fixture
async def conn() -> AsyncIterator[LocalConnector]:
    async with LocalConnector() as c:
        yield c


@pytest.fixture
async def engram(conn: LocalConnector) -> AsyncIterator[RawEngram]:
    e = RawEngram(conn)
    await e.open()
    yield e
    await e.close()


def _meta(resp: Any) -> dict[str, str]:
    return dict(resp.metadata)


async def test_binding_points_at_the_listener(conn: LocalConnector) -> None:
    conn.settings = {"env": {"BUBU_GRPC_HEARTBEAT_INTERVAL": "1s"}}
    envelope = json.loads(conn.binding_env()["BUBU_TRANSPORT_BINDING"])
    assert envelope["name"] == "local-binding"
    assert envelope["namespace"] == "default"
    info = envelope["binding"]
    assert info["endpoint"] == conn.address
    assert conn.address.startswith("127.0.0.1:") and conn.port > 0
    assert info["protocolVersion"] == "1.0.0"
    assert json.loads(base64.b64decode(info["payload"])) == {
        "env": {"BUBU_GRPC_HEARTBEAT_INTERVAL": "1s"}
    }


async def test_handshake_order_ready_capabilities_cutover(
    conn: LocalConnector, engram: RawEngram
) -> None:
    ready, caps, cutover = await engram.handshake()
    assert ready.action == pb.CONTROL_ACTION_CONNECTOR_READY
    assert _meta(ready) == {"startup.capabilities": "none"}
    assert caps.action == pb.CONTROL_ACTION_CONNECTOR_CAPABILITIES
    assert _meta(caps)["audio.codec"] == "pcm16"
    assert cutover.action == pb.CONTROL_ACTION_HANDOFF_CUTOVER
    assert _meta(cutover)["reason"] == "hub_connected"
    await conn.wait_ready(timeout=5)
    assert conn.control_headers[0]["bubu.transport.binding"] == "default/local-binding"


async def test_required_capabilities_wait_for_both_acks() -> None:
    async with LocalConnector(startup_capabilities="required") as conn:
        e = RawEngram(conn)
        await e.open()
        try:
            ready = await e.recv_control()
            assert _meta(ready) == {"startup.capabilities": "required"}
            await e.control.send_message(  # type: ignore[union-attr]
                codec.control_request("ack", {"type": "connector.ready", "handled": "true"})
            )
            with pytest.raises(TimeoutError):
                await conn.wait_ready(timeout=0.2)
            await e.control.send_message(  # type: ignore[union-attr]
                codec.control_request("ack", {"type": "connector.capabilities", "handled": "true"})
            )
            await conn.wait_ready(timeout=5)
        finally:
            await e.close()


async def test_missing_protocol_header_fails_precondition(conn: LocalConnector) -> None:
    e = RawEngram(conn)
    try:
        await e.open(headers={})
        with pytest.raises(GRPCError) as info:
            await e.recv_data()
        assert info.value.status is Status.FAILED_PRECONDITION
    finally:
        await e.close()


async def test_hub_push_is_unimplemented(conn: LocalConnector) -> None:
    e = RawEngram(conn)
    try:
        async with e.channel.request(
            f"{SERVICE}/HubPush",
            Cardinality.STREAM_STREAM,
            pb.HubPushRequest,
            pb.HubPushResponse,
            metadata=PROTO,
        ) as stream:
            await stream.send_request(end=True)
            with pytest.raises(GRPCError) as info:
                await stream.recv_message()
        assert info.value.status is Status.UNIMPLEMENTED
    finally:
        await e.close()


async def test_control_heartbeat_gets_alive_ack(conn: LocalConnector, engram: RawEngram) -> None:
    await engram.handshake()
    await engram.control.send_message(  # type: ignore[union-attr]
        codec.control_request("heartbeat", {"ts": "1700000000000"})
    )
    ack = await engram.recv_control()
    assert ack.action == pb.CONTROL_ACTION_ACK
    assert _meta(ack) == {"received": "heartbeat", "handled": "true", "status": "alive"}
    assert conn.stats.control_heartbeats == 1
    seen = await conn.wait_control("heartbeat")
    assert dict(seen.metadata) == {"ts": "1700000000000"}


async def test_unknown_and_noop_directives_are_acked_unhandled(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    await engram.control.send_message(codec.control_request("noop"))  # type: ignore[union-attr]
    assert _meta(await engram.recv_control()) == {
        "received": "noop",
        "handled": "false",
        "reason": "empty",
    }
    await engram.control.send_message(codec.control_request("Frobnicate"))  # type: ignore[union-attr]
    ack = await engram.recv_control()
    assert _meta(ack) == {"received": "frobnicate", "handled": "false", "reason": "unknown"}
    # UNSPECIFIED without a custom action normalises to "unknown" (Go normalizeDirectiveType).
    await engram.control.send_message(pb.ControlRequest())  # type: ignore[union-attr]
    ack = await engram.recv_control()
    assert _meta(ack) == {"received": "unknown", "handled": "false", "reason": "unknown"}
    await engram.control.send_message(codec.control_request("codec-select"))  # type: ignore[union-attr]
    assert _meta(await engram.recv_control())["reason"] == "codec selection not implemented"
    # Receipts and acks are never answered: the next reply is for the heartbeat.
    await engram.control.send_message(codec.control_request("ack", {"type": "x"}))  # type: ignore[union-attr]
    await engram.control.send_message(codec.delivery_receipt("s", 1, "", 1))  # type: ignore[union-attr]
    await engram.control.send_message(codec.control_request("heartbeat"))  # type: ignore[union-attr]
    assert _meta(await engram.recv_control())["received"] == "heartbeat"


async def test_malformed_receipt_is_recorded(conn: LocalConnector, engram: RawEngram) -> None:
    await engram.handshake()
    await engram.control.send_message(  # type: ignore[union-attr]
        codec.control_request("downstream.delivered", {"stream_id": "s", "sequence": "x"})
    )
    await conn.wait_until(lambda: bool(conn.stats.violations))
    assert "malformed downstream.delivered receipt" in conn.stats.violations[0]
    assert conn.stats.receipts == []


async def test_hub_heartbeat_and_hook_are_envelope_frames(
    conn: LocalConnector, engram: RawEngram
) -> None:
    conn_ = conn
    await engram.handshake()
    await conn_.send_heartbeat()
    hb = await engram.recv_data()
    assert hb.binary.mime_type == "application/vnd.bubu.packet+json"
    assert dict(hb.metadata) == {"bubu-heartbeat": "true"}
    assert not hb.HasField("envelope")  # heartbeats are not sequenced
    assert codec.is_heartbeat_metadata(codec.from_pb_packet(hb).metadata)

    await conn_.send_hook("steprun.ready", step="s1")
    hook = await engram.recv_data()
    msg = codec.from_pb_packet(hook)
    assert msg.kind == "hook"
    assert msg.message_id == "default/local-run:steprun.ready:s1"
    assert msg.json_data()["hook"]["event"] == "steprun.ready"
    assert not hook.HasField("payload")  # the connector sends no separate Struct
    assert not hook.HasField("envelope")  # unsequenced: deduped by message id


async def test_hub_metadata_is_stamped_on_sent_messages() -> None:
    stamp = {"storyrun-name": "r", "storyrun-namespace": "ns", "current-step-id": "s"}
    async with LocalConnector(hub_metadata=stamp) as conn:
        e = RawEngram(conn)
        await e.open()
        try:
            await e.handshake()
            await conn.send(StreamMessage.json({"a": 1}, metadata={"user": "x"}))
            packet = await e.recv_data()
            assert dict(packet.metadata) == {**stamp, "user": "x"}
        finally:
            await e.close()


async def test_data_heartbeat_is_counted_not_output(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    await engram.data.send_message(codec.heartbeat_data_request())  # type: ignore[union-attr]
    await engram.data.send_message(  # type: ignore[union-attr]
        codec.to_pb_data_request(StreamMessage.json({"n": 1}))
    )
    out = await conn.next_output()
    assert out.json_data() == {"n": 1}
    assert conn.stats.data_heartbeats == 1
    assert conn.outputs.empty()


async def test_sent_messages_are_sequenced_and_receipts_trim_unacked(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    for n in range(3):
        await conn.send(StreamMessage.json({"n": n}, message_id=f"m{n}"))
    packets = [await engram.recv_data() for _ in range(3)]
    assert [p.envelope.sequence for p in packets] == [1, 2, 3]
    assert {p.envelope.stream_id for p in packets} == {"default/local-run/local-step"}
    assert [codec.from_pb_packet(p).json_data() for p in packets] == [{"n": 0}, {"n": 1}, {"n": 2}]
    assert len(conn.unacked) == 3

    await engram.receipt(packets[1])  # cumulative: covers 1 and 2
    await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
    receipt = conn.stats.receipts[0]
    assert receipt.sequence == 2 and receipt.size_ok
    assert conn.unacked == [("default/local-run/local-step", "", 3)]


async def test_unacked_packets_are_redelivered_after_session_restart(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    for n in range(3):
        await conn.send(StreamMessage.json({"n": n}))
    first = [await engram.recv_data() for _ in range(3)]
    await engram.receipt(first[0])
    await conn.wait_until(lambda: len(conn.stats.receipts) == 1)

    await conn.kill_session()
    with pytest.raises(GRPCError) as info:
        await engram.recv_data()
    assert info.value.status is Status.UNAVAILABLE
    await engram.close()

    again = RawEngram(conn)
    await again.open()
    try:
        await again.handshake()
        replay = [await again.recv_data() for _ in range(2)]
        # Original sequence numbers, in order; the acked packet is not replayed.
        assert [p.envelope.sequence for p in replay] == [2, 3]
        assert [codec.from_pb_packet(p).json_data() for p in replay] == [{"n": 1}, {"n": 2}]
        assert conn.stats.redelivered == 2
        assert conn.stats.data_sessions == 2 and conn.stats.control_sessions == 2
        # New messages continue the sequence after the replay.
        await conn.send(StreamMessage.json({"n": 3}))
        assert (await again.recv_data()).envelope.sequence == 4
    finally:
        await again.close()


async def test_restart_waits_for_the_engram_to_come_back(conn: LocalConnector) -> None:
    stop = asyncio.Event()

    async def engram_loop() -> None:
        # Reconnect after every session end, like the SDK's reconnect loop.
        while not stop.is_set():
            e = RawEngram(conn)
            try:
                await e.open()
                await e.handshake()
                await e.recv_data()
            except (GRPCError, EOFError, TimeoutError):
                pass
            finally:
                await e.close()

    task = asyncio.create_task(engram_loop())
    try:
        await conn.wait_ready()
        await conn.restart(timeout=5)
        assert conn.stats.data_sessions == 2
        assert conn.stats.control_sessions == 2
    finally:
        stop.set()
        await conn.kill_session("eof")  # ends the engram's current recv
        await asyncio.wait_for(task, 10)


async def test_pause_drops_engram_output_until_resume(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    conn.pause()
    await engram.data.send_message(  # type: ignore[union-attr]
        codec.to_pb_data_request(StreamMessage.json({"dropped": True}))
    )
    await conn.wait_until(lambda: conn.stats.dropped_upstream == 1)
    conn.resume()
    await engram.data.send_message(  # type: ignore[union-attr]
        codec.to_pb_data_request(StreamMessage.json({"kept": True}))
    )
    assert (await conn.next_output()).json_data() == {"kept": True}
    assert conn.outputs.empty()


async def test_engram_stop_downstream_gate_holds_packets_for_replay(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    await engram.control.send_message(codec.control_request("stop-downstream"))  # type: ignore[union-attr]
    ack = await engram.recv_control()
    assert _meta(ack) == {"received": "stop-downstream", "handled": "true"}
    assert conn.downstream_open is False and conn.upstream_open is True
    await conn.send(StreamMessage.json({"n": 1}))
    await conn.wait_until(lambda: conn.stats.dropped_downstream == 1)
    assert conn.unacked == [("default/local-run/local-step", "", 1)]

    await engram.control.send_message(codec.control_request("start"))  # type: ignore[union-attr]
    await engram.recv_control()
    await conn.send(StreamMessage.json({"n": 2}))
    assert (await engram.recv_data()).envelope.sequence == 2


async def test_per_partition_sequences_and_sorted_replay() -> None:
    async with LocalConnector(ordering="per_partition") as conn:
        e = RawEngram(conn)
        await e.open()
        await e.handshake()
        await conn.send(StreamMessage.json({"a": 1}), partition="p1")
        await conn.send(StreamMessage.json({"a": 2}), partition="p0")
        await conn.send(StreamMessage.json({"a": 3}), partition="p1")
        got = [await e.recv_data() for _ in range(3)]
        assert [(p.envelope.partition, p.envelope.sequence) for p in got] == [
            ("p1", 1),
            ("p0", 1),
            ("p1", 2),
        ]
        await conn.kill_session()
        await e.close()
        e2 = RawEngram(conn)
        await e2.open()
        try:
            await e2.handshake()
            replay = [await e2.recv_data() for _ in range(3)]
            assert [(p.envelope.partition, p.envelope.sequence) for p in replay] == [
                ("p0", 1),
                ("p1", 1),
                ("p1", 2),
            ]
        finally:
            await e2.close()


async def test_invalid_engram_packet_is_recorded_not_output(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    bad = pb.DataRequest(audio=pb.AudioFrame(pcm=b"x", sample_rate_hz=7999, channels=1))
    await engram.data.send_message(bad)  # type: ignore[union-attr]
    await conn.wait_until(lambda: bool(conn.stats.violations))
    assert "audio.sample_rate_hz" in conn.stats.violations[0]
    assert conn.outputs.empty()


async def test_oversized_message_is_resource_exhausted() -> None:
    async with LocalConnector(max_message_bytes=1024) as conn:
        e = RawEngram(conn)
        await e.open()
        try:
            await e.handshake()
            big = StreamMessage.from_bytes(b"x" * 4096)
            await e.data.send_message(codec.to_pb_data_request(big))  # type: ignore[union-attr]
            with pytest.raises(GRPCError) as info:
                await e.recv_data()
            assert info.value.status is Status.RESOURCE_EXHAUSTED
        finally:
            await e.close()


async def test_unix_socket_endpoint(tmp_path: Any) -> None:
    path = str(tmp_path / "connector.sock")
    async with LocalConnector(unix_path=path) as conn:
        assert conn.address == f"unix://{path}"
        e = RawEngram(conn)
        await e.open()
        try:
            await e.handshake()
            await conn.send(StreamMessage.json({"over": "unix"}))
            packet = await e.recv_data()
            assert codec.from_pb_packet(packet).json_data() == {"over": "unix"}
        finally:
            await e.close()


async def test_directive_from_test_reaches_engram(conn: LocalConnector, engram: RawEngram) -> None:
    await engram.handshake()
    await conn.send_control("handoff.draining", {"reason": "hub_disconnected"})
    resp = await engram.recv_control()
    assert resp.action == pb.CONTROL_ACTION_HANDOFF_DRAINING
    assert _meta(resp) == {"reason": "hub_disconnected"}


@pytest.mark.parametrize("mode", ["eof", "reset"])
async def test_kill_session_modes(conn: LocalConnector, engram: RawEngram, mode: str) -> None:
    await engram.handshake()
    await conn.kill_session(mode)  # type: ignore[arg-type]
    if mode == "eof":
        with pytest.raises(EOFError):
            await engram.recv_data()
    else:
        with pytest.raises(StreamTerminatedError):
            await engram.recv_data()
    await conn.wait_until(lambda: not conn.connected)


async def test_chunked_packet_shares_one_sequence_and_replays_whole(
    conn: LocalConnector, engram: RawEngram
) -> None:
    await engram.handshake()
    data = b"hello-world!"
    await conn.send_chunked(
        data, "text/plain", chunk_size=5, order=[2, 0, 1], duplicate=0, metadata={"m": "1"}
    )
    got = [await engram.recv_data() for _ in range(4)]
    assert [p.envelope.chunk_index for p in got] == [2, 0, 1, 0]
    assert {(p.envelope.sequence, p.envelope.chunk_count, p.envelope.total_bytes) for p in got} == {
        (1, 3, len(data))
    }
    assert [p.envelope.chunk_bytes for p in got] == [2, 5, 5, 5]
    assert all(p.envelope.chunk_id == "chunk-1" and p.binary.mime_type == "text/plain" for p in got)

    # The receipt carries the reassembled packet's size: first-arriving chunk as template.
    template = pb.DataResponse()
    template.CopyFrom(got[0])
    template.binary.payload = data
    for name in ("chunk_id", "chunk_index", "chunk_count", "chunk_bytes", "total_bytes"):
        template.envelope.ClearField(name)
    await conn.kill_session()
    await engram.close()
    again = RawEngram(conn)
    await again.open()
    try:
        await again.handshake()
        replay = [await again.recv_data() for _ in range(4)]
        assert [p.envelope.chunk_index for p in replay] == [2, 0, 1, 0]
        await again.control.send_message(  # type: ignore[union-attr]
            codec.delivery_receipt(conn.stream_id, 1, "", codec.packet_size(template))
        )
        await conn.wait_until(lambda: bool(conn.stats.receipts))
        assert conn.stats.receipts[0].size_ok
        assert conn.unacked == []
    finally:
        await again.close()


async def test_periodic_hub_heartbeats() -> None:
    async with LocalConnector(heartbeat_interval=0.05) as conn:
        e = RawEngram(conn)
        await e.open()
        try:
            await e.handshake()
            beats = [await e.recv_data() for _ in range(2)]
            assert all(dict(b.metadata) == {"bubu-heartbeat": "true"} for b in beats)
            assert all(b.binary.mime_type == "application/vnd.bubu.packet+json" for b in beats)
        finally:
            await e.close()
