"""``hybrid`` mode: a batch Job whose output is also forwarded to downstream streaming steps.

The operator sets ``BUBU_EXECUTION_MODE=hybrid`` on Jobs that have downstream streaming targets
(docs/contract/runtime-environment.md#mode, docs/differences.md). Go's ``sdk.Start`` sends
``hybrid`` to the streaming runtime, which is a Go bug; here ``hybrid`` does what it means:

1. run the batch lifecycle (``bubu._batch.run_batch``): status, exit code, everything as batch;
2. only if the step succeeded **and** its terminal status was written, and ``BUBU_HYBRID_BRIDGE``
   is on (the default; off only for ``0/false/no/off``), forward the output through the
   connector named in ``BUBU_TRANSPORT_BINDING``: one ``DataRequest`` on a Data stream, then a
   half-close (Go ``bridgeToHub``);
3. the bridge is best effort: bounded by ``BUBU_HYBRID_BRIDGE_TIMEOUT`` (15 s), skipped without a
   binding, and its failures are logged, never change the exit code.

The forwarded message is Go's ``buildHybridStreamMessage``: kind ``data``, the current time, the
output JSON as payload, the story identity as metadata (``storyName``, ``storyRunID``,
``stepName``, ``stepRunID``, ``stepRunNamespace``), the trigger inputs and the declared
transports. The difference from Go is listed in docs/differences.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as _dt
import logging
from typing import TYPE_CHECKING, Any

import msgspec

from bubu import _telemetry
from bubu._runtime.messages import StreamMessage, TransportConfig, TransportDescriptor

if TYPE_CHECKING:
    from bubu._aio.shutdown import Shutdown
    from bubu._batch import BatchReport
    from bubu._runtime.context import RunContext
    from bubu._runtime.sources import EnvSource

__all__ = ["bridge_output", "build_bridge_message", "start_hybrid"]

logger = logging.getLogger("bubu.hybrid")

_CLOSE_WAIT = 2.0
"""Seconds to wait for the connector to end the bridge's Data stream after the half-close."""


def _story_metadata(run: RunContext) -> dict[str, str]:
    info = run.story_info
    pairs = (
        ("storyName", info.story_name),
        ("storyRunID", info.story_run_id),
        ("stepName", info.step_name),
        ("stepRunID", info.step_run_id),
        ("stepRunNamespace", info.step_run_namespace),
    )
    return {key: value.strip() for key, value in pairs if value and value.strip()}


