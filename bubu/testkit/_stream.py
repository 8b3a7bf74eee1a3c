"""``StreamHarness``: run a streaming engram in memory, without a connector or gRPC.

Mirrors Go ``testkit.StreamHarness`` (go-sdk-core.md (a) testkit): expand the secrets, ``init``,
then ``stream`` over the given inputs; the inbound iterator ends after the last input, and the
outputs are collected until ``stream`` returns. Outputs go through the same validation and
encoding as in production (``StreamMessage.validate``, the outbound encoder and the
``buf.validate`` rules), so an invalid message fails here, at its ``yield``, as it would in a pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

from bubu._runtime.decode import decode
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.secrets import Secrets
from bubu._runtime.transport import TransportSettings
from bubu._streaming import engram_runner
from bubu._transport import wire
from bubu._transport.queues import Inbound
from bubu.engram import StreamingEngram, engram_types

__all__ = ["StreamHarness"]

ConfigT = TypeVar("ConfigT")


class StreamHarness(Generic[ConfigT]):
    """Run ``engram`` over ``inputs`` in memory and return what it publishes.

    Args:
        engram: the streaming engram under test.
        config: its config: an instance of its ``ConfigT`` or a dict decoded into it (``None`` is
            an empty object, so a Struct with defaults works).
        inputs: the inbound messages, delivered in order.
        secrets: plain secret values (``Secrets`` is built from them).
        on_input_processed: called with each input when the engram calls ``done()`` on it
            (Go ``OnInputProcessed``).
        timeout: seconds before the run is cancelled (``None``: no limit).

    After :meth:`run`, ``done_count`` is the number of inputs marked done and ``undone`` lists
    the inputs that were not.
    """

    def __init__(
        self,
        *,
        engram: StreamingEngram[ConfigT],
        config: ConfigT | Mapping[str, Any] | None = None,
        inputs: Sequence[StreamMessage] = (),
        secrets: Mapping[str, str] | Secrets | None = None,
        on_input_processed: Callable[[StreamMessage], None] | None = None,
        timeout: float | None = 60.0,
    ) -> None:
        if engram is None:
            raise ValueError("StreamHarness needs an engram")
        for item in inputs:
            if not isinstance(item, StreamMessage):
                raise TypeError(f"inputs must be StreamMessage values, got {type(item).__name__}")
        self.engram = engram
        self.config = config
        self.inputs = list(inputs)
        self.secrets = secrets
        self.on_input_processed = on_input_processed
        self.timeout = timeout
        self.outputs: list[StreamMessage] = []
        self.done_count = 0
        self.undone: list[StreamMessage] = []

    def _config(self) -> Any:
        config_type, _ = engram_types(self.engram)
        if self.config is None or isinstance(self.config, Mapping):
            return decode(dict(self.config or {}), config_type, path="$.config")
        return self.config

    async def run(self) -> list[StreamMessage]:
        """Init the engram, stream the inputs through it and return its outputs.

        Raises:
            ProtocolViolationError: an output is invalid and the engram did not handle it.
            Exception: whatever ``init`` or ``stream`` raised, unchanged.
        """
        secrets = self.secrets if isinstance(self.secrets, Secrets) else Secrets(self.secrets)
        await self.engram.init(self._config(), secrets)
        settings = TransportSettings()
        inbound = Inbound(maxsize=len(self.inputs) + 1)
        settled: list[bool] = [False] * len(self.inputs)

        def settle_for(index: int, message: StreamMessage) -> Callable[[], None]:
            def settle() -> None:
                settled[index] = True
                self.done_count += 1
                if self.on_input_processed is not None:
                    self.on_input_processed(message)

            return settle

        for index, message in enumerate(self.inputs):
            inbound.put_nowait(InboundMessage(message, settle_for(index, message)))
        inbound.close()

        async def emit(message: StreamMessage) -> None:
            wire.encode_outbound(message, settings)
            self.outputs.append(message)

        runner = engram_runner(self.engram)
        if self.timeout is None:
            await runner(inbound, emit)
        else:
            async with asyncio.timeout(self.timeout):
                await runner(inbound, emit)
        self.undone = [m for m, ok in zip(self.inputs, settled, strict=True) if not ok]
        return list(self.outputs)
