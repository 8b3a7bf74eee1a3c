"""The object store interface, and the ``file`` provider.

A ``Store`` moves bytes: ``write`` consumes chunks (never needing the whole object in memory),
``read`` yields chunks, ``list`` and ``delete`` serve the blob helpers. Keys are already
validated and cleaned by the manager (``bubu._runtime.refs``); stores map errors onto the
``StorageError`` tree so callers see one vocabulary whatever the provider.

``FileStore`` (``BUBU_STORAGE_PROVIDER=file``, root ``BUBU_STORAGE_PATH``) writes each object to
a temporary file beside its target and renames it into place, so a failed or cancelled write
leaves nothing behind (Go writes in place; docs/differences.md). Directories are created with
mode 0750 and files with 0666 minus the umask, as Go's ``os.MkdirAll``/``os.Create`` do. Disk
I/O runs in worker threads.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import os
import secrets
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol

from bubu.errors import (
    StorageAccessError,
    StorageError,
    StorageNotFoundError,
    StorageRefError,
)

__all__ = ["READ_CHUNK", "Chunks", "FileStore", "Store", "WriteMeta"]

#: read size for streaming reads (1 MiB): bounded memory whatever the object size
READ_CHUNK = 1 << 20

#: what ``Store.write`` accepts: the bytes, or chunks of them (sync or async)
Chunks = bytes | Iterable[bytes] | AsyncIterable[bytes]


@dataclass(frozen=True, slots=True)
class WriteMeta:
    """Integrity metadata written with an object (Go ``writeMetadata``).

    Attributes:
        content_type: the object's ``Content-Type``.
        content_length: its size in bytes.
        content_md5: base64 MD5 (``Content-MD5``), or ``""`` when not computed.
        checksum_sha256: base64 SHA-256 (``x-amz-checksum-sha256``), or ``""``.
    """

    content_type: str
    content_length: int
    content_md5: str = ""
    checksum_sha256: str = ""


class Store(Protocol):
    """An object store provider."""

    @property
    def provider(self) -> str:
        """``file`` or ``s3``."""
        ...

    async def write(self, key: str, data: Chunks, meta: WriteMeta) -> None:
        """Store ``data`` at ``key`` atomically: all of it, or nothing visible."""
        ...

    def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the object's bytes in chunks; ``StorageNotFoundError`` when it is missing."""
        ...

    async def size(self, key: str) -> int:
        """The object's size in bytes; ``StorageNotFoundError`` when it is missing."""
        ...

    async def list(self, prefix: str) -> list[str]:
        """Keys under ``prefix`` (relative to the store root)."""
        ...

    async def delete(self, key: str) -> None:
        """Remove ``key``; a missing object is not an error."""
        ...

    async def aclose(self) -> None:
        """Release connections."""
        ...


async def iter_chunks(data: Chunks) -> AsyncIterator[bytes]:
    """Normalise ``Chunks`` into an async iterator of non-empty byte strings."""
    if isinstance(data, bytes | bytearray | memoryview):
        if len(data):
            yield bytes(data) if not isinstance(data, bytes) else data
        return
    if isinstance(data, AsyncIterable):
        async for chunk in data:
            if chunk:
                yield chunk
        return
    for chunk in data:
        if chunk:
            yield chunk


def _os_error(exc: OSError, key: str, action: str) -> StorageError:
    # The message names the key, not the absolute path under the root (no host layout leak).
    reason = os.strerror(exc.errno) if exc.errno else type(exc).__name__
    if exc.errno == errno.ENOENT:
        return StorageNotFoundError(f"{action} '{key}': object not found", ref=key)
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return StorageAccessError(f"{action} '{key}': {reason}", ref=key)
    return StorageError(f"{action} '{key}': {reason}", ref=key)


