"""StepRun status protocol: merge rules, phase machine, fencing, bounds, retries.

See docs/contract/steprun-status.md#merge-rules.
"""

from __future__ import annotations

import asyncio
import random
import time
from typing import Any

import pytest

from bubu._aio.backoff import Backoff
from bubu._k8s import status
from bubu._k8s.resources import StepRunStatus, StructuredError
from bubu.errors import (
    ConflictError,
    ForbiddenError,
    InvalidTransitionError,
    KubernetesError,
    NotFoundError,
    PodFencedError,
)
from tests.unit.k8s.status_fakes import FakeStepRuns, apply_merge_patch

FAST = Backoff(base=0.0, factor=1.0, maximum=0.0, jitter=0.0)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("Running", "Timeout"),
        ("Pending", "Timeout"),
        ("Running", "Aborted"),
        ("Scheduling", "Canceled"),
        ("Blocked", "Canceled"),
        ("Failed", "Succeeded"),
        ("Failed", "Running"),
        ("", "Succeeded"),
        (None, "Failed"),
        ("Succeeded", "Succeeded"),
    ],
)
def test_check_transition_allows_go_transitions(src: str | None, dst: str) -> None:
    status.check_transition(src, dst)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        ("Pending", "Succeeded"),
        ("Finished", "Running"),
        ("Skipped", "Running"),
        ("Succeeded", "Failed"),
        ("Timeout", "Failed"),
        ("Weird", "Running"),
    ],
)
def test_check_transition_refuses_invalid(src: str, dst: str) -> None:
    with pytest.raises(InvalidTransitionError, match="invalid phase transition"):
        status.check_transition(src, dst)


def test_merge_adds_retries_zero_on_first_write() -> None:
    merged = status.merge_status(None, StepRunStatus(phase="Failed"))
    assert merged == {"phase": "Failed", "retries": 0}


def test_merge_keeps_existing_fields_and_go_zero_rules() -> None:
    existing = {
        "phase": "Running",
        "retries": 2,
        "exitCode": 3,
        "lastFailureMsg": "old",
        "error": {"version": "v1", "type": "unknown", "message": "old"},
        "conditions": [{"type": "Ready"}],
        "needs": ["a"],
    }
    merged = status.merge_status(
        existing,
        {
            "phase": "Succeeded",
            "exitCode": 0,
            "retries": 0,
            "exitClass": "success",
            "lastFailureMsg": "",
            "output": {"x": 1},
            "conditions": [{"type": "Mine"}],
        },
    )
    assert merged["phase"] == "Succeeded"
    assert merged["exitCode"] == 3  # zero never resets
    assert merged["retries"] == 2
    assert merged["lastFailureMsg"] == "old"  # never cleared
    assert merged["error"]["message"] == "old"
    assert merged["conditions"] == [{"type": "Ready"}]  # SDK conditions dropped
    assert merged["needs"] == ["a"]  # omitted needs preserved
    assert merged["output"] == {"x": 1}


def test_merge_explicit_empty_needs_clears() -> None:
    # Go stores nothing for an empty list (omitempty), so the field goes away.
    assert status.merge_status({"needs": ["a"], "retries": 0}, {"needs": []}) == {"retries": 0}


def test_merge_bounds_messages_to_8kib_on_utf8_boundary() -> None:
    long = "\u00e9" * 5000  # 10000 bytes
    err = StructuredError(type="execution_error", message=long)
    merged = status.merge_status(None, StepRunStatus(last_failure_msg=long, error=err))
    assert len(merged["lastFailureMsg"].encode()) <= 8192
    assert len(merged["error"]["message"].encode()) <= 8192
    assert merged["lastFailureMsg"] == "\u00e9" * 4096
    assert status.truncate_utf8("a" * 10000) == "a" * 8192
    assert status.truncate_utf8("short") == "short"
    assert status.truncate_utf8("x" * 10, 0) == "x" * 10


def test_merge_rejects_scalar_output() -> None:
    with pytest.raises(ValueError, match=r"status\.output must be a JSON object"):
        status.merge_status(None, {"output": [1, 2]})


