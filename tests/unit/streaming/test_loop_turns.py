"""The task structure of a streaming session: who writes, who wakes whom (issue 11 speed work).

The engram's task writes its own output at the end of its turn; the Data sender takes over a
write that has to wait, output queued outside the engram's turn, the final flush and the
heartbeat. These tests drive the session's send side against stand-in streams (the public
``send_message`` API, which is what ``_fastpath.send_batch`` falls back to) and pin each branch;
the loopback and Go suites check the same behaviour on the wire.
"""

from __future__ import annotations

import asyncio
import contextlib
import inspect
from collections.abc import AsyncIterator
from typing import Any

import pytest

from bubu._runtime.messages import InboundMessage, StreamMessage
from bubu._runtime.transport import TransportSettings
from bubu._transport import _fastpath, wire
from bubu._transport.queues import Inbound
from bubu._transport.session import DeliveryBook, Receipt, Session, _Beat
from bubu.errors import ConnectorUnavailableError


class FakeData:
    """A Data stream: records each message with the task that wrote it; can be made to wait."""

    def __init__(self) -> None:
        self.sent: list[tuple[Any, str]] = []
        self.gate: asyncio.Event | None = None
        self.fail: Exception | None = None
        self.ended = False
        self.started = asyncio.Event()
        self.started_by: list[str] = []

    async def send_message(self, message: Any) -> None:
        self.started.set()
        current = asyncio.current_task()
        self.started_by.append(current.get_name() if current else "?")
        if self.fail is not None:
            raise self.fail
        if self.gate is not None:
            await self.gate.wait()
        task = asyncio.current_task()
        self.sent.append((message, task.get_name() if task else "?"))

    async def end(self) -> None:
        self.ended = True

    def bodies(self) -> list[Any]:
        return [m for m, _ in self.sent]


def write_now(stream: Any, messages: list[bytes]) -> bool:
    """``_fastpath.send_batch_now`` for a stand-in stream: writes at once unless it would wait."""
    if not isinstance(stream, FakeData) or stream.gate is not None or stream.fail is not None:
        return False
    task = asyncio.current_task()
    stream.sent.extend((m, task.get_name() if task else "?") for m in messages)
    return True


@pytest.fixture(autouse=True)
def _inline_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_fastpath, "send_batch_now", write_now)


def make_session(buffer_size: int = 16, heartbeat: float = 30.0) -> Session:
    async def body(session: Session) -> None:
        return None

    return Session(
        endpoint="127.0.0.1:1",
        binding_reference="",
        settings=TransportSettings(
            buffer_size=buffer_size, heartbeat_interval=heartbeat, message_timeout=5.0
        ),
        book=DeliveryBook(),
        body=body,
    )


@contextlib.asynccontextmanager
async def sending(session: Session, data: FakeData) -> AsyncIterator[asyncio.Task[None]]:
    """The send side of a session that completed its handshake, around a stand-in stream."""
    session._loop = asyncio.get_running_loop()
    session._data = data  # type: ignore[assignment]
    sender = asyncio.create_task(session._data_send_loop(data), name="sender")  # type: ignore[arg-type]
    try:
        yield sender
    finally:
        if not sender.done():
            sender.cancel()
        with contextlib.suppress(BaseException):
            await sender


def msg(n: int) -> StreamMessage:
    return StreamMessage.json({"n": n})


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_output_is_written_by_the_engram_task_when_it_waits_on_inbound() -> None:
    session, data = make_session(), FakeData()
    async with sending(session, data):

        async def engram() -> None:
            await session.emit(msg(1))
            await session.emit(msg(2))
            assert data.sent == []  # queued until the turn ends
            session.inbound.put_nowait(InboundMessage(msg(0)))
            async for _ in session.inbound:  # takes one, then waits: the turn ends
                break
            await session.inbound.__anext__()

        task = asyncio.create_task(session.run_engram(engram()), name="engram")
        await settle()
        assert [name for _, name in data.sent] == ["engram", "engram"]
        assert len(data.sent) == 2
        session.inbound.close()
        with pytest.raises(StopAsyncIteration):
            await task


