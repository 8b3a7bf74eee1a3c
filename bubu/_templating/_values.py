"""The Go value model the evaluator computes with (docs/templates.md "How values behave").

Template data is JSON, which Go holds as ``map[string]interface{}``, ``[]interface{}``,
``string``, ``float64``, ``bool`` and ``nil``. Python keeps JSON integers as ``int``; here a
plain ``int`` in the data **is a float64**, exactly as Go sees it, so ``1000000`` prints
``1e+06`` and ``eq .n 1`` compares a float64 with an int (an error in Go, and here).

Values made by the template itself keep their Go type through small marker types:

* ``GoInt`` (``int``: integer literals, ``len``, ``atoi``, ``int``) and ``GoInt64``
  (``int64``: ``add``, ``sub``, ``mul``, ``max``... and ``int64``);
* ``GoStrings`` (``[]string``: ``splitList``, ``keys``, ``sortAlpha``, ``toStrings``) and
  ``GoStringMap`` (``map[string]string``: ``split``, ``splitn``);
* ``GoTime`` (``time.Time``), ``GoVersion`` (``*semver.Version``).

``NOVALUE`` is Go's invalid ``reflect.Value`` (prints ``<no value>``); ``None`` is a nil
``interface{}`` (prints ``<nil>`` as a function argument).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final

__all__ = [
    "NOVALUE",
    "GoInt",
    "GoInt64",
    "GoNilSlice",
    "GoStringMap",
    "GoStrings",
    "GoTime",
    "GoUint8",
    "GoUint64",
    "GoVersion",
    "NoValue",
    "go_kind",
    "go_type",
    "is_int",
    "is_number",
    "truth",
]


class NoValue:
    """Go's invalid ``reflect.Value`` (a missing map entry after the pipeline unwraps it)."""

    __slots__ = ()
    _instance: NoValue | None = None

    def __new__(cls) -> NoValue:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "<no value>"

    def __bool__(self) -> bool:
        return False


NOVALUE: Final = NoValue()


class GoInt(int):
    """A Go ``int``."""

    __slots__ = ()


class GoInt64(int):
    """A Go ``int64``."""

    __slots__ = ()


class GoUint8(int):
    """A Go ``uint8`` (a byte: ``index`` on a string)."""

    __slots__ = ()


class GoUint64(int):
    """A Go ``uint64`` (semver version fields)."""

    __slots__ = ()


class GoNilSlice(list[Any]):
    """A nil ``[]interface {}``: prints ``[]``, encodes as JSON ``null``."""

    __slots__ = ()


class GoStrings(list[str]):
    """A Go ``[]string``."""

    __slots__ = ()


class GoStringMap(dict[str, str]):
    """A Go ``map[string]string``."""

    __slots__ = ()


class GoTime:
    """A Go ``time.Time``: an aware datetime plus the nanoseconds Python cannot hold."""

    __slots__ = ("dt", "nanos")

    def __init__(self, dt: datetime, nanos: int | None = None) -> None:
        self.dt = dt
        self.nanos = dt.microsecond * 1000 if nanos is None else nanos

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GoTime) and self.dt == other.dt and self.nanos == other.nanos

    def __hash__(self) -> int:
        return hash((self.dt, self.nanos))


class GoVersion:
    """A ``*semver.Version`` (Masterminds semver v3)."""

    __slots__ = ("major", "metadata", "minor", "original", "patch", "pre")

    def __init__(  # noqa: PLR0917 - the six parts of a version, in semver order
        self, major: int, minor: int, patch: int, pre: str, metadata: str, original: str
    ) -> None:
        self.major = major
        self.minor = minor
        self.patch = patch
        self.pre = pre
        self.metadata = metadata
        self.original = original

    def __str__(self) -> str:
        text = f"{self.major}.{self.minor}.{self.patch}"
        if self.pre:
            text += "-" + self.pre
        if self.metadata:
            text += "+" + self.metadata
        return text


_INT_TYPES = frozenset({GoInt, GoInt64, GoUint8, GoUint64})


def is_int(value: Any) -> bool:
    """True for Go integer values (``GoInt``, ``GoInt64``, uints), never for data numbers."""
    return type(value) in _INT_TYPES


def is_number(value: Any) -> bool:
    """True for any Go number: ints made by the template, data ints and floats (float64)."""
    return isinstance(value, int | float) and not isinstance(value, bool)


def go_type(value: Any) -> str:
    """Go's ``%T`` (``reflect.Type.String()``) of a value."""
    if value is None or value is NOVALUE:
        return "<nil>"
    if isinstance(value, bool):
        return "bool"
    t = type(value)
    if t is GoInt:
        return "int"
    if t is GoInt64:
        return "int64"
    if t is GoUint8:
        return "uint8"
    if t is GoUint64:
        return "uint64"
    if isinstance(value, int | float):
        return "float64"
    if isinstance(value, str):
        return "string"
    if t is GoStrings:
        return "[]string"
    if t is GoStringMap:
        return "map[string]string"
    if isinstance(value, list | tuple):
        return "[]interface {}"
    if isinstance(value, dict):
        return "map[string]interface {}"
    if t is GoTime:
        return "time.Time"
    if t is GoVersion:
        return "*semver.Version"
    return t.__name__


def go_kind(value: Any) -> str:
    """Go's ``reflect.Kind.String()`` of a value (``invalid`` for nil)."""
    if value is None or value is NOVALUE:
        return "invalid"
    t = go_type(value)
    if t.startswith("[]"):
        return "slice"
    if t.startswith("map["):
        return "map"
    if t == "time.Time":
        return "struct"
    if t.startswith("*"):
        return "ptr"
    return t


def truth(value: Any) -> bool:
    """Go template truth (``isTrue``): zero values, nil and empty containers are false."""
    if value is None or value is NOVALUE:
        return False
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0  # NaN != 0 is true in Go too
    if isinstance(value, str | list | tuple | dict):
        return len(value) > 0
    return True
