"""Shared pieces of the streaming integration tests: a fast LocalConnector, a running engram.

Every streaming test file runs ``start_streaming`` against the real grpclib ``LocalConnector`` on
loopback; these are the few helpers they all need, kept in one place.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

from bubu._aio.shutdown import Shutdown
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.sources import MappingSource
from bubu._streaming import start_streaming
from bubu.engram import StreamingEngram
from bubu.errors import ProtocolViolationError
from bubu.testkit._connector import LocalConnector

FAST = {
    "BUBU_GRPC_RECONNECT_BASE_BACKOFF": "10ms",
    "BUBU_GRPC_RECONNECT_MAX_BACKOFF": "50ms",
    "BUBU_GRPC_MESSAGE_TIMEOUT": "2s",
}
"""Reconnect and handshake timings short enough for tests (the Go defaults are seconds)."""


def connector(**kw: Any) -> LocalConnector:
    """A LocalConnector whose engrams get :data:`FAST` timings (plus ``env=`` overrides)."""
    env = {**FAST, **kw.pop("env", {})}
    return LocalConnector(settings={"env": env}, **kw)


@contextlib.asynccontextmanager
async def running(
    engram: Any,
    conn: LocalConnector,
    *,
    shutdown: Shutdown | None = None,
    extra_env: dict[str, str] | None = None,
) -> AsyncIterator[asyncio.Task[int]]:
    """Run start_streaming(engram) against ``conn`` in a task; cancel it on exit."""
    source = MappingSource({**conn.binding_env(), **(extra_env or {})})
    task = asyncio.create_task(start_streaming(engram, source=source, shutdown=shutdown))
    try:
        yield task
    finally:
        if not task.done():
            task.cancel()
        with contextlib.suppress(BaseException):
            await task


async def eventually(predicate: Callable[[], bool], limit: float = 5.0) -> None:
    """Poll an engram-side condition (the connector's wait_until only wakes on its events)."""
    async with asyncio.timeout(limit):
        while not predicate():  # noqa: ASYNC110 - the engram offers no event to wait on
            await asyncio.sleep(0.005)


class Collect(StreamingEngram[dict[str, Any]]):
    """Collects inbound messages; ``done()`` unless ``hold`` is set."""

    def __init__(self, hold: bool = False) -> None:
        self.hold = hold
        self.seen: list[InboundMessage] = []
        self.streams = 0
        self.inits = 0
        self.changed = asyncio.Event()

    async def init(self, config: dict[str, Any], secrets: Any) -> None:
        self.inits += 1

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        self.streams += 1
        async for msg in inbound:
            self.seen.append(msg)
            if not self.hold:
                msg.done()
            self.changed.set()
        return
        yield  # pragma: no cover - makes this an async generator

    async def wait_for(self, n: int, limit: float = 5.0) -> None:
        async with asyncio.timeout(limit):
            while len(self.seen) < n:
                self.changed.clear()
                await self.changed.wait()


class Emitter(StreamingEngram[dict[str, Any]]):
    """Publishes a fixed list of messages and returns, recording what was thrown back at it."""

    def __init__(self, messages: list[StreamMessage]) -> None:
        self.messages = messages
        self.rejected: list[Exception] = []

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        for message in self.messages:
            try:
                yield message
            except ProtocolViolationError as exc:
                self.rejected.append(exc)