async def test_output_is_written_when_the_engram_waits_on_anything_else() -> None:
    session, data = make_session(), FakeData()
    async with sending(session, data):
        release = asyncio.Event()

        async def engram() -> str:
            await session.emit(msg(1))
            await release.wait()
            return "finished"

        task = asyncio.create_task(session.run_engram(engram()), name="engram")
        await settle()
        assert [name for _, name in data.sent] == ["engram"]
        release.set()
        assert await task == "finished"  # the body's result comes through


async def test_output_queued_outside_the_engram_turn_goes_to_the_data_sender() -> None:
    session, data = make_session(), FakeData()
    async with sending(session, data):
        await session.emit(msg(1))  # a worker task, not run_engram: no inline write
        await settle()
        assert [name for _, name in data.sent] == ["sender"]


async def test_a_write_that_waits_is_finished_by_the_sender_and_order_is_kept() -> None:
    session, data = make_session(), FakeData()
    data.gate = asyncio.Event()
    async with sending(session, data):
        blocked = asyncio.Event()

        async def engram() -> None:
            await session.emit(msg(1))
            await blocked.wait()  # the turn ends: the write starts here and has to wait
            await session.emit(msg(2))  # queued behind the write in progress
            await asyncio.Event().wait()

        task = asyncio.create_task(session.run_engram(engram()), name="engram")
        await data.started.wait()
        await settle()
        assert session._inflight is not None and data.sent == []
        # The wait starts in the sender: grpclib's Wrapper cancels the task that entered it on
        # a stream reset, and that must be the task waiting, not the engram.
        assert data.started_by == ["sender"]
        # Cancelling the engram cannot cut the write in half: the sender owns it now.
        blocked.set()
        await settle()
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        data.gate.set()
        await settle()
        assert [name for _, name in data.sent] == ["sender", "sender"]
        assert len(data.bodies()) == 2 and data.bodies()[0] != data.bodies()[1]


async def test_a_failed_inline_write_is_the_senders_error_not_the_engrams() -> None:
    session, data = make_session(), FakeData()
    data.fail = ConnectionResetError("peer gone")
    async with sending(session, data) as sender:

        async def engram() -> str:
            await session.emit(msg(1))
            await asyncio.sleep(0)  # the turn ends with a write that fails
            return "engram never saw it"

        assert await session.run_engram(engram()) == "engram never saw it"
        # Translated as the sender's own writes are (docs/contract/stream.md#keepalive-and-limits).
        with pytest.raises(ConnectorUnavailableError, match="data send failed: .*peer gone"):
            await sender


async def test_emit_on_a_full_queue_writes_from_the_emitting_task() -> None:
    session, data = make_session(buffer_size=2), FakeData()
    async with sending(session, data):
        for n in range(3):
            await session.emit(msg(n))
        # The third emit found two queued and wrote them itself (no turn has ended yet).
        assert len(data.sent) == 2 and len(session._pending) == 1


async def test_emit_on_a_full_queue_waits_for_the_write_in_progress() -> None:
    session, data = make_session(buffer_size=1), FakeData()
    data.gate = asyncio.Event()
    async with sending(session, data):
        await session.emit(msg(1))
        await settle()  # the sender is writing it and waits at the gate
        await session.emit(msg(2))
        third = asyncio.create_task(session.emit(msg(3)))
        await settle()
        assert not third.done()  # full, and the write in progress is someone else's
        data.gate.set()
        await asyncio.wait_for(third, 5)
        await settle()
        assert len(data.sent) == 3


async def test_a_cancelled_emit_leaves_no_waiter_behind() -> None:
    session, data = make_session(buffer_size=1), FakeData()
    data.gate = asyncio.Event()
    async with sending(session, data):
        await session.emit(msg(1))
        await settle()
        await session.emit(msg(2))
        waiting = asyncio.create_task(session.emit(msg(3)))
        await settle()
        waiting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await waiting
        assert not session._room
        data.gate.set()
        await settle()
        assert len(data.sent) == 2


async def test_unbounded_buffer_never_waits() -> None:
    session, data = make_session(buffer_size=0), FakeData()
    async with sending(session, data):
        for n in range(100):
            await session.emit(msg(n))
        assert len(session._pending) == 100 and data.sent == []
        await settle()
        assert len(data.sent) == 100


