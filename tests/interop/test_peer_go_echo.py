"""A Go SDK engram (the ``echo`` program, ``sdk.StartStreaming``) against bubu's LocalConnector.

The LocalConnector (``bubu.testkit``) plays the connector sidecar; the Go SDK dials it from
``BUBU_TRANSPORT_BINDING`` exactly as in a pod. These tests check that what the testkit offers
engram authors is what a Go engram meets in production: the handshake, receipts with Go's sizes,
heartbeats, the three payload shapes, and reconnect with replay.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from bubu._runtime.messages import AudioFrame, StreamMessage
from bubu.testkit._connector import LocalConnector
from tests.interop._peers import FAST_ENV, go_engram

pytestmark = pytest.mark.interop

BEAT = {"BUBU_GRPC_HEARTBEAT_INTERVAL": "150ms", "BUBU_TRANSPORT_HEARTBEAT_INTERVAL": "150ms"}


def _messages() -> list[StreamMessage]:
    return [
        StreamMessage.json(
            {"text": "<&> é \u2028", "big": 1e21, "n": 7, "nested": {"a": [1, 2.5, None]}},
            message_id="json-1",
            kind="data",
            metadata={"trace": "x"},
        ),
        StreamMessage.from_bytes(bytes(range(256)), "application/octet-stream", message_id="bin-1"),
        StreamMessage(
            audio=AudioFrame(
                pcm=bytes(640), sample_rate_hz=16000, channels=1, codec="pcm16", timestamp_ms=20
            ),
            message_id="audio-1",
        ),
    ]


async def test_go_echo_handshake_payloads_receipts_and_heartbeats(go_bin: Path) -> None:
    async with LocalConnector(settings={"env": {**FAST_ENV, **BEAT}}) as conn:
        async with go_engram(go_bin, "echo", conn.binding_env()):
            await conn.wait_ready(timeout=30)
            assert conn.data_headers[0]["bubu-transport-protocol"] == "1.0.0"
            assert conn.control_headers[0]["bubu-transport-protocol"] == "1.0.0"
            assert conn.control_headers[0]["bubu.transport.binding"] == "default/local-binding"
            sent = _messages()
            for msg in sent:
                await conn.send(msg)
            echoed = [await conn.next_output(timeout=20) for _ in sent]

            j, b, a = echoed
            assert j.message_id == "json-1" and j.kind == "data"
            assert j.json_data() == sent[0].json_data()
            assert j.metadata["trace"] == "x"
            assert b.binary is not None and b.binary.payload == bytes(range(256))
            assert b.binary.mime_type == "application/octet-stream"
            assert a.audio == sent[2].audio

            await conn.wait_until(lambda: len(conn.stats.receipts) == 3, timeout=20)
            # Go computes size_bytes with proto.Size of the packet it received: the testkit
            # knows the size of what it sent, so each receipt is checked.
            assert all(r.size_ok for r in conn.stats.receipts)
            assert [r.sequence for r in conn.stats.receipts] == [1, 2, 3]
            await conn.wait_until(
                lambda: conn.stats.data_heartbeats >= 1 and conn.stats.control_heartbeats >= 1,
                timeout=20,
            )
            # the Go SDK acked the startup directives the way bubu does
            # (docs/contract/stream.md#control)
            acks = [
                dict(r.metadata)
                for r in conn.control_requests
                if r.action == 14  # ACK
            ]
            assert {"type": "connector.ready", "handled": "true", "reason": "startup"} in acks
            assert {
                "type": "connector.capabilities",
                "handled": "true",
                "reason": "capabilities",
            } in acks


async def test_go_echo_reconnects_and_gets_unacked_packets_again(go_bin: Path) -> None:
    async with LocalConnector(settings={"env": FAST_ENV}) as conn:
        env = {**conn.binding_env(), "INTEROP_HOLD": "1"}  # never done: nothing is acked
        async with go_engram(go_bin, "echo", env):
            await conn.wait_ready(timeout=30)
            await conn.send(StreamMessage.json({"n": 1}, message_id="held-1"))
            first = await conn.next_output(timeout=20)
            assert first.message_id == "held-1" and conn.unacked
            await conn.restart(timeout=30)
            again = await conn.next_output(timeout=20)
            # replayed with its original sequence; the Go SDK had not finished it, so it is
            # delivered to the engram again (docs/contract/stream.md#dedupe)
            assert again.message_id == "held-1"
            assert conn.stats.redelivered >= 1 and conn.stats.receipts == []


async def test_go_echo_exits_cleanly_on_sigterm(go_bin: Path) -> None:
    async with LocalConnector(settings={"env": FAST_ENV}) as conn:
        async with go_engram(go_bin, "echo", conn.binding_env()) as proc:
            await conn.wait_ready(timeout=30)
            proc.terminate()
            async with asyncio.timeout(20):
                assert await proc.wait() == 0
