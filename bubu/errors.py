"""Every exception the SDK raises, in one public leaf module.

This module imports nothing from ``bubu``: any layer may import it.

The tree::

    BubuError                         base: .retryable, .exit_class, .code (overridable defaults)
    ├── ContractError                 the runtime environment or bundle is unusable (a BUBU_* value
    │                                 is missing or invalid); names the variable
    ├── SecretExpansionError          a secret descriptor could not be expanded (fails closed)
    ├── EngramError                   raised by user code to choose the outcome (StructuredError v1)
    │   └── SchemaValidationError     inputs, config or outputs fail decoding or a schema; .path,
    │                                 .violations (every schema violation with its JSON path)
    ├── SchemaLookupError             (retryable) the template holding a schema could not be read
    ├── StepTimeoutError              BUBU_STEP_TIMEOUT reached: Timeout, exit 124, class retry
    ├── TemplateError                 a template fails to parse or evaluate; .position
    │   ├── TemplateBlockedError      a template reads a step output that does not exist yet
    │   └── OffloadedDataError        a template needs step data that is still in storage
    ├── PlatformError                 a platform service (Kubernetes, storage, transport) failed
    │   ├── KubernetesError           .status_code, .reason
    │   │   ├── NotFoundError
    │   │   ├── ConflictError
    │   │   ├── ForbiddenError
    │   │   ├── InvalidTransitionError  a StepRun phase change the state machine refuses
    │   │   ├── PodFencedError        the StepRun belongs to another pod (zombie fencing)
    │   │   └── WatchExpiredError     a watch resourceVersion is gone (HTTP 410)
    │   ├── StorageError              offloading, hydrating or a blob/log write failed; .ref
    │   │   ├── StorageDisabledError  a ref or an oversized payload met disabled storage
    │   │   ├── StorageRefError       a ref, path or selector is invalid (escapes the root or the
    │   │   │                         namespace, selects into a non-array, is too deep or cyclic)
    │   │   ├── StorageNotFoundError  the referenced object (or ConfigMap/Secret key) is missing
    │   │   ├── StorageAccessError    the store or the API server refused the credentials
    │   │   ├── StorageUnavailableError  (retryable) the store cannot be reached or failed
    │   │   └── StorageTimeoutError   (retryable) BUBU_STORAGE_TIMEOUT reached
    │   └── TransportError
    │       ├── ConnectorUnavailableError  (retryable) the connector cannot be reached
    │       ├── StreamClosedError          the peer closed the stream
    │       ├── StreamSessionError         (retryable) a streaming session failed; reconnect
    │       │   ├── MessageTooLargeError   a message over the 10 MiB cap (inbound: not retried)
    │       │   ├── DedupeOverflowError    more packets pending than the deduper holds
    │       │   └── ChunkError             a chunk sequence breaks the chunking rules
    │       ├── HandshakeTimeoutError      the connector never completed the startup handshake
    │       ├── HangTimeoutError           no traffic for BUBU_GRPC_HANG_TIMEOUT; the process stops
    │       └── ProtocolViolationError     a packet or binding breaks the wire contract
    │           └── PacketValidationError      a buf.validate rule failed; .field, .rule_id
    ├── TriggerError                  StoryTrigger admission failed
    │   ├── TriggerRejectedError      the controller answered Rejected; .reason
    │   │   └── TriggerIdentityConflictError  token/key reused with different inputs
    │   ├── TriggerPendingError       (retryable) no decision before the deadline
    │   └── StoryRunNotFoundError     stop_story on a run that does not exist
    ├── ImpulseSessionError           dispatcher session already active / not found
    │   ├── ImpulseSessionExistsError
    │   └── ImpulseSessionNotFoundError
    ├── EffectError
    │   ├── EffectAlreadyRecordedError  the effect is completed or held by another process
    │   └── EffectsUnavailableError     not running inside a StepRun
    ├── SignalsUnavailableError       not running inside a StepRun
    ├── LogsUnavailableError          logs need a StepRun and enabled storage (a soft failure)
    ├── LogFileError                  a log file outside the allowed roots, not regular, too big
    ├── SignalError                   empty signal key, or a summary above the size limit
    └── IdempotencyUnavailableError   no StoryRun/StepRun identity to derive an idempotency key

Names end in ``Error`` and never shadow a builtin or an asyncio name; ``asyncio.CancelledError``
is never wrapped.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "BubuError",
    "ChunkError",
    "ConflictError",
    "ConnectorUnavailableError",
    "ContractError",
    "DedupeOverflowError",
    "EffectAlreadyRecordedError",
    "EffectError",
    "EffectsUnavailableError",
    "EngramError",
    "ForbiddenError",
    "HandshakeTimeoutError",
    "HangTimeoutError",
    "IdempotencyUnavailableError",
    "ImpulseSessionError",
    "ImpulseSessionExistsError",
    "ImpulseSessionNotFoundError",
    "InvalidTransitionError",
    "KubernetesError",
    "LogFileError",
    "LogsUnavailableError",
    "MessageTooLargeError",
    "NotFoundError",
    "OffloadedDataError",
    "PacketValidationError",
    "PlatformError",
    "PodFencedError",
    "ProtocolViolationError",
    "SchemaLookupError",
    "SchemaValidationError",
    "SecretExpansionError",
    "SignalError",
    "SignalsUnavailableError",
    "StepTimeoutError",
    "StorageAccessError",
    "StorageDisabledError",
    "StorageError",
    "StorageNotFoundError",
    "StorageRefError",
    "StorageTimeoutError",
    "StorageUnavailableError",
    "StoryRunNotFoundError",
    "StreamClosedError",
    "StreamSessionError",
    "TemplateBlockedError",
    "TemplateError",
    "TransportError",
    "TriggerError",
    "TriggerIdentityConflictError",
    "TriggerPendingError",
    "TriggerRejectedError",
    "WatchExpiredError",
]

# StructuredError v1 vocabularies (docs/contract/errors.md#structured-error).
ERROR_TYPES = (
    "timeout",
    "storage_error",
    "serialization_error",
    "validation_error",
    "initialization_error",
    "execution_error",
    "unknown",
)
EXIT_CLASSES = ("success", "retry", "terminal", "rateLimited", "unknown")


class BubuError(Exception):
    """Base class of every SDK error.

    Class attributes give the defaults used when the error decides a step's outcome; an
    instance may override them through the constructor keywords.
    """

    retryable: bool = False
    exit_class: str = "terminal"
    code: str | None = None
    error_type: ClassVar[str] = "execution_error"

    def __init__(
        self,
        message: str = "",
        *,
        retryable: bool | None = None,
        exit_class: str | None = None,
        code: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        if retryable is not None:
            self.retryable = retryable
        if exit_class is not None:
            self.exit_class = exit_class
        if code is not None:
            self.code = code

    def __str__(self) -> str:
        return self.message


class ContractError(BubuError):
    """The runtime environment is unusable: a ``BUBU_*`` value is missing or invalid.

    ``variable`` names the environment variable (or bundle key) at fault.
    """

    error_type: ClassVar[str] = "initialization_error"

    def __init__(self, message: str, *, variable: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.variable = variable


class SecretExpansionError(BubuError):
    """A secret descriptor (``env:``, ``file:``) could not be expanded; the step fails closed.

    The message names the secret, never its value.
    """

    error_type: ClassVar[str] = "initialization_error"


class EngramError(BubuError):
    """Raised by engram code to choose the step's outcome.

    Maps one to one onto StructuredError v1: ``type``, ``message``, ``retryable``,
    ``exit_class``, ``code`` and ``details``.
    """

    def __init__(
        self,
        message: str = "",
        *,
        type: str = "execution_error",
        retryable: bool | None = None,
        exit_class: str | None = None,
        code: str | None = None,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message, retryable=retryable, exit_class=exit_class, code=code)
        self.type = type
        self.details = details
        self._retryable_set = retryable is not None


class SchemaValidationError(EngramError):
    """Inputs, config or outputs failed to decode or to match a schema.

    ``path`` is the JSON path of the (first) offending value (``$.inputs.items[0].qty``);
    ``violations`` lists every schema violation as ``(json_path, message)`` pairs when the
    error comes from a JSON Schema, in document order.
    """

    error_type: ClassVar[str] = "validation_error"

    def __init__(
        self,
        message: str,
        *,
        path: str | None = None,
        violations: tuple[tuple[str, str], ...] = (),
        **kw: Any,
    ) -> None:
        kw.setdefault("type", "validation_error")
        super().__init__(message, **kw)
        self.path = path
        self.violations = violations


class SchemaLookupError(BubuError):
    """The Engram, StepRun or template that holds a schema could not be read.

    Retryable (``execution_error``, exit class ``retry``), as Go's lookup failures are: the
    schema exists but the API server did not answer.
    """

    error_type: ClassVar[str] = "execution_error"
    retryable = True
    exit_class = "retry"


class StepTimeoutError(BubuError):
    """``BUBU_STEP_TIMEOUT`` was reached: phase ``Timeout``, exit code 124, class ``retry``."""

    retryable = True
    exit_class = "retry"
    error_type: ClassVar[str] = "timeout"

    def __init__(self, message: str, *, timeout: float | None = None) -> None:
        super().__init__(message)
        self.timeout = timeout


class TemplateError(BubuError):
    """A template failed to parse or to evaluate.

    ``position`` is ``"line:column"`` (1-based line, 0-based byte column, as Go reports it)
    of the construct at fault when one is known.
    """

    error_type: ClassVar[str] = "validation_error"

    def __init__(self, message: str, *, position: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.position = position


class TemplateBlockedError(TemplateError):
    """A template reads ``steps.<name>...`` that is not there yet (Go ``ErrEvaluationBlocked``).

    The text is Go's: ``template evaluation blocked: missing key at steps.fetch.output``.
    """


class OffloadedDataError(TemplateError):
    """A template needs step data that is still offloaded to storage (Go ``ErrOffloadedDataUsage``).

    Raised when a compound template (pipes, functions) touches a step output that holds a
    ``$bubuStorageRef``; hydrate the context first or use a single path, which yields a lazy
    storage selector instead.
    """


class PlatformError(BubuError):
    """A platform service (Kubernetes, storage or transport) failed."""


class KubernetesError(PlatformError):
    """The Kubernetes API answered with an error or could not be reached."""

    def __init__(
        self,
        message: str,
        *,
        status_code: int | None = None,
        reason: str | None = None,
        retry_after: float | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.status_code = status_code
        self.reason = reason
        # Seconds the server asked us to wait (``Retry-After`` on 429/503), when it said so.
        self.retry_after = retry_after


class NotFoundError(KubernetesError):
    """The object does not exist (HTTP 404)."""


class ConflictError(KubernetesError):
    """The object changed under us or already exists (HTTP 409)."""

    retryable = True
    exit_class = "retry"


class ForbiddenError(KubernetesError):
    """The identity the SDK runs as may not do this (HTTP 403)."""


class InvalidTransitionError(KubernetesError):
    """The StepRun phase state machine refuses the requested phase change."""


class PodFencedError(KubernetesError):
    """Zombie-pod fencing: the StepRun belongs to another pod (``status.podName``).

    Never retried.
    """


class WatchExpiredError(KubernetesError):
    """A watch's resourceVersion is too old (HTTP 410 Gone): read the object again and re-watch."""


