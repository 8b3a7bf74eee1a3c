"""Deterministic object names and the Go-canonical JSON input hash.

This module owns every identity algorithm the operator re-checks, byte for byte: StoryTrigger,
StoryRun and EffectClaim names, the trigger input hash (sha256 over Go ``encoding/json``
output), StepRun idempotency keys and Kubernetes-safe label values (docs/contract/identity.md). A
name or hash that differs from Go's by one byte makes the webhook or the controller reject the
object, so tests pin these functions to vectors produced by the Go code
(docs/contract/identity.md#names).

It is pure: no I/O, and it imports nothing from ``bubu`` except ``errors`` and the Go parse
rules (``strings.TrimSpace``). The in-memory fakes of ``bubu.testkit`` use the same functions, so
the fakes and the cluster agree on identity.

It also holds the two small wire formats every durable helper shares (RFC 3339 times of the
CRDs, and the Go type names in signal and effect summaries), so triggers, effects, signals and
the fakes cannot drift apart on them.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Mapping
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from bubu._runtime.parse import go_trim_space

__all__ = [
    "MAX_NAME_LENGTH",
    "compose_dns1123_name",
    "compute_trigger_input_hash",
    "derive_effect_claim_name",
    "derive_story_run_name",
    "derive_story_trigger_name",
    "go_canonical_json",
    "go_float",
    "go_format_g",
    "go_json",
    "go_json_string",
    "go_type_name",
    "parse_time",
    "safe_label_value",
    "short_hash",
    "step_run_idempotency_key",
    "utc_seconds",
]

#: Kubernetes object names (DNS subdomain) are at most 253 characters
#: (docs/contract/identity.md#names).
MAX_NAME_LENGTH = 253
_SHORT_HASH_LEN = 16
_TRIGGER_INFIX = "-trigger-"
_EFFECT_INFIX = "-effect-"
_MAX_IDEMPOTENCY_KEY = 256
_MAX_LABEL = 63


def short_hash(seed: str) -> str:
    """Return Go's ``shortTokenHash``: the first 8 bytes of SHA-1 as 16 lower-case hex digits."""
    return hashlib.sha1(seed.encode("utf-8")).hexdigest()[:_SHORT_HASH_LEN]


def _go_lower(ch: str) -> str:
    # Go's unicode.ToLower maps U+0130 (I with dot) to "i" and U+212A (Kelvin) to "k"; any other
    # non-ASCII result can never be in [a-z0-9], so leaving it unchanged is equivalent.
    if ch == "\u0130":
        return "i"
    if ch == "\u212a":
        return "k"
    return ch.lower() if ch.isascii() else ch


def _sanitize(value: str) -> str:
    """Lower-case, keep ``[a-z0-9]``, collapse every other run into one ``-`` and trim ``-``."""
    out: list[str] = []
    last_dash = False
    for raw in value:
        ch = _go_lower(raw)
        if ("a" <= ch <= "z") or ("0" <= ch <= "9"):
            out.append(ch)
            last_dash = False
        elif out and not last_dash:
            out.append("-")
            last_dash = True
    return "".join(out).strip("-")


def _blen(text: str) -> int:
    # Go's len() counts UTF-8 bytes, and the operator compares names with Go's lengths.
    return len(text.encode("utf-8"))


def _bcut(text: str, size: int) -> str:
    # Go slices bytes; a cut inside a character leaves invalid UTF-8 there (never a valid
    # Kubernetes name either way), which we drop instead.
    return text.encode("utf-8")[:size].decode("utf-8", "ignore")


def _limited(prefix: str, infix: str, digest: str) -> str:
    base = f"{prefix}{infix}{digest}"
    if _blen(base) <= MAX_NAME_LENGTH:
        return base
    keep = max(MAX_NAME_LENGTH - len(infix) - len(digest), 1)
    # Go cuts (and then trims) only a prefix that is itself too long; a short one is kept as is.
    head = prefix
    if _blen(head) > keep:
        head = _bcut(head, keep).rstrip("-") or "s"
    return f"{head}{infix}{digest}"


