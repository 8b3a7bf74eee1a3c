"""Signals: small, bounded progress facts on the StepRun status (docs/contract/signals.md#signals).

``emit_signal(key, value)`` sets ``status.signals[key]`` and appends a ``status.signalEvents``
entry ``{seq, key, emittedAt, payload}``. Values are never stored raw unless they are a
``SignalEnvelope``/``SignalMeta`` within ``BUBU_SIGNAL_MAX_PAYLOAD_BYTES``; anything else
becomes a redacted summary (size, sha256, type, length), so payloads (and the secrets they
may hold) never reach the status.

Sequence numbers survive restarts: each event takes ``max(seq on the StepRun) + 1`` inside the
status read-modify-write (sent with the resourceVersion, so a concurrent writer causes a
re-read, not a lost event). The Go SDK numbers events with a per-process counter from 1, and
after a restart its events collide with stored ones and are silently dropped (docs/differences.md);
see docs/differences.md.

Imports ``bubu._k8s``, ``bubu._runtime``, ``bubu._scope`` and ``bubu.errors``. Logger:
``bubu.signals``.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from bubu import _scope
from bubu._k8s import identity
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import STEP_RUN
from bubu._k8s.status import KubeStatusSink, StatusSink, merge_status, truncate_utf8
from bubu._runtime import parse
from bubu._runtime.env import RuntimeEnv
from bubu._runtime.sources import EnvSource, OsEnviron
from bubu.errors import SignalError, SignalsUnavailableError

__all__ = [
    "SignalEnvelope",
    "SignalEvent",
    "SignalMeta",
    "Signals",
    "emit_signal",
    "emit_text_signal",
    "replay_signals",
]

_DEFAULT_SAMPLE = 2048  # EmitTextSignal's default sample size (docs/contract/signals.md#signals)
_OP_TIMEOUT = 3.0  # Go's signal patch timeout
#: Go's ``ErrSignalsUnavailable`` text; every SignalsUnavailableError message starts with it.
_UNAVAILABLE: Final = "signal emission unavailable: not running inside a StepRun"


class SignalMeta(msgspec.Struct, omit_defaults=True, rename="camel"):
    """Metadata about a (possibly large) value, stored as-is (Go ``SignalMeta``).

    Field order is Go's declaration order (docs/contract/identity.md#go-json).
    """

    format: str = ""
    content_type: str = ""
    size_bytes: int = 0
    hash_sha256: str = ""
    attributes: dict[str, str] | None = None


class SignalEnvelope(msgspec.Struct, omit_defaults=True):
    """``{meta, sample}``: metadata plus a bounded sample, stored as-is (Go ``SignalEnvelope``).

    ``meta`` is always written (``"meta": {}`` when empty), as Go writes its struct field.
    """

    meta: SignalMeta = msgspec.field(default_factory=SignalMeta)
    sample: dict[str, Any] | None = None


class SignalEvent(msgspec.Struct, frozen=True):
    """One ``status.signalEvents`` entry, as ``replay_signals`` returns it.

    Attributes:
        seq: the sequence number (unique per StepRun, increasing).
        key: the signal key.
        emitted_at: RFC 3339 time of emission (whole seconds, UTC).
        payload: the bounded summary of the value, or None when the key was cleared.
    """

    seq: int
    key: str
    emitted_at: str | None = None
    payload: dict[str, Any] | None = None


def _summary(raw: bytes, value: Any, plain: Any, *, redacted: bool) -> dict[str, Any]:
    # Keys of maps are never included: they can be as sensitive as the values
    # (docs/contract/signals.md#signals). ``raw`` is Go's json.Marshal of the value, so size and
    # hash are the ones Go reports; the type is the value's own (a Struct is a Go struct: no
    # length).
    out: dict[str, Any] = {"sizeBytes": len(raw)}
    if raw:
        out["sha256"] = hashlib.sha256(raw).hexdigest()
    kind = identity.go_type_name(value)
    out["type"] = kind
    if kind in ("map", "array"):
        out["details"] = {"len": len(plain)}
    elif kind == "string":
        out["details"] = {"len": len(plain.encode("utf-8"))}  # Go len() counts bytes
    if redacted:
        out["redacted"] = True
    return out


def build_signal_values(
    key: str, value: Any, limit: int
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Return ``(status value, event payload)`` for ``value`` under the size ``limit``.

    See docs/contract/signals.md#signals.

    Raises:
        SignalError: the value is not JSON, or the stored form exceeds ``limit``.
    """
    if value is None:
        return None, None
    try:
        # Maps sorted, Struct fields in declaration order: as Go's json.Marshal writes them.
        plain = msgspec.to_builtins(value, str_keys=True, order="deterministic")
        raw = identity.go_json(plain, sort_keys=False)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise SignalError(f"signal {key!r} value is not JSON-serialisable: {exc}") from exc
    if _is_envelope(value) and len(raw) <= limit:
        stored: dict[str, Any] = plain
    else:
        stored = _summary(raw, value, plain, redacted=True)
    # Go measures the status value it marshals (statusRaw), not msgspec's encoding of it
    if len(identity.go_json(stored)) > limit:
        raise SignalError(f"signal summary for {key} exceeds {limit} bytes")
    return stored, _summary(raw, value, plain, redacted=False)


