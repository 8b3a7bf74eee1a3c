"""Tracer, meter and W3C propagation, created on first use (opentelemetry-api only).

OpenTelemetry is imported inside the functions: its context module resolves entry points at
import time, which would cost every ``import bubu`` (docs/contract/design.md#cheap-import). Names
match the Go SDK (docs/observability.md#metrics-and-traces): tracer and meter ``bubu-sdk``;
histogram ``bubu.k8s.operation.duration_seconds`` with ``operation`` and ``success`` attributes.

``configure(metrics=..., tracing=...)`` applies ``BUBU_SDK_METRICS_ENABLED`` /
``BUBU_SDK_TRACING_ENABLED``; when disabled the helpers are no-ops. The start-up sequence
(``bubu._startup``) applies them for every mode with ``configured()``, which restores the previous
switches when the run ends.

Imports nothing from ``bubu``.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator, Mapping, MutableMapping
from typing import Any, Final

__all__ = [
    "INSTRUMENTATION_NAME",
    "configure",
    "configured",
    "extract",
    "extract_w3c",
    "inject",
    "inject_w3c",
    "meter",
    "otel_in_use",
    "record_k8s_operation",
    "rpc_span",
    "tracer",
]

INSTRUMENTATION_NAME: Final = "bubu-sdk"
K8S_OPERATION_HISTOGRAM: Final = "bubu.k8s.operation.duration_seconds"

_state: dict[str, Any] = {"metrics": True, "tracing": True}


def configure(*, metrics: bool | None = None, tracing: bool | None = None) -> None:
    """Turn metrics or tracing off (or on again) for this process."""
    if metrics is not None:
        _state["metrics"] = metrics
    if tracing is not None:
        _state["tracing"] = tracing


@contextlib.contextmanager
def configured(*, metrics: bool, tracing: bool) -> Iterator[None]:
    """Apply the switches for the duration of a run, then restore the previous ones."""
    previous = (_state["metrics"], _state["tracing"])
    configure(metrics=metrics, tracing=tracing)
    try:
        yield
    finally:
        configure(metrics=previous[0], tracing=previous[1])


def tracer(name: str = INSTRUMENTATION_NAME) -> Any:
    """Return the ``bubu-sdk`` tracer, or the one named ``name`` (the storage layer uses Go's
    ``github.com/bubustack/bobrapet/pkg/storage``); a no-op tracer when tracing is disabled."""
    from opentelemetry import trace

    if not _state["tracing"]:
        return trace.NoOpTracer()
    return trace.get_tracer(name)


def meter(name: str = INSTRUMENTATION_NAME) -> Any:
    """Return the ``bubu-sdk`` meter, or the one named ``name`` (the storage histograms use Go's
    ``github.com/bubustack/bobrapet/pkg/storage``); a no-op meter when metrics are disabled."""
    from opentelemetry import metrics

    if not _state["metrics"]:
        return metrics.NoOpMeter(name)
    return metrics.get_meter(name)


def record_k8s_operation(operation: str, seconds: float, *, success: bool) -> None:
    """Record one Kubernetes operation's duration (Go ``PatchStepRunStatus`` and friends)."""
    if not _state["metrics"]:
        return
    histogram = _state.get("k8s_histogram")
    if histogram is None:
        histogram = meter().create_histogram(
            K8S_OPERATION_HISTOGRAM,
            unit="s",
            description="Duration of Kubernetes operations performed by the SDK",
        )
        _state["k8s_histogram"] = histogram
    histogram.record(seconds, {"operation": operation, "success": success})


def inject(carrier: MutableMapping[str, str]) -> None:
    """Write the current trace context (``traceparent``, ``tracestate``, baggage) to a carrier."""
    if not _state["tracing"]:
        return
    from opentelemetry import propagate

    propagate.inject(carrier)


def extract(carrier: Mapping[str, str]) -> Any:
    """Return an OpenTelemetry context read from a carrier (W3C trace context and baggage)."""
    from opentelemetry import propagate

    return propagate.extract(carrier)


_w3c: list[Any] = []
# opentelemetry.context.get_current, bound on first use (see inject_w3c).
_current_context: list[Any] = []


