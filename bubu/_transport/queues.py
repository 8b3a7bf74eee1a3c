"""The engram-facing queues of a streaming session: pure asyncio, no protobuf, no grpclib.

:class:`Inbound` is what ``stream(inbound)`` iterates: a bounded queue of
:class:`~bubu._runtime.messages.InboundMessage` (``BUBU_GRPC_CHANNEL_BUFFER_SIZE`` deep, as Go's
``in`` channel) that can be *closed* (the session ended: the iterator finishes once the queue is
empty) or *stopped* (a drain: the iterator finishes at once, leaving queued messages undelivered
and therefore not done, so the hub replays them; docs/contract/design.md#cancellation-and-shutdown).
The harness and the real session share it, so an engram sees the same object in tests and in
production.

It is a deque with bare futures for the waiting sides rather than an :class:`asyncio.Queue`: one
message per packet goes through it, and the queue's bookkeeping (``join`` counters, an event
cleared on every put, a retry loop on every get) is a measurable part of a packet's cost at
window 1 (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import deque
from collections.abc import AsyncIterator, Callable

from bubu._runtime.messages import InboundMessage

__all__ = ["Inbound"]


class Inbound(AsyncIterator[InboundMessage]):
    """Async iterator of inbound messages; ``async for msg in inbound`` in the engram.

    Args:
        maxsize: queue depth (``BUBU_GRPC_CHANNEL_BUFFER_SIZE``); ``<= 0`` is unbounded.
        before_wait: called (synchronously) each time a consumer is about to wait on an empty
            queue. The session flushes the engram's queued output there, so a reply and the
            receipt of the message it answers leave in one write without a task switch.
    """

    __slots__ = (
        "_before_wait",
        "_closed",
        "_getters",
        "_items",
        "_maxsize",
        "_putters",
        "_stopped",
    )

    def __init__(self, maxsize: int = 16, *, before_wait: Callable[[], None] | None = None) -> None:
        self._items: deque[InboundMessage] = deque()
        self._maxsize = maxsize
        self._getters: deque[asyncio.Future[None]] = deque()
        self._putters: deque[asyncio.Future[None]] = deque()
        self._before_wait = before_wait
        self._closed = False
        self._stopped = False

    def __aiter__(self) -> Inbound:
        return self

    async def __anext__(self) -> InboundMessage:
        items = self._items
        while True:
            if self._stopped:
                raise StopAsyncIteration
            if items:
                item = items.popleft()
                if self._putters:
                    _wake_one(self._putters)
                return item
            if self._closed:
                raise StopAsyncIteration
            if self._before_wait is not None:
                self._before_wait()
            waiter = asyncio.get_running_loop().create_future()
            self._getters.append(waiter)
            try:
                await waiter
            except BaseException:
                # Cancelled: a wake-up meant for this consumer goes to the next one.
                if waiter.done() and not waiter.cancelled() and items:
                    _wake_one(self._getters)
                else:
                    _discard(self._getters, waiter)
                raise

    @property
    def closed(self) -> bool:
        """Whether no more messages will be put (closed or stopped)."""
        return self._closed or self._stopped

    def qsize(self) -> int:
        """Messages queued and not yet taken by the engram."""
        return len(self._items)

    def full(self) -> bool:
        """Whether a :meth:`put_nowait` would raise :class:`asyncio.QueueFull`."""
        return 0 < self._maxsize <= len(self._items)

    async def put(self, message: InboundMessage) -> None:
        """Queue ``message``, waiting while the queue is full (backpressure on the connector)."""
        while self.full():
            waiter = asyncio.get_running_loop().create_future()
            self._putters.append(waiter)
            try:
                await waiter
            except BaseException:
                if waiter.done() and not waiter.cancelled() and not self.full():
                    _wake_one(self._putters)
                else:
                    _discard(self._putters, waiter)
                raise
        self._append(message)

    def put_nowait(self, message: InboundMessage) -> None:
        """Queue ``message`` or raise :class:`asyncio.QueueFull`."""
        if self.full():
            raise asyncio.QueueFull
        self._append(message)

    def _append(self, message: InboundMessage) -> None:
        self._items.append(message)
        if self._getters:
            _wake_one(self._getters)

    def close(self) -> None:
        """No more messages: the iterator ends once the queued ones are taken."""
        if self._closed:
            return
        self._closed = True
        _wake_all(self._getters)

    def stop(self) -> None:
        """Drain: end the iteration now; queued messages are never handed out (not done)."""
        if self._stopped:
            return
        self._stopped = True
        _wake_all(self._getters)

    def take_undelivered(self) -> list[InboundMessage]:
        """Remove and return the messages still queued (for accounting after a stop)."""
        items = list(self._items)
        self._items.clear()
        _wake_all(self._putters)
        return items


def _wake_one(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)
            return


def _wake_all(waiters: deque[asyncio.Future[None]]) -> None:
    while waiters:
        waiter = waiters.popleft()
        if not waiter.done():
            waiter.set_result(None)


def _discard(waiters: deque[asyncio.Future[None]], waiter: asyncio.Future[None]) -> None:
    with contextlib.suppress(ValueError):
        waiters.remove(waiter)
