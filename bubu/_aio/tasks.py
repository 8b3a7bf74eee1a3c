"""Task hygiene: every task is named and a failing background task is logged at once.

Nothing here is fire-and-forget: ``spawn`` keeps a strong reference until the task ends, and
``guard`` logs an unexpected exception the moment it happens (kopf's lesson), instead of at
garbage collection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

__all__ = ["cancel_and_wait", "guard", "spawn"]

T = TypeVar("T")

_log = logging.getLogger("bubu.tasks")
_background: set[asyncio.Task[Any]] = set()


def _report(task: asyncio.Task[Any]) -> None:
    _background.discard(task)
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None:
        _log.error("background task %s failed: %r", task.get_name(), exc, exc_info=exc)


def guard(task: asyncio.Task[T]) -> asyncio.Task[T]:
    """Log the task's exception as soon as it fails; return the task."""
    task.add_done_callback(_report)
    return task


def spawn(coro: Coroutine[Any, Any, T], *, name: str) -> asyncio.Task[T]:
    """Start a named, guarded task and keep it referenced until it ends.

    Args:
        coro: the coroutine to run.
        name: ``bubu.<part>.<what>`` (docs/contract/design.md#naming).
    """
    task = asyncio.get_running_loop().create_task(coro, name=name)
    _background.add(task)
    return guard(task)


async def cancel_and_wait(task: asyncio.Task[Any], *, grace: float | None = None) -> None:
    """Cancel ``task`` and wait (up to ``grace`` seconds) for it to finish.

    The caller's own cancellation is never swallowed: if the waiting task is cancelled, the
    ``CancelledError`` propagates.
    """
    if task.done():
        return
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=grace)
    if task in done and not task.cancelled():
        exc = task.exception()
        if exc is not None:
            _log.debug("task %s ended with %r while cancelling", task.get_name(), exc)
