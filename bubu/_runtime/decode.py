"""Typed decode of config and inputs into msgspec Structs, with Go's weak typing.

The Go SDK decodes with mapstructure and ``WeaklyTypedInput``
(docs/contract/runtime-environment.md#inputs-config-secrets), and engram authors rely on those
conversions: the operator passes ``BUBU_CONFIG_<KEY>`` overrides as strings, so ``"30"`` must fill
an ``int`` field. ``decode`` walks the value along the target type (``msgspec.inspect``), applies
the conversions listed in ``docs/differences.md`` ("Typed decode"), matches keys to fields (encoded
name, Python name, then case-insensitively, then ignoring ``_``/``-``), rejects unknown keys in
strict mode, and lets ``msgspec.convert`` build the result (constraints, literals, enums,
datetimes). Every error is a ``SchemaValidationError`` whose ``path`` names the offending value
(``$.inputs.items[0].qty``).

Pure; imports ``bubu.errors`` and ``_runtime.parse``.
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any, Final, TypeVar, overload

import msgspec
import msgspec.inspect as mi

from bubu._runtime import parse
from bubu.errors import SchemaValidationError

__all__ = ["decode"]

T = TypeVar("T")

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
# Patterns of the rare roads (a failed decode, a Go octal or hex-float literal) stay source text:
# ``re`` compiles and caches one the first time it is used, not in every process's start
# (docs/performance.md, spawn-to-handshake).
_MSGSPEC_PATH = r"(?s)^(?P<msg>.*) - at `(?P<path>\$[^`]*)`$"
_MISSING = r"^Object missing required field `(?P<field>[^`]+)`$"


def _join(path: str, key: str) -> str:
    if _IDENT.fullmatch(key):
        return f"{path}.{key}"
    return f"{path}[{parse.go_quote(key)}]"


def _type_name(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "str"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


class _Error(Exception):
    def __init__(self, path: str, message: str) -> None:
        super().__init__(message)
        self.path = path
        self.message = message


# --- per-type field tables (cached; types are immutable once declared) --------------------------


class _Fields:
    __slots__ = ("by_exact", "by_fold", "by_loose", "fields", "nested", "required")

    def __init__(self, fields: tuple[mi.Field, ...]) -> None:
        self.fields = fields
        # encode name -> the field type when it holds objects (keys to check), else None
        self.nested: dict[str, mi.Type | None] = {
            f.encode_name: (f.type if _flags(f.type)[0] else None) for f in fields
        }
        self.by_exact: dict[str, mi.Field] = {}
        self.by_fold: dict[str, mi.Field | None] = {}
        self.by_loose: dict[str, mi.Field | None] = {}
        for f in fields:
            self.by_exact.setdefault(f.encode_name, f)
        for f in fields:
            self.by_exact.setdefault(f.name, f)
        for f in fields:
            for key in {f.encode_name, f.name}:
                self._add(self.by_fold, key.casefold(), f)
                self._add(self.by_loose, key.replace("_", "").replace("-", "").casefold(), f)
        self.required = tuple(f for f in fields if f.required)

    @staticmethod
    def _add(table: dict[str, mi.Field | None], key: str, f: mi.Field) -> None:
        # An ambiguous spelling (two fields fold to the same key) matches neither.
        existing = table.get(key, f)
        table[key] = f if existing is f else None


_TYPE_INFO: dict[Any, mi.Type] = {}
_FIELDS: dict[int, _Fields] = {}
_LOCK = threading.Lock()


def _info(type_: Any) -> mi.Type:
    try:
        cached = _TYPE_INFO.get(type_)
    except TypeError:  # unhashable annotation
        return mi.type_info(type_)
    if cached is None:
        cached = mi.type_info(type_)
        with _LOCK:
            _TYPE_INFO[type_] = cached
    return cached


def _fields(t: mi.StructType | mi.DataclassType | mi.TypedDictType) -> _Fields:
    key = id(t)
    table = _FIELDS.get(key)
    if table is None:
        table = _Fields(t.fields)
        with _LOCK:
            _FIELDS[key] = table
    return table


# --- scalar conversions (mapstructure WeaklyTypedInput) -------------------------------------------

_GO_OCTAL = r"[+-]?0[0-7_]+"


def _go_parse_int(text: str) -> int | None:
    # strconv.ParseInt(s, 0, 64): base from the prefix (0x, 0o, 0b, or a leading 0 for octal),
    # underscores only with a prefix. Python's int(s, 0) has the same rules except the bare
    # leading-zero octal form.
    if not text or text != text.strip() or not text.isascii():
        return None  # Python's int() also reads non-ASCII digits ("١٢"); Go does not
    try:
        value = int(text, 0)
    except ValueError:
        if re.fullmatch(_GO_OCTAL, text):
            try:
                value = int(text, 8)
            except ValueError:
                return None
        else:
            return None
    if not -(1 << 63) <= value < (1 << 63):
        return None
    return value


_GO_HEX_FLOAT = r"[+-]?0[xX](?:[0-9a-fA-F_]+\.?[0-9a-fA-F_]*|\.[0-9a-fA-F_]+)[pP][+-]?[0-9_]+"
_GO_INFINITIES = frozenset(sign + word for sign in ("", "+", "-") for word in ("inf", "infinity"))


_HEX_DIGITS: Final = frozenset("0123456789abcdefABCDEF")


def _go_hex_underscores_ok(body: str) -> bool:
    # strconv's underscoreOK after the 0x prefix (which counts as a digit): "_" only between
    # digits. Python's float() applies the same rule to decimal literals itself.
    saw = "0"
    for ch in body:
        if ch in _HEX_DIGITS:
            saw = "0"
        elif ch == "_":
            if saw != "0":
                return False
            saw = "_"
        elif saw == "_":
            return False
        else:
            saw = "!"
    return saw != "_"


def _go_parse_float(text: str) -> float | None:
    # strconv.ParseFloat(s, 64): decimal or hexadecimal (p exponent required) Go literals,
    # "_" between digits, "inf"/"infinity" with an optional sign and "nan" without one (any
    # case); a finite literal that overflows is an error, not Inf. Python's float() also reads
    # non-ASCII digits, signed NaNs and surrounding space, and no hex literal.
    if not text.isascii() or text != text.strip():
        return None
    folded = text.lower()
    if folded == "nan":
        return math.nan
    if folded in _GO_INFINITIES:
        return -math.inf if folded[0] == "-" else math.inf
    if re.fullmatch(_GO_HEX_FLOAT, text):
        if not _go_hex_underscores_ok(text.lstrip("+-")[2:]):
            return None
        try:
            return float.fromhex(text.replace("_", ""))
        except OverflowError:
            return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


def _format_float(value: float) -> str:
    # strconv.FormatFloat(f, 'f', -1, 64): shortest digits, never exponent notation.
    text = format(Decimal(repr(value)), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text


def _to_int(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise _Error(path, f"expected int, got float {value!r}")
    if isinstance(value, str):
        if value == "":
            return 0
        parsed = _go_parse_int(value)
        if parsed is None:
            raise _Error(path, "expected int, got a string that is not an integer")
        return parsed
    raise _Error(path, f"expected int, got {_type_name(value)}")


def _to_float(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return value
    if isinstance(value, str):
        if value == "":
            return 0.0
        parsed = _go_parse_float(value)
        if parsed is None:
            raise _Error(path, "expected float, got a string that is not a number")
        return parsed
    raise _Error(path, f"expected float, got {_type_name(value)}")


def _to_str(value: Any, path: str) -> Any:
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "1" if value else "0"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"  # strconv.FormatFloat's spelling of the values JSON cannot carry
        if math.isinf(value):
            return "+Inf" if value > 0 else "-Inf"
        return _format_float(value)
    raise _Error(path, f"expected str, got {_type_name(value)}")


def _to_bool(value: Any, path: str) -> Any:
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float):
        return value != 0
    if isinstance(value, str):
        if value == "":
            return False
        try:
            return parse.parse_bool_go(value)
        except parse.GoParseError:
            raise _Error(path, "expected bool, got a string that is not a Go bool") from None
    raise _Error(path, f"expected bool, got {_type_name(value)}")


def _to_timedelta(value: Any, path: str) -> Any:
    if isinstance(value, timedelta):
        return value
    if isinstance(value, str):
        try:
            ns = parse.parse_go_duration_ns(value)
        except parse.GoParseError as exc:
            raise _Error(path, str(exc)) from None
        return (
            timedelta(microseconds=ns // 1000)
            if ns >= 0
            else -timedelta(microseconds=(-ns) // 1000)
        )
    # Go: a number is ambiguous (seconds? nanoseconds?) and is refused (runtime/context.go).
    raise _Error(path, f"duration values must be strings like 5s, not {_type_name(value)}")


# --- the walk ------------------------------------------------------------------------------------


def _walk(value: Any, t: mi.Type, path: str, strict: bool) -> Any:
    if isinstance(t, mi.AnyType):
        return value
    if isinstance(t, mi.IntType):
        return _to_int(value, path)
    if isinstance(t, mi.FloatType):
        return _to_float(value, path)
    if isinstance(t, mi.StrType):
        return _to_str(value, path)
    if isinstance(t, mi.BoolType):
        return _to_bool(value, path)
    if isinstance(t, mi.TimeDeltaType):
        return _to_timedelta(value, path)
    if isinstance(t, mi.UnionType):
        return _walk_union(value, t, path, strict)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return _walk_sequence(value, t.item_type, path, strict)
    if isinstance(t, mi.TupleType):
        if isinstance(value, list | tuple) and len(value) == len(t.item_types):
            return [
                _walk(v, it, f"{path}[{i}]", strict)
                for i, (v, it) in enumerate(zip(value, t.item_types, strict=True))
            ]
        return value
    if isinstance(t, mi.DictType):
        return _walk_dict(value, t, path, strict)
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType):
        return _walk_object(value, t, path, strict)
    # Literals, enums, datetimes, UUIDs, bytes...: msgspec.convert decides.
    return value


def _walk_union(value: Any, t: mi.UnionType, path: str, strict: bool) -> Any:
    members = [m for m in t.types if not isinstance(m, mi.NoneType)]
    if value is None and len(members) != len(t.types):
        return None
    if len(members) == 1:
        return _walk(value, members[0], path, strict)
    # Several members: take the first that accepts the value as it is, then the first that
    # accepts it after weak conversion; msgspec reports the error otherwise.
    first_error: _Error | None = None
    for member in members:
        try:
            converted = _walk(value, member, path, strict)
            return msgspec.convert(converted, _python_type(member), strict=True)
        except _Error as exc:
            first_error = first_error or exc
        except (msgspec.ValidationError, TypeError):
            continue
    if first_error is not None:
        raise first_error
    return value


def _python_type(t: mi.Type) -> Any:
    # The Python type a type_info node was built from, for union trials.
    if isinstance(t, mi.StructType | mi.DataclassType | mi.TypedDictType | mi.EnumType):
        return t.cls
    simple: dict[type[mi.Type], Any] = {
        mi.IntType: int,
        mi.FloatType: float,
        mi.StrType: str,
        mi.BoolType: bool,
        mi.TimeDeltaType: timedelta,
        mi.AnyType: Any,
    }
    for node_type, py in simple.items():
        if isinstance(t, node_type):
            return py
    if isinstance(t, mi.ListType):
        return list[_python_type(t.item_type)]  # type: ignore[misc]
    if isinstance(t, mi.DictType):
        return dict[_python_type(t.key_type), _python_type(t.value_type)]  # type: ignore[misc]
    return Any


def _walk_sequence(value: Any, item: mi.Type, path: str, strict: bool) -> Any:
    if isinstance(value, list | tuple):
        return [_walk(v, item, f"{path}[{i}]", strict) for i, v in enumerate(value)]
    if isinstance(value, Mapping) and not value:
        return []  # mapstructure: an empty map is an empty slice
    if value is None:
        return value
    # mapstructure: a single value becomes a one-element slice.
    return [_walk(value, item, f"{path}[0]", strict)]


def _as_mapping(value: Any, path: str) -> Mapping[str, Any]:
    if isinstance(value, Mapping):
        return value
    if isinstance(value, list | tuple):
        # mapstructure: an empty slice is an empty map; a slice of maps is merged into one
        # (for a map target only: a struct target refuses a slice, see _walk_object).
        merged: dict[str, Any] = {}
        for i, item in enumerate(value):
            if not isinstance(item, Mapping):
                raise _Error(f"{path}[{i}]", f"expected object, got {_type_name(item)}")
            merged.update(item)
        return merged
    raise _Error(path, f"expected object, got {_type_name(value)}")


def _nullable(t: mi.Type) -> bool:
    if isinstance(t, mi.AnyType | mi.NoneType):
        return True
    return isinstance(t, mi.UnionType) and any(isinstance(m, mi.NoneType) for m in t.types)


def _walk_dict(value: Any, t: mi.DictType, path: str, strict: bool) -> Any:
    if value is None:
        return value
    mapping = _as_mapping(value, path)
    out: dict[Any, Any] = {}
    for key, item in mapping.items():
        sub = _join(path, str(key))
        out[_walk(key, t.key_type, sub, strict)] = _walk(item, t.value_type, sub, strict)
    return out


def _walk_object(
    value: Any, t: mi.StructType | mi.DataclassType | mi.TypedDictType, path: str, strict: bool
) -> Any:
    if not isinstance(t, mi.TypedDictType) and isinstance(value, t.cls):
        return value
    if getattr(t, "array_like", False):
        return value
    if not isinstance(value, Mapping):
        # mapstructure merges a list of maps only into a map; a struct needs a map.
        raise _Error(path, f"expected object, got {_type_name(value)}")
    mapping = value
    table = _fields(t)
    tag_field = getattr(t, "tag_field", None)
    assigned: dict[str, tuple[str, Any]] = {}
    unused: list[str] = []
    pending: list[tuple[str, Any]] = []
    # Pass 1: exact names win (mapstructure tries the exact key before a case-insensitive one).
    for key, item in mapping.items():
        k = str(key)
        if tag_field is not None and k == tag_field:
            continue
        f = table.by_exact.get(k)
        if f is not None and f.encode_name not in assigned:
            assigned[f.encode_name] = (k, item)
        else:
            pending.append((k, item))
    # Pass 2: case-insensitive, then ignoring "_" and "-" (maxRetries -> max_retries).
    for k, item in pending:
        f = table.by_fold.get(k.casefold())
        if f is None:
            f = table.by_loose.get(k.replace("_", "").replace("-", "").casefold())
        if f is not None and f.encode_name not in assigned:
            assigned[f.encode_name] = (k, item)
        else:
            unused.append(k)
    if strict and unused:
        # BUBU_RUNTIME_STRICT_UNMARSHAL: mapstructure ErrorUnused.
        first = sorted(unused)[0]
        names = ", ".join(sorted(unused))
        raise _Error(_join(path, first), f"unknown field(s): {names}")
    out: dict[str, Any] = {}
    if tag_field is not None and tag_field in mapping:
        out[tag_field] = mapping[tag_field]
    for f in t.fields:
        entry = assigned.get(f.encode_name)
        if entry is None or (entry[1] is None and not _nullable(f.type)):
            # mapstructure sets nothing for a null (Go keeps the zero value): a null for a
            # field that cannot hold None is an absent key.
            if f.required:
                raise _Error(_join(path, f.encode_name), "missing required field")
            continue
        key, item = entry
        out[f.encode_name] = _walk(item, f.type, _join(path, f.encode_name), strict)
    return out


# --- fast path ---------------------------------------------------------------------------------
#
# Most payloads already have the right JSON types and exact key spellings. For those,
# msgspec.convert(strict=True) alone gives the same result as the walk, ~50x faster. The walk is
# needed only when a key is spelled differently from its field (it would be silently ignored),
# when a weak conversion applies (strict convert then fails), or for timedelta fields (msgspec
# accepts ISO 8601 and numbers there; Go accepts Go duration strings only).

_OBJECT_TYPES = (mi.StructType, mi.DataclassType, mi.TypedDictType)
_NODE_FLAGS: dict[int, tuple[bool, bool]] = {}


def _children(t: mi.Type) -> tuple[mi.Type, ...]:
    if isinstance(t, _OBJECT_TYPES):
        return tuple(f.type for f in t.fields)
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return (t.item_type,)
    if isinstance(t, mi.TupleType):
        return tuple(t.item_types)
    if isinstance(t, mi.DictType):
        return (t.key_type, t.value_type)
    if isinstance(t, mi.UnionType):
        return tuple(t.types)
    return ()


def _flags(t: mi.Type) -> tuple[bool, bool]:
    """Return (contains an object type, contains a timedelta or a multi-member union)."""
    key = id(t)
    cached = _NODE_FLAGS.get(key)
    if cached is not None:
        return cached
    seen: set[int] = set()
    has_object = False
    needs_walk = False
    stack = [t]
    while stack:
        node = stack.pop()
        if id(node) in seen:
            continue
        seen.add(id(node))
        if isinstance(node, _OBJECT_TYPES):
            has_object = True
        elif isinstance(node, mi.TimeDeltaType) or (
            isinstance(node, mi.UnionType)
            and sum(not isinstance(m, mi.NoneType) for m in node.types) > 1
        ):
            needs_walk = True
        stack.extend(_children(node))
    result = (has_object, needs_walk)
    with _LOCK:
        _NODE_FLAGS[key] = result
    return result


def _keys_exact(value: Any, t: mi.Type) -> bool:
    # True when every object in ``value`` uses only the exact encoded names of its fields.
    if isinstance(t, _OBJECT_TYPES):
        if not isinstance(value, dict):
            return not isinstance(t, mi.TypedDictType) and isinstance(value, t.cls)
        nested = _fields(t).nested
        tag_field = getattr(t, "tag_field", None)
        for key, item in value.items():
            try:
                sub = nested[key]
            except KeyError:
                if key == tag_field:
                    continue
                return False
            if sub is not None and not _keys_exact(item, sub):
                return False
        return True
    if not _flags(t)[0]:
        return True
    if isinstance(t, mi.ListType | mi.SetType | mi.FrozenSetType | mi.VarTupleType):
        return isinstance(value, list) and all(_keys_exact(v, t.item_type) for v in value)
    if isinstance(t, mi.DictType):
        return isinstance(value, dict) and all(_keys_exact(v, t.value_type) for v in value.values())
    if isinstance(t, mi.UnionType):
        members = [m for m in t.types if not isinstance(m, mi.NoneType)]
        return value is None or (len(members) == 1 and _keys_exact(value, members[0]))
    return False


def _fast(data: Any, info: mi.Type, type_: Any) -> tuple[bool, Any]:
    if _flags(info)[1] or not _keys_exact(data, info):
        return False, None
    try:
        return True, msgspec.convert(data, type_, strict=True)
    except (msgspec.ValidationError, TypeError, ValueError):
        return False, None


def _rebase(base: str, msgspec_path: str) -> str:
    return base + msgspec_path[1:]


@overload
def decode(data: Any, type_: type[T], *, strict: bool = False, path: str = "$") -> T: ...
@overload
def decode(data: Any, type_: Any, *, strict: bool = False, path: str = "$") -> Any: ...
def decode(data: Any, type_: Any, *, strict: bool = False, path: str = "$") -> Any:
    """Decode ``data`` (decoded JSON: dicts, lists, scalars) into ``type_``.

    Args:
        data: the value to decode; ``None`` decodes as an empty object (Go: a nil map gives the
            zero value), so a Struct whose fields all have defaults comes out with its defaults.
        type_: a msgspec ``Struct`` (or dataclass, TypedDict, any type msgspec converts to);
            ``dict``, ``dict[str, Any]`` and ``Any`` pass the data through.
        strict: reject keys that match no field (``BUBU_RUNTIME_STRICT_UNMARSHAL``).
        path: the JSON path of ``data`` in error messages, e.g. ``"$.inputs"``.

    Returns:
        An instance of ``type_``.

    Raises:
        SchemaValidationError: with ``path`` naming the offending value, e.g.
            ``$.inputs.items[0].qty: expected int, got array``.
    """
    if type_ is Any or type_ is dict or type_ is object:
        return {} if data is None else data
    if data is None:
        data = {}
    try:
        info = _info(type_)
    except (TypeError, ValueError, NameError) as exc:
        raise TypeError(f"cannot decode into {type_!r}: {exc}") from None
    if (
        isinstance(info, mi.DictType)
        and isinstance(info.value_type, mi.AnyType)
        and isinstance(info.key_type, mi.StrType | mi.AnyType)
        and isinstance(data, dict)
    ):
        return data  # dict[str, Any]: nothing to convert
    # Exact keys also satisfy strict mode: no key is unknown.
    try:
        done, value = _fast(data, info, type_)
    except RecursionError:  # the key check walks the value too
        raise SchemaValidationError(f"{path}: value nested too deeply", path=path) from None
    if done:
        return value
    try:
        walked = _walk(data, info, path, strict)
    except _Error as exc:
        raise SchemaValidationError(f"{exc.path}: {exc.message}", path=exc.path) from None
    except RecursionError:
        raise SchemaValidationError(f"{path}: value nested too deeply", path=path) from None
    try:
        return msgspec.convert(walked, type_, strict=False)
    except msgspec.ValidationError as exc:
        text = str(exc)
        m = re.match(_MSGSPEC_PATH, text)
        where, message = (_rebase(path, m.group("path")), m.group("msg")) if m else (path, text)
        missing = re.match(_MISSING, message)
        if missing:
            where = _join(where, missing.group("field"))
            message = "missing required field"
        raise SchemaValidationError(f"{where}: {message}", path=where) from None
    except (TypeError, ValueError, RecursionError) as exc:
        raise SchemaValidationError(f"{path}: {exc}", path=path) from None


def is_decodable(type_: Any) -> bool:
    """Return whether ``decode`` can target ``type_`` (used by entry points to fail early)."""
    if type_ is Any or type_ is dict or type_ is object:
        return True
    try:
        _info(type_)
    except (TypeError, ValueError, NameError):
        return False
    return True
