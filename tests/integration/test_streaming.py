"""The streaming runtime against the local connector over loopback gRPC.

See docs/contract/stream.md.

Each test starts a :class:`~bubu.testkit._connector.LocalConnector`, runs the real
``start_streaming`` path (binding parsing, settings, session, reconnect loop) against it and checks
what crosses the wire. Sockets: loopback only. Timers are shortened through the binding's
``payload.env`` overrides, which also exercises that path (docs/contract/stream.md#environment).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import json
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest

from bubu._aio.shutdown import Shutdown
from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import BinaryFrame, InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._streaming import ControlDirective, start_streaming
from bubu._transport import _fastpath, codec
from bubu.engram import StreamingEngram
from bubu.errors import (
    ConnectorUnavailableError,
    HandshakeTimeoutError,
    ProtocolViolationError,
    StreamSessionError,
)
from bubu.testkit._connector import LocalConnector
from tests.integration._stream_helpers import FAST, Collect, Emitter, eventually, running
from tests.integration._stream_helpers import connector as _connector

pytestmark = pytest.mark.loopback


class Echo(StreamingEngram[dict[str, Any]]):
    """Echo every JSON message; records what it saw."""

    def __init__(self) -> None:
        self.inits = 0
        self.streams = 0
        self.seen: list[StreamMessage] = []

    async def init(self, config: dict[str, Any], secrets: Any) -> None:
        self.inits += 1

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        self.streams += 1
        async for msg in inbound:
            async with msg:
                self.seen.append(msg.message)
                yield StreamMessage.json(msg.json_data() or {"raw": True})


def _types(conn: LocalConnector) -> list[str]:
    return [codec.control_type(r.action, r.custom_action) for r in conn.control_requests]


def _acks(conn: LocalConnector) -> dict[str, dict[str, str]]:
    out: dict[str, dict[str, str]] = {}
    for req in conn.control_requests:
        if req.action == pb.CONTROL_ACTION_ACK:
            meta = dict(req.metadata)
            out[meta.get("type", "")] = meta
    return out


# -- A. session and control ------------------------------------------------------------------


async def test_handshake_headers_and_ready_ack_before_stream_starts() -> None:
    engram = Echo()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        out = await conn.next_output()
        assert out.json_data() == {"n": 1}
        assert conn.data_headers[0]["bubu-transport-protocol"] == "1.0.0"
        assert "bubu.transport.binding" not in conn.data_headers[0]
        assert conn.control_headers[0]["bubu-transport-protocol"] == "1.0.0"
        assert conn.control_headers[0]["bubu.transport.binding"] == "default/local-binding"
        ready = _acks(conn)["connector.ready"]
        assert ready == {"type": "connector.ready", "handled": "true", "reason": "startup"}
        assert conn.control_requests[0].action == pb.CONTROL_ACTION_ACK
        assert engram.inits == 1 and engram.streams == 1


async def test_stream_never_starts_without_ready_and_handshake_timeout_is_fatal() -> None:
    engram = Echo()
    async with _connector(send_ready=False, env={"BUBU_GRPC_MESSAGE_TIMEOUT": "300ms"}) as conn:
        async with running(engram, conn) as task:
            with pytest.raises(HandshakeTimeoutError, match="handshake timed out"):
                await asyncio.wait_for(task, 5)
        assert engram.streams == 0
        assert conn.stats.control_sessions == 1  # not retried


async def test_missing_protocol_header_is_failed_precondition_and_not_retried() -> None:
    from bubu._runtime.transport import TransportSettings
    from bubu._streaming import run_with_reconnect, supervise
    from bubu._transport.session import DeliveryBook, Session

    settings = TransportSettings(reconnect_base_backoff=0.01)
    started: list[int] = []

    async def engram(inbound: Any, emit: Any) -> None:
        started.append(1)

    async with LocalConnector() as conn:

        def make() -> Session:
            return Session(
                endpoint=conn.address,
                binding_reference="",
                settings=settings,
                book=DeliveryBook(),
                body=supervise(engram),
                protocol_header=None,
            )

        with pytest.raises(ProtocolViolationError, match="FAILED_PRECONDITION"):
            await run_with_reconnect(make, settings)
    assert started == []


async def test_required_capabilities_wait_for_capabilities_ack() -> None:
    engram = Echo()
    async with _connector(startup_capabilities="required") as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 2}))
        assert (await conn.next_output()).json_data() == {"n": 2}
        caps = _acks(conn)["connector.capabilities"]
        assert caps == {
            "type": "connector.capabilities",
            "handled": "true",
            "reason": "capabilities",
        }


async def test_required_capabilities_missing_is_handshake_timeout() -> None:
    engram = Echo()
    env = {"BUBU_GRPC_MESSAGE_TIMEOUT": "300ms"}
    conn = _connector(startup_capabilities="required", send_capabilities=False, env=env)
    async with conn, running(engram, conn) as task:
        with pytest.raises(HandshakeTimeoutError, match=r"connector\.capabilities"):
            await asyncio.wait_for(task, 5)
    assert engram.streams == 0


@pytest.mark.parametrize("value", [None, "legacy"])
async def test_ready_with_missing_or_invalid_startup_capabilities_is_fatal(
    value: str | None,
) -> None:
    engram = Echo()
    async with _connector(startup_capabilities=value) as conn, running(engram, conn) as task:
        with pytest.raises(ProtocolViolationError, match="invalid connector.ready startup"):
            await asyncio.wait_for(task, 5)
    assert engram.streams == 0
    assert conn.stats.control_sessions == 1


async def test_default_directive_replies() -> None:
    async with _connector() as conn, running(Echo(), conn):
        await conn.wait_ready()
        for directive in ("handoff.draining", "start", "heartbeat", "codec-select", "custom.x"):
            await conn.send_control(directive)
        await conn.send_control("noop")
        await conn.send_control("ack", {"received": "heartbeat"})
        await conn.wait_until(lambda: "noop" in _acks(conn), timeout=5)
        acks = _acks(conn)
        assert acks["handoff.cutover"]["reason"] == "handoff"
        assert acks["handoff.draining"] == {
            "type": "handoff.draining",
            "handled": "true",
            "reason": "handoff",
        }
        for directive in ("start", "heartbeat", "codec-select", "custom.x"):
            assert acks[directive]["handled"] == "false"
            assert acks[directive]["reason"] == "no_control_handler"
        assert acks["noop"] == {"type": "noop", "handled": "false", "reason": "noop"}
        assert "ack" not in acks  # an ACK is never answered: no ack ping-pong


async def test_heartbeats_on_both_streams_from_binding_env_overrides() -> None:
    env = {"BUBU_GRPC_HEARTBEAT_INTERVAL": "50ms", "BUBU_TRANSPORT_HEARTBEAT_INTERVAL": "50ms"}
    async with _connector(env=env) as conn, running(Echo(), conn):
        await conn.wait_ready()
        await conn.wait_until(
            lambda: conn.stats.data_heartbeats >= 2 and conn.stats.control_heartbeats >= 2,
            timeout=5,
        )
        beat = next(r for r in conn.control_requests if r.action == pb.CONTROL_ACTION_HEARTBEAT)
        assert beat.metadata["ts"].isdigit()


async def test_data_heartbeat_ticker_restarts_after_every_real_send() -> None:
    # Go resets the Data heartbeat ticker after each real send
    # (docs/contract/stream.md#heartbeats): a busy stream carries no heartbeats; an idle one gets
    # one per interval. Checked as the rule itself, so a loaded machine that stalls the stream
    # cannot break it: every heartbeat comes at least an interval after the last real packet (half
    # of it, as the connector sees both, for transit delays). A ticker that did not restart would
    # put one within ~0.1 s of a send.
    interval = 1.0
    env = {"BUBU_GRPC_HEARTBEAT_INTERVAL": "1s", "BUBU_GRPC_MESSAGE_TIMEOUT": "5s"}
    async with _connector(env=env) as conn, running(Echo(), conn):
        arrivals: list[tuple[float, bool]] = []  # (when the connector got it, a heartbeat?)
        original = conn._on_published

        def record(req: pb.DataRequest) -> None:
            beat = req.WhichOneof("frame") is None and codec.is_heartbeat_metadata(req.metadata)
            arrivals.append((time.monotonic(), beat))
            original(req)

        conn._on_published = record  # type: ignore[method-assign]
        await conn.wait_ready()
        for n in range(25):
            await conn.send(StreamMessage.json({"n": n}))
            await conn.next_output()
            await asyncio.sleep(0.1)
        sends = len(arrivals)
        await conn.wait_until(lambda: any(beat for _, beat in arrivals[sends:]), timeout=30)
    last_real = None
    for when, beat in arrivals:
        if not beat:
            last_real = when
        elif last_real is not None:
            assert when - last_real >= interval / 2, arrivals
    assert sum(not beat for _, beat in arrivals) == 25


async def test_handoff_draining_then_cutover_keeps_streaming_without_loss() -> None:
    # A connector hub-bridge recycle (docs/contract/stream.md#shutdown): the engram sees draining
    # then cutover on Control, ACKs both, and its Data stream with the connector is untouched
    # (scenario 34).
    engram = Echo()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.send_control("handoff.draining", {"phase": "draining", "reason": "hub_x"})
        await conn.send(StreamMessage.json({"n": 2}))
        await conn.send_control("handoff.cutover", {"phase": "cutover", "reason": "hub_y"})
        await conn.send(StreamMessage.json({"n": 3}))
        outputs = [(await conn.next_output()).json_data() for _ in range(3)]
        await conn.wait_until(lambda: len(conn.stats.receipts) == 3)
    assert outputs == [{"n": 1}, {"n": 2}, {"n": 3}]
    acks = [dict(r.metadata) for r in conn.control_requests if r.action == pb.CONTROL_ACTION_ACK]
    handoffs = [a["type"] for a in acks if a["type"].startswith("handoff.")]
    # The first cutover is the connector's startup snapshot.
    assert handoffs == ["handoff.cutover", "handoff.draining", "handoff.cutover"]
    assert all(a["reason"] == "handoff" for a in acks if a["type"].startswith("handoff."))
    assert conn.stats.data_sessions == 1 and engram.streams == 1 and conn.unacked == []


class Custom(Echo):
    async def on_control(self, directive: ControlDirective) -> ControlDirective | None:
        if directive.type == "start":
            return ControlDirective(type="foo", metadata={"seen": directive.type})
        if directive.type == "stop":
            raise RuntimeError("cannot stop")
        return directive.default_reply()


async def test_custom_control_handler_reply_and_error() -> None:
    async with _connector() as conn, running(Custom(), conn):
        await conn.wait_ready()
        await conn.send_control("start")
        await conn.send_control("stop")
        foo = await conn.wait_control("foo")
        assert foo.action == pb.CONTROL_ACTION_UNSPECIFIED
        assert foo.custom_action == "foo"
        assert dict(foo.metadata) == {"seen": "start"}
        err = await conn.wait_control("error")
        assert err.action == pb.CONTROL_ACTION_ERROR
        assert err.metadata["message"] == "cannot stop"


# -- B. inbound --------------------------------------------------------------------------------


async def test_hub_heartbeat_is_never_delivered_but_data_is() -> None:
    engram = Echo()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send_heartbeat()
        await conn.send(StreamMessage.json({"n": 3}))
        assert (await conn.next_output()).json_data() == {"n": 3}
        assert [m.json_data() for m in engram.seen] == [{"n": 3}]


async def test_raw_binary_keeps_mime_and_empty_mime_defaults() -> None:
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.from_bytes(b"hello", "text/plain"))
        packet = pb.DataResponse()
        packet.binary.payload = b"\x00\x01"
        await conn.send_packet(packet)
        await engram.wait_for(2)
    first, second = engram.seen
    assert first.payload == b"hello" and first.binary.mime_type == "text/plain"
    assert second.payload == b"\x00\x01"
    assert second.binary.mime_type == "application/octet-stream"


async def test_message_id_dedupe_without_sequence() -> None:
    engram = Collect()
    async with _connector(sequenced=False) as conn, running(engram, conn):
        await conn.wait_ready()
        hook = StreamMessage.json({"event": "storyrun.ready"}, kind="hook", message_id="ns/run:r")
        await conn.send(hook)
        await conn.send(hook)
        await conn.send(StreamMessage.json({"n": "after"}))
        await engram.wait_for(2)
    # In order: a copy of the hook that got through would be the second message, before "after".
    assert [m.kind for m in engram.seen] == ["hook", "data"]
    assert engram.seen[0].message_id == "ns/run:r"


async def test_receipt_only_after_done_with_go_fields_and_once() -> None:
    engram = Collect(hold=True)
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await engram.wait_for(1)
        # Receipts leave in done() order, so the receipt of a later message is the barrier: a
        # receipt sent for n=1 before its done() would arrive before the one for n=2.
        await conn.send(StreamMessage.json({"n": 2}))
        await engram.wait_for(2)
        engram.seen[1].done()
        await conn.wait_until(lambda: len(conn.stats.receipts) >= 1)
        assert [r.sequence for r in conn.stats.receipts] == [2]
        engram.seen[0].done()
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
        receipt = conn.stats.receipts[1]
        assert (receipt.stream_id, receipt.sequence, receipt.partition) == (
            conn.stream_id,
            1,
            "",
        )
        assert receipt.size_ok  # size_bytes == proto.Size of the packet
        engram.seen[0].done()  # a second done() sends nothing: n=3's receipt comes next
        req = next(r for r in conn.control_requests if r.custom_action == "downstream.delivered")
        assert req.action == pb.CONTROL_ACTION_UNSPECIFIED
        assert set(req.metadata) == {"stream_id", "sequence", "partition", "size_bytes"}
        await conn.send(StreamMessage.json({"n": 3}))
        await engram.wait_for(3)
        engram.seen[2].done()
        await conn.wait_until(lambda: len(conn.stats.receipts) >= 3)
        assert [r.sequence for r in conn.stats.receipts] == [2, 1, 3]


async def test_receipt_sizes_follow_go_proto_size_for_whole_and_chunked_packets() -> None:
    # A whole packet's size is the length it arrived with; a chunked one is measured after
    # reassembly with its chunk fields cleared (docs/contract/stream.md#acks), not as its last
    # chunk.
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"doc": {"k": "v" * 300, "n": [1, 2.5, None]}}))
        await conn.send_chunked(b"0123456789" * 40, "text/plain", chunk_size=150, order=[2, 0, 1])
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
    whole, chunked = sorted(conn.stats.receipts, key=lambda r: r.sequence)
    assert whole.expected_size is not None and chunked.expected_size is not None
    assert whole.size_ok and chunked.size_ok
    assert chunked.size_bytes > 400  # the reassembled payload, not one 150-byte chunk
    assert engram.seen[1].payload == b"0123456789" * 40


async def test_frameless_sequenced_packet_gets_an_immediate_receipt() -> None:
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        packet = pb.DataResponse(metadata={"bubu-heartbeat": "true"})
        packet.envelope.stream_id = "s"
        packet.envelope.sequence = 9
        await conn.send_packet(packet)
        await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
    assert conn.stats.receipts[0].sequence == 9
    assert engram.seen == []


def _sequenced(n: int, seq: int, stream_id: str = "s", partition: str = "") -> pb.DataResponse:
    packet = codec.to_pb_data_response(StreamMessage.json({"n": n}))
    packet.envelope.stream_id = stream_id
    packet.envelope.sequence = seq
    packet.envelope.partition = partition
    return packet


async def test_pending_duplicate_dropped_and_done_duplicate_resends_receipt() -> None:
    engram = Collect(hold=True)
    async with _connector(sequenced=False) as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send_packet(_sequenced(1, 5))
        await conn.send_packet(_sequenced(1, 5))  # pending duplicate: dropped silently
        await conn.send(StreamMessage.json({"marker": True}))
        await engram.wait_for(2)
        assert [m.json_data() for m in engram.seen] == [{"n": 1}, {"marker": True}]
        assert conn.stats.receipts == []
        engram.seen[0].done()
        await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
        await conn.send_packet(_sequenced(1, 5))  # completed duplicate: receipt re-sent
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
    assert len(engram.seen) == 2
    assert [r.sequence for r in conn.stats.receipts] == [5, 5]


async def test_reconnect_redelivers_undone_and_suppresses_done() -> None:
    engram = Collect(hold=True)
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.send(StreamMessage.json({"n": 2}))
        await engram.wait_for(2)
        engram.seen[0].done()
        await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
        await conn.restart()  # the connector replays seq 2 (never receipted)
        await engram.wait_for(3)
        # A hub replay of seq 1, which was done in the first session.
        await conn.send_packet(_sequenced(1, 1, conn.stream_id))
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
        assert engram.streams == 2 and engram.inits == 1
        # seq 2 (not done) came again; seq 1 (done) was suppressed and its receipt re-sent.
        assert [m.envelope.sequence for m in engram.seen] == [1, 2, 2]
        assert [r.sequence for r in conn.stats.receipts] == [1, 1]


async def test_per_partition_sequences_are_distinct() -> None:
    engram = Collect()
    async with _connector(ordering="per_partition") as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"p": 0}), partition="p0")
        await conn.send(StreamMessage.json({"p": 1}), partition="p1")
        await engram.wait_for(2)
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
    assert {(m.envelope.partition, m.envelope.sequence) for m in engram.seen} == {
        ("p0", 1),
        ("p1", 1),
    }
    assert sorted(r.partition for r in conn.stats.receipts) == ["p0", "p1"]


async def test_binding_delivery_and_flow_control_drive_sequencing_and_hub_acks() -> None:
    # The Go connector configures its flow tracker from BindingInfo.payload
    # (docs/contract/stream.md#acks): receipts become FlowControl updates for the hub,
    # partition_acks sorted by partition.
    settings = {
        "env": FAST,
        "delivery": {"ordering": "per_partition"},
        "flowControl": {"mode": "window", "ackEvery": {"messages": 2}},
    }
    engram = Collect()
    async with LocalConnector(settings=settings) as conn, running(engram, conn):
        assert (conn.sequenced, conn.ordering) == (True, "per_partition")
        await conn.wait_ready()
        for n, partition in enumerate(["p1", "p0", "p1", "p0"]):
            await conn.send(StreamMessage.json({"n": n}), partition=partition)
        await engram.wait_for(4)
        await conn.wait_until(lambda: len(conn.hub_flow) == 2)
    acks = [[(a.partition, a.ack) for a in f.partition_acks] for f in conn.hub_flow]
    assert acks == [[("p0", 1), ("p1", 1)], [("p0", 2), ("p1", 2)]]
    assert all(f.ack == 0 and f.credits_messages == 0 for f in conn.hub_flow)


async def test_binding_without_ordering_sends_unsequenced_and_credits_on_send() -> None:
    settings = {
        "env": FAST,
        "delivery": {"ordering": "none", "semantics": "best_effort"},
        "flowControl": {"mode": "credits", "ackEvery": {"messages": 2}},
    }
    engram = Collect()
    async with LocalConnector(settings=settings) as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.send(StreamMessage.json({"n": 2}))
        await engram.wait_for(2)
        await conn.wait_until(lambda: len(conn.hub_flow) == 1)
        await asyncio.sleep(0.05)
    # No sequence, so no receipt to wait for: counted as soon as sent (Go RecordDelivery).
    assert all(m.envelope is None or m.envelope.sequence == 0 for m in engram.seen)
    assert conn.stats.receipts == [] and conn.unacked == []
    flow = conn.hub_flow[0]
    assert (flow.ack, flow.credits_messages) == (0, 2) and flow.credits_bytes > 0


def _chunk(
    data: bytes, index: int, count: int, *, chunk_id: str = "c1", chunk_bytes: int | None = None
) -> pb.DataResponse:
    packet = pb.DataResponse(metadata={"first": str(index)})
    packet.binary.payload = data
    packet.binary.mime_type = "text/plain"
    env = packet.envelope
    env.stream_id = "chunky"
    env.chunk_id = chunk_id
    env.chunk_index = index
    env.chunk_count = count
    env.chunk_bytes = len(data) if chunk_bytes is None else chunk_bytes
    return packet


async def test_chunks_out_of_order_with_duplicate_make_one_message() -> None:
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        for index, part in ((2, b"!!"), (0, b"hello-"), (0, b"hello-"), (1, b"world")):
            await conn.send_packet(_chunk(part, index, 3))
        await conn.send(StreamMessage.json({"marker": True}))  # in order, after every chunk
        await engram.wait_for(2)
    assert len(engram.seen) == 2 and engram.seen[1].json_data() == {"marker": True}
    msg = engram.seen[0]
    assert msg.payload == b"hello-world!!"
    assert msg.metadata == {"first": "2"}  # the first-arriving chunk is the template
    assert msg.envelope.chunk_count == 0 and msg.envelope.chunk_id == ""


@pytest.mark.parametrize(
    "packets",
    [
        pytest.param([_chunk(b"abc", 0, 2, chunk_bytes=5)], id="chunk_bytes-mismatch"),
        pytest.param([_chunk(b"a", 0, 2), _chunk(b"b", 1, 3)], id="count-changes"),
        pytest.param([_chunk(b"a", 0, 257)], id="257-chunks"),
    ],
)
async def test_bad_chunk_sequences_end_the_session_and_reconnect(
    packets: list[pb.DataResponse],
) -> None:
    engram = Collect()
    async with _connector(sequenced=False, validate_inbound=False) as conn, running(engram, conn):
        await conn.wait_ready()
        for packet in packets:
            await conn.send_packet(packet)
        await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"after": True}))
        await engram.wait_for(1)
    assert [m.json_data() for m in engram.seen] == [{"after": True}]
    assert engram.inits == 1 and engram.streams >= 2


def _eleven_transports() -> pb.DataResponse:
    packet = codec.to_pb_data_response(StreamMessage.json({"n": 1}))
    for i in range(11):
        packet.transports.add(name=f"t{i}")
    return packet


def _empty_metadata_key() -> pb.DataResponse:
    packet = codec.to_pb_data_response(StreamMessage.json({"n": 1}))
    packet.metadata[""] = "x"
    return packet


def _low_sample_rate() -> pb.DataResponse:
    packet = pb.DataResponse()
    packet.audio.pcm = b"\x00\x00"
    packet.audio.sample_rate_hz = 7999
    packet.audio.channels = 1
    return packet


def _long_stream_id() -> pb.DataResponse:
    packet = codec.to_pb_data_response(StreamMessage.json({"n": 1}))
    packet.envelope.stream_id = "s" * 129
    return packet


@pytest.mark.parametrize(
    "make",
    [_eleven_transports, _empty_metadata_key, _low_sample_rate, _long_stream_id],
)
async def test_invalid_inbound_packets_are_session_errors_then_reconnect(
    make: Callable[[], pb.DataResponse],
) -> None:
    engram = Collect()
    async with _connector(sequenced=False) as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send_packet(make())
        await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"ok": True}))
        await engram.wait_for(1)
    assert [m.json_data() for m in engram.seen] == [{"ok": True}]


@pytest.mark.parametrize(
    "make",
    [_eleven_transports, _empty_metadata_key, _low_sample_rate, _long_stream_id],
)
async def test_invalid_inbound_packets_taken_by_the_protocol_callback_are_session_errors_too(
    make: Callable[[], pb.DataResponse], monkeypatch: pytest.MonkeyPatch
) -> None:
    # After the first message the receive task waits between messages, and the next packet is
    # taken in the protocol callback (_fastpath.direct_reads): a bad one must end the session
    # exactly as when the receive task reads it, and the good ones around it stay in order.
    from bubu._transport.session import Session

    direct: list[int] = []
    accept_direct = Session._accept_direct

    def spy(self: Session, packet: Any) -> None:
        direct.append(1)
        accept_direct(self, packet)

    monkeypatch.setattr(Session, "_accept_direct", spy)
    engram = Collect()
    async with _connector(sequenced=False) as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await engram.wait_for(1)
        await conn.send(StreamMessage.json({"n": 2}))
        await engram.wait_for(2)
        await conn.send_packet(make())
        await conn.wait_until(lambda: conn.stats.data_sessions >= 2, timeout=5)
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 3}))
        await engram.wait_for(3)
    assert [m.json_data() for m in engram.seen] == [{"n": 1}, {"n": 2}, {"n": 3}]
    if _fastpath.enabled():
        assert len(direct) >= 2  # n=2 and the bad packet, at least
    else:
        assert direct == []


async def test_a_full_queue_hands_packets_back_to_the_receive_task_in_order() -> None:
    # Buffer 1 and an engram that holds its first message, then takes a millisecond per
    # message: packets taken in the protocol callback find the queue full and go back to the
    # receive task, which waits for room. Nothing is lost, skipped or reordered, and every
    # packet is receipted once.
    class Sluggish(StreamingEngram[dict[str, Any]]):
        def __init__(self) -> None:
            self.seen: list[int] = []
            self.release = asyncio.Event()

        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            async for msg in inbound:
                self.seen.append(msg.message.json_data()["n"])
                await self.release.wait()
                await asyncio.sleep(0.001)
                msg.done()
            return
            yield  # pragma: no cover

    engram = Sluggish()
    count = 60
    env = {"BUBU_GRPC_CHANNEL_BUFFER_SIZE": "1"}
    async with _connector(env=env) as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 0}))
        await eventually(lambda: engram.seen == [0])
        for n in range(1, count):
            await conn.send(StreamMessage.json({"n": n}))
        await conn.wait_until(lambda: conn.stats.sent == count)
        engram.release.set()
        await conn.wait_until(lambda: len(conn.stats.receipts) == count, timeout=20)
    assert engram.seen == list(range(count))
    assert sorted(r.sequence for r in conn.stats.receipts) == list(range(1, count + 1))


class Slow(StreamingEngram[dict[str, Any]]):
    """Takes one message, then blocks until released."""

    def __init__(self) -> None:
        self.seen: list[InboundMessage] = []
        self.release = asyncio.Event()

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            self.seen.append(msg)
            await self.release.wait()
            msg.done()
        return
        yield  # pragma: no cover


async def test_channel_send_timeout_drops_without_receipt_and_replay_delivers() -> None:
    engram = Slow()
    env = {"BUBU_GRPC_CHANNEL_SEND_TIMEOUT": "20ms", "BUBU_GRPC_CHANNEL_BUFFER_SIZE": "1"}
    async with _connector(env=env) as conn, running(engram, conn):
        await conn.wait_ready()
        for n in range(4):
            await conn.send(StreamMessage.json({"n": n}))
        await conn.wait_until(lambda: conn.stats.sent == 4)
        await asyncio.sleep(0.2)  # n=2, 3 could not be queued within 20 ms: dropped
        engram.release.set()
        await conn.wait_until(lambda: len(conn.stats.receipts) == 2)
        assert sorted(r.sequence for r in conn.stats.receipts) == [1, 2]
        await conn.restart()  # the hub replays what was never receipted
        await conn.wait_until(lambda: len(conn.stats.receipts) == 4, timeout=5)
    assert [m.json_data()["n"] for m in engram.seen] == [0, 1, 2, 3]


# -- C. outbound -------------------------------------------------------------------------------


async def _emit_all(messages: list[StreamMessage]) -> tuple[LocalConnector, Emitter]:
    engram = Emitter(messages)
    async with _connector() as conn, running(engram, conn) as task:
        assert await asyncio.wait_for(task, 10) == 0
    return conn, engram


async def test_json_mirror_goes_out_as_envelope_plus_struct() -> None:
    conn, _ = await _emit_all([StreamMessage.json({"a": 1}, kind="result", message_id="m1")])
    (packet,) = conn.published_packets
    assert packet.binary.mime_type == "application/vnd.bubu.packet+json"
    assert packet.HasField("payload") and packet.payload.fields["a"].number_value == 1
    assert packet.metadata["bubu.envelope.kind"] == "result"
    assert packet.metadata["bubu.envelope.message_id"] == "m1"
    out = conn.outputs.get_nowait()
    assert out.json_data() == {"a": 1} and out.binary.mime_type == "application/json"


async def test_raw_binary_goes_out_raw_without_struct() -> None:
    conn, _ = await _emit_all([StreamMessage.from_bytes(b"\x01\x02", "application/custom")])
    (packet,) = conn.published_packets
    assert packet.binary.payload == b"\x01\x02"
    assert packet.binary.mime_type == "application/custom"
    assert not packet.HasField("payload")


async def test_mirrored_custom_mime_bypass_error_kind_and_hoisted_envelope_keys() -> None:
    # Scenarios 21, 25 and 26 over the wire: a payload mirrored under a non-JSON MIME goes out
    # as a raw frame; a Kind=error message carries its StructuredError as an envelope; kind,
    # message id and timestamp travel as bubu.envelope.* metadata and come back hoisted.
    when = dt.datetime(2026, 11, 28, 12, 0, 0, 123000, tzinfo=dt.UTC)
    raw = b"\x00\x01custom"
    bypass = StreamMessage(payload=raw, binary=BinaryFrame(raw, "application/custom-binary"))
    error = StreamMessage.error("boom", type="validation_error", retryable=False, code="E1")
    stamped = StreamMessage.json({"a": 1}, kind="result", message_id="m-7", timestamp=when)
    conn, _ = await _emit_all([bypass, error, stamped])
    raw_packet, error_packet, stamped_packet = conn.published_packets
    assert raw_packet.binary.mime_type == "application/custom-binary"
    assert raw_packet.binary.payload == raw and not raw_packet.HasField("payload")
    assert error_packet.binary.mime_type == "application/vnd.bubu.packet+json"
    assert error_packet.metadata["bubu.envelope.kind"] == "error"
    assert stamped_packet.metadata["bubu.envelope.message_id"] == "m-7"
    assert stamped_packet.metadata["bubu.envelope.timestamp_ms"] == str(
        int(when.timestamp() * 1000)
    )
    _, err, back = [conn.outputs.get_nowait() for _ in range(3)]
    assert err.is_error and err.binary is None
    assert err.error_info() == {
        "version": "v1",
        "type": "validation_error",
        "message": "boom",
        "retryable": False,
        "code": "E1",
    }
    assert (back.kind, back.message_id, back.timestamp) == ("result", "m-7", when)
    assert back.metadata == {}  # the reserved keys were hoisted out of the metadata


async def test_audio_goes_out_and_invalid_frames_are_thrown_back_at_the_yield() -> None:
    good = StreamMessage.from_audio(b"\x00" * 640, 16000, timestamp_ms=10)
    bad_rate = StreamMessage.from_audio(b"\x00" * 640, 7999)
    bad_video = StreamMessage.from_video(b"\x00", codec="")
    conn, engram = await _emit_all([bad_rate, good, bad_video])
    (packet,) = conn.published_packets
    assert packet.audio.sample_rate_hz == 16000 and packet.audio.timestamp_ms == 10
    assert len(engram.rejected) == 2
    assert "sample_rate_hz" in str(engram.rejected[0])
    assert "codec" in str(engram.rejected[1])


async def test_oversized_outbound_message_is_refused_before_the_wire() -> None:
    big = StreamMessage.from_bytes(b"x" * (10 * 1024 * 1024 + 1), "application/octet-stream")
    conn, engram = await _emit_all([big, StreamMessage.json({"small": True})])
    assert len(engram.rejected) == 1
    assert "larger than max" in str(engram.rejected[0]) or "10485760" in str(engram.rejected[0])
    assert [p.HasField("payload") for p in conn.published_packets] == [True]


async def test_kind_only_message_goes_out_as_envelope() -> None:
    conn, _ = await _emit_all([StreamMessage(kind="telemetry", metadata={"a": "b"})])
    (packet,) = conn.published_packets
    assert packet.binary.mime_type == "application/vnd.bubu.packet+json"
    assert not packet.HasField("payload")
    assert conn.outputs.get_nowait().kind == "telemetry"


async def test_uncaught_invalid_outbound_ends_session_and_reconnects() -> None:
    class Bad(StreamingEngram[dict[str, Any]]):
        streams = 0

        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            type(self).streams += 1
            if type(self).streams == 1:
                yield StreamMessage.from_audio(b"\x00\x00", 7999)
            yield StreamMessage.json({"second": True})

    async with _connector() as conn, running(Bad(), conn) as task:
        assert await asyncio.wait_for(task, 10) == 0
    assert Bad.streams == 2
    assert conn.outputs.get_nowait().json_data() == {"second": True}


# -- D. resilience and shutdown ----------------------------------------------------------------


async def test_stream_return_flushes_outbound_then_ends_without_reconnect() -> None:
    messages = [StreamMessage.json({"n": n}) for n in range(50)]
    conn, _ = await _emit_all(messages)
    assert [conn.outputs.get_nowait().json_data()["n"] for _ in range(50)] == list(range(50))
    assert conn.stats.data_sessions == 1


async def test_retries_exhausted_when_connector_is_gone() -> None:
    engram = Echo()
    env = {"BUBU_GRPC_RECONNECT_MAX_RETRIES": "2", "BUBU_GRPC_DIAL_TIMEOUT": "200ms"}
    async with _connector(env=env) as conn:
        binding = conn.binding_env()
    # The connector is closed: every dial is refused (retryable) until retries run out.
    task = asyncio.create_task(start_streaming(engram, source=MappingSource(binding)))
    with pytest.raises(StreamSessionError, match="retries exhausted") as info:
        await asyncio.wait_for(task, 10)
    assert isinstance(info.value.__cause__, ConnectorUnavailableError)
    assert engram.inits == 1 and engram.streams == 0


async def test_sigterm_drains_in_flight_message_and_flushes_its_receipt() -> None:
    engram = Slow()
    shutdown = Shutdown(grace=5)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown) as task:
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.send(StreamMessage.json({"n": 2}))
        await eventually(lambda: len(engram.seen) == 1 and conn.stats.sent == 2)
        shutdown.request("SIGTERM")
        await asyncio.sleep(0.05)
        engram.release.set()  # the in-flight message finishes within the grace
        assert await asyncio.wait_for(task, 5) == 0
        await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
    assert [m.json_data()["n"] for m in engram.seen] == [1]  # n=2 never handed out
    assert conn.unacked == [(conn.stream_id, "", 2)]  # so the hub replays it elsewhere


async def test_sigterm_cancels_a_stuck_engram_after_the_grace() -> None:
    engram = Slow()
    shutdown = Shutdown(grace=0.1)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown) as task:
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await eventually(lambda: len(engram.seen) == 1)
        shutdown.request("SIGTERM")
        assert await asyncio.wait_for(task, 5) == 0
    assert conn.stats.receipts == []


# -- trace context, concurrency helper, sender engrams ------------------------------------------


async def test_traceparent_of_the_engram_span_goes_into_packet_metadata() -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    from bubu._streaming import trace_context

    ctx = SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0xB9C7C989F97918E1,
        is_remote=False,
        trace_flags=TraceFlags(1),
    )

    class Traced(StreamingEngram[dict[str, Any]]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            with trace.use_span(NonRecordingSpan(ctx)):
                yield StreamMessage.json({"traced": True})
            yield StreamMessage.json({"traced": False})

    async with _connector() as conn, running(Traced(), conn) as task:
        assert await asyncio.wait_for(task, 10) == 0
    traced, plain = conn.published_packets
    expected = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"
    assert traced.metadata["traceparent"] == expected
    assert "traceparent" not in plain.metadata
    out = conn.outputs.get_nowait()
    span = trace.get_current_span(trace_context(out)).get_span_context()
    assert (span.trace_id, span.span_id) == (ctx.trace_id, ctx.span_id)


async def test_trace_propagation_off_injects_nothing() -> None:
    from opentelemetry import trace
    from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags

    ctx = SpanContext(trace_id=1, span_id=2, is_remote=False, trace_flags=TraceFlags(1))

    class Traced(StreamingEngram[dict[str, Any]]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            with trace.use_span(NonRecordingSpan(ctx)):
                yield StreamMessage.json({"traced": True})

    env = {"BUBU_TRACE_PROPAGATION": "false"}
    async with _connector() as conn, running(Traced(), conn, extra_env=env) as task:
        assert await asyncio.wait_for(task, 10) == 0
    assert "traceparent" not in conn.published_packets[0].metadata


async def test_concurrently_processes_in_parallel_and_marks_done_after_output() -> None:
    from bubu.streaming import concurrently

    class Parallel(StreamingEngram[dict[str, Any]]):
        def __init__(self) -> None:
            self.active = 0
            self.peak = 0

        async def handle(self, msg: InboundMessage) -> StreamMessage:
            self.active += 1
            self.peak = max(self.peak, self.active)
            await asyncio.sleep(0.02)
            self.active -= 1
            return StreamMessage.json({"n": msg.json_data()["n"] * 10})

        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            async for out in concurrently(inbound, self.handle, limit=4):
                yield out

    engram = Parallel()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        for n in range(12):
            await conn.send(StreamMessage.json({"n": n}))
        outs = [await conn.next_output() for _ in range(12)]
        await conn.wait_until(lambda: len(conn.stats.receipts) == 12)
    assert sorted(o.json_data()["n"] for o in outs) == [n * 10 for n in range(12)]
    assert 1 < engram.peak <= 4


async def test_sender_style_engram_publishes_with_out_send() -> None:
    from bubu.streaming import Sender

    class Pusher(StreamingEngram[dict[str, Any]]):
        rejected: list[Exception] = []

        async def stream(self, inbound: AsyncIterator[InboundMessage], out: Sender) -> None:
            async for msg in inbound:
                async with msg:
                    try:
                        await out.send(StreamMessage.from_audio(b"\x00\x00", 7999))
                    except ProtocolViolationError as exc:
                        self.rejected.append(exc)
                    await out.send(StreamMessage.json({"got": msg.json_data()}))

    engram = Pusher()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        assert (await conn.next_output()).json_data() == {"got": {"n": 1}}
        await conn.wait_until(lambda: len(conn.stats.receipts) == 1)
    assert len(engram.rejected) == 1


async def test_unix_socket_endpoint(tmp_path: Any) -> None:
    engram = Echo()
    path = str(tmp_path / "connector.sock")
    async with _connector(unix_path=path) as conn, running(engram, conn):
        assert conn.address.startswith("unix://")
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"unix": True}))
        assert (await conn.next_output()).json_data() == {"unix": True}


# -- dual mode and the hybrid bridge -------------------------------------------------------------

import msgspec  # noqa: E402

from bubu._k8s.status import MemoryStatusSink  # noqa: E402
from bubu._runtime.result import Result  # noqa: E402
from bubu._start import start  # noqa: E402
from bubu.engram import BatchEngram  # noqa: E402


class DualConfig(msgspec.Struct):
    factor: int = 2


class DualInputs(msgspec.Struct):
    x: int = 0


class Dual(BatchEngram[DualConfig, DualInputs], StreamingEngram[DualConfig]):
    """A DualEngram: batch and streaming in one class."""

    def __init__(self) -> None:
        self.ran: list[str] = []

    async def init(self, config: DualConfig, secrets: Any) -> None:
        self.factor = config.factor

    async def process(self, ctx: Any, inputs: DualInputs) -> Result:
        self.ran.append("batch")
        return Result({"y": inputs.x * self.factor})

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        self.ran.append("stream")
        async for msg in inbound:
            async with msg:
                yield StreamMessage.json({"y": msg.json_data()["x"] * self.factor})


def _dual_env(conn: LocalConnector, mode: str, **extra: str) -> dict[str, str]:
    return {
        **conn.binding_env(),
        "BUBU_EXECUTION_MODE": mode,
        "BUBU_STEP_CONFIG": '{"factor": 3}',
        "BUBU_TRIGGER_DATA": '{"x": 5}',
        "BUBU_STORY_NAME": "story-a",
        "BUBU_STORYRUN_ID": "run-1",
        "BUBU_STEP_NAME": "step-a",
        **extra,
    }


async def test_start_dispatches_a_dual_engram_to_streaming() -> None:
    engram = Dual()
    async with _connector() as conn:
        task = asyncio.create_task(
            start(engram, source=MappingSource(_dual_env(conn, "streaming")))
        )
        try:
            await conn.wait_ready()
            await conn.send(StreamMessage.json({"x": 4}))
            assert (await conn.next_output()).json_data() == {"y": 12}
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    assert engram.ran == ["stream"]


async def test_start_dispatches_a_dual_engram_to_batch_without_bridge() -> None:
    engram = Dual()
    sink = MemoryStatusSink()
    async with _connector() as conn:
        code = await start(engram, source=MappingSource(_dual_env(conn, "batch")), status_sink=sink)
    assert code == 0 and engram.ran == ["batch"]
    assert sink.status["output"] == {"y": 15}
    assert conn.stats.published == 0


async def test_hybrid_runs_batch_then_bridges_the_output() -> None:
    engram = Dual()
    sink = MemoryStatusSink()
    async with _connector() as conn:
        code = await start(
            engram, source=MappingSource(_dual_env(conn, "hybrid")), status_sink=sink
        )
        out = await conn.next_output()
    assert code == 0 and engram.ran == ["batch"]
    assert sink.status["phase"] == "Succeeded"
    assert out.kind == "data" and out.json_data() == {"y": 15}
    assert out.inputs_data() == {"x": 5}
    assert out.metadata == {"storyName": "story-a", "storyRunID": "run-1", "stepName": "step-a"}
    assert out.timestamp is not None
    (packet,) = conn.published_packets
    assert packet.HasField("payload")  # the hub evaluates the Struct
    assert conn.data_headers[0]["bubu-transport-protocol"] == "1.0.0"


async def test_hybrid_bridge_disabled_by_env() -> None:
    sink = MemoryStatusSink()
    async with _connector() as conn:
        env = _dual_env(conn, "hybrid", BUBU_HYBRID_BRIDGE="off")
        code = await start(Dual(), source=MappingSource(env), status_sink=sink)
    assert code == 0 and conn.stats.published == 0


async def test_hybrid_bridge_is_best_effort_when_the_connector_is_gone() -> None:
    sink = MemoryStatusSink()
    async with _connector() as conn:
        env = _dual_env(conn, "hybrid", BUBU_HYBRID_BRIDGE_TIMEOUT="500ms")
    code = await start(Dual(), source=MappingSource(env), status_sink=sink)
    assert code == 0  # the dial failure is logged, never the step's outcome
    assert sink.status["phase"] == "Succeeded"


async def test_hybrid_without_binding_skips_the_bridge() -> None:
    sink = MemoryStatusSink()
    env = {"BUBU_EXECUTION_MODE": "hybrid", "BUBU_TRIGGER_DATA": '{"x": 1}'}
    code = await start(Dual(), source=MappingSource(env), status_sink=sink)
    assert code == 0 and sink.status["output"] == {"y": 2}


async def test_hybrid_failed_batch_is_not_bridged() -> None:
    class Failing(Dual):
        async def process(self, ctx: Any, inputs: DualInputs) -> Result:
            raise RuntimeError("boom")

    sink = MemoryStatusSink()
    async with _connector() as conn:
        code = await start(
            Failing(), source=MappingSource(_dual_env(conn, "hybrid")), status_sink=sink
        )
    assert code == 1 and conn.stats.published == 0


# -- bubu run --stream --------------------------------------------------------------------------


def test_cli_run_stream_json_lines(tmp_path: Any) -> None:
    import subprocess
    import sys
    from pathlib import Path

    example = Path(__file__).resolve().parents[2] / "examples" / "echo_stream.py"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "bubu",
            "run",
            "--stream",
            str(example),
            "--config",
            '{"greeting": "hey"}',
        ],
        input='{"text": "a"}\n{"text": "b"}\nnot json\n',
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    lines = proc.stdout.strip().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"greeting": "hey", "n": 1, "text": "a"},
        {"greeting": "hey", "n": 2, "text": "b"},
    ]
    assert "input line 3" in proc.stderr
    assert proc.returncode == 1  # a bad input line is reported and fails the run


async def test_stream_runs_inside_a_run_scope_with_the_default_shutdown() -> None:
    from bubu import _scope
    from bubu._aio import shutdown as shutdown_mod

    seen: list[Any] = []

    class Scoped(StreamingEngram[dict[str, Any]]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            seen.append(_scope.current())
            async for msg in inbound:
                msg.done()
            yield StreamMessage.json({"never": True})  # pragma: no cover

    default = Shutdown(grace=1)
    shutdown_mod.set_current(default)
    try:
        extra = {"BUBU_STORY_NAME": "story-s"}
        async with _connector() as conn, running(Scoped(), conn, extra_env=extra) as task:
            await conn.wait_ready()
            await eventually(lambda: bool(seen))
            default.request("SIGTERM")  # bubu.run's stop request drains the stream
            assert await asyncio.wait_for(task, 5) == 0
    finally:
        shutdown_mod.set_current(None)
    scope = seen[0]
    assert scope is not None and scope.story_info.story_name == "story-s"
    assert scope.shutdown is default


async def test_inputs_and_transports_from_the_envelope_reach_the_engram() -> None:
    from bubu._runtime.messages import TransportDescriptor

    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send(
            StreamMessage.json(
                {"a": 1},
                inputs={"from": "hub"},
                transports=(TransportDescriptor(name="t1", kind="livekit"),),
            )
        )
        await engram.wait_for(1)
    msg = engram.seen[0]
    assert msg.kind == "data" and msg.json_data() == {"a": 1}
    assert msg.binary.mime_type == "application/json" and msg.binary.payload == msg.payload
    assert msg.inputs_data() == {"from": "hub"}
    assert [t.name for t in msg.transports] == ["t1"]