def derive_story_trigger_name(
    story_namespace: str, story_name: str, key: str, submission_id: str
) -> str:
    """Return the StoryTrigger name the webhook and controller require (``DeriveStoryTriggerName``).

    Args:
        story_namespace: The resolved story namespace (``storyRef.namespace`` or the trigger's).
        story_name: ``storyRef.name``.
        key: The delivery key (token or template key); may be empty.
        submission_id: Used as the identity when ``key`` is empty.

    Returns:
        ``<story>-trigger-<shorthash>`` cut to 253 characters, or ``""`` when both identities
        are empty (Go returns the empty string; callers treat it as an error).
    """
    ident = key or submission_id
    if not ident:
        return ""
    digest = short_hash(f"{story_namespace}/{story_name}/{ident}")
    return _limited(story_name, _TRIGGER_INFIX, digest)


def derive_effect_claim_name(step_run_namespace: str, step_run: str, effect_key: str) -> str:
    """Return the EffectClaim name the webhook requires (``DeriveEffectClaimName``).

    Args:
        step_run_namespace: Namespace of the StepRun (and of the claim).
        step_run: StepRun name.
        effect_key: The effect key as passed by the caller (not trimmed here).

    Returns:
        ``<steprun>-effect-<shorthash>`` cut to 253 characters, or ``""`` for an empty key.
    """
    if not effect_key:
        return ""
    digest = short_hash(f"{step_run_namespace}/{step_run}/{effect_key}")
    return _limited(step_run, _EFFECT_INFIX, digest)


def derive_story_run_name(story_namespace: str, story_name: str, token: str) -> str:
    """Return the StoryRun name the controller derives for a trigger (``DeriveStoryRunName``).

    Args:
        story_namespace: The resolved story namespace; a non-empty namespace always adds the hash.
        story_name: ``storyRef.name``.
        token: The delivery key, or the submission id when there is no key.

    Returns:
        ``<story>-<sanitised token>[-<shorthash>]``, at most 253 characters.
    """
    segment = _sanitize(token)
    digest = short_hash(f"{story_namespace}/{story_name}/{token}")
    needs_hash = segment != token or story_namespace != ""
    if segment == "":
        segment, needs_hash = digest, False
    if needs_hash:
        segment = f"{segment}-{digest}"
    base = f"{story_name}-{segment}"
    if _blen(base) <= MAX_NAME_LENGTH:
        return base
    keep = max(MAX_NAME_LENGTH - 1 - len(digest), 1)
    head = story_name
    if _blen(head) > keep:
        head = _bcut(head, keep).strip("-") or "s"
    return f"{head}-{digest}"


def step_run_idempotency_key(namespace: str, story_run: str, step_id: str) -> str:
    """Return the controller's ``StepRun.spec.idempotencyKey`` for a step.

    Args:
        namespace: StepRun namespace (may be empty).
        story_run: StoryRun name.
        step_id: Step id.

    Returns:
        ``ns/<ns>/storyrun/<run>/step/<id>``, or ``sha256:<hex>`` above 256 characters.
    """
    base = f"storyrun/{go_trim_space(story_run)}/step/{go_trim_space(step_id)}"
    if go_trim_space(namespace):
        base = f"ns/{go_trim_space(namespace)}/{base}"
    if _blen(base) <= _MAX_IDEMPOTENCY_KEY:
        return base
    return "sha256:" + hashlib.sha256(base.encode("utf-8")).hexdigest()


def safe_label_value(name: str) -> str:
    """Return core's ``SafeLabelValue``: a valid label value (<= 63 characters) for ``name``."""
    cleaned = _sanitize(name)
    if not cleaned:
        return "resource"
    if len(cleaned) <= _MAX_LABEL:
        return cleaned
    suffix = hashlib.sha256(cleaned.encode("utf-8")).hexdigest()[:10]
    head = cleaned[:52].strip("-_.")
    return f"{head}-{suffix}" if head else suffix


