"""Template functions: Go's builtins, core's helpers and the whitelisted Sprig subset.

Every function is a ``GoFunc`` carrying its Go parameter types (``string``, ``int``,
``int64``, ``float64``, ``bool``, ``map[string]interface {}``, ``time.Time``, or ``ANY``) so the
executor converts arguments and reports type errors as Go's reflection does. Behaviour follows
Go 1.26 ``text/template``, ``github.com/bubustack/core/templating`` v0.1.6 and Sprig v3.3.0
(with ``spf13/cast`` for number conversion); docs/templates.md lists the functions.

Sprig's panicking helpers (``first`` on a string, ``toRawJson`` of a bad value) surface as
``error calling <name>: ...`` exactly as Go's recovered panics do.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import math
import re
import urllib.parse
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from bubu._runtime import refs
from bubu._templating import _unicode
from bubu._templating._fmt import go_quote, sprint, sprintf, sprintln
from bubu._templating._gojson import GoJSONError, go_json, go_json_decode
from bubu._templating._values import (
    NOVALUE,
    GoInt,
    GoInt64,
    GoNilSlice,
    GoStringMap,
    GoStrings,
    GoTime,
    GoUint8,
    GoUint64,
    GoVersion,
    go_kind,
    go_type,
    is_number,
    truth,
)

__all__ = [
    "ANY",
    "BUILTIN_NAMES",
    "NOT_NILABLE",
    "GoCallError",
    "GoFunc",
    "OffloadedUsage",
    "assignable",
    "build_funcs",
    "call_method",
    "zero_of",
]

ANY = "interface {}"
MAP = "map[string]interface {}"
LIST = "[]interface {}"
_RUNTIME_NIL = "runtime error: invalid memory address or nil pointer dereference"


class GoCallError(Exception):
    """A function returned an error (or panicked); the executor prefixes ``error calling``."""


class OffloadedUsage(GoCallError):
    """core's ``ErrOffloadedDataUsage`` raised by ``len``/``hash_of``/``sample``/``type_of``."""


@dataclass(frozen=True, slots=True)
class GoFunc:
    """A callable with Go's signature: fixed ``params``, optional ``variadic`` element type."""

    impl: Callable[..., Any]
    params: tuple[str, ...] = ()
    variadic: str | None = None
    builtin: bool = False


class _NotNilable:
    __slots__ = ()


NOT_NILABLE = _NotNilable()

_ZEROS: dict[str, Callable[[], Any]] = {
    ANY: lambda: None,
    MAP: dict,
    LIST: list,
    "[]string": GoStrings,
    "map[string]string": GoStringMap,
    "*semver.Version": lambda: None,
}


def zero_of(typ: str) -> Any:
    """The zero value a nil-able Go type takes when handed the invalid value; else NOT_NILABLE."""
    factory = _ZEROS.get(typ)
    return NOT_NILABLE if factory is None else factory()


def assignable(value: Any, typ: str) -> bool:
    """Go's ``AssignableTo`` for the value types the evaluator handles."""
    return typ == ANY or go_type(value) == typ


# --- numbers (spf13/cast as Sprig uses it) -----------------------------------------------------

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_DECIMAL_RE = re.compile(r"^([-+]?\d*)(\.\d*)?$")


def _wrap64(value: int) -> int:
    return ((value - _INT64_MIN) % 2**64) + _INT64_MIN


def _float_to_int64(f: float) -> int:
    if math.isnan(f) or math.isinf(f) or not _INT64_MIN <= f < 2**63:
        return _INT64_MIN  # Go's amd64 conversion of an out-of-range float
    return int(f)


def parse_go_int(text: str) -> int | None:
    """``strconv.ParseInt(s, 0, 64)``; None when Go would refuse it."""
    body = text
    sign = 1
    if body[:1] in "+-":
        sign = -1 if body[0] == "-" else 1
        body = body[1:]
    if not body:
        return None
    base = 10
    digits = body
    low = body.lower()
    if low.startswith("0x"):
        base, digits = 16, body[2:]
    elif low.startswith("0o"):
        base, digits = 8, body[2:]
    elif low.startswith("0b"):
        base, digits = 2, body[2:]
    elif body.startswith("0") and len(body) > 1:
        base, digits = 8, body[1:]
    if "_" in digits:
        if base == 10 and not body.startswith("0"):
            return None
        check = ("0" if base != 10 else "") + digits
        if "__" in check or check.endswith("_") or (base == 10 and check.startswith("_")):
            return None
        digits = digits.replace("_", "")
    if not digits:
        return None
    try:
        value = sign * int(digits, base)
    except ValueError:
        return None
    if not _INT64_MIN <= value <= _INT64_MAX:
        return None
    return value


def parse_go_float(text: str) -> float | None:
    """``strconv.ParseFloat(s, 64)``; None when Go would refuse it."""
    low = text.lower().lstrip("+-")
    if low in ("inf", "infinity", "nan"):
        value = float(low)
        return -value if text.startswith("-") else value
    if "_" in text:
        return None  # ParseFloat takes "_" only in base-prefixed literals, never here
    try:
        if low.startswith("0x"):
            return float.fromhex(text)
        if not re.fullmatch(r"[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?", text):
            return None
        return float(text)
    except (ValueError, OverflowError):
        return None


def to_int64(value: Any) -> int:
    """``cast.ToInt64`` with Sprig's "errors become 0"."""
    if value is None or value is NOVALUE:
        return 0
    if isinstance(value, bool):
        return 1 if value else 0
    if type(value) is GoInt or type(value) is GoInt64:
        return int(value)
    if isinstance(value, int | float):
        return _float_to_int64(float(value))
    if isinstance(value, str):
        if value == "":
            return 0
        text = value
        if "." in text:
            m = _DECIMAL_RE.match(text)
            if m:
                text = m.group(1)
                text = text + "0" if text in ("-", "+") else (text or "0")
        parsed = parse_go_int(text)
        return 0 if parsed is None else parsed
    return 0


def to_float64(value: Any) -> float:
    """``cast.ToFloat64`` with Sprig's "errors become 0"."""
    if value is None or value is NOVALUE:
        return 0.0
    if isinstance(value, bool):
        return 1.0 if value else 0.0
    if isinstance(value, int | float):
        return float(value)
    if isinstance(value, str):
        if value == "":
            return 0.0
        parsed = parse_go_float(value)
        return 0.0 if parsed is None else parsed
    return 0.0


def strval(value: Any) -> str:
    """Sprig's ``strval``: strings as is, Stringers by ``String()``, the rest with ``%v``."""
    if isinstance(value, str):
        return value
    return sprint(value) if value is not None else "<nil>"