class StorageError(PlatformError):
    """Offloading or hydrating a payload, or writing a blob or log, failed.

    ``ref`` names the storage path or ``ConfigMap``/``Secret`` reference involved, when there is
    one. Messages never carry credentials or payload contents.
    """

    error_type: ClassVar[str] = "storage_error"

    def __init__(self, message: str, *, ref: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.ref = ref


class StorageDisabledError(StorageError):
    """A storage reference, or a payload above ``BUBU_MAX_INLINE_SIZE``, met disabled storage."""


class StorageRefError(StorageError):
    """A reference, path or selector is invalid.

    An absolute path, a ``..`` segment, a cross-namespace ``ConfigMap``/``Secret`` reference,
    a malformed selector or one that selects into the wrong type, a structure nested deeper
    than ``BUBU_MAX_RECURSION_DEPTH`` or a cyclic one.
    """


class StorageNotFoundError(StorageError):
    """The referenced object, ConfigMap, Secret or key does not exist."""


class StorageAccessError(StorageError):
    """The object store or the API server refused the request (credentials, permissions)."""


class StorageUnavailableError(StorageError):
    """The object store cannot be reached or failed (connection, 5xx); retry the step."""

    retryable = True
    exit_class = "retry"


class StorageTimeoutError(StorageError):
    """A storage operation ran past ``BUBU_STORAGE_TIMEOUT``; retry the step."""

    retryable = True
    exit_class = "retry"


class TransportError(PlatformError):
    """The streaming transport failed."""


class ConnectorUnavailableError(TransportError):
    """The connector sidecar cannot be reached; the SDK reconnects."""

    retryable = True
    exit_class = "retry"


class StreamClosedError(TransportError):
    """The peer closed the stream."""


class StreamSessionError(TransportError):
    """A streaming session failed in a way a reconnect may fix.

    Covers an unexpected end of the Data or Control stream, an invalid inbound packet, a bad
    chunk sequence, dedupe overflow and send timeouts (docs/contract/stream.md#errors): the
    runner reconnects with jittered backoff, as the Go SDK does.
    """

    retryable = True
    exit_class = "retry"


class MessageTooLargeError(StreamSessionError):
    """A message exceeds the 10 MiB cap (``BUBU_GRPC_CLIENT_MAX_*``); the text names the size,
    the limit, the variable that sets it and, inbound, the message (stream id and sequence).

    Outbound, the runner raises it before the wire (thrown back at the engram's ``yield``).
    Inbound it is not retried: Go's client fails the call with RESOURCE_EXHAUSTED and
    reconnects, and the connector then redelivers the same message, in a loop that ends only
    when the retries are exhausted, with a misleading error. Here the run stops with this one
    (docs/differences.md).
    """


class DedupeOverflowError(StreamSessionError):
    """More packets are pending (delivered, not done) than the deduper holds; the session fails.

    See docs/contract/stream.md#dedupe.

    Retryable, as in Go: the reconnect clears the pending set and the hub replays.
    """


class ChunkError(StreamSessionError):
    """A chunk sequence breaks the rules of the contract; the session fails and reconnects.

    See docs/contract/stream.md#chunking.
    """


class HandshakeTimeoutError(TransportError):
    """The connector did not complete the startup handshake in time.

    See docs/contract/stream.md#startup.

    Not retried, as in Go (``errControlStartupHandshakeTimeout``).
    """


class HangTimeoutError(TransportError):
    """No traffic for ``BUBU_GRPC_HANG_TIMEOUT``: the session is cancelled and, as in Go, the
    process stops instead of reconnecting (docs/contract/stream.md#errors)."""


class ProtocolViolationError(TransportError):
    """A packet, frame or binding breaks the wire contract; not retried."""


class PacketValidationError(ProtocolViolationError):
    """A protobuf packet breaks a ``buf.validate`` rule of ``transport.v1``.

    ``field`` is the path of the first offending field (``audio.sample_rate_hz``,
    ``metadata[""]``), ``rule_id`` its rule (``int32.gte_lte``), and ``violations`` every
    ``(field, rule_id, message)`` found. Go treats these as session errors (reconnect).
    """

    def __init__(
        self,
        message: str,
        *,
        field: str = "",
        rule_id: str = "",
        violations: list[tuple[str, str, str]] | None = None,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.field = field
        self.rule_id = rule_id
        self.violations = violations or []


class TriggerError(BubuError):
    """StoryTrigger admission failed."""


class TriggerRejectedError(TriggerError):
    """The trigger controller answered ``Rejected``; ``reason`` is its reason."""

    def __init__(self, message: str, *, reason: str | None = None, **kw: Any) -> None:
        super().__init__(message, **kw)
        self.reason = reason


class TriggerIdentityConflictError(TriggerRejectedError):
    """A StoryTrigger with this name exists with a different immutable request.

    See docs/contract/story-trigger.md#waiting-and-duplicates.

    Raised before any controller decision, when a token or key is reused with other inputs:
    ``storytrigger '<name>' already exists with different immutable request identity; reuse is
    not allowed``. Never retryable: the token stays bound to its first inputs.
    """


class TriggerPendingError(TriggerError):
    """No decision was made before the deadline; submitting again is safe."""

    retryable = True
    exit_class = "retry"


class StoryRunNotFoundError(TriggerError):
    """The StoryRun to stop does not exist.

    ``session`` is the dispatcher session that named it, when a ``StoryDispatcher`` stopped it.
    """

    session: Any = None


class ImpulseSessionError(BubuError):
    """A dispatcher session is already active, or was not found."""


class ImpulseSessionExistsError(ImpulseSessionError):
    """``StoryDispatcher.trigger`` with a session key that is already active.

    The message starts with Go's ``ErrImpulseSessionExists`` text, ``impulse session already
    active``, then the key.
    """


class ImpulseSessionNotFoundError(ImpulseSessionError):
    """``StoryDispatcher.stop`` with a session key that is not tracked.

    The message starts with Go's ``ErrImpulseSessionNotFound`` text, ``impulse session not
    found``, then the key. An empty key gives Go's own ``session key is required``.
    """


class EffectError(BubuError):
    """An effect could not be claimed, run or recorded."""


class EffectAlreadyRecordedError(EffectError):
    """The effect is completed, or currently held by another process.

    The message starts with Go's ``ErrEffectAlreadyRecorded`` text, ``effect already recorded``,
    then the key (and, when held elsewhere, ``is in progress under another holder``).

    ``details`` holds the recorded details (the claim's ``spec.details`` or the ledger entry's)
    when they are known; ``in_progress`` is True when another holder still has a live lease.
    """

    def __init__(
        self,
        message: str,
        *,
        key: str | None = None,
        details: dict[str, Any] | None = None,
        in_progress: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(message, **kw)
        self.key = key
        self.details = details
        self.in_progress = in_progress


class EffectsUnavailableError(EffectError):
    """Effects need a StepRun: not running inside one.

    The message starts with Go's ``ErrEffectsUnavailable`` text, ``effect recording
    unavailable: not running inside a StepRun``, then the reason in parentheses.
    """


class SignalsUnavailableError(BubuError):
    """Signals need a StepRun: not running inside one.

    The message starts with Go's ``ErrSignalsUnavailable`` text, ``signal emission
    unavailable: not running inside a StepRun``, then the reason in parentheses.
    """


class LogsUnavailableError(BubuError):
    """Logs cannot be published: not inside a StepRun, or storage is disabled.

    Go's ``ErrLogsUnavailable``; callers may treat it as a soft failure.
    """

    def __init__(
        self,
        message: str = (
            "log publishing unavailable: not running inside a StepRun or storage disabled"
        ),
    ) -> None:
        super().__init__(message)


class LogFileError(BubuError):
    """A log file cannot be published: outside the allowed roots, not a regular file, or larger
    than ``BUBU_LOG_FILE_MAX_BYTES``."""


class SignalError(BubuError):
    """A signal could not be emitted: an empty key, or a summary above the size limit."""


class IdempotencyUnavailableError(BubuError):
    """No StoryRun or StepRun identity to derive a key from (Go ``ErrIdempotencyUnavailable``)."""

    def __init__(
        self, message: str = "idempotency unavailable: missing storyrun or steprun identity"
    ) -> None:
        super().__init__(message)
