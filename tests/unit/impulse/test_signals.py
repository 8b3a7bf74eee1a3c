"""emit_signal / emit_text_signal / replay_signals on the in-memory cluster.

See docs/contract/signals.md#signals.
"""

from __future__ import annotations

import pytest

from bubu import _scope
from bubu._k8s.resources import STEP_RUN
from bubu._runtime.sources import MappingSource
from bubu._signals import (
    SignalEnvelope,
    SignalMeta,
    emit_signal,
    emit_text_signal,
    replay_signals,
)
from bubu.errors import SignalError, SignalsUnavailableError

from .conftest import NS
from .conftest import STEP_RUN as SR


def status(world) -> dict:
    return world.cluster.peek(STEP_RUN, SR, NS)["status"]


async def test_payload_is_stored_as_a_redacted_summary(world):
    seq = await emit_signal("state", {"apiKey": "sk-secret", "n": 1})
    assert seq == 1
    stored = status(world)["signals"]["state"]
    assert stored["redacted"] is True and stored["type"] == "map"
    assert stored["details"] == {"len": 2} and len(stored["sha256"]) == 64
    assert "sk-secret" not in str(status(world)) and "apiKey" not in str(status(world))
    (event,) = status(world)["signalEvents"]
    assert event["seq"] == 1 and event["key"] == "state"
    assert (
        "redacted" not in event["payload"] and event["payload"]["sizeBytes"] == stored["sizeBytes"]
    )


async def test_envelopes_are_stored_verbatim(world):
    env = SignalEnvelope(meta=SignalMeta(format="json", size_bytes=10), sample={"text": "hi"})
    await emit_signal("env", env)
    assert status(world)["signals"]["env"] == {
        "meta": {"format": "json", "sizeBytes": 10},
        "sample": {"text": "hi"},
    }


async def test_sequence_continues_after_a_restart(world):
    assert await emit_signal("a", 1) == 1
    assert await emit_signal("a", 2) == 2
    # a "restarted process": a fresh scope with no in-memory state at all
    fresh = _scope.RunScope(source=MappingSource(world.env), kube=world.cluster)
    with _scope.activate(fresh):
        assert await emit_signal("a", 3) == 3
    seqs = [e["seq"] for e in status(world)["signalEvents"]]
    assert seqs == [1, 2, 3]  # Go would have dropped the third (seq 1 again, docs/differences.md)


async def test_explicit_sequence(world):
    assert await emit_signal("a", "x", seq=10) == 10
    assert await emit_signal("a", "y") == 11
    with pytest.raises(SignalError, match="must be positive"):
        await emit_signal("a", "z", seq=0)


async def test_none_clears_the_key_but_records_the_event(world):
    await emit_signal("k", {"v": 1})
    await emit_signal("k", None)
    assert "k" not in status(world).get("signals", {})
    assert "payload" not in status(world)["signalEvents"][-1]


async def test_summary_above_the_limit_is_refused_before_writing(world, scoped):
    with scoped(world, BUBU_SIGNAL_MAX_PAYLOAD_BYTES="32"):
        with pytest.raises(SignalError, match="signal summary for state exceeds 32 bytes"):
            await emit_signal("state", {"a": 1})
    assert "signalEvents" not in status(world)


async def test_replay_filters_and_sorts(world):
    for i in range(4):
        await emit_signal("tick", i)
    events = await replay_signals(since_seq=2)
    assert [e.seq for e in events] == [3, 4]
    assert all(e.key == "tick" for e in events)
    assert [e.seq for e in await replay_signals()] == [1, 2, 3, 4]
    other = await replay_signals(step_run=SR, namespace=NS)
    assert len(other) == 4


async def test_text_signal_metadata_and_bounded_sample(world):
    await emit_text_signal("log", "héllo world", sample_bytes=2, include_hash=True)
    stored = status(world)["signals"]["log"]
    assert stored["meta"]["format"] == "text" and stored["meta"]["sizeBytes"] == 12
    assert len(stored["meta"]["hashSha256"]) == 64
    assert stored["sample"] == {"text": "h", "truncated": True}  # never cut inside "é"
    await emit_text_signal("plain", "abc")
    assert "sample" not in status(world)["signals"]["plain"]
    await emit_text_signal("extras", "abc", sample_extras={"lang": "en", "text": "ignored"})
    assert status(world)["signals"]["extras"]["sample"] == {"text": "abc", "lang": "en"}


async def test_signals_need_a_step_run():
    with _scope.activate(_scope.RunScope(source=MappingSource({}))):
        # Go's ErrSignalsUnavailable text first, then why.
        with pytest.raises(
            SignalsUnavailableError,
            match=r"^signal emission unavailable: not running inside a StepRun "
            r"\(BUBU_STEPRUN_NAME is not set\)$",
        ):
            await emit_signal("k", 1)
    with _scope.activate(_scope.RunScope(source=MappingSource({"BUBU_STEPRUN_NAME": "sr"}))):
        with pytest.raises(
            SignalsUnavailableError,
            match=r"^signal emission unavailable: not running inside a StepRun \(no Kubernetes",
        ):
            await emit_signal("k", 1)
        with pytest.raises(
            SignalsUnavailableError,
            match=r"^signal emission unavailable: not running inside a StepRun "
            r"\(no Kubernetes client in this run\)$",
        ):
            await replay_signals(step_run="other")


