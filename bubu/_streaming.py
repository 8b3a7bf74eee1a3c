"""``start_streaming``: run a :class:`~bubu.engram.StreamingEngram` against the connector sidecar.

The policy layer over :mod:`bubu._transport.session` (streaming.md 2-3, style.md 6.6):

* load the run context once, parse ``BUBU_TRANSPORT_BINDING`` and the transport knobs (binding
  ``payload.env`` first), decode the config, expand the secrets, and call ``init`` **once**;
* run sessions with the reconnect loop; each session calls ``stream`` again (as Go re-invokes
  ``Stream``), with the same deduper so that a replay of a ``done()`` packet is suppressed;
* the engram is an async generator of :class:`~bubu.StreamMessage`, resumed only once its last
  output is queued (backpressure), or an ``async def stream(self, inbound, out)`` that publishes
  with ``await out.send(msg)``;
* an invalid outbound message is thrown back into the generator at its ``yield`` (catch it to
  skip the message; uncaught, it ends the session as in Go and the session reconnects);
* a stop request (SIGTERM) drains: stop handing out inbound messages, let in-flight ones finish
  within the grace, flush outbound and receipts, close both streams, return 0.

This module imports grpclib only through ``bubu._transport`` and only inside the entry points,
so :func:`concurrently`, :class:`Sender` and :class:`ControlDirective` stay cheap to import.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Iterable
from typing import TYPE_CHECKING, Any, TypeAlias

import msgspec

from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._transport.control import default_control_reply
from bubu.errors import ProtocolViolationError

if TYPE_CHECKING:
    from bubu._aio.shutdown import Shutdown
    from bubu._runtime.sources import EnvSource
    from bubu._transport.settings import TransportSettings
    from bubu.engram import StreamingEngram

__all__ = [
    "ControlDirective",
    "Emit",
    "Sender",
    "concurrently",
    "engram_runner",
    "serve",
    "start_streaming",
    "trace_context",
]

logger = logging.getLogger("bubu.streaming")

Emit: TypeAlias = Callable[[StreamMessage], Awaitable[None]]
"""Queue one outbound message (validated and encoded); waits while the outbound queue is full."""


class ControlDirective(msgspec.Struct, frozen=True, kw_only=True):
    """A control directive from the connector, or the engram's reply to one (streaming.md 3.2).

    Implement ``async def on_control(self, directive) -> ControlDirective | None`` on the engram
    to see every directive (``connector.ready``, ``handoff.draining``, ``start``...). Return a
    reply (``type`` ``"ack"`` usually), ``None`` for no reply, or ``directive.default_reply()``
    for the Go default. A raised exception is sent as ``{action: ERROR, metadata.message}``.

    Attributes:
        type: the directive type string (``connector.ready``, ``heartbeat``, a custom action).
        metadata: string metadata.
    """

    type: str
    metadata: dict[str, str] = {}

    def default_reply(self) -> ControlDirective | None:
        """The reply Go's default handler sends (``None`` for ``ack``: no ack ping-pong)."""
        reply = default_control_reply(self.type)
        if reply is None:
            return None
        return ControlDirective(type=reply[0], metadata=reply[1])


class Sender:
    """The outbound side for engrams written as ``async def stream(self, inbound, out)``.

    ``await out.send(msg)`` validates and queues ``msg``; it waits while the outbound queue is
    full (backpressure) and raises :class:`~bubu.errors.ProtocolViolationError` for an invalid
    message, before anything reaches the wire.
    """

    __slots__ = ("_emit", "sent")

    def __init__(self, emit: Emit) -> None:
        self._emit = emit
        self.sent = 0

    async def send(self, message: StreamMessage) -> None:
        """Validate and queue ``message``."""
        if not isinstance(message, StreamMessage):
            raise TypeError(f"out.send() takes a StreamMessage, not {type(message).__name__}")
        await self._emit(message)
        self.sent += 1


_StreamRunner: TypeAlias = Callable[
    [AsyncIterator[InboundMessage], Emit], Coroutine[Any, Any, None]
]


def engram_runner(engram: Any) -> _StreamRunner:
    """Return a coroutine function that runs one session's worth of ``engram.stream``.

    Detects the two supported shapes: an async generator ``stream(inbound)`` and a coroutine
    ``stream(inbound, out)``.

    Raises:
        TypeError: ``stream`` is neither.
    """
    stream = engram.stream
    if inspect.isasyncgenfunction(stream):
        return _generator_runner(stream)
    if inspect.iscoroutinefunction(stream):

        async def run_sender(inbound: AsyncIterator[InboundMessage], emit: Emit) -> None:
            await stream(inbound, Sender(emit))

        return run_sender
    raise TypeError(
        f"{type(engram).__qualname__}.stream must be an 'async def' generator or an "
        "'async def stream(self, inbound, out)'"
    )


