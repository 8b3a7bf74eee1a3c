"""The execution context of a step: ``StoryInfo``, ``ExecutionContext`` and ``RunContext``.

``StoryInfo`` and ``ExecutionContext`` are public (``bubu.StoryInfo``, ``bubu.ExecutionContext``;
engram.StoryInfo / engram.ExecutionContext in Go;
docs/contract/batch-lifecycle.md#execution-context). ``RunContext`` is everything
``load_run_context`` reads for one run; entry points build the ``ExecutionContext`` from it.
OpenTelemetry is imported only inside ``ExecutionContext.tracer``.
"""

from __future__ import annotations

import copy
import logging
from datetime import UTC, datetime
from typing import Any

import msgspec

from bubu._runtime.env import RuntimeEnv, TransportDescriptor, load_env
from bubu._runtime.secrets import Descriptors
from bubu._runtime.sources import EnvSource
from bubu.errors import IdempotencyUnavailableError

__all__ = ["ExecutionContext", "RunContext", "StoryInfo", "idempotency_key", "load_run_context"]

ENGRAM_LOGGER = "bubu.engram"
TRACER_NAME = "bubu-sdk"


class StoryInfo(msgspec.Struct, frozen=True, kw_only=True):
    """Which Story, StoryRun, step and StepRun this execution belongs to.

    See docs/contract/runtime-environment.md#execution-context.

    Attributes:
        story_name: ``BUBU_STORY_NAME``.
        story_run_id: ``BUBU_STORYRUN_ID`` (the StoryRun name).
        step_name: ``BUBU_STEP_NAME`` (the step id).
        step_run_id: ``BUBU_STEPRUN_NAME`` (the StepRun name).
        step_run_namespace: ``BUBU_STEPRUN_NAMESPACE``.
    """

    story_name: str = ""
    story_run_id: str = ""
    step_name: str = ""
    step_run_id: str = ""
    step_run_namespace: str = ""


def idempotency_key(info: StoryInfo) -> str:
    """Derive the stable key ``ns/<ns>/storyrun/<run>/steprun/<steprun>`` (engram/idempotency.go).

    Without a namespace the key is ``storyrun/<run>/steprun/<steprun>``. Values are trimmed.

    Raises:
        IdempotencyUnavailableError: if the StoryRun or StepRun identity is missing
            (``idempotency unavailable: missing storyrun or steprun identity``).
    """
    story_run = info.story_run_id.strip()
    step_run = info.step_run_id.strip()
    if not story_run or not step_run:
        raise IdempotencyUnavailableError()
    namespace = info.step_run_namespace.strip()
    if not namespace:
        return f"storyrun/{story_run}/steprun/{step_run}"
    return f"ns/{namespace}/storyrun/{story_run}/steprun/{step_run}"


