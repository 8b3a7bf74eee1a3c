"""Signals on the operator's StepRun, as the engram-runner ServiceAccount it made.

See docs/contract/signals.md#signals.

``engram_runner_identity`` starts StoryRun ``run-1``; the operator creates StepRun
``run-1-step-a`` (Running, its Job never runs) and the ServiceAccount whose Role the calls
use, and keeps reconciling that StepRun while the SDK writes its status.
"""

from __future__ import annotations

import pytest

import tests.conftest as _root_conftest
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import STEP_RUN
from bubu._signals import emit_signal, emit_text_signal, replay_signals
from bubu.errors import SignalError

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        k8s_namespace,
    )

pytestmark = pytest.mark.integration


SR = "run-1-step-a"


def env(ns: str, **extra: str) -> dict[str, str]:
    return {"BUBU_STEPRUN_NAME": SR, "BUBU_STEPRUN_NAMESPACE": ns, **extra}


async def test_signals_are_summarised_sequenced_and_survive_a_restart(
    admin_kube, as_identity, engram_runner_identity, k8s_namespace
):
    async with as_identity(engram_runner_identity, env(k8s_namespace)):
        assert await emit_signal("state", {"token": "sk-live-secret", "n": 1}) == 1
        assert await emit_signal("state", {"n": 2}) == 2
        assert await emit_text_signal("log", "hello world", sample_bytes=5) == 3
    # a restarted process: new client, new scope, no memory of the counter
    async with as_identity(engram_runner_identity, env(k8s_namespace)):
        assert await emit_signal("state", {"n": 3}) == 4
        events = await replay_signals(since_seq=1)
    assert [e.seq for e in events] == [2, 3, 4]
    status = (await admin_kube.get(STEP_RUN, SR))["status"]
    assert "sk-live-secret" not in str(status) and "token" not in str(status["signals"])
    assert status["signals"]["state"]["redacted"] is True
    assert status["signals"]["log"]["sample"] == {"text": "hello", "truncated": True}
    assert [e["seq"] for e in status["signalEvents"]] == [1, 2, 3, 4]


async def test_concurrent_processes_never_lose_or_reuse_a_seq(
    admin_kube, engram_runner_identity, k8s_namespace
):
    import asyncio

    from bubu import _scope
    from bubu._runtime.sources import MappingSource

    async def emitter(tag: str) -> list[int]:
        async with await KubeClient.connect(
            kubeconfig=str(engram_runner_identity.kubeconfig_path), namespace=k8s_namespace
        ) as kube:
            with _scope.activate(
                _scope.RunScope(source=MappingSource(env(k8s_namespace)), kube=kube)
            ):
                return [await emit_signal(tag, i) for i in range(5)]

    a, b = await asyncio.gather(emitter("a"), emitter("b"))
    assert sorted(a + b) == list(range(1, 11))
    status = (await admin_kube.get(STEP_RUN, SR))["status"]
    assert len(status["signalEvents"]) == 10


async def test_oversized_summary_is_refused(
    admin_kube, as_identity, engram_runner_identity, k8s_namespace
):
    async with as_identity(
        engram_runner_identity, env(k8s_namespace, BUBU_SIGNAL_MAX_PAYLOAD_BYTES="40")
    ):
        with pytest.raises(SignalError, match="exceeds 40 bytes"):
            await emit_signal("state", {"a": 1})
