"""Wait for one object to reach a state: a watch first, GET polling when the watch is unavailable.

Why both a watch and polling: a watch on one object (``fieldSelector=metadata.name=<n>``) sees
the controller's decision as soon as it is written, instead of on the next 50 ms poll (the Go
SDK polls, crds.md 2.6). But the operator's generated Impulse Role grants only ``create, get`` on
``storytriggers`` (crds.md 7.2), so in a real cluster the watch is usually refused with 403. The
first 403 is remembered per client and kind, and from then on we poll with a short backoff; a
watch that breaks for any other reason (410 Gone, a dropped connection, a server-side timeout)
is followed by one GET and a new watch from that GET's resourceVersion.

Imports only ``bubu._k8s`` siblings, ``bubu._aio`` and ``bubu.errors``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import weakref
from collections.abc import Callable, Mapping
from typing import Any

from bubu._aio.backoff import Backoff
from bubu._k8s.api import KubeAPI
from bubu._k8s.resources import Kind
from bubu.errors import ForbiddenError, KubernetesError, NotFoundError, WatchExpiredError

__all__ = ["POLL_BACKOFF", "wait_for_object", "watch_forbidden"]

_log = logging.getLogger("bubu.k8s")

#: Polling when the watch is not allowed: 20 ms first, x1.5, capped at 250 ms. The Go SDK polls
#: every 50 ms (crds.md 2.6); starting lower and backing off keeps the median decision latency
#: low without hammering the API server on slow decisions.
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
            # The Impulse Role has no ``watch`` on storytriggers (crds.md 7.2): poll from now on.
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
