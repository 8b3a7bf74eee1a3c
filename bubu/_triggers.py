"""Start and stop Stories through StoryTrigger admission (docs/contract/story-trigger.md).

The SDK never creates a StoryRun itself (docs/contract/story-trigger.md). ``start_story`` creates a
StoryTrigger with a deterministic name and delivery identity, waits for the controller's
decision (Created / Reused / Rejected), and returns a ``TriggerResult``. ``stop_story`` sets
``spec.cancelRequested`` on the StoryRun.

What this module owns:

* delivery identity (modes ``none``/``token``/``key``, the key template evaluated by
  ``bubu._templating`` as Go's core/templating does, ``submissionId``) -
  docs/contract/story-trigger.md#delivery-identity;
* the StoryTrigger body: name, labels and annotations from the parent step, impulse ref,
  the input hash byte-identical to Go (``bubu._k8s.identity``) -
  docs/contract/story-trigger.md#what-the-sdk-creates;
* the wait (watch first, GET polling under the Impulse Role, ``bubu._k8s.watch``), retries,
  throttling, and the impulse trigger counters coalesced into one status patch per interval
  (``ImpulseStats``; docs/contract/story-trigger.md#impulse-counters).

Input offload (docs/contract/storage.md#stages): with storage enabled (``BUBU_STORAGE_PROVIDER``),
inputs above ``BUBU_MAX_INLINE_SIZE`` are offloaded before hashing by ``bubu._storage``'s
``dehydrate_inputs``, under Go's storage key (``storage_input_key``) and with the story's input
schema id; ``StoryTriggers(offload=...)`` replaces that with any async callable ``(inputs,
storage_key) -> inputs``. With storage disabled, inputs are sent inline and the operator offloads
anything above its inline limit when it creates the StoryRun
(docs/contract/story-trigger.md#resolution).

Imports ``bubu._k8s``, ``bubu._runtime``, ``bubu._templating``, ``bubu._storage`` (only with
storage enabled), ``bubu._aio``, ``bubu._scope`` and ``bubu.errors`` only. Logger: ``bubu.trigger``.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import dataclasses
import hashlib
import logging
import random
import time
import uuid
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Literal, cast

import msgspec

from bubu._k8s import errors as k8s_errors
from bubu._k8s import identity
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import IMPULSE, STORY, STORY_RUN, STORY_TRIGGER
from bubu._k8s.watch import wait_for_object
from bubu._runtime import env, gojson, parse
from bubu._runtime.env import TriggerSettings
from bubu._runtime.sources import EnvSource, OsEnviron
from bubu.errors import (
    ConflictError,
    ContractError,
    ForbiddenError,
    KubernetesError,
    NotFoundError,
    StoryRunNotFoundError,
    TemplateError,
    TriggerError,
    TriggerIdentityConflictError,
    TriggerPendingError,
    TriggerRejectedError,
)

if TYPE_CHECKING:
    from bubu import _scope

__all__ = [
    "ImpulseStats",
    "StoryTriggers",
    "TargetStory",
    "TriggerResult",
    "compute_trigger_key",
    "get_target_story",
    "load_trigger_settings",
    "operation_timeout",
    "start_story",
    "start_story_with_token",
    "stop_story",
    "trigger_token",
]

_log = logging.getLogger("bubu.trigger")

# Label and annotation keys (core contracts; docs/contract/story-trigger.md#what-the-sdk-creates).
LABEL_PARENT_STORYRUN = "bubustack.io/parent-storyrun"
LABEL_PARENT_STEP = "bubustack.io/parent-step"
LABEL_STEPRUN = "bubustack.io/steprun"
ANNOTATION_PARENT_STEPRUN = "bubustack.io/parent-steprun"
LABEL_STORYRUN = "bubustack.io/storyrun"

_DECISIONS = ("Created", "Reused", "Rejected")
_TERMINAL_PHASES = frozenset(
    {"Succeeded", "Failed", "Finished", "Canceled", "Compensated", "Timeout", "Aborted", "Skipped"}
)
# deliveryIdentity.submissionId maxLength (docs/contract/story-trigger.md#delivery-identity)
_MAX_SUBMISSION_ID = 253
_ADMISSION_DENIED = "denied the request"  # controller-runtime's webhook denial text

InputOffload = Callable[[dict[str, Any], str], Awaitable[dict[str, Any]]]
"""The storage seam: ``await offload(inputs, storage_key)`` returns the inputs to send."""


# --- settings ---------------------------------------------------------------------------------


def load_trigger_settings(source: EnvSource) -> TriggerSettings:
    """Read the ``BUBU_TRIGGER_*`` policy; called on every ``start_story``.

    See docs/contract/runtime-environment.md#trigger-delivery.

    Raises:
        ContractError: a value is invalid; the message names the variable (Go's texts).
    """
    return env.load_trigger_settings(source)


def operation_timeout(source: EnvSource) -> float:
    """Return ``BUBU_K8S_OPERATION_TIMEOUT`` in seconds: the bound of the decision wait."""
    return env.load_identity(source).k8s_operation_timeout


# --- results and small public types ------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class TriggerResult:
    """The outcome of an accepted StoryTrigger.

    Attributes:
        story_run: the StoryRun name.
        namespace: the StoryRun namespace.
        uid: the StoryRun uid, when the controller reported it.
        decision: ``Created`` or ``Reused``.
        trigger: the StoryTrigger name (deterministic for a token or key).
        story_run_object: the StoryRun as read after the decision (None when not read).
        deduplicated: True when this exact request had been submitted before (the StoryTrigger
            already existed: a redelivered event), so no new submission was made.
    """

    story_run: str
    namespace: str
    decision: Literal["Created", "Reused"]
    trigger: str
    uid: str | None = None
    story_run_object: dict[str, Any] | None = field(default=None, repr=False, compare=False)
    deduplicated: bool = False

    @property
    def reused(self) -> bool:
        """True when an existing StoryRun was reused (decision ``Reused``)."""
        return self.decision == "Reused"


@dataclass(frozen=True, slots=True)
class TargetStory:
    """The Story an Impulse starts (``BUBU_TARGET_STORY_NAME`` / ``_NAMESPACE``)."""

    name: str
    namespace: str


def get_target_story(source: EnvSource | None = None) -> TargetStory:
    """Return the Impulse's target Story from the environment (Go ``GetTargetStory``).

    Raises:
        ContractError: ``BUBU_TARGET_STORY_NAME`` is not set.
    """
    ident = env.load_identity(source or _scope_source())
    if not ident.target_story_name:
        raise ContractError(
            "target story not configured: BUBU_TARGET_STORY_NAME environment variable is not set",
            variable="BUBU_TARGET_STORY_NAME",
        )
    return TargetStory(name=ident.target_story_name, namespace=ident.target_story_namespace)


_TOKEN: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "bubu_trigger_token", default=None
)


@contextlib.contextmanager
def trigger_token(token: str | None) -> Iterator[None]:
    """Attach a trigger token to every ``start_story`` in the block (Go ``WithTriggerToken``).

    An empty token changes nothing. A token here wins over ``BUBU_TRIGGER_TOKEN``.
    """
    if not token or not parse.go_trim_space(token):
        yield
        return
    reset = _TOKEN.set(parse.go_trim_space(token))
    try:
        yield
    finally:
        _TOKEN.reset(reset)


# --- the key template (docs/contract/story-trigger.md#delivery-identity) --------------------------


def compute_trigger_key(template: str, variables: Mapping[str, Any]) -> str:
    """Go's ``computeTriggerKey``: render with core's rules, JSON a non-string, trim, sha256.

    The template runs on ``bubu._templating`` (the full Go text/template language,
    deterministic functions only, 250 ms), so the key of a Go impulse and a bubu impulse agree
    byte for byte: a whole number of 1e6 or more prints ``1e+06`` inside text.

    Raises:
        TemplateError: ``resolve trigger key template: <Go's error>``.
        TriggerError: the key renders empty.
    """
    # Loaded on first use: only impulses with BUBU_TRIGGER_DEDUPE_MODE=key need the evaluator.
    from bubu._templating import render_key_template

    try:
        value = render_key_template(template, variables)
    except TemplateError as exc:
        raise TemplateError(f"resolve trigger key template: {exc}", position=exc.position) from None
    text = value if isinstance(value, str) else identity.go_canonical_json(value)
    text = parse.go_trim_space(text)  # strings.TrimSpace: U+001C..U+001F stay
    if not text:
        raise TriggerError("trigger key resolved to empty value")
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# --- delivery identity (docs/contract/story-trigger.md#delivery-identity) -------------------------


@dataclass(frozen=True, slots=True)
class _Identity:
    mode: str
    key: str
    submission_id: str


def _resolve_identity(
    settings: TriggerSettings,
    token: str,
    *,
    inputs: Mapping[str, Any],
    story: TargetStory,
    impulse: TargetStory,
) -> _Identity:
    mode = settings.dedupe_mode
    if mode == "token" and not token:
        raise TriggerError("trigger token required by BUBU_TRIGGER_DEDUPE_MODE=token")
    if mode == "key":
        if not settings.dedupe_key_template:
            raise TriggerError("trigger key template required by BUBU_TRIGGER_DEDUPE_MODE=key")
        variables = {
            "inputs": dict(inputs),
            "story": {"name": story.name, "namespace": story.namespace},
            "impulse": {"name": impulse.name, "namespace": impulse.namespace},
        }
        key = compute_trigger_key(settings.dedupe_key_template, variables)
        if token and token != key:
            raise TriggerError(
                "trigger token mismatch: provided token does not match "
                "BUBU_TRIGGER_DEDUPE_KEY_TEMPLATE output"
            )
        return _Identity("key", key, key)
    if token:
        if len(token) > _MAX_SUBMISSION_ID:
            # submissionId is capped at 253 while key allows 256
            # (docs/contract/story-trigger.md#delivery-identity): say so here instead of letting the
            # API server answer 422.
            raise TriggerError(
                f"trigger token is {len(token)} characters; at most {_MAX_SUBMISSION_ID} allowed"
            )
        return _Identity("token", token, token)
    return _Identity("none", "", str(uuid.uuid4()))


# --- throttle (docs/contract/story-trigger.md#retry-throttle-stats) -------------------------------


class _Throttle:
    """Bounded concurrency plus a token bucket, as Go's ``triggerThrottle``."""

    def __init__(self, rate: int, burst: int, max_in_flight: int) -> None:
        self.key = (rate, burst, max_in_flight)
        self._rate = float(rate)
        self._burst = float(max(burst, 1))
        self._tokens = self._burst
        self._stamp = time.monotonic()
        self._sem = asyncio.Semaphore(max_in_flight) if max_in_flight > 0 else None

    def _reserve(self) -> float:
        now = time.monotonic()
        self._tokens = min(self._burst, self._tokens + (now - self._stamp) * self._rate)
        self._stamp = now
        self._tokens -= 1
        return 0.0 if self._tokens >= 0 else -self._tokens / self._rate

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[bool]:
        waited = False
        if self._sem is not None:
            waited = self._sem.locked()
            await self._sem.acquire()
        try:
            if self._rate > 0:
                delay = self._reserve()
                if delay > 0:
                    waited = True
                    try:
                        await asyncio.sleep(delay)
                    except asyncio.CancelledError:
                        self._tokens += 1  # give the reservation back, as Go's Cancel does
                        raise
            yield waited
        finally:
            if self._sem is not None:
                self._sem.release()


_THROTTLES: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Throttle] = (
    weakref.WeakKeyDictionary()
)


