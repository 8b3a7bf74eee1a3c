"""One function turns the end of a step into its outcome: phase, exit code, StructuredError v1.

``outcome_for`` implements docs/contract/errors.md#structured-error and batch.go
``applyExitMetadata`` / ``appendStructuredError``: the error type comes from ``classifyError``'s
substring rules unless the exception chooses it; a ``BubuError`` (``EngramError`` above all)
overrides type, message, retryable, exit class, code and details; the message is redacted and
truncated to 8 KiB.

Deliberate fix (docs/differences.md): Go's ``parseExitClass`` lowercases the
provider's exit class and then compares it with ``"rateLimited"``, so ``rateLimited`` is never
honoured. Here exit classes match case-insensitively and ``rateLimited`` is kept (and retryable).

Pure data; imports ``bubu.errors`` and ``_runtime.redact`` only.
"""

from __future__ import annotations

import asyncio
from typing import Any, Final, Literal

import msgspec

from bubu._runtime.redact import sanitize_message
from bubu.errors import BubuError, EngramError, StepTimeoutError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_SUCCESS",
    "EXIT_TIMEOUT",
    "Outcome",
    "StructuredError",
    "classify_error",
    "outcome_for",
    "parse_exit_class",
]

EXIT_SUCCESS: Final = 0
EXIT_FAILURE: Final = 1
EXIT_TIMEOUT: Final = 124

Phase = Literal["Succeeded", "Failed", "Timeout"]
ExitClass = Literal["success", "retry", "terminal", "rateLimited", "unknown"]

_EXIT_CLASSES: Final[dict[str, ExitClass]] = {
    "success": "success",
    "retry": "retry",
    "terminal": "terminal",
    "ratelimited": "rateLimited",
}


class StructuredError(
    msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True, rename="camel"
):
    """StructuredError v1, as written to ``StepRun.status.error``.

    See docs/contract/errors.md#structured-error.

    Encodes with camelCase names in Go's declaration order (``version``, ``type``, ``message``,
    ``retryable``, ``exitCode``, ``exitClass``, ``code``, ``details``), omitting unset fields.
    """

    version: str
    type: str
    message: str
    retryable: bool | None = None
    exit_code: int | None = None
    exit_class: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        """Return the wire form (camelCase keys, unset fields omitted)."""
        result: dict[str, Any] = msgspec.to_builtins(self)
        return result


class Outcome(msgspec.Struct, frozen=True, kw_only=True):
    """How a step ended.

    Attributes:
        phase: ``Succeeded``, ``Failed`` or ``Timeout``.
        exit_code: 0, 1 or 124 (the process exit code and ``status.exitCode``).
        exit_class: ``status.exitClass``.
        error: ``status.error``; ``None`` on success.
        last_failure_msg: ``status.lastFailureMsg`` (redacted, <= 8 KiB); ``None`` on success.
    """

    phase: Phase
    exit_code: int
    exit_class: ExitClass
    error: StructuredError | None = None
    last_failure_msg: str | None = None


def classify_error(message: str | None) -> str:
    """Return the StructuredError type from message substrings (batch.go ``classifyError``).

    Case-sensitive and in order: ``dehydrat``/``storage`` -> storage_error;
    ``unmarshal``/``marshal`` -> serialization_error; ``schema``/``validation`` ->
    validation_error; ``initialization``/``Init`` -> initialization_error; else execution_error.
    ``None`` (no error) -> unknown.
    """
    if message is None:
        return "unknown"
    if "dehydrat" in message or "storage" in message:
        return "storage_error"
    if "unmarshal" in message or "marshal" in message:
        return "serialization_error"
    if "schema" in message or "validation" in message:
        return "validation_error"
    if "initialization" in message or "Init" in message:
        return "initialization_error"
    return "execution_error"


def parse_exit_class(value: str | None) -> ExitClass | None:
    """Parse an exit class case-insensitively (``RateLimited`` -> ``rateLimited``).

    Returns ``None`` for an empty or unknown value (Go ignores those too).
    """
    if not value:
        return None
    return _EXIT_CLASSES.get(value.strip().lower())


