"""``BatchHarness``: run a batch engram through the real lifecycle, without Kubernetes.

The harness feeds config, inputs, secrets and identity through the same ``run_batch`` code a
pod runs (storage refs hydrated, templates resolved, decode with Go weak typing, ``init``,
``process``, offload of large outputs, status merge), with the StepRun status kept in memory
and a file store in a temporary directory (``LocalStorage``) standing in for the cluster's.
``run()`` returns the engram's ``Result`` or raises its exception, so
tests read like calls to the engram; ``status`` shows what the StepRun would hold.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import msgspec

from bubu._aio.shutdown import Shutdown
from bubu._batch import BatchReport, EngramInitError, run_batch
from bubu._k8s.status import MemoryStatusSink
from bubu._runtime.context import StoryInfo
from bubu._runtime.parse import format_go_duration
from bubu._runtime.result import Result
from bubu._runtime.secrets import Secrets
from bubu._runtime.sources import MappingSource
from bubu.engram import BatchEngram
from bubu.testkit._storage import StorageOption, storage_env

__all__ = ["BatchHarness"]


def _json(value: Any, what: str) -> str:
    try:
        return json.dumps(msgspec.to_builtins(value))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"BatchHarness {what}: not JSON-serialisable: {exc}") from None


class BatchHarness:
    """Run one batch engram locally with the production lifecycle.

    Args:
        engram: the engram instance.
        config: the config (a Struct or dict); encoded and decoded again as in a pod.
        inputs: the inputs (a Struct or dict).
        secrets: secret values by name (literal values; no ``env:``/``file:`` expansion).
        story_info: the identity to expose on ``ExecutionContext.story_info``.
        template_context: ``BUBU_TEMPLATE_CONTEXT``.
        timeout: the step timeout in seconds (``BUBU_STEP_TIMEOUT``).
        env: extra ``BUBU_*`` variables.
        shutdown: a stop request the test can trigger (``shutdown.request("SIGTERM")``).
        storage: where storage refs resolve and large outputs go, as in a cluster with
            storage enabled: a ``LocalStorage`` (``storage.put(value)`` makes an offloaded
            input), a mapping of ``BUBU_STORAGE_*`` values (an S3 bucket), or ``False`` for
            a cluster without storage. By default a new ``LocalStorage`` in a temporary
            directory (``harness.storage``), unless ``env`` names a provider.

    Example::

        result = await BatchHarness(engram=Hello(), inputs={"name": "Ada"}).run()
        assert result.data.greeting == "Hello, Ada!"
    """

    def __init__(
        self,
        *,
        engram: BatchEngram[Any, Any],
        config: Any = None,
        inputs: Any = None,
        secrets: Mapping[str, str] | None = None,
        story_info: StoryInfo | None = None,
        template_context: Mapping[str, Any] | None = None,
        timeout: float | None = None,
        env: Mapping[str, str] | None = None,
        shutdown: Shutdown | None = None,
        storage: StorageOption = None,
    ) -> None:
        self.engram = engram
        self.shutdown = shutdown
        self.sink = MemoryStatusSink()
        self.report: BatchReport | None = None
        self._secrets = Secrets(dict(secrets or {}))
        values: dict[str, str] = dict(env or {})
        if config is not None:
            values["BUBU_STEP_CONFIG"] = _json(config, "config")
        if inputs is not None:
            values["BUBU_TRIGGER_DATA"] = _json(inputs, "inputs")
        if template_context is not None:
            values["BUBU_TEMPLATE_CONTEXT"] = _json(dict(template_context), "template_context")
        if timeout is not None:
            if timeout <= 0:
                raise ValueError(f"BatchHarness timeout must be > 0, got {timeout}")
            values["BUBU_STEP_TIMEOUT"] = format_go_duration(timeout)
        if story_info is not None:
            values.update(
                {
                    "BUBU_STORY_NAME": story_info.story_name,
                    "BUBU_STORYRUN_ID": story_info.story_run_id,
                    "BUBU_STEP_NAME": story_info.step_name,
                    "BUBU_STEPRUN_NAME": story_info.step_run_id,
                    "BUBU_STEPRUN_NAMESPACE": story_info.step_run_namespace,
                }
            )
        self.storage, values = storage_env(storage, values)
        self._source = MappingSource(values)

    @property
    def status(self) -> dict[str, Any]:
        """The StepRun status the run would have written (``output`` as written: large
        values are storage refs; ``await harness.storage.hydrate(...)`` reads them)."""
        return self.sink.status

    async def run(self) -> Result:
        """Run the engram once.

        Returns:
            What ``process`` returned.

        Raises:
            Exception: the engram's own exception (from ``init`` or ``process``), a
                ``SchemaValidationError`` for config/inputs that do not decode, or a
                ``StepTimeoutError`` when the timeout expired.
        """
        report = await run_batch(
            self.engram,
            source=self._source,
            shutdown=self.shutdown,
            status_sink=self.sink,
            secrets=self._secrets,
            install_logging=False,
        )
        self.report = report
        exc = report.exception
        if exc is not None:
            if isinstance(exc, EngramInitError) and isinstance(exc.__cause__, Exception):
                raise exc.__cause__
            raise exc
        if report.interrupted is not None:
            raise RuntimeError(f"the step was interrupted by {report.interrupted}")
        return report.result if report.result is not None else Result()
