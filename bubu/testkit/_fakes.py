"""In-memory fakes of the cluster side of triggers, effects, signals and impulse stats.

``FakeCluster`` implements the ``KubeAPI`` protocol (``bubu._k8s.api``) in memory, with the
API server behaviours the SDK depends on: resourceVersions and 409 on stale PUT/patch, 409
``AlreadyExists``, the ``/status`` subresource split (create drops status, main-resource writes
keep it), generation bumps on spec changes, single-object watches, and admission checks that
stand in for the operator's webhooks (docs/contract/story-trigger.md#admission-webhook,
docs/contract/effect-claim.md#admission-webhook, docs/contract/story-trigger.md#the-storyrun,
docs/testing.md#webhook-checks). Because the SDK's helpers run unchanged against it, a harness test
exercises the same code as production.

The fake controllers run inside the cluster as write hooks:

* ``TriggerResolver``: resolves StoryTriggers like the operator
  (docs/contract/story-trigger.md#resolution, docs/testing.md#trigger-resolver), using the same
  identity code as the SDK (``bubu._k8s.identity``); can be told to stay pending or to reject.
* ``EffectClaimPhases``: derives ``EffectClaim.status.phase`` from the spec
  (docs/contract/effect-claim.md#roles, docs/testing.md#effectclaim-phases).
* ``StopStoryController``: finishes a StoryRun whose ``spec.cancelRequested`` is set
  (docs/testing.md#run-fixtures).

``resolve_story_trigger`` and ``effect_claim_violations`` are plain functions over
``KubeAPI``/dicts. The project's integration tests run the same SDK calls on these fakes and
against the real operator (bobrapet v0.1.13) and require the same outcomes.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import re
import uuid
from collections import defaultdict
from collections.abc import AsyncIterator, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from bubu._k8s import identity
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import (
    EFFECT_CLAIM,
    ENGRAM_TEMPLATE,
    IMPULSE,
    IMPULSE_TEMPLATE,
    STEP_RUN,
    STORY,
    STORY_RUN,
    STORY_TRIGGER,
    Kind,
)
from bubu._runtime.parse import go_trim_space as _trim
from bubu.errors import (
    ConflictError,
    ForbiddenError,
    KubernetesError,
    NotFoundError,
)

__all__ = [
    "EffectClaimPhases",
    "FakeCluster",
    "StopStoryController",
    "TriggerResolver",
    "effect_claim_status",
    "effect_claim_violations",
    "resolve_story_trigger",
    "story_trigger_violations",
]

ANNOTATION_REQUEST_NAME = "storyrun.bubustack.io/trigger-request-name"
ANNOTATION_REQUEST_UID = "storyrun.bubustack.io/trigger-request-uid"
ANNOTATION_TOKEN = "storyrun.bubustack.io/trigger-token"
ANNOTATION_INPUT_HASH = "storyrun.bubustack.io/trigger-input-hash"

Hook = Callable[[str, Kind, dict[str, Any]], None]


def _now() -> datetime:
    return datetime.now(UTC)


def _merge(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = _merge(result.get(key), value)
    return result


# --- admission checks (docs/testing.md#webhook-checks) -------------------------------------------


def story_trigger_violations(trigger: Mapping[str, Any]) -> list[str]:
    """Return the StoryTrigger webhook's identity errors, in the order it checks them.

    The webhook answers with the first one (docs/contract/story-trigger.md#admission-webhook;
    wording as bobrapet v0.1.13 words it). The referenced Story is checked by ``FakeCluster``
    admission, which can look it up. An empty list means the trigger is valid.
    """
    meta = trigger.get("metadata") or {}
    spec = trigger.get("spec") or {}
    story = spec.get("storyRef") or {}
    ident = spec.get("deliveryIdentity") or {}
    errors: list[str] = []
    if not _trim(story.get("name") or ""):
        errors.append("spec.storyRef.name is required")
    submission = _trim(ident.get("submissionId") or "")
    if not submission:
        errors.append("spec.deliveryIdentity.submissionId is required")
    mode = ident.get("mode") or "none"
    key = _trim(ident.get("key") or "")
    when = f'when spec.deliveryIdentity.mode="{mode}"'
    if mode == "none" and key:
        errors.append(f"spec.deliveryIdentity.key must be empty {when}")
    if mode in ("token", "key") and not key:
        errors.append(f"spec.deliveryIdentity.key is required {when}")
    if key and not _trim(ident.get("inputHash") or ""):
        errors.append(
            "spec.deliveryIdentity.inputHash is required when spec.deliveryIdentity.key is set"
        )
    if ident.get("inputHash"):
        try:
            actual = identity.compute_trigger_input_hash(spec.get("inputs"))
        except ValueError as exc:
            errors.append(f"spec.inputs cannot be hashed: {exc}")
        else:
            if actual != ident.get("inputHash"):
                errors.append("spec.deliveryIdentity.inputHash does not match spec.inputs")
    if not (meta.get("name") or "").strip():
        errors.append("metadata.name is required for StoryTrigger")
    if meta.get("generateName"):
        errors.append("metadata.generateName must be empty for StoryTrigger")
    story_ns = story.get("namespace") or meta.get("namespace") or ""
    expected = identity.derive_story_trigger_name(
        story_ns, story.get("name") or "", key, submission
    )
    if meta.get("name") and meta.get("name") != expected:
        errors.append(
            f'metadata.name must be "{expected}" for StoryTrigger (got "{meta.get("name")}")'
        )
    if story.get("namespace") and story.get("namespace") != meta.get("namespace"):
        # the operator's default reference policy ("deny")
        errors.append("cross-namespace StoryRef references are not allowed")
    return errors


def effect_claim_violations(
    new: Mapping[str, Any],
    old: Mapping[str, Any] | None = None,
    *,
    step_run_uid: str | None = None,
) -> list[str]:
    """Return what the EffectClaim webhook would reject in a write.

    See docs/contract/effect-claim.md#admission-webhook, docs/testing.md#webhook-checks.

    ``completedAt`` is compared after truncating it to whole seconds, as Go's ``metav1.Time``
    decoding-and-re-encoding does.
    """
    meta = new.get("metadata") or {}
    spec = new.get("spec") or {}
    ref = spec.get("stepRunRef") or {}
    errors: list[str] = []
    if not ref.get("name") or not spec.get("effectKey"):
        errors.append("spec.stepRunRef.name and spec.effectKey are required")
    if bool(spec.get("completedAt")) != bool(spec.get("completionStatus")):
        errors.append("spec.completedAt is required when spec.completionStatus is set")
    acquire, renew = (
        identity.parse_time(spec.get("acquireTime")),
        identity.parse_time(spec.get("renewTime")),
    )
    completed = identity.parse_time(spec.get("completedAt"))
    if completed is not None:
        completed = completed.replace(microsecond=0)
    if renew is not None and acquire is None:
        errors.append("spec.renewTime requires spec.acquireTime")
    if renew is not None and acquire is not None and renew < acquire:
        errors.append("spec.renewTime cannot be before spec.acquireTime")
    if completed is not None and acquire is not None and completed < acquire.replace(microsecond=0):
        errors.append("spec.completedAt cannot be before spec.acquireTime")
    if completed is not None and renew is not None and completed < renew:
        errors.append("spec.completedAt cannot be before spec.renewTime")
    expected = identity.derive_effect_claim_name(
        meta.get("namespace") or "", ref.get("name") or "", spec.get("effectKey") or ""
    )
    if meta.get("name") != expected:
        errors.append(f'metadata.name must be "{expected}" for EffectClaim')
    if ref.get("namespace") and ref.get("namespace") != meta.get("namespace"):
        errors.append("spec.stepRunRef must be in the same namespace")
    if step_run_uid is not None and ref.get("uid") and ref.get("uid") != step_run_uid:
        errors.append("spec.stepRunRef.uid does not match the StepRun")
    if old is not None:
        ospec = old.get("spec") or {}
        for name in ("stepRunRef", "effectKey", "idempotencyKey"):
            if (ospec.get(name) or None) != (spec.get(name) or None):
                errors.append(f"spec.{name} is immutable")
        ocompleted = identity.parse_time(ospec.get("completedAt"))
        if ocompleted is not None and (completed is None or completed < ocompleted):
            errors.append("spec.completedAt cannot be cleared or moved backward")
        if ospec.get("completionStatus") == "completed":
            frozen = (
                "completionStatus",
                "holderIdentity",
                "leaseDurationSeconds",
                "leaseTransitions",
                "acquireTime",
                "renewTime",
            )
            if any(ospec.get(n) != spec.get(n) for n in frozen):
                errors.append("a completed EffectClaim is frozen")
    return errors


def effect_claim_status(claim: Mapping[str, Any], *, now: datetime | None = None) -> dict[str, Any]:
    """Return the status the EffectClaim controller derives from the spec.

    See docs/contract/effect-claim.md#roles.
    """
    spec = claim.get("spec") or {}
    generation = (claim.get("metadata") or {}).get("generation")
    table = {
        "": ("Reserved", ("False", "True", "False"), "Reserved"),
        "completed": ("Completed", ("True", "False", "False"), "Completed"),
        "released": ("Released", ("False", "False", "False"), "Released"),
        "abandoned": ("Abandoned", ("False", "False", "True"), "Abandoned"),
    }
    phase, flags, reason = table.get(spec.get("completionStatus") or "", table[""])
    stamp = identity.utc_seconds(now or _now())
    conditions = [
        {
            "type": ctype,
            "status": flag,
            "reason": reason,
            "message": f"effect claim {phase.lower()}",
            "lastTransitionTime": stamp,
            **({"observedGeneration": generation} if generation else {}),
        }
        for ctype, flag in zip(("Ready", "Progressing", "Degraded"), flags, strict=True)
    ]
    status: dict[str, Any] = {"phase": phase, "conditions": conditions}
    if generation:
        status["observedGeneration"] = generation
    return status


# --- the in-memory API server -----------------------------------------------------------------


@dataclass
class _Event:
    rv: int
    type: str
    plural: str
    namespace: str
    name: str
    obj: dict[str, Any]


class FakeCluster:
    """An in-memory Kubernetes API for the bubu kinds, implementing ``KubeAPI``.

    Args:
        namespace: the client namespace (used when a call passes ``namespace=None``).
        webhooks: emulate the operator's admission checks (StoryTrigger, EffectClaim,
            StoryRun spec immutability) and answer violations with 403 as the real webhooks do.

    Like the operator's Roles, ``get`` on EngramTemplates and ImpulseTemplates is refused (403):
    schema validation is skipped unless a test calls ``allow("get", ENGRAM_TEMPLATE)``.

    Attributes:
        requests: every call as ``(verb, plural, name, subresource)``, for assertions.
        denials: admission messages that were returned as 403.
    """

    def __init__(self, namespace: str = "default", *, webhooks: bool = True) -> None:
        self._namespace = namespace
        self.webhooks = webhooks
        self._objects: dict[tuple[str, str, str], dict[str, Any]] = {}
        self._rv = 0
        self._events: list[_Event] = []
        self._changed = asyncio.Condition() if _has_loop() else None
        self._hooks: list[Hook] = []
        self._faults: dict[tuple[str, str], list[BaseException]] = defaultdict(list)
        # The operator's Roles are namespaced, and the templates cluster-scoped: a pod can never
        # read its EngramTemplate or ImpulseTemplate (docs/templates.md), so neither can we.
        self._forbidden: set[tuple[str, str]] = {
            ("get", ENGRAM_TEMPLATE.plural),
            ("get", IMPULSE_TEMPLATE.plural),
        }
        self.requests: list[tuple[str, str, str, str | None]] = []
        self.denials: list[str] = []

    # -- configuration -----------------------------------------------------------------------

    @property
    def namespace(self) -> str:
        """The client namespace."""
        return self._namespace

    def add_hook(self, hook: Hook) -> None:
        """Call ``hook(verb, kind, stored_object)`` after every successful write."""
        self._hooks.append(hook)

    def fail(self, verb: str, kind: Kind, error: BaseException, *, times: int = 1) -> None:
        """Make the next ``times`` calls of ``verb`` (``get``, ``create``...) on ``kind`` fail."""
        self._faults[(verb, kind.plural)].extend([error] * times)

    def forbid(self, verb: str, kind: Kind) -> None:
        """Answer every ``verb`` on ``kind`` with 403, as a Role without that verb would."""
        self._forbidden.add((verb, kind.plural))

    def allow(self, verb: str, kind: Kind) -> None:
        """Lift a 403 of ``forbid`` (or the default one on the cluster-scoped templates, as a
        ClusterRole granting ``get`` on them would)."""
        self._forbidden.discard((verb, kind.plural))

    def count(self, verb: str, kind: Kind, *, subresource: str | None = None) -> int:
        """Return how many ``verb`` calls on ``kind`` (and subresource) were made."""
        return sum(
            1
            for v, plural, _n, sub in self.requests
            if v == verb and plural == kind.plural and sub == subresource
        )

    # -- direct access for tests -------------------------------------------------------------

    def objects(self, kind: Kind, namespace: str | None = None) -> list[dict[str, Any]]:
        """Return copies of the stored objects of ``kind`` (in ``namespace`` when given)."""
        return [
            copy.deepcopy(obj)
            for (plural, ns, _name), obj in sorted(self._objects.items())
            if plural == kind.plural and (namespace is None or ns == namespace)
        ]

    def peek(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any] | None:
        """Return a copy of one stored object, or None."""
        obj = self._objects.get((kind.plural, namespace or self._namespace, name))
        return copy.deepcopy(obj) if obj is not None else None

    def put(
        self, kind: Kind, obj: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """Store an object as a controller would, status included (test seeding; no hooks)."""
        body = copy.deepcopy(dict(obj))
        meta = body.setdefault("metadata", {})
        ns = meta.get("namespace") or namespace or self._namespace
        key = (kind.plural, ns, meta["name"])
        previous = self._objects.get(key)
        meta["namespace"] = ns
        meta.setdefault("uid", (previous or {}).get("metadata", {}).get("uid") or str(uuid.uuid4()))
        meta.setdefault("creationTimestamp", identity.utc_seconds(_now()))
        meta.setdefault("generation", 1)
        body.setdefault("apiVersion", kind.api_version)
        body.setdefault("kind", kind.kind)
        return self._store(kind, key, body, "MODIFIED" if previous else "ADDED")

    # -- KubeAPI -----------------------------------------------------------------------------

    def _enter(self, verb: str, kind: Kind, name: str, subresource: str | None = None) -> None:
        self.requests.append((verb, kind.plural, name, subresource))
        plural = kind.plural + (f"/{subresource}" if subresource else "")
        if (verb, plural) in self._forbidden or (verb, kind.plural) in self._forbidden:
            raise ForbiddenError(
                f"{verb} {plural}/{name}: {plural} is forbidden: "
                f'User cannot {verb} resource "{plural}"',
                status_code=403,
                reason="Forbidden",
            )
        faults = self._faults.get((verb, kind.plural))
        if faults:
            raise faults.pop(0)

    def _ns(self, namespace: str | None) -> str:
        return namespace or self._namespace

    def _store(
        self, kind: Kind, key: tuple[str, str, str], obj: dict[str, Any], event: str
    ) -> dict[str, Any]:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        self._objects[key] = obj
        self._events.append(_Event(self._rv, event, key[0], key[1], key[2], copy.deepcopy(obj)))
        self._notify()
        stored = copy.deepcopy(obj)
        for hook in list(self._hooks):
            hook(event, kind, copy.deepcopy(obj))
        return stored

    def _notify(self) -> None:
        if self._changed is None and _has_loop():
            self._changed = asyncio.Condition()
        cond = self._changed
        if cond is None:
            return

        async def wake() -> None:
            async with cond:
                cond.notify_all()

        with contextlib.suppress(RuntimeError):
            asyncio.get_running_loop().create_task(wake(), name="bubu.testkit.fake-notify")

    def _deny(self, operation: str, kind: Kind, errors: list[str]) -> None:
        if errors and self.webhooks:
            message = (
                f'admission webhook "v{kind.kind.lower()}-v1alpha1.kb.io" denied the request: '
                + "; ".join(errors)
            )
            self.denials.append(message)
            raise ForbiddenError(f"{operation}: {message}", status_code=403, reason="Forbidden")

    def _get(self, kind: Kind, name: str, ns: str) -> dict[str, Any]:
        obj = self._objects.get((kind.plural, ns, name))
        if obj is None:
            raise NotFoundError(
                f'GET {kind.plural}/{name}: {kind.plural} "{name}" not found',
                status_code=404,
                reason="NotFound",
            )
        return obj

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET one object."""
        self._enter("get", kind, name)
        await asyncio.sleep(0)
        return copy.deepcopy(self._get(kind, name, self._ns(namespace)))

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object (status is dropped, as for the status subresource)."""
        obj = copy.deepcopy(dict(body))
        meta = obj.setdefault("metadata", {})
        name = meta.get("name")
        self._enter("create", kind, name or "")
        await asyncio.sleep(0)
        if not name:
            raise KubernetesError(
                f"POST {kind.plural}: metadata.name is required", status_code=422, reason="Invalid"
            )
        ns = self._ns(meta.get("namespace") or namespace)
        meta["namespace"] = ns
        key = (kind.plural, ns, name)
        if key in self._objects:
            raise ConflictError(
                f'POST {kind.plural}: {kind.plural} "{name}" already exists',
                status_code=409,
                reason="AlreadyExists",
            )
        obj.pop("status", None)
        obj.setdefault("apiVersion", kind.api_version)
        obj.setdefault("kind", kind.kind)
        meta["uid"] = str(uuid.uuid4())
        meta["creationTimestamp"] = identity.utc_seconds(_now())
        meta["generation"] = 1
        self._admit(kind, obj, None, f"POST {kind.plural}")
        return self._store(kind, key, obj, "ADDED")

    def _admit(
        self, kind: Kind, new: dict[str, Any], old: dict[str, Any] | None, operation: str
    ) -> None:
        if kind == STORY_TRIGGER:
            errors = story_trigger_violations(new) or self._story_ref_errors(new)
            if old is not None and old.get("spec") != new.get("spec"):
                errors.append(
                    "spec is immutable for StoryTrigger; "
                    "create a new StoryTrigger for updated trigger requests"
                )
            self._deny(operation, kind, errors[:1])  # the webhook stops at its first error
        elif kind == EFFECT_CLAIM:
            ref = (new.get("spec") or {}).get("stepRunRef") or {}
            step = self._objects.get(
                (STEP_RUN.plural, new["metadata"]["namespace"], ref.get("name", ""))
            )
            errors = effect_claim_violations(
                new, old, step_run_uid=(step or {}).get("metadata", {}).get("uid")
            )
            if step is None:
                errors.append(f"referenced StepRun {ref.get('name')!r} not found")
            self._deny(operation, kind, errors)
        elif kind == STORY_RUN and old is not None:
            # Spec is immutable except a cancelRequested false -> true flip
            # (docs/contract/story-trigger.md#the-storyrun,
            # docs/contract/story-trigger.md#stop-story).
            ospec, nspec = dict(old.get("spec") or {}), dict(new.get("spec") or {})
            was = bool(ospec.pop("cancelRequested", False))
            now = bool(nspec.pop("cancelRequested", False))
            if ospec != nspec or (was and not now):
                self._deny(operation, kind, ["spec is immutable"])

    def _story_ref_errors(self, trigger: Mapping[str, Any]) -> list[str]:
        """The StoryTrigger webhook's last check: the referenced Story exists (and has the
        requested version). The real operator refuses the request here, so no trigger exists
        and nothing is ever decided."""
        ref = (trigger.get("spec") or {}).get("storyRef") or {}
        key = f"{ref.get('namespace') or trigger['metadata']['namespace']}/{ref.get('name')}"
        ns, name = key.split("/", 1)
        story = self._objects.get((STORY.plural, ns, name))
        if story is None:
            return [f"referenced story '{key}' not found"]
        want = _trim(ref.get("version") or "")
        have = _trim((story.get("spec") or {}).get("version") or "")
        if want and want != have:
            return [f"referenced story '{key}' has version '{have}', expected '{want}'"]
        return []

    def _write(
        self,
        kind: Kind,
        name: str,
        ns: str,
        new: dict[str, Any],
        *,
        subresource: str | None,
        operation: str,
        expected_rv: str | None,
    ) -> dict[str, Any]:
        old = self._get(kind, name, ns)
        if expected_rv and expected_rv != old["metadata"].get("resourceVersion"):
            raise ConflictError(
                f"{operation}: Operation cannot be fulfilled on {kind.plural} {name!r}: the "
                "object has been modified; please apply your changes to the latest version",
                status_code=409,
                reason="Conflict",
            )
        if subresource == "status":
            result = copy.deepcopy(old)
            if "status" in new:
                result["status"] = new["status"]
            else:
                result.pop("status", None)
            if kind == STEP_RUN:
                self._check_step_run_status(result.get("status"), operation)
        else:
            result = copy.deepcopy(new)
            if "status" in old:
                result["status"] = copy.deepcopy(old["status"])
            else:
                result.pop("status", None)
            meta = result.setdefault("metadata", {})
            for field in ("uid", "creationTimestamp", "namespace", "name", "generation"):
                if field in old["metadata"]:
                    meta[field] = old["metadata"][field]
            if result.get("spec") != old.get("spec"):
                meta["generation"] = int(old["metadata"].get("generation") or 1) + 1
            self._admit(kind, result, old, operation)
        return self._store(kind, (kind.plural, ns, name), result, "MODIFIED")

    def _check_step_run_status(self, status: Any, operation: str) -> None:
        # CRD rules the SDK must respect on /status
        # (docs/contract/steprun-status.md#retries-required,
        # docs/contract/steprun-status.md#objects-only, docs/contract/steprun-status.md#limits).
        errors: list[str] = []
        if not isinstance(status, Mapping) or "retries" not in status:
            errors.append("status.retries: Required value")
        else:
            for name in ("effects", "signalEvents"):
                items = status.get(name) or []
                if len(items) > 256:
                    errors.append(f"status.{name}: Too many: {len(items)}: must have at most 256")
                for item in items:
                    if "seq" not in item or "key" not in item:
                        errors.append(f"status.{name}: seq and key are required")
            for value in (status.get("signals") or {}).values():
                if not isinstance(value, Mapping):
                    errors.append("status.signals: must be of type object")
        if errors:
            raise KubernetesError(
                f"{operation}: " + "; ".join(errors), status_code=422, reason="Invalid"
            )

    async def replace(
        self,
        kind: Kind,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT the whole object; a stale ``metadata.resourceVersion`` gives 409."""
        self._enter("update", kind, name, subresource)
        await asyncio.sleep(0)
        new = copy.deepcopy(dict(body))
        rv = (new.get("metadata") or {}).get("resourceVersion")
        ns = self._ns(namespace)
        return self._write(
            kind,
            name,
            ns,
            new,
            subresource=subresource,
            operation=f"PUT {kind.plural}/{name}",
            expected_rv=rv,
        )

    async def merge_patch(
        self,
        kind: Kind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Apply a JSON merge patch; ``metadata.resourceVersion`` in it is a precondition."""
        self._enter("patch", kind, name, subresource)
        await asyncio.sleep(0)
        ns = self._ns(namespace)
        old = self._get(kind, name, ns)
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        merged = _merge(old, patch)
        merged.setdefault("metadata", {})["resourceVersion"] = old["metadata"]["resourceVersion"]
        return self._write(
            kind,
            name,
            ns,
            merged,
            subresource=subresource,
            operation=f"PATCH {kind.plural}/{name}",
            expected_rv=rv,
        )

    async def delete(self, kind: Kind, name: str, namespace: str | None = None) -> None:
        """DELETE one object."""
        self._enter("delete", kind, name)
        ns = self._ns(namespace)
        obj = self._get(kind, name, ns)
        del self._objects[(kind.plural, ns, name)]
        self._rv += 1
        self._events.append(_Event(self._rv, "DELETED", kind.plural, ns, name, copy.deepcopy(obj)))
        self._notify()

    async def watch(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield ``(type, object)`` for changes of one object after ``resource_version``."""
        self._enter("watch", kind, name)
        ns = self._ns(namespace)
        if self._changed is None:
            self._changed = asyncio.Condition()
        cond = self._changed
        start = int(resource_version) if resource_version else 0
        if not resource_version:
            current = self._objects.get((kind.plural, ns, name))
            if current is not None:
                yield "ADDED", copy.deepcopy(current)
                start = int(current["metadata"]["resourceVersion"])
            else:
                start = self._rv
        loop = asyncio.get_running_loop()
        deadline = loop.time() + (timeout_seconds if timeout_seconds else 3600)
        seen = start
        while loop.time() < deadline:
            for event in [e for e in self._events if e.rv > seen]:
                seen = event.rv
                if (event.plural, event.namespace, event.name) == (kind.plural, ns, name):
                    yield event.type, copy.deepcopy(event.obj)
            async with cond:
                with contextlib.suppress(TimeoutError):
                    # Bounded wait: a change landing between the scan and the wait is picked up
                    # on the next turn even if its notification raced ahead of us.
                    await asyncio.wait_for(
                        cond.wait(), timeout=max(0.0, min(0.05, deadline - loop.time()))
                    )

    # -- seeding helpers ---------------------------------------------------------------------

    def seed_story(self, name: str, namespace: str | None = None, *, version: str = "") -> None:
        """Store a Story (what the trigger resolver looks up)."""
        spec: dict[str, Any] = {"steps": [{"name": "start", "type": "condition"}]}
        if version:
            spec["version"] = version
        self.put(STORY, {"metadata": {"name": name}, "spec": spec}, namespace)

    def seed_step_run(
        self,
        name: str,
        namespace: str | None = None,
        *,
        story_run: str = "run",
        step_id: str = "step",
        status: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Store a running StepRun as the StepRun controller would.

        See docs/testing.md#run-fixtures.
        """
        ns = namespace or self._namespace
        return self.put(
            STEP_RUN,
            {
                "metadata": {"name": name},
                "spec": {
                    "storyRunRef": {"name": story_run},
                    "stepId": step_id,
                    "idempotencyKey": identity.step_run_idempotency_key(ns, story_run, step_id),
                },
                "status": dict(status or {"phase": "Running", "retries": 0}),
            },
            ns,
        )

    def seed_story_run(
        self,
        name: str,
        namespace: str | None = None,
        *,
        story: str = "story",
        phase: str = "Running",
    ) -> dict[str, Any]:
        """Store a StoryRun in ``phase`` (for stop_story)."""
        return self.put(
            STORY_RUN,
            {
                "metadata": {"name": name},
                "spec": {"storyRef": {"name": story}},
                "status": {"phase": phase, "startedAt": identity.utc_seconds(_now())},
            },
            namespace,
        )

    def seed_impulse(
        self, name: str, namespace: str | None = None, *, story: str = "story"
    ) -> None:
        """Store an Impulse (for the trigger counters)."""
        self.put(
            IMPULSE,
            {
                "metadata": {"name": name},
                "spec": {"templateRef": {"name": "template"}, "storyRef": {"name": story}},
            },
            namespace,
        )


def _has_loop() -> bool:
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return False
    return True


# --- StoryTrigger resolution (docs/contract/story-trigger.md#resolution,
# docs/testing.md#trigger-resolver) ----------------------------------------------

_REASON = re.compile(r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")


def _conditions(
    resolved: bool, reason: str, message: str, *, generation: Any, old: list[Any], now: str
) -> list[dict[str, Any]]:
    flags = {"Ready": "True", "Progressing": "False", "Degraded": "False"}
    if not resolved:
        flags = {"Ready": "False", "Progressing": "False", "Degraded": "True"}
    reason = reason if _REASON.match(reason) and len(reason) <= 64 else "Unknown"
    previous = {c.get("type"): c for c in old if isinstance(c, Mapping)}
    out = []
    for ctype, flag in flags.items():
        prior = previous.get(ctype) or {}
        out.append(
            {
                "type": ctype,
                "status": flag,
                "reason": reason,
                "message": message[:2048],
                # lastTransitionTime moves only when the status value changes
                # (docs/contract/story-trigger.md#resolution).
                "lastTransitionTime": prior.get("lastTransitionTime", now)
                if prior.get("status") == flag
                else now,
                **({"observedGeneration": generation} if generation else {}),
            }
        )
    return out


async def resolve_story_trigger(
    kube: KubeAPI, trigger: Mapping[str, Any], *, validate: bool = True
) -> dict[str, Any]:
    """Decide one StoryTrigger as the operator does, create its StoryRun, write its status.

    Works on any ``KubeAPI`` (the in-memory cluster or an admin ``KubeClient``). Steps follow
    docs/testing.md#trigger-resolver (including the validation the Go emulator skips).

    Returns:
        The status written (``decision``, ``reason``, ``message``, ``storyRunRef``...).
    """
    meta = trigger.get("metadata") or {}
    spec = trigger.get("spec") or {}
    trigger_ns = meta.get("namespace") or kube.namespace
    name = meta.get("name") or ""
    story = spec.get("storyRef") or {}
    story_ns = story.get("namespace") or trigger_ns
    ident = spec.get("deliveryIdentity") or {}
    key = _trim(ident.get("key") or "")
    submission = _trim(ident.get("submissionId") or "")
    run_ref: dict[str, Any] | None = None

    async def decide() -> tuple[str, str, str]:
        nonlocal run_ref
        if validate:
            errors = story_trigger_violations(trigger)
            if errors:
                return "Rejected", "ValidationFailed", errors[0]  # the controller's first error
        try:
            story_obj = await kube.get(STORY, story.get("name", ""), story_ns)
        except NotFoundError:
            return (
                "Rejected",
                "StoryNotFound",
                f'referenced Story "{story_ns}/{story.get("name")}" was not found',
            )
        want = _trim(story.get("version") or "")
        have = _trim((story_obj.get("spec") or {}).get("version") or "")
        if want and want != have:
            return (
                "Rejected",
                "StoryVersionMismatch",
                f'referenced Story "{story_ns}/{story.get("name")}" has version "{have}", '
                f'expected "{want}"',
            )
        input_hash = identity.compute_trigger_input_hash(spec.get("inputs"))
        if ident.get("inputHash") and ident.get("inputHash") != input_hash:
            return (
                "Rejected",
                "InputHashMismatch",
                "spec.deliveryIdentity.inputHash does not match spec.inputs",
            )
        run_name = identity.derive_story_run_name(
            story_ns, story.get("name", ""), key or submission
        )
        annotations = {ANNOTATION_REQUEST_NAME: name, ANNOTATION_REQUEST_UID: meta.get("uid", "")}
        if key:
            annotations[ANNOTATION_TOKEN] = key
            annotations[ANNOTATION_INPUT_HASH] = input_hash
        run_spec: dict[str, Any] = {"storyRef": copy.deepcopy(story)}
        if spec.get("impulseRef"):
            run_spec["impulseRef"] = copy.deepcopy(spec["impulseRef"])
        if spec.get("inputs") is not None:
            run_spec["inputs"] = copy.deepcopy(spec["inputs"])
        body = {"metadata": {"name": run_name, "annotations": annotations}, "spec": run_spec}
        try:
            created = await kube.create(STORY_RUN, body, trigger_ns)
        except ConflictError:
            existing = await kube.get(STORY_RUN, run_name, trigger_ns)
            if not _run_matches(existing, story, story_ns, spec, input_hash):
                return (
                    "Rejected",
                    "StoryRunConflict",
                    f'existing StoryRun "{trigger_ns}/{run_name}" does not match StoryTrigger '
                    "storyRef and inputs",
                )
            emeta = existing.get("metadata") or {}
            run_ref = {"name": run_name, "namespace": trigger_ns, "uid": emeta.get("uid")}
            ann = emeta.get("annotations") or {}
            if ann.get(ANNOTATION_REQUEST_NAME) == name and ann.get(
                ANNOTATION_REQUEST_UID
            ) == meta.get("uid"):
                return (
                    "Created",
                    "StoryRunCreated",
                    f'recovered previously created StoryRun "{trigger_ns}/{run_name}"',
                )
            return "Reused", "StoryRunReused", f'reused existing StoryRun "{trigger_ns}/{run_name}"'
        except KubernetesError as exc:
            if exc.status_code == 422:
                return (
                    "Rejected",
                    "ValidationFailed",
                    f"StoryRun admission rejected the request: {exc}",
                )
            raise
        run_ref = {
            "name": run_name,
            "namespace": trigger_ns,
            "uid": (created.get("metadata") or {}).get("uid"),
        }
        return "Created", "StoryRunCreated", f'created StoryRun "{trigger_ns}/{run_name}"'

    decision, reason, message = await decide()
    # Write the decision against the trigger as we were given it (its resourceVersion); only if
    # it changed since, read it again - saves a GET per trigger in the common case.
    current: Mapping[str, Any] = trigger
    for attempt in range(3):
        now = identity.utc_seconds(_now())
        old_status = current.get("status") or {}
        generation = (current.get("metadata") or {}).get("generation")
        status: dict[str, Any] = {
            "observedGeneration": generation,
            "decision": decision,
            "reason": reason,
            "message": message,
            "acceptedAt": old_status.get("acceptedAt") or now,
            "completedAt": now,
            "conditions": _conditions(
                decision != "Rejected",
                reason,
                message,
                generation=generation,
                old=old_status.get("conditions") or [],
                now=now,
            ),
        }
        if decision != "Rejected" and run_ref is not None:
            status["storyRunRef"] = {k: v for k, v in run_ref.items() if v}
        rv = (current.get("metadata") or {}).get("resourceVersion")
        patch = {"metadata": {"resourceVersion": rv}, "status": status}
        try:
            await kube.merge_patch(STORY_TRIGGER, name, patch, trigger_ns, subresource="status")
            return status
        except ConflictError:
            if attempt == 2:
                raise
            current = await kube.get(STORY_TRIGGER, name, trigger_ns)
    raise AssertionError("unreachable")  # pragma: no cover


def _run_matches(
    run: Mapping[str, Any],
    story: Mapping[str, Any],
    story_ns: str,
    trigger_spec: Mapping[str, Any],
    input_hash: str,
) -> bool:
    """Go ``storyRunMatchesTrigger`` (docs/contract/story-trigger.md#resolution)."""
    rspec = run.get("spec") or {}
    rstory = rspec.get("storyRef") or {}
    rmeta = run.get("metadata") or {}
    if (rstory.get("name"), rstory.get("namespace") or rmeta.get("namespace")) != (
        story.get("name"),
        story_ns,
    ):
        return False
    if _trim(rstory.get("version") or "") != _trim(story.get("version") or ""):
        return False

    def impulse(ref: Any) -> tuple[Any, ...] | None:
        if not ref:
            return None
        return (ref.get("namespace"), ref.get("name"), ref.get("version"), ref.get("uid"))

    if impulse(rspec.get("impulseRef")) != impulse(trigger_spec.get("impulseRef")):
        return False
    stored = (rmeta.get("annotations") or {}).get(ANNOTATION_INPUT_HASH)
    actual = stored or identity.compute_trigger_input_hash(rspec.get("inputs"))
    return bool(actual == input_hash)


class TriggerResolver:
    """The operator's StoryTrigger controller, in memory.

    See docs/contract/story-trigger.md#resolution.

    Attach it to a ``FakeCluster``; every new StoryTrigger is resolved shortly after it is
    created (in a task, so the SDK sees the decision arrive through its watch).

    Attributes:
        pending: while True, triggers stay undecided (the "no operator" case,
        docs/testing.md#without-an-operator). decisions: ``(trigger name, decision, reason)`` in
        order.
    """

    def __init__(self, cluster: FakeCluster, *, validate: bool = True) -> None:
        self.cluster = cluster
        self.validate = validate
        self.pending = False
        self.decisions: list[tuple[str, str, str]] = []
        self._reject: list[tuple[str, str]] = []
        self._tasks: set[asyncio.Task[None]] = set()
        cluster.add_hook(self._on_write)

    def reject_next(self, reason: str, message: str) -> None:
        """Reject the next trigger with ``reason`` and ``message`` (e.g. a schema failure)."""
        self._reject.append((reason, message))

    def _on_write(self, event: str, kind: Kind, obj: dict[str, Any]) -> None:
        if kind != STORY_TRIGGER or event != "ADDED" or self.pending:
            return
        task = asyncio.get_running_loop().create_task(
            self._resolve(obj), name="bubu.testkit.trigger-resolver"
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def resolve_pending(self) -> int:
        """Resolve every undecided trigger now (after ``pending`` was turned off)."""
        count = 0
        for trigger in self.cluster.objects(STORY_TRIGGER):
            if not (trigger.get("status") or {}).get("decision"):
                await self._resolve(trigger)
                count += 1
        return count

    async def _resolve(self, trigger: dict[str, Any]) -> None:
        name = trigger["metadata"]["name"]
        if self._reject:
            reason, message = self._reject.pop(0)
            now = identity.utc_seconds(_now())
            current = await self.cluster.get(STORY_TRIGGER, name, trigger["metadata"]["namespace"])
            status = {
                "decision": "Rejected",
                "reason": reason,
                "message": message,
                "acceptedAt": now,
                "completedAt": now,
                "observedGeneration": current["metadata"].get("generation"),
                "conditions": _conditions(False, reason, message, generation=None, old=[], now=now),
            }
            await self.cluster.merge_patch(
                STORY_TRIGGER,
                name,
                {"status": status},
                trigger["metadata"]["namespace"],
                subresource="status",
            )
            self.decisions.append((name, "Rejected", reason))
            return
        status = await resolve_story_trigger(self.cluster, trigger, validate=self.validate)
        self.decisions.append((name, status["decision"], status["reason"]))

    async def aclose(self) -> None:
        """Wait for resolutions in flight."""
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)


class EffectClaimPhases:
    """The EffectClaim controller, in memory: ``status.phase`` follows the spec.

    See docs/testing.md#effectclaim-phases.
    """

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        cluster.add_hook(self._on_write)

    def _on_write(self, event: str, kind: Kind, obj: dict[str, Any]) -> None:
        if kind != EFFECT_CLAIM or event == "DELETED":
            return
        status = effect_claim_status(obj)
        if (obj.get("status") or {}).get("phase") == status["phase"]:
            return
        key = (kind.plural, obj["metadata"]["namespace"], obj["metadata"]["name"])
        stored = self.cluster._objects.get(key)
        if stored is not None:
            # Written like a controller's status update: it bumps the resourceVersion, so
            # the SDK's next PUT with the old one gets 409 - as in a real cluster.
            updated = copy.deepcopy(stored)
            updated["status"] = status
            self.cluster._store(kind, key, updated, "MODIFIED")


class StopStoryController:
    """Finishes a StoryRun once ``spec.cancelRequested`` is set.

    See docs/contract/story-trigger.md#stop-story, docs/testing.md#run-fixtures.
    """

    def __init__(self, cluster: FakeCluster) -> None:
        self.cluster = cluster
        cluster.add_hook(self._on_write)

    def _on_write(self, event: str, kind: Kind, obj: dict[str, Any]) -> None:
        if kind != STORY_RUN or not (obj.get("spec") or {}).get("cancelRequested"):
            return
        if (obj.get("status") or {}).get("phase") == "Finished":
            return
        key = (kind.plural, obj["metadata"]["namespace"], obj["metadata"]["name"])
        stored = copy.deepcopy(self.cluster._objects[key])
        stored["status"] = {**(stored.get("status") or {}), **story_run_canceled_status()}
        self.cluster._store(kind, key, stored, "MODIFIED")


def story_run_canceled_status(now: datetime | None = None) -> dict[str, Any]:
    """The status the StoryRun controller writes after a graceful cancel: phase

    See docs/testing.md#run-fixtures.

    ``Finished`` and Ready, Progressing and Degraded all ``False`` with reason ``Canceled``."""
    stamp = identity.utc_seconds(now or _now())
    message = "StoryRun gracefully canceled"
    conditions = [
        {
            "type": ctype,
            "status": "False",
            "reason": "Canceled",
            "message": message,
            "lastTransitionTime": stamp,
        }
        for ctype in ("Ready", "Progressing", "Degraded")
    ]
    return {"phase": "Finished", "message": message, "finishedAt": stamp, "conditions": conditions}