def _w3c_propagator() -> Any:
    if not _w3c:
        from opentelemetry.baggage.propagation import W3CBaggagePropagator
        from opentelemetry.context import get_current
        from opentelemetry.propagators.composite import CompositePropagator
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        _w3c.append(CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]))
        _current_context.append(get_current)
    return _w3c[0]


def inject_w3c(carrier: MutableMapping[str, str]) -> None:
    """Write W3C ``traceparent``/``tracestate``/``baggage`` of the current context to a carrier.

    The Go SDK's stream propagator (docs/contract/stream.md#trace-context): W3C TraceContext plus
    Baggage whatever the global propagator is, gated by ``BUBU_TRACE_PROPAGATION`` (by the caller),
    not by ``BUBU_SDK_TRACING_ENABLED``. Writes nothing when no span or baggage is active.
    """
    if not _w3c:
        if not _otel_loaded():
            # Nothing has loaded OpenTelemetry, so no context can be active (its context variable
            # lives in that module): nothing to write, and no propagator to import on the first
            # packet (~9 ms, docs/performance.md#where-the-time-goes-and-what-was-done).
            return
        _w3c_propagator()
    # Hot path (once per outbound packet): an empty context holds no span and no baggage, so
    # both propagators would write nothing; skip them (0.2 us instead of ~1.5 us).
    if not _current_context[0]():
        return
    _w3c[0].inject(carrier)


def extract_w3c(carrier: Mapping[str, str]) -> Any:
    """Return the OpenTelemetry context carried by W3C keys in ``carrier`` (Go extraction)."""
    return _w3c_propagator().extract(carrier)


def _otel_loaded() -> bool:
    # OpenTelemetry's context variable lives in this module: before it loads, no context exists.
    return "opentelemetry.context" in sys.modules


def otel_in_use() -> bool:
    """Whether OpenTelemetry could make a span or a trace header in this process.

    Not when nothing has imported it yet and the environment names no tracer provider and no
    propagators: then no provider was set (``set_tracer_provider`` lives in a module that loads
    ``opentelemetry.context``), no context was attached (the context variable lives there too), so
    a span would be the no-op tracer's invalid one and the default W3C propagators would write
    nothing. Checking this first spares a streaming engram's start the ~9 ms of importing the
    propagators (docs/performance.md#where-the-time-goes-and-what-was-done).
    """
    return (
        _otel_loaded()
        or "OTEL_PYTHON_TRACER_PROVIDER" in os.environ
        or "OTEL_PROPAGATORS" in os.environ
    )


@contextlib.contextmanager
def rpc_span(method: str, metadata: MutableMapping[str, str]) -> Iterator[Any]:
    """The client span of one gRPC call, its context put into the call's metadata.

    What Go's otelgrpc client stats handler does for the connector streams
    (``BUBU_TRACE_PROPAGATION``, docs/contract/stream.md#trace-context): a ``CLIENT`` span
    named after the full method (``transport.v1.TransportConnectorService/Data``) with the ``rpc.*``
    attributes, injected with the global propagator, ended (with an error status when the block
    raises) when the call ends. Without a tracer provider (opentelemetry-api alone, or tracing off)
    the span is invalid, and the current context is injected instead, as Go's no-op tracer passes
    its parent on. When OpenTelemetry is not in use at all (:func:`otel_in_use`) that would add
    nothing, so nothing is imported and the block gets ``None``. Enter it before the call sends
    its headers.

    Args:
        method: the gRPC path, ``/package.Service/Method``.
        metadata: the call's request metadata; ``traceparent`` and friends are added to it.
    """
    if not otel_in_use():
        yield None
        return
    from opentelemetry import propagate, trace

    service, _, name = method.lstrip("/").partition("/")
    span = tracer().start_span(
        f"{service}/{name}",
        kind=trace.SpanKind.CLIENT,
        attributes={"rpc.system": "grpc", "rpc.service": service, "rpc.method": name},
    )
    if span.get_span_context().is_valid:
        propagate.inject(metadata, context=trace.set_span_in_context(span))
    else:
        propagate.inject(metadata)
    try:
        yield span
    except BaseException as exc:
        span.set_status(trace.Status(trace.StatusCode.ERROR, type(exc).__name__))
        raise
    finally:
        span.end()
