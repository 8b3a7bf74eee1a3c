"""``StreamHarness``: run a streaming engram in memory, without a connector or gRPC.

Mirrors Go ``testkit.StreamHarness`` (docs/contract/index.md#go-surface testkit): expand the
secrets, ``init``, then ``stream`` over the given inputs; the inbound iterator ends after the last
input, and the outputs are collected until ``stream`` returns. Outputs go through the same
validation and encoding as in production (``StreamMessage.validate``, the outbound encoder and the
``buf.validate`` rules), so an invalid message fails here, at its ``yield``, as it would in a pod.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, TypeVar

import msgspec

from bubu._payloads import Payloads
from bubu._runtime.context import load_run_context
from bubu._runtime.decode import decode
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.secrets import Secrets
from bubu._runtime.sources import MappingSource
from bubu._runtime.transport import TransportSettings
from bubu._scope import RunScope, activate
from bubu._streaming import engram_runner
from bubu._transport import wire
from bubu._transport.queues import Inbound
from bubu.engram import StreamingEngram, engram_types
from bubu.testkit._storage import StorageOption, storage_env

__all__ = ["StreamHarness"]

ConfigT = TypeVar("ConfigT")


def _json(value: Any, what: str) -> str:
    try:
        return msgspec.json.encode(msgspec.to_builtins(value)).decode()
    except (TypeError, msgspec.EncodeError) as exc:
        raise TypeError(f"StreamHarness {what}: not JSON-serialisable: {exc}") from None


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
        storage: where storage refs in a mapping ``config`` resolve, as in a pod: a
            ``LocalStorage`` (``storage.put(value)`` makes a ref), a mapping of
            ``BUBU_STORAGE_*`` values, or ``False``. By default a new ``LocalStorage`` in a
            temporary directory (``harness.storage``), unless ``env`` names a provider.
        template_context: ``BUBU_TEMPLATE_CONTEXT`` for templates in a mapping ``config``.
        env: extra ``BUBU_*`` variables (the run scope the engram's helpers see).

    A mapping ``config`` goes through the pod's config hydration (storage, ConfigMap and Secret
    refs, templates; Go's ``hydrateConfig``) before it is decoded; packets are delivered as
    given (Go resolves no template and hydrates no reference per packet).

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
        storage: StorageOption = None,
        template_context: Mapping[str, Any] | None = None,
        env: Mapping[str, str] | None = None,
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
        self.template_context = template_context
        self.storage, self._env = storage_env(storage, env or {})
        self.outputs: list[StreamMessage] = []
        self.done_count = 0
        self.undone: list[StreamMessage] = []

    def _source(self) -> MappingSource:
        values = dict(self._env)
        if self.config is None or isinstance(self.config, Mapping):
            values["BUBU_STEP_CONFIG"] = _json(dict(self.config or {}), "config")
        if self.template_context is not None:
            values["BUBU_TEMPLATE_CONTEXT"] = _json(dict(self.template_context), "context")
        return MappingSource(values)

    async def _config(self, source: MappingSource) -> Any:
        config_type, _ = engram_types(self.engram)
        if self.config is not None and not isinstance(self.config, Mapping):
            return self.config
        run = load_run_context(source)
        hydrated = await Payloads(run, kube=None).config(run.config)
        return decode(hydrated or {}, config_type, path="$.config")

    async def run(self) -> list[StreamMessage]:
        """Init the engram, stream the inputs through it and return its outputs.

        Raises:
            ProtocolViolationError: an output is invalid and the engram did not handle it.
            Exception: whatever ``init`` or ``stream`` raised, unchanged.
        """
        source = self._source()
        with activate(RunScope(source=source, mode="streaming")):
            return await self._run(source)

    async def _run(self, source: MappingSource) -> list[StreamMessage]:
        secrets = self.secrets if isinstance(self.secrets, Secrets) else Secrets(self.secrets)
        await self.engram.init(await self._config(source), secrets)
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
