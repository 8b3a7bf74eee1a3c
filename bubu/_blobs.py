"""Blob helpers for user code: large binary payloads through the run's storage (Go ``media``).

``offload_blob(data)`` stores bytes above the media inline limit (``BUBU_MEDIA_INLINE_SIZE``,
else ``BUBU_MAX_INLINE_SIZE``, else 48 KiB) under
``streams/<ns>/<storyRun>/<step>/<scope...>/YYYY/MM/DD/<unix>-<micros>-<hex8>.bin`` and returns
a ``StorageReference`` to send instead of the bytes; smaller payloads stay inline (``None``).
``read_blob(ref)`` reads one back. Both use the run's storage settings and identity (the
``RunScope`` the lifecycle or harness activated; ``os.environ`` outside a run), through the
process's shared storage manager (``bubu._storage.shared``).

Imports ``bubu._scope``, ``bubu._runtime``, ``bubu._storage`` and ``bubu.errors``.
"""

from __future__ import annotations

from collections.abc import Sequence

from bubu import _scope
from bubu._runtime import parse
from bubu._storage import media, shared
from bubu._storage.media import StorageReference

__all__ = ["StorageReference", "offload_blob", "read_blob"]


async def offload_blob(
    data: bytes,
    *,
    content_type: str = "",
    scope: Sequence[str] = (),
    inline_limit: int = 0,
) -> StorageReference | None:
    """Store ``data`` when it is too large to send inline (Go ``media.MaybeOffloadBlob``).

    Args:
        data: the payload (audio, an image, a document...).
        content_type: its MIME type (``application/octet-stream`` by default).
        scope: extra path segments under the step (``("frames", "cam-1")``).
        inline_limit: the limit for this call when > 0.

    Returns:
        Where the bytes went, or ``None`` when they stay inline (small enough, or storage
        disabled, as in Go).

    Raises:
        StorageError and subclasses: the write failed.
        ContractError: the storage settings are unusable.
    """
    run = _scope.current()
    env = _scope.env_of(run)
    manager = shared.manager_for(env, kube=run.kube if run is not None else None)
    return await media.maybe_offload_blob(
        manager,
        data,
        namespace=env.workload_namespace,
        story_run=parse.go_trim_space(env.storyrun_id),
        step=parse.go_trim_space(env.step_name),
        scope=scope,
        content_type=content_type,
        inline_limit=inline_limit,
        default_inline_limit=env.media_inline_size,
    )


async def read_blob(ref: StorageReference | None) -> bytes:
    """Read the bytes ``ref`` points to (Go ``media.ReadBlob``).

    Raises:
        StorageRefError: ``ref`` has no path.
        StorageDisabledError: storage is disabled.
        StorageNotFoundError: the blob is gone (its path is named).
        StorageError and subclasses: the read failed.
    """
    run = _scope.current()
    env = _scope.env_of(run)
    manager = shared.manager_for(env, kube=run.kube if run is not None else None)
    return await media.read_blob(manager, ref)
