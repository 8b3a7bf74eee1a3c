"""Issue 9 end to end: a batch engram as a pod runs it, against the real kube-apiserver.

The engram runs as a subprocess (``python engram.py`` under ``bubu.run``) with the environment
the operator injects, as the engram-runner ServiceAccount (crds.md 7.3), on the file store or on
a real S3 server (SeaweedFS). Every outcome class of the payload stages ends in the StepRun
status that says so:

* storage refs in the inputs hydrated, a large output offloaded (file and S3), Succeeded;
* the Role has no ``get`` on Engrams/EngramTemplates: validation skipped with one debug line;
* with the grants: inputs and outputs that break the EngramTemplate schema are terminal
  ``validation_error``s listing every violation; a template that cannot be read is a
  retryable ``execution_error``;
* a missing object is a terminal ``storage_error`` naming the ref; an unreachable store a
  retryable one; a ConfigMap ref under the runner Role a terminal one saying which verb the
  Role lacks; an oversized output with storage off Go's storage-off error.
"""

from __future__ import annotations

import json
import os
import secrets
import socket
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import tests.conftest as _root_conftest
from bubu._runtime.env import load_env
from bubu._runtime.sources import MappingSource
from bubu._storage.manager import StorageManager
from tests._controlplane import rbac
from tests._controlplane.server import ControlPlane
from tests.integration.test_schema_lookup import GET_ENGRAMS, _grant_templates, catalog
from tests.integration.test_status import read_step_run

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        engram_runner_identity,
        k8s_namespace,
        make_identity,
        s3_server,
    )

pytestmark = pytest.mark.integration

__all__ = ["catalog"]  # the fixture, re-exported for this module's tests

ROOT = Path(__file__).resolve().parents[2]
RUNS = "/apis/runs.bubustack.io/v1alpha1"
CORE = "/apis/bubustack.io/v1alpha1"

ENGRAM = textwrap.dedent("""
    import msgspec, bubu

    class Inputs(msgspec.Struct):
        name: str = ""
        count: int = 0
        doc: str = ""

    class Greeter(bubu.BatchEngram[dict, Inputs]):
        async def process(self, ctx, inputs):
            if inputs.name == "bad-output":
                return bubu.Result({"farewell": 1})
            return bubu.Result(
                {"greeting": f"Hello, {inputs.name}!", "doc": inputs.doc, "pad": "p" * inputs.count}
            )

    bubu.run(bubu.start_batch(Greeter()))
""")


@pytest.fixture
def step_run(controlplane: ControlPlane, k8s_namespace: str, catalog: dict[str, str]) -> str:
    """The catalog's StepRun ``step-1`` (engramRef ``greeter``), marked Running."""
    with controlplane.client() as c:
        r = c.patch(
            f"{RUNS}/namespaces/{k8s_namespace}/stepruns/step-1/status",
            json={"status": {"phase": "Running", "retries": 0}},
            headers={"Content-Type": "application/merge-patch+json"},
        )
        assert r.status_code < 300, r.text
    return "step-1"


@pytest.fixture
def granted(
    controlplane: ControlPlane, k8s_namespace: str, make_identity: Any
) -> Iterator[rbac.Identity]:
    """The runner Role plus ``get engrams`` and a ClusterRole with ``get engramtemplates``:
    what a user grants to get schema validation in the pod (docs/templates.md)."""
    identity = make_identity(rbac.engram_runner_rules(GET_ENGRAMS))
    grant = _grant_templates(controlplane, identity)
    next(grant)
    yield identity
    next(grant, None)


