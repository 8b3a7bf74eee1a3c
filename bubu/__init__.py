"""bubu: the asyncio-native Python SDK for BubuStack.

The whole public API is re-exported here. Light modules (the runtime contract, engram base
classes, errors) load eagerly; entry points and helpers that pull in grpclib, kr8s or
OpenTelemetry load on first use, so ``import bubu`` stays cheap.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from bubu import errors
from bubu._version import __version__

# Public name -> home module. Everything here is loaded lazily (PEP 562).
_LAZY: dict[str, str] = {
    # entry points
    "start_batch": "bubu._batch",
    "start_streaming": "bubu._streaming",
    "run_impulse": "bubu._impulse",
    "start": "bubu._start",
    "run": "bubu._start",
    # durable helpers
    "start_story": "bubu._triggers",
    "start_story_with_token": "bubu._triggers",
    "stop_story": "bubu._triggers",
    "StoryDispatcher": "bubu._dispatcher",
    "emit_signal": "bubu._signals",
    "emit_text_signal": "bubu._signals",
    "replay_signals": "bubu._signals",
    "record_effect": "bubu._effects",
    "has_effect": "bubu._effects",
    "execute_effect_once": "bubu._effects",
    "publish_logs": "bubu._logs",
    "publish_log_file": "bubu._logs",
    "offload_blob": "bubu._blobs",
    "read_blob": "bubu._blobs",
    "StorageReference": "bubu._blobs",
    "TriggerResult": "bubu._triggers",
    "TargetStory": "bubu._triggers",
    "get_target_story": "bubu._triggers",
    "trigger_token": "bubu._triggers",
    "compose_dns1123_name": "bubu._k8s.identity",
    "ImpulseClient": "bubu._impulse",
    "StorySession": "bubu._dispatcher",
    "DispatchResult": "bubu._dispatcher",
    "SignalEnvelope": "bubu._signals",
    "SignalMeta": "bubu._signals",
    "SignalEvent": "bubu._signals",
    "Drop": "bubu._runtime.messages",
    "StreamEnvelope": "bubu._runtime.messages",
    # contract types
    "ExecutionContext": "bubu._runtime.context",
    "StoryInfo": "bubu._runtime.context",
    "Secrets": "bubu._runtime.secrets",
    "Result": "bubu._runtime.result",
    "StreamMessage": "bubu._runtime.messages",
    "InboundMessage": "bubu._runtime.messages",
    "BinaryFrame": "bubu._runtime.messages",
    "AudioFrame": "bubu._runtime.messages",
    "VideoFrame": "bubu._runtime.messages",
    # what the entry points and harnesses take: the stop request and where BUBU_* is read
    "Shutdown": "bubu._aio.shutdown",
    "EnvSource": "bubu._runtime.sources",
    "MappingSource": "bubu._runtime.sources",
    "BatchEngram": "bubu.engram",
    "StreamingEngram": "bubu.engram",
    "Impulse": "bubu.engram",
}

if TYPE_CHECKING:
    from bubu._aio.shutdown import Shutdown
    from bubu._batch import start_batch
    from bubu._blobs import StorageReference, offload_blob, read_blob
    from bubu._dispatcher import DispatchResult, StoryDispatcher, StorySession
    from bubu._effects import execute_effect_once, has_effect, record_effect
    from bubu._impulse import ImpulseClient, run_impulse
    from bubu._k8s.identity import compose_dns1123_name
    from bubu._logs import publish_log_file, publish_logs
    from bubu._runtime.context import ExecutionContext, StoryInfo
    from bubu._runtime.messages import (
        AudioFrame,
        BinaryFrame,
        Drop,
        InboundMessage,
        StreamEnvelope,
        StreamMessage,
        VideoFrame,
    )
    from bubu._runtime.result import Result
    from bubu._runtime.secrets import Secrets
    from bubu._runtime.sources import EnvSource, MappingSource
    from bubu._signals import (
        SignalEnvelope,
        SignalEvent,
        SignalMeta,
        emit_signal,
        emit_text_signal,
        replay_signals,
    )
    from bubu._start import run, start
    from bubu._streaming import start_streaming
    from bubu._triggers import (
        TargetStory,
        TriggerResult,
        get_target_story,
        start_story,
        start_story_with_token,
        stop_story,
        trigger_token,
    )
    from bubu.engram import BatchEngram, Impulse, StreamingEngram


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bubu' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "AudioFrame",
    "BatchEngram",
    "BinaryFrame",
    "DispatchResult",
    "Drop",
    "EnvSource",
    "ExecutionContext",
    "Impulse",
    "ImpulseClient",
    "InboundMessage",
    "MappingSource",
    "Result",
    "Secrets",
    "Shutdown",
    "SignalEnvelope",
    "SignalEvent",
    "SignalMeta",
    "StorageReference",
    "StoryDispatcher",
    "StoryInfo",
    "StorySession",
    "StreamEnvelope",
    "StreamMessage",
    "StreamingEngram",
    "TargetStory",
    "TriggerResult",
    "VideoFrame",
    "__version__",
    "compose_dns1123_name",
    "emit_signal",
    "emit_text_signal",
    "errors",
    "execute_effect_once",
    "get_target_story",
    "has_effect",
    "offload_blob",
    "publish_log_file",
    "publish_logs",
    "read_blob",
    "record_effect",
    "replay_signals",
    "run",
    "run_impulse",
    "start",
    "start_batch",
    "start_story",
    "start_story_with_token",
    "start_streaming",
    "stop_story",
    "trigger_token",
]
