"""The engram side of the connector protocol: one session, and the reconnect loop around it.

docs/contract/stream.md#keepalive-and-limits, docs/contract/stream.md#session. A session dials
the connector, opens ``Data`` and ``Control`` with the ``bubu-transport-protocol: 1.0.0`` header
(plus ``bubu.transport.binding`` on Control), completes the startup handshake (``connector.ready``
with ``startup.capabilities``, then ``connector.capabilities`` when required) and only then starts
the engram. It then runs:

* the Data receive loop: frameless packets, chunk reassembly, dedupe, decode + validation, drop
  rules, the inbound queue (blocking, or lossy with ``BUBU_GRPC_CHANNEL_SEND_TIMEOUT``);
* the Data send side: outbound packets are written by the task that queued them when its turn
  ends (the engram's, see :meth:`Session.run_engram`); the Data send loop finishes a write
  that has to wait (with the per-send timeout), writes what no task wrote, and sends the
  heartbeat when nothing was written for an interval;
* the Control loops: directive replies (default handler or the engram's hook), heartbeats and
  ``downstream.delivered`` receipts;
* the hang watcher (``BUBU_GRPC_HANG_TIMEOUT``).

The session knows nothing about the engram: it exposes the inbound messages
(:attr:`Session.inbound`), :meth:`Session.emit` and the receipts (:attr:`Session.book`), and once
the handshake is complete it awaits the *body* the streaming lifecycle handed it
(``bubu._streaming``: running the engram, the drain grace, classifying engram errors, and the
reconnect loop around sessions live there). Errors leave this module as ``bubu.errors`` types,
with ``retryable`` deciding the reconnect (docs/contract/stream.md#keepalive-and-limits). grpclib
and h2 internals are touched only through :mod:`bubu._transport._fastpath`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import sys
import time
import types
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Generator, Mapping
from typing import Any, Final

import grpclib.const
import grpclib.exceptions
import msgspec
from grpclib.client import Channel, Stream

from bubu import _telemetry
from bubu._gen.transport.v1 import transport_pb2 as pb
from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.transport import TransportSettings
from bubu._transport import _fastpath, errors, wire
from bubu._transport import channel as channel_mod
from bubu._transport.chunks import ChunkReassembler
from bubu._transport.codec import is_heartbeat_metadata
from bubu._transport.control import ControlReply, default_control_reply
from bubu._transport.dedupe import DEFAULT_MAX_ENTRIES, Outcome, PacketDeduper, dedupe_key
from bubu._transport.queues import Inbound
from bubu.errors import (
    BubuError,
    HandshakeTimeoutError,
    HangTimeoutError,
    ProtocolViolationError,
    StreamSessionError,
)

__all__ = [
    "BINDING_HEADER",
    "CONTROL_METHOD",
    "DATA_METHOD",
    "PROTOCOL_HEADER",
    "ControlHandler",
    "DeliveryBook",
    "Receipt",
    "Session",
    "SessionBody",
    "default_control_reply",
    "is_retriable",
]

logger = logging.getLogger("bubu.transport")

DATA_METHOD: Final = "/transport.v1.TransportConnectorService/Data"
CONTROL_METHOD: Final = "/transport.v1.TransportConnectorService/Control"
PROTOCOL_HEADER: Final = "bubu-transport-protocol"
BINDING_HEADER: Final = "bubu.transport.binding"
PROTOCOL_VERSION: Final = "1.0.0"

DELIVERED_ACTION: Final = "downstream.delivered"
STARTUP_CAPABILITIES_KEY: Final = "startup.capabilities"
HEARTBEAT_KEY: Final = "bubu-heartbeat"
MESSAGE_ID_KEY: Final = "bubu.envelope.message_id"

#: The engram's control hook, adapted by the runner: (type, metadata) -> reply.
ControlHandler = Callable[[str, dict[str, str]], Awaitable[ControlReply]]
#: What runs once the handshake is complete (the streaming lifecycle's engram supervisor);
#: it returns when the engram's stream ended or a drain finished.
SessionBody = Callable[["Session"], Awaitable[None]]


class Receipt(msgspec.Struct, frozen=True, gc=False):
    """A ``downstream.delivered`` receipt.

    See docs/contract/stream.md#control, docs/contract/stream.md#acks.

    A msgspec Struct rather than a frozen dataclass: one is built per received packet, and this
    constructs ~10x faster (0.15 us against 1.3 us).
    """

    stream_id: str
    sequence: int
    partition: str
    size_bytes: int

    def encoded(self) -> bytes:
        """The serialized ControlRequest (see :func:`bubu._transport.wire.receipt_bytes`)."""
        return wire.receipt_bytes(self.stream_id, self.sequence, self.partition, self.size_bytes)

    def to_pb(self) -> Any:
        """Build the ControlRequest (``action=UNSPECIFIED, custom_action=downstream.delivered``)."""
        return pb.ControlRequest(
            custom_action=DELIVERED_ACTION,
            metadata={
                "stream_id": self.stream_id,
                "sequence": str(self.sequence),
                "partition": self.partition,
                "size_bytes": str(self.size_bytes),
            },
        )


class DeliveryBook:
    """Process-wide delivery state shared by every session: the deduper and the receipt outbox.

    Go keeps the deduper across reconnects but gives each attempt a fresh control queue, so a
    receipt that did not make it onto the wire before a session died is lost and the packet is
    redelivered even though the engram called ``done()``. Here receipts wait in an outbox that
    outlives the session and are sent by the next one. The outbox holds at most 4096 receipts;
    when it is full (the Control stream is stuck), ``done()`` falls back to Go's behaviour and
    releases the key. Wire-identical; see docs/differences.md.
    """

    __slots__ = ("_wake", "deduper", "max_outbox", "outbox")

    def __init__(
        self, deduper: PacketDeduper | None = None, *, max_outbox: int = DEFAULT_MAX_ENTRIES
    ) -> None:
        self.deduper = deduper or PacketDeduper()
        self.max_outbox = max_outbox
        self.outbox: deque[Receipt] = deque()
        self._wake: Callable[[], None] | None = None

    def bind(self, wake: Callable[[], None] | None) -> None:
        """Register the current session's control-sender wake-up (``None`` to unbind)."""
        self._wake = wake

    def queue_receipt(self, receipt: Receipt) -> bool:
        """Queue a receipt for the connector; never blocks (Go ``Done()`` never blocks).

        Returns:
            False when the outbox is full (the Control stream is not draining): the caller
            then releases the packet's dedupe key, as Go does when its queue is full, so the
            replay is delivered again instead of being suppressed without a receipt.
        """
        if len(self.outbox) >= self.max_outbox:
            return False
        self.outbox.append(receipt)
        wake = self._wake
        if wake is not None:
            wake()
        return True