def _throttle_for(settings: TriggerSettings) -> _Throttle | None:
    key = (
        settings.throttle_rate_per_second,
        settings.effective_burst,
        settings.throttle_max_in_flight,
    )
    if key[0] <= 0 and key[2] <= 0:
        return None
    loop = asyncio.get_running_loop()
    current = _THROTTLES.get(loop)
    # Process-wide (per event loop), rebuilt when the env-derived key changes
    # (docs/contract/story-trigger.md#retry-throttle-stats).
    if current is None or current.key != key:
        current = _Throttle(*key)
        _THROTTLES[loop] = current
    return current


# --- impulse counters (docs/contract/story-trigger.md#impulse-counters) ---------------------------


class ImpulseStats:
    """Impulse trigger counters: the SDK-owned ones written, all of them counted in memory.

    The operator recomputes ``triggersReceived``, ``storiesLaunched``, ``failedTriggers``,
    ``lastTrigger`` and ``lastSuccess`` from the StoryRuns that name the Impulse, and overwrites
    them on every StoryRun change (docs/contract/story-trigger.md#impulse-counters). The Go SDK also
    adds its deltas to those fields after every trigger, so the status shows a mix of both counts
    until the next recompute (the real operator showed 10 received for 8 triggers). Here only what
    the operator never writes, ``throttledTriggers`` and ``lastThrottled``, goes to the cluster
    (docs/differences.md); ``totals`` keeps every count for the process itself.

    Writes are coalesced: deltas accumulate in memory and one background flush per ``interval``
    writes them: GET, add, advance the timestamp only forward (whole seconds, UTC), merge-patch
    ``/status`` carrying the resourceVersion, and retry on 409. ``aclose()`` flushes what is left.

    Args:
        kube: the client (needs ``impulses get`` and ``impulses/status patch``).
        name: the Impulse name (``BUBU_IMPULSE_NAME``); must not be empty.
        namespace: its namespace (None: the client namespace).
        interval: the minimum seconds between two patches.
    """

    #: the status fields the SDK writes; the operator owns the others
    #: (docs/contract/story-trigger.md#impulse-counters)
    WRITTEN = ("throttledTriggers", "lastThrottled")

    def __init__(
        self, kube: KubeAPI, name: str, namespace: str | None = None, *, interval: float = 1.0
    ) -> None:
        if interval < 0:
            raise ValueError(f"interval must be >= 0, got {interval}")
        if not (name or "").strip():
            raise ValueError("impulse name is required for trigger stats")  # as Go's
        self._kube = kube
        self.name = name.strip()
        self.namespace = namespace or None
        self.interval = interval
        self._pending: dict[str, int] = {}
        self._times: dict[str, datetime] = {}
        self._task: asyncio.Task[None] | None = None
        self._last_flush = -float("inf")
        self._lock = asyncio.Lock()
        self._closed = False
        self.patches = 0  # number of status writes made (observability and tests)
        #: every count this process recorded, written or not
        self.totals: dict[str, int] = dict.fromkeys(
            ("triggersReceived", "storiesLaunched", "failedTriggers", "throttledTriggers"), 0
        )

    def record(
        self,
        *,
        received: int = 0,
        launched: int = 0,
        failed: int = 0,
        throttled: int = 0,
        at: datetime | None = None,
    ) -> None:
        """Add a delta to ``totals``; a throttle is also written later, coalesced with others.

        Raises:
            ValueError: a negative delta (Go refuses them too).
        """
        if min(received, launched, failed, throttled) < 0:
            raise ValueError("impulse trigger stats deltas must be non-negative")
        for name, delta in (
            ("triggersReceived", received),
            ("storiesLaunched", launched),
            ("failedTriggers", failed),
            ("throttledTriggers", throttled),
        ):
            self.totals[name] += delta
        if not throttled:
            return
        moment = (at or datetime.now(UTC)).astimezone(UTC)
        self._pending["throttledTriggers"] = self._pending.get("throttledTriggers", 0) + throttled
        if "lastThrottled" not in self._times or moment > self._times["lastThrottled"]:
            self._times["lastThrottled"] = moment
        if not self._closed:
            self._schedule()

    @property
    def pending(self) -> dict[str, int]:
        """The counters not yet written."""
        return dict(self._pending)

    def _schedule(self) -> None:
        if self._task is not None and not self._task.done():
            return
        self._task = asyncio.get_running_loop().create_task(
            self._flush_later(), name="bubu.trigger.impulse-stats"
        )

    async def _flush_later(self) -> None:
        loop = asyncio.get_running_loop()
        wait = self._last_flush + self.interval - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        try:
            await self.flush()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            # Stats are advisory; never fail a trigger.
            _log.warning("failed to update impulse trigger stats: %s", exc)

    async def flush(self) -> None:
        """Write the pending deltas now (one GET + one merge patch, retried on conflict)."""
        async with self._lock:
            if not self._pending and not self._times:
                return
            counters, self._pending = self._pending, {}
            times, self._times = self._times, {}
            self._last_flush = asyncio.get_running_loop().time()
            try:
                await self._write(counters, times)
            except BaseException:
                # Put the deltas back so the next flush (or aclose) still writes them.
                for name, delta in counters.items():
                    self._pending[name] = self._pending.get(name, 0) + delta
                for name, moment in times.items():
                    if name not in self._times or moment > self._times[name]:
                        self._times[name] = moment
                raise

    async def _write(self, counters: dict[str, int], times: dict[str, datetime]) -> None:
        for attempt in range(5):
            impulse = await self._kube.get(IMPULSE, self.name, self.namespace)
            status = impulse.get("status") or {}
            meta = impulse.get("metadata") or {}
            patch_status: dict[str, Any] = {}
            for name, delta in counters.items():
                current = status.get(name)
                patch_status[name] = (current if isinstance(current, int) else 0) + delta
            for name, moment in times.items():
                existing = identity.parse_time(status.get(name))
                if existing is None or moment.replace(microsecond=0) > existing:
                    patch_status[name] = identity.utc_seconds(moment)
            patch = {
                "metadata": {"resourceVersion": meta.get("resourceVersion")},
                "status": patch_status,
            }
            try:
                await self._kube.merge_patch(
                    IMPULSE, self.name, patch, self.namespace, subresource="status"
                )
                self.patches += 1
                return
            except ConflictError:
                await asyncio.sleep(0.01 * (5**attempt) * (1 + 0.1 * random.random()))
        raise ConflictError(
            f"impulse {self.name!r} status kept changing; trigger stats not written",
            reason="Conflict",
        )

    async def aclose(self) -> None:
        """Stop the timer and flush what is pending (called on shutdown)."""
        self._closed = True
        task, self._task = self._task, None
        if task is not None and not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        try:
            await self.flush()
        except KubernetesError as exc:
            _log.warning("failed to flush impulse trigger stats on shutdown: %s", exc)


