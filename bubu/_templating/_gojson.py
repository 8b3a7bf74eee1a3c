"""Go ``encoding/json`` for template values (``toJson`` and friends, non-string key results).

Keys sort, ``< > &`` escape unless ``escape_html=False`` (``toRawJson``), integers made by the
template print as integers and data numbers as float64 (``1e+21`` style above 1e21).
"""

from __future__ import annotations

import math
from typing import Any

import msgspec

from bubu._k8s.identity import go_float, go_json_string
from bubu._templating._values import NOVALUE, GoNilSlice, GoTime, GoVersion, is_int

__all__ = ["GoJSONError", "go_json", "go_json_decode"]


class GoJSONError(ValueError):
    """A value Go's encoder refuses (NaN, Inf) or text its decoder refuses."""


def _string(s: str, escape_html: bool) -> str:
    text = go_json_string(s)
    if not escape_html:
        text = text.replace("\\u003c", "<").replace("\\u003e", ">").replace("\\u0026", "&")
    return text


def _encode(value: Any, out: list[str], escape_html: bool, indent: str | None, level: int) -> None:
    if value is None or value is NOVALUE:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(_string(value, escape_html))
    elif is_int(value):
        out.append(str(int(value)))
    elif type(value) is GoNilSlice and not value:
        out.append("null")
    elif isinstance(value, int | float):
        f = float(value)
        if math.isnan(f) or math.isinf(f):
            raise GoJSONError(f"json: unsupported value: {_go_special(f)}")
        out.append(go_float(f))
    elif isinstance(value, dict):
        if not value:
            out.append("{}")
            return
        out.append("{")
        for i, key in enumerate(sorted(value)):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (level + 1))
            out.append(_string(str(key), escape_html))
            out.append(": " if indent is not None else ":")
            _encode(value[key], out, escape_html, indent, level + 1)
        if indent is not None:
            out.append("\n" + indent * level)
        out.append("}")
    elif isinstance(value, list | tuple):
        if not value:
            out.append("[]")
            return
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            if indent is not None:
                out.append("\n" + indent * (level + 1))
            _encode(item, out, escape_html, indent, level + 1)
        if indent is not None:
            out.append("\n" + indent * level)
        out.append("]")
    elif isinstance(value, GoTime):
        from bubu._templating._dates import format_layout

        out.append('"' + format_layout(value, "2006-01-02T15:04:05.999999999Z07:00") + '"')
    elif isinstance(value, GoVersion):
        out.append(_string(str(value), escape_html))
    else:
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
    out: list[str] = []
    _encode(value, out, escape_html, indent, 0)
    return "".join(out)


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
