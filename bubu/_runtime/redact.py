"""Redaction of persisted error messages, and UTF-8-safe truncation.

See docs/contract/errors.md#structured-error.

Every message written to ``status.lastFailureMsg`` and ``status.error.message`` passes through
``sanitize_message``: two regexes mask credentials, then the text is cut to 8192 bytes on a UTF-8
boundary. ``redact_known_values`` additionally masks the step's own secret values, and
:class:`SecretMask` masks them in every form they are printed in (raw, JSON-escaped, JSON embedded
in a JSON string, inside a Python ``repr``, percent-encoded): the start-up installs one on every
log handler, on standard output and error and on uncaught exceptions (docs/architecture.md
"Start-up"). Pure functions; imports nothing from ``bubu`` except ``_runtime.secrets`` for typing.
"""

from __future__ import annotations

import functools
import json
import re
from collections.abc import Iterable
from typing import Final

from bubu._runtime.secrets import Secrets

__all__ = [
    "MAX_ERROR_MESSAGE_BYTES",
    "REDACTED",
    "SecretMask",
    "redact_known_values",
    "redact_message",
    "sanitize_message",
    "secret_forms",
    "truncate_utf8",
]

REDACTED: Final = "[REDACTED]"
#: Cap on persisted error messages (batch.go ``maxErrorMessageBytes``).
MAX_ERROR_MESSAGE_BYTES: Final = 8192

# Go RE2 \s is exactly [\t\n\f\r ] (ASCII, no \v; Appendix A.5), so spell it out.
_S = r"[\t\n\f\r ]"


@functools.cache
def _patterns() -> tuple[re.Pattern[str], re.Pattern[str]]:
    # Compiled on first use: a run that masks no message never pays for them (~0.7 ms of a
    # streaming engram's start, docs/performance.md, spawn-to-handshake).
    auth_header = re.compile(
        rf"(authorization{_S}*:{_S}*(?:basic|bearer){_S}+)([^\t\n\f\r ,;]+)", re.IGNORECASE
    )
    key_value = re.compile(
        r"""(["']?(?:api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|token|password|"""
        r"""secret|client[_-]?secret|authorization)["']?"""
        rf"""{_S}*[:=]{_S}*["']?)([^"'\\\t\n\f\r ,;}}{{\]&]+)(["']?)""",
        re.IGNORECASE,
    )
    return auth_header, key_value


def redact_message(text: str) -> str:
    """Mask credentials in ``text`` with the two credential patterns, without truncating.

    The patterns are those of docs/contract/errors.md#masking.

    ``Authorization: Bearer <token>`` keeps the scheme; ``password=<v>``, ``"api_key": "<v>"``
    and the like keep the key and quotes. The key match is a substring match, so ``mytoken=x``
    is masked too, as in Go.
    """
    auth_header, key_value = _patterns()
    text = auth_header.sub(lambda m: m.group(1) + REDACTED, text)
    return key_value.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)


def truncate_utf8(text: str, limit: int) -> str:
    """Cut ``text`` to at most ``limit`` UTF-8 bytes without splitting a character.

    A ``limit`` <= 0 means no truncation (batch.go ``truncateErrorMessage``).
    """
    if limit <= 0:
        return text
    data = text.encode("utf-8", "surrogatepass")
    if len(data) <= limit:
        return text
    return data[:limit].decode("utf-8", "ignore")


def sanitize_message(text: str, limit: int = MAX_ERROR_MESSAGE_BYTES) -> str:
    """Redact then truncate ``text`` (batch.go ``sanitizePersistedErrorMessage``)."""
    return truncate_utf8(redact_message(text), limit)


def redact_known_values(text: str, secrets: Secrets | Iterable[str], *, min_length: int = 1) -> str:
    """Replace every occurrence of a known secret value in ``text`` with ``[REDACTED]``.

    Longer values are replaced first, so a value that contains another is masked whole.

    Args:
        text: the text to clean (a log line, an error message).
        secrets: the step's ``Secrets``, or plain values.
        min_length: values shorter than this are left alone (1 masks every non-empty value).
    """
    values = secrets.get_all().values() if isinstance(secrets, Secrets) else secrets
    for value in sorted({v for v in values if len(v) >= max(min_length, 1)}, key=len, reverse=True):
        text = text.replace(value, REDACTED)
    return text


