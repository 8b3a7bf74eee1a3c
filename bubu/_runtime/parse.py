"""Go parse rules the runtime contract depends on, reproduced exactly.

The operator writes values with Go formatting and the Go SDK reads them with Go parsers, so the
Python SDK must accept and reject the same strings
(docs/contract/runtime-environment.md#parse-rules):

* durations: ``time.ParseDuration`` and ``Duration.String()``;
* integers: ``strconv.Atoi``; booleans: ``strconv.ParseBool`` plus the SDK's separate truthy sets;
* trimming: ``strings.TrimSpace`` (``unicode.IsSpace``, which differs from ``str.strip``);
* ``pkg/env.GetInt`` / ``GetDuration`` (``env_int`` / ``env_dur``) and the JSON-object rule.

Only ``env.py`` feeds environment values in here; these functions never read the environment.
This module imports only ``bubu.errors`` from ``bubu``.
"""

from __future__ import annotations

import logging
import math
from decimal import Decimal
from typing import Any, Final

import msgspec

from bubu.errors import ContractError

__all__ = [
    "BOOL_FALSE",
    "BOOL_TRUE",
    "BRIDGE_OFF",
    "DEBUG_TRUTHY",
    "GO_PARSE_BOOL_FALSE",
    "GO_PARSE_BOOL_TRUE",
    "TRUTHY",
    "GoParseError",
    "env_dur",
    "env_int",
    "format_go_duration",
    "format_go_duration_ns",
    "go_quote",
    "go_trim_space",
    "is_bridge_enabled",
    "is_debug",
    "is_truthy",
    "parse_atoi",
    "parse_bool_go",
    "parse_bool_set",
    "parse_go_duration",
    "parse_go_duration_ns",
    "parse_json_array",
    "parse_json_object",
]

logger = logging.getLogger("bubu.runtime")

# --- truthy sets (docs/contract/runtime-environment.md#parse-rules) ------------------------------
# Each variable group has its own set in Go; keep each one separate.

#: ``BUBU_SKIP_INPUT_TEMPLATING`` (batch.go ``skipInputTemplating``); compared lowercased.
TRUTHY: Final = frozenset({"1", "true", "yes", "y", "on"})
#: ``BUBU_DEBUG`` (debug.go ``isDebugEnabled``); compared lowercased.
DEBUG_TRUTHY: Final = frozenset({"1", "true", "t", "yes", "y", "on", "debug"})
#: The observability and S3 bool set (``parseBoolEnv``); compared lowercased.
BOOL_TRUE: Final = frozenset({"1", "true", "t", "yes", "y", "on"})
#: The false half of the observability and S3 bool set.
BOOL_FALSE: Final = frozenset({"0", "false", "f", "no", "n", "off"})
#: ``BUBU_HYBRID_BRIDGE`` (batch.go ``bridgeEnabled``): off only for these, on for anything else.
BRIDGE_OFF: Final = frozenset({"0", "false", "no", "off"})
#: ``strconv.ParseBool`` true values (case-sensitive, exactly these spellings).
GO_PARSE_BOOL_TRUE: Final = frozenset({"1", "t", "T", "TRUE", "true", "True"})
#: ``strconv.ParseBool`` false values.
GO_PARSE_BOOL_FALSE: Final = frozenset({"0", "f", "F", "FALSE", "false", "False"})

# unicode.IsSpace: Latin-1 spaces plus the White_Space property. Python's str.strip() also strips
# U+001C..U+001F, which Go keeps (docs/contract/signals.md#effects-ledger).
_GO_SPACE: Final = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"  # noqa: E501

_INT64_MAX: Final = (1 << 63) - 1
_INT64_MIN: Final = -(1 << 63)


class GoParseError(ValueError):
    """A value failed a Go parse rule; the message is Go's own text."""


def go_trim_space(value: str) -> str:
    """Trim leading and trailing white space the way Go's ``strings.TrimSpace`` does."""
    return value.strip(_GO_SPACE)


def _go_bytes(ch: str) -> bytes:
    # The bytes Go holds for one character: os.environ turns an invalid byte into a lone
    # surrogate (surrogateescape), which maps back to that byte.
    try:
        return ch.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:
        return ch.encode("utf-8", "surrogatepass")


