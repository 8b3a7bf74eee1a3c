"""Kubernetes resource kinds the SDK touches, and msgspec models of the shapes it writes.

Group, version and plural come from the operator's CRDs (bobrapet v0.1.12, ``crds/*.yaml``);
we never let a library guess a plural (kr8s would request ``/storys``,
docs/contract/index.md#apiserver).

This module imports only msgspec: it is data, not I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

__all__ = [
    "CONFIG_MAP",
    "EFFECT_CLAIM",
    "ENGRAM",
    "ENGRAM_TEMPLATE",
    "IMPULSE",
    "IMPULSE_TEMPLATE",
    "SECRET",
    "STEP_RUN",
    "STORY",
    "STORY_RUN",
    "STORY_TRIGGER",
    "TRANSPORT_BINDING",
    "Kind",
    "StepRunStatus",
    "StructuredError",
]


@dataclass(frozen=True, slots=True)
class Kind:
    """One Kubernetes resource type, enough to build its REST paths.

    Attributes:
        group: API group; ``""`` for the core group.
        version: API version (``v1alpha1``).
        plural: lower-case plural used in the URL (``stepruns``).
        kind: the ``kind`` written into bodies (``StepRun``).
        namespaced: False for cluster-scoped kinds (EngramTemplate).
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True

    @property
    def api_version(self) -> str:
        """Return ``group/version`` (or just ``version`` for the core group)."""
        return f"{self.group}/{self.version}" if self.group else self.version

    def path(
        self, *, namespace: str | None, name: str | None = None, subresource: str | None = None
    ) -> str:
        """Return the REST path of the collection, of one object, or of its subresource.

        Args:
            namespace: the namespace; ignored for cluster-scoped kinds, required otherwise.
            name: the object name, or None for the collection.
            subresource: e.g. ``"status"``; needs ``name``.

        Raises:
            ValueError: a namespaced kind without a namespace, or a subresource without a name.
        """
        base = f"/apis/{self.group}/{self.version}" if self.group else f"/api/{self.version}"
        if self.namespaced:
            if not namespace:
                raise ValueError(f"{self.kind} is namespaced: namespace must not be empty")
            base = f"{base}/namespaces/{namespace}"
        parts = [base, self.plural]
        if name is not None:
            if not name:
                raise ValueError(f"{self.kind} name must not be empty")
            parts.append(name)
        if subresource:
            if name is None:
                raise ValueError("a subresource needs an object name")
            parts.append(subresource)
        return "/".join(parts)


_RUNS = "runs.bubustack.io"
_CORE = "bubustack.io"
_CATALOG = "catalog.bubustack.io"
_V1A1 = "v1alpha1"

STEP_RUN = Kind(_RUNS, _V1A1, "stepruns", "StepRun")
STORY_RUN = Kind(_RUNS, _V1A1, "storyruns", "StoryRun")
STORY_TRIGGER = Kind(_RUNS, _V1A1, "storytriggers", "StoryTrigger")
EFFECT_CLAIM = Kind(_RUNS, _V1A1, "effectclaims", "EffectClaim")
STORY = Kind(_CORE, _V1A1, "stories", "Story")
IMPULSE = Kind(_CORE, _V1A1, "impulses", "Impulse")
ENGRAM = Kind(_CORE, _V1A1, "engrams", "Engram")
ENGRAM_TEMPLATE = Kind(_CATALOG, _V1A1, "engramtemplates", "EngramTemplate", namespaced=False)
IMPULSE_TEMPLATE = Kind(_CATALOG, _V1A1, "impulsetemplates", "ImpulseTemplate", namespaced=False)
TRANSPORT_BINDING = Kind("transport.bubustack.io", _V1A1, "transportbindings", "TransportBinding")
CONFIG_MAP = Kind("", "v1", "configmaps", "ConfigMap")
SECRET = Kind("", "v1", "secrets", "Secret")


class StructuredError(msgspec.Struct, omit_defaults=True, rename="camel"):
    """StructuredError v1 as stored in ``StepRun.status.error``.

    See docs/contract/errors.md#structured-error.

    ``details`` must be a JSON object: the CRD declares it ``type: object``
    (docs/contract/steprun-status.md#objects-only).
    """

    type: str
    message: str
    version: str = "v1"
    retryable: bool | None = None
    exit_code: int | None = None
    exit_class: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None


class StepRunStatus(msgspec.Struct, omit_defaults=True, rename="camel"):
    """The StepRun status fields an engram writes.

    See docs/contract/steprun-status.md#resource, docs/contract/steprun-status.md#merge-rules.

    Every field defaults to "not provided" so that the encoded form is exactly what the
    caller set; the merge in ``status.py`` decides what reaches the server. ``output``,
    ``logs`` and ``signals[*]`` are objects, never scalars
    (docs/contract/steprun-status.md#objects-only).
    """

    phase: str | None = None
    started_at: str | None = None
    finished_at: str | None = None
    duration: str | None = None
    exit_code: int | None = None
    exit_class: str | None = None
    pod_name: str | None = None
    retries: int | None = None
    next_retry_at: str | None = None
    last_failure_msg: str | None = None
    output: dict[str, Any] | None = None
    logs: dict[str, Any] | None = None
    error: StructuredError | None = None
    needs: list[str] | None = None
    signals: dict[str, dict[str, Any] | None] | None = None
    signal_events: list[dict[str, Any]] | None = None
    effects: list[dict[str, Any]] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the camelCase JSON object of the provided fields only."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result
