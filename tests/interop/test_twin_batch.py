"""Twin runs: one batch step run by the Go SDK and by bubu, StepRun status compared (c.1, c.2).

The Go side is the ``batch`` program, a Go batch engram started as a process with the
environment the operator injects into a StepRun pod; the bubu side is :class:`TwinBatch`, the
same engram in Python, run by ``start_batch`` with the same environment. Both act as the
engram-runner ServiceAccount of their namespace. After each run the test compares the exit
code and the whole StepRun status.
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
from tests._standins.fixtures import seed_step_run
from tests.interop._twins import assert_same, corpus, differences, normalize, run_go

pytestmark = pytest.mark.integration

SR = "run-1-step-a"


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


def _env(ns: str, ident: Any, inputs: dict[str, Any], **extra: str) -> dict[str, str]:
    """What the operator injects into a batch StepRun pod (go-sdk-core.md (b))."""
    return {
        "KUBECONFIG": str(ident.kubeconfig_path),
        "BUBU_EXECUTION_MODE": "batch",
        "BUBU_STEPRUN_NAME": SR,
        "BUBU_STEPRUN_NAMESPACE": ns,
        "BUBU_STORYRUN_ID": "run-1",
        "BUBU_STORY_NAME": "story",
        "BUBU_STEP_NAME": "step-a",
        "BUBU_ENGRAM_NAME": "twin",
        "BUBU_TRIGGER_DATA": json.dumps(inputs),
        "BUBU_STEP_CONFIG": "{}",
        "BUBU_STORAGE_PROVIDER": "none",
        "BUBU_MAX_RECURSION_DEPTH": "32",  # the operator's default for Jobs (b.2)
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
    # bubu fixes, spec README decision 5)
    "structured-rate-limited": {"$.exitClass", "$.error.exitClass", "$.error.retryable"},
    # bubu prefixes a plain exception's text with its type ("RuntimeError: ...")
    "failure": {"$.error.message", "$.lastFailureMsg"},
}


@pytest.mark.parametrize("case", list(CASES))
async def test_batch_step_status(
    case: str,
    go_bin: Path,
    k8s_namespace: str,
    go_namespace: str,
    identity_in: Any,
    admin_in: Any,
) -> None:
    inputs, extra = CASES[case]
    py_ns, go_ns = k8s_namespace, go_namespace
    for ns in (py_ns, go_ns):
        await seed_step_run(await admin_in(ns), SR)
    go_ident, py_ident = identity_in(go_ns, "engram"), identity_in(py_ns, "engram")

    go_code, _, go_err = await run_go(
        go_bin, "batch", env=_env(go_ns, go_ident, inputs, **extra), expect=None
    )
    py_code = await bubu.start_batch(
        TwinBatch(), source=MappingSource(_env(py_ns, py_ident, inputs, **extra))
    )
    assert py_code == go_code, go_err[-2000:]

    go_status = (await (await admin_in(go_ns)).get(STEP_RUN, SR))["status"]
    py_status = (await (await admin_in(py_ns)).get(STEP_RUN, SR))["status"]
    for status in (go_status, py_status):
        # duration is wall time: a timestamp in all but name
        if "duration" in status:
            status["duration"] = "<duration>"
    diff = differences(normalize(go_status, {go_ns: "<ns>"}), normalize(py_status, {py_ns: "<ns>"}))
    allowed = EXPECTED.get(case, set())
    unexpected = [d for d in diff if d.split(":", 1)[0] not in allowed]
    assert not unexpected, "StepRun status: Go and Python twins differ:\n" + "\n".join(diff)
    if case == "failure":
        assert go_status["lastFailureMsg"] == "card declined <&> \u2028"
        assert py_status["lastFailureMsg"] == "RuntimeError: card declined <&> \u2028"
    elif case == "structured-rate-limited":
        assert (go_status["exitClass"], go_status["error"]["retryable"]) == ("terminal", False)
        assert (py_status["exitClass"], py_status["error"]["retryable"]) == ("rateLimited", True)
    elif case == "success":
        assert go_status["output"]["a11"] == 2**53 and py_status["output"]["a11"] == 2**53 + 1
    else:
        assert_same(go_status, py_status, go_names={go_ns: "<ns>"}, py_names={py_ns: "<ns>"})
