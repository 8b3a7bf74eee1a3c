"""Call-level trace context (otelgrpc) and the bounded control-request queue.

See docs/contract/stream.md#environment.

Against the real grpclib LocalConnector on loopback.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import NonRecordingSpan, SpanContext, SpanKind, TraceFlags

from bubu import _telemetry
from bubu._runtime.messages import StreamMessage
from bubu._runtime.transport import TransportSettings
from bubu._streaming import run_with_reconnect, supervise
from bubu._transport import _fastpath
from bubu._transport.session import CONTROL_METHOD, DeliveryBook, Session
from bubu.testkit._connector import LocalConnector
from tests.integration._stream_helpers import Emitter, connector, eventually, running

pytestmark = pytest.mark.loopback

TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB9C7C989F97918E1
TRACEPARENT = "00-0af7651916cd43dd8448eb211c80319c-b9c7c989f97918e1-01"


@contextlib.contextmanager
def _session_span() -> Iterator[None]:
    ctx = SpanContext(
        trace_id=TRACE_ID, span_id=SPAN_ID, is_remote=False, trace_flags=TraceFlags(1)
    )
    with trace.use_span(NonRecordingSpan(ctx)):
        yield


async def _run_once(conn: LocalConnector, env: dict[str, str] | None = None) -> int:
    # One message, then the stream ends (a clean session end). The engram task copies the
    # current context, as the Go session context carries the root span.
    engram = Emitter([StreamMessage.json({"n": 1})])
    async with running(engram, conn, extra_env=env) as task:
        return await asyncio.wait_for(task, 10)


# -- otelgrpc: trace context in the call headers -------------------------------------------


async def test_both_calls_carry_the_session_trace_context_without_a_tracer_provider() -> None:
    async with connector() as conn:
        with _session_span():
            assert await _run_once(conn) == 0
    assert conn.data_headers and conn.control_headers
    assert conn.data_headers[0]["traceparent"] == TRACEPARENT
    assert conn.control_headers[0]["traceparent"] == TRACEPARENT
    assert conn.data_headers[0]["bubu-transport-protocol"] == "1.0.0"


async def test_no_trace_headers_when_propagation_is_off_or_no_span_is_active() -> None:
    async with connector() as conn:
        with _session_span():
            assert await _run_once(conn, {"BUBU_TRACE_PROPAGATION": "false"}) == 0
        assert await _run_once(conn) == 0  # propagation on, but nothing to propagate
    assert len(conn.data_headers) == 2
    for headers in (*conn.data_headers, *conn.control_headers):
        assert "traceparent" not in headers


async def test_each_call_gets_a_client_span_whose_context_is_in_its_headers(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer(_telemetry.INSTRUMENTATION_NAME)
    monkeypatch.setattr(_telemetry, "tracer", lambda: tracer)

    async with connector() as conn:
        with tracer.start_as_current_span("session") as root:
            assert await _run_once(conn) == 0
    spans = {s.name: s for s in exporter.get_finished_spans()}
    data = spans["transport.v1.TransportConnectorService/Data"]
    control = spans["transport.v1.TransportConnectorService/Control"]
    for span, headers in ((data, conn.data_headers[0]), (control, conn.control_headers[0])):
        assert span.kind is SpanKind.CLIENT
        assert span.end_time is not None  # ended with the call
        assert span.parent is not None
        assert span.parent.span_id == root.get_span_context().span_id
        assert dict(span.attributes or {}) == {
            "rpc.system": "grpc",
            "rpc.service": "transport.v1.TransportConnectorService",
            "rpc.method": span.name.rsplit("/", 1)[1],
        }
        ctx = span.get_span_context()
        flags = int(ctx.trace_flags)
        assert headers["traceparent"] == f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-{flags:02x}"


# -- the control-request queue is BUBU_GRPC_CHANNEL_BUFFER_SIZE deep -------------------------


async def test_directive_replies_wait_for_room_instead_of_piling_up(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Hold every Control write at a gate: replies can only queue. With a 2-deep queue the
    # reader handles one more directive (its reply waits for room) and then stops reading.
    gate = asyncio.Event()
    gate.set()
    original = _fastpath.send_batch

    async def gated_send(stream: Any, messages: list[Any]) -> None:
        if stream._method_name == CONTROL_METHOD:
            await gate.wait()
        await original(stream, messages)

    monkeypatch.setattr(_fastpath, "send_batch", gated_send)
    handled: list[str] = []

    async def handler(directive: str, metadata: dict[str, str]) -> Any:
        if directive == "probe":
            handled.append(metadata["n"])
            return "ack", {"type": "probe", "n": metadata["n"]}
        return "ack", {"type": directive}

    settings = TransportSettings(
        buffer_size=2, reconnect_base_backoff=0.01, reconnect_max_backoff=0.05, message_timeout=2
    )
    sessions: list[Session] = []

    async def idle(inbound: Any, emit: Any) -> None:
        async for _ in inbound:
            pass

    async with connector() as conn:

        def make() -> Session:
            session = Session(
                endpoint=conn.address,
                binding_reference="",
                settings=settings,
                book=DeliveryBook(),
                body=supervise(idle),
                control_handler=handler,
            )
            sessions.append(session)
            return session

        task = asyncio.create_task(run_with_reconnect(make, settings))
        try:
            await conn.wait_ready()
            # The handshake replies went out; from now on Control writes wait at the gate.
            await conn.wait_until(lambda: len(conn.control_requests) >= 3)
            gate.clear()
            for n in range(10):
                await conn.send_control("probe", {"n": str(n)})
            # Two replies queued and the third directive's handled reply waiting for room: the
            # reader stops there (Go's blocking channel send) instead of reading on.
            await eventually(lambda: len(handled) >= 3 and len(sessions[0]._control_q) >= 2, 30)
            assert handled == ["0", "1", "2"]
            assert len(sessions[0]._control_q) == 2
            gate.set()
            await conn.wait_until(
                lambda: sum(r.metadata.get("type") == "probe" for r in conn.control_requests) == 10
            )
        finally:
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
    probes = [r.metadata["n"] for r in conn.control_requests if r.metadata.get("type") == "probe"]
    assert probes == [str(n) for n in range(10)]  # none lost, in order
    assert handled == probes
    assert len(sessions) == 1


async def test_sdk_tracing_disabled_is_honoured_in_streaming_mode(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Issue 12 item 1: only batch applied BUBU_SDK_TRACING_ENABLED; streaming made spans anyway.
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    monkeypatch.setattr(trace, "get_tracer", lambda *a, **k: provider.get_tracer("t"))

    async with connector() as conn:
        assert await _run_once(conn, {"BUBU_SDK_TRACING_ENABLED": "false"}) == 0
        assert exporter.get_finished_spans() == ()
        assert await _run_once(conn) == 0  # the switch was restored when the run ended
    assert {s.name for s in exporter.get_finished_spans()} == {
        "transport.v1.TransportConnectorService/Data",
        "transport.v1.TransportConnectorService/Control",
    }