def _is_envelope(value: Any) -> bool:
    return isinstance(value, SignalEnvelope | SignalMeta)


def _max_events_seq(status: Mapping[str, Any]) -> int:
    events = status.get("signalEvents")
    if not isinstance(events, list):
        return 0
    return max(
        (int(e.get("seq") or 0) for e in events if isinstance(e, Mapping)),
        default=0,
    )


class Signals:
    """Signals of one StepRun: what the module-level helpers run.

    Args:
        status: where the StepRun's status is read and written.
        source: where ``BUBU_SIGNAL_*`` values are read.
    """

    def __init__(
        self, status: StatusSink, source: EnvSource | None = None, env: RuntimeEnv | None = None
    ) -> None:
        self.status = status
        self.source: EnvSource = source or OsEnviron()
        self.env = env

    def _limit(self) -> int:
        env = self.env if self.env is not None else _scope.env_of(None, self.source)
        return env.signal_max_payload_bytes

    async def emit(self, key: str, value: Any, *, seq: int | None = None) -> int:
        """Emit a signal and return its sequence number; see ``emit_signal``."""
        key = parse.go_trim_space(key or "") if isinstance(key, str) else ""
        if not key:
            raise SignalError("signal key is required")
        if seq is not None and seq <= 0:
            raise SignalError(f"signal sequence must be positive, got {seq}")
        stored, payload = build_signal_values(key, value, self._limit())
        emitted = identity.utc_seconds(datetime.now(UTC))
        assigned = 0

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            nonlocal assigned
            # Continue from the StepRun's highest seq: runs again on every retry, so a
            # concurrent writer (another process, a restarted pod) is always seen.
            assigned = seq if seq is not None else _max_events_seq(current) + 1
            event: dict[str, Any] = {"seq": assigned, "key": key, "emittedAt": emitted}
            if payload is not None:
                event["payload"] = payload
            return merge_status(current, {"signals": {key: stored}, "signalEvents": [event]})

        await self.status.update(mutate, operation_timeout=_OP_TIMEOUT, optimistic=True)
        return assigned

    async def replay(self, since_seq: int = 0) -> list[SignalEvent]:
        """Return the stored events with ``seq > since_seq``, sorted by seq."""
        current = await self.status.update(lambda _s: None, operation_timeout=_OP_TIMEOUT)
        return _events(current, since_seq)


def _events(status: Mapping[str, Any], since_seq: int) -> list[SignalEvent]:
    out: list[SignalEvent] = []
    for entry in status.get("signalEvents") or []:
        if not isinstance(entry, Mapping):
            continue
        seq = int(entry.get("seq") or 0)
        if seq <= since_seq:
            continue
        payload = entry.get("payload")
        out.append(
            SignalEvent(
                seq=seq,
                key=str(entry.get("key") or ""),
                emitted_at=entry.get("emittedAt"),
                payload=payload if isinstance(payload, dict) else None,
            )
        )
    out.sort(key=lambda e: e.seq)
    return out


def _step_run(scope: _scope.RunScope | None, env: RuntimeEnv) -> tuple[str, str]:
    name = (scope.step_run_name if scope is not None else "") or parse.go_trim_space(
        env.steprun_name
    )
    namespace = (scope.step_run_namespace if scope is not None else "") or parse.go_trim_space(
        env.steprun_namespace
    )
    return name, namespace


def _signals() -> Signals:
    scope = _scope.current()
    if scope is not None:
        return scope.engine(Signals, lambda: _make_signals(scope))
    return _make_signals(None)