async def test_ending_flushes_what_is_queued_then_half_closes() -> None:
    session, data = make_session(), FakeData()
    async with sending(session, data) as sender:
        session._turn_check = True  # no end-of-turn check: the final flush must find it
        await session.emit(msg(1))
        session._ending = True
        session._wake_sender()
        await asyncio.wait_for(sender, 5)
        assert len(data.sent) == 1 and data.ended
        assert not session._flush_now()  # nothing is written inline once ending


async def test_heartbeat_goes_out_when_nothing_was_written_for_an_interval() -> None:
    session, data = make_session(heartbeat=0.01), FakeData()
    async with sending(session, data):
        await asyncio.wait_for(data.started.wait(), 5)
        heartbeat = data.bodies()[0]
        assert heartbeat.metadata["bubu-heartbeat"] == "true"


async def test_receipts_wait_for_the_end_of_the_engram_turn() -> None:
    session, data = make_session(), FakeData()
    woken: list[str] = []
    session._wake_control = lambda: woken.append("control")  # type: ignore[method-assign]
    session.book.bind(session._wake_for_receipt)
    async with sending(session, data):
        receipt = Receipt("s", 1, "p", 3)

        async def engram() -> list[str]:
            session.book.queue_receipt(receipt)
            assert woken == []  # not while the engram runs
            await asyncio.sleep(0)
            return list(woken)

        assert await session.run_engram(engram()) == ["control"]  # at the end of its turn

        # Outside the engram's turn, with output queued: after this loop turn.
        woken.clear()
        await session.emit(msg(1))
        session.book.queue_receipt(receipt)
        assert woken == []
        await settle()
        assert woken == ["control"]

        # Nothing queued: at once.
        woken.clear()
        session.book.queue_receipt(receipt)
        assert woken == ["control"]


def with_control() -> tuple[Session, FakeData, FakeData, list[str]]:
    """A session with stand-in Data and Control streams and a record of control wake-ups."""
    session, data, control = make_session(), FakeData(), FakeData()
    session._control = control  # type: ignore[assignment]
    woken: list[str] = []
    session._wake_control = lambda: woken.append("control")  # type: ignore[method-assign]
    session.book.bind(session._wake_for_receipt)
    return session, data, control, woken


async def test_when_the_engram_waits_on_inbound_its_output_leaves_first_then_its_receipts() -> None:
    # The engram has nothing else queued: the reply is written on its own, and the receipts of
    # the messages it marked done follow in a write of their own, from the same task, with no
    # wake-up of the control sender.
    session, data, control, woken = with_control()
    order: list[str] = []
    first, second, third = (Receipt("s", n, "p", 3) for n in (1, 2, 3))
    async with sending(session, data):

        async def engram() -> None:
            await session.emit(msg(1))
            session.book.queue_receipt(first)
            session.book.queue_receipt(second)
            order.append(f"data {len(data.sent)} control {len(control.sent)}")
            async for _ in session.inbound:
                await session.emit(msg(2))
                session.book.queue_receipt(third)

        task = asyncio.create_task(session.run_engram(engram()), name="engram")
        await settle()
        assert order == ["data 0 control 0"]  # nothing written while the engram ran
        assert [name for _, name in data.sent] == ["engram"]
        assert control.sent == [(first.encoded(), "engram"), (second.encoded(), "engram")]
        assert not session.book.outbox and woken == []

        # A directive reply is queued on Control: receipts stay behind it, for the control task.
        session._control_q.append(object())
        session.inbound.put_nowait(InboundMessage(msg(0)))
        await settle()
        assert [name for _, name in data.sent] == ["engram", "engram"]
        assert len(control.sent) == 2 and list(session.book.outbox) == [third]
        assert woken == ["control"]
        session.inbound.close()
        await task


