"""``start_streaming``: run a :class:`~bubu.engram.StreamingEngram` against the connector sidecar.

The policy layer over :mod:`bubu._transport.session` (docs/contract/stream.md#session,
docs/contract/design.md#cancellation-and-shutdown). The session only speaks the protocol; this
module owns the engram and the retries:

* the start-up every entry point shares (``bubu._startup``: guard, environment loaded once,
  telemetry, the run scope), then parse ``BUBU_TRANSPORT_BINDING`` and the transport knobs (binding
  ``payload.env`` first), decode the config, expand the secrets, and call ``init`` **once**;
* run sessions with the reconnect loop (:func:`run_with_reconnect`); each session runs the body
  :func:`supervise` builds, which calls ``stream`` again (as Go re-invokes ``Stream``), with the
  same deduper so that a replay of a ``done()`` packet is suppressed;
* an exception from ``stream`` is classified (:func:`classify_engram_error`): in a pod it ends
  the session and the connector redelivers; under ``bubu run --stream`` it is reported at once
  with the messages the engram held, and ``stream`` goes on with the next ones;
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
from bubu.errors import (
    BubuError,
    ConnectorUnavailableError,
    ProtocolViolationError,
    StreamSessionError,
)

if TYPE_CHECKING:
    import random

    from bubu._aio.shutdown import Shutdown
    from bubu._runtime.context import RunContext
    from bubu._runtime.sources import EnvSource
    from bubu._runtime.transport import TransportSettings
    from bubu._transport.session import Session
    from bubu.engram import StreamingEngram

__all__ = [
    "ControlDirective",
    "Emit",
    "OnEngramError",
    "Sender",
    "classify_engram_error",
    "concurrently",
    "engram_runner",
    "jitter_delay",
    "run_with_reconnect",
    "serve",
    "start_streaming",
    "supervise",
    "trace_context",
]

logger = logging.getLogger("bubu.streaming")

Emit: TypeAlias = Callable[[StreamMessage], Awaitable[None]]
"""Queue one outbound message (validated and encoded); waits while the outbound queue is full."""


class ControlDirective(msgspec.Struct, frozen=True, kw_only=True):
    """A control directive from the connector, or the engram's reply to one.

    See docs/contract/stream.md#control.

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


OnEngramError: TypeAlias = Callable[[BaseException, list[InboundMessage]], None]
"""Local runs: called with the engram's exception and the messages it held (handed out, not
``done()``); those are then settled and ``stream()`` is invoked again on the same session."""


class _Held(AsyncIterator[InboundMessage]):
    """The inbound iterator of a local run: remembers what the engram holds (not ``done()``)."""

    __slots__ = ("_inbound", "held")

    def __init__(self, inbound: AsyncIterator[InboundMessage]) -> None:
        self._inbound = inbound
        self.held: list[InboundMessage] = []

    def __aiter__(self) -> _Held:
        return self

    async def __anext__(self) -> InboundMessage:
        message = await self._inbound.__anext__()
        self.held = [m for m in self.held if not m.is_done]
        self.held.append(message)
        return message

    def pending(self) -> list[InboundMessage]:
        return [m for m in self.held if not m.is_done]


def classify_engram_error(exc: BaseException) -> BaseException:
    """What an exception from the engram's stream means for the session.

    See docs/contract/stream.md#keepalive-and-limits.

    Go treats an error from ``Stream`` as a session error: the session reconnects and the
    stream is invoked again, so the messages that were not ``done()`` are redelivered (the
    connector owns the retry). SDK errors keep their own ``retryable``.
    """
    if isinstance(exc, ProtocolViolationError):
        # Go: one invalid outbound message is a session error; reconnect, Stream again.
        return StreamSessionError(f"engram stream failed: {exc}")
    if isinstance(exc, BubuError):
        return exc
    return StreamSessionError(f"engram stream failed: {exc!r}")


async def _run_stream_once(
    session: Session, runner: _StreamRunner, inbound: AsyncIterator[InboundMessage]
) -> None:
    """Run ``stream()`` until it returns; on a drain give it the grace, then cancel it."""
    engram = asyncio.create_task(
        session.run_engram(runner(inbound, session.emit)), name="bubu.streaming.engram"
    )
    drain = asyncio.create_task(session.wait_drain(), name="bubu.streaming.drain")
    try:
        await asyncio.wait({engram, drain}, return_when=asyncio.FIRST_COMPLETED)
        if not engram.done():
            # Draining (docs/contract/design.md#cancellation-and-shutdown): inbound is stopped;
            # in-flight work gets the grace.
            grace = session.drain_grace
            done, _ = await asyncio.wait({engram}, timeout=grace)
            if not done:
                logger.warning(
                    "engram stream did not finish within the %.1fs drain grace; cancelling", grace
                )
                engram.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await engram
                return
        engram.result()
    except asyncio.CancelledError:
        engram.cancel()
        raise
    finally:
        drain.cancel()