def is_retriable(exc: BaseException) -> bool:
    """Return whether the reconnect loop retries after ``exc``.

    See docs/contract/stream.md#keepalive-and-limits.

    Cancellation, the handshake timeout, the hang timeout, the fatal gRPC codes, binding and
    protocol errors, and any :class:`~bubu.errors.BubuError` whose ``retryable`` is false stop;
    everything else (EOF, invalid packets, chunk errors, dedupe overflow, refused dials, plain
    exceptions from the engram) is retried, as in Go.
    """
    if isinstance(exc, asyncio.CancelledError | HandshakeTimeoutError | HangTimeoutError):
        return False
    if isinstance(exc, grpclib.exceptions.GRPCError):
        return errors.is_retriable_status(exc.status)
    if isinstance(exc, BubuError):
        return exc.retryable
    return True


class _Beat:
    """A deadline ``interval`` seconds after it was (re)armed: then ``due`` and ``wake()``."""

    __slots__ = ("_handle", "_interval", "_loop", "_wake", "due")

    def __init__(
        self, loop: asyncio.AbstractEventLoop, interval: float, wake: Callable[[], None]
    ) -> None:
        self._loop = loop
        self._interval = interval
        self._wake = wake
        self._handle: asyncio.TimerHandle | None = None
        self.due = False
        self.arm()

    def arm(self) -> None:
        self.cancel()
        self.due = False
        self._handle = self._loop.call_at(self._loop.time() + self._interval, self._fire)

    def cancel(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def _fire(self) -> None:
        self._handle = None
        self.due = True
        self._wake()


class _Hang:
    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last = time.monotonic()

    def touch(self) -> None:
        self.last = time.monotonic()


class Session:
    """One connector session (docs/contract/stream.md#startup): dial, handshake, run, tear down.

    Args:
        endpoint: the connector endpoint from the binding.
        binding_reference: ``ns/name`` for the Control header, or ``""`` to omit it.
        settings: the resolved knobs.
        book: the process-wide deduper and receipt outbox.
        body: runs the engram once the handshake is complete.
        control_handler: the engram's directive hook, or ``None`` for Go's default replies.
        protocol_header: the protocol version header value (tests omit it with ``None``).
    """

    def __init__(
        self,
        *,
        endpoint: str,
        binding_reference: str,
        settings: TransportSettings,
        book: DeliveryBook,
        body: SessionBody,
        control_handler: ControlHandler | None = None,
        protocol_header: str | None = PROTOCOL_VERSION,
    ) -> None:
        self._endpoint = endpoint
        self._binding_reference = binding_reference
        self._s = settings
        self._book = book
        self._body = body
        self._handler = control_handler
        self._protocol_header = protocol_header
        self._generation = 0
        self._inbound = Inbound(settings.buffer_size, before_wait=self._before_inbound_wait)
        # Outbound requests, encoded, not yet written; BUBU_GRPC_CHANNEL_BUFFER_SIZE deep (<= 0:
        # unbounded, as the asyncio.Queue it replaces). See _flush_now for who writes them.
        self._pending: deque[bytes] = deque()
        self._pending_cap = settings.buffer_size if settings.buffer_size > 0 else sys.maxsize
        self._room: deque[asyncio.Future[None]] = deque()
        self._data: Stream[Any, Any] | None = None
        self._control: Stream[Any, Any] | None = None
        # A Data write is in progress (inline, handed over, or by the send task).
        self._writing = False
        # An inline write that had to wait: (its coroutine, what it waits on), for the send task.
        self._inflight: Coroutine[Any, Any, None] | None = None
        self._send_error: BaseException | None = None
        self._sender_waiter: asyncio.Future[None] | None = None
        self._ending = False
        self._last_send = 0.0
        self._loop: asyncio.AbstractEventLoop | None = None
        # Directive replies, BUBU_GRPC_CHANNEL_BUFFER_SIZE deep (Go's control-request channel);
        # receipts wait in the DeliveryBook outbox instead.
        self._control_q: deque[Any] = deque()
        self._control_room = asyncio.Event()
        self._control_wake = asyncio.Event()
        self._control_idle = asyncio.Event()
        # True while the control sender is inside a send (see _piggyback_receipts).
        self._control_busy = False
        self._turn_check = False  # _after_turn is scheduled
        self._in_turn = False  # the engram task is running (see run_engram)
        self._ready = asyncio.Event()
        self._capabilities_required = False
        self._capabilities_seen = False
        self._startup_error: BaseException | None = None
        self._hang = _Hang()
        self._reassembler = ChunkReassembler()
        # The Data stream's codec, and what _accept_direct left for the receive task.
        self._codec: Any = None
        self._sized = False  # the codec records each decoded message's size
        self._left: tuple[InboundMessage, str | None] | BaseException | None = None
        self._draining = False
        self._drain_grace = 0.0
        self._drain_requested = asyncio.Event()
        self.handshake_completed = False
        self.delivered = 0

    # -- public ---------------------------------------------------------------------------------

    @property
    def inbound(self) -> Inbound:
        """The inbound messages for the engram (receipts are sent when they are ``done()``)."""
        return self._inbound

    @property
    def book(self) -> DeliveryBook:
        """The deduper and the receipt outbox, shared with the other sessions of the process."""
        return self._book

    @property
    def drain_grace(self) -> float:
        """Seconds in-flight work may take once :meth:`drain` was called."""
        return self._drain_grace

    async def wait_drain(self) -> None:
        """Return once :meth:`drain` was called."""
        await self._drain_requested.wait()

    def drain(self, grace: float) -> None:
        """Stop handing inbound messages to the engram; the session then winds down.

        See docs/contract/design.md#cancellation-and-shutdown.

        The engram gets ``grace`` seconds to finish its in-flight messages; then it is
        cancelled, and receipts for what was done are still flushed.
        """
        self._draining = True
        self._drain_grace = max(grace, 0.0)
        self._inbound.stop()
        self._drain_requested.set()

    async def run_engram(self, body: Coroutine[Any, Any, Any]) -> Any:
        """Run the engram's ``stream`` coroutine; every time it stops to wait, its turn ends.

        The end of a turn writes the output it queued, with the receipts of the messages it
        marked ``done()`` staged along, in one socket write, before the task waits (see
        :meth:`_flush_now`): no Data sender or receipt check is woken for them. Run it as the
        body of the engram's task.
        """
        return await self._turns(body)

    @types.coroutine
    def _turns(self, body: Coroutine[Any, Any, Any]) -> Generator[Any, Any, Any]:
        # The Task protocol, passed through: what the body yields goes up to the task, what
        # the task sends or throws (a result, a cancellation) goes back in.
        value: Any = None
        error: BaseException | None = None
        while True:
            self._in_turn = True
            try:
                waits_on = body.send(value) if error is None else body.throw(error)
            except StopIteration as stop:
                self._in_turn = False
                self._end_turn()
                return stop.value
            except BaseException:
                self._in_turn = False
                self._end_turn()
                raise
            self._in_turn = False
            self._end_turn()
            try:
                value = yield waits_on
                error = None
            except GeneratorExit:
                body.close()
                raise
            except BaseException as exc:
                value, error = None, exc

    def _end_turn(self) -> None:
        if self._pending:
            self._flush_now()
        if self._book.outbox:
            self._wake_control()

    async def run(self) -> None:
        """Run the session to its end.

        Returns normally when the engram's stream ended (or a drain finished) and everything
        queued was flushed; raises otherwise.

        Raises:
            HandshakeTimeoutError: no complete handshake within ``BUBU_GRPC_MESSAGE_TIMEOUT``.
            ProtocolViolationError: a fatal gRPC status or invalid ``connector.ready`` metadata.
            StreamSessionError: a retryable session failure (EOF, invalid packet, ...).
            ConnectorUnavailableError: the dial failed.
        """
        self._generation = self._book.deduper.start_session()
        chan = channel_mod.open_channel(self._endpoint, self._s)
        self._book.bind(self._wake_for_receipt)
        try:
            await channel_mod.connect(chan, self._s.dial_timeout)
            await self._run_streams(chan)
        finally:
            self._book.bind(None)
            self._inbound.close()
            self._data = self._control = None
            chan.close()

    # -- streams --------------------------------------------------------------------------------

    def _headers(self, control: bool) -> dict[str, str]:
        headers: dict[str, str] = {}
        if self._protocol_header is not None:
            headers[PROTOCOL_HEADER] = self._protocol_header
        if control and self._binding_reference:
            headers[BINDING_HEADER] = self._binding_reference
        return headers

    async def _run_streams(self, chan: Channel) -> None:
        data_headers = self._headers(control=False)
        control_headers = self._headers(control=True)
        async with contextlib.AsyncExitStack() as stack:
            if self._s.trace_propagation:
                # Go's otelgrpc client handler: one client span per call, its context in the
                # call's headers (so the spans start before the calls are created).
                stack.enter_context(_telemetry.rpc_span(DATA_METHOD, data_headers))
                stack.enter_context(_telemetry.rpc_span(CONTROL_METHOD, control_headers))
            data: Stream[Any, Any] = chan.request(
                DATA_METHOD,
                grpclib.const.Cardinality.STREAM_STREAM,
                pb.DataRequest,
                pb.DataResponse,
                metadata=data_headers,
            )
            control: Stream[Any, Any] = chan.request(
                CONTROL_METHOD,
                grpclib.const.Cardinality.STREAM_STREAM,
                pb.ControlRequest,
                pb.ControlResponse,
                metadata=control_headers,
            )
            await stack.enter_async_context(data)
            await stack.enter_async_context(control)
            # Go opens Data first (nothing sent or read yet), then the Control loop
            # (docs/contract/stream.md#startup).
            await self._guard(data.send_request(), "data stream open")
            await self._guard(control.send_request(), "control stream open")
            peer_closed = await self._run_tasks(data, control)
            for stream in (data, control):
                with contextlib.suppress(Exception):
                    if peer_closed:
                        # The connector ended its side: read its status so the exit is clean.
                        async with asyncio.timeout(_CLOSE_WAIT):
                            await stream.recv_trailing_metadata()
                    else:
                        # It did not answer the half-close in time: reset (Go closes the
                        # connection the same way).
                        await stream.cancel()

    async def _run_tasks(self, data: Stream[Any, Any], control: Stream[Any, Any]) -> bool:
        hang: asyncio.Task[None] | None = None
        async with asyncio.TaskGroup() as tg:
            control_recv = tg.create_task(
                self._control_recv_loop(control), name="bubu.transport.control-recv"
            )
            control_send = tg.create_task(
                self._control_send_loop(control), name="bubu.transport.control-send"
            )
            if self._s.hang_timeout > 0:
                hang = tg.create_task(self._hang_watch(), name="bubu.transport.hang")
            await self._wait_handshake()
            self.handshake_completed = True
            self._loop = asyncio.get_running_loop()
            self._data = data
            self._control = control
            recv = tg.create_task(self._data_recv_loop(data), name="bubu.transport.data-recv")
            send = tg.create_task(
                self._data_send_loop(data, control), name="bubu.transport.data-send"
            )
            await self._body(self)
            # The stream ended cleanly: flush outbound, half-close Data, flush receipts and
            # replies, half-close Control, then stop reading (3.10; Go may discard the queue,
            # a flush is wire-neutral and recommended there).
            self._ending = True
            self._wake_sender()
            await send
            await self._flush_control()
            control_send.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await control_send
            await self._guard(control.end(), "control stream close")
            # Both sides are half-closed: wait briefly for the connector to end its side.
            self._draining = True
            done, _ = await asyncio.wait({recv, control_recv}, timeout=_CLOSE_WAIT)
            for task in (recv, control_recv, hang):
                if task is not None:
                    task.cancel()
        return recv in done and control_recv in done

    async def _guard(self, coro: Awaitable[Any], what: str) -> Any:
        try:
            async with asyncio.timeout(self._s.message_timeout):
                return await coro
        except TimeoutError:
            raise StreamSessionError(
                f"{what}: timed out after {self._s.message_timeout:g}s"
            ) from None
        except _SEND_ERRORS as exc:
            raise errors.translate_error(exc, op=what) from None

    # -- handshake ------------------------------------------------------------------------------

    async def _wait_handshake(self) -> None:
        try:
            async with asyncio.timeout(self._s.message_timeout):
                await self._ready.wait()
        except TimeoutError:
            raise HandshakeTimeoutError(
                "connector startup handshake timed out after "
                f"{self._s.message_timeout:g}s (no connector.ready"
                + (", no connector.capabilities)" if self._capabilities_required else ")")
            ) from None
        if self._startup_error is not None:
            raise self._startup_error

    def _on_startup_directive(self, directive_type: str, metadata: Mapping[str, str]) -> None:
        if self._ready.is_set():
            return
        if directive_type == "connector.ready":
            raw = metadata.get(STARTUP_CAPABILITIES_KEY)
            mode = (raw or "").strip().lower()
            if mode not in ("required", "none"):
                self._startup_error = ProtocolViolationError(
                    "invalid connector.ready startup metadata: "
                    f"{STARTUP_CAPABILITIES_KEY}={raw!r} (want 'required' or 'none')"
                )
                self._ready.set()
                return
            self._capabilities_required = mode == "required"
            if not self._capabilities_required or self._capabilities_seen:
                self._ready.set()
        elif directive_type == "connector.capabilities":
            self._capabilities_seen = True
            if self._capabilities_required:
                self._ready.set()

    # -- control --------------------------------------------------------------------------------

    def _queue_control(self, request: Any) -> None:
        self._control_q.append(request)
        self._wake_control()

    def _wake_control(self) -> None:
        self._control_idle.clear()
        self._control_wake.set()

    def _wake_for_receipt(self) -> None:
        # done() usually follows the engram's own output, which is about to be written with the
        # queued receipts staged along (_piggyback_receipts). Waking the control sender too
        # would cost it a task step (and a timer) per packet to find nothing left: look again
        # once this turn of the loop is over, and wake it only if still needed.
        if self._turn_check or self._in_turn:
            return
        if not self._pending or self._loop is None:
            self._wake_control()
            return
        self._schedule_turn_check()

    def _schedule_turn_check(self) -> None:
        loop = self._loop
        if loop is not None:
            self._turn_check = True
            loop.call_soon(self._after_turn)

    def _after_turn(self) -> None:
        # Whatever the task that queued output or receipts in the previous turn did not write
        # itself (it did not wait on inbound, or a write is in progress) goes to the senders.
        self._turn_check = False
        if self._pending and not self._writing:
            self._wake_sender()
        if self._book.outbox:
            self._wake_control()

    async def _control_recv_loop(self, control: Stream[Any, Any]) -> None:
        while True:
            try:
                response = await control.recv_message()
            except Exception as exc:
                self._recv_ended(control, "control stream recv", exc)
                return
            if response is None:
                self._recv_ended(control, "control stream recv")
                return
            self._hang.touch()
            try:
                wire.validate_control_response(response)
            except ProtocolViolationError as exc:
                raise StreamSessionError(f"invalid control response: {exc}") from None
            directive_type = wire.control_type(response.action, response.custom_action)
            metadata = dict(response.metadata)
            self._on_startup_directive(directive_type, metadata)
            reply = await self._reply_for(directive_type, metadata)
            if reply is not None:
                while len(self._control_q) >= max(self._s.buffer_size, 1):
                    # Full: stop reading directives until the sender takes replies, as Go's
                    # blocking channel send does; the connector then waits in HTTP/2 flow
                    # control instead of replies piling up here.
                    self._control_room.clear()
                    await self._control_room.wait()
                self._queue_control(wire.control_request(*reply))

    def _recv_ended(self, stream: Stream[Any, Any], op: str, exc: Exception | None = None) -> None:
        """A receive loop's stream ended, with ``exc`` or at EOF: return while draining (the
        loop then returns too), else raise the session error Go reports (``<op> failed: EOF``
        or the peer's status)."""
        if self._draining:
            return
        if exc is None:
            raise StreamSessionError(f"{op} failed: EOF")
        raise errors.translate_error(_fastpath.status_of(stream, exc), op=op) from None

    async def _reply_for(self, directive_type: str, metadata: dict[str, str]) -> ControlReply:
        if self._handler is None:
            return default_control_reply(directive_type)
        try:
            return await self._handler(directive_type, metadata)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Go: a handler error becomes {action: ERROR, metadata.message}
            # (docs/contract/stream.md#control).
            logger.warning("control handler failed for %r: %s", directive_type, exc)
            return "error", {"message": str(exc) or type(exc).__name__}

    async def _control_send_loop(self, control: Stream[Any, Any]) -> None:
        outbox = self._book.outbox
        queue = self._control_q
        wake = self._control_wake
        # One timer per heartbeat interval, not a timeout around every wait: the sender may be
        # woken for replies and receipts many times per interval, and the deadline only moves
        # when a heartbeat goes out.
        beat = _Beat(asyncio.get_running_loop(), self._s.control_heartbeat_interval, wake.set)
        try:
            while True:
                if queue or outbox:
                    # Everything queued goes out in one write (see _send_batch): replies first,
                    # then receipts in done() order.
                    replies = list(queue)
                    receipts = list(itertools.islice(outbox, _fastpath.MAX_BATCH))
                    try:
                        for reply in replies:
                            wire.validate_control_request(reply)
                    except ProtocolViolationError as exc:
                        # Go: an invalid outbound ControlRequest is a (retryable) session error.
                        raise StreamSessionError(f"invalid control request: {exc}") from None
                    # Receipts are pre-encoded and valid by construction (wire.receipt_bytes).
                    requests = replies + [r.encoded() for r in receipts]
                    self._control_busy = True
                    try:
                        await self._guard(_fastpath.send_batch(control, requests), "control send")
                    finally:
                        self._control_busy = False
                    for _ in replies:
                        queue.popleft()
                    self._control_room.set()
                    # Pop only after the send: a receipt lost with the session is sent next time.
                    for receipt in receipts:
                        if outbox and outbox[0] is receipt:
                            outbox.popleft()
                    continue
                if beat.due:
                    heartbeat = wire.control_heartbeat()
                    wire.validate_control_request(heartbeat)
                    self._control_busy = True
                    try:
                        await self._guard(control.send_message(heartbeat), "control heartbeat")
                    finally:
                        self._control_busy = False
                    beat.arm()
                    continue
                wake.clear()
                self._control_idle.set()
                await wake.wait()
        finally:
            beat.cancel()

    async def _flush_control(self) -> None:
        # The control sender sets _control_idle when both queues are empty (bounded wait).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(self._s.message_timeout):
                while self._control_q or self._book.outbox:
                    self._control_idle.clear()
                    self._wake_control()
                    await self._control_idle.wait()

    # -- data -----------------------------------------------------------------------------------

    async def _data_send_loop(
        self, data: Stream[Any, Any], control: Stream[Any, Any] | None = None
    ) -> None:
        # The Data sender writes only what no other task wrote at the end of its turn
        # (_flush_now): an inline write that had to wait, output queued by a task that did not
        # go back to inbound, the final flush and the half-close; and the heartbeat.
        loop = asyncio.get_running_loop()
        interval = self._s.heartbeat_interval
        self._last_send = loop.time()
        try:
            await self._send_until_end(loop, data, control, interval)
        except BaseException as exc:
            # Nobody writes after the sender: _flush_now must not hand it another write.
            if self._send_error is None:
                self._send_error = exc
            raise
        finally:
            inflight, self._inflight = self._inflight, None
            if inflight is not None:
                # Handed over but never resumed (the session is being torn down).
                inflight.close()

    async def _send_until_end(
        self,
        loop: asyncio.AbstractEventLoop,
        data: Stream[Any, Any],
        control: Stream[Any, Any] | None,
        interval: float,
    ) -> None:
        while True:
            if self._send_error is not None:
                raise self._send_error
            inflight = self._inflight
            if inflight is not None:
                try:
                    await self._guard(inflight, "data send")
                finally:
                    self._inflight = None
                    self._writing = False
                self._sent(loop)
                continue
            if self._pending and not self._writing:
                batch, staged = self._take_batch(control, data)
                self._writing = True
                try:
                    await self._guard(self._send_data(data, batch, staged), "data send")
                finally:
                    self._writing = False
                self._sent(loop)
                continue
            if self._ending:
                await self._guard(data.end(), "data stream close")
                return
            deadline = self._last_send + interval
            if loop.time() >= deadline:
                # Nothing written for an interval: Data heartbeat
                # (docs/contract/stream.md#heartbeats); every write moves the deadline, as Go
                # resets its ticker after each send.
                self._writing = True
                try:
                    await self._guard(data.send_message(wire.data_heartbeat()), "data heartbeat")
                finally:
                    self._writing = False
                self._sent(loop)
                continue
            # One timer per idle wait, not one per packet: writes by other tasks only move
            # _last_send, and the deadline is checked again when the timer fires.
            await self._sender_wait(loop, deadline)

    async def _sender_wait(self, loop: asyncio.AbstractEventLoop, deadline: float) -> None:
        waiter: asyncio.Future[None] = loop.create_future()
        self._sender_waiter = waiter
        timer = loop.call_at(deadline, _wake, waiter)
        try:
            await waiter
        finally:
            self._sender_waiter = None
            timer.cancel()

    def _wake_sender(self) -> None:
        waiter = self._sender_waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def _sent(self, loop: asyncio.AbstractEventLoop) -> None:
        self._last_send = loop.time()
        room = self._room
        while room and len(self._pending) < self._pending_cap:
            waiter = room.popleft()
            if not waiter.done():
                waiter.set_result(None)

    def _take_batch(
        self, control: Stream[Any, Any] | None, data: Stream[Any, Any]
    ) -> tuple[list[bytes], list[Receipt]]:
        pending = self._pending
        count = min(len(pending), _fastpath.MAX_BATCH)
        batch = [pending.popleft() for _ in range(count)]
        staged: list[Receipt] = []
        # Replies go out before receipts, so only piggyback when none are queued.
        if (
            self._book.outbox
            and control is not None
            and not self._control_busy
            and not self._control_q
        ):
            staged = self._piggyback_receipts(control, data)
        return batch, staged

    async def _send_data(
        self, data: Stream[Any, Any], batch: list[bytes], staged: list[Receipt]
    ) -> None:
        try:
            await _fastpath.send_batch(data, batch)
        except BaseException:
            if staged:
                # Not known to be on the wire: back to the outbox (a receipt sent twice is
                # harmless; a lost one would leave the packet unacknowledged).
                self._book.outbox.extendleft(reversed(staged))
            raise

    def _before_inbound_wait(self) -> None:
        # The consumer is about to wait for the next message: its turn ends here. When this
        # turn answered one message (the engram keeps up with the connector: latency, not
        # throughput, is what counts), that output leaves first, on its own, and the receipts
        # follow in a write of their own; after a burst, one write carries everything.
        pending = self._pending
        if pending:
            self._flush_now(receipts_after=len(pending) == 1)

    def _flush_now(self, receipts_after: bool = False) -> bool:
        """Write the queued output from the calling task, now; return whether a write started.

        At window 1 a packet used to take four task switches in the engram: the receive task,
        the engram, the Data sender, and a receipt check. Here the task that produced the
        output (the engram, when it goes back to ``inbound`` or finds the queue full) writes
        it, with the receipts it queued in the meantime staged on Control for the same socket
        write. An HTTP/2 write almost never waits; when it does (flow control, a slow
        connection), the rest of the write is handed to the Data sender, so cancelling the
        engram can never cut a message in half, and the engram does not wait on the network.
        A failure is the send task's to raise (the engram never sees transport errors here).

        With ``receipts_after``, the receipts are not staged: the output leaves alone, and the
        receipts follow at once in a Control write of their own (when that write would not
        wait; else the control task sends them). Building and framing the receipts no longer
        delays the reply, at the cost of one more socket write (docs/performance.md#vs-go).
        """
        data = self._data
        if (
            self._writing
            or not self._pending
            or data is None
            or self._ending
            or self._send_error is not None
        ):
            return False
        control = self._control
        loop = self._loop
        assert loop is not None
        while self._pending:
            batch, staged = self._take_batch(None if receipts_after else control, data)
            if _fastpath.send_batch_now(data, batch):
                self._sent(loop)
                continue
            # The write would wait (or the fast path is off): the Data sender starts it, so the
            # task grpclib cancels on a stream reset is the one waiting, never the engram.
            self._writing = True
            self._inflight = self._send_data(data, batch, staged)
            self._wake_sender()
            return True
        if receipts_after and control is not None:
            self._send_receipts_now(control)
        return True

    def _send_receipts_now(self, control: Stream[Any, Any]) -> None:
        if self._book.outbox and not (self._control_busy or self._control_q):
            self._take_receipts(functools.partial(_fastpath.send_batch_now, control))

    def _take_receipts(self, write: Callable[[list[bytes]], bool]) -> list[Receipt]:
        """Hand the first queued receipts, encoded, to ``write``; when it took them, remove
        them from the outbox and return them, else leave them there and return nothing."""
        outbox = self._book.outbox
        receipts = list(itertools.islice(outbox, _fastpath.MAX_BATCH))
        if not write([r.encoded() for r in receipts]):
            return []
        for _ in receipts:
            outbox.popleft()
        return receipts

    def _piggyback_receipts(
        self, control: Stream[Any, Any], data: Stream[Any, Any]
    ) -> list[Receipt]:
        """Stage queued receipts on the Control stream for the Data write that follows.

        Receipts are sent by the control task as soon as the engram calls ``done()``; with a
        busy stream that is one extra task switch, HTTP/2 send path and socket write (and a
        wake-up of the connector) per engram batch. When the Data sender is about to write
        anyway, the receipts are put into the HTTP/2 connection's send buffer as one Control
        DATA frame and leave in the same socket write. Same messages on the same stream, in the
        same order; only the TCP segmentation differs. Returns the receipts staged (removed from
        the outbox), or nothing when this cannot be done at once (then the control task sends
        them as before).
        """
        return self._take_receipts(lambda bodies: _fastpath.stage_messages(control, bodies, data))

    async def emit(self, message: StreamMessage) -> None:
        """Validate, encode and queue an outbound message; waits while the queue is full.

        Raises:
            ProtocolViolationError: the message is invalid or over the send cap (nothing sent).
        """
        if self._s.trace_propagation:
            # W3C context of the engram's current span into packet metadata
            # (docs/contract/stream.md#trace-context); this runs in the engram's task, so a span
            # the engram opened around its yield is seen.
            carrier: dict[str, str] = {}
            _telemetry.inject_w3c(carrier)
            if carrier:
                message = message.replace(metadata={**message.metadata, **carrier})
        request = wire.encode_outbound_bytes(message, self._s)
        pending = self._pending
        while len(pending) >= self._pending_cap:
            # Full: write what is queued from here, or wait for the write in progress.
            if not self._flush_now():
                await self._wait_room()
        pending.append(request)
        if not (self._turn_check or self._in_turn):
            self._schedule_turn_check()

    async def _wait_room(self) -> None:
        loop = self._loop or asyncio.get_running_loop()
        waiter: asyncio.Future[None] = loop.create_future()
        self._room.append(waiter)
        try:
            await waiter
        finally:
            if not waiter.done():
                waiter.cancel()
            with contextlib.suppress(ValueError):
                self._room.remove(waiter)

    async def _data_recv_loop(self, data: Stream[Any, Any]) -> None:
        self._codec = _fastpath.codec_of(data)
        self._sized = type(self._codec) is channel_mod.CappedProtoCodec
        stop_direct: Callable[[], None] | None = None
        try:
            while True:
                if stop_direct is None:  # possible once the first recv read the response headers
                    stop_direct = _fastpath.direct_reads(data, self._accept_direct)
                try:
                    packet = await data.recv_message()
                    size = self._received_size()
                except _Handoff:
                    # A packet the protocol callback took (see _accept_direct) and left here.
                    left, self._left = self._left, None
                    if isinstance(left, BaseException):
                        raise left from None
                    if left is not None:
                        await self._put_waiting(*left)
                    continue
                except Exception as exc:
                    self._recv_ended(data, "data stream recv", exc)
                    return
                if packet is None:
                    # Retryable, as Go's; the inbound queue is closed by run() once the session
                    # is torn down.
                    self._recv_ended(data, "data stream recv")
                    return
                waiting = self._accept(packet, size)
                if waiting is not None:
                    await self._put_waiting(*waiting)
        finally:
            if stop_direct is not None:
                stop_direct()

    def _accept_direct(self, packet: Any) -> None:
        """:meth:`_accept` for a packet decoded in the protocol callback (``direct_reads``):
        no task switch between the socket and the engram's queue while the receive task is idle.
        What needs the receive task (a wait for room in a full queue, an error to raise) is left
        to it, with the packets after this one still buffered behind it."""
        try:
            waiting = self._accept(packet, self._received_size())
        except Exception as exc:
            self._left = exc
            raise _Handoff from None
        if waiting is not None:
            self._left = waiting
            raise _Handoff

    def _received_size(self) -> int:
        # The receipt's size_bytes (docs/contract/stream.md#acks): Go's proto.Size of the packet
        # just decoded, which is the length it arrived with for every canonical encoder (Go,
        # upb, our connector); -1 (measure it) when the codec does not know it.
        return self._codec.decoded_size if self._sized else -1

    def _accept(self, packet: Any, size: int) -> tuple[InboundMessage, str | None] | None:
        """Take one received packet: dedupe, reassemble, receipt, decode, and queue it for the
        engram. Returns the message and its dedupe key when the queue is full (the caller waits
        for room with :meth:`_put_waiting`), else None."""
        self._hang.touch()
        book = self._book
        frame = packet.WhichOneof("frame")
        envelope = packet.envelope
        if frame is None:
            # Heartbeat/control packet: never delivered; a sequenced one is receipted at
            # once so the hub can advance (docs/contract/stream.md#inbound).
            if envelope.sequence > 0 and envelope.stream_id:
                book.queue_receipt(_receipt(packet, size))
            self._reassembler.sweep()
            return None
        if (
            envelope.chunk_count
            or envelope.chunk_id
            or envelope.chunk_bytes
            or (envelope.chunk_index or envelope.total_bytes)
        ):
            packet = self._reassembler.add(packet)
            if packet is None:
                return None
            envelope = packet.envelope
            size = -1  # reassembled: measure the packet without its chunk fields
        stream_id = envelope.stream_id
        sequence = envelope.sequence
        sequenced = sequence > 0 and bool(stream_id)
        if sequenced:
            # dedupe_key's first rule, inlined (the metadata is not needed then).
            partition = envelope.partition
            key: str | None = f"env|{stream_id}|{partition}|{sequence}"
        else:
            key = dedupe_key(
                stream_id,
                envelope.partition,
                sequence,
                packet.metadata.get(MESSAGE_ID_KEY) if packet.metadata else None,
            )
        deduper = book.deduper
        if key is not None:
            outcome = deduper.begin(key)
            if outcome is Outcome.PENDING_DUPLICATE:
                return None
            if outcome is Outcome.COMPLETED_DUPLICATE:
                if sequenced:
                    book.queue_receipt(_receipt(packet, size))
                return None
        receipt = _receipt(packet, size) if sequenced else None
        message: StreamMessage | None
        try:
            message = wire.decode_inbound(packet)
        except ProtocolViolationError as exc:
            if not (packet.metadata and is_heartbeat_metadata(packet.metadata)):
                raise StreamSessionError(f"invalid inbound packet: {exc}") from None
            # A heartbeat is dropped whatever its body: rebuilding the session over a
            # liveness packet the engram never sees would cost more than the packet
            # (docs/contract/stream.md#inbound; Go ends the session here).
            logger.debug("invalid heartbeat packet dropped: %s", exc)
            message = None
        if message is None or wire.should_drop(message):
            if key is not None:
                deduper.complete(key)
            if receipt is not None:
                book.queue_receipt(receipt)
            return None
        inbound = self._inbound
        if inbound.closed:
            # Draining or ending: not handed out, so not done; the hub replays it.
            return None
        settle = _settler(book, deduper, key, receipt) if (key or receipt) else None
        item = InboundMessage(message, settle)
        if inbound.full():
            return item, key
        # Room in the queue: no coroutine and no timer per message.
        inbound.put_nowait(item)
        self.delivered += 1
        return None

    async def _put_waiting(self, item: InboundMessage, key: str | None) -> None:
        """Queue ``item`` once the engram's queue has room; with ``BUBU_GRPC_CHANNEL_SEND_TIMEOUT``
        set, drop it after that long without a receipt (lossy mode) and release its key."""
        inbound = self._inbound
        send_timeout = self._s.channel_send_timeout
        if send_timeout > 0:
            try:
                async with asyncio.timeout(send_timeout):
                    await inbound.put(item)
            except TimeoutError:
                # Lossy mode (docs/contract/stream.md#environment): drop without a receipt
                # and release the key, so a later replay is delivered.
                if key is not None:
                    self._book.deduper.release(key, self._generation)
                logger.debug("inbound message dropped after channel send timeout")
                return
        else:
            await inbound.put(item)
        self.delivered += 1

    async def _hang_watch(self) -> None:
        timeout = self._s.hang_timeout
        hang = self._hang
        while True:
            remaining = hang.last + timeout - time.monotonic()
            if remaining <= 0:
                raise HangTimeoutError(
                    f"no transport traffic for {timeout:g}s (BUBU_GRPC_HANG_TIMEOUT)"
                )
            await asyncio.sleep(remaining)


_CLOSE_WAIT: Final = 1.0
"""Seconds to wait for the connector to end its side after a graceful half-close."""

_SEND_ERRORS: Final = (
    grpclib.exceptions.StreamTerminatedError,
    grpclib.exceptions.GRPCError,
    ConnectionError,
    OSError,
)


class _Handoff(Exception):
    """Raised by :meth:`Session._accept_direct` in the protocol callback, and so by the receive
    task's waiting ``recv_message``: the callback left the task a packet or an error."""


def _send_failure(exc: Exception, what: str) -> BaseException:
    """The session error for a failed write (as :meth:`Session._guard` translates it)."""
    if isinstance(exc, _SEND_ERRORS):
        return errors.translate_error(exc, op=what)
    return exc


def _wake(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _receipt(packet: Any, size: int = -1) -> Receipt:
    envelope = packet.envelope
    # size_bytes = proto.Size of the DataRequest form: same field numbers as DataResponse, and
    # chunk fields are already cleared on a reassembled packet (docs/contract/stream.md#acks).
    # `size` is the received length when known (-1: measure).
    return Receipt(
        envelope.stream_id,
        envelope.sequence,
        envelope.partition,
        size if size >= 0 else packet.ByteSize(),
    )


def _settler(
    book: DeliveryBook, deduper: PacketDeduper, key: str | None, receipt: Receipt | None
) -> Callable[[], None]:
    generation = deduper.generation

    def settle() -> None:
        if receipt is not None and not book.queue_receipt(receipt):
            if key is not None:
                deduper.release(key, generation)
            return
        if key is not None:
            deduper.complete(key)

    return settle
