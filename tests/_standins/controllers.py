"""The stand-in controllers (see the package docstring).

They watch whole collections in one namespace with the admin identity (the operator's
ClusterRole covers this, crds.md 7.4), via a raw streaming GET (``?watch=1``); when a watch
ends they LIST again (after ``poll_interval``) and re-watch from the list's resourceVersion.
Work is event-driven, never periodic polling: the trigger benchmark must measure the SDK, not
a resolver that wakes up every 20 ms.

Like the operator (whose controllers read through informer caches), the resolver reads Stories
from a watch-fed cache instead of one GET per trigger, and every stand-in talks to the API
server through the same ``httpx`` client as its watches (``HttpKube``, no kr8s layer): the
stand-ins share the machine with the SDK under test, so their CPU per trigger matters.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator, Mapping
from types import TracebackType
from typing import Any, Self

import httpx

from bubu._k8s import errors as k8s_errors
from bubu._k8s.resources import EFFECT_CLAIM, STEP_RUN, STORY, STORY_RUN, STORY_TRIGGER, Kind
from bubu.errors import ConflictError, KubernetesError, NotFoundError
from bubu.testkit._fakes import (
    effect_claim_status,
    effect_claim_violations,
    resolve_story_trigger,
    story_run_canceled_status,
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


class HttpKube:
    """The ``KubeAPI`` verbs the stand-ins use, over their admin ``httpx`` client.

    One client carries the watches and the writes; errors
    are translated exactly as ``KubeClient`` does (``bubu._k8s.errors.from_status``), so the
    shared decision code (``resolve_story_trigger``) sees the same exceptions.
    """

    def __init__(self, http: httpx.AsyncClient, namespace: str) -> None:
        self.http = http
        self._namespace = namespace

    @property
    def namespace(self) -> str:
        return self._namespace

    async def _call(
        self,
        method: str,
        kind: Kind,
        namespace: str | None,
        name: str | None = None,
        subresource: str | None = None,
        body: Mapping[str, Any] | None = None,
        content_type: str = "application/json",
    ) -> dict[str, Any]:
        path = kind.path(namespace=namespace or self._namespace, name=name, subresource=subresource)
        headers = {"Content-Type": content_type} if body is not None else None
        content = json.dumps(body).encode() if body is not None else None
        r = await self.http.request(method, path, content=content, headers=headers)
        if r.status_code >= 400:
            raise k8s_errors.from_status(
                r.status_code,
                r.content,
                operation=f"{method} {kind.plural}/{name or ''}",
                retry_after=r.headers.get("Retry-After"),
            )
        result: dict[str, Any] = r.json()
        return result

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        return await self._call("GET", kind, namespace, name)

    async def create(
        self, kind: Kind, body: Mapping[str, Any], namespace: str | None = None
    ) -> dict[str, Any]:
        full = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        return await self._call("POST", kind, namespace, body=full)

    async def replace(
        self,
        kind: Kind,
        name: str,
        body: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        full = {"apiVersion": kind.api_version, "kind": kind.kind, **body}
        return await self._call("PUT", kind, namespace, name, subresource, full)

    async def merge_patch(
        self,
        kind: Kind,
        name: str,
        patch: Mapping[str, Any],
        namespace: str | None = None,
        subresource: str | None = None,
    ) -> dict[str, Any]:
        return await self._call(
            "PATCH", kind, namespace, name, subresource, patch, "application/merge-patch+json"
        )

    def watch(self, *args: Any, **kw: Any) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        raise KubernetesError("the stand-ins watch collections (watch_collection), not objects")


class _Controller:
    kind: Kind

    def __init__(self, kube: HttpKube, http: httpx.AsyncClient, namespace: str) -> None:
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


class _StoryCache:
    """``HttpKube`` with Story GETs answered from a watch-fed cache (an informer, in effect).

    A miss (the watch has not delivered the Story yet, or it does not exist) falls through to
    a real GET, so a Story created just before its trigger is never reported missing.
    """

    def __init__(self, kube: HttpKube) -> None:
        self._kube = kube
        self._stories: dict[tuple[str, str], dict[str, Any]] = {}

    def observe(self, etype: str, obj: dict[str, Any]) -> None:
        meta = obj.get("metadata") or {}
        key = (meta.get("namespace", ""), meta.get("name", ""))
        if etype == "DELETED":
            self._stories.pop(key, None)
        else:
            self._stories[key] = obj

    def __getattr__(self, name: str) -> Any:
        return getattr(self._kube, name)

    @property
    def namespace(self) -> str:
        return self._kube.namespace

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        if kind is STORY:
            cached = self._stories.get((namespace or self._kube.namespace, name))
            if cached is not None:
                return cached
        return await self._kube.get(kind, name, namespace)


class TriggerResolverStandIn(_Controller):
    """Resolves undecided StoryTriggers (crds.md 9.2) concurrently, at most ``parallel`` at once.

    Attributes:
        decisions: ``(trigger name, decision, reason)`` in order.
    """

    kind = STORY_TRIGGER

    def __init__(self, *args: Any, parallel: int = 16, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.stories = _StoryCache(self.kube)
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
                status = await resolve_story_trigger(self.stories, trigger)
            self.decisions.append((name, status["decision"], status["reason"]))
        except ConflictError:
            self._busy.discard(name)  # the trigger changed under us: the next event retries
        except Exception as exc:
            log.warning("resolving %s failed: %s", name, exc)
            self.errors.append(f"{name}: {exc}")
            self._busy.discard(name)

    async def __aenter__(self) -> Self:
        self._story_task = asyncio.get_running_loop().create_task(
            self._watch_stories(), name="tests.standins.StoryCache"
        )
        return await super().__aenter__()

    async def _watch_stories(self) -> None:
        async for etype, obj in watch_collection(self.http, STORY, self.namespace):
            self.stories.observe(etype, obj)

    async def aclose(self) -> None:
        task = getattr(self, "_story_task", None)
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
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
        patch = {
            "metadata": {"resourceVersion": obj["metadata"]["resourceVersion"]},
            "status": story_run_canceled_status(),
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
        self.kube = HttpKube(http, namespace)
        self._stack = contextlib.AsyncExitStack()

    async def __aenter__(self) -> Self:
        args = (self.kube, self.http, self.namespace)
        self.resolver = await self._stack.enter_async_context(TriggerResolverStandIn(*args))
        self.claims = await self._stack.enter_async_context(EffectClaimStandIn(*args))
        self.stopper = await self._stack.enter_async_context(StopStoryStandIn(*args))
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()