# --- the engine --------------------------------------------------------------------------------


def _retry_delay(settings: TriggerSettings, k: int) -> float:
    base, cap = settings.retry_base_delay, settings.retry_max_delay
    if settings.retry_backoff == "linear":
        delay = base * k
    elif settings.retry_backoff == "constant":
        delay = base
    else:
        delay = base * (2 ** min(k - 1, 62))
    if delay <= 0 or delay > cap:
        delay = cap
    # +-25 % jitter (docs/contract/story-trigger.md#retry-throttle-stats)
    return delay * (0.75 + 0.5 * random.random())


def _is_retryable(exc: BaseException) -> bool:
    return (
        isinstance(exc, TriggerPendingError | KubernetesError | TriggerError)
        and bool(getattr(exc, "retryable", False))
        and not isinstance(exc, TriggerRejectedError)
    )


def story_input_schema(namespace: str, story_name: str) -> str:
    """``$bubuStorageSchema`` of offloaded trigger inputs (Go ``storyInputSchemaID``)."""
    name = story_name.strip()
    if not name:
        return ""
    ns = namespace.strip()
    return f"bubu://story/{ns}/{name}/inputs" if ns else f"bubu://story/{name}/inputs"


def storage_input_key(story_ns: str, story_name: str, token: str, inputs: Mapping[str, Any]) -> str:
    """Where offloaded trigger inputs go under the client namespace (Go
    ``deriveStorageInputKey``): the StoryRun name the trigger will get, plus the first 12 hex
    digits of the SHA-256 of the inputs' Go JSON, so a retry with other inputs under the same
    token never overwrites the first ones. Byte-identical to Go
    (tests/integration/test_trigger_offload.py).
    """
    if not token:
        return str(uuid.uuid4())
    base = identity.derive_story_run_name(story_ns, story_name, token)
    if not inputs:
        return base
    try:
        fingerprint = hashlib.sha256(gojson.marshal(inputs)).hexdigest()[:12]
    except ValueError:
        return base  # Go: a payload json.Marshal refuses has no fingerprint
    joined = f"{base}-{fingerprint}"
    if len(joined) <= identity.MAX_NAME_LENGTH:
        return joined
    prefix = base[: max(identity.MAX_NAME_LENGTH - 1 - len(fingerprint), 1)].strip("-")
    return f"{prefix or fingerprint[:1]}-{fingerprint}"


