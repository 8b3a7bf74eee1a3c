"""grpclib failures -> bubu.errors with Go's retry classification.

See docs/contract/stream.md#keepalive-and-limits.
"""

from __future__ import annotations

import pytest
from grpclib.const import Status
from grpclib.exceptions import GRPCError, ProtocolError, StreamTerminatedError

from bubu._transport.errors import is_retriable_status, translate_error
from bubu.errors import (
    ConnectorUnavailableError,
    ProtocolViolationError,
    StreamSessionError,
    TransportError,
)


@pytest.mark.parametrize(
    "status",
    [
        Status.INVALID_ARGUMENT,
        Status.PERMISSION_DENIED,
        Status.UNAUTHENTICATED,
        Status.UNIMPLEMENTED,
        Status.FAILED_PRECONDITION,
    ],
)
def test_go_non_retriable_codes_are_not_retryable(status: Status) -> None:
    err = translate_error(GRPCError(status, "nope"), op="data stream")
    assert not err.retryable
    assert err.code == status.name
    assert str(err) == f"data stream failed: {status.name}: nope"
    assert not is_retriable_status(status)


def test_failed_precondition_is_a_protocol_violation() -> None:
    err = translate_error(GRPCError(Status.FAILED_PRECONDITION, "transport protocol mismatch"))
    assert isinstance(err, ProtocolViolationError)


def test_unavailable_and_socket_errors_mean_connector_unavailable() -> None:
    assert isinstance(translate_error(GRPCError(Status.UNAVAILABLE)), ConnectorUnavailableError)
    refused = translate_error(ConnectionRefusedError(111, "refused"), op="dial")
    assert isinstance(refused, ConnectorUnavailableError) and refused.retryable
    assert "dial failed: ConnectionRefusedError" in str(refused)


@pytest.mark.parametrize(
    "exc",
    [
        GRPCError(Status.RESOURCE_EXHAUSTED, "too big"),
        GRPCError(Status.INTERNAL),
        StreamTerminatedError("reset"),
        ProtocolError("bad frame"),
        RuntimeError("surprise"),
    ],
)
def test_everything_else_is_a_retryable_session_error(exc: BaseException) -> None:
    err = translate_error(exc)
    assert isinstance(err, StreamSessionError) and err.retryable
    assert is_retriable_status(Status.RESOURCE_EXHAUSTED)


def test_fatal_messages_win_over_the_code() -> None:
    err = translate_error(GRPCError(Status.UNKNOWN, "protocol mismatch: want 1.0.0"))
    assert isinstance(err, ProtocolViolationError) and not err.retryable


def test_transport_errors_pass_through() -> None:
    original = TransportError("already ours")
    assert translate_error(original) is original
