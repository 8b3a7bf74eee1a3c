"""Twin runs: signals and the effects ledger, Go SDK vs bubu, on real StepRuns.

See docs/contract/signals.md#signals, docs/contract/signals.md#effects-ledger.

Each test does the same calls with the Go SDK (the ``twin`` program, as the engram-runner
ServiceAccount of its namespace) and with bubu (in-process, the same Role in its namespace),
then compares the two StepRuns' status field by field.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from bubu._effects import execute_effect_once, has_effect, record_effect
from bubu._k8s import identity
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN
from bubu._signals import emit_signal, emit_text_signal, replay_signals
from bubu.errors import EffectAlreadyRecordedError
from tests.interop._twins import ATOMS, assert_same, corpus, go_twin
from tests.interop.conftest import SR, Twins, as_identity

pytestmark = [pytest.mark.integration, pytest.mark.interop]


TEXT = "héllo <world> & " + "日本" * 1500  # > 2048 bytes: the sample is cut on a UTF-8 boundary

TEXT_SIGNALS: list[dict[str, Any]] = [
    {"key": "t-meta", "text": TEXT, "options": {}},
    {"key": "t-hash", "text": TEXT, "options": {"includeHash": True, "format": " json "}},
    {
        "key": "t-sample",
        "text": TEXT,
        "options": {
            "sampleBytes": 7,
            "contentType": " text/plain ",
            "attributes": {"lang": "ja", "<x>": "a&b"},
            "sampleExtras": {"text": "never", "truncated": False, "lines": 3, "n": 1.0},
        },
    },
    {"key": "t-default-sample", "text": TEXT, "options": {"sampleBytes": -1}},
    {"key": "t-extras-only", "text": "short", "options": {"sampleExtras": {"page": 2}}},
]


def _env(ns: str) -> dict[str, str]:
    return {"BUBU_STEPRUN_NAME": SR, "BUBU_STEPRUN_NAMESPACE": ns}


def _go_env(ident: Any, ns: str) -> dict[str, str]:
    return {"KUBECONFIG": str(ident.kubeconfig_path), **_env(ns)}


async def _text_signal(spec: dict[str, Any]) -> None:
    o = spec["options"]
    await emit_text_signal(
        spec["key"],
        spec["text"],
        format=o.get("format", ""),
        content_type=o.get("contentType", ""),
        sample_bytes=o.get("sampleBytes", 0),
        include_hash=o.get("includeHash", False),
        attributes=o.get("attributes"),
        sample_extras=o.get("sampleExtras"),
    )


async def test_signal_events_summaries_clearing_and_replay(
    go_bin: Path, twins: Twins, admin_in: Any
) -> None:
    py_ns, go_ns = twins.py, twins.go
    values: list[Any] = [*corpus(6), *ATOMS[:20]]
    go_ident, py_ident = twins.runner(go_ns), twins.runner(py_ns)

    ops: list[dict[str, Any]] = [
        {"op": "emit_signal", "key": f" v{i} ", "value": v} for i, v in enumerate(values)
    ]
    ops += [{"op": "emit_text_signal", **spec} for spec in TEXT_SIGNALS]
    ops += [
        {"op": "emit_signal", "key": "v1", "value": None},  # clears the key, still an event
        {"op": "replay_signals", "since": 5},
    ]
    go_results = await go_twin(go_bin, ops, _go_env(go_ident, go_ns))
    assert all(r["ok"] for r in go_results), [r for r in go_results if not r["ok"]]

    async with as_identity(py_ident, _env(py_ns)):
        for i, v in enumerate(values):
            await emit_signal(f" v{i} ", v)
        for spec in TEXT_SIGNALS:
            await _text_signal(spec)
        await emit_signal("v1", None)
        replayed = await replay_signals(since_seq=5)

    go_status = (await (await admin_in(go_ns)).get(STEP_RUN, SR))["status"]
    py_status = (await (await admin_in(py_ns)).get(STEP_RUN, SR))["status"]
    # Every event: seq, trimmed key, and the summary (Go-byte size and sha256, Go type name,
    # "struct" for the text-signal envelopes, no payload for a clear).
    assert_same(go_status["signalEvents"], py_status["signalEvents"], what="signalEvents")
    events = py_status["signalEvents"]
    assert [e["payload"]["type"] for e in events[len(values) : -1]] == ["struct"] * 5
    # ReplaySignals returns the same events as replay_signals.
    go_replay = go_results[-1]["value"]
    assert [(e["seq"], e["key"], e.get("payload")) for e in go_replay] == [
        (e.seq, e.key, e.payload) for e in replayed
    ]
    # status.signals: bubu keeps the latest value of every key (a summary = the event's
    # payload, marked redacted). Go v0.1.5 keeps only the key written while the map was
    # still empty: mergeStepRunStatus updates the map it read in place before the merge patch
    # is diffed, so later keys and clears never reach the API server (docs/differences.md).
    summaries = {e["key"]: {**e["payload"], "redacted": True} for e in events[: len(values)]}
    assert go_status["signals"] == {"v0": summaries["v0"]}
    del summaries["v1"]
    assert {k: v for k, v in py_status["signals"].items() if k.startswith("v")} == summaries


@pytest.mark.parametrize("spec", TEXT_SIGNALS, ids=[s["key"] for s in TEXT_SIGNALS])
async def test_text_signal_envelopes(
    spec: dict[str, Any],
    go_bin: Path,
    twins: Twins,
    admin_in: Any,
) -> None:
    # One signal per StepRun, so the Go side stores it too (see the test above).
    py_ns, go_ns = twins.py, twins.go
    go_ident, py_ident = twins.runner(go_ns), twins.runner(py_ns)
    [result] = await go_twin(go_bin, [{"op": "emit_text_signal", **spec}], _go_env(go_ident, go_ns))
    assert result["ok"], result
    async with as_identity(py_ident, _env(py_ns)):
        await _text_signal(spec)
    go_status = (await (await admin_in(go_ns)).get(STEP_RUN, SR))["status"]
    py_status = (await (await admin_in(py_ns)).get(STEP_RUN, SR))["status"]
    # the operator reconciles the rest of this status on its own schedule: compare the SDK's
    for field in ("signals", "signalEvents"):
        assert_same(go_status[field], py_status[field], what=f"status.{field}")


async def test_effects_ledger_and_claims(
    go_bin: Path,
    twins: Twins,
    admin_in: Any,
) -> None:
    py_ns, go_ns = twins.py, twins.go
    go_ident, py_ident = twins.runner(go_ns), twins.runner(py_ns)
    big = {"blob": "<" * 9000}  # over BUBU_EFFECT_MAX_DETAILS_BYTES: a Go-byte summary
    records: list[tuple[str, str, Any]] = [
        ("charge:order/42", " succeeded ", {"amount": 12.5, "note": "<&>", "n": 1.0}),
        ("\x1cseparator\x1c", "done", None),  # Go's TrimSpace keeps U+001C
        ("\u00a0nbsp\u2028", "done", {"list": ["a", 1e21, -0.0]}),  # ...trims U+00A0, U+2028
        ("big", "done", big),
        ("\u3000charge:order/42\t", "again", {"n": 2}),  # the same trimmed key: deduped
        ("\x1cseparator", "done", None),  # a different key for Go: kept
    ]
    probes = ("separator", "\x1cseparator\x1c", "nbsp", " big ", "nope")
    ops: list[dict[str, Any]] = [
        {"op": "record_effect", "key": k, "status": s, "details": d} for k, s, d in records
    ]
    ops += [{"op": "has_effect", "key": k} for k in probes]
    ops += [
        {"op": "execute_effect_once", "key": "send-mail", "result": {"id": "m-1", "to": "<a>"}},
        {"op": "execute_effect_once", "key": "send-mail", "result": {"id": "m-2"}},
        {"op": "execute_effect_once", "key": "retry-me", "fail": "smtp down"},
        {"op": "execute_effect_once", "key": "retry-me", "result": {"ok": True}},
        {"op": "execute_effect_once", "key": "fail-only", "fail": "boom"},
        {"op": "record_effect", "key": "scalar", "status": "done", "details": "just text"},
    ]
    go_results = await go_twin(go_bin, ops, _go_env(go_ident, go_ns))

    py_has: list[bool] = []
    py_runs: list[Any] = []
    async with as_identity(py_ident, _env(py_ns)):
        for k, s, d in records:
            await record_effect(k, s, d)
        for k in probes:
            py_has.append(await has_effect(k))

        async def send(result: dict[str, Any]) -> dict[str, Any]:
            return result

        py_runs.append(
            await execute_effect_once("send-mail", lambda: send({"id": "m-1", "to": "<a>"}))
        )
        with pytest.raises(EffectAlreadyRecordedError):
            await execute_effect_once("send-mail", lambda: send({"id": "m-2"}))

        async def fail() -> None:
            raise RuntimeError("smtp down")

        with pytest.raises(RuntimeError, match="smtp down"):
            await execute_effect_once("retry-me", fail)
        await execute_effect_once("retry-me", lambda: send({"ok": True}))
        with pytest.raises(RuntimeError, match="smtp down"):
            await execute_effect_once("fail-only", fail)
        await record_effect("scalar", "done", "just text")

    n, m = len(records), len(records) + len(probes)
    assert all(r["ok"] for r in go_results[:m]), go_results[:m]
    assert [r["value"] for r in go_results[n:m]] == py_has == [False, True, True, True, False]

    # Against the real operator Go's completion fails: its webhook refuses completedAt in whole
    # seconds next to acquireTime/renewTime with microseconds from the same instant
    # (docs/contract/effect-claim.md#go-breakages), or, when the operator's controller wrote the
    # claim first, the PUT gets a 409 that Go does not retry. The effect ran, the claim stays held,
    # the ledger never gets the entry, and the next call reports "already recorded" without running.
    # bubu rounds completedAt up and re-reads on 409 (docs/differences.md): its claim completes and
    # the ledger has the entry.
    first, second = go_results[m]["value"], go_results[m + 1]["value"]
    assert first["calls"] == 1 and first["result"] == py_runs[0]
    assert first["error"].startswith("failed to complete effect reservation: "), first
    assert (
        "spec.completedAt cannot be before" in first["error"]
        or "the object has been modified" in first["error"]
    ), first
    assert second["calls"] == 0 and second["alreadyRecorded"]
    # A failed run: Go's release (completionStatus=released without completedAt) is refused
    # too, so its retry is "already recorded"; bubu's release is accepted and its retry runs.
    failed, retried = go_results[m + 2]["value"], go_results[m + 3]["value"]
    assert failed["error"] == "smtp down"
    assert retried["calls"] == 0 and retried["alreadyRecorded"]
    assert go_results[m + 4]["value"]["error"] == "boom"
    # Go cannot record details that are not an object: the CRD wants one
    # (docs/contract/steprun-status.md#objects-only), so its status patch is refused until the 3 s
    # timeout. bubu wraps them as {"value": ...}.
    assert not go_results[m + 5]["ok"]

    go_status = (await (await admin_in(go_ns)).get(STEP_RUN, SR))["status"]
    py_status = (await (await admin_in(py_ns)).get(STEP_RUN, SR))["status"]
    recorded = [e for e in py_status["effects"] if e["key"] not in ("send-mail", "retry-me")]
    assert [e["key"] for e in py_status["effects"][len(recorded) - 1 :]] == [
        "send-mail",
        "retry-me",
        "scalar",
    ]
    assert py_status["effects"][-1]["details"] == {"value": "just text"}
    # the ledger both SDKs wrote with record_effect: trimmed keys, deduplication, details
    assert_same(go_status["effects"], recorded[:-1], what="status.effects")

    claim = identity.derive_effect_claim_name

    async def claims(key: str) -> tuple[dict[str, Any], dict[str, Any]]:
        go = await (await admin_in(go_ns)).get(EFFECT_CLAIM, claim(go_ns, SR, key))
        py = await (await admin_in(py_ns)).get(EFFECT_CLAIM, claim(py_ns, SR, key))
        return go, py

    def identity_part(obj: dict[str, Any]) -> dict[str, Any]:
        spec = obj["spec"]
        keep = ("effectKey", "stepRunRef", "idempotencyKey", "leaseDurationSeconds")
        return {
            "name": obj["metadata"]["name"],
            "ownerReferences": obj["metadata"].get("ownerReferences"),
            **{k: spec.get(k) for k in keep},
        }

    for key in ("send-mail", "retry-me", "fail-only"):
        go_claim, py_claim = await claims(key)
        # the same deterministic name and reservation identity (docs/contract/identity.md#names,
        # docs/contract/effect-claim.md#protocol)
        assert_same(
            identity_part(go_claim),
            identity_part(py_claim),
            go_names={claim(go_ns, SR, key): "<claim>", go_ns: "<ns>"},
            py_names={claim(py_ns, SR, key): "<claim>", py_ns: "<ns>"},
            what=f"EffectClaim {key}",
        )
        # Go's claim is still held by the run whose completion or release was refused
        assert go_claim["spec"].get("holderIdentity", "").startswith(f"{go_ns}:{SR}:{key}:")
        assert "completionStatus" not in go_claim["spec"]
    send_mail, retry_me, fail_only = [
        (await claims(k))[1]["spec"] for k in ("send-mail", "retry-me", "fail-only")
    ]
    assert send_mail["completionStatus"] == "completed" and send_mail["details"] == py_runs[0]
    assert retry_me["completionStatus"] == "completed" and retry_me["details"] == {"ok": True}
    assert "holderIdentity" not in fail_only and "completionStatus" not in fail_only


async def test_effect_release_after_a_conflict(
    go_bin: Path,
    twins: Twins,
    admin_in: Any,
    fault_proxy: Any,
) -> None:
    # A concurrent writer (the operator updating the claim) makes the release's PUT answer
    # 409. Go ignores the error (its release would be refused by the webhook anyway), so the
    # claim stays held until its 10-minute lease expires and the retry reports "already
    # recorded" without running; bubu re-reads and releases, and the retry runs.
    py_ns, go_ns = twins.py, twins.go
    for ns in (py_ns, go_ns):
        name = identity.derive_effect_claim_name(ns, SR, "mail")
        fault_proxy.conflict("PUT", rf"/namespaces/{ns}/effectclaims/{name}$", times=1)
    go_ident, py_ident = twins.runner(go_ns), twins.runner(py_ns)
    go_env = {
        "KUBECONFIG": str(fault_proxy.kubeconfig(token=go_ident.token, namespace=go_ns)),
        **_env(go_ns),
    }
    go_results = await go_twin(
        go_bin,
        [
            {"op": "execute_effect_once", "key": "mail", "fail": "smtp down"},
            {"op": "execute_effect_once", "key": "mail", "result": {"sent": True}},
        ],
        go_env,
    )
    assert go_results[0]["value"]["error"] == "smtp down"
    assert go_results[1]["value"] == {
        "already": True,
        "alreadyRecorded": True,
        "calls": 0,
        "error": "effect already recorded",
        "result": None,
    }

    py_ident = dataclasses.replace(
        py_ident, kubeconfig_path=fault_proxy.kubeconfig(token=py_ident.token, namespace=py_ns)
    )
    async with as_identity(py_ident, _env(py_ns)):

        async def fail() -> None:
            raise RuntimeError("smtp down")

        async def send() -> dict[str, Any]:
            return {"sent": True}

        with pytest.raises(RuntimeError):
            await execute_effect_once("mail", fail)
        assert await execute_effect_once("mail", send) == {"sent": True}
    conflicts = [r for r in fault_proxy.requests if r.fault is not None]
    assert len(conflicts) == 2