def test_merge_signals_by_key_and_none_deletes() -> None:
    merged = status.merge_status(
        {"retries": 0, "signals": {"a": {"v": 1}, "b": {"v": 2}, "d": {"v": 4}}},
        {"signals": {"a": None, "c": {"v": 3}, "d": {}}},
    )
    # Go deletes a key only for an absent value; an empty object is a value.
    assert merged["signals"] == {"b": {"v": 2}, "c": {"v": 3}, "d": {}}


def test_merge_signal_events_seq_rules_and_cap() -> None:
    existing = {"retries": 0, "signalEvents": [{"seq": i, "key": "k"} for i in range(1, 257)]}
    merged = status.merge_status(
        existing, {"signalEvents": [{"seq": 0, "key": "new"}, {"seq": 5, "key": "dup"}]}
    )
    events = merged["signalEvents"]
    assert len(events) == 256
    assert events[-1] == {"seq": 257, "key": "new"}
    assert events[0]["seq"] == 2  # oldest dropped
    assert all(e["key"] != "dup" for e in events)


def test_merge_effects_dedupe_by_key_first_details_win() -> None:
    merged = status.merge_status(
        {"retries": 0, "effects": [{"seq": 1, "key": "k", "details": {"first": True}}]},
        {
            "effects": [
                {"seq": 0, "key": "k", "details": {"first": False}},
                {"seq": 0, "key": "other"},
            ]
        },
    )
    assert merged["effects"] == [
        {"seq": 1, "key": "k", "details": {"first": True}},
        {"seq": 2, "key": "other"},
    ]


def test_merge_patch_diff_round_trips() -> None:
    before = {"a": 1, "b": {"c": 1, "d": 2}, "e": [1], "gone": True}
    after = {"a": 1, "b": {"c": 2}, "e": [1, 2], "new": {"x": None}}
    diff = status.merge_patch_diff(before, after)
    assert diff == {"b": {"c": 2, "d": None}, "e": [1, 2], "gone": None, "new": {"x": None}}
    assert apply_merge_patch(before, diff) == {"a": 1, "b": {"c": 2}, "e": [1, 2], "new": {}}


async def test_patch_writes_merge_patch_without_resource_version() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0, "startedAt": "t0"})
    stored = await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Succeeded", exit_class="success", output={"a": 1})
    )
    assert stored["phase"] == "Succeeded"
    assert kube.patches == [
        {"status": {"phase": "Succeeded", "exitClass": "success", "output": {"a": 1}}}
    ]
    assert kube.status("s1")["startedAt"] == "t0"


async def test_patch_first_write_includes_retries() -> None:
    kube = FakeStepRuns()
    kube.seed("s1")  # no status at all: the CRD requires status.retries
    await status.patch_step_run_status(kube, "s1", None, StepRunStatus(phase="Failed"))
    assert kube.patches[0]["status"]["retries"] == 0
    assert kube.status("s1") == {"phase": "Failed", "retries": 0}


async def test_patch_fencing_refuses_other_pod_without_retry() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0, "podName": "pod-a"})
    with pytest.raises(PodFencedError, match="zombie pod fencing"):
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Succeeded"), pod_name="pod-b", backoff=FAST
        )
    assert kube.patches == [] and kube.gets == 1
    # Our own pod, or no pod name, passes.
    await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Succeeded"), pod_name="pod-a"
    )
    assert kube.status("s1")["phase"] == "Succeeded"


async def test_patch_invalid_transition_not_retried() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Pending", "retries": 0})
    with pytest.raises(InvalidTransitionError):
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Succeeded"), backoff=FAST
        )
    assert kube.gets == 1 and kube.patches == []


async def test_patch_retries_conflict_then_succeeds() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [ConflictError("conflict", status_code=409)] * 2
    await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Succeeded"), backoff=FAST
    )
    assert len(kube.patches) == 3 and kube.gets == 3
    assert kube.status("s1")["phase"] == "Succeeded"


async def test_patch_conflict_exhausted_raises_conflict_with_one_patch_at_zero_retries() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [ConflictError("conflict", status_code=409)]
    with pytest.raises(ConflictError):
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Succeeded"), max_retries=0, backoff=FAST
        )
    assert len(kube.patches) == 1