async def test_empty_key_is_refused(world):
    with pytest.raises(SignalError, match="signal key is required"):
        await emit_signal(" ", 1)


# --- Go test cases not covered above (docs/contract/signals.md#signals) ---------------------------


@pytest.mark.parametrize("value", ["abc", "-5", "0"])
async def test_invalid_max_payload_falls_back_to_8192(world, scoped, value):
    # An envelope within the limit is stored verbatim; above it, only its summary is stored.
    with scoped(world, BUBU_SIGNAL_MAX_PAYLOAD_BYTES=value):
        await emit_text_signal("mid", "y" * 8000, sample_bytes=8000)
        await emit_text_signal("huge", "y" * 8200, sample_bytes=8200)
    signals = status(world)["signals"]
    assert len(signals["mid"]["sample"]["text"]) == 8000
    assert signals["huge"]["redacted"] is True and "sample" not in signals["huge"]


async def test_max_payload_env_is_honoured(world, scoped):
    with scoped(world, BUBU_SIGNAL_MAX_PAYLOAD_BYTES="100000"):
        await emit_text_signal("wide", "y" * 9000, sample_bytes=9000)
    assert len(status(world)["signals"]["wide"]["sample"]["text"]) == 9000


async def test_text_sample_defaults_to_2048_bytes_when_only_extras_are_given(world):
    await emit_text_signal("long", "z" * 3000, sample_extras={"lang": "en"})
    sample = status(world)["signals"]["long"]["sample"]
    assert len(sample["text"]) == 2048 and sample["truncated"] is True and sample["lang"] == "en"


async def test_replay_of_a_named_step_run_defaults_to_the_client_namespace(world):
    await emit_signal("tick", 1)
    # No BUBU_STEPRUN_NAMESPACE: the in-memory cluster's namespace (the client's) is used.
    scope = _scope.RunScope(source=MappingSource({}), kube=world.cluster)
    with _scope.activate(scope):
        events = await replay_signals(step_run=SR)
    assert [e.seq for e in events] == [1]


async def test_replay_without_a_step_run_is_unavailable():
    with _scope.activate(_scope.RunScope(source=MappingSource({}))):
        with pytest.raises(SignalsUnavailableError):
            await replay_signals()


# --- edges the mutation run showed untested ----------------------------------------------------


def test_summary_of_a_map_with_non_string_keys_uses_their_text() -> None:
    # Go's json.Marshal writes map[int]T keys as strings, sorted.
    import hashlib

    from bubu._signals import build_signal_values

    _stored, payload = build_signal_values("k", {2: "b", 1: "a"}, 8192)
    raw = b'{"1":"a","2":"b"}'
    assert payload == {
        "sizeBytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "type": "map",
        "details": {"len": 2},
    }


def test_non_json_signal_values_are_refused_naming_the_key() -> None:
    from bubu._signals import build_signal_values

    with pytest.raises(SignalError, match=r"^signal 'k' value is not JSON-serialisable: "):
        build_signal_values("k", {"a": float("nan")}, 8192)
    with pytest.raises(SignalError, match=r"^signal 'k' value is not JSON-serialisable: "):
        build_signal_values("k", object(), 8192)


def test_envelope_and_summary_limits_are_inclusive() -> None:
    import msgspec

    from bubu._signals import build_signal_values

    env = SignalEnvelope(meta=SignalMeta(format="json"), sample={"t": "hi"})
    size = len(msgspec.json.encode(env))
    stored, _ = build_signal_values("k", env, size)
    assert stored == {"meta": {"format": "json"}, "sample": {"t": "hi"}}  # fits exactly: kept
    stored, _ = build_signal_values("k", env, size + 200)
    assert "meta" in stored
    summary, _ = build_signal_values("k", "x" * 50, 10_000)
    limit = len(msgspec.json.encode(summary))
    assert build_signal_values("k", "x" * 50, limit)[0] == summary  # exactly at the limit
    with pytest.raises(SignalError, match=f"signal summary for k exceeds {limit - 1} bytes"):
        build_signal_values("k", "x" * 50, limit - 1)


def test_replayed_events_skip_junk_and_keep_their_fields() -> None:
    from bubu._signals import SignalEvent, _events, _max_events_seq

    stored = {
        "signalEvents": [
            "junk",
            {"seq": 3, "key": "c", "emittedAt": "2024-01-01T00:00:03Z", "payload": {"n": 3}},
            {"seq": 1, "key": "a", "payload": "not an object"},
            {"key": "no-seq"},
            {"seq": 2},
        ]
    }
    assert _events(stored, 0) == [
        SignalEvent(seq=1, key="a", emitted_at=None, payload=None),
        SignalEvent(seq=2, key="", emitted_at=None, payload=None),
        SignalEvent(seq=3, key="c", emitted_at="2024-01-01T00:00:03Z", payload={"n": 3}),
    ]
    assert [e.seq for e in _events(stored, 2)] == [3]
    assert _max_events_seq(stored) == 3
    assert _max_events_seq({"signalEvents": [{"key": "x"}, "junk"]}) == 0
    assert _max_events_seq({}) == 0
    assert _max_events_seq({"signalEvents": ["junk"]}) == 0
    assert _max_events_seq({"signalEvents": []}) == 0
    assert _max_events_seq({"signalEvents": "junk"}) == 0