class ExecutionContext:
    """What ``process(ctx, inputs)`` receives: identity, logger, tracer and template context.

    Args:
        story_info: the step's identity; empty when not running in a cluster.
        logger: the engram logger; ``logging.getLogger("bubu.engram")`` by default.
        template_context: the template variables (``BUBU_TEMPLATE_CONTEXT``); deep-copied on
            construction and on every read, so the engram cannot change the run's copy.
        started_at: when the execution started (``BUBU_STARTED_AT``); now by default.
        tracer: an OpenTelemetry tracer to use instead of the global ``bubu-sdk`` tracer.
        tracing_enabled: ``False`` gives a no-op tracer (``BUBU_SDK_TRACING_ENABLED``).
    """

    __slots__ = (
        "_logger",
        "_started_at",
        "_story_info",
        "_template_context",
        "_tracer",
        "_tracing_enabled",
    )

    def __init__(
        self,
        story_info: StoryInfo | None = None,
        *,
        logger: logging.Logger | None = None,
        template_context: dict[str, Any] | None = None,
        started_at: datetime | None = None,
        tracer: Any = None,
        tracing_enabled: bool = True,
    ) -> None:
        self._story_info = story_info if story_info is not None else StoryInfo()
        self._logger = logger if logger is not None else logging.getLogger(ENGRAM_LOGGER)
        self._template_context: dict[str, Any] = copy.deepcopy(template_context or {})
        self._started_at = started_at if started_at is not None else datetime.now(UTC)
        self._tracer = tracer
        self._tracing_enabled = tracing_enabled

    @property
    def story_info(self) -> StoryInfo:
        """The step's identity."""
        return self._story_info

    @property
    def logger(self) -> logging.Logger:
        """The engram logger (``bubu.engram`` unless one was injected)."""
        return self._logger

    @property
    def template_context(self) -> dict[str, Any]:
        """A deep copy of the template context (``{}`` when there is none)."""
        return copy.deepcopy(self._template_context)

    @property
    def started_at(self) -> datetime:
        """When the execution started (timezone-aware)."""
        return self._started_at

    @property
    def tracer(self) -> Any:
        """The OpenTelemetry tracer ``bubu-sdk`` (a no-op tracer when tracing is disabled).

        OpenTelemetry is imported on first access only, so ``import bubu`` stays cheap.
        """
        if self._tracer is None:
            from opentelemetry import trace

            self._tracer = (
                trace.get_tracer(TRACER_NAME) if self._tracing_enabled else trace.NoOpTracer()
            )
        return self._tracer

    def idempotency_key(self) -> str:
        """Return the step's idempotency key (see ``idempotency_key``).

        Raises:
            IdempotencyUnavailableError: without StoryRun or StepRun identity.
        """
        return idempotency_key(self._story_info)

    def __repr__(self) -> str:
        return f"ExecutionContext(story_info={self._story_info!r})"


class RunContext(msgspec.Struct, frozen=True, kw_only=True):
    """Everything loaded from the environment for one run (Go's ``ExecutionContextData``).

    See docs/contract/runtime-environment.md#execution-context.

    Attributes:
        env: every typed variable.
        inputs: ``BUBU_TRIGGER_DATA`` (``{}`` when blank or ``null``).
        config: ``BUBU_STEP_CONFIG`` with the ``BUBU_CONFIG_<KEY>`` string overrides applied.
        secret_descriptors: unexpanded ``BUBU_SECRET_*`` descriptors (redacting mapping); expand
            with ``expand_secrets``.
        template_context: ``BUBU_TEMPLATE_CONTEXT`` (``None`` when absent).
        transports: ``BUBU_TRANSPORTS``.
        story_info: identity.
        started_at: ``BUBU_STARTED_AT`` or now.
    """

    env: RuntimeEnv
    inputs: dict[str, Any]
    config: dict[str, Any]
    secret_descriptors: Descriptors
    template_context: dict[str, Any] | None
    transports: tuple[TransportDescriptor, ...]
    story_info: StoryInfo
    started_at: datetime

    def execution_context(self, logger: logging.Logger | None = None) -> ExecutionContext:
        """Build the ``ExecutionContext`` handed to ``process``."""
        return ExecutionContext(
            self.story_info,
            logger=logger,
            template_context=self.template_context,
            started_at=self.started_at,
            tracing_enabled=self.env.tracing_enabled,
        )


def story_info_from_env(env: RuntimeEnv) -> StoryInfo:
    """Return the ``StoryInfo`` of a loaded environment."""
    return StoryInfo(
        story_name=env.story_name,
        story_run_id=env.storyrun_id,
        step_name=env.step_name,
        step_run_id=env.steprun_name,
        step_run_namespace=env.steprun_namespace,
    )


def load_run_context(source: EnvSource | None = None) -> RunContext:
    """Load everything a run needs from the environment (``LoadExecutionContextData``).

    Args:
        source: where to read; the live ``os.environ`` when ``None``.

    Raises:
        ContractError: see ``load_env``.
    """
    env = load_env(source)
    return RunContext(
        env=env,
        inputs=copy.deepcopy(env.inputs),
        config=copy.deepcopy(env.config),
        secret_descriptors=env.secret_descriptors,
        template_context=copy.deepcopy(env.template_context),
        transports=env.transports,
        story_info=story_info_from_env(env),
        started_at=env.started_at,
    )
