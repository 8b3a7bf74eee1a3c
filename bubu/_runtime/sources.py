"""Where ``BUBU_*`` values come from.

``EnvSource`` is the one seam between the runtime contract and the process: ``env.py`` reads
every value through it, so tests pass a ``MappingSource`` and a mounted runtime bundle can
implement the same protocol later. This module imports nothing from ``bubu``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping
from typing import Protocol, runtime_checkable

__all__ = ["EnvSource", "MappingSource", "OsEnviron"]


@runtime_checkable
class EnvSource(Protocol):
    """A read-only view of environment variables."""

    def get(self, name: str) -> str | None:
        """Return the value of ``name``, or ``None`` when it is unset."""
        ...

    def items(self) -> Iterable[tuple[str, str]]:
        """Return every ``(name, value)`` pair, for prefix scans (``BUBU_CONFIG_*``, ``env:``)."""
        ...


class OsEnviron:
    """The live process environment (``os.environ``), read on every call."""

    __slots__ = ()

    def get(self, name: str) -> str | None:
        """Return ``os.environ[name]``, or ``None`` when it is unset."""
        return os.environ.get(name)

    def items(self) -> Iterator[tuple[str, str]]:
        """Return a snapshot of every environment variable."""
        return iter(list(os.environ.items()))

    def __repr__(self) -> str:
        # Never print the environment: it holds secret values
        # (docs/contract/runtime-environment.md#secrets).
        return "OsEnviron()"


class MappingSource:
    """A fixed mapping of variables, for tests, harnesses and bundles.

    Args:
        values: the variables; copied, so later changes to the argument are not seen.
    """

    __slots__ = ("_values",)

    def __init__(self, values: Mapping[str, str] | None = None) -> None:
        self._values: dict[str, str] = dict(values or {})

    def get(self, name: str) -> str | None:
        """Return the value of ``name``, or ``None`` when it is absent."""
        return self._values.get(name)

    def items(self) -> Iterator[tuple[str, str]]:
        """Return every ``(name, value)`` pair."""
        return iter(list(self._values.items()))

    def __repr__(self) -> str:
        # Names only: values may be secrets.
        return f"MappingSource(<{len(self._values)} variables>)"