def _builtins(inputs: Any) -> dict[str, Any]:
    if inputs is None:
        return {}
    try:
        value = msgspec.to_builtins(inputs, str_keys=True)
    except (TypeError, msgspec.EncodeError) as exc:
        raise TriggerError(f"story inputs are not JSON-serialisable: {exc}") from exc
    if not isinstance(value, dict):
        # spec.inputs is a RawExtension declared ``type: object``
        # (docs/contract/index.md#resources).
        raise TriggerError(f"story inputs must be a JSON object, got {type(inputs).__name__}")
    return value


def _spec(obj: Mapping[str, Any]) -> Mapping[str, Any]:
    spec = obj.get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _same_request(existing: Mapping[str, Any], wanted: Mapping[str, Any]) -> bool:
    """Compare the immutable request of two StoryTriggers (Go ``storyTriggerRequestMatches``).

    Inputs are compared semantically through Go-canonical JSON: the API server re-serialises
    stored JSON, so Go's byte equality would be fragile here
    (docs/contract/story-trigger.md#waiting-and-duplicates).
    """
    a, b = _spec(existing), _spec(wanted)

    def ref(spec: Mapping[str, Any], name: str) -> tuple[Any, ...] | None:
        r = spec.get(name)
        if not isinstance(r, Mapping):
            return None
        return (
            (r.get("name") or "").strip(),
            (r.get("version") or "").strip(),
            r.get("namespace"),
        )

    if ref(a, "storyRef") != ref(b, "storyRef") or ref(a, "impulseRef") != ref(b, "impulseRef"):
        return False
    ida, idb = a.get("deliveryIdentity") or {}, b.get("deliveryIdentity") or {}
    for name in ("mode", "key", "inputHash", "submissionId"):
        if parse.go_trim_space(ida.get(name) or "") != parse.go_trim_space(idb.get(name) or ""):
            return False
    try:
        return identity.go_canonical_json(a.get("inputs") or {}) == identity.go_canonical_json(
            b.get("inputs") or {}
        )
    except ValueError:
        return False


