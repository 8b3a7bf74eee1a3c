"""The StepRun status protocol (docs/contract/steprun-status.md#merge-rules).

Every SDK write to ``StepRun.status`` (the batch result, effects, signals, logs) goes through
``update_step_run_status``:

1. GET the StepRun directly (never a LIST: the runner Role has no ``list``,
   docs/deploying.md#engram-runner-role).
2. Zombie-pod fencing: if our pod name is known and ``status.podName`` names another pod,
   refuse with ``PodFencedError`` (never retried).
3. Merge client-side (``merge_status``: Go's ``mergeStepRunStatus`` rules) and check the
   phase state machine (``check_transition``; ``InvalidTransitionError`` is never retried).
4. Send the RFC 7386 diff as a JSON merge patch to ``/status``. Like Go, the body carries no
   ``resourceVersion`` unless ``optimistic=True`` (then a concurrent writer makes it 409 and
   we re-read and merge again; recommended for list appends,
   docs/contract/steprun-status.md#optimistic-writes).
5. Retry 409, 429 (honouring ``Retry-After``), 5xx, timeouts and connection errors with
   jittered exponential backoff (100 ms, x2, +-25 %), at most ``1 + max_retries`` attempts,
   all inside ``operation_timeout``. Unlike Go we do not retry permanent answers (403, 404,
   422): they cannot succeed on a second try (docs/differences.md).

``status.retries`` is required by the CRD, so the first write always carries it
(docs/contract/steprun-status.md#retries-required). Objects (``output``, ``logs``,
``error.details``, ``signals[*]``) must be JSON objects
(docs/contract/steprun-status.md#objects-only); messages are cut to 8 KiB on a UTF-8 boundary
(docs/contract/errors.md#structured-error).
"""

from __future__ import annotations

import asyncio
import copy
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, Protocol

from bubu import _telemetry
from bubu._aio.backoff import Backoff
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import STEP_RUN, StepRunStatus
from bubu._runtime.parse import go_trim_space
from bubu.errors import ConflictError, InvalidTransitionError, KubernetesError, PodFencedError

__all__ = [
    "DEFAULT_BACKOFF",
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_OPERATION_TIMEOUT",
    "LIST_LIMIT",
    "MAX_MESSAGE_BYTES",
    "PHASE_TRANSITIONS",
    "TERMINAL_PHASES",
    "KubeStatusSink",
    "MemoryStatusSink",
    "StatusSink",
    "check_transition",
    "merge_patch_diff",
    "merge_status",
    "patch_step_run_status",
    "truncate_utf8",
    "update_step_run_status",
]

_log = logging.getLogger("bubu.k8s")

# BUBU_K8S_PATCH_MAX_RETRIES (docs/contract/runtime-environment.md#kubernetes-client)
DEFAULT_MAX_RETRIES: Final = 5
# BUBU_K8S_OPERATION_TIMEOUT (docs/contract/runtime-environment.md#kubernetes-client)
DEFAULT_OPERATION_TIMEOUT: Final = 30.0
DEFAULT_BACKOFF: Final = Backoff(base=0.1, factor=2.0, maximum=5.0, jitter=0.25)
# An optimistic write's waits after a 409 grow for this many conflicts, then stay (0.4 s x jitter
# with the default backoff): a conflict is another writer's progress, so the next read is
# likely to win and a longer wait only slows the ledger.
_CONFLICT_GROWTH: Final = 2
# lastFailureMsg / error.message bound (docs/contract/errors.md#structured-error)
MAX_MESSAGE_BYTES: Final = 8192
# CRD maxItems of effects and signalEvents (docs/contract/steprun-status.md#limits)
LIST_LIMIT: Final = 256
# Cited in the ValueError of a non-object field, so the message says where the rule is written.
_OBJECTS_ONLY: Final = "docs/contract/steprun-status.md#objects-only"

# isValidPhaseTransition (docs/contract/steprun-status.md#merge-rules). Same->same and ""->anything
# are always allowed.
PHASE_TRANSITIONS: Final[Mapping[str, frozenset[str]]] = {
    "Pending": frozenset({"Running", "Failed", "Canceled", "Timeout"}),
    "Running": frozenset({"Succeeded", "Failed", "Canceled", "Paused", "Timeout", "Aborted"}),
    "Paused": frozenset({"Running", "Canceled", "Failed"}),
    "Failed": frozenset({"Running", "Succeeded"}),
    "Blocked": frozenset({"Pending", "Running", "Failed", "Canceled"}),
    "Scheduling": frozenset({"Running", "Failed", "Canceled"}),
    "Succeeded": frozenset(),
    "Canceled": frozenset(),
    "Timeout": frozenset(),
    "Aborted": frozenset(),
    "Finished": frozenset(),
    "Skipped": frozenset(),
    "Compensated": frozenset(),
}
TERMINAL_PHASES: Final = frozenset(p for p, to in PHASE_TRANSITIONS.items() if not to)

