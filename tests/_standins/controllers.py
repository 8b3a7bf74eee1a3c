"""The stand-in controllers (see the package docstring).

They watch whole collections in one namespace with the admin identity (the operator's
ClusterRole covers this, crds.md 7.4), via a raw streaming GET (``?watch=1``), and fall back
to a LIST every ``poll_interval`` when a watch ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from types import TracebackType
from typing import Any, Self

import httpx

from bubu._k8s.client import KubeClient
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN, STORY_RUN, STORY_TRIGGER, Kind
from bubu.errors import ConflictError, KubernetesError, NotFoundError
from bubu.testkit._fakes import (
    effect_claim_status,
    effect_claim_violations,
    resolve_story_trigger,
)

log = logging.getLogger("tests.standins")

TERMINAL = {
    "Succeeded",
    "Failed",
    "Finished",
    "Canceled",
    "Compensated",
    "Timeout",
    "Aborted",
    "Skipped",
}


async def watch_collection(
    http: httpx.AsyncClient, kind: Kind, namespace: str, *, poll_interval: float = 0.02
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """Yield ``(type, object)`` for every change in the collection; LIST first, then watch."""
    path = kind.path(namespace=namespace)
    while True:
        r = await http.get(path)
        r.raise_for_status()
        listing = r.json()
        for item in listing.get("items") or []:
            yield "ADDED", item
        rv = (listing.get("metadata") or {}).get("resourceVersion")
        params = {"watch": "1", "resourceVersion": rv, "allowWatchBookmarks": "true"}
        try:
            async with http.stream(
                "GET", path, params=params, timeout=httpx.Timeout(30, read=None)
            ) as resp:
                async for line in resp.aiter_lines():
                    if not line.strip():
                        continue
                    event = json.loads(line)
                    if event.get("type") in ("BOOKMARK", "ERROR"):
                        if event.get("type") == "ERROR":
                            break
                        continue
                    yield event["type"], event["object"]
        except (httpx.TransportError, httpx.HTTPStatusError) as exc:
            log.debug("watch of %s ended: %s", kind.plural, exc)
        await asyncio.sleep(poll_interval)


class _Controller:
    kind: Kind

    def __init__(self, kube: KubeClient, http: httpx.AsyncClient, namespace: str) -> None:
        self.kube = kube
        self.http = http
        self.namespace = namespace
        self._task: asyncio.Task[None] | None = None
        self.errors: list[str] = []

    async def __aenter__(self) -> Self:
        self._task = asyncio.get_running_loop().create_task(
            self._run(), name=f"tests.standins.{type(self).__name__}"
        )
        return self

    async def __aexit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _run(self) -> None:
        async for etype, obj in watch_collection(self.http, self.kind, self.namespace):
            try:
                await self.handle(etype, obj)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # keep the controller alive, remember the failure
                log.warning("%s: %s", type(self).__name__, exc)
                self.errors.append(str(exc))

    async def handle(self, etype: str, obj: dict[str, Any]) -> None:
        raise NotImplementedError


class TriggerResolverStandIn(_Controller):
    """Resolves undecided StoryTriggers (crds.md 9.2) concurrently, at most ``parallel`` at once.

    Attributes:
        decisions: ``(trigger name, decision, reason)`` in order.
    """

    kind = STORY_TRIGGER

    def __init__(self, *args: Any, parallel: int = 16, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.decisions: list[tuple[str, str, str]] = []
        self._busy: set[str] = set()
        self._sem = asyncio.Semaphore(parallel)
        self._jobs: set[asyncio.Task[None]] = set()

    async def handle(self, etype: str, obj: dict[str, Any]) -> None:
        name = obj["metadata"]["name"]
        if etype == "DELETED" or (obj.get("status") or {}).get("decision"):
            return
        if obj["metadata"].get("deletionTimestamp") or name in self._busy:
            return
        self._busy.add(name)
        job = asyncio.get_running_loop().create_task(self._resolve(obj))
        self._jobs.add(job)
        job.add_done_callback(self._jobs.discard)

    async def _resolve(self, trigger: dict[str, Any]) -> None:
        name = trigger["metadata"]["name"]
        try:
            async with self._sem:
                status = await resolve_story_trigger(self.kube, trigger)
            self.decisions.append((name, status["decision"], status["reason"]))
        except ConflictError:
            self._busy.discard(name)  # the trigger changed under us: the next event retries
        except Exception as exc:
            log.warning("resolving %s failed: %s", name, exc)
            self.errors.append(f"{name}: {exc}")
            self._busy.discard(name)

    async def aclose(self) -> None:
        await super().aclose()
        for job in list(self._jobs):
            job.cancel()
        if self._jobs:
            await asyncio.gather(*self._jobs, return_exceptions=True)


class EffectClaimStandIn(_Controller):
    """Derives ``status.phase`` of EffectClaims (9.5) and checks every write (9.4).

    Attributes:
        violations: what the webhook would have rejected, per claim write seen.
        versions: every spec version seen, per claim name.
    """

    kind = EFFECT_CLAIM

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.violations: list[str] = []
        self.versions: dict[str, list[dict[str, Any]]] = {}
        self._last: dict[str, dict[str, Any]] = {}

    async def handle(self, etype: str, obj: dict[str, Any]) -> None:
        if etype == "DELETED":
            return
        name = obj["metadata"]["name"]
        previous = self._last.get(name)
        if previous is None or previous.get("spec") != obj.get("spec"):
            uid = None
            ref = (obj.get("spec") or {}).get("stepRunRef") or {}
            with contextlib.suppress(KubernetesError):
                step = await self.kube.get(STEP_RUN, ref.get("name", ""), self.namespace)
                uid = step["metadata"]["uid"]
            for problem in effect_claim_violations(obj, previous, step_run_uid=uid):
                self.violations.append(f"{name}: {problem}")
            self.versions.setdefault(name, []).append(obj.get("spec") or {})
        self._last[name] = obj
        wanted = effect_claim_status(obj)
        if (obj.get("status") or {}).get("phase") == wanted["phase"]:
            return
        with contextlib.suppress(ConflictError, NotFoundError):
            await self.kube.merge_patch(
                EFFECT_CLAIM,
                name,
                {
                    "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
                    "status": wanted,
                },
                self.namespace,
                subresource="status",
            )


class StopStoryStandIn(_Controller):
    """Finishes StoryRuns with ``spec.cancelRequested`` (crds.md 5, 9.3)."""

    kind = STORY_RUN

    async def handle(self, etype: str, obj: dict[str, Any]) -> None:
        if etype == "DELETED" or not (obj.get("spec") or {}).get("cancelRequested"):
            return
        status = obj.get("status") or {}
        if status.get("phase") in TERMINAL:
            return
        from datetime import UTC, datetime

        now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "status": {
                "phase": "Finished",
                "message": "StoryRun gracefully canceled",
                "finishedAt": now,
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "False",
                        "reason": "Canceled",
                        "message": "StoryRun gracefully canceled",
                        "lastTransitionTime": now,
                    }
                ],
            },
        }
        with contextlib.suppress(ConflictError, NotFoundError):
            await self.kube.merge_patch(
                STORY_RUN, obj["metadata"]["name"], patch, self.namespace, subresource="status"
            )


class StandIns:
    """All three stand-ins for one namespace, with their own admin clients.

    Args:
        kubeconfig: an admin kubeconfig path.
        http: an admin ``httpx.AsyncClient`` (base_url = the API server).
        namespace: the namespace to watch.
    """

    def __init__(self, kubeconfig: str, http: httpx.AsyncClient, namespace: str) -> None:
        self.kubeconfig = kubeconfig
        self.http = http
        self.namespace = namespace
        self.kube: KubeClient | None = None
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        self.kube = await KubeClient.connect(kubeconfig=self.kubeconfig, namespace=self.namespace)
        await self._stack.enter_async_context(self.kube)
        args = (self.kube, self.http, self.namespace)
        self.resolver = await self._stack.enter_async_context(TriggerResolverStandIn(*args))
        self.claims = await self._stack.enter_async_context(EffectClaimStandIn(*args))
        self.stopper = await self._stack.enter_async_context(StopStoryStandIn(*args))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