def _decided(obj: Mapping[str, Any]) -> bool:
    status = obj.get("status")
    return isinstance(status, Mapping) and status.get("decision") in _DECISIONS


class StoryTriggers:
    """StoryTrigger admission on one client: what ``start_story``/``stop_story`` run.

    Args:
        kube: the Kubernetes client (or the testkit's in-memory cluster).
        source: where ``BUBU_*`` values are read, on every call.
        stats: impulse counters to feed (throttle waits; the dispatcher adds the rest).
        offload: the storage seam for large inputs (see the module docstring).
        use_watch: False skips the watch attempt and polls with GET from the start.
    """

    def __init__(
        self,
        kube: KubeAPI,
        source: EnvSource | None = None,
        *,
        stats: ImpulseStats | None = None,
        offload: InputOffload | None = None,
        use_watch: bool = True,
    ) -> None:
        self.kube = kube
        self.source: EnvSource = source or OsEnviron()
        self.stats = stats
        self.offload = offload
        self.use_watch = use_watch
        self._storage_env: env.RuntimeEnv | None = None
        # Smoothed time from create to decision. When the decision has to be polled (the
        # Impulse Role has no watch), the first GET waits for ~70 % of it: under load every
        # skipped "not yet" GET is load taken off the API server (Go polls every 50 ms).
        self._decision_ewma: float | None = None

    # -- namespaces and env ------------------------------------------------------------------

    def _identity(self) -> env.RuntimeEnv:
        # Re-read on every call, as the BUBU_TRIGGER_* policy is.
        return env.load_identity(self.source)

    def client_namespace(self) -> str:
        """The namespace triggers are created in (Go ``getPodNamespace``).

        See docs/contract/story-trigger.md#what-the-sdk-creates.
        """
        return env.resolve_namespace(self._identity()).strip() or self.kube.namespace

    def _parent_metadata(self) -> tuple[dict[str, str], dict[str, str]]:
        labels: dict[str, str] = {}
        annotations: dict[str, str] = {}
        ident = self._identity()
        run, step, step_run = (
            ident.storyrun_id.strip(),
            ident.step_name.strip(),
            ident.steprun_name.strip(),
        )
        if run:
            labels[LABEL_PARENT_STORYRUN] = identity.safe_label_value(run)
            annotations[LABEL_PARENT_STORYRUN] = run
        if step:
            labels[LABEL_PARENT_STEP] = identity.safe_label_value(step)
            annotations[LABEL_PARENT_STEP] = step
        if step_run:
            labels[LABEL_STEPRUN] = identity.safe_label_value(step_run)
            annotations[ANNOTATION_PARENT_STEPRUN] = step_run
        return labels, annotations

    # -- start ---------------------------------------------------------------------------------

    async def start(
        self,
        story_name: str,
        inputs: Any = None,
        namespace: str | None = None,
        *,
        token: str | None = None,
    ) -> TriggerResult:
        """Submit a StoryTrigger and wait for the decision; see ``start_story``."""
        story_name = (story_name or "").strip()
        if not story_name:
            raise TriggerError("story name is required")
        settings = load_trigger_settings(self.source)
        throttle = _throttle_for(settings)
        if throttle is None:
            return await self._start(settings, story_name, inputs, namespace, token)
        async with throttle.acquire() as waited:
            if waited and self.stats is not None:
                self.stats.record(throttled=1)
            return await self._start(settings, story_name, inputs, namespace, token)

    async def _start(
        self,
        settings: TriggerSettings,
        story_name: str,
        inputs: Any,
        namespace: str | None,
        token: str | None,
    ) -> TriggerResult:
        body, trigger_ns = await self._build(settings, story_name, inputs, namespace, token)
        timeout = operation_timeout(self.source)
        attempts = max(1, settings.retry_max_attempts)
        for attempt in range(1, attempts + 1):
            try:
                return await self._once(body, trigger_ns, timeout)
            except Exception as exc:
                if attempt >= attempts or not _is_retryable(exc):
                    raise
                delay = _retry_delay(settings, attempt)
                _log.debug("trigger attempt %d failed (%s); retrying in %.2fs", attempt, exc, delay)
                await asyncio.sleep(delay)
        raise AssertionError("unreachable")  # pragma: no cover

    async def _build(
        self,
        settings: TriggerSettings,
        story_name: str,
        inputs: Any,
        namespace: str | None,
        token: str | None,
    ) -> tuple[dict[str, Any], str]:
        client_ns = self.client_namespace()
        explicit_ns = (namespace or "").strip()
        story_ns = explicit_ns or client_ns
        raw_inputs = _builtins(inputs)
        who = self._identity()
        resolved_token = parse.go_trim_space(token or "") or _TOKEN.get() or who.trigger_token
        impulse_name = who.impulse_name
        impulse_ns = who.impulse_namespace
        ident = _resolve_identity(
            settings,
            resolved_token,
            inputs=raw_inputs,
            story=TargetStory(story_name, story_ns),
            impulse=TargetStory(impulse_name, impulse_ns or client_ns),
        )
        version = await self._story_version(story_name, story_ns)
        sent_inputs = raw_inputs
        offload = (
            self.offload
            if self.offload is not None
            else self._storage_offload(story_ns, story_name, version)
        )
        if offload is not None:
            storage_key = storage_input_key(
                story_ns, story_name, ident.key or ident.submission_id, raw_inputs
            )
            sent_inputs = await offload(raw_inputs, f"{client_ns}/{storage_key}")
        try:
            input_hash = identity.compute_trigger_input_hash(sent_inputs)
        except ValueError as exc:
            raise TriggerError(f"story inputs cannot be encoded as JSON: {exc}") from exc
        name = identity.derive_story_trigger_name(
            story_ns, story_name, ident.key, ident.submission_id
        )
        story_ref: dict[str, Any] = {"name": story_name}
        if version:
            story_ref["version"] = version
        if explicit_ns:
            story_ref["namespace"] = explicit_ns
        delivery: dict[str, Any] = {"mode": ident.mode, "submissionId": ident.submission_id}
        if ident.key:
            delivery["key"] = ident.key
            delivery["inputHash"] = input_hash
        spec: dict[str, Any] = {
            "storyRef": story_ref,
            "inputs": sent_inputs,
            "deliveryIdentity": delivery,
        }
        if impulse_name:
            impulse_ref: dict[str, Any] = {"name": impulse_name}
            if impulse_ns:
                impulse_ref["namespace"] = impulse_ns
            spec["impulseRef"] = impulse_ref
        metadata: dict[str, Any] = {"name": name, "namespace": client_ns}
        labels, annotations = self._parent_metadata()
        if labels:
            metadata["labels"] = labels
        if annotations:
            metadata["annotations"] = annotations
        return {"metadata": metadata, "spec": spec}, client_ns

    def _storage_offload(self, story_ns: str, story_name: str, version: str) -> InputOffload | None:
        """The run's storage (``BUBU_STORAGE_*``) as the offload, when storage is enabled.

        Go offloads through the process's shared storage manager (docs/contract/storage.md#stages);
        with storage disabled bubu sends the inputs inline and the operator offloads them when it
        creates the StoryRun (docs/differences.md).
        """
        if self._storage_env is None:
            self._storage_env = env.load_env(self.source)
        if self._storage_env.storage is None:
            return None
        from bubu._storage import shared
        from bubu._storage.manager import input_offload

        manager = shared.manager_for(self._storage_env, kube=self.kube)
        return cast(
            InputOffload,
            input_offload(
                manager,
                schema=story_input_schema(story_ns, story_name),
                schema_version=version,
            ),
        )

    async def _story_version(self, story_name: str, story_ns: str) -> str:
        # Go reads Story.spec.version and ignores every error; the Impulse Role has no
        # ``stories get`` so this is usually a 403 (docs/contract/story-trigger.md#story). Remember
        # the 403 per client. Go GETs the Story on every call; where the client can watch it, one
        # watch keeps the version current and the GET is made once (docs/differences.md).
        if _version_forbidden(self.kube):
            return ""
        get = getattr(self.kube, "get_live", None) or self.kube.get
        try:
            story = await get(STORY, story_name, story_ns)
        except ForbiddenError:
            _remember_version_forbidden(self.kube)
            return ""
        except KubernetesError:
            return ""
        version = _spec(story).get("version")
        return version.strip() if isinstance(version, str) else ""

    async def _once(self, body: dict[str, Any], namespace: str, wait: float) -> TriggerResult:
        name = body["metadata"]["name"]
        existed = False
        try:
            current = await self.kube.create(STORY_TRIGGER, body, namespace)
        except ConflictError as exc:
            existed = True
            if exc.reason not in (None, "AlreadyExists"):
                raise
            try:
                current = await self.kube.get(STORY_TRIGGER, name, namespace)
            except NotFoundError as gone:
                raise TriggerError(
                    f"storytrigger '{name}' already exists but could not be retrieved: {gone}",
                    retryable=True,
                ) from gone
            if not _same_request(current, body):
                raise TriggerIdentityConflictError(
                    f"storytrigger '{name}' already exists with different immutable request "
                    "identity; reuse is not allowed",
                    reason="ImmutableRequestMismatch",
                ) from None
        except ForbiddenError as exc:
            # The operator's webhook denies with 403 (docs/contract/errors.md#webhook-denials,
            # docs/contract/story-trigger.md#admission-webhook): that is a rejection of this
            # request, not a missing permission, and retrying cannot help.
            if _ADMISSION_DENIED in str(exc):
                raise TriggerRejectedError(
                    str(exc).split(_ADMISSION_DENIED, 1)[1].lstrip(": ") or str(exc),
                    reason="AdmissionDenied",
                ) from exc
            raise
        started = time.monotonic()
        first_poll = min(0.7 * self._decision_ewma, 2.0) if self._decision_ewma else 0.0
        decided = await wait_for_object(
            self.kube,
            STORY_TRIGGER,
            name,
            namespace,
            done=_decided,
            initial=current,
            wait=wait,
            use_watch=self.use_watch,
            first_poll=first_poll if not existed else 0.0,
        )
        if decided is not None and not existed:
            elapsed = time.monotonic() - started
            prior = self._decision_ewma
            self._decision_ewma = elapsed if prior is None else 0.8 * prior + 0.2 * elapsed
        if decided is None:
            raise TriggerPendingError(f"storytrigger '{namespace}/{name}' is still pending")
        result = await self._result(decided, namespace)
        return dataclasses.replace(result, deduplicated=True) if existed else result

    async def _result(self, trigger: Mapping[str, Any], namespace: str) -> TriggerResult:
        status = trigger.get("status") or {}
        name = (trigger.get("metadata") or {}).get("name", "")
        decision = status.get("decision")
        if decision == "Rejected":
            message = status.get("message") or f"storytrigger {namespace}/{name} was rejected"
            raise TriggerRejectedError(message, reason=status.get("reason"))
        ref = status.get("storyRunRef") or {}
        run_name = ref.get("name") if isinstance(ref, Mapping) else None
        if not run_name:
            raise TriggerError(
                f"storytrigger '{namespace}/{name}' resolved without a storyrun reference",
                retryable=True,
            )
        run_ns = ref.get("namespace") or namespace
        try:
            run = await self.kube.get(STORY_RUN, run_name, run_ns)
        except KubernetesError as exc:
            raise k8s_errors.with_context(
                exc, f"failed to get resolved storyrun '{run_name}' in namespace '{run_ns}'"
            ) from exc
        uid = ref.get("uid") or (run.get("metadata") or {}).get("uid")
        return TriggerResult(
            story_run=run_name,
            namespace=run_ns,
            decision="Reused" if decision == "Reused" else "Created",
            trigger=name,
            uid=uid,
            story_run_object=run,
        )

    # -- stop ----------------------------------------------------------------------------------

    async def stop(self, story_run: str, namespace: str | None = None) -> bool:
        """Request cancellation of a StoryRun; see ``stop_story``."""
        story_run = (story_run or "").strip()
        if not story_run:
            raise TriggerError("story run name is required")
        ns = (namespace or "").strip() or self.client_namespace()
        if not ns:
            raise TriggerError(f'failed to resolve namespace for storyrun "{story_run}"')
        # RetryOnConflict(DefaultRetry): 5 steps of ~10 ms
        # (docs/contract/story-trigger.md#stop-story).
        for attempt in range(5):
            try:
                run = await self.kube.get(STORY_RUN, story_run, ns)
            except NotFoundError as exc:
                raise StoryRunNotFoundError(
                    f'storyrun "{story_run}" not found: storyrun not found'
                ) from exc
            phase = (run.get("status") or {}).get("phase")
            if phase in _TERMINAL_PHASES or _spec(run).get("cancelRequested") is True:
                return False
            rv = (run.get("metadata") or {}).get("resourceVersion")
            patch = {"metadata": {"resourceVersion": rv}, "spec": {"cancelRequested": True}}
            try:
                await self.kube.merge_patch(STORY_RUN, story_run, patch, ns)
                return True
            except ConflictError:
                await asyncio.sleep(0.01 * (1 + 0.1 * random.random()) * (attempt + 1))
            except NotFoundError as exc:
                raise StoryRunNotFoundError(
                    f'storyrun "{story_run}" not found: storyrun not found'
                ) from exc
        raise ConflictError(
            f"failed to update storyrun '{story_run}' in namespace '{ns}': conflict persisted",
            reason="Conflict",
        )


