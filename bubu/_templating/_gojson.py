"""Go ``encoding/json`` for template values (``toJson`` and friends, non-string key results).

The encoding itself is the SDK's one Go encoder (``bubu._runtime.gojson``: sorted keys, Go's
float text, ``< > &`` escaped unless ``escape_html=False`` as ``toRawJson``). This module only
maps the template's Go values onto it: integers made by the template print as integers, data
numbers as float64 (``1e+21`` style above 1e21), ``time.Time`` as RFC 3339 with nanoseconds,
a nil slice and "no value" as ``null``.
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from bubu._runtime import gojson
from bubu._templating._values import NOVALUE, GoNilSlice, GoTime, GoVersion, is_int

__all__ = ["GoJSONError", "go_json", "go_json_decode"]


class GoJSONError(ValueError):
    """A value Go's encoder refuses (NaN, Inf) or text its decoder refuses."""


def _plain(value: Any) -> Any:
    """The template value as data the Go encoder takes (numbers already in Go's text)."""
    if value is None or value is NOVALUE:
        return None
    if value is True or value is False or type(value) is str:
        return value
    if isinstance(value, str):
        return str(value)
    if is_int(value):
        return int(value)
    if type(value) is GoNilSlice and not value:
        return None
    if isinstance(value, int | float):
        try:
            f = float(value)
        except OverflowError:
            raise GoJSONError("json: unsupported value: +Inf") from None
        if math.isnan(f) or math.isinf(f):
            raise GoJSONError(f"json: unsupported value: {_go_special(f)}")
        return msgspec.Raw(gojson.go_float(f).encode())
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, GoTime):
        from bubu._templating._dates import format_layout

        return format_layout(value, "2006-01-02T15:04:05.999999999Z07:00")
    if isinstance(value, GoVersion):
        return str(value)
    raise GoJSONError(f"json: unsupported type: {type(value).__name__}")


def _go_special(f: float) -> str:
    if math.isnan(f):
        return "NaN"
    return "+Inf" if f > 0 else "-Inf"


def go_json(value: Any, *, indent: str | None = None, escape_html: bool = True) -> str:
    """``json.Marshal`` (``MarshalIndent`` with ``indent``; ``SetEscapeHTML(false)`` without
    ``escape_html``).

    Raises:
        GoJSONError: NaN or infinity, or a value with no JSON form.
    """
    try:
        plain = _plain(value)
        data = gojson.marshal(plain, prepared=True, html=escape_html)
    except RecursionError:
        raise GoJSONError("json: value is nested too deeply to encode") from None
    except ValueError as exc:
        raise GoJSONError(str(exc)) from None
    if indent is not None:
        data = msgspec.json.format(data, indent=len(indent))
    return data.decode("utf-8")


def go_json_decode(text: str) -> Any:
    """``json.Unmarshal`` into ``interface{}`` (numbers are float64, as in Go).

    Raises:
        GoJSONError: Go's decoder would refuse the text.
    """
    stripped = text.strip(" \t\r\n")
    if not stripped:
        raise GoJSONError("unexpected end of JSON input")
    try:
        value = msgspec.json.decode(stripped.encode("utf-8", "surrogatepass"))
    except msgspec.DecodeError as exc:
        raise GoJSONError(_go_decode_error(stripped, exc)) from None
    return _floats(value)


def _go_decode_error(text: str, exc: Exception) -> str:
    # Go's two most common decoder messages; anything subtler keeps msgspec's description.
    first = text[0]
    if first not in '{["-0123456789tfn':
        return f"invalid character {_go_char(first)} looking for beginning of value"
    if "truncated" in str(exc):
        return "unexpected end of JSON input"
    return f"invalid JSON: {exc}"


def _go_char(ch: str) -> str:
    if ch == "'":
        return "'\\''"
    if ch == '"':
        return "'\"'"
    return f"'{ch}'" if ch.isprintable() else f"'\\x{ord(ch):02x}'"


def _floats(value: Any) -> Any:
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, int):
        return float(value)
    if isinstance(value, dict):
        return {k: _floats(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_floats(v) for v in value]
    return value
