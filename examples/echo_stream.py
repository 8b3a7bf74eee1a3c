"""A streaming echo engram: every JSON message comes back with a counter and a greeting.

Run it locally on JSON lines (real gRPC against an in-process connector)::

    printf '{"text": "hi"}\n{"text": "there"}\n' | bubu run --stream examples/echo_stream.py \
        --config '{"greeting": "hello"}'

In a pod, ``bubu.run(bubu.start(EchoStream()))`` streams through the connector sidecar.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec

import bubu


class Config(msgspec.Struct):
    greeting: str = "hello"


class EchoStream(bubu.StreamingEngram[Config]):
    """Echo each inbound JSON message, adding ``n`` and ``greeting``."""

    async def init(self, config: Config, secrets: bubu.Secrets) -> None:
        self.greeting = config.greeting
        self.count = 0

    async def stream(
        self, inbound: AsyncIterator[bubu.InboundMessage]
    ) -> AsyncIterator[bubu.StreamMessage]:
        async for msg in inbound:
            # done() when the block ends (the receipt goes to the connector); if the block
            # raised, the message would stay pending and be redelivered after a reconnect.
            async with msg:
                self.count += 1
                data = msg.json_data() or {}
                yield bubu.StreamMessage.json({**data, "n": self.count, "greeting": self.greeting})


if __name__ == "__main__":
    bubu.run(bubu.start(EchoStream()))
