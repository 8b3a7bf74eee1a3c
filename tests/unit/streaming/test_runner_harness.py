"""The engram-facing runtime without a network: Inbound, the runners, ``concurrently``,
StreamHarness and the conformance suite."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import msgspec
import pytest

from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._streaming import ControlDirective, Sender, concurrently, engram_runner
from bubu._transport.queues import Inbound
from bubu.engram import StreamingEngram
from bubu.errors import EngramError, ProtocolViolationError
from bubu.testkit import ConformanceError, StreamHarness, StreamSuite
from bubu.testkit._conformance import validate_stream_message


def inputs(n: int) -> list[StreamMessage]:
    return [StreamMessage.json({"n": i}) for i in range(n)]


class Config(msgspec.Struct):
    factor: int = 1


class Doubler(StreamingEngram[Config]):
    async def init(self, config: Config, secrets: Any) -> None:
        self.factor = config.factor
        self.secret = secrets.get("token")

    async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        async for msg in inbound:
            async with msg:
                yield StreamMessage.json({"n": msg.json_data()["n"] * self.factor})


async def test_inbound_close_ends_after_queued_and_stop_ends_at_once() -> None:
    inbound = Inbound(4)
    for m in inputs(2):
        inbound.put_nowait(InboundMessage(m))
    inbound.close()
    assert [m.json_data()["n"] async for m in inbound] == [0, 1]

    stopped = Inbound(4)
    stopped.put_nowait(InboundMessage(inputs(1)[0]))
    stopped.stop()
    assert [m async for m in stopped] == []


async def test_inbound_stop_wakes_a_waiting_consumer() -> None:
    inbound = Inbound(2)

    async def consume() -> list[Any]:
        return [m async for m in inbound]

    task = asyncio.create_task(consume())
    await asyncio.sleep(0)
    inbound.stop()
    assert await asyncio.wait_for(task, 1) == []


async def test_harness_decodes_config_passes_secrets_and_marks_inputs_done() -> None:
    engram = Doubler()
    processed: list[StreamMessage] = []
    harness = StreamHarness(
        engram=engram,
        config={"factor": 3},
        inputs=inputs(3),
        secrets={"token": "s3cr3t"},
        on_input_processed=processed.append,
    )
    outputs = await harness.run()
    assert [o.json_data() for o in outputs] == [{"n": 0}, {"n": 3}, {"n": 6}]
    assert harness.done_count == 3 and harness.undone == [] and len(processed) == 3
    assert engram.secret == "s3cr3t"


async def test_harness_raises_invalid_outputs_at_the_yield() -> None:
    class Bad(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            yield StreamMessage(kind="bad kind")

    with pytest.raises(ProtocolViolationError, match="kind"):
        await StreamHarness(engram=Bad()).run()


async def test_generator_sees_invalid_output_and_can_recover() -> None:
    seen: list[str] = []

    class Recovers(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            try:
                yield StreamMessage.from_audio(b"\x00\x00", 7999)
            except ProtocolViolationError as exc:
                seen.append(str(exc))
            yield StreamMessage.json({"ok": True})

    outputs = await StreamHarness(engram=Recovers()).run()
    assert [o.json_data() for o in outputs] == [{"ok": True}]
    assert "sample_rate_hz" in seen[0]


async def test_yielding_a_non_message_is_a_type_error_at_the_yield() -> None:
    class Wrong(StreamingEngram[Config]):
        async def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[Any]:
            yield {"not": "a message"}

    with pytest.raises(TypeError, match="yield StreamMessage"):
        await StreamHarness(engram=Wrong()).run()


async def test_async_with_does_not_mark_done_when_the_block_raises() -> None:
    class Fails(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            async for msg in inbound:
                async with msg:
                    if msg.json_data()["n"] == 1:
                        raise RuntimeError("boom")
                    yield StreamMessage.json({"ok": msg.json_data()["n"]})

    harness = StreamHarness(engram=Fails(), inputs=inputs(3))
    with pytest.raises(RuntimeError, match="boom"):
        await harness.run()
    assert harness.done_count == 1


async def test_backpressure_generator_resumes_only_after_emit_returns() -> None:
    order: list[str] = []
    gate = asyncio.Event()

    async def emit(msg: StreamMessage) -> None:
        order.append(f"emit {msg.json_data()['n']}")
        if msg.json_data()["n"] == 0:
            await gate.wait()

    class Gen(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            for i in range(2):
                order.append(f"yield {i}")
                yield StreamMessage.json({"n": i})

    inbound = Inbound(1)
    inbound.close()
    task = asyncio.create_task(engram_runner(Gen())(inbound, emit))
    async with asyncio.timeout(10):
        while "emit 0" not in order:  # noqa: ASYNC110 - emit 0 then holds at the gate
            await asyncio.sleep(0)
    assert order == ["yield 0", "emit 0"]
    gate.set()
    await task
    assert order == ["yield 0", "emit 0", "yield 1", "emit 1"]


async def test_sender_runner() -> None:
    sent: list[StreamMessage] = []

    async def emit(msg: StreamMessage) -> None:
        sent.append(msg)

    class Push(StreamingEngram[Config]):
        async def stream(self, inbound: AsyncIterator[InboundMessage], out: Sender) -> None:
            async for msg in inbound:
                await out.send(StreamMessage.json({"echo": msg.json_data()}))
                msg.done()

    inbound = Inbound(2)
    inbound.put_nowait(InboundMessage(inputs(1)[0]))
    inbound.close()
    await engram_runner(Push())(inbound, emit)
    assert [m.json_data() for m in sent] == [{"echo": {"n": 0}}]


async def test_concurrently_bounds_parallelism_and_marks_done_after_yield() -> None:
    active = 0
    peak = 0
    done_before_yield: list[bool] = []

    async def handle(msg: InboundMessage) -> list[StreamMessage]:
        nonlocal active, peak
        active += 1
        peak = max(peak, active)
        await asyncio.sleep(0.005 * (3 - msg.json_data()["n"] % 3))
        active -= 1
        return [StreamMessage.json({"n": msg.json_data()["n"]}), StreamMessage.json({"x": 1})]

    inbound = Inbound(16)
    messages = [InboundMessage(m) for m in inputs(9)]
    for m in messages:
        inbound.put_nowait(m)
    inbound.close()
    outs = []
    async for out in concurrently(inbound, handle, limit=3):
        if "n" in out.json_data():
            n = out.json_data()["n"]
            done_before_yield.append(messages[n].is_done)
        outs.append(out)
    assert len(outs) == 18 and peak == 3
    assert not any(done_before_yield)
    assert all(m.is_done for m in messages)


async def test_concurrently_failure_leaves_message_undone_and_cancels_others() -> None:
    started: list[int] = []

    async def handle(msg: InboundMessage) -> None:
        n = msg.json_data()["n"]
        started.append(n)
        if n == 0:
            raise RuntimeError("bad message")
        await asyncio.sleep(10)

    inbound = Inbound(8)
    messages = [InboundMessage(m) for m in inputs(3)]
    for m in messages:
        inbound.put_nowait(m)
    inbound.close()
    with pytest.raises(RuntimeError, match="bad message"):
        async for _ in concurrently(inbound, handle, limit=3):
            pass
    assert not any(m.is_done for m in messages)


async def test_concurrently_rejects_bad_limit() -> None:
    with pytest.raises(ValueError, match="limit"):
        async for _ in concurrently(Inbound(1), lambda m: asyncio.sleep(0), limit=0):  # type: ignore[arg-type, return-value]
            pass


def test_control_directive_default_replies() -> None:
    assert ControlDirective(type="ack").default_reply() is None
    reply = ControlDirective(type="handoff.cutover").default_reply()
    assert reply == ControlDirective(
        type="ack", metadata={"handled": "true", "reason": "handoff", "type": "handoff.cutover"}
    )


# -- conformance ----------------------------------------------------------------------------


async def test_stream_suite_passes_a_good_engram() -> None:
    outputs = await StreamSuite(
        engram=Doubler(),
        config={"factor": 2},
        inputs=inputs(2),
        min_output_count=2,
        require_all_inputs_done=True,
    ).run()
    assert len(outputs) == 2


async def test_stream_suite_checks_min_outputs_and_done() -> None:
    class Lazy(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            async for _msg in inbound:
                pass
            yield StreamMessage.json({"only": 1})

    with pytest.raises(ConformanceError, match="at least 2"):
        await StreamSuite(engram=Lazy(), inputs=inputs(2), min_output_count=2).run()
    with pytest.raises(ConformanceError, match="0 of 2 done"):
        await StreamSuite(engram=Lazy(), inputs=inputs(2), require_all_inputs_done=True).run()


async def test_stream_suite_error_expectations() -> None:
    class Raises(StreamingEngram[Config]):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            raise EngramError("nope", type="validation_error")
            yield  # pragma: no cover

    class Plain(Raises):
        async def stream(
            self, inbound: AsyncIterator[InboundMessage]
        ) -> AsyncIterator[StreamMessage]:
            raise ValueError("plain")
            yield  # pragma: no cover

    seen: list[BaseException] = []
    await StreamSuite(
        engram=Raises(), require_structured_error=True, validate_error=seen.append
    ).run()
    assert isinstance(seen[0], EngramError)
    with pytest.raises(ConformanceError, match="unexpectedly"):
        await StreamSuite(engram=Raises()).run()
    with pytest.raises(ConformanceError, match="structured error"):
        await StreamSuite(engram=Plain(), require_structured_error=True).run()
    with pytest.raises(ConformanceError, match="expected error, but engram completed"):
        await StreamSuite(engram=Doubler(), expect_error=True).run()


def test_validate_stream_message_rules() -> None:
    validate_stream_message(StreamMessage.error("failed", type="timeout"))
    with pytest.raises(ConformanceError, match="type"):
        validate_stream_message(StreamMessage.error("failed", type="weird"))
    with pytest.raises(ConformanceError, match="carries no"):
        validate_stream_message(StreamMessage(kind="telemetry"))
    with pytest.raises(ConformanceError, match="invalid stream message"):
        validate_stream_message(StreamMessage(payload=b"{}", kind=" x"))


# -- batch conformance ------------------------------------------------------------------------


class BatchInputs(msgspec.Struct):
    x: int = 0


async def test_batch_suite_success_and_error_expectations() -> None:
    from bubu._runtime.result import Result
    from bubu.engram import BatchEngram
    from bubu.testkit._conformance import BatchSuite

    class Square(BatchEngram[Config, BatchInputs]):
        async def process(self, ctx: Any, inputs: BatchInputs) -> Result:
            if inputs.x < 0:
                raise EngramError("negative", type="validation_error")
            return Result({"y": inputs.x * inputs.x})

    seen: list[Any] = []
    result = await BatchSuite(engram=Square(), inputs={"x": 3}, validate_result=seen.append).run()
    assert result.data == {"y": 9} and seen == [result]
    assert (
        await BatchSuite(engram=Square(), inputs={"x": -1}, require_structured_error=True).run()
        is None
    )
    with pytest.raises(ConformanceError, match="unexpectedly"):
        await BatchSuite(engram=Square(), inputs={"x": -1}).run()
    with pytest.raises(ConformanceError, match="expected structured error"):
        await BatchSuite(engram=Square(), inputs={"x": 2}, require_structured_error=True).run()
