"""Issue 9 end to end: a batch engram as the pod of the real operator's Job.

The operator reconciles the catalog of ``test_schema_lookup`` (EngramTemplates with input and
output schemas, Engrams, Stories, StoryRuns) into StepRuns, Jobs and engram-runner
ServiceAccounts with the Roles it generates. The engram runs as a subprocess (``python
engram.py`` under ``bubu.run``) with the env the operator put in the Job, as that
ServiceAccount, on the file store or on a real S3 server (SeaweedFS). Every outcome class of the
payload stages ends in the StepRun status that says so:

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
from tests._controlplane import rbac, workloads
from tests._controlplane.server import ControlPlane
from tests.integration.test_schema_lookup import CATALOG, _grant_templates, catalog
from tests.integration.test_status import read_step_run

if "tests._controlplane.fixtures" not in getattr(_root_conftest, "pytest_plugins", ()):
    from tests._controlplane.fixtures import (  # noqa: F401
        controlplane,
        k8s_namespace,
        operator,
        s3_server,
    )

pytestmark = pytest.mark.integration

__all__ = ["catalog"]  # the fixture, re-exported for this module's tests

ROOT = Path(__file__).resolve().parents[2]

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


class Pod:
    """The pod of one operator-made Job: its env and its ServiceAccount."""

    def __init__(self, step_run: str, env: dict[str, str], identity: rbac.Identity) -> None:
        self.step_run = step_run
        self.env = env
        self.identity = identity


def _pod(cp: ControlPlane, ns: str, kind: str) -> Pod:
    """``plain``: the runner Role as generated; ``greeter``: plus ``get engrams`` from its
    template's ``execution.rbac``."""
    identity = workloads.engram_runner(cp, ns, f"{kind}-run")
    step_run = f"{kind}-run-greet"
    workloads.step_run(
        cp, ns, step_run, lambda obj: (obj.get("status") or {}).get("phase") == "Running"
    )
    env = workloads.pod_env(cp, ns, step_run, pod_name=f"{step_run}-pod")
    assert env["BUBU_STEPRUN_NAME"] == step_run
    return Pod(step_run, env, identity)


@pytest.fixture
def plain(controlplane: ControlPlane, k8s_namespace: str, catalog: dict[str, str]) -> Pod:
    """The pod of an engram whose runner Role is the operator's, unchanged."""
    return _pod(controlplane, k8s_namespace, "plain")


@pytest.fixture
def granted(
    controlplane: ControlPlane, k8s_namespace: str, catalog: dict[str, str]
) -> Iterator[Pod]:
    """The ``greeter`` pod (``get engrams`` from its template) plus a ClusterRole with ``get
    engramtemplates``: what a user grants to get schema validation in the pod
    (docs/templates.md)."""
    pod = _pod(controlplane, k8s_namespace, "greeter")
    grant = _grant_templates(controlplane, pod.identity, engrams=True)
    next(grant)
    yield pod
    next(grant, None)


