"""Engram base classes: declaration-time checks and engram_types."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, Generic, TypeVar

import msgspec
import pytest

from bubu._runtime.context import ExecutionContext
from bubu._runtime.result import Result
from bubu._runtime.secrets import Secrets
from bubu.engram import BatchEngram, Impulse, StreamingEngram, engram_types


class Config(msgspec.Struct):
    greeting: str = "hello"


class Inputs(msgspec.Struct):
    name: str


class Greeter(BatchEngram[Config, Inputs]):
    async def init(self, config: Config, secrets: Secrets) -> None:
        self.config = config

    async def process(self, ctx: ExecutionContext, inputs: Inputs) -> Result:
        return Result({"text": f"{self.config.greeting} {inputs.name}"})


async def test_batch_engram_runs() -> None:
    engram = Greeter()
    await engram.init(Config(), Secrets())
    result = await engram.process(ExecutionContext(), Inputs(name="bob"))
    assert result.data == {"text": "hello bob"}


async def test_default_init_is_a_noop() -> None:
    class NoInit(BatchEngram[dict[str, Any], dict[str, Any]]):
        async def process(self, ctx: ExecutionContext, inputs: dict[str, Any]) -> Result:
            return Result(inputs)

    engram = NoInit()
    assert await engram.init({}, Secrets()) is None
    assert (await engram.process(ExecutionContext(), {"a": 1})).data == {"a": 1}


def test_process_must_be_declared() -> None:
    class Incomplete(BatchEngram[Config, Inputs]):
        pass

    with pytest.raises(TypeError, match="abstract"):
        Incomplete()  # type: ignore[abstract]


def test_sync_process_is_rejected_at_declaration() -> None:
    with pytest.raises(TypeError, match=r"Bad\.process must be a coroutine function"):

        class Bad(BatchEngram[Config, Inputs]):
            def process(self, ctx: ExecutionContext, inputs: Inputs) -> Result:  # type: ignore[override]
                return Result(None)


def test_sync_init_is_rejected_at_declaration() -> None:
    with pytest.raises(TypeError, match=r"init must be a coroutine function"):

        class Bad(Impulse[Config]):
            def init(self, config: Config, secrets: Secrets) -> None:  # type: ignore[override]
                pass

            async def run(self, client: Any) -> None:
                pass


def test_impulse_run_must_be_async() -> None:
    with pytest.raises(TypeError, match=r"run must be a coroutine function"):

        class Bad(Impulse[Config]):
            def run(self, client: Any) -> None:  # type: ignore[override]
                pass


def test_streaming_stream_must_be_async() -> None:
    class Echo(StreamingEngram[Config]):
        async def stream(self, inbound: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for message in inbound:
                yield message

    assert engram_types(Echo) == (Config, None)

    with pytest.raises(TypeError, match=r"stream must be an 'async def' generator"):

        class Bad(StreamingEngram[Config]):
            def stream(self, inbound: Any) -> Any:
                return iter(())


async def test_streaming_generator_yields() -> None:
    class Echo(StreamingEngram[Config]):
        async def stream(self, inbound: AsyncIterator[Any]) -> AsyncIterator[Any]:
            async for message in inbound:
                yield message * 2

    async def source() -> AsyncIterator[int]:
        for i in (1, 2):
            yield i

    assert [m async for m in Echo().stream(source())] == [2, 4]


# --- engram_types ---


def test_engram_types_from_instance_and_class() -> None:
    assert engram_types(Greeter()) == (Config, Inputs)
    assert engram_types(Greeter, BatchEngram) == (Config, Inputs)


def test_engram_types_unparameterised_gives_dict() -> None:
    class Loose(BatchEngram):  # type: ignore[type-arg]
        async def process(self, ctx: ExecutionContext, inputs: Any) -> Result:
            return Result(None)

    assert engram_types(Loose) == (dict, dict)

    class LooseImpulse(Impulse):  # type: ignore[type-arg]
        async def run(self, client: Any) -> None:
            pass

    assert engram_types(LooseImpulse) == (dict, None)


C = TypeVar("C")
I = TypeVar("I")  # noqa: E741


class Base(BatchEngram[C, I], Generic[C, I]):
    async def process(self, ctx: ExecutionContext, inputs: I) -> Result:
        return Result(None)


class Concrete(Base[Config, Inputs]):
    pass


class SubConcrete(Concrete):
    pass


class PartlyBound(BatchEngram[Config, I], Generic[I]):
    async def process(self, ctx: ExecutionContext, inputs: I) -> Result:
        return Result(None)


class Bound(PartlyBound[Inputs]):
    pass


def test_engram_types_follow_intermediate_generics() -> None:
    assert engram_types(Concrete) == (Config, Inputs)
    assert engram_types(SubConcrete()) == (Config, Inputs)
    assert engram_types(Bound) == (Config, Inputs)
    assert engram_types(Base) == (dict, dict)
    assert engram_types(PartlyBound) == (Config, dict)


def test_engram_types_rejects_non_engrams() -> None:
    with pytest.raises(TypeError, match="is not a BatchEngram, StreamingEngram or Impulse"):
        engram_types(object())
    with pytest.raises(TypeError, match="is not a subclass of Impulse"):
        engram_types(Greeter, Impulse)
