"""``LocalStorage``: the ``file`` storage provider in a directory, for tests and local runs.

A cluster hands a step storage references (``$bubuStorageRef``) to what earlier steps
offloaded, and offloads the step's own large outputs. ``LocalStorage`` is that store in a
directory, read and written by the same code as in a pod (``bubu._storage``, byte-compatible
with the operator's Go storage package): ``put`` stands in for an earlier step's offloaded
output, ``hydrate`` reads refs back (a harness's ``status["output"]``), ``env()`` is the
``BUBU_STORAGE_*`` settings a harness or ``bubu run`` passes to the lifecycle.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
import weakref
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from bubu._runtime.env import load_env, storage_named
from bubu._runtime.sources import MappingSource
from bubu._storage.manager import StorageManager

__all__ = ["LocalStorage"]

_IDENT = "testkit"


class LocalStorage:
    """A ``file`` store in ``root`` (a new temporary directory by default).

    Args:
        root: the store directory (created if missing). ``None``: a temporary directory,
            removed by ``cleanup()`` or when the object is collected.
        max_inline_size: ``BUBU_MAX_INLINE_SIZE``: outputs above it are offloaded.
        max_recursion_depth: ``BUBU_MAX_RECURSION_DEPTH`` (``None``: the default, 10).

    Example::

        storage = LocalStorage()
        doc = await storage.put({"rows": rows})            # what an earlier step offloaded
        harness = BatchHarness(engram=Report(), inputs={"doc": doc}, storage=storage)
        await harness.run()
        output = await storage.hydrate(harness.status["output"])
    """

    def __init__(
        self,
        root: str | os.PathLike[str] | None = None,
        *,
        max_inline_size: int = 1024,
        max_recursion_depth: int | None = None,
    ) -> None:
        if max_inline_size < 0:
            raise ValueError(f"max_inline_size must be >= 0, got {max_inline_size}")
        self._cleanup: weakref.finalize[Any, Any] | None = None
        if root is None:
            root = tempfile.mkdtemp(prefix="bubu-storage-")
            # Removed with the object (or by cleanup()), silently: a harness's store lives
            # as long as the test can read it.
            self._cleanup = weakref.finalize(self, shutil.rmtree, root, ignore_errors=True)
        self.root = Path(root).resolve()
        self.root.mkdir(parents=True, exist_ok=True)
        self.max_inline_size = max_inline_size
        self.max_recursion_depth = max_recursion_depth
        self._manager: StorageManager | None = None

    def __repr__(self) -> str:
        return f"LocalStorage(root={str(self.root)!r}, max_inline_size={self.max_inline_size})"

    def env(self) -> dict[str, str]:
        """The ``BUBU_STORAGE_*`` settings of this store, as the operator would inject them."""
        values = {
            "BUBU_STORAGE_PROVIDER": "file",
            "BUBU_STORAGE_PATH": str(self.root),
            "BUBU_MAX_INLINE_SIZE": str(self.max_inline_size),
        }
        if self.max_recursion_depth is not None:
            values["BUBU_MAX_RECURSION_DEPTH"] = str(self.max_recursion_depth)
        return values

    def manager(self) -> StorageManager:
        """The storage manager of this store (the one a step running on it would use)."""
        if self._manager is None:
            self._manager = StorageManager.from_env(load_env(MappingSource(self.env())))
        return self._manager

    async def put(self, value: Any, name: str | None = None) -> dict[str, str]:
        """Store ``value`` whole, as a step's offloaded output is, and return its ref.

        Args:
            value: JSON data (a string is stored as ``raw``, anything else as ``json``).
            name: the object's name (``outputs/testkit/<name>.json``); random by default.

        Returns:
            ``{"$bubuStorageRef": ..., "$bubuStorageContentType": ...}``: put it in a step's
            inputs or config; add ``"$bubuStoragePath"`` to select inside it.
        """
        key = name if name is not None else uuid.uuid4().hex
        return await self.manager().offload_value(value, _IDENT, key)

    async def hydrate(self, value: Any) -> Any:
        """``value`` with every storage ref replaced by what it points to."""
        return await self.manager().hydrate_storage_refs_only(value)

    def files(self) -> list[str]:
        """The stored objects, as paths relative to ``root``, sorted."""
        return sorted(str(p.relative_to(self.root)) for p in self.root.rglob("*") if p.is_file())

    def cleanup(self) -> None:
        """Remove a temporary store (a ``root`` you passed is left alone)."""
        if self._cleanup is not None:
            self._cleanup()


StorageOption = LocalStorage | Mapping[str, str] | bool | None
"""What the harnesses' ``storage=`` accepts."""


def storage_env(
    storage: StorageOption, env: Mapping[str, str]
) -> tuple[LocalStorage | None, dict[str, str]]:
    """The harnesses' ``storage=`` argument as ``BUBU_*`` values merged into ``env``.

    ``None``: a new ``LocalStorage`` unless ``env`` already names a provider; ``False``:
    storage disabled; a ``LocalStorage``: its settings; a mapping: those ``BUBU_*`` values.
    """
    out = dict(env)
    if storage is False:
        for key in [k for k in out if k.startswith("BUBU_STORAGE_")]:
            del out[key]
        return None, out
    if storage is None or storage is True:
        if storage_named(MappingSource(out)):
            return None, out
        storage = LocalStorage()
    if isinstance(storage, LocalStorage):
        out.update(storage.env())
        return storage, out
    out.update(storage)
    return None, out