_GO_ESCAPES: Final = {
    '"': '\\"',
    "\\": "\\\\",
    "\a": "\\a",
    "\b": "\\b",
    "\f": "\\f",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\v": "\\v",
}


def go_quote(value: str) -> str:
    """Quote ``value`` like Go's ``strconv.Quote`` (the ``%q`` verb) for error texts."""
    out = ['"']
    for ch in value:
        code = ord(ch)
        if ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif ch.isprintable():
            out.append(ch)
        elif code < 0x80 or 0xD800 <= code <= 0xDFFF:
            # ASCII controls and DEL, and the bytes of invalid UTF-8 (lone surrogates here).
            out.extend(f"\\x{b:02x}" for b in _go_bytes(ch))
        elif code <= 0xFFFF:
            out.append(f"\\u{code:04x}")
        else:
            out.append(f"\\U{code:08x}")
    out.append('"')
    return "".join(out)


# --- durations (docs/contract/runtime-environment.md#parse-rules) ---------------------------------


def _time_quote(value: str) -> str:
    # The time package quotes with its own rule, not strconv's: every byte of a non-ASCII or
    # control character becomes \xNN, and only '"' and '\\' get a backslash.
    out = ['"']
    for ch in value:
        if ord(ch) >= 0x80 or ch < " ":
            out.extend(f"\\x{b:02x}" for b in _go_bytes(ch))
        elif ch in ('"', "\\"):
            out.append("\\" + ch)
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


_UNITS: Final[dict[str, int]] = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # U+00B5 micro sign
    "\u03bcs": 1_000,  # U+03BC Greek small letter mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60 * 1_000_000_000,
    "h": 3600 * 1_000_000_000,
}


def parse_go_duration_ns(value: str) -> int:
    """Parse a Go duration string into integer nanoseconds, exactly as ``time.ParseDuration``.

    Args:
        value: a string such as ``"1h2m3.5s"``, ``"300ms"``, ``"-1.5h"`` or ``"0"``.

    Returns:
        The duration in nanoseconds (within the int64 range, like Go).

    Raises:
        GoParseError: with Go's message, e.g. ``time: invalid duration "x"``,
            ``time: missing unit in duration "1"``, ``time: unknown unit "d" in duration "1d"``.
    """
    orig = value
    s = value
    neg = False
    if s and s[0] in "+-":
        neg = s[0] == "-"
        s = s[1:]
    if s == "0":
        return 0
    if s == "":
        raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
    total = 0
    while s:
        # The next character must be [0-9.]
        if not (s[0] == "." or "0" <= s[0] <= "9"):
            raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
        # Leading integer part.
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        pre = i != 0
        whole = int(s[:i]) if pre else 0
        if whole > 1 << 63:  # Go leadingInt overflow
            raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
        s = s[i:]
        # Fraction: Go keeps digits while they fit and ignores the rest (leadingFraction).
        frac = 0
        scale = 1
        post = False
        if s and s[0] == ".":
            s = s[1:]
            j = 0
            overflow = False
            while j < len(s) and "0" <= s[j] <= "9":
                if not overflow:
                    # Go also stops at frac > MaxInt64/10 to keep uint64 from wrapping; with
                    # Python ints the candidate test alone gives the same answer.
                    candidate = frac * 10 + int(s[j])
                    if candidate > 1 << 63:
                        overflow = True
                    else:
                        frac = candidate
                        scale *= 10
                j += 1
            post = j != 0
            s = s[j:]
        if not pre and not post:
            # no digits (e.g. ".s" or "-.")
            raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
        # Unit.
        k = 0
        while k < len(s) and not (s[k] == "." or "0" <= s[k] <= "9"):
            k += 1
        if k == 0:
            raise GoParseError(f"time: missing unit in duration {_time_quote(orig)}")
        unit_text = s[:k]
        s = s[k:]
        unit = _UNITS.get(unit_text)
        if unit is None:
            raise GoParseError(
                f"time: unknown unit {_time_quote(unit_text)} in duration {_time_quote(orig)}"
            )
        # Go: v += int64(float64(f) * (float64(unit) / scale)); float64 on purpose. Go checks
        # whole*unit and v for overflow on their own before adding; every term is >= 0 and the
        # error is the same, so checking the running total after each component is enough.
        total += whole * unit + int(float(frac) * (float(unit) / float(scale)))
        if total > 1 << 63:
            raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
    if neg:
        return -total
    if total > _INT64_MAX:
        raise GoParseError(f"time: invalid duration {_time_quote(orig)}")
    return total


