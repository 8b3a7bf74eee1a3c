"""examples/text-emitter in both of its modes."""

from __future__ import annotations

import bubu
from bubu.testkit import BatchHarness, StreamHarness
from tests.examples._load import load_example

te = load_example("text-emitter/text_emitter.py")


async def test_batch_returns_the_configured_text() -> None:
    harness = BatchHarness(engram=te.TextEmitter(), config={"message": "hi"})
    await harness.run()
    assert harness.status["output"] == {"type": "text.emit.v1", "text": "hi"}


async def test_batch_default_and_disabled() -> None:
    default = BatchHarness(engram=te.TextEmitter())
    await default.run()
    assert default.status["output"]["text"] == "Hello! How can I help you today?"
    disabled = BatchHarness(engram=te.TextEmitter(), config={"enabled": False})
    await disabled.run()
    assert disabled.status["output"] == {"type": "text.emit.v1", "text": ""}


async def test_stream_emits_once_then_acknowledges_every_input() -> None:
    inputs = [bubu.StreamMessage.json({"i": i}) for i in range(3)]
    harness = StreamHarness(engram=te.TextEmitter(), config={"message": "hey"}, inputs=inputs)
    (out,) = await harness.run()
    assert harness.done_count == 3 and not harness.undone
    assert out.kind == "text.emit.v1"
    assert out.metadata == {"type": "text.emit.v1", "provider": "text-emitter"}
    assert out.json_data() == {"type": "text.emit.v1", "text": "hey"}
    # The canonical JSON shape: payload mirrored into an application/json frame, no inputs.
    assert out.binary is not None and out.binary.payload == out.payload
    assert out.binary.mime_type == "application/json" and out.inputs == b""


async def test_stream_with_no_input_still_emits() -> None:
    outputs = await StreamHarness(engram=te.TextEmitter()).run()
    assert len(outputs) == 1
