"""The Kubernetes client of code that runs outside any run scope (Go's ``k8s.SharedClient``).

``bubu.start_story`` called from a plain script, a web handler or a test has no run scope to
take a client from. Building a client per call costs a TLS handshake, a kubeconfig parse and a
``/version`` round trip each time (about 5 ms of CPU and 100 ms of latency on a loaded machine);
Go keeps one process-wide client instead. Here there is one client per event loop, because a
connection belongs to the loop that opened it: created on first use, reused by every call on
that loop, and closed when the loop shuts down.

The close rides on the loop's async-generator shutdown: the first use starts a small async
generator that holds the client, and ``asyncio.run`` (like every ``asyncio.Runner``, uvloop's
included) closes the live async generators of the loop before closing it, which closes the
client with a proper TLS shutdown. ``aclose_shared_client()`` closes it earlier; a loop closed
without ``shutdown_asyncgens()`` leaves the socket to the garbage collector. A failed creation
is not remembered: the next call tries again, as Go's ``SharedClient`` does.

Imports ``bubu._k8s.client`` (lazily), ``bubu._runtime`` and the standard library.
"""

from __future__ import annotations

import asyncio
import threading
import weakref
from collections.abc import AsyncGenerator
from typing import TYPE_CHECKING

from bubu._runtime import env
from bubu._runtime.sources import EnvSource

if TYPE_CHECKING:
    from bubu._k8s.client import KubeClient

__all__ = ["aclose_shared_client", "shared_client"]


class _Slot:
    """The shared client of one event loop, and the generator that closes it at loop exit."""

    __slots__ = ("client", "closer", "lock")

    def __init__(self) -> None:
        self.client: KubeClient | None = None
        self.closer: AsyncGenerator[None] | None = None
        self.lock = asyncio.Lock()


_SLOTS: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, _Slot] = weakref.WeakKeyDictionary()
_SLOTS_LOCK = threading.Lock()


async def _hold(client: KubeClient) -> AsyncGenerator[None]:
    try:
        yield
    finally:
        # Runs from loop.shutdown_asyncgens() (asyncio.run) or aclose_shared_client().
        await client.aclose()


async def shared_client(source: EnvSource | None = None) -> KubeClient:
    """Return this event loop's shared client, connecting on first use.

    Settings come from the environment (``source``, else ``os.environ``) when the client is
    created: ``KUBECONFIG``, the client namespace variables, ``BUBU_K8S_USER_AGENT``,
    ``BUBU_K8S_TIMEOUT``, ``BUBU_K8S_QPS`` and ``BUBU_K8S_BURST``.

    Raises:
        KubernetesError: no usable configuration or an unreachable server (not remembered:
            the next call tries again).
    """
    loop = asyncio.get_running_loop()
    slot = _SLOTS.get(loop)
    if slot is None:
        with _SLOTS_LOCK:  # loops of other threads may be creating theirs
            slot = _SLOTS.get(loop)
            if slot is None:
                slot = _SLOTS[loop] = _Slot()
    client = slot.client
    if client is not None and not client.closed:
        return client
    async with slot.lock:
        client = slot.client
        if client is not None and not client.closed:
            return client
        from bubu._k8s.client import KubeClient, RateLimit

        settings = env.load_client_settings(source)
        client = await KubeClient.connect(
            namespace=settings.namespace or None,
            user_agent=settings.user_agent,
            timeout=settings.timeout,
            kubeconfig_fallback=settings.kubeconfig or None,
            rate_limit=RateLimit(settings.qps, settings.burst) if settings.qps > 0 else None,
        )
        closer = _hold(client)
        await closer.__anext__()  # first iteration: the loop now tracks it for shutdown
        slot.client, slot.closer = client, closer
        return client


async def aclose_shared_client() -> None:
    """Close this event loop's shared client now (the next use connects again)."""
    slot = _SLOTS.get(asyncio.get_running_loop())
    if slot is None:
        return
    async with slot.lock:
        closer, slot.closer, slot.client = slot.closer, None, None
        if closer is not None:
            await closer.aclose()
