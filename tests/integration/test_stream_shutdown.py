"""Shutdown, drain and hook dedupe against the local connector.

See docs/contract/stream.md#shutdown.

Scenario 32: the engram's stream returns -> outbound flushed, Data half-closed, no reconnect.
Scenario 33: SIGTERM -> both streams half-closed promptly, also while the connector runs its
``GracefulStop`` (5 s cap). Scenario 22: an audio frame with ``sample_rate_hz`` 0 is rejected
locally. Scenario 11: a hub lifecycle hook sent twice reaches the engram once.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bubu._aio.shutdown import Shutdown
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._transport import _fastpath
from bubu.engram import StreamingEngram
from bubu.errors import ProtocolViolationError
from bubu.testkit._connector import LocalConnector
from tests.integration._stream_helpers import Collect, Emitter, eventually, running
from tests.integration._stream_helpers import connector as _connector

pytestmark = pytest.mark.loopback


# The engram must stop promptly, not at the end of its shutdown grace: the grace is long and the
# bound half of it, so a loaded machine's delays cannot reach it while a wait for the grace would.
GRACE = 20.0
PROMPT = GRACE / 2


async def _timed(task: asyncio.Task[int], limit: float) -> tuple[int, float]:
    began = time.monotonic()
    code = await asyncio.wait_for(task, limit)
    return code, time.monotonic() - began


def _assert_clean_ends(conn: LocalConnector) -> None:
    """Both streams were half-closed by the engram (END_STREAM), none reset."""
    stats = conn.stats
    assert (stats.data_half_closes, stats.control_half_closes) == (1, 1)
    assert (stats.data_resets, stats.control_resets) == (0, 0)
    assert (stats.data_sessions, stats.control_sessions) == (1, 1)  # no reconnect


class SlowEcho(StreamingEngram[dict[str, Any]]):
    """Takes one message at a time, echoes it once released."""

    def __init__(self) -> None:
        self.seen: list[InboundMessage] = []
        self.release = asyncio.Event()

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            async with msg:
                self.seen.append(msg)
                await self.release.wait()
                yield StreamMessage.json({"echo": msg.json_data()})


# -- scenario 32 ------------------------------------------------------------------------------


async def test_stream_return_flushes_then_half_closes_data_without_reconnect() -> None:
    n = 40
    engram = Emitter([StreamMessage.json({"n": i}) for i in range(n)])
    async with _connector() as conn, running(engram, conn) as task:
        assert await asyncio.wait_for(task, 10) == 0
        await conn.wait_until(lambda: conn.stats.data_half_closes >= 1, timeout=10)
        # The task has ended, so no session can start any more: _assert_clean_ends sees them all.
        got = [conn.outputs.get_nowait().json_data() for _ in range(conn.outputs.qsize())]
        assert got == [{"n": i} for i in range(n)]
        _assert_clean_ends(conn)


# -- scenario 33 ------------------------------------------------------------------------------


async def test_sigterm_while_idle_half_closes_both_streams_promptly() -> None:
    engram = Collect()
    shutdown = Shutdown(grace=GRACE)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown) as task:
        await conn.wait_ready()
        shutdown.request("SIGTERM")
        code, took = await _timed(task, GRACE + 10)
        assert code == 0
        assert took < PROMPT, f"engram took {took:.2f}s to stop"
        await conn.wait_until(lambda: conn.stats.control_half_closes >= 1, timeout=10)
        _assert_clean_ends(conn)


async def test_sigterm_with_messages_in_flight_flushes_and_half_closes_both() -> None:
    engram = SlowEcho()
    shutdown = Shutdown(grace=GRACE)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown) as task:
        await conn.wait_ready()
        await conn.send(StreamMessage.json({"n": 1}))
        await conn.send(StreamMessage.json({"n": 2}))
        await eventually(lambda: len(engram.seen) == 1 and conn.stats.sent == 2)
        shutdown.request("SIGTERM")
        await asyncio.sleep(0.05)
        engram.release.set()  # the in-flight message finishes within the grace
        code, took = await _timed(task, GRACE + 10)
        assert code == 0
        assert took < PROMPT, f"engram took {took:.2f}s to stop"
        await conn.wait_until(lambda: conn.stats.control_half_closes >= 1, timeout=10)
        # The echo of the in-flight message was flushed before the half-close; n=2 never
        # reached the engram, so its receipt is missing and the hub would replay it.
        assert (await conn.next_output(timeout=10)).json_data() == {"echo": {"n": 1}}
        assert conn.outputs.empty()
        assert conn.unacked == [(conn.stream_id, "", 2)]
        _assert_clean_ends(conn)


async def test_connector_graceful_stop_ends_as_soon_as_the_engram_half_closes() -> None:
    engram = Collect()
    shutdown = Shutdown(grace=GRACE)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown) as task:
        await conn.wait_ready()
        cap = 60.0
        stop = asyncio.create_task(conn.graceful_stop(timeout=cap))
        await conn.wait_until(lambda: conn.stopping)
        assert not stop.done()  # the open streams are left to finish
        assert conn.connected
        shutdown.request("SIGTERM")
        code, took = await _timed(task, GRACE + 10)
        assert code == 0
        assert took < PROMPT, f"engram took {took:.2f}s to stop"
        waited = await asyncio.wait_for(stop, cap + 10)
        assert waited < cap / 2, f"graceful_stop waited {waited:.2f}s of its {cap:g}s cap"
        assert conn.stats.refused_streams == 0
        _assert_clean_ends(conn)


async def test_connector_graceful_stop_refuses_new_connections_and_new_streams() -> None:
    from grpclib.client import Channel
    from grpclib.const import Cardinality, Status
    from grpclib.exceptions import GRPCError

    from bubu._gen.transport.v1 import transport_pb2 as pb
    from bubu._runtime.transport import TransportSettings
    from bubu._transport import channel as channel_mod
    from bubu._transport.session import DATA_METHOD
    from bubu.errors import ConnectorUnavailableError

    engram = Collect()
    shutdown = Shutdown(grace=GRACE)
    async with _connector() as conn, running(engram, conn, shutdown=shutdown):
        await conn.wait_ready()
        host, port = conn.address.rsplit(":", 1)
        early = Channel(host, int(port))  # connected before the stop begins
        await channel_mod.connect(early, 2)
        cap = 60.0  # far beyond what the steps below take on any machine
        stop = asyncio.create_task(conn.graceful_stop(timeout=cap))
        try:
            await conn.wait_until(lambda: conn.stopping)  # set as the listener closes
            late = channel_mod.open_channel(conn.address, TransportSettings())
            with pytest.raises(ConnectorUnavailableError, match="dial timed out"):
                await channel_mod.connect(late, 0.3)  # the listener is closed: refused
            late.close()
            with pytest.raises(GRPCError) as refused:
                async with early.request(
                    DATA_METHOD,
                    Cardinality.STREAM_STREAM,
                    pb.DataRequest,
                    pb.DataResponse,
                    metadata={"bubu-transport-protocol": "1.0.0"},
                ) as stream:
                    await stream.send_request()
                    await stream.recv_message()
            assert refused.value.status is Status.UNAVAILABLE
            assert conn.stats.refused_streams == 1
            assert not stop.done()  # the engram's streams are still open
        finally:
            early.close()
            shutdown.request("SIGTERM")
            await asyncio.wait_for(stop, cap + 10)
    assert (conn.stats.data_sessions, conn.stats.control_sessions) == (1, 1)


def _watch_refused_dials(monkeypatch: pytest.MonkeyPatch) -> asyncio.Event:
    """An event set when a dial of the engram is refused (the connector's listener is gone)."""
    refused = asyncio.Event()
    original = _fastpath.open_connection

    async def watched(channel: Any) -> Any:
        try:
            return await original(channel)
        except ConnectionRefusedError:
            refused.set()
            raise

    monkeypatch.setattr(_fastpath, "open_connection", watched)
    return refused


async def test_connector_graceful_stop_gives_up_at_its_cap_and_refuses_reconnects(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = _watch_refused_dials(monkeypatch)
    engram = Collect()  # never told to stop: it does not half-close
    async with _connector() as conn, running(engram, conn) as task:
        await conn.wait_ready()
        waited = await asyncio.wait_for(conn.graceful_stop(timeout=0.3), 30)
        # At the 0.3 s cap, not the 5 s default (the upper bound is relative to that, so a
        # loaded machine's scheduling delays cannot reach it).
        assert 0.3 <= waited < 5.0
        assert not conn.connected
        await asyncio.wait_for(refused.wait(), 30)  # the engram redialed; the listener is gone
        assert not task.done()
        stats = conn.stats
        assert (stats.data_sessions, stats.control_sessions) == (1, 1)
        # The connector ended the streams itself: neither a half-close nor a reset.
        assert (stats.data_half_closes, stats.control_half_closes) == (0, 0)
        assert (stats.data_resets, stats.control_resets) == (0, 0)


async def test_connector_graceful_stop_returns_once_streams_end_and_allows_no_reconnect(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    refused = _watch_refused_dials(monkeypatch)
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        cap = 60.0
        stop = asyncio.create_task(conn.graceful_stop(timeout=cap))
        await conn.wait_until(lambda: conn.stopping)
        await conn.kill_session("error")  # the engram retries at once (10 ms backoff)
        waited = await asyncio.wait_for(stop, cap + 10)
        assert waited < cap / 2  # both streams ended: nothing left to wait for
        await asyncio.wait_for(refused.wait(), 30)  # the engram's redial was refused
        assert (conn.stats.data_sessions, conn.stats.control_sessions) == (1, 1)


async def test_engram_reset_is_recorded_as_reset_not_half_close() -> None:
    engram = Collect()
    async with _connector() as conn:
        async with running(engram, conn):
            await conn.wait_ready()
        # Cancelling the engram task tears its streams down without END_STREAM.
        await conn.wait_until(
            lambda: conn.stats.data_resets == 1 and conn.stats.control_resets == 1, timeout=10
        )
        assert (conn.stats.data_half_closes, conn.stats.control_half_closes) == (0, 0)


# -- scenario 22 ------------------------------------------------------------------------------


async def test_audio_sample_rate_zero_is_rejected_locally_and_never_sent() -> None:
    bad = StreamMessage.from_audio(b"\x00\x00", 0)
    with pytest.raises(ProtocolViolationError, match="sample_rate_hz"):
        bad.validate()
    good = StreamMessage.from_audio(b"\x00" * 640, 16000, timestamp_ms=10)
    engram = Emitter([bad, good])
    async with _connector() as conn, running(engram, conn) as task:
        assert await asyncio.wait_for(task, 10) == 0
    assert len(engram.rejected) == 1
    assert "sample_rate_hz" in str(engram.rejected[0])
    (packet,) = conn.published_packets
    assert packet.audio.sample_rate_hz == 16000 and packet.audio.timestamp_ms == 10
    assert conn.stats.violations == []
    assert conn.stats.data_sessions == 1  # a caught rejection does not end the session


# -- scenario 11 ------------------------------------------------------------------------------


async def test_hub_hook_sent_twice_reaches_the_engram_once() -> None:
    engram = Collect()
    async with _connector() as conn, running(engram, conn):
        await conn.wait_ready()
        await conn.send_hook("storyrun.ready")
        await conn.send_hook("storyrun.ready")  # same message id: deduped by the engram
        await conn.send_hook("steprun.ready", step="s1")
        await conn.send(StreamMessage.json({"marker": True}))  # in order, after the hooks
        await engram.wait_for(3)
        await conn.wait_until(lambda: conn.stats.sent == 4)
    # The marker was sent after both copies of the hook: a copy that got through would be among
    # the first three messages, so no wait for a late one is needed.
    messages = [m.message for m in engram.seen]
    assert [(m.kind, m.message_id) for m in messages[:2]] == [
        ("hook", "default/local-run:storyrun.ready"),
        ("hook", "default/local-run:steprun.ready:s1"),
    ]
    assert messages[0].json_data()["hook"]["event"] == "storyrun.ready"
    assert messages[1].json_data()["hook"]["data"]["step"] == {"name": "s1"}
    assert messages[2].json_data() == {"marker": True}
    assert len(messages) == 3
