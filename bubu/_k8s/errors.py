"""Translate Kubernetes API failures into the SDK's error tree, once.

See docs/contract/errors.md#error-tree.

Classification follows the Go SDK's ``classifyK8sError``
(docs/contract/errors.md#kubernetes-errors): 404 is NotFound, 409 is Conflict, 403 is Forbidden
(admission webhook denials also arrive as 403, docs/contract/errors.md#webhook-denials), 422 is a
permanent ``Invalid``; 429, 5xx, server timeouts and transport errors (connection refused/reset,
timeouts) are retryable. The API's Status ``message`` and ``reason`` are preserved. Callers ``raise
translated from exc``.

This module imports neither kr8s nor httpx: it works on status codes, bodies and headers.
"""

from __future__ import annotations

import email.utils
import json
import math
import time
from typing import Any

from bubu.errors import (
    ConflictError,
    ForbiddenError,
    KubernetesError,
    NotFoundError,
    WatchExpiredError,
)

__all__ = ["from_status", "from_transport_error", "parse_retry_after", "with_context"]

_MAX_MESSAGE = 1024


def parse_retry_after(value: str | None, *, now: float | None = None) -> float | None:
    """Parse a ``Retry-After`` header (delta-seconds or HTTP date) into seconds.

    Args:
        value: the header value, or None.
        now: the current epoch time (tests pass it).

    Returns:
        Non-negative seconds, or None when absent or unparsable.
    """
    if value is None:
        return None
    value = value.strip()
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            when = email.utils.parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    if math.isnan(seconds):  # NaN never counts as a wait
        return None
    return max(0.0, seconds)


def _status_fields(body: bytes | str | None) -> tuple[str | None, str | None, dict[str, Any]]:
    """Return (message, reason, status dict) from a Kubernetes ``Status`` body, if it is one."""
    if not body:
        return None, None, {}
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        return None, None, {}
    if not isinstance(data, dict):
        return None, None, {}
    message = data.get("message")
    reason = data.get("reason")
    return (
        message if isinstance(message, str) else None,
        reason if isinstance(reason, str) else None,
        data,
    )


def from_status(
    status_code: int,
    body: bytes | str | None,
    *,
    operation: str,
    retry_after: str | None = None,
) -> KubernetesError:
    """Build the SDK error for an HTTP error answer of the API server.

    Args:
        status_code: the HTTP status code (>= 400).
        body: the response body, usually a ``Status`` object.
        operation: what was attempted (``"GET stepruns/x"``), for the message.
        retry_after: the raw ``Retry-After`` header.

    Returns:
        A ``KubernetesError`` (or a subclass) with ``status_code``, ``reason``,
        ``retryable`` and ``retry_after`` set.
    """
    message, reason, _ = _status_fields(body)
    if not message:
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else (body or "")
        message = text.strip()[:_MAX_MESSAGE] or f"HTTP {status_code}"
    full = f"{operation}: {message}"
    after = parse_retry_after(retry_after)
    common: dict[str, Any] = {"status_code": status_code, "retry_after": after}
    if status_code == 404:
        return NotFoundError(full, reason=reason or "NotFound", **common)
    if status_code == 409:
        return ConflictError(full, reason=reason or "Conflict", **common)
    if status_code == 403:
        return ForbiddenError(full, reason=reason or "Forbidden", **common)
    if status_code == 410:
        return WatchExpiredError(full, reason=reason or "Expired", **common)
    if status_code == 422:
        return KubernetesError(full, reason=reason or "Invalid", retryable=False, **common)
    if status_code == 429 or status_code >= 500 or reason in ("Timeout", "ServerTimeout"):
        return KubernetesError(
            full,
            reason=reason or ("TooManyRequests" if status_code == 429 else "InternalError"),
            retryable=True,
            exit_class="retry",
            **common,
        )
    return KubernetesError(full, reason=reason, retryable=False, **common)


def from_transport_error(exc: BaseException, *, operation: str) -> KubernetesError:
    """Build a retryable SDK error for a request that never got an HTTP answer.

    Timeouts, refused or reset connections and protocol errors are all transient from
    the SDK's point of view (docs/contract/errors.md#kubernetes-errors: ECONNRESET, ECONNREFUSED,
    ETIMEDOUT...).

    Args:
        exc: the httpx / OS / kr8s exception.
        operation: what was attempted, for the message.
    """
    name = type(exc).__name__
    detail = str(exc) or name
    reason = "Timeout" if "Timeout" in name or isinstance(exc, TimeoutError) else "ConnectionError"
    return KubernetesError(
        f"{operation}: {reason.lower()}: {detail}"[: _MAX_MESSAGE * 2],
        reason=reason,
        retryable=True,
        exit_class="retry",
    )


def with_context(exc: KubernetesError, context: str) -> KubernetesError:
    """Return ``exc`` again with ``context`` in front of its message (Go's ``wrapK8sError``).

    The copy keeps the class and every classification field (status code, reason, retryability,
    ``Retry-After``), so callers up the stack still decide on the same facts; raise it
    ``from exc``.
    """
    return type(exc)(
        f"{context}: {exc}",
        status_code=exc.status_code,
        reason=exc.reason,
        retryable=exc.retryable,
        retry_after=exc.retry_after,
    )