def supervise(
    runner: _StreamRunner, *, on_error: OnEngramError | None = None
) -> Callable[[Session], Coroutine[Any, Any, None]]:
    """The body a session runs once its handshake is complete: the engram, supervised.

    In a pod (``on_error`` None) an engram error ends the session as a classified session error
    (:func:`classify_engram_error`) and the reconnect loop takes over. In a local run
    (``bubu run --stream``) the failure is reported at once through ``on_error`` with the
    messages the engram held, those are settled (the run reported them; redelivering would
    only fail again), and ``stream()`` is invoked again on the same session.
    """

    async def body(session: Session) -> None:
        while True:
            inbound: AsyncIterator[InboundMessage] = session.inbound
            held = _Held(inbound) if on_error is not None else None
            try:
                await _run_stream_once(session, runner, held or inbound)
                return
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                if on_error is None or held is None:
                    raise classify_engram_error(exc) from exc
                pending = held.pending()
                on_error(exc, pending)
                for message in pending:
                    message.done()
                if session.inbound.closed:
                    return

    return body


def jitter_delay(backoff: float, maximum: float, rng: random.Random | None = None) -> float:
    """Go ``jitterReconnectDelay``: ``backoff * U[0.8, 1.2)`` clamped to ``maximum``."""
    if rng is None:
        # imported on the first reconnect: a session that never fails never needs it
        import random

        draw = random.random()
    else:
        draw = rng.random()
    return min(maximum, backoff * (0.8 + 0.4 * draw))


async def run_with_reconnect(
    make_session: Callable[[], Session],
    settings: TransportSettings,
    *,
    stop: asyncio.Event | None = None,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    delay: Callable[[float, float], float] = jitter_delay,
) -> int:
    """Run sessions until one ends cleanly, retrying retriable failures.

    See docs/contract/stream.md#keepalive-and-limits.

    Backoff starts at ``BUBU_GRPC_RECONNECT_BASE_BACKOFF``, doubles up to the max, with
    ``U[0.8, 1.2)`` jitter. ``BUBU_GRPC_RECONNECT_MAX_RETRIES`` counts retries over the process
    lifetime, as Go does (negative is unlimited).

    Args:
        make_session: builds a fresh session per attempt (fresh queues, shared book).
        settings: the knobs.
        stop: when set, no further attempt is started.
        sleep: replaceable for tests.
        delay: replaceable for tests.

    Returns:
        The number of retries used.

    Raises:
        BaseException: the last error when it is not retriable or retries are exhausted.
    """
    from bubu._transport.session import is_retriable

    backoff = settings.reconnect_base_backoff if settings.reconnect_base_backoff > 0 else 1.0
    remaining = settings.reconnect_max_retries
    retries = 0
    while True:
        session = make_session()
        try:
            await session.run()
            return retries
        except asyncio.CancelledError:
            raise
        except BaseException as caught:
            exc = _primary(caught)
            if isinstance(exc, asyncio.CancelledError):
                raise exc from None
        if stop is not None and stop.is_set():
            if isinstance(exc, StreamSessionError | ConnectorUnavailableError):
                return retries
            raise exc
        if not is_retriable(exc):
            raise exc
        if remaining >= 0:
            remaining -= 1
            if remaining < 0:
                raise StreamSessionError(f"transport connector retries exhausted: {exc}") from exc
        wait = delay(backoff, settings.reconnect_max_backoff)
        logger.warning("transport connector session ended; retrying in %.2fs: %s", wait, exc)
        await sleep(wait)
        if stop is not None and stop.is_set():
            # A stop request arrived while waiting: nothing is in flight, so nothing to drain.
            return retries
        backoff = min(backoff * 2, settings.reconnect_max_backoff)
        retries += 1


def _primary(group: BaseException) -> BaseException:
    """Pick the error that explains a session's end from a TaskGroup's exceptions."""
    leaves: list[BaseException] = []

    def walk(exc: BaseException) -> None:
        if isinstance(exc, BaseExceptionGroup):
            for inner in exc.exceptions:
                walk(inner)
        else:
            leaves.append(exc)

    walk(group)
    for leaf in leaves:
        if not isinstance(leaf, asyncio.CancelledError):
            return leaf
    return leaves[0]