def _generator_runner(stream: Callable[[Any], AsyncIterator[Any]]) -> _StreamRunner:
    async def run(inbound: AsyncIterator[InboundMessage], emit: Emit) -> None:
        agen = stream(inbound)
        athrow = agen.athrow  # type: ignore[attr-defined]
        try:
            try:
                item = await agen.__anext__()
            except StopAsyncIteration:
                return
            while True:
                try:
                    if not isinstance(item, StreamMessage):
                        raise TypeError(
                            f"stream() yielded {type(item).__name__}; yield StreamMessage values"
                        )
                    # Backpressure: the generator is resumed only after emit() has queued its
                    # output (the queue is BUBU_GRPC_CHANNEL_BUFFER_SIZE deep).
                    await emit(item)
                except (ProtocolViolationError, TypeError) as exc:
                    # Raise the problem where the engram can see it: at its yield.
                    try:
                        item = await athrow(exc)
                    except StopAsyncIteration:
                        return
                    continue
                try:
                    item = await agen.__anext__()
                except StopAsyncIteration:
                    return
        finally:
            await agen.aclose()  # type: ignore[attr-defined]

    return run


Handler: TypeAlias = Callable[
    [InboundMessage], Awaitable["StreamMessage | Iterable[StreamMessage] | None"]
]


async def concurrently(
    inbound: AsyncIterator[InboundMessage],
    fn: Handler,
    *,
    limit: int = 8,
) -> AsyncIterator[StreamMessage]:
    """Process up to ``limit`` inbound messages at once, keeping ``done()`` correct.

    ``fn(msg)`` returns ``None``, one :class:`StreamMessage` or an iterable of them. Outputs are
    yielded in completion order; each input is marked ``done()`` only after all its outputs have
    been yielded and the runner has resumed this generator (so they are queued for the wire).
    If ``fn`` raises, the error propagates (the other tasks are cancelled) and that message is not
    done, so it is redelivered after the reconnect (at-least-once). Use it as the body of
    ``stream``::

        async def stream(self, inbound):
            async for out in bubu.streaming.concurrently(inbound, self.handle, limit=16):
                yield out

    Args:
        inbound: the engram's inbound iterator.
        fn: the per-message coroutine function.
        limit: maximum messages in flight (at least 1).
    """
    if limit < 1:
        raise ValueError(f"limit must be >= 1, got {limit}")
    source = inbound.__aiter__()
    running: dict[asyncio.Task[Any], InboundMessage] = {}
    reader: asyncio.Task[InboundMessage] | None = None
    exhausted = False

    async def next_message() -> InboundMessage:
        return await source.__anext__()

    try:
        while True:
            if reader is None and not exhausted and len(running) < limit:
                reader = asyncio.create_task(next_message(), name="bubu.streaming.next")
            waiting: set[asyncio.Task[Any]] = set(running)
            if reader is not None:
                waiting.add(reader)
            if not waiting:
                return
            finished, _ = await asyncio.wait(waiting, return_when=asyncio.FIRST_COMPLETED)
            if reader is not None and reader in finished:
                finished.discard(reader)
                done_reader, reader = reader, None
                try:
                    message = done_reader.result()
                except StopAsyncIteration:
                    exhausted = True
                else:
                    task = asyncio.create_task(_call(fn, message), name="bubu.streaming.work")
                    running[task] = message
            for task in finished:
                message = running.pop(task)
                for out in task.result():
                    yield out
                message.done()
    finally:
        leftovers = list(running)
        if reader is not None:
            leftovers.append(reader)
        for task in leftovers:
            task.cancel()
        for task in leftovers:
            with contextlib.suppress(BaseException):
                await task


async def _call(fn: Handler, message: InboundMessage) -> list[StreamMessage]:
    result = await fn(message)
    if result is None:
        return []
    if isinstance(result, StreamMessage):
        return [result]
    outputs = list(result)
    for item in outputs:
        if not isinstance(item, StreamMessage):
            raise TypeError(f"handler returned {type(item).__name__}; return StreamMessage values")
    return outputs


def trace_context(message: StreamMessage | InboundMessage) -> Any:
    """Return the OpenTelemetry context carried in a message's metadata (Go
    ``ExtractTraceContext``): use it as the parent of the span that processes the message.

    Example::

        with tracer.start_as_current_span("handle", context=bubu.streaming.trace_context(msg)):
            ...
    """
    from bubu import _telemetry

    metadata = message.metadata if isinstance(message, StreamMessage) else message.message.metadata
    return _telemetry.extract_w3c(metadata or {})


