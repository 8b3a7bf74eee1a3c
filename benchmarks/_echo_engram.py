"""The bubu echo engram of ``bench_vs_go.py``: what ``tests/interop/cmd/echo`` is for Go.

It sends every inbound message back unchanged but for the envelope (the hub sequences the next
hop), then marks it done, and starts the way a streaming engram's container does
(``bubu.run(bubu.start_streaming(...))``, the binding from ``BUBU_TRANSPORT_BINDING``).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import bubu


class Echo(bubu.StreamingEngram[Any]):
    """Echo every message (the Go program does the same with ``sdk.StartStreaming``)."""

    async def stream(
        self, inbound: AsyncIterator[bubu.InboundMessage]
    ) -> AsyncIterator[bubu.StreamMessage]:
        async for msg in inbound:
            yield msg.message.replace(envelope=None)
            msg.done()


if __name__ == "__main__":
    bubu.run(bubu.start_streaming(Echo()))
