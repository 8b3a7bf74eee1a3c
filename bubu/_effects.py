"""Exactly-once side effects on EffectClaim and the StepRun effects ledger.

See docs/contract/effect-claim.md#protocol, docs/contract/signals.md#effects-ledger.

``execute_effect_once(key, fn)`` runs ``fn`` at most once per (StepRun, key) across processes
and restarts, within the limits of a lease: an EffectClaim (docs/contract/effect-claim.md) names the
holder, and the holder renews the lease while ``fn`` runs. ``record_effect`` appends to
``StepRun.status.effects`` (the ledger, a mirror that the first writer of a key wins) and
``has_effect`` reads it.

Write order, chosen so that a crash at any point recovers (docs/effects.md):

1. claim: CREATE the EffectClaim (or take over a released or expired one with a conditional
   PUT); from here other workers see the effect as held;
2. run ``fn``, renewing the lease every ``clamp(lease/3, 100 ms, 30 s)``;
3. complete: PUT ``completionStatus=completed`` with the details - the claim is the authority;
4. ledger: append ``{key, status: succeeded, details}`` to the StepRun (idempotent by key).

A crash before 3 leaves a held claim that expires after the lease; the next caller takes it
over and runs ``fn`` again (at-least-once inside one lease, as in Go). A crash between 3 and 4
leaves a completed claim without a ledger entry: any later ``execute_effect_once`` or
``has_effect`` on that key repairs the ledger from the claim's details (Go leaves ``HasEffect``
false forever here).

Departures from Go, all deliberate (docs/differences.md): timestamps valid under the webhook
(``completedAt`` is whole seconds rounded *up*, so ``completedAt >= renewTime``;
docs/contract/effect-claim.md#completion-and-release); release drops the holder and the lease times
as Go does but leaves ``completionStatus`` empty (project decision (a),
docs/contract/effect-claim.md#completion-and-release); every claim write is a PUT carrying the
resourceVersion; the lease can be shortened with ``BUBU_EFFECT_LEASE_DURATION`` (tests); the holder
identity is capped at 253 characters; and the result is Pythonic: ``fn``'s value on the first run,
``EffectAlreadyRecordedError`` (with ``.details``) otherwise, instead of ``(nil, true, err)``.

Imports ``bubu._k8s``, ``bubu._runtime``, ``bubu._scope`` and ``bubu.errors``. Logger:
``bubu.effects``.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import hashlib
import logging
import math
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeVar

import msgspec

from bubu import _scope
from bubu._k8s import errors as k8s_errors
from bubu._k8s import identity
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN
from bubu._k8s.status import KubeStatusSink, StatusSink, merge_status
from bubu._runtime import parse
from bubu._runtime.env import RuntimeEnv
from bubu._runtime.sources import EnvSource, OsEnviron
from bubu.errors import (
    ConflictError,
    EffectAlreadyRecordedError,
    EffectError,
    EffectsUnavailableError,
    KubernetesError,
    NotFoundError,
)

__all__ = [
    "DEFAULT_LEASE_DURATION",
    "Effects",
    "execute_effect_once",
    "has_effect",
    "record_effect",
]

_log = logging.getLogger("bubu.effects")

T = TypeVar("T")

# Go's defaultEffectLeaseDuration: 10 minutes (docs/contract/effect-claim.md#roles)
DEFAULT_LEASE_DURATION = 600.0
_OP_TIMEOUT = 3.0  # Go's effectPatchTimeout: bounds claim reads and the release
_MAX_HOLDER = 253  # spec.holderIdentity maxLength (docs/contract/effect-claim.md#holder-identity)
_TAKEOVER_ATTEMPTS = 3


def _micro(moment: datetime) -> str:
    # metav1.MicroTime: exactly six fractional digits
    # (docs/contract/effect-claim.md#completion-and-release).
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _seconds_ceil(moment: datetime) -> str:
    # metav1.Time drops fractions on re-encode; rounding *up* keeps completedAt >= renewTime
    # after Go truncates it (the Go SDK's precision bug,
    # docs/contract/effect-claim.md#go-breakages).
    moment = moment.astimezone(UTC)
    if moment.microsecond:
        moment = moment.replace(microsecond=0) + timedelta(seconds=1)
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def lease_duration(source: EnvSource) -> float:
    """Return the claim lease in seconds: ``BUBU_EFFECT_LEASE_DURATION`` (Go duration), 10m default.

    Go hard-codes 10 minutes; the variable exists so that tests of lease expiry do not wait
    that long. An invalid or non-positive value warns and gives the default (Go ``envDur``).
    """
    return _scope.env_of(None, source).effect_lease_duration


def renew_interval(lease: float) -> float:
    """Return Go's renewal period ``clamp(lease/3, 100 ms, 30 s)`` (30 s for the default)."""
    return min(max(lease / 3.0, 0.1), 30.0)