def compose_dns1123_name(*parts: str) -> str:
    """Join ``parts`` into a valid DNS-1123 label, as the Go SDK's ``ComposeDNS1123Name`` does.

    Each part is lowercased and cleaned (characters other than ``a-z``, ``0-9`` become ``-``,
    runs of ``-`` collapse, ends are trimmed); empty parts are dropped and the rest joined by
    ``-``. Nothing left gives ``resource``. A result over 63 characters is cut and ends with
    ``-`` and the first 8 hex digits of the SHA-1 of the full name, so distinct long names stay
    distinct (docs/contract/identity.md#dns1123).

    >>> compose_dns1123_name("My Story", "step_1")
    'my-story-step-1'
    """
    base = "-".join(p for p in (_sanitize(part) for part in parts) if p)
    if not base:
        return "resource"
    if len(base) <= _MAX_LABEL:
        return base
    digest = hashlib.sha1(base.encode("utf-8")).hexdigest()[:8]
    return f"{base[: _MAX_LABEL - 1 - 8].rstrip('-')}-{digest}"


# --- Go encoding/json ------------------------------------------------------------------------

_ESCAPES = {
    '"': '\\"',
    "\\": "\\\\",
    "\n": "\\n",
    "\r": "\\r",
    "\t": "\\t",
    "\b": "\\b",
    "\f": "\\f",
    # Go escapes these for safe embedding in HTML and JavaScript
    # (docs/contract/identity.md#go-json).
    "<": "\\u003c",
    ">": "\\u003e",
    "&": "\\u0026",
    "\u2028": "\\u2028",
    "\u2029": "\\u2029",
}


def _escape_char(ch: str) -> str:
    esc = _ESCAPES.get(ch)
    if esc is not None:
        return esc
    code = ord(ch)
    if code < 0x20:
        return f"\\u{code:04x}"
    if 0xD800 <= code <= 0xDFFF:
        # A lone surrogate is invalid UTF-8; Go's decoder turns it into U+FFFD, emitted raw.
        return "\ufffd"
    return ch


_PLAIN = frozenset(chr(c) for c in range(0x20, 0x80) if chr(c) not in _ESCAPES)


def go_json_string(value: str) -> str:
    """Encode ``value`` as Go's ``encoding/json`` does (HTML-safe escapes, raw UTF-8)."""
    if all(ch in _PLAIN for ch in value):
        return f'"{value}"'
    return '"' + "".join(_escape_char(ch) for ch in value) + '"'


def go_float(value: float) -> str:
    """Format a float64 exactly as Go's ``encoding/json`` does (docs/contract/identity.md#go-json).

    Raises:
        ValueError: For NaN and infinities, which Go refuses to encode.
    """
    if math.isnan(value) or math.isinf(value):
        raise ValueError(f"unsupported JSON number {value!r}: NaN and Inf cannot be encoded")
    magnitude = abs(value)
    text = repr(value)  # shortest round-trip digits, as Go's strconv with precision -1
    if magnitude != 0 and (magnitude < 1e-6 or magnitude >= 1e21):
        # repr is already in exponent form here (it switches below 1e-4 and from 1e16 on); Go
        # writes the exponent without padding: 1e-07 becomes 1e-7, 1e+21 stays.
        mantissa, _, exp = text.partition("e")
        return f"{mantissa}e{exp[0]}{exp[1:].lstrip('0')}"
    return format(Decimal(text).normalize(), "f")


def go_format_g(value: float) -> str:
    """Format a float64 as Go's ``fmt`` ``%v`` does (``strconv`` ``'g'``, shortest).

    Used where Go prints a number into text (the trigger key template), not for JSON.
    """
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if value == 0:
        return "-0" if math.copysign(1.0, value) < 0 else "0"
    sign, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    text_digits = "".join(map(str, digits))
    point = len(text_digits) + exponent  # position of the decimal point
    exp = point - 1
    neg = "-" if sign else ""
    # strconv 'g' with the shortest precision switches to %e when exp < -4 or exp >= 6
    # (Go resets eprec to 6 for the shortest form), so fmt.Sprint(1e6) is "1e+06".
    eprec = 6
    if exp < -4 or exp >= eprec:
        mant = text_digits[0] + ("." + text_digits[1:] if len(text_digits) > 1 else "")
        esign = "-" if exp < 0 else "+"
        return f"{neg}{mant}e{esign}{abs(exp):02d}"
    if point <= 0:
        return f"{neg}0.{'0' * -point}{text_digits}"
    if point >= len(text_digits):
        return f"{neg}{text_digits}{'0' * (point - len(text_digits))}"
    return f"{neg}{text_digits[:point]}.{text_digits[point:]}"