def _kind_of(value: Any) -> str:
    if value is None:
        raise GoCallError(_RUNTIME_NIL)
    return go_kind(value)


def _is_list(value: Any) -> bool:
    return isinstance(value, list | tuple)


def empty(value: Any) -> bool:
    """Sprig's ``empty``: zero numbers, ``false``, empty strings and containers, nil."""
    if value is None or value is NOVALUE:
        return True
    if isinstance(value, bool):
        return not value
    if isinstance(value, int | float):
        return value == 0
    if isinstance(value, str | list | tuple | dict):
        return len(value) == 0
    return False


def deep_equal(a: Any, b: Any) -> bool:
    """``reflect.DeepEqual`` over the value model (types must match, as in Go)."""
    if a is None or b is None:
        return a is None and b is None
    if go_type(a) != go_type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(deep_equal(a[k], b[k]) for k in a)
    if isinstance(a, list | tuple):
        return len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, float | int) and not isinstance(a, bool):
        return float(a) == float(b) if not isinstance(a, GoInt | GoInt64) else int(a) == int(b)
    return bool(a == b)


# --- core's helpers (templating/helpers.go) ----------------------------------------------------


storage_selector = refs.template_selector


def _offloaded_path(path: str) -> str:
    if not path.strip():
        return ""
    return path if path.startswith((".", "[")) else "." + path


def _offloaded(op: str, value: Any) -> None:
    sel = storage_selector(value)
    if sel is not None:
        ref, path = sel
        where = ref + _offloaded_path(path) if path else ref
        raise OffloadedUsage(
            f"offloaded data usage detected: {op} requires hydrated data for {where}"
        )


def core_len(value: Any) -> GoInt:
    if value is None or value is NOVALUE:
        return GoInt(0)
    if isinstance(value, str):
        return GoInt(len(value.encode("utf-8", "surrogatepass")))
    if isinstance(value, dict):
        _offloaded("len", value)
        return GoInt(len(value))
    if isinstance(value, list | tuple):
        return GoInt(len(value))
    raise GoCallError(f"len: unsupported argument type {go_type(value)}")


def core_hash_of(value: Any) -> str:
    if value is None:
        raise GoCallError("hash_of: value is null")
    _offloaded("hash_of", value)
    if isinstance(value, str):
        return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()
    raise GoCallError(f"hash_of: unsupported argument type {go_type(value)}")


def core_type_of(value: Any) -> str:
    if value is None:
        return "null"
    sel = storage_selector(value)
    if sel is not None:
        return f"offloaded({sel[0]}{_offloaded_path(sel[1])})"
    if isinstance(value, dict):
        return "object"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, str):
        return "string"
    if isinstance(value, bool):
        return "bool"
    if is_number(value):
        return "number"
    if isinstance(value, GoTime):
        return "object"
    return "object"


def core_sample(value: Any) -> Any:
    if value is None:
        return None
    _offloaded("sample", value)
    return value


# --- Go's text/template builtins ---------------------------------------------------------------


def _basic_kind(value: Any) -> str:
    if value is None or value is NOVALUE:
        return "invalid"
    if isinstance(value, bool):
        return "bool"
    if type(value) is GoInt or type(value) is GoInt64:
        return "int"
    if type(value) is GoUint8 or type(value) is GoUint64:
        return "uint"
    if isinstance(value, int | float):
        return "float"
    if isinstance(value, str):
        return "string"
    return "other"


def _builtin_eq(arg1: Any, *rest: Any) -> bool:
    if not rest:
        raise GoCallError("missing argument for comparison")
    k1 = _basic_kind(arg1)
    for arg in rest:
        k2 = _basic_kind(arg)
        if k1 != k2:
            if {k1, k2} == {"int", "uint"}:
                if int(arg1) == int(arg):
                    return True
                continue
            if arg1 not in (None, NOVALUE) and arg not in (None, NOVALUE):
                raise GoCallError(
                    f"incompatible types for comparison: {_type_name(arg1)} and {_type_name(arg)}"
                )
            continue
        if k1 in ("bool", "int", "uint", "string"):
            if arg1 == arg:
                return True
        elif k1 == "float":
            if float(arg1) == float(arg):
                return True
        elif k1 == "invalid":
            return True
        else:
            if isinstance(arg1, dict | list | tuple) or isinstance(arg, dict | list | tuple):
                if go_kind(arg1) != go_kind(arg):
                    raise GoCallError(
                        f"non-comparable types {sprintf('%s', arg1)}: {_type_name(arg1)}, "
                        f"{_type_name(arg)}: {sprintf('%v', arg)}"
                    )
                raise GoCallError(f"non-comparable type {sprintf('%s', arg)}: {_type_name(arg)}")
            if arg1 == arg:
                return True
    return False


def _type_name(value: Any) -> str:
    return go_type(value)


def _builtin_lt(a: Any, b: Any) -> bool:
    k1 = _basic_kind(a)
    if k1 in ("invalid", "other"):
        raise GoCallError("invalid type for comparison")
    k2 = _basic_kind(b)
    if k2 in ("invalid", "other"):
        raise GoCallError("invalid type for comparison")
    if k1 != k2:
        if {k1, k2} == {"int", "uint"}:
            return int(a) < int(b)
        raise GoCallError(f"incompatible types for comparison: {go_type(a)} and {go_type(b)}")
    if k1 == "bool":
        raise GoCallError("invalid type for comparison")
    if k1 == "float":
        return float(a) < float(b)
    return bool(a < b)


def _builtin_le(a: Any, b: Any) -> bool:
    return _builtin_lt(a, b) or _builtin_eq(a, b)


def _builtin_gt(a: Any, b: Any) -> bool:
    return not _builtin_le(a, b)


def _builtin_ge(a: Any, b: Any) -> bool:
    return not _builtin_lt(a, b)


def _index_arg(index: Any, cap: int) -> int:
    kind = _basic_kind(index)
    if kind == "invalid":
        raise GoCallError("cannot index slice/array with nil")
    if kind not in ("int", "uint"):
        raise GoCallError(f"cannot index slice/array with type {go_type(index)}")
    x = int(index)
    if x < 0 or x > cap:
        raise GoCallError(f"index out of range: {x}")
    return x


def _builtin_index(item: Any, *indexes: Any) -> Any:
    if item is None or item is NOVALUE:
        raise GoCallError("index of untyped nil")
    for index in indexes:
        if item is None:
            raise GoCallError("index of nil pointer")
        if isinstance(item, str):
            data = item.encode("utf-8", "surrogatepass")
            # a Go string indexes to a byte (uint8)
            x = _index_arg(index, len(data))
            if x >= len(data):
                raise GoCallError("reflect: string index out of range")
            item = GoUint8(data[x])
        elif isinstance(item, list | tuple):
            x = _index_arg(index, len(item))
            if x >= len(item):
                raise GoCallError("reflect: slice index out of range")
            item = item[x]
        elif isinstance(item, dict):
            if index is None or index is NOVALUE:
                raise GoCallError("value is nil; should be of type string")
            if not isinstance(index, str):
                raise GoCallError(f"value has type {go_type(index)}; should be string")
            zero = "" if type(item) is GoStringMap else None
            item = item.get(index, zero)
        else:
            raise GoCallError(f"can't index item of type {go_type(item)}")
    return item