def bounded_details(value: Any, limit: int) -> dict[str, Any] | None:
    """Return effect details as a JSON object no larger than ``limit`` bytes.

    See docs/contract/signals.md#effects-ledger.

    Non-objects are wrapped as ``{"value": x}`` (the CRD declares ``details`` an
    object, docs/contract/steprun-status.md#objects-only). Larger values become ``{truncated,
    sizeBytes, sha256, type, details: {len}}``.

    Raises:
        EffectError: the value is not JSON, or even the summary exceeds the limit.
    """
    if value is None:
        return None
    try:
        # Measured and hashed over Go's json.Marshal bytes, so the summary is the one Go writes.
        plain = msgspec.to_builtins(value, str_keys=True, order="deterministic")
        raw = identity.go_json(plain, sort_keys=False)
    except (TypeError, ValueError, msgspec.EncodeError) as exc:
        raise EffectError(f"effect details are not JSON-serialisable: {exc}") from exc
    if len(raw) <= limit:
        return plain if isinstance(plain, dict) else {"value": plain}
    summary: dict[str, Any] = {
        "truncated": True,
        "sizeBytes": len(raw),
        "sha256": hashlib.sha256(raw).hexdigest(),
        "type": identity.go_type_name(value),
    }
    if summary["type"] in ("map", "array"):
        summary["details"] = {"len": len(plain)}
    elif summary["type"] == "string":
        summary["details"] = {"len": len(plain.encode("utf-8"))}
    if len(identity.go_json(summary)) > limit:
        raise EffectError(f"truncated effect details exceed {limit} bytes")
    return summary


# --- the in-process gate (docs/contract/effect-claim.md#protocol) ---------------------------------


@dataclass
class _Gate:
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    refs: int = 0
    completed: bool = False
    details: dict[str, Any] | None = None


_GATES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, _Gate]] = (
    weakref.WeakKeyDictionary()
)


@contextlib.asynccontextmanager
async def _gate(key: str) -> AsyncIterator[_Gate]:
    """Serialise calls for one key in this process; evicted when nobody holds or waits."""
    gates = _GATES.setdefault(asyncio.get_running_loop(), {})
    gate = gates.setdefault(key, _Gate())
    gate.refs += 1
    try:
        async with gate.lock:
            yield gate
    finally:
        gate.refs -= 1
        if gate.refs == 0:
            gates.pop(key, None)


def _gate_count() -> int:
    """Return the number of live gates on this loop (tests check eviction)."""
    return len(_GATES.get(asyncio.get_running_loop(), {}))


# --- the engine ---------------------------------------------------------------------------------


