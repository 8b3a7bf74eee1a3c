"""``start_batch``: the batch lifecycle, returning the exit code.

See docs/contract/batch-lifecycle.md#steps.

Stages of a run (each a function below, so storage, templates and schema validation plug in
at a named place; docs/architecture.md "Batch stages")::

    engram types from BatchEngram[Config, Inputs]   (before any I/O; TypeError if wrong)
    start-up: guard, load env (bubu._startup)       (ContractError -> Failed status, exit 1)
    open the status sink                           (the StepRun via KubeClient; memory locally)
    --- under asyncio.timeout(BUBU_STEP_TIMEOUT) ---
    decode_config    [hydrate config: guard, refs, templates] -> decode -> expand secrets -> init
    prepare_inputs   [hydrate -> resolve templates -> validate] -> decode
    process
    --- when process returned ---
    prepare_output   [validate -> offload above BUBU_MAX_INLINE_SIZE] -> status.output
    --- always, shielded, under its own BUBU_K8S_OPERATION_TIMEOUT ---
    terminal status: Succeeded/0, Failed/1, Timeout/124, or interrupted (SIGTERM/SIGINT)
    captured logs published (storage enabled and a StepRun named: Go's capture)

The bracketed work is ``bubu._payloads`` (references, templates, schemas, offload); a step
whose payloads hold no reference and no template skips it without importing the storage or
template packages.

A blocking call that runs past the deadline (the timer cannot fire while the loop is blocked) is
a timeout too, not a success. A second SIGTERM/SIGINT stops waiting for the engram and still
writes the terminal status before the cancellation goes on.

Departures from Go, listed in docs/differences.md: a run context that cannot be loaded still
writes a Failed status when the StepRun is known (Go returns without one); a deadline hit during
``init`` is a Timeout (Go reports Failed/1); SIGTERM/SIGINT end the step with a terminal status
(Go has no handler); known secret values are masked in persisted messages and SDK logs; output
that does not encode to a JSON object fails the step with a clear message instead of a 422;
the output schema is checked on what ``process`` returned, before offload (Go checks the
offloaded refs); only a store that is unavailable is tried three times.

Never calls ``sys.exit``: ``bubu.run`` owns the process.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

import msgspec

from bubu import _startup
from bubu._aio.shutdown import Shutdown
from bubu._k8s.api import KubeAPI
from bubu._k8s.status import KubeStatusSink, MemoryStatusSink, StatusSink, merge_status
from bubu._payloads import Payloads
from bubu._runtime import outcome as _outcome
from bubu._runtime.context import RunContext
from bubu._runtime.env import RuntimeEnv, load_identity
from bubu._runtime.parse import format_go_duration
from bubu._runtime.result import Result
from bubu._runtime.secrets import Secrets
from bubu._runtime.sources import EnvSource
from bubu.engram import BatchEngram, engram_types
from bubu.errors import (
    BubuError,
    ContractError,
    EngramError,
    InvalidTransitionError,
    KubernetesError,
    SchemaValidationError,
    SecretExpansionError,
    StepTimeoutError,
)

__all__ = [
    "BatchReport",
    "EngramInitError",
    "decode_config",
    "prepare_inputs",
    "prepare_output",
    "run_batch",
    "start_batch",
]

_log = logging.getLogger("bubu.batch")

EXIT_SUCCESS: Final = _outcome.EXIT_SUCCESS
EXIT_FAILURE: Final = _outcome.EXIT_FAILURE
EXIT_TIMEOUT: Final = _outcome.EXIT_TIMEOUT

# Exit codes for a step stopped by a signal: 128 + signal number, as shells and Kubernetes
# report a process killed by that signal.
_SIGNAL_EXIT: Final = _startup.SIGNAL_EXIT


@dataclass
class BatchReport:
    """How one batch run ended (for the harness, the CLI and tests).

    Attributes:
        exit_code: the process exit code (0, 1, 124, or 128+signal when interrupted).
        phase: the StepRun phase written (``Succeeded``, ``Failed``, ``Timeout``).
        result: what ``process`` returned, if it returned.
        exception: what ended the step, if anything failed (the engram's own exception).
        status: the StepRun status after the terminal write (None if it could not be written).
        status_error: why the terminal status write failed, if it did.
        interrupted: the shutdown reason (``SIGTERM``) if a stop request ended the step.
        output: ``status.output`` as written.
        run: the run context the start-up loaded (None when the environment was unusable).
    """

    exit_code: int
    phase: str
    result: Result | None = None
    exception: BaseException | None = None
    status: dict[str, Any] | None = None
    status_error: BaseException | None = None
    interrupted: str | None = None
    output: dict[str, Any] | None = field(default=None, repr=False)
    run: RunContext | None = field(default=None, repr=False)


async def start_batch(
    engram: BatchEngram[Any, Any],
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
    client: KubeAPI | None = None,
    status_sink: StatusSink | None = None,
) -> int:
    """Run a batch engram once and return the exit code (``bubu.start_batch``).

    In a StepRun pod (``BUBU_STEPRUN_NAME`` set) the terminal status goes to the StepRun;
    without one (or with an explicit ``status_sink``) it goes to memory, so the same code runs
    locally. Use ``bubu.run(bubu.start_batch(engram))`` to exit the process with the code.

    Args:
        engram: an instance of a ``BatchEngram[Config, Inputs]`` subclass.
        source: where ``BUBU_*`` values are read; ``os.environ`` by default.
        shutdown: a stop request to honour; by default the one ``bubu.run`` installed for
            SIGTERM/SIGINT, if any.
        client: a ``KubeClient`` to use instead of connecting one (it is not closed).
        status_sink: where to write status instead of the StepRun.

    Returns:
        0 on success, 1 on failure, 124 on timeout, 128+N when stopped by signal N.

    Raises:
        TypeError: ``engram`` is not a ``BatchEngram`` instance (checked before any I/O).
    """
    report = await run_batch(
        engram, source=source, shutdown=shutdown, client=client, status_sink=status_sink
    )
    return report.exit_code


async def decode_config(run: RunContext, config_type: Any, payloads: Payloads) -> Any:
    """Stage *config*: the step config, hydrated (Go ``hydrateConfig``), into ``Config``.

    Raises:
        StorageError, TemplateError: hydration failed (``failed to hydrate config: ...``).
        SchemaValidationError: the config does not decode; ``path`` names the value.
    """
    config = await payloads.config(run.config)
    return _decode(config or {}, config_type, strict=run.env.strict_unmarshal, what="config")


async def prepare_inputs(
    run: RunContext, inputs_type: Any, *, strict: bool, payloads: Payloads
) -> Any:
    """Stage *inputs*: the step's raw inputs into the engram's ``Inputs`` value.

    See docs/contract/batch-lifecycle.md#steps.

    References are hydrated, templates resolved (unless ``BUBU_SKIP_INPUT_TEMPLATING``; data
    that came out of storage is never evaluated), the result checked against the
    EngramTemplate's ``inputSchema``, then decoded with Go's weak typing.

    Raises:
        StorageError: ``failed to hydrate inputs: ...`` (the ref is named).
        TemplateError: ``failed to resolve input templates: ...``.
        SchemaLookupError: the schema could not be read (retryable).
        SchemaValidationError: the inputs break the schema, or do not decode (``path``).
    """
    inputs = await payloads.inputs(run.inputs)
    await payloads.validate_inputs(inputs)
    return _decode(inputs, inputs_type, strict=strict, what="inputs")


async def prepare_output(result: Result | None, payloads: Payloads) -> dict[str, Any]:
    """Stage *output*: what ``process`` returned as ``status.output``.

    The JSON object is checked against the EngramTemplate's ``outputSchema`` (``{}`` without
    data, as Go), then anything above ``BUBU_MAX_INLINE_SIZE`` is offloaded to storage.

    Raises:
        EngramError: the data has no JSON form, or is not a JSON object.
        SchemaLookupError, SchemaValidationError: the output schema check.
        StorageError: offload failed, or storage is off and the output is too large.
    """
    output = _output_for_status(result)
    await payloads.validate_output(output)
    if not output:
        return output
    offloaded: dict[str, Any] = await payloads.output(output)
    return offloaded


def _decode(data: Any, type_: Any, *, strict: bool, what: str) -> Any:
    from bubu._runtime import decode as _decode_mod

    try:
        return _decode_mod.decode(data, type_, strict=strict, path="$")
    except SchemaValidationError as exc:
        raise SchemaValidationError(f"{what}: {exc}", path=exc.path) from exc


def _now() -> datetime:
    return datetime.now(UTC)


def _rfc3339(when: datetime) -> str:
    # metav1.Time serialises at second precision (docs/contract/steprun-status.md#merge-rules).
    return when.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _output_for_status(result: Result | None) -> dict[str, Any]:
    """Return ``status.output``: the result as a JSON object (``{}`` without data).

    Raises:
        EngramError: the data has no JSON form, or is not a JSON object (the CRD declares
            ``status.output`` as ``type: object``, docs/contract/steprun-status.md#objects-only).
    """
    if result is None or result.data is None:
        return {}
    try:
        data = result.to_builtins()
        msgspec.json.encode(data)
    except (TypeError, ValueError, OverflowError, msgspec.EncodeError) as exc:
        raise EngramError(
            f"failed to marshal result data: {exc}", type="serialization_error"
        ) from exc
    if not isinstance(data, dict):
        raise EngramError(
            "failed to marshal result data: StepRun output must be a JSON object, got "
            f"{type(data).__name__}; return Result({{'value': ...}}) or a Struct",
            type="serialization_error",
        )
    return data


class EngramInitError(BubuError):
    """``init`` raised a non-SDK exception; ``__cause__`` is the engram's own exception.

    The message starts ``engram initialization failed:`` as in Go, which classifies the
    StructuredError as ``initialization_error`` (docs/contract/errors.md#structured-error).
    """


# Phases before Running from which Go's state machine refuses Succeeded
# (docs/contract/steprun-status.md#merge-rules).
_EARLY: Final = frozenset({"Pending", "Blocked", "Scheduling"})


class _Run:
    """State of one batch run (kept together so the terminal write sees everything)."""

    def __init__(
        self,
        engram: BatchEngram[Any, Any],
        *,
        config_type: Any,
        inputs_type: Any,
        startup: _startup.Startup,
        sink: StatusSink,
        secrets_override: Secrets | None,
        kube: KubeAPI | None,
    ) -> None:
        self.engram = engram
        self.config_type = config_type
        self.inputs_type = inputs_type
        self.startup = startup
        self.ctx = startup.run
        self.env = startup.run.env
        self.sink = sink
        self.shutdown = startup.shutdown
        self.secrets_override = secrets_override
        self.finished_at: float | None = None
        self.payloads = Payloads(startup.run, kube=kube)

    async def _work(self) -> Result:
        """The stages under the deadline: decode, secrets, init, inputs, process."""
        env = self.env
        config = await decode_config(self.ctx, self.config_type, self.payloads)
        try:
            secrets = self.startup.expand_secrets(self.secrets_override)
        except SecretExpansionError as exc:
            # Fail closed (docs/contract/runtime-environment.md#secrets); the message names the
            # secret, never a path or a value.
            raise SecretExpansionError(f"failed to expand secrets: {exc}") from exc
        try:
            await self.engram.init(config, secrets)
        except (BubuError, asyncio.CancelledError):
            # SDK errors (EngramError above all) already say how the step should end.
            raise
        except Exception as exc:
            raise EngramInitError(f"engram initialization failed: {_outcome_message(exc)}") from exc
        inputs = await prepare_inputs(
            self.ctx, self.inputs_type, strict=env.strict_unmarshal, payloads=self.payloads
        )
        exec_ctx = self.ctx.execution_context()
        result = await self.engram.process(exec_ctx, inputs)
        if result is None:
            return Result()
        if not isinstance(result, Result):
            # Accept a bare value the way Go's NewResultFrom wraps one
            # (docs/contract/batch-lifecycle.md#results).
            return Result(result)
        return result

    async def execute(self) -> BatchReport:
        env = self.env
        _log.info(
            "Starting batch execution with timeout",
            extra={"timeout": format_go_duration(env.step_timeout)},
        )
        result: Result | None = None
        exc: BaseException | None = None
        timed_out = False
        interrupted: str | None = None
        loop = asyncio.get_running_loop()
        deadline = asyncio.timeout(env.step_timeout)

        async def guarded() -> Result:
            try:
                async with deadline:
                    return await self._work()
            finally:
                # When the work ended, by the loop's clock: a blocking call can run past the
                # deadline without the timer ever firing (it needs the loop).
                self.finished_at = loop.time()

        work = loop.create_task(guarded(), name="bubu.batch.work")
        stop_wait: asyncio.Task[str] | None = None
        if self.shutdown is not None:
            stop_wait = loop.create_task(self.shutdown.wait(), name="bubu.batch.shutdown")
        try:
            waiters: set[asyncio.Task[Any]] = {work} | ({stop_wait} if stop_wait else set())
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
            if not work.done() and self.shutdown is not None and self.shutdown.requested:
                # Record why before cancelling (docs/contract/design.md#cancellation-and-shutdown),
                # then give the engram the grace to clean up; the terminal write below still has its
                # own budget.
                interrupted = self.shutdown.reason or "shutdown"
                _log.warning("stop requested (%s): cancelling the step", interrupted)
                work.cancel(f"bubu: stop requested ({interrupted})")
                await asyncio.wait({work}, timeout=max(0.0, self.shutdown.grace / 2))
        except asyncio.CancelledError:
            # Our caller cancelled us: the engram's work must not outlive the run. After a stop
            # request this is the second signal: stop waiting for the engram, but still write
            # the terminal status (the cleanup of this cancellation), then let it go on.
            work.cancel()
            if self.shutdown is not None and self.shutdown.requested:
                reason = self.shutdown.reason or "shutdown"
                _log.warning("second stop request (%s): ending the step now", reason)
                await self._finish(result=None, exc=None, timed_out=False, interrupted=reason)
            raise
        finally:
            if stop_wait is not None:
                stop_wait.cancel()
        if work.cancelled() and interrupted is None and not deadline.expired():
            # The engram cancelled its own task: that is a failure, never a silent success.
            exc = BubuError("execution cancelled: the engram's task was cancelled")
        if work.done() and not work.cancelled():
            error = work.exception()
            if error is None:
                result = work.result()
                interrupted = None  # it finished anyway
            else:
                exc = error
        overran = (
            work.done()
            and not deadline.expired()
            and self.finished_at is not None
            and (when := deadline.when()) is not None
            and self.finished_at > when
        )
        if deadline.expired() or overran:
            if overran:
                _log.warning(
                    "the engram blocked the event loop past the step deadline; "
                    "use asyncio.to_thread for blocking calls"
                )
            timed_out = True
            interrupted = None
            result = None
            exc = StepTimeoutError(
                "batch execution timed out after "
                f"{format_go_duration(env.step_timeout)}: context deadline exceeded",
                timeout=env.step_timeout,
            )
        return await self._finish(
            result=result, exc=exc, timed_out=timed_out, interrupted=interrupted
        )

    def _redact(self, text: str | None) -> str | None:
        return None if text is None else self.startup.mask(text)

    async def _finish(
        self,
        *,
        result: Result | None,
        exc: BaseException | None,
        timed_out: bool,
        interrupted: str | None,
    ) -> BatchReport:
        output: dict[str, Any] | None = None
        if exc is None and interrupted is None:
            try:
                output = await prepare_output(result, self.payloads)
            except Exception as err:  # the step fails with it; CancelledError passes
                exc = err
        if interrupted is not None:
            out = _interrupted_outcome(interrupted)
        else:
            out = _outcome.outcome_for(exc, timed_out=timed_out)
        finished = _now()
        duration = max(0.0, (finished - self.ctx.started_at).total_seconds())
        update: dict[str, Any] = {
            "phase": out.phase,
            "finishedAt": _rfc3339(finished),
            "duration": format_go_duration(round(duration, 3)),
            "exitCode": out.exit_code,
            "exitClass": out.exit_class,
        }
        if out.last_failure_msg:
            update["lastFailureMsg"] = self._redact(out.last_failure_msg)
        if out.error is not None:
            error = out.error.to_dict()
            error["message"] = self._redact(error.get("message")) or "engram failed"
            update["error"] = error
        if output is not None:
            update["output"] = output
        if exc is not None and interrupted is None:
            _log.error(
                "batch step %s: %s",
                out.phase.lower(),
                self._redact(out.last_failure_msg),
                # Tracebacks only with BUBU_DEBUG; the secret filter masks them too.
                exc_info=(type(exc), exc, exc.__traceback__) if self.env.debug else None,
            )
        status, status_error = await self._write_terminal(update)
        exit_code = out.exit_code
        if status_error is not None and exit_code == EXIT_SUCCESS:
            # Go: "engram completed successfully but status patch failed" -> exit 1.
            exit_code = EXIT_FAILURE
        return BatchReport(
            exit_code=exit_code,
            phase=out.phase,
            result=result,
            exception=exc,
            status=status,
            status_error=status_error,
            interrupted=interrupted,
            output=output,
            run=self.ctx,
        )

    async def _write_terminal(
        self, update: dict[str, Any]
    ) -> tuple[dict[str, Any] | None, BaseException | None]:
        """Write the terminal status, shielded from cancellation, within its own budget."""
        budget = self.env.k8s_operation_timeout
        if self.shutdown is not None and (end := self.shutdown.deadline()) is not None:
            budget = max(0.5, min(budget, end - time.monotonic()))

        def mutate(current: dict[str, Any]) -> dict[str, Any]:
            try:
                return merge_status(current, update)
            except InvalidTransitionError:
                if update.get("phase") != "Succeeded" or current.get("phase") not in _EARLY:
                    raise
                # A fast pod can finish before the controller marks the StepRun Running, and
                # Go's state machine refuses Pending -> Succeeded (docs/differences.md). Write
                # everything but the phase: the controller sets Succeeded itself when the Job
                # succeeds (docs/contract/steprun-status.md#controller), and the output is not lost.
                _log.warning(
                    "StepRun is still %s; writing the result without the phase",
                    current.get("phase"),
                )
                return merge_status(current, {k: v for k, v in update.items() if k != "phase"})

        write = asyncio.get_running_loop().create_task(
            self.sink.update(mutate, operation_timeout=budget), name="bubu.batch.status"
        )
        try:
            status = await asyncio.shield(write)
        except asyncio.CancelledError:
            # A second signal cancels us: the write keeps going only until the loop closes.
            raise
        except (KubernetesError, ValueError) as err:
            _log.error("StepRun status write failed: %s", err)
            return None, err
        return status, None


def _outcome_message(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def _interrupted_outcome(reason: str) -> _outcome.Outcome:
    """The outcome of a step stopped before it finished (SIGTERM/SIGINT/harness request).

    Phase ``Failed`` with exit class ``retry``: the work did not fail, the pod was stopped
    (node drain, eviction, scale-down), so the controller should run it again while retries
    remain. Go writes nothing here; see docs/differences.md.
    """
    code = _SIGNAL_EXIT.get(reason, EXIT_FAILURE)
    message = f"step interrupted by {reason} before it finished"
    error = _outcome.StructuredError(
        version="v1",
        type="execution_error",
        message=message,
        retryable=True,
        exit_code=code,
        exit_class="retry",
        code="Interrupted",
    )
    return _outcome.Outcome(
        phase="Failed", exit_code=code, exit_class="retry", error=error, last_failure_msg=message
    )


async def _open_sink(
    env: RuntimeEnv,
    client: KubeAPI | None,
    status_sink: StatusSink | None,
) -> tuple[StatusSink, KubeAPI | None, KubeAPI | None]:
    """Pick the status sink: explicit, the StepRun (connecting a client), or memory.

    Returns:
        (sink, the client the scope should expose, the client we own and must close).

    Raises:
        KubernetesError: the cluster cannot be reached while a StepRun is named.
    """
    if status_sink is not None:
        return status_sink, client, None
    if not env.steprun_name:
        return MemoryStatusSink(), client, None
    owned: KubeAPI | None = None
    if client is None:
        from bubu._k8s.client import KubeClient

        client = owned = await KubeClient.from_env(env)
    sink = KubeStatusSink(
        client,
        env.steprun_name,
        None,  # Go patches in the client namespace (docs/contract/steprun-status.md#merge-rules)
        pod_name=env.pod_name or None,
        max_retries=env.k8s_patch_max_retries,
        operation_timeout=env.k8s_operation_timeout,
    )
    return sink, client, owned


async def _close(client: KubeAPI | None) -> None:
    aclose = getattr(client, "aclose", None)
    if aclose is not None:
        await aclose()


async def _bootstrap_failure(
    exc: ContractError,
    source: EnvSource,
    client: KubeAPI | None,
    status_sink: StatusSink | None,
) -> BatchReport:
    """Report an unusable runtime environment: log it, write Failed if we can, exit 1."""
    out = _outcome.outcome_for(exc)
    _log.error("failed to load execution context: %s", out.last_failure_msg)
    update: dict[str, Any] = {
        "phase": "Failed",
        "finishedAt": _rfc3339(_now()),
        "exitCode": out.exit_code,
        "exitClass": out.exit_class,
        "lastFailureMsg": out.last_failure_msg,
    }
    if out.error is not None:
        update["error"] = out.error.to_dict()
    status: dict[str, Any] | None = None
    status_error: BaseException | None = None
    owned: KubeAPI | None = None
    try:
        sink, _, owned = await _open_sink(load_identity(source), client, status_sink)
        status = await asyncio.shield(sink.write(update))
    except (KubernetesError, ValueError) as err:
        _log.error("could not report the failure on the StepRun: %s", err)
        status_error = err
    finally:
        await _close(owned)
    return BatchReport(
        exit_code=EXIT_FAILURE,
        phase="Failed",
        exception=exc,
        status=status,
        status_error=status_error,
    )


def _start_capture(env: RuntimeEnv, st: _startup.Startup) -> Any:
    """Go's log capture: with storage enabled and a StepRun named, the step's log lines and
    standard streams are kept (the last 1 MiB) and published to ``status.logs`` at the end."""
    if env.storage is None or not env.steprun_name.strip():
        return None
    from bubu import _logs

    return _logs.RunCapture.start(env, st.guard.mask, st.guard.fields)


async def run_batch(
    engram: BatchEngram[Any, Any],
    *,
    source: EnvSource | None = None,
    shutdown: Shutdown | None = None,
    client: KubeAPI | None = None,
    status_sink: StatusSink | None = None,
    log_stream: Any = None,
    extra_secret_values: Iterable[str] = (),
    secrets: Secrets | None = None,
    install_logging: bool = True,
) -> BatchReport:
    """Run the batch lifecycle and return the full ``BatchReport`` (see ``start_batch``).

    Args (beyond ``start_batch``'s):
        log_stream: where the JSON log handler writes (standard output by default).
        extra_secret_values: values to mask in logs and status from the start.
        secrets: use these secrets instead of expanding ``BUBU_SECRET_*`` (harnesses).
        install_logging: attach the JSON log handler when nobody configured logging and mask
            standard output (harnesses pass False: a library does not configure logging; the
            secret mask still goes on the existing handlers).
    """
    if isinstance(engram, type):
        raise TypeError(f"start_batch needs an engram instance, got the class {engram.__name__}")
    config_type, inputs_type = engram_types(engram, BatchEngram)
    with _startup.begin(
        "batch",
        source=source,
        shutdown=shutdown,
        log_stream=log_stream,
        secret_values=extra_secret_values,
        install_logging=install_logging,
        capture_output=install_logging,
    ) as st:
        try:
            run_ctx = st.load()
        except ContractError as exc:
            return await _bootstrap_failure(exc, st.source, client, status_sink)
        try:
            sink, scope_client, owned = await _open_sink(run_ctx.env, client, status_sink)
        except KubernetesError as exc:
            _log.error("cannot reach the Kubernetes API to report status: %s", exc)
            return BatchReport(
                exit_code=EXIT_FAILURE,
                phase="Failed",
                exception=exc,
                status_error=exc,
                run=run_ctx,
            )
        st.scope.kube = scope_client
        st.scope.status = sink
        run = _Run(
            engram,
            config_type=config_type,
            inputs_type=inputs_type,
            startup=st,
            sink=sink,
            secrets_override=secrets,
            kube=scope_client,
        )
        capture = _start_capture(run_ctx.env, st)
        try:
            with st.activate():
                report = await run.execute()
            if capture is not None:
                await capture.publish(scope_client, sink)
            return report
        finally:
            if capture is not None:
                capture.close()
            await _close(owned)