_VERSION_FORBIDDEN: weakref.WeakKeyDictionary[Any, bool] = weakref.WeakKeyDictionary()


def _version_forbidden(kube: Any) -> bool:
    try:
        return _VERSION_FORBIDDEN.get(kube, False)
    except TypeError:
        return False


def _remember_version_forbidden(kube: Any) -> None:
    with contextlib.suppress(TypeError):
        _VERSION_FORBIDDEN[kube] = True


# --- the helpers users call --------------------------------------------------------------------


def _scope_source() -> EnvSource:
    from bubu import _scope

    scope = _scope.current()
    return scope.source if scope is not None else OsEnviron()


# Outside any run scope: one engine per event loop over the loop's shared client.
_UNSCOPED: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, StoryTriggers] = (
    weakref.WeakKeyDictionary()
)


async def _triggers() -> StoryTriggers:
    """The run's StoryTriggers (from the RunScope), or the one over the shared client.

    Outside a run scope every call uses the process's shared client (one per event loop,
    created on first use and closed when the loop shuts down: ``bubu._k8s.shared``), as Go's
    ``StartStory`` uses ``k8s.SharedClient``; no call builds a client of its own.
    """
    from bubu import _scope

    scope = _scope.current()
    if scope is not None:
        engine = _scope_engine(scope)
        if engine is not None:
            return engine
        # A run without a cluster (``bubu run``, BatchHarness): never reach for a real one.
        raise TriggerError(
            "start_story/stop_story need a Kubernetes client, and this run has none (a local "
            "run); in tests use bubu.testkit.ImpulseHarness or a FakeCluster scope"
        )
    from bubu._k8s.shared import shared_client

    kube = await shared_client()
    loop = asyncio.get_running_loop()
    engine = _UNSCOPED.get(loop)
    if engine is None or engine.kube is not kube:
        engine = _UNSCOPED[loop] = StoryTriggers(kube, OsEnviron())
    return engine