class Effects:
    """Effects of one StepRun: what the module-level helpers run.

    Args:
        kube: the client for EffectClaims (``get, create, update``); None in local mode, where
            only the in-process gate and the status sink's ledger apply.
        status: where the StepRun's status (the ledger) is read and written.
        step_run: the StepRun name.
        namespace: the StepRun namespace.
        source: where ``BUBU_EFFECT_*`` values are read.
    """

    def __init__(
        self,
        kube: KubeAPI | None,
        status: StatusSink,
        step_run: str,
        namespace: str,
        source: EnvSource | None = None,
        *,
        env: RuntimeEnv | None = None,
    ) -> None:
        self.kube = kube
        self.status = status
        self.step_run = step_run
        self.namespace = namespace
        self.source: EnvSource = source or OsEnviron()
        self.env = env
        self._queue: list[tuple[dict[str, Any], asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    def _settings(self) -> RuntimeEnv:
        # The run's environment when the engine belongs to a run; else read from its source.
        return self.env if self.env is not None else _scope.env_of(None, self.source)

    def _max_details(self) -> int:
        return self._settings().effect_max_details_bytes

    # -- ledger ----------------------------------------------------------------------------

    async def _ledger(self) -> list[dict[str, Any]]:
        current = await self.status.update(lambda _s: None, operation_timeout=_OP_TIMEOUT)
        effects = current.get("effects")
        return [e for e in effects if isinstance(e, dict)] if isinstance(effects, list) else []

    async def record(
        self, key: str, status: str, details: Any = None, *, bounded: bool = False
    ) -> None:
        """Append ``{key, status, emittedAt, details}`` to the ledger (first writer wins)."""
        key = _check_key(key)
        entry: dict[str, Any] = {
            "seq": 0,
            "key": key,
            "status": parse.go_trim_space(status or ""),
            "emittedAt": identity.utc_seconds(datetime.now(UTC)),
        }
        payload = details if bounded else bounded_details(details, self._max_details())
        if payload is not None:
            entry["details"] = payload
        await self._append(entry)

    def _ledger_timeout(self) -> float:
        return self._settings().k8s_operation_timeout

    async def _append(self, entry: dict[str, Any]) -> None:
        """Queue a ledger entry; one writer sends everything queued in one status write.

        ``status.effects`` is an atomic list (docs/contract/steprun-status.md#optimistic-writes), so
        every append rewrites it. The write carries the resourceVersion (a concurrent writer means
        re-read and merge, never a lost entry), and concurrent appends of this process share one
        write instead of each fighting the others for the same resourceVersion.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((entry, done))
        if self._writer is None or self._writer.done():
            self._writer = asyncio.get_running_loop().create_task(
                self._write_ledger(), name="bubu.effects.ledger"
            )
        await done

    async def _write_ledger(self) -> None:
        while self._queue:
            batch, self._queue = self._queue, []
            entries = [entry for entry, _ in batch]

            def mutate(current: dict[str, Any], entries: list[dict[str, Any]] = entries) -> Any:
                return merge_status(current, {"effects": entries})

            try:
                await self.status.update(
                    mutate, operation_timeout=self._ledger_timeout(), optimistic=True
                )
            except BaseException as exc:
                for _, fut in batch:
                    if not fut.done():
                        fut.set_exception(exc)
                if isinstance(exc, asyncio.CancelledError):
                    raise
                continue
            for _, fut in batch:
                if not fut.done():
                    fut.set_result(None)

    async def has(self, key: str) -> bool:
        """Return True when the ledger or a completed claim holds ``key`` (repairs the ledger)."""
        key = _check_key(key)
        if any(parse.go_trim_space(e.get("key") or "") == key for e in await self._ledger()):
            return True
        claim = await self._get_claim(key)
        if claim is not None and _spec(claim).get("completionStatus") == "completed":
            await self._repair_ledger(key, claim)
            return True
        return False

    async def _repair_ledger(self, key: str, claim: Mapping[str, Any]) -> None:
        # Crash between claim completion and the ledger write: the claim is the authority.
        _log.info("effect %r is completed on its claim but missing from the ledger; repairing", key)
        details = _spec(claim).get("details")
        await self.record(
            key, "succeeded", details if isinstance(details, dict) else None, bounded=True
        )

    # -- claims ----------------------------------------------------------------------------

    def _claim_name(self, key: str) -> str:
        return identity.derive_effect_claim_name(self.namespace, self.step_run, key)

    async def _get_claim(self, key: str) -> dict[str, Any] | None:
        if self.kube is None:
            return None
        try:
            return await self.kube.get(EFFECT_CLAIM, self._claim_name(key), self.namespace)
        except NotFoundError:
            return None

    def _holder(self, key: str) -> str:
        holder = f"{self.namespace}:{self.step_run}:{key}:{uuid.uuid4()}"
        if len(holder) <= _MAX_HOLDER:
            return holder
        # Go can overflow the 253 limit with long keys
        # (docs/contract/effect-claim.md#holder-identity): hash the key instead.
        digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
        prefix = f"{self.namespace}:{self.step_run}"[: _MAX_HOLDER - 55]
        return f"{prefix}:{digest}:{uuid.uuid4()}"

    async def execute_once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        """Run ``fn`` once for ``key``; see ``execute_effect_once``."""
        key = _check_key(key)
        if not callable(fn):
            raise EffectError("effect function is required")
        async with _gate(f"{self.namespace}:{self.step_run}:{key}") as gate:
            if gate.completed:
                raise _already(key, gate.details)
            try:
                ledger = await self._ledger()
            except KubernetesError as exc:
                raise k8s_errors.with_context(
                    exc, "failed to fetch StepRun for effect lookup"
                ) from exc
            for entry in ledger:
                if parse.go_trim_space(entry.get("key") or "") == key:
                    gate.completed, gate.details = True, entry.get("details")
                    raise _already(key, gate.details)
            if self.kube is None:
                result = await fn()
                gate.completed = True
                gate.details = bounded_details(result, self._max_details())
                await self.record(key, "succeeded", gate.details, bounded=True)
                return result
            claim, holder = await self._reserve(key, gate)
            result = await self._run_holding(key, claim, holder, fn)
            # No re-execution in this process from here on, even if the writes below fail.
            gate.completed = True
            details = bounded_details(result, self._max_details())
            gate.details = details
            await self._complete(key, holder, details)
            await self.record(key, "succeeded", details, bounded=True)
            return result

    async def _reserve(self, key: str, gate: _Gate) -> tuple[dict[str, Any], str]:
        assert self.kube is not None
        step = await self.kube.get(STEP_RUN, self.step_run, self.namespace)
        meta = step.get("metadata") or {}
        uid = meta.get("uid")
        idem = parse.go_trim_space(_spec(step).get("idempotencyKey") or "")
        holder = self._holder(key)
        now = datetime.now(UTC)
        name = self._claim_name(key)
        lease = max(1, math.ceil(self._settings().effect_lease_duration))
        spec: dict[str, Any] = {
            "stepRunRef": {"name": self.step_run, **({"uid": uid} if uid else {})},
            "effectKey": key,
            "holderIdentity": holder,
            "acquireTime": _micro(now),
            "renewTime": _micro(now),
            "leaseDurationSeconds": lease,
        }
        if idem:
            spec["idempotencyKey"] = idem
        body: dict[str, Any] = {"metadata": {"name": name}, "spec": spec}
        if uid:
            body["metadata"]["ownerReferences"] = [
                {
                    "apiVersion": STEP_RUN.api_version,
                    "kind": STEP_RUN.kind,
                    "name": self.step_run,
                    "uid": uid,
                }
            ]
        try:
            created = await self.kube.create(EFFECT_CLAIM, body, self.namespace)
            return created, holder
        except ConflictError as exc:
            if exc.reason not in (None, "AlreadyExists"):
                raise
        for _attempt in range(_TAKEOVER_ATTEMPTS):
            claim = await self.kube.get(EFFECT_CLAIM, name, self.namespace)
            cspec = _spec(claim)
            trim = parse.go_trim_space
            # Go's effectReservationMatchesStepRun compares trimmed values (strings.TrimSpace).
            if (
                trim(cspec.get("effectKey") or "") != key
                or trim((cspec.get("stepRunRef") or {}).get("name") or "") != trim(self.step_run)
                or ((cspec.get("stepRunRef") or {}).get("uid") not in (None, "", uid))
                or trim(cspec.get("idempotencyKey") or "") not in ("", idem)
            ):
                raise EffectError(
                    f"existing effect reservation {self.namespace}/{name} does not match "
                    "StepRun/effect identity"
                )
            if cspec.get("completionStatus") == "completed":
                gate.completed = True
                gate.details = cspec.get("details")
                ledger = await self._ledger()
                if not any(parse.go_trim_space(e.get("key") or "") == key for e in ledger):
                    await self._repair_ledger(key, claim)
                raise _already(key, gate.details)
            free = not cspec.get("holderIdentity")
            stale = _is_stale(claim, datetime.now(UTC))
            if not free and not stale:
                # Held by a live worker: "already" as in Go, but flagged as in progress.
                raise _already(key, None, in_progress=True)
            takeover = copy.deepcopy(claim)
            tspec = takeover.setdefault("spec", {})
            now = datetime.now(UTC)
            tspec["holderIdentity"] = holder
            tspec["acquireTime"] = _micro(now)
            tspec["renewTime"] = _micro(now)
            if not tspec.get("leaseDurationSeconds"):
                tspec["leaseDurationSeconds"] = lease
            if stale and not free:
                tspec["leaseTransitions"] = int(tspec.get("leaseTransitions") or 0) + 1
            try:
                updated = await self.kube.replace(EFFECT_CLAIM, name, takeover, self.namespace)
                _log.info("took over effect claim %s (%s)", name, "stale" if stale else "free")
                return updated, holder
            except ConflictError:
                continue  # someone else wrote it: re-read and decide again
            except KubernetesError as exc:
                raise k8s_errors.with_context(
                    exc, "failed to recover stale effect reservation"
                ) from exc
        raise _already(key, None, in_progress=True)

    async def _run_holding(
        self,
        key: str,
        claim: dict[str, Any],
        holder: str,
        fn: Callable[[], Awaitable[T]],
    ) -> T:
        lease = float(_spec(claim).get("leaseDurationSeconds") or DEFAULT_LEASE_DURATION)
        work: asyncio.Future[T] = asyncio.ensure_future(fn())
        renewer = asyncio.get_running_loop().create_task(
            self._renew(key, holder, lease, work), name="bubu.effects.renew"
        )
        try:
            result = await work
        except asyncio.CancelledError:
            lost = await _stop(renewer)
            await self._release(key, holder)
            if lost is not None and not _cancelling():
                # fn was cancelled because the lease was lost, not because we were.
                raise lost from None
            raise
        except BaseException:
            await _stop(renewer)
            await self._release(key, holder)
            raise
        lost = await _stop(renewer)
        if lost is not None:
            await self._release(key, holder)
            raise lost
        return result

    async def _renew(
        self, key: str, holder: str, lease: float, work: asyncio.Future[Any]
    ) -> BaseException | None:
        """Renew until cancelled; on ownership loss cancel ``work`` and return the error."""
        assert self.kube is not None
        interval = renew_interval(lease)
        name = self._claim_name(key)
        last_ok = asyncio.get_running_loop().time()
        while True:
            await asyncio.sleep(interval)
            try:
                claim = await self.kube.get(EFFECT_CLAIM, name, self.namespace)
                cspec = _spec(claim)
                if cspec.get("holderIdentity") != holder:
                    # A plain EffectError reaches the caller: no private type escapes bubu.
                    work.cancel()
                    if cspec.get("completionStatus") == "completed":
                        return EffectError(
                            "effect reservation completed by another holder before renewal"
                        )
                    return EffectError("effect reservation ownership lost before renewal")
                updated = copy.deepcopy(claim)
                now = datetime.now(UTC)
                uspec = updated.setdefault("spec", {})
                uspec["renewTime"] = _micro(now)
                uspec.setdefault("acquireTime", _micro(now))
                await self.kube.replace(EFFECT_CLAIM, name, updated, self.namespace)
                last_ok = asyncio.get_running_loop().time()
            except (KubernetesError, NotFoundError) as exc:
                # A transient failure is retried on the next tick while half the lease is
                # left; Go gives up on the first error.
                if asyncio.get_running_loop().time() - last_ok > lease / 2 or not exc.retryable:
                    lost = EffectError(f"effect lease renewal failed: {exc}")
                    work.cancel()
                    return lost
                _log.debug("effect lease renewal failed (%s); retrying", exc)

    async def _complete(self, key: str, holder: str, details: dict[str, Any] | None) -> None:
        assert self.kube is not None
        name = self._claim_name(key)
        for _attempt in range(_TAKEOVER_ATTEMPTS):
            try:
                claim = await self.kube.get(EFFECT_CLAIM, name, self.namespace)
            except KubernetesError as exc:
                raise EffectError(f"failed to complete effect reservation: {exc}") from exc
            cspec = _spec(claim)
            if cspec.get("holderIdentity") != holder:
                if cspec.get("completionStatus") == "completed":
                    return
                raise EffectError("effect reservation ownership lost before completion")
            done = copy.deepcopy(claim)
            dspec = done.setdefault("spec", {})
            now = datetime.now(UTC)
            dspec["renewTime"] = _micro(now)
            dspec["completionStatus"] = "completed"
            dspec["completedAt"] = _seconds_ceil(now)
            if details is not None:
                dspec["details"] = details
            else:
                dspec.pop("details", None)
            try:
                await self.kube.replace(EFFECT_CLAIM, name, done, self.namespace)
                return
            except ConflictError:
                continue
            except KubernetesError as exc:
                raise EffectError(f"failed to complete effect reservation: {exc}") from exc
        raise EffectError("failed to complete effect reservation: conflict persisted")

    async def _release(self, key: str, holder: str) -> None:
        """Clear our holder so a retry can take the claim at once (option (a)).

        See docs/contract/effect-claim.md#completion-and-release.
        """
        if self.kube is None:
            return
        name = self._claim_name(key)
        try:
            async with asyncio.timeout(_OP_TIMEOUT):
                for _attempt in range(_TAKEOVER_ATTEMPTS):
                    claim = await self.kube.get(EFFECT_CLAIM, name, self.namespace)
                    if _spec(claim).get("holderIdentity") != holder:
                        return  # not ours any more: never clear someone else's claim
                    released = copy.deepcopy(claim)
                    spec = released.setdefault("spec", {})
                    # Go's release drops the holder and the lease times; completionStatus stays
                    # empty (option (a)) because the webhook wants completedAt with it.
                    for field_name in ("holderIdentity", "acquireTime", "renewTime", "details"):
                        spec.pop(field_name, None)
                    try:
                        await self.kube.replace(EFFECT_CLAIM, name, released, self.namespace)
                        return
                    except ConflictError:
                        continue
        except (KubernetesError, TimeoutError) as exc:
            # Best effort, as in Go: the lease still expires on its own.
            _log.warning("failed to release effect claim %s: %s", name, exc)


async def _stop(renewer: asyncio.Task[BaseException | None]) -> BaseException | None:
    """Stop the renewal task and return the ownership error it found, if any."""
    renewer.cancel()
    await asyncio.wait([renewer])
    if renewer.cancelled():
        return None
    if renewer.exception() is not None:
        return renewer.exception()
    return renewer.result()


def _cancelling() -> bool:
    task = asyncio.current_task()
    return task is not None and task.cancelling() > 0


def _spec(obj: Mapping[str, Any]) -> dict[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, dict) else {}


def _is_stale(claim: Mapping[str, Any], now: datetime) -> bool:
    spec = _spec(claim)
    base = (
        identity.parse_time(spec.get("renewTime"))
        or identity.parse_time(spec.get("acquireTime"))
        or identity.parse_time((claim.get("metadata") or {}).get("creationTimestamp"))
    )
    if base is None:
        return True
    seconds = spec.get("leaseDurationSeconds") or DEFAULT_LEASE_DURATION
    return now >= base + timedelta(seconds=float(seconds))


def _check_key(key: str) -> str:
    key = parse.go_trim_space(key or "") if isinstance(key, str) else ""
    if not key:
        raise EffectError("effect key is required")
    return key


#: Go's ``ErrEffectsUnavailable`` text; every EffectsUnavailableError message starts with it.
_UNAVAILABLE: Final = "effect recording unavailable: not running inside a StepRun"


def _already(key: str, details: Any, *, in_progress: bool = False) -> EffectAlreadyRecordedError:
    # Go's ErrEffectAlreadyRecorded text first, then which effect and why.
    what = " is in progress under another holder" if in_progress else ""
    return EffectAlreadyRecordedError(
        f"effect already recorded: {key!r}{what}",
        key=key,
        details=details if isinstance(details, dict) else None,
        in_progress=in_progress,
    )


# --- the helpers users call ---------------------------------------------------------------------


def _effects() -> Effects:
    scope = _scope.current()
    if scope is not None:
        return scope.engine(Effects, lambda: _make_effects(scope))
    return _make_effects(None)


def _make_effects(scope: _scope.RunScope | None) -> Effects:
    source: EnvSource = scope.source if scope is not None else OsEnviron()
    env = _scope.env_of(scope, source)
    name = (scope.step_run_name if scope is not None else "") or parse.go_trim_space(
        env.steprun_name
    )
    kube = scope.kube if scope is not None else None
    if not name and scope is not None and scope.status is not None and kube is None:
        # A local run (``bubu run``, BatchHarness): the in-memory status is the StepRun, and
        # claims reduce to the in-process gate.
        name = "local"
    if not name:
        raise EffectsUnavailableError(f"{_UNAVAILABLE} (BUBU_STEPRUN_NAME is not set)")
    namespace = (
        (scope.step_run_namespace if scope is not None else "")
        or parse.go_trim_space(env.steprun_namespace)
        or (kube.namespace if kube is not None else "")
    )
    status = scope.status if scope is not None else None
    if status is None:
        if kube is None:
            raise EffectsUnavailableError(
                f"{_UNAVAILABLE} (no Kubernetes client in this run; call from inside "
                "start_batch/start_streaming/run_impulse or a testkit harness)"
            )
        status = KubeStatusSink(kube, name, namespace or None)
    return Effects(kube, status, name, namespace, source, env=env)


async def record_effect(key: str, status: str, details: Any = None) -> None:
    """Append an entry to the StepRun's effects ledger (``status.effects``).

    The first record of a key wins; later ones are dropped by the merge
    (docs/contract/signals.md#effects-ledger).

    Args:
        key: the effect key.
        status: a short status word (``succeeded``...).
        details: any JSON value; non-objects are wrapped as ``{"value": x}``, and values above
            ``BUBU_EFFECT_MAX_DETAILS_BYTES`` are replaced by a summary (size, sha256, type).

    Raises:
        EffectsUnavailableError: not running inside a StepRun.
        EffectError: an empty key, or details that cannot be encoded.
    """
    await _effects().record(key, status, details)


async def has_effect(key: str) -> bool:
    """Return True when ``key`` is recorded for this StepRun (ledger or completed claim).

    Raises:
        EffectsUnavailableError: not running inside a StepRun.
    """
    return await _effects().has(key)


async def execute_effect_once(key: str, fn: Callable[[], Awaitable[T]]) -> T:
    """Run ``await fn()`` at most once for this StepRun and ``key``, across processes.

    Returns:
        ``fn``'s result, on the run that executed it.

    Raises:
        EffectAlreadyRecordedError: the effect is completed (``.details`` holds what was
            recorded) or held by another live worker (``.in_progress`` is True). Go returns
            ``(nil, true, ErrEffectAlreadyRecorded)`` in both cases.
        EffectsUnavailableError: not running inside a StepRun.
        EffectError: the claim could not be written, or the lease was lost while ``fn`` ran
            (``fn`` is then cancelled).
        Exception: whatever ``fn`` raised; the claim is released so a retry can run it.
    """
    return await _effects().execute_once(key, fn)