def run_engram(
    tmp_path: Path,
    ns: str,
    identity: rbac.Identity,
    inputs: dict[str, Any],
    **extra: str,
) -> subprocess.CompletedProcess[str]:
    """``python engram.py`` with the operator's environment for StepRun ``step-1``."""
    script = tmp_path / "engram.py"
    script.write_text(ENGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "AWS_"))}
    env.update(
        {
            "KUBECONFIG": str(identity.kubeconfig_path),
            "BUBU_POD_NAMESPACE": ns,
            "BUBU_STEPRUN_NAME": "step-1",
            "BUBU_STEPRUN_NAMESPACE": ns,
            "BUBU_STORYRUN_ID": "run-1",
            "BUBU_STORY_NAME": "story",
            "BUBU_STEP_NAME": "greet",
            "BUBU_ENGRAM_NAME": "greeter",
            "BUBU_ENGRAM_VERSION": "1.0.0",
            "BUBU_MAX_RECURSION_DEPTH": "32",
            "BUBU_TRIGGER_DATA": json.dumps(inputs),
            "BUBU_DEBUG": "true",
        }
    )
    env.update(extra)
    return subprocess.run(
        [sys.executable, str(script)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )


def file_env(store: Path) -> dict[str, str]:
    return {"BUBU_STORAGE_PROVIDER": "file", "BUBU_STORAGE_PATH": str(store)}


def status_of(cp: ControlPlane, ns: str) -> dict[str, Any]:
    return dict(read_step_run(cp, ns, "step-1")["status"])


def failed(st: dict[str, Any], error_type: str, exit_class: str) -> None:
    assert st["phase"] == "Failed" and st["exitCode"] == 1, st
    assert st["exitClass"] == exit_class and st["error"]["exitClass"] == exit_class
    assert st["error"]["type"] == error_type
    assert st["error"]["retryable"] is (exit_class == "retry")
    assert st["error"]["message"] == st["lastFailureMsg"]


async def put(env: dict[str, str], value: Any, ident: str) -> dict[str, str]:
    manager = StorageManager.from_env(load_env(MappingSource(env)))
    try:
        return await manager.offload_value(value, ident)
    finally:
        await manager.aclose()


async def read(env: dict[str, str], ref: dict[str, str]) -> Any:
    manager = StorageManager.from_env(load_env(MappingSource(env)))
    try:
        return await manager.hydrate(ref)
    finally:
        await manager.aclose()


async def blob(env: dict[str, str], path: str) -> bytes:
    manager = StorageManager.from_env(load_env(MappingSource(env)))
    try:
        return await manager.read_blob(path)
    finally:
        await manager.aclose()


def _schema_lines(out: subprocess.CompletedProcess[str]) -> list[dict[str, Any]]:
    lines = []
    for line in (out.stdout + out.stderr).splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and str(record.get("msg", "")).startswith(
            "Schema validation skipped"
        ):
            lines.append(record)
    return lines


async def _succeeds_with_refs_and_offload(
    cp: ControlPlane, ns: str, tmp_path: Path, identity: rbac.Identity, storage: dict[str, str]
) -> None:
    ref = await put(storage, "The quarterly report. " * 100, f"{ns}/fetch-1")
    out = run_engram(
        tmp_path,
        ns,
        identity,
        {"name": "Ada", "count": 3000, "doc": {**ref}},
        **storage,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    st = status_of(cp, ns)
    assert st["phase"] == "Succeeded" and st["exitClass"] == "success"
    output = st["output"]
    assert output["greeting"] == "Hello, Ada!"
    assert output["pad"] == {
        "$bubuStorageRef": f"outputs/{ns}/step-1/pad.json",
        "$bubuStorageContentType": "text/plain",
        "$bubuStorageSchema": f"bubu://engram/{ns}/greeter/output",
        "$bubuStorageSchemaVersion": "1.0.0",
    }
    assert output["doc"]["$bubuStorageRef"] == f"outputs/{ns}/step-1/doc.json"
    assert await read(storage, output) == {
        "greeting": "Hello, Ada!",
        "doc": "The quarterly report. " * 100,
        "pad": "p" * 3000,
    }
    # The runner Role cannot read the Engram: one debug line, and the step ran unvalidated.
    skipped = _schema_lines(out)
    assert len(skipped) == 1 and skipped[0]["level"] == "DEBUG", skipped
    assert skipped[0]["msg"].startswith("Schema validation skipped: Engram lookup forbidden")
    # Captured logs went to the store; status.logs points at them.
    assert st["logs"]["$bubuStorageRef"].startswith(f"{ns}/logs/run-1/greet/step-1/")
    assert b"Starting batch execution" in await blob(storage, st["logs"]["$bubuStorageRef"])


async def test_file_store_refs_in_offload_out(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    tmp_path: Path,
) -> None:
    store = tmp_path / "store"
    await _succeeds_with_refs_and_offload(
        controlplane, k8s_namespace, tmp_path, engram_runner_identity, file_env(store)
    )


async def test_s3_store_refs_in_offload_out(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    s3_server: Any,
    tmp_path: Path,
) -> None:
    pytest.importorskip("obstore", reason="the s3 provider needs the bubu[s3] extra")
    await _succeeds_with_refs_and_offload(
        controlplane, k8s_namespace, tmp_path, engram_runner_identity, s3_server.env()
    )


async def test_inputs_breaking_the_schema_are_a_terminal_validation_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    catalog: dict[str, str],
    granted: rbac.Identity,
    tmp_path: Path,
) -> None:
    out = run_engram(tmp_path, k8s_namespace, granted, {"count": "many"})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "validation_error", "terminal")
    assert st["lastFailureMsg"] == (
        "input schema validation failed: object is invalid against EngramTemplate "
        f"{catalog['engram_template']} inputs schema: "
        "[$.name: missing required property; $.count: expected integer]"
    )
    assert "output" not in st


