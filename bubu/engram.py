"""Public base classes for engrams and impulses, and ``engram_types``.

Subclass one of them with concrete type arguments; entry points read those arguments to decode
config and inputs before any network call (docs/contract/design.md#declaration-time-checks,
Temporal's declaration-time check)::

    class Config(msgspec.Struct):
        greeting: str = "hello"

    class Inputs(msgspec.Struct):
        name: str

    class Greeter(bubu.BatchEngram[Config, Inputs]):
        async def process(self, ctx: bubu.ExecutionContext, inputs: Inputs) -> bubu.Result:
            return bubu.Result({"text": f"{self.config.greeting} {inputs.name}"})

The methods are checked when the subclass is declared: ``process``, ``init`` and ``run`` must be
``async def``; ``stream`` must be an ``async def`` generator (or an ``async def`` taking an
outbound sender). A mistake raises ``TypeError`` at import time, not in the cluster.

Imports ``bubu._runtime`` only; the streaming message types are referenced for type checking.
"""

from __future__ import annotations

import abc
import inspect
import typing
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from bubu._runtime.context import ExecutionContext
from bubu._runtime.result import Result
from bubu._runtime.secrets import Secrets

if TYPE_CHECKING:
    from bubu._runtime.messages import InboundMessage, StreamMessage

__all__ = ["BatchEngram", "Impulse", "StreamingEngram", "engram_types"]

ConfigT = TypeVar("ConfigT")
InputsT = TypeVar("InputsT")


def _check_coroutine(cls: type, name: str) -> None:
    method = cls.__dict__.get(name)
    if method is None:
        return
    func = getattr(method, "__func__", method)
    if not inspect.iscoroutinefunction(func):
        raise TypeError(
            f"{cls.__qualname__}.{name} must be a coroutine function: declare it with 'async def'"
        )


class BatchEngram(Generic[ConfigT, InputsT], abc.ABC):
    """A batch step: ``init`` once, then ``process`` once with the decoded inputs.

    Type arguments: ``ConfigT`` (decoded from ``BUBU_STEP_CONFIG``) and ``InputsT`` (decoded from
    the step inputs); msgspec ``Struct`` types or ``dict``.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_coroutine(cls, "init")
        _check_coroutine(cls, "process")

    async def init(self, config: ConfigT, secrets: Secrets) -> None:
        """Prepare the engram; runs once before ``process``. The default does nothing.

        Args:
            config: the decoded config.
            secrets: the expanded secrets (values never print).
        """

    @abc.abstractmethod
    async def process(self, ctx: ExecutionContext, inputs: InputsT) -> Result:
        """Do the step's work and return its ``Result``.

        Raise ``bubu.errors.EngramError`` to choose the failure's type, retryability and exit
        class; any other exception fails the step as a terminal ``execution_error``.
        """


class StreamingEngram(Generic[ConfigT], abc.ABC):
    """A streaming step: ``init`` once, then ``stream`` for each transport session.

    ``stream`` receives an async iterator of ``InboundMessage`` (call ``done()`` on each when it
    is processed) and yields ``StreamMessage`` values.
    """

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_coroutine(cls, "init")
        method = cls.__dict__.get("stream")
        if method is not None:
            func = getattr(method, "__func__", method)
            if not (inspect.isasyncgenfunction(func) or inspect.iscoroutinefunction(func)):
                raise TypeError(
                    f"{cls.__qualname__}.stream must be an 'async def' generator (yielding "
                    "StreamMessage) or an 'async def' taking an outbound sender"
                )

    async def init(self, config: ConfigT, secrets: Secrets) -> None:
        """Prepare the engram; runs once, before the first session. The default does nothing."""

    @abc.abstractmethod
    def stream(self, inbound: AsyncIterator[InboundMessage]) -> AsyncIterator[StreamMessage]:
        """Consume inbound messages and yield outbound ones (an ``async def`` generator)."""


class Impulse(Generic[ConfigT], abc.ABC):
    """An event source that starts stories: ``init`` once, then ``run`` until it returns."""

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _check_coroutine(cls, "init")
        _check_coroutine(cls, "run")

    async def init(self, config: ConfigT, secrets: Secrets) -> None:
        """Prepare the impulse; runs once before ``run``. The default does nothing."""

    @abc.abstractmethod
    async def run(self, client: Any) -> None:
        """Run the event loop of the impulse.

        Args:
            client: the Kubernetes client of the run (``bubu._k8s.client.KubeClient``); the
                helpers (``bubu.start_story``...) find it without being passed it.
        """


_BASES: tuple[type, ...] = (BatchEngram, StreamingEngram, Impulse)


def _substitute(arg: Any, mapping: dict[Any, Any]) -> Any:
    if isinstance(arg, TypeVar):
        return mapping.get(arg, arg)
    return arg


def _find_args(cls: type, base: type, mapping: dict[Any, Any]) -> tuple[Any, ...] | None:
    for orig in getattr(cls, "__orig_bases__", ()):
        origin = typing.get_origin(orig) or orig
        if not isinstance(origin, type):
            continue
        args = tuple(_substitute(a, mapping) for a in typing.get_args(orig))
        if origin is base:
            return args
        if issubclass(origin, base):
            params = getattr(origin, "__parameters__", ())
            found = _find_args(origin, base, dict(zip(params, args, strict=False)))
            if found is not None:
                return found
    return None


def engram_types(obj: object, base: type | None = None) -> tuple[Any, Any]:
    """Read the config and inputs types from an engram's generic base.

    ``class E(BatchEngram[Config, Inputs])`` gives ``(Config, Inputs)``. Intermediate generic
    classes are followed (``class Base(BatchEngram[C, I])`` then ``class E(Base[Cfg, In])``).
    A missing or unresolved type argument gives ``dict``. For ``StreamingEngram`` and
    ``Impulse``, which have no inputs type, the second element is ``None``.

    Args:
        obj: an engram instance or class.
        base: ``BatchEngram``, ``StreamingEngram`` or ``Impulse``; found from ``obj`` if omitted.

    Raises:
        TypeError: if ``obj`` is not a subclass (or instance) of ``base``.
    """
    cls = obj if isinstance(obj, type) else type(obj)
    if base is None:
        base = next((b for b in _BASES if issubclass(cls, b)), None)
        if base is None:
            raise TypeError(
                f"{cls.__qualname__} is not a BatchEngram, StreamingEngram or Impulse subclass"
            )
    if not issubclass(cls, base):
        raise TypeError(f"{cls.__qualname__} is not a subclass of {base.__qualname__}")
    args: tuple[Any, ...] | None = None
    for klass in cls.__mro__:
        args = _find_args(klass, base, {})
        if args is not None:
            break
    resolved = [dict if a is None or isinstance(a, TypeVar) else a for a in (args or ())]
    config_type = resolved[0] if resolved else dict
    if base is BatchEngram:
        inputs_type = resolved[1] if len(resolved) > 1 else dict
        return config_type, inputs_type
    return config_type, None
