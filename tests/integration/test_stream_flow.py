"""HTTP/2 flow control between the engram and the connector (issue 12 item 4).

grpclib returns window to the peer only as the application reads, and the engram reads nothing
on Data before the handshake on Control is complete. With the connection window equal to the
stream window, a large message sent before ``connector.ready`` filled the connection window and
the handshake could never complete. Both sides now open a connection window of three stream
windows, so Data never starves Control: messages of 2, 5 and 9 MB pass before and after the
handshake, in both directions.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu.engram import StreamingEngram
from tests.integration._stream_helpers import connector, running

pytestmark = pytest.mark.loopback

MB = 1_000_000
SIZES = (2 * MB, 5 * MB, 9 * MB)


class Sizes(StreamingEngram[dict[str, Any]]):
    """Answers every binary message with one of the same size (both directions carry it)."""

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            async with msg:
                size = len(msg.binary.payload) if msg.binary is not None else 0
                yield StreamMessage.from_bytes(b"y" * size, "application/octet-stream")


def blob(size: int) -> StreamMessage:
    return StreamMessage.from_bytes(b"x" * size, "application/octet-stream")


async def _echo_sizes(conn: Any, count: int) -> list[int]:
    out = [await conn.next_output(timeout=30) for _ in range(count)]
    return [len(m.binary.payload) for m in out]


async def test_large_messages_sent_before_the_handshake_pass() -> None:
    conn = connector(send_ready=False)
    async with conn, running(Sizes(), conn):
        await conn.wait_until(lambda: conn.stats.control_sessions >= 1, timeout=10)
        for size in SIZES:
            await conn.send(blob(size))
        # Data now holds megabytes the engram cannot read yet; Control must still get through.
        await conn.wait_until(lambda: conn.stats.data_sessions >= 1, timeout=10)
        await asyncio.sleep(0.2)  # let the connector push what flow control lets it
        await conn.send_control("connector.ready", {"startup.capabilities": "none"})
        assert await _echo_sizes(conn, len(SIZES)) == list(SIZES)
        await conn.wait_until(lambda: not conn.unacked, timeout=10)
        assert conn.stats.data_sessions == 1  # no reconnect


async def test_large_messages_sent_after_the_handshake_pass_both_ways() -> None:
    conn = connector()
    async with conn, running(Sizes(), conn):
        await conn.wait_ready(timeout=10)
        for size in SIZES:
            await conn.send(blob(size))
        assert await _echo_sizes(conn, len(SIZES)) == list(SIZES)
        await conn.wait_until(lambda: not conn.unacked, timeout=10)
        assert conn.stats.data_sessions == 1