def _control_hook(engram: Any) -> Callable[[str, dict[str, str]], Awaitable[Any]] | None:
    hook = getattr(engram, "on_control", None)
    if hook is None:
        return None

    async def handle(directive_type: str, metadata: dict[str, str]) -> Any:
        reply = await hook(ControlDirective(type=directive_type, metadata=metadata))
        if reply is None:
            return None
        if not isinstance(reply, ControlDirective):
            raise TypeError(
                f"on_control returned {type(reply).__name__}; return ControlDirective or None"
            )
        return reply.type, dict(reply.metadata)

    return handle


async def serve(
    engram: Any,
    *,
    endpoint: str,
    binding_reference: str,
    settings: TransportSettings,
    shutdown: Shutdown | None = None,
    on_session: Callable[[Any], None] | None = None,
) -> int:
    """Run an initialised engram against a connector until it ends; return the exit code.

    This is the shared core of :func:`start_streaming` and ``bubu run --stream``.

    Args:
        engram: the engram (``init`` already called).
        endpoint: the connector endpoint.
        binding_reference: ``ns/name`` for the Control header (``""`` to omit).
        settings: the transport knobs.
        shutdown: the stop request to watch; a request drains the current session.
        on_session: called with each new session (tests use it to observe).

    Returns:
        0 when the engram's stream ended or a drain finished.

    Raises:
        BubuError: a non-retriable session error, or retries exhausted.
    """
    from bubu._transport.session import DeliveryBook, Session, run_with_reconnect

    book = DeliveryBook()
    runner = engram_runner(engram)
    control = _control_hook(engram)
    stopping = asyncio.Event()
    current: list[Session] = []

    def make_session() -> Session:
        session = Session(
            endpoint=endpoint,
            binding_reference=binding_reference,
            settings=settings,
            book=book,
            engram=runner,
            control_handler=control,
        )
        current[:] = [session]
        if on_session is not None:
            on_session(session)
        if stopping.is_set():
            session.drain(shutdown.grace if shutdown is not None else 0.0)
        return session

    def on_stop(reason: str) -> None:
        logger.info("stop requested (%s): draining the streaming session", reason)
        stopping.set()
        for session in current:
            session.drain(shutdown.grace if shutdown is not None else 0.0)

    if shutdown is not None:
        shutdown.add_callback(on_stop)
    try:
        retries = await run_with_reconnect(make_session, settings, stop=stopping)
    finally:
        if shutdown is not None:
            shutdown.remove_callback(on_stop)
    if retries:
        logger.info("streaming ended after %d reconnect(s)", retries)
    return 0


async def start_streaming(
    engram: StreamingEngram[Any],
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
) -> int:
    """Run a streaming engram in its pod: init once, then stream through the connector sidecar.

    Args:
        engram: the engram instance.
        source: where ``BUBU_*`` values come from (``os.environ`` when ``None``).
        shutdown: the stop request to watch (``bubu.run`` passes the SIGTERM one).

    Returns:
        The process exit code: 0 when the stream ended or a stop request drained it.

    Raises:
        ContractError: ``BUBU_TRANSPORT_BINDING`` missing or invalid (wrong protocol version,
            no endpoint), or an invalid ``BUBU_TRANSPORT_SECURITY_MODE``.
        BubuError: a non-retriable session error, or reconnect retries exhausted.
    """
    from bubu._aio import shutdown as _shutdown
    from bubu._runtime.context import load_run_context
    from bubu._runtime.decode import decode
    from bubu._runtime.env import resolve_namespace
    from bubu._runtime.secrets import expand_secrets
    from bubu._runtime.sources import OsEnviron
    from bubu._scope import RunScope, activate
    from bubu._transport.binding import BINDING_ENV, EnvResolver, parse_binding
    from bubu._transport.channel import check_security_mode, parse_endpoint
    from bubu._transport.settings import resolve_settings
    from bubu.engram import engram_types

    src: EnvSource = source if source is not None else OsEnviron()
    if shutdown is None:
        # The stop request bubu.run installed for SIGTERM/SIGINT, if any (as start_batch does).
        shutdown = _shutdown.current()
    config_type, _ = engram_types(engram)
    run = load_run_context(src)
    # Checked before any network call and before init: a bad binding is a contract error.
    binding = parse_binding(src.get(BINDING_ENV)).with_namespace(resolve_namespace(src))
    resolver = EnvResolver(binding.env_overrides, src)
    settings = resolve_settings(resolver)
    check_security_mode(settings.security_mode)
    parse_endpoint(binding.endpoint)
    config = decode(run.config, config_type, path="$.config")
    secrets = expand_secrets(run.secret_descriptors, src)
    # The helpers (emit_signal, start_story...) find the run here; tasks inherit it.
    scope = RunScope(source=src, env=run.env, story_info=run.story_info, shutdown=shutdown)
    with activate(scope):
        await engram.init(config, secrets)
        return await serve(
            engram,
            endpoint=binding.endpoint,
            binding_reference=binding.reference,
            settings=settings,
            shutdown=shutdown,
        )
