"""The status merge and phase machine against Go's: the Go SDK's own PatchStepRunStatus decides.

``go_ref.call("merge_status", existing, update, pod)`` runs the Go SDK's ``PatchStepRunStatus``
on a StepRun holding ``existing`` (controller-runtime's in-memory client) and returns the status
Go stores, or Go's error. ``merge_status`` must store the same status, field for field.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from bubu._k8s import status
from bubu.errors import InvalidTransitionError
from tests._goref import GoError, GoRef, go_settings

pytestmark = pytest.mark.interop

_SETTINGS = go_settings(200)

PHASES = [
    "",
    "Pending",
    "Running",
    "Succeeded",
    "Failed",
    "Canceled",
    "Paused",
    "Timeout",
    "Aborted",
    "Blocked",
    "Scheduling",
    "Skipped",
    "Finished",
    "Compensated",
]


def _go(go_ref: GoRef, existing: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | str:
    try:
        return go_ref.call("merge_status", existing, update, "")
    except GoError as exc:
        return str(exc)


def _py(existing: dict[str, Any], update: dict[str, Any]) -> dict[str, Any] | str:
    before = copy.deepcopy(existing)
    try:
        merged = status.merge_status(existing, update)
    except InvalidTransitionError as exc:
        return str(exc)
    assert existing == before, "merge_status modified its input"
    return merged


@pytest.mark.parametrize("new", PHASES[1:])
@pytest.mark.parametrize("current", PHASES)
def test_phase_machine_matches_go(go_ref: GoRef, current: str, new: str) -> None:
    existing = {"phase": current, "retries": 0} if current else {"retries": 0}
    go = _go(go_ref, existing, {"phase": new, "retries": 0})
    py = _py(existing, {"phase": new})
    if isinstance(go, str):
        assert isinstance(py, str), f"Go refuses {current!r} -> {new!r}: {go}"
        assert "invalid phase transition" in go and "invalid phase transition" in py
        assert f"{current} \u2192 {new}" in go and f"{current} \u2192 {new}" in py
    else:
        assert py == go


TIME = st.sampled_from(["2024-01-02T03:04:05Z", "2025-06-07T08:09:10Z"])
SMALL_OBJ = st.dictionaries(
    st.sampled_from(["a", "b", "c"]), st.integers(0, 3) | st.booleans() | st.text("xy", max_size=2)
)
EVENT = st.fixed_dictionaries(
    {"seq": st.integers(0, 6), "key": st.sampled_from(["k1", "k2", "k3"])},
    optional={"emittedAt": TIME, "payload": SMALL_OBJ},
)
EFFECT = st.fixed_dictionaries(
    {"seq": st.integers(0, 6), "key": st.sampled_from(["e1", "e2", " e1 ", ""])},
    optional={"status": st.sampled_from(["succeeded", "failed"]), "details": SMALL_OBJ},
)
ERROR = st.fixed_dictionaries(
    {
        "version": st.just("v1"),
        "type": st.just("ExecutionError"),
        "message": st.text("ab", max_size=3),
    }
)


def _status(phases: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    return st.fixed_dictionaries(
        {"retries": st.integers(0, 3)},
        optional={
            "phase": st.sampled_from(phases),
            "startedAt": TIME,
            "finishedAt": TIME,
            "nextRetryAt": TIME,
            "duration": st.sampled_from(["1s", "2m0s"]),
            "exitCode": st.integers(0, 3),
            "exitClass": st.sampled_from(["success", "retry", "terminal"]),
            "podName": st.sampled_from(["pod-a", "pod-b"]),
            "lastFailureMsg": st.sampled_from(["boom", "é\u00e9"]),
            "output": SMALL_OBJ,
            "logs": SMALL_OBJ,
            "error": ERROR,
            "needs": st.lists(st.sampled_from(["a", "b"]), max_size=2),
            "signals": st.dictionaries(st.sampled_from(["s1", "s2"]), SMALL_OBJ, max_size=2),
            "signalEvents": st.lists(EVENT, max_size=4).map(_unique_seqs),
            "effects": st.lists(EFFECT, max_size=4).map(_unique_seqs),
            "observedGeneration": st.integers(1, 3),
        },
    )


def _unique_seqs(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # What a server holds: every stored entry has its own non-zero seq.
    out, seen = [], set()
    for entry in entries:
        if entry["seq"] and entry["seq"] not in seen:
            seen.add(entry["seq"])
            out.append(entry)
    return out


def _update() -> st.SearchStrategy[dict[str, Any]]:
    return _status(PHASES[1:]).map(_as_update)


def _as_update(update: dict[str, Any]) -> dict[str, Any]:
    update.pop("observedGeneration", None)  # never written by the SDK
    return update


def _as_stored(existing: dict[str, Any]) -> dict[str, Any]:
    # A stored status never holds Go's omitempty zero values (no writer sends them).
    for key in ("exitCode", "needs", "signals", "signalEvents", "effects"):
        if not existing.get(key, True):
            del existing[key]
    return existing


@_SETTINGS
@given(existing=_status(["Running"]).map(_as_stored), update=_update())
@example(
    existing={"retries": 0, "phase": "Running", "exitCode": 2},
    update={"retries": 0, "phase": "Succeeded", "exitCode": 0},
)
@example(
    existing={"retries": 2, "phase": "Running", "podName": "pod-a"},
    update={"retries": 3, "podName": "pod-b", "finishedAt": "2024-01-02T03:04:05Z"},
)
@example(
    existing={"retries": 0, "signalEvents": [{"seq": 5, "key": "k1"}]},
    update={"retries": 0, "signalEvents": [{"seq": 0, "key": "k2"}, {"seq": 5, "key": "k3"}]},
)
@example(
    existing={"retries": 0, "effects": [{"seq": 1, "key": "e1"}]},
    update={"retries": 0, "effects": [{"seq": 0, "key": " e1 "}, {"seq": 0, "key": "e2"}]},
)
@example(
    existing={"retries": 0, "needs": ["a"], "signals": {"s1": {"a": 1}, "s2": {"b": 1}}},
    update={"retries": 0, "needs": [], "signals": {"s1": {}}},
)
@example(
    existing={"retries": 0},
    update={"retries": 0, "signalEvents": [{"seq": 0, "key": "a"}, {"seq": 0, "key": "b"}]},
)
@example(
    existing={"retries": 0},
    update={
        "retries": 0,
        "effects": [
            {"seq": 0, "key": "e1"},
            {"seq": 0, "key": "e1"},
            {"seq": 0, "key": ""},
            {"seq": 0, "key": ""},
            {"seq": 7, "key": "x"},
            {"seq": 7, "key": "y"},
            {"seq": 0, "key": "z"},
        ],
    },
)
@example(
    existing={"retries": 0, "signalEvents": [{"seq": 1, "key": "a"}, {"seq": 2, "key": "b"}]},
    update={
        "retries": 0,
        "signalEvents": [{"seq": 2, "key": "dup"}, {"seq": 0, "key": "n"}, {"seq": 9, "key": "m"}]
        + [{"seq": 9, "key": "m2"}],
    },
)
@example(
    existing={"retries": 0, "effects": [{"seq": 1, "key": "e1"}]},
    update={"retries": 0, "effects": [{"seq": 0, "key": "e1"}, {"seq": 0, "key": "e2"}]},
)
@example(
    # Past the CRD's 256: Go sorts by seq and keeps the newest (stored out of order here).
    existing={"retries": 0, "signalEvents": [{"seq": n, "key": "k"} for n in range(256, 0, -1)]},
    update={"retries": 0, "signalEvents": [{"seq": 0, "key": "new"}]},
)
@example(
    existing={"retries": 0, "effects": [{"seq": n, "key": f"e{n}"} for n in range(256, 0, -1)]},
    update={"retries": 0, "effects": [{"seq": 0, "key": "new"}]},
)
@example(
    # Exactly 256: no sort, Go keeps the append order.
    existing={"retries": 0, "signalEvents": [{"seq": n, "key": "k"} for n in range(255, 0, -1)]},
    update={"retries": 0, "signalEvents": [{"seq": 0, "key": "new"}]},
)
@example(
    existing={"retries": 0, "effects": [{"seq": n, "key": f"e{n}"} for n in range(255, 0, -1)]},
    update={"retries": 0, "effects": [{"seq": 0, "key": "new"}]},
)
def test_merge_matches_go(go_ref: GoRef, existing: dict[str, Any], update: dict[str, Any]) -> None:
    go = _go(go_ref, existing, update)
    py = _py(existing, update)
    if existing.get("signals") and update.get("signals") and isinstance(go, dict):
        # Go's PatchStepRunStatus loses every write to an existing status.signals map: its merge
        # shares the map with the object it diffs against, so the patch carries no change
        # (docs/differences.md). Go writes the same merge correctly into an empty map, so ask Go
        # for that and keep the keys the update does not name.
        fresh = _go(go_ref, {**existing, "signals": {}}, update)
        assert isinstance(fresh, dict)
        kept = {k: v for k, v in existing["signals"].items() if k not in update["signals"]}
        go["signals"] = {**kept, **fresh.get("signals", {})}
        if not go["signals"]:
            del go["signals"]
    assert py == go
