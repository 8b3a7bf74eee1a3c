"""Wait for one object to reach a state: a watch first, GET polling when the watch is unavailable.

Why both a watch and polling: a watch on one object (``fieldSelector=metadata.name=<n>``) sees
the controller's decision as soon as it is written, instead of on the next 50 ms poll (the Go
SDK polls, docs/contract/story-trigger.md#waiting-and-duplicates). But the operator's generated
Impulse Role grants only ``create, get`` on ``storytriggers`` (docs/deploying.md#impulse-role), so
in a real cluster the watch is usually refused with 403. The first 403 is remembered per client and
kind, and from then on we poll with a short backoff; a watch that breaks for any other reason (410
Gone, a dropped connection, a server-side timeout) is followed by one GET and a new watch from that
GET's resourceVersion.

``LiveObjects`` keeps single objects current through a watch each, for reads that would
otherwise GET the same object on every call (the Story version of every trigger,
docs/contract/story-trigger.md#story).

Imports only ``bubu._k8s`` siblings, ``bubu._aio`` and ``bubu.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Protocol

from bubu._aio.backoff import Backoff
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import Kind
from bubu.errors import ForbiddenError, KubernetesError, NotFoundError, WatchExpiredError

__all__ = ["POLL_BACKOFF", "LiveObjects", "wait_for_object", "watch_forbidden"]

_log = logging.getLogger("bubu.k8s")

#: Polling when the watch is not allowed: 20 ms first, x1.5, capped at 250 ms. The Go SDK polls
#: every 50 ms (docs/contract/story-trigger.md#waiting-and-duplicates); starting lower and backing
#: off keeps the median decision latency low without hammering the API server on slow decisions.
POLL_BACKOFF = Backoff(base=0.02, factor=1.5, maximum=0.25, jitter=0.2)


# Clients (by identity) whose watch on a kind was refused with 403. Weak, so a closed client
# and its memory go away together; no module state outlives the clients it describes.
_FORBIDDEN: weakref.WeakKeyDictionary[Any, set[str]] = weakref.WeakKeyDictionary()


def watch_forbidden(kube: Any, kind: Kind) -> bool:
    """Return True once a watch of ``kind`` through ``kube`` has been refused with 403."""
    try:
        return kind.plural in _FORBIDDEN.get(kube, ())
    except TypeError:  # not weak-referenceable: never cached
        return False


def _remember_forbidden(kube: Any, kind: Kind) -> None:
    with contextlib.suppress(TypeError):
        _FORBIDDEN.setdefault(kube, set()).add(kind.plural)


def _rv(obj: Mapping[str, Any] | None) -> str | None:
    if not obj:
        return None
    meta = obj.get("metadata")
    value = meta.get("resourceVersion") if isinstance(meta, Mapping) else None
    return value if isinstance(value, str) and value else None


async def wait_for_object(
    kube: KubeAPI,
    kind: Kind,
    name: str,
    namespace: str | None,
    *,
    done: Callable[[dict[str, Any]], bool],
    initial: dict[str, Any] | None,
    wait: float,
    use_watch: bool = True,
    poll: Backoff = POLL_BACKOFF,
    first_poll: float = 0.0,
) -> dict[str, Any] | None:
    """Wait until ``done(obj)`` holds for the object, or ``timeout`` seconds pass.

    Args:
        kube: the client.
        kind: the object's kind.
        name: the object's name.
        namespace: its namespace (None: the client namespace).
        done: the predicate on the whole object.
        initial: the object as last seen (the create or GET answer); checked first, and its
            resourceVersion is where the watch starts, so no change in between is missed.
        wait: the bound of the wait in seconds.
        use_watch: False forces GET polling.
        poll: the polling backoff.
        first_poll: seconds to wait before the first GET when polling (callers that know how
            long decisions usually take skip GETs that would be answered "not yet").

    Returns:
        The first object for which ``done`` holds, or None when the time ran out.

    Raises:
        NotFoundError: the object was deleted while waiting.
        KubernetesError: a GET failed with a non-retryable error.
    """
    if initial is not None and done(initial):
        return initial
    loop = asyncio.get_running_loop()
    deadline = loop.time() + max(0.0, wait)
    last = initial
    try:
        async with asyncio.timeout_at(deadline):
            if use_watch and not watch_forbidden(kube, kind):
                found, last = await _watch_until(
                    kube,
                    kind,
                    name=name,
                    namespace=namespace,
                    done=done,
                    last=last,
                    deadline=deadline,
                )
                if found is not None:
                    return found
            return await _poll_until(
                kube,
                kind,
                name=name,
                namespace=namespace,
                done=done,
                poll=poll,
                first_poll=first_poll,
            )
    except TimeoutError:
        return None


async def _watch_until(
    kube: KubeAPI,
    kind: Kind,
    *,
    name: str,
    namespace: str | None,
    done: Callable[[dict[str, Any]], bool],
    last: dict[str, Any] | None,
    deadline: float,
) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """Watch until done; return (match, last seen). (None, last) means: fall back to polling."""
    loop = asyncio.get_running_loop()
    failures = 0
    while True:
        remaining = max(1, int(deadline - loop.time()) + 1)
        try:
            stream = kube.watch(
                kind, name, namespace, resource_version=_rv(last), timeout_seconds=remaining
            )
            try:
                async for etype, obj in stream:
                    if etype == "DELETED":
                        raise NotFoundError(
                            f"{kind.kind} {name!r} was deleted while waiting", reason="NotFound"
                        )
                    last = obj
                    if done(obj):
                        return obj, last
            finally:
                # Close the generator (and its HTTP stream) now, not when it is collected.
                aclose = getattr(stream, "aclose", None)
                if aclose is not None:
                    await aclose()
            # The server closed the stream (timeoutSeconds or a restart): fall through to a GET.
        except ForbiddenError:
            # The Impulse Role has no ``watch`` on storytriggers (docs/deploying.md#impulse-role):
            # poll from now on.
            _remember_forbidden(kube, kind)
            _log.debug("watch on %s refused (403); polling with GET", kind.plural)
            return None, last
        except NotFoundError:
            raise
        except WatchExpiredError:
            pass  # 410 Gone: GET below, then watch from the fresh resourceVersion
        except KubernetesError as exc:
            failures += 1
            if not exc.retryable or failures >= 3:
                _log.debug("watch on %s/%s failed (%s); polling", kind.plural, name, exc)
                return None, last
        # One GET closes the gap between the broken watch and the next one.
        last = await kube.get(kind, name, namespace)
        if done(last):
            return last, last


async def _poll_until(
    kube: KubeAPI,
    kind: Kind,
    *,
    name: str,
    namespace: str | None,
    done: Callable[[dict[str, Any]], bool],
    poll: Backoff,
    first_poll: float,
) -> dict[str, Any]:
    delays = poll.delays()
    if first_poll > 0:
        await asyncio.sleep(first_poll)
    while True:
        try:
            obj = await kube.get(kind, name, namespace)
        except KubernetesError as exc:
            if not exc.retryable or isinstance(exc, NotFoundError):
                raise
            obj = None
        if obj is not None and done(obj):
            return obj
        await asyncio.sleep(next(delays))


# --- objects kept current by a watch ------------------------------------------------------------

#: After a watch that broke, GET-only for this long before watching that object again.
_REWATCH_DELAY = 1.0


class _Watchable(Protocol):
    """What ``LiveObjects`` needs: ``KubeClient``'s get, and a watch that reports its opening."""

    @property
    def namespace(self) -> str: ...

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]: ...

    def watch(
        self,
        kind: Kind,
        name: str,
        namespace: str | None = None,
        resource_version: str | None = None,
        timeout_seconds: int | None = None,
        *,
        on_open: Callable[[], None] | None = None,
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]: ...


