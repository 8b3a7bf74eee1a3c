"""Blob helpers for media payloads (the Go SDK's ``media`` package, docs/storage.md#helpers).

``maybe_offload_blob`` stores bytes above the media inline limit under
``streams/<ns>/<storyRun>/<step>/<scope...>/YYYY/MM/DD/<unix>-<micros>-<hex8>.bin`` and returns
a ``StorageReference`` (``path``, ``contentType``, ``sizeBytes``); smaller payloads stay inline
(``None``). ``read_blob`` reads one back. Path segments are sanitised as in Go: runs of
characters outside ``[a-zA-Z0-9._-]`` become ``-``, ``-_.`` are trimmed, at most 64
characters, lower case.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final

import msgspec

from bubu._runtime import parse
from bubu._storage.manager import StorageManager
from bubu.errors import StorageDisabledError, StorageRefError

__all__ = [
    "DEFAULT_MEDIA_INLINE_SIZE",
    "StorageReference",
    "blob_path",
    "maybe_offload_blob",
    "read_blob",
    "sanitize_segment",
]

#: Go ``media.defaultInlineLimit``: 48 KiB keeps short bursts inline
DEFAULT_MEDIA_INLINE_SIZE: Final = 48 * 1024
_SANITIZE: Final = re.compile(r"[^a-zA-Z0-9._-]+")


class StorageReference(msgspec.Struct, omit_defaults=True, rename="camel", frozen=True):
    """Where a blob went (Go ``media.StorageReference``; JSON ``path``, ``contentType``,
    ``sizeBytes``)."""

    path: str
    content_type: str = ""
    size_bytes: int = 0


def sanitize_segment(raw: str) -> str:
    """One path segment, cleaned as Go's ``media.sanitizeSegment``."""
    trimmed = parse.go_trim_space(raw)
    if not trimmed:
        return ""
    cleaned = _SANITIZE.sub("-", trimmed).strip("-_.")
    return cleaned[:64].lower()


def blob_path(
    *,
    namespace: str = "",
    story_run: str = "",
    step: str = "",
    scope: Sequence[str] = (),
    now: datetime | None = None,
    suffix: str | None = None,
) -> str:
    """The object path of a new blob (Go ``media.buildPath``).

    Args:
        namespace, story_run, step, scope: path segments (empty ones are left out).
        now: the timestamp (UTC now by default).
        suffix: the 8 hex characters that make the name unique (random by default).
    """
    ts = (now or datetime.now(UTC)).astimezone(UTC)
    segments = ["streams"]
    for seg in (namespace, story_run, step, *scope):
        cleaned = sanitize_segment(seg)
        if cleaned:
            segments.append(cleaned)
    segments.append(ts.strftime("%Y/%m/%d"))
    unix = int(ts.timestamp())
    segments.append(f"{unix}-{ts.microsecond:06d}-{suffix or secrets.token_hex(4)}.bin")
    return "/".join(segments)


async def maybe_offload_blob(
    manager: StorageManager,
    data: bytes,
    *,
    namespace: str = "",
    story_run: str = "",
    step: str = "",
    scope: Sequence[str] = (),
    content_type: str = "",
    inline_limit: int = 0,
    default_inline_limit: int = DEFAULT_MEDIA_INLINE_SIZE,
) -> StorageReference | None:
    """Store ``data`` when it is above the inline limit; ``None`` keeps it inline.

    Args:
        manager: the run's storage manager (disabled storage: always ``None``, as in Go).
        inline_limit: overrides the limit when > 0.
        default_inline_limit: the limit otherwise (``RuntimeEnv.media_inline_size``:
            ``BUBU_MEDIA_INLINE_SIZE``, else ``BUBU_MAX_INLINE_SIZE``, else 48 KiB).

    Raises:
        StorageError and subclasses: the write failed.
    """
    if not manager.enabled or not data:
        return None
    limit = inline_limit if inline_limit > 0 else default_inline_limit
    if len(data) <= limit:
        return None
    ctype = content_type if parse.go_trim_space(content_type) else "application/octet-stream"
    path = blob_path(namespace=namespace, story_run=story_run, step=step, scope=scope)
    await manager.write_blob(path, data, ctype)
    return StorageReference(path=path, content_type=ctype, size_bytes=len(data))


async def read_blob(manager: StorageManager, ref: StorageReference | None) -> bytes:
    """Read the blob ``ref`` points to (Go ``media.ReadBlob``).

    Raises:
        StorageRefError: ``ref`` has no path.
        StorageDisabledError: storage is disabled.
        StorageError and subclasses: the read failed (a missing blob names its path).
    """
    if ref is None or not parse.go_trim_space(ref.path):
        raise StorageRefError("storage reference missing path")
    if not manager.enabled:
        raise StorageDisabledError("storage is disabled", ref=ref.path)
    return await manager.read_blob(ref.path)