def parse_go_duration(value: str) -> float:
    """Parse a Go duration string into seconds (see ``parse_go_duration_ns``).

    Raises:
        GoParseError: with Go's message when the string is not a Go duration.
    """
    return parse_go_duration_ns(value) / 1e9


def _fmt_frac(v: int, prec: int) -> tuple[str, int]:
    # Go fmtFrac: the fraction of v/10**prec without trailing zeros, and no "." when it is zero.
    div = 10**prec
    digits = f"{v % div:0{prec}d}".rstrip("0")
    return ("." + digits if digits else ""), v // div


def format_go_duration(seconds: float | int) -> str:
    """Format seconds like Go's ``Duration.String()``: ``30m0s``, ``1.5s``, ``500ms``, ``0s``.

    Args:
        seconds: the duration; rounded to whole nanoseconds.
    """
    if isinstance(seconds, float) and not math.isfinite(seconds):
        raise ValueError(f"cannot format non-finite duration {seconds!r}")
    if isinstance(seconds, float):
        # Decimal(repr()) avoids binary noise: 1.1 s is 1100000000 ns, not 1100000000.0000002.
        return format_go_duration_ns(round(Decimal(repr(seconds)) * 1_000_000_000))
    return format_go_duration_ns(int(seconds) * 1_000_000_000)


def format_go_duration_ns(ns: int) -> str:
    """Format integer nanoseconds like Go's ``Duration.String()``."""
    neg = ns < 0
    u = -ns if neg else ns
    if u < 1_000_000_000:
        if u == 0:
            return "0s"
        if u < 1_000:
            body = f"{u}ns"
        elif u < 1_000_000:
            frac, whole = _fmt_frac(u, 3)
            body = f"{whole}{frac}\u00b5s"
        else:
            frac, whole = _fmt_frac(u, 6)
            body = f"{whole}{frac}ms"
    else:
        frac, rest = _fmt_frac(u, 9)
        body = f"{rest % 60}{frac}s"
        rest //= 60
        if rest > 0:
            body = f"{rest % 60}m" + body
            rest //= 60
            if rest > 0:
                body = f"{rest}h" + body
    return "-" + body if neg else body


# --- integers and booleans (docs/contract/runtime-environment.md#parse-rules) ---------------------


def parse_atoi(value: str) -> int:
    """Parse like Go's ``strconv.Atoi``: optional sign, ASCII digits only, int64 range.

    Raises:
        GoParseError: ``strconv.Atoi: parsing "x": invalid syntax`` or ``... value out of range``.
    """
    body = value[1:] if value[:1] in ("+", "-") else value
    if not body or not all("0" <= c <= "9" for c in body):
        raise GoParseError(f"strconv.Atoi: parsing {go_quote(value)}: invalid syntax")
    result = int(value)
    if not _INT64_MIN <= result <= _INT64_MAX:
        raise GoParseError(f"strconv.Atoi: parsing {go_quote(value)}: value out of range")
    return result


def parse_bool_go(value: str) -> bool:
    """Parse like Go's ``strconv.ParseBool`` (the ``GO_PARSE_BOOL_*`` spellings, case-sensitive).

    Raises:
        GoParseError: ``strconv.ParseBool: parsing "x": invalid syntax``.
    """
    if value in GO_PARSE_BOOL_TRUE:
        return True
    if value in GO_PARSE_BOOL_FALSE:
        return False
    raise GoParseError(f"strconv.ParseBool: parsing {go_quote(value)}: invalid syntax")


def parse_bool_set(value: str) -> bool:
    """Parse with the observability/S3 set ``BOOL_TRUE`` / ``BOOL_FALSE`` (trimmed, any case).

    Raises:
        GoParseError: ``invalid boolean value "x"`` (bob storage ``parseBoolEnv`` text).
    """
    lowered = go_trim_space(value).lower()
    if lowered in BOOL_TRUE:
        return True
    if lowered in BOOL_FALSE:
        return False
    raise GoParseError(f"invalid boolean value {go_quote(value)}")


