"""text-emitter: emit one configured text, as a batch step or at the start of a stream.

A port of the Go sample engram, and the smallest dual-mode engram: the same class is a
``BatchEngram`` (a Job returns ``{"type": "text.emit.v1", "text": ...}``) and a
``StreamingEngram`` (a Deployment publishes that object once when the stream opens, then
acknowledges and discards whatever arrives). ``bubu.start`` picks the mode the operator chose.

The stream message is the canonical JSON shape (``payload`` plus the ``application/json``
binary mirror) rather than the Go sample's ``Inputs`` = ``Payload`` copy.

Run it locally::

    bubu run examples/text-emitter/text_emitter.py --config '{"message": "hi"}'
    echo '{}' | bubu run --stream examples/text-emitter/text_emitter.py
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated

import msgspec

import bubu

KIND = "text.emit.v1"


class Config(msgspec.Struct):
    """What to emit."""

    message: Annotated[str, msgspec.Meta(description="The text to emit")] = (
        "Hello! How can I help you today?"
    )
    enabled: Annotated[bool, msgspec.Meta(description="Emit an empty text when false")] = True
    delay_ms: Annotated[int, msgspec.Meta(ge=0, description="Wait before emitting (ms)")] = (
        msgspec.field(default=0, name="delayMs")
    )


class Output(msgspec.Struct):
    """The emitted object (the batch output and the stream message's JSON)."""

    type: str
    text: str


class TextEmitter(bubu.BatchEngram[Config, dict], bubu.StreamingEngram[Config]):
    """Emits a configured text once."""

    output_type = Output

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.config = config

    async def _emitted(self) -> Output:
        if self.config.delay_ms:
            await asyncio.sleep(self.config.delay_ms / 1000)
        return Output(type=KIND, text=self.config.message if self.config.enabled else "")

    async def process(self, ctx: bubu.ExecutionContext, inputs: dict) -> bubu.Result:
        return bubu.Result(await self._emitted())

    async def stream(
        self, inbound: AsyncIterator[bubu.InboundMessage]
    ) -> AsyncIterator[bubu.StreamMessage]:
        yield bubu.StreamMessage.json(
            await self._emitted(),
            kind=KIND,
            metadata={"type": KIND, "provider": "text-emitter"},
        )
        # Nothing upstream is used, but every delivery is acknowledged, so the connector does
        # not redeliver it after a reconnect.
        async for msg in inbound:
            msg.done()


if __name__ == "__main__":
    bubu.run(bubu.start(TextEmitter()))
