"""Find the component (engram or impulse class) a CLI command was pointed at.

``path/to/module.py`` or ``path/to/module.py:Name``; without a name, the module's ``engram`` or
``Engram`` attribute, else the one concrete ``BatchEngram``/``StreamingEngram``/``Impulse``
subclass defined in the module.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Any

from bubu._cli import UsageError, _load_module, _split_target
from bubu.engram import BatchEngram, Impulse, StreamingEngram

__all__ = ["KIND_NAMES", "Component", "candidates", "load_component"]

_BASES = (BatchEngram, StreamingEngram, Impulse)

KIND_NAMES = {
    "batch": "batch engram",
    "streaming": "streaming engram",
    "dual": "dual-mode engram",
    "impulse": "impulse",
}
"""How each kind is named in messages."""


class Component:
    """A loaded component: its class, kind (``batch``, ``streaming``, ``dual``, ``impulse``)
    and file."""

    def __init__(self, cls: type, path: Path) -> None:
        self.cls = cls
        self.path = path
        if issubclass(cls, BatchEngram) and issubclass(cls, StreamingEngram):
            self.kind = "dual"  # batch in a Job, streaming in a Deployment (bubu.start)
        elif issubclass(cls, BatchEngram):
            self.kind = "batch"
        elif issubclass(cls, StreamingEngram):
            self.kind = "streaming"
        else:
            self.kind = "impulse"

    @property
    def name(self) -> str:
        """The class name."""
        return self.cls.__name__

    @property
    def described(self) -> str:
        """``Name (a streaming engram)``."""
        article = "an" if self.kind == "impulse" else "a"
        return f"{self.name} ({article} {KIND_NAMES[self.kind]})"


def _as_class(obj: Any) -> type | None:
    cls = obj if inspect.isclass(obj) else type(obj)
    return cls if issubclass(cls, _BASES) else None


def load_component(target: str) -> Component:
    """Load ``target`` and return its component.

    Raises:
        UsageError: the file does not load, or holds no component, or several.
    """
    path, selector = _split_target(target)
    module = _load_module(path)
    origin = Path(path)
    if selector:
        if not hasattr(module, selector):
            raise UsageError(f"{path}: no attribute {selector!r}")
        found = _as_class(getattr(module, selector))
        if found is None:
            raise UsageError(f"{path}:{selector} is not a BatchEngram, StreamingEngram or Impulse")
        return Component(found, origin)
    for attr in ("engram", "Engram"):
        if hasattr(module, attr) and (found := _as_class(getattr(module, attr))) is not None:
            return Component(found, origin)
    defined = candidates(module)
    if not defined:
        raise UsageError(
            f"{path}: no BatchEngram, StreamingEngram or Impulse subclass found; "
            "name one with path.py:Name"
        )
    if len(defined) > 1:
        names = ", ".join(sorted(c.__name__ for c in defined))
        raise UsageError(f"{path}: several components ({names}); pick one with path.py:Name")
    return Component(defined[0], origin)


def candidates(module: Any) -> list[type]:
    """The concrete component classes defined in ``module`` (not imported into it)."""
    return [
        obj
        for obj in vars(module).values()
        if inspect.isclass(obj)
        and issubclass(obj, _BASES)
        and obj not in _BASES
        and obj.__module__ == module.__name__
        and not inspect.isabstract(obj)
    ]
