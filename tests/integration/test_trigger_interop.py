"""The Go side of the trigger benchmark, checked: the Go SDK starts Stories on this control plane.

``tests/interop/cmd/triggerbench`` (used by ``benchmarks/bench_trigger_sdks.py``) calls the Go
SDK's public API only. Here it runs as shipped and with its client rate limit lifted
(``k8s.GetConfig()`` with ``QPS = -1``, ``k8s.NewClientForConfig``), with and without tokens,
against the real operator (its webhook admits them, its controller decides them); the
StoryTriggers it wrote must be the ones bubu writes for the same call (same name for a token,
same delivery identity).
"""

from __future__ import annotations

import asyncio
import json
import os
from typing import Any

import pytest

import tests.conftest as _root_conftest
from bubu._k8s import identity
from bubu._k8s.client import KubeClient
from bubu._k8s.resources import STORY_TRIGGER
from tests._controlplane import workloads

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        interop_bin,
        k8s_namespace,
    )

pytestmark = [pytest.mark.integration, pytest.mark.interop]


async def run_triggerbench(bin_dir: Any, kubeconfig: str, ns: str, *args: str) -> dict[str, Any]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BUBU_")},
        "KUBECONFIG": kubeconfig,
        "BUBU_TARGET_STORY_NAMESPACE": ns,
        "BUBU_K8S_OPERATION_TIMEOUT": "60s",
    }
    proc = await asyncio.create_subprocess_exec(
        str(bin_dir / "triggerbench"),
        "-story",
        "story",
        "-calls",
        "4",
        "-parallel",
        "2",
        *args,
        env=env,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    result: dict[str, Any] = json.loads(out)
    return result


@pytest.mark.parametrize("unthrottled", [False, True], ids=["shipped", "unthrottled"])
@pytest.mark.parametrize("tokens", [False, True], ids=["none", "token"])
async def test_go_sdk_starts_stories_like_bubu(
    operator: Any,
    admin_kube: KubeClient,
    controlplane: Any,
    interop_bin: Any,
    k8s_namespace: str,
    unthrottled: bool,
    tokens: bool,
) -> None:
    quick = workloads.story(steps=[{"name": "start", "type": "condition"}])
    workloads.seed(controlplane, k8s_namespace, quick)
    args = ["-token-prefix", "go"]
    if tokens:
        args.append("-tokens")
    if unthrottled:
        args.append("-unthrottled")
    result = await run_triggerbench(
        interop_bin, str(controlplane.admin_kubeconfig), k8s_namespace, *args
    )
    assert result["errors"] == 0, result["first_error"]
    assert result["calls"] == 4 and len(result["latencies_ms"]) == 4
    assert result["cpu_seconds"] > 0
    if tokens:
        # Warm-up "go--1" and the timed "go-0".."go-3": names bubu derives for the same tokens.
        for token in ("go--1", "go-0", "go-3"):
            name = identity.derive_story_trigger_name(k8s_namespace, "story", token, token)
            trigger = await admin_kube.get(STORY_TRIGGER, name)
            delivery = trigger["spec"]["deliveryIdentity"]
            assert (delivery["mode"], delivery["key"]) == ("token", token)
            assert trigger["status"]["decision"] == "Created"