def _encode(
    value: Any, out: list[str], path: str, exact_ints: bool = False, sort_keys: bool = True
) -> None:
    if value is None:
        out.append("null")
    elif value is True:
        out.append("true")
    elif value is False:
        out.append("false")
    elif isinstance(value, str):
        out.append(go_json_string(value))
    elif isinstance(value, int) and exact_ints:
        out.append(str(value))
    elif isinstance(value, int | float):
        # Go decodes every JSON number into float64 before re-encoding
        # (docs/contract/identity.md#go-json), so integers above 2**53 lose precision exactly as
        # they do in Go.
        try:
            number = float(value)
        except OverflowError:
            raise ValueError(f"number at {path} is out of float64 range") from None
        try:
            out.append(go_float(number))
        except ValueError as exc:
            raise ValueError(f"{exc} (at {path})") from None
    elif isinstance(value, dict):
        out.append("{")
        first = True
        for key in sorted(value) if sort_keys else value:
            if not isinstance(key, str):
                raise ValueError(f"object key {key!r} at {path} is not a string")
            if not first:
                out.append(",")
            first = False
            out.append(go_json_string(key))
            out.append(":")
            _encode(value[key], out, f"{path}.{key}", exact_ints, sort_keys)
        out.append("}")
    elif isinstance(value, list | tuple):
        out.append("[")
        for i, item in enumerate(value):
            if i:
                out.append(",")
            _encode(item, out, f"{path}[{i}]", exact_ints, sort_keys)
        out.append("]")
    else:
        raise ValueError(
            f"value at {path} of type {type(value).__name__} is not JSON "
            "(convert it with msgspec.to_builtins first)"
        )


def go_canonical_json(value: Any) -> str:
    """Return Go's ``json.Marshal(json.Unmarshal(value))`` for a decoded JSON value.

    Keys are sorted, numbers are float64 in Go's format, ``< > &`` and U+2028/2029 are escaped
    (docs/contract/identity.md#go-json). ``value`` must already be plain JSON data (dict, list, str,
    int, float, bool, None).

    Raises:
        ValueError: For NaN/Inf, non-string keys or non-JSON types; the message names the path.
    """
    out: list[str] = []
    _encode(value, out, "$")
    return "".join(out)


def go_json(value: Any, *, sort_keys: bool = True) -> bytes:
    """Return Go's ``json.Marshal`` of a typed value: as ``go_canonical_json``, but an ``int``
    stays an integer (a Go ``int`` field), only ``float`` goes through float64 formatting.

    With ``sort_keys=False`` objects keep their order: pass
    ``msgspec.to_builtins(v, order="deterministic")`` (maps sorted, Struct fields in declaration
    order, as Go writes a struct). Signal and effect summaries hash these bytes, so the same
    value gives Go's hash (docs/contract/signals.md#signals,
    docs/contract/signals.md#effects-ledger).

    Raises:
        ValueError: as ``go_canonical_json``.
    """
    out: list[str] = []
    _encode(value, out, "$", exact_ints=True, sort_keys=sort_keys)
    return "".join(out).encode("utf-8")


def compute_trigger_input_hash(inputs: Any) -> str:
    """Return ``ComputeTriggerInputHash``: sha256 hex of the Go-canonical inputs.

    ``None`` (absent inputs) hashes as ``{}``, as Go's empty-raw rule does.
    """
    canonical = go_canonical_json({} if inputs is None else inputs)
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


# --- shared wire formats ------------------------------------------------------------------------


def utc_seconds(moment: datetime) -> str:
    """Format ``moment`` as a whole-second RFC 3339 UTC time (``metav1.Time``)."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def parse_time(value: Any) -> datetime | None:
    """Parse an RFC 3339 time of a CRD field; None for a missing or malformed value."""
    if not isinstance(value, str) or not value:
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None


def go_type_name(value: Any) -> str:
    """Name a JSON value's type as Go's signal and effect summaries do (``type`` field).

    See docs/contract/signals.md#signals.
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, int):
        return "int"
    if isinstance(value, float):
        return "float"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list | tuple):
        return "array"
    if isinstance(value, Mapping):
        return "map"
    return "struct"
