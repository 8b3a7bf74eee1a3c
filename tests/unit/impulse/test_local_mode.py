"""Effects and signals in a local run (BatchHarness, `bubu run`): memory status is the StepRun."""

from __future__ import annotations

import pytest

import bubu
from bubu.errors import EffectAlreadyRecordedError, TriggerError
from bubu.testkit import BatchHarness


class Charges(bubu.BatchEngram[dict, dict]):
    def __init__(self) -> None:
        self.calls = 0

    async def process(self, ctx, inputs):
        async def charge():
            self.calls += 1
            return {"chargeId": "ch_1"}

        first = await bubu.execute_effect_once("charge", charge)
        try:
            await bubu.execute_effect_once("charge", charge)
        except EffectAlreadyRecordedError as exc:
            again = exc.details
        seq = await bubu.emit_signal("progress", {"done": 1})
        return bubu.Result({"first": first, "again": again, "seq": seq})


async def test_effects_and_signals_work_under_batch_harness():
    engram = Charges()
    harness = BatchHarness(engram=engram, inputs={})
    result = await harness.run()
    assert engram.calls == 1
    assert result.data == {"first": {"chargeId": "ch_1"}, "again": {"chargeId": "ch_1"}, "seq": 1}
    assert [e["key"] for e in harness.sink.status["effects"]] == ["charge"]
    assert harness.sink.status["signals"]["progress"]["redacted"] is True


class Starts(bubu.BatchEngram[dict, dict]):
    async def process(self, ctx, inputs):
        await bubu.start_story("story", {})


async def test_start_story_in_a_local_run_points_to_the_impulse_harness():
    harness = BatchHarness(engram=Starts(), inputs={})
    with pytest.raises(TriggerError, match="ImpulseHarness"):
        await harness.run()
    assert "ImpulseHarness" in harness.sink.status["error"]["message"]