def build_bridge_message(output: Any, run: RunContext | None) -> StreamMessage:
    """Build the message the bridge forwards (Go ``buildHybridStreamMessage``).

    Raises:
        ProtocolViolationError: the output is not a JSON object (it cannot become a Struct).
    """
    now = _dt.datetime.now(_dt.UTC)
    now = now.replace(microsecond=now.microsecond // 1000 * 1000)
    payload = msgspec.json.encode(output)
    fields: dict[str, Any] = {"kind": "data", "timestamp": now, "payload": payload}
    if run is not None:
        fields["metadata"] = _story_metadata(run)
        if run.inputs:
            fields["inputs"] = msgspec.json.encode(run.inputs)
        fields["transports"] = tuple(
            TransportDescriptor(
                name=t.name,
                kind=t.kind,
                mode=t.mode,
                typed_config=None
                if t.typed_config is None
                else TransportConfig(
                    transport_ref=t.typed_config.transport_ref,
                    mode_reason=t.typed_config.mode_reason,
                ),
            )
            for t in run.transports
        )
    return StreamMessage(**fields)


async def bridge_output(output: Any, *, source: EnvSource, run: RunContext) -> bool:
    """Forward ``output`` through the binding's connector; best effort.

    Args:
        output: the step output (a JSON object).
        source: the environment, for the binding's transport knobs.
        run: the run context the batch loaded (binding, bridge timeout, identity).

    Returns:
        True when the message was handed to the connector, False when skipped or failed (the
        reason is logged).
    """
    from bubu._runtime.binding import EnvResolver, parse_binding
    from bubu._runtime.transport import resolve_settings
    from bubu._transport import channel as channel_mod
    from bubu._transport import wire
    from bubu._transport.session import DATA_METHOD, PROTOCOL_HEADER, PROTOCOL_VERSION

    env = run.env
    if env.transport_binding is None:
        logger.debug("no transport binding provided; skipping hybrid bridge delivery")
        return False
    timeout = env.hybrid_bridge_timeout
    try:
        async with asyncio.timeout(timeout):
            binding = parse_binding(env.transport_binding).with_namespace(env.namespace)
            settings = resolve_settings(EnvResolver(binding.env_overrides, source))
            request = wire.encode_outbound(build_bridge_message(output, run), settings)
            chan = channel_mod.open_channel(binding.endpoint, settings)
            try:
                await channel_mod.connect(chan, settings.dial_timeout)
                headers = {PROTOCOL_HEADER: PROTOCOL_VERSION}
                # Go's otelgrpc client handler instruments the bridge's call like any other.
                span = (
                    _telemetry.rpc_span(DATA_METHOD, headers)
                    if settings.trace_propagation
                    else contextlib.nullcontext()
                )
                with span:
                    await _send_one(chan, headers, request)
            finally:
                chan.close()
    except asyncio.CancelledError:
        raise
    except TimeoutError:
        logger.warning("hybrid bridge timed out after %.1fs; output not forwarded", timeout)
        return False
    except Exception as exc:
        logger.warning("hybrid bridge failed; output not forwarded: %s", exc)
        return False
    logger.debug("hybrid payload delivered to %s", binding.endpoint)
    return True


async def _send_one(chan: Any, headers: dict[str, str], request: Any) -> None:
    """One DataRequest on a Data stream, a half-close, then wait briefly for the peer's end."""
    from grpclib.const import Cardinality

    from bubu._gen.transport.v1 import transport_pb2 as pb
    from bubu._transport.session import DATA_METHOD

    async with chan.request(
        DATA_METHOD, Cardinality.STREAM_STREAM, pb.DataRequest, pb.DataResponse, metadata=headers
    ) as stream:
        await stream.send_message(request)
        await stream.end()
        # Let the connector take the message and end its side before the channel closes
        # (closing at once can reset the stream before it is read).
        with contextlib.suppress(Exception):
            async with asyncio.timeout(_CLOSE_WAIT):
                while await stream.recv_message() is not None:
                    pass
                await stream.recv_trailing_metadata()
        await stream.cancel()


def _bridge_wanted(report: BatchReport) -> bool:
    return report.exit_code == 0 and report.phase == "Succeeded" and report.status_error is None


async def start_hybrid(
    engram: Any,
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
    **kwargs: Any,
) -> int:
    """Run ``engram`` as batch, then bridge its output to the streaming connector.

    Args:
        engram: a ``BatchEngram`` (a dual engram is fine).
        source: where ``BUBU_*`` values come from.
        shutdown: the stop request (passed to the batch run).
        **kwargs: passed to ``bubu._batch.run_batch`` (``client=``, ``status_sink=``...).

    Returns:
        The batch exit code; the bridge never changes it.
    """
    from bubu import _startup
    from bubu._batch import run_batch

    # One start-up for the whole hybrid run: the batch lifecycle nests in this guard (its
    # log lines say mode "hybrid"), and the bridge's lines are masked and JSON too.
    install = bool(kwargs.get("install_logging", True))
    with _startup.begin(
        "hybrid",
        source=source,
        shutdown=shutdown,
        install_logging=install,
        capture_output=install,
    ) as st:
        report = await run_batch(engram, source=st.source, shutdown=st.shutdown, **kwargs)
        if not _bridge_wanted(report) or report.run is None:
            return report.exit_code
        if not report.run.env.hybrid_bridge:
            logger.debug("hybrid bridge disabled by BUBU_HYBRID_BRIDGE")
            return report.exit_code
        output: Any = report.output
        if output is None and report.result is not None:
            output = msgspec.to_builtins(report.result.data)
        if output is None:
            # Go: an empty payload has nothing to forward.
            return report.exit_code
        await bridge_output(output, source=st.source, run=report.run)
        return report.exit_code