def is_truthy(value: str | None) -> bool:
    """Return whether ``value`` is in ``TRUTHY`` (trimmed, case-insensitive); unset is false."""
    return value is not None and go_trim_space(value).lower() in TRUTHY


def is_debug(value: str | None) -> bool:
    """Return whether ``value`` is in ``DEBUG_TRUTHY`` (trimmed, case-insensitive)."""
    return value is not None and go_trim_space(value).lower() in DEBUG_TRUTHY


def is_bridge_enabled(value: str | None) -> bool:
    """Return the hybrid-bridge switch: on unless the value is one of ``BRIDGE_OFF``.

    Not trimmed, as in Go's ``bridgeEnabled``: ``" off"`` leaves the bridge on.
    """
    return not value or value.lower() not in BRIDGE_OFF


# --- pkg/env GetInt / GetDuration ---------------------------------------------------------------


def env_int(name: str, raw: str | None, default: int) -> int:
    """Apply ``pkg/env.GetInt``: trimmed; unset or empty gives ``default``.

    A value that fails ``Atoi`` or is <= 0 also gives ``default``, with a warning on the
    ``bubu.runtime`` logger naming the variable.
    """
    text = go_trim_space(raw) if raw is not None else ""
    if not text:
        return default
    try:
        value = parse_atoi(text)
    except GoParseError:
        value = 0
    if value <= 0:
        # The name is in the text too: these warnings can fire before any handler that
        # renders ``extra`` is installed.
        logger.warning(
            "ignoring invalid env var integer %s=%r, using default %d",
            name,
            text,
            default,
            extra={"env": name, "value": text, "default": default},
        )
        return default
    return value


def env_dur(name: str, raw: str | None, default: float) -> float:
    """Apply ``pkg/env.GetDuration``: trimmed Go duration in seconds; see ``env_int``."""
    text = go_trim_space(raw) if raw is not None else ""
    if not text:
        return default
    try:
        ns = parse_go_duration_ns(text)
    except GoParseError:
        ns = 0
    if ns <= 0:
        logger.warning(
            "ignoring invalid env var duration %s=%r, using default %s",
            name,
            text,
            format_go_duration(default),
            extra={"env": name, "value": text, "default": format_go_duration(default)},
        )
        return default
    return ns / 1e9


# --- JSON rules (docs/contract/runtime-environment.md#parse-rules) ------------------------------


def _decode_json(name: str, raw: str) -> Any:
    try:
        data = raw.encode("utf-8", "surrogatepass")
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, UnicodeError) as exc:
        raise ContractError(f"failed to unmarshal {name}: {exc}", variable=name) from None


def _json_kind(value: Any) -> str:
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int | float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def parse_json_object(name: str, raw: str | None) -> dict[str, Any] | None:
    """Apply Go's ``loadJSONMapEnv`` rule to the value of variable ``name``.

    Blank (after trimming) gives ``None``; ``null`` gives ``{}``; an object is returned as a dict.

    Raises:
        ContractError: ``failed to unmarshal <name>: ...`` for invalid JSON or a non-object,
            with ``variable=name``.
    """
    if raw is None or not go_trim_space(raw):
        return None
    value = _decode_json(name, raw)
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise ContractError(
            f"failed to unmarshal {name}: expected a JSON object, got {_json_kind(value)}",
            variable=name,
        )
    return value


def parse_json_array(name: str, raw: str | None) -> list[Any] | None:
    """Decode a JSON array value (``BUBU_TRANSPORTS``): blank or ``null`` gives ``None``.

    Raises:
        ContractError: ``failed to unmarshal <name>: ...`` for invalid JSON or a non-array.
    """
    if raw is None or not go_trim_space(raw):
        return None
    value = _decode_json(name, go_trim_space(raw))
    if value is None:
        return None
    if not isinstance(value, list):
        raise ContractError(
            f"failed to unmarshal {name}: expected a JSON array, got {_json_kind(value)}",
            variable=name,
        )
    return value