def _eval_args(args: tuple[Any, ...]) -> str:
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return sprint(*("<no value>" if a is NOVALUE else a for a in args))


def _html_escape(s: str) -> str:
    out = []
    for ch in s:
        out.append(
            {
                "\0": "\ufffd",
                '"': "&#34;",
                "'": "&#39;",
                "&": "&amp;",
                "<": "&lt;",
                ">": "&gt;",
            }.get(ch, ch)
        )
    return "".join(out)


def _js_escape(s: str) -> str:
    out = []
    for ch in s:
        code = ord(ch)
        if ch in "\\'\"<>&=":
            out.append(
                {
                    "\\": "\\\\",
                    "'": "\\'",
                    '"': '\\"',
                    "<": "\\u003C",
                    ">": "\\u003E",
                    "&": "\\u0026",
                    "=": "\\u003D",
                }[ch]
            )
        elif code < 0x20:
            out.append(f"\\u00{code:02X}")
        elif code >= 0x80 and not (_unicode.category(ch)[0] in "LMNPS" or ch == " "):
            out.append(f"\\u{code:04X}")
        else:
            out.append(ch)
    return "".join(out)


def _builtins() -> dict[str, GoFunc]:
    def b(impl: Callable[..., Any], params: tuple[str, ...], variadic: str | None = None) -> GoFunc:
        return GoFunc(impl, params, variadic, builtin=True)

    return {
        "and": b(lambda *a: None, (ANY,), ANY),
        "or": b(lambda *a: None, (ANY,), ANY),
        "not": b(lambda v: not truth(v), (ANY,)),
        "eq": b(_builtin_eq, (ANY,), ANY),
        "ne": b(lambda a, b_: not _builtin_eq(a, b_), (ANY, ANY)),
        "lt": b(_builtin_lt, (ANY, ANY)),
        "le": b(_builtin_le, (ANY, ANY)),
        "gt": b(_builtin_gt, (ANY, ANY)),
        "ge": b(_builtin_ge, (ANY, ANY)),
        "index": b(_builtin_index, (ANY,), ANY),
        "print": b(sprint, (), ANY),
        "printf": b(sprintf, ("string",), ANY),
        "println": b(sprintln, (), ANY),
        "html": b(lambda *a: _html_escape(_eval_args(a)), (), ANY),
        "js": b(lambda *a: _js_escape(_eval_args(a)), (), ANY),
        "urlquery": b(lambda *a: urllib.parse.quote_plus(_eval_args(a), safe="-_.~"), (), ANY),
        "call": b(_call_unsupported, (ANY,), ANY),
    }


def _call_unsupported(name: str, fn: Any, *args: Any) -> Any:
    # Template data is JSON: it never holds a function, so ``call`` always fails, with Go's text.
    if fn is None or fn is NOVALUE:
        raise GoCallError("call of nil")
    raise GoCallError(f"non-function {name} of type {go_type(fn)}")


# Go's builtins: the single-action check parses with these names only (docs/templates.md#templates).
BUILTIN_NAMES = frozenset(_builtins()) | {"len", "slice"}


# --- methods on time and semver values ---------------------------------------------------------


def call_method(receiver: Any, name: str) -> GoFunc | None:
    """The Go method ``name`` on ``receiver`` (time.Time, *semver.Version), if any."""
    if isinstance(receiver, GoVersion):
        fields = {
            "Major": lambda: GoUint64(receiver.major),
            "Minor": lambda: GoUint64(receiver.minor),
            "Patch": lambda: GoUint64(receiver.patch),
            "Prerelease": lambda: receiver.pre,
            "Metadata": lambda: receiver.metadata,
            "Original": lambda: receiver.original,
            "String": lambda: str(receiver),
        }
        impl = fields.get(name)
        return GoFunc(impl) if impl is not None else None
    if isinstance(receiver, GoTime):
        from bubu._templating import _dates

        return _dates.time_method(receiver, name)
    return None


# --- Sprig -------------------------------------------------------------------------------------


def _list_of(value: Any, op: str) -> list[Any]:
    if value is None:
        raise GoCallError(_RUNTIME_NIL)
    if not isinstance(value, list | tuple):
        raise GoCallError(f"Cannot {op} on type {_kind_of(value)}")
    return list(value)


def _sprig_first(v: Any) -> Any:
    items = _list_of(v, "find first")
    return items[0] if items else None


def _sprig_last(v: Any) -> Any:
    items = _list_of(v, "find last")
    return items[-1] if items else None


def _sprig_rest(v: Any) -> Any:
    items = _list_of(v, "find rest")
    return items[1:] if items else GoNilSlice()


def _sprig_initial(v: Any) -> Any:
    items = _list_of(v, "find initial")
    return items[:-1] if items else GoNilSlice()


def _in_list(haystack: list[Any], needle: Any) -> bool:
    return any(deep_equal(needle, h) for h in haystack)


def _sprig_uniq(v: Any) -> list[Any]:
    out: list[Any] = []
    for item in _list_of(v, "find uniq"):
        if not _in_list(out, item):
            out.append(item)
    return out


def _sprig_without(v: Any, *omit: Any) -> list[Any]:
    return [item for item in _list_of(v, "find without") if not _in_list(list(omit), item)]


def _sprig_has(needle: Any, haystack: Any) -> bool:
    if haystack is None:
        return False
    return _in_list(_list_of(haystack, "find has"), needle)


def _sprig_slice(v: Any, *indices: Any) -> Any:
    if v is None:
        raise GoCallError(_RUNTIME_NIL)
    if not isinstance(v, list | tuple):
        raise GoCallError(f"list should be type of slice or array but {_kind_of(v)}")
    if not v:
        return None
    start = _to_int(indices[0]) if indices else 0
    end = _to_int(indices[1]) if len(indices) >= 2 else len(v)
    if not 0 <= start <= end <= len(v):
        raise GoCallError("reflect: slice index out of range")
    out = v[start:end]
    return GoStrings(out) if type(v) is GoStrings else list(out)


def _to_int(value: Any) -> int:
    n = to_int64(value)
    return n