def _make_signals(scope: _scope.RunScope | None) -> Signals:
    source: EnvSource = scope.source if scope is not None else OsEnviron()
    env = _scope.env_of(scope, source)
    name, namespace = _step_run(scope, env)
    if not name and scope is not None and scope.status is not None and scope.kube is None:
        name = "local"  # a local run: the in-memory status stands for the StepRun
    if not name:
        raise SignalsUnavailableError(f"{_UNAVAILABLE} (BUBU_STEPRUN_NAME is not set)")
    status = scope.status if scope is not None else None
    if status is None:
        kube = scope.kube if scope is not None else None
        if kube is None:
            raise SignalsUnavailableError(
                f"{_UNAVAILABLE} (no Kubernetes client in this run; call from inside "
                "start_batch/start_streaming/run_impulse or a testkit harness)"
            )
        status = KubeStatusSink(kube, name, namespace or None)
    return Signals(status, source, env)


async def emit_signal(key: str, payload: Any, *, seq: int | None = None) -> int:
    """Publish a signal on the current StepRun.

    ``payload`` is stored as a redacted summary (size, sha256, type, length) unless it is a
    ``SignalEnvelope`` or ``SignalMeta`` within ``BUBU_SIGNAL_MAX_PAYLOAD_BYTES``. ``None``
    clears the key (an event is still recorded).

    Args:
        key: the signal key.
        payload: any JSON value (dict, msgspec Struct, list, scalar) or an envelope.
        seq: an explicit sequence number (Go ``EmitSequencedSignal``); by default the next
            number after the highest one on the StepRun.

    Returns:
        The event's sequence number.

    Raises:
        SignalsUnavailableError: not running inside a StepRun.
        SignalError: an empty key, or a stored value above the size limit.
    """
    return await _signals().emit(key, payload, seq=seq)


async def emit_text_signal(
    key: str,
    text: str,
    *,
    format: str = "text",
    content_type: str = "",
    sample_bytes: int = 0,
    include_hash: bool = False,
    attributes: Mapping[str, str] | None = None,
    sample_extras: Mapping[str, Any] | None = None,
) -> int:
    """Publish metadata about a text (and optionally a bounded sample of it) as a signal.

    By default only ``meta`` (format, content type, byte size, optional sha256) is sent. A
    sample ``{"text": ..., "truncated": true?}`` is attached when ``sample_bytes`` is non-zero
    or ``sample_extras`` is given; it is cut on a UTF-8 boundary at ``sample_bytes`` (2048 when
    <= 0). Extras never overwrite ``text``/``truncated``.

    Returns:
        The event's sequence number.
    """
    data = text.encode("utf-8")
    meta = SignalMeta(
        # Go: firstNonEmpty(opts.Format, "text") and a trimmed content type.
        format=parse.go_trim_space(format or "") or "text",
        content_type=parse.go_trim_space(content_type or ""),
        size_bytes=len(data),
        hash_sha256=hashlib.sha256(data).hexdigest() if include_hash else "",
        attributes=dict(attributes) if attributes else None,
    )
    sample: dict[str, Any] | None = None
    if sample_bytes != 0 or sample_extras:
        limit = sample_bytes if sample_bytes > 0 else _DEFAULT_SAMPLE
        cut = truncate_utf8(text, limit)
        sample = {"text": cut}
        if len(cut.encode("utf-8")) < len(data):
            sample["truncated"] = True
        for name, value in (sample_extras or {}).items():
            sample.setdefault(name, value)
    return await emit_signal(key, SignalEnvelope(meta=meta, sample=sample))


async def replay_signals(
    since_seq: int = 0,
    *,
    step_run: str | None = None,
    namespace: str | None = None,
) -> list[SignalEvent]:
    """Return the StepRun's signal events with ``seq > since_seq``, sorted by seq.

    Args:
        since_seq: return only later events (0: all).
        step_run: another StepRun to read (default: the current one).
        namespace: its namespace (default: the StepRun namespace, then the client's).

    Raises:
        SignalsUnavailableError: no StepRun to read.
    """
    if step_run:
        scope = _scope.current()
        kube: KubeAPI | None = scope.kube if scope is not None else None
        if kube is None:
            raise SignalsUnavailableError(f"{_UNAVAILABLE} (no Kubernetes client in this run)")
        obj = await kube.get(STEP_RUN, step_run, namespace or None)
        status = obj.get("status")
        return _events(status if isinstance(status, Mapping) else {}, since_seq)
    return await _signals().replay(since_seq)
