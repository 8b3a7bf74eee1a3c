"""bubu.testkit: run engrams and impulses in tests, without Kubernetes.

Public names are listed explicitly in ``_LAZY`` and ``__all__`` (pinned by
``tests/test_public_api.py``). They load on first use (PEP 562): pytest imports
``bubu.testkit.pytest_plugin`` in every project that installs bubu, which imports this package
first, so nothing heavy (grpclib for the streaming harness) may load here eagerly.

To add a harness: one ``_LAZY`` entry, one ``TYPE_CHECKING`` import, one ``__all__`` entry.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_LAZY: dict[str, str] = {
    "BatchHarness": "bubu.testkit._batch",
    "MemoryStatusSink": "bubu._k8s.status",
    "ImpulseHarness": "bubu.testkit._impulse",
    "FakeCluster": "bubu.testkit._fakes",
    "TriggerResolver": "bubu.testkit._fakes",
    "EffectClaimPhases": "bubu.testkit._fakes",
    "StopStoryController": "bubu.testkit._fakes",
    "StreamHarness": "bubu.testkit._stream",
    "StreamSuite": "bubu.testkit._conformance",
    "BatchSuite": "bubu.testkit._conformance",
    "ConformanceError": "bubu.testkit._conformance",
    "validate_stream_message": "bubu.testkit._conformance",
    "validate_stream_error_message": "bubu.testkit._conformance",
    "validate_structured_error": "bubu.testkit._conformance",
    "LocalConnector": "bubu.testkit._connector",
    "LocalStorage": "bubu.testkit._storage",
}

if TYPE_CHECKING:
    from bubu._k8s.status import MemoryStatusSink
    from bubu.testkit._batch import BatchHarness
    from bubu.testkit._conformance import (
        BatchSuite,
        ConformanceError,
        StreamSuite,
        validate_stream_error_message,
        validate_stream_message,
        validate_structured_error,
    )
    from bubu.testkit._connector import LocalConnector
    from bubu.testkit._fakes import (
        EffectClaimPhases,
        FakeCluster,
        StopStoryController,
        TriggerResolver,
    )
    from bubu.testkit._impulse import ImpulseHarness
    from bubu.testkit._storage import LocalStorage
    from bubu.testkit._stream import StreamHarness


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'bubu.testkit' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
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
]
