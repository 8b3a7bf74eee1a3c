"""Redaction of persisted error messages, and UTF-8-safe truncation (go-sdk-core.md c.13).

Every message written to ``status.lastFailureMsg`` and ``status.error.message`` passes through
``sanitize_message``: two regexes mask credentials, then the text is cut to 8192 bytes on a UTF-8
boundary. ``redact_known_values`` additionally masks the step's own secret values. Pure functions;
imports nothing from ``bubu`` except ``_runtime.secrets`` for typing.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from typing import Final

from bubu._runtime.secrets import Secrets

__all__ = [
    "MAX_ERROR_MESSAGE_BYTES",
    "REDACTED",
    "redact_known_values",
    "redact_message",
    "sanitize_message",
    "truncate_utf8",
]

REDACTED: Final = "[REDACTED]"
#: Cap on persisted error messages (batch.go ``maxErrorMessageBytes``).
MAX_ERROR_MESSAGE_BYTES: Final = 8192

# Go RE2 \s is exactly [\t\n\f\r ] (ASCII, no \v; Appendix A.5), so spell it out.
_S = r"[\t\n\f\r ]"
_AUTH_HEADER: Final = re.compile(
    rf"(authorization{_S}*:{_S}*(?:basic|bearer){_S}+)([^\t\n\f\r ,;]+)", re.IGNORECASE
)
_KEY_VALUE: Final = re.compile(
    r"""(["']?(?:api[_-]?key|x-api-key|access[_-]?token|refresh[_-]?token|token|password|"""
    r"""secret|client[_-]?secret|authorization)["']?"""
    rf"""{_S}*[:=]{_S}*["']?)([^"'\\\t\n\f\r ,;}}{{\]&]+)(["']?)""",
    re.IGNORECASE,
)


def redact_message(text: str) -> str:
    """Mask credentials in ``text`` with the two c.13 patterns, without truncating.

    ``Authorization: Bearer <token>`` keeps the scheme; ``password=<v>``, ``"api_key": "<v>"``
    and the like keep the key and quotes. The key match is a substring match, so ``mytoken=x``
    is masked too, as in Go.
    """
    text = _AUTH_HEADER.sub(lambda m: m.group(1) + REDACTED, text)
    return _KEY_VALUE.sub(lambda m: m.group(1) + REDACTED + m.group(3), text)


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