async def test_patch_negative_max_retries_still_tries_once() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Failed"), max_retries=-3
    )
    assert len(kube.patches) == 1


async def test_patch_retries_transient_get_and_5xx() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_get = [KubernetesError("boom", status_code=503, retryable=True)]
    kube.fail_patch = [KubernetesError("busy", status_code=429, retryable=True)]
    await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Failed"), backoff=FAST
    )
    assert kube.status("s1")["phase"] == "Failed"


@pytest.mark.parametrize(
    "error",
    [
        ForbiddenError("no", status_code=403),
        NotFoundError("gone", status_code=404),
        KubernetesError("bad", status_code=422, reason="Invalid", retryable=False),
    ],
)
async def test_patch_permanent_errors_not_retried(error: KubernetesError) -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [error]
    with pytest.raises(type(error)):
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Failed"), backoff=FAST
        )
    assert len(kube.patches) == 1


async def test_patch_honours_retry_after(monkeypatch: pytest.MonkeyPatch) -> None:
    slept: list[float] = []

    async def fake_sleep(delay: float) -> None:
        slept.append(delay)

    monkeypatch.setattr(status.asyncio, "sleep", fake_sleep)
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [
        KubernetesError("slow down", status_code=429, retryable=True, retry_after=2.5)
    ]
    await status.patch_step_run_status(
        kube, "s1", None, StepRunStatus(phase="Failed"), backoff=FAST
    )
    assert slept == [2.5]


async def test_patch_gives_up_at_operation_timeout() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [KubernetesError("x", status_code=500, retryable=True, retry_after=60)]
    with pytest.raises(KubernetesError, match="BUBU_K8S_OPERATION_TIMEOUT") as info:
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Failed"), operation_timeout=0.05
        )
    assert info.value.retryable
    assert isinstance(info.value.__cause__, KubernetesError)


async def test_optimistic_update_rereads_after_concurrent_append() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0, "effects": [{"seq": 1, "key": "a"}]})

    def race() -> None:  # another writer appends between our GET and PATCH
        obj = kube.objects[("default", "s1")]
        obj["status"]["effects"].append({"seq": 2, "key": "b"})
        obj["metadata"]["resourceVersion"] = "99"

    kube.before_patch = race
    await status.patch_step_run_status(
        kube, "s1", None, {"effects": [{"seq": 0, "key": "c"}]}, optimistic=True, backoff=FAST
    )
    assert [e["key"] for e in kube.status("s1")["effects"]] == ["a", "b", "c"]
    assert kube.patches[0]["metadata"] == {"resourceVersion": "1"}


async def test_optimistic_conflicts_do_not_spend_the_retry_budget() -> None:
    # Two writers appending to the ledger at once conflict again and again (CI saw six 409s in a
    # row between two processes): each 409 is the other's progress, so the append keeps going
    # until it lands, as long as the operation timeout allows, even with no retries at all.
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0, "effects": []})
    races = iter(range(8))

    def race() -> None:
        seq = next(races, None)
        if seq is not None:
            obj = kube.objects[("default", "s1")]
            obj["status"]["effects"].append({"seq": seq, "key": f"other-{seq}"})
            kube.rv += 1
            obj["metadata"]["resourceVersion"] = str(kube.rv)
            kube.before_patch = race  # the hook is one-shot: the race goes on

    kube.before_patch = race
    await status.update_step_run_status(
        kube,
        "s1",
        None,
        lambda s: status.merge_status(s, {"effects": [{"seq": 100, "key": "mine"}]}),
        optimistic=True,
        max_retries=0,
        backoff=FAST,
    )
    assert len(kube.patches) == 9
    keys = [e["key"] for e in kube.status("s1")["effects"]]
    assert keys == [*(f"other-{i}" for i in range(8)), "mine"]


async def _optimistic_write(kube: FakeStepRuns, **kw: Any) -> dict[str, Any]:
    return await status.update_step_run_status(
        kube, "s1", None, lambda s: {**s, "lastFailureMsg": "x"}, optimistic=True, **kw
    )


