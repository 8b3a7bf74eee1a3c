"""Go ``encoding/json`` output for plain JSON data, at msgspec speed.

See docs/contract/identity.md#go-json.

``marshal`` returns the bytes Go's ``json.Marshal`` writes for a ``map[string]any`` tree: keys
sorted, no whitespace, ``< > &`` and U+2028/U+2029 escaped, floats in Go's shortest form
(``1``, ``1e+21``, ``1e-7``), NaN and infinities refused. The storage offload decisions compare
these lengths against ``BUBU_MAX_INLINE_SIZE`` and 256 KiB, and offloaded objects are written
with these bytes, so both must match Go.

How: msgspec encodes (sorted keys); a walk first swaps every float for its Go text (as
``msgspec.Raw``) and refuses cycles, and a byte pass then adds Go's HTML escapes, which can only
occur inside strings. A tree without floats is not copied. Integers are written exactly, where
Go's decoded ``float64`` would round those above 2**53 (docs/differences.md).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator, Mapping
from decimal import Decimal
from typing import Any, Final

import msgspec

__all__ = [
    "encode_string_chunks",
    "escape_html",
    "go_float",
    "go_json_string",
    "marshal",
    "prepare",
    "utf8_len",
]

_ENCODER: Final = msgspec.json.Encoder(order="sorted")
_HTML: Final = (
    (b"<", b"\\u003c"),
    (b">", b"\\u003e"),
    (b"&", b"\\u0026"),
    ("\u2028".encode(), b"\\u2028"),
    ("\u2029".encode(), b"\\u2029"),
)


def go_float(value: float) -> str:
    """Format a float64 as Go's ``encoding/json`` does.

    Raises:
        ValueError: for NaN and infinities (Go: ``json: unsupported value``).
    """
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"json: unsupported value: {value!r}")
    magnitude = abs(value)
    text = repr(value)
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        mantissa, _, exp = text.partition("e")
        if not exp:
            mantissa, _, exp = f"{value:e}".partition("e")
            mantissa = repr(float(mantissa))
        mantissa = mantissa.removesuffix(".0")
        sign = "-" if exp.startswith("-") else "+"
        digits = exp.lstrip("+-").lstrip("0") or "0"
        if sign == "+" and len(digits) < 2:
            digits = digits.rjust(2, "0")
        return f"{mantissa}e{sign}{digits}"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    return format(Decimal(text).normalize(), "f")


def _fix_surrogates(text: str) -> str:
    # A lone surrogate is invalid UTF-8; Go writes U+FFFD for it.
    return "".join("\ufffd" if 0xD800 <= ord(ch) <= 0xDFFF else ch for ch in text)


class _Prep:
    __slots__ = ("ancestors", "fix_strings")

    def __init__(self, fix_strings: bool) -> None:
        self.ancestors: set[int] = set()
        self.fix_strings = fix_strings

    def walk(self, value: Any, path: str) -> tuple[Any, bool]:
        kind = type(value)
        if kind is str:
            if self.fix_strings:
                fixed = _fix_surrogates(value)
                return fixed, fixed != value
            return value, False
        if value is None or kind is bool or kind is int:
            return value, False
        if kind is float:
            try:
                return msgspec.Raw(go_float(value).encode()), True
            except ValueError as exc:
                raise ValueError(f"{exc} at {path}") from None
        if kind is dict:
            return self._mapping(value, path)
        if kind is list or kind is tuple:
            return self._sequence(value, path)
        # Subclasses and other types (Structs, dataclasses, enums...) take msgspec's plain form.
        if isinstance(value, bool):
            return bool(value), True
        if isinstance(value, int):
            return int(value), True
        if isinstance(value, float):
            return self.walk(float(value), path)
        if isinstance(value, str):
            return self.walk(str(value), path)[0], True
        if isinstance(value, Mapping):
            return self._mapping(dict(value), path)[0], True
        if isinstance(value, list | tuple):
            return self._sequence(list(value), path)[0], True
        if isinstance(value, msgspec.Struct) or dataclasses.is_dataclass(value):
            return self.walk(msgspec.to_builtins(value), path)[0], True
        if isinstance(value, msgspec.Raw):
            return value, False
        try:
            plain = msgspec.to_builtins(value)
        except TypeError:
            raise ValueError(f"json: unsupported type {type(value).__name__} at {path}") from None
        return self.walk(plain, path)[0], True

    def _enter(self, value: Any, path: str) -> int:
        ident = id(value)
        if ident in self.ancestors:
            raise ValueError(f"json: unsupported value: encountered a cycle at {path}")
        self.ancestors.add(ident)
        return ident

    def _mapping(self, value: dict[Any, Any], path: str) -> tuple[Any, bool]:
        ident = self._enter(value, path)
        out: dict[str, Any] | None = None
        try:
            for key, item in value.items():
                if type(key) is not str:
                    raise ValueError(
                        f"json: unsupported map key {key!r} at {path} (keys must be strings)"
                    )
                new, changed = self.walk(item, f"{path}.{key}")
                if changed:
                    if out is None:
                        out = dict(value)
                    out[key] = new
        finally:
            self.ancestors.discard(ident)
        return (out, True) if out is not None else (value, False)

    def _sequence(self, value: list[Any] | tuple[Any, ...], path: str) -> tuple[Any, bool]:
        ident = self._enter(value, path)
        out: list[Any] | None = None
        try:
            for i, item in enumerate(value):
                new, changed = self.walk(item, f"{path}[{i}]")
                if changed:
                    if out is None:
                        out = list(value)
                    out[i] = new
        finally:
            self.ancestors.discard(ident)
        return (out, True) if out is not None else (value, False)


def prepare(value: Any, *, fix_strings: bool = False) -> Any:
    """Return ``value`` ready for msgspec: floats as Go text, other types as plain data.

    The same object comes back when nothing needed changing.

    Raises:
        ValueError: NaN or infinity, a non-string key, a cycle, or an unsupported type; the
            message names the JSON path (``$.items[3].score``).
    """
    try:
        return _Prep(fix_strings).walk(value, "$")[0]
    except RecursionError:
        raise ValueError("json: value is nested too deeply to encode") from None


def escape_html(data: bytes, *, html: bool = True) -> bytes:
    """Add Go's escapes to msgspec output (they can only be inside strings).

    ``html=False`` is Go's ``SetEscapeHTML(false)``: ``< > &`` stay as they are, U+2028 and
    U+2029 are still escaped (Go always escapes those two).
    """
    for raw, esc in _HTML if html else _HTML[3:]:
        if raw in data:
            data = data.replace(raw, esc)
    return data


def _encode_prepared(prepared: Any, html: bool) -> bytes:
    return escape_html(_ENCODER.encode(prepared), html=html)


def marshal(value: Any, *, prepared: bool = False, html: bool = True) -> bytes:
    """Return Go's ``json.Marshal`` bytes for ``value``.

    Args:
        value: plain JSON data (msgspec Structs and dataclasses are converted first).
        prepared: ``value`` already went through ``prepare`` (skip the walk).
        html: escape ``< > &`` (Go's default); False is an encoder with
            ``SetEscapeHTML(false)`` (Sprig's ``toRawJson``).

    Raises:
        ValueError: as ``prepare``.
    """
    data = value if prepared else prepare(value)
    try:
        return _encode_prepared(data, html)
    except UnicodeEncodeError:
        return _encode_prepared(prepare(value, fix_strings=True), html)
    except RecursionError:
        raise ValueError("json: value is nested too deeply to encode") from None


def go_json_string(text: str, *, html: bool = True) -> str:
    """One string as Go's ``encoding/json`` writes it (quotes included; HTML-safe escapes,
    raw UTF-8, a lone surrogate as U+FFFD)."""
    try:
        encoded = _ENCODER.encode(text)
    except UnicodeEncodeError:
        encoded = _ENCODER.encode(_fix_surrogates(text))
    return escape_html(encoded, html=html).decode("utf-8")


def utf8_len(text: str) -> int:
    """Go ``len(s)``: the UTF-8 byte length, without copying an ASCII string."""
    if text.isascii():
        return len(text)
    step = 1 << 20
    return sum(
        len(text[i : i + step].encode("utf-8", "surrogatepass")) for i in range(0, len(text), step)
    )


def encode_string_chunks(text: str, chunk_chars: int = 1 << 20) -> Iterator[bytes]:
    """Yield Go's JSON encoding of ``text`` (quotes included) in pieces of about ``chunk_chars``.

    Lets a large string be written to storage without holding its whole encoding in memory.
    """
    yield b'"'
    for i in range(0, len(text), chunk_chars):
        piece = text[i : i + chunk_chars]
        try:
            encoded = _ENCODER.encode(piece)
        except UnicodeEncodeError:
            encoded = _ENCODER.encode(_fix_surrogates(piece))
        yield escape_html(encoded[1:-1])
    yield b'"'