def _repr_forms(value: str) -> set[str]:
    """The ways ``value`` appears inside the ``repr`` of a string or bytes that contains it.

    ``repr`` picks its quote character from the *whole* string, so inside a larger repr the
    value's own quotes may or may not be escaped: every combination is a form.
    """
    core = repr(value)[1:-1].replace("\\'", "'").replace('\\"', '"')
    forms = {core, core.replace("'", "\\'"), core.replace('"', '\\"')}
    forms.add(core.replace("'", "\\'").replace('"', '\\"'))
    try:
        encoded = value.encode("utf-8")
    except UnicodeEncodeError:
        return forms
    byte_core = repr(encoded)[2:-1].replace("\\'", "'").replace('\\"', '"')
    forms |= {byte_core, byte_core.replace("'", "\\'"), byte_core.replace('"', '\\"')}
    return forms


_ESCAPE_DEPTH: Final = 3
"""Escaping levels covered: a ``repr`` of an exception whose message holds a ``repr``, written
into a JSON document, is three."""


def _escapes(text: str) -> set[str]:
    """One level of escaping: how ``text`` appears inside a JSON string or a Python repr."""
    forms = {json.dumps(text)[1:-1], json.dumps(text, ensure_ascii=False)[1:-1]}
    return forms | _repr_forms(text)


def secret_forms(value: str) -> set[str]:
    """Every printed form of ``value`` that :class:`SecretMask` masks.

    The raw text; every form after up to three levels of escaping, where a level is a JSON
    string (with or without ``\\u`` escapes of four hex digits for non-ASCII) or a Python
    ``repr`` of a ``str`` or ``bytes`` (escaped quotes, backslashes, ``\\xNN``): a payload
    logged as JSON inside a JSON log line, the ``repr`` of an exception whose message holds a
    ``repr`` (``RuntimeError("bad 'tok'")`` in a retry message). And percent-encoding (a secret
    in a URL).
    """
    forms = {value}
    level = {value}
    for _ in range(_ESCAPE_DEPTH):
        level = {escaped for text in level for escaped in _escapes(text)} - forms
        forms |= level
    import urllib.parse  # only when a run has secrets: keeps it out of `import bubu`

    forms.add(urllib.parse.quote(value, safe=""))
    forms.add(urllib.parse.quote_plus(value, safe=""))
    forms.discard("")
    return forms


class SecretMask:
    """Masks known secret values, in every form :func:`secret_forms` lists, with ``[REDACTED]``.

    Call it on text (``mask(line)``). Values can be added while a run goes on (secrets are
    expanded after logging starts); the pattern is rebuilt on the next call. Longer forms are
    matched first, so a secret that contains another is masked whole.

    Args:
        values: the secret values known so far.
        min_length: values shorter than this are left alone: masking ``"a"`` everywhere would
            destroy the text without protecting anything (4 by default, as Go's log masking).
    """

    __slots__ = ("_min_length", "_pattern", "_values")

    def __init__(self, values: Iterable[str] = (), *, min_length: int = 4) -> None:
        self._min_length = max(min_length, 1)
        self._values: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(values)

    @property
    def values(self) -> frozenset[str]:
        """The values masked (those long enough)."""
        return frozenset(self._values)

    def add(self, values: Iterable[str]) -> None:
        """Mask these values too."""
        new = {v for v in values if isinstance(v, str) and len(v) >= self._min_length}
        if not new <= self._values:
            self._values |= new
            self._pattern = None

    def __bool__(self) -> bool:
        return bool(self._values)

    def __call__(self, text: str) -> str:
        """Return ``text`` with every form of every known value replaced by ``[REDACTED]``."""
        if not self._values or not text:
            return text
        pattern = self._pattern
        if pattern is None:
            forms: set[str] = set()
            for value in self._values:
                forms |= secret_forms(value)
            ordered = sorted(forms, key=len, reverse=True)
            pattern = self._pattern = re.compile("|".join(re.escape(f) for f in ordered))
        return pattern.sub(REDACTED, text)

    def __repr__(self) -> str:
        # Never the values themselves.
        return f"SecretMask({len(self._values)} values)"