def run_engram(
    tmp_path: Path, pod: Pod, inputs: dict[str, Any], **extra: str
) -> subprocess.CompletedProcess[str]:
    """``python engram.py`` with the env of the operator's Job (storage settings replaced by the
    test's), as its ServiceAccount, with ``inputs`` as the step's input."""
    script = tmp_path / "engram.py"
    script.write_text(ENGRAM)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BUBU_", "AWS_"))}
    env.update(
        {
            k: v
            for k, v in pod.env.items()
            if not k.startswith(("BUBU_STORAGE_", "BUBU_S3_", "AWS_"))
        }
    )
    env.update(
        {
            "KUBECONFIG": str(pod.identity.kubeconfig_path),
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


def status_of(cp: ControlPlane, ns: str, pod: Pod) -> dict[str, Any]:
    return dict(read_step_run(cp, ns, pod.step_run)["status"])


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
    cp: ControlPlane, ns: str, tmp_path: Path, pod: Pod, storage: dict[str, str]
) -> None:
    # Both the stored input and the padding are above the operator's BUBU_MAX_INLINE_SIZE
    # (4096 in its Job env), so each goes to storage on its own.
    limit = int(pod.env["BUBU_MAX_INLINE_SIZE"])
    doc = "The quarterly report. " * (limit // 10)
    ref = await put(storage, doc, f"{ns}/fetch-1")
    out = run_engram(tmp_path, pod, {"name": "Ada", "count": limit + 1, "doc": ref}, **storage)
    assert out.returncode == 0, out.stdout + out.stderr
    st = status_of(cp, ns, pod)
    assert st["phase"] == "Succeeded" and st["exitClass"] == "success"
    output = st["output"]
    assert output["greeting"] == "Hello, Ada!"
    pad = {
        "$bubuStorageRef": f"outputs/{ns}/{pod.step_run}/pad.json",
        "$bubuStorageContentType": "text/plain",
        "$bubuStorageSchema": f"bubu://engram/{ns}/plain/output",
    }
    if pod.env.get("BUBU_ENGRAM_VERSION"):
        pad["$bubuStorageSchemaVersion"] = pod.env["BUBU_ENGRAM_VERSION"]
    assert output["pad"] == pad
    assert output["doc"]["$bubuStorageRef"] == f"outputs/{ns}/{pod.step_run}/doc.json"
    assert await read(storage, output) == {
        "greeting": "Hello, Ada!",
        "doc": doc,
        "pad": "p" * (limit + 1),
    }
    # The runner Role cannot read the Engram: one debug line, and the step ran unvalidated.
    skipped = _schema_lines(out)
    assert len(skipped) == 1 and skipped[0]["level"] == "DEBUG", skipped
    assert skipped[0]["msg"].startswith("Schema validation skipped: Engram lookup forbidden")
    # Captured logs went to the store; status.logs points at them.
    story_run = pod.env["BUBU_STORYRUN_ID"]
    assert st["logs"]["$bubuStorageRef"].startswith(f"{ns}/logs/{story_run}/greet/{pod.step_run}/")
    assert b"Starting batch execution" in await blob(storage, st["logs"]["$bubuStorageRef"])
    # The operator takes the result into the StoryRun.
    workloads.wait_storyrun(cp, ns, "plain-run", "Succeeded", steps={"greet": "Succeeded"})


async def test_file_store_refs_in_offload_out(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, tmp_path: Path
) -> None:
    store = tmp_path / "store"
    await _succeeds_with_refs_and_offload(
        controlplane, k8s_namespace, tmp_path, plain, file_env(store)
    )


@pytest.mark.interop
async def test_s3_store_refs_in_offload_out(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, s3_server: Any, tmp_path: Path
) -> None:
    pytest.importorskip("obstore", reason="the s3 provider needs the bubu[s3] extra")
    await _succeeds_with_refs_and_offload(
        controlplane, k8s_namespace, tmp_path, plain, s3_server.env()
    )


async def test_inputs_breaking_the_schema_are_a_terminal_validation_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    catalog: dict[str, str],
    granted: Pod,
    tmp_path: Path,
) -> None:
    out = run_engram(tmp_path, granted, {"count": "many"})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, granted)
    failed(st, "validation_error", "terminal")
    assert st["lastFailureMsg"] == (
        "input schema validation failed: object is invalid against EngramTemplate "
        f"{catalog['engram_template']} inputs schema: "
        "[$.name: missing required property; $.count: expected integer]"
    )
    assert "output" not in st


async def test_an_output_breaking_the_schema_is_a_terminal_validation_error(
    controlplane: ControlPlane, k8s_namespace: str, granted: Pod, tmp_path: Path
) -> None:
    out = run_engram(tmp_path, granted, {"name": "bad-output"})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, granted)
    failed(st, "validation_error", "terminal")
    assert st["lastFailureMsg"].startswith("output schema validation failed: ")
    assert "$.greeting: missing required property" in st["lastFailureMsg"]