class _Live:
    __slots__ = ("deleted", "live", "obj", "retry_at", "task")

    def __init__(self) -> None:
        self.obj: dict[str, Any] = {}
        self.deleted = False
        self.live = False  # a watch from a known state is established: ``obj`` is current
        self.task: asyncio.Task[None] | None = None
        self.retry_at = 0.0


class LiveObjects:
    """Single objects kept current by one watch each: a GET answered from memory when possible.

    ``get`` GETs the object while no watch on it is established (the first call, after a watch
    broke, when watching it is not allowed) and starts a background watch from that GET's
    resourceVersion. Once the server has accepted the watch, every change after the GET arrives
    on it, so later calls return the last seen state without a request: as fresh as a GET made
    at the same moment, give or take the watch's delivery delay. A watch the server ends is
    resumed from the last resourceVersion seen; a refused watch (403) makes that kind GET-only;
    any other failure makes the object GET-only for a second, then it is watched again.

    Args:
        kube: the client (its watch must accept ``on_open``).
    """

    def __init__(self, kube: _Watchable) -> None:
        self._kube = kube
        self._entries: dict[tuple[str, str, str], _Live] = {}
        self._forbidden: set[str] = set()
        self._closed = False

    def is_live(self, kind: Kind, name: str, namespace: str | None = None) -> bool:
        """True when ``get`` would answer from memory."""
        entry = self._entries.get((kind.plural, namespace or self._kube.namespace, name))
        return entry is not None and entry.live

    async def get(self, kind: Kind, name: str, namespace: str | None = None) -> dict[str, Any]:
        """The object, from memory while its watch is established, else with a GET.

        Raises:
            NotFoundError: the object does not exist (or its watch saw it deleted).
            KubernetesError: the GET failed.
        """
        ns = namespace or self._kube.namespace
        key = (kind.plural, ns, name)
        entry = self._entries.get(key)
        if entry is not None and entry.live:
            if entry.deleted:
                raise NotFoundError(
                    f"GET {kind.plural}/{name} in namespace {ns}: not found (deleted)",
                    reason="NotFound",
                    status_code=404,
                )
            return entry.obj
        obj = await self._kube.get(kind, name, ns)
        if self._closed or kind.plural in self._forbidden:
            return obj
        if entry is None:
            entry = self._entries[key] = _Live()
        loop = asyncio.get_running_loop()
        if entry.task is None and loop.time() >= entry.retry_at:
            entry.obj, entry.deleted = obj, False
            entry.task = loop.create_task(
                self._follow(entry, kind, name, ns, _rv(obj)), name=f"bubu.k8s.live-{name}"
            )
        return obj

    async def _follow(
        self, entry: _Live, kind: Kind, name: str, namespace: str, rv: str | None
    ) -> None:
        def opened() -> None:
            entry.live = True

        try:
            while not self._closed:
                async for etype, obj in self._kube.watch(
                    kind, name, namespace, resource_version=rv, on_open=opened
                ):
                    entry.obj, entry.deleted = obj, etype == "DELETED"
                    rv = _rv(obj) or rv
                # The server ended the watch (its request timeout): resume from the last state.
                entry.live = False
        except asyncio.CancelledError:
            raise
        except ForbiddenError:
            self._forbidden.add(kind.plural)
            _log.debug("watch on %s refused (403); reading them with GET", kind.plural)
        except Exception as exc:  # a broken watch only costs GETs; never an unhandled task error
            entry.retry_at = asyncio.get_running_loop().time() + _REWATCH_DELAY
            _log.debug("watch on %s/%s ended (%s); reading it with GET", kind.plural, name, exc)
        finally:
            entry.live = False
            entry.task = None

    async def aclose(self) -> None:
        """Stop every watch (the client calls this when it closes)."""
        self._closed = True
        tasks = [e.task for e in self._entries.values() if e.task is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._entries.clear()
