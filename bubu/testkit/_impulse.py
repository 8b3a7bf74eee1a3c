"""ImpulseHarness: run an Impulse's ``init`` + ``run`` against the in-memory cluster.

The harness runs the production ``run_impulse`` with a ``FakeCluster`` as the Kubernetes
client, a ``TriggerResolver`` standing in for the operator, and the Story and Impulse objects
seeded. Everything the impulse does through ``client``, ``bubu.start_story``,
``StoryDispatcher``, ``execute_effect_once`` or ``emit_signal`` goes through the same helper
code as in a cluster; the test then reads what happened (``triggers``, ``story_runs``,
``decisions``, ``impulse_status``) and stops the impulse like SIGTERM would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self, TypeVar

import msgspec

from bubu._aio.shutdown import Shutdown
from bubu._impulse import ImpulseClient, run_impulse
from bubu._k8s.resources import IMPULSE, STORY, STORY_RUN, STORY_TRIGGER
from bubu._runtime.secrets import Secrets
from bubu._runtime.sources import MappingSource
from bubu._scope import RunScope, activate
from bubu.engram import Impulse
from bubu.testkit._fakes import (
    EffectClaimPhases,
    FakeCluster,
    StopStoryController,
    TriggerResolver,
)
from bubu.testkit._storage import StorageOption, storage_env

__all__ = ["ImpulseHarness"]

T = TypeVar("T")


class ImpulseHarness:
    """Run one Impulse locally with the production lifecycle and in-memory fakes.

    Args:
        impulse: the Impulse instance.
        config: its config (a Struct or dict), passed as ``BUBU_STEP_CONFIG``.
        secrets: secret values by name.
        env: extra ``BUBU_*`` variables (``BUBU_TRIGGER_DEDUPE_MODE``...).
        namespace: the namespace of the Impulse and its Story.
        story: the target Story (seeded; ``BUBU_TARGET_STORY_NAME``).
        impulse_name: the Impulse name (seeded; ``BUBU_IMPULSE_NAME``).
        cluster: a prepared ``FakeCluster`` (a fresh one by default).
        stats_interval: seconds between Impulse status patches (short, so tests see them).
        grace: the shutdown grace in seconds.
        storage: where config refs resolve and large trigger inputs are offloaded (Go's
            ``DehydrateInputs``): a ``LocalStorage``, a mapping of ``BUBU_STORAGE_*`` values,
            or ``False`` (inputs sent inline). By default a new ``LocalStorage`` in a
            temporary directory (``harness.storage``), unless ``env`` names a provider.

    Example::

        async with ImpulseHarness(impulse=MyWebhook(), config={"port": 0}) as h:
            ...  # send events
        assert h.triggers[0]["spec"]["inputs"] == {...}
    """

    def __init__(
        self,
        *,
        impulse: Impulse[Any],
        config: Any = None,
        secrets: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        namespace: str = "default",
        story: str = "story",
        impulse_name: str = "impulse",
        cluster: FakeCluster | None = None,
        stats_interval: float = 0.05,
        grace: float = 5.0,
        storage: StorageOption = None,
    ) -> None:
        self.impulse = impulse
        self.namespace = namespace
        self.story = story
        self.cluster = cluster or FakeCluster(namespace)
        self.resolver = TriggerResolver(self.cluster)
        EffectClaimPhases(self.cluster)
        StopStoryController(self.cluster)
        if self.cluster.peek(STORY, story, namespace) is None:
            self.cluster.seed_story(story, namespace)
        if self.cluster.peek(IMPULSE, impulse_name, namespace) is None:
            self.cluster.seed_impulse(impulse_name, namespace, story=story)
        values = {
            "BUBU_IMPULSE_NAME": impulse_name,
            "BUBU_IMPULSE_NAMESPACE": namespace,
            "BUBU_TARGET_STORY_NAME": story,
            "BUBU_TARGET_STORY_NAMESPACE": namespace,
            "BUBU_K8S_OPERATION_TIMEOUT": "5s",
        }
        if config is not None:
            try:
                values["BUBU_STEP_CONFIG"] = json.dumps(msgspec.to_builtins(config))
            except TypeError as exc:
                raise TypeError(f"ImpulseHarness config is not JSON-serialisable: {exc}") from exc
        values.update(env or {})
        self.storage, values = storage_env(storage, values)
        self.source = MappingSource(values)
        self.impulse_name = impulse_name
        self._secrets = Secrets(dict(secrets or {}))
        self.shutdown = Shutdown(grace=grace)
        self.stats_interval = stats_interval
        self.client: ImpulseClient | None = None
        self.exit_code: int | None = None
        self._task: asyncio.Task[int] | None = None
        self._started: asyncio.Event | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def _on_start(self, client: ImpulseClient) -> None:
        self.client = client
        if self._started is not None:
            self._started.set()

    async def start(self) -> ImpulseClient:
        """Run ``init`` and start ``run`` in the background; return the client ``run`` got.

        Raises:
            RuntimeError: the impulse ended before ``run`` started (its exit code is in
                ``exit_code``; the error was logged by ``run_impulse``).
        """
        if self._task is not None:
            raise RuntimeError("ImpulseHarness already started")
        self._started = asyncio.Event()
        self._task = asyncio.get_running_loop().create_task(
            run_impulse(
                self.impulse,
                source=self.source,
                shutdown=self.shutdown,
                client=self.cluster,
                stats_interval=self.stats_interval,
                secrets=self._secrets,
                on_start=self._on_start,
                install_logging=False,
            ),
            name="bubu.testkit.impulse",
        )
        started = asyncio.ensure_future(self._started.wait())
        await asyncio.wait({started, self._task}, return_when=asyncio.FIRST_COMPLETED)
        if not started.done():
            started.cancel()
            self.exit_code = self._task.result()
            raise RuntimeError(f"the impulse ended before run started (exit {self.exit_code})")
        assert self.client is not None
        return self.client

    @property
    def running(self) -> bool:
        """True between ``start()`` and the end of the impulse's task."""
        return self._task is not None and not self._task.done()

    async def stop(self, reason: str = "SIGTERM") -> int:
        """Request a graceful stop (as SIGTERM does) and return the exit code."""
        if self._task is None:
            raise RuntimeError("ImpulseHarness was not started")
        self.shutdown.request(reason)
        return await self.wait()

    async def wait(self) -> int:
        """Wait for the impulse to end by itself and return the exit code."""
        if self._task is None:
            raise RuntimeError("ImpulseHarness was not started")
        self.exit_code = await self._task
        await self.resolver.aclose()
        return self.exit_code

    async def run(self) -> int:
        """Run the impulse to completion (its ``run`` returns) and return the exit code."""
        await self.start()
        return await self.wait()

    async def __aenter__(self) -> Self:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._task is not None and not self._task.done():
            await self.stop()

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any, **kwargs: Any) -> T:
        """Await ``fn(*args, **kwargs)`` inside the impulse's run scope (push an event).

        The module-level helpers (``bubu.start_story``...) then find the fake cluster.
        """
        scope = RunScope(source=self.source, kube=self.cluster, shutdown=self.shutdown)
        if self.client is not None:
            scope.provide(self.client.triggers)
            scope.provide(self.client.dispatcher)
            if self.client.stats is not None:
                scope.provide(self.client.stats)
        with activate(scope):
            return await fn(*args, **kwargs)

    # -- what happened -----------------------------------------------------------------------

    @property
    def triggers(self) -> list[dict[str, Any]]:
        """The StoryTriggers created so far, in creation order."""
        items = self.cluster.objects(STORY_TRIGGER)
        items.sort(key=lambda o: int(o["metadata"].get("resourceVersion", "0")))
        return items

    @property
    def story_runs(self) -> list[dict[str, Any]]:
        """The StoryRuns the resolver created."""
        return self.cluster.objects(STORY_RUN)

    @property
    def decisions(self) -> list[tuple[str, str, str]]:
        """``(trigger name, decision, reason)`` in order."""
        return list(self.resolver.decisions)

    @property
    def impulse_status(self) -> dict[str, Any]:
        """The Impulse's status as written: the SDK writes only ``throttledTriggers`` and
        ``lastThrottled`` (the operator owns the other counters); every count the impulse
        recorded is in ``client.stats.totals``."""
        obj = self.cluster.peek(IMPULSE, self.impulse_name, self.namespace)
        return dict((obj or {}).get("status") or {})

    async def flush_stats(self) -> None:
        """Write pending Impulse counters (throttles) now instead of waiting for the interval."""
        if self.client is not None and self.client.stats is not None:
            with contextlib.suppress(Exception):
                await self.client.stats.flush()
