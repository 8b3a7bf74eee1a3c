"""``KubeAPI``: the structural type of ``KubeClient`` that everything above ``bubu._k8s`` uses.

The status protocol, the durable helpers (triggers, effects, signals, dispatcher) and the
impulse entry point program against this protocol, never against ``KubeClient`` itself, so
``bubu.testkit``'s in-memory cluster can stand in for the API server and harness tests run the
production code unchanged. Light on purpose: importing it loads no HTTP or Kubernetes client.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from typing import Any, Protocol

from bubu._k8s.resources import Kind

__all__ = ["KubeAPI"]


class KubeAPI(Protocol):
    """The verbs of ``bubu._k8s.client.KubeClient`` the durable helpers use."""

    @property
    def namespace(self) -> str:
        """The client namespace (used when a method gets ``namespace=None``)."""
        ...

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """GET one object."""
        ...

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        """POST a new object."""
        ...

    async def replace(
        self,
        kind: Kind,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """PUT a whole object (conditional on ``metadata.resourceVersion``)."""
        ...

    async def merge_patch(
        self,
        kind: Kind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        """Send a JSON merge patch."""
        ...

    def watch(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Watch one object."""
        ...
