"""A fake of the two StepRun verbs the status protocol uses (no sockets)."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

from bubu._k8s.resources import Kind
from bubu._k8s.status import merge_patch_diff
from bubu.errors import KubernetesError, NotFoundError


def apply_merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, Mapping):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, Mapping) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = apply_merge_patch(result.get(key), value)
    return result


class FakeStepRuns:
    """Holds StepRuns; ``fail_get``/``fail_patch`` queue errors to raise before succeeding."""

    namespace = "default"

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str], dict[str, Any]] = {}
        self.fail_get: list[KubernetesError] = []
        self.fail_patch: list[KubernetesError] = []
        self.patches: list[dict[str, Any]] = []
        self.gets = 0
        self.rv = 1
        self.before_patch: Any = None  # callable run between GET and PATCH (races)

    def seed(self, name: str, status: dict[str, Any] | None = None, ns: str = "default") -> None:
        obj: dict[str, Any] = {"metadata": {"name": name, "resourceVersion": str(self.rv)}}
        if status is not None:
            obj["status"] = status
        self.objects[(ns, name)] = obj

    def status(self, name: str, ns: str = "default") -> dict[str, Any]:
        return self.objects[(ns, name)].get("status", {})

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        self.gets += 1
        if self.fail_get:
            raise self.fail_get.pop(0)
        try:
            return copy.deepcopy(self.objects[(namespace or self.namespace, name)])
        except KeyError:
            raise NotFoundError(f"stepruns {name} not found", status_code=404) from None

    async def merge_patch(
        self,
        kind: Kind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        assert subresource == "status"
        self.patches.append(copy.deepcopy(dict(patch)))
        if self.before_patch is not None:
            hook, self.before_patch = self.before_patch, None
            hook()
        if self.fail_patch:
            raise self.fail_patch.pop(0)
        key = (namespace or self.namespace, name)
        obj = self.objects[key]
        rv = (patch.get("metadata") or {}).get("resourceVersion")
        if rv is not None and rv != obj["metadata"]["resourceVersion"]:
            from bubu.errors import ConflictError

            raise ConflictError("the object has been modified", status_code=409)
        new = apply_merge_patch(obj, {"status": patch["status"]})
        if "retries" not in new.get("status", {}):
            raise KubernetesError(
                "status.retries: Required value", status_code=422, reason="Invalid"
            )
        self.rv += 1
        new["metadata"]["resourceVersion"] = str(self.rv)
        self.objects[key] = new
        return copy.deepcopy(new)


__all__ = ["FakeStepRuns", "apply_merge_patch", "merge_patch_diff"]