def _sprig_concat(*lists: Any) -> Any:
    out: list[Any] = GoNilSlice()
    for item in lists:
        if item is None:
            raise GoCallError(_RUNTIME_NIL)
        if not isinstance(item, list | tuple):
            raise GoCallError(f"Cannot concat type {_kind_of(item)} as list")
        out = [*out, *item]
    return out


def _sprig_push(v: Any, item: Any) -> list[Any]:
    return [*_list_of(v, "push"), item]


def _sprig_prepend(v: Any, item: Any) -> list[Any]:
    return [item, *_list_of(v, "prepend")]


def _sprig_reverse(v: Any) -> list[Any]:
    return list(reversed(_list_of(v, "find reverse")))


def _sprig_compact(v: Any) -> list[Any]:
    return [item for item in _list_of(v, "compact") if not empty(item)]


def strslice(value: Any) -> GoStrings:
    if type(value) is GoStrings:
        return value
    if isinstance(value, list | tuple):
        return GoStrings(strval(s) for s in value if s is not None)
    if value is None:
        return GoStrings()
    return GoStrings([strval(value)])


def _sprig_sort_alpha(value: Any) -> GoStrings:
    if isinstance(value, list | tuple):
        return GoStrings(sorted(strslice(value), key=lambda s: s.encode("utf-8", "surrogatepass")))
    return GoStrings([strval(value)])