async def serve(
    engram: Any,
    *,
    endpoint: str,
    binding_reference: str,
    settings: TransportSettings,
    shutdown: Shutdown | None = None,
    on_session: Callable[[Session], None] | None = None,
    on_engram_error: OnEngramError | None = None,
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
        on_engram_error: local runs only: report engram failures instead of reconnecting
            (see :func:`supervise`).

    Returns:
        0 when the engram's stream ended or a drain finished.

    Raises:
        BubuError: a non-retriable session error, or retries exhausted.
    """
    from bubu._transport.session import DeliveryBook, Session

    book = DeliveryBook()
    body = supervise(engram_runner(engram), on_error=on_engram_error)
    control = _control_hook(engram)
    stopping = asyncio.Event()
    current: list[Session] = []

    def make_session() -> Session:
        session = Session(
            endpoint=endpoint,
            binding_reference=binding_reference,
            settings=settings,
            book=book,
            body=body,
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


async def _hydrated_config(run: RunContext) -> dict[str, Any]:
    """The config after Go's ``hydrateConfig`` (references, templates), as
    ``loadStreamingExecutionContext`` does before decoding; packets are passed on as they
    arrive (Go resolves no template and hydrates no reference per packet)."""
    if not run.config:
        # nothing to hydrate (``Payloads.config`` returns an empty config as it is): an engram
        # without config does not load the payload layer on its way to the handshake
        return {}
    from bubu._payloads import Payloads

    payloads = Payloads(run, kube=None, connect=True)
    try:
        return await payloads.config(run.config) or {}
    finally:
        await payloads.aclose()


async def start_streaming(
    engram: StreamingEngram[Any],
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
    install_logging: bool = True,
    on_engram_error: OnEngramError | None = None,
) -> int:
    """Run a streaming engram in its pod: init once, then stream through the connector sidecar.

    Args:
        engram: the engram instance.
        source: where ``BUBU_*`` values come from (``os.environ`` when ``None``).
        shutdown: the stop request to watch (``bubu.run`` passes the SIGTERM one).
        install_logging: install the JSON log handler and mask standard output (harnesses
            pass False; the secret mask still goes on the existing handlers).
        on_engram_error: local runs only (``bubu run --stream``): report an engram failure at
            once instead of reconnecting (see :func:`supervise`).

    Returns:
        The process exit code: 0 when the stream ended or a stop request drained it.

    Raises:
        ContractError: ``BUBU_TRANSPORT_BINDING`` missing or invalid (wrong protocol version,
            no endpoint), or an invalid ``BUBU_TRANSPORT_SECURITY_MODE``.
        BubuError: a non-retriable session error, or reconnect retries exhausted.
    """
    from bubu import _startup
    from bubu._runtime.binding import EnvResolver, parse_binding
    from bubu._runtime.decode import decode
    from bubu._runtime.transport import resolve_settings
    from bubu._transport.channel import check_security_mode, parse_endpoint
    from bubu.engram import engram_types

    config_type, _ = engram_types(engram)
    with _startup.begin(
        "streaming",
        source=source,
        shutdown=shutdown,
        install_logging=install_logging,
        capture_output=install_logging,
    ) as st:
        run = st.load()
        # Checked before any network call and before init: a bad binding is a contract error.
        binding = parse_binding(run.env.transport_binding).with_namespace(run.env.namespace)
        settings = resolve_settings(EnvResolver(binding.env_overrides, st.source))
        check_security_mode(settings.security_mode)
        parse_endpoint(binding.endpoint)
        capture = None
        if run.env.storage is not None and run.env.steprun_name.strip():
            from bubu._logs import RunCapture

            capture = RunCapture.start(run.env, st.guard.mask, st.guard.fields)
        try:
            config = decode(await _hydrated_config(run), config_type, path="$.config")
            secrets = st.expand_secrets()
            # The helpers (emit_signal, start_story...) find the run here; tasks inherit it.
            with st.activate():
                await engram.init(config, secrets)
                return await serve(
                    engram,
                    endpoint=binding.endpoint,
                    binding_reference=binding.reference,
                    settings=settings,
                    shutdown=st.shutdown,
                    on_engram_error=on_engram_error,
                )
        finally:
            if capture is not None:
                # Go defers publishCapturedLogs in RunStreaming too.
                await capture.publish_to_step_run()
