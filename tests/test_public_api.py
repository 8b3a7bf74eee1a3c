"""Pin the public API: ``bubu.__all__`` and ``bubu.testkit.__all__`` change only on purpose.

The lead owns ``bubu/__init__.py``; a change there must update this list in the same commit.
"""

from __future__ import annotations

import importlib
import inspect

import bubu
import bubu.templating
import bubu.testkit

BUBU_ALL = {
    "AudioFrame",
    "DispatchResult",
    "Drop",
    "EnvSource",
    "ImpulseClient",
    "MappingSource",
    "Shutdown",
    "SignalEnvelope",
    "SignalEvent",
    "SignalMeta",
    "StorageReference",
    "StorySession",
    "StreamEnvelope",
    "TargetStory",
    "TriggerResult",
    "get_target_story",
    "trigger_token",
    "compose_dns1123_name",
    "BatchEngram",
    "BinaryFrame",
    "ExecutionContext",
    "Impulse",
    "InboundMessage",
    "Result",
    "Secrets",
    "StoryDispatcher",
    "StoryInfo",
    "StreamMessage",
    "StreamingEngram",
    "VideoFrame",
    "__version__",
    "emit_signal",
    "emit_text_signal",
    "errors",
    "execute_effect_once",
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
}

TESTKIT_ALL = {
    "BatchHarness",
    "BatchSuite",
    "ConformanceError",
    "EffectClaimPhases",
    "FakeCluster",
    "ImpulseHarness",
    "LocalConnector",
    "LocalStorage",
    "MemoryStatusSink",
    "StopStoryController",
    "StreamHarness",
    "StreamSuite",
    "TriggerResolver",
    "validate_stream_error_message",
    "validate_stream_message",
    "validate_structured_error",
}

# The public API shape the project fixed (docs/contract/index.md#go-surface): always present.
SPEC_NAMES = {
    "start_batch",
    "start_streaming",
    "run_impulse",
    "start",
    "run",
    "start_story",
    "start_story_with_token",
    "stop_story",
    "emit_signal",
    "record_effect",
    "execute_effect_once",
    "BatchEngram",
    "StreamingEngram",
    "Impulse",
    "Secrets",
    "ExecutionContext",
    "Result",
    "StreamMessage",
    "InboundMessage",
    "BinaryFrame",
    "AudioFrame",
    "VideoFrame",
}


def test_bubu_all_is_pinned() -> None:
    assert set(bubu.__all__) == BUBU_ALL
    assert len(bubu.__all__) == len(set(bubu.__all__))
    assert sorted(dir(bubu)) == sorted(bubu.__all__)


def test_spec_names_are_public() -> None:
    assert SPEC_NAMES <= set(bubu.__all__)


def test_batch_entry_points_resolve() -> None:
    for name in (
        "start_batch",
        "run",
        "start",
        "BatchEngram",
        "Result",
        "ExecutionContext",
        "Secrets",
        "StoryInfo",
    ):
        assert getattr(bubu, name) is not None
    assert inspect.iscoroutinefunction(bubu.start_batch)
    assert inspect.iscoroutinefunction(bubu.start)
    assert bubu.start_batch is importlib.import_module("bubu._batch").start_batch


def test_testkit_all_is_pinned() -> None:
    assert set(bubu.testkit.__all__) == TESTKIT_ALL
    assert sorted(dir(bubu.testkit)) == sorted(bubu.testkit.__all__)
    for name in bubu.testkit.__all__:
        assert getattr(bubu.testkit, name) is not None


def test_unknown_attribute_raises() -> None:
    try:
        bubu.no_such_name  # type: ignore[attr-defined]  # noqa: B018
    except AttributeError as exc:
        assert "no_such_name" in str(exc)
    else:
        raise AssertionError("expected AttributeError")


def test_compose_dns1123_name_is_public_as_in_go() -> None:
    # The spec keeps Go's ComposeDNS1123Name public (docs/contract/identity.md); the Go-pinned
    # vectors are in tests/unit/impulse/test_identity_go.py.
    assert bubu.compose_dns1123_name("My Story", "step_1") == "my-story-step-1"
    assert bubu.compose_dns1123_name("", "--") == "resource"
    long = bubu.compose_dns1123_name("a" * 80)
    assert len(long) == 63 and long.startswith("a" * 54 + "-")


PUBLIC_MODULES = ("bubu", "bubu.errors", "bubu.streaming", "bubu.templating", "bubu.testkit")


def _undocumented() -> list[str]:
    missing = []
    for module_name in PUBLIC_MODULES:
        module = importlib.import_module(module_name)
        if not (module.__doc__ or "").strip():
            missing.append(module_name)
        for name in module.__all__:
            obj = getattr(module, name)
            if not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            if not (inspect.getdoc(obj) or "").strip():
                missing.append(f"{module_name}.{name}")
            if not inspect.isclass(obj):
                continue
            for attr, member in vars(obj).items():
                if attr.startswith("_"):
                    continue
                func = member.fget if isinstance(member, property) else member
                if isinstance(func, staticmethod | classmethod):
                    func = func.__func__
                if inspect.isfunction(func) and not (func.__doc__ or "").strip():
                    missing.append(f"{module_name}.{name}.{attr}")
    return missing


def test_every_public_name_has_a_docstring() -> None:
    assert bubu.templating.__all__ == ["Evaluator", "Expression", "extract_expression"]
    assert _undocumented() == []