def _message_of(exc: BaseException) -> str:
    text = str(exc)
    if isinstance(exc, EngramError) and not text:
        # Go StructuredError.Error(): the message, else the cause's text, else "engram failed".
        cause = exc.__cause__
        return _message_of(cause) if cause is not None else "engram failed"
    if isinstance(exc, BubuError):
        return text or type(exc).__name__
    # Name the exception type: a bare KeyError('x') says "'x'", which tells an operator nothing.
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _provided(exc: BubuError, attr: str, base_default: Any) -> Any:
    # An instance override (set by the constructor keyword) or a subclass default that differs
    # from BubuError's is a choice the error makes; BubuError's own default is not.
    if attr in vars(exc):
        return vars(exc)[attr]
    value = getattr(type(exc), attr, base_default)
    return None if value == base_default else value


def _safe_details(details: Any) -> dict[str, Any] | None:
    if details is None:
        return None
    try:
        value = msgspec.to_builtins(details)
        msgspec.json.encode(value)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        # Go replaces unmarshallable details with a summary rather than failing the status write.
        return {
            "unserializable": True,
            "marshalError": str(exc),
            "type": type(details).__name__,
            "details": {"len": len(details) if hasattr(details, "__len__") else 0},
        }
    if not isinstance(value, dict):
        return {"value": value}
    return value


def _declared_type(exc: BubuError) -> str | None:
    # A class that declares error_type chose the status type (SchemaLookupError declares
    # execution_error even though its message says "schema", as Go's NewStructuredError does).
    for cls in type(exc).__mro__:
        if cls is BubuError:
            return None
        if "error_type" in vars(cls):
            return str(vars(cls)["error_type"])
    return None


def outcome_for(exc: BaseException | None, *, timed_out: bool = False) -> Outcome:
    """Map how a step ended to its phase, exit code and StructuredError v1.

    Args:
        exc: the exception that ended the step, or ``None`` on success.
        timed_out: the step deadline (``BUBU_STEP_TIMEOUT``) expired; also implied by a
            ``StepTimeoutError``.

    Returns:
        ``Succeeded``/0/``success`` with no error; ``Timeout``/124/``retry`` with type
        ``timeout``; otherwise ``Failed``/1 with exit class ``terminal`` unless the exception
        chooses one (``exit_class``, or ``retryable`` -> ``retry``/``terminal``).
    """
    timed_out = timed_out or isinstance(exc, StepTimeoutError)
    if exc is None and not timed_out:
        return Outcome(phase="Succeeded", exit_code=EXIT_SUCCESS, exit_class="success")

    if exc is None:
        raw_message = "batch execution timed out"
    elif isinstance(exc, asyncio.CancelledError):
        raw_message = "execution cancelled"
    else:
        raw_message = _message_of(exc)

    err_type = classify_error(raw_message)
    message = sanitize_message(raw_message)
    provided_retryable: bool | None = None
    provided_exit_class: str | None = None
    code: str | None = None
    details: dict[str, Any] | None = None

    if isinstance(exc, BubuError):
        provided_retryable = _provided(exc, "retryable", BubuError.retryable)
        provided_exit_class = _provided(exc, "exit_class", BubuError.exit_class)
        code = exc.code or None
        if isinstance(exc, EngramError):
            # The user chose the type (NewStructuredError always sets one).
            err_type = exc.type or err_type
            details = _safe_details(exc.details)
        elif (declared := _declared_type(exc)) is not None:
            err_type = declared

    if timed_out:
        phase: Phase = "Timeout"
        exit_code = EXIT_TIMEOUT
        exit_class: ExitClass = "retry"
        err_type = "timeout"
    else:
        phase = "Failed"
        exit_code = EXIT_FAILURE
        exit_class = "terminal"
        parsed = parse_exit_class(provided_exit_class)
        if parsed is not None:
            exit_class = parsed
        elif provided_retryable is not None:
            exit_class = "retry" if provided_retryable else "terminal"

    # As Go does (docs/contract/errors.md#exit-codes): the status exit class is written into the
    # error; retryable follows it unless the error chose retryable itself.
    retryable = (
        provided_retryable
        if provided_retryable is not None
        else exit_class in ("retry", "rateLimited")
    )
    error = StructuredError(
        version="v1",
        type=err_type,
        message=message,
        retryable=retryable,
        exit_code=exit_code,
        exit_class=exit_class,
        code=code,
        details=details,
    )
    return Outcome(
        phase=phase,
        exit_code=exit_code,
        exit_class=exit_class,
        error=error,
        last_failure_msg=sanitize_message(raw_message),
    )