async def test_optimistic_conflicts_end_at_the_operation_timeout() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})

    def race() -> None:  # someone else always writes first
        kube.rv += 1
        kube.objects[("default", "s1")]["metadata"]["resourceVersion"] = str(kube.rv)
        kube.before_patch = race

    kube.before_patch = race
    started = time.monotonic()
    with pytest.raises(
        KubernetesError, match=r"gave up after .*BUBU_K8S_OPERATION_TIMEOUT"
    ) as info:
        await _optimistic_write(
            kube,
            operation_timeout=0.3,
            backoff=Backoff(base=0.01, factor=2.0, maximum=0.05, jitter=0.0),
        )
    assert time.monotonic() - started >= 0.3
    assert isinstance(info.value.__cause__, ConflictError)
    assert len(kube.patches) > 6  # past the retry budget: conflicts did not spend it


async def test_optimistic_write_still_bounds_other_failures_by_max_retries() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [
        ConflictError("conflict", status_code=409),
        KubernetesError("unavailable", status_code=503, retryable=True),
        ConflictError("conflict", status_code=409),
        KubernetesError("unavailable", status_code=503, retryable=True),
    ]
    with pytest.raises(KubernetesError, match="unavailable"):
        await _optimistic_write(kube, max_retries=1, backoff=FAST)
    assert len(kube.patches) == 4  # two conflicts free, the second 503 is over the budget


async def test_plain_write_conflicts_still_spend_the_retry_budget() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [ConflictError("conflict", status_code=409)] * 3
    with pytest.raises(ConflictError):
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Succeeded"), max_retries=2, backoff=FAST
        )
    assert len(kube.patches) == 3


async def test_update_mutate_none_writes_nothing() -> None:
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    result = await status.update_step_run_status(kube, "s1", None, lambda s: None)
    assert result["phase"] == "Running" and kube.patches == []


def test_backoff_jitter_bounds() -> None:
    b = Backoff(base=0.1, factor=2.0, maximum=1.0, jitter=0.25)
    rng = random.Random(1)
    for attempt in range(8):
        raw = min(1.0, 0.1 * 2**attempt)
        d = b.delay(attempt, rng=rng)
        assert 0.75 * raw <= d < 1.25 * raw


async def test_patch_transient_get_exhausted_raises_retryable() -> None:
    # As Go's tests: a failing GET is retried; once retries run out the error stays retryable
    # (Go wraps ErrRetryable) and no PATCH was sent.
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_get = [KubernetesError("unavailable", status_code=503, retryable=True)] * 5
    with pytest.raises(KubernetesError) as info:
        await status.patch_step_run_status(
            kube, "s1", None, StepRunStatus(phase="Failed"), max_retries=2, backoff=FAST
        )
    assert info.value.retryable and info.value.status_code == 503
    assert kube.gets == 3 and kube.patches == []
    assert kube.status("s1")["phase"] == "Running"


async def test_cancellation_aborts_the_retry_backoff() -> None:
    # As Go's "a cancelled ctx aborts the backoff": cancelling the caller ends the wait at once
    # (CancelledError propagates, never wrapped) instead of sleeping out the backoff.
    kube = FakeStepRuns()
    kube.seed("s1", {"phase": "Running", "retries": 0})
    kube.fail_patch = [KubernetesError("busy", status_code=500, retryable=True)] * 5
    slow = Backoff(base=30.0, factor=1.0, maximum=30.0, jitter=0.0)
    task = asyncio.create_task(
        status.patch_step_run_status(kube, "s1", None, StepRunStatus(phase="Failed"), backoff=slow)
    )
    while not kube.patches:  # noqa: ASYNC110 - polling the fake; then the task sleeps 30 s
        await asyncio.sleep(0)
    await asyncio.sleep(0)
    started = time.monotonic()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # Relative to the 30 s backoff, so a loaded machine cannot make it flake.
    assert time.monotonic() - started < slow.base / 2
    assert len(kube.patches) == 1


# --- edges the mutation run showed untested ----------------------------------------------------


