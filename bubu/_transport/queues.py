"""The engram-facing queues of a streaming session: pure asyncio, no protobuf, no grpclib.

:class:`Inbound` is what ``stream(inbound)`` iterates: a bounded queue of
:class:`~bubu._runtime.messages.InboundMessage` (``BUBU_GRPC_CHANNEL_BUFFER_SIZE`` deep, as Go's
``in`` channel) that can be *closed* (the session ended: the iterator finishes once the queue is
empty) or *stopped* (a drain: the iterator finishes at once, leaving queued messages undelivered
and therefore not done, so the hub replays them; docs/contract/design.md#cancellation-and-shutdown).
The harness and the real session share it, so an engram sees the same object in tests and in
production.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Final

from bubu._runtime.messages import InboundMessage

__all__ = ["Inbound"]

_END: Final = None


class Inbound(AsyncIterator[InboundMessage]):
    """Async iterator of inbound messages; ``async for msg in inbound`` in the engram.

    Args:
        maxsize: queue depth (``BUBU_GRPC_CHANNEL_BUFFER_SIZE``).
    """

    __slots__ = ("_closed", "_queue", "_stopped")

    def __init__(self, maxsize: int = 16) -> None:
        self._queue: asyncio.Queue[InboundMessage | None] = asyncio.Queue(maxsize)
        self._closed = False
        self._stopped = False

    def __aiter__(self) -> Inbound:
        return self

    async def __anext__(self) -> InboundMessage:
        if self._stopped:
            raise StopAsyncIteration
        queue = self._queue
        try:
            item = queue.get_nowait()
        except asyncio.QueueEmpty:
            if self._closed:
                raise StopAsyncIteration from None
            item = await queue.get()
        if item is _END or self._stopped:
            self._stopped = True
            raise StopAsyncIteration
        return item

    @property
    def closed(self) -> bool:
        """Whether no more messages will be put (closed or stopped)."""
        return self._closed or self._stopped

    def qsize(self) -> int:
        """Messages queued and not yet taken by the engram."""
        return self._queue.qsize()

    async def put(self, message: InboundMessage) -> None:
        """Queue ``message``, waiting while the queue is full (backpressure on the connector)."""
        await self._queue.put(message)

    def put_nowait(self, message: InboundMessage) -> None:
        """Queue ``message`` or raise :class:`asyncio.QueueFull`."""
        self._queue.put_nowait(message)

    def close(self) -> None:
        """No more messages: the iterator ends once the queued ones are taken."""
        if self._closed:
            return
        self._closed = True
        self._wake()

    def stop(self) -> None:
        """Drain: end the iteration now; queued messages are never handed out (not done)."""
        if self._stopped:
            return
        self._stopped = True
        self._wake()

    def take_undelivered(self) -> list[InboundMessage]:
        """Remove and return the messages still queued (for accounting after a stop)."""
        items: list[InboundMessage] = []
        while True:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                return items
            if item is not _END:
                items.append(item)

    def _wake(self) -> None:
        # A getter blocked on an empty queue needs an item to wake up; when the queue is full
        # no getter is blocked and the flags are seen on the next __anext__.
        with contextlib.suppress(asyncio.QueueFull):
            self._queue.put_nowait(_END)