def _scope_engine(scope: _scope.RunScope) -> StoryTriggers | None:
    engine = scope.find(StoryTriggers)
    if engine is not None:
        return engine
    kube = scope.kube
    if kube is None:
        return None
    return scope.provide(StoryTriggers(kube, scope.source))


async def start_story(
    story_name: str, inputs: Any = None, namespace: str | None = None
) -> TriggerResult:
    """Start a Story through a StoryTrigger and wait for the controller's decision.

    The delivery policy comes from ``BUBU_TRIGGER_*`` (re-read on every call): with no token
    and no policy every call is a new run; a token (``trigger_token()`` or
    ``BUBU_TRIGGER_TOKEN``) or a key template makes the call idempotent.

    The decision is awaited with a watch on the one StoryTrigger; a broken watch (410, a
    dropped connection) is followed by a GET and a new watch. The operator's generated Impulse
    Role grants only ``create, get`` on ``storytriggers`` (docs/deploying.md#impulse-role), so there
    the first watch is refused with 403, the refusal is remembered for the client, and decisions are
    polled with GET (20 ms, x1.5, capped at 250 ms). To get the watch, add this rule to
    ``Impulse.spec.execution.rbac.rules`` (or the ImpulseTemplate's)::

        - apiGroups: ["runs.bubustack.io"]
          resources: ["storytriggers"]
          verbs: ["watch"]

    Args:
        story_name: the Story to run.
        inputs: a JSON object (dict or msgspec Struct); None means ``{}``.
        namespace: the Story's namespace; default: the client namespace.

    Returns:
        The accepted StoryRun (decision ``Created`` or ``Reused``).

    Raises:
        TriggerRejectedError: the controller rejected it (``.reason``), or
            ``TriggerIdentityConflictError`` for a token reused with different inputs.
        TriggerPendingError: no decision within ``BUBU_K8S_OPERATION_TIMEOUT`` (retryable).
        TriggerError: bad inputs or delivery policy.
        KubernetesError: the API server refused the write.
    """
    engine = await _triggers()
    return await engine.start(story_name, inputs, namespace)


