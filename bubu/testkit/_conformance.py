"""Conformance suites and message validators (Go ``conformance`` / ``testkit``).

See docs/testing.md#conformance.

``StreamSuite`` runs a :class:`~bubu.testkit.StreamHarness` and checks what Go's
``conformance.StreamSuite`` checks: every output is a valid message, a minimum number of
outputs, every input ``done()``, and the expected-error rules. The validators raise
:class:`ConformanceError` (an ``AssertionError``, so pytest shows the text as a test failure).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from bubu._runtime.messages import StreamMessage
from bubu._runtime.outcome import outcome_for
from bubu._runtime.secrets import Secrets
from bubu.errors import ERROR_TYPES, EXIT_CLASSES, BubuError, ProtocolViolationError
from bubu.testkit._stream import StreamHarness

__all__ = [
    "BatchSuite",
    "ConformanceError",
    "StreamSuite",
    "validate_stream_error_message",
    "validate_stream_message",
    "validate_structured_error",
]


class ConformanceError(AssertionError):
    """A conformance check failed; the message says which and why."""


def validate_structured_error(doc: Any) -> None:
    """Check a StructuredError v1 document (Go ``ValidateStructuredError``).

    Raises:
        ConformanceError: ``version`` is not ``v1``, ``type`` is not one of the 7 types,
            ``message`` is blank, or ``exitClass`` is not one of the 5 classes.
    """
    if not isinstance(doc, Mapping):
        raise ConformanceError(f"structured error must be a JSON object, got {type(doc).__name__}")
    if doc.get("version") != "v1":
        raise ConformanceError(f"structured error version must be 'v1', got {doc.get('version')!r}")
    if doc.get("type") not in ERROR_TYPES:
        raise ConformanceError(
            f"structured error type {doc.get('type')!r} is not one of {', '.join(ERROR_TYPES)}"
        )
    message = doc.get("message")
    if not isinstance(message, str) or not message.strip():
        raise ConformanceError("structured error message must not be blank")
    exit_class = doc.get("exitClass")
    if exit_class is not None and exit_class not in EXIT_CLASSES:
        raise ConformanceError(
            f"structured error exitClass {exit_class!r} is not one of {', '.join(EXIT_CLASSES)}"
        )


def validate_stream_error_message(message: StreamMessage) -> None:
    """Check an ``error``-kind message (Go ``ValidateStreamErrorMessage``).

    Raises:
        ConformanceError: no payload, or the payload is not a valid StructuredError.
    """
    if not message.payload:
        raise ConformanceError("stream error message has no payload")
    try:
        doc = message.json_data()
    except ProtocolViolationError as exc:
        raise ConformanceError(f"stream error message payload: {exc}") from None
    validate_structured_error(doc)


def validate_stream_message(message: StreamMessage) -> None:
    """Check one output the way Go ``ValidateStreamMessage`` does.

    An ``error`` kind must carry a valid StructuredError; then ``StreamMessage.validate`` must
    pass; then the message must carry audio, video, binary, payload, inputs or transports.

    Raises:
        ConformanceError: naming the problem.
    """
    if message.is_error:
        validate_stream_error_message(message)
    try:
        message.validate()
    except ProtocolViolationError as exc:
        raise ConformanceError(f"invalid stream message: {exc}") from None
    if not (
        message.audio
        or message.video
        or message.binary
        or message.payload
        or message.inputs
        or message.transports
    ):
        raise ConformanceError(
            "stream message carries no audio, video, binary, payload, inputs or transports"
        )


@dataclass
class StreamSuite:
    """Go ``conformance.StreamSuite``: run the engram over ``inputs`` and check the outcome.

    Attributes:
        engram: the streaming engram.
        config: its config (instance or dict).
        inputs: the inbound messages.
        secrets: plain secret values.
        require_valid_messages: validate every output (``validate_stream_message``).
        require_non_empty_output: at least one output.
        min_output_count: at least this many outputs.
        require_all_inputs_done: every input was ``done()`` (checked on success only).
        expect_error: the run must fail.
        require_structured_error: the run must fail with an error that maps to a valid
            StructuredError (a ``bubu.errors.BubuError``).
        validate_error: called with the error on the expected-error path.
        validate_output: called with each output.
        timeout: seconds before the run is cancelled.
    """

    engram: Any
    config: Any = None
    inputs: Sequence[StreamMessage] = ()
    secrets: Mapping[str, str] | Secrets | None = None
    require_valid_messages: bool = True
    require_non_empty_output: bool = False
    min_output_count: int = 0
    require_all_inputs_done: bool = False
    expect_error: bool = False
    require_structured_error: bool = False
    validate_error: Callable[[BaseException], None] | None = None
    validate_output: Callable[[StreamMessage], None] | None = None
    timeout: float | None = 60.0

    async def run(self) -> list[StreamMessage]:
        """Run the suite; return the outputs.

        Raises:
            ConformanceError: a check failed.
        """
        harness = StreamHarness(
            engram=self.engram,
            config=self.config,
            inputs=self.inputs,
            secrets=self.secrets,
            timeout=self.timeout,
        )
        error: BaseException | None = None
        try:
            await harness.run()
        except Exception as exc:
            error = exc
        outputs = harness.outputs
        if error is not None:
            if not (self.expect_error or self.require_structured_error):
                raise ConformanceError(f"engram stream failed unexpectedly: {error!r}") from error
            if self.require_structured_error:
                _check_structured(error)
            if self.validate_error is not None:
                self.validate_error(error)
            self._check_outputs(outputs)
            return outputs
        if self.require_structured_error:
            raise ConformanceError("expected structured error, but engram completed successfully")
        if self.expect_error:
            raise ConformanceError("expected error, but engram completed successfully")
        minimum = max(self.min_output_count, 1 if self.require_non_empty_output else 0)
        if len(outputs) < minimum:
            raise ConformanceError(f"expected at least {minimum} output(s), got {len(outputs)}")
        if self.require_all_inputs_done and harness.done_count != len(self.inputs):
            raise ConformanceError(
                f"expected every input done: {harness.done_count} of {len(self.inputs)} done"
            )
        self._check_outputs(outputs)
        return outputs

    def _check_outputs(self, outputs: list[StreamMessage]) -> None:
        for index, message in enumerate(outputs):
            if self.require_valid_messages:
                try:
                    validate_stream_message(message)
                except ConformanceError as exc:
                    raise ConformanceError(f"output {index}: {exc}") from None
            if self.validate_output is not None:
                self.validate_output(message)


def _check_structured(error: BaseException) -> None:
    if not isinstance(error, BubuError):
        raise ConformanceError(
            f"expected a structured error (a bubu.errors.BubuError), got {error!r}"
        ) from error
    structured = outcome_for(error).error
    validate_structured_error(None if structured is None else structured.to_dict())


@dataclass
class BatchSuite:
    """Go ``conformance.BatchSuite``: run a batch engram once and check the outcome.

    Attributes:
        engram: the batch engram.
        config: its config (instance or dict).
        inputs: its inputs (instance or dict).
        secrets: plain secret values.
        expect_error: the run must fail.
        require_structured_error: the run must fail with an error that maps to a valid
            StructuredError (a ``bubu.errors.BubuError``).
        validate_error: called with the error on the expected-error path.
        validate_result: called with the ``Result`` on success.
        timeout: the step timeout in seconds.
    """

    engram: Any
    config: Any = None
    inputs: Any = None
    secrets: Mapping[str, str] | None = None
    expect_error: bool = False
    require_structured_error: bool = False
    validate_error: Callable[[BaseException], None] | None = None
    validate_result: Callable[[Any], None] | None = None
    timeout: float | None = 60.0

    async def run(self) -> Any:
        """Run the suite; return the ``Result`` (``None`` on the expected-error path).

        Raises:
            ConformanceError: a check failed.
        """
        from bubu.testkit._batch import BatchHarness

        harness = BatchHarness(
            engram=self.engram,
            config=self.config,
            inputs=self.inputs,
            secrets=self.secrets,
            timeout=self.timeout,
        )
        try:
            result = await harness.run()
        except Exception as error:
            if not (self.expect_error or self.require_structured_error):
                raise ConformanceError(f"engram failed unexpectedly: {error!r}") from error
            if self.require_structured_error:
                _check_structured(error)
            if self.validate_error is not None:
                self.validate_error(error)
            return None
        if self.require_structured_error:
            raise ConformanceError("expected structured error, but engram completed successfully")
        if self.expect_error:
            raise ConformanceError("expected error, but engram completed successfully")
        if self.validate_result is not None:
            self.validate_result(result)
        return result