async def test_valid_inputs_and_output_pass_the_schema(
    controlplane: ControlPlane, k8s_namespace: str, granted: Pod, tmp_path: Path
) -> None:
    out = run_engram(tmp_path, granted, {"name": "Ada", "count": 1})
    assert out.returncode == 0, out.stdout + out.stderr
    assert _schema_lines(out) == []  # validated, not skipped
    st = status_of(controlplane, k8s_namespace, granted)
    assert st["phase"] == "Succeeded" and st["output"]["greeting"] == "Hello, Ada!"


async def test_a_template_that_cannot_be_read_is_a_retryable_execution_error(
    controlplane: ControlPlane,
    k8s_namespace: str,
    catalog: dict[str, str],
    granted: Pod,
    tmp_path: Path,
) -> None:
    with controlplane.client() as c:
        r = c.delete(f"{CATALOG}/engramtemplates/{catalog['engram_template']}")
        assert r.status_code < 300, r.text
    out = run_engram(tmp_path, granted, {"name": "Ada"})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, granted)
    failed(st, "execution_error", "retry")
    assert st["lastFailureMsg"].startswith(
        "input schema resolution failed: fetch engram template: "
    )


async def test_a_missing_object_is_a_terminal_storage_error_naming_the_ref(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, tmp_path: Path
) -> None:
    ref = f"outputs/{k8s_namespace}/fetch-9/output.json"
    out = run_engram(
        tmp_path,
        plain,
        {"name": "Ada", "doc": {"$bubuStorageRef": ref}},
        **file_env(tmp_path / "store"),
    )
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, plain)
    failed(st, "storage_error", "terminal")
    assert st["lastFailureMsg"] == (
        f"failed to hydrate inputs: failed to read offloaded data from '{ref}': failed to open "
        f"object '{ref}': object not found"
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.interop
async def test_an_unreachable_store_is_a_retryable_storage_error(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, s3_server: Any, tmp_path: Path
) -> None:
    pytest.importorskip("obstore", reason="the s3 provider needs the bubu[s3] extra")
    storage = s3_server.env(
        BUBU_STORAGE_S3_ENDPOINT=f"http://127.0.0.1:{_closed_port()}",
        BUBU_S3_MAX_RETRIES="0",
        BUBU_STORAGE_TIMEOUT="10s",
    )
    ref = f"outputs/{k8s_namespace}/fetch-1/output.json"
    out = run_engram(tmp_path, plain, {"name": "Ada", "doc": {"$bubuStorageRef": ref}}, **storage)
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, plain)
    failed(st, "storage_error", "retry")
    assert st["lastFailureMsg"].startswith(
        f"failed to hydrate inputs: failed to read offloaded data from '{ref}'"
    )
    assert s3_server.secret_key not in json.dumps(st) + out.stdout + out.stderr


async def test_a_configmap_ref_under_the_runner_role_says_which_verb_is_missing(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, tmp_path: Path
) -> None:
    out = run_engram(tmp_path, plain, {"name": {"$bubuConfigMapRef": "settings:name"}})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, plain)
    failed(st, "storage_error", "terminal")
    assert st["lastFailureMsg"] == (
        f"failed to hydrate inputs: failed to read ConfigMap {k8s_namespace}/settings: "
        'forbidden (the pod\'s Role needs "get" on configmaps)'
    )


async def test_an_oversized_output_with_storage_off_fails_as_go(
    controlplane: ControlPlane, k8s_namespace: str, plain: Pod, tmp_path: Path
) -> None:
    limit = int(plain.env["BUBU_MAX_INLINE_SIZE"])
    out = run_engram(tmp_path, plain, {"name": "A", "count": limit})
    assert out.returncode == 1
    st = status_of(controlplane, k8s_namespace, plain)
    failed(st, "storage_error", "terminal")
    size = len(
        json.dumps({"doc": "", "greeting": "Hello, A!", "pad": "p" * limit}, separators=(",", ":"))
    )
    assert st["lastFailureMsg"].startswith(
        f"failed to dehydrate output: output size {size} bytes exceeds inline limit {limit} and "
        "storage is disabled"
    )
