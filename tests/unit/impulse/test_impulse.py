"""run_impulse lifecycle through ImpulseHarness (in-memory cluster, no sockets)."""

from __future__ import annotations

import asyncio
import logging

import msgspec
import pytest

import bubu
from bubu._aio.shutdown import Shutdown
from bubu._impulse import run_impulse
from bubu._runtime.sources import MappingSource
from bubu.testkit import FakeCluster, ImpulseHarness


class Cfg(msgspec.Struct):
    prefix: str = "evt"
    count: int = 0


class Emitter(bubu.Impulse[Cfg]):
    """Starts one run per queued event, until stopped."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[str] = asyncio.Queue()
        self.config: Cfg | None = None
        self.secret: str | None = None
        self.cancelled = False

    async def init(self, config: Cfg, secrets: bubu.Secrets) -> None:
        self.config = config
        self.secret = secrets.get("TOKEN")

    async def run(self, client) -> None:
        try:
            while True:
                event = await self.queue.get()
                await client.dispatcher.trigger(
                    event, inputs={"id": f"{self.config.prefix}-{event}"}, token=event
                )
                self.queue.task_done()
        except asyncio.CancelledError:
            self.cancelled = True
            raise


async def test_init_gets_typed_config_and_secrets_then_run_triggers():
    imp = Emitter()
    async with ImpulseHarness(
        impulse=imp, config={"prefix": "gh", "count": "3"}, secrets={"TOKEN": "s3cr3t"}
    ) as h:
        assert imp.config == Cfg(prefix="gh", count=3)  # weakly typed decode, as Go
        assert imp.secret == "s3cr3t"
        imp.queue.put_nowait("a")
        imp.queue.put_nowait("b")
        await imp.queue.join()
        assert [t["spec"]["inputs"] for t in h.triggers] == [{"id": "gh-a"}, {"id": "gh-b"}]
        assert {d for _, d, _ in h.decisions} == {"Created"}
        assert h.client.dispatcher.has_session("a")
    assert h.exit_code == 0 and imp.cancelled
    totals = h.client.stats.totals  # counted by the SDK; the operator writes its own counts
    assert totals["triggersReceived"] == 2 and totals["storiesLaunched"] == 2


async def test_sigterm_cancels_run_and_exits_zero():
    imp = Emitter()
    h = ImpulseHarness(impulse=imp)
    await h.start()
    assert await h.stop("SIGTERM") == 0
    assert imp.cancelled


class ClosesSlowly(bubu.Impulse[dict]):
    """Waits for events (or on client.shutdown), then closes its source over several turns."""

    def __init__(self, *, watch_shutdown: bool) -> None:
        self.watch_shutdown = watch_shutdown
        self.started = False
        self.closed_steps = 0

    async def run(self, client) -> None:
        self.started = True
        try:
            if self.watch_shutdown:
                await client.shutdown.wait()
            else:
                await asyncio.Event().wait()  # an event source that never delivers
        finally:
            for _ in range(5):  # a connection pool's close: several awaits
                await asyncio.sleep(0)
                self.closed_steps += 1


async def test_stop_cancels_run_once_and_its_cleanup_finishes():
    # run() wakes on client.shutdown in the same loop turn the stop is requested; the
    # cancellation must already be delivered by then, not land inside the cleanup after it.
    imp = ClosesSlowly(watch_shutdown=True)
    h = ImpulseHarness(impulse=imp)
    await h.start()
    assert await h.stop("SIGTERM") == 0
    assert imp.closed_steps == 5


async def test_stop_requested_before_run_starts_still_runs_it_and_its_cleanup():
    # run() is called, the cancellation lands at its first await, and its finally runs.
    imp = ClosesSlowly(watch_shutdown=False)
    stop = Shutdown()
    stop.request("SIGTERM")
    code = await run_impulse(imp, source=MappingSource({}), client=FakeCluster(), shutdown=stop)
    assert code == 0
    assert imp.started and imp.closed_steps == 5


class Failing(bubu.Impulse[dict]):
    async def run(self, client) -> None:
        raise RuntimeError("socket exploded")


async def test_run_error_is_exit_one_and_logged(caplog):
    caplog.set_level(logging.ERROR, logger="bubu.impulse")
    code = await ImpulseHarness(impulse=Failing()).run()
    assert code == 1
    assert "impulse execution failed: socket exploded" in caplog.text


class Returns(bubu.Impulse[dict]):
    async def run(self, client) -> None:
        assert client.target.name == "story"
        await client.start_story(inputs={"x": 1})


async def test_run_returning_is_exit_zero():
    h = ImpulseHarness(impulse=Returns())
    assert await h.run() == 0
    assert len(h.story_runs) == 1


class BadInit(bubu.Impulse[Cfg]):
    async def run(self, client) -> None:
        raise AssertionError("unreachable")


async def test_bad_config_fails_before_run(caplog):
    caplog.set_level(logging.ERROR, logger="bubu.impulse")
    h = ImpulseHarness(impulse=BadInit(), config={"count": "many"})
    with pytest.raises(RuntimeError, match="ended before run started"):
        await h.start()
    assert h.exit_code == 1
    assert "failed to unmarshal config" in caplog.text and "count" in caplog.text


async def test_secrets_fail_closed_without_harness_override(caplog):
    caplog.set_level(logging.ERROR, logger="bubu.impulse")
    source = MappingSource({"BUBU_SECRET_TOKEN": "file:/nonexistent/bubu-secret"})
    code = await run_impulse(Emitter(), source=source, client=FakeCluster(), shutdown=Shutdown())
    assert code == 1
    assert "failed to expand secrets" in caplog.text
    # the path is not printed (docs/contract/runtime-environment.md#secrets)
    assert "/nonexistent" not in caplog.text


async def test_helpers_in_run_scope_use_the_harness_cluster():
    h = ImpulseHarness(impulse=Emitter())
    await h.start()
    result = await h.call(bubu.start_story_with_token, "story", "tok", {"a": 1})
    assert result.decision == "Created"
    again = await h.call(bubu.start_story_with_token, "story", "tok", {"a": 1})
    assert again.deduplicated and again.story_run == result.story_run
    await h.stop()
