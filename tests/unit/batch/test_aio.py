"""The asyncio kit: backoff bounds and guarded tasks."""

from __future__ import annotations

import asyncio
import logging

import pytest

from bubu._aio import tasks
from bubu._aio.backoff import Backoff


def test_backoff_caps_and_validates() -> None:
    b = Backoff(base=1.0, factor=10.0, maximum=5.0, jitter=0.0)
    assert [b.delay(i) for i in range(3)] == [1.0, 5.0, 5.0]
    gen = b.delays()
    assert [next(gen) for _ in range(2)] == [1.0, 5.0]
    with pytest.raises(ValueError, match="jitter"):
        Backoff(jitter=1.0)
    with pytest.raises(ValueError, match="factor"):
        Backoff(factor=0.5)


async def test_spawned_task_failure_is_logged_at_once(caplog: pytest.LogCaptureFixture) -> None:
    async def boom() -> None:
        raise RuntimeError("bad")

    task = tasks.spawn(boom(), name="bubu.test.boom")
    await asyncio.wait({task})
    await asyncio.sleep(0)
    assert task.get_name() == "bubu.test.boom"
    assert any(
        "bubu.test.boom" in r.getMessage() and r.levelno == logging.ERROR for r in caplog.records
    )


async def test_cancel_and_wait_bounded() -> None:
    started = asyncio.Event()

    async def stubborn() -> None:
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            await asyncio.sleep(0.01)
            raise

    task = asyncio.create_task(stubborn())
    await started.wait()
    await tasks.cancel_and_wait(task, grace=1)
    assert task.cancelled()