def test_refused_transition_carries_its_reason() -> None:
    with pytest.raises(InvalidTransitionError) as info:
        status.check_transition("Succeeded", "Running")
    assert info.value.reason == "InvalidTransition"
    assert str(info.value) == (
        "invalid phase transition: Succeeded \u2192 Running (not allowed by state machine)"
    )


def test_truncate_utf8_limits() -> None:
    assert status.truncate_utf8("ab", 1) == "a"
    assert status.truncate_utf8("ab", 2) == "ab"
    assert status.truncate_utf8("é", 1) == ""
    assert status.truncate_utf8("ab", 0) == "ab"
    assert status.truncate_utf8("ab", -1) == "ab"


def test_merge_result_shares_nothing_with_its_inputs() -> None:
    existing = {"retries": 0, "output": {"a": {"b": 1}}, "signals": {"s": {"v": {"w": 1}}}}
    update = {"logs": {"l": {"m": 1}}, "signals": {"t": {"v": {"w": 2}}}}
    merged = status.merge_status(existing, update)
    merged["output"]["a"]["b"] = 9
    merged["signals"]["s"]["v"]["w"] = 9
    merged["signals"]["t"]["v"]["w"] = 9
    merged["logs"]["l"]["m"] = 9
    assert existing == {"retries": 0, "output": {"a": {"b": 1}}, "signals": {"s": {"v": {"w": 1}}}}
    assert update == {"logs": {"l": {"m": 1}}, "signals": {"t": {"v": {"w": 2}}}}


def test_deleting_an_absent_signal_is_a_no_op() -> None:
    existing = {"retries": 0, "signals": {"a": {"v": 1}}}
    merged = status.merge_status(existing, {"signals": {"b": None}})
    assert merged == {"retries": 0, "signals": {"a": {"v": 1}}}


def test_a_scalar_signal_is_refused_naming_the_key() -> None:
    with pytest.raises(ValueError) as info:
        status.merge_status(None, {"signals": {"k": 3}})
    assert str(info.value) == (
        "status.signals['k'] must be a JSON object (docs/contract/steprun-status.md#objects-only)"
    )


def test_effects_without_a_key_never_dedupe() -> None:
    merged = status.merge_status(None, {"effects": [{"seq": 0}, {"seq": 0, "key": None}]})
    assert merged["effects"] == [{"seq": 1}, {"seq": 2, "key": None}]


def test_merge_patch_diff_edges() -> None:
    assert status.merge_patch_diff({}, {"a": None}) == {"a": None}  # a new null is sent
    assert status.merge_patch_diff({"a": None}, {"a": None}) == {}
    assert status.merge_patch_diff({"a": 1}, {"a": {"b": 2}}) == {"a": {"b": 2}}
    assert status.merge_patch_diff({"a": {"b": 1}}, {"a": 5}) == {"a": 5}
    after = {"a": {"b": [1]}, "c": [{"d": 1}]}
    patch = status.merge_patch_diff({"c": []}, after)
    patch["a"]["b"].append(2)
    patch["c"][0]["d"] = 9
    assert after == {"a": {"b": [1]}, "c": [{"d": 1}]}  # the patch shares nothing with after


def test_deleting_the_last_signal_of_none_leaves_no_field() -> None:
    assert status.merge_status({"retries": 0}, {"signals": {"x": None}}) == {"retries": 0}


def test_the_contract_page_lists_the_phase_machine_as_coded() -> None:
    # docs/contract/steprun-status.md#phases is what users read; it must not drift from the code.
    import re
    from pathlib import Path

    page = Path(__file__).resolve().parents[3] / "docs" / "contract" / "steprun-status.md"
    section = page.read_text().split("## Phase state machine", 1)[1].split("\n## ", 1)[0]
    documented: dict[str, frozenset[str]] = {}
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or not cells[0].startswith("`"):
            continue
        targets = frozenset(re.findall(r"`(\w+)`", cells[1]))
        for phase in cells[0].split(","):
            documented[phase.strip().strip("`")] = targets
    assert documented == dict(status.PHASE_TRANSITIONS)