async def test_an_output_breaking_the_schema_is_a_terminal_validation_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    catalog: dict[str, str],
    granted: rbac.Identity,
    tmp_path: Path,
) -> None:
    out = run_engram(tmp_path, k8s_namespace, granted, {"name": "bad-output"})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "validation_error", "terminal")
    assert st["lastFailureMsg"].startswith("output schema validation failed: ")
    assert "$.greeting: missing required property" in st["lastFailureMsg"]
    # Granted and valid: the same engram succeeds.
    ok = run_engram(tmp_path, k8s_namespace, granted, {"name": "Ada", "count": 1})
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert _schema_lines(ok) == []


async def test_a_template_that_cannot_be_read_is_a_retryable_execution_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    granted: rbac.Identity,
    tmp_path: Path,
) -> None:
    with controlplane.client() as c:
        r = c.post(
            f"{CORE}/namespaces/{k8s_namespace}/engrams",
            json={
                "apiVersion": "bubustack.io/v1alpha1",
                "kind": "Engram",
                "metadata": {"name": "orphan"},
                "spec": {"templateRef": {"name": f"gone-{secrets.token_hex(3)}"}},
            },
        )
        assert r.status_code < 300, r.text
    out = run_engram(tmp_path, k8s_namespace, granted, {"name": "Ada"}, BUBU_ENGRAM_NAME="orphan")
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "execution_error", "retry")
    assert st["lastFailureMsg"].startswith(
        "input schema resolution failed: fetch engram template: "
    )


async def test_a_missing_object_is_a_terminal_storage_error_naming_the_ref(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    tmp_path: Path,
) -> None:
    ref = f"outputs/{k8s_namespace}/fetch-9/output.json"
    out = run_engram(
        tmp_path,
        k8s_namespace,
        engram_runner_identity,
        {"name": "Ada", "doc": {"$bubuStorageRef": ref}},
        **file_env(tmp_path / "store"),
    )
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "storage_error", "terminal")
    assert st["lastFailureMsg"] == (
        f"failed to hydrate inputs: failed to read offloaded data from '{ref}': failed to open "
        f"object '{ref}': object not found"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_an_unreachable_store_is_a_retryable_storage_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    s3_server: Any,
    tmp_path: Path,
) -> None:
    pytest.importorskip("obstore", reason="the s3 provider needs the bubu[s3] extra")
    storage = s3_server.env(
        BUBU_STORAGE_S3_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        BUBU_S3_MAX_RETRIES="0",
        BUBU_STORAGE_TIMEOUT="10s",
    )
    ref = f"outputs/{k8s_namespace}/fetch-1/output.json"
    out = run_engram(
        tmp_path,
        k8s_namespace,
        engram_runner_identity,
        {"name": "Ada", "doc": {"$bubuStorageRef": ref}},
        **storage,
    )
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "storage_error", "retry")
    assert st["lastFailureMsg"].startswith(
        f"failed to hydrate inputs: failed to read offloaded data from '{ref}'"
    )
    assert s3_server.secret_key not in json.dumps(st) + out.stdout + out.stderr


async def test_a_configmap_ref_under_the_runner_role_says_which_verb_is_missing(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    tmp_path: Path,
) -> None:
    out = run_engram(
        tmp_path,
        k8s_namespace,
        engram_runner_identity,
        {"name": {"$bubuConfigMapRef": "settings:name"}},
    )
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "storage_error", "terminal")
    assert st["lastFailureMsg"] == (
        f"failed to hydrate inputs: failed to read ConfigMap {k8s_namespace}/settings: "
        'forbidden (the pod\'s Role needs "get" on configmaps)'
    )


async def test_an_oversized_output_with_storage_off_fails_as_go(
    controlplane: ControlPlane,
    k8s_namespace: str,
    step_run: str,
    engram_runner_identity: rbac.Identity,
    tmp_path: Path,
) -> None:
    out = run_engram(tmp_path, k8s_namespace, engram_runner_identity, {"name": "A", "count": 2000})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace)
    failed(st, "storage_error", "terminal")
    assert st["lastFailureMsg"].startswith(
        "failed to dehydrate output: output size 2042 bytes exceeds inline limit 1024 and "
        "storage is disabled"
    )
