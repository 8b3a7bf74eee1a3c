"""One storage manager per configuration per process (Go ``SharedManager``).

Building an S3 client costs a connection pool and credential look-ups, so helpers that run
many times in a process (``publish_logs``, trigger input offload) share the manager their
``RuntimeEnv`` describes. ``reset`` empties the cache (tests).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bubu._storage.manager import StorageManager

if TYPE_CHECKING:
    from bubu._k8s.api import KubeAPI
    from bubu._runtime.env import RuntimeEnv

__all__ = ["manager_for", "reset"]

_MAX_ENTRIES = 8
_cache: dict[tuple[Any, ...], StorageManager] = {}


def _key(env: RuntimeEnv, kube: KubeAPI | None) -> tuple[Any, ...]:
    # The frozen StorageConfig holds every storage variable (provider, prefixes, bucket,
    # region, endpoint, path style, TLS, path), like Go's cache key.
    return (
        env.storage,
        env.max_inline_size,
        env.max_recursion_depth,
        env.workload_namespace,
        id(kube) if kube is not None else None,
    )


def manager_for(env: RuntimeEnv, *, kube: KubeAPI | None = None) -> StorageManager:
    """The process-wide manager for ``env``'s storage settings (built on first use).

    Raises:
        StorageError: the provider cannot be set up.
    """
    key = _key(env, kube)
    manager = _cache.get(key)
    if manager is None:
        manager = StorageManager.from_env(env, kube=kube)
        if len(_cache) >= _MAX_ENTRIES:
            _cache.pop(next(iter(_cache)))
        _cache[key] = manager
    return manager


def reset() -> None:
    """Forget every cached manager (their connections close when collected)."""
    _cache.clear()
