"""execute_effect_once, record_effect, has_effect on the in-memory cluster.

See docs/contract/effect-claim.md#protocol, docs/contract/signals.md#effects-ledger.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from bubu import _effects, _scope
from bubu._effects import execute_effect_once, has_effect, record_effect
from bubu._k8s import identity
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN
from bubu._runtime.sources import MappingSource
from bubu.errors import (
    EffectAlreadyRecordedError,
    EffectError,
    EffectsUnavailableError,
    KubernetesError,
)
from bubu.testkit._fakes import effect_claim_violations

from .conftest import NS
from .conftest import STEP_RUN as SR


def claim_name(key: str) -> str:
    return identity.derive_effect_claim_name(NS, SR, key)


def ledger(world) -> list[dict]:
    return world.cluster.peek(STEP_RUN, SR, NS)["status"].get("effects", [])


async def test_first_run_returns_the_result_and_records_it(world):
    calls = []

    async def charge():
        calls.append(1)
        return {"chargeId": "ch_1"}

    assert await execute_effect_once("charge:42", charge) == {"chargeId": "ch_1"}
    claim = world.cluster.peek(EFFECT_CLAIM, claim_name("charge:42"), NS)
    assert claim["spec"]["completionStatus"] == "completed"
    assert claim["spec"]["details"] == {"chargeId": "ch_1"}
    assert claim["status"]["phase"] == "Completed"
    assert effect_claim_violations(claim) == []
    (entry,) = ledger(world)
    assert entry["key"] == "charge:42" and entry["status"] == "succeeded"
    assert entry["details"] == {"chargeId": "ch_1"}
    assert await has_effect("charge:42")


async def test_second_run_raises_already_recorded_with_details(world):
    async def fx():
        return "done"

    assert await execute_effect_once("k", fx) == "done"
    # Go's ErrEffectAlreadyRecorded text first, then the key.
    with pytest.raises(EffectAlreadyRecordedError, match=r"^effect already recorded: 'k'$") as info:
        await execute_effect_once("k", fx)
    # non-objects are wrapped (docs/contract/steprun-status.md#objects-only)
    assert info.value.details == {"value": "done"}
    assert not info.value.in_progress


async def test_completed_at_is_webhook_valid_after_go_truncation(world):
    async def fx():
        return None

    await execute_effect_once("t", fx)
    spec = world.cluster.peek(EFFECT_CLAIM, claim_name("t"), NS)["spec"]
    completed = datetime.fromisoformat(spec["completedAt"].replace("Z", "+00:00"))
    renew = datetime.fromisoformat(spec["renewTime"].replace("Z", "+00:00"))
    acquire = datetime.fromisoformat(spec["acquireTime"].replace("Z", "+00:00"))
    assert completed.microsecond == 0 and completed >= renew >= acquire
    assert len(spec["renewTime"].split(".")[1]) == 7  # six digits + Z (MicroTime)


async def test_concurrent_calls_in_one_process_run_once(world):
    calls = 0

    async def fx():
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    results = await asyncio.gather(
        *(execute_effect_once("same", fx) for _ in range(5)), return_exceptions=True
    )
    assert calls == 1
    assert sum(isinstance(r, EffectAlreadyRecordedError) for r in results) == 4
    assert _effects._gate_count() == 0  # gates are evicted when nobody holds them


async def test_failure_releases_the_claim_and_a_retry_runs_again(world):
    attempts = 0

    async def flaky():
        nonlocal attempts
        attempts += 1
        if attempts == 1:
            raise RuntimeError("card declined")
        return "ok"

    with pytest.raises(RuntimeError, match="card declined"):
        await execute_effect_once("pay", flaky)
    claim = world.cluster.peek(EFFECT_CLAIM, claim_name("pay"), NS)
    # project decision (docs/contract/effect-claim.md#completion-and-release option (a)): holder
    # cleared, completionStatus empty
    assert "holderIdentity" not in claim["spec"] and "renewTime" not in claim["spec"]
    assert "completionStatus" not in claim["spec"]
    assert effect_claim_violations(claim) == []
    assert await execute_effect_once("pay", flaky) == "ok"
    assert attempts == 2
    assert (
        world.cluster.peek(EFFECT_CLAIM, claim_name("pay"), NS)["spec"].get("leaseTransitions")
        is None
    )


async def _seed_claim(world, key: str, *, holder: str, age: float, lease: int = 600) -> None:
    step = world.cluster.peek(STEP_RUN, SR, NS)
    stamp = (datetime.now(UTC) - timedelta(seconds=age)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    await world.cluster.create(
        EFFECT_CLAIM,
        {
            "metadata": {"name": claim_name(key)},
            "spec": {
                "stepRunRef": {"name": SR, "uid": step["metadata"]["uid"]},
                "effectKey": key,
                "idempotencyKey": step["spec"]["idempotencyKey"],
                "holderIdentity": holder,
                "acquireTime": stamp,
                "renewTime": stamp,
                "leaseDurationSeconds": lease,
            },
        },
        NS,
    )


async def test_stale_claim_is_taken_over_and_completed_once(world):
    await _seed_claim(world, "stale", holder="dead-worker", age=30, lease=5)
    calls = []

    async def fx():
        calls.append(1)
        return 1

    assert await execute_effect_once("stale", fx) == 1
    spec = world.cluster.peek(EFFECT_CLAIM, claim_name("stale"), NS)["spec"]
    assert spec["leaseTransitions"] == 1
    assert spec["holderIdentity"] != "dead-worker"
    assert spec["completionStatus"] == "completed"
    assert calls == [1]


async def test_live_claim_held_elsewhere_is_already_in_progress(world):
    await _seed_claim(world, "busy", holder="other-worker", age=1)

    async def fx():
        raise AssertionError("must not run")

    with pytest.raises(
        EffectAlreadyRecordedError,
        match=r"^effect already recorded: 'busy' is in progress under another holder$",
    ) as info:
        await execute_effect_once("busy", fx)
    assert info.value.in_progress and info.value.details is None


async def test_ledger_is_repaired_after_a_crash_between_completion_and_ledger(world):
    async def fx():
        return {"id": 7}

    original = world.cluster.merge_patch
    failing = True

    async def crash_on_ledger(kind, name, patch, namespace=None, subresource=None):
        if kind == STEP_RUN and failing:
            raise KubernetesError("connection reset", retryable=False)
        return await original(kind, name, patch, namespace, subresource)

    world.cluster.merge_patch = crash_on_ledger
    with pytest.raises(KubernetesError):
        await execute_effect_once("crash", fx)
    failing = False
    assert ledger(world) == []
    # the claim is completed: a restart sees "already" and repairs the ledger
    with pytest.raises(EffectAlreadyRecordedError) as info:
        await execute_effect_once("crash", fx)
    assert info.value.details == {"id": 7}
    assert [e["key"] for e in ledger(world)] == ["crash"]


async def test_has_effect_repairs_the_ledger_from_a_completed_claim(world):
    async def fx():
        return None

    await execute_effect_once("x", fx)
    status = world.cluster.peek(STEP_RUN, SR, NS)["status"]
    status["effects"] = []
    world.cluster.put(STEP_RUN, {**world.cluster.peek(STEP_RUN, SR, NS), "status": status})
    assert await has_effect("x") is True
    assert [e["key"] for e in ledger(world)] == ["x"]
    assert await has_effect("never") is False


async def test_lease_is_renewed_while_fn_runs(world, scoped):
    with scoped(world, BUBU_EFFECT_LEASE_DURATION="1s"):
        seen = []

        async def slow():
            await asyncio.sleep(0.9)
            seen.append(world.cluster.peek(EFFECT_CLAIM, claim_name("slow"), NS)["spec"])
            return "ok"

        assert await execute_effect_once("slow", slow) == "ok"
    spec = seen[0]
    assert spec["leaseDurationSeconds"] == 1
    assert spec["renewTime"] > spec["acquireTime"]


async def test_losing_the_lease_cancels_fn(world, scoped):
    started = asyncio.Event()

    async def hijack():
        await started.wait()
        claim = world.cluster.peek(EFFECT_CLAIM, claim_name("lost"), NS)
        claim["spec"]["holderIdentity"] = "thief"
        await world.cluster.replace(EFFECT_CLAIM, claim_name("lost"), claim, NS)

    cancelled = False

    async def long():
        nonlocal cancelled
        started.set()
        try:
            await asyncio.sleep(10)
        except asyncio.CancelledError:
            cancelled = True
            raise

    with scoped(world, BUBU_EFFECT_LEASE_DURATION="600ms"):
        thief = asyncio.ensure_future(hijack())
        with pytest.raises(EffectError, match="ownership lost") as info:
            await execute_effect_once("lost", long)
        await thief
    assert type(info.value) is EffectError  # a public type: no private subclass escapes
    assert cancelled
    # release never clears someone else's claim
    assert (
        world.cluster.peek(EFFECT_CLAIM, claim_name("lost"), NS)["spec"]["holderIdentity"]
        == "thief"
    )


async def test_record_effect_first_writer_wins_and_details_are_bounded(world, scoped):
    await record_effect("e", "succeeded", {"a": 1})
    await record_effect("e", "failed", {"a": 2})
    with scoped(world, BUBU_EFFECT_MAX_DETAILS_BYTES="200"):
        await record_effect("big", "succeeded", {"blob": "x" * 500})
    with scoped(world, BUBU_EFFECT_MAX_DETAILS_BYTES="32"):
        with pytest.raises(EffectError, match="truncated effect details exceed 32 bytes"):
            await record_effect("huge", "succeeded", {"blob": "x" * 500})
    entries = {e["key"]: e for e in ledger(world)}
    assert entries["e"]["status"] == "succeeded" and entries["e"]["details"] == {"a": 1}
    big = entries["big"]["details"]
    assert big["truncated"] is True and big["type"] == "map" and big["details"] == {"len": 1}
    assert "x" * 10 not in str(big)


async def test_effects_need_a_step_run(world, scoped):
    with scoped(world, BUBU_STEPRUN_NAME=""):
        # Go's ErrEffectsUnavailable text first, then why.
        with pytest.raises(
            EffectsUnavailableError,
            match=r"^effect recording unavailable: not running inside a StepRun "
            r"\(BUBU_STEPRUN_NAME is not set\)$",
        ):
            await record_effect("k", "ok")


async def test_effects_without_a_client_lead_with_gos_text():
    with _scope.activate(_scope.RunScope(source=MappingSource({"BUBU_STEPRUN_NAME": "sr"}))):
        with pytest.raises(
            EffectsUnavailableError,
            match=r"^effect recording unavailable: not running inside a StepRun \(no Kubernetes",
        ):
            await record_effect("k", "ok")


async def test_bad_arguments_are_clear_errors(world):
    with pytest.raises(EffectError, match="effect key is required"):
        await execute_effect_once("  ", lambda: None)
    with pytest.raises(EffectError, match="effect function is required"):
        await execute_effect_once("k", None)


def test_renew_interval_is_clamped():
    assert _effects.renew_interval(600) == 30
    assert _effects.renew_interval(0.1) == 0.1
    assert _effects.renew_interval(3) == 1


# --- Go test cases not covered above (docs/contract/effect-claim.md#protocol) ---------------------


async def test_key_already_in_the_ledger_skips_without_touching_a_claim(world):
    await record_effect("pre", "succeeded", {"a": 1})

    async def fx():
        raise AssertionError("must not run")

    with pytest.raises(EffectAlreadyRecordedError) as info:
        await execute_effect_once("pre", fx)
    assert not info.value.in_progress and info.value.details == {"a": 1}
    assert world.cluster.count("create", EFFECT_CLAIM) == 0
    assert world.cluster.count("get", EFFECT_CLAIM) == 0


async def test_only_one_of_two_workers_recovers_a_stale_claim(world, monkeypatch):
    import contextlib

    @contextlib.asynccontextmanager
    async def own_gate(key):
        yield _effects._Gate()  # no shared in-process gate: two "processes" on one cluster

    monkeypatch.setattr(_effects, "_gate", own_gate)
    await _seed_claim(world, "stale2", holder="dead-worker", age=30, lease=5)
    calls = []

    async def fx():
        calls.append(1)
        await asyncio.sleep(0.05)
        return "done"

    outcomes = await asyncio.gather(
        execute_effect_once("stale2", fx), execute_effect_once("stale2", fx), return_exceptions=True
    )
    assert calls == [1]
    assert sorted(type(o).__name__ for o in outcomes) == ["EffectAlreadyRecordedError", "str"]
    spec = world.cluster.peek(EFFECT_CLAIM, claim_name("stale2"), NS)["spec"]
    assert spec["leaseTransitions"] == 1 and spec["completionStatus"] == "completed"
    assert [e["key"] for e in ledger(world)] == ["stale2"]


async def test_oversized_result_is_recorded_as_a_bounded_summary(world, scoped):
    async def fx():
        return {"blob": "x" * 500}

    with scoped(world, BUBU_EFFECT_MAX_DETAILS_BYTES="200"):
        assert await execute_effect_once("big", fx) == {"blob": "x" * 500}  # caller gets it all
    (entry,) = ledger(world)
    assert entry["details"]["truncated"] is True and "x" * 10 not in str(entry["details"])
    claim = world.cluster.peek(EFFECT_CLAIM, claim_name("big"), NS)
    assert "x" * 10 not in str(claim["spec"].get("details"))


async def test_the_in_process_gate_key_includes_the_namespace(world, monkeypatch):
    keys = []
    real_gate = _effects._gate

    def spy(key):
        keys.append(key)
        return real_gate(key)

    monkeypatch.setattr(_effects, "_gate", spy)

    async def fx():
        return 1

    await execute_effect_once("k", fx)
    assert keys == [f"{NS}:{SR}:k"]


async def test_two_workers_race_100_keys_on_the_fake_each_body_runs_once(world, monkeypatch):
    # The integration suite races two real processes; here two workers without a shared
    # in-process gate race on the in-memory cluster, interleaving on every await.
    import contextlib
    from collections import Counter

    @contextlib.asynccontextmanager
    async def own_gate(key):
        yield _effects._Gate()

    monkeypatch.setattr(_effects, "_gate", own_gate)
    runs: Counter[str] = Counter()

    async def worker() -> int:
        ran = 0
        for i in range(100):
            key = f"effect-{i}"

            async def body(key: str = key) -> str:
                runs[key] += 1
                await asyncio.sleep(0)
                return key

            try:
                await execute_effect_once(key, body)
                ran += 1
            except EffectAlreadyRecordedError:
                pass
        return ran

    ran = await asyncio.gather(worker(), worker())
    assert sum(ran) == 100 and all(n > 0 for n in ran)
    assert len(runs) == 100 and set(runs.values()) == {1}
    assert len({e["key"] for e in ledger(world)}) == 100 == len(ledger(world))
