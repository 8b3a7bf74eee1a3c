"""outcome_for (docs/contract/errors.md#structured-error) and the redaction helpers."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest
from hypothesis import given
from hypothesis import strategies as st

from bubu._runtime.outcome import (
    StructuredError,
    classify_error,
    outcome_for,
    parse_exit_class,
)
from bubu._runtime.redact import (
    MAX_ERROR_MESSAGE_BYTES,
    redact_known_values,
    redact_message,
    sanitize_message,
    truncate_utf8,
)
from bubu._runtime.secrets import Secrets
from bubu.errors import (
    ConflictError,
    ContractError,
    EngramError,
    SchemaValidationError,
    StepTimeoutError,
    StorageError,
    TriggerPendingError,
)

# --- classifyError ---


@pytest.mark.parametrize(
    ("message", "kind"),
    [
        (None, "unknown"),
        ("failed to dehydrate output", "storage_error"),
        ("storage write failed", "storage_error"),
        ("failed to unmarshal inputs", "serialization_error"),
        ("marshal failed", "serialization_error"),
        ("schema mismatch", "validation_error"),
        ("input validation failed", "validation_error"),
        ("engram initialization failed", "initialization_error"),
        ("engram Init panicked", "initialization_error"),
        ("boom", "execution_error"),
        # order matters: storage wins over marshal; the test is case-sensitive
        ("storage: failed to unmarshal", "storage_error"),
        ("STORAGE down", "execution_error"),
        ("init failed", "execution_error"),
    ],
)
def test_classify_error_substring_rules(message: str | None, kind: str) -> None:
    assert classify_error(message) == kind


@pytest.mark.parametrize(
    ("value", "parsed"),
    [
        ("rateLimited", "rateLimited"),
        ("RATELIMITED", "rateLimited"),
        (" retry ", "retry"),
        ("Terminal", "terminal"),
        ("success", "success"),
        ("unknown", None),
        ("", None),
        (None, None),
        ("later", None),
    ],
)
def test_parse_exit_class_is_case_insensitive(value: str | None, parsed: str | None) -> None:
    assert parse_exit_class(value) == parsed


# --- phases and exit codes ---


def test_success() -> None:
    out = outcome_for(None)
    assert (out.phase, out.exit_code, out.exit_class) == ("Succeeded", 0, "success")
    assert out.error is None
    assert out.last_failure_msg is None


def test_plain_exception_is_terminal_failure() -> None:
    out = outcome_for(RuntimeError("boom"))
    assert (out.phase, out.exit_code, out.exit_class) == ("Failed", 1, "terminal")
    assert out.error is not None
    assert out.error.to_dict() == {
        "version": "v1",
        "type": "execution_error",
        "message": "RuntimeError: boom",
        "retryable": False,
        "exitCode": 1,
        "exitClass": "terminal",
    }
    assert out.last_failure_msg == "RuntimeError: boom"


def test_plain_exception_without_text_uses_type_name() -> None:
    out = outcome_for(KeyError())
    assert out.error is not None and out.error.message == "KeyError"


def test_timeout_flag() -> None:
    out = outcome_for(
        RuntimeError("batch execution timed out after 30m0s: context deadline exceeded"),
        timed_out=True,
    )
    assert (out.phase, out.exit_code, out.exit_class) == ("Timeout", 124, "retry")
    assert out.error is not None
    assert (out.error.type, out.error.retryable, out.error.exit_code) == ("timeout", True, 124)


def test_step_timeout_error_implies_timeout() -> None:
    out = outcome_for(StepTimeoutError("batch execution timed out after 5m0s: deadline"))
    assert (out.phase, out.exit_code, out.exit_class) == ("Timeout", 124, "retry")
    assert out.error is not None
    assert out.error.message == "batch execution timed out after 5m0s: deadline"


def test_timeout_overrides_provider_exit_class_but_keeps_its_retryable() -> None:
    out = outcome_for(EngramError("x", exit_class="terminal", retryable=False), timed_out=True)
    assert out.exit_class == "retry"
    assert out.error is not None
    assert (out.error.type, out.error.exit_class, out.error.retryable) == (
        "timeout",
        "retry",
        False,
    )


def test_timed_out_without_exception() -> None:
    out = outcome_for(None, timed_out=True)
    assert out.phase == "Timeout"
    assert out.error is not None and out.error.type == "timeout"


def test_cancelled_error_is_a_failure() -> None:
    out = outcome_for(asyncio.CancelledError())
    assert (out.phase, out.exit_code) == ("Failed", 1)
    assert out.error is not None and out.error.message == "execution cancelled"


# --- providers (EngramError and bubu errors) ---


def test_engram_error_overrides_every_field() -> None:
    exc = EngramError(
        "upstream said 429",
        type="execution_error",
        exit_class="rateLimited",
        code="HTTP_429",
        details={"retryAfter": 30},
    )
    out = outcome_for(exc)
    assert (out.phase, out.exit_code, out.exit_class) == ("Failed", 1, "rateLimited")
    assert out.error is not None
    assert out.error.to_dict() == {
        "version": "v1",
        "type": "execution_error",
        "message": "upstream said 429",
        "retryable": True,
        "exitCode": 1,
        "exitClass": "rateLimited",
        "code": "HTTP_429",
        "details": {"retryAfter": 30},
    }


def test_engram_error_rate_limited_any_case_is_honoured() -> None:
    assert outcome_for(EngramError("x", exit_class="RateLimited")).exit_class == "rateLimited"


def test_engram_error_retryable_without_exit_class() -> None:
    retry = outcome_for(EngramError("x", retryable=True))
    assert retry.exit_class == "retry"
    assert retry.error is not None and retry.error.retryable is True
    terminal = outcome_for(EngramError("x", retryable=False))
    assert terminal.exit_class == "terminal"
    assert terminal.error is not None and terminal.error.retryable is False


def test_engram_error_explicit_retryable_survives_exit_class() -> None:
    out = outcome_for(EngramError("x", exit_class="retry", retryable=False))
    assert out.exit_class == "retry"
    assert out.error is not None and out.error.retryable is False


def test_engram_error_unknown_exit_class_is_ignored() -> None:
    out = outcome_for(EngramError("x", exit_class="sometimes"))
    assert out.exit_class == "terminal"


def test_engram_error_type_wins_over_classification() -> None:
    out = outcome_for(EngramError("failed to unmarshal", type="validation_error"))
    assert out.error is not None and out.error.type == "validation_error"


def test_empty_engram_error_uses_cause_then_default() -> None:
    try:
        try:
            raise ValueError("root cause")
        except ValueError as cause:
            raise EngramError() from cause
    except EngramError as exc:
        out = outcome_for(exc)
    assert out.error is not None and out.error.message == "ValueError: root cause"
    assert outcome_for(EngramError()).error.message == "engram failed"  # type: ignore[union-attr]


def test_unserializable_details_become_a_summary() -> None:
    out = outcome_for(EngramError("x", details={"obj": object()}))
    assert out.error is not None and out.error.details is not None
    assert out.error.details["unserializable"] is True
    assert out.error.details["type"] == "dict"


def test_bubu_error_class_defaults_act_as_providers() -> None:
    assert outcome_for(ConflictError("conflict")).exit_class == "retry"
    assert outcome_for(TriggerPendingError("still pending")).exit_class == "retry"
    contract = outcome_for(ContractError("failed to unmarshal BUBU_TRIGGER_DATA: x"))
    assert contract.exit_class == "terminal"
    assert contract.error is not None and contract.error.type == "initialization_error"
    assert outcome_for(StorageError("s3 down")).error.type == "storage_error"  # type: ignore[union-attr]
    schema = outcome_for(SchemaValidationError("$.x: bad", path="$.x"))
    assert schema.error is not None and schema.error.type == "validation_error"


# --- message redaction and truncation ---


def test_message_is_redacted_everywhere() -> None:
    out = outcome_for(RuntimeError("call failed: Authorization: Bearer abc.def password=hunter2"))
    for text in (out.last_failure_msg, out.error.message):  # type: ignore[union-attr]
        assert text is not None
        assert "abc.def" not in text
        assert "hunter2" not in text


def test_provider_message_is_redacted() -> None:
    out = outcome_for(EngramError('bad "api_key": "sk-live-123"'))
    assert out.error is not None
    assert out.error.message == 'bad "api_key": "[REDACTED]"'


def test_message_truncated_to_8k_on_utf8_boundary() -> None:
    out = outcome_for(EngramError("é" * 10_000))
    assert out.error is not None
    data = out.error.message.encode()
    assert len(data) <= MAX_ERROR_MESSAGE_BYTES
    assert len(data) == 8192
    assert out.error.message == "é" * 4096


def test_structured_error_wire_order_and_omission() -> None:
    err = StructuredError(version="v1", type="unknown", message="m", exit_class="retry")
    assert msgspec.json.encode(err) == (
        b'{"version":"v1","type":"unknown","message":"m","exitClass":"retry"}'
    )


# --- redact.py ---


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Authorization: Bearer abc.def", "Authorization: [REDACTED] [REDACTED]"),
        ("authorization:basic Zm9v;next", "authorization:[REDACTED] [REDACTED];next"),
        ("password=hunter2", "password=[REDACTED]"),
        ("PASSWORD = 'hunter2' and more", "PASSWORD = '[REDACTED]' and more"),
        ('{"api_key": "sk-123", "x": 1}', '{"api_key": "[REDACTED]", "x": 1}'),
        ("x-api-key: abc", "x-api-key: [REDACTED]"),
        ("api-key=abc&next=1", "api-key=[REDACTED]&next=1"),
        ("access_token=a refresh-token=b", "access_token=[REDACTED] refresh-token=[REDACTED]"),
        ("client_secret: s", "client_secret: [REDACTED]"),
        ("mytoken=x", "mytoken=[REDACTED]"),
        ("token=a,b", "token=[REDACTED],b"),
        ("nothing to hide", "nothing to hide"),
        # Go RE2 \s is ASCII [\t\n\f\r ]; a vertical tab is not a separator
        ("password=\x0bvalue", "password=[REDACTED]"),
    ],
)
def test_redact_message_patterns(text: str, expected: str) -> None:
    assert redact_message(text) == expected


def test_truncate_utf8() -> None:
    assert truncate_utf8("abc", 0) == "abc"
    assert truncate_utf8("abc", -1) == "abc"
    assert truncate_utf8("abc", 3) == "abc"
    assert truncate_utf8("aé", 2) == "a"
    assert truncate_utf8("😀😀", 5) == "😀"


@given(st.text(), st.integers(min_value=1, max_value=64))
def test_truncate_utf8_never_splits_or_exceeds(text: str, limit: int) -> None:
    cut = truncate_utf8(text, limit)
    assert len(cut.encode("utf-8", "surrogatepass")) <= limit
    assert text.startswith(cut)


def test_sanitize_message_redacts_then_truncates() -> None:
    assert sanitize_message("password=secret " + "x" * 10, limit=20) == "password=[REDACTED] "


@pytest.mark.parametrize(
    "secrets",
    [Secrets({"k": "hunter2", "k2": "hunter2-extended"}), ["hunter2", "hunter2-extended"]],
)
def test_redact_known_values(secrets: Any) -> None:
    text = "a hunter2-extended b hunter2 c"
    assert redact_known_values(text, secrets) == "a [REDACTED] b [REDACTED] c"


def test_redact_known_values_min_length_and_empty() -> None:
    assert redact_known_values("a b", ["", "a"], min_length=2) == "a b"
    assert redact_known_values("a b", ["", "a"]) == "[REDACTED] b"