def _sprig_dict(*args: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for i in range(0, len(args), 2):
        key = strval(args[i])
        out[key] = args[i + 1] if i + 1 < len(args) else ""
    return out


def _sprig_dig(*ps: Any) -> Any:
    if len(ps) < 3:
        raise GoCallError("dig needs at least three arguments")
    current = ps[-1]
    if type(current) is not dict:
        raise GoCallError(
            f"interface conversion: interface {{}} is {go_type(current)}, "
            "not map[string]interface {}"
        )
    default = ps[-2]
    keys = ps[:-2]
    for i, key in enumerate(keys):
        if not isinstance(key, str):
            raise GoCallError(f"interface conversion: interface {{}} is {go_type(key)}, not string")
        if key not in current:
            return default
        current = current[key]
        if i < len(keys) - 1 and type(current) is not dict:
            raise GoCallError(
                f"interface conversion: interface {{}} is {go_type(current)}, "
                "not map[string]interface {}"
            )
    return current


def _byte_slice(s: str, start: int, end: int | None = None) -> str:
    data = s.encode("utf-8", "surrogatepass")
    return data[start:end].decode("utf-8", "replace")


def _sprig_trunc(c: int, s: str) -> str:
    n = len(s.encode("utf-8", "surrogatepass"))
    if c < 0 and n + c > 0:
        return _byte_slice(s, n + c)
    if c >= 0 and n > c:
        return _byte_slice(s, 0, c)
    return s


def _sprig_substr(start: int, end: int, s: str) -> str:
    n = len(s.encode("utf-8", "surrogatepass"))
    if start < 0:
        if end < 0 or end > n:
            raise GoCallError(f"runtime error: slice bounds out of range [:{end}] with length {n}")
        return _byte_slice(s, 0, end)
    if end < 0 or end > n:
        if start > n:
            raise GoCallError(f"runtime error: slice bounds out of range [{start}:{n}]")
        return _byte_slice(s, start)
    if start > end:
        raise GoCallError(f"runtime error: slice bounds out of range [{start}:{end}]")
    return _byte_slice(s, start, end)


def _sprig_abbrev(width: int, s: str) -> str:
    if width < 4:
        return s
    return _abbreviate_full(s, 0, width)


def _abbreviate_full(s: str, offset: int, width: int) -> str:
    if s == "":
        return ""
    if width < 4:
        return ""
    n = len(s)
    if n <= width:
        return s
    offset = min(offset, n)
    if n - offset < width - 3:
        offset = n - (width - 3)
    if offset <= 4:
        return s[: width - 3] + "..."
    if width < 7:
        return ""
    if offset + width - 3 < n:
        return "..." + _abbreviate_full(s[offset:], 0, width - 3)
    return "..." + s[n - (width - 3) :]


def _sprig_abbrevboth(left: int, right: int, s: str) -> str:
    if right < 4 or (left > 0 and right < 7):
        return s
    return _abbreviate_full(s, left, right)


def _go_is_space(ch: str) -> bool:
    return ch in "\t\n\v\f\r \x85\xa0" or (ord(ch) > 0xFF and ch.isspace())


def _go_trim_space(s: str) -> str:
    start, end = 0, len(s)
    while start < end and _go_is_space(s[start]):
        start += 1
    while end > start and _go_is_space(s[end - 1]):
        end -= 1
    return s[start:end]


def _go_title(s: str) -> str:
    # strings.Title: upper-case the first letter of each word (words split at non-letters
    # except for marks, digits and apostrophes, as Go's isSeparator).
    out = []
    prev = " "
    for ch in s:
        out.append(ch.upper() if _is_separator(prev) and len(ch.upper()) == 1 else ch)
        prev = ch
    return "".join(out)


def _is_separator(ch: str) -> bool:
    if ch.isascii():
        return not (ch.isalnum() or ch == "_")
    cat = _unicode.category(ch)
    if cat[0] in "LN":
        return False
    return ch.isspace()


def _sprig_initials(s: str) -> str:
    # goutils walks bytes, not runes: a multi-byte first letter yields its first byte as a
    # code point, exactly as Go writes rune(str[i]).
    out = []
    gap = True
    for b in s.encode("utf-8", "surrogatepass"):
        if _go_is_space(chr(b)):
            gap = True
        elif gap:
            out.append(chr(b))
            gap = False
    return "".join(out)


def _sprig_untitle(s: str) -> str:
    out = []
    nxt = True
    for ch in s:
        if _go_is_space(ch):
            nxt = True
            out.append(ch)
        elif nxt:
            out.append(ch.lower() if len(ch.lower()) == 1 else ch)
            nxt = False
        else:
            out.append(ch)
    return "".join(out)


def _sprig_nospace(s: str) -> str:
    # goutils.DeleteWhiteSpace also works byte by byte (see _sprig_initials).
    data = s.encode("utf-8", "surrogatepass")
    kept = [b for b in data if not _go_is_space(chr(b))]
    if len(kept) == len(data):
        return s
    return "".join(chr(b) for b in kept)


def _sprig_wrap_custom(s: str, length: int, newline: str, long_words: bool) -> str:
    if s == "":
        return ""
    newline = newline or "\n"
    length = max(length, 1)
    data = s
    n = len(data)
    offset = 0
    out: list[str] = []
    while n - offset > length:
        if data[offset] == " ":
            offset += 1
            continue
        end = length + offset + 1
        space = data.rfind(" ", offset, end)
        if space >= offset:
            out.append(data[offset:space])
            out.append(newline)
            offset = space + 1
        elif long_words:
            out.append(data[offset : offset + length])
            out.append(newline)
            offset += length
        else:
            space = data.find(" ", offset + length)
            if space >= 0:
                out.append(data[offset:space])
                out.append(newline)
                offset = space + 1
            else:
                out.append(data[offset:])
                offset = n
    out.append(data[offset:])
    return "".join(out)


# --- huandu/xstrings v1.5.0 case conversion (snakecase, kebabcase, camelcase) ---------------


def _is_connector(ch: str) -> bool:
    return ch in "-_" or _go_is_space(ch)


def _is_upper(ch: str) -> bool:
    return _unicode.category(ch) == "Lu"


def _is_alphabet(ch: str) -> bool:
    if _unicode.category(ch)[0] != "L":
        return False
    code = ord(ch)
    return not (0x4E00 <= code <= 0x9FCC or 0x3400 <= code <= 0x4D85 or 0x20000 <= code <= 0x2B81D)


def _is_punct(ch: str) -> bool:
    return _unicode.category(ch)[0] == "P"


def _is_number(ch: str) -> bool:
    return _unicode.category(ch)[0] == "N"


_CONNECTOR, _PUNCT, _UPPER, _ALPHA, _NUMBER, _OTHER = range(1, 7)


def _next_word(s: str) -> tuple[int, str, str]:
    """xstrings' ``nextWord``: the type of the next word, the word and the rest."""
    ch = s[0]
    i = 1
    n = len(s)
    if _is_connector(ch):
        while i < n and _is_connector(s[i]):
            i += 1
        return _CONNECTOR, s[:i], s[i:]
    if _is_punct(ch):
        while i < n and _is_punct(s[i]):
            i += 1
        return _PUNCT, s[:i], s[i:]
    if _is_upper(ch):
        if i < n:
            if _is_upper(s[i]):
                j = i
                while j < n and _is_upper(s[j]):
                    j += 1
                # "HTTPServer": the last capital starts the next word.
                i = j - 1 if j < n and _is_alphabet(s[j]) else j
            elif _is_alphabet(s[i]):
                while i < n and _is_alphabet(s[i]) and not _is_upper(s[i]):
                    i += 1
        return _UPPER, s[:i], s[i:]
    if _is_alphabet(ch):
        while i < n and _is_alphabet(s[i]) and not _is_upper(s[i]):
            i += 1
        return _ALPHA, s[:i], s[i:]
    if _is_number(ch):
        while i < n and _is_number(s[i]):
            i += 1
        return _NUMBER, s[:i], s[i:]
    while i < n and not (
        _is_connector(s[i]) or _is_alphabet(s[i]) or _is_number(s[i]) or _is_punct(s[i])
    ):
        i += 1
    return _OTHER, s[:i], s[i:]


def _lower_word(out: list[str], wt: int, word: str, connector: str) -> None:
    if wt not in (_UPPER, _CONNECTOR):
        out.append(word)
        return
    for ch in word:
        if _is_connector(ch):
            out.append(connector)
        elif _is_upper(ch):
            out.append(ch.lower())
        else:
            out.append(ch)


def _to_lower_case(s: str, connector: str) -> str:
    if not s:
        return ""
    out: list[str] = []
    wt, word, rest = _next_word(s)
    while rest:
        if wt != _CONNECTOR:
            _lower_word(out, wt, word, connector)
        prev, last = wt, word
        wt, word, rest = _next_word(rest)
        if prev == _NUMBER:
            while wt in (_ALPHA, _NUMBER):
                _lower_word(out, wt, word, connector)
                if not rest:
                    wt, word = 0, ""
                    break
                wt, word, rest = _next_word(rest)
            if wt not in (0, _PUNCT, _CONNECTOR):
                out.append(connector)
        elif prev == _CONNECTOR:
            _lower_word(out, prev, last, connector)
        elif prev == _PUNCT:
            pass
        else:
            if wt != _NUMBER:
                if wt not in (_CONNECTOR, _PUNCT):
                    out.append(connector)
                continue
            if not rest:
                continue
            last = word
            wt, word, rest = _next_word(rest)
            if wt != _ALPHA:
                _lower_word(out, _NUMBER, last, connector)
                if wt not in (_CONNECTOR, _PUNCT):
                    out.append(connector)
                continue
            out.append(connector)
            _lower_word(out, _NUMBER, last, connector)
            while wt in (_ALPHA, _NUMBER):
                _lower_word(out, wt, word, connector)
                if not rest:
                    wt, word = 0, ""
                    break
                wt, word, rest = _next_word(rest)
            if wt not in (0, _CONNECTOR, _PUNCT):
                out.append(connector)
    _lower_word(out, wt, word, connector)
    return "".join(out)


def _sprig_snakecase(s: str) -> str:
    return _to_lower_case(s, "_")


def _sprig_kebabcase(s: str) -> str:
    return _to_lower_case(s, "-")


def _go_upper(ch: str) -> str:
    up = ch.upper()
    return up if len(up) == 1 else ch


def _go_lower(ch: str) -> str:
    low = ch.lower()
    return low if len(low) == 1 else ch


def _sprig_camelcase(s: str) -> str:
    """xstrings.ToPascalCase."""
    if not s:
        return ""
    out: list[str] = []
    i = 0
    first_upper = False
    r0 = ""
    while i < len(s):
        r0 = s[i]
        i += 1
        if not _is_connector(r0):
            first_upper = _is_upper(r0)
            r0 = _go_upper(r0)
            break
        out.append(r0)
    else:
        return "".join(out)
    if i >= len(s):
        out.append(r0)
        return "".join(out)
    while i < len(s):
        r1 = r0
        r0 = s[i]
        i += 1
        if _is_connector(r0) and _is_connector(r1):
            out.append(r1)
            continue
        if _is_connector(r1):
            first_upper = _is_upper(r0)
            r0 = _go_upper(r0)
        else:
            if first_upper:
                if _is_upper(r0):
                    r0 = _go_lower(r0)
                else:
                    first_upper = False
            out.append(r1)
    out.append(r0)
    return "".join(out)


def _sprig_quote(*args: Any) -> str:
    return " ".join(go_quote(strval(a)) for a in args if a is not None)


def _sprig_squote(*args: Any) -> str:
    return " ".join("'" + sprint(a) + "'" for a in args if a is not None)


def _sprig_cat(*args: Any) -> str:
    return " ".join(sprint(a) for a in args if a is not None)


def _sprig_indent(spaces: int, v: str) -> str:
    if spaces > 1 << 20:
        raise GoCallError(f"indent of {spaces} spaces exceeds the evaluator's limit")
    pad = " " * max(spaces, 0)
    if spaces < 0:
        raise GoCallError("strings: negative Repeat count")
    return pad + v.replace("\n", "\n" + pad)


def _sprig_b64dec(v: str) -> str:
    try:
        data = base64.b64decode(v.encode("utf-8", "surrogatepass"), validate=True)
    except (binascii.Error, ValueError):
        return _b64_error(v)
    return data.decode("utf-8", "replace")


def _b64_error(v: str) -> str:
    data = v.encode("utf-8", "surrogatepass")
    alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
    for i, c in enumerate(data):
        if c not in alphabet and c != ord("="):
            return f"illegal base64 data at input byte {i}"
    stripped = data.rstrip(b"=")
    pad = len(data) - len(stripped)
    if len(data) % 4 or pad > 2 or b"=" in stripped:
        idx = len(stripped) if b"=" not in stripped else stripped.index(b"=")
        if len(data) % 4 and pad == 0:
            idx = len(data) - len(data) % 4
            return f"illegal base64 data at input byte {idx}"
        return f"illegal base64 data at input byte {idx}"
    return f"illegal base64 data at input byte {len(stripped)}"


def _sprig_b32dec(v: str) -> str:
    try:
        data = base64.b32decode(v.encode("utf-8", "surrogatepass"))
    except (binascii.Error, ValueError):
        return "illegal base32 data at input byte 0"
    return data.decode("utf-8", "replace")


def _sprig_to_decimal(v: Any) -> GoInt64:
    text = sprint(v)
    try:
        if (text.startswith(("+", "-")) and text[1:].isdigit()) or text.isdigit():
            value = int(text, 8)
            if _INT64_MIN <= value <= _INT64_MAX:
                return GoInt64(value)
    except ValueError:
        pass
    return GoInt64(0)


def _decimal(value: float) -> Decimal:
    # shopspring/decimal.NewFromFloat keeps the shortest decimal that round-trips.
    return Decimal(repr(value)) if math.isfinite(value) else Decimal(0)


def _decimal_op(first: Any, rest: tuple[Any, ...], op: str) -> float:
    acc = _decimal(to_float64(first))
    for item in rest:
        d = _decimal(to_float64(item))
        if op == "+":
            acc += d
        elif op == "-":
            acc -= d
        elif op == "*":
            acc *= d
        else:
            if d == 0:
                raise GoCallError("decimal division by 0")
            try:
                acc = _div16(acc, d)
            except InvalidOperation as exc:
                raise GoCallError(str(exc)) from None
    return float(acc)


def _div16(a: Decimal, b: Decimal) -> Decimal:
    from decimal import ROUND_HALF_UP, localcontext

    with localcontext() as ctx:
        ctx.prec = 60
        q = a / b
        return q.quantize(Decimal(1).scaleb(-16), rounding=ROUND_HALF_UP)


def _sprig_round(a: Any, p: int, *r_opt: float) -> float:
    round_on = r_opt[0] if r_opt else 0.5
    val = to_float64(a)
    pow_ = math.pow(10, float(p))
    digit = pow_ * val
    frac = math.modf(digit)[0]
    result = math.ceil(digit) if frac >= round_on else math.floor(digit)
    return result / pow_


def _sprig_div(a: Any, b: Any) -> GoInt64:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise GoCallError("runtime error: integer divide by zero")
    q = abs(x) // abs(y)
    return GoInt64(_wrap64(q if (x >= 0) == (y >= 0) else -q))


def _sprig_mod(a: Any, b: Any) -> GoInt64:
    x, y = to_int64(a), to_int64(b)
    if y == 0:
        raise GoCallError("runtime error: integer divide by zero")
    r = abs(x) % abs(y)
    return GoInt64(r if x >= 0 else -r)


def _sprig_to_json(v: Any, *, must: bool = False, pretty: bool = False, raw: bool = False) -> str:
    try:
        return go_json(v, indent="  " if pretty else None, escape_html=not raw)
    except GoJSONError as exc:
        if must or raw:
            raise GoCallError(str(exc)) from None
        return ""


def _sprig_from_json(v: str, *, must: bool = False) -> Any:
    try:
        return go_json_decode(v)
    except GoJSONError as exc:
        if must:
            raise GoCallError(str(exc)) from None
        return None


def _path_clean(p: str) -> str:
    if p == "":
        return "."
    rooted = p.startswith("/")
    parts: list[str] = []
    for part in p.split("/"):
        if part in ("", "."):
            continue
        if part == "..":
            if parts and parts[-1] != "..":
                parts.pop()
            elif not rooted:
                parts.append("..")
            continue
        parts.append(part)
    out = "/".join(parts)
    if rooted:
        return "/" + out
    return out or "."


def _path_base(p: str) -> str:
    if p == "":
        return "."
    p = p.rstrip("/")
    if p == "":
        return "/"
    return p.rsplit("/", 1)[-1]


def _path_dir(p: str) -> str:
    i = p.rfind("/")
    return _path_clean(p[: i + 1])


def _path_ext(p: str) -> str:
    for i in range(len(p) - 1, -1, -1):
        if p[i] == "/":
            break
        if p[i] == ".":
            return p[i:]
    return ""


def _sprig_get(d: dict[str, Any], key: str) -> Any:
    return d.get(key, "")


def _sprig_keys(*dicts: dict[str, Any]) -> GoStrings:
    out = GoStrings()
    for d in dicts:
        out.extend(sorted(d))
    return out


def _sprig_values(d: dict[str, Any]) -> list[Any]:
    return [d[k] for k in sorted(d)]


def _sprig_pick(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: d[k] for k in keys if k in d}


def _sprig_omit(d: dict[str, Any], *keys: str) -> dict[str, Any]:
    return {k: v for k, v in d.items() if k not in keys}


def _sprig_pluck(key: str, *dicts: dict[str, Any]) -> list[Any]:
    return [d[key] for d in dicts if key in d]


def _sprig_ternary(vt: Any, vf: Any, v: bool) -> Any:
    return vt if v else vf


def _sprig_default(d: Any, *given: Any) -> Any:
    if not given or empty(given[0]):
        return d
    return given[0]


def _sprig_coalesce(*values: Any) -> Any:
    for v in values:
        if not empty(v):
            return v
    return None


def _sprig_split(sep: str, orig: str) -> GoStringMap:
    return GoStringMap({f"_{i}": p for i, p in enumerate(_go_split(orig, sep, -1))})


def _sprig_splitn(sep: str, n: int, orig: str) -> GoStringMap:
    return GoStringMap({f"_{i}": p for i, p in enumerate(_go_split(orig, sep, n))})


def _go_split(s: str, sep: str, n: int) -> list[str]:
    if n == 0:
        return []
    if sep == "":
        chars = list(s)
        if n > 0 and len(chars) > n:
            chars = [*chars[: n - 1], "".join(chars[n - 1 :])]
        return chars
    if n < 0:
        return s.split(sep)
    return s.split(sep, n - 1)


def _sprig_semver(version: str) -> GoVersion:
    from bubu._templating import _semver

    return _semver.parse(version)


def _sprig_semver_compare(constraint: str, version: str) -> bool:
    from bubu._templating import _semver

    return _semver.compare(constraint, version)


def _adler32(s: str) -> str:
    return str(zlib.adler32(s.encode("utf-8", "surrogatepass")) & 0xFFFFFFFF)


def _fail(msg: str) -> str:
    raise GoCallError(msg)


def _sprig(deterministic: bool) -> dict[str, GoFunc]:
    S = "string"
    f = GoFunc
    from bubu._templating import _dates

    funcs: dict[str, GoFunc] = {
        # strings
        "abbrev": f(_sprig_abbrev, ("int", S)),
        "abbrevboth": f(_sprig_abbrevboth, ("int", "int", S)),
        "trunc": f(_sprig_trunc, ("int", S)),
        "trim": f(_go_trim_space, (S,)),
        "upper": f(lambda s: s.upper(), (S,)),
        "lower": f(lambda s: s.lower(), (S,)),
        "title": f(_go_title, (S,)),
        "untitle": f(_sprig_untitle, (S,)),
        "substr": f(_sprig_substr, ("int", "int", S)),
        "trimall": f(lambda a, b: b.strip(a) if a else b, (S, S)),
        "trimAll": f(lambda a, b: b.strip(a) if a else b, (S, S)),
        "trimSuffix": f(lambda a, b: b.removesuffix(a), (S, S)),
        "trimPrefix": f(lambda a, b: b.removeprefix(a), (S, S)),
        "nospace": f(_sprig_nospace, (S,)),
        "initials": f(_sprig_initials, (S,)),
        "snakecase": f(_sprig_snakecase, (S,)),
        "camelcase": f(_sprig_camelcase, (S,)),
        "kebabcase": f(_sprig_kebabcase, (S,)),
        "wrap": f(lambda n, s: _sprig_wrap_custom(s, n, "", False), ("int", S)),
        "wrapWith": f(lambda n, sep, s: _sprig_wrap_custom(s, n, sep, True), ("int", S, S)),
        "contains": f(lambda sub, s: sub in s, (S, S)),
        "hasPrefix": f(lambda p, s: s.startswith(p), (S, S)),
        "hasSuffix": f(lambda p, s: s.endswith(p), (S, S)),
        "quote": f(_sprig_quote, (), ANY),
        "squote": f(_sprig_squote, (), ANY),
        "cat": f(_sprig_cat, (), ANY),
        "indent": f(_sprig_indent, ("int", S)),
        "nindent": f(lambda n, v: "\n" + _sprig_indent(n, v), ("int", S)),
        "replace": f(lambda old, new, src: _go_replace(src, old, new), (S, S, S)),
        "plural": f(lambda one, many, n: one if n == 1 else many, (S, S, "int")),
        "sha1sum": f(lambda s: hashlib.sha1(s.encode("utf-8", "surrogatepass")).hexdigest(), (S,)),
        "sha256sum": f(
            lambda s: hashlib.sha256(s.encode("utf-8", "surrogatepass")).hexdigest(), (S,)
        ),
        "adler32sum": f(_adler32, (S,)),
        "toString": f(strval, (ANY,)),
        # numbers
        "atoi": f(lambda s: GoInt(_atoi(s)), (S,)),
        "int64": f(lambda v: GoInt64(to_int64(v)), (ANY,)),
        "int": f(lambda v: GoInt(to_int64(v)), (ANY,)),
        "float64": f(to_float64, (ANY,)),
        "toDecimal": f(_sprig_to_decimal, (ANY,)),
        "add1": f(lambda v: GoInt64(_wrap64(to_int64(v) + 1)), (ANY,)),
        "add": f(lambda *v: GoInt64(_wrap64(sum(to_int64(x) for x in v))), (), ANY),
        "sub": f(lambda a, b: GoInt64(_wrap64(to_int64(a) - to_int64(b))), (ANY, ANY)),
        "div": f(_sprig_div, (ANY, ANY)),
        "mod": f(_sprig_mod, (ANY, ANY)),
        "mul": f(lambda a, *v: GoInt64(_mul(a, v)), (ANY,), ANY),
        "add1f": f(lambda v: _decimal_op(v, (1,), "+"), (ANY,)),
        "addf": f(lambda *v: _decimal_op(0.0, v, "+"), (), ANY),
        "subf": f(lambda a, *v: _decimal_op(a, v, "-"), (ANY,), ANY),
        "divf": f(lambda a, *v: _decimal_op(a, v, "/"), (ANY,), ANY),
        "mulf": f(lambda a, *v: _decimal_op(a, v, "*"), (ANY,), ANY),
        "biggest": f(
            lambda a, *v: GoInt64(max([to_int64(a), *(to_int64(x) for x in v)])), (ANY,), ANY
        ),
        "max": f(lambda a, *v: GoInt64(max([to_int64(a), *(to_int64(x) for x in v)])), (ANY,), ANY),
        "min": f(lambda a, *v: GoInt64(min([to_int64(a), *(to_int64(x) for x in v)])), (ANY,), ANY),
        "maxf": f(lambda a, *v: _fold_float(a, v, max), (ANY,), ANY),
        "minf": f(lambda a, *v: _fold_float(a, v, min), (ANY,), ANY),
        "ceil": f(
            lambda a: (
                float(math.ceil(to_float64(a))) if math.isfinite(to_float64(a)) else to_float64(a)
            ),
            (ANY,),
        ),
        "floor": f(
            lambda a: (
                float(math.floor(to_float64(a))) if math.isfinite(to_float64(a)) else to_float64(a)
            ),
            (ANY,),
        ),
        "round": f(_sprig_round, (ANY, "int"), "float64"),
        # string lists
        "split": f(_sprig_split, (S, S)),
        "splitList": f(lambda sep, s: GoStrings(_go_split(s, sep, -1)), (S, S)),
        "splitn": f(_sprig_splitn, (S, "int", S)),
        "toStrings": f(strslice, (ANY,)),
        "join": f(lambda sep, v: sep.join(strslice(v)), (S, ANY)),
        "sortAlpha": f(_sprig_sort_alpha, (ANY,)),
        # defaults
        "default": f(_sprig_default, (ANY,), ANY),
        "empty": f(empty, (ANY,)),
        "coalesce": f(_sprig_coalesce, (), ANY),
        "all": f(lambda *v: all(not empty(x) for x in v), (), ANY),
        "any": f(lambda *v: any(not empty(x) for x in v), (), ANY),
        "compact": f(_sprig_compact, (ANY,)),
        "mustCompact": f(_sprig_compact, (ANY,)),
        "fromJson": f(_sprig_from_json, (S,)),
        "mustFromJson": f(lambda s: _sprig_from_json(s, must=True), (S,)),
        "toJson": f(_sprig_to_json, (ANY,)),
        "mustToJson": f(lambda v: _sprig_to_json(v, must=True), (ANY,)),
        "toPrettyJson": f(lambda v: _sprig_to_json(v, pretty=True), (ANY,)),
        "mustToPrettyJson": f(lambda v: _sprig_to_json(v, must=True, pretty=True), (ANY,)),
        "toRawJson": f(lambda v: _sprig_to_json(v, raw=True), (ANY,)),
        "mustToRawJson": f(lambda v: _sprig_to_json(v, must=True, raw=True), (ANY,)),
        "ternary": f(_sprig_ternary, (ANY, ANY, "bool")),
        # reflection
        "typeOf": f(lambda v: go_type(v) if v is not None else "<nil>", (ANY,)),
        "typeIs": f(lambda t, v: t == (go_type(v) if v is not None else "<nil>"), (S, ANY)),
        "typeIsLike": f(
            lambda t, v: go_type(v) in (t, "*" + t) if v is not None else t == "<nil>", (S, ANY)
        ),
        "kindOf": f(go_kind, (ANY,)),
        "kindIs": f(lambda t, v: t == go_kind(v), (S, ANY)),
        "deepEqual": f(deep_equal, (ANY, ANY)),
        # paths
        "base": f(_path_base, (S,)),
        "dir": f(_path_dir, (S,)),
        "clean": f(_path_clean, (S,)),
        "ext": f(_path_ext, (S,)),
        "isAbs": f(lambda p: p.startswith("/"), (S,)),
        "osBase": f(_path_base, (S,)),
        "osClean": f(_path_clean, (S,)),
        "osDir": f(_path_dir, (S,)),
        "osExt": f(_path_ext, (S,)),
        "osIsAbs": f(lambda p: p.startswith("/"), (S,)),
        # encodings
        "b64enc": f(lambda s: base64.b64encode(s.encode("utf-8", "surrogatepass")).decode(), (S,)),
        "b64dec": f(_sprig_b64dec, (S,)),
        "b32enc": f(lambda s: base64.b32encode(s.encode("utf-8", "surrogatepass")).decode(), (S,)),
        "b32dec": f(_sprig_b32dec, (S,)),
        # data structures
        "tuple": f(lambda *v: list(v), (), ANY),
        "list": f(lambda *v: list(v), (), ANY),
        "dict": f(_sprig_dict, (), ANY),
        "get": f(_sprig_get, (MAP, S)),
        "hasKey": f(lambda d, k: k in d, (MAP, S)),
        "pluck": f(_sprig_pluck, (S,), MAP),
        "keys": f(_sprig_keys, (), MAP),
        "pick": f(_sprig_pick, (MAP,), S),
        "omit": f(_sprig_omit, (MAP,), S),
        "values": f(_sprig_values, (MAP,)),
        "append": f(_sprig_push, (ANY, ANY)),
        "push": f(_sprig_push, (ANY, ANY)),
        "mustAppend": f(_sprig_push, (ANY, ANY)),
        "mustPush": f(_sprig_push, (ANY, ANY)),
        "prepend": f(_sprig_prepend, (ANY, ANY)),
        "mustPrepend": f(_sprig_prepend, (ANY, ANY)),
        "first": f(_sprig_first, (ANY,)),
        "mustFirst": f(_sprig_first, (ANY,)),
        "rest": f(_sprig_rest, (ANY,)),
        "mustRest": f(_sprig_rest, (ANY,)),
        "last": f(_sprig_last, (ANY,)),
        "mustLast": f(_sprig_last, (ANY,)),
        "initial": f(_sprig_initial, (ANY,)),
        "mustInitial": f(_sprig_initial, (ANY,)),
        "reverse": f(_sprig_reverse, (ANY,)),
        "mustReverse": f(_sprig_reverse, (ANY,)),
        "uniq": f(_sprig_uniq, (ANY,)),
        "mustUniq": f(_sprig_uniq, (ANY,)),
        "without": f(_sprig_without, (ANY,), ANY),
        "mustWithout": f(_sprig_without, (ANY,), ANY),
        "has": f(_sprig_has, (ANY, ANY)),
        "mustHas": f(_sprig_has, (ANY, ANY)),
        "slice": f(_sprig_slice, (ANY,), ANY),
        "mustSlice": f(_sprig_slice, (ANY,), ANY),
        "concat": f(_sprig_concat, (), ANY),
        "dig": f(_sprig_dig, (), ANY),
        "semver": f(_sprig_semver, (S,)),
        "semverCompare": f(_sprig_semver_compare, (S, S)),
        "fail": f(_fail, (S,)),
    }
    funcs.update(_dates.sprig_dates(deterministic))
    return funcs


def _atoi(s: str) -> int:
    body = s[1:] if s[:1] in "+-" else s
    if not body or not body.isascii() or not body.isdigit():
        return 0
    value = int(s)
    return value if _INT64_MIN <= value <= _INT64_MAX else 0


def _mul(a: Any, rest: tuple[Any, ...]) -> int:
    acc = to_int64(a)
    for item in rest:
        acc = _wrap64(acc * to_int64(item))
    return acc


def _fold_float(a: Any, rest: tuple[Any, ...], op: Callable[[float, float], float]) -> float:
    acc = to_float64(a)
    for item in rest:
        b = to_float64(item)
        acc = math.nan if math.isnan(acc) or math.isnan(b) else op(acc, b)
    return acc


def _go_replace(src: str, old: str, new: str) -> str:
    if old == "":
        # strings.Replace with an empty old inserts ``new`` around every rune.
        return new + new.join(src) + new if src else new
    return src.replace(old, new)


def build_funcs(*, deterministic: bool) -> dict[str, GoFunc]:
    """Every function a template may call: builtins, the Sprig whitelist, core's helpers.

    ``deterministic`` drops ``now`` and the random helpers (trigger keys,
    docs/templates.md#templates).
    """
    funcs = _builtins()
    funcs.update(_sprig(deterministic))
    funcs["len"] = GoFunc(core_len, (ANY,))
    funcs["hash_of"] = GoFunc(core_hash_of, (ANY,))
    funcs["type_of"] = GoFunc(core_type_of, (ANY,))
    funcs["exists"] = GoFunc(lambda v: v is not None, (ANY,))
    funcs["sample"] = GoFunc(core_sample, (ANY,))
    return funcs