class FileStore:
    """Objects as files under a root directory (Go ``FileStore``).

    Args:
        root: the base directory; made absolute and created (mode 0750) if missing.

    Raises:
        StorageError: the root is empty or cannot be created.
    """

    def __init__(self, root: str) -> None:
        if not root.strip():
            raise StorageError("file store base path cannot be empty")
        self._root = os.path.abspath(root)
        try:
            os.makedirs(self._root, mode=0o750, exist_ok=True)
        except OSError as exc:
            raise StorageError(
                f"failed to create base directory for file store at {self._root}: "
                f"{os.strerror(exc.errno) if exc.errno else exc}"
            ) from None

    @property
    def provider(self) -> str:
        """``file``."""
        return "file"

    @property
    def root(self) -> str:
        """The absolute root directory."""
        return self._root

    def __repr__(self) -> str:
        return f"FileStore(root={self._root!r})"

    def _path(self, key: str) -> str:
        full = os.path.normpath(os.path.join(self._root, key))
        rel = os.path.relpath(full, self._root)
        if rel == ".." or rel.startswith("../") or os.path.isabs(rel):
            raise StorageRefError(
                f"invalid storage path: path traversal detected (requested '{key}')", ref=key
            )
        return full

    async def write(self, key: str, data: Chunks, meta: WriteMeta) -> None:
        """Write to ``<key>.<random>.tmp`` beside the target, then rename it into place."""
        path = self._path(key)
        directory, base = os.path.split(path)
        tmp = os.path.join(directory, f".{base}.{secrets.token_hex(6)}.tmp")

        def open_tmp() -> int:
            os.makedirs(directory, mode=0o750, exist_ok=True)
            return os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o666)

        try:
            fd = await asyncio.to_thread(open_tmp)
        except OSError as exc:
            raise _os_error(exc, key, "failed to create object") from None
        done = False
        try:
            pending: list[bytes] = []
            size = 0
            async for chunk in iter_chunks(data):
                pending.append(chunk)
                size += len(chunk)
                if size >= READ_CHUNK:
                    await asyncio.to_thread(_write_all, fd, pending)
                    pending, size = [], 0
            if pending:
                await asyncio.to_thread(_write_all, fd, pending)
            await asyncio.to_thread(os.close, fd)
            fd = -1
            await asyncio.to_thread(os.replace, tmp, path)
            done = True
        except OSError as exc:
            raise _os_error(exc, key, "failed to write object") from None
        finally:
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
            if not done:
                with contextlib.suppress(OSError):
                    os.unlink(tmp)

    async def read(self, key: str) -> AsyncIterator[bytes]:
        """Yield the file in ``READ_CHUNK`` pieces."""
        path = self._path(key)
        try:
            f = await asyncio.to_thread(open, path, "rb", buffering=0)
        except IsADirectoryError:
            raise StorageNotFoundError(
                f"failed to open object '{key}': object not found", ref=key
            ) from None
        except OSError as exc:
            raise _os_error(exc, key, "failed to open object") from None
        try:
            while True:
                try:
                    chunk = await asyncio.to_thread(f.read, READ_CHUNK)
                except OSError as exc:
                    raise _os_error(exc, key, "failed to read object") from None
                if not chunk:
                    return
                yield chunk
        finally:
            f.close()

    async def size(self, key: str) -> int:
        """``os.stat`` size."""
        path = self._path(key)
        try:
            st = await asyncio.to_thread(os.stat, path)
        except OSError as exc:
            raise _os_error(exc, key, "failed to stat object") from None
        return st.st_size

    async def list(self, prefix: str) -> list[str]:
        """Every file under ``<root>/<prefix>`` as a ``/``-separated key (temp files skipped)."""
        top = self._path(prefix)

        def walk() -> list[str]:
            if not os.path.exists(top):
                return []
            if os.path.isfile(top):
                return [os.path.relpath(top, self._root)]
            out: list[str] = []
            for dirpath, _dirs, files in os.walk(top):
                for name in files:
                    if name.startswith(".") and name.endswith(".tmp"):
                        continue
                    rel = os.path.relpath(os.path.join(dirpath, name), self._root)
                    out.append(rel.replace(os.sep, "/"))
            return sorted(out)

        try:
            return await asyncio.to_thread(walk)
        except OSError as exc:
            raise _os_error(exc, prefix, "failed to list prefix") from None

    async def delete(self, key: str) -> None:
        """``os.remove``; a missing file is fine."""
        path = self._path(key)
        try:
            await asyncio.to_thread(os.remove, path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise _os_error(exc, key, "failed to delete object") from None

    async def aclose(self) -> None:
        """Nothing to release."""


def _write_all(fd: int, chunks: list[bytes]) -> None:
    for chunk in chunks:
        view = memoryview(chunk)
        while view:
            written = os.write(fd, view)
            view = view[written:]