async def start_story_with_token(
    story_name: str, token: str, inputs: Any = None, namespace: str | None = None
) -> TriggerResult:
    """Start a Story idempotently: the same token and inputs always give the same StoryRun.

    Args:
        story_name: the Story to run.
        token: the delivery token (for example a webhook delivery id); at most 253 characters.
        inputs: a JSON object; None means ``{}``.
        namespace: the Story's namespace; default: the client namespace.

    Raises:
        TriggerIdentityConflictError: the token was already used with different inputs.
        TriggerRejectedError, TriggerPendingError, TriggerError: as ``start_story``.
    """
    if not token or not parse.go_trim_space(token):
        raise TriggerError("trigger token must not be empty")
    engine = await _triggers()
    return await engine.start(story_name, inputs, namespace, token=token)


async def stop_story(story_run_name: str, namespace: str | None = None) -> bool:
    """Ask the operator to cancel a StoryRun (``spec.cancelRequested=true``).

    See docs/contract/story-trigger.md#stop-story.

    A run that is already terminal, or already asked to stop, is left unchanged.

    Returns:
        True when this call set the flag, False when there was nothing to do.

    Raises:
        StoryRunNotFoundError: the StoryRun does not exist.
    """
    engine = await _triggers()
    return await engine.stop(story_run_name, namespace)
