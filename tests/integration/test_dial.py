"""Dialing the connector: WaitForReady-style redials until ``BUBU_GRPC_DIAL_TIMEOUT`` expires.

The connector only listens once its own hub stream is up
(docs/contract/stream.md#keepalive-and-limits), so an engram that starts first must keep
redialing with grpc-go's connection backoff (1 s, x1.6, +-20%, max 120 s) instead of failing its
first dial and spending a reconnect retry. Loopback sockets only.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._runtime.transport import TransportSettings
from bubu._streaming import start_streaming
from bubu._transport import _fastpath
from bubu._transport import channel as channel_mod
from bubu.engram import StreamingEngram
from bubu.errors import ConnectorUnavailableError, StreamSessionError
from tests.integration._stream_helpers import connector as _connector

pytestmark = pytest.mark.loopback


class Echo(StreamingEngram[dict[str, Any]]):
    """Echo every JSON message."""

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            async with msg:
                yield StreamMessage.json(msg.json_data() or {})


async def _unused_endpoint() -> tuple[int, dict[str, str]]:
    """A free loopback port and the binding env pointing at it, with nothing listening there."""
    async with _connector() as probe:
        return probe.port, probe.binding_env()


def _counting_channel(port: int) -> tuple[Any, list[float]]:
    """A real channel to ``port`` that records the loop time of every ``__connect__`` attempt."""
    chan = channel_mod.open_channel(f"127.0.0.1:{port}", TransportSettings())
    attempts: list[float] = []
    original = chan.__connect__

    async def counted() -> Any:
        attempts.append(asyncio.get_running_loop().time())
        return await original()

    chan.__connect__ = counted  # type: ignore[method-assign]
    return chan, attempts


async def test_engram_started_before_the_connector_connects_on_its_first_session(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, binding = await _unused_endpoint()
    # A dial timeout far above the redial schedule, so a slow machine cannot run it out while
    # the connector starts.
    env = {**binding, "BUBU_GRPC_RECONNECT_MAX_RETRIES": "0", "BUBU_GRPC_DIAL_TIMEOUT": "60s"}
    refused = asyncio.Event()
    original = _fastpath.open_connection

    async def watched(channel: Any) -> Any:
        try:
            return await original(channel)
        except ConnectionRefusedError:
            refused.set()
            raise

    monkeypatch.setattr(_fastpath, "open_connection", watched)
    task = asyncio.create_task(start_streaming(Echo(), source=MappingSource(env)))
    try:
        await asyncio.wait_for(refused.wait(), 60)  # the engram's first dial was refused
        assert not task.done()
        async with _connector(port=port) as conn:
            await conn.wait_ready(timeout=5)
            for n in range(3):
                await conn.send(StreamMessage.json({"n": n}))
            got = [(await conn.next_output()).json_data() for _ in range(3)]
            assert got == [{"n": 0}, {"n": 1}, {"n": 2}]
            # Retries are 0: any failed session would have ended the task; the redial happened
            # inside the one dial, and the connector saw exactly one Data session.
            assert not task.done()
            assert conn.stats.data_sessions == 1
    finally:
        task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def test_dial_redials_until_the_timeout_then_reports_the_last_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    port, _ = await _unused_endpoint()
    chan, attempts = _counting_channel(port)
    waits: list[tuple[int, float, float]] = []  # (retry, time left, the wait chosen)
    original = channel_mod._dial_backoff

    def recorded(retries: int, remaining: float, *_: Any) -> float:
        # The jitter at its top (1.6 s x 1.2), so the second wait always outlasts the deadline.
        delay = original(retries, remaining, lambda lo, hi: hi)
        waits.append((retries, remaining, delay))
        return delay

    monkeypatch.setattr(channel_mod, "_dial_backoff", recorded)
    started = time.monotonic()
    try:
        with pytest.raises(ConnectorUnavailableError) as info:
            await channel_mod.connect(chan, 2.5)
    finally:
        chan.close()
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "transport connector dial timed out after 2.5s: last error: " in message
    assert isinstance(info.value.__cause__, ConnectionRefusedError)
    assert elapsed >= 2.45  # never gives up before the deadline (a lower bound: load-proof)
    # grpc-go schedule: refused at 0 s, redial after the 1 s base delay (never jittered), then
    # the 1.92 s wait is cut to the time left and the deadline ends the dial. Checked on the
    # waits the dialer chose, not on the wall clock, which a loaded machine stretches.
    assert len(attempts) == 2 == len(waits)
    assert waits[0][0] == 0 and waits[0][2] == 1.0
    retry, left, chosen = waits[1]
    assert retry == 1 and left < 1.55 and chosen == max(0.0, left)
    assert attempts[1] - attempts[0] >= 0.95


async def test_session_with_no_retries_fails_only_after_the_dial_timeout() -> None:
    _, binding = await _unused_endpoint()
    env = {**binding, "BUBU_GRPC_RECONNECT_MAX_RETRIES": "0", "BUBU_GRPC_DIAL_TIMEOUT": "1.5s"}
    started = time.monotonic()
    with pytest.raises(StreamSessionError, match="dial timed out after 1.5s") as info:
        await asyncio.wait_for(start_streaming(Echo(), source=MappingSource(env)), 10)
    assert time.monotonic() - started >= 1.45
    assert isinstance(info.value.__cause__, ConnectorUnavailableError)


async def test_outer_cancellation_is_not_turned_into_a_dial_error() -> None:
    # The hybrid bridge wraps connect() in its own shorter timeout: that must stay a TimeoutError.
    port, _ = await _unused_endpoint()
    chan, attempts = _counting_channel(port)
    try:
        with pytest.raises(TimeoutError):
            async with asyncio.timeout(0.3):
                await channel_mod.connect(chan, 10)
    finally:
        chan.close()
    assert len(attempts) == 1


async def test_dial_to_a_listening_connector_makes_one_attempt() -> None:
    async with _connector() as conn:
        chan, attempts = _counting_channel(conn.port)
        try:
            await channel_mod.connect(chan, 1)
        finally:
            chan.close()
    assert len(attempts) == 1


def test_backoff_schedule_grows_by_1_6_from_one_second_with_20_percent_jitter() -> None:
    backoff = channel_mod._dial_backoff

    def none(lo: float, hi: float) -> float:
        return 0.0

    assert backoff(0, 1000, random.uniform) == 1.0  # grpc-go: the first wait is never jittered
    assert [round(backoff(n, 1000, none), 6) for n in range(1, 5)] == [1.6, 2.56, 4.096, 6.5536]
    assert backoff(11, 1000, none) == 120.0  # 1.6**11 > 120: capped
    assert backoff(10_000, 1000, none) == 120.0  # no float overflow on very long dials
    assert backoff(3, 1000, lambda lo, hi: lo) == pytest.approx(4.096 * 0.8)
    assert backoff(3, 1000, lambda lo, hi: hi) == pytest.approx(4.096 * 1.2)
    # without a draw function: random.uniform, imported on the first redial
    for _ in range(20):
        assert 4.096 * 0.8 <= backoff(3, 1000) <= 4.096 * 1.2
    rng = random.Random(7)
    for n in range(1, 40):
        nominal = min(1.6**n, 120.0)
        delay = backoff(n, 1000, rng.uniform)
        assert 0.8 * nominal <= delay <= 1.2 * nominal


def test_backoff_never_waits_past_the_dial_deadline() -> None:
    backoff = channel_mod._dial_backoff
    assert backoff(0, 0.25) == 0.25
    assert backoff(5, 0.5, lambda lo, hi: hi) == 0.5
    assert backoff(2, -1.0) == 0.0  # already past the deadline: no negative sleep
    rng = random.Random(3)
    for n in range(50):
        assert backoff(n, 2.0, rng.uniform) <= 2.0