_MISSING: Final = object()


Mutation = Callable[[dict[str, Any]], dict[str, Any] | None]


def check_transition(current: str | None, new: str) -> None:
    """Check a phase change against the Go state machine.

    Raises:
        InvalidTransitionError: the change is not allowed (Pending->Succeeded, or anything
            out of a terminal phase, or out of an unknown phase).
    """
    if not current or current == new:
        return
    allowed = PHASE_TRANSITIONS.get(current)
    if allowed is None or new not in allowed:
        raise InvalidTransitionError(
            f"invalid phase transition: {current} \u2192 {new} (not allowed by state machine)",
            reason="InvalidTransition",
        )


def truncate_utf8(text: str, limit: int = MAX_MESSAGE_BYTES) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character.

    A limit <= 0 means no truncation (Go's ``truncateErrorMessage``).
    """
    if limit <= 0:
        return text
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return text
    return raw[:limit].decode("utf-8", "ignore")


def _bounded_error(error: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(error)
    message = out.get("message")
    if isinstance(message, str):
        out["message"] = truncate_utf8(message)
    return out


def _newest(entries: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # Go keeps the append order and sorts by seq only to drop the oldest past the CRD limit.
    if len(entries) <= LIST_LIMIT:
        return entries
    entries.sort(key=lambda e: int(e.get("seq", 0)))
    return entries[-LIST_LIMIT:]


def _append_signal_events(
    existing: list[dict[str, Any]], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # docs/contract/steprun-status.md#merge-rules: seq 0 gets max+1, a duplicate seq is dropped,
    # keep the newest 256 by seq.
    merged = [dict(e) for e in existing]
    seqs = {int(e.get("seq", 0)) for e in merged}
    for event in incoming:
        entry = dict(event)
        seq = int(entry.get("seq") or 0)
        if seq == 0:
            seq = max(seqs, default=0) + 1
            entry["seq"] = seq
        elif seq in seqs:
            continue
        seqs.add(seq)
        merged.append(entry)
    return _newest(merged)


def _effect_key(entry: Mapping[str, Any]) -> str:
    # Go compares effect keys trimmed (strings.TrimSpace); an empty key never dedupes.
    key = entry.get("key")
    return go_trim_space(key) if isinstance(key, str) else ""


def _append_effects(
    existing: list[dict[str, Any]], incoming: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    # docs/contract/steprun-status.md#merge-rules: seq 0 with a key already present is dropped
    # (dedupe by key: the first details win), seq 0 otherwise gets max+1, a duplicate seq is
    # dropped, keep the newest 256.
    merged = [dict(e) for e in existing]
    seqs = {int(e.get("seq", 0)) for e in merged}
    keys = {k for k in map(_effect_key, merged) if k}
    for effect in incoming:
        entry = dict(effect)
        key = _effect_key(entry)
        seq = int(entry.get("seq") or 0)
        if seq == 0:
            if key and key in keys:
                continue
            seq = max(seqs, default=0) + 1
            entry["seq"] = seq
        elif seq in seqs:
            continue
        seqs.add(seq)
        if key:
            keys.add(key)
        merged.append(entry)
    return _newest(merged)


def merge_status(
    existing: Mapping[str, Any] | None, update: StepRunStatus | Mapping[str, Any]
) -> dict[str, Any]:
    """Merge an update into the current status with Go's ``mergeStepRunStatus`` rules.

    See docs/contract/steprun-status.md#merge-rules.

    Args:
        existing: the status as read from the server (None when it has none yet).
        update: the fields to write; a ``StepRunStatus`` or its camelCase dict form.

    Returns:
        The new full status (a fresh dict; ``existing`` is not modified).

    Raises:
        InvalidTransitionError: the phase change is refused.
        ValueError: an object-typed field (output, logs, signals values) is not an object.
    """
    current: dict[str, Any] = copy.deepcopy(dict(existing or {}))
    inc = update.to_dict() if isinstance(update, StepRunStatus) else dict(update)

    phase = inc.get("phase")
    if phase:
        check_transition(current.get("phase"), phase)
        current["phase"] = phase
    for key in ("startedAt", "finishedAt", "nextRetryAt"):
        if inc.get(key) is not None:
            current[key] = inc[key]
    for key in ("duration", "exitClass", "podName"):
        if inc.get(key):
            current[key] = inc[key]
    exit_code = inc.get("exitCode")
    # only non-zero: success never resets an earlier code
    # (docs/contract/steprun-status.md#merge-rules)
    if exit_code:
        current["exitCode"] = int(exit_code)
    retries = inc.get("retries")
    if retries:
        current["retries"] = int(retries)
    # status.retries is required by the CRD: always present in what we write
    # (docs/contract/steprun-status.md#retries-required).
    current.setdefault("retries", 0)
    if inc.get("lastFailureMsg"):
        current["lastFailureMsg"] = truncate_utf8(str(inc["lastFailureMsg"]))
    for key in ("output", "logs"):
        value = inc.get(key)
        if value is not None:
            if not isinstance(value, Mapping):
                raise ValueError(f"status.{key} must be a JSON object ({_OBJECTS_ONLY})")
            current[key] = copy.deepcopy(dict(value))
    if inc.get("error") is not None:
        current["error"] = _bounded_error(inc["error"])
    if inc.get("needs") is not None:
        # An explicit [] clears it; Go's omitempty then leaves no field at all.
        current["needs"] = list(inc["needs"])
        if not current["needs"]:
            del current["needs"]
    signals = inc.get("signals")
    if signals:
        merged_signals = dict(current.get("signals") or {})
        for key, value in signals.items():
            # an absent value deletes the key; {} is a value
            # (docs/contract/steprun-status.md#merge-rules)
            if value is None:
                merged_signals.pop(key, None)
                continue
            if not isinstance(value, Mapping):
                raise ValueError(f"status.signals[{key!r}] must be a JSON object ({_OBJECTS_ONLY})")
            merged_signals[key] = copy.deepcopy(dict(value))
        if merged_signals:
            current["signals"] = merged_signals
        else:
            current.pop("signals", None)
    if inc.get("signalEvents"):
        current["signalEvents"] = _append_signal_events(
            list(current.get("signalEvents") or []), list(inc["signalEvents"])
        )
    if inc.get("effects"):
        current["effects"] = _append_effects(
            list(current.get("effects") or []), list(inc["effects"])
        )
    # conditions, observedGeneration, trace, lastOutputAt, schema refs and handoff are never
    # taken from the SDK (docs/contract/steprun-status.md#merge-rules): the controller owns them.
    return current


def merge_patch_diff(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    """Return the RFC 7386 merge patch that turns ``before`` into ``after``.

    Removed keys become ``None`` (JSON null); objects are diffed recursively; lists and
    scalars are replaced whole (the CRD's ``effects``/``signalEvents`` lists are atomic).
    """
    patch: dict[str, Any] = {}
    for key in before:
        if key not in after:
            patch[key] = None
    for key, value in after.items():
        old = before.get(key, _MISSING)
        if old is _MISSING:
            patch[key] = copy.deepcopy(value)
        elif isinstance(old, Mapping) and isinstance(value, Mapping):
            sub = merge_patch_diff(old, value)
            if sub:
                patch[key] = sub
        elif old != value or type(old) is not type(value):
            patch[key] = copy.deepcopy(value)
    return patch


async def update_step_run_status(
    client: KubeAPI,
    name: str,
    namespace: str | None,
    mutate: Mutation,
    *,
    pod_name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    optimistic: bool = False,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> dict[str, Any]:
    """GET the StepRun, fence, ``mutate`` its status, and merge-patch the difference.

    ``mutate`` gets a private copy of the current status (``{}`` when none) and returns the
    new full status, or None to write nothing. It runs again on every attempt, so it must be
    a pure function of the status it is given (append the same entries each time). It may
    raise ``InvalidTransitionError`` to refuse the write.

    Args:
        client: the Kubernetes client.
        name: the StepRun name.
        namespace: its namespace (None: the client namespace, as Go does).
        mutate: computes the new status from the current one.
        pod_name: our pod (``BUBU_POD_NAME``) for zombie fencing; None disables it.
        max_retries: attempts after the first (``BUBU_K8S_PATCH_MAX_RETRIES``; < 0 means 0).
        operation_timeout: bound for the whole loop, in seconds.
        optimistic: send ``metadata.resourceVersion`` so a concurrent write gives 409; a 409
            then means re-read and merge again, as often as ``operation_timeout`` allows,
            without spending ``max_retries``.
        backoff: the delay policy between attempts.

    Returns:
        The status the server stored (or the current one when nothing needed writing).

    Raises:
        PodFencedError: another pod owns this StepRun.
        InvalidTransitionError: the state machine refuses the phase change.
        KubernetesError: a permanent API error, or retries/time ran out (the last error is
            the ``__cause__``).
    """
    attempts = 1 + max(0, max_retries)
    last: KubernetesError | None = None
    started = time.monotonic()
    success = False
    attempt = conflicts = 0
    try:
        async with asyncio.timeout(operation_timeout):
            while True:
                try:
                    stored = await _attempt(
                        client,
                        name=name,
                        namespace=namespace,
                        mutate=mutate,
                        pod_name=pod_name,
                        optimistic=optimistic,
                    )
                    success = True
                    return stored
                except (PodFencedError, InvalidTransitionError):
                    raise
                except KubernetesError as exc:
                    last = exc
                    if not exc.retryable:
                        raise
                    if optimistic and isinstance(exc, ConflictError):
                        # Another writer's append landed between our read and our write: that
                        # is its progress, not a fault, so it does not spend the retry budget;
                        # the operation timeout bounds the loop
                        # (docs/contract/steprun-status.md#optimistic-writes). The jittered
                        # wait stays short and lets racing writers fall out of step.
                        delay = backoff.delay(min(conflicts, _CONFLICT_GROWTH))
                        conflicts += 1
                        retry = f"conflict {conflicts}"
                    else:
                        if attempt + 1 >= attempts:
                            raise
                        delay = max(backoff.delay(attempt), exc.retry_after or 0.0)
                        attempt += 1
                        retry = f"retry {attempt}/{attempts - 1}"
                    _log.debug(
                        "status write for StepRun %s failed (%s); %s in %.2fs",
                        name,
                        exc.reason,
                        retry,
                        delay,
                    )
                    await asyncio.sleep(delay)
    except TimeoutError as exc:
        elapsed = time.monotonic() - started
        detail = f": {last}" if last is not None else ""
        raise KubernetesError(
            f"status write for StepRun {name!r} gave up after {elapsed:.1f}s "
            f"(BUBU_K8S_OPERATION_TIMEOUT={operation_timeout:g}s){detail}",
            reason=last.reason if last is not None else "Timeout",
            status_code=last.status_code if last is not None else None,
            retryable=True,
            exit_class="retry",
        ) from (last or exc)
    finally:
        # Go records bubu.k8s.operation.duration_seconds{operation=PatchStepRunStatus}
        # (docs/observability.md#metrics-and-traces).
        _telemetry.record_k8s_operation(
            "PatchStepRunStatus", time.monotonic() - started, success=success
        )


async def _attempt(
    client: KubeAPI,
    *,
    name: str,
    namespace: str | None,
    mutate: Mutation,
    pod_name: str | None,
    optimistic: bool,
) -> dict[str, Any]:
    obj = await client.get(STEP_RUN, name, namespace)
    before = obj.get("status") or {}
    if not isinstance(before, dict):
        before = {}
    owner = before.get("podName")
    if pod_name and owner and owner != pod_name:
        raise PodFencedError(
            f"zombie pod fencing: current pod {pod_name!r} does not match existing {owner!r}; "
            "skipping patch",
            reason="Fenced",
        )
    after = mutate(copy.deepcopy(before))
    if after is None:
        return before
    diff = merge_patch_diff(before, after)
    if "retries" not in before:
        diff["retries"] = after.get("retries", 0)
    if not diff:
        return before
    body: dict[str, Any] = {"status": diff}
    if optimistic:
        rv = (obj.get("metadata") or {}).get("resourceVersion")
        if rv:
            body["metadata"] = {"resourceVersion": rv}
    stored = await client.merge_patch(STEP_RUN, name, body, namespace, subresource="status")
    status = stored.get("status")
    return status if isinstance(status, dict) else after


async def patch_step_run_status(
    client: KubeAPI,
    name: str,
    namespace: str | None,
    update: StepRunStatus | Mapping[str, Any],
    *,
    pod_name: str | None = None,
    max_retries: int = DEFAULT_MAX_RETRIES,
    operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
    optimistic: bool = False,
    backoff: Backoff = DEFAULT_BACKOFF,
) -> dict[str, Any]:
    """Merge ``update`` into the StepRun status with the Go rules and write it.

    See docs/contract/steprun-status.md#merge-rules.

    ``effects`` and ``signalEvents`` entries are appended (seq 0 gets the next number;
    effects dedupe by key), ``signals`` merge per key (an empty value deletes the key).

    Args and raises as ``update_step_run_status``.
    """

    def mutate(current: dict[str, Any]) -> dict[str, Any]:
        return merge_status(current, update)

    return await update_step_run_status(
        client,
        name,
        namespace,
        mutate,
        pod_name=pod_name,
        max_retries=max_retries,
        operation_timeout=operation_timeout,
        optimistic=optimistic,
        backoff=backoff,
    )


class StatusSink(Protocol):
    """Where a run's StepRun status goes: the cluster, or memory when running locally.

    Entry points and helpers write through a sink so the same code path runs in a pod, under
    ``bubu run`` and in the harnesses.
    """

    async def write(
        self,
        update: StepRunStatus | Mapping[str, Any],
        *,
        operation_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Merge ``update`` into the status (``merge_status`` rules) and store it."""
        ...

    async def update(
        self, mutate: Mutation, *, operation_timeout: float | None = None, optimistic: bool = False
    ) -> dict[str, Any]:
        """Read the status, apply ``mutate`` and store the result (``update_step_run_status``)."""
        ...


class KubeStatusSink:
    """Writes one StepRun's status through the Kubernetes API.

    Args:
        client: the Kubernetes client.
        name: the StepRun name (``BUBU_STEPRUN_NAME``).
        namespace: its namespace; None means the client namespace (as Go).
        pod_name: ``BUBU_POD_NAME`` for zombie fencing.
        max_retries: ``BUBU_K8S_PATCH_MAX_RETRIES``.
        operation_timeout: ``BUBU_K8S_OPERATION_TIMEOUT``, the default bound per write.
    """

    def __init__(
        self,
        client: KubeAPI,
        name: str,
        namespace: str | None = None,
        *,
        pod_name: str | None = None,
        max_retries: int = DEFAULT_MAX_RETRIES,
        operation_timeout: float = DEFAULT_OPERATION_TIMEOUT,
        backoff: Backoff = DEFAULT_BACKOFF,
    ) -> None:
        self.client = client
        self.name = name
        self.namespace = namespace
        self.pod_name = pod_name
        self.max_retries = max_retries
        self.operation_timeout = operation_timeout
        self.backoff = backoff

    async def write(
        self,
        update: StepRunStatus | Mapping[str, Any],
        *,
        operation_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Merge and patch ``update`` (see ``patch_step_run_status``)."""
        return await patch_step_run_status(
            self.client,
            self.name,
            self.namespace,
            update,
            pod_name=self.pod_name,
            max_retries=self.max_retries,
            operation_timeout=operation_timeout or self.operation_timeout,
            backoff=self.backoff,
        )

    async def update(
        self, mutate: Mutation, *, operation_timeout: float | None = None, optimistic: bool = False
    ) -> dict[str, Any]:
        """GET, mutate and patch (see ``update_step_run_status``)."""
        return await update_step_run_status(
            self.client,
            self.name,
            self.namespace,
            mutate,
            pod_name=self.pod_name,
            max_retries=self.max_retries,
            operation_timeout=operation_timeout or self.operation_timeout,
            optimistic=optimistic,
            backoff=self.backoff,
        )

    def __repr__(self) -> str:
        return f"KubeStatusSink(name={self.name!r}, namespace={self.namespace!r})"


class MemoryStatusSink:
    """Keeps the status in memory with the same merge rules (local runs, harnesses, tests).

    It starts as the controller leaves a running StepRun (``phase: Running, retries: 0``), so
    the phase machine accepts the batch's terminal phase as it would in a cluster.

    Attributes:
        status: the current status.
        writes: every merge patch body that would have been sent, in order.
    """

    def __init__(self, initial: Mapping[str, Any] | None = None) -> None:
        self.status: dict[str, Any] = (
            copy.deepcopy(dict(initial))
            if initial is not None
            else {"phase": "Running", "retries": 0}
        )
        self.writes: list[dict[str, Any]] = []

    async def write(
        self,
        update: StepRunStatus | Mapping[str, Any],
        *,
        operation_timeout: float | None = None,
    ) -> dict[str, Any]:
        """Merge ``update`` into ``status``."""
        return await self.update(lambda current: merge_status(current, update))

    async def update(
        self, mutate: Mutation, *, operation_timeout: float | None = None, optimistic: bool = False
    ) -> dict[str, Any]:
        """Apply ``mutate`` to a copy of ``status`` and keep the result."""
        after = mutate(copy.deepcopy(self.status))
        if after is None:
            return copy.deepcopy(self.status)
        diff = merge_patch_diff(self.status, after)
        if diff:
            self.writes.append({"status": diff})
            self.status = copy.deepcopy(after)
        return copy.deepcopy(self.status)

    def __repr__(self) -> str:
        return f"MemoryStatusSink(phase={self.status.get('phase')!r})"
