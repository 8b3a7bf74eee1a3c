"""Twin runs: one batch step run by the Go SDK and by bubu, StepRun status compared.

See docs/contract/batch-lifecycle.md#steps, docs/contract/steprun-status.md#merge-rules.

The Go side is the ``batch`` program, a Go batch engram started as a process with the env the
real operator put in the step's Job (``workloads.pod_env``: the Job's pod never starts, the
test process plays it); the bubu side is :class:`TwinBatch`, the same engram in Python, run by
``start_batch`` with its own namespace's Job env. Both act as the engram-runner ServiceAccount
the operator made for StoryRun ``run-1``. Once the operator has taken each result into its
StoryRun, the test compares the exit codes and the whole StepRun status.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

import bubu
from bubu._k8s.resources import STEP_RUN
from bubu._runtime.parse import parse_go_duration
from bubu._runtime.sources import MappingSource
from bubu._signals import emit_signal
from bubu.errors import EngramError
from tests._controlplane import workloads
from tests.interop._twins import assert_same, corpus, deep, differences, normalize, run_go
from tests.interop.conftest import SR, Twins

pytestmark = [pytest.mark.integration, pytest.mark.interop]


class TwinBatch(bubu.BatchEngram[dict, dict]):
    """The Python twin of ``tests/interop/cmd/batch``: does what its inputs ask."""

    async def process(self, ctx: bubu.ExecutionContext, inputs: dict[str, Any]) -> bubu.Result:
        mode = inputs.get("mode")
        if mode == "succeed":
            return bubu.Result(inputs.get("output"))
        if mode == "fail":
            raise RuntimeError(inputs["message"])
        if mode == "sleep":
            await asyncio.sleep(parse_go_duration(inputs["sleep"]))
            return bubu.Result(inputs.get("output"))
        if mode == "structured":
            e = inputs["error"]
            raise EngramError(
                e["message"],
                type=e["type"],
                retryable=e.get("retryable"),
                exit_class=e.get("exitClass"),
                code=e.get("code"),
                details=e.get("details"),
            )
        if mode == "signal":
            await emit_signal(inputs["key"], inputs["value"])
            return bubu.Result(inputs.get("output"))
        raise ValueError(f"unknown mode {mode!r}")


def _env(job: dict[str, str], ident: Any, inputs: dict[str, Any], **extra: str) -> dict[str, str]:
    """The env the operator put in the step's Job, the pod's ServiceAccount and the input."""
    return {
        **job,
        "KUBECONFIG": str(ident.kubeconfig_path),
        "BUBU_TRIGGER_DATA": json.dumps(inputs),
        **extra,
    }


STRUCTURED = {
    "type": "validation_error",
    "message": "order <42> & co: quantity must be positive",
    "retryable": False,
    "exitClass": "terminal",
    "code": "E_QTY",
    "details": {"field": "qty", "got": -1, "limit": 1e21, "note": "\u2028"},
}

CASES: dict[str, tuple[dict[str, Any], dict[str, str]]] = {
    "success": ({"mode": "succeed", "output": corpus(1)[0]}, {}),
    "success-nested": ({"mode": "succeed", "output": corpus(2)[1]}, {}),
    "success-no-output": ({"mode": "succeed"}, {}),
    "failure": ({"mode": "fail", "message": "card declined <&> \u2028"}, {}),
    "structured": ({"mode": "structured", "error": STRUCTURED}, {}),
    "structured-retryable": (
        {
            "mode": "structured",
            "error": {"type": "execution_error", "message": "upstream 503", "retryable": True},
        },
        {},
    ),
    "structured-rate-limited": (
        {
            "mode": "structured",
            "error": {"type": "execution_error", "message": "429", "exitClass": "rateLimited"},
        },
        {},
    ),
    "timeout": ({"mode": "sleep", "sleep": "30s"}, {"BUBU_STEP_TIMEOUT": "600ms"}),
    # deeper than any BUBU_MAX_RECURSION_DEPTH the operator injects: hydration refuses it
    "too-deep": ({"mode": "succeed", "output": deep(70)}, {}),
    "signal": (
        {"mode": "signal", "key": "progress", "value": {"pct": 50.0}, "output": {"ok": True}},
        {},
    ),
}

#: Deliberate differences (docs/differences.md), by case: paths whose values may differ.
EXPECTED: dict[str, set[str]] = {
    # bubu keeps JSON integers as int (Go decodes inputs into float64), so 2**53 + 1 survives
    "success": {"$.output.a11"},
    # Go lowercases the class before comparing it with "rateLimited" and drops it (a Go bug
    # bubu fixes, docs/differences.md)
    "structured-rate-limited": {"$.exitClass", "$.error.exitClass", "$.error.retryable"},
    # bubu's StorageError declares its type (docs/differences.md, "Error types from bubu
    # exceptions"); Go's substring rules call the same hydration failure an execution error
    "too-deep": {"$.error.type"},
    # bubu prefixes a plain exception's text with its type ("RuntimeError: ...")
    "failure": {"$.error.message", "$.lastFailureMsg"},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_batch_step_status(
    case: str,
    go_bin: Path,
    twins: Twins,
    admin_in: Any,
) -> None:
    inputs, extra = CASES[case]
    py_ns, go_ns = twins.py, twins.go
    go_ident, py_ident = twins.runner(go_ns), twins.runner(py_ns)
    go_job, py_job = twins.job_env(go_ns), twins.job_env(py_ns)

    go_code, _, go_err = await run_go(
        go_bin, "batch", env=_env(go_job, go_ident, inputs, **extra), expect=None
    )
    py_code = await bubu.start_batch(
        TwinBatch(), source=MappingSource(_env(py_job, py_ident, inputs, **extra))
    )
    assert py_code == go_code, go_err[-2000:]

    # the operator takes each step's result into its StoryRun: let it finish on both sides
    for ns in (py_ns, go_ns):
        await workloads.await_object(
            twins.cp,
            workloads.collection("storyruns", ns),
            "run-1",
            lambda r: (r.get("status") or {}).get("phase") not in (None, "", "Pending", "Running"),
            timeout=60,
            what=f"StoryRun {ns}/run-1 finished",
        )
    go_status = (await (await admin_in(go_ns)).get(STEP_RUN, SR))["status"]
    py_status = (await (await admin_in(py_ns)).get(STEP_RUN, SR))["status"]
    for status in (go_status, py_status):
        # duration is wall time: a timestamp in all but name
        if "duration" in status:
            status["duration"] = "<duration>"
        # the operator's own conditions read whichever reconcile ran last ("Job created" or
        # "Job exists; resuming"): its timing, not what either SDK wrote
        status.pop("conditions", None)
    diff = differences(normalize(go_status, {go_ns: "<ns>"}), normalize(py_status, {py_ns: "<ns>"}))
    allowed = EXPECTED.get(case, set())
    unexpected = [d for d in diff if d.split(":", 1)[0] not in allowed]
    assert not unexpected, "StepRun status: Go and Python twins differ:\n" + "\n".join(diff)
    if case == "failure":
        assert go_status["lastFailureMsg"] == "card declined <&> \u2028"
        assert py_status["lastFailureMsg"] == "RuntimeError: card declined <&> \u2028"
    elif case == "too-deep":
        assert go_code == 1 and go_status["phase"] == "Failed"
        assert "maximum recursion depth" in go_status["lastFailureMsg"]
        assert (go_status["error"]["type"], py_status["error"]["type"]) == (
            "execution_error",
            "storage_error",
        )
    elif case == "structured-rate-limited":
        assert (go_status["exitClass"], go_status["error"]["retryable"]) == ("terminal", False)
        assert (py_status["exitClass"], py_status["error"]["retryable"]) == ("rateLimited", True)
    elif case == "success":
        assert go_status["output"]["a11"] == 2**53 and py_status["output"]["a11"] == 2**53 + 1
    else:
        assert_same(go_status, py_status, go_names={go_ns: "<ns>"}, py_names={py_ns: "<ns>"})
