"""grpclib failures -> :mod:`bubu.errors` (docs/contract/stream.md#errors).

The Go SDK retries every session error except context cancellation, the handshake timeout, the
timed-send cleanup timeout and the gRPC codes INVALID_ARGUMENT, PERMISSION_DENIED,
UNAUTHENTICATED, UNIMPLEMENTED and FAILED_PRECONDITION. The translation keeps that split in the
``retryable`` flag of the resulting error, so the reconnect loop only asks ``err.retryable``.

``asyncio.CancelledError`` is never translated: callers let it propagate.
"""

from __future__ import annotations

from typing import Final

from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from bubu.errors import (
    ConnectorUnavailableError,
    ProtocolViolationError,
    StreamSessionError,
    TransportError,
)

__all__ = ["NON_RETRIABLE_STATUSES", "is_retriable_status", "translate_error"]

NON_RETRIABLE_STATUSES: Final = frozenset(
    {
        Status.INVALID_ARGUMENT,
        Status.PERMISSION_DENIED,
        Status.UNAUTHENTICATED,
        Status.UNIMPLEMENTED,
        Status.FAILED_PRECONDITION,
    }
)
"""gRPC codes Go's ``isRetriableTransportSessionError`` refuses to retry."""

# Messages Go treats as fatal whatever the code (stream.go isRetriableTransportSessionError).
_FATAL_TEXT: Final = (
    "transport binding missing",
    "transport connector endpoint empty",
    "transport binding missing endpoint",
    "protocol mismatch",
)


def is_retriable_status(status: Status) -> bool:
    """Whether Go would reconnect after a stream ended with ``status``."""
    return status not in NON_RETRIABLE_STATUSES


def translate_error(exc: BaseException, *, op: str = "transport") -> TransportError:
    """Translate a grpclib/socket failure during ``op`` into a :class:`TransportError`.

    - ``UNAVAILABLE`` and socket errors (refused, reset, closed) -> retryable
      :class:`ConnectorUnavailableError`.
    - ``FAILED_PRECONDITION`` (protocol header mismatch) -> non-retryable
      :class:`ProtocolViolationError`; the other non-retriable codes -> non-retryable
      :class:`TransportError`. The gRPC code name is kept in ``.code``.
    - Everything else (RESOURCE_EXHAUSTED, INTERNAL, stream resets, HTTP/2 protocol errors) ->
      retryable :class:`StreamSessionError`.

    The connector's message is included (it is server text, never a secret of ours).
    """
    if isinstance(exc, TransportError):
        return exc
    if isinstance(exc, GRPCError):
        detail = f"{op} failed: {exc.status.name}"
        if exc.message:
            detail = f"{detail}: {exc.message}"
        code = exc.status.name
        if exc.message and any(text in exc.message for text in _FATAL_TEXT):
            return ProtocolViolationError(detail, code=code, retryable=False)
        if exc.status is Status.UNAVAILABLE:
            return ConnectorUnavailableError(detail, code=code)
        if exc.status is Status.FAILED_PRECONDITION:
            return ProtocolViolationError(detail, code=code, retryable=False)
        if exc.status in NON_RETRIABLE_STATUSES:
            return TransportError(detail, code=code, retryable=False)
        return StreamSessionError(detail, code=code)
    if isinstance(exc, StreamTerminatedError | ProtocolError):
        return StreamSessionError(f"{op} failed: {exc}")
    if isinstance(exc, ConnectionError | OSError | EOFError):
        return ConnectorUnavailableError(f"{op} failed: {type(exc).__name__}: {exc}")
    return StreamSessionError(f"{op} failed: {type(exc).__name__}: {exc}")
