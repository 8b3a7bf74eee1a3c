"""StoryTrigger input offload, Python against Go, on the real kube-apiserver and file store.

The Go SDK (``sdk.StartStoryWithToken``, run by ``tests/interop/cmd/trigger``) and bubu's
``start_story_with_token`` submit the same token and inputs as the operator's Impulse
ServiceAccount, each with its own file store. Go's StoryTrigger is created first; bubu's
request then meets it and must be *the same request* (name, inputs with the same storage
refs, input hash), or bubu would report an identity conflict. Both stores must hold the same
objects under the same keys, byte for byte: the key carries a fingerprint of the inputs' Go
JSON, so floats, ``<>&`` and non-ASCII text are in the inputs on purpose.

The real operator may decide the trigger or not (it reads offloaded inputs from its own store;
the 1 s wait usually ends first); either way Go's trigger is the one that exists, and bubu's
identical request is a redelivery of it, never an identity conflict.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

import tests.conftest as _root_conftest
from bubu import _scope
from bubu._k8s.client import KubeClient
from bubu._runtime.sources import MappingSource
from bubu._triggers import start_story_with_token, storage_input_key
from bubu.errors import TriggerPendingError
from tests._controlplane import rbac

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        impulse_identity,
        interop_bin,
        k8s_namespace,
        make_identity,
    )

pytestmark = [pytest.mark.integration, pytest.mark.interop]

INPUTS: dict[str, Any] = {
    "score": 0.1,
    "big": 1e21,
    "tiny": 1e-7,
    "count": 3,
    "title": "<b>Tom & Jerry</b> \u2028 é 日本",
    "doc": {"body": "x" * 400, "tags": ["a<b", "c&d"]},
    "rows": [{"id": i, "text": "row-" + "y" * 60} for i in range(6)],
}
TOKEN = "delivery-7f3c<&>"


def _env(ns: str, identity: rbac.Identity, store: Path) -> dict[str, str]:
    return {
        "KUBECONFIG": str(identity.kubeconfig_path),
        "BUBU_POD_NAMESPACE": ns,
        "BUBU_IMPULSE_NAME": "hook",
        "BUBU_IMPULSE_NAMESPACE": ns,
        "BUBU_STORAGE_PROVIDER": "file",
        "BUBU_STORAGE_PATH": str(store),
        "BUBU_MAX_INLINE_SIZE": "200",
        "BUBU_K8S_OPERATION_TIMEOUT": "1s",
        "BUBU_TRIGGER_RETRY_MAX_ATTEMPTS": "1",
    }


def _tree(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


async def test_offloaded_trigger_inputs_match_go_byte_for_byte(
    controlplane: Any,
    k8s_namespace: str,
    impulse_identity: rbac.Identity,
    interop_bin: Path,
    tmp_path: Path,
) -> None:
    go_store, py_store = tmp_path / "go", tmp_path / "py"
    go_store.mkdir()
    py_store.mkdir()
    go_env = {k: v for k, v in os.environ.items() if not k.startswith("BUBU_")}
    go_env.update(_env(k8s_namespace, impulse_identity, go_store))
    out = await asyncio.to_thread(
        subprocess.run,
        [str(interop_bin / "trigger")],
        input=json.dumps({"story": "story", "token": TOKEN, "inputs": INPUTS}),
        capture_output=True,
        text=True,
        env=go_env,
        timeout=60,
        check=True,
    )
    go_files = _tree(go_store)
    assert go_files, f"Go offloaded nothing: {out.stdout} {out.stderr}"

    env = _env(k8s_namespace, impulse_identity, py_store)
    async with await KubeClient.connect(
        kubeconfig=env["KUBECONFIG"], namespace=k8s_namespace
    ) as kube:
        scope = _scope.RunScope(source=MappingSource(env), kube=kube)
        with _scope.activate(scope):
            # Same name as Go's trigger: a redelivery (or still pending), never a conflict,
            # means an identical request.
            try:
                result = await start_story_with_token("story", TOKEN, INPUTS)
            except TriggerPendingError:
                pass
            else:
                assert result.deduplicated
    with controlplane.client() as admin:
        listed = admin.get(
            f"/apis/runs.bubustack.io/v1alpha1/namespaces/{k8s_namespace}/storytriggers"
        )
    triggers = listed.json()["items"]
    assert len(triggers) == 1
    spec = triggers[0]["spec"]

    assert _tree(py_store) == go_files
    key = storage_input_key(k8s_namespace, "story", TOKEN, INPUTS)
    assert all(path.startswith(f"inputs/{k8s_namespace}/{key}/") for path in go_files)
    # Go's trigger carries refs to the objects both sides wrote, with the story's schema id.
    found = list(_refs(spec["inputs"]))
    assert found and all(ref["$bubuStorageRef"] in go_files for ref in found)
    assert {ref["$bubuStorageSchema"] for ref in found} == {
        f"bubu://story/{k8s_namespace}/story/inputs"
    }


def _refs(value: Any) -> Any:
    if isinstance(value, dict):
        if "$bubuStorageRef" in value:
            yield value
            return
        for item in value.values():
            yield from _refs(item)
    elif isinstance(value, list):
        for item in value:
            yield from _refs(item)