@pytest.mark.parametrize(
    ("outputs", "control"),
    [
        # Two outputs in one turn: the engram is catching up, and one write is to carry
        # everything (staged on Control with the Data write; the stand-in streams cannot stage,
        # so the receipts go to the control sender rather than into a write of their own).
        (2, False),
        # One output, but a Control write would wait: the control sender sends them.
        (1, "waits"),
        # One output, but the control sender is inside a send (a message it may be writing
        # frame by frame): nothing may be written between its frames.
        (1, "busy"),
    ],
    ids=["after-a-burst", "control-would-wait", "control-sender-busy"],
)
async def test_receipts_left_to_the_control_sender(outputs: int, control: str | bool) -> None:
    session, data, stream, woken = with_control()
    if control == "waits":
        stream.gate = asyncio.Event()
    session._control_busy = control == "busy"
    receipt = Receipt("s", 1, "p", 3)
    async with sending(session, data):

        async def engram() -> None:
            for n in range(outputs):
                await session.emit(msg(n))
            session.book.queue_receipt(receipt)
            await session.inbound.__anext__()

        task = asyncio.create_task(session.run_engram(engram()), name="engram")
        await settle()
        assert [name for _, name in data.sent] == ["engram"] * outputs
        assert stream.sent == [] and list(session.book.outbox) == [receipt]
        assert woken == ["control"]
        session.inbound.close()
        with pytest.raises(StopAsyncIteration):
            await task


async def test_receipt_before_the_session_runs_wakes_the_control_sender_at_once() -> None:
    session = make_session()
    woken: list[str] = []
    session._wake_control = lambda: woken.append("control")  # type: ignore[method-assign]
    session._pending.append(b"x")
    session._wake_for_receipt()  # no loop recorded yet: no turn to wait for
    assert woken == ["control"] and not session._turn_check
    await session.emit(msg(1))  # nor a check to schedule for output
    assert not session._turn_check


async def test_engram_exceptions_and_cancellation_pass_through_run_engram() -> None:
    session = make_session()
    session._loop = asyncio.get_running_loop()

    async def fails() -> None:
        await asyncio.sleep(0)
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        await session.run_engram(fails())

    seen: list[str] = []

    async def waits() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen.append("cancelled")
            raise

    task = asyncio.create_task(session.run_engram(waits()))
    await settle()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert seen == ["cancelled"]

    async def catches() -> str:
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            return "caught"
        return "slept"

    task = asyncio.create_task(session.run_engram(catches()))
    await settle()
    task.cancel()
    assert await task == "caught"


async def test_closing_run_engram_closes_the_body() -> None:
    session = make_session()
    session._loop = asyncio.get_running_loop()
    closed: list[str] = []

    async def body() -> None:
        try:
            await asyncio.sleep(10)
        finally:
            closed.append("body")

    driver = session._turns(body())
    next(driver)  # started, suspended on the sleep
    driver.close()
    assert closed == ["body"]


async def test_a_handed_over_write_never_resumed_is_closed_with_the_sender() -> None:
    session, data = make_session(), FakeData()

    async def write() -> None:
        await asyncio.Event().wait()

    coro = write()
    session._loop = asyncio.get_running_loop()
    sender = asyncio.create_task(session._data_send_loop(data))  # type: ignore[arg-type]
    await settle()
    session._inflight = coro  # handed over, the sender not yet woken
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    assert inspect.getcoroutinestate(coro) == inspect.CORO_CLOSED
    assert session._inflight is None


# -- Inbound ---------------------------------------------------------------------------------


def im(n: int) -> InboundMessage:
    return InboundMessage(msg(n))


async def test_inbound_calls_before_wait_only_when_about_to_wait() -> None:
    calls: list[int] = []
    inbound = Inbound(4, before_wait=lambda: calls.append(inbound.qsize()))
    inbound.put_nowait(im(1))
    await inbound.__anext__()
    assert calls == []
    getter = asyncio.create_task(inbound.__anext__())
    await settle()
    assert calls == [0]
    inbound.put_nowait(im(2))
    assert (await getter).json_data() == {"n": 2}


async def test_inbound_put_waits_while_full_and_take_undelivered_frees_it() -> None:
    inbound = Inbound(1)
    inbound.put_nowait(im(1))
    assert inbound.full()
    with pytest.raises(asyncio.QueueFull):
        inbound.put_nowait(im(2))
    putter = asyncio.create_task(inbound.put(im(2)))
    await settle()
    assert not putter.done()
    assert [m.json_data() for m in inbound.take_undelivered()] == [{"n": 1}]
    await asyncio.wait_for(putter, 5)
    assert inbound.qsize() == 1
    assert (await inbound.__anext__()).json_data() == {"n": 2}


async def test_inbound_unbounded_never_full() -> None:
    inbound = Inbound(0)
    for n in range(50):
        await inbound.put(im(n))
    assert not inbound.full() and inbound.qsize() == 50


async def test_inbound_cancelled_consumer_passes_its_message_on() -> None:
    inbound = Inbound(4)
    first = asyncio.create_task(inbound.__anext__())
    second = asyncio.create_task(inbound.__anext__())
    await settle()
    inbound.put_nowait(im(1))  # wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    assert (await asyncio.wait_for(second, 5)).json_data() == {"n": 1}

    lone = asyncio.create_task(inbound.__anext__())
    await settle()
    lone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lone
    assert not inbound._getters


async def test_inbound_cancelled_putter_passes_the_room_on_or_leaves() -> None:
    inbound = Inbound(1)
    inbound.put_nowait(im(0))
    first = asyncio.create_task(inbound.put(im(1)))
    second = asyncio.create_task(inbound.put(im(2)))
    await settle()
    await inbound.__anext__()  # room for one: wakes `first`...
    first.cancel()  # ...which is cancelled before it runs
    with pytest.raises(asyncio.CancelledError):
        await first
    await asyncio.wait_for(second, 5)
    assert (await inbound.__anext__()).json_data() == {"n": 2}

    inbound.put_nowait(im(3))
    lone = asyncio.create_task(inbound.put(im(4)))
    await settle()
    lone.cancel()
    with pytest.raises(asyncio.CancelledError):
        await lone
    assert not inbound._putters


async def test_inbound_close_wakes_every_consumer() -> None:
    inbound = Inbound(4)
    consumers = [asyncio.create_task(inbound.__anext__()) for _ in range(3)]
    await settle()
    inbound.close()
    inbound.close()  # idempotent
    for consumer in consumers:
        with pytest.raises(StopAsyncIteration):
            await consumer
    assert inbound.closed

    stopped = Inbound(4)
    stopped.stop()
    stopped.stop()  # idempotent
    assert stopped.closed
    with pytest.raises(StopAsyncIteration):
        await stopped.__anext__()


async def test_a_failed_write_puts_its_staged_receipts_back_in_order() -> None:
    session, data = make_session(), FakeData()
    data.fail = ConnectionResetError("peer gone")
    first, second, queued = (
        Receipt("s", 1, "p", 3),
        Receipt("s", 2, "p", 3),
        Receipt("s", 3, "p", 3),
    )
    session.book.outbox.append(queued)
    with pytest.raises(ConnectionResetError):
        await session._send_data(data, [b"x"], [first, second])  # type: ignore[arg-type]
    assert list(session.book.outbox) == [first, second, queued]


async def test_an_unexpected_inline_write_error_is_raised_as_it_is() -> None:
    session, data = make_session(), FakeData()
    data.fail = RuntimeError("codec bug")
    async with sending(session, data) as sender:

        async def engram() -> None:
            await session.emit(msg(1))

        await session.run_engram(engram())
        with pytest.raises(RuntimeError, match="codec bug"):
            await sender
        session._pending.append(b"more")
        assert not session._flush_now()  # nothing more is written once the sender failed


async def test_beat_is_due_after_its_interval_and_rearms() -> None:
    fired = asyncio.Event()
    beat = _Beat(asyncio.get_running_loop(), 0.001, fired.set)
    assert not beat.due
    await asyncio.wait_for(fired.wait(), 5)
    assert beat.due
    fired.clear()
    beat.arm()
    assert not beat.due
    beat.cancel()
    beat.cancel()  # idempotent


async def test_control_heartbeats_go_out_one_interval_apart() -> None:
    settings = TransportSettings(control_heartbeat_interval=0.001, message_timeout=5.0)
    twice = asyncio.Event()

    class FakeControl:
        def __init__(self) -> None:
            self.sent: list[Any] = []

        async def send_message(self, message: Any) -> None:
            self.sent.append(message)
            if len(self.sent) == 2:
                twice.set()

    session = make_session()
    session._s = settings
    control = FakeControl()
    sender = asyncio.create_task(session._control_send_loop(control))  # type: ignore[arg-type]
    await asyncio.wait_for(twice.wait(), 5)
    sender.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await sender
    heartbeat = wire.control_heartbeat().action
    assert heartbeat and [m.action for m in control.sent[:2]] == [heartbeat, heartbeat]
